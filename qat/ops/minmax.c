/* The per-channel min/max kernel of the observers and the fused observer op: one read
 * of x, vectorized, split over threads. Min and max do not depend on the order they
 * are taken in, so any split gives the same bits. */
#include <math.h>

#include "kernels/isa.h"
#include "fq_internal.h"

#define MM_LANES 64 /* GCC keeps 64 lanes in vector registers; 16 ran 3.5x slower */
#define MM_INNER_MIN 16

/* Each thread keeps one accumulator per parameter slot of the walk: per channel when
 * runs are long, else per entry of the period C * inner. */
QG_HOT static qg_status channel_minmax(qg_dtype dt, const char *x_, const fq_layout *L, float *lo_out, float *hi_out,
                                      bool *finite) {
    const int64_t n = L->n, C = L->C, inner = L->inner;
    const int64_t period = (C == 1 || inner >= MM_INNER_MIN) ? 1 : C * inner;
    const int64_t slots = period == 1 ? C : period;
    const int nt = qg__threads_for(n);
    bool ok = true;
    QG_FLOAT_DISPATCH(dt, {
        real *acc = qg__tape_alloc(sizeof(real) * 3 * (size_t)(slots * nt));
        if (!acc) return QG_ENOMEM;
        const real *x = (const real *)x_;
_Pragma("omp parallel for num_threads(nt) schedule(static) if(nt > 1)")
        for (int t = 0; t < nt; t++) {
            real *lo = acc + 3 * slots * t, *hi = lo + slots, *bad = hi + slots;
            for (int64_t j = 0; j < slots; j++) lo[j] = INFINITY, hi[j] = -INFINITY, bad[j] = 0;
            FQ_WALK(L, period, qg__split_at(n, t, nt), qg__split_at(n, t + 1, nt), {
                const real *xs = x + i;
                if (period == 1) { /* one channel's run: MM_LANES independent accumulators */
                    real l[MM_LANES], h[MM_LANES], z[MM_LANES];
                    for (int j = 0; j < MM_LANES; j++) l[j] = INFINITY, h[j] = -INFINITY, z[j] = 0;
                    int64_t k = 0;
                    for (; k + MM_LANES <= len; k += MM_LANES)
                        for (int j = 0; j < MM_LANES; j++) {
                            real v = xs[k + j];
                            l[j] = v < l[j] ? v : l[j];
                            h[j] = v > h[j] ? v : h[j];
                            z[j] += v - v; /* NaN from a NaN or an infinity */
                        }
                    for (; k < len; k++) {
                        real v = xs[k];
                        l[0] = v < l[0] ? v : l[0];
                        h[0] = v > h[0] ? v : h[0];
                        z[0] += v - v;
                    }
                    for (int j = 0; j < MM_LANES; j++) {
                        lo[pj] = l[j] < lo[pj] ? l[j] : lo[pj];
                        hi[pj] = h[j] > hi[pj] ? h[j] : hi[pj];
                        bad[pj] += z[j];
                    }
                } else { /* x: (len) against the slots from pj */
                    real *l = lo + pj, *h = hi + pj, *z = bad + pj;
                    for (int64_t k = 0; k < len; k++) {
                        real v = xs[k];
                        l[k] = v < l[k] ? v : l[k];
                        h[k] = v > h[k] ? v : h[k];
                        z[k] += v - v;
                    }
                }
            });
        }
        for (int64_t c = 0; c < C; c++) lo_out[c] = INFINITY, hi_out[c] = -INFINITY;
        for (int t = 0; t < nt; t++) {
            const real *lo = acc + 3 * slots * t, *hi = lo + slots, *bad = hi + slots;
            for (int64_t j = 0; j < slots; j++) {
                int64_t c = period == 1 ? j : j / inner;
                if (bad[j] != 0) ok = false; /* NaN */
                float l = (float)lo[j], h = (float)hi[j];
                lo_out[c] = l < lo_out[c] ? l : lo_out[c];
                hi_out[c] = h > hi_out[c] ? h : hi_out[c];
            }
        }
    });
    *finite = ok;
    return QG_OK;
}

/* (a plain entry point: the clones' resolver stays local), then qg__sync_minmax */
qg_status qg__channel_minmax(qg_dtype dt, const char *x, const fq_layout *L, float *lo, float *hi, bool *finite) {
    qg_status st = channel_minmax(dt, x, L, lo, hi, finite);
    return st ? st : qg__sync_minmax(L->C, lo, hi, finite);
}

qg_status qg__sync_minmax(int64_t C, float *lo, float *hi, bool *finite) {
    const qg__sync *s = qg__sync_obs;
    qg_status st;
    if (!s) return QG_OK;
    float *v = qg__tape_alloc(sizeof(float) * (size_t)(2 * C + 1)); /* lo, -hi, -1 where not finite: one MIN */
    if (!v) return qg__err(QG_ENOMEM, "observer: out of memory for the ranks' min/max");
    for (int64_t k = 0; k < C; k++) v[k] = lo[k], v[C + k] = -hi[k];
    v[2 * C] = *finite ? 0.0f : -1.0f;
    if ((st = s->min(s->ctx, v, 2 * C + 1))) return st;
    for (int64_t k = 0; k < C; k++) lo[k] = v[k], hi[k] = -v[C + k];
    *finite = v[2 * C] == 0.0f;
    return QG_OK;
}
