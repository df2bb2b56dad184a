/* qg_ddp (qgrad/ddp.h): PyTorch's DistributedDataParallel over MPI. The wrapper keeps
 * its own duplicate of the communicator, with errors returned rather than fatal, and
 * turns every check that one rank could fail alone into a collective decision first,
 * so that no rank is left waiting in a collective that another never enters. */
#include "internal.h"
#include "qgrad/ddp.h"

#define WHO "ddp"

qg_ddp_opts qg_ddp_default_opts(void) { return (qg_ddp_opts){.bucket_cap_mb = 25, .broadcast_buffers = true}; }

#ifndef QG_HAVE_MPI

qg_ddp *qg_ddp_new(qg_module *model, const void *comm, const qg_ddp_opts *o) {
    (void)model, (void)comm, (void)o;
    return qg__err(QG_EINVAL, "%s_new: this qgrad was built without MPI: install libopenmpi-dev and rebuild "
                   "(meson setup -Dmpi=enabled)", WHO), NULL;
}
void qg_ddp_free(qg_ddp *d) { (void)d; }
int qg_ddp_rank(const qg_ddp *d) { return d ? 0 : -1; }
int qg_ddp_size(const qg_ddp *d) { return d ? 1 : -1; }
qg_tensor *qg_ddp_forward(qg_ddp *d, qg_tensor *x) {
    (void)d, (void)x;
    return qg__err(QG_EINVAL, "%s_forward: this qgrad was built without MPI", WHO), NULL;
}
qg_status qg_ddp_backward(qg_ddp *d, qg_tensor *loss) {
    (void)d, (void)loss;
    return qg__err(QG_EINVAL, "%s_backward: this qgrad was built without MPI", WHO);
}
int qg_ddp_num_buckets(const qg_ddp *d) { return d ? 0 : -1; }
qg_status qg_ddp_get_timing(const qg_ddp *d, qg_ddp_timing *t) {
    (void)d, (void)t;
    return qg__err(QG_EINVAL, "%s_get_timing: this qgrad was built without MPI", WHO);
}
qg_status qg_ddp_get_bucket(const qg_ddp *d, int k, qg_ddp_bucket *b) {
    (void)d, (void)k, (void)b;
    return qg__err(QG_EINVAL, "%s_get_bucket: this qgrad was built without MPI", WHO);
}

#else

#include <mpi.h>

#include "op_internal.h"

typedef struct {
    int first, last;   /* parameters [first, last) */
    int64_t n;         /* elements */
    void *buf;
    MPI_Request req;
    double start, end; /* the last backward's: seconds from its start (end: when seen done) */
} bucket;

struct qg_ddp {
    qg_module *m;
    MPI_Comm comm;
    int rank, size;
    qg_ddp_opts o;
    qg__sync sync; /* sync_bn, sync_observers: the reductions the BNs and observers call */
    qg_tensor_list *params;
    qg_dtype dt;       /* of every parameter: f32 or f64 */
    int nb;
    bucket *b;
    /* during qg_ddp_backward: the tape nodes still to run that read each parameter, the
     * next bucket to start (buckets start in order, the same on every rank) */
    qg__bwd_hook hook;
    int *uses, next;
    double t0, t_backward, t_wait; /* the last backward: its start, its length, the wait after it */
    int mpi_rc;
};

/* Whether every rank has ok; a collective. */
static bool all_ok(const qg_ddp *d, bool ok) {
    int v = ok, all = 0;
    if (MPI_Allreduce(&v, &all, 1, MPI_INT, MPI_MIN, d->comm) != MPI_SUCCESS) return false;
    return all != 0;
}

static qg_status mpi_err(const char *op, int rc) {
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, msg, &n);
    return qg__err(QG_EIO, "%s: MPI failed: %.*s", op, n, msg);
}

static qg_status sync_reduce(void *ctx, void *v, int64_t n, MPI_Datatype t, MPI_Op op, const char *what) {
    const qg_ddp *d = ctx;
    if (n > INT32_MAX) return qg__err(QG_EINVAL, "ddp: %s of %lld values: MPI counts are int", what, (long long)n);
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, t, op, d->comm);
    return rc == MPI_SUCCESS ? QG_OK : mpi_err(what, rc);
}
static qg_status sync_sum(void *ctx, double *v, int64_t n) {
    return sync_reduce(ctx, v, n, MPI_DOUBLE, MPI_SUM, "ddp sync_bn");
}
static qg_status sync_min(void *ctx, float *v, int64_t n) {
    return sync_reduce(ctx, v, n, MPI_FLOAT, MPI_MIN, "ddp sync_observers");
}

/* Every rank's tensors have rank 0's dtypes and sizes; then rank 0's bytes go to all. */
static qg_status broadcast(const qg_ddp *d, const char *op, const qg_tensor_list *l) {
    const int n = l->n;
    int64_t *sig = qg__alloc(sizeof(int64_t) * (size_t)(2 * n + 1)), *mine = qg__alloc(sizeof(int64_t) * (size_t)(2 * n + 1));
    bool ok = sig && mine;
    for (int i = 0; ok && i < n; i++) {
        const qg_tensor *t = l->tensors[i];
        mine[2 * i] = t ? (int64_t)t->dtype : -1, mine[2 * i + 1] = t ? qg_tensor_numel(t) : 0;
        ok = !t || qg_tensor_is_contiguous(t);
    }
    int64_t count = n, count0 = n;
    int rc = MPI_Bcast(&count0, 1, MPI_INT64_T, 0, d->comm);
    if (rc != MPI_SUCCESS) return qg__free(sig), qg__free(mine), mpi_err(op, rc);
    if (ok) memcpy(sig, mine, sizeof(int64_t) * (size_t)(2 * n));
    const bool same_count = count0 == count;
    if (!all_ok(d, ok && same_count)) {
        qg__free(sig), qg__free(mine);
        return qg__err(QG_ESTATE, "%s: the ranks' models differ: %lld tensors here, %lld on rank 0 (or out of memory, "
                       "or a non-contiguous tensor)", op, (long long)count, (long long)count0);
    }
    rc = MPI_Bcast(sig, (int)(2 * n), MPI_INT64_T, 0, d->comm);
    int bad = -1;
    for (int i = 0; rc == MPI_SUCCESS && bad < 0 && i < n; i++)
        if (sig[2 * i] != mine[2 * i] || sig[2 * i + 1] != mine[2 * i + 1]) bad = i;
    qg_status st = rc != MPI_SUCCESS ? mpi_err(op, rc) : QG_OK;
    if (!st && !all_ok(d, bad < 0)) {
        if (bad >= 0)
            st = qg__err(QG_ESTATE, "%s: '%s' differs from rank 0's (%lld elements of dtype %d here, %lld of %d there)", op,
                         l->names[bad], (long long)mine[2 * bad + 1], (int)mine[2 * bad], (long long)sig[2 * bad + 1],
                         (int)sig[2 * bad]);
        else
            st = qg__err(QG_ESTATE, "%s: another rank's model differs from rank 0's", op);
    }
    for (int i = 0; !st && i < n; i++) {
        qg_tensor *t = l->tensors[i];
        int64_t bytes = t ? qg_tensor_numel(t) * (int64_t)qg_dtype_size(t->dtype) : 0;
        for (int64_t at = 0; !st && at < bytes; at += INT32_MAX) { /* MPI counts are int */
            int64_t k = bytes - at < INT32_MAX ? bytes - at : INT32_MAX;
            rc = MPI_Bcast((char *)qg_tensor_data(t) + at, (int)k, MPI_BYTE, 0, d->comm);
            if (rc != MPI_SUCCESS) st = mpi_err(op, rc);
        }
    }
    qg__free(sig), qg__free(mine);
    return st;
}

static qg_status broadcast_buffers(const qg_ddp *d, const char *op) {
    qg_tensor_list *b = qg_module_buffers(d->m); /* afresh: a buffer can be replaced, or resized */
    qg_status st = b ? broadcast(d, op, b) : qg__err(QG_ENOMEM, "%s: out of memory", op);
    qg_tensor_list_free(b);
    return st;
}

/* Buckets of consecutive parameters, from the last to the first, each up to the cap. */
static qg_status make_buckets(qg_ddp *d) {
    const size_t es = qg_dtype_size(d->dt), cap = (size_t)(d->o.bucket_cap_mb * 1024 * 1024);
    d->b = qg__calloc(sizeof(bucket) * (size_t)(d->params->n + 1));
    if (!d->b) return qg__err(QG_ENOMEM, "%s_new: out of memory", WHO);
    for (int last = d->params->n; last > 0;) {
        bucket *b = &d->b[d->nb++];
        b->last = last, b->first = last;
        while (b->first > 0) {
            int64_t k = qg_tensor_numel(d->params->tensors[b->first - 1]);
            if (b->n && (size_t)(b->n + k) * es > cap) break;
            b->n += k, b->first--;
        }
        if (b->n > INT32_MAX) return qg__err(QG_EINVAL, "%s_new: a bucket of %lld elements: MPI counts are int", WHO,
                                             (long long)b->n);
        if (!(b->buf = qg__alloc((size_t)b->n * es + 1))) return qg__err(QG_ENOMEM, "%s_new: out of memory", WHO);
        b->req = MPI_REQUEST_NULL, b->start = b->end = -1; /* no backward yet */
        last = b->first;
    }
    return QG_OK;
}

/* grad (n elements of dt) / size into buf, or buf * 1 back into grad */
static void pack(qg_dtype dt, void *buf, const void *grad, int64_t n, double scale) {
    if (dt == QG_F32) {
        float *b = buf, s = (float)scale;
        const float *g = grad;
        for (int64_t i = 0; i < n; i++) b[i] = g[i] * s;
    } else {
        double *b = buf;
        const double *g = grad;
        for (int64_t i = 0; i < n; i++) b[i] = g[i] * scale;
    }
}

static int param_index(const qg_ddp *d, const qg_tensor *t) {
    for (int i = 0; t && t->requires_grad && !t->node && i < d->params->n; i++)
        if (d->params->tensors[i] == t) return i;
    return -1;
}

/* bucket k's gradients, each divided by the world size, summed over the ranks */
static void start_bucket(qg_ddp *d, int k) {
    bucket *b = &d->b[k];
    const size_t es = qg_dtype_size(d->dt);
    int64_t at = 0;
    for (int i = b->first; i < b->last; i++) { /* a missing gradient (a failed backward) sends zeros */
        const qg_tensor *p = d->params->tensors[i], *g = p->grad;
        if (g) pack(d->dt, (char *)b->buf + at * es, qg_tensor_data(g), qg_tensor_numel(g), 1.0 / d->size);
        else memset((char *)b->buf + at * es, 0, (size_t)qg_tensor_numel(p) * es);
        at += qg_tensor_numel(p);
    }
    b->start = qg__now() - d->t0, b->end = -1;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, b->buf, (int)b->n, d->dt == QG_F32 ? MPI_FLOAT : MPI_DOUBLE, MPI_SUM,
                            d->comm, &b->req);
    if (rc != MPI_SUCCESS) b->req = MPI_REQUEST_NULL, d->mpi_rc = d->mpi_rc ? d->mpi_rc : rc;
}

/* Open MPI moves a non-blocking collective on only inside MPI calls: test the started ones */
static void progress(qg_ddp *d) {
    for (int k = 0; k < d->next; k++) {
        bucket *b = &d->b[k];
        int done = 0;
        if (b->end < 0 && b->req != MPI_REQUEST_NULL && MPI_Test(&b->req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS &&
            done)
            b->end = qg__now() - d->t0;
    }
}

static void hook_begin(void *ctx, const qg_node *last) {
    qg_ddp *d = ctx;
    memset(d->uses, 0, sizeof(int) * (size_t)d->params->n);
    for (const qg_node *n = last; n; n = n->prev)
        for (int i = 0; i < n->nin; i++) {
            int p = param_index(d, n->in[i]);
            if (p >= 0) d->uses[p]++;
        }
}

/* after a node: its parameters' gradients may be final; start the buckets that are */
static void hook_after(void *ctx, const qg_node *n) {
    qg_ddp *d = ctx;
    for (int i = 0; i < n->nin; i++) {
        int p = param_index(d, n->in[i]);
        if (p >= 0 && d->uses[p] > 0) d->uses[p]--;
    }
    while (d->next < d->nb) {
        const bucket *b = &d->b[d->next];
        bool ready = true;
        for (int i = b->first; ready && i < b->last; i++) ready = !d->uses[i] && d->params->tensors[i]->grad;
        if (!ready) break;
        start_bucket(d, d->next++);
    }
    progress(d);
}

qg_ddp *qg_ddp_new(qg_module *model, const void *comm, const qg_ddp_opts *o) {
    const char *op = "ddp_new";
    int inited = 0;
    if (!model) return qg__err_null(op), NULL;
    MPI_Initialized(&inited);
    if (!inited) return qg__err(QG_ESTATE, "%s: MPI is not initialized: call MPI_Init first", op), NULL;
    qg_ddp_opts opts = o ? *o : qg_ddp_default_opts();
    if (!(opts.bucket_cap_mb > 0) || opts.bucket_cap_mb > 1e6)
        return qg__err(QG_EINVAL, "%s: bucket_cap_mb must be positive (PyTorch's default 25), got %g", op,
                       opts.bucket_cap_mb), NULL;
    qg_ddp *d = qg__calloc(sizeof *d);
    if (!d) return qg__err(QG_ENOMEM, "%s: out of memory", op), NULL;
    int rc = MPI_Comm_dup(comm ? *(const MPI_Comm *)comm : MPI_COMM_WORLD, &d->comm);
    if (rc != MPI_SUCCESS) {
        qg__free(d);
        return mpi_err(op, rc), NULL;
    }
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank), MPI_Comm_size(d->comm, &d->size);
    d->m = model, d->o = opts;
    d->sync = (qg__sync){.ctx = d, .sum = sync_sum, .min = sync_min};
    d->params = qg_module_parameters(model);
    qg_status st = d->params ? QG_OK : qg__err(QG_ENOMEM, "%s: out of memory", op);
    d->dt = d->params && d->params->n ? d->params->tensors[0]->dtype : QG_F32;
    for (int i = 0; !st && i < d->params->n; i++)
        if (d->params->tensors[i]->dtype != d->dt || (d->dt != QG_F32 && d->dt != QG_F64))
            st = qg__err(QG_EDTYPE, "%s: parameters must all be f32 or all f64; '%s' is %s", op, d->params->names[i],
                         qg_dtype_name(d->params->tensors[i]->dtype));
    if (!all_ok(d, !st) && !st) st = qg__err(QG_ESTATE, "%s: another rank failed to set up", op);
    if (!st) st = broadcast(d, op, d->params);
    if (!st) st = broadcast_buffers(d, op);
    if (!st) st = make_buckets(d);
    if (!st && !(d->uses = qg__calloc(sizeof(int) * (size_t)(d->params->n + 1))))
        st = qg__err(QG_ENOMEM, "%s: out of memory", op);
    d->hook = (qg__bwd_hook){.ctx = d, .begin = hook_begin, .after = hook_after};
    if (!all_ok(d, !st) && !st) st = qg__err(QG_ESTATE, "%s: another rank failed to set up", op);
    if (st) {
        qg_ddp_free(d);
        return NULL;
    }
    return d;
}

void qg_ddp_free(qg_ddp *d) {
    if (!d) return;
    for (int i = 0; d->b && i < d->nb; i++) qg__free(d->b[i].buf);
    qg__free(d->b), qg__free(d->uses);
    qg_tensor_list_free(d->params);
    if (d->comm != MPI_COMM_NULL) MPI_Comm_free(&d->comm);
    qg__free(d);
}

int qg_ddp_rank(const qg_ddp *d) { return d ? d->rank : -1; }
int qg_ddp_size(const qg_ddp *d) { return d ? d->size : -1; }

qg_tensor *qg_ddp_forward(qg_ddp *d, qg_tensor *x) {
    if (!d) return qg__err_null("ddp_forward"), NULL;
    if (d->o.broadcast_buffers && broadcast_buffers(d, "ddp_forward")) return NULL;
    const qg__sync *bn = qg__sync_bn, *obs = qg__sync_obs;
    qg__sync_bn = d->o.sync_bn ? &d->sync : NULL, qg__sync_obs = d->o.sync_observers ? &d->sync : NULL;
    qg_tensor *y = qg_module_forward(d->m, x);
    qg__sync_bn = bn, qg__sync_obs = obs;
    return y;
}

qg_status qg_ddp_backward(qg_ddp *d, qg_tensor *loss) {
    const char *op = "ddp_backward";
    if (!d) return qg__err_null(op);
    for (int k = 0; k < d->nb; k++) d->b[k].req = MPI_REQUEST_NULL, d->b[k].start = d->b[k].end = -1;
    d->next = 0, d->mpi_rc = MPI_SUCCESS, d->t0 = qg__now();
    /* buckets start inside backward, as soon as their gradients are final (hook_after) */
    const qg__sync *bn = qg__sync_bn;
    const qg__bwd_hook *hk = qg__bwd_hook_on;
    qg__sync_bn = d->o.sync_bn ? &d->sync : NULL, qg__bwd_hook_on = &d->hook;
    qg_status st = qg_backward(loss, NULL);
    qg__sync_bn = bn, qg__bwd_hook_on = hk;
    d->t_backward = qg__now() - d->t0;
    int missing = -1;
    for (int i = 0; !st && missing < 0 && i < d->params->n; i++)
        if (!d->params->tensors[i]->grad) missing = i;
    /* every rank starts every bucket, in order, before the check, also one whose backward
     * failed (missing gradients as zeros): the same collectives on every rank. (Under
     * sync_bn a backward that fails on one rank alone leaves the others in a BN's
     * reduction: the program must stop, as fmnist's MPI_Abort does.) */
    while (d->next < d->nb && d->mpi_rc == MPI_SUCCESS) start_bucket(d, d->next++);
    const bool ok = all_ok(d, !st && missing < 0);
    int rc = d->mpi_rc;
    const size_t es = qg_dtype_size(d->dt);
    for (int k = 0; k < d->nb; k++) {
        bucket *b = &d->b[k];
        int w = b->req != MPI_REQUEST_NULL ? MPI_Wait(&b->req, MPI_STATUS_IGNORE) : MPI_SUCCESS;
        if (rc == MPI_SUCCESS) rc = w;
        if (b->end < 0) b->end = qg__now() - d->t0;
        int64_t at = 0;
        for (int i = b->first; ok && rc == MPI_SUCCESS && i < b->last; i++) {
            qg_tensor *g = d->params->tensors[i]->grad;
            pack(d->dt, qg_tensor_data(g), (char *)b->buf + at * es, qg_tensor_numel(g), 1.0);
            at += qg_tensor_numel(g);
        }
    }
    d->t_wait = qg__now() - d->t0 - d->t_backward;
    if (!ok) { /* every rank stops here together, nothing left pending */
        if (!st && missing >= 0)
            return qg__err(QG_ESTATE, "%s: parameter '%s' has no gradient on rank %d (PyTorch's "
                           "find_unused_parameters is not supported)", op, d->params->names[missing], d->rank);
        return st ? st : qg__err(QG_ESTATE, "%s: another rank's backward failed", op);
    }
    return rc == MPI_SUCCESS ? QG_OK : mpi_err(op, rc);
}

int qg_ddp_num_buckets(const qg_ddp *d) { return d ? d->nb : -1; }

qg_status qg_ddp_get_timing(const qg_ddp *d, qg_ddp_timing *t) {
    if (!d || !t) return qg__err(QG_EINVAL, "ddp_get_timing: %s is NULL", d ? "t" : "the wrapper");
    *t = (qg_ddp_timing){.backward = d->t_backward, .wait = d->t_wait};
    return QG_OK;
}

qg_status qg_ddp_get_bucket(const qg_ddp *d, int k, qg_ddp_bucket *b) {
    if (!d || !b) return qg__err(QG_EINVAL, "ddp_get_bucket: %s is NULL", d ? "b" : "the wrapper");
    if (k < 0 || k >= d->nb)
        return qg__err(QG_EINVAL, "ddp_get_bucket: bucket %d of %d (0 to %d)", k, d->nb, d->nb - 1);
    const bucket *s = &d->b[k];
    *b = (qg_ddp_bucket){.first = s->first, .last = s->last, .bytes = s->n * (int64_t)qg_dtype_size(d->dt),
                         .start = s->start, .end = s->end};
    return QG_OK;
}

#endif
