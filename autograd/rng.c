/* Seeded random numbers: a counter-based stream (SplitMix64 finaliser over seed and
 * counter), so a draw depends only on the seed and how many came before it. */
#include <math.h>

#include "internal.h"

static qg_rng global_rng = {0x853c49e6748fea9bULL, 0};

void qg_rng_init(qg_rng *r, uint64_t seed) {
    if (!r) return;
    r->seed = seed;
    r->counter = 0;
}

void qg_manual_seed(uint64_t seed) { qg_rng_init(&global_rng, seed); }
qg_rng *qg_rng_global(void) { return &global_rng; }

uint64_t qg_rng_next_u64(qg_rng *r) {
    if (!r) r = &global_rng;
    uint64_t z = r->seed + (++r->counter) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double qg_rng_uniform(qg_rng *r) { return (double)(qg_rng_next_u64(r) >> 11) * 0x1.0p-53; }

/* fills a contiguous float tensor; normal uses Box-Muller on pairs */
static qg_status fill_random(const char *op, qg_tensor *t, qg_rng *g, bool normal, double a, double b) {
    if (!t) return qg__err(QG_EINVAL, "%s: tensor is NULL", op);
    if (qg__live(op, t)) return QG_ESTATE;
    if (!qg__is_float(t->dtype))
        return qg__err(QG_EDTYPE, "%s: expected f32 or f64, got %s", op, qg_dtype_name(t->dtype));
    if (!qg_tensor_is_contiguous(t)) return qg__err(QG_EINVAL, "%s: tensor must be contiguous", op);
    if (!g) g = &global_rng;
    int64_t n = qg_tensor_numel(t);
    char *d = qg__data(t);
    size_t es = qg_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i += normal ? 2 : 1) {
        if (normal) {
            double u1 = 1.0 - qg_rng_uniform(g), u2 = qg_rng_uniform(g);
            double r = sqrt(-2.0 * log(u1));
            qg__store(d + i * es, t->dtype, a + b * r * cos(2 * M_PI * u2));
            if (i + 1 < n) qg__store(d + (i + 1) * es, t->dtype, a + b * r * sin(2 * M_PI * u2));
        } else {
            double v = a + (b - a) * qg_rng_uniform(g);
            if (t->dtype == QG_F32 && (float)v >= (float)b) v = nextafterf((float)b, (float)a);
            qg__store(d + i * es, t->dtype, v);
        }
    }
    return QG_OK;
}

qg_status qg_tensor_uniform_(qg_tensor *t, qg_rng *gen, double lo, double hi) {
    if (!(lo <= hi)) /* PyTorch's check, NaN included */
        return qg__err(QG_EINVAL, "tensor_uniform_: expected a [lo, hi) range, got lo=%g > hi=%g", lo, hi);
    return fill_random("tensor_uniform_", t, gen, false, lo, hi);
}

qg_status qg_tensor_normal_(qg_tensor *t, qg_rng *gen, double mean, double std) {
    if (!(std >= 0)) return qg__err(QG_EINVAL, "tensor_normal_: expected std >= 0, got %g", std);
    return fill_random("tensor_normal_", t, gen, true, mean, std);
}

qg_tensor *qg_tensor_rand(qg_rng *gen, qg_dtype dt, int ndim, const int64_t *shape) {
    qg_tensor *t = qg_tensor_empty(dt, ndim, shape);
    if (t && qg_tensor_uniform_(t, gen, 0, 1)) qg_tensor_free(t), t = NULL;
    return t;
}

qg_tensor *qg_tensor_randn(qg_rng *gen, qg_dtype dt, int ndim, const int64_t *shape) {
    qg_tensor *t = qg_tensor_empty(dt, ndim, shape);
    if (t && qg_tensor_normal_(t, gen, 0, 1)) qg_tensor_free(t), t = NULL;
    return t;
}
