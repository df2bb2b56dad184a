/* libFuzzer target: optimizer and LR-scheduler state loads from a safetensors dict
 * (parsed from the input): qg_sgd_load_state_dict under "optimizer." and
 * qg_lr_scheduler_load_state_dict under "scheduler." into each scheduler type
 * (StepLR, MultiStepLR, CosineAnnealingLR, LinearLR, SequentialLR,
 * ChainedScheduler), all on one SGD with momentum over f32 and f64 parameters that
 * has taken a step. The property (optim.h): a rejected load leaves the optimizer or
 * scheduler unchanged (its state dict bit-identical). After an accepted load one
 * optimizer step / scheduler step must not crash (an error is fine); then the
 * snapshots are loaded back, parameters included. */
#include "fuzz_common.h"

static qg_module *model;
static qg_tensor_list *params;
static qg_tensor_dict *param_snapshot;
static qg_sgd *opt;
static qg_tensor_dict *opt_snapshot;
static qg_lr_scheduler *sched[FZ_NSCHED];
static qg_tensor_dict *sched_snapshot[FZ_NSCHED];

static qg_tensor_dict *sgd_state(void) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    if (!d || qg_sgd_state_dict(opt, d, "optimizer.")) fz_die("sgd_state_dict");
    return d;
}

static qg_tensor_dict *sched_state(int k) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    if (!d || qg_lr_scheduler_state_dict(sched[k], d, "scheduler.")) fz_die("lr_scheduler_state_dict");
    return d;
}

static bool same_as(qg_tensor_dict *now, const qg_tensor_dict *snap) {
    bool same = fz_dict_equal(now, snap);
    qg_tensor_dict_free(now);
    return same;
}

/* everything back to the snapshots; abort if that is refused or inexact */
static void restore(void) {
    if (qg_module_load_state_dict(model, param_snapshot, true) || qg_sgd_load_state_dict(opt, opt_snapshot, "optimizer.")) {
        fprintf(stderr, "restoring the optimizer failed: %s\n", qg_last_error());
        abort();
    }
    for (int k = 0; k < FZ_NSCHED; k++)
        if (qg_lr_scheduler_load_state_dict(sched[k], sched_snapshot[k], "scheduler.")) {
            fprintf(stderr, "restoring scheduler %s failed: %s\n", fz_sched_names[k], qg_last_error());
            abort();
        }
    if (!same_as(sgd_state(), opt_snapshot)) {
        fprintf(stderr, "restoring the optimizer did not restore its state dict\n");
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    qg_set_warning_handler(fz_quiet_warning, NULL);
    qg_manual_seed(2);
    model = fz_optim_model();
    params = qg_module_parameters(model);
    opt = qg_sgd_new(params, &(qg_sgd_opts){.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4});
    if (!params || !opt) fz_die("sgd_new");
    for (int k = 0; k < FZ_NSCHED; k++) sched[k] = fz_sched_new(opt, k);
    fz_fill_grads(params);
    if (qg_sgd_step(opt)) fz_die("sgd_step");
    for (int k = 0; k < FZ_NSCHED; k++)
        if (qg_lr_scheduler_step(sched[k])) fz_die("lr_scheduler_step");
    param_snapshot = qg_module_state_dict(model);
    if (!param_snapshot) fz_die("state_dict");
    opt_snapshot = sgd_state();
    for (int k = 0; k < FZ_NSCHED; k++) sched_snapshot[k] = sched_state(k);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qg_tensor_dict *d = qg_safetensors_parse(data, size);
    if (!d) {
        qg_clear_error();
        return 0;
    }
    if (qg_sgd_load_state_dict(opt, d, "optimizer.")) {
        if (!same_as(sgd_state(), opt_snapshot)) {
            fprintf(stderr, "a rejected optimizer load (%s) changed its state dict\n", qg_last_error());
            abort();
        }
        qg_clear_error();
    } else {
        (void)qg_sgd_get_lr(opt);
        (void)qg_sgd_step(opt);
        qg_clear_error();
        restore();
    }
    for (int k = 0; k < FZ_NSCHED; k++) {
        if (qg_lr_scheduler_load_state_dict(sched[k], d, "scheduler.")) {
            if (!same_as(sched_state(k), sched_snapshot[k])) {
                fprintf(stderr, "a rejected %s scheduler load (%s) changed its state dict\n", fz_sched_names[k],
                        qg_last_error());
                abort();
            }
            qg_clear_error();
            continue;
        }
        (void)qg_lr_scheduler_get_last_lr(sched[k]);
        (void)qg_lr_scheduler_step(sched[k]);
        (void)qg_sgd_step(opt);
        qg_clear_error();
        restore();
    }
    qg_tensor_dict_free(d);
    return 0;
}
