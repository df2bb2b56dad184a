/* Batches of normalised images and int64 labels, in file order or shuffled per epoch,
 * written into buffers the loader owns (no allocation per batch). */
#include "internal.h"
#include "qgrad/data.h"

struct qg_loader {
    const qg_dataset *d;
    qg_loader_opts o;
    int64_t n, pos, h, w;
    int64_t count;         /* samples per epoch for this shard */
    int64_t *full, *order; /* the epoch's order, and this shard's */
    qg_tensor *x, *y;      /* full-batch buffers */
    qg_tensor xv, yv;      /* what next() hands out: the buffers, or their first rows */
    float lut[256];        /* (p/255 - mean)/std for every byte value */
};

qg_loader *qg_loader_new(const qg_dataset *d, const qg_loader_opts *o) {
    char a[128], b[128];
    if (!d || !d->images || !d->labels) return qg__err_null("loader_new"), NULL;
    const qg_tensor *im = d->images, *lb = d->labels;
    if (im->dtype != QG_U8 || im->ndim != 3 || lb->dtype != QG_U8 || lb->ndim != 1 || lb->shape[0] != im->shape[0] ||
        !qg_tensor_is_contiguous(im) || !qg_tensor_is_contiguous(lb))
        return qg__err(QG_EINVAL, "loader_new: expected contiguous images u8 (N, H, W) and labels u8 (N), got %s and %s",
                       qg_shape_str(im, a, sizeof a), qg_shape_str(lb, b, sizeof b)), NULL;
    qg_loader_opts opts = o ? *o : (qg_loader_opts){0};
    if (im->tape || lb->tape) /* tape tensors die at the next reset, the loader lives on */
        return qg__err(QG_EINVAL, "loader_new: images and labels must be caller-owned tensors, not op results"), NULL;
    if (opts.batch == 0) opts.batch = 64;
    if (opts.batch < 0) return qg__err(QG_EINVAL, "loader_new: batch must be positive, got %lld", (long long)opts.batch), NULL;
    if (opts.std == 0 && opts.mean != 0)
        return qg__err(QG_EINVAL, "loader_new: mean %g given with std 0 (std 0 means no normalisation; give both)",
                       opts.mean), NULL;
    if (opts.std == 0) opts.std = 1;
    if (opts.num_replicas == 0) opts.num_replicas = 1;
    if (opts.num_replicas < 0 || opts.rank < 0 || opts.rank >= opts.num_replicas)
        return qg__err(QG_EINVAL, "loader_new: rank %lld must be in [0, num_replicas = %lld)", (long long)opts.rank,
                       (long long)opts.num_replicas), NULL;
    qg_loader *l = qg__calloc(sizeof *l);
    if (!l) return qg__err(QG_ENOMEM, "loader_new: out of memory"), NULL;
    l->d = d, l->o = opts;
    l->n = d->images->shape[0], l->h = d->images->shape[1], l->w = d->images->shape[2];
    l->count = (l->n + opts.num_replicas - 1) / opts.num_replicas;
    l->full = qg__alloc(sizeof(int64_t) * (size_t)(l->n ? l->n : 1));
    l->order = qg__alloc(sizeof(int64_t) * (size_t)(l->count ? l->count : 1));
    int64_t rows = opts.batch < l->n ? opts.batch : l->n > 0 ? l->n : 1; /* a batch never has more */
    l->x = qg_tensor_empty(QG_F32, 4, (int64_t[]){rows, 1, l->h, l->w});
    l->y = qg_tensor_empty(QG_I64, 1, &rows);
    if (!l->full || !l->order || !l->x || !l->y) {
        qg_loader_free(l);
        return qg__err(qg_last_status() == QG_ESHAPE ? QG_ESHAPE : QG_ENOMEM, "loader_new: cannot make a batch of %lld x %lld x %lld: %s",
                       (long long)rows, (long long)l->h, (long long)l->w, qg_last_error()), NULL;
    }
    /* PyTorch's ToTensor + Normalize in float: (p / 255 - mean) / std */
    for (int p = 0; p < 256; p++) l->lut[p] = ((float)p / 255.0f - (float)opts.mean) / (float)opts.std;
    qg_loader_start_epoch(l, 0);
    return l;
}

void qg_loader_free(qg_loader *l) {
    if (!l) return;
    qg__free(l->full), qg__free(l->order);
    qg_tensor_free(l->x), qg_tensor_free(l->y);
    qg__free(l);
}

void qg_loader_start_epoch(qg_loader *l, int64_t epoch) {
    if (!l) return;
    int64_t *o = l->full;
    for (int64_t i = 0; i < l->n; i++) o[i] = i;
    if (l->o.shuffle) { /* Fisher-Yates from a generator fixed by (seed, epoch) */
        qg_rng g;
        qg_rng_init(&g, l->o.seed * 0x9e3779b97f4a7c15ULL + (uint64_t)epoch);
        for (int64_t i = l->n - 1; i > 0; i--) {
            int64_t j = (int64_t)(qg_rng_next_u64(&g) % (uint64_t)(i + 1));
            int64_t t = o[i];
            o[i] = o[j], o[j] = t;
        }
    }
    /* the shard: every R-th of the order padded with its own start */
    for (int64_t i = 0; l->n && i < l->count; i++) l->order[i] = o[(l->o.rank + i * l->o.num_replicas) % l->n];
    l->pos = 0;
}

int64_t qg_loader_batches_per_epoch(const qg_loader *l) {
    if (!l) return 0;
    return l->o.drop_last ? l->count / l->o.batch : (l->count + l->o.batch - 1) / l->o.batch;
}

bool qg_loader_next(qg_loader *l, qg_tensor **x, qg_tensor **y) {
    if (!l || !x || !y) return qg__err_null("loader_next"), false;
    int64_t left = l->count - l->pos, b = left < l->o.batch ? left : l->o.batch;
    if (b <= 0 || (b < l->o.batch && l->o.drop_last)) return false;
    const qg_tensor *dim = l->d->images, *dlb = l->d->labels;
    if (!dim || !dlb || dim->ndim != 3 || dim->dtype != QG_U8 || dim->shape[0] != l->n || dim->shape[1] != l->h ||
        dim->shape[2] != l->w || dlb->ndim != 1 || dlb->dtype != QG_U8 || dlb->shape[0] != l->n)
        return qg__err(QG_ESTATE, "loader_next: the dataset's tensors were freed or replaced after loader_new"), false;
    int64_t px = l->h * l->w;
    const uint8_t *im = qg_tensor_data(dim), *lb = qg_tensor_data(dlb);
    float *xd = qg_tensor_data(l->x);
    int64_t *yd = qg_tensor_data(l->y);
    for (int64_t i = 0; i < b; i++) {
        int64_t k = l->order[l->pos + i];
        const uint8_t *src = im + k * px;
        for (int64_t p = 0; p < px; p++) xd[i * px + p] = l->lut[src[p]];
        yd[i] = lb[k];
    }
    l->pos += b;
    l->xv = *l->x, l->yv = *l->y; /* headers over the same buffers, batch rows b */
    l->xv.shape[0] = b, l->yv.shape[0] = b;
    *x = &l->xv, *y = &l->yv;
    return true;
}
