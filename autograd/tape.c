/* The tape: an arena that owns every op output of a forward pass, the list of nodes
 * recorded in execution order, and backward, which replays that list in reverse.
 * Tape order is topological, so no graph search is needed.
 *
 * Stale tensors: every tape tensor carries the generation of the pass that made it,
 * and qg_tape_reset advances the tape's. Tensor headers live apart from the data, in
 * two header pools used by alternate generations and never freed by a reset, so a
 * tensor of the pass just reset still has its header (and its old generation) intact
 * however the data arena is reused or regrown: qg__live() turns it into an error.
 * (Handles two resets old may alias a newer header.) */
#include <time.h>

#include "op_internal.h"

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    char *mem;
} chunk;

/* Tensor headers of one generation parity: chunks kept for reuse, oldest first. */
typedef struct hdr_pool {
    chunk *first, *cur;
    int nchunks;
} hdr_pool;

struct qg_tape {
    chunk *chunks;       /* newest first */
    size_t total_used;   /* bytes handed out since reset, over all chunks */
    hdr_pool hdr[2];     /* tensor headers, by gen & 1 */
    qg_node *last;       /* newest node */
    size_t nodes;
    qg_tensor *tensors;  /* tensors allocated since reset (newest first) */
    uint64_t gen;        /* bumped at each reset */
    uint64_t id;         /* unique over the process: tells a tape from one at a freed one's address */
    qg_tensor *orphans;  /* caller-owned tensors freed while this pass used them: freed at reset */
    uint64_t pass;       /* bumped at each backward */
    size_t warn_bytes, warn_nodes; /* qg_tape_set_limits */
    bool warned;
};

/* Defaults of qg_tape_set_limits: far above one forward pass of a real model, reached
 * within a few thousand steps by a loop that never resets. */
#define WARN_BYTES_DEFAULT ((size_t)4 << 30)
#define WARN_NODES_DEFAULT ((size_t)100000)

#define CHUNK_MIN ((size_t)1 << 20)

static _Thread_local qg_tape *current_tape;
static _Thread_local qg_tape *default_tape;
static _Thread_local bool grad_off;
_Thread_local const qg__sync *qg__sync_bn, *qg__sync_obs; /* internal.h */
_Thread_local const qg__bwd_hook *qg__bwd_hook_on;

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
    static uint64_t next_id;
    qg_tape *t = qg__calloc(sizeof *t);
    if (!t) return qg__err(QG_ENOMEM, "tape_new: out of memory"), NULL;
    t->warn_bytes = WARN_BYTES_DEFAULT, t->warn_nodes = WARN_NODES_DEFAULT;
    t->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    return t;
}

/* ------------------------------------------------------------- caller-owned inputs */

/* A caller-owned tensor that the pass's graph or views point to is marked; freeing it
 * before the reset (a parameter, or the batch, before backward) moves it to the tape,
 * which frees it at reset, as PyTorch's graph keeps its inputs alive. */
void qg__tape_uses(const qg_tensor *x) {
    qg_tape *tp = qg_tape_current();
    if (!x || x->tape || !tp) return;
    qg_tensor *m = (qg_tensor *)x; /* bookkeeping only */
    m->used_tape = tp->id, m->used_gen = tp->gen;
}

bool qg__tape_in_use(const qg_tensor *t) {
    qg_tape *tp = current_tape ? current_tape : default_tape;
    return tp && t->used_tape && t->used_tape == tp->id && t->used_gen == tp->gen;
}

bool qg__tape_adopt(qg_tensor *t) {
    if (!qg__tape_in_use(t)) return false;
    qg_tape *tp = current_tape ? current_tape : default_tape; /* the one in use, not NULL */
    t->used_tape = 0;
    t->tape_next = tp->orphans;
    tp->orphans = t;
    return true;
}

static void free_orphans(qg_tape *t) {
    for (qg_tensor *o; (o = t->orphans);) {
        t->orphans = o->tape_next;
        qg_tensor_free(o); /* used_tape is 0: freed now (its grad may join the list) */
    }
}

void qg_tape_free(qg_tape *t) {
    if (!t) return;
    free_orphans(t);
    if (current_tape == t) current_tape = NULL;
    if (default_tape == t) default_tape = NULL;
    chunks_free(t->chunks);
    chunks_free(t->hdr[0].first), chunks_free(t->hdr[1].first);
    qg__free(t);
}

void qg_shutdown(void) { qg_tape_free(default_tape); }

qg_status qg_tape_set_limits(qg_tape *t, size_t bytes, size_t nodes) {
    if (!t) t = qg_tape_current();
    if (!t) return qg_last_status();
    t->warn_bytes = bytes, t->warn_nodes = nodes, t->warned = false;
    return QG_OK;
}

/* ------------------------------------------------------------- warnings */

static void default_warn(const char *msg, void *ctx) {
    (void)ctx;
    fprintf(stderr, "qgrad warning: %s\n", msg);
}
static qg_warning_fn warn_fn = default_warn;
static void *warn_ctx;

void qg_set_warning_handler(qg_warning_fn fn, void *ctx) {
    warn_fn = fn ? fn : default_warn;
    warn_ctx = fn ? ctx : NULL;
}

/* Once per tape (until qg_tape_set_limits): a pass that outgrew its limits. */
static void check_limits(qg_tape *t) {
    if (t->warned || (t->total_used <= t->warn_bytes && t->nodes <= t->warn_nodes)) return;
    t->warned = true;
    char msg[256];
    snprintf(msg, sizeof msg,
             "tape holds %zu nodes and %zu bytes since its last reset (limits %zu nodes, %zu bytes): "
             "is qg_tape_reset missing from a loop? (qg_tape_set_limits changes the limits)",
             t->nodes, t->total_used, t->warn_nodes, t->warn_bytes);
    warn_fn(msg, warn_ctx);
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
    free_orphans(t);
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
    hdr_pool *h = &t->hdr[t->gen & 1]; /* the headers of two generations ago are free */
    for (chunk *c = h->first; c; c = c->next) c->used = 0;
    h->cur = h->first;
}

size_t qg_tape_bytes(const qg_tape *t) {
    if (!t) t = qg_tape_current();
    size_t n = 0;
    for (chunk *c = t ? t->chunks : NULL; c; c = c->next) n += c->cap;
    return n;
}

size_t qg_tape_node_count(const qg_tape *t) {
    if (!t) t = qg_tape_current();
    return t ? t->nodes : 0;
}

qg_status qg__live(const char *op, const qg_tensor *x) {
    if (x && x->tape && x->tape_gen != x->tape->gen)
        return qg__err(QG_ESTATE, "%s: tensor from a reset tape (qg_tape_reset freed it); run the forward pass again", op);
    return QG_OK;
}

/* ------------------------------------------------------------- arena */

void *qg__tape_alloc(size_t nbytes) {
    qg_tape *t = qg_tape_current();
    if (!t) return NULL;
    if (nbytes > SIZE_MAX / 4) return qg__err(QG_ENOMEM, "tape: %zu bytes are more than can be allocated", nbytes), NULL;
    if (qg__alloc_fails()) return qg__err(QG_ENOMEM, "tape: out of memory allocating %zu bytes", nbytes), NULL;
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

/* A header from this generation's pool (chunks are kept and reused, never freed). */
static qg_tensor *hdr_alloc(qg_tape *t) {
    hdr_pool *h = &t->hdr[t->gen & 1];
    const size_t sz = (sizeof(qg_tensor) + 63) & ~(size_t)63;
    while (h->cur && h->cur->cap - h->cur->used < sz) h->cur = h->cur->next;
    if (!h->cur) {
        /* grow both pools alike, so that the pass after next allocates nothing either */
        for (int k = 0; k < 2; k++) {
            hdr_pool *p = &t->hdr[k];
            if (p != h && p->nchunks > h->nchunks) continue;
            chunk *n = chunk_new((size_t)256 * sz);
            if (!n) return qg__err(QG_ENOMEM, "tape: out of memory for a tensor header"), NULL;
            chunk **end = &p->first; /* append: older chunks are filled first after a rewind */
            while (*end) end = &(*end)->next;
            *end = n;
            p->nchunks++;
            if (p == h) h->cur = n;
            else if (!p->cur) p->cur = n;
        }
    }
    qg_tensor *p = (qg_tensor *)(void *)(h->cur->mem + h->cur->used);
    h->cur->used += sz;
    return p;
}

static qg_tensor *tape_header(void) {
    qg_tape *tp = qg_tape_current();
    if (!tp) return NULL;
    qg_tensor *t = hdr_alloc(tp);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->tape = tp;
    t->tape_gen = tp->gen;
    t->tape_next = tp->tensors;
    tp->tensors = t;
    return t;
}

qg_tensor *qg__tape_tensor(qg_dtype dt, int ndim, const int64_t *shape) {
    if (qg__check_sizes("tape", ndim, shape)) return NULL;
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
    qg__tape_uses(src); /* the view reads src's storage */
    t->dtype = src->dtype;
    t->ndim = src->ndim;
    memcpy(t->shape, src->shape, sizeof t->shape);
    memcpy(t->strides, src->strides, sizeof t->strides);
    t->offset = src->offset;
    t->storage = src->storage;
    t->quant = src->quant; /* src's: the tape keeps src alive while the pass uses it */
    return t;
}

qg_tensor *qg_detach(const qg_tensor *x) {
    if (!x) return qg__err_null("detach"), NULL;
    if (qg__live("detach", x)) return NULL;
    return qg__tape_view(x);
}

/* ------------------------------------------------------------- recording */

bool qg__needs_grad(int n, const qg_tensor *const *ins) {
    if (grad_off) return false;
    for (int i = 0; i < n; i++)
        if (ins[i] && ins[i]->requires_grad) return true;
    return false;
}

qg__prof *qg__prof_on;
_Thread_local const char *qg__prof_path;

double qg__now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

qg_node *qg__record(const char *name, qg_backward_fn bw, qg_tensor *out, int nin,
                    const qg_tensor *const *ins) {
    qg_tape *tp = qg_tape_current();
    qg_node *n = qg__tape_alloc(sizeof *n);
    qg_tensor **in = qg__tape_alloc(sizeof *in * (size_t)(nin ? nin : 1));
    if (!n || !in) return NULL;
    memset(n, 0, sizeof *n);
    for (int i = 0; i < nin; i++) in[i] = (qg_tensor *)ins[i], qg__tape_uses(ins[i]);
    n->name = name;
    n->backward = bw;
    n->out = out;
    n->nin = nin;
    n->in = in;
    n->prev = tp->last;
    n->prof_path = qg__prof_on ? qg__prof_path : NULL;
    tp->last = n;
    tp->nodes++;
    out->node = n;
    out->requires_grad = true;
    check_limits(tp);
    return n;
}

/* ------------------------------------------------------------- backward */

qg_tensor *qg__grad_of(qg_tensor *t) {
    if (t->tape) {
        qg_tape *tp = t->tape;
        if (t->grad && t->grad_pass == tp->pass) return t->grad;
        if (t->grad) qg_tensor_zero_grad(t);
        else t->grad = qg__tape_zeros(t->dtype, t->ndim, t->shape);
        if (!t->grad) return NULL;
        t->grad_pass = tp->pass;
        return t->grad;
    }
    if (!t->grad) t->grad = qg_tensor_zeros(t->dtype, t->ndim, t->shape);
    return t->grad;
}

qg_tensor *qg__grad_for_write(qg_tensor *t, bool *fresh) {
    *fresh = false;
    if (!t->tape) return qg__grad_of(t); /* a leaf accumulates across backward calls */
    qg_tape *tp = t->tape;
    if (t->grad && t->grad_pass == tp->pass) return t->grad;
    if (!t->grad) t->grad = qg__tape_tensor(t->dtype, t->ndim, t->shape);
    if (!t->grad) return NULL;
    t->grad_pass = tp->pass;
    *fresh = true;
    return t->grad;
}

/* Before anything accumulates: every node this backward would run must still hold its
 * graph (not consumed by an earlier backward without retain_graph). */
static qg_status check_graph(qg_tape *tp, qg_tensor *out, uint64_t mark) {
    out->reach = mark;
    for (qg_node *n = tp->last; n; n = n->prev) {
        if (n->out->reach != mark || n->out->tape_gen != tp->gen) continue;
        if (n->consumed)
            return qg__err(QG_ESTATE, "backward: trying to backward through the graph a second time (through %s); "
                                      "use qg_backward_retain for the first backward to keep it", n->name);
        for (int i = 0; i < n->nin; i++)
            if (n->in[i]) n->in[i]->reach = mark;
    }
    return QG_OK;
}

static qg_status backward(qg_tensor *out, const qg_tensor *grad_out, bool retain) {
    char a[128], b[128];
    if (!out) return qg__err(QG_EINVAL, "backward: output is NULL");
    if (qg__live("backward", out)) return QG_ESTATE;
    qg_tape *tp = qg_tape_current();
    if (out->tape && out->tape != tp)
        return qg__err(QG_ESTATE, "backward: the tensor belongs to another tape than the current one");
    if (grad_out && qg__live("backward (grad_out)", grad_out)) return QG_ESTATE;
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
    tp->pass++;
    qg_status st = check_graph(tp, out, tp->pass);
    if (st) return st;
    bool prev = qg_set_grad_enabled(false);
    qg_tensor *g = qg__grad_of(out);
    if (!g) {
        qg_set_grad_enabled(prev);
        return qg__err(QG_ENOMEM, "backward: out of memory for the output's gradient");
    }
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
    const qg__bwd_hook *hook = qg__bwd_hook_on;
    if (hook) hook->begin(hook->ctx, tp->last);
    for (qg_node *n = tp->last; n; n = n->prev) {
        qg_tensor *o = n->out;
        if (o->grad && o->grad_pass == tp->pass && o->tape_gen == tp->gen) {
            qg__prof *pf = qg__prof_on;
            const double t0 = pf ? qg__now() : 0;
            st = n->backward(n);
            if (pf) pf->on_backward(pf->ctx, n->prof_path, n->name, qg__now() - t0);
            if (st) {
                /* the graph stays usable: the gradients are partial, zero them to retry */
                char why[256];
                snprintf(why, sizeof why, "%s", qg_last_error());
                qg_set_grad_enabled(prev);
                return qg__err(st, "backward: through %s: %s (gradients are incomplete)", n->name, why);
            }
            n->consumed = !retain;
            if (hook) hook->after(hook->ctx, n);
        }
    }
    qg_set_grad_enabled(prev);
    return QG_OK;
}

qg_status qg_backward(qg_tensor *out, const qg_tensor *grad_out) { return backward(out, grad_out, false); }
qg_status qg_backward_retain(qg_tensor *out, const qg_tensor *grad_out) { return backward(out, grad_out, true); }
