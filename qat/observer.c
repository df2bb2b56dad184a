/* Observers: MinMax and MovingAverageMinMax, per tensor and per channel, as modules
 * with PyTorch's buffers (eps, min_val, max_val). They watch x outside the tape and
 * return it unchanged; calculate_qparams applies formula A. */
#include <math.h>

#include "internal.h"
#include "qat_internal.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* moving averages rounded as PyTorch's float ops */
#endif

static qg_tensor *observer_forward(qg_module *m, qg_tensor *x);

const qg_module_type qg__minmax_observer_type = {.name = "MinMaxObserver", .size = sizeof(qg__observer), .forward = observer_forward};
const qg_module_type qg__ma_observer_type = {.name = "MovingAverageMinMaxObserver", .size = sizeof(qg__observer), .forward = observer_forward};
const qg_module_type qg__pc_observer_type = {.name = "PerChannelMinMaxObserver", .size = sizeof(qg__observer), .forward = observer_forward};
const qg_module_type qg__ma_pc_observer_type = {.name = "MovingAveragePerChannelMinMaxObserver", .size = sizeof(qg__observer), .forward = observer_forward};

bool qg__is_observer(const qg_module *m) {
    return m && (m->type == &qg__minmax_observer_type || m->type == &qg__ma_observer_type ||
                 m->type == &qg__pc_observer_type || m->type == &qg__ma_pc_observer_type);
}

const char *qg__module_label(const qg_module *m) { return m->path && *m->path ? m->path : m->type->name; }

/* Per-channel min and max of x along axis (or of all of x when axis < 0) into mn/mx
 * (C entries, C = 1 per tensor). Errors on a non-finite value. */
qg_status qg__minmax(const qg_tensor *x, int axis, float *mn, float *mx, int64_t nmax, int64_t *nout) {
    bool red[QG_MAX_DIMS];
    for (int d = 0; d < QG_MAX_DIMS; d++) red[d] = d != axis;
    int64_t K, R;
    const char *src = qg__kr_layout(x, red, &K, &R); /* (C, rest) */
    if (!src) return qg_last_status();
    if (K > nmax) return qg__err(QG_ESHAPE, "observer: %lld channels, at most %lld", (long long)K, (long long)nmax);
    *nout = K;
    bool finite = true;
    enum { L = 64 }; /* independent lanes, so the compiler vectorizes the scan */
    QG_FLOAT_DISPATCH(x->dtype, {
        const real *p = (const real *)src;
        for (int64_t k = 0; k < K; k++) {
            const real *row = p + k * R;
            real lo[L], hi[L], bad[L];
            for (int l = 0; l < L; l++) lo[l] = INFINITY, hi[l] = -INFINITY, bad[l] = 0;
            int64_t r = 0;
            for (; r + L <= R; r += L)
                for (int l = 0; l < L; l++) {
                    real v = row[r + l];
                    lo[l] = v < lo[l] ? v : lo[l];
                    hi[l] = v > hi[l] ? v : hi[l];
                    bad[l] += v - v; /* NaN once an inf or NaN went by */
                }
            for (int l = 0; r < R; r++, l++) {
                real v = row[r];
                lo[l] = v < lo[l] ? v : lo[l];
                hi[l] = v > hi[l] ? v : hi[l];
                bad[l] += v - v;
            }
            for (int l = 1; l < L; l++) {
                lo[0] = lo[l] < lo[0] ? lo[l] : lo[0];
                hi[0] = hi[l] > hi[0] ? hi[l] : hi[0];
                bad[0] += bad[l];
            }
            if (bad[0] != 0 || bad[0] != bad[0]) finite = false;
            mn[k] = (float)lo[0], mx[k] = (float)hi[0];
        }
    });
    if (!finite) return qg__err(QG_EINVAL, "non-finite value (inf or nan)");
    return QG_OK;
}

/* Merges this batch's min/max into the observer's buffers. */
static qg_status observe(qg__observer *o, const qg_tensor *x) {
    qg_module *m = &o->base;
    qg_tensor *tmin = qg_module_buffer(m, "min_val"), *tmax = qg_module_buffer(m, "max_val");
    int axis = -1;
    if (o->per_channel) {
        if (x->ndim == 0 || qg__dim("observer", o->ch_axis, x->ndim, &axis)) {
            return qg__err(QG_ESHAPE, "%s: ch_axis %d does not fit an input of %d dims", qg__module_label(m), o->ch_axis,
                           x->ndim);
        }
    }
    int64_t C = axis >= 0 ? x->shape[axis] : 1, n = 0;
    float *cur = qg__tape_alloc(sizeof(float) * 2 * (size_t)(C ? C : 1));
    if (!cur) return qg_last_status();
    o->steps++;
    qg_status st = qg__minmax(x, axis, cur, cur + C, C, &n);
    if (st)
        return qg__err(st, "%s: %s in its input at step %lld (PyTorch would only report \"min should be less than or equal to max\")",
                       qg__module_label(m), qg_last_error(), (long long)o->steps);
    if (o->per_channel && qg_tensor_numel(tmin) != C) { /* first batch, or the channel count changed */
        if (qg_tensor_resize_(tmin, 1, &C) || qg_tensor_resize_(tmax, 1, &C)) return qg_last_status();
        memcpy(qg_tensor_data(tmin), cur, sizeof(float) * (size_t)C);
        memcpy(qg_tensor_data(tmax), cur + C, sizeof(float) * (size_t)C);
        return QG_OK;
    }
    float *mn = qg_tensor_data(tmin), *mx = qg_tensor_data(tmax);
    const float c = (float)o->averaging_constant;
    for (int64_t k = 0; k < C; k++) {
        float lo = cur[k], hi = cur[C + k];
        if (!o->moving) {
            mn[k] = lo < mn[k] ? lo : mn[k];
            mx[k] = hi > mx[k] ? hi : mx[k];
        } else if (mn[k] == INFINITY && mx[k] == -INFINITY) { /* never observed: take the batch's */
            mn[k] = lo, mx[k] = hi;
        } else {
            mn[k] = mn[k] + c * (lo - mn[k]);
            mx[k] = mx[k] + c * (hi - mx[k]);
        }
    }
    return QG_OK;
}

static qg_tensor *observer_forward(qg_module *m, qg_tensor *x) {
    if (qg__check_float(m->type->name, x)) return NULL;
    if (observe((qg__observer *)m, x)) return NULL;
    return x;
}

qg_module *qg__observer_make(const qg_fq_spec *s) {
    bool pc = qg_qscheme_is_per_channel(s->qscheme);
    const qg_module_type *t = s->observer == QG_OBS_MINMAX ? (pc ? &qg__pc_observer_type : &qg__minmax_observer_type)
                                                           : (pc ? &qg__ma_pc_observer_type : &qg__ma_observer_type);
    qg_module *m = qg_module_new(t);
    if (!m) return NULL;
    qg__observer *o = (qg__observer *)m;
    o->per_channel = pc;
    o->moving = s->observer != QG_OBS_MINMAX;
    o->averaging_constant = qg_opt_or(s->averaging_constant, 0.01);
    o->ch_axis = s->ch_axis;
    o->scheme = s->qscheme;
    o->dtype = s->dtype;
    o->custom_range = s->quant_min < s->quant_max;
    qg_quant_range(s->dtype, s->reduce_range, s->quant_min, s->quant_max, &o->qmin, &o->qmax);
    float eps = (float)qg_opt_or(s->eps, 0x1p-23);
    qg_status st = qg__module_add_buffer_made(m, "eps", qg_tensor_from_data(QG_F32, 1, (int64_t[]){1}, &eps));
    unsigned fixed = QG_BUFFER_FIXED_DTYPE | (pc ? QG_BUFFER_RESIZABLE : 0);
    if (pc) {
        if (!st) st = qg__module_add_buffer_made(m, "min_val", qg_tensor_empty(QG_F32, 1, (int64_t[]){0}));
        if (!st) st = qg__module_add_buffer_made(m, "max_val", qg_tensor_empty(QG_F32, 1, (int64_t[]){0}));
    } else {
        if (!st) st = qg__module_add_buffer_made(m, "min_val", qg_tensor_full(QG_F32, 0, NULL, INFINITY));
        if (!st) st = qg__module_add_buffer_made(m, "max_val", qg_tensor_full(QG_F32, 0, NULL, -INFINITY));
    }
    const char *own[] = {"eps", "min_val", "max_val"};
    for (int i = 0; i < 3 && !st; i++) st = qg_module_buffer_set_flags(m, own[i], i ? fixed : QG_BUFFER_FIXED_DTYPE);
    if (st) {
        qg_module_free(m);
        return NULL;
    }
    return m;
}

qg_module *qg_observer_new(const qg_fq_spec *spec) {
    if (!spec) return qg__err_null("observer_new"), NULL;
    if (qg__check_spec("observer_new", spec)) return NULL;
    return qg__observer_make(spec);
}

/* scale (f32) and zero_point (i32) from the observed range, formula A; tensors (1) or
 * (C) returned caller-owned. */
qg_status qg_observer_calculate_qparams(qg_module *obs, qg_tensor **scale, qg_tensor **zero_point) {
    if (!obs || !scale || !zero_point) return qg__err_null("observer_calculate_qparams");
    if (!qg__is_observer(obs)) return qg__err(QG_EINVAL, "observer_calculate_qparams: %s is not an observer", obs->type->name);
    qg__observer *o = (qg__observer *)obs;
    qg_tensor *tmin = qg_module_buffer(obs, "min_val"), *tmax = qg_module_buffer(obs, "max_val");
    int64_t n = qg_tensor_numel(tmin);
    float eps = *(float *)qg_tensor_data(qg_module_buffer(obs, "eps"));
    int64_t len = n ? n : 1;
    *scale = qg_tensor_ones(QG_F32, 1, &len);
    *zero_point = qg_tensor_zeros(QG_I32, 1, &len);
    if (!*scale || !*zero_point) return qg_last_status();
    if (n == 0) return QG_OK; /* never observed (per channel): scale 1, zero point 0 */
    qg_status st = qg__qparams_observer(n, qg_tensor_data(tmin), qg_tensor_data(tmax), o, eps,
                                        qg_tensor_data(*scale), qg_tensor_data(*zero_point));
    if (st) {
        qg_tensor_free(*scale), qg_tensor_free(*zero_point);
        *scale = *zero_point = NULL;
        return qg__err(st, "%s: %s", qg__module_label(obs), qg_last_error());
    }
    return QG_OK;
}

qg_status qg__qparams_observer(int64_t n, const float *mn, const float *mx, const qg__observer *o, float eps,
                               float *scale, int32_t *zero_point) {
    return qg_qparams_observer(n, mn, mx, o->scheme, o->dtype, o->custom_range, o->qmin, o->qmax, eps, scale, zero_point);
}
