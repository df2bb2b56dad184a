/* Adam and AdamW against PyTorch 1.13 (tests/fixtures/adam.safetensors, written by
 * tools/gen_adam_fixtures.py): in 10 configurations, the parameters (f32 and f64) after
 * each of 10 steps and the state after the last must equal PyTorch's bit for bit; a
 * PyTorch state dict taken after step 5, loaded into a fresh optimizer, must continue
 * to the same bits; a saved and reloaded state must continue like an uninterrupted
 * run; bad options, grads and state dicts must fail with a message and change nothing.
 * Usage: test_adam [path/to/adam.safetensors] */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qgrad/optim.h"
#include "test_util.h"

#define NP 6

static const char *const pn[NP] = {"w", "b", "c", "d", "e", "f"}; /* c: no grad at steps 0..2 */
static char *names[NP] = {"w", "b", "c", "d", "e", "f"};

static const struct {
    const char *name;
    bool adamw;
    qg_adam_opts o;
} configs[] = {
    {"adam_default", false, {.lr = 1e-3}},
    {"adam_lr_betas_eps", false, {.lr = 0.1, .betas = {QG_SET(0.8), QG_SET(0.9)}, .eps = QG_SET(1e-6)}},
    {"adam_wd", false, {.lr = 1e-2, .weight_decay = QG_SET(0.1)}},
    {"adam_amsgrad", false, {.lr = 1e-2, .amsgrad = true}},
    {"adam_max_wd_ams", false, {.lr = 1e-2, .weight_decay = QG_SET(0.1), .amsgrad = true, .maximize = true}},
    {"adam_beta1_0", false, {.lr = 1e-2, .betas = {QG_SET(0), {0, false}}}}, /* beta2 left at 0.999 */
    {"adamw_default", true, {.lr = 1e-3}},
    {"adamw_wd_ams", true, {.lr = 1e-2, .weight_decay = QG_SET(0.1), .amsgrad = true}},
    {"adamw_maximize", true, {.lr = 1e-2, .maximize = true}},
    {"adamw_betas_0_wd_0", true, {.lr = 5e-2, .betas = {QG_SET(0), QG_SET(0)}, .weight_decay = QG_SET(0)}},
};
#define NCFG ((int)(sizeof configs / sizeof configs[0]))

static qg_adam *make(bool adamw, qg_tensor **p, int n, const qg_adam_opts *o) {
    qg_tensor_list l = {n, names, p};
    return adamw ? qg_adamw_new(&l, o) : qg_adam_new(&l, o);
}

static void set_grad(qg_tensor *p, const qg_tensor *g) {
    if (!p->grad) p->grad = qg_tensor_clone(g);
    else qg_tensor_copy_(p->grad, g);
}

static void free_params(qg_tensor **p) {
    for (int i = 0; i < NP; i++) qg_tensor_free(p[i]), p[i] = NULL;
}

/* fixture steps from..to-1; counts parameter tensors equal to PyTorch's (*eq of *tot) */
static void run_steps(int k, qg_adam *o, qg_tensor **p, int from, int to, int *eq, int *tot) {
    for (int t = from; t < to; t++) {
        for (int i = 0; i < NP; i++)
            if (i != 2 || t >= 3) set_grad(p[i], FX("grad.%d.%s", t, pn[i]));
        CHECK(qg_adam_step(o) == QG_OK, "%s step %d: %s", configs[k].name, t, qg_last_error());
        for (int i = 0; i < NP; i++) {
            bool same = tst_bitwise_equal(p[i], FX("%s.%d.%s", configs[k].name, t, pn[i]));
            CHECK(same, "%s step %d: parameter %s (%s) differs from PyTorch", configs[k].name, t, pn[i],
                  qg_dtype_name(p[i]->dtype));
            *eq += same, ++*tot;
        }
    }
}

static void init_params(qg_tensor **p, const char *fmt_cfg, int t) {
    for (int i = 0; i < NP; i++)
        p[i] = fmt_cfg ? qg_tensor_clone(FX("%s.%d.%s", fmt_cfg, t, pn[i])) : qg_tensor_clone(FX("init.%s", pn[i]));
}

/* ------------------------------------------------------------- parity */

static void parity(void) {
    int eq = 0, tot = 0, seq = 0, stot = 0;
    for (int k = 0; k < NCFG; k++) {
        qg_tensor *p[NP];
        init_params(p, NULL, 0);
        qg_adam *o = make(configs[k].adamw, p, NP, &configs[k].o);
        CHECK(o != NULL, "%s: %s", configs[k].name, qg_last_error());
        if (!o) {
            free_params(p);
            continue;
        }
        run_steps(k, o, p, 0, 10, &eq, &tot);
        CHECK(qg_adam_param_steps(o, 0) == 10 && qg_adam_param_steps(o, 2) == 7 && qg_adam_step_count(o) == 10,
              "%s: step counts", configs[k].name);
        /* the state dict: PyTorch's keys, PyTorch's bits */
        char pre[96];
        snprintf(pre, sizeof pre, "%s.sd10.", configs[k].name);
        qg_tensor_dict *d = qg_tensor_dict_new();
        CHECK(qg_adam_state_dict(o, d, pre) == QG_OK, "state_dict: %s", qg_last_error());
        int nwant = 0;
        for (int e = 0; e < qg_tensor_dict_size(tst_fx); e++) {
            const char *key = qg_tensor_dict_name(tst_fx, e);
            if (strncmp(key, pre, strlen(pre))) continue;
            nwant++;
            bool same = tst_bitwise_equal(qg_tensor_dict_get(d, key), qg_tensor_dict_at(tst_fx, e));
            CHECK(same, "%s differs from PyTorch's state dict", key);
            seq += same, stot++;
        }
        CHECK(nwant == qg_tensor_dict_size(d), "%s: %d keys, PyTorch's has %d", configs[k].name, qg_tensor_dict_size(d),
              nwant);
        CHECK((qg_adam_max_exp_avg_sq(o, 0) != NULL) == configs[k].o.amsgrad, "%s: max_exp_avg_sq", configs[k].name);
        qg_tensor_dict_free(d);
        qg_adam_free(o);
        free_params(p);
    }
    printf("adam/adamw: %d of %d parameter tensors after a step, %d of %d state tensors bitwise equal to PyTorch\n",
           eq, tot, seq, stot);
}

/* PyTorch's state after step 5, loaded into a fresh optimizer with other settings */
static void resume_from_pytorch(void) {
    int eq = 0, tot = 0;
    for (int k = 0; k < NCFG; k++) {
        qg_tensor *p[NP];
        init_params(p, configs[k].name, 4);
        qg_adam *o = make(configs[k].adamw, p, NP, &(qg_adam_opts){.lr = 1, .amsgrad = !configs[k].o.amsgrad});
        char pre[96];
        snprintf(pre, sizeof pre, "%s.sd5.", configs[k].name);
        CHECK(qg_adam_load_state_dict(o, tst_fx, pre) == QG_OK, "%s: load PyTorch's state: %s", configs[k].name,
              qg_last_error());
        CHECK(qg_adam_get_lr(o) == configs[k].o.lr && qg_adam_opts_of(o)->amsgrad == configs[k].o.amsgrad &&
                  qg_adam_param_steps(o, 2) == 2, "%s: loaded settings", configs[k].name);
        run_steps(k, o, p, 5, 10, &eq, &tot);
        qg_adam_free(o);
        free_params(p);
    }
    printf("resumed from PyTorch's state dicts: %d of %d parameter tensors bitwise equal\n", eq, tot);
}

/* ------------------------------------------------------------- own round trip */

static void round_trip(void) {
    const int k = 7; /* adamw_wd_ams */
    int eq = 0, tot = 0;
    qg_tensor *a[NP], *b[NP];
    init_params(a, NULL, 0);
    init_params(b, NULL, 0);
    qg_adam *oa = make(true, a, NP, &configs[k].o), *ob = make(true, b, NP, &configs[k].o);
    run_steps(k, oa, a, 0, 10, &eq, &tot);
    run_steps(k, ob, b, 0, 2, &eq, &tot); /* c has no state yet */
    qg_tensor_dict *d = qg_tensor_dict_new();
    CHECK(qg_adam_state_dict(ob, d, "optimizer.") == QG_OK, "state_dict: %s", qg_last_error());
    CHECK(!qg_tensor_dict_get(d, "optimizer.state.2.exp_avg"), "no state saved for c");
    qg_clear_error();
    char path[64];
    snprintf(path, sizeof path, "/tmp/qg_test_adam_%d.safetensors", (int)getpid());
    CHECK(qg_safetensors_save(path, d) == QG_OK, "save: %s", qg_last_error());
    qg_tensor_dict *d2 = qg_safetensors_load(path);
    unlink(path);
    CHECK(d2 != NULL, "load: %s", qg_last_error());

    qg_tensor *c[NP];
    for (int i = 0; i < NP; i++) c[i] = qg_tensor_clone(b[i]);
    qg_adam *oc = make(true, c, NP, &(qg_adam_opts){.lr = 0.5, .betas = {QG_SET(0.5), QG_SET(0.5)}});
    CHECK(qg_adam_load_state_dict(oc, d2, "optimizer.") == QG_OK, "load_state_dict: %s", qg_last_error());
    CHECK(qg_adam_step_count(oc) == 2 && !qg_adam_exp_avg(oc, 2) && qg_adam_opts_of(oc)->betas[0].v == 0.9,
          "restored settings");
    run_steps(k, oc, c, 2, 10, &eq, &tot);
    for (int i = 0; i < NP; i++)
        CHECK(tst_bitwise_equal(c[i], a[i]) && tst_bitwise_equal(qg_adam_exp_avg(oc, i), qg_adam_exp_avg(oa, i)) &&
                  tst_bitwise_equal(qg_adam_max_exp_avg_sq(oc, i), qg_adam_max_exp_avg_sq(oa, i)),
              "resumed run equals the uninterrupted one: %s", pn[i]);

    /* loads that must fail and leave oc as it is */
    qg_tensor_dict *full = qg_tensor_dict_new();
    qg_adam_state_dict(oc, full, NULL);
    struct {
        const char *what, *key;
        qg_tensor *t;
    } bad[] = {
        {"exp_avg shape", "state.0.exp_avg", qg_tensor_zeros(QG_F32, 1, SHAPE(15))},
        {"exp_avg dtype", "state.3.exp_avg_sq", qg_tensor_zeros(QG_F32, 2, SHAPE(2, 3))},
        {"unknown parameter", "state.6.exp_avg", qg_tensor_zeros(QG_F32, 1, SHAPE(2))},
        {"unknown state field", "state.0.momentum_buffer", qg_tensor_zeros(QG_F32, 2, SHAPE(3, 5))},
        {"step dtype", "state.1.step", qg_tensor_full(QG_I64, 0, NULL, 3)},
        {"fractional step", "state.1.step", qg_tensor_full(QG_F32, 0, NULL, 2.5)},
        {"negative step", "state.1.step", qg_tensor_full(QG_F32, 0, NULL, -1)},
        {"parameter count", "param_groups.0.params", qg_tensor_arange(QG_I64, 0, 5, 1)},
        {"negative lr", "param_groups.0.lr", qg_tensor_full(QG_F64, 0, NULL, -1)},
        {"beta 1", "param_groups.0.betas", qg_tensor_full(QG_F64, 1, SHAPE(2), 1.0)},
        {"betas shape", "param_groups.0.betas", qg_tensor_full(QG_F64, 1, SHAPE(3), 0.5)},
        {"negative eps", "param_groups.0.eps", qg_tensor_full(QG_F64, 0, NULL, -1e-8)},
        {"Adam's state", "param_groups.0.decoupled_weight_decay", qg_tensor_full(QG_U8, 0, NULL, 0)},
        {"max_exp_avg_sq without amsgrad", "param_groups.0.amsgrad", qg_tensor_full(QG_U8, 0, NULL, 0)},
        {"second group", "param_groups.1.lr", qg_tensor_full(QG_F64, 0, NULL, 0.1)},
        {"missing exp_avg_sq", "state.0.exp_avg_sq", NULL},
        {"missing max_exp_avg_sq", "state.4.max_exp_avg_sq", NULL},
        {"missing eps", "param_groups.0.eps", NULL},
        {"missing step_count", "step_count", NULL},
    };
    qg_tensor *snap = qg_tensor_clone(qg_adam_exp_avg_sq(oc, 0));
    for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
        qg_tensor_dict *dd = qg_tensor_dict_new();
        for (int e = 0; e < qg_tensor_dict_size(full); e++)
            if (bad[j].t || strcmp(qg_tensor_dict_name(full, e), bad[j].key))
                qg_tensor_dict_put(dd, qg_tensor_dict_name(full, e), qg_tensor_clone(qg_tensor_dict_at(full, e)));
        if (bad[j].t) qg_tensor_dict_put(dd, bad[j].key, bad[j].t);
        qg_clear_error();
        CHECK(qg_adam_load_state_dict(oc, dd, NULL) != QG_OK && *qg_last_error(), "load with %s must fail",
              bad[j].what);
        printf("  (%s: %s)\n", bad[j].what, qg_last_error());
        qg_tensor_dict_free(dd);
    }
    /* into an optimizer of another kind and of fewer parameters */
    qg_adam *ow = make(false, c, NP, &configs[k].o), *o5 = make(true, c, 5, &configs[k].o);
    CHECK(qg_adam_load_state_dict(ow, full, NULL) == QG_EINVAL && strstr(qg_last_error(), "AdamW"),
          "AdamW state into Adam: %s", qg_last_error());
    CHECK(qg_adam_load_state_dict(o5, full, NULL) != QG_OK, "6-parameter state into 5: %s", qg_last_error());
    CHECK(tst_bitwise_equal(qg_adam_exp_avg_sq(oc, 0), snap) && qg_adam_get_lr(oc) == configs[k].o.lr &&
              qg_adam_step_count(oc) == 10 && qg_adam_param_steps(oc, 1) == 10 && qg_adam_opts_of(oc)->amsgrad,
          "failed loads changed nothing");
    qg_adam_free(ow), qg_adam_free(o5);
    qg_tensor_free(snap);
    qg_tensor_dict_free(full), qg_tensor_dict_free(d), qg_tensor_dict_free(d2);
    qg_adam_free(oa), qg_adam_free(ob), qg_adam_free(oc);
    free_params(a), free_params(b), free_params(c);
}

/* ------------------------------------------------------------- options and errors */

static void errors(void) {
    qg_tensor *a = qg_tensor_zeros(QG_F32, 2, SHAPE(2, 3)), *b = qg_tensor_zeros(QG_F64, 1, SHAPE(3));
    qg_tensor *i64 = qg_tensor_zeros(QG_I64, 1, SHAPE(3));
    qg_tensor *ab[2] = {a, b}, *aa[2] = {a, a}, *ai[2] = {a, i64};
    qg_tensor_list l = {2, names, ab}, ldup = {2, names, aa}, lint = {2, names, ai}, lempty = {0, names, ab};
    const struct {
        const char *what, *msg;
        const qg_tensor_list *l;
        qg_adam_opts o;
        qg_status st;
    } bad[] = {
        {"negative lr", "learning rate: -0.1", &l, {.lr = -0.1}, QG_EINVAL},
        {"nan lr", "learning rate", &l, {.lr = NAN}, QG_EINVAL},
        {"beta1 1", "index 0: 1", &l, {.lr = 0.1, .betas = {QG_SET(1)}}, QG_EINVAL},
        {"beta2 1", "index 1: 1", &l, {.lr = 0.1, .betas = {{0, false}, QG_SET(1)}}, QG_EINVAL},
        {"negative beta", "index 0: -0.1", &l, {.lr = 0.1, .betas = {QG_SET(-0.1)}}, QG_EINVAL},
        {"negative eps", "epsilon value: -1e-08", &l, {.lr = 0.1, .eps = QG_SET(-1e-8)}, QG_EINVAL},
        {"negative weight_decay", "weight_decay value: -0.01", &l, {.lr = 0.1, .weight_decay = QG_SET(-0.01)},
         QG_EINVAL},
        {"duplicate parameter", "twice", &ldup, {.lr = 0.1}, QG_EINVAL},
        {"integer parameter", "i64", &lint, {.lr = 0.1}, QG_EDTYPE},
        {"empty list", "empty", &lempty, {.lr = 0.1}, QG_EINVAL},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        for (int w = 0; w < 2; w++) {
            qg_clear_error();
            qg_adam *o = w ? qg_adamw_new(bad[k].l, &bad[k].o) : qg_adam_new(bad[k].l, &bad[k].o);
            CHECK(!o && qg_last_status() == bad[k].st && strstr(qg_last_error(), bad[k].msg) &&
                      (bad[k].st != QG_EINVAL || bad[k].l != &l || strstr(qg_last_error(), w ? "AdamW" : "Adam")),
                  "%s with %s must fail naming it (%s)", w ? "adamw_new" : "adam_new", bad[k].what, qg_last_error());
            qg_adam_free(o);
        }
    CHECK(!qg_adam_new(NULL, &(qg_adam_opts){.lr = 0.1}) && strstr(qg_last_error(), "NULL"), "NULL list");
    CHECK(!qg_adamw_new(&l, NULL) && strstr(qg_last_error(), "lr"), "NULL options: %s", qg_last_error());

    /* defaults, and a legal 0 that overrides one */
    qg_adam *o = qg_adam_new(&l, &(qg_adam_opts){.lr = 1e-3});
    qg_adam *w = qg_adamw_new(&l, &(qg_adam_opts){.lr = 1e-3});
    qg_adam *w0 = qg_adamw_new(&l, &(qg_adam_opts){.lr = 0, .weight_decay = QG_SET(0), .eps = QG_SET(0)});
    const qg_adam_opts *oo = qg_adam_opts_of(o), *ow = qg_adam_opts_of(w), *ow0 = qg_adam_opts_of(w0);
    CHECK(oo && oo->betas[0].v == 0.9 && oo->betas[1].v == 0.999 && oo->eps.v == 1e-8 && oo->weight_decay.v == 0 &&
              oo->eps.set && !qg_adam_is_adamw(o), "Adam's defaults");
    CHECK(ow && ow->weight_decay.v == 1e-2 && qg_adam_is_adamw(w), "AdamW's weight_decay default is 1e-2");
    CHECK(ow0 && ow0->weight_decay.v == 0 && ow0->eps.v == 0 && qg_adam_get_lr(w0) == 0, "QG_SET(0) gives 0");

    /* grads: wrong shape or dtype fail and change nothing; no grad is skipped */
    set_grad(a, FX("grad.0.w")); /* (3, 5) for a (2, 3) parameter */
    b->grad = qg_tensor_ones(QG_F64, 1, SHAPE(3));
    qg_tensor *b0 = qg_tensor_clone(b);
    qg_clear_error();
    CHECK(qg_adam_step(o) == QG_ESHAPE && strstr(qg_last_error(), "grad"), "grad shape: %s", qg_last_error());
    CHECK(tst_bitwise_equal(b, b0) && !qg_adam_exp_avg(o, 1) && qg_adam_step_count(o) == 0,
          "a failed step changes nothing");
    qg_tensor_free(a->grad);
    a->grad = qg_tensor_zeros(QG_F64, 2, SHAPE(2, 3));
    CHECK(qg_adam_step(o) == QG_ESHAPE, "grad dtype: %s", qg_last_error());
    qg_tensor_free(a->grad);
    a->grad = NULL;
    CHECK(qg_adam_step(o) == QG_OK && !qg_adam_exp_avg(o, 0) && qg_adam_exp_avg(o, 1) &&
              qg_adam_param_steps(o, 0) == 0 && qg_adam_param_steps(o, 1) == 1,
          "parameter without grad skipped: %s", qg_last_error());
    /* Adam's first step moves each element by about lr: p = -1e-3 / (1 + 1e-8) */
    CHECK(tst_close(qg_tensor_get(b, (int64_t[]){0}), -1e-3, 1e-10, 0), "b stepped");
    qg_adam_zero_grad(o);
    CHECK(qg_tensor_get(b->grad, (int64_t[]){2}) == 0, "zero_grad zeroes in place");
    CHECK(qg_adam_set_lr(o, -1) == QG_EINVAL && qg_adam_get_lr(o) == 1e-3, "set_lr rejects a negative lr");
    CHECK(qg_adam_set_lr(o, 0.5) == QG_OK && qg_adam_get_lr(o) == 0.5, "set_lr");
    CHECK(qg_adam_step(NULL) == QG_EINVAL && isnan(qg_adam_get_lr(NULL)) && !qg_adam_exp_avg(o, 7),
          "NULL, out of range");
    CHECK(qg_adam_state_dict(NULL, NULL, NULL) == QG_EINVAL && qg_adam_load_state_dict(o, NULL, NULL) == QG_EINVAL,
          "state dict NULL");
    qg_adam_free(o), qg_adam_free(w), qg_adam_free(w0);
    qg_tensor_free(a), qg_tensor_free(b), qg_tensor_free(b0), qg_tensor_free(i64);
}

/* ------------------------------------------------------------- threads, memory */

static void threads_and_memory(void) {
    qg_tensor *res[2];
    for (int r = 0; r < 2; r++) {
        qg_set_num_threads(r ? 4 : 1);
        qg_rng g;
        qg_rng_init(&g, 8);
        qg_tensor *p = qg_tensor_randn(&g, QG_F32, 2, SHAPE(300, 500));
        qg_tensor *gr = qg_tensor_randn(&g, QG_F32, 2, SHAPE(300, 500));
        qg_adam *o = make(true, &p, 1, &(qg_adam_opts){.lr = 1e-2, .amsgrad = true});
        set_grad(p, gr);
        qg_adam_step(o);
        int64_t live = qg_live_allocations();
        for (int t = 0; t < 5; t++) qg_adam_step(o);
        CHECK(qg_live_allocations() == live, "steps after the first allocate nothing");
        res[r] = qg_tensor_clone(p);
        qg_adam_free(o);
        qg_tensor_free(p), qg_tensor_free(gr);
    }
    qg_set_num_threads(0);
    CHECK(tst_bitwise_equal(res[0], res[1]), "same result with 1 and 4 threads");
    qg_tensor_free(res[0]), qg_tensor_free(res[1]);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "tests/fixtures/adam.safetensors";
    tst_fx = qg_safetensors_load(path);
    if (!tst_fx) {
        printf("cannot load %s: %s\n", path, qg_last_error());
        return 1;
    }
    int64_t live0 = qg_live_allocations();
    parity();
    resume_from_pytorch();
    round_trip();
    errors();
    threads_and_memory();
    CHECK(qg_live_allocations() == live0, "no leaks (%lld -> %lld live blocks)", (long long)live0,
          (long long)qg_live_allocations());
    qg_tensor_dict_free(tst_fx);
    return test_summary("adam");
}
