/* fuse_modules_qat and prepare_qat, PyTorch's eager-mode flow: fusing puts a run of
 * modules into one float fused module (the rest become Identity); preparing swaps
 * modules for their QAT types and attaches the output fake-quant where PyTorch's
 * prepare does. */
#include "internal.h"
#include "qat_internal.h"

/* ------------------------------------------------------------- fused float modules */

static qg_tensor *chain_forward(qg_module *m, qg_tensor *x) {
    for (int i = 0; i < m->nchildren && x; i++) x = qg_module_forward(m->children[i].ptr, x);
    return x;
}

#define FUSED_TYPE(var, nm) static const qg_module_type var = {.name = nm, .size = sizeof(qg_module), .forward = chain_forward}
FUSED_TYPE(f_linear_relu, "intrinsic.LinearReLU");
FUSED_TYPE(f_linear_bn, "intrinsic.LinearBn1d");
FUSED_TYPE(f_convbn1d, "intrinsic.ConvBn1d");
FUSED_TYPE(f_convbn2d, "intrinsic.ConvBn2d");
FUSED_TYPE(f_convbnrelu1d, "intrinsic.ConvBnReLU1d");
FUSED_TYPE(f_convbnrelu2d, "intrinsic.ConvBnReLU2d");
FUSED_TYPE(f_convrelu1d, "intrinsic.ConvReLU1d");
FUSED_TYPE(f_convrelu2d, "intrinsic.ConvReLU2d");

/* the patterns fuse_modules_qat knows: member types, in order, and the fused type */
static const struct {
    const char *types[3];
    const qg_module_type *fused;
} patterns[] = {
    {{"Conv2d", "BatchNorm2d", "ReLU"}, &f_convbnrelu2d},
    {{"Conv1d", "BatchNorm1d", "ReLU"}, &f_convbnrelu1d},
    {{"Conv2d", "BatchNorm2d", NULL}, &f_convbn2d},
    {{"Conv1d", "BatchNorm1d", NULL}, &f_convbn1d},
    {{"Conv2d", "ReLU", NULL}, &f_convrelu2d},
    {{"Conv1d", "ReLU", NULL}, &f_convrelu1d},
    {{"Linear", "ReLU", NULL}, &f_linear_relu},
    {{"Linear", "BatchNorm1d", NULL}, &f_linear_bn},
};
#define NPATTERNS (int)(sizeof patterns / sizeof patterns[0])

static bool is_fused_float(const qg_module *m) {
    for (int i = 0; m && i < NPATTERNS; i++)
        if (m->type == patterns[i].fused) return true;
    return false;
}

/* Makes a fused float module owning a, b and (if given) c as children "0", "1", "2". */
qg_module *qg__fused_float_new(const char *type_name, qg_module *a, qg_module *b, qg_module *c) {
    const qg_module_type *t = NULL;
    for (int i = 0; i < NPATTERNS && !t; i++)
        if (!strcmp(patterns[i].fused->name, type_name)) t = patterns[i].fused;
    qg_module *m = t ? qg_module_new(t) : NULL;
    if (!m) {
        qg_module_free(a), qg_module_free(b), qg_module_free(c);
        return t ? NULL : (qg__err(QG_EINVAL, "fused module type %s unknown", type_name), NULL);
    }
    qg_status st = qg_module_add_child(m, "0", a);
    if (!st) st = qg_module_add_child(m, "1", b);
    else qg_module_free(b);
    if (c) {
        if (!st) st = qg_module_add_child(m, "2", c);
        else qg_module_free(c);
    }
    if (st) {
        qg_module_free(m);
        return NULL;
    }
    m->training = a->training;
    return m;
}

/* ------------------------------------------------------------- fuse_modules_qat */

static qg_status fuse_group(qg_module *model, const char *const *paths, int n) {
    char list[512] = "";
    size_t len = 0;
    qg_module *mods[3];
    for (int i = 0; i < n; i++) {
        if (!(mods[i] = qg_module_get(model, paths[i]))) return qg_last_status();
        len += (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0, "%s%s (%s)", i ? ", " : "",
                                paths[i], mods[i]->type->name);
    }
    int pi = -1;
    for (int p = 0; p < NPATTERNS && pi < 0; p++) {
        bool match = true;
        for (int i = 0; i < 3 && match; i++)
            match = i < n ? patterns[p].types[i] && qg_module_is(mods[i], patterns[p].types[i]) : !patterns[p].types[i];
        if (match) pi = p;
    }
    if (pi < 0)
        return qg__err(QG_EINVAL, "fuse_modules_qat: cannot fuse [%s]: known patterns are conv+bn, conv+bn+relu, "
                                  "conv+relu, linear+relu, linear+bn", list);
    for (int i = 1; i < n; i++)
        if (qg_module_is(mods[i], "BatchNorm1d") || qg_module_is(mods[i], "BatchNorm2d")) {
            qg_layer_info a, b;
            qg_nn_layer_info(mods[0], &a);
            qg_nn_layer_info(mods[i], &b);
            if (a.out != b.out)
                return qg__err(QG_ESHAPE, "fuse_modules_qat: [%s]: output channels %lld of %s must match num_features %lld of %s",
                               list, (long long)a.out, paths[0], (long long)b.out, paths[i]);
            if (!b.affine || !b.track)
                return qg__err(QG_EINVAL, "fuse_modules_qat: [%s]: %s needs affine=True and track_running_stats=True", list, paths[i]);
            if (mods[0]->training != mods[i]->training)
                return qg__err(QG_EINVAL, "fuse_modules_qat: [%s]: conv and BN must both be in training or eval mode", list);
        }
    /* Everything that can fail comes first, so that a failure leaves the model as it
     * was: the fused module with Identity placeholders as its children, and the
     * Identities that take the later members' places. Then only swaps remain. */
    qg_module *ph[3] = {NULL, NULL, NULL}, *ids[3] = {NULL, NULL, NULL};
    bool ok = true;
    for (int i = 0; i < n; i++) ok = (ph[i] = qg_nn_identity_new()) && ok;
    qg_module *fused = ok ? qg__fused_float_new(patterns[pi].fused->name, ph[0], ph[1], ph[2]) : NULL;
    if (!ok) qg_module_free(ph[0]), qg_module_free(ph[1]), qg_module_free(ph[2]);
    for (int i = 1; i < n && fused; i++) ok = (ids[i] = qg_nn_identity_new()) && ok;
    if (!fused || !ok) {
        qg_module_free(fused), qg_module_free(ids[1]), qg_module_free(ids[2]);
        return qg_last_status();
    }
    static const char *const slot[3] = {"0", "1", "2"};
    for (int i = 0; i < n; i++) {
        qg_module *member = qg_module_replace(model, paths[i], i ? ids[i] : fused);
        if (i) ids[i]->training = member->training;
        qg_module_free(qg_module_replace(fused, slot[i], member)); /* the placeholder */
    }
    fused->training = mods[0]->training;
    return QG_OK;
}

qg_status qg_fuse_modules_qat(qg_module *model, int ngroups, const char *const *const *groups, const int *sizes) {
    if (!model || (ngroups > 0 && (!groups || !sizes))) return qg__err_null("fuse_modules_qat");
    if (ngroups < 0) return qg__err(QG_EINVAL, "fuse_modules_qat: ngroups must be >= 0, got %d", ngroups);
    for (int g = 0; g < ngroups; g++) {
        if (sizes[g] < 2 || sizes[g] > 3 || !groups[g])
            return qg__err(QG_EINVAL, "fuse_modules_qat: group %d has %d modules (expected 2 or 3)", g, sizes[g]);
        qg_status st = fuse_group(model, groups[g], sizes[g]);
        if (st) return st;
    }
    return QG_OK;
}

/* ------------------------------------------------------------- prepare_qat */

static bool swappable(const qg_module *m) {
    return qg_module_is(m, "Linear") || qg_module_is(m, "Conv1d") || qg_module_is(m, "Conv2d") || is_fused_float(m);
}

/* Swaps children bottom-up; fused modules are swapped whole, never entered. */
static qg_status swap_rec(qg_module *m, const qg_qconfig *qc, const char *path) {
    for (int i = 0; i < m->nchildren; i++) {
        qg_module *c = m->children[i].ptr;
        char cpath[512];
        snprintf(cpath, sizeof cpath, *path ? "%s.%s" : "%s%s", path, m->children[i].name);
        if (qg__is_qat_module(c))
            return qg__err(QG_EINVAL, "prepare_qat: module '%s' (%s) is already a QAT module; prepare a float model once", cpath,
                           c->type->name);
        if (swappable(c)) {
            qg_module *q = qg_qat_from_float(c, qc);
            if (!q) return qg__err(qg_last_status(), "prepare_qat: module '%s': %s", cpath, qg_last_error());
            m->children[i].ptr = q;
            if (m->output_hook == c) m->output_hook = q;
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
