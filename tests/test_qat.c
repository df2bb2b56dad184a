/* The QAT flow's rules: from_float/to_float round trips (BN folding), frozen BN
 * surviving train(), model-wide toggles, qconfig presets, and every error path
 * (wrong type, missing qconfig, dynamic with a non-memoryless observer, non-finite
 * input, bad fuse groups, preparing twice). */
#include <string.h>

#include "qgrad/qat.h"
#include "test_util.h"

static qg_qconfig preset(const char *name) {
    qg_qconfig q;
    qg_qconfig_preset(name, &q);
    return q;
}

static qg_module *fused(const char *const *paths, int n, qg_module *a, qg_module *b, qg_module *c) {
    qg_module *s = qg_sequential_new();
    qg_sequential_append(s, a), qg_sequential_append(s, b);
    if (c) qg_sequential_append(s, c);
    const char *const *groups[] = {paths};
    CHECK(qg_fuse_modules_qat(s, 1, groups, &n) == QG_OK, "fuse: %s", qg_last_error());
    qg_module *f = qg_module_replace(s, "0", qg_nn_identity_new());
    qg_module_free(s);
    return f;
}

/* to_float of a ConvBnReLU2d folds BN: with fake-quant off and BN frozen, the QAT
 * module and its float version compute the same function */
static void test_round_trip(void) {
    qg_qconfig qc = preset("fbgemm");
    const char *g[] = {"0", "1", "2"};
    qg_module *conv = qg_nn_conv2d_new(3, 4, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1)}, NULL);
    qg_module *bn = qg_nn_batchnorm2d_new(4, NULL);
    qg_tensor_uniform_(qg_module_buffer(bn, "running_var"), NULL, 0.5, 2);
    qg_tensor_normal_(qg_module_buffer(bn, "running_mean"), NULL, 0, 0.3);
    qg_tensor_uniform_(qg_module_param(bn, "weight"), NULL, 0.5, 1.5);
    qg_module *f = fused(g, 3, conv, bn, qg_nn_relu_new());
    CHECK(qg_module_is(f, "intrinsic.ConvBnReLU2d"), "fused type %s", f->type->name);
    qg_module *q = qg_qat_from_float(f, &qc);
    CHECK(q && qg_module_is(q, "intrinsic.qat.ConvBnReLU2d"), "from_float: %s", qg_last_error());
    qg_freeze_bn_stats(q);
    qg_enable_fake_quant(q, false);
    qg_module *back = qg_qat_to_float(q);
    CHECK(back && qg_module_is(back, "intrinsic.ConvReLU2d"), "to_float gives ConvReLU2d: %s", back ? back->type->name : qg_last_error());
    qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 4, SHAPE(2, 3, 5, 5));
    qg_tensor *y1 = qg_module_forward(q, x), *y2 = qg_module_forward(back, x);
    double diff = tst_compare(y1, y2, TST_EXACT).max_abs;
    CHECK(y1 && y2 && diff < 1e-5, "folded float module computes the same: diff %g", diff);
    /* train() keeps a frozen BN frozen; update_bn_stats unfreezes */
    qg_module_train(q, true);
    CHECK(!qg_module_child(q, "bn")->training, "frozen BN stays in eval through train()");
    qg_update_bn_stats(q);
    CHECK(qg_module_child(q, "bn")->training, "update_bn_stats puts BN back in training");
    /* Linear round trip: to_float then from_float keeps the weights */
    qg_module *l = qg_nn_linear_new(4, 3, NULL, NULL);
    qg_tensor *w0 = qg_tensor_clone(qg_module_param(l, "weight"));
    qg_module *ql = qg_qat_from_float(l, &qc);
    qg_module *fl = qg_qat_to_float(ql);
    CHECK(fl && qg_module_is(fl, "Linear") && tst_compare(qg_module_param(fl, "weight"), w0, TST_EXACT).ok,
          "Linear round trip exact");
    qg_tensor_free(w0), qg_tensor_free(x);
    qg_module_free(q), qg_module_free(back), qg_module_free(ql), qg_module_free(fl);
    qg_tape_reset(NULL);
}

static void test_errors(void) {
    qg_qconfig qc = preset("fbgemm"), dyn = preset("dynamic");
    qg_module *relu = qg_nn_relu_new();
    CHECK(!qg_qat_from_float(relu, &qc) && strstr(qg_last_error(), "only works for"), "wrong type: %s", qg_last_error());
    qg_module *l = qg_nn_linear_new(3, 2, NULL, NULL);
    CHECK(!qg_qat_from_float(l, NULL) && strstr(qg_last_error(), "qconfig must be provided"), "missing qconfig: %s", qg_last_error());
    CHECK(!qg_qat_dynamic_linear_from_float(l, &qc) && strstr(qg_last_error(), "memoryless"), "dynamic needs memoryless: %s",
          qg_last_error());
    qg_module *d = qg_qat_dynamic_linear_from_float(l, &dyn);
    CHECK(d && qg_module_is(d, "qat.dynamic.Linear"), "dynamic Linear with the dynamic qconfig: %s", qg_last_error());
    qg_qconfig bad;
    CHECK(qg_qconfig_preset("fbgemmm", &bad) == QG_EINVAL && strstr(qg_last_error(), "known:"), "unknown preset");
    CHECK(qg_qconfig_nbit(1, 8, &bad) == QG_EINVAL, "1-bit rejected");
    qg_qconfig q4;
    CHECK(qg_qconfig_nbit(4, 4, &q4) == QG_OK && q4.weight.quant_min == -8 && q4.weight.quant_max == 7 &&
              q4.activation.quant_max == 15, "4-bit qconfig ranges");

    /* non-finite input reaching an observer names the module path and the step */
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "quant", qg_quant_stub_new());
    qg_sequential_add(m, "fc", qg_nn_linear_new(3, 2, NULL, NULL));
    CHECK(qg_prepare_qat(m, &qc) == QG_OK, "prepare: %s", qg_last_error());
    qg_tensor *x = qg_tensor_ones(QG_F32, 2, SHAPE(2, 3));
    CHECK(qg_module_forward(m, x) != NULL, "finite input passes");
    qg_tensor_set(x, SHAPE(1, 2), NAN);
    qg_tensor *y = qg_module_forward(m, x);
    CHECK(!y && strstr(qg_last_error(), "quant.activation_post_process") && strstr(qg_last_error(), "step 2"),
          "non-finite input: %s", qg_last_error());
    /* the default (non-fused) FakeQuantize path reports the same way */
    qg_qconfig dq = preset("default");
    qg_module *m2 = qg_sequential_new();
    qg_sequential_add(m2, "quant", qg_quant_stub_new());
    qg_prepare_qat(m2, &dq);
    qg_tensor_set(x, SHAPE(1, 2), INFINITY);
    CHECK(!qg_module_forward(m2, x) && strstr(qg_last_error(), "quant.activation_post_process") &&
              strstr(qg_last_error(), "non-finite"), "FakeQuantize non-finite: %s", qg_last_error());
    /* preparing twice */
    CHECK(qg_prepare_qat(m, &qc) == QG_EINVAL && strstr(qg_last_error(), "already a QAT module"), "prepare twice: %s",
          qg_last_error());
    /* fuse errors */
    qg_module *s = qg_sequential_new();
    qg_sequential_append(s, qg_nn_conv2d_new(1, 4, 3, 3, NULL, NULL));
    qg_sequential_append(s, qg_nn_batchnorm2d_new(5, NULL));
    qg_sequential_append(s, qg_nn_linear_new(2, 2, NULL, NULL));
    const char *g1[] = {"0", "1"}, *g2[] = {"0", "2"}, *g3[] = {"0", "9"};
    int two = 2;
    CHECK(qg_fuse_modules_qat(s, 1, (const char *const *[]){g1}, &two) == QG_ESHAPE && strstr(qg_last_error(), "num_features"),
          "channel mismatch: %s", qg_last_error());
    CHECK(qg_fuse_modules_qat(s, 1, (const char *const *[]){g2}, &two) == QG_EINVAL && strstr(qg_last_error(), "cannot fuse"),
          "unknown pattern: %s", qg_last_error());
    CHECK(qg_fuse_modules_qat(s, 1, (const char *const *[]){g3}, &two) == QG_EINVAL && strstr(qg_last_error(), "no child"),
          "missing module: %s", qg_last_error());
    CHECK(qg_module_is(qg_module_get(s, "0"), "Conv2d"), "failed fuse leaves the model as it was");
    qg_tensor_free(x);
    qg_module_free(m), qg_module_free(m2), qg_module_free(s), qg_module_free(relu), qg_module_free(d); /* l was consumed by from_float */
    qg_tape_reset(NULL);
}

static void count_fq(qg_module *m, const char *path, void *ctx) {
    (void)path;
    qg_tensor *t = qg_module_buffer(m, "fake_quant_enabled");
    if (t && qg_tensor_item(t) == 0) ++*(int *)ctx;
}

static void test_toggles_and_prepare(void) {
    qg_qconfig qc = preset("fbgemm");
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "quant", qg_quant_stub_new());
    qg_sequential_add(m, "fc1", qg_nn_linear_new(4, 4, NULL, NULL));
    qg_sequential_add(m, "relu", qg_nn_relu_new());
    qg_sequential_add(m, "fc2", qg_nn_linear_new(4, 2, NULL, NULL));
    const char *g[] = {"fc1", "relu"};
    int two = 2;
    CHECK(qg_fuse_modules_qat(m, 1, (const char *const *[]){g}, &two) == QG_OK, "fuse linear+relu");
    CHECK(qg_prepare_qat(m, &qc) == QG_OK, "prepare: %s", qg_last_error());
    CHECK(qg_module_is(qg_module_get(m, "fc1"), "intrinsic.qat.LinearReLU") && qg_module_is(qg_module_get(m, "relu"), "Identity"),
          "fused and swapped");
    CHECK(qg_module_get(m, "fc1.activation_post_process") && qg_module_get(m, "quant.activation_post_process") &&
              !qg_module_child(qg_module_get(m, "relu"), "activation_post_process"),
          "output fake-quant where PyTorch puts it");
    qg_enable_fake_quant(m, false);
    int off = 0;
    qg_module_apply(m, count_fq, &off);
    CHECK(off == 5, "disable_fake_quant reaches all 5 fake-quant modules (got %d)", off);
    qg_enable_fake_quant(m, true);
    qg_enable_observer(m, false);
    qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 2, SHAPE(3, 4));
    qg_module_forward(m, x);
    qg_tensor *mn = qg_module_buffer(qg_module_get(m, "quant.activation_post_process.activation_post_process"), "min_val");
    CHECK(mn && isinf(qg_tensor_item(mn)), "observer off: min_val untouched");
    qg_enable_observer(m, true);
    qg_module_forward(m, x);
    CHECK(isfinite(qg_tensor_item(mn)), "observer on: min_val observed");
    qg_tensor_free(x);
    qg_module_free(m);
    qg_tape_reset(NULL);
}

/* every QAT type from PyTorch-style constructor arguments; forward and backward run */
static void test_constructors(void) {
    qg_qconfig qc = preset("fbgemm"), dyn = preset("dynamic");
    const char *types[] = {"qat.Linear", "qat.Conv1d", "qat.Conv2d", "qat.dynamic.Linear", "intrinsic.qat.LinearReLU",
                           "intrinsic.qat.LinearBn1d", "intrinsic.qat.ConvBn1d", "intrinsic.qat.ConvBn2d",
                           "intrinsic.qat.ConvBnReLU1d", "intrinsic.qat.ConvBnReLU2d", "intrinsic.qat.ConvReLU1d",
                           "intrinsic.qat.ConvReLU2d"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bool lin = strstr(types[i], "Linear") != NULL, one = strstr(types[i], "1d") && !lin;
        qg_qat_args a = {.in = 4, .out = 6, .kernel = {3, 3}, .padding = {1, 1}, .freeze_bn = strstr(types[i], "Bn") != NULL};
        qg_module *m = qg_qat_new(types[i], &a, strstr(types[i], "dynamic") ? &dyn : &qc, NULL);
        CHECK(m && qg_module_is(m, types[i]), "qat_new %s: %s", types[i], qg_last_error());
        if (!m) continue;
        qg_tensor *x = lin ? qg_tensor_randn(NULL, QG_F32, 2, SHAPE(5, 4))
                       : one ? qg_tensor_randn(NULL, QG_F32, 3, SHAPE(2, 4, 7)) : qg_tensor_randn(NULL, QG_F32, 4, SHAPE(2, 4, 5, 5));
        qg_tensor *y = qg_module_forward(m, x);
        CHECK(y && y->shape[1] == 6 && qg_backward(qg_sum(y, 0, NULL, false), NULL) == QG_OK, "%s forward/backward: %s", types[i],
              qg_last_error());
        if (a.freeze_bn) CHECK(!qg_module_child(m, "bn")->training, "%s built with freeze_bn", types[i]);
        qg_tensor_free(x);
        qg_module_free(m);
        qg_tape_reset(NULL);
    }
    CHECK(!qg_qat_new("qat.Conv3d", &(qg_qat_args){.in = 1, .out = 1}, &qc, NULL) && strstr(qg_last_error(), "unknown"),
          "unknown QAT type");
}

/* fake-quant modules' state-dict names and dtypes, as PyTorch 1.13 prints them */
static void test_fake_quant_names(void) {
    qg_qconfig fb = preset("fbgemm"), dflt = preset("default");
    qg_fq_spec learn = dflt.activation;
    learn.kind = QG_FQ_LEARNABLE;
    qg_fq_spec fixed = qg_fq_spec_fixed_sigmoid();
    struct {
        const qg_fq_spec *spec;
        const char *names;
    } want[] = {
        {&fb.weight, "fake_quant_enabled:i64 observer_enabled:i64 scale:f32 zero_point:i32 activation_post_process.eps:f32 "
                     "activation_post_process.min_val:f32 activation_post_process.max_val:f32 "},
        {&dflt.activation, "fake_quant_enabled:u8 observer_enabled:u8 scale:f32 zero_point:i32 activation_post_process.eps:f32 "
                           "activation_post_process.min_val:f32 activation_post_process.max_val:f32 "},
        {&learn, "scale:f32 zero_point:f32 fake_quant_enabled:u8 observer_enabled:u8 static_enabled:u8 learning_enabled:u8 "
                 "eps:f32 activation_post_process.eps:f32 activation_post_process.min_val:f32 activation_post_process.max_val:f32 "},
        {&fixed, "fake_quant_enabled:u8 observer_enabled:u8 scale:f32 zero_point:i32 activation_post_process.scale:f32 "
                 "activation_post_process.zero_point:i32 "},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        qg_module *m = qg_fake_quant_new(want[i].spec);
        qg_tensor_dict *d = qg_module_state_dict(m);
        char got[512] = "";
        size_t n = 0;
        for (int k = 0; d && k < qg_tensor_dict_size(d); k++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s:%s ", qg_tensor_dict_name(d, k),
                                  qg_dtype_name(qg_tensor_dict_at(d, k)->dtype));
        CHECK(!strcmp(got, want[i].names), "%s state dict:\n  got  %s\n  want %s", m ? m->type->name : "?", got, want[i].names);
        qg_tensor_dict_free(d);
        qg_module_free(m);
    }
    qg_fq_spec t = qg_fq_spec_fixed_tanh();
    qg_module *fq = qg_fake_quant_new(&t);
    qg_tensor *x = qg_tensor_full(QG_F32, 1, SHAPE(3), 0.5);
    qg_tensor *y = qg_module_forward(fq, x);
    CHECK(y && qg_tensor_get(y, SHAPE(0)) == 0.5, "tanh fixed qparams: 0.5 is on the grid (2/256 steps)");
    qg_tensor_free(x);
    qg_module_free(fq);
    qg_tape_reset(NULL);
}

/* qg_module_to(F64) on a prepared model converts weights and BN state, but leaves the
 * quantization parameters float32 (the fake-quant kernels read them as float); the
 * model then trains in float64 with the same quantization grid as in float32. */
static void test_module_to_f64(void) {
    qg_qconfig qc = preset("fbgemm"), dq = preset("default");
    const char *g[] = {"0", "1", "2"};
    for (int k = 0; k < 2; k++) {
        qg_module *f = fused(g, 3, qg_nn_conv2d_new(2, 3, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1)}, NULL),
                             qg_nn_batchnorm2d_new(3, NULL), qg_nn_relu_new());
        qg_module *q = qg_qat_from_float(f, k ? &dq : &qc), *q32 = NULL;
        qg_tensor_dict *sd = qg_module_state_dict(q);
        q32 = qg_qat_from_float(fused(g, 3, qg_nn_conv2d_new(2, 3, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1)}, NULL),
                                      qg_nn_batchnorm2d_new(3, NULL), qg_nn_relu_new()),
                                k ? &dq : &qc);
        CHECK(q && q32 && !qg_module_load_state_dict(q32, sd, true), "%s", qg_last_error());
        CHECK(qg_module_to(q, QG_F64) == QG_OK, "%s", qg_last_error());
        CHECK(qg_module_param(q, "weight")->dtype == QG_F64 && qg_module_buffer(qg_module_child(q, "bn"), "running_var")->dtype == QG_F64,
              "weights and BN state become f64");
        qg_module *wfq = qg_module_child(q, "weight_fake_quant");
        CHECK(qg_module_buffer(wfq, "scale")->dtype == QG_F32 &&
                  qg_module_buffer(qg_module_child(wfq, "activation_post_process"), "min_val")->dtype == QG_F32 &&
                  qg_module_buffer(qg_module_child(wfq, "activation_post_process"), "eps")->dtype == QG_F32,
              "quantization parameters stay f32");
        qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 4, SHAPE(2, 2, 5, 5)), *x64 = qg_tensor_empty(QG_F64, 4, SHAPE(2, 2, 5, 5));
        qg_tensor_copy_(x64, x);
        qg_tensor *y = qg_module_forward(q32, x), *y64 = qg_module_forward(q, x64);
        CHECK(y && y64 && y64->dtype == QG_F64, "f64 forward: %s", qg_last_error());
        double d = 0, m = 0;
        for (int64_t i = 0; y && y64 && i < qg_tensor_numel(y); i++) {
            d = fmax(d, fabs(((float *)qg_tensor_data(y))[i] - ((double *)qg_tensor_data(y64))[i]));
            m = fmax(m, fabs(((double *)qg_tensor_data(y64))[i]));
        }
        /* default's per-tensor symmetric scale puts the extreme weight on a rounding tie
         * (amax / s = 127.5), which float32 and float64 may round apart: one weight step */
        CHECK(m > 0 && d <= (k ? 2e-2 : 1e-5) * m, "%s: f64 forward differs from f32 by %g of %g", k ? "default" : "fbgemm", d, m);
        qg_tensor *s = qg_module_buffer(wfq, "scale");
        CHECK(s->dtype == QG_F32 && qg_tensor_numel(s) == (k ? 1 : 3), "scale after the f64 forward");
        qg_tensor_dict_free(sd);
        qg_tensor_free(x), qg_tensor_free(x64);
        qg_module_free(q), qg_module_free(q32);
        qg_tape_reset(NULL);
    }
}

static qg_module *lenet(void) {
    return qg_sequential_of(8, (qg_named_module[]){
                                           {"quant", qg_quant_stub_new()},
                                           {"c1", qg_nn_conv2d_new(1, 6, 5, 5, &(qg_conv_opts){.no_bias = true}, NULL)},
                                           {"b1", qg_nn_batchnorm2d_new(6, NULL)},
                                           {"r1", qg_nn_relu_new()},
                                           {"pool", qg_nn_maxpool2d_new(2, 2, NULL)},
                                           {"flat", qg_nn_flatten_new(1, -1)},
                                           {"fc", qg_nn_linear_new(6 * 12 * 12, 10, NULL, NULL)},
                                           {"dequant", qg_dequant_stub_new()},
                                       });
}

/* A LeNet-style model built in one call and checked once; a failing constructor
 * inside gives NULL with its own message and leaks nothing. Then the whole prepared
 * model back to float with qg_qat_to_float_model. */
static void test_builders(void) {
    int64_t live = qg_live_allocations();
    qg_module *bad = qg_sequential_of(3, (qg_named_module[]){
                                             {"c1", qg_nn_conv2d_new(1, 6, 5, 5, NULL, NULL)},
                                             {"c2", qg_nn_conv2d_new(6, 16, 5, 5, &(qg_conv_opts){.groups = 4}, NULL)},
                                             {"fc", qg_nn_linear_new(16, 10, NULL, NULL)},
                                         });
    CHECK(!bad && strstr(qg_last_error(), "groups"), "a failed constructor's message: %s", qg_last_error());
    CHECK(qg_live_allocations() == live, "nothing leaked by a failed sequential_of");
    qg_module *s = qg_sequential_new();
    qg_sequential_add(s, "c1", qg_nn_conv2d_new(1, 6, 5, 5, NULL, NULL));
    qg_sequential_add(s, "c2", qg_nn_conv2d_new(6, 16, 5, 5, &(qg_conv_opts){.groups = 4}, NULL)); /* fails */
    qg_sequential_add(s, "r", qg_nn_relu_new());
    CHECK(qg_sequential_status(s) != QG_OK && strstr(qg_last_error(), "c2") && strstr(qg_last_error(), "groups"),
          "one check after many adds: %s", qg_last_error());
    qg_tensor *x = qg_tensor_ones(QG_F32, 4, SHAPE(2, 1, 28, 28));
    CHECK(!qg_module_forward(s, x) && strstr(qg_last_error(), "not built"), "forward refuses: %s", qg_last_error());
    qg_module *relu = qg_nn_relu_new();
    CHECK(qg_sequential_add(relu, "x", qg_nn_relu_new()) != QG_OK && strstr(qg_last_error(), "not a Sequential"),
          "sequential_add on a non-Sequential: %s", qg_last_error());
    qg_module_free(relu);
    qg_module_free(s);

    qg_module *m = lenet();
    CHECK(m && qg_sequential_status(m) == QG_OK, "LeNet in one call: %s", qg_last_error());
    const char *g[] = {"c1", "b1", "r1"};
    qg_qconfig qc = preset("fbgemm");
    CHECK(!qg_fuse_modules_qat(m, 1, (const char *const *[]){g}, (int[]){3}) && !qg_prepare_qat(m, &qc), "%s", qg_last_error());
    /* a float checkpoint loaded into the prepared model: counted keys, in full, and the hint */
    qg_module *fm = lenet();
    qg_tensor_dict *fsd = qg_module_state_dict(fm);
    CHECK(qg_module_load_state_dict(m, fsd, true) != QG_OK && strstr(qg_last_error(), "missing keys (") &&
              strstr(qg_last_error(), "and ") && strstr(qg_last_error(), "before qg_prepare_qat") &&
              strstr(qg_last_error(), "b1.running_mean"),
          "strict-load message: %s", qg_last_error());
    qg_tensor_dict_free(fsd), qg_module_free(fm);
    qg_tensor *xr = qg_tensor_randn(NULL, QG_F32, 4, SHAPE(2, 1, 28, 28));
    for (int i = 0; i < 3; i++) qg_module_forward(m, xr), qg_tape_reset(NULL); /* BN stats and observers move */
    qg_module_eval(m);
    qg_enable_fake_quant(m, false);
    qg_tensor *yq = qg_tensor_clone(qg_module_forward(m, xr));
    CHECK(qg_qat_to_float_model(m) == QG_OK, "to_float_model: %s", qg_last_error());
    CHECK(qg_module_is(qg_module_get(m, "c1"), "intrinsic.ConvReLU2d") && qg_module_is(qg_module_get(m, "fc"), "Linear") &&
              !qg_module_child(qg_module_get(m, "fc"), "activation_post_process") && (qg_clear_error(), 1),
          "QAT modules became float, fake-quants gone");
    qg_tensor *yf = qg_module_forward(m, xr);
    double d = 0;
    for (int64_t i = 0; yq && yf && i < qg_tensor_numel(yq); i++)
        d = fmax(d, fabs(((float *)qg_tensor_data(yq))[i] - ((float *)qg_tensor_data(yf))[i]));
    CHECK(yf && d < 1e-4, "the float model computes the QAT model's function with fake-quant off (max diff %g)", d);
    CHECK(qg_qat_to_float(m) == NULL && strstr(qg_last_error(), "qg_qat_to_float_model"), "the hint: %s", qg_last_error());
    qg_tensor_free(x), qg_tensor_free(xr), qg_tensor_free(yq);
    qg_module_free(m);
    qg_tape_reset(NULL);

    /* an error inside a QAT module names it (the LinearBn1d on a 1-D input) */
    qg_qconfig fb = preset("fbgemm");
    qg_module *lb = qg_qat_new("intrinsic.qat.LinearBn1d", &(qg_qat_args){.in = 4, .out = 3}, &fb, NULL);
    qg_module *net = qg_sequential_of(1, (qg_named_module[]){{"lb", lb}});
    qg_tensor *v = qg_tensor_ones(QG_F32, 1, SHAPE(4));
    CHECK(net && !qg_module_forward(net, v) && strstr(qg_last_error(), "lb (intrinsic.qat.LinearBn1d): "),
          "module path in a QAT module's error: %s", qg_last_error());
    qg_tensor_free(v);
    qg_module_free(net);
    qg_tape_reset(NULL);
}

int main(void) {
    test_constructors();
    test_fake_quant_names();
    test_module_to_f64();
    test_builders();
    qg_manual_seed(3);
    test_round_trip();
    test_errors();
    test_toggles_and_prepare();
    return test_summary("qat");
}
