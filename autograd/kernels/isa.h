/* Runtime ISA dispatch of the float kernels (docs/build.md).
 *
 * A portable build (meson -Dnative=portable, the default: no -march) compiles the
 * kernels whose vector width is fixed at compile time (gemm.c, conv1.c, vmath.c) once
 * per x86-64 level, each copy with its entry points renamed by a suffix:
 *   _v1  the baseline (SSE2), _v3  AVX2 + FMA (x86-64-v3), _v4  AVX-512 (x86-64-v4),
 * and isa.c defines the plain names, which call the best level the CPU has. Other hot
 * loops, which the compiler vectorises, get one clone per level (QG_HOT) and the int8
 * kernels choose their path at run time already (qgemm.h). Builds with a -march of
 * their own (-Dnative=true, -Dnative=false, or -march in c_args) compile each kernel
 * once, for that ISA, without renaming: isa.c then reports that one level.
 *
 * A kernel file includes this header first, so that the renaming reaches its own
 * declarations (op_internal.h, gemm.h) as well as its definitions. */
#ifndef QG_ISA_H
#define QG_ISA_H

#include <stdbool.h>

#define QG__ISA_CAT2(a, b) a##b
#define QG__ISA_CAT(a, b) QG__ISA_CAT2(a, b)

#ifdef QG_ISA_SUFFIX /* one copy of a kernel file, for one level */
#define qg__gemm QG__ISA_CAT(qg__gemm, QG_ISA_SUFFIX)
#define qg__gemm_f32 QG__ISA_CAT(qg__gemm_f32, QG_ISA_SUFFIX)
#define qg__gemm_f64 QG__ISA_CAT(qg__gemm_f64, QG_ISA_SUFFIX)
#define qg__conv1_supported QG__ISA_CAT(qg__conv1_supported, QG_ISA_SUFFIX)
#define qg__conv1_f32 QG__ISA_CAT(qg__conv1_f32, QG_ISA_SUFFIX)
#define qg__vexp_f32 QG__ISA_CAT(qg__vexp_f32, QG_ISA_SUFFIX)
#define qg__vexp_f64 QG__ISA_CAT(qg__vexp_f64, QG_ISA_SUFFIX)
#define qg__vlog_f32 QG__ISA_CAT(qg__vlog_f32, QG_ISA_SUFFIX)
#define qg__vlog_f64 QG__ISA_CAT(qg__vlog_f64, QG_ISA_SUFFIX)
#define qg__vtanh_f32 QG__ISA_CAT(qg__vtanh_f32, QG_ISA_SUFFIX)
#define qg__vtanh_f64 QG__ISA_CAT(qg__vtanh_f64, QG_ISA_SUFFIX)
#define qg__vsigmoid_f32 QG__ISA_CAT(qg__vsigmoid_f32, QG_ISA_SUFFIX)
#define qg__vsigmoid_f64 QG__ISA_CAT(qg__vsigmoid_f64, QG_ISA_SUFFIX)
#define qg__gemm_mr QG__ISA_CAT(qg__gemm_mr, QG_ISA_SUFFIX)
#define qg__gemm_vb QG__ISA_CAT(qg__gemm_vb, QG_ISA_SUFFIX)
#endif

/* The levels, in order: a level's kernels run on every CPU of a higher one. */
typedef enum { QG__ISA_V1 = 0, QG__ISA_V3, QG__ISA_V4, QG__ISA_COUNT } qg__isa;

/* The level whose kernels run: the best the CPU has among those this build compiled
 * (in a build with a -march of its own, that one), or the one qg__isa_set chose. */
qg__isa qg__isa_level(void);
const char *qg__isa_name(qg__isa level); /* "x86-64-v1", ... */
/* Whether this build has kernels for `level` and the CPU can run them. */
bool qg__isa_runs(qg__isa level);
/* Forces a level for tests and benchmarks (QG_EINVAL if !qg__isa_runs); also read
 * once from the environment variable QG_ISA (v1, v3, v4) at the first dispatch.
 * Process-wide; not thread-safe: set it before any kernel runs. */
int qg__isa_set(qg__isa level);

/* Clones of a hot loop for each level (portable builds with GCC 12, or clang 18 and
 * later: clang 14's resolver never picks a clone), chosen at load time; nothing in
 * other builds. The loop runs the same operations in every clone
 * (no -ffast-math, and meson.build turns FMA contraction off): only the vector width
 * differs, so results are the same bits on every level. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QG__ISA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define QG__ISA_ASAN 1
#endif
/* (not under ASan, whose runtime is not up yet when the loader runs the resolvers) */
#if defined(__clang__)
#define QG__ISA_CLONES (__clang_major__ >= 18)
#elif defined(__GNUC__)
#define QG__ISA_CLONES (__GNUC__ >= 12)
#else
#define QG__ISA_CLONES 0
#endif
#if defined(QG_DISPATCH) && !defined(QG_ISA_SUFFIX) && defined(__x86_64__) && !defined(QG__ISA_ASAN) && QG__ISA_CLONES
#define QG_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QG_HOT
#endif

/* AVX2 intrinsic code outside the kernel files (target("avx2") functions): compiled
 * where the build's -march has AVX2 or the build is portable, and run where
 * QG_USE_AVX2() (in a portable build, at level v3 and up). */
#if defined(__AVX2__) || (defined(QG_DISPATCH) && defined(__x86_64__))
#define QG_AVX2_CODE 1
#define QG_TARGET_AVX2 __attribute__((target("avx2")))
#endif
#if defined(QG_DISPATCH)
#define QG_USE_AVX2() (qg__isa_level() >= QG__ISA_V3)
#elif defined(__AVX2__)
#define QG_USE_AVX2() 1
#else
#define QG_USE_AVX2() 0
#endif

#endif
