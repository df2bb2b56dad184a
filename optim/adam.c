/* torch.optim.Adam and AdamW, single-tensor paths (torch/optim/adam.py and adamw.py,
 * _single_tensor_adam/_single_tensor_adamw), on caller-owned contiguous parameters.
 *
 * PyTorch runs each update as a chain of tensor ops, each rounding to the parameter's
 * dtype, with Python-float scalars rounded to that dtype first. Measured on PyTorch
 * 1.13's CPU kernels (tools/gen_adam_fixtures.py's fixtures pin it): x.add(y, alpha=a)
 * is fma(y, a, x) and x.addcmul(y, z, value=s) is fma(s * y, z, x), in the scalar and
 * the vector loops alike; addcdiv is x + (s * y) / z, unfused; div by a scalar is a
 * true division. The loop below is that chain per element with fma() always, so f32
 * and f64 parameters follow PyTorch bit for bit. The bias corrections are Python
 * doubles and the step count a float32 tensor in PyTorch: so here too. */
#include <tgmath.h>

#include "kernels/isa.h"
#include "internal.h"
#include "qgrad/optim.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

struct qg_adam {
    qg_adam_opts o; /* every qg_opt_double set */
    bool adamw;
    int n;
    qg_tensor **params;             /* not owned */
    qg_tensor **m, **v, **vmax;     /* owned; NULL until a parameter's first step */
    float *t;                       /* per-parameter step, float32 as PyTorch's */
    int64_t steps;
};

static const char *kind(bool adamw) { return adamw ? "AdamW" : "Adam"; }

static qg_status check_opts(const char *op, bool adamw, const qg_adam_opts *o) {
    const char *k = kind(adamw);
    if (!(o->lr >= 0)) return qg__err(QG_EINVAL, "%s (%s): invalid learning rate: %g", op, k, o->lr);
    if (!(o->eps.v >= 0)) return qg__err(QG_EINVAL, "%s (%s): invalid epsilon value: %g", op, k, o->eps.v);
    for (int j = 0; j < 2; j++)
        if (!(o->betas[j].v >= 0 && o->betas[j].v < 1))
            return qg__err(QG_EINVAL, "%s (%s): invalid beta parameter at index %d: %g (needs 0 <= beta < 1)", op,
                           k, j, o->betas[j].v);
    if (!(o->weight_decay.v >= 0))
        return qg__err(QG_EINVAL, "%s (%s): invalid weight_decay value: %g", op, k, o->weight_decay.v);
    return QG_OK;
}

static const char *param_name(const qg_tensor_list *l, int i, char *buf, size_t n) {
    if (l->names && l->names[i]) return l->names[i];
    snprintf(buf, n, "#%d", i);
    return buf;
}

static bool same_shape(const qg_tensor *a, const qg_tensor *b) {
    return a->dtype == b->dtype && a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

static qg_adam *adam_new(const char *op, bool adamw, const qg_tensor_list *params, const qg_adam_opts *o) {
    char nb[32], s1[128];
    if (!params) return qg__err(QG_EINVAL, "%s: parameter list is NULL", op), NULL;
    if (params->n <= 0 || !params->tensors)
        return qg__err(QG_EINVAL, "%s: optimizer got an empty parameter list", op), NULL;
    if (!o) return qg__err(QG_EINVAL, "%s: options are NULL (lr is required)", op), NULL;
    qg_adam_opts r = *o;
    r.betas[0] = qg_set(qg_opt_or(o->betas[0], 0.9));
    r.betas[1] = qg_set(qg_opt_or(o->betas[1], 0.999));
    r.eps = qg_set(qg_opt_or(o->eps, 1e-8));
    r.weight_decay = qg_set(qg_opt_or(o->weight_decay, adamw ? 1e-2 : 0));
    if (check_opts(op, adamw, &r)) return NULL;
    for (int i = 0; i < params->n; i++) {
        const qg_tensor *p = params->tensors[i];
        const char *name = param_name(params, i, nb, sizeof nb);
        if (!p) return qg__err(QG_EINVAL, "%s: parameter %s is NULL", op, name), NULL;
        if (!qg__is_float(p->dtype))
            return qg__err(QG_EDTYPE, "%s: parameter %s is %s; expected f32 or f64", op, name,
                           qg_dtype_name(p->dtype)), NULL;
        if (p->tape)
            return qg__err(QG_EINVAL, "%s: parameter %s is an op output owned by the tape; parameters must be "
                           "caller-owned", op, name), NULL;
        if (!qg_tensor_is_contiguous(p))
            return qg__err(QG_EINVAL, "%s: parameter %s %s is not contiguous", op, name,
                           qg_shape_str(p, s1, sizeof s1)), NULL;
        for (int j = 0; j < i; j++)
            if (params->tensors[j] == p)
                return qg__err(QG_EINVAL, "%s: parameter %s is listed twice (also as %s)", op, name,
                               param_name(params, j, s1, sizeof s1)), NULL;
    }
    qg_adam *s = qg__calloc(sizeof *s);
    size_t n = (size_t)params->n;
    if (s) {
        s->params = qg__calloc(sizeof *s->params * n), s->m = qg__calloc(sizeof *s->m * n);
        s->v = qg__calloc(sizeof *s->v * n), s->vmax = qg__calloc(sizeof *s->vmax * n);
        s->t = qg__calloc(sizeof *s->t * n);
    }
    if (!s || !s->params || !s->m || !s->v || !s->vmax || !s->t) {
        qg_adam_free(s); /* n is still 0 */
        return qg__err(QG_ENOMEM, "%s: out of memory", op), NULL;
    }
    memcpy(s->params, params->tensors, sizeof *s->params * n);
    s->n = params->n;
    s->o = r;
    s->adamw = adamw;
    return s;
}

qg_adam *qg_adam_new(const qg_tensor_list *params, const qg_adam_opts *o) {
    return adam_new("adam_new", false, params, o);
}

qg_adam *qg_adamw_new(const qg_tensor_list *params, const qg_adam_opts *o) {
    return adam_new("adamw_new", true, params, o);
}

void qg_adam_free(qg_adam *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) qg_tensor_free(s->m[i]), qg_tensor_free(s->v[i]), qg_tensor_free(s->vmax[i]);
    qg__free(s->params), qg__free(s->m), qg__free(s->v), qg__free(s->vmax), qg__free(s->t);
    qg__free(s);
}

/* ---------------------------------------------------------------- the update */

/* The scalars of one parameter's step, in double as PyTorch's Python code has them. */
typedef struct {
    double wd, decay, b1, omb1, b2, omb2, bc2s, eps, negss; /* decay = 1 - lr * wd (AdamW) */
    bool adamw, maximize;
} adam_args;

QG_HOT static void adam_update(qg_dtype dt, int64_t n, char *p_, const char *g_, char *m_, char *v_, char *vm_,
                        const adam_args *a) {
    int nt = qg__threads_for(n * 8);
    QG_FLOAT_DISPATCH(dt, {
        real *P = (real *)p_, *M = (real *)m_, *V = (real *)v_, *VM = (real *)vm_;
        const real *G = (const real *)g_;
        /* each scalar rounded to the dtype, as a tensor op does with a Python float */
        const real wd = (real)a->wd, decay = (real)a->decay, b1 = (real)a->b1, omb1 = (real)a->omb1;
        const real b2 = (real)a->b2, omb2 = (real)a->omb2, bc2s = (real)a->bc2s, eps = (real)a->eps;
        const real negss = (real)a->negss;
        const bool adamw = a->adamw, maximize = a->maximize, decay_grad = !a->adamw && a->wd != 0;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t i = 0; i < n; i++) {
            real g = maximize ? -G[i] : G[i], p = P[i];
            if (decay_grad) g = fma(p, wd, g);           /* grad.add(param, alpha=wd) */
            if (adamw) p = p * decay;                     /* param.mul_(1 - lr * wd) */
            const real m = fma(g, omb1, M[i] * b1);       /* mul_(b1).add_(g, alpha=1-b1) */
            const real v = fma(omb2 * g, g, V[i] * b2);   /* mul_(b2).addcmul_(g, g, 1-b2) */
            M[i] = m, V[i] = v;
            real d = v;
            if (VM) {                                     /* torch.maximum: NaN wins */
                const real x = VM[i];
                d = VM[i] = (x != x || x > v) ? x : v;
            }
            d = sqrt(d) / bc2s + eps;
            P[i] = p + (negss * m) / d;                   /* addcdiv_(m, d, value=-step_size) */
        }
    });
}

qg_status qg_adam_step(qg_adam *s) {
    const char *op = s && s->adamw ? "adamw_step" : "adam_step";
    char s1[128], s2[128];
    if (!s) return qg__err(QG_EINVAL, "%s: optimizer is NULL", op);
    const bool ams = s->o.amsgrad;
    int nnew = 0;
    for (int i = 0; i < s->n; i++) {
        const qg_tensor *p = s->params[i], *g = p->grad;
        if (!qg_tensor_is_contiguous(p))
            return qg__err(QG_EINVAL, "%s: parameter %d %s is no longer contiguous", op, i,
                           qg_shape_str(p, s1, sizeof s1));
        if (!g) continue;
        if (!same_shape(g, p))
            return qg__err(QG_ESHAPE, "%s: grad %s does not match parameter %d %s", op, qg_shape_str(g, s2, sizeof s2),
                           i, qg_shape_str(p, s1, sizeof s1));
        if (!qg_tensor_is_contiguous(g)) return qg__err(QG_EINVAL, "%s: grad of parameter %d is not contiguous", op, i);
        if (s->m[i] && !same_shape(s->m[i], p))
            return qg__err(QG_ESHAPE, "%s: parameter %d is %s now but its state %s: a parameter must keep its shape and "
                                      "dtype for the optimizer's life", op, i, qg_shape_str(p, s1, sizeof s1),
                           qg_shape_str(s->m[i], s2, sizeof s2));
        if (!s->m[i]) nnew++;
    }
    /* first steps: zeroed state (m, v, and vmax with amsgrad: a stepped parameter has
     * all of them), all or nothing, before any change */
    bool *fresh = nnew ? qg__calloc(sizeof *fresh * (size_t)s->n) : NULL;
    if (nnew && !fresh) return qg__err(QG_ENOMEM, "%s: out of memory", op);
    for (int i = 0; nnew && i < s->n; i++) {
        const qg_tensor *p = s->params[i];
        if (!p->grad || s->m[i]) continue;
        fresh[i] = true;
        s->m[i] = qg_tensor_zeros(p->dtype, p->ndim, p->shape);
        s->v[i] = qg_tensor_zeros(p->dtype, p->ndim, p->shape);
        if (ams) s->vmax[i] = qg_tensor_zeros(p->dtype, p->ndim, p->shape);
        if (s->m[i] && s->v[i] && (!ams || s->vmax[i])) continue;
        for (int j = 0; j <= i; j++)
            if (fresh[j]) {
                qg_tensor_free(s->m[j]), qg_tensor_free(s->v[j]), qg_tensor_free(s->vmax[j]);
                s->m[j] = s->v[j] = s->vmax[j] = NULL;
            }
        qg__free(fresh);
        return qg__err(QG_ENOMEM, "%s: out of memory for the optimizer state", op);
    }
    qg__free(fresh);
    const double lr = s->o.lr, wd = s->o.weight_decay.v, b1 = s->o.betas[0].v, b2 = s->o.betas[1].v;
    for (int i = 0; i < s->n; i++) {
        qg_tensor *p = s->params[i];
        if (!p->grad) continue;
        s->t[i] += 1.0f; /* step_t += 1 on a float32 tensor */
        const double t = s->t[i], bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
        adam_args a = {wd, 1 - lr * wd, b1, 1 - b1, b2, 1 - b2, sqrt(bc2), s->o.eps.v, -(lr / bc1), s->adamw,
                       s->o.maximize};
        adam_update(p->dtype, qg_tensor_numel(p), qg__data(p), qg__data(p->grad), qg__data(s->m[i]),
                    qg__data(s->v[i]), ams ? qg__data(s->vmax[i]) : NULL, &a);
    }
    s->steps++;
    return QG_OK;
}

void qg_adam_zero_grad(qg_adam *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) qg_tensor_zero_grad(s->params[i]);
}

/* ---------------------------------------------------------------- accessors */

qg_status qg_adam_set_lr(qg_adam *s, double lr) {
    if (!s) return qg__err(QG_EINVAL, "adam_set_lr: optimizer is NULL");
    if (!(lr >= 0)) return qg__err(QG_EINVAL, "adam_set_lr (%s): invalid learning rate: %g", kind(s->adamw), lr);
    s->o.lr = lr;
    return QG_OK;
}

double qg_adam_get_lr(const qg_adam *s) { return s ? s->o.lr : NAN; }
const qg_adam_opts *qg_adam_opts_of(const qg_adam *s) { return s ? &s->o : NULL; }
bool qg_adam_is_adamw(const qg_adam *s) { return s && s->adamw; }
int qg_adam_num_params(const qg_adam *s) { return s ? s->n : 0; }
int64_t qg_adam_step_count(const qg_adam *s) { return s ? s->steps : 0; }
#define IN(s, i) ((s) && (i) >= 0 && (i) < (s)->n)
const qg_tensor *qg_adam_exp_avg(const qg_adam *s, int i) { return IN(s, i) ? s->m[i] : NULL; }
const qg_tensor *qg_adam_exp_avg_sq(const qg_adam *s, int i) { return IN(s, i) ? s->v[i] : NULL; }
const qg_tensor *qg_adam_max_exp_avg_sq(const qg_adam *s, int i) { return IN(s, i) ? s->vmax[i] : NULL; }
int64_t qg_adam_param_steps(const qg_adam *s, int i) { return IN(s, i) ? (int64_t)s->t[i] : 0; }

/* ---------------------------------------------------------------- state dict */

static const char *const fields[4] = {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
static const char *const group_f64[3] = {"lr", "eps", "weight_decay"};
static const char *const group_u8[3] = {"amsgrad", "maximize", "decoupled_weight_decay"};

static qg_status put(qg_tensor_dict *d, const char *prefix, const char *suffix, qg_tensor *t) {
    char k[512];
    if (snprintf(k, sizeof k, "%s%s", prefix ? prefix : "", suffix) >= (int)sizeof k)
        return qg_tensor_free(t), qg__err(QG_EINVAL, "adam_state_dict: prefix too long");
    return t ? qg_tensor_dict_put(d, k, t) : qg__err(QG_ENOMEM, "adam_state_dict: out of memory");
}

qg_status qg_adam_state_dict(const qg_adam *s, qg_tensor_dict *d, const char *prefix) {
    if (!s || !d) return qg__err(QG_EINVAL, "adam_state_dict: %s is NULL", s ? "dict" : "optimizer");
    char suffix[96];
    qg_status st = QG_OK;
    for (int i = 0; i < s->n && !st; i++) {
        if (!s->m[i]) continue;
        qg_tensor *ts[4] = {qg_tensor_full(QG_F32, 0, NULL, s->t[i]), qg_tensor_clone(s->m[i]),
                            qg_tensor_clone(s->v[i]), s->vmax[i] ? qg_tensor_clone(s->vmax[i]) : NULL};
        for (int k = 0; k < 4; k++) {
            snprintf(suffix, sizeof suffix, "state.%d.%s", i, fields[k]);
            if (!st && (k < 3 || s->vmax[i])) st = put(d, prefix, suffix, ts[k]);
            else qg_tensor_free(ts[k]);
        }
    }
    const double f[3] = {s->o.lr, s->o.eps.v, s->o.weight_decay.v}, betas[2] = {s->o.betas[0].v, s->o.betas[1].v};
    const bool b[3] = {s->o.amsgrad, s->o.maximize, s->adamw};
    for (int k = 0; k < 3 && !st; k++) {
        snprintf(suffix, sizeof suffix, "param_groups.0.%s", group_f64[k]);
        st = put(d, prefix, suffix, qg_tensor_full(QG_F64, 0, NULL, f[k]));
        snprintf(suffix, sizeof suffix, "param_groups.0.%s", group_u8[k]);
        if (!st) st = put(d, prefix, suffix, qg_tensor_full(QG_U8, 0, NULL, b[k]));
    }
    if (!st) st = put(d, prefix, "param_groups.0.betas", qg_tensor_from_data(QG_F64, 1, (int64_t[]){2}, betas));
    if (!st) st = put(d, prefix, "param_groups.0.params", qg_tensor_arange(QG_I64, 0, (double)s->n, 1));
    if (!st) st = put(d, prefix, "step_count", qg_tensor_full(QG_I64, 0, NULL, (double)s->steps));
    return st;
}

static qg_status scalar_of(const char *what, const qg_tensor *t, qg_dtype dt) {
    char s1[128];
    if (t->dtype != dt || qg_tensor_numel(t) != 1 || t->ndim > 1)
        return qg__err(QG_ESHAPE, "adam_load_state_dict: %s is %s; expected a %s scalar", what,
                       qg_shape_str(t, s1, sizeof s1), qg_dtype_name(dt));
    return QG_OK;
}

/* The entries of d under prefix, one pass: st[i * 4 + field], group values, ... */
typedef struct {
    const qg_tensor **st, *f64[3], *u8[3], *betas, *params, *steps;
} adam_keys;

static qg_status collect(const qg_adam *s, const qg_tensor_dict *d, const char *pf, adam_keys *ks) {
    const char *op = "adam_load_state_dict";
    size_t plen = strlen(pf);
    for (int e = 0; e < qg_tensor_dict_size(d); e++) {
        const char *name = qg_tensor_dict_name(d, e), *r = name + plen;
        const qg_tensor *t = qg_tensor_dict_at(d, e);
        if (strncmp(name, pf, plen)) continue;
        if (!strncmp(r, "state.", 6)) {
            char *end;
            long i = strtol(r + 6, &end, 10);
            int k = 0;
            while (k < 4 && !(*end == '.' && !strcmp(end + 1, fields[k]))) k++;
            if (end == r + 6 || r[6] < '0' || r[6] > '9' || k == 4)
                return qg__err(QG_EINVAL, "%s: unexpected key '%s' (expected %sstate.<i>.step, exp_avg, exp_avg_sq "
                               "or max_exp_avg_sq)", op, name, pf);
            if (i >= s->n)
                return qg__err(QG_EINVAL, "%s: '%s' is for parameter %ld but the optimizer has %d parameters", op,
                               name, i, s->n);
            ks->st[i * 4 + k] = t;
        } else if (!strncmp(r, "param_groups.", 13)) {
            if (strncmp(r + 13, "0.", 2))
                return qg__err(QG_EINVAL, "%s: '%s': the optimizer has one parameter group", op, name);
            const char *f = r + 15;
            bool known = false;
            for (int k = 0; k < 3; k++) {
                if (!strcmp(f, group_f64[k])) ks->f64[k] = t, known = true;
                if (!strcmp(f, group_u8[k])) ks->u8[k] = t, known = true;
            }
            if (!strcmp(f, "betas")) ks->betas = t, known = true;
            if (!strcmp(f, "params")) ks->params = t, known = true;
            if (!known) return qg__err(QG_EINVAL, "%s: unexpected key '%s'", op, name);
        } else if (!strcmp(r, "step_count")) {
            ks->steps = t;
        }
    }
    return QG_OK;
}

/* everything but the per-parameter state: present, typed, valid; fills *o */
static qg_status check_group(const qg_adam *s, const adam_keys *ks, const char *pf, qg_adam_opts *o) {
    const char *op = "adam_load_state_dict";
    char s1[128];
    qg_status st = QG_OK;
    for (int k = 0; k < 3 && !st; k++) {
        if (!ks->f64[k]) st = qg__err(QG_EINVAL, "%s: missing key '%sparam_groups.0.%s'", op, pf, group_f64[k]);
        else st = scalar_of(group_f64[k], ks->f64[k], QG_F64);
        if (st || k == 2) continue; /* decoupled_weight_decay may be absent (PyTorch's dicts) */
        if (!ks->u8[k]) st = qg__err(QG_EINVAL, "%s: missing key '%sparam_groups.0.%s'", op, pf, group_u8[k]);
        else st = scalar_of(group_u8[k], ks->u8[k], QG_U8);
    }
    if (!st && ks->u8[2] && !(st = scalar_of(group_u8[2], ks->u8[2], QG_U8)) &&
        (qg_tensor_item(ks->u8[2]) != 0) != s->adamw)
        st = qg__err(QG_EINVAL, "%s: the state dict is %s's but the optimizer is %s", op, kind(!s->adamw),
                     kind(s->adamw));
    if (!st && !ks->betas) st = qg__err(QG_EINVAL, "%s: missing key '%sparam_groups.0.betas'", op, pf);
    if (!st && (ks->betas->dtype != QG_F64 || ks->betas->ndim != 1 || ks->betas->shape[0] != 2))
        st = qg__err(QG_ESHAPE, "%s: betas is %s; expected f64 (2)", op, qg_shape_str(ks->betas, s1, sizeof s1));
    if (!st && !ks->steps) st = qg__err(QG_EINVAL, "%s: missing key '%sstep_count'", op, pf);
    if (!st) st = scalar_of("step_count", ks->steps, QG_I64);
    if (!st && !ks->params) st = qg__err(QG_EINVAL, "%s: missing key '%sparam_groups.0.params'", op, pf);
    if (!st && (ks->params->dtype != QG_I64 || ks->params->ndim != 1 || ks->params->shape[0] != s->n))
        st = qg__err(QG_ESHAPE, "%s: loaded state dict has %s parameters (param_groups.0.params %s) but the "
                     "optimizer has %d", op, ks->params->ndim == 1 ? "another number of" : "malformed",
                     qg_shape_str(ks->params, s1, sizeof s1), s->n);
    if (st) return st;
    const double *be = qg_tensor_data(ks->betas);
    *o = (qg_adam_opts){.lr = qg_tensor_item(ks->f64[0]), .betas = {qg_set(be[0]), qg_set(be[1])},
                        .eps = qg_set(qg_tensor_item(ks->f64[1])), .weight_decay = qg_set(qg_tensor_item(ks->f64[2])),
                        .amsgrad = qg_tensor_item(ks->u8[0]) != 0, .maximize = qg_tensor_item(ks->u8[1]) != 0};
    if ((st = check_opts(op, s->adamw, o))) return st;
    if (*(const int64_t *)qg_tensor_data(ks->steps) < 0) return qg__err(QG_EINVAL, "%s: negative step_count", op);
    return QG_OK;
}

/* parameter i's saved state e[4] (fields[] order): all of it or none, its shapes */
static qg_status check_param_state(const qg_tensor *p, const qg_tensor **e, int i, const char *pf, bool amsgrad) {
    const char *op = "adam_load_state_dict";
    char s1[128], s2[128];
    if (!e[0] && !e[1] && !e[2] && !e[3]) return QG_OK;
    for (int k = 0; k < 4; k++) {
        if (!e[k] && (k < 3 || amsgrad))
            return qg__err(QG_EINVAL, "%s: parameter %d's state lacks '%sstate.%d.%s'", op, i, pf, i, fields[k]);
        if (e[k] && k == 3 && !amsgrad)
            return qg__err(QG_EINVAL, "%s: '%sstate.%d.max_exp_avg_sq' without amsgrad", op, pf, i);
        if (e[k] && k > 0 && !same_shape(e[k], p))
            return qg__err(QG_ESHAPE, "%s: %sstate.%d.%s is %s but parameter %d is %s", op, pf, i, fields[k],
                           qg_shape_str(e[k], s1, sizeof s1), i, qg_shape_str(p, s2, sizeof s2));
    }
    snprintf(s1, sizeof s1, "%sstate.%d.step", pf, i);
    qg_status st = scalar_of(s1, e[0], QG_F32);
    const double t = st ? 0 : qg_tensor_item(e[0]);
    if (!st && !(t >= 0 && isfinite(t) && t == floor(t)))
        st = qg__err(QG_EINVAL, "%s: %s is %g; expected a whole number >= 0", op, s1, t);
    return st;
}

qg_status qg_adam_load_state_dict(qg_adam *s, const qg_tensor_dict *d, const char *prefix) {
    const char *op = "adam_load_state_dict", *pf = prefix ? prefix : "";
    if (!s || !d) return qg__err(QG_EINVAL, "%s: %s is NULL", op, s ? "dict" : "optimizer");
    adam_keys ks = {0};
    qg_adam_opts o = {0};
    qg_tensor **fresh = qg__calloc(sizeof *fresh * 4 * (size_t)s->n); /* new m, v, vmax (slot 0 unused) */
    ks.st = qg__calloc(sizeof *ks.st * 4 * (size_t)s->n);
    qg_status st = !fresh || !ks.st ? qg__err(QG_ENOMEM, "%s: out of memory", op) : collect(s, d, pf, &ks);
    if (!st) st = check_group(s, &ks, pf, &o);
    for (int i = 0; i < s->n && !st; i++) st = check_param_state(s->params[i], ks.st + 4 * i, i, pf, o.amsgrad);
    /* copies first (the only part that can fail), then commit */
    for (int j = 0; j < 4 * s->n && !st; j++)
        if (j % 4 && ks.st[j] && !(fresh[j] = qg_tensor_clone(ks.st[j])))
            st = qg__err(QG_ENOMEM, "%s: out of memory for the optimizer state", op);
    if (st) {
        for (int j = 0; fresh && j < 4 * s->n; j++) qg_tensor_free(fresh[j]);
    } else {
        for (int i = 0; i < s->n; i++) {
            qg_tensor_free(s->m[i]), qg_tensor_free(s->v[i]), qg_tensor_free(s->vmax[i]);
            s->m[i] = fresh[4 * i + 1], s->v[i] = fresh[4 * i + 2], s->vmax[i] = fresh[4 * i + 3];
            s->t[i] = ks.st[4 * i] ? (float)qg_tensor_item(ks.st[4 * i]) : 0.0f;
        }
        s->o = o;
        s->steps = *(const int64_t *)qg_tensor_data(ks.steps);
    }
    qg__free(fresh), qg__free(ks.st);
    return st;
}
