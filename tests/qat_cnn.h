/* The small QAT CNN of tools/fixtures/qat.py (QatCNN): conv+bn+relu, pool, linear+relu,
 * linear, between quant stubs; fused ((c1, b1, relu1), (l1, relu2)) and prepared with
 * the fbgemm qconfig as the generator does. Shared by the parity test that trains it
 * against PyTorch and the memory test that trains it many steps. */
#ifndef QG_TEST_QAT_CNN_H
#define QG_TEST_QAT_CNN_H
#include "qgrad.h"
#include "qgrad/qat.h"

/* input (N, 1, 8, 8), 3 classes */
static inline qg_module *qat_cnn_float(void) {
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "quant", qg_quant_stub_new());
    qg_sequential_add(m, "c1", qg_nn_conv2d_new(1, 4, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1), .no_bias = true}, NULL));
    qg_sequential_add(m, "b1", qg_nn_batchnorm2d_new(4, NULL));
    qg_sequential_add(m, "relu1", qg_nn_relu_new());
    qg_sequential_add(m, "pool", qg_nn_maxpool2d_new(2, 2, NULL));
    qg_sequential_add(m, "flatten", qg_nn_flatten_new(1, -1));
    qg_sequential_add(m, "l1", qg_nn_linear_new(64, 16, NULL, NULL));
    qg_sequential_add(m, "relu2", qg_nn_relu_new());
    qg_sequential_add(m, "l2", qg_nn_linear_new(16, 3, NULL, NULL));
    qg_sequential_add(m, "dequant", qg_dequant_stub_new());
    return m;
}

/* Fuses and prepares the float model m in place. */
static inline qg_status qat_cnn_fuse_prepare(qg_module *m) {
    const char *g1[] = {"c1", "b1", "relu1"}, *g2[] = {"l1", "relu2"};
    const char *const *groups[] = {g1, g2};
    int sizes[] = {3, 2};
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    qg_status st = qg_fuse_modules_qat(m, 2, groups, sizes);
    return st ? st : qg_prepare_qat(m, &qc);
}
#endif
