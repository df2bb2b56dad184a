/* PyTorch parity of every QAT module (fixtures: tools/gen_fixtures.py qat_modules,
 * qat_cnn). Each module is made by from_float from the float module PyTorch started
 * with, put in its mode (train, eval, or train with BN frozen), and run 3 forward +
 * backward steps; outputs and input gradients of every step, then the whole state
 * dict (names included: scale, zero_point, observer min/max, BN running stats) and
 * the parameter gradients are judged by the rule of tests/parity.h, against the
 * fixture's float64 reference (<c>.ref.*: the module in float64 with its fake-quant
 * modules in float32, as PyTorch's kernels take float32 only). The bias gradient of a Bn variant in
 * training is 0 in exact arithmetic (BN removes the bias), so it is checked to be
 * rounding noise instead. Then the small CNN: fused, prepared with fbgemm and trained
 * 5 SGD steps from PyTorch's float weights: each step's loss, the fused blocks' fake-quantized outputs (integer levels equal but
 * for a few flips, parity_judge_grid) and their scales, and every final parameter and
 * buffer.
 * usage: test_parity_qat_modules qat_modules.safetensors qat_cnn.safetensors qat_cnn_float.safetensors */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity.h"
#include "qat_cnn.h"
#include "qgrad/optim.h"
#include "qgrad/qat.h"

#define passed parity.passed
#define failed parity.failed
static void expect(const char *c, const char *what, const qg_tensor *ours, const qg_tensor *want, const qg_tensor *ref) {
    char label[700];
    snprintf(label, sizeof label, "%s %s", c, what);
    parity_judge(label, ours, want, ref);
}


/* float modules as the generator builds them */
static qg_module *lin(void) { return qg_nn_linear_new(6, 5, NULL, NULL); }
static qg_module *c2(bool bias) { return qg_nn_conv2d_new(3, 4, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1), .no_bias = !bias}, NULL); }
static qg_module *c1(bool bias) { return qg_nn_conv1d_new(3, 4, 3, &(qg_conv_opts){.padding = QG_PAIR(1), .no_bias = !bias}, NULL); }
static qg_module *fused(const char *t, qg_module *a, qg_module *b, qg_module *c) {
    /* fuse through the public API: a Sequential of the parts, fused in place */
    qg_module *s = qg_sequential_new();
    qg_sequential_append(s, a), qg_sequential_append(s, b);
    if (c) qg_sequential_append(s, c);
    const char *g3[] = {"0", "1", "2"};
    const char *const *groups[] = {g3};
    int n = c ? 3 : 2;
    if (qg_fuse_modules_qat(s, 1, groups, &n)) {
        printf("FAIL fuse %s: %s\n", t, qg_last_error());
        return s;
    }
    qg_module *f = qg_module_replace(s, "0", qg_nn_identity_new());
    qg_module_free(s);
    if (!qg_module_is(f, t)) printf("FAIL fused type %s, expected %s\n", f->type->name, t);
    return f;
}

typedef struct {
    const char *name, *qconfig;
    int kind; /* builder below */
    bool dynamic;
} qcase;

enum { LIN, LIN_RELU, LIN_BN, CONV2D, CONV1D, CBN2D, CBN2D_BIAS, CBNR2D, CBNR2D_BIAS, CR2D, CBN1D, CBNR1D_BIAS, CR1D };

static qg_module *build(int kind) {
    switch (kind) {
    case LIN: return lin();
    case LIN_RELU: return fused("intrinsic.LinearReLU", lin(), qg_nn_relu_new(), NULL);
    case LIN_BN: return fused("intrinsic.LinearBn1d", lin(), qg_nn_batchnorm1d_new(5, NULL), NULL);
    case CONV2D: return c2(true);
    case CONV1D: return c1(true);
    case CBN2D: return fused("intrinsic.ConvBn2d", c2(false), qg_nn_batchnorm2d_new(4, NULL), NULL);
    case CBN2D_BIAS: return fused("intrinsic.ConvBn2d", c2(true), qg_nn_batchnorm2d_new(4, NULL), NULL);
    case CBNR2D: return fused("intrinsic.ConvBnReLU2d", c2(false), qg_nn_batchnorm2d_new(4, NULL), qg_nn_relu_new());
    case CBNR2D_BIAS: return fused("intrinsic.ConvBnReLU2d", c2(true), qg_nn_batchnorm2d_new(4, NULL), qg_nn_relu_new());
    case CR2D: return fused("intrinsic.ConvReLU2d", c2(true), qg_nn_relu_new(), NULL);
    case CBN1D: return fused("intrinsic.ConvBn1d", c1(false), qg_nn_batchnorm1d_new(4, NULL), NULL);
    case CBNR1D_BIAS: return fused("intrinsic.ConvBnReLU1d", c1(true), qg_nn_batchnorm1d_new(4, NULL), qg_nn_relu_new());
    case CR1D: return fused("intrinsic.ConvReLU1d", c1(true), qg_nn_relu_new(), NULL);
    }
    return NULL;
}

static const qcase cases[] = {
    {"linear", "fbgemm", LIN, false},
    {"linear_eval", "fbgemm", LIN, false},
    {"linear_default", "default", LIN, false},
    {"linear_qnnpack", "qnnpack", LIN, false},
    {"dynamic_linear", "dynamic", LIN, true},
    {"conv2d", "fbgemm", CONV2D, false},
    {"conv1d", "fbgemm", CONV1D, false},
    {"linear_relu", "fbgemm", LIN_RELU, false},
    {"linear_bn1d", "fbgemm", LIN_BN, false},
    {"linear_bn1d_frozen", "fbgemm", LIN_BN, false},
    {"conv_bn2d", "fbgemm", CBN2D, false},
    {"conv_bn2d_bias", "fbgemm", CBN2D_BIAS, false},
    {"conv_bn2d_frozen", "fbgemm", CBN2D, false},
    {"conv_bn2d_eval", "fbgemm", CBN2D, false},
    {"conv_bn_relu2d", "fbgemm", CBNR2D, false},
    {"conv_bn_relu2d_frozen", "fbgemm", CBNR2D, false},
    {"conv_bn_relu2d_qnnpack", "qnnpack", CBNR2D_BIAS, false},
    {"conv_relu2d", "fbgemm", CR2D, false},
    {"conv_bn1d", "fbgemm", CBN1D, false},
    {"conv_bn_relu1d", "fbgemm", CBNR1D_BIAS, false},
    {"conv_relu1d", "fbgemm", CR1D, false},
};

/* the entries of the fixture named "<prefix>.<key>" as a dict keyed <key> (clones) */
static qg_tensor_dict *sub_dict(const char *prefix) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    size_t n = strlen(prefix);
    for (int i = 0; i < qg_tensor_dict_size(parity_fixture); i++) {
        const char *k = qg_tensor_dict_name(parity_fixture, i);
        if (!strncmp(k, prefix, n) && k[n] == '.') qg_tensor_dict_put(d, k + n + 1, qg_tensor_clone(qg_tensor_dict_at(parity_fixture, i)));
    }
    return d;
}

/* The case's QAT module made by from_float from the generator's float module, in its
 * mode. */
static qg_module *make(const qcase *c) {
    char key[600];
    qg_module *f = build(c->kind), *q = NULL;
    snprintf(key, sizeof key, "%s.float", c->name);
    qg_tensor_dict *fs = sub_dict(key);
    qg_qconfig qc;
    qg_qconfig_preset(c->qconfig, &qc);
    if (qg_module_load_state_dict(f, fs, true)) printf("FAIL %s: float state: %s\n", c->name, qg_last_error());
    else if (!(q = c->dynamic ? qg_qat_dynamic_linear_from_float(f, &qc) : qg_qat_from_float(f, &qc)))
        printf("FAIL %s: from_float: %s\n", c->name, qg_last_error());
    qg_tensor_dict_free(fs);
    if (!q) {
        failed++;
        qg_module_free(f);
        return NULL;
    }
    char mkey[96];
    snprintf(mkey, sizeof mkey, "mode.%s", c->name);
    const char *mode = qg_tensor_dict_meta(parity_fixture, mkey);
    if (mode && !strcmp(mode, "eval")) qg_module_eval(q);
    if (mode && !strcmp(mode, "frozen")) qg_freeze_bn_stats(q);
    return q;
}

static void run_case(const qcase *c) {
    int f0 = failed;
    char key[600];
    qg_module *q = make(c);
    if (!q) return;
    for (int step = 0; step < 3; step++) {
        char w[8];
        qg_tensor *x = qg_tensor_clone(PFX("%s.x%d", c->name, step));
        qg_tensor_set_requires_grad(x, true);
        qg_tensor *y = qg_module_forward(q, x);
        if (!y || qg_backward(y, PFX("%s.g%d", c->name, step))) {
            printf("FAIL %s step %d: %s\n", c->name, step, qg_last_error());
            failed++;
            qg_tensor_free(x);
            break;
        }
        snprintf(w, sizeof w, "y%d", step);
        expect(c->name, w, y, PFX("%s.%s", c->name, w), PFX("%s.ref.%s", c->name, w));
        snprintf(w, sizeof w, "gx%d", step);
        expect(c->name, w, x->grad, PFX("%s.%s", c->name, w), PFX("%s.ref.%s", c->name, w));
        qg_tensor_free(x);
        qg_tape_reset(NULL);
    }
    /* the state dict: same names in the same order, same values */
    qg_tensor_dict *sd = qg_module_state_dict(q);
    snprintf(key, sizeof key, "%s.state", c->name);
    qg_tensor_dict *want = sub_dict(key);
    if (qg_tensor_dict_size(sd) != qg_tensor_dict_size(want)) {
        printf("FAIL %s: state dict has %d entries, PyTorch's %d\n", c->name, qg_tensor_dict_size(sd), qg_tensor_dict_size(want));
        for (int i = 0; i < qg_tensor_dict_size(sd); i++) printf("   ours: %s\n", qg_tensor_dict_name(sd, i));
        failed++;
    }
    for (int i = 0; i < qg_tensor_dict_size(want); i++) {
        const char *k = qg_tensor_dict_name(want, i);
        if (i < qg_tensor_dict_size(sd) && strcmp(qg_tensor_dict_name(sd, i), k))
            printf("FAIL %s: state entry %d is %s, PyTorch's %s\n", c->name, i, qg_tensor_dict_name(sd, i), k), failed++;
        qg_tensor *ours = qg_tensor_dict_get(sd, k);
        if (!ours) qg_clear_error();
        expect(c->name, k, ours, qg_tensor_dict_at(want, i), PFX("%s.ref.state.%s", c->name, k));
    }
    qg_tensor_dict_free(sd), qg_tensor_dict_free(want);
    qg_tensor_list *ps = qg_module_parameters(q);
    for (int i = 0; i < ps->n; i++) {
        snprintf(key, sizeof key, "grad.%s", ps->names[i]);
        qg_tensor *w = PFX("%s.%s", c->name, key);
        bool bn_train = strstr(c->name, "bn") && !strstr(c->name, "frozen") && !strstr(c->name, "eval");
        if (w && bn_train && !strcmp(ps->names[i], "bias")) {
            /* BN in training removes a bias before it: its gradient is 0 up to rounding,
             * on both sides, so check it is noise next to the weight gradient */
            double gmax = 0, wmax = 0;
            qg_tensor *gb = ps->tensors[i]->grad, *gw = qg_module_param(q, "weight")->grad;
            for (int64_t k = 0; k < qg_tensor_numel(gb); k++) gmax = fmax(gmax, fabs(((float *)qg_tensor_data(gb))[k]));
            for (int64_t k = 0; k < qg_tensor_numel(gw); k++) wmax = fmax(wmax, fabs(((float *)qg_tensor_data(gw))[k]));
            if (gmax <= 1e-5 * wmax) passed++;
            else failed++, printf("FAIL %s grad.bias %.3g is not noise next to grad.weight %.3g\n", c->name, gmax, wmax);
        } else if (w) {
            expect(c->name, key, ps->tensors[i]->grad, w, PFX("%s.ref.%s", c->name, key));
        }
    }
    qg_tensor_list_free(ps);
    qg_module_free(q);
    printf("%s %s\n", failed == f0 ? "ok" : "FAIL", c->name);
}

/* ------------------------------------------------------------- small CNN, 5 steps */

/* The small CNN (tests/qat_cnn.h) with PyTorch's float weights, fused and prepared as
 * the generator did. */
static qg_module *qat_cnn_prepared(const char *float_path) {
    qg_module *m = qat_cnn_float();
    if (qg_module_load(m, float_path, true) || qat_cnn_fuse_prepare(m)) {
        printf("FAIL qat_cnn setup: %s\n", qg_last_error());
        failed++;
        qg_module_free(m);
        return NULL;
    }
    return m;
}

/* The Sequential's forward, one child at a time: the fused blocks' outputs (after
 * their activation fake-quant) land in acts[0] (c1) and acts[1] (l1). */
static const char *const cnn_children[] = {"quant", "c1", "b1", "relu1", "pool", "flatten", "l1", "relu2", "l2", "dequant"};
static qg_tensor *cnn_forward(qg_module *m, qg_tensor *x, qg_tensor **acts) {
    for (size_t i = 0; i < sizeof cnn_children / sizeof *cnn_children; i++) {
        x = qg_module_forward(qg_module_child(m, cnn_children[i]), x);
        if (!strcmp(cnn_children[i], "c1")) acts[0] = x;
        if (!strcmp(cnn_children[i], "l1")) acts[1] = x;
    }
    return x;
}

static qg_tensor *act_scale(qg_module *m, const char *blk) {
    char path[64];
    snprintf(path, sizeof path, "%s.activation_post_process", blk);
    return qg_module_buffer(qg_module_get(m, path), "scale");
}

static void qat_cnn(const char *io_path, const char *float_path) {
    qg_tensor_dict *io = qg_safetensors_load(io_path);
    parity_fixture = io; /* PFX reads this file now */
    qg_module *m = io ? qat_cnn_prepared(float_path) : NULL;
    if (!m) {
        if (!io) printf("FAIL qat_cnn: %s\n", qg_last_error()), failed++;
        qg_tensor_dict_free(io);
        return;
    }
    qg_tensor_list *ps = qg_module_parameters(m);
    qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    int f0 = failed;
    int64_t flips = 0, elems = 0;
    for (int step = 0; step < 5 && opt; step++) {
        char k[32];
        qg_tensor *x = PFX("x%d", step), *t = PFX("t%d", step), *acts[2] = {0};
        qg_tensor *loss = qg_cross_entropy(cnn_forward(m, x, acts), t, QG_REDUCTION_MEAN);
        qg_sgd_zero_grad(opt);
        if (!loss || qg_backward(loss, NULL) || qg_sgd_step(opt)) {
            printf("FAIL qat_cnn step %d: %s\n", step, qg_last_error());
            failed++;
            break;
        }
        snprintf(k, sizeof k, "loss%d", step);
        expect("qat_cnn", k, loss, PFX("%s", k), PFX("ref.%s", k));
        for (int b = 0; b < 2; b++) {
            const char *blk = b ? "l1" : "c1";
            char sk[48];
            snprintf(k, sizeof k, "act.%s%d", blk, step);
            snprintf(sk, sizeof sk, "%s.scale", k);
            /* the scale by the float rule, then the integer levels: equal but for flips */
            qg_tensor *want_s = PFX("%s", sk);
            expect("qat_cnn", sk, act_scale(m, blk), want_s, PFX("ref.%s", sk));
            int64_t nf = 0;
            parity_judge_grid(k, acts[b], qg_tensor_item(act_scale(m, blk)), PFX("%s", k), qg_tensor_item(want_s), &nf);
            flips += nf, elems += qg_tensor_numel(acts[b] ? acts[b] : want_s);
        }
        qg_tape_reset(NULL);
    }
    qg_tensor_dict *sd = qg_module_state_dict(m);
    int n = 0;
    for (int i = 0; i < qg_tensor_dict_size(io); i++) {
        const char *k = qg_tensor_dict_name(io, i);
        if (strncmp(k, "state.", 6)) continue;
        n++;
        qg_tensor *ours = qg_tensor_dict_get(sd, k + 6);
        if (!ours) qg_clear_error();
        expect("qat_cnn", k + 6, ours, qg_tensor_dict_at(io, i), PFX("ref.%s", k));
    }
    if (n != qg_tensor_dict_size(sd)) printf("FAIL qat_cnn: %d state entries, PyTorch %d\n", qg_tensor_dict_size(sd), n), failed++;
    printf("%s qat_cnn: 5 SGD steps, %d state tensors compared; %lld of %lld fake-quantized activations flipped\n",
           failed == f0 ? "ok" : "FAIL", n, (long long)flips, (long long)elems);
    qg_tensor_dict_free(sd);
    qg_sgd_free(opt);
    qg_tensor_list_free(ps);
    qg_module_free(m);
    qg_tensor_dict_free(io);
    qg_tape_reset(NULL);
}

/* parity_judge_grid itself: a level flipped is counted and allowed, a value off the
 * grid or two levels away fails, and so do too many flips. */
static void grid_selftest(void) {
    float v[200];
    for (int i = 0; i < 200; i++) v[i] = (float)((i % 37) - 18) * 0.25f;
    qg_tensor *want = qg_tensor_from_data(QG_F32, 1, (int64_t[]){200}, v);
    int64_t flips;
    int f0 = failed, p0 = passed;
    bool ok = true;
    parity.quiet = true;
    v[3] += 0.25f; /* one flip */
    qg_tensor *a = qg_tensor_from_data(QG_F32, 1, (int64_t[]){200}, v);
    ok &= parity_judge_grid("grid_selftest one flip", a, 0.25, want, 0.25, &flips) && flips == 1;
    qg_tensor_free(a);
    const float bad[3] = {0.125f, 0.5f, 0}; /* off the grid; two levels; three flips (> 1% of 200) */
    for (int k = 0; k < 3; k++) {
        v[3] = (float)((3 % 37) - 18) * 0.25f + (k < 2 ? bad[k] : 0.25f);
        if (k == 2) v[4] += 0.25f, v[5] -= 0.25f;
        a = qg_tensor_from_data(QG_F32, 1, (int64_t[]){200}, v);
        ok &= !parity_judge_grid("grid_selftest", a, 0.25, want, 0.25, &flips);
        qg_tensor_free(a);
    }
    qg_tensor_free(want);
    failed = f0, passed = p0, parity.quiet = false; /* the expected failures above do not count */
    if (ok) passed++, printf("ok parity_judge_grid counts a flip and rejects off-grid values, 2-level jumps, too many flips\n");
    else failed++, printf("FAIL parity_judge_grid self-test\n");
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s qat_modules.safetensors qat_cnn.safetensors qat_cnn_float.safetensors\n", argv[0]);
        return 2;
    }
    qg_tensor_dict *d = qg_safetensors_load(argv[1]);
    if (!d) {
        printf("FAIL %s\n", qg_last_error());
        return 1;
    }
    parity_fixture = d;
    grid_selftest();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    qg_tensor_dict_free(d);
    qat_cnn(argv[2], argv[3]);
    parity_report();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
