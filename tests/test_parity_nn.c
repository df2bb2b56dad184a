/* PyTorch parity of the nn layers (fixtures by tools/gen_fixtures.py), every tensor
 * judged by the rule of tests/parity.h (float32 against the float64 reference, by
 * PyTorch's own float32 error):
 *  - functional forms (conv, batch_norm, pooling) through the shared runner: output,
 *    input and parameter gradients;
 *  - BatchNorm modules: 3 training forward+backward passes, then running stats,
 *    num_batches_tracked (exact), the last output and the accumulated weight/bias grads;
 *  - a small CNN checkpoint written by PyTorch: strict load, eval output, save/load
 *    round trip bit-exact.
 * usage: test_parity_nn nn_layers.safetensors small_cnn.safetensors small_cnn_state.safetensors */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parity.h"

static const int P1[2] = {1, 1}, S2[2] = {2, 2}, D2[2] = {2, 2};

CASE(conv2d, qg_conv2d(in[0], in[1], in[2], NULL, P1, NULL, 1))
CASE(conv2d_s2_d2_nobias, qg_conv2d(in[0], in[1], NULL, S2, NULL, D2, 1))
CASE(conv2d_groups, qg_conv2d(in[0], in[1], in[2], (int[]){1, 2}, (int[]){2, 1}, NULL, 2))
CASE(conv2d_1x1, qg_conv2d(in[0], in[1], in[2], NULL, NULL, NULL, 1))
CASE(conv2d_fmnist, qg_conv2d(in[0], in[1], NULL, NULL, P1, NULL, 1))
CASE(conv1d, qg_conv1d(in[0], in[1], in[2], 2, 1, 1, 1))
CASE(conv1d_groups_dil, qg_conv1d(in[0], in[1], NULL, 1, 2, 2, 2))
CASE(bn_train, qg_batch_norm(in[0], NULL, NULL, in[1], in[2], true, 0.1, 1e-5))
CASE(bn_eval, qg_batch_norm(in[0], in[3], in[4], in[1], in[2], false, 0.1, 1e-3))
CASE(bn_noaffine, qg_batch_norm(in[0], NULL, NULL, NULL, NULL, true, 0.1, 1e-5))
CASE(max_pool2d, qg_max_pool2d(in[0], S2, NULL, NULL, NULL, false))
CASE(max_pool2d_pad_ceil, qg_max_pool2d(in[0], (int[]){3, 3}, S2, P1, NULL, true))
CASE(max_pool2d_dil, qg_max_pool2d(in[0], (int[]){2, 3}, (int[]){2, 1}, NULL, D2, false))
CASE(avg_pool2d, qg_avg_pool2d(in[0], S2, NULL, NULL, false, true, 0))
CASE(avg_pool2d_pad_nocount, qg_avg_pool2d(in[0], (int[]){3, 3}, S2, P1, true, false, 0))
CASE(avg_pool2d_pad_count, qg_avg_pool2d(in[0], (int[]){3, 3}, S2, P1, true, true, 0))
CASE(avg_pool2d_divisor, qg_avg_pool2d(in[0], S2, NULL, NULL, false, true, 3))
CASE(adaptive_avg_pool2d, qg_adaptive_avg_pool2d(in[0], 3, 2))
CASE(flatten_linear, qg_linear(qg_flatten(in[0], 1, -1), in[1], in[2]))

static op_case cases[] = {
    {"conv2d", case_conv2d, 0},
    {"conv2d_s2_d2_nobias", case_conv2d_s2_d2_nobias, 0},
    {"conv2d_groups", case_conv2d_groups, 0},
    {"conv2d_1x1", case_conv2d_1x1, 0},
    {"conv2d_fmnist", case_conv2d_fmnist, 0},
    {"conv2d_fmnist2", case_conv2d_fmnist, 0},
    {"conv1d", case_conv1d, 0},
    {"conv1d_groups_dil", case_conv1d_groups_dil, 0},
    {"batch_norm_train_2d", case_bn_train, 0},
    {"batch_norm_train_3d", case_bn_train, 0},
    {"batch_norm_train_4d", case_bn_train, 0},
    {"batch_norm_eval", case_bn_eval, 0},
    {"batch_norm_noaffine", case_bn_noaffine, 0},
    {"max_pool2d", case_max_pool2d, 0},
    {"max_pool2d_pad_ceil", case_max_pool2d_pad_ceil, 0},
    {"max_pool2d_dil", case_max_pool2d_dil, 0},
    {"avg_pool2d", case_avg_pool2d, 0},
    {"avg_pool2d_pad_nocount", case_avg_pool2d_pad_nocount, 0},
    {"avg_pool2d_pad_count", case_avg_pool2d_pad_count, 0},
    {"avg_pool2d_divisor", case_avg_pool2d_divisor, 0},
    {"adaptive_avg_pool2d", case_adaptive_avg_pool2d, 0},
    {"flatten_linear", case_flatten_linear, 0},
};

#define passed parity.passed
#define failed parity.failed

/* BatchNorm modules trained 3 steps as the generator did */
static void bn_module(const char *name, qg_module *bn) {
    char what[96];
    qg_tensor_copy_(qg_module_param(bn, "weight"), PFX("%s.init_weight", name));
    qg_tensor_copy_(qg_module_param(bn, "bias"), PFX("%s.init_bias", name));
    qg_tensor *y = NULL;
    for (int step = 0; step < 3; step++) {
        qg_tape_reset(NULL);
        y = qg_module_forward(bn, PFX("%s.x%d", name, step));
        if (!y || qg_backward(y, PFX("%s.g%d", name, step))) {
            printf("FAIL %s step %d: %s\n", name, step, qg_last_error());
            failed++;
            qg_module_free(bn);
            return;
        }
    }
    const char *bufs[] = {"running_mean", "running_var", "num_batches_tracked"};
    for (int i = 0; i < 3; i++) {
        snprintf(what, sizeof what, "%s.%s", name, bufs[i]);
        parity_judge(what, qg_module_buffer(bn, bufs[i]), PFX("%s.state.%s", name, bufs[i]),
                     PFX("%s.ref.state.%s", name, bufs[i]));
    }
    const char *outs[] = {"out2", "grad_weight", "grad_bias"};
    const qg_tensor *ours[] = {y, qg_module_param(bn, "weight")->grad, qg_module_param(bn, "bias")->grad};
    for (int i = 0; i < 3; i++) {
        snprintf(what, sizeof what, "%s.%s", name, outs[i]);
        parity_judge(what, ours[i], PFX("%s.%s", name, outs[i]), PFX("%s.ref.%s", name, outs[i]));
    }
    qg_tape_reset(NULL);
    qg_module_free(bn);
}

/* SmallCNN of tools/gen_fixtures.py, with the same state-dict names */
static qg_module *small_cnn(void) {
    qg_module *f = qg_sequential_new();
    qg_sequential_append(f, qg_nn_conv2d_new(1, 4, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1), .no_bias = true}, NULL));
    qg_sequential_append(f, qg_nn_batchnorm2d_new(4, NULL));
    qg_sequential_append(f, qg_nn_relu_new());
    qg_sequential_append(f, qg_nn_maxpool2d_new(2, 2, NULL));
    qg_sequential_append(f, qg_nn_conv2d_new(4, 6, 3, 3, NULL, NULL));
    qg_sequential_append(f, qg_nn_relu_new());
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "features", f);
    qg_sequential_add(m, "flatten", qg_nn_flatten_new(1, -1));
    qg_sequential_add(m, "fc", qg_nn_linear_new(24, 3, NULL, NULL));
    return m;
}

static void checkpoint(const char *io_path, const char *state_path) {
    qg_tensor_dict *io = qg_safetensors_load(io_path);
    qg_module *m = small_cnn();
    qg_status st = io ? qg_module_load(m, state_path, true) : QG_EIO;
    if (st) {
        printf("FAIL small_cnn load: %s\n", qg_last_error());
        failed++;
    } else {
        qg_module_eval(m);
        qg_tensor *out = qg_module_forward(m, tst_fixture(io, TST_NEED, "x"));
        parity_judge("small_cnn.out_eval", out, tst_fixture(io, TST_NEED, "out_eval"),
                     tst_fixture(io, TST_NEED, "ref.out_eval"));
        /* save, load into a fresh model: every tensor equal to the bit */
        char path[256];
        snprintf(path, sizeof path, "%s/qgrad_small_cnn_%d.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
        qg_module *m2 = small_cnn();
        bool ok = !qg_module_save(m, path) && !qg_module_load(m2, path, true);
        qg_tensor_dict *a = qg_module_state_dict(m), *b = qg_module_state_dict(m2);
        for (int i = 0; ok && i < qg_tensor_dict_size(a); i++) {
            ok = tst_bitwise_equal(qg_tensor_dict_get(b, qg_tensor_dict_name(a, i)), qg_tensor_dict_at(a, i));
        }
        if (ok) passed++, printf("ok small_cnn save/load round trip is exact (%d tensors)\n", qg_tensor_dict_size(a));
        else failed++, printf("FAIL small_cnn round trip: %s\n", qg_last_error());
        /* strict load names what is wrong and leaves the module unchanged */
        qg_tensor_dict *bad = qg_module_state_dict(m);
        qg_tensor_dict_put(bad, "extra.weight", qg_tensor_zeros(QG_F32, 1, (int64_t[]){2}));
        qg_tensor_dict_put(bad, "fc.bias", qg_tensor_zeros(QG_F32, 1, (int64_t[]){4}));
        qg_tensor_dict_put(bad, "features.0.weight", qg_tensor_full(QG_F32, 4, (int64_t[]){4, 1, 3, 3}, 7));
        st = qg_module_load_state_dict(m2, bad, true);
        const char *msg = qg_last_error();
        double w = qg_tensor_get(qg_module_param(qg_module_get(m2, "features.0"), "weight"), (int64_t[]){0, 0, 0, 0});
        if (st && strstr(msg, "extra.weight") && strstr(msg, "fc.bias") && w != 7)
            passed++, printf("ok strict load rejects and leaves the module unchanged: %s\n", msg);
        else
            failed++, printf("FAIL strict load: status %d, %s\n", st, msg);
        qg_tensor_dict_free(bad);
        qg_tensor_dict_free(a);
        qg_tensor_dict_free(b);
        qg_module_free(m2);
        unlink(path);
    }
    qg_module_free(m);
    qg_tensor_dict_free(io);
    qg_tape_reset(NULL);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s nn_layers.safetensors small_cnn.safetensors small_cnn_state.safetensors\n", argv[0]);
        return 2;
    }
    qg_tensor_dict *d = parity_run(argc, argv, cases, (int)(sizeof cases / sizeof *cases));
    if (d) {
        bn_module("bn2d", qg_nn_batchnorm2d_new(3, NULL));
        bn_module("bn1d", qg_nn_batchnorm1d_new(3, NULL));
        bn_module("bn1d_3d", qg_nn_batchnorm1d_new(3, &(qg_bn_opts){.momentum = QG_SET(0.3)}));
        bn_module("bn2d_cumulative", qg_nn_batchnorm2d_new(3, &(qg_bn_opts){.cumulative = true}));
    }
    qg_tensor_dict_free(d);
    checkpoint(argv[2], argv[3]);
    parity_report();
    printf("%d passed, %d failed\n", passed, failed);
    return failed || !d ? 1 : 0;
}
