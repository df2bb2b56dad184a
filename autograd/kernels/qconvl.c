/* The channel-lane int8 convolution kernel (qgemm.h, qg__qconv_cl), VNNI only: a zmm
 * holds 16 output channels of one pixel, the pixel's k-quad broadcast (the u8 operand
 * of vpdpbusd) and 16 channels' quads of weights loaded as they lie in the pack (the s8
 * operand). Pixels come as addresses, so a tile of 4 may be any 4: a row's tail costs
 * no idle lanes, as it does in the channel-major kernel (qconvk.c) when a row is not a
 * multiple of 16 pixels wide, and a 2 x 2 pooling window is one tile, pooled in
 * registers. The sums start at -(za wsum) (plus qnnpack's int32 bias), exact and
 * wrapping as qgemm's, and the requantization is qg__rq16c's, so the bytes are those
 * of qg__qgemm + qg__qrequant: tests/test_qconv.c checks it against the scalar path. */
#include <string.h>

#include "internal.h"
#include "kernels/qgemm.h"

#if defined(__x86_64__)
#include "kernels/qx86.h"

#define QG_TVNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define CL_NV 4 /* channel vectors a tile: 64 channels x 4 pixels, 16 accumulators */

typedef struct {
    const uint8_t *const *px;
    const int64_t *dpx;
    const int64_t *off;
    const qg__qpack *p;
    uint8_t *out;
    int64_t ldo;
    bool pool;
} cl_job;

static inline int32_t cl_quad(const uint8_t *a) {
    int32_t v;
    memcpy(&v, a, 4);
    return v;
}

/* The current channel block's constants, copied where a tile loop keeps them in
 * registers: its byte stores may alias anything in memory. */
typedef struct {
    __m512i zw[CL_NV];
    __m512 mult[CL_NV], badd[CL_NV];
    qg__rqc r;
} cl_cst;

/* Tile i's 4 pixels. */
static inline void cl_pixels(const cl_job *g, int64_t i, const uint8_t **a) {
    for (int u = 0; u < 4; u++) a[u] = g->dpx ? g->px[i] + g->dpx[u] : g->px[4 * i + u];
}

/* The sums of channel vectors jb..jb+nv x the pixels of tiles i..i+nt -> acc[v np + u]
 * (np = 4 nt pixels), from zw; quad q's weights at w + (v kq + q) 64, or with kqc (kq
 * a constant) in wr[q nv + v]. */
QG_TVNNI __attribute__((always_inline)) static inline void cl_dot(const int nv, const int nt, const int kqc,
                                                                   const cl_job *g, const __m512i *zw,
                                                                   const __m512i *wr, const int8_t *w, int64_t i,
                                                                   __m512i *out) {
    const int64_t kq = kqc ? kqc : g->p->kp / 4, *off = g->off;
    const int np = 4 * nt;
    const uint8_t *a[8];
    for (int t = 0; t < nt; t++) cl_pixels(g, i + t, a + 4 * t);
    __m512i acc[16];
#pragma GCC unroll 16
    for (int x = 0; x < nv * np; x++) acc[x] = zw[x / np];
#pragma GCC unroll 4
    for (int64_t q = 0; q < kq; q++) {
        __m512i wv[CL_NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) wv[v] = kqc ? wr[q * nv + v] : _mm512_loadu_si512(w + (v * kq + q) * 64);
        const int64_t o = off[q];
#pragma GCC unroll 8
        for (int u = 0; u < np; u++) {
            const __m512i b = _mm512_set1_epi32(cl_quad(a[u] + o));
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[np * v + u] = _mm512_dpbusd_epi32(acc[np * v + u], b, wv[v]);
        }
    }
#pragma GCC unroll 16
    for (int x = 0; x < nv * np; x++) out[x] = acc[x];
}

/* Tiles i..i+nt's output rows (4 a tile, or pooled one), channels 16 jb on. */
QG_TVNNI __attribute__((always_inline)) static inline void cl_store(const int nv, const int nt, const cl_job *g,
                                                                     const cl_cst *c, int64_t jb, int64_t i,
                                                                     const __m512i *acc) {
    const int64_t ldo = g->ldo;
    const int np = 4 * nt;
#pragma GCC unroll 2
    for (int t = 0; t < nt; t++) {
        const __m512i *at = acc + 4 * t;
        if (g->pool) {
            uint8_t *o = g->out + (i + t) * ldo + jb * 16;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                const __m512i m = _mm512_max_epi32(_mm512_max_epi32(at[np * v], at[np * v + 1]),
                                                   _mm512_max_epi32(at[np * v + 2], at[np * v + 3]));
                const __m512i r = qg__rq16c(&c->r, m, c->mult[v], c->badd[v]);
                _mm_storeu_si128((__m128i *)(void *)(o + 16 * v), _mm512_cvtusepi32_epi8(r));
            }
            continue;
        }
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            uint8_t *o = g->out + (4 * (i + t) + u) * ldo + jb * 16;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                const __m512i r = qg__rq16c(&c->r, at[np * v + u], c->mult[v], c->badd[v]);
                _mm_storeu_si128((__m128i *)(void *)(o + 16 * v), _mm512_cvtusepi32_epi8(r));
            }
        }
    }
}

/* A function per tile width, its sums apart from its stores (as in qconvk.c), and a
 * loop over the tiles of one channel block with its constants (and a 3 x 3
 * single-channel layer's 3 quads of weights: kp 12) in locals. Up to 2 channel
 * vectors, two tiles at a time: 16 accumulators. */
#define CL_DEF(NV_)                                                                                           \
    QG_TVNNI __attribute__((noinline)) static void cl_dot_##NV_(const cl_job *g, const __m512i *zw,           \
                                                                const int8_t *w, int64_t i, __m512i *acc) {   \
        cl_dot(NV_, 1, 0, g, zw, NULL, w, i, acc);                                                             \
    }                                                                                                          \
    QG_TVNNI static void cl_tiles_##NV_(const cl_job *g, const cl_cst *cst, int64_t jb, int64_t ntile) {       \
        const cl_cst c = *cst;                                                                                 \
        const int8_t *w = g->p->data + jb * (g->p->kp / 4) * 64;                                               \
        __m512i acc[16];                                                                                       \
        if (g->p->kp == 12) {                                                                                  \
            enum { NT = NV_ <= 2 ? 2 : 1 };                                                                    \
            __m512i wr[3 * NV_];                                                                               \
            for (int q = 0; q < 3; q++)                                                                        \
                for (int v = 0; v < NV_; v++) wr[q * NV_ + v] = _mm512_loadu_si512(w + (v * 3 + q) * 64);     \
            int64_t i = 0;                                                                                     \
            for (; i + NT <= ntile; i += NT) {                                                                 \
                cl_dot(NV_, NT, 3, g, c.zw, wr, w, i, acc);                                                    \
                cl_store(NV_, NT, g, &c, jb, i, acc);                                                          \
            }                                                                                                  \
            for (; i < ntile; i++) {                                                                           \
                cl_dot(NV_, 1, 3, g, c.zw, wr, w, i, acc);                                                     \
                cl_store(NV_, 1, g, &c, jb, i, acc);                                                           \
            }                                                                                                  \
            return;                                                                                            \
        }                                                                                                      \
        for (int64_t i = 0; i < ntile; i++) {                                                                  \
            cl_dot_##NV_(g, c.zw, w, i, acc);                                                                  \
            cl_store(NV_, 1, g, &c, jb, i, acc);                                                               \
        }                                                                                                      \
    }
CL_DEF(1) CL_DEF(2) CL_DEF(3) CL_DEF(4)

QG_TVNNI static void cl_run(cl_job *g, const qg__requant *k, int32_t za, int64_t ntile) {
    const qg__qpack *p = g->p;
    const int64_t nb = p->np / 16;
    cl_cst c;
    qg__rqc_of(k, &c.r);
    for (int64_t jb = 0; jb < nb; jb += CL_NV) {
        const int nv = (int)(nb - jb < CL_NV ? nb - jb : CL_NV);
        for (int v = 0; v < nv; v++) { /* channels c0.. c0 + 16, those past n masked */
            const int64_t c0 = (jb + v) * 16, left = p->n - c0;
            const __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            const __m512i zws = _mm512_mullo_epi32(_mm512_set1_epi32(za), _mm512_loadu_si512(p->wsum + c0));
            const __m512i ib = k->onednn ? _mm512_setzero_si512() : _mm512_maskz_loadu_epi32(m, k->ibias + c0);
            c.zw[v] = _mm512_sub_epi32(ib, zws);
            c.mult[v] = _mm512_maskz_loadu_ps(m, k->mult + c0);
            c.badd[v] = k->onednn ? _mm512_maskz_loadu_ps(m, k->badd + c0) : _mm512_setzero_ps();
        }
        switch (nv) {
        case 1: cl_tiles_1(g, &c, jb, ntile); break;
        case 2: cl_tiles_2(g, &c, jb, ntile); break;
        case 3: cl_tiles_3(g, &c, jb, ntile); break;
        default: cl_tiles_4(g, &c, jb, ntile); break;
        }
    }
}
#endif

bool qg__qconv_cl_supported(void) {
#if defined(__x86_64__)
    return qg__qgemm_path() == QG__QPATH_VNNI;
#else
    return false;
#endif
}

void qg__qconv_cl(int64_t ntile, const uint8_t *const *px, const int64_t *dpx, const int64_t *off, int32_t za,
                  const qg__qpack *p, const qg__requant *k, uint8_t *out, int64_t ldo, bool pool) {
#if defined(__x86_64__)
    if (ntile <= 0 || !p || p->n <= 0 || !qg__qconv_cl_supported()) return;
    cl_job g = {.px = px, .dpx = dpx, .off = off, .p = p, .out = out, .ldo = ldo, .pool = pool};
    cl_run(&g, k, za, ntile);
#else /* never called: qg__qconv_cl_supported() is false */
    (void)ntile, (void)px, (void)dpx, (void)off, (void)za, (void)p, (void)k, (void)out, (void)ldo, (void)pool;
#endif
}
