/* Tensors, views, the generator and the tape's rules. */
#include <string.h>

#include "test_util.h"

static void test_creation(void) {
    qg_tensor *z = qg_tensor_zeros(QG_F32, 2, SHAPE(2, 3));
    qg_tensor *o = qg_tensor_ones(QG_F64, 1, SHAPE(4));
    qg_tensor *f = qg_tensor_full(QG_I64, 2, SHAPE(2, 2), 7);
    qg_tensor *a = qg_tensor_arange(QG_F32, 0, 5, 0.5);
    CHECK(z && o && f && a, "creation failed: %s", qg_last_error());
    CHECK(qg_tensor_numel(z) == 6 && z->strides[0] == 3 && z->strides[1] == 1, "zeros layout");
    CHECK(qg_tensor_get(o, SHAPE(3)) == 1.0, "ones");
    CHECK(qg_tensor_get(f, SHAPE(1, 1)) == 7.0, "full i64");
    CHECK(a->shape[0] == 10 && qg_tensor_get(a, SHAPE(9)) == 4.5, "arange");
    float data[6] = {1, 2, 3, 4, 5, 6};
    qg_tensor *d = qg_tensor_from_data(QG_F32, 2, SHAPE(2, 3), data);
    data[0] = 100; /* copied, not aliased */
    CHECK(qg_tensor_get(d, SHAPE(0, 0)) == 1 && qg_tensor_get(d, SHAPE(1, 2)) == 6, "from_data");
    qg_tensor *c = qg_tensor_clone(d);
    qg_tensor_set(d, SHAPE(0, 0), 9);
    CHECK(qg_tensor_get(c, SHAPE(0, 0)) == 1, "clone is deep");
    qg_tensor *s = qg_tensor_full(QG_F64, 0, NULL, 3.5);
    CHECK(s && s->ndim == 0 && qg_tensor_item(s) == 3.5, "0-d tensor");
    CHECK(!qg_tensor_zeros(QG_F32, 9, SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)) && *qg_last_error(), "ndim > 8 rejected");
    CHECK(!qg_tensor_zeros(QG_F32, 1, SHAPE(-1)), "negative size rejected");
    CHECK(isnan(qg_tensor_item(d)) && strstr(qg_last_error(), "one element"), "item of non-scalar");
    qg_tensor *e = qg_tensor_empty(QG_U8, 1, SHAPE(0));
    CHECK(e && qg_tensor_numel(e) == 0, "empty tensor");
    qg_tensor_free(z), qg_tensor_free(o), qg_tensor_free(f), qg_tensor_free(a);
    qg_tensor_free(d), qg_tensor_free(c), qg_tensor_free(s), qg_tensor_free(e);
}

static void test_rng(void) {
    qg_rng g1, g2;
    qg_rng_init(&g1, 42), qg_rng_init(&g2, 42);
    qg_tensor *a = qg_tensor_randn(&g1, QG_F32, 2, SHAPE(100, 7));
    qg_tensor *b = qg_tensor_randn(&g2, QG_F32, 2, SHAPE(100, 7));
    CHECK(tst_bitwise_equal(a, b), "same seed, same numbers");
    double s = 0, ss = 0;
    float *p = qg_tensor_data(a);
    for (int i = 0; i < 700; i++) s += p[i], ss += p[i] * p[i];
    CHECK(fabs(s / 700) < 0.15 && fabs(ss / 700 - 1) < 0.2, "randn moments %g %g", s / 700, ss / 700);
    qg_tensor *u = qg_tensor_rand(&g1, QG_F64, 1, SHAPE(1000));
    double mn = 1, mx = 0;
    for (int i = 0; i < 1000; i++) {
        double v = ((double *)qg_tensor_data(u))[i];
        mn = v < mn ? v : mn, mx = v > mx ? v : mx;
    }
    CHECK(mn >= 0 && mx < 1 && mn < 0.01 && mx > 0.99, "rand in [0,1)");
    qg_manual_seed(7);
    double x1 = qg_rng_uniform(NULL);
    qg_manual_seed(7);
    CHECK(qg_rng_uniform(NULL) == x1, "manual_seed repeats the global stream");
    qg_tensor_free(a), qg_tensor_free(b), qg_tensor_free(u);
}

static void test_views(void) {
    qg_tensor *x = qg_tensor_arange(QG_F32, 0, 24, 1);
    qg_tensor *r = qg_reshape(x, 3, SHAPE(2, 3, 4));
    CHECK(r && r->storage == x->storage, "reshape of contiguous is a view");
    qg_tensor *t = qg_transpose(r, 0, 2); /* (4,3,2) */
    CHECK(t && t->shape[0] == 4 && t->strides[0] == 1 && !qg_tensor_is_contiguous(t), "transpose");
    CHECK(qg_tensor_get(t, SHAPE(3, 2, 1)) == 1 * 12 + 2 * 4 + 3, "transpose element");
    CHECK(!qg_view(t, 1, SHAPE(24)) && strstr(qg_last_error(), "without a copy"), "view refuses a copy");
    qg_tensor *f = qg_reshape(t, 1, SHAPE(-1));
    CHECK(f && f->storage != x->storage && qg_tensor_get(f, SHAPE(1)) == 12, "reshape copies when needed");
    int perm[3] = {1, 2, 0};
    qg_tensor *p = qg_permute(r, perm); /* (3,4,2) */
    CHECK(p && p->shape[0] == 3 && p->shape[2] == 2 && qg_tensor_get(p, SHAPE(1, 2, 1)) == 12 + 4 + 2, "permute");
    qg_tensor *n = qg_narrow(r, 2, 1, 2);
    CHECK(n && n->shape[2] == 2 && qg_tensor_get(n, SHAPE(1, 0, 0)) == 13, "narrow");
    qg_tensor *sl = qg_slice(x, 0, 1, -1, 5);
    CHECK(sl && sl->shape[0] == 5 && qg_tensor_get(sl, SHAPE(4)) == 21, "slice with step");
    qg_tensor *se = qg_select(r, 1, -1);
    CHECK(se && se->ndim == 2 && qg_tensor_get(se, SHAPE(1, 3)) == 12 + 8 + 3, "select");
    qg_tensor *u = qg_unsqueeze(se, 1);
    CHECK(u && u->ndim == 3 && u->shape[1] == 1, "unsqueeze");
    qg_tensor *e = qg_expand(u, 3, SHAPE(-1, 5, -1));
    CHECK(e && e->shape[1] == 5 && e->strides[1] == 0 && qg_tensor_get(e, SHAPE(1, 4, 3)) == 23, "expand");
    qg_tensor *sq = qg_squeeze(u, 1);
    CHECK(sq && sq->ndim == 2, "squeeze");
    qg_tensor *fl = qg_flatten(r, 1, 2);
    CHECK(fl && fl->ndim == 2 && fl->shape[1] == 12, "flatten");
    qg_tensor *c = qg_contiguous(t);
    CHECK(c && qg_tensor_is_contiguous(c) && qg_tensor_get(c, SHAPE(3, 2, 1)) == 23, "contiguous");
    CHECK(qg_contiguous(r) == r, "contiguous of contiguous is itself");
    /* copy_ through strided views */
    qg_tensor *dst = qg_tensor_zeros(QG_F32, 3, SHAPE(4, 3, 2));
    CHECK(qg_tensor_copy_(dst, t) == QG_OK && qg_tensor_get(dst, SHAPE(3, 2, 1)) == 23, "copy_ strided");
    qg_tensor *i64 = qg_to_dtype(t, QG_I64);
    CHECK(i64 && i64->dtype == QG_I64 && qg_tensor_get(i64, SHAPE(3, 2, 1)) == 23, "to_dtype");
    qg_tensor_free(dst);
    qg_tensor_free(x);
    qg_tape_reset(NULL);
}

static void test_tape_rules(void) {
    qg_tensor *w = qg_tensor_ones(QG_F64, 1, SHAPE(3));
    qg_tensor_set_requires_grad(w, true);
    qg_tensor *y = qg_sum(qg_mul(w, w), 0, NULL, false);
    CHECK(y && y->requires_grad && y->node, "recorded");
    CHECK(qg_backward_retain(y, NULL) == QG_OK && qg_tensor_get(w->grad, SHAPE(0)) == 2.0, "d(sum w^2) = 2w");
    CHECK(qg_backward(y, NULL) == QG_OK && qg_tensor_get(w->grad, SHAPE(0)) == 4.0, "grads accumulate");
    /* the graph is consumed now: PyTorch's "backward through the graph a second time" */
    CHECK(qg_backward(y, NULL) == QG_ESTATE && strstr(qg_last_error(), "second time") &&
              qg_tensor_get(w->grad, SHAPE(0)) == 4.0,
          "third backward: %s", qg_last_error());
    /* a consumed subgraph inside a new graph is refused too, before anything accumulates */
    qg_tensor *y2 = qg_add(y, qg_sum(w, 0, NULL, false));
    CHECK(qg_backward(y2, NULL) == QG_ESTATE && qg_tensor_get(w->grad, SHAPE(0)) == 4.0, "partly consumed graph");
    qg_tensor_zero_grad(w);
    CHECK(qg_tensor_get(w->grad, SHAPE(0)) == 0.0, "zero_grad");
    qg_tape_reset(NULL);
    CHECK(qg_backward(y, NULL) == QG_ESTATE && strstr(qg_last_error(), "reset"), "backward after reset: %s", qg_last_error());
    /* no path to a leaf */
    qg_tensor *c = qg_tensor_ones(QG_F64, 1, SHAPE(3));
    qg_tensor *z = qg_sum(qg_exp(c), 0, NULL, false);
    CHECK(qg_backward(z, NULL) == QG_ESTATE && strstr(qg_last_error(), "require grad"), "no path: %s", qg_last_error());
    /* non-scalar needs grad_out */
    qg_tensor *v = qg_mul(w, w);
    CHECK(qg_backward(v, NULL) == QG_ESHAPE, "non-scalar without grad_out");
    /* no-grad scope */
    bool prev = qg_set_grad_enabled(false);
    qg_tensor *ng = qg_mul(w, w);
    qg_set_grad_enabled(prev);
    CHECK(ng && !ng->requires_grad && !ng->node, "no-grad records nothing");
    /* detach */
    qg_tensor *d = qg_detach(w);
    CHECK(d && !d->requires_grad && d->storage == w->storage, "detach");
    /* tensor used twice through two paths */
    qg_tensor_zero_grad(w);
    qg_tensor *a = qg_mul_scalar(w, 3.0);
    qg_tensor *b = qg_add(a, qg_exp(a));
    qg_backward(qg_sum(b, 0, NULL, false), NULL);
    CHECK(tst_close(qg_tensor_get(w->grad, SHAPE(0)), 3 + 3 * exp(3.0), 1e-12, 1e-12), "diamond graph");
    CHECK(qg_tape_node_count(qg_tape_current()) > 0, "nodes counted");
    qg_tape_reset(NULL);
    CHECK(qg_tape_node_count(qg_tape_current()) == 0, "reset clears nodes");
    qg_tensor_free(w), qg_tensor_free(c);
}

/* The tests' shared comparator (tests/compare.h) itself: values (NaN equals NaN, -0
 * equals 0), tolerances, bits, shapes, strides, and the first element that differs. */
static void test_compare(void) {
    qg_tensor *a = qg_tensor_from_data(QG_F32, 2, SHAPE(2, 2), (float[]){1, NAN, -0.0f, 4});
    qg_tensor *b = qg_tensor_from_data(QG_F32, 2, SHAPE(2, 2), (float[]){1, NAN, 0.0f, 4.001f});
    tst_cmp c = tst_compare(a, b, TST_EXACT);
    CHECK(!c.ok && c.bad == 1 && c.first == 3 && c.got == 4 && c.exact == 3, "exact: one differs (%lld at %lld)",
          (long long)c.bad, (long long)c.first);
    CHECK(tst_compare(a, b, (tst_tol){.rtol = 1e-3}).ok && !tst_compare(a, b, (tst_tol){.rtol = 1e-4}).ok,
          "relative tolerance");
    c = tst_compare(a, b, TST_BITWISE);
    CHECK(!c.ok && c.bad == 2 && c.first == 2, "bitwise: -0 and 0 differ (%lld)", (long long)c.bad);
    CHECK(tst_bitwise_equal(a, a) && !tst_bitwise_equal(a, NULL), "bitwise: itself, and NULL");
    qg_tensor *at = qg_tensor_clone(qg_transpose(a, 0, 1)), *v = qg_transpose(at, 0, 1);
    CHECK(tst_bitwise_equal(v, a) && !tst_compare(at, a, TST_EXACT).ok, "strided views compare by element");
    qg_tensor *flat = qg_tensor_from_data(QG_F32, 1, SHAPE(4), (float[]){1, NAN, 0, 4});
    c = tst_compare(flat, a, TST_EXACT);
    CHECK(!c.ok && !c.shape_ok && c.bad == -1 && isinf(c.max_rel), "another shape fails");
    CHECK(tst_compare_array(a, 4, (const double[]){1, NAN, 0, 4.0005}, (tst_tol){.atol = 1e-3}).ok, "array");
    qg_tensor_free(a), qg_tensor_free(b), qg_tensor_free(at), qg_tensor_free(flat);
    qg_tape_reset(NULL);
}

int main(void) {
    test_creation();
    test_rng();
    test_views();
    test_tape_rules();
    test_compare();
    return test_summary("tensor");
}
