/* QConfigs: the fake-quant specs and their checks, PyTorch's presets (fbgemm/x86,
 * qnnpack, default, dynamic), the n-bit helper and the fixed-qparams specs of sigmoid
 * and tanh. Plain data: no module is made here. */
#include "internal.h"
#include "qat_internal.h"

/* ------------------------------------------------------------- specs */

qg_status qg__check_spec(const char *op, const qg_fq_spec *s) {
    if ((unsigned)s->kind > QG_FQ_FIXED) return qg__err(QG_EINVAL, "%s: unknown fake-quant kind %d", op, (int)s->kind);
    if ((unsigned)s->observer > QG_OBS_MINMAX) return qg__err(QG_EINVAL, "%s: unknown observer kind %d", op, (int)s->observer);
    if ((unsigned)s->dtype > QG_QINT32) return qg__err(QG_EINVAL, "%s: unknown quantized dtype %d", op, (int)s->dtype);
    if ((unsigned)s->qscheme > QG_PER_CHANNEL_SYMMETRIC) return qg__err(QG_EINVAL, "%s: unknown qscheme %d", op, (int)s->qscheme);
    if (s->quant_min < s->quant_max) {
        int64_t lo = s->dtype == QG_QUINT8 ? 0 : s->dtype == QG_QINT8 ? -128 : INT32_MIN;
        int64_t hi = s->dtype == QG_QUINT8 ? 255 : s->dtype == QG_QINT8 ? 127 : INT32_MAX;
        if (s->quant_min < lo || s->quant_max > hi)
            return qg__err(QG_EINVAL, "%s: quant range [%lld, %lld] is outside the dtype's [%lld, %lld]", op,
                           (long long)s->quant_min, (long long)s->quant_max, (long long)lo, (long long)hi);
    } else if (s->quant_min > s->quant_max) {
        return qg__err(QG_EINVAL, "%s: quant_min %lld must not exceed quant_max %lld", op, (long long)s->quant_min,
                       (long long)s->quant_max);
    }
    double c = qg_opt_or(s->averaging_constant, 0.01);
    if (!(c >= 0 && c <= 1)) return qg__err(QG_EINVAL, "%s: averaging_constant %g outside [0, 1]", op, c);
    if (!(qg_opt_or(s->eps, 1) > 0)) return qg__err(QG_EINVAL, "%s: eps must be > 0, got %g", op, s->eps.v);
    if (s->kind == QG_FQ_FUSED_MOVING_AVG && s->observer != QG_OBS_MOVING_AVERAGE_MINMAX)
        return qg__err(QG_EINVAL, "%s: FusedMovingAvgObsFakeQuantize needs a moving-average observer", op);
    if (s->kind == QG_FQ_FIXED && qg_qscheme_is_per_channel(s->qscheme))
        return qg__err(QG_EINVAL, "%s: FixedQParamsFakeQuantize is per tensor only", op);
    if (s->kind == QG_FQ_FIXED && !(s->fixed_scale > 0))
        return qg__err(QG_EINVAL, "%s: FixedQParamsFakeQuantize needs a positive fixed_scale", op);
    return QG_OK;
}

/* ------------------------------------------------------------- qconfigs */

static const qg_fq_spec act_quint8_fused = {.kind = QG_FQ_FUSED_MOVING_AVG, .dtype = QG_QUINT8,
                                            .qscheme = QG_PER_TENSOR_AFFINE, .quant_min = 0, .quant_max = 255};
static const qg_fq_spec w_qint8_fused = {.kind = QG_FQ_FUSED_MOVING_AVG, .dtype = QG_QINT8,
                                         .qscheme = QG_PER_TENSOR_SYMMETRIC, .quant_min = -128, .quant_max = 127};

qg_status qg_qconfig_preset(const char *name, qg_qconfig *out) {
    if (!name || !out) return qg__err_null("qconfig_preset");
    qg_qconfig q = {act_quint8_fused, w_qint8_fused};
    if (!strcmp(name, "fbgemm") || !strcmp(name, "x86")) {
        q.activation.reduce_range = true; /* [0, 127] */
        q.weight.qscheme = QG_PER_CHANNEL_SYMMETRIC;
        q.weight.ch_axis = 0;
    } else if (!strcmp(name, "qnnpack")) {
        /* activation [0, 255], weight per tensor symmetric */
    } else if (!strcmp(name, "default")) {
        q.activation.kind = q.weight.kind = QG_FQ_FAKE_QUANTIZE;
        q.activation.reduce_range = true;
    } else if (!strcmp(name, "dynamic")) {
        q.activation.kind = q.weight.kind = QG_FQ_FAKE_QUANTIZE;
        q.activation.averaging_constant = qg_set(1); /* memoryless */
    } else {
        return qg__err(QG_EINVAL, "qconfig_preset: unknown qconfig '%s' (known: fbgemm, x86, qnnpack, default, dynamic)", name);
    }
    *out = q;
    return QG_OK;
}

qg_status qg_qconfig_nbit(int act_bits, int weight_bits, qg_qconfig *out) {
    if (!out) return qg__err_null("qconfig_nbit");
    if (act_bits < 2 || act_bits > 16 || weight_bits < 2 || weight_bits > 16)
        return qg__err(QG_EINVAL, "qconfig_nbit: bits must be in 2..16, got activation %d, weight %d", act_bits, weight_bits);
    qg_qconfig q = {act_quint8_fused, w_qint8_fused};
    q.activation.dtype = act_bits > 8 ? QG_QINT32 : QG_QUINT8;
    q.activation.quant_min = 0;
    q.activation.quant_max = ((int64_t)1 << act_bits) - 1;
    q.weight.dtype = weight_bits > 8 ? QG_QINT32 : QG_QINT8;
    q.weight.qscheme = QG_PER_CHANNEL_SYMMETRIC;
    q.weight.quant_min = -((int64_t)1 << (weight_bits - 1));
    q.weight.quant_max = ((int64_t)1 << (weight_bits - 1)) - 1;
    *out = q;
    return QG_OK;
}

qg_fq_spec qg_fq_spec_fixed_sigmoid(void) {
    return (qg_fq_spec){.kind = QG_FQ_FIXED, .dtype = QG_QUINT8, .qscheme = QG_PER_TENSOR_AFFINE, .quant_min = 0,
                        .quant_max = 255, .fixed_scale = 1.0 / 256.0, .fixed_zero_point = 0};
}

qg_fq_spec qg_fq_spec_fixed_tanh(void) {
    return (qg_fq_spec){.kind = QG_FQ_FIXED, .dtype = QG_QUINT8, .qscheme = QG_PER_TENSOR_AFFINE, .quant_min = 0,
                        .quant_max = 255, .fixed_scale = 2.0 / 256.0, .fixed_zero_point = 128};
}
