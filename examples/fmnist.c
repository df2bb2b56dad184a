/* fmnist: quantization-aware training on Fashion-MNIST (or any MNIST-style IDX set).
 *
 * Builds the float model with PyTorch's state-dict names, fuses it, prepares it for
 * QAT with a qconfig (fbgemm by default), trains with cross-entropy and SGD, and
 * reports the fake-quant model's test accuracy after every epoch; --convert then makes
 * the int8 model (qg_convert), reports its accuracy beside the fake-quant model's and
 * saves it, and --int8 FILE --eval-only evaluates a saved int8 model. --export-c DIR
 * and --export-onnx FILE write the int8 model as standalone C (examples/run_c_model.c
 * runs it) and as ONNX. `fmnist --help`
 * lists the flags. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "qgrad.h"
#ifdef QG_HAVE_MPI
#include <mpi.h>
#endif

typedef struct {
    const char *model, *data, *qconfig, *load, *save, *log, *schedule, *convert, *int8, *export_c, *export_onnx;
    qg_qengine qengine;
    int epochs, threads, freeze_bn_after, freeze_observer_after;
    int64_t batch, steps, warmup, nan_at; /* nan_at: --inject-nan, 0 = none */
    double lr, momentum, weight_decay;
    bool nesterov, use_float, shuffle, eval_only, ddp, sync_bn, sync_observers;
    uint64_t seed;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: fmnist [options]\n"
            "  --model mlp|cnn           model (default cnn)\n"
            "  --epochs N                epochs (default 5)\n"
            "  --batch N                 batch size (default 64)\n"
            "  --lr X                    peak learning rate (default 0.05)\n"
            "  --schedule cosine|constant  lr schedule per step, cosine after a linear warm-up (default cosine)\n"
            "  --warmup N                warm-up steps for the cosine schedule (default 300)\n"
            "  --momentum X              SGD momentum (default 0.9)\n"
            "  --weight-decay X          SGD weight decay (default 1e-4)\n"
            "  --nesterov                Nesterov momentum\n"
            "  --seed N                  seed of initialisation, shuffling and dropout (default 1)\n"
            "  --threads N               threads (default: all cores)\n"
            "  --data DIR                IDX files with the four standard names, gzipped or not\n"
            "                            (default /usr/share/datasets/fashion-mnist)\n"
            "  --float                   train the float model (no QAT)\n"
            "  --qconfig NAME            fbgemm, x86, qnnpack, default, dynamic (default fbgemm)\n"
            "  --freeze-bn-after E       freeze BN statistics after epoch E (default 4; 0 = never)\n"
            "  --freeze-observer-after E freeze observers (scale, zero point) after epoch E (default 4; 0 = never)\n"
            "  --load FILE               load a state dict (safetensors): a float model's before QAT\n"
            "                            preparation, or a prepared QAT model's after it\n"
            "  --save FILE               save the trained model's state dict (PyTorch names)\n"
            "  --steps N                 stop after N optimizer steps\n"
            "  --no-shuffle              batches in file order\n"
            "  --log FILE                CSV step,epoch,loss,lr: one row per step, the batch loss before the step\n"
            "  --convert FILE            after training, convert to int8, report its test accuracy and save it\n"
            "  --int8 FILE               the int8 model saved by --convert (with --eval-only)\n"
            "  --export-c DIR            the int8 model (of --convert or --int8) as standalone C: DIR/fmnist_int8.h\n"
            "                            and DIR/fmnist_int8.c (examples/run_c_model.c runs them)\n"
            "  --export-onnx FILE        the int8 model (of --convert or --int8) as ONNX (QDQ, opset 13)\n"
            "  --qengine onednn|qnnpack  the int8 arithmetic (default onednn)\n"
            "  --ddp                     data-parallel over MPI (mpirun -np R fmnist --ddp ...): --batch is the\n"
            "                            global batch, each rank trains on its 1/R; rank 0 prints, saves, converts\n"
            "  --sync-bn                 with --ddp: BN statistics of the global batch (SyncBatchNorm)\n"
            "  --sync-observers          with --ddp: observers' min/max of the global batch\n"
            "  --eval-only               only evaluate (with --load or --int8)\n"
            "  --inject-nan STEP         for fault tests: this process's loss is NaN at step STEP (with --ddp\n"
            "                            on one rank: mpirun -np 1 fmnist ... : -np 1 fmnist ... --inject-nan 3)\n"
            "  --help                    this text\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

/* 0 on success, 1 for --help, -1 on a bad flag (usage printed) */
static int parse(int argc, char **argv, options *o) {
    *o = (options){.model = "cnn", .data = "/usr/share/datasets/fashion-mnist", .qconfig = "fbgemm", .schedule = "cosine",
                   .epochs = 5, .batch = 64, .lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4, .seed = 1,
                   .shuffle = true, .freeze_bn_after = 4, .freeze_observer_after = 4, .warmup = 300, .steps = -1};
    static const struct option longs[] = {
        {"model", 1, 0, 'm'}, {"epochs", 1, 0, 'e'}, {"batch", 1, 0, 'b'}, {"lr", 1, 0, 'l'},
        {"momentum", 1, 0, 'M'}, {"weight-decay", 1, 0, 'w'}, {"nesterov", 0, 0, 'n'}, {"seed", 1, 0, 's'},
        {"threads", 1, 0, 't'}, {"data", 1, 0, 'd'}, {"float", 0, 0, 'f'}, {"qconfig", 1, 0, 'q'},
        {"freeze-bn-after", 1, 0, 'B'}, {"freeze-observer-after", 1, 0, 'O'}, {"load", 1, 0, 'L'},
        {"save", 1, 0, 'S'}, {"steps", 1, 0, 'N'}, {"no-shuffle", 0, 0, 'u'}, {"log", 1, 0, 'g'},
        {"eval-only", 0, 0, 'E'}, {"schedule", 1, 0, 'c'}, {"warmup", 1, 0, 'W'}, {"help", 0, 0, 'h'},
        {"inject-nan", 1, 0, 'J'}, {"sync-bn", 0, 0, 'Z'}, {"sync-observers", 0, 0, 'z'},
        {"convert", 1, 0, 'C'}, {"int8", 1, 0, 'I'}, {"qengine", 1, 0, 'Q'},
        {"export-c", 1, 0, 'X'}, {"export-onnx", 1, 0, 'Y'}, {"ddp", 0, 0, 'D'},
        {0, 0, 0, 0}};
    int c, li = -1;
    double v;
    opterr = 0;
    while ((li = -1, c = getopt_long(argc, argv, "", longs, &li)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': o->model = optarg, ok = !strcmp(optarg, "mlp") || !strcmp(optarg, "cnn"); break;
        case 'e': ok = parse_num(optarg, 1, 1e6, &v), o->epochs = (int)v; break;
        case 'b': ok = parse_num(optarg, 1, 1e6, &v), o->batch = (int64_t)v; break;
        case 'l': ok = parse_num(optarg, 0, 1e3, &o->lr); break;
        case 'M': ok = parse_num(optarg, 0, 1, &o->momentum); break;
        case 'w': ok = parse_num(optarg, 0, 1, &o->weight_decay); break;
        case 'n': o->nesterov = true; break;
        case 's': ok = parse_num(optarg, 0, 1e18, &v), o->seed = (uint64_t)v; break;
        case 't': ok = parse_num(optarg, 1, 1024, &v), o->threads = (int)v; break;
        case 'd': o->data = optarg; break;
        case 'f': o->use_float = true; break;
        case 'q': o->qconfig = optarg; break;
        case 'B': ok = parse_num(optarg, 0, 1e6, &v), o->freeze_bn_after = (int)v; break;
        case 'O': ok = parse_num(optarg, 0, 1e6, &v), o->freeze_observer_after = (int)v; break;
        case 'L': o->load = optarg; break;
        case 'S': o->save = optarg; break;
        case 'N': ok = parse_num(optarg, 0, 1e12, &v), o->steps = (int64_t)v; break;
        case 'u': o->shuffle = false; break;
        case 'g': o->log = optarg; break;
        case 'E': o->eval_only = true; break;
        case 'Z': o->sync_bn = true; break;
        case 'z': o->sync_observers = true; break;
        case 'J': ok = parse_num(optarg, 1, 1e15, &v), o->nan_at = (int64_t)v; break;
        case 'c': o->schedule = optarg, ok = !strcmp(optarg, "cosine") || !strcmp(optarg, "constant"); break;
        case 'W': ok = parse_num(optarg, 0, 1e9, &v), o->warmup = (int64_t)v; break;
        case 'C': o->convert = optarg; break;
        case 'I': o->int8 = optarg; break;
        case 'X': o->export_c = optarg; break;
        case 'Y': o->export_onnx = optarg; break;
        case 'D': o->ddp = true; break;
        case 'Q':
            ok = !strcmp(optarg, "onednn") || !strcmp(optarg, "qnnpack");
            o->qengine = strcmp(optarg, "qnnpack") ? QG_QENGINE_ONEDNN : QG_QENGINE_QNNPACK;
            break;
        case 'h': usage(stdout); return 1;
        default: ok = false;
        }
        if (!ok) {
            if (c == '?') fprintf(stderr, "fmnist: unknown or incomplete option '%s'\n", argv[optind - 1]);
            else fprintf(stderr, "fmnist: bad value '%s' for --%s\n", optarg ? optarg : "", li >= 0 ? longs[li].name : "?");
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fmnist: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    qg_qconfig qc;
    if (qg_qconfig_preset(o->qconfig, &qc)) {
        fprintf(stderr, "fmnist: %s\n", qg_last_error());
        usage(stderr);
        return -1;
    }
    const char *bad = o->eval_only && !o->load && !o->int8 ? "--eval-only needs --load FILE or --int8 FILE"
                      : o->int8 && (!o->eval_only || o->load)  ? "--int8 FILE goes with --eval-only (and not --load)"
                      : o->convert && (o->use_float || o->eval_only) ? "--convert needs QAT training (no --float, --eval-only)"
                      : (o->export_c || o->export_onnx) && !o->convert && !o->int8
                          ? "--export-c and --export-onnx need an int8 model: --convert FILE or --int8 FILE"
                                                                  : NULL;
    if (bad) {
        fprintf(stderr, "fmnist: %s\n", bad);
        usage(stderr);
        return -1;
    }
    return 0;
}

#include "fmnist_model.h" /* build_model, fuse_model */


/* Does a checkpoint come from a prepared QAT model (it has fake-quant state)? */
static int is_qat_checkpoint(const char *path) {
    qg_tensor_dict *d = qg_safetensors_load(path);
    if (!d) return -1;
    int qat = 0;
    for (int i = 0; i < qg_tensor_dict_size(d) && !qat; i++)
        qat = strstr(qg_tensor_dict_name(d, i), "activation_post_process") != NULL;
    qg_tensor_dict_free(d);
    return qat;
}

/* ------------------------------------------------------------- train / eval */

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

/* test loss and accuracy; observers are paused so the test set does not move the
 * quantization parameters */
static qg_status evaluate(qg_module *m, qg_loader *test, bool observers_after, double *loss, double *acc,
                          int64_t *preds) {
    bool was_training = m->training;
    qg_module_eval(m);
    qg_enable_observer(m, false);
    bool prev = qg_set_grad_enabled(false);
    double total = 0;
    int64_t correct = 0, n = 0;
    qg_tensor *x, *y;
    qg_status st = QG_OK;
    qg_loader_start_epoch(test, 0);
    while (qg_loader_next(test, &x, &y)) {
        qg_tensor *logits = qg_module_forward(m, x);
        qg_tensor *l = qg_cross_entropy(logits, y, QG_REDUCTION_SUM);
        qg_tensor *pred = qg_argmax(logits, 1, false);
        if (!l || !pred) {
            st = qg_last_status();
            break;
        }
        total += qg_tensor_item(l);
        const int64_t *p = qg_tensor_data(pred), *t = qg_tensor_data(y);
        for (int64_t i = 0; i < y->shape[0]; i++) correct += p[i] == t[i];
        if (preds) memcpy(preds + n, p, sizeof(int64_t) * (size_t)y->shape[0]);
        n += y->shape[0];
        qg_tape_reset(NULL);
    }
    qg_set_grad_enabled(prev);
    qg_enable_observer(m, observers_after);
    qg_module_train(m, was_training);
    *loss = n ? total / (double)n : NAN;
    *acc = n ? (double)correct / (double)n : NAN;
    return st;
}

static void progress(bool tty, int epoch, int epochs, int64_t step, int64_t steps, double loss, double ips, double eta) {
    if (tty) {
        int width = 24, done = steps ? (int)(width * step / steps) : width;
        printf("\repoch %d/%d [%.*s%*s] %lld/%lld loss %.4f %6.0f img/s ETA %3.0fs ", epoch, epochs, done,
               "========================", width - done, "", (long long)step, (long long)steps, loss, ips, eta);
        fflush(stdout);
    } else {
        printf("epoch %d step %lld/%lld loss %.4f %.0f img/s\n", epoch, (long long)step, (long long)steps, loss, ips);
    }
}

/* --ddp: the lowest rank where ok is false, or -1 when it holds everywhere (a
 * collective: every rank learns of a failure on any rank); without --ddp, this one's */
static int ddp_failed(bool ddp, int rank, int world, bool ok) {
#ifdef QG_HAVE_MPI
    if (ddp && world > 1) {
        int mine = ok ? world : rank, first = world;
        if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS) return rank;
        return first < world ? first : -1;
    }
#endif
    (void)ddp, (void)world;
    return ok ? -1 : rank;
}

/* Everything one run holds; run_free releases whatever was made, on every path. */
typedef struct run {
    options o;
    qg_dataset train, test;
    qg_module *model;
    qg_loader *loader, *test_loader;
    qg_tensor_list *params;
    qg_sgd *opt;
    qg_lr_scheduler *sched;
    FILE *log;
    int64_t per_epoch, total;
    qg_ddp *ddp;      /* --ddp */
    int rank, world;  /* 0 and 1 without --ddp */
    bool all_failed;  /* --ddp: every rank stopped at the same check (else MPI_Abort stops them) */
} run;

static void run_free(run *r) {
    qg_ddp_free(r->ddp);
    if (r->log) fclose(r->log);
    qg_lr_scheduler_free(r->sched); /* schedulers first: they point at the optimizer */
    qg_sgd_free(r->opt);
    qg_tensor_list_free(r->params);
    qg_loader_free(r->loader), qg_loader_free(r->test_loader);
    qg_module_free(r->model);
    qg_dataset_free(&r->train), qg_dataset_free(&r->test);
    qg_shutdown();
}

/* Data, the model (loaded, fused and prepared as the flags say) and the test loader;
 * for training also the loader, optimizer, schedule and log. Prints its error. */
static int setup(run *r) {
    const options *o = &r->o;
    if ((!o->eval_only && qg_dataset_load_mnist(o->data, true, &r->train)) || qg_dataset_load_mnist(o->data, false, &r->test)) {
        fprintf(stderr, "fmnist: %s%s\n", qg_last_error(),
                qg_last_status() == QG_EIO ? " (install Debian's dataset-fashion-mnist, or pass --data DIR)" : "");
        return 1;
    }
    qg_rng init;
    qg_rng_init(&init, o->seed);
    qg_set_qengine(o->qengine); /* the int8 pools follow it, as PyTorch's */
    if (o->int8) {
        r->model = qg_quantized_load(o->int8);
        r->test_loader = r->model ? qg_loader_new(&r->test, &(qg_loader_opts){.batch = 200, .mean = 0.2860, .std = 0.3530}) : NULL;
        if (!r->test_loader) fprintf(stderr, "fmnist: %s\n", qg_last_error());
        return r->test_loader ? 0 : 1;
    }
    r->model = build_model(o->model, &init);
    int ckpt_qat = o->load ? is_qat_checkpoint(o->load) : 0;
    if (o->load && ckpt_qat > 0 && o->use_float) {
        fprintf(stderr, "fmnist: %s is a QAT checkpoint; it cannot be loaded into the float model (drop --float)\n", o->load);
        return 1;
    }
    qg_qconfig qc;
    qg_qconfig_preset(o->qconfig, &qc);
    qg_status st = qg_sequential_status(r->model);
    if (!st && o->load && ckpt_qat < 0) st = qg_last_status();
    if (!st && o->load && !ckpt_qat) st = qg_module_load(r->model, o->load, true);
    if (!st && !o->use_float) st = fuse_model(r->model, o->model);
    if (!st && !o->use_float) st = qg_prepare_qat(r->model, &qc);
    if (!st && o->load && ckpt_qat) st = qg_module_load(r->model, o->load, true);
    r->test_loader = st ? NULL : qg_loader_new(&r->test, &(qg_loader_opts){.batch = 200, .mean = 0.2860, .std = 0.3530});
    if (st || !r->test_loader) {
        fprintf(stderr, "fmnist: %s\n", qg_last_error());
        return 1;
    }
    if (o->eval_only) return 0;

    r->loader = qg_loader_new(&r->train, &(qg_loader_opts){.batch = o->batch / r->world, .shuffle = o->shuffle,
                                                            .seed = o->seed, .drop_last = true, .mean = 0.2860,
                                                            .std = 0.3530, .num_replicas = r->world, .rank = r->rank});

    r->params = qg_module_parameters(r->model);
    r->opt = r->loader && r->params ? qg_sgd_new(r->params, &(qg_sgd_opts){.lr = o->lr, .momentum = o->momentum,
                                                                             .weight_decay = o->weight_decay,
                                                                             .nesterov = o->nesterov})
                                    : NULL;
    if (!r->opt) {
        fprintf(stderr, "fmnist: %s\n", qg_last_error());
        return 1;
    }
    r->per_epoch = qg_loader_batches_per_epoch(r->loader), r->total = r->per_epoch * o->epochs;
    if (o->steps >= 0 && o->steps < r->total) r->total = o->steps;
    if (!strcmp(o->schedule, "cosine") && r->total > 1) {
        int64_t w = o->warmup < r->total ? o->warmup : 0;
        qg_lr_scheduler *cos = qg_cosine_annealing_lr_new(r->opt, r->total - w, 0);
        qg_lr_scheduler *warm = w > 0 ? qg_linear_lr_new(r->opt, 0.01, 1.0, w) : NULL;
        r->sched = w > 0 ? qg_sequential_lr_new(r->opt, 2, (qg_lr_scheduler *[]){warm, cos}, &w) : cos;
        if (!r->sched) {
            fprintf(stderr, "fmnist: %s\n", qg_last_error());
            return 1;
        }
    }
    if (o->log && !(r->log = fopen(o->log, "w"))) {
        fprintf(stderr, "fmnist: %s: %s\n", o->log, strerror(errno));
        return 1;
    }
    if (r->log) fprintf(r->log, "step,epoch,loss,lr\n");
    return 0;
}

/* --export-c, --export-onnx: the int8 model as DIR/fmnist_int8.h and .c, and as ONNX
 * (qgrad/deploy.h) */
static int export_int8(run *r) {
    const qg_export_opts eo = {.ndim = 3, .shape = {1, 28, 28}};
    qg_export_info info;
    if (r->o.export_c && qg_export_c(r->model, r->o.export_c, "fmnist_int8", &eo, &info)) {
        fprintf(stderr, "fmnist: --export-c: %s\n", qg_last_error());
        return 1;
    }
    if (r->o.export_c)
        printf("exported %s/fmnist_int8.h and .c: %zu bytes of constants (%zu of int8 weights), %zu bytes of "
               "scratch, %d steps\n", r->o.export_c, info.const_bytes, info.weight_bytes, info.scratch_bytes,
               info.nsteps);
    if (r->o.export_onnx && qg_export_onnx(r->model, r->o.export_onnx, &eo)) {
        fprintf(stderr, "fmnist: --export-onnx: %s\n", qg_last_error());
        return 1;
    }
    if (r->o.export_onnx) printf("exported %s: ONNX, QDQ, opset 13, input 'input' (batch, 1, 28, 28)\n", r->o.export_onnx);
    return 0;
}

/* --convert: the int8 model's accuracy beside the fake-quant model's, and the images
 * whose prediction changed (fake-quant computes in float, int8 in integers), then the
 * file. */
static int convert_int8(run *r) {
    const int64_t n = r->test.images->shape[0];
    int64_t *pf = malloc(sizeof(int64_t) * (size_t)(n ? n : 1)), *pi = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    double lf, af, li, ai, t0 = 0;
    qg_status st = pf && pi ? evaluate(r->model, r->test_loader, false, &lf, &af, pf) : QG_ENOMEM;
    if (!st) {
        t0 = now();
        qg_module_eval(r->model);
        st = qg_convert(r->model, &(qg_convert_opts){.engine = r->o.qengine});
    }
    double t_conv = now() - t0;
    if (!st) st = evaluate(r->model, r->test_loader, false, &li, &ai, pi);
    if (!st) st = qg_quantized_save(r->model, r->o.convert);
    if (st) {
        fprintf(stderr, "fmnist: --convert: %s\n", st == QG_ENOMEM && !*qg_last_error() ? "out of memory" : qg_last_error());
    } else {
        int64_t differ = 0;
        for (int64_t i = 0; i < n; i++) differ += pf[i] != pi[i];
        printf("int8 (%s): test loss %.4f, test accuracy %.2f%%; fake-quant: %.4f, %.2f%%; predictions differ on %lld "
               "of %lld images; converted in %.2fs, saved %s\n", qg_qengine_name(r->o.qengine), li, 100 * ai, lf, 100 * af,
               (long long)differ, (long long)n, t_conv, r->o.convert);
        printf("int8_acc=%.2f%% fakequant_acc=%.2f%% differ=%lld\n", 100 * ai, 100 * af, (long long)differ);
    }
    free(pf), free(pi);
    return st ? 1 : export_int8(r);
}


/* The training loop with a test evaluation after each epoch; then --save. */
static int train(run *r) {
    const options *o = &r->o;
    bool tty = isatty(fileno(stdout));
    const int64_t per_epoch = r->per_epoch, total = r->total;
    /* the epochs the run will really make: --steps may end it early */
    int run_epochs = (int)((total + per_epoch - 1) / (per_epoch ? per_epoch : 1));
    printf("fmnist: %s %s, %lld train / %lld test images, batch %lld, %d epoch%s (%lld steps%s), lr %g %s, threads %d\n",
           o->model, o->use_float ? "float" : o->qconfig, (long long)r->train.images->shape[0],
           (long long)r->test.images->shape[0], (long long)o->batch, run_epochs, run_epochs == 1 ? "" : "s",
           (long long)total, total < per_epoch * o->epochs ? ", --steps" : "", o->lr, o->schedule, qg_get_num_threads());

    double t_start = now();
    int64_t step = 0, images = 0;
    double acc = NAN;
    for (int epoch = 1; epoch <= o->epochs && step < total; epoch++) {
        qg_loader_start_epoch(r->loader, epoch - 1);
        double t_epoch = now(), run_loss = 0;
        int64_t e_step = 0;
        qg_tensor *x, *y;
        while (step < total && qg_loader_next(r->loader, &x, &y)) {
            double lr = qg_sgd_get_lr(r->opt);
            qg_tensor *out = r->ddp ? qg_ddp_forward(r->ddp, x) : qg_module_forward(r->model, x);
            qg_tensor *loss = qg_cross_entropy(out, y, QG_REDUCTION_MEAN);
            if (!loss && r->ddp && (r->o.sync_bn || r->o.sync_observers)) { /* the others wait in a reduction */
                fprintf(stderr, "\nfmnist: rank %d: step %lld: %s\n", r->rank, (long long)step + 1, qg_last_error());
                return 1; /* main's MPI_Abort stops them */
            }
            double lv = loss && step + 1 != r->o.nan_at ? qg_tensor_item(loss) : NAN;
            int bad = ddp_failed(r->o.ddp, r->rank, r->world, isfinite(lv)); /* all stop where one diverged */
            if (bad >= 0) {
                r->all_failed = true;
                fprintf(stderr, "\nfmnist: rank %d: the loss diverged at step %lld on rank %d (lr %g too high?)\n",
                        r->rank, (long long)step + 1, bad, lr);
                return 1;
            }
            qg_sgd_zero_grad(r->opt);
            if (!loss || (r->ddp ? qg_ddp_backward(r->ddp, loss) : qg_backward(loss, NULL)) || qg_sgd_step(r->opt)) {
                fprintf(stderr, "\nfmnist: rank %d: step %lld: %s\n", r->rank, (long long)step + 1, qg_last_error());
                return 1;
            }
            qg_tape_reset(NULL);
            if (r->sched) qg_lr_scheduler_step(r->sched);
            step++, e_step++, images += y->shape[0] * r->world;
            run_loss = e_step == 1 ? lv : 0.98 * run_loss + 0.02 * lv;
            if (r->log) fprintf(r->log, "%lld,%d,%.9g,%.9g\n", (long long)step, epoch, lv, lr);
            int64_t ep_total = per_epoch < total - (step - e_step) ? per_epoch : total - (step - e_step);
            if ((tty && e_step % 10 == 0) || (!tty && e_step % 200 == 0) || e_step == ep_total) {
                double dt = now() - t_epoch, ips = (double)e_step * (double)o->batch / dt; /* global images */
                progress(tty, epoch, o->epochs, e_step, ep_total, run_loss, ips, dt / (double)e_step * (double)(ep_total - e_step));
            }
        }
        double t_train = now() - t_epoch, tl;
        if (tty) printf("\n");
        bool frozen_obs = o->freeze_observer_after && epoch > o->freeze_observer_after;
        if (evaluate(r->model, r->test_loader, !frozen_obs, &tl, &acc, NULL)) {
            fprintf(stderr, "fmnist: evaluation: %s\n", qg_last_error());
            return 1;
        }
        printf("epoch %d: train %.1fs (%.0f img/s), test loss %.4f, test accuracy %.2f%%%s\n", epoch, t_train,
               (double)e_step * (double)o->batch / t_train, tl, 100 * acc, o->use_float ? "" : " (fake-quant model)");
        if (!o->use_float && o->freeze_bn_after && epoch == o->freeze_bn_after) {
            qg_freeze_bn_stats(r->model);
            printf("freezing BN statistics\n");
        }
        if (!o->use_float && o->freeze_observer_after && epoch == o->freeze_observer_after) {
            qg_enable_observer(r->model, false);
            printf("freezing observers\n");
        }
        fflush(stdout);
    }
    double wall = now() - t_start;
    if (r->rank) return 0; /* rank 0 saves, converts and exports */
    if (o->save) {
        if (qg_module_save(r->model, o->save)) {
            fprintf(stderr, "fmnist: %s\n", qg_last_error());
            return 1;
        }
        qg_tensor_dict *sd = qg_module_state_dict(r->model);
        printf("saved %s: the %s model's state dict, %d tensors (PyTorch names)\n", o->save,
               o->use_float ? "float" : "prepared QAT", qg_tensor_dict_size(sd));
        qg_tensor_dict_free(sd);
    }
    printf("test_acc=%.2f%% wall=%.1fs images_per_s=%.0f steps=%lld\n", 100 * acc, wall, (double)images / wall,
           (long long)step);
    return o->convert ? convert_int8(r) : 0;
}

/* --eval-only: the loaded model's test loss and accuracy. */
static int eval_only(run *r) {
    double tl, ta, t0 = now();
    if (evaluate(r->model, r->test_loader, true, &tl, &ta, NULL)) {
        fprintf(stderr, "fmnist: %s\n", qg_last_error());
        return 1;
    }
    printf("test_loss=%.4f test_acc=%.2f%% time=%.1fs\n", tl, 100 * ta, now() - t0);
    return r->o.int8 ? export_int8(r) : 0;
}

/* --ddp: MPI up, this rank's place, and the checks every rank must pass together.
 * Ranks other than 0 print one line and then only their errors. */
static int ddp_start(run *r, int *argc, char ***argv) {
    r->world = 1;
    if (!r->o.ddp && (r->o.sync_bn || r->o.sync_observers)) {
        fprintf(stderr, "fmnist: --sync-bn and --sync-observers go with --ddp\n");
        return 1;
    }
    if (!r->o.ddp) return 0;
#ifdef QG_HAVE_MPI
    if (r->o.eval_only) {
        fprintf(stderr, "fmnist: --ddp trains: it does not go with --eval-only\n");
        return 2;
    }
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &r->rank), MPI_Comm_size(MPI_COMM_WORLD, &r->world);
    printf("fmnist: rank %d of %d, %d thread%s\n", r->rank, r->world, qg_get_num_threads(),
           qg_get_num_threads() == 1 ? "" : "s");
    fflush(stdout);
    if (r->o.batch % r->world) { /* every rank sees it: they stop together */
        if (!r->rank)
            fprintf(stderr, "fmnist: --ddp: the batch %lld does not divide among %d ranks\n", (long long)r->o.batch,
                    r->world);
        r->all_failed = true;
        return 2;
    }
    if (r->rank && !freopen("/dev/null", "w", stdout)) return 1;
    return 0;
#else
    (void)argc, (void)argv;
    fprintf(stderr, "fmnist: --ddp: this qgrad was built without MPI (apt-get install libopenmpi-dev; meson -Dmpi=enabled)\n");
    return 2;
#endif
}

int main(int argc, char **argv) {
    run r = {0};
    int pr = parse(argc, argv, &r.o);
    if (pr) return pr > 0 ? 0 : 2;
    if (r.o.threads) qg_set_num_threads(r.o.threads);
    qg_manual_seed(r.o.seed);
    int rc = ddp_start(&r, &argc, &argv);
    if (!rc) rc = setup(&r);
    if (r.o.ddp) { /* a rank that failed to set up stops them all; then the wrapper, on every rank */
        int bad = ddp_failed(true, r.rank, r.world, rc == 0);
        if (bad >= 0) fprintf(stderr, "fmnist: rank %d: stopping: rank %d failed to set up\n", r.rank, bad);
        if (bad >= 0) rc = rc ? rc : 1, r.all_failed = true;
        qg_ddp_opts dop = qg_ddp_default_opts();
        dop.sync_bn = r.o.sync_bn, dop.sync_observers = r.o.sync_observers;
        if (!rc && !(r.ddp = qg_ddp_new(r.model, NULL, &dop))) {
            fprintf(stderr, "fmnist: rank %d: %s\n", r.rank, qg_last_error());
            rc = 1, r.all_failed = true; /* qg_ddp_new fails on every rank together */
        }
    }
    if (!rc) rc = r.o.eval_only ? eval_only(&r) : train(&r);
    run_free(&r);
#ifdef QG_HAVE_MPI
    if (r.o.ddp && r.world > 1 && rc && !r.all_failed) MPI_Abort(MPI_COMM_WORLD, rc); /* none may wait for this one */
    if (r.o.ddp && r.world) MPI_Finalize();
#endif
    return rc;
}
