/* x86 pieces shared by the int8 kernels (qgemm.c, qrequant.c, qconvk.c): the switch
 * that gives a tile function constant sizes, and the AVX-512 requantization of 16
 * accumulators. */
#ifndef QG_QX86_H
#define QG_QX86_H

#include <immintrin.h>

#include "kernels/qgemm.h"

/* The 16 cases of (a, b) in 1..8 x 1..2, a constant pair for each: TILE(a, b, ...). */
#define QG_TILE_SWITCH(TILE, a, b, ...)                                                     \
    switch ((a) * 2 + (b) - 3) {                                                            \
    case 0: TILE(1, 1, __VA_ARGS__); break;                                                 \
    case 1: TILE(1, 2, __VA_ARGS__); break;                                                 \
    case 2: TILE(2, 1, __VA_ARGS__); break;                                                 \
    case 3: TILE(2, 2, __VA_ARGS__); break;                                                 \
    case 4: TILE(3, 1, __VA_ARGS__); break;                                                 \
    case 5: TILE(3, 2, __VA_ARGS__); break;                                                 \
    case 6: TILE(4, 1, __VA_ARGS__); break;                                                 \
    case 7: TILE(4, 2, __VA_ARGS__); break;                                                 \
    case 8: TILE(5, 1, __VA_ARGS__); break;                                                 \
    case 9: TILE(5, 2, __VA_ARGS__); break;                                                 \
    case 10: TILE(6, 1, __VA_ARGS__); break;                                                \
    case 11: TILE(6, 2, __VA_ARGS__); break;                                                \
    case 12: TILE(7, 1, __VA_ARGS__); break;                                                \
    case 13: TILE(7, 2, __VA_ARGS__); break;                                                \
    case 14: TILE(8, 1, __VA_ARGS__); break;                                                \
    default: TILE(8, 2, __VA_ARGS__); break;                                                \
    }

#define QG_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC) /* a constant expression, as clang wants */
#define QG_RNE_MAGIC 12582912.0f /* 1.5 * 2^23: x + M - M rounds |x| <= 2^22 half to even */

/* The requantization of 8 accumulators on AVX2, the same operations with rne as
 * x + M - M (exact for |x| <= 2^22, which the clamps ensure). Constants as vectors,
 * as below. Returns int32 >= 0, not yet capped at 255. */
__attribute__((target("avx2"), always_inline)) static inline __m256i qg__rq8(const qg__requant *k, __m256i a,
                                                                             __m256 mult, __m256 badd,
                                                                             __m256i ibias) {
    const __m256 magic = _mm256_set1_ps(QG_RNE_MAGIC), lo = _mm256_set1_ps(k->lo);
    if (k->onednn) {
        __m256 t = _mm256_add_ps(_mm256_cvtepi32_ps(a), badd);
        __m256 v = _mm256_max_ps(_mm256_mul_ps(t, mult), lo);
        __m256 w = _mm256_min_ps(_mm256_add_ps(v, _mm256_set1_ps(k->zf)), _mm256_set1_ps(256.0f));
        return _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(w, magic), magic));
    }
    __m256i t = _mm256_add_epi32(a, ibias);
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(t), mult);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), _mm256_set1_ps(512.0f));
    __m256i r = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(v, magic), magic));
    return _mm256_add_epi32(r, _mm256_set1_epi32((int32_t)k->zf));
}

/* Two vectors of 8 int32 in 0..INT32_MAX (pixels or columns 0..7 and 8..15) -> 16
 * bytes in order, saturated at 255. */
__attribute__((target("avx2"), always_inline)) static inline __m128i qg__u8x16(__m256i r0, __m256i r1) {
    __m256i w16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(r0, r1), 0xd8);
    return _mm_packus_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
}

/* The requantization of 16 accumulators (qrequant.c's formula). The channel constants
 * come as vectors: one per lane (a row of channels) or broadcast (a channel's pixels).
 * Returns int32 >= 0; the caller's unsigned saturating narrow (vpmovusdb) caps it at
 * 255. */
__attribute__((target("avx512f"), always_inline)) static inline __m512i qg__rq16(const qg__requant *k, __m512i a,
                                                                                  __m512 mult, __m512 badd,
                                                                                  __m512i ibias) {
    /* rne: one conversion with embedded round-to-nearest-even, the integer that the
     * scalar code's x + M - M gives */
    const __m512 lo = _mm512_set1_ps(k->lo);
    if (k->onednn) {
        __m512 t = _mm512_add_ps(_mm512_cvtepi32_ps(a), badd);
        __m512 v = _mm512_max_ps(_mm512_mul_ps(t, mult), lo);
        __m512 w = _mm512_min_ps(_mm512_add_ps(v, _mm512_set1_ps(k->zf)), _mm512_set1_ps(256.0f));
        return _mm512_cvt_roundps_epi32(w, QG_RNE);
    }
    __m512i t = _mm512_add_epi32(a, ibias);
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(t), mult);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), _mm512_set1_ps(512.0f));
    return _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, QG_RNE), _mm512_set1_epi32((int32_t)k->zf));
}

/* qg__rq16 of either engine in one branch-free form, its constants as vectors once
 * per call: onednn rne(min(max((a + b') M, lo) + zf, 256)); qnnpack rne(min(max(a M,
 * lo), 512)) + zf, with b' = 0 (a + 0 is a: an int32 gives no -0) and the sums already
 * holding its int32 bias. */
typedef struct {
    __m512 lo, zf, hi;
    __m512i zi;
} qg__rqc;
__attribute__((target("avx512f"), always_inline)) static inline void qg__rqc_of(const qg__requant *k, qg__rqc *c) {
    c->lo = _mm512_set1_ps(k->lo);
    c->zf = _mm512_set1_ps(k->onednn ? k->zf : 0.0f);
    c->hi = _mm512_set1_ps(k->onednn ? 256.0f : 512.0f);
    c->zi = _mm512_set1_epi32(k->onednn ? 0 : (int32_t)k->zf);
}
__attribute__((target("avx512f"), always_inline)) static inline __m512i qg__rq16c(const qg__rqc *c, __m512i a,
                                                                                  __m512 mult, __m512 badd) {
    const __m512 v = _mm512_max_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(a), badd), mult), c->lo);
    const __m512 w = _mm512_min_ps(_mm512_add_ps(v, c->zf), c->hi);
    return _mm512_add_epi32(_mm512_cvt_roundps_epi32(w, QG_RNE), c->zi);
}

/* The 16 int32 >= 0 of r saturated to bytes and stored at o under msk: vpmovusdb to a
 * register, then a byte store (the memory form of vpmovusdb is slow on Zen 4). */
__attribute__((target("avx512f,avx512bw"), always_inline)) static inline void qg__st_u8x16(uint8_t *o, __mmask16 msk,
                                                                                          __m512i r) {
    const __m128i b = _mm512_cvtusepi32_epi8(r);
    if (msk == 0xffff)
        _mm_storeu_si128((__m128i *)(void *)o, b);
    else
        _mm512_mask_storeu_epi8(o, (__mmask64)msk, _mm512_castsi128_si512(b)); /* BW, without VL */
}

#endif
