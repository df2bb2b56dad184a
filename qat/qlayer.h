/* Private to quantized.c and qconv.c: the static and dynamic int8 Linear/Conv module
 * (qlayer), its scratch buffers, and what the convolution file takes from the layer
 * file (the requantization) and gives back (the packed weights, the forward). */
#ifndef QGRAD_QLAYER_H
#define QGRAD_QLAYER_H

#include "kernels/qgemm.h"
#include "qgrad/quant.h"

/* A scratch buffer, grown on demand and kept. */
typedef struct {
    void *p;
    size_t cap;
} qg__qbuf;

/* At least n bytes, or NULL with an error naming who. */
void *qg__qbuf_get(qg__qbuf *b, size_t n, const char *who);

typedef struct {
    qg_module base;
    qg_qlayer_args a;
    bool dynamic, reduce_range;
    qg_qengine engine;
    int64_t in, out, G, og, kh, kw, kdim; /* kdim = in/G * kh * kw, a weight row */
    int sh, sw, ph, pw, dh, dw;
    qg__qpack **pack;                     /* G packs of og rows; conv rows in (kh, kw, in/G) order */
    qg__qpack *xpack; /* a single-channel conv, stride-1 width: its taps as channels (qconv.c) */
    int64_t xq;       /* ... and their quads, ceil(kw / 4) */
    float *wscale;                        /* (out) the weight's scales */
    float *bias;                          /* (out), zeros without a bias */
    bool has_bias;
    double oscale;
    int64_t ozp;
    /* requantization for the input scale last seen */
    bool cached;
    double cache_sx;
    float *mult, *badd; /* (out) onednn: M, b'; qnnpack: M (bias in ibias); dynamic: its own (dynamic_forward) */
    int32_t *ibias;     /* (out) qnnpack: the bias quantized to int32 */
    /* scratch, grown on demand and kept: no allocation per call once warm */
    qg__qbuf cols, acc, img;
} qg__qlayer;

/* quantized.c: the requantization constants (kernels/qgemm.h) of the layer's output
 * channels from c0 on, for the input scale last seen. */
void qg__qlayer_rq(const qg__qlayer *q, int64_t c0, qg__requant *k);

/* qconv.c: the G weight packs from w (out, in/G, [kh,] kw) int8, contiguous; the
 * convolution of x (a contiguous per-tensor quint8 input, checked) into a new tape
 * tensor, the requantization constants already set for x's scale. pool: NULL, or a
 * MaxPool2d of kernel and stride 2 (no padding or dilation, floor mode) that follows
 * the 2-d convolution, whose output is then returned: pooled in the kernel's epilogue
 * where the route allows, else by the module. */
qg_status qg__qconv_pack(qg__qlayer *q, const int8_t *w);
qg_tensor *qg__qconv_forward(qg__qlayer *q, qg_tensor *x, qg_module *pool);

#endif
