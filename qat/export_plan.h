/* Private to the exporters (export_c.c, export_onnx.c): a converted model as the
 * flat list of steps it runs, each with the shapes and quantization of its input and
 * output, found by running the model once on a batch of one. */
#ifndef QGRAD_EXPORT_PLAN_H
#define QGRAD_EXPORT_PLAN_H

#include "internal.h"
#include "qgrad/deploy.h"

typedef enum {
    QG_XS_QUANTIZE,   /* quantized.Quantize: f32 -> quint8 */
    QG_XS_DEQUANTIZE, /* quantized.DeQuantize: quint8 -> f32 */
    QG_XS_LAYER,      /* a static Linear / Conv (qlayer.h), ReLU fusion included */
    QG_XS_DYNAMIC,    /* quantized.dynamic.Linear: f32 -> f32 */
    QG_XS_RELU,       /* ReLU on quint8 (max with the zero point) or on f32 */
    QG_XS_POOL,       /* MaxPool2d, AvgPool2d, AdaptiveAvgPool2d on quint8 */
    QG_XS_NOOP        /* Flatten, Dropout (eval), Identity: the same bytes */
} qg__xkind;

typedef struct {
    int ndim;
    int64_t shape[QG_MAX_DIMS];
    bool q;        /* quint8 per tensor (else f32) */
    double scale;  /* q */
    int64_t zp;    /* q */
} qg__xval;

typedef struct {
    qg__xkind kind;
    qg_module *m;
    char path[256]; /* in the model; "(the model)" for the root */
    const char *type;
    qg__xval in, out;
    qg__qpool_desc pool; /* QG_XS_POOL */
} qg__xstep;

typedef struct {
    int n;
    qg__xstep *s;
    qg__xval in, out; /* of the model */
    qg_tape *tape, *prev; /* the plan's tape, current until qg__xplan_free, and the one before */
    bool grad;            /* the grad mode before (off while the plan lives) */
} qg__xplan;

/* The plan of model for one sample of o's shape; who names the exporter in errors.
 * A module with no export form, a hook, a training-mode Dropout, or a model that does
 * not take and give f32 is an error naming the module's path and type. While the plan
 * lives, its own tape is current and grad mode off: what the exporter computes from
 * it dies with it, at qg__xplan_free, which restores both. */
qg_status qg__xplan_build(qg_module *model, const qg_export_opts *o, const char *who, qg__xplan *p);
void qg__xplan_free(qg__xplan *p);
int64_t qg__xval_numel(const qg__xval *v);

#endif
