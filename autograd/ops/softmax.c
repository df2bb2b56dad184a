/* softmax and log_softmax along one dim, max-shifted for stability, as PyTorch's
 * CPU kernels compute them. Rows along dim are processed as a contiguous (K, R)
 * matrix: directly when dim is last, else through a permuted copy. */
#include <math.h>

#include "kernels/isa.h"
#include "op_internal.h"

/* Destination rows: out's own data when dim is last, else a temporary (K, R) that
 * place_rows() writes (or adds) into dst through a permuted view. */
static char *rows_buffer(qg_tensor *dst, const bool *red) {
    qg_tensor p = qg__permute_last(dst, red, NULL, NULL);
    if (qg_tensor_is_contiguous(&p)) return qg__data(&p);
    qg_tensor *t = qg__tape_tensor(dst->dtype, p.ndim, p.shape);
    return t ? qg__data(t) : NULL;
}

static void place_rows(qg_tensor *dst, const bool *red, char *rows, bool add) {
    qg_tensor p = qg__permute_last(dst, red, NULL, NULL);
    if (qg__data(&p) == rows) return; /* computed in place */
    qg_storage s = {rows, 0, 0, true};
    qg_tensor src = p;
    src.storage = &s;
    src.offset = 0;
    qg__contig_strides(p.ndim, p.shape, src.strides);
    if (add) qg__broadcast_add(&p, &src);
    else qg_tensor_copy_(&p, &src);
}

/* x (K, R) -> y (K, R). log: y = (x - max) - log(sum(exp(x - max)));
 * else y = exp(x - max) * (1 / sum(exp(x - max))). */
QG_HOT static void softmax_rows(qg_dtype dt, const char *src, int64_t K, int64_t R, char *dst, bool log_) {
    int nt = qg__threads_for(K * R * 8);
    (void)nt; /* unused without OpenMP */
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)src;
        real *y = (real *)dst;
_Pragma("omp parallel for num_threads(nt) schedule(static) if (nt > 1)")
        for (int64_t k = 0; k < K; k++) {
            const real *xr = x + k * R;
            real *yr = y + k * R;
            real mx = xr[0];
            for (int64_t r = 1; r < R; r++) mx = xr[r] > mx || xr[r] != xr[r] ? xr[r] : mx;
            for (int64_t r = 0; r < R; r++) yr[r] = xr[r] - mx;
            if (sizeof(real) == 4) qg__vexp_f32(R, (const float *)yr, (float *)yr);
            else qg__vexp_f64(R, (const double *)yr, (double *)yr);
            double s = 0;
            for (int64_t r = 0; r < R; r++) s += yr[r];
            if (log_) {
                real ls = (real)log(s); /* (x - max) - log(s): keeps x - max exact */
                for (int64_t r = 0; r < R; r++) yr[r] = (xr[r] - mx) - ls;
            } else {
                real inv = (real)(1.0 / s);
                for (int64_t r = 0; r < R; r++) yr[r] *= inv;
            }
        }
    });
}

/* softmax: gx = y * (g - sum(g * y)); log_softmax: gx = g - exp(y) * sum(g) */
static qg_status softmax_backward(qg_node *n) {
    qg_tensor *x = n->in[0], *y = n->out;
    if (!qg__wants_grad(x)) return QG_OK;
    bool log_ = n->ip[1], red[QG_MAX_DIMS] = {0};
    if (x->ndim) red[n->ip[0]] = true;
    int64_t K, R;
    const char *ys = qg__kr_layout(y, red, &K, &R), *gs = qg__kr_layout(y->grad, red, &K, &R);
    qg_tensor *gx = qg__grad_of(x);
    qg_tensor *tmp = qg__tape_tensor(x->dtype, 2, (int64_t[]){K, R});
    if (!ys || !gs || !gx || !tmp) return QG_ENOMEM;
    QG_FLOAT_DISPATCH(x->dtype, {
        const real *Y = (const real *)ys, *G = (const real *)gs;
        real *D = (real *)qg__data(tmp);
        for (int64_t k = 0; k < K; k++) {
            double s = 0;
            for (int64_t r = 0; r < R; r++) s += log_ ? G[k * R + r] : G[k * R + r] * Y[k * R + r];
            real sr = (real)s;
            for (int64_t r = 0; r < R; r++) {
                int64_t i = k * R + r;
                D[i] = log_ ? G[i] - exp(Y[i]) * sr : Y[i] * (G[i] - sr);
            }
        }
    });
    place_rows(gx, red, qg__data(tmp), true);
    return QG_OK;
}

static qg_tensor *softmax_impl(const char *op, const qg_tensor *x, int dim, bool log_) {
    int d;
    if (qg__check_float(op, x) || qg__dim(op, dim, x->ndim, &d)) return NULL;
    bool red[QG_MAX_DIMS] = {0};
    if (x->ndim) red[d] = true;
    int64_t K, R;
    const char *src = qg__kr_layout(x, red, &K, &R);
    qg_tensor *out = qg__tape_tensor(x->dtype, x->ndim, x->shape);
    char *rows = out ? rows_buffer(out, red) : NULL;
    if (!src || !rows) return NULL;
    if (R > 0) softmax_rows(x->dtype, src, K, R, rows, log_);
    place_rows(out, red, rows, false);
    if (qg__needs_grad(1, &x)) {
        qg_node *n = qg__record(op, softmax_backward, out, 1, &x);
        if (!n) return NULL;
        n->ip[0] = d;
        n->ip[1] = log_;
    }
    return out;
}

qg_tensor *qg_softmax(const qg_tensor *x, int dim) { return softmax_impl("softmax", x, dim, false); }
qg_tensor *qg_log_softmax(const qg_tensor *x, int dim) { return softmax_impl("log_softmax", x, dim, true); }
