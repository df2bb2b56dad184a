/* Reductions: sum, mean, var over a set of dims; max and argmax along one dim.
 * The input is laid out as (K kept, R reduced) — in place when the reduced dims are
 * trailing and contiguous, else through one copy — and each of the K rows is reduced
 * with a double accumulator, so results do not depend on the thread count. */
#include <math.h>

#include "kernels/isa.h"
#include "op_internal.h"

/* Marks the dims to reduce; ndims == 0 means all. */
static qg_status parse_dims(const char *op, const qg_tensor *x, int ndims, const int *dims, bool *red) {
    for (int d = 0; d < QG_MAX_DIMS; d++) red[d] = ndims == 0;
    if (ndims < 0 || ndims > x->ndim || (ndims > 0 && !dims))
        return qg__err(QG_EINVAL, "%s: bad dim list (%d dims for a %d-d tensor)", op, ndims, x->ndim);
    for (int i = 0; i < ndims; i++) {
        int d;
        qg_status st = qg__dim(op, dims[i], x->ndim, &d);
        if (st) return st;
        if (x->ndim == 0) continue;
        if (red[d]) return qg__err(QG_EINVAL, "%s: dim %d listed twice", op, dims[i]);
        red[d] = true;
    }
    return QG_OK;
}

/* Output shape for the reduction (keepdim: reduced dims become 1). */
static int reduced_shape(const qg_tensor *x, const bool *red, bool keepdim, int64_t *shape) {
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!red[d]) shape[nd++] = x->shape[d];
        else if (keepdim) shape[nd++] = 1;
    }
    return nd;
}

/* x viewed with keepdim shape, as a header over `t`'s data (t contiguous, reduced shape). */
static qg_tensor keepdim_view(const qg_tensor *t, const qg_tensor *x, const bool *red) {
    qg_tensor v = *t;
    v.ndim = x->ndim;
    for (int d = 0; d < x->ndim; d++) v.shape[d] = red[d] ? 1 : x->shape[d];
    qg__contig_strides(v.ndim, v.shape, v.strides);
    return v;
}

/* ---------------------------------------------------------------- sum / mean */

/* (K, R) -> (K): scale * sum of each row */
QG_HOT static void row_sums(qg_dtype dt, const char *src, int64_t K, int64_t R, double scale, char *dst) {
    int nt = qg__threads_for(K * R);
    (void)nt; /* unused without OpenMP */
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)src;
        real *o = (real *)dst;
_Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")
        for (int64_t k = 0; k < K; k++) {
            double s = 0;
            for (int64_t r = 0; r < R; r++) s += x[k * R + r];
            o[k] = (real)(s * scale);
        }
    });
}

/* Backward of sum and mean: gx += scale * g, g broadcast over the reduced dims. */
static qg_status sum_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    bool red[QG_MAX_DIMS];
    for (int d = 0; d < QG_MAX_DIMS; d++) red[d] = n->ip[d];
    qg_tensor gv = keepdim_view(n->out->grad, x, red);
    if (n->p[0] != 1.0) {
        qg_tensor *s = qg__tape_tensor(gv.dtype, gv.ndim, gv.shape);
        if (!s) return QG_ENOMEM;
        int64_t m = qg_tensor_numel(s);
        QG_FLOAT_DISPATCH(s->dtype, {
            const real *g = (const real *)qg__data(&gv);
            real *o = (real *)qg__data(s);
            for (int64_t i = 0; i < m; i++) o[i] = (real)(g[i] * n->p[0]);
        });
        gv = *s;
    }
    qg_tensor *gx = qg__grad_of(x);
    if (!gx) return QG_ENOMEM;
    qg__broadcast_add(gx, &gv);
    return QG_OK;
}

static qg_tensor *sum_like(const char *op, const qg_tensor *x, int ndims, const int *dims, bool keepdim, bool mean) {
    bool red[QG_MAX_DIMS];
    if (qg__check_float(op, x) || parse_dims(op, x, ndims, dims, red)) return NULL;
    int64_t shape[QG_MAX_DIMS], K, R;
    int nd = reduced_shape(x, red, keepdim, shape);
    const char *src = qg__kr_layout(x, red, &K, &R);
    if (!src) return NULL;
    qg_tensor *out = qg__tape_tensor(x->dtype, nd, shape);
    if (!out) return NULL;
    double scale = mean ? 1.0 / (double)R : 1.0;
    if (mean && R == 0) scale = NAN; /* mean of nothing, as PyTorch: nan */
    row_sums(x->dtype, src, K, R, scale, qg__data(out));
    if (qg__needs_grad(1, &x)) {
        qg_node *n = qg__record(op, sum_backward, out, 1, &x);
        if (!n) return NULL;
        for (int d = 0; d < QG_MAX_DIMS; d++) n->ip[d] = red[d];
        n->p[0] = scale;
    }
    return out;
}

qg_tensor *qg_sum(const qg_tensor *x, int ndims, const int *dims, bool keepdim) {
    return sum_like("sum", x, ndims, dims, keepdim, false);
}

qg_tensor *qg_mean(const qg_tensor *x, int ndims, const int *dims, bool keepdim) {
    return sum_like("mean", x, ndims, dims, keepdim, true);
}

/* ---------------------------------------------------------------- var */

typedef struct {
    qg_dtype dt;
    double c; /* 2 / (R - correction) */
} var_ctx;

/* ptr: gx, g (broadcast), x, mean (broadcast): gx += c * g * (x - mean) */
static void var_bwd_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const var_ctx *c = vctx;
    QG_FLOAT_DISPATCH(c->dt, {
        real *d = (real *)ptr[0];
        const real *g = (const real *)ptr[1], *x = (const real *)ptr[2], *m = (const real *)ptr[3];
        const real cc = (real)c->c;
        for (int64_t i = 0; i < n; i++) d[i * st[0]] += cc * g[i * st[1]] * (x[i * st[2]] - m[i * st[3]]);
    });
}

static qg_status var_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    bool red[QG_MAX_DIMS];
    for (int d = 0; d < QG_MAX_DIMS; d++) red[d] = n->ip[d];
    qg_tensor gv = keepdim_view(n->out->grad, x, red), mv = keepdim_view(n->saved[0], x, red);
    var_ctx c = {x->dtype, n->p[0]};
    qg_tensor *gx = qg__grad_of(x);
    if (!gx) return QG_ENOMEM;
    const qg_tensor *ops[4] = {gx, &gv, x, &mv};
    qg_iter it;
    qg__iter_init(&it, 4, ops, x->ndim, x->shape);
    qg__iter_run(&it, var_bwd_row, &c, true);
    return QG_OK;
}

qg_tensor *qg_var(const qg_tensor *x, int ndims, const int *dims, bool unbiased, bool keepdim) {
    bool red[QG_MAX_DIMS];
    if (qg__check_float("var", x) || parse_dims("var", x, ndims, dims, red)) return NULL;
    int64_t shape[QG_MAX_DIMS], K, R;
    int nd = reduced_shape(x, red, keepdim, shape);
    const char *src = qg__kr_layout(x, red, &K, &R);
    if (!src) return NULL;
    qg_tensor *out = qg__tape_tensor(x->dtype, nd, shape);
    qg_tensor *mean = qg__tape_tensor(x->dtype, nd, shape);
    if (!out || !mean) return NULL;
    double denom = (double)R - (unbiased ? 1.0 : 0.0);
    int nt = qg__threads_for(K * R);
    (void)nt; /* unused without OpenMP */
    QG_FLOAT_DISPATCH(x->dtype, {
        const real *xs = (const real *)src;
        real *o = (real *)qg__data(out), *mo = (real *)qg__data(mean);
_Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")
        for (int64_t k = 0; k < K; k++) { /* two passes: mean, then squared deviations */
            double s = 0, ss = 0;
            for (int64_t r = 0; r < R; r++) s += xs[k * R + r];
            double m = s / (double)R;
            for (int64_t r = 0; r < R; r++) {
                double dv = xs[k * R + r] - m;
                ss += dv * dv;
            }
            o[k] = (real)(denom > 0 ? ss / denom : NAN); /* PyTorch: nan when R <= correction */
            mo[k] = (real)m;
        }
    });
    if (qg__needs_grad(1, &x)) {
        qg_node *n = qg__record("var", var_backward, out, 1, &x);
        if (!n) return NULL;
        for (int d = 0; d < QG_MAX_DIMS; d++) n->ip[d] = red[d];
        n->saved[0] = mean;
        n->p[0] = 2.0 / denom;
    }
    return out;
}

/* ---------------------------------------------------------------- max / argmax */

/* (K, R) rows -> value and first index of the maximum (NaN counts as maximal) */
QG_HOT static void row_max(qg_dtype dt, const char *src, int64_t K, int64_t R, char *val, int64_t *idx) {
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)src;
        for (int64_t k = 0; k < K; k++) {
            const real *row = x + k * R;
            int64_t best = 0;
            for (int64_t r = 1; r < R; r++) {
                if (row[best] != row[best]) break;
                if (row[r] > row[best] || row[r] != row[r]) best = r;
            }
            if (val) ((real *)val)[k] = row[best];
            idx[k] = best;
        }
    });
}

/* gx[..., idx[k], ...] += g[k] for every output element k */
static qg_status max_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    qg_tensor *gx = qg__grad_of(x), *g = n->out->grad, *idx = n->saved[0];
    if (!gx) return QG_ENOMEM;
    int dim = (int)n->ip[0];
    /* walk output elements in C order over x's shape with dim removed */
    int64_t K = qg_tensor_numel(g), inner = 1;
    for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
    int64_t len = x->ndim ? x->shape[dim] : 1;
    const int64_t *ix = (const int64_t *)qg__data(idx);
    QG_FLOAT_DISPATCH(x->dtype, {
        real *d = (real *)qg__data(gx);
        const real *gg = (const real *)qg__data(g);
        for (int64_t k = 0; k < K; k++) {
            int64_t o = k / inner, i = k % inner;
            d[(o * len + ix[k]) * inner + i] += gg[k];
        }
    });
    return QG_OK;
}

static qg_tensor *max_impl(const char *op, const qg_tensor *x, int dim, bool keepdim, qg_tensor **indices, bool values) {
    if (indices) *indices = NULL;
    if (qg__check_float(op, x)) return NULL;
    int d;
    if (qg__dim(op, dim, x->ndim, &d)) return NULL;
    bool red[QG_MAX_DIMS] = {0};
    if (x->ndim) red[d] = true;
    if (x->ndim && x->shape[d] == 0)
        return qg__err(QG_ESHAPE, "%s: cannot take the max of an empty dim %d", op, dim), NULL;
    int64_t shape[QG_MAX_DIMS], K, R;
    int nd = reduced_shape(x, red, keepdim, shape);
    const char *src = qg__kr_layout(x, red, &K, &R);
    if (!src) return NULL;
    qg_tensor *idx = qg__tape_tensor(QG_I64, nd, shape);
    qg_tensor *out = values ? qg__tape_tensor(x->dtype, nd, shape) : NULL;
    if (!idx || (values && !out)) return NULL;
    row_max(x->dtype, src, K, R, out ? qg__data(out) : NULL, (int64_t *)qg__data(idx));
    if (indices) *indices = idx;
    if (!values) return idx;
    if (qg__needs_grad(1, &x)) {
        qg_node *n = qg__record(op, max_backward, out, 1, &x);
        if (!n) return NULL;
        n->ip[0] = d;
        n->saved[0] = idx;
    }
    return out;
}

qg_tensor *qg_max(const qg_tensor *x, int dim, bool keepdim, qg_tensor **indices) {
    return max_impl("max", x, dim, keepdim, indices, true);
}

qg_tensor *qg_argmax(const qg_tensor *x, int dim, bool keepdim) {
    return max_impl("argmax", x, dim, keepdim, NULL, false);
}
