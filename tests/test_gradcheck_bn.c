/* batch_norm, its fused form batch_norm_div (BN of x / f, the QAT ConvBn's un-scaling
 * and BN in one op) and dropout: float64 gradient checks (training and eval, affine or
 * not, 2-D, 3-D and 4-D inputs, contiguous, transposed, sliced and expanded layouts),
 * forward values and running-statistic updates against hand-computed numbers,
 * batch_norm_div against qg_div + qg_batch_norm (the same forward bits), thread-count
 * independence, and the error paths. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "test_util.h"
#include "gc_layouts.h"

/* ------------------------------------------------------------- batch_norm gradcheck */

/* batch_norm's inputs in the gradcheck harness (tests/gc_layouts.h): x (in the case's
 * layout), weight, bias, the initial running mean and variance and batch_norm_div's
 * divisor, the last five kept contiguous; weight and bias are differentiated when
 * affine, the divisor when the case is batch_norm_div, the statistics never. */
enum { BN_X, BN_W, BN_B, BN_RM0, BN_RV0, BN_F, BN_IN };

typedef struct {
    bool training, affine, div;
    int running;        /* 0: NULL running stats; 1: given (reset inside fn in training) */
    qg_tensor *rm, *rv; /* running stats used by fn */
} bn_ctx;

static qg_tensor *bn_fn(qg_tensor *const *in, void *vctx) {
    bn_ctx *c = vctx;
    qg_tensor *rm = NULL, *rv = NULL;
    if (c->running) {
        /* training updates the running stats on every call: start each evaluation
         * from the same values so the function gradcheck sees is fixed */
        qg_tensor_copy_(c->rm, in[BN_RM0]);
        qg_tensor_copy_(c->rv, in[BN_RV0]);
        rm = c->rm, rv = c->rv;
    }
    qg_tensor *x = in[BN_X], *w = c->affine ? in[BN_W] : NULL, *b = c->affine ? in[BN_B] : NULL;
    qg_tensor *y = c->div ? qg__batch_norm_div(x, in[BN_F], rm, rv, w, b, c->training, 0.1, 1e-5)
                          : qg_batch_norm(x, rm, rv, w, b, c->training, 0.1, 1e-5);
    /* a nonlinearity after BN, so the output's gradient is not constant per channel */
    return qg_mul(y, qg_tanh(x));
}

static void bn_gradchecks(qg_rng *g) {
    static const struct {
        int nd;
        int64_t shape[4];
    } shapes[] = {{2, {5, 3}}, {3, {3, 4, 5}}, {4, {2, 3, 3, 4}}};
    const unsigned stats = 1u << BN_RM0 | 1u << BN_RV0, params = 1u << BN_W | 1u << BN_B, fb = 1u << BN_F;
    int count = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int layout = 0; layout < L_COUNT; layout++)
            for (int v = 0; v < 16; v++) {
                const bool training = v & 1, affine = v & 2, running = v & 4, div = v & 8;
                if (!training && !running) continue; /* eval needs running stats */
                int nd = shapes[si].nd;
                int64_t C = shapes[si].shape[1];
                char name[96];
                snprintf(name, sizeof name, "batch_norm%s %d-d %s %s %s", div ? "_div" : "", nd,
                         training ? "train" : "eval", affine ? "affine" : "no-affine",
                         running ? "running" : "no-running");
                /* x ~ N(0.5, 1.5), weight ~ U(0.5, 1.5), bias and running mean
                 * ~ N(0, 1), running var ~ U(0.5, 2), the divisor ~ U(0.5, 2) */
                gc_case c = {name, NULL, BN_IN, {nd, 1, 1, 1, 1, 1}, {{0}, {C}, {C}, {C}, {C}, {C}},
                             {D_NORMAL, D_UNIFORM, D_ANY, D_ANY, D_POS, D_POS}};
                memcpy(c.shape[BN_X], shapes[si].shape, sizeof c.shape[BN_X]);
                bn_ctx ctx = {training, affine, div, running, qg_tensor_empty(QG_F64, 1, &C),
                              qg_tensor_empty(QG_F64, 1, &C)};
                gc_how how = {.fn = bn_fn, .ctx = &ctx, .fixed = params | stats | fb,
                              .nograd = stats | (affine ? 0 : params) | (div ? 0 : fb),
                              .dist = {[BN_X] = {0.5, 1.5}, [BN_W] = {0.5, 1.5}}};
                gc_check(&c, &how, layout, g);
                count++;
                qg_tensor_free(ctx.rm), qg_tensor_free(ctx.rv);
            }
    printf("batch_norm: %d gradcheck configurations\n", count);
}

/* ------------------------------------------------------------- dropout gradcheck */

static qg_tensor *drop_fn(qg_tensor *const *in, void *vctx) {
    const double *p = vctx;
    qg_rng r;
    qg_rng_init(&r, 77); /* the same mask on every evaluation */
    return qg_dropout(in[0], *p, true, &r);
}

static void dropout_gradchecks(qg_rng *g) {
    double ps[] = {0.3, 0.5, 1.0};
    for (int layout = 0; layout < L_COUNT; layout++)
        for (int k = 0; k < 3; k++) {
            char name[32];
            snprintf(name, sizeof name, "dropout p=%g", ps[k]);
            gc_case c = {name, NULL, 1, {3}, {{2, 3, 4}}, {D_ANY}};
            gc_how how = {.fn = drop_fn, .ctx = &ps[k]};
            gc_check(&c, &how, layout, g);
        }
}

/* ------------------------------------------------------------- values by hand */

static void bn_values(void) {
    /* x (4, 2): channel 0 = 1, 3, 5, 7 (mean 4, biased var 5, unbiased 20/3);
     *           channel 1 = 2, 6, 10, 14 (mean 8, biased var 20, unbiased 80/3) */
    const float xd[8] = {1, 2, 3, 6, 5, 10, 7, 14};
    qg_tensor *x = qg_tensor_from_data(QG_F32, 2, SHAPE(4, 2), xd);
    qg_tensor *rm = qg_tensor_from_data(QG_F32, 1, SHAPE(2), (float[]){0.5f, -1.0f});
    qg_tensor *rv = qg_tensor_from_data(QG_F32, 1, SHAPE(2), (float[]){1.0f, 2.0f});
    qg_tensor *w = qg_tensor_from_data(QG_F32, 1, SHAPE(2), (float[]){2.0f, 0.5f});
    qg_tensor *b = qg_tensor_from_data(QG_F32, 1, SHAPE(2), (float[]){0.25f, -1.0f});
    const double eps = 1e-5, mom = 0.1;
    qg_tensor *y = qg_batch_norm(x, rm, rv, w, b, true, mom, eps);
    CHECK(y != NULL, "batch_norm train: %s", qg_last_error());
    const double mean[2] = {4, 8}, var[2] = {5, 20}, uvar[2] = {20.0 / 3, 80.0 / 3};
    const double wv[2] = {2, 0.5}, bv[2] = {0.25, -1}, rm0[2] = {0.5, -1}, rv0[2] = {1, 2};
    for (int n = 0; n < 4 && y; n++)
        for (int c = 0; c < 2; c++) {
            double want = (xd[n * 2 + c] - mean[c]) / sqrt(var[c] + eps) * wv[c] + bv[c];
            double got = qg_tensor_get(y, (int64_t[]){n, c});
            CHECK(tst_close(got, want, 1e-6, 1e-6), "bn train y[%d,%d] = %.9g, want %.9g", n, c, got, want);
        }
    for (int c = 0; c < 2; c++) {
        double m = qg_tensor_get(rm, (int64_t[]){c}), v = qg_tensor_get(rv, (int64_t[]){c});
        double wm = (1 - mom) * rm0[c] + mom * mean[c], wvv = (1 - mom) * rv0[c] + mom * uvar[c];
        CHECK(tst_close(m, wm, 1e-7, 1e-6), "running_mean[%d] = %.9g, want %.9g", c, m, wm);
        CHECK(tst_close(v, wvv, 1e-7, 1e-6), "running_var[%d] = %.9g, want %.9g", c, v, wvv);
    }
    /* literal values: 0.9*0.5 + 0.1*4 = 0.85; 0.9*1 + 0.1*20/3 = 1.5666667 */
    CHECK(fabs(qg_tensor_get(rm, (int64_t[]){0}) - 0.85) < 1e-7, "running_mean[0] literal");
    CHECK(fabs(qg_tensor_get(rv, (int64_t[]){0}) - 1.5666667) < 1e-6, "running_var[0] literal");
    CHECK(fabs(qg_tensor_get(rm, (int64_t[]){1}) - -0.1) < 1e-6, "running_mean[1] literal");
    CHECK(fabs(qg_tensor_get(rv, (int64_t[]){1}) - (1.8 + 8.0 / 3)) < 1e-6, "running_var[1] literal");

    /* a second batch continues from the updated values */
    float rm1 = (float)qg_tensor_get(rm, (int64_t[]){0}), rv1 = (float)qg_tensor_get(rv, (int64_t[]){0});
    qg_batch_norm(x, rm, rv, w, b, true, 0.5, eps);
    CHECK(tst_close(qg_tensor_get(rm, (int64_t[]){0}), 0.5 * rm1 + 0.5 * 4, 0, 1e-6), "running_mean momentum 0.5");
    CHECK(tst_close(qg_tensor_get(rv, (int64_t[]){0}), 0.5 * rv1 + 0.5 * 20.0 / 3, 0, 1e-6), "running_var momentum 0.5");

    /* eval: running stats used, not changed */
    float rmv[2], rvv[2];
    qg_tensor_copy_to(rm, QG_F32, rmv), qg_tensor_copy_to(rv, QG_F32, rvv);
    qg_tensor *ye = qg_batch_norm(x, rm, rv, w, b, false, mom, eps);
    CHECK(ye != NULL, "batch_norm eval: %s", qg_last_error());
    for (int n = 0; n < 4 && ye; n++)
        for (int c = 0; c < 2; c++) {
            double want = (xd[n * 2 + c] - rmv[c]) / sqrt(rvv[c] + eps) * wv[c] + bv[c];
            double got = qg_tensor_get(ye, (int64_t[]){n, c});
            CHECK(tst_close(got, want, 1e-5, 1e-5), "bn eval y[%d,%d] = %.9g, want %.9g", n, c, got, want);
        }
    float rma[2], rva[2];
    qg_tensor_copy_to(rm, QG_F32, rma), qg_tensor_copy_to(rv, QG_F32, rva);
    CHECK(!memcmp(rma, rmv, sizeof rma) && !memcmp(rva, rvv, sizeof rva), "eval leaves running stats alone");

    /* no grad mode still updates the running stats in training; nothing recorded */
    QG_NO_GRAD_BEGIN
    size_t nodes = qg_tape_node_count(qg_tape_current());
    qg_tensor_set_requires_grad(w, true);
    qg_batch_norm(x, rm, rv, w, b, true, 1.0, eps);
    CHECK(qg_tape_node_count(qg_tape_current()) == nodes, "no-grad batch_norm records nothing");
    qg_tensor_set_requires_grad(w, false);
    QG_NO_GRAD_END
    CHECK(tst_close(qg_tensor_get(rm, (int64_t[]){1}), 8, 0, 1e-6), "momentum 1: running_mean = batch mean");
    CHECK(tst_close(qg_tensor_get(rv, (int64_t[]){1}), 80.0 / 3, 0, 1e-6), "momentum 1: running_var = unbiased var");

    /* one running stat alone is updated (PyTorch allows it) */
    qg_tensor *rm2 = qg_tensor_zeros(QG_F32, 1, SHAPE(2));
    CHECK(qg_batch_norm(x, rm2, NULL, NULL, NULL, true, 0.1, eps) != NULL, "running_mean only");
    CHECK(tst_close(qg_tensor_get(rm2, (int64_t[]){1}), 0.8, 0, 1e-6), "running_mean only: updated");

    /* 4-D: statistics over N, H, W; hand check on a (2, 1, 1, 2) input: 1, 2, 3, 6 */
    qg_tensor *x4 = qg_tensor_from_data(QG_F64, 4, SHAPE(2, 1, 1, 2), (double[]){1, 2, 3, 6});
    qg_tensor *r4m = qg_tensor_zeros(QG_F64, 1, SHAPE(1)), *r4v = qg_tensor_ones(QG_F64, 1, SHAPE(1));
    qg_tensor *y4 = qg_batch_norm(x4, r4m, r4v, NULL, NULL, true, 0.1, 0.0);
    /* mean 3, biased var (4 + 1 + 0 + 9) / 4 = 3.5, unbiased 14/3 */
    CHECK(y4 && tst_close(qg_tensor_get(y4, (int64_t[]){1, 0, 0, 1}), 3 / sqrt(3.5), 1e-12, 1e-12), "4-d value");
    CHECK(tst_close(qg_tensor_get(r4m, (int64_t[]){0}), 0.3, 1e-15, 1e-12), "4-d running mean");
    CHECK(tst_close(qg_tensor_get(r4v, (int64_t[]){0}), 0.9 + 0.1 * 14.0 / 3, 1e-15, 1e-12), "4-d running var");
    /* constant channel with eps 0: invstd 0 (PyTorch), y = bias */
    qg_tensor *xc = qg_tensor_full(QG_F64, 2, SHAPE(3, 1), 2.0);
    qg_tensor *yc = qg_batch_norm(xc, NULL, NULL, NULL, NULL, true, 0.1, 0.0);
    CHECK(yc && qg_tensor_get(yc, (int64_t[]){0, 0}) == 0.0, "constant channel, eps 0: 0 not nan");

    qg_tensor_free(x), qg_tensor_free(rm), qg_tensor_free(rv), qg_tensor_free(w), qg_tensor_free(b);
    qg_tensor_free(rm2), qg_tensor_free(x4), qg_tensor_free(r4m), qg_tensor_free(r4v), qg_tensor_free(xc);
    qg_tape_reset(NULL);
}

/* backward by hand on the (4, 2) example: loss = sum(y * gout) */
static void bn_backward_values(void) {
    const double xd[8] = {1, 2, 3, 6, 5, 10, 7, 14}, gd[8] = {0.5, -1, 2, 0.25, -0.75, 1, 1.5, -2};
    const double wv[2] = {2, 0.5}, eps = 1e-5;
    qg_tensor *x = qg_tensor_from_data(QG_F64, 2, SHAPE(4, 2), xd);
    qg_tensor *w = qg_tensor_from_data(QG_F64, 1, SHAPE(2), wv);
    qg_tensor *b = qg_tensor_zeros(QG_F64, 1, SHAPE(2));
    qg_tensor *go = qg_tensor_from_data(QG_F64, 2, SHAPE(4, 2), gd);
    qg_tensor_set_requires_grad(x, true), qg_tensor_set_requires_grad(w, true), qg_tensor_set_requires_grad(b, true);
    for (int training = 1; training >= 0; training--) {
        qg_tensor *rm = qg_tensor_from_data(QG_F64, 1, SHAPE(2), (double[]){3.5, 7});
        qg_tensor *rv = qg_tensor_from_data(QG_F64, 1, SHAPE(2), (double[]){4, 16});
        qg_tensor_zero_grad(x), qg_tensor_zero_grad(w), qg_tensor_zero_grad(b);
        qg_tensor *y = qg_batch_norm(x, training ? NULL : rm, training ? NULL : rv, w, b, training, 0.1, eps);
        CHECK(y && qg_backward(y, go) == QG_OK, "bn backward: %s", qg_last_error());
        for (int c = 0; c < 2; c++) {
            double m = 0, v = 0, sg = 0, sgx = 0;
            if (training) {
                for (int n = 0; n < 4; n++) m += xd[n * 2 + c] / 4;
                for (int n = 0; n < 4; n++) v += (xd[n * 2 + c] - m) * (xd[n * 2 + c] - m) / 4;
            } else {
                m = c ? 7 : 3.5, v = c ? 16 : 4;
            }
            double is = 1 / sqrt(v + eps);
            for (int n = 0; n < 4; n++) {
                double xh = (xd[n * 2 + c] - m) * is;
                sg += gd[n * 2 + c], sgx += gd[n * 2 + c] * xh;
            }
            CHECK(tst_close(qg_tensor_get(w->grad, (int64_t[]){c}), sgx, 1e-12, 1e-10), "%s gw[%d]",
                  training ? "train" : "eval", c);
            CHECK(tst_close(qg_tensor_get(b->grad, (int64_t[]){c}), sg, 1e-12, 1e-10), "%s gb[%d]",
                  training ? "train" : "eval", c);
            for (int n = 0; n < 4; n++) {
                double xh = (xd[n * 2 + c] - m) * is, g = gd[n * 2 + c];
                double want = training ? wv[c] * is * (g - sg / 4 - xh * sgx / 4) : g * wv[c] * is;
                CHECK(tst_close(qg_tensor_get(x->grad, (int64_t[]){n, c}), want, 1e-12, 1e-10), "%s gx[%d,%d]",
                      training ? "train" : "eval", n, c);
            }
        }
        qg_tensor_free(rm), qg_tensor_free(rv);
        qg_tape_reset(NULL);
    }
    qg_tensor_free(x), qg_tensor_free(w), qg_tensor_free(b), qg_tensor_free(go);
}

/* ------------------------------------------------------------- threads */

/* outputs and gradients bitwise equal with 1 and 4 threads, on a tensor large enough
 * to go parallel, in the NCHW fast path, the (N, C) row path and a copied layout */
static void bn_threads(void) {
    qg_rng g;
    static const struct {
        int nd;
        int64_t shape[4];
        int layout;
    } cs[] = {{4, {8, 16, 32, 32}, L_CONTIG}, {2, {4096, 24}, L_CONTIG}, {4, {4, 8, 32, 33}, L_TRANSPOSED}};
    for (int k = 0; k < 3; k++) {
        qg_rng_init(&g, 9);
        qg_tensor *xb = gc_make_base(QG_F64, cs[k].layout, cs[k].nd, cs[k].shape);
        qg_tensor_normal_(xb, &g, 0.3, 2.0);
        int64_t C = cs[k].shape[1];
        qg_tensor *w = qg_tensor_rand(&g, QG_F32, 1, &C), *b = qg_tensor_randn(&g, QG_F32, 1, &C);
        qg_tensor *x = qg_tensor_empty(QG_F32, xb->ndim, xb->shape);
        qg_tensor_copy_(x, xb);
        qg_tensor_set_requires_grad(x, true), qg_tensor_set_requires_grad(w, true);
        int64_t n = 0;
        float *res[2][3] = {{0}};
        for (int r = 0; r < 2; r++) {
            qg_set_num_threads(r ? 4 : 1);
            qg_tensor *rm = qg_tensor_zeros(QG_F32, 1, &C), *rv = qg_tensor_ones(QG_F32, 1, &C);
            qg_tensor_zero_grad(x), qg_tensor_zero_grad(w);
            qg_tensor *xv = gc_layout_view(x, cs[k].layout, cs[k].nd, cs[k].shape);
            qg_tensor *y = qg_batch_norm(xv, rm, rv, w, b, true, 0.1, 1e-5);
            qg_tensor *l = qg_sum(qg_mul(y, xv), 0, NULL, false);
            CHECK(l && qg_backward(l, NULL) == QG_OK, "bn threads backward: %s", qg_last_error());
            n = qg_tensor_numel(y);
            res[r][0] = malloc(sizeof(float) * (size_t)n);
            res[r][1] = malloc(sizeof(float) * (size_t)n);
            res[r][2] = malloc(sizeof(float) * (size_t)(2 * C));
            qg_tensor_copy_to(y, QG_F32, res[r][0]);
            qg_tensor_copy_to(x->grad, QG_F32, res[r][1]);
            qg_tensor_copy_to(rv, QG_F32, res[r][2]);
            qg_tensor_copy_to(w->grad, QG_F32, res[r][2] + C);
            qg_tensor_free(rm), qg_tensor_free(rv);
            qg_tape_reset(NULL);
        }
        CHECK(!memcmp(res[0][0], res[1][0], sizeof(float) * (size_t)n), "bn case %d: y same with 1 and 4 threads", k);
        CHECK(!memcmp(res[0][1], res[1][1], sizeof(float) * (size_t)n), "bn case %d: gx same with 1 and 4 threads", k);
        CHECK(!memcmp(res[0][2], res[1][2], sizeof(float) * (size_t)(2 * C)),
              "bn case %d: running_var, gw same with 1 and 4 threads", k);
        /* and close to a float64 run */
        qg_set_num_threads(0);
        qg_tensor *x64 = qg_tensor_empty(QG_F64, x->ndim, x->shape), *w64 = qg_tensor_empty(QG_F64, 1, &C),
                  *b64 = qg_tensor_empty(QG_F64, 1, &C);
        qg_tensor_copy_(x64, x), qg_tensor_copy_(w64, w), qg_tensor_copy_(b64, b);
        qg_tensor *y64 = qg_batch_norm(gc_layout_view(x64, cs[k].layout, cs[k].nd, cs[k].shape), NULL, NULL, w64, b64,
                                       true, 0.1, 1e-5);
        qg_tensor *y32 = qg_tensor_from_data(QG_F32, y64->ndim, y64->shape, res[0][0]);
        double maxerr = tst_compare(y32, y64, TST_EXACT).max_abs;
        CHECK(maxerr < 2e-5, "bn case %d: f32 vs f64 max error %g", k, maxerr);
        qg_tensor_free(y32);
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < 3; i++) free(res[r][i]);
        qg_tensor_free(xb), qg_tensor_free(x), qg_tensor_free(w), qg_tensor_free(b);
        qg_tensor_free(x64), qg_tensor_free(w64), qg_tensor_free(b64);
        qg_tape_reset(NULL);
    }
    qg_set_num_threads(0);
}

/* batch_norm_div against qg_div + qg_batch_norm in float32: the same output and
 * running statistics bit for bit (the same operations), and gradients of x, the
 * divisor, weight and bias within float32 rounding of the composed ones; training and
 * eval, contiguous and transposed. */
static void bn_div_parity(void) {
    qg_rng g;
    qg_rng_init(&g, 17);
    static const int64_t shape[4] = {4, 6, 9, 10};
    const int64_t C = shape[1];
    for (int v = 0; v < 4; v++) {
        const bool training = v & 1, tr = v & 2;
        qg_tensor *xb = gc_make_base(QG_F32, tr ? L_TRANSPOSED : L_CONTIG, 4, shape);
        qg_tensor_normal_(xb, &g, 0.3, 2.0);
        qg_tensor *fr = qg_tensor_rand(&g, QG_F32, 1, &C), *w = qg_tensor_rand(&g, QG_F32, 1, &C);
        qg_tensor *b = qg_tensor_randn(&g, QG_F32, 1, &C), *f = qg_tensor_clone(qg_add_scalar(fr, 0.5));
        qg_tensor_free(fr);
        qg_tensor *t[2][5], *stats[2][2];
        qg_tensor *rm0 = qg_tensor_randn(&g, QG_F32, 1, &C), *rv0 = qg_tensor_rand(&g, QG_F32, 1, &C);
        qg_tensor *rv1 = qg_tensor_clone(qg_add_scalar(rv0, 0.5)); /* eval normalises by these */
        qg_tape_reset(NULL);
        qg_tensor *leaf[4] = {xb, f, w, b};
        for (int i = 0; i < 4; i++) qg_tensor_set_requires_grad(leaf[i], true);
        for (int r = 0; r < 2; r++) {
            for (int i = 0; i < 4; i++) qg_tensor_zero_grad(leaf[i]);
            qg_tensor *rm = qg_tensor_clone(rm0), *rv = qg_tensor_clone(rv1);
            qg_tensor *x = gc_layout_view(xb, tr ? L_TRANSPOSED : L_CONTIG, 4, shape);
            qg_tensor *y = r ? qg__batch_norm_div(x, f, rm, rv, w, b, training, 0.1, 1e-5)
                             : qg_batch_norm(qg_div(x, qg_reshape(f, 4, SHAPE(1, -1, 1, 1))), rm, rv, w, b, training,
                                             0.1, 1e-5);
            qg_tensor *l = qg_sum(qg_mul(y, qg_tanh(x)), 0, NULL, false);
            CHECK(l && qg_backward(l, NULL) == QG_OK, "bn_div parity backward: %s", qg_last_error());
            t[r][0] = qg_tensor_clone(y); /* output, then the gradients of x, f, w and b */
            for (int i = 1; i < 5; i++) t[r][i] = qg_tensor_clone(leaf[i - 1]->grad);
            stats[r][0] = rm, stats[r][1] = rv;
            qg_tape_reset(NULL);
        }
        const char *how = training ? "training" : "eval";
        CHECK_TENSOR(t[1][0], t[0][0], TST_BITWISE, "batch_norm_div output (%s%s)", how, tr ? ", transposed" : "");
        CHECK_TENSOR(stats[1][0], stats[0][0], TST_BITWISE, "batch_norm_div running_mean (%s)", how);
        CHECK_TENSOR(stats[1][1], stats[0][1], TST_BITWISE, "batch_norm_div running_var (%s)", how);
        const tst_tol tol = {.atol = 1e-5, .rtol = 1e-5};
        CHECK_TENSOR(t[1][1], t[0][1], tol, "batch_norm_div grad x (%s%s)", how, tr ? ", transposed" : "");
        CHECK_TENSOR(t[1][2], t[0][2], tol, "batch_norm_div grad f (%s)", how);
        CHECK_TENSOR(t[1][3], t[0][3], tol, "batch_norm_div grad weight (%s)", how);
        CHECK_TENSOR(t[1][4], t[0][4], tol, "batch_norm_div grad bias (%s)", how);
        qg_tensor_free(rm0), qg_tensor_free(rv0), qg_tensor_free(rv1);
        for (int r = 0; r < 2; r++) {
            for (int i = 0; i < 5; i++) qg_tensor_free(t[r][i]);
            qg_tensor_free(stats[r][0]), qg_tensor_free(stats[r][1]);
        }
        for (int i = 0; i < 4; i++) qg_tensor_free(leaf[i]);
        qg_tape_reset(NULL);
    }
}

/* ------------------------------------------------------------- dropout behaviour */

static void dropout_values(void) {
    qg_tensor *x = qg_tensor_full(QG_F32, 2, SHAPE(300, 400), 2.0f);
    /* eval and p == 0: x itself */
    CHECK(qg_dropout(x, 0.5, false, NULL) == x, "eval dropout returns x");
    CHECK(qg_dropout(x, 0.0, true, NULL) == x, "p = 0 returns x");
    /* training: entries are 0 or x / (1 - p); the kept fraction is about 1 - p */
    qg_rng r;
    qg_rng_init(&r, 3);
    qg_tensor *y = qg_dropout(x, 0.25, true, &r);
    CHECK(y != NULL, "dropout: %s", qg_last_error());
    CHECK(r.counter == 120000, "generator advanced by numel (%llu)", (unsigned long long)r.counter);
    int64_t n = qg_tensor_numel(x), kept = 0, bad = 0;
    float *yd = qg_tensor_data(y);
    const float scale = 1.0f / 0.75f;
    for (int64_t i = 0; i < n; i++) {
        if (yd[i] == 2.0f * scale) kept++;
        else if (yd[i] != 0.0f) bad++;
    }
    CHECK(bad == 0, "dropout values are 0 or x/(1-p) (%lld others)", (long long)bad);
    CHECK(fabs((double)kept / (double)n - 0.75) < 0.01, "kept fraction %g", (double)kept / (double)n);
    /* the mask is the generator's draws u >= p, in C order */
    qg_rng r2;
    qg_rng_init(&r2, 3);
    bool order_ok = true;
    for (int64_t i = 0; i < 1000; i++) order_ok &= (qg_rng_uniform(&r2) >= 0.25) == (yd[i] != 0.0f);
    CHECK(order_ok, "mask = draws >= p in C order");
    /* same mask with 1 and 4 threads */
    float *y1 = malloc(sizeof(float) * (size_t)n);
    qg_set_num_threads(1);
    qg_rng_init(&r, 11);
    qg_tensor_copy_to(qg_dropout(x, 0.6, true, &r), QG_F32, y1);
    qg_set_num_threads(4);
    qg_rng_init(&r, 11);
    qg_tensor *y4 = qg_dropout(x, 0.6, true, &r);
    CHECK(!memcmp(y1, qg_tensor_data(y4), sizeof(float) * (size_t)n), "dropout mask independent of threads");
    qg_set_num_threads(0);
    free(y1);
    /* global generator when gen is NULL: reproducible through qg_manual_seed */
    qg_manual_seed(5);
    qg_tensor *ga = qg_dropout(x, 0.5, true, NULL);
    qg_manual_seed(5);
    qg_tensor *gb = qg_dropout(x, 0.5, true, NULL);
    CHECK(tst_bitwise_equal(ga, gb), "global generator reseeded gives the same mask");
    /* p == 1: zeros, zero gradient; inf * 0 = nan as PyTorch */
    qg_tensor *xs = qg_tensor_from_data(QG_F64, 1, SHAPE(3), (double[]){1.5, -2, INFINITY});
    qg_tensor_set_requires_grad(xs, true);
    qg_tensor *z = qg_dropout(xs, 1.0, true, NULL);
    CHECK(z && qg_tensor_get(z, (int64_t[]){0}) == 0 && qg_tensor_get(z, (int64_t[]){1}) == 0 &&
              isnan(qg_tensor_get(z, (int64_t[]){2})), "p = 1 gives x * 0");
    qg_tensor *ones = qg_tensor_ones(QG_F64, 1, SHAPE(3));
    CHECK(z && qg_backward(z, ones) == QG_OK, "p = 1 backward: %s", qg_last_error());
    qg_tensor_free(ones);
    CHECK(xs->grad && qg_tensor_get(xs->grad, (int64_t[]){0}) == 0, "p = 1: zero gradient");
    qg_tensor_free(xs);
    qg_tensor_free(x);
    qg_tape_reset(NULL);
}

/* ------------------------------------------------------------- errors */

static void errors(void) {
    qg_tensor *x = qg_tensor_ones(QG_F32, 3, SHAPE(2, 3, 4));
    qg_tensor *c3 = qg_tensor_ones(QG_F32, 1, SHAPE(3)), *c4 = qg_tensor_ones(QG_F32, 1, SHAPE(4));
    qg_tensor *c3d = qg_tensor_ones(QG_F64, 1, SHAPE(3)), *m2 = qg_tensor_ones(QG_F32, 2, SHAPE(1, 3));
    qg_tensor *xi = qg_tensor_zeros(QG_I64, 2, SHAPE(2, 3)), *x1 = qg_tensor_ones(QG_F32, 1, SHAPE(3));
    qg_tensor *one = qg_tensor_ones(QG_F32, 3, SHAPE(1, 3, 1));

    qg_clear_error();
    CHECK(!qg_batch_norm(x, c4, c3, NULL, NULL, true, 0.1, 1e-5) && qg_last_status() == QG_ESHAPE &&
              strstr(qg_last_error(), "running_mean"), "running_mean of wrong shape: %s", qg_last_error());
    CHECK(!qg_batch_norm(x, c3, m2, NULL, NULL, true, 0.1, 1e-5) && qg_last_status() == QG_ESHAPE &&
              strstr(qg_last_error(), "running_var"), "running_var of wrong rank: %s", qg_last_error());
    CHECK(!qg_batch_norm(x, NULL, NULL, c4, NULL, true, 0.1, 1e-5) && qg_last_status() == QG_ESHAPE &&
              strstr(qg_last_error(), "weight"), "weight of wrong shape: %s", qg_last_error());
    CHECK(!qg_batch_norm(x, NULL, NULL, c3, c4, true, 0.1, 1e-5) && qg_last_status() == QG_ESHAPE &&
              strstr(qg_last_error(), "bias"), "bias of wrong shape: %s", qg_last_error());
    CHECK(!qg_batch_norm(x, NULL, NULL, c3d, NULL, true, 0.1, 1e-5) && qg_last_status() == QG_EDTYPE,
          "weight of another dtype: %s", qg_last_error());
    CHECK(!qg_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5) && qg_last_status() == QG_EINVAL &&
              strstr(qg_last_error(), "eval"), "eval without running stats: %s", qg_last_error());
    CHECK(!qg_batch_norm(x, c3, NULL, NULL, NULL, false, 0.1, 1e-5) && qg_last_status() == QG_EINVAL,
          "eval with running_mean only: %s", qg_last_error());
    CHECK(!qg_batch_norm(one, NULL, NULL, NULL, NULL, true, 0.1, 1e-5) && qg_last_status() == QG_EINVAL &&
              strstr(qg_last_error(), "more than 1 value per channel"), "one value per channel: %s", qg_last_error());
    CHECK(qg_batch_norm(one, c3, c3, NULL, NULL, false, 0.1, 1e-5) != NULL, "one value per channel is fine in eval");
    CHECK(!qg_batch_norm(xi, NULL, NULL, NULL, NULL, true, 0.1, 1e-5) && qg_last_status() == QG_EDTYPE,
          "integer input: %s", qg_last_error());
    CHECK(!qg_batch_norm(x1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5) && qg_last_status() == QG_ESHAPE,
          "1-d input: %s", qg_last_error());
    qg_clear_error();
    CHECK(!qg_batch_norm(NULL, NULL, NULL, NULL, NULL, true, 0.1, 1e-5) && qg_last_status() == QG_EINVAL,
          "NULL input");

    qg_clear_error();
    CHECK(!qg_dropout(x, -0.1, true, NULL) && qg_last_status() == QG_EINVAL, "dropout p < 0: %s", qg_last_error());
    CHECK(!qg_dropout(x, 1.5, true, NULL) && qg_last_status() == QG_EINVAL, "dropout p > 1");
    CHECK(!qg_dropout(x, NAN, false, NULL) && qg_last_status() == QG_EINVAL, "dropout p nan");
    CHECK(!qg_dropout(xi, 0.5, true, NULL) && qg_last_status() == QG_EDTYPE, "dropout integer input");
    qg_clear_error();
    CHECK(!qg_dropout(NULL, 0.5, true, NULL), "dropout NULL input");

    qg_tensor_free(x), qg_tensor_free(c3), qg_tensor_free(c4), qg_tensor_free(c3d), qg_tensor_free(m2);
    qg_tensor_free(xi), qg_tensor_free(x1), qg_tensor_free(one);
    qg_tape_reset(NULL);
}

int main(void) {
    qg_rng g;
    qg_rng_init(&g, 4321);
    bn_gradchecks(&g);
    dropout_gradchecks(&g);
    bn_values();
    bn_backward_values();
    bn_threads();
    bn_div_parity();
    dropout_values();
    errors();
    return test_summary("gradcheck_bn");
}
