/* Files written whole or not at all, and a growing text buffer to write them from.
 *
 * A qg__afile is a temporary file next to its path: written, flushed to disk, then
 * renamed over the path, so a reader sees the old file or the new one, never half of
 * one, and a failure leaves nothing behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>

#include "internal.h"

static bool write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w, n -= (size_t)w;
    }
    return true;
}

/* fsync of the folder holding path, so the rename itself is durable. */
static void sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort: some file systems refuse fsync on folders */
        close(fd);
    }
}

qg_status qg__afile_open(qg__afile *f, const char *op, const char *path) {
    static _Atomic unsigned counter;
    size_t plen = strlen(path);
    *f = (qg__afile){.fd = -1, .op = op, .path = path, .tmp = qg__alloc(plen + 64)};
    if (!f->tmp) return qg__err(QG_ENOMEM, "%s: out of memory", op);
    for (int tries = 0; f->fd < 0 && tries < 100; tries++) {
        snprintf(f->tmp, plen + 64, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd < 0 && errno != EEXIST) break;
    }
    if (f->fd >= 0) return QG_OK;
    qg_status st = qg__err(QG_EIO, "%s: %s: cannot create a temporary file: %s", op, path, strerror(errno));
    qg__free(f->tmp), f->tmp = NULL;
    return st;
}

bool qg__afile_write(qg__afile *f, const void *p, size_t n) {
    if (f->fd < 0 || f->failed) return false;
    if (!write_all(f->fd, p, n)) f->failed = true, f->err = errno;
    return !f->failed;
}

qg_status qg__afile_finish(qg__afile *f) {
    if (f->fd < 0) return qg__err(QG_EIO, "%s: %s: the file is not open", f->op, f->path);
    if (!f->failed && fsync(f->fd)) f->failed = true, f->err = errno;
    if (close(f->fd) && !f->failed) f->failed = true, f->err = errno;
    f->fd = -1;
    if (!f->failed) return QG_OK;
    qg_status st = qg__err(QG_EIO, "%s: %s: writing %s failed: %s", f->op, f->path, f->tmp, strerror(f->err));
    qg__afile_abort(f);
    return st;
}

qg_status qg__afile_commit(qg__afile *f) {
    qg_status st = !f->tmp      ? qg__err(QG_EIO, "%s: %s: nothing to commit", f->op, f->path)
                   : f->fd >= 0 ? qg__afile_finish(f)
                                : QG_OK; /* finished already */
    if (st) return st;
    if (rename(f->tmp, f->path)) {
        st = qg__err(QG_EIO, "%s: %s: renaming %s failed: %s", f->op, f->path, f->tmp, strerror(errno));
        qg__afile_abort(f);
        return st;
    }
    sync_dir(f->path);
    qg__free(f->tmp), f->tmp = NULL;
    return QG_OK;
}

void qg__afile_abort(qg__afile *f) {
    if (f->fd >= 0) close(f->fd), f->fd = -1;
    if (f->tmp) unlink(f->tmp);
    qg__free(f->tmp), f->tmp = NULL;
}

/* ------------------------------------------------------------- text */

void qg__text_add(qg__text *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n + 1) nc *= 2;
        char *p = qg__alloc(nc);
        if (!p) {
            b->oom = true;
            return;
        }
        if (b->n) memcpy(p, b->p, b->n);
        qg__free(b->p);
        b->p = p, b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void qg__text_printf(qg__text *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        qg__text_add(b, small, (size_t)n);
        return;
    }
    char *big = qg__alloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    qg__text_add(b, big, (size_t)n);
    qg__free(big);
}

void qg__text_free(qg__text *b) {
    qg__free(b->p);
    *b = (qg__text){0};
}
