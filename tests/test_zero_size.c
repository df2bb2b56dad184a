/* Zero-size tensors, as PyTorch has them: every creation function and every op takes
 * a shape with a 0 dimension and gives the shape PyTorch gives (reductions over an
 * empty dim: sum 0, mean NaN), and backward through them works. */
#include <string.h>

#include "qgrad/qat.h"
#include "test_util.h"

static bool shape_is(const qg_tensor *t, int nd, const int64_t *shape) {
    return t && t->ndim == nd && !memcmp(t->shape, shape, sizeof(int64_t) * (size_t)nd);
}
#define IS(t, ...) shape_is((t), (int)(sizeof(SHAPE(__VA_ARGS__)) / sizeof(int64_t)), SHAPE(__VA_ARGS__))

static void creation(void) {
    const int64_t *sh = SHAPE(1, 2, 0, 5);
    qg_tensor *ts[] = {qg_tensor_empty(QG_F32, 4, sh), qg_tensor_zeros(QG_F64, 4, sh), qg_tensor_ones(QG_I64, 4, sh),
                       qg_tensor_full(QG_F32, 4, sh, 2), qg_tensor_rand(NULL, QG_F32, 4, sh),
                       qg_tensor_randn(NULL, QG_F64, 4, sh), qg_tensor_from_data(QG_F32, 4, sh, NULL),
                       qg_tensor_arange(QG_F32, 0, 0, 1)};
    const char *names[] = {"empty", "zeros", "ones", "full", "rand", "randn", "from_data", "arange(0, 0)"};
    for (int i = 0; i < 8; i++) {
        CHECK(ts[i] && qg_tensor_numel(ts[i]) == 0 && qg_tensor_is_contiguous(ts[i]), "%s on a 0-size shape: %s",
              names[i], qg_last_error());
        qg_tensor *c = ts[i] ? qg_tensor_clone(ts[i]) : NULL;
        CHECK(c && qg_tensor_numel(c) == 0, "clone of %s", names[i]);
        qg_tensor_free(c), qg_tensor_free(ts[i]);
    }
    qg_tensor *t = qg_tensor_zeros(QG_F32, 2, SHAPE(3, 0));
    CHECK(qg_tensor_is_contiguous(t) && qg_tensor_is_contiguous(qg_transpose(t, 0, 1)), "(3, 0) and its transpose are contiguous");
    qg_tensor_free(t);
    qg_tape_reset(NULL);
}

static void ops(void) {
    qg_tensor *x = qg_tensor_zeros(QG_F32, 3, SHAPE(2, 0, 3)), *b = qg_tensor_ones(QG_F32, 1, SHAPE(3));
    qg_tensor_set_requires_grad(x, true);
    qg_tensor *(*unary[])(const qg_tensor *) = {qg_neg, qg_exp, qg_log, qg_sqrt, qg_rsqrt, qg_abs, qg_tanh,
                                                qg_sigmoid, qg_relu, qg_relu6, qg_contiguous};
    for (size_t k = 0; k < sizeof unary / sizeof *unary; k++) CHECK(IS(unary[k](x), 2, 0, 3), "unary op %zu: %s", k, qg_last_error());
    CHECK(IS(qg_add(x, b), 2, 0, 3) && IS(qg_mul(b, x), 2, 0, 3) && IS(qg_maximum(x, b), 2, 0, 3), "broadcast with an empty tensor");
    CHECK(IS(qg_mul_scalar(x, 2), 2, 0, 3) && IS(qg_pow_scalar(x, 2), 2, 0, 3) && IS(qg_clamp(x, 0, 1), 2, 0, 3), "scalar ops");
    qg_tensor *s = qg_sum(x, 1, (const int[]){1}, false), *m = qg_mean(x, 1, (const int[]){1}, false);
    CHECK(IS(s, 2, 3) && qg_tensor_get(s, SHAPE(1, 2)) == 0, "sum over the empty dim is 0: %s", qg_last_error());
    CHECK(IS(m, 2, 3) && isnan(qg_tensor_get(m, SHAPE(0, 0))), "mean over the empty dim is NaN: %s", qg_last_error());
    CHECK(IS(qg_sum(x, 1, (const int[]){2}, false), 2, 0), "sum over a full dim of an empty tensor");
    qg_tensor *all = qg_sum(x, 0, NULL, false);
    CHECK(all && qg_tensor_item(all) == 0, "sum of nothing");
    CHECK(IS(qg_softmax(x, 2), 2, 0, 3) && IS(qg_log_softmax(x, 1), 2, 0, 3), "softmax: %s", qg_last_error());
    CHECK(IS(qg_reshape(x, 2, SHAPE(0, 6)), 0, 6) && IS(qg_transpose(x, 0, 1), 0, 2, 3) && IS(qg_flatten(x, 0, -1), 0) &&
              IS(qg_narrow(x, 2, 1, 2), 2, 0, 2) && IS(qg_unsqueeze(x, 0), 1, 2, 0, 3) && IS(qg_expand(x, 4, SHAPE(4, 2, 0, 3)), 4, 2, 0, 3),
          "views: %s", qg_last_error());
    qg_tensor *y = qg_tensor_ones(QG_F32, 3, SHAPE(2, 1, 3));
    qg_tensor *pair[2] = {x, y};
    CHECK(IS(qg_cat(2, pair, 1), 2, 1, 3), "cat with an empty tensor: %s", qg_last_error());
    qg_tensor *a = qg_tensor_ones(QG_F32, 2, SHAPE(4, 0)), *w = qg_tensor_ones(QG_F32, 2, SHAPE(0, 5));
    qg_tensor *mm = qg_matmul(a, w);
    CHECK(IS(mm, 4, 5) && qg_tensor_get(mm, SHAPE(3, 4)) == 0, "matmul with k = 0 is zeros: %s", qg_last_error());
    qg_tensor *x0 = qg_tensor_ones(QG_F32, 2, SHAPE(0, 4)), *lw = qg_tensor_ones(QG_F32, 2, SHAPE(3, 4));
    CHECK(IS(qg_linear(x0, lw, b), 0, 3), "linear on an empty batch: %s", qg_last_error());
    qg_tensor *img = qg_tensor_ones(QG_F32, 4, SHAPE(0, 1, 4, 4)), *cw = qg_tensor_ones(QG_F32, 4, SHAPE(2, 1, 3, 3));
    CHECK(IS(qg_conv2d(img, cw, NULL, NULL, NULL, NULL, 1), 0, 2, 2, 2), "conv2d on an empty batch: %s", qg_last_error());
    CHECK(IS(qg_max_pool2d(img, (int[]){2, 2}, NULL, NULL, NULL, false), 0, 1, 2, 2) &&
              IS(qg_avg_pool2d(img, (int[]){2, 2}, NULL, NULL, false, true, 0), 0, 1, 2, 2),
          "pooling on an empty batch: %s", qg_last_error());
    CHECK(IS(qg_fake_quantize_per_tensor(x, 0.1, 0, -128, 127), 2, 0, 3), "fake-quant: %s", qg_last_error());
    qg_tensor *tgt = qg_tensor_zeros(QG_I64, 1, SHAPE(0));
    qg_tensor *l0 = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3));
    qg_tensor *ce = qg_cross_entropy(l0, tgt, QG_REDUCTION_SUM);
    CHECK(ce && qg_tensor_item(ce) == 0, "cross-entropy sum over no sample is 0: %s", qg_last_error());

    /* backward through an empty tensor: zero gradients of the right shapes */
    qg_tensor *wb = qg_tensor_ones(QG_F32, 1, SHAPE(3));
    qg_tensor_set_requires_grad(wb, true);
    qg_tensor *loss = qg_add(qg_sum(qg_mul(qg_exp(x), wb), 0, NULL, false), qg_sum(wb, 0, NULL, false));
    CHECK(loss && qg_backward(loss, NULL) == QG_OK && x->grad && qg_tensor_numel(x->grad) == 0 &&
              qg_tensor_get(wb->grad, SHAPE(0)) == 1,
          "backward: %s", qg_last_error());
    qg_tensor *fr[] = {x, b, y, a, w, x0, lw, img, cw, tgt, wb, l0};
    for (size_t i = 0; i < sizeof fr / sizeof *fr; i++) qg_tensor_free(fr[i]);
    qg_tape_reset(NULL);
}

int main(void) {
    creation();
    ops();
    return test_summary("zero_size");
}
