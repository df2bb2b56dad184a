/* cat and stack. cat copies each input into its slice of the output; its backward
 * hands each input the matching slice of the gradient. stack is cat of unsqueezed
 * inputs. */
#include "op_internal.h"

static qg_status cat_backward(qg_node *n) {
    int dim = (int)n->ip[0];
    qg_tensor *g = n->out->grad;
    int64_t off = 0;
    for (int i = 0; i < n->nin; i++) {
        qg_tensor *x = n->in[i];
        if (qg__wants_grad(x)) {
            qg_tensor part = *g; /* g[..., off:off+len, ...] */
            part.shape[dim] = x->shape[dim];
            part.offset = g->offset + off * g->strides[dim];
            qg_tensor *gx = qg__grad_of(x);
            if (!gx) return QG_ENOMEM;
            qg__broadcast_add(gx, &part);
        }
        off += x->shape[dim];
    }
    return QG_OK;
}

qg_tensor *qg_cat(int n, qg_tensor *const *xs, int dim) {
    char a[128], b[128];
    if (n <= 0 || !xs) return qg__err(QG_EINVAL, "cat: need at least one tensor"), NULL;
    for (int i = 0; i < n; i++)
        if (!xs[i]) return qg__err(QG_EINVAL, "cat: tensor %d is NULL", i), NULL;
        else if (qg__live("cat", xs[i])) return NULL;
    const qg_tensor *x0 = xs[0];
    int d;
    if (x0->ndim == 0) return qg__err(QG_ESHAPE, "cat: cannot concatenate 0-d tensors (use stack)"), NULL;
    if (qg__dim("cat", dim, x0->ndim, &d)) return NULL;
    int64_t shape[QG_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const qg_tensor *x = xs[i];
        if (x->quant)
            return qg__err(QG_EDTYPE, "cat: tensor %d is quantized (%s); dequantize first", i, qg__type_name(x)), NULL;
        if (x->dtype != x0->dtype)
            return qg__err(QG_EDTYPE, "cat: tensor %d is %s, tensor 0 is %s", i, qg_dtype_name(x->dtype),
                           qg_dtype_name(x0->dtype)), NULL;
        bool fits = x->ndim == x0->ndim;
        for (int k = 0; fits && k < x->ndim; k++) fits = k == d || x->shape[k] == x0->shape[k];
        if (!fits)
            return qg__err(QG_ESHAPE, "cat: tensor %d %s does not match tensor 0 %s outside dim %d", i,
                           qg_shape_str(x, a, sizeof a), qg_shape_str(x0, b, sizeof b), dim), NULL;
        shape[d] += x->shape[d];
    }
    qg_tensor *out = qg__tape_tensor(x0->dtype, x0->ndim, shape);
    if (!out) return NULL;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        qg_tensor part = *out;
        part.shape[d] = xs[i]->shape[d];
        part.offset = off * out->strides[d];
        qg_tensor_copy_(&part, xs[i]);
        off += xs[i]->shape[d];
    }
    if (qg__is_float(x0->dtype) && qg__needs_grad(n, (const qg_tensor *const *)xs)) {
        qg_node *nd = qg__record("cat", cat_backward, out, n, (const qg_tensor *const *)xs);
        if (!nd) return NULL;
        nd->ip[0] = d;
    }
    return out;
}

qg_tensor *qg_stack(int n, qg_tensor *const *xs, int dim) {
    if (n <= 0 || !xs) return qg__err(QG_EINVAL, "stack: need at least one tensor"), NULL;
    if (n > 4096) return qg__err(QG_EINVAL, "stack: at most 4096 tensors"), NULL;
    qg_tensor **us = qg__tape_alloc(sizeof *us * (size_t)n);
    if (!us) return NULL;
    for (int i = 0; i < n; i++) {
        char a[128], b[128];
        if (!xs[i]) return qg__err(QG_EINVAL, "stack: tensor %d is NULL", i), NULL;
        if (qg__live("stack", xs[i])) return NULL;
        if (xs[i]->ndim != xs[0]->ndim || memcmp(xs[i]->shape, xs[0]->shape, sizeof(int64_t) * (size_t)xs[0]->ndim))
            return qg__err(QG_ESHAPE, "stack: tensor %d %s differs from tensor 0 %s", i,
                           qg_shape_str(xs[i], a, sizeof a), qg_shape_str(xs[0], b, sizeof b)), NULL;
        if (!(us[i] = qg_unsqueeze(xs[i], dim))) return NULL;
    }
    return qg_cat(n, us, dim);
}
