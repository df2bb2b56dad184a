/* conv2d, conv1d and 2-D pooling: float64 gradient checks on contiguous, transposed and
 * sliced inputs; forward values against hand-computed results and against a direct
 * (naive loop) convolution, single-channel float32 inputs (the direct first-layer
 * kernel) included; the same results at 1 and 2 threads; error paths. */
#include <string.h>

#include "hooks.h"
#include "test_util.h"
#include "gc_layouts.h"

/* ------------------------------------------------------------- ops under test */
#define ONE(name, expr) \
    static qg_tensor *name(qg_tensor *const *x, qg_tensor **aux) { return (void)aux, (expr); }
#define P2(a, b) ((const int[]){a, b})
ONE(c2_plain, qg_conv2d(x[0], x[1], x[2], NULL, NULL, NULL, 1))
ONE(c2_s2p1, qg_conv2d(x[0], x[1], x[2], P2(2, 2), P2(1, 1), NULL, 1))
ONE(c2_mixed, qg_conv2d(x[0], x[1], x[2], P2(2, 1), P2(1, 2), P2(2, 1), 1))
ONE(c2_groups, qg_conv2d(x[0], x[1], x[2], NULL, P2(1, 1), NULL, 2))
ONE(c2_nobias, qg_conv2d(x[0], x[1], NULL, P2(1, 2), P2(0, 1), NULL, 1))
ONE(c2_depthwise, qg_conv2d(x[0], x[1], NULL, NULL, P2(1, 1), P2(1, 2), 3))
ONE(c2_1x1, qg_conv2d(x[0], x[1], x[2], NULL, NULL, NULL, 1))
ONE(c2_1x1_s2, qg_conv2d(x[0], x[1], x[2], P2(2, 2), NULL, NULL, 1))
ONE(c2_bigpad, qg_conv2d(x[0], x[1], x[2], NULL, P2(2, 2), NULL, 1))
ONE(c2_s3d2, qg_conv2d(x[0], x[1], x[2], P2(3, 2), P2(2, 1), P2(2, 3), 1))
ONE(c2_unbatched, qg_conv2d(x[0], x[1], x[2], NULL, P2(1, 0), NULL, 1))
ONE(c2_chain, qg_sum(qg_relu(qg_conv2d(qg_conv2d(x[0], x[1], NULL, NULL, P2(1, 1), NULL, 1), x[2], NULL, P2(2, 2), NULL, NULL, 1)), 0, NULL, false))
ONE(c1_plain, qg_conv1d(x[0], x[1], x[2], 1, 0, 1, 1))
ONE(c1_s2p1d2, qg_conv1d(x[0], x[1], x[2], 2, 1, 2, 1))
ONE(c1_groups, qg_conv1d(x[0], x[1], NULL, 1, 1, 1, 2))
ONE(c1_unbatched, qg_conv1d(x[0], x[1], x[2], 1, 1, 1, 1))
ONE(c1_pointwise, qg_conv1d(x[0], x[1], x[2], 1, 0, 1, 1))
ONE(mp_2x2, qg_max_pool2d(x[0], P2(2, 2), NULL, NULL, NULL, false))
ONE(mp_k3s2p1, qg_max_pool2d(x[0], P2(3, 3), P2(2, 2), P2(1, 1), NULL, false))
ONE(mp_dil, qg_max_pool2d(x[0], P2(3, 2), P2(1, 2), P2(1, 0), P2(2, 1), false))
ONE(mp_ceil, qg_max_pool2d(x[0], P2(3, 3), P2(2, 2), NULL, NULL, true))
ONE(mp_ceil2, qg_max_pool2d(x[0], P2(2, 2), P2(2, 2), NULL, NULL, true))
ONE(mp_ceil_pad_dil, qg_max_pool2d(x[0], P2(2, 3), P2(2, 2), P2(1, 1), P2(2, 1), true))
ONE(mp_s1, qg_max_pool2d(x[0], P2(2, 2), P2(1, 1), NULL, NULL, false))
ONE(ap_incl, qg_avg_pool2d(x[0], P2(3, 3), P2(2, 2), P2(1, 1), false, true, 0))
ONE(ap_excl, qg_avg_pool2d(x[0], P2(3, 3), P2(2, 2), P2(1, 1), false, false, 0))
ONE(ap_div, qg_avg_pool2d(x[0], P2(3, 2), P2(2, 1), P2(1, 1), false, true, 5))
ONE(ap_ceil_incl, qg_avg_pool2d(x[0], P2(3, 3), P2(2, 2), P2(1, 1), true, true, 0))
ONE(ap_ceil_excl, qg_avg_pool2d(x[0], P2(2, 3), P2(2, 2), P2(1, 1), true, false, 0))
ONE(ap_2x2, qg_avg_pool2d(x[0], P2(2, 2), NULL, NULL, false, true, 0))
ONE(aap_7x5, qg_adaptive_avg_pool2d(x[0], 3, 2))
ONE(aap_6x6, qg_adaptive_avg_pool2d(x[0], 4, 4))
ONE(aap_1x1, qg_adaptive_avg_pool2d(x[0], 1, 1))
ONE(aap_up, qg_adaptive_avg_pool2d(x[0], 5, 4))

static const gc_case cases[] = {
    {"conv2d", c2_plain, 3, {4, 4, 1}, {{2, 3, 6, 5}, {4, 3, 3, 3}, {4}}, {D_ANY}},
    {"conv2d stride 2 pad 1", c2_s2p1, 3, {4, 4, 1}, {{2, 3, 7, 6}, {4, 3, 3, 3}, {4}}, {D_ANY}},
    {"conv2d stride/pad/dilation mixed", c2_mixed, 3, {4, 4, 1}, {{2, 2, 7, 6}, {3, 2, 3, 2}, {3}}, {D_ANY}},
    {"conv2d groups 2", c2_groups, 3, {4, 4, 1}, {{2, 4, 5, 5}, {6, 2, 3, 3}, {6}}, {D_ANY}},
    {"conv2d no bias", c2_nobias, 2, {4, 4}, {{2, 3, 5, 5}, {2, 3, 2, 3}}, {D_ANY}},
    {"conv2d depthwise dilated", c2_depthwise, 2, {4, 4}, {{2, 3, 5, 6}, {3, 1, 3, 2}}, {D_ANY}},
    {"conv2d 1x1", c2_1x1, 3, {4, 4, 1}, {{2, 3, 4, 5}, {4, 3, 1, 1}, {4}}, {D_ANY}},
    {"conv2d 1x1 width 1", c2_1x1, 3, {4, 4, 1}, {{2, 3, 4, 1}, {2, 3, 1, 1}, {2}}, {D_ANY}},
    {"conv2d 1x1 stride 2", c2_1x1_s2, 3, {4, 4, 1}, {{2, 3, 5, 5}, {2, 3, 1, 1}, {2}}, {D_ANY}},
    {"conv2d taps only in padding", c2_bigpad, 3, {4, 4, 1}, {{1, 2, 2, 3}, {2, 2, 5, 5}, {2}}, {D_ANY}},
    {"conv2d stride 3 dilation 3", c2_s3d2, 3, {4, 4, 1}, {{2, 2, 9, 8}, {2, 2, 2, 3}, {2}}, {D_ANY}},
    {"conv2d unbatched", c2_unbatched, 3, {3, 4, 1}, {{3, 5, 4}, {2, 3, 3, 2}, {2}}, {D_ANY}},
    {"conv2d chain", c2_chain, 3, {4, 4, 4}, {{2, 2, 6, 6}, {3, 2, 3, 3}, {2, 3, 2, 2}}, {D_ANY}},
    {"conv1d", c1_plain, 3, {3, 3, 1}, {{2, 3, 9}, {4, 3, 3}, {4}}, {D_ANY}},
    {"conv1d stride 2 pad 1 dilation 2", c1_s2p1d2, 3, {3, 3, 1}, {{2, 2, 10}, {3, 2, 3}, {3}}, {D_ANY}},
    {"conv1d groups 2 no bias", c1_groups, 2, {3, 3}, {{2, 4, 8}, {4, 2, 3}}, {D_ANY}},
    {"conv1d unbatched", c1_unbatched, 3, {2, 3, 1}, {{3, 7}, {2, 3, 2}, {2}}, {D_ANY}},
    {"conv1d kernel 1", c1_pointwise, 3, {3, 3, 1}, {{2, 3, 6}, {2, 3, 1}, {2}}, {D_ANY}},
    {"max_pool2d 2x2", mp_2x2, 1, {4}, {{2, 3, 6, 6}}, {D_ANY}},
    {"max_pool2d 2x2, odd height and width (uncovered row and column)", mp_2x2, 1, {4}, {{2, 3, 7, 5}}, {D_ANY}},
    {"max_pool2d k3 s2 p1", mp_k3s2p1, 1, {4}, {{2, 2, 7, 7}}, {D_ANY}},
    {"max_pool2d dilation", mp_dil, 1, {4}, {{1, 2, 8, 6}}, {D_ANY}},
    {"max_pool2d ceil_mode", mp_ceil, 1, {4}, {{2, 2, 8, 7}}, {D_ANY}},
    {"max_pool2d 2x2 ceil_mode odd", mp_ceil2, 1, {4}, {{1, 2, 5, 5}}, {D_ANY}},
    {"max_pool2d ceil pad dilation", mp_ceil_pad_dil, 1, {4}, {{1, 2, 7, 6}}, {D_ANY}},
    {"max_pool2d unbatched stride 1", mp_s1, 1, {3}, {{3, 5, 6}}, {D_ANY}},
    {"avg_pool2d count_include_pad", ap_incl, 1, {4}, {{2, 2, 7, 6}}, {D_ANY}},
    {"avg_pool2d exclude pad", ap_excl, 1, {4}, {{2, 2, 7, 6}}, {D_ANY}},
    {"avg_pool2d divisor_override", ap_div, 1, {4}, {{1, 2, 6, 5}}, {D_ANY}},
    {"avg_pool2d ceil include pad", ap_ceil_incl, 1, {4}, {{1, 2, 6, 8}}, {D_ANY}},
    {"avg_pool2d ceil exclude pad", ap_ceil_excl, 1, {3}, {{2, 7, 6}}, {D_ANY}},
    {"avg_pool2d 2x2", ap_2x2, 1, {4}, {{2, 2, 4, 6}}, {D_ANY}},
    {"adaptive_avg_pool2d 7x5 -> 3x2", aap_7x5, 1, {4}, {{2, 2, 7, 5}}, {D_ANY}},
    {"adaptive_avg_pool2d 6x6 -> 4x4", aap_6x6, 1, {4}, {{1, 3, 6, 6}}, {D_ANY}},
    {"adaptive_avg_pool2d -> 1x1", aap_1x1, 1, {4}, {{2, 2, 5, 7}}, {D_ANY}},
    {"adaptive_avg_pool2d 3x3 -> 5x4 unbatched", aap_up, 1, {3}, {{2, 3, 3}}, {D_ANY}},
};

/* ------------------------------------------------------------- forward values */

static qg_tensor *from(qg_dtype dt, int nd, const int64_t *shape, const double *v) {
    qg_tensor *t = qg_tensor_empty(dt, nd, shape);
    int64_t n = qg_tensor_numel(t);
    int64_t idx[4] = {0};
    for (int64_t e = 0; e < n; e++) {
        int64_t r = e;
        for (int d = nd - 1; d >= 0; d--) idx[d] = r % shape[d], r /= shape[d];
        qg_tensor_set(t, idx, v[e]);
    }
    return t;
}

/* all elements of t (C order) equal want[] within tol */
static int values_are(const qg_tensor *t, int64_t n, const double *want, double tol) {
    tst_cmp c = tst_compare_array(t, n, want, (tst_tol){.atol = tol});
    if (c.bad > 0) printf("  element %lld: got %.9g, want %.9g\n", (long long)c.first, c.got, c.want);
    return c.ok;
}

static const double seq9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const double seq16[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void forward_values(qg_dtype dt) {
    const char *dn = qg_dtype_name(dt);
    qg_tensor *x33 = from(dt, 4, SHAPE(1, 1, 3, 3), seq9);
    qg_tensor *w22 = from(dt, 4, SHAPE(1, 1, 2, 2), (const double[]){1, 2, 3, 4});
    qg_tensor *b1 = from(dt, 1, SHAPE(1), (const double[]){0.5});
    qg_tensor *w33 = qg_tensor_ones(dt, 4, SHAPE(1, 1, 3, 3));

    CHECK(values_are(qg_conv2d(x33, w22, b1, NULL, NULL, NULL, 1), 4, (const double[]){37.5, 47.5, 67.5, 77.5}, 1e-5),
          "conv2d 2x2 kernel with bias (%s)", dn);
    CHECK(values_are(qg_conv2d(x33, w33, NULL, P2(2, 2), P2(1, 1), NULL, 1), 4, (const double[]){12, 16, 24, 28}, 1e-5),
          "conv2d stride 2 padding 1 (%s)", dn);
    qg_tensor *x2 = from(dt, 4, SHAPE(1, 2, 1, 1), (const double[]){3, 5});
    qg_tensor *wg = from(dt, 4, SHAPE(2, 1, 1, 1), (const double[]){2, 10});
    CHECK(values_are(qg_conv2d(x2, wg, NULL, NULL, NULL, NULL, 2), 2, (const double[]){6, 50}, 1e-5),
          "conv2d groups 2 (%s)", dn);
    qg_tensor *x15 = from(dt, 4, SHAPE(1, 1, 1, 5), (const double[]){1, 2, 3, 4, 5});
    qg_tensor *w12 = qg_tensor_ones(dt, 4, SHAPE(1, 1, 1, 2));
    CHECK(values_are(qg_conv2d(x15, w12, NULL, NULL, NULL, P2(1, 2), 1), 3, (const double[]){4, 6, 8}, 1e-5),
          "conv2d dilation 2 (%s)", dn);
    qg_tensor *x1d = from(dt, 3, SHAPE(1, 1, 5), (const double[]){1, 2, 3, 4, 5});
    qg_tensor *w1d = from(dt, 3, SHAPE(1, 1, 3), (const double[]){1, 0, -1});
    qg_tensor *y1d = qg_conv1d(x1d, w1d, NULL, 1, 1, 1, 1);
    CHECK(y1d && y1d->ndim == 3 && y1d->shape[2] == 5 && values_are(y1d, 5, (const double[]){-2, -2, -2, -2, 4}, 1e-5),
          "conv1d padding 1 (%s)", dn);

    /* max pool: values and where the gradient goes */
    qg_tensor *xm = from(dt, 4, SHAPE(1, 1, 4, 4), (const double[]){1, 5, 2, 0, 3, 4, 8, 1, 0, 2, 7, 6, 9, 1, 3, 5});
    qg_tensor_set_requires_grad(xm, true);
    qg_tensor *ym = qg_max_pool2d(xm, P2(2, 2), NULL, NULL, NULL, false);
    CHECK(values_are(ym, 4, (const double[]){5, 8, 9, 7}, 0), "max_pool2d 2x2 values (%s)", dn);
    qg_backward(qg_sum(ym, 0, NULL, false), NULL);
    CHECK(values_are(xm->grad, 16, (const double[]){0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0}, 0),
          "max_pool2d 2x2 gradient routing (%s)", dn);
    /* ties go to the first element; NaN wins over numbers */
    qg_tensor *xt = from(dt, 4, SHAPE(1, 1, 2, 4), (const double[]){1, 1, 2, NAN, 1, 1, 3, 7});
    qg_tensor_set_requires_grad(xt, true);
    qg_tensor *yt = qg_max_pool2d(xt, P2(2, 2), NULL, NULL, NULL, false);
    CHECK(yt && qg_tensor_get(yt, (const int64_t[]){0, 0, 0, 0}) == 1 && isnan(qg_tensor_get(yt, (const int64_t[]){0, 0, 0, 1})),
          "max_pool2d ties and NaN values (%s)", dn);
    qg_tensor *ones2 = qg_tensor_ones(dt, 4, SHAPE(1, 1, 1, 2));
    qg_backward(yt, ones2);
    CHECK(values_are(xt->grad, 8, (const double[]){1, 0, 0, 1, 0, 0, 0, 0}, 0), "max_pool2d ties and NaN gradient (%s)", dn);
    qg_tensor *xp = from(dt, 4, SHAPE(1, 1, 3, 3), (const double[]){-1, -2, -3, -4, -5, -6, -7, -8, -9});
    CHECK(values_are(qg_max_pool2d(xp, P2(3, 3), P2(2, 2), P2(1, 1), NULL, false), 4, (const double[]){-1, -2, -4, -5}, 0),
          "max_pool2d padding is -inf (%s)", dn);
    CHECK(values_are(qg_max_pool2d(x33, P2(2, 2), NULL, NULL, NULL, true), 4, (const double[]){5, 6, 8, 9}, 0),
          "max_pool2d ceil_mode (%s)", dn);

    /* avg pool divisors */
    qg_tensor *x44 = from(dt, 4, SHAPE(1, 1, 4, 4), seq16);
    CHECK(values_are(qg_avg_pool2d(x44, P2(2, 2), NULL, NULL, false, true, 0), 4, (const double[]){3.5, 5.5, 11.5, 13.5}, 1e-5),
          "avg_pool2d 2x2 (%s)", dn);
    CHECK(values_are(qg_avg_pool2d(x33, P2(3, 3), P2(2, 2), P2(1, 1), false, true, 0), 4,
                     (const double[]){12.0 / 9, 16.0 / 9, 24.0 / 9, 28.0 / 9}, 1e-5),
          "avg_pool2d count_include_pad (%s)", dn);
    CHECK(values_are(qg_avg_pool2d(x33, P2(3, 3), P2(2, 2), P2(1, 1), false, false, 0), 4, (const double[]){3, 4, 6, 7}, 1e-5),
          "avg_pool2d exclude pad (%s)", dn);
    CHECK(values_are(qg_avg_pool2d(x33, P2(3, 3), P2(2, 2), P2(1, 1), false, true, 2), 4, (const double[]){6, 8, 12, 14}, 1e-5),
          "avg_pool2d divisor_override (%s)", dn);
    CHECK(values_are(qg_avg_pool2d(x33, P2(2, 2), NULL, NULL, true, true, 0), 4, (const double[]){3, 4.5, 7.5, 9}, 1e-5),
          "avg_pool2d ceil_mode: windows past the edge are clipped (%s)", dn);
    CHECK(values_are(qg_adaptive_avg_pool2d(x33, 2, 2), 4, (const double[]){3, 4, 6, 7}, 1e-5),
          "adaptive_avg_pool2d 3x3 -> 2x2 (%s)", dn);
    qg_tensor *ya = qg_adaptive_avg_pool2d(x44, 1, 1);
    CHECK(ya && ya->ndim == 4 && values_are(ya, 1, (const double[]){8.5}, 1e-5), "adaptive_avg_pool2d -> 1x1 (%s)", dn);

    qg_tape_reset(NULL);
    qg_tensor *all[] = {x33, w22, b1, w33, x2, wg, x15, w12, x1d, w1d, xm, xt, xp, x44, ones2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) qg_tensor_free(all[i]);
}

/* max_pool2d against the scan rule written out (first maximum in window order, a NaN
 * replaces anything), on data full of ties, infinities and NaNs, for the 2x2 fast path
 * and the general path; the gradient of ones shows which element each window chose. */
static void max_pool_ties(qg_dtype dt, qg_rng *g) {
    static const double pool[] = {-INFINITY, -1, 0, 0, 1, 1, 2, NAN};
    static const struct { int k, s, p; bool ceil; } cfg[] = {{2, 2, 0, false}, {2, 2, 0, true}, {3, 2, 1, false}, {3, 1, 1, true}};
    const int64_t N = 2, C = 3, H = 9, W = 8;
    double v[2 * 3 * 9 * 8];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) v[i] = pool[qg_rng_next_u64(g) % 8];
    qg_tensor *x = from(dt, 4, SHAPE(N, C, H, W), v);
    qg_tensor_set_requires_grad(x, true);
    for (size_t t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
        int k = cfg[t].k, s = cfg[t].s, p = cfg[t].p;
        qg_tensor_zero_grad(x);
        qg_tensor *y = qg_max_pool2d(x, P2(k, k), P2(s, s), P2(p, p), NULL, cfg[t].ceil);
        if (!y || qg_backward(qg_sum(y, 0, NULL, false), NULL)) {
            CHECK(0, "max_pool2d ties config %zu: %s", t, qg_last_error());
            continue;
        }
        double want_grad[2 * 3 * 9 * 8] = {0};
        int bad = 0;
        for (int64_t q = 0; q < N * C; q++)
            for (int64_t oh = 0; oh < y->shape[2]; oh++)
                for (int64_t ow = 0; ow < y->shape[3]; ow++) {
                    double m = -INFINITY;
                    int64_t best = -1;
                    for (int64_t i = 0; i < k; i++)
                        for (int64_t j = 0; j < k; j++) {
                            int64_t ih = oh * s - p + i, iw = ow * s - p + j;
                            if (ih < 0 || iw < 0 || ih >= H || iw >= W) continue;
                            double e = v[q * H * W + ih * W + iw];
                            if (best < 0) best = ih * W + iw;
                            if (e > m || e != e) m = e, best = ih * W + iw;
                        }
                    want_grad[q * H * W + best] += 1;
                    double got = qg_tensor_get(y, (const int64_t[]){q / C, q % C, oh, ow});
                    if (!(got == m || (isnan(got) && isnan(m)))) bad = 1;
                }
        CHECK(!bad, "max_pool2d ties config %zu (%s): values follow the scan rule", t, qg_dtype_name(dt));
        CHECK(values_are(x->grad, N * C * H * W, want_grad, 0), "max_pool2d ties config %zu (%s): gradient goes to the chosen element",
              t, qg_dtype_name(dt));
        qg_tape_reset(NULL);
    }
    qg_tensor_free(x);
}

/* Direct convolution in double: out[n, k, oh, ow] = b[k] + sum x[n, c, ih, iw] w[k, c', i, j] */
static double naive_at(const qg_tensor *x, const qg_tensor *w, const qg_tensor *b, const int *s, const int *p,
                       const int *d, int groups, int64_t n, int64_t k, int64_t oh, int64_t ow) {
    int64_t Cg = w->shape[1], Kg = w->shape[0] / groups, gr = k / Kg;
    double acc = b ? qg_tensor_get(b, (const int64_t[]){k}) : 0;
    for (int64_t c = 0; c < Cg; c++)
        for (int64_t i = 0; i < w->shape[2]; i++)
            for (int64_t j = 0; j < w->shape[3]; j++) {
                int64_t ih = oh * s[0] - p[0] + i * d[0], iw = ow * s[1] - p[1] + j * d[1];
                if (ih < 0 || iw < 0 || ih >= x->shape[2] || iw >= x->shape[3]) continue;
                acc += qg_tensor_get(x, (const int64_t[]){n, gr * Cg + c, ih, iw}) *
                       qg_tensor_get(w, (const int64_t[]){k, c, i, j});
            }
    return acc;
}

/* conv2d of x against naive_at everywhere, to float32's or float64's tolerance; the
 * worst error into *worst */
static bool conv_matches_naive(const qg_tensor *x, const qg_tensor *w, const qg_tensor *b, const int *s, const int *p,
                               const int *d, int groups, double *worst) {
    const qg_tensor *y = qg_conv2d(x, w, b, s, p, d, groups);
    const double tol = x->dtype == QG_F32 ? 1e-4 : 1e-11;
    bool ok = y != NULL;
    *worst = 0;
    for (int64_t n = 0; ok && n < y->shape[0]; n++)
        for (int64_t k = 0; k < y->shape[1]; k++)
            for (int64_t oh = 0; oh < y->shape[2]; oh++)
                for (int64_t ow = 0; ow < y->shape[3]; ow++) {
                    double want = naive_at(x, w, b, s, p, d, groups, n, k, oh, ow);
                    double got = qg_tensor_get(y, (const int64_t[]){n, k, oh, ow});
                    if (fabs(got - want) > *worst) *worst = fabs(got - want);
                    if (!tst_close(got, want, tol, tol)) ok = false;
                }
    return ok;
}

static void against_naive(qg_dtype dt, qg_rng *g) {
    static const struct {
        int64_t N, C, H, W, K, kh, kw;
        int s[2], p[2], d[2], groups;
        bool bias;
    } cfg[] = {
        {2, 3, 9, 8, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true},
        {3, 4, 10, 7, 6, 3, 2, {2, 1}, {1, 0}, {1, 2}, 2, true},
        {1, 6, 8, 8, 6, 3, 3, {1, 1}, {1, 1}, {1, 1}, 6, false},
        {2, 5, 12, 11, 4, 5, 4, {3, 2}, {2, 2}, {2, 1}, 1, true},
        {4, 8, 6, 6, 16, 1, 1, {1, 1}, {0, 0}, {1, 1}, 2, true},
        {2, 3, 7, 9, 2, 1, 3, {1, 3}, {0, 1}, {1, 1}, 1, false},
        {9, 3, 16, 16, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true}, /* parallel over images */
        {1, 16, 24, 24, 8, 3, 3, {1, 1}, {2, 2}, {2, 2}, 1, true}, /* parallel inside one image */
        /* one input channel, stride 1: the direct kernel (kernels/conv1.c) in float32 */
        {3, 1, 28, 28, 32, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true}, /* the fmnist CNN's first conv */
        {2, 1, 13, 37, 5, 5, 5, {1, 1}, {2, 1}, {1, 1}, 1, false}, /* 5x5, row tails */
        {2, 1, 9, 20, 4, 2, 3, {1, 1}, {0, 1}, {2, 2}, 1, true},   /* dilated 2x3 */
        {1, 1, 5, 3, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true},    /* rows shorter than a vector */
        {1, 1, 1, 1, 2, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true},    /* col too small to lend: GEMM */
        {2, 1, 8, 8, 3, 3, 3, {2, 1}, {1, 1}, {1, 1}, 1, true},    /* row stride: GEMM */
    };
    for (size_t t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
        int64_t Cg = cfg[t].C / cfg[t].groups;
        qg_tensor *x = qg_tensor_randn(g, dt, 4, SHAPE(cfg[t].N, cfg[t].C, cfg[t].H, cfg[t].W));
        qg_tensor *w = qg_tensor_randn(g, dt, 4, SHAPE(cfg[t].K, Cg, cfg[t].kh, cfg[t].kw));
        qg_tensor *b = cfg[t].bias ? qg_tensor_randn(g, dt, 1, SHAPE(cfg[t].K)) : NULL;
        double worst;
        bool ok = conv_matches_naive(x, w, b, cfg[t].s, cfg[t].p, cfg[t].d, cfg[t].groups, &worst);
        CHECK(ok, "conv2d config %zu (%s) matches the direct loop (worst error %g) %s", t, qg_dtype_name(dt), worst,
              qg_last_error());
        qg_tape_reset(NULL);
        qg_tensor_free(x), qg_tensor_free(w), qg_tensor_free(b);
    }
    /* a single-channel conv whose bias is expanded (stride 0): the direct kernel reads
     * only a contiguous bias, so this one goes through the GEMM */
    qg_tensor *x = qg_tensor_randn(g, dt, 4, SHAPE(2, 1, 9, 9)), *w = qg_tensor_randn(g, dt, 4, SHAPE(4, 1, 3, 3));
    qg_tensor *b1 = qg_tensor_full(dt, 1, SHAPE(1), 0.7);
    const int one[2] = {1, 1};
    double worst;
    bool ok = conv_matches_naive(x, w, qg_expand(b1, 1, SHAPE(4)), one, one, one, 1, &worst);
    CHECK(ok, "conv2d with an expanded bias (%s) matches the direct loop (worst error %g) %s", qg_dtype_name(dt),
          worst, qg_last_error());
    qg_tape_reset(NULL);
    qg_tensor_free(x), qg_tensor_free(w), qg_tensor_free(b1);
}

/* ------------------------------------------------------------- threads */

/* Forward and all gradients of f32 conv2d and the pools at 1 and 2 threads must be
 * bitwise equal: no result may depend on how the work was split. */
typedef struct {
    const char *name;
    int64_t xs[4], ws[4];
    int s, p, groups;
} thr_case;

static void run_threads(const thr_case *c, qg_rng *g) {
    qg_tensor *x = qg_tensor_randn(g, QG_F32, 4, c->xs), *w = NULL, *b = NULL;
    if (c->ws[0]) {
        w = qg_tensor_randn(g, QG_F32, 4, c->ws);
        b = qg_tensor_randn(g, QG_F32, 1, SHAPE(c->ws[0]));
        qg_tensor_set_requires_grad(w, true), qg_tensor_set_requires_grad(b, true);
    }
    qg_tensor_set_requires_grad(x, true);
    qg_tensor *res[2][4] = {{NULL}};
    for (int r = 0; r < 2; r++) {
        qg_set_num_threads(r + 1);
        qg_tensor_zero_grad(x), qg_tensor_zero_grad(w), qg_tensor_zero_grad(b);
        qg_tensor *y;
        if (w) y = qg_conv2d(x, w, b, P2(c->s, c->s), P2(c->p, c->p), NULL, c->groups);
        else y = qg_add(qg_add(qg_max_pool2d(x, P2(3, 3), P2(2, 2), P2(1, 1), NULL, false),
                               qg_avg_pool2d(x, P2(3, 3), P2(2, 2), P2(1, 1), false, false, 0)),
                        qg_adaptive_avg_pool2d(x, c->s, c->p));
        qg_tensor *gy = y ? qg_tensor_randn(&(qg_rng){7, 0}, QG_F32, y->ndim, y->shape) : NULL;
        if (!y || qg_backward(y, gy)) {
            CHECK(0, "threads %s: %s", c->name, qg_last_error());
            qg_tensor_free(gy);
            break;
        }
        res[r][0] = qg_tensor_clone(y);
        res[r][1] = qg_tensor_clone(x->grad);
        if (w) res[r][2] = qg_tensor_clone(w->grad), res[r][3] = qg_tensor_clone(b->grad);
        qg_tensor_free(gy);
        qg_tape_reset(NULL);
    }
    static const char *const what[] = {"output", "input grad", "weight grad", "bias grad"};
    for (int i = 0; i < 4; i++) {
        if (!res[0][i] || !res[1][i]) continue;
        CHECK(tst_bitwise_equal(res[1][i], res[0][i]), "threads %s: %s differs between 1 and 2 threads", c->name,
              what[i]);
        qg_tensor_free(res[0][i]), qg_tensor_free(res[1][i]);
    }
    qg_tensor_free(x), qg_tensor_free(w), qg_tensor_free(b);
    qg_set_num_threads(0);
}

static void thread_invariance(qg_rng *g) {
    static const thr_case cs[] = {
        {"conv2d batch 64", {64, 8, 14, 14}, {16, 8, 3, 3}, 1, 1, 1},
        {"conv2d batch 1", {1, 16, 32, 32}, {16, 16, 3, 3}, 1, 1, 1},
        {"conv2d batch 3 groups 2 stride 2", {3, 8, 30, 30}, {8, 4, 3, 3}, 2, 1, 2},
        {"conv2d 1x1 batch 20", {20, 16, 12, 12}, {32, 16, 1, 1}, 1, 0, 1},
        {"pools", {16, 8, 23, 23}, {0}, 12, 12, 1},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) run_threads(&cs[i], g);
}

/* ------------------------------------------------------------- errors */

static void expect_error(qg_tensor *y, const char *what, const char *needle1, const char *needle2) {
    const char *msg = qg_last_error();
    CHECK(y == NULL && strstr(msg, needle1) && (!needle2 || strstr(msg, needle2)),
          "%s: expected NULL and a message with \"%s\"%s%s, got %s \"%s\"", what, needle1, needle2 ? " and " : "",
          needle2 ? needle2 : "", y ? "a tensor" : "NULL", msg);
    qg_clear_error();
}

static void error_paths(void) {
    qg_clear_error();
    qg_tensor *x = qg_tensor_zeros(QG_F32, 4, SHAPE(1, 3, 5, 5));
    qg_tensor *w = qg_tensor_zeros(QG_F32, 4, SHAPE(2, 3, 3, 3));
    qg_tensor *w2 = qg_tensor_zeros(QG_F32, 4, SHAPE(2, 2, 3, 3));
    qg_tensor *w3 = qg_tensor_zeros(QG_F32, 4, SHAPE(3, 1, 3, 3));
    qg_tensor *wbig = qg_tensor_zeros(QG_F32, 4, SHAPE(2, 3, 7, 7));
    qg_tensor *w64 = qg_tensor_zeros(QG_F64, 4, SHAPE(2, 3, 3, 3));
    qg_tensor *b3 = qg_tensor_zeros(QG_F32, 1, SHAPE(3));
    qg_tensor *x2d = qg_tensor_zeros(QG_F32, 2, SHAPE(5, 5));
    qg_tensor *x5d = qg_tensor_zeros(QG_F32, 5, SHAPE(1, 1, 1, 5, 5));
    qg_tensor *xi = qg_tensor_zeros(QG_I64, 4, SHAPE(1, 3, 5, 5));
    qg_tensor *x1 = qg_tensor_zeros(QG_F32, 3, SHAPE(2, 3, 9));
    qg_tensor *w1 = qg_tensor_zeros(QG_F32, 3, SHAPE(4, 2, 3));
    qg_tensor *xsmall = qg_tensor_zeros(QG_F32, 4, SHAPE(1, 1, 1, 1));
    qg_tensor *xempty = qg_tensor_zeros(QG_F32, 4, SHAPE(1, 0, 5, 5));

    expect_error(qg_conv2d(NULL, w, NULL, NULL, NULL, NULL, 1), "conv2d NULL input", "conv2d", "NULL");
    expect_error(qg_conv2d(x, NULL, NULL, NULL, NULL, NULL, 1), "conv2d NULL weight", "conv2d", "NULL");
    expect_error(qg_conv2d(x2d, w, NULL, NULL, NULL, NULL, 1), "conv2d 2-D input", "conv2d", "f32[5, 5]");
    expect_error(qg_conv2d(x, b3, NULL, NULL, NULL, NULL, 1), "conv2d 1-D weight", "conv2d", "weight");
    expect_error(qg_conv2d(x, w2, NULL, NULL, NULL, NULL, 1), "conv2d channel mismatch", "f32[1, 3, 5, 5]", "channels");
    expect_error(qg_conv2d(x, w3, NULL, NULL, NULL, NULL, 2), "conv2d groups not dividing", "groups=2", "divisible");
    expect_error(qg_conv2d(x, w, NULL, NULL, NULL, NULL, 0), "conv2d groups 0", "conv2d", "groups");
    expect_error(qg_conv2d(x, w, NULL, P2(0, 1), NULL, NULL, 1), "conv2d stride 0", "conv2d", "stride");
    expect_error(qg_conv2d(x, w, NULL, NULL, P2(-1, 0), NULL, 1), "conv2d negative padding", "conv2d", "padding");
    expect_error(qg_conv2d(x, w, NULL, NULL, NULL, P2(1, 0), 1), "conv2d dilation 0", "conv2d", "dilation");
    expect_error(qg_conv2d(x, wbig, NULL, NULL, NULL, NULL, 1), "conv2d kernel larger than input", "conv2d", "(7 x 7)");
    expect_error(qg_conv2d(x, w, NULL, NULL, NULL, P2(3, 3), 1), "conv2d dilated kernel larger than input", "conv2d", "dilated");
    expect_error(qg_conv2d(x, w64, NULL, NULL, NULL, NULL, 1), "conv2d dtype mismatch", "conv2d", "f64");
    expect_error(qg_conv2d(xi, w, NULL, NULL, NULL, NULL, 1), "conv2d integer input", "conv2d", "i64");
    expect_error(qg_conv2d(x, w, b3, NULL, NULL, NULL, 1), "conv2d bias size", "conv2d", "bias");
    expect_error(qg_conv1d(x, w1, NULL, 1, 0, 1, 1), "conv1d 4-D input", "conv1d", "(N, C, L)");
    expect_error(qg_conv1d(x1, w1, NULL, 1, 0, 1, 1), "conv1d channel mismatch", "conv1d", "channels");
    expect_error(qg_conv1d(x1, w, NULL, 1, 0, 1, 1), "conv1d 4-D weight", "conv1d", "weight");
    expect_error(qg_conv1d(x1, w1, NULL, 0, 0, 1, 2), "conv1d stride 0", "conv1d", "stride");
    expect_error(qg_conv1d(NULL, w1, NULL, 1, 0, 1, 1), "conv1d NULL", "conv1d", "NULL");
    /* NULL propagates through a chain with the first error kept */
    expect_error(qg_max_pool2d(qg_conv2d(x, w2, NULL, NULL, NULL, NULL, 1), P2(2, 2), NULL, NULL, NULL, false),
                 "chain keeps the first error", "conv2d", "channels");

    expect_error(qg_max_pool2d(x2d, P2(2, 2), NULL, NULL, NULL, false), "max_pool2d 2-D input", "max_pool2d", "f32[5, 5]");
    expect_error(qg_max_pool2d(x5d, P2(2, 2), NULL, NULL, NULL, false), "max_pool2d 5-D input", "max_pool2d", "4-D");
    expect_error(qg_max_pool2d(xempty, P2(2, 2), NULL, NULL, NULL, false), "max_pool2d empty channels", "max_pool2d", "non-zero");
    expect_error(qg_max_pool2d(x, NULL, NULL, NULL, NULL, false), "max_pool2d no kernel", "max_pool2d", "kernel");
    expect_error(qg_max_pool2d(x, P2(3, 3), NULL, P2(2, 2), NULL, false), "max_pool2d padding > kernel/2", "max_pool2d", "padding");
    expect_error(qg_max_pool2d(x, P2(2, 0), NULL, NULL, NULL, false), "max_pool2d kernel 0", "max_pool2d", "kernel");
    expect_error(qg_max_pool2d(x, P2(2, 2), P2(-1, 1), NULL, NULL, false), "max_pool2d negative stride", "max_pool2d", "stride");
    expect_error(qg_max_pool2d(x, P2(2, 2), NULL, NULL, P2(0, 1), false), "max_pool2d dilation 0", "max_pool2d", "dilation");
    expect_error(qg_max_pool2d(xsmall, P2(2, 2), NULL, NULL, NULL, false), "max_pool2d output too small", "max_pool2d", "too small");
    expect_error(qg_max_pool2d(xi, P2(2, 2), NULL, NULL, NULL, false), "max_pool2d integer input", "max_pool2d", "i64");
    expect_error(qg_avg_pool2d(x, P2(2, 2), NULL, P2(0, 2), false, true, 0), "avg_pool2d padding > kernel/2", "avg_pool2d", "padding");
    expect_error(qg_avg_pool2d(xsmall, P2(2, 2), NULL, NULL, false, true, 0), "avg_pool2d output too small", "avg_pool2d", "too small");
    expect_error(qg_avg_pool2d(NULL, P2(2, 2), NULL, NULL, false, true, 0), "avg_pool2d NULL", "avg_pool2d", "NULL");
    expect_error(qg_adaptive_avg_pool2d(x, -1, 2), "adaptive_avg_pool2d negative size", "adaptive_avg_pool2d", "non-negative");
    expect_error(qg_adaptive_avg_pool2d(x2d, 2, 2), "adaptive_avg_pool2d 2-D input", "adaptive_avg_pool2d", "f32[5, 5]");

    /* the defaults: stride = kernel for pools; stride 1, padding 0, dilation 1 for conv */
    qg_tensor *y = qg_max_pool2d(x, P2(2, 2), P2(0, 0), NULL, NULL, false);
    CHECK(y && y->shape[2] == 2 && y->shape[3] == 2, "max_pool2d stride 0 means the kernel size");
    y = qg_conv2d(x, w, NULL, NULL, NULL, NULL, 1);
    CHECK(y && y->shape[0] == 1 && y->shape[1] == 2 && y->shape[2] == 3 && y->shape[3] == 3, "conv2d default arguments");
    qg_tensor *xe = qg_tensor_zeros(QG_F32, 4, SHAPE(0, 3, 5, 5));
    y = qg_conv2d(xe, w, NULL, NULL, P2(1, 1), NULL, 1);
    CHECK(y && y->shape[0] == 0 && y->shape[2] == 5, "conv2d empty batch");
    y = qg_max_pool2d(xe, P2(2, 2), NULL, NULL, NULL, false);
    CHECK(y && y->shape[0] == 0 && y->shape[2] == 2, "max_pool2d empty batch");
    qg_tape_reset(NULL);
    qg_tensor *all[] = {x, w, w2, w3, wbig, w64, b3, x2d, x5d, xi, x1, w1, xsmall, xempty, xe};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) qg_tensor_free(all[i]);
}

/* qg__conv_orientation (tests/hooks.h): -1 picks each GEMM's orientation by cost, 1
 * forces the transposed form (scratch + transpose), so both code paths are checked. */

int main(void) {
    qg_rng g;
    qg_rng_init(&g, 2024);
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    for (int orient = -1; orient <= 1; orient += 2) {
        qg__conv_orientation = orient;
        for (int i = 0; i < ncases; i++) {
            if (orient == 1 && strncmp(cases[i].name, "conv", 4)) continue;
            for (int l = 0; l < L_COUNT; l++) gc_check_case(&cases[i], l, &g);
        }
        against_naive(QG_F32, &g);
        against_naive(QG_F64, &g);
        thread_invariance(&g);
    }
    qg__conv_orientation = -1;
    printf("gradcheck_nn: %lld op/layout combinations checked\n", (long long)gc_case_count);
    forward_values(QG_F32);
    forward_values(QG_F64);
    max_pool_ties(QG_F32, &g);
    max_pool_ties(QG_F64, &g);
    error_paths();
    return test_summary("gradcheck_nn");
}
