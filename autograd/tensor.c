/* Tensors: caller-owned creation, inspection, copies, and the shape helpers ops share. */
#include <math.h>

#include "op_internal.h"

static const size_t dtype_sizes[QG_NDTYPES] = {4, 8, 8, 4, 1, 1};
static const char *const dtype_names[QG_NDTYPES] = {"f32", "f64", "i64", "i32", "u8", "i8"};

size_t qg_dtype_size(qg_dtype dt) { return (unsigned)dt < QG_NDTYPES ? dtype_sizes[dt] : 0; }
const char *qg_dtype_name(qg_dtype dt) { return (unsigned)dt < QG_NDTYPES ? dtype_names[dt] : "?"; }
bool qg__is_float(qg_dtype dt) { return dt == QG_F32 || dt == QG_F64; }

double qg__load(const void *p, qg_dtype dt) {
    switch (dt) {
    case QG_F32: return *(const float *)p;
    case QG_F64: return *(const double *)p;
    case QG_I64: return (double)*(const int64_t *)p;
    case QG_I32: return *(const int32_t *)p;
    case QG_U8: return *(const uint8_t *)p;
    case QG_I8: return *(const int8_t *)p;
    default: return 0;
    }
}

/* Float to integer conversion truncates toward zero and saturates (no UB). */
static int64_t to_int(double v, double lo, double hi) {
    if (v != v) return 0;
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int64_t)v;
}

void qg__store(void *p, qg_dtype dt, double v) {
    switch (dt) {
    case QG_F32: *(float *)p = (float)v; break;
    case QG_F64: *(double *)p = v; break;
    case QG_I64: *(int64_t *)p = to_int(v, -9.2233720368547748e18, 9.2233720368547748e18 - 1024); break;
    case QG_I32: *(int32_t *)p = (int32_t)to_int(v, -2147483648.0, 2147483647.0); break;
    case QG_U8: *(uint8_t *)p = (uint8_t)to_int(v, 0, 255); break;
    case QG_I8: *(int8_t *)p = (int8_t)to_int(v, -128, 127); break;
    default: break;
    }
}

/* ------------------------------------------------------------- shape helpers */

int64_t qg__numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

qg_status qg__check_sizes(const char *op, int ndim, const int64_t *shape) {
    int64_t span = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return qg__err(QG_ESHAPE, "%s: negative size %lld at dim %d", op, (long long)shape[i], i);
        if (__builtin_mul_overflow(span, shape[i] ? shape[i] : 1, &span) || span > QG_MAX_SPAN) {
            char b[160] = "";
            for (int k = 0, m = 0; k < ndim && m < (int)sizeof b - 24; k++)
                m += snprintf(b + m, sizeof b - (size_t)m, k ? ", %lld" : "%lld", (long long)shape[k]);
            return qg__err(QG_ESHAPE, "%s: shape (%s) is too large (its sizes multiply past 2^59)", op, b);
        }
    }
    return QG_OK;
}

void qg__contig_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

qg_status qg__dim(const char *op, int dim, int ndim, int *out) {
    int lo = ndim > 0 ? -ndim : -1, hi = ndim > 0 ? ndim - 1 : 0;
    if (dim < lo || dim > hi)
        return qg__err(QG_EINVAL, "%s: dim %d out of range for a %d-d tensor (expected %d..%d)",
                       op, dim, ndim, lo, hi);
    *out = dim < 0 ? dim + (ndim > 0 ? ndim : 1) : dim;
    return QG_OK;
}

const char *qg_shape_str(const qg_tensor *t, char *buf, size_t n) {
    if (!t) {
        snprintf(buf, n, "NULL");
        return buf;
    }
    size_t k = (size_t)snprintf(buf, n, "%s[", qg_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

qg_status qg__broadcast_shape(const char *op, const qg_tensor *a, const qg_tensor *b, int *ndim,
                              int64_t *shape) {
    if (qg__live(op, a) || qg__live(op, b)) return QG_ESTATE;
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = a->ndim - n + i, ib = b->ndim - n + i;
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[128], y[128];
            return qg__err(QG_ESHAPE, "%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)",
                           op, qg_shape_str(a, x, sizeof x), qg_shape_str(b, y, sizeof y), i,
                           (long long)sa, (long long)sb);
        }
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return QG_OK;
}

void qg__broadcast_strides(const qg_tensor *t, int ndim, const int64_t *shape, int64_t *st) {
    for (int i = 0; i < ndim; i++) {
        int it = t->ndim - ndim + i;
        st[i] = (it < 0 || (t->shape[it] == 1 && shape[i] != 1)) ? 0 : t->strides[it];
    }
}

qg_status qg__check_float(const char *op, const qg_tensor *a) {
    if (!a) return qg__err_null(op);
    if (qg__live(op, a)) return QG_ESTATE;
    if (!qg__is_float(a->dtype))
        return qg__err(QG_EDTYPE, "%s: expected a f32 or f64 tensor, got %s%s", op, qg__type_name(a),
                       a->quant ? " (qg_dequantize gives its real values)" : "");
    return QG_OK;
}

qg_status qg__check_same_float(const char *op, const qg_tensor *a, const qg_tensor *b) {
    if (!a || !b) return qg__err_null(op);
    if (qg__live(op, b)) return QG_ESTATE;
    qg_status st = qg__check_float(op, a);
    if (st) return st;
    if (a->dtype != b->dtype)
        return qg__err(QG_EDTYPE, "%s: dtypes differ (%s vs %s); convert with qg_to_dtype", op,
                       qg_dtype_name(a->dtype), qg_dtype_name(b->dtype));
    return QG_OK;
}

/* ------------------------------------------------------------- creation */

static qg_status check_shape(const char *op, qg_dtype dt, int ndim, const int64_t *shape) {
    if ((unsigned)dt >= QG_NDTYPES) return qg__err(QG_EDTYPE, "%s: unknown dtype %d", op, (int)dt);
    if (ndim < 0 || ndim > QG_MAX_DIMS)
        return qg__err(QG_EINVAL, "%s: ndim %d outside 0..%d", op, ndim, QG_MAX_DIMS);
    if (ndim > 0 && !shape) return qg__err(QG_EINVAL, "%s: shape is NULL", op);
    return qg__check_sizes(op, ndim, shape);
}

static qg_tensor *heap_tensor(const char *op, qg_dtype dt, int ndim, const int64_t *shape, bool zero) {
    if (check_shape(op, dt, ndim, shape)) return NULL;
    qg_tensor *t = qg__calloc(sizeof *t);
    qg_storage *s = qg__calloc(sizeof *s);
    int64_t n = qg__numel(ndim, shape);
    size_t nbytes = (size_t)n * qg_dtype_size(dt);
    void *data = zero ? qg__calloc(nbytes) : qg__alloc(nbytes);
    if (!t || !s || !data) {
        qg__free(t), qg__free(s), qg__free(data);
        qg__err(QG_ENOMEM, "%s: out of memory for %lld elements", op, (long long)n);
        return NULL;
    }
    s->data = data;
    s->nbytes = nbytes;
    s->refcount = 1;
    t->storage = s;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    qg__contig_strides(ndim, shape, t->strides);
    return t;
}

qg_tensor *qg_tensor_empty(qg_dtype dt, int ndim, const int64_t *shape) {
    return heap_tensor("tensor_empty", dt, ndim, shape, false);
}

qg_tensor *qg_tensor_zeros(qg_dtype dt, int ndim, const int64_t *shape) {
    return heap_tensor("tensor_zeros", dt, ndim, shape, true);
}

qg_tensor *qg_tensor_full(qg_dtype dt, int ndim, const int64_t *shape, double value) {
    qg_tensor *t = heap_tensor("tensor_full", dt, ndim, shape, false);
    if (t) qg_tensor_fill_(t, value);
    return t;
}

qg_tensor *qg_tensor_ones(qg_dtype dt, int ndim, const int64_t *shape) {
    return qg_tensor_full(dt, ndim, shape, 1.0);
}

qg_tensor *qg_tensor_arange(qg_dtype dt, double start, double end, double step) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step))
        return qg__err(QG_EINVAL, "tensor_arange: need finite start/end and a non-zero step"), NULL;
    if ((end - start) / step < 0)
        return qg__err(QG_EINVAL, "tensor_arange: upper bound and larger bound inconsistent with step sign "
                                  "(start %g, end %g, step %g)", start, end, step), NULL;
    double len = ceil((end - start) / step);
    if (len > (double)QG_MAX_SPAN)
        return qg__err(QG_ESHAPE, "tensor_arange: %g elements are too many", len), NULL;
    int64_t n = len > 0 ? (int64_t)len : 0;
    qg_tensor *t = heap_tensor("tensor_arange", dt, 1, &n, false);
    if (!t) return NULL;
    size_t es = qg_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) qg__store((char *)t->storage->data + i * es, dt, start + (double)i * step);
    return t;
}

qg_tensor *qg_tensor_from_data(qg_dtype dt, int ndim, const int64_t *shape, const void *data) {
    qg_tensor *t = heap_tensor("tensor_from_data", dt, ndim, shape, false);
    if (!t) return NULL;
    if (!data && t->storage->nbytes) {
        qg_tensor_free(t);
        return qg__err(QG_EINVAL, "tensor_from_data: data is NULL"), NULL;
    }
    if (t->storage->nbytes) memcpy(t->storage->data, data, t->storage->nbytes);
    return t;
}

qg_tensor *qg_tensor_clone(const qg_tensor *src) {
    if (!src) return qg__err_null("tensor_clone"), NULL;
    if (qg__live("tensor_clone", src)) return NULL;
    qg_tensor *t = heap_tensor("tensor_clone", src->dtype, src->ndim, src->shape, false);
    if (t && src->quant && !(t->quant = qg__quant_dup(src->quant, false))) {
        qg_tensor_free(t);
        return NULL;
    }
    if (t && qg_tensor_copy_(t, src)) {
        qg_tensor_free(t);
        return NULL;
    }
    return t;
}

void qg_tensor_free(qg_tensor *t) {
    if (!t || t->tape) return; /* tape tensors die at reset */
    if (qg__tape_adopt(t)) return; /* the pass still uses it: freed at reset */
    qg_storage *s = t->storage;
    if (s && !s->on_tape && --s->refcount == 0) {
        qg__free(s->data);
        qg__free(s);
    }
    qg_tensor_free(t->grad);
    qg__free((void *)t->quant);
    qg__free(t);
}

/* ------------------------------------------------------------- inspection */

int64_t qg_tensor_numel(const qg_tensor *t) { return t ? qg__numel(t->ndim, t->shape) : 0; }

bool qg_tensor_is_contiguous(const qg_tensor *t) {
    if (!t) return false;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return true; /* no element: any strides (as PyTorch says) */
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

void *qg_tensor_data(const qg_tensor *t) { return t && !qg__live("tensor_data", t) ? qg__data(t) : NULL; }

static qg_status elem_ptr(const char *op, const qg_tensor *t, const int64_t *index, char **p) {
    if (!t) return qg__err(QG_EINVAL, "%s: tensor is NULL", op);
    if (qg__live(op, t)) return QG_ESTATE;
    if (t->ndim && !index) return qg__err(QG_EINVAL, "%s: index is NULL", op);
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i])
            return qg__err(QG_EINVAL, "%s: index %lld out of range for dim %d of size %lld", op,
                           (long long)index[i], i, (long long)t->shape[i]);
        off += index[i] * t->strides[i];
    }
    *p = (char *)t->storage->data + off * (int64_t)qg_dtype_size(t->dtype);
    return QG_OK;
}

/* The real value of a quantized tensor's integer v at element index. */
static double dequant_at(const qg_tensor *t, const int64_t *index, double v) {
    const qg_quant *q = t->quant;
    if (q->axis < 0) return (double)(float)((float)(v - (double)q->zero_point) * (float)q->scale);
    int64_t c = index ? index[q->axis] : 0;
    return (double)(float)((float)(v - (double)q->zero_points[c]) * (float)q->scales[c]);
}

static qg_status refuse_quantized(const char *op, const qg_tensor *t) {
    if (!t || !t->quant) return QG_OK;
    return qg__err(QG_EDTYPE, "%s: %s is a quantized tensor (quantize a float tensor instead)", op, qg__type_name(t));
}

double qg_tensor_get(const qg_tensor *t, const int64_t *index) {
    char *p = NULL;
    if (elem_ptr("tensor_get", t, index, &p)) return NAN;
    double v = qg__load(p, t->dtype);
    return t->quant ? dequant_at(t, index, v) : v;
}

qg_status qg_tensor_set(qg_tensor *t, const int64_t *index, double value) {
    char *p = NULL;
    if (refuse_quantized("tensor_set", t)) return QG_EDTYPE;
    qg_status st = elem_ptr("tensor_set", t, index, &p);
    if (!st) qg__store(p, t->dtype, value);
    return st;
}

double qg_tensor_item(const qg_tensor *t) {
    if (!t) return qg__err(QG_EINVAL, "tensor_item: tensor is NULL"), NAN;
    if (qg__live("tensor_item", t)) return NAN;
    if (qg_tensor_numel(t) != 1) {
        char b[128];
        return qg__err(QG_ESHAPE, "tensor_item: expected one element, got %s", qg_shape_str(t, b, sizeof b)), NAN;
    }
    double v = qg__load(qg__data(t), t->dtype);
    if (!t->quant) return v;
    int64_t index[QG_MAX_DIMS] = {0};
    return dequant_at(t, index, v);
}

/* ------------------------------------------------------------- copies */

struct copy_ctx {
    qg_dtype dd, sd;
};

/* ptr[0] = dst row, ptr[1] = src row */
static void copy_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    struct copy_ctx *c = vctx;
    size_t ed = qg_dtype_size(c->dd), es = qg_dtype_size(c->sd);
    if (c->dd == c->sd && st[0] == 1 && st[1] == 1) {
        memcpy(ptr[0], ptr[1], (size_t)n * ed);
    } else if (c->dd == QG_F32 && c->sd == QG_F32) {
        float *d = (float *)ptr[0];
        const float *s = (const float *)ptr[1];
        for (int64_t i = 0; i < n; i++) d[i * st[0]] = s[i * st[1]];
    } else if (c->dd == QG_F64 && c->sd == QG_F64) {
        double *d = (double *)ptr[0];
        const double *s = (const double *)ptr[1];
        for (int64_t i = 0; i < n; i++) d[i * st[0]] = s[i * st[1]];
    } else {
        for (int64_t i = 0; i < n; i++)
            qg__store(ptr[0] + i * st[0] * (int64_t)ed, c->dd, qg__load(ptr[1] + i * st[1] * (int64_t)es, c->sd));
    }
}

qg_status qg_tensor_copy_(qg_tensor *dst, const qg_tensor *src) {
    if (!dst || !src) return qg__err(QG_EINVAL, "tensor_copy_: tensor is NULL");
    int nd;
    int64_t shape[QG_MAX_DIMS];
    qg_status st = qg__broadcast_shape("tensor_copy_", dst, src, &nd, shape);
    if (st) return st;
    if (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd)) {
        char a[128], b[128];
        return qg__err(QG_ESHAPE, "tensor_copy_: source %s does not broadcast to destination %s",
                       qg_shape_str(src, b, sizeof b), qg_shape_str(dst, a, sizeof a));
    }
    if ((dst->quant || src->quant) && (dst->dtype != src->dtype || !qg__quant_same(dst->quant, src->quant)))
        return qg__err(QG_EDTYPE, "tensor_copy_: cannot copy %s into %s: quantized tensors copy only into quantized "
                       "tensors of the same dtype, scale and zero point (use qg_dequantize or qg_quantize_per_tensor)",
                       qg__type_name(src), qg__type_name(dst));
    qg_iter it;
    const qg_tensor *ops[2] = {dst, src};
    qg__iter_init(&it, 2, ops, dst->ndim, dst->shape);
    struct copy_ctx c = {dst->dtype, src->dtype};
    qg__iter_run(&it, copy_row, &c, true);
    return QG_OK;
}

qg_status qg_tensor_copy_to(const qg_tensor *t, qg_dtype dt, void *buf) {
    if (!t || !buf) return qg__err(QG_EINVAL, "tensor_copy_to: NULL argument");
    if (qg__live("tensor_copy_to", t)) return QG_ESTATE;
    if ((unsigned)dt >= QG_NDTYPES) return qg__err(QG_EDTYPE, "tensor_copy_to: unknown dtype");
    if (t->quant && dt != t->dtype)
        return qg__err(QG_EDTYPE, "tensor_copy_to: %s gives its integers as %s only, not %s (qg_dequantize first)",
                       qg__type_name(t), qg_dtype_name(t->dtype), qg_dtype_name(dt));
    qg_storage s = {buf, (size_t)qg_tensor_numel(t) * qg_dtype_size(dt), 1, false};
    qg_tensor d = {.dtype = dt, .ndim = t->ndim, .storage = &s, .quant = t->quant};
    memcpy(d.shape, t->shape, sizeof d.shape);
    qg__contig_strides(t->ndim, t->shape, d.strides);
    return qg_tensor_copy_(&d, t);
}

struct fill_ctx {
    qg_dtype dt;
    double v;
};

static void fill_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    struct fill_ctx *c = vctx;
    if (c->dt == QG_F32 && st[0] == 1) {
        float *d = (float *)ptr[0], v = (float)c->v;
        for (int64_t i = 0; i < n; i++) d[i] = v;
    } else if (c->dt == QG_F64 && st[0] == 1) {
        double *d = (double *)ptr[0];
        for (int64_t i = 0; i < n; i++) d[i] = c->v;
    } else {
        size_t es = qg_dtype_size(c->dt);
        for (int64_t i = 0; i < n; i++) qg__store(ptr[0] + i * st[0] * (int64_t)es, c->dt, c->v);
    }
}

qg_status qg_tensor_fill_(qg_tensor *t, double value) {
    if (!t) return qg__err(QG_EINVAL, "tensor_fill_: tensor is NULL");
    if (qg__live("tensor_fill_", t)) return QG_ESTATE;
    if (refuse_quantized("tensor_fill_", t)) return QG_EDTYPE;
    qg_iter it;
    const qg_tensor *ops[1] = {t};
    qg__iter_init(&it, 1, ops, t->ndim, t->shape);
    struct fill_ctx c = {t->dtype, value};
    qg__iter_run(&it, fill_row, &c, true);
    return QG_OK;
}

qg_status qg_tensor_resize_(qg_tensor *t, int ndim, const int64_t *shape) {
    if (!t) return qg__err_null("tensor_resize_");
    if (qg__live("tensor_resize_", t)) return QG_ESTATE;
    if (refuse_quantized("tensor_resize_", t)) return QG_EDTYPE;
    if (qg__tape_in_use(t))
        return qg__err(QG_ESTATE, "tensor_resize_: the current pass still uses this tensor (a view of it or the graph); "
                                  "call qg_tape_reset first");
    if (t->tape) return qg__err(QG_EINVAL, "tensor_resize_: op results on the tape cannot be resized");
    if (t->storage->refcount != 1 || t->offset || !qg_tensor_is_contiguous(t))
        return qg__err(QG_EINVAL, "tensor_resize_: the tensor must own its contiguous storage alone");
    qg_status st = check_shape("tensor_resize_", t->dtype, ndim, shape);
    if (st) return st;
    size_t nbytes = (size_t)qg__numel(ndim, shape) * qg_dtype_size(t->dtype);
    if (nbytes != t->storage->nbytes) {
        void *data = qg__calloc(nbytes);
        if (!data) return qg__err(QG_ENOMEM, "tensor_resize_: out of memory");
        memcpy(data, t->storage->data, nbytes < t->storage->nbytes ? nbytes : t->storage->nbytes);
        qg__free(t->storage->data);
        t->storage->data = data;
        t->storage->nbytes = nbytes;
    }
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    qg__contig_strides(ndim, t->shape, t->strides);
    if (t->grad) { /* a grad of the old shape no longer fits */
        qg_tensor_free(t->grad);
        t->grad = NULL;
    }
    return QG_OK;
}

/* ------------------------------------------------------------- grad flags */

qg_status qg_tensor_set_requires_grad(qg_tensor *t, bool on) {
    if (!t) return qg__err(QG_EINVAL, "tensor_set_requires_grad: tensor is NULL");
    if (qg__live("tensor_set_requires_grad", t)) return QG_ESTATE;
    if (on && !qg__is_float(t->dtype))
        return qg__err(QG_EDTYPE, "tensor_set_requires_grad: only f32/f64 tensors can require grad, got %s",
                       qg_dtype_name(t->dtype));
    if (t->node)
        return qg__err(QG_ESTATE, "tensor_set_requires_grad: tensor was produced by op '%s'; only leaves can be changed (detach it first)",
                       t->node->name);
    t->requires_grad = on;
    return QG_OK;
}

void qg_tensor_zero_grad(qg_tensor *t) {
    if (t && t->grad) memset(qg__data(t->grad), 0, (size_t)qg_tensor_numel(t->grad) * qg_dtype_size(t->grad->dtype));
}
