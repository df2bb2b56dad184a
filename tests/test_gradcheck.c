/* Float64 central-difference gradient checks of every differentiable op, each on
 * contiguous inputs, transposed inputs and strided (sliced) inputs, plus broadcast
 * cases. qg_gradcheck's defaults: eps 1e-6, |analytic - numeric| <= 1e-5 + 1e-4 |numeric|. */
#include <string.h>

#include "test_util.h"
#include "gc_layouts.h"

static qg_tensor *target_i64, *mask_u8; /* fixed non-float inputs */

/* ------------------------------------------------------------- ops under test */
#define ONE(name, expr) static qg_tensor *name(qg_tensor *const *x) { return (expr); }
ONE(f_neg, qg_neg(x[0]))
ONE(f_exp, qg_exp(x[0]))
ONE(f_log, qg_log(x[0]))
ONE(f_sqrt, qg_sqrt(x[0]))
ONE(f_rsqrt, qg_rsqrt(x[0]))
ONE(f_abs, qg_abs(x[0]))
ONE(f_tanh, qg_tanh(x[0]))
ONE(f_sigmoid, qg_sigmoid(x[0]))
ONE(f_relu, qg_relu(x[0]))
ONE(f_clamp, qg_clamp(x[0], -0.5, 0.7))
ONE(f_hardtanh, qg_hardtanh(x[0], -0.6, 0.4))
ONE(f_relu6, qg_relu6(qg_mul_scalar(x[0], 5.0)))
ONE(f_pow25, qg_pow_scalar(x[0], 2.5))
ONE(f_powm15, qg_pow_scalar(x[0], -1.5))
ONE(f_pow2, qg_pow_scalar(x[0], 2.0))
ONE(f_pow3, qg_pow_scalar(x[0], 3.0))
ONE(f_scalars, qg_div_scalar(qg_sub_scalar(qg_mul_scalar(qg_add_scalar(x[0], 0.3), -1.7), 2.0), 0.9))
ONE(f_add, qg_add(x[0], x[1]))
ONE(f_sub, qg_sub(x[0], x[1]))
ONE(f_mul, qg_mul(x[0], x[1]))
ONE(f_div, qg_div(x[0], x[1]))
ONE(f_maximum, qg_maximum(x[0], x[1]))
ONE(f_minimum, qg_minimum(x[0], x[1]))
ONE(f_where, qg_where(mask_u8, x[0], x[1]))
ONE(f_matmul, qg_matmul(x[0], x[1]))
ONE(f_linear, qg_linear(x[0], x[1], x[2]))
ONE(f_linear_nb, qg_linear(x[0], x[1], NULL))
ONE(f_sum_all, qg_sum(x[0], 0, NULL, false))
ONE(f_sum_02, qg_sum(x[0], 2, (const int[]){0, 2}, false))
ONE(f_sum_k, qg_sum(x[0], 1, (const int[]){-1}, true))
ONE(f_mean_all, qg_mean(x[0], 0, NULL, false))
ONE(f_mean_1k, qg_mean(x[0], 1, (const int[]){1}, true))
ONE(f_var_1, qg_var(x[0], 1, (const int[]){1}, true, false))
ONE(f_var_all, qg_var(x[0], 0, NULL, false, false))
ONE(f_var_0k, qg_var(x[0], 1, (const int[]){0}, true, true))
ONE(f_max_1, qg_max(x[0], 1, false, NULL))
ONE(f_max_0k, qg_max(x[0], 0, true, NULL))
ONE(f_softmax_1, qg_softmax(x[0], 1))
ONE(f_softmax_0, qg_softmax(x[0], 0))
ONE(f_lsm_last, qg_log_softmax(x[0], -1))
ONE(f_lsm_0, qg_log_softmax(x[0], 0))
ONE(f_ce_mean, qg_cross_entropy(x[0], target_i64, QG_REDUCTION_MEAN))
ONE(f_ce_sum, qg_cross_entropy(x[0], target_i64, QG_REDUCTION_SUM))
ONE(f_ce_ls, qg_cross_entropy_label_smoothing(x[0], target_i64, QG_REDUCTION_MEAN, 0.15))
ONE(f_ce_probs, qg_cross_entropy_label_smoothing(x[0], x[1], QG_REDUCTION_NONE, 0.1))
ONE(f_nll_mean, qg_nll_loss(x[0], target_i64, QG_REDUCTION_MEAN))
ONE(f_nll_none, qg_nll_loss(x[0], target_i64, QG_REDUCTION_NONE))
ONE(f_mse_mean, qg_mse_loss(x[0], x[1], QG_REDUCTION_MEAN))
ONE(f_mse_sum, qg_mse_loss(x[0], x[1], QG_REDUCTION_SUM))
ONE(f_mse_none, qg_mse_loss(x[0], x[1], QG_REDUCTION_NONE))
ONE(f_reshape, qg_reshape(x[0], 2, SHAPE(4, -1)))
ONE(f_view, qg_view(qg_contiguous(x[0]), 1, SHAPE(-1)))
ONE(f_transpose, qg_transpose(x[0], 0, 2))
ONE(f_permute, qg_permute(x[0], (const int[]){2, 0, 1}))
ONE(f_narrow, qg_narrow(x[0], 1, 1, 2))
ONE(f_slice, qg_slice(x[0], 2, 0, 4, 3))
ONE(f_select, qg_select(x[0], 1, -1))
ONE(f_expand, qg_expand(qg_unsqueeze(x[0], 1), 4, SHAPE(-1, 3, -1, -1)))
ONE(f_squeeze, qg_squeeze(qg_narrow(x[0], 1, 2, 1), 1))
ONE(f_flatten, qg_flatten(x[0], 0, 1))
ONE(f_contig, qg_mul_scalar(qg_contiguous(x[0]), 1.0))
ONE(f_cat1, qg_cat(2, (qg_tensor *[]){x[0], x[1]}, 1))
ONE(f_cat0, qg_cat(3, (qg_tensor *[]){x[0], x[1], x[0]}, 0))
ONE(f_stack, qg_stack(2, (qg_tensor *[]){x[0], x[1]}, 1))
/* a small MLP through several ops at once */
ONE(f_mlp, qg_cross_entropy(qg_linear(qg_relu(qg_linear(x[0], x[1], x[2])), x[3], NULL), target_i64, QG_REDUCTION_MEAN))

static const gc_case cases[] = {
    {"neg", f_neg, 1, {2}, {{3, 4}}, {D_ANY}},
    {"exp", f_exp, 1, {2}, {{3, 4}}, {D_ANY}},
    {"log", f_log, 1, {2}, {{3, 4}}, {D_POS}},
    {"sqrt", f_sqrt, 1, {2}, {{3, 4}}, {D_POS}},
    {"rsqrt", f_rsqrt, 1, {2}, {{3, 4}}, {D_POS}},
    {"abs", f_abs, 1, {2}, {{3, 4}}, {D_ANY}},
    {"tanh", f_tanh, 1, {2}, {{3, 4}}, {D_ANY}},
    {"sigmoid", f_sigmoid, 1, {2}, {{3, 4}}, {D_ANY}},
    {"relu", f_relu, 1, {2}, {{3, 4}}, {D_ANY}},
    {"clamp", f_clamp, 1, {2}, {{3, 4}}, {D_ANY}},
    {"hardtanh", f_hardtanh, 1, {2}, {{3, 4}}, {D_ANY}},
    {"relu6", f_relu6, 1, {2}, {{3, 4}}, {D_ANY}},
    {"pow 2.5", f_pow25, 1, {2}, {{3, 4}}, {D_POS}},
    {"pow -1.5", f_powm15, 1, {2}, {{3, 4}}, {D_POS}},
    {"pow 2", f_pow2, 1, {2}, {{3, 4}}, {D_ANY}},
    {"pow 3", f_pow3, 1, {2}, {{3, 4}}, {D_ANY}},
    {"scalar ops", f_scalars, 1, {2}, {{3, 4}}, {D_ANY}},
    {"add", f_add, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"add bcast", f_add, 2, {3, 2}, {{2, 3, 1}, {1, 4}}, {D_ANY, D_ANY}},
    {"sub bcast", f_sub, 2, {2, 1}, {{3, 4}, {4}}, {D_ANY, D_ANY}},
    {"mul", f_mul, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"mul bcast", f_mul, 2, {2, 3}, {{3, 1}, {2, 1, 4}}, {D_ANY, D_ANY}},
    {"div", f_div, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_POS}},
    {"div bcast", f_div, 2, {2, 2}, {{3, 4}, {1, 4}}, {D_ANY, D_POS}},
    {"maximum", f_maximum, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"maximum bcast", f_maximum, 2, {2, 1}, {{3, 4}, {4}}, {D_ANY, D_ANY}},
    {"minimum", f_minimum, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"where", f_where, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"where bcast", f_where, 2, {2, 1}, {{3, 4}, {4}}, {D_ANY, D_ANY}},
    {"matmul", f_matmul, 2, {2, 2}, {{3, 4}, {4, 5}}, {D_ANY, D_ANY}},
    {"matmul batched", f_matmul, 2, {3, 3}, {{2, 3, 4}, {2, 4, 5}}, {D_ANY, D_ANY}},
    {"matmul bcast batch", f_matmul, 2, {3, 3}, {{2, 3, 4}, {1, 4, 5}}, {D_ANY, D_ANY}},
    {"matmul 3d@2d", f_matmul, 2, {3, 2}, {{2, 3, 4}, {4, 5}}, {D_ANY, D_ANY}},
    {"matmul 2d@3d", f_matmul, 2, {2, 3}, {{3, 4}, {2, 4, 5}}, {D_ANY, D_ANY}},
    {"linear", f_linear, 3, {2, 2, 1}, {{5, 4}, {3, 4}, {3}}, {D_ANY, D_ANY, D_ANY}},
    {"linear 3d", f_linear, 3, {3, 2, 1}, {{2, 5, 4}, {3, 4}, {3}}, {D_ANY, D_ANY, D_ANY}},
    {"linear no bias", f_linear_nb, 2, {2, 2}, {{5, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"sum all", f_sum_all, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"sum dims 0,2", f_sum_02, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"sum keepdim", f_sum_k, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"mean all", f_mean_all, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"mean keepdim", f_mean_1k, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"var unbiased", f_var_1, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"var biased all", f_var_all, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"var keepdim", f_var_0k, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"max dim", f_max_1, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"max keepdim", f_max_0k, 1, {2}, {{3, 4}}, {D_ANY}},
    {"softmax", f_softmax_1, 1, {2}, {{3, 5}}, {D_ANY}},
    {"softmax dim0", f_softmax_0, 1, {3}, {{3, 2, 4}}, {D_ANY}},
    {"log_softmax", f_lsm_last, 1, {2}, {{3, 5}}, {D_ANY}},
    {"log_softmax dim0", f_lsm_0, 1, {3}, {{3, 2, 4}}, {D_ANY}},
    {"cross_entropy mean", f_ce_mean, 1, {2}, {{4, 5}}, {D_ANY}},
    {"cross_entropy sum", f_ce_sum, 1, {2}, {{4, 5}}, {D_ANY}},
    {"cross_entropy label_smoothing", f_ce_ls, 1, {2}, {{4, 5}}, {D_ANY}},
    {"cross_entropy probabilities", f_ce_probs, 2, {2, 2}, {{4, 5}, {4, 5}}, {D_ANY, D_ANY}},
    {"nll_loss mean", f_nll_mean, 1, {2}, {{4, 5}}, {D_ANY}},
    {"nll_loss none", f_nll_none, 1, {2}, {{4, 5}}, {D_ANY}},
    {"mse_loss mean", f_mse_mean, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"mse_loss sum", f_mse_sum, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"mse_loss none", f_mse_none, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"reshape", f_reshape, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"view", f_view, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"transpose", f_transpose, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"permute", f_permute, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"narrow", f_narrow, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"slice", f_slice, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"select", f_select, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"expand", f_expand, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"squeeze", f_squeeze, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"flatten", f_flatten, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"contiguous", f_contig, 1, {3}, {{2, 3, 4}}, {D_ANY}},
    {"cat dim1", f_cat1, 2, {2, 2}, {{3, 4}, {3, 2}}, {D_ANY, D_ANY}},
    {"cat dim0", f_cat0, 2, {2, 2}, {{3, 4}, {2, 4}}, {D_ANY, D_ANY}},
    {"stack", f_stack, 2, {2, 2}, {{3, 4}, {3, 4}}, {D_ANY, D_ANY}},
    {"mlp", f_mlp, 4, {2, 2, 1, 2}, {{4, 6}, {5, 6}, {5}, {5, 5}}, {D_ANY, D_ANY, D_ANY, D_ANY}},
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

    target_i64 = qg_tensor_from_data(QG_I64, 1, SHAPE(4), (int64_t[]){1, 0, 4, 2});
    uint8_t m[12] = {1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0};
    mask_u8 = qg_tensor_from_data(QG_U8, 2, SHAPE(3, 4), m);
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
    qg_tensor_free(target_i64), qg_tensor_free(mask_u8);
    return test_summary("gradcheck");
}
