/* The ISA dispatch (autograd/kernels/isa.h) on every level this build has and this CPU
 * runs: each level's float kernels (the GEMM in float and double, the direct
 * single-channel convolution, the SLEEF functions) against float64 references, with
 * bounds that hold for any summation order; in a portable build the GEMM's tile
 * (QG_MR, QG_VB) and the int8 default path follow the level; forcing a level this
 * build or CPU lacks is refused. A build with its own -march has one level. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"
#include "kernels/gemm.h"
#include "kernels/isa.h"
#include "kernels/qgemm.h"
#include "op_internal.h"
#include "test_util.h"

static uint64_t rs = 0x853c49e6748fea9bull;
static double urand(void) { /* in [-1, 1) */
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 4503599627370496.0 - 1.0;
}

/* C = A B (m, k) x (k, n), row-major, in float and double, against a float64 loop:
 * |err| <= k eps sum_p |a||b| (+ tiny), whatever the order of the sums. */
static void check_gemm(const char *lv, int64_t m, int64_t n, int64_t k) {
    float *af = malloc(sizeof(float) * (size_t)(m * k)), *bf = malloc(sizeof(float) * (size_t)(k * n));
    float *cf = malloc(sizeof(float) * (size_t)(m * n));
    double *ad = malloc(sizeof(double) * (size_t)(m * k)), *bd = malloc(sizeof(double) * (size_t)(k * n));
    double *cd = malloc(sizeof(double) * (size_t)(m * n));
    for (int64_t i = 0; i < m * k; i++) ad[i] = urand(), af[i] = (float)ad[i], ad[i] = af[i];
    for (int64_t i = 0; i < k * n; i++) bd[i] = urand(), bf[i] = (float)bd[i], bd[i] = bf[i];
    qg__gemm_f32(m, n, k, 1.0f, af, k, 1, bf, n, 1, 0.0f, cf, n, 1);
    qg__gemm_f64(m, n, k, 1.0, ad, k, 1, bd, n, 1, 0.0, cd, n, 1);
    int64_t bad32 = 0, bad64 = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            long double ref = 0, mag = 0;
            for (int64_t p = 0; p < k; p++)
                ref += (long double)ad[i * k + p] * bd[p * n + j], mag += fabsl((long double)ad[i * k + p] * bd[p * n + j]);
            if (fabsl(cf[i * n + j] - ref) > (long double)k * 6e-8L * mag + 1e-30L) bad32++;
            if (fabsl(cd[i * n + j] - ref) > (long double)k * 1.2e-16L * mag + 1e-300L) bad64++;
        }
    CHECK(!bad32 && !bad64, "%s: gemm %lldx%lldx%lld: %lld float and %lld double elements beyond the bound", lv,
          (long long)m, (long long)n, (long long)k, (long long)bad32, (long long)bad64);
    free(af), free(bf), free(cf), free(ad), free(bd), free(cd);
}

/* The direct convolution of a padded plane (Hp, Wp) with a kh x kw kernel, K channels. */
static void check_conv1(const char *lv, int kh, int kw) {
    const int64_t Hp = 19, Wp = 23, OH = Hp - kh + 1, OW = Wp - kw + 1, K = 5, T = kh * kw;
    if (!qg__conv1_supported(T)) return;
    float *xp = calloc((size_t)(Hp * Wp + 32), sizeof(float)), *w = malloc(sizeof(float) * (size_t)(K * T));
    float *b = malloc(sizeof(float) * (size_t)K), *out = malloc(sizeof(float) * (size_t)(K * OH * OW));
    for (int64_t i = 0; i < Hp * Wp; i++) xp[i] = (float)urand();
    for (int64_t i = 0; i < K * T; i++) w[i] = (float)urand();
    for (int64_t i = 0; i < K; i++) b[i] = (float)urand();
    qg__conv1_f32(xp, Wp, OH, OW, kh, kw, 1, 1, w, b, K, out);
    int64_t bad = 0;
    for (int64_t c = 0; c < K; c++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double ref = b[c], mag = fabs((double)b[c]);
                for (int t = 0; t < T; t++) {
                    double v = (double)w[c * T + t] * xp[(oh + t / kw) * Wp + ow + t % kw];
                    ref += v, mag += fabs(v);
                }
                if (fabs(out[(c * OH + oh) * OW + ow] - ref) > (T + 1) * 6e-8 * mag + 1e-30) bad++;
            }
    CHECK(!bad, "%s: conv1 %dx%d: %lld outputs beyond the bound", lv, kh, kw, (long long)bad);
    free(xp), free(w), free(b), free(out);
}

/* SLEEF's 1-ULP functions, float and double, against libm in long double: within 2 ulp. */
static void check_vmath(const char *lv) {
    enum { N = 1001 };
    float xf[N], yf[4][N];
    double xd[N], yd[4][N];
    for (int i = 0; i < N; i++) xd[i] = 0.01 + 6.0 * (urand() + 1.0), xf[i] = (float)xd[i], xd[i] = xf[i];
    qg__vexp_f32(N, xf, yf[0]), qg__vlog_f32(N, xf, yf[1]), qg__vtanh_f32(N, xf, yf[2]), qg__vsigmoid_f32(N, xf, yf[3]);
    qg__vexp_f64(N, xd, yd[0]), qg__vlog_f64(N, xd, yd[1]), qg__vtanh_f64(N, xd, yd[2]), qg__vsigmoid_f64(N, xd, yd[3]);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        long double x = xd[i], ref[4] = {expl(x), logl(x), tanhl(x), 1.0L / (1.0L + expl(-x))};
        for (int f = 0; f < 4; f++) {
            if (fabsl(yf[f][i] - ref[f]) > 2.5L * 1.2e-7L * fabsl(ref[f])) bad++;
            if (fabsl(yd[f][i] - ref[f]) > 2.5L * 2.3e-16L * fabsl(ref[f])) bad++;
        }
    }
    CHECK(!bad, "%s: vexp/vlog/vtanh/vsigmoid: %d values beyond 2.5 ulp", lv, bad);
}

int main(void) {
    const qg__isa best = qg__isa_level();
    int levels = 0;
    for (int l = 0; l < QG__ISA_COUNT; l++) {
        const qg__isa lv = (qg__isa)l;
        const char *name = qg__isa_name(lv);
        if (!qg__isa_runs(lv)) {
            const qg__isa before = qg__isa_level();
            CHECK(qg__isa_set(lv) != 0, "%s: forcing a level this build or CPU lacks is refused", name);
            CHECK(qg__isa_level() == before, "%s: a refused level leaves the level as it was", name);
            continue;
        }
        levels++;
        if (!getenv("QG_ISA")) /* uncapped: the default is the best level that runs */
            CHECK(lv <= best, "%s runs, so the default level (%s) is at least as high", name, qg__isa_name(best));
        CHECK(qg__isa_set(lv) == 0 && qg__isa_level() == lv, "%s: forced", name);
#ifdef QG_DISPATCH
        CHECK(qg__gemm_mr() == (lv == QG__ISA_V4 ? 12 : 6) && qg__gemm_vb() == (lv == QG__ISA_V4 ? 64 : lv == QG__ISA_V3 ? 32 : 16),
              "%s: the GEMM tile follows the level (MR %lld, VB %lld)", name, (long long)qg__gemm_mr(),
              (long long)qg__gemm_vb());
#endif
        const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {37, 53, 71}, {64, 96, 300}, {129, 17, 513}};
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) check_gemm(name, shapes[s][0], shapes[s][1], shapes[s][2]);
        check_conv1(name, 3, 3), check_conv1(name, 5, 5), check_conv1(name, 1, 7);
        check_vmath(name);
#ifdef QG_DISPATCH
        const qg__qpath qp = qg__qgemm_path();
        CHECK(lv == QG__ISA_V1 ? qp == QG__QPATH_SCALAR : lv == QG__ISA_V3 ? qp == QG__QPATH_AVX2 : qp >= QG__QPATH_AVX512BW,
              "%s: the int8 default path (%s) follows the level", name, qg__qpath_name(qp));
#endif
    }
#ifdef QG_DISPATCH
    CHECK(levels >= 1 && qg__isa_runs(QG__ISA_V1), "a portable build runs the baseline (%d levels here)", levels);
#else
    CHECK(levels == 1, "a build with its own -march has one level (%d here)", levels);
#endif
    printf("isa: levels run here: %d, default %s\n", levels, qg__isa_name(best));
    return test_summary("isa");
}
