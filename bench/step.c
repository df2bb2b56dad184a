/* The training step of the Fashion-MNIST CNN and MLP (examples/fmnist's models and
 * optimizer: SGD lr 0.05, momentum 0.9, weight decay 1e-4), QAT (fbgemm qconfig, fused)
 * and float, at batch 64 and 256 and 1 and 2 threads, beside PyTorch 1.13 running the
 * same (bench/torch_step.py, /usr/bin/python3, in the same run).
 *
 * One step: forward, cross-entropy, zero_grad, backward, SGD step, tape reset; each
 * cell is the median of ITERS steps after WARMUP. GFLOP/s counts the step's conv and
 * linear multiply-adds, 2 FLOPs each: the forward product, the weight gradient, and
 * the input gradient of every layer but the first (whose input needs none). %peak is
 * against the FMA peak of the float GEMM's ISA, measured here by a loop of
 * independent FMAs on 1 and 2 cores; "limit" is the step's FLOPs at that peak.
 *
 * Then the scaling figure: GFLOP/s of the three models at batch 256 (the two above and
 * a wider CNN, 64-128-256 channels in three Conv-BN-ReLU blocks), against their size,
 * and the CNN QAT step on 2 threads with one core busy with another process.
 * Then, per model and mode at batch 64 on 2 threads, where the time goes: forward and
 * backward of each layer (qgrad's profiling hooks, autograd/internal.h: a backward
 * node counts for the layer that recorded it), the loss, zero_grad and the optimizer,
 * and the share of the step outside the float GEMM.
 *
 * usage: bench/step [iterations] [profile [threads]]   (profile: the breakdown only, at
 * `threads` threads, 2 by default; QG_PYTHON overrides /usr/bin/python3) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../examples/fmnist_model.h"
#include "internal.h"
#include "kernels/isa.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define SCRIPT QG_SOURCE_DIR "/bench/torch_step.py"
#define WARMUP 5

static int iters = 20;
static const char *kinds[3] = {"cnn", "mlp", "wide"}, *modes[2] = {"qat", "float"};
static const int64_t batches[2] = {64, 256};
static double pt_ms[2][2][2][2]; /* kind, mode, batch, threads: PyTorch's median */

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------- the FMA peak */

/* n rounds of 12 independent FMAs (registers only), on 512 or 256 bits: compiled with
 * target attributes in every build; the float GEMM's level (kernels/isa.h) picks one. */
#if defined(__x86_64__)
#define PEAK_LOOP(name, tgt, V, SET, FMA, STORE, L)                                      \
    __attribute__((target(tgt), noinline)) static float name(int64_t n) {                \
        V a[12], x = SET(0.999f), y = SET(1e-3f);                                        \
        for (int i = 0; i < 12; i++) a[i] = SET((float)i);                               \
        for (int64_t r = 0; r < n; r++) {                                                \
            _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++) a[i] = FMA(a[i], x, y); \
        }                                                                                \
        float t[L], s = 0;                                                               \
        for (int i = 0; i < 12; i++) STORE(t, a[i]), s += t[0] + t[L - 1];              \
        return s;                                                                        \
    }
PEAK_LOOP(peak_avx512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps, 16)
PEAK_LOOP(peak_avx2, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps, 8)
#endif

/* The FMA loop of the float GEMM's level: its name and lanes (NULL, 0: no FMA). */
static const char *peak_isa(int *lanes) {
    const qg__isa lv = qg__isa_level();
    *lanes = lv == QG__ISA_V4 ? 16 : lv == QG__ISA_V3 ? 8 : 0;
    return lv == QG__ISA_V4 ? "AVX-512 FMA" : lv == QG__ISA_V3 ? "AVX2 FMA" : NULL;
}

/* GFLOP/s of the FMA loop on `threads` cores at once (0: no FMA at this level). */
static double fma_peak(int threads) {
    double best = 0;
#ifndef _OPENMP
    threads = 1;
#endif
#if defined(__x86_64__)
    int lanes;
    if (!peak_isa(&lanes)) return 0;
    const int64_t n = 4000000;
    for (int rep = 0; rep < 5; rep++) { /* the best of 5: a thread may start late */
        double t0 = qg__now();
        float sink = 0;
        _Pragma("omp parallel num_threads(threads) reduction(+ : sink)")
        sink += lanes == 16 ? peak_avx512(n) : peak_avx2(n);
        double t = qg__now() - t0, g = 12.0 * (double)n * lanes * 2 * threads / t * 1e-9;
        best = g > best && sink != 0.5f ? g : best;
    }
#endif
    (void)threads;
    return best;
}

/* ------------------------------------------------------------- models */

/* The wider CNN of the scaling figure (qgrad only): three Conv-BN-ReLU-pool blocks of
 * 64, 128 and 256 channels on 28x28, then one linear layer. */
static qg_module *build_wide(qg_rng *g) {
    qg_module *m = qg_sequential_new();
    const int64_t ch[4] = {1, 64, 128, 256};
    char n[4][16];
    qg_sequential_add(m, "quant", qg_quant_stub_new());
    for (int i = 0; i < 3; i++) {
        snprintf(n[0], 16, "c%d", i + 1), snprintf(n[1], 16, "b%d", i + 1), snprintf(n[2], 16, "relu%d", i + 1);
        snprintf(n[3], 16, "pool%d", i + 1);
        qg_sequential_add(m, n[0], conv3x3(ch[i], ch[i + 1], g));
        qg_sequential_add(m, n[1], qg_nn_batchnorm2d_new(ch[i + 1], NULL));
        qg_sequential_add(m, n[2], qg_nn_relu_new());
        qg_sequential_add(m, n[3], qg_nn_maxpool2d_new(2, 2, NULL));
    }
    qg_sequential_add(m, "flatten", qg_nn_flatten_new(1, -1));
    qg_sequential_add(m, "fc", qg_nn_linear_new(256 * 3 * 3, 10, NULL, g));
    qg_sequential_add(m, "dequant", qg_dequant_stub_new());
    return m;
}

static qg_status fuse_wide(qg_module *m) {
    const char *a[] = {"c1", "b1", "relu1"}, *b[] = {"c2", "b2", "relu2"}, *c[] = {"c3", "b3", "relu3"};
    return qg_fuse_modules_qat(m, 3, (const char *const *[]){a, b, c}, (int[]){3, 3, 3});
}

static qg_module *model(int k, int mode, qg_rng *g) {
    qg_module *m = k == 2 ? build_wide(g) : build_model(kinds[k], g);
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    if (!m || (mode == 0 && ((k == 2 ? fuse_wide(m) : fuse_model(m, kinds[k])) || qg_prepare_qat(m, &qc)))) {
        fprintf(stderr, "bench/step: %s\n", qg_last_error());
        exit(1);
    }
    for (int i = 0; i < qg__module_nchildren(m); i++) { /* the profile names layers by path */
        const char *name;
        qg_module *c = qg__module_child_at(m, i, &name);
        if (!c->path) qg_module_set_path(c, name);
    }
    return m;
}

/* The step's conv and linear FLOPs: each weighted layer's multiply-adds (output
 * elements x weight elements per output channel) 2x forward, 2x for the weight
 * gradient, 2x for the input gradient but in the first. */
static double step_flops(qg_module *m, const qg_tensor *x) {
    double flops = 0;
    bool first = true, prev = qg_set_grad_enabled(false);
    qg_tensor *h = (qg_tensor *)x;
    for (int i = 0; h && i < qg__module_nchildren(m); i++) {
        qg_module *c = qg__module_child_at(m, i, NULL);
        h = qg_module_forward(c, h);
        const qg_tensor *w = qg_module_param(c, "weight");
        if (!h || !w) continue;
        double macs = (double)qg_tensor_numel(h) * (double)(qg_tensor_numel(w) / w->shape[0]);
        flops += 2 * macs * (first ? 2 : 3);
        first = false;
    }
    qg_set_grad_enabled(prev);
    qg_tape_reset(NULL);
    return flops;
}

typedef struct {
    qg_module *m;
    qg_sgd *opt;
    qg_tensor_list *ps;
    qg_tensor *x, *y;
} run;

static run run_new(int k, int mode, int64_t batch) {
    qg_rng g;
    qg_rng_init(&g, 1);
    run r = {.m = model(k, mode, &g)};
    r.ps = qg_module_parameters(r.m);
    r.opt = qg_sgd_new(r.ps, &(qg_sgd_opts){.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    r.x = qg_tensor_randn(&g, QG_F32, 4, (int64_t[]){batch, 1, 28, 28});
    int64_t *lab = malloc(sizeof *lab * (size_t)batch);
    for (int64_t i = 0; lab && i < batch; i++) lab[i] = (int64_t)(qg_rng_next_u64(&g) % 10);
    r.y = lab ? qg_tensor_from_data(QG_I64, 1, &batch, lab) : NULL;
    free(lab);
    if (!r.opt || !r.x || !r.y) {
        fprintf(stderr, "bench/step: %s\n", qg_last_error());
        exit(1);
    }
    return r;
}

static void run_free(run *r) {
    qg_sgd_free(r->opt);
    qg_tensor_list_free(r->ps);
    qg_module_free(r->m);
    qg_tensor_free(r->x), qg_tensor_free(r->y);
}

/* One step; the phases' times into t (forward+loss, zero_grad, backward, step) if given. */
static void step(run *r, double *t) {
    double t0 = qg__now();
    qg_tensor *loss = qg_cross_entropy(qg_module_forward(r->m, r->x), r->y, QG_REDUCTION_MEAN);
    double t1 = qg__now();
    qg_sgd_zero_grad(r->opt);
    double t2 = qg__now();
    qg_status st = loss ? qg_backward(loss, NULL) : qg_last_status();
    double t3 = qg__now();
    if (!st) st = qg_sgd_step(r->opt);
    double t4 = qg__now();
    qg_tape_reset(NULL);
    if (st) {
        fprintf(stderr, "bench/step: %s\n", qg_last_error());
        exit(1);
    }
    if (t) t[0] += t1 - t0, t[1] += t2 - t1, t[2] += t3 - t2, t[3] += t4 - t3;
}

/* median ms of a step */
static double time_steps(run *r) {
    double t[1000];
    int n = iters < 1000 ? iters : 1000;
    for (int i = 0; i < WARMUP; i++) step(r, NULL);
    for (int i = 0; i < n; i++) {
        double t0 = qg__now();
        step(r, NULL);
        t[i] = qg__now() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, cmp);
    return 1e3 * t[n / 2];
}

/* ------------------------------------------------------------- the breakdown */

#define MAXL 24
#define MAXOP 64
typedef struct {
    const char *name[MAXL];
    double fwd[MAXL], bwd[MAXL];
    int n;
    double loss_bwd;
    const char *op_path[MAXOP], *op[MAXOP]; /* backward by layer and op */
    double op_s[MAXOP];
    int nop;
} prof_acc;

static int slot(prof_acc *a, const char *path) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->name[i], path)) return i;
    if (a->n == MAXL) return MAXL - 1;
    a->name[a->n] = path;
    return a->n++;
}

static void on_fwd(void *ctx, const char *path, double s) {
    prof_acc *a = ctx;
    a->fwd[slot(a, path ? path : "?")] += s;
}

static void on_bwd(void *ctx, const char *path, const char *op, double s) {
    prof_acc *a = ctx;
    if (!path) {
        a->loss_bwd += s;
        return;
    }
    a->bwd[slot(a, path)] += s;
    int i = 0;
    while (i < a->nop && (strcmp(a->op_path[i], path) || strcmp(a->op[i], op))) i++;
    if (i == a->nop && a->nop < MAXOP) a->op_path[i] = path, a->op[i] = op, a->op_s[i] = 0, a->nop++;
    if (i < MAXOP) a->op_s[i] += s;
}

static int by_time(const void *x, const void *y, void *ctx) {
    const double *t = ctx;
    const int i = *(const int *)x, j = *(const int *)y;
    return t[i] < t[j] ? 1 : t[i] > t[j] ? -1 : 0;
}

static void breakdown(int k, int mode, int64_t batch) {
    run r = run_new(k, mode, batch);
    for (int i = 0; i < WARMUP; i++) step(&r, NULL);
    prof_acc a = {.n = 0};
    qg__prof pf = {.depth = 1, .on_forward = on_fwd, .on_backward = on_bwd, .ctx = &a};
    double ph[4] = {0};
    const int n = iters;
    double t0 = qg__now();
    qg__prof_on = &pf;
    for (int i = 0; i < n; i++) step(&r, ph);
    qg__prof_on = NULL;
    const double total = (qg__now() - t0) / n * 1e3, thr = qg_get_num_threads();
    double fsum = 0, bsum = 0;
    for (int i = 0; i < a.n; i++) fsum += a.fwd[i], bsum += a.bwd[i];
    printf("\n%s %s, batch %lld, %d threads: %.3f ms/step (profiled), %.0f%% of it outside the float GEMM\n",
           kinds[k], modes[mode], (long long)batch, (int)thr, total,
           100 * (1 - pf.gemm / n * 1e3 / (total * thr)));
    printf("  %-10s %-28s %10s %10s\n", "layer", "type", "fwd ms", "bwd ms");
    for (int i = 0; i < a.n; i++) {
        qg_module *c = qg_module_get(r.m, a.name[i]);
        printf("  %-10s %-28s %10.3f %10.3f\n", a.name[i], c ? c->type->name : "?", a.fwd[i] / n * 1e3,
               a.bwd[i] / n * 1e3);
    }
    printf("  %-10s %-28s %10.3f %10.3f\n", "loss", "cross_entropy", (ph[0] - fsum) / n * 1e3, a.loss_bwd / n * 1e3);
    printf("  %-10s %-28s %10.3f %10s\n", "zero_grad", "", ph[1] / n * 1e3, "");
    printf("  %-10s %-28s %10.3f %10s\n", "sgd.step", "", ph[3] / n * 1e3, "");
    printf("  %-10s %-28s %10.3f %10.3f   (backward outside the nodes: %.3f)\n", "total", "", ph[0] / n * 1e3,
           ph[2] / n * 1e3, (ph[2] - bsum - a.loss_bwd) / n * 1e3);
    int idx[MAXOP];
    for (int i = 0; i < a.nop; i++) idx[i] = i;
    qsort_r(idx, (size_t)a.nop, sizeof *idx, by_time, a.op_s);
    printf("  backward, the costliest ops:");
    for (int i = 0; i < a.nop && i < 8; i++)
        printf("%s %s.%s %.3f", i ? "," : "", a.op_path[idx[i]], a.op[idx[i]], a.op_s[idx[i]] / n * 1e3);
    printf("\n");
    run_free(&r);
}

/* ------------------------------------------------------------- PyTorch */

static void run_torch(void) {
    const char *py = getenv("QG_PYTHON") ? getenv("QG_PYTHON") : "/usr/bin/python3";
    char cmd[2048], line[512], kind[8], mode[8];
    snprintf(cmd, sizeof cmd, "'%s' '%s' %d 2>&1", py, SCRIPT, iters);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    int b, t;
    double ms, best;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "step %7s %7s %d %d %lf %lf", kind, mode, &b, &t, &ms, &best) == 6 && (b == 64 || b == 256) &&
            (t == 1 || t == 2))
            pt_ms[strcmp(kind, "cnn") != 0][strcmp(mode, "qat") != 0][b == 256][t - 1] = ms;
        else if (line[0] == '#')
            fputs(line, stdout);
    pclose(p);
}

/* ------------------------------------------------------- the competing load */

/* The CNN QAT step at batch 64 on 2 threads, quiet and then with another process
 * spinning on one core (a fork that loops until killed): the ratio of the medians
 * says whether the threads wait for each other without spinning the lost core away. */
static void competing_load(void) {
    qg_set_num_threads(2);
    run r = run_new(0, 0, 64);
    const double quiet = time_steps(&r);
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0)
        for (volatile unsigned long i = 0;; i++) {
        }
    double busy = -1;
    if (pid > 0) {
        busy = time_steps(&r);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    printf("\ncompeting load: cnn qat, batch 64, 2 threads, median ms of %d: quiet %.2f, one core busy %s", iters,
           quiet, busy > 0 ? "" : "n/a (fork failed)\n");
    if (busy > 0) printf("%.2f (%.2fx; goal <= 2.5x)\n", busy, busy / quiet);
    run_free(&r);
}

int main(int argc, char **argv) {
    if (argc > 1) iters = atoi(argv[1]) > 0 ? atoi(argv[1]) : iters;
    const bool table = !(argc > 2 && !strcmp(argv[2], "profile"));
    const double peak[2] = {fma_peak(1), fma_peak(2)};
    int lanes;
    const char *isa = peak_isa(&lanes);
    printf("float kernels: %s (%s build)\n", qg__isa_name(qg__isa_level()),
#ifdef QG_DISPATCH
           "portable"
#else
           "single-ISA"
#endif
    );
    if (isa && peak[0] > 0)
        printf("FMA peak (%s loop, measured): %.1f GFLOP/s on 1 core, %.1f on 2\n", isa, peak[0], peak[1]);
    else
        printf("FMA peak: no FMA at this level (-Dnative=false?): %%peak is n/a\n");
    if (table) run_torch();
    if (table)
        printf("training steps, median ms of %d; GFLOP/s = conv + linear FLOPs / time; limit = those FLOPs at the peak\n",
               iters);
    if (table) printf("%-4s %-6s %5s %3s %10s %9s %7s %12s %9s %9s\n", "model", "mode", "batch", "thr", "qgrad ms", "GFLOP/s",
           "%peak", "PyTorch ms", "vs torch", "limit ms");
    for (int k = 0; table && k < 2; k++)
        for (int mode = 0; mode < 2; mode++)
            for (int bi = 0; bi < 2; bi++)
                for (int t = 1; t <= 2; t++) {
                    qg_set_num_threads(t);
                    run r = run_new(k, mode, batches[bi]);
                    const double flops = step_flops(r.m, r.x), ms = time_steps(&r);
                    const double gf = flops / ms * 1e-6, tp = pt_ms[k][mode][bi][t - 1];
                    char pk[16] = "n/a", pts[16] = "n/a", vs[16] = "n/a", lim[16] = "n/a";
                    if (peak[t - 1] > 0)
                        snprintf(pk, sizeof pk, "%.0f%%", 100 * gf / peak[t - 1]),
                            snprintf(lim, sizeof lim, "%.2f", flops / peak[t - 1] * 1e-6);
                    if (tp > 0) snprintf(pts, sizeof pts, "%.2f", tp), snprintf(vs, sizeof vs, "%.2fx", tp / ms);
                    printf("%-5s %-6s %5lld %3d %10.2f %9.1f %7s %12s %9s %9s\n", kinds[k], modes[mode],
                           (long long)batches[bi], t, ms, gf, pk, pts, vs, lim);
                    run_free(&r);
                }
    /* the scaling figure: GFLOP/s against model size, the wider CNN at batch 256 */
    if (table) printf("\nscaling, batch 256: GFLOP/s (%%peak) by model size\n%-5s %-6s %3s %12s %10s %9s %7s\n",
                      "model", "mode", "thr", "step MFLOP", "qgrad ms", "GFLOP/s", "%peak");
    for (int k = 0; table && k < 3; k++)
        for (int mode = 0; mode < 2; mode++)
            for (int t = 1; t <= 2; t++) {
                qg_set_num_threads(t);
                run r = run_new(k, mode, 256);
                const double flops = step_flops(r.m, r.x), ms = time_steps(&r), gf = flops / ms * 1e-6;
                char pk[16] = "n/a";
                if (peak[t - 1] > 0) snprintf(pk, sizeof pk, "%.0f%%", 100 * gf / peak[t - 1]);
                printf("%-5s %-6s %3d %12.0f %10.2f %9.1f %7s\n", kinds[k], modes[mode], t, flops * 1e-6, ms, gf, pk);
                run_free(&r);
            }
    if (table) competing_load();
    qg_set_num_threads(!table && argc > 3 && atoi(argv[3]) > 0 ? atoi(argv[3]) : 2);
    for (int k = 0; k < 2; k++)
        for (int mode = 0; mode < 2; mode++) breakdown(k, mode, 64);
    qg_shutdown();
    return 0;
}
