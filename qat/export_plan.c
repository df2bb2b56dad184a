/* The exporters' view of a converted model (export_plan.h): its leaves in the order
 * they run, each run once on a batch of one so that its input and output shapes and
 * quantization, and the requantization constants of the layers (qlayer.h), are the
 * ones the model computes with. */
#include "export_plan.h"
#include "qat_internal.h"
#include "qgrad/quant.h"

typedef struct {
    const char *who;
    qg__xplan *p;
    int cap;
    qg_tensor *x; /* the running value */
} walk;

int64_t qg__xval_numel(const qg__xval *v) { return qg__numel(v->ndim, v->shape); }

static void value_of(const qg_tensor *t, qg__xval *v) {
    v->ndim = t->ndim;
    memcpy(v->shape, t->shape, sizeof v->shape);
    v->q = t->quant != NULL;
    v->scale = v->q ? t->quant->scale : 0, v->zp = v->q ? t->quant->zero_point : 0;
}

static qg_status unsupported(const walk *w, const char *path, const qg_module *m, const char *why) {
    return qg__err(QG_EINVAL, "%s: module '%s' (%s) %s", w->who, path, m->type->name, why);
}

static qg_status kind_of(const walk *w, const char *path, qg_module *m, qg__xkind *k) {
    double s;
    int64_t z;
    qg_qdtype dt;
    if (qg__quantize_info(m, &s, &z, &dt)) {
        if (dt != QG_QUINT8) return unsupported(w, path, m, "quantizes to qint8 or qint32: exports take quint8 activations");
        *k = QG_XS_QUANTIZE;
    } else if (qg_module_is(m, "quantized.DeQuantize")) {
        *k = QG_XS_DEQUANTIZE;
    } else if (qg__is_qlayer(m)) {
        qg_qlayer_args a;
        qg_qengine e;
        bool dyn, rr;
        qg__qlayer_info(m, &a, &e, &dyn, &rr);
        *k = dyn ? QG_XS_DYNAMIC : QG_XS_LAYER;
    } else if (qg_module_is(m, "ReLU")) {
        *k = QG_XS_RELU;
    } else if (qg_module_is(m, "MaxPool2d") || qg_module_is(m, "AvgPool2d") || qg_module_is(m, "AdaptiveAvgPool2d")) {
        *k = QG_XS_POOL;
    } else if (qg_module_is(m, "Flatten") || qg_module_is(m, "Identity")) {
        *k = QG_XS_NOOP;
    } else if (qg_module_is(m, "Dropout")) {
        if (m->training) return unsupported(w, path, m, "is in training mode: call qg_module_eval first");
        *k = QG_XS_NOOP;
    } else {
        return unsupported(w, path, m, "has no export form: exports take the modules qg_convert makes "
                           "(Quantize, DeQuantize, the quantized Linear and Conv and their ReLU fusions, the "
                           "dynamic Linear), ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout and "
                           "Identity in Sequential containers");
    }
    return QG_OK;
}

static qg_status leaf(walk *w, const char *path, qg_module *m) {
    qg__xstep st = {.m = m, .type = m->type->name};
    snprintf(st.path, sizeof st.path, "%s", path);
    qg_status e = kind_of(w, path, m, &st.kind);
    if (e) return e;
    if (st.kind == QG_XS_POOL && !w->x->quant)
        return unsupported(w, path, m, "pools f32 values: exports pool quint8 activations only (put it before the "
                           "DeQuantize)");
    value_of(w->x, &st.in);
    qg__qpool_trace = st.kind == QG_XS_POOL ? &st.pool : NULL;
    qg_tensor *y = qg_module_forward(m, w->x);
    qg__qpool_trace = NULL;
    if (!y) return qg__err(qg_last_status(), "%s: running module '%s' (%s) on one sample: %s", w->who, path,
                           m->type->name, qg_last_error());
    if (y->quant && (y->dtype != QG_U8 || y->quant->axis >= 0))
        return unsupported(w, path, m, "gives a qint8, qint32 or per-channel output: exports take quint8 activations");
    if (!y->quant && y->dtype != QG_F32) return unsupported(w, path, m, "gives a non-f32 output");
    if (st.kind == QG_XS_POOL && (!st.pool.set || !st.pool.u8))
        return unsupported(w, path, m, "did not run as a quint8 pool");
    value_of(y, &st.out);
    w->x = y;
    if (w->p->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 16;
        qg__xstep *s = qg__alloc(sizeof *s * (size_t)nc);
        if (!s) return qg__err(QG_ENOMEM, "%s: out of memory", w->who);
        if (w->p->n) memcpy(s, w->p->s, sizeof *s * (size_t)w->p->n);
        qg__free(w->p->s);
        w->p->s = s, w->cap = nc;
    }
    w->p->s[w->p->n++] = st;
    return QG_OK;
}

static qg_status visit(walk *w, qg_module *m, const char *path) {
    const char *shown = *path ? path : "(the model)";
    if (m->output_hook)
        return unsupported(w, shown, m, "still has an activation_post_process: convert the model first (qg_convert)");
    if (!qg_module_is(m, "Sequential")) {
        if (qg__module_nchildren(m))
            return unsupported(w, shown, m, "has children: exports enter Sequential containers only (a custom "
                               "module has no export form)");
        return leaf(w, shown, m);
    }
    for (int i = 0; i < qg__module_nchildren(m); i++) {
        const char *name;
        qg_module *ch = qg__module_child_at(m, i, &name);
        char cp[256];
        if ((size_t)snprintf(cp, sizeof cp, *path ? "%s.%s" : "%s%s", path, name) >= sizeof cp)
            return qg__err(QG_EINVAL, "%s: module path '%s.%s' is too long", w->who, path, name);
        qg_status st = visit(w, ch, cp);
        if (st) return st;
    }
    return QG_OK;
}

qg_status qg__xplan_build(qg_module *model, const qg_export_opts *o, const char *who, qg__xplan *p) {
    *p = (qg__xplan){0};
    if (!model || !o) return qg__err(QG_EINVAL, "%s: %s is NULL", who, model ? "opts" : "model");
    if (o->ndim < 1 || o->ndim > QG_MAX_DIMS - 1)
        return qg__err(QG_EINVAL, "%s: opts.ndim must be 1 to %d (one sample's input, without the batch), got %d",
                       who, QG_MAX_DIMS - 1, o->ndim);
    int64_t shape[QG_MAX_DIMS] = {1};
    for (int d = 0; d < o->ndim; d++) {
        if (o->shape[d] < 1 || o->shape[d] > INT32_MAX)
            return qg__err(QG_EINVAL, "%s: opts.shape[%d] = %lld: sizes must be 1 to 2^31 - 1", who, d,
                           (long long)o->shape[d]);
        shape[d + 1] = o->shape[d];
    }
    if (qg__check_sizes(who, o->ndim + 1, shape)) return qg_last_status();
    p->tape = qg_tape_new();
    if (!p->tape) return qg__err(QG_ENOMEM, "%s: out of memory", who);
    p->prev = qg_tape_set_current(p->tape);
    p->grad = qg_set_grad_enabled(false);
    qg_tensor *x0 = qg_tensor_zeros(QG_F32, o->ndim + 1, shape);
    walk w = {.who = who, .p = p, .x = x0};
    qg_status st = x0 ? QG_OK : qg_last_status();
    if (!st) {
        value_of(w.x, &p->in);
        st = visit(&w, model, "");
    }
    if (!st) {
        value_of(w.x, &p->out);
        if (p->out.q)
            st = qg__err(QG_EINVAL, "%s: the model gives quint8 values: end it with a DeQuantize (a DeQuantStub "
                         "before convert), so that it gives f32", who);
    }
    if (!st && qg__xval_numel(&p->in) > INT32_MAX) /* the generated C indexes in int32 */
        st = qg__err(QG_EINVAL, "%s: the input has %lld values per sample: exports take at most 2^31 - 1", who,
                     (long long)qg__xval_numel(&p->in));
    for (int i = 0; !st && i < p->n; i++) {
        const qg__xstep *s = &p->s[i];
        const qg__qpool_desc *d = &s->pool;
        if (qg__xval_numel(&s->out) > INT32_MAX ||
            (s->kind == QG_XS_POOL && ((d->OH + 1) * d->H > INT32_MAX || (d->OW + 1) * d->W > INT32_MAX)))
            st = qg__err(QG_EINVAL, "%s: module '%s' (%s) gives %lld values per sample: exports take at most 2^31 - 1 "
                         "(and pools whose output size times input size does too)", who, s->path, s->type,
                         (long long)qg__xval_numel(&s->out));
    }
    qg_tensor_free(x0);
    if (st) qg__xplan_free(p);
    return st;
}

void qg__xplan_free(qg__xplan *p) {
    if (p->tape) {
        qg_set_grad_enabled(p->grad);
        qg_tape_set_current(p->prev);
        qg_tape_free(p->tape);
    }
    qg__free(p->s);
    *p = (qg__xplan){0};
}
