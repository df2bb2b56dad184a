/* Observers: MinMax and MovingAverageMinMax, per tensor and per channel, as modules
 * with PyTorch's buffers (eps, min_val, max_val). They watch x outside the tape and
 * return it unchanged; calculate_qparams applies formula A. */
#include <math.h>

#include "ops/fq_internal.h"
#include "qat_internal.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* moving averages rounded as PyTorch's float ops */
#endif

static qg_tensor *observer_forward(qg_module *m, qg_tensor *x);
static void observer_free(qg_module *m) { qg__free(((qg__observer *)m)->scratch); }

const qg_module_type qg__minmax_observer_type = {.name = "MinMaxObserver", .size = sizeof(qg__observer), .forward = observer_forward, .free = observer_free};
const qg_module_type qg__ma_observer_type = {.name = "MovingAverageMinMaxObserver", .size = sizeof(qg__observer), .forward = observer_forward, .free = observer_free};
const qg_module_type qg__pc_observer_type = {.name = "PerChannelMinMaxObserver", .size = sizeof(qg__observer), .forward = observer_forward, .free = observer_free};
const qg_module_type qg__ma_pc_observer_type = {.name = "MovingAveragePerChannelMinMaxObserver", .size = sizeof(qg__observer), .forward = observer_forward, .free = observer_free};

bool qg__is_observer(const qg_module *m) {
    return m && (m->type == &qg__minmax_observer_type || m->type == &qg__ma_observer_type ||
                 m->type == &qg__pc_observer_type || m->type == &qg__ma_pc_observer_type);
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
    const qg_tensor *xc = qg_contiguous(x); /* x is detached: a copy only if strided */
    if (!xc) return qg_last_status();
    const fq_layout L = qg__fq_layout_of(xc, axis);
    const int64_t C = L.C;
    if (C > o->cap) { /* the scratch grows once to the channel count, then is reused */
        float *p = qg__alloc(sizeof(float) * 2 * (size_t)C);
        if (!p) return qg__err(QG_ENOMEM, "%s: out of memory for %lld channels", qg__module_label(m), (long long)C);
        qg__free(o->scratch);
        o->scratch = p, o->cap = C;
    }
    float *cur = o->scratch;
    o->steps++;
    bool finite = true;
    qg_status st = qg__channel_minmax(xc->dtype, qg__data(xc), &L, cur, cur + C, &finite); /* empty: +-inf */
    if (st) return st;
    if (!finite)
        return qg__err(QG_EINVAL, "%s: non-finite value (inf or nan) in its input at step %lld (PyTorch would only report "
                                  "\"min should be less than or equal to max\")", qg__module_label(m), (long long)o->steps);
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
    if (observe((qg__observer *)m, qg_detach(x))) return NULL;
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

int64_t qg__observer_channels(const qg_module *obs) {
    int64_t n = qg_tensor_numel(qg_module_buffer(obs, "min_val"));
    return n ? n : 1;
}

qg_status qg__observer_qparams(qg_module *obs, float *scale, int32_t *zero_point) {
    qg__observer *o = (qg__observer *)obs;
    qg_tensor *tmin = qg_module_buffer(obs, "min_val"), *tmax = qg_module_buffer(obs, "max_val");
    int64_t n = qg_tensor_numel(tmin);
    if (n == 0) { /* never observed (per channel): scale 1, zero point 0 */
        scale[0] = 1.0f, zero_point[0] = 0;
        return QG_OK;
    }
    float eps = *(float *)qg_tensor_data(qg_module_buffer(obs, "eps"));
    qg_status st = qg__qparams_observer(n, qg_tensor_data(tmin), qg_tensor_data(tmax), o, eps, scale, zero_point);
    return st ? qg__err(st, "%s: %s", qg__module_label(obs), qg_last_error()) : QG_OK;
}

/* scale (f32) and zero_point (i32) from the observed range, formula A; tensors (1) or
 * (C) returned caller-owned. */
qg_status qg_observer_calculate_qparams(qg_module *obs, qg_tensor **scale, qg_tensor **zero_point) {
    if (!obs || !scale || !zero_point) return qg__err_null("observer_calculate_qparams");
    if (!qg__is_observer(obs)) return qg__err(QG_EINVAL, "observer_calculate_qparams: %s is not an observer", obs->type->name);
    int64_t len = qg__observer_channels(obs);
    *scale = qg_tensor_ones(QG_F32, 1, &len);
    *zero_point = qg_tensor_zeros(QG_I32, 1, &len);
    qg_status st = *scale && *zero_point ? qg__observer_qparams(obs, qg_tensor_data(*scale), qg_tensor_data(*zero_point))
                                         : qg_last_status();
    if (st) {
        qg_tensor_free(*scale), qg_tensor_free(*zero_point);
        *scale = *zero_point = NULL;
    }
    return st;
}

qg_status qg__qparams_observer(int64_t n, const float *mn, const float *mx, const qg__observer *o, float eps,
                               float *scale, int32_t *zero_point) {
    return qg_qparams_observer(n, mn, mx, o->scheme, o->dtype, o->custom_range, o->qmin, o->qmax, eps, scale, zero_point);
}
