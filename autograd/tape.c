/* The tape: an arena that owns every op output of a forward pass, the list of nodes
 * recorded in execution order, and backward, which replays that list in reverse.
 * Tape order is topological, so no graph search is needed. */
#include "internal.h"

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    char *mem;
} chunk;

struct qg_tape {
    chunk *chunks;       /* newest first */
    size_t total_used;   /* bytes handed out since reset, over all chunks */
    qg_node *last;       /* newest node */
    size_t nodes;
    qg_tensor *tensors;  /* tensors allocated since reset (newest first) */
    uint64_t gen;        /* bumped at each reset */
    uint64_t pass;       /* bumped at each backward */
};

#define CHUNK_MIN ((size_t)1 << 20)

static _Thread_local qg_tape *current_tape;
static _Thread_local qg_tape *default_tape;
static _Thread_local bool grad_off;

/* ------------------------------------------------------------- grad mode */

bool qg_grad_enabled(void) { return !grad_off; }

bool qg_set_grad_enabled(bool on) {
    bool prev = !grad_off;
    grad_off = !on;
    return prev;
}

/* ------------------------------------------------------------- tape objects */

static chunk *chunk_new(size_t cap) {
    chunk *c = qg__alloc(sizeof *c);
    if (!c) return NULL;
    c->mem = qg__alloc(cap);
    if (!c->mem) {
        qg__free(c);
        return NULL;
    }
    c->cap = cap;
    c->used = 0;
    c->next = NULL;
    return c;
}

static void chunks_free(chunk *c) {
    while (c) {
        chunk *n = c->next;
        qg__free(c->mem);
        qg__free(c);
        c = n;
    }
}

qg_tape *qg_tape_new(void) {
    qg_tape *t = qg__calloc(sizeof *t);
    if (!t) qg__err(QG_ENOMEM, "tape_new: out of memory");
    return t;
}

void qg_tape_free(qg_tape *t) {
    if (!t) return;
    if (current_tape == t) current_tape = NULL;
    if (default_tape == t) default_tape = NULL;
    chunks_free(t->chunks);
    qg__free(t);
}

qg_tape *qg_tape_current(void) {
    if (current_tape) return current_tape;
    if (!default_tape) default_tape = qg_tape_new();
    return default_tape;
}

qg_tape *qg_tape_set_current(qg_tape *t) {
    qg_tape *prev = qg_tape_current();
    current_tape = t;
    return prev;
}

void qg_tape_reset(qg_tape *t) {
    if (!t) t = qg_tape_current();
    if (!t) return;
    /* Several chunks mean the pass outgrew the arena: replace them by one chunk that
     * holds the whole pass, so the next pass allocates nothing. */
    if (t->chunks && t->chunks->next) {
        size_t need = t->total_used + t->total_used / 4;
        chunks_free(t->chunks);
        t->chunks = chunk_new(need > CHUNK_MIN ? need : CHUNK_MIN);
    } else if (t->chunks) {
        t->chunks->used = 0;
    }
    t->total_used = 0;
    t->last = NULL;
    t->nodes = 0;
    t->tensors = NULL;
    t->gen++;
}

size_t qg_tape_bytes(const qg_tape *t) {
    size_t n = 0;
    for (chunk *c = t ? t->chunks : NULL; c; c = c->next) n += c->cap;
    return n;
}

size_t qg_tape_node_count(const qg_tape *t) { return t ? t->nodes : 0; }

/* ------------------------------------------------------------- arena */

void *qg__tape_alloc(size_t nbytes) {
    qg_tape *t = qg_tape_current();
    if (!t) return NULL;
    nbytes = (nbytes + 63) & ~(size_t)63;
    chunk *c = t->chunks;
    if (!c || c->cap - c->used < nbytes) {
        size_t cap = c ? c->cap * 2 : CHUNK_MIN;
        if (cap < nbytes) cap = nbytes;
        chunk *n = chunk_new(cap);
        if (!n) {
            qg__err(QG_ENOMEM, "tape: out of memory allocating %zu bytes", nbytes);
            return NULL;
        }
        n->next = c;
        t->chunks = c = n;
    }
    void *p = c->mem + c->used;
    c->used += nbytes;
    t->total_used += nbytes;
    return p;
}

static bool in_arena(const qg_tape *t, const void *p) {
    for (const chunk *c = t->chunks; c; c = c->next)
        if ((const char *)p >= c->mem && (const char *)p < c->mem + c->cap) return true;
    return false;
}

static bool is_live(const qg_tape *t, const qg_tensor *x) {
    for (const qg_tensor *y = t->tensors; y; y = y->tape_next)
        if (y == x) return true;
    return false;
}

static qg_tensor *tape_header(void) {
    qg_tape *tp = qg_tape_current();
    qg_tensor *t = qg__tape_alloc(sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->tape = tp;
    t->tape_gen = tp->gen;
    t->tape_next = tp->tensors;
    tp->tensors = t;
    return t;
}

qg_tensor *qg__tape_tensor(qg_dtype dt, int ndim, const int64_t *shape) {
    qg_tensor *t = tape_header();
    qg_storage *s = qg__tape_alloc(sizeof *s);
    size_t nbytes = (size_t)qg__numel(ndim, shape) * qg_dtype_size(dt);
    void *data = qg__tape_alloc(nbytes ? nbytes : 1);
    if (!t || !s || !data) return NULL;
    s->data = data;
    s->nbytes = nbytes;
    s->refcount = 0;
    s->on_tape = true;
    t->storage = s;
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    qg__contig_strides(ndim, shape, t->strides);
    return t;
}

qg_tensor *qg__tape_zeros(qg_dtype dt, int ndim, const int64_t *shape) {
    qg_tensor *t = qg__tape_tensor(dt, ndim, shape);
    if (t) memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

qg_tensor *qg__tape_view(const qg_tensor *src) {
    qg_tensor *t = tape_header();
    if (!t) return NULL;
    t->dtype = src->dtype;
    t->ndim = src->ndim;
    memcpy(t->shape, src->shape, sizeof t->shape);
    memcpy(t->strides, src->strides, sizeof t->strides);
    t->offset = src->offset;
    t->storage = src->storage;
    return t;
}

qg_tensor *qg_detach(const qg_tensor *x) {
    if (!x) return qg__err_null("detach"), NULL;
    return qg__tape_view(x);
}

/* ------------------------------------------------------------- recording */

bool qg__needs_grad(int n, const qg_tensor *const *ins) {
    if (grad_off) return false;
    for (int i = 0; i < n; i++)
        if (ins[i] && ins[i]->requires_grad) return true;
    return false;
}

qg_node *qg__record(const char *name, qg_backward_fn bw, qg_tensor *out, int nin,
                    const qg_tensor *const *ins) {
    qg_tape *tp = qg_tape_current();
    qg_node *n = qg__tape_alloc(sizeof *n);
    qg_tensor **in = qg__tape_alloc(sizeof *in * (size_t)(nin ? nin : 1));
    if (!n || !in) return NULL;
    memset(n, 0, sizeof *n);
    for (int i = 0; i < nin; i++) in[i] = (qg_tensor *)ins[i];
    n->name = name;
    n->backward = bw;
    n->out = out;
    n->nin = nin;
    n->in = in;
    n->prev = tp->last;
    tp->last = n;
    tp->nodes++;
    out->node = n;
    out->requires_grad = true;
    return n;
}

/* ------------------------------------------------------------- backward */

qg_tensor *qg__grad_of(qg_tensor *t) {
    if (t->tape) {
        qg_tape *tp = t->tape;
        if (t->grad && t->grad_pass == tp->pass) return t->grad;
        if (t->grad) qg_tensor_zero_grad(t);
        else t->grad = qg__tape_zeros(t->dtype, t->ndim, t->shape);
        QG_ASSERT(t->grad);
        t->grad_pass = tp->pass;
        return t->grad;
    }
    if (!t->grad) {
        t->grad = qg_tensor_zeros(t->dtype, t->ndim, t->shape);
        QG_ASSERT(t->grad);
    }
    return t->grad;
}

qg_status qg_backward(qg_tensor *out, const qg_tensor *grad_out) {
    char a[128], b[128];
    if (!out) return qg__err(QG_EINVAL, "backward: output is NULL");
    qg_tape *tp = qg_tape_current();
    /* A pointer into the arena that is not on the live list was freed by a reset. */
    if (in_arena(tp, out) && !is_live(tp, out))
        return qg__err(QG_ESTATE, "backward: the tensor was freed by qg_tape_reset; run the forward pass again");
    if (out->tape && out->tape != tp)
        return qg__err(QG_ESTATE, "backward: the tensor belongs to another tape than the current one");
    if (!out->requires_grad)
        return qg__err(QG_ESTATE, "backward: tensor %s does not require grad: it has no path to a leaf with requires_grad",
                       qg_shape_str(out, a, sizeof a));
    if (!grad_out && qg_tensor_numel(out) != 1)
        return qg__err(QG_ESHAPE, "backward: output %s is not a scalar; pass grad_out of the same shape",
                       qg_shape_str(out, a, sizeof a));
    if (grad_out) {
        if (grad_out->dtype != out->dtype || qg_tensor_numel(grad_out) != qg_tensor_numel(out) ||
            (grad_out->ndim == out->ndim && memcmp(grad_out->shape, out->shape, sizeof(int64_t) * (size_t)out->ndim)) ||
            (grad_out->ndim != out->ndim && qg_tensor_numel(out) != 1))
            return qg__err(QG_ESHAPE, "backward: grad_out %s does not match output %s",
                           qg_shape_str(grad_out, b, sizeof b), qg_shape_str(out, a, sizeof a));
    }
    bool prev = qg_set_grad_enabled(false);
    tp->pass++;
    qg_tensor *g = qg__grad_of(out);
    if (grad_out) {
        /* same numel; view grad_out at out's shape and add */
        qg_tensor gv = *grad_out;
        if (gv.ndim != out->ndim) { /* one element of any rank */
            gv.ndim = out->ndim;
            for (int i = 0; i < out->ndim; i++) gv.shape[i] = 1, gv.strides[i] = 0;
        }
        qg__unbroadcast_add(g, &gv);
    } else {
        qg__store(qg__data(g), g->dtype, qg__load(qg__data(g), g->dtype) + 1.0);
    }
    for (qg_node *n = tp->last; n; n = n->prev) {
        qg_tensor *o = n->out;
        if (o->grad && o->grad_pass == tp->pass && o->tape_gen == tp->gen) n->backward(n);
    }
    qg_set_grad_enabled(prev);
    return QG_OK;
}
