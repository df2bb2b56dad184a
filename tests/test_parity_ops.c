/* PyTorch parity of the autograd ops: every case of tests/fixtures/autograd_ops.safetensors
 * (written by tools/gen_fixtures.py with PyTorch 1.13) is run with qgrad's ops, then
 * qg_backward(out, gout), and the output and each input gradient are compared with
 * PyTorch's.
 *
 * usage: test_parity_ops tests/fixtures/autograd_ops.safetensors
 *
 * Every tensor is judged by the rule of tests/parity.h: its float32 distance from the
 * fixture's float64 reference, against PyTorch's own float32 distance from it. Integer
 * outputs (indices) must match exactly; <case>_f64 cases are compared with PyTorch's
 * float64 results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity.h"

#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
#define DIMS(...) (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__}

CASE(add, qg_add(in[0], in[1]))
CASE(sub, qg_sub(in[0], in[1]))
CASE(mul, qg_mul(in[0], in[1]))
CASE(div, qg_div(in[0], in[1]))
CASE(mul_noncontig, qg_mul(qg_transpose(in[0], 0, 1), in[1]))
CASE(mul_self, qg_add(qg_mul(in[0], in[0]), in[0]))
CASE(add_scalar, qg_add_scalar(in[0], 1.5))
CASE(sub_scalar, qg_sub_scalar(in[0], 0.75))
CASE(mul_scalar, qg_mul_scalar(in[0], -2.0))
CASE(div_scalar, qg_div_scalar(in[0], 3.0))
CASE(pow_2_5, qg_pow_scalar(in[0], 2.5))
CASE(pow_m1_5, qg_pow_scalar(in[0], -1.5))
CASE(neg, qg_neg(in[0]))
CASE(exp, qg_exp(in[0]))
CASE(log, qg_log(in[0]))
CASE(sqrt, qg_sqrt(in[0]))
CASE(rsqrt, qg_rsqrt(in[0]))
CASE(abs, qg_abs(in[0]))
CASE(tanh, qg_tanh(in[0]))
CASE(sigmoid, qg_sigmoid(in[0]))
CASE(relu, qg_relu(in[0]))
CASE(clamp, qg_clamp(in[0], -0.5, 0.5))
CASE(hardtanh, qg_hardtanh(in[0], -0.8, 1.2))
CASE(relu6, qg_relu6(in[0]))
CASE(maximum, qg_maximum(in[0], in[1]))
CASE(minimum, qg_minimum(in[0], in[1]))
CASE(where, qg_where(in[0], in[1], in[2]))
CASE(matmul, qg_matmul(in[0], in[1]))
CASE(matmul_t, qg_matmul(qg_transpose(in[0], 0, 1), qg_transpose(in[1], 0, 1)))
CASE(linear, qg_linear(in[0], in[1], in[2]))
CASE(linear_nobias, qg_linear(in[0], in[1], NULL))
CASE(sum_dims, qg_sum(in[0], DIMS(0, 2), false))
CASE(sum_keepdim, qg_sum(in[0], DIMS(1), true))
CASE(sum_all, qg_sum(in[0], 0, NULL, false))
CASE(mean_keepdim, qg_mean(in[0], DIMS(1), true))
CASE(mean_dims, qg_mean(in[0], DIMS(0, 2), false))
CASE(mean_all, qg_mean(in[0], 0, NULL, false))
CASE(var_dim_unbiased, qg_var(in[0], DIMS(1), true, false))
CASE(var_dim_biased, qg_var(in[0], DIMS(0), false, false))
CASE(var_keepdim, qg_var(in[0], DIMS(0, 2), true, true))
CASE(var_all_unbiased, qg_var(in[0], 0, NULL, true, false))
CASE(var_all_biased, qg_var(in[0], 0, NULL, false, false))
CASE(max_dim, qg_max(in[0], 1, false, aux))
CASE(max_keepdim, qg_max(in[0], 0, true, aux))
CASE(argmax, qg_argmax(in[0], 1, false))
CASE(softmax, qg_softmax(in[0], -1))
CASE(softmax_dim0, qg_softmax(in[0], 0))
CASE(softmax_dim1, qg_softmax(in[0], 1))
CASE(log_softmax, qg_log_softmax(in[0], 1))
CASE(cross_entropy_mean, qg_cross_entropy(in[0], in[1], MEAN))
CASE(cross_entropy_sum, qg_cross_entropy(in[0], in[1], SUM))
CASE(cross_entropy_ls, qg_cross_entropy_label_smoothing(in[0], in[1], MEAN, 0.1))
CASE(cross_entropy_ls_sum, qg_cross_entropy_label_smoothing(in[0], in[1], SUM, 0.3))
CASE(cross_entropy_ls_none, qg_cross_entropy_label_smoothing(in[0], in[1], NONE, 0.05))
CASE(cross_entropy_probs_none_ls, qg_cross_entropy_label_smoothing(in[0], in[1], NONE, 0.2))
CASE(cross_entropy_none, qg_cross_entropy(in[0], in[1], NONE))
CASE(nll_loss_mean, qg_nll_loss(in[0], in[1], MEAN))
CASE(nll_loss_sum, qg_nll_loss(in[0], in[1], SUM))
CASE(mse_loss_mean, qg_mse_loss(in[0], in[1], MEAN))
CASE(mse_loss_sum, qg_mse_loss(in[0], in[1], SUM))
CASE(cat, qg_cat(3, in, 1))
CASE(cat_dim0, qg_cat(2, in, 0))
CASE(stack, qg_stack(3, in, 0))
CASE(stack_dim1, qg_stack(2, in, 1))
CASE(transpose, qg_mul(qg_transpose(in[0], 0, 1), in[1]))
CASE(permute, qg_mul(qg_permute(in[0], (int[]){2, 0, 1}), in[1]))
CASE(narrow, qg_mul(qg_narrow(in[0], 0, 1, 3), in[1]))
CASE(slice, qg_mul(qg_slice(in[0], 1, 1, 5, 2), in[1]))
CASE(select, qg_mul(qg_select(in[0], 1, 2), in[1]))
CASE(expand, qg_mul(qg_expand(in[0], SHAPE(2, -1, 4)), in[1]))
CASE(view, qg_mul(qg_view(in[0], SHAPE(3, 4)), in[1]))
CASE(reshape_noncontig, qg_mul(qg_reshape(qg_transpose(in[0], 0, 1), SHAPE(2, 6)), in[1]))
CASE(squeeze, qg_mul(qg_squeeze(in[0], 1), in[1]))
CASE(unsqueeze, qg_add(qg_unsqueeze(in[0], 1), in[1]))
CASE(flatten, qg_mul(qg_flatten(in[0], 1, -1), in[1]))
CASE(flatten_noncontig, qg_mul(qg_flatten(qg_transpose(in[0], 0, 2), 0, 1), in[1]))
CASE(contiguous, qg_mul(qg_contiguous(qg_transpose(in[0], 0, 1)), in[1]))
CASE(transpose_sum, qg_sum(qg_transpose(in[0], 0, 2), DIMS(1), false))
CASE(to_double, qg_mul(qg_to_dtype(in[0], QG_F64), in[1]))
CASE(chain_mlp, qg_cross_entropy(qg_linear(qg_relu(qg_linear(in[0], in[1], in[2])), in[3], in[4]), in[5], MEAN))

static op_case cases[] = {
    {"add_bcast", case_add, 0},
    {"add_bcast2", case_add, 0},
    {"sub_bcast", case_sub, 0},
    {"mul_bcast", case_mul, 0},
    {"div_bcast", case_div, 0},
    {"mul_noncontig", case_mul_noncontig, 0},
    {"mul_self", case_mul_self, 0},
    {"add_scalar", case_add_scalar, 0},
    {"sub_scalar", case_sub_scalar, 0},
    {"mul_scalar", case_mul_scalar, 0},
    {"div_scalar", case_div_scalar, 0},
    {"pow_2_5", case_pow_2_5, 0},
    {"pow_m1_5", case_pow_m1_5, 0},
    {"neg", case_neg, 0},
    {"exp", case_exp, 0},
    {"log", case_log, 0},
    {"sqrt", case_sqrt, 0},
    {"rsqrt", case_rsqrt, 0},
    {"abs", case_abs, 0},
    {"tanh", case_tanh, 0},
    {"sigmoid", case_sigmoid, 0},
    {"relu", case_relu, 0},
    {"clamp", case_clamp, 0},
    {"hardtanh", case_hardtanh, 0},
    {"relu6", case_relu6, 0},
    {"maximum", case_maximum, 0},
    {"minimum", case_minimum, 0},
    {"where", case_where, 0},
    {"matmul", case_matmul, 0},
    {"matmul_batched", case_matmul, 0},
    {"matmul_bcast2d", case_matmul, 0},
    {"matmul_t", case_matmul_t, 0},
    {"linear", case_linear, 0},
    {"linear_nobias", case_linear_nobias, 0},
    {"linear_3d", case_linear, 0},
    {"sum_dims", case_sum_dims, 0},
    {"sum_keepdim", case_sum_keepdim, 0},
    {"sum_all", case_sum_all, 0},
    {"mean_keepdim", case_mean_keepdim, 0},
    {"mean_dims", case_mean_dims, 0},
    {"mean_all", case_mean_all, 0},
    {"var_dim_unbiased", case_var_dim_unbiased, 0},
    {"var_dim_biased", case_var_dim_biased, 0},
    {"var_keepdim", case_var_keepdim, 0},
    {"var_all_unbiased", case_var_all_unbiased, 0},
    {"var_all_biased", case_var_all_biased, 0},
    {"max_dim", case_max_dim, 0},
    {"max_keepdim", case_max_keepdim, 0},
    {"argmax", case_argmax, 0},
    {"softmax", case_softmax, 0},
    {"softmax_dim0", case_softmax_dim0, 0},
    {"softmax_large", case_softmax_dim1, 0},
    {"log_softmax", case_log_softmax, 0},
    {"log_softmax_large", case_log_softmax, 0},
    {"log_softmax_3d", case_log_softmax, 0},
    {"cross_entropy_mean", case_cross_entropy_mean, 0},
    {"cross_entropy_sum", case_cross_entropy_sum, 0},
    {"cross_entropy_none", case_cross_entropy_none, 0},
    {"cross_entropy_large", case_cross_entropy_mean, 0},
    {"cross_entropy_probs", case_cross_entropy_mean, 0},
    {"cross_entropy_probs_sum", case_cross_entropy_sum, 0},
    {"cross_entropy_probs_none_ls", case_cross_entropy_probs_none_ls, 0},
    {"cross_entropy_ls", case_cross_entropy_ls, 0},
    {"cross_entropy_ls_sum", case_cross_entropy_ls_sum, 0},
    {"cross_entropy_ls_none", case_cross_entropy_ls_none, 0},
    {"nll_loss_mean", case_nll_loss_mean, 0},
    {"nll_loss_sum", case_nll_loss_sum, 0},
    {"mse_loss_mean", case_mse_loss_mean, 0},
    {"mse_loss_sum", case_mse_loss_sum, 0},
    {"cat", case_cat, 0},
    {"cat_dim0", case_cat_dim0, 0},
    {"stack", case_stack, 0},
    {"stack_dim1", case_stack_dim1, 0},
    {"transpose", case_transpose, 0},
    {"permute", case_permute, 0},
    {"narrow", case_narrow, 0},
    {"slice", case_slice, 0},
    {"select", case_select, 0},
    {"expand", case_expand, 0},
    {"view", case_view, 0},
    {"reshape_noncontig", case_reshape_noncontig, 0},
    {"squeeze", case_squeeze, 0},
    {"unsqueeze", case_unsqueeze, 0},
    {"flatten", case_flatten, 0},
    {"flatten_noncontig", case_flatten_noncontig, 0},
    {"contiguous", case_contiguous, 0},
    {"transpose_sum", case_transpose_sum, 0},
    {"to_double", case_to_double, 0},
    {"chain_mlp", case_chain_mlp, 0},
};

int main(int argc, char **argv) {
    qg_tensor_dict *d = parity_run(argc, argv, cases, (int)(sizeof cases / sizeof *cases));
    qg_tensor_dict_free(d);
    parity_report();
    printf("%d passed, %d failed\n", parity.passed, parity.failed);
    return parity.failed || !d ? 1 : 0;
}
