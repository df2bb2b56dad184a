/* The Fashion-MNIST models of examples/fmnist with PyTorch's names, shared with the
 * tests that check them against PyTorch (tests/test_int8_models.c). */
#ifndef QG_FMNIST_MODEL_H
#define QG_FMNIST_MODEL_H
#include <string.h>

#include "qgrad.h"

static qg_module *conv3x3(int64_t in, int64_t out, qg_rng *g) {
    return qg_nn_conv2d_new(in, out, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1), .no_bias = true}, g);
}

/* The float model with PyTorch's names (QuantStub "quant" first, DeQuantStub last). */
static qg_module *build_model(const char *kind, qg_rng *g) {
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "quant", qg_quant_stub_new());
    if (!strcmp(kind, "mlp")) {
        qg_sequential_add(m, "flatten", qg_nn_flatten_new(1, -1));
        qg_sequential_add(m, "l1", qg_nn_linear_new(784, 256, NULL, g));
        qg_sequential_add(m, "relu1", qg_nn_relu_new());
        qg_sequential_add(m, "l2", qg_nn_linear_new(256, 128, NULL, g));
        qg_sequential_add(m, "relu2", qg_nn_relu_new());
        qg_sequential_add(m, "l3", qg_nn_linear_new(128, 10, NULL, g));
    } else {
        qg_sequential_add(m, "c1", conv3x3(1, 32, g));
        qg_sequential_add(m, "b1", qg_nn_batchnorm2d_new(32, NULL));
        qg_sequential_add(m, "relu1", qg_nn_relu_new());
        qg_sequential_add(m, "pool1", qg_nn_maxpool2d_new(2, 2, NULL));
        qg_sequential_add(m, "c2", conv3x3(32, 64, g));
        qg_sequential_add(m, "b2", qg_nn_batchnorm2d_new(64, NULL));
        qg_sequential_add(m, "relu2", qg_nn_relu_new());
        qg_sequential_add(m, "pool2", qg_nn_maxpool2d_new(2, 2, NULL));
        qg_sequential_add(m, "flatten", qg_nn_flatten_new(1, -1));
        qg_sequential_add(m, "l1", qg_nn_linear_new(3136, 128, NULL, g));
        qg_sequential_add(m, "relu3", qg_nn_relu_new());
        qg_sequential_add(m, "l2", qg_nn_linear_new(128, 10, NULL, g));
    }
    qg_sequential_add(m, "dequant", qg_dequant_stub_new());
    return m;
}

static qg_status fuse_model(qg_module *m, const char *kind) {
    if (!strcmp(kind, "mlp")) {
        const char *a[] = {"l1", "relu1"}, *b[] = {"l2", "relu2"};
        return qg_fuse_modules_qat(m, 2, (const char *const *[]){a, b}, (int[]){2, 2});
    }
    const char *a[] = {"c1", "b1", "relu1"}, *b[] = {"c2", "b2", "relu2"}, *c[] = {"l1", "relu3"};
    return qg_fuse_modules_qat(m, 3, (const char *const *[]){a, b, c}, (int[]){3, 3, 2});
}

/* The model of kind, fused and prepared for QAT (fbgemm qconfig) with its weights drawn
 * from g (NULL: the global generator), in training mode; NULL with qgrad's error. */
static inline qg_module *fmnist_prepared(const char *kind, qg_rng *g) {
    qg_qconfig qc;
    qg_module *m = build_model(kind, g);
    qg_status st = qg_sequential_status(m);
    if (!st) st = fuse_model(m, kind);
    if (!st) st = qg_qconfig_preset("fbgemm", &qc);
    if (!st) st = qg_prepare_qat(m, &qc);
    if (st) qg_module_free(m);
    return st ? NULL : m;
}

/* The prepared QAT model of kind (fbgemm qconfig), strictly loaded from the entries
 * "<prefix><key>" of d (a fixture holding checkpoints), in eval mode; NULL with
 * qgrad's error. */
static inline qg_module *fmnist_qat_model(const char *kind, const qg_tensor_dict *d, const char *prefix) {
    const size_t n = strlen(prefix);
    qg_tensor_dict *ck = qg_tensor_dict_new();
    for (int i = 0; ck && i < qg_tensor_dict_size(d); i++)
        if (!strncmp(qg_tensor_dict_name(d, i), prefix, n))
            qg_tensor_dict_put(ck, qg_tensor_dict_name(d, i) + n, qg_tensor_clone(qg_tensor_dict_at(d, i)));
    qg_module *m = ck ? fmnist_prepared(kind, NULL) : NULL;
    qg_status st = m ? qg_module_load_state_dict(m, ck, true) : QG_ENOMEM;
    qg_tensor_dict_free(ck);
    if (st) {
        qg_module_free(m);
        return NULL;
    }
    qg_module_eval(m);
    return m;
}

#endif
