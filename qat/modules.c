/* The QAT module family: qat Linear/Conv1d/Conv2d, dynamic Linear, and the fused
 * intrinsic ones (LinearReLU, LinearBn1d, ConvBn*, ConvBnReLU*, ConvReLU*), plus the
 * float fused modules fuse_modules_qat makes. One struct serves all: a base op
 * (linear, conv1d, conv2d) with optional BN and ReLU. */
#include <math.h>

#include "internal.h"
#include "qat_internal.h"

enum { OP_LINEAR, OP_CONV1D, OP_CONV2D };

typedef struct {
    const char *name;      /* the QAT type */
    const char *float_name;/* the float (fused) type from_float takes */
    int op;
    bool bn, relu, dynamic;
} qat_kind;

/* A child forward uses, found by name once: found again only if the child at its
 * index was replaced or removed since. */
typedef struct {
    qg_module *mod;
    int i;
} qat_part;

typedef struct {
    qg_module base;
    const qat_kind *kind;
    int64_t in, out;
    int kernel[2], stride[2], padding[2], dilation[2], groups;
    bool freeze_bn;
    qg_qconfig qconfig;
    qat_part wfq, bn;          /* weight_fake_quant, bn */
    int w_i, b_i;              /* the weight and bias slots */
    int bn_w_i, bn_var_i;      /* the BN's weight and running_var slots */
    double bn_eps;
} qat_mod;

static qg_tensor *qat_forward(qg_module *m, qg_tensor *x);
static void qat_train(qg_module *m, bool mode);

#define QAT_TYPE(var, nm) static const qg_module_type var = {.name = nm, .size = sizeof(qat_mod), .forward = qat_forward, .train = qat_train}
QAT_TYPE(t_linear, "qat.Linear");
QAT_TYPE(t_conv1d, "qat.Conv1d");
QAT_TYPE(t_conv2d, "qat.Conv2d");
QAT_TYPE(t_dyn_linear, "qat.dynamic.Linear");
QAT_TYPE(t_linear_relu, "intrinsic.qat.LinearReLU");
QAT_TYPE(t_linear_bn, "intrinsic.qat.LinearBn1d");
QAT_TYPE(t_convbn1d, "intrinsic.qat.ConvBn1d");
QAT_TYPE(t_convbn2d, "intrinsic.qat.ConvBn2d");
QAT_TYPE(t_convbnrelu1d, "intrinsic.qat.ConvBnReLU1d");
QAT_TYPE(t_convbnrelu2d, "intrinsic.qat.ConvBnReLU2d");
QAT_TYPE(t_convrelu1d, "intrinsic.qat.ConvReLU1d");
QAT_TYPE(t_convrelu2d, "intrinsic.qat.ConvReLU2d");

/* QAT type, float type it comes from, base op, BN, ReLU, dynamic */
static const qat_kind kinds[] = {
    {"qat.Linear", "Linear", OP_LINEAR, false, false, false},
    {"qat.Conv1d", "Conv1d", OP_CONV1D, false, false, false},
    {"qat.Conv2d", "Conv2d", OP_CONV2D, false, false, false},
    {"qat.dynamic.Linear", "Linear", OP_LINEAR, false, false, true},
    {"intrinsic.qat.LinearReLU", "intrinsic.LinearReLU", OP_LINEAR, false, true, false},
    {"intrinsic.qat.LinearBn1d", "intrinsic.LinearBn1d", OP_LINEAR, true, false, false},
    {"intrinsic.qat.ConvBn1d", "intrinsic.ConvBn1d", OP_CONV1D, true, false, false},
    {"intrinsic.qat.ConvBn2d", "intrinsic.ConvBn2d", OP_CONV2D, true, false, false},
    {"intrinsic.qat.ConvBnReLU1d", "intrinsic.ConvBnReLU1d", OP_CONV1D, true, true, false},
    {"intrinsic.qat.ConvBnReLU2d", "intrinsic.ConvBnReLU2d", OP_CONV2D, true, true, false},
    {"intrinsic.qat.ConvReLU1d", "intrinsic.ConvReLU1d", OP_CONV1D, false, true, false},
    {"intrinsic.qat.ConvReLU2d", "intrinsic.ConvReLU2d", OP_CONV2D, false, true, false},
};
static const qg_module_type *const kind_types[] = {&t_linear, &t_conv1d, &t_conv2d, &t_dyn_linear, &t_linear_relu,
                                                   &t_linear_bn, &t_convbn1d, &t_convbn2d, &t_convbnrelu1d,
                                                   &t_convbnrelu2d, &t_convrelu1d, &t_convrelu2d};
#define NKINDS (int)(sizeof kinds / sizeof kinds[0])

static const qat_kind *kind_of(const qg_module *m) {
    for (int i = 0; m && i < NKINDS; i++)
        if (m->type == kind_types[i]) return &kinds[i];
    return NULL;
}

bool qg__is_qat_module(const qg_module *m) { return kind_of(m) != NULL; }
const qg_qconfig *qg__qat_qconfig(const qg_module *m) { return kind_of(m) ? &((const qat_mod *)m)->qconfig : NULL; }

/* ------------------------------------------------------------- forward */

/* the child p caches; *fresh says it was looked up again */
static qg_module *part(qg_module *m, qat_part *p, const char *name, bool *fresh) {
    *fresh = !p->mod || qg__module_child_at(m, p->i, NULL) != p->mod;
    if (*fresh) {
        p->i = qg__module_child_index(m, name);
        p->mod = qg__module_child_at(m, p->i, NULL);
    }
    return p->mod;
}

static qg_module *wfq_of(qat_mod *q) {
    bool fresh;
    return part(&q->base, &q->wfq, "weight_fake_quant", &fresh);
}

/* the BN child, with its weight and running_var slots and eps found when it is */
static qg_module *bn_of(qat_mod *q) {
    bool fresh;
    qg_module *bn = part(&q->base, &q->bn, "bn", &fresh);
    if (bn && fresh) {
        qg_layer_info li;
        q->bn_eps = qg_nn_layer_info(bn, &li) ? 1e-5 : li.eps;
        q->bn_w_i = qg__module_param_index(bn, "weight");
        q->bn_var_i = qg__module_buffer_index(bn, "running_var");
    }
    return bn;
}

/* the base op with weight w (already fake-quantized) and bias b (may be NULL) */
static qg_tensor *base_op(const qat_mod *q, qg_tensor *x, qg_tensor *w, qg_tensor *b) {
    if (q->kind->op == OP_LINEAR) return qg_linear(x, w, b);
    if (q->kind->op == OP_CONV1D) return qg_conv1d(x, w, b, q->stride[0], q->padding[0], q->dilation[0], q->groups);
    return qg_conv2d(x, w, b, q->stride, q->padding, q->dilation, q->groups);
}

/* f shaped to broadcast along dim 0 (weights) or dim 1 (outputs) of an nd tensor */
static qg_tensor *along(qg_tensor *f, int nd, int dim) {
    int64_t shape[4] = {1, 1, 1, 1};
    shape[dim] = -1;
    return qg_reshape(f, nd, shape);
}

/* PyTorch's _forward_approximate: scale the weight by bn.weight / running_std so the
 * fake-quant sees the folded weight, undo the scale on the output, add the bias,
 * then the BN (training or frozen) normalises. Without a bias (the usual ConvBn) the
 * un-scaling and the BN are one op (qg__batch_norm_div: the same forward bits, one
 * pass fewer each way), when the bn child is a plain BatchNorm without a hook. */
static qg_tensor *bn_forward(qat_mod *q, qg_tensor *x) {
    qg_module *m = &q->base, *bn = bn_of(q);
    if (!bn) return qg__err(QG_ESTATE, "%s: the bn child is missing", m->type->name), NULL;
    qg_tensor *w = qg__module_param_at(m, q->w_i), *b = qg__module_param_at(m, q->b_i);
    qg_tensor *std = qg_sqrt(qg_add_scalar(qg__module_buffer_at(bn, q->bn_var_i), q->bn_eps));
    qg_tensor *f = qg_div(qg__module_param_at(bn, q->bn_w_i), std);
    qg_tensor *wq = qg_module_forward(wfq_of(q), qg_mul(w, along(f, w ? w->ndim : 2, 0)));
    qg_tensor *y = base_op(q, x, wq, NULL);
    if (!b && !bn->output_hook && (qg_module_is(bn, "BatchNorm2d") || qg_module_is(bn, "BatchNorm1d")))
        return qg__bn_forward_div(bn, y, f); /* NULL y or f: their error stands */
    int nd = y ? y->ndim : 2;
    y = qg_div(y, along(f, nd, 1));
    if (b) y = qg_add(y, along(b, nd, 1));
    return y ? qg_module_forward(bn, y) : NULL;
}

static qg_tensor *qat_forward(qg_module *m, qg_tensor *x) {
    qat_mod *q = (qat_mod *)m;
    qg_tensor *y;
    if (q->kind->bn) {
        y = bn_forward(q, x);
    } else {
        qg_tensor *wq = qg_module_forward(wfq_of(q), qg__module_param_at(m, q->w_i));
        y = base_op(q, x, wq, qg__module_param_at(m, q->b_i));
    }
    return q->kind->relu ? qg_relu(y) : y;
}

/* A frozen BN keeps its mode through train(), as PyTorch's fused modules do. */
static void qat_train(qg_module *m, bool mode) {
    qat_mod *q = (qat_mod *)m;
    m->training = mode;
    if (q->kind->bn && q->freeze_bn) return;
    for (int i = 0; i < qg__module_nchildren(m); i++) qg_module_train(qg__module_child_at(m, i, NULL), mode);
}

static void set_bn_frozen(qg_module *m, const char *path, void *ctx) {
    (void)path;
    const qat_kind *k = kind_of(m);
    if (!k || !k->bn) return;
    qat_mod *q = (qat_mod *)m;
    q->freeze_bn = *(bool *)ctx;
    qg_module *bn = qg_module_child(m, "bn");
    if (bn) qg_module_train(bn, !q->freeze_bn);
}

void qg_freeze_bn_stats(qg_module *m) { qg_module_apply(m, set_bn_frozen, &(bool){true}); }
void qg_update_bn_stats(qg_module *m) { qg_module_apply(m, set_bn_frozen, &(bool){false}); }

/* ------------------------------------------------------------- from_float */

/* Takes the tensor out of a module slot (so freeing that module leaves it alone). */
static qg_tensor *take_param(qg_module *m, const char *name) { return qg__module_take_param(m, name); }

static qg_status check_qconfig(const char *what, const qg_qconfig *qc) {
    if (!qc) return qg__err(QG_EINVAL, "%s: qconfig must be provided for QAT module (the float module has none)", what);
    if (qg__check_spec(what, &qc->activation) || qg__check_spec(what, &qc->weight)) return qg_last_status();
    return QG_OK;
}

/* The float parts of a (possibly fused) float module: base, bn, relu. */
static qg_status float_parts(qg_module *f, const qat_kind *k, qg_module **base, qg_module **bn) {
    *base = f, *bn = NULL;
    bool fused = !strncmp(k->float_name, "intrinsic.", 10);
    if (fused) {
        *base = qg_module_child(f, "0");
        if (k->bn) *bn = qg_module_child(f, "1");
    }
    const char *base_type = k->op == OP_LINEAR ? "Linear" : k->op == OP_CONV1D ? "Conv1d" : "Conv2d";
    if (!*base || !qg_module_is(*base, base_type) || (k->bn && !*bn))
        return qg__err(QG_EINVAL, "from_float: %s is malformed (expected %s children)", f->type->name, base_type);
    return QG_OK;
}

static qg_module *make_qat(const qat_kind *k, const qg_module *base, const qg_qconfig *qc) {
    qg_module *m = qg_module_new(kind_types[k - kinds]);
    if (!m) return NULL;
    qat_mod *q = (qat_mod *)m;
    q->kind = k;
    q->qconfig = *qc;
    qg_layer_info li;
    if (qg_nn_layer_info(base, &li)) {
        qg_module_free(m);
        return NULL;
    }
    q->in = li.in, q->out = li.out, q->groups = li.groups;
    memcpy(q->kernel, li.kernel, sizeof q->kernel);
    memcpy(q->stride, li.stride, sizeof q->stride);
    memcpy(q->padding, li.padding, sizeof q->padding);
    memcpy(q->dilation, li.dilation, sizeof q->dilation);
    return m;
}

static qg_module *from_float(qg_module *f, const qg_qconfig *qc, bool dynamic) {
    if (!f) return qg__err_null("qat_from_float"), NULL;
    const qat_kind *k = NULL;
    for (int i = 0; i < NKINDS && !k; i++)
        if (kinds[i].dynamic == dynamic && qg_module_is(f, kinds[i].float_name)) k = &kinds[i];
    if (!k)
        return qg__err(QG_EINVAL, "qat from_float only works for Linear, Conv1d, Conv2d and the intrinsic fused "
                                  "modules, got %s", f->type->name), NULL;
    if (check_qconfig(k->name, qc)) return NULL;
    if (dynamic && qg_opt_or(qc->activation.averaging_constant, 0.01) != 1)
        return qg__err(QG_EINVAL, "Dynamic QAT requires a memoryless observer. This means a MovingAverage observer "
                                  "with averaging constant equal to 1 (got %g)",
                       qg_opt_or(qc->activation.averaging_constant, 0.01)), NULL;
    qg_module *base, *fbn;
    if (float_parts(f, k, &base, &fbn)) return NULL;
    qg_module *m = make_qat(k, base, qc);
    if (!m) return NULL;
    qg_status st = qg_module_add_param(m, "weight", take_param(base, "weight"));
    if (!st) st = qg_module_add_param(m, "bias", take_param(base, "bias"));
    if (!st && k->bn) { /* the float BN module moves in whole, state and all */
        qg_module *bn = qg_module_replace(f, "1", qg_nn_identity_new());
        st = bn ? qg_module_add_child(m, "bn", bn) : qg_last_status();
    }
    if (!st) st = qg_module_add_child(m, "weight_fake_quant", qg_fake_quant_new(&qc->weight));
    if (st) {
        qg_module_free(m);
        return NULL;
    }
    qat_mod *q = (qat_mod *)m;
    q->freeze_bn = false;
    q->w_i = qg__module_param_index(m, "weight"), q->b_i = qg__module_param_index(m, "bias");
    q->wfq.i = q->bn.i = -1;
    qg_module_train(m, f->training);
    qg_module_free(f);
    return m;
}

qg_module *qg_qat_from_float(qg_module *f, const qg_qconfig *qc) { return from_float(f, qc, false); }
qg_module *qg_qat_dynamic_linear_from_float(qg_module *f, const qg_qconfig *qc) { return from_float(f, qc, true); }

/* ------------------------------------------------------------- to_float */

/* A float Linear/Conv with the QAT module's geometry (weights overwritten by the caller). */
static qg_module *float_like(const qat_mod *q, bool bias) {
    if (q->kind->op == OP_LINEAR) return qg_nn_linear_new(q->in, q->out, &(qg_linear_opts){.no_bias = !bias}, NULL);
    qg_conv_opts o = {.groups = q->groups, .no_bias = !bias};
    memcpy(o.stride, q->stride, sizeof o.stride);
    memcpy(o.padding, q->padding, sizeof o.padding);
    memcpy(o.dilation, q->dilation, sizeof o.dilation);
    if (q->kind->op == OP_CONV1D) return qg_nn_conv1d_new(q->in, q->out, q->kernel[1], &o, NULL);
    return qg_nn_conv2d_new(q->in, q->out, q->kernel[0], q->kernel[1], &o, NULL);
}

qg_module *qg_qat_to_float(const qg_module *m) {
    const qat_kind *k = kind_of(m);
    if (!k)
        return qg__err(QG_EINVAL, "qat_to_float: %s is not a QAT module%s", m ? m->type->name : "NULL",
                       m ? " (qg_qat_to_float_model converts a whole model)" : ""), NULL;
    const qat_mod *q = (const qat_mod *)m;
    qg_tensor *w = qg_module_param(m, "weight"), *b = qg_module_param(m, "bias");
    qg_module *f = float_like(q, b != NULL || k->bn);
    if (!f) return NULL;
    qg_tensor *fw = qg_module_param(f, "weight"), *fb = qg_module_param(f, "bias");
    qg_tensor_copy_(fw, w);
    if (b) qg_tensor_copy_(fb, b);
    if (k->bn) { /* fold: W' = W g / sqrt(rv + eps), b' = (b - rm) g / sqrt(rv + eps) + beta */
        qg_module *bn = qg_module_child(m, "bn");
        const float *rm = qg_tensor_data(qg_module_buffer(bn, "running_mean"));
        const float *rv = qg_tensor_data(qg_module_buffer(bn, "running_var"));
        const float *g = qg_tensor_data(qg_module_param(bn, "weight")), *beta = qg_tensor_data(qg_module_param(bn, "bias"));
        qg_layer_info li;
        qg_nn_layer_info(bn, &li);
        float eps = (float)li.eps;
        float *W = qg_tensor_data(fw), *B = qg_tensor_data(fb);
        int64_t per = qg_tensor_numel(fw) / q->out;
        for (int64_t o = 0; o < q->out; o++) {
            float r = 1.0f / sqrtf(rv[o] + eps); /* torch.rsqrt */
            float s = g[o] * r;
            for (int64_t i = 0; i < per; i++) W[o * per + i] = W[o * per + i] * s;
            float b0 = b ? B[o] : 0.0f;
            /* PyTorch's fuse_linear_bn_weights multiplies by g r at once, fuse_conv_bn_weights by r,
             * then g; one rounding per statement (no contraction into an FMA) */
            float d = b0 - rm[o];
            float t = k->op == OP_LINEAR ? d * s : d * r;
            if (k->op != OP_LINEAR) t = t * g[o];
            B[o] = t + beta[o];
        }
    }
    qg_module_train(f, m->training);
    if (k->relu) {
        const char *fused = k->op == OP_LINEAR ? "intrinsic.LinearReLU" : k->op == OP_CONV1D ? "intrinsic.ConvReLU1d" : "intrinsic.ConvReLU2d";
        qg_module *r = qg__fused_float_new(fused, f, qg_nn_relu_new(), NULL);
        if (r) qg_module_train(r, m->training);
        return r;
    }
    return f;
}

/* The whole tree back to float, in place: each QAT module becomes its float module
 * (BN folded), and the fake-quant output hooks are removed. */
qg_status qg_qat_to_float_model(qg_module *model) {
    if (!model) return qg__err_null("qat_to_float_model");
    if (kind_of(model))
        return qg__err(QG_EINVAL, "qat_to_float_model: the model itself is a %s; use qg_qat_to_float for one module",
                       model->type->name);
    if (model->output_hook && qg_module_child(model, "activation_post_process") == model->output_hook)
        qg_module_free(qg_module_remove_child(model, "activation_post_process"));
    for (int i = 0; i < qg__module_nchildren(model); i++) {
        const char *name;
        qg_module *c = qg__module_child_at(model, i, &name);
        if (kind_of(c)) {
            qg_module *f = qg_qat_to_float(c);
            if (!f) return qg__err(qg_last_status(), "qat_to_float_model: %s: %s", name, qg_last_error());
            qg__module_set_child_at(model, i, f);
            qg_module_free(c);
        } else {
            qg_status st = qg_qat_to_float_model(c);
            if (st) return st;
        }
    }
    return QG_OK;
}

/* ------------------------------------------------------------- constructors */

qg_module *qg_qat_new(const char *type_name, const qg_qat_args *a, const qg_qconfig *qc, qg_rng *gen) {
    if (!type_name || !a) return qg__err_null("qat_new"), NULL;
    const qat_kind *k = NULL;
    for (int i = 0; i < NKINDS && !k; i++)
        if (!strcmp(kinds[i].name, type_name)) k = &kinds[i];
    if (!k) return qg__err(QG_EINVAL, "qat_new: unknown QAT type '%s'", type_name), NULL;
    if (check_qconfig(k->name, qc)) return NULL;
    /* the float parts as PyTorch's constructor makes them, then from_float */
    qg_module *base;
    if (k->op == OP_LINEAR) {
        base = qg_nn_linear_new(a->in, a->out, &(qg_linear_opts){.no_bias = a->no_bias}, gen);
    } else {
        qg_conv_opts o = {.groups = a->groups, .no_bias = a->no_bias};
        memcpy(o.stride, a->stride, sizeof o.stride);
        memcpy(o.padding, a->padding, sizeof o.padding);
        memcpy(o.dilation, a->dilation, sizeof o.dilation);
        base = k->op == OP_CONV1D ? qg_nn_conv1d_new(a->in, a->out, a->kernel[1], &o, gen)
                                  : qg_nn_conv2d_new(a->in, a->out, a->kernel[0], a->kernel[1], &o, gen);
    }
    if (!base) return NULL;
    qg_module *f = base;
    if (k->bn || k->relu) {
        qg_module *bn = NULL;
        if (k->bn) {
            qg_bn_opts bo = {.eps = a->eps, .momentum = a->momentum};
            bn = k->op == OP_CONV2D ? qg_nn_batchnorm2d_new(a->out, &bo) : qg_nn_batchnorm1d_new(a->out, &bo);
            if (!bn) { /* bad eps or momentum: the BN's error */
                qg_module_free(base);
                return NULL;
            }
            qg_tensor_uniform_(qg_module_param(bn, "weight"), gen, 0, 1); /* reset_bn_parameters */
        }
        f = qg__fused_float_new(k->float_name, base, bn ? bn : qg_nn_relu_new(), bn && k->relu ? qg_nn_relu_new() : NULL);
        if (!f) return NULL;
    }
    qg_module *q = from_float(f, qc, k->dynamic);
    if (!q) {
        qg_module_free(f);
        return NULL;
    }
    if (a->freeze_bn) qg_freeze_bn_stats(q);
    return q;
}
