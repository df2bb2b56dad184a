/* Elementwise ops: unary (with an optional scalar), binary with broadcasting, where,
 * comparisons. Each op code has its forward expression and its derivative side by
 * side; the loops are written once for f32 and f64 (QG_FLOAT_DISPATCH) with a
 * contiguous fast path and a strided one. Formulas follow PyTorch's derivatives. */
#include <tgmath.h>

#include "kernels/isa.h"
#include "op_internal.h"

/* ================================================================ unary */

typedef enum {
    U_NEG, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_ABS, U_TANH, U_SIGMOID, U_RELU,
    U_CLAMP,    /* p0..p1, gradient where p0 <= x <= p1 */
    U_HARDTANH, /* same values, gradient where p0 < x < p1 (PyTorch's hardtanh) */
    U_POW,      /* x ^ p0 */
    U_ADD_S,    /* x + p0 */
    U_MUL_S,    /* x * p0 */
    U_DIV_S,    /* x / p0 */
} unary_op;

static const char *const unary_names[] = {
    "neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu",
    "clamp", "hardtanh", "pow", "add_scalar", "mul_scalar", "div_scalar"};

typedef struct {
    unary_op op;
    qg_dtype dt;
    double p0, p1;
    bool store; /* backward: a fresh gradient buffer, stored rather than added to */
} unary_ctx;

/* Rows: apply EXPR (of x) from src (ptr[1]) into dst (ptr[0]). */
#define MAP_ROW(EXPR)                                                          \
    do {                                                                       \
        real *o = (real *)ptr[0];                                              \
        const real *s = (const real *)ptr[1];                                  \
        if (st[0] == 1 && st[1] == 1) {                                        \
            for (int64_t i = 0; i < n; i++) { real x = s[i]; o[i] = (EXPR); }  \
        } else {                                                               \
            for (int64_t i = 0; i < n; i++) {                                  \
                real x = s[i * st[1]];                                         \
                o[i * st[0]] = (EXPR);                                         \
            }                                                                  \
        }                                                                      \
    } while (0)

/* PyTorch's pow special-cases these exponents (exact multiplies, sqrt, reciprocal). */
#define POW_EXPR(x, e)                                                            \
    ((e) == 2 ? (x) * (x) : (e) == 3 ? (x) * (x) * (x) : (e) == 0.5 ? sqrt(x)      \
     : (e) == -0.5 ? (real)1 / sqrt(x) : (e) == -1 ? (real)1 / (x)                 \
     : (e) == -2 ? (real)1 / ((x) * (x)) : pow((x), (e)))

QG_HOT static void unary_fwd_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const unary_ctx *c = vctx;
    bool contig = st[0] == 1 && st[1] == 1;
    QG_FLOAT_DISPATCH(c->dt, {
        const real p0 = (real)c->p0, p1 = (real)c->p1;
        switch (c->op) {
        case U_NEG: MAP_ROW(-x); break;
        case U_EXP:
            if (contig && sizeof(real) == 4) qg__vexp_f32(n, (const float *)ptr[1], (float *)ptr[0]);
            else if (contig) qg__vexp_f64(n, (const double *)ptr[1], (double *)ptr[0]);
            else MAP_ROW(exp(x));
            break;
        case U_LOG:
            if (contig && sizeof(real) == 4) qg__vlog_f32(n, (const float *)ptr[1], (float *)ptr[0]);
            else if (contig) qg__vlog_f64(n, (const double *)ptr[1], (double *)ptr[0]);
            else MAP_ROW(log(x));
            break;
        case U_TANH:
            if (contig && sizeof(real) == 4) qg__vtanh_f32(n, (const float *)ptr[1], (float *)ptr[0]);
            else if (contig) qg__vtanh_f64(n, (const double *)ptr[1], (double *)ptr[0]);
            else MAP_ROW(tanh(x));
            break;
        case U_SIGMOID:
            if (contig && sizeof(real) == 4) qg__vsigmoid_f32(n, (const float *)ptr[1], (float *)ptr[0]);
            else if (contig) qg__vsigmoid_f64(n, (const double *)ptr[1], (double *)ptr[0]);
            else MAP_ROW((real)1 / ((real)1 + exp(-x)));
            break;
        case U_SQRT: MAP_ROW(sqrt(x)); break;
        case U_RSQRT: MAP_ROW((real)1 / sqrt(x)); break;
        case U_ABS: MAP_ROW(fabs(x)); break;
        case U_RELU: MAP_ROW(x <= 0 ? (real)0 : x); break;
        case U_CLAMP:
        case U_HARDTANH: MAP_ROW(x < p0 ? p0 : (x > p1 ? p1 : x)); break;
        case U_POW: MAP_ROW(POW_EXPR(x, p0)); break;
        case U_ADD_S: MAP_ROW(x + p0); break;
        case U_MUL_S: MAP_ROW(x * p0); break;
        case U_DIV_S: MAP_ROW(x / p0); break;
        }
    });
}

/* Backward rows: dst (ptr[0]) += EXPR of g (ptr[1]), x (ptr[2]), y (ptr[3]); dst =
 * EXPR instead where the row function's store_ is set (a fresh gradient buffer of
 * the iteration's own shape: never the broadcast branch). */
#define GRAD_PUT(lv, v) QG_PUT_GRAD(store_, lv, v)
#define GRAD_ROW(EXPR)                                                                 \
    do {                                                                               \
        real *d = (real *)ptr[0];                                                      \
        const real *G = (const real *)ptr[1], *X = (const real *)ptr[2],               \
                   *Y = (const real *)ptr[3];                                          \
        if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {                    \
            for (int64_t i = 0; i < n; i++) {                                          \
                real g = G[i], x = X[i], y = Y[i];                                     \
                (void)x, (void)y;                                                      \
                GRAD_PUT(d[i], (EXPR));                                                \
            }                                                                          \
        } else if (st[0] == 0 && st[1] == 1 && st[2] == 1 && st[3] == 0) {             \
            /* a row of a broadcast input's gradient (a per-channel y): 8 partial sums */ \
            real p8[8] = {0}, s1 = 0;                                                  \
            const real y = Y[0];                                                       \
            (void)y;                                                                   \
            int64_t i = 0;                                                             \
            for (; i + 8 <= n; i += 8)                                                 \
                for (int j = 0; j < 8; j++) {                                          \
                    real g = G[i + j], x = X[i + j];                                   \
                    (void)x;                                                           \
                    p8[j] += (EXPR);                                                   \
                }                                                                      \
            for (; i < n; i++) {                                                       \
                real g = G[i], x = X[i];                                               \
                (void)x;                                                               \
                s1 += (EXPR);                                                          \
            }                                                                          \
            d[0] += QG_SUM8(p8) + s1;                                                  \
        } else {                                                                       \
            for (int64_t i = 0; i < n; i++) {                                          \
                real g = G[i * st[1]], x = X[i * st[2]], y = Y[i * st[3]];             \
                (void)x, (void)y;                                                      \
                GRAD_PUT(d[i * st[0]], (EXPR));                                        \
            }                                                                          \
        }                                                                              \
    } while (0)

QG_HOT static void unary_bwd_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const unary_ctx *c = vctx;
    const bool store_ = c->store;
    QG_FLOAT_DISPATCH(c->dt, {
        const real p0 = (real)c->p0, p1 = (real)c->p1;
        switch (c->op) {
        case U_NEG: GRAD_ROW(-g); break;
        case U_EXP: GRAD_ROW(g * y); break;
        case U_LOG: GRAD_ROW(g / x); break;
        case U_SQRT: GRAD_ROW(g / (2 * y)); break;
        case U_RSQRT: GRAD_ROW((real)-0.5 * g * (y * y * y)); break;
        case U_ABS: GRAD_ROW(x > 0 ? g : (x < 0 ? -g : (real)0)); break;
        case U_TANH: GRAD_ROW(g * ((real)1 - y * y)); break;
        case U_SIGMOID: GRAD_ROW(g * ((real)1 - y) * y); break;
        case U_RELU: GRAD_ROW(y <= 0 ? (real)0 : g); break;
        case U_CLAMP: GRAD_ROW(x >= p0 && x <= p1 ? g : (real)0); break;
        case U_HARDTANH: GRAD_ROW(x <= p0 || x >= p1 ? (real)0 : g); break;
        case U_POW: GRAD_ROW(p0 == 0 ? (real)0 : g * (p0 * POW_EXPR(x, p0 - 1))); break;
        case U_ADD_S: GRAD_ROW(g); break;
        case U_MUL_S: GRAD_ROW(g * p0); break;
        case U_DIV_S: GRAD_ROW(g / p0); break;
        }
    });
}

static qg_status unary_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    bool fresh;
    qg_tensor *gx = qg__grad_for_write(x, &fresh);
    if (!gx) return QG_ENOMEM;
    unary_ctx c = {(unary_op)n->ip[0], x->dtype, n->p[0], n->p[1], fresh};
    const qg_tensor *ops[4] = {gx, n->out->grad, x, n->out};
    qg_iter it;
    qg__iter_init(&it, 4, ops, x->ndim, x->shape);
    qg__iter_run(&it, unary_bwd_row, &c, true);
    return QG_OK;
}

static qg_tensor *unary(unary_op op, const qg_tensor *x, double p0, double p1) {
    if (qg__check_float(unary_names[op], x)) return NULL;
    qg_tensor *out = qg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    unary_ctx c = {op, x->dtype, p0, p1, false};
    const qg_tensor *ops[2] = {out, x};
    qg_iter it;
    qg__iter_init(&it, 2, ops, x->ndim, x->shape);
    qg__iter_run(&it, unary_fwd_row, &c, true);
    if (qg__needs_grad(1, &x)) {
        qg_node *n = qg__record(unary_names[op], unary_backward, out, 1, &x);
        if (!n) return NULL;
        n->ip[0] = op;
        n->p[0] = p0;
        n->p[1] = p1;
    }
    return out;
}

qg_tensor *qg_neg(const qg_tensor *a) { return unary(U_NEG, a, 0, 0); }
qg_tensor *qg_exp(const qg_tensor *a) { return unary(U_EXP, a, 0, 0); }
qg_tensor *qg_log(const qg_tensor *a) { return unary(U_LOG, a, 0, 0); }
qg_tensor *qg_sqrt(const qg_tensor *a) { return unary(U_SQRT, a, 0, 0); }
qg_tensor *qg_rsqrt(const qg_tensor *a) { return unary(U_RSQRT, a, 0, 0); }
qg_tensor *qg_abs(const qg_tensor *a) { return unary(U_ABS, a, 0, 0); }
qg_tensor *qg_tanh(const qg_tensor *a) { return unary(U_TANH, a, 0, 0); }
qg_tensor *qg_sigmoid(const qg_tensor *a) { return unary(U_SIGMOID, a, 0, 0); }
qg_tensor *qg_relu(const qg_tensor *a) {
    if (a && a->quant) return qg__live("relu", a) ? NULL : qg__quantized_relu(a);
    return unary(U_RELU, a, 0, 0);
}
qg_tensor *qg_pow_scalar(const qg_tensor *a, double e) { return unary(U_POW, a, e, 0); }
qg_tensor *qg_add_scalar(const qg_tensor *a, double s) { return unary(U_ADD_S, a, s, 0); }
qg_tensor *qg_sub_scalar(const qg_tensor *a, double s) { return unary(U_ADD_S, a, -s, 0); }
qg_tensor *qg_mul_scalar(const qg_tensor *a, double s) { return unary(U_MUL_S, a, s, 0); }
qg_tensor *qg_div_scalar(const qg_tensor *a, double s) { return unary(U_DIV_S, a, s, 0); }

static qg_tensor *clamp_like(unary_op op, const qg_tensor *a, double lo, double hi) {
    if (!(lo <= hi)) /* also rejects NaN */
        return qg__err(QG_EINVAL, "%s: min %g must not exceed max %g", unary_names[op], lo, hi), NULL;
    return unary(op, a, lo, hi);
}
qg_tensor *qg_clamp(const qg_tensor *a, double lo, double hi) { return clamp_like(U_CLAMP, a, lo, hi); }
qg_tensor *qg_hardtanh(const qg_tensor *a, double lo, double hi) { return clamp_like(U_HARDTANH, a, lo, hi); }
qg_tensor *qg_relu6(const qg_tensor *a) { return clamp_like(U_HARDTANH, a, 0, 6); }

/* ================================================================ binary */

typedef enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN } binary_op;
static const char *const binary_names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};

typedef struct {
    binary_op op;
    qg_dtype dt;
    int which; /* backward: 0 = gradient for a, 1 = for b */
} binary_ctx;

/* out (ptr[0]) = EXPR of a (ptr[1]), b (ptr[2]) */
#define ZIP_ROW(EXPR)                                                                  \
    do {                                                                               \
        real *o = (real *)ptr[0];                                                      \
        const real *A = (const real *)ptr[1], *B = (const real *)ptr[2];               \
        if (st[0] == 1 && st[1] == 1 && st[2] == 1) {                                  \
            for (int64_t i = 0; i < n; i++) { real a = A[i], b = B[i]; o[i] = (EXPR); } \
        } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {                           \
            const real b = B[0];                                                       \
            for (int64_t i = 0; i < n; i++) { real a = A[i]; o[i] = (EXPR); }          \
        } else {                                                                       \
            for (int64_t i = 0; i < n; i++) {                                          \
                real a = A[i * st[1]], b = B[i * st[2]];                               \
                o[i * st[0]] = (EXPR);                                                 \
            }                                                                          \
        }                                                                              \
    } while (0)

QG_HOT static void binary_fwd_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const binary_ctx *c = vctx;
    QG_FLOAT_DISPATCH(c->dt, {
        switch (c->op) {
        case B_ADD: ZIP_ROW(a + b); break;
        case B_SUB: ZIP_ROW(a - b); break;
        case B_MUL: ZIP_ROW(a * b); break;
        case B_DIV: ZIP_ROW(a / b); break;
        case B_MAX: ZIP_ROW(a != a ? a : (a > b ? a : b)); break; /* NaN propagates */
        case B_MIN: ZIP_ROW(a != a ? a : (a < b ? a : b)); break;
        }
    });
}

/* dst (ptr[0]) += EXPR of g (ptr[1]), a (ptr[2]), b (ptr[3]); same loop as unary */
QG_HOT static void binary_bwd_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const binary_ctx *c = vctx;
    const bool store_ = false;
    QG_FLOAT_DISPATCH(c->dt, {
        /* GRAD_ROW's x and y are a and b here */
        if (c->which == 0) {
            switch (c->op) {
            case B_ADD:
            case B_SUB: GRAD_ROW(g); break;
            case B_MUL: GRAD_ROW(g * y); break;
            case B_DIV: GRAD_ROW(g / y); break;
            case B_MAX: GRAD_ROW(x == y ? g / 2 : (x > y ? g : (real)0)); break;
            case B_MIN: GRAD_ROW(x == y ? g / 2 : (x < y ? g : (real)0)); break;
            }
        } else {
            switch (c->op) {
            case B_ADD: GRAD_ROW(g); break;
            case B_SUB: GRAD_ROW(-g); break;
            case B_MUL: GRAD_ROW(g * x); break;
            case B_DIV: GRAD_ROW(-g * ((x / y) / y)); break;
            case B_MAX: GRAD_ROW(x == y ? g / 2 : (y > x ? g : (real)0)); break;
            case B_MIN: GRAD_ROW(x == y ? g / 2 : (y < x ? g : (real)0)); break;
            }
        }
    });
}

/* Gradient of one input of a broadcasting op, accumulated straight into its grad:
 * in parallel over the rows when shapes match, else by qg__iter_run_reduce (each
 * element of a broadcast input summed by one thread, in the serial order). */
static qg_status binary_grad_for(qg_node *n, int which, qg_row_fn row, void *ctx) {
    qg_tensor *x = n->in[which], *out = n->out;
    if (!qg__wants_grad(x)) return QG_OK;
    qg_tensor *gx = qg__grad_of(x);
    if (!gx) return QG_ENOMEM;
    const bool same = x->ndim == out->ndim && !memcmp(x->shape, out->shape, sizeof(int64_t) * (size_t)x->ndim);
    const qg_tensor *ops[4] = {gx, out->grad, n->in[0], n->in[1]};
    qg_iter it;
    qg__iter_init(&it, 4, ops, out->ndim, out->shape);
    if (same)
        qg__iter_run(&it, row, ctx, true);
    else
        qg__iter_run_reduce(&it, row, ctx);
    return QG_OK;
}

static qg_status binary_backward(qg_node *n) {
    for (int w = 0; w < 2; w++) {
        binary_ctx c = {(binary_op)n->ip[0], n->out->dtype, w};
        if (binary_grad_for(n, w, binary_bwd_row, &c)) return QG_ENOMEM;
    }
    return QG_OK;
}

static qg_tensor *binary(binary_op op, const qg_tensor *a, const qg_tensor *b) {
    const char *name = binary_names[op];
    if (qg__check_same_float(name, a, b)) return NULL;
    int nd;
    int64_t shape[QG_MAX_DIMS];
    if (qg__broadcast_shape(name, a, b, &nd, shape)) return NULL;
    qg_tensor *out = qg__tape_tensor(a->dtype, nd, shape);
    if (!out) return NULL;
    binary_ctx c = {op, a->dtype, 0};
    const qg_tensor *ops[3] = {out, a, b};
    qg_iter it;
    qg__iter_init(&it, 3, ops, nd, shape);
    qg__iter_run(&it, binary_fwd_row, &c, true);
    const qg_tensor *ins[2] = {a, b};
    if (qg__needs_grad(2, ins)) {
        qg_node *n = qg__record(name, binary_backward, out, 2, ins);
        if (!n) return NULL;
        n->ip[0] = op;
    }
    return out;
}

qg_tensor *qg_add(const qg_tensor *a, const qg_tensor *b) { return binary(B_ADD, a, b); }
qg_tensor *qg_sub(const qg_tensor *a, const qg_tensor *b) { return binary(B_SUB, a, b); }
qg_tensor *qg_mul(const qg_tensor *a, const qg_tensor *b) { return binary(B_MUL, a, b); }
qg_tensor *qg_div(const qg_tensor *a, const qg_tensor *b) { return binary(B_DIV, a, b); }
qg_tensor *qg_maximum(const qg_tensor *a, const qg_tensor *b) { return binary(B_MAX, a, b); }
qg_tensor *qg_minimum(const qg_tensor *a, const qg_tensor *b) { return binary(B_MIN, a, b); }

/* ================================================================ where */

/* ptr: out, mask (u8), a, b */
QG_HOT static void where_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    qg_dtype dt = *(qg_dtype *)vctx;
    const uint8_t *m = (const uint8_t *)ptr[1];
    QG_FLOAT_DISPATCH(dt, {
        real *o = (real *)ptr[0];
        const real *A = (const real *)ptr[2], *B = (const real *)ptr[3];
        for (int64_t i = 0; i < n; i++)
            o[i * st[0]] = m[i * st[1]] ? A[i * st[2]] : B[i * st[3]];
    });
}

typedef struct {
    qg_dtype dt;
    int which;
} where_ctx;

/* ptr: dst, g, mask */
QG_HOT static void where_bwd_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const where_ctx *c = vctx;
    const uint8_t *m = (const uint8_t *)ptr[2];
    QG_FLOAT_DISPATCH(c->dt, {
        real *d = (real *)ptr[0];
        const real *g = (const real *)ptr[1];
        for (int64_t i = 0; i < n; i++)
            if ((m[i * st[2]] != 0) == (c->which == 0)) d[i * st[0]] += g[i * st[1]];
    });
}

static qg_status where_backward(qg_node *n) {
    qg_tensor *mask = n->saved[0], *out = n->out;
    for (int w = 0; w < 2; w++) {
        qg_tensor *x = n->in[w];
        if (!qg__wants_grad(x)) continue;
        qg_tensor *gx = qg__grad_of(x);
        if (!gx) return QG_ENOMEM;
        bool same = x->ndim == out->ndim && !memcmp(x->shape, out->shape, sizeof(int64_t) * (size_t)x->ndim);
        where_ctx c = {x->dtype, w};
        const qg_tensor *ops[3] = {gx, out->grad, mask};
        qg_iter it;
        qg__iter_init(&it, 3, ops, out->ndim, out->shape);
        if (same) /* as binary_grad_for */
            qg__iter_run(&it, where_bwd_row, &c, true);
        else
            qg__iter_run_reduce(&it, where_bwd_row, &c);
    }
    return QG_OK;
}

qg_tensor *qg_where(const qg_tensor *mask, const qg_tensor *a, const qg_tensor *b) {
    if (!mask) return qg__err(QG_EINVAL, "where: mask is NULL"), NULL;
    if (mask->dtype != QG_U8)
        return qg__err(QG_EDTYPE, "where: mask must be u8, got %s", qg_dtype_name(mask->dtype)), NULL;
    if (qg__check_same_float("where", a, b)) return NULL;
    int nd, nd2;
    int64_t s1[QG_MAX_DIMS], shape[QG_MAX_DIMS];
    if (qg__broadcast_shape("where", a, b, &nd, s1)) return NULL;
    qg_tensor ab = {.ndim = nd};
    memcpy(ab.shape, s1, sizeof s1);
    if (qg__broadcast_shape("where", mask, &ab, &nd2, shape)) return NULL;
    qg_tensor *out = qg__tape_tensor(a->dtype, nd2, shape);
    if (!out) return NULL;
    const qg_tensor *ops[4] = {out, mask, a, b};
    qg_iter it;
    qg__iter_init(&it, 4, ops, nd2, shape);
    qg_dtype dt = a->dtype;
    qg__iter_run(&it, where_row, &dt, true);
    const qg_tensor *ins[2] = {a, b};
    if (qg__needs_grad(2, ins)) {
        qg_node *n = qg__record("where", where_backward, out, 2, ins);
        if (!n) return NULL;
        n->saved[0] = (qg_tensor *)mask;
    }
    return out;
}

/* ================================================================ comparisons */

typedef struct {
    int op; /* 0 gt, 1 lt, 2 eq */
    qg_dtype dt;
} cmp_ctx;

/* ptr: out (u8), a, b — any dtype, compared as double (exact for f32, f64, i32, u8, i8) */
static void cmp_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const cmp_ctx *c = vctx;
    int64_t es = (int64_t)qg_dtype_size(c->dt);
    uint8_t *o = (uint8_t *)ptr[0];
    for (int64_t i = 0; i < n; i++) {
        const char *pa = ptr[1] + i * st[1] * es, *pb = ptr[2] + i * st[2] * es;
        bool r;
        if (c->dt == QG_I64) {
            int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
            r = c->op == 0 ? a > b : c->op == 1 ? a < b : a == b;
        } else {
            double a = qg__load(pa, c->dt), b = qg__load(pb, c->dt);
            r = c->op == 0 ? a > b : c->op == 1 ? a < b : a == b;
        }
        o[i * st[0]] = r;
    }
}

static qg_tensor *compare(int op, const char *name, const qg_tensor *a, const qg_tensor *b) {
    if (!a || !b) return qg__err_null(name), NULL;
    if (a->quant || b->quant)
        return qg__err(QG_EDTYPE, "%s: quantized tensors are not compared (%s vs %s); dequantize first", name,
                       qg__type_name(a), qg__type_name(b)), NULL;
    if (a->dtype != b->dtype)
        return qg__err(QG_EDTYPE, "%s: dtypes differ (%s vs %s)", name, qg_dtype_name(a->dtype),
                       qg_dtype_name(b->dtype)), NULL;
    int nd;
    int64_t shape[QG_MAX_DIMS];
    if (qg__broadcast_shape(name, a, b, &nd, shape)) return NULL;
    qg_tensor *out = qg__tape_tensor(QG_U8, nd, shape);
    if (!out) return NULL;
    cmp_ctx c = {op, a->dtype};
    const qg_tensor *ops[3] = {out, a, b};
    qg_iter it;
    qg__iter_init(&it, 3, ops, nd, shape);
    qg__iter_run(&it, cmp_row, &c, true);
    return out;
}

qg_tensor *qg_gt(const qg_tensor *a, const qg_tensor *b) { return compare(0, "gt", a, b); }
qg_tensor *qg_lt(const qg_tensor *a, const qg_tensor *b) { return compare(1, "lt", a, b); }
qg_tensor *qg_eq(const qg_tensor *a, const qg_tensor *b) { return compare(2, "eq", a, b); }

/* ================================================================ cast */

static qg_status cast_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    qg_tensor *gx = qg__grad_of(x);
    /* convert the gradient back to x's dtype and accumulate */
    qg_tensor *tmp = gx ? qg__tape_tensor(x->dtype, x->ndim, x->shape) : NULL;
    if (!tmp) return QG_ENOMEM;
    qg_tensor_copy_(tmp, n->out->grad);
    qg__unbroadcast_add(gx, tmp);
    return QG_OK;
}

qg_tensor *qg_to_dtype(const qg_tensor *x, qg_dtype dt) {
    if (!x) return qg__err_null("to_dtype"), NULL;
    if ((unsigned)dt >= QG_NDTYPES) return qg__err(QG_EDTYPE, "to_dtype: unknown dtype %d", (int)dt), NULL;
    if (x->quant)
        return qg__err(QG_EDTYPE, "to_dtype: %s is quantized; qg_dequantize gives its real values, qg_int_repr its "
                       "integers", qg__type_name(x)), NULL;
    qg_tensor *out = qg__tape_tensor(dt, x->ndim, x->shape);
    if (!out || qg_tensor_copy_(out, x)) return NULL;
    if (qg__is_float(dt) && qg__is_float(x->dtype) && qg__needs_grad(1, &x))
        if (!qg__record("to_dtype", cast_backward, out, 1, &x)) return NULL;
    return out;
}
