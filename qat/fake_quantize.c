/* Fake-quantize modules (FakeQuantize, FusedMovingAvgObsFakeQuantize,
 * _LearnableFakeQuantize, FixedQParamsFakeQuantize), their toggles, and
 * QuantStub/DeQuantStub. Buffers and their order are PyTorch's, so
 * state dicts match key for key. */
#include <math.h>

#include "op_internal.h" /* the tape arena, for per-forward scratch */
#include "qat_internal.h"

typedef struct {
    qg_module base;
    qg_fq_spec spec;
    int64_t qmin, qmax;
    bool per_channel, symmetric;
} fq_mod;

static qg_tensor *fq_forward(qg_module *m, qg_tensor *x);
static qg_tensor *fused_forward(qg_module *m, qg_tensor *x);
static qg_tensor *learnable_forward(qg_module *m, qg_tensor *x);
static qg_tensor *identity_forward(qg_module *m, qg_tensor *x) { return (void)m, x; }

static qg_status fq_check_load(const qg_module *m, const qg_tensor *(*get)(const char *, void *), void *ctx);
static const qg_module_type fq_type = {.name = "FakeQuantize", .size = sizeof(fq_mod), .forward = fq_forward,
                                       .check_load = fq_check_load};
static const qg_module_type fused_type = {.name = "FusedMovingAvgObsFakeQuantize", .size = sizeof(fq_mod),
                                          .forward = fused_forward, .check_load = fq_check_load};
static const qg_module_type learnable_type = {.name = "_LearnableFakeQuantize", .size = sizeof(fq_mod), .forward = learnable_forward};
static const qg_module_type fixed_type = {.name = "FixedQParamsFakeQuantize", .size = sizeof(fq_mod), .forward = fq_forward};
static const qg_module_type fixed_obs_type = {.name = "FixedQParamsObserver", .size = sizeof(qg_module), .forward = identity_forward};
static const qg_module_type quant_stub_type = {.name = "QuantStub", .size = sizeof(qg_module), .forward = identity_forward};
static const qg_module_type dequant_stub_type = {.name = "DeQuantStub", .size = sizeof(qg_module), .forward = identity_forward};

static bool is_fq(const qg_module *m) {
    return m && (m->type == &fq_type || m->type == &fused_type || m->type == &learnable_type || m->type == &fixed_type);
}

qg_module *qg_quant_stub_new(void) { return qg_module_new(&quant_stub_type); }
qg_module *qg_dequant_stub_new(void) { return qg_module_new(&dequant_stub_type); }

/* ------------------------------------------------------------- construction */

static qg_tensor *u8_one(qg_dtype dt) { return qg_tensor_ones(dt, 1, (int64_t[]){1}); }

qg_module *qg_fake_quant_new(const qg_fq_spec *s) {
    if (!s) return qg__err_null("fake_quant_new"), NULL;
    if (qg__check_spec("fake_quant_new", s)) return NULL;
    const qg_module_type *t = s->kind == QG_FQ_FUSED_MOVING_AVG ? &fused_type
                            : s->kind == QG_FQ_LEARNABLE        ? &learnable_type
                            : s->kind == QG_FQ_FIXED            ? &fixed_type
                                                                : &fq_type;
    qg_module *m = qg_module_new(t);
    if (!m) return NULL;
    fq_mod *f = (fq_mod *)m;
    f->spec = *s;
    f->per_channel = qg_qscheme_is_per_channel(s->qscheme);
    f->symmetric = qg_qscheme_is_symmetric(s->qscheme);
    qg_quant_range(s->dtype, s->reduce_range, s->quant_min, s->quant_max, &f->qmin, &f->qmax);
    qg_dtype toggle = s->kind == QG_FQ_FUSED_MOVING_AVG ? QG_I64 : QG_U8;
    int64_t one = 1;
    float eps = (float)qg_opt_or(s->eps, 0x1p-23);
    qg_status st = QG_OK;
    if (s->kind == QG_FQ_LEARNABLE) { /* parameters first, then its buffers, then the observer */
        st = qg__module_add_param_made(m, "scale", qg_tensor_ones(QG_F32, 1, &one));
        if (!st) st = qg__module_add_param_made(m, "zero_point", qg_tensor_zeros(QG_F32, 1, &one));
        if (!st) st = qg__module_add_buffer_made(m, "fake_quant_enabled", u8_one(QG_U8));
        if (!st) st = qg__module_add_buffer_made(m, "observer_enabled", u8_one(QG_U8));
        if (!st) st = qg__module_add_buffer_made(m, "static_enabled", u8_one(QG_U8));
        if (!st) st = qg__module_add_buffer_made(m, "learning_enabled", qg_tensor_zeros(QG_U8, 1, &one));
        if (!st) st = qg__module_add_buffer_made(m, "eps", qg_tensor_from_data(QG_F32, 1, &one, &eps));
        if (!st) st = qg_module_buffer_set_flags(m, "eps", QG_BUFFER_FIXED_DTYPE);
        if (!st) st = qg_module_add_child(m, "activation_post_process", qg__observer_make(s));
    } else {
        st = qg__module_add_buffer_made(m, "fake_quant_enabled", u8_one(toggle));
        if (!st) st = qg__module_add_buffer_made(m, "observer_enabled", u8_one(toggle));
        float sc = s->kind == QG_FQ_FIXED ? (float)s->fixed_scale : 1.0f;
        int32_t zp = s->kind == QG_FQ_FIXED ? (int32_t)s->fixed_zero_point : 0;
        if (!st) st = qg__module_add_buffer_made(m, "scale", qg_tensor_from_data(QG_F32, 1, &one, &sc));
        if (!st) st = qg__module_add_buffer_made(m, "zero_point", qg_tensor_from_data(QG_I32, 1, &one, &zp));
        if (!st) st = qg_module_buffer_set_flags(m, "scale", QG_BUFFER_RESIZABLE | QG_BUFFER_FIXED_DTYPE);
        if (!st) st = qg_module_buffer_set_flags(m, "zero_point", QG_BUFFER_RESIZABLE);
        if (s->kind == QG_FQ_FIXED) {
            qg_module *o = qg_module_new(&fixed_obs_type);
            st = st ? st : qg_module_add_child(m, "activation_post_process", o);
            if (!st) st = qg__module_add_buffer_made(o, "scale", qg_tensor_from_data(QG_F32, 1, &one, &sc));
            if (!st) st = qg_module_buffer_set_flags(o, "scale", QG_BUFFER_FIXED_DTYPE);
            if (!st) st = qg__module_add_buffer_made(o, "zero_point", qg_tensor_from_data(QG_I32, 1, &one, &zp));
        } else if (!st) {
            st = qg_module_add_child(m, "activation_post_process", qg__observer_make(s));
        }
    }
    if (st) {
        qg_module_free(m);
        return NULL;
    }
    return m;
}

static bool flag_on(const qg_module *m, const char *name) {
    qg_tensor *t = qg_module_buffer(m, name);
    return t && qg_tensor_item(t) != 0;
}

/* ------------------------------------------------------------- forwards */

/* FakeQuantize: observe, formula A into scale/zero_point, then fake-quantize */
static qg_tensor *fq_forward(qg_module *m, qg_tensor *x) {
    fq_mod *f = (fq_mod *)m;
    qg_tensor *scale = qg_module_buffer(m, "scale"), *zp = qg_module_buffer(m, "zero_point");
    qg_module *obs = qg_module_child(m, "activation_post_process");
    if (m->type == &fq_type && flag_on(m, "observer_enabled")) {
        if (!qg_module_forward(obs, qg_detach(x))) return NULL;
        int64_t n = qg__observer_channels(obs); /* buffers resized only when the count changes */
        if ((qg_tensor_numel(scale) != n || scale->ndim != 1) && qg_tensor_resize_(scale, 1, &n)) return NULL;
        if ((qg_tensor_numel(zp) != n || zp->ndim != 1) && qg_tensor_resize_(zp, 1, &n)) return NULL;
        if (qg__observer_qparams(obs, qg_tensor_data(scale), qg_tensor_data(zp))) return NULL;
    }
    if (!flag_on(m, "fake_quant_enabled")) return x;
    if (f->per_channel) return qg_fake_quantize_per_channel(x, scale, zp, f->spec.ch_axis, f->qmin, f->qmax);
    return qg_fake_quantize_per_tensor(x, *(float *)qg_tensor_data(scale), *(int32_t *)qg_tensor_data(zp), f->qmin, f->qmax);
}

/* A checkpoint may resize the per-channel buffers (PyTorch lets their length vary), but
 * not apart: scale and zero_point have one length, the observer's min_val and max_val
 * one length, 0 (never observed) or that of the scale; per tensor, one element each. */
static qg_status fq_check_load(const qg_module *m, const qg_tensor *(*get)(const char *, void *), void *ctx) {
    const fq_mod *f = (const fq_mod *)m;
    const qg_tensor *sc = get("scale", ctx), *zp = get("zero_point", ctx);
    const qg_tensor *mn = get("activation_post_process.min_val", ctx), *mx = get("activation_post_process.max_val", ctx);
    int64_t ns = sc ? qg_tensor_numel(sc) : 1, nz = zp ? qg_tensor_numel(zp) : 1;
    int64_t nmin = mn ? qg_tensor_numel(mn) : 0, nmax = mx ? qg_tensor_numel(mx) : 0;
    if (!f->per_channel && (ns != 1 || nz != 1))
        return qg__err(QG_ESHAPE, "per-tensor scale and zero_point need 1 element each, got %lld and %lld",
                       (long long)ns, (long long)nz);
    if (ns != nz) return qg__err(QG_ESHAPE, "scale has %lld elements but zero_point %lld", (long long)ns, (long long)nz);
    if (f->per_channel && (nmin != nmax || (nmin && nmin != ns)))
        return qg__err(QG_ESHAPE, "observer min_val/max_val have %lld and %lld elements, expected 0 or %lld (the scale's)",
                       (long long)nmin, (long long)nmax, (long long)ns);
    return QG_OK;
}

/* FusedMovingAvgObsFakeQuantize: the fused op does observer, formula B and fake-quant */
static qg_tensor *fused_forward(qg_module *m, qg_tensor *x) {
    fq_mod *f = (fq_mod *)m;
    qg_module *obs = qg_module_child(m, "activation_post_process");
    qg__observer *o = (qg__observer *)obs;
    if (flag_on(m, "observer_enabled")) o->steps++;
    qg_tensor *y = qg_fused_moving_avg_obs_fake_quant(
        x, qg_module_buffer(m, "observer_enabled"), qg_module_buffer(m, "fake_quant_enabled"),
        qg_module_buffer(obs, "min_val"), qg_module_buffer(obs, "max_val"), qg_module_buffer(m, "scale"),
        qg_module_buffer(m, "zero_point"), o->averaging_constant, f->qmin, f->qmax, f->spec.ch_axis, f->per_channel,
        f->symmetric);
    if (!y) qg__err(qg_last_status(), "%s: %s (step %lld)", qg__module_label(m), qg_last_error(), (long long)o->steps);
    return y;
}

/* _LearnableFakeQuantize: static observation sets scale/zero_point, else they are
 * learned (scale kept >= eps) */
static qg_tensor *learnable_forward(qg_module *m, qg_tensor *x) {
    fq_mod *f = (fq_mod *)m;
    qg_tensor *scale = qg_module_param(m, "scale"), *zp = qg_module_param(m, "zero_point");
    qg_module *obs = qg_module_child(m, "activation_post_process");
    float *sd = qg_tensor_data(scale), *zd = qg_tensor_data(zp);
    int64_t n = qg_tensor_numel(scale);
    if (flag_on(m, "static_enabled")) {
        if (!qg_module_forward(obs, qg_detach(x))) return NULL;
        int64_t c = qg__observer_channels(obs);
        if (c != n) { /* per channel: the parameters take the channel count */
            if (qg_tensor_resize_(scale, 1, &c) || qg_tensor_resize_(zp, 1, &c)) return NULL;
            sd = qg_tensor_data(scale), zd = qg_tensor_data(zp), n = c;
        }
        int32_t *zi = qg__tape_alloc(sizeof(int32_t) * (size_t)n); /* the integer zero points, then as floats */
        if (!zi || qg__observer_qparams(obs, sd, zi)) return NULL;
        for (int64_t i = 0; i < n; i++) zd[i] = (float)zi[i];
    } else {
        float eps = *(float *)qg_tensor_data(qg_module_buffer(m, "eps"));
        for (int64_t i = 0; i < n; i++) sd[i] = sd[i] < eps ? eps : sd[i];
    }
    if (!flag_on(m, "fake_quant_enabled")) return x;
    if (f->symmetric) memset(zd, 0, sizeof(float) * (size_t)n);
    double gf = f->spec.use_grad_scaling ? 1.0 / sqrt((double)qg_tensor_numel(x) * (double)f->qmax) : 1.0;
    if (f->per_channel) return qg_fake_quantize_learnable_per_channel(x, scale, zp, f->spec.ch_axis, f->qmin, f->qmax, gf);
    return qg_fake_quantize_learnable_per_tensor(x, scale, zp, f->qmin, f->qmax, gf);
}

/* ------------------------------------------------------------- toggles */

typedef struct {
    const char *flag;
    bool on;
} toggle_ctx;

static void toggle(qg_module *m, const char *path, void *vctx) {
    (void)path;
    toggle_ctx *c = vctx;
    if (!is_fq(m)) return;
    qg_tensor *t = qg_module_buffer(m, c->flag);
    if (t) qg_tensor_fill_(t, c->on ? 1 : 0);
    if (m->type == &learnable_type && !strcmp(c->flag, "observer_enabled")) {
        /* PyTorch's learnable fake-quant observes through static_enabled */
        qg_tensor *s = qg_module_buffer(m, "static_enabled");
        if (s) qg_tensor_fill_(s, c->on ? 1 : 0);
    }
}

void qg_enable_fake_quant(qg_module *m, bool on) { qg_module_apply(m, toggle, &(toggle_ctx){"fake_quant_enabled", on}); }
void qg_enable_observer(qg_module *m, bool on) { qg_module_apply(m, toggle, &(toggle_ctx){"observer_enabled", on}); }

/* ------------------------------------------------------------- convert's view */

qg_status qg__fake_quant_range(const qg_module *fq, int64_t *qmin, int64_t *qmax, qg_qdtype *dtype, int *axis) {
    if (!is_fq(fq)) return qg__err(QG_EINVAL, "%s is not a fake-quant module", fq ? fq->type->name : "NULL");
    const fq_mod *f = (const fq_mod *)fq;
    *qmin = f->qmin, *qmax = f->qmax, *dtype = f->spec.dtype;
    *axis = f->per_channel ? f->spec.ch_axis : -1;
    return QG_OK;
}

qg_status qg_fake_quant_calculate_qparams(qg_module *fq, qg_tensor **scale, qg_tensor **zero_point) {
    if (!fq || !scale || !zero_point) return qg__err_null("fake_quant_calculate_qparams");
    *scale = *zero_point = NULL;
    if (!is_fq(fq))
        return qg__err(QG_EINVAL, "fake_quant_calculate_qparams: %s is not a fake-quant module", fq->type->name);
    const fq_mod *f = (const fq_mod *)fq;
    if (fq->type == &fq_type || fq->type == &fused_type)
        return qg_observer_calculate_qparams(qg_module_child(fq, "activation_post_process"), scale, zero_point);
    const bool learn = fq->type == &learnable_type;
    qg_tensor *s = learn ? qg_module_param(fq, "scale") : qg_module_buffer(fq, "scale");
    qg_tensor *z = learn ? qg_module_param(fq, "zero_point") : qg_module_buffer(fq, "zero_point");
    int64_t n = qg_tensor_numel(s);
    *scale = qg_tensor_empty(QG_F32, 1, &n);
    *zero_point = qg_tensor_empty(QG_I32, 1, &n);
    if (!*scale || !*zero_point || qg_tensor_copy_to(s, QG_F32, qg_tensor_data(*scale))) {
        qg_tensor_free(*scale), qg_tensor_free(*zero_point);
        *scale = *zero_point = NULL;
        return qg_last_status();
    }
    float *sd = qg_tensor_data(*scale);
    int32_t *zd = qg_tensor_data(*zero_point);
    const float eps = learn ? *(float *)qg_tensor_data(qg_module_buffer(fq, "eps")) : 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[1] = {i};
        double zv = qg_tensor_get(z, idx);
        if (learn) { /* scale.clamp(min=eps); zero_point.round().clamp(qmin, qmax) */
            sd[i] = sd[i] < eps ? eps : sd[i];
            zv = nearbyint(zv);
            zv = zv < (double)f->qmin ? (double)f->qmin : zv > (double)f->qmax ? (double)f->qmax : zv;
        }
        zd[i] = (int32_t)zv;
    }
    return QG_OK;
}
