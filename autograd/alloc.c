/* Counted heap allocation and the thread-count setting. */
#include <stdatomic.h>

#include "internal.h"

static atomic_llong live_blocks;

/* Allocation-failure injection, a test hook (tests/hooks.h): the allocation that many
 * calls from now (heap or tape) fails, once; -1 = none. */
static atomic_llong fail_in = -1, calls;

void qg__fail_alloc_after(int64_t n) { atomic_store(&fail_in, n < 0 ? -1 : n); }
int64_t qg__alloc_calls(void) { return atomic_load(&calls); }

bool qg__alloc_fails(void) {
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    if (atomic_load_explicit(&fail_in, memory_order_relaxed) < 0) return false;
    return atomic_fetch_sub(&fail_in, 1) == 0; /* then -1: once */
}

void *qg__alloc(size_t nbytes) {
    if (qg__alloc_fails()) return NULL;
    size_t n = (nbytes + 63) & ~(size_t)63; /* aligned_alloc wants a multiple */
    void *p = aligned_alloc(64, n ? n : 64);
    if (p) atomic_fetch_add(&live_blocks, 1);
    return p;
}

void *qg__calloc(size_t nbytes) {
    void *p = qg__alloc(nbytes);
    if (p) memset(p, 0, nbytes);
    return p;
}

void qg__free(void *p) {
    if (!p) return;
    atomic_fetch_sub(&live_blocks, 1);
    free(p);
}

int64_t qg_live_allocations(void) { return atomic_load(&live_blocks); }

static int num_threads; /* 0 = not set: OpenMP's default */

void qg_set_num_threads(int n) { num_threads = n > 0 ? n : 0; }

int qg_get_num_threads(void) {
#ifdef _OPENMP
    return num_threads ? num_threads : omp_get_max_threads();
#else
    return 1;
#endif
}

int qg__threads_for(int64_t work) {
    int t = qg_get_num_threads();
    if (work < QG_PAR_THRESHOLD || t <= 1) return 1;
    int64_t most = work / (QG_PAR_THRESHOLD / 2);
    return most < t ? (int)(most > 1 ? most : 1) : t;
}
