/* The module system: names, order, train/eval, replacement, conversion, custom
 * module types, default initialisation, and error paths. */
#include <math.h>
#include <string.h>

#include "qgrad/data.h"
#include "qgrad/nn.h"
#include "test_util.h"

/* A user-defined module type: y = relu(x) + alpha * scale * x, one parameter. */
typedef struct {
    qg_module base;
    double alpha;
} leaky_mod;

static qg_tensor *leaky_forward(qg_module *m, qg_tensor *x) {
    leaky_mod *l = (leaky_mod *)m;
    return qg_add(qg_relu(x), qg_mul(qg_mul_scalar(x, l->alpha), qg_module_param(m, "scale")));
}

static const qg_module_type leaky_type = {.name = "Leaky", .size = sizeof(leaky_mod), .forward = leaky_forward};

static void test_names_and_order(void) {
    qg_module *net = qg_sequential_new();
    qg_sequential_append(net, qg_nn_linear_new(4, 3, NULL, NULL));
    qg_sequential_append(net, qg_nn_batchnorm1d_new(3, NULL));
    qg_sequential_append(net, qg_nn_relu_new());
    qg_module *leaky = qg_module_new(&leaky_type);
    ((leaky_mod *)leaky)->alpha = 0.1;
    qg_module_add_param(leaky, "scale", qg_tensor_ones(QG_F32, 1, SHAPE(3)));
    qg_sequential_add(net, "act", leaky);

    qg_tensor_list *p = qg_module_parameters(net);
    const char *want_p[] = {"0.weight", "0.bias", "1.weight", "1.bias", "act.scale"};
    CHECK(p && p->n == 5, "5 parameters, got %d", p ? p->n : -1);
    for (int i = 0; p && i < p->n && i < 5; i++)
        CHECK(!strcmp(p->names[i], want_p[i]) && p->tensors[i]->requires_grad, "param %d is %s", i, p->names[i]);
    qg_tensor_list_free(p);
    qg_tensor_dict *sd = qg_module_state_dict(net);
    const char *want_sd[] = {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                             "1.num_batches_tracked", "act.scale"};
    CHECK(qg_tensor_dict_size(sd) == 8, "state dict has 8 entries");
    for (int i = 0; i < 8 && i < qg_tensor_dict_size(sd); i++)
        CHECK(!strcmp(qg_tensor_dict_name(sd, i), want_sd[i]), "state dict entry %d is %s", i, qg_tensor_dict_name(sd, i));
    CHECK(qg_tensor_dict_get(sd, "1.num_batches_tracked")->dtype == QG_I64 &&
              qg_tensor_dict_get(sd, "1.num_batches_tracked")->ndim == 0, "num_batches_tracked is a 0-d i64");
    qg_tensor_dict_free(sd);

    /* forward through the user module and backward into its parameter */
    qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 2, SHAPE(5, 4));
    qg_tensor *y = qg_module_forward(net, x);
    CHECK(y && y->shape[0] == 5 && y->shape[1] == 3, "forward shape");
    CHECK(qg_backward(qg_sum(y, 0, NULL, false), NULL) == QG_OK, "backward");
    CHECK(qg_module_param(leaky, "scale")->grad != NULL, "custom module parameter got a gradient");
    qg_module_zero_grad(net);
    CHECK(qg_tensor_get(qg_module_param(leaky, "scale")->grad, SHAPE(0)) == 0, "zero_grad");
    qg_tape_reset(NULL);

    /* train / eval are recursive */
    qg_module_eval(net);
    CHECK(!net->training && !qg_module_get(net, "1")->training && !leaky->training, "eval recursive");
    qg_module_train(net, true);
    CHECK(qg_module_get(net, "act")->training, "train recursive");

    /* lookups and replacement */
    CHECK(qg_module_get(net, "1") && qg_module_is(qg_module_get(net, "1"), "BatchNorm1d"), "get by path");
    CHECK(!qg_module_get(net, "9") && strstr(qg_last_error(), "no child '9'"), "missing path: %s", qg_last_error());
    qg_module *old = qg_module_replace(net, "2", qg_nn_identity_new());
    CHECK(old && qg_module_is(old, "ReLU") && qg_module_is(qg_module_get(net, "2"), "Identity"), "replace");
    qg_module_free(old);

    /* conversion to f64 */
    CHECK(qg_module_to(net, QG_F64) == QG_OK && qg_module_param(leaky, "scale")->dtype == QG_F64 &&
              qg_module_buffer(qg_module_get(net, "1"), "num_batches_tracked")->dtype == QG_I64,
          "module_to converts float tensors only");
    qg_tensor_free(x);
    qg_module_free(net);
}

static void test_init_and_layers(void) {
    qg_manual_seed(1);
    qg_module *l = qg_nn_linear_new(400, 30, NULL, NULL);
    float *w = qg_tensor_data(qg_module_param(l, "weight"));
    double bound = 1.0 / 20.0, mx = 0;
    for (int i = 0; i < 400 * 30; i++) mx = fabs(w[i]) > mx ? fabs(w[i]) : mx;
    CHECK(mx <= bound && mx > 0.95 * bound, "Linear weight in U(-1/sqrt(fan_in), 1/sqrt(fan_in)): max %g", mx);
    qg_module *c = qg_nn_conv2d_new(4, 8, 3, 3, &(qg_conv_opts){.groups = 2, .no_bias = true}, NULL);
    CHECK(c && qg_module_param(c, "weight")->shape[1] == 2 && !qg_module_param(c, "bias"), "Conv2d groups, no bias");
    qg_tensor_list *p = qg_module_parameters(c);
    CHECK(p->n == 1, "absent bias is skipped");
    qg_tensor_list_free(p);
    qg_module *c1 = qg_nn_conv1d_new(3, 5, 4, NULL, NULL);
    CHECK(c1 && qg_module_param(c1, "weight")->ndim == 3 && qg_module_param(c1, "weight")->shape[2] == 4, "Conv1d weight");
    qg_module *bn = qg_nn_batchnorm2d_new(3, &(qg_bn_opts){.no_affine = true, .no_track = true});
    CHECK(bn && !qg_module_param(bn, "weight") && !qg_module_buffer(bn, "running_mean"), "BN without affine/tracking");
    /* same seed, same weights */
    qg_rng g1, g2;
    qg_rng_init(&g1, 9), qg_rng_init(&g2, 9);
    qg_module *a = qg_nn_linear_new(7, 5, NULL, &g1), *b = qg_nn_linear_new(7, 5, NULL, &g2);
    CHECK(tst_bitwise_equal(qg_module_param(a, "weight"), qg_module_param(b, "weight")), "seeded init repeats");
    qg_module *mods[] = {l, c, c1, bn, a, b};
    for (int i = 0; i < 6; i++) qg_module_free(mods[i]);
}

static void test_errors(void) {
    CHECK(!qg_nn_linear_new(0, 3, NULL, NULL) && strstr(qg_last_error(), "in_features"), "Linear(0, 3)");
    CHECK(!qg_nn_conv2d_new(3, 4, 3, 3, &(qg_conv_opts){.groups = 2}, NULL) && strstr(qg_last_error(), "groups"),
          "Conv2d groups must divide channels");
    CHECK(!qg_nn_dropout_new(1.5, NULL), "Dropout p > 1");
    CHECK(!qg_nn_hardtanh_new(1, -1), "Hardtanh min > max");
    qg_module *m = qg_nn_linear_new(2, 2, NULL, NULL);
    CHECK(qg_module_add_param(m, "weight", qg_tensor_zeros(QG_F32, 1, SHAPE(2))) == QG_EINVAL &&
              strstr(qg_last_error(), "already has"), "duplicate name");
    CHECK(qg_module_add_param(m, "a.b", qg_tensor_zeros(QG_F32, 1, SHAPE(2))) == QG_EINVAL, "dotted name");
    CHECK(qg_module_add_param(m, "i", qg_tensor_zeros(QG_I64, 1, SHAPE(2))) == QG_EDTYPE, "integer parameter");
    qg_tensor *x = qg_tensor_ones(QG_F32, 2, SHAPE(3, 5));
    CHECK(!qg_module_forward(m, x) && strstr(qg_last_error(), "linear"), "wrong input width: %s", qg_last_error());
    CHECK(!qg_module_forward(m, NULL), "NULL input");
    qg_module *bn = qg_nn_batchnorm2d_new(2, NULL);
    CHECK(!qg_module_forward(bn, x) && strstr(qg_last_error(), "expected 4D input"), "BN2d on 2-D input");
    CHECK(qg_module_load(m, "/nonexistent/file.safetensors", true) < 0 && *qg_last_error(), "missing checkpoint file");
    qg_tensor_free(x);
    qg_module_free(m);
    qg_module_free(bn);
    qg_tape_reset(NULL);
}

/* Every setting PyTorch has is expressible: padding (2, 0), momentum 0, eps given,
 * momentum=None apart from momentum 0 (options rules of autograd.h). */
static void test_options(void) {
    qg_module *c = qg_nn_conv2d_new(1, 1, 3, 3, &(qg_conv_opts){.padding = {2, 0}}, NULL);
    qg_tensor *x = qg_tensor_ones(QG_F32, 4, SHAPE(1, 1, 5, 5));
    qg_tensor *y = qg_module_forward(c, x);
    CHECK(y && y->shape[2] == 7 && y->shape[3] == 3, "Conv2d(1, 1, 3, padding=(2, 0)) on 5x5 gives 7x3, got %lldx%lld",
          y ? (long long)y->shape[2] : -1, y ? (long long)y->shape[3] : -1);
    qg_module_free(c);
    c = qg_nn_conv2d_new(1, 1, 3, 3, &(qg_conv_opts){.stride = {2, 0}, .padding = QG_PAIR(1)}, NULL);
    y = qg_module_forward(c, x);
    CHECK(y && y->shape[2] == 3 && y->shape[3] == 5, "stride (2, 0) is (2, 1); padding QG_PAIR(1) is (1, 1)");
    qg_module_free(c);
    qg_module *p = qg_nn_maxpool2d_new(2, 2, &(qg_pool_opts){.stride = {1, 0}, .padding = {1, 0}});
    y = qg_module_forward(p, x);
    CHECK(y && y->shape[2] == 6 && y->shape[3] == 2, "MaxPool2d(2, stride=(1, 2), padding=(1, 0)) on 5x5: 6x2");
    qg_module_free(p);
    CHECK(!qg_nn_maxpool2d_new(2, 2, &(qg_pool_opts){.padding = {-1, 0}}) && strstr(qg_last_error(), "MaxPool2d"),
          "negative padding: %s", qg_last_error());
    qg_tensor_free(x);
    qg_tape_reset(NULL);

    /* BN momentum 0: running statistics never move; None: cumulative average */
    qg_tensor *xb = qg_tensor_randn(NULL, QG_F32, 2, SHAPE(8, 3));
    qg_module *b0 = qg_nn_batchnorm1d_new(3, &(qg_bn_opts){.momentum = QG_SET(0)});
    qg_module *bn = qg_nn_batchnorm1d_new(3, &(qg_bn_opts){.cumulative = true});
    qg_module *be = qg_nn_batchnorm1d_new(3, &(qg_bn_opts){.eps = QG_SET(0.5)});
    CHECK(b0 && bn && be, "BN options: %s", qg_last_error());
    for (int i = 0; i < 2; i++) qg_module_forward(b0, xb), qg_module_forward(bn, xb);
    CHECK(qg_tensor_get(qg_module_buffer(b0, "running_mean"), SHAPE(0)) == 0 &&
              qg_tensor_get(qg_module_buffer(b0, "running_var"), SHAPE(1)) == 1,
          "momentum=0 keeps the running stats");
    CHECK(qg_tensor_get(qg_module_buffer(bn, "running_mean"), SHAPE(0)) != 0, "momentum=None moves them");
    qg_layer_info li;
    CHECK(!qg_nn_layer_info(be, &li) && li.eps == 0.5 && li.momentum == 0.1 && !qg_nn_layer_info(b0, &li) &&
              li.momentum == 0 && li.eps == 1e-5,
          "eps and momentum as given, defaults where unset");
    CHECK(!qg_nn_batchnorm1d_new(3, &(qg_bn_opts){.eps = QG_SET(0)}) && strstr(qg_last_error(), "eps"), "eps 0 refused");
    CHECK(!qg_nn_batchnorm1d_new(3, &(qg_bn_opts){.momentum = QG_SET(1.5)}), "momentum 1.5 refused");
    qg_module_free(b0), qg_module_free(bn), qg_module_free(be);
    qg_tensor_free(xb);
    qg_tape_reset(NULL);

    /* the loader: a mean without std is an error, not silently dropped */
    qg_dataset d = {qg_tensor_zeros(QG_U8, 3, SHAPE(4, 2, 2)), qg_tensor_zeros(QG_U8, 1, SHAPE(4))};
    CHECK(!qg_loader_new(&d, &(qg_loader_opts){.mean = 0.5}) && strstr(qg_last_error(), "std"), "mean without std: %s",
          qg_last_error());
    qg_dataset_free(&d);
}

/* BatchNorm on an empty batch: an empty output and zero gradients, as PyTorch */
static void test_bn_empty(void) {
    qg_module *bn = qg_nn_batchnorm2d_new(3, NULL);
    qg_tensor *x = qg_tensor_zeros(QG_F32, 4, SHAPE(0, 3, 4, 4));
    qg_tensor_set_requires_grad(x, true);
    qg_tensor *y = qg_module_forward(bn, x);
    qg_tensor *g = qg_tensor_zeros(QG_F32, 4, SHAPE(0, 3, 4, 4));
    CHECK(y && qg_tensor_numel(y) == 0 && qg_backward(y, g) == QG_OK, "empty batch backward: %s", qg_last_error());
    qg_tensor *gw = qg_module_param(bn, "weight")->grad;
    CHECK(gw && qg_tensor_numel(gw) == 3 && qg_tensor_get(gw, SHAPE(1)) == 0 && x->grad && qg_tensor_numel(x->grad) == 0,
          "zero weight gradient, empty input gradient");
    CHECK(qg_tensor_get(qg_module_buffer(bn, "running_var"), SHAPE(0)) == 1, "running stats untouched");
    qg_tensor_free(x), qg_tensor_free(g);
    qg_module_free(bn);
    qg_tape_reset(NULL);
}

/* A module type that fuses with a following ReLU: the Sequential calls its
 * forward_fused instead of the two forwards, unless either module has an output hook
 * (then the two run in turn). */
static int fused_calls;
static qg_tensor *twice_forward(qg_module *m, qg_tensor *x) { return (void)m, qg_mul_scalar(x, 2); }
static bool twice_fuses(const qg_module *m, const qg_module *next) { return (void)m, qg_module_is(next, "ReLU"); }
static qg_tensor *twice_fused(qg_module *m, qg_module *next, qg_tensor *x) {
    fused_calls++;
    return qg_module_forward(next, twice_forward(m, x));
}
static const qg_module_type twice_type = {.name = "Twice", .size = sizeof(qg_module), .forward = twice_forward,
                                          .fuses = twice_fuses, .forward_fused = twice_fused};

static void test_fusion(void) {
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "t", qg_module_new(&twice_type));
    qg_sequential_add(m, "i1", qg_nn_identity_new()); /* looked past, as fuse_modules leaves them */
    qg_sequential_add(m, "i2", qg_nn_identity_new());
    qg_sequential_add(m, "r", qg_nn_relu_new());
    qg_sequential_add(m, "t2", qg_module_new(&twice_type)); /* last: nothing to fuse with */
    qg_tensor *x = qg_tensor_from_data(QG_F32, 1, SHAPE(3), (float[]){-1, 0.5f, 2});
    qg_tensor *y = qg_module_forward(m, x);
    CHECK(y && fused_calls == 1 && qg_tensor_get(y, SHAPE(0)) == 0 && qg_tensor_get(y, SHAPE(2)) == 8,
          "Sequential fuses Twice + ReLU once: %d calls, %s", fused_calls, y ? "" : qg_last_error());
    qg_module_set_output_hook(qg_module_get(m, "r"), "hook", qg_module_new(&twice_type));
    y = qg_module_forward(m, x);
    CHECK(y && fused_calls == 1 && qg_tensor_get(y, SHAPE(2)) == 16,
          "no fusion when the next module has an output hook (%d calls): the hook runs once", fused_calls);
    qg_module_free(qg_module_remove_child(qg_module_get(m, "r"), "hook"));
    qg_module_set_output_hook(qg_module_get(m, "i2"), "hook", qg_module_new(&twice_type));
    y = qg_module_forward(m, x);
    CHECK(y && fused_calls == 1 && qg_tensor_get(y, SHAPE(2)) == 16,
          "no fusion past an Identity with an output hook (%d calls)", fused_calls);
    qg_tensor_free(x);
    qg_module_free(m);
    qg_tape_reset(NULL);
}

/* max_pool2d's 2x2 path (vector loops on AVX2 builds) picks PyTorch's element: the
 * first maximum of each window in window order, a NaN replacing anything (the last
 * NaN). Values with ties, NaNs and -inf on purpose, rows of 1 to 17 outputs, float and
 * double, contiguous and transposed (strided) inputs; the chosen elements are read
 * back through the gradient (backward of distinct values). */
static void test_max_pool_scan(void) {
    static const int64_t shapes[][4] = {{2, 3, 10, 34}, {1, 2, 7, 7}, {1, 1, 4, 2}, {3, 2, 9, 16}, {1, 1, 2, 22}};
    const int k2[2] = {2, 2};
    uint64_t s = 12345;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int v = 0; v < 4; v++) {
            const bool dbl = v & 1, tr = v & 2;
            const int64_t *sh = shapes[si];
            qg_tensor *x = qg_tensor_zeros(dbl ? QG_F64 : QG_F32, 4, sh);
            const int64_t n = qg_tensor_numel(x);
            for (int64_t i = 0; i < n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                const int r = (int)(s >> 33) % 9;
                const double val = r < 6 ? r % 3 : r == 6 ? NAN : r == 7 ? -INFINITY : 5;
                if (dbl) ((double *)qg_tensor_data(x))[i] = val;
                else ((float *)qg_tensor_data(x))[i] = (float)val;
            }
            qg_tensor_set_requires_grad(x, true);
            qg_tensor *in = tr ? qg_transpose(x, 2, 3) : x; /* logical (N, C, W, H) when transposed */
            qg_tensor *y = qg_max_pool2d(in, k2, k2, NULL, NULL, false);
            CHECK(y != NULL, "shape %zu: %s", si, qg_last_error());
            if (!y) continue;
            qg_tensor *ar = qg_tensor_arange(x->dtype, 1, 1 + (double)qg_tensor_numel(y), 1);
            qg_tensor *gy = qg_reshape(ar, 4, y->shape);
            CHECK(qg_backward(y, gy) == QG_OK, "backward: %s", qg_last_error());
            const int64_t H = in->shape[2], W = in->shape[3];
            bool ok = true;
            for (int64_t a = 0; a < sh[0]; a++)
                for (int64_t c = 0; c < sh[1]; c++)
                    for (int64_t oh = 0; oh < y->shape[2]; oh++)
                        for (int64_t ow = 0; ow < y->shape[3]; ow++) {
                            double m = -INFINITY;
                            int64_t kh = 2 * oh, kw = 2 * ow;
                            for (int64_t h = 2 * oh; h < 2 * oh + 2 && h < H; h++)
                                for (int64_t w = 2 * ow; w < 2 * ow + 2 && w < W; w++) {
                                    const double e = qg_tensor_get(in, SHAPE(a, c, h, w));
                                    if (e > m || e != e) m = e, kh = h, kw = w;
                                }
                            const double got = qg_tensor_get(y, SHAPE(a, c, oh, ow));
                            const double g = qg_tensor_get(gy, SHAPE(a, c, oh, ow));
                            const int64_t xi[4] = {a, c, tr ? kw : kh, tr ? kh : kw}; /* x's own index */
                            ok &= (got == m || (got != got && m != m)) && qg_tensor_get(x->grad, xi) == g;
                        }
            CHECK(ok, "shape %zu (%s%s): max_pool2d 2x2 picks the scan's element", si, dbl ? "double" : "float",
                  tr ? ", transposed" : "");
            qg_tensor_free(x), qg_tensor_free(ar);
            qg_tape_reset(NULL);
        }
}

/* An error inside a module's forward names the module's path and type. */
static void test_error_paths(void) {
    qg_module *m = qg_sequential_new();
    qg_module *inner = qg_sequential_new();
    qg_sequential_add(inner, "fc", qg_nn_linear_new(4, 2, NULL, NULL));
    qg_sequential_add(m, "block", inner);
    qg_tensor *x = qg_tensor_ones(QG_F32, 2, SHAPE(3, 5));
    CHECK(!qg_module_forward(m, x) && strstr(qg_last_error(), "block.fc (Linear): linear"), "path in the message: %s",
          qg_last_error());
    CHECK(!qg_module_forward(qg_module_get(m, "block.fc"), x) && !strncmp(qg_last_error(), "Linear: linear", 14),
          "a module called alone names its type: %s", qg_last_error());
    qg_tensor_free(x);
    qg_module_free(m);
    qg_tape_reset(NULL);
}

int main(void) {
    int64_t live = qg_live_allocations();
    test_names_and_order();
    test_init_and_layers();
    test_errors();
    test_options();
    test_bn_empty();
    test_max_pool_scan();
    test_fusion();
    test_error_paths();
    qg_tape_reset(NULL);
    /* the default tape keeps its arena until qg_shutdown; everything else was freed */
    qg_shutdown();
    CHECK(qg_live_allocations() == live, "no leaks: %lld blocks left", (long long)(qg_live_allocations() - live));
    return test_summary("nn");
}
