/* 1,000 training iterations of a small MLP (forward, backward, a plain SGD update,
 * tape reset) must leave the number of live allocations unchanged after warm-up:
 * the tape's arena is reused and leaves' grads are allocated once. */
#include "test_util.h"

int main(void) {
    qg_rng g;
    qg_rng_init(&g, 5);
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 2, SHAPE(32, 20));
    qg_tensor *t = qg_tensor_from_data(QG_I64, 1, SHAPE(32), (int64_t[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5,
                                                                       6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1});
    qg_tensor *p[4] = {qg_tensor_randn(&g, QG_F32, 2, SHAPE(64, 20)), qg_tensor_zeros(QG_F32, 1, SHAPE(64)),
                       qg_tensor_randn(&g, QG_F32, 2, SHAPE(10, 64)), qg_tensor_zeros(QG_F32, 1, SHAPE(10))};
    for (int i = 0; i < 4; i++) qg_tensor_set_requires_grad(p[i], true);
    int64_t live_after_warmup = 0;
    size_t tape_after_warmup = 0;
    double first_loss = 0, loss = 0;
    for (int it = 0; it < 1000; it++) {
        qg_tensor *h = qg_relu(qg_linear(x, p[0], p[1]));
        qg_tensor *l = qg_cross_entropy(qg_linear(h, p[2], p[3]), t, QG_REDUCTION_MEAN);
        for (int i = 0; i < 4; i++) qg_tensor_zero_grad(p[i]);
        CHECK(qg_backward(l, NULL) == QG_OK, "backward: %s", qg_last_error());
        loss = qg_tensor_item(l);
        if (it == 0) first_loss = loss;
        for (int i = 0; i < 4; i++) { /* p -= 0.05 * grad, outside the tape */
            float *w = qg_tensor_data(p[i]), *gw = qg_tensor_data(p[i]->grad);
            for (int64_t k = 0; k < qg_tensor_numel(p[i]); k++) w[k] -= 0.05f * gw[k];
        }
        qg_tape_reset(NULL);
        if (it == 2) live_after_warmup = qg_live_allocations(), tape_after_warmup = qg_tape_bytes(qg_tape_current());
    }
    printf("live allocations after warm-up %lld, after 1000 steps %lld; tape %zu bytes; loss %.4f -> %.4f\n",
           (long long)live_after_warmup, (long long)qg_live_allocations(), qg_tape_bytes(qg_tape_current()),
           first_loss, loss);
    CHECK(qg_live_allocations() == live_after_warmup, "allocation count grew: %lld -> %lld",
          (long long)live_after_warmup, (long long)qg_live_allocations());
    CHECK(qg_tape_bytes(qg_tape_current()) == tape_after_warmup, "tape grew");
    CHECK(loss < first_loss * 0.5, "training reduced the loss (%g -> %g)", first_loss, loss);
    for (int i = 0; i < 4; i++) qg_tensor_free(p[i]);
    qg_tensor_free(x), qg_tensor_free(t);
    /* a second, private tape is freed whole */
    int64_t before = qg_live_allocations();
    qg_tape *tp = qg_tape_new();
    qg_tape *prev = qg_tape_set_current(tp);
    qg_tensor *a = qg_tensor_ones(QG_F64, 1, SHAPE(1000));
    qg_sum(qg_exp(a), 0, NULL, false);
    qg_tape_set_current(prev);
    qg_tape_free(tp);
    qg_tensor_free(a);
    CHECK(qg_live_allocations() == before, "tape_free releases everything");
    return test_summary("memory");
}
