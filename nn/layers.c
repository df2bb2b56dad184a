/* PyTorch's layers as modules: each is a small struct embedding qg_module, a
 * forward that calls the functional op, and a constructor that initialises like
 * PyTorch (kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))). */
#include <math.h>

#include "internal.h"
#include "qgrad/nn.h"

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, as nn.Linear and nn.ConvNd do */
static qg_tensor *uniform_init(int ndim, const int64_t *shape, double fan_in, qg_rng *gen) {
    qg_tensor *t = qg_tensor_empty(QG_F32, ndim, shape);
    double bound = fan_in > 0 ? 1.0 / sqrt(fan_in) : 0.0;
    if (t) qg_tensor_uniform_(t, gen, -bound, bound);
    return t;
}

static qg_status add_made(qg_module *m, const char *name, qg_tensor *t, bool param) {
    return param ? qg__module_add_param_made(m, name, t) : qg__module_add_buffer_made(m, name, t);
}
static qg_status add_init(qg_module *m, const char *name, qg_tensor *t) { return add_made(m, name, t, true); }

/* constructors register several tensors; any failure frees the half-made module */
static qg_module *finish(qg_module *m, qg_status st) {
    if (st) {
        qg_module_free(m);
        return NULL;
    }
    return m;
}

static qg_status positive(const char *op, const char *what, int64_t v) {
    return v > 0 ? QG_OK : qg__err(QG_EINVAL, "%s: %s must be positive, got %lld", op, what, (long long)v);
}

/* ------------------------------------------------------------- Sequential */

/* A Sequential remembers the first child that failed to build (a NULL child, as ops
 * take NULL inputs), so that a model built by many adds is checked once. */
typedef struct {
    qg_module base;
    qg_status st;
    char msg[256];
} seq_mod;

static const qg_module_type identity_type;

/* Whether child i is an Identity with no output hook: it returns its input, so a fusion
 * looks past it (fuse_modules leaves Identity where the fused modules were). */
static bool plain_identity(const qg_module *m, int i) {
    const qg_module *c = m->children[i].ptr;
    return c->type == &identity_type && !c->output_hook;
}

static qg_tensor *sequential_forward(qg_module *m, qg_tensor *x) {
    seq_mod *s = (seq_mod *)m;
    if (s->st) return qg__err(s->st, "Sequential was not built: %s", s->msg), NULL;
    for (int i = 0; i < m->nchildren && x; i++) {
        qg_module *c = m->children[i].ptr;
        int j = i + 1;
        while (j < m->nchildren && plain_identity(m, j)) j++;
        qg_module *next = j < m->nchildren ? m->children[j].ptr : NULL;
        if (qg__module_fuses(c, next))
            x = qg__module_forward_fused(c, next, x), i = j;
        else
            x = qg_module_forward(c, x);
    }
    return x;
}

static const qg_module_type sequential_type = {.name = "Sequential", .size = sizeof(seq_mod), .forward = sequential_forward};

qg_module *qg_sequential_new(void) { return qg_module_new(&sequential_type); }

qg_status qg_sequential_status(const qg_module *seq) {
    if (!seq) return qg__err_null("sequential_status");
    if (!qg_module_is(seq, "Sequential")) return qg__err(QG_EINVAL, "sequential_status: %s is not a Sequential", seq->type->name);
    const seq_mod *s = (const seq_mod *)seq;
    if (s->st) qg__err(s->st, "Sequential was not built: %s", s->msg);
    return s->st;
}

qg_status qg_sequential_add(qg_module *seq, const char *name, qg_module *child) {
    if (!seq) return qg_module_free(child), qg__err_null("sequential_add");
    if (!qg_module_is(seq, "Sequential")) {
        if (child != seq) qg_module_free(child);
        return qg__err(QG_EINVAL, "sequential_add: the parent is a %s, not a Sequential", seq->type->name);
    }
    seq_mod *s = (seq_mod *)seq;
    qg_status st = child ? qg_module_add_child(seq, name, child) : qg__err_null("sequential_add");
    if (st && !s->st) { /* keep the first failure */
        s->st = st;
        snprintf(s->msg, sizeof s->msg, "%s%s%s", name ? name : "", name ? ": " : "", qg_last_error());
    }
    return st;
}

qg_status qg_sequential_append(qg_module *seq, qg_module *child) {
    char name[16];
    if (!seq) return qg_module_free(child), qg__err_null("sequential_append");
    snprintf(name, sizeof name, "%d", seq->nchildren);
    return qg_sequential_add(seq, name, child);
}

qg_module *qg_sequential_of(int n, const qg_named_module *items) {
    qg_status st = n < 0 || (n && !items) ? qg__err(QG_EINVAL, "sequential_of: need n >= 0 items") : QG_OK;
    for (int i = 0; !st && i < n; i++)
        if (!items[i].module) st = qg__err_null("sequential_of"); /* keeps the constructor's message */
    qg_module *m = st ? NULL : qg_sequential_new();
    for (int i = 0; m && i < n; i++) {
        qg_status s = items[i].name ? qg_sequential_add(m, items[i].name, items[i].module)
                                    : qg_sequential_append(m, items[i].module);
        if (s) { /* the rest are still the caller's: free them, as on any failure */
            for (int k = i + 1; k < n; k++) qg_module_free(items[k].module);
            qg_module_free(m);
            return NULL;
        }
    }
    if (!m)
        for (int i = 0; i < n && items; i++) qg_module_free(items[i].module);
    return m;
}

/* ------------------------------------------------------------- Linear */

typedef struct {
    qg_module base;
    int64_t in_features, out_features;
} linear_mod;

static qg_tensor *linear_forward(qg_module *m, qg_tensor *x) {
    return qg_linear(x, qg_module_param(m, "weight"), qg_module_param(m, "bias"));
}

static const qg_module_type linear_type = {.name = "Linear", .size = sizeof(linear_mod), .forward = linear_forward};

qg_module *qg_nn_linear_new(int64_t in, int64_t out, const qg_linear_opts *o, qg_rng *gen) {
    bool bias = !(o && o->no_bias);
    if (positive("Linear", "in_features", in) || positive("Linear", "out_features", out)) return NULL;
    qg_module *m = qg_module_new(&linear_type);
    if (!m) return NULL;
    ((linear_mod *)m)->in_features = in, ((linear_mod *)m)->out_features = out;
    qg_status st = add_init(m, "weight", uniform_init(2, (int64_t[]){out, in}, (double)in, gen));
    if (!st && bias) st = add_init(m, "bias", uniform_init(1, &out, (double)in, gen));
    if (!st && !bias) st = qg_module_add_param(m, "bias", NULL);
    return finish(m, st);
}

/* ------------------------------------------------------------- Conv1d / Conv2d */

typedef struct {
    qg_module base;
    int dims; /* 1 or 2 */
    int kernel[2], stride[2], padding[2], dilation[2], groups;
} conv_mod;

static qg_tensor *conv_forward(qg_module *m, qg_tensor *x) {
    conv_mod *c = (conv_mod *)m;
    qg_tensor *w = qg_module_param(m, "weight"), *b = qg_module_param(m, "bias");
    if (c->dims == 1) return qg_conv1d(x, w, b, c->stride[0], c->padding[0], c->dilation[0], c->groups);
    return qg_conv2d(x, w, b, c->stride, c->padding, c->dilation, c->groups);
}

static const qg_module_type conv1d_type = {.name = "Conv1d", .size = sizeof(conv_mod), .forward = conv_forward};
static const qg_module_type conv2d_type = {.name = "Conv2d", .size = sizeof(conv_mod), .forward = conv_forward};

static int opt_or(int v, int dflt) { return v ? v : dflt; }

static qg_module *conv_new(int dims, int64_t in, int64_t out, int kh, int kw, const qg_conv_opts *o, qg_rng *gen) {
    const char *op = dims == 1 ? "Conv1d" : "Conv2d";
    qg_conv_opts d = {0};
    if (!o) o = &d;
    int groups = opt_or(o->groups, 1);
    if (positive(op, "in_channels", in) || positive(op, "out_channels", out) || positive(op, "kernel_size", kh) ||
        positive(op, "kernel_size", kw) || positive(op, "groups", groups))
        return NULL;
    if (in % groups || out % groups)
        return qg__err(QG_EINVAL, "%s: in_channels %lld and out_channels %lld must be divisible by groups %d", op,
                       (long long)in, (long long)out, groups), NULL;
    qg_module *m = qg_module_new(dims == 1 ? &conv1d_type : &conv2d_type);
    if (!m) return NULL;
    conv_mod *c = (conv_mod *)m;
    c->dims = dims;
    c->kernel[0] = kh, c->kernel[1] = kw, c->groups = groups;
    for (int i = 0; i < 2; i++) { /* Conv1d reads only [0] */
        c->stride[i] = opt_or(o->stride[i], 1);
        c->padding[i] = o->padding[i];
        c->dilation[i] = opt_or(o->dilation[i], 1);
    }
    if (c->stride[0] <= 0 || c->stride[1] <= 0 || c->dilation[0] <= 0 || c->dilation[1] <= 0 || c->padding[0] < 0 ||
        c->padding[1] < 0) {
        qg_module_free(m);
        return qg__err(QG_EINVAL, "%s: stride and dilation must be positive, padding non-negative", op), NULL;
    }
    double fan_in = (double)(in / groups) * kh * kw; /* no int64 overflow for huge sizes */
    int64_t shape[4] = {out, in / groups, kh, kw};
    if (dims == 1) shape[2] = kw;
    qg_status st = add_init(m, "weight", uniform_init(dims + 2, shape, fan_in, gen));
    if (!st && !o->no_bias) st = add_init(m, "bias", uniform_init(1, &out, fan_in, gen));
    if (!st && o->no_bias) st = qg_module_add_param(m, "bias", NULL);
    return finish(m, st);
}

qg_module *qg_nn_conv1d_new(int64_t in, int64_t out, int kernel, const qg_conv_opts *o, qg_rng *gen) {
    return conv_new(1, in, out, 1, kernel, o, gen);
}

qg_module *qg_nn_conv2d_new(int64_t in, int64_t out, int kh, int kw, const qg_conv_opts *o, qg_rng *gen) {
    return conv_new(2, in, out, kh, kw, o, gen);
}

/* ------------------------------------------------------------- BatchNorm1d / 2d */

typedef struct {
    qg_module base;
    int dims; /* 1 or 2 */
    double eps, momentum;
    bool cumulative, affine, track;
} bn_mod;

/* x, or x / f[c] (f non-NULL), normalised with the module's rules */
static qg_tensor *bn_run(qg_module *m, qg_tensor *x, qg_tensor *f) {
    bn_mod *b = (bn_mod *)m;
    const char *op = m->type->name;
    if (b->dims == 1 && x->ndim != 2 && x->ndim != 3)
        return qg__err(QG_ESHAPE, "%s: expected 2D or 3D input (got %dD input)", op, x->ndim), NULL;
    if (b->dims == 2 && x->ndim != 4)
        return qg__err(QG_ESHAPE, "%s: expected 4D input (got %dD input)", op, x->ndim), NULL;
    double factor = b->momentum;
    qg_tensor *nbt = qg_module_buffer(m, "num_batches_tracked");
    if (m->training && b->track && nbt) {
        int64_t *n = qg_tensor_data(nbt);
        *n += 1;
        if (b->cumulative) factor = 1.0 / (double)*n; /* momentum=None: cumulative average */
    }
    /* running stats are used in eval and updated in training, when tracked */
    qg_tensor *rm = qg_module_buffer(m, "running_mean"), *rv = qg_module_buffer(m, "running_var");
    bool use_batch = m->training || !rm;
    qg_tensor *w = qg_module_param(m, "weight"), *bias = qg_module_param(m, "bias");
    return f ? qg__batch_norm_div(x, f, rm, rv, w, bias, use_batch, factor, b->eps)
             : qg_batch_norm(x, rm, rv, w, bias, use_batch, factor, b->eps);
}

static qg_tensor *bn_forward(qg_module *m, qg_tensor *x) { return bn_run(m, x, NULL); }

static const qg_module_type bn1d_type = {.name = "BatchNorm1d", .size = sizeof(bn_mod), .forward = bn_forward};
static const qg_module_type bn2d_type = {.name = "BatchNorm2d", .size = sizeof(bn_mod), .forward = bn_forward};

qg_tensor *qg__bn_forward_div(qg_module *bn, qg_tensor *x, qg_tensor *f) {
    if (!bn || !x || !f) return qg__err_null("bn_forward_div"), NULL;
    if (bn->type != &bn1d_type && bn->type != &bn2d_type)
        return qg__err(QG_EINVAL, "bn_forward_div: %s is not a BatchNorm1d/2d", bn->type->name), NULL;
    return bn_run(bn, x, f);
}

static qg_module *bn_new(int dims, int64_t c, const qg_bn_opts *o) {
    qg_bn_opts d = {0};
    if (!o) o = &d;
    if (positive(dims == 1 ? "BatchNorm1d" : "BatchNorm2d", "num_features", c)) return NULL;
    qg_module *m = qg_module_new(dims == 1 ? &bn1d_type : &bn2d_type);
    if (!m) return NULL;
    bn_mod *b = (bn_mod *)m;
    b->dims = dims;
    b->eps = qg_opt_or(o->eps, 1e-5);
    b->momentum = qg_opt_or(o->momentum, 0.1);
    const char *op = dims == 1 ? "BatchNorm1d" : "BatchNorm2d";
    if (!(b->eps > 0) || !(b->momentum >= 0 && b->momentum <= 1)) {
        qg__err(QG_EINVAL, "%s: eps must be > 0 and momentum in [0, 1], got eps %g, momentum %g", op, b->eps, b->momentum);
        qg_module_free(m);
        return NULL;
    }
    b->cumulative = o->cumulative, b->affine = !o->no_affine, b->track = !o->no_track;
    qg_status st = b->affine ? add_init(m, "weight", qg_tensor_ones(QG_F32, 1, &c)) : qg_module_add_param(m, "weight", NULL);
    if (!st) st = b->affine ? add_init(m, "bias", qg_tensor_zeros(QG_F32, 1, &c)) : qg_module_add_param(m, "bias", NULL);
    if (!st && b->track) {
        st = add_made(m, "running_mean", qg_tensor_zeros(QG_F32, 1, &c), false);
        if (!st) st = add_made(m, "running_var", qg_tensor_ones(QG_F32, 1, &c), false);
        if (!st) st = add_made(m, "num_batches_tracked", qg_tensor_zeros(QG_I64, 0, NULL), false);
    }
    return finish(m, st);
}

qg_module *qg_nn_batchnorm1d_new(int64_t c, const qg_bn_opts *o) { return bn_new(1, c, o); }
qg_module *qg_nn_batchnorm2d_new(int64_t c, const qg_bn_opts *o) { return bn_new(2, c, o); }

/* ------------------------------------------------------------- activations, shape */

typedef struct {
    qg_module base;
    double a, b;
} param2_mod;

static qg_tensor *relu_forward(qg_module *m, qg_tensor *x) { return (void)m, qg_relu(x); }
static qg_tensor *hardtanh_forward(qg_module *m, qg_tensor *x) {
    return qg_hardtanh(x, ((param2_mod *)m)->a, ((param2_mod *)m)->b);
}
static qg_tensor *identity_forward(qg_module *m, qg_tensor *x) { return (void)m, x; }
static qg_tensor *flatten_forward(qg_module *m, qg_tensor *x) {
    return qg_flatten(x, (int)((param2_mod *)m)->a, (int)((param2_mod *)m)->b);
}

static const qg_module_type relu_type = {.name = "ReLU", .size = sizeof(qg_module), .forward = relu_forward};
static const qg_module_type relu6_type = {.name = "ReLU6", .size = sizeof(param2_mod), .forward = hardtanh_forward};
static const qg_module_type hardtanh_type = {.name = "Hardtanh", .size = sizeof(param2_mod), .forward = hardtanh_forward};
static const qg_module_type identity_type = {.name = "Identity", .size = sizeof(qg_module), .forward = identity_forward};
static const qg_module_type flatten_type = {.name = "Flatten", .size = sizeof(param2_mod), .forward = flatten_forward};

static qg_module *param2_new(const qg_module_type *t, double a, double b) {
    qg_module *m = qg_module_new(t);
    if (m) ((param2_mod *)m)->a = a, ((param2_mod *)m)->b = b;
    return m;
}

qg_module *qg_nn_relu_new(void) { return qg_module_new(&relu_type); }
qg_module *qg_nn_relu6_new(void) { return param2_new(&relu6_type, 0, 6); }
qg_module *qg_nn_identity_new(void) { return qg_module_new(&identity_type); }
qg_module *qg_nn_flatten_new(int start_dim, int end_dim) { return param2_new(&flatten_type, start_dim, end_dim); }

qg_module *qg_nn_hardtanh_new(double min_val, double max_val) {
    if (!(min_val < max_val)) return qg__err(QG_EINVAL, "Hardtanh: min_val %g must be below max_val %g", min_val, max_val), NULL;
    return param2_new(&hardtanh_type, min_val, max_val);
}

/* ------------------------------------------------------------- pooling */

typedef struct {
    qg_module base;
    int kernel[2], stride[2], padding[2], dilation[2];
    bool ceil_mode, count_include_pad;
    int divisor_override;
    int64_t out[2]; /* adaptive */
} pool_mod;

static qg_tensor *maxpool_forward(qg_module *m, qg_tensor *x) {
    pool_mod *p = (pool_mod *)m;
    return qg_max_pool2d(x, p->kernel, p->stride, p->padding, p->dilation, p->ceil_mode);
}
static qg_tensor *avgpool_forward(qg_module *m, qg_tensor *x) {
    pool_mod *p = (pool_mod *)m;
    return qg_avg_pool2d(x, p->kernel, p->stride, p->padding, p->ceil_mode, p->count_include_pad, p->divisor_override);
}
static qg_tensor *adaptive_forward(qg_module *m, qg_tensor *x) {
    pool_mod *p = (pool_mod *)m;
    return qg_adaptive_avg_pool2d(x, p->out[0], p->out[1]);
}

static const qg_module_type maxpool_type = {.name = "MaxPool2d", .size = sizeof(pool_mod), .forward = maxpool_forward};
static const qg_module_type avgpool_type = {.name = "AvgPool2d", .size = sizeof(pool_mod), .forward = avgpool_forward};
static const qg_module_type adaptive_type = {.name = "AdaptiveAvgPool2d", .size = sizeof(pool_mod), .forward = adaptive_forward};

static qg_module *pool_new(const qg_module_type *t, int kh, int kw, const qg_pool_opts *o) {
    qg_pool_opts d = {0};
    if (!o) o = &d;
    if (positive(t->name, "kernel_size", kh) || positive(t->name, "kernel_size", kw)) return NULL;
    qg_module *m = qg_module_new(t);
    if (!m) return NULL;
    pool_mod *p = (pool_mod *)m;
    p->kernel[0] = kh, p->kernel[1] = kw;
    for (int i = 0; i < 2; i++) {
        p->stride[i] = opt_or(o->stride[i], p->kernel[i]);
        p->padding[i] = o->padding[i];
        p->dilation[i] = opt_or(o->dilation[i], 1);
        if (p->stride[i] < 0 || p->padding[i] < 0 || p->dilation[i] < 0) {
            qg_module_free(m);
            return qg__err(QG_EINVAL, "%s: stride, padding and dilation must not be negative, got stride (%d, %d), "
                                      "padding (%d, %d), dilation (%d, %d)", t->name, o->stride[0], o->stride[1],
                           o->padding[0], o->padding[1], o->dilation[0], o->dilation[1]), NULL;
        }
    }
    p->ceil_mode = o->ceil_mode;
    p->count_include_pad = !o->no_count_include_pad;
    p->divisor_override = o->divisor_override;
    return m;
}

qg_module *qg_nn_maxpool2d_new(int kh, int kw, const qg_pool_opts *o) { return pool_new(&maxpool_type, kh, kw, o); }
qg_module *qg_nn_avgpool2d_new(int kh, int kw, const qg_pool_opts *o) { return pool_new(&avgpool_type, kh, kw, o); }

qg_module *qg_nn_adaptive_avgpool2d_new(int64_t oh, int64_t ow) {
    if (positive("AdaptiveAvgPool2d", "output size", oh) || positive("AdaptiveAvgPool2d", "output size", ow)) return NULL;
    qg_module *m = qg_module_new(&adaptive_type);
    if (m) ((pool_mod *)m)->out[0] = oh, ((pool_mod *)m)->out[1] = ow;
    return m;
}

/* ------------------------------------------------------------- Dropout */

typedef struct {
    qg_module base;
    double p;
    qg_rng *gen;
} dropout_mod;

static qg_tensor *dropout_forward(qg_module *m, qg_tensor *x) {
    dropout_mod *d = (dropout_mod *)m;
    return qg_dropout(x, d->p, m->training, d->gen);
}

static const qg_module_type dropout_type = {.name = "Dropout", .size = sizeof(dropout_mod), .forward = dropout_forward};

qg_module *qg_nn_dropout_new(double p, qg_rng *gen) {
    if (!(p >= 0 && p <= 1)) return qg__err(QG_EINVAL, "Dropout: p must be in [0, 1], got %g", p), NULL;
    qg_module *m = qg_module_new(&dropout_type);
    if (m) ((dropout_mod *)m)->p = p, ((dropout_mod *)m)->gen = gen;
    return m;
}

/* ------------------------------------------------------------- introspection */

qg_status qg_nn_layer_info(const qg_module *m, qg_layer_info *info) {
    if (!m || !info) return qg__err_null("nn_layer_info");
    memset(info, 0, sizeof *info);
    if (m->type == &linear_type) {
        const linear_mod *l = (const linear_mod *)m;
        info->in = l->in_features, info->out = l->out_features;
        info->bias = qg_module_param(m, "bias") != NULL;
    } else if (m->type == &conv1d_type || m->type == &conv2d_type) {
        const conv_mod *c = (const conv_mod *)m;
        const qg_tensor *w = qg_module_param(m, "weight");
        info->out = w->shape[0], info->in = w->shape[1] * c->groups;
        memcpy(info->kernel, c->kernel, sizeof c->kernel);
        memcpy(info->stride, c->stride, sizeof c->stride);
        memcpy(info->padding, c->padding, sizeof c->padding);
        memcpy(info->dilation, c->dilation, sizeof c->dilation);
        info->groups = c->groups;
        info->bias = qg_module_param(m, "bias") != NULL;
    } else if (m->type == &bn1d_type || m->type == &bn2d_type) {
        const bn_mod *b = (const bn_mod *)m;
        const qg_tensor *t = qg_module_param(m, "weight") ? qg_module_param(m, "weight") : qg_module_buffer(m, "running_mean");
        info->in = info->out = t ? t->shape[0] : 0;
        info->eps = b->eps, info->momentum = b->momentum;
        info->cumulative = b->cumulative, info->affine = b->affine, info->track = b->track;
    } else if (m->type == &maxpool_type || m->type == &avgpool_type || m->type == &adaptive_type) {
        const pool_mod *p = (const pool_mod *)m;
        memcpy(info->kernel, p->kernel, sizeof p->kernel);
        memcpy(info->stride, p->stride, sizeof p->stride);
        memcpy(info->padding, p->padding, sizeof p->padding);
        memcpy(info->dilation, p->dilation, sizeof p->dilation);
        info->ceil_mode = p->ceil_mode, info->count_include_pad = p->count_include_pad;
        info->divisor_override = p->divisor_override;
        memcpy(info->out_size, p->out, sizeof p->out);
    } else if (m->type == &flatten_type) {
        const param2_mod *f = (const param2_mod *)m;
        info->start_dim = (int)f->a, info->end_dim = (int)f->b;
    } else if (m->type == &dropout_type) {
        info->p = ((const dropout_mod *)m)->p;
    } else {
        return qg__err(QG_EINVAL, "nn_layer_info: %s is not a Linear, Conv, BatchNorm, pooling, Flatten or Dropout "
                       "module", m->type->name);
    }
    return QG_OK;
}
