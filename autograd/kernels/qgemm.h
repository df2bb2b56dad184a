/* The int8 GEMM of the quantized Linear and Conv modules: uint8 activations times
 * int8 weights, accumulated exactly in int32 (docs/int8.md). The weights are packed
 * once (at convert or load) into the layout every vector path reads; activations are
 * read in place, row-major.
 *
 * Paths: a scalar reference, AVX2 (vpmaddubsw + vpmaddwd), AVX-512 BW (the same on
 * 512 bits) and AVX-512 VNNI (vpdpbusd). vpmaddubsw adds two u8*s8 products into an
 * int16 with saturation; a path that uses it does so only where no saturation can
 * happen (a pair of products stays within int16), and otherwise takes exact widening
 * arithmetic, so every path gives the scalar reference's int32 results bit for bit.
 * The default path is the best one both the CPU (at run time) and the build's -march
 * allow: a -march=x86-64-v3 build runs AVX2, a -Dnative=false build the scalar code,
 * a portable build (isa.h) the best the CPU has at the float kernels' level. */
#ifndef QG_QGEMM_H
#define QG_QGEMM_H

#include <stdbool.h>
#include <stdint.h>

typedef enum qg__qpath {
    QG__QPATH_SCALAR = 0,
    QG__QPATH_AVX2,
    QG__QPATH_AVX512BW,
    QG__QPATH_VNNI,
    QG__QPATH_COUNT
} qg__qpath;

/* Packed weights W (n, k): n output channels, k the reduction. Opaque beyond these
 * fields, which the modules read. */
typedef struct qg__qpack {
    int64_t n, k;
    int32_t *wsum;  /* (np) sum over k of W[j][k] (wrapped to int32; 0 past n), for the
                     * input zero point */
    int wmax_abs;   /* max |W|: whether vpmaddubsw can saturate */
    int64_t np, kp; /* padded sizes of the packed layout */
    int8_t *data;   /* packed layout (qgemm.c) */
} qg__qpack;

/* Packs W, row j at w + j * ldw (k int8 values each; w may be NULL if n or k is 0).
 * NULL with an error on failure: QG_ESHAPE for negative sizes, ldw < k, or a packed
 * size too large; QG_EINVAL for NULL w; QG_ENOMEM. Sums that exceed int32 are not
 * rejected: they wrap, as PyTorch's do. */
qg__qpack *qg__qpack_new(const int8_t *w, int64_t ldw, int64_t n, int64_t k);
void qg__qpack_free(qg__qpack *p); /* NULL is a no-op */

/* C[i][j] = sum_k (A[i][k] - za) * W[j][k] for i < m, j < n, in int32 (wrapping as
 * two's complement if a sum ever exceeds it, the same on every path).
 * A: m rows of k uint8 at a + i * lda; C at c + i * ldc. Runs on the qgrad thread
 * count above a size threshold (the split never changes a result) and allocates
 * nothing. */
void qg__qgemm(int64_t m, const uint8_t *a, int64_t lda, int32_t za, const qg__qpack *p, int32_t *c,
               int64_t ldc);

/* Requantization of int32 accumulators to quint8 (qrequant.c, docs/int8.md): the
 * engine's formula with channel j's constants at mult[j], badd[j] (onednn) or
 * ibias[j] (qnnpack). Rows i < m of n outputs, acc at acc + i * ldc, out at
 * out + i * ldo. Vectorised on the path qgemm uses; every path gives the same bytes. */
typedef struct qg__requant {
    bool onednn;
    float lo;        /* the floor of the scaled value: 0 with ReLU, else -zf */
    float zf;        /* the output zero point */
    const float *mult, *badd;
    const int32_t *ibias;
} qg__requant;
void qg__qrequant(const qg__requant *k, const int32_t *acc, int64_t ldc, int64_t m, int64_t n, uint8_t *out,
                  int64_t ldo);

/* The channel-major convolution kernel (qconvk.c), on the VNNI and AVX2 paths
 * (qg__qconv_cm_supported). Output pixels come in blocks of up to 16: block b's pixels
 * i < n have their k-quad q (A[i][4q..4q+3], q < p->kp / 4) at a + off[q] + 4 i, and
 * its outputs go to out + j * ldo + o + i for channels j < p->n:
 *   out[j * ldo + o + i] = requant_j(sum_k (A[i][k] - za) W[j][k]),
 * with k's constants indexed by j. All 16 lanes are read (64 bytes at a + off[q]);
 * lanes past n, and bytes past k (whose weights are 0), may hold any value. The same
 * bytes as qg__qgemm + qg__qrequant, transposed.
 * pool: the blocks come in pairs, 2b and 2b + 1 the same pixels of two neighbouring
 * output rows, and each pair gives its 2 x 2 max pool (floor mode): n / 2 outputs
 * out[j * ldo + o + t] = max of the four bytes of pixels 2t, 2t + 1 of both rows, with
 * 2b's o and n (nblk even). */
typedef struct qg__qblock {
    const uint8_t *a;
    int64_t o;
    int n;
} qg__qblock;
bool qg__qconv_cm_supported(void);
void qg__qconv_cm(int64_t nblk, const qg__qblock *blk, const int64_t *off, int32_t za, const qg__qpack *p,
                  const qg__requant *k, uint8_t *out, int64_t ldo, bool pool);

/* The channel-lane convolution kernel (qconvl.c), on the VNNI path only
 * (qg__qconv_cl_supported). Pixels come in tiles of 4: pixel u of tile t is at
 * px[t] + dpx[u], or without dpx at px[4 t + u], and its k-quad q at that plus off[q].
 * A tile gives 4 output rows, or with pool one, their maximum (a 2 x 2 window); output
 * row r is out + r * ldo, channels j < p->n, written up to p->np (ldo >= p->np):
 *   out[r * ldo + j] = requant_j(sum_k (A[r][k] - za) W[j][k]),
 * the bytes of qg__qgemm + qg__qrequant. */
bool qg__qconv_cl_supported(void);
void qg__qconv_cl(int64_t ntile, const uint8_t *const *px, const int64_t *dpx, const int64_t *off, int32_t za,
                  const qg__qpack *p, const qg__requant *k, uint8_t *out, int64_t ldo, bool pool);

/* Paths, for tests and benchmarks. Every x86-64 build compiles all of them (function
 * target attributes), so a test can run each path the CPU has, whatever -march was:
 * supported means the CPU (at run time) has the instructions. The path in use, and a
 * way to force one (QG_EINVAL if unsupported). Process-wide; not thread-safe. */
bool qg__qpath_supported(qg__qpath path);
qg__qpath qg__qgemm_path(void);
int qg__qgemm_set_path(qg__qpath path);
const char *qg__qpath_name(qg__qpath path);

#endif
