/* qg_ddp under `mpirun -np 2` (tests/test_ddp.sh): rank 0's parameters and buffers reach
 * every rank at construction; 2 ranks x batch 32 of SGD with momentum match 1 process
 * x batch 64 on the same global batches (an MLP, within 1e-5 relative per tensor),
 * with the ranks bitwise identical and two runs bitwise identical; buffers come from
 * rank 0 before each forward; models that differ are refused on every rank, naming the
 * tensor; and the loader's shards are disjoint and cover the epoch. */
#include <mpi.h>

#include "../examples/fmnist_model.h"
#include "qat_cnn.h"
#include "qgrad/ddp.h"
#include "qgrad/optim.h"
#include "test_util.h"

static int rank, world;

static qg_module *mlp(uint64_t seed, int64_t hidden) {
    qg_rng g;
    qg_rng_init(&g, seed);
    return qg_sequential_of(3, (qg_named_module[]){{"fc1", qg_nn_linear_new(20, hidden, NULL, &g)},
                                                   {"relu", qg_nn_relu_new()},
                                                   {"fc2", qg_nn_linear_new(hidden, 4, NULL, &g)}});
}

/* an FNV-1a hash of every parameter's and buffer's bytes */
static uint64_t state_hash(const qg_module *m) {
    uint64_t h = 1469598103934665603ULL;
    qg_tensor_list *ls[2] = {qg_module_parameters(m), qg_module_buffers(m)};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ls[k]->n; i++) {
            const qg_tensor *t = ls[k]->tensors[i];
            const unsigned char *p = qg_tensor_data(t);
            for (size_t j = 0; j < (size_t)qg_tensor_numel(t) * qg_dtype_size(t->dtype); j++) h = (h ^ p[j]) * 1099511628211ULL;
        }
    qg_tensor_list_free(ls[0]), qg_tensor_list_free(ls[1]);
    return h;
}

/* whether every rank's state hashes to rank 0's */
static bool ranks_identical(const qg_module *m) {
    uint64_t h = state_hash(m), h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    int same = h == h0, all = 0;
    MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}

static void test_broadcast_at_new(void) {
    qg_module *m = mlp(100 + (uint64_t)rank, 16); /* every rank starts elsewhere */
    CHECK(world == 1 || !ranks_identical(m), "the ranks start apart");
    qg_ddp *d = qg_ddp_new(m, NULL, NULL);
    CHECK(d && qg_ddp_rank(d) == rank && qg_ddp_size(d) == world, "ddp_new: %s", qg_last_error());
    CHECK(ranks_identical(m), "after ddp_new every rank holds rank 0's parameters");
    qg_ddp_free(d), qg_module_free(m);
}

/* steps of SGD on the global batches: with ddp, this rank's shard; without, all of it */
static qg_module *train(bool ddp, int steps) {
    qg_module *m = mlp(7, 16);
    qg_ddp *d = ddp ? qg_ddp_new(m, NULL, &(qg_ddp_opts){.bucket_cap_mb = 0.001, .broadcast_buffers = true}) : NULL;
    qg_tensor_list *ps = qg_module_parameters(m);
    qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.05, .momentum = 0.9});
    CHECK(opt && (!ddp || d), "setup: %s", qg_last_error());
    qg_rng g;
    qg_rng_init(&g, 11);
    const int64_t B = 64, shard = ddp ? B / world : B, at = ddp ? rank * shard : 0;
    for (int s = 0; s < steps; s++) {
        qg_tensor *x = qg_tensor_randn(&g, QG_F32, 2, SHAPE(B, 20));
        int64_t lab[64];
        for (int i = 0; i < B; i++) lab[i] = (int64_t)(qg_rng_next_u64(&g) % 4);
        qg_tensor *y = qg_tensor_from_data(QG_I64, 1, SHAPE(B), lab);
        qg_tensor *xs = qg_narrow(x, 0, at, shard), *ys = qg_narrow(y, 0, at, shard);
        qg_sgd_zero_grad(opt);
        qg_tensor *loss = qg_cross_entropy(ddp ? qg_ddp_forward(d, xs) : qg_module_forward(m, xs), ys, QG_REDUCTION_MEAN);
        qg_status st = ddp ? qg_ddp_backward(d, loss) : qg_backward(loss, NULL);
        if (!st) st = qg_sgd_step(opt);
        CHECK(!st, "step %d: %s", s, qg_last_error());
        qg_tape_reset(NULL);
        qg_tensor_free(x), qg_tensor_free(y);
    }
    qg_sgd_free(opt), qg_tensor_list_free(ps), qg_ddp_free(d);
    return m;
}

static void test_equivalence(void) {
    qg_module *ref = train(false, 20), *a = train(true, 20), *b = train(true, 20);
    qg_tensor_list *pr = qg_module_parameters(ref), *pa = qg_module_parameters(a);
    double worst = 0;
    for (int i = 0; i < pr->n; i++) {
        const float *r = qg_tensor_data(pr->tensors[i]), *v = qg_tensor_data(pa->tensors[i]);
        double num = 0, den = 0;
        for (int64_t j = 0; j < qg_tensor_numel(pr->tensors[i]); j++)
            num += ((double)v[j] - r[j]) * ((double)v[j] - r[j]), den += (double)r[j] * r[j];
        double rel = sqrt(num / (den > 0 ? den : 1));
        worst = rel > worst ? rel : worst;
        CHECK(rel <= 1e-5, "%s: 2 ranks x 32 vs 1 x 64 after 20 steps: relative error %.3g", pr->names[i], rel);
    }
    if (rank == 0)
        printf("ddp: %d ranks x batch %d vs 1 x 64, 20 SGD steps: worst relative error per tensor %.3g\n", world,
               64 / world, worst);
    CHECK(ranks_identical(a), "every rank holds the same parameters after training");
    CHECK(state_hash(a) == state_hash(b), "two runs give the same bits");
    qg_tensor_list_free(pr), qg_tensor_list_free(pa);
    qg_module_free(ref), qg_module_free(a), qg_module_free(b);
}

/* b against a, one state-dict entry: the relative error of a float tensor (2-norm),
 * 0 or infinity for an integer one (zero points, counters: exact) */
static double rel_err(const qg_tensor *a, const qg_tensor *b) {
    const int64_t n = qg_tensor_numel(a);
    if (!b || b->dtype != a->dtype || qg_tensor_numel(b) != n) return INFINITY;
    if (a->dtype != QG_F32)
        return memcmp(qg_tensor_data(a), qg_tensor_data(b), (size_t)n * qg_dtype_size(a->dtype)) ? INFINITY : 0;
    const float *r = qg_tensor_data(a), *v = qg_tensor_data(b);
    double num = 0, den = 0;
    for (int64_t j = 0; j < n; j++) {
        if (isinf(r[j]) && r[j] == v[j]) continue; /* a never-observed min/max */
        num += ((double)v[j] - r[j]) * ((double)v[j] - r[j]), den += (double)r[j] * r[j];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* the worst rel_err over the state dicts of a and b (parameters and buffers), and
 * where; the zero points must match exactly */
static double state_err(const qg_module *a, const qg_module *b, char *where, size_t len) {
    qg_tensor_dict *da = qg_module_state_dict(a), *db = qg_module_state_dict(b);
    double worst = 0;
    snprintf(where, len, "-");
    for (int i = 0; i < qg_tensor_dict_size(da); i++) {
        const char *k = qg_tensor_dict_name(da, i);
        double e = rel_err(qg_tensor_dict_at(da, i), qg_tensor_dict_get(db, k));
        if (e > worst || (e == worst && e > 0)) worst = e, snprintf(where, len, "%s", k);
    }
    qg_tensor_dict_free(da), qg_tensor_dict_free(db);
    return worst;
}

/* the Fashion-MNIST CNN of examples/fmnist, QAT-prepared (fbgemm) */
static qg_module *fmnist_cnn(void) {
    qg_rng g;
    qg_rng_init(&g, 5);
    qg_module *m = fmnist_prepared("cnn", &g);
    CHECK(m != NULL, "fmnist cnn: %s", qg_last_error());
    return m;
}

/* one of the two runs of the CNN: the process's own on the whole batch of 64, or the
 * ranks' with sync_bn and sync_observers, each on its 64 / world; fmnist's SGD recipe
 * (lr 0.05 after its linear warm-up, momentum 0.9, weight decay 1e-4) */
typedef struct {
    qg_module *m;
    qg_ddp *d;
    qg_tensor_list *ps;
    qg_sgd *opt;
    qg_lr_scheduler *warm;
} run;

static void run_init(run *r, bool ddp) {
    qg_ddp_opts o = qg_ddp_default_opts();
    o.sync_bn = o.sync_observers = true, o.bucket_cap_mb = 1;
    r->m = fmnist_cnn();
    r->d = ddp ? qg_ddp_new(r->m, NULL, &o) : NULL;
    r->ps = qg_module_parameters(r->m);
    r->opt = qg_sgd_new(r->ps, &(qg_sgd_opts){.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    r->warm = qg_linear_lr_new(r->opt, 0.01, 1.0, 300);
    CHECK(r->warm && (!ddp || r->d), "setup: %s", qg_last_error());
}

static void run_free(run *r) {
    qg_lr_scheduler_free(r->warm), qg_sgd_free(r->opt), qg_tensor_list_free(r->ps), qg_ddp_free(r->d);
    qg_module_free(r->m);
}

/* one step on the global batch (x, y); the global batch's mean loss */
static double run_step(run *r, qg_tensor *x, qg_tensor *y) {
    const int64_t B = x->shape[0], shard = r->d ? B / world : B, at = r->d ? rank * shard : 0;
    qg_tensor *xs = qg_narrow(x, 0, at, shard), *ys = qg_narrow(y, 0, at, shard);
    qg_sgd_zero_grad(r->opt);
    qg_tensor *loss = qg_cross_entropy(r->d ? qg_ddp_forward(r->d, xs) : qg_module_forward(r->m, xs), ys,
                                       QG_REDUCTION_MEAN);
    double lv = loss ? qg_tensor_item(loss) / (r->d ? world : 1) : NAN, all = lv;
    if (r->d) MPI_Allreduce(&lv, &all, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    qg_status st = r->d ? qg_ddp_backward(r->d, loss) : qg_backward(loss, NULL);
    if (!st) st = qg_sgd_step(r->opt);
    if (!st) st = qg_lr_scheduler_step(r->warm);
    CHECK(!st, "step: %s", qg_last_error());
    qg_tape_reset(NULL);
    return all;
}

/* b's model and optimizer state set to a's */
static void run_copy(run *b, const run *a) {
    qg_tensor_dict *sd = qg_module_state_dict(a->m), *od = qg_tensor_dict_new();
    qg_status st = qg_module_load_state_dict(b->m, sd, true);
    if (!st) st = qg_sgd_state_dict(a->opt, od, "");
    if (!st) st = qg_sgd_load_state_dict(b->opt, od, "");
    CHECK(!st, "copy: %s", qg_last_error());
    qg_tensor_dict_free(sd), qg_tensor_dict_free(od);
}

/* acceptance 1a: with sync_bn and sync_observers, 2 x 32 is 1 x 64. Each of 50 steps
 * starts both runs from the same state (the process's, copied to the ranks: model and
 * optimizer), so that what is compared is one step's arithmetic: the global batch's
 * BN statistics, observer min/max, gradients and update, against the process's, within
 * 1e-5 relative per tensor (its sums run in another order), zero points exact. Then
 * the two run free for 50 steps from one start, and the figures are printed: QAT's
 * fake-quant rounding turns a difference of an ulp into one of a whole step where an
 * activation sits at a rounding boundary, after which the two runs part. */
static void test_sync_equivalence(void) {
    enum { STEPS = 50, B = 64 };
    qg_dataset train = {0};
    qg_loader *ld = NULL;
    if (!qg_dataset_load_mnist("/usr/share/datasets/fashion-mnist", true, &train))
        ld = qg_loader_new(&train, &(qg_loader_opts){.batch = B, .mean = 0.2860, .std = 0.3530});
    if (!ld && rank == 0) printf("note: no Fashion-MNIST; random images\n");
    qg_rng g;
    qg_rng_init(&g, 12);
    for (int lockstep = 1; lockstep >= 0; lockstep--) {
        run ref, dd;
        run_init(&ref, false), run_init(&dd, true);
        if (ld) qg_loader_start_epoch(ld, 0);
        double worst = 0, worst_loss = 0;
        int parted = -1;
        char where[160] = "-", w[128];
        for (int s = 0; s < STEPS; s++) {
            qg_tensor *x = NULL, *y = NULL, *bx, *by;
            if (!ld || !qg_loader_next(ld, &bx, &by)) {
                x = bx = qg_tensor_randn(&g, QG_F32, 4, SHAPE(B, 1, 28, 28));
                int64_t lab[B];
                for (int i = 0; i < B; i++) lab[i] = (int64_t)(qg_rng_next_u64(&g) % 10);
                y = by = qg_tensor_from_data(QG_I64, 1, SHAPE(B), lab);
            }
            if (lockstep && s) run_copy(&dd, &ref);
            const double lr = run_step(&ref, bx, by), la = run_step(&dd, bx, by);
            const double el = fabs(la - lr) / fabs(lr), e = state_err(ref.m, dd.m, w, sizeof w);
            worst_loss = el > worst_loss ? el : worst_loss;
            if (e > worst) worst = e, snprintf(where, sizeof where, "%s at step %d", w, s + 1);
            if (parted < 0 && (e > 1e-5 || el > 1e-5)) parted = s + 1;
            qg_tensor_free(x), qg_tensor_free(y);
        }
        CHECK(ranks_identical(dd.m), "every rank holds the same state");
        if (lockstep) {
            CHECK(worst <= 1e-5, "sync_bn + sync_observers: each of %d QAT steps of the CNN, 2 ranks x 32 vs 1 x 64 from "
                  "one state: '%s' off by %.3g (zero points and counters exact)", STEPS, where, worst);
            CHECK(worst_loss <= 1e-5, "the global losses agree within 1e-5 (%.3g)", worst_loss);
        }
        if (rank == 0)
            printf("ddp sync_bn + sync_observers, %d ranks x %d vs 1 x 64, %d QAT steps of the fmnist CNN, %s: worst "
                   "relative error per tensor %.3g ('%s'), zero points %s, losses within %.3g\n", world, B / world,
                   STEPS, lockstep ? "each step from one state" : "running free", worst, where,
                   worst < INFINITY ? "exact" : "differ", worst_loss);
        if (rank == 0 && !lockstep && parted > 0)
            printf("    the free runs first differ by more than 1e-5 at step %d\n", parted);
        run_free(&ref), run_free(&dd);
    }
    qg_loader_free(ld), qg_dataset_free(&train);
}

/* acceptance 1b: without the sync options, PyTorch's DDP: each rank's BN and observers
 * see its own shard, and rank 0's buffers reach every rank before each forward. The
 * reference runs the ranks' replicas in this process: rank 0's buffers copied to
 * every replica, a forward and backward each, the gradients averaged in MPI's order
 * (each divided by the world size, then summed), one SGD step each. */
static void test_ddp_semantics(void) {
    enum { STEPS = 8, B = 16 };
    if (world > 8 || B % world) { /* the replicas below: up to 8, each a part of 16 */
        CHECK(0, "test_ddp_semantics runs on 1, 2, 4 or 8 ranks, not %d", world);
        return;
    }
    qg_module *rep[8];
    qg_sgd *ro[8];
    qg_tensor_list *rp[8];
    for (int r = 0; r < world; r++) {
        qg_manual_seed(21);
        rep[r] = qat_cnn_float();
        CHECK(!qat_cnn_fuse_prepare(rep[r]), "replica: %s", qg_last_error());
        rp[r] = qg_module_parameters(rep[r]);
        ro[r] = qg_sgd_new(rp[r], &(qg_sgd_opts){.lr = 0.1, .momentum = 0.9});
    }
    qg_manual_seed(21);
    qg_module *m = qat_cnn_float();
    CHECK(!qat_cnn_fuse_prepare(m), "model: %s", qg_last_error());
    qg_ddp *d = qg_ddp_new(m, NULL, NULL);
    qg_tensor_list *ps = qg_module_parameters(m);
    qg_sgd *opt = qg_sgd_new(ps, &(qg_sgd_opts){.lr = 0.1, .momentum = 0.9});
    qg_rng g;
    qg_rng_init(&g, 31);
    const int64_t shard = B / world;
    for (int s = 0; d && s < STEPS; s++) {
        qg_tensor *x = qg_tensor_randn(&g, QG_F32, 4, SHAPE(B, 1, 8, 8));
        int64_t lab[B];
        for (int i = 0; i < B; i++) lab[i] = (int64_t)(qg_rng_next_u64(&g) % 3);
        qg_tensor *y = qg_tensor_from_data(QG_I64, 1, SHAPE(B), lab);
        /* the reference: rank 0's buffers, before any forward, to every replica */
        qg_tensor_list *b0 = qg_module_buffers(rep[0]);
        for (int r = 1; r < world; r++) {
            qg_tensor_list *br = qg_module_buffers(rep[r]);
            for (int i = 0; i < br->n; i++) qg_tensor_copy_(br->tensors[i], b0->tensors[i]);
            qg_tensor_list_free(br);
        }
        qg_tensor_list_free(b0);
        for (int r = 0; r < world; r++) {
            qg_sgd_zero_grad(ro[r]);
            qg_tensor *out = qg_module_forward(rep[r], qg_narrow(x, 0, r * shard, shard));
            CHECK(!qg_backward(qg_cross_entropy(out, qg_narrow(y, 0, r * shard, shard), QG_REDUCTION_MEAN), NULL),
                  "reference %d: %s", r, qg_last_error());
        }
        for (int i = 0; i < rp[0]->n; i++) {
            const int64_t n = qg_tensor_numel(rp[0]->tensors[i]);
            float *sum = calloc((size_t)n, sizeof(float));
            for (int r = 0; r < world; r++) {
                const float *gr = qg_tensor_data(rp[r]->tensors[i]->grad);
                for (int64_t j = 0; j < n; j++) sum[j] += gr[j] * (float)(1.0 / world);
            }
            for (int r = 0; r < world; r++) memcpy(qg_tensor_data(rp[r]->tensors[i]->grad), sum, sizeof(float) * (size_t)n);
            free(sum);
        }
        for (int r = 0; r < world; r++) qg_sgd_step(ro[r]);
        qg_tape_reset(NULL);
        /* the ranks */
        qg_sgd_zero_grad(opt);
        qg_tensor *loss = qg_cross_entropy(qg_ddp_forward(d, qg_narrow(x, 0, rank * shard, shard)),
                                           qg_narrow(y, 0, rank * shard, shard), QG_REDUCTION_MEAN);
        CHECK(!qg_ddp_backward(d, loss) && !qg_sgd_step(opt), "step %d: %s", s, qg_last_error());
        qg_tape_reset(NULL);
        qg_tensor_free(x), qg_tensor_free(y);
    }
    char where[128];
    const double e = state_err(rep[rank], m, where, sizeof where);
    CHECK(e == 0, "without sync options, rank %d after %d steps is the reference's replica %d bit for bit ('%s' off by "
          "%.3g)", rank, STEPS, rank, where, e);
    CHECK(world == 1 || !ranks_identical(m), "the ranks' own BN and observer statistics differ (their last forward)");
    if (rank == 0)
        printf("ddp without sync options: every rank is its replica of the in-process reference bit for bit after %d "
               "QAT steps\n", STEPS);
    for (int r = 0; r < world; r++) qg_sgd_free(ro[r]), qg_tensor_list_free(rp[r]), qg_module_free(rep[r]);
    qg_sgd_free(opt), qg_tensor_list_free(ps), qg_ddp_free(d), qg_module_free(m);
}

/* buckets start inside backward: the first (the last layer's) before backward ends */
static void test_overlap(void) {
    qg_module *m = mlp(7, 64);
    qg_ddp *d = qg_ddp_new(m, NULL, &(qg_ddp_opts){.bucket_cap_mb = 0.001, .broadcast_buffers = true});
    qg_rng g;
    qg_rng_init(&g, 2);
    qg_tensor *x = qg_tensor_randn(&g, QG_F32, 2, SHAPE(8, 20));
    qg_tensor *y = qg_tensor_zeros(QG_I64, 1, SHAPE(8));
    qg_status st = d ? qg_ddp_backward(d, qg_cross_entropy(qg_ddp_forward(d, x), y, QG_REDUCTION_MEAN)) : QG_EINVAL;
    CHECK(!st, "step: %s", qg_last_error());
    qg_ddp_timing t;
    qg_ddp_bucket b0, bl;
    const int nb = qg_ddp_num_buckets(d);
    CHECK(nb > 1 && !qg_ddp_get_timing(d, &t) && !qg_ddp_get_bucket(d, 0, &b0) && !qg_ddp_get_bucket(d, nb - 1, &bl),
          "%d buckets, timings: %s", nb, qg_last_error());
    CHECK(b0.last == 4 && bl.first == 0 && b0.start >= 0 && b0.start < t.backward && b0.end >= b0.start,
          "the first bucket (fc2's, parameters %d to %d) starts inside backward: at %.3g ms of %.3g", b0.first, b0.last,
          1e3 * b0.start, 1e3 * t.backward);
    CHECK(qg_ddp_get_bucket(d, nb, &b0) && strstr(qg_last_error(), "bucket"), "a bucket past the end: %s", qg_last_error());
    qg_tape_reset(NULL);
    qg_tensor_free(x), qg_tensor_free(y), qg_ddp_free(d), qg_module_free(m);
}

static void test_buffers(void) {
    qg_module *m = qg_sequential_of(1, (qg_named_module[]){{"bn", qg_nn_batchnorm1d_new(3, NULL)}});
    qg_ddp *d = qg_ddp_new(m, NULL, NULL);
    qg_module_eval(m);
    float *rm = qg_tensor_data(qg_module_buffer(qg_module_child(m, "bn"), "running_mean"));
    rm[1] = (float)(rank + 5); /* every rank's statistics drift apart */
    CHECK(world == 1 || !ranks_identical(m), "the buffers drifted");
    qg_tensor *x = qg_tensor_zeros(QG_F32, 2, SHAPE(2, 3));
    CHECK(d && qg_ddp_forward(d, x), "forward: %s", qg_last_error());
    CHECK(ranks_identical(m) && rm[1] == 5.0f, "before the forward, rank 0's buffers reach every rank (%g)", rm[1]);
    qg_tape_reset(NULL);
    qg_tensor_free(x), qg_ddp_free(d), qg_module_free(m);
}

static void test_mismatch(void) {
    qg_module *m = mlp(3, rank == world - 1 && world > 1 ? 17 : 16);
    qg_ddp *d = qg_ddp_new(m, NULL, NULL);
    CHECK(world == 1 || (!d && strstr(qg_last_error(), "differ")), "a different model is refused on rank %d: %s", rank,
          qg_last_error());
    if (world > 1 && rank == world - 1)
        CHECK(strstr(qg_last_error(), "'fc1.weight'") != NULL, "the message names the tensor: %s", qg_last_error());
    qg_ddp_free(d), qg_module_free(m);
    CHECK(!qg_ddp_new(m = mlp(3, 16), NULL, &(qg_ddp_opts){.bucket_cap_mb = 0}) && strstr(qg_last_error(), "bucket_cap_mb"),
          "bucket_cap_mb 0 is refused: %s", qg_last_error());
    qg_module_free(m);
}

static void test_shards(void) {
    qg_dataset ds = {.images = qg_tensor_zeros(QG_U8, 3, SHAPE(101, 2, 2)), .labels = qg_tensor_zeros(QG_U8, 1, SHAPE(101))};
    uint8_t *lb = qg_tensor_data(ds.labels);
    for (int i = 0; i < 101; i++) lb[i] = (uint8_t)i;
    qg_loader *l = qg_loader_new(&ds, &(qg_loader_opts){.batch = 8, .shuffle = true, .seed = 5, .num_replicas = world,
                                                         .rank = rank});
    CHECK(l != NULL, "sharded loader: %s", qg_last_error());
    int seen[128] = {0}, n = 0, all[128];
    qg_tensor *x, *y;
    qg_loader_start_epoch(l, 2);
    while (l && qg_loader_next(l, &x, &y))
        for (int64_t i = 0; i < y->shape[0]; i++) seen[((int64_t *)qg_tensor_data(y))[i]]++, n++;
    MPI_Allreduce(seen, all, 128, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int covered = 0, extra = 0;
    for (int i = 0; i < 101; i++) covered += all[i] > 0, extra += all[i] > 1 ? all[i] - 1 : 0;
    const int per = (101 + world - 1) / world;
    CHECK(n == per && covered == 101 && extra == per * world - 101,
          "shard %d: %d samples (want %d), the ranks cover %d of 101 with %d repeated (PyTorch's padding: %d)", rank, n,
          per, covered, extra, per * world - 101);
    CHECK(!qg_loader_new(&ds, &(qg_loader_opts){.num_replicas = 2, .rank = 2}) && strstr(qg_last_error(), "rank"),
          "rank beyond num_replicas is refused: %s", qg_last_error());
    qg_loader_free(l), qg_tensor_free(ds.images), qg_tensor_free(ds.labels);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank), MPI_Comm_size(MPI_COMM_WORLD, &world);
    qg_set_num_threads(1);
    test_broadcast_at_new();
    test_equivalence();
    test_sync_equivalence();
    test_ddp_semantics();
    test_overlap();
    test_buffers();
    test_mismatch();
    test_shards();
    int fails = tst_fail, all = 0, passes = tst_pass, allp = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&passes, &allp, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    qg_shutdown();
    MPI_Finalize();
    if (rank == 0) printf("test_ddp: %d ranks, %d checks passed, %d failed\n", world, allp, all);
    return all ? 1 : 0;
}
