/* The int8 model file (qg_quantized_save / qg_quantized_load): a converted model saved,
 * then loaded by a second process that never builds the float model (this program run
 * again with --load), gives bit-identical outputs; corrupt, truncated and inconsistent
 * files are refused with a message and leave nothing behind. */
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

static const char *dir;

static char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

/* A small CNN and MLP head with every saved module kind, prepared, run and converted. */
static qg_module *converted_model(qg_qengine engine) {
    qg_rng g;
    qg_rng_init(&g, 7);
    qg_module *m = qg_sequential_of(11, (qg_named_module[]){
        {"quant", qg_quant_stub_new()},
        {"c1", qg_nn_conv2d_new(2, 6, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1), .no_bias = true}, &g)},
        {"b1", qg_nn_batchnorm2d_new(6, NULL)},
        {"r1", qg_nn_relu_new()},
        {"pool", qg_nn_maxpool2d_new(2, 2, NULL)},
        {"c2", qg_nn_conv2d_new(6, 4, 3, 3, &(qg_conv_opts){.stride = QG_PAIR(1), .groups = 2}, &g)},
        {"avg", qg_nn_avgpool2d_new(2, 2, &(qg_pool_opts){.ceil_mode = true})},
        {"flatten", qg_nn_flatten_new(1, -1)},
        {"drop", qg_nn_dropout_new(0.25, &g)},
        {"fc", qg_nn_linear_new(4, 5, NULL, &g)},
        {"dequant", qg_dequant_stub_new()},
    });
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    qg_status st = qg_fuse_modules_qat(m, 1, (const char *const *[]){(const char *[]){"c1", "b1", "r1"}}, (int[]){3});
    if (!st) st = qg_prepare_qat(m, &qc);
    for (int i = 0; !st && i < 3; i++) {
        qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, (int64_t[]){3, 2, 9, 9});
        if (!qg_module_forward(m, x)) st = qg_last_status();
        qg_tensor_free(x);
        qg_tape_reset(NULL);
    }
    qg_module_eval(m);
    if (!st) st = qg_convert(m, &(qg_convert_opts){.engine = engine});
    CHECK(!st, "model: %s", qg_last_error());
    if (st) qg_module_free(m);
    return st ? NULL : m;
}

/* --load: the second process. Loads the model, runs x, compares with y bitwise. */
static int load_side(const char *model, const char *io) {
    qg_tensor_dict *d = qg_safetensors_load(io);
    qg_module *m = qg_quantized_load(model);
    CHECK(d && m, "load: %s", qg_last_error());
    if (d && m)
        CHECK_TENSOR(qg_module_forward(m, qg_tensor_dict_get(d, "x")), qg_tensor_dict_get(d, "y0"), TST_BITWISE,
                     "the loaded model's output");
    qg_tape_reset(NULL);
    qg_module_free(m);
    qg_tensor_dict_free(d);
    qg_shutdown();
    CHECK(qg_live_allocations() == 0, "no leak in the loading process");
    return test_summary("test_int8_file --load");
}

static void refuses(const char *what, const qg_tensor_dict *d) {
    const char *p = path_of("bad.safetensors");
    CHECK(!qg_safetensors_save(p, d), "%s: save: %s", what, qg_last_error());
    qg_tape_reset(NULL); /* the load's views live on the tape until a reset */
    int64_t live = qg_live_allocations();
    qg_clear_error();
    qg_module *m = qg_quantized_load(p);
    qg_tape_reset(NULL);
    CHECK(!m && *qg_last_error(), "%s: refused with a message (%s)", what, qg_last_error());
    CHECK(qg_live_allocations() == live, "%s: nothing left built", what);
    printf("  %s: %s\n", what, qg_last_error());
    qg_module_free(m);
}

/* the saved file as a dict, with one change */
static qg_tensor_dict *tampered(const char *file) { return qg_safetensors_load(file); }

static void test_bad_files(const char *file) {
    qg_tensor_dict *d = tampered(file);
    qg_tensor_dict_set_meta(d, "format", "something else");
    refuses("wrong format", d);
    qg_tensor_dict_free(d);
    d = tampered(file);
    qg_tensor_dict_set_meta(d, "modules", "[{\"path\": \"\", \"type\": \"Sequential\"}, {\"path\": \"x\"");
    refuses("broken module list", d);
    qg_tensor_dict_set_meta(d, "modules", "[{\"path\": \"\", \"type\": \"Sequential\"}, {\"path\": \"x\", \"type\": \"LSTM\"}]");
    refuses("unknown module type", d);
    qg_tensor_dict_set_meta(d, "modules", "[{\"path\": \"a.b\", \"type\": \"ReLU\"}]");
    refuses("no root", d);
    qg_tensor_dict_free(d);
    d = tampered(file);
    qg_tensor_dict_put(d, "extra", qg_tensor_zeros(QG_F32, 1, (int64_t[]){2}));
    refuses("a tensor of no module", d);
    qg_tensor_dict_free(d);
    d = tampered(file);
    qg_tensor_dict_put(d, "fc.weight", qg_tensor_zeros(QG_F32, 2, (int64_t[]){5, 4}));
    refuses("float weight", d);
    qg_tensor_dict_put(d, "fc.weight", qg_tensor_zeros(QG_I8, 2, (int64_t[]){6, 4}));
    refuses("weight of the wrong shape", d);
    qg_tensor_dict_free(d);
    d = tampered(file);
    qg_tensor_dict_put(d, "c2.weight.scale", qg_tensor_zeros(QG_F64, 1, (int64_t[]){4}));
    refuses("zero weight scales", d);
    qg_tensor_dict_put(d, "c2.weight.scale", qg_tensor_ones(QG_F64, 1, (int64_t[]){3}));
    refuses("scales of another length", d);
    qg_tensor_dict_free(d);
    d = tampered(file);
    qg_tensor_dict_put(d, "fc.zero_point", qg_tensor_full(QG_I64, 0, NULL, 300));
    refuses("output zero point out of range", d);
    qg_tensor_dict_free(d);
    /* truncated: the first half of the file */
    FILE *f = fopen(file, "rb");
    static char buf[1 << 20];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    tst_write_file(path_of("cut.safetensors"), buf, n / 2, false);
    qg_clear_error();
    CHECK(!qg_quantized_load(path_of("cut.safetensors")) && *qg_last_error(), "truncated: %s", qg_last_error());
    printf("  truncated: %s\n", qg_last_error());
    CHECK(!qg_quantized_load(path_of("missing.safetensors")) && *qg_last_error(), "missing file");
    CHECK(!qg_quantized_load(NULL) && *qg_last_error(), "NULL path");
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--load")) return load_side(argv[2], argv[3]);
    /* the float GEMM keeps a per-thread packing buffer once used: the baseline is after it */
    qg_module_free(converted_model(QG_QENGINE_ONEDNN));
    qg_shutdown();
    const int64_t baseline = qg_live_allocations();
    char tmpl[] = "/tmp/qgrad-int8-XXXXXX";
    dir = mkdtemp(tmpl);
    for (int e = 0; e < 2; e++) {
        qg_module *m = converted_model((qg_qengine)e);
        if (!m) break;
        qg_rng g;
        qg_rng_init(&g, 11);
        qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, (int64_t[]){4, 2, 9, 9});
        qg_tensor_dict *io = qg_tensor_dict_new();
        qg_tensor_dict_put(io, "x", qg_tensor_clone(x));
        qg_tensor_dict_put(io, "y0", qg_tensor_clone(qg_module_forward(m, x)));
        char file[512];
        snprintf(file, sizeof file, "%s", path_of(e ? "qnnpack.safetensors" : "onednn.safetensors"));
        CHECK(!qg_quantized_save(m, file), "save: %s", qg_last_error());
        CHECK(!qg_safetensors_save(path_of("io.safetensors"), io), "io: %s", qg_last_error());
        qg_tensor_dict *saved = qg_safetensors_load(file);
        const char *eng = saved ? qg_tensor_dict_meta(saved, "qengine") : NULL;
        CHECK(eng && !strcmp(eng, qg_qengine_name((qg_qengine)e)) && qg_tensor_dict_meta(saved, "modules"),
              "metadata: the qengine and the module types");
        qg_tensor_dict_free(saved);
        pid_t pid = fork();
        if (pid == 0) {
            execl(argv[0], argv[0], "--load", file, path_of("io.safetensors"), (char *)NULL);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the loading process agrees (status %d)",
              qg_qengine_name((qg_qengine)e), status);
        if (e == 0) test_bad_files(file);
        qg_tensor_dict_free(io);
        qg_tensor_free(x);
        qg_module_free(m);
        qg_tape_reset(NULL);
    }
    /* a model that is not converted is not saved */
    qg_module *f = qg_sequential_of(1, (qg_named_module[]){{"fc", qg_nn_linear_new(2, 2, NULL, NULL)}});
    qg_clear_error();
    CHECK(qg_quantized_save(f, path_of("float.safetensors")) < 0 && strstr(qg_last_error(), "convert"),
          "float model refused: %s", qg_last_error());
    CHECK(qg_quantized_save(NULL, "x") < 0, "NULL model");
    qg_module_free(f);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "clean up");
    qg_shutdown();
    CHECK(qg_live_allocations() == baseline, "no leak: %lld blocks, %lld before", (long long)qg_live_allocations(),
          (long long)baseline);
    return test_summary("test_int8_file");
}
