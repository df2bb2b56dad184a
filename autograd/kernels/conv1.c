/* The direct float32 convolution of a single-channel plane (kernels/gemm.h,
 * qg__conv1_f32): a CNN's first layer, where im2col + GEMM would multiply by a
 * reduction of only kh*kw taps. A vector holds 16 (AVX-512) or 8 (AVX2) neighbouring
 * output pixels of one row; their kh*kw shifted input vectors are loaded once and
 * stay in registers while every output channel takes its taps' fused multiply-adds
 * (weights broadcast), bias first, taps in (i, j) order. Without AVX2 + FMA the same
 * sum, in the same order, runs as a plain loop over the pixels (multiply, then add).
 * Shapes:
 *   xp (Hp, Wp): the padded plane, stride-1 rows; readable up to 16 floats past
 *                its last row (the vector tails load, but never store, past a row)
 *   w (K, T): T = kh*kw taps per channel; b (K) or NULL
 *   out (K, OH, OW): out[k][oh][ow] = b[k] + sum_t w[k][t] xp[oh + i dh][ow + j dw] */
#include "kernels/isa.h" /* first: the renaming of a portable build's copies */

#include "internal.h"
#include "kernels/gemm.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define C1_V __m512
#define C1_L 16
#define C1_MAXT 28 /* taps held in the 32 zmm registers, with the sum and a weight */
#define C1_LOAD(p) _mm512_loadu_ps(p)
#define C1_SET1(v) _mm512_set1_ps(v)
#define C1_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define C1_STORE(p, v, n) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1), v)
#elif defined(__AVX2__) && defined(__FMA__)
#define C1_V __m256
#define C1_L 8
#define C1_MAXT 12 /* of the 16 ymm registers */
#define C1_LOAD(p) _mm256_loadu_ps(p)
#define C1_SET1(v) _mm256_set1_ps(v)
#define C1_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static inline void c1_store(float *p, __m256 v, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), v);
}
#define C1_STORE(p, v, n) c1_store(p, v, n)
#endif

bool qg__conv1_supported(int64_t taps) {
#ifdef C1_V
    return taps >= 1 && taps <= C1_MAXT;
#else
    return taps >= 1 && taps <= 64;
#endif
}

#ifdef C1_V
/* Output rows of one plane with T taps (a constant where it is inlined for 3x3 and
 * 5x5, so the taps' vectors stay in registers). */
static inline __attribute__((always_inline)) void c1_rows(const int T, const float *xp, int64_t Wp, int64_t OH,
                                                          int64_t OW, int kw, int dh, int dw, const float *w,
                                                          const float *b, int64_t K, float *out) {
    const int64_t P = OH * OW;
    int64_t off[C1_MAXT];
    for (int t = 0; t < T; t++) off[t] = (int64_t)(t / kw) * dh * Wp + (int64_t)(t % kw) * dw;
    for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow += C1_L) {
            const int n = (int)(OW - ow < C1_L ? OW - ow : C1_L);
            const float *src = xp + oh * Wp + ow;
            C1_V v[C1_MAXT];
            for (int t = 0; t < T; t++) v[t] = C1_LOAD(src + off[t]);
            float *o = out + oh * OW + ow;
            for (int64_t k = 0; k < K; k++) {
                const float *wk = w + k * T;
                C1_V acc = C1_SET1(b ? b[k] : 0.0f);
                for (int t = 0; t < T; t++) acc = C1_FMA(v[t], C1_SET1(wk[t]), acc);
                C1_STORE(o + k * P, acc, n);
            }
        }
}
#endif

void qg__conv1_f32(const float *xp, int64_t Wp, int64_t OH, int64_t OW, int kh, int kw, int dh, int dw,
                   const float *w, const float *b, int64_t K, float *out) {
    const int T = kh * kw;
#ifdef C1_V
    if (T == 9)
        c1_rows(9, xp, Wp, OH, OW, kw, dh, dw, w, b, K, out);
    else if (T == 25 && C1_MAXT >= 25)
        c1_rows(25, xp, Wp, OH, OW, kw, dh, dw, w, b, K, out);
    else
        c1_rows(T, xp, Wp, OH, OW, kw, dh, dw, w, b, K, out);
#else
    const int64_t P = OH * OW;
    for (int64_t k = 0; k < K; k++)
        for (int64_t oh = 0; oh < OH; oh++) {
            float *o = out + k * P + oh * OW;
            for (int64_t ow = 0; ow < OW; ow++) o[ow] = b ? b[k] : 0.0f;
            for (int t = 0; t < T; t++) {
                const float wt = w[k * T + t], *src = xp + (oh + (int64_t)(t / kw) * dh) * Wp + (t % kw) * dw;
                for (int64_t ow = 0; ow < OW; ow++) o[ow] = o[ow] + src[ow] * wt;
            }
        }
#endif
}
