/* Test-only hooks into the library (internal symbols of the static library the tests
 * link): never part of the public API. */
#ifndef QG_TEST_HOOKS_H
#define QG_TEST_HOOKS_H
#include <stdint.h>

/* conv2d's GEMM orientation: -1 chooses by cost (default), 0 computes every product as
 * written, 1 every product transposed. */
extern int qg__conv_orientation;

/* The allocation (qg__alloc or the tape's) n calls from now fails, once; -1 cancels. */
void qg__fail_alloc_after(int64_t n);
/* Allocation calls so far (heap and tape). */
int64_t qg__alloc_calls(void);
#endif
