/* matmul (2-D and batched 3-D) and linear, on the packed GEMM. Operands are used in
 * place through their strides: a transposed view costs nothing. */
#include "op_internal.h"

/* A batch of matrices: element (b, i, j) at data[b*bs + i*rs + j*cs] (in elements). */
typedef struct {
    int64_t batch, rows, cols, bs, rs, cs;
    char *data;
    size_t es;
} mats;

static mats as_mats(const qg_tensor *t) {
    mats m = {1, t->shape[t->ndim - 2], t->shape[t->ndim - 1], 0, t->strides[t->ndim - 2],
              t->strides[t->ndim - 1], qg__data(t), qg_dtype_size(t->dtype)};
    if (t->ndim == 3) {
        m.batch = t->shape[0];
        m.bs = t->shape[0] == 1 ? 0 : t->strides[0];
    }
    return m;
}

static char *mat_at(const mats *m, int64_t b) {
    return m->data + (m->batch == 1 ? 0 : b * m->bs) * (int64_t)m->es;
}

/* C[b] (+)= op(A[b]) op(B[b]) for b < nb; ta/tb swap an operand's rows and columns. */
static void batched_gemm(qg_dtype dt, int64_t nb, const mats *A, bool ta, const mats *B, bool tb,
                         const mats *C, double beta) {
    int64_t m = ta ? A->cols : A->rows, k = ta ? A->rows : A->cols, n = tb ? B->rows : B->cols;
    for (int64_t b = 0; b < nb; b++)
        qg__gemm(dt, m, n, k, mat_at(A, b), ta ? A->cs : A->rs, ta ? A->rs : A->cs, mat_at(B, b),
             tb ? B->cs : B->rs, tb ? B->rs : B->cs, beta, mat_at(C, b), C->rs, C->cs);
}

/* A 3-D operand against a shared 2-D one is one tall GEMM when its batch and row
 * dims merge: (B, m, k) -> (B*m, k). */
static bool fold_rows(mats *a) {
    if (a->batch == 1 || a->bs != a->rows * a->rs) return false;
    a->rows *= a->batch;
    a->batch = 1;
    a->bs = 0;
    return true;
}

static qg_status matmul_backward(qg_node *n) {
    qg_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
    mats G = as_mats(out->grad);
    int64_t nb = G.batch;
    mats A = as_mats(a), B = as_mats(b);
    if (qg__wants_grad(a)) { /* dA = dC B^T, summed over a broadcast batch */
        qg_tensor *ga = qg__grad_of(a);
        if (!ga) return QG_ENOMEM;
        mats dA = as_mats(ga);
        if (B.batch == 1 && nb > 1 && dA.batch == nb) {
            mats g2 = G, d2 = dA;
            fold_rows(&g2), fold_rows(&d2);
            batched_gemm(a->dtype, 1, &g2, false, &B, true, &d2, 1.0);
        } else {
            batched_gemm(a->dtype, nb, &G, false, &B, true, &dA, 1.0);
        }
    }
    if (qg__wants_grad(b)) { /* dB = A^T dC */
        qg_tensor *gb = qg__grad_of(b);
        if (!gb) return QG_ENOMEM;
        mats dB = as_mats(gb);
        if (dB.batch == 1 && nb > 1) {
            mats a2 = A, g2 = G;
            if (A.batch == nb && fold_rows(&a2) && fold_rows(&g2)) {
                batched_gemm(b->dtype, 1, &a2, true, &g2, false, &dB, 1.0);
                return QG_OK;
            }
        }
        batched_gemm(b->dtype, nb, &A, true, &G, false, &dB, 1.0);
    }
    return QG_OK;
}

qg_tensor *qg_matmul(const qg_tensor *a, const qg_tensor *b) {
    char x[128], y[128];
    if (qg__check_same_float("matmul", a, b)) return NULL;
    if (a->ndim < 2 || a->ndim > 3 || b->ndim < 2 || b->ndim > 3)
        return qg__err(QG_ESHAPE, "matmul: expected 2-D or 3-D operands, got %s and %s",
                       qg_shape_str(a, x, sizeof x), qg_shape_str(b, y, sizeof y)), NULL;
    mats A = as_mats(a), B = as_mats(b);
    if (A.cols != B.rows)
        return qg__err(QG_ESHAPE, "matmul: inner dims differ: %s @ %s (%lld vs %lld)",
                       qg_shape_str(a, x, sizeof x), qg_shape_str(b, y, sizeof y),
                       (long long)A.cols, (long long)B.rows), NULL;
    if (A.batch != B.batch && A.batch != 1 && B.batch != 1)
        return qg__err(QG_ESHAPE, "matmul: batch dims %lld and %lld do not broadcast (%s @ %s)",
                       (long long)A.batch, (long long)B.batch, qg_shape_str(a, x, sizeof x),
                       qg_shape_str(b, y, sizeof y)), NULL;
    int64_t nb = A.batch > B.batch ? A.batch : B.batch;
    int nd = (a->ndim == 3 || b->ndim == 3) ? 3 : 2;
    int64_t shape[3] = {nb, A.rows, B.cols};
    qg_tensor *out = qg__tape_tensor(a->dtype, nd, nd == 3 ? shape : shape + 1);
    if (!out) return NULL;
    mats C = as_mats(out);
    mats A2 = A, C2 = C;
    if (B.batch == 1 && fold_rows(&A2) && fold_rows(&C2))
        batched_gemm(a->dtype, 1, &A2, false, &B, false, &C2, 0.0);
    else
        batched_gemm(a->dtype, nb, &A, false, &B, false, &C, 0.0);
    const qg_tensor *ins[2] = {a, b};
    if (qg__needs_grad(2, ins) && !qg__record("matmul", matmul_backward, out, 2, ins)) return NULL;
    return out;
}

/* ---------------------------------------------------------------- linear */

/* x (..., in) as a matrix (rows, in) with row stride rs, if its leading dims merge. */
static bool lead_rows(const qg_tensor *x, int64_t *rows, int64_t *rs) {
    int last = x->ndim - 1;
    int64_t r = 1, s = 0;
    bool first = true;
    for (int d = last - 1; d >= 0; d--) {
        if (x->shape[d] == 1) continue;
        if (first) s = x->strides[d], first = false;
        else if (x->strides[d] != s * r) return false;
        r *= x->shape[d];
    }
    *rows = r;
    *rs = first ? x->shape[last] * (x->strides[last] ? x->strides[last] : 1) : s;
    return true;
}

static qg_status linear_backward(qg_node *n) {
    qg_tensor *x = n->in[0], *w = n->in[1], *b = n->nin > 2 ? n->in[2] : NULL;
    qg_tensor *g = n->out->grad;
    qg_dtype dt = g->dtype;
    int64_t in = w->shape[1], outf = w->shape[0], rows = qg_tensor_numel(g) / (outf ? outf : 1);
    const char *gd = qg__data(g), *wd = qg__data(w);
    if (qg__wants_grad(x)) { /* dx (rows, in) += g (rows, out) @ W (out, in); = when fresh (dx comes first) */
        bool fresh;
        qg_tensor *gx = qg__grad_for_write(x, &fresh);
        if (!gx) return QG_ENOMEM;
        qg__gemm(dt, rows, in, outf, gd, outf, 1, wd, w->strides[0], w->strides[1], fresh ? 0.0 : 1.0, qg__data(gx),
                 in, 1);
    }
    if (qg__wants_grad(w)) { /* dW (out, in) += g^T (out, rows) @ x (rows, in) */
        int64_t xr = 0, xrs = 0;
        const qg_tensor *xm = x;
        if (!lead_rows(x, &xr, &xrs) && (xm = qg_contiguous(x))) lead_rows(xm, &xr, &xrs);
        qg_tensor *gw = qg__grad_of(w);
        if (!xm || !gw) return QG_ENOMEM;
        qg__gemm(dt, outf, in, rows, gd, 1, outf, qg__data(xm), xrs, xm->strides[xm->ndim - 1], 1.0, qg__data(gw), in, 1);
    }
    if (qg__wants_grad(b)) {
        qg_tensor *gb = qg__grad_of(b);
        if (!gb) return QG_ENOMEM;
        qg__unbroadcast_add(gb, g);
    }
    return QG_OK;
}

qg_tensor *qg_linear(const qg_tensor *x, const qg_tensor *w, const qg_tensor *b) {
    char s1[128], s2[128];
    if (qg__check_same_float("linear", x, w)) return NULL;
    if (b && qg__check_same_float("linear", x, b)) return NULL;
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return qg__err(QG_ESHAPE, "linear: input %s does not fit weight %s (expected (..., in) and (out, in))",
                       qg_shape_str(x, s1, sizeof s1), qg_shape_str(w, s2, sizeof s2)), NULL;
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return qg__err(QG_ESHAPE, "linear: bias %s does not match weight %s (expected (out,))",
                       qg_shape_str(b, s1, sizeof s1), qg_shape_str(w, s2, sizeof s2)), NULL;
    int64_t rows = 0, rs = 0;
    const qg_tensor *xm = x;
    if (!lead_rows(x, &rows, &rs)) {
        xm = qg_contiguous(x);
        if (!xm) return NULL;
        lead_rows(xm, &rows, &rs);
    }
    int64_t shape[QG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->shape[0];
    qg_tensor *out = qg__tape_tensor(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    int64_t outf = w->shape[0];
    if (b) qg_tensor_copy_(out, b); /* start from the bias in every row, then C += x W^T */
    qg__gemm(x->dtype, rows, outf, w->shape[1], qg__data(xm), rs, xm->strides[xm->ndim - 1],
         qg__data(w), w->strides[1], w->strides[0], b ? 1.0 : 0.0, qg__data(out), outf, 1);
    const qg_tensor *ins[3] = {x, w, b};
    if (qg__needs_grad(b ? 3 : 2, ins) && !qg__record("linear", linear_backward, out, b ? 3 : 2, ins))
        return NULL;
    return out;
}
