/* Gradient checks of an op on four layouts of its inputs: contiguous, through a
 * transpose of the last two dims, through a step-2 slice of the last dim, and expanded
 * (stride 0) along the last dim of size > 1 (the base tensors are stored so that the
 * views have the case's shapes; an expanded input's gradient is the sum over its
 * copies, which moving the base element moves together). Shared by the gradcheck
 * tests; include after test_util.h. */
#ifndef QG_GC_LAYOUTS_H
#define QG_GC_LAYOUTS_H
#include <string.h>

/* an op: its output from the inputs x (aux: an extra output, NULL here) */
typedef qg_tensor *(*op_fn)(qg_tensor *const *x, qg_tensor **aux);

#define GC_MAX_IN 6
/* input domain: N(0,1), U(0.5, 2), or N(mean, std) / U(lo, hi) with gc_how.dist */
enum { D_ANY, D_POS, D_NORMAL, D_UNIFORM };
typedef struct {
    const char *name;
    op_fn fn;
    int n; /* inputs */
    int ndim[GC_MAX_IN];
    int64_t shape[GC_MAX_IN][4];
    int domain[GC_MAX_IN];
} gc_case;

/* What a case may need beyond gc_case (all optional): an op with a context (ops with
 * state, such as batch norm's running statistics), inputs that keep their layout or
 * are not differentiated, D_NORMAL / D_UNIFORM parameters, and a tolerance. */
typedef struct {
    qg_gradcheck_fn fn;  /* called with ctx instead of gc_case.fn */
    void *ctx;
    unsigned fixed;      /* bit i: input i stays contiguous in every layout */
    unsigned nograd;     /* bit i: input i does not require grad */
    double dist[GC_MAX_IN][2];
    const qg_gradcheck_opts *opts; /* NULL: qg_gradcheck's defaults */
} gc_how;

enum { L_CONTIG, L_TRANSPOSED, L_SLICED, L_EXPANDED, L_COUNT };
static const char *const layout_names[] = {"contiguous", "transposed", "sliced", "expanded"};

/* the dim an expanded layout broadcasts: the last of size > 1, or -1 */
static inline int gc_expand_dim(int nd, const int64_t *shape) {
    for (int d = nd - 1; d >= 0; d--)
        if (shape[d] > 1) return d;
    return -1;
}

/* A base tensor (uninitialized) whose view in the layout has the given shape. */
static inline qg_tensor *gc_make_base(qg_dtype dt, int layout, int nd, const int64_t *shape_in) {
    int64_t shape[4];
    memcpy(shape, shape_in, sizeof(int64_t) * (size_t)nd);
    if (layout == L_TRANSPOSED && nd >= 2) {
        int64_t t = shape[nd - 1];
        shape[nd - 1] = shape[nd - 2], shape[nd - 2] = t;
    } else if (layout == L_SLICED && nd >= 1) {
        shape[nd - 1] = 2 * shape[nd - 1] + 1;
    } else if (layout == L_EXPANDED && gc_expand_dim(nd, shape) >= 0) {
        shape[gc_expand_dim(nd, shape)] = 1;
    }
    return qg_tensor_empty(dt, nd, shape);
}

/* The view of base b (from gc_make_base) in the layout: a tensor of the given shape. */
static inline qg_tensor *gc_layout_view(qg_tensor *b, int layout, int nd, const int64_t *shape) {
    if (layout == L_TRANSPOSED && b->ndim >= 2) return qg_transpose(b, -1, -2);
    if (layout == L_SLICED && b->ndim >= 1) return qg_slice(b, -1, 1, INT64_MAX, 2);
    if (layout == L_EXPANDED) return qg_expand(b, nd, shape);
    return b;
}

typedef struct {
    const gc_case *c;
    const gc_how *how;
    int layout;
} gc_ctx;

static inline qg_tensor *gc_run_case(qg_tensor *const *base, void *vctx) {
    gc_ctx *ctx = vctx;
    qg_tensor *in[GC_MAX_IN];
    for (int i = 0; i < ctx->c->n; i++) {
        bool fixed = ctx->how && (ctx->how->fixed >> i & 1);
        in[i] = fixed ? base[i] : gc_layout_view(base[i], ctx->layout, ctx->c->ndim[i], ctx->c->shape[i]);
    }
    if (ctx->how && ctx->how->fn) return ctx->how->fn(in, ctx->how->ctx);
    return ctx->c->fn(in, NULL);
}

static int64_t gc_case_count;

/* Runs qg_gradcheck on case c in one layout, with inputs drawn from g in input order;
 * how (or NULL) as above. */
static inline void gc_check(const gc_case *c, const gc_how *how, int layout, qg_rng *g) {
    qg_tensor *base[GC_MAX_IN];
    for (int i = 0; i < c->n; i++) {
        bool fixed = how && (how->fixed >> i & 1);
        base[i] = gc_make_base(QG_F64, fixed ? L_CONTIG : layout, c->ndim[i], c->shape[i]);
        const double *p = how ? how->dist[i] : NULL;
        if (c->domain[i] == D_POS) qg_tensor_uniform_(base[i], g, 0.5, 2.0);
        else if (c->domain[i] == D_UNIFORM) qg_tensor_uniform_(base[i], g, p[0], p[1]);
        else if (c->domain[i] == D_NORMAL) qg_tensor_normal_(base[i], g, p[0], p[1]);
        else qg_tensor_normal_(base[i], g, 0, 1);
        qg_tensor_set_requires_grad(base[i], !(how && (how->nograd >> i & 1)));
    }
    gc_ctx ctx = {c, how, layout};
    qg_status st = qg_gradcheck(gc_run_case, &ctx, c->n, base, how ? how->opts : NULL);
    CHECK(st == QG_OK, "gradcheck %s (%s): %s", c->name, layout_names[layout], qg_last_error());
    gc_case_count++;
    for (int i = 0; i < c->n; i++) qg_tensor_free(base[i]);
}

static inline void gc_check_case(const gc_case *c, int layout, qg_rng *g) { gc_check(c, NULL, layout, g); }
#endif
