/* qgrad/nn.h — modules, layers, losses and state dicts.
 *
 * Built on qgrad/autograd.h; knows nothing of quantization (that is qgrad/qat.h).
 */
#ifndef QGRAD_NN_H
#define QGRAD_NN_H

#include "qgrad/export.h"

#include "qgrad/autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================== tensor dicts, safetensors
 *
 * A qg_tensor_dict is an ordered map name -> tensor (insertion order is kept;
 * replacing an entry keeps its place). It owns its tensors and copies of its names;
 * qg_tensor_dict_free frees them all. It also holds the file's "__metadata__", a
 * map string -> string.
 *
 * Files are safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"key": "value"}}), then the tensor bytes, little-endian, C order.
 * Dtypes: F32, F64, I64, I32, U8, I8 (and BOOL, read as U8). Loading checks every
 * field, offset and size (a corrupt file gives NULL and a message naming the file,
 * the tensor and the problem, never a crash); like the reference implementation it
 * rejects overlapping tensors and bytes not covered by any tensor.
 */
typedef struct qg_tensor_dict qg_tensor_dict;

QG_API qg_tensor_dict *qg_tensor_dict_new(void);
QG_API void qg_tensor_dict_free(qg_tensor_dict *d); /* NULL is a no-op */
QG_API int qg_tensor_dict_size(const qg_tensor_dict *d);
/* Entry i in insertion order (0 <= i < size); NULL with an error if out of range. */
QG_API const char *qg_tensor_dict_name(const qg_tensor_dict *d, int i);
QG_API qg_tensor *qg_tensor_dict_at(const qg_tensor_dict *d, int i);
/* NULL with an error (QG_EINVAL, naming the key) if absent. */
QG_API qg_tensor *qg_tensor_dict_get(const qg_tensor_dict *d, const char *name);
/* Adds t under name, replacing (and freeing) an existing entry of that name.
 * t must be caller-owned (not an op output: clone those first). The dict takes
 * ownership of t even when the call fails (t is then freed), so
 * qg_tensor_dict_put(d, "w", qg_tensor_clone(w)) never leaks. A tensor may be in a
 * dict only once. Names are non-empty and not "__metadata__". */
QG_API qg_status qg_tensor_dict_put(qg_tensor_dict *d, const char *name, qg_tensor *t);
/* The "__metadata__" string map (key and value are copied; setting a key again
 * replaces its value). */
QG_API qg_status qg_tensor_dict_set_meta(qg_tensor_dict *d, const char *key, const char *value);
QG_API const char *qg_tensor_dict_meta(const qg_tensor_dict *d, const char *key); /* NULL if absent */
QG_API int qg_tensor_dict_meta_size(const qg_tensor_dict *d);
/* Metadata entry i (insertion order): its key, and its value through *value. */
QG_API const char *qg_tensor_dict_meta_at(const qg_tensor_dict *d, int i, const char **value);

/* Reads a safetensors file; the tensors are new caller-owned contiguous tensors. */
QG_API qg_tensor_dict *qg_safetensors_load(const char *path);
/* Same, from a buffer holding a whole file. */
QG_API qg_tensor_dict *qg_safetensors_parse(const void *buf, size_t len);
/* Writes d to path: to a temporary file in the same folder, fsync, then rename, so a
 * crash never leaves a half-written file. Each tensor is written in C order whatever
 * its strides; entries keep the dict's order, "__metadata__" comes first. */
QG_API qg_status qg_safetensors_save(const char *path, const qg_tensor_dict *d);

/* ======================================================== end tensor dicts */

/* ======================================================== modules
 *
 * A module has a type (its PyTorch class name and functions), a training flag,
 * named children, named parameters and named buffers. Names compose into PyTorch
 * state-dict paths ("features.0.weight", "bn.running_mean"). A module owns its
 * parameters, buffers and children: qg_module_free frees the whole tree.
 *
 * Writing your own module type in C (tests/test_examples.sh compiles it):
 *
 * ```c
 * typedef struct { qg_module base; double alpha; } my_act;   // base comes first
 * static qg_tensor *my_act_forward(qg_module *m, qg_tensor *x) {
 *     my_act *a = (my_act *)m;
 *     return qg_add(qg_relu(x), qg_mul_scalar(qg_neg(qg_relu(qg_neg(x))), a->alpha));
 * }
 * static const qg_module_type my_act_type = {
 *     .name = "MyAct", .size = sizeof(my_act), .forward = my_act_forward};
 * qg_module *my_act_new(double alpha) {
 *     qg_module *m = qg_module_new(&my_act_type);
 *     if (!m) return NULL;
 *     ((my_act *)m)->alpha = alpha;
 *     if (qg_module_add_param(m, "weight", qg_tensor_zeros(QG_F32, 1, (int64_t[]){8}))) {
 *         qg_module_free(m);
 *         return NULL;
 *     }
 *     return m;
 * }
 * ```
 *
 * Parameters and buffers are caller-owned tensors handed to the module; parameters
 * get requires_grad. A parameter slot may hold NULL (e.g. "bias" when there is
 * none): it keeps its place but is skipped by iteration and state dicts, as in
 * PyTorch's register_parameter(name, None).
 */
typedef struct qg_module qg_module;

typedef struct qg_module_type {
    const char *name;   /* PyTorch class name: "Linear", "Conv2d", ... */
    size_t size;        /* sizeof the struct that embeds qg_module first */
    /* Output for one input; NULL with an error on failure. */
    qg_tensor *(*forward)(qg_module *m, qg_tensor *x);
    /* Optional: what train(mode) does to this module and its children (default:
     * set m->training and recurse). */
    void (*train)(qg_module *m, bool mode);
    /* Optional: frees what the embedding struct owns beyond params/buffers/children. */
    void (*free)(qg_module *m);
    /* Optional: vets the tensors a state-dict load would give this module beyond their
     * own shapes (lengths that must agree with each other). get(name) is the tensor the
     * load would leave under the module's local name (the file's, else the module's
     * own). Non-QG_OK, with a message, refuses the whole load. */
    qg_status (*check_load)(const qg_module *m, const qg_tensor *(*get)(const char *name, void *ctx), void *ctx);
    /* Optional, both or neither: a fusion with the module that follows in a
     * Sequential, past any Identity without an output hook (fuse_modules leaves Identity
     * where the fused modules were). When fuses(m, next) is true and neither module has
     * an output hook, the Sequential calls forward_fused(m, next, x) instead of the
     * forwards: it must return the very tensor next(m(x)) would be. The int8 Conv2d
     * takes a 2 x 2 max pool into its epilogue this way. */
    bool (*fuses)(const qg_module *m, const qg_module *next);
    qg_tensor *(*forward_fused)(qg_module *m, qg_module *next, qg_tensor *x);
} qg_module_type;

typedef struct qg_named {
    char *name;
    void *ptr;      /* qg_tensor * or qg_module * */
    unsigned flags; /* QG_BUFFER_RESIZABLE, QG_BUFFER_FIXED_DTYPE */
} qg_named;

/* A buffer whose shape a state dict may change on load (PyTorch's observers and
 * fake-quant modules resize min_val/max_val/scale/zero_point the same way). */
#define QG_BUFFER_RESIZABLE 1u
/* A buffer whose dtype is part of its meaning, which qg_module_to leaves as it is:
 * quantization parameters (scale, min_val/max_val, eps) stay float32 in a model
 * converted to float64, as the fake-quant kernels read them. */
#define QG_BUFFER_FIXED_DTYPE 2u

struct qg_module {
    const qg_module_type *type;
    bool training;
    int nparams, nbuffers, nchildren;
    qg_named *params, *buffers, *children;
    /* Applied to the output of every forward (PyTorch's forward hook calling
     * activation_post_process); it is also one of the children. */
    qg_module *output_hook;
    char *path; /* dotted path in its model, for messages (may be NULL) */
};

/* Allocates type->size zeroed bytes; training mode on. */
QG_API qg_module *qg_module_new(const qg_module_type *type);
QG_API void qg_module_free(qg_module *m);
/* Register; the module takes ownership (also on failure: t/child is freed).
 * Names are unique per kind and must not contain '.'. */
QG_API qg_status qg_module_add_param(qg_module *m, const char *name, qg_tensor *t);
QG_API qg_status qg_module_add_buffer(qg_module *m, const char *name, qg_tensor *t);
QG_API qg_status qg_module_add_child(qg_module *m, const char *name, qg_module *child);
/* Adds child under name and makes it the output hook: forward returns hook(forward(x)). */
QG_API qg_status qg_module_set_output_hook(qg_module *m, const char *name, qg_module *hook);
/* Sets a buffer's flags (QG_BUFFER_RESIZABLE | QG_BUFFER_FIXED_DTYPE). */
QG_API qg_status qg_module_buffer_set_flags(qg_module *m, const char *name, unsigned flags);
/* Direct lookups by own name (no dots); NULL if absent or empty. */
QG_API qg_tensor *qg_module_param(const qg_module *m, const char *name);
QG_API qg_tensor *qg_module_buffer(const qg_module *m, const char *name);
QG_API qg_module *qg_module_child(const qg_module *m, const char *name);
/* Module at a dotted path ("features.0"); "" is m itself. NULL with an error. */
QG_API qg_module *qg_module_get(qg_module *m, const char *path);
/* Replaces the module at a dotted path, returning the old one (now the caller's). */
QG_API qg_module *qg_module_replace(qg_module *m, const char *path, qg_module *new_child);
/* Takes the direct child `name` out of m (and out of its output hook, if it is one);
 * the caller owns it. */
QG_API qg_module *qg_module_remove_child(qg_module *m, const char *name);
/* Replaces (and frees) a parameter or buffer tensor, keeping its slot. */
QG_API qg_status qg_module_set_param(qg_module *m, const char *name, qg_tensor *t);
QG_API qg_status qg_module_set_buffer(qg_module *m, const char *name, qg_tensor *t);
QG_API bool qg_module_is(const qg_module *m, const char *type_name);

QG_API qg_tensor *qg_module_forward(qg_module *m, qg_tensor *x);
/* The module's path in its model (copied; NULL clears it), used in its error messages
 * ("block.fc (Linear): ..."); prepare sets every module's path. */
QG_API void qg_module_set_path(qg_module *m, const char *path);
QG_API void qg_module_train(qg_module *m, bool mode); /* recursive */
QG_API void qg_module_eval(qg_module *m);
/* Converts every parameter and buffer of floating dtype to dt (like .double()), except
 * buffers flagged QG_BUFFER_FIXED_DTYPE. */
QG_API qg_status qg_module_to(qg_module *m, qg_dtype dt);
/* Zeroes every parameter's grad. */
QG_API void qg_module_zero_grad(qg_module *m);

/* Flat lists in PyTorch's named_parameters() / named_buffers() order: a module's own
 * entries first, then each child's in registration order. Names are dotted paths.
 * The list is the caller's (qg_tensor_list_free); the tensors stay the module's. */
typedef struct qg_tensor_list {
    int n;
    char **names;
    qg_tensor **tensors;
} qg_tensor_list;
QG_API qg_tensor_list *qg_module_parameters(const qg_module *m);
QG_API qg_tensor_list *qg_module_buffers(const qg_module *m);
QG_API void qg_tensor_list_free(qg_tensor_list *l);
/* Visits every module of the tree (pre-order) with its dotted path. */
typedef void (*qg_module_visit_fn)(qg_module *m, const char *path, void *ctx);
QG_API void qg_module_apply(qg_module *m, qg_module_visit_fn fn, void *ctx);

/* State dict: parameters and buffers by dotted name (PyTorch's order: per module,
 * parameters then buffers, then children), as copies. */
QG_API qg_tensor_dict *qg_module_state_dict(const qg_module *m);
/* Strict load: every key of the module must be in d with the same shape and dtype,
 * and d must have no other key; otherwise an error listing the missing, unexpected
 * and mismatched keys, and the module is left unchanged. strict=false ignores
 * missing and unexpected keys (mismatches are still errors). */
QG_API qg_status qg_module_load_state_dict(qg_module *m, const qg_tensor_dict *d, bool strict);
QG_API qg_status qg_module_save(const qg_module *m, const char *path);            /* safetensors */
QG_API qg_status qg_module_load(qg_module *m, const char *path, bool strict);

/* ======================================================== layers
 * Constructors take PyTorch's arguments; options structs follow the rules of
 * autograd.h ("options"), so `&(qg_conv_opts){.padding = {2, 0}}` is PyTorch's
 * padding=(2, 0) and `.padding = QG_PAIR(1)` its padding=1. Weights are initialised as
 * PyTorch does (kaiming_uniform(a=sqrt(5)), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
 * from the generator (NULL = global). Modules are float32; qg_module_to converts.
 *
 * ```c
 * qg_module *net = qg_sequential_of(5, (qg_named_module[]){
 *     {"conv", qg_nn_conv2d_new(1, 8, 3, 3, &(qg_conv_opts){.padding = {2, 0}, .no_bias = true}, NULL)},
 *     {"bn", qg_nn_batchnorm2d_new(8, &(qg_bn_opts){.momentum = QG_SET(0), .eps = QG_SET(1e-3)})},
 *     {"relu", qg_nn_relu_new()},
 *     {"flat", qg_nn_flatten_new(1, -1)},
 *     {"fc", qg_nn_linear_new(8 * 30 * 26, 10, NULL, NULL)},
 * });
 * if (!net) fprintf(stderr, "%s\n", qg_last_error()); // one check for the whole model
 * qg_module_free(net);
 * ```
 */

QG_API qg_module *qg_sequential_new(void);
/* Appends child under the name str(index) (PyTorch's Sequential(*mods)). */
QG_API qg_status qg_sequential_append(qg_module *seq, qg_module *child);
/* Appends under a given name (PyTorch's Sequential(OrderedDict)). A NULL child (a
 * constructor that failed) is recorded like an op's NULL input: the Sequential keeps
 * the first failure, qg_sequential_status returns it (with its message) and forward
 * refuses to run, so a model built by many adds needs one check at the end. */
QG_API qg_status qg_sequential_add(qg_module *seq, const char *name, qg_module *child);
QG_API qg_status qg_sequential_status(const qg_module *seq);
/* A Sequential from an array, in one call: NULL if any module is NULL (every module
 * given is then freed, and the error is the failed constructor's). A NULL name is
 * the item's index, as qg_sequential_append names it. */
typedef struct qg_named_module {
    const char *name;
    qg_module *module;
} qg_named_module;
QG_API qg_module *qg_sequential_of(int n, const qg_named_module *items);

typedef struct qg_linear_opts {
    bool no_bias; /* bias=False */
} qg_linear_opts;
/* o NULL: PyTorch's defaults (bias=True), as for every layer's options */
QG_API qg_module *qg_nn_linear_new(int64_t in_features, int64_t out_features, const qg_linear_opts *o, qg_rng *gen);

typedef struct qg_conv_opts {
    int stride[2];   /* (h, w); an entry 0 = 1; Conv1d uses [0] */
    int padding[2];  /* (h, w), as given: {2, 0} is (2, 0); Conv1d uses [0] */
    int dilation[2]; /* (h, w); an entry 0 = 1; Conv1d uses [0] */
    int groups;      /* 0 = 1 */
    bool no_bias;    /* bias=False */
} qg_conv_opts;
QG_API qg_module *qg_nn_conv1d_new(int64_t in_ch, int64_t out_ch, int kernel, const qg_conv_opts *o, qg_rng *gen);
QG_API qg_module *qg_nn_conv2d_new(int64_t in_ch, int64_t out_ch, int kh, int kw, const qg_conv_opts *o, qg_rng *gen);

typedef struct qg_bn_opts {
    qg_opt_double eps;      /* unset = 1e-5; > 0 */
    qg_opt_double momentum; /* unset = 0.1; 0 (running stats never move) to 1 */
    bool cumulative;        /* momentum=None: cumulative moving average (momentum unused) */
    bool no_affine;      /* affine=False */
    bool no_track;       /* track_running_stats=False */
} qg_bn_opts;
QG_API qg_module *qg_nn_batchnorm1d_new(int64_t num_features, const qg_bn_opts *o);
QG_API qg_module *qg_nn_batchnorm2d_new(int64_t num_features, const qg_bn_opts *o);

QG_API qg_module *qg_nn_relu_new(void);
QG_API qg_module *qg_nn_relu6_new(void);
QG_API qg_module *qg_nn_hardtanh_new(double min_val, double max_val);
QG_API qg_module *qg_nn_identity_new(void);
QG_API qg_module *qg_nn_flatten_new(int start_dim, int end_dim); /* PyTorch default: 1, -1 */

typedef struct qg_pool_opts {
    int stride[2];   /* (h, w); an entry 0 = that kernel size (PyTorch's stride=None) */
    int padding[2];  /* (h, w), as given */
    int dilation[2]; /* (h, w); an entry 0 = 1 (max pool only) */
    bool ceil_mode;
    bool no_count_include_pad; /* avg pool: count_include_pad=False */
    int divisor_override;      /* avg pool: 0 = none */
} qg_pool_opts;
QG_API qg_module *qg_nn_maxpool2d_new(int kh, int kw, const qg_pool_opts *o);
QG_API qg_module *qg_nn_avgpool2d_new(int kh, int kw, const qg_pool_opts *o);
QG_API qg_module *qg_nn_adaptive_avgpool2d_new(int64_t oh, int64_t ow);
QG_API qg_module *qg_nn_dropout_new(double p, qg_rng *gen); /* gen NULL = global */

/* Hyper-parameters of a Linear, Conv1d/2d, BatchNorm1d/2d, pooling, Flatten or Dropout
 * module (for code that rebuilds, fuses or saves layers). Conv1d uses kernel[1],
 * stride[0], padding[0], dilation[0]; the pools kernel, stride, padding, dilation as
 * their constructors took them. */
typedef struct qg_layer_info {
    int64_t in, out;                 /* features / channels (BN: both num_features) */
    int kernel[2], stride[2], padding[2], dilation[2], groups;
    bool bias;
    double eps, momentum;            /* BN */
    bool cumulative, affine, track;  /* BN */
    bool ceil_mode, count_include_pad; /* pools */
    int divisor_override;              /* AvgPool2d: 0 = none */
    int64_t out_size[2];               /* AdaptiveAvgPool2d */
    int start_dim, end_dim;            /* Flatten */
    double p;                          /* Dropout */
} qg_layer_info;
QG_API qg_status qg_nn_layer_info(const qg_module *m, qg_layer_info *info);


#ifdef __cplusplus
}
#endif
#endif
