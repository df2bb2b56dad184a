/* The models of the export tests (test_export_c.c, test_export_onnx.c): built from the
 * quantized constructors with random weights and qparams, covering every exportable
 * layer kind, and the fmnist models (examples/fmnist_model.h). */
#ifndef QG_EXPORT_MODELS_H
#define QG_EXPORT_MODELS_H
#include "../examples/fmnist_model.h"
#include "qgrad/optim.h"
#include "test_util.h"

#include <ctype.h>

/* ------------------------------------------------------------- model building */

static int64_t numel(int nd, const int64_t *s) {
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= s[d];
    return n;
}

typedef struct {
    qg_rng g;
    qg_qengine e;
    double s;   /* the running scale and zero point */
    int64_t z;
} builder;

/* A qint8 weight of `bits` bits, per channel along dim 0 or per tensor, and its
 * typical magnitude (for the output scale). */
static qg_tensor *weight(builder *b, int ndim, const int64_t *shape, int bits, bool per_channel, double *sw) {
    const int64_t n = numel(ndim, shape), out = shape[0];
    const int hi = (1 << (bits - 1)) - 1;
    int8_t *v = malloc((size_t)n);
    double *sc = malloc(sizeof(double) * (size_t)out);
    int64_t *zp = calloc((size_t)out, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) v[i] = (int8_t)((int)(qg_rng_next_u64(&b->g) % (uint64_t)(2 * hi + 2)) - hi - 1);
    for (int64_t c = 0; c < out; c++) sc[c] = (float)(0.004 + 0.02 * qg_rng_uniform(&b->g));
    qg_tensor *ints = qg_tensor_from_data(QG_I8, ndim, shape, v), *w;
    if (per_channel) {
        qg_tensor *s = qg_tensor_from_data(QG_F64, 1, &out, sc), *z = qg_tensor_from_data(QG_I64, 1, &out, zp);
        w = qg_tensor_clone(qg_make_per_channel_quantized(ints, s, z, 0));
        qg_tensor_free(s), qg_tensor_free(z);
    } else {
        w = qg_tensor_clone(qg_make_per_tensor_quantized(ints, sc[0], 0));
    }
    *sw = (per_channel ? 0.014 : sc[0]) * (hi + 1) / 2.0;
    qg_tensor_free(ints), free(v), free(sc), free(zp);
    return w;
}

/* A static layer: dim 0 Linear (in, out), 1 Conv1d, 2 Conv2d (kernel k[0] x k[1]). */
static qg_module *layer(builder *b, int dim, int64_t in, int64_t out, const int *k, const qg_qlayer_args *a,
                        int bits, bool per_channel, bool bias) {
    const int G = a->groups ? a->groups : 1;
    int64_t shape[4] = {out, in / G, dim ? k[dim == 2 ? 0 : 1] : 0, dim ? k[1] : 0};
    int nd = dim == 0 ? 2 : dim + 2;
    double sw;
    qg_tensor *w = weight(b, nd, shape, bits, per_channel, &sw);
    qg_tensor *bs = bias ? qg_tensor_randn(&b->g, QG_F32, 1, &out) : NULL;
    const double kdim = (double)numel(nd - 1, shape + 1);
    const double sy = b->s * sw * 40.0 * sqrt(kdim) / 30.0;
    const int64_t zy = a->relu ? (int64_t)(qg_rng_next_u64(&b->g) % 40) : 60 + (int64_t)(qg_rng_next_u64(&b->g) % 80);
    qg_qlayer_args args = *a;
    args.dim = dim;
    qg_module *m = qg_quantized_layer_new(w, bs, sy, zy, &args, b->e);
    CHECK(m != NULL, "layer: %s", qg_last_error());
    b->s = (float)sy, b->z = zy;
    qg_tensor_free(w), qg_tensor_free(bs);
    return m;
}

static qg_module *dynamic(builder *b, int64_t in, int64_t out, bool per_channel, bool bias) {
    double sw;
    qg_tensor *w = weight(b, 2, (int64_t[]){out, in}, 8, per_channel, &sw);
    qg_tensor *bs = bias ? qg_tensor_randn(&b->g, QG_F32, 1, &out) : NULL;
    qg_module *m = qg_quantized_dynamic_linear_new(w, bs, true, b->e);
    CHECK(m != NULL, "dynamic: %s", qg_last_error());
    qg_tensor_free(w), qg_tensor_free(bs);
    return m;
}

/* a Sequential that starts with Quantize(s, z) */
static qg_module *begin(builder *b, qg_qengine e, uint64_t seed, double s, int64_t z) {
    *b = (builder){.e = e, .s = (float)s, .z = z};
    qg_rng_init(&b->g, seed);
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "quant", qg_quantized_quantize_new(s, z, QG_QUINT8));
    return m;
}

#define ARGS(...) (&(qg_qlayer_args){__VA_ARGS__})
#define K(a, b) ((const int[]){a, b})

/* every layer kind in one model: input (3, 11, 13). The dynamic Linears end it; for
 * ONNX (onnx true) one begins it instead, where no rounding of the runtime's changes
 * its input's range. ONNX has no divisor_override and no uneven adaptive windows, and
 * its runtimes round an average's ties their own way: its variant is without those,
 * and with averages over odd windows, where no ties arise. */
static qg_module *model_all(qg_qengine e, bool onnx) {
    builder b;
    qg_module *m = begin(&b, e, 11, 0.03, 100), *all = m;
    if (onnx) { /* the dynamic Linear first, on f32 (its output is ONNX Runtime's exactly) */
        all = qg_sequential_of(3, (qg_named_module[]){{"dyn0", dynamic(&b, 13, 13, true, true)},
                                                      {"frelu0", qg_nn_relu_new()}, {"net", m}});
    }
    qg_sequential_add(m, "c1", layer(&b, 2, 3, 8, K(3, 3), ARGS(.padding = {1, 1}), 8, true, true));
    qg_sequential_add(m, "c2", layer(&b, 2, 8, 6, K(3, 2), ARGS(.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2},
                                                              .groups = 2, .relu = true), 4, false, false));
    qg_sequential_add(m, "relu", qg_nn_relu_new());
    qg_sequential_add(m, "mp", qg_nn_maxpool2d_new(3, 3, &(qg_pool_opts){.stride = {2, 2}, .padding = {1, 1},
                                                                         .ceil_mode = true}));
    if (onnx) { /* (6, 4, 7) -> (6, 4, 7) -> (6, 2, 5) -> (6, 2, 5) */
        qg_sequential_add(m, "ap", qg_nn_avgpool2d_new(3, 3, &(qg_pool_opts){.stride = {1, 1}, .padding = {1, 1}}));
        qg_sequential_add(m, "ap2", qg_nn_avgpool2d_new(3, 3, &(qg_pool_opts){.stride = {1, 1}, .ceil_mode = true}));
        qg_sequential_add(m, "ad", qg_nn_adaptive_avgpool2d_new(2, 5));
    } else { /* (6, 4, 7) -> (6, 5, 8) -> (6, 4, 7) -> (6, 3, 2) */
        qg_sequential_add(m, "ap", qg_nn_avgpool2d_new(2, 2, &(qg_pool_opts){.stride = {1, 1}, .padding = {1, 1},
                                                                             .no_count_include_pad = true}));
        qg_sequential_add(m, "ap2", qg_nn_avgpool2d_new(2, 2, &(qg_pool_opts){.stride = {1, 1}, .ceil_mode = true,
                                                                              .divisor_override = 3}));
        qg_sequential_add(m, "ad", qg_nn_adaptive_avgpool2d_new(3, 2));
    }
    qg_sequential_add(m, "flat", qg_nn_flatten_new(1, -1));
    qg_sequential_add(m, "drop", qg_nn_dropout_new(0.3, &b.g));
    qg_sequential_add(m, "id", qg_nn_identity_new());
    qg_sequential_add(m, "fc1", layer(&b, 0, onnx ? 60 : 36, 20, NULL, ARGS(0), 8, true, true));
    qg_sequential_add(m, "fc2", layer(&b, 0, 20, 12, NULL, ARGS(.relu = true), 4, false, true));
    qg_sequential_add(m, "fc3", layer(&b, 0, 12, 10, NULL, ARGS(0), 8, true, true));
    qg_sequential_add(m, "dq", qg_quantized_dequantize_new());
    if (onnx) return all;
    qg_sequential_add(m, "dyn1", dynamic(&b, 10, 9, false, true));
    qg_sequential_add(m, "frelu", qg_nn_relu_new());
    qg_sequential_add(m, "dyn2", dynamic(&b, 9, 5, true, false));
    return m;
}

/* single-channel and 1 x 1 pools (PyTorch's channels-last and qnnpack kernels): (1, 9, 9) */
static qg_module *model_pools(qg_qengine e, bool onnx) {
    builder b;
    qg_module *m = begin(&b, e, 12, 0.02, 128);
    qg_sequential_add(m, "c1", layer(&b, 2, 1, 1, K(3, 3), ARGS(.padding = {1, 1}), 8, false, true));
    /* 9 -> 5: ceil mode with a last window that would start in the padding, which PyTorch drops */
    qg_sequential_add(m, "mp", qg_nn_maxpool2d_new(2, 2, &(qg_pool_opts){.padding = {1, 1}, .ceil_mode = true}));
    qg_sequential_add(m, "ap", qg_nn_avgpool2d_new(3, 3, &(qg_pool_opts){.stride = {2, 2}, .padding = {1, 1}}));
    qg_sequential_add(m, "ad1", qg_nn_adaptive_avgpool2d_new(onnx ? 3 : 2, onnx ? 3 : 2)); /* ONNX: even windows */
    qg_sequential_add(m, "c2", layer(&b, 2, 1, 4, K(1, 1), ARGS(0), 8, true, true));
    qg_sequential_add(m, "ad", qg_nn_adaptive_avgpool2d_new(1, 1));
    qg_sequential_add(m, "ap1", qg_nn_avgpool2d_new(1, 1, NULL));
    qg_sequential_add(m, "flat", qg_nn_flatten_new(1, -1));
    qg_sequential_add(m, "fc", layer(&b, 0, 4, 3, NULL, ARGS(0), 8, false, false));
    qg_sequential_add(m, "dq", qg_quantized_dequantize_new());
    return m;
}

/* 1-d convolutions: (4, 17) */
static qg_module *model_1d(qg_qengine e) {
    builder b;
    qg_module *m = begin(&b, e, 13, 0.05, 90);
    qg_sequential_add(m, "c1", layer(&b, 1, 4, 6, K(1, 3), ARGS(.stride = {2}, .padding = {1}, .dilation = {2},
                                                              .groups = 2), 8, true, true));
    qg_sequential_add(m, "c2", layer(&b, 1, 6, 5, K(1, 1), ARGS(.relu = true), 4, true, false));
    qg_sequential_add(m, "flat", qg_nn_flatten_new(1, -1));
    qg_sequential_add(m, "fc", layer(&b, 0, 5 * 8, 4, NULL, ARGS(0), 8, true, true));
    qg_sequential_add(m, "dq", qg_quantized_dequantize_new());
    return m;
}

/* A Fashion-MNIST classifier with every exportable layer kind that ONNX also has,
 * prepared for QAT with qconfig nbit 8/4 (4-bit per-channel weights): ConvBnReLU2d, a
 * strided, dilated, grouped ConvReLU2d, a ConvBn2d, ReLU, MaxPool2d (padding, ceil
 * mode), AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, LinearBn1d, LinearReLU and
 * Linear, after a dynamic Linear on the image's rows (28 -> 28). With sd, its state
 * loaded from there. */
static qg_module *all_layers_qat(const qg_tensor_dict *sd) {
    static qg_rng g; /* the Dropout keeps a pointer to it: it must outlive the model */
    qg_rng_init(&g, 21);
    qg_module *m = qg_sequential_of(18, (qg_named_module[]){
        {"quant", qg_quant_stub_new()},
        {"c1", qg_nn_conv2d_new(1, 8, 3, 3, &(qg_conv_opts){.padding = {1, 1}}, &g)},
        {"b1", qg_nn_batchnorm2d_new(8, NULL)},
        {"r1", qg_nn_relu_new()},
        {"mp", qg_nn_maxpool2d_new(3, 3, &(qg_pool_opts){.stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true})},
        {"c2", qg_nn_conv2d_new(8, 16, 3, 2, &(qg_conv_opts){.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2},
                                                             .groups = 2}, &g)},
        {"r2", qg_nn_relu_new()},
        {"c3", qg_nn_conv2d_new(16, 16, 1, 1, &(qg_conv_opts){.no_bias = true}, &g)},
        {"b3", qg_nn_batchnorm2d_new(16, NULL)},
        {"relu", qg_nn_relu_new()},
        {"ap", qg_nn_avgpool2d_new(3, 3, &(qg_pool_opts){.stride = {1, 1}, .padding = {1, 1}})},
        {"ad", qg_nn_adaptive_avgpool2d_new(8, 5)}, /* (16, 8, 15) -> (16, 8, 5): odd windows, no ties */
        {"flat", qg_nn_flatten_new(1, -1)},
        {"drop", qg_nn_dropout_new(0.1, &g)},
        {"fc1", qg_nn_linear_new(640, 64, NULL, &g)},
        {"bn1", qg_nn_batchnorm1d_new(64, NULL)},
        {"fc2", qg_nn_linear_new(64, 32, NULL, &g)},
        {"r3", qg_nn_relu_new()},
    });
    qg_status st = qg_sequential_add(m, "fc3", qg_nn_linear_new(32, 10, NULL, &g));
    if (!st) st = qg_sequential_add(m, "dequant", qg_dequant_stub_new());
    qg_qconfig qc;
    if (!st) st = qg_qconfig_nbit(8, 4, &qc);
    if (!st)
        st = qg_fuse_modules_qat(m, 5, (const char *const *[]){(const char *[]){"c1", "b1", "r1"}, (const char *[]){"c2", "r2"},
                                                              (const char *[]){"c3", "b3"}, (const char *[]){"fc1", "bn1"},
                                                              (const char *[]){"fc2", "r3"}},
                                 (int[]){3, 2, 2, 2, 2});
    if (!st) st = qg_prepare_qat(m, &qc);
    if (!st) st = qg_qconfig_preset("dynamic", &qc);
    if (!st) { /* the dynamic Linear first, on the image's rows, f32 in and out */
        qg_module *fl = qg_nn_linear_new(28, 28, NULL, &g), *dyn = fl ? qg_qat_dynamic_linear_from_float(fl, &qc) : NULL;
        qg_module *all = dyn ? qg_sequential_of(2, (qg_named_module[]){{"dyn", dyn}, {"net", m}}) : NULL;
        st = all ? QG_OK : qg_last_status();
        if (all) m = all;
    }
    if (!st && sd) st = qg_module_load_state_dict(m, sd, true);
    CHECK(!st, "all_layers_qat: %s", qg_last_error());
    if (st) qg_module_free(m);
    return st ? NULL : m;
}

/* all_layers_qat trained `steps` steps of SGD (batch 64), as a state dict; NULL without
 * the dataset */
static qg_tensor_dict *trained_all_state(int steps) {
    qg_dataset train = {0};
    if (qg_dataset_load_mnist("/usr/share/datasets/fashion-mnist", true, &train)) return NULL;
    qg_module *m = all_layers_qat(NULL);
    qg_loader *ld = m ? qg_loader_new(&train, &(qg_loader_opts){.batch = 64, .shuffle = true, .seed = 3,
                                                                 .drop_last = true, .mean = 0.2860, .std = 0.3530})
                      : NULL;
    qg_tensor_list *ps = ld ? qg_module_parameters(m) : NULL;
    qg_sgd *opt = ps ? qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.05, .momentum = 0.9}) : NULL;
    qg_status st = opt ? QG_OK : qg_last_status();
    qg_tensor *x, *y;
    if (opt) qg_loader_start_epoch(ld, 0);
    for (int i = 0; !st && i < steps && qg_loader_next(ld, &x, &y); i++) {
        qg_sgd_zero_grad(opt);
        st = qg_backward(qg_cross_entropy(qg_module_forward(m, x), y, QG_REDUCTION_MEAN), NULL);
        if (!st) st = qg_sgd_step(opt);
        qg_tape_reset(NULL);
    }
    CHECK(!st, "trained_all: %s", qg_last_error());
    qg_tensor_dict *sd = st ? NULL : qg_module_state_dict(m);
    qg_sgd_free(opt), qg_tensor_list_free(ps), qg_loader_free(ld), qg_dataset_free(&train), qg_module_free(m);
    return sd;
}

/* the trained model converted under e */
static qg_module *trained_all(const qg_tensor_dict *sd, qg_qengine e) {
    qg_module *m = sd ? all_layers_qat(sd) : NULL;
    if (!m) return NULL;
    qg_module_eval(m);
    if (qg_convert(m, &(qg_convert_opts){.engine = e})) {
        CHECK(0, "trained_all: convert: %s", qg_last_error());
        qg_module_free(m);
        return NULL;
    }
    return m;
}

/* The trained all-layer model converted under each engine, given to check (nothing
 * without the dataset) */
static void trained_all_models(void (*check)(const char *name, qg_module *m, qg_qengine e)) {
    qg_tensor_dict *sd = trained_all_state(150);
    for (int k = 0; sd && k < 2; k++) {
        const qg_qengine e = k ? QG_QENGINE_QNNPACK : QG_QENGINE_ONEDNN;
        qg_set_qengine(e); /* the pools follow it */
        qg_module *m = trained_all(sd, e);
        if (m) check(k ? "trained_all_qnnpack" : "trained_all_onednn", m, e);
        qg_module_free(m);
    }
    qg_tensor_dict_free(sd);
    qg_set_qengine(QG_QENGINE_ONEDNN);
}

/* The first *n Fashion-MNIST test images, normalised as examples/fmnist's loader does,
 * and their labels (*n cut to the set); NULL without the dataset. */
static float *fmnist_images(int64_t *n, int64_t **labels) {
    qg_dataset test = {0};
    *labels = NULL;
    if (qg_dataset_load_mnist("/usr/share/datasets/fashion-mnist", false, &test)) return NULL;
    if (*n > test.images->shape[0]) *n = test.images->shape[0];
    const uint8_t *px = qg_tensor_data(test.images);
    const uint8_t *lb = qg_tensor_data(test.labels); /* U8 */
    float *x = malloc(sizeof(float) * (size_t)(*n * 784));
    *labels = malloc(sizeof(int64_t) * (size_t)*n);
    for (int64_t i = 0; i < *n * 784; i++) x[i] = ((float)px[i] / 255.0f - 0.2860f) / 0.3530f;
    for (int64_t i = 0; i < *n; i++) (*labels)[i] = lb[i];
    qg_dataset_free(&test);
    return x;
}

/* how many of n rows of k scores have their first maximum at the label */
static int64_t correct(const float *y, const int64_t *labels, int64_t n, int64_t k) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++) best = y[i * k + j] > y[i * k + best] ? j : best;
        c += labels && best == labels[i];
    }
    return c;
}

/* examples/fmnist's CNN and MLP from the checkpoints of int8_models.safetensors,
 * converted under each engine, given to check as fmnist_<model>_<engine> */
static void fixture_models(void (*check)(const char *name, qg_module *m)) {
    qg_tensor_dict *fx = qg_safetensors_load(FIXTURES "/int8_models.safetensors");
    CHECK(fx != NULL, "fixture: %s", qg_last_error());
    const qg_qengine engines[2] = {QG_QENGINE_ONEDNN, QG_QENGINE_QNNPACK};
    for (int kind = 0; fx && kind < 2; kind++)
        for (int e = 0; e < 2; e++) {
            const char *k = kind ? "mlp" : "cnn";
            char pre[32], name[64];
            snprintf(pre, sizeof pre, "%s.ckpt.", k);
            snprintf(name, sizeof name, "fmnist_%s_%s", k, qg_qengine_name(engines[e]));
            qg_module *m = fmnist_qat_model(k, fx, pre);
            qg_status st = m ? qg_convert(m, &(qg_convert_opts){.engine = engines[e]}) : qg_last_status();
            CHECK(!st, "%s: %s", name, qg_last_error());
            if (!st) check(name, m);
            qg_module_free(m);
        }
    qg_tensor_dict_free(fx);
}

/* Each int8 model file of QG_EXPORT_INT8 (paths separated by ':', as qg_quantized_save
 * writes them: the figures of a trained model), loaded and given to check. */
static void saved_models(void (*check)(const char *name, qg_module *m)) {
    const char *env = getenv("QG_EXPORT_INT8");
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", env ? env : "");
    for (char *save = NULL, *p = strtok_r(buf, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        qg_module *m = qg_quantized_load(p);
        CHECK(m != NULL, "%s: %s", p, qg_last_error());
        const char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
        char name[64];
        int k = snprintf(name, sizeof name, "saved_");
        for (const char *c = base; *c && *c != '.' && k < 60; c++) name[k++] = isalnum((unsigned char)*c) ? *c : '_';
        name[k] = 0;
        if (m) check(name, m);
        qg_module_free(m);
    }
}
#endif
