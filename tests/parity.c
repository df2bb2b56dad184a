/* The parity runner shared by tests/test_parity_*.c (see parity.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity.h"

const qg_tensor_dict *parity_fixture;

/* The fixture's tensor "<c>.<what>", or NULL (no error) if it has none. */
qg_tensor *parity_fx(const char *c, const char *what) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", c, what);
    qg_tensor *t = qg_tensor_dict_get(parity_fixture, name);
    if (!t) qg_clear_error();
    return t;
}

/* Compares ours (a) with PyTorch's (b); returns the error measure (see the top), or
 * INFINITY with a message in why if shapes/dtypes differ. */
double parity_compare(const qg_tensor *a, const qg_tensor *b, char *why, size_t nwhy) {
    char sa[128], sb[128];
    if (!a) return snprintf(why, nwhy, "missing"), INFINITY;
    bool same = a->dtype == b->dtype && a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same)
        return snprintf(why, nwhy, "got %s, want %s", qg_shape_str(a, sa, sizeof sa), qg_shape_str(b, sb, sizeof sb)),
               INFINITY;
    int64_t n = qg_tensor_numel(b);
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
    qg_tensor_copy_to(a, QG_F64, x);
    qg_tensor_copy_to(b, QG_F64, y);
    double scale = 0, err = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(y[i])) scale = fmax(scale, fabs(y[i]));
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e;
        if (x[i] == y[i]) e = 0; /* also equal infinities */
        else if (isnan(x[i]) || isnan(y[i]) || isinf(x[i]) || isinf(y[i])) e = INFINITY;
        else e = fabs(x[i] - y[i]) / fmax(fmax(fabs(y[i]), 1e-3 * scale), 1e-300);
        if (!(e <= err)) err = e, worst = i;
    }
    if (err > 0) snprintf(why, nwhy, "worst at element %lld: %.9g vs %.9g", (long long)worst, x[worst], y[worst]);
    free(x);
    free(y);
    return err;
}

/* Tolerance of tensor <c>.<what>: the case's, plus for float32 twice PyTorch's own
 * float32 error on it (fixture metadata "f32err.<c>.<what>"; see the top). */
static double tolerance(const char *c, const char *what, const op_case *oc, bool f64) {
    if (f64) return TOL_F64;
    char key[300];
    snprintf(key, sizeof key, "f32err.%s.%s", c, what);
    const char *v = qg_tensor_dict_meta(parity_fixture, key);
    return oc->tol + (v ? 2 * atof(v) : 0);
}

typedef struct verdict {
    double err, tol; /* of the worst tensor: largest err / tol */
    char what[32];   /* its name */
    char why[256];
    bool failed;
} verdict;

/* Compares one tensor and keeps the worst in v. */
static void check(verdict *v, const char *what, const qg_tensor *ours, const qg_tensor *want, double tol) {
    char why[256] = "";
    double e = parity_compare(ours, want, why, sizeof why);
    bool bad = !(e <= tol);
    double r = tol > 0 ? e / tol : (e > 0 ? INFINITY : 0);
    double rv = v->tol > 0 ? v->err / v->tol : (v->err > 0 ? INFINITY : 0);
    if ((bad && !v->failed) || (bad == v->failed && r > rv) || !v->what[0]) {
        v->err = e, v->tol = tol;
        snprintf(v->what, sizeof v->what, "%s", what);
        snprintf(v->why, sizeof v->why, "%s", why);
    }
    v->failed |= bad;
}

/* Runs one fixture case; prints its line; returns true if it passed. */
static bool run_case(const char *c, op_case *oc, bool f64) {
    qg_tensor *in[MAX_IN] = {0};
    int nin = 0;
    char key[32];
    for (; nin < MAX_IN; nin++) {
        snprintf(key, sizeof key, "in%d", nin);
        if (!(in[nin] = parity_fx(c, key))) break;
    }
    for (int i = 0; i < nin; i++) {
        snprintf(key, sizeof key, "gin%d", i);
        if (parity_fx(c, key)) qg_tensor_set_requires_grad(in[i], true);
    }
    qg_tensor *want_out = parity_fx(c, "out"), *want_idx = parity_fx(c, "idx"), *gout = parity_fx(c, "gout");
    qg_tensor *aux = NULL;
    qg_clear_error();
    qg_tensor *out = oc->fn(in, want_idx ? &aux : NULL);

    verdict v = {0};
    if (!out) {
        v.failed = true, v.err = INFINITY;
        snprintf(v.what, sizeof v.what, "out");
        snprintf(v.why, sizeof v.why, "op returned NULL: %s", qg_last_error());
    } else {
        check(&v, "out", out, want_out, tolerance(c, "out", oc, f64));
        if (want_idx) check(&v, "idx", aux, want_idx, 0);
        if (gout && !v.failed) {
            if (qg_backward(out, gout) != QG_OK) {
                v.failed = true, v.err = INFINITY;
                snprintf(v.what, sizeof v.what, "backward");
                snprintf(v.why, sizeof v.why, "%s", qg_last_error());
            }
            for (int i = 0; i < nin && !v.failed; i++) {
                snprintf(key, sizeof key, "gin%d", i);
                qg_tensor *want = parity_fx(c, key);
                if (want) check(&v, key, in[i]->grad, want, tolerance(c, key, oc, f64));
            }
        }
    }
    if (!v.failed) printf("ok %-24s max_rel_err=%-9.3g tol=%-9.3g (%s)\n", c, v.err, v.tol, v.what);
    else printf("FAIL %s max_rel_err=%.3g tol=%.3g in %s: %s\n", c, v.err, v.tol, v.what, v.why);
    for (int i = 0; i < nin; i++) qg_tensor_set_requires_grad(in[i], false);
    qg_tape_reset(NULL);
    return !v.failed;
}

qg_tensor_dict *parity_run(int argc, char **argv, op_case *cases, int ncases, int *passed_out, int *failed_out) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s tests/fixtures/autograd_ops.safetensors\n", argv[0]);
        return NULL;
    }
    qg_tensor_dict *d = qg_safetensors_load(argv[1]);
    if (!d) {
        printf("FAIL cannot load the fixture: %s\n", qg_last_error());
        (*failed_out)++;
        return NULL;
    }
    parity_fixture = d;
    int passed = 0, failed = 0;
    for (int i = 0; i < qg_tensor_dict_size(d); i++) {
        const char *nm = qg_tensor_dict_name(d, i);
        size_t n = strlen(nm);
        if (!strncmp(nm, "_format.", 8) || n < 5 || strcmp(nm + n - 4, ".out")) continue;
        char c[256];
        snprintf(c, sizeof c, "%.*s", (int)(n - 4), nm);
        size_t cn = strlen(c);
        bool f64 = cn > 4 && !strcmp(c + cn - 4, "_f64");
        op_case *oc = NULL;
        for (int k = 0; k < ncases && !oc; k++)
            if (strlen(cases[k].name) == (f64 ? cn - 4 : cn) && !strncmp(cases[k].name, c, f64 ? cn - 4 : cn))
                oc = &cases[k];
        if (!oc) {
            printf("FAIL %s: no C function for this fixture case (add it to the test's case table)\n", c);
            failed++;
            continue;
        }
        oc->runs++;
        if (run_case(c, oc, f64)) passed++;
        else failed++;
    }
    for (int k = 0; k < ncases; k++)
        if (!cases[k].runs) {
            printf("FAIL %s: not in the fixture (regenerate it with tools/gen_fixtures.py)\n", cases[k].name);
            failed++;
        }
    *passed_out += passed;
    *failed_out += failed;
    return d;
}
