/* IDX files (the MNIST format) through zlib, which reads gzip and plain files alike,
 * and the MNIST-style dataset made of four of them. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"
#include "qgrad/data.h"

/* reads exactly n bytes; false on a short read (truncated file) or a zlib error */
static bool read_all(gzFile f, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0) return false;
        p += got, n -= (size_t)got;
    }
    return true;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Deflate's best ratio is about 1032:1, so a gzip file of n bytes holds at most this many:
 * a header claiming more is refused before anything is allocated. */
#define GZIP_MAX_RATIO 1040

qg_tensor *qg_idx_load(const char *path) {
    if (!path) return qg__err_null("idx_load"), NULL;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return qg__err(QG_EIO, "idx_load: cannot open %s: %s", path, strerror(errno)), NULL;
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qg__err(QG_EIO, "idx_load: %s is not a regular file", path), NULL;
    }
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return qg__err(QG_ENOMEM, "idx_load: %s: out of memory for the zlib stream", path), NULL;
    }
    qg_tensor *t = NULL;
    unsigned char head[4], dimb[4 * 255];
    if (!read_all(f, head, 4)) {
        qg__err(QG_EFORMAT, "idx_load: %s: too short for an IDX header", path);
        goto done;
    }
    if (head[0] || head[1] || head[3] == 0 || head[3] > QG_MAX_DIMS) {
        qg__err(QG_EFORMAT, "idx_load: %s: bad magic %02x %02x %02x %02x (expected 00 00 <type> <1..%d dims>)", path,
                head[0], head[1], head[2], head[3], QG_MAX_DIMS);
        goto done;
    }
    qg_dtype dt;
    size_t esize;
    switch (head[2]) {
    case 0x08: dt = QG_U8, esize = 1; break;
    case 0x09: dt = QG_I8, esize = 1; break;
    case 0x0B: dt = QG_I32, esize = 2; break;
    case 0x0C: dt = QG_I32, esize = 4; break;
    case 0x0D: dt = QG_F32, esize = 4; break;
    case 0x0E: dt = QG_F64, esize = 8; break;
    default:
        qg__err(QG_EFORMAT, "idx_load: %s: unknown element type 0x%02x", path, head[2]);
        goto done;
    }
    int nd = head[3];
    int64_t shape[QG_MAX_DIMS], n = 1, span = 1; /* span: product of max(dim, 1), what strides reach */
    if (!read_all(f, dimb, 4 * (size_t)nd)) {
        qg__err(QG_EFORMAT, "idx_load: %s: truncated in the dimensions", path);
        goto done;
    }
    for (int i = 0; i < nd; i++) {
        shape[i] = be32(dimb + 4 * i);
        if (__builtin_mul_overflow(span, shape[i] ? shape[i] : 1, &span) || span > ((int64_t)1 << 40)) {
            qg__err(QG_EFORMAT, "idx_load: %s: dimensions too large (over 2^40 elements)", path);
            goto done;
        }
        n *= shape[i];
    }
    /* the claimed size against the file's, before allocating it */
    size_t bytes = (size_t)n * esize;
    uint64_t fsize = (uint64_t)sb.st_size, head_bytes = 4 + 4 * (uint64_t)nd;
    if (gzdirect(f) && bytes != fsize - head_bytes) {
        if (bytes < fsize - head_bytes)
            qg__err(QG_EFORMAT, "idx_load: %s: data continues past the %lld elements the header gives (the file holds %llu data bytes)",
                    path, (long long)n, (unsigned long long)(fsize - head_bytes));
        else
            qg__err(QG_EFORMAT, "idx_load: %s: truncated: the header gives %lld elements (%zu bytes) but the file holds %llu data bytes",
                    path, (long long)n, bytes, (unsigned long long)(fsize - head_bytes));
        goto done;
    }
    if (!gzdirect(f) && bytes / GZIP_MAX_RATIO > fsize) {
        qg__err(QG_EFORMAT, "idx_load: %s: the header gives %lld elements (%zu bytes), more than a %llu-byte gzip file can hold",
                path, (long long)n, bytes, (unsigned long long)fsize);
        goto done;
    }
    t = qg_tensor_empty(dt, nd, shape);
    if (!t) goto done;
    unsigned char *raw = dt == QG_U8 || dt == QG_I8 ? qg_tensor_data(t) : qg__alloc(bytes ? bytes : 1);
    bool ok = raw && read_all(f, raw, bytes);
    unsigned char extra;
    if (ok && gzread(f, &extra, 1) != 0) {
        qg__err(QG_EFORMAT, "idx_load: %s: data continues past the %lld elements the header gives", path, (long long)n);
        ok = false;
    } else if (!ok) {
        int zerr;
        const char *zmsg = gzerror(f, &zerr);
        qg__err(QG_EFORMAT, "idx_load: %s: truncated or corrupt: expected %zu data bytes%s%s", path, bytes,
                zerr < 0 ? ", zlib: " : "", zerr < 0 ? zmsg : "");
    }
    if (ok && raw != qg_tensor_data(t)) { /* big-endian to native */
        for (int64_t i = 0; i < n; i++) {
            const unsigned char *b = raw + (size_t)i * esize;
            if (head[2] == 0x0B) ((int32_t *)qg_tensor_data(t))[i] = (int16_t)(b[0] << 8 | b[1]);
            else if (head[2] == 0x0C) ((int32_t *)qg_tensor_data(t))[i] = (int32_t)be32(b);
            else if (head[2] == 0x0D) {
                uint32_t u = be32(b);
                memcpy((float *)qg_tensor_data(t) + i, &u, 4);
            } else {
                uint64_t u = (uint64_t)be32(b) << 32 | be32(b + 4);
                memcpy((double *)qg_tensor_data(t) + i, &u, 8);
            }
        }
    }
    if (raw != qg_tensor_data(t)) qg__free(raw);
    if (!ok) {
        qg_tensor_free(t);
        t = NULL;
    }
done:
    gzclose(f);
    return t;
}

/* <dir>/<stem> with ".gz" when that file exists, else the plain name */
static void pick(char *buf, size_t n, const char *dir, const char *stem) {
    snprintf(buf, n, "%s/%s.gz", dir, stem);
    struct stat sb; /* stat, not fopen: opening a FIFO would block */
    if (stat(buf, &sb)) snprintf(buf, n, "%s/%s", dir, stem);
}

qg_status qg_dataset_load_mnist(const char *dir, bool train, qg_dataset *out) {
    if (!dir || !out) return qg__err_null("dataset_load_mnist");
    out->images = out->labels = NULL;
    char ip[4096], lp[4096];
    pick(ip, sizeof ip, dir, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte");
    pick(lp, sizeof lp, dir, train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte");
    qg_tensor *im = qg_idx_load(ip);
    qg_tensor *lb = im ? qg_idx_load(lp) : NULL;
    qg_status st = QG_OK;
    if (!im || !lb) st = qg_last_status();
    else if (im->dtype != QG_U8 || im->ndim != 3 || lb->dtype != QG_U8 || lb->ndim != 1)
        st = qg__err(QG_EFORMAT, "dataset: %s and %s must be ubyte images (N, H, W) and ubyte labels (N)", ip, lp);
    else if (im->shape[0] != lb->shape[0])
        st = qg__err(QG_EFORMAT, "dataset: %s has %lld images but %s has %lld labels", ip, (long long)im->shape[0], lp,
                     (long long)lb->shape[0]);
    if (st) {
        qg_tensor_free(im), qg_tensor_free(lb);
        return st;
    }
    out->images = im, out->labels = lb;
    return QG_OK;
}

void qg_dataset_free(qg_dataset *d) {
    if (!d) return;
    qg_tensor_free(d->images), qg_tensor_free(d->labels);
    d->images = d->labels = NULL;
}
