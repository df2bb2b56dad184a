/* Tiny test harness: CHECK records a failure and goes on; test_summary prints the
 * counts and gives the exit code. */
#ifndef QG_TEST_UTIL_H
#define QG_TEST_UTIL_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

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

/* |a - b| <= atol + rtol * |b| */
static inline int tst_close(double a, double b, double atol, double rtol) {
    return fabs(a - b) <= atol + rtol * fabs(b) || (isnan(a) && isnan(b));
}

static inline int test_summary(const char *name) {
    printf("%s: %d checks passed, %d failed\n", name, tst_pass, tst_fail);
    return tst_fail ? 1 : 0;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* The fixture tensor named by a printf-style key, or NULL with a line saying so. */
static inline qg_tensor *tst_fixture(const qg_tensor_dict *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline qg_tensor *tst_fixture(const qg_tensor_dict *d, const char *fmt, ...) {
    char k[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k, sizeof k, fmt, ap);
    va_end(ap);
    qg_tensor *t = qg_tensor_dict_get(d, k);
    if (!t) printf("fixture tensor %s missing: %s\n", k, qg_last_error());
    return t;
}
#endif
