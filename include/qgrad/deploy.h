/* qgrad/deploy.h — an int8 model (qgrad/quant.h) exported for deployment: as ONNX in
 * the QDQ format, which inference runtimes read (qg_export_onnx), and as a standalone C
 * model with no runtime at all (qg_export_c), for microcontrollers and embedded boards.
 *
 * Exports take what qg_convert makes: a Sequential tree of Quantize, DeQuantize, the
 * quantized Linear and Conv1d/2d (and their ReLU fusions), the dynamic Linear, ReLU,
 * MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout and Identity, taking f32
 * and giving f32 (a Quantize first, a DeQuantize last). The model is run once on one
 * sample of the given shape to find every shape and quantization. A module with no
 * export form is an error naming its path and type, and no file is written.
 *
 * ```c
 * // model: converted (qg_convert) from the Fashion-MNIST CNN, input (1, 28, 28)
 * qg_export_opts eo = {.ndim = 3, .shape = {1, 28, 28}};
 * qg_export_info info;
 * if (qg_export_c(model, "out", "fmnist_model", &eo, &info))
 *     fprintf(stderr, "%s\n", qg_last_error());
 * else
 *     printf("%zu bytes of constants, %zu of scratch\n", info.const_bytes, info.scratch_bytes);
 * ```
 */
#ifndef QGRAD_DEPLOY_H
#define QGRAD_DEPLOY_H

#include "qgrad/export.h"

#include "qgrad/autograd.h"
#include "qgrad/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qg_export_opts {
    int ndim;                        /* of one sample's input, without the batch dimension */
    int64_t shape[QG_MAX_DIMS - 1];  /* its sizes, e.g. {1, 28, 28} */
    const char *input_name;          /* ONNX: the graph's input and output; NULL: "input", "output" */
    const char *output_name;
} qg_export_opts;

/* What an export wrote: every figure is of one sample. */
typedef struct qg_export_info {
    int64_t in_size, out_size; /* floats in and out */
    size_t weight_bytes;       /* the int8 weights */
    size_t const_bytes;        /* every constant of the generated model, weights included (flash, beside the code) */
    size_t code_bytes;         /* its code, estimated for x86-64 gcc -Os (`size` tells for a target) */
    size_t scratch_bytes;      /* the scratch buffer NAME_run takes (RAM) */
    int nsteps;                /* the modules that compute (Flatten, Dropout and Identity do not) */
} qg_export_info;

/* Writes dir/NAME.h and dir/NAME.c: C99 with no malloc, no libm and no qgrad, which
 * computes what the int8 model computes, bit for bit (the scalar form of qgrad's
 * integer arithmetic, docs/int8.md), on one sample per call:
 *
 *     int NAME_run(const float *in, float *out, void *scratch);
 *
 * in: NAME_IN_SIZE floats (one sample, C order), out: NAME_OUT_SIZE floats, scratch:
 * NAME_SCRATCH_BYTES bytes aligned for a float (NAME_scratch_t is such a type).
 * Returns 0, -1 for a NULL argument, or -2 when a dynamic Linear's input has an
 * infinite minimum or maximum or a NaN first value (where qgrad's refuses it). NAME is
 * a C identifier; the weights are static const arrays, the scales and requantization
 * constants hexadecimal floats. NAME.h's top comment gives the model, its layers and
 * the flash and RAM it takes. Each file is written whole or not at all (if the second
 * cannot be renamed into place, the first is removed again). info (may be NULL) gets
 * the figures. NAME.c refuses, with #error, compilers whose floats are not IEEE single
 * precision evaluated as such, and -ffast-math; it turns FMA contraction off (not
 * under clang's -ffp-contract=fast, nor -fassociative-math: do not use those). The dynamic Linear quantizes
 * each call's input by its own range, as qgrad's does per batch: its outputs are qgrad's
 * for a batch of one. The pools compute as under the quantized engine current at the
 * call (qg_set_qengine), as the model's own pools would. */
QG_API qg_status qg_export_c(qg_module *model, const char *dir, const char *name, const qg_export_opts *o,
                             qg_export_info *info);

/* Writes the model to path as ONNX (opset 13, IR version 7) in the QDQ format: each
 * quantized activation a QuantizeLinear/DequantizeLinear pair (uint8, the module's
 * scale and zero point) around float Conv, Gemm (MatMul and Add for inputs of more
 * than 2 dimensions), Relu, MaxPool, AveragePool, GlobalAveragePool and Reshape
 * nodes. Weights are int8 initializers behind a DequantizeLinear (per-channel scales on
 * axis 0), biases int32 with scale s_x * s_w[c] and zero point 0, as ONNX Runtime's
 * QLinear fusions expect (for onednn, sub-8-bit weights are stored times 2^k with
 * scales over 2^k, the same reals, so that the int32 bias is finer). The graph's own
 * tensors are named "qg.*". The input and output are f32 and take the names of o (their
 * first dimension is the dynamic "batch"). A runtime computes each layer in its own
 * integer arithmetic, so outputs may differ from qgrad's by a rounding (1 LSB) here and
 * there (none for a model converted for qnnpack in ONNX Runtime: docs/deploy.md).
 * The model's Quantize is a Mul by F(1/s) and a QuantizeLinear of scale 1, PyTorch's
 * order. The dynamic Linear is written in standard operators (ReduceMin/ReduceMax,
 * PyTorch's range rule in double, the engine's input rounding, MatMulInteger and its
 * float epilogue), which a runtime computes bit for bit; like PyTorch's, its input
 * range is over the whole input, batch included. Modules with no ONNX form (an
 * AvgPool2d with divisor_override or with a ceil-mode window past its padding that counts the padding, an
 * AdaptiveAvgPool2d whose windows differ in size, a Conv or pool on an unbatched
 * input) are errors naming their path and type, as for qg_export_c, and nothing is
 * written. The file is written whole or not at all. Needs a build with ONNX (meson
 * -Donnx=enabled; Debian's libonnx-dev, protobuf-c-compiler, libprotobuf-c-dev):
 * otherwise it fails saying so. */
QG_API qg_status qg_export_onnx(qg_module *model, const char *path, const qg_export_opts *o);

#ifdef __cplusplus
}
#endif
#endif
