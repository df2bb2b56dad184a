/* Allocation failure, injected: a QAT CNN training step (fused ConvBnReLU, pooling,
 * linear, fake-quant, cross-entropy, backward, SGD with momentum) is run once for every
 * N with the Nth allocation failing (heap or tape; tests/hooks.h). Each run must
 * return an error with a message or succeed, never abort or crash; afterwards a clean
 * step still works and, once everything is freed, nothing has leaked. Model building
 * (fuse, prepare) is swept the same way, and so are the C and ONNX exports of the
 * converted model (which must also leave no file behind when they fail). Runs under ASan + UBSan in CI. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hooks.h"
#include "qgrad/optim.h"
#include "qgrad/deploy.h"
#include "qgrad/qat.h"
#include "qgrad/quant.h"
#include "test_util.h"

static qg_module *build(qg_rng *g) {
    qg_module *m = qg_sequential_new();
    qg_status st = QG_OK;
    st = st ? st : qg_sequential_add(m, "quant", qg_quant_stub_new());
    st = st ? st : qg_sequential_add(m, "c1", qg_nn_conv2d_new(1, 4, 3, 3, &(qg_conv_opts){.padding = QG_PAIR(1)}, g));
    st = st ? st : qg_sequential_add(m, "b1", qg_nn_batchnorm2d_new(4, NULL));
    st = st ? st : qg_sequential_add(m, "r1", qg_nn_relu_new());
    st = st ? st : qg_sequential_add(m, "pool", qg_nn_maxpool2d_new(2, 2, NULL));
    st = st ? st : qg_sequential_add(m, "flat", qg_nn_flatten_new(1, -1));
    st = st ? st : qg_sequential_add(m, "fc", qg_nn_linear_new(4 * 4 * 4, 3, NULL, g));
    st = st ? st : qg_sequential_add(m, "dequant", qg_dequant_stub_new());
    const char *grp[] = {"c1", "b1", "r1"};
    qg_qconfig qc;
    st = st ? st : qg_qconfig_preset("fbgemm", &qc);
    st = st ? st : qg_fuse_modules_qat(m, 1, (const char *const *[]){grp}, (int[]){3});
    st = st ? st : qg_prepare_qat(m, &qc);
    if (st) {
        qg_module_free(m);
        return NULL;
    }
    return m;
}

/* one training step; QG_OK or the first error */
static qg_status step(qg_module *m, qg_sgd *opt, qg_tensor *x, const qg_tensor *y) {
    qg_sgd_zero_grad(opt);
    qg_tensor *loss = qg_cross_entropy(qg_module_forward(m, x), y, QG_REDUCTION_MEAN);
    qg_status st = loss ? qg_backward(loss, NULL) : qg_last_status();
    if (!st) st = qg_sgd_step(opt);
    qg_tape_reset(NULL);
    return st;
}

static void test_training_step_every_n(void) {
    qg_rng g;
    qg_rng_init(&g, 3);
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, SHAPE(2, 1, 8, 8));
    int64_t lab[] = {0, 2};
    qg_tensor *y = qg_tensor_from_data(QG_I64, 1, SHAPE(2), lab);
    int64_t live = qg_live_allocations();
    qg_module *m = build(&g);
    qg_tensor_list *ps = qg_module_parameters(m);
    qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.01, .momentum = 0.9});
    CHECK(m && opt && step(m, opt, x, y) == QG_OK, "a clean step: %s", qg_last_error());
    /* the first step after a reset allocates what a warmed-up step would not: count a
     * step right after a fresh tape, which allocates its arena again */
    qg_shutdown();
    int64_t c0 = qg__alloc_calls();
    CHECK(step(m, opt, x, y) == QG_OK, "counted step: %s", qg_last_error());
    int64_t calls = qg__alloc_calls() - c0;
    qg_shutdown();
    int64_t live_step = qg_live_allocations();
    int failed = 0, errors_without_message = 0;
    for (int64_t n = 0; n < calls; n++) {
        qg_shutdown(); /* each run from a fresh tape, so the arena allocates as counted */
        qg_clear_error();
        qg__fail_alloc_after(n);
        qg_status st = step(m, opt, x, y);
        qg__fail_alloc_after(-1);
        qg_shutdown();
        CHECK(qg_live_allocations() == live_step, "allocation %lld failing (%s): %lld blocks leaked", (long long)n,
              st ? qg_last_error() : "no error", (long long)(qg_live_allocations() - live_step));
        if (st) failed++;
        if (st && !*qg_last_error()) errors_without_message++;
        if (st && n < 3) printf("  allocation %lld failing: %s\n", (long long)n, qg_last_error());
    }
    printf("alloc_fail: training step: %lld allocation calls, %d runs failed cleanly\n", (long long)calls, failed);
    CHECK(calls > 10 && failed > 0, "the step allocates (%lld calls) and failures were injected", (long long)calls);
    CHECK(errors_without_message == 0, "%d errors came without a message", errors_without_message);
    CHECK(step(m, opt, x, y) == QG_OK, "a clean step after the sweep: %s", qg_last_error());
    qg_sgd_free(opt), qg_tensor_list_free(ps), qg_module_free(m);
    qg_shutdown();
    CHECK(qg_live_allocations() == live, "nothing leaked (%lld blocks)", (long long)(qg_live_allocations() - live));
    qg_tensor_free(x), qg_tensor_free(y);
}

/* building, fusing and preparing the model with the Nth allocation failing: an error,
 * or (when only a module's path label, used in messages, could not be stored) a model
 * that trains */
static void test_build_every_n(void) {
    qg_rng g;
    qg_rng_init(&g, 4);
    int64_t live = qg_live_allocations(), c0 = qg__alloc_calls();
    qg_module *m = build(&g);
    int64_t calls = qg__alloc_calls() - c0;
    qg_module_free(m);
    qg_shutdown();
    int failed = 0, built = 0;
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, SHAPE(2, 1, 8, 8));
    qg_tensor *y = qg_tensor_from_data(QG_I64, 1, SHAPE(2), (int64_t[]){1, 0});
    live = qg_live_allocations();
    for (int64_t n = 0; n < calls; n++) {
        qg_clear_error();
        qg__fail_alloc_after(n);
        m = build(&g);
        qg__fail_alloc_after(-1);
        if (!m) {
            failed++;
            CHECK(*qg_last_error(), "allocation %lld: failed without a message", (long long)n);
        }
        char why[256];
        snprintf(why, sizeof why, "%s", m ? "built" : qg_last_error());
        if (m) { /* only a module path label (for messages) went missing: the model must work */
            qg_tensor_list *ps = qg_module_parameters(m);
            qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.01});
            CHECK(step(m, opt, x, y) == QG_OK, "allocation %lld failing, built anyway: a step fails: %s", (long long)n,
                  qg_last_error());
            qg_sgd_free(opt), qg_tensor_list_free(ps);
            built++;
        }
        qg_module_free(m);
        qg_shutdown();
        CHECK(qg_live_allocations() == live, "allocation %lld failing (%s): %lld blocks leaked", (long long)n, why,
              (long long)(qg_live_allocations() - live));
    }
    printf("alloc_fail: build: %lld allocation calls, %d runs failed cleanly, %d built without a path label and trained\n",
           (long long)calls, failed, built);
    CHECK(failed + built == calls, "every run failed or built");
    CHECK(failed > 0, "failures were injected");
    CHECK(qg_live_allocations() == live, "nothing leaked (%lld blocks)", (long long)(qg_live_allocations() - live));
    qg_tensor_free(x), qg_tensor_free(y);
}

static int files_in(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

/* export once (C: dir/m.h and m.c; ONNX: dir/m.onnx) */
static qg_status export_to(qg_module *m, const char *dir, bool onnx) {
    const qg_export_opts eo = {.ndim = 3, .shape = {1, 8, 8}};
    char p[128];
    snprintf(p, sizeof p, "%s/m.onnx", dir);
    return onnx ? qg_export_onnx(m, p, &eo) : qg_export_c(m, dir, "m", &eo, NULL);
}

static void test_export_every_n(bool onnx) {
    qg_rng g;
    qg_rng_init(&g, 5);
    char dir[] = "/tmp/qg_alloc_export_XXXXXX", ref[] = "/tmp/qg_alloc_export_ref_XXXXXX", cmd[256];
    CHECK(mkdtemp(dir) && mkdtemp(ref), "mkdtemp");
    qg_module *m = build(&g);
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, SHAPE(2, 1, 8, 8));
    CHECK(m && qg_module_forward(m, x), "calibration: %s", qg_last_error());
    qg_tape_reset(NULL);
    qg_module_eval(m);
    CHECK(m && !qg_convert(m, NULL), "convert: %s", qg_last_error());
    /* and a dynamic Linear on the f32 output */
    qg_tensor *wf = qg_tensor_randn(&g, QG_F32, 2, SHAPE(2, 3)), *wq = qg_quantize_per_tensor(wf, 0.02, 0, QG_QINT8);
    CHECK(wq && !qg_sequential_add(m, "dyn", qg_quantized_dynamic_linear_new(wq, NULL, true, QG_QENGINE_ONEDNN)),
          "dynamic: %s", qg_last_error());
    qg_tensor_free(wf), qg_tensor_free(wq);
    qg_tape_reset(NULL);
    if (onnx && export_to(m, ref, true) && strstr(qg_last_error(), "without ONNX")) {
        printf("alloc_fail: export_onnx: skipped (%s)\n", qg_last_error());
        snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, ref);
        CHECK(!system(cmd), "%s", cmd);
        qg_tensor_free(x), qg_module_free(m);
        return;
    }
    int64_t c0 = qg__alloc_calls();
    CHECK(!export_to(m, ref, onnx), "export: %s", qg_last_error());
    int64_t calls = qg__alloc_calls() - c0;
    const int nfiles = files_in(ref);
    qg_tape_reset(NULL);
    int64_t live = qg_live_allocations();
    int failed = 0;
    for (int64_t n = 0; n < calls; n++) {
        snprintf(cmd, sizeof cmd, "rm -f %s/*", dir);
        CHECK(!system(cmd), "%s", cmd);
        qg_clear_error();
        qg__fail_alloc_after(n);
        qg_status st = export_to(m, dir, onnx);
        qg__fail_alloc_after(-1);
        qg_tape_reset(NULL);
        failed += st != QG_OK;
        CHECK(!st || *qg_last_error(), "allocation %lld: failed without a message", (long long)n);
        CHECK(files_in(dir) == (st ? 0 : nfiles), "allocation %lld failing (%s): %d files in %s", (long long)n,
              st ? qg_last_error() : "exported", files_in(dir), dir);
        snprintf(cmd, sizeof cmd, "diff -r %s %s >/dev/null", dir, ref);
        CHECK(st || !system(cmd), "allocation %lld failing, exported anyway: the files differ", (long long)n);
        CHECK(qg_live_allocations() == live, "allocation %lld failing: %lld blocks leaked", (long long)n,
              (long long)(qg_live_allocations() - live));
    }
    printf("alloc_fail: export_%s: %lld allocation calls, %d runs failed cleanly\n", onnx ? "onnx" : "c",
           (long long)calls, failed);
    CHECK(failed > 0, "failures were injected");
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, ref);
    CHECK(!system(cmd), "%s", cmd);
    qg_tensor_free(x), qg_module_free(m);
}

int main(void) {
    qg_set_num_threads(1); /* the same allocation order on every run */
    test_training_step_every_n();
    test_build_every_n();
    test_export_every_n(false);
    test_export_every_n(true);
    qg_shutdown();
    return test_summary("alloc_fail");
}
