/* The ISA level the float kernels run at (isa.h), and in a portable build the plain
 * entry points of gemm.c, conv1.c and vmath.c, which call the copy of the chosen level
 * (a switch on the level, chosen once). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels/gemm.h"
#include "kernels/isa.h"
#include "op_internal.h"

/* The level a build with its own -march compiled (a portable build compiles all), as
 * gemm.h sizes the GEMM's tile: AVX-512F is v4. */
#if defined(__AVX512F__)
#define QG_ISA_BUILT QG__ISA_V4
#elif defined(__AVX2__) && defined(__FMA__)
#define QG_ISA_BUILT QG__ISA_V3
#else
#define QG_ISA_BUILT QG__ISA_V1
#endif

static bool cpu_has(qg__isa level) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    switch (level) {
    case QG__ISA_V1: return true;
    case QG__ISA_V3: /* what -march=x86-64-v3 may emit (clang 14 knows fewer names) */
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
               __builtin_cpu_supports("bmi2")
#if !defined(__clang__)
               && __builtin_cpu_supports("lzcnt") && __builtin_cpu_supports("movbe") && __builtin_cpu_supports("f16c")
#endif
            ;
    case QG__ISA_V4:
        return cpu_has(QG__ISA_V3) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512cd");
    default: return false;
    }
#else
    return level == QG__ISA_V1;
#endif
}

bool qg__isa_runs(qg__isa level) {
#ifdef QG_DISPATCH
    return level >= QG__ISA_V1 && level < QG__ISA_COUNT && cpu_has(level);
#else
    return level == QG_ISA_BUILT && cpu_has(level);
#endif
}

const char *qg__isa_name(qg__isa level) {
    switch (level) {
    case QG__ISA_V1: return "x86-64-v1";
    case QG__ISA_V3: return "x86-64-v3";
    case QG__ISA_V4: return "x86-64-v4";
    default: return "unknown";
    }
}

/* -1: not yet chosen. Atomic: threads may make the first call at once (each then
 * stores the same level). */
static _Atomic int chosen = -1;

static qg__isa best(void) { /* (a single-ISA build on a CPU without its level: that one) */
    for (int l = QG__ISA_COUNT - 1; l >= 0; l--)
        if (qg__isa_runs((qg__isa)l)) return (qg__isa)l;
    return (qg__isa)QG_ISA_BUILT;
}

qg__isa qg__isa_level(void) {
    int c = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (c < 0) {
        qg__isa l = best();
        const char *env = getenv("QG_ISA"); /* a cap for tests and benchmarks */
        if (env && env[0] == 'v') {
            int want = atoi(env + 1);
            qg__isa w = want >= 4 ? QG__ISA_V4 : want >= 3 ? QG__ISA_V3 : QG__ISA_V1;
            if (w < l && qg__isa_runs(w)) l = w;
        }
        c = (int)l;
        atomic_store_explicit(&chosen, c, memory_order_relaxed);
    }
    return (qg__isa)c;
}

int qg__isa_set(qg__isa level) {
    if (!qg__isa_runs(level))
        return qg__err(QG_EINVAL, "isa: level %s is not in this build or not supported by this CPU",
                       qg__isa_name(level));
    atomic_store_explicit(&chosen, (int)level, memory_order_relaxed);
    return 0;
}

#ifdef QG_DISPATCH
/* The kernels' entry points that return nothing (V) and a value (R):
 * X(return type, name, parameters, arguments). */
#define QG_ISA_KERNELS(V, R)                                                                                     \
    V(void, qg__gemm_f32,                                                                                         \
      (int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t rsa, int64_t csa, const float *B,  \
       int64_t rsb, int64_t csb, float beta, float *C, int64_t rsc, int64_t csc),                               \
      (m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc))                                            \
    V(void, qg__gemm_f64,                                                                                         \
      (int64_t m, int64_t n, int64_t k, double alpha, const double *A, int64_t rsa, int64_t csa,               \
       const double *B, int64_t rsb, int64_t csb, double beta, double *C, int64_t rsc, int64_t csc),           \
      (m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc))                                            \
    V(void, qg__gemm,                                                                                             \
      (qg_dtype dt, int64_t m, int64_t n, int64_t k, const char *A, int64_t rsa, int64_t csa, const char *B,    \
       int64_t rsb, int64_t csb, double beta, char *C, int64_t rsc, int64_t csc),                               \
      (dt, m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc))                                               \
    R(int64_t, qg__gemm_mr, (void), ())                                                                          \
    R(int64_t, qg__gemm_vb, (void), ())                                                                          \
    R(bool, qg__conv1_supported, (int64_t taps), (taps))                                                        \
    V(void, qg__conv1_f32,                                                                                        \
      (const float *xp, int64_t Wp, int64_t OH, int64_t OW, int kh, int kw, int dh, int dw, const float *w,    \
       const float *b, int64_t K, float *out),                                                                  \
      (xp, Wp, OH, OW, kh, kw, dh, dw, w, b, K, out))                                                           \
    V(void, qg__vexp_f32, (int64_t n, const float *x, float *y), (n, x, y))                                     \
    V(void, qg__vexp_f64, (int64_t n, const double *x, double *y), (n, x, y))                                   \
    V(void, qg__vlog_f32, (int64_t n, const float *x, float *y), (n, x, y))                                     \
    V(void, qg__vlog_f64, (int64_t n, const double *x, double *y), (n, x, y))                                   \
    V(void, qg__vtanh_f32, (int64_t n, const float *x, float *y), (n, x, y))                                    \
    V(void, qg__vtanh_f64, (int64_t n, const double *x, double *y), (n, x, y))                                  \
    V(void, qg__vsigmoid_f32, (int64_t n, const float *x, float *y), (n, x, y))                                 \
    V(void, qg__vsigmoid_f64, (int64_t n, const double *x, double *y), (n, x, y))

/* The three copies' declarations */
#define QG_DECLARE(ret, name, params, args) ret name##_v1 params; ret name##_v3 params; ret name##_v4 params;
QG_ISA_KERNELS(QG_DECLARE, QG_DECLARE)

/* The plain names: the chosen level's copy (a switch on the level, chosen once) */
#define QG_DISPATCH_CALL(name, args, ret_)                                                                       \
    switch (qg__isa_level()) {                                                                                   \
    case QG__ISA_V4: ret_ name##_v4 args; break;                                                                 \
    case QG__ISA_V3: ret_ name##_v3 args; break;                                                                 \
    default: ret_ name##_v1 args; break;                                                                         \
    }
#define QG_DISPATCH_V(ret, name, params, args) ret name params { QG_DISPATCH_CALL(name, args, ) }
#define QG_DISPATCH_R(ret, name, params, args) ret name params { QG_DISPATCH_CALL(name, args, return) return 0; }
QG_ISA_KERNELS(QG_DISPATCH_V, QG_DISPATCH_R)
#endif
