/* GFLOP/s of qg__gemm_f32 beside OpenBLAS cblas_sgemm, at 1 and 2 threads, on a square
 * 1024 problem and the GEMMs of a batch-64 784-256-128-10 MLP (forward X @ W^T, input
 * gradients dY @ W, weight gradients dY^T @ X), in the layouts the MLP uses; the same
 * layouts go to OpenBLAS through its Trans flags.
 *
 * Run with OPENBLAS_CORETYPE=SkylakeX on this machine: Debian's OpenBLAS misdetects the
 * CPU otherwise. Each cell is the best of 5 batches of at least 40 ms per library,
 * measured again when other processes took more than 5% of the CPUs meanwhile; the
 * 'others' column is that share for the measurement shown. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "op_internal.h"

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
    qg__gemm_f32(s->m, s->n, s->k, 1.0f, p->A, rsa, csa, p->B, rsb, csb, 0.0f, p->C, s->n, 1);
}

static void run_openblas(const problem *p) {
    const shape *s = p->s;
    float *C = p->C + (size_t)s->m * s->n; /* second half of the buffer */
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                s->tb ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f, p->A,
                s->ta ? s->m : s->k, p->B, s->tb ? s->k : s->n, 0.0f, C, s->n);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    if (ms > 0) nanosleep(&ts, NULL);
}

/* Calls per batch so that a batch takes at least 40 ms (after a warm-up call that
 * sets up buffers, thread pools and caches). */
static long calibrate(void (*fn)(const problem *), const problem *p) {
    fn(p);
    long reps = 1;
    for (;;) {
        double t0 = now();
        for (long r = 0; r < reps; r++) fn(p);
        double dt = now() - t0;
        if (dt > 0.04) return reps;
        reps = dt > 0.004 ? (long)(reps * 0.05 / dt) + 1 : reps * 10;
    }
}

static double batch(void (*fn)(const problem *), const problem *p, long reps) {
    double t0 = now();
    for (long r = 0; r < reps; r++) fn(p);
    return (now() - t0) / (double)reps;
}

/* Seconds per call for both libraries: best of ROUNDS batches each, the two taking
 * turns so that a passing disturbance does not hit only one of them. Idle worker
 * threads spin for a while after a threaded run before they sleep (OpenBLAS's for a
 * few hundred ms, also after being told the thread count; LLVM libomp's for 200 ms by
 * default) and would take a core from the other library: at 2 threads each batch
 * waits that out first. */
#define ROUNDS 5
static void time_both(const problem *p, int nt, double *tq, double *to) {
    int wait_q = nt > 1 ? 600 : 0, wait_o = nt > 1 ? 250 : 0;
    sleep_ms(wait_q);
    long rq = calibrate(run_qgrad, p);
    sleep_ms(wait_o);
    long ro = calibrate(run_openblas, p);
    *tq = *to = 1e30;
    for (int r = 0; r < ROUNDS; r++) {
        sleep_ms(wait_q);
        double t = batch(run_qgrad, p, rq);
        if (t < *tq) *tq = t;
        sleep_ms(wait_o);
        t = batch(run_openblas, p, ro);
        if (t < *to) *to = t;
    }
}

/* CPU seconds used by the whole machine (from /proc/stat) and by this process, to tell
 * how much of the CPUs other processes took during a measurement: on a 2-core machine
 * a busy neighbour wrecks the threaded numbers (a worker waiting for a core stalls each
 * call by a scheduler time slice). */
static double machine_cpu(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    unsigned long long v[8] = {0};
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                     &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got < 8) return 0;
    /* user nice system [idle iowait] irq softirq steal */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

int main(void) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    if (!ct || !*ct)
        printf("WARNING: OPENBLAS_CORETYPE is not set; run with OPENBLAS_CORETYPE=SkylakeX "
               "(Debian's OpenBLAS misdetects this CPU)\n");
    printf("OpenBLAS core: %s\n", openblas_get_corename());
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("%-14s %-16s %7s %12s %14s %7s %12s %8s\n", "shape", "MxKxN", "threads",
           "qgrad GF/s", "OpenBLAS GF/s", "ratio", "max|diff|", "others");
    double others_max = 0;

    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    double worst_ratio = 1e30;
    for (int si = 0; si < nshapes; si++) {
        const shape *s = &shapes[si];
        size_t na = (size_t)s->m * s->k, nb = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
        float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
        float *C1 = malloc(2 * nc * sizeof *C1), *C2 = C1 + nc; /* qgrad's, OpenBLAS's */
        srand(1234 + si);
        for (size_t i = 0; i < na; i++) A[i] = (float)((double)rand() / RAND_MAX * 2 - 1);
        for (size_t i = 0; i < nb; i++) B[i] = (float)((double)rand() / RAND_MAX * 2 - 1);
        problem pr = {s, A, B, C1};
        double flops = 2.0 * s->m * s->n * s->k;
        char dims[32];
        snprintf(dims, sizeof dims, "%dx%dx%d", s->m, s->k, s->n);
        for (int nt = 1; nt <= 2; nt++) {
            qg_set_num_threads(nt);
            openblas_set_num_threads(nt);
            /* Measure; again (up to twice more) if other processes took more than 5% of
             * the CPUs meanwhile (jiffy-grained: /proc/stat minus our own CPU time). */
            double tq, to, others;
            for (int attempt = 0; attempt < 3; attempt++) {
                double w0 = now(), m0 = machine_cpu(), s0 = self_cpu();
                time_both(&pr, nt, &tq, &to);
                others = (machine_cpu() - m0 - (self_cpu() - s0)) / ((now() - w0) * ncpu);
                if (others < 0) others = 0;
                if (others <= 0.05) break;
            }
            if (others > others_max) others_max = others;
            double diff = 0;
            for (size_t i = 0; i < nc; i++) {
                double d = fabs((double)C1[i] - (double)C2[i]);
                if (!(d <= diff)) diff = d; /* NaN sticks */
            }
            double gq = flops / tq * 1e-9, go = flops / to * 1e-9;
            if (gq / go < worst_ratio) worst_ratio = gq / go;
            printf("%-14s %-16s %7d %12.1f %14.1f %7.2f %12.3g %7.0f%%\n", s->what, dims, nt,
                   gq, go, gq / go, diff, 100 * others);
            fflush(stdout);
        }
        free(A), free(B), free(C1);
    }
    printf("lowest ratio: %.2f\n", worst_ratio);
    if (others_max > 0.05)
        printf("WARNING: other processes used up to %.0f%% of the CPUs during a measurement "
               "(column 'others'); such rows, the threaded ones most, are not reliable\n",
               100 * others_max);
    return 0;
}
