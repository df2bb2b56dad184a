/* libFuzzer target: qg_idx_load (IDX files, plain or gzip) on the input, written to
 * an in-memory file. A loaded tensor must have the element count its dims promise. */
#include "fuzz_common.h"

static fz_file in;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    qg_set_warning_handler(fz_quiet_warning, NULL);
    fz_file_init(&in, "fuzz_idx");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_file_set(&in, data, size);
    qg_tensor *t = qg_idx_load(in.path);
    if (t) {
        int64_t n = 1;
        for (int k = 0; k < t->ndim; k++) n *= t->shape[k];
        if (n != qg_tensor_numel(t) || !qg_tensor_is_contiguous(t)) abort();
        /* touch every byte, so a short buffer shows up under ASan */
        const volatile uint8_t *p = qg_tensor_data(t);
        size_t bytes = (size_t)n * qg_dtype_size(t->dtype);
        uint8_t acc = 0;
        for (size_t i = 0; i < bytes; i++) acc ^= p[i];
        (void)acc;
        qg_tensor_free(t);
    }
    qg_clear_error();
    return 0;
}
