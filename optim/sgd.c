/* torch.optim.SGD, single-tensor path (torch/optim/sgd.py, _single_tensor_sgd), on
 * caller-owned contiguous parameters, outside the tape.
 *
 * PyTorch evaluates each parameter's update as a chain of tensor ops, each rounding
 * to the parameter's dtype: neg, add(p, alpha=wd), mul_(momentum), add_(alpha=
 * 1 - dampening), add(buf, alpha=momentum), add_(alpha=-lr). Its AVX2 kernels compute
 * x.add(y, alpha=a) as one fused multiply-add fma(y, a, x), with a rounded to the
 * dtype. The update below is the same chain, element by element, with fma() always
 * (an instruction when the build targets FMA, a libm call otherwise: the update is
 * O(parameters), so exactness wins), so f32 and f64 parameters match PyTorch bit for
 * bit. Elements are independent: large parameters are split over threads without
 * changing results. */
#include <tgmath.h>

#include "kernels/isa.h"
#include "internal.h"
#include "qgrad/optim.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#define SGD_MADD(a, b, c) fma((a), (b), (c)) /* tgmath: fmaf for float */

struct qg_sgd {
    qg_sgd_opts o;
    int n;
    qg_tensor **params; /* not owned */
    qg_tensor **bufs;   /* momentum buffers, owned; NULL until a parameter's first step */
    int64_t steps;
    double initial_lr;  /* NAN until a scheduler sets it */
};

static qg_status check_opts(const char *op, const qg_sgd_opts *o) {
    if (!o) return qg__err(QG_EINVAL, "%s: options are NULL (lr is required)", op);
    if (!(o->lr >= 0)) return qg__err(QG_EINVAL, "%s: invalid learning rate: %g", op, o->lr);
    if (!(o->momentum >= 0)) return qg__err(QG_EINVAL, "%s: invalid momentum value: %g", op, o->momentum);
    if (!(o->weight_decay >= 0))
        return qg__err(QG_EINVAL, "%s: invalid weight_decay value: %g", op, o->weight_decay);
    if (o->dampening != o->dampening) return qg__err(QG_EINVAL, "%s: dampening is nan", op);
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return qg__err(QG_EINVAL, "%s: Nesterov momentum requires a momentum and zero dampening (momentum %g, dampening %g)",
                       op, o->momentum, o->dampening);
    return QG_OK;
}

static const char *param_name(const qg_tensor_list *l, int i, char *buf, size_t n) {
    if (l->names && l->names[i]) return l->names[i];
    snprintf(buf, n, "#%d", i);
    return buf;
}

qg_sgd *qg_sgd_new(const qg_tensor_list *params, const qg_sgd_opts *o) {
    const char *op = "sgd_new";
    char nb[32], s1[128];
    if (!params) return qg__err(QG_EINVAL, "%s: parameter list is NULL", op), NULL;
    if (params->n <= 0 || !params->tensors)
        return qg__err(QG_EINVAL, "%s: optimizer got an empty parameter list", op), NULL;
    if (check_opts(op, o)) return NULL;
    for (int i = 0; i < params->n; i++) {
        const qg_tensor *p = params->tensors[i];
        const char *name = param_name(params, i, nb, sizeof nb);
        if (!p) return qg__err(QG_EINVAL, "%s: parameter %s is NULL", op, name), NULL;
        if (!qg__is_float(p->dtype))
            return qg__err(QG_EDTYPE, "%s: parameter %s is %s; expected f32 or f64", op, name,
                           qg_dtype_name(p->dtype)), NULL;
        if (p->tape)
            return qg__err(QG_EINVAL, "%s: parameter %s is an op output owned by the tape; parameters must be caller-owned",
                           op, name), NULL;
        if (!qg_tensor_is_contiguous(p))
            return qg__err(QG_EINVAL, "%s: parameter %s %s is not contiguous", op, name,
                           qg_shape_str(p, s1, sizeof s1)), NULL;
        for (int j = 0; j < i; j++)
            if (params->tensors[j] == p)
                return qg__err(QG_EINVAL, "%s: parameter %s is listed twice (also as %s)", op, name,
                               param_name(params, j, s1, sizeof s1)), NULL;
    }
    qg_sgd *s = qg__calloc(sizeof *s);
    size_t n = (size_t)params->n;
    if (s) s->params = qg__calloc(sizeof *s->params * n), s->bufs = qg__calloc(sizeof *s->bufs * n);
    if (!s || !s->params || !s->bufs) {
        if (s) qg__free(s->params), qg__free(s->bufs);
        qg__free(s);
        return qg__err(QG_ENOMEM, "%s: out of memory", op), NULL;
    }
    memcpy(s->params, params->tensors, sizeof *s->params * n);
    s->n = params->n;
    s->o = *o;
    s->initial_lr = NAN;
    return s;
}

void qg_sgd_free(qg_sgd *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) qg_tensor_free(s->bufs[i]);
    qg__free(s->bufs);
    qg__free(s->params);
    qg__free(s);
}

/* ---------------------------------------------------------------- the update */

typedef struct {
    double lr, momentum, damp1, wd; /* damp1 = 1 - dampening */
    bool nesterov, maximize, first;
} sgd_args;

#define SGD_CHUNK 512

/* One parameter: p (n), g (n), buf (n) or NULL without momentum. Each chunk runs the
 * PyTorch op chain as a few simple (vectorizable) loops through a stack buffer. */
QG_HOT static void sgd_update(qg_dtype dt, int64_t n, char *p_, const char *g_, char *buf_, const sgd_args *a) {
    int64_t nchunks = (n + SGD_CHUNK - 1) / SGD_CHUNK;
    int nt = qg__threads_for(n * 4);
    if (nt > nchunks) nt = (int)(nchunks > 0 ? nchunks : 1);
    QG_FLOAT_DISPATCH(dt, {
        real *P = (real *)p_, *B = (real *)buf_;
        const real *G = (const real *)g_;
        const real neglr = (real)-a->lr, mom = (real)a->momentum, damp1 = (real)a->damp1, wd = (real)a->wd;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t c = 0; c < nchunks; c++) {
            real t[SGD_CHUNK];
            const int64_t o = c * SGD_CHUNK, m = n - o < SGD_CHUNK ? n - o : SGD_CHUNK;
            real *p = P + o, *buf = B ? B + o : NULL;
            const real *g = G + o;
            if (a->maximize)
                for (int64_t i = 0; i < m; i++) t[i] = -g[i];
            else
                for (int64_t i = 0; i < m; i++) t[i] = g[i];
            if (a->wd != 0)
                for (int64_t i = 0; i < m; i++) t[i] = SGD_MADD(p[i], wd, t[i]);
            const real *d = t;
            if (a->momentum != 0) {
                if (a->first)
                    for (int64_t i = 0; i < m; i++) buf[i] = t[i];
                else
                    for (int64_t i = 0; i < m; i++) buf[i] = SGD_MADD(t[i], damp1, buf[i] * mom);
                if (a->nesterov)
                    for (int64_t i = 0; i < m; i++) t[i] = SGD_MADD(buf[i], mom, t[i]);
                else
                    d = buf;
            }
            for (int64_t i = 0; i < m; i++) p[i] = SGD_MADD(d[i], neglr, p[i]);
        }
    });
}

qg_status qg_sgd_step(qg_sgd *s) {
    const char *op = "sgd_step";
    char s1[128], s2[128];
    if (!s) return qg__err(QG_EINVAL, "%s: optimizer is NULL", op);
    const bool mom = s->o.momentum != 0;
    /* check everything, and allocate new momentum buffers, before changing anything */
    int nnew = 0;
    for (int i = 0; i < s->n; i++) {
        const qg_tensor *p = s->params[i], *g = p->grad;
        if (!qg_tensor_is_contiguous(p))
            return qg__err(QG_EINVAL, "%s: parameter %d %s is no longer contiguous", op, i, qg_shape_str(p, s1, sizeof s1));
        if (!g) continue;
        if (g->dtype != p->dtype || g->ndim != p->ndim ||
            memcmp(g->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim))
            return qg__err(QG_ESHAPE, "%s: grad %s does not match parameter %d %s", op, qg_shape_str(g, s2, sizeof s2),
                           i, qg_shape_str(p, s1, sizeof s1));
        if (!qg_tensor_is_contiguous(g))
            return qg__err(QG_EINVAL, "%s: grad of parameter %d is not contiguous", op, i);
        const qg_tensor *b = s->bufs[i];
        if (b && (b->dtype != p->dtype || b->ndim != p->ndim || memcmp(b->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim)))
            return qg__err(QG_ESHAPE, "%s: parameter %d is %s now but its momentum buffer %s: a parameter must keep its "
                                      "shape and dtype for the optimizer's life", op, i, qg_shape_str(p, s1, sizeof s1),
                           qg_shape_str(b, s2, sizeof s2));
        if (mom && !s->bufs[i]) nnew++;
    }
    bool *fresh = NULL;
    if (nnew) {
        fresh = qg__calloc(sizeof *fresh * (size_t)s->n);
        if (!fresh) return qg__err(QG_ENOMEM, "%s: out of memory", op);
        for (int i = 0; i < s->n; i++) {
            const qg_tensor *p = s->params[i];
            if (!p->grad || s->bufs[i]) continue;
            s->bufs[i] = qg_tensor_empty(p->dtype, p->ndim, p->shape);
            fresh[i] = true;
            if (!s->bufs[i]) {
                for (int j = 0; j < i; j++)
                    if (fresh[j]) qg_tensor_free(s->bufs[j]), s->bufs[j] = NULL;
                qg__free(fresh);
                return qg__err(QG_ENOMEM, "%s: out of memory for momentum buffers", op);
            }
        }
    }
    for (int i = 0; i < s->n; i++) {
        qg_tensor *p = s->params[i];
        if (!p->grad) continue;
        sgd_args a = {s->o.lr, s->o.momentum, 1 - s->o.dampening, s->o.weight_decay,
                      s->o.nesterov, s->o.maximize, fresh && fresh[i]};
        sgd_update(p->dtype, qg_tensor_numel(p), qg__data(p), qg__data(p->grad),
                   mom ? qg__data(s->bufs[i]) : NULL, &a);
    }
    qg__free(fresh);
    s->steps++;
    return QG_OK;
}

void qg_sgd_zero_grad(qg_sgd *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) qg_tensor_zero_grad(s->params[i]);
}

/* ---------------------------------------------------------------- accessors */

qg_status qg_sgd_set_lr(qg_sgd *s, double lr) {
    if (!s) return qg__err(QG_EINVAL, "sgd_set_lr: optimizer is NULL");
    if (!(lr >= 0)) return qg__err(QG_EINVAL, "sgd_set_lr: invalid learning rate: %g", lr);
    s->o.lr = lr;
    return QG_OK;
}

double qg_sgd_get_lr(const qg_sgd *s) { return s ? s->o.lr : NAN; }
const qg_sgd_opts *qg_sgd_opts_of(const qg_sgd *s) { return s ? &s->o : NULL; }
int qg_sgd_num_params(const qg_sgd *s) { return s ? s->n : 0; }
int64_t qg_sgd_step_count(const qg_sgd *s) { return s ? s->steps : 0; }

const qg_tensor *qg_sgd_momentum_buffer(const qg_sgd *s, int i) {
    return s && i >= 0 && i < s->n ? s->bufs[i] : NULL;
}

double qg_sgd_get_initial_lr(const qg_sgd *s) { return s ? s->initial_lr : NAN; }

qg_status qg_sgd_set_initial_lr(qg_sgd *s, double lr) {
    if (!s) return qg__err(QG_EINVAL, "sgd_set_initial_lr: optimizer is NULL");
    if (!(lr >= 0)) return qg__err(QG_EINVAL, "sgd_set_initial_lr: invalid learning rate: %g", lr);
    s->initial_lr = lr;
    return QG_OK;
}

/* ---------------------------------------------------------------- state dict */

static const char *const group_f64[] = {"lr", "momentum", "dampening", "weight_decay"};
static const char *const group_u8[] = {"nesterov", "maximize"};

/* "<prefix><suffix>" in a heap buffer (NULL on failure, with an error) */
static char *key_of(const char *prefix, const char *suffix) {
    size_t a = prefix ? strlen(prefix) : 0, b = strlen(suffix);
    char *k = malloc(a + b + 1);
    if (!k) return qg__err(QG_ENOMEM, "sgd state dict: out of memory"), NULL;
    if (a) memcpy(k, prefix, a);
    memcpy(k + a, suffix, b + 1);
    return k;
}

static qg_status put(qg_tensor_dict *d, const char *prefix, const char *suffix, qg_tensor *t) {
    char *k = key_of(prefix, suffix);
    if (!k) return qg_tensor_free(t), QG_ENOMEM;
    qg_status st = t ? qg_tensor_dict_put(d, k, t) : qg__err(QG_ENOMEM, "sgd_state_dict: out of memory");
    free(k);
    return st;
}

qg_status qg_sgd_state_dict(const qg_sgd *s, qg_tensor_dict *d, const char *prefix) {
    if (!s || !d) return qg__err(QG_EINVAL, "sgd_state_dict: %s is NULL", s ? "dict" : "optimizer");
    char suffix[96];
    qg_status st = QG_OK;
    for (int i = 0; i < s->n && !st; i++) {
        if (!s->bufs[i]) continue;
        snprintf(suffix, sizeof suffix, "state.%d.momentum_buffer", i);
        st = put(d, prefix, suffix, qg_tensor_clone(s->bufs[i]));
    }
    const double f[4] = {s->o.lr, s->o.momentum, s->o.dampening, s->o.weight_decay};
    for (int k = 0; k < 4 && !st; k++) {
        snprintf(suffix, sizeof suffix, "param_groups.0.%s", group_f64[k]);
        st = put(d, prefix, suffix, qg_tensor_full(QG_F64, 0, NULL, f[k]));
    }
    const bool b[2] = {s->o.nesterov, s->o.maximize};
    for (int k = 0; k < 2 && !st; k++) {
        snprintf(suffix, sizeof suffix, "param_groups.0.%s", group_u8[k]);
        st = put(d, prefix, suffix, qg_tensor_full(QG_U8, 0, NULL, b[k]));
    }
    if (!st && !isnan(s->initial_lr))
        st = put(d, prefix, "param_groups.0.initial_lr", qg_tensor_full(QG_F64, 0, NULL, s->initial_lr));
    if (!st) {
        int64_t n = s->n;
        st = put(d, prefix, "param_groups.0.params", qg_tensor_arange(QG_I64, 0, (double)n, 1));
    }
    if (!st) st = put(d, prefix, "step_count", qg_tensor_full(QG_I64, 0, NULL, (double)s->steps));
    return st;
}

/* what a state dict holds for this optimizer, found in one pass over d */
typedef struct {
    const qg_tensor *f64[4], *u8[2], *initial_lr, *params, *steps;
    const qg_tensor **bufs;
} sgd_state;

static qg_status scalar_of(const char *what, const qg_tensor *t, qg_dtype dt) {
    char s1[128];
    if (t->dtype != dt || qg_tensor_numel(t) != 1 || t->ndim > 1)
        return qg__err(QG_ESHAPE, "sgd_load_state_dict: %s is %s; expected a %s scalar", what,
                       qg_shape_str(t, s1, sizeof s1), qg_dtype_name(dt));
    return QG_OK;
}

static qg_status collect(const qg_sgd *s, const qg_tensor_dict *d, const char *prefix, sgd_state *ss) {
    const char *op = "sgd_load_state_dict";
    size_t plen = prefix ? strlen(prefix) : 0;
    for (int e = 0; e < qg_tensor_dict_size(d); e++) {
        const char *name = qg_tensor_dict_name(d, e);
        if (plen && strncmp(name, prefix, plen)) continue;
        const char *r = name + plen;
        const qg_tensor *t = qg_tensor_dict_at(d, e);
        if (!strncmp(r, "state.", 6)) {
            char *end;
            long i = strtol(r + 6, &end, 10);
            if (end == r + 6 || r[6] < '0' || r[6] > '9' || strcmp(end, ".momentum_buffer"))
                return qg__err(QG_EINVAL, "%s: unexpected key '%s' (expected %sstate.<i>.momentum_buffer)", op, name,
                               prefix ? prefix : "");
            if (i >= s->n)
                return qg__err(QG_EINVAL, "%s: '%s' is for parameter %ld but the optimizer has %d parameters", op,
                               name, i, s->n);
            ss->bufs[i] = t;
        } else if (!strncmp(r, "param_groups.", 13)) {
            if (strncmp(r + 13, "0.", 2))
                return qg__err(QG_EINVAL, "%s: '%s': the optimizer has one parameter group", op, name);
            const char *f = r + 15;
            bool known = false;
            for (int k = 0; k < 4; k++)
                if (!strcmp(f, group_f64[k])) ss->f64[k] = t, known = true;
            for (int k = 0; k < 2; k++)
                if (!strcmp(f, group_u8[k])) ss->u8[k] = t, known = true;
            if (!strcmp(f, "initial_lr")) ss->initial_lr = t, known = true;
            if (!strcmp(f, "params")) ss->params = t, known = true;
            if (!known) return qg__err(QG_EINVAL, "%s: unexpected key '%s'", op, name);
        } else if (!strcmp(r, "step_count")) {
            ss->steps = t;
        }
    }
    return QG_OK;
}

qg_status qg_sgd_load_state_dict(qg_sgd *s, const qg_tensor_dict *d, const char *prefix) {
    const char *op = "sgd_load_state_dict";
    char s1[128], s2[128];
    const char *pf = prefix ? prefix : "";
    if (!s || !d) return qg__err(QG_EINVAL, "%s: %s is NULL", op, s ? "dict" : "optimizer");
    sgd_state ss = {0};
    ss.bufs = qg__calloc(sizeof *ss.bufs * (size_t)s->n);
    qg_tensor **fresh = qg__calloc(sizeof *fresh * (size_t)s->n);
    qg_status st = QG_OK;
    if (!ss.bufs || !fresh) {
        st = qg__err(QG_ENOMEM, "%s: out of memory", op);
        goto done;
    }
    if ((st = collect(s, d, prefix, &ss))) goto done;
    /* presence, dtypes, shapes */
    for (int k = 0; k < 4 && !st; k++)
        if (!ss.f64[k]) st = qg__err(QG_EINVAL, "%s: missing key '%sparam_groups.0.%s'", op, pf, group_f64[k]);
        else st = scalar_of(group_f64[k], ss.f64[k], QG_F64);
    for (int k = 0; k < 2 && !st; k++)
        if (!ss.u8[k]) st = qg__err(QG_EINVAL, "%s: missing key '%sparam_groups.0.%s'", op, pf, group_u8[k]);
        else st = scalar_of(group_u8[k], ss.u8[k], QG_U8);
    if (!st && ss.initial_lr) st = scalar_of("initial_lr", ss.initial_lr, QG_F64);
    if (!st && !ss.steps) st = qg__err(QG_EINVAL, "%s: missing key '%sstep_count'", op, pf);
    if (!st) st = scalar_of("step_count", ss.steps, QG_I64);
    if (!st && !ss.params) st = qg__err(QG_EINVAL, "%s: missing key '%sparam_groups.0.params'", op, pf);
    if (!st && (ss.params->dtype != QG_I64 || ss.params->ndim != 1 || ss.params->shape[0] != s->n))
        st = qg__err(QG_ESHAPE, "%s: loaded state dict has %s parameters (param_groups.0.params %s) but the optimizer has %d",
                     op, ss.params->ndim == 1 ? "another number of" : "malformed", qg_shape_str(ss.params, s1, sizeof s1), s->n);
    for (int i = 0; i < s->n && !st; i++) {
        const qg_tensor *b = ss.bufs[i], *p = s->params[i];
        if (b && (b->dtype != p->dtype || b->ndim != p->ndim ||
                  memcmp(b->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim)))
            st = qg__err(QG_ESHAPE, "%s: %sstate.%d.momentum_buffer is %s but parameter %d is %s", op, pf, i,
                         qg_shape_str(b, s1, sizeof s1), i, qg_shape_str(p, s2, sizeof s2));
    }
    if (st) goto done;
    /* values */
    qg_sgd_opts o;
    o.lr = qg_tensor_item(ss.f64[0]), o.momentum = qg_tensor_item(ss.f64[1]);
    o.dampening = qg_tensor_item(ss.f64[2]), o.weight_decay = qg_tensor_item(ss.f64[3]);
    o.nesterov = qg_tensor_item(ss.u8[0]) != 0, o.maximize = qg_tensor_item(ss.u8[1]) != 0;
    int64_t steps = *(const int64_t *)qg_tensor_data(ss.steps);
    double initial_lr = ss.initial_lr ? qg_tensor_item(ss.initial_lr) : NAN;
    if ((st = check_opts(op, &o))) goto done;
    if (steps < 0) {
        st = qg__err(QG_EINVAL, "%s: negative step_count %lld", op, (long long)steps);
        goto done;
    }
    if (ss.initial_lr && !(initial_lr >= 0)) {
        st = qg__err(QG_EINVAL, "%s: invalid initial_lr %g", op, initial_lr);
        goto done;
    }
    /* new buffers first (the only step that can fail), then commit */
    for (int i = 0; i < s->n; i++) {
        if (!ss.bufs[i] || s->bufs[i]) continue;
        if (!(fresh[i] = qg_tensor_clone(ss.bufs[i]))) {
            st = qg__err(QG_ENOMEM, "%s: out of memory for momentum buffers", op);
            for (int j = 0; j < i; j++) qg_tensor_free(fresh[j]);
            goto done;
        }
    }
    for (int i = 0; i < s->n; i++) {
        if (fresh[i]) {
            s->bufs[i] = fresh[i];
        } else if (ss.bufs[i]) {
            qg_tensor_copy_(s->bufs[i], ss.bufs[i]);
        } else {
            qg_tensor_free(s->bufs[i]);
            s->bufs[i] = NULL;
        }
    }
    s->o = o;
    s->steps = steps;
    s->initial_lr = initial_lr;
done:
    qg__free(ss.bufs);
    qg__free(fresh);
    return st;
}
