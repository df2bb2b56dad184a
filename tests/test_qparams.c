/* Quantization parameters: formula A (observer _calculate_qparams) and formula B
 * (ChooseQuantizationParams of the fused kernel) against PyTorch 1.13, bit for bit
 * (tests/fixtures/qat_ops.safetensors, cases qpA.* and qpB.*: all-positive, all-negative,
 * all-zero and tiny ranges, the eps and 6.1e-5 floors, 4-bit custom ranges,
 * reduce_range, symmetric quint8/qint8), plus the never-observed defaults, the quantized
 * ranges of qg_quant_range and the error paths.
 * Usage: test_qparams path/to/qat_ops.safetensors */
#include <float.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* Compares n scales (bitwise) and zero points with the fixture's; prints the first miss. */
static void check_arrays(const char *what, int64_t n, const float *mn, const float *mx, const float *sc,
                         const int32_t *zp, const qg_tensor *want_sc, const qg_tensor *want_zp) {
    qg_tensor *ts = qg_tensor_from_data(QG_F32, 1, SHAPE(n), sc), *tz = qg_tensor_from_data(QG_I32, 1, SHAPE(n), zp);
    tst_cmp cs = tst_compare(ts, want_sc, TST_BITWISE), cz = tst_compare(tz, want_zp, TST_EXACT);
    int64_t first = cs.first < 0 || (cz.first >= 0 && cz.first < cs.first) ? cz.first : cs.first;
    CHECK(cs.ok && cz.ok,
          "%s: %lld scales and %lld zero points of %lld differ; first at %lld (min %.9g max %.9g): scale %.9g zp %d, "
          "PyTorch %.9g zp %d",
          what, (long long)cs.bad, (long long)cz.bad, (long long)n, (long long)first, first >= 0 ? mn[first] : 0.0,
          first >= 0 ? mx[first] : 0.0, first >= 0 ? sc[first] : 0.0, first >= 0 ? zp[first] : 0,
          first >= 0 ? qg_tensor_get(want_sc, &first) : 0.0, first >= 0 ? (int)qg_tensor_get(want_zp, &first) : 0);
    qg_tensor_free(ts), qg_tensor_free(tz);
}

/* ------------------------------------------------------------- parity */

static const char *const casesA[] = {"u8_affine", "u8_affine_rr", "u8_affine_custom_rr", "s8_affine", "s8_sym",
                                     "s8_sym_rr", "u8_sym",       "u8_sym_custom",       "u4_affine", "u4_sym",
                                     "s4_sym",    "s4_affine"};
static const char *const casesB[] = {"affine_u8", "affine_rr", "affine_s8", "sym_s8", "sym_u8",
                                     "sym_rr",    "affine_u4", "sym_s4",    "sym_u4"};

static void parity_A(void) {
    for (size_t c = 0; c < sizeof casesA / sizeof *casesA; c++) {
        const char *nm = casesA[c];
        qg_tensor *tmin = FX("qpA.%s.min", nm), *tmax = FX("qpA.%s.max", nm), *cfg = FX("qpA.%s.cfg", nm);
        qg_tensor *ws = FX("qpA.%s.scale", nm), *wz = FX("qpA.%s.zp", nm);
        if (!tmin || !tmax || !cfg || !ws || !wz) {
            CHECK(0, "qpA.%s: fixture incomplete", nm);
            continue;
        }
        int64_t n = qg_tensor_numel(tmin), k[5];
        qg_tensor_copy_to(cfg, QG_I64, k);
        float *mn = malloc(sizeof(float) * (size_t)n * 3), *mx = mn + n, *sc = mx + n;
        int32_t *zp = malloc(sizeof(int32_t) * (size_t)n);
        qg_tensor_copy_to(tmin, QG_F32, mn);
        qg_tensor_copy_to(tmax, QG_F32, mx);
        qg_qscheme scheme = k[2] ? QG_PER_TENSOR_SYMMETRIC : QG_PER_TENSOR_AFFINE;
        qg_qdtype dt = k[3] ? QG_QUINT8 : QG_QINT8;
        /* the fixture's ranges are per-tensor pairs; as per-channel entries they are the
         * same computation, n at once */
        qg_qscheme pc = k[2] ? QG_PER_CHANNEL_SYMMETRIC : QG_PER_CHANNEL_AFFINE;
        qg_status st = qg_qparams_observer(n, mn, mx, pc, dt, k[4] != 0, k[0], k[1], FLT_EPSILON, sc, zp);
        CHECK(st == QG_OK, "qpA.%s: %s", nm, qg_last_error());
        if (!st) check_arrays(nm, n, mn, mx, sc, zp, ws, wz);
        /* one at a time, per tensor */
        bool all = true;
        for (int64_t i = 0; i < n && all; i++) {
            float s1;
            int32_t z1;
            all = qg_qparams_observer(1, mn + i, mx + i, scheme, dt, k[4] != 0, k[0], k[1], FLT_EPSILON, &s1, &z1) ==
                      QG_OK && !memcmp(&s1, &sc[i], sizeof s1) && z1 == zp[i];
        }
        CHECK(all, "qpA.%s: per-tensor calls differ from the per-channel one", nm);
        free(mn), free(zp);
    }
}

static void parity_B(void) {
    for (size_t c = 0; c < sizeof casesB / sizeof *casesB; c++) {
        const char *nm = casesB[c];
        qg_tensor *tmin = FX("qpB.%s.min", nm), *tmax = FX("qpB.%s.max", nm), *cfg = FX("qpB.%s.cfg", nm);
        qg_tensor *ws = FX("qpB.%s.scale", nm), *wz = FX("qpB.%s.zp", nm);
        if (!tmin || !tmax || !cfg || !ws || !wz) {
            CHECK(0, "qpB.%s: fixture incomplete", nm);
            continue;
        }
        int64_t n = qg_tensor_numel(tmin), k[3];
        qg_tensor_copy_to(cfg, QG_I64, k);
        float *mn = malloc(sizeof(float) * (size_t)n * 3), *mx = mn + n, *sc = mx + n;
        int32_t *zp = malloc(sizeof(int32_t) * (size_t)n);
        qg_tensor_copy_to(tmin, QG_F32, mn);
        qg_tensor_copy_to(tmax, QG_F32, mx);
        qg_status st = qg_qparams_choose(n, mn, mx, k[2] != 0, k[0], k[1], sc, zp);
        CHECK(st == QG_OK, "qpB.%s: %s", nm, qg_last_error());
        if (!st) check_arrays(nm, n, mn, mx, sc, zp, ws, wz);
        free(mn), free(zp);
    }
}

/* ------------------------------------------------------------- known values */

static void known_values(void) {
    float s;
    int32_t z;
    /* B, symmetric int8 weights: scale = max(|min|/128, max/127); an all-positive channel
     * gets scale max/255 and zero point -128 */
    float mn = -0.5f, mx = 2.0f;
    CHECK(qg_qparams_choose(1, &mn, &mx, true, -128, 127, &s, &z) == QG_OK && fabs(s / (2.0 / 127) - 1) < 1e-6 && z == 0,
          "B sym mixed: %.9g %d", s, z);
    mn = 0.1f, mx = 2.0f;
    CHECK(qg_qparams_choose(1, &mn, &mx, true, -128, 127, &s, &z) == QG_OK && s == (float)(2.0 / 255) && z == -128,
          "B sym all-positive: %.9g %d", s, z);
    mn = -2.0f, mx = -0.5f;
    CHECK(qg_qparams_choose(1, &mn, &mx, true, -128, 127, &s, &z) == QG_OK && s == (float)(2.0 / 255) && z == 127,
          "B sym all-negative: %.9g %d", s, z);
    mn = 0, mx = 0;
    CHECK(qg_qparams_choose(1, &mn, &mx, false, 0, 255, &s, &z) == QG_OK && s == 0.1f && z == 0, "B zero: %.9g %d", s, z);
    mn = 0, mx = 1e-6f;
    CHECK(qg_qparams_choose(1, &mn, &mx, false, 0, 255, &s, &z) == QG_OK && s == 6.1e-5f && z == 0, "B floor: %.9g %d", s, z);
    /* A: eps floor, symmetric quint8 zero points */
    mn = -1e-9f, mx = 1e-9f;
    CHECK(qg_qparams_observer(1, &mn, &mx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, FLT_EPSILON, &s, &z) == QG_OK &&
              s == FLT_EPSILON && z == 0,
          "A eps floor: %.9g %d", s, z);
    mn = -1, mx = 1;
    CHECK(qg_qparams_observer(1, &mn, &mx, QG_PER_TENSOR_SYMMETRIC, QG_QUINT8, false, 0, 255, FLT_EPSILON, &s, &z) == QG_OK &&
              z == 128 && s == (float)(1 / 127.5),
          "A quint8 symmetric: %.9g %d", s, z);
    CHECK(qg_qparams_observer(1, &mn, &mx, QG_PER_TENSOR_SYMMETRIC, QG_QUINT8, true, 0, 255, FLT_EPSILON, &s, &z) == QG_OK &&
              z == 127,
          "A quint8 symmetric, custom [0, 255]: %d", z);
    CHECK(qg_qparams_observer(1, &mn, &mx, QG_PER_TENSOR_SYMMETRIC, QG_QUINT8, true, -3, 4, FLT_EPSILON, &s, &z) == QG_OK &&
              z == 0,
          "A quint8 symmetric, custom [-3, 4]: (qmin+qmax)//2 = %d", z);
    CHECK(qg_qparams_observer(1, &mn, &mx, QG_PER_TENSOR_SYMMETRIC, QG_QUINT8, true, -4, 1, FLT_EPSILON, &s, &z) == QG_OK &&
              z == -2,
          "A quint8 symmetric, custom [-4, 1]: floor((-3)/2) = %d", z);
    CHECK(qg_qparams_observer(1, &mn, &mx, QG_PER_TENSOR_SYMMETRIC, QG_QINT8, false, -128, 127, FLT_EPSILON, &s, &z) == QG_OK &&
              z == 0,
          "A qint8 symmetric: %d", z);
}

static void never_observed(void) {
    float s = 0;
    int32_t z = 5;
    float mn = INFINITY, mx = -INFINITY;
    CHECK(qg_qparams_observer(1, &mn, &mx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, FLT_EPSILON, &s, &z) == QG_OK &&
              s == 1.0f && z == 0,
          "A never observed (per tensor +inf/-inf): %g %d", s, z);
    s = 0, z = 5;
    CHECK(qg_qparams_observer(0, NULL, NULL, QG_PER_CHANNEL_SYMMETRIC, QG_QINT8, false, -128, 127, FLT_EPSILON, &s, &z) ==
                  QG_OK && s == 1.0f && z == 0,
          "A never observed (per channel, empty): %g %d", s, z);
    CHECK(qg_qparams_observer(1, &mn, &mx, QG_PER_CHANNEL_AFFINE, QG_QUINT8, false, 0, 255, FLT_EPSILON, &s, &z) == QG_EINVAL,
          "A per-channel +inf/-inf is an error (PyTorch asserts min <= max)");
    CHECK(qg_qparams_choose(1, &mn, &mx, false, 0, 255, &s, &z) == QG_EINVAL && strstr(qg_last_error(), "less than or equal"),
          "B never observed fails like PyTorch: %s", qg_last_error());
}

static void errors(void) {
    float s[2];
    int32_t z[2];
    float mn[2] = {1, 0}, mx[2] = {2, -1};
    CHECK(qg_qparams_observer(2, mn, mx, QG_PER_CHANNEL_AFFINE, QG_QUINT8, false, 0, 255, FLT_EPSILON, s, z) == QG_EINVAL &&
              strstr(qg_last_error(), "channel 1"),
          "A min > max names the channel: %s", qg_last_error());
    CHECK(qg_qparams_choose(2, mn, mx, true, -128, 127, s, z) == QG_EINVAL && strstr(qg_last_error(), "channel 1"),
          "B min > max: %s", qg_last_error());
    float nmn = NAN, nmx = 1;
    CHECK(qg_qparams_observer(1, &nmn, &nmx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, FLT_EPSILON, s, z) == QG_EINVAL,
          "A NaN min");
    CHECK(qg_qparams_choose(1, &nmn, &nmx, false, 0, 255, s, z) == QG_EINVAL && strstr(qg_last_error(), "not finite"),
          "B NaN min: %s", qg_last_error());
    float imn = -INFINITY, imx = 1;
    CHECK(qg_qparams_observer(1, &imn, &imx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, FLT_EPSILON, s, z) == QG_EINVAL,
          "A -inf min");
    CHECK(qg_qparams_choose(1, &imn, &imx, false, 0, 255, s, z) == QG_EINVAL, "B -inf min");
    float a = -1, b = 1;
    CHECK(qg_qparams_choose(1, &a, &b, false, 5, 5, s, z) == QG_EINVAL, "B qmin == qmax");
    CHECK(qg_qparams_observer(1, &a, &b, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 7, 3, FLT_EPSILON, s, z) == QG_EINVAL,
          "A qmin > qmax");
    CHECK(qg_qparams_choose(1, &a, &b, true, 0, 1, s, z) == QG_EINVAL && strstr(qg_last_error(), "scale should be > 0"),
          "B symmetric [0, 1] fails as in PyTorch: %s", qg_last_error());
    CHECK(qg_qparams_choose(1, &a, &b, false, INT32_MIN, INT32_MAX, s, z) == QG_EINVAL, "B full int32 range");
    CHECK(qg_qparams_choose(1, &a, &b, false, -(1 << 30), (1 << 30) - 1, s, z) == QG_OK, "B range 2^31 - 1: %s",
          qg_last_error());
    CHECK(qg_qparams_choose(-1, &a, &b, false, 0, 255, s, z) == QG_EINVAL, "B n < 0");
}

static void ranges(void) {
    static const struct {
        qg_qdtype dt;
        bool rr;
        int64_t cmin, cmax, qmin, qmax;
    } t[] = {
        {QG_QINT8, false, 0, 0, -128, 127},       {QG_QINT8, true, 0, 0, -64, 63},
        {QG_QUINT8, false, 0, 0, 0, 255},         {QG_QUINT8, true, 0, 0, 0, 127},
        {QG_QINT32, false, 0, 0, INT32_MIN, INT32_MAX}, {QG_QINT32, true, 0, 0, INT32_MIN, INT32_MAX},
        {QG_QUINT8, true, 0, 255, 0, 127},        {QG_QUINT8, false, 0, 15, 0, 15},
        {QG_QINT8, false, -8, 7, -8, 7},          {QG_QINT8, true, -8, 7, -4, 3},
        {QG_QINT8, true, -7, 7, -4, 3},           {QG_QUINT8, true, 0, 15, 0, 7},
        {QG_QINT8, true, -128, 127, -64, 63},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        int64_t lo = 99, hi = 99;
        qg_quant_range(t[i].dt, t[i].rr, t[i].cmin, t[i].cmax, &lo, &hi);
        CHECK(lo == t[i].qmin && hi == t[i].qmax, "quant_range case %zu: [%lld, %lld], want [%lld, %lld]", i,
              (long long)lo, (long long)hi, (long long)t[i].qmin, (long long)t[i].qmax);
    }
}

int main(int argc, char **argv) {
    known_values();
    never_observed();
    errors();
    ranges();
    if (argc < 2) {
        printf("usage: %s path/to/qat_ops.safetensors (PyTorch parity skipped)\n", argv[0]);
        CHECK(0, "no fixture given");
    } else if (!(tst_fx = qg_safetensors_load(argv[1]))) {
        CHECK(0, "cannot load %s: %s", argv[1], qg_last_error());
    } else {
        parity_A();
        parity_B();
        qg_tensor_dict_free(tst_fx);
    }
    return test_summary("test_qparams");
}
