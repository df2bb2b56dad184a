/* Packed, cache-blocked GEMM for float and double (BLIS-style loop nest).
 *
 *   for jc in n by NC                      (threads split m or n above this nest)
 *     for pc in k by KC                    pack B(pc:pc+kc, jc:jc+nc) into NR-wide slivers
 *       for ic in m by MC                  pack A(ic:ic+mc, pc:pc+kc) into MR-tall slivers
 *         for jr in nc by NR
 *           for ir in mc by MR             micro-kernel: MR x NR tile of C in registers
 *
 * The micro-kernel vectorises along n (NR = two vectors) and broadcasts elements of A.
 * Packed A has one of two layouts, whichever is a plain copy of the source:
 *   row-major A (unit column stride): each sliver holds MR rows of kc elements ("i-major");
 *   otherwise: for each p the MR elements of column p side by side ("p-major").
 * Packed B is always kc rows of NR elements per sliver. Only B with unit row stride (a
 * transposed view) needs a transposing pack; when that is expensive the whole problem is
 * computed transposed instead (C^T = B^T A^T), whichever the cost model prefers.
 *
 * Determinism: k is never split between threads and the KC blocking depends only on k,
 * so each element of C is produced by the same operations in the same order whatever
 * the thread count and whatever tile it falls in (edge tiles go through the same vector
 * write-back as interior ones).
 *
 * The per-type code lives once, below the `#else` of QG_GEMM_TEMPLATE; this file
 * includes itself twice to instantiate it for float and double. */
#ifndef QG_GEMM_TEMPLATE

#include <stdint.h>
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

/* Vector width in bytes, following the build's ISA. */
#if defined(__AVX512F__)
#define QG_VB 64
#elif defined(__AVX__)
#define QG_VB 32
#else
#define QG_VB 16
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

/* Micro-tile height (rows of C, broadcasts of A per k step). With NR = 2 vectors the
 * tile takes 2*MR accumulators + 2 B vectors + 1 broadcast: 27 of 32 zmm registers. */
#define QG_MR 12

/* Cache blocking, in bytes (same for both dtypes):
 *   KC: a B sliver (KC x NR) stays in L1 while the A slivers stream past it;
 *   MC: the packed A block (MC x KC) stays in L2;
 *   NC: the packed B panel (KC x NC) is meant for L3. */
#define QG_KC_BYTES (24 * 1024)
#define QG_MC_BYTES (768 * 1024)
#define QG_NC_BYTES (4 * 1024 * 1024)

/* Problems with m*n*k below this take the unpacked loop. */
#define QG_GEMM_DIRECT_WORK 4096
/* Work (m*n*k) per thread before a second thread pays off. */
#define QG_GEMM_PAR_WORK (1 << 20)

/* Per-thread packing buffers, grown and never shrunk, so repeated calls with the same
 * shapes allocate nothing. OpenMP workers get their own. */
static _Thread_local void *tl_buf[2];
static _Thread_local size_t tl_cap[2];

static void *qg__gemm_buf(int which, size_t nbytes) {
    if (tl_cap[which] < nbytes) {
        size_t cap = nbytes + nbytes / 4;
        void *p = qg__alloc(cap);
        if (!p) return NULL;
        qg__free(tl_buf[which]);
        tl_buf[which] = p;
        tl_cap[which] = cap;
    }
    return tl_buf[which];
}

static inline int64_t qg__min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t qg__max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t qg__ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t qg__round_up(int64_t a, int64_t b) { return qg__ceil_div(a, b) * b; }
static inline int64_t qg__abs64(int64_t a) { return a < 0 ? -a : a; }

/* k split into equal blocks of at most kc_max. */
static inline int64_t qg__kc_block(int64_t k, int64_t kc_max) {
    return qg__ceil_div(k, qg__ceil_div(k, kc_max));
}

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
/* Cycles per element of a transposing pack. */
#ifdef QG_HAVE_SHUFFLE
#define QG_TRANSPOSE_COST 0.25
#else
#define QG_TRANSPOSE_COST 1.0
#endif

/* ---------------------------------------------------------------- instantiation */
#define QG_GEMM_TEMPLATE
#define real float
#define vec qg_vf32
#define SUF(name) name##_f32
#if QG_VB == 64
#define VL 16
#elif QG_VB == 32
#define VL 8
#else
#define VL 4
#endif
#include "gemm.c"
#undef real
#undef vec
#undef SUF
#undef VL

#define real double
#define vec qg_vf64
#define SUF(name) name##_f64
#if QG_VB == 64
#define VL 8
#elif QG_VB == 32
#define VL 4
#else
#define VL 2
#endif
#include "gemm.c"
#undef real
#undef vec
#undef SUF
#undef VL
#undef QG_GEMM_TEMPLATE

#else /* ------------------------------------------------------------------ template */

_Static_assert(VL * sizeof(real) == QG_VB, "VL is the lanes of a vector");
#define NR (2 * VL)
#define MR QG_MR
#define KC ((int64_t)(QG_KC_BYTES / (NR * sizeof(real))))
#define MC qg__round_up((int64_t)(QG_MC_BYTES / (KC * sizeof(real))), MR)
#define NC qg__round_up((int64_t)(QG_NC_BYTES / (KC * sizeof(real))), NR)
#define VFMA SUF(qg__vfma)

QG_INLINE vec SUF(vload)(const real *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

QG_INLINE void SUF(vstore)(real *p, vec v) { memcpy(p, &v, sizeof v); }

/* x in every lane (x - 0 is x for every x, -0 included; compilers fold it away). */
QG_INLINE vec SUF(vbcast)(real x) { return x - (vec){0}; }

/* Write-back of the first mr rows of a tile (full width) to memory with unit column
 * stride and row stride rs: c = alpha * acc when beta == 0 (c not read), otherwise
 * c = fma(alpha, acc, beta * c). */
QG_INLINE void SUF(writeback)(vec acc[MR][2], real *c, int64_t rs, int mr, real alpha,
                              real beta) {
    vec va = SUF(vbcast)(alpha);
    if (beta == 0) {
        QG_UNROLL
        for (int i = 0; i < MR; i++) {
            if (i < mr) {
                SUF(vstore)(c + i * rs, va * acc[i][0]);
                SUF(vstore)(c + i * rs + VL, va * acc[i][1]);
            }
        }
    } else {
        vec vb = SUF(vbcast)(beta);
        QG_UNROLL
        for (int i = 0; i < MR; i++) {
            if (i < mr) {
                vec c0 = SUF(vload)(c + i * rs), c1 = SUF(vload)(c + i * rs + VL);
                SUF(vstore)(c + i * rs, VFMA(va, acc[i][0], vb * c0));
                SUF(vstore)(c + i * rs + VL, VFMA(va, acc[i][1], vb * c1));
            }
        }
    }
}

/* The micro-kernel: C(mr x nr tile) = alpha * a b + beta * C, where a is an MR x kc
 * sliver with element (i,p) at a[i*ars + p*acs] and b a kc x NR sliver (row p at
 * b + p*NR). Inlined into the two layouts below, where the strides are constants. */
QG_INLINE void SUF(tile)(int64_t kc, const real *restrict a, int64_t ars, int64_t acs,
                         const real *restrict b, real *c, int64_t rsc, int64_t csc, int mr,
                         int nr, real alpha, real beta) {
    vec acc[MR][2];
    QG_UNROLL
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = (vec){0};
    for (int64_t p = 0; p < kc; p++) {
        vec b0 = SUF(vload)(b), b1 = SUF(vload)(b + VL);
        QG_UNROLL
        for (int i = 0; i < MR; i++) {
            vec ai = SUF(vbcast)(a[i * ars]);
            acc[i][0] = VFMA(ai, b0, acc[i][0]);
            acc[i][1] = VFMA(ai, b1, acc[i][1]);
        }
        a += acs;
        b += NR;
    }
    if (nr == NR && csc == 1) {
        SUF(writeback)(acc, c, rsc, mr, alpha, beta);
        return;
    }
    /* Narrow or strided tile: the same arithmetic on a copy, then the valid part. */
    _Alignas(64) real t[MR * NR];
    if (beta != 0) {
        for (int i = 0; i < mr; i++) {
            real *ti = t + i * NR;
            if (csc == 1) {
                memcpy(ti, c + i * rsc, nr * sizeof(real));
            } else {
                for (int j = 0; j < nr; j++) ti[j] = c[i * rsc + j * csc];
            }
            for (int j = nr; j < NR; j++) ti[j] = 0;
        }
    }
    SUF(writeback)(acc, t, NR, mr, alpha, beta);
    if (csc == 1) {
        for (int i = 0; i < mr; i++) memcpy(c + i * rsc, t + i * NR, nr * sizeof(real));
    } else if (rsc == 1) {
        for (int j = 0; j < nr; j++)
            for (int i = 0; i < mr; i++) c[i + j * csc] = t[i * NR + j];
    } else {
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++) c[i * rsc + j * csc] = t[i * NR + j];
    }
}

/* A sliver as MR rows of KC elements (kc of them used). */
static void SUF(kernel_im)(int64_t kc, const real *a, const real *b, real *c, int64_t rsc,
                           int64_t csc, int mr, int nr, real alpha, real beta) {
    SUF(tile)(kc, a, KC, 1, b, c, rsc, csc, mr, nr, alpha, beta);
}

/* A sliver as kc groups of MR elements. */
static void SUF(kernel_pm)(int64_t kc, const real *a, const real *b, real *c, int64_t rsc,
                           int64_t csc, int mr, int nr, real alpha, real beta) {
    SUF(tile)(kc, a, 1, MR, b, c, rsc, csc, mr, nr, alpha, beta);
}

/* Size in elements of one packed A sliver. */
#define A_SLIVER(kc) (MR * KC)

/* Packs A(0:mc, 0:kc) (A already offset, kc <= KC) as ceil(mc/MR) slivers of MR*KC
 * elements, rows past mc zero: i-major when csa == 1, p-major otherwise. */
static void SUF(pack_a)(int64_t mc, int64_t kc, const real *A, int64_t rsa, int64_t csa,
                        real *dst) {
    for (int64_t s = 0; s < mc; s += MR, dst += MR * KC) {
        int mr = (int)qg__min64(MR, mc - s);
        const real *src = A + s * rsa;
        if (csa == 1) {
            for (int i = 0; i < mr; i++) memcpy(dst + i * KC, src + i * rsa, kc * sizeof(real));
            for (int i = mr; i < MR; i++) memset(dst + i * KC, 0, kc * sizeof(real));
        } else if (rsa == 1 && mr == MR) {
            for (int64_t p = 0; p < kc; p++) memcpy(dst + p * MR, src + p * csa, MR * sizeof(real));
        } else {
            for (int64_t p = 0; p < kc; p++) {
                real *d = dst + p * MR;
                for (int i = 0; i < mr; i++) d[i] = src[i * rsa + p * csa];
                for (int i = mr; i < MR; i++) d[i] = 0;
            }
        }
    }
}

#ifdef QG_HAVE_SHUFFLE
/* Lane l of the two outputs of one transpose stage on rows x (bit G of the row index
 * 0) and y (bit 1): swaps bit G of the row index with bit G of the lane index. */
#define TX(l, G) (((l) & (G)) ? VL + (l) - (G) : (l))
#define TY(l, G) (((l) & (G)) ? VL + (l) : (l) + (G))
#define TSTAGE(v, G)                                                                     \
    QG_UNROLL                                                                            \
    for (int i_ = 0; i_ < VL; i_++) {                                                    \
        if (!(i_ & (G))) {                                                               \
            vec x_ = v[i_], y_ = v[i_ + (G)];                                            \
            v[i_] = __builtin_shufflevector(x_, y_, QG_LANES(VL)(TX, G));                \
            v[i_ + (G)] = __builtin_shufflevector(x_, y_, QG_LANES(VL)(TY, G));          \
        }                                                                                \
    }

/* dst[p*ldd + j] = src[j*lds + p] for a VL x VL block. */
QG_INLINE void SUF(transpose_block)(const real *src, int64_t lds, real *dst, int64_t ldd) {
    vec v[VL];
    QG_UNROLL
    for (int j = 0; j < VL; j++) v[j] = SUF(vload)(src + j * lds);
    TSTAGE(v, 1)
#if VL >= 4
    TSTAGE(v, 2)
#endif
#if VL >= 8
    TSTAGE(v, 4)
#endif
#if VL >= 16
    TSTAGE(v, 8)
#endif
    QG_UNROLL
    for (int p = 0; p < VL; p++) SUF(vstore)(dst + p * ldd, v[p]);
}
#undef TX
#undef TY
#undef TSTAGE
#endif

/* Packs B(0:kc, 0:nc) (B already offset) as ceil(nc/NR) slivers of kc*NR elements,
 * columns past nc zero. */
static void SUF(pack_b)(int64_t kc, int64_t nc, const real *B, int64_t rsb, int64_t csb,
                        real *dst) {
    for (int64_t s = 0; s < nc; s += NR, dst += kc * NR) {
        int nr = (int)qg__min64(NR, nc - s);
        const real *src = B + s * csb;
        if (csb == 1) {
            if (nr == NR) {
                for (int64_t p = 0; p < kc; p++) {
                    SUF(vstore)(dst + p * NR, SUF(vload)(src + p * rsb));
                    SUF(vstore)(dst + p * NR + VL, SUF(vload)(src + p * rsb + VL));
                }
            } else {
                for (int64_t p = 0; p < kc; p++) {
                    memcpy(dst + p * NR, src + p * rsb, nr * sizeof(real));
                    memset(dst + p * NR + nr, 0, (NR - nr) * sizeof(real));
                }
            }
            continue;
        }
        int64_t p0 = 0;
        if (rsb == 1) {
            /* Transposed view: VL x VL blocks through registers, then the rest. */
#ifdef QG_HAVE_SHUFFLE
            if (nr == NR)
                for (; p0 + VL <= kc; p0 += VL) {
                    SUF(transpose_block)(src + p0, csb, dst + p0 * NR, NR);
                    SUF(transpose_block)(src + VL * csb + p0, csb, dst + p0 * NR + VL, NR);
                }
#endif
            for (int j = 0; j < nr; j++) {
                const real *col = src + j * csb;
                for (int64_t p = p0; p < kc; p++) dst[p * NR + j] = col[p];
            }
            for (int64_t p = p0; p < kc; p++)
                for (int j = nr; j < NR; j++) dst[p * NR + j] = 0;
        } else {
            for (int64_t p = 0; p < kc; p++) {
                real *d = dst + p * NR;
                for (int j = 0; j < nr; j++) d[j] = src[p * rsb + j * csb];
                for (int j = nr; j < NR; j++) d[j] = 0;
            }
        }
    }
}

/* Unpacked loop for tiny problems (and the fallback when a buffer cannot be had). */
static void SUF(gemm_direct)(int64_t m, int64_t n, int64_t k, real alpha, const real *A,
                             int64_t rsa, int64_t csa, const real *B, int64_t rsb,
                             int64_t csb, real beta, real *C, int64_t rsc, int64_t csc) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            real s = 0;
            for (int64_t p = 0; p < k; p++) s += A[i * rsa + p * csa] * B[p * rsb + j * csb];
            real *c = C + i * rsc + j * csc;
            *c = beta == 0 ? alpha * s : alpha * s + beta * *c;
        }
    }
}

/* One thread's share: the whole loop nest on C(0:m, 0:n). */
static void SUF(gemm_seq)(int64_t m, int64_t n, int64_t k, real alpha, const real *A,
                          int64_t rsa, int64_t csa, const real *B, int64_t rsb, int64_t csb,
                          real beta, real *C, int64_t rsc, int64_t csc) {
    int64_t kcb = qg__kc_block(k, KC);
    int64_t mcb = qg__min64(qg__round_up(m, MR), MC);
    int64_t ncb = qg__min64(qg__round_up(n, NR), NC);
    real *bp = qg__gemm_buf(0, (size_t)(kcb * ncb) * sizeof(real));
    real *ap = qg__gemm_buf(1, (size_t)(mcb / MR * A_SLIVER(kcb)) * sizeof(real));
    if (!bp || !ap) {
        SUF(gemm_direct)(m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
        return;
    }
    void (*kern)(int64_t, const real *, const real *, real *, int64_t, int64_t, int, int,
                 real, real) = csa == 1 ? SUF(kernel_im) : SUF(kernel_pm);
    for (int64_t jc = 0; jc < n; jc += ncb) {
        int64_t nc = qg__min64(ncb, n - jc);
        for (int64_t pc = 0; pc < k; pc += kcb) {
            int64_t kc = qg__min64(kcb, k - pc);
            real beta_pc = pc == 0 ? beta : 1;
            SUF(pack_b)(kc, nc, B + pc * rsb + jc * csb, rsb, csb, bp);
            for (int64_t ic = 0; ic < m; ic += mcb) {
                int64_t mc = qg__min64(mcb, m - ic);
                SUF(pack_a)(mc, kc, A + ic * rsa + pc * csa, rsa, csa, ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)qg__min64(NR, nc - jr);
                    const real *b = bp + jr * kc;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mr = (int)qg__min64(MR, mc - ir);
                        kern(kc, ap + ir / MR * A_SLIVER(kc), b,
                             C + (ic + ir) * rsc + (jc + jr) * csc, rsc, csc, mr, nr, alpha,
                             beta_pc);
                    }
                }
            }
        }
    }
}

/* Rough cost in cycles of computing the problem in this orientation (vectorised
 * along n): padded FMAs, packing B (transposing when its row stride is 1), packing A,
 * and the scalar write-back when C's column stride is not 1. */
static double SUF(gemm_cost)(int64_t m, int64_t n, int64_t k, int64_t rsa, int64_t csa,
                             int64_t rsb, int64_t csb, int64_t csc) {
    double mp = (double)qg__round_up(m, MR), np = (double)qg__round_up(n, NR);
    double cost = mp * np * (double)k / (2.0 * VL);
    double bper = csb == 1 ? 1.0 / VL : rsb == 1 ? QG_TRANSPOSE_COST : 2.0;
    double aper = (csa == 1 || rsa == 1) ? 1.0 / VL : 2.0;
    cost += bper * (double)k * np + aper * (double)k * mp * (double)qg__ceil_div(n, NC);
    if (csc != 1) cost += 2.0 * (double)m * (double)n * (double)qg__ceil_div(k, KC);
    return cost;
}

void SUF(qg_gemm)(int64_t m, int64_t n, int64_t k, real alpha, const real *A, int64_t rsa,
                  int64_t csa, const real *B, int64_t rsb, int64_t csb, real beta, real *C,
                  int64_t rsc, int64_t csc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0) {
        /* C = beta * C; beta == 0 writes zeros without reading. */
        if (beta == 1) return;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                real *c = C + i * rsc + j * csc;
                *c = beta == 0 ? 0 : beta * *c;
            }
        return;
    }
    /* Strides along a dim of extent 1 are meaningless: make them unit so the fast
     * packing paths apply. */
    if (m == 1) rsa = rsc = 1;
    if (n == 1) csb = csc = 1;
    if (k == 1) csa = rsb = 1;

    /* Choose the orientation: computing C^T = B^T A^T swaps m/n and the operands. */
    if (SUF(gemm_cost)(n, m, k, csb, rsb, csa, rsa, rsc) <
        SUF(gemm_cost)(m, n, k, rsa, csa, rsb, csb, csc)) {
        int64_t t;
        const real *tp;
        t = m, m = n, n = t;
        tp = A, A = B, B = tp;
        t = rsa, rsa = csb, csb = t;
        t = csa, csa = rsb, rsb = t;
        t = rsc, rsc = csc, csc = t;
    }

    int64_t work = m * n * k;
    if (work < QG_GEMM_DIRECT_WORK) {
        SUF(gemm_direct)(m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
        return;
    }
    int nt = qg__threads_for(work / (QG_GEMM_PAR_WORK / QG_PAR_THRESHOLD));
#ifdef _OPENMP
    if (nt > 1) {
        /* Split n (each thread packs all of A) or m (each packs all of B), whichever
         * duplicates less packing; cut at whole micro-tiles. */
        double bper = csb == 1 ? 1.0 : 1.0 + 16 * QG_TRANSPOSE_COST;
        int64_t nunits = qg__ceil_div(n, NR), munits = qg__ceil_div(m, MR);
        bool split_n = (double)m < bper * (double)n ? nunits >= 2 : munits < 2;
        int64_t units = split_n ? nunits : munits;
        if (units < nt) nt = (int)units;
        if (nt > 1) {
#pragma omp parallel num_threads(nt)
            {
                int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
                int64_t u0 = units * t / T, u1 = units * (t + 1) / T;
                if (split_n) {
                    int64_t j0 = u0 * NR, j1 = qg__min64(u1 * NR, n);
                    if (j1 > j0)
                        SUF(gemm_seq)(m, j1 - j0, k, alpha, A, rsa, csa, B + j0 * csb, rsb,
                                      csb, beta, C + j0 * csc, rsc, csc);
                } else {
                    int64_t i0 = u0 * MR, i1 = qg__min64(u1 * MR, m);
                    if (i1 > i0)
                        SUF(gemm_seq)(i1 - i0, n, k, alpha, A + i0 * rsa, rsa, csa, B, rsb,
                                      csb, beta, C + i0 * rsc, rsc, csc);
                }
            }
            return;
        }
    }
#endif
    (void)nt;
    SUF(gemm_seq)(m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
}

#undef NR
#undef MR
#undef A_SLIVER
#undef KC
#undef MC
#undef NC
#undef VFMA

#endif /* QG_GEMM_TEMPLATE */
