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

#include "export_models.h"

#define DATA "/usr/share/datasets/fashion-mnist"

static char dir[256];
static float *images; /* the Fashion-MNIST test images (random without the dataset) */
static int64_t *labels, nimages;
static const char *compilers[3];
static int ncompilers;

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
            if (c == 0 && f == 0 && x == images && labels) /* the outputs are qgrad's: so is the accuracy */
                printf("%s: test accuracy on %lld images: qgrad int8 %.2f%%, the C model %s\n", name, (long long)n,
                       100.0 * (double)correct(want, labels, n, info.out_size) / (double)n,
                       same == n ? "the same" : "differs");
            CHECK(run(NULL, got, scratch) == -1 && run(x, got, NULL) == -1, "%s: NULL arguments give -1", name);
            dlclose(h);
        }
    free(want), free(got), free(scratch);
    /* NAME.h's code estimate (x86-64 gcc -Os) against the object's .text */
    char cmd[1200], line[256];
    snprintf(cmd, sizeof cmd, "gcc -std=c99 -Os -c -o %s/%s.o %s/%s.c 2>/dev/null && size -A %s/%s.o 2>/dev/null", dir,
             name, dir, name, dir, name);
    FILE *f = popen(cmd, "r");
    long text = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, ".text ", 6)) text = strtol(line + 6, NULL, 10);
    if (f) pclose(f);
    if (text >= 0 && !strcmp(name, "fmnist_cnn_onednn"))
        printf("%s: code %ld bytes (gcc -Os .text), NAME.h estimates %zu\n", name, text, info.code_bytes);
    if (text >= 0)
        CHECK((double)text >= 0.6 * (double)info.code_bytes && (double)text <= 1.6 * (double)info.code_bytes,
              "%s: code %ld bytes, estimated %zu", name, text, info.code_bytes);
}

static qg_module *model_all_c(qg_qengine e) { return model_all(e, false); }
static qg_module *model_pools_c(qg_qengine e) { return model_pools(e, false); }

static void small_models(void) {
    const qg_qengine engines[2] = {QG_QENGINE_ONEDNN, QG_QENGINE_QNNPACK};
    for (int k = 0; k < 2; k++) {
        qg_set_qengine(engines[k]); /* the pools follow it, as PyTorch's do */
        struct {
            const char *name;
            qg_module *(*make)(qg_qengine);
            qg_export_opts eo;
        } ms[3] = {{"all", model_all_c, {.ndim = 3, .shape = {3, 11, 13}}}, {"pools", model_pools_c, {.ndim = 3, .shape = {1, 9, 9}}},
                   {"conv1d", model_1d, {.ndim = 2, .shape = {4, 17}}}};
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

static void check_saved(const char *name, qg_module *m) {
    check_model(name, m, &(qg_export_opts){.ndim = 3, .shape = {1, 28, 28}}, images, nimages, false);
}

static void check_trained(const char *name, qg_module *m, qg_qengine e) {
    (void)e; /* bit for bit under both */
    check_saved(name, m);
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
    const qg_export_opts eo = {.ndim = 3, .shape = {3, 11, 13}};
    qg_module *m = model_all(QG_QENGINE_ONEDNN, false);
    qg_tape_reset(NULL);
    qg_module_eval(m);
    refused(m, dir, "9lives", &eo, "C identifier", NULL, "a name starting with a digit");
    refused(m, dir, "a-b", &eo, "C identifier", NULL, "a name with a dash");
    refused(m, NULL, "ok", &eo, "dir is NULL", NULL, "no folder");
    refused(m, "/nonexistent/folder", "ok", &eo, "/nonexistent/folder", NULL, "a missing folder");
    refused(m, "/proc", "ok", &eo, "/proc/ok", NULL, "an unwritable folder");
    refused(m, dir, "ok", NULL, "opts is NULL", NULL, "no opts");
    refused(m, dir, "ok", &(qg_export_opts){.ndim = 3, .shape = {4, 11, 13}}, "'c1' (quantized.Conv2d)", NULL, "the wrong input shape");
    refused(m, dir, "ok", &(qg_export_opts){.ndim = 0, .shape = {0}}, "ndim", NULL, "no input shape");
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
    refused(m, dir, "ok", &(qg_export_opts){.ndim = 2, .shape = {4, 17}}, "end it with a DeQuantize", NULL, "a quantized output");
    qg_module_free(m);

    /* a prepared QAT model: its fake-quant hooks */
    m = qg_sequential_of(3, (qg_named_module[]){{"quant", qg_quant_stub_new()},
                                                {"fc", qg_nn_linear_new(4, 2, NULL, &g)},
                                                {"dequant", qg_dequant_stub_new()}});
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    CHECK(!qg_prepare_qat(m, &qc), "prepare: %s", qg_last_error());
    qg_module_eval(m);
    refused(m, dir, "ok", &(qg_export_opts){.ndim = 1, .shape = {4}}, "'quant' (QuantStub)", NULL, "an unconverted model");
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
    const char *env = getenv("QG_EXPORT_IMAGES");
    nimages = env ? atoll(env) : 300;
    if (!(images = fmnist_images(&nimages, &labels))) {
        printf("note: no Fashion-MNIST; random inputs\n");
        images = inputs(nimages, 784, 5, false);
    }
    fixture_models(check_saved);
    trained_all_models(check_trained);
    saved_models(check_saved);
    free(images), free(labels);
    errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) printf("note: could not remove %s\n", dir);
    qg_shutdown();
    return test_summary("test_export_c");
}
