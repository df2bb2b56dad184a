/* Throughput of the fused observer + fake-quant op (qg_fused_moving_avg_obs_fake_quant),
 * the hot op of QAT training, beside memcpy of the same bytes and beside PyTorch's
 * torch.fused_moving_avg_obs_fake_quant on the same shapes in the same run (through
 * bench/fakequant_torch.py, run with /usr/bin/python3 or $QG_PYTHON).
 *
 * GB/s = bytes of x (4 per element) per second. "fwd": one forward call with x
 * requiring grad, as in training (so the STE mask is written: x read twice — min/max,
 * then fake-quant —, y and the mask written); "fwd+bwd": forward and backward (dx =
 * dy * mask). "memcpy": copying the 4N bytes of x (a read + a write of them). Each
 * figure is the best of 5 batches of at least 40 ms, at the thread count of
 * qg_get_num_threads() (OMP_NUM_THREADS), which PyTorch is given too.
 *
 * Usage: fakequant [min_seconds_per_batch]   (default 0.04) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qgrad.h"

#ifndef QG_SOURCE_DIR
#define QG_SOURCE_DIR "."
#endif

typedef struct {
    const char *name, *dims; /* dims as "d0,d1,..." */
    bool per_channel;        /* axis 0, symmetric [-128, 127]; else affine [0, 127] */
} bench_case;

static const bench_case cases[] = {
    {"act_64x32x28x28_pt", "64,32,28,28", false},
    {"act_64x64x14x14_pt", "64,64,14,14", false},
    {"w_64x3136_pc", "64,3136", true},
    {"w_128x3136_pc", "128,3136", true},
    {"w_256x2304_pc", "256,2304", true},
    {"w_128x3136_pt", "128,3136", false},
};
#define NCASES (int)(sizeof cases / sizeof *cases)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef void (*bench_fn)(void *ctx);

/* best of 5 batches of >= min_s: bytes per second in GB/s */
static double best_rate(bench_fn fn, void *ctx, double nbytes, double min_s) {
    fn(ctx);
    double best = 0;
    for (int b = 0; b < 5; b++) {
        int reps = 0;
        double t0 = now(), dt;
        do {
            fn(ctx);
            reps++;
            dt = now() - t0;
        } while (dt < min_s);
        double r = nbytes * reps / dt / 1e9;
        best = r > best ? r : best;
    }
    return best;
}

typedef struct {
    qg_tensor *x, *gout, *on, *mn, *mx, *sc, *zp;
    bool per_channel;
    void *src, *dst;
    size_t nbytes;
} state;

static void run_fwd(void *p) {
    state *s = p;
    qg_tensor *y = s->per_channel
                       ? qg_fused_moving_avg_obs_fake_quant(s->x, s->on, s->on, s->mn, s->mx, s->sc, s->zp, 0.01, -128, 127, 0, true, true)
                       : qg_fused_moving_avg_obs_fake_quant(s->x, s->on, s->on, s->mn, s->mx, s->sc, s->zp, 0.01, 0, 127, 0, false, false);
    if (!y) {
        fprintf(stderr, "fakequant: %s\n", qg_last_error());
        exit(1);
    }
    qg_tape_reset(NULL);
}

static void run_fwd_bwd(void *p) {
    state *s = p;
    qg_tensor *y = s->per_channel
                       ? qg_fused_moving_avg_obs_fake_quant(s->x, s->on, s->on, s->mn, s->mx, s->sc, s->zp, 0.01, -128, 127, 0, true, true)
                       : qg_fused_moving_avg_obs_fake_quant(s->x, s->on, s->on, s->mn, s->mx, s->sc, s->zp, 0.01, 0, 127, 0, false, false);
    if (!y || qg_backward(y, s->gout)) {
        fprintf(stderr, "fakequant: %s\n", qg_last_error());
        exit(1);
    }
    qg_tape_reset(NULL);
}

static void run_memcpy(void *p) {
    state *s = p;
    memcpy(s->dst, s->src, s->nbytes);
    __asm__ volatile("" ::: "memory"); /* keep the copy */
}

/* PyTorch's figures, by case, from bench/fakequant_torch.py; false with a note printed
 * when they are not available. */
static bool torch_rates(int threads, double min_s, double fwd[NCASES], double fb[NCASES]) {
    const char *py = getenv("QG_PYTHON") ? getenv("QG_PYTHON") : "/usr/bin/python3";
    char cmd[4096];
    int n = snprintf(cmd, sizeof cmd, "%s '%s/bench/fakequant_torch.py' %d %g", py, QG_SOURCE_DIR, threads, min_s);
    for (int i = 0; i < NCASES; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s:%s:%s", cases[i].name, cases[i].dims,
                      cases[i].per_channel ? "pc" : "pt");
    snprintf(cmd + n, sizeof cmd - (size_t)n, " 2>&1");
    for (int i = 0; i < NCASES; i++) fwd[i] = fb[i] = -1;
    FILE *f = popen(cmd, "r");
    if (!f) {
        printf("note: could not run %s\n", py);
        return false;
    }
    char line[512], name[128];
    bool any = false;
    while (fgets(line, sizeof line, f)) {
        double a, b;
        if (sscanf(line, "case %127s %lf %lf", name, &a, &b) == 3) {
            for (int i = 0; i < NCASES; i++)
                if (!strcmp(name, cases[i].name)) fwd[i] = a, fb[i] = b, any = true;
        } else {
            printf("%s", line); /* notes and errors of the script */
        }
    }
    int st = pclose(f);
    if (!any) printf("note: no PyTorch figures (%s exited with status %d)\n", py, st);
    return any;
}

int main(int argc, char **argv) {
    double min_s = argc > 1 ? atof(argv[1]) : 0.04;
    if (!(min_s > 0)) min_s = 0.04;
    int threads = qg_get_num_threads();
    double tf[NCASES], tb[NCASES];
    bool have_torch = torch_rates(threads, min_s, tf, tb);
    printf("fused observe + fake-quant, %d thread%s; GB/s = bytes of x (4 B/element) per second\n", threads,
           threads == 1 ? "" : "s");
    printf("%-20s %10s | %8s %8s | %8s %8s | %8s\n", "case", "elements", "qgrad", "torch", "qgrad", "torch", "memcpy");
    printf("%-20s %10s | %17s | %17s | %8s\n", "", "", "fwd", "fwd+bwd", "");
    qg_rng g;
    qg_rng_init(&g, 1);
    for (int i = 0; i < NCASES; i++) {
        int64_t shape[4];
        int nd = 0;
        for (const char *p = cases[i].dims; *p; nd++) {
            shape[nd] = strtoll(p, (char **)&p, 10);
            if (*p == ',') p++;
        }
        state s = {0};
        s.per_channel = cases[i].per_channel;
        s.x = qg_tensor_randn(&g, QG_F32, nd, shape);
        qg_tensor_set_requires_grad(s.x, true);
        s.gout = qg_tensor_ones(QG_F32, nd, shape);
        s.on = qg_tensor_ones(QG_I64, 1, (int64_t[]){1});
        if (s.per_channel) {
            s.mn = qg_tensor_empty(QG_F32, 1, (int64_t[]){0}), s.mx = qg_tensor_empty(QG_F32, 1, (int64_t[]){0});
        } else {
            s.mn = qg_tensor_full(QG_F32, 0, NULL, 1.0 / 0.0), s.mx = qg_tensor_full(QG_F32, 0, NULL, -1.0 / 0.0);
        }
        s.sc = qg_tensor_ones(QG_F32, 1, (int64_t[]){1}), s.zp = qg_tensor_zeros(QG_I32, 1, (int64_t[]){1});
        int64_t n = qg_tensor_numel(s.x);
        s.nbytes = (size_t)n * 4;
        s.src = qg_tensor_data(s.x);
        s.dst = malloc(s.nbytes);
        memset(s.dst, 1, s.nbytes);
        double nb = (double)s.nbytes;
        double f = best_rate(run_fwd, &s, nb, min_s), fb = best_rate(run_fwd_bwd, &s, nb, min_s);
        double mc = best_rate(run_memcpy, &s, nb, min_s);
        char a[16] = "n/a", b[16] = "n/a";
        if (have_torch && tf[i] >= 0) snprintf(a, sizeof a, "%.2f", tf[i]), snprintf(b, sizeof b, "%.2f", tb[i]);
        printf("%-20s %10lld | %8.2f %8s | %8.2f %8s | %8.2f\n", cases[i].name, (long long)n, f, a, fb, b, mc);
        free(s.dst);
        qg_tensor_free(s.x), qg_tensor_free(s.gout), qg_tensor_free(s.on), qg_tensor_free(s.mn);
        qg_tensor_free(s.mx), qg_tensor_free(s.sc), qg_tensor_free(s.zp);
    }
    return 0;
}
