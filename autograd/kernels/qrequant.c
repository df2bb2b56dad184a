/* Requantization (qgemm.h): int32 accumulators -> quint8 outputs with an engine's
 * float32 arithmetic (docs/int8.md), per output channel j, with lo = 0 under ReLU and
 * -z otherwise:
 *   onednn:  v = max(F(F(F(acc) + badd[j]) * mult[j]), lo); y = min(rne(min(F(v + z), 256)), 255)
 *   qnnpack: t = acc + ibias[j] (wrapping); v = min(max(F(F(t) * mult[j]), lo), 512);
 *            y = min(rne(v) + z, 255)
 * rne rounds half to even. These are docs/int8.md's formulas with their clamps merged:
 * every v below -z gives output 0 (onednn) or the zero point (qnnpack ReLU) either
 * way, so one floor at lo does what the low clamps did, NaN included (it saturates
 * low, as x86's conversions do: x > lo ? x : lo is lo for NaN, and it is what maxps
 * computes; minps likewise for x < hi ? x : hi). Every path performs these very
 * operations, each rounded once (the vector paths with one instruction per operation,
 * the scalar one with one statement each, never contracted into an FMA), so all give
 * the same bytes. rne is x + 1.5 * 2^23 - 1.5 * 2^23 in the scalar and AVX2 code and a
 * conversion with embedded round-to-nearest-even on AVX-512: the same integer for any
 * |x| <= 2^22, which the clamps ensure. */
#include <string.h>

#include "internal.h"
#include "kernels/qgemm.h"

#if defined(__x86_64__)
#include "kernels/qx86.h"
#define QG_RQX86 1
#else
#define QG_RNE_MAGIC 12582912.0f /* 1.5 * 2^23: x + M - M rounds |x| <= 2^22 half to even */
#endif

static void row_scalar(const qg__requant *k, const int32_t *restrict acc, int64_t j0, int64_t n, uint8_t *restrict out) {
    const float *restrict mult = k->mult, *restrict badd = k->badd;
    const int32_t *restrict ibias = k->ibias;
    const float zf = k->zf, lo = k->lo;
    if (k->onednn) {
        for (int64_t j = j0; j < n; j++) {
            float a = (float)acc[j];
            float t = a + badd[j];
            float v = t * mult[j];
            v = v > lo ? v : lo;
            float w = v + zf;
            w = w < 256.0f ? w : 256.0f;
            float m = w + QG_RNE_MAGIC;
            int32_t r = (int32_t)(m - QG_RNE_MAGIC); /* 0..256 */
            out[j] = (uint8_t)(r > 255 ? 255 : r);
        }
    } else {
        const int32_t z = (int32_t)zf;
        for (int64_t j = j0; j < n; j++) {
            int32_t t = (int32_t)((uint32_t)acc[j] + (uint32_t)ibias[j]);
            float v = (float)t * mult[j];
            v = v > lo ? v : lo;
            v = v < 512.0f ? v : 512.0f;
            float m = v + QG_RNE_MAGIC;
            int32_t r = (int32_t)(m - QG_RNE_MAGIC) + z; /* lo + z >= 0 */
            out[j] = (uint8_t)(r > 255 ? 255 : r);
        }
    }
}

#ifdef QG_RQX86
__attribute__((target("avx512f,avx512bw"))) static void rows_avx512(const qg__requant *k, const int32_t *acc, int64_t ldc,
                                                           int64_t m, int64_t n, uint8_t *out, int64_t ldo) {
    for (int64_t i = 0; i < m; i++, acc += ldc, out += ldo)
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 msk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
            const bool e = k->onednn; /* each engine reads its own constants only */
            __m512i r = qg__rq16(k, _mm512_maskz_loadu_epi32(msk, acc + j), _mm512_maskz_loadu_ps(msk, k->mult + j),
                                 e ? _mm512_maskz_loadu_ps(msk, k->badd + j) : _mm512_setzero_ps(),
                                 e ? _mm512_setzero_si512() : _mm512_maskz_loadu_epi32(msk, k->ibias + j));
            qg__st_u8x16(out + j, msk, r); /* saturates at 255 */
        }
}

/* 8 outputs of channels j..j+7 */
__attribute__((target("avx2"))) static inline __m256i rq8(const qg__requant *k, const int32_t *acc, int64_t j) {
    const bool e = k->onednn; /* each engine reads its own constants only */
    return qg__rq8(k, _mm256_loadu_si256((const __m256i *)(const void *)(acc + j)), _mm256_loadu_ps(k->mult + j),
                   e ? _mm256_loadu_ps(k->badd + j) : _mm256_setzero_ps(),
                   e ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(const void *)(k->ibias + j)));
}

__attribute__((target("avx2"))) static void rows_avx2(const qg__requant *k, const int32_t *acc, int64_t ldc,
                                                      int64_t m, int64_t n, uint8_t *out, int64_t ldo) {
    for (int64_t i = 0; i < m; i++, acc += ldc, out += ldo) {
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) { /* packus saturates 256 and above to 255 */
            _mm_storeu_si128((__m128i *)(void *)(out + j), qg__u8x16(rq8(k, acc, j), rq8(k, acc, j + 8)));
        }
        row_scalar(k, acc, j, n, out);
    }
}
#endif

void qg__qrequant(const qg__requant *k, const int32_t *acc, int64_t ldc, int64_t m, int64_t n, uint8_t *out,
                  int64_t ldo) {
#ifdef QG_RQX86
    const qg__qpath path = qg__qgemm_path();
    if (path >= QG__QPATH_AVX512BW) {
        rows_avx512(k, acc, ldc, m, n, out, ldo);
        return;
    }
    if (path == QG__QPATH_AVX2) {
        rows_avx2(k, acc, ldc, m, n, out, ldo);
        return;
    }
#endif
    for (int64_t i = 0; i < m; i++) row_scalar(k, acc + i * ldc, 0, n, out + i * ldo);
}
