/* SGD and lr schedulers against PyTorch 1.13 (tests/fixtures/optim.safetensors, written
 * by tools/gen_fixtures.py): parameters after each of 10 steps in 8 configurations
 * (relative error <= 1e-6; f32 is expected to match bit for bit when built with FMA),
 * lr sequences of 10 schedulers over 30 steps (<= 1e-9), error paths, state dict round
 * trips (bitwise equal to an uninterrupted run) and loads that must change nothing.
 * Usage: test_optim [path/to/optim.safetensors] */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qgrad/optim.h"
#include "test_util.h"

/* Gives p the gradient g, as a backward pass would (the leaf owns its .grad). */
static void set_grad(qg_tensor *p, const qg_tensor *g) {
    if (!p->grad) p->grad = qg_tensor_clone(g);
    else qg_tensor_copy_(p->grad, g);
}

/* ------------------------------------------------------------- SGD parity */

static const char *const pnames[4] = {"w", "b", "c", "d"};

static const struct {
    const char *name;
    qg_sgd_opts o;
    bool steplr;
} configs[] = {
    {"plain", {.lr = 0.1}, false},
    {"momentum", {.lr = 0.1, .momentum = 0.9}, false},
    {"nesterov", {.lr = 0.1, .momentum = 0.9, .nesterov = true}, false},
    {"dampening", {.lr = 0.1, .momentum = 0.9, .dampening = 0.5}, false},
    {"wd_momentum", {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-2}, false},
    {"maximize", {.lr = 0.1, .maximize = true}, false},
    {"maximize_momentum_wd", {.lr = 0.05, .momentum = 0.8, .weight_decay = 1e-2, .maximize = true}, false},
    {"steplr", {.lr = 0.1, .momentum = 0.9}, true},
};

static qg_tensor_list make_list(int n, qg_tensor **ts) {
    static char *names[8] = {"w", "b", "c", "d", "e", "f", "g", "h"};
    qg_tensor_list l = {n, names, ts};
    return l;
}

static void sgd_parity(void) {
    double worst = 0;
    int64_t exact = 0, total = 0;
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        qg_tensor *p[4];
        for (int i = 0; i < 4; i++) p[i] = qg_tensor_clone(FX("sgd.init.%s", pnames[i]));
        qg_tensor_list l = make_list(4, p);
        qg_sgd *opt = qg_sgd_new(&l, &configs[k].o);
        CHECK(opt != NULL, "sgd_new %s: %s", configs[k].name, qg_last_error());
        if (!opt) continue;
        qg_lr_scheduler *sched = configs[k].steplr ? qg_step_lr_new(opt, 3, 0.5) : NULL;
        double cworst = 0;
        for (int t = 0; t < 10; t++) {
            for (int i = 0; i < 4; i++)
                if (i != 2 || t >= 3) set_grad(p[i], FX("sgd.grad.%d.%s", t, pnames[i]));
            CHECK(qg_sgd_step(opt) == QG_OK, "sgd_step %s: %s", configs[k].name, qg_last_error());
            if (sched) qg_lr_scheduler_step(sched);
            for (int i = 0; i < 4; i++) {
                const qg_tensor *want = FX("sgd.%s.%d.%s", configs[k].name, t, pnames[i]);
                tst_cmp c = tst_compare(p[i], want, TST_EXACT); /* max |a - b| / |b| (floored at 1e-30) */
                double e = c.max_rel;
                exact += c.exact;
                total += qg_tensor_numel(want);
                cworst = fmax(cworst, e);
                CHECK(e <= 1e-6, "sgd %s step %d param %s: relative error %g", configs[k].name, t, pnames[i], e);
            }
        }
        CHECK(qg_sgd_step_count(opt) == 10, "step count");
        /* c got its first grad at step 3: with momentum its buffer exists now */
        CHECK((qg_sgd_momentum_buffer(opt, 2) != NULL) == (configs[k].o.momentum != 0), "%s: buffer of c",
              configs[k].name);
        printf("sgd %-22s max relative error vs PyTorch %.3g\n", configs[k].name, cworst);
        worst = fmax(worst, cworst);
        qg_lr_scheduler_free(sched);
        qg_sgd_free(opt);
        for (int i = 0; i < 4; i++) qg_tensor_free(p[i]);
    }
    printf("sgd: max relative error %.3g; %lld of %lld parameter values bitwise equal to PyTorch\n", worst,
           (long long)exact, (long long)total);
}

/* ------------------------------------------------------------- lr schedulers */

typedef qg_lr_scheduler *(*make_sched_fn)(qg_sgd *o);

static qg_lr_scheduler *mk_step(qg_sgd *o) { return qg_step_lr_new(o, 7, 0.5); }
static qg_lr_scheduler *mk_multistep(qg_sgd *o) { return qg_multi_step_lr_new(o, 3, (int64_t[]){5, 12, 20}, 0.1); }
static qg_lr_scheduler *mk_multistep_dup(qg_sgd *o) { return qg_multi_step_lr_new(o, 3, (int64_t[]){12, 5, 5}, 0.5); }
static qg_lr_scheduler *mk_cosine(qg_sgd *o) { return qg_cosine_annealing_lr_new(o, 10, 0.001); }
static qg_lr_scheduler *mk_cosine_t7(qg_sgd *o) { return qg_cosine_annealing_lr_new(o, 7, 0.0); }
static qg_lr_scheduler *mk_linear(qg_sgd *o) { return qg_linear_lr_new(o, 0.1, 1.0, 5); }
static qg_lr_scheduler *mk_linear_decay(qg_sgd *o) { return qg_linear_lr_new(o, 1.0, 0.25, 8); }
static qg_lr_scheduler *mk_sequential(qg_sgd *o) {
    qg_lr_scheduler *s[2] = {qg_linear_lr_new(o, 0.1, 1.0, 5), qg_cosine_annealing_lr_new(o, 20, 0.001)};
    return qg_sequential_lr_new(o, 2, s, (int64_t[]){5});
}
static qg_lr_scheduler *mk_sequential3(qg_sgd *o) {
    qg_lr_scheduler *s[3] = {qg_step_lr_new(o, 2, 0.5), qg_multi_step_lr_new(o, 1, (int64_t[]){3}, 0.1),
                             qg_cosine_annealing_lr_new(o, 6, 0.0)};
    return qg_sequential_lr_new(o, 3, s, (int64_t[]){4, 9});
}
static qg_lr_scheduler *mk_chained(qg_sgd *o) {
    qg_lr_scheduler *s[2] = {qg_linear_lr_new(o, 0.5, 1.0, 4), qg_step_lr_new(o, 6, 0.5)};
    return qg_chained_scheduler_new(2, s);
}

static const struct {
    const char *name;
    make_sched_fn make;
} scheds[] = {
    {"step", mk_step}, {"multistep", mk_multistep}, {"multistep_dup", mk_multistep_dup},
    {"cosine", mk_cosine}, {"cosine_t7", mk_cosine_t7}, {"linear", mk_linear},
    {"linear_decay", mk_linear_decay}, {"sequential", mk_sequential}, {"sequential3", mk_sequential3},
    {"chained", mk_chained},
};

static void lr_parity(void) {
    double worst = 0;
    for (size_t k = 0; k < sizeof scheds / sizeof scheds[0]; k++) {
        qg_tensor *p = qg_tensor_zeros(QG_F32, 1, SHAPE(1));
        qg_tensor_list l = make_list(1, &p);
        qg_sgd *opt = qg_sgd_new(&l, &(qg_sgd_opts){.lr = 0.1});
        qg_lr_scheduler *s = scheds[k].make(opt);
        CHECK(s != NULL, "scheduler %s: %s", scheds[k].name, qg_last_error());
        const qg_tensor *want = FX("lr.%s", scheds[k].name);
        if (!s || !want) {
            qg_sgd_free(opt), qg_tensor_free(p);
            continue;
        }
        const double *w = qg_tensor_data(want);
        double e = 0;
        for (int i = 0; i <= 30; i++) {
            if (i) {
                qg_sgd_step(opt); /* no grad: skipped, as in the generator */
                CHECK(qg_lr_scheduler_step(s) == QG_OK, "%s step: %s", scheds[k].name, qg_last_error());
            }
            double got = qg_lr_scheduler_get_last_lr(s);
            CHECK(tst_close(got, w[i], 1e-15, 1e-9), "lr %s after %d steps: %.17g, PyTorch %.17g", scheds[k].name, i,
                  got, w[i]);
            CHECK(got == qg_sgd_get_lr(opt), "lr %s: the optimizer's lr is the last lr", scheds[k].name);
            e = fmax(e, fabs(got - w[i]) / fmax(fabs(w[i]), 1e-300));
        }
        printf("lr %-14s max relative error vs PyTorch %.3g\n", scheds[k].name, e);
        worst = fmax(worst, e);
        qg_lr_scheduler_free(s);
        qg_sgd_free(opt);
        qg_tensor_free(p);
    }
    printf("lr schedulers: max relative error %.3g\n", worst);
}

/* ------------------------------------------------------------- errors */

static void errors(void) {
    qg_tensor *a = qg_tensor_zeros(QG_F32, 2, SHAPE(2, 3)), *b = qg_tensor_zeros(QG_F64, 1, SHAPE(3));
    qg_tensor *i = qg_tensor_zeros(QG_I64, 1, SHAPE(3));
    qg_tensor *ab[2] = {a, b}, *aa[2] = {a, a}, *ai[2] = {a, i};
    qg_tensor_list l = make_list(2, ab), ldup = make_list(2, aa), lint = make_list(2, ai), lempty = make_list(0, ab);
    const struct {
        const char *what;
        const qg_tensor_list *l;
        qg_sgd_opts o;
        qg_status st;
    } bad[] = {
        {"negative lr", &l, {.lr = -0.1}, QG_EINVAL},
        {"nan lr", &l, {.lr = NAN}, QG_EINVAL},
        {"negative momentum", &l, {.lr = 0.1, .momentum = -0.5}, QG_EINVAL},
        {"negative weight_decay", &l, {.lr = 0.1, .weight_decay = -1e-4}, QG_EINVAL},
        {"nesterov without momentum", &l, {.lr = 0.1, .nesterov = true}, QG_EINVAL},
        {"nesterov with dampening", &l, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}, QG_EINVAL},
        {"duplicate parameter", &ldup, {.lr = 0.1}, QG_EINVAL},
        {"integer parameter", &lint, {.lr = 0.1}, QG_EDTYPE},
        {"empty list", &lempty, {.lr = 0.1}, QG_EINVAL},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        qg_clear_error();
        qg_sgd *o = qg_sgd_new(bad[k].l, &bad[k].o);
        CHECK(!o && qg_last_status() == bad[k].st, "sgd_new with %s must fail (%s)", bad[k].what, qg_last_error());
        qg_sgd_free(o);
    }
    CHECK(!qg_sgd_new(NULL, &(qg_sgd_opts){.lr = 0.1}), "NULL list");
    CHECK(!qg_sgd_new(&l, NULL) && strstr(qg_last_error(), "lr"), "NULL options: %s", qg_last_error());
    /* a tape tensor cannot be a parameter */
    qg_tensor *tv = qg_transpose(a, 0, 1), *tl[1] = {tv};
    qg_tensor_list ltape = make_list(1, tl);
    CHECK(!qg_sgd_new(&ltape, &(qg_sgd_opts){.lr = 0.1}) && strstr(qg_last_error(), "tape"), "tape parameter: %s",
          qg_last_error());
    qg_tape_reset(NULL);

    /* a grad of the wrong shape: error, and nothing changes */
    qg_sgd *o = qg_sgd_new(&l, &(qg_sgd_opts){.lr = 0.1, .momentum = 0.9});
    CHECK(o != NULL, "sgd_new: %s", qg_last_error());
    set_grad(a, FX("sgd.grad.0.w")); /* (3, 5) for a (2, 3) parameter */
    b->grad = qg_tensor_ones(QG_F64, 1, SHAPE(3));
    qg_tensor *b0 = qg_tensor_clone(b);
    qg_clear_error();
    CHECK(qg_sgd_step(o) == QG_ESHAPE && strstr(qg_last_error(), "grad"), "grad shape mismatch: %s", qg_last_error());
    CHECK(tst_bitwise_equal(b, b0) && !qg_sgd_momentum_buffer(o, 1) && qg_sgd_step_count(o) == 0,
          "a failed step changes nothing");
    /* a grad of another dtype */
    qg_tensor_free(a->grad);
    a->grad = qg_tensor_zeros(QG_F64, 2, SHAPE(2, 3));
    CHECK(qg_sgd_step(o) == QG_ESHAPE, "grad dtype mismatch: %s", qg_last_error());
    qg_tensor_free(a->grad);
    a->grad = NULL;
    /* now fine: a has no grad and is skipped */
    CHECK(qg_sgd_step(o) == QG_OK && !qg_sgd_momentum_buffer(o, 0) && qg_sgd_momentum_buffer(o, 1),
          "parameter without grad skipped: %s", qg_last_error());
    CHECK(tst_close(qg_tensor_get(b, (int64_t[]){0}), -0.1, 1e-15, 0), "b stepped");
    qg_sgd_zero_grad(o);
    CHECK(qg_tensor_get(b->grad, (int64_t[]){2}) == 0, "zero_grad zeroes in place");
    CHECK(qg_sgd_set_lr(o, -1) == QG_EINVAL && qg_sgd_get_lr(o) == 0.1, "set_lr rejects a negative lr");
    CHECK(qg_sgd_set_lr(o, 0.5) == QG_OK && qg_sgd_get_lr(o) == 0.5, "set_lr");
    CHECK(isnan(qg_sgd_get_initial_lr(o)), "no initial_lr before a scheduler");
    CHECK(qg_sgd_step(NULL) == QG_EINVAL, "step NULL");

    /* scheduler arguments */
    qg_clear_error();
    CHECK(!qg_step_lr_new(o, 0, 0.5) && qg_last_status() == QG_EINVAL, "StepLR step_size 0");
    CHECK(!qg_step_lr_new(NULL, 2, 0.5), "StepLR without optimizer");
    CHECK(!qg_cosine_annealing_lr_new(o, 0, 0.0), "Cosine T_max 0");
    CHECK(!qg_cosine_annealing_lr_new(o, 5, NAN), "Cosine eta_min nan");
    CHECK(!qg_linear_lr_new(o, 0.0, 1.0, 5), "LinearLR start_factor 0");
    CHECK(!qg_linear_lr_new(o, 1.5, 1.0, 5), "LinearLR start_factor > 1");
    CHECK(!qg_linear_lr_new(o, 0.5, 1.5, 5), "LinearLR end_factor > 1");
    CHECK(!qg_linear_lr_new(o, 0.5, 1.0, 0), "LinearLR total_iters 0");
    CHECK(!qg_multi_step_lr_new(o, -1, NULL, 0.1), "MultiStepLR bad list");
    CHECK(isnan(qg_sgd_get_initial_lr(o)), "failed constructors leave initial_lr alone");
    /* schedulers of another optimizer; composites inside SequentialLR */
    qg_sgd *o2 = qg_sgd_new(&l, &(qg_sgd_opts){.lr = 0.2});
    qg_lr_scheduler *x[2] = {qg_step_lr_new(o, 2, 0.5), qg_step_lr_new(o2, 2, 0.5)};
    CHECK(!qg_sequential_lr_new(o, 2, x, (int64_t[]){3}) && strstr(qg_last_error(), "same optimizer"),
          "SequentialLR over two optimizers: %s", qg_last_error());
    qg_lr_scheduler *y[2] = {qg_step_lr_new(o, 2, 0.5), qg_step_lr_new(o2, 2, 0.5)};
    CHECK(!qg_chained_scheduler_new(2, y), "ChainedScheduler over two optimizers");
    qg_lr_scheduler *z1[1] = {qg_step_lr_new(o, 2, 0.5)};
    qg_lr_scheduler *ch = qg_chained_scheduler_new(1, z1);
    qg_lr_scheduler *z2[2] = {ch, qg_step_lr_new(o, 3, 0.5)};
    CHECK(!qg_sequential_lr_new(o, 2, z2, (int64_t[]){3}) && strstr(qg_last_error(), "ChainedScheduler"),
          "SequentialLR of a ChainedScheduler: %s", qg_last_error());
    CHECK(qg_lr_scheduler_step(NULL) == QG_EINVAL, "scheduler step NULL");
    CHECK(isnan(qg_lr_scheduler_get_last_lr(NULL)), "get_last_lr NULL");

    qg_sgd_free(o), qg_sgd_free(o2);
    qg_tensor_free(a), qg_tensor_free(b), qg_tensor_free(b0), qg_tensor_free(i);
}

/* ------------------------------------------------------------- state round trip */

/* parameters: w f32 (4, 3), v f64 (5), e f32 (2) which gets grads only from step 7 */
typedef struct {
    qg_tensor *p[3];
    qg_sgd *opt;
    qg_lr_scheduler *sched;
} run;

static void run_init(run *r, const qg_sgd_opts *o, bool with_sched) {
    qg_rng g;
    qg_rng_init(&g, 42);
    r->p[0] = qg_tensor_randn(&g, QG_F32, 2, SHAPE(4, 3));
    r->p[1] = qg_tensor_randn(&g, QG_F64, 1, SHAPE(5));
    r->p[2] = qg_tensor_randn(&g, QG_F32, 1, SHAPE(2));
    qg_tensor_list l = make_list(3, r->p);
    r->opt = qg_sgd_new(&l, o);
    r->sched = NULL;
    if (with_sched) {
        qg_lr_scheduler *s[2] = {qg_linear_lr_new(r->opt, 0.25, 1.0, 3), qg_cosine_annealing_lr_new(r->opt, 6, 0.01)};
        r->sched = qg_sequential_lr_new(r->opt, 2, s, (int64_t[]){3});
    }
}

static void run_steps(run *r, int from, int to) {
    for (int t = from; t < to; t++) {
        qg_rng g;
        qg_rng_init(&g, 1000 + (uint64_t)t); /* step t's gradients, whoever runs it */
        for (int i = 0; i < 3; i++) {
            if (i == 2 && t < 7) continue;
            qg_tensor *gt = qg_tensor_randn(&g, r->p[i]->dtype, r->p[i]->ndim, r->p[i]->shape);
            set_grad(r->p[i], gt);
            qg_tensor_free(gt);
        }
        CHECK(qg_sgd_step(r->opt) == QG_OK, "round trip step %d: %s", t, qg_last_error());
        if (r->sched) qg_lr_scheduler_step(r->sched);
    }
}

static void run_free(run *r) {
    qg_lr_scheduler_free(r->sched);
    qg_sgd_free(r->opt);
    for (int i = 0; i < 3; i++) qg_tensor_free(r->p[i]);
}

static void round_trip(void) {
    const qg_sgd_opts o = {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true};
    run a, b, c;
    run_init(&a, &o, true);
    run_steps(&a, 0, 10);

    run_init(&b, &o, true);
    run_steps(&b, 0, 5);
    CHECK(qg_sgd_momentum_buffer(b.opt, 2) == NULL, "e has no buffer at step 5");
    qg_tensor_dict *d = qg_tensor_dict_new();
    for (int i = 0; i < 3; i++) qg_tensor_dict_put(d, pnames[i], qg_tensor_clone(b.p[i])); /* "model" */
    CHECK(qg_sgd_state_dict(b.opt, d, "optimizer.") == QG_OK, "sgd_state_dict: %s", qg_last_error());
    CHECK(qg_lr_scheduler_state_dict(b.sched, d, "scheduler.") == QG_OK, "scheduler_state_dict: %s", qg_last_error());
    CHECK(qg_tensor_dict_get(d, "optimizer.state.0.momentum_buffer") && qg_tensor_dict_get(d, "optimizer.state.1.momentum_buffer"),
          "buffers saved");
    qg_clear_error();
    int has_e = 0;
    for (int k = 0; k < qg_tensor_dict_size(d); k++) has_e |= !strcmp(qg_tensor_dict_name(d, k), "optimizer.state.2.momentum_buffer");
    CHECK(!has_e, "no buffer saved for a parameter that never had a grad");
    CHECK(qg_tensor_dict_get(d, "optimizer.param_groups.0.initial_lr") &&
              qg_tensor_dict_get(d, "scheduler._schedulers.1.T_max") && qg_tensor_dict_get(d, "optimizer.step_count"),
          "keys: %s", qg_last_error());

    char path[64];
    snprintf(path, sizeof path, "/tmp/qg_test_optim_%d.safetensors", (int)getpid());
    CHECK(qg_safetensors_save(path, d) == QG_OK, "save: %s", qg_last_error());
    qg_tensor_dict *d2 = qg_safetensors_load(path);
    unlink(path);
    CHECK(d2 != NULL, "load: %s", qg_last_error());

    /* fresh optimizer and scheduler with other settings: the state replaces them */
    run_init(&c, &(qg_sgd_opts){.lr = 1.0}, true);
    for (int i = 0; i < 3; i++) qg_tensor_copy_(c.p[i], qg_tensor_dict_get(d2, pnames[i]));
    CHECK(qg_sgd_load_state_dict(c.opt, d2, "optimizer.") == QG_OK, "sgd_load_state_dict: %s", qg_last_error());
    CHECK(qg_lr_scheduler_load_state_dict(c.sched, d2, "scheduler.") == QG_OK, "scheduler load: %s", qg_last_error());
    CHECK(qg_sgd_get_lr(c.opt) == qg_sgd_get_lr(b.opt) && qg_sgd_opts_of(c.opt)->nesterov &&
              qg_sgd_step_count(c.opt) == 5 && qg_lr_scheduler_last_epoch(c.sched) == 5,
          "settings restored (lr %g, steps %lld, epoch %lld)", qg_sgd_get_lr(c.opt), (long long)qg_sgd_step_count(c.opt),
          (long long)qg_lr_scheduler_last_epoch(c.sched));
    run_steps(&c, 5, 10);
    for (int i = 0; i < 3; i++) CHECK(tst_bitwise_equal(c.p[i], a.p[i]), "resumed run equals the uninterrupted one: %s", pnames[i]);
    for (int i = 0; i < 3; i++)
        CHECK(tst_bitwise_equal(qg_sgd_momentum_buffer(c.opt, i), qg_sgd_momentum_buffer(a.opt, i)), "buffer %d equal", i);
    CHECK(qg_lr_scheduler_get_last_lr(c.sched) == qg_lr_scheduler_get_last_lr(a.sched) &&
              qg_sgd_get_lr(c.opt) == qg_sgd_get_lr(a.opt), "lr equal after resuming");

    /* loads that must fail and change nothing */
    qg_tensor *snap[3];
    for (int i = 0; i < 3; i++) snap[i] = qg_tensor_clone(qg_sgd_momentum_buffer(c.opt, i));
    double lr0 = qg_sgd_get_lr(c.opt);
    int64_t ep0 = qg_lr_scheduler_last_epoch(c.sched);
    struct {
        const char *what, *key;
        qg_tensor *t;
    } bad[] = {
        {"buffer shape", "optimizer.state.0.momentum_buffer", qg_tensor_zeros(QG_F32, 1, SHAPE(12))},
        {"buffer dtype", "optimizer.state.1.momentum_buffer", qg_tensor_zeros(QG_F32, 1, SHAPE(5))},
        {"unknown parameter", "optimizer.state.3.momentum_buffer", qg_tensor_zeros(QG_F32, 1, SHAPE(2))},
        {"unknown state field", "optimizer.state.0.momentum", qg_tensor_zeros(QG_F32, 2, SHAPE(4, 3))},
        {"parameter count", "optimizer.param_groups.0.params", qg_tensor_arange(QG_I64, 0, 4, 1)},
        {"negative lr", "optimizer.param_groups.0.lr", qg_tensor_full(QG_F64, 0, NULL, -1.0)},
        {"lr dtype", "optimizer.param_groups.0.lr", qg_tensor_full(QG_F32, 0, NULL, 0.1)},
        {"nesterov with dampening", "optimizer.param_groups.0.dampening", qg_tensor_full(QG_F64, 0, NULL, 0.5)},
        {"second group", "optimizer.param_groups.1.lr", qg_tensor_full(QG_F64, 0, NULL, 0.1)},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        /* copy d into a new dict, then spoil one key */
        qg_tensor_dict *dd = qg_tensor_dict_new();
        for (int j = 0; j < qg_tensor_dict_size(d); j++)
            qg_tensor_dict_put(dd, qg_tensor_dict_name(d, j), qg_tensor_clone(qg_tensor_dict_at(d, j)));
        qg_tensor_dict_put(dd, bad[k].key, bad[k].t);
        qg_clear_error();
        CHECK(qg_sgd_load_state_dict(c.opt, dd, "optimizer.") != QG_OK, "load with bad %s must fail", bad[k].what);
        printf("  (bad %s: %s)\n", bad[k].what, qg_last_error());
        qg_tensor_dict_free(dd);
    }
    /* a missing key */
    qg_tensor_dict *dm = qg_tensor_dict_new();
    for (int j = 0; j < qg_tensor_dict_size(d); j++)
        if (strcmp(qg_tensor_dict_name(d, j), "optimizer.param_groups.0.momentum"))
            qg_tensor_dict_put(dm, qg_tensor_dict_name(d, j), qg_tensor_clone(qg_tensor_dict_at(d, j)));
    CHECK(qg_sgd_load_state_dict(c.opt, dm, "optimizer.") == QG_EINVAL && strstr(qg_last_error(), "momentum"),
          "missing key: %s", qg_last_error());
    /* a scheduler's state into another type; an optimizer state into a 2-parameter one */
    qg_lr_scheduler *st = qg_step_lr_new(c.opt, 4, 0.5);
    CHECK(qg_lr_scheduler_load_state_dict(st, d, "scheduler.") != QG_OK, "StepLR from a SequentialLR state: %s",
          qg_last_error());
    qg_lr_scheduler_free(st);
    qg_sgd_set_lr(c.opt, lr0); /* (the StepLR's construction step kept it) */
    qg_tensor *two[2] = {c.p[0], c.p[1]};
    qg_tensor_list l2 = make_list(2, two);
    qg_sgd *o2 = qg_sgd_new(&l2, &o);
    CHECK(qg_sgd_load_state_dict(o2, d, "optimizer.") != QG_OK, "3-parameter state into a 2-parameter optimizer: %s",
          qg_last_error());
    qg_sgd_free(o2);
    for (int i = 0; i < 3; i++)
        CHECK(tst_bitwise_equal(qg_sgd_momentum_buffer(c.opt, i), snap[i]) ||
                  (!snap[i] && !qg_sgd_momentum_buffer(c.opt, i)), "failed loads left buffer %d alone", i);
    CHECK(qg_sgd_get_lr(c.opt) == lr0 && qg_sgd_step_count(c.opt) == 10 && qg_lr_scheduler_last_epoch(c.sched) == ep0,
          "failed loads left the settings alone");
    /* loading a state without a buffer removes the parameter's buffer */
    qg_tensor_dict *dn = qg_tensor_dict_new();
    qg_sgd_state_dict(b.opt, dn, NULL); /* at step 5, e has no buffer */
    CHECK(qg_sgd_load_state_dict(c.opt, dn, NULL) == QG_OK && !qg_sgd_momentum_buffer(c.opt, 2) &&
              qg_sgd_step_count(c.opt) == 5, "load without a buffer: %s", qg_last_error());

    for (int i = 0; i < 3; i++) qg_tensor_free(snap[i]);
    qg_tensor_dict_free(d), qg_tensor_dict_free(d2), qg_tensor_dict_free(dm), qg_tensor_dict_free(dn);
    run_free(&a), run_free(&b), run_free(&c);
}

/* ------------------------------------------------------------- threads, memory */

static void threads_and_memory(void) {
    qg_rng g;
    qg_tensor *res[2];
    for (int r = 0; r < 2; r++) {
        qg_set_num_threads(r ? 4 : 1);
        qg_rng_init(&g, 8);
        qg_tensor *p = qg_tensor_randn(&g, QG_F32, 2, SHAPE(300, 500));
        qg_tensor *gr = qg_tensor_randn(&g, QG_F32, 2, SHAPE(300, 500));
        qg_tensor_list l = make_list(1, &p);
        qg_sgd *o = qg_sgd_new(&l, &(qg_sgd_opts){.lr = 0.01, .momentum = 0.9, .dampening = 0.1, .weight_decay = 1e-4});
        set_grad(p, gr);
        qg_sgd_step(o);
        int64_t live = qg_live_allocations();
        for (int t = 0; t < 5; t++) qg_sgd_step(o);
        CHECK(qg_live_allocations() == live, "steps after the first allocate nothing");
        res[r] = qg_tensor_clone(p);
        qg_sgd_free(o);
        qg_tensor_free(p), qg_tensor_free(gr);
    }
    qg_set_num_threads(0);
    CHECK(tst_bitwise_equal(res[0], res[1]), "same result with 1 and 4 threads");
    qg_tensor_free(res[0]), qg_tensor_free(res[1]);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "tests/fixtures/optim.safetensors";
    tst_fx = qg_safetensors_load(path);
    if (!tst_fx) {
        printf("cannot load %s: %s\n", path, qg_last_error());
        return 1;
    }
    qg_tensor *warm = qg_tensor_zeros(QG_F32, 1, SHAPE(1));
    qg_neg(warm); /* the tape's arena exists before the count starts */
    qg_tape_reset(NULL);
    qg_tensor_free(warm);
    int64_t live0 = qg_live_allocations();
    sgd_parity();
    lr_parity();
    errors();
    round_trip();
    threads_and_memory();
    qg_tape_reset(NULL);
    CHECK(qg_live_allocations() == live0, "no leaks (%lld -> %lld live blocks)", (long long)live0,
          (long long)qg_live_allocations());
    qg_tensor_dict_free(tst_fx);
    return test_summary("optim");
}
