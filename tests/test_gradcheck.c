/* Float64 central-difference gradient checks of every differentiable op (the ops of
 * tests/ops_table.h), each on contiguous, transposed, strided (sliced) and expanded
 * inputs (tests/gc_layouts.h), plus broadcast cases. qg_gradcheck's defaults: eps 1e-6,
 * |analytic - numeric| <= 1e-5 + 1e-4 |numeric|. */
#include <string.h>

#include "test_util.h"
#include "gc_layouts.h"
#include "ops_table.h"

static const gc_case cases[] = {
    {"neg", op_neg, 1, {2}, {{3, 4}}, {D_ANY}},
    {"exp", op_exp, 1, {2}, {{3, 4}}, {D_ANY}},
    {"log", op_log, 1, {2}, {{3, 4}}, {D_POS}},
    {"sqrt", op_sqrt, 1, {2}, {{3, 4}}, {D_POS}},
    {"rsqrt", op_rsqrt, 1, {2}, {{3, 4}}, {D_POS}},
    {"abs", op_abs, 1, {2}, {{3, 4}}, {D_ANY}},
    {"tanh", op_tanh, 1, {2}, {{3, 4}}, {D_ANY}},
    {"sigmoid", op_sigmoid, 1, {2}, {{3, 4}}, {D_ANY}},
    {"relu", op_relu, 1, {2}, {{3, 4}}, {D_ANY}},
    {"clamp", op_clamp_asym, 1, {2}, {{3, 4}}, {D_ANY}},
    {"hardtanh", op_hardtanh_narrow, 1, {2}, {{3, 4}}, {D_ANY}},
    {"relu6", op_relu6_x5, 1, {2}, {{3, 4}}, {D_ANY}},
    {"pow 2.5", op_pow_2_5, 1, {2}, {{3, 4}}, {D_POS}},
    {"pow -1.5", op_pow_m1_5, 1, {2}, {{3, 4}}, {D_POS}},
    {"pow 2", op_pow_2, 1, {2}, {{3, 4}}, {D_ANY}},
    {"pow 3", op_pow_3, 1, {2}, {{3, 4}}, {D_ANY}},
    {"scalar ops", op_scalar_chain, 1, {2}, {{3, 4}}, {D_ANY}},
    {"shared intermediate", op_shared, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"add", op_add, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"add bcast", op_add, 2, {3, 2}, {{2, 3, 1}, {1, 4}}, {D_ANY, D_ANY}},
    {"sub bcast", op_sub, 2, {2, 1}, {{3, 4}, {4}}, {D_ANY, D_ANY}},
    {"mul", op_mul, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"mul bcast", op_mul, 2, {2, 3}, {{3, 1}, {2, 1, 4}}, {D_ANY, D_ANY}},
    {"div", op_div, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_POS}},
    {"div bcast", op_div, 2, {2, 2}, {{3, 4}, {1, 4}}, {D_ANY, D_POS}},
    {"maximum", op_maximum, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"maximum bcast", op_maximum, 2, {2, 1}, {{3, 4}, {4}}, {D_ANY, D_ANY}},
    {"minimum", op_minimum, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"where", op_where_mask, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"where bcast", op_where_mask, 2, {2, 1}, {{3, 4}, {4}}, {D_ANY, D_ANY}},
    {"matmul", op_matmul, 2, {2, 2}, {{3, 4}, {4, 5}}, {D_ANY, D_ANY}},
    {"matmul batched", op_matmul, 2, {3, 3}, {{2, 3, 4}, {2, 4, 5}}, {D_ANY, D_ANY}},
    {"matmul bcast batch", op_matmul, 2, {3, 3}, {{2, 3, 4}, {1, 4, 5}}, {D_ANY, D_ANY}},
    {"matmul 3d@2d", op_matmul, 2, {3, 2}, {{2, 3, 4}, {4, 5}}, {D_ANY, D_ANY}},
    {"matmul 2d@3d", op_matmul, 2, {2, 3}, {{3, 4}, {2, 4, 5}}, {D_ANY, D_ANY}},
    {"linear", op_linear, 3, {2, 2, 1}, {{5, 4}, {3, 4}, {3}}, {D_ANY, D_ANY, D_ANY}},
    {"linear 3d", op_linear, 3, {3, 2, 1}, {{2, 5, 4}, {3, 4}, {3}}, {D_ANY, D_ANY, D_ANY}},
    {"linear no bias", op_linear_nobias, 2, {2, 2}, {{5, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"sum all", op_sum_all, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"sum dims 0,2", op_sum_dims, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"sum keepdim", op_sum_last_keepdim, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"mean all", op_mean_all, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"mean keepdim", op_mean_keepdim, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"var unbiased", op_var_dim_unbiased, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"var biased all", op_var_all_biased, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"var keepdim", op_var_0_keepdim, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"max dim", op_max_dim, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"max keepdim", op_max_keepdim, 1, {2}, {{3, 4}}, {D_ANY}},
    {"softmax", op_softmax_dim1, 1, {2}, {{3, 5}}, {D_ANY}},
    {"softmax dim0", op_softmax_dim0, 1, {3}, {{3, 2, 4}}, {D_ANY}},
    {"log_softmax", op_log_softmax_last, 1, {2}, {{3, 5}}, {D_ANY}},
    {"log_softmax dim0", op_log_softmax_dim0, 1, {3}, {{3, 2, 4}}, {D_ANY}},
    {"cross_entropy mean", op_cross_entropy_mean_t, 1, {2}, {{4, 5}}, {D_ANY}},
    {"cross_entropy sum", op_cross_entropy_sum_t, 1, {2}, {{4, 5}}, {D_ANY}},
    {"cross_entropy label_smoothing", op_cross_entropy_ls_t, 1, {2}, {{4, 5}}, {D_ANY}},
    {"cross_entropy probabilities", op_cross_entropy_probs_none_ls01, 2, {2, 2}, {{4, 5}, {4, 5}}, {D_ANY, D_ANY}},
    {"nll_loss mean", op_nll_loss_mean_t, 1, {2}, {{4, 5}}, {D_ANY}},
    {"nll_loss none", op_nll_loss_none_t, 1, {2}, {{4, 5}}, {D_ANY}},
    {"mse_loss mean", op_mse_loss_mean, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"mse_loss sum", op_mse_loss_sum, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"mse_loss none", op_mse_loss_none, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"reshape", op_reshape, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"view", op_view_flat, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"transpose", op_transpose_02, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"permute", op_permute_201, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"narrow", op_narrow_1, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"slice", op_slice_2, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"select", op_select_last, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"expand", op_unsqueeze_expand, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"squeeze", op_narrow_squeeze, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"flatten", op_flatten_01, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"contiguous", op_contiguous_x1, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"cat dim1", op_cat_dim1, 2, {2, 2}, {{3, 4}, {3, 2}}, {D_ANY, D_ANY}},
    {"cat dim0", op_cat_aba, 2, {2, 2}, {{3, 4}, {2, 4}}, {D_ANY, D_ANY}},
    {"stack", op_stack_dim1, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"mlp", op_chain_mlp_t, 4, {2, 2, 1, 2}, {{4, 6}, {5, 6}, {5}, {5, 5}}, {D_ANY, D_ANY, D_ANY, D_ANY}},
};

/* the checker itself must catch a wrong gradient: x * detach(x) has gradient x, not 2x */
static qg_tensor *broken(qg_tensor *const *x, void *ctx) {
    (void)ctx;
    return qg_mul(x[0], qg_detach(x[0]));
}

int main(void) {
    qg_tensor *bx = qg_tensor_full(QG_F64, 1, SHAPE(3), 0.7);
    qg_tensor_set_requires_grad(bx, true);
    CHECK(qg_gradcheck(broken, NULL, 1, &bx, NULL) != QG_OK && strstr(qg_last_error(), "analytic"),
          "gradcheck catches a wrong gradient");
    qg_tensor_free(bx);

    ops_target = qg_tensor_from_data(QG_I64, 1, SHAPE(4), (int64_t[]){1, 0, 4, 2});
    uint8_t m[12] = {1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0};
    ops_mask = qg_tensor_from_data(QG_U8, 2, SHAPE(3, 4), m);
    qg_rng g;
    qg_rng_init(&g, 1234);
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < ncases; i++) {
        bool any2d = false;
        for (int k = 0; k < cases[i].n; k++) any2d |= cases[i].ndim[k] >= 2;
        for (int l = 0; l < L_COUNT; l++) {
            if (l == L_TRANSPOSED && !any2d) continue;
            gc_check_case(&cases[i], l, &g);
        }
    }
    printf("gradcheck: %lld op/layout combinations checked\n", (long long)gc_case_count);
    qg_tensor_free(ops_target), qg_tensor_free(ops_mask);
    return test_summary("gradcheck");
}
