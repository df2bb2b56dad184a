/* Regression tests of the memory-safety faults found by fuzzing and by driving the
 * API with bad arguments, one function per fault, named after it. Run under ASan +
 * UBSan in CI: each must give an error with a message (or succeed where PyTorch does)
 * with zero sanitizer reports. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "qgrad/data.h"
#include "qgrad/optim.h"
#include "qgrad/qat.h"
#include "test_util.h"

/* Allocations past any memory must come back NULL under ASan too, as they do from malloc. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static qg_qconfig preset(const char *name) {
    qg_qconfig q;
    qg_qconfig_preset(name, &q);
    return q;
}

/* bytes of every tensor of m's state dict, in order */
static size_t state_bytes(const qg_module *m, unsigned char *buf, size_t cap) {
    qg_tensor_dict *sd = qg_module_state_dict(m);
    size_t n = 0;
    for (int i = 0; i < qg_tensor_dict_size(sd); i++) {
        const qg_tensor *t = qg_tensor_dict_at(sd, i);
        size_t k = (size_t)qg_tensor_numel(t) * qg_dtype_size(t->dtype);
        if (n + k + 8 > cap) break;
        memcpy(buf + n, &k, sizeof k < 8 ? sizeof k : 8), n += 8;
        memcpy(buf + n, qg_tensor_data(t), k), n += k;
    }
    qg_tensor_dict_free(sd);
    return n;
}

/* A checkpoint whose observer min_val/max_val, or fake-quant scale, has another
 * length than the model's loads (PyTorch lets these lengths vary) and then reads out
 * of bounds: every such load is refused, the model bit-identical, and forward works. */
static void test_checkpoint_observer_shape_mismatch(void) {
    const char *qcs[] = {"fbgemm", "qnnpack", "default"};
    const char *keys[] = {"weight_fake_quant.scale", "weight_fake_quant.zero_point",
                          "weight_fake_quant.activation_post_process.min_val",
                          "weight_fake_quant.activation_post_process.max_val"};
    static unsigned char before[1 << 16], after[1 << 16];
    for (int q = 0; q < 3; q++)
        for (int k = 0; k < 4; k++)
            for (int64_t len = 0; len <= 9; len += 3) {
                qg_qconfig qc = preset(qcs[q]);
                qg_module *m = qg_qat_from_float(qg_nn_linear_new(6, 5, NULL, NULL), &qc);
                qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 2, SHAPE(4, 6));
                qg_module_forward(m, x);
                qg_tape_reset(NULL);
                qg_tensor_dict *sd = qg_module_state_dict(m);
                bool zp = strstr(keys[k], "zero_point") != NULL;
                qg_tensor_dict_put(sd, keys[k], zp ? qg_tensor_zeros(QG_I32, 1, &len) : qg_tensor_full(QG_F32, 1, &len, 0.1));
                size_t nb = state_bytes(m, before, sizeof before);
                for (int strict = 0; strict < 2; strict++) {
                    qg_status st = qg_module_load_state_dict(m, sd, strict);
                    bool legal = st == QG_OK;
                    if (!legal) {
                        size_t na = state_bytes(m, after, sizeof after);
                        CHECK(na == nb && !memcmp(before, after, nb), "%s %s len %lld: a refused load changed the model",
                              qcs[q], keys[k], (long long)len);
                        CHECK(*qg_last_error(), "refused with a message");
                    }
                    qg_tensor *y = qg_module_forward(m, x); /* must not read out of bounds either way */
                    CHECK(y || *qg_last_error(), "forward after the load: an answer or an error");
                    qg_tape_reset(NULL);
                }
                qg_tensor_dict_free(sd);
                qg_tensor_free(x);
                qg_module_free(m);
            }
}

/* SGD (and Adam) after a parameter was resized read its momentum state out of bounds:
 * the step now refuses. (A freed parameter cannot be detected: parameters must
 * outlive the optimizer, as optim.h says.) */
static void test_optimizer_param_resized(void) {
    qg_tensor *p = qg_tensor_ones(QG_F32, 1, SHAPE(4));
    qg_tensor_set_requires_grad(p, true);
    char *names[] = {"p"};
    qg_tensor_list l = {1, names, &p}, *ps = &l;
    qg_sgd *sgd = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.1, .momentum = 0.9});
    qg_adam *adam = qg_adam_new(ps, &(qg_adam_opts){.lr = 0.1});
    qg_backward(qg_sum(qg_mul(p, p), 0, NULL, false), NULL);
    CHECK(qg_sgd_step(sgd) == QG_OK && qg_adam_step(adam) == QG_OK, "first steps: %s", qg_last_error());
    qg_tape_reset(NULL); /* the graph used p: resize_ waits for the reset */
    CHECK(qg_tensor_resize_(p, 1, SHAPE(64)) == QG_OK, "resize_: %s", qg_last_error());
    qg_tensor_free(p->grad), p->grad = qg_tensor_ones(QG_F32, 1, SHAPE(64));
    CHECK(qg_sgd_step(sgd) == QG_ESHAPE && strstr(qg_last_error(), "momentum buffer"), "sgd: %s", qg_last_error());
    CHECK(qg_adam_step(adam) == QG_ESHAPE && strstr(qg_last_error(), "keep its shape"), "adam: %s", qg_last_error());
    qg_sgd_free(sgd), qg_adam_free(adam);
    qg_tensor_free(p);
    qg_tape_reset(NULL);
}

/* A user-built dataset whose images and labels disagree in count or dtype overflowed
 * the loader's buffers or succeeded silently. */
static void test_loader_dataset_mismatch(void) {
    struct { qg_tensor *im, *lb; } bad[] = {
        {qg_tensor_zeros(QG_U8, 3, SHAPE(4, 2, 2)), qg_tensor_zeros(QG_U8, 1, SHAPE(3))},
        {qg_tensor_zeros(QG_U8, 3, SHAPE(4, 2, 2)), qg_tensor_zeros(QG_I64, 1, SHAPE(4))},
        {qg_tensor_zeros(QG_F32, 3, SHAPE(4, 2, 2)), qg_tensor_zeros(QG_U8, 1, SHAPE(4))},
        {qg_tensor_zeros(QG_U8, 2, SHAPE(4, 4)), qg_tensor_zeros(QG_U8, 1, SHAPE(4))},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qg_dataset d = {bad[i].im, bad[i].lb};
        qg_clear_error();
        CHECK(!qg_loader_new(&d, NULL) && strstr(qg_last_error(), "loader_new"), "dataset %zu: %s", i, qg_last_error());
        qg_dataset_free(&d);
    }
}

/* Calls that succeeded where an error was due. */
static void test_calls_that_must_fail(void) {
    qg_module *relu = qg_nn_relu_new();
    CHECK(qg_sequential_append(relu, qg_nn_relu_new()) != QG_OK && strstr(qg_last_error(), "not a Sequential"),
          "sequential_append on a non-Sequential: %s", qg_last_error());
    qg_module *seq = qg_sequential_new();
    CHECK(qg_fuse_modules_qat(seq, -1, NULL, NULL) == QG_EINVAL && strstr(qg_last_error(), "ngroups"),
          "fuse_modules_qat(m, -1, NULL, NULL): %s", qg_last_error());
    CHECK(!qg_nn_maxpool2d_new(2, 2, &(qg_pool_opts){.stride = {-1, 1}}), "pool with a negative stride");
    CHECK(!qg_nn_batchnorm2d_new(3, &(qg_bn_opts){.momentum = QG_SET(-0.1)}), "BN with a negative momentum");
    qg_qconfig qc = preset("fbgemm");
    CHECK(!qg_qat_new("qat.Conv2d", &(qg_qat_args){.in = 2, .out = 3, .kernel = {3, 3}, .padding = {-1, 0}}, &qc, NULL),
          "QAT conv with negative padding");
    CHECK(!qg_qat_new("qat.Nothing", &(qg_qat_args){.in = 2, .out = 3}, &qc, NULL), "unknown QAT type");
    qg_fq_spec bad = qc.activation;
    bad.averaging_constant = qg_set(1.5);
    CHECK(!qg_fake_quant_new(&bad), "averaging constant 1.5");
    bad = qc.activation, bad.eps = qg_set(0);
    CHECK(!qg_fake_quant_new(&bad), "eps 0");
    qg_module_free(relu), qg_module_free(seq);
}

#define ERR(call, what)                                                                                       \
    do {                                                                                                     \
        qg_clear_error();                                                                                    \
        const void *r_ = (call);                                                                             \
        CHECK(!r_ && strstr(qg_last_error(), what), "%s: expected an error with \"%s\", got %s", #call, what, \
              r_ ? "success" : qg_last_error());                                                             \
    } while (0)

/* Products and sums of sizes overflowed int64 (signed overflow, then buffers of the
 * wrapped size): creating, reshaping, narrowing, slicing, expanding, convolving with a
 * huge padding, pooling on a huge expand. Each is an error naming the op now. */
static void test_shape_arithmetic_overflow(void) {
    const int64_t G = (int64_t)1 << 62, T = (int64_t)1 << 32, F = (int64_t)1 << 40;
    ERR(qg_tensor_empty(QG_F32, 2, SHAPE(G, G)), "tensor_empty: shape");
    ERR(qg_tensor_zeros(QG_U8, 3, SHAPE(0, G, G)), "too large"); /* zero elements, strides still overflow */
    ERR(qg_tensor_ones(QG_F64, 2, SHAPE((int64_t)1 << 31, (int64_t)1 << 31)), "too large");
    ERR(qg_tensor_arange(QG_F32, 0, 1e30, 1), "too many");
    qg_tensor *x = qg_tensor_ones(QG_F32, 2, SHAPE(2, 3)), *v = qg_tensor_ones(QG_F32, 1, SHAPE(10));
    qg_tensor *one = qg_tensor_ones(QG_F32, 2, SHAPE(1, 1));
    CHECK(qg_tensor_resize_(x, 2, SHAPE(G, 4)) == QG_ESHAPE, "resize_ to (2^62, 4)");
    ERR(qg_reshape(x, 2, SHAPE(T, T)), "reshape: the target sizes multiply past");
    ERR(qg_view(x, 3, SHAPE(T, T, -1)), "view: the target sizes multiply past");
    ERR(qg_narrow(v, 0, 5, INT64_MAX), "narrow: start 5");
    ERR(qg_narrow(v, 0, INT64_MAX, 2), "out of range");
    qg_tensor *s = qg_slice(qg_slice(v, 0, 0, 10, 2), 0, 1, INT64_MAX, INT64_MAX); /* step * stride overflowed */
    CHECK(s && qg_tensor_numel(s) == 1 && qg_tensor_item(s) == 1, "slice with step INT64_MAX: one element");
    s = qg_slice(v, 0, INT64_MIN, INT64_MAX, 3);
    CHECK(s && qg_tensor_numel(s) == 4, "slice over everything with step 3: 4 elements");
    ERR(qg_expand(one, 2, SHAPE(F, F)), "expand: shape");
    ERR(qg_unsqueeze(qg_expand(one, 2, SHAPE((int64_t)1 << 31, (int64_t)1 << 31)), 0), "expand: shape");
    qg_tensor *img = qg_tensor_ones(QG_F32, 4, SHAPE(1, 1, 4, 4)), *w = qg_tensor_ones(QG_F32, 4, SHAPE(1, 1, 3, 3));
    ERR(qg_conv2d(img, w, NULL, NULL, (int[]){INT32_MAX, INT32_MAX}, NULL, 1), "conv2d: shape");
    ERR(qg_conv2d(img, w, NULL, (int[]){INT32_MAX, 1}, NULL, (int[]){INT32_MAX, INT32_MAX}, 1), "conv2d");
    /* within the size limit but past any memory (2^54 bytes): out of memory, cleanly */
    qg_tensor *x1 = qg_tensor_ones(QG_F32, 3, SHAPE(1, 1, 4)), *w1 = qg_tensor_ones(QG_F32, 3, SHAPE(1, 1, 3));
    ERR(qg_conv1d(qg_expand(x1, 3, SHAPE(1 << 20, 1, 4)), w1, NULL, 1, INT32_MAX, 1, 1), "out of memory");
    qg_tensor_free(x1), qg_tensor_free(w1);
    qg_tensor *px = qg_tensor_ones(QG_F32, 4, SHAPE(1, 1, 1, 1));
    ERR(qg_max_pool2d(qg_expand(px, 4, SHAPE(1, 1, (int64_t)1 << 31, (int64_t)1 << 31)), (int[]){2, 2}, NULL, NULL,
                      NULL, false), "expand: shape");
    ERR(qg_avg_pool2d(qg_expand(px, 4, SHAPE(T, T, 4, 4)), (int[]){2, 2}, NULL, NULL, false, true, 0), "expand: shape");
    ERR(qg_adaptive_avg_pool2d(img, F, F), "adaptive_avg_pool2d: shape");
    /* a big pooling window on a tall expanded plane: work estimates saturate, no overflow */
    qg_tensor *tall = qg_expand(px, 4, SHAPE(1, 1, (int64_t)1 << 28, 1));
    qg_tensor *pooled = qg_max_pool2d(tall, (int[]){1 << 27, 1}, (int[]){1 << 27, 1}, NULL, NULL, false);
    CHECK(pooled && qg_tensor_numel(pooled) == 2, "max_pool2d with a 2^27 window: %s", qg_last_error());
    qg_tensor_free(x), qg_tensor_free(v), qg_tensor_free(one), qg_tensor_free(img), qg_tensor_free(w), qg_tensor_free(px);
    qg_tape_reset(NULL);
}

/* Ops on expanded (stride-0) inputs overflowed the heap when the expanded shape's
 * byte count wrapped (2^31 x 2^31 floats is 2^64 bytes, allocated as 0): refused now.
 * And on ordinary expanded inputs every kind of op agrees with the materialized copy
 * (the gradchecks of every op also run on expanded inputs, tests/gc_layouts.h). */
static void test_expand_then_op_heap_overflow(void) {
    qg_tensor *one = qg_tensor_ones(QG_F32, 2, SHAPE(1, 1));
    const int64_t H = (int64_t)1 << 31;
    ERR(qg_add(qg_expand(one, 2, SHAPE(H, H)), one), "expand: shape");
    ERR(qg_sum(qg_expand(one, 2, SHAPE(H, H)), 0, NULL, false), "expand: shape");
    qg_tensor *row = qg_tensor_randn(NULL, QG_F64, 2, SHAPE(1, 37)), *col = qg_tensor_randn(NULL, QG_F64, 2, SHAPE(41, 1));
    qg_tensor *a = qg_expand(row, 2, SHAPE(41, 37)), *b = qg_expand(col, 2, SHAPE(41, 37));
    qg_tensor *ac = qg_tensor_clone(a), *bc = qg_tensor_clone(b);
    qg_tensor *pairs[][2] = {{qg_add(a, b), qg_add(ac, bc)}, {qg_mul(a, b), qg_mul(ac, bc)},
                             {qg_sum(a, 1, (const int[]){0}, false), qg_sum(ac, 1, (const int[]){0}, false)},
                             {qg_sum(b, 0, NULL, false), qg_sum(bc, 0, NULL, false)},
                             {qg_softmax(b, 1), qg_softmax(bc, 1)}, {qg_exp(a), qg_exp(ac)},
                             {qg_matmul(a, qg_transpose(b, 0, 1)), qg_matmul(ac, qg_transpose(bc, 0, 1))},
                             {qg_contiguous(b), bc}};
    for (size_t k = 0; k < sizeof pairs / sizeof *pairs; k++) {
        qg_tensor *d = qg_abs(qg_sub(pairs[k][0], pairs[k][1]));
        double err = d ? qg_tensor_item(qg_max(qg_reshape(d, 1, SHAPE(-1)), 0, false, NULL)) : NAN;
        CHECK(err <= 1e-12, "op %zu on expanded inputs: max error %g", k, err);
    }
    qg_tensor_free(one), qg_tensor_free(row), qg_tensor_free(col), qg_tensor_free(ac), qg_tensor_free(bc);
    qg_tape_reset(NULL);
}

/* A scheduler state dict with last_epoch near INT64_MAX, or below -1, overflowed the
 * epoch arithmetic: refused at load; a scheduler at the 2^53 limit refuses to step. */
static void test_scheduler_last_epoch_overflow(void) {
    qg_tensor *p = qg_tensor_ones(QG_F32, 1, SHAPE(2));
    char *names[] = {"p"};
    qg_tensor_list l = {1, names, &p};
    qg_sgd *opt = qg_sgd_new(&l, &(qg_sgd_opts){.lr = 0.1});
    qg_lr_scheduler *sc[] = {qg_step_lr_new(opt, 3, 0.5), qg_cosine_annealing_lr_new(opt, 10, 0.0)};
    const int64_t bad[] = {INT64_MAX, INT64_MAX - 1, ((int64_t)1 << 53) + 1, -2, INT64_MIN};
    for (int k = 0; k < 2; k++) {
        qg_tensor_dict *d = qg_tensor_dict_new();
        CHECK(qg_lr_scheduler_state_dict(sc[k], d, "s.") == QG_OK, "state dict");
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            for (int field = 0; field < 2; field++) {
                qg_tensor_dict *e = qg_tensor_dict_new();
                for (int j = 0; j < qg_tensor_dict_size(d); j++)
                    qg_tensor_dict_put(e, qg_tensor_dict_name(d, j), qg_tensor_clone(qg_tensor_dict_at(d, j)));
                qg_tensor_dict_put(e, field ? "s._step_count" : "s.last_epoch", qg_tensor_from_data(QG_I64, 0, NULL, &bad[i]));
                qg_clear_error();
                CHECK(qg_lr_scheduler_load_state_dict(sc[k], e, "s.") == QG_EINVAL && *qg_last_error(),
                      "scheduler %d %s = %lld: %s", k, field ? "_step_count" : "last_epoch", (long long)bad[i],
                      qg_last_error());
                qg_tensor_dict_free(e);
            }
        }
        /* at the limit: loads, then refuses to step past it */
        int64_t lim = (int64_t)1 << 53;
        qg_tensor_dict_put(d, "s.last_epoch", qg_tensor_from_data(QG_I64, 0, NULL, &lim));
        CHECK(qg_lr_scheduler_load_state_dict(sc[k], d, "s.") == QG_OK, "last_epoch 2^53 loads: %s", qg_last_error());
        CHECK(qg_lr_scheduler_step(sc[k]) == QG_EINVAL && strstr(qg_last_error(), "2^53"), "step at 2^53: %s",
              qg_last_error());
        qg_tensor_dict_free(d);
        qg_lr_scheduler_free(sc[k]);
    }
    qg_sgd_free(opt);
    qg_tensor_free(p);
}

/* Freeing a leaf (a parameter, the input batch, a tensor a view reads) before
 * backward left the graph pointing at freed memory: the tape now keeps such a tensor
 * until its reset, as PyTorch's graph keeps its inputs, and backward is correct. */
static void test_free_leaf_before_backward(void) {
    int64_t live = qg_live_allocations();
    qg_tensor *w = qg_tensor_full(QG_F32, 1, SHAPE(3), 2.0), *x = qg_tensor_full(QG_F32, 1, SHAPE(3), 5.0);
    qg_tensor_set_requires_grad(w, true);
    qg_tensor *v = qg_reshape(x, 2, SHAPE(3, 1));
    qg_tensor *loss = qg_sum(qg_mul(qg_mul(w, x), w), 0, NULL, false); /* sum(x w^2) */
    qg_tensor *g = NULL;
    qg_tensor_free(x); /* the batch, before backward */
    CHECK(qg_tensor_item(qg_sum(v, 0, NULL, false)) == 15, "a view of a freed tensor still reads it");
    CHECK(qg_backward(loss, NULL) == QG_OK, "backward after freeing the input: %s", qg_last_error());
    g = w->grad;
    CHECK(g && qg_tensor_get(g, SHAPE(1)) == 20, "d/dw = 2 x w = 20");
    qg_tensor *w2 = qg_tensor_full(QG_F32, 1, SHAPE(3), 2.0);
    qg_tensor_set_requires_grad(w2, true);
    qg_tensor *loss2 = qg_sum(qg_mul(w2, w2), 0, NULL, false);
    qg_tensor_free(w2); /* the parameter itself, before backward: its gradient goes nowhere */
    CHECK(qg_backward(loss2, NULL) == QG_OK, "backward after freeing the leaf: %s", qg_last_error());
    qg_tensor_free(w);
    qg_tape_reset(NULL);
    CHECK(qg_live_allocations() == live, "everything freed at the reset (%lld left)", (long long)(qg_live_allocations() - live));
}

/* qg_tape_free of the current tape: ops go on on a new default tape. */
static void test_tape_free_current(void) {
    qg_tape *t = qg_tape_new();
    qg_tape *prev = qg_tape_set_current(t);
    qg_tensor *a = qg_tensor_ones(QG_F32, 1, SHAPE(4));
    qg_tensor *y = qg_add(a, a);
    CHECK(y != NULL, "op on a new tape");
    qg_tensor_free(a); /* used by the pass: the tape takes it */
    qg_tape_free(t);
    CHECK(qg_tape_current() != t && qg_tape_current() != NULL, "a new current tape after freeing the current one");
    qg_tensor *b = qg_tensor_ones(QG_F32, 1, SHAPE(4));
    CHECK(qg_tensor_item(qg_sum(qg_add(b, b), 0, NULL, false)) == 8, "ops work after: %s", qg_last_error());
    qg_tensor_free(b);
    qg_tape_set_current(prev);
    qg_tape_reset(NULL);
}

/* qg_tensor_is_contiguous was wrong for zero-size shapes such as (3, 0). */
static void test_is_contiguous_zero_size(void) {
    qg_tensor *t = qg_tensor_zeros(QG_F32, 2, SHAPE(3, 0));
    CHECK(qg_tensor_is_contiguous(t) && qg_tensor_is_contiguous(qg_transpose(t, 0, 1)), "(3, 0) is contiguous");
    qg_tensor_free(t);
    qg_tape_reset(NULL);
}

static char tmpdir[64];

/* writes n bytes to tmpdir/name (gzip-compressed when gz); returns the path */
static const char *write_file(const char *name, const void *data, size_t n, bool gz) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    tst_write_file(path, data, n, gz);
    return path;
}

/* An IDX header with a zero dim and then huge ones: n stays 0 but the strides of the
 * later dims overflowed signed 64-bit (qg__contig_strides, UB). Refused now. */
static void test_idx_crafted_dims_overflow(void) {
    const unsigned char heads[][24] = {
        {0, 0, 8, 4, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
        {0, 0, 0xe, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
        {0, 0, 0xc, 5, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0},
    };
    const size_t lens[] = {20, 16, 24};
    for (int i = 0; i < 3; i++)
        for (int gz = 0; gz < 2; gz++) {
            qg_clear_error();
            qg_tensor *t = qg_idx_load(write_file("dims.idx", heads[i], lens[i], gz));
            CHECK(!t && strstr(qg_last_error(), "too large"), "header %d gz %d: %s", i, gz, qg_last_error());
            qg_tensor_free(t);
        }
}

/* A 20-byte IDX file whose header claims 3.7 GB (or a gzip file claiming more than
 * deflate can expand to) was allocated before the size was checked: out of memory
 * instead of an error. Now refused with no allocation. */
static void test_idx_claims_more_than_file(void) {
    const unsigned char head[] = {0, 0, 8, 3, 0, 0, 0x3c, 0x60, 0, 0, 0x0f, 0xff, 0, 0, 0x0f, 0xff, 1, 2, 3, 4};
    for (int gz = 0; gz < 2; gz++) {
        int64_t live = qg_live_allocations();
        qg_clear_error();
        qg_tensor *t = qg_idx_load(write_file("big.idx", head, sizeof head, gz));
        CHECK(!t && strstr(qg_last_error(), gz ? "gzip file can hold" : "truncated: the header gives"), "gz %d: %s", gz,
              qg_last_error());
        CHECK(qg_live_allocations() == live, "gz %d: nothing allocated", gz);
    }
    /* a plain file with one byte too few or too many is refused too; the exact size loads */
    const unsigned char ok[] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7};
    for (size_t n = sizeof ok - 2; n <= sizeof ok; n++)
        for (int gz = 0; gz < 2; gz++) {
            qg_tensor *t = qg_idx_load(write_file("small.idx", ok, n, gz));
            CHECK(!t == (n != sizeof ok - 1), "%zu bytes gz %d: %s", n, gz, t ? "loaded" : qg_last_error());
            qg_tensor_free(t);
        }
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL: a loader hung on a FIFO\n";
    (void)!write(1, msg, sizeof msg - 1);
    _exit(1);
}

/* Loading from a FIFO (or /dev/zero, a directory) hung both loaders: each is refused
 * as not a regular file. An alarm turns a hang into a failure. */
static void test_loaders_fifo_and_nonregular(void) {
    char fifo[128], dsdir[128], dsfifo[192];
    snprintf(fifo, sizeof fifo, "%s/fifo", tmpdir);
    snprintf(dsdir, sizeof dsdir, "%s/ds", tmpdir);
    snprintf(dsfifo, sizeof dsfifo, "%s/train-images-idx3-ubyte", dsdir);
    CHECK(mkfifo(fifo, 0600) == 0 && mkdir(dsdir, 0700) == 0 && mkfifo(dsfifo, 0600) == 0, "mkfifo");
    signal(SIGALRM, on_alarm);
    alarm(20);
    const char *paths[] = {fifo, "/dev/zero", tmpdir, "/dev/null"};
    for (int i = 0; i < 4; i++) {
        qg_clear_error();
        qg_tensor *t = qg_idx_load(paths[i]);
        CHECK(!t && strstr(qg_last_error(), "not a regular file"), "idx_load %s: %s", paths[i], qg_last_error());
        qg_clear_error();
        qg_tensor_dict *d = qg_safetensors_load(paths[i]);
        CHECK(!d && *qg_last_error(), "safetensors_load %s: %s", paths[i], qg_last_error());
        qg_tensor_free(t), qg_tensor_dict_free(d);
    }
    qg_dataset ds;
    qg_clear_error();
    CHECK(qg_dataset_load_mnist(dsdir, true, &ds) != QG_OK && strstr(qg_last_error(), "not a regular file"),
          "dataset from a folder with a FIFO: %s", qg_last_error());
    alarm(0);
    unlink(dsfifo), rmdir(dsdir), unlink(fifo);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qg-hostile.XXXXXX");
    if (!mkdtemp(tmpdir)) return perror("mkdtemp"), 1;
    test_idx_crafted_dims_overflow();
    test_idx_claims_more_than_file();
    test_loaders_fifo_and_nonregular();
    test_shape_arithmetic_overflow();
    test_expand_then_op_heap_overflow();
    test_scheduler_last_epoch_overflow();
    test_free_leaf_before_backward();
    test_tape_free_current();
    test_is_contiguous_zero_size();
    test_checkpoint_observer_shape_mismatch();
    test_optimizer_param_resized();
    test_loader_dataset_mismatch();
    test_calls_that_must_fail();
    char rm[96];
    snprintf(rm, sizeof rm, "rm -rf %s", tmpdir);
    (void)!system(rm);
    qg_shutdown();
    return test_summary("hostile");
}
