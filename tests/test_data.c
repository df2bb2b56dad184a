/* IDX reading (plain and gzip; truncated, oversized and corrupt files) and the batch
 * loader (order, shuffling, normalisation, no allocation per batch). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "qgrad/data.h"
#include "test_util.h"

static char dir[256];

/* writes bytes to dir/name, gzipped if gz */
static void put(const char *name, const void *buf, size_t n, bool gz) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    tst_write_file(p, buf, n, gz);
}

/* an IDX3 ubyte file of n images h x w with pixel (i, p) = (i * 7 + p) % 256 */
static size_t make_images(unsigned char *buf, int n, int h, int w) {
    unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, 0, (unsigned char)n, 0, 0, 0, (unsigned char)h, 0, 0, 0, (unsigned char)w};
    memcpy(buf, hdr, 16);
    for (int i = 0; i < n * h * w; i++) buf[16 + i] = (unsigned char)((i / (h * w) * 7 + i % (h * w)) % 256);
    return 16 + (size_t)(n * h * w);
}

static size_t make_labels(unsigned char *buf, int n) {
    unsigned char hdr[8] = {0, 0, 8, 1, 0, 0, 0, (unsigned char)n};
    memcpy(buf, hdr, 8);
    for (int i = 0; i < n; i++) buf[8 + i] = (unsigned char)(i % 10);
    return 8 + (size_t)n;
}

static qg_tensor *load(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return qg_idx_load(p);
}

static void test_idx(void) {
    static unsigned char buf[16 + 10 * 4 * 3];
    size_t n = make_images(buf, 10, 4, 3);
    put("a.idx", buf, n, false);
    put("a.idx.gz", buf, n, true);
    for (int gz = 0; gz < 2; gz++) {
        qg_tensor *t = load(gz ? "a.idx.gz" : "a.idx");
        CHECK(t && t->dtype == QG_U8 && t->ndim == 3 && t->shape[0] == 10 && t->shape[2] == 3, "load %s", gz ? "gz" : "plain");
        CHECK(t && qg_tensor_get(t, SHAPE(2, 1, 2)) == (2 * 7 + 5) % 256, "pixel value");
        qg_tensor_free(t);
    }
    /* every truncation is rejected with a message naming the file */
    int rejected = 0;
    for (size_t cut = 0; cut < n; cut++) {
        put("t.idx", buf, cut, cut % 2 == 1);
        qg_clear_error();
        qg_tensor *t = load("t.idx");
        if (!t && strstr(qg_last_error(), "t.idx")) rejected++;
        qg_tensor_free(t);
    }
    CHECK(rejected == (int)n, "all %zu truncations rejected (%d)", n, rejected);
    unsigned char bad[sizeof buf + 1];
    memcpy(bad, buf, n);
    bad[n] = 1;
    put("long.idx", bad, n + 1, false);
    CHECK(!load("long.idx") && strstr(qg_last_error(), "continues past"), "trailing data: %s", qg_last_error());
    memcpy(bad, buf, n);
    bad[2] = 0x42;
    put("type.idx", bad, n, false);
    CHECK(!load("type.idx") && strstr(qg_last_error(), "element type"), "bad type: %s", qg_last_error());
    bad[2] = 8, bad[0] = 1;
    put("magic.idx", bad, n, false);
    CHECK(!load("magic.idx") && strstr(qg_last_error(), "magic"), "bad magic: %s", qg_last_error());
    unsigned char huge[12] = {0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    put("huge.idx", huge, sizeof huge, false);
    CHECK(!load("huge.idx") && *qg_last_error(), "absurd dimensions: %s", qg_last_error());
    /* a corrupt gzip stream */
    char p[512];
    snprintf(p, sizeof p, "%s/a.idx.gz", dir);
    FILE *f = fopen(p, "r+b");
    fseek(f, 20, SEEK_SET);
    fputc(0x55, f), fputc(0xaa, f), fputc(0x13, f);
    fclose(f);
    qg_tensor *c = load("a.idx.gz");
    CHECK(!c || qg_tensor_numel(c) == 120, "corrupt gzip: rejected or (if zlib resynced) the right size: %s", qg_last_error());
    qg_tensor_free(c);
    CHECK(!load("missing.idx") && strstr(qg_last_error(), "cannot open"), "missing file");
    /* int and float element types, big-endian */
    unsigned char fi[4 + 4 + 8] = {0, 0, 0x0D, 1, 0, 0, 0, 2, 0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0};
    put("f.idx", fi, sizeof fi, false);
    qg_tensor *ft = load("f.idx");
    CHECK(ft && ft->dtype == QG_F32 && qg_tensor_get(ft, SHAPE(0)) == 1.0 && qg_tensor_get(ft, SHAPE(1)) == -2.5, "float IDX");
    qg_tensor_free(ft);
}

static void test_loader(void) {
    static unsigned char im[16 + 10 * 4 * 3], lb[8 + 10];
    put("train-images-idx3-ubyte", im, make_images(im, 10, 4, 3), false);
    put("train-labels-idx1-ubyte.gz", lb, make_labels(lb, 10), true);
    qg_dataset d;
    CHECK(qg_dataset_load_mnist(dir, true, &d) == QG_OK, "dataset: %s", qg_last_error());
    CHECK(qg_dataset_load_mnist(dir, false, &(qg_dataset){0}) != QG_OK && strstr(qg_last_error(), "t10k"), "missing test set");
    qg_loader *l = qg_loader_new(&d, &(qg_loader_opts){.batch = 4, .mean = 0.5, .std = 0.25});
    qg_tensor *x, *y;
    int64_t live = qg_live_allocations();
    int batches = 0;
    int64_t seen = 0;
    while (qg_loader_next(l, &x, &y)) {
        if (batches == 0) {
            float want = ((float)im[16 + 1] / 255.0f - 0.5f) / 0.25f;
            CHECK(((float *)qg_tensor_data(x))[1] == want, "normalisation (p/255 - mean)/std");
            CHECK(x->ndim == 4 && x->shape[1] == 1 && x->shape[2] == 4 && y->dtype == QG_I64, "batch shapes");
        }
        seen += y->shape[0];
        batches++;
    }
    CHECK(batches == 3 && seen == 10, "3 batches, last partial (%d, %lld)", batches, (long long)seen);
    CHECK(qg_live_allocations() == live, "no allocation per batch");
    qg_loader_free(l);
    /* drop_last, shuffling: a permutation, repeatable, different per epoch */
    l = qg_loader_new(&d, &(qg_loader_opts){.batch = 4, .shuffle = true, .seed = 5, .drop_last = true});
    CHECK(qg_loader_batches_per_epoch(l) == 2, "drop_last: 2 batches");
    int64_t a[8], b[8], c[8];
    for (int e = 0; e < 3; e++) {
        int64_t *dst = e == 0 ? a : e == 1 ? b : c;
        qg_loader_start_epoch(l, e == 2 ? 0 : e);
        for (int k = 0; k < 2 && qg_loader_next(l, &x, &y); k++) memcpy(dst + 4 * k, qg_tensor_data(y), 4 * sizeof(int64_t));
    }
    CHECK(!memcmp(a, c, sizeof a), "same seed and epoch, same order");
    CHECK(memcmp(a, b, sizeof a), "another epoch, another order");
    qg_loader_free(l);
    qg_dataset_free(&d);
}

static void test_real_data(void) {
    qg_dataset d;
    if (qg_dataset_load_mnist("/usr/share/datasets/fashion-mnist", false, &d)) {
        printf("skip: Fashion-MNIST not installed (%s)\n", qg_last_error());
        return;
    }
    CHECK(d.images->shape[0] == 10000 && d.images->shape[1] == 28 && d.labels->shape[0] == 10000, "Fashion-MNIST test set");
    qg_dataset_free(&d);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/qgrad_data_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    test_idx();
    test_loader();
    test_real_data();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("could not remove %s\n", dir);
    return test_summary("data");
}
