/* Gradient check by central differences, on a private tape so the caller's tape is
 * left alone. The scalar checked is L = sum(out * r) for a fixed random r, so one
 * backward gives every input's full gradient. */
#include <math.h>

#include "internal.h"

/* *L = sum(out * r), in double */
static qg_status weighted_sum(const qg_tensor *out, const qg_tensor *r, double *L) {
    int64_t n = qg_tensor_numel(out);
    double *a = qg__alloc(sizeof(double) * (size_t)(n ? n : 1)), *b = qg__alloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!a || !b) {
        qg__free(a), qg__free(b);
        return qg__err(QG_ENOMEM, "gradcheck: out of memory");
    }
    qg_tensor_copy_to(out, QG_F64, a);
    qg_tensor_copy_to(r, QG_F64, b);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    qg__free(a), qg__free(b);
    *L = s;
    return QG_OK;
}

static qg_status eval(qg_gradcheck_fn fn, void *ctx, int n, qg_tensor *const *in, const qg_tensor *r, double *L) {
    qg_tape_reset(NULL);
    qg_tensor *out = fn(in, ctx);
    if (!out) return qg__err(qg_last_status() ? qg_last_status() : QG_EINVAL, "gradcheck: fn returned NULL: %s", qg_last_error());
    (void)n;
    return weighted_sum(out, r, L);
}

/* element i (C order) of t, through its strides */
static char *elem(const qg_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * t->strides[d];
        i /= t->shape[d];
    }
    return qg__data(t) + off * (int64_t)qg_dtype_size(t->dtype);
}

qg_status qg_gradcheck(qg_gradcheck_fn fn, void *ctx, int n, qg_tensor *const *inputs, const qg_gradcheck_opts *opts) {
    if (!fn || n <= 0 || !inputs) return qg__err(QG_EINVAL, "gradcheck: need fn and inputs");
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) return qg__err(QG_EINVAL, "gradcheck: input %d is NULL", i);
        if (inputs[i]->requires_grad && inputs[i]->dtype != QG_F64)
            return qg__err(QG_EDTYPE, "gradcheck: input %d must be f64 (got %s)", i, qg_dtype_name(inputs[i]->dtype));
    }
    qg_gradcheck_opts given = {.seed = 1};
    if (opts) given = *opts;
    struct {
        double eps, atol, rtol;
        uint64_t seed;
    } o = {qg_opt_or(given.eps, 1e-6), qg_opt_or(given.atol, 1e-5), qg_opt_or(given.rtol, 1e-4), given.seed};
    if (!(o.eps > 0) || !(o.atol >= 0) || !(o.rtol >= 0))
        return qg__err(QG_EINVAL, "gradcheck: eps must be > 0, atol and rtol >= 0 (got %g, %g, %g)", o.eps, o.atol, o.rtol);
    qg_tape *tape = qg_tape_new();
    if (!tape) return QG_ENOMEM;
    qg_tape *prev = qg_tape_set_current(tape);
    qg_status st = QG_OK;

    /* analytic: out = fn(x), backward with r */
    qg_tensor *out = fn(inputs, ctx);
    if (!out) {
        st = qg__err(qg_last_status() ? qg_last_status() : QG_EINVAL, "gradcheck: fn returned NULL: %s", qg_last_error());
        goto done;
    }
    qg_rng g;
    qg_rng_init(&g, o.seed);
    qg_tensor *r = qg_tensor_randn(&g, out->dtype, out->ndim, out->shape);
    if (!r) {
        st = qg_last_status();
        goto done;
    }
    for (int i = 0; i < n; i++) qg_tensor_zero_grad(inputs[i]);
    if ((st = qg_backward(out, r))) goto free_r;

    for (int i = 0; i < n && !st; i++) {
        qg_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        qg_tensor *ga = x->grad ? qg_tensor_clone(x->grad) : qg_tensor_zeros(QG_F64, x->ndim, x->shape);
        if (!ga) {
            st = qg_last_status();
            break;
        }
        int64_t ne = qg_tensor_numel(x);
        for (int64_t e = 0; e < ne && !st; e++) {
            double *p = (double *)elem(x, e), x0 = *p, lp = 0, lm = 0;
            *p = x0 + o.eps;
            st = eval(fn, ctx, n, inputs, r, &lp);
            *p = x0 - o.eps;
            if (!st) st = eval(fn, ctx, n, inputs, r, &lm);
            *p = x0;
            if (st) break;
            double num = (lp - lm) / (2 * o.eps), ana = *(double *)elem(ga, e);
            if (!(fabs(num - ana) <= o.atol + o.rtol * fabs(num)))
                st = qg__err(QG_EINVAL, "gradcheck: input %d element %lld: analytic %.10g vs numeric %.10g",
                             i, (long long)e, ana, num);
        }
        qg_tensor_free(ga);
    }
free_r:
    qg_tensor_free(r);
done:
    qg_tape_set_current(prev);
    qg_tape_free(tape);
    return st;
}
