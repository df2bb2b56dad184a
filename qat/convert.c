/* convert: a prepared, trained QAT model becomes an int8 model, in place, as
 * PyTorch 1.13's eager torch.ao.quantization.convert does (docs/int8.md, "Convert").
 * Three passes, so that a refused model is left as it was: check the whole tree,
 * build every replacement, then swap them in. */
#include <math.h>

#include "internal.h"
#include "qat_internal.h"
#include "qgrad/quant.h"

typedef struct {
    qg_module *parent;
    int index;
    qg_module *repl;
} swap;

typedef struct {
    const qg_convert_opts *o;
    int nswaps, cap, nconvertible;
    swap *swaps;
    qg_status st;
} conv_ctx;

static bool is_quantized_type(const qg_module *m) {
    const char *n = m->type->name;
    return !strncmp(n, "quantized.", 10) || !strncmp(n, "intrinsic.quantized.", 20);
}

static const qg_convert_custom *custom_of(const conv_ctx *c, const qg_module *m) {
    for (int i = 0; i < c->o->ncustom; i++)
        if (c->o->custom[i].type_name && !strcmp(c->o->custom[i].type_name, m->type->name)) return &c->o->custom[i];
    return NULL;
}

static bool is_stub(const qg_module *m) { return qg_module_is(m, "QuantStub") || qg_module_is(m, "DeQuantStub"); }

/* Calls fn on each child of m but its output hook, with the child's dotted path;
 * stops at the first error. */
typedef qg_status (*child_fn)(conv_ctx *c, qg_module *parent, int i, qg_module *ch, const char *path);
static qg_status each_child(conv_ctx *c, qg_module *m, const char *path, child_fn fn) {
    for (int i = 0; i < qg__module_nchildren(m); i++) {
        const char *name;
        qg_module *ch = qg__module_child_at(m, i, &name);
        if (ch == m->output_hook) continue;
        char cp[512];
        snprintf(cp, sizeof cp, *path ? "%s.%s" : "%s%s", path, name);
        qg_status st = fn(c, m, i, ch, cp);
        if (st) return st;
    }
    return QG_OK;
}

/* ------------------------------------------------------------- pass 1: checks */

/* The activation fake-quant has seen data (its qparams would be PyTorch's "never
 * observed" 1 and 0 otherwise). */
static qg_status check_observed(const char *path, const qg_module *m) {
    qg_module *fq = m->output_hook;
    if (!fq)
        return qg__err(QG_EINVAL, "convert: module '%s' (%s) has no activation_post_process: was the model prepared "
                       "with a qconfig (qg_prepare_qat)?", path, m->type->name);
    qg_module *obs = qg_module_child(fq, "activation_post_process");
    qg_tensor *mn = obs ? qg_module_buffer(obs, "min_val") : NULL, *mx = obs ? qg_module_buffer(obs, "max_val") : NULL;
    if (!mn || !mx) return QG_OK; /* fixed qparams */
    bool seen = qg_tensor_numel(mn) > 0;
    for (int64_t i = 0; seen && i < qg_tensor_numel(mn); i++) {
        float a = ((const float *)qg_tensor_data(mn))[i], b = ((const float *)qg_tensor_data(mx))[i];
        seen = isfinite(a) && isfinite(b) && a <= b;
    }
    if (!seen)
        return qg__err(QG_ESTATE, "convert: module '%s' (%s): its activation observer has never run (train or "
                       "calibrate the model first)", path, m->type->name);
    return QG_OK;
}

static qg_status check_engine(qg_qengine e) {
    if (e != QG_QENGINE_ONEDNN && e != QG_QENGINE_QNNPACK)
        return qg__err(QG_EINVAL, "convert: unknown quantized engine %d", (int)e);
    return QG_OK;
}

/* Every module of the model: in eval mode, not converted yet. */
static qg_status check_eval(const char *path, const qg_module *m) {
    if (m->training)
        return qg__err(QG_ESTATE, "convert: module '%s' (%s) is in training mode; call qg_module_eval(model) first",
                       path, m->type->name);
    if (is_quantized_type(m))
        return qg__err(QG_ESTATE, "convert: module '%s' is already %s: the model was converted before", path,
                       m->type->name);
    return QG_OK;
}

/* A module to replace: a QAT module or stub, in eval mode, whose activation observer
 * has run (a dynamic Linear and a DeQuantStub have none). */
static qg_status check_convertible(const char *path, const qg_module *m) {
    qg_status st = check_eval(path, m);
    if (st) return st;
    if (!qg__is_qat_module(m) && !is_stub(m))
        return qg__err(QG_EINVAL, "convert: module '%s' (%s) has no quantized version: expected a QAT module "
                       "(qat.Linear, intrinsic.qat.*, qat.Conv*, qat.dynamic.Linear), a QuantStub or a DeQuantStub "
                       "(was the model prepared with qg_prepare_qat?)", path, m->type->name);
    if (qg_module_is(m, "qat.dynamic.Linear") || qg_module_is(m, "DeQuantStub")) return QG_OK;
    return check_observed(path, m);
}

static qg_status check_child(conv_ctx *c, qg_module *parent, int i, qg_module *ch, const char *path);

static qg_status check_rec(conv_ctx *c, qg_module *m, const char *path) {
    const char *shown = *path ? path : "(the model)";
    qg_status st = check_eval(shown, m);
    if (st) return st;
    if (custom_of(c, m)) {
        c->nconvertible++;
        return QG_OK;
    }
    if (qg__is_qat_module(m) || is_stub(m)) {
        c->nconvertible += !qg_module_is(m, "DeQuantStub");
        return check_convertible(shown, m);
    }
    if (m->output_hook && !qg__is_observer(m))
        return qg__err(QG_EINVAL, "convert: module '%s' (%s) has an activation_post_process but no quantized "
                       "version in qgrad", shown, m->type->name);
    return each_child(c, m, path, check_child);
}

static qg_status check_child(conv_ctx *c, qg_module *parent, int i, qg_module *ch, const char *path) {
    (void)parent, (void)i;
    return check_rec(c, ch, path);
}

/* ------------------------------------------------------------- pass 2: replacements */

/* The module's output qparams (per tensor) from its activation_post_process. */
static qg_status output_qparams(qg_module *m, double *scale, int64_t *zp, qg_qdtype *dtype) {
    qg_tensor *s = NULL, *z = NULL;
    int64_t qmin, qmax;
    int axis;
    qg_status st = qg__fake_quant_range(m->output_hook, &qmin, &qmax, dtype, &axis);
    if (!st) st = qg_fake_quant_calculate_qparams(m->output_hook, &s, &z);
    if (!st && (axis >= 0 || qg_tensor_numel(s) != 1))
        st = qg__err(QG_EINVAL, "activation_post_process must quantize per tensor");
    if (!st) *scale = ((const float *)qg_tensor_data(s))[0], *zp = ((const int32_t *)qg_tensor_data(z))[0];
    qg_tensor_free(s), qg_tensor_free(z);
    return st;
}

/* w (f32) -> qint8 with the observer's qparams, clamped to [qmin, qmax] (PyTorch's
 * _quantize_weight and _clamp_weight). A tape tensor. */
static qg_tensor *quantize_weight(const qg_tensor *w, const qg_tensor *scale, const qg_tensor *zp, int axis,
                                  int64_t qmin, int64_t qmax) {
    qg_tensor *q = axis >= 0 ? qg_quantize_per_channel(w, scale, zp, axis, QG_QINT8)
                             : qg_quantize_per_tensor(w, ((const float *)qg_tensor_data(scale))[0],
                                                      ((const int32_t *)qg_tensor_data(zp))[0], QG_QINT8);
    if (!q) return NULL;
    int8_t *d = qg_tensor_data(q);
    for (int64_t i = 0; i < qg_tensor_numel(q); i++) d[i] = (int8_t)(d[i] < qmin ? qmin : d[i] > qmax ? qmax : d[i]);
    return q;
}

/* The float module's Linear/Conv (a fused float module's child "0"). */
static qg_module *base_of(qg_module *f) {
    qg_module *b = qg_module_child(f, "0");
    return b ? b : f;
}

static qg_module *convert_qat(qg_module *m, qg_qengine engine) {
    const char *tn = m->type->name;
    const bool dynamic = qg_module_is(m, "qat.dynamic.Linear");
    const bool relu = strstr(tn, "ReLU") != NULL;
    const int dim = strstr(tn, "Linear") ? 0 : strstr(tn, "1d") && !strstr(tn, "Linear") ? 1 : 2;
    qg_module *f = qg_qat_to_float(m); /* the float weight and bias, BN folded */
    if (!f) return NULL;
    qg_module *base = base_of(f);
    qg_tensor *w = qg_module_param(base, "weight"), *b = qg_module_param(base, "bias");
    qg_layer_info li;
    qg_module *out = NULL, *obs = NULL, *wfq = qg_module_child(m, "weight_fake_quant");
    qg_tensor *s = NULL, *z = NULL;
    int64_t qmin = 0, qmax = 0;
    qg_qdtype wdt = QG_QINT8;
    int axis = -1;
    qg_status st = qg_nn_layer_info(base, &li);
    bool prev = qg_set_grad_enabled(false);
    if (!st && dynamic) { /* a fresh weight observer from the qconfig, fed the weight once */
        const qg_qconfig *qc = qg__qat_qconfig(m);
        obs = qg_observer_new(&qc->weight);
        qg_module *fq = obs ? qg_fake_quant_new(&qc->weight) : NULL;
        st = fq ? qg__fake_quant_range(fq, &qmin, &qmax, &wdt, &axis) : qg_last_status();
        qg_module_free(fq);
        if (!st && !qg_module_forward(obs, w)) st = qg_last_status();
        if (!st) st = qg_observer_calculate_qparams(obs, &s, &z);
    } else if (!st) { /* the weight fake-quant runs once more on the (folded) weight */
        st = wfq ? qg__fake_quant_range(wfq, &qmin, &qmax, &wdt, &axis)
                 : qg__err(QG_EINVAL, "the weight_fake_quant child is missing");
        if (!st && !qg_module_forward(wfq, w)) st = qg_last_status();
        if (!st) st = qg_fake_quant_calculate_qparams(wfq, &s, &z);
    }
    if (!st && wdt != QG_QINT8)
        st = qg__err(QG_EINVAL, "weights must be qint8 (the weight qconfig says %s)", wdt == QG_QUINT8 ? "quint8" : "qint32");
    if (!st && axis > 0) st = qg__err(QG_EINVAL, "per-channel weights must use ch_axis 0, got %d", axis);
    qg_tensor *wq = st ? NULL : quantize_weight(w, s, z, axis, qmin, qmax);
    if (!st && !wq) st = qg_last_status();
    if (!st && dynamic) {
        out = qg_quantized_dynamic_linear_new(wq, b, true, engine);
    } else if (!st) {
        double oscale;
        int64_t ozp;
        qg_qdtype adt;
        st = output_qparams(m, &oscale, &ozp, &adt);
        if (!st && adt != QG_QUINT8)
            st = qg__err(QG_EINVAL, "the int8 kernels take quint8 activations (the activation qconfig says %s)",
                         adt == QG_QINT8 ? "qint8" : "qint32");
        qg_qlayer_args a = {.dim = dim, .groups = li.groups, .relu = relu};
        memcpy(a.stride, li.stride, sizeof a.stride);
        memcpy(a.padding, li.padding, sizeof a.padding);
        memcpy(a.dilation, li.dilation, sizeof a.dilation);
        if (!st) out = qg_quantized_layer_new(wq, b, oscale, ozp, &a, engine);
    }
    qg_set_grad_enabled(prev);
    qg_tensor_free(s), qg_tensor_free(z);
    qg_module_free(obs), qg_module_free(f);
    return out;
}

static qg_module *convert_stub(qg_module *m) {
    if (qg_module_is(m, "DeQuantStub")) return qg_quantized_dequantize_new();
    double scale;
    int64_t zp;
    qg_qdtype dt;
    if (output_qparams(m, &scale, &zp, &dt)) return NULL;
    return qg_quantized_quantize_new(scale, zp, dt);
}

static qg_status add_swap(conv_ctx *c, qg_module *parent, int i, qg_module *repl) {
    if (c->nswaps == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        swap *s = qg__alloc(sizeof *s * (size_t)cap);
        if (!s) return qg__err(QG_ENOMEM, "convert: out of memory");
        if (c->nswaps) memcpy(s, c->swaps, sizeof *s * (size_t)c->nswaps);
        qg__free(c->swaps);
        c->swaps = s, c->cap = cap;
    }
    c->swaps[c->nswaps++] = (swap){parent, i, repl};
    return QG_OK;
}

static qg_status build_rec(conv_ctx *c, qg_module *m, const char *path);

/* r, m's replacement at path (NULL: its builder's error): in eval mode, with m's path. */
static qg_module *finish(qg_module *r, const qg_module *m, const char *path) {
    if (!r && !strncmp(qg_last_error(), "convert: module '", 17)) return NULL; /* named already (a hook's child) */
    if (!r)
        return qg__err(qg_last_status(), "convert: module '%s' (%s): %s", path, m->type->name, qg_last_error()), NULL;
    qg_module_set_path(r, path);
    qg_module_train(r, false);
    return r;
}

/* One QAT module's or stub's replacement, checked as pass 1 checks it (again, for
 * qg_convert; first, for a custom hook's qg_convert_module). */
static qg_module *convert_one(qg_module *m, qg_qengine engine, const char *path) {
    if (check_convertible(path, m)) return NULL;
    if (check_engine(engine))
        return qg__err(QG_EINVAL, "%s (expected onednn or qnnpack) for module '%s' (%s)", qg_last_error(), path,
                       m->type->name), NULL;
    return finish(qg__is_qat_module(m) ? convert_qat(m, engine) : convert_stub(m), m, path);
}

qg_module *qg_convert_module(qg_module *m, qg_qengine engine) {
    if (!m) return qg__err_null("convert_module"), NULL;
    return convert_one(m, engine, m->path && *m->path ? m->path : "(the module)");
}

/* The child's replacement, if it has one, queued; else its own children's. */
static qg_status build_child(conv_ctx *c, qg_module *m, int i, qg_module *ch, const char *cp) {
    const qg_convert_custom *cu = custom_of(c, ch);
    qg_module *r;
    if (cu)
        r = finish(cu->convert(ch, c->o->engine, cu->ctx), ch, cp);
    else if (qg__is_qat_module(ch) || is_stub(ch))
        r = convert_one(ch, c->o->engine, cp);
    else
        return build_rec(c, ch, cp);
    if (!r) return qg_last_status();
    if (add_swap(c, m, i, r)) {
        qg_module_free(r);
        return QG_ENOMEM;
    }
    return QG_OK;
}

static qg_status build_rec(conv_ctx *c, qg_module *m, const char *path) { return each_child(c, m, path, build_child); }

/* ------------------------------------------------------------- convert */

qg_status qg_convert(qg_module *model, const qg_convert_opts *o) {
    qg_convert_opts defaults = {.engine = qg_get_qengine()};
    if (!model) return qg__err_null("convert");
    if (!o) o = &defaults;
    if (check_engine(o->engine)) return qg_last_status();
    if (o->ncustom < 0 || (o->ncustom && !o->custom))
        return qg__err(QG_EINVAL, "convert: %d custom modules given with a NULL array", o->ncustom);
    for (int i = 0; i < o->ncustom; i++)
        if (!o->custom[i].type_name || !o->custom[i].convert)
            return qg__err(QG_EINVAL, "convert: custom module %d needs a type name and a convert function", i);
    conv_ctx c = {.o = o};
    if (qg__is_qat_module(model) || is_stub(model))
        return qg__err(QG_EINVAL, "convert: the model itself is a %s; convert converts the modules of a model (put it "
                       "in a Sequential)", model->type->name);
    qg_status st = check_rec(&c, model, "");
    if (!st && !c.nconvertible)
        st = qg__err(QG_EINVAL, "convert: nothing to convert: the model has no QAT modules or QuantStubs (prepare it "
                     "with a qconfig first: qg_prepare_qat)");
    if (!st) st = build_rec(&c, model, "");
    for (int i = 0; i < c.nswaps; i++) {
        swap *s = &c.swaps[i];
        if (st) {
            qg_module_free(s->repl);
            continue;
        }
        qg_module *old = qg__module_child_at(s->parent, s->index, NULL);
        qg__module_set_child_at(s->parent, s->index, s->repl);
        qg_module_free(old);
    }
    qg__free(c.swaps);
    return st;
}
