/* Private to the library, for every folder: errors, asserts, allocation, size limits,
 * threads, tensor checks and dtype templates. What only ops need (the tape's nodes,
 * iteration, the kernels) is in op_internal.h. Nothing here is installed. */
#ifndef QGRAD_INTERNAL_H
#define QGRAD_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qgrad/autograd.h"

/* ------------------------------------------------------------- errors, asserts */

/* Sets the thread's error (printf-style) and returns status; use as
 * `return qg__err(QG_ESHAPE, "add: ..."), NULL;` or `return qg__err(...);`. */
qg_status qg__err(qg_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "op: input is NULL" — unless an error is already pending: then that first error
 * is kept, so a chain of ops reports what went wrong where it went wrong. */
qg_status qg__err_null(const char *op);
/* Bumped by every qg__err: tells whether an error was raised since a point. */
uint64_t qg__err_serial(void);

/* Internal invariants only, never user input. */
#define QG_ASSERT(c)                                                              \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "qgrad: internal error at %s:%d: %s\n", __FILE__,     \
                    __LINE__, #c);                                                \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* ------------------------------------------------------------- allocation */

/* Counted, 64-byte aligned heap blocks (qg_live_allocations counts them). */
void *qg__alloc(size_t nbytes);
/* Test hooks (declared for tests in tests/hooks.h): fail the allocation n calls from
 * now, once; count allocation calls. qg__alloc_fails is the check both allocators make. */
void qg__fail_alloc_after(int64_t n);
int64_t qg__alloc_calls(void);
bool qg__alloc_fails(void);
void *qg__calloc(size_t nbytes);
void qg__free(void *p);

/* ------------------------------------------------------------- sizes */

/* The most elements a tensor's dims may reach: the product of max(size, 1) over its
 * dims is at most this, so element offsets times any dtype size, and sums of a few of
 * them, fit in int64. Sizes are checked against it wherever a shape is made. */
#define QG_MAX_SPAN ((int64_t)1 << 59)
/* error (QG_ESHAPE, naming op) unless every size is >= 0 and their span fits */
qg_status qg__check_sizes(const char *op, int ndim, const int64_t *shape);

/* batch_norm of x / f[c] (f: (C), same dtype, may require grad): the forward bits of
 * qg_div(x, f viewed (1, C, 1...)) then qg_batch_norm, in one op (batchnorm.c). */
qg_tensor *qg__batch_norm_div(const qg_tensor *x, const qg_tensor *f, qg_tensor *running_mean,
                              qg_tensor *running_var, const qg_tensor *weight, const qg_tensor *bias, bool training,
                              double momentum, double eps);

/* ------------------------------------------------------------- modules */

/* Registers a tensor a constructor just made (param or buffer): NULL is that
 * constructor's failure, returned as the error, where the public add functions
 * would register None. For nn/ and qat/ constructors. */
struct qg_module;
qg_status qg__module_add_param_made(struct qg_module *m, const char *name, qg_tensor *t);
qg_status qg__module_add_buffer_made(struct qg_module *m, const char *name, qg_tensor *t);
/* For a Sequential: whether m fuses with next (qg_module_type.fuses, neither with an
 * output hook), and next(m(x)) through m's forward_fused, with qg_module_forward's
 * bookkeeping (error labels, profiling under m's path). */
bool qg__module_fuses(const struct qg_module *m, const struct qg_module *next);
qg_tensor *qg__module_forward_fused(struct qg_module *m, struct qg_module *next, qg_tensor *x);
/* A BatchNorm1d/2d module's forward of x / f[c] (qg__batch_norm_div, the module's
 * running-stat rules); NULL with an error if bn is not one. */
qg_tensor *qg__bn_forward_div(struct qg_module *bn, qg_tensor *x, qg_tensor *f);
/* The module's path if one was set (prepare sets them), else its type name. */
const char *qg__module_label(const struct qg_module *m);
/* The tree, for qat/: child i (and its name); child i replaced in place (the output
 * hook follows; the old child is the caller's); a parameter taken out of its slot
 * (the slot keeps the name, holding None). */
int qg__module_nchildren(const struct qg_module *m);
struct qg_module *qg__module_child_at(const struct qg_module *m, int i, const char **name);
void qg__module_set_child_at(struct qg_module *m, int i, struct qg_module *child);
qg_tensor *qg__module_take_param(struct qg_module *m, const char *name);
/* Slots by index, for lookups done once: a name's index (-1 if absent; slots are
 * never removed, so an index stays valid) and the tensor a slot holds now. */
int qg__module_param_index(const struct qg_module *m, const char *name);
int qg__module_buffer_index(const struct qg_module *m, const char *name);
int qg__module_child_index(const struct qg_module *m, const char *name);
qg_tensor *qg__module_param_at(const struct qg_module *m, int i);
qg_tensor *qg__module_buffer_at(const struct qg_module *m, int i);

/* ------------------------------------------------------------- files (files.c) */

/* A file written whole or not at all: open makes a temporary file next to path,
 * write appends (a failure is remembered, and later writes do nothing), commit flushes
 * it and renames it over path, abort removes it. Every failure has set the error,
 * naming op and path, and removed the temporary file. */
typedef struct {
    int fd, err;
    bool failed;
    const char *op, *path;
    char *tmp;
} qg__afile;
qg_status qg__afile_open(qg__afile *f, const char *op, const char *path);
bool qg__afile_write(qg__afile *f, const void *p, size_t n);
qg_status qg__afile_finish(qg__afile *f); /* flush and close: then only commit or abort */
qg_status qg__afile_commit(qg__afile *f);
void qg__afile_abort(qg__afile *f);

/* A growing NUL-terminated text; oom notes an allocation that failed (the text is
 * then incomplete, and every later add does nothing). */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} qg__text;
void qg__text_add(qg__text *b, const char *s, size_t n);
void qg__text_printf(qg__text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qg__text_free(qg__text *b);

/* ------------------------------------------------------------- exporters */

/* What a quantized pool computes (autograd/ops/pool.c, docs/int8.md), for the
 * exporters: with qg__qpool_trace pointing at one, the next quantized pool this thread
 * runs describes itself there (set = true): its rule, geometry (adaptive windows under
 * qnnpack become its average pool's kernel and stride) and qnnpack's multiplier. */
typedef enum {
    QG_QPOOL_MAX, QG_QPOOL_AVG_NCHW, QG_QPOOL_AVG_NHWC, QG_QPOOL_AVG_QNNPACK,
    QG_QPOOL_ADAPTIVE_NCHW, QG_QPOOL_ADAPTIVE_NHWC
} qg__qpool_rule;
typedef struct {
    qg__qpool_rule rule;
    int64_t C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, divisor;
    bool count_include_pad, u8, set;
    float ms;
} qg__qpool_desc;
extern _Thread_local qg__qpool_desc *qg__qpool_trace;

/* ------------------------------------------------------------- threads */

#ifdef _OPENMP
#include <omp.h>
#endif
/* Work (roughly elements touched) above which a kernel goes parallel. */
#define QG_PAR_THRESHOLD 32768
int qg__threads_for(int64_t work);
/* floor(n * t / nt), the start of thread t's share of n items, without overflow */
static inline int64_t qg__share(int64_t n, int t, int nt) { return n / nt * t + n % nt * t / nt; }
/* a * b for work estimates, saturating at INT64_MAX (a, b >= 0) */
static inline int64_t qg__sat_mul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
/* This thread's number inside a parallel region (0 outside, or without OpenMP). */
static inline int qg__thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ------------------------------------------------------------- profiling
 * For bench/step, off unless qg__prof_on is set; not thread-safe (one training loop).
 * The modules at depth `depth` of the forward (0: the model, 1: its children) have
 * their forwards timed; tape nodes recorded inside one are attributed to it (path;
 * NULL outside any, e.g. the loss) and timed one by one in backward; the float GEMM
 * adds its time (per thread inside parallel regions, times the thread count outside
 * them: thread-seconds) to `gemm`. */
typedef struct qg__prof {
    int depth;
    void (*on_forward)(void *ctx, const char *path, double seconds);
    void (*on_backward)(void *ctx, const char *path, const char *op, double seconds);
    void *ctx;
    double gemm; /* thread-seconds inside qg__gemm */
} qg__prof;
extern qg__prof *qg__prof_on;
extern _Thread_local const char *qg__prof_path; /* the timed module running now */
double qg__now(void);                              /* seconds, monotonic */

/* ------------------------------------------------------------- storage */

struct qg_storage {
    void *data;
    size_t nbytes;
    int refcount;   /* caller-owned storages; tape storages are not counted */
    bool on_tape;
};

/* ------------------------------------------------------------- shapes */

int64_t qg__numel(int ndim, const int64_t *shape);
void qg__contig_strides(int ndim, const int64_t *shape, int64_t *strides);
/* Normalises dim into [0, ndim); error (naming op) if out of range. */
qg_status qg__dim(const char *op, int dim, int ndim, int *out);
bool qg__is_float(qg_dtype dt);
/* Common argument checks: non-NULL, float dtype; a and b same dtype. */
qg_status qg__check_float(const char *op, const qg_tensor *a);
/* QG_ESTATE with "op: tensor from a reset tape" if x is a tape tensor of an earlier
 * pass (QG_OK for NULL and caller-owned tensors). */
qg_status qg__live(const char *op, const qg_tensor *x);
qg_status qg__check_same_float(const char *op, const qg_tensor *a, const qg_tensor *b);

static inline char *qg__data(const qg_tensor *t) {
    return (char *)t->storage->data + (size_t)t->offset * qg_dtype_size(t->dtype);
}

/* ------------------------------------------------------------- dtype templates
 * QG_FLOAT_DISPATCH(dt, BODY) expands BODY with `real` = float or double. */
#define QG_FLOAT_DISPATCH(dt, ...)                  \
    do {                                            \
        if ((dt) == QG_F32) {                       \
            typedef float real;                     \
            __VA_ARGS__                             \
        } else {                                    \
            typedef double real;                    \
            __VA_ARGS__                             \
        }                                           \
    } while (0)

/* ------------------------------------------------------------- quantized tensors */

/* A copy of q with its per-channel arrays in one block: on the current tape (freed at
 * reset) or on the heap (qg__free). NULL when out of memory (message set). */
qg_quant *qg__quant_dup(const qg_quant *q, bool on_tape);
/* Do a and b map integers to reals the same way (both NULL included)? */
bool qg__quant_same(const qg_quant *a, const qg_quant *b);
/* The integer dtype of a qdtype (U8, I8, I32) and its range. */
qg_dtype qg__qdtype_storage(qg_qdtype d);
void qg__qdtype_range(qg_qdtype d, int64_t *qmin, int64_t *qmax);
/* QG_EINVAL (naming op, and the channel c if c >= 0) unless dtype is a qdtype, scale a
 * finite positive float32 and zp in the dtype's range. */
qg_status qg__check_qdtype(const char *op, qg_qdtype dtype);
qg_status qg__check_qparam(const char *op, int64_t c, double scale, int64_t zp, qg_qdtype dtype);
/* "quint8" etc. for a quantized tensor's dtype, else qg_dtype_name */
const char *qg__type_name(const qg_tensor *t);

/* element of any dtype to double and back */
double qg__load(const void *p, qg_dtype dt);
void qg__store(void *p, qg_dtype dt, double v);

/* Reductions over the ranks of a data-parallel run (qg_ddp's sync_bn and
 * sync_observers), current on this thread while qg_ddp runs a forward (both) or a
 * backward (bn); NULL otherwise. Each call is a collective: every rank makes the same
 * calls in the same order, which the same model on every rank gives. */
typedef struct qg__sync {
    void *ctx;
    qg_status (*sum)(void *ctx, double *v, int64_t n); /* in place: the sum over the ranks */
    qg_status (*min)(void *ctx, float *v, int64_t n);  /* in place: the minimum over the ranks */
} qg__sync;
extern _Thread_local const qg__sync *qg__sync_bn, *qg__sync_obs;

/* Called by qg_backward on this thread while set (qg_ddp, to start a bucket's
 * all-reduce once backward has finished its gradients): begin with the tape's last
 * node before any runs (the others by ->prev), after with each node that ran. */
typedef struct qg__bwd_hook {
    void *ctx;
    void (*begin)(void *ctx, const qg_node *last);
    void (*after)(void *ctx, const qg_node *n);
} qg__bwd_hook;
extern _Thread_local const qg__bwd_hook *qg__bwd_hook_on;

#endif
