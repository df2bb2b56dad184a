/* conv2d forward + backward (input, weight and bias gradients) on the Fashion-MNIST
 * CNN's shapes — batch 64, 1->32 channels at 28x28 and 32->64 at 14x14, 3x3 kernels,
 * padding 1 — without and with bias, at 1 and 2 threads, beside PyTorch 1.13 timing
 * the same thing (bench/conv_torch.py, run with /usr/bin/python3 in the same process
 * tree after qgrad's runs).
 *
 * One iteration: y = conv2d(x, w, b); backward(y, dy); tape reset. Each cell is the
 * median (and best) of ITERS timed iterations after WARMUP untimed ones, the best of
 * ROUNDS such measurements (PyTorch: of ROUNDS processes). GFLOP/s
 * counts the three GEMM-sized products (forward, dx, dW): 3 * 2*N*K*C*kh*kw*OH*OW.
 *
 * usage: bench/conv [path/to/conv_torch.py]   (default: the source tree's copy) */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qgrad.h"

#ifndef QG_SOURCE_DIR
#define QG_SOURCE_DIR "."
#endif

#define WARMUP 20
#define ITERS 40
#define ROUNDS 3

typedef struct {
    const char *name;
    int64_t N, C, K, H, W, k;
} shape;

static const shape shapes[] = {
    {"1->32 28x28", 64, 1, 32, 28, 28, 3},
    {"32->64 14x14", 64, 32, 64, 14, 14, 3},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

typedef struct {
    double med, best; /* ms; 0 = not measured */
} timing;

static timing qg_res[NSHAPES][2][2], pt_res[NSHAPES][2][2]; /* [shape][bias][threads-1] */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double flops(const shape *s) {
    return 3.0 * 2.0 * (double)(s->N * s->K * s->C * s->k * s->k * s->H * s->W);
}

static int run_qgrad(const shape *s, int bias, timing *out) {
    qg_rng g;
    qg_rng_init(&g, 1);
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, (int64_t[]){s->N, s->C, s->H, s->W});
    qg_tensor *w = qg_tensor_randn(&g, QG_F32, 4, (int64_t[]){s->K, s->C, s->k, s->k});
    qg_tensor *b = bias ? qg_tensor_randn(&g, QG_F32, 1, (int64_t[]){s->K}) : NULL;
    qg_tensor *dy = qg_tensor_randn(&g, QG_F32, 4, (int64_t[]){s->N, s->K, s->H, s->W});
    qg_tensor_set_requires_grad(x, true);
    qg_tensor_set_requires_grad(w, true);
    if (b) qg_tensor_set_requires_grad(b, true);
    const int pad[2] = {1, 1};
    double t[ITERS];
    int rc = 0;
    for (int it = 0; it < WARMUP + ITERS; it++) {
        double t0 = now();
        qg_tensor *y = qg_conv2d(x, w, b, NULL, pad, NULL, 1);
        if (!y || qg_backward(y, dy)) {
            fprintf(stderr, "conv bench: %s\n", qg_last_error());
            rc = 1;
            break;
        }
        qg_tape_reset(NULL);
        if (it >= WARMUP) t[it - WARMUP] = (now() - t0) * 1e3;
    }
    if (!rc) {
        qsort(t, ITERS, sizeof t[0], cmp_double);
        out->med = t[ITERS / 2];
        out->best = t[0];
    }
    qg_tensor_free(x), qg_tensor_free(w), qg_tensor_free(b), qg_tensor_free(dy);
    return rc;
}

/* Runs the PyTorch script; parses lines "conv <shape> <bias> <threads> <median_ms> <best_ms>"
 * and keeps, per cell, the run with the lowest median. */
static int run_torch(const char *script, bool notes) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' %d %d 2>&1", script, WARMUP, ITERS);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        int si, bi, th;
        double med, best;
        if (sscanf(line, "conv %d %d %d %lf %lf", &si, &bi, &th, &med, &best) == 5 && si >= 0 && si < NSHAPES &&
            (bi == 0 || bi == 1) && (th == 1 || th == 2)) {
            timing *t = &pt_res[si][bi][th - 1];
            if (t->med == 0 || med < t->med) *t = (timing){med, best};
            got++;
        } else if (line[0] == '#' && notes) {
            fputs(line, stdout); /* the script's notes (e.g. torch missing) */
        }
    }
    pclose(p);
    return got;
}

int main(int argc, char **argv) {
    const char *script = argc > 1 ? argv[1] : QG_SOURCE_DIR "/bench/conv_torch.py";
    printf("conv2d forward+backward (dx, dW, db), f32, 3x3, padding 1; ms per iteration, median of %d (best)\n", ITERS);
    for (int r = 0; r < ROUNDS; r++) /* each cell keeps its best round, by median */
        for (int th = 1; th <= 2; th++) {
            qg_set_num_threads(th);
            for (int si = 0; si < NSHAPES; si++)
                for (int bi = 0; bi < 2; bi++) {
                    timing t, *q = &qg_res[si][bi][th - 1];
                    if (run_qgrad(&shapes[si], bi, &t)) return 1;
                    if (q->med == 0 || t.med < q->med) *q = t;
                }
        }
    qg_set_num_threads(0);
    qg_tape_free(qg_tape_current());

    /* PyTorch's times vary between processes (layer 1 by up to 1.5x here), so it runs
     * ROUNDS times too and each cell keeps its best run. */
    fflush(stdout);
    int have_torch = 0;
    for (int r = 0; r < ROUNDS; r++) have_torch += run_torch(script, r == 0) > 0;
    printf("\n%-14s %-5s %-3s | %-16s %-8s | %-16s %-8s | %s\n", "shape (N=64)", "bias", "thr", "qgrad ms", "GFLOP/s",
           "PyTorch ms", "GFLOP/s", "ratio qgrad/PyTorch");
    for (int th = 1; th <= 2; th++)
        for (int si = 0; si < NSHAPES; si++)
            for (int bi = 0; bi < 2; bi++) {
                const timing *q = &qg_res[si][bi][th - 1], *t = &pt_res[si][bi][th - 1];
                double f = flops(&shapes[si]) * 1e-6;
                char qs[32], ts[32] = "-", tg[16] = "-", ratio[16] = "-";
                snprintf(qs, sizeof qs, "%.3f (%.3f)", q->med, q->best);
                if (t->med > 0) {
                    snprintf(ts, sizeof ts, "%.3f (%.3f)", t->med, t->best);
                    snprintf(tg, sizeof tg, "%.1f", f / t->med);
                    snprintf(ratio, sizeof ratio, "%.2f", q->med / t->med);
                }
                printf("%-14s %-5s %-3d | %-16s %-8.1f | %-16s %-8s | %s\n", shapes[si].name, bi ? "yes" : "no", th, qs,
                       f / q->med, ts, tg, ratio);
            }
    if (!have_torch)
        printf("\nNo PyTorch numbers: %s did not run or could not import torch (install python3-torch).\n", script);
    return 0;
}
