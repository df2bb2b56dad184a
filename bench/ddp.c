/* The data-parallel step of examples/fmnist's QAT CNN (fbgemm qconfig, SGD lr 0.05,
 * momentum 0.9, weight decay 1e-4) at a global batch of 64, under mpirun.
 *
 * First rank 0 alone times the one-process step at the ranks' total thread count (the
 * reference; the other ranks wait without spinning). Then every rank runs the DDP step
 * on its shard at --threads threads: the step, the local backward, the wait after it
 * until every bucket's all-reduce is done (the communication backward did not hide),
 * and each bucket's all-reduce interval. Medians of --steps steps after 3 warm-up ones.
 * Then a model of the step at 8 to 512 ranks on a 10 Gbit/s network: a ring
 * all-reduce moves 2 (R - 1) / R of the gradient bytes per rank, plus a latency per
 * message; weak scaling keeps 32 images per rank, strong scaling 64 in all; and the
 * rank counts from which communication would take longer than the compute.
 *
 * usage: mpirun -np 2 --bind-to none bench/ddp [--steps N] [--threads T] [--bucket-mb X]
 * (--bind-to none: Open MPI binds each rank to one core by default, and the reference
 * needs them all; random images: the step's speed does not depend on them) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../examples/fmnist_model.h"
#include "internal.h"
#include "qgrad/ddp.h"
#include "qgrad/optim.h"

#define WARMUP 3
#define MAXB 64

static int rank, world;

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n ? v[n / 2] : 0;
}

static qg_module *cnn(void) {
    qg_rng g;
    qg_rng_init(&g, 5);
    qg_module *m = fmnist_prepared("cnn", &g);
    if (!m) fprintf(stderr, "bench/ddp: %s\n", qg_last_error()), MPI_Abort(MPI_COMM_WORLD, 1);
    return m;
}

typedef struct {
    double step, backward, wait;
    double last_backward, last_wait; /* the last step's, which the buckets' times are of */
    int nb;
    qg_ddp_bucket b[MAXB];
    int64_t grad_bytes;
} timing;

/* steps of the CNN on batches of `batch`; with ddp, this rank's wrapper */
static void run(int steps, int64_t batch, bool ddp, double bucket_mb, timing *out) {
    qg_module *m = cnn();
    qg_ddp_opts o = qg_ddp_default_opts();
    o.bucket_cap_mb = bucket_mb;
    qg_ddp *d = ddp ? qg_ddp_new(m, NULL, &o) : NULL;
    qg_tensor_list *ps = qg_module_parameters(m);
    qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    if (!opt || (ddp && !d)) fprintf(stderr, "bench/ddp: %s\n", qg_last_error()), MPI_Abort(MPI_COMM_WORLD, 1);
    qg_rng g;
    qg_rng_init(&g, 3 + (uint64_t)rank);
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, (int64_t[]){batch, 1, 28, 28});
    qg_tensor *y = qg_tensor_zeros(QG_I64, 1, &batch);
    double *ts = calloc((size_t)steps, sizeof(double) * 3), *tb = ts + steps, *tw = tb + steps;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < ps->n; i++) out->grad_bytes += qg_tensor_numel(ps->tensors[i]) * 4;
    for (int s = 0; s < WARMUP + steps; s++) {
        const double t0 = qg__now();
        qg_sgd_zero_grad(opt);
        qg_tensor *loss = qg_cross_entropy(d ? qg_ddp_forward(d, x) : qg_module_forward(m, x), y, QG_REDUCTION_MEAN);
        const double t1 = qg__now();
        qg_status st = d ? qg_ddp_backward(d, loss) : qg_backward(loss, NULL);
        const double t2 = qg__now();
        if (!st) st = qg_sgd_step(opt);
        qg_tape_reset(NULL);
        if (st) fprintf(stderr, "bench/ddp: %s\n", qg_last_error()), MPI_Abort(MPI_COMM_WORLD, 1);
        if (s < WARMUP) continue;
        qg_ddp_timing t = {.backward = t2 - t1};
        if (d) qg_ddp_get_timing(d, &t);
        ts[s - WARMUP] = qg__now() - t0, tb[s - WARMUP] = t.backward, tw[s - WARMUP] = t.wait;
        out->last_backward = t.backward, out->last_wait = t.wait;
    }
    out->step = median(ts, steps), out->backward = median(tb, steps), out->wait = median(tw, steps);
    out->nb = d ? qg_ddp_num_buckets(d) : 0;
    for (int k = 0; k < out->nb && k < MAXB; k++) qg_ddp_get_bucket(d, k, &out->b[k]); /* the last step's */
    free(ts);
    qg_tensor_free(x), qg_tensor_free(y);
    qg_sgd_free(opt), qg_tensor_list_free(ps), qg_ddp_free(d), qg_module_free(m);
}

/* the other ranks wait for rank 0 without spinning on a core it needs */
static void quiet_barrier(void) {
    MPI_Request r;
    int done = 0;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    while (MPI_Test(&r, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank), MPI_Comm_size(MPI_COMM_WORLD, &world);
    int steps = 20, threads = 1;
    double bucket_mb = 25;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--bucket-mb")) bucket_mb = atof(argv[i + 1]);
    }
    if (steps < 1 || threads < 1 || !(bucket_mb > 0) || 64 % world) {
        if (!rank) fprintf(stderr, "usage: mpirun -np R bench/ddp [--steps N] [--threads T] [--bucket-mb X] (R divides 64)\n");
        MPI_Finalize();
        return 2;
    }
    timing ref = {0}, dd;
    if (rank == 0) {
        qg_set_num_threads(threads * world);
        run(steps, 64, false, bucket_mb, &ref);
    }
    quiet_barrier();
    qg_set_num_threads(threads);
    run(steps, 64 / world, true, bucket_mb, &dd);
    double worst_step = dd.step, worst_wait = dd.wait;
    MPI_Allreduce(&dd.step, &worst_step, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&dd.wait, &worst_wait, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("bench/ddp: fmnist QAT CNN, global batch 64, %d steps (medians), gradients %.2f MB in %d bucket%s of "
               "<= %g MB\n", steps, (double)dd.grad_bytes / 1e6, dd.nb, dd.nb == 1 ? "" : "s", bucket_mb);
        printf("%-26s %10s %10s %10s\n", "", "step ms", "backward", "wait");
        char l1[64], l2[64];
        snprintf(l1, sizeof l1, "1 rank x %d thread%s (ref)", threads * world, threads * world == 1 ? "" : "s");
        snprintf(l2, sizeof l2, "%d ranks x %d thread%s", world, threads, threads == 1 ? "" : "s");
        printf("  %-24s %10.2f %10.2f %10s\n", l1, 1e3 * ref.step, 1e3 * ref.backward, "-");
        printf("  %-24s %10.2f %10.2f %10.2f   (slowest rank: step %.2f, wait %.2f)\n", l2, 1e3 * dd.step,
               1e3 * dd.backward, 1e3 * dd.wait, 1e3 * worst_step, 1e3 * worst_wait);
        printf("  the last step's buckets (ms from its backward's start; its backward ends at %.2f, its wait %.2f):\n",
               1e3 * dd.last_backward, 1e3 * dd.last_wait);
        double busy = 0, after = 0, reach = -1; /* the union of the all-reduce intervals, and its part after backward */
        for (int k = 0; k < dd.nb && k < MAXB; k++) {
            const qg_ddp_bucket *b = &dd.b[k];
            printf("    bucket %d: parameters %d-%d, %.2f MB, all-reduce %.2f .. %.2f\n", k, b->first, b->last - 1,
                   (double)b->bytes / 1e6, 1e3 * b->start, 1e3 * b->end);
            const double lo = b->start > reach ? b->start : reach, hi = b->end; /* buckets start in order */
            if (hi > lo) {
                busy += hi - lo;
                const double alo = lo > dd.last_backward ? lo : dd.last_backward;
                after += hi > alo ? hi - alo : 0;
                reach = hi;
            }
        }
        printf("  its all-reduce busy %.2f ms, of which %.2f ms after backward (%.0f%% hidden under backward)\n", 1e3 * busy,
               1e3 * after, busy > 0 ? 100 * (1 - after / busy) : 0);
        /* the model: compute per rank from the measured step less its wait, linear in the batch */
        const double bw = 10e9 / 8, alpha = 25e-6, compute32 = (dd.step - dd.wait) * 32.0 / (64.0 / world);
        printf("model, 10 Gbit/s ring all-reduce (2 (R-1)/R x %.2f MB / 1.25 GB/s + 2 (R-1) x %d x 25 us), compute "
               "%.2f ms per 32 images (measured, linear in the batch), no overlap:\n",
               (double)dd.grad_bytes / 1e6, dd.nb, 1e3 * compute32);
        printf("  %6s %28s %28s\n", "ranks", "weak (32/rank): comm, step", "strong (64 in all): comm, step");
        const int rs[4] = {2, 8, 64, 512};
        int weak_from = 0, strong_from = 0;
        for (int R = 2; R <= 1 << 20 && (!weak_from || !strong_from); R++) {
            const double comm = 2.0 * (R - 1) / R * (double)dd.grad_bytes / bw + 2.0 * (R - 1) * dd.nb * alpha;
            if (!weak_from && comm > compute32) weak_from = R;
            if (!strong_from && comm > compute32 * (64.0 / R) / 32.0) strong_from = R;
        }
        for (int i = 0; i < 4; i++) {
            const int R = rs[i];
            const double comm = 2.0 * (R - 1) / R * (double)dd.grad_bytes / bw + 2.0 * (R - 1) * dd.nb * alpha;
            const double strong = compute32 * (64.0 / R) / 32.0;
            printf("  %6d %15.2f ms %8.2f ms %15.2f ms %8.2f ms%s\n", R, 1e3 * comm, 1e3 * (compute32 + comm),
                   1e3 * comm, 1e3 * (strong + comm), comm > strong ? "  (strong: communication dominates)" : "");
        }
        printf("  communication would take longer than the compute from %d ranks at 32 images per rank, and from %d "
               "ranks (%.1f images each) at 64 in all\n", weak_from, strong_from, 64.0 / strong_from);
    }
    qg_shutdown();
    MPI_Finalize();
    return 0;
}
