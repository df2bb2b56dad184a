/* qgrad/quant.h — int8 models: PyTorch's eager convert from a trained QAT model, the
 * quantized modules it makes, and their integer kernels.
 *
 * A converted model takes float input at its Quantize module (the former QuantStub),
 * runs quantized tensors (qgrad/autograd.h, "quantized tensors") through its int8
 * layers, and gives float output at its DeQuantize. The arithmetic reproduces PyTorch
 * 1.13's converted modules under either quantized engine, onednn (PyTorch's x86
 * default) or qnnpack, bit for bit where docs/int8.md says so.
 *
 * ```c
 * // model: prepared (qg_prepare_qat) and trained; x: f32 input
 * qg_module_eval(model);
 * if (qg_convert(model, NULL)) fprintf(stderr, "%s\n", qg_last_error());
 * qg_tensor *logits = qg_module_forward(model, x);   // float in (Quantize), float out (DeQuantize)
 * char shape[64];
 * printf("logits %s\n", qg_shape_str(logits, shape, sizeof shape));
 * ```
 */
#ifndef QGRAD_QUANT_H
#define QGRAD_QUANT_H

#include "qgrad/export.h"

#include "qgrad/autograd.h"
#include "qgrad/nn.h"
#include "qgrad/qat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* qg_qengine, qg_set_qengine: autograd.h. */
QG_API const char *qg_qengine_name(qg_qengine e); /* "onednn", "qnnpack" */

/* ======================================================== convert
 * PyTorch's torch.ao.quantization.convert, in place. Each module is replaced by its
 * quantized type, named as PyTorch names them:
 *   QuantStub -> "quantized.Quantize" (scale and zero point from its observer),
 *   DeQuantStub -> "quantized.DeQuantize",
 *   qat.Linear, intrinsic.qat.LinearBn1d -> "quantized.Linear" (BN folded),
 *   intrinsic.qat.LinearReLU -> "intrinsic.quantized.LinearReLU",
 *   qat.Conv1d/2d, intrinsic.qat.ConvBn1d/2d -> "quantized.Conv1d/2d" (BN folded),
 *   intrinsic.qat.ConvReLU1d/2d, ConvBnReLU1d/2d -> "intrinsic.quantized.ConvReLU1d/2d",
 *   qat.dynamic.Linear -> "quantized.dynamic.Linear" (float in and out).
 * ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout and Identity stay,
 * and compute on quantized tensors. As in PyTorch, the weight fake-quant runs once
 * more on the (folded) float weight, its observer gives the int8 weight's per-tensor
 * or per-channel scales and zero points (the observer's calculate_qparams), and the
 * weight is clamped to the observer's range (4-bit and 2-bit ranges included); the bias
 * stays float. The output scale and zero point come from the module's
 * activation_post_process.
 *
 * The model must be prepared (qg_prepare_qat), have observed data (training or
 * calibration) and be in eval mode. Errors — an untrained model (an activation
 * observer that never ran), training mode, a model with nothing to convert (no
 * qconfig was applied), a model converted already, an activation dtype the int8
 * kernels do not take — name the module's path and leave the model unchanged. */

/* A custom module type's own convert (PyTorch's convert_custom_config): given the
 * prepared module, return its quantized replacement (a new module), or NULL with an
 * error. m is left to convert, which frees it after the swap. convert does not enter
 * m: the hook converts m's QAT children and stubs itself, with qg_convert_module
 * (examples/custom_model.c). */
typedef qg_module *(*qg_convert_fn)(qg_module *m, qg_qengine engine, void *ctx);
typedef struct qg_convert_custom {
    const char *type_name; /* modules whose type has this name */
    qg_convert_fn convert;
    void *ctx;
} qg_convert_custom;

typedef struct qg_convert_opts {
    qg_qengine engine;                 /* the engine whose arithmetic the int8 layers use */
    int ncustom;
    const qg_convert_custom *custom;   /* ncustom entries */
} qg_convert_opts;

/* o NULL: the current engine (qg_get_qengine), no custom modules. */
QG_API qg_status qg_convert(qg_module *model, const qg_convert_opts *o);

/* The replacement convert makes for one module (PyTorch's from_float), for custom
 * hooks, so that they need not rebuild it: m a QAT module, QuantStub or DeQuantStub,
 * observed and in eval mode, as convert checks. The new module is the caller's; m stays
 * in place, but, as in convert, its weight fake-quant has run once more. NULL with an
 * error naming m's path and type, and what was expected, otherwise. */
QG_API qg_module *qg_convert_module(qg_module *m, qg_qengine engine);

/* ======================================================== quantized modules
 * Constructors of the modules convert makes, for custom convert hooks and loaders. The
 * modules copy what they are given (weights are packed once, here) and have PyTorch's
 * buffer names: weight (the quantized weight), bias (f32, may be absent), scale and
 * zero_point (the output's). Changing a buffer afterwards does not change the packed
 * weights: build a new module instead. Inputs are checked: a quantized module given
 * the wrong dtype, a per-channel input, or the wrong shape fails with a message naming
 * the module. */

/* "quantized.Quantize": f32 in, per-tensor quantized out. */
QG_API qg_module *qg_quantized_quantize_new(double scale, int64_t zero_point, qg_qdtype dtype);
/* "quantized.DeQuantize": quantized in, f32 out. */
QG_API qg_module *qg_quantized_dequantize_new(void);

/* The geometry of a quantized Linear or Conv. */
typedef struct qg_qlayer_args {
    int dim;          /* 0 Linear, 1 Conv1d, 2 Conv2d */
    int stride[2], padding[2], dilation[2]; /* conv: (h, w), 1-d uses [0]; 0 entries in stride/dilation = 1 */
    int groups;       /* conv: 0 = 1 */
    bool relu;        /* the intrinsic ReLU fusion */
} qg_qlayer_args;

/* Static Linear / Conv: weight is a qint8 tensor, per tensor or per channel along
 * dim 0, shaped (out, in) for Linear, (out, in/groups, k) or (out, in/groups, kh, kw)
 * for Conv1d/2d; its zero points must be 0 (what both engines require). bias: f32
 * (out) or NULL. Input: quint8 (N, ..., in) for Linear, (N, C, L) / (N, C, H, W) (or
 * without N) for Conv; output: quint8 with scale, zero_point. */
QG_API qg_module *qg_quantized_layer_new(const qg_tensor *weight, const qg_tensor *bias, double scale,
                                         int64_t zero_point, const qg_qlayer_args *args, qg_qengine engine);
/* "quantized.dynamic.Linear": f32 in, f32 out; the input is quantized per call with
 * its own min and max (qnnpack: [0, 255]; onednn: [0, 127] with reduce_range). */
QG_API qg_module *qg_quantized_dynamic_linear_new(const qg_tensor *weight, const qg_tensor *bias,
                                                  bool reduce_range, qg_qengine engine);

/* ======================================================== int8 model files
 * A converted model (a Sequential tree of the quantized modules, ReLU, the pools,
 * Flatten, Dropout and Identity) as safetensors: each layer's int8 weight (PyTorch's
 * name, the integers) with weight.scale and weight.zero_point (one per tensor or per
 * output channel), its float bias, and the output scale and zero_point; the metadata
 * records the module types, their settings and the qengine. qg_quantized_load rebuilds
 * the model from the file alone (no training code, no float model): the same outputs
 * bit for bit. Files are written atomically; a corrupt, truncated or inconsistent file
 * gives NULL and a message naming the file and the module, and nothing is left built. */
QG_API qg_status qg_quantized_save(const qg_module *model, const char *path);
QG_API qg_module *qg_quantized_load(const char *path);

#ifdef __cplusplus
}
#endif
#endif
