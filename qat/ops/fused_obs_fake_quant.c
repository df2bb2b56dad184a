/* fused_moving_avg_obs_fake_quant: PyTorch 1.13's fused observer + qparams + fake-quant
 * (quantized/cpu/fused_obs_fake_quant.cpp), the op behind FusedMovingAvgObsFakeQuantize
 * and so behind every default QAT qconfig. Behaviour established against PyTorch:
 *  - An empty x returns a copy at once: nothing observed, resized or checked.
 *  - Per channel, empty running_min/max are resized to (C) and filled with +inf / -inf,
 *    scale and zero_point resized to (C) (new entries: uninitialised in PyTorch, 0 here),
 *    whatever the flags say.
 *  - observer_on (any dtype, its first element truncated to an integer; nonzero = on):
 *    x's min/max (per channel along ch_axis) update the running values, in float:
 *    r = isinf(r) ? cur : r + (float)c * (cur - r)   (either infinity takes cur).
 *  - fake_quant_on: scale/zero_point are recomputed from the running values with
 *    formula B (qg_qparams_choose) — only then, so with it off they are left alone —
 *    and x is fake-quantized with them (gradient: the STE mask). With it off the output
 *    is x itself (a view here, a clone in PyTorch) and the gradient passes unchanged.
 *  - A never observed running value with fake_quant_on fails ("min should be less than
 *    or equal to max"), as in PyTorch.
 * Where this differs from PyTorch, on purpose:
 *  - Per channel, PyTorch accepts ch_axis 0 only; any axis works here.
 *  - PyTorch takes float32 x only; f64 works here (min/max rounded to the f32 buffers).
 *  - A NaN or infinity in x while observing is an error (QG_EINVAL) and the running
 *    values stay as they were; PyTorch stores the NaN/inf (poisoning the buffers, or
 *    producing scale inf and zero_point INT32_MIN) and fails, if at all, later.
 * Speed: one read of x for the min/max (qat/ops/minmax.c), one fused read for
 * fake-quant, output and mask (qat/ops/fake_quant.c). */
#include <math.h>

#include "fq_internal.h"
#include "qgrad/qat.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* element c of a 1-D tensor (any stride) */
static double vec_get(const qg_tensor *t, int64_t c) {
    int64_t st = t->ndim ? t->strides[0] : 0;
    return qg__load(qg__data(t) + c * st * (int64_t)qg_dtype_size(t->dtype), t->dtype);
}
static void vec_put(qg_tensor *t, int64_t c, double v) {
    int64_t st = t->ndim ? t->strides[0] : 0;
    qg__store(qg__data(t) + c * st * (int64_t)qg_dtype_size(t->dtype), t->dtype, v);
}


/* ---------------------------------------------------------------- identity (fake-quant off) */

static qg_status identity_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    bool fresh;
    qg_tensor *gx = qg__grad_for_write(x, &fresh);
    if (!gx) return QG_ENOMEM;
    if (fresh) return qg_tensor_copy_(gx, n->out->grad); /* same shape: gx = g */
    qg__unbroadcast_add(gx, n->out->grad);                /* gx += g */
    return QG_OK;
}

/* y = x (a view; its own contiguous copy when x is strided, so the gradient's C order
 * matches), passing the gradient unchanged. */
static qg_tensor *identity(const char *op, const qg_tensor *x) {
    qg_tensor *y;
    if (qg_tensor_is_contiguous(x)) {
        y = qg__tape_view(x);
    } else {
        y = qg__tape_tensor(x->dtype, x->ndim, x->shape);
        if (y && qg_tensor_copy_(y, x)) return NULL;
    }
    if (!y) return NULL;
    if (qg__needs_grad(1, &x) && !qg__record(op, identity_backward, y, 1, &x)) return NULL;
    return y;
}

/* ---------------------------------------------------------------- the op */

static qg_status check_flag(const char *op, const char *what, const qg_tensor *t, bool *on) {
    char a[128];
    if (!t) return qg__err(QG_EINVAL, "%s: %s is NULL", op, what);
    if (qg__live(op, t)) return QG_ESTATE;
    if (qg_tensor_numel(t) < 1)
        return qg__err(QG_ESHAPE, "%s: %s %s is empty", op, what, qg_shape_str(t, a, sizeof a));
    double v = qg__load(qg__data(t), t->dtype); /* element 0, truncated like item().toInt() */
    *on = v >= 1 || v <= -1;
    return QG_OK;
}

static qg_status check_buf(const char *op, const char *what, const qg_tensor *t, bool is_int, int64_t want) {
    char a[128];
    if (!t) return qg__err(QG_EINVAL, "%s: %s is NULL", op, what);
    if (qg__live(op, t)) return QG_ESTATE;
    if (is_int ? (t->dtype != QG_I32 && t->dtype != QG_I64) : t->dtype != QG_F32)
        return qg__err(QG_EDTYPE, "%s: %s must be %s, got %s", op, what, is_int ? "i32" : "f32", qg_dtype_name(t->dtype));
    if (want >= 0 && (qg_tensor_numel(t) != want || t->ndim > 1))
        return qg__err(QG_ESHAPE, "%s: %s has shape %s, expected %lld element%s", op, what, qg_shape_str(t, a, sizeof a),
                       (long long)want, want == 1 ? "" : "s (one per channel)");
    return QG_OK;
}

/* A per-channel buffer: empty ones take C entries. */
static qg_status resize_to(const char *op, const char *what, qg_tensor *t, int64_t C, double fill) {
    if (qg_tensor_numel(t) == C && t->ndim == 1) return QG_OK;
    if (qg_tensor_resize_(t, 1, &C)) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", qg_last_error());
        return qg__err(qg_last_status(), "%s: resizing %s to (%lld): %s", op, what, (long long)C, msg);
    }
    if (!isnan(fill))
        for (int64_t c = 0; c < C; c++) vec_put(t, c, fill);
    return QG_OK;
}

qg_tensor *qg_fused_moving_avg_obs_fake_quant(const qg_tensor *x, const qg_tensor *observer_on,
                                              const qg_tensor *fake_quant_on, qg_tensor *running_min,
                                              qg_tensor *running_max, qg_tensor *scale, qg_tensor *zero_point,
                                              double averaging_const, int64_t qmin, int64_t qmax, int ch_axis,
                                              bool per_channel, bool symmetric) {
    const char *op = "fused_moving_avg_obs_fake_quant";
    char s1[128];
    bool observe, fq;
    if (qg__check_float(op, x)) return NULL;
    if (check_flag(op, "observer_on", observer_on, &observe) || check_flag(op, "fake_quant_on", fake_quant_on, &fq))
        return NULL;
    if (check_buf(op, "running_min", running_min, false, -1) || check_buf(op, "running_max", running_max, false, -1) ||
        check_buf(op, "scale", scale, false, -1) || check_buf(op, "zero_point", zero_point, true, -1))
        return NULL;
    if (!(qmin < qmax))
        return qg__err(QG_EINVAL, "%s: quant_min %lld must be less than quant_max %lld", op, (long long)qmin,
                       (long long)qmax), NULL;
    int axis = -1;
    if (per_channel) {
        if (x->ndim == 0)
            return qg__err(QG_ESHAPE, "%s: per-channel input %s has no dim %d", op, qg_shape_str(x, s1, sizeof s1),
                           ch_axis), NULL;
        if (qg__dim(op, ch_axis, x->ndim, &axis)) return NULL;
    }
    if (qg_tensor_numel(x) == 0) { /* PyTorch: return self.clone() */
        const int64_t C = per_channel ? x->shape[axis] : 1; /* sync_observers: the others' MIN needs this one's */
        float *lo = observe && qg__sync_obs ? qg__tape_alloc(sizeof(float) * (size_t)(2 * C + 1)) : NULL;
        float *hi = lo ? lo + C : NULL;
        bool finite = true;
        if (observe && qg__sync_obs && !lo) return qg__err(QG_ENOMEM, "%s: out of memory", op), NULL;
        for (int64_t k = 0; lo && k < C; k++) lo[k] = INFINITY, hi[k] = -INFINITY; /* an empty batch's */
        if (lo && qg__sync_minmax(C, lo, hi, &finite)) return NULL;
        return identity(op, x);
    }

    const int64_t C = per_channel ? x->shape[axis] : 1;
    if (per_channel && qg_tensor_numel(running_min) == 0) {
        if (resize_to(op, "running_min", running_min, C, INFINITY) || resize_to(op, "running_max", running_max, C, -INFINITY) ||
            resize_to(op, "scale", scale, C, NAN) || resize_to(op, "zero_point", zero_point, C, NAN))
            return NULL;
    }
    if (check_buf(op, "running_min", running_min, false, C) || check_buf(op, "running_max", running_max, false, C) ||
        check_buf(op, "scale", scale, false, C) || check_buf(op, "zero_point", zero_point, true, C))
        return NULL;
    if (!observe && !fq) return identity(op, x);

    const qg_tensor *xc = qg_contiguous(x); /* differentiable: the gradient reaches x */
    float *mn = qg__tape_alloc(sizeof(float) * 4 * (size_t)C), *mx = mn + C, *sc = mx + C;
    int32_t *zp = (int32_t *)(sc + C);
    if (!xc || !mn) return NULL;

    if (observe) {
        const fq_layout L = qg__fq_layout_of(x, axis);
        bool finite;
        if (qg__channel_minmax(x->dtype, qg__data(xc), &L, mn, mx, &finite)) return NULL;
        if (!finite)
            return qg__err(QG_EINVAL, "%s: input %s holds a NaN or an infinity; the running min/max were left as they were",
                           op, qg_shape_str(x, s1, sizeof s1)), NULL;
        const float c = (float)averaging_const;
        for (int64_t k = 0; k < C; k++) {
            float r0 = (float)vec_get(running_min, k), r1 = (float)vec_get(running_max, k);
            r0 = isinf(r0) ? mn[k] : r0 + c * (mn[k] - r0);
            r1 = isinf(r1) ? mx[k] : r1 + c * (mx[k] - r1);
            vec_put(running_min, k, r0);
            vec_put(running_max, k, r1);
        }
    }
    if (!fq) return identity(op, x);

    for (int64_t k = 0; k < C; k++) mn[k] = (float)vec_get(running_min, k), mx[k] = (float)vec_get(running_max, k);
    if (qg_qparams_choose(C, mn, mx, symmetric, qmin, qmax, sc, zp)) {
        char msg[512];
        bool never = false;
        for (int64_t k = 0; k < C; k++) never |= mn[k] == INFINITY && mx[k] == -INFINITY;
        snprintf(msg, sizeof msg, "%s", qg_last_error());
        return qg__err(QG_EINVAL, "%s: %s%s", op, msg, never ? " (the running min/max were never observed)" : ""), NULL;
    }
    for (int64_t k = 0; k < C; k++) vec_put(scale, k, sc[k]), vec_put(zero_point, k, zp[k]);
    if (per_channel) return qg_fake_quantize_per_channel(xc, scale, zero_point, axis, qmin, qmax);
    return qg_fake_quantize_per_tensor(xc, sc[0], zp[0], qmin, qmax);
}
