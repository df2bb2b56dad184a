/* Tensor dicts: ordered name -> tensor maps with string metadata, the in-memory form
 * of a checkpoint (nn/safetensors.c reads and writes them; modules and optimizers put
 * their state in them). Entries keep insertion order; an open-addressing index over
 * them, at most half full, makes lookups by name O(1). Names and metadata are checked
 * to be valid UTF-8 on the way in, so that any dict can be saved. */
#include "tensor_dict_internal.h"

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = qg__alloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* Grows the array *arr of elements of size es to hold at least need; keeps the contents. */
static bool grow(void **arr, int *cap, size_t es, int need) {
    if (need <= *cap) return true;
    int nc = *cap ? *cap : 8;
    while (nc < need) {
        if (nc > INT32_MAX / 2) return false;
        nc *= 2;
    }
    void *p = qg__alloc(es * (size_t)nc);
    if (!p) return false;
    if (*cap) memcpy(p, *arr, es * (size_t)*cap);
    qg__free(*arr);
    *arr = p;
    *cap = nc;
    return true;
}

static uint64_t hash_str(const char *s) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int find(const qg_tensor_dict *d, const char *name) {
    if (!d->nslots) return -1;
    size_t mask = (size_t)d->nslots - 1;
    for (size_t i = (size_t)hash_str(name) & mask;; i = (i + 1) & mask) {
        int e = d->slots[i];
        if (e < 0) return -1;
        if (!strcmp(d->e[e].name, name)) return e;
    }
}

static void index_insert(qg_tensor_dict *d, int e) {
    size_t mask = (size_t)d->nslots - 1;
    size_t i = (size_t)hash_str(d->e[e].name) & mask;
    while (d->slots[i] >= 0) i = (i + 1) & mask;
    d->slots[i] = e;
}

/* Makes room in the index for n entries, keeping it at most half full. */
bool qg__dict_reserve(qg_tensor_dict *d, int n) {
    if ((int64_t)n * 2 <= d->nslots) return true;
    int ns = d->nslots ? d->nslots : 16;
    while ((int64_t)n * 2 > ns) {
        if (ns > INT32_MAX / 4) return false;
        ns *= 2;
    }
    int *s = qg__alloc(sizeof *s * (size_t)ns);
    if (!s) return false;
    for (int i = 0; i < ns; i++) s[i] = -1;
    qg__free(d->slots);
    d->slots = s;
    d->nslots = ns;
    for (int e = 0; e < d->n; e++) index_insert(d, e);
    return true;
}

/* Strict UTF-8: no overlong forms, surrogates or code points past U+10FFFF. */
bool qg__valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
        i += len;
    }
    return true;
}

static bool valid_str(const char *s) { return qg__valid_utf8((const unsigned char *)s, strlen(s)); }

qg_tensor_dict *qg_tensor_dict_new(void) {
    qg_tensor_dict *d = qg__calloc(sizeof *d);
    if (!d) qg__err(QG_ENOMEM, "tensor_dict_new: out of memory");
    return d;
}

void qg_tensor_dict_free(qg_tensor_dict *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        qg__free(d->e[i].name);
        qg_tensor_free(d->e[i].t);
    }
    for (int i = 0; i < d->nmeta; i++) {
        qg__free(d->m[i].key);
        qg__free(d->m[i].val);
    }
    qg__free(d->e);
    qg__free(d->slots);
    qg__free(d->m);
    qg__free(d);
}

int qg_tensor_dict_size(const qg_tensor_dict *d) { return d ? d->n : 0; }

static bool check_index(const char *op, const qg_tensor_dict *d, int i, int n) {
    if (!d) return qg__err(QG_EINVAL, "%s: dict is NULL", op), false;
    if (i < 0 || i >= n)
        return qg__err(QG_EINVAL, "%s: index %d out of range (%d entries)", op, i, n), false;
    return true;
}

const char *qg_tensor_dict_name(const qg_tensor_dict *d, int i) {
    return check_index("tensor_dict_name", d, i, d ? d->n : 0) ? d->e[i].name : NULL;
}

qg_tensor *qg_tensor_dict_at(const qg_tensor_dict *d, int i) {
    return check_index("tensor_dict_at", d, i, d ? d->n : 0) ? d->e[i].t : NULL;
}

qg_tensor *qg_tensor_dict_get(const qg_tensor_dict *d, const char *name) {
    if (!d || !name)
        return qg__err(QG_EINVAL, "tensor_dict_get: %s is NULL", d ? "name" : "dict"), NULL;
    int e = find(d, name);
    if (e < 0)
        return qg__err(QG_EINVAL, "tensor_dict_get: no tensor named '%s' (the dict has %d entries)",
                       name, d->n),
               NULL;
    return d->e[e].t;
}

/* Appends an entry whose name is not in d yet. d owns t from here on, also on failure. */
qg_status qg__dict_append(qg_tensor_dict *d, const char *op, const char *name, qg_tensor *t) {
    char *nm = dup_str(name);
    void *arr = d->e;
    bool ok = nm && grow(&arr, &d->cap, sizeof *d->e, d->n + 1);
    d->e = arr;
    if (!ok || !qg__dict_reserve(d, d->n + 1)) {
        qg__free(nm);
        qg_tensor_free(t);
        return qg__err(QG_ENOMEM, "%s: out of memory adding '%s'", op, name);
    }
    d->e[d->n].name = nm;
    d->e[d->n].t = t;
    index_insert(d, d->n);
    d->n++;
    return QG_OK;
}

qg_status qg_tensor_dict_put(qg_tensor_dict *d, const char *name, qg_tensor *t) {
    const char *op = "tensor_dict_put";
    if (!t) return qg__err(QG_EINVAL, "%s: tensor for '%s' is NULL", op, name ? name : "(null)");
    if (t->tape)
        return qg__err(QG_EINVAL, "%s: the tensor for '%s' is an op output owned by the tape; put a qg_tensor_clone of it",
                       op, name ? name : "(null)");
    qg_status st;
    if (!d || !name) {
        st = qg__err(QG_EINVAL, "%s: %s is NULL", op, d ? "name" : "dict");
        goto fail;
    }
    if (!*name || !strcmp(name, "__metadata__") || !valid_str(name)) {
        st = qg__err(QG_EINVAL, "%s: invalid tensor name '%s' (must be non-empty UTF-8 and not \"__metadata__\")",
                     op, name);
        goto fail;
    }
    for (int i = 0; i < d->n; i++)
        if (d->e[i].t == t) {
            if (!strcmp(d->e[i].name, name)) return QG_OK;
            /* already owned by the dict: not freed */
            return qg__err(QG_EINVAL, "%s: this tensor is already in the dict as '%s'; put a clone as '%s'",
                           op, d->e[i].name, name);
        }
    int e = find(d, name);
    if (e >= 0) {
        qg_tensor_free(d->e[e].t);
        d->e[e].t = t;
        return QG_OK;
    }
    return qg__dict_append(d, op, name, t);
fail:
    qg_tensor_free(t);
    return st;
}

qg_status qg_tensor_dict_set_meta(qg_tensor_dict *d, const char *key, const char *value) {
    const char *op = "tensor_dict_set_meta";
    if (!d || !key || !value) return qg__err(QG_EINVAL, "%s: NULL argument", op);
    if (!valid_str(key) || !valid_str(value))
        return qg__err(QG_EINVAL, "%s: key '%s' or its value is not valid UTF-8", op, key);
    char *v = dup_str(value);
    if (!v) return qg__err(QG_ENOMEM, "%s: out of memory", op);
    for (int i = 0; i < d->nmeta; i++)
        if (!strcmp(d->m[i].key, key)) {
            qg__free(d->m[i].val);
            d->m[i].val = v;
            return QG_OK;
        }
    char *k = dup_str(key);
    void *arr = d->m;
    bool ok = k && grow(&arr, &d->capmeta, sizeof *d->m, d->nmeta + 1);
    d->m = arr;
    if (!ok) {
        qg__free(k);
        qg__free(v);
        return qg__err(QG_ENOMEM, "%s: out of memory", op);
    }
    d->m[d->nmeta].key = k;
    d->m[d->nmeta].val = v;
    d->nmeta++;
    return QG_OK;
}

const char *qg_tensor_dict_meta(const qg_tensor_dict *d, const char *key) {
    if (!d || !key) return NULL;
    for (int i = 0; i < d->nmeta; i++)
        if (!strcmp(d->m[i].key, key)) return d->m[i].val;
    return NULL;
}

int qg_tensor_dict_meta_size(const qg_tensor_dict *d) { return d ? d->nmeta : 0; }

const char *qg_tensor_dict_meta_at(const qg_tensor_dict *d, int i, const char **value) {
    if (!check_index("tensor_dict_meta_at", d, i, d ? d->nmeta : 0)) return NULL;
    if (value) *value = d->m[i].val;
    return d->m[i].key;
}
