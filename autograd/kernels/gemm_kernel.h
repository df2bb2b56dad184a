/* The GEMM's register-level kernels, for gemm.c (the driver: blocking, packing,
 * threading). Two parts:
 *
 * Once (include guard): the vector types of the build's ISA (QG_VB bytes, gemm.h),
 * their fused multiply-add, and the macros that write the kernels' loops out.
 *
 * Per dtype (when QG_GEMM_TEMPLATE is defined: gemm.c includes this from its template
 * section once for float and once for double, with real, vec, SUF(name), VL (lanes
 * per vector), NR, MR (tile shape, from gemm.h) and LDA_IM (row stride of an i-major
 * packed A sliver) defined):
 *   tile      C(MR x NR) = alpha a(MR x kc) b(kc x NR) + beta C, with 2*MR vector
 *             accumulators in registers over the whole of kc; NR is two vectors
 *             (12 x 32 floats with AVX-512, 6 x 16 with AVX2, 6 x 8 with SSE); b is
 *             read a row of NR at a time, a broadcast an element at a time;
 *             instantiated per layout of a (packed i-major or p-major, or read in place
 *             by rows or columns) and per height (2, 4, ..., MR), plus MR x one vector.
 *   dot_tile  C(dm x dn), dm*dn = VL, by dot products along k of k-contiguous rows of
 *             A and B^T, summed across lanes into one vector.
 * Every variant gives each element of C the same sequence of operations (gemm.c's
 * determinism rests on it). */
#ifndef QG_GEMM_KERNEL_H
#define QG_GEMM_KERNEL_H

#include <stdint.h>
#include <string.h>

#include "gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

typedef float qg_vf32 __attribute__((vector_size(QG_VB)));
typedef double qg_vf64 __attribute__((vector_size(QG_VB)));

/* Fused multiply-add on whole vectors, a * b + c. GCC in ISO C mode does not contract
 * a * b + c, so use the instruction explicitly where the ISA has it. */
#if defined(__AVX512F__)
static inline qg_vf32 qg__vfma_f32(qg_vf32 a, qg_vf32 b, qg_vf32 c) {
    return (qg_vf32)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
}
static inline qg_vf64 qg__vfma_f64(qg_vf64 a, qg_vf64 b, qg_vf64 c) {
    return (qg_vf64)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
}
#elif defined(__AVX__) && defined(__FMA__)
static inline qg_vf32 qg__vfma_f32(qg_vf32 a, qg_vf32 b, qg_vf32 c) {
    return (qg_vf32)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
static inline qg_vf64 qg__vfma_f64(qg_vf64 a, qg_vf64 b, qg_vf64 c) {
    return (qg_vf64)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
}
#else
static inline qg_vf32 qg__vfma_f32(qg_vf32 a, qg_vf32 b, qg_vf32 c) { return a * b + c; }
static inline qg_vf64 qg__vfma_f64(qg_vf64 a, qg_vf64 b, qg_vf64 c) { return a * b + c; }
#endif

#if defined(__clang__)
#define QG_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define QG_UNROLL _Pragma("GCC unroll 16")
#else
#define QG_UNROLL
#endif

#define QG_INLINE static inline __attribute__((always_inline))

/* The tile is QG_MR x QG_NR (gemm.h). Edge tiles use kernels of height 2, 4, ..., MR;
 * a narrow tile (one vector wide) uses height MR when mr > QG_NARROW_MIN. */
#define QG_NARROW_MIN (QG_MR - 4)
/* Row loops of the kernel written out, guarded by the tile height (<= QG_ROWS_MAX). */
#define QG_ROWS_MAX 12
#define QG_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/* In-register transposes use __builtin_shufflevector (clang, GCC >= 12), whose lane
 * indices must be listed: QG_LANES(n)(F, G) is F(0, G), ..., F(n - 1, G). */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define QG_HAVE_SHUFFLE 1
#endif
#endif
#define QG_L2(F, G) F(0, G), F(1, G)
#define QG_L4(F, G) QG_L2(F, G), F(2, G), F(3, G)
#define QG_L8(F, G) QG_L4(F, G), F(4, G), F(5, G), F(6, G), F(7, G)
#define QG_L16(F, G) \
    QG_L8(F, G), F(8, G), F(9, G), F(10, G), F(11, G), F(12, G), F(13, G), F(14, G), F(15, G)
#define QG_CAT_(a, b) a##b
#define QG_CAT(a, b) QG_CAT_(a, b)
#define QG_LANES(n) QG_CAT(QG_L, n)
/* Loops over the 16 lanes at most of a dot-product group, written out. */
#define QG_LANES16(X)                                                                     \
    X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

#endif /* QG_GEMM_KERNEL_H */

#ifdef QG_GEMM_TEMPLATE /* ----------------------------------------------- per dtype */

_Static_assert(VL * sizeof(real) == QG_VB, "VL is the lanes of a vector");
_Static_assert(NR == 2 * VL && MR == QG_MR, "the tile shape is gemm.h's");
#define VFMA SUF(qg__vfma)

QG_INLINE vec SUF(vload)(const real *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

QG_INLINE void SUF(vstore)(real *p, vec v) { memcpy(p, &v, sizeof v); }

/* x in every lane (x - 0 is x for every x, -0 included; compilers fold it away). */
QG_INLINE vec SUF(vbcast)(real x) { return x - (vec){0}; }

/* Write-back of the first mr rows and nv vectors of a tile to memory with unit column
 * stride and row stride rs: c = alpha * acc when beta == 0 (c not read), otherwise
 * c = fma(alpha, acc, beta * c). */
QG_INLINE void SUF(writeback)(const int mrk, const int nv, vec acc[QG_ROWS_MAX][2], real *c,
                              int64_t rs, int mr, real alpha, real beta) {
    vec va = SUF(vbcast)(alpha), vb = SUF(vbcast)(beta);
#define WB_ROW(i)                                                                         \
    if ((i) < mrk && (i) < mr) {                                                          \
        real *ci = c + (i) * rs;                                                          \
        if (beta == 0) {                                                                  \
            SUF(vstore)(ci, va * acc[i][0]);                                              \
            if (nv > 1) SUF(vstore)(ci + VL, va * acc[i][1]);                             \
        } else {                                                                          \
            SUF(vstore)(ci, VFMA(va, acc[i][0], vb * SUF(vload)(ci)));                    \
            if (nv > 1) SUF(vstore)(ci + VL, VFMA(va, acc[i][1], vb * SUF(vload)(ci + VL))); \
        }                                                                                 \
    }
    QG_ROWS(WB_ROW)
#undef WB_ROW
}

/* Write-back of an mr x nr tile whose sums are parked in t (rows of NR), to C with any
 * strides: per row, the valid part of C goes through a vector-sized copy so that every
 * element gets exactly the arithmetic of writeback(). */
static void SUF(edge_store)(const real *t, int nv, real *c, int64_t rsc, int64_t csc, int mr,
                            int nr, real alpha, real beta) {
    vec va = SUF(vbcast)(alpha), vb = SUF(vbcast)(beta);
    for (int i = 0; i < mr; i++) {
        _Alignas(64) real u[NR];
        real *ci = c + i * rsc;
        if (beta != 0) {
            for (int j = 0; j < nr; j++) u[j] = ci[j * csc];
            for (int j = nr; j < nv * VL; j++) u[j] = 0;
        }
        for (int v = 0; v < nv; v++) {
            vec s = SUF(vload)(t + i * NR + v * VL);
            SUF(vstore)(u + v * VL,
                        beta == 0 ? va * s : VFMA(va, s, vb * SUF(vload)(u + v * VL)));
        }
        for (int j = 0; j < nr; j++) ci[j * csc] = u[j];
    }
}

/* The micro-kernel: C(mr x nr tile) = alpha * a b + beta * C, where a is an mrk x kc
 * sliver with element (i,p) at a[i*ars + p*acs] and b a kc x (nv vectors) sliver with
 * row p at b + p*ldb. mrk (tile height, <= MR) and nv (1 or 2 vectors) are constants
 * in each instantiation below, as are the strides where they can be; edge tiles use
 * the smallest instantiation that covers them. */
QG_INLINE void SUF(tile)(const int mrk, const int nv, int64_t kc, const real *restrict a,
                         int64_t ars, int64_t acs, const real *restrict b, int64_t ldb,
                         real *c, int64_t rsc, int64_t csc, int mr, int nr, real alpha,
                         real beta) {
    /* Loops over the rows are written out (QG_ROWS) rather than left to the unroller,
     * so that the accumulators are registers with every compiler. */
    vec acc[QG_ROWS_MAX][2];
#define ZERO_ROW(i) acc[i][0] = acc[i][1] = (vec){0};
    QG_ROWS(ZERO_ROW)
#undef ZERO_ROW
    for (int64_t p = 0; p < kc; p++) {
        vec b0 = SUF(vload)(b), b1 = nv > 1 ? SUF(vload)(b + VL) : b0;
#define FMA_ROW(i)                                                                        \
    if ((i) < mrk) {                                                                      \
        vec ai = SUF(vbcast)(a[(i) * ars]);                                               \
        acc[i][0] = VFMA(ai, b0, acc[i][0]);                                              \
        if (nv > 1) acc[i][1] = VFMA(ai, b1, acc[i][1]);                                  \
    }
        QG_ROWS(FMA_ROW)
#undef FMA_ROW
        a += acs;
        b += ldb;
    }
    if (nr == nv * VL && csc == 1) {
        SUF(writeback)(mrk, nv, acc, c, rsc, mr, alpha, beta);
        return;
    }
    /* Narrow or strided tile: park the sums, then the same arithmetic row by row. */
    _Alignas(64) real t[MR * NR];
#define PARK_ROW(i)                                                                       \
    if ((i) < mrk) {                                                                      \
        SUF(vstore)(t + (i) * NR, acc[i][0]);                                             \
        if (nv > 1) SUF(vstore)(t + (i) * NR + VL, acc[i][1]);                            \
    }
    QG_ROWS(PARK_ROW)
#undef PARK_ROW
    SUF(edge_store)(t, nv, c, rsc, csc, mr, nr, alpha, beta);
}

typedef void (*SUF(kernel_fn))(int64_t kc, const real *a, int64_t lda, const real *b,
                               int64_t ldb, real *c, int64_t rsc, int64_t csc, int mr, int nr,
                               real alpha, real beta);

/* Layouts of an A sliver, element (i,p) at a[i*ARS + p*ACS]:
 *   IM: packed i-major (rows of LDA_IM)   PM: packed p-major (groups of MR)
 *   ROWS: row-major in place (lda)        COLS: column-major in place (lda) */
#define ARS_IM LDA_IM
#define ACS_IM 1
#define ARS_PM 1
#define ACS_PM MR
#define ARS_ROWS lda
#define ACS_ROWS 1
#define ARS_COLS 1
#define ACS_COLS lda
#define DEF_KERNEL(LAYOUT, NAME, MRK, NV)                                                 \
    static void SUF(kernel_##LAYOUT##_##NAME)(                                            \
        int64_t kc, const real *a, int64_t lda, const real *b, int64_t ldb, real *c,      \
        int64_t rsc, int64_t csc, int mr, int nr, real alpha, real beta) {                \
        (void)lda;                                                                        \
        SUF(tile)(MRK, NV, kc, a, ARS_##LAYOUT, ACS_##LAYOUT, b, ldb, c, rsc, csc, mr, nr, \
                  alpha, beta);                                                           \
    }
/* Full width at every even height up to MR (an edge tile of mr rows takes the lowest
 * that covers it), and MR rows at one vector for a narrow last column sliver. */
#if QG_MR == 12
#define DEF_TALL(LAYOUT)                                                                  \
    DEF_KERNEL(LAYOUT, h8, 8, 2)                                                          \
    DEF_KERNEL(LAYOUT, h10, 10, 2)                                                        \
    DEF_KERNEL(LAYOUT, h12, 12, 2)
#define TALL_ENTRIES(LAYOUT)                                                              \
    SUF(kernel_##LAYOUT##_h8), SUF(kernel_##LAYOUT##_h10), SUF(kernel_##LAYOUT##_h12),
#else
#define DEF_TALL(LAYOUT)
#define TALL_ENTRIES(LAYOUT)
#endif
#define DEF_KERNELS(LAYOUT)                                                               \
    DEF_KERNEL(LAYOUT, h2, 2, 2)                                                          \
    DEF_KERNEL(LAYOUT, h4, 4, 2)                                                          \
    DEF_KERNEL(LAYOUT, h6, 6, 2)                                                          \
    DEF_TALL(LAYOUT)                                                                      \
    DEF_KERNEL(LAYOUT, narrow, MR, 1)                                                     \
    static const SUF(kernel_fn) SUF(kernels_##LAYOUT)[MR / 2 + 1] = {                     \
        SUF(kernel_##LAYOUT##_h2), SUF(kernel_##LAYOUT##_h4), SUF(kernel_##LAYOUT##_h6),  \
        TALL_ENTRIES(LAYOUT) SUF(kernel_##LAYOUT##_narrow)};
DEF_KERNELS(IM)
DEF_KERNELS(PM)
DEF_KERNELS(ROWS)
DEF_KERNELS(COLS)
#undef DEF_KERNEL
#undef DEF_KERNELS
#undef DEF_TALL
#undef TALL_ENTRIES
#undef ARS_IM
#undef ACS_IM
#undef ARS_PM
#undef ACS_PM
#undef ARS_ROWS
#undef ACS_ROWS
#undef ARS_COLS
#undef ACS_COLS

/* The kernel for an mr x nr tile, from one layout's table: it reads the first mr rows
 * rounded up to even (MR for the narrow one) and the first nr columns rounded up to
 * its width (the narrow one only for nr <= VL and mr > QG_NARROW_MIN). */
static inline SUF(kernel_fn) SUF(kernel_for)(const SUF(kernel_fn) *tab, int mr, int nr) {
    if (nr <= VL && mr > QG_NARROW_MIN) return tab[MR / 2];
    return tab[(mr - 1) / 2];
}

/* ---- The dot-product kernel (gemm.c's gemm_dot runs it over the outputs): each
 * output is a dot product of two k-contiguous rows, accumulated lane-wise in vectors;
 * dm x dn = VL accumulators are then summed across lanes all together (a
 * transpose-and-add tree) into one vector holding the VL outputs. */

/* out[q] = sum of the lanes of v[q], q < VL (v is clobbered). */
QG_INLINE vec SUF(reduce_lanes)(vec v[VL]) {
#ifdef QG_HAVE_SHUFFLE
    /* Stage G adds rows i and i + G (i < G) after exchanging their lane halves of
     * width G, so lanes with bit G clear keep row i's sums and the others row i+G's. */
#define TX(l, G) (((l) & (G)) ? VL + (l) - (G) : (l))
#define TY(l, G) (((l) & (G)) ? VL + (l) : (l) + (G))
#define RSTAGE(G)                                                                         \
    QG_UNROLL                                                                             \
    for (int i_ = 0; i_ < (G); i_++)                                                      \
        v[i_] = __builtin_shufflevector(v[i_], v[i_ + (G)], QG_LANES(VL)(TX, G)) +        \
                __builtin_shufflevector(v[i_], v[i_ + (G)], QG_LANES(VL)(TY, G));
#if VL >= 16
    RSTAGE(8)
#endif
#if VL >= 8
    RSTAGE(4)
#endif
#if VL >= 4
    RSTAGE(2)
#endif
    RSTAGE(1)
#undef RSTAGE
#undef TX
#undef TY
    return v[0];
#else
    vec out;
    for (int q = 0; q < VL; q++) {
        real s = 0;
        for (int l = 0; l < VL; l++) s += v[q][l];
        out[q] = s;
    }
    return out;
#endif
}

/* The first `len` (< VL) elements of p, zeros after. */
QG_INLINE vec SUF(vload_part)(const real *p, int len) {
    vec v = {0};
    for (int l = 0; l < len; l++) v[l] = p[l];
    return v;
}

/* C(i0:i0+mr, j0:j0+nr) for a dm x dn group (dm*dn == VL) of rows of A (a[i]) and of
 * B^T (b[j]); rows past mr / nr repeat the last one and are not stored. The loops over
 * the group are written out (QG_LANES16) so that everything stays in registers. */
QG_INLINE void SUF(dot_tile)(const int dm, const int dn, int64_t k, const real *const *a,
                             const real *const *b, real *c, int64_t rsc, int64_t csc, int mr,
                             int nr, real alpha, real beta) {
    vec acc[16], av[16], bv[16]; /* VL of each used */
    const real *ap[16], *bp[16];
#define INIT(q)                                                                           \
    if ((q) < VL) acc[q] = (vec){0};                                                      \
    if ((q) < dm) ap[q] = a[q];                                                           \
    if ((q) < dn) bp[q] = b[q];
    QG_LANES16(INIT)
#undef INIT
#define LOAD(q)                                                                           \
    if ((q) < dm) av[q] = SUF(vload)(ap[q] + p);                                          \
    if ((q) < dn) bv[q] = SUF(vload)(bp[q] + p);
#define LOAD_PART(q)                                                                      \
    if ((q) < dm) av[q] = SUF(vload_part)(ap[q] + p, len);                                \
    if ((q) < dn) bv[q] = SUF(vload_part)(bp[q] + p, len);
#define FMA(q)                                                                            \
    if ((q) < VL) acc[q] = VFMA(av[(q) / dn], bv[(q) % dn], acc[q]);
    int64_t p = 0;
    for (; p + VL <= k; p += VL) {
        QG_LANES16(LOAD)
        QG_LANES16(FMA)
    }
    if (p < k) {
        int len = (int)(k - p);
        QG_LANES16(LOAD_PART)
        QG_LANES16(FMA)
    }
#undef LOAD
#undef LOAD_PART
#undef FMA
    vec r = SUF(reduce_lanes)(acc);
    /* Output (i,j) is lane i*dn + j: with unit column stride a full row of the group
     * is dn consecutive elements both in C and in the vector. */
    _Alignas(64) real cv[VL];
    bool rows = csc == 1 && nr == dn;
    if (beta != 0) {
        memset(cv, 0, sizeof cv);
        for (int i = 0; i < mr; i++) {
            if (rows)
                memcpy(cv + i * dn, c + i * rsc, dn * sizeof(real));
            else
                for (int j = 0; j < nr; j++) cv[i * dn + j] = c[i * rsc + j * csc];
        }
    }
    r = beta == 0 ? SUF(vbcast)(alpha) * r
                  : VFMA(SUF(vbcast)(alpha), r, SUF(vbcast)(beta) * SUF(vload)(cv));
    SUF(vstore)(cv, r);
    for (int i = 0; i < mr; i++) {
        if (rows)
            memcpy(c + i * rsc, cv + i * dn, dn * sizeof(real));
        else
            for (int j = 0; j < nr; j++) c[i * rsc + j * csc] = cv[i * dn + j];
    }
}

#undef VFMA

#endif /* QG_GEMM_TEMPLATE */
