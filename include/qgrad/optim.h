/* qgrad/optim.h — SGD, Adam, AdamW and learning-rate schedules, as torch.optim (PyTorch 1.13).
 *
 * The optimizer works on caller-owned parameters (qg_tensor_list, e.g. from
 * qg_module_parameters) and their .grad, outside the tape: a step records nothing
 * and allocates nothing but each parameter's momentum buffer, once. It keeps a copy of the list of tensor
 * pointers, not the tensors: the parameters must outlive it. One parameter group.
 *
 * ```c
 * #include <qgrad/data.h>
 * qg_status train(qg_module *model, qg_loader *loader, int epochs) {
 *     qg_tensor_list *ps = qg_module_parameters(model);
 *     qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.1, .momentum = 0.9});
 *     qg_lr_scheduler *sched = qg_cosine_annealing_lr_new(opt, epochs, 0.0);
 *     qg_status st = sched ? QG_OK : qg_last_status();
 *     for (int epoch = 0; epoch < epochs && !st; epoch++) {
 *         qg_tensor *x, *y;
 *         qg_loader_start_epoch(loader, epoch);
 *         while (!st && qg_loader_next(loader, &x, &y)) {
 *             qg_sgd_zero_grad(opt);
 *             st = qg_backward(qg_cross_entropy(qg_module_forward(model, x), y, QG_REDUCTION_MEAN), NULL);
 *             if (!st) st = qg_sgd_step(opt);
 *             qg_tape_reset(NULL);
 *         }
 *         if (!st) qg_lr_scheduler_step(sched); // after the epoch's optimizer steps
 *     }
 *     qg_lr_scheduler_free(sched);             // schedulers first: they point at the optimizer
 *     qg_sgd_free(opt);
 *     qg_tensor_list_free(ps);
 *     return st;
 * }
 * ```
 */
#ifndef QGRAD_OPTIM_H
#define QGRAD_OPTIM_H

#include "qgrad/export.h"

#include "qgrad/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================== SGD */

typedef struct qg_sgd qg_sgd;

/* torch.optim.SGD's arguments; zero fields are PyTorch's defaults (lr has none:
 * give it). */
typedef struct qg_sgd_opts {
    double lr;           /* >= 0 */
    double momentum;     /* >= 0 */
    double dampening;
    double weight_decay; /* >= 0 */
    bool nesterov;       /* needs momentum > 0 and dampening == 0 */
    bool maximize;
} qg_sgd_opts;

/* Errors as PyTorch's (bad lr, momentum, weight_decay, nesterov without momentum or
 * with dampening, an empty list) and more: every parameter must be a caller-owned
 * (not tape) contiguous f32 or f64 tensor, listed once. */
QG_API qg_sgd *qg_sgd_new(const qg_tensor_list *params, const qg_sgd_opts *o);
QG_API void qg_sgd_free(qg_sgd *o); /* NULL is a no-op; frees the optimizer's state */

/* One step of torch.optim.SGD (its single-tensor path), per parameter p with a grad:
 *   g = grad (negated if maximize); g = g + weight_decay * p;
 *   if momentum: buf = g on the parameter's first step (a copy), else
 *                buf = momentum * buf + (1 - dampening) * g;
 *                g = nesterov ? g + momentum * buf : buf;
 *   p = p - lr * g.
 * Scalars are rounded to the parameter's dtype and each "x + a * y" is one fused
 * multiply-add, as PyTorch's AVX2 kernels compute it, so parameters follow PyTorch
 * bit for bit. Parameters whose grad is NULL are
 * skipped (their momentum buffer starts on their first step with a grad). A grad
 * must be contiguous with its parameter's shape and dtype; on any error nothing is
 * changed. */
QG_API qg_status qg_sgd_step(qg_sgd *o);
/* Zeroes every parameter's grad in place (PyTorch's zero_grad(set_to_none=False)). */
QG_API void qg_sgd_zero_grad(qg_sgd *o);

QG_API qg_status qg_sgd_set_lr(qg_sgd *o, double lr); /* lr >= 0 */
QG_API double qg_sgd_get_lr(const qg_sgd *o);         /* NAN if o is NULL */
QG_API const qg_sgd_opts *qg_sgd_opts_of(const qg_sgd *o);
QG_API int qg_sgd_num_params(const qg_sgd *o);
/* Number of qg_sgd_step calls that succeeded. */
QG_API int64_t qg_sgd_step_count(const qg_sgd *o);
/* The momentum buffer of parameter i (NULL before its first step with a grad, or
 * without momentum). Owned by the optimizer. */
QG_API const qg_tensor *qg_sgd_momentum_buffer(const qg_sgd *o, int i);
/* PyTorch's param_group['initial_lr']: set by the first scheduler bound to the
 * optimizer to the lr of that moment, and where schedulers start from. NAN until a
 * scheduler sets it. */
QG_API double qg_sgd_get_initial_lr(const qg_sgd *o);
QG_API qg_status qg_sgd_set_initial_lr(qg_sgd *o, double lr);

/* State dict, in PyTorch's optimizer numbering (parameter i of the list), added to d
 * under prefix (may be "" or NULL) as tensors the dict owns:
 *   state.<i>.momentum_buffer       the parameter's dtype and shape (only for
 *                                   parameters that have one)
 *   param_groups.0.lr, .momentum, .dampening, .weight_decay
 *                                   f64 scalars (0-d)
 *   param_groups.0.nesterov, .maximize
 *                                   u8 scalars (0 or 1)
 *   param_groups.0.initial_lr       f64 scalar, only if a scheduler set it
 *   param_groups.0.params           i64 (n): 0 .. n-1
 *   step_count                      i64 scalar
 * so qg_safetensors_save(path, d) writes it and a file with a model's state dict can
 * hold it under a prefix such as "optimizer.". */
QG_API qg_status qg_sgd_state_dict(const qg_sgd *o, qg_tensor_dict *d, const char *prefix);
/* Restores hyper-parameters, step count and momentum buffers (copies) from d. The
 * number of parameters, the buffers' shapes and dtypes, every key under
 * "<prefix>state." and "<prefix>param_groups." and the hyper-parameters' values are
 * checked first: on error the optimizer is left unchanged. A parameter without a
 * saved buffer gets none (its next step starts one). */
QG_API qg_status qg_sgd_load_state_dict(qg_sgd *o, const qg_tensor_dict *d, const char *prefix);

/* ======================================================== Adam, AdamW
 *
 * torch.optim.Adam and torch.optim.AdamW (their single-tensor paths), one type: AdamW
 * is Adam with decoupled weight decay. Same rules as SGD above: caller-owned contiguous
 * f32/f64 parameters that outlive the optimizer, one parameter group, state allocated
 * on a parameter's first step with a grad and nothing allocated after.
 *
 * ```c
 * qg_adam *opt = qg_adamw_new(ps, &(qg_adam_opts){.lr = 1e-3, .betas = {QG_SET(0.9), QG_SET(0.95)}});
 * qg_adam_free(opt);
 * ```
 */
typedef struct qg_adam qg_adam;

/* lr has no default here (PyTorch's is 1e-3): give it. Fields left out are PyTorch's
 * defaults and QG_SET(x) gives x, 0 included: betas (0.9, 0.999), eps 1e-8,
 * weight_decay 0 for Adam and 1e-2 for AdamW. */
typedef struct qg_adam_opts {
    double lr;                  /* >= 0 */
    qg_opt_double betas[2];     /* each in [0, 1) */
    qg_opt_double eps;          /* >= 0 */
    qg_opt_double weight_decay; /* >= 0 */
    bool amsgrad;               /* keep the running maximum of exp_avg_sq */
    bool maximize;
} qg_adam_opts;

/* Errors as PyTorch's (bad lr, betas, eps, weight_decay, an empty list) and SGD's
 * parameter checks. */
QG_API qg_adam *qg_adam_new(const qg_tensor_list *params, const qg_adam_opts *o);
QG_API qg_adam *qg_adamw_new(const qg_tensor_list *params, const qg_adam_opts *o);
QG_API void qg_adam_free(qg_adam *o); /* NULL is a no-op */

/* One step, per parameter p with a grad (t = its own step count, from 1):
 *   g = grad (negated if maximize);
 *   Adam: g = g + weight_decay * p;   AdamW: p = p * (1 - lr * weight_decay);
 *   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g;
 *   if amsgrad: vmax = max(vmax, v), used for v below;
 *   p = p + (-lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
 * As PyTorch: bias corrections in double, each tensor op rounded to the parameter's
 * dtype with its scalar rounded first, "x + a * y" and the addcmul fused (fma), t
 * counted in float32. Parameters with a NULL grad are skipped; on error nothing
 * changes. */
QG_API qg_status qg_adam_step(qg_adam *o);
QG_API void qg_adam_zero_grad(qg_adam *o); /* zeroes every grad in place */

QG_API qg_status qg_adam_set_lr(qg_adam *o, double lr); /* lr >= 0 */
QG_API double qg_adam_get_lr(const qg_adam *o);         /* NAN if o is NULL */
/* The options in effect, every qg_opt_double set. */
QG_API const qg_adam_opts *qg_adam_opts_of(const qg_adam *o);
QG_API bool qg_adam_is_adamw(const qg_adam *o);
QG_API int qg_adam_num_params(const qg_adam *o);
QG_API int64_t qg_adam_step_count(const qg_adam *o); /* qg_adam_step calls that succeeded */
/* Parameter i's state (owned by the optimizer; NULL before its first step with a
 * grad; max_exp_avg_sq only with amsgrad) and its step count. */
QG_API const qg_tensor *qg_adam_exp_avg(const qg_adam *o, int i);
QG_API const qg_tensor *qg_adam_exp_avg_sq(const qg_adam *o, int i);
QG_API const qg_tensor *qg_adam_max_exp_avg_sq(const qg_adam *o, int i);
QG_API int64_t qg_adam_param_steps(const qg_adam *o, int i);

/* State dict under prefix, PyTorch's names:
 *   state.<i>.step                    f32 scalar (as PyTorch keeps it)
 *   state.<i>.exp_avg, .exp_avg_sq, .max_exp_avg_sq (amsgrad)
 *                                     the parameter's dtype and shape
 *                                     (only for parameters that have stepped)
 *   param_groups.0.lr, .eps, .weight_decay   f64 scalars
 *   param_groups.0.betas              f64 (2)
 *   param_groups.0.amsgrad, .maximize u8 scalars
 *   param_groups.0.decoupled_weight_decay    u8: 1 for AdamW (not in PyTorch 1.13's
 *                                     dict, which does not name the class)
 *   param_groups.0.params             i64 (n): 0 .. n-1
 *   step_count                        i64 scalar
 * Loading checks everything first (keys, counts, shapes, dtypes, values, a parameter's
 * state complete, decoupled_weight_decay if present equal to the optimizer's kind) and
 * leaves the optimizer unchanged on error. */
QG_API qg_status qg_adam_state_dict(const qg_adam *o, qg_tensor_dict *d, const char *prefix);
QG_API qg_status qg_adam_load_state_dict(qg_adam *o, const qg_tensor_dict *d, const char *prefix);

/* ======================================================== learning-rate schedules
 *
 * Each scheduler follows torch.optim.lr_scheduler's chainable (recursive) get_lr, so
 * the lr sequence equals PyTorch's in double precision. The constructor takes the
 * initial step as PyTorch's does (last_epoch becomes 0 and the optimizer's lr is set
 * for epoch 0), and records the optimizer's initial_lr if no scheduler did before;
 * base_lr is that initial_lr. Call qg_lr_scheduler_step after the optimizer's steps
 * of an epoch (or iteration). A scheduler points at its optimizer: free it first. */
typedef struct qg_lr_scheduler qg_lr_scheduler;

/* lr *= gamma every step_size epochs (step_size >= 1). */
QG_API qg_lr_scheduler *qg_step_lr_new(qg_sgd *opt, int64_t step_size, double gamma);
/* lr *= gamma^k when the epoch equals a milestone listed k times (n >= 0 entries). */
QG_API qg_lr_scheduler *qg_multi_step_lr_new(qg_sgd *opt, int n, const int64_t *milestones, double gamma);
/* Cosine from base_lr to eta_min over T_max epochs (T_max >= 1), then back up, as
 * PyTorch's recursive formula does past T_max. */
QG_API qg_lr_scheduler *qg_cosine_annealing_lr_new(qg_sgd *opt, int64_t T_max, double eta_min);
/* lr factor from start_factor to end_factor over total_iters epochs (linear warm-up):
 * 0 < start_factor <= 1, 0 <= end_factor <= 1, total_iters >= 1. */
QG_API qg_lr_scheduler *qg_linear_lr_new(qg_sgd *opt, double start_factor, double end_factor, int64_t total_iters);
/* SequentialLR: scheds[0] until epoch milestones[0], then scheds[1], ... (n >= 1
 * schedulers on opt, n - 1 milestones). Takes ownership of scheds (also on failure,
 * when they are freed); as PyTorch's, it resets the lr to initial_lr and restarts
 * scheds[0]. */
QG_API qg_lr_scheduler *qg_sequential_lr_new(qg_sgd *opt, int n, qg_lr_scheduler *const *scheds,
                                      const int64_t *milestones);
/* ChainedScheduler: each step steps all of scheds in order (n >= 1, one optimizer).
 * Takes ownership of scheds (also on failure). */
QG_API qg_lr_scheduler *qg_chained_scheduler_new(int n, qg_lr_scheduler *const *scheds);

QG_API qg_status qg_lr_scheduler_step(qg_lr_scheduler *s);
/* The lr the last step set (PyTorch's get_last_lr()[0]); NAN if s is NULL. */
QG_API double qg_lr_scheduler_get_last_lr(const qg_lr_scheduler *s);
QG_API int64_t qg_lr_scheduler_last_epoch(const qg_lr_scheduler *s);
/* NULL is a no-op; frees the schedulers s owns too. A scheduler owned by a
 * SequentialLR or ChainedScheduler is freed with it (freeing it alone is a no-op). */
QG_API void qg_lr_scheduler_free(qg_lr_scheduler *s);

/* State dict under prefix, as PyTorch's scheduler.state_dict() keys:
 *   last_epoch, _step_count       i64 scalars
 *   base_lrs, _last_lr            f64 (1)
 * and the type's settings: step_size (i64), gamma (f64); milestones (i64 (n), sorted,
 * repeated as counted), gamma; T_max (i64), eta_min (f64); start_factor, end_factor
 * (f64), total_iters (i64); SequentialLR: _milestones (i64) and each scheduler's
 * state under "_schedulers.<k>."; ChainedScheduler: _last_lr and "_schedulers.<k>.".
 * Loading checks every key first (a missing one means another scheduler type) and
 * leaves the scheduler unchanged on error. The optimizer's lr is not touched: it is
 * in the optimizer's state dict. */
QG_API qg_status qg_lr_scheduler_state_dict(const qg_lr_scheduler *s, qg_tensor_dict *d, const char *prefix);
QG_API qg_status qg_lr_scheduler_load_state_dict(qg_lr_scheduler *s, const qg_tensor_dict *d, const char *prefix);

#ifdef __cplusplus
}
#endif
#endif
