/* The module tree: registration of parameters, buffers and children, recursive
 * train/eval, flat parameter lists, and state dicts with PyTorch's names. */
#include "internal.h"
#include "qgrad/nn.h"

/* ------------------------------------------------------------- construction */

qg_module *qg_module_new(const qg_module_type *type) {
    if (!type || !type->name || type->size < sizeof(qg_module))
        return qg__err(QG_EINVAL, "module_new: type needs a name and size >= sizeof(qg_module)"), NULL;
    qg_module *m = qg__calloc(type->size);
    if (!m) return qg__err(QG_ENOMEM, "module_new: out of memory"), NULL;
    m->type = type;
    m->training = true;
    return m;
}

static void free_named(qg_named *v, int n, bool modules) {
    for (int i = 0; i < n; i++) {
        if (modules) qg_module_free(v[i].ptr);
        else qg_tensor_free(v[i].ptr);
        qg__free(v[i].name);
    }
    qg__free(v);
}

void qg_module_free(qg_module *m) {
    if (!m) return;
    if (m->type->free) m->type->free(m);
    free_named(m->params, m->nparams, false);
    free_named(m->buffers, m->nbuffers, false);
    free_named(m->children, m->nchildren, true);
    qg__free(m->path);
    qg__free(m);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = qg__alloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int find(const qg_named *v, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].name, name)) return i;
    return -1;
}

/* appends (name, ptr) to a growing array; arrays grow by doubling from 4 */
static qg_status push(qg_named **v, int *n, const char *name, void *ptr) {
    if ((*n & (*n - 1)) == 0 && (*n == 0 || *n >= 4)) {
        int cap = *n < 4 ? 4 : *n * 2;
        qg_named *nv = qg__alloc(sizeof *nv * (size_t)cap);
        if (!nv) return QG_ENOMEM;
        if (*n) memcpy(nv, *v, sizeof *nv * (size_t)*n);
        qg__free(*v);
        *v = nv;
    }
    char *d = dup_str(name);
    if (!d) return QG_ENOMEM;
    (*v)[*n].name = d;
    (*v)[*n].ptr = ptr;
    (*v)[*n].flags = 0;
    (*n)++;
    return QG_OK;
}

static qg_status check_name(const char *op, const qg_module *m, const char *name) {
    if (!m || !name) return qg__err(QG_EINVAL, "%s: module or name is NULL", op);
    if (!*name || strchr(name, '.'))
        return qg__err(QG_EINVAL, "%s: name '%s' must be non-empty and contain no '.'", op, name);
    if (find(m->params, m->nparams, name) >= 0 || find(m->buffers, m->nbuffers, name) >= 0 ||
        find(m->children, m->nchildren, name) >= 0)
        return qg__err(QG_EINVAL, "%s: %s already has an entry named '%s'", op, m->type->name, name);
    return QG_OK;
}

static qg_status check_owned_tensor(const char *op, const qg_tensor *t) {
    if (t && t->tape)
        return qg__err(QG_EINVAL, "%s: tensor is an op result owned by the tape; pass a caller-owned tensor (qg_tensor_clone)", op);
    return QG_OK;
}

qg_status qg_module_add_param(qg_module *m, const char *name, qg_tensor *t) {
    qg_status st = check_name("module_add_param", m, name);
    if (!st) st = check_owned_tensor("module_add_param", t);
    if (!st && t && !qg__is_float(t->dtype))
        st = qg__err(QG_EDTYPE, "module_add_param: parameter '%s' must be f32 or f64", name);
    if (!st && t) t->requires_grad = true;
    if (!st && (st = push(&m->params, &m->nparams, name, t))) qg__err(st, "module_add_param: out of memory");
    if (st) qg_tensor_free(t);
    return st;
}

static qg_status add_made(qg_module *m, const char *name, qg_tensor *t, bool param) {
    if (!t) /* the constructor's failure (out of memory, too large), not a None slot */
        return qg_last_status() ? qg_last_status()
                                : qg__err(QG_ENOMEM, "%s: cannot make its %s", m ? m->type->name : "module", name);
    return param ? qg_module_add_param(m, name, t) : qg_module_add_buffer(m, name, t);
}
qg_status qg__module_add_param_made(qg_module *m, const char *name, qg_tensor *t) { return add_made(m, name, t, true); }
qg_status qg__module_add_buffer_made(qg_module *m, const char *name, qg_tensor *t) { return add_made(m, name, t, false); }

qg_status qg_module_add_buffer(qg_module *m, const char *name, qg_tensor *t) {
    qg_status st = check_name("module_add_buffer", m, name);
    if (!st) st = check_owned_tensor("module_add_buffer", t);
    if (!st && (st = push(&m->buffers, &m->nbuffers, name, t))) qg__err(st, "module_add_buffer: out of memory");
    if (st) qg_tensor_free(t);
    return st;
}

/* c is m or in m's tree */
static bool in_tree(const qg_module *m, const qg_module *c) {
    if (m == c) return true;
    for (int i = 0; i < m->nchildren; i++)
        if (m->children[i].ptr && in_tree(m->children[i].ptr, c)) return true;
    return false;
}

/* A child that is m, already in m's tree, or has m in its own tree (a cycle) is
 * refused and not freed: freeing it would free a module the tree still holds. */
static qg_status check_new_child(const char *op, const qg_module *m, const qg_module *child) {
    if (child == m) return qg__err(QG_EINVAL, "%s: a module cannot be its own child", op);
    if (in_tree(m, child))
        return qg__err(QG_EINVAL, "%s: the %s is already in this %s's tree", op, child->type->name, m->type->name);
    if (in_tree(child, m))
        return qg__err(QG_EINVAL, "%s: the %s contains this %s (a cycle)", op, child->type->name, m->type->name);
    return QG_OK;
}

qg_status qg_module_add_child(qg_module *m, const char *name, qg_module *child) {
    qg_status st = m && child ? check_new_child("module_add_child", m, child) : QG_OK;
    if (st) return st;
    st = check_name("module_add_child", m, name);
    if (!st && !child) st = qg__err_null("module_add_child");
    if (!st && (st = push(&m->children, &m->nchildren, name, child))) qg__err(st, "module_add_child: out of memory");
    if (st) qg_module_free(child);
    return st;
}

qg_module *qg_module_remove_child(qg_module *m, const char *name) {
    int i = m && name ? find(m->children, m->nchildren, name) : -1;
    if (i < 0) return qg__err(QG_EINVAL, "module_remove_child: no child named '%s'", name ? name : "(null)"), NULL;
    qg_module *c = m->children[i].ptr;
    qg__free(m->children[i].name);
    memmove(m->children + i, m->children + i + 1, sizeof *m->children * (size_t)(m->nchildren - i - 1));
    m->nchildren--;
    if (m->output_hook == c) m->output_hook = NULL;
    return c;
}

qg_status qg_module_set_output_hook(qg_module *m, const char *name, qg_module *hook) {
    qg_status st = qg_module_add_child(m, name, hook);
    if (!st) m->output_hook = hook;
    return st;
}

qg_status qg_module_buffer_set_flags(qg_module *m, const char *name, unsigned flags) {
    int i = m && name ? find(m->buffers, m->nbuffers, name) : -1;
    if (i < 0) return qg__err(QG_EINVAL, "module_buffer_set_flags: no buffer named '%s'", name ? name : "(null)");
    if (flags & ~(QG_BUFFER_RESIZABLE | QG_BUFFER_FIXED_DTYPE))
        return qg__err(QG_EINVAL, "module_buffer_set_flags: unknown flags 0x%x for buffer '%s'", flags, name);
    m->buffers[i].flags = flags;
    return QG_OK;
}

/* ------------------------------------------------------------- lookups */

qg_tensor *qg_module_param(const qg_module *m, const char *name) {
    int i = m && name ? find(m->params, m->nparams, name) : -1;
    return i >= 0 ? m->params[i].ptr : NULL;
}

qg_tensor *qg_module_buffer(const qg_module *m, const char *name) {
    int i = m && name ? find(m->buffers, m->nbuffers, name) : -1;
    return i >= 0 ? m->buffers[i].ptr : NULL;
}

qg_module *qg_module_child(const qg_module *m, const char *name) {
    int i = m && name ? find(m->children, m->nchildren, name) : -1;
    return i >= 0 ? m->children[i].ptr : NULL;
}

bool qg_module_is(const qg_module *m, const char *type_name) {
    return m && type_name && !strcmp(m->type->name, type_name);
}

/* ------------------------------------------------------------- paths (labels for messages) */

void qg_module_set_path(qg_module *m, const char *path) {
    if (!m) return;
    qg__free(m->path);
    m->path = NULL;
    if (!path) return;
    size_t n = strlen(path) + 1;
    m->path = qg__alloc(n);
    if (m->path) memcpy(m->path, path, n);
}

const char *qg__module_label(const qg_module *m) { return m->path && *m->path ? m->path : m->type->name; }

/* ------------------------------------------------------------- the tree, for qat/ */

int qg__module_nchildren(const qg_module *m) { return m ? m->nchildren : 0; }

qg_module *qg__module_child_at(const qg_module *m, int i, const char **name) {
    if (!m || i < 0 || i >= m->nchildren) return NULL;
    if (name) *name = m->children[i].name;
    return m->children[i].ptr;
}

void qg__module_set_child_at(qg_module *m, int i, qg_module *child) {
    if (!m || i < 0 || i >= m->nchildren) return;
    if (m->output_hook == m->children[i].ptr) m->output_hook = child;
    m->children[i].ptr = child;
}

int qg__module_param_index(const qg_module *m, const char *name) { return m && name ? find(m->params, m->nparams, name) : -1; }
int qg__module_buffer_index(const qg_module *m, const char *name) { return m && name ? find(m->buffers, m->nbuffers, name) : -1; }
int qg__module_child_index(const qg_module *m, const char *name) { return m && name ? find(m->children, m->nchildren, name) : -1; }
qg_tensor *qg__module_param_at(const qg_module *m, int i) { return m && i >= 0 && i < m->nparams ? m->params[i].ptr : NULL; }
qg_tensor *qg__module_buffer_at(const qg_module *m, int i) { return m && i >= 0 && i < m->nbuffers ? m->buffers[i].ptr : NULL; }

qg_tensor *qg__module_take_param(qg_module *m, const char *name) {
    int i = m && name ? find(m->params, m->nparams, name) : -1;
    if (i < 0) return NULL;
    qg_tensor *t = m->params[i].ptr;
    m->params[i].ptr = NULL;
    return t;
}

/* Walks a dotted path; *slot gets the parent's child slot of the last component. */
static qg_module *walk(qg_module *m, const char *path, qg_named **slot) {
    if (slot) *slot = NULL;
    if (!m || !path) return qg__err(QG_EINVAL, "module_get: module or path is NULL"), NULL;
    char part[256];
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0 || len >= sizeof part) return qg__err(QG_EINVAL, "module_get: bad path '%s'", path), NULL;
        memcpy(part, p, len);
        part[len] = 0;
        int i = find(m->children, m->nchildren, part);
        if (i < 0) return qg__err(QG_EINVAL, "module_get: %s has no child '%s' (path '%s')", m->type->name, part, path), NULL;
        if (slot) *slot = &m->children[i];
        m = m->children[i].ptr;
        p += len + (dot ? 1 : 0);
        if (dot && !*p) return qg__err(QG_EINVAL, "module_get: bad path '%s'", path), NULL;
    }
    return m;
}

qg_module *qg_module_get(qg_module *m, const char *path) { return walk(m, path, NULL); }

qg_module *qg_module_replace(qg_module *m, const char *path, qg_module *new_child) {
    qg_named *slot;
    qg_module *old = walk(m, path, &slot);
    if (!old) return NULL;
    if (!slot) return qg__err(QG_EINVAL, "module_replace: path is empty"), NULL;
    if (!new_child) return qg__err_null("module_replace"), NULL;
    if (check_new_child("module_replace", m, new_child)) return NULL;
    slot->ptr = new_child;
    /* the parent's output hook, if it was this child, follows the replacement */
    const char *dot = strrchr(path, '.');
    qg_module *parent = m;
    if (dot) {
        char ppath[512];
        snprintf(ppath, sizeof ppath, "%.*s", (int)(dot - path), path);
        parent = walk(m, ppath, NULL);
    }
    if (parent && parent->output_hook == old) parent->output_hook = new_child;
    return old;
}

/* check_load's view of m with t under name (the other entries m's own; dotted names
 * are children's) */
typedef struct {
    qg_module *m;
    const char *name;
    const qg_tensor *t;
} set_check;

static const qg_tensor *set_lookup(const char *name, void *ctx) {
    set_check *c = ctx;
    if (!strcmp(name, c->name)) return c->t;
    qg_module *m = c->m;
    const char *dot = strrchr(name, '.');
    if (dot) {
        char path[512];
        snprintf(path, sizeof path, "%.*s", (int)(dot - name), name);
        if (!(m = walk(m, path, NULL))) return NULL;
        name = dot + 1;
    }
    const qg_tensor *t = qg_module_param(m, name);
    return t ? t : qg_module_buffer(m, name);
}

/* Replaces a parameter or buffer, with the checks a state-dict load makes: a
 * parameter is floating; a QG_BUFFER_FIXED_DTYPE buffer (the quantization parameters
 * the kernels read as float32) keeps its dtype, and its shape unless also
 * QG_BUFFER_RESIZABLE; the module type's check_load accepts the result. */
static qg_status set_tensor(const char *op, qg_module *m, const char *name, qg_tensor *t, bool param) {
    qg_named *v = param ? m->params : m->buffers;
    int i = name ? find(v, param ? m->nparams : m->nbuffers, name) : -1;
    qg_status st = i < 0 ? qg__err(QG_EINVAL, "%s: no entry named '%s'", op, name ? name : "(null)")
                         : check_owned_tensor(op, t);
    if (!st && param && t && !qg__is_float(t->dtype))
        st = qg__err(QG_EDTYPE, "%s: parameter '%s' must be f32 or f64, got %s", op, name, qg_dtype_name(t->dtype));
    const qg_tensor *old = i >= 0 ? v[i].ptr : NULL;
    if (!st && !param && (v[i].flags & QG_BUFFER_FIXED_DTYPE) && old) {
        char want[64], got[64];
        bool shape_ok = t && ((v[i].flags & QG_BUFFER_RESIZABLE) ||
                              (t->ndim == old->ndim && !memcmp(t->shape, old->shape, sizeof(int64_t) * (size_t)t->ndim)));
        if (!t || t->dtype != old->dtype || !shape_ok)
            st = qg__err(QG_EINVAL, "%s: %s buffer '%s' is %s, got %s", op, m->type->name, name,
                         qg_shape_str(old, want, sizeof want), qg_shape_str(t, got, sizeof got));
    }
    if (!st && m->type->check_load) {
        set_check c = {m, name, t};
        if ((st = m->type->check_load(m, set_lookup, &c)))
            qg__err(st, "%s: %s '%s': %s", op, m->type->name, name, qg_last_error());
    }
    if (st) {
        qg_tensor_free(t);
        return st;
    }
    if (v[i].ptr != t) qg_tensor_free(v[i].ptr);
    if (t && param) t->requires_grad = true;
    v[i].ptr = t;
    return QG_OK;
}

qg_status qg_module_set_param(qg_module *m, const char *name, qg_tensor *t) {
    if (!m) return qg_tensor_free(t), qg__err_null("module_set_param"); /* taken, as on every failure */
    return set_tensor("module_set_param", m, name, t, true);
}

qg_status qg_module_set_buffer(qg_module *m, const char *name, qg_tensor *t) {
    if (!m) return qg_tensor_free(t), qg__err_null("module_set_buffer"); /* taken, as on every failure */
    return set_tensor("module_set_buffer", m, name, t, false);
}

/* ------------------------------------------------------------- behaviour */

/* The modules whose forward is running, outermost first, so that an error raised
 * inside gets the path of the innermost one: "c1 (intrinsic.qat.ConvBnReLU2d): ...". */
#define FWD_DEPTH 64
static _Thread_local const qg_module *fwd_stack[FWD_DEPTH];
static _Thread_local int fwd_depth;
static _Thread_local uint64_t labeled_serial; /* the error already labeled */

static void label_error(int d) {
    char path[512] = "";
    size_t len = 0;
    for (int i = 1; i <= d && i < FWD_DEPTH; i++) {
        const qg_module *p = fwd_stack[i - 1], *c = fwd_stack[i];
        const char *name = "?";
        for (int k = 0; k < p->nchildren; k++)
            if (p->children[k].ptr == c) name = p->children[k].name;
        len += (size_t)snprintf(path + len, len < sizeof path ? sizeof path - len : 0, "%s%s", len ? "." : "", name);
        if (len >= sizeof path) len = sizeof path - 1;
    }
    const qg_module *m = fwd_stack[d < FWD_DEPTH ? d : FWD_DEPTH - 1];
    const char *msg = qg_last_error();
    if (len && !strncmp(msg, path, len)) return; /* it names its path already (observers do) */
    if (len) qg__err(qg_last_status(), "%s (%s): %s", path, m->type->name, msg);
    else qg__err(qg_last_status(), "%s: %s", m->type->name, msg);
}

/* m's forward, or with next: m's fused forward of the pair. */
static qg_tensor *forward_run(qg_module *m, qg_module *next, qg_tensor *x) {
    if (!m) return qg__err_null("module_forward"), NULL;
    if (!x) return qg__err_null(m->type->name), NULL;
    if (!m->type->forward) return qg__err(QG_EINVAL, "%s: module has no forward", m->type->name), NULL;
    int d = fwd_depth++;
    if (d < FWD_DEPTH) fwd_stack[d] = m;
    uint64_t serial = qg__err_serial();
    qg__prof *pf = qg__prof_on;
    const bool timed = pf && d == pf->depth;
    const char *outer = qg__prof_path;
    const double t0 = timed ? qg__now() : 0;
    if (timed) qg__prof_path = m->path;
    qg_tensor *y = next ? m->type->forward_fused(m, next, x) : m->type->forward(m, x);
    if (y && m->output_hook) y = qg_module_forward(m->output_hook, y); /* none when fused */
    if (timed) pf->on_forward(pf->ctx, m->path, qg__now() - t0), qg__prof_path = outer;
    if (!y && qg__err_serial() != serial && qg__err_serial() != labeled_serial) {
        label_error(d);
        labeled_serial = qg__err_serial();
    }
    fwd_depth--;
    return y;
}

qg_tensor *qg_module_forward(qg_module *m, qg_tensor *x) { return forward_run(m, NULL, x); }

bool qg__module_fuses(const qg_module *m, const qg_module *next) {
    return m && next && m->type->fuses && m->type->forward_fused && !m->output_hook && !next->output_hook &&
           m->type->fuses(m, next);
}

qg_tensor *qg__module_forward_fused(qg_module *m, qg_module *next, qg_tensor *x) { return forward_run(m, next, x); }

void qg_module_train(qg_module *m, bool mode) {
    if (!m) return;
    if (m->type->train) {
        m->type->train(m, mode);
        return;
    }
    m->training = mode;
    for (int i = 0; i < m->nchildren; i++) qg_module_train(m->children[i].ptr, mode);
}

void qg_module_eval(qg_module *m) { qg_module_train(m, false); }

qg_status qg_module_to(qg_module *m, qg_dtype dt) {
    if (!m) return qg__err_null("module_to");
    if (!qg__is_float(dt)) return qg__err(QG_EDTYPE, "module_to: target dtype must be f32 or f64");
    qg_named *lists[2] = {m->params, m->buffers};
    int counts[2] = {m->nparams, m->nbuffers};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < counts[k]; i++) {
            qg_tensor *t = lists[k][i].ptr;
            if (!t || !qg__is_float(t->dtype) || t->dtype == dt) continue;
            if (k == 1 && (m->buffers[i].flags & QG_BUFFER_FIXED_DTYPE)) continue;
            qg_tensor *c = qg_tensor_empty(dt, t->ndim, t->shape);
            if (!c) return qg_last_status();
            qg_tensor_copy_(c, t);
            c->requires_grad = t->requires_grad;
            qg_tensor_free(t);
            lists[k][i].ptr = c;
        }
    for (int i = 0; i < m->nchildren; i++) {
        qg_status st = qg_module_to(m->children[i].ptr, dt);
        if (st) return st;
    }
    return QG_OK;
}

void qg_module_zero_grad(qg_module *m) {
    if (!m) return;
    for (int i = 0; i < m->nparams; i++) qg_tensor_zero_grad(m->params[i].ptr);
    for (int i = 0; i < m->nchildren; i++) qg_module_zero_grad(m->children[i].ptr);
}

static void apply_rec(qg_module *m, char *path, size_t len, size_t cap, qg_module_visit_fn fn, void *ctx) {
    fn(m, path, ctx);
    for (int i = 0; i < m->nchildren; i++) {
        size_t n = (size_t)snprintf(path + len, cap - len, len ? ".%s" : "%s", m->children[i].name);
        apply_rec(m->children[i].ptr, path, len + n < cap ? len + n : cap - 1, cap, fn, ctx);
        path[len] = 0;
    }
}

void qg_module_apply(qg_module *m, qg_module_visit_fn fn, void *ctx) {
    if (!m || !fn) return;
    char path[1024] = "";
    apply_rec(m, path, 0, sizeof path, fn, ctx);
}

/* ------------------------------------------------------------- flat lists */

typedef struct {
    qg_tensor_list *l;
    int cap;
    bool params, buffers;
    qg_status st;
} collect_ctx;

static void list_push(collect_ctx *c, const char *path, const char *name, qg_tensor *t) {
    qg_tensor_list *l = c->l;
    if (c->st) return;
    if (l->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        char **nn = qg__alloc(sizeof *nn * (size_t)cap);
        qg_tensor **nt = qg__alloc(sizeof *nt * (size_t)cap);
        if (!nn || !nt) {
            qg__free(nn), qg__free(nt);
            c->st = qg__err(QG_ENOMEM, "module: out of memory listing tensors");
            return;
        }
        if (l->n) memcpy(nn, l->names, sizeof *nn * (size_t)l->n), memcpy(nt, l->tensors, sizeof *nt * (size_t)l->n);
        qg__free(l->names), qg__free(l->tensors);
        l->names = nn, l->tensors = nt, c->cap = cap;
    }
    size_t n = strlen(path) + strlen(name) + 2;
    char *full = qg__alloc(n);
    if (!full) {
        c->st = qg__err(QG_ENOMEM, "module: out of memory listing tensors");
        return;
    }
    snprintf(full, n, *path ? "%s.%s" : "%s%s", path, name);
    l->names[l->n] = full;
    l->tensors[l->n++] = t;
}

/* per module: parameters, then buffers (PyTorch's state_dict order) */
static void collect(qg_module *m, const char *path, void *vctx) {
    collect_ctx *c = vctx;
    if (c->params)
        for (int i = 0; i < m->nparams; i++)
            if (m->params[i].ptr) list_push(c, path, m->params[i].name, m->params[i].ptr);
    if (c->buffers)
        for (int i = 0; i < m->nbuffers; i++)
            if (m->buffers[i].ptr) list_push(c, path, m->buffers[i].name, m->buffers[i].ptr);
}

static qg_tensor_list *make_list(const qg_module *m, bool params, bool buffers) {
    if (!m) return qg__err_null("module_parameters"), NULL;
    qg_tensor_list *l = qg__calloc(sizeof *l);
    if (!l) return qg__err(QG_ENOMEM, "module: out of memory"), NULL;
    collect_ctx c = {l, 0, params, buffers, QG_OK};
    qg_module_apply((qg_module *)m, collect, &c);
    if (c.st) {
        qg_tensor_list_free(l);
        return NULL;
    }
    return l;
}

qg_tensor_list *qg_module_parameters(const qg_module *m) { return make_list(m, true, false); }
qg_tensor_list *qg_module_buffers(const qg_module *m) { return make_list(m, false, true); }

void qg_tensor_list_free(qg_tensor_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) qg__free(l->names[i]);
    qg__free(l->names), qg__free(l->tensors), qg__free(l);
}

/* ------------------------------------------------------------- state dicts */

qg_tensor_dict *qg_module_state_dict(const qg_module *m) {
    qg_tensor_list *l = make_list(m, true, true);
    if (!l) return NULL;
    qg_tensor_dict *d = qg_tensor_dict_new();
    for (int i = 0; d && i < l->n; i++) {
        qg_tensor *c = qg_tensor_clone(l->tensors[i]);
        if (!c || qg_tensor_dict_put(d, l->names[i], c)) {
            qg_tensor_dict_free(d);
            d = NULL;
        }
    }
    qg_tensor_list_free(l);
    return d;
}

/* Is the buffer at this dotted name marked QG_BUFFER_RESIZABLE? */
static bool resizable(qg_module *m, const char *dotted) {
    const char *dot = strrchr(dotted, '.');
    if (dot) {
        char path[512];
        snprintf(path, sizeof path, "%.*s", (int)(dot - dotted), dotted);
        m = walk(m, path, NULL);
        if (!m) return qg_clear_error(), false;
    }
    int i = find(m->buffers, m->nbuffers, dot ? dot + 1 : dotted);
    return i >= 0 && (m->buffers[i].flags & QG_BUFFER_RESIZABLE);
}

/* A list of offending keys for the strict-load message: the count and the first few
 * in full. */
#define KEYS_SHOWN 3
typedef struct {
    int n;
    char first[KEYS_SHOWN][200];
    bool quant; /* a fake-quant/observer key among them */
} key_list;

static void keys_add(key_list *k, const char *name, const char *detail) {
    if (k->n < KEYS_SHOWN) {
        size_t a = strlen(name) < sizeof k->first[0] - 1 ? strlen(name) : sizeof k->first[0] - 1;
        memcpy(k->first[k->n], name, a);
        size_t b = strlen(detail) < sizeof k->first[0] - 1 - a ? strlen(detail) : sizeof k->first[0] - 1 - a;
        memcpy(k->first[k->n] + a, detail, b);
        k->first[k->n][a + b] = 0;
    }
    k->n++;
    k->quant |= strstr(name, "fake_quant") || strstr(name, "activation_post_process");
}

static size_t keys_str(char *buf, size_t cap, const char *what, const key_list *k) {
    size_t len = (size_t)snprintf(buf, cap, "%d %s", k->n, what);
    for (int i = 0; i < k->n && i < KEYS_SHOWN && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : " (", k->first[i]);
    if (k->n > KEYS_SHOWN && len < cap) len += (size_t)snprintf(buf + len, cap - len, ", and %d more", k->n - KEYS_SHOWN);
    if (k->n && len < cap) len += (size_t)snprintf(buf + len, cap - len, ")");
    return len < cap ? len : cap - 1;
}

/* The per-type check_load of every module of the tree, before anything changes. */
typedef struct {
    const qg_tensor_dict *file;
    qg_tensor_dict *own;
    const char *prefix; /* the module being checked, with a trailing dot */
    qg_status st;
} load_check;

static const qg_tensor *lookup(const char *name, void *ctx) {
    load_check *c = ctx;
    char key[600];
    snprintf(key, sizeof key, "%s%s", c->prefix, name);
    for (const qg_tensor_dict *d = c->file;; d = c->own) {
        for (int k = 0; k < qg_tensor_dict_size(d); k++)
            if (!strcmp(qg_tensor_dict_name(d, k), key)) return qg_tensor_dict_at(d, k);
        if (d == c->own) return NULL;
    }
}

static void check_one(qg_module *m, const char *path, void *ctx) {
    load_check *c = ctx;
    if (c->st || !m->type->check_load) return;
    char prefix[520];
    snprintf(prefix, sizeof prefix, "%s%s", path, *path ? "." : "");
    c->prefix = prefix;
    if ((c->st = m->type->check_load(m, lookup, c)))
        qg__err(c->st, "load_state_dict: %s (%s): %s", *path ? path : "the model", m->type->name, qg_last_error());
}

qg_status qg_module_load_state_dict(qg_module *m, const qg_tensor_dict *d, bool strict) {
    if (!m || !d) return qg__err_null("module_load_state_dict");
    qg_tensor_list *l = make_list(m, true, true);
    if (!l) return qg_last_status();
    /* check everything first: the module is changed only when all of it fits */
    key_list missing = {0}, unexpected = {0}, mismatch = {0};
    for (int i = 0; i < l->n; i++) {
        qg_tensor *src = NULL;
        for (int k = 0; k < qg_tensor_dict_size(d); k++)
            if (!strcmp(qg_tensor_dict_name(d, k), l->names[i])) src = qg_tensor_dict_at(d, k);
        qg_tensor *dst = l->tensors[i];
        if (!src) {
            if (strict) keys_add(&missing, l->names[i], "");
        } else if (src->dtype != dst->dtype ||
                   (!resizable(m, l->names[i]) && (src->ndim != dst->ndim ||
                    memcmp(src->shape, dst->shape, sizeof(int64_t) * (size_t)dst->ndim)))) {
            char a[96], b[96], what[220];
            snprintf(what, sizeof what, " (file %s, module %s)", qg_shape_str(src, a, sizeof a), qg_shape_str(dst, b, sizeof b));
            keys_add(&mismatch, l->names[i], what);
        }
    }
    if (strict) {
        for (int k = 0; k < qg_tensor_dict_size(d); k++) {
            const char *name = qg_tensor_dict_name(d, k);
            bool known = false;
            for (int i = 0; i < l->n && !known; i++) known = !strcmp(l->names[i], name);
            if (!known) keys_add(&unexpected, name, "");
        }
    }
    if (!missing.n && !unexpected.n && !mismatch.n) {
        load_check c = {d, qg_module_state_dict(m), "", QG_OK};
        if (!c.own) {
            qg_tensor_list_free(l);
            return qg_last_status();
        }
        qg_module_apply(m, check_one, &c);
        qg_tensor_dict_free(c.own);
        if (c.st) {
            qg_tensor_list_free(l);
            return c.st;
        }
    }
    if (missing.n || unexpected.n || mismatch.n) {
        qg_tensor_list_free(l);
        char msg[900];
        size_t len = keys_str(msg, sizeof msg, "missing keys", &missing);
        len += (size_t)snprintf(msg + len, sizeof msg - len, "; ");
        len += keys_str(msg + len, sizeof msg - len, "unexpected keys", &unexpected);
        len += (size_t)snprintf(msg + len, sizeof msg - len, "; ");
        len += keys_str(msg + len, sizeof msg - len, "mismatched", &mismatch);
        const char *hint = "";
        if (missing.quant && !unexpected.quant)
            hint = ". The file looks like a float model's state dict loaded into a prepared QAT model: load it "
                   "before qg_prepare_qat";
        else if (unexpected.quant && !missing.quant)
            hint = ". The file looks like a prepared QAT model's state dict: load it into a model after "
                   "qg_fuse_modules_qat and qg_prepare_qat";
        return qg__err(QG_EINVAL, "load_state_dict into %s: %s%s", m->type->name, msg, hint);
    }
    for (int i = 0; i < l->n; i++) {
        const qg_tensor *src = NULL;
        for (int k = 0; k < qg_tensor_dict_size(d) && !src; k++)
            if (!strcmp(qg_tensor_dict_name(d, k), l->names[i])) src = qg_tensor_dict_at(d, k);
        if (!src) continue;
        qg_tensor *dst = l->tensors[i];
        if ((src->ndim != dst->ndim || memcmp(src->shape, dst->shape, sizeof(int64_t) * (size_t)dst->ndim)) &&
            qg_tensor_resize_(dst, src->ndim, src->shape)) {
            qg_tensor_list_free(l); /* only a sole-owner violation or OOM gets here */
            return qg_last_status();
        }
        qg_tensor_copy_(dst, src);
    }
    qg_tensor_list_free(l);
    return QG_OK;
}

qg_status qg_module_save(const qg_module *m, const char *path) {
    qg_tensor_dict *d = qg_module_state_dict(m);
    if (!d) return qg_last_status();
    qg_status st = qg_safetensors_save(path, d);
    qg_tensor_dict_free(d);
    return st;
}

qg_status qg_module_load(qg_module *m, const char *path, bool strict) {
    if (!m) return qg__err_null("module_load");
    qg_tensor_dict *d = qg_safetensors_load(path);
    if (!d) return qg_last_status();
    qg_status st = qg_module_load_state_dict(m, d, strict);
    qg_tensor_dict_free(d);
    return st;
}
