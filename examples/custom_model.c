/* custom_model: a module type written in C, trained with QAT and converted to int8.
 *
 * ResidualBlock computes  y = quant_out(x + alpha * fc2(quant_mid(leaky(fc1(x)))))
 * where alpha is its own learnable parameter and leaky a custom activation made of
 * qgrad ops. Its children fc1 and fc2 are ordinary Linear modules, so prepare_qat swaps
 * them for QAT Linears and fake-quantizes their weights and outputs; quant_mid and
 * quant_out are QuantStubs (identity in float), placed where the int8 block will go
 * from float back to quantized, so that prepare_qat gives them fake-quants that learn
 * those ranges. The block's own forward is unchanged.
 * convert does not know ResidualBlock: a convert hook (qg_convert_opts.custom) builds
 * its int8 version, QuantizedResidualBlock, from the children qg_convert_module makes.
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

static qg_tensor *run(qg_module *m, const char *child, qg_tensor *x) {
    return qg_module_forward(qg_module_child(m, child), x);
}

static qg_tensor *residual_forward(qg_module *m, qg_tensor *x) {
    residual_block *b = (residual_block *)m;
    qg_tensor *h = run(m, "fc2", run(m, "quant_mid", leaky(run(m, "fc1", x), b->slope)));
    return run(m, "quant_out", qg_add(x, qg_mul(h, qg_module_param(m, "alpha"))));
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
        qg_module_add_child(m, "quant_mid", qg_quant_stub_new()) ||
        qg_module_add_child(m, "fc2", qg_nn_linear_new(width, width, NULL, g)) ||
        qg_module_add_child(m, "quant_out", qg_quant_stub_new()) ||
        qg_module_add_param(m, "alpha", qg_tensor_full(QG_F32, 1, (int64_t[]){1}, 0.5))) {
        qg_module_free(m);
        return NULL;
    }
    return m;
}

/* 5. The int8 version: the same struct, another type. x comes in quint8; fc1 and fc2
 *    compute in int8, the activation and the residual sum in float, and the converted
 *    stubs (now Quantize modules) quantize with the ranges their fake-quants learnt. */
static qg_tensor *qresidual_forward(qg_module *m, qg_tensor *x) {
    residual_block *b = (residual_block *)m;
    qg_tensor *h = leaky(qg_dequantize(run(m, "fc1", x)), b->slope);
    h = qg_dequantize(run(m, "fc2", run(m, "quant_mid", h)));
    return run(m, "quant_out", qg_add(qg_dequantize(x), qg_mul(h, qg_module_buffer(m, "alpha"))));
}

static const qg_module_type qresidual_type = {
    .name = "QuantizedResidualBlock", .size = sizeof(residual_block), .forward = qresidual_forward};

/* 6. The convert hook: qg_convert calls it for each ResidualBlock (trained, in eval
 *    mode) and swaps in what it returns. qg_convert_module makes each child's int8
 *    replacement; alpha is copied, as a buffer: the int8 model does not train. */
static qg_module *residual_convert(qg_module *m, qg_qengine engine, void *ctx) {
    (void)ctx;
    static const char *const parts[] = {"fc1", "quant_mid", "fc2", "quant_out"};
    qg_module *q = qg_module_new(&qresidual_type);
    if (!q) return NULL;
    ((residual_block *)q)->slope = ((residual_block *)m)->slope;
    for (int i = 0; i < 4; i++)
        if (qg_module_add_child(q, parts[i], qg_convert_module(qg_module_child(m, parts[i]), engine))) {
            qg_module_free(q);
            return NULL;
        }
    if (qg_module_add_buffer(q, "alpha", qg_tensor_clone(qg_module_param(m, "alpha")))) {
        qg_module_free(q);
        return NULL;
    }
    return q;
}

/* Test accuracy; each image's prediction goes to pred. -1 on an error. */
static double evaluate(qg_module *m, qg_loader *vl, int64_t *pred) {
    qg_tensor *x, *y, *p = NULL;
    int64_t correct = 0, n = 0;
    bool ok = true;
    QG_NO_GRAD_BEGIN
    qg_loader_start_epoch(vl, 0);
    while (ok && qg_loader_next(vl, &x, &y)) {
        ok = (p = qg_argmax(qg_module_forward(m, x), 1, false)) != NULL;
        for (int64_t i = 0; ok && i < y->shape[0]; i++, n++) {
            pred[n] = ((int64_t *)qg_tensor_data(p))[i];
            correct += pred[n] == ((int64_t *)qg_tensor_data(y))[i];
        }
        qg_tape_reset(NULL);
    }
    QG_NO_GRAD_END
    return ok ? (double)correct / (double)n : -1;
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
    qg_sequential_add(m, "dequant", qg_dequant_stub_new()); /* the int8 model's output: float */

    /* QAT: fuse Linear+ReLU, swap for QAT modules, attach fake-quant (also to the
     * QuantStubs inside the block) */
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    const char *group[] = {"fc_in", "relu"};
    if (qg_fuse_modules_qat(m, 1, (const char *const *[]){group}, (int[]){2}) || qg_prepare_qat(m, &qc)) {
        fprintf(stderr, "custom_model: %s\n", qg_last_error());
        return 1;
    }
    qg_module *mid_fq = qg_module_get(m, "block.quant_mid")->output_hook;
    printf("prepared: block.fc1 is %s, block.quant_mid has a %s, block keeps its type %s\n",
           qg_module_get(m, "block.fc1")->type->name, mid_fq ? mid_fq->type->name : "(no fake-quant!)",
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
    /* evaluate the fake-quant model (the optimizer goes first: convert frees the QAT
     * modules and their parameters) */
    qg_sgd_free(opt);
    qg_tensor_list_free(ps);
    qg_loader_free(tl);
    qg_module_eval(m);
    qg_enable_observer(m, false);
    qg_loader *vl = qg_loader_new(&test, &(qg_loader_opts){.batch = 200, .mean = 0.2860, .std = 0.3530});
    const int64_t ntest = test.labels->shape[0];
    int64_t *pred_fq = malloc(sizeof *pred_fq * (size_t)ntest), *pred_int8 = malloc(sizeof *pred_int8 * (size_t)ntest);
    double acc_fq = pred_fq && pred_int8 ? evaluate(m, vl, pred_fq) : -1;
    if (acc_fq < 0) {
        fprintf(stderr, "custom_model: %s\n", pred_fq && pred_int8 ? qg_last_error() : "out of memory");
        return 1;
    }
    printf("custom_model: %lld steps, fake-quant test accuracy %.4f\n", (long long)step, acc_fq);

    /* convert to int8 in place, the hook building each ResidualBlock's int8 version,
     * and evaluate that. (qg_quantized_save knows only qgrad's own module types, not
     * QuantizedResidualBlock, so this model cannot be saved as an int8 file.) */
    qg_convert_custom hook = {.type_name = "ResidualBlock", .convert = residual_convert};
    double acc_int8 = -1;
    if (!qg_convert(m, &(qg_convert_opts){.engine = qg_get_qengine(), .ncustom = 1, .custom = &hook})) {
        printf("converted: block is %s, block.fc1 is %s\n", qg_module_get(m, "block")->type->name,
               qg_module_get(m, "block.fc1")->type->name);
        acc_int8 = evaluate(m, vl, pred_int8);
    }
    if (acc_int8 < 0) {
        fprintf(stderr, "custom_model: %s\n", qg_last_error());
        return 1;
    }
    int64_t differ = 0;
    for (int64_t i = 0; i < ntest; i++) differ += pred_fq[i] != pred_int8[i];
    printf("custom_model: int8 accuracy %.4f (fake-quant %.4f), %lld of %lld predictions differ\n", acc_int8, acc_fq,
           (long long)differ, (long long)ntest);
    free(pred_fq), free(pred_int8);
    qg_loader_free(vl);
    qg_module_free(m);
    qg_dataset_free(&train), qg_dataset_free(&test);
    return 0;
}
