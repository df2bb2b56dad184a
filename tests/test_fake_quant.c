/* Fake-quantize ops against PyTorch 1.13 (tests/fixtures/qat_ops.safetensors):
 *  - fake_quantize_per_tensor / per_channel: outputs and STE gradients bit for bit at
 *    rounding ties, range edges, non-finite inputs, 4-bit and int32 ranges, axis 0, a
 *    middle axis, the last axis, float zero points, f32 and f64; also through a
 *    non-contiguous (transposed) input;
 *  - the learnable (LSQ) ops: output and x gradient bit for bit (and every per-element
 *    term of the scale/zero-point gradients, one element at a time); the summed scale and
 *    zero-point gradients within 1e-5 relative: they are summed in double here, in float
 *    by PyTorch, whose sums lose up to ~3e-7 of sum|terms| to cancellation (checked:
 *    ours equal the exact sums of PyTorch's terms);
 *    grad_factor 1 and 1/sqrt(numel * qmax);
 *  - fused_moving_avg_obs_fake_quant over several steps (observer off, fake-quant off,
 *    both off): running min/max, scale, zero point, output and gradient bit for bit,
 *    per tensor affine [0, 127], per tensor symmetric, per channel symmetric/affine axis 0;
 *  - float64: gradient checks where the op is differentiable in the ordinary sense
 *    (fake-quant off; LSQ with every element saturated), the STE against dx = dy * mask;
 *  - large inputs (parallel, both parameter layouts) against a plain reference loop,
 *    and independence of the thread count; error paths.
 * Usage: test_fake_quant path/to/qat_ops.safetensors */
#include <float.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* element i of t as a double */
static double at(const qg_tensor *t, int64_t i) {
    int64_t n = qg_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n + 1)), r;
    qg_tensor_copy_to(t, QG_F64, v);
    r = v[i];
    free(v);
    return r;
}

/* A caller-owned copy of t that requires grad (float) */
static qg_tensor *leaf(const qg_tensor *t, bool grad) {
    qg_tensor *c = qg_tensor_clone(t);
    if (grad) qg_tensor_set_requires_grad(c, true);
    return c;
}

/* ------------------------------------------------------------- fake_quantize_per_* */

static const char *const fq_cases[] = {"ties_s1",   "ties_pow2",   "rand_affine",      "rand_sym",        "bits4_u",
                                       "bits4_s",   "special",     "wide",             "ties_s1_f64",     "rand_affine_f64",
                                       "pc_axis0",  "pc_axis1",    "pc_last",          "pc_long",         "pc_float_zp",
                                       "pc_axis0_f64"};

static qg_tensor *run_fq(const qg_tensor *x, const qg_tensor *scale, const qg_tensor *zp, const int64_t *cfg) {
    if (cfg[2] < 0) return qg_fake_quantize_per_tensor(x, qg_tensor_item(scale), (int64_t)qg_tensor_item(zp), cfg[0], cfg[1]);
    return qg_fake_quantize_per_channel(x, scale, zp, (int)cfg[2], cfg[0], cfg[1]);
}

static void fq_parity(void) {
    for (size_t c = 0; c < sizeof fq_cases / sizeof *fq_cases; c++) {
        const char *nm = fq_cases[c];
        qg_tensor *x = FX("fq.%s.x", nm), *scale = FX("fq.%s.scale", nm), *zp = FX("fq.%s.zp", nm);
        qg_tensor *cfgt = FX("fq.%s.cfg", nm), *want = FX("fq.%s.out", nm), *gout = FX("fq.%s.gout", nm);
        qg_tensor *gx = FX("fq.%s.gx", nm);
        if (!x || !scale || !zp || !cfgt || !want || !gout || !gx) {
            CHECK(0, "fq.%s: fixture incomplete", nm);
            continue;
        }
        int64_t cfg[3];
        qg_tensor_copy_to(cfgt, QG_I64, cfg);
        qg_tensor *xl = leaf(x, true);
        qg_tensor *y = run_fq(xl, scale, zp, cfg);
        CHECK(y != NULL, "fq.%s: %s", nm, qg_last_error());
        if (y) {
            CHECK_TENSOR(y, want, TST_EXACT, "fq.%s out", nm);
            CHECK(qg_backward(y, gout) == QG_OK, "fq.%s backward: %s", nm, qg_last_error());
            CHECK_TENSOR(xl->grad, gx, TST_EXACT, "fq.%s gx", nm);
        }
        /* the same through a transposed (non-contiguous) view of a leaf */
        if (x->ndim >= 2) {
            int d = x->ndim - 1;
            qg_tensor *lt = leaf(qg_transpose(x, 0, d), true);
            qg_tensor *v = qg_transpose(lt, 0, d);
            qg_tensor *y2 = run_fq(v, scale, zp, cfg);
            CHECK(y2 && !qg_tensor_is_contiguous(v), "fq.%s strided: %s", nm, qg_last_error());
            if (y2) {
                CHECK_TENSOR(y2, want, TST_EXACT, "fq.%s strided out", nm);
                qg_backward(y2, gout);
                qg_tensor *want_t = qg_tensor_clone(qg_transpose(gx, 0, d));
                CHECK_TENSOR(lt->grad, want_t, TST_EXACT, "fq.%s strided gx", nm);
                qg_tensor_free(want_t);
            }
            qg_tensor_free(lt);
        }
        qg_tensor_free(xl);
        qg_tape_reset(NULL);
    }
}

/* docs/quantization.md: at scale 1, [-128, 127], -128.4 and 127.4 pass the gradient, -128.6 and
 * 127.6 do not; ties round to even (127.5 -> 128, out of range). */
static void ste_edges(void) {
    const float xs[] = {-128.4f, -128.6f, 127.4f, 127.6f, 127.5f, -128.5f, 2.5f, -2.5f};
    const float want_y[] = {-128, -128, 127, 127, 127, -128, 2, -2};
    const float want_g[] = {1, 0, 1, 0, 0, 1, 1, 1};
    qg_tensor *x = qg_tensor_from_data(QG_F32, 1, SHAPE(8), xs);
    qg_tensor_set_requires_grad(x, true);
    qg_tensor *y = qg_fake_quantize_per_tensor(x, 1.0, 0, -128, 127), *ones = qg_tensor_ones(QG_F32, 1, SHAPE(8));
    qg_backward(y, ones);
    qg_tensor_free(ones);
    for (int i = 0; i < 8; i++) {
        CHECK(at(y, i) == want_y[i], "ste: y(%g) = %g, want %g", xs[i], at(y, i), want_y[i]);
        CHECK(at(x->grad, i) == want_g[i], "ste: grad at %g = %g, want %g", xs[i], at(x->grad, i), want_g[i]);
    }
    qg_tensor_free(x);
    qg_tape_reset(NULL);
}

/* ------------------------------------------------------------- learnable */

static const char *const lsq_cases[] = {"pt_u8", "pt_u8_gs", "pt_s8", "pt_u4_gs", "pt_s4",
                                        "pc_axis0", "pc_axis0_gs", "pc_axis1", "pc_elem"};

static void lsq_parity(void) {
    for (size_t c = 0; c < sizeof lsq_cases / sizeof *lsq_cases; c++) {
        const char *nm = lsq_cases[c];
        qg_tensor *x = FX("lsq.%s.x", nm), *scale = FX("lsq.%s.scale", nm), *zp = FX("lsq.%s.zp", nm);
        qg_tensor *cfgt = FX("lsq.%s.cfg", nm), *gft = FX("lsq.%s.gf", nm), *want = FX("lsq.%s.out", nm);
        qg_tensor *gout = FX("lsq.%s.gout", nm), *gx = FX("lsq.%s.gx", nm), *gs = FX("lsq.%s.gscale", nm);
        qg_tensor *gz = FX("lsq.%s.gzp", nm);
        if (!x || !scale || !zp || !cfgt || !gft || !want || !gout || !gx || !gs || !gz) {
            CHECK(0, "lsq.%s: fixture incomplete", nm);
            continue;
        }
        int64_t cfg[3];
        qg_tensor_copy_to(cfgt, QG_I64, cfg);
        double gf = qg_tensor_item(gft);
        qg_tensor *xl = leaf(x, true), *sl = leaf(scale, true), *zl = leaf(zp, true);
        qg_tensor *y = cfg[2] < 0 ? qg_fake_quantize_learnable_per_tensor(xl, sl, zl, cfg[0], cfg[1], gf)
                                  : qg_fake_quantize_learnable_per_channel(xl, sl, zl, (int)cfg[2], cfg[0], cfg[1], gf);
        CHECK(y != NULL, "lsq.%s: %s", nm, qg_last_error());
        if (y) {
            CHECK_TENSOR(y, want, TST_EXACT, "lsq.%s out", nm);
            CHECK(qg_backward(y, gout) == QG_OK, "lsq.%s backward: %s", nm, qg_last_error());
            CHECK_TENSOR(xl->grad, gx, TST_EXACT, "lsq.%s gx", nm);
            if (!strcmp(nm, "pc_elem")) { /* one element per channel: no sum, every term exact */
                CHECK_TENSOR(sl->grad, gs, TST_EXACT, "lsq.%s gscale terms", nm);
                CHECK_TENSOR(zl->grad, gz, TST_EXACT, "lsq.%s gzp terms", nm);
            }
            /* max |a - b| / max(|b|, 1e-3) */
            double es = tst_compare(sl->grad, gs, (tst_tol){.rel_floor = 1e-3}).max_rel;
            double ez = tst_compare(zl->grad, gz, (tst_tol){.rel_floor = 1e-3}).max_rel;
            CHECK(es <= 1e-5, "lsq.%s gscale: rel err %.3g (%.9g vs PyTorch %.9g)", nm, es, at(sl->grad, 0), at(gs, 0));
            CHECK(ez <= 1e-5, "lsq.%s gzp: rel err %.3g (%.9g vs PyTorch %.9g)", nm, ez, at(zl->grad, 0), at(gz, 0));
        }
        qg_tensor_free(xl), qg_tensor_free(sl), qg_tensor_free(zl);
        qg_tape_reset(NULL);
    }
}

/* LSQ's per-element scale gradient exactly: one element per call, so PyTorch's sum is
 * the element itself — compared with the formula of docs/quantization.md in float with
 * PyTorch's fused multiply-add. */
static void lsq_elementwise(void) {
    const float s = 0.1f, inv = 1.0f / s;
    const float xs[] = {0.349f, -0.05f, 0.25f, 30.0f, -30.0f, 0.0f, 12.84f, 12.86f};
    const float zraw = 2.5f; /* backward zero point trunc(2.5 + 0.5) = 3, forward 2 */
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        qg_tensor *x = qg_tensor_from_data(QG_F32, 1, SHAPE(1), &xs[i]);
        qg_tensor *sc = qg_tensor_full(QG_F32, 1, SHAPE(1), s), *zp = qg_tensor_full(QG_F32, 1, SHAPE(1), zraw);
        qg_tensor_set_requires_grad(x, true), qg_tensor_set_requires_grad(sc, true), qg_tensor_set_requires_grad(zp, true);
        qg_tensor *y = qg_fake_quantize_learnable_per_tensor(x, sc, zp, 0, 127, 0.5);
        qg_tensor *gt = qg_tensor_full(QG_F32, 1, SHAPE(1), -1.5);
        qg_backward(y, gt);
        qg_tensor_free(gt);
        const float dy = -1.5f, g = 0.5f, zb = 3.0f;
        float t = rintf(fmaf(xs[i], inv, zb));
        bool in = t >= 0 && t <= 127;
        float c = in ? t : (t > 127 ? 127.0f : 0.0f);
        float ds = in ? ((dy * fmaf(c - zb, s, -xs[i])) * inv) * g : (dy * ((t > 127 ? 127.0f : 0.0f) - zb)) * g;
        float dz = in ? 0.0f : ((-dy) * s) * g;
        float yq = rintf(xs[i] * inv) + 2.0f;
        float yw = ((yq < 0 ? 0 : yq > 127 ? 127 : yq) - 2.0f) * s;
        bad += at(y, 0) != yw || at(x->grad, 0) != dy * (float)in || at(sc->grad, 0) != ds || at(zp->grad, 0) != dz;
        qg_tensor_free(x), qg_tensor_free(sc), qg_tensor_free(zp);
        qg_tape_reset(NULL);
    }
    CHECK(bad == 0, "lsq per-element formula: %d of 8 differ", bad);
}

/* ------------------------------------------------------------- fused */

static const char *const fused_cases[] = {"pt_affine_rr", "pt_sym", "pc_sym_axis0", "pc_affine_axis0"};

static void fused_parity(void) {
    for (size_t c = 0; c < sizeof fused_cases / sizeof *fused_cases; c++) {
        const char *nm = fused_cases[c];
        qg_tensor *cfgt = FX("fused.%s.cfg", nm), *avgt = FX("fused.%s.avg", nm);
        if (!cfgt || !avgt) {
            CHECK(0, "fused.%s: fixture incomplete", nm);
            continue;
        }
        int64_t cfg[6];
        qg_tensor_copy_to(cfgt, QG_I64, cfg);
        const bool pc = cfg[3] != 0;
        qg_tensor *mn, *mx, *sc, *zp;
        if (pc) {
            mn = qg_tensor_empty(QG_F32, 1, SHAPE(0)), mx = qg_tensor_empty(QG_F32, 1, SHAPE(0));
        } else {
            mn = qg_tensor_full(QG_F32, 0, NULL, INFINITY), mx = qg_tensor_full(QG_F32, 0, NULL, -INFINITY);
        }
        sc = qg_tensor_full(QG_F32, 1, SHAPE(1), 1.0), zp = qg_tensor_zeros(QG_I32, 1, SHAPE(1));
        for (int64_t t = 0; t < cfg[5]; t++) {
            qg_tensor *flags = FX("fused.%s.%lld.flags", nm, (long long)t), *x = FX("fused.%s.%lld.x", nm, (long long)t);
            qg_tensor *gout = FX("fused.%s.%lld.gout", nm, (long long)t), *want = FX("fused.%s.%lld.out", nm, (long long)t);
            qg_tensor *gx = FX("fused.%s.%lld.gx", nm, (long long)t);
            if (!flags || !x || !gout || !want || !gx) break;
            int64_t fl[2];
            qg_tensor_copy_to(flags, QG_I64, fl);
            qg_tensor *obs = qg_tensor_full(QG_I64, 1, SHAPE(1), (double)fl[0]);
            qg_tensor *fq = qg_tensor_full(QG_I64, 1, SHAPE(1), (double)fl[1]);
            qg_tensor *xl = leaf(x, true);
            qg_tensor *y = qg_fused_moving_avg_obs_fake_quant(xl, obs, fq, mn, mx, sc, zp, qg_tensor_item(avgt), cfg[0],
                                                              cfg[1], (int)cfg[2], pc, cfg[4] != 0);
            CHECK(y != NULL, "fused.%s step %lld: %s", nm, (long long)t, qg_last_error());
            if (y) {
                CHECK_TENSOR(y, want, TST_EXACT, "fused.%s step %lld out", nm, (long long)t);
                qg_backward(y, gout);
                CHECK_TENSOR(xl->grad, gx, TST_EXACT, "fused.%s step %lld gx", nm, (long long)t);
            }
            CHECK_TENSOR(mn, FX("fused.%s.%lld.min", nm, (long long)t), TST_EXACT, "fused.%s step %lld running_min", nm, (long long)t);
            CHECK_TENSOR(mx, FX("fused.%s.%lld.max", nm, (long long)t), TST_EXACT, "fused.%s step %lld running_max", nm, (long long)t);
            CHECK_TENSOR(sc, FX("fused.%s.%lld.scale", nm, (long long)t), TST_EXACT, "fused.%s step %lld scale", nm, (long long)t);
            CHECK_TENSOR(zp, FX("fused.%s.%lld.zp", nm, (long long)t), TST_EXACT, "fused.%s step %lld zero_point", nm, (long long)t);
            qg_tensor_free(obs), qg_tensor_free(fq), qg_tensor_free(xl);
            qg_tape_reset(NULL);
        }
        qg_tensor_free(mn), qg_tensor_free(mx), qg_tensor_free(sc), qg_tensor_free(zp);
    }
}

/* ------------------------------------------------------------- float64 */

static qg_tensor *fn_fused_off(qg_tensor *const *in, void *ctx) {
    qg_tensor **b = ctx; /* flags and buffers */
    return qg_fused_moving_avg_obs_fake_quant(in[0], b[0], b[1], b[2], b[3], b[4], b[5], 0.01, 0, 255, 0, false, false);
}

typedef struct {
    int64_t qmin, qmax;
    double gf;
} lsq_gc;
static qg_tensor *fn_lsq(qg_tensor *const *in, void *ctx) {
    lsq_gc *c = ctx;
    return qg_fake_quantize_learnable_per_tensor(in[0], in[1], in[2], c->qmin, c->qmax, c->gf);
}
static qg_tensor *fn_lsq_pc(qg_tensor *const *in, void *ctx) {
    lsq_gc *c = ctx;
    return qg_fake_quantize_learnable_per_channel(in[0], in[1], in[2], 1, c->qmin, c->qmax, c->gf);
}

static void float64_checks(void) {
    qg_rng g;
    qg_rng_init(&g, 7);
    /* fake-quant off: the fused op is the identity */
    qg_tensor *x = qg_tensor_randn(&g, QG_F64, 2, SHAPE(3, 5));
    qg_tensor_set_requires_grad(x, true);
    qg_tensor *b[6] = {qg_tensor_ones(QG_I64, 1, SHAPE(1)), qg_tensor_zeros(QG_I64, 1, SHAPE(1)),
                       qg_tensor_full(QG_F32, 0, NULL, INFINITY), qg_tensor_full(QG_F32, 0, NULL, -INFINITY),
                       qg_tensor_ones(QG_F32, 1, SHAPE(1)), qg_tensor_zeros(QG_I32, 1, SHAPE(1))};
    CHECK(qg_gradcheck(fn_fused_off, b, 1, &x, NULL) == QG_OK, "gradcheck fused (fake-quant off): %s", qg_last_error());
    for (int i = 0; i < 6; i++) qg_tensor_free(b[i]);
    qg_tensor_free(x);

    /* LSQ with every element saturated: y = (qmin|qmax - zp) * scale, linear in scale
     * (the scale is read as float, so a wide step keeps its rounding small) */
    double xs[12], sv = 0.1, zv = 3;
    for (int i = 0; i < 12; i++) xs[i] = (i % 2 ? 1 : -1) * (40.0 + 3 * i);
    qg_tensor *in[3] = {qg_tensor_from_data(QG_F64, 2, SHAPE(3, 4), xs), qg_tensor_from_data(QG_F64, 1, SHAPE(1), &sv),
                        qg_tensor_from_data(QG_F64, 1, SHAPE(1), &zv)};
    qg_tensor_set_requires_grad(in[0], true), qg_tensor_set_requires_grad(in[1], true);
    lsq_gc c = {-8, 7, 1.0};
    qg_gradcheck_opts o = {.eps = QG_SET(1e-3), .atol = QG_SET(1e-6), .rtol = QG_SET(1e-4), .seed = 3};
    CHECK(qg_gradcheck(fn_lsq, &c, 3, in, &o) == QG_OK, "gradcheck lsq saturated (x, scale): %s", qg_last_error());
    c.gf = 0.25; /* grad_factor scales the scale gradient away from the true derivative */
    CHECK(qg_gradcheck(fn_lsq, &c, 3, in, &o) != QG_OK, "gradcheck lsq with grad_factor 0.25 should fail");
    qg_tensor_free(in[1]);
    double sv4[4] = {0.1, 0.2, 0.05, 0.3}, zv4[4] = {0, 1, -2, 3};
    in[1] = qg_tensor_from_data(QG_F64, 1, SHAPE(4), sv4);
    qg_tensor_free(in[2]);
    in[2] = qg_tensor_from_data(QG_F64, 1, SHAPE(4), zv4);
    qg_tensor_set_requires_grad(in[1], true);
    c.gf = 1.0;
    CHECK(qg_gradcheck(fn_lsq_pc, &c, 3, in, &o) == QG_OK, "gradcheck lsq per channel saturated: %s", qg_last_error());
    for (int i = 0; i < 3; i++) qg_tensor_free(in[i]);

    /* STE in f64 against the formula: dx = dy * (qmin <= rint(x * inv) + zp <= qmax) */
    x = qg_tensor_randn(&g, QG_F64, 2, SHAPE(6, 7));
    qg_tensor_set_requires_grad(x, true);
    qg_tensor *dy = qg_tensor_randn(&g, QG_F64, 2, SHAPE(6, 7));
    const double s = 0.0173;
    qg_tensor *y = qg_fake_quantize_per_tensor(x, s, 9, 0, 255);
    qg_backward(y, dy);
    double xv[42], dv[42], gv[42], yv[42];
    qg_tensor_copy_to(x, QG_F64, xv), qg_tensor_copy_to(dy, QG_F64, dv);
    qg_tensor_copy_to(x->grad, QG_F64, gv), qg_tensor_copy_to(y, QG_F64, yv);
    int bad = 0;
    const double inv = (double)(1.0f / (float)s);
    for (int i = 0; i < 42; i++) {
        double q = rint(xv[i] * inv) + 9;
        bool in = q >= 0 && q <= 255;
        double c1 = q < 0 ? 0 : (q > 255 ? 255 : q);
        bad += gv[i] != dv[i] * in || yv[i] != (c1 - 9) * (double)(float)s;
    }
    CHECK(bad == 0, "f64 STE formula: %d of 42 differ", bad);
    qg_tensor_free(x), qg_tensor_free(dy);
    qg_tape_reset(NULL);
}

/* ------------------------------------------------------------- large inputs */

/* Reference: the formula, one element at a time (f32, integer zero point). */
static void ref_fq(const float *x, float *y, uint8_t *m, int64_t outer, int64_t C, int64_t inner, const float *sc,
                   const int32_t *zp, int64_t qmin, int64_t qmax) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t k = (o * C + c) * inner + i;
                float inv = 1.0f / sc[c];
                float q = rintf(x[k] * inv) + (float)zp[c];
                double cl = q < qmin ? (double)qmin : (q > qmax ? (double)qmax : q);
                y[k] = (float)((cl - zp[c]) * (double)sc[c]);
                m[k] = q >= qmin && q <= qmax;
            }
}

static void large_inputs(void) {
    qg_rng g;
    qg_rng_init(&g, 11);
    /* activations (8, 32, 14, 14) along axis 1 (long runs) and NHWC-like (8, 14, 14, 32)
     * along the last axis (parameters by period) */
    const int64_t shapes[2][4] = {{8, 32, 14, 14}, {8, 14, 14, 32}};
    const int axes[2] = {1, 3};
    for (int v = 0; v < 2; v++) {
        qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, shapes[v]);
        qg_tensor_set_requires_grad(x, true);
        int64_t C = 32, n = qg_tensor_numel(x), outer = 1, inner = 1;
        for (int d = 0; d < axes[v]; d++) outer *= shapes[v][d];
        for (int d = axes[v] + 1; d < 4; d++) inner *= shapes[v][d];
        float sc[32];
        int32_t zpv[32];
        for (int c = 0; c < 32; c++) sc[c] = 0.005f + 0.001f * (float)c, zpv[c] = (c * 37) % 256;
        qg_tensor *st = qg_tensor_from_data(QG_F32, 1, SHAPE(32), sc), *zt = qg_tensor_from_data(QG_I32, 1, SHAPE(32), zpv);
        float *ry = malloc(sizeof(float) * (size_t)n), *xv = malloc(sizeof(float) * (size_t)n);
        uint8_t *rm = malloc((size_t)n);
        qg_tensor_copy_to(x, QG_F32, xv);
        ref_fq(xv, ry, rm, outer, C, inner, sc, zpv, 0, 255);
        qg_tensor *ones = qg_tensor_ones(QG_F32, 4, shapes[v]);
        for (int threads = 1; threads <= 2; threads++) {
            qg_set_num_threads(threads);
            qg_tensor_zero_grad(x);
            qg_tensor *y = qg_fake_quantize_per_channel(x, st, zt, axes[v], 0, 255);
            qg_backward(y, ones);
            const float *yd = qg_tensor_data(y), *gd = qg_tensor_data(x->grad);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) bad += yd[i] != ry[i] || gd[i] != (float)rm[i];
            CHECK(bad == 0, "large per-channel axis %d, %d threads: %lld of %lld differ from the reference", axes[v],
                  threads, (long long)bad, (long long)n);
            qg_tape_reset(NULL);
        }
        /* fused, per channel along the axis: 1 and 2 threads give the same bits */
        qg_tensor *out[2][5] = {{0}};
        for (int threads = 1; threads <= 2; threads++) {
            qg_set_num_threads(threads);
            qg_tensor *mn = qg_tensor_empty(QG_F32, 1, SHAPE(0)), *mx = qg_tensor_empty(QG_F32, 1, SHAPE(0));
            qg_tensor *s1 = qg_tensor_ones(QG_F32, 1, SHAPE(1)), *z1 = qg_tensor_zeros(QG_I32, 1, SHAPE(1));
            qg_tensor *on = qg_tensor_ones(QG_I64, 1, SHAPE(1));
            qg_tensor *y = qg_fused_moving_avg_obs_fake_quant(x, on, on, mn, mx, s1, z1, 0.01, -128, 127, axes[v], true, true);
            CHECK(y != NULL, "large fused: %s", qg_last_error());
            out[threads - 1][0] = y ? qg_tensor_clone(y) : NULL;
            out[threads - 1][1] = mn, out[threads - 1][2] = mx, out[threads - 1][3] = s1, out[threads - 1][4] = z1;
            qg_tensor_free(on);
            qg_tape_reset(NULL);
        }
        for (int k = 0; k < 5; k++) {
            CHECK_TENSOR(out[1][k], out[0][k], TST_EXACT, "fused axis %d, 2 threads vs 1, output %d", axes[v], k);
            qg_tensor_free(out[0][k]), qg_tensor_free(out[1][k]);
        }
        /* per tensor, large: reference and thread independence */
        qg_tensor *yy[2];
        for (int threads = 1; threads <= 2; threads++) {
            qg_set_num_threads(threads);
            yy[threads - 1] = qg_tensor_clone(qg_fake_quantize_per_tensor(x, 0.0123, 17, 0, 127));
            qg_tape_reset(NULL);
        }
        float s0 = 0.0123f;
        int32_t z0 = 17;
        ref_fq(xv, ry, rm, 1, 1, n, &s0, &z0, 0, 127);
        qg_tensor *rt = qg_tensor_from_data(QG_F32, 4, shapes[v], ry);
        CHECK_TENSOR(yy[0], rt, TST_EXACT, "large per-tensor vs reference");
        CHECK_TENSOR(yy[1], rt, TST_EXACT, "large per-tensor, 2 threads vs reference");
        qg_tensor_free(yy[0]), qg_tensor_free(yy[1]), qg_tensor_free(rt);
        qg_set_num_threads(0);
        free(ry), free(xv), free(rm);
        qg_tensor_free(x), qg_tensor_free(st), qg_tensor_free(zt), qg_tensor_free(ones);
    }
}

/* ------------------------------------------------------------- errors, buffers */

static void errors_and_state(void) {
    qg_tensor *x = qg_tensor_ones(QG_F32, 2, SHAPE(3, 4));
    qg_tensor *s3 = qg_tensor_full(QG_F32, 1, SHAPE(3), 0.1), *z3 = qg_tensor_zeros(QG_I32, 1, SHAPE(3));
    qg_tensor *s4 = qg_tensor_full(QG_F32, 1, SHAPE(4), 0.1);
    CHECK(!qg_fake_quantize_per_tensor(x, 0.1, 300, 0, 255) && qg_last_status() == QG_EINVAL, "zero_point out of range");
    CHECK(!qg_fake_quantize_per_tensor(x, 0.1, 0, 5, 3) && qg_last_status() == QG_EINVAL, "qmin > qmax");
    CHECK(!qg_fake_quantize_per_tensor(NULL, 0.1, 0, 0, 255), "NULL input");
    CHECK(!qg_fake_quantize_per_channel(x, s4, z3, 0, 0, 255) && qg_last_status() == QG_ESHAPE,
          "scale of the wrong length: %s", qg_last_error());
    CHECK(!qg_fake_quantize_per_channel(x, s3, z3, 2, 0, 255) && qg_last_status() == QG_EINVAL, "axis out of range");
    CHECK(qg_fake_quantize_per_channel(x, s3, z3, -2, 0, 255) != NULL, "negative axis counts from the end: %s",
          qg_last_error());
    qg_tensor *zbad = qg_tensor_full(QG_I32, 1, SHAPE(3), -1);
    CHECK(!qg_fake_quantize_per_channel(x, s3, zbad, 0, 0, 255) && qg_last_status() == QG_EINVAL,
          "per-channel zero_point out of range");
    qg_tensor *s1 = qg_tensor_full(QG_F32, 1, SHAPE(1), 0.1), *z1 = qg_tensor_full(QG_F32, 1, SHAPE(1), NAN);
    CHECK(!qg_fake_quantize_learnable_per_tensor(x, s1, z1, 0, 255, 1.0), "learnable NaN zero point");
    qg_tensor_fill_(z1, 2.0);
    qg_tensor_set_requires_grad(s1, true);
    CHECK(!qg_fake_quantize_learnable_per_tensor(x, s1, z1, 1, 10, 1.0) && strstr(qg_last_error(), "include 0"),
          "learnable gradient needs 0 in range: %s", qg_last_error());
    CHECK(!qg_fake_quantize_learnable_per_tensor(x, s3, z1, 0, 255, 1.0) && qg_last_status() == QG_ESHAPE,
          "learnable per-tensor scale of 3 elements");
    /* empty input */
    qg_tensor *e = qg_tensor_empty(QG_F32, 2, SHAPE(0, 3));
    qg_tensor *y = qg_fake_quantize_per_tensor(e, 0.1, 0, 0, 255);
    CHECK(y && qg_tensor_numel(y) == 0, "empty input");

    /* fused: state handling */
    qg_tensor *on = qg_tensor_ones(QG_I64, 1, SHAPE(1)), *off = qg_tensor_zeros(QG_I64, 1, SHAPE(1));
    qg_tensor *mn = qg_tensor_full(QG_F32, 0, NULL, INFINITY), *mx = qg_tensor_full(QG_F32, 0, NULL, -INFINITY);
    qg_tensor *sc = qg_tensor_ones(QG_F32, 1, SHAPE(1)), *zp = qg_tensor_zeros(QG_I32, 1, SHAPE(1));
    CHECK(!qg_fused_moving_avg_obs_fake_quant(x, off, on, mn, mx, sc, zp, 0.01, 0, 255, 0, false, false) &&
              strstr(qg_last_error(), "never observed"),
          "fused: fake-quant with nothing observed fails: %s", qg_last_error());
    float bad_x[4] = {1, NAN, 2, 3};
    qg_tensor *xn = qg_tensor_from_data(QG_F32, 1, SHAPE(4), bad_x);
    CHECK(!qg_fused_moving_avg_obs_fake_quant(xn, on, on, mn, mx, sc, zp, 0.01, 0, 255, 0, false, false) &&
              qg_last_status() == QG_EINVAL && isinf(qg_tensor_item(mn)),
          "fused: NaN input is an error and leaves the running min alone: %s", qg_last_error());
    bad_x[1] = INFINITY;
    qg_tensor_free(xn);
    xn = qg_tensor_from_data(QG_F32, 1, SHAPE(4), bad_x);
    CHECK(!qg_fused_moving_avg_obs_fake_quant(xn, on, off, mn, mx, sc, zp, 0.01, 0, 255, 0, false, false),
          "fused: inf input while observing is an error");
    /* observer on, fake-quant off: running values move, scale/zero point stay */
    qg_tensor *y2 = qg_fused_moving_avg_obs_fake_quant(x, on, off, mn, mx, sc, zp, 0.01, 0, 255, 0, false, false);
    CHECK(y2 && qg_tensor_item(mn) == 1 && qg_tensor_item(mx) == 1 && qg_tensor_item(sc) == 1 && qg_tensor_item(zp) == 0,
          "fused: observer only: min %g max %g scale %g", qg_tensor_item(mn), qg_tensor_item(mx), qg_tensor_item(sc));
    /* empty input: nothing changes, no error even when never observed */
    qg_tensor *mn2 = qg_tensor_empty(QG_F32, 1, SHAPE(0)), *mx2 = qg_tensor_empty(QG_F32, 1, SHAPE(0));
    CHECK(qg_fused_moving_avg_obs_fake_quant(e, on, on, mn2, mx2, sc, zp, 0.01, 0, 255, 0, true, false) &&
              qg_tensor_numel(mn2) == 0,
          "fused: empty input returns at once: %s", qg_last_error());
    /* per channel with both flags off still sizes the buffers */
    CHECK(qg_fused_moving_avg_obs_fake_quant(x, off, off, mn2, mx2, sc, zp, 0.01, -128, 127, 1, true, true) &&
              qg_tensor_numel(mn2) == 4 && qg_tensor_numel(sc) == 4 && isinf(at(mn2, 3)) && at(mx2, 0) < 0,
          "fused: per-channel buffers resized on the first call: %s", qg_last_error());
    CHECK(!qg_fused_moving_avg_obs_fake_quant(x, on, on, mn2, mx2, sc, zp, 0.01, -128, 127, 0, true, true) &&
              qg_last_status() == QG_ESHAPE,
          "fused: per-channel buffers of another size: %s", qg_last_error());
    CHECK(!qg_fused_moving_avg_obs_fake_quant(x, on, on, mn2, mx2, sc, zp, 0.01, -128, 127, 5, true, true),
          "fused: ch_axis out of range");
    CHECK(!qg_fused_moving_avg_obs_fake_quant(x, NULL, on, mn2, mx2, sc, zp, 0.01, -128, 127, 1, true, true),
          "fused: NULL flag");
    qg_tensor *zf = qg_tensor_zeros(QG_F32, 1, SHAPE(4));
    CHECK(!qg_fused_moving_avg_obs_fake_quant(x, on, on, mn2, mx2, sc, zf, 0.01, -128, 127, 1, true, true) &&
              qg_last_status() == QG_EDTYPE,
          "fused: float zero_point buffer");
    /* observer off keeps the running values; flags given as other dtypes */
    qg_tensor *onf = qg_tensor_full(QG_F32, 1, SHAPE(1), 2.0), *half = qg_tensor_full(QG_F32, 1, SHAPE(1), 0.5);
    double before = at(mn2, 0);
    CHECK(qg_fused_moving_avg_obs_fake_quant(x, half, onf, mn2, mx2, sc, zp, 0.01, -128, 127, 1, true, true) == NULL &&
              at(mn2, 0) == before,
          "fused: flag 0.5 truncates to off (so nothing observed, and fake-quant fails)");
    qg_tensor_free(x), qg_tensor_free(s3), qg_tensor_free(z3), qg_tensor_free(s4), qg_tensor_free(zbad);
    qg_tensor_free(s1), qg_tensor_free(z1), qg_tensor_free(e), qg_tensor_free(on), qg_tensor_free(off);
    qg_tensor_free(mn), qg_tensor_free(mx), qg_tensor_free(sc), qg_tensor_free(zp), qg_tensor_free(xn);
    qg_tensor_free(mn2), qg_tensor_free(mx2), qg_tensor_free(zf), qg_tensor_free(onf), qg_tensor_free(half);
    qg_tape_reset(NULL);
    qg_clear_error();
}

int main(int argc, char **argv) {
    ste_edges();
    lsq_elementwise();
    float64_checks();
    large_inputs();
    errors_and_state();
    if (argc < 2) {
        printf("usage: %s path/to/qat_ops.safetensors (PyTorch parity skipped)\n", argv[0]);
        CHECK(0, "no fixture given");
    } else if (!(tst_fx = qg_safetensors_load(argv[1]))) {
        CHECK(0, "cannot load %s: %s", argv[1], qg_last_error());
    } else {
        fq_parity();
        lsq_parity();
        fused_parity();
        qg_tensor_dict_free(tst_fx);
    }
    return test_summary("test_fake_quant");
}
