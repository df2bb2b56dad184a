/* Private to the ops (autograd/ops/, autograd/kernels/, qat/ops/) and the autograd
 * core: the tape's node record and arena, strided iteration and broadcasting, and the
 * kernels. Everything else includes internal.h only. */
#ifndef QGRAD_OP_INTERNAL_H
#define QGRAD_OP_INTERNAL_H

#include "internal.h"

/* ------------------------------------------------------------- tape */

#define QG_NODE_SAVED 8
/* Adds the node's input gradients from n->out->grad; QG_OK, or an error status (with
 * the message set) when a buffer cannot be had: backward stops there. */
typedef qg_status (*qg_backward_fn)(qg_node *n);

struct qg_node {
    const char *name;          /* op name, for messages */
    qg_backward_fn backward;
    qg_tensor *out;
    int nin;
    qg_tensor **in;            /* inputs (tape array) */
    qg_tensor *saved[QG_NODE_SAVED]; /* extra tensors backward needs */
    double p[4];               /* small scalar parameters */
    int64_t ip[QG_MAX_DIMS * 2];
    void *ctx;                 /* larger op state, tape-allocated */
    qg_node *prev;
    bool consumed;             /* run by a backward that did not retain the graph */
    const char *prof_path;     /* profiling: the module that recorded it (internal.h) */
};

/* Marks a caller-owned tensor as used by the current pass (graph inputs, views). */
void qg__tape_uses(const qg_tensor *x);
/* Does the current pass (its graph or a view) use caller-owned t? */
bool qg__tape_in_use(const qg_tensor *t);
/* qg_tensor_free of a tensor the current pass uses: the tape takes it, frees it at reset */
bool qg__tape_adopt(qg_tensor *t);

/* Arena allocation on the current tape (64-byte aligned), freed at reset. */
void *qg__tape_alloc(size_t nbytes);
/* New contiguous tensor on the current tape (data uninitialised). */
qg_tensor *qg__tape_tensor(qg_dtype dt, int ndim, const int64_t *shape);
/* Zeroed, same. */
qg_tensor *qg__tape_zeros(qg_dtype dt, int ndim, const int64_t *shape);
/* View header on the current tape sharing src's storage. */
qg_tensor *qg__tape_view(const qg_tensor *src);

/* True when grad mode is on and any of the inputs requires grad. */
bool qg__needs_grad(int n, const qg_tensor *const *ins);
/* Records a node producing out from ins (copied), marks out requires_grad.
 * Returns NULL (with error) only on allocation failure. */
qg_node *qg__record(const char *name, qg_backward_fn bw, qg_tensor *out, int nin,
                    const qg_tensor *const *ins);

/* During backward: the gradient buffer of t (contiguous, t's shape, zeroed the first
 * time it is asked for in this pass). */
qg_tensor *qg__grad_of(qg_tensor *t);
/* The same buffer for an op that writes all of it: *fresh when this pass has not
 * touched it yet, its contents then undefined, so the op stores (or zeroes its own part
 * first) where it would add. Only for an op whose inputs are distinct tensors (a
 * second request for the same tensor is not fresh, and must not be written first).
 * Leaves are never fresh: they accumulate across backward calls. */
qg_tensor *qg__grad_for_write(qg_tensor *t, bool *fresh);
/* The sum of 8 partial sums a[0..8), pairwise (a fixed order: the same bits at any
 * thread count). */
#define QG_SUM8(a) ((((a)[0] + (a)[1]) + ((a)[2] + (a)[3])) + (((a)[4] + (a)[5]) + ((a)[6] + (a)[7])))
/* lv = v into a fresh gradient buffer (store), else lv += v. */
#define QG_PUT_GRAD(store, lv, v) \
    do {                          \
        if (store)                \
            (lv) = (v);           \
        else                      \
            (lv) += (v);          \
    } while (0)
/* True if t takes part in the gradient (requires grad). */
static inline bool qg__wants_grad(const qg_tensor *t) { return t && t->requires_grad; }

/* ------------------------------------------------------------- broadcasting */

/* Broadcast shapes a and b into out; error naming op and shapes if impossible. */
qg_status qg__broadcast_shape(const char *op, const qg_tensor *a, const qg_tensor *b,
                              int *ndim, int64_t *shape);
/* Strides of t viewed at shape (ndim >= t->ndim), 0 on broadcast dims. */
void qg__broadcast_strides(const qg_tensor *t, int ndim, const int64_t *shape, int64_t *st);
/* ------------------------------------------------------------- strided iteration
 * Visits every element of up to 4 operands that share one shape (strides may be 0
 * for broadcast). Dims are coalesced; the callback gets one row at a time: n
 * elements, a data pointer per operand (already offset) and the row's stride per
 * operand, in elements. The callback is per row, never per element. */
#define QG_ITER_MAX 4
typedef void (*qg_row_fn)(int64_t n, char **ptr, const int64_t *stride, void *ctx);
typedef struct qg_iter {
    int nops;
    int ndim;
    int64_t shape[QG_MAX_DIMS];
    int64_t strides[QG_ITER_MAX][QG_MAX_DIMS]; /* in elements */
    char *base[QG_ITER_MAX];
    size_t esize[QG_ITER_MAX];
} qg_iter;
/* ops[i] is viewed at (ndim, shape) with broadcasting. */
void qg__iter_init(qg_iter *it, int nops, const qg_tensor *const *ops, int ndim,
                   const int64_t *shape);
/* Runs fn over all rows, in parallel above the threshold when parallel is true.
 * Rows are split the same way for a given thread count, so results repeat. */
void qg__iter_run(const qg_iter *it, qg_row_fn fn, void *ctx, bool parallel);
/* The same when operand 0 accumulates over its broadcast dims: parallel over a dim
 * it moves along, each element's rows in the serial order (results do not depend on
 * the thread count). */
void qg__iter_run_reduce(const qg_iter *it, qg_row_fn fn, void *ctx);

/* Sum grad (shape of the broadcast output) into acc (shape of one input). */
void qg__unbroadcast_add(qg_tensor *acc, const qg_tensor *grad);
/* dst += src, src broadcast to dst's shape (dst must not overlap itself). */
void qg__broadcast_add(qg_tensor *dst, const qg_tensor *src);

/* Header of x permuted so the dims marked in red come last (order kept); K and R
 * get the element counts of the kept and the marked dims. */
qg_tensor qg__permute_last(const qg_tensor *x, const bool *red, int64_t *K, int64_t *R);
/* x's elements as a contiguous (K, R) matrix in that order: x's own data when it is
 * already laid out so, else a tape copy. NULL only when out of memory. */
const char *qg__kr_layout(const qg_tensor *x, const bool *red, int64_t *K, int64_t *R);

/* ------------------------------------------------------------- quantized tensors */

/* relu of a per-tensor quantized tensor (quantize.c) */
qg_tensor *qg__quantized_relu(const qg_tensor *x);

/* ------------------------------------------------------------- kernels */

/* C(m,n) = alpha * A(m,k) B(k,n) + beta * C; element (i,j) of X at X[i*rs + j*cs].
 * beta == 0 overwrites C (NaNs in C are not propagated). */
void qg__gemm_f32(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t rsa,
                 int64_t csa, const float *B, int64_t rsb, int64_t csb, float beta, float *C,
                 int64_t rsc, int64_t csc);
void qg__gemm_f64(int64_t m, int64_t n, int64_t k, double alpha, const double *A, int64_t rsa,
                 int64_t csa, const double *B, int64_t rsb, int64_t csb, double beta, double *C,
                 int64_t rsc, int64_t csc);

/* The same with alpha 1 for a float dtype on untyped pointers (what ops call). */
void qg__gemm(qg_dtype dt, int64_t m, int64_t n, int64_t k, const char *A, int64_t rsa, int64_t csa, const char *B,
              int64_t rsb, int64_t csb, double beta, char *C, int64_t rsc, int64_t csc);

/* Vector math on contiguous arrays (SLEEF where the build has it). y may alias x. */
void qg__vexp_f32(int64_t n, const float *x, float *y);
void qg__vexp_f64(int64_t n, const double *x, double *y);
void qg__vlog_f32(int64_t n, const float *x, float *y);
void qg__vlog_f64(int64_t n, const double *x, double *y);
void qg__vtanh_f32(int64_t n, const float *x, float *y);
void qg__vtanh_f64(int64_t n, const double *x, double *y);
void qg__vsigmoid_f32(int64_t n, const float *x, float *y);
void qg__vsigmoid_f64(int64_t n, const double *x, double *y);

/* Eight float32 lanes as a GCC/clang vector (the compiler picks the instructions at each
 * ISA level), and an 8 x 8 transposition of them: r[j] (8 elements of row j) ->
 * r[e] (element e of the 8 rows), by the unpack / shuffle / lane-swap steps. Pass
 * vectors by pointer: by value, their ABI depends on the ISA. */
typedef float qg__v8f __attribute__((vector_size(32)));
typedef double qg__v8d __attribute__((vector_size(64)));
__attribute__((always_inline)) static inline void qg__tr8_f32(qg__v8f *r) {
    qg__v8f t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = __builtin_shufflevector(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[k + 1] = __builtin_shufflevector(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int h = 0; h < 8; h += 4) /* pairs (t0, t2), (t1, t3), then (t4, t6), (t5, t7) */
        for (int k = 0; k < 2; k++) {
            u[h + 2 * k] = __builtin_shufflevector(t[h + k], t[h + k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[h + 2 * k + 1] = __builtin_shufflevector(t[h + k], t[h + k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int e = 0; e < 4; e++) {
        r[e] = __builtin_shufflevector(u[e], u[e + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[e + 4] = __builtin_shufflevector(u[e], u[e + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

#endif
