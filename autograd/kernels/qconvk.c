/* The channel-major int8 convolution kernel (qgemm.h, qg__qconv_cm): the product of a
 * chunk of output pixels with the packed weights, requantized in the tile's epilogue
 * and stored channel by channel, so a convolution writes its NCHW output directly:
 * no int32 accumulators in memory, no transposition.
 *
 * The roles of qgemm's operands are swapped: a zmm holds 16 pixels (lanes) of one
 * channel, so the activations come as blocks of 16 pixels whose 4-byte k-quads lie
 * side by side (the u8 operand of vpdpbusd: one load per quad, at the block's address
 * plus the quad's offset) and each channel's quad of weights is broadcast (the s8
 * operand). The sums are qgemm's (exact, wrapping int32; on VNNI they start at the
 * zero point term, on AVX2 it comes last) and the requantization qrequant.c's (on
 * VNNI in qg__rq16c's branch-free form), so the bytes are those of qg__qgemm +
 * qg__qrequant + a transposition, the route the other paths take: tests/test_qconv.c
 * checks the two against each other. VNNI and AVX2 (below). */
#include <string.h>

#include "internal.h"
#include "kernels/qgemm.h"

#if defined(__x86_64__)
#include "kernels/qx86.h"

#define QG_TVNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define CM_NJ 8 /* channels per tile: a divisor of 16, so a tile stays in one packed block */
#define CM_MP 2 /* 16-pixel blocks per tile */

typedef struct cm_cst cm_cst;
typedef struct {
    const qg__qblock *blk;
    const int64_t *off;
    int64_t ldo;
    int32_t za;
    const qg__qpack *p;
    const qg__requant *k;
    uint8_t *out;
    bool pool; /* blocks in row pairs, 2 x 2 max-pooled (qgemm.h) */
    const cm_cst *cst; /* the current channel group's constants (VNNI) */
} cm_job;

/* A channel group's constants: the sums start at zw = -(cm_zsub); the requantization
 * is qg__rq16c's. */
struct cm_cst {
    __m512i zw[CM_NJ];
    __m512 mult[CM_NJ], badd[CM_NJ], pmult[CM_NJ / 2], pbadd[CM_NJ / 2];
    qg__rqc r;
};

/* Channel c's 4 weights of k-quad q in its 16-column block w (qgemm.c's layout). */
static inline int32_t cm_wquad(const int8_t *w, int64_t q, int c) {
    int32_t v;
    memcpy(&v, w + q * 64 + 4 * c, 4);
    return v;
}

/* The sums of channels j..j+nj x blocks i..i+mp, less cm_zsub -> acc[c * mp + u]. */
/* kqc: the number of k-quads when it is a constant (0: p->kp / 4 at run time). */
QG_TVNNI __attribute__((always_inline)) static inline void cm_dot(const int nj, const int mp, const int kqc,
                                                                   const cm_job *g, int64_t j, int64_t i,
                                                                   __m512i *out) {
    const qg__qpack *p = g->p;
    const int64_t kq = kqc ? kqc : p->kp / 4, *off = g->off;
    const uint8_t *a[CM_MP];
#pragma GCC unroll 2
    for (int u = 0; u < mp; u++) a[u] = g->blk[i + u].a;
    const int8_t *w = p->data + j / 16 * kq * 64 + j % 16 * 4; /* the nj channels share a 16-column block */
    __m512i acc[CM_NJ * CM_MP];
#pragma GCC unroll 16
    for (int x = 0; x < nj * mp; x++) acc[x] = g->cst->zw[x / mp];
#pragma GCC unroll 4
    for (int64_t q = 0; q < kq; q++) {
        __m512i bv[CM_MP];
#pragma GCC unroll 2
        for (int u = 0; u < mp; u++) bv[u] = _mm512_loadu_si512(a[u] + off[q]);
#pragma GCC unroll 8
        for (int c = 0; c < nj; c++) {
            const __m512i wv = _mm512_set1_epi32(cm_wquad(w, q, c));
#pragma GCC unroll 2
            for (int u = 0; u < mp; u++) acc[c * mp + u] = _mm512_dpbusd_epi32(acc[c * mp + u], bv[u], wv);
        }
    }
#pragma GCC unroll 16
    for (int x = 0; x < nj * mp; x++) out[x] = acc[x];
}

/* What a tile's stores read, copied into locals first: the byte stores may alias
 * anything, which would make the compiler reload each operand after every store. */
typedef struct {
    qg__requant k;
    const cm_cst *cst; /* VNNI */
    int64_t ldo;
    qg__qblock bk; /* block i */
    uint8_t *o;    /* channel j's outputs of block i */
} cm_out;
static inline cm_out cm_out_of(const cm_job *g, int64_t j, int64_t i) {
    const qg__qblock bk = g->blk[i];
    return (cm_out){*g->k, g->cst, g->ldo, bk, g->out + bk.o + j * g->ldo};
}

/* What every path subtracts from channel ch's sums: za wsum, less qnnpack's int32 bias
 * (which its requantization adds: folded in, the same sums mod 2^32). */
static inline uint32_t cm_zsub(const cm_job *g, int64_t ch) {
    return (uint32_t)g->za * (uint32_t)g->p->wsum[ch] - (g->k->onednn ? 0u : (uint32_t)g->k->ibias[ch]);
}

/* The requantization constants of channels j..j+nj, once per channel group: the
 * subtrahend (cm_zsub) and
 * mult, badd, broadcast per channel, and for pooled tiles per channel pair (lanes
 * 0..7 channel j + 2c, lanes 8..15 channel j + 2c + 1). */
QG_TVNNI static void cm_cst_of(const cm_job *g, int64_t j, int nj, cm_cst *t) {
    const qg__requant *k = g->k;
    for (int c = 0; c < nj; c++) {
        t->zw[c] = _mm512_set1_epi32((int32_t)(0u - cm_zsub(g, j + c)));
        t->mult[c] = _mm512_set1_ps(k->mult[j + c]);
        t->badd[c] = _mm512_set1_ps(k->onednn ? k->badd[j + c] : 0.0f);
    }
    qg__rqc_of(k, &t->r);
    for (int c = 0; c < nj; c += 2) { /* an odd last channel pairs with itself */
        const int d = c + 1 < nj ? c + 1 : c;
        t->pmult[c / 2] = _mm512_mask_blend_ps(0xff00, t->mult[c], t->mult[d]);
        t->pbadd[c / 2] = _mm512_mask_blend_ps(0xff00, t->badd[c], t->badd[d]);
    }
}

/* The sums requantized, stored: channel jj's 16 pixels at out + jj ldo + o. */
QG_TVNNI __attribute__((always_inline)) static inline void cm_store(const int nj, const int mp, const cm_job *g,
                                                                     int64_t j, int64_t i, const __m512i *acc) {
    const cm_cst *t = g->cst;
    const int64_t ldo = g->ldo;
    uint8_t *outp[CM_MP];
    __mmask16 msk[CM_MP];
#pragma GCC unroll 2
    for (int u = 0; u < mp; u++) {
        const qg__qblock *bk = &g->blk[i + u];
        outp[u] = g->out + bk->o + j * ldo;
        msk[u] = bk->n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << bk->n) - 1);
    }
#pragma GCC unroll 8
    for (int c = 0; c < nj; c++)
#pragma GCC unroll 2
        for (int u = 0; u < mp; u++)
            qg__st_u8x16(outp[u] + c * ldo, msk[u], qg__rq16c(&t->r, acc[c * mp + u], t->mult[c], t->badd[c]));
}

/* Pooled: blocks i and i + 1 are rows oh and oh + 1 of the same pixels. The 2 x 2
 * maxima are taken of the sums (less cm_zsub, as the requantization sees them): the
 * requantization is non-decreasing in them, so the requantized maximum is the maximum
 * of the requantized bytes. 8 outputs a pair of blocks and channel; two channels share
 * one requantization. */
QG_TVNNI __attribute__((always_inline)) static inline void cm_store_pool(const int nj, const cm_job *g, int64_t j,
                                                                          int64_t i, const __m512i *acc) {
    const cm_cst *t = g->cst;
    const int64_t ldo = g->ldo;
    const qg__qblock bk = g->blk[i];
    uint8_t *out = g->out + bk.o + j * ldo;
    const int n = bk.n / 2; /* outputs a channel */
    const __mmask64 msk = (__mmask64)((1u << n) - 1);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
#pragma GCC unroll 4
    for (int c = 0; c < nj; c += 2) {
        const int d = c + 1 < nj ? c + 1 : c;
        const __m512i v0 = _mm512_max_epi32(acc[2 * c], acc[2 * c + 1]);
        const __m512i v1 = _mm512_max_epi32(acc[2 * d], acc[2 * d + 1]);
        /* lane t < 8: channel c's pixels 2t, 2t + 1; lane 8 + t: channel d's */
        const __m512i m = _mm512_max_epi32(_mm512_permutex2var_epi32(v0, even, v1),
                                           _mm512_permutex2var_epi32(v0, odd, v1));
        const __m128i b = _mm512_cvtusepi32_epi8(qg__rq16c(&t->r, m, t->pmult[c / 2], t->pbadd[c / 2]));
        uint8_t *o = out + c * ldo;
        if (n == 8) {
            _mm_storel_epi64((__m128i *)(void *)o, b);
            if (d != c) _mm_storel_epi64((__m128i *)(void *)(o + ldo), _mm_srli_si128(b, 8));
        } else {
            _mm512_mask_storeu_epi8(o, msk, _mm512_castsi128_si512(b));
            if (d != c) _mm512_mask_storeu_epi8(o + ldo, msk, _mm512_castsi128_si512(_mm_srli_si128(b, 8)));
        }
    }
}

/* One function per tile shape, its sums apart from its stores: in one function GCC's
 * register allocator copies the accumulators between registers every iteration. */
#define CM_DEF(NJ_, MP_)                                                                                      \
    QG_TVNNI __attribute__((noinline)) static void cm_dot_##NJ_##_##MP_(const cm_job *g, int64_t j, int64_t i, \
                                                                        __m512i *acc) {                       \
        cm_dot(NJ_, MP_, 0, g, j, i, acc);                                                                     \
    }                                                                                                          \
    QG_TVNNI static void cm_tile_##NJ_##_##MP_(const cm_job *g, int64_t j, int64_t i) {                        \
        __m512i acc[NJ_ * MP_];                                                                                \
        if (g->p->kp == 12) /* a 3 x 3 single-channel layer: the sums inline, unrolled */                     \
            cm_dot(NJ_, MP_, 3, g, j, i, acc);                                                                 \
        else                                                                                                   \
            cm_dot_##NJ_##_##MP_(g, j, i, acc);                                                                \
        if (MP_ == 2 && g->pool)                                                                               \
            cm_store_pool(NJ_, g, j, i, acc);                                                                  \
        else                                                                                                   \
            cm_store(NJ_, MP_, g, j, i, acc);                                                                  \
    }
CM_DEF(1, 1) CM_DEF(1, 2) CM_DEF(2, 1) CM_DEF(2, 2) CM_DEF(3, 1) CM_DEF(3, 2) CM_DEF(4, 1) CM_DEF(4, 2)
CM_DEF(5, 1) CM_DEF(5, 2) CM_DEF(6, 1) CM_DEF(6, 2) CM_DEF(7, 1) CM_DEF(7, 2) CM_DEF(8, 1) CM_DEF(8, 2)

#define CM_TILE(NJ_, MP_, g, j, i) cm_tile_##NJ_##_##MP_(g, j, i)
QG_TVNNI static void cm_run(const cm_job *job, int64_t nblk) {
    const int64_t n = job->p->n;
    cm_cst cst;
    cm_job gj = *job;
    const cm_job *g = &gj;
    gj.cst = &cst;
    for (int64_t j = 0; j < n; j += CM_NJ) {
        const int nj = (int)(n - j < CM_NJ ? n - j : CM_NJ);
        cm_cst_of(g, j, nj, &cst);
        for (int64_t i = 0; i < nblk; i += CM_MP) {
            const int mp = nblk - i > 1 ? 2 : 1; /* pooled: nblk is even */
            QG_TILE_SWITCH(CM_TILE, nj, mp, g, j, i)
        }
    }
}

/* ------------------------------------------------------------------ AVX2 */

/* The same tiles on AVX2: a block's 16 pixels are two ymm of 8 (the low and high 32
 * bytes of each 64-byte quad) and the multiply-add is vpmaddubsw + vpmaddwd + vpaddd.
 * vpmaddubsw saturates a pair only if some byte > 127 meets some |w| > 64 (qgemm.c's
 * top): the plain sums note whether the tile read such a byte, and if it did, with
 * such weights, the tile is summed again in the exact form a = lo + 128 hi. (Even
 * reduce_range's 7-bit activations exceed 127 now and then: PyTorch's fake-quant
 * clamps at 255.) Tiles of up to 4 channels x 1 block: 8 accumulators of the 16 ymm
 * registers. */
#define QG_TAVX2 __attribute__((target("avx2")))
#define CA_NJ 4

/* The sums of channels j..j+nj x block i -> acc[2 c + h]; whether a byte > 127 was
 * read (plain form only). */
QG_TAVX2 __attribute__((always_inline)) static inline bool ca_dot(const int nj, const bool exact, const int kqc,
                                                                   const cm_job *g, int64_t j, int64_t i,
                                                                   __m256i *out) {
    const qg__qpack *p = g->p;
    const int64_t kq = kqc ? kqc : p->kp / 4, *off = g->off; /* kqc as in cm_dot */
    const uint8_t *a = g->blk[i].a;
    const int8_t *w = p->data + j / 16 * kq * 64 + j % 16 * 4;
    const __m256i ones = _mm256_set1_epi16(1), c128 = _mm256_set1_epi16(128);
    const __m256i lo7 = _mm256_set1_epi8(0x7f), one8 = _mm256_set1_epi8(1);
    __m256i acc[2 * CA_NJ], big = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int x = 0; x < 2 * nj; x++) acc[x] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int64_t q = 0; q < kq; q++) {
        __m256i b[2], hi[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            b[h] = _mm256_loadu_si256((const __m256i *)(const void *)(a + off[q] + 32 * h));
            if (!exact) {
                big = _mm256_or_si256(big, b[h]);
            } else {
                hi[h] = _mm256_and_si256(_mm256_srli_epi16(b[h], 7), one8);
                b[h] = _mm256_and_si256(b[h], lo7);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < nj; c++) {
            const __m256i wv = _mm256_set1_epi32(cm_wquad(w, q, c));
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i t = _mm256_madd_epi16(_mm256_maddubs_epi16(b[h], wv), ones);
                if (exact) t = _mm256_add_epi32(t, _mm256_madd_epi16(_mm256_maddubs_epi16(hi[h], wv), c128));
                acc[2 * c + h] = _mm256_add_epi32(acc[2 * c + h], t);
            }
        }
    }
#pragma GCC unroll 8
    for (int x = 0; x < 2 * nj; x++) out[x] = acc[x];
    return _mm256_movemask_epi8(big) != 0;
}

/* The first n (1..16) bytes of v to d, in fixed-size moves. */
QG_TAVX2 static inline void ca_put(uint8_t *d, __m128i v, int n) {
    if (n >= 16 || n == 8) { /* the common cases, straight from the register */
        if (n == 8)
            _mm_storel_epi64((__m128i *)(void *)d, v);
        else
            _mm_storeu_si128((__m128i *)(void *)d, v);
        return;
    }
    uint8_t t[16];
    _mm_storeu_si128((__m128i *)(void *)t, v);
    int x = 0;
    if (n & 8) memcpy(d, t, 8), x = 8;
    if (n & 4) memcpy(d + x, t + x, 4), x += 4;
    if (n & 2) memcpy(d + x, t + x, 2), x += 2;
    if (n & 1) d[x] = t[x];
}

QG_TAVX2 __attribute__((always_inline)) static inline void ca_store(const int nj, const cm_job *g, int64_t j,
                                                                     int64_t i, const __m256i *acc) {
    const cm_out s = cm_out_of(g, j, i);
    const qg__requant k = s.k;
#pragma GCC unroll 4
    for (int c = 0; c < nj; c++) {
        const __m256i zw = _mm256_set1_epi32((int32_t)cm_zsub(g, j + c)), ib = _mm256_setzero_si256();
        const __m256 mult = _mm256_set1_ps(k.mult[j + c]);
        const __m256 badd = k.onednn ? _mm256_set1_ps(k.badd[j + c]) : _mm256_setzero_ps();
        __m256i r0 = qg__rq8(&k, _mm256_sub_epi32(acc[2 * c], zw), mult, badd, ib);
        __m256i r1 = qg__rq8(&k, _mm256_sub_epi32(acc[2 * c + 1], zw), mult, badd, ib);
        ca_put(s.o + c * s.ldo, qg__u8x16(r0, r1), s.bk.n);
    }
}

/* Pooled, as cm_store_pool: a0 holds block i's sums (row oh), a1 block i + 1's. */
QG_TAVX2 __attribute__((always_inline)) static inline void ca_store_pool(const int nj, const cm_job *g, int64_t j,
                                                                          int64_t i, const __m256i *a0,
                                                                          const __m256i *a1) {
    const cm_out s = cm_out_of(g, j, i);
    const qg__requant k = s.k;
    const int n = s.bk.n / 2;
#pragma GCC unroll 4
    for (int c = 0; c < nj; c++) {
        const __m256i zw = _mm256_set1_epi32((int32_t)cm_zsub(g, j + c));
        __m256 m[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i t = _mm256_max_epi32(_mm256_sub_epi32(a0[2 * c + h], zw), _mm256_sub_epi32(a1[2 * c + h], zw));
            m[h] = _mm256_castsi256_ps(_mm256_max_epi32(t, _mm256_shuffle_epi32(t, 0xb1))); /* lanes 2t: pixels 2t, 2t + 1 */
        }
        /* even lanes of both halves: pooled pixels (0, 1, 4, 5 | 2, 3, 6, 7), then in order */
        const __m256i v = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(m[0], m[1], 0x88)), 0xd8);
        const __m256 badd = k.onednn ? _mm256_set1_ps(k.badd[j + c]) : _mm256_setzero_ps();
        const __m128i b = qg__u8x16(qg__rq8(&k, v, _mm256_set1_ps(k.mult[j + c]), badd, _mm256_setzero_si256()),
                                    _mm256_setzero_si256());
        ca_put(s.o + c * s.ldo, b, n);
    }
}

#define CA_DEF(NJ_)                                                                                           \
    QG_TAVX2 __attribute__((noinline)) static bool ca_plain_##NJ_(const cm_job *g, int64_t j, int64_t i,      \
                                                                  __m256i *acc) {                             \
        return ca_dot(NJ_, false, 0, g, j, i, acc);                                                            \
    }                                                                                                          \
    QG_TAVX2 __attribute__((noinline)) static void ca_exact_##NJ_(const cm_job *g, int64_t j, int64_t i,      \
                                                                  __m256i *acc) {                             \
        ca_dot(NJ_, true, 0, g, j, i, acc);                                                                    \
    }                                                                                                          \
    /* plain sums of block i: inline and unrolled for a 3 x 3 single-channel layer (kp 12) */               \
    QG_TAVX2 static inline bool ca_sums_##NJ_(const cm_job *g, int64_t j, int64_t i, __m256i *acc) {           \
        return g->p->kp == 12 ? ca_dot(NJ_, false, 3, g, j, i, acc) : ca_plain_##NJ_(g, j, i, acc);            \
    }                                                                                                          \
    QG_TAVX2 static void ca_tile_##NJ_(const cm_job *g, int64_t j, int64_t i) {                                \
        __m256i acc[2 * NJ_], acc1[2 * NJ_];                                                                   \
        if (ca_sums_##NJ_(g, j, i, acc) && g->p->wmax_abs > 64) ca_exact_##NJ_(g, j, i, acc);                  \
        if (!g->pool) {                                                                                        \
            ca_store(NJ_, g, j, i, acc);                                                                       \
            return;                                                                                            \
        }                                                                                                      \
        if (ca_sums_##NJ_(g, j, i + 1, acc1) && g->p->wmax_abs > 64) ca_exact_##NJ_(g, j, i + 1, acc1);        \
        ca_store_pool(NJ_, g, j, i, acc, acc1);                                                                \
    }
CA_DEF(1) CA_DEF(2) CA_DEF(3) CA_DEF(4)

QG_TAVX2 static void ca_run(const cm_job *g, int64_t nblk) {
    const int64_t n = g->p->n;
    for (int64_t j = 0; j < n; j += CA_NJ) {
        const int nj = (int)(n - j < CA_NJ ? n - j : CA_NJ);
        for (int64_t i = 0; i < nblk; i += 1 + g->pool) {
            switch (nj) {
            case 1: ca_tile_1(g, j, i); break;
            case 2: ca_tile_2(g, j, i); break;
            case 3: ca_tile_3(g, j, i); break;
            default: ca_tile_4(g, j, i); break;
            }
        }
    }
}
#endif

bool qg__qconv_cm_supported(void) {
#if defined(__x86_64__)
    const qg__qpath path = qg__qgemm_path();
    return path == QG__QPATH_VNNI || path == QG__QPATH_AVX2;
#else
    return false;
#endif
}

void qg__qconv_cm(int64_t nblk, const qg__qblock *blk, const int64_t *off, int32_t za, const qg__qpack *p,
                  const qg__requant *k, uint8_t *out, int64_t ldo, bool pool) {
#if defined(__x86_64__)
    if (nblk <= 0 || !p || p->n <= 0) return;
    const cm_job g = {blk, off, ldo, za, p, k, out, pool, NULL};
    if (qg__qgemm_path() == QG__QPATH_VNNI)
        cm_run(&g, nblk);
    else
        ca_run(&g, nblk);
#else /* never called: qg__qconv_cm_supported() is false */
    (void)nblk, (void)blk, (void)off, (void)za, (void)p, (void)k, (void)out, (void)ldo, (void)pool;
#endif
}
