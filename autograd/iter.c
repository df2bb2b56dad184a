/* Strided iteration shared by elementwise ops, copies and broadcasting's backward.
 * Operands are viewed at one shape; dims of size 1 are dropped and dims that are
 * contiguous for every operand are merged, so a contiguous tensor is one long row. */
#include "op_internal.h"

void qg__iter_init(qg_iter *it, int nops, const qg_tensor *const *ops, int ndim,
                   const int64_t *shape) {
    QG_ASSERT(nops >= 1 && nops <= QG_ITER_MAX && ndim <= QG_MAX_DIMS);
    int64_t st[QG_ITER_MAX][QG_MAX_DIMS];
    it->nops = nops;
    for (int k = 0; k < nops; k++) {
        qg__broadcast_strides(ops[k], ndim, shape, st[k]);
        it->base[k] = qg__data(ops[k]);
        it->esize[k] = qg_dtype_size(ops[k]->dtype);
    }
    /* drop size-1 dims, then merge a dim into the next when strides allow */
    int nd = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1) continue;
        if (nd > 0) {
            bool merge = true;
            for (int k = 0; k < nops; k++)
                if (it->strides[k][nd - 1] != st[k][i] * shape[i]) merge = false;
            if (merge) {
                it->shape[nd - 1] *= shape[i];
                for (int k = 0; k < nops; k++) it->strides[k][nd - 1] = st[k][i];
                continue;
            }
        }
        it->shape[nd] = shape[i];
        for (int k = 0; k < nops; k++) it->strides[k][nd] = st[k][i];
        nd++;
    }
    if (nd == 0) { /* scalar, or all dims of size 1 (or 0 elements, caught in run) */
        it->shape[0] = qg__numel(ndim, shape) ? 1 : 0;
        for (int k = 0; k < nops; k++) it->strides[k][0] = 1;
        nd = 1;
    }
    it->ndim = nd;
}

/* rows [r0, r1) of the iteration, each of length shape[ndim-1] */
static void run_rows(const qg_iter *it, int64_t r0, int64_t r1, qg_row_fn fn, void *ctx) {
    int outer = it->ndim - 1;
    int64_t n = it->shape[outer];
    int64_t inner_st[QG_ITER_MAX], idx[QG_MAX_DIMS];
    char *ptr[QG_ITER_MAX];
    for (int k = 0; k < it->nops; k++) inner_st[k] = it->strides[k][outer];
    /* decompose r0 into an index over the outer dims */
    int64_t r = r0;
    for (int d = outer - 1; d >= 0; d--) {
        idx[d] = r % it->shape[d];
        r /= it->shape[d];
    }
    for (int64_t row = r0; row < r1; row++) {
        for (int k = 0; k < it->nops; k++) {
            int64_t off = 0;
            for (int d = 0; d < outer; d++) off += idx[d] * it->strides[k][d];
            ptr[k] = it->base[k] + off * (int64_t)it->esize[k];
        }
        fn(n, ptr, inner_st, ctx);
        for (int d = outer - 1; d >= 0; d--) {
            if (++idx[d] < it->shape[d]) break;
            idx[d] = 0;
        }
    }
}

void qg__iter_run(const qg_iter *it, qg_row_fn fn, void *ctx, bool parallel) {
    int64_t rows = 1;
    for (int d = 0; d < it->ndim - 1; d++) rows *= it->shape[d];
    int64_t total = rows * it->shape[it->ndim - 1];
    if (total == 0) return;
    int nt = parallel ? qg__threads_for(total) : 1;
    if (nt <= 1 || rows == 1) {
        if (rows == 1 && nt > 1) {
            /* one long row: split it into nt pieces */
            int64_t n = it->shape[it->ndim - 1];
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int t = 0; t < nt; t++) {
                int64_t a = qg__share(n, t, nt), b = qg__share(n, t + 1, nt);
                char *ptr[QG_ITER_MAX];
                int64_t st[QG_ITER_MAX];
                for (int k = 0; k < it->nops; k++) {
                    st[k] = it->strides[k][it->ndim - 1];
                    ptr[k] = it->base[k] + a * st[k] * (int64_t)it->esize[k];
                }
                if (b > a) fn(b - a, ptr, st, ctx);
            }
            return;
        }
        run_rows(it, 0, rows, fn, ctx);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) run_rows(it, rows * t / nt, rows * (t + 1) / nt, fn, ctx);
}

/* Operand 0 accumulates (strides 0 where it is broadcast): the threads split a dim
 * along which operand 0 moves (the longest outer one), so each of its elements is
 * written by one thread, rows in the serial order. One thread if there is none. */
void qg__iter_run_reduce(const qg_iter *it, qg_row_fn fn, void *ctx) {
    int d = -1;
    int64_t rows = 1;
    for (int i = 0; i < it->ndim - 1; i++) {
        rows *= it->shape[i];
        if (it->strides[0][i] != 0 && (d < 0 || it->shape[i] > it->shape[d])) d = i;
    }
    const int64_t total = rows * it->shape[it->ndim - 1];
    if (total == 0) return;
    int nt = d >= 0 ? qg__threads_for(total) : 1;
    if (d >= 0 && nt > it->shape[d]) nt = (int)it->shape[d];
    if (nt <= 1) {
        run_rows(it, 0, rows, fn, ctx);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        const int64_t lo = qg__share(it->shape[d], t, nt), hi = qg__share(it->shape[d], t + 1, nt);
        qg_iter sub = *it;
        sub.shape[d] = hi - lo;
        for (int k = 0; k < it->nops; k++) sub.base[k] += lo * it->strides[k][d] * (int64_t)it->esize[k];
        if (hi > lo) run_rows(&sub, 0, rows / it->shape[d] * (hi - lo), fn, ctx);
    }
}

/* ------------------------------------------------------------- unbroadcast */

/* ptr[0] = acc row (stride 0 when this dim was broadcast), ptr[1] = grad row */
static void acc_row(int64_t n, char **ptr, const int64_t *st, void *ctx) {
    qg_dtype dt = *(qg_dtype *)ctx;
    QG_FLOAT_DISPATCH(dt, {
        real *a = (real *)ptr[0];
        const real *g = (const real *)ptr[1];
        if (st[0] == 0) { /* a row summed into one element: 8 partial sums, not one serial chain */
            real p[8] = {0}, s = 0;
            int64_t i = 0;
            if (st[1] == 1)
                for (; i + 8 <= n; i += 8)
                    for (int j = 0; j < 8; j++) p[j] += g[i + j];
            for (; i < n; i++) s += g[i * st[1]];
            a[0] += ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7])) + s;
        } else if (st[0] == 1 && st[1] == 1) {
            for (int64_t i = 0; i < n; i++) a[i] += g[i];
        } else {
            for (int64_t i = 0; i < n; i++) a[i * st[0]] += g[i * st[1]];
        }
    });
}

void qg__unbroadcast_add(qg_tensor *acc, const qg_tensor *grad) {
    QG_ASSERT(acc->dtype == grad->dtype && acc->ndim <= grad->ndim);
    qg_iter it;
    const qg_tensor *ops[2] = {acc, grad};
    qg__iter_init(&it, 2, ops, grad->ndim, grad->shape);
    /* rows write disjoint parts of acc only if no dim of acc was broadcast */
    bool disjoint = true;
    for (int d = 0; d < it.ndim; d++)
        if (it.strides[0][d] == 0) disjoint = false;
    qg_dtype dt = acc->dtype;
    if (disjoint)
        qg__iter_run(&it, acc_row, &dt, true);
    else
        qg__iter_run_reduce(&it, acc_row, &dt);
}

void qg__broadcast_add(qg_tensor *dst, const qg_tensor *src) {
    QG_ASSERT(dst->dtype == src->dtype && src->ndim <= dst->ndim);
    qg_iter it;
    const qg_tensor *ops[2] = {dst, src};
    qg__iter_init(&it, 2, ops, dst->ndim, dst->shape);
    qg_dtype dt = dst->dtype;
    qg__iter_run(&it, acc_row, &dt, true);
}

/* ------------------------------------------------------------- (K, R) layouts */

qg_tensor qg__permute_last(const qg_tensor *x, const bool *red, int64_t *K, int64_t *R) {
    int perm[QG_MAX_DIMS], np = 0;
    int64_t k = 1, r = 1;
    for (int d = 0; d < x->ndim; d++)
        if (!red[d]) perm[np++] = d, k *= x->shape[d];
    for (int d = 0; d < x->ndim; d++)
        if (red[d]) perm[np++] = d, r *= x->shape[d];
    qg_tensor p = *x;
    for (int i = 0; i < x->ndim; i++) p.shape[i] = x->shape[perm[i]], p.strides[i] = x->strides[perm[i]];
    if (K) *K = k;
    if (R) *R = r;
    return p;
}

const char *qg__kr_layout(const qg_tensor *x, const bool *red, int64_t *K, int64_t *R) {
    qg_tensor p = qg__permute_last(x, red, K, R);
    if (qg_tensor_is_contiguous(&p)) return qg__data(&p);
    qg_tensor *c = qg__tape_tensor(x->dtype, p.ndim, p.shape);
    if (!c) return NULL;
    qg_tensor_copy_(c, &p);
    return qg__data(c);
}
