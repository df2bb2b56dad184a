/* The int8 convolution's routes agree byte for byte. qat/qconv.c takes one of three
 * routes by the GEMM path and the geometry: the implicit channel-major kernel (VNNI
 * and AVX2, stride-1 width, C/G a multiple of 4), pixel-lane packed im2col rows (VNNI
 * and AVX2 otherwise) and qgemm + requantization + transposition (the AVX-512 BW and
 * scalar paths). test_int8_layers checks the default path against PyTorch; this sweeps
 * geometries PyTorch's fixtures do not reach (many channels per group with groups,
 * dilation, strides, odd widths around the 16-pixel block, 1-d, batches) under both
 * engines, with and without ReLU, per-tensor and per-channel weights, 8-bit and 7-bit
 * activations (AVX2's exact and plain multiply-adds), and checks every path the CPU
 * runs against the scalar one, at 1 and 2 threads (other chunkings). Also the
 * quantized 2x2 max pool's vector loop (rows of 8 outputs and a tail) against the
 * float pool of its integers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels/qgemm.h"
#include "test_util.h"

typedef struct {
    int dim, n, c, o, g, h, w, kh, kw, sh, sw, ph, pw, dh, dw;
} geo;

static const geo geos[] = {
    {2, 2, 32, 64, 1, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1}, /* the fmnist CNN's second conv */
    {2, 3, 1, 32, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1},  /* its first */
    {2, 1, 8, 12, 2, 9, 17, 3, 3, 1, 1, 2, 1, 2, 1},   /* groups of 4 channels, dilated rows */
    {2, 2, 16, 16, 4, 7, 33, 3, 2, 2, 1, 0, 1, 1, 2},  /* row stride, dilated width */
    {2, 1, 12, 5, 1, 11, 15, 1, 1, 1, 1, 0, 0, 1, 1},  /* 1x1: the direct im2col */
    {2, 2, 8, 9, 1, 10, 31, 3, 3, 2, 2, 1, 1, 1, 1},   /* strided: packed lanes */
    {2, 1, 6, 6, 3, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1},    /* C/G = 2 */
    {2, 1, 4, 20, 1, 5, 47, 5, 3, 1, 1, 2, 0, 1, 3},
    {2, 2, 1, 5, 1, 13, 21, 3, 3, 2, 1, 1, 0, 1, 2},   /* one channel, row stride, dilated width */
    {2, 1, 1, 6, 1, 12, 19, 3, 2, 1, 2, 1, 1, 2, 1},   /* one channel, strided width: packed lanes */
    {2, 2, 1, 9, 1, 11, 26, 2, 7, 1, 1, 1, 3, 1, 1},  /* one channel, 7 taps wide: two quads of them */
    {1, 2, 1, 4, 1, 1, 23, 1, 5, 1, 1, 0, 2, 1, 2},   /* Conv1d, one channel, dilated */
    {2, 2, 8, 40, 1, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1},   /* channel lanes (VNNI): 3 vectors, the last partial */
    {2, 1, 4, 80, 1, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1},    /* ... 5 vectors: two channel blocks */
    {2, 2, 32, 36, 2, 6, 7, 3, 3, 1, 1, 1, 1, 1, 1},   /* ... groups */
    {2, 3, 1, 20, 1, 7, 5, 3, 3, 2, 1, 1, 1, 1, 1},    /* ... one channel, row stride */
    {1, 3, 8, 7, 1, 1, 40, 1, 5, 1, 1, 0, 2, 1, 1},    /* Conv1d */
    {1, 1, 12, 6, 3, 1, 19, 1, 3, 1, 2, 0, 1, 1, 2},   /* Conv1d, strided, dilated, groups */
};

static uint64_t rs = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (uint32_t)(rs >> 16);
}

static qg_module *layer(const geo *e, bool per_channel, bool relu, qg_qengine engine) {
    const int64_t cg = e->c / e->g;
    qg_tensor *wf = e->dim == 2 ? qg_tensor_randn(NULL, QG_F32, 4, SHAPE(e->o, cg, e->kh, e->kw))
                                : qg_tensor_randn(NULL, QG_F32, 3, SHAPE(e->o, cg, e->kw));
    qg_tensor *w;
    if (per_channel) {
        qg_tensor *s = qg_tensor_full(QG_F32, 1, SHAPE(e->o), 0.0), *z = qg_tensor_full(QG_I32, 1, SHAPE(e->o), 0.0);
        for (int j = 0; j < e->o; j++) ((float *)qg_tensor_data(s))[j] = 0.004f + 0.003f * (float)(rnd() % 10);
        w = qg_quantize_per_channel(wf, s, z, 0, QG_QINT8);
        qg_tensor_free(s), qg_tensor_free(z);
    } else {
        w = qg_quantize_per_tensor(wf, 0.01, 0, QG_QINT8);
    }
    qg_tensor *b = qg_tensor_randn(NULL, QG_F32, 1, SHAPE(e->o));
    qg_qlayer_args a = {.dim = e->dim, .groups = e->g, .relu = relu};
    const int i = e->dim == 2 ? 0 : -1; /* Conv1d's settings are entry 0 */
    if (i == 0) a.stride[0] = e->sh, a.padding[0] = e->ph, a.dilation[0] = e->dh;
    a.stride[i + 1] = e->sw, a.padding[i + 1] = e->pw, a.dilation[i + 1] = e->dw;
    qg_module *m = qg_quantized_layer_new(w, b, 0.03 + 0.01 * (rnd() % 5), (int64_t)(rnd() % 40), &a, engine);
    qg_tensor_free(wf), qg_tensor_free(b);
    return m;
}

static void check_max_pool(void) {
    static const int64_t shapes[][4] = {{2, 3, 28, 28}, {1, 2, 9, 13}, {1, 4, 20, 37}, {3, 1, 2, 16}, {1, 2, 6, 7}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        qg_tensor *xf = qg_tensor_randn(NULL, QG_F32, 4, shapes[i]);
        qg_tensor *x = qg_quantize_per_tensor(xf, 0.01, 128, QG_QUINT8);
        const int k2[2] = {2, 2};
        qg_tensor *y = qg_int_repr(qg_max_pool2d(x, k2, k2, NULL, NULL, false));
        qg_tensor *ref = qg_max_pool2d(qg_to_dtype(qg_int_repr(x), QG_F32), k2, k2, NULL, NULL, false);
        CHECK_TENSOR(qg_to_dtype(y, QG_F32), ref, TST_EXACT, "quint8 max pool 2x2 on shape %zu", i);
        qg_tensor_free(xf);
        qg_tape_reset(NULL);
    }
}

int main(void) {
    qg__qpath paths[QG__QPATH_COUNT];
    int npaths = 0;
    for (int p = 0; p < QG__QPATH_COUNT; p++)
        if (qg__qpath_supported((qg__qpath)p)) paths[npaths++] = (qg__qpath)p;
    qg_manual_seed(7);
    int64_t cases = 0, bytes = 0;
    bool prev = qg_set_grad_enabled(false);
    for (size_t gi = 0; gi < sizeof geos / sizeof *geos; gi++)
        for (int v = 0; v < 16; v++) {
            const geo *e = &geos[gi];
            const bool pc = v & 1, relu = v & 2, small = v & 8;
            const qg_qengine eng = v & 4 ? QG_QENGINE_QNNPACK : QG_QENGINE_ONEDNN;
            qg_module *m = layer(e, pc, relu, eng);
            qg_tensor *xf = e->dim == 2 ? qg_tensor_randn(NULL, QG_F32, 4, SHAPE(e->n, e->c, e->h, e->w))
                                        : qg_tensor_randn(NULL, QG_F32, 3, SHAPE(e->n, e->c, e->w));
            qg_tensor *x = qg_quantize_per_tensor(xf, 0.02, (int64_t)(rnd() % 256), QG_QUINT8);
            qg_tensor_free(xf);
            CHECK(m && x, "geometry %zu: %s", gi, qg_last_error());
            if (!m || !x) continue;
            if (small) /* 7-bit activations (reduce_range): vpmaddubsw's plain form */
                for (int64_t i = 0; i < qg_tensor_numel(x); i++) ((uint8_t *)qg_tensor_data(x))[i] &= 0x7f;
            qg__qgemm_set_path(QG__QPATH_SCALAR);
            qg_set_num_threads(1);
            qg_tensor *ref = qg_tensor_clone(qg_module_forward(m, x));
            CHECK(ref != NULL, "geometry %zu: %s", gi, qg_last_error());
            /* 2-d: also the convolution with the 2 x 2 max pool after it in a Sequential,
             * pooled in the kernel's epilogue where the route allows, against the two
             * modules one after the other on the scalar path */
            qg_module *seq = NULL;
            qg_tensor *pref = NULL;
            if (e->dim == 2 && ref) {
                const int k2[2] = {2, 2};
                pref = qg_tensor_clone(qg_max_pool2d(qg_module_forward(m, x), k2, k2, NULL, NULL, false));
                seq = qg_sequential_new();
                qg_sequential_add(seq, "conv", m);
                qg_sequential_add(seq, "relu", qg_nn_identity_new()); /* as convert leaves a fused ReLU */
                qg_sequential_add(seq, "pool", qg_nn_maxpool2d_new(2, 2, NULL));
                CHECK(pref && !qg_sequential_status(seq), "geometry %zu: %s", gi, qg_last_error());
            }
            for (int pi = 0; ref && pi < npaths; pi++)
                for (int t = 1; t <= 2; t++) {
                    qg__qgemm_set_path(paths[pi]);
                    qg_set_num_threads(t);
                    const char *en = qg_qengine_name(eng), *pcn = pc ? "per channel" : "per tensor";
                    const char *pn = qg__qpath_name(paths[pi]);
                    qg_tensor *y = qg_module_forward(m, x);
                    const int64_t nb = qg_tensor_numel(ref);
                    bool same = y && qg_tensor_numel(y) == nb &&
                                !memcmp(qg_tensor_data(y), qg_tensor_data(ref), (size_t)nb);
                    CHECK(same, "geometry %zu (%s, %s, relu %d, 7-bit %d): path %s at %d threads differs from scalar",
                          gi, en, pcn, relu, small, pn, t);
                    cases++, bytes += nb;
                    if (!pref) continue;
                    y = qg_module_forward(seq, x);
                    const int64_t np = qg_tensor_numel(pref);
                    same = y && y->ndim == pref->ndim && !memcmp(y->shape, pref->shape, sizeof(int64_t) * 4) &&
                           !memcmp(qg_tensor_data(y), qg_tensor_data(pref), (size_t)np);
                    CHECK(same, "geometry %zu (%s, %s, relu %d, 7-bit %d): conv + pool on path %s at %d threads "
                          "differs from the modules in turn", gi, en, pcn, relu, small, pn, t);
                    cases++, bytes += np;
                }
            qg_tensor_free(ref), qg_tensor_free(pref);
            qg_module_free(seq ? seq : m);
            qg_tape_reset(NULL);
        }
    check_max_pool();
    qg_set_grad_enabled(prev);
    qg__qgemm_set_path(QG__QPATH_SCALAR);
    printf("%lld runs on %d paths (%lld output bytes), each equal to the scalar path's\n", (long long)cases, npaths,
           (long long)bytes);
    qg_shutdown();
    return test_summary("qconv");
}
