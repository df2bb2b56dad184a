/* View ops. Each is a geometry function (shape, strides, offset of the output from
 * the input's) and shares one backward: apply the same geometry to the input's
 * gradient buffer and add the output's gradient through that view. Expanded dims
 * have stride 0 there, so their gradient is summed. */
#include "op_internal.h"

typedef enum { V_RESHAPE, V_TRANSPOSE, V_PERMUTE, V_SLICE, V_SELECT, V_EXPAND, V_SQUEEZE, V_UNSQUEEZE, V_IDENTITY } view_kind;
static const char *const view_names[] = {"reshape", "transpose", "permute", "slice", "select",
                                         "expand", "squeeze", "unsqueeze", "contiguous"};
#define KIND_SLOT (QG_MAX_DIMS * 2 - 1) /* ip[] slot holding the kind */

/* Strides for viewing (shape, strides) at a new shape without copying, following
 * the rule PyTorch's view uses: dims may split or merge only inside runs of memory
 * that are contiguous with respect to each other. */
static bool view_strides(int on, const int64_t *os, const int64_t *ost, int nn, const int64_t *ns, int64_t *nst) {
    int64_t one = 1;
    if (on == 0) on = 1, os = &one, ost = &one;
    if (qg__numel(nn, ns) == 0) {
        qg__contig_strides(nn, ns, nst);
        return true;
    }
    int vd = nn - 1;
    int64_t base = ost[on - 1], tn = 1, vn = 1;
    for (int td = on - 1; td >= 0; td--) {
        tn *= os[td];
        if (td == 0 || (os[td - 1] != 1 && ost[td - 1] != tn * base)) {
            while (vd >= 0 && (vn < tn || ns[vd] == 1)) {
                nst[vd] = vn * base;
                vn *= ns[vd];
                vd--;
            }
            if (vn != tn) return false;
            if (td > 0) base = ost[td - 1], tn = 1, vn = 1;
        }
    }
    return vd == -1;
}

static void drop_dim(const qg_tensor *in, int d, qg_tensor *out) {
    out->ndim = in->ndim - 1;
    for (int i = d; i < in->ndim - 1; i++) out->shape[i] = in->shape[i + 1], out->strides[i] = in->strides[i + 1];
}

/* out = geometry(in) for a kind and its parameters; in and out may not alias. */
static qg_status apply_geom(view_kind k, const int64_t *ip, const qg_tensor *in, qg_tensor *out) {
    *out = *in;
    int n = in->ndim;
    switch (k) {
    case V_IDENTITY: break;
    case V_RESHAPE:
        out->ndim = (int)ip[0];
        memcpy(out->shape, ip + 1, sizeof(int64_t) * (size_t)ip[0]);
        if (!view_strides(n, in->shape, in->strides, out->ndim, out->shape, out->strides))
            return QG_ESHAPE;
        break;
    case V_TRANSPOSE:
        out->shape[ip[0]] = in->shape[ip[1]], out->strides[ip[0]] = in->strides[ip[1]];
        out->shape[ip[1]] = in->shape[ip[0]], out->strides[ip[1]] = in->strides[ip[0]];
        break;
    case V_PERMUTE:
        for (int i = 0; i < n; i++) out->shape[i] = in->shape[ip[i]], out->strides[i] = in->strides[ip[i]];
        break;
    case V_SLICE: /* dim, start, length, step */
        out->shape[ip[0]] = ip[2];
        out->strides[ip[0]] = in->strides[ip[0]] * ip[3];
        out->offset = in->offset + ip[1] * in->strides[ip[0]];
        break;
    case V_SELECT: /* dim, index; then the dim goes as in squeeze */
        out->offset = in->offset + ip[1] * in->strides[ip[0]];
        drop_dim(in, (int)ip[0], out);
        break;
    case V_SQUEEZE: drop_dim(in, (int)ip[0], out); break;
    case V_UNSQUEEZE: {
        int d = (int)ip[0];
        out->ndim = n + 1;
        for (int i = n; i > d; i--) out->shape[i] = in->shape[i - 1], out->strides[i] = in->strides[i - 1];
        out->shape[d] = 1;
        out->strides[d] = d < n ? in->shape[d] * in->strides[d] : 1;
        break;
    }
    case V_EXPAND: { /* ndim, shape */
        int nn = (int)ip[0];
        out->ndim = nn;
        for (int i = nn - 1; i >= 0; i--) {
            int j = i - (nn - n);
            out->shape[i] = ip[1 + i];
            out->strides[i] = (j < 0 || (in->shape[j] == 1 && ip[1 + i] != 1)) ? 0 : in->strides[j];
        }
        break;
    }
    }
    return QG_OK;
}

static qg_status view_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    bool fresh;
    qg_tensor gv, *gx = qg__grad_for_write(x, &fresh);
    if (!gx) return QG_ENOMEM;
    const view_kind k = (view_kind)n->ip[KIND_SLOT];
    const bool onto = k != V_SLICE && k != V_SELECT && k != V_EXPAND; /* the view covers gx once */
    if (fresh && !onto) memset(qg__data(gx), 0, (size_t)qg_tensor_numel(gx) * qg_dtype_size(gx->dtype));
    qg_status st = apply_geom(k, n->ip, gx, &gv);
    QG_ASSERT(st == QG_OK); /* the gradient buffer is contiguous: every view fits */
    if (fresh && onto) return qg_tensor_copy_(&gv, n->out->grad);
    qg__unbroadcast_add(&gv, n->out->grad);
    return QG_OK;
}

/* Makes the output header (a view of src, which is x or a contiguous copy of it) and
 * records the node against x. */
static qg_tensor *make_view(view_kind k, int64_t *ip, const qg_tensor *x, const qg_tensor *src) {
    if (x->quant && x->quant->axis >= 0)
        return qg__err(QG_EDTYPE, "%s: a per-channel quantized tensor has no views (qg_dequantize or qg_int_repr "
                       "first)", view_names[k]), NULL;
    qg_tensor *out = qg__tape_view(src);
    if (!out) return NULL;
    /* x's mapping (src may be an unquantized copy of x's integers), on the tape as x
     * may be a caller's tensor freed before the reset */
    if (x->quant && !(out->quant = qg__quant_dup(x->quant, true))) return NULL;
    qg_tensor *tmp = out->tape_next; /* keep the tape bookkeeping across apply_geom */
    qg_tape *tp = out->tape;
    uint64_t gen = out->tape_gen;
    if (apply_geom(k, ip, src, out)) {
        char b[128];
        return qg__err(QG_ESHAPE, "view: cannot view %s at the requested shape without a copy; use qg_reshape",
                       qg_shape_str(x, b, sizeof b)), NULL;
    }
    if (qg__check_sizes(view_names[k], out->ndim, out->shape)) return NULL; /* expand may reach past the limit */
    out->tape_next = tmp, out->tape = tp, out->tape_gen = gen;
    out->node = NULL, out->grad = NULL, out->requires_grad = false;
    if (qg__needs_grad(1, &x)) {
        qg_node *n = qg__record(view_names[k], view_backward, out, 1, &x);
        if (!n) return NULL;
        memcpy(n->ip, ip, sizeof n->ip);
        n->ip[KIND_SLOT] = k;
    }
    return out;
}

/* ---------------------------------------------------------------- reshape family */

static qg_status target_shape(const char *op, const qg_tensor *x, int ndim, const int64_t *shape, int64_t *ip) {
    char b[128];
    if (ndim < 0 || ndim > QG_MAX_DIMS || (ndim && !shape))
        return qg__err(QG_EINVAL, "%s: bad target ndim %d", op, ndim);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) return qg__err(QG_EINVAL, "%s: only one dim may be -1", op);
            infer = i;
        } else if (shape[i] < 0) {
            return qg__err(QG_EINVAL, "%s: invalid size %lld at dim %d", op, (long long)shape[i], i);
        } else if (__builtin_mul_overflow(known, shape[i], &known)) {
            return qg__err(QG_ESHAPE, "%s: the target sizes multiply past 2^63 (dim %d: %lld)", op, i, (long long)shape[i]);
        }
        ip[1 + i] = shape[i];
    }
    int64_t n = qg_tensor_numel(x);
    if (infer >= 0) {
        if (known == 0 || n % known)
            return qg__err(QG_ESHAPE, "%s: cannot infer dim %d of a %lld-element shape from %s", op, infer,
                           (long long)n, qg_shape_str(x, b, sizeof b));
        ip[1 + infer] = n / known;
        known *= ip[1 + infer];
    }
    if (known != n)
        return qg__err(QG_ESHAPE, "%s: shape with %lld elements does not fit %s", op, (long long)known,
                       qg_shape_str(x, b, sizeof b));
    ip[0] = ndim;
    return QG_OK;
}

static qg_tensor *reshape_impl(const char *op, const qg_tensor *x, int ndim, const int64_t *shape, bool may_copy) {
    int64_t ip[QG_MAX_DIMS * 2] = {0};
    if (!x) return qg__err_null(op), NULL;
    if (qg__live(op, x)) return NULL;
    if (target_shape(op, x, ndim, shape, ip)) return NULL;
    int64_t st[QG_MAX_DIMS];
    const qg_tensor *src = x;
    if (!view_strides(x->ndim, x->shape, x->strides, ndim, ip + 1, st)) {
        if (!may_copy) {
            char b[128];
            return qg__err(QG_ESHAPE, "%s: %s cannot be viewed at this shape without a copy; use qg_reshape",
                           op, qg_shape_str(x, b, sizeof b)), NULL;
        }
        qg_tensor *c = qg__tape_tensor(x->dtype, x->ndim, x->shape);
        if (c) c->quant = x->quant; /* a copy of the integers, same mapping */
        if (!c || qg_tensor_copy_(c, x)) return NULL;
        src = c;
    }
    return make_view(V_RESHAPE, ip, x, src);
}

qg_tensor *qg_reshape(const qg_tensor *x, int ndim, const int64_t *shape) {
    return reshape_impl("reshape", x, ndim, shape, true);
}

qg_tensor *qg_view(const qg_tensor *x, int ndim, const int64_t *shape) {
    return reshape_impl("view", x, ndim, shape, false);
}

qg_tensor *qg_flatten(const qg_tensor *x, int start_dim, int end_dim) {
    int s, e;
    if (!x) return qg__err_null("flatten"), NULL;
    if (qg__live("flatten", x)) return NULL;
    if (qg__dim("flatten", start_dim, x->ndim, &s) || qg__dim("flatten", end_dim, x->ndim, &e)) return NULL;
    if (x->ndim == 0) return reshape_impl("flatten", x, 1, (int64_t[]){1}, true);
    if (s > e) return qg__err(QG_EINVAL, "flatten: start_dim %d is after end_dim %d", start_dim, end_dim), NULL;
    int64_t shape[QG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < s; d++) shape[nd++] = x->shape[d];
    shape[nd++] = qg__numel(e - s + 1, x->shape + s);
    for (int d = e + 1; d < x->ndim; d++) shape[nd++] = x->shape[d];
    return reshape_impl("flatten", x, nd, shape, true);
}

qg_tensor *qg_contiguous(const qg_tensor *x) {
    if (!x) return qg__err_null("contiguous"), NULL;
    if (qg__live("contiguous", x)) return NULL;
    if (qg_tensor_is_contiguous(x)) return (qg_tensor *)x;
    qg_tensor *c = qg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (c) c->quant = x->quant; /* a copy of the integers, same mapping */
    if (!c || qg_tensor_copy_(c, x)) return NULL;
    int64_t ip[QG_MAX_DIMS * 2] = {0};
    return make_view(V_IDENTITY, ip, x, c);
}

/* ---------------------------------------------------------------- strided views */

qg_tensor *qg_transpose(const qg_tensor *x, int d0, int d1) {
    int a, b;
    if (!x) return qg__err_null("transpose"), NULL;
    if (qg__live("transpose", x)) return NULL;
    if (qg__dim("transpose", d0, x->ndim, &a) || qg__dim("transpose", d1, x->ndim, &b)) return NULL;
    int64_t ip[QG_MAX_DIMS * 2] = {a, b};
    if (x->ndim == 0) return make_view(V_IDENTITY, ip, x, x);
    return make_view(V_TRANSPOSE, ip, x, x);
}

qg_tensor *qg_permute(const qg_tensor *x, const int *perm) {
    if (!x) return qg__err_null("permute"), NULL;
    if (qg__live("permute", x)) return NULL;
    if (!perm && x->ndim) return qg__err(QG_EINVAL, "permute: perm is NULL"), NULL;
    int64_t ip[QG_MAX_DIMS * 2] = {0};
    bool seen[QG_MAX_DIMS] = {0};
    for (int i = 0; i < x->ndim; i++) {
        int d;
        if (qg__dim("permute", perm[i], x->ndim, &d)) return NULL;
        if (seen[d]) return qg__err(QG_EINVAL, "permute: dim %d appears twice in the permutation", perm[i]), NULL;
        seen[d] = true;
        ip[i] = d;
    }
    return make_view(V_PERMUTE, ip, x, x);
}

qg_tensor *qg_slice(const qg_tensor *x, int dim, int64_t start, int64_t end, int64_t step) {
    int d;
    if (!x) return qg__err_null("slice"), NULL;
    if (qg__live("slice", x)) return NULL;
    if (x->ndim == 0) return qg__err(QG_EINVAL, "slice: cannot slice a 0-d tensor"), NULL;
    if (qg__dim("slice", dim, x->ndim, &d)) return NULL;
    if (step <= 0) return qg__err(QG_EINVAL, "slice: step must be positive, got %lld", (long long)step), NULL;
    int64_t n = x->shape[d];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = start < 0 ? 0 : (start > n ? n : start);
    end = end < start ? start : (end > n ? n : end);
    int64_t len = end > start ? (end - start - 1) / step + 1 : 0;
    /* a dim of one element keeps its stride: stride * step could overflow and says nothing */
    int64_t ip[QG_MAX_DIMS * 2] = {d, start, len, len > 1 ? step : 1};
    return make_view(V_SLICE, ip, x, x);
}

qg_tensor *qg_narrow(const qg_tensor *x, int dim, int64_t start, int64_t length) {
    int d;
    if (!x) return qg__err_null("narrow"), NULL;
    if (qg__live("narrow", x)) return NULL;
    if (x->ndim == 0) return qg__err(QG_EINVAL, "narrow: cannot narrow a 0-d tensor"), NULL;
    if (qg__dim("narrow", dim, x->ndim, &d)) return NULL;
    int64_t n = x->shape[d];
    if (start < 0) start += n;
    if (start < 0 || length < 0 || start > n || length > n - start)
        return qg__err(QG_EINVAL, "narrow: start %lld, length %lld out of range for dim %d of size %lld",
                       (long long)start, (long long)length, dim, (long long)n), NULL;
    int64_t ip[QG_MAX_DIMS * 2] = {d, start, length, 1};
    return make_view(V_SLICE, ip, x, x);
}

qg_tensor *qg_select(const qg_tensor *x, int dim, int64_t index) {
    int d;
    if (!x) return qg__err_null("select"), NULL;
    if (qg__live("select", x)) return NULL;
    if (x->ndim == 0) return qg__err(QG_EINVAL, "select: cannot select from a 0-d tensor"), NULL;
    if (qg__dim("select", dim, x->ndim, &d)) return NULL;
    int64_t n = x->shape[d];
    if (index < -n || index >= n)
        return qg__err(QG_EINVAL, "select: index %lld out of range for dim %d of size %lld",
                       (long long)index, dim, (long long)n), NULL;
    int64_t ip[QG_MAX_DIMS * 2] = {d, index < 0 ? index + n : index};
    return make_view(V_SELECT, ip, x, x);
}

qg_tensor *qg_expand(const qg_tensor *x, int ndim, const int64_t *shape) {
    char b[128];
    if (!x) return qg__err_null("expand"), NULL;
    if (qg__live("expand", x)) return NULL;
    if (ndim < x->ndim || ndim > QG_MAX_DIMS || (ndim && !shape))
        return qg__err(QG_EINVAL, "expand: cannot expand %s to %d dims", qg_shape_str(x, b, sizeof b), ndim), NULL;
    int64_t ip[QG_MAX_DIMS * 2] = {ndim};
    for (int i = 0; i < ndim; i++) {
        int j = i - (ndim - x->ndim);
        int64_t s = shape[i];
        if (s == -1) {
            if (j < 0) return qg__err(QG_EINVAL, "expand: -1 not allowed for the new leading dim %d", i), NULL;
            s = x->shape[j];
        }
        if (s < 0 || (j >= 0 && x->shape[j] != 1 && x->shape[j] != s))
            return qg__err(QG_ESHAPE, "expand: %s cannot expand to size %lld at dim %d",
                           qg_shape_str(x, b, sizeof b), (long long)s, i), NULL;
        ip[1 + i] = s;
    }
    return make_view(V_EXPAND, ip, x, x);
}

qg_tensor *qg_squeeze(const qg_tensor *x, int dim) {
    int d;
    if (!x) return qg__err_null("squeeze"), NULL;
    if (qg__live("squeeze", x)) return NULL;
    if (qg__dim("squeeze", dim, x->ndim, &d)) return NULL;
    int64_t ip[QG_MAX_DIMS * 2] = {d};
    /* a dim that is not 1 stays, as in PyTorch */
    return make_view(x->ndim && x->shape[d] == 1 ? V_SQUEEZE : V_IDENTITY, ip, x, x);
}

qg_tensor *qg_unsqueeze(const qg_tensor *x, int dim) {
    int d;
    if (!x) return qg__err_null("unsqueeze"), NULL;
    if (qg__live("unsqueeze", x)) return NULL;
    if (x->ndim >= QG_MAX_DIMS) return qg__err(QG_EINVAL, "unsqueeze: already %d dims", QG_MAX_DIMS), NULL;
    if (qg__dim("unsqueeze", dim, x->ndim + 1, &d)) return NULL;
    int64_t ip[QG_MAX_DIMS * 2] = {d};
    return make_view(V_UNSQUEEZE, ip, x, x);
}
