/* The int8 convolution of quantized.Conv1d/2d and their ReLU fusions.
 *
 * The weights are packed once with their reduction in (kh, kw, C/G) order, and each
 * image is first copied with its padding made real (bytes of the input zero point).
 * Then one of four routes, by the GEMM path and the geometry:
 *  - VNNI or AVX2, stride-1 width, C/G a multiple of 4, or a single channel: the image
 *    in channel quads (Hp, C/4, Wp, 4) (a single channel: its kernel row's taps as the
 *    channels, expand_image, with weights packed for that at load time), an implicit
 *    GEMM that reads the image in place. Either
 *     - channel lanes (VNNI, kernels/qconvl.c): 16 output channels of a pixel a zmm,
 *       pixels in tiles of 4 (pooled: a 2 x 2 window), into pixel-major rows that a
 *       16 x 16 byte transposition turns into NCHW; where rows' tails would leave more
 *       pixel lanes idle than the channels leave channel lanes, or
 *     - pixel lanes (kernels/qconvk.c): 16 neighbouring output pixels of a channel a
 *       register, whose k-quad is 64 contiguous bytes, written to NCHW directly.
 *  - VNNI or AVX2 otherwise: the image channels-last (Hp, Wp, C), im2col rows gathered
 *    as a few contiguous runs each, repacked into pixel lanes for qconvk.c's kernel.
 *  - the other paths: the same im2col rows through qgemm (single-threaded inside the
 *    loop), the requantization, and the transposition into the NCHW output.
 * Work goes in chunks (an image, a few output rows, or a few hundred im2col rows) whose
 * operands stay in the core's cache, the chunks of all images in parallel. Every
 * accumulator is exact, so neither the route nor the chunking changes a result. */
#include "op_internal.h"
#include "qlayer.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define QCONV_SLACK 64 /* bytes past the buffers that the 16-byte run copies may touch */

static int64_t conv_out(int64_t in, int64_t k, int p, int s, int d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

qg_status qg__qconv_pack(qg__qlayer *q, const int8_t *w) {
    const int64_t cg = q->in / q->G, taps = q->kh * q->kw, n = q->og * q->kdim;
    int8_t *t = qg__alloc((size_t)(n ? n : 1));
    if (!t) return qg__err(QG_ENOMEM, "%s: out of memory packing the weight", q->base.type->name);
    qg_status st = QG_OK;
    for (int64_t g = 0; !st && g < q->G; g++) { /* (og, cg, taps) -> (og, taps, cg) */
        const int8_t *wg = w + g * n;
        for (int64_t o = 0; o < q->og; o++)
            for (int64_t ci = 0; ci < cg; ci++)
                for (int64_t k = 0; k < taps; k++) t[o * q->kdim + k * cg + ci] = wg[(o * cg + ci) * taps + k];
        if (!(q->pack[g] = qg__qpack_new(t, q->kdim, q->og, q->kdim))) st = qg_last_status();
    }
    qg__free(t);
    if (st || q->in != 1 || q->sw != 1) return st;
    /* A single channel, stride-1 width: also the weights of the same convolution with
     * the kernel row's taps as channels, ceil(kw / 4) quads of them (expand_image),
     * and a kh x 1 kernel: (out, kh, 4 xq), zeros past kw. */
    const int64_t xq = (q->kw + 3) / 4, xk = q->kh * 4 * xq;
    int8_t *x = qg__calloc((size_t)(q->out * xk > 0 ? q->out * xk : 1));
    if (!x) return qg__err(QG_ENOMEM, "%s: out of memory packing the weight", q->base.type->name);
    for (int64_t o = 0; o < q->out; o++)
        for (int64_t ki = 0; ki < q->kh; ki++)
            for (int64_t kj = 0; kj < q->kw; kj++) x[o * xk + ki * 4 * xq + kj] = w[(o * q->kh + ki) * q->kw + kj];
    q->xpack = qg__qpack_new(x, xk, q->out, xk), q->xq = xq;
    qg__free(x);
    return q->xpack ? QG_OK : qg_last_status();
}

/* n bytes from s to d in one 4- or 8-byte move or in 16-byte pieces: up to 15 bytes
 * past either end are read and written (the next run overwrites them; the buffers have
 * QCONV_SLACK). Fixed-size moves, which the compiler inlines, not a memcpy call. */
static inline void copy_run(uint8_t *restrict d, const uint8_t *restrict s, int64_t n) {
    if (n <= 4) {
        memcpy(d, s, 4);
    } else if (n <= 8) {
        memcpy(d, s, 8);
    } else {
        for (int64_t i = 0; i < n; i += 16) {
#if defined(__SSE2__)
            _mm_storeu_si128((__m128i *)(void *)(d + i), _mm_loadu_si128((const __m128i *)(const void *)(s + i)));
#else
            memcpy(d + i, s + i, 16);
#endif
        }
    }
}

/* The geometry of one call, shared by the threads. */
typedef struct {
    const qg__qlayer *q;
    int64_t Wp, C, cg, OW;
    bool runs; /* a kernel row is one run of kw * C bytes */
} geom;

/* im2col rows p0..p1 of image xi (group g) -> cols (rows of kdim bytes). */
static void gather(const geom *e, const uint8_t *xi, int64_t g, int64_t p0, int64_t p1, uint8_t *restrict cols) {
    const qg__qlayer *q = e->q;
    const int64_t C = e->C, cg = e->cg, rowstep = q->dh * e->Wp * C;
    int64_t oh = p0 / e->OW, ow = p0 % e->OW;
    for (int64_t p = p0; p < p1; p++) {
        const uint8_t *base = xi + (oh * q->sh * e->Wp + ow * q->sw) * C + g * cg;
        uint8_t *row = cols + (p - p0) * q->kdim;
        if (e->runs) {
            for (int64_t ki = 0; ki < q->kh; ki++) copy_run(row + ki * q->kw * C, base + ki * rowstep, q->kw * C);
        } else if (cg == 1) {
            for (int64_t ki = 0; ki < q->kh; ki++)
                for (int64_t kj = 0; kj < q->kw; kj++) *row++ = base[ki * rowstep + kj * q->dw * C];
        } else {
            for (int64_t ki = 0; ki < q->kh; ki++)
                for (int64_t kj = 0; kj < q->kw; kj++)
                    copy_run(row + (ki * q->kw + kj) * cg, base + ki * rowstep + kj * q->dw * C, cg);
        }
        if (++ow == e->OW) ow = 0, oh++;
    }
}

#if defined(__SSE2__)
/* A 16 x 16 byte block s (row stride ss) -> d, transposed (row stride ds). Interleaving
 * row i with row i + 8 rotates the 8 bits of (row, column) by one: four rounds swap them. */
static inline void tr16(const uint8_t *s, int64_t ss, uint8_t *d, int64_t ds) {
    __m128i r[16], t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = _mm_loadu_si128((const __m128i *)(const void *)(s + i * ss));
#pragma GCC unroll 4
    for (int round = 0; round < 4; round++) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            t[2 * i] = _mm_unpacklo_epi8(r[i], r[i + 8]);
            t[2 * i + 1] = _mm_unpackhi_epi8(r[i], r[i + 8]);
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) r[i] = t[i];
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) _mm_storeu_si128((__m128i *)(void *)(d + i * ds), r[i]);
}
#endif

/* src (m, n), row i at src + i * lds -> dst[j * ld + i]: a chunk's pixel-major outputs
 * to NCHW, or an image's NCHW planes to channels-last. */
static void transpose_out(const uint8_t *restrict src, int64_t m, int64_t n, int64_t lds, uint8_t *restrict dst,
                          int64_t ld) {
#if defined(__SSE2__)
    if (m >= 16 && n >= 16) { /* the last blocks overlap the ones before, writing the same bytes */
        for (int64_t i0 = 0; i0 < m; i0 += 16) {
            if (i0 + 16 > m) i0 = m - 16;
            for (int64_t j0 = 0; j0 < n; j0 += 16) {
                if (j0 + 16 > n) j0 = n - 16;
                tr16(src + i0 * lds + j0, lds, dst + j0 * ld + i0, ld);
            }
        }
        return;
    }
#endif
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) dst[j * ld + i] = src[i * lds + j];
}

/* Image x (C, H, W) -> dst (Hp, Wp, C), the border z; tmp: C * H * W bytes. */
static void pad_image(const uint8_t *restrict x, int64_t C, int64_t H, int64_t W, int ph, int pw, uint8_t z,
                      uint8_t *restrict tmp, uint8_t *restrict dst) {
    const int64_t Wp = W + 2 * pw;
    memset(dst, z, (size_t)((H + 2 * ph) * Wp * C));
    const uint8_t *src = x;
    if (C > 1) transpose_out(x, C, H * W, H * W, tmp, C), src = tmp; /* (C, HW) -> (HW, C) */
    for (int64_t h = 0; h < H; h++) memcpy(dst + ((h + ph) * Wp + pw) * C, src + h * W * C, (size_t)(W * C));
}

static int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

/* m rows of a (k bytes each, stride lda) -> pixel lanes: quad q of row i at
 * dst + (q * mpad + i) * 4, for kp / 4 quads (the last reads up to 3 bytes past k:
 * slack); rows m..mpad zero. */
static void pack_lanes(const uint8_t *restrict a, int64_t lda, int64_t m, int64_t mpad, int64_t kp,
                       uint8_t *restrict dst) {
    for (int64_t q = 0; q < kp / 4; q++) {
        uint8_t *d = dst + q * mpad * 4;
        for (int64_t i = 0; i < m; i++) memcpy(d + 4 * i, a + i * lda + 4 * q, 4);
        memset(d + 4 * m, 0, (size_t)(4 * (mpad - m)));
    }
}

#if defined(__SSE2__)
/* The low 8 bytes of v[0..3] (4 rows: taps or channels of 8 pixels) -> 8 quads, the
 * four rows' bytes of pixel i at dst + 4 i. */
static inline void quads8(uint8_t *dst, const __m128i v[4]) {
    const __m128i t01 = _mm_unpacklo_epi8(v[0], v[1]), t23 = _mm_unpacklo_epi8(v[2], v[3]);
    _mm_storeu_si128((__m128i *)(void *)dst, _mm_unpacklo_epi16(t01, t23));
    _mm_storeu_si128((__m128i *)(void *)(dst + 16), _mm_unpackhi_epi16(t01, t23));
}
#endif

/* A single-channel image x (H, W) with its kernel row's taps as channels -> dst
 * (Hp, xq, OW, 4): byte t of quad j of pixel w is the padded row's byte w + (4 j + t) dw
 * (the border z, and z past the row's end, where only the zero weights past kw look).
 * Its kh x 1 convolution with xpack's weights is the layer's, in the implicit route.
 * row: Wp + 4 xq dw + 8 bytes of the thread's. */
static void expand_image(const qg__qlayer *q, const uint8_t *restrict x, int64_t H, int64_t W, int64_t OW, uint8_t z,
                         uint8_t *restrict row, uint8_t *restrict dst) {
    const int64_t Wp = W + 2 * q->pw, xq = q->xq, dw = q->dw, rowb = xq * OW * 4;
    memset(dst, z, (size_t)(q->ph * rowb));
    memset(dst + (H + q->ph) * rowb, z, (size_t)(q->ph * rowb));
    memset(row, z, (size_t)(Wp + 4 * xq * dw + 8));
    for (int64_t h = 0; h < H; h++) {
        memcpy(row + q->pw, x + h * W, (size_t)W);
        for (int64_t j = 0; j < xq; j++) {
            uint8_t *d = dst + (h + q->ph) * rowb + j * OW * 4;
            const uint8_t *s = row + 4 * j * dw;
            int64_t w = 0;
#if defined(__SSE2__)
            for (int64_t w8 = 0; OW >= 8 && w8 < OW; w8 += 8) { /* the last 8 overlap, as in pad_quads */
                if (w8 + 8 > OW) w8 = OW - 8;
                __m128i v[4];
                for (int t = 0; t < 4; t++) v[t] = _mm_loadl_epi64((const __m128i *)(const void *)(s + w8 + t * dw));
                quads8(d + 4 * w8, v);
                w = OW;
            }
#endif
            for (; w < OW; w++)
                for (int t = 0; t < 4; t++) d[4 * w + t] = s[w + t * dw];
        }
    }
}

/* Image x (C, H, W), C a multiple of 4 -> dst (Hp, C/4, Wp, 4): each row's channels in
 * quads, pixels side by side, so that 16 neighbouring pixels' quad is 64 contiguous
 * bytes; the border z. */
static void pad_quads(const uint8_t *restrict x, int64_t C, int64_t H, int64_t W, int ph, int pw, uint8_t z,
                      uint8_t *restrict dst) {
    const int64_t Wp = W + 2 * pw, CQ = C / 4, HW = H * W;
    memset(dst, z, (size_t)((H + 2 * ph) * Wp * C));
    for (int64_t h = 0; h < H; h++)
        for (int64_t cq = 0; cq < CQ; cq++) {
            uint8_t *d = dst + (((h + ph) * CQ + cq) * Wp + pw) * 4;
            const uint8_t *s = x + 4 * cq * HW + h * W;
            int64_t w = 0;
#if defined(__SSE2__)
            /* 8 pixels at a time, the last 8 overlapping the previous ones: reads and
             * writes stay inside the row */
            for (int64_t w8 = 0; W >= 8 && w8 < W; w8 += 8) {
                if (w8 + 8 > W) w8 = W - 8;
                __m128i v[4];
                for (int t = 0; t < 4; t++) v[t] = _mm_loadl_epi64((const __m128i *)(const void *)(s + t * HW + w8));
                quads8(d + 4 * w8, v);
                w = W;
            }
#endif
            for (; w < W; w++)
                d[4 * w] = s[w], d[4 * w + 1] = s[HW + w], d[4 * w + 2] = s[2 * HW + w], d[4 * w + 3] = s[3 * HW + w];
        }
}

qg_tensor *qg__qconv_forward(qg__qlayer *q, qg_tensor *x, qg_module *pool) {
    const qg_module *m = &q->base;
    const char *who = qg__module_label(m);
    const bool batched = x->ndim == q->a.dim + 2;
    const int64_t N = batched ? x->shape[0] : 1, C = q->in;
    const int64_t H = q->a.dim == 2 ? x->shape[x->ndim - 2] : 1, W = x->shape[x->ndim - 1];
    const int64_t OH = conv_out(H, q->kh, q->ph, q->sh, q->dh), OW = conv_out(W, q->kw, q->pw, q->sw, q->dw);
    if (OH < 1 || OW < 1) {
        char b[128];
        return qg__err(QG_ESHAPE, "%s: input %s is too small for the kernel (output %lld x %lld)", who,
                       qg_shape_str(x, b, sizeof b), (long long)OH, (long long)OW), NULL;
    }
    /* The route (see the top); the implicit route's image: C channels, or a single
     * channel's taps as channels (expand_image), a kh x 1 kernel over them */
    const bool cm = qg__qconv_cm_supported(), expand = cm && q->xpack;
    const int64_t C_G = C / q->G;
    const bool implicit = expand || (cm && q->sw == 1 && C_G % 4 == 0);
    if (pool && !(implicit && OH >= 2 && OW >= 2)) /* the pool after the convolution */
        return qg_module_forward(pool, qg__qconv_forward(q, x, NULL));
    const int ps = pool ? 2 : 1; /* output pixels a stored byte pools, each way */
    int64_t shape[4] = {N, q->out, OH / ps, OW / ps}, nd = 0, oshape[4];
    if (batched) oshape[nd++] = N;
    oshape[nd++] = q->out;
    if (q->a.dim == 2) oshape[nd++] = OH / ps;
    oshape[nd++] = OW / ps;
    const int64_t Hp = H + 2 * q->ph, Wp = W + 2 * q->pw;
    const int64_t ic = expand ? 4 * q->xq : C, iw = expand ? OW : Wp; /* the image's channels, row */
    const int64_t ikw = expand ? 1 : q->kw, idw = expand ? 1 : q->dw, icg = expand ? ic : C_G;
    if (qg__check_sizes(who, 4, shape) || qg__check_sizes(who, 4, (int64_t[]){N, Hp, Wp, C}) ||
        qg__check_sizes(who, 4, (int64_t[]){N, Hp, iw, ic}))
        return NULL;
    const int64_t P = OH * OW, img = Hp * iw * ic, G = q->G, og = q->og;
    const int64_t kdim = expand ? q->xpack->k : q->kdim;
    /* on VNNI, channel lanes (kernels/qconvl.c) where pixel lanes idle more on the
     * rows' tails than channel lanes past og */
    const int64_t ldl = (expand ? q->xpack : q->pack[0])->np; /* a channel-lane output row */
    const bool cl = implicit && qg__qconv_cl_supported() && og * round_up(OW, 16) > OW * ldl;
    qg_tensor *y = qg__tape_tensor(QG_U8, (int)nd, oshape);
    qg_quant oq = {.axis = -1, .scale = q->oscale, .zero_point = q->ozp};
    if (!y || !(y->quant = qg__quant_dup(&oq, true))) return NULL;
    if (!qg_tensor_numel(y)) return y;

    /* The chunk: `per` output rows (pooled: row pairs) of about 256 pixels (implicit),
     * or `per` im2col rows whose bytes (the channel-major kernel's lanes: 32 KiB) or
     * whose bytes and int32 accumulators (64 KiB each) fit the cache; at least one
     * chunk per thread. */
    const int64_t cg = C_G, kp = round_up(kdim, 4), kq = kp / 4;
    const int64_t unit = cm ? 16 : 8, bpr = (OW + 15) / 16; /* blocks per output row */
    const int64_t work = qg__sat_mul(qg__sat_mul(N * P, kdim), q->out);
    const int nt = qg__threads_for(work / 64);
    const int64_t span = implicit ? OH / ps : P; /* what a chunk splits: rows (pairs) or pixels */
    const int64_t PO = (OH / ps) * (OW / ps);    /* output pixels of a channel */
    int64_t per;
    if (cl) { /* the whole image: its output's transposition in full blocks */
        per = span;
    } else if (implicit) {
        per = 256 / (bpr * 16 * ps) > 0 ? 256 / (bpr * 16 * ps) : 1;
    } else {
        const int64_t kb = kp > 0 ? kp : 1, rk = (cm ? 32768 : 65536) / kb, ra = 16384 / og;
        per = cm || rk < ra ? rk : ra;
        per = per < unit ? unit : per / unit * unit;
    }
    int64_t nch = (span + per - 1) / per;
    if (N * G * nch < nt) nch = (nt + N * G - 1) / (N * G);
    per = (span + nch - 1) / nch;
    if (!implicit) per = round_up(per, unit);
    nch = (span + per - 1) / per;
    const int64_t tasks = N * G * nch, nblk = implicit ? per * bpr * ps : per / 16;
    const size_t blkb = sizeof(qg__qblock) * (size_t)(nblk + 1);
    const int64_t npl = per * OW * ps + 4, rowsl = per * (OW / ps) + 4; /* a chunk's channel-lane pixels, rows */
    const size_t clb = cl ? sizeof(uint8_t *) * (size_t)npl + (size_t)(rowsl * ldl) : 0;
    const size_t colsz =
        (size_t)round_up((int64_t)((implicit ? clb : (size_t)(per * kdim)) + QCONV_SLACK), 64) + blkb;
    const size_t accsz = (size_t)round_up(!cm ? per * og * (int64_t)(sizeof(int32_t) + 1) : per * kp, 64);
    /* the padded images, the quad offsets, a buffer per thread: a transposition's, or
     * expand_image's padded row */
    const int64_t rowb = Wp + 4 * q->xq * q->dw + 8, tsz = C * H * W > rowb ? C * H * W : rowb;
    const size_t offb = (size_t)round_up(N * img + QCONV_SLACK, 8), tmpb = offb + sizeof(int64_t) * (size_t)kq;
    uint8_t *xp = qg__qbuf_get(&q->img, tmpb + (size_t)tsz * (size_t)nt, who);
    uint8_t *cols = xp ? qg__qbuf_get(&q->cols, colsz * (size_t)nt, who) : NULL;
    uint8_t *acc = cols && !implicit ? qg__qbuf_get(&q->acc, accsz * (size_t)nt, who) : cols;
    if (!acc) return NULL;

    const uint8_t *xd = (const uint8_t *)qg__data(x);
    const uint8_t za = (uint8_t)x->quant->zero_point;
    uint8_t *yd = (uint8_t *)qg__data(y);
    const geom e = {q, Wp, C, cg, OW, q->dw == 1 && G == 1};
    const bool direct = q->kh == 1 && q->kw == 1 && q->sh == 1 && q->sw == 1 && !q->ph && !q->pw && G == 1;
    int64_t *off = (int64_t *)(void *)(xp + offb);
    for (int64_t qq = 0; cm && qq < kq; qq++) {
        if (implicit) { /* quad qq: tap t, channel quad cqq of the group's */
            const int64_t t = 4 * qq / icg, cqq = 4 * qq % icg / 4;
            off[qq] = ((t / ikw * q->dh * (ic / 4) + cqq) * iw + t % ikw * idw) * 4;
        } else {
            off[qq] = qq * per * 4;
        }
    }
    (void)nt;
    _Pragma("omp parallel num_threads(nt) if(nt > 1)")
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        uint8_t *ttmp = xp + tmpb + (size_t)tid * (size_t)tsz;
        _Pragma("omp for schedule(static)")
        for (int64_t n = 0; n < N; n++) {
            if (expand)
                expand_image(q, xd + n * H * W, H, W, OW, za, ttmp, xp + n * img);
            else if (implicit)
                pad_quads(xd + n * C * H * W, C, H, W, q->ph, q->pw, za, xp + n * img);
            else
                pad_image(xd + n * C * H * W, C, H, W, q->ph, q->pw, za, ttmp, xp + n * img);
        }
        uint8_t *tcols = cols + (size_t)tid * colsz, *tacc = acc + (size_t)tid * accsz;
        qg__qblock *blk = (qg__qblock *)(void *)(tcols + colsz - blkb);
        _Pragma("omp for schedule(static)")
        for (int64_t t = 0; t < tasks; t++) {
            const int64_t n = t / (G * nch), g = t / nch % G, s0 = t % nch * per;
            const int64_t sc = (s0 + per < span ? s0 + per : span) - s0; /* rows or pixels */
            const uint8_t *xi = xp + n * img;
            uint8_t *yo = yd + (n * q->out + g * og) * PO;
            const qg__qpack *pk = expand ? q->xpack : q->pack[g];
            qg__requant rq;
            qg__qlayer_rq(q, g * og, &rq);
            if (cl) { /* the chunk's pixels in tiles (pooled: windows) to pixel-major rows, then NCHW */
                const uint8_t **px = (const uint8_t **)(void *)tcols;
                uint8_t *ob = tcols + sizeof(uint8_t *) * (size_t)npl;
                const int64_t owo = OW / ps, rs = q->sh * ic * iw; /* a row's step in the image */
                const uint8_t *row = xi + (s0 * ps * rs + g * icg * iw); /* (row oh, channel quad gq) */
                int64_t np = 0;
                for (int64_t r = s0; r < s0 + sc; r++, row += ps * rs)
                    for (int64_t c = 0; c < owo; c++) px[np++] = row + 4 * ps * c;
                if (!pool)
                    for (; np % 4; np++) px[np] = px[np - 1];
                const int64_t dpx[4] = {0, 4, rs, rs + 4};
                qg__qconv_cl(pool ? np : np / 4, px, pool ? dpx : NULL, off, za, pk, &rq, ob, ldl, pool != NULL);
                transpose_out(ob, sc * owo, og, ldl, yo + s0 * owo, PO);
                continue;
            }
            if (implicit) { /* a block per 16 pixels of an output row; pooled, of both rows of a pair */
                int64_t nb = 0;
                for (int64_t r = s0; r < s0 + sc; r++)
                    for (int64_t ow = 0; ow < OW; ow += 16)
                        for (int64_t oh = r * ps; oh < r * ps + ps; oh++, nb++) {
                            const uint8_t *a = xi + ((oh * q->sh * (ic / 4) + g * icg / 4) * iw + ow) * 4;
                            blk[nb] = (qg__qblock){a, r * (OW / ps) + ow / ps, (int)(OW - ow < 16 ? OW - ow : 16)};
                        }
                qg__qconv_cm(nb, blk, off, za, pk, &rq, yo, PO, pool != NULL);
                continue;
            }
            const uint8_t *a = xi + s0 * C;
            if (!direct) gather(&e, xi, g, s0, s0 + sc, tcols), a = tcols;
            if (cm) {
                pack_lanes(a, direct ? C : kdim, sc, per, kp, tacc);
                int64_t nb = 0;
                for (int64_t i = 0; i < sc; i += 16)
                    blk[nb++] = (qg__qblock){tacc + 4 * i, s0 + i, (int)(sc - i < 16 ? sc - i : 16)};
                qg__qconv_cm(nb, blk, off, za, pk, &rq, yo, P, false);
            } else {
                int32_t *ac = (int32_t *)(void *)tacc;
                uint8_t *tout = (uint8_t *)(ac + per * og); /* the chunk requantized, pixel-major */
                qg__qgemm(sc, a, direct ? C : kdim, za, pk, ac, og);
                qg__qrequant(&rq, ac, og, sc, og, tout, og);
                transpose_out(tout, sc, og, og, yo + s0, P);
            }
        }
    }
    return y;
}
