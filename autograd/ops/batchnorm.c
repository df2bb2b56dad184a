/* batch_norm: per-channel normalisation of x (N, C, *), forward and backward, with the
 * arithmetic of PyTorch 1.13's CPU kernels (Normalization.cpp, cpu/batch_norm_kernel.cpp),
 * so float32 results of the NCHW path match PyTorch bit for bit:
 *  - training, per channel: sum in double, mean = (real)(sum / n); var_sum = the double
 *    sum of (x - mean)^2 computed in x's dtype, rounded to x's dtype;
 *    invstd = 1 / sqrt(var_sum / n + eps) in double; with m = (real)momentum:
 *    running_mean = m * mean + (1 - m) * running_mean (in x's dtype),
 *    running_var = m * (var_sum / (n - 1)) + (1 - m) * running_var (sum in double).
 *  - eval: mean = running_mean, invstd = 1 / sqrt(running_var + eps) in x's dtype.
 *  - y = x * alpha + beta with alpha = invstd * w, beta = b - mean * alpha; PyTorch's
 *    AVX2 kernels contract both into fused multiply-adds, and so does this file when
 *    the target has FMA (BN_MADD).
 * Backward (training), per channel, with double sums (in partial sums: not PyTorch's
 * order, which it does not promise), k = sum((x - mean) g) invstd^2 / n:
 *   gx = (g - mean(g) - (x - mean) k) invstd w,  gw = sum((x - mean) g) invstd,
 *   gb = sum(g);  eval: gx = g invstd w (invstd from running_var + eps in double, as
 *   PyTorch's backward computes it).
 * qg__batch_norm_div normalises x / f[c] instead of x (f per channel, with a gradient):
 * the QAT ConvBn's un-scaling of the folded conv output and its BN in one op. Every
 * kernel computes t = x / f[c] (real division, the bits qg_div gives) where it reads
 * x, so the forward is bit for bit qg_div then qg_batch_norm; the loops of plain
 * batch_norm are instantiated without the division. Backward adds gx = gt / f and
 * gf = -sum(gt (t / f)), qg_div's formulas, gt being batch_norm's input gradient.
 * x is addressed as (N, C, S) planes (S = product of the spatial dims, merged when
 * their strides allow, else x is copied once). Work is split over channels; every
 * channel's sums run in one fixed order, so results do not depend on the thread
 * count. (PyTorch sums a 2-D (N, C) input in float per thread; here it is summed in
 * double like the other layouts, so 2-D statistics may differ from PyTorch's by an ulp.) */
#include <tgmath.h>

#include "kernels/isa.h"
#include "op_internal.h"

/* No implicit contraction (clang contracts a*b+c by default; GCC does not in ISO C
 * mode): the fused multiply-adds below are the explicit ones PyTorch has. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#if defined(__FMA__) || defined(QG_DISPATCH) /* portable: the same bits on every level */
#define BN_MADD(a, b, c) fma((a), (b), (c)) /* tgmath: fmaf for float */
#else
#define BN_MADD(a, b, c) ((a) * (b) + (c))
#endif

/* x as (N, C, S): element (n, c, s) at data[n*sn + c*sc + s*ss] (in elements). */
typedef struct {
    int64_t N, C, S, sn, sc, ss;
    char *data;
} ncs;

/* false if the spatial dims cannot be merged into one strided dim */
static bool ncs_view(const qg_tensor *x, ncs *v) {
    v->N = x->shape[0], v->C = x->shape[1];
    v->sn = x->strides[0], v->sc = x->strides[1];
    v->S = 1, v->ss = 1;
    v->data = qg__data(x);
    bool first = true;
    for (int d = x->ndim - 1; d >= 2; d--) {
        if (x->shape[d] == 1) continue;
        if (first) v->ss = x->strides[d], first = false;
        else if (x->strides[d] != v->ss * v->S) return false;
        v->S *= x->shape[d];
    }
    return true;
}

static ncs ncs_contig(const qg_tensor *t) {
    ncs v = {t->shape[0], t->shape[1], 1, 0, 0, 1, qg__data(t)};
    for (int d = 2; d < t->ndim; d++) v.S *= t->shape[d];
    v.sc = v.S, v.sn = v.C * v.S;
    return v;
}

/* element c of a 1-D tensor (any stride), or dflt if t is NULL */
static double vec_at(const qg_tensor *t, int64_t c, double dflt) {
    if (!t) return dflt;
    return qg__load(qg__data(t) + c * t->strides[0] * (int64_t)qg_dtype_size(t->dtype), t->dtype);
}

static void vec_set(qg_tensor *t, int64_t c, double v) {
    qg__store(qg__data(t) + c * t->strides[0] * (int64_t)qg_dtype_size(t->dtype), t->dtype, v);
}

/* Threads for a pass over x: by the work, at most one per channel. */
static int bn_threads(const ncs *v) {
    int nt = qg__threads_for(v->N * v->C * v->S);
    return nt > v->C ? (int)(v->C > 0 ? v->C : 1) : nt;
}

/* ---------------------------------------------------------------- kernels */

/* Channels go in groups of BN_GROUP, walked in lockstep: each channel's sum keeps
 * PyTorch's serial order (so its bits), and the group's independent sums hide the
 * latency of the double adds that one serial sum would wait on. */
#define BN_GROUP 8

/* Channels c..c+nc (nc <= BN_GROUP) of the S > 1 layout: serial double sums of x, then
 * of (x - mean)^2 computed in real. */
#define BN_STATS_GROUP(nc_)                                                               \
    {                                                                                     \
        const int64_t nc = (nc_);                                                         \
        double s[BN_GROUP] = {0}, ss[BN_GROUP] = {0};                                     \
        real m[BN_GROUP];                                                                 \
        for (int64_t n = 0; n < v->N; n++) {                                              \
            const real *p = x + n * v->sn + c * v->sc;                                    \
            for (int64_t i = 0; i < v->S; i++)                                            \
                for (int64_t j = 0; j < nc; j++) s[j] += p[j * v->sc + i * v->ss];        \
        }                                                                                 \
        for (int64_t j = 0; j < nc; j++) m[j] = (real)(s[j] / cnt);                       \
        for (int64_t n = 0; n < v->N; n++) {                                              \
            const real *p = x + n * v->sn + c * v->sc;                                    \
            for (int64_t i = 0; i < v->S; i++)                                            \
                for (int64_t j = 0; j < nc; j++) {                                        \
                    real d = p[j * v->sc + i * v->ss] - m[j];                             \
                    ss[j] += d * d;                                                       \
                }                                                                         \
        }                                                                                 \
        for (int64_t j = 0; j < nc; j++) mean[c + j] = m[j], var_sum[c + j] = (real)ss[j]; \
    }

/* With divisors, the lockstep sums read t = x / dv from tb, where BN_FILL_T puts the
 * group's next BN_TB elements of image n divided a channel at a time (a loop that
 * vectorises; in the lockstep loops each division would be a scalar one). The same t
 * and the same serial sums, so the same bits. */
#define BN_TB 64
#define BN_FILL_T(n_, i0_, len_)                                                          \
    for (int64_t j = 0; j < nc; j++) {                                                    \
        const real *pj = x + (n_) * v->sn + (c + j) * v->sc + (i0_) * v->ss, fj = dv[c + j]; \
        real *tj = tb + j * BN_TB;                                                        \
        if (v->ss == 1)                                                                   \
            for (int64_t e = 0; e < (len_); e++) tj[e] = pj[e] / fj;                      \
        else                                                                              \
            for (int64_t e = 0; e < (len_); e++) tj[e] = pj[e * v->ss] / fj;              \
    }
#define BN_STATS_GROUP_DIV(nc_)                                                           \
    {                                                                                     \
        const int64_t nc = (nc_);                                                         \
        double s[BN_GROUP] = {0}, ss[BN_GROUP] = {0};                                     \
        real m[BN_GROUP], tb[BN_GROUP * BN_TB];                                           \
        for (int64_t n = 0; n < v->N; n++)                                                \
            for (int64_t i0 = 0; i0 < v->S; i0 += BN_TB) {                                \
                const int64_t len = v->S - i0 < BN_TB ? v->S - i0 : BN_TB;                \
                BN_FILL_T(n, i0, len)                                                     \
                for (int64_t e = 0; e < len; e++)                                         \
                    for (int64_t j = 0; j < nc; j++) s[j] += tb[j * BN_TB + e];           \
            }                                                                             \
        for (int64_t j = 0; j < nc; j++) m[j] = (real)(s[j] / cnt);                       \
        for (int64_t n = 0; n < v->N; n++)                                                \
            for (int64_t i0 = 0; i0 < v->S; i0 += BN_TB) {                                \
                const int64_t len = v->S - i0 < BN_TB ? v->S - i0 : BN_TB;                \
                BN_FILL_T(n, i0, len)                                                     \
                for (int64_t e = 0; e < len; e++)                                         \
                    for (int64_t j = 0; j < nc; j++) {                                    \
                        real d = tb[j * BN_TB + e] - m[j];                                \
                        ss[j] += d * d;                                                   \
                    }                                                                     \
            }                                                                             \
        for (int64_t j = 0; j < nc; j++) mean[c + j] = m[j], var_sum[c + j] = (real)ss[j]; \
    }

/* The float32 statistics of channels c..c+8 of a layout with contiguous rows (ss 1),
 * BN_STATS_GROUP(_DIV)'s serial sums with the 8 channels in the lanes of one double
 * vector: each block of 8 elements of the 8 channels' rows (divided by f, if given) is
 * transposed so that vector e holds element e of every channel, and the vectors are
 * added in order. Every lane sees its channel's operations in PyTorch's order, so the
 * bits are the group macros'. */
/* Pass sq (0: the sum of t, 1: of (t - m)^2 in float) over the 8 rows of image n. */
__attribute__((always_inline)) static inline void bn_pass8(const float *x, int64_t S, int64_t sc, const float *f,
                                                            int sq, const qg__v8f *m, qg__v8d *acc) {
    int64_t i = 0;
    for (; i + 8 <= S; i += 8) {
        qg__v8f r[8];
        for (int j = 0; j < 8; j++) {
            memcpy(&r[j], x + j * sc + i, sizeof r[j]);
            if (f) r[j] = r[j] / f[j];
        }
        qg__tr8_f32(r);
        for (int e = 0; e < 8; e++) {
            const qg__v8f d = sq ? r[e] - *m : r[e];
            *acc += __builtin_convertvector(sq ? d * d : d, qg__v8d);
        }
    }
    for (; i < S; i++) /* the tail, element by element, in the same order */
        for (int j = 0; j < 8; j++) {
            const float t = f ? x[j * sc + i] / f[j] : x[j * sc + i], d = sq ? t - (*m)[j] : t;
            (*acc)[j] += sq ? d * d : d;
        }
}

__attribute__((always_inline)) static inline void bn_stats8_f32(const float *x, const ncs *v, const float *f,
                                                                 double cnt, double *mean, double *var_sum) {
    qg__v8d s = {0}, ss = {0};
    qg__v8f m;
    for (int64_t n = 0; n < v->N; n++) bn_pass8(x + n * v->sn, v->S, v->sc, f, 0, NULL, &s);
    for (int j = 0; j < 8; j++) m[j] = (float)(s[j] / cnt);
    for (int64_t n = 0; n < v->N; n++) bn_pass8(x + n * v->sn, v->S, v->sc, f, 1, &m, &ss);
    for (int j = 0; j < 8; j++) mean[j] = m[j], var_sum[j] = (float)ss[j];
}

/* Per channel c in [c0, c1): mean[c] = (real)(sum / n) and var_sum[c] = (real) of the
 * double sum of (x - mean)^2 computed in real (PyTorch's collect_stats), x read as
 * x DIVC ("/ dv[c]", or nothing without divisors; GROUP the matching group macro).
 * With S == 1 and channels adjacent ((N, C) row-major) rows are walked in order. */
#define BN_STATS_BODY(GROUP, DIVC)                                                        \
    {                                                                                     \
        const real *x = (const real *)v->data;                                            \
        const double cnt = (double)(v->N * v->S);                                         \
        if (v->S == 1) {                                                                  \
            for (int64_t c = c0; c < c1; c++) mean[c] = 0, var_sum[c] = 0;                \
            for (int64_t n = 0; n < v->N; n++)                                            \
                for (int64_t c = c0; c < c1; c++) mean[c] += x[n * v->sn + c * v->sc] DIVC; \
            for (int64_t c = c0; c < c1; c++) mean[c] = (real)(mean[c] / cnt);           \
            for (int64_t n = 0; n < v->N; n++)                                            \
                for (int64_t c = c0; c < c1; c++) {                                       \
                    real d = x[n * v->sn + c * v->sc] DIVC - (real)mean[c];               \
                    var_sum[c] += d * d;                                                  \
                }                                                                         \
            for (int64_t c = c0; c < c1; c++) var_sum[c] = (real)var_sum[c];              \
        } else {                                                                          \
            for (int64_t c = c0; c < c1; c += BN_GROUP) {                                 \
                if (sizeof(real) == sizeof(float) && v->ss == 1 && c1 - c >= BN_GROUP)    \
                    bn_stats8_f32((const float *)(const void *)(x + c * v->sc), v,       \
                                  dv ? (const float *)(const void *)(dv + c) : NULL, cnt, \
                                  mean + c, var_sum + c);                                 \
                else if (c1 - c >= BN_GROUP)                                              \
                    GROUP(BN_GROUP)                                                       \
                else                                                                      \
                    GROUP(c1 - c)                                                         \
            }                                                                             \
        }                                                                                 \
    }

QG_HOT static void bn_stats(qg_dtype dt, const ncs *v, const char *dv_, double *mean, double *var_sum) {
    int nt = bn_threads(v);
    QG_FLOAT_DISPATCH(dt, {
        const real *dv = (const real *)dv_;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int t = 0; t < nt; t++) {
            int64_t c0 = v->C * t / nt, c1 = v->C * (t + 1) / nt;
            if (dv)
                BN_STATS_BODY(BN_STATS_GROUP_DIV, / dv[c])
            else
                BN_STATS_BODY(BN_STATS_GROUP, )
        }
    });
}

/* Per channel, the double sum of t = x / dv[c] (dv NULL: x), or with mean of
 * (t - (real)mean[c])^2 computed in real: bn_stats' two sums, in one plain pass each. */
static void bn_sums(qg_dtype dt, const ncs *v, const char *dv_, const double *mean, double *out) {
    int nt = bn_threads(v);
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)v->data, *dv = (const real *)dv_;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t c = 0; c < v->C; c++) {
            double acc = 0;
            const real m = mean ? (real)mean[c] : 0, f = dv ? dv[c] : (real)1;
            for (int64_t n = 0; n < v->N; n++)
                for (int64_t i = 0; i < v->S; i++) {
                    const real xv = x[n * v->sn + c * v->sc + i * v->ss], t = dv ? xv / f : xv;
                    if (mean) {
                        const real d = t - m;
                        acc += d * d;
                    } else {
                        acc += t;
                    }
                }
            out[c] = acc;
        }
    });
}

/* qg_ddp's sync_bn: the statistics of the global batch, in bn_stats' two passes (the
 * mean, then the squares about it), each pass's per-channel sums added over the ranks
 * with the element count. *count: the global count per channel. */
static qg_status sync_stats(const qg__sync *s, qg_dtype dt, const ncs *v, const char *dv, double *mean,
                            double *var_sum, double *count) {
    const int64_t C = v->C;
    double *buf = qg__tape_alloc(sizeof(double) * (size_t)(C + 1));
    if (!buf) return QG_ENOMEM;
    bn_sums(dt, v, dv, NULL, buf);
    buf[C] = (double)(v->N * v->S);
    qg_status st = s->sum(s->ctx, buf, C + 1);
    if (st) return st;
    *count = buf[C];
    if (*count <= 1)
        return qg__err(QG_EINVAL, "batch_norm (sync_bn): expected more than 1 value per channel over the ranks when "
                       "training, got %.0f", *count);
    QG_FLOAT_DISPATCH(dt, {
        for (int64_t c = 0; c < C; c++) mean[c] = (real)(buf[c] / *count);
    });
    bn_sums(dt, v, dv, mean, buf);
    if ((st = s->sum(s->ctx, buf, C))) return st;
    QG_FLOAT_DISPATCH(dt, {
        for (int64_t c = 0; c < C; c++) var_sum[c] = (real)buf[c];
    });
    return QG_OK;
}

/* y (contiguous (N, C, S)) = (x / dv[c]) * alpha[c] + beta[c]; dv NULL: no division */
QG_HOT static void bn_apply(qg_dtype dt, const ncs *v, const char *dv_, const char *alpha_, const char *beta_, char *out) {
    int nt = bn_threads(v);
    const int64_t N = v->N, C = v->C, S = v->S;
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)v->data, *alpha = (const real *)alpha_, *beta = (const real *)beta_;
        const real *dv = (const real *)dv_;
        real *y = (real *)out;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int t = 0; t < nt; t++) {
            int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
            for (int64_t n = 0; n < N; n++) {
                if (S == 1) {
                    const real *xr = x + n * v->sn;
                    real *yr = y + n * C;
                    for (int64_t c = c0; c < c1; c++)
                        yr[c] = BN_MADD(dv ? xr[c * v->sc] / dv[c] : xr[c * v->sc], alpha[c], beta[c]);
                    continue;
                }
                for (int64_t c = c0; c < c1; c++) {
                    const real *p = x + n * v->sn + c * v->sc;
                    real *q = y + (n * C + c) * S;
                    const real a = alpha[c], b = beta[c];
                    if (dv && v->ss == 1) {
                        const real f = dv[c];
                        for (int64_t i = 0; i < S; i++) q[i] = BN_MADD(p[i] / f, a, b);
                    } else if (dv) {
                        const real f = dv[c];
                        for (int64_t i = 0; i < S; i++) q[i] = BN_MADD(p[i * v->ss] / f, a, b);
                    } else if (v->ss == 1) {
                        for (int64_t i = 0; i < S; i++) q[i] = BN_MADD(p[i], a, b);
                    } else {
                        for (int64_t i = 0; i < S; i++) q[i] = BN_MADD(p[i * v->ss], a, b);
                    }
                }
            }
        }
    });
}

/* One image row of channel c into the 8 partial sums (then s1, d1 for the tail): g and
 * (t - m) g, t = XV, the element e of x as this layout and divisor read it. */
#define BN_GSUM_ROW(XV)                                                                   \
    {                                                                                     \
        int64_t i = 0;                                                                    \
        for (; i + 8 <= S; i += 8)                                                        \
            for (int jj = 0; jj < 8; jj++) {                                              \
                const int64_t e = i + jj;                                                 \
                const real gv = q[e];                                                     \
                sp[jj] += gv, dp[jj] += (double)((XV) - m) * gv;                          \
            }                                                                             \
        for (; i < S; i++) {                                                              \
            const int64_t e = i;                                                          \
            s1 += q[e], d1 += (double)((XV) - m) * q[e];                                  \
        }                                                                                 \
    }

/* BN_GSUM_ROW of a contiguous float32 row as vectors: lane jj of sp and dp is the
 * partial sum sp[jj] / dp[jj], with the same operations in the same order (a float
 * division, difference and conversion, then double products and sums), so the same
 * bits; GCC does not vectorise the array form. */
__attribute__((always_inline)) static inline void bn_gsum_row_f32(const float *p, const float *q, int64_t S, float m,
                                                                  const float *f, qg__v8d *sp, qg__v8d *dp,
                                                                  double *s1, double *d1) {
    int64_t i = 0;
    for (; i + 8 <= S; i += 8) {
        qg__v8f pv, qv;
        memcpy(&pv, p + i, sizeof pv), memcpy(&qv, q + i, sizeof qv);
        if (f) pv = pv / *f;
        const qg__v8d gd = __builtin_convertvector(qv, qg__v8d);
        *sp += gd;
        *dp += __builtin_convertvector(pv - m, qg__v8d) * gd;
    }
    for (; i < S; i++) *s1 += q[i], *d1 += (double)((f ? p[i] / *f : p[i]) - m) * q[i];
}

/* Per channel: gsum[c] = sum g, dotp[c] = sum (x / dv[c] - mean[c]) g, in double (dv
 * NULL: no division). g is contiguous (N, C, S). The sums' order is fixed by the shapes
 * (never by the thread count); unlike the forward statistics they need not follow
 * PyTorch's, which sums them in float in its own vector order. */
QG_HOT static void bn_grad_sums(qg_dtype dt, const ncs *v, const char *dv_, const char *g_, const char *mean_,
                         double *gsum, double *dotp) {
    int nt = bn_threads(v);
    const int64_t N = v->N, C = v->C, S = v->S;
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)v->data, *g = (const real *)g_, *mean = (const real *)mean_;
        const real *dv = (const real *)dv_;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int t = 0; t < nt; t++) {
            int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
            if (S == 1) {
                for (int64_t c = c0; c < c1; c++) gsum[c] = 0, dotp[c] = 0;
                for (int64_t n = 0; n < N; n++)
                    for (int64_t c = c0; c < c1; c++) {
                        double gv = g[n * C + c];
                        gsum[c] += gv;
                        dotp[c] += ((dv ? x[n * v->sn + c * v->sc] / dv[c] : x[n * v->sn + c * v->sc]) - mean[c]) * gv;
                    }
                continue;
            }
            for (int64_t c = c0; c < c1; c++) { /* per channel, 8 double partial sums a row */
                double sp[8] = {0}, dp[8] = {0}, s1 = 0, d1 = 0;
                const real m = mean[c], f = dv ? dv[c] : (real)1;
                const int64_t ss = v->ss;
                if (sizeof(real) == sizeof(float) && ss == 1) {
                    qg__v8d vs = {0}, vd = {0};
                    const float fv = (float)f;
                    for (int64_t n = 0; n < N; n++)
                        bn_gsum_row_f32((const float *)(const void *)(x + n * v->sn + c * v->sc),
                                        (const float *)(const void *)(g + (n * C + c) * S), S, (float)m,
                                        dv ? &fv : NULL, &vs, &vd, &s1, &d1);
                    for (int jj = 0; jj < 8; jj++) sp[jj] = vs[jj], dp[jj] = vd[jj];
                }
                for (int64_t n = 0; n < N && !(sizeof(real) == sizeof(float) && ss == 1); n++) {
                    const real *p = x + n * v->sn + c * v->sc, *q = g + (n * C + c) * S;
                    if (ss == 1 && dv) /* the contiguous forms vectorise */
                        BN_GSUM_ROW(p[e] / f)
                    else if (ss == 1)
                        BN_GSUM_ROW(p[e])
                    else
                        BN_GSUM_ROW(dv ? p[e * ss] / f : p[e * ss])
                }
                gsum[c] = QG_SUM8(sp) + s1, dotp[c] = QG_SUM8(dp) + d1;
            }
        }
    });
}

/* With t = x / dv[c] and gt = training ? (g - gmean[c] - (t - mean[c]) k[c]) * invstd[c] * w[c]
 *                                    : g * invstd[c] * w[c]:
 * gx (contiguous (N, C, S), or NULL) += gt / dv[c], and gf[c] (or NULL) is set to
 * -sum(gt * (t / dv[c])), qg_div's gradient of its divisor, summed in real (per image
 * row, in 8 partial sums). Plain batch_norm (plain): dv = 1, gf NULL. */
typedef struct {
    const char *g, *mean, *invstd, *w, *gmean, *k, *dv; /* w: per channel weight (1 if none) */
    bool plain, training;
    bool store; /* gx is a fresh buffer: = rather than += */
} gx_args;

#define BN_PUT(lv, v) QG_PUT_GRAD(store, lv, v)

/* Element i of a channel's row: gt, then gx's part and f's term (term += ...). */
#define BN_GX_ELEM(i, term)                                                               \
    {                                                                                     \
        const real t = p[(i) * v->ss] / f;                                                \
        const real gt = train ? (q[i] - gm - (t - m) * kc) * is * wc : q[i] * is * wc;    \
        if (o) BN_PUT(o[i], gt / f);                                                      \
        term += -gt * (t / f);                                                            \
    }
/* A row with f's gradient: 8 partial sums (a fixed order, so the same bits at any
 * thread count) that let the loop vectorise, added to acc at the end. */
#define BN_GX_LOOP(GF)                                                                    \
    {                                                                                     \
        real p8[8] = {0}, s1 = 0;                                                         \
        int64_t i = 0;                                                                    \
        for (; i + 8 <= S; i += 8)                                                        \
            for (int jj = 0; jj < 8; jj++) BN_GX_ELEM(i + jj, p8[jj])                     \
        for (; i < S; i++) BN_GX_ELEM(i, s1)                                              \
        if (GF) acc += QG_SUM8(p8) + s1;                                                  \
    }

QG_HOT static void bn_grad_input(qg_dtype dt, const ncs *v, const gx_args *a, char *gx_, char *gf_) {
    int nt = bn_threads(v);
    const int64_t N = v->N, C = v->C, S = v->S;
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)v->data, *g = (const real *)a->g, *mean = (const real *)a->mean,
                   *invstd = (const real *)a->invstd, *w = (const real *)a->w,
                   *gmean = (const real *)a->gmean, *k = (const real *)a->k, *dv = (const real *)a->dv;
        real *gx = (real *)gx_, *gf = (real *)gf_;
        const bool train = a->training, store = a->store;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int t = 0; t < nt; t++) {
            int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt;
            if (gf)
                for (int64_t c = c0; c < c1; c++) gf[c] = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = c0; c < c1; c++) {
                    const real *p = x + n * v->sn + c * v->sc, *q = g + (n * C + c) * S;
                    real *o = gx ? gx + (n * C + c) * S : NULL;
                    const real is = invstd[c], wc = w[c], m = mean[c], f = dv[c];
                    const real gm = train ? gmean[c] : 0, kc = train ? k[c] : 0;
                    if (gf) {
                        real acc = gf[c];
                        BN_GX_LOOP(true)
                        gf[c] = acc;
                    } else if (a->plain && o) { /* plain batch_norm: no divisions (x / 1 == x) */
                        const int64_t ss = v->ss;
                        if (!train)
                            for (int64_t i = 0; i < S; i++) BN_PUT(o[i], q[i] * is * wc);
                        else if (ss == 1) /* contiguous: vectorises */
                            for (int64_t i = 0; i < S; i++) BN_PUT(o[i], (q[i] - gm - (p[i] - m) * kc) * is * wc);
                        else
                            for (int64_t i = 0; i < S; i++)
                                BN_PUT(o[i], (q[i] - gm - (p[i * ss] - m) * kc) * is * wc);
                    } else {
                        real acc = 0;
                        BN_GX_LOOP(false)
                        (void)acc;
                    }
                }
        }
    });
}

/* ---------------------------------------------------------------- backward */

static qg_status bn_backward(qg_node *n) {
    qg_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *f = n->nin > 3 ? n->in[3] : NULL;
    qg_tensor *xs = n->saved[0], *mean = n->saved[1], *invstd = n->saved[2], *dv = n->saved[3];
    bool training = n->ip[0] != 0;
    bool want_x = qg__wants_grad(x), want_w = qg__wants_grad(w), want_b = qg__wants_grad(b);
    bool want_f = qg__wants_grad(f);
    if (!want_x && !want_w && !want_b && !want_f) return QG_OK;
    /* every buffer first, so that a failure leaves no gradient half-accumulated */
    /* x distinct from the per-channel inputs (its shape differs), so its buffer may be fresh */
    bool fresh = false;
    qg_tensor *gx = want_x ? qg__grad_for_write(x, &fresh) : NULL, *gw = want_w ? qg__grad_of(w) : NULL;
    qg_tensor *gb = want_b ? qg__grad_of(b) : NULL, *gf = want_f ? qg__grad_of(f) : NULL;
    if ((want_x && !gx) || (want_w && !gw) || (want_b && !gb) || (want_f && !gf)) return QG_ENOMEM;
    if (qg_tensor_numel(xs) == 0) { /* an empty batch: zero gradients (gx has no elements) */
        const int64_t C0 = xs->shape[1];
        double *z = n->ip[1] && qg__sync_bn ? qg__tape_alloc(sizeof(double) * (size_t)(2 * C0 + 1)) : NULL;
        if (z) memset(z, 0, sizeof(double) * (size_t)(2 * C0)); /* sync_bn: the other ranks' sums need this one's */
        return z ? qg__sync_bn->sum(qg__sync_bn->ctx, z, 2 * C0) : QG_OK;
    }
    ncs v;
    QG_ASSERT(ncs_view(xs, &v));
    const int64_t C = v.C;
    const double cnt = (double)(v.N * v.S);
    qg_dtype dt = x->dtype;
    size_t es = qg_dtype_size(dt);
    const char *g = qg__data(n->out->grad);
    double *gsum = qg__tape_alloc(sizeof(double) * (size_t)(2 * C + 1)), *dotp = gsum + C;
    char *wv = qg__tape_alloc(es * (size_t)(4 * C + 1)), *gmean = wv + es * (size_t)C, *k = gmean + es * (size_t)C;
    char *gfs = k + es * (size_t)C; /* f's gradient, before it is added */
    if (!gsum || !wv) return QG_ENOMEM;
    bn_grad_sums(dt, &v, f ? qg__data(dv) : NULL, g, qg__data(mean), gsum, dotp);
    QG_FLOAT_DISPATCH(dt, {
        const real *is = (const real *)qg__data(invstd);
        if (want_w) {
            for (int64_t c = 0; c < C; c++) ((real *)qg__data(gw))[c] += (real)(dotp[c] * is[c]);
        }
        if (want_b) {
            for (int64_t c = 0; c < C; c++) ((real *)qg__data(gb))[c] += (real)gsum[c];
        }
    });
    /* sync_bn: the weight and bias gradients stay this rank's (qg_ddp averages them);
     * the input's needs the global batch's sums and count, as PyTorch's SyncBatchNorm */
    double cnt_all = cnt;
    if (n->ip[1]) {
        const qg__sync *s = qg__sync_bn;
        if (!s)
            return qg__err(QG_ESTATE, "%s: its forward ran under qg_ddp's sync_bn: run its backward with "
                           "qg_ddp_backward", n->name);
        qg_status st = s->sum(s->ctx, gsum, 2 * C);
        if (st) return st;
        cnt_all = (double)n->ip[2];
    }
    QG_FLOAT_DISPATCH(dt, {
        const real *is = (const real *)qg__data(invstd);
        for (int64_t c = 0; c < C; c++) {
            ((real *)wv)[c] = (real)vec_at(w, c, 1.0);
            /* PyTorch: k = (scalar_t)dotp * invstd * invstd / N, grad_mean = sum / N */
            ((real *)k)[c] = (real)dotp[c] * is[c] * is[c] / (real)cnt_all;
            ((real *)gmean)[c] = (real)(gsum[c] / cnt_all);
        }
    });
    if (want_x || want_f) {
        gx_args a = {g, qg__data(mean), qg__data(invstd), wv, gmean, k, qg__data(dv), !f, training, fresh};
        bn_grad_input(dt, &v, &a, want_x ? qg__data(gx) : NULL, want_f ? gfs : NULL);
    }
    if (want_f) {
        QG_FLOAT_DISPATCH(dt, {
            for (int64_t c = 0; c < C; c++) {
                real *d = (real *)(void *)(qg__data(gf) + c * gf->strides[0] * (int64_t)es);
                *d += ((const real *)gfs)[c];
            }
        });
    }
    return QG_OK;
}

/* ---------------------------------------------------------------- forward */

static qg_status check_vec(const char *what, const qg_tensor *t, const qg_tensor *x) {
    char a[128], b[128];
    if (!t) return QG_OK;
    if (qg__live("batch_norm", t)) return QG_ESTATE;
    if (t->dtype != x->dtype)
        return qg__err(QG_EDTYPE, "batch_norm: %s is %s but the input is %s (expected one dtype)", what,
                       qg_dtype_name(t->dtype), qg_dtype_name(x->dtype));
    if (t->ndim != 1 || t->shape[0] != x->shape[1])
        return qg__err(QG_ESHAPE, "batch_norm: %s has shape %s, expected (%lld) for input %s", what,
                       qg_shape_str(t, a, sizeof a), (long long)x->shape[1], qg_shape_str(x, b, sizeof b));
    return QG_OK;
}

/* batch_norm of x, or of x / f[c] (f a (C) tensor, NULL for none) */
static qg_tensor *bn_op(const char *op, const qg_tensor *x, const qg_tensor *f, qg_tensor *running_mean,
                        qg_tensor *running_var, const qg_tensor *weight, const qg_tensor *bias, bool training,
                        double momentum, double eps) {
    char s1[128];
    if (qg__check_float(op, x)) return NULL;
    if (x->ndim < 2)
        return qg__err(QG_ESHAPE, "%s: input %s must be (N, C), (N, C, L) or (N, C, H, W)", op,
                       qg_shape_str(x, s1, sizeof s1)), NULL;
    if (check_vec("running_mean", running_mean, x) || check_vec("running_var", running_var, x) ||
        check_vec("weight", weight, x) || check_vec("bias", bias, x) || check_vec("divisor", f, x))
        return NULL;
    if (!training && (!running_mean || !running_var))
        return qg__err(QG_EINVAL, "%s: eval mode needs running_mean and running_var (got %s and %s)", op,
                       running_mean ? "a tensor" : "NULL", running_var ? "a tensor" : "NULL"), NULL;
    int64_t numel = qg_tensor_numel(x), C = x->shape[1];
    int64_t per_channel = C ? numel / C : 0;
    const qg__sync *sync = training ? qg__sync_bn : NULL; /* the count is the ranks' (sync_stats) */
    if (training && !sync && per_channel == 1)
        return qg__err(QG_EINVAL, "%s: expected more than 1 value per channel when training, got input %s", op,
                       qg_shape_str(x, s1, sizeof s1)), NULL;

    /* x as (N, C, S) planes, copied once if its spatial dims do not merge */
    const qg_tensor *xs = x;
    ncs v;
    if (!ncs_view(x, &v)) {
        qg_tensor *c = qg__tape_tensor(x->dtype, x->ndim, x->shape);
        if (!c || qg_tensor_copy_(c, x)) return NULL;
        xs = c;
        v = ncs_contig(c);
    }
    qg_tensor *out = qg__tape_tensor(x->dtype, x->ndim, x->shape);
    qg_tensor *mean = qg__tape_tensor(x->dtype, 1, &C), *invstd = qg__tape_tensor(x->dtype, 1, &C);
    qg_tensor *invstd_bw = qg__tape_tensor(x->dtype, 1, &C);
    qg_tensor *alpha = qg__tape_tensor(x->dtype, 1, &C), *beta = qg__tape_tensor(x->dtype, 1, &C);
    qg_tensor *dv = qg__tape_tensor(x->dtype, 1, &C); /* f's values, or ones */
    double *bmean = qg__tape_alloc(sizeof(double) * (size_t)(2 * C + 1)), *var_sum = bmean + C;
    if (!out || !mean || !invstd || !invstd_bw || !alpha || !beta || !dv || !bmean) return NULL;
    for (int64_t c = 0; c < C; c++) vec_set(dv, c, vec_at(f, c, 1.0));
    double count = (double)per_channel;
    if (numel == 0 && !sync) goto record; /* nothing to normalise; running stats untouched */

    const char *dvp = f ? qg__data(dv) : NULL; /* the kernels' divisors: none for plain batch_norm */
    if (sync && sync_stats(sync, x->dtype, &v, dvp, bmean, var_sum, &count)) return NULL;
    if (training && !sync) bn_stats(x->dtype, &v, dvp, bmean, var_sum);
    QG_FLOAT_DISPATCH(x->dtype, {
        real *m = (real *)qg__data(mean), *is = (real *)qg__data(invstd), *isb = (real *)qg__data(invstd_bw);
        real *al = (real *)qg__data(alpha), *be = (real *)qg__data(beta);
        const real mom = (real)momentum, n_r = (real)count, n1_r = (real)(count - 1);
        for (int64_t c = 0; c < C; c++) {
            if (training) {
                const real vs = (real)var_sum[c];
                const double var = vs / n_r;
                m[c] = (real)bmean[c];
                /* PyTorch's InvStd: 0 when var and eps are both 0 */
                is[c] = isb[c] = (real)((var != 0 || eps != 0) ? 1.0 / sqrt(var + eps) : 0.0);
                if (running_mean) {
                    const real r = (real)vec_at(running_mean, c, 0);
                    vec_set(running_mean, c, mom * m[c] + ((real)1 - mom) * r);
                }
                if (running_var) {
                    const real r = (real)vec_at(running_var, c, 0);
                    const double unbiased = vs / n1_r;
                    vec_set(running_var, c, (double)mom * unbiased + (double)(((real)1 - mom) * r));
                }
            } else { /* forward in the input's dtype, backward's invstd in double, as PyTorch */
                const real rv = (real)vec_at(running_var, c, 0);
                m[c] = (real)vec_at(running_mean, c, 0);
                is[c] = (real)1 / sqrt(rv + (real)eps);
                isb[c] = (real)(1.0 / sqrt((double)rv + eps));
            }
            al[c] = is[c] * (real)vec_at(weight, c, 1.0);
            be[c] = BN_MADD(-m[c], al[c], (real)vec_at(bias, c, 0.0));
        }
    });
    bn_apply(x->dtype, &v, dvp, qg__data(alpha), qg__data(beta), qg__data(out));

record:;
    const qg_tensor *ins[4] = {x, weight, bias, f};
    const int nin = f ? 4 : 3;
    if (qg__needs_grad(nin, ins)) {
        qg_node *n = qg__record(op, bn_backward, out, nin, ins);
        if (!n) return NULL;
        n->saved[0] = (qg_tensor *)xs;
        n->saved[1] = mean;
        n->saved[2] = invstd_bw;
        n->saved[3] = dv;
        n->ip[0] = training;
        n->ip[1] = sync != NULL, n->ip[2] = (int64_t)count; /* sync_bn: backward sums over the ranks too */
    }
    return out;
}

qg_tensor *qg_batch_norm(const qg_tensor *x, qg_tensor *running_mean, qg_tensor *running_var,
                         const qg_tensor *weight, const qg_tensor *bias, bool training, double momentum,
                         double eps) {
    return bn_op("batch_norm", x, NULL, running_mean, running_var, weight, bias, training, momentum, eps);
}

qg_tensor *qg__batch_norm_div(const qg_tensor *x, const qg_tensor *f, qg_tensor *running_mean,
                              qg_tensor *running_var, const qg_tensor *weight, const qg_tensor *bias, bool training,
                              double momentum, double eps) {
    if (!f) return qg__err_null("batch_norm_div"), NULL;
    return bn_op("batch_norm_div", x, f, running_mean, running_var, weight, bias, training, momentum, eps);
}
