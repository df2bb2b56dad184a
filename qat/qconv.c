/* The int8 convolution of quantized.Conv1d/2d and their ReLU fusions.
 *
 * The weights are packed once with their reduction in (kh, kw, C/G) order, and each
 * image is first copied with its padding made real (bytes of the input zero point).
 * Then one of three routes, by the GEMM path and the geometry:
 *  - VNNI, stride-1 width, C/G a multiple of 4: the image in channel quads
 *    (Hp, C/4, Wp, 4), where 16 neighbouring output pixels' k-quad is 64 contiguous
 *    bytes: the channel-major kernel (kernels/qconvk.c) reads it in place, an implicit
 *    GEMM, and multiplies, requantizes and writes the NCHW output itself. A single-
 *    channel image (a first layer) gets its blocks built by byte interleaves instead.
 *  - VNNI otherwise: the image channels-last (Hp, Wp, C), im2col rows gathered as a
 *    few contiguous runs each, repacked into pixel lanes for the same kernel.
 *  - the other paths: the same im2col rows through qgemm (single-threaded inside the
 *    loop), the requantization, and 16 x 16 byte transposes into the NCHW output.
 * Work goes in chunks (a few output rows, or a few hundred im2col rows) whose
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
    return st;
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

/* src (m, n) row-major -> dst[j * ld + i]: a chunk's pixel-major outputs to NCHW, or an
 * image's NCHW planes to channels-last. */
static void transpose_out(const uint8_t *restrict src, int64_t m, int64_t n, uint8_t *restrict dst, int64_t ld) {
    int64_t i0 = 0;
#if defined(__SSE2__)
    for (; i0 + 16 <= m; i0 += 16) {
        int64_t j0 = 0;
        for (; j0 + 16 <= n; j0 += 16) tr16(src + i0 * n + j0, n, dst + j0 * ld + i0, ld);
        for (; j0 < n; j0++)
            for (int64_t i = i0; i < i0 + 16; i++) dst[j0 * ld + i] = src[i * n + j0];
    }
#endif
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = i0; i < m; i++) dst[j * ld + i] = src[i * n + j];
}

/* Image x (C, H, W) -> dst (Hp, Wp, C), the border z; tmp: C * H * W bytes. */
static void pad_image(const uint8_t *restrict x, int64_t C, int64_t H, int64_t W, int ph, int pw, uint8_t z,
                      uint8_t *restrict tmp, uint8_t *restrict dst) {
    const int64_t Wp = W + 2 * pw;
    memset(dst, z, (size_t)((H + 2 * ph) * Wp * C));
    const uint8_t *src = x;
    if (C > 1) transpose_out(x, C, H * W, tmp, C), src = tmp; /* (C, HW) -> (HW, C) */
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

/* Single-channel images (a CNN's first layer), stride-1 width: the pixel lanes of
 * block (row oh, pixels ow..ow+16) built from the padded plane xi, 64 bytes per quad.
 * Byte t of quad q is tap k = 4q + t: for 16 pixels, 16 neighbouring bytes of one
 * plane row (at tap[k] from the block's corner; -1 past kdim), which four rows
 * interleave into the quad's lanes. */
static void lanes_c1(const geom *e, const int64_t *tap, const uint8_t *xi, int64_t oh, int64_t ow,
                     uint8_t *restrict dst) {
    const qg__qlayer *q = e->q;
    const int64_t kq = (q->kdim + 3) / 4;
    const uint8_t *corner = xi + oh * q->sh * e->Wp + ow;
    for (int64_t qq = 0; qq < kq; qq++, dst += 64) {
        const uint8_t *r[4];
        for (int t = 0; t < 4; t++) r[t] = tap[4 * qq + t] >= 0 ? corner + tap[4 * qq + t] : NULL;
#if defined(__SSE2__)
        __m128i v[4];
        for (int t = 0; t < 4; t++)
            v[t] = r[t] ? _mm_loadu_si128((const __m128i *)(const void *)r[t]) : _mm_setzero_si128();
        quads8(dst, v);
        for (int t = 0; t < 4; t++) v[t] = _mm_srli_si128(v[t], 8);
        quads8(dst + 32, v);
#else
        for (int i = 0; i < 16; i++)
            for (int t = 0; t < 4; t++) dst[4 * i + t] = r[t] ? r[t][i] : 0;
#endif
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
    /* The route (see the top) */
    const bool cm = qg__qconv_cm_supported();
    const int64_t C_G = C / q->G;
    const bool implicit = cm && q->sw == 1 && C_G % 4 == 0, rowwise = implicit || (cm && q->sw == 1 && C == 1);
    if (pool && !(rowwise && OH >= 2 && OW >= 2)) /* the pool after the convolution */
        return qg_module_forward(pool, qg__qconv_forward(q, x, NULL));
    const int ps = pool ? 2 : 1; /* output pixels a stored byte pools, each way */
    int64_t shape[4] = {N, q->out, OH / ps, OW / ps}, nd = 0, oshape[4];
    if (batched) oshape[nd++] = N;
    oshape[nd++] = q->out;
    if (q->a.dim == 2) oshape[nd++] = OH / ps;
    oshape[nd++] = OW / ps;
    const int64_t Hp = H + 2 * q->ph, Wp = W + 2 * q->pw;
    if (qg__check_sizes(who, 4, shape) || qg__check_sizes(who, 4, (int64_t[]){N, Hp, Wp, C})) return NULL;
    const int64_t P = OH * OW, img = Hp * Wp * C, G = q->G, og = q->og, kdim = q->kdim;
    qg_tensor *y = qg__tape_tensor(QG_U8, (int)nd, oshape);
    qg_quant oq = {.axis = -1, .scale = q->oscale, .zero_point = q->ozp};
    if (!y || !(y->quant = qg__quant_dup(&oq, true))) return NULL;
    if (!qg_tensor_numel(y)) return y;

    /* The chunk: `per` output rows (pooled: row pairs) of about 256 pixels (by rows),
     * or `per` im2col rows whose bytes (the channel-major kernel's lanes: 32 KiB) or
     * whose bytes and int32 accumulators (64 KiB each) fit the cache; at least one
     * chunk per thread. */
    const int64_t cg = C_G, kp = round_up(kdim, 4), kq = kp / 4;
    const int64_t unit = cm ? 16 : 8, bpr = (OW + 15) / 16; /* blocks per output row */
    const int64_t work = qg__sat_mul(qg__sat_mul(N * P, kdim), q->out);
    const int nt = qg__threads_for(work / 64);
    const int64_t span = rowwise ? OH / ps : P; /* what a chunk splits: rows (pairs) or pixels */
    const int64_t PO = (OH / ps) * (OW / ps);   /* output pixels of a channel */
    int64_t per;
    if (rowwise) {
        per = 256 / (bpr * 16 * ps) > 0 ? 256 / (bpr * 16 * ps) : 1;
    } else {
        const int64_t kb = kp > 0 ? kp : 1, rk = (cm ? 32768 : 65536) / kb, ra = 16384 / og;
        per = cm || rk < ra ? rk : ra;
        per = per < unit ? unit : per / unit * unit;
    }
    int64_t nch = (span + per - 1) / per;
    if (N * G * nch < nt) nch = (nt + N * G - 1) / (N * G);
    per = (span + nch - 1) / nch;
    if (!rowwise) per = round_up(per, unit);
    nch = (span + per - 1) / per;
    const int64_t tasks = N * G * nch, nblk = rowwise ? per * bpr * ps : per / 16;
    const size_t blkb = sizeof(qg__qblock) * (size_t)(nblk + 1);
    const size_t colsz = (size_t)round_up((int64_t)((implicit ? 0 : (size_t)(per * kdim)) + QCONV_SLACK), 64) + blkb;
    const size_t accsz = (size_t)round_up(!cm ? per * og * (int64_t)(sizeof(int32_t) + 1) : rowwise ? nblk * kp * 16 : per * kp, 64);
    /* the padded images, the quad offsets, a transposition buffer per thread */
    /* ... and the taps' offsets in the plane (single-channel images) */
    const size_t offb = (size_t)round_up(N * img + QCONV_SLACK, 8), tmpb = offb + sizeof(int64_t) * (size_t)(5 * kq);
    uint8_t *xp = qg__qbuf_get(&q->img, tmpb + (size_t)(C * H * W) * (size_t)nt, who);
    uint8_t *cols = xp ? qg__qbuf_get(&q->cols, colsz * (size_t)nt, who) : NULL;
    uint8_t *acc = cols && !implicit ? qg__qbuf_get(&q->acc, accsz * (size_t)nt, who) : cols;
    if (!acc) return NULL;

    const uint8_t *xd = (const uint8_t *)qg__data(x);
    const uint8_t za = (uint8_t)x->quant->zero_point;
    uint8_t *yd = (uint8_t *)qg__data(y);
    const geom e = {q, Wp, C, cg, OW, q->dw == 1 && G == 1};
    const bool direct = q->kh == 1 && q->kw == 1 && q->sh == 1 && q->sw == 1 && !q->ph && !q->pw && G == 1;
    int64_t *off = (int64_t *)(void *)(xp + offb), *tap = off + kq;
    for (int64_t k = 0; rowwise && !implicit && k < 4 * kq; k++) /* lanes_c1's: no divisions per block */
        tap[k] = k < kdim ? k / q->kw * q->dh * Wp + k % q->kw * q->dw : -1;
    for (int64_t qq = 0; cm && qq < kq; qq++) {
        if (implicit) { /* quad qq: tap t, channel quad cqq of the group's */
            const int64_t t = 4 * qq / cg, cqq = 4 * qq % cg / 4;
            off[qq] = ((t / q->kw * q->dh * (C / 4) + cqq) * Wp + t % q->kw * q->dw) * 4;
        } else if (rowwise) { /* lanes_c1: a block's quads one after the other */
            off[qq] = qq * 64;
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
        uint8_t *ttmp = xp + tmpb + (size_t)tid * (size_t)(C * H * W);
        _Pragma("omp for schedule(static)")
        for (int64_t n = 0; n < N; n++) {
            if (implicit)
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
            qg__requant rq;
            qg__qlayer_rq(q, g * og, &rq);
            if (rowwise) { /* a block per 16 pixels of an output row; pooled, of both rows of a pair */
                int64_t nb = 0;
                for (int64_t r = s0; r < s0 + sc; r++)
                    for (int64_t ow = 0; ow < OW; ow += 16)
                        for (int64_t oh = r * ps; oh < r * ps + ps; oh++, nb++) {
                            const uint8_t *a; /* the block in place, or its lanes built from the plane (C == 1) */
                            if (implicit)
                                a = xi + ((oh * q->sh * (C / 4) + g * cg / 4) * Wp + ow) * 4;
                            else
                                lanes_c1(&e, tap, xi, oh, ow, tacc + nb * kq * 64), a = tacc + nb * kq * 64;
                            blk[nb] = (qg__qblock){a, r * (OW / ps) + ow / ps, (int)(OW - ow < 16 ? OW - ow : 16)};
                        }
                qg__qconv_cm(nb, blk, off, za, q->pack[g], &rq, yo, PO, pool != NULL);
                continue;
            }
            const uint8_t *a = xi + s0 * C;
            if (!direct) gather(&e, xi, g, s0, s0 + sc, tcols), a = tcols;
            if (cm) {
                pack_lanes(a, direct ? C : kdim, sc, per, kp, tacc);
                int64_t nb = 0;
                for (int64_t i = 0; i < sc; i += 16)
                    blk[nb++] = (qg__qblock){tacc + 4 * i, s0 + i, (int)(sc - i < 16 ? sc - i : 16)};
                qg__qconv_cm(nb, blk, off, za, q->pack[g], &rq, yo, P, false);
            } else {
                int32_t *ac = (int32_t *)(void *)tacc;
                uint8_t *tout = (uint8_t *)(ac + per * og); /* the chunk requantized, pixel-major */
                qg__qgemm(sc, a, direct ? C : kdim, za, q->pack[g], ac, og);
                qg__qrequant(&rq, ac, og, sc, og, tout, og);
                transpose_out(tout, sc, og, yo + s0, P);
            }
        }
    }
    return y;
}
