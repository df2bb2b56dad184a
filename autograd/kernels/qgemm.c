/* The int8 GEMM (qgemm.h): C(m, n) = (A(m, k) - za) W(n, k)^T in int32, A uint8 read in
 * place, W int8 packed once.
 *
 * Packed layout (one for every path): k padded to kp (a multiple of 4, zeros), n to np
 * (a multiple of QG_QB = 16, zero columns). Block b holds columns 16b..16b+15 as kp/4
 * k-quads of 64 bytes; in quad q, column c's 4 bytes W[16b+c][4q..4q+3] are at 4c..4c+3:
 *     data[(b * kp/4 + q) * 64 + 4c + t] = W[16b + c][4q + t]
 * So one 64-byte load is a quad of 16 columns, the 16 int32 lanes of a zmm (or two ymm),
 * and A's 4 bytes A[i][4q..4q+3] broadcast to every lane meet it in vpdpbusd or
 * vpmaddubsw + vpmaddwd. The A quad past k is read partially (memcpy) and its zero
 * weights cancel whatever it holds. wsum has np entries (zero in the padding).
 *
 * The za term comes last: C = sum(A W) - za * wsum[j], all in wrapping int32 (uint32 in
 * the scalar code), which is the same mod 2^32 in any order, so every path, tile shape
 * and thread split gives the same bits.
 *
 * vpmaddubsw saturation: a pair a0 w0 + a1 w1 (a in 0..255, w in -128..127) leaves int16
 * only if some |w| > 64 and some a > 127 (255 * 64 * 2 = 32640; 127 * 128 * 2 = 32512).
 * The AVX2 and AVX-512 BW paths use it plainly when the pack's wmax_abs <= 64 (4-bit and
 * 2-bit weights) or when the tile's rows of A have no byte > 127 (checked per row panel,
 * O(m k) beside the GEMM's O(m n k)); otherwise exactly, with a = lo + 128 hi
 * (lo = a & 127, hi = a >> 7): two saturation-free vpmaddubsw, weighted 1 and 128 by
 * vpmaddwd. VNNI's vpdpbusd does not saturate. */
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "kernels/isa.h"
#include "kernels/qgemm.h"

#if defined(__x86_64__)
#include "kernels/qx86.h"
#define QG_QX86 1
#endif

#define QG_QB 16     /* columns per packed block */
#define QG_QMR 8     /* rows per micro-tile (AVX-512 paths; AVX2 takes 4) */
#define QG_QNB 2     /* packed blocks per micro-tile (AVX-512 paths; AVX2 takes 1) */
#define QG_QPAR 64   /* m*n*k per unit of qg__threads_for's work: int8 is fast */

static inline int64_t qg__qmin(int64_t a, int64_t b) { return a < b ? a : b; }

/* What every tile reads: the call's operands. */
typedef struct {
    const uint8_t *a;
    int64_t lda;
    int32_t za;
    const qg__qpack *p;
    int32_t *c;
    int64_t ldc;
} qg__qjob;

/* ------------------------------------------------------------------ scalar */

/* Rows [i0, i1) x blocks [b0, b1): the reference, in uint32 (wrapping, no UB). */
static void qg__range_scalar(const qg__qjob *g, int64_t i0, int64_t i1, int64_t b0, int64_t b1) {
    const qg__qpack *p = g->p;
    int64_t k = p->k, kq = p->kp / 4;
    for (int64_t i = i0; i < i1; i++) {
        const uint8_t *a = g->a + i * g->lda;
        for (int64_t b = b0; b < b1; b++) {
            const int8_t *w = p->data + b * kq * 64;
            uint32_t acc[QG_QB] = {0};
            for (int64_t q = 0; q < kq; q++) {
                uint8_t aq[4] = {0, 0, 0, 0};
                memcpy(aq, a + 4 * q, (size_t)qg__qmin(4, k - 4 * q));
                const int8_t *wq = w + q * 64;
                for (int col = 0; col < QG_QB; col++)
                    for (int t = 0; t < 4; t++) acc[col] += (uint32_t)(aq[t] * wq[4 * col + t]);
            }
            int64_t j0 = b * QG_QB, nc = qg__qmin(QG_QB, p->n - j0);
            int32_t *c = g->c + i * g->ldc + j0;
            for (int col = 0; col < nc; col++)
                c[col] = (int32_t)(acc[col] - (uint32_t)g->za * (uint32_t)p->wsum[j0 + col]);
        }
    }
}

#ifdef QG_QX86
#define QG_TAVX2 __attribute__((target("avx2,fma")))
#define QG_TBW __attribute__((target("avx512f,avx512bw")))
#define QG_TVNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define QG_INL static inline __attribute__((always_inline))

static inline uint32_t qg__ld32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The last, partial quad of a row (nbytes of 1..3), zero-filled: never reads past k. */
static inline uint32_t qg__ld_tail(const uint8_t *p, int64_t nbytes) {
    /* byte loads, not a memcpy call (which would spill the accumulators around it) */
    return (uint32_t)p[0] | (nbytes > 1 ? (uint32_t)p[1] << 8 : 0) | (nbytes > 2 ? (uint32_t)p[2] << 16 : 0);
}

/* Whether rows a[0..mr) (k bytes each) have no byte > 127: vpmaddubsw is then exact. */
static bool qg__rows_small(const uint8_t *a, int64_t lda, int mr, int64_t k) {
    uint64_t acc = 0;
    for (int r = 0; r < mr; r++) {
        const uint8_t *row = a + r * lda;
        int64_t t = 0;
        for (; t + 8 <= k; t += 8) {
            uint64_t v;
            memcpy(&v, row + t, 8);
            acc |= v;
        }
        for (; t < k; t++) acc |= row[t];
    }
    return (acc & 0x8080808080808080ull) == 0;
}

/* ------------------------------------------------------------------ AVX-512 VNNI */

/* Tile: rows i..i+mr x blocks b..b+nb (16 nb columns), C = acc - za wsum.
 * acc: s x mr x nb zmm; s k-quads in flight per accumulator set (s = 8 / (mr nb),
 * at least 1) so that small tiles still hide vpdpbusd's latency; summed at the end. */
QG_INL QG_TVNNI void qg__tile_vnni(const int mr, const int nb, const qg__qjob *g, int64_t i, int64_t b) {
    const qg__qpack *p = g->p;
    const int s = mr * nb <= 2 ? 8 : mr * nb <= 4 ? 4 : mr * nb <= 8 ? 2 : 1;
    const int64_t k = p->k, kq = k / 4, bs = p->kp / 4 * 64;
    const uint8_t *a = g->a + i * g->lda;
    const int64_t lda = g->lda;
    const int8_t *w = p->data + b * bs;
    __m512i acc[16]; /* [(u * mr + r) * nb + nbi], s * mr * nb <= 16 */
#pragma GCC unroll 16
    for (int x = 0; x < s * mr * nb; x++) acc[x] = _mm512_setzero_si512();
    int64_t q = 0;
    for (; q + s <= kq; q += s) {
#pragma GCC unroll 8
        for (int u = 0; u < s; u++) {
            __m512i wv[2];
#pragma GCC unroll 2
            for (int y = 0; y < nb; y++) wv[y] = _mm512_loadu_si512(w + y * bs + (q + u) * 64);
#pragma GCC unroll 8
            for (int r = 0; r < mr; r++) {
                __m512i av = _mm512_set1_epi32((int)qg__ld32(a + r * lda + 4 * (q + u)));
#pragma GCC unroll 2
                for (int y = 0; y < nb; y++)
                    acc[(u * mr + r) * nb + y] = _mm512_dpbusd_epi32(acc[(u * mr + r) * nb + y], av, wv[y]);
            }
        }
    }
    for (; q < kq + (k % 4 != 0); q++) { /* leftover quads, then the partial one */
        __m512i wv[2];
#pragma GCC unroll 2
        for (int y = 0; y < nb; y++) wv[y] = _mm512_loadu_si512(w + y * bs + q * 64);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const uint8_t *ap = a + r * lda + 4 * q;
            __m512i av = _mm512_set1_epi32((int)(q < kq ? qg__ld32(ap) : qg__ld_tail(ap, k - 4 * q)));
#pragma GCC unroll 2
            for (int y = 0; y < nb; y++) acc[r * nb + y] = _mm512_dpbusd_epi32(acc[r * nb + y], av, wv[y]);
        }
    }
#pragma GCC unroll 8
    for (int u = 1; u < s; u++)
#pragma GCC unroll 16
        for (int x = 0; x < mr * nb; x++) acc[x] = _mm512_add_epi32(acc[x], acc[u * mr * nb + x]);
    const __m512i zav = _mm512_set1_epi32(g->za);
#pragma GCC unroll 2
    for (int y = 0; y < nb; y++) {
        int64_t j0 = (b + y) * QG_QB, nc = p->n - j0;
        __m512i zw = _mm512_mullo_epi32(zav, _mm512_loadu_si512(p->wsum + j0));
        __mmask16 msk = nc >= QG_QB ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++)
            _mm512_mask_storeu_epi32(g->c + (i + r) * g->ldc + j0, msk, _mm512_sub_epi32(acc[r * nb + y], zw));
    }
}

#define QG_VNNI_TILE(MR_, NB_, g, i, b) qg__tile_vnni(MR_, NB_, g, i, b)
QG_TVNNI static void qg__range_vnni(const qg__qjob *g, int64_t i0, int64_t i1, int64_t b0, int64_t b1) {
    for (int64_t i = i0; i < i1; i += QG_QMR) {
        int mr = (int)qg__qmin(QG_QMR, i1 - i);
        for (int64_t b = b0; b < b1; b += QG_QNB) {
            int nb = (int)qg__qmin(QG_QNB, b1 - b);
            QG_TILE_SWITCH(QG_VNNI_TILE, mr, nb, g, i, b)
        }
    }
}

/* ------------------------------------------------------------------ AVX-512 BW */

/* Tile: rows i..i+mr x blocks b..b+nb. exact: A's bytes may be > 127 with |W| > 64, so
 * each product goes as lo + 128 hi (see the top). Only the accumulate (vpaddd, latency
 * 1) is loop-carried, so one accumulator set suffices. */
QG_INL QG_TBW void qg__tile_bw(const int mr, const int nb, const bool exact, const qg__qjob *g, int64_t i,
                               int64_t b) {
    const qg__qpack *p = g->p;
    const int64_t k = p->k, kq = k / 4, bs = p->kp / 4 * 64;
    const uint8_t *a = g->a + i * g->lda;
    const int64_t lda = g->lda;
    const int8_t *w = p->data + b * bs;
    const __m512i ones = _mm512_set1_epi16(1), c128 = _mm512_set1_epi16(128);
    const __m512i lo7 = _mm512_set1_epi8(0x7f), one8 = _mm512_set1_epi8(1);
    __m512i acc[16];
#pragma GCC unroll 16
    for (int x = 0; x < mr * nb; x++) acc[x] = _mm512_setzero_si512();
    for (int64_t q = 0; q < kq + (k % 4 != 0); q++) {
        __m512i wv[2];
#pragma GCC unroll 2
        for (int y = 0; y < nb; y++) wv[y] = _mm512_loadu_si512(w + y * bs + q * 64);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const uint8_t *ap = a + r * lda + 4 * q;
            __m512i av = _mm512_set1_epi32((int)(q < kq ? qg__ld32(ap) : qg__ld_tail(ap, k - 4 * q)));
            if (!exact) {
#pragma GCC unroll 2
                for (int y = 0; y < nb; y++)
                    acc[r * nb + y] = _mm512_add_epi32(
                        acc[r * nb + y], _mm512_madd_epi16(_mm512_maddubs_epi16(av, wv[y]), ones));
            } else {
                __m512i lo = _mm512_and_si512(av, lo7);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(av, 7), one8);
#pragma GCC unroll 2
                for (int y = 0; y < nb; y++) {
                    __m512i t = _mm512_add_epi32(_mm512_madd_epi16(_mm512_maddubs_epi16(lo, wv[y]), ones),
                                                 _mm512_madd_epi16(_mm512_maddubs_epi16(hi, wv[y]), c128));
                    acc[r * nb + y] = _mm512_add_epi32(acc[r * nb + y], t);
                }
            }
        }
    }
    const __m512i zav = _mm512_set1_epi32(g->za);
#pragma GCC unroll 2
    for (int y = 0; y < nb; y++) {
        int64_t j0 = (b + y) * QG_QB, nc = p->n - j0;
        __m512i zw = _mm512_mullo_epi32(zav, _mm512_loadu_si512(p->wsum + j0));
        __mmask16 msk = nc >= QG_QB ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++)
            _mm512_mask_storeu_epi32(g->c + (i + r) * g->ldc + j0, msk, _mm512_sub_epi32(acc[r * nb + y], zw));
    }
}

#define QG_BW_TILE(MR_, NB_, ex, g, i, b) qg__tile_bw(MR_, NB_, ex, g, i, b)
QG_TBW static void qg__range_bw(const qg__qjob *g, int64_t i0, int64_t i1, int64_t b0, int64_t b1) {
    for (int64_t i = i0; i < i1; i += QG_QMR) {
        int mr = (int)qg__qmin(QG_QMR, i1 - i);
        bool exact = g->p->wmax_abs > 64 && !qg__rows_small(g->a + i * g->lda, g->lda, mr, g->p->k);
        for (int64_t b = b0; b < b1; b += QG_QNB) {
            int nb = (int)qg__qmin(QG_QNB, b1 - b);
            if (exact) {
                QG_TILE_SWITCH(QG_BW_TILE, mr, nb, true, g, i, b)
            } else {
                QG_TILE_SWITCH(QG_BW_TILE, mr, nb, false, g, i, b)
            }
        }
    }
}

/* ------------------------------------------------------------------ AVX2 */

/* Tile: rows i..i+mr x block b (16 columns: two ymm of 8 int32 lanes, the low and high
 * 32 bytes of each 64-byte quad). Plain: mr <= 6, 12 accumulators, 2 weight vectors and
 * the broadcast row bytes fill the 16 ymm registers, so a weight quad (read from L2 at
 * every row panel) serves 6 rows; exact: mr <= 4, registers for its constants. */
QG_INL QG_TAVX2 void qg__tile_avx2(const int mr, const bool exact, const qg__qjob *g, int64_t i, int64_t b) {
    const qg__qpack *p = g->p;
    const int64_t k = p->k, kq = k / 4, bs = p->kp / 4 * 64;
    const uint8_t *a = g->a + i * g->lda;
    const int64_t lda = g->lda;
    const int8_t *w = p->data + b * bs;
    const __m256i ones = _mm256_set1_epi16(1), c128 = _mm256_set1_epi16(128);
    const __m256i lo7 = _mm256_set1_epi8(0x7f), one8 = _mm256_set1_epi8(1);
    __m256i acc[12]; /* [r * 2 + half] */
#pragma GCC unroll 12
    for (int x = 0; x < 2 * mr; x++) acc[x] = _mm256_setzero_si256();
    for (int64_t q = 0; q < kq + (k % 4 != 0); q++) {
        __m256i wv[2];
        wv[0] = _mm256_loadu_si256((const __m256i *)(w + q * 64));
        wv[1] = _mm256_loadu_si256((const __m256i *)(w + q * 64 + 32));
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            const uint8_t *ap = a + r * lda + 4 * q;
            __m256i av = _mm256_set1_epi32((int)(q < kq ? qg__ld32(ap) : qg__ld_tail(ap, k - 4 * q)));
            if (!exact) {
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++)
                    acc[2 * r + h] = _mm256_add_epi32(
                        acc[2 * r + h], _mm256_madd_epi16(_mm256_maddubs_epi16(av, wv[h]), ones));
            } else {
                __m256i lo = _mm256_and_si256(av, lo7);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(av, 7), one8);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    __m256i t = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, wv[h]), ones),
                                                 _mm256_madd_epi16(_mm256_maddubs_epi16(hi, wv[h]), c128));
                    acc[2 * r + h] = _mm256_add_epi32(acc[2 * r + h], t);
                }
            }
        }
    }
    const __m256i zav = _mm256_set1_epi32(g->za);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int64_t j0 = b * QG_QB, nc = p->n - j0;
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i zw = _mm256_mullo_epi32(zav, _mm256_loadu_si256((const __m256i *)(p->wsum + j0 + 8 * h)));
        int64_t left = qg__qmin(8, nc - 8 * h); /* columns of this half to write: <= 0 none */
        __m256i msk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left > 0 ? left : 0)), lane);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            int32_t *cp = g->c + (i + r) * g->ldc + j0 + 8 * h;
            __m256i v = _mm256_sub_epi32(acc[2 * r + h], zw);
            if (left >= 8)
                _mm256_storeu_si256((__m256i *)cp, v);
            else if (left > 0)
                _mm256_maskstore_epi32((int *)cp, msk, v);
        }
    }
}

QG_TAVX2 static void qg__range_avx2(const qg__qjob *g, int64_t i0, int64_t i1, int64_t b0, int64_t b1) {
    for (int64_t i = i0, mr; i < i1; i += mr) {
        /* panels of 6 rows (8 left: two of 4; 5 left: one of 5), narrowed to 4 where the
         * exact form is needed */
        const int64_t left = i1 - i;
        mr = left >= 6 && left != 8 ? 6 : left == 5 ? 5 : qg__qmin(4, left);
        bool exact = g->p->wmax_abs > 64 && !qg__rows_small(g->a + i * g->lda, g->lda, (int)mr, g->p->k);
        if (exact && mr > 4) mr = 4, exact = !qg__rows_small(g->a + i * g->lda, g->lda, 4, g->p->k);
        for (int64_t b = b0; b < b1; b++) {
            if (exact) {
                switch (mr) {
                case 1: qg__tile_avx2(1, true, g, i, b); break;
                case 2: qg__tile_avx2(2, true, g, i, b); break;
                case 3: qg__tile_avx2(3, true, g, i, b); break;
                default: qg__tile_avx2(4, true, g, i, b); break;
                }
            } else {
                switch (mr) {
                case 1: qg__tile_avx2(1, false, g, i, b); break;
                case 2: qg__tile_avx2(2, false, g, i, b); break;
                case 3: qg__tile_avx2(3, false, g, i, b); break;
                case 4: qg__tile_avx2(4, false, g, i, b); break;
                case 5: qg__tile_avx2(5, false, g, i, b); break;
                default: qg__tile_avx2(6, false, g, i, b); break;
                }
            }
        }
    }
}
#endif /* QG_QX86 */

/* ------------------------------------------------------------------ paths */

static int qg__forced_path = -1; /* -1: the default */

bool qg__qpath_supported(qg__qpath path) {
    switch (path) {
    case QG__QPATH_SCALAR: return true;
#ifdef QG_QX86
    case QG__QPATH_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case QG__QPATH_AVX512BW: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    case QG__QPATH_VNNI:
        return qg__qpath_supported(QG__QPATH_AVX512BW) && __builtin_cpu_supports("avx512vnni");
#endif
    default: return false;
    }
}

/* The best path both the CPU and the build's -march allow; in a portable build, the
 * CPU and the float kernels' level (isa.h: QG_ISA=v3 makes an AVX2 machine of an
 * AVX-512 one for both). Recomputed: a few loads. */
static qg__qpath qg__default_path(void) {
#if defined(QG_DISPATCH)
    const qg__isa lv = qg__isa_level();
    if (lv >= QG__ISA_V4 && qg__qpath_supported(QG__QPATH_VNNI)) return QG__QPATH_VNNI;
    if (lv >= QG__ISA_V4 && qg__qpath_supported(QG__QPATH_AVX512BW)) return QG__QPATH_AVX512BW;
    if (lv >= QG__ISA_V3 && qg__qpath_supported(QG__QPATH_AVX2)) return QG__QPATH_AVX2;
#else
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    if (qg__qpath_supported(QG__QPATH_VNNI)) return QG__QPATH_VNNI;
#endif
#if defined(__AVX512BW__)
    if (qg__qpath_supported(QG__QPATH_AVX512BW)) return QG__QPATH_AVX512BW;
#endif
#if defined(__AVX2__) && defined(__FMA__)
    if (qg__qpath_supported(QG__QPATH_AVX2)) return QG__QPATH_AVX2;
#endif
#endif
    return QG__QPATH_SCALAR;
}

qg__qpath qg__qgemm_path(void) { return qg__forced_path >= 0 ? (qg__qpath)qg__forced_path : qg__default_path(); }

int qg__qgemm_set_path(qg__qpath path) {
    if ((int)path < 0 || path >= QG__QPATH_COUNT)
        return qg__err(QG_EINVAL, "qgemm: no path %d (0..%d)", (int)path, QG__QPATH_COUNT - 1);
    if (!qg__qpath_supported(path))
        return qg__err(QG_EINVAL, "qgemm: path %s is not supported by this CPU", qg__qpath_name(path));
    qg__forced_path = (int)path;
    return 0;
}

const char *qg__qpath_name(qg__qpath path) {
    switch (path) {
    case QG__QPATH_SCALAR: return "scalar";
    case QG__QPATH_AVX2: return "avx2";
    case QG__QPATH_AVX512BW: return "avx512bw";
    case QG__QPATH_VNNI: return "vnni";
    default: return "unknown";
    }
}

/* ------------------------------------------------------------------ packing */

qg__qpack *qg__qpack_new(const int8_t *w, int64_t ldw, int64_t n, int64_t k) {
    if (n < 0 || k < 0)
        return qg__err(QG_ESHAPE, "qpack: negative size (n %lld, k %lld)", (long long)n, (long long)k), NULL;
    if (n > QG_MAX_SPAN || k > QG_MAX_SPAN)
        return qg__err(QG_ESHAPE, "qpack: size too large (n %lld, k %lld)", (long long)n, (long long)k), NULL;
    int64_t np = (n + QG_QB - 1) / QG_QB * QG_QB, kp = (k + 3) / 4 * 4, bytes;
    if (__builtin_mul_overflow(np, kp, &bytes) || bytes > QG_MAX_SPAN || (uint64_t)bytes > SIZE_MAX)
        return qg__err(QG_ESHAPE, "qpack: packed weights (%lld x %lld) too large", (long long)n, (long long)k),
               NULL;
    if (!w && n > 0 && k > 0)
        return qg__err(QG_EINVAL, "qpack: weights are NULL (n %lld, k %lld)", (long long)n, (long long)k), NULL;
    if (n > 1 && ldw < k)
        return qg__err(QG_ESHAPE, "qpack: row stride %lld below k %lld", (long long)ldw, (long long)k), NULL;
    qg__qpack *p = qg__alloc(sizeof *p);
    if (!p) return qg__err(QG_ENOMEM, "qpack: out of memory"), NULL;
    p->data = qg__alloc((size_t)bytes);
    p->wsum = qg__alloc((size_t)np * sizeof(int32_t));
    if (!p->data || !p->wsum) {
        qg__qpack_free(p);
        return qg__err(QG_ENOMEM, "qpack: out of memory for %lld x %lld weights", (long long)n, (long long)k),
               NULL;
    }
    p->n = n, p->k = k, p->np = np, p->kp = kp;
    int64_t kq = kp / 4;
    int wmax = 0;
    for (int64_t j = 0; j < np; j++) {
        uint32_t sum = 0; /* wraps like the GEMM */
        int8_t *blk = p->data + j / QG_QB * kq * 64 + j % QG_QB * 4;
        for (int64_t t = 0; t < kp; t++) {
            int v = j < n && t < k ? w[j * ldw + t] : 0;
            blk[t / 4 * 64 + t % 4] = (int8_t)v;
            sum += (uint32_t)v;
            if (v < 0 ? -v > wmax : v > wmax) wmax = v < 0 ? -v : v;
        }
        p->wsum[j] = (int32_t)sum;
    }
    p->wmax_abs = wmax;
    return p;
}

void qg__qpack_free(qg__qpack *p) {
    if (!p) return;
    qg__free(p->data);
    qg__free(p->wsum);
    qg__free(p);
}

/* ------------------------------------------------------------------ driver */

static void qg__qrange(qg__qpath path, const qg__qjob *g, int64_t i0, int64_t i1, int64_t b0, int64_t b1) {
    switch (path) {
#ifdef QG_QX86
    case QG__QPATH_VNNI: qg__range_vnni(g, i0, i1, b0, b1); return;
    case QG__QPATH_AVX512BW: qg__range_bw(g, i0, i1, b0, b1); return;
    case QG__QPATH_AVX2: qg__range_avx2(g, i0, i1, b0, b1); return;
#endif
    default: qg__range_scalar(g, i0, i1, b0, b1); return;
    }
}

/* A (m, k) uint8 at a + i lda, W packed (n, k) -> C (m, n) int32 at c + i ldc. */
void qg__qgemm(int64_t m, const uint8_t *a, int64_t lda, int32_t za, const qg__qpack *p, int32_t *c,
               int64_t ldc) {
    if (m <= 0 || !p || p->n <= 0) return;
    qg__qpath path = qg__qgemm_path();
    qg__qjob g = {a, lda, za, p, c, ldc};
    int64_t nblk = p->np / QG_QB;
    int64_t work = qg__sat_mul(qg__sat_mul(m, p->n), p->k > 0 ? p->k : 1);
    int nt = qg__threads_for(work / QG_QPAR);
#ifdef _OPENMP
    if (nt > 1 && omp_in_parallel()) nt = 1; /* called from a parallel loop: no nesting */
    /* Split m at whole row panels (each thread reads all of W), or n at whole tiles
     * (each reads all of A) when m has fewer panels than threads. */
    int64_t munits = (m + QG_QMR - 1) / QG_QMR, nunits = (nblk + QG_QNB - 1) / QG_QNB;
    bool split_n = munits < nt && nunits > munits;
    int64_t units = split_n ? nunits : munits;
    if (units < nt) nt = (int)units;
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            int T = omp_get_num_threads(), t = omp_get_thread_num();
            int64_t u0 = qg__share(units, t, T), u1 = qg__share(units, t + 1, T);
            if (split_n && u1 > u0)
                qg__qrange(path, &g, 0, m, u0 * QG_QNB, qg__qmin(u1 * QG_QNB, nblk));
            else if (u1 > u0)
                qg__qrange(path, &g, u0 * QG_QMR, qg__qmin(u1 * QG_QMR, m), 0, nblk);
        }
        return;
    }
#endif
    (void)nt;
    qg__qrange(path, &g, 0, m, 0, nblk);
}
