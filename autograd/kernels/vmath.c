/* exp, log, tanh, sigmoid on contiguous arrays with SLEEF's vector functions (1.0-ULP
 * variants, as PyTorch uses), at the widest vector width this build targets. The
 * tail goes through one padded vector so every element takes the same code path. */
#include "kernels/isa.h" /* first: the renaming of a portable build's copies */

#include <math.h>
#include <immintrin.h>
#include <sleef.h>

#include "op_internal.h"

#if defined(__AVX512F__)
#define VF __m512
#define VD __m512d
#define WF 16
#define WD 8
#define LOADF _mm512_loadu_ps
#define STOREF _mm512_storeu_ps
#define LOADD _mm512_loadu_pd
#define STORED _mm512_storeu_pd
#define SLEEF_F(fn) Sleef_##fn##f16_u10
#define SLEEF_D(fn) Sleef_##fn##d8_u10
#elif defined(__AVX2__) || defined(__AVX__)
#define VF __m256
#define VD __m256d
#define WF 8
#define WD 4
#define LOADF _mm256_loadu_ps
#define STOREF _mm256_storeu_ps
#define LOADD _mm256_loadu_pd
#define STORED _mm256_storeu_pd
#define SLEEF_F(fn) Sleef_##fn##f8_u10
#define SLEEF_D(fn) Sleef_##fn##d4_u10
#else
#define VF __m128
#define VD __m128d
#define WF 4
#define WD 2
#define LOADF _mm_loadu_ps
#define STOREF _mm_storeu_ps
#define LOADD _mm_loadu_pd
#define STORED _mm_storeu_pd
#define SLEEF_F(fn) Sleef_##fn##f4_u10
#define SLEEF_D(fn) Sleef_##fn##d2_u10
#endif

/* y[i] = F(x[i]) for one SLEEF function, float and double. Threads split the array
 * in whole vectors above the work threshold. */
#define DEFINE_VMATH(name, fn)                                                         \
    static void name##_f32_part(int64_t n, const float *x, float *y) {                 \
        int64_t i = 0;                                                                 \
        for (; i + WF <= n; i += WF) STOREF(y + i, SLEEF_F(fn)(LOADF(x + i)));         \
        if (i < n) {                                                                   \
            float buf[WF] = {0};                                                       \
            memcpy(buf, x + i, sizeof(float) * (size_t)(n - i));                       \
            STOREF(buf, SLEEF_F(fn)(LOADF(buf)));                                      \
            memcpy(y + i, buf, sizeof(float) * (size_t)(n - i));                       \
        }                                                                              \
    }                                                                                  \
    static void name##_f64_part(int64_t n, const double *x, double *y) {               \
        int64_t i = 0;                                                                 \
        for (; i + WD <= n; i += WD) STORED(y + i, SLEEF_D(fn)(LOADD(x + i)));         \
        if (i < n) {                                                                   \
            double buf[WD] = {0};                                                      \
            memcpy(buf, x + i, sizeof(double) * (size_t)(n - i));                      \
            STORED(buf, SLEEF_D(fn)(LOADD(buf)));                                      \
            memcpy(y + i, buf, sizeof(double) * (size_t)(n - i));                      \
        }                                                                              \
    }                                                                                  \
    void qg__v##name##_f32(int64_t n, const float *x, float *y) {                       \
        int nt = qg__threads_for(n * 8);                                               \
        if (nt <= 1 || omp_in_parallel_()) { name##_f32_part(n, x, y); return; }       \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                   \
        for (int t = 0; t < nt; t++) {                                                 \
            int64_t a = qg__share(n, t, nt) / WF * WF, b = t == nt - 1 ? n : qg__share(n, t + 1, nt) / WF * WF; \
            name##_f32_part(b - a, x + a, y + a);                                      \
        }                                                                              \
    }                                                                                  \
    void qg__v##name##_f64(int64_t n, const double *x, double *y) {                     \
        int nt = qg__threads_for(n * 8);                                               \
        if (nt <= 1 || omp_in_parallel_()) { name##_f64_part(n, x, y); return; }       \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                   \
        for (int t = 0; t < nt; t++) {                                                 \
            int64_t a = qg__share(n, t, nt) / WD * WD, b = t == nt - 1 ? n : qg__share(n, t + 1, nt) / WD * WD; \
            name##_f64_part(b - a, x + a, y + a);                                      \
        }                                                                              \
    }

static int omp_in_parallel_(void) {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

DEFINE_VMATH(exp, exp)
DEFINE_VMATH(log, log)
DEFINE_VMATH(tanh, tanh)

/* sigmoid(x) = 1 / (1 + exp(-x)), PyTorch's formula */
void qg__vsigmoid_f32(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = -x[i];
    qg__vexp_f32(n, y, y);
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + y[i]);
}

void qg__vsigmoid_f64(int64_t n, const double *x, double *y) {
    for (int64_t i = 0; i < n; i++) y[i] = -x[i];
    qg__vexp_f64(n, y, y);
    for (int64_t i = 0; i < n; i++) y[i] = 1.0 / (1.0 + y[i]);
}
