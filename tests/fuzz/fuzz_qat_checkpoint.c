/* libFuzzer target: a checkpoint (safetensors, parsed from the input) loaded into a
 * prepared QAT model, strict and non-strict. The model is the small QAT CNN of
 * tests/test_parity_qat_modules.c, built once, run one forward so its observers
 * hold state, and its state dict kept as the snapshot. The property: a rejected
 * load leaves the state dict bit-identical to the snapshot (abort otherwise). After
 * an accepted load one forward must not crash (an error is fine); then the snapshot
 * is loaded back (it must be accepted and restore the exact state). */
#include "fuzz_common.h"

static qg_module *model;
static qg_tensor_dict *snapshot;
static qg_tensor *input;

static bool unchanged(void) {
    qg_tensor_dict *now = qg_module_state_dict(model);
    if (!now) fz_die("state_dict");
    bool same = fz_dict_equal(now, snapshot);
    qg_tensor_dict_free(now);
    return same;
}

static void forward(void) {
    qg_tensor *y = qg_module_forward(model, input);
    (void)y;
    qg_tape_reset(NULL);
    qg_clear_error();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    qg_set_warning_handler(fz_quiet_warning, NULL);
    qg_manual_seed(1);
    model = fz_qat_cnn();
    input = qg_tensor_randn(NULL, QG_F32, 4, (int64_t[]){2, 1, 8, 8});
    if (!input) fz_die("input");
    if (!qg_module_forward(model, input)) fz_die("first forward");
    qg_tape_reset(NULL);
    snapshot = qg_module_state_dict(model);
    if (!snapshot) fz_die("state_dict");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qg_tensor_dict *d = qg_safetensors_parse(data, size);
    if (!d) {
        qg_clear_error();
        return 0;
    }
    for (int strict = 1; strict >= 0; strict--) {
        if (qg_module_load_state_dict(model, d, strict)) {
            if (!unchanged()) {
                fprintf(stderr, "a rejected %s load (%s) changed the state dict\n", strict ? "strict" : "non-strict",
                        qg_last_error());
                abort();
            }
            qg_clear_error();
            continue;
        }
        forward();
        if (qg_module_load_state_dict(model, snapshot, true)) {
            fprintf(stderr, "restoring the snapshot failed: %s\n", qg_last_error());
            abort();
        }
        if (!unchanged()) {
            fprintf(stderr, "restoring the snapshot did not restore the state dict\n");
            abort();
        }
    }
    qg_tensor_dict_free(d);
    return 0;
}
