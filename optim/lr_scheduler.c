/* Learning-rate schedules of torch/optim/lr_scheduler.py (PyTorch 1.13): StepLR,
 * MultiStepLR, CosineAnnealingLR, LinearLR with their chainable get_lr (each step
 * derives the new lr from the optimizer's current one) and their closed forms (used
 * where PyTorch uses them: SequentialLR's step(0) at a milestone), SequentialLR and
 * ChainedScheduler. Every expression is evaluated in double in Python's order, so the
 * sequences equal PyTorch's (the same libm cos and pow). */
#include <math.h>

#include "internal.h"
#include "qgrad/optim.h"

/* Python rounds every operation: no fused multiply-adds (clang contracts a*b+c by
 * default; GCC does not in ISO C mode). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

typedef enum { K_STEP, K_MULTISTEP, K_COSINE, K_LINEAR, K_SEQUENTIAL, K_CHAINED } sched_kind;

static const char *const kind_names[] = {"StepLR", "MultiStepLR", "CosineAnnealingLR", "LinearLR",
                                         "SequentialLR", "ChainedScheduler"};

struct qg_lr_scheduler {
    sched_kind kind;
    qg_sgd *opt;
    int64_t last_epoch, step_count;
    double base_lr, last_lr;
    int64_t step_size, T_max, total_iters;
    double gamma, eta_min, start_factor, end_factor;
    int nm;
    int64_t *milestones; /* MultiStepLR: sorted, repeated as counted; SequentialLR: nsub - 1 */
    int nsub;
    qg_lr_scheduler **sub; /* owned */
    bool owned;            /* by a SequentialLR / ChainedScheduler */
};

static bool composite(const qg_lr_scheduler *s) { return s->kind == K_SEQUENTIAL || s->kind == K_CHAINED; }

/* ---------------------------------------------------------------- formulas */

/* Epochs and step counts stay within [-1, 2^53], where they are exact as doubles (the
 * lr formulas take them as doubles) and stepping cannot overflow. */
#define MAX_EPOCH ((int64_t)1 << 53)

/* number of milestones m <= e (bisect_right over a sorted list) */
static int bisect_right(const int64_t *m, int n, int64_t e) {
    int k = 0;
    while (k < n && m[k] <= e) k++;
    return k;
}

/* The chainable get_lr at s->last_epoch == e, from the optimizer's current lr. */
static double chain_lr(const qg_lr_scheduler *s, int64_t e) {
    const double lr = qg_sgd_get_lr(s->opt);
    switch (s->kind) {
    case K_STEP:
        if (e == 0 || e % s->step_size != 0) return lr;
        return lr * s->gamma;
    case K_MULTISTEP: {
        int count = 0;
        for (int k = 0; k < s->nm; k++) count += s->milestones[k] == e;
        if (!count) return lr;
        return lr * pow(s->gamma, (double)count);
    }
    case K_COSINE: {
        const double T = (double)s->T_max, ed = (double)e;
        if (e == 0) return lr;
        if (s->step_count == 1 && e > 0) /* resumed at a later epoch */
            return s->eta_min + (s->base_lr - s->eta_min) * (1 + cos(ed * M_PI / T)) / 2;
        /* (e - 1 - T_max) % (2 T_max) == 0: zero in C exactly when it is in Python */
        if ((e - 1 - s->T_max) % (2 * s->T_max) == 0)
            return lr + (s->base_lr - s->eta_min) * (1 - cos(M_PI / T)) / 2;
        return (1 + cos(M_PI * ed / T)) / (1 + cos(M_PI * (ed - 1) / T)) * (lr - s->eta_min) + s->eta_min;
    }
    case K_LINEAR:
        if (e == 0) return lr * s->start_factor;
        if (e > s->total_iters) return lr;
        return lr * (1. + (s->end_factor - s->start_factor) /
                              ((double)s->total_iters * s->start_factor +
                               (double)(e - 1) * (s->end_factor - s->start_factor)));
    default:
        return lr;
    }
}

/* The closed form at epoch e (PyTorch's _get_closed_form_lr). */
static double closed_lr(const qg_lr_scheduler *s, int64_t e) {
    switch (s->kind) {
    case K_STEP: {
        /* Python's floor division */
        int64_t q = e / s->step_size;
        if ((e % s->step_size != 0) && ((e < 0) != (s->step_size < 0))) q--;
        return s->base_lr * pow(s->gamma, (double)q);
    }
    case K_MULTISTEP:
        return s->base_lr * pow(s->gamma, (double)bisect_right(s->milestones, s->nm, e));
    case K_COSINE:
        return s->eta_min + (s->base_lr - s->eta_min) * (1 + cos(M_PI * (double)e / (double)s->T_max)) / 2;
    case K_LINEAR:
        return s->base_lr * (s->start_factor + (s->end_factor - s->start_factor) *
                                                   (double)(s->total_iters < e ? s->total_iters : e) /
                                                   (double)s->total_iters);
    default:
        return chain_lr(s, e);
    }
}

/* _LRScheduler.step(): epoch < 0 is step(), else step(epoch) (closed form). The new
 * lr is checked before anything changes. */
static qg_status base_step(qg_lr_scheduler *s, int64_t epoch) {
    if (s->last_epoch >= MAX_EPOCH || s->step_count >= MAX_EPOCH)
        return qg__err(QG_EINVAL, "lr_scheduler_step: %s is at epoch %lld, step %lld: no further steps (limit 2^53)",
                       kind_names[s->kind], (long long)s->last_epoch, (long long)s->step_count);
    int64_t e = epoch < 0 ? s->last_epoch + 1 : epoch;
    /* get_lr sees the incremented _step_count and last_epoch */
    s->step_count++;
    double lr = epoch < 0 ? chain_lr(s, e) : closed_lr(s, e);
    if (!(lr >= 0)) {
        s->step_count--;
        return qg__err(QG_EINVAL, "lr_scheduler_step: %s gives an invalid learning rate %g at epoch %lld",
                       kind_names[s->kind], lr, (long long)e);
    }
    s->last_epoch = e;
    qg_sgd_set_lr(s->opt, lr);
    s->last_lr = qg_sgd_get_lr(s->opt);
    return QG_OK;
}

qg_status qg_lr_scheduler_step(qg_lr_scheduler *s) {
    if (!s) return qg__err(QG_EINVAL, "lr_scheduler_step: scheduler is NULL");
    if (s->kind == K_SEQUENTIAL) {
        if (s->last_epoch >= MAX_EPOCH)
            return qg__err(QG_EINVAL, "lr_scheduler_step: SequentialLR is at epoch %lld: no further steps (limit 2^53)",
                           (long long)s->last_epoch);
        int64_t e = s->last_epoch + 1;
        int idx = bisect_right(s->milestones, s->nm, e);
        qg_lr_scheduler *sub = s->sub[idx];
        qg_status st = base_step(sub, idx > 0 && s->milestones[idx - 1] == e ? 0 : -1);
        if (st) return st;
        s->last_epoch = e;
        s->last_lr = sub->last_lr;
        return QG_OK;
    }
    if (s->kind == K_CHAINED) {
        for (int k = 0; k < s->nsub; k++) {
            qg_status st = qg_lr_scheduler_step(s->sub[k]);
            if (st) return st;
        }
        s->last_lr = qg_sgd_get_lr(s->opt);
        return QG_OK;
    }
    return base_step(s, -1);
}

double qg_lr_scheduler_get_last_lr(const qg_lr_scheduler *s) { return s ? s->last_lr : NAN; }

int64_t qg_lr_scheduler_last_epoch(const qg_lr_scheduler *s) {
    if (!s) return -1;
    return s->kind == K_CHAINED ? s->sub[0]->last_epoch : s->last_epoch;
}

/* ---------------------------------------------------------------- construction */

static void sched_free(qg_lr_scheduler *s) {
    if (!s) return;
    for (int k = 0; k < s->nsub; k++) sched_free(s->sub[k]);
    qg__free(s->sub);
    qg__free(s->milestones);
    qg__free(s);
}

void qg_lr_scheduler_free(qg_lr_scheduler *s) {
    if (s && !s->owned) sched_free(s); /* owned ones die with their owner */
}

static qg_lr_scheduler *sched_alloc(const char *op, qg_sgd *opt, sched_kind kind) {
    if (!opt) return qg__err(QG_EINVAL, "%s: optimizer is NULL", op), NULL;
    qg_lr_scheduler *s = qg__calloc(sizeof *s);
    if (!s) return qg__err(QG_ENOMEM, "%s: out of memory", op), NULL;
    s->kind = kind;
    s->opt = opt;
    return s;
}

/* _LRScheduler.__init__ with last_epoch = -1: initial_lr, base_lr, the initial step */
static qg_lr_scheduler *sched_start(qg_lr_scheduler *s) {
    if (isnan(qg_sgd_get_initial_lr(s->opt))) qg_sgd_set_initial_lr(s->opt, qg_sgd_get_lr(s->opt));
    s->base_lr = qg_sgd_get_initial_lr(s->opt);
    s->last_epoch = -1;
    s->step_count = 0;
    if (base_step(s, -1)) {
        sched_free(s);
        return NULL;
    }
    return s;
}

static qg_status check_step(const char *op, int64_t step_size) {
    if (step_size < 1) return qg__err(QG_EINVAL, "%s: step_size must be >= 1, got %lld", op, (long long)step_size);
    return QG_OK;
}

static qg_status check_cosine(const char *op, int64_t T_max, double eta_min) {
    if (T_max < 1 || T_max > INT64_MAX / 4)
        return qg__err(QG_EINVAL, "%s: T_max must be >= 1, got %lld", op, (long long)T_max);
    if (!isfinite(eta_min)) return qg__err(QG_EINVAL, "%s: eta_min must be finite, got %g", op, eta_min);
    return QG_OK;
}

static qg_status check_linear(const char *op, double start, double end, int64_t total) {
    if (!(start > 0 && start <= 1))
        return qg__err(QG_EINVAL, "%s: starting multiplicative factor expected to be in (0, 1], got %g", op, start);
    if (!(end >= 0 && end <= 1))
        return qg__err(QG_EINVAL, "%s: ending multiplicative factor expected to be between 0 and 1, got %g", op, end);
    if (total < 1) return qg__err(QG_EINVAL, "%s: total_iters must be >= 1, got %lld", op, (long long)total);
    return QG_OK;
}

qg_lr_scheduler *qg_step_lr_new(qg_sgd *opt, int64_t step_size, double gamma) {
    const char *op = "step_lr_new";
    if (check_step(op, step_size)) return NULL;
    qg_lr_scheduler *s = sched_alloc(op, opt, K_STEP);
    if (!s) return NULL;
    s->step_size = step_size;
    s->gamma = gamma;
    return sched_start(s);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

qg_lr_scheduler *qg_multi_step_lr_new(qg_sgd *opt, int n, const int64_t *milestones, double gamma) {
    const char *op = "multi_step_lr_new";
    if (n < 0 || (n > 0 && !milestones))
        return qg__err(QG_EINVAL, "%s: bad milestone list (%d entries)", op, n), NULL;
    qg_lr_scheduler *s = sched_alloc(op, opt, K_MULTISTEP);
    if (!s) return NULL;
    s->milestones = qg__alloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!s->milestones) {
        sched_free(s);
        return qg__err(QG_ENOMEM, "%s: out of memory", op), NULL;
    }
    if (n) memcpy(s->milestones, milestones, sizeof(int64_t) * (size_t)n);
    qsort(s->milestones, (size_t)n, sizeof(int64_t), cmp_i64);
    s->nm = n;
    s->gamma = gamma;
    return sched_start(s);
}

qg_lr_scheduler *qg_cosine_annealing_lr_new(qg_sgd *opt, int64_t T_max, double eta_min) {
    const char *op = "cosine_annealing_lr_new";
    if (check_cosine(op, T_max, eta_min)) return NULL;
    qg_lr_scheduler *s = sched_alloc(op, opt, K_COSINE);
    if (!s) return NULL;
    s->T_max = T_max;
    s->eta_min = eta_min;
    return sched_start(s);
}

qg_lr_scheduler *qg_linear_lr_new(qg_sgd *opt, double start_factor, double end_factor, int64_t total_iters) {
    const char *op = "linear_lr_new";
    if (check_linear(op, start_factor, end_factor, total_iters)) return NULL;
    qg_lr_scheduler *s = sched_alloc(op, opt, K_LINEAR);
    if (!s) return NULL;
    s->start_factor = start_factor;
    s->end_factor = end_factor;
    s->total_iters = total_iters;
    return sched_start(s);
}

/* Frees the given schedulers that nobody owns yet (each once). */
static void free_unowned(int n, qg_lr_scheduler *const *scheds) {
    for (int i = 0; scheds && i < n; i++) {
        bool dup = false;
        for (int j = 0; j < i; j++) dup |= scheds[j] == scheds[i];
        if (scheds[i] && !dup && !scheds[i]->owned) sched_free(scheds[i]);
    }
}

/* checks the list and makes s own it */
static qg_status adopt(const char *op, qg_lr_scheduler *s, int n, qg_lr_scheduler *const *scheds, bool basic_only) {
    if (n < 1 || !scheds) return qg__err(QG_EINVAL, "%s: needs at least one scheduler", op);
    for (int i = 0; i < n; i++) {
        if (!scheds[i]) return qg__err(QG_EINVAL, "%s: scheduler %d is NULL", op, i);
        if (scheds[i]->owned) return qg__err(QG_EINVAL, "%s: scheduler %d already belongs to another", op, i);
        for (int j = 0; j < i; j++)
            if (scheds[j] == scheds[i]) return qg__err(QG_EINVAL, "%s: scheduler %d is listed twice", op, i);
        if (basic_only && composite(scheds[i]))
            return qg__err(QG_EINVAL, "%s: scheduler %d is a %s; expected StepLR, MultiStepLR, CosineAnnealingLR or LinearLR",
                           op, i, kind_names[scheds[i]->kind]);
        if (scheds[i]->opt != scheds[0]->opt || (s->opt && scheds[i]->opt != s->opt))
            return qg__err(QG_EINVAL, "%s: expects all schedulers to belong to the same optimizer, but scheduler %d does not",
                           op, i);
    }
    s->sub = qg__alloc(sizeof *s->sub * (size_t)n);
    if (!s->sub) return qg__err(QG_ENOMEM, "%s: out of memory", op);
    for (int i = 0; i < n; i++) s->sub[i] = scheds[i], scheds[i]->owned = true;
    s->nsub = n;
    return QG_OK;
}

qg_lr_scheduler *qg_sequential_lr_new(qg_sgd *opt, int n, qg_lr_scheduler *const *scheds, const int64_t *milestones) {
    const char *op = "sequential_lr_new";
    qg_lr_scheduler *s = sched_alloc(op, opt, K_SEQUENTIAL);
    if (!s) return free_unowned(n, scheds), NULL;
    if (n > 1 && !milestones) {
        qg__err(QG_EINVAL, "%s: milestones are NULL", op);
        goto fail;
    }
    if (isnan(qg_sgd_get_initial_lr(opt))) {
        qg__err(QG_EINVAL, "%s: the optimizer has no initial_lr (make the schedulers first)", op);
        goto fail;
    }
    s->milestones = qg__alloc(sizeof(int64_t) * (size_t)(n > 1 ? n - 1 : 1));
    if (!s->milestones) {
        qg__err(QG_ENOMEM, "%s: out of memory", op);
        goto fail;
    }
    if (n > 1) memcpy(s->milestones, milestones, sizeof(int64_t) * (size_t)(n - 1));
    s->nm = n > 1 ? n - 1 : 0;
    if (adopt(op, s, n, scheds, true)) goto fail;
    /* PyTorch: last_epoch = 0; lr = initial_lr; undo the schedulers' initial steps;
     * restart the first one */
    s->last_epoch = 0;
    qg_sgd_set_lr(opt, qg_sgd_get_initial_lr(opt));
    for (int i = 0; i < n; i++) s->sub[i]->last_epoch -= 1;
    s->sub[0]->step_count = 0;
    if (base_step(s->sub[0], -1)) {
        sched_free(s);
        return NULL;
    }
    s->last_lr = s->sub[0]->last_lr;
    return s;
fail:
    free_unowned(n, scheds);
    sched_free(s);
    return NULL;
}

qg_lr_scheduler *qg_chained_scheduler_new(int n, qg_lr_scheduler *const *scheds) {
    const char *op = "chained_scheduler_new";
    if (n < 1 || !scheds || !scheds[0]) {
        free_unowned(n, scheds);
        return qg__err(QG_EINVAL, "%s: needs at least one scheduler", op), NULL;
    }
    qg_lr_scheduler *s = sched_alloc(op, scheds[0]->opt, K_CHAINED);
    if (!s || adopt(op, s, n, scheds, false)) {
        free_unowned(n, scheds);
        sched_free(s);
        return NULL;
    }
    s->last_lr = qg_sgd_get_lr(s->opt);
    return s;
}

/* ---------------------------------------------------------------- state dict */

static qg_status put(qg_tensor_dict *d, const char *prefix, const char *suffix, qg_tensor *t) {
    size_t a = strlen(prefix), b = strlen(suffix);
    char *k = malloc(a + b + 1);
    if (!k || !t) {
        free(k);
        qg_tensor_free(t);
        return qg__err(QG_ENOMEM, "lr_scheduler_state_dict: out of memory");
    }
    memcpy(k, prefix, a);
    memcpy(k + a, suffix, b + 1);
    qg_status st = qg_tensor_dict_put(d, k, t);
    free(k);
    return st;
}

static qg_tensor *i64_scalar(int64_t v) {
    return qg_tensor_from_data(QG_I64, 0, NULL, &v);
}

static qg_tensor *f64_vec1(double v) {
    int64_t one = 1;
    return qg_tensor_from_data(QG_F64, 1, &one, &v);
}

static char *sub_prefix(const char *prefix, int k) {
    size_t a = strlen(prefix);
    char *p = malloc(a + 32);
    if (p) snprintf(p, a + 32, "%s_schedulers.%d.", prefix, k);
    else qg__err(QG_ENOMEM, "lr_scheduler state dict: out of memory");
    return p;
}

static qg_status save(const qg_lr_scheduler *s, qg_tensor_dict *d, const char *pf) {
    qg_status st = QG_OK;
    if (s->kind != K_CHAINED) st = put(d, pf, "last_epoch", i64_scalar(s->last_epoch));
    if (!st) st = put(d, pf, "_last_lr", f64_vec1(s->last_lr));
    if (!composite(s)) {
        if (!st) st = put(d, pf, "_step_count", i64_scalar(s->step_count));
        if (!st) st = put(d, pf, "base_lrs", f64_vec1(s->base_lr));
    }
    switch (s->kind) {
    case K_STEP:
        if (!st) st = put(d, pf, "step_size", i64_scalar(s->step_size));
        if (!st) st = put(d, pf, "gamma", qg_tensor_full(QG_F64, 0, NULL, s->gamma));
        break;
    case K_MULTISTEP: {
        int64_t n = s->nm;
        if (!st) st = put(d, pf, "milestones", qg_tensor_from_data(QG_I64, 1, &n, s->milestones));
        if (!st) st = put(d, pf, "gamma", qg_tensor_full(QG_F64, 0, NULL, s->gamma));
        break;
    }
    case K_COSINE:
        if (!st) st = put(d, pf, "T_max", i64_scalar(s->T_max));
        if (!st) st = put(d, pf, "eta_min", qg_tensor_full(QG_F64, 0, NULL, s->eta_min));
        break;
    case K_LINEAR:
        if (!st) st = put(d, pf, "start_factor", qg_tensor_full(QG_F64, 0, NULL, s->start_factor));
        if (!st) st = put(d, pf, "end_factor", qg_tensor_full(QG_F64, 0, NULL, s->end_factor));
        if (!st) st = put(d, pf, "total_iters", i64_scalar(s->total_iters));
        break;
    case K_SEQUENTIAL: {
        int64_t n = s->nm;
        if (!st) st = put(d, pf, "_milestones", qg_tensor_from_data(QG_I64, 1, &n, s->milestones));
        break;
    }
    case K_CHAINED: break;
    }
    for (int k = 0; k < s->nsub && !st; k++) {
        char *sp = sub_prefix(pf, k);
        st = sp ? save(s->sub[k], d, sp) : QG_ENOMEM;
        free(sp);
    }
    return st;
}

qg_status qg_lr_scheduler_state_dict(const qg_lr_scheduler *s, qg_tensor_dict *d, const char *prefix) {
    if (!s || !d) return qg__err(QG_EINVAL, "lr_scheduler_state_dict: %s is NULL", s ? "dict" : "scheduler");
    return save(s, d, prefix ? prefix : "");
}

/* d[prefix + name] if it is a dtype tensor of n elements (n < 0: a 0-d or 1-element
 * scalar), else an error naming the key */
static const qg_tensor *want(const qg_tensor_dict *d, const char *pf, const char *name, qg_dtype dt, int64_t n) {
    const char *op = "lr_scheduler_load_state_dict";
    char s1[128];
    size_t a = strlen(pf), b = strlen(name);
    char *k = malloc(a + b + 1);
    if (!k) return qg__err(QG_ENOMEM, "%s: out of memory", op), NULL;
    memcpy(k, pf, a);
    memcpy(k + a, name, b + 1);
    const qg_tensor *t = NULL;
    for (int e = 0; e < qg_tensor_dict_size(d) && !t; e++)
        if (!strcmp(qg_tensor_dict_name(d, e), k)) t = qg_tensor_dict_at(d, e);
    if (!t) qg__err(QG_EINVAL, "%s: missing key '%s'", op, k);
    else if (t->dtype != dt || (n < 0 ? (qg_tensor_numel(t) != 1 || t->ndim > 1) : (t->ndim != 1 || t->shape[0] != n))) {
        qg__err(QG_ESHAPE, "%s: '%s' is %s; expected %s %s", op, k, qg_shape_str(t, s1, sizeof s1), qg_dtype_name(dt),
                n < 0 ? "scalar" : "vector of the scheduler's length");
        t = NULL;
    }
    free(k);
    return t;
}

static int64_t get_i64(const qg_tensor *t) { return *(const int64_t *)qg_tensor_data(t); }
static double get_f64(const qg_tensor *t) { return *(const double *)qg_tensor_data(t); }

/* apply == false: check only; apply == true: copy (cannot fail after a check) */
static qg_status load(qg_lr_scheduler *s, const qg_tensor_dict *d, const char *pf, bool apply) {
    const char *op = "lr_scheduler_load_state_dict";
    const qg_tensor *le = NULL, *ll, *sc = NULL, *bl = NULL, *a = NULL, *b = NULL, *c = NULL;
    if (s->kind != K_CHAINED && !(le = want(d, pf, "last_epoch", QG_I64, -1))) return qg_last_status();
    if (le && (get_i64(le) < -1 || get_i64(le) > MAX_EPOCH))
        return qg__err(QG_EINVAL, "%s: %slast_epoch %lld is outside -1..2^53", op, pf, (long long)get_i64(le));
    if (!(ll = want(d, pf, "_last_lr", QG_F64, 1))) return qg_last_status();
    if (!composite(s)) {
        if (!(sc = want(d, pf, "_step_count", QG_I64, -1)) || !(bl = want(d, pf, "base_lrs", QG_F64, 1)))
            return qg_last_status();
        if (get_i64(sc) < 0 || get_i64(sc) > MAX_EPOCH || !(get_f64(bl) >= 0))
            return qg__err(QG_EINVAL, "%s: bad %s_step_count or %sbase_lrs", op, pf, pf);
    }
    switch (s->kind) {
    case K_STEP:
        if (!(a = want(d, pf, "step_size", QG_I64, -1)) || !(b = want(d, pf, "gamma", QG_F64, -1))) return qg_last_status();
        if (check_step(op, get_i64(a))) return qg_last_status();
        break;
    case K_MULTISTEP:
        if (!(a = want(d, pf, "milestones", QG_I64, s->nm)) || !(b = want(d, pf, "gamma", QG_F64, -1)))
            return qg_last_status();
        break;
    case K_COSINE:
        if (!(a = want(d, pf, "T_max", QG_I64, -1)) || !(b = want(d, pf, "eta_min", QG_F64, -1))) return qg_last_status();
        if (check_cosine(op, get_i64(a), get_f64(b))) return qg_last_status();
        break;
    case K_LINEAR:
        if (!(a = want(d, pf, "start_factor", QG_F64, -1)) || !(b = want(d, pf, "end_factor", QG_F64, -1)) ||
            !(c = want(d, pf, "total_iters", QG_I64, -1)))
            return qg_last_status();
        if (check_linear(op, get_f64(a), get_f64(b), get_i64(c))) return qg_last_status();
        break;
    case K_SEQUENTIAL:
        if (!(a = want(d, pf, "_milestones", QG_I64, s->nm))) return qg_last_status();
        break;
    case K_CHAINED: break;
    }
    for (int k = 0; k < s->nsub; k++) {
        char *sp = sub_prefix(pf, k);
        qg_status st = sp ? load(s->sub[k], d, sp, apply) : QG_ENOMEM;
        free(sp);
        if (st) return st;
    }
    if (!apply) return QG_OK;
    if (le) s->last_epoch = get_i64(le);
    s->last_lr = *(const double *)qg_tensor_data(ll);
    if (sc) s->step_count = get_i64(sc), s->base_lr = get_f64(bl);
    switch (s->kind) {
    case K_STEP: s->step_size = get_i64(a), s->gamma = get_f64(b); break;
    case K_MULTISTEP:
        qg_tensor_copy_to(a, QG_I64, s->milestones);
        qsort(s->milestones, (size_t)s->nm, sizeof(int64_t), cmp_i64);
        s->gamma = get_f64(b);
        break;
    case K_COSINE: s->T_max = get_i64(a), s->eta_min = get_f64(b); break;
    case K_LINEAR: s->start_factor = get_f64(a), s->end_factor = get_f64(b), s->total_iters = get_i64(c); break;
    case K_SEQUENTIAL: qg_tensor_copy_to(a, QG_I64, s->milestones); break;
    case K_CHAINED: break;
    }
    return QG_OK;
}

qg_status qg_lr_scheduler_load_state_dict(qg_lr_scheduler *s, const qg_tensor_dict *d, const char *prefix) {
    if (!s || !d) return qg__err(QG_EINVAL, "lr_scheduler_load_state_dict: %s is NULL", s ? "dict" : "scheduler");
    const char *pf = prefix ? prefix : "";
    qg_status st = load(s, d, pf, false);
    return st ? st : load(s, d, pf, true);
}
