/* Writes the seed corpora of tests/fuzz/corpus/<target>/ (see make_corpus.sh): a few
 * small valid inputs per target, built with the same models as the targets
 * (fuzz_common.h). usage: make_corpus CORPUS_DIR */
#include <errno.h>
#include <sys/stat.h>
#include <zlib.h>

#include "fuzz_common.h"

static const char *root;

static void put_file(const char *target, const char *name, const void *data, size_t size) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, target);
    if (mkdir(p, 0755) && errno != EEXIST) perror(p), exit(1);
    snprintf(p, sizeof p, "%s/%s/%s", root, target, name);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) perror(p), exit(1);
}

/* ------------------------------------------------------------ IDX */

typedef struct {
    uint8_t buf[4096];
    size_t n;
} bytes;

static void be32(bytes *b, uint32_t v) {
    for (int i = 3; i >= 0; i--) b->buf[b->n++] = (uint8_t)(v >> (8 * i));
}

/* an IDX file of type code `type`, dims, elements filled with a pattern */
static bytes idx(uint8_t type, int ndim, const uint32_t *dims, size_t elem) {
    bytes b = {.n = 0};
    b.buf[b.n++] = 0, b.buf[b.n++] = 0, b.buf[b.n++] = type, b.buf[b.n++] = (uint8_t)ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) be32(&b, dims[i]), n *= dims[i];
    for (size_t i = 0; i < n * elem; i++) b.buf[b.n++] = (uint8_t)(i * 37 + 11);
    return b;
}

static bytes gz(const bytes *in) {
    bytes out = {.n = 0};
    z_stream z = {0};
    /* windowBits 16 + 15: a gzip wrapper with mtime 0, so the seed is reproducible */
    if (deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(1);
    z.next_in = (Bytef *)in->buf, z.avail_in = (uInt)in->n;
    z.next_out = out.buf, z.avail_out = sizeof out.buf;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) exit(1);
    out.n = z.total_out;
    deflateEnd(&z);
    return out;
}

static void dataset_seed(const char *name, uint8_t flags, uint8_t batch, const bytes *im, const bytes *lb) {
    uint8_t buf[8192];
    size_t n = 0;
    buf[n++] = flags, buf[n++] = batch, buf[n++] = (uint8_t)im->n, buf[n++] = (uint8_t)(im->n >> 8);
    memcpy(buf + n, im->buf, im->n), n += im->n;
    memcpy(buf + n, lb->buf, lb->n), n += lb->n;
    put_file("dataset", name, buf, n);
}

static void idx_seeds(void) {
    bytes im = idx(0x08, 3, (uint32_t[]){5, 4, 4}, 1), lb = idx(0x08, 1, (uint32_t[]){5}, 1);
    for (size_t i = 8; i < lb.n; i++) lb.buf[i] %= 10; /* labels 0..9 after the 8-byte header */
    bytes img = gz(&im), lbg = gz(&lb);
    put_file("idx", "images_u8_3d", im.buf, im.n);
    put_file("idx", "labels_u8_1d", lb.buf, lb.n);
    put_file("idx", "images_u8_3d.gz", img.buf, img.n);
    bytes t;
    t = idx(0x09, 2, (uint32_t[]){2, 3}, 1), put_file("idx", "i8_2d", t.buf, t.n);
    t = idx(0x0B, 2, (uint32_t[]){3, 2}, 2), put_file("idx", "i16_2d", t.buf, t.n);
    t = idx(0x0C, 1, (uint32_t[]){4}, 4), put_file("idx", "i32_1d", t.buf, t.n);
    t = idx(0x0D, 2, (uint32_t[]){2, 2}, 4), put_file("idx", "f32_2d", t.buf, t.n);
    t = idx(0x0E, 1, (uint32_t[]){3}, 8), put_file("idx", "f64_1d", t.buf, t.n);

    dataset_seed("train_plain_b2", 0x01, 2, &im, &lb);
    dataset_seed("test_plain_default_batch", 0x00, 0, &im, &lb);
    dataset_seed("train_gz_shuffle_droplast_b2", 0x01 | 0x02 | 0x04 | 0x08, 2, &img, &lbg);
    dataset_seed("test_normalised_shuffle_b3", 0x04 | 0x10, 3, &im, &lb);
}

/* ------------------------------------------------------------ safetensors */

static void save(const char *target, const char *name, const qg_tensor_dict *d) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, target);
    if (mkdir(p, 0755) && errno != EEXIST) perror(p), exit(1);
    snprintf(p, sizeof p, "%s/%s/%s", root, target, name);
    if (qg_safetensors_save(p, d)) fprintf(stderr, "%s: %s\n", p, qg_last_error()), exit(1);
}

static qg_tensor_dict *copy_of(const qg_tensor_dict *d, const char *only) {
    qg_tensor_dict *c = qg_tensor_dict_new();
    for (int i = 0; i < qg_tensor_dict_size(d); i++) {
        const char *k = qg_tensor_dict_name(d, i);
        if (!only || !strncmp(k, only, strlen(only))) qg_tensor_dict_put(c, k, qg_tensor_clone(qg_tensor_dict_at(d, i)));
    }
    return c;
}

static void safetensors_seeds(void) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    qg_tensor_dict_put(d, "f32", qg_tensor_arange(QG_F32, 0, 6, 1));
    qg_tensor_dict_put(d, "f64", qg_tensor_full(QG_F64, 2, (int64_t[]){2, 2}, 0.5));
    qg_tensor_dict_put(d, "i64", qg_tensor_full(QG_I64, 0, NULL, 7));
    qg_tensor_dict_put(d, "i32", qg_tensor_full(QG_I32, 1, (int64_t[]){3}, -2));
    qg_tensor_dict_put(d, "u8", qg_tensor_ones(QG_U8, 3, (int64_t[]){1, 2, 2}));
    qg_tensor_dict_put(d, "i8", qg_tensor_full(QG_I8, 1, (int64_t[]){2}, -1));
    qg_tensor_dict_put(d, "empty", qg_tensor_zeros(QG_F32, 2, (int64_t[]){0, 3}));
    qg_tensor_dict_set_meta(d, "format", "pt");
    save("safetensors", "all_dtypes", d);
    qg_tensor_dict_free(d);
    d = qg_tensor_dict_new();
    save("safetensors", "empty_dict", d);
    qg_tensor_dict_free(d);

    /* the QAT CNN's state, as fuzz_qat_checkpoint builds and runs it */
    qg_manual_seed(1);
    qg_module *m = fz_qat_cnn();
    qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 4, (int64_t[]){2, 1, 8, 8});
    if (!qg_module_forward(m, x)) fz_die("forward");
    qg_tape_reset(NULL);
    qg_tensor_dict *s = qg_module_state_dict(m);
    save("qat_checkpoint", "full_state", s);
    save("safetensors", "qat_cnn_state", s);
    qg_tensor_dict *part = copy_of(s, "l2.");
    save("qat_checkpoint", "l2_only", part);
    qg_tensor_dict_put(part, "l2.weight", qg_tensor_zeros(QG_F32, 2, (int64_t[]){3, 15}));
    save("qat_checkpoint", "l2_bad_shape", part);
    qg_tensor_dict_free(part);
    part = copy_of(s, "c1.");
    qg_tensor_dict_put(part, "c1.activation_post_process.min_val", qg_tensor_zeros(QG_F32, 1, (int64_t[]){0}));
    save("qat_checkpoint", "c1_observer_resized", part);
    qg_tensor_dict_free(part);
    qg_tensor_dict_free(s);
    qg_tensor_free(x);
    qg_module_free(m);

    /* optimizer + scheduler states, as fuzz_optim_state builds them */
    qg_manual_seed(2);
    m = fz_optim_model();
    qg_tensor_list *ps = qg_module_parameters(m);
    qg_sgd *o = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4});
    if (!o) fz_die("sgd");
    qg_lr_scheduler *sc[FZ_NSCHED];
    for (int k = 0; k < FZ_NSCHED; k++) sc[k] = fz_sched_new(o, k);
    d = qg_tensor_dict_new();
    qg_sgd_state_dict(o, d, "optimizer.");
    save("optim_state", "sgd_no_buffers", d);
    qg_tensor_dict_free(d);
    fz_fill_grads(ps);
    if (qg_sgd_step(o)) fz_die("sgd_step");
    for (int k = 0; k < FZ_NSCHED; k++) qg_lr_scheduler_step(sc[k]), qg_lr_scheduler_step(sc[k]);
    for (int k = 0; k < FZ_NSCHED; k++) {
        d = qg_tensor_dict_new();
        qg_sgd_state_dict(o, d, "optimizer.");
        if (qg_lr_scheduler_state_dict(sc[k], d, "scheduler.")) fz_die("sched state");
        char name[64];
        snprintf(name, sizeof name, "sgd_and_%s", fz_sched_names[k]);
        save("optim_state", name, d);
        if (k == FZ_SEQUENTIAL) save("safetensors", "sgd_and_sequential_lr", d);
        qg_tensor_dict_free(d);
    }
    for (int k = FZ_NSCHED - 1; k >= 0; k--) qg_lr_scheduler_free(sc[k]);
    qg_sgd_free(o);
    qg_tensor_list_free(ps);
    qg_module_free(m);
}

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: make_corpus CORPUS_DIR\n"), 2;
    root = argv[1];
    if (mkdir(root, 0755) && errno != EEXIST) return perror(root), 1;
    qg_set_warning_handler(fz_quiet_warning, NULL);
    idx_seeds();
    safetensors_seeds();
    return 0;
}
