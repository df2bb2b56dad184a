/* custom_model: a module type written in C, trained with QAT.
 *
 * ResidualBlock computes  y = x + alpha * fc2(leaky(fc1(x)))  where alpha is its own
 * learnable parameter and leaky a custom activation made of qgrad ops. Its children
 * fc1 and fc2 are ordinary Linear modules, so prepare_qat swaps them for QAT Linears
 * and fake-quantizes their weights and outputs; the block's own forward is unchanged.
 *
 * usage: custom_model [--steps N] [--data DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qgrad.h"

/* 1. The struct: qg_module first, then whatever the type needs. */
typedef struct {
    qg_module base;
    double slope; /* negative slope of the leaky activation */
} residual_block;

/* 2. forward: any composition of qgrad ops; children run through qg_module_forward
 *    (so a QAT swap or an output fake-quant on them takes effect). */
static qg_tensor *leaky(qg_tensor *x, double slope) {
    return qg_sub(qg_relu(x), qg_mul_scalar(qg_relu(qg_neg(x)), slope));
}

static qg_tensor *residual_forward(qg_module *m, qg_tensor *x) {
    residual_block *b = (residual_block *)m;
    qg_tensor *h = qg_module_forward(qg_module_child(m, "fc1"), x);
    h = qg_module_forward(qg_module_child(m, "fc2"), leaky(h, b->slope));
    return qg_add(x, qg_mul(h, qg_module_param(m, "alpha")));
}

/* 3. The type: PyTorch-style class name, size, forward. */
static const qg_module_type residual_type = {
    .name = "ResidualBlock", .size = sizeof(residual_block), .forward = residual_forward};

/* 4. A constructor registering children and parameters (names become state-dict keys:
 *    block.fc1.weight, block.alpha, ...). */
static qg_module *residual_new(int64_t width, double slope, qg_rng *g) {
    qg_module *m = qg_module_new(&residual_type);
    if (!m) return NULL;
    ((residual_block *)m)->slope = slope;
    if (qg_module_add_child(m, "fc1", qg_nn_linear_new(width, width, NULL, g)) ||
        qg_module_add_child(m, "fc2", qg_nn_linear_new(width, width, NULL, g)) ||
        qg_module_add_param(m, "alpha", qg_tensor_full(QG_F32, 1, (int64_t[]){1}, 0.5))) {
        qg_module_free(m);
        return NULL;
    }
    return m;
}

int main(int argc, char **argv) {
    int64_t steps = 600;
    const char *dir = "/usr/share/datasets/fashion-mnist";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) dir = argv[++i];
        else {
            fprintf(stderr, "usage: custom_model [--steps N] [--data DIR]\n");
            return 2;
        }
    }
    qg_dataset train, test;
    if (qg_dataset_load_mnist(dir, true, &train) || qg_dataset_load_mnist(dir, false, &test)) {
        fprintf(stderr, "custom_model: %s\n", qg_last_error());
        return 1;
    }
    qg_rng g;
    qg_rng_init(&g, 1);
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "quant", qg_quant_stub_new());
    qg_sequential_add(m, "flatten", qg_nn_flatten_new(1, -1));
    qg_sequential_add(m, "fc_in", qg_nn_linear_new(784, 128, NULL, &g));
    qg_sequential_add(m, "relu", qg_nn_relu_new());
    qg_sequential_add(m, "block", residual_new(128, 0.1, &g));
    qg_sequential_add(m, "fc_out", qg_nn_linear_new(128, 10, NULL, &g));

    /* QAT: fuse Linear+ReLU, swap for QAT modules, attach fake-quant */
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    const char *group[] = {"fc_in", "relu"};
    if (qg_fuse_modules_qat(m, 1, (const char *const *[]){group}, (int[]){2}) || qg_prepare_qat(m, &qc)) {
        fprintf(stderr, "custom_model: %s\n", qg_last_error());
        return 1;
    }
    printf("prepared: block.fc1 is %s, block keeps its type %s\n", qg_module_get(m, "block.fc1")->type->name,
           qg_module_get(m, "block")->type->name);

    qg_tensor_list *ps = qg_module_parameters(m);
    qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    qg_loader *tl = qg_loader_new(&train, &(qg_loader_opts){.batch = 64, .shuffle = true, .seed = 1, .drop_last = true,
                                                              .mean = 0.2860, .std = 0.3530});
    qg_tensor *x, *y;
    int64_t step = 0;
    for (int64_t epoch = 0; step < steps; epoch++) {
        qg_loader_start_epoch(tl, epoch);
        while (step < steps && qg_loader_next(tl, &x, &y)) {
            qg_tensor *loss = qg_cross_entropy(qg_module_forward(m, x), y, QG_REDUCTION_MEAN);
            qg_sgd_zero_grad(opt);
            if (!loss || qg_backward(loss, NULL) || qg_sgd_step(opt)) {
                fprintf(stderr, "custom_model: %s\n", qg_last_error());
                return 1;
            }
            if (++step % 100 == 0)
                printf("step %lld loss %.4f alpha %.4f\n", (long long)step, qg_tensor_item(loss),
                       qg_tensor_item(qg_module_param(qg_module_get(m, "block"), "alpha")));
            qg_tape_reset(NULL);
        }
    }
    /* evaluate the fake-quant model */
    qg_module_eval(m);
    qg_enable_observer(m, false);
    qg_loader *vl = qg_loader_new(&test, &(qg_loader_opts){.batch = 200, .mean = 0.2860, .std = 0.3530});
    int64_t correct = 0, n = 0;
    QG_NO_GRAD_BEGIN
    while (qg_loader_next(vl, &x, &y)) {
        qg_tensor *pred = qg_argmax(qg_module_forward(m, x), 1, false);
        for (int64_t i = 0; pred && i < y->shape[0]; i++) correct += ((int64_t *)qg_tensor_data(pred))[i] == ((int64_t *)qg_tensor_data(y))[i];
        n += y->shape[0];
        qg_tape_reset(NULL);
    }
    QG_NO_GRAD_END
    printf("custom_model: %lld steps, test accuracy %.4f\n", (long long)step, (double)correct / (double)n);
    qg_loader_free(tl), qg_loader_free(vl);
    qg_sgd_free(opt);
    qg_tensor_list_free(ps);
    qg_module_free(m);
    qg_dataset_free(&train), qg_dataset_free(&test);
    return 0;
}
