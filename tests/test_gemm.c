/* qg__gemm_f32 / qg__gemm_f64 against a naive triple loop in double: many shapes (empty,
 * 1, primes, sizes off the micro-tile and cache-block multiples, tall and skinny),
 * every transpose combination through strides, strided, reversed and expanded views,
 * alpha/beta combinations (beta == 0 over a NaN-filled C), no writes outside C's view,
 * bitwise equality between 1 and 2 threads, and no allocation on repeated calls.
 * One line per case; exit status 1 on any failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_internal.h"

static int n_ok, n_fail;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / (double)(1ull << 52) - 1.0;
}

/* How an operand of logical shape (r, c) sits in memory. */
typedef enum { L_ROW, L_COL, L_VIEW, L_REV, L_BCAST } layout;
static const char *lname[] = {"N", "T", "V", "R", "B"};

typedef struct {
    int64_t rs, cs, len, off; /* strides, buffer length, offset of element (0,0) */
} place;

/* L_ROW: row-major. L_COL: column-major (a transposed view of a row-major matrix).
 * L_VIEW: every other column of a row-major matrix with a padded row (cs = 2).
 * L_REV: row-major with the rows in reverse order (rs < 0). L_BCAST: one row repeated
 * (rs = 0, an expanded view; inputs only). */
static place place_of(layout l, int64_t r, int64_t c) {
    place p = {0, 0, 0, 0};
    switch (l) {
    case L_ROW: p.rs = c, p.cs = 1, p.len = r * c; break;
    case L_COL: p.rs = 1, p.cs = r, p.len = r * c; break;
    case L_VIEW: p.rs = 2 * c + 3, p.cs = 2, p.len = r * (2 * c + 3); break;
    case L_REV: p.rs = -c, p.cs = 1, p.len = r * c, p.off = r > 0 ? (r - 1) * c : 0; break;
    case L_BCAST: p.rs = 0, p.cs = 1, p.len = c; break;
    }
    if (p.len == 0) p.len = 1;
    return p;
}

typedef struct {
    int64_t m, n, k;
    layout la, lb, lc;
    double alpha, beta;
} gcase;

/* One dtype: fills operands, runs at 1 and 2 threads, checks both. */
#define DEFINE_RUN(SUF, real, EPS)                                                         \
    static int run_##SUF(const gcase *g) {                                                 \
        int64_t m = g->m, n = g->n, k = g->k;                                              \
        place pa = place_of(g->la, m, k), pb = place_of(g->lb, k, n),                      \
              pc = place_of(g->lc, m, n);                                                  \
        real *A = malloc(pa.len * sizeof(real)), *B = malloc(pb.len * sizeof(real));       \
        real *C0 = malloc(pc.len * sizeof(real)), *C1 = malloc(pc.len * sizeof(real));     \
        real *C2 = malloc(pc.len * sizeof(real));                                          \
        for (int64_t i = 0; i < pa.len; i++) A[i] = (real)urand();                         \
        for (int64_t i = 0; i < pb.len; i++) B[i] = (real)urand();                         \
        for (int64_t i = 0; i < pc.len; i++)                                               \
            C0[i] = g->beta == 0 ? (real)NAN : (real)urand();                              \
        memcpy(C1, C0, pc.len * sizeof(real));                                             \
        memcpy(C2, C0, pc.len * sizeof(real));                                             \
        qg_set_num_threads(1);                                                             \
        qg__gemm_##SUF(m, n, k, (real)g->alpha, A + pa.off, pa.rs, pa.cs, B + pb.off, pb.rs, \
                      pb.cs, (real)g->beta, C1, pc.rs, pc.cs);                             \
        qg_set_num_threads(2);                                                             \
        qg__gemm_##SUF(m, n, k, (real)g->alpha, A + pa.off, pa.rs, pa.cs, B + pb.off, pb.rs, \
                      pb.cs, (real)g->beta, C2, pc.rs, pc.cs);                             \
        qg_set_num_threads(0);                                                             \
        double worst = 0;                                                                  \
        int bad = 0;                                                                       \
        for (int64_t i = 0; i < m && !bad; i++)                                            \
            for (int64_t j = 0; j < n; j++) {                                              \
                double s = 0, sa = 0;                                                      \
                for (int64_t p = 0; p < k; p++) {                                          \
                    double t = (double)A[pa.off + i * pa.rs + p * pa.cs] *                 \
                               B[pb.off + p * pb.rs + j * pb.cs];                          \
                    s += t, sa += fabs(t);                                                 \
                }                                                                          \
                double c0 = C0[i * pc.rs + j * pc.cs];                                     \
                double want = g->alpha * s + (g->beta == 0 ? 0 : g->beta * c0);            \
                double scale = fabs(g->alpha) * sa + (g->beta == 0 ? 0 : fabs(g->beta * c0)); \
                double got = C1[i * pc.rs + j * pc.cs];                                    \
                double err = fabs(got - want) / (scale > 1e-30 ? scale : 1e-30);           \
                if (!(err <= (double)(k + 4) * EPS)) {                                     \
                    printf("    (%lld,%lld): got %.9g want %.9g\n", (long long)i,          \
                           (long long)j, got, want);                                       \
                    bad = 1;                                                               \
                    break;                                                                 \
                }                                                                          \
                if (err > worst) worst = err;                                              \
            }                                                                              \
        /* Elements of C's buffer outside the view must be untouched. */                   \
        for (int64_t i = 0; i < pc.len && !bad; i++) {                                     \
            int inside = 1;                                                                \
            if (g->lc == L_VIEW) {                                                         \
                int64_t r = i / pc.rs, c = (i % pc.rs) / pc.cs;                            \
                inside = (i % pc.rs) % pc.cs == 0 && c < n && r < m;                       \
            }                                                                              \
            if (!inside && memcmp(&C1[i], &C0[i], sizeof(real)) != 0) {                    \
                printf("    wrote outside the view at %lld\n", (long long)i);              \
                bad = 1;                                                                   \
            }                                                                              \
        }                                                                                  \
        int same = memcmp(C1, C2, pc.len * sizeof(real)) == 0;                             \
        if (!same) {                                                                       \
            /* NaN outside the view compares by bits too, so this is exact. */            \
            printf("    1 and 2 threads differ\n");                                        \
            bad = 1;                                                                       \
        }                                                                                  \
        printf("%s " #SUF " m=%lld n=%lld k=%lld A=%s B=%s C=%s alpha=%g beta=%g "         \
               "rel.err=%.2g\n",                                                           \
               bad ? "FAIL" : "ok", (long long)m, (long long)n, (long long)k,              \
               lname[g->la], lname[g->lb], lname[g->lc], g->alpha, g->beta, worst);        \
        free(A), free(B), free(C0), free(C1), free(C2);                                    \
        return !bad;                                                                       \
    }

DEFINE_RUN(f32, float, 6e-8)
DEFINE_RUN(f64, double, 1.2e-16)

static void run(int64_t m, int64_t n, int64_t k, layout la, layout lb, layout lc,
                double alpha, double beta) {
    gcase g = {m, n, k, la, lb, lc, alpha, beta};
    if (run_f32(&g)) n_ok++; else n_fail++;
    if (run_f64(&g)) n_ok++; else n_fail++;
}

int main(void) {
    /* Shapes: empty, 1, primes, around the micro-tile sizes (MR = 12 or 6, NR = 32, 16,
     * 8 or 4 depending on the vector width and dtype), tall and skinny. */
    static const int64_t shapes[][3] = {
        {0, 5, 7},    {5, 0, 7},    {5, 7, 0},     {0, 0, 0},     {1, 1, 1},
        {1, 1, 9},    {1, 37, 1},   {2, 3, 5},     {7, 11, 13},   {12, 32, 8},
        {12, 16, 1},  {13, 33, 17}, {11, 31, 29},  {24, 64, 50},  {25, 65, 3},
        {37, 41, 43}, {64, 10, 128}, {10, 64, 128}, {64, 128, 10}, {1, 300, 70},
        {300, 1, 70}, {97, 2, 101}, {2, 97, 101},  {5, 5, 1000},  {61, 67, 389},
        {128, 96, 257}, {100, 100, 100}, {3, 4099, 5}, {131, 130, 2},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    const layout L[3] = {L_ROW, L_COL, L_VIEW};

    /* Every layout combination (A, B, C) on each shape, alpha = 1, beta = 0. */
    for (int s = 0; s < nshapes; s++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                for (int c = 0; c < 3; c++)
                    run(shapes[s][0], shapes[s][1], shapes[s][2], L[a], L[b], L[c], 1, 0);

    /* alpha / beta combinations. */
    static const double ab[][2] = {{1, 1}, {0.5, -1.5}, {-2, 0}, {0, 2}, {0, 0}, {1, 0.25}};
    for (int s = 0; s < nshapes; s++)
        for (int i = 0; i < 6; i++)
            for (int c = 0; c < 2; c++)
                run(shapes[s][0], shapes[s][1], shapes[s][2], L[s % 3], L[(s + 1) % 3], L[c],
                    ab[i][0], ab[i][1]);

    /* Bigger: several KC blocks, several MC blocks, several NC panels, and
     * multi-threaded splits along m and along n (both for the four transposes). */
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            run(203, 301, 611, L[a], L[b], L_ROW, 1, 0);
            run(203, 301, 611, L[a], L[b], L_ROW, 0.75, 1);
            run(64, 784, 256, L[a], L[b], L_ROW, 1, 0);
            run(530, 17, 190, L[a], L[b], L_COL, 1, 0.5);
            run(17, 530, 190, L[a], L[b], L_ROW, 1, 1);
        }
    run(1100, 40, 200, L_ROW, L_ROW, L_ROW, 1, 1);
    run(1100, 40, 200, L_COL, L_ROW, L_ROW, 1, 0);
    run(40, 1100, 200, L_ROW, L_COL, L_COL, 1, 0);
    run(3, 6000, 5, L_ROW, L_ROW, L_ROW, 1, 0);
    run(6000, 3, 5, L_ROW, L_ROW, L_ROW, 1, 1);
    run(2, 5500, 700, L_ROW, L_ROW, L_ROW, 1, 0);
    run(77, 2900, 13, L_COL, L_VIEW, L_ROW, 1, 0);
    run(257, 259, 263, L_VIEW, L_VIEW, L_VIEW, -1, 2);
    /* Deep k: several KC blocks (C accumulated between them), split m and split n. */
    run(150, 173, 1500, L_ROW, L_ROW, L_ROW, 1, 0);
    run(173, 150, 1500, L_COL, L_ROW, L_ROW, 1, 0.5);
    run(61, 333, 2100, L_ROW, L_COL, L_ROW, 1, 0);
    run(333, 61, 2100, L_COL, L_COL, L_COL, 1, 1);

    /* Dot-product path (A and B^T contiguous along k, a small dim), threaded, and
     * matrix-vector products. */
    run(2000, 10, 128, L_ROW, L_COL, L_ROW, 1, 0);
    run(10, 2000, 128, L_ROW, L_COL, L_ROW, 1, 0.5);
    run(999, 3, 333, L_ROW, L_COL, L_COL, 2, 1);
    run(1000, 1, 1000, L_ROW, L_COL, L_ROW, 1, 0);
    run(1, 1000, 1000, L_ROW, L_ROW, L_ROW, 1, 0);
    run(1000, 1, 1000, L_COL, L_ROW, L_ROW, 1, 1);

    /* Negative and zero strides (reversed and expanded views). */
    for (int s = 0; s < nshapes; s += 3) {
        run(shapes[s][0], shapes[s][1], shapes[s][2], L_REV, L_ROW, L_ROW, 1, 0);
        run(shapes[s][0], shapes[s][1], shapes[s][2], L_ROW, L_REV, L_COL, 1, 1);
        run(shapes[s][0], shapes[s][1], shapes[s][2], L_BCAST, L_COL, L_ROW, 1, 0);
        run(shapes[s][0], shapes[s][1], shapes[s][2], L_COL, L_BCAST, L_ROW, 0.5, 0);
    }
    run(300, 200, 700, L_REV, L_REV, L_ROW, 1, 0);
    run(300, 200, 700, L_BCAST, L_ROW, L_ROW, 1, 0);

    /* Repeated calls with the same shapes allocate nothing after the first. */
    {
        int64_t m = 150, n = 170, k = 300;
        float *A = calloc(m * k, 4), *B = calloc(k * n, 4), *C = calloc(m * n, 4);
        qg__gemm_f32(m, n, k, 1, A, k, 1, B, n, 1, 0, C, n, 1);
        int64_t before = qg_live_allocations();
        for (int r = 0; r < 5; r++) qg__gemm_f32(m, n, k, 1, A, k, 1, B, n, 1, 0, C, n, 1);
        int64_t after = qg_live_allocations();
        int good = before == after;
        printf("%s repeated calls allocate nothing (live blocks %lld -> %lld)\n",
               good ? "ok" : "FAIL", (long long)before, (long long)after);
        if (good) n_ok++; else n_fail++;
        free(A), free(B), free(C);
    }

    printf("test_gemm: %d ok, %d failed\n", n_ok, n_fail);
    return n_fail ? 1 : 0;
}
