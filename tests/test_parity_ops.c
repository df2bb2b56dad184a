/* PyTorch parity of the autograd ops: every case of tests/fixtures/autograd_ops.safetensors
 * (written by tools/gen_fixtures.py with PyTorch 1.13) is run with qgrad's ops, then
 * qg_backward(out, gout), and the output and each input gradient are compared with
 * PyTorch's.
 *
 * usage: test_parity_ops tests/fixtures/autograd_ops.safetensors
 *
 * Error measure, per tensor: max_i |a_i - b_i| / max(|b_i|, 1e-3 * max_j |b_j|), with
 * a ours and b PyTorch's. That is a relative error, except that entries much smaller
 * than the tensor's largest are measured against 1/1000 of it (sums that cancel, tiny
 * softmax tails). Integer outputs (indices) must match exactly. Tolerances:
 *   float32 elementwise ops, views, joins: 1e-6 (a few ulp; both sides round once or twice)
 *   float32 matmul, reductions, softmax, losses: 1e-5 (summation order differs)
 *   float64: 1e-10
 * A case's tolerance is its table entry's (float32) or TOL_F64 for <case>_f64. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qgrad/autograd.h"
#include "qgrad/nn.h"

#define TOL_EW 1e-6
#define TOL_RED 1e-5
#define TOL_F64 1e-10
#define MAX_IN 8

typedef qg_tensor *(*case_fn)(qg_tensor *const *in, qg_tensor **aux);

/* One function per case: `in` are the fixture's inputs, aux receives extra outputs
 * (max's indices), compared with <case>.idx. */
#define CASE(nm, expr)                                                          \
    static qg_tensor *case_##nm(qg_tensor *const *in, qg_tensor **aux) {        \
        (void)in;                                                               \
        (void)aux;                                                              \
        return (expr);                                                          \
    }

#define MEAN QG_REDUCTION_MEAN
#define SUM QG_REDUCTION_SUM
#define NONE QG_REDUCTION_NONE
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
CASE(to_f64, qg_mul(qg_to_dtype(in[0], QG_F64), in[1]))
CASE(chain_mlp, qg_cross_entropy(qg_linear(qg_relu(qg_linear(in[0], in[1], in[2])), in[3], in[4]), in[5], MEAN))

typedef struct op_case {
    const char *name; /* fixture case; <name>_f64 runs the same function */
    case_fn fn;
    double tol;       /* float32 tolerance */
    int runs;         /* fixture cases that used this entry */
} op_case;

static op_case cases[] = {
    {"add_bcast", case_add, TOL_EW, 0},
    {"add_bcast2", case_add, TOL_EW, 0},
    {"sub_bcast", case_sub, TOL_EW, 0},
    {"mul_bcast", case_mul, TOL_EW, 0},
    {"div_bcast", case_div, TOL_EW, 0},
    {"mul_noncontig", case_mul_noncontig, TOL_EW, 0},
    {"mul_self", case_mul_self, TOL_EW, 0},
    {"add_scalar", case_add_scalar, TOL_EW, 0},
    {"sub_scalar", case_sub_scalar, TOL_EW, 0},
    {"mul_scalar", case_mul_scalar, TOL_EW, 0},
    {"div_scalar", case_div_scalar, TOL_EW, 0},
    {"pow_2_5", case_pow_2_5, TOL_EW, 0},
    {"pow_m1_5", case_pow_m1_5, TOL_EW, 0},
    {"neg", case_neg, TOL_EW, 0},
    {"exp", case_exp, TOL_EW, 0},
    {"log", case_log, TOL_EW, 0},
    {"sqrt", case_sqrt, TOL_EW, 0},
    {"rsqrt", case_rsqrt, TOL_EW, 0},
    {"abs", case_abs, TOL_EW, 0},
    {"tanh", case_tanh, TOL_EW, 0},
    {"sigmoid", case_sigmoid, TOL_EW, 0},
    {"relu", case_relu, TOL_EW, 0},
    {"clamp", case_clamp, TOL_EW, 0},
    {"hardtanh", case_hardtanh, TOL_EW, 0},
    {"relu6", case_relu6, TOL_EW, 0},
    {"maximum", case_maximum, TOL_EW, 0},
    {"minimum", case_minimum, TOL_EW, 0},
    {"where", case_where, TOL_EW, 0},
    {"matmul", case_matmul, TOL_RED, 0},
    {"matmul_batched", case_matmul, TOL_RED, 0},
    {"matmul_bcast2d", case_matmul, TOL_RED, 0},
    {"matmul_t", case_matmul_t, TOL_RED, 0},
    {"linear", case_linear, TOL_RED, 0},
    {"linear_nobias", case_linear_nobias, TOL_RED, 0},
    {"linear_3d", case_linear, TOL_RED, 0},
    {"sum_dims", case_sum_dims, TOL_RED, 0},
    {"sum_keepdim", case_sum_keepdim, TOL_RED, 0},
    {"sum_all", case_sum_all, TOL_RED, 0},
    {"mean_keepdim", case_mean_keepdim, TOL_RED, 0},
    {"mean_dims", case_mean_dims, TOL_RED, 0},
    {"mean_all", case_mean_all, TOL_RED, 0},
    {"var_dim_unbiased", case_var_dim_unbiased, TOL_RED, 0},
    {"var_dim_biased", case_var_dim_biased, TOL_RED, 0},
    {"var_keepdim", case_var_keepdim, TOL_RED, 0},
    {"var_all_unbiased", case_var_all_unbiased, TOL_RED, 0},
    {"var_all_biased", case_var_all_biased, TOL_RED, 0},
    {"max_dim", case_max_dim, TOL_EW, 0},
    {"max_keepdim", case_max_keepdim, TOL_EW, 0},
    {"argmax", case_argmax, 0, 0},
    {"softmax", case_softmax, TOL_RED, 0},
    {"softmax_dim0", case_softmax_dim0, TOL_RED, 0},
    {"softmax_large", case_softmax_dim1, TOL_RED, 0},
    {"log_softmax", case_log_softmax, TOL_RED, 0},
    {"log_softmax_large", case_log_softmax, TOL_RED, 0},
    {"log_softmax_3d", case_log_softmax, TOL_RED, 0},
    {"cross_entropy_mean", case_cross_entropy_mean, TOL_RED, 0},
    {"cross_entropy_sum", case_cross_entropy_sum, TOL_RED, 0},
    {"cross_entropy_none", case_cross_entropy_none, TOL_RED, 0},
    {"cross_entropy_large", case_cross_entropy_mean, TOL_RED, 0},
    {"nll_loss_mean", case_nll_loss_mean, TOL_RED, 0},
    {"nll_loss_sum", case_nll_loss_sum, TOL_RED, 0},
    {"mse_loss_mean", case_mse_loss_mean, TOL_RED, 0},
    {"mse_loss_sum", case_mse_loss_sum, TOL_RED, 0},
    {"cat", case_cat, TOL_EW, 0},
    {"cat_dim0", case_cat_dim0, TOL_EW, 0},
    {"stack", case_stack, TOL_EW, 0},
    {"stack_dim1", case_stack_dim1, TOL_EW, 0},
    {"transpose", case_transpose, TOL_EW, 0},
    {"permute", case_permute, TOL_EW, 0},
    {"narrow", case_narrow, TOL_EW, 0},
    {"slice", case_slice, TOL_EW, 0},
    {"select", case_select, TOL_EW, 0},
    {"expand", case_expand, TOL_RED, 0}, /* the backward sums over the expanded dims */
    {"view", case_view, TOL_EW, 0},
    {"reshape_noncontig", case_reshape_noncontig, TOL_EW, 0},
    {"squeeze", case_squeeze, TOL_EW, 0},
    {"unsqueeze", case_unsqueeze, TOL_RED, 0}, /* broadcast add: backward sums */
    {"flatten", case_flatten, TOL_EW, 0},
    {"flatten_noncontig", case_flatten_noncontig, TOL_EW, 0},
    {"contiguous", case_contiguous, TOL_EW, 0},
    {"transpose_sum", case_transpose_sum, TOL_RED, 0},
    {"to_f64", case_to_f64, TOL_EW, 0},
    {"chain_mlp", case_chain_mlp, TOL_RED, 0},
};
#define NCASES (int)(sizeof cases / sizeof *cases)

static const qg_tensor_dict *fixture;

/* The fixture's tensor "<c>.<what>", or NULL (no error) if it has none. */
static qg_tensor *fx(const char *c, const char *what) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", c, what);
    qg_tensor *t = qg_tensor_dict_get(fixture, name);
    if (!t) qg_clear_error();
    return t;
}

/* Compares ours (a) with PyTorch's (b); returns the error measure (see the top), or
 * INFINITY with a message in why if shapes/dtypes differ. */
static double compare(const qg_tensor *a, const qg_tensor *b, char *why, size_t nwhy) {
    char sa[128], sb[128];
    if (!a) return snprintf(why, nwhy, "missing"), INFINITY;
    bool same = a->dtype == b->dtype && a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same)
        return snprintf(why, nwhy, "got %s, want %s", qg_shape_str(a, sa, sizeof sa), qg_shape_str(b, sb, sizeof sb)),
               INFINITY;
    int64_t n = qg_tensor_numel(b);
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
    qg_tensor_copy_to(a, QG_F64, x);
    qg_tensor_copy_to(b, QG_F64, y);
    double scale = 0, err = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(y[i])) scale = fmax(scale, fabs(y[i]));
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e;
        if (x[i] == y[i]) e = 0; /* also equal infinities */
        else if (isnan(x[i]) || isnan(y[i]) || isinf(x[i]) || isinf(y[i])) e = INFINITY;
        else e = fabs(x[i] - y[i]) / fmax(fmax(fabs(y[i]), 1e-3 * scale), 1e-300);
        if (!(e <= err)) err = e, worst = i;
    }
    if (err > 0) snprintf(why, nwhy, "worst at element %lld: %.9g vs %.9g", (long long)worst, x[worst], y[worst]);
    free(x);
    free(y);
    return err;
}

/* Runs one fixture case; prints its line; returns true if it passed. */
static bool run_case(const char *c, op_case *oc, bool f64) {
    double tol = f64 ? TOL_F64 : oc->tol;
    qg_tensor *in[MAX_IN] = {0};
    int nin = 0;
    char key[32];
    for (; nin < MAX_IN; nin++) {
        snprintf(key, sizeof key, "in%d", nin);
        if (!(in[nin] = fx(c, key))) break;
    }
    for (int i = 0; i < nin; i++) {
        snprintf(key, sizeof key, "gin%d", i);
        if (fx(c, key)) qg_tensor_set_requires_grad(in[i], true);
    }
    qg_tensor *want_out = fx(c, "out"), *want_idx = fx(c, "idx"), *gout = fx(c, "gout");
    qg_tensor *aux = NULL;
    qg_clear_error();
    qg_tensor *out = oc->fn(in, want_idx ? &aux : NULL);

    char why[256] = "", what[32] = "out";
    double err = 0;
    bool ok = true;
    if (!out) {
        snprintf(why, sizeof why, "op returned NULL: %s", qg_last_error());
        ok = false;
    } else {
        double e = compare(out, want_out, why, sizeof why);
        err = e;
        if (want_idx) {
            char w2[256];
            double ei = compare(aux, want_idx, w2, sizeof w2);
            if (ei != 0) err = INFINITY, snprintf(what, sizeof what, "idx"), memcpy(why, w2, sizeof why);
        }
        if (gout && err <= tol) {
            if (qg_backward(out, gout) != QG_OK) {
                snprintf(why, sizeof why, "backward failed: %s", qg_last_error());
                err = INFINITY;
            }
            for (int i = 0; i < nin && isfinite(err); i++) {
                snprintf(key, sizeof key, "gin%d", i);
                qg_tensor *want = fx(c, key);
                if (!want) continue;
                char w2[256];
                double eg = compare(in[i]->grad, want, w2, sizeof w2);
                if (eg > err) err = eg, snprintf(what, sizeof what, "%s", key), memcpy(why, w2, sizeof why);
            }
        }
        ok = err <= tol;
    }
    if (ok) printf("ok %-26s max_rel_err=%.3g (%s) tol=%g\n", c, err, what, tol);
    else printf("FAIL %s max_rel_err=%.3g in %s (tol %g): %s\n", c, err, what, tol, why);
    for (int i = 0; i < nin; i++) qg_tensor_set_requires_grad(in[i], false);
    qg_tape_reset(NULL);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s tests/fixtures/autograd_ops.safetensors\n", argv[0]);
        return 2;
    }
    qg_tensor_dict *d = qg_safetensors_load(argv[1]);
    if (!d) {
        printf("FAIL cannot load the fixture: %s\n", qg_last_error());
        return 1;
    }
    fixture = d;
    int passed = 0, failed = 0;
    for (int i = 0; i < qg_tensor_dict_size(d); i++) {
        const char *nm = qg_tensor_dict_name(d, i);
        size_t n = strlen(nm);
        if (!strncmp(nm, "_format.", 8) || n < 5 || strcmp(nm + n - 4, ".out")) continue;
        char c[256];
        snprintf(c, sizeof c, "%.*s", (int)(n - 4), nm);
        size_t cn = strlen(c);
        bool f64 = cn > 4 && !strcmp(c + cn - 4, "_f64");
        op_case *oc = NULL;
        for (int k = 0; k < NCASES && !oc; k++)
            if (strlen(cases[k].name) == (f64 ? cn - 4 : cn) && !strncmp(cases[k].name, c, f64 ? cn - 4 : cn))
                oc = &cases[k];
        if (!oc) {
            printf("FAIL %s: no C function for this fixture case (add it to tests/test_parity_ops.c)\n", c);
            failed++;
            continue;
        }
        oc->runs++;
        if (run_case(c, oc, f64)) passed++;
        else failed++;
    }
    for (int k = 0; k < NCASES; k++)
        if (!cases[k].runs) {
            printf("FAIL %s: not in the fixture (regenerate it with tools/gen_fixtures.py)\n", cases[k].name);
            failed++;
        }
    qg_tensor_dict_free(d);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
