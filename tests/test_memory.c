/* 1,000 training iterations of a small MLP (forward, backward, a plain SGD update,
 * tape reset) must leave the number of live allocations unchanged after warm-up:
 * the tape's arena is reused and leaves' grads are allocated once. The same for the
 * QAT CNN (tests/qat_cnn.h: fused, prepared, trained with SGD and momentum), whose
 * observers, fake-quant parameters and momentum buffers are made in the first steps
 * and then updated in place; and the tape stops growing. A private tape is freed whole. */
#include "qat_cnn.h"
#include "qgrad/optim.h"
#include "test_util.h"

static void mlp_steps(void) {
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
}

static void qat_cnn_steps(int steps) {
    qg_rng g;
    qg_rng_init(&g, 6);
    int64_t before = qg_live_allocations();
    qg_module *m = qat_cnn_float();
    qg_status st = qat_cnn_fuse_prepare(m);
    CHECK(st == QG_OK, "qat_cnn fuse and prepare: %s", qg_last_error());
    qg_tensor_list *ps = qg_module_parameters(m);
    qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    CHECK(opt != NULL, "qat_cnn optimizer: %s", qg_last_error());
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, SHAPE(8, 1, 8, 8));
    qg_tensor *t = qg_tensor_from_data(QG_I64, 1, SHAPE(8), (int64_t[]){0, 1, 2, 0, 1, 2, 0, 1});
    int64_t live_after_warmup = 0;
    size_t tape_after_warmup = 0, tape_max = 0;
    double first_loss = 0, loss = 0;
    for (int it = 0; it < steps && !st && opt; it++) {
        qg_tensor *l = qg_cross_entropy(qg_module_forward(m, x), t, QG_REDUCTION_MEAN);
        qg_sgd_zero_grad(opt);
        CHECK(l && qg_backward(l, NULL) == QG_OK && qg_sgd_step(opt) == QG_OK, "qat_cnn step %d: %s", it,
              qg_last_error());
        loss = l ? qg_tensor_item(l) : NAN;
        if (it == 0) first_loss = loss;
        qg_tape_reset(NULL);
        if (it == 2) live_after_warmup = qg_live_allocations(), tape_after_warmup = qg_tape_bytes(qg_tape_current());
        if (it >= 2 && qg_tape_bytes(qg_tape_current()) > tape_max) tape_max = qg_tape_bytes(qg_tape_current());
    }
    printf("qat_cnn: live allocations after warm-up %lld, after %d steps %lld; tape %zu bytes; loss %.4f -> %.4f\n",
           (long long)live_after_warmup, steps, (long long)qg_live_allocations(), qg_tape_bytes(qg_tape_current()),
           first_loss, loss);
    CHECK(qg_live_allocations() == live_after_warmup, "qat_cnn: allocation count grew: %lld -> %lld",
          (long long)live_after_warmup, (long long)qg_live_allocations());
    CHECK(tape_max == tape_after_warmup, "qat_cnn: tape grew after warm-up: %zu -> %zu bytes", tape_after_warmup,
          tape_max);
    CHECK(loss < first_loss, "qat_cnn: training reduced the loss (%g -> %g)", first_loss, loss);
    qg_sgd_free(opt);
    qg_tensor_list_free(ps);
    qg_module_free(m);
    qg_tensor_free(x), qg_tensor_free(t);
    CHECK(qg_live_allocations() == before, "qat_cnn: freeing the model, optimizer and data releases everything: %lld -> %lld",
          (long long)before, (long long)qg_live_allocations());
}

int main(void) {
    mlp_steps();
    qat_cnn_steps(300);
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
