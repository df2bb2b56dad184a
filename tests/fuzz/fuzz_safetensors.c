/* libFuzzer target: the safetensors reader, both entry points: qg_safetensors_parse
 * on the input buffer and qg_safetensors_load on the same bytes as a file (two code
 * paths: one reads a buffer, the other preads a file). They must agree: both fail,
 * or both give the same dict (names, order, dtypes, shapes, bytes, metadata). A
 * loaded dict is walked, touching every byte of every tensor. */
#include "fuzz_common.h"

static fz_file in;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    qg_set_warning_handler(fz_quiet_warning, NULL);
    fz_file_init(&in, "fuzz_safetensors");
    return 0;
}

static void walk(const qg_tensor_dict *d) {
    uint8_t acc = 0;
    for (int i = 0; i < qg_tensor_dict_size(d); i++) {
        const char *name = qg_tensor_dict_name(d, i);
        const qg_tensor *t = qg_tensor_dict_at(d, i);
        if (!name || !t || qg_tensor_dict_get(d, name) != t || !qg_tensor_is_contiguous(t)) abort();
        const volatile uint8_t *p = qg_tensor_data(t);
        size_t bytes = (size_t)qg_tensor_numel(t) * qg_dtype_size(t->dtype);
        for (size_t k = 0; k < bytes; k++) acc ^= p[k];
        acc ^= (uint8_t)name[strlen(name) ? strlen(name) - 1 : 0];
    }
    for (int i = 0; i < qg_tensor_dict_meta_size(d); i++) {
        const char *v = NULL, *k = qg_tensor_dict_meta_at(d, i, &v);
        if (!k || !v || qg_tensor_dict_meta(d, k) != v) abort();
    }
    (void)acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qg_tensor_dict *a = qg_safetensors_parse(data, size);
    fz_file_set(&in, data, size);
    qg_tensor_dict *b = qg_safetensors_load(in.path);
    if (!a != !b) {
        fprintf(stderr, "parse %s but load %s: %s\n", a ? "succeeded" : "failed", b ? "succeeded" : "failed",
                qg_last_error());
        abort();
    }
    if (a) {
        walk(a);
        if (!fz_dict_equal(a, b)) {
            fprintf(stderr, "parse and load gave different dicts\n");
            abort();
        }
    }
    qg_tensor_dict_free(a);
    qg_tensor_dict_free(b);
    qg_clear_error();
    return 0;
}
