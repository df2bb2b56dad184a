/* Private to qat/: the structs behind observer, fake-quant and QAT module types. */
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
} qg__observer;

extern const qg_module_type qg__minmax_observer_type, qg__ma_observer_type, qg__pc_observer_type,
    qg__ma_pc_observer_type;

bool qg__is_observer(const qg_module *m);
/* The module's path if prepare set one, else its type name. */
const char *qg__module_label(const qg_module *m);
/* Validates a fake-quant / observer spec (ranges, kinds, bits). */
qg_status qg__check_spec(const char *op, const qg_fq_spec *s);
qg_module *qg__observer_make(const qg_fq_spec *s);
/* Per-channel (axis >= 0) or whole-tensor min/max of x; error on non-finite values. */
qg_status qg__minmax(const qg_tensor *x, int axis, float *mn, float *mx, int64_t nmax, int64_t *nout);
/* Formula A for an observer's settings. */
qg_status qg__qparams_observer(int64_t n, const float *mn, const float *mx, const qg__observer *o, float eps,
                               float *scale, int32_t *zero_point);

/* Is m one of the QAT module types of qat/modules.c? */
bool qg__is_qat_module(const qg_module *m);
/* A fused float module (children "0", "1", "2") of the named intrinsic type; takes
 * ownership of a, b, c (c may be NULL) also on failure. */
qg_module *qg__fused_float_new(const char *type_name, qg_module *a, qg_module *b, qg_module *c);

/* Start of thread t's share of n elements split nt ways, on 64-element boundaries
 * (so threads never share a cache line of output); n for t == nt. */
static inline int64_t qg__split_at(int64_t n, int t, int nt) {
    return t >= nt ? n : (n / nt * t) & ~(int64_t)63;
}

#endif
