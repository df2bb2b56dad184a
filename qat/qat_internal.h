/* Private to qat/ (the module level; the ops' private parts are in ops/fq_internal.h):
 * the observer struct, and the functions one qat/ file offers the next. Files depend
 * one way: qconfig <- observer <- fake_quantize <- fused_float <- modules <- prepare. */
#ifndef QGRAD_QAT_INTERNAL_H
#define QGRAD_QAT_INTERNAL_H

#include "qgrad/qat.h"

typedef struct qg__observer {
    qg_module base;
    bool per_channel, moving, custom_range;
    double averaging_constant;
    int ch_axis;
    qg_qscheme scheme;
    qg_qdtype dtype;
    int64_t qmin, qmax;
    int64_t steps; /* batches observed, for error messages */
    float *scratch; /* 2 * cap floats: a batch's min and max, kept between forwards */
    int64_t cap;
} qg__observer;

extern const qg_module_type qg__minmax_observer_type, qg__ma_observer_type, qg__pc_observer_type,
    qg__ma_pc_observer_type;

/* qconfig.c: validates a fake-quant / observer spec (ranges, kinds, bits). */
qg_status qg__check_spec(const char *op, const qg_fq_spec *s);

/* observer.c */
bool qg__is_observer(const qg_module *m);
qg_module *qg__observer_make(const qg_fq_spec *s);
/* The qparams' length (the observed channel count, 1 if none yet), and formula A
 * into caller buffers of that length: the FakeQuantize forward allocates nothing. */
int64_t qg__observer_channels(const qg_module *obs);
qg_status qg__observer_qparams(qg_module *obs, float *scale, int32_t *zero_point);
/* Formula A for an observer's settings. */
qg_status qg__qparams_observer(int64_t n, const float *mn, const float *mx, const qg__observer *o, float eps,
                               float *scale, int32_t *zero_point);

/* fused_float.c: a fused float module (children "0", "1", "2") of the named intrinsic
 * type; takes ownership of a, b, c (c may be NULL) also on failure. */
qg_module *qg__fused_float_new(const char *type_name, qg_module *a, qg_module *b, qg_module *c);
bool qg__is_fused_float(const qg_module *m);

/* fake_quantize.c: a fake-quant module's range, dtype and channel axis (-1 per tensor). */
qg_status qg__fake_quant_range(const qg_module *fq, int64_t *qmin, int64_t *qmax, qg_qdtype *dtype, int *axis);

/* modules.c: is m one of the QAT module types? Its qconfig (NULL if not one). */
bool qg__is_qat_module(const qg_module *m);
const qg_qconfig *qg__qat_qconfig(const qg_module *m);

/* quantized.c, for the int8 file format: the layers' settings; a Quantize module's. */
bool qg__is_qlayer(const qg_module *m);
bool qg__qlayer_type_name(const char *type_name);
struct qg_qlayer_args;
void qg__qlayer_info(const qg_module *m, struct qg_qlayer_args *a, qg_qengine *engine, bool *dynamic,
                     bool *reduce_range);
bool qg__quantize_info(const qg_module *m, double *scale, int64_t *zp, qg_qdtype *dtype);

#endif
