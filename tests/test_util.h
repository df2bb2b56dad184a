/* Tiny test harness: CHECK records a failure and goes on; test_summary prints the
 * counts and gives the exit code. Comparisons and fixture lookups: compare.h. */
#ifndef QG_TEST_UTIL_H
#define QG_TEST_UTIL_H
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <zlib.h>

#include "compare.h"
#include "qgrad.h"

static int tst_pass, tst_fail;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            tst_pass++;                                                   \
        } else {                                                          \
            tst_fail++;                                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                   \
            printf(__VA_ARGS__);                                          \
            printf("\n");                                                 \
        }                                                                 \
    } while (0)

/* CHECKs that got matches want by tst_compare(got, want, tol); the message (printf
 * arguments) is followed by the first element that does not. */
#define CHECK_TENSOR(got_, want_, tol_, ...)                                                      \
    do {                                                                                         \
        tst_cmp c_ = tst_compare((got_), (want_), (tol_));                                        \
        char w_[300];                                                                            \
        snprintf(w_, sizeof w_, __VA_ARGS__);                                                    \
        CHECK(c_.ok, "%s: %lld elements differ%s (first %lld: %.9g, want %.9g)", w_,             \
              (long long)c_.bad, c_.shape_ok ? "" : " (missing, or another shape)",              \
              (long long)c_.first, c_.got, c_.want);                                             \
    } while (0)

static inline int test_summary(const char *name) {
    printf("%s: %d checks passed, %d failed\n", name, tst_pass, tst_fail);
    return tst_fail ? 1 : 0;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* writes n bytes to path, gzip-compressed when gz (test input files) */
static inline void tst_write_file(const char *path, const void *data, size_t n, bool gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, data, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

/* The fixture file of a test that reads one (its main loads it), and its tensors by a
 * printf-style name: FX("fq.%s.x", name), NULL with a line saying so if missing. */
static qg_tensor_dict *tst_fx __attribute__((unused));
#define FX(...) tst_fixture(tst_fx, TST_NEED, __VA_ARGS__)
#endif
