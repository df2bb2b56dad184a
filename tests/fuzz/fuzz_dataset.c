/* libFuzzer target: qg_dataset_load_mnist and a qg_loader over the result.
 * Input: byte 0 flags (bit 0 train set, bit 1 write the ".gz" names, bit 2 shuffle,
 * bit 3 drop_last, bit 4 normalise), byte 1 batch size (0 = default), bytes 2-3 the
 * images file's length (little-endian, taken modulo the rest + 1), then the images
 * file and the labels file. The files go to a private temporary folder. Each epoch
 * must give exactly qg_loader_batches_per_epoch batches of the promised shapes. */
#include <errno.h>
#include <stdio.h>

#include "fuzz_common.h"

static char dir[64];
static const char *const names[] = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz"};

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static void cleanup(void) {
    char p[160];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) path_of(p, sizeof p, names[i]), unlink(p);
    rmdir(dir);
}

static void write_file(const char *name, const uint8_t *data, size_t size) {
    char p[160];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(p);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    qg_set_warning_handler(fz_quiet_warning, NULL);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/qgrad-fuzz-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(cleanup);
    return 0;
}

static void run_epoch(qg_loader *l, int64_t epoch, bool drop_last, const qg_dataset *d) {
    qg_loader_start_epoch(l, epoch);
    int64_t want = qg_loader_batches_per_epoch(l), got = 0, seen = 0, n = d->images->shape[0];
    qg_tensor *x, *y;
    while (qg_loader_next(l, &x, &y)) {
        if (!x || !y || x->ndim != 4 || y->ndim != 1 || x->shape[0] != y->shape[0] || x->shape[1] != 1 ||
            x->shape[2] != d->images->shape[1] || x->shape[3] != d->images->shape[2] || x->shape[0] <= 0)
            abort();
        seen += x->shape[0];
        if (++got > want) abort();
    }
    if (got != want || seen > n || (!drop_last && seen != n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    unsigned flags = data[0], batch = data[1];
    size_t rest = size - 4, split = ((size_t)data[2] | (size_t)data[3] << 8) % (rest + 1);
    const uint8_t *img = data + 4, *lab = img + split;
    bool train = flags & 1, gz = flags & 2;
    char p[160];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) path_of(p, sizeof p, names[i]), unlink(p);
    const char *const *nm = names + (train ? 0 : 2) + (gz ? 4 : 0);
    write_file(nm[0], img, split);
    write_file(nm[1], lab, rest - split);

    qg_dataset d = {0};
    if (qg_dataset_load_mnist(dir, train, &d) == QG_OK) {
        if (!d.images || !d.labels || d.images->ndim != 3 || d.labels->ndim != 1 ||
            d.images->shape[0] != d.labels->shape[0])
            abort();
        qg_loader_opts o = {.batch = batch, .shuffle = flags & 4, .seed = flags, .drop_last = flags & 8};
        if (flags & 16) o.mean = 0.2860, o.std = 0.3530;
        qg_loader *l = qg_loader_new(&d, &o);
        if (l) {
            run_epoch(l, 0, o.drop_last, &d);
            if (o.shuffle) run_epoch(l, 1, o.drop_last, &d);
            qg_loader_free(l);
        }
        qg_dataset_free(&d);
    } else if (d.images || d.labels) {
        qg_dataset_free(&d);
    }
    qg_clear_error();
    return 0;
}
