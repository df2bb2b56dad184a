/* Gradient checks of an op on four layouts of its inputs: contiguous, through a
 * transpose of the last two dims, through a step-2 slice of the last dim, and expanded
 * (stride 0) along the last dim of size > 1 (the base tensors are stored so that the
 * views have the case's shapes; an expanded input's gradient is the sum over its
 * copies, which moving the base element moves together). Shared by the gradcheck
 * tests; include after test_util.h. */
#ifndef QG_GC_LAYOUTS_H
#define QG_GC_LAYOUTS_H
#include <string.h>

typedef qg_tensor *(*op_fn)(qg_tensor *const *x);

enum { D_ANY, D_POS }; /* input domain: N(0,1), or U(0.5, 2) */
typedef struct {
    const char *name;
    op_fn fn;
    int n; /* inputs */
    int ndim[4];
    int64_t shape[4][4];
    int domain[4];
} gc_case;

enum { L_CONTIG, L_TRANSPOSED, L_SLICED, L_EXPANDED, L_COUNT };
static const char *const layout_names[] = {"contiguous", "transposed", "sliced", "expanded"};

/* the dim an expanded layout broadcasts: the last of size > 1, or -1 */
static int gc_expand_dim(int nd, const int64_t *shape) {
    for (int d = nd - 1; d >= 0; d--)
        if (shape[d] > 1) return d;
    return -1;
}

typedef struct {
    const gc_case *c;
    int layout;
} gc_ctx;

static qg_tensor *gc_run_case(qg_tensor *const *base, void *vctx) {
    gc_ctx *ctx = vctx;
    qg_tensor *in[4];
    for (int i = 0; i < ctx->c->n; i++) {
        qg_tensor *b = base[i];
        if (ctx->layout == L_TRANSPOSED && b->ndim >= 2) b = qg_transpose(b, -1, -2);
        else if (ctx->layout == L_SLICED && b->ndim >= 1) b = qg_slice(b, -1, 1, INT64_MAX, 2);
        else if (ctx->layout == L_EXPANDED) b = qg_expand(b, ctx->c->ndim[i], ctx->c->shape[i]);
        in[i] = b;
    }
    return ctx->c->fn(in);
}

static int64_t gc_case_count;

/* Runs qg_gradcheck on case c in one layout, with inputs drawn from g. */
static void gc_check_case(const gc_case *c, int layout, qg_rng *g) {
    qg_tensor *base[4];
    for (int i = 0; i < c->n; i++) {
        int nd = c->ndim[i];
        int64_t shape[4];
        memcpy(shape, c->shape[i], sizeof shape);
        if (layout == L_TRANSPOSED && nd >= 2) {
            int64_t t = shape[nd - 1];
            shape[nd - 1] = shape[nd - 2], shape[nd - 2] = t;
        } else if (layout == L_SLICED && nd >= 1) {
            shape[nd - 1] = 2 * shape[nd - 1] + 1;
        } else if (layout == L_EXPANDED && gc_expand_dim(nd, shape) >= 0) {
            shape[gc_expand_dim(nd, shape)] = 1;
        }
        base[i] = qg_tensor_empty(QG_F64, nd, shape);
        if (c->domain[i] == D_POS) qg_tensor_uniform_(base[i], g, 0.5, 2.0);
        else qg_tensor_normal_(base[i], g, 0, 1);
        qg_tensor_set_requires_grad(base[i], true);
    }
    gc_ctx ctx = {c, layout};
    qg_status st = qg_gradcheck(gc_run_case, &ctx, c->n, base, NULL);
    CHECK(st == QG_OK, "gradcheck %s (%s): %s", c->name, layout_names[layout], qg_last_error());
    gc_case_count++;
    for (int i = 0; i < c->n; i++) qg_tensor_free(base[i]);
}
#endif
