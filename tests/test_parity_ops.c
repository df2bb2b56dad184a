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
 * float64 results. The ops are those of tests/ops_table.h (shared with the gradient
 * checks); the table below maps each fixture case to one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_table.h"
#include "parity.h"

static op_case cases[] = {
    {"add_bcast", op_add, 0},
    {"add_bcast2", op_add, 0},
    {"sub_bcast", op_sub, 0},
    {"mul_bcast", op_mul, 0},
    {"div_bcast", op_div, 0},
    {"mul_noncontig", op_mul_noncontig, 0},
    {"mul_self", op_mul_self, 0},
    {"add_scalar", op_add_scalar, 0},
    {"sub_scalar", op_sub_scalar, 0},
    {"mul_scalar", op_mul_scalar, 0},
    {"div_scalar", op_div_scalar, 0},
    {"pow_2_5", op_pow_2_5, 0},
    {"pow_m1_5", op_pow_m1_5, 0},
    {"neg", op_neg, 0},
    {"exp", op_exp, 0},
    {"log", op_log, 0},
    {"sqrt", op_sqrt, 0},
    {"rsqrt", op_rsqrt, 0},
    {"abs", op_abs, 0},
    {"tanh", op_tanh, 0},
    {"sigmoid", op_sigmoid, 0},
    {"relu", op_relu, 0},
    {"clamp", op_clamp, 0},
    {"hardtanh", op_hardtanh, 0},
    {"relu6", op_relu6, 0},
    {"maximum", op_maximum, 0},
    {"minimum", op_minimum, 0},
    {"where", op_where, 0},
    {"matmul", op_matmul, 0},
    {"matmul_batched", op_matmul, 0},
    {"matmul_bcast2d", op_matmul, 0},
    {"matmul_t", op_matmul_t, 0},
    {"linear", op_linear, 0},
    {"linear_nobias", op_linear_nobias, 0},
    {"linear_3d", op_linear, 0},
    {"sum_dims", op_sum_dims, 0},
    {"sum_keepdim", op_sum_keepdim, 0},
    {"sum_all", op_sum_all, 0},
    {"mean_keepdim", op_mean_keepdim, 0},
    {"mean_dims", op_mean_dims, 0},
    {"mean_all", op_mean_all, 0},
    {"var_dim_unbiased", op_var_dim_unbiased, 0},
    {"var_dim_biased", op_var_dim_biased, 0},
    {"var_keepdim", op_var_keepdim, 0},
    {"var_all_unbiased", op_var_all_unbiased, 0},
    {"var_all_biased", op_var_all_biased, 0},
    {"max_dim", op_max_dim, 0},
    {"max_keepdim", op_max_keepdim, 0},
    {"argmax", op_argmax, 0},
    {"softmax", op_softmax, 0},
    {"softmax_dim0", op_softmax_dim0, 0},
    {"softmax_large", op_softmax_dim1, 0},
    {"log_softmax", op_log_softmax, 0},
    {"log_softmax_large", op_log_softmax, 0},
    {"log_softmax_3d", op_log_softmax, 0},
    {"cross_entropy_mean", op_cross_entropy_mean, 0},
    {"cross_entropy_sum", op_cross_entropy_sum, 0},
    {"cross_entropy_none", op_cross_entropy_none, 0},
    {"cross_entropy_large", op_cross_entropy_mean, 0},
    {"cross_entropy_probs", op_cross_entropy_mean, 0},
    {"cross_entropy_probs_sum", op_cross_entropy_sum, 0},
    {"cross_entropy_probs_none_ls", op_cross_entropy_probs_none_ls, 0},
    {"cross_entropy_ls", op_cross_entropy_ls, 0},
    {"cross_entropy_ls_sum", op_cross_entropy_ls_sum, 0},
    {"cross_entropy_ls_none", op_cross_entropy_ls_none, 0},
    {"nll_loss_mean", op_nll_loss_mean, 0},
    {"nll_loss_sum", op_nll_loss_sum, 0},
    {"mse_loss_mean", op_mse_loss_mean, 0},
    {"mse_loss_sum", op_mse_loss_sum, 0},
    {"cat", op_cat, 0},
    {"cat_dim0", op_cat_dim0, 0},
    {"stack", op_stack, 0},
    {"stack_dim1", op_stack_dim1, 0},
    {"transpose", op_transpose, 0},
    {"permute", op_permute, 0},
    {"narrow", op_narrow, 0},
    {"slice", op_slice, 0},
    {"select", op_select, 0},
    {"expand", op_expand, 0},
    {"view", op_view, 0},
    {"reshape_noncontig", op_reshape_noncontig, 0},
    {"squeeze", op_squeeze, 0},
    {"unsqueeze", op_unsqueeze, 0},
    {"flatten", op_flatten, 0},
    {"flatten_noncontig", op_flatten_noncontig, 0},
    {"contiguous", op_contiguous, 0},
    {"transpose_sum", op_transpose_sum, 0},
    {"to_double", op_to_double, 0},
    {"chain_mlp", op_chain_mlp, 0},
};

int main(int argc, char **argv) {
    qg_tensor_dict *d = parity_run(argc, argv, cases, (int)(sizeof cases / sizeof *cases));
    qg_tensor_dict_free(d);
    parity_report();
    printf("%d passed, %d failed\n", parity.passed, parity.failed);
    return parity.failed || !d ? 1 : 0;
}
