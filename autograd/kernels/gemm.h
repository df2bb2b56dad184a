/* The packed GEMM's tile shape, for callers that steer by it (conv.c picks the
 * cheaper orientation of each product). One definition, following the build's ISA (in
 * a portable build, the level that runs), so that a caller never mirrors
 * kernels/gemm.c by hand. The shape only steers speed:
 * results are correct for any shape. And the direct single-channel convolution. */
#ifndef QG_GEMM_H
#define QG_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/isa.h"

#if defined(QG_DISPATCH) && !defined(QG_ISA_SUFFIX)
/* A portable build's callers: the tile of the level that runs (isa.h). */
int64_t qg__gemm_mr(void);
int64_t qg__gemm_vb(void);
#define QG_VB qg__gemm_vb()
#define QG_MR qg__gemm_mr()
#else
int64_t qg__gemm_mr(void); /* QG_MR and QG_VB, for the dispatcher */
int64_t qg__gemm_vb(void);

/* Vector width in bytes. */
#if defined(__AVX512F__)
#define QG_VB 64
#elif defined(__AVX__)
#define QG_VB 32
#else
#define QG_VB 16
#endif

/* Micro-tile height (rows of C, broadcasts of A per k step). With NR = 2 vectors the
 * tile takes 2*MR accumulators + 2 B vectors + 1 broadcast: 27 of the 32 registers
 * of AVX-512 with MR = 12, 15 of the 16 of AVX2/SSE with MR = 6. */
#if defined(__AVX512F__)
#define QG_MR 12
#else
#define QG_MR 6
#endif
#endif

/* Micro-tile width (columns of C: two vectors) for elements of es bytes. */
#define QG_NR(es) (2 * QG_VB / (int64_t)(es))

/* The direct convolution of a single-channel plane, stride 1 (kernels/conv1.c, which
 * gives the shapes): for the first layer of a CNN, whose reduction is only the kernel's
 * taps. supported: whether a kernel of `taps` taps runs there. */
bool qg__conv1_supported(int64_t taps);
void qg__conv1_f32(const float *xp, int64_t Wp, int64_t OH, int64_t OW, int kh, int kw, int dh, int dw,
                   const float *w, const float *b, int64_t K, float *out);

#endif
