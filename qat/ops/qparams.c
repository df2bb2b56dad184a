/* Quantization parameters from observed ranges, the two formulas of PyTorch 1.13
 * (docs/quantization.md), each reproduced to the bit:
 *
 *  A. qg_qparams_observer: ObserverBase._calculate_qparams (observer.py), tensor ops in
 *     float32: mn = min(min, 0), mx = max(max, 0);
 *       symmetric: scale = max(max(-mn, mx) / (float)((qmax - qmin) / 2), eps),
 *                  zero_point = 0, or for quint8 128 ((qmin + qmax) // 2 with a custom range);
 *       affine:    scale = max((mx - mn) / (float)(qmax - qmin), eps),
 *                  zero_point = clamp(qmin - rint(mn / scale), qmin, qmax).
 *     (Each operation rounds to float: float division, never a reciprocal.)
 *  B. qg_qparams_choose: ChooseQuantizationParams (quantized/cpu/QuantUtils.h) as the
 *     fused observer + fake-quant kernel calls it (preserve_sparsity = symmetric): float
 *     min/max, a double scale rounded to float at the end, the 6.1e-5 floor, and the zero
 *     point taken from whichever end has the smaller error term, rounded half to even.
 *
 * Measured against PyTorch (tools/gen_fixtures.py qat_ops, and 47k random cases while
 * writing this): identical scale bits and zero points. */
#include <math.h>

#include "internal.h"
#include "qgrad/qat.h"

/* No contraction of a*b+c: each operation rounds as PyTorch's (which has none here). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Python's a // 2 (floor), for negative custom ranges. */
static int64_t floor_half(int64_t a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

void qg_quant_range(qg_qdtype dtype, bool reduce_range, int64_t custom_min, int64_t custom_max, int64_t *qmin,
                    int64_t *qmax) {
    int64_t lo, hi;
    if (custom_min < custom_max) { /* calculate_qmin_qmax: a custom range is halved with // */
        lo = custom_min, hi = custom_max;
        if (reduce_range) lo = floor_half(lo), hi = floor_half(hi);
    } else if (dtype == QG_QINT8) {
        lo = reduce_range ? -64 : -128, hi = reduce_range ? 63 : 127;
    } else if (dtype == QG_QUINT8) {
        lo = 0, hi = reduce_range ? 127 : 255;
    } else { /* qint32: reduce_range does not apply */
        lo = INT32_MIN, hi = INT32_MAX;
    }
    if (qmin) *qmin = lo;
    if (qmax) *qmax = hi;
}

static qg_status check_range(const char *op, int64_t qmin, int64_t qmax) {
    if (!(qmin < qmax))
        return qg__err(QG_EINVAL, "%s: quant_min %lld must be less than quant_max %lld", op, (long long)qmin,
                       (long long)qmax);
    if (qmin < INT32_MIN || qmax > INT32_MAX)
        return qg__err(QG_EINVAL, "%s: range [%lld, %lld] exceeds the int32 range", op, (long long)qmin,
                       (long long)qmax);
    return QG_OK;
}

/* min/max pair i: finite and ordered, else an error naming the entry. */
static qg_status check_pair(const char *op, int64_t n, int64_t i, float mn, float mx) {
    char where[48] = "";
    if (n > 1) snprintf(where, sizeof where, " of channel %lld", (long long)i);
    if (mn > mx)
        return qg__err(QG_EINVAL, "%s: min %g should be less than or equal to max %g%s", op, (double)mn, (double)mx,
                       where);
    if (!isfinite(mn) || !isfinite(mx))
        return qg__err(QG_EINVAL, "%s: min %g / max %g%s is not finite (inf or nan in the observed values?)", op,
                       (double)mn, (double)mx, where);
    return QG_OK;
}

/* ---------------------------------------------------------------- formula A */

qg_status qg_qparams_observer(int64_t n, const float *min_val, const float *max_val, qg_qscheme scheme,
                              qg_qdtype dtype, bool custom_range, int64_t qmin, int64_t qmax, float eps, float *scale,
                              int32_t *zero_point) {
    const char *op = "qparams_observer";
    if (n < 0 || !scale || !zero_point || (n > 0 && (!min_val || !max_val)))
        return qg__err(QG_EINVAL, "%s: bad arguments (n %lld, NULL array)", op, (long long)n);
    if ((unsigned)scheme > QG_PER_CHANNEL_SYMMETRIC || (unsigned)dtype > QG_QINT32)
        return qg__err(QG_EINVAL, "%s: unknown qscheme %d or dtype %d", op, (int)scheme, (int)dtype);
    qg_status st = check_range(op, qmin, qmax);
    if (st) return st;
    /* never observed: a per-channel observer's empty buffers, or a per-tensor observer's
     * (+inf, -inf), give PyTorch's defaults tensor([1.]), tensor([0]) */
    if (n == 0 || (!qg_qscheme_is_per_channel(scheme) && n == 1 && min_val[0] == INFINITY && max_val[0] == -INFINITY)) {
        scale[0] = 1.0f, zero_point[0] = 0;
        return QG_OK;
    }
    for (int64_t i = 0; i < n; i++)
        if ((st = check_pair(op, n, i, min_val[i], max_val[i]))) return st;
    const bool sym = qg_qscheme_is_symmetric(scheme);
    const float half_range = (float)((double)(qmax - qmin) / 2), range = (float)(qmax - qmin);
    int32_t sym_zp = 0;
    if (dtype == QG_QUINT8) sym_zp = custom_range ? (int32_t)floor_half(qmin + qmax) : 128;
    for (int64_t i = 0; i < n; i++) {
        float mn = min_val[i] < 0 ? min_val[i] : 0.0f, mx = max_val[i] > 0 ? max_val[i] : 0.0f;
        if (sym) {
            float m = -mn > mx ? -mn : mx;
            float s = m / half_range;
            scale[i] = s > eps ? s : eps;
            zero_point[i] = sym_zp;
        } else {
            float s = (mx - mn) / range;
            s = s > eps ? s : eps;
            double z = (double)qmin - rint((double)(mn / s)); /* mn / s in float, rounded half to even */
            z = z < (double)qmin ? (double)qmin : (z > (double)qmax ? (double)qmax : z);
            scale[i] = s;
            zero_point[i] = (int32_t)z;
        }
    }
    return QG_OK;
}

/* ---------------------------------------------------------------- formula B */

#define SMALL_SCALE 6.1e-5f /* PyTorch's SMALL_SCALE_THRESHOLD */

/* One channel; false where PyTorch's TORCH_CHECK(scale > 0) fails (a symmetric [0, 1]). */
static bool choose_one(float mn, float mx, bool symmetric, int64_t qmin, int64_t qmax, float *scale_out,
                       int32_t *zp_out) {
    const int64_t range = qmax - qmin;
    if (mn < 0 && mx > 0 && symmetric) { /* preserve sparsity: symmetric around 0 */
        const int64_t smin = -(range / 2 + 1), smax = range / 2;
        float a = fabsf(mn / (float)smin), b = smax ? fabsf(mx / (float)smax) : INFINITY; /* mx > 0: x / 0 */
        double k = a > b ? a : b; /* std::max(float, float) */
        mn = (float)(k * (double)smin);
        mx = (float)(k * (double)smax);
    }
    mn = 0.0f < mn ? 0.0f : mn; /* std::min(min, 0.f) and std::max(max, 0.f): a NaN stays */
    mx = mx < 0.0f ? 0.0f : mx;
    double scale = ((double)mx - (double)mn) / (double)range;
    if ((float)scale == 0.0f || isinf(1.0f / (float)scale)) scale = 0.1;
    if (!(scale > 0)) return false;
    if (scale < (double)SMALL_SCALE) { /* floor the scale and stretch min/max to match */
        float org = (float)scale;
        scale = (double)SMALL_SCALE;
        if (mn == 0.0f) {
            mx = SMALL_SCALE * (float)range;
        } else if (mx == 0.0f) {
            mn = -SMALL_SCALE * (float)range;
        } else {
            float amp = SMALL_SCALE / org;
            mn *= amp;
            mx *= amp;
        }
    }
    const double zmin = (double)qmin - (double)mn / scale, zmax = (double)qmax - (double)mx / scale;
    const double emin = fabs((double)qmin) - fabs((double)mn / scale), emax = fabs((double)qmax) - fabs((double)mx / scale);
    double z = emin < emax ? zmin : zmax;
    if (mn < 0 && mx > 0 && symmetric) z = (double)(qmin + qmax) / 2;
    int32_t zp;
    if (z < (double)qmin) zp = (int32_t)qmin;
    else if (z > (double)qmax) zp = (int32_t)qmax;
    else zp = (int32_t)nearbyint(z); /* half to even */
    *scale_out = (float)scale;
    *zp_out = zp;
    return true;
}

qg_status qg_qparams_choose(int64_t n, const float *min_val, const float *max_val, bool symmetric, int64_t qmin,
                            int64_t qmax, float *scale, int32_t *zero_point) {
    const char *op = "qparams_choose";
    if (n < 0 || (n > 0 && (!min_val || !max_val || !scale || !zero_point)))
        return qg__err(QG_EINVAL, "%s: bad arguments (n %lld, NULL array)", op, (long long)n);
    qg_status st = check_range(op, qmin, qmax);
    if (st) return st;
    if (qmax - qmin > INT32_MAX) /* PyTorch's int arithmetic overflows there */
        return qg__err(QG_EINVAL, "%s: range [%lld, %lld] is wider than PyTorch's int32 arithmetic allows", op,
                       (long long)qmin, (long long)qmax);
    for (int64_t i = 0; i < n; i++) {
        if ((st = check_pair(op, n, i, min_val[i], max_val[i]))) return st;
        if (!choose_one(min_val[i], max_val[i], symmetric, qmin, qmax, &scale[i], &zero_point[i]))
            return qg__err(QG_EINVAL, "%s: quantization scale should be > 0 (min %g, max %g%s, symmetric range [%lld, %lld])",
                           op, (double)min_val[i], (double)max_val[i], n > 1 ? " of a channel" : "",
                           (long long)qmin, (long long)qmax);
    }
    return QG_OK;
}
