/* PyTorch parity of the int8 modules and of convert, per quantized engine (fixture:
 * tools/gen_int8_fixtures.py, docs/int8.md). For every case of the fixture:
 *  - the kernel: the quantized module built from PyTorch's converted weight, bias and
 *    qparams, fed PyTorch's quint8 input, against PyTorch's int_repr output;
 *  - convert: the same float module built in qgrad, prepared with the case's qconfig,
 *    given the QAT module's state before convert, put in eval mode and converted; its
 *    int8 weight, scales, bias and output qparams against PyTorch's, and its output.
 * Integer outputs go into a histogram of |qgrad - PyTorch| per engine; the test asks
 * for at least 99.9% exact and nothing more than 1 off. */
#include <cJSON.h>
#include <string.h>

#include "test_util.h"

static const char *engines[] = {"onednn", "qnnpack"};
static int64_t hist[2][3]; /* per engine: |diff| 0, 1, >= 2 */
static const char *cur_engine, *cur_case;

#define E(key) FX("%s.%s.%s", cur_engine, cur_case, key)
#define E_MAYBE(key) tst_fixture(tst_fx, TST_MAYBE, "%s.%s.%s", cur_engine, cur_case, key)

static int64_t ival(const qg_tensor *t) { return t ? (int64_t)qg_tensor_item(t) : 0; }

/* got (quantized or integer) against want (integer): histogram, and a line for a case
 * that is not exact. */
static void compare_ints(const char *what, int ei, const qg_tensor *got, const qg_tensor *want) {
    qg_tensor *g = got && got->quant ? qg_int_repr(got) : (qg_tensor *)got;
    CHECK(g && want && qg_tensor_numel(g) == qg_tensor_numel(want), "%s %s %s: output missing or of another size (%s)",
          cur_engine, cur_case, what, qg_last_error());
    if (!g || !want || qg_tensor_numel(g) != qg_tensor_numel(want)) return;
    int64_t n = qg_tensor_numel(g), off[3] = {0};
    double *a = tst_to_f64(g), *b = tst_to_f64(want);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        off[d == 0 ? 0 : d == 1 ? 1 : 2]++;
    }
    for (int k = 0; k < 3; k++) hist[ei][k] += off[k];
    if (off[1] || off[2])
        printf("  %s %-28s %-8s %lld of %lld off by 1, %lld by more\n", cur_engine, cur_case, what, (long long)off[1],
               (long long)n, (long long)off[2]);
    free(a), free(b);
}

static qg_tensor *fixture_qtensor(const char *pre) {
    char k[64];
    snprintf(k, sizeof k, "%s.int", pre);
    qg_tensor *ints = E(k);
    snprintf(k, sizeof k, "%s.scale", pre);
    double s = qg_tensor_item(E(k));
    snprintf(k, sizeof k, "%s.zp", pre);
    return qg_make_per_tensor_quantized(ints, s, ival(E(k)));
}

static qg_tensor *fixture_weight(void) {
    qg_tensor *w = E("w.int");
    if (ival(E("w.axis")) < 0) return qg_make_per_tensor_quantized(w, qg_tensor_item(E("w.scale")), ival(E("w.zp")));
    return qg_make_per_channel_quantized(w, E("w.scale"), E("w.zp"), 0);
}

static qg_status qconfig_of(const char *name, qg_qconfig *qc) {
    if (!strcmp(name, "fbgemm") || !strcmp(name, "qnnpack") || !strcmp(name, "dynamic")) return qg_qconfig_preset(name, qc);
    int a = 0, w = 0;
    if (sscanf(name, "nbit%d_%d", &a, &w) != 2) return QG_EINVAL;
    qg_status st = qg_qconfig_nbit(a, w, qc);
    if (strstr(name, "_pt")) qc->weight.qscheme = QG_PER_TENSOR_SYMMETRIC;
    return st;
}

static bool has(const char *kind, const char *s) { return strstr(kind, s) != NULL; }

/* The case's float model in qgrad: Sequential "0" (fused as fuse_modules_qat makes it). */
static qg_module *float_model(const char *kind, const int64_t *cfg) {
    qg_module *base, *bn = NULL;
    bool relu = has(kind, "relu");
    if (has(kind, "linear")) {
        base = qg_nn_linear_new(cfg[0], cfg[1], &(qg_linear_opts){.no_bias = !cfg[2]}, NULL);
        if (has(kind, "bn1d")) bn = qg_nn_batchnorm1d_new(cfg[1], NULL);
    } else {
        int dim = (int)cfg[0], k = 6;
        qg_conv_opts o = {.groups = (int)cfg[3], .no_bias = !cfg[4]};
        int kern[2], j = k + dim;
        for (int i = 0; i < dim; i++) {
            kern[i] = (int)cfg[k + i];
            o.stride[i] = (int)cfg[j + i], o.padding[i] = (int)cfg[j + dim + i], o.dilation[i] = (int)cfg[j + 2 * dim + i];
        }
        base = dim == 1 ? qg_nn_conv1d_new(cfg[1], cfg[2], kern[0], &o, NULL)
                        : qg_nn_conv2d_new(cfg[1], cfg[2], kern[0], kern[1], &o, NULL);
        if (has(kind, "bn")) bn = qg_nn_batchnorm2d_new(cfg[2], NULL);
    }
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "0", base);
    if (bn) qg_sequential_add(m, "1", bn);
    if (relu) qg_sequential_add(m, bn ? "2" : "1", qg_nn_relu_new());
    int n = 1 + (bn != NULL) + relu;
    if (n > 1 && qg_fuse_modules_qat(m, 1, (const char *const *[]){(const char *[]){"0", "1", "2"}}, &n)) {
        qg_module_free(m);
        return NULL;
    }
    return m;
}

/* qat.<k> of the case as "0.<k>" */
static qg_tensor_dict *qat_state(void) {
    char pre[128];
    int n = snprintf(pre, sizeof pre, "%s.%s.qat.", cur_engine, cur_case);
    qg_tensor_dict *d = qg_tensor_dict_new();
    for (int i = 0; i < qg_tensor_dict_size(tst_fx); i++) {
        const char *k = qg_tensor_dict_name(tst_fx, i);
        char name[300];
        if (strncmp(k, pre, (size_t)n)) continue;
        snprintf(name, sizeof name, "0.%s", k + n);
        qg_tensor_dict_put(d, name, qg_tensor_clone(qg_tensor_dict_at(tst_fx, i)));
    }
    return d;
}

/* The case converted by qgrad: its layer "0", or NULL (model in *owner). */
static qg_module *converted(const char *kind, const char *qcname, const int64_t *cfg, int ei, qg_module **owner) {
    qg_qconfig qc;
    bool dynamic = has(kind, "dynamic");
    *owner = NULL;
    CHECK(!qconfig_of(qcname, &qc), "%s: qconfig %s", cur_case, qcname);
    qg_module *m = float_model(kind, cfg);
    qg_status st = m ? QG_OK : qg_last_status();
    if (!st && dynamic) {
        qg_module *q = qg_qat_dynamic_linear_from_float(qg_module_remove_child(m, "0"), &qc);
        st = q ? qg_sequential_add(m, "0", q) : qg_last_status();
    } else if (!st) {
        st = qg_prepare_qat(m, &qc);
    }
    qg_tensor_dict *sd = qat_state();
    if (!st) st = qg_module_load_state_dict(m, sd, true);
    qg_tensor_dict_free(sd);
    if (!st) qg_module_eval(m);
    if (!st) st = qg_convert(m, &(qg_convert_opts){.engine = (qg_qengine)ei});
    CHECK(!st, "%s %s: convert: %s", cur_engine, cur_case, qg_last_error());
    *owner = m;
    return st ? NULL : qg_module_get(m, "0");
}

static void weighted_case(const char *kind, const char *qcname, int ei) {
    const int64_t *cfg = qg_tensor_data(E("cfg"));
    bool dynamic = has(kind, "dynamic"), linear = has(kind, "linear");
    qg_tensor *w = fixture_weight(), *bias = E_MAYBE("bias");
    qg_module *layer;
    if (dynamic) {
        layer = qg_quantized_dynamic_linear_new(w, bias, true, (qg_qengine)ei);
    } else {
        qg_qlayer_args a = {.dim = linear ? 0 : (int)cfg[0], .relu = linear ? cfg[3] != 0 : cfg[5] != 0};
        if (!linear) {
            int dim = (int)cfg[0], j = 6 + dim;
            a.groups = (int)cfg[3];
            for (int i = 0; i < dim; i++)
                a.stride[i] = (int)cfg[j + i], a.padding[i] = (int)cfg[j + dim + i], a.dilation[i] = (int)cfg[j + 2 * dim + i];
        }
        layer = qg_quantized_layer_new(w, bias, qg_tensor_item(E("out.scale")), ival(E("out.zp")), &a, (qg_qengine)ei);
    }
    CHECK(layer != NULL, "%s %s: layer: %s", cur_engine, cur_case, qg_last_error());
    qg_tensor *x = dynamic ? E("x") : fixture_qtensor("x");
    qg_tensor *y = layer ? qg_module_forward(layer, x) : NULL;
    if (dynamic)
        CHECK_TENSOR(y, E("y"), TST_BITWISE, "%s %s: dynamic output", cur_engine, cur_case);
    else
        compare_ints("kernel", ei, y, E("y.int"));
    qg_module_free(layer);

    qg_module *owner, *c = converted(kind, qcname, cfg, ei, &owner);
    if (c) {
        qg_tensor *cw = qg_module_buffer(c, "weight");
        CHECK_TENSOR(qg_int_repr(cw), E("w.int"), TST_BITWISE, "%s %s: converted weight", cur_engine, cur_case);
        if (ival(E("w.axis")) >= 0)
            CHECK_TENSOR(qg_q_per_channel_scales(cw), E("w.scale"), TST_BITWISE, "%s %s: weight scales", cur_engine, cur_case);
        else
            CHECK(qg_q_scale(cw) == qg_tensor_item(E("w.scale")), "%s %s: weight scale %.9g, want %.9g", cur_engine,
                  cur_case, qg_q_scale(cw), qg_tensor_item(E("w.scale")));
        qg_tensor *cb = qg_module_buffer(c, "bias");
        if (cb)
            CHECK_TENSOR(cb, bias, TST_BITWISE, "%s %s: bias", cur_engine, cur_case);
        else if (bias) /* qnnpack's packed weights hold a zero bias where the module has none */
            CHECK(qg_tensor_item(qg_sum(qg_abs(bias), 0, NULL, false)) == 0, "%s %s: no bias, want %s", cur_engine,
                  cur_case, "a zero one");
        if (!dynamic) {
            CHECK(qg_tensor_item(qg_module_buffer(c, "scale")) == (float)qg_tensor_item(E("out.scale")) &&
                      ival(qg_module_buffer(c, "zero_point")) == ival(E("out.zp")),
                  "%s %s: output qparams %.9g %lld, want %.9g %lld", cur_engine, cur_case,
                  qg_tensor_item(qg_module_buffer(c, "scale")), (long long)ival(qg_module_buffer(c, "zero_point")),
                  qg_tensor_item(E("out.scale")), (long long)ival(E("out.zp")));
            compare_ints("convert", ei, qg_module_forward(c, x), E("y.int"));
        } else {
            CHECK_TENSOR(qg_module_forward(c, x), E("y"), TST_BITWISE, "%s %s: converted dynamic", cur_engine, cur_case);
        }
    }
    qg_module_free(owner);
}

static void unweighted_case(const char *kind, int ei) {
    qg_tensor *cfgt = E_MAYBE("cfg");
    const int64_t *cfg = cfgt ? qg_tensor_data(cfgt) : NULL;
    if (has(kind, "quantize") && !has(kind, "dequantize")) {
        qg_module *q = qg_quantized_quantize_new(qg_tensor_item(E("scale")), ival(E("zp")), QG_QUINT8);
        compare_ints("quantize", ei, qg_module_forward(q, E("x")), E("y.int"));
        CHECK(!qg_module_forward(q, E("x64")) && qg_last_status() == QG_EDTYPE, "%s: f64 input is refused", cur_case);
        qg_clear_error();
        qg_module_free(q);
        return;
    }
    qg_tensor *x = fixture_qtensor("x"), *y = NULL;
    if (!strcmp(kind, "dequantize")) {
        qg_module *d = qg_quantized_dequantize_new();
        CHECK_TENSOR(qg_module_forward(d, x), E("y"), TST_BITWISE, "%s %s", cur_engine, cur_case);
        qg_module_free(d);
        return;
    }
    if (!strcmp(kind, "relu")) {
        y = qg_relu(x);
    } else if (!strcmp(kind, "flatten")) {
        y = qg_flatten(x, 1, -1);
    } else if (!strcmp(kind, "maxpool2d")) {
        y = qg_max_pool2d(x, (int[]){(int)cfg[0], (int)cfg[1]}, (int[]){(int)cfg[2], (int)cfg[3]},
                          (int[]){(int)cfg[4], (int)cfg[5]}, (int[]){(int)cfg[6], (int)cfg[7]}, cfg[8] != 0);
    } else if (!strcmp(kind, "avgpool2d")) {
        y = qg_avg_pool2d(x, (int[]){(int)cfg[0], (int)cfg[1]}, (int[]){(int)cfg[2], (int)cfg[3]},
                          (int[]){(int)cfg[4], (int)cfg[5]}, cfg[6] != 0, cfg[7] != 0, (int)cfg[8]);
    } else if (!strcmp(kind, "adaptive_avgpool2d")) {
        y = qg_adaptive_avg_pool2d(x, cfg[0], cfg[1]);
    }
    CHECK(y && qg_q_scale(y) == qg_tensor_item(E("y.scale")) && qg_q_zero_point(y) == ival(E("y.zp")),
          "%s %s: output qparams (%s)", cur_engine, cur_case, qg_last_error());
    compare_ints(kind, ei, y, E("y.int"));
}

int main(int argc, char **argv) {
    tst_fx = qg_safetensors_load(argc > 1 ? argv[1] : "tests/fixtures/int8_layers.safetensors");
    if (!tst_fx) return printf("no fixture: %s\n", qg_last_error()), 1;
    const char *cases = qg_tensor_dict_meta(tst_fx, "cases"), *skipped = qg_tensor_dict_meta(tst_fx, "skipped");
    CHECK(cases != NULL, "the fixture lists its cases");
    for (int ei = 0; ei < 2 && cases; ei++) {
        qg_set_qengine((qg_qengine)ei); /* the pools follow the engine, as PyTorch's do */
        char list[4096], *save = NULL;
        snprintf(list, sizeof list, "%s", cases);
        for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            char key[128];
            cur_engine = engines[ei], cur_case = name;
            snprintf(key, sizeof key, "%s.%s", cur_engine, cur_case);
            if (skipped && strstr(skipped, key)) continue;
            cJSON *p = cJSON_Parse(qg_tensor_dict_meta(tst_fx, key));
            const char *kind = cJSON_GetObjectItem(p, "kind")->valuestring;
            const cJSON *qc = cJSON_GetObjectItem(p, "qconfig");
            if (E_MAYBE("w.int"))
                weighted_case(kind, cJSON_IsString(qc) ? qc->valuestring : "", ei);
            else
                unweighted_case(kind, ei);
            cJSON_Delete(p);
            qg_tape_reset(NULL);
        }
    }
    for (int ei = 0; ei < 2; ei++) {
        int64_t n = hist[ei][0] + hist[ei][1] + hist[ei][2];
        printf("%s: %lld integer outputs: %lld exact, %lld off by 1, %lld off by more (%.4f%% exact)\n", engines[ei],
               (long long)n, (long long)hist[ei][0], (long long)hist[ei][1], (long long)hist[ei][2],
               n ? 100.0 * (double)hist[ei][0] / (double)n : 0.0);
        CHECK(n > 0 && hist[ei][2] == 0 && (double)hist[ei][0] >= 0.999 * (double)n,
              "%s: at least 99.9%% exact and none more than 1 off", engines[ei]);
    }
    qg_tensor_dict_free(tst_fx);
    qg_shutdown();
    return test_summary("test_int8_layers");
}
