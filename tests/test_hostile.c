/* Regression tests of the memory-safety faults found by fuzzing and by driving the
 * API with bad arguments, one function per fault, named after it. Run under ASan +
 * UBSan in CI: each must give an error with a message (or succeed where PyTorch does)
 * with zero sanitizer reports. */
#include <string.h>

#include "qgrad/data.h"
#include "qgrad/optim.h"
#include "qgrad/qat.h"
#include "test_util.h"

static qg_qconfig preset(const char *name) {
    qg_qconfig q;
    qg_qconfig_preset(name, &q);
    return q;
}

/* bytes of every tensor of m's state dict, in order */
static size_t state_bytes(const qg_module *m, unsigned char *buf, size_t cap) {
    qg_tensor_dict *sd = qg_module_state_dict(m);
    size_t n = 0;
    for (int i = 0; i < qg_tensor_dict_size(sd); i++) {
        const qg_tensor *t = qg_tensor_dict_at(sd, i);
        size_t k = (size_t)qg_tensor_numel(t) * qg_dtype_size(t->dtype);
        if (n + k + 8 > cap) break;
        memcpy(buf + n, &k, sizeof k < 8 ? sizeof k : 8), n += 8;
        memcpy(buf + n, qg_tensor_data(t), k), n += k;
    }
    qg_tensor_dict_free(sd);
    return n;
}

/* A checkpoint whose observer min_val/max_val, or fake-quant scale, has another
 * length than the model's loads (PyTorch lets these lengths vary) and then reads out
 * of bounds: every such load is refused, the model bit-identical, and forward works. */
static void test_checkpoint_observer_shape_mismatch(void) {
    const char *qcs[] = {"fbgemm", "qnnpack", "default"};
    const char *keys[] = {"weight_fake_quant.scale", "weight_fake_quant.zero_point",
                          "weight_fake_quant.activation_post_process.min_val",
                          "weight_fake_quant.activation_post_process.max_val"};
    static unsigned char before[1 << 16], after[1 << 16];
    for (int q = 0; q < 3; q++)
        for (int k = 0; k < 4; k++)
            for (int64_t len = 0; len <= 9; len += 3) {
                qg_qconfig qc = preset(qcs[q]);
                qg_module *m = qg_qat_from_float(qg_nn_linear_new(6, 5, NULL, NULL), &qc);
                qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 2, SHAPE(4, 6));
                qg_module_forward(m, x);
                qg_tape_reset(NULL);
                qg_tensor_dict *sd = qg_module_state_dict(m);
                bool zp = strstr(keys[k], "zero_point") != NULL;
                qg_tensor_dict_put(sd, keys[k], zp ? qg_tensor_zeros(QG_I32, 1, &len) : qg_tensor_full(QG_F32, 1, &len, 0.1));
                size_t nb = state_bytes(m, before, sizeof before);
                for (int strict = 0; strict < 2; strict++) {
                    qg_status st = qg_module_load_state_dict(m, sd, strict);
                    bool legal = st == QG_OK;
                    if (!legal) {
                        size_t na = state_bytes(m, after, sizeof after);
                        CHECK(na == nb && !memcmp(before, after, nb), "%s %s len %lld: a refused load changed the model",
                              qcs[q], keys[k], (long long)len);
                        CHECK(*qg_last_error(), "refused with a message");
                    }
                    qg_tensor *y = qg_module_forward(m, x); /* must not read out of bounds either way */
                    CHECK(y || *qg_last_error(), "forward after the load: an answer or an error");
                    qg_tape_reset(NULL);
                }
                qg_tensor_dict_free(sd);
                qg_tensor_free(x);
                qg_module_free(m);
            }
}

/* SGD (and Adam) after a parameter was resized read its momentum state out of bounds:
 * the step now refuses. (A freed parameter cannot be detected: parameters must
 * outlive the optimizer, as optim.h says.) */
static void test_optimizer_param_resized(void) {
    qg_tensor *p = qg_tensor_ones(QG_F32, 1, SHAPE(4));
    qg_tensor_set_requires_grad(p, true);
    char *names[] = {"p"};
    qg_tensor_list l = {1, names, &p}, *ps = &l;
    qg_sgd *sgd = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.1, .momentum = 0.9});
    qg_adam *adam = qg_adam_new(ps, &(qg_adam_opts){.lr = 0.1});
    qg_backward(qg_sum(qg_mul(p, p), 0, NULL, false), NULL);
    CHECK(qg_sgd_step(sgd) == QG_OK && qg_adam_step(adam) == QG_OK, "first steps: %s", qg_last_error());
    qg_tensor_resize_(p, 1, SHAPE(64));
    qg_tensor_free(p->grad), p->grad = qg_tensor_ones(QG_F32, 1, SHAPE(64));
    CHECK(qg_sgd_step(sgd) == QG_ESHAPE && strstr(qg_last_error(), "momentum buffer"), "sgd: %s", qg_last_error());
    CHECK(qg_adam_step(adam) == QG_ESHAPE && strstr(qg_last_error(), "keep its shape"), "adam: %s", qg_last_error());
    qg_sgd_free(sgd), qg_adam_free(adam);
    qg_tensor_free(p);
    qg_tape_reset(NULL);
}

/* A user-built dataset whose images and labels disagree in count or dtype overflowed
 * the loader's buffers or succeeded silently. */
static void test_loader_dataset_mismatch(void) {
    struct { qg_tensor *im, *lb; } bad[] = {
        {qg_tensor_zeros(QG_U8, 3, SHAPE(4, 2, 2)), qg_tensor_zeros(QG_U8, 1, SHAPE(3))},
        {qg_tensor_zeros(QG_U8, 3, SHAPE(4, 2, 2)), qg_tensor_zeros(QG_I64, 1, SHAPE(4))},
        {qg_tensor_zeros(QG_F32, 3, SHAPE(4, 2, 2)), qg_tensor_zeros(QG_U8, 1, SHAPE(4))},
        {qg_tensor_zeros(QG_U8, 2, SHAPE(4, 4)), qg_tensor_zeros(QG_U8, 1, SHAPE(4))},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qg_dataset d = {bad[i].im, bad[i].lb};
        qg_clear_error();
        CHECK(!qg_loader_new(&d, NULL) && strstr(qg_last_error(), "loader_new"), "dataset %zu: %s", i, qg_last_error());
        qg_dataset_free(&d);
    }
}

/* Calls that succeeded where an error was due. */
static void test_calls_that_must_fail(void) {
    qg_module *relu = qg_nn_relu_new();
    CHECK(qg_sequential_append(relu, qg_nn_relu_new()) != QG_OK && strstr(qg_last_error(), "not a Sequential"),
          "sequential_append on a non-Sequential: %s", qg_last_error());
    qg_module *seq = qg_sequential_new();
    CHECK(qg_fuse_modules_qat(seq, -1, NULL, NULL) == QG_EINVAL && strstr(qg_last_error(), "ngroups"),
          "fuse_modules_qat(m, -1, NULL, NULL): %s", qg_last_error());
    CHECK(!qg_nn_maxpool2d_new(2, 2, &(qg_pool_opts){.stride = {-1, 1}}), "pool with a negative stride");
    CHECK(!qg_nn_batchnorm2d_new(3, &(qg_bn_opts){.momentum = QG_SET(-0.1)}), "BN with a negative momentum");
    qg_qconfig qc = preset("fbgemm");
    CHECK(!qg_qat_new("qat.Conv2d", &(qg_qat_args){.in = 2, .out = 3, .kernel = {3, 3}, .padding = {-1, 0}}, &qc, NULL),
          "QAT conv with negative padding");
    CHECK(!qg_qat_new("qat.Nothing", &(qg_qat_args){.in = 2, .out = 3}, &qc, NULL), "unknown QAT type");
    qg_fq_spec bad = qc.activation;
    bad.averaging_constant = qg_set(1.5);
    CHECK(!qg_fake_quant_new(&bad), "averaging constant 1.5");
    bad = qc.activation, bad.eps = qg_set(0);
    CHECK(!qg_fake_quant_new(&bad), "eps 0");
    qg_module_free(relu), qg_module_free(seq);
}

int main(void) {
    test_checkpoint_observer_shape_mismatch();
    test_optimizer_param_resized();
    test_loader_dataset_mismatch();
    test_calls_that_must_fail();
    qg_shutdown();
    return test_summary("hostile");
}
