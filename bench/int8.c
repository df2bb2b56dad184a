/* int8 inference of the fmnist CNN and MLP (the trained checkpoints of
 * tests/fixtures/int8_models.safetensors) beside qgrad's float inference of the same
 * model (qg_qat_to_float_model: BN folded, no fake-quant) and PyTorch 1.13's converted
 * model under onednn (bench/int8_torch.py, run with /usr/bin/python3 in the same run),
 * at batch 1 and 64 and 1 and 2 threads, beside the model's int8 limit: its conv and
 * linear multiply-adds at the int8 peak of the GEMM path in use, measured here by a
 * loop of that path's multiply-add instructions (vpdpbusd for VNNI) on independent
 * registers. Then the achieved int8 GOP/s of each conv and linear layer.
 *
 * usage: bench/int8 [iterations]  */
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../examples/fmnist_model.h"
#include "internal.h"
#include "kernels/qgemm.h"

#define FIXTURE QG_SOURCE_DIR "/tests/fixtures/int8_models.safetensors"
#define SCRIPT QG_SOURCE_DIR "/bench/int8_torch.py"
#define DATA "/usr/share/datasets/fashion-mnist"

static int iters = 50;
static double pt_ms[2][2][2]; /* model, batch (1, 64), threads */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median ms of m's forward on x */
static double time_forward(qg_module *m, qg_tensor *x) {
    double t[1000];
    int n = iters < 1000 ? iters : 1000;
    for (int i = 0; i < 5; i++) qg_module_forward(m, x), qg_tape_reset(NULL);
    for (int i = 0; i < n; i++) {
        double t0 = now();
        if (!qg_module_forward(m, x)) fprintf(stderr, "forward: %s\n", qg_last_error());
        t[i] = now() - t0;
        qg_tape_reset(NULL);
    }
    qsort(t, (size_t)n, sizeof *t, cmp);
    return 1e3 * t[n / 2];
}

static qg_module *trained(const char *kind, const qg_tensor_dict *fx) {
    char pre[32];
    snprintf(pre, sizeof pre, "%s.ckpt.", kind);
    qg_module *m = fmnist_qat_model(kind, fx, pre);
    if (!m) fprintf(stderr, "bench/int8: %s: %s\n", kind, qg_last_error());
    return m;
}

/* PyTorch's converted model; on qgrad's AVX2 path, oneDNN kept to AVX2 as well (what
 * an AVX2 machine runs), else its default, the best ISA of the CPU. */
static void run_torch(qg__qpath path) {
    char cmd[2048];
    const char *isa = path == QG__QPATH_AVX2 ? "ONEDNN_MAX_CPU_ISA=AVX2 " : "";
    if (*isa) printf("PyTorch runs with %s(the ISA of qgrad's path)\n", isa);
    snprintf(cmd, sizeof cmd, "%s/usr/bin/python3 '%s' '%s' %d '%s' 2>&1", isa, SCRIPT, FIXTURE, iters, DATA);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    char line[512], kind[8];
    int b, t;
    double ms;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "int8 %7s %d %d %lf", kind, &b, &t, &ms) == 4 && (b == 1 || b == 64) && (t == 1 || t == 2))
            pt_ms[strcmp(kind, "cnn") != 0][b == 64][t - 1] = ms;
        else if (line[0] == '#')
            fputs(line, stdout);
    pclose(p);
}

/* The first 64 Fashion-MNIST test images, normalised as examples/fmnist trains (the
 * activations' real ranges: the AVX2 and AVX-512 BW paths take an exact, slower form
 * for tiles with input bytes > 127, which noise hits far more often than images), or
 * N(0, 1) noise without the dataset. Owned here. */
static qg_tensor *images;
static const char *load_images(void) {
    qg_dataset d;
    if (qg_dataset_load_mnist(DATA, false, &d)) return "N(0, 1) noise (no Fashion-MNIST in " DATA ")";
    qg_loader *l = qg_loader_new(&d, &(qg_loader_opts){.batch = 64, .mean = 0.2860, .std = 0.3530});
    qg_tensor *x = NULL, *y = NULL;
    if (l && qg_loader_next(l, &x, &y)) images = qg_tensor_clone(x);
    qg_loader_free(l);
    qg_dataset_free(&d);
    return images ? "the first 64 Fashion-MNIST test images" : "N(0, 1) noise (the test images did not load)";
}

/* A batch of b inputs: the first b images, or noise; freed by the caller. */
static qg_tensor *batch_of(int64_t b) {
    if (!images) return qg_tensor_randn(NULL, QG_F32, 4, (int64_t[]){b, 1, 28, 28});
    return qg_tensor_clone(qg_narrow(images, 0, 0, b));
}

/* ------------------------------------------------------------- the int8 peak */

#if defined(__x86_64__)
/* n rounds of 12 independent multiply-adds of 64 (VNNI, BW) or 32 (AVX2) u8 x s8 pairs;
 * the array lives in registers (no barrier in the loop, which would spill it) */
__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline)) static int peak_vnni(int64_t n) {
    __m512i a[12], x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(5);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
    for (int64_t r = 0; r < n; r++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], x, y);
    }
    for (int i = 1; i < 12; i++) a[0] = _mm512_add_epi32(a[0], a[i]);
    return _mm512_reduce_add_epi32(a[0]);
}
/* vpmaddubsw + vpmaddwd + vpaddd on 512 (BW) or 256 (AVX2) bits, 6 a round on
 * independent registers, written out: with intrinsics GCC keeps some accumulators on
 * the stack, or hoists the invariant products out of the loop. Only the vpaddd is
 * on an accumulator's dependency chain. */
#define MADD3(R, i, acc) "vpmaddubsw %%" R "15, %%" R "14, %%" R i "\n vpmaddwd %%" R "15, %%" R i ", %%" R i \
                         "\n vpaddd %%" R i ", %%" R acc ", %%" R acc "\n"
#define PEAK_MADD(name, tgt, R, INIT)                                                                       \
    __attribute__((target(tgt), noinline)) static int name(int64_t n) {                                     \
        __asm__ volatile(INIT "1:\n" MADD3(R, "0", "6") MADD3(R, "1", "7") MADD3(R, "2", "8")                   \
                             MADD3(R, "3", "9") MADD3(R, "4", "10") MADD3(R, "5", "11") "dec %0\n jnz 1b\n"  \
                         : "+r"(n)                                                                         \
                         :                                                                                  \
                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
                           "xmm10", "xmm11", "xmm14", "xmm15", "cc");                                       \
        return (int)n;                                                                                      \
    }
/* the operands: all-ones and zero bytes (the values do not change the timing) */
PEAK_MADD(peak_bw, "avx512f,avx512bw", "zmm",
          "vpternlogd $0xff, %%zmm15, %%zmm15, %%zmm15\n vpxord %%zmm14, %%zmm14, %%zmm14\n")
PEAK_MADD(peak_avx2, "avx2", "ymm", "vpcmpeqb %%ymm15, %%ymm15, %%ymm15\n vpxor %%ymm14, %%ymm14, %%ymm14\n")
#endif

/* GOP/s (2 ops per multiply-add) of the path's multiply-add loop on `threads` cores at
 * once; 0 for the scalar path. */
static double int8_peak(qg__qpath path, int threads) {
    double best = 0;
#ifndef _OPENMP
    threads = 1;
#endif
#if defined(__x86_64__)
    const int64_t n = 4000000;
    const double ops = (path == QG__QPATH_VNNI ? 12.0 : 6.0) * (double)n * (path == QG__QPATH_AVX2 ? 64 : 128);
    for (int rep = 0; rep < 5; rep++) { /* the best of 5: a thread may start late */
        double t0 = now();
        int sink = 0;
        _Pragma("omp parallel num_threads(threads) reduction(+ : sink)")
        sink += path == QG__QPATH_VNNI ? peak_vnni(n) : path == QG__QPATH_AVX512BW ? peak_bw(n)
              : path == QG__QPATH_AVX2 ? peak_avx2(n) : 0;
        double t = now() - t0, g = path == QG__QPATH_SCALAR || sink == 1 ? 0 : ops * threads / t * 1e-9;
        best = g > best ? g : best;
    }
#endif
    return best;
}

/* 2*M*N*K of a converted conv or linear layer given its input */
static double layer_ops(qg_module *l, const qg_tensor *x, const qg_tensor *y) {
    const qg_tensor *w = qg_module_buffer(l, "weight");
    if (!w) return 0;
    double k = (double)(qg_tensor_numel(w) / w->shape[0]);
    (void)x;
    return 2.0 * k * (double)qg_tensor_numel(y); /* each output element: k multiply-adds */
}

/* The conv and linear ops (2 per multiply-add) of a forward of the int8 model. */
static double model_ops(qg_module *q8, int64_t batch) {
    qg_tensor *h = qg_tensor_randn(NULL, QG_F32, 4, (int64_t[]){batch, 1, 28, 28}), *x = h;
    double ops = 0;
    for (int i = 0; h && i < qg__module_nchildren(q8); i++) {
        qg_module *c = qg__module_child_at(q8, i, NULL);
        qg_tensor *in = h;
        h = qg_module_forward(c, in);
        if (h) ops += layer_ops(c, in, h);
    }
    qg_tape_reset(NULL);
    qg_tensor_free(x);
    return ops;
}

/* Each conv and linear layer timed alone on its own input (kept out of the tape, which
 * is reset after every call, as between forwards: no fresh pages per call). */
static void layers(const char *kind, qg_module *q8, int64_t batch) {
    printf("  %s, batch %lld, %d thread%s, path %s:\n", kind, (long long)batch, qg_get_num_threads(),
           qg_get_num_threads() > 1 ? "s" : "", qg__qpath_name(qg__qgemm_path()));
    qg_tensor *in = batch_of(batch);
    for (int i = 0; in && i < qg__module_nchildren(q8); i++) {
        const char *name;
        qg_module *c = qg__module_child_at(q8, i, &name);
        qg_tensor *out = qg_module_forward(c, in), *next = out ? qg_tensor_clone(out) : NULL;
        if (out && qg_module_buffer(c, "weight")) {
            double ops = layer_ops(c, in, out), t[200];
            int n = iters < 200 ? iters : 200;
            for (int r = 0; r < n; r++) {
                double t0 = now();
                qg_module_forward(c, in);
                t[r] = now() - t0;
                qg_tape_reset(NULL);
            }
            qsort(t, (size_t)n, sizeof *t, cmp);
            printf("    %-4s %-32s %9.1f us %8.1f GOP/s\n", name, c->type->name, 1e6 * t[n / 2], ops / t[n / 2] * 1e-9);
        }
        qg_tape_reset(NULL);
        qg_tensor_free(in);
        in = next;
    }
    qg_tensor_free(in);
}

int main(int argc, char **argv) {
    if (argc > 1) iters = atoi(argv[1]) > 0 ? atoi(argv[1]) : iters;
    qg_tensor_dict *fx = qg_safetensors_load(FIXTURE);
    if (!fx) return fprintf(stderr, "bench/int8: %s\n", qg_last_error()), 1;
    const char *inputs = load_images();
    const qg__qpath path = qg__qgemm_path();
    run_torch(path);
    const double peak[2] = {int8_peak(path, 1), int8_peak(path, 2)};
    printf("int8 peak of the %s path, measured: %.1f GOP/s on 1 core, %.1f on 2\n", qg__qpath_name(path), peak[0],
           peak[1]);
    printf("fmnist models, median ms per forward (%d runs); speedup = qgrad float / qgrad int8, PyTorch int8 / qgrad int8;\n"
           "int8 limit = the conv and linear ops at that peak; inputs: %s\n", iters, inputs);
    printf("%-5s %5s %3s %12s %12s %14s %9s %9s %11s\n", "model", "batch", "thr", "qgrad int8", "qgrad float",
           "PyTorch int8", "vs float", "vs torch", "int8 limit");
    const char *kinds[2] = {"cnn", "mlp"};
    qg_module *q8[2] = {0};
    for (int k = 0; k < 2; k++) {
        qg_module *f = trained(kinds[k], fx), *q = trained(kinds[k], fx);
        if (!f || !q || qg_qat_to_float_model(f) || qg_convert(q, NULL)) {
            fprintf(stderr, "bench/int8: %s\n", qg_last_error());
            return 1;
        }
        bool prev = qg_set_grad_enabled(false);
        for (int t = 1; t <= 2; t++) {
            qg_set_num_threads(t);
            for (int bi = 0; bi < 2; bi++) {
                int64_t b = bi ? 64 : 1;
                qg_tensor *x = batch_of(b);
                double ti = time_forward(q, x), tf = time_forward(f, x), tp = pt_ms[k][bi][t - 1];
                char pts[32] = "n/a", vs[32] = "n/a";
                if (tp > 0) snprintf(pts, sizeof pts, "%.3f", tp), snprintf(vs, sizeof vs, "%.2fx", tp / ti);
                char lim[32] = "n/a";
                if (peak[t - 1] > 0) snprintf(lim, sizeof lim, "%.3f", model_ops(q, b) / peak[t - 1] * 1e-6);
                printf("%-5s %5lld %3d %12.3f %12.3f %14s %8.2fx %9s %11s\n", kinds[k], (long long)b, t, ti, tf, pts,
                       tf / ti, vs, lim);
                qg_tensor_free(x);
            }
        }
        qg_set_grad_enabled(prev);
        qg_module_free(f);
        q8[k] = q;
    }
    printf("\nint8 layers (GOP/s = 2 x multiply-adds / time; see bench/qgemm for the path's peak):\n");
    bool prev = qg_set_grad_enabled(false);
    for (int t = 1; t <= 2; t++) {
        qg_set_num_threads(t);
        for (int k = 0; k < 2; k++) layers(kinds[k], q8[k], 64);
    }
    qg_set_grad_enabled(prev);
    qg_module_free(q8[0]), qg_module_free(q8[1]);
    qg_tensor_dict_free(fx);
    qg_tensor_free(images);
    qg_shutdown();
    return 0;
}
