/* GFLOP/s of qg_gemm_f32 beside OpenBLAS cblas_sgemm, at 1 and 2 threads, on a square
 * 1024 problem and the GEMMs of a batch-64 784-256-128-10 MLP (forward X @ W^T, input
 * gradients dY @ W, weight gradients dY^T @ X), in the layouts the MLP uses; the same
 * layouts go to OpenBLAS through its Trans flags.
 *
 * Run with OPENBLAS_CORETYPE=SkylakeX on this machine: Debian's OpenBLAS misdetects the
 * CPU otherwise. Each cell is the best of several batches of at least 40 ms. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "internal.h"

void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);

typedef struct {
    const char *what;
    int m, n, k; /* C(m,n) = A(m,k) B(k,n) */
    int ta, tb;  /* operand stored transposed: A as (k,m), B as (n,k), both row-major */
} shape;

static const shape shapes[] = {
    {"square", 1024, 1024, 1024, 0, 0},
    {"fwd X@W1^T", 64, 256, 784, 0, 1},
    {"fwd h1@W2^T", 64, 128, 256, 0, 1},
    {"fwd h2@W3^T", 64, 10, 128, 0, 1},
    {"bwd dY1@W1", 64, 784, 256, 0, 0},
    {"bwd dY2@W2", 64, 256, 128, 0, 0},
    {"bwd dY3@W3", 64, 128, 10, 0, 0},
    {"dW1=dY1^T@X", 256, 784, 64, 1, 0},
    {"dW2=dY2^T@h1", 128, 256, 64, 1, 0},
    {"dW3=dY3^T@h2", 10, 128, 64, 1, 0},
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const shape *s;
    const float *A, *B;
    float *C;
} problem;

static void run_qgrad(const problem *p) {
    const shape *s = p->s;
    int64_t rsa = s->ta ? 1 : s->k, csa = s->ta ? s->m : 1;
    int64_t rsb = s->tb ? 1 : s->n, csb = s->tb ? s->k : 1;
    qg_gemm_f32(s->m, s->n, s->k, 1.0f, p->A, rsa, csa, p->B, rsb, csb, 0.0f, p->C, s->n, 1);
}

static void run_openblas(const problem *p) {
    const shape *s = p->s;
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                s->tb ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f, p->A,
                s->ta ? s->m : s->k, p->B, s->tb ? s->k : s->n, 0.0f, p->C, s->n);
}

/* Seconds per call: best over batches, each long enough to time well. */
static double time_it(void (*fn)(const problem *), const problem *p) {
    fn(p); /* warm-up: buffers, thread pools, caches */
    int reps = 1;
    for (;;) {
        double t0 = now();
        for (int r = 0; r < reps; r++) fn(p);
        if (now() - t0 > 0.01) break;
        reps *= 2;
    }
    double best = 1e30, total = 0;
    int batches = 0;
    while (batches < 5 || total < 0.2) {
        double t0 = now();
        for (int r = 0; r < reps * 4; r++) fn(p);
        double dt = now() - t0;
        total += dt;
        batches++;
        if (dt / (reps * 4) < best) best = dt / (reps * 4);
    }
    return best;
}

/* Lets the other library's worker threads stop spinning before timing this one. */
static void settle(void) {
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(void) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    if (!ct || !*ct)
        printf("WARNING: OPENBLAS_CORETYPE is not set; run with OPENBLAS_CORETYPE=SkylakeX "
               "(Debian's OpenBLAS misdetects this CPU)\n");
    printf("OpenBLAS core: %s\n", openblas_get_corename());
    printf("%-14s %-16s %7s %12s %14s %7s %12s\n", "shape", "MxKxN", "threads",
           "qgrad GF/s", "OpenBLAS GF/s", "ratio", "max|diff|");

    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    double worst_ratio = 1e30;
    for (int si = 0; si < nshapes; si++) {
        const shape *s = &shapes[si];
        size_t na = (size_t)s->m * s->k, nb = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
        float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
        float *C1 = malloc(nc * sizeof *C1), *C2 = malloc(nc * sizeof *C2);
        srand(1234 + si);
        for (size_t i = 0; i < na; i++) A[i] = (float)rand() / RAND_MAX * 2 - 1;
        for (size_t i = 0; i < nb; i++) B[i] = (float)rand() / RAND_MAX * 2 - 1;
        problem pq = {s, A, B, C1}, po = {s, A, B, C2};
        double flops = 2.0 * s->m * s->n * s->k;
        char dims[32];
        snprintf(dims, sizeof dims, "%dx%dx%d", s->m, s->k, s->n);
        for (int nt = 1; nt <= 2; nt++) {
            qg_set_num_threads(nt);
            openblas_set_num_threads(nt);
            settle();
            double tq = time_it(run_qgrad, &pq);
            settle();
            double to = time_it(run_openblas, &po);
            double diff = 0;
            for (size_t i = 0; i < nc; i++) {
                double d = fabs((double)C1[i] - (double)C2[i]);
                if (!(d <= diff)) diff = d; /* NaN sticks */
            }
            double gq = flops / tq * 1e-9, go = flops / to * 1e-9;
            if (gq / go < worst_ratio) worst_ratio = gq / go;
            printf("%-14s %-16s %7d %12.1f %14.1f %7.2f %12.3g\n", s->what, dims, nt, gq, go,
                   gq / go, diff);
            fflush(stdout);
        }
        free(A), free(B), free(C1), free(C2);
    }
    printf("lowest ratio: %.2f\n", worst_ratio);
    return 0;
}
