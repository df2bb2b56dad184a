/* The float fused modules (intrinsic.LinearReLU, ConvBn2d, ConvBnReLU2d, ...: children
 * "0", "1", "2" run in order) and fuse_modules_qat, which puts a run of modules of a
 * known pattern into one of them (the others become Identity), as PyTorch's
 * fuse_modules_qat does. */
#include "internal.h"
#include "qat_internal.h"

static qg_tensor *chain_forward(qg_module *m, qg_tensor *x) {
    for (int i = 0; i < qg__module_nchildren(m) && x; i++) x = qg_module_forward(qg__module_child_at(m, i, NULL), x);
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

bool qg__is_fused_float(const qg_module *m) {
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

