/* qg_export_c: the generated C model gives qgrad's int8 outputs bit for bit. Models:
 * examples/fmnist's CNN and MLP (the trained checkpoints of int8_models.safetensors,
 * converted here) on Fashion-MNIST test images (random inputs without the dataset),
 * and three models of every exportable layer kind built from the quantized
 * constructors (8- and 4-bit weights, per tensor and per channel, stride, padding,
 * dilation, groups, bias on and off, ReLU fusions, every pool rule, the dynamic
 * Linear), each under onednn and qnnpack. Each NAME.c is compiled with every C
 * compiler at hand, -std=c99 -pedantic -Werror at -O2 and -Os and as GNU C at -O3 for
 * the host CPU (where FMA contraction would change results), loaded, and run sample by
 * sample. Then the errors: no export form, bad names and folders, and no file left.
 * QG_EXPORT_IMAGES sets how many test images (default 300). */
#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../examples/fmnist_model.h"
#include "test_util.h"

#define DATA "/usr/share/datasets/fashion-mnist"

static char dir[256];
static const char *compilers[3];
static int ncompilers;

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

/* every layer kind in one model: input (3, 11, 13) */
static qg_module *model_all(qg_qengine e) {
    builder b;
    qg_module *m = begin(&b, e, 11, 0.03, 100);
    qg_sequential_add(m, "c1", layer(&b, 2, 3, 8, K(3, 3), ARGS(.padding = {1, 1}), 8, true, true));
    qg_sequential_add(m, "c2", layer(&b, 2, 8, 6, K(3, 2), ARGS(.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2},
                                                              .groups = 2, .relu = true), 4, false, false));
    qg_sequential_add(m, "relu", qg_nn_relu_new());
    qg_sequential_add(m, "mp", qg_nn_maxpool2d_new(3, 3, &(qg_pool_opts){.stride = {2, 2}, .padding = {1, 1},
                                                                         .ceil_mode = true}));
    qg_sequential_add(m, "ap", qg_nn_avgpool2d_new(2, 2, &(qg_pool_opts){.stride = {1, 1}, .padding = {1, 1},
                                                                         .no_count_include_pad = true}));
    qg_sequential_add(m, "ap2", qg_nn_avgpool2d_new(2, 2, &(qg_pool_opts){.stride = {1, 1}, .divisor_override = 3,
                                                                          .ceil_mode = true}));
    qg_sequential_add(m, "ad", qg_nn_adaptive_avgpool2d_new(3, 2));
    qg_sequential_add(m, "flat", qg_nn_flatten_new(1, -1));
    qg_sequential_add(m, "drop", qg_nn_dropout_new(0.3, &b.g));
    qg_sequential_add(m, "id", qg_nn_identity_new());
    qg_sequential_add(m, "fc1", layer(&b, 0, 36, 20, NULL, ARGS(0), 8, true, true));
    qg_sequential_add(m, "fc2", layer(&b, 0, 20, 12, NULL, ARGS(.relu = true), 4, false, true));
    qg_sequential_add(m, "dq", qg_quantized_dequantize_new());
    qg_sequential_add(m, "dyn1", dynamic(&b, 12, 9, false, true));
    qg_sequential_add(m, "frelu", qg_nn_relu_new());
    qg_sequential_add(m, "dyn2", dynamic(&b, 9, 5, true, false));
    return m;
}

/* single-channel and 1 x 1 pools (PyTorch's channels-last and qnnpack kernels): (1, 9, 9) */
static qg_module *model_pools(qg_qengine e) {
    builder b;
    qg_module *m = begin(&b, e, 12, 0.02, 128);
    qg_sequential_add(m, "c1", layer(&b, 2, 1, 1, K(3, 3), ARGS(.padding = {1, 1}), 8, false, true));
    qg_sequential_add(m, "ap", qg_nn_avgpool2d_new(3, 3, &(qg_pool_opts){.stride = {2, 2}, .padding = {1, 1}}));
    qg_sequential_add(m, "ad1", qg_nn_adaptive_avgpool2d_new(3, 3));
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

/* ------------------------------------------------------------- compile and compare */

typedef int (*run_fn)(const float *, float *, void *);

/* Compiles dir/name.c with cc and flags into a shared object and loads it. */
static void *build(const char *cc, const char *flags, const char *name, run_fn *run) {
    char cmd[1024], so[300], sym[96];
    snprintf(so, sizeof so, "%s/%s-%d.so", dir, name, rand());
    snprintf(cmd, sizeof cmd, "%s %s -fPIC -shared -I%s -o %s %s/%s.c 2>&1", cc, flags, dir, so, dir, name);
    int rc = system(cmd);
    CHECK(rc == 0, "%s %s: %s.c does not compile (%s)", cc, flags, name, cmd);
    if (rc) return NULL;
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    unlink(so);
    CHECK(h != NULL, "dlopen %s: %s", so, dlerror());
    snprintf(sym, sizeof sym, "%s_run", name);
    *run = h ? (run_fn)(uintptr_t)dlsym(h, sym) : NULL;
    CHECK(!h || *run, "%s: no %s", so, sym);
    return h;
}

/* The inputs: n samples of in_size floats; sample 0 holds quantize's special cases. */
static float *inputs(int64_t n, int64_t in_size, uint64_t seed, bool specials) {
    qg_rng g;
    qg_rng_init(&g, seed);
    float *x = malloc(sizeof(float) * (size_t)(n * in_size));
    qg_tensor *r = qg_tensor_randn(&g, QG_F32, 1, (int64_t[]){n * in_size});
    memcpy(x, qg_tensor_data(r), sizeof(float) * (size_t)(n * in_size));
    qg_tensor_free(r);
    if (specials && in_size >= 8) {
        const float sp[8] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.015f, 0.045f, -0.0f};
        memcpy(x, sp, sizeof sp);
    }
    return x;
}

/* qgrad's outputs, sample by sample (a batch of one: the dynamic Linear's range is per call) */
static float *reference(qg_module *m, const float *x, int64_t n, const qg_export_opts *eo, int64_t in_size,
                        int64_t out_size) {
    float *y = malloc(sizeof(float) * (size_t)(n * out_size));
    int64_t shape[QG_MAX_DIMS] = {1};
    memcpy(shape + 1, eo->shape, sizeof(int64_t) * (size_t)eo->ndim);
    bool prev = qg_set_grad_enabled(false);
    for (int64_t i = 0; i < n; i++) {
        qg_tensor *t = qg_tensor_from_data(QG_F32, eo->ndim + 1, shape, x + i * in_size);
        qg_tensor *o = qg_module_forward(m, t);
        CHECK(o && qg_tensor_numel(o) == out_size, "qgrad forward: %s", qg_last_error());
        if (o) memcpy(y + i * out_size, qg_tensor_data(qg_contiguous(o)), sizeof(float) * (size_t)out_size);
        qg_tensor_free(t);
        qg_tape_reset(NULL);
    }
    qg_set_grad_enabled(prev);
    return y;
}

/* Exports m as `name`, compiles it every way and checks its outputs bitwise. */
static void check_model(const char *name, qg_module *m, const qg_export_opts *eo, const float *x, int64_t n,
                        bool all_flags) {
    qg_export_info info;
    qg_status st = qg_export_c(m, dir, name, eo, &info);
    CHECK(!st, "%s: export: %s", name, qg_last_error());
    if (st) return;
    float *want = reference(m, x, n, eo, info.in_size, info.out_size);
    float *got = malloc(sizeof(float) * (size_t)info.out_size);
    void *scratch = malloc(info.scratch_bytes);
    static const char *const flag_sets[] = {"-std=c99 -Wall -Wextra -Werror -pedantic -O2",
                                            "-std=c99 -Wall -Wextra -Werror -pedantic -Os",
                                            "-std=gnu99 -Wall -Wextra -Werror -O3 -march=native"};
    for (int c = 0; c < ncompilers; c++)
        for (int f = 0; f < (all_flags ? 3 : 1); f++) {
            run_fn run;
            void *h = build(compilers[c], flag_sets[f], name, &run);
            if (!h || !run) continue;
            int64_t same = 0, rc_bad = 0;
            for (int64_t i = 0; i < n; i++) {
                rc_bad += run(x + i * info.in_size, got, scratch) != 0;
                same += !memcmp(got, want + i * info.out_size, sizeof(float) * (size_t)info.out_size);
            }
            CHECK(same == n && !rc_bad, "%s (%s %s): %lld of %lld samples bit-exact, %lld calls failed", name,
                  compilers[c], flag_sets[f], (long long)same, (long long)n, (long long)rc_bad);
            if (c == 0 && f == 0)
                printf("%s: %lld/%lld samples bit-exact; %zu bytes of constants (%zu int8 weights), %zu of scratch, "
                       "%d steps\n", name, (long long)same, (long long)n, info.const_bytes, info.weight_bytes,
                       info.scratch_bytes, info.nsteps);
            CHECK(run(NULL, got, scratch) == -1 && run(x, got, NULL) == -1, "%s: NULL arguments give -1", name);
            dlclose(h);
        }
    free(want), free(got), free(scratch);
}

static void small_models(void) {
    const qg_qengine engines[2] = {QG_QENGINE_ONEDNN, QG_QENGINE_QNNPACK};
    for (int k = 0; k < 2; k++) {
        qg_set_qengine(engines[k]); /* the pools follow it, as PyTorch's do */
        struct {
            const char *name;
            qg_module *(*make)(qg_qengine);
            qg_export_opts eo;
        } ms[3] = {{"all", model_all, {3, {3, 11, 13}}}, {"pools", model_pools, {3, {1, 9, 9}}},
                   {"conv1d", model_1d, {2, {4, 17}}}};
        for (int i = 0; i < 3; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s", ms[i].name, qg_qengine_name(engines[k]));
            qg_module *m = ms[i].make(engines[k]);
            qg_tape_reset(NULL);
            qg_module_eval(m);
            const int64_t in_size = numel(ms[i].eo.ndim, ms[i].eo.shape);
            float *x = inputs(64, in_size, 100 + (uint64_t)i, true);
            check_model(name, m, &ms[i].eo, x, 64, true);
            free(x);
            qg_module_free(m);
        }
    }
    qg_set_qengine(QG_QENGINE_ONEDNN);
}

static void fmnist_models(void) {
    qg_tensor_dict *fx = qg_safetensors_load(FIXTURES "/int8_models.safetensors");
    CHECK(fx != NULL, "fixture: %s", qg_last_error());
    if (!fx) return;
    const char *env = getenv("QG_EXPORT_IMAGES");
    const int64_t n = env ? atoll(env) : 300;
    qg_dataset test = {0};
    bool have_data = !qg_dataset_load_mnist(DATA, false, &test);
    float *x = NULL;
    if (have_data) { /* the first n test images, normalised as examples/fmnist does */
        const int64_t k = n < test.images->shape[0] ? n : test.images->shape[0];
        const uint8_t *px = qg_tensor_data(test.images);
        x = malloc(sizeof(float) * (size_t)(n * 784));
        for (int64_t i = 0; i < n * 784; i++) x[i] = (float)(((double)px[i % (k * 784)] / 255.0 - 0.2860) / 0.3530);
        qg_dataset_free(&test);
    } else {
        printf("note: no Fashion-MNIST in %s; random inputs\n", DATA);
        x = inputs(n, 784, 5, false);
    }
    const qg_qengine engines[2] = {QG_QENGINE_ONEDNN, QG_QENGINE_QNNPACK};
    for (int kind = 0; kind < 2; kind++)
        for (int e = 0; e < 2; e++) {
            const char *k = kind ? "mlp" : "cnn";
            char pre[32], name[64];
            snprintf(pre, sizeof pre, "%s.ckpt.", k);
            snprintf(name, sizeof name, "fmnist_%s_%s", k, qg_qengine_name(engines[e]));
            qg_module *m = fmnist_qat_model(k, fx, pre);
            qg_status st = m ? qg_convert(m, &(qg_convert_opts){.engine = engines[e]}) : qg_last_status();
            CHECK(!st, "%s: %s", name, qg_last_error());
            if (!st) check_model(name, m, &(qg_export_opts){3, {1, 28, 28}}, x, n, false);
            qg_module_free(m);
        }
    free(x);
    qg_tensor_dict_free(fx);
}

/* ------------------------------------------------------------- errors */

static int entries(const char *path) {
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.' || strncmp(e->d_name, ".", 2);
    if (d) closedir(d);
    return n;
}

/* export fails with a message holding want (and want2), and writes nothing */
static void refused(qg_module *m, const char *to, const char *name, const qg_export_opts *eo, const char *want,
                    const char *want2, const char *what) {
    int before = entries(dir);
    qg_status st = qg_export_c(m, to, name, eo, NULL);
    const char *msg = qg_last_error();
    CHECK(st && strstr(msg, want) && (!want2 || strstr(msg, want2)), "%s: refused with '%s' (got %d: %s)", what, want,
          (int)st, msg);
    CHECK(entries(dir) == before, "%s: no file left behind (%d entries, %d before)", what, entries(dir), before);
}

static void errors(void) {
    const qg_export_opts eo = {3, {3, 11, 13}};
    qg_module *m = model_all(QG_QENGINE_ONEDNN);
    qg_tape_reset(NULL);
    qg_module_eval(m);
    refused(m, dir, "9lives", &eo, "C identifier", NULL, "a name starting with a digit");
    refused(m, dir, "a-b", &eo, "C identifier", NULL, "a name with a dash");
    refused(m, NULL, "ok", &eo, "dir is NULL", NULL, "no folder");
    refused(m, "/nonexistent/folder", "ok", &eo, "/nonexistent/folder", NULL, "a missing folder");
    refused(m, "/proc", "ok", &eo, "/proc/ok", NULL, "an unwritable folder");
    refused(m, dir, "ok", NULL, "opts is NULL", NULL, "no opts");
    refused(m, dir, "ok", &(qg_export_opts){3, {4, 11, 13}}, "'c1' (quantized.Conv2d)", NULL, "the wrong input shape");
    refused(m, dir, "ok", &(qg_export_opts){0, {0}}, "ndim", NULL, "no input shape");
    qg_rng g;
    qg_rng_init(&g, 1);
    qg_module_free(qg_module_replace(m, "id", qg_nn_linear_new(36, 36, NULL, &g)));
    refused(m, dir, "ok", &eo, "'id' (Linear)", "no export form", "a float Linear");
    qg_module_free(qg_module_replace(m, "id", qg_nn_identity_new()));
    qg_module_free(qg_module_replace(m, "drop", qg_nn_hardtanh_new(0, 6)));
    refused(m, dir, "ok", &eo, "'drop' (Hardtanh)", "no export form", "a Hardtanh");
    qg_module_free(m);

    m = model_1d(QG_QENGINE_ONEDNN); /* no DeQuantize: quint8 out */
    qg_module_free(qg_module_replace(m, "dq", qg_nn_identity_new()));
    refused(m, dir, "ok", &(qg_export_opts){2, {4, 17}}, "end it with a DeQuantize", NULL, "a quantized output");
    qg_module_free(m);

    /* a prepared QAT model: its fake-quant hooks */
    m = qg_sequential_of(3, (qg_named_module[]){{"quant", qg_quant_stub_new()},
                                                {"fc", qg_nn_linear_new(4, 2, NULL, &g)},
                                                {"dequant", qg_dequant_stub_new()}});
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    CHECK(!qg_prepare_qat(m, &qc), "prepare: %s", qg_last_error());
    qg_module_eval(m);
    refused(m, dir, "ok", &(qg_export_opts){1, {4}}, "'quant' (QuantStub)", NULL, "an unconverted model");
    qg_module_free(m);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/qg_export_c_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    const char *cc = getenv("QG_CC");
    compilers[ncompilers++] = cc && *cc ? cc : "cc";
    if (!system("clang --version >/dev/null 2>&1") && (!cc || !strstr(cc, "clang"))) compilers[ncompilers++] = "clang";
    if (system("cc --version >/dev/null 2>&1") && !(cc && *cc)) {
        printf("SKIP: no C compiler to build the exported models\n");
        return 77;
    }
    small_models();
    fmnist_models();
    errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) printf("note: could not remove %s\n", dir);
    qg_shutdown();
    return test_summary("test_export_c");
}
