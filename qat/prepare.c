/* prepare_qat, PyTorch's eager-mode flow after fusing (fused_float.c): swaps modules
 * for their QAT types and attaches the output fake-quant where PyTorch's prepare
 * does. */
#include "internal.h"
#include "qat_internal.h"

/* ------------------------------------------------------------- prepare_qat */

static bool swappable(const qg_module *m) {
    return qg_module_is(m, "Linear") || qg_module_is(m, "Conv1d") || qg_module_is(m, "Conv2d") || qg__is_fused_float(m);
}

/* Swaps children bottom-up; fused modules are swapped whole, never entered. */
static qg_status swap_rec(qg_module *m, const qg_qconfig *qc, const char *path) {
    for (int i = 0; i < qg__module_nchildren(m); i++) {
        const char *name;
        qg_module *c = qg__module_child_at(m, i, &name);
        char cpath[512];
        snprintf(cpath, sizeof cpath, *path ? "%s.%s" : "%s%s", path, name);
        if (qg__is_qat_module(c))
            return qg__err(QG_EINVAL, "prepare_qat: module '%s' (%s) is already a QAT module; prepare a float model once", cpath,
                           c->type->name);
        if (swappable(c)) {
            qg_module *q = qg_qat_from_float(c, qc);
            if (!q) return qg__err(qg_last_status(), "prepare_qat: module '%s': %s", cpath, qg_last_error());
            qg__module_set_child_at(m, i, q);
        } else if (!qg__is_observer(c)) {
            qg_status st = swap_rec(c, qc, cpath);
            if (st) return st;
        }
    }
    return QG_OK;
}

/* Where PyTorch 1.13's eager prepare puts an output fake-quant: QAT modules,
 * QuantStub, and the float modules with quantized counterparts (BatchNorm2d, ReLU6). */
static bool wants_output_fq(const qg_module *m) {
    return qg__is_qat_module(m) || qg_module_is(m, "QuantStub") || qg_module_is(m, "BatchNorm2d") ||
           qg_module_is(m, "ReLU6");
}

typedef struct {
    const qg_qconfig *qc;
    qg_status st;
} attach_ctx;

static void attach(qg_module *m, const char *path, void *vctx) {
    attach_ctx *c = vctx;
    if (c->st || m->output_hook || !wants_output_fq(m)) return;
    /* the fake-quant's own BN child of a Bn QAT module is not an output */
    const char *last = strrchr(path, '.');
    if (last && !strcmp(last + 1, "bn")) return;
    qg_module *fq = qg_fake_quant_new(&c->qc->activation);
    if (!fq || qg_module_set_output_hook(m, "activation_post_process", fq))
        c->st = qg__err(qg_last_status(), "prepare_qat: module '%s': %s", path, qg_last_error());
}

static void set_path(qg_module *m, const char *path, void *ctx) {
    (void)ctx;
    qg_module_set_path(m, path);
}

qg_status qg_prepare_qat(qg_module *model, const qg_qconfig *qc) {
    if (!model) return qg__err_null("prepare_qat");
    if (!qc) return qg__err(QG_EINVAL, "prepare_qat: qconfig is NULL");
    if (qg__check_spec("prepare_qat", &qc->activation) || qg__check_spec("prepare_qat", &qc->weight)) return qg_last_status();
    qg_status st = swap_rec(model, qc, "");
    if (st) return st;
    attach_ctx c = {qc, QG_OK};
    qg_module_apply(model, attach, &c);
    if (c.st) return c.st;
    qg_module_apply(model, set_path, NULL);
    return QG_OK;
}
