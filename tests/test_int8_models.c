/* Whole-model int8 parity (fixture: tools/gen_int8_model_fixtures.py): examples/fmnist's
 * CNN and MLP, trained by qgrad with the fbgemm qconfig, converted by qgrad and, from
 * the same checkpoint, by PyTorch 1.13 (onednn). Over the 10,000 Fashion-MNIST test
 * images: the last layer's int_repr bit-exact on at least 99.9% of the elements, the
 * argmax the same on every image, the int8 accuracy PyTorch's exactly; and the int8
 * model's accuracy beside the fake-quant model's. Skips without the dataset. */
#include <unistd.h>

#include "../examples/fmnist_model.h"
#include "test_util.h"

#define DATA "/usr/share/datasets/fashion-mnist"

static void one_model(const char *kind, const qg_dataset *test) {
    char pre[32];
    snprintf(pre, sizeof pre, "%s.ckpt.", kind);
    qg_module *m = fmnist_qat_model(kind, tst_fx, pre);
    qg_status st = m ? QG_OK : qg_last_status();
    CHECK(m != NULL, "%s: the checkpoint: %s", kind, qg_last_error());
    if (!m) return;
    qg_enable_observer(m, false);
    qg_loader *ld = qg_loader_new(test, &(qg_loader_opts){.batch = 500, .mean = 0.2860, .std = 0.3530});
    const int64_t n = test->images->shape[0];
    int64_t *pf = calloc((size_t)n, sizeof *pf), *pi = calloc((size_t)n, sizeof *pi);
    int64_t k = 0, exact = 0, off1 = 0, worse = 0, agree = 0, correct_q = 0, correct_f = 0;
    qg_tensor *x, *y;
    bool prev = qg_set_grad_enabled(false);
    for (int pass = 0; !st && pass < 2; pass++) { /* fake-quant, then int8 */
        if (pass == 1) st = qg_convert(m, &(qg_convert_opts){.engine = QG_QENGINE_ONEDNN});
        if (pass == 1 && !st) /* the quantized logits: DeQuantize becomes an identity */
            qg_module_free(qg_module_replace(m, "dequant", qg_nn_identity_new()));
        qg_loader_start_epoch(ld, 0);
        k = 0;
        while (!st && qg_loader_next(ld, &x, &y)) {
            qg_tensor *h = qg_module_forward(m, x);
            qg_tensor *pred = qg_argmax(pass ? qg_dequantize(h) : h, 1, false);
            if (!pred) {
                st = qg_last_status();
                break;
            }
            const int64_t b = y->shape[0], *p = qg_tensor_data(pred), *t = qg_tensor_data(y);
            for (int64_t i = 0; i < b; i++) {
                (pass ? pi : pf)[k + i] = p[i];
                *(pass ? &correct_q : &correct_f) += p[i] == t[i];
            }
            if (pass) {
                const uint8_t *got = qg_tensor_data(qg_contiguous(qg_int_repr(h)));
                const uint8_t *want = (const uint8_t *)qg_tensor_data(FX("%s.logits.int", kind)) + k * 10;
                for (int64_t i = 0; i < b * 10; i++) {
                    int d = abs((int)got[i] - (int)want[i]);
                    exact += d == 0, off1 += d == 1, worse += d > 1;
                }
                CHECK(qg_q_scale(h) == qg_tensor_item(FX("%s.logits.scale", kind)) &&
                          qg_q_zero_point(h) == (int64_t)qg_tensor_item(FX("%s.logits.zp", kind)),
                      "%s: logits qparams %.9g %lld", kind, qg_q_scale(h), (long long)qg_q_zero_point(h));
            }
            k += b;
            qg_tape_reset(NULL);
        }
    }
    qg_set_grad_enabled(prev);
    CHECK(!st && k == n, "%s: %s", kind, qg_last_error());
    const int64_t *want_pred = qg_tensor_data(FX("%s.pred", kind)), *want_fq = qg_tensor_data(FX("%s.pred_fq", kind));
    int64_t fq_same = 0, differ = 0;
    for (int64_t i = 0; i < n; i++) agree += pi[i] == want_pred[i], fq_same += pf[i] == want_fq[i], differ += pi[i] != pf[i];
    const double *acc = qg_tensor_data(FX("%s.acc", kind));
    double aq = (double)correct_q / (double)n, af = (double)correct_f / (double)n;
    printf("%s: logits int_repr %lld exact, %lld off by 1, %lld more (%.4f%%); argmax agrees with PyTorch's int8 on "
           "%lld/%lld; int8 accuracy %.2f%% (PyTorch %.2f%%), fake-quant %.2f%% (PyTorch %.2f%%); int8 and fake-quant "
           "predictions differ on %lld images\n", kind, (long long)exact, (long long)off1, (long long)worse,
           100.0 * (double)exact / (double)(exact + off1 + worse ? exact + off1 + worse : 1), (long long)agree,
           (long long)n, 100 * aq, 100 * acc[0], 100 * af, 100 * acc[1], (long long)differ);
    CHECK((double)exact >= 0.999 * (double)(n * 10), "%s: logits bit-exact on 99.9%%", kind);
    CHECK(agree == n, "%s: argmax agrees on every image", kind);
    CHECK(aq == acc[0], "%s: int8 accuracy %.4f, PyTorch's %.4f", kind, aq, acc[0]);
    CHECK(fq_same == n, "%s: the fake-quant model's predictions agree with PyTorch's on %lld/%lld", kind,
          (long long)fq_same, (long long)n);
    free(pf), free(pi);
    qg_loader_free(ld);
    qg_module_free(m);
}

int main(int argc, char **argv) {
    qg_dataset test = {0};
    if (qg_dataset_load_mnist(DATA, false, &test)) {
        printf("SKIP: no Fashion-MNIST in %s (apt-get install dataset-fashion-mnist): %s\n", DATA, qg_last_error());
        return 77;
    }
    tst_fx = qg_safetensors_load(argc > 1 ? argv[1] : "tests/fixtures/int8_models.safetensors");
    CHECK(tst_fx != NULL, "fixture: %s", qg_last_error());
    if (tst_fx) one_model("cnn", &test), one_model("mlp", &test);
    qg_tensor_dict_free(tst_fx);
    qg_dataset_free(&test);
    qg_shutdown();
    return test_summary("test_int8_models");
}
