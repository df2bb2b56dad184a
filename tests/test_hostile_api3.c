/* API torture test, part 3: qgrad/data.h, and every function that takes a file path
 * (safetensors, IDX, MNIST directories, module checkpoints) given a directory, a
 * missing path and a FIFO; and the nn, qat, optim and data functions given tensors of
 * a reset tape. Rules as in part 1 (test_hostile_api.c). The FIFO cases run in forked
 * children killed by alarm(10), so a read that blocks on a FIFO fails the test with
 * "hangs" instead of hanging it; they run first, before OpenMP starts its threads. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qgrad/data.h"
#include "qgrad/optim.h"
#include "qgrad/qat.h"
#include "test_util.h"
#include "hostile.h"




/* ---------------------------------------------------------------- file paths */

/* each returns true for "an error with a message" (or, for saves, also success) */
static bool st_load(const char *p) {
    qg_tensor_dict *d = qg_safetensors_load(p);
    bool ok = !d && *qg_last_error();
    qg_tensor_dict_free(d);
    return ok;
}
static bool st_save(const char *p) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    qg_tensor_dict_put(d, "w", qg_tensor_ones(QG_F32, 1, SHAPE(2)));
    qg_status st = qg_safetensors_save(p, d);
    qg_tensor_dict_free(d);
    return st == QG_OK || *qg_last_error();
}
static bool idx_load(const char *p) {
    qg_tensor *t = qg_idx_load(p);
    bool ok = !t && *qg_last_error();
    qg_tensor_free(t);
    return ok;
}
static bool mnist_load(const char *p) {
    qg_dataset d = {0};
    qg_status st = qg_dataset_load_mnist(p, true, &d);
    bool ok = st < 0 && *qg_last_error() && !d.images && !d.labels;
    qg_dataset_free(&d);
    return ok;
}
static bool mod_load(const char *p) {
    qg_module *m = qg_nn_linear_new(2, 2, NULL, NULL);
    qg_tensor *w = qg_tensor_clone(qg_module_param(m, "weight"));
    qg_status st = qg_module_load(m, p, true);
    float a[4], b[4];
    qg_tensor_copy_to(w, QG_F32, a), qg_tensor_copy_to(qg_module_param(m, "weight"), QG_F32, b);
    bool ok = st < 0 && *qg_last_error() && !memcmp(a, b, sizeof a); /* and the module unchanged */
    qg_tensor_free(w), qg_module_free(m);
    return ok;
}
static bool mod_save(const char *p) {
    qg_module *m = qg_nn_linear_new(2, 2, NULL, NULL);
    qg_status st = qg_module_save(m, p);
    qg_module_free(m);
    return st == QG_OK || *qg_last_error();
}
static bool mod_save_fails(const char *p) {
    qg_module *m = qg_nn_linear_new(2, 2, NULL, NULL);
    qg_status st = qg_module_save(m, p);
    qg_module_free(m);
    return st < 0 && *qg_last_error();
}
static bool st_save_fails(const char *p) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    qg_status st = qg_safetensors_save(p, d);
    qg_tensor_dict_free(d);
    return st < 0 && *qg_last_error();
}

typedef struct {
    const char *name;
    bool (*fn)(const char *);
} path_fn;

static void test_data_paths(void) {
    char dir[] = "/tmp/qg_hostile_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    char fifo[64], mnist[64], mfifo[2][96], missing[64], nodir[96];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(mnist, sizeof mnist, "%s/mnist", dir);
    snprintf(missing, sizeof missing, "%s/missing.safetensors", dir);
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", dir);
    snprintf(mfifo[0], sizeof mfifo[0], "%s/train-images-idx3-ubyte", mnist);
    snprintf(mfifo[1], sizeof mfifo[1], "%s/train-labels-idx1-ubyte", mnist);
    CHECK(mkfifo(fifo, 0600) == 0 && mkdir(mnist, 0700) == 0 && mkfifo(mfifo[0], 0600) == 0 && mkfifo(mfifo[1], 0600) == 0,
          "mkfifo");
    /* readers given a FIFO (nobody writes it: a blocking open or read never returns) */
    const path_fn readers[] = {{"safetensors_load", st_load}, {"idx_load", idx_load}, {"module_load", mod_load}};
    const char *fifo_paths[] = {fifo, fifo, fifo, mnist};
    path_fn cases[] = {readers[0], readers[1], readers[2], {"dataset_load_mnist", mnist_load}};
    pid_t pids[N_(cases)];
    for (int k = 0; k < N_(cases); k++) {
        fflush(stdout);
        pids[k] = fork();
        if (pids[k] == 0) {
            alarm(10);
            _exit(cases[k].fn(fifo_paths[k]) ? 0 : 1);
        }
    }
    for (int k = 0; k < N_(cases); k++) {
        int ws = 0;
        if (pids[k] > 0) waitpid(pids[k], &ws, 0);
        bool hung = pids[k] > 0 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGALRM;
        CHECK(pids[k] > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%s(%s): %s", cases[k].name, fifo_paths[k],
              hung ? "hangs (blocked on the FIFO for 10 s)"
                   : WIFSIGNALED(ws) ? "crashed" : "no error with a message");
    }
    /* a directory, a missing file, a path in a missing directory, "" */
    const char *bad_paths[] = {"/tmp", dir, missing, nodir, ""};
    for (int k = 0; k < N_(bad_paths); k++) {
        for (int r = 0; r < N_(readers); r++) {
            qg_clear_error();
            CHECK(readers[r].fn(bad_paths[k]), "%s(\"%s\"): %s", readers[r].name, bad_paths[k], qg_last_error());
        }
        qg_clear_error();
        CHECK(mnist_load(bad_paths[k]), "dataset_load_mnist(\"%s\"): %s", bad_paths[k], qg_last_error());
    }
    const char *unwritable[] = {"/tmp", dir, nodir, "", mnist};
    for (int k = 0; k < N_(unwritable); k++) {
        qg_clear_error();
        CHECK(st_save_fails(unwritable[k]), "safetensors_save(\"%s\"): %s", unwritable[k], qg_last_error());
        qg_clear_error();
        CHECK(mod_save_fails(unwritable[k]), "module_save(\"%s\"): %s", unwritable[k], qg_last_error());
    }
    /* a save onto a FIFO replaces it (the write goes to a temporary file) or fails: never blocks */
    const path_fn writers[] = {{"safetensors_save", st_save}, {"module_save", mod_save}};
    for (int k = 0; k < N_(writers); k++) {
        unlink(fifo);
        mkfifo(fifo, 0600);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            _exit(writers[k].fn(fifo) ? 0 : 1);
        }
        int ws = 0;
        if (pid > 0) waitpid(pid, &ws, 0);
        CHECK(pid > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%s onto a FIFO: %s", writers[k].name,
              WIFSIGNALED(ws) && WTERMSIG(ws) == SIGALRM ? "hangs" : "failed without a message");
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup of %s", dir);
}

/* ---------------------------------------------------------------- gradcheck (autograd.h) */

static qg_tensor *gc_square(qg_tensor *const *in, void *ctx) {
    (void)ctx;
    return qg_mul(in[0], in[0]);
}
static qg_tensor *gc_null(qg_tensor *const *in, void *ctx) {
    (void)in, (void)ctx;
    return NULL;
}

static void test_autograd_gradcheck_null(void) {
    qg_tensor *x = qg_tensor_randn(NULL, QG_F64, 1, SHAPE(3)), *f = qg_tensor_randn(NULL, QG_F32, 1, SHAPE(3));
    qg_tensor_set_requires_grad(x, true), qg_tensor_set_requires_grad(f, true);
    qg_tensor *in[] = {x}, *inf[] = {f}, *innull[] = {NULL};
    FAILS_ST(qg_gradcheck(NULL, NULL, 1, in, NULL));
    FAILS_ST(qg_gradcheck(gc_square, NULL, 0, in, NULL));
    FAILS_ST(qg_gradcheck(gc_square, NULL, -1, in, NULL));
    FAILS_ST(qg_gradcheck(gc_square, NULL, 1, NULL, NULL));
    FAILS_ST(qg_gradcheck(gc_square, NULL, 1, innull, NULL));
    FAILS_ST(qg_gradcheck(gc_square, NULL, 1, inf, NULL));
    FAILS_ST(qg_gradcheck(gc_null, NULL, 1, in, NULL));
    FAILS_ST(qg_gradcheck(gc_square, NULL, 1, in, &(qg_gradcheck_opts){.eps = QG_SET(0)}));
    FAILS_ST(qg_gradcheck(gc_square, NULL, 1, in, &(qg_gradcheck_opts){.atol = QG_SET(-1)}));
    FAILS_ST(qg_gradcheck(gc_square, NULL, 1, in, &(qg_gradcheck_opts){.rtol = QG_SET(NAN)}));
    WORKS_ST(qg_gradcheck(gc_square, NULL, 1, in, NULL));
    qg_tensor_free(x), qg_tensor_free(f);
}

/* ---------------------------------------------------------------- datasets, loader */

static void test_data_null(void) {
    qg_dataset d = {0};
    FAILS_ST(qg_dataset_load_mnist(NULL, true, &d));
    FAILS_ST(qg_dataset_load_mnist("/tmp", false, NULL));
    FAILS_P(qg_idx_load(NULL), no_free);
    qg_dataset_free(NULL);
    qg_dataset_free(&d); /* empty: a no-op */
    FAILS_P(qg_loader_new(NULL, NULL), loader_free);
    FAILS_P(qg_loader_new(&d, NULL), loader_free); /* NULL images and labels */
    qg_tensor *im = qg_tensor_zeros(QG_U8, 3, SHAPE(5, 2, 2)), *lb = qg_tensor_zeros(QG_U8, 1, SHAPE(5));
    qg_dataset half = {im, NULL}, ok = {im, lb};
    FAILS_P(qg_loader_new(&half, NULL), loader_free);
    FAILS_P(qg_loader_new(&ok, &(qg_loader_opts){.batch = -1}), loader_free);
    FAILS_P(qg_loader_new(&ok, &(qg_loader_opts){.batch = INT64_MIN}), loader_free);
    FAILS_P(qg_loader_new(&ok, &(qg_loader_opts){.mean = 0.5}), loader_free); /* std 0 with a mean */
    qg_tensor *fim = qg_tensor_zeros(QG_F32, 3, SHAPE(5, 2, 2)), *tape_im = qg_to_dtype(fim, QG_U8); /* an op result */
    qg_dataset on_tape = {tape_im, lb};
    FAILS_P(qg_loader_new(&on_tape, NULL), loader_free); /* it dies at the next reset; the loader would not */
    /* a batch larger than the dataset, up to 2^62: one batch of 5, as PyTorch's DataLoader */
    qg_loader *l = qg_loader_new(&ok, &(qg_loader_opts){.batch = BIG, .shuffle = true, .mean = 0.1, .std = 0.3});
    CHECK(l != NULL, "loader of batch 2^62: %s", qg_last_error());
    qg_tensor *x = NULL, *y = NULL;
    CHECK(qg_loader_batches_per_epoch(l) == 1 && qg_loader_next(l, &x, &y) && x->shape[0] == 5 && y->shape[0] == 5,
          "one batch of 5: %s", qg_last_error());
    qg_clear_error();
    CHECK(!qg_loader_next(l, &x, &y) && !*qg_last_error(), "end of the epoch: false without an error");
    qg_clear_error();
    CHECK(!qg_loader_next(NULL, &x, &y) && *qg_last_error(), "loader_next(NULL)");
    qg_clear_error();
    CHECK(!qg_loader_next(l, NULL, &y) && *qg_last_error(), "loader_next(l, NULL, y)");
    qg_clear_error();
    CHECK(!qg_loader_next(l, &x, NULL) && *qg_last_error(), "loader_next(l, x, NULL)");
    qg_loader_start_epoch(NULL, 0);
    qg_loader_start_epoch(l, -1);
    qg_loader_start_epoch(l, INT64_MAX);
    CHECK(qg_loader_next(l, &x, &y), "next after start_epoch(INT64_MAX): %s", qg_last_error());
    CHECK(qg_loader_batches_per_epoch(NULL) == 0, "batches_per_epoch(NULL)");
    qg_loader_free(l);
    qg_loader_free(NULL);
    /* the dataset freed under a live loader (out of contract): an error, not a crash */
    qg_dataset mine = {qg_tensor_clone(im), qg_tensor_clone(lb)};
    l = qg_loader_new(&mine, &(qg_loader_opts){.batch = 2, .drop_last = true});
    CHECK(l && qg_loader_batches_per_epoch(l) == 2, "drop_last: 2 batches of 2");
    qg_dataset_free(&mine);
    qg_clear_error();
    CHECK(!qg_loader_next(l, &x, &y) && *qg_last_error(), "next after the dataset was freed: %s", qg_last_error());
    qg_loader_free(l);
    /* zero images */
    qg_tensor *im0 = qg_tensor_zeros(QG_U8, 3, SHAPE(0, 28, 28)), *lb0 = qg_tensor_zeros(QG_U8, 1, SHAPE(0));
    qg_dataset empty = {im0, lb0};
    l = qg_loader_new(&empty, NULL);
    CHECK(l && qg_loader_batches_per_epoch(l) == 0, "a loader of no images: %s", qg_last_error());
    qg_clear_error();
    CHECK(l && !qg_loader_next(l, &x, &y) && !*qg_last_error(), "no batch, no error");
    qg_loader_free(l);
    qg_tape_reset(NULL);
    qg_tensor_free(im), qg_tensor_free(lb), qg_tensor_free(im0), qg_tensor_free(lb0), qg_tensor_free(fim);
}

/* ---------------------------------------------------------------- stale tensors beyond autograd.h */

static void test_stale_nn_qat_optim(void) {
    qg_tensor *a = ones(QG_F32, 2, SHAPE(2, 3)), *x4 = ones(QG_F32, 4, SHAPE(2, 3, 4, 4));
    qg_tensor *one1 = ones(QG_F32, 1, SHAPE(1)), *f222 = qg_tensor_zeros(QG_F32, 3, SHAPE(2, 2, 2));
    qg_tensor *s = qg_mul_scalar(a, 1), *s4 = qg_mul_scalar(x4, 1), *s1 = qg_mul_scalar(one1, 1);
    qg_tensor *sc = qg_tensor_full(QG_F32, 1, SHAPE(2), 0.1), *zp = qg_tensor_zeros(QG_I32, 1, SHAPE(2));
    qg_tensor *ssc = qg_mul_scalar(sc, 1), *tgt = qg_tensor_zeros(QG_I64, 1, SHAPE(2)), *stgt = qg_add_scalar(sc, 0);
    qg_tensor *rm = qg_tensor_zeros(QG_F32, 1, SHAPE(3)), *rv = ones(QG_F32, 1, SHAPE(3));
    qg_tensor *s_rm = qg_mul_scalar(rm, 1);
    qg_tensor *u8 = qg_to_dtype(f222, QG_U8), *lb2 = qg_tensor_zeros(QG_U8, 1, SHAPE(2));
    qg_tape_reset(NULL);
    qg_module *lin = qg_nn_linear_new(3, 2, NULL, NULL), *conv = qg_nn_conv2d_new(3, 2, 3, 3, NULL, NULL);
    qg_module *bn = qg_nn_batchnorm2d_new(3, NULL), *relu = qg_nn_relu_new();
    qg_qconfig qc;
    qg_qconfig_preset("fbgemm", &qc);
    qg_module *fq = qg_fake_quant_new(&qc.activation), *obs = qg_observer_new(&qc.activation);
    qg_module *qlin = qg_qat_from_float(qg_nn_linear_new(3, 2, NULL, NULL), &qc);
    qg_module *mods[] = {lin, relu, fq, obs, qlin};
    for (int k = 0; k < N_(mods); k++) STALE(qg_module_forward(mods[k], s));
    STALE(qg_module_forward(conv, s4));
    STALE(qg_module_forward(bn, s4));
    STALE(qg_batch_norm(x4, s_rm, rv, NULL, NULL, true, 0.1, 1e-5));
    STALE(qg_batch_norm(x4, rm, rv, s_rm, NULL, false, 0.1, 1e-5));
    STALE(qg_cross_entropy(qg_linear(a, qg_module_param(lin, "weight"), NULL), stgt, QG_REDUCTION_MEAN));
    STALE(qg_nll_loss(s, tgt, QG_REDUCTION_MEAN));
    STALE(qg_fake_quantize_per_tensor(s, 0.1, 0, 0, 255));
    STALE(qg_fake_quantize_per_channel(a, ssc, zp, 0, -128, 127));
    STALE(qg_fake_quantize_per_channel(s, sc, zp, 0, -128, 127));
    STALE(qg_fake_quantize_learnable_per_tensor(s, sc, sc, 0, 255, 1));
    STALE(qg_fake_quantize_learnable_per_channel(a, ssc, sc, 0, 0, 255, 1));
    qg_tensor *on = qg_tensor_ones(QG_I64, 1, SHAPE(1)), *mn = qg_tensor_full(QG_F32, 0, NULL, INFINITY);
    qg_tensor *mx = qg_tensor_full(QG_F32, 0, NULL, -INFINITY), *fs = ones(QG_F32, 1, SHAPE(1)), *fz = qg_tensor_zeros(QG_I32, 1, SHAPE(1));
    STALE(qg_fused_moving_avg_obs_fake_quant(s, on, on, mn, mx, fs, fz, 0.01, 0, 255, 0, false, false));
    STALE(qg_fused_moving_avg_obs_fake_quant(a, s1, on, mn, mx, fs, fz, 0.01, 0, 255, 0, false, false));
    /* registering a tape tensor is refused (stale or not) */
    qg_tensor_dict *d = qg_tensor_dict_new();
    FAILS_ST(qg_tensor_dict_put(d, "s", s));
    FAILS_ST(qg_module_add_param(relu, "s", s));
    FAILS_ST(qg_module_add_buffer(relu, "s", s));
    FAILS_ST(qg_module_set_param(lin, "weight", s));
    FAILS_ST(qg_module_set_buffer(bn, "running_mean", s_rm));
    char *nm[] = {"s"};
    qg_tensor *ps[] = {s};
    qg_tensor_list l = {1, nm, ps};
    FAILS_P(qg_sgd_new(&l, &(qg_sgd_opts){.lr = 0.1}), sgd_free);
    FAILS_P(qg_adam_new(&l, &(qg_adam_opts){.lr = 0.1}), adam_free);
    FAILS_P(qg_adamw_new(&l, &(qg_adam_opts){.lr = 0.1}), adam_free);
    qg_dataset ds = {u8, lb2};
    FAILS_P(qg_loader_new(&ds, NULL), loader_free);
    qg_tape_reset(NULL);
    qg_tensor_dict_free(d);
    qg_module *all_m[] = {lin, conv, bn, relu, fq, obs, qlin};
    for (int k = 0; k < N_(all_m); k++) qg_module_free(all_m[k]);
    qg_tensor *all[] = {a, x4, sc, zp, tgt, rm, rv, on, mn, mx, fs, fz, one1, f222, lb2};
    for (int k = 0; k < N_(all); k++) qg_tensor_free(all[k]);
}

int main(void) {
    test_data_paths(); /* first: its children fork before OpenMP has threads */
    test_autograd_gradcheck_null();
    test_data_null();
    test_stale_nn_qat_optim();
    qg_shutdown();
    return test_summary("hostile_api3");
}
