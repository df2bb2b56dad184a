/* qgrad/data.h — IDX files (MNIST, Fashion-MNIST) and a batch loader.
 *
 * The loader owns its batch tensors and refills them in place: a training loop that
 * takes batches allocates nothing. */
#ifndef QGRAD_DATA_H
#define QGRAD_DATA_H

#include "qgrad/export.h"

#include "qgrad/autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads an IDX file, gzip-compressed or plain (told apart by content). The magic,
 * element type and dimensions are checked against the file's size; a truncated,
 * oversized or corrupt file gives NULL and a message naming the file. Element types:
 * ubyte -> U8, byte -> I8, short/int -> I32, float -> F32, double -> F64. */
QG_API qg_tensor *qg_idx_load(const char *path);

/* An image classification set: images (N, H, W) U8 and labels (N) U8. */
typedef struct qg_dataset {
    qg_tensor *images, *labels;
} qg_dataset;

/* Loads <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (the four standard
 * MNIST names; .gz preferred when both exist). Checks that images and labels agree. */
QG_API qg_status qg_dataset_load_mnist(const char *dir, bool train, qg_dataset *out);
QG_API void qg_dataset_free(qg_dataset *d);

typedef struct qg_loader_opts {
    int64_t batch;      /* 0 = 64 */
    bool shuffle;       /* reshuffled every epoch from (seed, epoch) */
    uint64_t seed;
    bool drop_last;     /* drop the last partial batch */
    double mean, std;   /* normalisation (x/255 - mean) / std; both 0 = none; std 0 with a mean is an error */
    /* PyTorch's DistributedSampler: rank (0 <= rank < num_replicas) sees the samples
     * rank, rank + R, rank + 2R, ... of each epoch's order (R = num_replicas), that order
     * padded with its own first samples to a multiple of R: every rank the same count,
     * ceil(N / R), and the same order on every run. num_replicas 0 = 1 (no sharding). */
    int64_t num_replicas, rank;
} qg_loader_opts;

typedef struct qg_loader qg_loader;
/* The loader keeps pointers to d's tensors: d must outlive it. */
QG_API qg_loader *qg_loader_new(const qg_dataset *d, const qg_loader_opts *o);
QG_API void qg_loader_free(qg_loader *l);
/* Starts epoch `epoch` (0-based): rewinds and, when shuffling, draws its order. */
QG_API void qg_loader_start_epoch(qg_loader *l, int64_t epoch);
/* The next batch: *x (B, 1, H, W) F32 normalised, *y (B) I64; both owned by the
 * loader and overwritten by the next call. Returns false at the end of the epoch. */
QG_API bool qg_loader_next(qg_loader *l, qg_tensor **x, qg_tensor **y);
QG_API int64_t qg_loader_batches_per_epoch(const qg_loader *l);

#ifdef __cplusplus
}
#endif
#endif
