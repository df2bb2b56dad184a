/* qgrad/autograd.h — tensors, the tape, and differentiable ops.
 *
 * Ownership, in one rule per kind of tensor:
 *  - Tensors made by creation functions (qg_tensor_empty/zeros/.../clone) are the
 *    caller's: free them with qg_tensor_free. Their storage is reference counted.
 *  - Tensors returned by ops (qg_add, qg_transpose, ...) belong to the current tape and
 *    die all at once at qg_tape_reset. Never free them; qg_tensor_free ignores them.
 *    A view made by an op borrows its source's storage: keep the source alive until
 *    the tape is reset.
 *  - A leaf's .grad is allocated on the first backward pass that reaches it and is
 *    owned by the leaf (freed with it). qg_tensor_zero_grad zeroes it in place.
 *
 * Errors: functions returning pointers return NULL, functions returning qg_status a
 * negative value; qg_last_error() then says what went wrong. Every op accepts NULL
 * inputs and returns NULL, so a chain of ops can be checked once at its end.
 *
 * Dims may be negative (counted from the end), as in PyTorch.
 */
#ifndef QGRAD_AUTOGRAD_H
#define QGRAD_AUTOGRAD_H

#include "qgrad/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

typedef enum qg_status {
    QG_OK = 0,
    QG_EINVAL = -1,   /* bad argument: NULL, out-of-range dim or value */
    QG_ESHAPE = -2,   /* shapes that do not fit together */
    QG_EDTYPE = -3,   /* unsupported or mismatched dtype */
    QG_ENOMEM = -4,   /* allocation failed */
    QG_EIO = -5,      /* file could not be read or written */
    QG_EFORMAT = -6,  /* file content is corrupt or not what was expected */
    QG_ESTATE = -7,   /* call not valid in the current state (e.g. backward after reset) */
} qg_status;

/* The message of the last error on this thread ("" if none). */
QG_API const char *qg_last_error(void);
QG_API qg_status qg_last_status(void);
QG_API void qg_clear_error(void);

/* ---------------------------------------------------------------- options
 * Options structs read like keyword calls, `&(qg_bn_opts){.momentum = QG_SET(0)}`,
 * and every value PyTorch accepts can be given. A field whose zero is not PyTorch's
 * default, while 0 is still a legal value, is a qg_opt_double: left out (zero) it is
 * PyTorch's default, QG_SET(x) in an initializer (qg_set(x) in an assignment) gives x,
 * 0 included. Fields where 0 is illegal (a stride, a batch size) use 0 for the
 * default and say so. Pairs (stride, padding, dilation) are always two values;
 * QG_PAIR(v) writes the square case. */
typedef struct qg_opt_double {
    double v;
    bool set;
} qg_opt_double;
#define QG_SET(x) {(double)(x), true}
#define QG_PAIR(v) {(v), (v)}
static inline qg_opt_double qg_set(double x) {
    qg_opt_double o = {x, true};
    return o;
}
/* o's value, or dflt when it was not set */
static inline double qg_opt_or(qg_opt_double o, double dflt) { return o.set ? o.v : dflt; }

/* ---------------------------------------------------------------- tensors */

typedef enum qg_dtype {
    QG_F32 = 0,
    QG_F64,
    QG_I64,
    QG_I32,
    QG_U8,   /* also the dtype of boolean masks */
    QG_I8,
    QG_NDTYPES
} qg_dtype;

#define QG_MAX_DIMS 8

/* Quantization schemes and the integer types of quantized tensors (and of QAT's
 * emulation, qgrad/qat.h): their full ranges, and what zero_point a symmetric scheme
 * uses (0 for signed, the middle of the range for unsigned). */
typedef enum qg_qscheme {
    QG_PER_TENSOR_AFFINE = 0,
    QG_PER_TENSOR_SYMMETRIC,
    QG_PER_CHANNEL_AFFINE,
    QG_PER_CHANNEL_SYMMETRIC,
} qg_qscheme;
typedef enum qg_qdtype { QG_QUINT8 = 0, QG_QINT8, QG_QINT32 } qg_qdtype;

/* How a quantized tensor's integers map to real values: real = (q - zero_point) *
 * scale, per tensor (axis -1) or per channel along dim axis (entry c of scales and
 * zero_points for index c of that dim). See "quantized tensors" below. */
typedef struct qg_quant {
    int axis;                   /* -1: per tensor */
    double scale;               /* per tensor */
    int64_t zero_point;         /* per tensor */
    int64_t nch;                /* per channel: shape[axis] */
    const double *scales;       /* per channel: nch entries */
    const int64_t *zero_points; /* per channel: nch entries */
} qg_quant;

typedef struct qg_storage qg_storage;
typedef struct qg_node qg_node;
typedef struct qg_tape qg_tape;

/* Fields are readable by users; change them only through the API. */
typedef struct qg_tensor {
    qg_dtype dtype;
    int ndim;
    int64_t shape[QG_MAX_DIMS];
    int64_t strides[QG_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements, into storage */
    qg_storage *storage;
    bool requires_grad;
    struct qg_tensor *grad;       /* same shape, contiguous; NULL until a backward */
    qg_node *node;                /* op that produced it; NULL for leaves */
    const qg_quant *quant;        /* quantized tensors only (else NULL); owned with the tensor */
    /* bookkeeping, private */
    qg_tape *tape;                /* owning tape, NULL for caller-owned */
    uint64_t tape_gen;
    uint64_t grad_pass;           /* backward pass that initialised .grad (tape tensors) */
    uint64_t reach;               /* backward pass that found it on the graph */
    struct qg_tensor *tape_next;
    uint64_t used_tape, used_gen; /* caller-owned: the tape pass whose graph or views use it */
} qg_tensor;

QG_API size_t qg_dtype_size(qg_dtype dt);
QG_API const char *qg_dtype_name(qg_dtype dt);

/* Creation; caller-owned. shape has ndim entries (ndim 0 is a scalar). */
QG_API qg_tensor *qg_tensor_empty(qg_dtype dt, int ndim, const int64_t *shape);
QG_API qg_tensor *qg_tensor_zeros(qg_dtype dt, int ndim, const int64_t *shape);
QG_API qg_tensor *qg_tensor_ones(qg_dtype dt, int ndim, const int64_t *shape);
QG_API qg_tensor *qg_tensor_full(qg_dtype dt, int ndim, const int64_t *shape, double value);
/* [start, end) by step, 1-D. */
QG_API qg_tensor *qg_tensor_arange(qg_dtype dt, double start, double end, double step);
/* Copies numel elements of dtype dt from data (C order). */
QG_API qg_tensor *qg_tensor_from_data(qg_dtype dt, int ndim, const int64_t *shape, const void *data);
/* Deep copy into a new contiguous caller-owned tensor (no grad, no history). */
QG_API qg_tensor *qg_tensor_clone(const qg_tensor *t);
QG_API void qg_tensor_free(qg_tensor *t);

/* Seeded random numbers. The generator is a counter-based stream: the same seed
 * gives the same numbers whatever the thread count. gen == NULL uses the global
 * generator, seeded with qg_manual_seed. */
typedef struct qg_rng {
    uint64_t seed;
    uint64_t counter;
} qg_rng;
QG_API void qg_rng_init(qg_rng *r, uint64_t seed);
QG_API void qg_manual_seed(uint64_t seed);
QG_API qg_rng *qg_rng_global(void);
QG_API uint64_t qg_rng_next_u64(qg_rng *r);
QG_API double qg_rng_uniform(qg_rng *r); /* [0, 1) */
QG_API qg_tensor *qg_tensor_rand(qg_rng *gen, qg_dtype dt, int ndim, const int64_t *shape);  /* U[0,1) */
QG_API qg_tensor *qg_tensor_randn(qg_rng *gen, qg_dtype dt, int ndim, const int64_t *shape); /* N(0,1) */
/* Fill in place: U[lo, hi) and N(mean, std). */
QG_API qg_status qg_tensor_uniform_(qg_tensor *t, qg_rng *gen, double lo, double hi);
QG_API qg_status qg_tensor_normal_(qg_tensor *t, qg_rng *gen, double mean, double std);

/* Inspection. */
QG_API int64_t qg_tensor_numel(const qg_tensor *t);
QG_API bool qg_tensor_is_contiguous(const qg_tensor *t);
/* Pointer to element 0 (storage data + offset). */
QG_API void *qg_tensor_data(const qg_tensor *t);
/* Element at a multi-index (ndim entries), converted to double. */
QG_API double qg_tensor_get(const qg_tensor *t, const int64_t *index);
QG_API qg_status qg_tensor_set(qg_tensor *t, const int64_t *index, double value);
/* Value of a one-element tensor. NAN with an error otherwise. */
QG_API double qg_tensor_item(const qg_tensor *t);
/* Copy all elements (C order) into buf, converted to dtype dt. */
QG_API qg_status qg_tensor_copy_to(const qg_tensor *t, qg_dtype dt, void *buf);
/* dst[...] = src[...] for equal shapes (src may broadcast), any strides and dtypes. */
QG_API qg_status qg_tensor_copy_(qg_tensor *dst, const qg_tensor *src);
QG_API qg_status qg_tensor_fill_(qg_tensor *t, double value);
/* Gives a caller-owned tensor a new shape (contiguous), like PyTorch's resize_: the
 * first elements are kept, new ones are zero. Only for the storage's sole owner and
 * never for tape tensors (views of it would dangle). */
QG_API qg_status qg_tensor_resize_(qg_tensor *t, int ndim, const int64_t *shape);
/* Writes "f32[2, 3]" etc. into buf. */
QG_API const char *qg_shape_str(const qg_tensor *t, char *buf, size_t n);

/* ---------------------------------------------------------------- autograd */

QG_API qg_status qg_tensor_set_requires_grad(qg_tensor *t, bool on);
/* Zeroes t->grad if allocated. */
QG_API void qg_tensor_zero_grad(qg_tensor *t);

/* Grad mode: while off, ops record nothing (their outputs still live on the tape). */
QG_API bool qg_grad_enabled(void);
QG_API bool qg_set_grad_enabled(bool on); /* returns the previous mode */
#define QG_NO_GRAD_BEGIN { bool qg__prev_grad_mode = qg_set_grad_enabled(false);
#define QG_NO_GRAD_END qg_set_grad_enabled(qg__prev_grad_mode); }

/* A tape records one forward pass. Op outputs are allocated in its arena, which
 * keeps its memory across resets: after warm-up a training step allocates nothing.
 * Each thread has a current tape; a default one is made on first use. A tape argument
 * of NULL means the current tape in every function below.
 * After qg_tape_reset, the tensors of the pass are gone: an op or accessor given one
 * fails with "tensor from a reset tape" (QG_ESTATE) instead of reading freed memory
 * (guaranteed for the pass just reset; a handle kept over two resets may alias a
 * newer tensor). qg_tape_free ends its tensors as free() ends memory: using one after
 * is the caller's bug, not an error qgrad can report. A caller-owned tensor freed
 * while the current pass uses it (a parameter or input before backward, a tensor a
 * view reads) is kept by the tape and freed at the reset. */
QG_API qg_tape *qg_tape_new(void);
QG_API void qg_tape_free(qg_tape *tape);
QG_API void qg_tape_reset(qg_tape *tape);
QG_API qg_tape *qg_tape_current(void);
QG_API qg_tape *qg_tape_set_current(qg_tape *tape); /* returns the previous; NULL = default */
QG_API size_t qg_tape_bytes(const qg_tape *tape);   /* arena capacity */
QG_API size_t qg_tape_node_count(const qg_tape *tape);
/* A tape whose pass passes `bytes` of arena or `nodes` nodes without a reset warns
 * once, through the warning handler: the sign of a training loop that forgot
 * qg_tape_reset and grows without bound. Defaults: 4 GiB, 100,000 nodes; setting
 * them re-arms the warning. */
QG_API qg_status qg_tape_set_limits(qg_tape *tape, size_t bytes, size_t nodes);

/* Warnings (not errors: the call goes on) go to the handler, by default one line
 * "qgrad warning: ..." on stderr. NULL restores the default. Process-wide. */
typedef void (*qg_warning_fn)(const char *message, void *ctx);
QG_API void qg_set_warning_handler(qg_warning_fn fn, void *ctx);

/* Frees this thread's default tape (made on first use), so that qg_live_allocations
 * returns to what the program itself holds; the next op makes a new one. */
QG_API void qg_shutdown(void);

/* Backpropagate from out. grad_out may be NULL only for one-element outputs (then 1).
 * Accumulates (+=) into the .grad of every leaf that requires grad. The graph is
 * consumed: a second backward through any of its nodes is an error ("backward through
 * the graph a second time"), as in PyTorch, unless the first was qg_backward_retain
 * (PyTorch's retain_graph=True). */
QG_API qg_status qg_backward(qg_tensor *out, const qg_tensor *grad_out);
QG_API qg_status qg_backward_retain(qg_tensor *out, const qg_tensor *grad_out);

/* A view of t that does not require grad and has no history. */
QG_API qg_tensor *qg_detach(const qg_tensor *t);

/* ---------------------------------------------------------------- threads, memory */

QG_API void qg_set_num_threads(int n);
QG_API int qg_get_num_threads(void);
/* Blocks allocated by qgrad and not yet freed (a leak/growth check for tests),
 * including this thread's default tape, if made (see qg_shutdown). */
QG_API int64_t qg_live_allocations(void);

/* ---------------------------------------------------------------- ops
 * Elementwise binary ops broadcast as numpy does; both inputs must have one float
 * dtype. Results are contiguous. */

QG_API qg_tensor *qg_add(const qg_tensor *a, const qg_tensor *b);
QG_API qg_tensor *qg_sub(const qg_tensor *a, const qg_tensor *b);
QG_API qg_tensor *qg_mul(const qg_tensor *a, const qg_tensor *b);
QG_API qg_tensor *qg_div(const qg_tensor *a, const qg_tensor *b);
/* On ties the gradient is split half and half, as PyTorch does. */
QG_API qg_tensor *qg_maximum(const qg_tensor *a, const qg_tensor *b);
QG_API qg_tensor *qg_minimum(const qg_tensor *a, const qg_tensor *b);
/* mask (U8, nonzero = true) selects a, else b; all three broadcast. */
QG_API qg_tensor *qg_where(const qg_tensor *mask, const qg_tensor *a, const qg_tensor *b);

QG_API qg_tensor *qg_add_scalar(const qg_tensor *a, double s);
QG_API qg_tensor *qg_sub_scalar(const qg_tensor *a, double s);
QG_API qg_tensor *qg_mul_scalar(const qg_tensor *a, double s);
QG_API qg_tensor *qg_div_scalar(const qg_tensor *a, double s);
QG_API qg_tensor *qg_pow_scalar(const qg_tensor *a, double exponent);

QG_API qg_tensor *qg_neg(const qg_tensor *a);
QG_API qg_tensor *qg_exp(const qg_tensor *a);
QG_API qg_tensor *qg_log(const qg_tensor *a);
QG_API qg_tensor *qg_sqrt(const qg_tensor *a);
QG_API qg_tensor *qg_rsqrt(const qg_tensor *a);
QG_API qg_tensor *qg_abs(const qg_tensor *a);
QG_API qg_tensor *qg_tanh(const qg_tensor *a);
QG_API qg_tensor *qg_sigmoid(const qg_tensor *a);
QG_API qg_tensor *qg_relu(const qg_tensor *a);
QG_API qg_tensor *qg_clamp(const qg_tensor *a, double lo, double hi);
QG_API qg_tensor *qg_hardtanh(const qg_tensor *a, double min_val, double max_val);
QG_API qg_tensor *qg_relu6(const qg_tensor *a);

/* Comparisons give U8 masks (no gradient). */
QG_API qg_tensor *qg_gt(const qg_tensor *a, const qg_tensor *b);
QG_API qg_tensor *qg_lt(const qg_tensor *a, const qg_tensor *b);
QG_API qg_tensor *qg_eq(const qg_tensor *a, const qg_tensor *b);

/* (m,k)@(k,n) -> (m,n); (B,m,k)@(B,k,n) -> (B,m,n) with a batch dim of 1 broadcasting,
 * and a 2-D operand broadcasting over the other's batch. */
QG_API qg_tensor *qg_matmul(const qg_tensor *a, const qg_tensor *b);
/* x (..., in) W (out, in) b (out) or NULL -> (..., out) */
QG_API qg_tensor *qg_linear(const qg_tensor *x, const qg_tensor *w, const qg_tensor *b);

/* Reductions over the listed dims (ndims == 0: over all dims). */
QG_API qg_tensor *qg_sum(const qg_tensor *x, int ndims, const int *dims, bool keepdim);
QG_API qg_tensor *qg_mean(const qg_tensor *x, int ndims, const int *dims, bool keepdim);
QG_API qg_tensor *qg_var(const qg_tensor *x, int ndims, const int *dims, bool unbiased, bool keepdim);
/* Max along dim; *indices (I64, tape-owned) if indices != NULL. Gradient goes to the
 * first maximal element, as PyTorch's max(dim). */
QG_API qg_tensor *qg_max(const qg_tensor *x, int dim, bool keepdim, qg_tensor **indices);
QG_API qg_tensor *qg_argmax(const qg_tensor *x, int dim, bool keepdim);

QG_API qg_tensor *qg_softmax(const qg_tensor *x, int dim);
QG_API qg_tensor *qg_log_softmax(const qg_tensor *x, int dim);

typedef enum qg_reduction { QG_REDUCTION_MEAN = 0, QG_REDUCTION_SUM, QG_REDUCTION_NONE } qg_reduction;
/* logits (N, C); target either (N) integer class ids (I64 or I32; -100 is ignored) or
 * (N, C) class probabilities of the input's float dtype, as PyTorch 1.13 takes both.
 * With probabilities the mean divides by N. */
QG_API qg_tensor *qg_cross_entropy(const qg_tensor *logits, const qg_tensor *target, qg_reduction red);
/* The same with PyTorch's label_smoothing in [0, 1]: the target mixed with the uniform
 * distribution, (1 - ls) target + ls / C. */
QG_API qg_tensor *qg_cross_entropy_label_smoothing(const qg_tensor *logits, const qg_tensor *target, qg_reduction red,
                                            double label_smoothing);
/* logp (N, C) log-probabilities, target (N). */
QG_API qg_tensor *qg_nll_loss(const qg_tensor *logp, const qg_tensor *target, qg_reduction red);
QG_API qg_tensor *qg_mse_loss(const qg_tensor *x, const qg_tensor *y, qg_reduction red);

/* Views (no copy unless stated) */
QG_API qg_tensor *qg_reshape(const qg_tensor *x, int ndim, const int64_t *shape); /* one -1 allowed; copies if strides forbid a view */
QG_API qg_tensor *qg_view(const qg_tensor *x, int ndim, const int64_t *shape);    /* error if a copy would be needed */
QG_API qg_tensor *qg_transpose(const qg_tensor *x, int d0, int d1);
QG_API qg_tensor *qg_permute(const qg_tensor *x, const int *perm);
QG_API qg_tensor *qg_narrow(const qg_tensor *x, int dim, int64_t start, int64_t length);
/* Python-style x[..., start:end:step, ...] along dim; step > 0. */
QG_API qg_tensor *qg_slice(const qg_tensor *x, int dim, int64_t start, int64_t end, int64_t step);
QG_API qg_tensor *qg_select(const qg_tensor *x, int dim, int64_t index);
QG_API qg_tensor *qg_expand(const qg_tensor *x, int ndim, const int64_t *shape); /* -1 keeps a dim */
QG_API qg_tensor *qg_squeeze(const qg_tensor *x, int dim);
QG_API qg_tensor *qg_unsqueeze(const qg_tensor *x, int dim);
QG_API qg_tensor *qg_flatten(const qg_tensor *x, int start_dim, int end_dim);
QG_API qg_tensor *qg_contiguous(const qg_tensor *x); /* x itself if already contiguous */

QG_API qg_tensor *qg_cat(int n, qg_tensor *const *xs, int dim);
QG_API qg_tensor *qg_stack(int n, qg_tensor *const *xs, int dim);

/* Cast (no gradient through integer dtypes). */
QG_API qg_tensor *qg_to_dtype(const qg_tensor *x, qg_dtype dt);

/* ---------------------------------------------------------------- quantized tensors
 * A quantized tensor stores integers in an ordinary dtype, U8 for quint8, I8 for
 * qint8, I32 for qint32, and says in ->quant how they map to real values, as
 * PyTorch's quantized tensors do (docs/int8.md). qg_tensor_data and qg_tensor_copy_to
 * (into the tensor's own integer dtype only) give the integers; qg_tensor_get and
 * qg_tensor_item real values, as PyTorch's item(). Mixing quantized and ordinary
 * tensors elsewhere is an error: float ops refuse them, qg_tensor_copy_ copies only
 * between quantized tensors of one dtype and one mapping, qg_to_dtype, qg_tensor_set
 * and qg_tensor_fill_ refuse them. Per-tensor quantized tensors have views (reshape,
 * flatten, narrow, ...: the same mapping) and go through qg_relu, qg_max_pool2d,
 * qg_avg_pool2d, qg_adaptive_avg_pool2d and qg_dropout in eval, which compute on the
 * integers as PyTorch's quantized kernels do; per-channel ones have no views. No
 * gradient flows through quantized tensors. Like every op result, the outputs below
 * belong to the tape; qg_tensor_clone makes a caller-owned copy (mapping included). */

/* The quantized engine whose arithmetic the int8 modules reproduce (docs/int8.md):
 * they differ in how the float bias enters and where the output zero point is added. */
typedef enum qg_qengine {
    QG_QENGINE_ONEDNN = 0, /* PyTorch's x86 default; also what the fbgemm qconfig runs on */
    QG_QENGINE_QNNPACK,
} qg_qengine;
/* The engine the quantized pools follow where PyTorch's kernels differ (average pools),
 * as torch.backends.quantized.engine: process-wide, onednn by default. qg_convert's
 * default engine too. */
QG_API qg_status qg_set_qengine(qg_qengine e); /* QG_EINVAL for an unknown engine */
QG_API qg_qengine qg_get_qengine(void);

/* q = clamp(zero_point + nearbyint(x * (1/scale)), qmin, qmax), the reciprocal and
 * product in float32 as PyTorch computes them; NaN and +-inf give qmin. x is f32
 * (PyTorch refuses other dtypes), scale a finite positive value (read as float32,
 * stored as given), zero_point in the dtype's range. */
QG_API qg_tensor *qg_quantize_per_tensor(const qg_tensor *x, double scale, int64_t zero_point, qg_qdtype dtype);
/* The same per channel along axis: scales (C) and zero_points (C) of any real and
 * integer dtype (PyTorch: double and int64), C = x->shape[axis]. */
QG_API qg_tensor *qg_quantize_per_channel(const qg_tensor *x, const qg_tensor *scales,
                                          const qg_tensor *zero_points, int axis, qg_qdtype dtype);
/* A quantized tensor over given integers (PyTorch's _make_per_tensor_quantized_tensor
 * and _make_per_channel_quantized_tensor): a view of ints, U8 (quint8), I8 (qint8) or
 * I32 (qint32), with the mapping given (checked as above). */
QG_API qg_tensor *qg_make_per_tensor_quantized(const qg_tensor *ints, double scale, int64_t zero_point);
QG_API qg_tensor *qg_make_per_channel_quantized(const qg_tensor *ints, const qg_tensor *scales,
                                                const qg_tensor *zero_points, int axis);
/* Real values, f32: F(F(q - zero_point) * F(scale)). */
QG_API qg_tensor *qg_dequantize(const qg_tensor *q);
/* The integers (U8, I8 or I32) as an ordinary tensor: a view sharing q's storage. */
QG_API qg_tensor *qg_int_repr(const qg_tensor *q);
QG_API bool qg_tensor_is_quantized(const qg_tensor *t);
/* q's integer type and scheme (QG_PER_TENSOR_AFFINE or QG_PER_CHANNEL_AFFINE);
 * QG_EINVAL (negative) for an ordinary tensor. */
QG_API int qg_tensor_qdtype(const qg_tensor *q);
QG_API int qg_tensor_qscheme(const qg_tensor *q);
/* Per tensor: the scale and zero point (NAN / INT64_MIN with an error per channel). */
QG_API double qg_q_scale(const qg_tensor *q);
QG_API int64_t qg_q_zero_point(const qg_tensor *q);
/* Per channel: the axis (-1 with an error per tensor) and, as tape tensors, the scales
 * (F64) and zero points (I64). */
QG_API int qg_q_per_channel_axis(const qg_tensor *q);
QG_API qg_tensor *qg_q_per_channel_scales(const qg_tensor *q);
QG_API qg_tensor *qg_q_per_channel_zero_points(const qg_tensor *q);

/* ---------------------------------------------------------------- nn functional
 * The differentiable forms behind qgrad/nn.h's layers, PyTorch's F.* semantics.
 * Array arguments give (height, width) pairs; NULL means PyTorch's default
 * (stride 1 — for pooling, the kernel size —, padding 0, dilation 1). */

/* x (N, C, H, W), w (K, C/groups, kh, kw), b (K) or NULL -> (N, K, OH, OW) */
QG_API qg_tensor *qg_conv2d(const qg_tensor *x, const qg_tensor *w, const qg_tensor *b, const int *stride,
                     const int *padding, const int *dilation, int groups);
/* x (N, C, L), w (K, C/groups, k), b (K) or NULL -> (N, K, OL) */
QG_API qg_tensor *qg_conv1d(const qg_tensor *x, const qg_tensor *w, const qg_tensor *b, int stride,
                     int padding, int dilation, int groups);
/* x (N, C), (N, C, L) or (N, C, H, W); statistics per channel C. Training: normalise
 * with the batch mean and biased variance, and if running_mean/running_var are given
 * update them in place, running = (1 - momentum) running + momentum batch, with the
 * unbiased variance. Eval: normalise with the running statistics (required).
 * weight, bias: (C) or NULL. */
QG_API qg_tensor *qg_batch_norm(const qg_tensor *x, qg_tensor *running_mean, qg_tensor *running_var,
                         const qg_tensor *weight, const qg_tensor *bias, bool training,
                         double momentum, double eps);
/* x (N, C, H, W) or (C, H, W) */
QG_API qg_tensor *qg_max_pool2d(const qg_tensor *x, const int *kernel, const int *stride, const int *padding,
                         const int *dilation, bool ceil_mode);
QG_API qg_tensor *qg_avg_pool2d(const qg_tensor *x, const int *kernel, const int *stride, const int *padding,
                         bool ceil_mode, bool count_include_pad, int divisor_override);
QG_API qg_tensor *qg_adaptive_avg_pool2d(const qg_tensor *x, int64_t oh, int64_t ow);
/* Training: zero each element with probability p (mask drawn from gen, NULL = global)
 * and scale the rest by 1/(1-p). Eval, or p == 0: x itself. */
QG_API qg_tensor *qg_dropout(const qg_tensor *x, double p, bool training, qg_rng *gen);

/* ---------------------------------------------------------------- gradcheck
 * Central-difference check of a float64 function's gradient. fn maps the inputs to
 * one output tensor using qgrad ops; the check compares d(sum(out * r))/d(input) from
 * backward with (f(x+eps) - f(x-eps)) / 2eps for a fixed random r. */
typedef qg_tensor *(*qg_gradcheck_fn)(qg_tensor *const *inputs, void *ctx);
typedef struct qg_gradcheck_opts {
    qg_opt_double eps;  /* unset = 1e-6; > 0 */
    qg_opt_double atol; /* unset = 1e-5 */
    qg_opt_double rtol; /* unset = 1e-4 */
    uint64_t seed;      /* of r */
} qg_gradcheck_opts;
/* Inputs with requires_grad set are checked. Returns QG_OK or an error whose message
 * names the input, the element and both values. */
QG_API qg_status qg_gradcheck(qg_gradcheck_fn fn, void *ctx, int n, qg_tensor *const *inputs,
                       const qg_gradcheck_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
