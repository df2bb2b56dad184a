/* The routines of the C models qg_export_c writes (export_c.c). Not part of the
 * library: the build embeds this text, and the exporter copies the sections a model
 * uses into its NAME.c. Each section starts at a marker line, a comment holding
 * "@ name: needs @" (needs: the sections it calls), and runs to the next marker.
 *
 * The code is C99 and freestanding (stdint.h, float.h), and it computes what qgrad's
 * int8 model computes, bit for bit: the scalar form of docs/int8.md, one rounding per
 * statement. Requantization follows autograd/kernels/qrequant.c's row_scalar, the
 * pools autograd/ops/pool.c's qpool_plane, Quantize and DeQuantize
 * autograd/ops/quantize.c, and the dynamic Linear qat/quantized.c's dynamic_forward.
 * rne() rounds half to even by adding and subtracting 1.5 * 2^23 (the default rounding
 * mode); every value it is given has been clamped to well inside 2^22 first, which
 * changes no result, because clamping to integer bounds commutes with rounding. */
/*@ rne: @*/
/* v rounded to an integer, half to even: |v| <= 2^22 */
static float rne(float v) {
    float m = v + 12582912.0f;
    return m - 12582912.0f;
}

/*@ s32: @*/
/* u as the int32 it holds in two's complement (a wrapping sum) */
static int32_t s32(uint32_t u) {
    return u < 0x80000000u ? (int32_t)u : (int32_t)(u - 0x80000000u) - 0x7fffffff - 1;
}
/*@ quantize: rne @*/
/* f32 -> quint8: y = clamp(z + rne(x * inv), 0, 255); NaN, infinities and values
 * beyond int64 give 0, as PyTorch's quantize does on x86. */
static void quantize(const float *x, uint8_t *y, int32_t n, float inv, int32_t z) {
    const float lo = (float)(0 - z), hi = (float)(255 - z);
    int32_t i;
    for (i = 0; i < n; i++) {
        float t = x[i] * inv;
        float c = t < lo ? lo : t > hi ? hi : t;
        if (!(t >= -9.2233720e18f && t < 9.2233720e18f)) c = lo;
        y[i] = (uint8_t)((int32_t)rne(c) + z);
    }
}
/*@ dequantize: @*/
/* quint8 -> f32: y = (q - z) * s */
static void dequantize(const uint8_t *x, float *y, int32_t n, float s, int32_t z) {
    int32_t i;
    for (i = 0; i < n; i++) y[i] = (float)((int32_t)x[i] - z) * s;
}
/*@ relu_q: @*/
/* ReLU on quint8: the larger of q and the zero point */
static void relu_q(const uint8_t *x, uint8_t *y, int32_t n, int32_t z) {
    int32_t i;
    for (i = 0; i < n; i++) y[i] = (int32_t)x[i] > z ? x[i] : (uint8_t)z;
}
/*@ relu_f: @*/
/* ReLU on f32 (NaN stays NaN) */
static void relu_f(const float *x, float *y, int32_t n) {
    int32_t i;
    for (i = 0; i < n; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i];
}
/*@ requant: rne s32 @*/
/* A static Linear or Conv: input (C, H, W) quint8 with zero point zx (Linear: H rows
 * of C, W = 1), weights (K, C/groups, kh, kw) int8, output channel k requantized by
 * the engine's float32 formula (docs/int8.md) with its constants mult[k], and badd[k]
 * (onednn) or ibias[k] (qnnpack). lo = 0 with the ReLU fusion, else -zy. */
typedef struct {
    int32_t C, H, W, K, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int32_t zx, zy, onednn;
    float lo;
    const int8_t *w;
    const float *mult, *badd;
    const int32_t *ibias;
} layer;

static uint8_t requant(const layer *l, int32_t k, uint32_t acc) {
    int32_t r;
    if (l->onednn) { /* y = clamp(rne(max(F(F(F(acc) + b') M), lo) + zy), 0, 255) */
        float a = (float)s32(acc);
        float t = a + l->badd[k];
        float v = t * l->mult[k];
        float w;
        v = v > l->lo ? v : l->lo;
        w = v + (float)l->zy;
        w = w < 256.0f ? w : 256.0f;
        r = (int32_t)rne(w);
    } else { /* y = clamp(rne(max(F(F(acc + bq) M), lo)) + zy, 0, 255) */
        float a = (float)s32(acc + (uint32_t)l->ibias[k]);
        float v = a * l->mult[k];
        v = v > l->lo ? v : l->lo;
        v = v < 512.0f ? v : 512.0f;
        r = (int32_t)rne(v) + l->zy;
    }
    return (uint8_t)(r > 255 ? 255 : r);
}
/*@ conv: requant @*/
/* Conv1d (H = 1) and Conv2d, NCHW; padding reads as the zero point (adds nothing) */
static void conv(const layer *l, const uint8_t *x, uint8_t *y) {
    const int32_t cg = l->C / l->groups, kg = l->K / l->groups;
    int32_t k, oh, ow, c, i, j;
    for (k = 0; k < l->K; k++) {
        const int8_t *wk = l->w + k * cg * l->kh * l->kw;
        const uint8_t *xg = x + (k / kg) * cg * l->H * l->W;
        for (oh = 0; oh < l->OH; oh++)
            for (ow = 0; ow < l->OW; ow++) {
                uint32_t acc = 0;
                for (c = 0; c < cg; c++)
                    for (i = 0; i < l->kh; i++) {
                        const int32_t ih = oh * l->sh - l->ph + i * l->dh;
                        if (ih < 0 || ih >= l->H) continue;
                        for (j = 0; j < l->kw; j++) {
                            const int32_t iw = ow * l->sw - l->pw + j * l->dw;
                            if (iw < 0 || iw >= l->W) continue;
                            acc += (uint32_t)(((int32_t)xg[(c * l->H + ih) * l->W + iw] - l->zx) *
                                              (int32_t)wk[(c * l->kh + i) * l->kw + j]);
                        }
                    }
                y[(k * l->OH + oh) * l->OW + ow] = requant(l, k, acc);
            }
    }
}
/*@ linear: requant @*/
/* Linear: H rows of C inputs -> H rows of K outputs */
static void linear(const layer *l, const uint8_t *x, uint8_t *y) {
    int32_t m, k, i;
    for (m = 0; m < l->H; m++)
        for (k = 0; k < l->K; k++) {
            const uint8_t *xr = x + m * l->C;
            const int8_t *wk = l->w + k * l->C;
            uint32_t acc = 0;
            for (i = 0; i < l->C; i++) acc += (uint32_t)(((int32_t)xr[i] - l->zx) * (int32_t)wk[i]);
            y[m * l->K + k] = requant(l, k, acc);
        }
}
/*@ pool: rne @*/
/* The quantized pools, on C planes of H x W quint8 with zero point z, as PyTorch's
 * kernel of each rule computes (docs/int8.md): max; average with the zero point added
 * before rounding (NCHW) or after (NHWC, and qnnpack's, which divides by kh kw through
 * its multiplier ms); adaptive average of the raw integers (NCHW) or of q - z (NHWC). */
enum { P_MAX, P_AVG_NCHW, P_AVG_NHWC, P_AVG_QNNPACK, P_ADAPTIVE_NCHW, P_ADAPTIVE_NHWC };
typedef struct {
    int32_t rule, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, divisor, count_include_pad, z;
    float ms;
} pool;

/* floor and ceiling of the float32 quotient a / b (a, b >= 0): the adaptive windows */
static int32_t fdiv_floor(int32_t a, int32_t b) { return (int32_t)((float)a / (float)b); }
static int32_t fdiv_ceil(int32_t a, int32_t b) {
    float q = (float)a / (float)b;
    int32_t t = (int32_t)q;
    return (float)t < q ? t + 1 : t;
}

static uint8_t clamp_u8(int32_t v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* the average of a window from its sums: sq of q, sz of q - z; div its divisor */
static uint8_t average(const pool *p, int32_t sq, int32_t sz, int32_t div, int32_t kh, int32_t kw) {
    float v, m;
    if (p->rule == P_AVG_QNNPACK) {
        v = (float)sz * p->ms;
    } else if (p->rule == P_ADAPTIVE_NCHW) {
        m = 1.0f / (float)kh;
        m = m / (float)kw;
        v = (float)sq * m;
        v = v < 1024.0f ? v : 1024.0f;
        return clamp_u8((int32_t)rne(v));
    } else {
        m = 1.0f / (float)(p->rule == P_ADAPTIVE_NHWC ? kh * kw : div);
        v = (float)sz * m;
        if (p->rule == P_AVG_NCHW) {
            v = v + (float)p->z;
            v = v < -1024.0f ? -1024.0f : v > 1024.0f ? 1024.0f : v;
            return clamp_u8((int32_t)rne(v));
        }
    }
    v = v < -1024.0f ? -1024.0f : v > 1024.0f ? 1024.0f : v;
    return clamp_u8((int32_t)rne(v) + p->z);
}

static void pool2d(const pool *p, const uint8_t *x, uint8_t *y) {
    int32_t c, oh, ow, ih, iw;
    for (c = 0; c < p->C; c++, x += p->H * p->W)
        for (oh = 0; oh < p->OH; oh++)
            for (ow = 0; ow < p->OW; ow++) {
                int32_t h0, h1, w0, w1, div = 1, sq = 0, n;
                uint8_t r;
                if (p->rule == P_MAX) {
                    int32_t v = 0;
                    h0 = oh * p->sh - p->ph, h1 = h0 + (p->kh - 1) * p->dh + 1;
                    w0 = ow * p->sw - p->pw, w1 = w0 + (p->kw - 1) * p->dw + 1;
                    if (h1 > p->H) h1 = p->H;
                    if (w1 > p->W) w1 = p->W;
                    while (h0 < 0) h0 += p->dh;
                    while (w0 < 0) w0 += p->dw;
                    for (ih = h0; ih < h1; ih += p->dh)
                        for (iw = w0; iw < w1; iw += p->dw) v = x[ih * p->W + iw] > v ? x[ih * p->W + iw] : v;
                    r = (uint8_t)v;
                } else {
                    if (p->rule == P_ADAPTIVE_NCHW || p->rule == P_ADAPTIVE_NHWC) {
                        h0 = fdiv_floor(oh * p->H, p->OH), h1 = fdiv_ceil((oh + 1) * p->H, p->OH);
                        w0 = fdiv_floor(ow * p->W, p->OW), w1 = fdiv_ceil((ow + 1) * p->W, p->OW);
                    } else { /* PyTorch's window and divisor */
                        int32_t padded;
                        h0 = oh * p->sh - p->ph, w0 = ow * p->sw - p->pw;
                        h1 = h0 + p->kh, w1 = w0 + p->kw;
                        if (h1 > p->H + p->ph) h1 = p->H + p->ph;
                        if (w1 > p->W + p->pw) w1 = p->W + p->pw;
                        padded = (h1 - h0) * (w1 - w0);
                        if (h0 < 0) h0 = 0;
                        if (w0 < 0) w0 = 0;
                        if (h1 > p->H) h1 = p->H;
                        if (w1 > p->W) w1 = p->W;
                        div = p->divisor ? p->divisor : p->count_include_pad ? padded : (h1 - h0) * (w1 - w0);
                    }
                    for (ih = h0; ih < h1; ih++)
                        for (iw = w0; iw < w1; iw++) sq += x[ih * p->W + iw];
                    n = (h1 - h0) * (w1 - w0);
                    r = average(p, sq, sq - n * p->z, div, h1 - h0, w1 - w0);
                }
                y[(c * p->OH + oh) * p->OW + ow] = r;
            }
}
/*@ dynamic: rne s32 @*/
#if DBL_MANT_DIG != 53
#error "the dynamic Linear needs a 64-bit double (DBL_MANT_DIG 53), as qgrad computes its scale in"
#endif
/* The dynamic Linear: f32 rows in and out, the input quantized by its own range with
 * PyTorch's ChooseQuantizationParams (float32 ends, double scale and zero point),
 * qnnpack's or onednn's quantization and output formula (docs/int8.md). xq: scratch
 * for the quantized input. Returns -2 if the input's minimum or maximum is not finite. */
typedef struct {
    int32_t in, out, rows, onednn, qmax;
    const int8_t *w;          /* (out, in) */
    const float *wscale, *bias; /* (out); bias zeros without one */
    int32_t has_bias;
} dyn_linear;

static double dabs(double v) { return v < 0 ? -v : v; }

/* v rounded to an integer, half to even, in double: |v| <= 2^51 */
static double rne_d(double v) {
    double m = v + 6755399441055744.0;
    return m - 6755399441055744.0;
}

static int dynamic(const dyn_linear *l, const float *x, float *y, uint8_t *xq) {
    const int32_t n = l->rows * l->in;
    const int32_t qmax = l->qmax;
    float mn = n ? x[0] : 0.0f, mx = mn, lo, hi, sx, isx, zf;
    double sd, zmin, zmax, z0;
    int32_t i, k, m, z;
    for (i = 1; i < n; i++) mn = x[i] < mn ? x[i] : mn, mx = x[i] > mx ? x[i] : mx;
    if (!(mn - mn == 0.0f) || !(mx - mx == 0.0f)) return -2;
    lo = mn < 0 ? mn : 0.0f, hi = mx > 0 ? mx : 0.0f;
    sd = ((double)hi - lo) / qmax;
    {
        float fsd = (float)sd;
        float r = fsd != 0.0f ? 1.0f / fsd : 0.0f;
        if (fsd == 0.0f || r > FLT_MAX) sd = 0.1;
    }
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
    zmin = 0 - lo / sd, zmax = qmax - hi / sd;
    z0 = (0 - dabs(lo / sd)) < (qmax - dabs(hi / sd)) ? zmin : zmax;
    z = z0 < 0 ? 0 : z0 > qmax ? qmax : (int32_t)rne_d(z0);
    sx = (float)sd, isx = l->onednn ? (float)(1.0 / sd) : 1.0f / sx, zf = (float)z;
    for (i = 0; i < n; i++) {
        float t = x[i] * isx, r;
        if (l->onednn) {
            t = t + zf;
            t = t < -1024.0f ? -1024.0f : t > 1024.0f ? 1024.0f : t;
            r = rne(t);
        } else {
            t = t < -1024.0f ? -1024.0f : t > 1024.0f ? 1024.0f : t;
            r = rne(t) + zf;
        }
        xq[i] = (uint8_t)(!(r > 0) ? 0 : r >= 255 ? 255 : (int32_t)r);
    }
    for (k = 0; k < l->out; k++) {
        const float sw = l->wscale[k];
        const int8_t *wk = l->w + k * l->in;
        float mult, badd = 0.0f;
        if (l->onednn) { /* y = F(F(F(acc) + F(b bs)) F(1/bs)) */
            float isw = 1.0f / sw;
            float bs = isx * isw;
            badd = l->bias[k] * bs;
            mult = 1.0f / bs;
        } else { /* y = F(F(F(acc) F(s_x s_w)) + b) */
            mult = sx * sw;
        }
        for (m = 0; m < l->rows; m++) {
            const uint8_t *xr = xq + m * l->in;
            uint32_t acc = 0;
            float a, t;
            for (i = 0; i < l->in; i++) acc += (uint32_t)(((int32_t)xr[i] - z) * (int32_t)wk[i]);
            a = (float)s32(acc);
            if (l->onednn) {
                t = l->has_bias ? a + badd : a;
                y[m * l->out + k] = t * mult;
            } else {
                t = a * mult;
                y[m * l->out + k] = t + l->bias[k];
            }
        }
    }
    return 0;
}
