/* GEMM for float and double: C = alpha * A B + beta * C with arbitrary strides.
 *
 * Blocked path (BLIS-style loop nest, gemm_seq):
 *   for jc in n by NC                      (threads split m or n above this nest)
 *     for pc in k by KC                    pack B(pc:pc+kc, jc:jc+nc) into NR-wide slivers
 *       for ic in m by MC                  pack A(ic:ic+mc, pc:pc+kc) into MR-tall slivers
 *         for jr in nc by NR
 *           for ir in mc by MR             micro-kernel: MR x NR tile of C in registers
 * The micro-kernel vectorises along n (NR = two vectors) and broadcasts elements of A;
 * edge tiles use the same kernel at a smaller height (2, 4, ..., MR) or one vector
 * wide, on zero-padded packs, and write back only their valid part. Packed A has one
 * of two layouts, whichever is a plain copy of the source: MR rows of kc ("i-major")
 * when A is row-major, else kc groups of MR ("p-major"). Packed B is kc rows of NR.
 * Only B with unit row stride (a transposed view) needs a transposing pack (VL x VL
 * blocks through registers). An operand that is already laid out as the kernel reads
 * it and is reused little (the other dim small) is read in place, unpacked.
 *
 * Dot-product path (gemm_dot): for X @ W^T-like problems (A and B^T both contiguous
 * along k) with one small dim, outputs are dot products accumulated along k in vector
 * lanes, then reduced VL at a time.
 *
 * The orientation (C or C^T = B^T A^T) and the path come from a rough cost model.
 *
 * Determinism: k is never split between threads, the KC blocking depends only on k,
 * and the path only on the shape and strides; every kernel variant (any height or
 * width, packed or in place, edge or not) gives each element the same sequence of
 * operations. So results are bitwise the same run to run and whatever the thread count.
 *
 * The per-type code lives once, below the `#else` of QG_GEMM_TEMPLATE; this file
 * includes itself twice to instantiate it for float and double. The micro-kernels it
 * drives (the register tiles, and the dot-product tile) are in gemm_kernel.h, which
 * each instance includes; the tile shape (QG_MR, QG_NR) is gemm.h's. */
#ifndef QG_GEMM_TEMPLATE

#include "kernels/isa.h" /* first: the renaming of a portable build's copies */

#include <stdint.h>
#include <string.h>

#include "gemm.h"
#include "gemm_kernel.h" /* the vector types and FMA (the kernels come per dtype) */
#include "op_internal.h" /* the declarations this file defines */

/* Cache blocking, in bytes (the same for both dtypes, as NR*sizeof is the same):
 *   KC = 64K / (NR * sizeof) = 512 with AVX-512: an i-major A sliver (12 x 512 floats,
 *        24 KB) stays in L1 and the B sliver (64 KB) in L2, from where the kernel
 *        needs only ~15 B/cycle. Measured better than L1-sized B slivers (KC = 192..256),
 *        mostly for making fewer passes over C.
 *   MC: the packed A block (MC x KC, 512 KB) stays in L2 (2 MB per core here);
 *   NC: the packed B panel (KC x NC, 4 MB) is for L3. */
#define QG_KC_BYTES (64 * 1024)
#define QG_MC_BYTES (512 * 1024)
#define QG_NC_BYTES (4 * 1024 * 1024)

/* Operands may be read in place (not packed) when the other dim is at most this. */
#define QG_DIRECT_A_N 256
#define QG_DIRECT_B_M 64
/* Problems with m*n*k below this take the unpacked loop. */
#define QG_GEMM_DIRECT_WORK 4096
/* Work (m*n*k) per thread before a second thread pays off. */
#define QG_GEMM_PAR_WORK (1 << 20)

/* Per-thread packing buffer (one block holding both packed operands), grown and never
 * shrunk, so repeated calls with the same shapes allocate nothing. OpenMP workers get
 * their own. It stays allocated for the life of the thread and is counted by
 * qg_live_allocations: one block per thread that has run a GEMM. */
static _Thread_local void *tl_buf;
static _Thread_local size_t tl_cap;

static void *qg__gemm_buf(size_t nbytes) {
    if (tl_cap < nbytes) {
        size_t cap = nbytes + nbytes / 4;
        void *p = qg__alloc(cap);
        if (!p) return NULL;
        qg__free(tl_buf);
        tl_buf = p;
        tl_cap = cap;
    }
    return tl_buf;
}

int64_t qg__gemm_mr(void) { return QG_MR; }
int64_t qg__gemm_vb(void) { return QG_VB; }

static inline int64_t qg__min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t qg__max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t qg__ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t qg__round_up(int64_t a, int64_t b) { return qg__ceil_div(a, b) * b; }
static inline int64_t qg__abs64(int64_t a) { return a < 0 ? -a : a; }

/* k split into equal blocks of at most kc_max. */
static inline int64_t qg__kc_block(int64_t k, int64_t kc_max) {
    return qg__ceil_div(k, qg__ceil_div(k, kc_max));
}

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

/* C = A B + beta C for a float dtype, on untyped pointers (ops dispatch through it). */
void qg__gemm(qg_dtype dt, int64_t m, int64_t n, int64_t k, const char *A, int64_t rsa, int64_t csa, const char *B,
              int64_t rsb, int64_t csb, double beta, char *C, int64_t rsc, int64_t csc) {
    qg__prof *pf = qg__prof_on;
    const double t0 = pf ? qg__now() : 0;
    if (dt == QG_F32)
        qg__gemm_f32(m, n, k, 1.0f, (const float *)A, rsa, csa, (const float *)B, rsb, csb, (float)beta, (float *)C, rsc,
                    csc);
    else
        qg__gemm_f64(m, n, k, 1.0, (const double *)A, rsa, csa, (const double *)B, rsb, csb, beta, (double *)C, rsc, csc);
    if (pf) {
        double dt_s = qg__now() - t0;
#ifdef _OPENMP
        if (!omp_in_parallel()) dt_s *= qg_get_num_threads();
#pragma omp atomic
#endif
        pf->gemm += dt_s;
    }
}

#else /* ------------------------------------------------------------------ template */

#define NR ((int)QG_NR(sizeof(real))) /* the tile, gemm.h's: MR x NR */
#define MR QG_MR
#define KC ((int64_t)(QG_KC_BYTES / (NR * sizeof(real))))
#define MC qg__round_up((int64_t)(QG_MC_BYTES / (KC * sizeof(real))), MR)
#define NC qg__round_up((int64_t)(QG_NC_BYTES / (KC * sizeof(real))), NR)
/* Row stride of an i-major packed A sliver: KC plus a vector, so that the MR rows do
 * not all fall in the same few L1 sets. */
#define LDA_IM (KC + VL)

#include "gemm_kernel.h" /* vload/vstore/vbcast, the kernel tables, kernel_for, dot_tile */

/* Packs A(0:mc, 0:kc) (A already offset, kc <= KC) as ceil(mc/MR) slivers, sliver s
 * at dst + s*MR*LDA_IM, rows past mc zero: i-major when csa == 1, p-major otherwise. */
static void SUF(pack_a)(int64_t mc, int64_t kc, const real *A, int64_t rsa, int64_t csa,
                        real *dst) {
    for (int64_t s = 0; s < mc; s += MR, dst += MR * LDA_IM) {
        int mr = (int)qg__min64(MR, mc - s);
        const real *src = A + s * rsa;
        if (csa == 1) {
            for (int i = 0; i < mr; i++)
                memcpy(dst + i * LDA_IM, src + i * rsa, kc * sizeof(real));
            for (int i = mr; i < MR; i++) memset(dst + i * LDA_IM, 0, kc * sizeof(real));
        } else if (rsa == 1 && mr == MR) {
            for (int64_t p = 0; p < kc; p++) memcpy(dst + p * MR, src + p * csa, MR * sizeof(real));
        } else {
            for (int64_t p = 0; p < kc; p++) {
                real *d = dst + p * MR;
                memset(d, 0, MR * sizeof(real));
                for (int i = 0; i < mr; i++) d[i] = src[i * rsa + p * csa];
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

/* dst[p*ldd + j] = src[j*lds + p] for a VL x VL block of which the first `rows` source
 * rows exist (the others read as zero). */
QG_INLINE void SUF(transpose_block)(const real *src, int64_t lds, real *dst, int64_t ldd,
                                    int rows) {
    vec v[VL];
    QG_UNROLL
    for (int j = 0; j < VL; j++) v[j] = j < rows ? SUF(vload)(src + j * lds) : (vec){0};
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
            if (nr == NR) {
                for (; p0 + VL <= kc; p0 += VL) {
                    SUF(transpose_block)(src + p0, csb, dst + p0 * NR, NR, VL);
                    SUF(transpose_block)(src + VL * csb + p0, csb, dst + p0 * NR + VL, NR, VL);
                }
            } else {
                int r1 = nr > VL ? nr - VL : 0;
                for (; p0 + VL <= kc; p0 += VL) {
                    SUF(transpose_block)(src + p0, csb, dst + p0 * NR, NR, nr - r1);
                    if (r1)
                        SUF(transpose_block)(src + VL * csb + p0, csb, dst + p0 * NR + VL, NR,
                                             r1);
                    else
                        for (int p = 0; p < VL; p++)
                            SUF(vstore)(dst + (p0 + p) * NR + VL, (vec){0});
                }
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

/* Whether to read A (B) in place rather than pack it: only when it is laid out as the
 * kernel wants and is reused little (the other dim is small), so that copying it would
 * not pay for itself, and its stride does not pile a sliver's lines onto a few L1 sets
 * (unless reuse is so low that it does not matter). */
static inline bool SUF(stride_ok)(int64_t stride) {
    return (qg__abs64(stride) * (int64_t)sizeof(real)) % 2048 != 0;
}
static inline bool SUF(direct_a)(int64_t m, int64_t n, int64_t k, int64_t rsa, int64_t csa) {
    bool small = m * qg__min64(k, KC) * (int64_t)sizeof(real) <= 32768; /* stays in L1 */
    if (csa == 1) return (n <= QG_DIRECT_A_N || small) && (n <= 2 * NR || SUF(stride_ok)(rsa));
    return rsa == 1 && (n <= 2 * NR || small) && SUF(stride_ok)(csa);
}
static inline bool SUF(direct_b)(int64_t m, int64_t rsb, int64_t csb) {
    return csb == 1 && m <= QG_DIRECT_B_M && (m <= 3 * MR || SUF(stride_ok)(rsb));
}

/* One thread's share: the whole loop nest on C(0:m, 0:n). */
static void SUF(gemm_seq)(int64_t m, int64_t n, int64_t k, real alpha, const real *A,
                          int64_t rsa, int64_t csa, const real *B, int64_t rsb, int64_t csb,
                          real beta, real *C, int64_t rsc, int64_t csc) {
    int64_t kcb = qg__kc_block(k, KC);
    int64_t mcb = qg__min64(qg__round_up(m, MR), MC);
    int64_t ncb = qg__min64(qg__round_up(n, NR), NC);
    bool da = SUF(direct_a)(m, n, k, rsa, csa), db = SUF(direct_b)(m, rsb, csb);
    /* Read in place, an operand still needs its partial edge sliver packed. */
    size_t nb = (size_t)qg__round_up(kcb * (db ? NR : ncb), 64);
    size_t na = (size_t)((da ? MR : mcb) * LDA_IM);
    real *bp = qg__gemm_buf((nb + na) * sizeof(real)), *ap = bp ? bp + nb : NULL;
    if (!bp) {
        SUF(gemm_direct)(m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
        return;
    }
    const SUF(kernel_fn) *kpacked = csa == 1 ? SUF(kernels_IM) : SUF(kernels_PM);
    const SUF(kernel_fn) *kdirect = csa == 1 ? SUF(kernels_ROWS) : SUF(kernels_COLS);
    int64_t lda_direct = csa == 1 ? rsa : csa;
    for (int64_t jc = 0; jc < n; jc += ncb) {
        int64_t nc = qg__min64(ncb, n - jc);
        for (int64_t pc = 0; pc < k; pc += kcb) {
            int64_t kc = qg__min64(kcb, k - pc);
            real beta_pc = pc == 0 ? beta : 1;
            const real *Bpc = B + pc * rsb + jc * csb;
            int64_t nfull = db ? nc / NR * NR : 0; /* slivers of B read in place */
            SUF(pack_b)(kc, nc - nfull, Bpc + nfull * csb, rsb, csb, bp);
            for (int64_t ic = 0; ic < m; ic += mcb) {
                int64_t mc = qg__min64(mcb, m - ic);
                const real *Apc = A + ic * rsa + pc * csa;
                /* Slivers of A read in place: all full ones, and a partial last one when
                 * the kernels it meets (see kernel_for) read exactly its rows. */
                int64_t mrem = mc % MR, nrem = nc % NR;
                bool edge = mrem % 2 == 0 && !(mrem > QG_NARROW_MIN && nrem && nrem <= VL);
                int64_t mfull = da ? mc - mrem + (edge ? mrem : 0) : 0;
                SUF(pack_a)(mc - mfull, kc, Apc + mfull * rsa, rsa, csa, ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)qg__min64(NR, nc - jr);
                    const real *b = jr < nfull ? Bpc + jr : bp + (jr - nfull) * kc;
                    int64_t ldb = jr < nfull ? rsb : NR;
                    real *cj = C + ic * rsc + (jc + jr) * csc;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mr = (int)qg__min64(MR, mc - ir);
                        if (ir < mfull)
                            SUF(kernel_for)(kdirect, mr, nr)(kc, Apc + ir * rsa, lda_direct, b,
                                                             ldb, cj + ir * rsc, rsc, csc, mr,
                                                             nr, alpha, beta_pc);
                        else
                            SUF(kernel_for)(kpacked, mr, nr)(kc, ap + (ir - mfull) * LDA_IM, 0,
                                                             b, ldb, cj + ir * rsc, rsc, csc,
                                                             mr, nr, alpha, beta_pc);
                    }
                }
            }
        }
    }
}

/* ---- Dot-product path, for A and B^T both contiguous along k (X @ W^T) when one of
 * m, n is small: there the blocked path would have to transpose one operand or run
 * narrow tiles. The outputs go in groups of DM rows x DN columns (DM * DN = VL) to
 * dot_tile (gemm_kernel.h). */
#define DM (VL >= 4 ? 4 : VL)
#define DN (VL / DM)

/* C(0:m, 0:n) by dot products: A(i,p) at A[i*rsa + p], B(p,j) at B[j*csb + p]. Groups
 * of DM rows x DN columns, then the columns left over (fewer than DN) in groups of
 * VL/2 rows x 2 columns and VL rows x 1 column. */
static void SUF(gemm_dot)(int64_t m, int64_t n, int64_t k, real alpha, const real *A,
                          int64_t rsa, const real *B, int64_t csb, real beta, real *C,
                          int64_t rsc, int64_t csc) {
    int64_t n4 = n / DN * DN;
    const real *a[VL], *b[VL];
    for (int64_t i0 = 0; i0 < m && n4 > 0; i0 += DM) {
        int mr = (int)qg__min64(DM, m - i0);
        for (int i = 0; i < DM; i++) a[i] = A + (i0 + (i < mr ? i : mr - 1)) * rsa;
        for (int64_t j0 = 0; j0 < n4; j0 += DN) {
            for (int j = 0; j < DN; j++) b[j] = B + (j0 + j) * csb;
            SUF(dot_tile)(DM, DN, k, a, b, C + i0 * rsc + j0 * csc, rsc, csc, mr, DN, alpha,
                          beta);
        }
    }
    int64_t j0 = n4;
    if (DN > 2 && n - j0 >= 2) { /* two columns left over: groups of VL/2 rows x 2 */
        b[0] = B + j0 * csb, b[1] = B + (j0 + 1) * csb;
        for (int64_t i0 = 0; i0 < m; i0 += VL / 2) {
            int mr = (int)qg__min64(VL / 2, m - i0);
            for (int i = 0; i < VL / 2; i++) a[i] = A + (i0 + (i < mr ? i : mr - 1)) * rsa;
            SUF(dot_tile)(VL / 2, 2, k, a, b, C + i0 * rsc + j0 * csc, rsc, csc, mr, 2,
                          alpha, beta);
        }
        j0 += 2;
    }
    for (; j0 < n; j0++) { /* one: groups of VL rows */
        b[0] = B + j0 * csb;
        for (int64_t i0 = 0; i0 < m; i0 += VL) {
            int mr = (int)qg__min64(VL, m - i0);
            for (int i = 0; i < VL; i++) a[i] = A + (i0 + (i < mr ? i : mr - 1)) * rsa;
            SUF(dot_tile)(VL, 1, k, a, b, C + i0 * rsc + j0 * csc, rsc, csc, mr, 1, alpha,
                          beta);
        }
    }
}

/* Cycles, roughly, of gemm_dot (FMAs, plus the reduction and write-back per output). */
static double SUF(dot_cost)(int64_t m, int64_t n, int64_t k) {
    double steps = (double)qg__ceil_div(k, VL) / 2.0 + 2.0;
    int64_t n4 = n / DN * DN;
    return ((double)qg__round_up(m, DM) * (double)n4 +
            (double)qg__round_up(m, VL) * (double)(n - n4)) * steps;
}

/* Rough cost in cycles of computing the problem in this orientation (vectorised
 * along n): FMAs including the padding of edge tiles, packing B (transposing when its
 * row stride is 1), packing A, and the scalar write-back when C's column stride is not
 * 1. Only used to choose between the two orientations. */
static double SUF(gemm_cost)(int64_t m, int64_t n, int64_t k, int64_t rsa, int64_t csa,
                             int64_t rsb, int64_t csb, int64_t csc) {
    int64_t mr = m % MR, nr = n % NR;
    double mp = (double)(m - mr + (mr ? qg__round_up(mr, 4) : 0));
    double np = (double)(n - nr + (nr ? qg__round_up(nr, VL) : 0));
    double cost = mp * np * (double)k / (2.0 * VL);
    double bper = csb == 1 ? (SUF(direct_b)(m, rsb, csb) ? 0 : 1.0 / VL)
                  : rsb == 1 ? (nr == n ? 1.0 : QG_TRANSPOSE_COST) : 2.0;
    double aper = (csa == 1 || rsa == 1) ? (SUF(direct_a)(m, n, k, rsa, csa) ? 0 : 1.0 / VL) : 2.0;
    cost += bper * (double)k * np + aper * (double)k * mp * (double)qg__ceil_div(n, NC);
    if (csc != 1) cost += 2.0 * (double)m * (double)n * (double)qg__ceil_div(k, KC);
    return cost;
}

void SUF(qg__gemm)(int64_t m, int64_t n, int64_t k, real alpha, const real *A, int64_t rsa,
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

    /* Choose the orientation (computing C^T = B^T A^T swaps m/n and the operands) and
     * the path. For the dot-product path the orientation puts the small dim in n. */
    bool dot = false;
    double cost = SUF(gemm_cost)(m, n, k, rsa, csa, rsb, csb, csc);
    double cost_t = SUF(gemm_cost)(n, m, k, csb, rsb, csa, rsa, rsc);
    bool swap = cost_t < cost;
    int64_t small = qg__min64(m, n);
    if (csa == 1 && rsb == 1 && (small <= DN || small * k * (int64_t)sizeof(real) <= 24576)) {
        /* (only when the small operand stays in L1: the dot path does not block) */
        double cost_dot = SUF(dot_cost)(qg__max64(m, n), small, k);
        if (cost_dot < (swap ? cost_t : cost)) dot = true, swap = m < n;
    }
    if (swap) {
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
    if (nt > 1 && omp_in_parallel()) nt = 1; /* called from a parallel loop: no nesting */
    if (nt > 1) {
        /* Blocked path: split n (each thread packs all of A) or m (each packs all of B),
         * whichever duplicates less packing, at whole micro-tiles. Dot path: split m. */
        double bper = csb == 1 ? 1.0 : 1.0 + 16 * QG_TRANSPOSE_COST;
        int64_t nunits = qg__ceil_div(n, NR), munits = qg__ceil_div(m, dot ? VL : MR);
        bool split_n = !dot && ((double)m < bper * (double)n ? nunits >= 2 : munits < 2);
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
                    int64_t mu = dot ? VL : MR;
                    int64_t i0 = u0 * mu, i1 = qg__min64(u1 * mu, m);
                    if (i1 > i0 && dot)
                        SUF(gemm_dot)(i1 - i0, n, k, alpha, A + i0 * rsa, rsa, B, csb, beta,
                                      C + i0 * rsc, rsc, csc);
                    else if (i1 > i0)
                        SUF(gemm_seq)(i1 - i0, n, k, alpha, A + i0 * rsa, rsa, csa, B, rsb,
                                      csb, beta, C + i0 * rsc, rsc, csc);
                }
            }
            return;
        }
    }
#endif
    (void)nt;
    if (dot)
        SUF(gemm_dot)(m, n, k, alpha, A, rsa, B, csb, beta, C, rsc, csc);
    else
        SUF(gemm_seq)(m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
}

#undef DM
#undef DN
#undef NR
#undef MR
#undef KC
#undef LDA_IM
#undef MC
#undef NC

#endif /* QG_GEMM_TEMPLATE */
