/* Quantized tensors: quantize (per tensor, per channel), dequantize, int_repr, the
 * qparams accessors, and relu on the integers. The arithmetic is PyTorch 1.13's, as
 * measured in docs/int8.md: float32 reciprocal of the scale, float32 product,
 * round half to even, the zero point added as an integer, then the clamp. */
#include <math.h>

#include "kernels/isa.h"
#include "op_internal.h"

/* ------------------------------------------------------------- the engine */

static qg_qengine engine = QG_QENGINE_ONEDNN;
qg_status qg_set_qengine(qg_qengine e) {
    if (e != QG_QENGINE_ONEDNN && e != QG_QENGINE_QNNPACK)
        return qg__err(QG_EINVAL, "set_qengine: unknown engine %d (onednn %d, qnnpack %d)", (int)e, QG_QENGINE_ONEDNN,
                       QG_QENGINE_QNNPACK);
    engine = e;
    return QG_OK;
}
qg_qengine qg_get_qengine(void) { return engine; }

/* ------------------------------------------------------------- the mapping record */

qg_quant *qg__quant_dup(const qg_quant *q, bool on_tape) {
    int64_t nch = q->axis >= 0 ? q->nch : 0;
    size_t bytes = sizeof(qg_quant) + (size_t)nch * (sizeof(double) + sizeof(int64_t));
    qg_quant *d = on_tape ? qg__tape_alloc(bytes) : qg__alloc(bytes);
    if (!d) return qg__err(QG_ENOMEM, "quantize: out of memory for the qparams of %lld channels", (long long)nch), NULL;
    *d = *q;
    if (nch) {
        double *s = (double *)(d + 1);
        int64_t *z = (int64_t *)(s + nch);
        memcpy(s, q->scales, sizeof(double) * (size_t)nch);
        memcpy(z, q->zero_points, sizeof(int64_t) * (size_t)nch);
        d->scales = s, d->zero_points = z;
    } else {
        d->scales = NULL, d->zero_points = NULL;
    }
    return d;
}

bool qg__quant_same(const qg_quant *a, const qg_quant *b) {
    if (!a || !b) return a == b;
    if (a->axis != b->axis) return false;
    if (a->axis < 0) return a->scale == b->scale && a->zero_point == b->zero_point;
    return a->nch == b->nch && !memcmp(a->scales, b->scales, sizeof(double) * (size_t)a->nch) &&
           !memcmp(a->zero_points, b->zero_points, sizeof(int64_t) * (size_t)a->nch);
}

qg_dtype qg__qdtype_storage(qg_qdtype d) { return d == QG_QUINT8 ? QG_U8 : d == QG_QINT8 ? QG_I8 : QG_I32; }

void qg__qdtype_range(qg_qdtype d, int64_t *qmin, int64_t *qmax) {
    *qmin = d == QG_QUINT8 ? 0 : d == QG_QINT8 ? -128 : INT32_MIN;
    *qmax = d == QG_QUINT8 ? 255 : d == QG_QINT8 ? 127 : INT32_MAX;
}

static qg_qdtype qdtype_of(qg_dtype dt) { return dt == QG_U8 ? QG_QUINT8 : dt == QG_I8 ? QG_QINT8 : QG_QINT32; }
static const char *qdtype_name(qg_qdtype d) { return d == QG_QUINT8 ? "quint8" : d == QG_QINT8 ? "qint8" : "qint32"; }

const char *qg__type_name(const qg_tensor *t) {
    return t->quant ? qdtype_name(qdtype_of(t->dtype)) : qg_dtype_name(t->dtype);
}

/* ------------------------------------------------------------- quantize */

/* One element: z + rne(F(x * inv)) clamped; NaN, +-inf and values beyond int64 give
 * qmin, as x86's float-to-int64 conversion (INT64_MIN) does in PyTorch. */
static inline int64_t quant1(float x, float inv, int64_t z, int64_t qmin, int64_t qmax) {
    float r = nearbyintf(x * inv);
    if (!(r >= -9.2233720e18f && r < 9.2233720e18f)) return qmin;
    int64_t q = z + (int64_t)r;
    return q < qmin ? qmin : q > qmax ? qmax : q;
}

/* quant1 for an 8-bit range, in float and int32 arithmetic that vectorises without
 * AVX-512's float-to-int64 conversion: r is an integer, so clamping it to
 * [qmin - z, qmax - z] and adding z is quant1's z + r clamped; what quant1 sends to
 * qmin (NaN, |r| beyond int64) goes to qmin - z here. */
static inline int32_t quant8(float x, float inv, float lo, float hi, int32_t z) {
    float r = nearbyintf(x * inv);
    bool wild = !(r >= -9.2233720e18f && r < 9.2233720e18f);
    float c = r < lo ? lo : r > hi ? hi : r;
    return (int32_t)(wild ? lo : c) + z;
}

/* x contiguous f32 (outer, C, inner) -> out of dt; channel c has inv[c], z[c] (C = 1
 * per tensor). */
QG_HOT static void quantize_run(const float *x, char *out, qg_dtype dt, int64_t outer, int64_t C, int64_t inner,
                         const float *inv, const int64_t *z, int64_t qmin, int64_t qmax) {
    int nt = qg__threads_for(outer * C * inner);
    (void)nt; /* only the OpenMP pragma uses it */
    _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
    for (int64_t oc = 0; oc < outer * C; oc++) {
        const int64_t c = oc % C, base = oc * inner;
        const float iv = inv[c];
        const int64_t zc = z[c];
        const float lo = (float)(qmin - zc), hi = (float)(qmax - zc); /* exact: 8-bit ranges */
        if (dt == QG_U8) {
            uint8_t *o = (uint8_t *)out + base;
            for (int64_t i = 0; i < inner; i++) o[i] = (uint8_t)quant8(x[base + i], iv, lo, hi, (int32_t)zc);
        } else if (dt == QG_I8) {
            int8_t *o = (int8_t *)out + base;
            for (int64_t i = 0; i < inner; i++) o[i] = (int8_t)quant8(x[base + i], iv, lo, hi, (int32_t)zc);
        } else {
            int32_t *o = (int32_t *)out + base;
            for (int64_t i = 0; i < inner; i++) o[i] = (int32_t)quant1(x[base + i], iv, zc, qmin, qmax);
        }
    }
}

qg_status qg__check_qdtype(const char *op, qg_qdtype dtype) {
    if ((unsigned)dtype > QG_QINT32) return qg__err(QG_EINVAL, "%s: unknown quantized dtype %d", op, (int)dtype);
    return QG_OK;
}

qg_status qg__check_qparam(const char *op, int64_t c, double scale, int64_t zp, qg_qdtype dtype) {
    int64_t lo, hi;
    qg__qdtype_range(dtype, &lo, &hi);
    char ch[40] = "";
    if (c >= 0) snprintf(ch, sizeof ch, " of channel %lld", (long long)c);
    if (!(scale > 0) || !isfinite(scale) || !((float)scale > 0) || !isfinite((float)scale))
        return qg__err(QG_EINVAL, "%s: scale%s must be a finite positive float32, got %g", op, ch, scale);
    if (zp < lo || zp > hi)
        return qg__err(QG_EINVAL, "%s: zero_point%s %lld is outside the %s range [%lld, %lld]", op, ch,
                       (long long)zp, qdtype_name(dtype), (long long)lo, (long long)hi);
    return QG_OK;
}

/* The output tensor of a quantize: contiguous, dt, with its mapping on the tape. */
static qg_tensor *quantized_out(const qg_tensor *x, qg_qdtype dtype, const qg_quant *q) {
    qg_tensor *out = qg__tape_tensor(qg__qdtype_storage(dtype), x->ndim, x->shape);
    qg_quant *qq = out ? qg__quant_dup(q, true) : NULL;
    if (!qq) return NULL;
    out->quant = qq;
    return out;
}

static const float *as_f32(const char *op, const qg_tensor *x) {
    if (qg__check_float(op, x)) return NULL;
    if (x->dtype != QG_F32)
        return qg__err(QG_EDTYPE, "%s: only f32 tensors are quantized, got %s (PyTorch: \"Quantize only works on "
                       "Float Tensor\")", op, qg_dtype_name(x->dtype)), NULL;
    const qg_tensor *c = qg_contiguous(qg_detach(x));
    return c ? (const float *)qg__data(c) : NULL;
}

qg_tensor *qg_quantize_per_tensor(const qg_tensor *x, double scale, int64_t zero_point, qg_qdtype dtype) {
    const char *op = "quantize_per_tensor";
    if (qg__check_qdtype(op, dtype) || qg__check_qparam(op, -1, scale, zero_point, dtype)) return NULL;
    const float *xd = as_f32(op, x);
    if (!xd) return NULL;
    qg_quant q = {.axis = -1, .scale = scale, .zero_point = zero_point};
    qg_tensor *out = quantized_out(x, dtype, &q);
    if (!out) return NULL;
    int64_t qmin, qmax;
    qg__qdtype_range(dtype, &qmin, &qmax);
    float inv = 1.0f / (float)scale;
    quantize_run(xd, qg__data(out), out->dtype, 1, 1, qg_tensor_numel(x), &inv, &q.zero_point, qmin, qmax);
    return out;
}

qg_tensor *qg_quantize_per_channel(const qg_tensor *x, const qg_tensor *scales, const qg_tensor *zero_points,
                                   int axis, qg_qdtype dtype) {
    const char *op = "quantize_per_channel";
    char a[128], b[128];
    int ax;
    if (!x || !scales || !zero_points) return qg__err_null(op), NULL;
    if (qg__check_qdtype(op, dtype) || qg__live(op, scales) || qg__live(op, zero_points)) return NULL;
    if (qg__dim(op, axis, x->ndim, &ax)) return NULL;
    const int64_t C = x->shape[ax];
    if (scales->ndim != 1 || zero_points->ndim != 1 || scales->shape[0] != C || zero_points->shape[0] != C)
        return qg__err(QG_ESHAPE, "%s: scales %s and zero_points %s must both be (%lld), the size of dim %d of %s",
                       op, qg_shape_str(scales, a, sizeof a), qg_shape_str(zero_points, b, sizeof b), (long long)C,
                       axis, qg_shape_str(x, b, sizeof b)), NULL;
    if (!qg__is_float(scales->dtype) || qg__is_float(zero_points->dtype) || scales->quant || zero_points->quant)
        return qg__err(QG_EDTYPE, "%s: scales must be a float tensor and zero_points an integer one, got %s and %s",
                       op, qg__type_name(scales), qg__type_name(zero_points)), NULL;
    double *s = qg__tape_alloc(sizeof(double) * (size_t)(C + 1));
    int64_t *z = qg__tape_alloc(sizeof(int64_t) * (size_t)(C + 1));
    float *inv = qg__tape_alloc(sizeof(float) * (size_t)(C + 1));
    if (!s || !z || !inv || qg_tensor_copy_to(scales, QG_F64, s) || qg_tensor_copy_to(zero_points, QG_I64, z))
        return NULL;
    for (int64_t c = 0; c < C; c++) {
        if (qg__check_qparam(op, c, s[c], z[c], dtype)) return NULL;
        inv[c] = 1.0f / (float)s[c];
    }
    const float *xd = as_f32(op, x);
    if (!xd) return NULL;
    qg_quant q = {.axis = ax, .nch = C, .scales = s, .zero_points = z};
    qg_tensor *out = quantized_out(x, dtype, &q);
    if (!out) return NULL;
    int64_t qmin, qmax;
    qg__qdtype_range(dtype, &qmin, &qmax);
    int64_t outer = qg__numel(ax, x->shape), inner = qg__numel(x->ndim - ax - 1, x->shape + ax + 1);
    quantize_run(xd, qg__data(out), out->dtype, outer, C, inner, inv, z, qmin, qmax);
    return out;
}

/* ------------------------------------------------------------- over given integers */

static qg_status int_dtype(const char *op, const qg_tensor *ints, qg_qdtype *d) {
    if (!ints) return qg__err_null(op);
    if (qg__live(op, ints)) return QG_ESTATE;
    if (ints->quant || (ints->dtype != QG_U8 && ints->dtype != QG_I8 && ints->dtype != QG_I32))
        return qg__err(QG_EDTYPE, "%s: the integers must be u8, i8 or i32, got %s", op, qg__type_name(ints));
    *d = qdtype_of(ints->dtype);
    return QG_OK;
}

qg_tensor *qg_make_per_tensor_quantized(const qg_tensor *ints, double scale, int64_t zero_point) {
    const char *op = "make_per_tensor_quantized";
    qg_qdtype d = QG_QUINT8;
    if (int_dtype(op, ints, &d) || qg__check_qparam(op, -1, scale, zero_point, d)) return NULL;
    qg_quant q = {.axis = -1, .scale = scale, .zero_point = zero_point};
    qg_tensor *v = qg__tape_view(ints);
    if (v && !(v->quant = qg__quant_dup(&q, true))) return NULL;
    return v;
}

qg_tensor *qg_make_per_channel_quantized(const qg_tensor *ints, const qg_tensor *scales, const qg_tensor *zero_points,
                                         int axis) {
    const char *op = "make_per_channel_quantized";
    qg_qdtype d = QG_QUINT8;
    int ax;
    char a[128], b[128];
    if (int_dtype(op, ints, &d)) return NULL;
    if (!scales || !zero_points) return qg__err_null(op), NULL;
    if (qg__live(op, scales) || qg__live(op, zero_points) || qg__dim(op, axis, ints->ndim, &ax)) return NULL;
    const int64_t C = ints->shape[ax];
    if (scales->ndim != 1 || zero_points->ndim != 1 || scales->shape[0] != C || zero_points->shape[0] != C ||
        !qg__is_float(scales->dtype) || qg__is_float(zero_points->dtype) || scales->quant || zero_points->quant)
        return qg__err(QG_ESHAPE, "%s: scales (float) and zero_points (integer) must be (%lld), got %s %s and %s %s", op,
                       (long long)C, qg__type_name(scales), qg_shape_str(scales, a, sizeof a),
                       qg__type_name(zero_points), qg_shape_str(zero_points, b, sizeof b)), NULL;
    qg_quant q = {.axis = ax, .nch = C};
    double *s = qg__tape_alloc(sizeof(double) * (size_t)(C + 1));
    int64_t *z = qg__tape_alloc(sizeof(int64_t) * (size_t)(C + 1));
    if (!s || !z || qg_tensor_copy_to(scales, QG_F64, s) || qg_tensor_copy_to(zero_points, QG_I64, z)) return NULL;
    for (int64_t c = 0; c < C; c++)
        if (qg__check_qparam(op, c, s[c], z[c], d)) return NULL;
    q.scales = s, q.zero_points = z;
    qg_tensor *v = qg__tape_view(ints);
    if (v && !(v->quant = qg__quant_dup(&q, true))) return NULL;
    return v;
}

/* ------------------------------------------------------------- dequantize, int_repr */

static qg_status check_quantized(const char *op, const qg_tensor *q) {
    if (!q) return qg__err_null(op);
    if (qg__live(op, q)) return QG_ESTATE;
    if (!q->quant) return qg__err(QG_EDTYPE, "%s: expected a quantized tensor, got %s", op, qg_dtype_name(q->dtype));
    return QG_OK;
}

qg_tensor *qg_dequantize(const qg_tensor *q) {
    if (check_quantized("dequantize", q)) return NULL;
    const qg_quant *m = q->quant;
    qg_tensor *ints = qg_contiguous(qg_int_repr(q));
    qg_tensor *out = ints ? qg__tape_tensor(QG_F32, q->ndim, q->shape) : NULL;
    if (!out) return NULL;
    const int ax = m->axis;
    const int64_t C = ax >= 0 ? m->nch : 1;
    const int64_t outer = ax >= 0 ? qg__numel(ax, q->shape) : 1;
    const int64_t inner = ax >= 0 ? qg__numel(q->ndim - ax - 1, q->shape + ax + 1) : qg_tensor_numel(q);
    const char *src = qg__data(ints);
    float *y = (float *)qg__data(out);
    int nt = qg__threads_for(outer * C * inner);
    (void)nt;
    _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
    for (int64_t oc = 0; oc < outer * C; oc++) { /* y = F(F(q - z) * F(s)) */
        const int64_t c = oc % C, base = oc * inner;
        const int64_t z = ax >= 0 ? m->zero_points[c] : m->zero_point;
        const float s = (float)(ax >= 0 ? m->scales[c] : m->scale);
        if (q->dtype == QG_U8) {
            const uint8_t *v = (const uint8_t *)src + base;
            for (int64_t i = 0; i < inner; i++) y[base + i] = (float)((int64_t)v[i] - z) * s;
        } else if (q->dtype == QG_I8) {
            const int8_t *v = (const int8_t *)src + base;
            for (int64_t i = 0; i < inner; i++) y[base + i] = (float)((int64_t)v[i] - z) * s;
        } else {
            const int32_t *v = (const int32_t *)src + base;
            for (int64_t i = 0; i < inner; i++) y[base + i] = (float)((int64_t)v[i] - z) * s;
        }
    }
    return out;
}

qg_tensor *qg_int_repr(const qg_tensor *q) {
    if (check_quantized("int_repr", q)) return NULL;
    qg_tensor *v = qg__tape_view(q);
    if (v) v->quant = NULL;
    return v;
}

/* ------------------------------------------------------------- accessors */

bool qg_tensor_is_quantized(const qg_tensor *t) { return t && t->quant; }

int qg_tensor_qdtype(const qg_tensor *q) {
    qg_status st = check_quantized("tensor_qdtype", q);
    return st ? st : (int)qdtype_of(q->dtype);
}

int qg_tensor_qscheme(const qg_tensor *q) {
    qg_status st = check_quantized("tensor_qscheme", q);
    return st ? st : q->quant->axis < 0 ? QG_PER_TENSOR_AFFINE : QG_PER_CHANNEL_AFFINE;
}

static qg_status want_scheme(const char *op, const qg_tensor *q, bool per_channel) {
    qg_status st = check_quantized(op, q);
    if (st) return st;
    if ((q->quant->axis >= 0) != per_channel)
        return qg__err(QG_EINVAL, "%s: the tensor is quantized per %s", op, per_channel ? "tensor" : "channel");
    return QG_OK;
}

double qg_q_scale(const qg_tensor *q) { return want_scheme("q_scale", q, false) ? NAN : q->quant->scale; }

int64_t qg_q_zero_point(const qg_tensor *q) {
    return want_scheme("q_zero_point", q, false) ? INT64_MIN : q->quant->zero_point;
}

int qg_q_per_channel_axis(const qg_tensor *q) {
    return want_scheme("q_per_channel_axis", q, true) ? -1 : q->quant->axis;
}

static qg_tensor *channel_values(const char *op, const qg_tensor *q, bool scales) {
    if (want_scheme(op, q, true)) return NULL;
    int64_t n = q->quant->nch;
    qg_tensor *t = qg__tape_tensor(scales ? QG_F64 : QG_I64, 1, &n);
    if (t) memcpy(qg__data(t), scales ? (const void *)q->quant->scales : (const void *)q->quant->zero_points, 8 * (size_t)n);
    return t;
}

qg_tensor *qg_q_per_channel_scales(const qg_tensor *q) { return channel_values("q_per_channel_scales", q, true); }
qg_tensor *qg_q_per_channel_zero_points(const qg_tensor *q) {
    return channel_values("q_per_channel_zero_points", q, false);
}

/* ------------------------------------------------------------- relu */

/* y = max(q, z), same mapping (PyTorch's quantized relu). */
qg_tensor *qg__quantized_relu(const qg_tensor *x) {
    if (x->quant->axis >= 0) return qg__err(QG_EDTYPE, "relu: per-channel quantized input is not supported"), NULL;
    qg_tensor *c = qg_contiguous(x);
    qg_tensor *out = c ? qg__tape_tensor(x->dtype, x->ndim, x->shape) : NULL;
    if (!out || !(out->quant = qg__quant_dup(x->quant, true))) return NULL;
    const int64_t n = qg_tensor_numel(x), z = x->quant->zero_point;
    if (x->dtype == QG_U8) {
        const uint8_t *a = (const uint8_t *)qg__data(c);
        uint8_t *y = (uint8_t *)qg__data(out), zz = (uint8_t)z;
        for (int64_t i = 0; i < n; i++) y[i] = a[i] > zz ? a[i] : zz;
    } else if (x->dtype == QG_I8) {
        const int8_t *a = (const int8_t *)qg__data(c);
        int8_t *y = (int8_t *)qg__data(out), zz = (int8_t)z;
        for (int64_t i = 0; i < n; i++) y[i] = a[i] > zz ? a[i] : zz;
    } else {
        const int32_t *a = (const int32_t *)qg__data(c);
        int32_t *y = (int32_t *)qg__data(out), zz = (int32_t)z;
        for (int64_t i = 0; i < n; i++) y[i] = a[i] > zz ? a[i] : zz;
    }
    return out;
}
