/* Hostile arguments to the quantized tensors (autograd.h) and to convert and the int8
 * modules (quant.h): NULLs, wrong dtypes and shapes, bad qparams, and the models
 * convert must refuse (untrained, in training mode, never prepared, converted twice),
 * each with a message and the model left as it was; qg_convert_module's refusals. */
#include "qgrad/quant.h"
#include "hostile.h"

static qg_tensor *f32(int64_t n, float v) { return qg_tensor_full(QG_F32, 1, &n, v); }

static void test_quantized_tensors(void) {
    qg_tensor *x = f32(4, 0.5f), *x64 = qg_tensor_zeros(QG_F64, 1, (int64_t[]){4});
    qg_tensor *s = f32(4, 0.1f), *z = qg_tensor_zeros(QG_I64, 1, (int64_t[]){4}), *s3 = f32(3, 0.1f);
    qg_tensor *u8 = qg_tensor_zeros(QG_U8, 1, (int64_t[]){4});
    FAILS(qg_quantize_per_tensor(NULL, 0.1, 0, QG_QUINT8));
    FAILS(qg_quantize_per_tensor(x, 0, 0, QG_QUINT8));
    FAILS(qg_quantize_per_tensor(x, -1, 0, QG_QUINT8));
    FAILS(qg_quantize_per_tensor(x, NAN, 0, QG_QUINT8));
    FAILS(qg_quantize_per_tensor(x, 1e300, 0, QG_QUINT8)); /* not a float32 */
    FAILS(qg_quantize_per_tensor(x, 0.1, 256, QG_QUINT8));
    FAILS(qg_quantize_per_tensor(x, 0.1, -129, QG_QINT8));
    FAILS(qg_quantize_per_tensor(x, 0.1, 0, (qg_qdtype)7));
    FAILS(qg_quantize_per_tensor(x64, 0.1, 0, QG_QUINT8)); /* PyTorch: float only */
    FAILS(qg_quantize_per_channel(x, NULL, z, 0, QG_QINT8));
    FAILS(qg_quantize_per_channel(x, s3, z, 0, QG_QINT8));
    FAILS(qg_quantize_per_channel(x, s, z, 1, QG_QINT8));
    FAILS(qg_quantize_per_channel(x, z, s, 0, QG_QINT8));
    qg_tensor *q = qg_quantize_per_tensor(x, 0.1, 3, QG_QUINT8);
    qg_tensor *qc = qg_quantize_per_channel(x, s, z, 0, QG_QINT8);
    CHECK(q && qc && qg_tensor_is_quantized(q) && !qg_tensor_is_quantized(x) && !qg_tensor_is_quantized(NULL),
          "quantize: %s", qg_last_error());
    CHECK(qg_tensor_qdtype(q) == QG_QUINT8 && qg_tensor_qdtype(qc) == QG_QINT8 && qg_tensor_qdtype(x) < 0,
          "tensor_qdtype");
    CHECK(qg_tensor_qscheme(q) == QG_PER_TENSOR_AFFINE && qg_tensor_qscheme(qc) == QG_PER_CHANNEL_AFFINE &&
              qg_tensor_qscheme(NULL) < 0, "tensor_qscheme");
    CHECK(qg_tensor_item(qg_int_repr(qg_select(q, 0, 0))) == 8 && fabs(qg_tensor_get(q, (int64_t[]){0}) - 0.5) < 1e-6,
          "quint8 of 0.5 at scale 0.1, zero point 3: %s", qg_last_error());
    CHECK(qg_q_scale(q) == 0.1 && qg_q_zero_point(q) == 3 && qg_q_per_channel_axis(qc) == 0, "accessors");
    FAILS_NAN(qg_q_scale(qc));
    FAILS_NAN(qg_q_scale(x));
    CHECK(qg_q_zero_point(qc) == INT64_MIN && *qg_last_error(), "q_zero_point per channel");
    CHECK(qg_q_per_channel_axis(q) == -1 && *qg_last_error(), "q_per_channel_axis per tensor");
    FAILS(qg_q_per_channel_scales(q));
    FAILS(qg_q_per_channel_zero_points(NULL));
    WORKS(qg_q_per_channel_scales(qc));
    WORKS(qg_q_per_channel_zero_points(qc));
    FAILS(qg_dequantize(NULL));
    FAILS(qg_dequantize(x));
    FAILS(qg_int_repr(x));
    WORKS(qg_dequantize(qc));
    FAILS(qg_make_per_tensor_quantized(NULL, 0.1, 0));
    FAILS(qg_make_per_tensor_quantized(x, 0.1, 0)); /* floats are not integers */
    FAILS(qg_make_per_tensor_quantized(u8, 0.1, 300));
    FAILS(qg_make_per_tensor_quantized(q, 0.1, 0)); /* already quantized */
    FAILS(qg_make_per_channel_quantized(u8, s3, z, 0));
    FAILS(qg_make_per_channel_quantized(u8, s, z, 2));
    WORKS(qg_make_per_channel_quantized(u8, s, z, 0));
    /* mixing with ordinary tensors is refused */
    FAILS(qg_add(q, q));
    FAILS(qg_to_dtype(q, QG_F32));
    FAILS(qg_transpose(qc, 0, 0)); /* per-channel: no views */
    FAILS(qg_gt(q, u8));
    FAILS(qg_cat(1, &q, 0));
    FAILS_ST(qg_tensor_copy_(u8, q));
    FAILS_ST(qg_tensor_copy_to(q, QG_F32, (float[4]){0}));
    WORKS_ST(qg_tensor_copy_to(q, QG_U8, (uint8_t[4]){0}));
    qg_tensor *own = qg_tensor_clone(q);
    CHECK(own && qg_tensor_is_quantized(own) && qg_q_zero_point(own) == 3, "clone keeps the mapping");
    FAILS_ST(qg_tensor_fill_(own, 1));
    FAILS_ST(qg_tensor_set(own, (int64_t[]){0}, 1));
    FAILS_ST(qg_tensor_resize_(own, 1, (int64_t[]){2}));
    FAILS(qg_max_pool2d(qc, (int[]){1, 1}, NULL, NULL, NULL, false));
    FAILS(qg_dropout(q, 0.5, true, NULL));
    WORKS(qg_dropout(q, 0.5, false, NULL));
    WORKS(qg_relu(q));
    qg_tensor_free(own);
    FAILS_ST(qg_set_qengine((qg_qengine)5));
    WORKS_ST(qg_set_qengine(QG_QENGINE_QNNPACK));
    CHECK(qg_get_qengine() == QG_QENGINE_QNNPACK && !strcmp(qg_qengine_name(QG_QENGINE_QNNPACK), "qnnpack") &&
              !strcmp(qg_qengine_name((qg_qengine)9), "?"), "qengine");
    qg_set_qengine(QG_QENGINE_ONEDNN);
    qg_tensor_free(x), qg_tensor_free(x64), qg_tensor_free(s), qg_tensor_free(z), qg_tensor_free(s3), qg_tensor_free(u8);
    qg_tape_reset(NULL);
}

#define FAILS_M(call)                                                                                \
    do {                                                                                             \
        qg_clear_error();                                                                            \
        qg_module *m_ = (call);                                                                      \
        CHECK(!m_ && *qg_last_error(), "%s: expected an error (%s)", #call, qg_last_error());       \
        qg_module_free(m_);                                                                          \
    } while (0)

static void test_modules(void) {
    qg_tensor *wf = qg_tensor_full(QG_F32, 2, (int64_t[]){3, 4}, 0.2);
    qg_tensor *w = qg_quantize_per_tensor(wf, 0.01, 0, QG_QINT8), *wz = qg_quantize_per_tensor(wf, 0.01, 1, QG_QINT8);
    qg_tensor *wu = qg_quantize_per_tensor(wf, 0.01, 0, QG_QUINT8);
    qg_tensor *b = qg_tensor_zeros(QG_F32, 1, (int64_t[]){3}), *b2 = qg_tensor_zeros(QG_F32, 1, (int64_t[]){2});
    const qg_qlayer_args lin = {0}, conv = {.dim = 2};
    FAILS_M(qg_quantized_quantize_new(0, 0, QG_QUINT8));
    FAILS_M(qg_quantized_quantize_new(0.1, 300, QG_QUINT8));
    FAILS_M(qg_quantized_layer_new(NULL, b, 0.1, 0, &lin, QG_QENGINE_ONEDNN));
    FAILS_M(qg_quantized_layer_new(w, b, 0.1, 0, NULL, QG_QENGINE_ONEDNN));
    FAILS_M(qg_quantized_layer_new(w, b2, 0.1, 0, &lin, QG_QENGINE_ONEDNN));
    FAILS_M(qg_quantized_layer_new(wz, b, 0.1, 0, &lin, QG_QENGINE_ONEDNN)); /* weight zero point */
    FAILS_M(qg_quantized_layer_new(wu, b, 0.1, 0, &lin, QG_QENGINE_ONEDNN)); /* quint8 weight */
    FAILS_M(qg_quantized_layer_new(w, b, 0.1, 0, &conv, QG_QENGINE_ONEDNN)); /* a 2-d weight for Conv2d */
    FAILS_M(qg_quantized_layer_new(w, b, 0.1, 0, &lin, (qg_qengine)3));
    FAILS_M(qg_quantized_layer_new(w, b, -0.1, 0, &lin, QG_QENGINE_ONEDNN));
    FAILS_M(qg_quantized_layer_new(w, b, 0.1, 0, &(qg_qlayer_args){.dim = 3}, QG_QENGINE_ONEDNN));
    FAILS_M(qg_quantized_dynamic_linear_new(NULL, b, true, QG_QENGINE_ONEDNN));
    FAILS_M(qg_quantized_dynamic_linear_new(wz, b, true, QG_QENGINE_QNNPACK));
    qg_module *l = qg_quantized_layer_new(w, b, 0.1, 0, &lin, QG_QENGINE_ONEDNN);
    qg_module *d = qg_quantized_dynamic_linear_new(w, NULL, true, QG_QENGINE_QNNPACK);
    qg_module *qm = qg_quantized_quantize_new(0.05, 10, QG_QUINT8), *dq = qg_quantized_dequantize_new();
    CHECK(l && d && qm && dq, "quantized modules: %s", qg_last_error());
    qg_tensor *x = qg_tensor_full(QG_F32, 2, (int64_t[]){2, 4}, 1.0), *x5 = qg_tensor_zeros(QG_F32, 2, (int64_t[]){2, 5});
    qg_tensor *xq = qg_module_forward(qm, x);
    CHECK(xq && qg_module_forward(dq, qg_module_forward(l, xq)), "int8 chain: %s", qg_last_error());
    FAILS(qg_module_forward(l, x));                        /* float into a static layer */
    FAILS(qg_module_forward(l, qg_module_forward(qm, x5))); /* 5 features, want 4 */
    FAILS(qg_module_forward(l, NULL));
    FAILS(qg_module_forward(qm, xq)); /* quantized into Quantize */
    FAILS(qg_module_forward(dq, x));  /* float into DeQuantize */
    FAILS(qg_module_forward(d, xq));  /* the dynamic Linear takes f32 */
    FAILS(qg_module_forward(d, x5));
    WORKS(qg_module_forward(d, x));
    qg_module_free(l), qg_module_free(d), qg_module_free(qm), qg_module_free(dq);
    qg_tensor_free(b), qg_tensor_free(b2), qg_tensor_free(x), qg_tensor_free(x5), qg_tensor_free(wf);
    qg_tape_reset(NULL);
}

static qg_module *small_model(void) {
    return qg_sequential_of(4, (qg_named_module[]){{"quant", qg_quant_stub_new()},
                                                  {"fc", qg_nn_linear_new(4, 3, NULL, NULL)},
                                                  {"relu", qg_nn_relu_new()},
                                                  {"dequant", qg_dequant_stub_new()}});
}

/* the model's state dict is the same as before */
static bool unchanged(const qg_module *m, const qg_tensor_dict *before) {
    qg_tensor_dict *now = qg_module_state_dict(m);
    bool same = now && qg_tensor_dict_size(now) == qg_tensor_dict_size(before);
    for (int i = 0; same && i < qg_tensor_dict_size(now); i++)
        same = !strcmp(qg_tensor_dict_name(now, i), qg_tensor_dict_name(before, i)) &&
               tst_bitwise_equal(qg_tensor_dict_at(now, i), qg_tensor_dict_at(before, i));
    qg_tensor_dict_free(now);
    return same;
}

static void test_convert_refusals(void) {
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    FAILS_ST(qg_convert(NULL, NULL));
    qg_module *m = small_model();
    FAILS_ST(qg_convert(m, &(qg_convert_opts){.engine = (qg_qengine)4}));
    FAILS_ST(qg_convert(m, &(qg_convert_opts){.ncustom = 1}));
    qg_module_eval(m);
    FAILS_ST(qg_convert(m, NULL)); /* no qconfig: nothing to convert */
    CHECK(strstr(qg_last_error(), "prepare"), "the message says what to do: %s", qg_last_error());
    qg_prepare_qat(m, &qc);
    qg_module_train(m, true);
    qg_tensor_dict *before = qg_module_state_dict(m);
    FAILS_ST(qg_convert(m, NULL)); /* training mode */
    CHECK(strstr(qg_last_error(), "training mode") && unchanged(m, before), "training mode: %s", qg_last_error());
    qg_module_eval(m);
    FAILS_ST(qg_convert(m, NULL)); /* observers never ran */
    CHECK(strstr(qg_last_error(), "never run") && unchanged(m, before),
          "untrained: %s", qg_last_error());
    qg_tensor_dict_free(before);
    qg_module_train(m, true);
    qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 2, (int64_t[]){8, 4});
    CHECK(qg_module_forward(m, x) != NULL, "QAT forward: %s", qg_last_error());
    qg_module_eval(m);
    qg_tensor *want = qg_tensor_clone(qg_module_forward(m, x));
    qg_clear_error();
    WORKS_ST(qg_convert(m, NULL));
    CHECK(qg_module_is(qg_module_get(m, "fc"), "intrinsic.quantized.LinearReLU") ||
              qg_module_is(qg_module_get(m, "fc"), "quantized.Linear"), "fc converted: %s",
          qg_module_get(m, "fc") ? qg_module_get(m, "fc")->type->name : "?");
    qg_tensor *y = qg_module_forward(m, x);
    CHECK(y && qg_tensor_numel(y) == 24, "int8 forward: %s", qg_last_error());
    before = qg_module_state_dict(m);
    FAILS_ST(qg_convert(m, NULL)); /* twice */
    CHECK(strstr(qg_last_error(), "already") && unchanged(m, before), "twice: %s", qg_last_error());
    qg_tensor_dict_free(before);
    /* the int8 file */
    FAILS_ST(qg_quantized_save(NULL, "/tmp/x"));
    FAILS_ST(qg_quantized_save(m, NULL));
    FAILS_M(qg_quantized_load(NULL));
    FAILS_M(qg_quantized_load("/nonexistent/model.safetensors"));
    /* the C export */
    const qg_export_opts eo = {.ndim = 1, .shape = {4}};
    FAILS_ST(qg_export_c(NULL, "/tmp", "m", &eo, NULL));
    FAILS_ST(qg_export_c(m, NULL, "m", &eo, NULL));
    FAILS_ST(qg_export_c(m, "/tmp", NULL, &eo, NULL));
    FAILS_ST(qg_export_c(m, "/tmp", "m", NULL, NULL));
    FAILS_ST(qg_export_c(m, "/tmp", "", &eo, NULL));
    FAILS_ST(qg_export_c(m, "/tmp", "m", &(qg_export_opts){.ndim = 1, .shape = {-4}}, NULL));
    FAILS_ST(qg_export_c(m, "/tmp", "m", &(qg_export_opts){.ndim = 99}, NULL));
    FAILS_ST(qg_export_onnx(NULL, "/tmp/m.onnx", &eo));
    FAILS_ST(qg_export_onnx(m, NULL, &eo));
    FAILS_ST(qg_export_onnx(m, "/tmp/m.onnx", NULL));
    FAILS_ST(qg_export_onnx(m, "/tmp", &eo)); /* a folder */
    FAILS_ST(qg_export_onnx(m, "/tmp/m.onnx", &(qg_export_opts){.ndim = 1, .shape = {4}, .output_name = ""}));
    /* data-parallel training: MPI is not initialized in this process */
    qg_ddp_opts dopts = qg_ddp_default_opts();
    CHECK(dopts.bucket_cap_mb == 25 && dopts.broadcast_buffers, "ddp defaults are PyTorch's");
    FAILS_P(qg_ddp_new(NULL, NULL, NULL), qg_ddp_free);
    FAILS_P(qg_ddp_new(m, NULL, &dopts), qg_ddp_free);
    FAILS(qg_ddp_forward(NULL, x));
    FAILS_ST(qg_ddp_backward(NULL, NULL));
    CHECK(qg_ddp_rank(NULL) == -1 && qg_ddp_size(NULL) == -1, "rank and size of NULL are -1");
    CHECK(qg_ddp_num_buckets(NULL) == -1 && !dopts.sync_bn && !dopts.sync_observers,
          "NULL has -1 buckets; the sync options are off by default");
    qg_ddp_timing dt;
    qg_ddp_bucket db;
    FAILS_ST(qg_ddp_get_timing(NULL, &dt));
    FAILS_ST(qg_ddp_get_bucket(NULL, 0, &db));
    qg_ddp_free(NULL);
    /* fake_quant_calculate_qparams */
    qg_module *fq = qg_fake_quant_new(&qc.activation);
    qg_tensor *s = NULL, *z = NULL;
    FAILS_ST(qg_fake_quant_calculate_qparams(NULL, &s, &z));
    FAILS_ST(qg_fake_quant_calculate_qparams(m, &s, &z));
    WORKS_ST(qg_fake_quant_calculate_qparams(fq, &s, &z));
    CHECK(s && z && qg_tensor_item(s) == 1 && qg_tensor_item(z) == 0, "never observed: scale 1, zero point 0");
    qg_tensor_free(s), qg_tensor_free(z), qg_module_free(fq);
    qg_tensor_free(x), qg_tensor_free(want);
    qg_module_free(m);
    qg_tape_reset(NULL);
}

/* qg_convert_module, one module as a custom convert hook converts it: the refusals
 * name the module's type and what was expected; the module stays in its model */
/* A hook whose own qg_convert_module fails (the module put in training mode). */
static qg_module *failing_hook(qg_module *m, qg_qengine e, void *ctx) {
    (void)ctx;
    qg_module_train(m, true);
    qg_module *r = qg_convert_module(m, e);
    qg_module_train(m, false);
    return r;
}

static void test_convert_module(void) {
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    FAILS_M(qg_convert_module(NULL, QG_QENGINE_ONEDNN));
    qg_module *lin = qg_nn_linear_new(4, 3, NULL, NULL);
    qg_module_eval(lin);
    FAILS_M(qg_convert_module(lin, QG_QENGINE_ONEDNN)); /* a float Linear, not a QAT one */
    CHECK(strstr(qg_last_error(), "(Linear)") && strstr(qg_last_error(), "expected a QAT module"),
          "float Linear: %s", qg_last_error());
    qg_module *m = small_model();
    qg_prepare_qat(m, &qc);
    qg_module *fc = qg_module_get(m, "fc");
    FAILS_M(qg_convert_module(fc, QG_QENGINE_ONEDNN)); /* training mode */
    CHECK(strstr(qg_last_error(), "'fc' (qat.Linear) is in training mode"), "training mode: %s", qg_last_error());
    qg_module_eval(m);
    FAILS_M(qg_convert_module(fc, QG_QENGINE_ONEDNN)); /* observers never ran */
    CHECK(strstr(qg_last_error(), "never run"), "untrained: %s", qg_last_error());
    qg_module_train(m, true);
    qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 2, (int64_t[]){8, 4});
    CHECK(qg_module_forward(m, x) != NULL, "QAT forward: %s", qg_last_error());
    qg_module_eval(m);
    FAILS_M(qg_convert_module(fc, (qg_qengine)4));
    CHECK(strstr(qg_last_error(), "engine"), "unknown engine: %s", qg_last_error());
    qg_module *q = qg_convert_module(fc, QG_QENGINE_QNNPACK);
    qg_module *dq = qg_convert_module(qg_module_get(m, "dequant"), QG_QENGINE_ONEDNN);
    CHECK(q && qg_module_is(q, "quantized.Linear") && !q->training && dq && qg_module_is(dq, "quantized.DeQuantize") &&
              qg_module_get(m, "fc") == fc, "converted one module, left it in place: %s", qg_last_error());
    FAILS_M(qg_convert_module(q, QG_QENGINE_ONEDNN)); /* converted already */
    qg_convert_custom hook = {.type_name = "qat.Linear", .convert = failing_hook};
    FAILS_ST(qg_convert(m, &(qg_convert_opts){.engine = QG_QENGINE_ONEDNN, .ncustom = 1, .custom = &hook}));
    const char *e = qg_last_error(), *second = strstr(e, "convert: module '");
    CHECK(second && !strstr(second + 1, "convert: module '") && strstr(e, "'fc' (qat.Linear) is in training mode") &&
              qg_module_get(m, "fc") == fc,
          "a failing hook: named once, model unchanged: %s", e);
    qg_module_free(q), qg_module_free(dq), qg_module_free(lin), qg_module_free(m);
    qg_tensor_free(x);
    qg_tape_reset(NULL);
}

int main(void) {
    test_quantized_tensors();
    test_modules();
    test_convert_refusals();
    test_convert_module();
    qg_shutdown();
    CHECK(qg_live_allocations() == 0, "no leak: %lld blocks live", (long long)qg_live_allocations());
    return test_summary("test_hostile_api4");
}
