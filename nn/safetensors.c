/* The safetensors file format: reading a file or buffer into a tensor dict
 * (nn/tensor_dict.c) and writing one out.
 *
 * Format: u64 little-endian header length N, N bytes of JSON, then the data buffer.
 * The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the data buffer) and may hold "__metadata__": {str: str}.
 *
 * Loading validates the whole header before allocating any tensor, then reads each
 * tensor's bytes straight into it (from memory, or with pread from the file, so a
 * large file is not held twice). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tensor_dict_internal.h"

/* Same limit as the reference implementation: a larger header is taken as corrupt. */
#define MAX_HEADER_BYTES ((uint64_t)100000000)
#define MAX_JSON_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_BIG_ENDIAN 1
#else
#define HOST_BIG_ENDIAN 0
#endif

/* Reverses the bytes of each of n elements of size es (file <-> host order). */
static void swap_bytes(void *p, int64_t n, size_t es) {
    unsigned char *b = p;
    for (int64_t i = 0; i < n; i++, b += es)
        for (size_t j = 0; j < es / 2; j++) {
            unsigned char x = b[j];
            b[j] = b[es - 1 - j];
            b[es - 1 - j] = x;
        }
}

/* ============================================================ dtypes */

static const struct {
    const char *name;
    qg_dtype dt;
} file_dtypes[] = {
    {"F32", QG_F32}, {"F64", QG_F64}, {"I64", QG_I64}, {"I32", QG_I32},
    {"U8", QG_U8},   {"I8", QG_I8},   {"BOOL", QG_U8}, /* BOOL is read as U8, written as U8 */
};

static const char *file_dtype_name(qg_dtype dt) {
    for (size_t i = 0; i < sizeof file_dtypes / sizeof *file_dtypes; i++)
        if (file_dtypes[i].dt == dt) return file_dtypes[i].name;
    return NULL;
}

/* ============================================================ loading */

typedef struct source {
    const char *op;  /* "safetensors_load" or "safetensors_parse" */
    const char *src; /* path, or "<buffer>" */
    const unsigned char *mem; /* data buffer in memory, or NULL: read from fd */
    int fd;
    uint64_t fd_base; /* file offset of the data buffer */
} source;

__attribute__((format(printf, 3, 4))) static qg_status fail(const source *s, qg_status st,
                                                              const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qg__err(st, "%s: %s: %s", s->op, s->src, msg);
}

/* Reads exactly n bytes at off; false (errno 0 at end of file) if not possible. */
static bool pread_all(int fd, uint64_t off, void *dst, size_t n) {
    char *p = dst;
    while (n) {
        if (off > (uint64_t)INT64_MAX) return errno = EINVAL, false;
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = 0;
            return false;
        }
        p += r, off += (uint64_t)r, n -= (size_t)r;
    }
    return true;
}

static uint64_t le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* One tensor's header entry, validated. */
typedef struct tinfo {
    const char *name; /* points into the cJSON tree */
    qg_dtype dt;
    int ndim;
    int64_t shape[QG_MAX_DIMS];
    uint64_t begin, end;
} tinfo;

static const char *shape_text(const tinfo *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* A JSON number that is a whole number in [0, 2^53] (negative: *neg set). */
static bool json_uint(const cJSON *v, uint64_t *out, bool *neg) {
    *neg = false;
    if (!cJSON_IsNumber(v)) return false;
    double x = v->valuedouble;
    if (!isfinite(x) || x != floor(x)) return false;
    if (x < 0) return *neg = true, false;
    if (x > MAX_JSON_INT) return false;
    *out = (uint64_t)x;
    return true;
}

static qg_status parse_entry(const source *s, const cJSON *it, uint64_t data_len, tinfo *ti) {
    const char *nm = it->string;
    ti->name = nm;
    if (!cJSON_IsObject(it)) return fail(s, QG_EFORMAT, "tensor '%s': entry is not a JSON object", nm);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    if (!cJSON_IsString(dt)) return fail(s, QG_EFORMAT, "tensor '%s': \"dtype\" is missing or not a string", nm);
    size_t k, nd = sizeof file_dtypes / sizeof *file_dtypes;
    for (k = 0; k < nd && strcmp(file_dtypes[k].name, dt->valuestring); k++) {}
    if (k == nd)
        return fail(s, QG_EFORMAT, "tensor '%s': dtype \"%s\" is not supported (expected F32, F64, I64, I32, U8, I8 or BOOL)",
                    nm, dt->valuestring);
    ti->dt = file_dtypes[k].dt;

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    if (!cJSON_IsArray(sh)) return fail(s, QG_EFORMAT, "tensor '%s': \"shape\" is missing or not an array", nm);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > QG_MAX_DIMS)
        return fail(s, QG_EFORMAT, "tensor '%s': shape has %d dims, qgrad supports at most %d", nm, ndim, QG_MAX_DIMS);
    ti->ndim = ndim;
    bool zero = false;
    int i = 0;
    for (const cJSON *v = sh->child; v; v = v->next, i++) {
        uint64_t x;
        bool neg;
        if (!json_uint(v, &x, &neg))
            return fail(s, QG_EFORMAT, "tensor '%s': shape entry %d is %s", nm, i,
                        neg ? "negative" : "not a whole number in [0, 2^53]");
        ti->shape[i] = (int64_t)x;
        zero |= x == 0;
    }
    size_t es = qg_dtype_size(ti->dt);
    uint64_t nbytes = 0;
    if (!zero) {
        const uint64_t limit = (uint64_t)INT64_MAX / 16;
        nbytes = es;
        for (i = 0; i < ndim; i++) {
            if ((uint64_t)ti->shape[i] > limit / nbytes) {
                char b[256];
                return fail(s, QG_EFORMAT, "tensor '%s': shape %s is too large", nm, shape_text(ti, b, sizeof b));
            }
            nbytes *= (uint64_t)ti->shape[i];
        }
    }

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return fail(s, QG_EFORMAT, "tensor '%s': \"data_offsets\" is missing or not an array of 2 numbers", nm);
    bool neg;
    if (!json_uint(off->child, &ti->begin, &neg) || !json_uint(off->child->next, &ti->end, &neg))
        return fail(s, QG_EFORMAT, "tensor '%s': data_offsets must be whole numbers in [0, 2^53]", nm);
    if (ti->begin > ti->end)
        return fail(s, QG_EFORMAT, "tensor '%s': data_offsets [%llu, %llu] begin after they end", nm,
                    (unsigned long long)ti->begin, (unsigned long long)ti->end);
    if (ti->end > data_len)
        return fail(s, QG_EFORMAT, "tensor '%s': data_offsets [%llu, %llu] run past the end of the %llu-byte data buffer",
                    nm, (unsigned long long)ti->begin, (unsigned long long)ti->end, (unsigned long long)data_len);
    if (ti->end - ti->begin != nbytes) {
        char b[256];
        return fail(s, QG_EFORMAT, "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s %s needs %llu", nm,
                    (unsigned long long)ti->begin, (unsigned long long)ti->end,
                    (unsigned long long)(ti->end - ti->begin), dt->valuestring, shape_text(ti, b, sizeof b),
                    (unsigned long long)nbytes);
    }
    return QG_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const tinfo *const *)a)->name, (*(const tinfo *const *)b)->name);
}

static int by_range(const void *a, const void *b) {
    const tinfo *x = *(const tinfo *const *)a, *y = *(const tinfo *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Names unique; byte ranges disjoint and covering [0, data_len) exactly. */
static qg_status check_layout(const source *s, tinfo *ti, int n, uint64_t data_len) {
    if (n == 0) {
        if (data_len)
            return fail(s, QG_EFORMAT, "the file holds no tensors but %llu data bytes", (unsigned long long)data_len);
        return QG_OK;
    }
    const tinfo **p = qg__alloc(sizeof *p * (size_t)n);
    if (!p) return fail(s, QG_ENOMEM, "out of memory for %d header entries", n);
    qg_status st = QG_OK;
    for (int i = 0; i < n; i++) p[i] = &ti[i];
    qsort(p, (size_t)n, sizeof *p, by_name);
    for (int i = 1; i < n && !st; i++)
        if (!strcmp(p[i - 1]->name, p[i]->name)) st = fail(s, QG_EFORMAT, "tensor '%s' appears twice", p[i]->name);
    if (!st) qsort(p, (size_t)n, sizeof *p, by_range);
    uint64_t at = 0;
    for (int i = 0; i < n && !st; i++) {
        if (p[i]->begin < at)
            st = fail(s, QG_EFORMAT, "tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", p[i - 1]->name,
                      (unsigned long long)p[i - 1]->begin, (unsigned long long)p[i - 1]->end, p[i]->name,
                      (unsigned long long)p[i]->begin, (unsigned long long)p[i]->end);
        else if (p[i]->begin > at)
            st = fail(s, QG_EFORMAT, "bytes [%llu, %llu) of the data buffer belong to no tensor",
                      (unsigned long long)at, (unsigned long long)p[i]->begin);
        at = p[i]->end;
    }
    if (!st && at != data_len)
        st = fail(s, QG_EFORMAT, "bytes [%llu, %llu) at the end of the data buffer belong to no tensor",
                  (unsigned long long)at, (unsigned long long)data_len);
    qg__free(p);
    return st;
}

static qg_status read_tensor(const source *s, const tinfo *ti, qg_tensor *t) {
    size_t n = (size_t)(ti->end - ti->begin);
    if (!n) return QG_OK;
    void *dst = qg_tensor_data(t);
    if (s->mem) {
        memcpy(dst, s->mem + ti->begin, n);
    } else if (!pread_all(s->fd, s->fd_base + ti->begin, dst, n)) {
        return fail(s, QG_EIO, "tensor '%s': reading %zu bytes failed: %s", ti->name, n,
                    errno ? strerror(errno) : "the file ended early (changed while reading?)");
    }
    if (HOST_BIG_ENDIAN) swap_bytes(dst, qg_tensor_numel(t), qg_dtype_size(t->dtype));
    return QG_OK;
}

/* Validates the header (hlen bytes, not NUL-terminated) against a data buffer of
 * data_len bytes, then builds the dict. */
static qg_tensor_dict *parse_header(const source *s, const char *hdr, uint64_t hlen, uint64_t data_len) {
    const char *nul = memchr(hdr, 0, (size_t)hlen);
    if (nul) return fail(s, QG_EFORMAT, "the header holds a NUL byte at offset %td", nul - hdr), NULL;
    if (!qg__valid_utf8((const unsigned char *)hdr, (size_t)hlen))
        return fail(s, QG_EFORMAT, "the header is not valid UTF-8"), NULL;
    char *txt = qg__alloc((size_t)hlen + 1);
    if (!txt) return fail(s, QG_ENOMEM, "out of memory for a %llu-byte header", (unsigned long long)hlen), NULL;
    memcpy(txt, hdr, (size_t)hlen);
    txt[hlen] = 0;

    qg_tensor_dict *d = NULL, *ret = NULL;
    tinfo *ti = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(txt, &end, 1);
    if (!root) {
        fail(s, QG_EFORMAT, "the header is not valid JSON (error near byte %td of %llu)", end ? end - txt : (ptrdiff_t)-1,
             (unsigned long long)hlen);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        fail(s, QG_EFORMAT, "the header is not a JSON object");
        goto out;
    }
    const cJSON *meta = NULL;
    int n = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__")) {
            n++;
        } else if (meta) {
            fail(s, QG_EFORMAT, "\"__metadata__\" appears twice");
            goto out;
        } else {
            meta = it;
        }
    }
    if (meta && !cJSON_IsNull(meta)) {
        if (!cJSON_IsObject(meta)) {
            fail(s, QG_EFORMAT, "\"__metadata__\" is not an object");
            goto out;
        }
        for (const cJSON *m = meta->child; m; m = m->next)
            if (!cJSON_IsString(m)) {
                fail(s, QG_EFORMAT, "\"__metadata__\" entry '%s' is not a string", m->string);
                goto out;
            }
    }
    ti = qg__alloc(sizeof *ti * (size_t)(n ? n : 1));
    if (!ti) {
        fail(s, QG_ENOMEM, "out of memory for %d header entries", n);
        goto out;
    }
    int k = 0;
    for (const cJSON *it = root->child; it; it = it->next)
        if (it != meta && parse_entry(s, it, data_len, &ti[k++])) goto out;
    if (check_layout(s, ti, n, data_len)) goto out;

    d = qg_tensor_dict_new();
    if (!d) goto out;
    if (meta)
        for (const cJSON *m = meta->child; m; m = m->next)
            if (qg_tensor_dict_set_meta(d, m->string, m->valuestring)) goto out;
    if (!qg__dict_reserve(d, n)) {
        fail(s, QG_ENOMEM, "out of memory for %d tensors", n);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        qg_tensor *t = qg_tensor_empty(ti[i].dt, ti[i].ndim, ti[i].shape);
        if (!t) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", qg_last_error());
            fail(s, qg_last_status(), "tensor '%s': %s", ti[i].name, msg);
            goto out;
        }
        if (read_tensor(s, &ti[i], t)) {
            qg_tensor_free(t);
            goto out;
        }
        if (qg__dict_append(d, s->op, ti[i].name, t)) goto out; /* t freed by the append */
    }
    ret = d;
out:
    if (!ret) qg_tensor_dict_free(d);
    qg__free(ti);
    cJSON_Delete(root);
    qg__free(txt);
    return ret;
}

qg_tensor_dict *qg_safetensors_parse(const void *buf, size_t len) {
    source s = {"safetensors_parse", "<buffer>", NULL, -1, 0};
    if (!buf && len) return fail(&s, QG_EINVAL, "buffer is NULL"), NULL;
    if (len < 8)
        return fail(&s, QG_EFORMAT, "%zu bytes is shorter than the 8-byte header length", len), NULL;
    const unsigned char *b = buf;
    uint64_t n = le64(b);
    if (n > MAX_HEADER_BYTES)
        return fail(&s, QG_EFORMAT, "header length %llu is over the limit of %llu bytes", (unsigned long long)n,
                    (unsigned long long)MAX_HEADER_BYTES),
               NULL;
    if (n > len - 8)
        return fail(&s, QG_EFORMAT, "header length %llu runs past the end of the %zu-byte buffer",
                    (unsigned long long)n, len),
               NULL;
    s.mem = b + 8 + n;
    return parse_header(&s, (const char *)b + 8, n, len - 8 - n);
}

qg_tensor_dict *qg_safetensors_load(const char *path) {
    if (!path) return qg__err(QG_EINVAL, "safetensors_load: path is NULL"), NULL;
    source s = {"safetensors_load", path, NULL, -1, 0};
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fail(&s, QG_EIO, "cannot open: %s", strerror(errno)), NULL;
    qg_tensor_dict *d = NULL;
    char *hdr = NULL;
    struct stat sb;
    unsigned char pre[8];
    if (fstat(fd, &sb)) {
        fail(&s, QG_EIO, "cannot stat: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        fail(&s, QG_EIO, "not a regular file");
        goto out;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        fail(&s, QG_EFORMAT, "the file has %llu bytes, fewer than the 8-byte header length", (unsigned long long)size);
        goto out;
    }
    if (!pread_all(fd, 0, pre, 8)) {
        fail(&s, QG_EIO, "cannot read: %s", errno ? strerror(errno) : "the file ended early");
        goto out;
    }
    uint64_t n = le64(pre);
    if (n > MAX_HEADER_BYTES) {
        fail(&s, QG_EFORMAT, "header length %llu is over the limit of %llu bytes", (unsigned long long)n,
             (unsigned long long)MAX_HEADER_BYTES);
        goto out;
    }
    if (n > size - 8) {
        fail(&s, QG_EFORMAT, "header length %llu runs past the end of the %llu-byte file", (unsigned long long)n,
             (unsigned long long)size);
        goto out;
    }
    hdr = qg__alloc((size_t)n + 1);
    if (!hdr) {
        fail(&s, QG_ENOMEM, "out of memory for a %llu-byte header", (unsigned long long)n);
        goto out;
    }
    if (!pread_all(fd, 8, hdr, (size_t)n)) {
        fail(&s, QG_EIO, "cannot read the header: %s", errno ? strerror(errno) : "the file ended early");
        goto out;
    }
    s.fd = fd;
    s.fd_base = 8 + n;
    d = parse_header(&s, hdr, n, size - 8 - n);
out:
    qg__free(hdr);
    close(fd);
    return d;
}

/* ============================================================ saving */

static void sb_puts(qg__text *b, const char *s) { qg__text_add(b, s, strlen(s)); }

static void sb_u64(qg__text *b, uint64_t v) {
    char t[24];
    qg__text_add(b, t, (size_t)snprintf(t, sizeof t, "%llu", (unsigned long long)v));
}

/* A JSON string literal; s is valid UTF-8 (checked when it entered the dict). */
static void sb_json_str(qg__text *b, const char *s) {
    qg__text_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            qg__text_add(b, e, 2);
        } else if (c < 0x20) {
            char e[8];
            qg__text_add(b, e, (size_t)snprintf(e, sizeof e, "\\u%04x", c));
        } else {
            qg__text_add(b, (const char *)&c, 1);
        }
    }
    qg__text_add(b, "\"", 1);
}

static bool write_tensor(qg__afile *f, const qg_tensor *t) {
    size_t n = (size_t)qg_tensor_numel(t) * qg_dtype_size(t->dtype);
    if (!n) return true;
    if (qg_tensor_is_contiguous(t) && !HOST_BIG_ENDIAN) return qg__afile_write(f, qg_tensor_data(t), n);
    void *buf = qg__alloc(n);
    if (!buf) return errno = ENOMEM, false;
    bool ok = !qg_tensor_copy_to(t, t->dtype, buf);
    if (!ok) errno = EINVAL;
    if (ok && HOST_BIG_ENDIAN) swap_bytes(buf, qg_tensor_numel(t), qg_dtype_size(t->dtype));
    ok = ok && qg__afile_write(f, buf, n);
    qg__free(buf);
    return ok;
}

qg_status qg_safetensors_save(const char *path, const qg_tensor_dict *d) {
    const char *op = "safetensors_save";
    if (!path || !d) return qg__err(QG_EINVAL, "%s: %s is NULL", op, path ? "dict" : "path");
    /* header */
    qg__text h = {0};
    sb_puts(&h, "{");
    if (d->nmeta) {
        sb_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < d->nmeta; i++) {
            if (i) sb_puts(&h, ",");
            sb_json_str(&h, d->m[i].key);
            sb_puts(&h, ":");
            sb_json_str(&h, d->m[i].val);
        }
        sb_puts(&h, "}");
    }
    uint64_t at = 0;
    for (int i = 0; i < d->n; i++) {
        const qg_tensor *t = d->e[i].t;
        const char *dn = file_dtype_name(t->dtype);
        if (!dn) {
            qg__free(h.p);
            return qg__err(QG_EDTYPE, "%s: %s: tensor '%s' has unknown dtype %d", op, path, d->e[i].name,
                           (int)t->dtype);
        }
        uint64_t nb = (uint64_t)qg_tensor_numel(t) * qg_dtype_size(t->dtype);
        if (i || d->nmeta) sb_puts(&h, ",");
        sb_json_str(&h, d->e[i].name);
        sb_puts(&h, ":{\"dtype\":\"");
        sb_puts(&h, dn);
        sb_puts(&h, "\",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            if (k) sb_puts(&h, ",");
            sb_u64(&h, (uint64_t)t->shape[k]);
        }
        sb_puts(&h, "],\"data_offsets\":[");
        sb_u64(&h, at);
        sb_puts(&h, ",");
        sb_u64(&h, at + nb);
        sb_puts(&h, "]}");
        at += nb;
    }
    sb_puts(&h, "}");
    while ((8 + h.n) % 8) sb_puts(&h, " "); /* data starts 8-byte aligned */
    if (h.oom) {
        qg__free(h.p);
        return qg__err(QG_ENOMEM, "%s: %s: out of memory for the header", op, path);
    }

    qg__afile f;
    qg_status st = qg__afile_open(&f, op, path);
    if (!st) {
        unsigned char pre[8];
        for (int i = 0; i < 8; i++) pre[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
        bool ok = qg__afile_write(&f, pre, 8) && qg__afile_write(&f, h.p, h.n);
        for (int i = 0; ok && i < d->n; i++) ok = write_tensor(&f, d->e[i].t);
        if (!ok && !f.failed) f.failed = true, f.err = errno; /* a copy, not a write, failed */
        st = qg__afile_commit(&f);
    }
    qg__free(h.p);
    return st;
}
