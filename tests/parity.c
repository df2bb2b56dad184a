/* The parity rule and the op-table runner shared by tests/test_parity_*.c (parity.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity.h"

const qg_tensor_dict *parity_fixture;
parity_tally parity;

/* e(x) of parity.h against r (n elements); *worst gets the element of the largest
 * difference. Equal infinities are equal; any other non-finite difference is INFINITY. */
static double measure(const double *x, const double *r, int64_t n, int64_t *worst) {
    double scale = 0, diff = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(r[i])) scale = fmax(scale, fabs(r[i]));
    *worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] == r[i] ? 0 : fabs(x[i] - r[i]); /* NaN or inf - inf: NaN */
        if (!(d <= diff)) diff = d, *worst = i;
    }
    if (diff == 0) return 0;
    return isfinite(diff) ? diff / fmax(scale, 1e-300) : INFINITY;
}

static void fail(const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    parity.failed++;
    if (!parity.quiet) {
        printf("FAIL %s: ", what);
        vprintf(fmt, ap);
        printf("\n");
    }
    va_end(ap);
}

bool parity_judge(const char *what, const qg_tensor *ours, const qg_tensor *torch, const qg_tensor *ref) {
    char sa[128], sb[128];
    if (!torch || (torch->dtype == QG_F32 && !ref)) {
        fail(what, "not in the fixture");
        return false;
    }
    if (!ours || ours->dtype != torch->dtype || !tst_same_shape(ours, torch) || (ref && !tst_same_shape(ref, torch))) {
        fail(what, "got %s, want %s", ours ? qg_shape_str(ours, sa, sizeof sa) : "nothing",
             qg_shape_str(torch, sb, sizeof sb));
        return false;
    }
    int64_t n = qg_tensor_numel(torch), wa, wb;
    double *a = tst_to_f64(ours), *b = tst_to_f64(torch), *r = ref ? tst_to_f64(ref) : NULL;
    bool ok;
    if (torch->dtype != QG_F32 && torch->dtype != QG_F64) { /* integers: equal */
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += a[i] != b[i];
        ok = !bad;
        if (!ok) fail(what, "%lld elements differ", (long long)bad);
    } else if (torch->dtype == QG_F64) {
        double e = measure(a, b, n, &wa);
        ok = e <= PARITY_F64;
        if (!ok) fail(what, "err=%.3g > %.3g (float64), worst at element %lld: %.17g vs %.17g", e, PARITY_F64, (long long)wa, a[wa], b[wa]);
    } else {
        double ea = measure(a, r, n, &wa), eb = measure(b, r, n, &wb);
        double bound = PARITY_K * fmax(eb, PARITY_FLOOR);
        ok = ea <= bound && eb <= PARITY_REF_MAX;
        if (!ok && eb > PARITY_REF_MAX)
            fail(what, "PyTorch's float32 is %.3g from the float64 reference (element %lld: %.9g vs %.17g)", eb,
                 (long long)wb, b[wb], r[wb]);
        else if (!ok)
            fail(what, "err=%.3g bound=%.3g, worst at element %lld: %.9g, PyTorch %.9g, float64 %.17g", ea, bound,
                 (long long)wa, a[wa], b[wa], r[wa]);
        else {
            double ratio = ea / bound;
            if (ratio >= parity.worst_ratio) {
                parity.worst_ratio = ratio;
                snprintf(parity.worst, sizeof parity.worst, "%s", what);
            }
            if (getenv("PARITY_VERBOSE")) printf("ok %-40s err=%-9.3g torch=%-9.3g ratio=%.3f\n", what, ea, eb, ratio);
            /* the probe: ours with its largest element (by the reference) off by 1e-3 */
            int64_t big = 0;
            for (int64_t i = 0; i < n; i++)
                if (fabs(r[i]) > fabs(r[big])) big = i;
            if (n && r[big] != 0) {
                a[big] = (double)(float)(a[big] * (1 + 1e-3));
                parity.probed++;
                if (!(measure(a, r, n, &wa) <= bound)) parity.caught++;
                else if (!parity.missed[0]) snprintf(parity.missed, sizeof parity.missed, "%s", what);
            }
        }
    }
    if (ok) parity.passed++;
    free(a), free(b), free(r);
    return ok;
}

bool parity_judge_grid(const char *what, const qg_tensor *ours, double step, const qg_tensor *torch, double torch_step,
                       int64_t *flips) {
    *flips = 0;
    if (!ours || !torch || ours->dtype != QG_F32 || torch->dtype != QG_F32 || !tst_same_shape(ours, torch) || !(step > 0) ||
        !(torch_step > 0)) {
        fail(what, "missing, or not float32 of PyTorch's shape, or no step");
        return false;
    }
    int64_t n = qg_tensor_numel(torch), other = 0, off = 0, at = -1;
    double *a = tst_to_f64(ours), *b = tst_to_f64(torch);
    for (int64_t i = 0; i < n; i++) {
        /* each side's level: (q - zero_point), an integer up to float32 rounding */
        double la = a[i] / step, lb = b[i] / torch_step, ra = nearbyint(la), rb = nearbyint(lb);
        if (fabs(la - ra) > 1e-4 || fabs(lb - rb) > 1e-4) off++, at = at < 0 ? i : at;
        else if (fabs(ra - rb) == 1) (*flips)++;
        else if (ra != rb) other++, at = at < 0 ? i : at;
        else if (step == torch_step && a[i] != b[i]) other++, at = at < 0 ? i : at; /* same grid: same bits */
    }
    bool ok = !other && !off && *flips <= PARITY_MAX_FLIPS * (double)n;
    if (ok) parity.passed++;
    else if (off)
        fail(what, "%lld elements are off the grid of step %.9g (PyTorch's %.9g), first %lld: %.9g vs %.9g", (long long)off,
             step, torch_step, (long long)at, a[at], b[at]);
    else if (other)
        fail(what, "%lld elements differ by more than one level, first %lld: %.9g vs %.9g", (long long)other, (long long)at,
             a[at], b[at]);
    else
        fail(what, "%lld of %lld elements flipped a level (at most %g allowed)", (long long)*flips, (long long)n,
             PARITY_MAX_FLIPS * (double)n);
    free(a), free(b);
    return ok;
}

void parity_report(void) {
    printf("worst ratio error/bound: %.3f (%s); a 1e-3 corruption of the largest element fails %d of %d float32 tensors\n",
           parity.worst_ratio, parity.worst[0] ? parity.worst : "-", parity.caught, parity.probed);
    if (parity.caught < parity.probed) {
        parity.failed++;
        printf("FAIL the rule let a 1e-3 corruption through, first in %s\n", parity.missed);
    }
}

/* Runs one fixture case: the op, then qg_backward(out, gout); judges out, idx, ginN. */
static void run_case(const char *c, op_case *oc) {
    qg_tensor *in[MAX_IN] = {0};
    int nin = 0;
    char what[300];
    for (; nin < MAX_IN; nin++)
        if (!(in[nin] = PFX("%s.in%d", c, nin))) break;
    for (int i = 0; i < nin; i++)
        if (PFX("%s.gin%d", c, i)) qg_tensor_set_requires_grad(in[i], true);
    qg_tensor *want_idx = PFX("%s.idx", c), *gout = PFX("%s.gout", c);
    qg_tensor *aux = NULL;
    int failed0 = parity.failed;
    qg_clear_error();
    qg_tensor *out = oc->fn(in, want_idx ? &aux : NULL);
    snprintf(what, sizeof what, "%s out", c);
    if (!out) {
        parity.failed++;
        printf("FAIL %s: op returned NULL: %s\n", c, qg_last_error());
    } else {
        parity_judge(what, out, PFX("%s.out", c), PFX("%s.ref.out", c));
        snprintf(what, sizeof what, "%s idx", c);
        if (want_idx) parity_judge(what, aux, want_idx, NULL);
        if (gout && parity.failed == failed0) {
            if (qg_backward(out, gout) != QG_OK) {
                parity.failed++;
                printf("FAIL %s backward: %s\n", c, qg_last_error());
            }
            for (int i = 0; i < nin && parity.failed == failed0; i++) {
                snprintf(what, sizeof what, "%s gin%d", c, i);
                qg_tensor *want = PFX("%s.gin%d", c, i);
                if (want) parity_judge(what, in[i]->grad, want, PFX("%s.ref.gin%d", c, i));
            }
        }
    }
    if (parity.failed == failed0) printf("ok %s\n", c);
    for (int i = 0; i < nin; i++) qg_tensor_set_requires_grad(in[i], false);
    qg_tape_reset(NULL);
}

qg_tensor_dict *parity_run(int argc, char **argv, op_case *cases, int ncases) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s tests/fixtures/<file>.safetensors\n", argv[0]);
        return NULL;
    }
    qg_tensor_dict *d = qg_safetensors_load(argv[1]);
    if (!d) {
        printf("FAIL cannot load the fixture: %s\n", qg_last_error());
        parity.failed++;
        return NULL;
    }
    parity_fixture = d;
    for (int i = 0; i < qg_tensor_dict_size(d); i++) {
        const char *nm = qg_tensor_dict_name(d, i);
        size_t n = strlen(nm);
        if (!strncmp(nm, "_format.", 8) || n < 5 || strcmp(nm + n - 4, ".out") || (n > 8 && !strcmp(nm + n - 8, ".ref.out")))
            continue;
        char c[256];
        snprintf(c, sizeof c, "%.*s", (int)(n - 4), nm);
        size_t cn = strlen(c), base = cn > 4 && !strcmp(c + cn - 4, "_f64") ? cn - 4 : cn;
        op_case *oc = NULL;
        for (int k = 0; k < ncases && !oc; k++)
            if (strlen(cases[k].name) == base && !strncmp(cases[k].name, c, base)) oc = &cases[k];
        if (!oc) {
            printf("FAIL %s: no C function for this fixture case (add it to the test's case table)\n", c);
            parity.failed++;
            continue;
        }
        oc->runs++;
        run_case(c, oc);
    }
    for (int k = 0; k < ncases; k++)
        if (!cases[k].runs) {
            printf("FAIL %s: not in the fixture (regenerate it with tools/gen_fixtures.py)\n", cases[k].name);
            parity.failed++;
        }
    return d;
}
