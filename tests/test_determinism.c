/* Same seed and same thread count give bitwise-identical training: an MLP big enough
 * to take the parallel paths (GEMM, elementwise, reductions) trained twice at 1 and
 * twice at 2 threads. */
#include <string.h>

#include "test_util.h"

#define NP 4

/* trains 30 steps from seed; writes the final first-layer weight into out */
static void train(int threads, uint64_t seed, float *out) {
    qg_set_num_threads(threads);
    qg_rng g;
    qg_rng_init(&g, seed);
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 2, SHAPE(128, 784));
    qg_tensor *t = qg_tensor_empty(QG_I64, 1, SHAPE(128));
    for (int i = 0; i < 128; i++) ((int64_t *)qg_tensor_data(t))[i] = (int64_t)(qg_rng_next_u64(&g) % 10);
    qg_tensor *p[NP] = {qg_tensor_randn(&g, QG_F32, 2, SHAPE(256, 784)), qg_tensor_zeros(QG_F32, 1, SHAPE(256)),
                        qg_tensor_randn(&g, QG_F32, 2, SHAPE(10, 256)), qg_tensor_zeros(QG_F32, 1, SHAPE(10))};
    for (int i = 0; i < NP; i++) {
        float *w = qg_tensor_data(p[i]);
        for (int64_t k = 0; k < qg_tensor_numel(p[i]); k++) w[k] *= 0.03f;
        qg_tensor_set_requires_grad(p[i], true);
    }
    for (int step = 0; step < 30; step++) {
        qg_tensor *h = qg_tanh(qg_linear(x, p[0], p[1]));
        qg_tensor *l = qg_cross_entropy(qg_linear(h, p[2], p[3]), t, QG_REDUCTION_MEAN);
        for (int i = 0; i < NP; i++) qg_tensor_zero_grad(p[i]);
        qg_backward(qg_add(l, qg_mul_scalar(qg_sum(qg_mul(p[0], p[0]), 0, NULL, false), 1e-4)), NULL);
        for (int i = 0; i < NP; i++) {
            float *w = qg_tensor_data(p[i]), *gw = qg_tensor_data(p[i]->grad);
            for (int64_t k = 0; k < qg_tensor_numel(p[i]); k++) w[k] -= 0.1f * gw[k];
        }
        qg_tape_reset(NULL);
    }
    memcpy(out, qg_tensor_data(p[0]), 256 * 784 * sizeof(float));
    for (int i = 0; i < NP; i++) qg_tensor_free(p[i]);
    qg_tensor_free(x), qg_tensor_free(t);
}

int main(void) {
    static float a1[256 * 784], b1[256 * 784], a2[256 * 784], b2[256 * 784];
    train(1, 11, a1);
    train(1, 11, b1);
    train(2, 11, a2);
    train(2, 11, b2);
    CHECK(!memcmp(a1, b1, sizeof a1), "1 thread: two runs differ");
    CHECK(!memcmp(a2, b2, sizeof a2), "2 threads: two runs differ");
    printf("1 vs 2 threads bitwise equal: %s\n", memcmp(a1, a2, sizeof a1) ? "no" : "yes");
    float c[256 * 784];
    train(2, 12, c);
    CHECK(memcmp(a2, c, sizeof c), "another seed gives other weights");
    return test_summary("determinism");
}
