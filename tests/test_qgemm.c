/* qg__qgemm, the int8 GEMM, on every path this CPU runs (qg__qpath_supported), against
 * an int64 reference wrapped to int32: a sweep of shapes (empty, 1, off the 4-byte quad,
 * the 16-column block and the micro-tile), A bytes in 0..255, 0..127 (where vpmaddubsw
 * is exact) and both in one call, 8-bit and 4-bit weights, random zero points, padded
 * lda/ldc (no writes outside C's columns), the saturating adversary (A = 255, W = -128)
 * and 127 x 127, a sum that wraps int32. Every path must equal the scalar path bit for
 * bit, and 1 and 2 threads must agree. Also: pack errors, forcing a path, and the
 * requantization (qg__qrequant) of both engines, with and without ReLU, on every path:
 * the same bytes as docs/int8.md's formula with its clamps unmerged, for accumulators
 * out to INT32_MIN/MAX, huge and NaN-making constants, and every row length up to two
 * vectors and a tail. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "kernels/qgemm.h"
#include "test_util.h"

#define SENTINEL ((int32_t)0x5a5a5a5a)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static int rnd_in(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }

static qg__qpath paths[QG__QPATH_COUNT];
static int npaths;

typedef enum { A_FULL, A_SMALL, A_MIXED, A_255, A_127 } amode;
typedef enum { W_8BIT, W_4BIT, W_M128, W_127 } wmode;
static const char *aname[] = {"0..255", "0..127", "mixed", "all255", "all127"};
static const char *wname[] = {"8bit", "4bit", "all-128", "all127"};

typedef struct {
    int64_t m, n, k, lda, ldc;
    int32_t za;
    amode am;
    wmode wm;
} qcase;

/* One case on every path: returns whether all matched. */
static bool run_case(const qcase *q) {
    int64_t m = q->m, n = q->n, k = q->k, lda = q->lda, ldc = q->ldc, ldw = k + (k % 3 == 1 ? 2 : 0);
    /* exact sizes so that ASan sees any read past row m-1's k bytes */
    size_t abytes = m > 0 ? (size_t)((m - 1) * lda + k) : 0, wbytes = n > 0 ? (size_t)((n - 1) * ldw + k) : 0;
    size_t cn = (size_t)(m * ldc);
    uint8_t *A = malloc(abytes ? abytes : 1);
    int8_t *W = malloc(wbytes ? wbytes : 1);
    int32_t *ref = malloc((cn ? cn : 1) * sizeof(int32_t)), *C = malloc((cn ? cn : 1) * sizeof(int32_t));
    int32_t *C0 = malloc((cn ? cn : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < m; i++)
        for (int64_t t = 0; t < k; t++) {
            amode am = q->am == A_MIXED ? (i % 5 == 3 ? A_FULL : A_SMALL) : q->am;
            A[i * lda + t] = (uint8_t)(am == A_FULL    ? rnd_in(0, 255)
                                       : am == A_SMALL ? rnd_in(0, 127)
                                       : am == A_255   ? 255
                                                       : 127);
        }
    for (int64_t j = 0; j < n; j++)
        for (int64_t t = 0; t < k; t++)
            W[j * ldw + t] = (int8_t)(q->wm == W_8BIT   ? rnd_in(-128, 127)
                                      : q->wm == W_4BIT ? rnd_in(-8, 7)
                                      : q->wm == W_M128 ? -128
                                                        : 127);
    for (size_t x = 0; x < cn; x++) ref[x] = SENTINEL;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            int64_t s = 0;
            for (int64_t t = 0; t < k; t++) s += ((int64_t)A[i * lda + t] - q->za) * W[j * ldw + t];
            ref[i * ldc + j] = (int32_t)(uint32_t)(uint64_t)s;
        }
    qg__qpack *p = qg__qpack_new(W, ldw, n, k);
    bool ok = p != NULL;
    CHECK(p, "qpack_new n=%lld k=%lld: %s", (long long)n, (long long)k, qg_last_error());
    for (int pi = 0; p && pi < npaths; pi++) {
        qg__qgemm_set_path(paths[pi]);
        for (size_t x = 0; x < cn; x++) C[x] = SENTINEL;
        qg__qgemm(m, A, lda, q->za, p, C, ldc);
        int64_t bad = 0, first = -1;
        for (size_t x = 0; x < cn; x++)
            if (C[x] != ref[x]) bad++, first = first < 0 ? (int64_t)x : first;
        if (pi == 0) memcpy(C0, C, cn * sizeof(int32_t)); /* paths[0] is the scalar one */
        bool same = cn == 0 || memcmp(C0, C, cn * sizeof(int32_t)) == 0;
        CHECK(!bad && same,
              "%s m=%lld n=%lld k=%lld lda=%lld ldc=%lld za=%d A=%s W=%s: %lld wrong%s (first at %lld: %d, want %d)",
              qg__qpath_name(paths[pi]), (long long)m, (long long)n, (long long)k, (long long)lda, (long long)ldc,
              q->za, aname[q->am], wname[q->wm], (long long)bad, same ? "" : ", differs from scalar",
              (long long)first, first >= 0 ? C[first] : 0, first >= 0 ? ref[first] : 0);
        ok = ok && !bad && same;
    }
    qg__qgemm_set_path(QG__QPATH_SCALAR);
    qg__qpack_free(p);
    free(A), free(W), free(ref), free(C), free(C0);
    return ok;
}

/* Bitwise equality of 1 and 2 threads on one path, for a shape split along m or n. */
static void check_threads(qg__qpath path, int64_t m, int64_t n, int64_t k) {
    uint8_t *A = malloc((size_t)(m * k));
    int8_t *W = malloc((size_t)(n * k));
    int32_t *C1 = malloc((size_t)(m * n) * sizeof(int32_t)), *C2 = malloc((size_t)(m * n) * sizeof(int32_t));
    for (int64_t x = 0; x < m * k; x++) A[x] = (uint8_t)rnd_in(0, 255);
    for (int64_t x = 0; x < n * k; x++) W[x] = (int8_t)rnd_in(-128, 127);
    qg__qpack *p = qg__qpack_new(W, k, n, k);
    qg__qgemm_set_path(path);
    qg_set_num_threads(1);
    qg__qgemm(m, A, k, 77, p, C1, n);
    qg_set_num_threads(2);
    qg__qgemm(m, A, k, 77, p, C2, n);
    qg_set_num_threads(0);
    CHECK(memcmp(C1, C2, (size_t)(m * n) * sizeof(int32_t)) == 0, "%s m=%lld n=%lld k=%lld: 1 and 2 threads differ",
          qg__qpath_name(path), (long long)m, (long long)n, (long long)k);
    qg__qpack_free(p);
    free(A), free(W), free(C1), free(C2);
}

static void check_errors(void) {
    int8_t w[8] = {0};
    qg_clear_error();
    CHECK(!qg__qpack_new(NULL, 4, 2, 4) && strstr(qg_last_error(), "qpack"), "NULL weights: '%s'", qg_last_error());
    qg_clear_error();
    CHECK(!qg__qpack_new(w, 4, -1, 4) && strstr(qg_last_error(), "negative"), "n < 0: '%s'", qg_last_error());
    qg_clear_error();
    CHECK(!qg__qpack_new(w, 4, 2, -3) && strstr(qg_last_error(), "negative"), "k < 0: '%s'", qg_last_error());
    qg_clear_error();
    CHECK(!qg__qpack_new(w, 2, 2, 4) && strstr(qg_last_error(), "stride"), "ldw < k: '%s'", qg_last_error());
    qg_clear_error();
    CHECK(!qg__qpack_new(w, INT64_MAX / 2, INT64_MAX / 2, INT64_MAX / 2) && *qg_last_error(), "huge: '%s'",
          qg_last_error());
    /* empty packs work and C stays untouched where there is nothing to write */
    qg__qpack *p0 = qg__qpack_new(NULL, 0, 0, 5), *p1 = qg__qpack_new(NULL, 0, 3, 0);
    CHECK(p0 && p1, "empty packs: %s", qg_last_error());
    int32_t c[6] = {SENTINEL, SENTINEL, SENTINEL, SENTINEL, SENTINEL, SENTINEL};
    uint8_t a[10] = {0};
    qg__qgemm(2, a, 5, 3, p0, c, 3);
    CHECK(c[0] == SENTINEL && c[5] == SENTINEL, "n = 0 wrote C");
    qg__qgemm(2, a, 0, 3, p1, c, 3);
    CHECK(c[0] == 0 && c[2] == 0 && c[3] == 0 && c[5] == 0, "k = 0: C is not 0");
    qg__qpack_free(p0), qg__qpack_free(p1);
    qg__qpack_free(NULL);
    /* forcing a path */
    qg_clear_error();
    CHECK(qg__qgemm_set_path(QG__QPATH_COUNT) == QG_EINVAL && *qg_last_error(), "bad path accepted");
    CHECK(qg__qgemm_set_path((qg__qpath)-1) == QG_EINVAL, "path -1 accepted");
    for (int pth = 0; pth < QG__QPATH_COUNT; pth++) {
        qg_clear_error();
        int st = qg__qgemm_set_path((qg__qpath)pth);
        if (qg__qpath_supported((qg__qpath)pth))
            CHECK(st == 0 && qg__qgemm_path() == (qg__qpath)pth, "set_path %s failed", qg__qpath_name((qg__qpath)pth));
        else
            CHECK(st == QG_EINVAL && strstr(qg_last_error(), "not supported"), "unsupported %s: st %d '%s'",
                  qg__qpath_name((qg__qpath)pth), st, qg_last_error());
    }
    qg__qgemm_set_path(QG__QPATH_SCALAR);
}

/* docs/int8.md's requantization, each clamp as the engines apply it (qrequant.c merges
 * them): the reference every path must equal. */
static uint8_t requant_ref(bool onednn, bool relu, int z, int32_t acc, float mult, float badd, int32_t ib) {
    const float magic = 12582912.0f;
    if (onednn) {
        float a = (float)acc;
        float t = a + badd;
        float v = t * mult;
        if (relu) v = v > 0.0f ? v : 0.0f;
        float w = v + (float)z;
        w = w > -1.0f ? w : -1.0f; /* NaN -> -1 */
        w = w < 256.0f ? w : 256.0f;
        float m = w + magic;
        int32_t r = (int32_t)(m - magic);
        return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
    }
    int32_t t = (int32_t)((uint32_t)acc + (uint32_t)ib);
    float v = (float)t * mult;
    v = v > -512.0f ? v : -512.0f; /* NaN -> -512 */
    v = v < 512.0f ? v : 512.0f;
    float m = v + magic;
    int32_t r = (int32_t)(m - magic) + z, lo = relu ? z : 0;
    return (uint8_t)(r < lo ? lo : r > 255 ? 255 : r);
}

/* One random requantization on every path against the reference. */
static bool requant_case(bool onednn, bool relu, int64_t m, int64_t n) {
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)(m * n + 1)), *ib = malloc(sizeof(int32_t) * (size_t)(n + 1));
    float *mult = malloc(sizeof(float) * (size_t)(n + 1)), *badd = malloc(sizeof(float) * (size_t)(n + 1));
    uint8_t *ref = malloc((size_t)(m * n + 1)), *out = malloc((size_t)(m * n + 1));
    for (int64_t i = 0; i < m * n; i++) {
        uint32_t r = rnd();
        acc[i] = r % 5 == 0 ? (int32_t)rnd() : r % 5 == 1 ? (r & 8 ? INT32_MAX : INT32_MIN) : r % 5 == 2 ? 0
                                                                       : (int32_t)(r % 20001) - 10000; /* 0 x inf: NaN */
    }
    for (int64_t j = 0; j < n; j++) {
        uint32_t r = rnd() % 8;
        mult[j] = r == 0 ? 1e30f : r == 1 ? 0.0f : r == 2 ? -0.01f : r == 7 ? INFINITY : (float)(rnd() % 1000 + 1) * 1e-5f;
        badd[j] = r == 3 ? -1e38f : r == 4 ? 3e38f : r == 6 ? NAN : (float)((int)(rnd() % 2001) - 1000) * 0.37f;
        ib[j] = r == 5 ? INT32_MAX : (int32_t)(rnd() % 2001) - 1000;
    }
    const int z = rnd_in(0, 255);
    qg__requant k = {onednn, relu ? 0.0f : -(float)z, (float)z, mult, badd, ib};
    for (int64_t i = 0; i < m * n; i++) ref[i] = requant_ref(onednn, relu, z, acc[i], mult[i % n], badd[i % n], ib[i % n]);
    bool ok = true;
    for (int pi = 0; pi < npaths; pi++) {
        memset(out, 0xa5, (size_t)(m * n));
        qg__qgemm_set_path(paths[pi]);
        qg__qrequant(&k, acc, n, m, n, out, n);
        if (memcmp(out, ref, (size_t)(m * n))) ok = false;
        CHECK(!memcmp(out, ref, (size_t)(m * n)), "requant %s relu %d m=%lld n=%lld: path %s differs from the reference",
              onednn ? "onednn" : "qnnpack", relu, (long long)m, (long long)n, qg__qpath_name(paths[pi]));
    }
    qg__qgemm_set_path(QG__QPATH_SCALAR);
    free(acc), free(ib), free(mult), free(badd), free(ref), free(out);
    return ok;
}

int main(void) {
    clock_t t0 = clock();
    printf("default path: %s; paths tested:", qg__qpath_name(qg__qgemm_path()));
    for (int pth = 0; pth < QG__QPATH_COUNT; pth++)
        if (qg__qpath_supported((qg__qpath)pth)) {
            paths[npaths++] = (qg__qpath)pth;
            printf(" %s", qg__qpath_name((qg__qpath)pth));
        }
    printf("\n");
    int64_t live0 = qg_live_allocations();
    check_errors();

    static const int64_t ms[] = {0, 1, 2, 3, 5, 7, 13, 16, 31, 64, 100};
    static const int64_t ns[] = {0, 1, 3, 15, 16, 17, 33, 64, 130};
    static const int64_t ks[] = {0, 1, 2, 3, 4, 5, 7, 9, 31, 64, 100, 288, 785};
    int ncases = 0, nfail = 0;
    for (size_t im = 0; im < sizeof ms / sizeof *ms; im++)
        for (size_t in = 0; in < sizeof ns / sizeof *ns; in++)
            for (size_t ik = 0; ik < sizeof ks / sizeof *ks; ik++) {
                int64_t m = ms[im], n = ns[in], k = ks[ik];
                /* prune: the biggest products on every other combination only */
                if (m * n * k > 1000000 && (im + in + ik) % 2) continue;
                qcase q = {m, n, k, k, n, rnd_in(0, 255), (amode)(rnd() % 3), (wmode)(rnd() % 2)};
                if (rnd() % 3 == 0) q.lda = k + rnd_in(1, 9);
                if (rnd() % 3 == 0) q.ldc = n + rnd_in(1, 5);
                ncases++;
                nfail += !run_case(&q);
                if (m * n * k <= 20000) { /* small ones again, 4-bit weights in full-range A */
                    qcase q2 = {m, n, k, k + 1, n, rnd_in(0, 255), A_FULL, W_4BIT};
                    ncases++;
                    nfail += !run_case(&q2);
                }
            }
    /* adversaries: every pair saturates naive vpmaddubsw; 127 x 127 at its edge */
    static const int64_t adv[][3] = {{13, 33, 785}, {8, 32, 64}, {1, 17, 9}, {9, 16, 3}, {31, 130, 288}};
    for (size_t x = 0; x < sizeof adv / sizeof *adv; x++)
        for (int za = 0; za <= 1; za++) {
            qcase a1 = {adv[x][0], adv[x][1], adv[x][2], adv[x][2], adv[x][1], za ? 3 : 0, A_255, W_M128};
            qcase a2 = {adv[x][0], adv[x][1], adv[x][2], adv[x][2] + 3, adv[x][1], za ? 255 : 0, A_127, W_127};
            ncases += 2;
            nfail += !run_case(&a1) + !run_case(&a2);
        }
    /* 255 * -128 * 70001 < INT32_MIN: the int32 sum wraps, the same on every path */
    qcase wrap = {2, 17, 70001, 70001, 17, 0, A_255, W_M128};
    ncases++;
    nfail += !run_case(&wrap);
    printf("%d cases on %d paths, %d failed\n", ncases, npaths, nfail);

    int nrq = 0, rqfail = 0;
    for (int e = 0; e < 2; e++)
        for (int relu = 0; relu < 2; relu++)
            for (int64_t n = 1; n <= 40; n++, nrq++) rqfail += !requant_case(e, relu, 1 + n % 7, n);
    printf("requantization: %d cases on %d paths, %d failed\n", nrq, npaths, rqfail);

    for (int pi = 0; pi < npaths; pi++) {
        check_threads(paths[pi], 100, 130, 785); /* split along m */
        check_threads(paths[pi], 5, 512, 3136);  /* m below two panels: split along n */
    }
    CHECK(qg_live_allocations() == live0, "live allocations %lld, want %lld", (long long)qg_live_allocations(),
          (long long)live0);
    printf("%.1f s CPU\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
    return test_summary("qgemm");
}
