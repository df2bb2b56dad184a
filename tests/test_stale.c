/* Tensors of a reset tape: every op and accessor given one fails with "tensor from a
 * reset tape" (QG_ESTATE) instead of reading memory the reset freed, also after the
 * arena regrew and consolidated its blocks (run under ASan in CI). And the tape's
 * growth warning. */
#include <string.h>

#include "qgrad/qat.h"
#include "test_util.h"

#define STALE(call)                                                                                   \
    do {                                                                                              \
        qg_clear_error();                                                                             \
        const void *r_ = (call);                                                                      \
        CHECK(r_ == NULL && strstr(qg_last_error(), "reset tape"), "%s on a stale tensor: %s", #call, \
              qg_last_error());                                                                       \
    } while (0)
#define STALE_ST(call)                                                                                \
    do {                                                                                              \
        qg_clear_error();                                                                             \
        CHECK((call) == QG_ESTATE && strstr(qg_last_error(), "reset tape"), "%s on a stale tensor: %s", \
              #call, qg_last_error());                                                                \
    } while (0)

static void every_op(qg_tensor *s, qg_tensor *s4, const qg_tensor *live) {
    qg_tensor *(*unary[])(const qg_tensor *) = {qg_neg, qg_exp, qg_log, qg_sqrt, qg_rsqrt, qg_abs, qg_tanh,
                                                qg_sigmoid, qg_relu, qg_relu6, qg_contiguous, qg_detach};
    for (size_t k = 0; k < sizeof unary / sizeof *unary; k++) STALE(unary[k](s));
    qg_tensor *(*binary[])(const qg_tensor *, const qg_tensor *) = {qg_add, qg_sub, qg_mul, qg_div, qg_maximum,
                                                                    qg_minimum, qg_gt, qg_lt, qg_eq};
    for (size_t k = 0; k < sizeof binary / sizeof *binary; k++) {
        STALE(binary[k](s, live));
        STALE(binary[k](live, s));
    }
    STALE(qg_add_scalar(s, 1));
    STALE(qg_sub_scalar(s, 1));
    STALE(qg_mul_scalar(s, 2));
    STALE(qg_div_scalar(s, 2));
    STALE(qg_mse_loss(s, live, QG_REDUCTION_MEAN));
    STALE(qg_pow_scalar(s, 2));
    STALE(qg_clamp(s, 0, 1));
    STALE(qg_hardtanh(s, -1, 1));
    STALE(qg_matmul(s, qg_transpose(live, 0, 1)));
    STALE(qg_linear(live, s, NULL));
    STALE(qg_sum(s, 0, NULL, false));
    STALE(qg_mean(s, 0, NULL, false));
    STALE(qg_var(s, 0, NULL, true, false));
    STALE(qg_max(s, 1, false, NULL));
    STALE(qg_argmax(s, 1, false));
    STALE(qg_softmax(s, 1));
    STALE(qg_log_softmax(s, 1));
    qg_tensor *tgt = qg_tensor_zeros(QG_I64, 1, SHAPE(3));
    STALE(qg_cross_entropy(s, tgt, QG_REDUCTION_MEAN));
    STALE(qg_nll_loss(s, tgt, QG_REDUCTION_MEAN));
    STALE(qg_reshape(s, 1, SHAPE(12)));
    STALE(qg_view(s, 1, SHAPE(12)));
    STALE(qg_transpose(s, 0, 1));
    STALE(qg_permute(s, (int[]){1, 0}));
    STALE(qg_narrow(s, 0, 0, 1));
    STALE(qg_slice(s, 0, 0, 2, 1));
    STALE(qg_select(s, 0, 0));
    STALE(qg_expand(s, 3, SHAPE(2, 3, 4)));
    STALE(qg_squeeze(s, 0));
    STALE(qg_unsqueeze(s, 0));
    STALE(qg_flatten(s, 0, -1));
    STALE(qg_to_dtype(s, QG_F64));
    qg_tensor *pair[2] = {(qg_tensor *)live, s};
    STALE(qg_cat(2, pair, 0));
    STALE(qg_stack(2, pair, 0));
    qg_tensor *mask = qg_tensor_zeros(QG_U8, 2, SHAPE(3, 4));
    STALE(qg_where(mask, s, live));
    STALE(qg_where(mask, live, s));
    qg_tensor *w = qg_tensor_ones(QG_F32, 4, SHAPE(2, 2, 1, 1));
    STALE(qg_conv2d(s4, w, NULL, NULL, NULL, NULL, 1));
    STALE(qg_batch_norm(s4, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
    STALE(qg_max_pool2d(s4, (int[]){2, 2}, NULL, NULL, NULL, false));
    STALE(qg_avg_pool2d(s4, (int[]){2, 2}, NULL, NULL, false, true, 0));
    STALE(qg_adaptive_avg_pool2d(s4, 1, 1));
    STALE(qg_dropout(s, 0.5, true, NULL));
    STALE(qg_fake_quantize_per_tensor(s, 0.1, 0, -128, 127));
    qg_tensor *sc = qg_tensor_ones(QG_F32, 1, SHAPE(3)), *zp = qg_tensor_zeros(QG_I32, 1, SHAPE(3));
    STALE(qg_fake_quantize_per_channel(s, sc, zp, 0, -128, 127));
    /* accessors */
    STALE(qg_tensor_clone(s));
    STALE(qg_tensor_data(s));
    double buf[12], v = qg_tensor_item(qg_sum(s, 0, NULL, false));
    CHECK(isnan(v), "item of an op on a stale tensor is NaN");
    qg_clear_error();
    CHECK(isnan(qg_tensor_get(s, SHAPE(0, 0))) && strstr(qg_last_error(), "reset tape"), "get: %s", qg_last_error());
    STALE_ST(qg_tensor_copy_to(s, QG_F64, buf));
    STALE_ST(qg_tensor_set(s, SHAPE(0, 0), 1));
    STALE_ST(qg_tensor_fill_(s, 1));
    STALE_ST(qg_tensor_set_requires_grad(s, true));
    qg_tensor *dst = qg_tensor_zeros(QG_F32, 2, SHAPE(3, 4));
    STALE_ST(qg_tensor_copy_(dst, s));
    STALE_ST(qg_backward(s, NULL));
    qg_tensor_free(tgt), qg_tensor_free(mask), qg_tensor_free(w), qg_tensor_free(sc), qg_tensor_free(zp), qg_tensor_free(dst);
}

static void test_stale(void) {
    qg_tensor *a = qg_tensor_ones(QG_F32, 2, SHAPE(3, 4)), *a4 = qg_tensor_ones(QG_F32, 4, SHAPE(1, 2, 2, 2));
    qg_tensor_set_requires_grad(a, true);
    qg_tensor *loss = qg_sum(qg_mul(a, a), 0, NULL, false), *s = qg_add(a, a), *s4 = qg_mul_scalar(a4, 2);
    CHECK(qg_tensor_item(loss) == 12, "live loss");
    qg_tape_reset(NULL);
    qg_clear_error();
    CHECK(isnan(qg_tensor_item(loss)) && strstr(qg_last_error(), "reset tape"), "item after reset: %s", qg_last_error());
    every_op(s, s4, a);
    qg_tape_reset(NULL);

    /* a pass that outgrows the arena: the next reset frees its chunks and makes one */
    qg_tensor *big = qg_tensor_ones(QG_F32, 1, SHAPE(1 << 18)); /* 1 MB a result */
    qg_tensor *keep = NULL, *keep4 = qg_mul_scalar(a4, 3);
    for (int i = 0; i < 6; i++) keep = qg_add(big, big);
    keep = qg_reshape(qg_narrow(keep, 0, 0, 12), 2, SHAPE(3, 4));
    size_t before = qg_tape_bytes(NULL);
    qg_tape_reset(NULL);
    CHECK(qg_tape_bytes(NULL) != before, "the arena was consolidated (%zu -> %zu bytes)", before, qg_tape_bytes(NULL));
    every_op(keep, keep4, a);
    qg_tensor_free(a), qg_tensor_free(a4), qg_tensor_free(big);
    qg_tape_reset(NULL);
}

static int warnings;
static char last_warning[512];
static void on_warning(const char *msg, void *ctx) {
    (void)ctx;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
}

/* A loop that forgets qg_tape_reset warns once, past the node limit. */
static void test_growth_warning(void) {
    qg_set_warning_handler(on_warning, NULL);
    qg_tape *t = qg_tape_new();
    qg_tape *prev = qg_tape_set_current(t);
    CHECK(qg_tape_set_limits(NULL, (size_t)1 << 40, 50) == QG_OK, "set limits on the current tape");
    qg_tensor *w = qg_tensor_ones(QG_F32, 1, SHAPE(4));
    qg_tensor_set_requires_grad(w, true);
    for (int step = 0; step < 100; step++) qg_backward(qg_sum(qg_mul(w, w), 0, NULL, false), NULL); /* no reset */
    CHECK(warnings == 1 && strstr(last_warning, "qg_tape_reset"), "one warning naming the fix (%d): %s", warnings,
          last_warning);
    CHECK(qg_tape_node_count(NULL) == 200 && qg_tape_node_count(t) == 200, "NULL is the current tape");
    qg_tape_reset(NULL);
    for (int step = 0; step < 20; step++) qg_backward(qg_sum(qg_mul(w, w), 0, NULL, false), NULL), qg_tape_reset(NULL);
    CHECK(warnings == 1, "a loop that resets does not warn");
    qg_tensor_free(w);
    qg_tape_set_current(prev);
    qg_tape_free(t);
    qg_set_warning_handler(NULL, NULL);
}

int main(void) {
    test_stale();
    test_growth_warning();
    return test_summary("stale");
}
