/* Every public op fed bad input returns NULL (or a negative status) with a message
 * naming the op; nothing aborts. Run under ASan/UBSan in CI. */
#include <string.h>

#include "test_util.h"

#define EXPECT_ERR(call, op)                                                                  \
    do {                                                                                      \
        qg_clear_error();                                                                     \
        const void *r_ = (call);                                                              \
        CHECK(r_ == NULL && strstr(qg_last_error(), op), "%s should fail naming '%s' (got %s)", \
              #call, op, qg_last_error());                                                    \
    } while (0)

#define EXPECT_STATUS(call, op)                                                               \
    do {                                                                                      \
        qg_clear_error();                                                                     \
        qg_status s_ = (call);                                                                \
        CHECK(s_ < 0 && strstr(qg_last_error(), op), "%s should fail naming '%s' (got %d: %s)", \
              #call, op, (int)s_, qg_last_error());                                           \
    } while (0)

int main(void) {
    qg_tensor *a = qg_tensor_ones(QG_F32, 2, SHAPE(3, 4));
    qg_tensor *b = qg_tensor_ones(QG_F32, 2, SHAPE(5, 6));  /* does not broadcast with a */
    qg_tensor *d = qg_tensor_ones(QG_F64, 2, SHAPE(3, 4));  /* other float dtype */
    qg_tensor *i = qg_tensor_zeros(QG_I64, 2, SHAPE(3, 4)); /* integer */
    qg_tensor *tgt = qg_tensor_from_data(QG_I64, 1, SHAPE(3), (int64_t[]){0, 1, 9}); /* 9 out of range */
    qg_tensor *m = qg_tensor_zeros(QG_U8, 2, SHAPE(3, 4));

    /* unary ops: NULL and integer input */
    qg_tensor *(*unary[])(const qg_tensor *) = {qg_neg, qg_exp, qg_log, qg_sqrt, qg_rsqrt, qg_abs,
                                                qg_tanh, qg_sigmoid, qg_relu, qg_relu6};
    const char *unames[] = {"neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu", "hardtanh"};
    for (size_t k = 0; k < sizeof unary / sizeof unary[0]; k++) {
        EXPECT_ERR(unary[k](NULL), unames[k]);
        EXPECT_ERR(unary[k](i), unames[k]);
    }
    EXPECT_ERR(qg_clamp(a, 1, 0), "clamp");
    EXPECT_ERR(qg_clamp(NULL, 0, 1), "clamp");
    EXPECT_ERR(qg_hardtanh(a, 2, -2), "hardtanh");
    EXPECT_ERR(qg_pow_scalar(i, 2), "pow");
    EXPECT_ERR(qg_add_scalar(NULL, 1), "add_scalar");
    EXPECT_ERR(qg_mul_scalar(i, 1), "mul_scalar");
    EXPECT_ERR(qg_div_scalar(NULL, 1), "div_scalar");
    EXPECT_ERR(qg_sub_scalar(NULL, 1), "add_scalar");

    /* binary ops: NULL, shapes, dtypes */
    qg_tensor *(*binary[])(const qg_tensor *, const qg_tensor *) = {qg_add, qg_sub, qg_mul, qg_div, qg_maximum, qg_minimum};
    const char *bnames[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
    for (size_t k = 0; k < sizeof binary / sizeof binary[0]; k++) {
        EXPECT_ERR(binary[k](NULL, a), bnames[k]);
        EXPECT_ERR(binary[k](a, NULL), bnames[k]);
        EXPECT_ERR(binary[k](a, b), bnames[k]);
        EXPECT_ERR(binary[k](a, d), bnames[k]);
        EXPECT_ERR(binary[k](i, i), bnames[k]);
    }
    EXPECT_ERR(qg_add(a, b), "do not broadcast");
    EXPECT_ERR(qg_gt(a, d), "gt");
    EXPECT_ERR(qg_lt(NULL, a), "lt");
    EXPECT_ERR(qg_eq(a, b), "eq");
    EXPECT_ERR(qg_where(NULL, a, a), "where");
    EXPECT_ERR(qg_where(a, a, a), "mask must be u8");
    EXPECT_ERR(qg_where(m, a, b), "where");
    EXPECT_ERR(qg_where(m, a, d), "where");

    /* matmul and linear */
    EXPECT_ERR(qg_matmul(a, a), "inner dims");
    EXPECT_ERR(qg_matmul(NULL, a), "matmul");
    EXPECT_ERR(qg_matmul(a, d), "matmul");
    EXPECT_ERR(qg_matmul(qg_reshape(a, 1, SHAPE(12)), a), "2-D or 3-D");
    qg_tensor *b3 = qg_tensor_ones(QG_F32, 3, SHAPE(2, 4, 3)), *c3 = qg_tensor_ones(QG_F32, 3, SHAPE(3, 3, 4));
    EXPECT_ERR(qg_matmul(c3, b3), "batch dims");
    EXPECT_ERR(qg_linear(a, b, NULL), "linear");
    EXPECT_ERR(qg_linear(NULL, a, NULL), "linear");
    EXPECT_ERR(qg_linear(a, a, a), "bias");
    EXPECT_ERR(qg_linear(a, d, NULL), "linear");

    /* reductions: dims out of range, duplicates, dtype */
    EXPECT_ERR(qg_sum(a, 1, (const int[]){2}, false), "out of range");
    EXPECT_ERR(qg_sum(a, 1, (const int[]){-3}, false), "sum");
    EXPECT_ERR(qg_sum(a, 2, (const int[]){0, -2}, false), "twice");
    EXPECT_ERR(qg_sum(i, 0, NULL, false), "sum");
    EXPECT_ERR(qg_sum(NULL, 0, NULL, false), "sum");
    EXPECT_ERR(qg_mean(a, 3, (const int[]){0, 1, 0}, false), "mean");
    EXPECT_ERR(qg_var(a, 1, (const int[]){5}, true, false), "var");
    EXPECT_ERR(qg_var(NULL, 0, NULL, true, false), "var");
    EXPECT_ERR(qg_max(a, 2, false, NULL), "max");
    EXPECT_ERR(qg_max(NULL, 0, false, NULL), "max");
    EXPECT_ERR(qg_argmax(a, -3, false), "argmax");
    EXPECT_ERR(qg_softmax(a, 2), "softmax");
    EXPECT_ERR(qg_softmax(i, 1), "softmax");
    EXPECT_ERR(qg_log_softmax(NULL, 1), "log_softmax");

    /* losses */
    EXPECT_ERR(qg_cross_entropy(a, tgt, QG_REDUCTION_MEAN), "not a class");
    EXPECT_ERR(qg_cross_entropy(a, m, QG_REDUCTION_MEAN), "target must be");
    EXPECT_ERR(qg_cross_entropy(a, b, QG_REDUCTION_MEAN), "probability target"); /* float target, wrong shape */
    EXPECT_ERR(qg_cross_entropy(a, d, QG_REDUCTION_MEAN), "cross_entropy");      /* other float dtype */
    EXPECT_ERR(qg_cross_entropy_label_smoothing(a, tgt, QG_REDUCTION_MEAN, 1.5), "label_smoothing");
    EXPECT_ERR(qg_cross_entropy(qg_reshape(a, 1, SHAPE(12)), tgt, QG_REDUCTION_MEAN), "expected input (N, C)");
    EXPECT_ERR(qg_cross_entropy(NULL, tgt, QG_REDUCTION_MEAN), "cross_entropy");
    EXPECT_ERR(qg_nll_loss(a, NULL, QG_REDUCTION_SUM), "nll_loss");
    qg_tensor *tgt_ok = qg_tensor_zeros(QG_I64, 1, SHAPE(3));
    EXPECT_ERR(qg_nll_loss(a, tgt_ok, (qg_reduction)7), "reduction");
    EXPECT_ERR(qg_mse_loss(a, b, QG_REDUCTION_MEAN), "same shape");
    EXPECT_ERR(qg_mse_loss(a, d, QG_REDUCTION_MEAN), "mse_loss");
    EXPECT_ERR(qg_mse_loss(NULL, a, QG_REDUCTION_MEAN), "mse_loss");

    /* views */
    EXPECT_ERR(qg_reshape(a, 2, SHAPE(5, -1)), "reshape");
    EXPECT_ERR(qg_reshape(a, 2, SHAPE(-1, -1)), "only one");
    EXPECT_ERR(qg_reshape(NULL, 1, SHAPE(1)), "reshape");
    EXPECT_ERR(qg_view(qg_transpose(a, 0, 1), 1, SHAPE(12)), "without a copy");
    EXPECT_ERR(qg_transpose(a, 0, 2), "transpose");
    EXPECT_ERR(qg_transpose(NULL, 0, 1), "transpose");
    EXPECT_ERR(qg_permute(a, (const int[]){0, 0}), "twice");
    EXPECT_ERR(qg_permute(a, (const int[]){0, 2}), "permute");
    EXPECT_ERR(qg_narrow(a, 1, 2, 5), "narrow");
    EXPECT_ERR(qg_narrow(a, 3, 0, 1), "narrow");
    EXPECT_ERR(qg_slice(a, 0, 0, 2, 0), "step");
    EXPECT_ERR(qg_slice(a, 4, 0, 2, 1), "slice");
    EXPECT_ERR(qg_select(a, 0, 3), "select");
    EXPECT_ERR(qg_select(a, 0, -4), "select");
    EXPECT_ERR(qg_expand(a, 2, SHAPE(3, 5)), "expand");
    EXPECT_ERR(qg_expand(a, 1, SHAPE(4)), "expand");
    EXPECT_ERR(qg_expand(a, 3, SHAPE(-1, 3, 4)), "expand");
    EXPECT_ERR(qg_squeeze(a, 2), "squeeze");
    EXPECT_ERR(qg_unsqueeze(a, 4), "unsqueeze");
    EXPECT_ERR(qg_flatten(a, 1, 0), "flatten");
    EXPECT_ERR(qg_flatten(NULL, 0, 1), "flatten");
    EXPECT_ERR(qg_contiguous(NULL), "contiguous");
    EXPECT_ERR(qg_detach(NULL), "detach");
    EXPECT_ERR(qg_cat(2, (qg_tensor *[]){a, b}, 0), "cat");
    EXPECT_ERR(qg_cat(2, (qg_tensor *[]){a, d}, 0), "cat");
    EXPECT_ERR(qg_cat(2, (qg_tensor *[]){a, NULL}, 0), "cat");
    EXPECT_ERR(qg_cat(1, (qg_tensor *[]){a}, 2), "cat");
    EXPECT_ERR(qg_cat(0, NULL, 0), "cat");
    EXPECT_ERR(qg_stack(2, (qg_tensor *[]){a, b}, 0), "stack");
    EXPECT_ERR(qg_stack(1, (qg_tensor *[]){a}, 3), "unsqueeze");
    EXPECT_ERR(qg_to_dtype(NULL, QG_F32), "to_dtype");
    EXPECT_ERR(qg_to_dtype(a, (qg_dtype)99), "to_dtype");

    /* creation, inspection, autograd entry points */
    EXPECT_ERR(qg_tensor_zeros((qg_dtype)42, 1, SHAPE(2)), "dtype");
    EXPECT_ERR(qg_tensor_empty(QG_F32, -1, NULL), "ndim");
    EXPECT_ERR(qg_tensor_empty(QG_F32, 2, NULL), "shape is NULL");
    EXPECT_ERR(qg_tensor_from_data(QG_F32, 1, SHAPE(3), NULL), "data is NULL");
    EXPECT_ERR(qg_tensor_arange(QG_F32, 0, 1, 0), "step");
    EXPECT_ERR(qg_tensor_clone(NULL), "clone");
    EXPECT_ERR(qg_tensor_randn(NULL, QG_I64, 1, SHAPE(2)), "expected f32");
    EXPECT_STATUS(qg_tensor_set(a, SHAPE(3, 0), 1), "out of range");
    EXPECT_STATUS(qg_tensor_copy_(a, b), "tensor_copy_");
    EXPECT_STATUS(qg_tensor_copy_(NULL, a), "tensor_copy_");
    EXPECT_STATUS(qg_tensor_set_requires_grad(i, true), "only f32/f64");
    EXPECT_STATUS(qg_backward(NULL, NULL), "backward");
    qg_tensor_set_requires_grad(a, true);
    qg_tensor *y = qg_mul(a, a);
    EXPECT_STATUS(qg_backward(y, b), "does not match");
    EXPECT_STATUS(qg_backward(y, d), "does not match");
    EXPECT_STATUS(qg_tensor_set_requires_grad(y, false), "only leaves");
    EXPECT_STATUS(qg_gradcheck(NULL, NULL, 0, NULL, NULL), "gradcheck");
    CHECK(isnan(qg_tensor_get(a, SHAPE(0, 9))) && strstr(qg_last_error(), "tensor_get"), "get out of range");

    /* a chain with a NULL in the middle stays NULL and keeps the first error */
    qg_tensor *chain = qg_relu(qg_sum(qg_add(a, b), 0, NULL, false));
    CHECK(chain == NULL && strstr(qg_last_error(), "add"), "chain NULL: %s", qg_last_error());

    qg_tape_reset(NULL);
    qg_tensor *all[] = {a, b, d, i, tgt, m, b3, c3, tgt_ok};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) qg_tensor_free(all[k]);
    return test_summary("errors");
}
