/* dropout: in training, y = x * mask * scale with mask[i] = (u_i >= p) for uniform
 * draws u_i in C order from the generator, and scale = 1 / (1 - p) rounded to x's
 * dtype (PyTorch's CPU dropout multiplies by a noise tensor bernoulli(1-p) / (1-p)).
 * The mask is kept on the tape; backward is gx += g * mask * scale.
 * p == 1 is x * 0 (PyTorch: NaN and inf inputs give NaN), p == 0 or eval is x itself.
 * The generator is counter based, so the mask is drawn in parallel chunks that each
 * start at their own counter: the same seed gives the same mask at any thread count. */
#include <math.h>

#include "op_internal.h"

typedef struct {
    qg_dtype dt;
    double scale;
} drop_ctx;

/* ptr: y, x, mask */
static void drop_fwd_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const drop_ctx *c = vctx;
    const uint8_t *m = (const uint8_t *)ptr[2];
    QG_FLOAT_DISPATCH(c->dt, {
        real *y = (real *)ptr[0];
        const real *x = (const real *)ptr[1];
        const real s = (real)c->scale;
        if (st[0] == 1 && st[1] == 1 && st[2] == 1)
            for (int64_t i = 0; i < n; i++) y[i] = m[i] ? x[i] * s : (real)0 * x[i];
        else
            for (int64_t i = 0; i < n; i++) y[i * st[0]] = m[i * st[2]] ? x[i * st[1]] * s : (real)0 * x[i * st[1]];
    });
}

/* ptr: gx, g, mask */
static void drop_bwd_row(int64_t n, char **ptr, const int64_t *st, void *vctx) {
    const drop_ctx *c = vctx;
    const uint8_t *m = (const uint8_t *)ptr[2];
    QG_FLOAT_DISPATCH(c->dt, {
        real *d = (real *)ptr[0];
        const real *g = (const real *)ptr[1];
        const real s = (real)c->scale;
        for (int64_t i = 0; i < n; i++) d[i * st[0]] += g[i * st[1]] * (m[i * st[2]] ? s : (real)0);
    });
}

static qg_status dropout_backward(qg_node *n) {
    qg_tensor *x = n->in[0];
    if (!qg__wants_grad(x)) return QG_OK;
    drop_ctx c = {x->dtype, n->p[0]};
    qg_tensor *gx = qg__grad_of(x);
    if (!gx) return QG_ENOMEM;
    const qg_tensor *ops[3] = {gx, n->out->grad, n->saved[0]};
    qg_iter it;
    qg__iter_init(&it, 3, ops, x->ndim, x->shape);
    qg__iter_run(&it, drop_bwd_row, &c, true);
    return QG_OK;
}

/* mask[i] = u_i >= p, u_i the i-th draw of gen; gen advances by n draws */
static void draw_mask(qg_rng *gen, double p, int64_t n, uint8_t *mask) {
    int nt = qg__threads_for(n);
    const qg_rng start = *gen;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
    for (int t = 0; t < nt; t++) {
        int64_t a = qg__share(n, t, nt), b = qg__share(n, t + 1, nt);
        qg_rng r = start;
        r.counter += (uint64_t)a;
        for (int64_t i = a; i < b; i++) mask[i] = qg_rng_uniform(&r) >= p;
    }
    gen->counter += (uint64_t)n;
}

qg_tensor *qg_dropout(const qg_tensor *x, double p, bool training, qg_rng *gen) {
    if (x && x->quant && !training && p >= 0 && p <= 1) return qg__live("dropout", x) ? NULL : (qg_tensor *)x;
    if (qg__check_float("dropout", x)) return NULL;
    if (!(p >= 0 && p <= 1))
        return qg__err(QG_EINVAL, "dropout: probability has to be between 0 and 1, but got %g", p), NULL;
    if (!training || p == 0) return (qg_tensor *)x;
    if (p == 1) return qg_mul_scalar(x, 0.0);
    if (!gen) gen = qg_rng_global();
    qg_tensor *out = qg__tape_tensor(x->dtype, x->ndim, x->shape);
    qg_tensor *mask = qg__tape_tensor(QG_U8, x->ndim, x->shape);
    if (!out || !mask) return NULL;
    draw_mask(gen, p, qg_tensor_numel(x), (uint8_t *)qg__data(mask));
    /* the noise value of PyTorch: 1 / (1 - p) in the input's dtype */
    drop_ctx c = {x->dtype, x->dtype == QG_F32 ? (double)(1.0f / (float)(1.0 - p)) : 1.0 / (1.0 - p)};
    const qg_tensor *ops[3] = {out, x, mask};
    qg_iter it;
    qg__iter_init(&it, 3, ops, x->ndim, x->shape);
    qg__iter_run(&it, drop_fwd_row, &c, true);
    if (qg__needs_grad(1, &x)) {
        qg_node *n = qg__record("dropout", dropout_backward, out, 1, &x);
        if (!n) return NULL;
        n->saved[0] = mask;
        n->p[0] = c.scale;
    }
    return out;
}
