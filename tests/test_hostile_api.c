/* API torture test, part 1: every public function of qgrad/autograd.h called with
 * hostile arguments — NULL for each pointer, mismatched shapes, wrong dtypes,
 * out-of-range dims, negative and overflowing sizes, zero-size tensors, tensors of a
 * reset tape. Each call must either fail with a message (qg_last_error() non-empty,
 * cleared before every call) or succeed where PyTorch succeeds; run under ASan +
 * UBSan with zero reports. Part 2 (test_hostile_api2.c) does nn, qat and optim; part 3
 * (test_hostile_api3.c) data, file paths, gradcheck and stale tensors given to nn, qat
 * and optim. tests/test_hostile_coverage.sh checks that every QG_API function is named
 * in one of them or in test_hostile.c. */
#include <stdint.h>
#include <string.h>

#include "test_util.h"
#include "hostile.h"

/* 2617318 * 7047956753329 = 2^64 + 6: a shape whose wrapped element count is 6 */
#define WRAP_A INT64_C(2617318)
#define WRAP_B INT64_C(7047956753329)


/* ---------------------------------------------------------------- errors, dtypes */

static void test_autograd_errors_dtypes(void) {
    qg_clear_error();
    CHECK(qg_last_error() && !*qg_last_error() && qg_last_status() == QG_OK, "clear_error clears");
    FAILS(qg_tensor_zeros(QG_F32, -1, NULL));
    CHECK(qg_last_status() < 0, "last_status after a failure: %d", (int)qg_last_status());
    CHECK(qg_dtype_size(QG_F32) == 4 && qg_dtype_size(QG_NDTYPES) == 0 && qg_dtype_size((qg_dtype)-1) == 0,
          "dtype_size of bad dtypes is 0");
    CHECK(!strcmp(qg_dtype_name(QG_I8), "i8") || *qg_dtype_name(QG_I8), "dtype_name");
    CHECK(qg_dtype_name((qg_dtype)99) && qg_dtype_name((qg_dtype)-5), "dtype_name of a bad dtype is a string");
}

/* ---------------------------------------------------------------- creation */

typedef qg_tensor *(*create_fn)(qg_dtype, int, const int64_t *);
static qg_tensor *full7(qg_dtype dt, int nd, const int64_t *s) { return qg_tensor_full(dt, nd, s, 7); }
static qg_tensor *rand_g(qg_dtype dt, int nd, const int64_t *s) { return qg_tensor_rand(NULL, dt, nd, s); }
static qg_tensor *randn_g(qg_dtype dt, int nd, const int64_t *s) { return qg_tensor_randn(NULL, dt, nd, s); }
static qg_tensor *from_zero(qg_dtype dt, int nd, const int64_t *s) {
    static const double buf[16];
    return qg_tensor_from_data(dt, nd, s, buf); /* reads at most 16 doubles' worth */
}

static void test_autograd_creation_null(void) {
    create_fn fns[] = {qg_tensor_empty, qg_tensor_zeros, qg_tensor_ones, full7, rand_g, randn_g, from_zero};
    const char *names[] = {"empty", "zeros", "ones", "full", "rand", "randn", "from_data"};
    struct {
        int nd;
        int64_t s[3];
        bool ok;
    } shapes[] = {
        {2, {2, 3}, true},     {0, {0}, true},         {2, {0, 3}, true},          {2, {3, 0}, true},
        {-1, {2}, false},      {9, {1}, false},        {2, {-1, 3}, false},        {2, {3, -2}, false},
        {1, {BIG}, false},     {2, {BIG, 4}, false},   {3, {1 << 30, 1 << 30, 1 << 30}, false},
        {1, {INT64_MAX}, false}, {2, {WRAP_A, WRAP_B}, false},
    };
    for (int f = 0; f < N_(fns); f++) {
        for (int k = 0; k < N_(shapes); k++) {
            qg_clear_error();
            qg_tensor *t = fns[f](QG_F32, shapes[k].nd, shapes[k].s);
            if (shapes[k].ok)
                CHECK(t && qg_tensor_numel(t) == (shapes[k].nd == 0 ? 1 : shapes[k].s[0] * shapes[k].s[1]),
                      "%s shape %d: %s", names[f], k, qg_last_error());
            else /* overflow cases: checks being added to autograd/tensor.c */
                CHECK(!t && *qg_last_error(), "%s of ndim %d shape (%lld, %lld): expected an error (%s)", names[f],
                      shapes[k].nd, (long long)shapes[k].s[0], (long long)shapes[k].s[1], qg_last_error());
            qg_tensor_free(t);
        }
        FAILS_OWN(fns[f](QG_F32, 2, NULL));
        FAILS_OWN(fns[f]((qg_dtype)99, 1, SHAPE(2)));
        FAILS_OWN(fns[f]((qg_dtype)-1, 1, SHAPE(2)));
    }
    WORKS_OWN(qg_tensor_zeros(QG_F32, 0, NULL)); /* a scalar needs no shape */
    FAILS_OWN(qg_tensor_rand(NULL, QG_I64, 1, SHAPE(3)));  /* torch.rand: not implemented for Long */
    FAILS_OWN(qg_tensor_randn(NULL, QG_U8, 1, SHAPE(3)));
    FAILS_OWN(qg_tensor_from_data(QG_F32, 1, SHAPE(3), NULL));
    /* arange: PyTorch's errors */
    FAILS_OWN(qg_tensor_arange(QG_F32, 0, 5, 0));
    /* BUG (autograd/tensor.c, reported): PyTorch's "upper bound and larger bound
     * inconsistent with step sign"; qgrad returns an empty tensor */
    FAILS_OWN(qg_tensor_arange(QG_F32, 0, 5, -1));
    FAILS_OWN(qg_tensor_arange(QG_F32, 5, 0, 1));
    FAILS_OWN(qg_tensor_arange(QG_F32, 0, NAN, 1));
    FAILS_OWN(qg_tensor_arange(QG_F32, 0, INFINITY, 1));
    FAILS_OWN(qg_tensor_arange(QG_F32, 0, 1e300, 1));
    FAILS_OWN(qg_tensor_arange(QG_F64, 0, 0x1p62, 1)); /* 2^62 doubles overflow size_t bytes */
    FAILS_OWN(qg_tensor_arange((qg_dtype)99, 0, 5, 1));
    WORKS_OWN(qg_tensor_arange(QG_F32, 0, 0, 1));
    WORKS_OWN(qg_tensor_arange(QG_I64, 5, 0, -1));
    FAILS_OWN(qg_tensor_clone(NULL));
    qg_tensor_free(NULL);
    /* rng */
    qg_rng_init(NULL, 1);
    qg_rng r;
    qg_rng_init(&r, 42);
    qg_manual_seed(7);
    CHECK(qg_rng_global() != NULL, "rng_global");
    uint64_t u = qg_rng_next_u64(&r);
    qg_rng_init(&r, 42);
    CHECK(qg_rng_next_u64(&r) == u, "rng_next_u64 repeats from its seed");
    (void)qg_rng_next_u64(NULL); /* NULL = the global generator */
    double x = qg_rng_uniform(NULL);
    CHECK(x >= 0 && x < 1, "rng_uniform(NULL) in [0, 1): %g", x);
    qg_tensor *a = ones(QG_F32, 2, SHAPE(2, 3)), *it = qg_tensor_zeros(QG_I64, 2, SHAPE(2, 3));
    qg_tensor *z = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3));
    FAILS_ST(qg_tensor_uniform_(NULL, NULL, 0, 1));
    FAILS_ST(qg_tensor_uniform_(it, NULL, 0, 1));
    FAILS_ST(qg_tensor_uniform_(a, NULL, 1, 0)); /* torch: from=1 > to=0 */
    FAILS_ST(qg_tensor_uniform_(a, &r, NAN, 1));
    WORKS_ST(qg_tensor_uniform_(z, &r, 0, 1));
    FAILS_ST(qg_tensor_normal_(NULL, NULL, 0, 1));
    FAILS_ST(qg_tensor_normal_(it, NULL, 0, 1));
    FAILS_ST(qg_tensor_normal_(a, NULL, 0, -1)); /* torch: normal expects std >= 0.0 */
    WORKS_ST(qg_tensor_normal_(z, NULL, 0, 1));
    WORKS_ST(qg_tensor_normal_(a, &r, 0, 0));
    qg_tensor_free(a), qg_tensor_free(it), qg_tensor_free(z);
}

/* ---------------------------------------------------------------- inspection, copies */

static void test_autograd_access_null(void) {
    qg_tensor *a = ones(QG_F32, 2, SHAPE(2, 3)), *b = ones(QG_F32, 2, SHAPE(4, 5)), *z = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3));
    qg_tensor *row = ones(QG_F32, 1, SHAPE(3)), *s = qg_tensor_full(QG_F32, 0, NULL, 2.5);
    CHECK(qg_tensor_numel(NULL) == 0 && !qg_tensor_is_contiguous(NULL) && !qg_tensor_data(NULL), "NULL inspection");
    CHECK(qg_tensor_numel(z) == 0 && qg_tensor_is_contiguous(z), "zero-size inspection");
    FAILS_NAN(qg_tensor_get(NULL, SHAPE(0, 0)));
    FAILS_NAN(qg_tensor_get(a, NULL));
    FAILS_NAN(qg_tensor_get(a, SHAPE(2, 0)));
    FAILS_NAN(qg_tensor_get(a, SHAPE(0, -1)));
    FAILS_NAN(qg_tensor_get(a, SHAPE(INT64_MIN, 0)));
    FAILS_NAN(qg_tensor_get(z, SHAPE(0, 0)));
    CHECK(qg_tensor_get(s, NULL) == 2.5, "get of a scalar needs no index");
    FAILS_ST(qg_tensor_set(NULL, SHAPE(0, 0), 1));
    FAILS_ST(qg_tensor_set(a, NULL, 1));
    FAILS_ST(qg_tensor_set(a, SHAPE(0, 3), 1));
    FAILS_ST(qg_tensor_set(a, SHAPE(-1, 0), 1));
    FAILS_NAN(qg_tensor_item(NULL));
    FAILS_NAN(qg_tensor_item(a));
    FAILS_NAN(qg_tensor_item(z));
    CHECK(qg_tensor_item(s) == 2.5, "item of a scalar");
    float buf[64];
    FAILS_ST(qg_tensor_copy_to(NULL, QG_F32, buf));
    FAILS_ST(qg_tensor_copy_to(a, QG_F32, NULL));
    FAILS_ST(qg_tensor_copy_to(a, (qg_dtype)99, buf));
    WORKS_ST(qg_tensor_copy_to(z, QG_F32, buf));
    FAILS_ST(qg_tensor_copy_to(z, QG_F32, NULL)); /* a NULL buffer is refused even with nothing to write */
    FAILS_ST(qg_tensor_copy_(NULL, a));
    FAILS_ST(qg_tensor_copy_(a, NULL));
    FAILS_ST(qg_tensor_copy_(a, b));
    FAILS_ST(qg_tensor_copy_(row, a)); /* src does not broadcast to dst */
    WORKS_ST(qg_tensor_copy_(a, row));
    WORKS_ST(qg_tensor_copy_(z, row));
    FAILS_ST(qg_tensor_fill_(NULL, 1));
    WORKS_ST(qg_tensor_fill_(z, 1));
    /* resize_ */
    qg_tensor *r = ones(QG_F32, 1, SHAPE(4));
    FAILS_ST(qg_tensor_resize_(NULL, 1, SHAPE(4)));
    FAILS_ST(qg_tensor_resize_(r, 1, NULL));
    FAILS_ST(qg_tensor_resize_(r, -1, SHAPE(4)));
    FAILS_ST(qg_tensor_resize_(r, 9, SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)));
    FAILS_ST(qg_tensor_resize_(r, 1, SHAPE(-4)));
    FAILS_ST(qg_tensor_resize_(r, 1, SHAPE(BIG)));          /* overflow: being added */
    FAILS_ST(qg_tensor_resize_(r, 2, SHAPE(BIG, 4)));       /* overflow: being added */
    FAILS_ST(qg_tensor_resize_(r, 2, SHAPE(WRAP_A, WRAP_B))); /* overflow: being added */
    CHECK(r->ndim == 1 && r->shape[0] == 4, "a refused resize_ leaves the tensor");
    WORKS_ST(qg_tensor_resize_(r, 2, SHAPE(0, 3)));
    WORKS_ST(qg_tensor_resize_(r, 2, SHAPE(3, 2)));
    FAILS_ST(qg_tensor_resize_(qg_add(a, a), 1, SHAPE(6))); /* tape tensor */
    qg_tensor *view_owner = ones(QG_F32, 1, SHAPE(4));
    qg_tensor *v = qg_detach(view_owner); /* shares the storage */
    /* resize_ while a tape view borrows the storage would leave the view reading out of
     * bounds: refused until the reset; the view still reads the old data */
    FAILS_ST(qg_tensor_resize_(view_owner, 1, SHAPE(64)));
    CHECK(qg_tensor_item(qg_sum(v, 0, NULL, false)) == 4, "the view still reads its storage");
    qg_tape_reset(NULL);
    WORKS_ST(qg_tensor_resize_(view_owner, 1, SHAPE(64)));
    char sb[32];
    CHECK(!strcmp(qg_shape_str(NULL, sb, sizeof sb), "NULL"), "shape_str(NULL)");
    CHECK(qg_shape_str(a, sb, 4) == sb && strlen(sb) < 4, "shape_str truncates: %s", sb);
    (void)qg_shape_str(a, NULL, 0);
    CHECK(!strcmp(qg_shape_str(z, sb, sizeof sb), "f32[0, 3]"), "shape_str of (0, 3): %s", sb);
    /* autograd flags */
    qg_tensor *it = qg_tensor_zeros(QG_I64, 1, SHAPE(3));
    FAILS_ST(qg_tensor_set_requires_grad(NULL, true));
    FAILS_ST(qg_tensor_set_requires_grad(it, true)); /* only floating tensors require grad */
    WORKS_ST(qg_tensor_set_requires_grad(it, false));
    WORKS_ST(qg_tensor_set_requires_grad(z, true));
    qg_tensor_zero_grad(NULL);
    qg_tensor_zero_grad(a); /* no grad yet: a no-op */
    bool prev = qg_set_grad_enabled(false);
    CHECK(!qg_grad_enabled(), "grad mode off");
    qg_set_grad_enabled(prev);
    CHECK(qg_grad_enabled() == prev, "grad mode restored");
    qg_tape_reset(NULL);
    qg_tensor_free(a), qg_tensor_free(b), qg_tensor_free(z), qg_tensor_free(row), qg_tensor_free(s);
    qg_tensor_free(r), qg_tensor_free(it), qg_tensor_free(view_owner);
}

/* ---------------------------------------------------------------- tape, backward, threads */

static int warnings;
static void count_warning(const char *msg, void *ctx) {
    (void)ctx;
    warnings += msg && *msg;
}

static void test_autograd_tape_null(void) {
    qg_tape_free(NULL);
    qg_tape_reset(NULL);
    qg_tape *t = qg_tape_new();
    CHECK(t != NULL, "tape_new");
    qg_tape *prev = qg_tape_set_current(t);
    CHECK(qg_tape_current() == t, "tape_set_current");
    qg_set_warning_handler(count_warning, NULL);
    WORKS_ST(qg_tape_set_limits(NULL, 0, 0)); /* 0: warn at once */
    qg_tensor *a = ones(QG_F32, 1, SHAPE(4));
    qg_tensor_set_requires_grad(a, true); /* the check runs where a node is recorded */
    CHECK(qg_add(a, a) && qg_add(a, a) && warnings == 1, "a tape past its limits warns once (%d)", warnings);
    CHECK(qg_tape_node_count(NULL) >= 1 && qg_tape_bytes(NULL) > 0, "tape counters");
    WORKS_ST(qg_tape_set_limits(t, SIZE_MAX, SIZE_MAX));
    qg_set_warning_handler(NULL, NULL);
    qg_tape_set_current(prev);
    qg_tape_free(t);
    qg_tape_set_current(NULL); /* back to the default tape */
    CHECK(qg_tape_current() != NULL && qg_tape_bytes(NULL) == qg_tape_bytes(qg_tape_current()), "default tape");
    CHECK(qg_tape_node_count(NULL) == qg_tape_node_count(qg_tape_current()), "node_count(NULL)");

    qg_tensor *w = ones(QG_F32, 2, SHAPE(2, 3)), *n = ones(QG_F32, 2, SHAPE(2, 3));
    qg_tensor_set_requires_grad(w, true);
    FAILS_ST(qg_backward(NULL, NULL));
    FAILS_ST(qg_backward_retain(NULL, NULL));
    FAILS_ST(qg_backward(qg_mul(w, n), NULL)); /* not one element: grad_out needed */
    FAILS_ST(qg_backward(qg_mul(w, n), a));    /* grad_out of another shape */
    qg_tensor *g64 = ones(QG_F64, 2, SHAPE(2, 3));
    FAILS_ST(qg_backward(qg_mul(w, n), g64)); /* grad_out of another dtype */
    FAILS_ST(qg_backward(qg_sum(n, 0, NULL, false), NULL)); /* torch: does not require grad */
    qg_tensor *y = qg_sum(qg_mul(w, n), 0, NULL, false);
    WORKS_ST(qg_backward_retain(y, NULL));
    WORKS_ST(qg_backward(y, NULL));
    FAILS_ST(qg_backward(y, NULL)); /* the graph was consumed */
    qg_tensor *zw = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3));
    qg_tensor_set_requires_grad(zw, true);
    WORKS_ST(qg_backward(qg_sum(zw, 0, NULL, false), NULL)); /* sum of nothing: grad (0, 3) */
    FAILS(qg_detach(NULL));
    WORKS(qg_detach(zw));
    qg_tensor_zero_grad(w);
    int nt = qg_get_num_threads();
    qg_set_num_threads(-3);
    CHECK(qg_get_num_threads() >= 1, "threads after set_num_threads(-3): %d", qg_get_num_threads());
    qg_set_num_threads(nt);
    CHECK(qg_live_allocations() > 0, "live allocations");
    qg_tape_reset(NULL);
    qg_tensor_free(a), qg_tensor_free(w), qg_tensor_free(n), qg_tensor_free(g64), qg_tensor_free(zw);
}

/* ---------------------------------------------------------------- elementwise ops */

typedef qg_tensor *(*unary_fn)(const qg_tensor *);
typedef qg_tensor *(*binary_fn)(const qg_tensor *, const qg_tensor *);
static qg_tensor *add_s(const qg_tensor *x) { return qg_add_scalar(x, 1); }
static qg_tensor *sub_s(const qg_tensor *x) { return qg_sub_scalar(x, 1); }
static qg_tensor *mul_s(const qg_tensor *x) { return qg_mul_scalar(x, 2); }
static qg_tensor *div_s(const qg_tensor *x) { return qg_div_scalar(x, 0); } /* inf, as PyTorch */
static qg_tensor *pow_s(const qg_tensor *x) { return qg_pow_scalar(x, 0.5); }
static qg_tensor *clamp01(const qg_tensor *x) { return qg_clamp(x, 0, 1); }
static qg_tensor *htanh(const qg_tensor *x) { return qg_hardtanh(x, -1, 1); }
static const unary_fn unary_ops[] = {qg_neg, qg_exp, qg_log, qg_sqrt, qg_rsqrt, qg_abs, qg_tanh, qg_sigmoid,
                                     qg_relu, qg_relu6, add_s, sub_s, mul_s, div_s, pow_s, clamp01, htanh};
static const char *const unary_names[] = {"neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu",
                                          "relu6", "add_scalar", "sub_scalar", "mul_scalar", "div_scalar",
                                          "pow_scalar", "clamp", "hardtanh"};
static const binary_fn binary_ops[] = {qg_add, qg_sub, qg_mul, qg_div, qg_maximum, qg_minimum, qg_gt, qg_lt, qg_eq};
static const char *const binary_names[] = {"add", "sub", "mul", "div", "maximum", "minimum", "gt", "lt", "eq"};

static void test_autograd_ops_elementwise(void) {
    qg_tensor *a = ones(QG_F32, 2, SHAPE(2, 3)), *b = ones(QG_F32, 2, SHAPE(4, 5)), *d = ones(QG_F64, 2, SHAPE(2, 3));
    qg_tensor *it = qg_tensor_zeros(QG_I64, 2, SHAPE(2, 3)), *z03 = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3));
    qg_tensor *z30 = qg_tensor_zeros(QG_F32, 2, SHAPE(3, 0)), *row = ones(QG_F32, 1, SHAPE(3));
    qg_tensor *col0 = qg_tensor_zeros(QG_F32, 2, SHAPE(1, 0));
    for (int k = 0; k < N_(unary_ops); k++) {
        qg_clear_error();
        qg_tensor *r = unary_ops[k](NULL);
        CHECK(!r && *qg_last_error(), "%s(NULL): %s", unary_names[k], qg_last_error());
        qg_clear_error();
        r = unary_ops[k](it);
        CHECK(!r && *qg_last_error(), "%s(i64): %s", unary_names[k], qg_last_error());
        qg_clear_error();
        r = unary_ops[k](z03);
        CHECK(r && r->ndim == 2 && r->shape[0] == 0 && r->shape[1] == 3, "%s((0, 3)): %s", unary_names[k], qg_last_error());
        r = unary_ops[k](z30);
        CHECK(r && qg_tensor_numel(r) == 0, "%s((3, 0)): %s", unary_names[k], qg_last_error());
        r = unary_ops[k](d);
        CHECK(r && r->dtype == QG_F64, "%s(f64): %s", unary_names[k], qg_last_error());
    }
    for (int k = 0; k < N_(binary_ops); k++) {
        const qg_tensor *bad[][2] = {{NULL, a}, {a, NULL}, {NULL, NULL}, {a, b}, {a, d}, {d, a}, {z03, a}};
        for (int c = 0; c < N_(bad); c++) {
            qg_clear_error();
            qg_tensor *r = binary_ops[k](bad[c][0], bad[c][1]);
            CHECK(!r && *qg_last_error(), "%s case %d: expected an error (%s)", binary_names[k], c, qg_last_error());
        }
        if (k < 6) { /* arithmetic: float only, as documented */
            qg_clear_error();
            CHECK(!binary_ops[k](it, it) && *qg_last_error(), "%s(i64, i64): %s", binary_names[k], qg_last_error());
        }
        const qg_tensor *good[][2] = {{z03, z03}, {z03, row}, {z30, col0}, {a, row}};
        for (int c = 0; c < N_(good); c++) {
            qg_clear_error();
            qg_tensor *r = binary_ops[k](good[c][0], good[c][1]);
            CHECK(r != NULL, "%s good case %d: %s", binary_names[k], c, qg_last_error());
        }
    }
    qg_tensor *mask = qg_tensor_zeros(QG_U8, 2, SHAPE(2, 3)), *fmask = qg_tensor_zeros(QG_F32, 2, SHAPE(2, 3));
    FAILS(qg_where(NULL, a, a));
    FAILS(qg_where(mask, NULL, a));
    FAILS(qg_where(mask, a, NULL));
    FAILS(qg_where(fmask, a, a)); /* torch: where expected condition to be a boolean tensor */
    FAILS(qg_where(mask, a, b));
    FAILS(qg_where(mask, a, d));
    qg_tensor *mask4 = qg_tensor_zeros(QG_U8, 1, SHAPE(4));
    FAILS(qg_where(mask4, a, a)); /* (4) does not broadcast to (2, 3) */
    WORKS(qg_where(mask, a, row));
    qg_tensor *zmask = qg_tensor_zeros(QG_U8, 2, SHAPE(0, 3));
    WORKS(qg_where(zmask, z03, row));
    qg_tape_reset(NULL);
    qg_tensor_free(a), qg_tensor_free(b), qg_tensor_free(d), qg_tensor_free(it), qg_tensor_free(z03);
    qg_tensor_free(z30), qg_tensor_free(row), qg_tensor_free(col0), qg_tensor_free(mask), qg_tensor_free(fmask);
    qg_tensor_free(zmask), qg_tensor_free(mask4);
}

/* ---------------------------------------------------------------- matmul, reductions, losses */

static void test_autograd_ops_reduce_null(void) {
    qg_tensor *a = ones(QG_F32, 2, SHAPE(2, 3)), *b = ones(QG_F32, 2, SHAPE(4, 5)), *d = ones(QG_F64, 2, SHAPE(3, 2));
    qg_tensor *it = qg_tensor_zeros(QG_I64, 2, SHAPE(2, 3)), *z03 = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3));
    qg_tensor *w = ones(QG_F32, 2, SHAPE(4, 3)), *bias = ones(QG_F32, 1, SHAPE(4)), *bias5 = ones(QG_F32, 1, SHAPE(5));
    qg_tensor *b23 = ones(QG_F32, 3, SHAPE(2, 2, 3)), *b33 = ones(QG_F32, 3, SHAPE(3, 3, 2));
    qg_tensor *k0 = qg_tensor_zeros(QG_F32, 2, SHAPE(2, 0)), *k0b = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 4));
    FAILS(qg_matmul(NULL, a));
    FAILS(qg_matmul(a, NULL));
    FAILS(qg_matmul(a, b));   /* (2,3) @ (4,5) */
    FAILS(qg_matmul(a, d));   /* f32 @ f64 */
    FAILS(qg_matmul(it, it));
    FAILS(qg_matmul(b23, b33)); /* batch 2 against 3 */
    WORKS(qg_matmul(z03, qg_transpose(w, 0, 1))); /* (0,3) @ (3,4) */
    WORKS(qg_matmul(k0, k0b));  /* (2,0) @ (0,4): zeros */
    FAILS(qg_linear(NULL, w, NULL));
    FAILS(qg_linear(a, NULL, NULL));
    FAILS(qg_linear(a, b, NULL));     /* in 3 against 5 */
    FAILS(qg_linear(a, w, bias5));    /* bias of 5 for 4 outputs */
    FAILS(qg_linear(it, w, NULL));
    WORKS(qg_linear(a, w, bias));
    WORKS(qg_linear(z03, w, bias));
    /* reductions */
    qg_tensor *(*red[])(const qg_tensor *, int, const int *, bool) = {qg_sum, qg_mean};
    for (int k = 0; k < 2; k++) {
        FAILS(red[k](NULL, 0, NULL, false));
        FAILS(red[k](a, 1, NULL, false));
        FAILS(red[k](a, 1, (int[]){5}, false));
        FAILS(red[k](a, 1, (int[]){-3}, false));
        FAILS(red[k](a, 2, (int[]){0, 0}, false)); /* torch: dim 0 appears multiple times */
        FAILS(red[k](a, -1, (int[]){0}, false));
        FAILS(red[k](a, 9, (int[]){0, 1, 0, 1, 0, 1, 0, 1, 0}, false));
        WORKS(red[k](z03, 0, NULL, false));
        WORKS(red[k](z03, 1, (int[]){0}, true));
        WORKS(red[k](a, 1, (int[]){-2}, false));
    }
    FAILS(qg_mean(it, 0, NULL, false)); /* torch: mean of Long */
    FAILS(qg_var(NULL, 0, NULL, true, false));
    FAILS(qg_var(a, 1, (int[]){2}, true, false));
    FAILS(qg_var(a, 1, NULL, true, false));
    FAILS(qg_var(it, 0, NULL, true, false));
    WORKS(qg_var(z03, 1, (int[]){0}, true, false)); /* NaN, as PyTorch */
    qg_tensor *idx = NULL;
    FAILS(qg_max(NULL, 0, false, &idx));
    FAILS(qg_max(a, 2, false, &idx));
    FAILS(qg_max(a, -3, false, NULL));
    FAILS(qg_max(z03, 0, false, &idx)); /* torch: reduction dim 0 has size 0 */
    WORKS(qg_max(z03, 1, false, &idx));
    WORKS(qg_max(a, -1, true, NULL));
    FAILS(qg_argmax(NULL, 0, false));
    FAILS(qg_argmax(a, 5, false));
    FAILS(qg_argmax(a, -3, false));
    FAILS(qg_argmax(z03, 0, false));
    WORKS(qg_argmax(z03, 1, false));
    qg_tensor *(*sm[])(const qg_tensor *, int) = {qg_softmax, qg_log_softmax};
    for (int k = 0; k < 2; k++) {
        FAILS(sm[k](NULL, 0));
        FAILS(sm[k](a, 2));
        FAILS(sm[k](a, -3));
        FAILS(sm[k](it, 1));
        WORKS(sm[k](z03, 1));
        WORKS(sm[k](z03, 0));
    }
    /* losses: logits (3, 4) */
    qg_tensor *lg = ones(QG_F32, 2, SHAPE(3, 4)), *lg64 = ones(QG_F64, 2, SHAPE(3, 4));
    qg_tensor *t3 = qg_tensor_from_data(QG_I64, 1, SHAPE(3), (int64_t[]){0, 1, 3});
    qg_tensor *t2 = qg_tensor_from_data(QG_I64, 1, SHAPE(2), (int64_t[]){0, 1});
    qg_tensor *t9 = qg_tensor_from_data(QG_I64, 1, SHAPE(3), (int64_t[]){0, 9, -1});
    qg_tensor *tf = qg_tensor_zeros(QG_F32, 1, SHAPE(3)), *p34 = qg_tensor_full(QG_F32, 2, SHAPE(3, 4), 0.25);
    qg_tensor *p33 = qg_tensor_full(QG_F32, 2, SHAPE(3, 3), 0.25), *p64 = qg_tensor_full(QG_F64, 2, SHAPE(3, 4), 0.25);
    qg_tensor *z04 = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 4)), *t0 = qg_tensor_zeros(QG_I64, 1, SHAPE(0));
    qg_tensor *t3i32 = qg_tensor_from_data(QG_I32, 1, SHAPE(3), (int32_t[]){0, 1, -100});
    for (int ls = 0; ls < 2; ls++) {
#define CE(x, t, r) (ls ? qg_cross_entropy_label_smoothing(x, t, r, 0.1) : qg_cross_entropy(x, t, r))
        FAILS(CE(NULL, t3, QG_REDUCTION_MEAN));
        FAILS(CE(lg, NULL, QG_REDUCTION_MEAN));
        FAILS(CE(lg, t2, QG_REDUCTION_MEAN));   /* 3 logits, 2 targets */
        FAILS(CE(lg, t9, QG_REDUCTION_MEAN));   /* class 9 of 4, class -1 */
        FAILS(CE(lg, tf, QG_REDUCTION_MEAN));   /* float target of shape (3) */
        FAILS(CE(lg, p33, QG_REDUCTION_MEAN));  /* probabilities of another shape */
        FAILS(CE(lg, p64, QG_REDUCTION_MEAN));  /* f64 probabilities for f32 logits */
        FAILS(CE(lg, t3, (qg_reduction)99));
        FAILS(CE(lg, t3, (qg_reduction)-1));
        FAILS(CE(it, t3, QG_REDUCTION_MEAN));
        FAILS(CE(a, t3, QG_REDUCTION_MEAN));    /* (2, 3) logits, 3 targets */
        WORKS(CE(lg, t3, QG_REDUCTION_NONE));
        WORKS(CE(lg64, t3i32, QG_REDUCTION_SUM));
        WORKS(CE(lg, p34, QG_REDUCTION_MEAN));
        WORKS(CE(z04, t0, QG_REDUCTION_MEAN));  /* NaN, as PyTorch */
        WORKS(CE(z04, t0, QG_REDUCTION_NONE));
#undef CE
    }
    FAILS(qg_cross_entropy_label_smoothing(lg, t3, QG_REDUCTION_MEAN, -0.1));
    FAILS(qg_cross_entropy_label_smoothing(lg, t3, QG_REDUCTION_MEAN, 1.5));
    FAILS(qg_cross_entropy_label_smoothing(lg, t3, QG_REDUCTION_MEAN, NAN));
    FAILS(qg_nll_loss(NULL, t3, QG_REDUCTION_MEAN));
    FAILS(qg_nll_loss(lg, NULL, QG_REDUCTION_MEAN));
    FAILS(qg_nll_loss(lg, t2, QG_REDUCTION_MEAN));
    FAILS(qg_nll_loss(lg, t9, QG_REDUCTION_SUM));
    FAILS(qg_nll_loss(lg, tf, QG_REDUCTION_MEAN));
    FAILS(qg_nll_loss(lg, t3, (qg_reduction)7));
    WORKS(qg_nll_loss(lg, t3i32, QG_REDUCTION_MEAN));
    WORKS(qg_nll_loss(z04, t0, QG_REDUCTION_SUM));
    FAILS(qg_mse_loss(NULL, a, QG_REDUCTION_MEAN));
    FAILS(qg_mse_loss(a, NULL, QG_REDUCTION_MEAN));
    FAILS(qg_mse_loss(a, b, QG_REDUCTION_MEAN));
    FAILS(qg_mse_loss(lg, lg64, QG_REDUCTION_MEAN));
    FAILS(qg_mse_loss(a, a, (qg_reduction)3));
    FAILS(qg_mse_loss(it, it, QG_REDUCTION_MEAN));
    WORKS(qg_mse_loss(z03, z03, QG_REDUCTION_MEAN));
    WORKS(qg_mse_loss(z03, z03, QG_REDUCTION_NONE));
    qg_tape_reset(NULL);
    qg_tensor *all[] = {a, b, d, it, z03, w, bias, bias5, b23, b33, k0, k0b, lg, lg64, t3, t2, t9, tf, p34, p33, p64, z04, t0, t3i32};
    for (int k = 0; k < N_(all); k++) qg_tensor_free(all[k]);
}

/* ---------------------------------------------------------------- views, cat, casts */

static void test_autograd_ops_views_null(void) {
    qg_tensor *a = ones(QG_F32, 2, SHAPE(2, 3)), *z03 = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3));
    qg_tensor *b = ones(QG_F32, 2, SHAPE(4, 5)), *d = ones(QG_F64, 2, SHAPE(2, 3)), *r13 = ones(QG_F32, 2, SHAPE(1, 3));
    int64_t s8[8] = {1, 1, 1, 1, 1, 1, 2, 3};
    qg_tensor *a8 = ones(QG_F32, 8, s8);
    qg_tensor *(*shape_ops[])(const qg_tensor *, int, const int64_t *) = {qg_reshape, qg_view};
    for (int k = 0; k < 2; k++) {
        FAILS(shape_ops[k](NULL, 1, SHAPE(6)));
        FAILS(shape_ops[k](a, 1, NULL));
        FAILS(shape_ops[k](a, -1, SHAPE(6)));
        FAILS(shape_ops[k](a, 9, SHAPE(1, 1, 1, 1, 1, 1, 1, 2, 3)));
        FAILS(shape_ops[k](a, 2, SHAPE(-1, -1)));
        FAILS(shape_ops[k](a, 2, SHAPE(-2, -3)));
        FAILS(shape_ops[k](a, 1, SHAPE(7)));
        FAILS(shape_ops[k](a, 2, SHAPE(4, -1)));
        FAILS(shape_ops[k](a, 2, SHAPE(BIG, 4)));       /* overflow: being added */
        FAILS(shape_ops[k](a, 2, SHAPE(WRAP_A, WRAP_B))); /* wraps to 6 elements: being added */
        FAILS(shape_ops[k](a, 3, SHAPE(WRAP_A, WRAP_B, -1)));
        FAILS(shape_ops[k](z03, 2, SHAPE(-1, 0))); /* torch: the -1 could be any value */
        WORKS(shape_ops[k](z03, 2, SHAPE(3, 0)));
        WORKS(shape_ops[k](z03, 2, SHAPE(-1, 3)));
        WORKS(shape_ops[k](a, 2, SHAPE(-1, 2)));
        FAILS(shape_ops[k](a, 0, NULL)); /* 6 elements into a scalar */
    }
    FAILS(qg_view(qg_transpose(a, 0, 1), 1, SHAPE(6))); /* torch: use .reshape */
    WORKS(qg_reshape(qg_transpose(a, 0, 1), 1, SHAPE(6)));
    FAILS(qg_transpose(NULL, 0, 1));
    FAILS(qg_transpose(a, 0, 2));
    FAILS(qg_transpose(a, -3, 0));
    WORKS(qg_transpose(z03, -1, -2));
    FAILS(qg_permute(NULL, (int[]){1, 0}));
    FAILS(qg_permute(a, NULL));
    FAILS(qg_permute(a, (int[]){0, 0}));
    FAILS(qg_permute(a, (int[]){0, 2}));
    FAILS(qg_permute(a, (int[]){-3, 0}));
    WORKS(qg_permute(z03, (int[]){-1, 0}));
    FAILS(qg_narrow(NULL, 0, 0, 1));
    FAILS(qg_narrow(a, 2, 0, 1));
    FAILS(qg_narrow(a, 1, 2, 2));
    FAILS(qg_narrow(a, 1, 0, -1));
    FAILS(qg_narrow(a, 1, 4, 0));
    FAILS(qg_narrow(a, 1, INT64_MAX, 1)); /* start + length overflows */
    FAILS(qg_narrow(a, 1, 1, INT64_MAX));
    FAILS(qg_narrow(a, 1, INT64_MIN, 1));
    WORKS(qg_narrow(a, 1, 3, 0));
    WORKS(qg_narrow(a, 1, -1, 1)); /* torch: a negative start counts from the end */
    FAILS(qg_slice(NULL, 0, 0, 1, 1));
    FAILS(qg_slice(a, 2, 0, 1, 1));
    FAILS(qg_slice(a, 1, 0, 3, 0));
    FAILS(qg_slice(a, 1, 0, 3, -1));
    WORKS(qg_slice(a, 1, -100, 100, 1)); /* clamped, as Python's */
    WORKS(qg_slice(a, 1, INT64_MIN, INT64_MAX, 1));
    WORKS(qg_slice(a, 1, 0, INT64_MAX, INT64_MAX));
    WORKS(qg_slice(a, 1, 2, 1, 1)); /* empty */
    WORKS(qg_slice(z03, 0, 0, 5, 2));
    FAILS(qg_select(NULL, 0, 0));
    FAILS(qg_select(a, 2, 0));
    FAILS(qg_select(a, 0, 2));
    FAILS(qg_select(a, 0, -3));
    FAILS(qg_select(a, 0, INT64_MIN));
    FAILS(qg_select(a, 0, INT64_MAX));
    FAILS(qg_select(z03, 0, 0));
    WORKS(qg_select(a, 0, -1));
    WORKS(qg_select(z03, 1, 2));
    FAILS(qg_expand(NULL, 2, SHAPE(2, 3)));
    FAILS(qg_expand(a, 2, NULL));
    FAILS(qg_expand(a, 1, SHAPE(3)));         /* fewer dims */
    FAILS(qg_expand(a, 2, SHAPE(4, 3)));      /* 2 cannot expand to 4 */
    FAILS(qg_expand(r13, 3, SHAPE(-1, 2, 3))); /* -1 for a new leading dim */
    FAILS(qg_expand(r13, 2, SHAPE(-2, 3)));
    FAILS(qg_expand(a, 9, SHAPE(1, 1, 1, 1, 1, 1, 1, 2, 3)));
    FAILS(qg_expand(r13, 2, SHAPE(INT64_MAX, 3))); /* 3 (2^63 - 1) elements: overflow, being added */
    FAILS(qg_expand(r13, 3, SHAPE(WRAP_A, WRAP_B, 3)));  /* overflow: being added */
    WORKS(qg_expand(r13, 2, SHAPE(0, 3)));
    WORKS(qg_expand(r13, 3, SHAPE(2, -1, 3)));
    /* a view of 3 * 2^60 elements: PyTorch makes it, qgrad caps shapes at 2^59 elements */
    FAILS(qg_expand(r13, 2, SHAPE(BIG / 4, 3)));
    WORKS(qg_expand(r13, 2, SHAPE(BIG / 64, 3)));
    FAILS(qg_squeeze(NULL, 0));
    FAILS(qg_squeeze(a, 2));
    FAILS(qg_squeeze(a, -3));
    WORKS(qg_squeeze(a, 0)); /* not of size 1: unchanged */
    WORKS(qg_squeeze(z03, 0));
    FAILS(qg_unsqueeze(NULL, 0));
    FAILS(qg_unsqueeze(a, 3));
    FAILS(qg_unsqueeze(a, -4));
    FAILS(qg_unsqueeze(a8, 0)); /* beyond QG_MAX_DIMS */
    WORKS(qg_unsqueeze(a, 2));
    WORKS(qg_unsqueeze(a, -3));
    WORKS(qg_unsqueeze(z03, 1));
    FAILS(qg_flatten(NULL, 0, -1));
    FAILS(qg_flatten(a, 1, 0)); /* torch: start_dim cannot come after end_dim */
    FAILS(qg_flatten(a, 0, 2));
    FAILS(qg_flatten(a, -3, -1));
    WORKS(qg_flatten(z03, 0, -1));
    WORKS(qg_flatten(a8, 0, 7));
    FAILS(qg_contiguous(NULL));
    WORKS(qg_contiguous(qg_transpose(z03, 0, 1)));
    /* cat, stack */
    qg_tensor *pair[] = {a, b}, *nul[] = {a, NULL}, *same[] = {a, a}, *mixed[] = {z03, a}, *dt[] = {a, d};
    qg_tensor *(*join[])(int, qg_tensor *const *, int) = {qg_cat, qg_stack};
    for (int k = 0; k < 2; k++) {
        FAILS(join[k](0, same, 0)); /* torch: expected a non-empty list of Tensors */
        FAILS(join[k](-1, same, 0));
        FAILS(join[k](2, NULL, 0));
        FAILS(join[k](2, nul, 0));
        FAILS(join[k](2, pair, 0));
        FAILS(join[k](2, same, 3));
        FAILS(join[k](2, same, -4));
        FAILS(join[k](2, dt, 0)); /* f32 with f64: qgrad does not promote */
        WORKS(join[k](1, same, -1));
    }
    WORKS(qg_cat(2, mixed, 0)); /* (0, 3) and (2, 3) */
    FAILS(qg_cat(2, mixed, 1));
    FAILS(qg_stack(2, mixed, 0));
    WORKS(qg_stack(2, same, 2));
    FAILS(qg_to_dtype(NULL, QG_F64));
    FAILS(qg_to_dtype(a, (qg_dtype)99));
    FAILS(qg_to_dtype(a, (qg_dtype)-1));
    WORKS(qg_to_dtype(a, QG_U8));
    WORKS(qg_to_dtype(z03, QG_I8));
    qg_tape_reset(NULL);
    qg_tensor_free(a), qg_tensor_free(z03), qg_tensor_free(b), qg_tensor_free(d), qg_tensor_free(r13), qg_tensor_free(a8);
}

/* ---------------------------------------------------------------- nn functional */

static void test_autograd_functional_null(void) {
    qg_tensor *x = ones(QG_F32, 4, SHAPE(2, 3, 5, 5)), *w = ones(QG_F32, 4, SHAPE(4, 3, 3, 3));
    qg_tensor *w2 = ones(QG_F32, 4, SHAPE(4, 2, 3, 3)), *b = ones(QG_F32, 1, SHAPE(4)), *b5 = ones(QG_F32, 1, SHAPE(5));
    qg_tensor *x64 = ones(QG_F64, 4, SHAPE(2, 3, 5, 5)), *xi = qg_tensor_zeros(QG_I64, 4, SHAPE(2, 3, 5, 5));
    qg_tensor *x0 = qg_tensor_zeros(QG_F32, 4, SHAPE(0, 3, 5, 5)), *w9 = ones(QG_F32, 4, SHAPE(4, 3, 9, 9));
    qg_tensor *x3 = ones(QG_F32, 3, SHAPE(2, 3, 5)), *w1 = ones(QG_F32, 3, SHAPE(4, 3, 3));
    qg_tensor *w1c = ones(QG_F32, 3, SHAPE(4, 2, 3)), *x1d = qg_tensor_zeros(QG_F32, 3, SHAPE(0, 3, 5));
    FAILS(qg_conv2d(NULL, w, b, NULL, NULL, NULL, 1));
    FAILS(qg_conv2d(x, NULL, b, NULL, NULL, NULL, 1));
    FAILS(qg_conv2d(x, w2, NULL, NULL, NULL, NULL, 1)); /* 3 input channels, weight for 2 */
    FAILS(qg_conv2d(x, w, b5, NULL, NULL, NULL, 1));
    FAILS(qg_conv2d(x3, w, NULL, NULL, NULL, NULL, 1));
    FAILS(qg_conv2d(x, w1, NULL, NULL, NULL, NULL, 1));
    FAILS(qg_conv2d(xi, w, NULL, NULL, NULL, NULL, 1));
    FAILS(qg_conv2d(x64, w, NULL, NULL, NULL, NULL, 1));
    FAILS(qg_conv2d(x, w9, NULL, NULL, NULL, NULL, 1)); /* kernel 9 > input 5 */
    FAILS(qg_conv2d(x, w, NULL, NULL, NULL, NULL, 0));
    FAILS(qg_conv2d(x, w, NULL, NULL, NULL, NULL, -1));
    FAILS(qg_conv2d(x, w, NULL, NULL, NULL, NULL, 2)); /* 3 channels in 2 groups */
    FAILS(qg_conv2d(x, w, NULL, (int[]){0, 1}, NULL, NULL, 1));
    FAILS(qg_conv2d(x, w, NULL, (int[]){-1, 1}, NULL, NULL, 1));
    FAILS(qg_conv2d(x, w, NULL, NULL, (int[]){-1, 0}, NULL, 1));
    FAILS(qg_conv2d(x, w, NULL, NULL, NULL, (int[]){1, 0}, 1));
    FAILS(qg_conv2d(x, w, NULL, NULL, (int[]){INT32_MAX, INT32_MAX}, NULL, 1)); /* overflow: being added */
    FAILS(qg_conv2d(x, w, NULL, NULL, NULL, (int[]){INT32_MAX, 1}, 1));          /* overflow: being added */
    /* 2^31 of padding and a 2^31 + 1 dilated kernel: a 5 x 3 output, as in PyTorch */
    WORKS(qg_conv2d(x, w, NULL, NULL, (int[]){1 << 30, 0}, (int[]){1 << 30, 1}, 1));
    WORKS(qg_conv2d(x, w, NULL, (int[]){INT32_MAX, INT32_MAX}, NULL, NULL, 1)); /* a 1x1 output */
    WORKS(qg_conv2d(x0, w, b, NULL, NULL, NULL, 1));
    FAILS(qg_conv1d(NULL, w1, NULL, 1, 0, 1, 1));
    FAILS(qg_conv1d(x3, NULL, NULL, 1, 0, 1, 1));
    FAILS(qg_conv1d(x3, w1c, NULL, 1, 0, 1, 1));
    FAILS(qg_conv1d(x3, w1, b5, 1, 0, 1, 1));
    FAILS(qg_conv1d(x, w1, NULL, 1, 0, 1, 1));
    FAILS(qg_conv1d(x3, w1, NULL, 0, 0, 1, 1));
    FAILS(qg_conv1d(x3, w1, NULL, 1, -1, 1, 1));
    FAILS(qg_conv1d(x3, w1, NULL, 1, 0, 0, 1));
    FAILS(qg_conv1d(x3, w1, NULL, 1, 0, 1, 0));
    FAILS(qg_conv1d(x3, w1, NULL, 1, INT32_MAX, 1, 1)); /* overflow: being added */
    FAILS(qg_conv1d(x3, w1, NULL, 1, 0, INT32_MAX, 1)); /* overflow: being added */
    WORKS(qg_conv1d(x1d, w1, b, 1, 1, 1, 1));
    /* batch norm: (N, C) = (4, 3) */
    qg_tensor *bx = ones(QG_F32, 2, SHAPE(4, 3)), *rm = qg_tensor_zeros(QG_F32, 1, SHAPE(3)), *rv = ones(QG_F32, 1, SHAPE(3));
    qg_tensor *r4 = qg_tensor_zeros(QG_F32, 1, SHAPE(4)), *one = ones(QG_F32, 2, SHAPE(1, 3)), *v1 = ones(QG_F32, 1, SHAPE(3));
    qg_tensor *bxi = qg_tensor_zeros(QG_I64, 2, SHAPE(4, 3)), *rm64 = qg_tensor_zeros(QG_F64, 1, SHAPE(3));
    FAILS(qg_batch_norm(NULL, rm, rv, NULL, NULL, true, 0.1, 1e-5));
    FAILS(qg_batch_norm(bx, NULL, NULL, NULL, NULL, false, 0.1, 1e-5)); /* eval needs running stats */
    FAILS(qg_batch_norm(bx, rm, NULL, NULL, NULL, false, 0.1, 1e-5));
    FAILS(qg_batch_norm(bx, r4, rv, NULL, NULL, true, 0.1, 1e-5));
    FAILS(qg_batch_norm(bx, rm, r4, NULL, NULL, true, 0.1, 1e-5));
    FAILS(qg_batch_norm(bx, rm, rv, r4, NULL, true, 0.1, 1e-5));
    FAILS(qg_batch_norm(bx, rm, rv, NULL, r4, true, 0.1, 1e-5));
    FAILS(qg_batch_norm(v1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5)); /* 1-d */
    FAILS(qg_batch_norm(bxi, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
    FAILS(qg_batch_norm(one, NULL, NULL, NULL, NULL, true, 0.1, 1e-5)); /* torch: more than 1 value per channel */
    FAILS(qg_batch_norm(bx, rm64, rv, NULL, NULL, true, 0.1, 1e-5));
    WORKS(qg_batch_norm(bx, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
    WORKS(qg_batch_norm(one, rm, rv, v1, v1, false, 0.1, 1e-5));
    WORKS(qg_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
    /* pooling */
    int k2[] = {2, 2};
    qg_tensor *x2d = ones(QG_F32, 2, SHAPE(5, 5));
    FAILS(qg_max_pool2d(NULL, k2, NULL, NULL, NULL, false));
    FAILS(qg_max_pool2d(x, NULL, NULL, NULL, NULL, false));
    FAILS(qg_max_pool2d(x2d, k2, NULL, NULL, NULL, false));
    FAILS(qg_max_pool2d(x, (int[]){0, 2}, NULL, NULL, NULL, false));
    FAILS(qg_max_pool2d(x, (int[]){-2, 2}, NULL, NULL, NULL, false));
    ANSWERS(qg_max_pool2d(x, k2, (int[]){0, 1}, NULL, NULL, false)); /* qgrad: a 0 stride is the kernel size */
    FAILS(qg_max_pool2d(x, k2, (int[]){-1, 1}, NULL, NULL, false));
    FAILS(qg_max_pool2d(x, k2, NULL, (int[]){2, 0}, NULL, false)); /* torch: pad at most half the kernel */
    FAILS(qg_max_pool2d(x, k2, NULL, (int[]){-1, 0}, NULL, false));
    FAILS(qg_max_pool2d(x, k2, NULL, NULL, (int[]){0, 1}, false));
    FAILS(qg_max_pool2d(x, (int[]){6, 6}, NULL, NULL, NULL, false)); /* output size 0 */
    FAILS(qg_max_pool2d(x, (int[]){INT32_MAX, 2}, NULL, NULL, NULL, false)); /* overflow: being added */
    FAILS(qg_max_pool2d(x, k2, NULL, NULL, (int[]){INT32_MAX, 1}, false));   /* overflow: being added */
    FAILS(qg_max_pool2d(x, k2, (int[]){1, 1}, (int[]){1, 1}, (int[]){1 << 30, 1}, true));
    FAILS(qg_max_pool2d(xi, k2, NULL, NULL, NULL, false));
    WORKS(qg_max_pool2d(x0, k2, NULL, NULL, NULL, true));
    WORKS(qg_max_pool2d(x, k2, (int[]){INT32_MAX, INT32_MAX}, NULL, NULL, false));
    FAILS(qg_avg_pool2d(NULL, k2, NULL, NULL, false, true, 0));
    FAILS(qg_avg_pool2d(x, NULL, NULL, NULL, false, true, 0));
    FAILS(qg_avg_pool2d(x2d, k2, NULL, NULL, false, true, 0));
    FAILS(qg_avg_pool2d(x, (int[]){0, 2}, NULL, NULL, false, true, 0));
    ANSWERS(qg_avg_pool2d(x, k2, (int[]){0, 2}, NULL, false, true, 0));
    FAILS(qg_avg_pool2d(x, k2, NULL, (int[]){2, 2}, false, true, 0));
    FAILS(qg_avg_pool2d(x, k2, NULL, (int[]){-1, 0}, false, true, 0));
    FAILS(qg_avg_pool2d(x, (int[]){6, 6}, NULL, NULL, false, true, 0));
    FAILS(qg_avg_pool2d(x, (int[]){INT32_MAX, INT32_MAX}, NULL, NULL, false, true, 0)); /* overflow: being added */
    FAILS(qg_avg_pool2d(xi, k2, NULL, NULL, false, true, 0));
    WORKS(qg_avg_pool2d(x0, k2, NULL, NULL, true, false, 3));
    FAILS(qg_adaptive_avg_pool2d(NULL, 1, 1));
    FAILS(qg_adaptive_avg_pool2d(x, -1, 1));
    FAILS(qg_adaptive_avg_pool2d(x, 1, -1));
    FAILS(qg_adaptive_avg_pool2d(x2d, 1, 1));
    FAILS(qg_adaptive_avg_pool2d(xi, 1, 1));
    FAILS(qg_adaptive_avg_pool2d(x, BIG, BIG)); /* overflow: being added */
    FAILS(qg_adaptive_avg_pool2d(x, WRAP_A, WRAP_B));
    WORKS(qg_adaptive_avg_pool2d(x, 7, 3)); /* larger than the input, as PyTorch allows */
    WORKS(qg_adaptive_avg_pool2d(x0, 2, 2));
    FAILS(qg_dropout(NULL, 0.5, true, NULL));
    FAILS(qg_dropout(x, -0.1, true, NULL));
    FAILS(qg_dropout(x, 1.5, true, NULL));
    FAILS(qg_dropout(x, NAN, true, NULL));
    WORKS(qg_dropout(x, 1, true, NULL));
    WORKS(qg_dropout(x0, 0.5, true, NULL));
    WORKS(qg_dropout(x, 0.5, false, NULL));
    qg_tape_reset(NULL);
    qg_tensor *all[] = {x, w, w2, b, b5, x64, xi, x0, w9, x3, w1, w1c, x1d, bx, rm, rv, r4, one, v1, bxi, rm64, x2d};
    for (int k = 0; k < N_(all); k++) qg_tensor_free(all[k]);
}

static qg_tensor *gc_square(qg_tensor *const *in, void *ctx) {
    (void)ctx;
    return qg_mul(in[0], in[0]);
}
/* ---------------------------------------------------------------- stale tape tensors */

static void test_autograd_stale(void) {
    qg_tensor *a = ones(QG_F32, 2, SHAPE(3, 4)), *buf = ones(QG_F32, 2, SHAPE(3, 4));
    qg_tensor *s = qg_mul_scalar(a, 2), *s4 = qg_reshape(a, 4, SHAPE(1, 3, 2, 2));
    qg_tensor_set_requires_grad(a, true);
    qg_tensor *loss = qg_sum(qg_mul(a, a), 0, NULL, false);
    qg_tape_reset(NULL);
    for (int k = 0; k < N_(unary_ops); k++) STALE(unary_ops[k](s));
    for (int k = 0; k < N_(binary_ops); k++) {
        STALE(binary_ops[k](s, a));
        STALE(binary_ops[k](a, s));
    }
    STALE(qg_tensor_clone(s)); /* NULL: nothing to free */
    STALE(qg_detach(s));
    STALE(qg_contiguous(s));
    STALE(qg_sum(s, 0, NULL, false));
    STALE(qg_reshape(s, 1, SHAPE(12)));
    STALE(qg_conv2d(s4, s4, NULL, NULL, NULL, NULL, 1));
    STALE(qg_max_pool2d(s4, (int[]){1, 1}, NULL, NULL, NULL, false));
    STALE(qg_adaptive_avg_pool2d(s4, 1, 1));
    qg_clear_error();
    CHECK(!qg_tensor_data(s) && strstr(qg_last_error(), "reset tape"), "tensor_data: %s", qg_last_error());
    FAILS_NAN(qg_tensor_get(s, SHAPE(0, 0)));
    CHECK(strstr(qg_last_error(), "reset tape"), "tensor_get: %s", qg_last_error());
    FAILS_NAN(qg_tensor_item(loss));
    STALE_ST(qg_tensor_set(s, SHAPE(0, 0), 1));
    float out[12];
    STALE_ST(qg_tensor_copy_to(s, QG_F32, out));
    STALE_ST(qg_tensor_copy_(s, a));
    STALE_ST(qg_tensor_copy_(buf, s));
    STALE_ST(qg_tensor_fill_(s, 0));
    STALE_ST(qg_tensor_uniform_(s, NULL, 0, 1));
    STALE_ST(qg_tensor_normal_(s, NULL, 0, 1));
    STALE_ST(qg_tensor_set_requires_grad(s, false));
    STALE_ST(qg_backward(loss, NULL));
    STALE_ST(qg_backward_retain(loss, NULL));
    STALE_ST(qg_backward(qg_sum(qg_mul(a, a), 0, NULL, false), s)); /* a stale grad_out */
    FAILS_ST(qg_tensor_resize_(s, 1, SHAPE(4))); /* refused as a tape tensor, not named stale */
    qg_tensor *in[] = {s};
    STALE_ST(qg_gradcheck(gc_square, NULL, 1, in, NULL));
    qg_tape_reset(NULL);
    qg_tensor_free(a), qg_tensor_free(buf);
}

int main(void) {
    test_autograd_errors_dtypes();
    test_autograd_creation_null();
    test_autograd_access_null();
    test_autograd_tape_null();
    test_autograd_ops_elementwise();
    test_autograd_ops_reduce_null();
    test_autograd_ops_views_null();
    test_autograd_functional_null();
    test_autograd_stale();
    qg_shutdown();
    return test_summary("hostile_api");
}
