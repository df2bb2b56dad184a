/* The hostile-argument tests' checks (tests/test_hostile_api*.c): each macro clears the
 * error, makes the call, and checks the outcome the name says. Include after
 * test_util.h and the qgrad headers. */
#ifndef QG_TEST_HOSTILE_H
#define QG_TEST_HOSTILE_H
#include <stdint.h>
#include <string.h>

#include "qgrad/data.h"
#include "qgrad/optim.h"
#include "qgrad/qat.h"
#include "test_util.h"

/* Sizes too large to allocate must give QG_ENOMEM, as PyTorch's allocator error: let
 * ASan's allocator return NULL for them instead of aborting the run. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* an error with a message (FAILS_OWN: of a creation function, whose result, returned
 * by mistake, is freed; op results are the tape's, and may be an input itself) */
#define FAILS_(call, own)                                                                               \
    do {                                                                                                \
        qg_clear_error();                                                                               \
        qg_tensor *r_ = (call);                                                                         \
        CHECK(!r_ && *qg_last_error(), "%s: expected an error, got %s (%s)", #call, r_ ? "a tensor" : "NULL", \
              qg_last_error());                                                                         \
        if (own) qg_tensor_free(r_);                                                                    \
    } while (0)
#define FAILS(call) FAILS_(call, false)
#define FAILS_OWN(call) FAILS_(call, true)
#define FAILS_ST(call)                                                                                 \
    do {                                                                                               \
        qg_clear_error();                                                                              \
        qg_status s_ = (call);                                                                         \
        CHECK(s_ < 0 && *qg_last_error(), "%s: expected an error, got %d (%s)", #call, (int)s_, qg_last_error()); \
    } while (0)
#define FAILS_NAN(call)                                                                               \
    do {                                                                                              \
        qg_clear_error();                                                                             \
        double v_ = (call);                                                                           \
        CHECK(isnan(v_) && *qg_last_error(), "%s: expected NAN and an error, got %g (%s)", #call, v_, \
              qg_last_error());                                                                       \
    } while (0)
/* success as in PyTorch (WORKS_OWN: the caller-owned result is freed) */
#define WORKS_(call, own)                                                                    \
    do {                                                                                     \
        qg_clear_error();                                                                    \
        qg_tensor *r_ = (call);                                                              \
        CHECK(r_ != NULL, "%s: expected success, got %s", #call, qg_last_error());          \
        if (own) qg_tensor_free(r_);                                                         \
    } while (0)
#define WORKS(call) WORKS_(call, false)
#define WORKS_OWN(call) WORKS_(call, true)
#define WORKS_ST(call)                                                                                   \
    do {                                                                                                 \
        qg_clear_error();                                                                                \
        qg_status s_ = (call);                                                                           \
        CHECK(s_ == QG_OK, "%s: expected success, got %d (%s)", #call, (int)s_, qg_last_error());       \
    } while (0)
/* either: a result, or an error with a message (qgrad's own convention differs) */
#define ANSWERS(call)                                                                                \
    do {                                                                                             \
        qg_clear_error();                                                                            \
        qg_tensor *r_ = (call);                                                                      \
        CHECK(r_ || *qg_last_error(), "%s: NULL without a message", #call);                         \
    } while (0)
/* a tensor of a reset tape: an error naming the reset tape */
#define STALE(call)                                                                                  \
    do {                                                                                             \
        qg_clear_error();                                                                            \
        qg_tensor *r_ = (call);                                                                      \
        CHECK(!r_ && strstr(qg_last_error(), "reset tape"), "%s on a stale tensor: %s", #call,        \
              qg_last_error());                                                                      \
    } while (0)
#define STALE_ST(call)                                                                              \
    do {                                                                                            \
        qg_clear_error();                                                                           \
        qg_status s_ = (call);                                                                      \
        CHECK(s_ < 0 && strstr(qg_last_error(), "reset tape"), "%s on a stale tensor: %d %s", #call, \
              (int)s_, qg_last_error());                                                            \
    } while (0)

/* the same for modules, dicts, lists, optimizers, schedulers, loaders: freed by F if
 * returned by mistake (F may be a no-op for borrowed results) */
#define FAILS_P(call, F)                                                                               \
    do {                                                                                               \
        qg_clear_error();                                                                              \
        void *p_ = (void *)(call);                                                                     \
        CHECK(!p_ && *qg_last_error(), "%s: expected an error, got %s (%s)", #call, p_ ? "a result" : "NULL", \
              qg_last_error());                                                                        \
        if (p_) F(p_);                                                                                 \
    } while (0)
#define WORKS_P(call, F)                                                                              \
    do {                                                                                              \
        qg_clear_error();                                                                             \
        void *p_ = (void *)(call);                                                                    \
        CHECK(p_ != NULL, "%s: expected success, got %s", #call, qg_last_error());                   \
        if (p_) F(p_);                                                                                \
    } while (0)
#define ANSWERS_P(call, F)                                                                       \
    do {                                                                                         \
        qg_clear_error();                                                                        \
        void *p_ = (void *)(call);                                                               \
        CHECK(p_ || *qg_last_error(), "%s: NULL without a message", #call);                      \
        if (p_) F(p_);                                                                           \
    } while (0)
static inline void no_free(void *p) { (void)p; }
static inline void mod_free(void *p) { qg_module_free(p); }
static inline void dict_free(void *p) { qg_tensor_dict_free(p); }
static inline void list_free(void *p) { qg_tensor_list_free(p); }
static inline void sgd_free(void *p) { qg_sgd_free(p); }
static inline void adam_free(void *p) { qg_adam_free(p); }
static inline void sched_free(void *p) { qg_lr_scheduler_free(p); }

#define N_(a) ((int)(sizeof(a) / sizeof *(a)))
#define BIG (INT64_C(1) << 62)

static inline qg_tensor *ones(qg_dtype dt, int ndim, const int64_t *shape) { return qg_tensor_ones(dt, ndim, shape); }
static inline void loader_free(void *p) { qg_loader_free(p); }
#endif
