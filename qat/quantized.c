/* The quantized modules convert makes: Quantize, DeQuantize, the static Linear and
 * Conv1d/2d (with their ReLU fusions) and the dynamic Linear. The int8 product is
 * kernels/qgemm.c's; this file moves data in and out of it (qconv.c for convolutions)
 * and requantizes each int32 accumulator with the engine's float32 arithmetic
 * (docs/int8.md). Every float operation is its own statement: one rounding each, and
 * no compiler may contract a multiply and an add into an FMA. */
#include <math.h>

#include "op_internal.h" /* their outputs are tape tensors, made as ops make them */
#include "qat_internal.h"
#include "qlayer.h"

const char *qg_qengine_name(qg_qengine e) {
    return e == QG_QENGINE_ONEDNN ? "onednn" : e == QG_QENGINE_QNNPACK ? "qnnpack" : "?";
}

static qg_status check_engine(const char *op, qg_qengine e) {
    if (e != QG_QENGINE_ONEDNN && e != QG_QENGINE_QNNPACK)
        return qg__err(QG_EINVAL, "%s: unknown quantized engine %d (onednn %d, qnnpack %d)", op, (int)e,
                       QG_QENGINE_ONEDNN, QG_QENGINE_QNNPACK);
    return QG_OK;
}

/* ------------------------------------------------------------- Quantize, DeQuantize */

typedef struct {
    qg_module base;
    double scale;
    int64_t zero_point;
    qg_qdtype dtype;
} quantize_mod;

static qg_tensor *quantize_forward(qg_module *m, qg_tensor *x) {
    quantize_mod *q = (quantize_mod *)m;
    if (x && x->quant)
        return qg__err(QG_EDTYPE, "%s: input is already quantized (%s); Quantize takes f32", qg__module_label(m),
                       qg__type_name(x)), NULL;
    return qg_quantize_per_tensor(x, q->scale, q->zero_point, q->dtype);
}

static qg_tensor *dequantize_forward(qg_module *m, qg_tensor *x) {
    if (x && !x->quant)
        return qg__err(QG_EDTYPE, "%s: input is not quantized (%s); DeQuantize takes a quantized tensor",
                       qg__module_label(m), qg_dtype_name(x->dtype)), NULL;
    return qg_dequantize(x);
}

static const qg_module_type quantize_type = {.name = "quantized.Quantize", .size = sizeof(quantize_mod),
                                             .forward = quantize_forward};
static const qg_module_type dequantize_type = {.name = "quantized.DeQuantize", .size = sizeof(qg_module),
                                               .forward = dequantize_forward};

/* buffers scale (f32) and zero_point (i64), as PyTorch's quantized modules store them */
static qg_status add_qparam_buffers(qg_module *m, double scale, int64_t zp, int ndim) {
    int64_t one = 1;
    float s = (float)scale;
    qg_status st = qg__module_add_buffer_made(m, "scale", qg_tensor_from_data(QG_F32, ndim, &one, &s));
    if (!st) st = qg__module_add_buffer_made(m, "zero_point", qg_tensor_from_data(QG_I64, ndim, &one, &zp));
    if (!st) st = qg_module_buffer_set_flags(m, "scale", QG_BUFFER_FIXED_DTYPE);
    return st;
}

qg_module *qg_quantized_quantize_new(double scale, int64_t zero_point, qg_qdtype dtype) {
    if (qg__check_qdtype("quantized.Quantize", dtype) || qg__check_qparam("quantized.Quantize", -1, scale, zero_point, dtype))
        return NULL;
    qg_module *m = qg_module_new(&quantize_type);
    if (!m) return NULL;
    quantize_mod *q = (quantize_mod *)m;
    q->scale = scale, q->zero_point = zero_point, q->dtype = dtype;
    if (add_qparam_buffers(m, scale, zero_point, 1)) {
        qg_module_free(m);
        return NULL;
    }
    return m;
}

qg_module *qg_quantized_dequantize_new(void) { return qg_module_new(&dequantize_type); }

/* ------------------------------------------------------------- Linear, Conv */

void *qg__qbuf_get(qg__qbuf *b, size_t n, const char *who) {
    if (n <= b->cap && b->p) return b->p;
    void *p = qg__alloc(n ? n : 1);
    if (!p) return qg__err(QG_ENOMEM, "%s: out of memory for %zu bytes of scratch", who, n), NULL;
    qg__free(b->p);
    b->p = p, b->cap = n;
    return p;
}

typedef qg__qlayer qlayer;

static qg_tensor *qlayer_forward(qg_module *m, qg_tensor *x);
static qg_tensor *dynamic_forward(qg_module *m, qg_tensor *x);
static void qlayer_free(qg_module *m);
static bool conv_fuses(const qg_module *m, const qg_module *next);
static qg_tensor *conv_forward_pool(qg_module *m, qg_module *next, qg_tensor *x);

#define QLAYER_TYPE(var, nm, fw) \
    static const qg_module_type var = {.name = nm, .size = sizeof(qlayer), .forward = fw, .free = qlayer_free}
#define QCONV2D_TYPE(var, nm)                                                                                  \
    static const qg_module_type var = {.name = nm, .size = sizeof(qlayer), .forward = qlayer_forward,           \
                                       .free = qlayer_free, .fuses = conv_fuses, .forward_fused = conv_forward_pool}
QLAYER_TYPE(t_linear, "quantized.Linear", qlayer_forward);
QLAYER_TYPE(t_linear_relu, "intrinsic.quantized.LinearReLU", qlayer_forward);
QLAYER_TYPE(t_conv1d, "quantized.Conv1d", qlayer_forward);
QCONV2D_TYPE(t_conv2d, "quantized.Conv2d");
QLAYER_TYPE(t_conv_relu1d, "intrinsic.quantized.ConvReLU1d", qlayer_forward);
QCONV2D_TYPE(t_conv_relu2d, "intrinsic.quantized.ConvReLU2d");
QLAYER_TYPE(t_dynamic, "quantized.dynamic.Linear", dynamic_forward);

static void qlayer_free(qg_module *m) {
    qlayer *q = (qlayer *)m;
    for (int64_t g = 0; q->pack && g < q->G; g++) qg__qpack_free(q->pack[g]);
    qg__qpack_free(q->xpack);
    qg__free(q->pack), qg__free(q->wscale), qg__free(q->bias), qg__free(q->mult), qg__free(q->badd);
    qg__free(q->ibias), qg__free(q->cols.p), qg__free(q->acc.p), qg__free(q->img.p);
}

/* The requantization constants for input scale sx (docs/int8.md). */
static void requant_constants(qlayer *q, double sx) {
    const float fsx = (float)sx, isx = 1.0f / fsx, isy = 1.0f / (float)q->oscale;
    for (int64_t c = 0; c < q->out; c++) {
        const float sw = q->wscale[c];
        if (q->engine == QG_QENGINE_ONEDNN) {
            float isw = 1.0f / sw;
            float bs = isx * isw;        /* bias scale */
            q->badd[c] = q->bias[c] * bs; /* b' = F(b bs), not rounded */
            q->mult[c] = isy / bs;
        } else {
            float sxw = fsx * sw;
            float inv = 1.0f / sxw;
            float bv = q->bias[c] * inv;
            float r = nearbyintf(bv); /* quantize to qint32 */
            q->ibias[c] = !(r >= -2147483648.0f && r < 2147483648.0f) ? INT32_MIN : (int32_t)r;
            float sws = sw * fsx;
            q->mult[c] = sws * isy;
        }
    }
    q->cached = true, q->cache_sx = sx;
}

void qg__qlayer_rq(const qlayer *q, int64_t c0, qg__requant *k) {
    const bool onednn = q->engine == QG_QENGINE_ONEDNN;
    *k = (qg__requant){onednn, q->a.relu ? 0.0f : -(float)q->ozp, (float)q->ozp, q->mult + c0, q->badd + c0,
                       q->ibias + c0};
}

/* The input checks every static layer makes; the input made contiguous. */
static qg_tensor *layer_input(const qlayer *q, qg_tensor *x) {
    const qg_module *m = &q->base;
    char b[128];
    if (!x) return qg__err_null(qg__module_label(m)), NULL;
    if (qg__live(qg__module_label(m), x)) return NULL;
    if (!x->quant || x->dtype != QG_U8 || x->quant->axis >= 0)
        return qg__err(QG_EDTYPE, "%s: expected a per-tensor quint8 input, got %s%s%s", qg__module_label(m),
                       qg__type_name(x), x->quant && x->quant->axis >= 0 ? " per channel" : "",
                       x->quant ? "" : " (a Quantize module makes one)"), NULL;
    if (q->a.dim == 0) {
        if (x->ndim < 1 || x->shape[x->ndim - 1] != q->in)
            return qg__err(QG_ESHAPE, "%s: expected an input (..., %lld), got %s", qg__module_label(m),
                           (long long)q->in, qg_shape_str(x, b, sizeof b)), NULL;
    } else {
        int nd = q->a.dim + 2;
        if ((x->ndim != nd && x->ndim != nd - 1) || x->shape[x->ndim - q->a.dim - 1] != q->in)
            return qg__err(QG_ESHAPE, "%s: expected an input (N, %lld, %s) or (%lld, %s), got %s", qg__module_label(m),
                           (long long)q->in, q->a.dim == 1 ? "L" : "H, W", (long long)q->in,
                           q->a.dim == 1 ? "L" : "H, W", qg_shape_str(x, b, sizeof b)), NULL;
    }
    return qg_contiguous(x);
}

/* layer_input, and the requantization constants for x's scale */
static qg_tensor *ready_input(qlayer *q, qg_tensor *x) {
    x = layer_input(q, x);
    if (x && (!q->cached || q->cache_sx != x->quant->scale)) requant_constants(q, x->quant->scale);
    return x;
}

static qg_tensor *qlayer_forward(qg_module *m, qg_tensor *x) {
    qlayer *q = (qlayer *)m;
    x = ready_input(q, x);
    if (!x) return NULL;
    const qg_quant *xq = x->quant;
    if (q->a.dim) return qg__qconv_forward(q, x, NULL);
    const int64_t M = qg__numel(x->ndim - 1, x->shape);
    int64_t shape[QG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = q->out;
    qg_quant oq = {.axis = -1, .scale = q->oscale, .zero_point = q->ozp};
    qg_tensor *y = qg__tape_tensor(QG_U8, x->ndim, shape);
    int32_t *acc = qg__qbuf_get(&q->acc, sizeof(int32_t) * (size_t)(M * q->out), qg__module_label(m));
    if (!y || !acc || !(y->quant = qg__quant_dup(&oq, true))) return NULL;
    qg__qgemm(M, (const uint8_t *)qg__data(x), q->in, (int32_t)xq->zero_point, q->pack[0], acc, q->out);
    qg__requant k;
    qg__qlayer_rq(q, 0, &k);
    qg__qrequant(&k, acc, q->out, M, q->out, (uint8_t *)qg__data(y), q->out);
    return y;
}

/* A 2-d convolution and the MaxPool2d after it, kernel and stride 2, no padding or
 * dilation, floor mode: the pool in the convolution's epilogue (qconv.c), the bytes
 * the two modules give. */
static bool conv_fuses(const qg_module *m, const qg_module *next) {
    qg_layer_info li;
    (void)m;
    if (!qg_module_is(next, "MaxPool2d") || qg_nn_layer_info(next, &li)) return false;
    return li.kernel[0] == 2 && li.kernel[1] == 2 && li.stride[0] == 2 && li.stride[1] == 2 && !li.padding[0] &&
           !li.padding[1] && li.dilation[0] == 1 && li.dilation[1] == 1 && !li.ceil_mode;
}

static qg_tensor *conv_forward_pool(qg_module *m, qg_module *next, qg_tensor *x) {
    qlayer *q = (qlayer *)m;
    x = ready_input(q, x);
    return x ? qg__qconv_forward(q, x, next) : NULL;
}

/* ------------------------------------------------------------- dynamic Linear */

/* PyTorch's ChooseQuantizationParams for the dynamic input, in its precision: lo, hi
 * float32, the scale sd and the zero point in double (docs/int8.md). */
static double choose_input(float mn, float mx, int qmax, int32_t *zp) {
    float lo = mn < 0 ? mn : 0, hi = mx > 0 ? mx : 0;
    double sd = ((double)hi - lo) / qmax;
    if ((float)sd == 0 || isinf(1.0f / (float)sd)) sd = 0.1;
    if (sd < 6.1e-5f) { /* the small-scale cut-off */
        float org = (float)sd;
        sd = (double)6.1e-5f;
        if (lo == 0) {
            hi = 6.1e-5f * (float)qmax;
        } else if (hi == 0) {
            lo = -(6.1e-5f * (float)qmax);
        } else {
            float amp = 6.1e-5f / org;
            lo = lo * amp, hi = hi * amp;
        }
    }
    double zmin = 0 - lo / sd, zmax = qmax - hi / sd;
    double z0 = (0 - fabs(lo / sd)) < (qmax - fabs(hi / sd)) ? zmin : zmax;
    *zp = z0 < 0 ? 0 : z0 > qmax ? qmax : (int32_t)nearbyint(z0);
    return sd;
}

static qg_tensor *dynamic_forward(qg_module *m, qg_tensor *x) {
    qlayer *q = (qlayer *)m;
    const char *who = qg__module_label(m);
    char b[128];
    if (!x) return qg__err_null(who), NULL;
    if (qg__live(who, x)) return NULL;
    if (x->quant || x->dtype != QG_F32)
        return qg__err(QG_EDTYPE, "%s: expected an f32 input, got %s", who, qg__type_name(x)), NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != q->in)
        return qg__err(QG_ESHAPE, "%s: expected an input (..., %lld), got %s", who, (long long)q->in,
                       qg_shape_str(x, b, sizeof b)), NULL;
    x = qg_contiguous(qg_detach(x));
    if (!x) return NULL;
    const int64_t n = qg_tensor_numel(x), M = qg__numel(x->ndim - 1, x->shape);
    const float *xd = (const float *)qg__data(x);
    float mn = n ? xd[0] : 0, mx = mn;
    for (int64_t i = 1; i < n; i++) mn = xd[i] < mn ? xd[i] : mn, mx = xd[i] > mx ? xd[i] : mx;
    if (!isfinite(mn) || !isfinite(mx))
        return qg__err(QG_EINVAL, "%s: the input holds NaN or infinity; its quantization range is undefined", who), NULL;
    const bool onednn = q->engine == QG_QENGINE_ONEDNN;
    int32_t z;
    const double sd = choose_input(mn, mx, onednn && q->reduce_range ? 127 : 255, &z);
    int64_t shape[QG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = q->out;
    qg_tensor *y = qg__tape_tensor(QG_F32, x->ndim, shape);
    uint8_t *xq = y ? qg__qbuf_get(&q->cols, (size_t)n, who) : NULL;
    int32_t *acc = xq ? qg__qbuf_get(&q->acc, sizeof(int32_t) * (size_t)(M * q->out), who) : NULL;
    if (!acc) return NULL;
    /* onednn: isx = F(1/sd), q = rne(F(F(x isx) + z)); qnnpack: the Quantize rule with s_x = F(sd) */
    const float sx = (float)sd, isx = onednn ? (float)(1.0 / sd) : 1.0f / sx, zf = (float)z;
    for (int64_t i = 0; i < n; i++) {
        float t = xd[i] * isx;
        float r = onednn ? nearbyintf(t + zf) : nearbyintf(t) + zf;
        xq[i] = !(r > 0) ? 0 : r >= 255 ? 255 : (uint8_t)r; /* NaN cannot reach here */
    }
    for (int64_t c = 0; c < q->out; c++) {
        const float sw = q->wscale[c];
        if (onednn) { /* y = F(F(F(acc) + F(b bs)) F(1/bs)) */
            float isw = 1.0f / sw;
            float bs = isx * isw;
            q->badd[c] = q->bias[c] * bs;
            q->mult[c] = 1.0f / bs;
        } else { /* y = F(F(F(acc) F(s_x s_w)) + b) */
            q->mult[c] = sx * sw;
        }
    }
    q->cached = false;
    qg__qgemm(M, xq, q->in, z, q->pack[0], acc, q->out);
    float *yd = (float *)qg__data(y);
    for (int64_t i = 0; i < M; i++)
        for (int64_t c = 0; c < q->out; c++) {
            float a = (float)acc[i * q->out + c];
            if (onednn) {
                float t = q->has_bias ? a + q->badd[c] : a;
                yd[i * q->out + c] = t * q->mult[c];
            } else {
                float t = a * q->mult[c];
                yd[i * q->out + c] = t + q->bias[c];
            }
        }
    return y;
}

/* ------------------------------------------------------------- construction */

static qg_status check_weight(const char *who, const qg_tensor *w, const qg_tensor *bias, int dim) {
    char b[128];
    if (!w) return qg__err(QG_EINVAL, "%s: weight is NULL", who);
    if (qg__live(who, w) || (bias && qg__live(who, bias))) return QG_ESTATE;
    if (!w->quant || w->dtype != QG_I8)
        return qg__err(QG_EDTYPE, "%s: weight must be a qint8 tensor, got %s", who, qg__type_name(w));
    if (w->ndim != (dim ? dim + 2 : 2))
        return qg__err(QG_ESHAPE, "%s: weight must be %s, got %s", who,
                       dim == 0 ? "(out, in)" : dim == 1 ? "(out, in/groups, k)" : "(out, in/groups, kh, kw)",
                       qg_shape_str(w, b, sizeof b));
    const qg_quant *wq = w->quant;
    if (wq->axis > 0) return qg__err(QG_EINVAL, "%s: per-channel weights must be along dim 0, got %d", who, wq->axis);
    for (int64_t c = 0; c < (wq->axis < 0 ? 1 : wq->nch); c++)
        if ((wq->axis < 0 ? wq->zero_point : wq->zero_points[c]) != 0)
            return qg__err(QG_EINVAL, "%s: weight zero points must be 0 (symmetric qint8 weights), channel %lld has %lld",
                           who, (long long)c, (long long)(wq->axis < 0 ? wq->zero_point : wq->zero_points[c]));
    if (bias && (bias->quant || bias->dtype != QG_F32 || bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return qg__err(QG_ESHAPE, "%s: bias must be f32 (%lld), got %s %s", who, (long long)w->shape[0],
                       qg__type_name(bias), qg_shape_str(bias, b, sizeof b));
    return QG_OK;
}

static const qg_module_type *layer_type(int dim, bool relu) {
    if (dim == 0) return relu ? &t_linear_relu : &t_linear;
    if (dim == 1) return relu ? &t_conv_relu1d : &t_conv1d;
    return relu ? &t_conv_relu2d : &t_conv2d;
}

static qg_module *build_layer(const qg_module_type *type, const qg_tensor *w, const qg_tensor *bias, double scale,
                              int64_t zp, const qg_qlayer_args *a, qg_qengine engine, bool dynamic) {
    const char *who = type->name;
    if (check_engine(who, engine) || check_weight(who, w, bias, a->dim)) return NULL;
    if (!dynamic && qg__check_qparam(who, -1, scale, zp, QG_QUINT8)) return NULL;
    const int G = a->dim && a->groups ? a->groups : 1;
    const int64_t out = w->shape[0], kdim = qg__numel(w->ndim - 1, w->shape + 1);
    if (G < 1 || out % G)
        return qg__err(QG_EINVAL, "%s: groups %d must be positive and divide the %lld output channels", who, G,
                       (long long)out), NULL;
    qg_module *m = qg_module_new(type);
    if (!m) return NULL;
    qlayer *q = (qlayer *)m;
    q->a = *a, q->a.groups = G, q->dynamic = dynamic, q->engine = engine;
    q->in = w->shape[1] * G, q->out = out, q->G = G, q->og = out / G, q->kdim = kdim;
    q->kh = a->dim == 2 ? w->shape[2] : 1, q->kw = a->dim ? w->shape[w->ndim - 1] : 1;
    int i = a->dim == 1 ? 0 : 1; /* Conv1d's (stride, ...) are entry 0, Conv2d's width entry 1 */
    q->sh = a->dim == 2 && a->stride[0] ? a->stride[0] : 1, q->sw = a->dim && a->stride[i] ? a->stride[i] : 1;
    q->ph = a->dim == 2 ? a->padding[0] : 0, q->pw = a->dim ? a->padding[i] : 0;
    q->dh = a->dim == 2 && a->dilation[0] ? a->dilation[0] : 1, q->dw = a->dim && a->dilation[i] ? a->dilation[i] : 1;
    q->oscale = scale, q->ozp = zp, q->has_bias = bias != NULL;
    if (q->sh < 1 || q->sw < 1 || q->dh < 1 || q->dw < 1 || q->ph < 0 || q->pw < 0) {
        qg_module_free(m);
        return qg__err(QG_EINVAL, "%s: stride and dilation must be positive and padding non-negative", who), NULL;
    }
    size_t fb = sizeof(float) * (size_t)(out + 1);
    q->pack = qg__calloc(sizeof(qg__qpack *) * (size_t)G);
    q->wscale = qg__alloc(fb), q->bias = qg__calloc(fb), q->mult = qg__alloc(fb), q->badd = qg__alloc(fb);
    q->ibias = qg__alloc(sizeof(int32_t) * (size_t)(out + 1));
    const qg_tensor *wi = qg_contiguous(qg_int_repr(w));
    qg_status st = QG_OK;
    if (!q->pack || !q->wscale || !q->bias || !q->mult || !q->badd || !q->ibias)
        st = qg__err(QG_ENOMEM, "%s: out of memory for %lld channels", who, (long long)out);
    else if (!wi)
        st = qg_last_status();
    if (!st && a->dim)
        st = qg__qconv_pack(q, (const int8_t *)qg__data(wi));
    else if (!st && !(q->pack[0] = qg__qpack_new((const int8_t *)qg__data(wi), kdim, q->out, kdim)))
        st = qg_last_status();
    for (int64_t c = 0; !st && c < out; c++) {
        q->wscale[c] = (float)(w->quant->axis < 0 ? w->quant->scale : w->quant->scales[c]);
        if (bias) q->bias[c] = ((const float *)qg__data(qg_contiguous(bias)))[c];
    }
    if (!st) st = qg__module_add_buffer_made(m, "weight", qg_tensor_clone(w));
    if (!st && bias) st = qg__module_add_buffer_made(m, "bias", qg_tensor_clone(bias));
    if (!st && bias) st = qg_module_buffer_set_flags(m, "bias", QG_BUFFER_FIXED_DTYPE);
    if (!st && !dynamic) st = add_qparam_buffers(m, scale, zp, 0);
    if (st) {
        qg_module_free(m);
        return NULL;
    }
    qg_module_train(m, false);
    return m;
}

qg_module *qg_quantized_layer_new(const qg_tensor *weight, const qg_tensor *bias, double scale, int64_t zero_point,
                                  const qg_qlayer_args *args, qg_qengine engine) {
    if (!args) return qg__err(QG_EINVAL, "quantized_layer_new: args is NULL"), NULL;
    if (args->dim < 0 || args->dim > 2)
        return qg__err(QG_EINVAL, "quantized_layer_new: dim must be 0 (Linear), 1 or 2 (Conv), got %d", args->dim), NULL;
    return build_layer(layer_type(args->dim, args->relu), weight, bias, scale, zero_point, args, engine, false);
}

qg_module *qg_quantized_dynamic_linear_new(const qg_tensor *weight, const qg_tensor *bias, bool reduce_range,
                                           qg_qengine engine) {
    qg_module *m = build_layer(&t_dynamic, weight, bias, 1.0, 0, &(qg_qlayer_args){0}, engine, true);
    if (m) ((qlayer *)m)->reduce_range = reduce_range;
    return m;
}

/* ------------------------------------------------------------- for the file format */

bool qg__qlayer_type_name(const char *n) {
    const qg_module_type *ts[] = {&t_linear, &t_linear_relu, &t_conv1d, &t_conv2d, &t_conv_relu1d, &t_conv_relu2d, &t_dynamic};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (!strcmp(n, ts[i]->name)) return true;
    return false;
}

bool qg__is_qlayer(const qg_module *m) {
    const qg_module_type *t = m ? m->type : NULL;
    return t == &t_linear || t == &t_linear_relu || t == &t_conv1d || t == &t_conv2d || t == &t_conv_relu1d ||
           t == &t_conv_relu2d || t == &t_dynamic;
}

void qg__qlayer_info(const qg_module *m, qg_qlayer_args *a, qg_qengine *engine, bool *dynamic, bool *reduce_range) {
    const qlayer *q = (const qlayer *)m;
    *a = q->a, *engine = q->engine, *dynamic = q->dynamic, *reduce_range = q->reduce_range;
}

bool qg__quantize_info(const qg_module *m, double *scale, int64_t *zp, qg_qdtype *dtype) {
    if (!m || m->type != &quantize_type) return false;
    const quantize_mod *q = (const quantize_mod *)m;
    *scale = q->scale, *zp = q->zero_point, *dtype = q->dtype;
    return true;
}
