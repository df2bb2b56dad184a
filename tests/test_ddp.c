/* qg_ddp under `mpirun -np 2` (tests/test_ddp.sh): rank 0's parameters and buffers reach
 * every rank at construction; 2 ranks x batch 32 of SGD with momentum match 1 process
 * x batch 64 on the same global batches (an MLP, within 1e-5 relative per tensor),
 * with the ranks bitwise identical and two runs bitwise identical; buffers come from
 * rank 0 before each forward; models that differ are refused on every rank, naming the
 * tensor; and the loader's shards are disjoint and cover the epoch. */
#include <mpi.h>

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
