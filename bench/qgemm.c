/* Speed of qg__qgemm (the int8 GEMM, uint8 A x int8 W -> int32) on every path this CPU
 * runs, at 1 and 2 threads, on the models' shapes, beside the ISA's int8 peak and
 * qgrad's float GEMM (qg__gemm_f32) on the same problem. GOP/s = 2 m n k / time.
 *
 * Two weight sets: "8-bit" (W in -128..127 with A in 0..255: the vpmaddubsw paths take
 * their exact, two-product route wherever a row panel of A has a byte > 127, i.e.
 * everywhere here) and "4-bit" (W in -8..7: plain vpmaddubsw). VNNI and scalar do the
 * same on both. Each cell is the best of 3 batches of at least 30 ms; every path's C is
 * checked against the scalar path's ("same" column).
 *
 * Usage: qgemm [min_seconds_per_batch]   (default 0.03) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/qgemm.h"
#include "op_internal.h"

typedef struct {
    const char *what;
    int64_t m, n, k;
} shape;

static const shape shapes[] = {
    {"fc1 (batch 64)", 64, 256, 784},
    {"fc 3136 (batch 64)", 64, 128, 3136},
    {"conv2 im2col 14x14", 64 * 196, 64, 288},
    {"conv1 im2col 28x28", 64 * 784, 32, 9},
    {"fc1 m=1", 1, 256, 784},
    {"fc 3136 m=1", 1, 128, 3136},
    {"conv2 m=1 image", 196, 64, 288},
};

static double min_batch = 0.03;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const shape *s;
    const uint8_t *A;
    int32_t za;
    const qg__qpack *p;
    int32_t *C;
    const float *Af, *Wf; /* the same problem in float: A - za, W */
    float *Cf;
} problem;

static void run_q(const problem *p) { qg__qgemm(p->s->m, p->A, p->s->k, p->za, p->p, p->C, p->s->n); }

static void run_f(const problem *p) {
    const shape *s = p->s; /* C = A W^T: W (n, k) row-major is B (k, n) with rsb 1, csb k */
    qg__gemm_f32(s->m, s->n, s->k, 1.0f, p->Af, s->k, 1, p->Wf, 1, s->k, 0.0f, p->Cf, s->n, 1);
}

/* Seconds per call: best of 3 batches of at least min_batch each. */
static double time_fn(void (*fn)(const problem *), const problem *p) {
    fn(p); /* warm-up: caches, thread pool, float GEMM buffers */
    long reps = 1;
    for (;;) {
        double t0 = now();
        for (long r = 0; r < reps; r++) fn(p);
        double dt = now() - t0;
        if (dt >= min_batch) break;
        reps = dt > min_batch / 10 ? (long)((double)reps * min_batch * 1.2 / dt) + 1 : reps * 10;
    }
    double best = 1e30;
    for (int b = 0; b < 3; b++) {
        double t0 = now();
        for (long r = 0; r < reps; r++) fn(p);
        double t = (now() - t0) / (double)reps;
        if (t < best) best = t;
    }
    return best;
}

/* The first "name : value" line of /proc/cpuinfo, value copied to out. */
static bool cpuinfo(const char *name, char *out, size_t cap) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[512];
    bool got = false;
    size_t nl = strlen(name);
    while (!got && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, name, nl) == 0 && colon && (line[nl] == ' ' || line[nl] == '\t' || line[nl] == ':')) {
            char *v = colon + 1;
            while (*v == ' ') v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, cap, "%s", v);
            got = true;
        }
    }
    fclose(f);
    return got;
}

/* int8 ops (2 per multiply-add) per cycle per core of each path's inner loop at its
 * best, on the two microarchitectures this project runs on. */
static double peak_ops(qg__qpath path, bool amd) {
    switch (path) {
    /* vpdpbusd zmm: 1 per cycle on Zen 4 (two 256-bit halves), 2 on Intel (ports 0, 5) */
    case QG__QPATH_VNNI: return amd ? 128 : 256;
    /* vpmaddubsw + vpmaddwd + vpaddd per 64 multiply-adds on 2 zmm ports (Intel) */
    case QG__QPATH_AVX512BW: return amd ? 64 : 85.3;
    /* the same per 32 on 2 ymm multiply ports, the add elsewhere */
    case QG__QPATH_AVX2: return 64;
    default: return 0;
    }
}

int main(int argc, char **argv) {
    if (argc > 1) min_batch = atof(argv[1]);
    char vendor[64] = "?", model[128] = "?", mhz[32] = "0";
    cpuinfo("vendor_id", vendor, sizeof vendor);
    cpuinfo("model name", model, sizeof model);
    cpuinfo("cpu MHz", mhz, sizeof mhz);
    bool amd = strstr(vendor, "AMD") != NULL;
    double ghz = atof(mhz) / 1000.0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("CPU: %s (%s), %ld cores online, %.2f GHz (/proc/cpuinfo 'cpu MHz'; turbo not counted)\n", model,
           vendor, ncpu, ghz);
    printf("default path: %s\n", qg__qpath_name(qg__qgemm_path()));
    printf("int8 peak assumed = cores x GHz x ops/cycle (2 ops per multiply-add):\n");
    for (int pth = QG__QPATH_AVX2; pth < QG__QPATH_COUNT; pth++)
        if (qg__qpath_supported((qg__qpath)pth))
            printf("  %-9s %6.1f ops/cycle/core -> %7.1f GOP/s at 1 core, %7.1f at 2%s\n",
                   qg__qpath_name((qg__qpath)pth), peak_ops((qg__qpath)pth, amd), ghz * peak_ops((qg__qpath)pth, amd),
                   2 * ghz * peak_ops((qg__qpath)pth, amd),
                   pth == QG__QPATH_VNNI ? (amd ? " (Zen 4: 512-bit vpdpbusd, 1 per cycle)"
                                                : " (Intel: 512-bit vpdpbusd on ports 0 and 5)")
                                         : " (the exact route for A > 127 with |W| > 64 halves it)");
    printf("\n%-20s %-16s %3s %-9s %10s %9s %6s %10s %9s %6s %5s\n", "shape", "MxNxK", "thr", "path", "8-bit us",
           "GOP/s", "%peak", "4-bit us", "GOP/s", "%peak", "same");

    const int nshapes = (int)(sizeof shapes / sizeof *shapes);
    for (int si = 0; si < nshapes; si++) {
        const shape *s = &shapes[si];
        size_t na = (size_t)(s->m * s->k), nw = (size_t)(s->n * s->k), nc = (size_t)(s->m * s->n);
        uint8_t *A = malloc(na);
        int8_t *W8 = malloc(nw), *W4 = malloc(nw);
        int32_t *C = malloc(nc * sizeof *C), *Cref = malloc(nc * sizeof *C);
        float *Af = malloc(na * sizeof *Af), *Wf = malloc(nw * sizeof *Wf), *Cf = malloc(nc * sizeof *Cf);
        srand(1234 + si);
        int32_t za = 128 + rand() % 16;
        for (size_t x = 0; x < na; x++) A[x] = (uint8_t)(rand() & 255), Af[x] = (float)(A[x] - za);
        for (size_t x = 0; x < nw; x++) W8[x] = (int8_t)(rand() % 256 - 128), W4[x] = (int8_t)(rand() % 16 - 8);
        for (size_t x = 0; x < nw; x++) Wf[x] = W8[x];
        qg__qpack *p8 = qg__qpack_new(W8, s->k, s->n, s->k), *p4 = qg__qpack_new(W4, s->k, s->n, s->k);
        problem pr = {s, A, za, p8, C, Af, Wf, Cf};
        double ops = 2.0 * (double)s->m * (double)s->n * (double)s->k;
        char dims[48];
        snprintf(dims, sizeof dims, "%lldx%lldx%lld", (long long)s->m, (long long)s->n, (long long)s->k);
        for (int nt = 1; nt <= 2; nt++) {
            qg_set_num_threads(nt);
            int cores = nt < ncpu ? nt : (int)ncpu;
            for (int pth = 0; pth < QG__QPATH_COUNT; pth++) {
                if (!qg__qpath_supported((qg__qpath)pth)) continue;
                qg__qgemm_set_path((qg__qpath)pth);
                double t[2];
                bool same = true;
                for (int wi = 0; wi < 2; wi++) {
                    pr.p = wi ? p4 : p8;
                    t[wi] = time_fn(run_q, &pr);
                    if (pth == QG__QPATH_SCALAR && wi == 0) memcpy(Cref, C, nc * sizeof *C);
                    if (wi == 0) same = memcmp(Cref, C, nc * sizeof *C) == 0;
                }
                double peak = cores * ghz * peak_ops((qg__qpath)pth, amd);
                char pk[2][16];
                for (int wi = 0; wi < 2; wi++)
                    if (peak > 0)
                        snprintf(pk[wi], sizeof pk[wi], "%5.1f%%", 100 * ops / t[wi] * 1e-9 / peak);
                    else
                        snprintf(pk[wi], sizeof pk[wi], "-");
                printf("%-20s %-16s %3d %-9s %10.1f %9.1f %6s %10.1f %9.1f %6s %5s\n", s->what, dims, nt,
                       qg__qpath_name((qg__qpath)pth), t[0] * 1e6, ops / t[0] * 1e-9, pk[0], t[1] * 1e6,
                       ops / t[1] * 1e-9, pk[1], same ? "yes" : "NO");
                fflush(stdout);
            }
            double tf = time_fn(run_f, &pr);
            printf("%-20s %-16s %3d %-9s %10.1f %9.1f %6s\n", s->what, dims, nt, "f32 gemm", tf * 1e6,
                   ops / tf * 1e-9, "");
        }
        qg_set_num_threads(0);
        qg__qpack_free(p8), qg__qpack_free(p4);
        free(A), free(W8), free(W4), free(C), free(Cref), free(Af), free(Wf), free(Cf);
    }
    return 0;
}
