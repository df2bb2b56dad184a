/* qgrad/qat.h — quantization-aware training: fake-quantize ops with straight-through
 * gradients, quantization-parameter math, observers, fake-quantize modules, qconfigs,
 * the QAT module family of torch.ao.nn.qat / nn.intrinsic.qat, and fuse/prepare.
 * Numerics follow PyTorch 1.13 (docs/quantization.md in the repository). */
#ifndef QGRAD_QAT_H
#define QGRAD_QAT_H

#include "qgrad/export.h"

#include "qgrad/autograd.h"
#include "qgrad/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================== schemes
 * qg_qscheme and qg_qdtype are autograd.h's (quantized tensors use them). */

static inline bool qg_qscheme_is_per_channel(qg_qscheme s) {
    return s == QG_PER_CHANNEL_AFFINE || s == QG_PER_CHANNEL_SYMMETRIC;
}
static inline bool qg_qscheme_is_symmetric(qg_qscheme s) {
    return s == QG_PER_TENSOR_SYMMETRIC || s == QG_PER_CHANNEL_SYMMETRIC;
}

/* ======================================================== fake-quantize ops
 * y = (clamp(nearbyint(x * (1/scale)) + zero_point, qmin, qmax) - zero_point) * scale,
 * rounding half to even, multiplying by the float reciprocal as PyTorch does.
 * Gradient (straight-through estimator): dx = dy where qmin <= q <= qmax, else 0.
 * Per-channel: scale (C) f32 and zero_point (C) i32 (or f32) along dim axis of x.
 * f32 and f64 x of any strides; the output is contiguous. As in PyTorch: scale is used
 * as a float (no check: 0 or negative scales compute what PyTorch computes); an
 * integer zero point outside [qmin, qmax] and qmin > qmax are errors; an element whose
 * q is NaN or beyond int64 (x = +-inf, NaN, huge) gives (qmin - zp) * scale, mask 0 (x86
 * PyTorch). A floating zero point (per channel) is added before rounding,
 * q = lrintf(fma(x, inv, zp)), and is not range checked. Ranges must lie in int32. */
QG_API qg_tensor *qg_fake_quantize_per_tensor(const qg_tensor *x, double scale, int64_t zero_point,
                                       int64_t qmin, int64_t qmax);
QG_API qg_tensor *qg_fake_quantize_per_channel(const qg_tensor *x, const qg_tensor *scale,
                                        const qg_tensor *zero_point, int axis, int64_t qmin,
                                        int64_t qmax);
/* Learnable (LSQ, PyTorch's _fake_quantize_learnable_*): scale and zero_point are f32
 * tensors ((1) per tensor, (C) per channel) that receive gradients; the forward uses
 * zero_point clamp(nearbyint(zp), qmin, qmax). grad_factor multiplies the scale and
 * zero-point gradients (1/sqrt(numel(x) * qmax) for LSQ's grad scaling).
 * The backward follows PyTorch's kernels term by term (qat/ops/fake_quant.c), including its
 * backward zero point (per tensor trunc(clamp(zp + 0.5)), so 2.5 -> 3 while the forward
 * uses 2); the scale/zero-point sums run in double (PyTorch: float). f64 x works (scale
 * and zero_point may be f64 too; they are read as float, as PyTorch reads them). With a
 * gradient to compute, the range must include 0 (PyTorch's backward fails otherwise). */
QG_API qg_tensor *qg_fake_quantize_learnable_per_tensor(const qg_tensor *x, const qg_tensor *scale,
                                                 const qg_tensor *zero_point, int64_t qmin,
                                                 int64_t qmax, double grad_factor);
QG_API qg_tensor *qg_fake_quantize_learnable_per_channel(const qg_tensor *x, const qg_tensor *scale,
                                                  const qg_tensor *zero_point, int axis,
                                                  int64_t qmin, int64_t qmax, double grad_factor);

/* ======================================================== quantization parameters
 * Two formulas, both needed (docs/quantization.md):
 *  A. an observer's calculate_qparams (FakeQuantize, convert);
 *  B. ChooseQuantizationParams of the fused kernel (FusedMovingAvgObsFakeQuantize).
 * n entries (1 per tensor, C per channel) of min/max in, scale/zero_point out.
 * A: dtype and custom_range give the symmetric zero point: 0 for qint8; for quint8 128, or
 * with a custom range (the observer was given quant_min/quant_max, has_customized_qrange)
 * (qmin + qmax) // 2 (floor). Never observed — n == 0 (a per-channel observer's empty
 * buffers) or, per tensor, min +inf with max -inf — writes scale[0] = 1, zero_point[0] = 0
 * as PyTorch returns tensor([1.]), tensor([0]) (so the arrays need room for 1 entry).
 * Both: min > max, NaN or another non-finite min/max is QG_EINVAL (message names the
 * channel); so are qmin >= qmax and ranges beyond int32. B also fails (QG_EINVAL) where
 * PyTorch's "quantization scale should be > 0" does (a symmetric [0, 1] range), and for
 * qmax - qmin > INT32_MAX (PyTorch's int arithmetic overflows). */
QG_API qg_status qg_qparams_observer(int64_t n, const float *min_val, const float *max_val,
                              qg_qscheme scheme, qg_qdtype dtype, bool custom_range, int64_t qmin,
                              int64_t qmax, float eps, float *scale, int32_t *zero_point);
QG_API qg_status qg_qparams_choose(int64_t n, const float *min_val, const float *max_val,
                            bool symmetric, int64_t qmin, int64_t qmax, float *scale,
                            int32_t *zero_point);
/* The (qmin, qmax) of a dtype, halved by reduce_range; a custom range when
 * custom_min < custom_max (halved as qmin//2, qmax//2 with reduce_range). */
QG_API void qg_quant_range(qg_qdtype dtype, bool reduce_range, int64_t custom_min, int64_t custom_max,
                    int64_t *qmin, int64_t *qmax);

/* ======================================================== fused observe + fake-quantize
 * torch.fused_moving_avg_obs_fake_quant: in one call, when observer_on[0] != 0, update
 * running_min/max with the moving average of x's min/max (per channel along ch_axis when
 * per_channel; a +inf min, or an empty per-channel buffer, takes the first batch's values
 * as they are), recompute scale/zero_point with formula B; then, when fake_quant_on[0]
 * != 0, fake-quantize x with the straight-through gradient, else return x unchanged.
 * running_min/max, scale (f32) and zero_point (i32) are caller-owned buffers updated in
 * place (resized from empty on the first per-channel call). Observer and fake-quant read
 * the data in one pass where the kernel allows.
 * Measured PyTorch behaviour kept here: scale/zero_point change only while fake_quant_on;
 * a flag is its first element truncated to an integer; an empty x returns at once (no
 * resize, no check); fake-quant of never-observed (+inf/-inf) values fails; per-channel
 * resizing happens whatever the flags. Extensions: any ch_axis (PyTorch: 0 only), f64 x.
 * Deviation: NaN/inf in x while observing is QG_EINVAL and leaves the running values
 * unchanged (PyTorch stores them). zero_point may be i32 or i64. */
QG_API qg_tensor *qg_fused_moving_avg_obs_fake_quant(const qg_tensor *x, const qg_tensor *observer_on,
                                              const qg_tensor *fake_quant_on,
                                              qg_tensor *running_min, qg_tensor *running_max,
                                              qg_tensor *scale, qg_tensor *zero_point,
                                              double averaging_const, int64_t qmin, int64_t qmax,
                                              int ch_axis, bool per_channel, bool symmetric);

/* ======================================================== observers, fake-quant modules
 * Modules with PyTorch's class names and state-dict names:
 *   observers ("MinMaxObserver", "MovingAverageMinMaxObserver", "PerChannelMinMaxObserver",
 *   "MovingAveragePerChannelMinMaxObserver"): buffers eps (1), min_val, max_val (0-d per
 *   tensor starting at +inf/-inf, (C) per channel starting empty);
 *   "FakeQuantize" (observer, then formula A, then fake-quant): buffers fake_quant_enabled,
 *   observer_enabled (u8 (1)), scale (f32 (1) or (C)), zero_point (i32), child
 *   activation_post_process (the observer);
 *   "FusedMovingAvgObsFakeQuantize": the same names (toggles i64), formula B, one fused op;
 *   "_LearnableFakeQuantize": parameters scale, zero_point; buffers fake_quant_enabled,
 *   static_enabled, learning_enabled, eps; child activation_post_process;
 *   "FixedQParamsFakeQuantize": fixed scale/zero_point (sigmoid: 1/256, 0; tanh: 2/256, 128).
 * An observer fed a non-finite value fails with an error naming its module path (as set
 * by qg_prepare_qat, or its type) and the step (its count of observed batches). */

typedef enum qg_fq_kind {
    QG_FQ_FAKE_QUANTIZE = 0,   /* FakeQuantize: observer + formula A */
    QG_FQ_FUSED_MOVING_AVG,    /* FusedMovingAvgObsFakeQuantize: formula B, fused */
    QG_FQ_LEARNABLE,           /* _LearnableFakeQuantize (LSQ) */
    QG_FQ_FIXED,               /* FixedQParamsFakeQuantize */
} qg_fq_kind;

typedef enum qg_observer_kind {
    QG_OBS_MOVING_AVERAGE_MINMAX = 0, /* MovingAverage[PerChannel]MinMaxObserver */
    QG_OBS_MINMAX,                    /* [PerChannel]MinMaxObserver */
} qg_observer_kind;

/* Everything a fake-quant constructor needs: one half of a qconfig. 0 fields take
 * PyTorch's defaults where noted. */
typedef struct qg_fq_spec {
    qg_fq_kind kind;
    qg_observer_kind observer;  /* per-channel variant when qscheme is per channel */
    qg_qdtype dtype;
    qg_qscheme qscheme;
    bool reduce_range;
    int64_t quant_min, quant_max; /* custom range when quant_min < quant_max */
    qg_opt_double averaging_constant; /* unset = 0.01; in [0, 1]; 1 = memoryless */
    int ch_axis;                      /* per channel (0 for weights) */
    qg_opt_double eps;                /* unset = float32 epsilon 2^-23 */
    double fixed_scale;           /* QG_FQ_FIXED */
    int64_t fixed_zero_point;
    bool use_grad_scaling;        /* QG_FQ_LEARNABLE: grad_factor 1/sqrt(numel*qmax) */
} qg_fq_spec;

/* A qconfig: how activations and weights are fake-quantized. */
typedef struct qg_qconfig {
    qg_fq_spec activation, weight;
} qg_qconfig;

/* Presets: "fbgemm", "x86", "qnnpack" (get_default_qat_qconfig(backend), version 1),
 * "default" (default_qat_qconfig), "dynamic" (memoryless activation observer).
 * Unknown names are an error listing the known ones. */
QG_API qg_status qg_qconfig_preset(const char *name, qg_qconfig *out);
/* n-bit QAT: activations quint8-style affine in [0, 2^act_bits - 1], weights symmetric
 * per channel in [-2^(w_bits-1), 2^(w_bits-1) - 1], fused moving-average fake-quant.
 * Bits from 2 to 16. */
QG_API qg_status qg_qconfig_nbit(int act_bits, int weight_bits, qg_qconfig *out);

/* FixedQParamsFakeQuantize specs for sigmoid-like [0, 1] outputs (scale 1/256, zero
 * point 0) and tanh-like [-1, 1] outputs (scale 2/256, zero point 128), quint8. */
QG_API qg_fq_spec qg_fq_spec_fixed_sigmoid(void);
QG_API qg_fq_spec qg_fq_spec_fixed_tanh(void);

QG_API qg_module *qg_observer_new(const qg_fq_spec *spec);
QG_API qg_module *qg_fake_quant_new(const qg_fq_spec *spec);
/* Observer / fake-quant introspection (for tests and convert). */
QG_API qg_status qg_observer_calculate_qparams(qg_module *obs, qg_tensor **scale, qg_tensor **zero_point);
/* FakeQuantize.calculate_qparams (what convert uses): scale (f32) and zero_point (i32),
 * (1) or (C), caller-owned. FakeQuantize and FusedMovingAvgObsFakeQuantize: formula A
 * of their observer; FixedQParamsFakeQuantize: its fixed values; _LearnableFakeQuantize:
 * the learned values, the scale at least eps and the zero point rounded and clamped to
 * the range, as PyTorch's. */
QG_API qg_status qg_fake_quant_calculate_qparams(qg_module *fq, qg_tensor **scale, qg_tensor **zero_point);
/* Toggles on every fake-quant module of a tree (or on one). */
QG_API void qg_enable_fake_quant(qg_module *m, bool on);
QG_API void qg_enable_observer(qg_module *m, bool on);

/* QuantStub / DeQuantStub: identities where prepare attaches the input fake-quant. */
QG_API qg_module *qg_quant_stub_new(void);
QG_API qg_module *qg_dequant_stub_new(void);

/* ======================================================== QAT modules
 * Type names follow PyTorch's modules: "qat.Linear", "qat.Conv1d", "qat.Conv2d",
 * "qat.dynamic.Linear", "intrinsic.qat.LinearReLU", "intrinsic.qat.LinearBn1d",
 * "intrinsic.qat.ConvBn1d", "intrinsic.qat.ConvBn2d", "intrinsic.qat.ConvBnReLU1d",
 * "intrinsic.qat.ConvBnReLU2d", "intrinsic.qat.ConvReLU1d", "intrinsic.qat.ConvReLU2d".
 * Float fused modules made by fuse: "intrinsic.LinearReLU", "intrinsic.LinearBn1d",
 * "intrinsic.ConvBn1d", ... (children "0", "1", "2" as PyTorch's nni.* Sequentials).
 * State dicts: weight, bias, bn.*, weight_fake_quant.*, activation_post_process.*. */

/* PyTorch's constructors: qat.Linear(in, out, bias, qconfig), qat.Conv2d(in, out, k,
 * stride, padding, dilation, groups, bias, qconfig), ConvBn2d(..., eps, momentum,
 * freeze_bn, qconfig), ... as one call: type_name is any QAT type above. Weights are
 * initialised as PyTorch's layers are; the Bn variants' BN weight ~ U(0, 1), bias 0,
 * as their reset_bn_parameters does. Conv1d reads kernel[1], stride[0], padding[0],
 * dilation[0]; zero fields mean PyTorch's defaults (stride 1, dilation 1, groups 1,
 * eps 1e-5, momentum 0.1). */
typedef struct qg_qat_args {
    int64_t in, out;
    int kernel[2], stride[2], padding[2], dilation[2], groups;
    bool no_bias;
    qg_opt_double eps, momentum; /* BN: unset = 1e-5, 0.1 */
    bool freeze_bn;
} qg_qat_args;
QG_API qg_module *qg_qat_new(const char *type_name, const qg_qat_args *args, const qg_qconfig *qconfig, qg_rng *gen);

/* from_float: a float module (nn Linear/Conv, or a fused float module) becomes its QAT
 * version with the given qconfig, taking its parameters and BN state. The float
 * module is consumed on success (the QAT module owns what it had); on error it is left
 * to the caller. Errors name the module type and what was expected. */
QG_API qg_module *qg_qat_from_float(qg_module *float_mod, const qg_qconfig *qconfig);
/* dynamic QAT Linear; refuses a non-memoryless activation observer */
QG_API qg_module *qg_qat_dynamic_linear_from_float(qg_module *float_linear, const qg_qconfig *qconfig);
/* to_float: the float module back (BN folded into weight and bias for the Bn variants:
 * W' = W * g / sqrt(rv + eps), b' = (b - rm) * g / sqrt(rv + eps) + beta), as a new
 * module; the QAT module is left unchanged. */
QG_API qg_module *qg_qat_to_float(const qg_module *qat_mod);
/* A whole prepared model back to float, in place: every QAT module in the tree becomes
 * its float module (as qg_qat_to_float), and the activation fake-quants are removed, so
 * the model computes the float function (QuantStub/DeQuantStub stay, as identities). */
QG_API qg_status qg_qat_to_float_model(qg_module *model);
/* BN statistics of the Bn variants: frozen BN uses and keeps its running stats, and
 * train() does not unfreeze it. Both recurse over a tree. */
QG_API void qg_freeze_bn_stats(qg_module *m);
QG_API void qg_update_bn_stats(qg_module *m);

/* ======================================================== fuse, prepare
 * fuse_modules_qat: each group lists dotted paths of modules run in sequence
 * (conv+bn, conv+bn+relu, conv+relu, linear+relu, linear+bn); the first becomes the
 * fused float module, the others Identity. */
QG_API qg_status qg_fuse_modules_qat(qg_module *model, int ngroups, const char *const *const *groups,
                              const int *group_sizes);
/* prepare_qat: swaps every supported module (Linear, Conv1d/2d and the fused float
 * modules) for its QAT type with the qconfig, attaches an output fake-quant
 * (activation_post_process) where PyTorch's eager prepare does (QAT modules, QuantStub),
 * and records module paths for error messages. An unsupported combination is an
 * error naming the module. */
QG_API qg_status qg_prepare_qat(qg_module *model, const qg_qconfig *qconfig);

#ifdef __cplusplus
}
#endif
#endif
