/* qg_export_onnx: the exported QDQ graphs pass onnx.checker (Debian's python3-onnx
 * 1.12) and ONNX Runtime (npm's onnxruntime-node, driven by tools/onnx_run.js) computes
 * what qgrad's int8 model does: the argmax on at least 99.9% of the samples, and the
 * outputs within 1 LSB of the output scale on at least 99.9% of the elements (the
 * runtime's integer kernels round on their own: docs/deploy.md has the histogram).
 * Models: examples/fmnist's CNN and MLP (the fixture's checkpoints, converted under
 * onednn and qnnpack, and a model of every layer kind ONNX has, QAT-trained for 150
 * steps) on Fashion-MNIST test images (QG_EXPORT_IMAGES, default 2000;
 * random inputs without the dataset), and the layer models of export_models.h. Then
 * the refusals. Skips when ONNX export, Python's onnx or Node's onnxruntime-node is
 * missing. */
#include <unistd.h>

#include "export_models.h"

static char dir[256];
static float *images; /* the Fashion-MNIST test images (random without the dataset) */
static int64_t *labels, nimages;

/* the last output scale of a model: its last module with a "scale" buffer, nested
 * Sequentials entered */
static double out_scale(const qg_module *m) {
    for (int i = m->nchildren - 1; i >= 0; i--) {
        const qg_tensor *s = qg_module_buffer(m->children[i].ptr, "scale");
        const double in = s ? 0 : out_scale(m->children[i].ptr);
        if (s || in) return s ? qg_tensor_item(s) : in;
    }
    return 0;
}

static bool run_ort(const char *model, const float *x, int64_t n, const qg_export_opts *eo, float *y, size_t ny) {
    char in[300], out[300], cmd[2000];
    snprintf(in, sizeof in, "%s/in.f32", dir), snprintf(out, sizeof out, "%s/out.f32", dir);
    int64_t k = n;
    for (int d = 0; d < eo->ndim; d++) k *= eo->shape[d];
    tst_write_file(in, x, sizeof(float) * (size_t)k, false);
    int len = snprintf(cmd, sizeof cmd, "node %s/tools/onnx_run.js %s %s %s %lld", SOURCE_ROOT, model, in, out,
                       (long long)n);
    for (int d = 0; d < eo->ndim; d++) len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %lld", (long long)eo->shape[d]);
    snprintf(cmd + len, sizeof cmd - (size_t)len, " >%s/ort.log 2>&1", dir);
    int rc = system(cmd);
    FILE *f = rc ? NULL : fopen(out, "rb");
    size_t got = f ? fread(y, sizeof(float), ny, f) : 0;
    if (f) fclose(f);
    CHECK(!rc && got == ny, "%s: ONNX Runtime ran (exit %d, %zu of %zu outputs; see %s/ort.log)", model, rc, got, ny, dir);
    return !rc && got == ny;
}

/* exports m to dir/name.onnx and compares ONNX Runtime's outputs with qgrad's. strict:
 * the argmax on 99.9% of the samples and 1 LSB on 99.9% of the elements; else (the
 * layer models converted for onednn, with few inputs per output or 4-bit weights, whose
 * float biases ONNX's int32 biases round, docs/deploy.md; how often depends on the
 * trained weights, which differ with the ISA path): the argmax on 99%, 1 LSB on 95%
 * and 2 LSB on 99.5%. */
static void check_model(const char *name, qg_module *m, const qg_export_opts *eo, const float *x, int64_t n,
                        int64_t out_size, bool strict) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    qg_status st = qg_export_onnx(m, path, eo);
    CHECK(!st, "%s: export: %s", name, qg_last_error());
    if (st) return;
    int64_t shape[QG_MAX_DIMS] = {n};
    memcpy(shape + 1, eo->shape, sizeof(int64_t) * (size_t)eo->ndim);
    bool prev = qg_set_grad_enabled(false);
    qg_tensor *t = qg_tensor_from_data(QG_F32, eo->ndim + 1, shape, x);
    const qg_tensor *want = qg_contiguous(qg_module_forward(m, t));
    CHECK(want && qg_tensor_numel(want) == n * out_size, "%s: qgrad forward: %s", name, qg_last_error());
    float *got = malloc(sizeof(float) * (size_t)(n * out_size));
    if (want && run_ort(path, x, n, eo, got, (size_t)(n * out_size))) {
        const float *w = qg_tensor_data(want);
        const double s = out_scale(m);
        int64_t hist[4] = {0}, argmax_same = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t ag = 0, aw = 0;
            for (int64_t j = 0; j < out_size; j++) {
                const int64_t e = i * out_size + j;
                const double lsb = fabs((double)got[e] - (double)w[e]) / s;
                hist[lsb < 0.5 ? 0 : lsb < 1.5 ? 1 : lsb < 2.5 ? 2 : 3]++;
                ag = got[e] > got[i * out_size + ag] ? j : ag, aw = w[e] > w[i * out_size + aw] ? j : aw;
            }
            argmax_same += ag == aw;
        }
        const int64_t ne = n * out_size;
        printf("%s: argmax agrees on %lld/%lld; outputs off by 0 LSB %lld, 1 LSB %lld, 2 LSB %lld, more %lld (of %lld)\n",
               name, (long long)argmax_same, (long long)n, (long long)hist[0], (long long)hist[1], (long long)hist[2],
               (long long)hist[3], (long long)ne);
        if (x == images && labels)
            printf("%s: test accuracy on %lld images: qgrad int8 %.2f%%, ONNX Runtime %.2f%%\n", name, (long long)n,
                   100.0 * (double)correct(w, labels, n, out_size) / (double)n,
                   100.0 * (double)correct(got, labels, n, out_size) / (double)n);
        const double arg = strict ? 0.999 : 0.99, one = strict ? 0.999 : 0.95, two = strict ? 0.999 : 0.995;
        CHECK((double)argmax_same >= arg * (double)n, "%s: argmax on %.1f%% of samples", name, 100 * arg);
        CHECK((double)(hist[0] + hist[1]) >= one * (double)ne, "%s: within 1 LSB on %.1f%% of elements", name, 100 * one);
        CHECK((double)(hist[0] + hist[1] + hist[2]) >= two * (double)ne, "%s: within 2 LSB on %.1f%% of elements", name,
              100 * two);
    }
    free(got);
    qg_tensor_free(t);
    qg_tape_reset(NULL);
    qg_set_grad_enabled(prev);
}

static float *randn(int64_t n, uint64_t seed) {
    qg_rng g;
    qg_rng_init(&g, seed);
    qg_tensor *r = qg_tensor_randn(&g, QG_F32, 1, &n);
    float *x = malloc(sizeof(float) * (size_t)n);
    memcpy(x, qg_tensor_data(r), sizeof(float) * (size_t)n);
    qg_tensor_free(r);
    return x;
}

static void layer_models(void) {
    const qg_qengine engines[2] = {QG_QENGINE_ONEDNN, QG_QENGINE_QNNPACK};
    for (int k = 0; k < 2; k++) {
        qg_set_qengine(engines[k]);
        struct {
            const char *name;
            qg_module *m;
            qg_export_opts eo;
            int64_t out;
        } ms[3] = {{"all", model_all(engines[k], true), {.ndim = 3, .shape = {3, 11, 13}}, 10},
                   {"pools", model_pools(engines[k], true), {.ndim = 3, .shape = {1, 9, 9}}, 3},
                   {"conv1d", model_1d(engines[k]), {.ndim = 2, .shape = {4, 17}}, 4}};
        for (int i = 0; i < 3; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s", ms[i].name, qg_qengine_name(engines[k]));
            qg_tape_reset(NULL);
            qg_module_eval(ms[i].m);
            const int64_t n = 2000, in = numel(ms[i].eo.ndim, ms[i].eo.shape);
            float *x = randn(n * in, 200 + (uint64_t)i);
            check_model(name, ms[i].m, &ms[i].eo, x, n, ms[i].out, engines[k] == QG_QENGINE_QNNPACK);
            free(x);
            qg_module_free(ms[i].m);
        }
    }
    qg_set_qengine(QG_QENGINE_ONEDNN);
}

/* The dynamic Linear alone: ONNX Runtime's float outputs are qgrad's bit for bit, on
 * input designs that take each branch of the range rule: mixed signs, all positive,
 * all negative, all zero, below the small-scale cut-off (mixed, positive, negative),
 * a range whose 1/scale overflows float32, and values on a grid; 2-d and 4-d inputs.
 * The designs go through the four weight kinds (per tensor or per channel, with or
 * without bias) and, for onednn, reduce_range on and off (qmax 127 and 255). */
static void dynamic_models(void) {
    const qg_qengine engines[2] = {QG_QENGINE_ONEDNN, QG_QENGINE_QNNPACK};
    const int64_t n = 64, k = 24;
    int64_t same = 0, total = 0;
    for (int e = 0; e < 2; e++)
        for (int design = 0; design < 10; design++)
            for (int v = 0; v < 2; v++) {
                qg_rng g;
                qg_rng_init(&g, 40 + (uint64_t)(design * 2 + v));
                const bool pc = (design + v) & 1, bias = (design >> 1) & 1, rr = design % 3 != 0;
                qg_tensor *wf = qg_tensor_randn(&g, QG_F32, 2, (int64_t[]){7, k});
                const float scv[7] = {0.01f, 0.02f, 0.015f, 0.03f, 0.012f, 0.025f, 0.018f};
                qg_tensor *sc = qg_tensor_from_data(QG_F32, 1, (int64_t[]){7}, scv), *zp = qg_tensor_zeros(QG_I64, 1, (int64_t[]){7});
                qg_tensor *w = pc ? qg_quantize_per_channel(wf, sc, zp, 0, QG_QINT8) : qg_quantize_per_tensor(wf, 0.02, 0, QG_QINT8);
                qg_tensor *bs = bias ? qg_tensor_randn(&g, QG_F32, 1, (int64_t[]){7}) : NULL;
                qg_module *m = qg_sequential_of(1, (qg_named_module[]){
                    {"dyn", qg_quantized_dynamic_linear_new(w, bs, rr, engines[e])}});
                qg_tensor_free(wf), qg_tensor_free(sc), qg_tensor_free(zp), qg_tensor_free(w), qg_tensor_free(bs);
                const qg_export_opts eo = v ? (qg_export_opts){.ndim = 3, .shape = {2, 3, k}}
                                            : (qg_export_opts){.ndim = 1, .shape = {k}};
                const int64_t per = v ? 6 * k : k, rows = v ? 6 : 1;
                float *x = randn(n * per, 500 + (uint64_t)design);
                CHECK(m != NULL, "dynamic Linear: %s", qg_last_error());
                for (int64_t i = 0; i < n * per; i++) {
                    float t = x[i];
                    x[i] = design == 1 ? fabsf(t) : design == 2 ? -fabsf(t) : design == 3 ? 0.0f
                         : design == 4 ? t * 1e-6f : design == 5 ? fabsf(t) * 1e-6f : design == 6 ? -fabsf(t) * 1e-6f
                         : design == 7 ? t * 1e-40f /* denormal: 1/F(scale) is infinite */
                         : design == 8 ? (float)((int)(t * 8)) / 16.0f + 1.0f / 32.0f : t;
                }
                if (design == 9) x[0] = 127.0f / 16, x[1] = -128.0f / 16; /* the scale 1/16 exactly: ties */
                if (design == 9)
                    for (int64_t i = 2; i < n * per; i++) x[i] = (float)((int)(x[i] * 8)) / 16.0f + 1.0f / 32.0f;
                char name[64], path[512];
                snprintf(name, sizeof name, "dyn_%s_%d_%d", qg_qengine_name(engines[e]), design, v);
                snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
                qg_status st = qg_export_onnx(m, path, &eo);
                CHECK(!st, "%s: export: %s", name, qg_last_error());
                int64_t shape[QG_MAX_DIMS] = {n};
                memcpy(shape + 1, eo.shape, sizeof(int64_t) * (size_t)eo.ndim);
                bool prev = qg_set_grad_enabled(false);
                qg_tensor *t = qg_tensor_from_data(QG_F32, eo.ndim + 1, shape, x);
                const qg_tensor *want = qg_contiguous(qg_module_forward(m, t));
                const int64_t ny = n * rows * 7;
                float *got = malloc(sizeof(float) * (size_t)ny);
                if (!st && want && run_ort(path, x, n, &eo, got, (size_t)ny)) {
                    int64_t ok = 0;
                    for (int64_t i = 0; i < ny; i++) ok += !memcmp(&got[i], (const float *)qg_tensor_data(want) + i, 4);
                    CHECK(ok == ny, "%s: %lld of %lld outputs bit for bit", name, (long long)ok, (long long)ny);
                    same += ok, total += ny;
                }
                free(got), free(x);
                qg_tensor_free(t);
                qg_tape_reset(NULL);
                qg_set_grad_enabled(prev);
                qg_module_free(m);
            }
    printf("dynamic Linear: %lld/%lld outputs bit for bit (2 engines, 10 input designs x 2 layouts, the four weight "
           "kinds, onednn's reduce_range on and off)\n",
           (long long)same, (long long)total);
}

static void check_saved(const char *name, qg_module *m) {
    check_model(name, m, &(qg_export_opts){.ndim = 3, .shape = {1, 28, 28}}, images, nimages, 10, true);
}

/* strict under qnnpack, whose arithmetic ONNX Runtime's is */
static void check_trained(const char *name, qg_module *m, qg_qengine e) {
    check_model(name, m, &(qg_export_opts){.ndim = 3, .shape = {1, 28, 28}}, images, nimages, 10,
                e == QG_QENGINE_QNNPACK);
}

/* export fails with a message holding want, and path is not written */
static void refused(qg_module *m, const char *path, const qg_export_opts *eo, const char *want, const char *what) {
    if (path) unlink(path);
    qg_status st = qg_export_onnx(m, path, eo);
    CHECK(st && strstr(qg_last_error(), want), "%s: refused with '%s' (got %d: %s)", what, want, (int)st,
          qg_last_error());
    CHECK(!path || access(path, F_OK) != 0, "%s: no file written", what);
}

static void errors(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/bad.onnx", dir);
    const qg_export_opts eo = {.ndim = 3, .shape = {3, 11, 13}};
    qg_module *m = model_all(QG_QENGINE_ONEDNN, false); /* divisor_override, uneven windows */
    qg_module_eval(m);
    refused(m, p, &eo, "'ap2' (AvgPool2d) has a divisor_override", "divisor_override");
    qg_module_free(qg_module_replace(m, "ap2", qg_nn_identity_new()));
    refused(m, p, &eo, "'ad' (AdaptiveAvgPool2d) pools to windows of different sizes", "uneven adaptive windows");
    qg_module_free(m);
    m = model_all(QG_QENGINE_ONEDNN, false);
    qg_module_eval(m);
    qg_module_free(qg_module_replace(m, "ap2", qg_nn_identity_new()));
    qg_module_free(qg_module_replace(m, "ad", qg_nn_adaptive_avgpool2d_new(1, 1)));
    qg_module_free(qg_module_replace(m, "fc1", qg_quantized_dequantize_new()));
    /* now ... -> DeQuantize -> fc2 (quint8 input refused) ... : a model that fails to run */
    refused(m, p, &eo, "fc2", "a model that does not run");
    qg_module_free(m);
    m = qg_sequential_of(3, (qg_named_module[]){{"quant", qg_quantized_quantize_new(0.1, 3, QG_QUINT8)},
                                                {"avg", qg_nn_avgpool2d_new(2, 2, &(qg_pool_opts){.ceil_mode = true})},
                                                {"dq", qg_quantized_dequantize_new()}});
    refused(m, p, &(qg_export_opts){.ndim = 3, .shape = {1, 5, 5}}, "'avg' (AvgPool2d) has a ceil_mode window",
            "a ceil-mode average past the padding");
    refused(m, p, &(qg_export_opts){.ndim = 2, .shape = {5, 5}}, "'avg' (AvgPool2d) takes an unbatched input",
            "an unbatched pool");
    refused(m, p, &(qg_export_opts){.ndim = 3, .shape = {1, 5, 5}, .input_name = "qg.x"}, "starts with 'qg.'",
            "a name of the graph's own");
    qg_module_free(m);
    m = model_1d(QG_QENGINE_ONEDNN);
    const qg_export_opts e1 = {.ndim = 2, .shape = {4, 17}};
    refused(m, "/proc/none.onnx", &e1, "/proc/none.onnx", "an unwritable path");
    refused(m, "/nonexistent/dir/m.onnx", &e1, "/nonexistent/dir/m.onnx", "a missing folder");
    refused(m, p, &(qg_export_opts){.ndim = 2, .shape = {4, 17}, .input_name = "x", .output_name = "x"}, "both named",
            "one name for input and output");
    refused(m, p, &(qg_export_opts){.ndim = 2, .shape = {4, 17}, .input_name = ""}, "input name", "an empty name");
    refused(m, NULL, &e1, "path is NULL", "no path");
    qg_module_free(m);
}

int main(void) {
    if (qg_export_onnx(NULL, "/dev/null", &(qg_export_opts){0}) && strstr(qg_last_error(), "without ONNX")) {
        printf("SKIP: qgrad was built without ONNX export (meson -Donnx=enabled; %s)\n", qg_last_error());
        return 77;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "node %s/tools/onnx_run.js --check >/dev/null 2>&1", SOURCE_ROOT);
    if (system(cmd)) {
        printf("SKIP: Node.js with onnxruntime-node is missing (apt-get install nodejs npm; "
               "npm install --no-save --ignore-scripts onnxruntime-node in %s)\n", SOURCE_ROOT);
        return 77;
    }
    if (system("/usr/bin/python3 -c 'import onnx' >/dev/null 2>&1")) {
        printf("SKIP: Python's onnx is missing (apt-get install python3-onnx)\n");
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/qg_export_onnx_XXXXXX");
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    layer_models();
    dynamic_models();
    const char *env = getenv("QG_EXPORT_IMAGES");
    nimages = env ? atoll(env) : 2000;
    if (!(images = fmnist_images(&nimages, &labels))) {
        printf("note: no Fashion-MNIST; random inputs\n");
        images = randn(nimages * 784, 9);
    }
    fixture_models(check_saved);
    trained_all_models(check_trained);
    saved_models(check_saved);
    free(images), free(labels);
    /* every file exported above passes the checker, with its shape inference */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import onnx, sys\nfor f in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(f), "
             "full_check=True)\nprint(len(sys.argv) - 1, \"files pass onnx.checker\", onnx.__version__)' %s/*.onnx", dir);
    CHECK(!system(cmd), "onnx.checker.check_model refuses a file of %s", dir);
    errors();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) printf("note: could not remove %s\n", dir);
    qg_shutdown();
    return test_summary("test_export_onnx");
}
