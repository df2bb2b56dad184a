/* What every test uses to compare results and read fixtures (tests/parity.c keeps the
 * PyTorch parity rule; this is the plain comparison underneath everything else):
 *  - tst_close: two numbers within |a - b| <= atol + rtol |b|;
 *  - tst_compare / tst_compare_array: a tensor against an expected tensor or array,
 *    by value within a tolerance, or bit for bit, with the figures a FAIL line needs;
 *  - tst_fixture: a fixture tensor by a printf-style name.
 * Self-contained (no CHECK), so that parity.c can use it too. */
#ifndef QG_TEST_COMPARE_H
#define QG_TEST_COMPARE_H
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qgrad.h"

/* |a - b| <= atol + rtol * |b|; NaN equals NaN */
static inline int tst_close(double a, double b, double atol, double rtol) {
    return fabs(a - b) <= atol + rtol * fabs(b) || (isnan(a) && isnan(b));
}

/* How tst_compare judges an element. All zero: exact equality of values (NaN equals
 * NaN, -0 equals 0). */
typedef struct {
    double atol, rtol; /* |got - want| <= atol + rtol |want| */
    double rel_floor;  /* |want| floor of tst_cmp.max_rel (0: 1e-30) */
    bool bitwise;      /* same dtype and the same bytes instead (NaN payloads, -0 count) */
} tst_tol;
#define TST_EXACT ((tst_tol){0})
#define TST_BITWISE ((tst_tol){.bitwise = true})

typedef struct {
    bool ok;         /* same shape (and dtype if bitwise) and no element out of tolerance */
    bool shape_ok;   /* both given, same shape (and dtype if bitwise) */
    int64_t n, bad;  /* elements compared, and those out of tolerance */
    int64_t exact;   /* elements equal in value */
    int64_t first;   /* the first element out of tolerance, or -1 */
    double got, want; /* the values there */
    double max_abs;  /* max |got - want| (INFINITY where only one side is NaN) */
    double max_rel;  /* max |got - want| / max(|want|, rel_floor) */
} tst_cmp;

static inline bool tst_same_shape(const qg_tensor *a, const qg_tensor *b) {
    if (!a || !b || a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* t's elements as doubles, C order (the caller frees) */
static inline double *tst_to_f64(const qg_tensor *t) {
    int64_t n = qg_tensor_numel(t);
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (x) qg_tensor_copy_to(t, QG_F64, x);
    return x;
}

/* The value comparison of n elements, into *c (whose shape fields the caller set). */
static inline void tst_compare_values(tst_cmp *c, const double *x, const double *y, int64_t n, tst_tol tol) {
    double floor = tol.rel_floor > 0 ? tol.rel_floor : 1e-30;
    c->n = n;
    for (int64_t i = 0; i < n; i++) {
        bool nan2 = isnan(x[i]) && isnan(y[i]);
        double d = x[i] == y[i] || nan2 ? 0 : fabs(x[i] - y[i]);
        if (isnan(d)) d = INFINITY; /* one NaN, or inf - inf of the same sign cannot be */
        c->exact += d == 0;
        c->max_abs = fmax(c->max_abs, d);
        c->max_rel = fmax(c->max_rel, d / fmax(fabs(y[i]), floor));
        if (!(nan2 || d <= tol.atol + tol.rtol * fabs(y[i]))) {
            if (c->first < 0) c->first = i, c->got = x[i], c->want = y[i];
            c->bad++;
        }
    }
    c->ok = c->shape_ok && !c->bad;
}

/* got against want (same shape; any strides). By value, both read as doubles; or, with
 * tol.bitwise, element bytes in want's dtype (which got must share). A missing tensor
 * or another shape gives ok = shape_ok = false, bad = -1 and infinite errors. */
static inline tst_cmp tst_compare(const qg_tensor *got, const qg_tensor *want, tst_tol tol) {
    tst_cmp c = {.first = -1};
    c.shape_ok = tst_same_shape(got, want) && (!tol.bitwise || got->dtype == want->dtype);
    if (!c.shape_ok) {
        c.bad = -1, c.max_abs = c.max_rel = INFINITY;
        return c;
    }
    int64_t n = qg_tensor_numel(want);
    double *x = tst_to_f64(got), *y = tst_to_f64(want);
    if (!tol.bitwise) {
        tst_compare_values(&c, x, y, n, tol);
    } else {
        size_t es = qg_dtype_size(want->dtype);
        char *a = malloc(es * (size_t)(n ? n : 1)), *b = malloc(es * (size_t)(n ? n : 1));
        qg_tensor_copy_to(got, want->dtype, a), qg_tensor_copy_to(want, want->dtype, b);
        tst_compare_values(&c, x, y, n, TST_EXACT); /* the figures */
        c.bad = 0, c.first = -1;
        for (int64_t i = 0; i < n; i++)
            if (memcmp(a + (size_t)i * es, b + (size_t)i * es, es)) {
                if (c.first < 0) c.first = i, c.got = x[i], c.want = y[i];
                c.bad++;
            }
        c.ok = !c.bad;
        free(a), free(b);
    }
    free(x), free(y);
    return c;
}

/* the same dtype, shape and bytes */
static inline bool tst_bitwise_equal(const qg_tensor *got, const qg_tensor *want) {
    return tst_compare(got, want, TST_BITWISE).ok;
}

/* got (n elements, C order) against the array want, by value */
static inline tst_cmp tst_compare_array(const qg_tensor *got, int64_t n, const double *want, tst_tol tol) {
    tst_cmp c = {.first = -1};
    c.shape_ok = got && qg_tensor_numel(got) == n;
    if (!c.shape_ok) {
        c.bad = -1, c.max_abs = c.max_rel = INFINITY;
        return c;
    }
    double *x = tst_to_f64(got);
    tst_compare_values(&c, x, want, n, tol);
    free(x);
    return c;
}

/* Whether a fixture tensor must be there: a missing TST_NEED one prints a line saying
 * so; a missing TST_MAYBE one is no error (cases have optional parts). */
enum { TST_NEED, TST_MAYBE };

/* The tensor of fixture d named by a printf-style key, or NULL. */
static inline qg_tensor *tst_fixture(const qg_tensor_dict *d, int need, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline qg_tensor *tst_fixture(const qg_tensor_dict *d, int need, const char *fmt, ...) {
    char k[600];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(k, sizeof k, fmt, ap);
    va_end(ap);
    qg_tensor *t = d && len < (int)sizeof k ? qg_tensor_dict_get(d, k) : NULL;
    if (!t && need == TST_NEED) printf("fixture tensor %s missing: %s\n", k, d ? qg_last_error() : "no fixture");
    else if (!t) qg_clear_error();
    return t;
}
#endif
