/* The channel-major int8 convolution kernel (qgemm.h, qg__qconv_cm): the product of a
 * chunk of output pixels with the packed weights, requantized in the tile's epilogue
 * and stored channel by channel, so a convolution writes its NCHW output directly:
 * no int32 accumulators in memory, no transposition.
 *
 * The roles of qgemm's operands are swapped: a zmm holds 16 pixels (lanes) of one
 * channel, so the activations come as blocks of 16 pixels whose 4-byte k-quads lie
 * side by side (the u8 operand of vpdpbusd: one load per quad, at the block's address
 * plus the quad's offset) and each channel's quad of weights is broadcast (the s8
 * operand). The sums are qgemm's (exact, wrapping int32, the zero point term last)
 * and the requantization qrequant.c's, so the bytes are those of qg__qgemm +
 * qg__qrequant + a transposition, the route the other paths take: tests/test_qconv.c
 * checks the two against each other. VNNI only. */
#include <string.h>

#include "internal.h"
#include "kernels/qgemm.h"

#if defined(__x86_64__)
#include "kernels/qx86.h"

#define QG_TVNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define CM_NJ 8 /* channels per tile: a divisor of 16, so a tile stays in one packed block */
#define CM_MP 2 /* 16-pixel blocks per tile */

typedef struct {
    const qg__qblock *blk;
    const int64_t *off;
    int64_t ldo;
    int32_t za;
    const qg__qpack *p;
    const qg__requant *k;
    uint8_t *out;
} cm_job;

/* The sums of channels j..j+nj x blocks i..i+mp -> acc[c * mp + u]. */
QG_TVNNI __attribute__((always_inline)) static inline void cm_dot(const int nj, const int mp, const cm_job *g,
                                                                   int64_t j, int64_t i, __m512i *out) {
    const qg__qpack *p = g->p;
    const int64_t kq = p->kp / 4, *off = g->off;
    const uint8_t *a[CM_MP];
#pragma GCC unroll 2
    for (int u = 0; u < mp; u++) a[u] = g->blk[i + u].a;
    const int8_t *w = p->data + j / 16 * kq * 64 + j % 16 * 4; /* the nj channels share a 16-column block */
    __m512i acc[CM_NJ * CM_MP];
#pragma GCC unroll 16
    for (int x = 0; x < nj * mp; x++) acc[x] = _mm512_setzero_si512();
    for (int64_t q = 0; q < kq; q++) {
        __m512i bv[CM_MP];
#pragma GCC unroll 2
        for (int u = 0; u < mp; u++) bv[u] = _mm512_loadu_si512(a[u] + off[q]);
#pragma GCC unroll 8
        for (int c = 0; c < nj; c++) {
            int32_t wq;
            memcpy(&wq, w + q * 64 + 4 * c, 4);
            const __m512i wv = _mm512_set1_epi32(wq);
#pragma GCC unroll 2
            for (int u = 0; u < mp; u++) acc[c * mp + u] = _mm512_dpbusd_epi32(acc[c * mp + u], bv[u], wv);
        }
    }
#pragma GCC unroll 16
    for (int x = 0; x < nj * mp; x++) out[x] = acc[x];
}

/* acc - za wsum, requantized, stored: channel jj's 16 pixels at out + jj ldo + o. Every
 * operand in a local first: the byte stores may alias anything, which would make the
 * compiler reload each one from memory after every store. */
QG_TVNNI __attribute__((always_inline)) static inline void cm_store(const int nj, const int mp, const cm_job *g,
                                                                     int64_t j, int64_t i, const __m512i *acc) {
    const qg__requant k = *g->k;
    const int32_t *wsum = g->p->wsum;
    const uint32_t za = (uint32_t)g->za;
    const int64_t ldo = g->ldo;
    uint8_t *outp[CM_MP];
    __mmask16 msk[CM_MP];
#pragma GCC unroll 2
    for (int u = 0; u < mp; u++) {
        const qg__qblock *bk = &g->blk[i + u];
        outp[u] = g->out + bk->o + j * ldo;
        msk[u] = bk->n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << bk->n) - 1);
    }
    __m512i zw[CM_NJ], ib[CM_NJ];
    __m512 mult[CM_NJ], badd[CM_NJ];
#pragma GCC unroll 8
    for (int c = 0; c < nj; c++) {
        zw[c] = _mm512_set1_epi32((int32_t)(za * (uint32_t)wsum[j + c]));
        mult[c] = _mm512_set1_ps(k.mult[j + c]);
        badd[c] = k.onednn ? _mm512_set1_ps(k.badd[j + c]) : _mm512_setzero_ps();
        ib[c] = k.onednn ? _mm512_setzero_si512() : _mm512_set1_epi32(k.ibias[j + c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < nj; c++)
#pragma GCC unroll 2
        for (int u = 0; u < mp; u++) {
            __m512i r = qg__rq16(&k, _mm512_sub_epi32(acc[c * mp + u], zw[c]), mult[c], badd[c], ib[c]);
            _mm512_mask_cvtusepi32_storeu_epi8(outp[u] + c * ldo, msk[u], r);
        }
}

/* One function per tile shape, its sums apart from its stores: in one function GCC's
 * register allocator copies the accumulators between registers every iteration. */
#define CM_DEF(NJ_, MP_)                                                                                      \
    QG_TVNNI __attribute__((noinline)) static void cm_dot_##NJ_##_##MP_(const cm_job *g, int64_t j, int64_t i, \
                                                                        __m512i *acc) {                       \
        cm_dot(NJ_, MP_, g, j, i, acc);                                                                        \
    }                                                                                                          \
    QG_TVNNI static void cm_tile_##NJ_##_##MP_(const cm_job *g, int64_t j, int64_t i) {                        \
        __m512i acc[NJ_ * MP_];                                                                                \
        cm_dot_##NJ_##_##MP_(g, j, i, acc);                                                                    \
        cm_store(NJ_, MP_, g, j, i, acc);                                                                      \
    }
CM_DEF(1, 1) CM_DEF(1, 2) CM_DEF(2, 1) CM_DEF(2, 2) CM_DEF(3, 1) CM_DEF(3, 2) CM_DEF(4, 1) CM_DEF(4, 2)
CM_DEF(5, 1) CM_DEF(5, 2) CM_DEF(6, 1) CM_DEF(6, 2) CM_DEF(7, 1) CM_DEF(7, 2) CM_DEF(8, 1) CM_DEF(8, 2)

#define CM_TILE(NJ_, MP_, g, j, i) cm_tile_##NJ_##_##MP_(g, j, i)
QG_TVNNI static void cm_run(const cm_job *g, int64_t nblk) {
    const int64_t n = g->p->n;
    for (int64_t j = 0; j < n; j += CM_NJ) {
        const int nj = (int)(n - j < CM_NJ ? n - j : CM_NJ);
        for (int64_t i = 0; i < nblk; i += CM_MP) {
            const int mp = nblk - i > 1 ? 2 : 1;
            QG_TILE_SWITCH(CM_TILE, nj, mp, g, j, i)
        }
    }
}
#endif

bool qg__qconv_cm_supported(void) {
#if defined(__x86_64__)
    return qg__qgemm_path() == QG__QPATH_VNNI;
#else
    return false;
#endif
}

void qg__qconv_cm(int64_t nblk, const qg__qblock *blk, const int64_t *off, int32_t za, const qg__qpack *p,
                  const qg__requant *k, uint8_t *out, int64_t ldo) {
#if defined(__x86_64__)
    if (nblk <= 0 || !p || p->n <= 0) return;
    const cm_job g = {blk, off, ldo, za, p, k, out};
    cm_run(&g, nblk);
#else /* never called: qg__qconv_cm_supported() is false */
    (void)nblk, (void)blk, (void)off, (void)za, (void)p, (void)k, (void)out, (void)ldo;
#endif
}
