/* Shared by the libFuzzer targets of tests/fuzz/ and their seed generator
 * (make_corpus.c): the models, optimizer and schedulers the targets load state
 * into, built the same way in both, and small helpers. Public API only. */
#ifndef QGRAD_FUZZ_COMMON_H
#define QGRAD_FUZZ_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qgrad/data.h"
#include "qgrad/nn.h"
#include "qgrad/optim.h"
#include "qgrad/qat.h"
#include "../qat_cnn.h"

static inline void fz_quiet_warning(const char *message, void *ctx) {
    (void)message, (void)ctx;
}

static inline void fz_die(const char *what) {
    fprintf(stderr, "fuzz setup: %s: %s\n", what, qg_last_error());
    abort();
}

/* An anonymous in-memory file, reachable through fz_path (/proc/self/fd/N), that
 * each input overwrites: path-taking loaders read it with no disk I/O. */
typedef struct {
    int fd;
    char path[64];
} fz_file;

static inline void fz_file_init(fz_file *f, const char *name) {
    f->fd = memfd_create(name, MFD_CLOEXEC);
    if (f->fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

static inline void fz_file_set(fz_file *f, const uint8_t *data, size_t size) {
    if (ftruncate(f->fd, 0)) abort();
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(f->fd, data + done, size - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
}

/* The small QAT CNN of tests/qat_cnn.h, fused and prepared; input (B, 1, 8, 8). */
static inline qg_module *fz_qat_cnn(void) {
    qg_module *m = qat_cnn_float();
    if (qg_sequential_status(m)) fz_die("qat_cnn");
    if (qat_cnn_fuse_prepare(m)) fz_die("qat_cnn fuse/prepare");
    return m;
}

/* The optimizer state target's parameters: a Sequential of Linear(3, 2) (f32) and
 * Linear(2, 4) converted to f64, so that buffers of both dtypes occur. */
static inline qg_module *fz_optim_model(void) {
    qg_module *m = qg_sequential_new();
    qg_sequential_add(m, "a", qg_nn_linear_new(3, 2, NULL, NULL));
    qg_sequential_add(m, "b", qg_nn_linear_new(2, 4, NULL, NULL));
    if (qg_sequential_status(m) || qg_module_to(qg_module_child(m, "b"), QG_F64)) fz_die("optim model");
    return m;
}

/* Gives every parameter of ps a grad (ones) by a backward of sum of all of them. */
static inline void fz_fill_grads(qg_tensor_list *ps) {
    for (int i = 0; i < ps->n; i++) {
        qg_tensor *p = ps->tensors[i];
        qg_tensor *s = qg_sum(p, 0, NULL, false);
        if (!s || qg_backward(s, NULL)) fz_die("backward");
    }
    qg_tape_reset(NULL);
}

enum { FZ_STEP, FZ_MULTISTEP, FZ_COSINE, FZ_LINEAR, FZ_SEQUENTIAL, FZ_CHAINED, FZ_NSCHED };
static const char *const fz_sched_names[FZ_NSCHED] = {"step", "multistep", "cosine", "linear", "sequential", "chained"};

static inline qg_lr_scheduler *fz_sched_new(qg_sgd *o, int kind) {
    static const int64_t ms[] = {1, 3, 3};
    qg_lr_scheduler *s = NULL;
    switch (kind) {
    case FZ_STEP: s = qg_step_lr_new(o, 2, 0.5); break;
    case FZ_MULTISTEP: s = qg_multi_step_lr_new(o, 3, ms, 0.1); break;
    case FZ_COSINE: s = qg_cosine_annealing_lr_new(o, 5, 0.01); break;
    case FZ_LINEAR: s = qg_linear_lr_new(o, 0.25, 1.0, 4); break;
    case FZ_SEQUENTIAL: {
        qg_lr_scheduler *parts[] = {qg_linear_lr_new(o, 0.5, 1.0, 2), qg_cosine_annealing_lr_new(o, 4, 0.0)};
        int64_t mil[] = {2};
        s = qg_sequential_lr_new(o, 2, parts, mil);
        break;
    }
    case FZ_CHAINED: {
        qg_lr_scheduler *parts[] = {qg_step_lr_new(o, 1, 0.9), qg_multi_step_lr_new(o, 2, ms, 0.5)};
        s = qg_chained_scheduler_new(2, parts);
        break;
    }
    }
    if (!s) fz_die(fz_sched_names[kind]);
    return s;
}

/* true if a and b hold the same names in the same order, and tensors of the same
 * dtype, shape and bytes (C order), and the same metadata */
static inline bool fz_dict_equal(const qg_tensor_dict *a, const qg_tensor_dict *b) {
    int n = qg_tensor_dict_size(a);
    if (n != qg_tensor_dict_size(b) || qg_tensor_dict_meta_size(a) != qg_tensor_dict_meta_size(b)) return false;
    for (int i = 0; i < n; i++) {
        if (strcmp(qg_tensor_dict_name(a, i), qg_tensor_dict_name(b, i))) return false;
        const qg_tensor *x = qg_tensor_dict_at(a, i), *y = qg_tensor_dict_at(b, i);
        if (x->dtype != y->dtype || x->ndim != y->ndim) return false;
        for (int k = 0; k < x->ndim; k++)
            if (x->shape[k] != y->shape[k]) return false;
        size_t bytes = (size_t)qg_tensor_numel(x) * qg_dtype_size(x->dtype);
        if (!bytes) continue;
        if (!qg_tensor_is_contiguous(x) || !qg_tensor_is_contiguous(y)) return false;
        if (memcmp(qg_tensor_data(x), qg_tensor_data(y), bytes)) return false;
    }
    for (int i = 0; i < qg_tensor_dict_meta_size(a); i++) {
        const char *va, *vb;
        const char *ka = qg_tensor_dict_meta_at(a, i, &va), *kb = qg_tensor_dict_meta_at(b, i, &vb);
        if (strcmp(ka, kb) || strcmp(va, vb)) return false;
    }
    return true;
}

#endif
