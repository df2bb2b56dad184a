/* Private to the fake-quant ops (qat/ops/) and the observers that use their kernel:
 * the (outer, C, inner) view of a tensor along a channel axis, the walk over a flat
 * range in runs that share a channel, and the one per-channel min/max kernel. */
#ifndef QGRAD_FQ_INTERNAL_H
#define QGRAD_FQ_INTERNAL_H

#include "op_internal.h"

/* x as a contiguous (outer, C, inner) block along axis; C = 1, inner = n per tensor
 * (axis < 0). */
typedef struct {
    int64_t outer, C, inner, n; /* n = outer * C * inner */
} fq_layout;

static inline fq_layout qg__fq_layout_of(const qg_tensor *x, int axis) {
    fq_layout L = {1, 1, 1, qg_tensor_numel(x)};
    if (axis < 0) {
        L.inner = L.n;
        return L;
    }
    for (int d = 0; d < axis; d++) L.outer *= x->shape[d];
    L.C = x->shape[axis];
    for (int d = axis + 1; d < x->ndim; d++) L.inner *= x->shape[d];
    return L;
}

/* Walks [a, b) of the flat index in runs that share a parameter index base, running the
 * body (the variadic part) with i (first element), len, and pj: the parameters of
 * element i + k are at pj (scalar runs, period 1: pj is the channel) or pj + k
 * (periodic runs, period C * inner: entry j belongs to channel (j / inner) % C). */
#define FQ_WALK(L, period, a, b, ...)                                         \
    do {                                                                      \
        int64_t i = (a);                                                      \
        while (i < (b)) {                                                     \
            int64_t len, pj;                                                  \
            if ((period) == 1) {                                              \
                int64_t r_ = i / (L)->inner;                                  \
                pj = r_ % (L)->C;                                             \
                len = (r_ + 1) * (L)->inner - i;                              \
            } else {                                                          \
                pj = i % (period);                                            \
                len = (period) - pj;                                          \
            }                                                                 \
            if (len > (b) - i) len = (b) - i;                                 \
            __VA_ARGS__                                                       \
            i += len;                                                         \
        }                                                                     \
    } while (0)

/* Start of thread t's share of n elements split nt ways, on 64-element boundaries
 * (so threads never share a cache line of output); n for t == nt. */
static inline int64_t qg__split_at(int64_t n, int t, int nt) {
    return t >= nt ? n : (n / nt * t) & ~(int64_t)63;
}

/* x (dtype dt, contiguous, laid out as L) -> per channel lo[C], hi[C] (as float);
 * *finite false if x holds a NaN or an infinity. QG_ENOMEM (message set) if its
 * accumulators cannot be had. */
qg_status qg__channel_minmax(qg_dtype dt, const char *x, const fq_layout *L, float *lo, float *hi, bool *finite);
/* Under qg_ddp's sync_observers, lo and hi (C each) become the global batch's minimum
 * and maximum, and finite holds only where it holds on every rank, so that every rank
 * fails together (one MPI_MIN); without it, nothing. */
qg_status qg__sync_minmax(int64_t C, float *lo, float *hi, bool *finite);

#endif
