/* conv2d and conv1d on the packed GEMM.
 *
 * conv2d lowers one image at a time to GEMMs through im2col: the image's receptive
 * fields become the rows of col (C*kh*kw, OH*OW), and per group g
 *     out[n, g] (K/G, OH*OW) = W_g (K/G, C/G*kh*kw) @ col_g (C/G*kh*kw, OH*OW).
 * col lives in a per-thread scratch buffer on the tape, one image at a time, so it is
 * still in cache when the GEMM packs it and the tape holds no batch-wide col (14 MB for
 * the second conv of the Fashion-MNIST CNN); backward rebuilds it, which costs little
 * next to the GEMMs. Padding entries of col are the same for every image: the buffer
 * is zeroed once per pass and im2col writes only the taps inside the input.
 *
 * Backward, per image n and group g (dY = the output's gradient, contiguous):
 *   dx:  dcol_g = W_g^T @ dY[n, g], then col2im adds dcol into dx[n]. Images own
 *        disjoint parts of dx, so they run in parallel.
 *   dW:  dW_g += dY[n, g] @ col_g^T. The images are split into at most DW_BLOCKS
 *        consecutive blocks chosen from the shapes alone; each block sums its images in
 *        order into its own buffer and the buffers are added in block order, so dW is
 *        the same whatever the thread count.
 *   db:  the sum of dY over n and space (16 running sums per row, then a double).
 * Each of the three products may instead be computed transposed (C^T = B^T A^T), when
 * that fits the GEMM's register tiles better (see "GEMM orientation"); the result is
 * then transposed into place. 1x1 kernels with stride 1 and no padding skip im2col and
 * col2im: the input itself is the (C, H*W) matrix.
 *
 * Threads go over images (or dW blocks) when there are enough to share out evenly,
 * each GEMM then running on one thread inside the parallel region; otherwise images
 * run one after another with the threads inside the GEMM and over channels in
 * im2col/col2im. The GEMM gives the same bits whatever its thread count, so results
 * do not depend on the thread count.
 *
 * conv1d is conv2d on a height-1 view, through the differentiable view ops. */
#include "kernels/isa.h"
#include "op_internal.h"
#include "kernels/gemm.h"

/* Image blocks for the deterministic dW sum (see above). */
#define DW_BLOCKS 16
/* Cap on the elements of the per-block dW buffers; bigger weights use fewer blocks. */
#define DW_PARTIAL_MAX ((int64_t)1 << 22)

typedef struct {
    int64_t N, C, H, W;          /* input */
    int64_t K, kh, kw, G;        /* weight (K, C/G, kh, kw), groups */
    int64_t OH, OW;              /* output */
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t xs[4];               /* input strides, in elements */
    int64_t Cg, Kg, CKg, P;      /* C/G, K/G, C/G*kh*kw, OH*OW */
    int64_t wrs;                 /* row stride of the weight as a (K, CKg) matrix */
    bool pointwise;              /* 1x1, stride 1, no padding, (H, W) merge in x */
    int64_t ps;                  /* pointwise: stride of pixel p = h*W + w in x */
    bool fwd_t, dx_t, dw_t;      /* compute these products transposed (see "GEMM orientation") */
} conv_geom;

typedef struct {
    conv_geom g;
    const qg_tensor *wm;         /* the weight, laid out as a (K, CKg) matrix */
} conv_ctx;

/* Outputs o in [*lo, *hi) read input o*s + off, which lies in [0, n). */
static void valid_range(int64_t n, int64_t nout, int64_t s, int64_t off, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = n - off <= 0 ? 0 : (n - off + s - 1) / s;
    if (h > nout) h = nout;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* ---------------------------------------------------------------- kernels */

/* row: (OH, OW); zeroes columns [0, ow0) and [ow1, OW) of rows [oh0, oh1), column by
 * column: a strided loop stays inline where a per-row one would become memset calls. */
#define ZERO_COLUMNS(row, OW, oh0, oh1, ow0, ow1)                                   \
    do {                                                                            \
        for (int64_t zc = 0; zc < (ow0); zc++)                                      \
            for (int64_t zr = (oh0); zr < (oh1); zr++) (row)[zr * (OW) + zc] = 0;   \
        for (int64_t zc = (ow1); zc < (OW); zc++)                                   \
            for (int64_t zr = (oh0); zr < (oh1); zr++) (row)[zr * (OW) + zc] = 0;   \
    } while (0)

/* x_n: (C, H, W) at strides xs[1..3] -> col: (C*kh*kw, OH*OW), the rows of channels
 * [c0, c1); row (c, i, j), column (oh, ow) holds x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw],
 * or 0 where that falls in the padding. The padding entries are the same for every
 * image, so they are not written here: the caller zeroes the buffer once before its
 * first image. */
static void im2col(const conv_geom *g, qg_dtype dt, const char *xn, char *colp, int64_t c0, int64_t c1) {
    const int64_t OW = g->OW, P = g->P, W = g->W;
    const int64_t xs1 = g->xs[1], xs2 = g->xs[2], xs3 = g->xs[3];
    /* Output rows that map onto whole input rows (stride 1, rows of width OW in
     * memory): a row of col is then one shifted copy of the input plane, after which
     * the columns that wrapped around are zeroed again. */
    const bool flat = g->sh == 1 && g->sw == 1 && xs3 == 1 && xs2 == W && W == OW;
    QG_FLOAT_DISPATCH(dt, {
        const real *x = (const real *)xn;
        real *col = (real *)colp;
        for (int64_t c = c0; c < c1; c++) {
            const real *xc = x + c * xs1;
            for (int64_t i = 0; i < g->kh; i++) {
                int64_t oh0, oh1, ihoff = i * g->dh - g->ph;
                valid_range(g->H, g->OH, g->sh, ihoff, &oh0, &oh1);
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t ow0, ow1, iwoff = j * g->dw - g->pw;
                    valid_range(W, OW, g->sw, iwoff, &ow0, &ow1);
                    if (oh0 >= oh1 || ow0 >= ow1) continue; /* the tap never leaves the padding */
                    real *row = col + ((c * g->kh + i) * g->kw + j) * P;
                    if (flat) {
                        int64_t t0 = oh0 * OW + ow0, t1 = (oh1 - 1) * OW + ow1;
                        memcpy(row + t0, xc + (oh0 + ihoff) * W + ow0 + iwoff, sizeof(real) * (size_t)(t1 - t0));
                        ZERO_COLUMNS(row, OW, oh0, oh1, ow0, ow1);
                        continue;
                    }
                    for (int64_t oh = oh0; oh < oh1; oh++) {
                        real *d = row + oh * OW + ow0;
                        const real *s = xc + (oh * g->sh + ihoff) * xs2 + (ow0 * g->sw + iwoff) * xs3;
                        const int64_t n = ow1 - ow0, step = g->sw * xs3;
                        if (step == 1)
                            for (int64_t t = 0; t < n; t++) d[t] = s[t];
                        else
                            for (int64_t t = 0; t < n; t++) d[t] = s[t * step];
                    }
                }
            }
        }
    });
}

/* dcol: (C*kh*kw, OH*OW), the rows of channels [c0, c1) -> dx_n: (C, H, W) contiguous,
 * +=, the adjoint of im2col. Each element of dx receives its taps in (i, j) order.
 * With stride 1 and OW == W a row of dcol maps onto dx by a flat shift, as in im2col:
 * the columns that would wrap around are zeroed in dcol (it is scratch) and the row
 * is added in one run. */
static void col2im(const conv_geom *g, qg_dtype dt, char *colp, char *dxn, int64_t c0, int64_t c1) {
    const int64_t OW = g->OW, P = g->P, H = g->H, W = g->W;
    const bool flat = g->sh == 1 && g->sw == 1 && W == OW;
    QG_FLOAT_DISPATCH(dt, {
        real *col = (real *)colp;
        real *dx = (real *)dxn;
        for (int64_t c = c0; c < c1; c++) {
            real *dxc = dx + c * H * W;
            for (int64_t i = 0; i < g->kh; i++) {
                int64_t oh0, oh1, ihoff = i * g->dh - g->ph;
                valid_range(H, g->OH, g->sh, ihoff, &oh0, &oh1);
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t ow0, ow1, iwoff = j * g->dw - g->pw;
                    valid_range(W, OW, g->sw, iwoff, &ow0, &ow1);
                    if (oh0 >= oh1 || ow0 >= ow1) continue;
                    real *row = col + ((c * g->kh + i) * g->kw + j) * P;
                    if (flat) {
                        ZERO_COLUMNS(row, OW, oh0, oh1, ow0, ow1);
                        const int64_t t0 = oh0 * OW + ow0, n = (oh1 - 1) * OW + ow1 - t0;
                        real *d = dxc + (oh0 + ihoff) * W + ow0 + iwoff;
                        const real *s = row + t0;
                        for (int64_t t = 0; t < n; t++) d[t] += s[t];
                        continue;
                    }
                    const int64_t n = ow1 - ow0, sw = g->sw;
                    for (int64_t oh = oh0; oh < oh1; oh++) {
                        real *d = dxc + (oh * g->sh + ihoff) * W + ow0 * sw + iwoff;
                        const real *s = row + oh * OW + ow0;
                        if (sw == 1)
                            for (int64_t t = 0; t < n; t++) d[t] += s[t];
                        else
                            for (int64_t t = 0; t < n; t++) d[t * sw] += s[t];
                    }
                }
            }
        }
    });
}

/* An 8 x 8 block of transpose_to in float32 vectors: s rows (8 floats at row stride
 * ss) -> d rows (stride ds), d[e][r] = s[r][e] (+ bias[e * bs], or added to d); the
 * same single operations per element as the scalar loop, so the same bits. */
__attribute__((always_inline)) static inline void tr8_f32(const float *s, int64_t ss, float *d, int64_t ds,
                                                          const float *bias, int64_t bs, bool accumulate) {
    qg__v8f r[8];
    for (int k = 0; k < 8; k++) memcpy(&r[k], s + k * ss, sizeof r[k]);
    qg__tr8_f32(r);
    for (int e = 0; e < 8; e++) {
        qg__v8f v = r[e];
        if (accumulate) {
            qg__v8f o;
            memcpy(&o, d + e * ds, sizeof o);
            v = o + v;
        } else if (bias) {
            v = v + bias[e * bs];
        }
        memcpy(d + e * ds, &v, sizeof v);
    }
}

/* dst: (S, R) at row stride ds <- src: (R, S) at row stride ss, transposed, plus
 * bias[s] (bias may be NULL); with accumulate, dst += src^T instead. 16x16 tiles keep
 * both sides in cache; nt threads share the tiles' rows of dst. */
QG_HOT static void transpose_to(qg_dtype dt, int64_t R, int64_t S, const char *srcp, int64_t ss, char *dstp, int64_t ds,
                         const char *biasp, int64_t bs, bool accumulate, int nt) {
    (void)nt;
    QG_FLOAT_DISPATCH(dt, {
        const real *src = (const real *)srcp, *bias = (const real *)biasp;
        real *dst = (real *)dstp;
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t s0 = 0; s0 < S; s0 += 16) {
            int64_t s1 = s0 + 16 < S ? s0 + 16 : S;
            for (int64_t r0 = 0; r0 < R; r0 += 16) {
                int64_t r1 = r0 + 16 < R ? r0 + 16 : R;
                if (sizeof(real) == sizeof(float) && s1 - s0 == 16 && r1 - r0 == 16) { /* 4 8x8 blocks */
                    for (int64_t sb = s0; sb < s1; sb += 8)
                        for (int64_t rb = r0; rb < r1; rb += 8)
                            tr8_f32((const float *)(const void *)(src + rb * ss + sb), ss,
                                    (float *)(void *)(dst + sb * ds + rb), ds,
                                    bias ? (const float *)(const void *)(bias + sb * bs) : NULL, bs, accumulate);
                    continue;
                }
                for (int64_t s = s0; s < s1; s++) {
                    real *d = dst + s * ds;
                    const real *c = src + s;
                    if (accumulate) {
                        for (int64_t r = r0; r < r1; r++) d[r] += c[r * ss];
                    } else if (bias) {
                        const real bv = bias[s * bs];
                        for (int64_t r = r0; r < r1; r++) d[r] = c[r * ss] + bv;
                    } else {
                        for (int64_t r = r0; r < r1; r++) d[r] = c[r * ss];
                    }
                }
            }
        }
    });
}

/* out_n: (K, OH*OW) += b (K) along each row */
static void add_bias(qg_dtype dt, int64_t K, int64_t P, const char *bp, int64_t bs, char *outp) {
    QG_FLOAT_DISPATCH(dt, {
        const real *b = (const real *)bp;
        real *o = (real *)outp;
        for (int64_t k = 0; k < K; k++) {
            const real bk = b[k * bs];
            real *r = o + k * P;
            for (int64_t p = 0; p < P; p++) r[p] += bk;
        }
    });
}

/* im2col (or col2im) of one image over its channels, on nt threads. */
QG_HOT static void im2col_par(const conv_geom *g, qg_dtype dt, const char *xn, char *col, int nt) {
    const int64_t C = g->C;
    if (nt <= 1) {
        im2col(g, dt, xn, col, 0, C);
        return;
    }
    _Pragma("omp parallel for num_threads(nt) schedule(static)")
    for (int64_t c = 0; c < C; c++) im2col(g, dt, xn, col, c, c + 1);
}

QG_HOT static void col2im_par(const conv_geom *g, qg_dtype dt, char *col, char *dxn, int nt) {
    const int64_t C = g->C;
    if (nt <= 1) {
        col2im(g, dt, col, dxn, 0, C);
        return;
    }
    _Pragma("omp parallel for num_threads(nt) schedule(static)")
    for (int64_t c = 0; c < C; c++) col2im(g, dt, col, dxn, c, c + 1);
}

/* ---------------------------------------------------------------- GEMM orientation
 * Each product can run as written, C (m, n) = A B, or transposed, C^T (n, m) = B^T A^T
 * into scratch that is then transposed into place. The packed GEMM covers C with
 * MR x NR register tiles (NR = two vectors, along C's rows); a conv's small dims (K or
 * C*kh*kw of a first layer, OH*OW of a late one) waste much of each tile on the wrong
 * side. The cheaper of the two, counting padded tiles and the transpose, wins. The tile
 * shape is the GEMM's own (kernels/gemm.h); it only steers speed, never results. */

/* Test hook (declared for tests in tests/hooks.h): -1 chooses by cost, 0 computes
 * every product as written, 1 every product transposed. */
int qg__conv_orientation = -1;

/* Cost, in multiply-adds, of C (m, n) = A (m, k) B (k, n) with padded tiles. */
static double tile_cost(int64_t m, int64_t n, int64_t k, int64_t nr) {
    return (double)((m + QG_MR - 1) / QG_MR * QG_MR) * (double)((n + nr - 1) / nr * nr) * (double)k;
}

/* True when computing C^T is cheaper; `moved` elements are transposed afterwards
 * (about a cycle each, against two vector FMAs a cycle). */
static bool transposed_cheaper(int64_t m, int64_t n, int64_t k, size_t es, int64_t moved) {
    if (qg__conv_orientation >= 0) return qg__conv_orientation == 1;
    int64_t nr = QG_NR(es);
    return tile_cost(n, m, k, nr) + (double)moved * (double)nr < tile_cost(m, n, k, nr);
}

/* ---------------------------------------------------------------- drivers */

/* Threads for a pass over `units` independent pieces (images or blocks) of total
 * work `work`: *outer is true when the pieces themselves are shared out. */
static int plan_threads(int64_t units, int64_t work, bool *outer) {
    int nt = qg__threads_for(work);
    *outer = nt > 1 && units >= nt && (units % nt == 0 || units >= 4 * nt);
    return nt;
}

/* Rough work of one pass, for the thread decision: elements moved plus GEMM FLOPs/16. */
static int64_t conv_work(const conv_geom *g) {
    return g->N * g->P * (g->C * g->kh * g->kw + g->K) + g->N * g->P * g->K * g->CKg / 16;
}

/* Per-thread scratch, carved from one tape block per pass: col and dcol (C*kh*kw,
 * OH*OW) each when the pass needs them (never for pointwise convs), then room for a
 * transposed GEMM result, (OH*OW, K/G) or (OH*OW, CKg). */
typedef struct {
    char *col, *dcol, *tmp;
} bufs;

typedef struct {
    size_t col, dcol, tmp, stride; /* bytes, each 64-aligned */
} buf_plan;

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

static buf_plan plan_bufs(const conv_geom *g, size_t es, bool col, bool dcol) {
    size_t cb = g->pointwise ? 0 : round64((size_t)(g->C * g->kh * g->kw * g->P) * es);
    int64_t a = g->fwd_t ? g->Kg : 0, b = g->dx_t ? g->CKg : 0;
    buf_plan p = {col ? cb : 0, dcol ? cb : 0, round64((size_t)(g->P * (a > b ? a : b)) * es), 0};
    p.stride = p.col + p.dcol + p.tmp;
    return p;
}

/* The buffers of `count` threads; col parts zeroed, as im2col leaves the padding
 * alone. NULL base on allocation failure. */
static char *alloc_bufs(const buf_plan *p, int count) {
    size_t n;
    if (__builtin_mul_overflow(p->stride, (size_t)count, &n) || n > SIZE_MAX / 2)
        return qg__err(QG_ENOMEM, "conv: %d work buffers of %zu bytes are too large", count, p->stride), NULL;
    char *base = qg__tape_alloc(n + 64);
    if (base && p->col)
        for (int t = 0; t < count; t++) memset(base + (size_t)t * p->stride, 0, p->col);
    return base;
}

static bufs thread_bufs(const buf_plan *p, char *base, int t) {
    char *b = base + (size_t)t * p->stride;
    return (bufs){b, b + p->col, b + p->col + p->dcol};
}

typedef struct {
    const char *data;
    int64_t rs, cs; /* element (r, p) at data[r*rs + p*cs], in elements */
} matrix;

/* The image's (C*kh*kw, OH*OW) matrix: im2col into col, or x[n] itself if pointwise. */
static matrix image_cols(const conv_geom *g, qg_dtype dt, const char *x, int64_t n, char *col, int nt) {
    size_t es = qg_dtype_size(dt);
    const char *xn = x + (size_t)(n * g->xs[0]) * es;
    if (g->pointwise) return (matrix){xn, g->xs[1], g->ps};
    im2col_par(g, dt, xn, col, nt);
    return (matrix){col, g->P, 1};
}

/* The direct single-channel kernel (kernels/conv1.c) for this forward: float32, one
 * input channel, stride 1, contiguous weight rows and bias, and the padded plane (plus
 * the kernel's 16 floats of slack) fitting the col buffer it borrows. */
static bool direct1(const conv_geom *g, qg_dtype dt, int64_t bs) {
    const int64_t T = g->kh * g->kw, Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw;
    return dt == QG_F32 && g->C == 1 && g->G == 1 && g->sh == 1 && g->sw == 1 && !g->pointwise &&
           qg__conv1_supported(T) && g->wrs == T && bs == 1 && Hp * Wp + 16 <= T * g->P;
}

/* Image n through the direct kernel: its plane padded into xp (zeros around). */
static void fwd_direct1(const conv_geom *g, const char *x, const char *w, const char *b, char *out, float *xp,
                        int64_t n) {
    const int64_t Wp = g->W + 2 * g->pw, Hp = g->H + 2 * g->ph;
    const float *xn = (const float *)(const void *)x + n * g->xs[0];
    for (int64_t r = 0; r < Hp; r++)
        for (int64_t c = 0; c < Wp; c++) {
            const int64_t h = r - g->ph, wi = c - g->pw;
            xp[r * Wp + c] = h >= 0 && h < g->H && wi >= 0 && wi < g->W ? xn[h * g->xs[2] + wi * g->xs[3]] : 0.0f;
        }
    for (int i = 0; i < 16; i++) xp[Hp * Wp + i] = 0.0f; /* the slack the vector tails read */
    qg__conv1_f32(xp, Wp, g->OH, g->OW, (int)g->kh, (int)g->kw, (int)g->dh, (int)g->dw,
                  (const float *)(const void *)w, (const float *)(const void *)b, g->K,
                  (float *)(void *)out + n * g->K * g->P);
}

/* out[n] = W @ cols(x[n]) (+ b); nt threads inside. */
static void fwd_image(const conv_geom *g, qg_dtype dt, const char *x, const char *w, const char *b,
                      int64_t bs, char *out, bufs s, int64_t n, int nt) {
    size_t es = qg_dtype_size(dt);
    if (direct1(g, dt, b ? bs : 1)) {
        fwd_direct1(g, x, w, b, out, (float *)(void *)s.col, n);
        return;
    }
    char *on = out + (size_t)(n * g->K * g->P) * es;
    matrix B = image_cols(g, dt, x, n, s.col, nt);
    for (int64_t gr = 0; gr < g->G; gr++) {
        const char *Wg = w + (size_t)(gr * g->Kg * g->wrs) * es, *Bg = B.data + (size_t)(gr * g->CKg * B.rs) * es;
        char *Og = on + (size_t)(gr * g->Kg * g->P) * es;
        if (!g->fwd_t) {
            qg__gemm(dt, g->Kg, g->P, g->CKg, Wg, g->wrs, 1, Bg, B.rs, B.cs, 0.0, Og, g->P, 1);
        } else { /* tmp (P, Kg) = cols_g^T W_g^T, then out_g = tmp^T + b_g */
            qg__gemm(dt, g->P, g->Kg, g->CKg, Bg, B.cs, B.rs, Wg, 1, g->wrs, 0.0, s.tmp, g->Kg, 1);
            transpose_to(dt, g->P, g->Kg, s.tmp, g->Kg, Og, g->P, b ? b + (size_t)(gr * g->Kg * bs) * es : NULL, bs,
                         false, nt);
        }
    }
    if (b && !g->fwd_t) add_bias(dt, g->K, g->P, b, bs, on);
}

/* dx[n] += col2im(W^T @ dY[n]); fresh: dx is a fresh buffer, dx[n] = instead */
static void dx_image(const conv_geom *g, qg_dtype dt, const char *w, const char *dy, char *dx, bool fresh, bufs s,
                     int64_t n, int nt) {
    size_t es = qg_dtype_size(dt);
    const char *dyn = dy + (size_t)(n * g->K * g->P) * es;
    char *dxn = dx + (size_t)(n * g->C * g->H * g->W) * es;
    /* pointwise: col2im is the identity, so accumulate straight into dx */
    char *dcol = g->pointwise ? dxn : s.dcol;
    const bool acc = g->pointwise && !fresh; /* the GEMM or transpose adds into dx itself */
    for (int64_t gr = 0; gr < g->G; gr++) {
        const char *Wg = w + (size_t)(gr * g->Kg * g->wrs) * es, *Dg = dyn + (size_t)(gr * g->Kg * g->P) * es;
        char *Cg = dcol + (size_t)(gr * g->CKg * g->P) * es;
        if (!g->dx_t) {
            qg__gemm(dt, g->CKg, g->P, g->Kg, Wg, 1, g->wrs, Dg, g->P, 1, acc ? 1.0 : 0.0, Cg, g->P, 1);
        } else { /* tmp (P, CKg) = dY_g^T W_g, then dcol_g (+)= tmp^T */
            qg__gemm(dt, g->P, g->CKg, g->Kg, Dg, 1, g->P, Wg, g->wrs, 1, 0.0, s.tmp, g->CKg, 1);
            transpose_to(dt, g->P, g->CKg, s.tmp, g->CKg, Cg, g->P, NULL, 0, acc, nt);
        }
    }
    if (g->pointwise) return;
    if (fresh) memset(dxn, 0, (size_t)(g->C * g->H * g->W) * es); /* col2im adds: zeroed here, in cache */
    col2im_par(g, dt, dcol, dxn, nt);
}

/* dWb (+)= dY[n] @ cols(x[n])^T, stored as (K, CKg) or, if dw_t, per group as
 * (CKg, K/G); beta 0 overwrites. */
static void dw_image(const conv_geom *g, qg_dtype dt, const char *x, const char *dy, char *dwb, bufs s,
                     int64_t n, double beta, int nt) {
    size_t es = qg_dtype_size(dt);
    const char *dyn = dy + (size_t)(n * g->K * g->P) * es;
    matrix B = image_cols(g, dt, x, n, s.col, nt);
    for (int64_t gr = 0; gr < g->G; gr++) {
        const char *Dg = dyn + (size_t)(gr * g->Kg * g->P) * es, *Bg = B.data + (size_t)(gr * g->CKg * B.rs) * es;
        char *Cg = dwb + (size_t)(gr * g->Kg * g->CKg) * es;
        if (!g->dw_t) /* (Kg, CKg) += dY_g (Kg, P) cols_g^T (P, CKg) */
            qg__gemm(dt, g->Kg, g->CKg, g->P, Dg, g->P, 1, Bg, B.cs, B.rs, beta, Cg, g->CKg, 1);
        else /* (CKg, Kg) += cols_g (CKg, P) dY_g^T (P, Kg) */
            qg__gemm(dt, g->CKg, g->Kg, g->P, Bg, B.rs, B.cs, Dg, 1, g->P, beta, Cg, g->Kg, 1);
    }
}

/* Images [n0, n1) of one dW block: dx (if dx != NULL) and the block's dW sum (if dwb
 * != NULL; the first image overwrites unless accumulate). */
static void bwd_block(const conv_geom *g, qg_dtype dt, const char *x, const char *w, const char *dy, char *dx,
                      bool fresh, char *dwb, bufs s, int64_t n0, int64_t n1, bool accumulate, int nt) {
    for (int64_t n = n0; n < n1; n++) {
        if (dx) dx_image(g, dt, w, dy, dx, fresh, s, n, nt);
        if (dwb) dw_image(g, dt, x, dy, dwb, s, n, (n > n0 || accumulate) ? 1.0 : 0.0, nt);
    }
}

static qg_status conv_forward(const conv_geom *g, qg_dtype dt, const char *x, const char *w, const char *b,
                              int64_t bs, char *out) {
    bool outer;
    int nt = plan_threads(g->N, conv_work(g), &outer);
    buf_plan bp = plan_bufs(g, qg_dtype_size(dt), true, false);
    char *base = alloc_bufs(&bp, outer ? nt : 1);
    if (!base) return qg_last_status();
    if (outer) {
        const int64_t N = g->N;
        _Pragma("omp parallel for num_threads(nt) schedule(static)")
        for (int64_t n = 0; n < N; n++) fwd_image(g, dt, x, w, b, bs, out, thread_bufs(&bp, base, qg__thread_id()), n, 1);
    } else {
        for (int64_t n = 0; n < g->N; n++) fwd_image(g, dt, x, w, b, bs, out, thread_bufs(&bp, base, 0), n, nt);
    }
    return QG_OK;
}

/* dW += the nb block buffers (in part's layout: (K, CKg) as dW, or per group (CKg, Kg)),
 * added in block order. */
QG_HOT static qg_status reduce_blocks(const conv_geom *g, qg_dtype dt, const char *part, int64_t nb, char *dW) {
    const int64_t Kg = g->Kg, CKg = g->CKg, wn = g->K * CKg;
    const int64_t rows = g->G * (g->dw_t ? CKg : Kg), len = g->dw_t ? Kg : CKg;
    const bool tr = g->dw_t;
    int nt = qg__threads_for(nb * wn);
    (void)nt; /* only the OpenMP pragmas use it */
    QG_FLOAT_DISPATCH(dt, {
        real *d = (real *)dW;
        const real *pp = (const real *)part;
        real *acc = qg__tape_alloc(sizeof(real) * (size_t)(rows * len));
        if (!acc) return QG_ENOMEM;
        _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int64_t row = 0; row < rows; row++) {
            real *a = acc + row * len;
            for (int64_t e = 0; e < len; e++) a[e] = pp[row * len + e];
            for (int64_t bi = 1; bi < nb; bi++) {
                const real *q = pp + bi * wn + row * len;
                for (int64_t e = 0; e < len; e++) a[e] += q[e];
            }
            if (!tr) {
                real *o = d + row * len;
                for (int64_t e = 0; e < len; e++) o[e] += a[e];
            } else { /* row = (gr, r), e = k: dW[gr*Kg + k][r] */
                const int64_t gr = row / CKg, r = row % CKg;
                for (int64_t e = 0; e < len; e++) d[(gr * Kg + e) * CKg + r] += a[e];
            }
        }
    });
    return QG_OK;
}

static qg_status conv_backward(qg_node *node) {
    const conv_ctx *cx = node->ctx;
    const conv_geom *g = &cx->g;
    qg_tensor *x = node->in[0], *wt = node->in[1], *bt = node->nin > 2 ? node->in[2] : NULL;
    qg_dtype dt = x->dtype;
    size_t es = qg_dtype_size(dt);
    const char *dy = qg__data(node->out->grad), *xd = qg__data(x), *w = qg__data(cx->wm);
    const int64_t N = g->N;
    const bool want_x = qg__wants_grad(x), want_w = qg__wants_grad(wt) && N > 0;
    bool fresh = false; /* x's buffer: fresh only if x is not also the weight */
    qg_tensor *gx = !want_x ? NULL : x != wt ? qg__grad_for_write(x, &fresh) : qg__grad_of(x);
    qg_tensor *gw = want_w ? qg__grad_of(wt) : NULL;
    if ((want_x && !gx) || (want_w && !gw)) return QG_ENOMEM;
    char *dx = gx ? qg__data(gx) : NULL, *dW = gw ? qg__data(gw) : NULL;

    /* dW blocks: nb, and each block's buffer (none when one block in dW's layout
     * can accumulate straight into dW) */
    const int64_t wn = g->K * g->CKg;
    int64_t nb = N < DW_BLOCKS ? N : DW_BLOCKS;
    if (wn > 0 && nb * wn > DW_PARTIAL_MAX) nb = DW_PARTIAL_MAX / wn > 1 ? DW_PARTIAL_MAX / wn : 1;
    const bool direct = nb == 1 && !g->dw_t;
    char *part = want_w && !direct ? qg__tape_alloc((size_t)(nb * wn) * es) : dW;
    if (want_w && !part) return QG_ENOMEM;
    bool outer_b;
    int ntb = plan_threads(nb, conv_work(g), &outer_b);

    if (want_x && want_w && (outer_b || ntb <= 1)) { /* one pass over the blocks: dY[n] is still in cache for dW */
        buf_plan bp = plan_bufs(g, es, true, true);
        char *base = alloc_bufs(&bp, ntb);
        if (!base) return QG_ENOMEM;
        _Pragma("omp parallel for num_threads(ntb) schedule(static) if(ntb > 1)")
        for (int64_t bi = 0; bi < nb; bi++)
            bwd_block(g, dt, xd, w, dy, dx, fresh, part + (size_t)(bi * wn) * es, thread_bufs(&bp, base, qg__thread_id()),
                      bi * N / nb, (bi + 1) * N / nb, direct, 1);
    } else {
        if (want_x) { /* images in parallel, or one after another with threads inside */
            bool outer;
            int nt = plan_threads(N, conv_work(g), &outer);
            buf_plan bp = plan_bufs(g, es, false, true);
            char *base = alloc_bufs(&bp, outer ? nt : 1);
            if (!base) return QG_ENOMEM;
            if (outer) {
                _Pragma("omp parallel for num_threads(nt) schedule(static)")
                for (int64_t n = 0; n < N; n++)
                    dx_image(g, dt, w, dy, dx, fresh, thread_bufs(&bp, base, qg__thread_id()), n, 1);
            } else {
                for (int64_t n = 0; n < N; n++) dx_image(g, dt, w, dy, dx, fresh, thread_bufs(&bp, base, 0), n, nt);
            }
        }
        if (want_w) {
            buf_plan bp = plan_bufs(g, es, true, false);
            char *base = alloc_bufs(&bp, outer_b ? ntb : 1);
            if (!base) return QG_ENOMEM;
            if (outer_b) {
                _Pragma("omp parallel for num_threads(ntb) schedule(static)")
                for (int64_t bi = 0; bi < nb; bi++)
                    bwd_block(g, dt, xd, w, dy, NULL, false, part + (size_t)(bi * wn) * es, thread_bufs(&bp, base, qg__thread_id()),
                              bi * N / nb, (bi + 1) * N / nb, direct, 1);
            } else {
                for (int64_t bi = 0; bi < nb; bi++)
                    bwd_block(g, dt, xd, w, dy, NULL, false, part + (size_t)(bi * wn) * es, thread_bufs(&bp, base, 0),
                              bi * N / nb, (bi + 1) * N / nb, direct, ntb);
            }
        }
    }
    if (want_w && !direct && reduce_blocks(g, dt, part, nb, dW)) return QG_ENOMEM;

    if (qg__wants_grad(bt)) { /* db[k] += sum over n, p of dY[n, k, p] */
        qg_tensor *gb = qg__grad_of(bt);
        if (!gb) return QG_ENOMEM;
        char *db = qg__data(gb);
        const int64_t K = g->K, P = g->P;
        int nt = qg__threads_for(N * K * P);
        (void)nt; /* only the OpenMP pragmas use it */
        QG_FLOAT_DISPATCH(dt, {
            const real *d = (const real *)dy;
            real *o = (real *)db;
            _Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
            for (int64_t k = 0; k < K; k++) {
                /* 16 running sums per row (vectorisable), added in a fixed order */
                double s = 0;
                for (int64_t n = 0; n < N; n++) {
                    const real *r = d + (n * K + k) * P;
                    real lane[16] = {0};
                    int64_t p = 0;
                    for (; p + 16 <= P; p += 16)
                        for (int l = 0; l < 16; l++) lane[l] += r[p + l];
                    for (int l = 0; p < P; p++, l++) lane[l] += r[p];
                    for (int l = 0; l < 16; l++) s += lane[l];
                }
                o[k] += (real)s;
            }
        });
    }
    return QG_OK;
}

/* ---------------------------------------------------------------- entry points */

static qg_status pair(const char *op, const char *what, const int *v, int dflt, int64_t *a, int64_t *b) {
    *a = v ? v[0] : dflt;
    *b = v ? v[1] : dflt;
    if (dflt == 0 ? (*a < 0 || *b < 0) : (*a <= 0 || *b <= 0))
        return qg__err(QG_EINVAL, "%s: %s must be %s, got (%lld, %lld)", op, what,
                       dflt == 0 ? "non-negative" : "positive", (long long)*a, (long long)*b);
    return QG_OK;
}

static qg_tensor *conv2d_impl(const char *op, const qg_tensor *x, const qg_tensor *w, const qg_tensor *b,
                              const int *stride, const int *padding, const int *dilation, int groups) {
    char s1[128], s2[128];
    if (qg__check_same_float(op, x, w)) return NULL;
    if (b && qg__check_same_float(op, x, b)) return NULL;
    if (x->ndim == 3) { /* unbatched (C, H, W), as PyTorch accepts */
        qg_tensor *y = conv2d_impl(op, qg_unsqueeze(x, 0), w, b, stride, padding, dilation, groups);
        return y ? qg_squeeze(y, 0) : NULL;
    }
    if (x->ndim != 4)
        return qg__err(QG_ESHAPE, "%s: expected 3-D (C, H, W) or 4-D (N, C, H, W) input, got %s", op,
                       qg_shape_str(x, s1, sizeof s1)), NULL;
    if (w->ndim != 4)
        return qg__err(QG_ESHAPE, "%s: expected 4-D weight (K, C/groups, kh, kw), got %s", op,
                       qg_shape_str(w, s1, sizeof s1)), NULL;
    conv_geom g;
    memset(&g, 0, sizeof g);
    if (pair(op, "stride", stride, 1, &g.sh, &g.sw) || pair(op, "padding", padding, 0, &g.ph, &g.pw) ||
        pair(op, "dilation", dilation, 1, &g.dh, &g.dw))
        return NULL;
    if (groups <= 0) return qg__err(QG_EINVAL, "%s: groups must be positive, got %d", op, groups), NULL;
    g.N = x->shape[0], g.C = x->shape[1], g.H = x->shape[2], g.W = x->shape[3];
    g.K = w->shape[0], g.kh = w->shape[2], g.kw = w->shape[3], g.G = groups;
    if (g.K % groups)
        return qg__err(QG_ESHAPE, "%s: given groups=%d, expected weight %s to be divisible by %d at dim 0",
                       op, groups, qg_shape_str(w, s1, sizeof s1), groups), NULL;
    if (w->shape[1] * groups != g.C || g.C == 0)
        return qg__err(QG_ESHAPE, "%s: given groups=%d, weight %s expects input %s to have %lld channels, but it has %lld",
                       op, groups, qg_shape_str(w, s1, sizeof s1), qg_shape_str(x, s2, sizeof s2),
                       (long long)(w->shape[1] * groups), (long long)g.C), NULL;
    if (g.kh <= 0 || g.kw <= 0)
        return qg__err(QG_ESHAPE, "%s: weight %s has an empty kernel", op, qg_shape_str(w, s1, sizeof s1)), NULL;
    if (b && (b->ndim != 1 || b->shape[0] != g.K))
        return qg__err(QG_ESHAPE, "%s: bias %s does not match weight %s (expected (%lld))", op,
                       qg_shape_str(b, s1, sizeof s1), qg_shape_str(w, s2, sizeof s2), (long long)g.K), NULL;
    int64_t eh, ew; /* dilated kernel; sizes are below 2^59 and int parameters below 2^31 */
    if (__builtin_mul_overflow(g.dh, g.kh - 1, &eh) || __builtin_mul_overflow(g.dw, g.kw - 1, &ew))
        return qg__err(QG_ESHAPE, "%s: the dilated kernel of weight %s is too large", op, qg_shape_str(w, s1, sizeof s1)),
               NULL;
    eh++, ew++;
    if (g.H + 2 * g.ph < eh || g.W + 2 * g.pw < ew)
        return qg__err(QG_ESHAPE, "%s: padded input size per channel (%lld x %lld) of input %s is smaller than the "
                       "dilated kernel (%lld x %lld)", op, (long long)(g.H + 2 * g.ph), (long long)(g.W + 2 * g.pw),
                       qg_shape_str(x, s1, sizeof s1), (long long)eh, (long long)ew), NULL;
    g.OH = (g.H + 2 * g.ph - eh) / g.sh + 1;
    g.OW = (g.W + 2 * g.pw - ew) / g.sw + 1;
    /* the output and the column matrices (C*kh*kw, OH*OW) and (OH*OW, max(Kg, CKg)) must fit */
    if (qg__check_sizes(op, 4, (int64_t[]){g.N, g.K, g.OH, g.OW}) ||
        qg__check_sizes(op, 4, (int64_t[]){g.C, g.kh * g.kw, g.OH, g.OW}) ||
        qg__check_sizes(op, 3, (int64_t[]){g.OH, g.OW, g.K > g.C * g.kh * g.kw ? g.K : g.C * g.kh * g.kw}))
        return NULL;
    g.Cg = g.C / groups, g.Kg = g.K / groups, g.CKg = g.Cg * g.kh * g.kw, g.P = g.OH * g.OW;
    memcpy(g.xs, x->strides, sizeof g.xs);
    g.pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 &&
                  (g.H == 1 || g.W == 1 || g.xs[2] == g.W * g.xs[3]);
    g.ps = g.W == 1 ? g.xs[2] : g.xs[3];

    /* The weight as a (K, CKg) matrix with unit column stride, copied if need be. */
    const qg_tensor *wm = w;
    bool merged = (g.kw == 1 || w->strides[3] == 1) && (g.kh == 1 || w->strides[2] == g.kw) &&
                  (g.Cg == 1 || w->strides[1] == g.kh * g.kw);
    if (!merged) {
        qg_tensor *c = qg__tape_tensor(w->dtype, 4, w->shape);
        if (!c || qg_tensor_copy_(c, w)) return NULL;
        wm = c;
    }
    g.wrs = g.K > 1 ? wm->strides[0] : g.CKg;

    size_t es = qg_dtype_size(x->dtype);
    g.fwd_t = transposed_cheaper(g.Kg, g.P, g.CKg, es, g.Kg * g.P);
    g.dx_t = transposed_cheaper(g.CKg, g.P, g.Kg, es, g.CKg * g.P);
    g.dw_t = transposed_cheaper(g.Kg, g.CKg, g.P, es, 0);

    qg_tensor *out = qg__tape_tensor(x->dtype, 4, (int64_t[]){g.N, g.K, g.OH, g.OW});
    if (!out) return NULL;
    if (conv_forward(&g, x->dtype, qg__data(x), qg__data(wm), b ? qg__data(b) : NULL, b ? b->strides[0] : 0,
                     qg__data(out)))
        return NULL;

    const qg_tensor *ins[3] = {x, w, b};
    int nin = b ? 3 : 2;
    if (qg__needs_grad(nin, ins)) {
        conv_ctx *cx = qg__tape_alloc(sizeof *cx);
        qg_node *n = cx ? qg__record(op, conv_backward, out, nin, ins) : NULL;
        if (!n) return NULL;
        cx->g = g;
        cx->wm = wm;
        n->ctx = cx;
        n->saved[0] = (qg_tensor *)wm;
    }
    return out;
}

qg_tensor *qg_conv2d(const qg_tensor *x, const qg_tensor *w, const qg_tensor *b, const int *stride,
                     const int *padding, const int *dilation, int groups) {
    return conv2d_impl("conv2d", x, w, b, stride, padding, dilation, groups);
}

qg_tensor *qg_conv1d(const qg_tensor *x, const qg_tensor *w, const qg_tensor *b, int stride,
                     int padding, int dilation, int groups) {
    char s1[128], s2[128];
    if (qg__check_same_float("conv1d", x, w)) return NULL;
    if (x->ndim == 2) { /* unbatched (C, L) */
        qg_tensor *y = qg_conv1d(qg_unsqueeze(x, 0), w, b, stride, padding, dilation, groups);
        return y ? qg_squeeze(y, 0) : NULL;
    }
    if (x->ndim != 3)
        return qg__err(QG_ESHAPE, "conv1d: expected 2-D (C, L) or 3-D (N, C, L) input, got %s",
                       qg_shape_str(x, s1, sizeof s1)), NULL;
    if (w->ndim != 3)
        return qg__err(QG_ESHAPE, "conv1d: expected 3-D weight (K, C/groups, k), got %s",
                       qg_shape_str(w, s1, sizeof s1)), NULL;
    if (stride <= 0 || dilation <= 0 || padding < 0)
        return qg__err(QG_EINVAL, "conv1d: need stride > 0, padding >= 0, dilation > 0, got %d, %d, %d",
                       stride, padding, dilation), NULL;
    if (groups > 0 && w->shape[1] * groups != x->shape[1])
        return qg__err(QG_ESHAPE, "conv1d: given groups=%d, weight %s expects input %s to have %lld channels, but it has %lld",
                       groups, qg_shape_str(w, s1, sizeof s1), qg_shape_str(x, s2, sizeof s2),
                       (long long)(w->shape[1] * groups), (long long)x->shape[1]), NULL;
    /* (N, C, L) -> (N, C, 1, L), (K, Cg, k) -> (K, Cg, 1, k) */
    int st[2] = {1, stride}, pd[2] = {0, padding}, dl[2] = {1, dilation};
    qg_tensor *x4 = qg_unsqueeze(x, 2), *w4 = qg_unsqueeze(w, 2);
    if (!x4 || !w4) return NULL;
    qg_tensor *y = conv2d_impl("conv1d", x4, w4, b, st, pd, dl, groups);
    return y ? qg_squeeze(y, 2) : NULL;
}
