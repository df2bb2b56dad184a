/* qg_export_onnx: an int8 model as an ONNX graph in the QDQ format (qgrad/deploy.h).
 *
 * The plan (export_plan.c) gives the steps. Each value qgrad holds in quint8 is, in
 * the graph, a float tensor behind a QuantizeLinear/DequantizeLinear pair with the
 * value's scale and zero point. Each step becomes a float ONNX operator between such
 * pairs, whose inputs are DequantizeLinear outputs: a runtime (ONNX Runtime's QDQ
 * fusions) turns every DQ -> op -> Q group back into an integer kernel. The protobuf
 * is built with the C bindings protoc-c generates from the system's onnx.proto at
 * build time (meson.build), every message allocated in one arena and freed at the end. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#include "export_plan.h"

#define WHO "export_onnx"

#ifndef QG_HAVE_ONNX

qg_status qg_export_onnx(qg_module *model, const char *path, const qg_export_opts *o) {
    (void)model, (void)path, (void)o;
    return qg__err(QG_EINVAL, "%s: this qgrad was built without ONNX support: install libonnx-dev, "
                   "protobuf-c-compiler and libprotobuf-c-dev and rebuild (meson setup -Donnx=enabled)", WHO);
}

#else

#include "onnx.pb-c.h"
#include "qlayer.h"

enum { F32 = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, U8 = ONNX__TENSOR_PROTO__DATA_TYPE__UINT8,
       I8 = ONNX__TENSOR_PROTO__DATA_TYPE__INT8, I32 = ONNX__TENSOR_PROTO__DATA_TYPE__INT32,
       I64 = ONNX__TENSOR_PROTO__DATA_TYPE__INT64, F64 = ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE };

/* ------------------------------------------------------------- the arena */

typedef struct {
    void **p;
    size_t n, cap;
    bool oom;
} arena;

static void *az(arena *a, size_t n) {
    if (a->oom) return NULL;
    if (a->n == a->cap) {
        size_t nc = a->cap ? 2 * a->cap : 256;
        void **p = qg__alloc(sizeof *p * nc);
        if (!p) return a->oom = true, NULL;
        if (a->n) memcpy(p, a->p, sizeof *p * a->n);
        qg__free(a->p);
        a->p = p, a->cap = nc;
    }
    void *m = qg__calloc(n ? n : 1);
    if (!m) return a->oom = true, NULL;
    return a->p[a->n++] = m;
}

static char *astr(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *astr(arena *a, const char *fmt, ...) {
    char b[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    char *s = az(a, strlen(b) + 1);
    if (s) strcpy(s, b);
    return s;
}

static void arena_free(arena *a) {
    for (size_t i = 0; i < a->n; i++) qg__free(a->p[i]);
    qg__free(a->p);
}

/* ------------------------------------------------------------- the graph */

typedef struct {
    arena a;
    Onnx__NodeProto **node;
    Onnx__TensorProto **init;
    size_t nnode, ninit, cap_node, cap_init;
    qg_status st;
} graph;

static bool grow(graph *g, void ***v, size_t *cap, size_t n) {
    if (n < *cap) return true;
    size_t nc = *cap ? 2 * *cap : 64;
    void **p = az(&g->a, sizeof *p * nc);
    if (!p) return false;
    if (n) memcpy(p, *v, sizeof *p * n);
    *v = p, *cap = nc;
    return true;
}

/* An initializer of the given ONNX type and dims, its bytes copied (little-endian). */
static const char *init(graph *g, const char *name, int dtype, int ndim, const int64_t *dims, const void *data,
                        size_t bytes) {
    Onnx__TensorProto *t = az(&g->a, sizeof *t);
    int64_t *d = az(&g->a, sizeof(int64_t) * (size_t)(ndim + 1));
    uint8_t *raw = az(&g->a, bytes);
    char *nm = astr(&g->a, "%s", name);
    if (!t || !d || !raw || !nm || !grow(g, (void ***)&g->init, &g->cap_init, g->ninit)) return NULL;
    onnx__tensor_proto__init(t);
    if (ndim) memcpy(d, dims, sizeof(int64_t) * (size_t)ndim); /* scalars: no dims */
    memcpy(raw, data, bytes);
    t->n_dims = (size_t)ndim, t->dims = d, t->has_data_type = true, t->data_type = dtype, t->name = nm;
    t->has_raw_data = true, t->raw_data.len = bytes, t->raw_data.data = raw;
    g->init[g->ninit++] = t;
    return nm;
}

static const char *scalar_f32(graph *g, const char *name, float v) { return init(g, name, F32, 0, NULL, &v, 4); }
static const char *scalar_u8(graph *g, const char *name, int64_t v) {
    uint8_t b = (uint8_t)v;
    return init(g, name, U8, 0, NULL, &b, 1);
}

typedef struct {
    const char *name;
    int n;              /* ints: n values; n = 0: one int i */
    int64_t i, v[4];
} attr;

/* A node op(in...) -> out; attributes end at a NULL name. */
static const char *node(graph *g, const char *op, int nin, const char *const *in, const char *out, const attr *at) {
    Onnx__NodeProto *n = az(&g->a, sizeof *n);
    char **ins = az(&g->a, sizeof(char *) * (size_t)(nin + 1)), **outs = az(&g->a, sizeof(char *));
    int na = 0;
    while (at && at[na].name) na++;
    Onnx__AttributeProto **as = az(&g->a, sizeof *as * (size_t)(na + 1));
    char *nm = astr(&g->a, "qg.%s_%zu", op, g->nnode), *o = astr(&g->a, "%s", out);
    if (!n || !ins || !outs || !as || !nm || !o || !grow(g, (void ***)&g->node, &g->cap_node, g->nnode)) return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++)
        if (!in[i] || !(ins[i] = astr(&g->a, "%s", in[i]))) return NULL;
    for (int i = 0; i < na; i++) {
        Onnx__AttributeProto *p = az(&g->a, sizeof *p);
        int64_t *v = at[i].n ? az(&g->a, sizeof(int64_t) * (size_t)at[i].n) : NULL;
        char *an = astr(&g->a, "%s", at[i].name);
        if (!p || (at[i].n && !v) || !an) return NULL;
        onnx__attribute_proto__init(p);
        p->name = an, p->has_type = true;
        if (at[i].n) {
            memcpy(v, at[i].v, sizeof(int64_t) * (size_t)at[i].n);
            p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, p->n_ints = (size_t)at[i].n, p->ints = v;
        } else {
            p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, p->has_i = true, p->i = at[i].i;
        }
        as[i] = p;
    }
    outs[0] = o;
    n->op_type = astr(&g->a, "%s", op), n->name = nm;
    n->n_input = (size_t)nin, n->input = ins, n->n_output = 1, n->output = outs;
    n->n_attribute = (size_t)na, n->attribute = as;
    if (!n->op_type) return NULL;
    g->node[g->nnode++] = n;
    return o;
}

/* x (float) quantized to (s, z) and back: the QDQ pair; the float name out. With
 * prescale, x is first multiplied by F(1/s) and the QuantizeLinear has scale 1, which
 * only rounds: the model's Quantize (docs/int8.md), PyTorch's order, for QuantizeLinear
 * divides by its scale. The DequantizeLinear has the scale s. */
static const char *qdq_as(graph *g, int i, const char *x, double s, int64_t z, bool prescale) {
    char sn[32], zn[32], q[32], f[32], rn[32], on[32], t[32];
    snprintf(sn, sizeof sn, "qg.s%d", i), snprintf(zn, sizeof zn, "qg.z%d", i);
    snprintf(q, sizeof q, "qg.q%d", i), snprintf(f, sizeof f, "qg.x%d", i);
    snprintf(rn, 32, "qg.is%d", i), snprintf(on, 32, "qg.one%d", i), snprintf(t, 32, "qg.xs%d", i);
    const char *S = scalar_f32(g, sn, (float)s), *Z = scalar_u8(g, zn, z), *QS = S;
    if (prescale && S && Z) {
        const char *R = scalar_f32(g, rn, 1.0f / (float)s);
        QS = scalar_f32(g, on, 1.0f);
        x = R && QS ? node(g, "Mul", 2, (const char *[]){x, R}, t, NULL) : NULL;
    }
    const char *qq = x && S && Z && QS ? node(g, "QuantizeLinear", 3, (const char *[]){x, QS, Z}, q, NULL) : NULL;
    return qq ? node(g, "DequantizeLinear", 3, (const char *[]){qq, S, Z}, f, NULL) : NULL;
}

static const char *qdq(graph *g, int i, const char *x, double s, int64_t z) { return qdq_as(g, i, x, s, z, false); }

/* ------------------------------------------------------------- steps */

static qg_status refuse(const qg__xstep *s, const char *why) {
    return qg__err(QG_EINVAL, "%s: module '%s' (%s) %s", WHO, s->path, s->type, why);
}

/* A static Linear or Conv: its weight behind a DequantizeLinear, its bias as int32,
 * the float op, the fused ReLU; the output's QDQ pair. */
static const char *layer(graph *g, int i, const qg__xstep *s, const char *x) {
    const qg__qlayer *q = (const qg__qlayer *)s->m;
    if (q->a.dim && s->in.ndim != q->a.dim + 2) {
        if (!g->st) g->st = refuse(s, "takes an unbatched input here: ONNX's Conv needs (N, C, ...)");
        return NULL;
    }
    const qg_tensor *wb = qg_module_buffer(s->m, "weight"), *w = qg_contiguous(qg_int_repr(wb));
    if (!w) return NULL;
    const qg_quant *wq = wb->quant;
    const bool pc = wq->axis >= 0, mm = q->a.dim == 0 && s->in.ndim != 2; /* MatMul: the weight transposed */
    const int64_t out = q->out, in = q->in;
    char wn[32], sn[32], zn[32], wf[32], bn[32], bs[32], bz[32], bf[32], y[32];
    snprintf(wn, 32, "qg.w%d", i), snprintf(sn, 32, "qg.ws%d", i), snprintf(zn, 32, "qg.wz%d", i), snprintf(wf, 32, "qg.wf%d", i);
    snprintf(bn, 32, "qg.b%d", i), snprintf(bs, 32, "qg.bs%d", i), snprintf(bz, 32, "qg.bz%d", i), snprintf(bf, 32, "qg.bf%d", i);
    snprintf(y, 32, "qg.y%d", i);
    const int8_t *wd = (const int8_t *)qg_tensor_data(w);
    const int64_t n = qg_tensor_numel(w);
    int8_t *wt = az(&g->a, (size_t)n);
    float *sc = az(&g->a, sizeof(float) * (size_t)out), *bsc = az(&g->a, sizeof(float) * (size_t)out);
    int8_t *wz = az(&g->a, (size_t)out);
    int32_t *bq = az(&g->a, sizeof(int32_t) * (size_t)out), *bzero = az(&g->a, sizeof(int32_t) * (size_t)out);
    if (!wt || !sc || !bsc || !wz || !bq || !bzero) return NULL;
    /* onednn keeps the bias in float. Its sub-8-bit weights are stored times 2^sh, with
     * their scales divided by 2^sh: the same real weights, exactly, and an int32 bias
     * 2^sh times finer, nearer the float one. |w| stays at most 64, which x86's vpmaddubsw
     * (u8 x s8 pairs summed in int16) takes without saturating. qnnpack's int32 bias is
     * ONNX's as it is. */
    int amax = 0, sh = 0;
    for (int64_t k = 0; k < n; k++) amax = abs(wd[k]) > amax ? abs(wd[k]) : amax;
    while (q->engine == QG_QENGINE_ONEDNN && amax && amax << (sh + 1) <= 64) sh++;
    for (int64_t k = 0; k < n; k++) wt[k] = (int8_t)((mm ? wd[(k % out) * in + k / out] : wd[k]) * (1 << sh));
    const float sx = (float)s->in.scale;
    for (int64_t c = 0; c < out; c++) { /* bias: rne(b / (s_x s_w[c])), saturated, with scale s_x s_w[c] */
        sc[c] = q->wscale[c] / (float)(1 << sh);
        bsc[c] = sx * sc[c];
        double v = nearbyint((double)q->bias[c] / (double)bsc[c]);
        bq[c] = !(v == v) ? 0 : v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN : (int32_t)v;
        if (q->engine == QG_QENGINE_QNNPACK) bq[c] = q->ibias[c]; /* qnnpack's own, for this input scale */
    }
    int64_t dims[4] = {out, in / q->G, q->kh, q->kw}, tdims[2] = {in, out};
    const int nd = q->a.dim == 0 ? 2 : q->a.dim + 2;
    if (q->a.dim == 1) dims[2] = q->kw;
    const int64_t nsc = pc ? out : 1;
    const char *W = init(g, wn, I8, nd, mm ? tdims : dims, wt, (size_t)n);
    const char *S = init(g, sn, F32, pc ? 1 : 0, &nsc, sc, sizeof(float) * (size_t)nsc);
    const char *Z = init(g, zn, I8, pc ? 1 : 0, &nsc, wz, (size_t)nsc);
    attr wax[2] = {{"axis", 0, mm ? 1 : 0, {0}}, {NULL, 0, 0, {0}}};
    const char *Wf = W && S && Z ? node(g, "DequantizeLinear", 3, (const char *[]){W, S, Z}, wf, pc ? wax : NULL) : NULL;
    const char *Bf = NULL;
    if (q->has_bias) {
        const char *B = init(g, bn, I32, 1, &out, bq, sizeof(int32_t) * (size_t)out);
        const char *BS = init(g, bs, F32, 1, &out, bsc, sizeof(float) * (size_t)out);
        const char *BZ = init(g, bz, I32, 1, &out, bzero, sizeof(int32_t) * (size_t)out);
        attr bax[2] = {{"axis", 0, 0, {0}}, {NULL, 0, 0, {0}}};
        Bf = B && BS && BZ ? node(g, "DequantizeLinear", 3, (const char *[]){B, BS, BZ}, bf, bax) : NULL;
        if (!Bf) return NULL;
    }
    if (!Wf) return NULL;
    const char *r;
    const int nin = q->has_bias ? 3 : 2;
    if (q->a.dim) {
        const bool d2 = q->a.dim == 2;
        attr at[6] = {{"kernel_shape", d2 ? 2 : 1, 0, {d2 ? q->kh : q->kw, q->kw}},
                      {"strides", d2 ? 2 : 1, 0, {d2 ? q->sh : q->sw, q->sw}},
                      {"pads", d2 ? 4 : 2, 0, {d2 ? q->ph : q->pw, d2 ? q->pw : q->pw, q->ph, q->pw}},
                      {"dilations", d2 ? 2 : 1, 0, {d2 ? q->dh : q->dw, q->dw}},
                      {"group", 0, q->G, {0}},
                      {NULL, 0, 0, {0}}};
        r = node(g, "Conv", nin, (const char *[]){x, Wf, Bf}, y, at);
    } else if (!mm) {
        attr at[2] = {{"transB", 0, 1, {0}}, {NULL, 0, 0, {0}}};
        r = node(g, "Gemm", nin, (const char *[]){x, Wf, Bf}, y, at);
    } else {
        char t[32];
        snprintf(t, 32, "qg.mm%d", i);
        r = node(g, "MatMul", 2, (const char *[]){x, Wf}, q->has_bias ? t : y, NULL);
        if (r && q->has_bias) r = node(g, "Add", 2, (const char *[]){r, Bf}, y, NULL);
    }
    if (r && q->a.relu) {
        char t[32];
        snprintf(t, 32, "qg.relu%d", i);
        r = node(g, "Relu", 1, (const char *[]){r}, t, NULL);
    }
    return r ? qdq(g, i, r, s->out.scale, s->out.zp) : NULL;
}

/* The end padding that gives PyTorch's output size with ONNX's floor rule: PyTorch's
 * ceil_mode adds a last window only when it starts inside the input and its padding,
 * which opset 13's ceil_mode does not check; an explicit end padding says it exactly. */
static int64_t end_pad(int64_t in, int64_t k, int64_t d, int64_t st, int64_t pad, int64_t out) {
    const int64_t ek = (k - 1) * d + 1;
    return (in + 2 * pad - ek) / st + 1 == out ? pad : (out - 1) * st + ek - in - pad;
}

static const char *pool(graph *g, int i, const qg__xstep *s, const char *x) {
    const qg__qpool_desc *d = &s->pool;
    char y[32];
    snprintf(y, 32, "qg.p%d", i);
    if (s->in.ndim != 4) {
        if (!g->st) g->st = refuse(s, "takes an unbatched input here: ONNX's pools need (N, C, H, W)");
        return NULL;
    }
    const bool adaptive = qg_module_is(s->m, "AdaptiveAvgPool2d");
    const char *r;
    if (adaptive && d->OH == 1 && d->OW == 1) {
        r = node(g, "GlobalAveragePool", 1, &x, y, NULL);
    } else if (adaptive && d->rule != QG_QPOOL_AVG_QNNPACK) { /* qnnpack's rule already has its kernel */
        if (d->H % d->OH || d->W % d->OW) {
            if (!g->st) g->st = refuse(s, "pools to windows of different sizes (its input size is not a multiple of "
                                          "its output size): it has no ONNX AveragePool form");
            return NULL;
        }
        attr ad[3] = {{"kernel_shape", 2, 0, {d->H / d->OH, d->W / d->OW}},
                      {"strides", 2, 0, {d->H / d->OH, d->W / d->OW}}, {NULL, 0, 0, {0}}};
        r = node(g, "AveragePool", 1, &x, y, ad);
    } else {
        const bool max = d->rule == QG_QPOOL_MAX;
        const int64_t eh = end_pad(d->H, d->kh, max ? d->dh : 1, d->sh, d->ph, d->OH);
        const int64_t ew = end_pad(d->W, d->kw, max ? d->dw : 1, d->sw, d->pw, d->OW);
        /* qnnpack's kernel divides by kh kw, padding included */
        const bool cip = d->rule == QG_QPOOL_AVG_QNNPACK || d->count_include_pad;
        if (!max && d->divisor) {
            if (!g->st) g->st = refuse(s, "has a divisor_override: ONNX's AveragePool has no such setting");
            return NULL;
        }
        if (!max && cip && (eh > d->ph || ew > d->pw)) {
            if (!g->st) g->st = refuse(s, "has a ceil_mode window past its padding, whose divisor counts the padding "
                                          "only up to the input's padded end: ONNX's AveragePool has no such rule");
            return NULL;
        }
        attr at[6] = {{"kernel_shape", 2, 0, {d->kh, d->kw}}, {"strides", 2, 0, {d->sh, d->sw}},
                      {"pads", 4, 0, {d->ph, d->pw, eh, ew}},
                      {max ? "dilations" : "count_include_pad", max ? 2 : 0, cip, {d->dh, d->dw}},
                      {NULL, 0, 0, {0}}};
        r = node(g, max ? "MaxPool" : "AveragePool", 1, &x, y, at);
    }
    return r ? qdq(g, i, r, s->in.scale, s->in.zp) : NULL;
}

/* Flatten as a Reshape to the output's shape (0: the batch, copied; -1 when the batch
 * is merged), re-quantized with the same scale so that the next op sees a QDQ input. */
static const char *flatten(graph *g, int i, const qg__xstep *s, const char *x) {
    int64_t shape[QG_MAX_DIMS];
    char sn[32], y[32];
    const bool merged = s->out.ndim < s->in.ndim && s->out.shape[0] != s->in.shape[0];
    for (int k = 0; k < s->out.ndim; k++) shape[k] = k ? s->out.shape[k] : merged ? -1 : 0;
    snprintf(sn, 32, "qg.shape%d", i), snprintf(y, 32, "qg.r%d", i);
    const int64_t nd = s->out.ndim;
    const char *S = init(g, sn, I64, 1, &nd, shape, sizeof(int64_t) * (size_t)nd);
    const char *r = S ? node(g, "Reshape", 2, (const char *[]){x, S}, y, NULL) : NULL;
    return r && s->in.q ? qdq(g, i, r, s->in.scale, s->in.zp) : r;
}

/* ------------------------------------------------------------- dynamic Linear */

/* One node of step i's dynamic Linear: op(a[, b[, c]]) -> "qg.d<i>_<tag>". */
static const char *dop(graph *g, int i, const char *tag, const char *op, const char *a, const char *b,
                       const char *c, const attr *at) {
    char y[48];
    if (g->a.oom) return NULL; /* an input is missing */
    snprintf(y, sizeof y, "qg.d%d_%s", i, tag);
    const char *in[3] = {a, b, c};
    return node(g, op, c ? 3 : b ? 2 : 1, in, y, at);
}

static const char *dconst(graph *g, int i, const char *tag, int dtype, double v) {
    char n[48];
    snprintf(n, sizeof n, "qg.d%d_%s", i, tag);
    float f = (float)v;
    return dtype == F64 ? init(g, n, F64, 0, NULL, &v, 8) : init(g, n, F32, 0, NULL, &f, 4);
}

/* quantized.dynamic.Linear (docs/int8.md) in standard ops, step for step in qgrad's
 * precision, so that a runtime computes its float result bit for bit: PyTorch's
 * ChooseQuantizationParams over the whole input (float32 range, double scale and zero
 * point), the engine's input quantization, MatMulInteger (exact int32), and the
 * engine's float epilogue. ONNX's DynamicQuantizeLinear has another range rule, and no
 * reduce_range. */
static const char *dynamic(graph *g, int i, const qg__xstep *s, const char *x) {
    const qg__qlayer *q = (const qg__qlayer *)s->m;
    const bool onednn = q->engine == QG_QENGINE_ONEDNN;
    const int qmax = onednn && q->reduce_range ? 127 : 255;
    const float small = 6.1e-5f, hc = 6.1e-5f * (float)qmax;
    attr keep0[2] = {{"keepdims", 0, 0, {0}}, {NULL, 0, 0, {0}}};
#define TO(t) ((const attr[]){{"to", 0, t, {0}}, {NULL, 0, 0, {0}}})
    const char *z32 = dconst(g, i, "zf", F32, 0), *z64 = dconst(g, i, "zd", F64, 0);
    const char *qm = dconst(g, i, "qmax", F64, qmax);
    /* lo, hi float32; sd = (hi - lo) / qmax in double; 0.1 where 1/F(sd) is infinite */
    const char *lo = dop(g, i, "lo", "Min", dop(g, i, "mn", "ReduceMin", x, NULL, NULL, keep0), z32, NULL, NULL);
    const char *hi = dop(g, i, "hi", "Max", dop(g, i, "mx", "ReduceMax", x, NULL, NULL, keep0), z32, NULL, NULL);
    const char *sd0 = dop(g, i, "sd0", "Div", dop(g, i, "rng", "Sub", dop(g, i, "hid", "Cast", hi, NULL, NULL, TO(F64)),
                                                 dop(g, i, "lod", "Cast", lo, NULL, NULL, TO(F64)), NULL, NULL),
                          qm, NULL, NULL);
    const char *inf = dop(g, i, "inf", "IsInf", dop(g, i, "rsd", "Reciprocal", dop(g, i, "sdf", "Cast", sd0, NULL, NULL,
                                                                                   TO(F32)), NULL, NULL, NULL),
                          NULL, NULL, NULL);
    const char *sd1 = dop(g, i, "sd1", "Where", inf, dconst(g, i, "tenth", F64, 0.1), sd0, NULL);
    /* the small-scale cut-off: where sd < 6.1e-5, sd = 6.1e-5 and the range is widened */
    const char *sm = dop(g, i, "small", "Less", sd1, dconst(g, i, "cut", F64, (double)small), NULL, NULL);
    const char *amp = dop(g, i, "amp", "Div", dconst(g, i, "cutf", F32, small),
                          dop(g, i, "org", "Cast", sd1, NULL, NULL, TO(F32)), NULL, NULL);
    const char *hi_s = dop(g, i, "his", "Where", dop(g, i, "lz", "Equal", lo, z32, NULL, NULL),
                           dconst(g, i, "hc", F32, hc), dop(g, i, "hia", "Mul", hi, amp, NULL, NULL), NULL);
    const char *lo_s = dop(g, i, "los", "Where", dop(g, i, "hz", "Equal", hi, z32, NULL, NULL),
                           dconst(g, i, "nhc", F32, -hc), dop(g, i, "loa", "Mul", lo, amp, NULL, NULL), NULL);
    const char *lo2 = dop(g, i, "lo2", "Cast", dop(g, i, "lo1", "Where", sm, lo_s, lo, NULL), NULL, NULL, TO(F64));
    const char *hi2 = dop(g, i, "hi2", "Cast", dop(g, i, "hi1", "Where", sm, hi_s, hi, NULL), NULL, NULL, TO(F64));
    const char *sd = dop(g, i, "sd", "Where", sm, dconst(g, i, "cutd", F64, (double)small), sd1, NULL);
    /* the zero point: from the end with the smaller error, rounded, clamped to [0, qmax] */
    const char *a = dop(g, i, "a", "Div", lo2, sd, NULL, NULL), *b = dop(g, i, "b", "Div", hi2, sd, NULL, NULL);
    const char *from_lo = dop(g, i, "zlo", "Less", dop(g, i, "elo", "Sub", z64, dop(g, i, "aa", "Abs", a, NULL, NULL, NULL),
                                                       NULL, NULL),
                              dop(g, i, "ehi", "Sub", qm, dop(g, i, "ab", "Abs", b, NULL, NULL, NULL), NULL, NULL), NULL,
                              NULL);
    const char *z0 = dop(g, i, "z0", "Where", from_lo, dop(g, i, "zmin", "Sub", z64, a, NULL, NULL),
                         dop(g, i, "zmax", "Sub", qm, b, NULL, NULL), NULL);
    const char *zd = dop(g, i, "z", "Min", dop(g, i, "zr", "Max", dop(g, i, "zn", "Round", z0, NULL, NULL, NULL), z64,
                                               NULL, NULL),
                         qm, NULL, NULL);
    const char *zu = dop(g, i, "zu", "Cast", zd, NULL, NULL, TO(U8)), *zf = dop(g, i, "zfl", "Cast", zd, NULL, NULL, TO(F32));
    /* the input: onednn rne(F(x F(1/sd)) + z), the zero point before rounding; qnnpack
     * (the Quantize rule, s_x = F(sd)) rne(F(x F(1/s_x))) + z */
    const char *sx = onednn ? NULL : dop(g, i, "sx", "Cast", sd, NULL, NULL, TO(F32));
    const char *isx = onednn ? dop(g, i, "isx", "Cast", dop(g, i, "isxd", "Div", dconst(g, i, "one", F64, 1), sd, NULL, NULL),
                                   NULL, NULL, TO(F32))
                             : dop(g, i, "isx", "Reciprocal", sx, NULL, NULL, NULL);
    const char *t = dop(g, i, "t", "Mul", x, isx, NULL, NULL);
    const char *r = onednn ? dop(g, i, "r", "Round", dop(g, i, "tz", "Add", t, zf, NULL, NULL), NULL, NULL, NULL)
                           : dop(g, i, "r", "Add", dop(g, i, "tr", "Round", t, NULL, NULL, NULL), zf, NULL, NULL);
    const char *xq = dop(g, i, "xq", "Cast", dop(g, i, "rc", "Clip", r, z32, dconst(g, i, "u8max", F32, 255), NULL), NULL,
                         NULL, TO(U8));
    /* the weight (in, out), acc = sum (xq - z) w in int32 */
    const qg_tensor *w = qg_contiguous(qg_int_repr(qg_module_buffer(s->m, "weight")));
    const int64_t out = q->out, in = q->in, tdims[2] = {in, out};
    int8_t *wt = az(&g->a, (size_t)(in * out));
    float *sw = az(&g->a, sizeof(float) * (size_t)out), *bias = az(&g->a, sizeof(float) * (size_t)out);
    if (!w || !wt || !sw || !bias) return NULL;
    const int8_t *wd = (const int8_t *)qg_tensor_data(w);
    for (int64_t k = 0; k < in * out; k++) wt[k] = wd[(k % out) * in + k / out];
    for (int64_t c = 0; c < out; c++) sw[c] = onednn ? 1.0f / q->wscale[c] : q->wscale[c], bias[c] = q->bias[c];
    char wn[32], sn[32], bn[32];
    snprintf(wn, 32, "qg.w%d", i), snprintf(sn, 32, onednn ? "qg.isw%d" : "qg.ws%d", i), snprintf(bn, 32, "qg.b%d", i);
    const char *W = init(g, wn, I8, 2, tdims, wt, (size_t)(in * out));
    const char *SW = init(g, sn, F32, 1, &out, sw, sizeof(float) * (size_t)out);
    const char *B = init(g, bn, F32, 1, &out, bias, sizeof(float) * (size_t)out);
    const char *acc = dop(g, i, "accf", "Cast", dop(g, i, "acc", "MatMulInteger", xq, W, zu, NULL), NULL, NULL, TO(F32));
    char y[32];
    snprintf(y, 32, "qg.y%d", i);
    if (onednn) { /* F(F(acc + F(b bs)) F(1/bs)), bs = F(isx F(1/s_w)) */
        const char *bs = dop(g, i, "bs", "Mul", isx, SW, NULL, NULL);
        const char *v = q->has_bias ? dop(g, i, "v", "Add", acc, dop(g, i, "bb", "Mul", B, bs, NULL, NULL), NULL, NULL) : acc;
        const char *ib = dop(g, i, "ibs", "Reciprocal", bs, NULL, NULL, NULL);
        return v && ib ? node(g, "Mul", 2, (const char *[]){v, ib}, y, NULL) : NULL;
    }
    /* qnnpack: F(F(acc F(s_x s_w)) + b), the bias zeros without one */
    const char *v = dop(g, i, "v", "Mul", acc, dop(g, i, "m", "Mul", sx, SW, NULL, NULL), NULL, NULL);
    return v ? node(g, "Add", 2, (const char *[]){v, B}, y, NULL) : NULL;
#undef TO
}

static const char *step(graph *g, int i, const qg__xstep *s, const char *x) {
    switch (s->kind) {
        case QG_XS_QUANTIZE: return qdq_as(g, i, x, s->out.scale, s->out.zp, true);
        case QG_XS_DEQUANTIZE: return x; /* the DequantizeLinear output is the float value */
        case QG_XS_LAYER: return layer(g, i, s, x);
        case QG_XS_RELU: {
            char y[32];
            snprintf(y, 32, "qg.relu%d", i);
            const char *r = node(g, "Relu", 1, &x, y, NULL);
            return r && s->in.q ? qdq(g, i, r, s->in.scale, s->in.zp) : r;
        }
        case QG_XS_POOL: return pool(g, i, s, x);
        case QG_XS_NOOP: return qg_module_is(s->m, "Flatten") && s->out.ndim != s->in.ndim ? flatten(g, i, s, x) : x;
        case QG_XS_DYNAMIC: return dynamic(g, i, s, x);
    }
    return NULL;
}

/* ------------------------------------------------------------- the model */

static Onnx__ValueInfoProto *value_info(graph *g, const char *name, const qg__xval *v) {
    Onnx__ValueInfoProto *vi = az(&g->a, sizeof *vi);
    Onnx__TypeProto *t = az(&g->a, sizeof *t);
    Onnx__TypeProto__Tensor *tt = az(&g->a, sizeof *tt);
    Onnx__TensorShapeProto *sh = az(&g->a, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dims = az(&g->a, sizeof *dims * (size_t)v->ndim);
    if (!vi || !t || !tt || !sh || !dims) return NULL;
    onnx__value_info_proto__init(vi), onnx__type_proto__init(t), onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int d = 0; d < v->ndim; d++) {
        Onnx__TensorShapeProto__Dimension *dm = az(&g->a, sizeof *dm);
        if (!dm) return NULL;
        onnx__tensor_shape_proto__dimension__init(dm);
        if (d == 0) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            if (!(dm->dim_param = astr(&g->a, "batch"))) return NULL;
        } else {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE, dm->dim_value = v->shape[d];
        }
        dims[d] = dm;
    }
    sh->n_dim = (size_t)v->ndim, sh->dim = dims;
    tt->has_elem_type = true, tt->elem_type = F32, tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, t->tensor_type = tt;
    vi->name = astr(&g->a, "%s", name), vi->type = t;
    return vi->name ? vi : NULL;
}

static qg_status check_names(const qg_export_opts *o, const char **in, const char **out) {
    *in = o->input_name ? o->input_name : "input", *out = o->output_name ? o->output_name : "output";
    const char *n[2] = {*in, *out};
    for (int k = 0; k < 2; k++)
        if (!*n[k] || strlen(n[k]) > 200)
            return qg__err(QG_EINVAL, "%s: the %s name must have 1 to 200 characters", WHO, k ? "output" : "input");
    if (!strcmp(*in, *out)) return qg__err(QG_EINVAL, "%s: the input and output are both named '%s'", WHO, *in);
    for (int k = 0; k < 2; k++)
        if (!strncmp(n[k], "qg.", 3))
            return qg__err(QG_EINVAL, "%s: the %s name '%s' starts with 'qg.', which the graph's own names use", WHO,
                           k ? "output" : "input", n[k]);
    return QG_OK;
}

qg_status qg_export_onnx(qg_module *model, const char *path, const qg_export_opts *o) {
    const char *in_name, *out_name;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return qg__err(QG_EINVAL, "%s: ONNX's raw tensor data is little-endian: this big-endian host does not write it", WHO);
#endif
    if (!path || !o) return qg__err(QG_EINVAL, "%s: %s is NULL", WHO, path ? "opts" : "path");
    qg_status st = check_names(o, &in_name, &out_name);
    qg__xplan p;
    if (!st) st = qg__xplan_build(model, o, WHO, &p);
    if (st) return st;
    graph g = {0};
    const char *x = in_name;
    for (int i = 0; x && i < p.n; i++) x = step(&g, i, &p.s[i], x);
    if (x && g.nnode && !strcmp(g.node[g.nnode - 1]->output[0], x)) /* the last node's output is the model's */
        x = g.node[g.nnode - 1]->output[0] = astr(&g.a, "%s", out_name);
    else if (x)
        x = node(&g, "Identity", 1, &x, out_name, NULL);
    Onnx__GraphProto gr = ONNX__GRAPH_PROTO__INIT;
    Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto ops = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsp = &ops;
    Onnx__ValueInfoProto *vin = x ? value_info(&g, in_name, &p.in) : NULL;
    Onnx__ValueInfoProto *vout = vin ? value_info(&g, out_name, &p.out) : NULL;
    uint8_t *buf = NULL;
    size_t n = 0;
    if (vout) {
        gr.name = "qgrad", gr.n_node = g.nnode, gr.node = g.node, gr.n_initializer = g.ninit, gr.initializer = g.init;
        gr.n_input = 1, gr.input = &vin, gr.n_output = 1, gr.output = &vout;
        ops.domain = "", ops.has_version = true, ops.version = 13;
        mp.has_ir_version = true, mp.ir_version = 7, mp.producer_name = "qgrad", mp.producer_version = "0.1.0";
        mp.n_opset_import = 1, mp.opset_import = &opsp, mp.graph = &gr;
        n = onnx__model_proto__get_packed_size(&mp);
        if ((buf = qg__alloc(n ? n : 1))) onnx__model_proto__pack(&mp, buf);
    }
    if (g.st) st = g.st;
    else if (!buf) st = g.a.oom || vout ? qg__err(QG_ENOMEM, "%s: out of memory for the graph", WHO) : qg_last_status();
    if (!st) {
        qg__afile f;
        st = qg__afile_open(&f, WHO, path);
        if (!st) {
            qg__afile_write(&f, buf, n);
            st = qg__afile_commit(&f);
        }
    }
    qg__free(buf);
    arena_free(&g.a);
    qg__xplan_free(&p);
    return st;
}

#endif
