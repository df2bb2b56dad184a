/* The autograd ops that tests/test_gradcheck.c (float64 gradient checks) and
 * tests/test_parity_ops.c (PyTorch parity) run, each written once:
 * X(id, expr) defines op_<id>(x, aux), computing expr from the inputs x[0..] (aux, where
 * not NULL, receives an extra output: max's indices). A test's case table names the op
 * by op_<id> and adds what it needs (shapes and domains; fixture case names). The
 * gradient checks draw only float inputs, so their integer targets and mask are fixed
 * tensors, ops_target and ops_mask, which test_gradcheck.c creates. */
#ifndef QG_TEST_OPS_TABLE_H
#define QG_TEST_OPS_TABLE_H
#include "qgrad.h"

/* a shape or dims list as the ops take it: the count, then the array */
#define OPS_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
#define OPS_DIMS(...) (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__}
#define OPS_MEAN QG_REDUCTION_MEAN
#define OPS_SUM QG_REDUCTION_SUM
#define OPS_NONE QG_REDUCTION_NONE

static qg_tensor *ops_target __attribute__((unused)), *ops_mask __attribute__((unused));

/* An intermediate with three consumers (two unary ops and a view): the first backward
 * to reach its gradient buffer finds it fresh and stores, the others add. */
__attribute__((unused)) static qg_tensor *ops_shared(qg_tensor *x) {
    qg_tensor *t = qg_mul_scalar(x, 1.3);
    if (!t) return NULL;
    return qg_add(qg_add(qg_tanh(t), qg_relu(t)), qg_reshape(qg_flatten(t, 0, -1), t->ndim, t->shape));
}

#define QG_TEST_OPS(X)                                                                                     \
    /* elementwise */                                                                                      \
    X(add, qg_add(x[0], x[1]))                                                                             \
    X(sub, qg_sub(x[0], x[1]))                                                                             \
    X(mul, qg_mul(x[0], x[1]))                                                                             \
    X(div, qg_div(x[0], x[1]))                                                                             \
    X(mul_noncontig, qg_mul(qg_transpose(x[0], 0, 1), x[1]))                                               \
    X(mul_self, qg_add(qg_mul(x[0], x[0]), x[0]))                                                          \
    X(shared, ops_shared(x[0]))                                                                            \
    X(add_scalar, qg_add_scalar(x[0], 1.5))                                                                \
    X(sub_scalar, qg_sub_scalar(x[0], 0.75))                                                               \
    X(mul_scalar, qg_mul_scalar(x[0], -2.0))                                                               \
    X(div_scalar, qg_div_scalar(x[0], 3.0))                                                                \
    X(scalar_chain, qg_div_scalar(qg_sub_scalar(qg_mul_scalar(qg_add_scalar(x[0], 0.3), -1.7), 2.0), 0.9)) \
    X(pow_2_5, qg_pow_scalar(x[0], 2.5))                                                                   \
    X(pow_m1_5, qg_pow_scalar(x[0], -1.5))                                                                 \
    X(pow_2, qg_pow_scalar(x[0], 2.0))                                                                     \
    X(pow_3, qg_pow_scalar(x[0], 3.0))                                                                     \
    X(neg, qg_neg(x[0]))                                                                                   \
    X(exp, qg_exp(x[0]))                                                                                   \
    X(log, qg_log(x[0]))                                                                                   \
    X(sqrt, qg_sqrt(x[0]))                                                                                 \
    X(rsqrt, qg_rsqrt(x[0]))                                                                               \
    X(abs, qg_abs(x[0]))                                                                                   \
    X(tanh, qg_tanh(x[0]))                                                                                 \
    X(sigmoid, qg_sigmoid(x[0]))                                                                           \
    X(relu, qg_relu(x[0]))                                                                                 \
    X(clamp, qg_clamp(x[0], -0.5, 0.5))                                                                    \
    X(clamp_asym, qg_clamp(x[0], -0.5, 0.7))                                                               \
    X(hardtanh, qg_hardtanh(x[0], -0.8, 1.2))                                                              \
    X(hardtanh_narrow, qg_hardtanh(x[0], -0.6, 0.4))                                                       \
    X(relu6, qg_relu6(x[0]))                                                                               \
    X(relu6_x5, qg_relu6(qg_mul_scalar(x[0], 5.0)))                                                        \
    X(maximum, qg_maximum(x[0], x[1]))                                                                     \
    X(minimum, qg_minimum(x[0], x[1]))                                                                     \
    X(where, qg_where(x[0], x[1], x[2]))                                                                   \
    X(where_mask, qg_where(ops_mask, x[0], x[1]))                                                          \
    /* matmul, linear */                                                                                   \
    X(matmul, qg_matmul(x[0], x[1]))                                                                       \
    X(matmul_t, qg_matmul(qg_transpose(x[0], 0, 1), qg_transpose(x[1], 0, 1)))                             \
    X(linear, qg_linear(x[0], x[1], x[2]))                                                                 \
    X(linear_nobias, qg_linear(x[0], x[1], NULL))                                                          \
    /* reductions */                                                                                       \
    X(sum_dims, qg_sum(x[0], OPS_DIMS(0, 2), false))                                                       \
    X(sum_keepdim, qg_sum(x[0], OPS_DIMS(1), true))                                                        \
    X(sum_last_keepdim, qg_sum(x[0], OPS_DIMS(-1), true))                                                  \
    X(sum_all, qg_sum(x[0], 0, NULL, false))                                                               \
    X(mean_keepdim, qg_mean(x[0], OPS_DIMS(1), true))                                                      \
    X(mean_dims, qg_mean(x[0], OPS_DIMS(0, 2), false))                                                     \
    X(mean_all, qg_mean(x[0], 0, NULL, false))                                                             \
    X(var_dim_unbiased, qg_var(x[0], OPS_DIMS(1), true, false))                                            \
    X(var_dim_biased, qg_var(x[0], OPS_DIMS(0), false, false))                                             \
    X(var_keepdim, qg_var(x[0], OPS_DIMS(0, 2), true, true))                                               \
    X(var_0_keepdim, qg_var(x[0], OPS_DIMS(0), true, true))                                                \
    X(var_all_unbiased, qg_var(x[0], 0, NULL, true, false))                                                \
    X(var_all_biased, qg_var(x[0], 0, NULL, false, false))                                                 \
    X(max_dim, qg_max(x[0], 1, false, aux))                                                                \
    X(max_keepdim, qg_max(x[0], 0, true, aux))                                                             \
    X(argmax, qg_argmax(x[0], 1, false))                                                                   \
    /* softmax family */                                                                                   \
    X(softmax, qg_softmax(x[0], -1))                                                                       \
    X(softmax_dim0, qg_softmax(x[0], 0))                                                                   \
    X(softmax_dim1, qg_softmax(x[0], 1))                                                                   \
    X(log_softmax, qg_log_softmax(x[0], 1))                                                                \
    X(log_softmax_last, qg_log_softmax(x[0], -1))                                                          \
    X(log_softmax_dim0, qg_log_softmax(x[0], 0))                                                           \
    /* losses (the _t ones against the fixed ops_target) */                                                \
    X(cross_entropy_mean, qg_cross_entropy(x[0], x[1], OPS_MEAN))                                          \
    X(cross_entropy_sum, qg_cross_entropy(x[0], x[1], OPS_SUM))                                            \
    X(cross_entropy_none, qg_cross_entropy(x[0], x[1], OPS_NONE))                                          \
    X(cross_entropy_ls, qg_cross_entropy_label_smoothing(x[0], x[1], OPS_MEAN, 0.1))                       \
    X(cross_entropy_ls_sum, qg_cross_entropy_label_smoothing(x[0], x[1], OPS_SUM, 0.3))                    \
    X(cross_entropy_ls_none, qg_cross_entropy_label_smoothing(x[0], x[1], OPS_NONE, 0.05))                 \
    X(cross_entropy_probs_none_ls, qg_cross_entropy_label_smoothing(x[0], x[1], OPS_NONE, 0.2))            \
    X(cross_entropy_probs_none_ls01, qg_cross_entropy_label_smoothing(x[0], x[1], OPS_NONE, 0.1))          \
    X(cross_entropy_mean_t, qg_cross_entropy(x[0], ops_target, OPS_MEAN))                                  \
    X(cross_entropy_sum_t, qg_cross_entropy(x[0], ops_target, OPS_SUM))                                    \
    X(cross_entropy_ls_t, qg_cross_entropy_label_smoothing(x[0], ops_target, OPS_MEAN, 0.15))              \
    X(nll_loss_mean, qg_nll_loss(x[0], x[1], OPS_MEAN))                                                    \
    X(nll_loss_sum, qg_nll_loss(x[0], x[1], OPS_SUM))                                                      \
    X(nll_loss_mean_t, qg_nll_loss(x[0], ops_target, OPS_MEAN))                                            \
    X(nll_loss_none_t, qg_nll_loss(x[0], ops_target, OPS_NONE))                                            \
    X(mse_loss_mean, qg_mse_loss(x[0], x[1], OPS_MEAN))                                                    \
    X(mse_loss_sum, qg_mse_loss(x[0], x[1], OPS_SUM))                                                      \
    X(mse_loss_none, qg_mse_loss(x[0], x[1], OPS_NONE))                                                    \
    /* joins */                                                                                            \
    X(cat, qg_cat(3, (qg_tensor *[]){x[0], x[1], x[2]}, 1))                                                \
    X(cat_dim0, qg_cat(2, (qg_tensor *[]){x[0], x[1]}, 0))                                                 \
    X(cat_dim1, qg_cat(2, (qg_tensor *[]){x[0], x[1]}, 1))                                                 \
    X(cat_aba, qg_cat(3, (qg_tensor *[]){x[0], x[1], x[0]}, 0))                                            \
    X(stack, qg_stack(3, (qg_tensor *[]){x[0], x[1], x[2]}, 0))                                            \
    X(stack_dim1, qg_stack(2, (qg_tensor *[]){x[0], x[1]}, 1))                                             \
    /* views alone (the gradient checks) */                                                                \
    X(reshape, qg_reshape(x[0], OPS_SHAPE(4, -1)))                                                         \
    X(view_flat, qg_view(qg_contiguous(x[0]), OPS_SHAPE(-1)))                                              \
    X(transpose_02, qg_transpose(x[0], 0, 2))                                                              \
    X(permute_201, qg_permute(x[0], (const int[]){2, 0, 1}))                                               \
    X(narrow_1, qg_narrow(x[0], 1, 1, 2))                                                                  \
    X(slice_2, qg_slice(x[0], 2, 0, 4, 3))                                                                 \
    X(select_last, qg_select(x[0], 1, -1))                                                                 \
    X(unsqueeze_expand, qg_expand(qg_unsqueeze(x[0], 1), OPS_SHAPE(-1, 3, -1, -1)))                        \
    X(narrow_squeeze, qg_squeeze(qg_narrow(x[0], 1, 2, 1), 1))                                             \
    X(flatten_01, qg_flatten(x[0], 0, 1))                                                                  \
    X(contiguous_x1, qg_mul_scalar(qg_contiguous(x[0]), 1.0))                                              \
    /* views, each followed by an op so the gradient flows back through a strided tensor */                \
    X(transpose, qg_mul(qg_transpose(x[0], 0, 1), x[1]))                                                   \
    X(permute, qg_mul(qg_permute(x[0], (int[]){2, 0, 1}), x[1]))                                           \
    X(narrow, qg_mul(qg_narrow(x[0], 0, 1, 3), x[1]))                                                      \
    X(slice, qg_mul(qg_slice(x[0], 1, 1, 5, 2), x[1]))                                                     \
    X(select, qg_mul(qg_select(x[0], 1, 2), x[1]))                                                         \
    X(expand, qg_mul(qg_expand(x[0], OPS_SHAPE(2, -1, 4)), x[1]))                                          \
    X(view, qg_mul(qg_view(x[0], OPS_SHAPE(3, 4)), x[1]))                                                  \
    X(reshape_noncontig, qg_mul(qg_reshape(qg_transpose(x[0], 0, 1), OPS_SHAPE(2, 6)), x[1]))              \
    X(squeeze, qg_mul(qg_squeeze(x[0], 1), x[1]))                                                          \
    X(unsqueeze, qg_add(qg_unsqueeze(x[0], 1), x[1]))                                                      \
    X(flatten, qg_mul(qg_flatten(x[0], 1, -1), x[1]))                                                      \
    X(flatten_noncontig, qg_mul(qg_flatten(qg_transpose(x[0], 0, 2), 0, 1), x[1]))                         \
    X(contiguous, qg_mul(qg_contiguous(qg_transpose(x[0], 0, 1)), x[1]))                                   \
    X(transpose_sum, qg_sum(qg_transpose(x[0], 0, 2), OPS_DIMS(1), false))                                 \
    /* casts */                                                                                            \
    X(to_double, qg_mul(qg_to_dtype(x[0], QG_F64), x[1]))                                                  \
    /* small MLPs: linear -> relu -> linear -> cross_entropy */                                            \
    X(chain_mlp, qg_cross_entropy(qg_linear(qg_relu(qg_linear(x[0], x[1], x[2])), x[3], x[4]), x[5], OPS_MEAN)) \
    X(chain_mlp_t, qg_cross_entropy(qg_linear(qg_relu(qg_linear(x[0], x[1], x[2])), x[3], NULL), ops_target, OPS_MEAN))

/* Each test uses some of the ops: the others are unused, not an error. */
#define OPS_DEFINE(id, expr)                                                                   \
    __attribute__((unused)) static qg_tensor *op_##id(qg_tensor *const *x, qg_tensor **aux) { \
        (void)aux;                                                                             \
        return (expr);                                                                         \
    }
QG_TEST_OPS(OPS_DEFINE)
#undef OPS_DEFINE
#endif
