/* The module system: names, order, train/eval, replacement, conversion, custom
 * module types, default initialisation, and error paths. */
#include <string.h>

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
    qg_sequential_append(net, qg_nn_linear_new(4, 3, true, NULL));
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
    qg_module *l = qg_nn_linear_new(400, 30, true, NULL);
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
    qg_module *a = qg_nn_linear_new(7, 5, true, &g1), *b = qg_nn_linear_new(7, 5, true, &g2);
    CHECK(!memcmp(qg_tensor_data(qg_module_param(a, "weight")), qg_tensor_data(qg_module_param(b, "weight")), 35 * 4),
          "seeded init repeats");
    qg_module *mods[] = {l, c, c1, bn, a, b};
    for (int i = 0; i < 6; i++) qg_module_free(mods[i]);
}

static void test_errors(void) {
    CHECK(!qg_nn_linear_new(0, 3, true, NULL) && strstr(qg_last_error(), "in_features"), "Linear(0, 3)");
    CHECK(!qg_nn_conv2d_new(3, 4, 3, 3, &(qg_conv_opts){.groups = 2}, NULL) && strstr(qg_last_error(), "groups"),
          "Conv2d groups must divide channels");
    CHECK(!qg_nn_dropout_new(1.5, NULL), "Dropout p > 1");
    CHECK(!qg_nn_hardtanh_new(1, -1), "Hardtanh min > max");
    qg_module *m = qg_nn_linear_new(2, 2, true, NULL);
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

int main(void) {
    int64_t live = qg_live_allocations();
    test_names_and_order();
    test_init_and_layers();
    test_errors();
    qg_tape_reset(NULL);
    /* the default tape keeps its arena; everything else was freed */
    CHECK(qg_live_allocations() - live <= 3, "no leaks: %lld blocks left", (long long)(qg_live_allocations() - live));
    return test_summary("nn");
}
