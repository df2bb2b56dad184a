/* Fake-quantize ops, forward and backward, with the arithmetic of PyTorch 1.13's CPU
 * kernels (quantized/cpu/kernels/QuantizedOpKernels.cpp, FakeQuantPerTensorAffine.cpp,
 * FakeQuantPerChannelAffine.cpp), so float32 results match bit for bit:
 *
 * fake_quantize_per_tensor / per_channel (integer zero point), element x -> y:
 *   inv = 1.0f / scale (float); q = rint(x * inv) + (real)zp   -- in x's dtype
 *   y = (clamp(q, qmin, qmax) - zp) * scale,  mask = qmin <= q <= qmax
 *   PyTorch converts q to int64 before clamping; on x86 a q that does not fit (NaN,
 *   +-inf, |q| >= 2^63) becomes INT64_MIN, so such elements give (qmin - zp) * scale
 *   and mask 0. That is reproduced (measured: +inf -> -128 at [-128, 127]).
 *   The clamp and the product are computed in double by PyTorch; in float they are
 *   exact whenever |qmin|, |qmax|, |zp| and |qmax - zp|, |qmin - zp| are <= 2^24
 *   ("narrow"), which the f32 fast path requires; other ranges use double.
 * per-channel with a floating zero point (PyTorch's other branch): the zero point is
 *   added before rounding, q = lrintf(fma(x, inv, zp)) (PyTorch's AVX2/AVX512 kernels are
 *   compiled with FMA contraction; for f64 x the fused sum is rounded to float first, as
 *   lrintf's argument), y = (clamp(q) - zp) * scale in double; zp is not range checked.
 * Backward (straight-through estimator): dx = dy * mask; the mask (u8, C order) is kept
 *   from the forward only when a gradient is needed.
 *
 * Learnable (LSQ) ops, PyTorch's _fake_quantize_learnable_per_{tensor,channel}_affine:
 *   forward: the integer path with zp = clamp(rint(zero_point)) (per tensor: rint, then
 *   clamp, then truncate; per channel: round half even then clamp);
 *   backward, per element, with the backward zero point zb — per tensor
 *   trunc(clamp(zero_point + 0.5f)) (not the forward one: 2.5 -> 3 here, 2 forward),
 *   per channel clamp(rint(zero_point)) — in float with PyTorch's contractions:
 *     t = rint(fma(x, inv, zb)); in = qmin <= t <= qmax (t beyond int64 counts as below)
 *     dx = dy * in
 *     in range: dscale = ((dy * fma(clamp(t) - zb, scale, -x)) * inv) * g, dzp = 0
 *     below/above: dscale = (dy * (qmin|qmax - zb)) * g, dzp = ((-dy) * scale) * g
 *   with g = (float)grad_factor; dscale and dzp are summed over all elements (per
 *   channel: over all but the axis) in double, where PyTorch sums floats: the sums may
 *   differ from PyTorch's in the last bits. (PyTorch returns the scale and zero point
 *   themselves as their "gradients" for an empty input; here they get 0.)
 *   PyTorch's backward accepts float32 only; f64 here runs the same formulas in double
 *   with the float scale and reciprocal.
 *
 * Layout: x is read as a contiguous (outer, C, inner) block (C = 1 per tensor; a
 * non-contiguous x is copied once). Threads split the flat range; each run of one
 * channel has scalar parameters, and when runs are short (inner < FQ_INNER_MIN) the
 * parameters are expanded to one period of C * inner entries instead, so the inner
 * loops stay vectorizable either way. */
#include <tgmath.h>

#include "kernels/isa.h"
#include "fq_internal.h"
#include "qgrad/qat.h"

/* No implicit contraction (clang contracts a*b+c by default): the only fused
 * multiply-adds are the explicit fma() calls, where PyTorch's kernels have them. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define FQ_INNER_MIN 32
#define FQ_BIG 0x1p63 /* int64 overflow threshold of PyTorch's casts */

/* real: x's dtype; wreal: the dtype of the clamp and the output product (float when
 * the range is narrow, else double). */
#define FQ_DISPATCH(dt, wide, ...)                          \
    do {                                                    \
        if ((dt) == QG_F32 && !(wide)) {                    \
            typedef float real;                             \
            typedef float wreal;                            \
            __VA_ARGS__                                     \
        } else if ((dt) == QG_F32) {                        \
            typedef float real;                             \
            typedef double wreal;                           \
            __VA_ARGS__                                     \
        } else {                                            \
            typedef double real;                            \
            typedef double wreal;                           \
            __VA_ARGS__                                     \
        }                                                   \
    } while (0)

/* ---------------------------------------------------------------- element formulas */

/* Integer zero point. x -> y, m (0/1). zr: zp in real (as PyTorch's int + float rounds
 * it), zw, s, lo, hi in wreal. */
#define FQ_INT(xv, inv, zr, zw, s, lo, hi, yv, mv)                            \
    do {                                                                      \
        real q_ = rint((xv) * (inv)) + (zr);                                  \
        wreal w_ = (wreal)q_;                                                 \
        wreal c_ = w_ > (hi) ? (w_ < (wreal)FQ_BIG ? (hi) : (lo)) : w_;       \
        c_ = c_ >= (lo) ? c_ : (lo);                                          \
        (yv) = (real)((c_ - (zw)) * (s));                                     \
        (mv) = (uint8_t)((w_ >= (lo)) & (w_ <= (hi)));                        \
    } while (0)

/* Floating zero point (per channel): rounding after adding zp, lrintf's float argument. */
#define FQ_FLT(xv, inv, zr, zw, s, lo, hi, yv, mv)                            \
    do {                                                                      \
        float t_ = (float)fma((xv), (inv), (zr));                             \
        wreal w_ = (wreal)rint(t_);                                           \
        wreal c_ = w_ > (hi) ? (w_ < (wreal)FQ_BIG ? (hi) : (lo)) : w_;       \
        c_ = c_ >= (lo) ? c_ : (lo);                                          \
        (yv) = (real)((c_ - (zw)) * (s));                                     \
        (mv) = (uint8_t)((w_ >= (lo)) & (w_ <= (hi)));                        \
    } while (0)

/* LSQ backward of one element: x, dy -> dx, ds, dz (see the top). */
#define LSQ_BW(xv, dyv, inv, zr, zw, s, lo, hi, dsmall, dbig, gf, dxv, dsv, dzv)       \
    do {                                                                               \
        real t_ = rint(fma((xv), (inv), (zr)));                                        \
        wreal w_ = (wreal)t_;                                                          \
        int in_ = (w_ >= (lo)) & (w_ <= (hi));                                         \
        int above_ = (w_ > (hi)) & (w_ < (wreal)FQ_BIG);                               \
        wreal c_ = in_ ? w_ : (above_ ? (hi) : (lo));                                  \
        real cz_ = (real)(c_ - (zw));                                                  \
        (dxv) = (dyv) * (real)in_;                                                     \
        real din_ = (((dyv) * fma(cz_, (s), -(xv))) * (inv)) * (gf);                   \
        real dout_ = ((dyv) * (above_ ? (dbig) : (dsmall))) * (gf);                    \
        (dsv) = in_ ? din_ : dout_;                                                    \
        (dzv) = in_ ? (real)0 : ((-(dyv)) * (s)) * (gf);                               \
    } while (0)

/* ---------------------------------------------------------------- layout, parameters */

/* Per-channel constants (C entries) as read from the user's tensors. */
typedef struct {
    const float *scale;   /* (float)scale[c] */
    const double *zp;     /* the zero point: integer path integral, float path (float)zp */
    int64_t qmin, qmax;
    bool float_zp;        /* FQ_FLT instead of FQ_INT */
} fq_params;

/* Can the clamp and the output product run in float without changing a bit? */
static bool narrow_range(const fq_params *p, int64_t C) {
    const double lim = 16777216.0; /* 2^24 */
    if (p->float_zp || fabs((double)p->qmin) > lim || fabs((double)p->qmax) > lim) return false;
    for (int64_t c = 0; c < C; c++) {
        double z = p->zp[c];
        if (fabs(z) > lim || fabs((double)p->qmax - z) > lim || fabs((double)p->qmin - z) > lim) return false;
    }
    return true;
}


/* The period over which per-element parameters repeat: 1 (scalar per run) when runs
 * are long, else C * inner. */
static int64_t param_period(const fq_layout *L) {
    return (L->C == 1 || L->inner >= FQ_INNER_MIN) ? 1 : L->C * L->inner;
}

/* ---------------------------------------------------------------- forward kernel */

/* y (contiguous, x's shape) = fake_quant(x), mask (u8) if not NULL. x contiguous. */
QG_HOT static qg_status fq_forward_kernel(qg_dtype dt, const fq_layout *L, const fq_params *p, const char *x_, char *y_,
                                   uint8_t *mask) {
    if (L->n == 0) return QG_OK;
    const bool wide = !narrow_range(p, L->C);
    const int64_t period = param_period(L), np = period == 1 ? L->C : period;
    const int nt = qg__threads_for(L->n);
    FQ_DISPATCH(dt, wide, {
        real *inv = qg__tape_alloc(sizeof(real) * (size_t)np), *zr = qg__tape_alloc(sizeof(real) * (size_t)np);
        wreal *zw = qg__tape_alloc(sizeof(wreal) * (size_t)np), *sc = qg__tape_alloc(sizeof(wreal) * (size_t)np);
        if (!inv || !zr || !zw || !sc) return qg_last_status();
        for (int64_t j = 0; j < np; j++) {
            int64_t c = period == 1 ? j : (j / L->inner) % L->C;
            inv[j] = (real)(1.0f / p->scale[c]);
            zr[j] = (real)p->zp[c];
            zw[j] = (wreal)p->zp[c];
            sc[j] = (wreal)p->scale[c];
        }
        const wreal lo = (wreal)p->qmin, hi = (wreal)p->qmax;
        const real *X = (const real *)x_;
        real *Y = (real *)y_;
        const bool fz = p->float_zp;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int t = 0; t < nt; t++) {
            int64_t a = qg__split_at(L->n, t, nt), b = qg__split_at(L->n, t + 1, nt);
            FQ_WALK(L, period, a, b, {
                const real *xs = X + i;
                real *ys = Y + i;
                uint8_t *ms = mask ? mask + i : NULL;
                if (period == 1) { /* x: (len) with channel pj's constants */
                    const real iv = inv[pj], z1 = zr[pj];
                    const wreal z2 = zw[pj], s = sc[pj];
                    if (fz) {
                        for (int64_t k = 0; k < len; k++) {
                            uint8_t m_;
                            FQ_FLT(xs[k], iv, z1, z2, s, lo, hi, ys[k], m_);
                            if (ms) ms[k] = m_;
                        }
                    } else if (ms) {
                        for (int64_t k = 0; k < len; k++) FQ_INT(xs[k], iv, z1, z2, s, lo, hi, ys[k], ms[k]);
                    } else {
                        for (int64_t k = 0; k < len; k++) {
                            uint8_t m_;
                            FQ_INT(xs[k], iv, z1, z2, s, lo, hi, ys[k], m_);
                            (void)m_;
                        }
                    }
                } else { /* x: (len) against the parameter period from pj */
                    const real *iv = inv + pj, *z1 = zr + pj;
                    const wreal *z2 = zw + pj, *s = sc + pj;
                    if (fz) {
                        for (int64_t k = 0; k < len; k++) {
                            uint8_t m_;
                            FQ_FLT(xs[k], iv[k], z1[k], z2[k], s[k], lo, hi, ys[k], m_);
                            if (ms) ms[k] = m_;
                        }
                    } else if (ms) {
                        for (int64_t k = 0; k < len; k++)
                            FQ_INT(xs[k], iv[k], z1[k], z2[k], s[k], lo, hi, ys[k], ms[k]);
                    } else {
                        for (int64_t k = 0; k < len; k++) {
                            uint8_t m_;
                            FQ_INT(xs[k], iv[k], z1[k], z2[k], s[k], lo, hi, ys[k], m_);
                            (void)m_;
                        }
                    }
                }
            });
        }
    });
    return QG_OK;
}

/* ---------------------------------------------------------------- STE op */

/* gx += g * mask (all C order, contiguous); gx = g * mask into a fresh buffer */
QG_HOT static qg_status ste_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    bool fresh;
    qg_tensor *gxt = qg__grad_for_write(x, &fresh);
    if (!gxt) return QG_ENOMEM;
    const int64_t N = qg_tensor_numel(x);
    const uint8_t *m = (const uint8_t *)qg__data(n->saved[0]);
    char *gx_ = qg__data(gxt);
    const char *g_ = qg__data(n->out->grad);
    const int nt = qg__threads_for(N);
    QG_FLOAT_DISPATCH(x->dtype, {
        real *gx = (real *)gx_;
        const real *g = (const real *)g_;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int t = 0; t < nt; t++) {
            int64_t a = qg__split_at(N, t, nt), b = qg__split_at(N, t + 1, nt);
            if (fresh)
                for (int64_t i = a; i < b; i++) gx[i] = g[i] * (real)m[i];
            else
                for (int64_t i = a; i < b; i++) gx[i] += g[i] * (real)m[i];
        }
    });
    return QG_OK;
}

/* x copied to a contiguous tape tensor unless it already is one. */
static const qg_tensor *contiguous_x(const qg_tensor *x) {
    if (qg_tensor_is_contiguous(x)) return x;
    qg_tensor *c = qg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (!c || qg_tensor_copy_(c, x)) return NULL;
    return c;
}

static qg_status check_qrange(const char *op, int64_t qmin, int64_t qmax) {
    if (qmin > qmax)
        return qg__err(QG_EINVAL, "%s: quant_min %lld should be less than or equal to quant_max %lld", op,
                       (long long)qmin, (long long)qmax);
    if (qmin < INT32_MIN || qmax > INT32_MAX)
        return qg__err(QG_EINVAL, "%s: range [%lld, %lld] exceeds the int32 range", op, (long long)qmin,
                       (long long)qmax);
    return QG_OK;
}

/* The op: y = fake_quant(x) with the STE node when x needs a gradient. */
static qg_tensor *fq_op(const char *op, const qg_tensor *x, int axis, const fq_params *p) {
    const qg_tensor *xc = contiguous_x(x);
    if (!xc) return NULL;
    fq_layout L = qg__fq_layout_of(xc, axis);
    qg_tensor *out = qg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    const bool grad = qg__needs_grad(1, &x);
    qg_tensor *mask = grad ? qg__tape_tensor(QG_U8, x->ndim, x->shape) : NULL;
    if (grad && !mask) return NULL;
    if (fq_forward_kernel(x->dtype, &L, p, qg__data(xc), qg__data(out), mask ? (uint8_t *)qg__data(mask) : NULL))
        return NULL;
    if (grad) {
        qg_node *n = qg__record(op, ste_backward, out, 1, &x);
        if (!n) return NULL;
        n->saved[0] = mask;
    }
    return out;
}

qg_tensor *qg_fake_quantize_per_tensor(const qg_tensor *x, double scale, int64_t zero_point, int64_t qmin,
                                       int64_t qmax) {
    const char *op = "fake_quantize_per_tensor";
    if (qg__check_float(op, x) || check_qrange(op, qmin, qmax)) return NULL;
    if (zero_point < qmin || zero_point > qmax)
        return qg__err(QG_EINVAL, "%s: zero_point %lld must be between quant_min %lld and quant_max %lld", op,
                       (long long)zero_point, (long long)qmin, (long long)qmax), NULL;
    float s = (float)scale;
    double z = (double)zero_point;
    fq_params p = {&s, &z, qmin, qmax, false};
    return fq_op(op, x, -1, &p);
}

/* ---------------------------------------------------------------- per-channel parameters */

/* Reads scale (C) and zero_point (C) of any float dtype (zero_point also integer) into
 * tape arrays; checks the shapes. *float_zp tells whether zero_point is floating. */
static qg_status read_channel_params(const char *op, const qg_tensor *x, int axis, const qg_tensor *scale,
                                     const qg_tensor *zero_point, float **s_out, double **z_out, bool *float_zp) {
    char a[128], b[128];
    const int64_t C = x->shape[axis];
    if (qg__live(op, scale) || qg__live(op, zero_point)) return QG_ESTATE;
    if (!qg__is_float(scale->dtype))
        return qg__err(QG_EDTYPE, "%s: scale must be f32 (or f64), got %s", op, qg_dtype_name(scale->dtype));
    if (zero_point->dtype != QG_I32 && zero_point->dtype != QG_I64 && !qg__is_float(zero_point->dtype))
        return qg__err(QG_EDTYPE, "%s: zero_point must be i32 or f32, got %s", op, qg_dtype_name(zero_point->dtype));
    if (scale->ndim != 1 || scale->shape[0] != C || zero_point->ndim != 1 || zero_point->shape[0] != C)
        return qg__err(QG_ESHAPE, "%s: scale %s and zero_point %s must both be (%lld), the size of dim %d of input %s",
                       op, qg_shape_str(scale, a, sizeof a), qg_shape_str(zero_point, b, sizeof b), (long long)C,
                       axis, qg_shape_str(x, (char[128]){0}, 128));
    float *s = qg__tape_alloc(sizeof(float) * (size_t)(C ? C : 1));
    double *z = qg__tape_alloc(sizeof(double) * (size_t)(C ? C : 1));
    if (!s || !z) return qg_last_status();
    const size_t ss = qg_dtype_size(scale->dtype), zs = qg_dtype_size(zero_point->dtype);
    *float_zp = qg__is_float(zero_point->dtype);
    for (int64_t c = 0; c < C; c++) {
        s[c] = (float)qg__load(qg__data(scale) + c * scale->strides[0] * (int64_t)ss, scale->dtype);
        double v = qg__load(qg__data(zero_point) + c * zero_point->strides[0] * (int64_t)zs, zero_point->dtype);
        z[c] = *float_zp ? (double)(float)v : v;
    }
    *s_out = s, *z_out = z;
    return QG_OK;
}

static qg_status check_axis(const char *op, const qg_tensor *x, int axis, int *ax) {
    char a[128];
    if (x->ndim == 0)
        return qg__err(QG_ESHAPE, "%s: input %s has no dimension %d to quantize along", op,
                       qg_shape_str(x, a, sizeof a), axis);
    return qg__dim(op, axis, x->ndim, ax);
}

qg_tensor *qg_fake_quantize_per_channel(const qg_tensor *x, const qg_tensor *scale, const qg_tensor *zero_point,
                                        int axis, int64_t qmin, int64_t qmax) {
    const char *op = "fake_quantize_per_channel";
    if (qg__check_float(op, x)) return NULL;
    if (!scale || !zero_point) return qg__err_null(op), NULL;
    int ax;
    float *s = NULL;
    double *z = NULL;
    bool fz = false;
    if (check_qrange(op, qmin, qmax) || check_axis(op, x, axis, &ax) ||
        read_channel_params(op, x, ax, scale, zero_point, &s, &z, &fz))
        return NULL;
    for (int64_t c = 0; !fz && c < x->shape[ax]; c++)
        if (z[c] < (double)qmin || z[c] > (double)qmax)
            return qg__err(QG_EINVAL, "%s: zero_point[%lld] = %lld must be between quant_min %lld and quant_max %lld",
                           op, (long long)c, (long long)z[c], (long long)qmin, (long long)qmax), NULL;
    fq_params p = {s, z, qmin, qmax, fz};
    return fq_op(op, x, ax, &p);
}

/* ---------------------------------------------------------------- learnable (LSQ) */

typedef struct {
    const qg_tensor *xs;   /* x, contiguous */
    int axis;              /* -1 per tensor */
    float *scale;          /* C: (float)scale */
    double *zb;            /* C: backward zero point */
    int64_t qmin, qmax;
    double grad_factor;
} lsq_ctx;

/* Sums v (contiguous (outer, C, inner)) per channel into out[C], in double, in an order
 * that does not depend on the thread count (fixed pieces, summed in order). */
#define LSQ_PIECE 16384
QG_HOT static qg_status channel_sums(qg_dtype dt, const fq_layout *L, const char *v_, double *out) {
    const int64_t pieces = (L->inner + LSQ_PIECE - 1) / LSQ_PIECE, rows = L->outer * L->C, np = rows * pieces;
    double *part = qg__tape_alloc(sizeof(double) * (size_t)(np ? np : 1));
    if (!part) return QG_ENOMEM;
    const int nt = qg__threads_for(L->n);
    (void)nt; /* used by the pragma only */
    QG_FLOAT_DISPATCH(dt, {
        const real *v = (const real *)v_;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t k = 0; k < np; k++) {
            int64_t r = k / pieces, p0 = (k % pieces) * LSQ_PIECE;
            int64_t len = L->inner - p0 < LSQ_PIECE ? L->inner - p0 : LSQ_PIECE;
            const real *src = v + r * L->inner + p0;
            double acc[8] = {0};
            int64_t i = 0;
            for (; i + 8 <= len; i += 8)
                for (int j = 0; j < 8; j++) acc[j] += (double)src[i + j];
            for (; i < len; i++) acc[0] += (double)src[i];
            part[k] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
    });
    for (int64_t c = 0; c < L->C; c++) out[c] = 0;
    for (int64_t k = 0; k < np; k++) out[(k / pieces) % L->C] += part[k];
    return QG_OK;
}

static qg_status lsq_backward(qg_node *n) {
    qg_tensor *x = n->in[0], *scale = n->in[1], *zp = n->in[2];
    const lsq_ctx *cx = n->ctx;
    const bool want_x = qg__wants_grad(x), want_s = qg__wants_grad(scale), want_z = qg__wants_grad(zp);
    if (!want_x && !want_s && !want_z) return QG_OK;
    const fq_layout L = qg__fq_layout_of(cx->xs, cx->axis);
    if (L.n == 0) return QG_OK;
    const qg_dtype dt = x->dtype;
    const size_t es = qg_dtype_size(dt);
    /* every buffer first, so that a failure leaves no gradient half-accumulated */
    qg_tensor *gxt = want_x ? qg__grad_of(x) : NULL, *gst = want_s ? qg__grad_of(scale) : NULL;
    qg_tensor *gzt = want_z ? qg__grad_of(zp) : NULL;
    char *gx_ = gxt ? qg__data(gxt) : NULL;
    char *ds_ = want_s ? qg__tape_alloc(es * (size_t)L.n) : NULL, *dz_ = want_z ? qg__tape_alloc(es * (size_t)L.n) : NULL;
    double *sum = qg__tape_alloc(sizeof(double) * (size_t)L.C);
    if ((want_x && !gxt) || (want_s && (!gst || !ds_)) || (want_z && (!gzt || !dz_)) || !sum) return QG_ENOMEM;
    const char *g_ = qg__data(n->out->grad), *x_ = qg__data(cx->xs);
    fq_params p = {cx->scale, cx->zb, cx->qmin, cx->qmax, false};
    const bool wide = !narrow_range(&p, L.C);
    const int64_t period = param_period(&L), np = period == 1 ? L.C : period;
    const int nt = qg__threads_for(L.n);
    FQ_DISPATCH(dt, wide, {
        real *inv = qg__tape_alloc(sizeof(real) * (size_t)np), *zr = qg__tape_alloc(sizeof(real) * (size_t)np);
        real *sc = qg__tape_alloc(sizeof(real) * (size_t)np), *dsm = qg__tape_alloc(sizeof(real) * (size_t)np);
        real *dbg = qg__tape_alloc(sizeof(real) * (size_t)np);
        wreal *zw = qg__tape_alloc(sizeof(wreal) * (size_t)np);
        if (!inv || !zr || !sc || !dsm || !dbg || !zw) return QG_ENOMEM;
        for (int64_t j = 0; j < np; j++) {
            int64_t c = period == 1 ? j : (j / L.inner) % L.C;
            float s = cx->scale[c];
            inv[j] = (real)(1.0f / s);
            sc[j] = (real)s;
            zr[j] = (real)cx->zb[c];
            zw[j] = (wreal)cx->zb[c];
            dsm[j] = (real)((double)cx->qmin - cx->zb[c]);
            dbg[j] = (real)((double)cx->qmax - cx->zb[c]);
        }
        const wreal lo = (wreal)cx->qmin, hi = (wreal)cx->qmax;
        const real gf = (real)cx->grad_factor;
        const real *X = (const real *)x_, *G = (const real *)g_;
        real *GX = (real *)gx_, *DS = (real *)ds_, *DZ = (real *)dz_;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int t = 0; t < nt; t++) {
            int64_t a = qg__split_at(L.n, t, nt), b = qg__split_at(L.n, t + 1, nt);
            FQ_WALK(&L, period, a, b, {
                const int64_t st = period == 1 ? 0 : 1; /* parameter stride */
                const real *iv = inv + pj, *z1 = zr + pj, *s = sc + pj, *d0 = dsm + pj, *d1 = dbg + pj;
                const wreal *z2 = zw + pj;
                for (int64_t k = 0; k < len; k++) {
                    real dx, ds, dz;
                    const int64_t q = k * st;
                    LSQ_BW(X[i + k], G[i + k], iv[q], z1[q], z2[q], s[q], lo, hi, d0[q], d1[q], gf, dx, ds, dz);
                    if (GX) GX[i + k] += dx;
                    if (DS) DS[i + k] = ds;
                    if (DZ) DZ[i + k] = dz;
                }
            });
        }
    });
    for (int w = 0; w < 2; w++) {
        const char *v = w ? dz_ : ds_;
        if (!v) continue;
        if (channel_sums(dt, &L, v, sum)) return QG_ENOMEM;
        qg_tensor *g = w ? gzt : gst; /* contiguous (C) or (1) */
        QG_FLOAT_DISPATCH(g->dtype, {
            real *gp = (real *)qg__data(g);
            for (int64_t c = 0; c < L.C; c++) gp[c] += (real)sum[c];
        });
    }
    return QG_OK;
}

static qg_status check_lsq_param(const char *op, const char *what, const qg_tensor *t, int64_t C, const qg_tensor *x,
                                 int axis) {
    char a[128], b[128];
    if (!qg__is_float(t->dtype))
        return qg__err(QG_EDTYPE, "%s: %s must be f32 (or f64), got %s", op, what, qg_dtype_name(t->dtype));
    if (axis < 0 ? qg_tensor_numel(t) != 1 : (t->ndim != 1 || t->shape[0] != C))
        return qg__err(QG_ESHAPE, "%s: %s has shape %s, expected (%lld) for input %s%s", op, what,
                       qg_shape_str(t, a, sizeof a), (long long)C, qg_shape_str(x, b, sizeof b),
                       axis < 0 ? "" : " along the axis");
    return QG_OK;
}

static qg_tensor *lsq_op(const char *op, const qg_tensor *x, const qg_tensor *scale, const qg_tensor *zero_point,
                         bool per_channel, int axis, int64_t qmin, int64_t qmax, double grad_factor) {
    if (qg__check_float(op, x)) return NULL;
    if (!scale || !zero_point) return qg__err_null(op), NULL;
    if (qg__live(op, scale) || qg__live(op, zero_point)) return NULL;
    int ax = -1;
    if (check_qrange(op, qmin, qmax) || (per_channel && check_axis(op, x, axis, &ax))) return NULL;
    const int64_t C = per_channel ? x->shape[ax] : 1;
    if (check_lsq_param(op, "scale", scale, C, x, ax) || check_lsq_param(op, "zero_point", zero_point, C, x, ax))
        return NULL;
    float *s = qg__tape_alloc(sizeof(float) * (size_t)(C ? C : 1));
    double *zf = qg__tape_alloc(sizeof(double) * (size_t)(C ? C : 1)), *zb = qg__tape_alloc(sizeof(double) * (size_t)(C ? C : 1));
    if (!s || !zf || !zb) return NULL;
    const float lo = (float)qmin, hi = (float)qmax;
    for (int64_t c = 0; c < C; c++) {
        const int64_t ss = per_channel ? scale->strides[0] : 0, zs = per_channel ? zero_point->strides[0] : 0;
        s[c] = (float)qg__load(qg__data(scale) + c * ss * (int64_t)qg_dtype_size(scale->dtype), scale->dtype);
        float z = (float)qg__load(qg__data(zero_point) + c * zs * (int64_t)qg_dtype_size(zero_point->dtype),
                                  zero_point->dtype);
        float r = rint(z); /* forward: rint, clamp (as float), then an integer */
        r = r > lo ? r : lo;
        r = r < hi ? r : hi;
        if (isnan(z)) /* PyTorch's clamp keeps the NaN and its range check fails */
            return qg__err(QG_EINVAL, "%s: zero_point%s %g must be between quant_min %lld and quant_max %lld", op,
                           per_channel ? "[c]" : "", (double)z, (long long)qmin, (long long)qmax), NULL;
        zf[c] = (double)r;
        if (per_channel) { /* backward: round half even, clamp */
            zb[c] = zf[c];
        } else { /* backward: trunc(clamp(zp + 0.5f)) */
            float u = z + 0.5f;
            u = u > lo ? u : lo;
            u = u < hi ? u : hi;
            zb[c] = trunc((double)u);
        }
    }
    const qg_tensor *xc = contiguous_x(x);
    if (!xc) return NULL;
    fq_layout L = qg__fq_layout_of(xc, ax);
    qg_tensor *out = qg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    fq_params p = {s, zf, qmin, qmax, false};
    if (fq_forward_kernel(x->dtype, &L, &p, qg__data(xc), qg__data(out), NULL)) return NULL;
    const qg_tensor *ins[3] = {x, scale, zero_point};
    if (qg__needs_grad(3, ins)) {
        if (qmin > 0 || qmax < 0) /* PyTorch's backward refuses; fail here, where it can be reported */
            return qg__err(QG_EINVAL, "%s: the range [%lld, %lld] must include 0 for the gradient", op,
                           (long long)qmin, (long long)qmax), NULL;
        lsq_ctx *cx = qg__tape_alloc(sizeof *cx);
        qg_node *n = cx ? qg__record(op, lsq_backward, out, 3, ins) : NULL;
        if (!n) return NULL;
        *cx = (lsq_ctx){xc, ax, s, zb, qmin, qmax, grad_factor};
        n->ctx = cx;
    }
    return out;
}

qg_tensor *qg_fake_quantize_learnable_per_tensor(const qg_tensor *x, const qg_tensor *scale,
                                                 const qg_tensor *zero_point, int64_t qmin, int64_t qmax,
                                                 double grad_factor) {
    return lsq_op("fake_quantize_learnable_per_tensor", x, scale, zero_point, false, -1, qmin, qmax, grad_factor);
}

qg_tensor *qg_fake_quantize_learnable_per_channel(const qg_tensor *x, const qg_tensor *scale,
                                                  const qg_tensor *zero_point, int axis, int64_t qmin, int64_t qmax,
                                                  double grad_factor) {
    return lsq_op("fake_quantize_learnable_per_channel", x, scale, zero_point, true, axis, qmin, qmax, grad_factor);
}
