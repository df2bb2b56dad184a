/* 2-D pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, on (N, C, H, W) or (C, H, W)
 * inputs of any strides. Every (n, c) plane is independent, so the kernels run in
 * parallel over planes and each plane's gradient is written by one thread in output
 * order (results do not depend on the thread count). Window rules, divisors and the
 * order of the sums follow PyTorch 1.13's CPU kernels, so float results match it:
 *   max: the first maximum in row-major window order, where a NaN replaces whatever
 *        came before it (so the last NaN wins); padding is -inf. Backward sends each
 *        output's gradient to that input (its index is saved in forward).
 *   avg: sum of the window inside the input, divided by the window size clipped to the
 *        padded input (count_include_pad), or to the input, or by divisor_override
 *        (0 = none).
 *   adaptive avg: rows [floor(o*H/OH), ceil((o+1)*H/OH)), likewise columns; the sum
 *        is divided by the height, then by the width. */
#include <math.h>

#include "kernels/isa.h"
#include "op_internal.h"

#if defined(QG_AVX2_CODE)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct {
    int ndim;                   /* 3 or 4 */
    int64_t N, C, H, W, OH, OW; /* N = 1 for 3-D input */
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    int64_t xs[4];              /* input strides of (N, C, H, W), in elements */
    int64_t divisor;            /* avg: divisor_override, 0 = none */
    bool count_include_pad;
} pool_geom;

typedef struct {
    pool_geom g;
    int32_t *idx;               /* max: argmax per output, as h*W + w in its plane; -1 = none */
} pool_ctx;

/* Records a pool node whose backward reads the geometry (and max's argmax indices). */
static qg_node *record_pool(const char *name, qg_backward_fn bw, qg_tensor *out, const qg_tensor *x,
                            const pool_geom *g, int32_t *idx) {
    pool_ctx *c = qg__tape_alloc(sizeof *c);
    qg_node *n = c ? qg__record(name, bw, out, 1, &x) : NULL;
    if (!n) return NULL;
    c->g = *g;
    c->idx = idx;
    n->ctx = c;
    return n;
}

/* floor(a / b) for b > 0 */
static int64_t div_floor(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* PyTorch's pooling output size. */
static int64_t pool_out(int64_t in, int64_t k, int64_t pad, int64_t s, int64_t d, bool ceil_mode) {
    int64_t o = div_floor(in + 2 * pad - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (o - 1) * s >= in + pad) o--; /* the last window must start inside */
    return o;
}

/* Shape of x as (N, C, H, W); error unless 3-D or 4-D with non-empty C, H, W. */
static qg_status pool_input(const char *op, const qg_tensor *x, pool_geom *g) {
    char s[128];
    qg_status st = x && x->quant ? qg__live(op, x) : qg__check_float(op, x);
    if (st) return st;
    if (x->quant && (x->quant->axis >= 0 || x->dtype == QG_I32))
        return qg__err(QG_EDTYPE, "%s: quantized input must be quint8 or qint8 per tensor, got %s%s", op,
                       qg__type_name(x), x->quant->axis >= 0 ? " per channel" : "");
    int b = x->ndim - 3;
    if ((x->ndim != 3 && x->ndim != 4) || x->shape[b] == 0 || x->shape[b + 1] == 0 || x->shape[b + 2] == 0)
        return qg__err(QG_ESHAPE, "%s: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input with non-zero C, H, W, got %s",
                       op, qg_shape_str(x, s, sizeof s));
    memset(g, 0, sizeof *g);
    g->ndim = x->ndim;
    g->N = b ? x->shape[0] : 1;
    g->xs[0] = b ? x->strides[0] : 0;
    g->C = x->shape[b], g->H = x->shape[b + 1], g->W = x->shape[b + 2];
    for (int d = 0; d < 3; d++) g->xs[1 + d] = x->strides[b + d];
    return QG_OK;
}

/* Kernel, stride, padding, dilation and the output size, with PyTorch's checks. */
static qg_status pool_window(const char *op, const qg_tensor *x, const int *kernel, const int *stride,
                             const int *padding, const int *dilation, bool ceil_mode, pool_geom *g) {
    char s[128];
    if (!kernel) return qg__err(QG_EINVAL, "%s: kernel size is required", op);
    g->kh = kernel[0], g->kw = kernel[1];
    g->sh = stride && stride[0] ? stride[0] : g->kh;
    g->sw = stride && stride[1] ? stride[1] : g->kw;
    g->ph = padding ? padding[0] : 0, g->pw = padding ? padding[1] : 0;
    g->dh = dilation ? dilation[0] : 1, g->dw = dilation ? dilation[1] : 1;
    if (g->kh <= 0 || g->kw <= 0)
        return qg__err(QG_EINVAL, "%s: kernel size must be positive, got (%lld, %lld)", op, (long long)g->kh, (long long)g->kw);
    if (g->sh <= 0 || g->sw <= 0)
        return qg__err(QG_EINVAL, "%s: stride must be positive, got (%lld, %lld)", op, (long long)g->sh, (long long)g->sw);
    if (g->dh <= 0 || g->dw <= 0)
        return qg__err(QG_EINVAL, "%s: dilation must be positive, got (%lld, %lld)", op, (long long)g->dh, (long long)g->dw);
    if (g->ph < 0 || g->pw < 0 || g->ph > g->kh / 2 || g->pw > g->kw / 2)
        return qg__err(QG_EINVAL, "%s: padding must be between 0 and half the kernel size, got padding (%lld, %lld) "
                       "for kernel (%lld, %lld)", op, (long long)g->ph, (long long)g->pw, (long long)g->kh, (long long)g->kw);
    g->OH = pool_out(g->H, g->kh, g->ph, g->sh, g->dh, ceil_mode);
    g->OW = pool_out(g->W, g->kw, g->pw, g->sw, g->dw, ceil_mode);
    if (g->OH < 1 || g->OW < 1)
        return qg__err(QG_ESHAPE, "%s: given input %s, the calculated output size (%lld x %lld) is too small",
                       op, qg_shape_str(x, s, sizeof s), (long long)g->OH, (long long)g->OW);
    return QG_OK;
}

/* Element offset of plane q = n*C + c in x. */
static inline int64_t plane_off(const pool_geom *g, int64_t q) {
    return (q / g->C) * g->xs[0] + (q % g->C) * g->xs[1];
}

static qg_tensor *pool_output(const char *op, const qg_tensor *x, const pool_geom *g) {
    int64_t shape[4] = {g->N, g->C, g->OH, g->OW};
    if (qg__check_sizes(op, 4, shape)) return NULL;
    qg_tensor *out = g->ndim == 4 ? qg__tape_tensor(x->dtype, 4, shape) : qg__tape_tensor(x->dtype, 3, shape + 1);
    /* quantized: PyTorch's pools keep the input's scale and zero point */
    if (out && x->quant && !(out->quant = qg__quant_dup(x->quant, true))) return NULL;
    return out;
}

/* ---------------------------------------------------------------- quantized pools
 * On the integers of a per-tensor quint8/qint8 input; the output has the input's
 * mapping. Max: the largest integer of the window (padding never wins). The averages
 * follow whichever PyTorch 1.13 kernel would run (docs/int8.md): the native NCHW one,
 * the native channels-last one (which a contiguous NCHW tensor with C = 1 or H = W = 1
 * also takes), or qnnpack's when that is the engine. */

typedef enum { QPOOL_MAX, QPOOL_AVG, QPOOL_ADAPTIVE } qpool_kind;
typedef enum { QRULE_NCHW, QRULE_NHWC, QRULE_QNNPACK } qpool_rule;

_Thread_local qg__qpool_desc *qg__qpool_trace;

static inline int32_t qload(const char *p, bool u8, int64_t i) {
    return u8 ? ((const uint8_t *)p)[i] : ((const int8_t *)p)[i];
}

/* PyTorch's is_contiguous(channels_last) for a 4-d tensor (size-1 dims ignored) */
static bool channels_last(const qg_tensor *x) {
    if (x->ndim != 4) return false;
    static const int order[4] = {1, 3, 2, 0}; /* C, W, H, N: innermost first */
    int64_t expect = 1;
    for (int i = 0; i < 4; i++) {
        int d = order[i];
        if (x->shape[d] != 1 && x->strides[d] != expect) return false;
        expect *= x->shape[d];
    }
    return true;
}

static inline int32_t qclamp(int64_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : (int32_t)v; }

typedef struct {
    qpool_kind k;
    qpool_rule rule;
    const pool_geom *g;
    bool u8;
    int32_t z, lo, hi;
    float ms; /* qnnpack's multiplier */
} qpool_args;

static void qpool_plane(const qpool_args *a, const char *x, char *o);

static qg_tensor *qpool(qpool_kind k, const char *op, const qg_tensor *x, pool_geom *g, bool ceil_mode) {
    qpool_args a = {.k = k, .g = g, .u8 = x->dtype == QG_U8, .z = (int32_t)x->quant->zero_point};
    a.lo = a.u8 ? 0 : -128, a.hi = a.u8 ? 255 : 127;
    a.rule = channels_last(x) ? QRULE_NHWC : QRULE_NCHW;
    if (k == QPOOL_ADAPTIVE && qg_get_qengine() == QG_QENGINE_QNNPACK && x->ndim == 4 && a.u8 && g->OH && g->OW &&
        g->H % g->OH == 0 && g->W % g->OW == 0 && (g->OH != g->H || g->OW != g->W)) {
        a.k = QPOOL_AVG, a.rule = QRULE_QNNPACK; /* qnnpack's average pool, kernel = stride */
        g->kh = g->sh = g->H / g->OH, g->kw = g->sw = g->W / g->OW;
        g->ph = g->pw = 0;
    } else if (k == QPOOL_AVG && qg_get_qengine() == QG_QENGINE_QNNPACK && !ceil_mode && x->ndim == 4 && a.u8 &&
               g->kh * g->kw > 1) {
        a.rule = QRULE_QNNPACK;
    }
    if (a.rule == QRULE_QNNPACK) {
        const float s = (float)x->quant->scale;
        float den = s * (float)(g->kh * g->kw);
        a.ms = s / den;
    }
    if (qg__qpool_trace) { /* an exporter asks what this pool computes */
        qg__qpool_desc *d = qg__qpool_trace;
        d->rule = k == QPOOL_MAX ? QG_QPOOL_MAX : a.rule == QRULE_QNNPACK ? QG_QPOOL_AVG_QNNPACK
                  : a.k == QPOOL_ADAPTIVE ? (a.rule == QRULE_NHWC ? QG_QPOOL_ADAPTIVE_NHWC : QG_QPOOL_ADAPTIVE_NCHW)
                  : a.rule == QRULE_NHWC ? QG_QPOOL_AVG_NHWC : QG_QPOOL_AVG_NCHW;
        d->C = g->C, d->H = g->H, d->W = g->W, d->OH = g->OH, d->OW = g->OW;
        d->kh = g->kh, d->kw = g->kw, d->sh = g->sh, d->sw = g->sw, d->ph = g->ph, d->pw = g->pw;
        d->dh = g->dh, d->dw = g->dw, d->divisor = g->divisor, d->count_include_pad = g->count_include_pad;
        d->ms = a.ms, d->u8 = a.u8, d->set = true;
    }
    qg_tensor *out = pool_output(op, x, g);
    if (!out) return NULL;
    const int64_t NC = g->N * g->C, P = g->OH * g->OW;
    const char *xd = qg__data(x);
    char *od = qg__data(out);
    int nt = qg__threads_for(qg__sat_mul(NC * P, k == QPOOL_ADAPTIVE ? 4 : g->kh * g->kw + 1));
    (void)nt; /* only the OpenMP pragmas use it */
    _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
    for (int64_t q = 0; q < NC; q++) qpool_plane(&a, xd + plane_off(g, q), od + q * P);
    return out;
}

/* ---------------------------------------------------------------- max_pool2d */

/* The common 2x2 stride-2 pool, every window inside the input. */
static bool max_2x2(const pool_geom *g) {
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->dh == 1 &&
           g->dw == 1 && 2 * g->OH <= g->H && 2 * g->OW <= g->W;
}

#if defined(QG_AVX2_CODE)
/* The float forms of max_plane's two 2x2 loops below, 8 elements a step (GCC leaves the
 * selects on floats scalar and branchy). Each returns how many it did, a multiple of
 * 8; the scalar loops finish. */

/* Column winners: v[i] = r1[i] if it beats r0[i] (greater, or NaN), else r0[i]. */
QG_TARGET_AVX2 static int64_t max_cols_avx2(const float *r0, const float *r1, int64_t n, int32_t i0, int32_t i1, float *v,
                             int32_t *vi) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_loadu_ps(r0 + i), c = _mm256_loadu_ps(r1 + i);
        const __m256 cw = _mm256_or_ps(_mm256_cmp_ps(c, a, _CMP_GT_OQ), _mm256_cmp_ps(c, c, _CMP_UNORD_Q));
        _mm256_storeu_ps(v + i, _mm256_blendv_ps(a, c, cw));
        const __m256i ix = _mm256_add_epi32(lane, _mm256_set1_epi32((int32_t)i));
        const __m256 ia = _mm256_castsi256_ps(_mm256_add_epi32(ix, _mm256_set1_epi32(i0)));
        const __m256 ic = _mm256_castsi256_ps(_mm256_add_epi32(ix, _mm256_set1_epi32(i1)));
        _mm256_storeu_si256((__m256i *)(void *)(vi + i), _mm256_castps_si256(_mm256_blendv_ps(ia, ic, cw)));
    }
    return i;
}

/* Even and odd elements of p[0..16) (shuffle_ps works per 128-bit half; the 64-bit
 * permute restores the order). */
QG_TARGET_AVX2 static inline void deinterleave8(const float *p, __m256 *even, __m256 *odd) {
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
}

/* Pair winners over the plane: the scalar loop's rule, on 8 pairs at once. */
QG_TARGET_AVX2 static int64_t max_pairs_avx2(const float *v, const int32_t *vi, int64_t Q, float *o, int32_t *idx) {
    int64_t q = 0;
    for (; q + 8 <= Q; q += 8) {
        __m256 L, R, lf, rf;
        deinterleave8(v + 2 * q, &L, &R);
        deinterleave8((const float *)(const void *)(vi + 2 * q), &lf, &rf);
        const __m256i li = _mm256_castps_si256(lf), ri = _mm256_castps_si256(rf);
        const __m256 lnum = _mm256_cmp_ps(L, L, _CMP_ORD_Q), rnum = _mm256_cmp_ps(R, R, _CMP_ORD_Q);
        const __m256 rnan = _mm256_cmp_ps(R, R, _CMP_UNORD_Q);
        const __m256 rlater = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ri, li));
        const __m256 rearlier = _mm256_castsi256_ps(_mm256_cmpgt_epi32(li, ri));
        const __m256 tie = _mm256_and_ps(_mm256_cmp_ps(R, L, _CMP_EQ_OQ), rearlier);
        const __m256 rw = _mm256_or_ps(_mm256_and_ps(rnan, _mm256_or_ps(lnum, rlater)),
                                       _mm256_and_ps(_mm256_and_ps(rnum, lnum),
                                                     _mm256_or_ps(_mm256_cmp_ps(R, L, _CMP_GT_OQ), tie)));
        _mm256_storeu_ps(o + q, _mm256_blendv_ps(L, R, rw));
        _mm256_storeu_si256((__m256i *)(void *)(idx + q), _mm256_castps_si256(_mm256_blendv_ps(lf, rf, rw)));
    }
    return q;
}
#endif

/* x plane: (H, W) at strides (xs2, xs3) -> out: (OH, OW), idx: (OH, OW). scr: room for
 * OH*2*OW elements and as many int32 (2x2 path only).
 *
 * The scan rule (first maximum in window order, a NaN replacing anything, so the last
 * NaN wins) picks the largest element under a total order: NaN above numbers, later
 * above earlier among NaNs, earlier above later among equal numbers. That order makes
 * the choice associative, so the 2x2 path may reduce in any grouping and get the same
 * element: first each column pair (rows 2oh, 2oh+1), row by row, then each horizontal
 * pair of those winners, as one flat loop over the plane's outputs, so that rows of a
 * few elements still fill vectors. */
static void max_plane(const pool_geom *g, qg_dtype dt, const char *xp, char *op, int32_t *idx, char *scr) {
    const int64_t H = g->H, W = g->W, OW = g->OW, xs2 = g->xs[2], xs3 = g->xs[3];
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)xp;
        real *o = (real *)op;
        if (max_2x2(g)) {
            const int64_t OH = g->OH, W2 = 2 * OW;
            real *vv = (real *)scr;                      /* (OH, 2*OW) column winners */
            int32_t *vi = (int32_t *)(scr + (((size_t)(OH * W2) * sizeof(real) + 63) & ~(size_t)63));
            for (int64_t oh = 0; oh < OH; oh++) {
                const real *r0 = x + 2 * oh * xs2, *r1 = r0 + xs2;
                real *vr = vv + oh * W2;
                int32_t *ir = vi + oh * W2;
                const int32_t i0 = (int32_t)(2 * oh * W), i1 = (int32_t)((2 * oh + 1) * W);
                if (xs3 == 1) {
                    int64_t iw = 0;
#if defined(QG_AVX2_CODE)
                    if (sizeof(real) == 4 && QG_USE_AVX2())
                        iw = max_cols_avx2((const float *)r0, (const float *)r1, W2, i0, i1, (float *)vr, ir);
#endif
                    for (; iw < W2; iw++) {
                        const real a = r0[iw], c = r1[iw];
                        const bool cw = (c > a) | (c != c);
                        vr[iw] = cw ? c : a;
                        ir[iw] = (cw ? i1 : i0) + (int32_t)iw;
                    }
                } else {
                    for (int64_t iw = 0; iw < W2; iw++) {
                        const real a = r0[iw * xs3], c = r1[iw * xs3];
                        const bool cw = (c > a) | (c != c);
                        vr[iw] = cw ? c : a;
                        ir[iw] = (cw ? i1 : i0) + (int32_t)iw;
                    }
                }
            }
            const int64_t Q = OH * OW;
            int64_t q = 0;
#if defined(QG_AVX2_CODE)
            if (sizeof(real) == 4 && QG_USE_AVX2()) q = max_pairs_avx2((const float *)vv, vi, Q, (float *)o, idx);
#endif
            for (; q < Q; q++) {
                const real L = vv[2 * q], R = vv[2 * q + 1];
                const int32_t li = vi[2 * q], ri = vi[2 * q + 1];
                const bool lnum = L == L, rnum = R == R, rnan = R != R;
                const bool rw = (rnan & (lnum | (ri > li))) | (rnum & lnum & ((R > L) | ((R == L) & (ri < li))));
                o[q] = rw ? R : L;
                idx[q] = rw ? ri : li;
            }
        } else {
            for (int64_t oh = 0; oh < g->OH; oh++) {
                int64_t ih0 = oh * g->sh - g->ph, ih1 = ih0 + (g->kh - 1) * g->dh + 1;
                if (ih1 > H) ih1 = H;
                while (ih0 < 0) ih0 += g->dh;
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t iw0 = ow * g->sw - g->pw, iw1 = iw0 + (g->kw - 1) * g->dw + 1;
                    if (iw1 > W) iw1 = W;
                    while (iw0 < 0) iw0 += g->dw;
                    real m = -INFINITY;
                    int64_t k = ih0 < ih1 && iw0 < iw1 ? ih0 * W + iw0 : -1;
                    for (int64_t ih = ih0; ih < ih1; ih += g->dh)
                        for (int64_t iw = iw0; iw < iw1; iw += g->dw) {
                            real v = x[ih * xs2 + iw * xs3];
                            if (v > m || v != v) m = v, k = ih * W + iw;
                        }
                    o[oh * OW + ow] = m;
                    idx[oh * OW + ow] = (int32_t)k;
                }
            }
        }
    });
}

static qg_status max_pool_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    bool fresh;
    qg_tensor *gxt = qg__grad_for_write(x, &fresh);
    if (!gxt) return QG_ENOMEM;
    const pool_ctx *c = n->ctx;
    const pool_geom *g = &c->g;
    const int64_t NC = g->N * g->C, HW = g->H * g->W, P = g->OH * g->OW;
    char *gxp = qg__data(gxt);
    const char *gyp = qg__data(n->out->grad);
    const int32_t *idx = c->idx;
    int nt = qg__threads_for(NC * (P + HW));
    (void)nt; /* only the OpenMP pragmas use it */
    QG_FLOAT_DISPATCH(x->dtype, {
        real *gx = (real *)gxp;
        const real *gy = (const real *)gyp;
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t q = 0; q < NC; q++) { /* gx[q][idx] += gy[q][o]; a fresh plane zeroed first */
            real *d = gx + q * HW;
            const real *s = gy + q * P;
            const int32_t *ix = idx + q * P;
            if (fresh) memset(d, 0, sizeof(real) * (size_t)HW);
            for (int64_t o = 0; o < P; o++)
                if (ix[o] >= 0) d[ix[o]] += s[o];
        }
    });
    return QG_OK;
}

qg_tensor *qg_max_pool2d(const qg_tensor *x, const int *kernel, const int *stride, const int *padding,
                         const int *dilation, bool ceil_mode) {
    pool_geom g;
    if (pool_input("max_pool2d", x, &g) || pool_window("max_pool2d", x, kernel, stride, padding, dilation, ceil_mode, &g))
        return NULL;
    if (g.H * g.W > INT32_MAX)
        return qg__err(QG_ESHAPE, "max_pool2d: planes of more than 2^31 elements are not supported"), NULL;
    if (x->quant) return qpool(QPOOL_MAX, "max_pool2d", x, &g, ceil_mode);
    qg_tensor *out = pool_output("max_pool2d", x, &g);
    const int64_t NC = g.N * g.C, P = g.OH * g.OW;
    int32_t *idx = qg__tape_alloc(sizeof(int32_t) * (size_t)(NC * P + 1));
    if (!out || !idx) return NULL;
    const char *xd = qg__data(x);
    char *od = qg__data(out);
    size_t es = qg_dtype_size(x->dtype);
    int nt = qg__threads_for(qg__sat_mul(NC * P, g.kh * g.kw + 1));
    /* per-thread scratch of the 2x2 path: column winners and their indices */
    size_t ss = max_2x2(&g) ? (((size_t)(2 * P) * es + 63) & ~(size_t)63) + (size_t)(2 * P) * sizeof(int32_t) + 64 : 0;
    char *scr = ss ? qg__tape_alloc(ss * (size_t)nt) : NULL;
    if (ss && !scr) return NULL;
    _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
    for (int64_t q = 0; q < NC; q++)
        max_plane(&g, x->dtype, xd + (size_t)plane_off(&g, q) * es, od + (size_t)(q * P) * es, idx + q * P,
                  scr ? scr + (size_t)qg__thread_id() * ss : NULL);
    if (qg__needs_grad(1, &x)) {
        if (!record_pool("max_pool2d", max_pool_backward, out, x, &g, idx)) return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- avg_pool2d */

/* Window of output (oh, ow) clipped to the input, and its divisor (PyTorch's rule). */
typedef struct {
    int64_t h0, h1, w0, w1, div;
} avg_win;

static inline avg_win avg_window(const pool_geom *g, int64_t oh, int64_t ow) {
    avg_win a;
    a.h0 = oh * g->sh - g->ph, a.w0 = ow * g->sw - g->pw;
    a.h1 = a.h0 + g->kh, a.w1 = a.w0 + g->kw;
    if (a.h1 > g->H + g->ph) a.h1 = g->H + g->ph;
    if (a.w1 > g->W + g->pw) a.w1 = g->W + g->pw;
    int64_t pool_size = (a.h1 - a.h0) * (a.w1 - a.w0);
    if (a.h0 < 0) a.h0 = 0;
    if (a.w0 < 0) a.w0 = 0;
    if (a.h1 > g->H) a.h1 = g->H;
    if (a.w1 > g->W) a.w1 = g->W;
    a.div = g->divisor ? g->divisor : g->count_include_pad ? pool_size : (a.h1 - a.h0) * (a.w1 - a.w0);
    return a;
}

/* x plane: (H, W) at strides (xs2, xs3) -> out: (OH, OW) */
static void avg_plane(const pool_geom *g, qg_dtype dt, const char *xp, char *op) {
    const int64_t xs2 = g->xs[2], xs3 = g->xs[3];
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)xp;
        real *o = (real *)op;
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++) {
                avg_win a = avg_window(g, oh, ow);
                real s = 0;
                if (a.h0 < a.h1 && a.w0 < a.w1) {
                    for (int64_t ih = a.h0; ih < a.h1; ih++)
                        for (int64_t iw = a.w0; iw < a.w1; iw++) s += x[ih * xs2 + iw * xs3];
                    s = s / (real)a.div;
                }
                o[oh * g->OW + ow] = s;
            }
    });
}

static qg_status avg_pool_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    qg_tensor *gxt = qg__grad_of(x);
    if (!gxt) return QG_ENOMEM;
    const pool_geom *g = &((const pool_ctx *)n->ctx)->g;
    const int64_t NC = g->N * g->C, HW = g->H * g->W, P = g->OH * g->OW, W = g->W;
    char *gxp = qg__data(gxt);
    const char *gyp = qg__data(n->out->grad);
    int nt = qg__threads_for(qg__sat_mul(NC * P, g->kh * g->kw + 1) / 2 + NC * HW / 2);
    (void)nt; /* only the OpenMP pragmas use it */
    QG_FLOAT_DISPATCH(x->dtype, {
        real *gx = (real *)gxp;
        const real *gy = (const real *)gyp;
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t q = 0; q < NC; q++) { /* gx[q][window] += gy[q][o] / divisor */
            real *d = gx + q * HW;
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    avg_win a = avg_window(g, oh, ow);
                    if (a.h0 >= a.h1 || a.w0 >= a.w1) continue;
                    const real delta = gy[q * P + oh * g->OW + ow] / (real)a.div;
                    for (int64_t ih = a.h0; ih < a.h1; ih++)
                        for (int64_t iw = a.w0; iw < a.w1; iw++) d[ih * W + iw] += delta;
                }
        }
    });
    return QG_OK;
}

qg_tensor *qg_avg_pool2d(const qg_tensor *x, const int *kernel, const int *stride, const int *padding,
                         bool ceil_mode, bool count_include_pad, int divisor_override) {
    pool_geom g;
    if (pool_input("avg_pool2d", x, &g) || pool_window("avg_pool2d", x, kernel, stride, padding, NULL, ceil_mode, &g))
        return NULL;
    g.divisor = divisor_override;
    g.count_include_pad = count_include_pad;
    if (x->quant) return qpool(QPOOL_AVG, "avg_pool2d", x, &g, ceil_mode);
    qg_tensor *out = pool_output("avg_pool2d", x, &g);
    if (!out) return NULL;
    const int64_t NC = g.N * g.C, P = g.OH * g.OW;
    const char *xd = qg__data(x);
    char *od = qg__data(out);
    size_t es = qg_dtype_size(x->dtype);
    int nt = qg__threads_for(qg__sat_mul(NC * P, g.kh * g.kw + 1));
    (void)nt; /* only the OpenMP pragmas use it */
    _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
    for (int64_t q = 0; q < NC; q++)
        avg_plane(&g, x->dtype, xd + (size_t)plane_off(&g, q) * es, od + (size_t)(q * P) * es);
    if (qg__needs_grad(1, &x)) {
        if (!record_pool("avg_pool2d", avg_pool_backward, out, x, &g, NULL)) return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- adaptive_avg_pool2d */

/* floor(o*in/out) and ceil((o+1)*in/out) */
static inline int64_t ad_start(int64_t o, int64_t out, int64_t in) { return (o / out) * in + ((o % out) * in) / out; }
static inline int64_t ad_end(int64_t o, int64_t out, int64_t in) { return 1 + ((o + 1) * in - 1) / out; }

/* x plane: (H, W) at strides (xs2, xs3) -> out: (OH, OW) */
static void adaptive_plane(const pool_geom *g, qg_dtype dt, const char *xp, char *op) {
    const int64_t xs2 = g->xs[2], xs3 = g->xs[3];
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)xp;
        real *o = (real *)op;
        for (int64_t oh = 0; oh < g->OH; oh++) {
            int64_t h0 = ad_start(oh, g->OH, g->H), h1 = ad_end(oh, g->OH, g->H);
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t w0 = ad_start(ow, g->OW, g->W), w1 = ad_end(ow, g->OW, g->W);
                real s = 0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) s += x[ih * xs2 + iw * xs3];
                o[oh * g->OW + ow] = s / (real)(h1 - h0) / (real)(w1 - w0);
            }
        }
    });
}

static qg_status adaptive_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    qg_tensor *gxt = qg__grad_of(x);
    if (!gxt) return QG_ENOMEM;
    const pool_geom *g = &((const pool_ctx *)n->ctx)->g;
    const int64_t NC = g->N * g->C, HW = g->H * g->W, P = g->OH * g->OW, W = g->W;
    char *gxp = qg__data(gxt);
    const char *gyp = qg__data(n->out->grad);
    int nt = qg__threads_for(NC * (P + 2 * HW));
    (void)nt; /* only the OpenMP pragmas use it */
    QG_FLOAT_DISPATCH(x->dtype, {
        real *gx = (real *)gxp;
        const real *gy = (const real *)gyp;
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t q = 0; q < NC; q++) {
            real *d = gx + q * HW;
            for (int64_t oh = 0; oh < g->OH; oh++) {
                int64_t h0 = ad_start(oh, g->OH, g->H), h1 = ad_end(oh, g->OH, g->H);
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    int64_t w0 = ad_start(ow, g->OW, g->W), w1 = ad_end(ow, g->OW, g->W);
                    const real delta = gy[q * P + oh * g->OW + ow] / (real)(h1 - h0) / (real)(w1 - w0);
                    for (int64_t ih = h0; ih < h1; ih++)
                        for (int64_t iw = w0; iw < w1; iw++) d[ih * W + iw] += delta;
                }
            }
        }
    });
    return QG_OK;
}

qg_tensor *qg_adaptive_avg_pool2d(const qg_tensor *x, int64_t oh, int64_t ow) {
    pool_geom g;
    if (pool_input("adaptive_avg_pool2d", x, &g)) return NULL;
    if (oh < 0 || ow < 0)
        return qg__err(QG_EINVAL, "adaptive_avg_pool2d: output size must be non-negative, got (%lld, %lld)",
                       (long long)oh, (long long)ow), NULL;
    g.OH = oh, g.OW = ow;
    if (x->quant) return qpool(QPOOL_ADAPTIVE, "adaptive_avg_pool2d", x, &g, false);
    qg_tensor *out = pool_output("adaptive_avg_pool2d", x, &g);
    if (!out) return NULL;
    const int64_t NC = g.N * g.C, P = g.OH * g.OW;
    const char *xd = qg__data(x);
    char *od = qg__data(out);
    size_t es = qg_dtype_size(x->dtype);
    int nt = qg__threads_for(NC * (P + g.H * g.W));
    (void)nt; /* only the OpenMP pragmas use it */
    _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
    for (int64_t q = 0; q < NC; q++)
        adaptive_plane(&g, x->dtype, xd + (size_t)plane_off(&g, q) * es, od + (size_t)(q * P) * es);
    if (qg__needs_grad(1, &x)) {
        if (!record_pool("adaptive_avg_pool2d", adaptive_backward, out, x, &g, NULL)) return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- quantized planes */

/* PyTorch's quantized adaptive windows: a float32 division */
static inline int64_t qad_start(int64_t o, int64_t out, int64_t in) { return (int64_t)floorf((float)(o * in) / (float)out); }
static inline int64_t qad_end(int64_t o, int64_t out, int64_t in) { return (int64_t)ceilf((float)((o + 1) * in) / (float)out); }

/* One average from its window's integer sums: sq = sum of q, sz = sum of (q - z). */
static int32_t qaverage(const qpool_args *a, int64_t sq, int64_t sz, int64_t div, int64_t kh, int64_t kw) {
    if (a->rule == QRULE_QNNPACK) { /* clamp(rne(F(F(acc) ms)) + z) */
        float v = (float)sz * a->ms;
        return qclamp((int64_t)nearbyintf(v) + a->z, a->lo, a->hi);
    }
    if (a->k == QPOOL_ADAPTIVE) {
        if (a->rule == QRULE_NCHW) { /* rne(F(F(sum q) F(F(1/kH)/kW))): the raw integers */
            float r = 1.0f / (float)kh;
            r = r / (float)kw;
            float v = (float)sq * r;
            return qclamp((int64_t)nearbyintf(v), a->lo, a->hi);
        }
        float m = 1.0f / (float)(kh * kw);
        float v = (float)sz * m;
        return qclamp((int64_t)nearbyintf(v) + a->z, a->lo, a->hi);
    }
    const float m = 1.0f / (float)div;
    float v = (float)sz * m;
    if (a->rule == QRULE_NHWC) return qclamp((int64_t)nearbyintf(v) + a->z, a->lo, a->hi);
    float w = v + (float)a->z; /* NCHW: the zero point before rounding */
    float r = nearbyintf(w);
    return r < (float)a->lo ? a->lo : r > (float)a->hi ? a->hi : (int32_t)r;
}

#if defined(__SSE2__)
/* 2x2 max of 16 input bytes of two rows -> 8 outputs: the larger of each row pair,
 * then of each column pair (even and odd bytes as 16-bit lanes, packed back). */
static inline __m128i qmax8(__m128i r0, __m128i r1) {
    const __m128i v = _mm_max_epu8(r0, r1);
    const __m128i m = _mm_max_epi16(_mm_and_si128(v, _mm_set1_epi16(0xff)), _mm_srli_epi16(v, 8));
    return _mm_packus_epi16(m, m);
}
#endif

/* The same on quint8, vectorised: 8 (or 4) outputs at a time, the row's last group
 * overlapping the one before rather than a scalar tail. Loads stay within the rows. */
static void qmax_2x2_u8(const pool_geom *g, const uint8_t *x, uint8_t *o) {
    const int64_t xs2 = g->xs[2], OW = g->OW;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const uint8_t *r0 = x + 2 * oh * xs2, *r1 = r0 + xs2;
        uint8_t *orow = o + oh * OW;
#if defined(__SSE2__)
        if (OW >= 8) {
            for (int64_t ow = 0;; ow += 8) {
                if (ow + 8 > OW) ow = OW - 8;
                __m128i m = qmax8(_mm_loadu_si128((const __m128i *)(const void *)(r0 + 2 * ow)),
                                  _mm_loadu_si128((const __m128i *)(const void *)(r1 + 2 * ow)));
                _mm_storel_epi64((__m128i *)(void *)(orow + ow), m);
                if (ow + 8 == OW) break;
            }
            continue;
        }
        if (OW >= 4) {
            for (int64_t ow = 0;; ow += 4) {
                if (ow + 4 > OW) ow = OW - 4;
                __m128i m = qmax8(_mm_loadl_epi64((const __m128i *)(const void *)(r0 + 2 * ow)),
                                  _mm_loadl_epi64((const __m128i *)(const void *)(r1 + 2 * ow)));
                int32_t v = _mm_cvtsi128_si32(m);
                memcpy(orow + ow, &v, 4);
                if (ow + 4 == OW) break;
            }
            continue;
        }
#endif
        for (int64_t ow = 0; ow < OW; ow++) {
            uint8_t a0 = r0[2 * ow] > r0[2 * ow + 1] ? r0[2 * ow] : r0[2 * ow + 1];
            uint8_t a1 = r1[2 * ow] > r1[2 * ow + 1] ? r1[2 * ow] : r1[2 * ow + 1];
            orow[ow] = a0 > a1 ? a0 : a1;
        }
    }
}

static void qpool_plane(const qpool_args *a, const char *x, char *o) {
    const pool_geom *g = a->g;
    const int64_t xs2 = g->xs[2], xs3 = g->xs[3], H = g->H, W = g->W;
    const bool u8 = a->u8;
    if (a->k == QPOOL_MAX && u8 && xs3 == 1 && max_2x2(g)) {
        qmax_2x2_u8(g, (const uint8_t *)x, (uint8_t *)o);
        return;
    }
    for (int64_t oh = 0; oh < g->OH; oh++)
        for (int64_t ow = 0; ow < g->OW; ow++) {
            int32_t v;
            if (a->k == QPOOL_MAX) {
                int64_t ih0 = oh * g->sh - g->ph, ih1 = ih0 + (g->kh - 1) * g->dh + 1;
                int64_t iw0 = ow * g->sw - g->pw, iw1 = iw0 + (g->kw - 1) * g->dw + 1;
                if (ih1 > H) ih1 = H;
                if (iw1 > W) iw1 = W;
                while (ih0 < 0) ih0 += g->dh;
                while (iw0 < 0) iw0 += g->dw;
                v = a->lo;
                for (int64_t ih = ih0; ih < ih1; ih += g->dh)
                    for (int64_t iw = iw0; iw < iw1; iw += g->dw) {
                        int32_t e = qload(x, u8, ih * xs2 + iw * xs3);
                        v = e > v ? e : v;
                    }
            } else {
                int64_t h0, h1, w0, w1, div = 1;
                if (a->k == QPOOL_AVG) {
                    avg_win w = avg_window(g, oh, ow);
                    h0 = w.h0, h1 = w.h1, w0 = w.w0, w1 = w.w1, div = w.div;
                } else {
                    h0 = qad_start(oh, g->OH, H), h1 = qad_end(oh, g->OH, H);
                    w0 = qad_start(ow, g->OW, W), w1 = qad_end(ow, g->OW, W);
                }
                int64_t sq = 0, cnt = (h1 - h0) * (w1 - w0);
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) sq += qload(x, u8, ih * xs2 + iw * xs3);
                v = qaverage(a, sq, sq - cnt * a->z, div, h1 - h0, w1 - w0);
            }
            if (u8)
                ((uint8_t *)o)[oh * g->OW + ow] = (uint8_t)v;
            else
                ((int8_t *)o)[oh * g->OW + ow] = (int8_t)v;
        }
}
