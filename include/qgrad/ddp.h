/* qgrad/ddp.h — data-parallel training over MPI, as PyTorch's DistributedDataParallel
 * (DDP) does it: every rank holds the whole model and a shard of each batch; at
 * construction rank 0's parameters and buffers go to every rank, before each forward
 * its buffers (BN running statistics, observer state) do, and after each backward the
 * gradients are averaged over the ranks by MPI all-reduce, in buckets. The optimizer,
 * the schedules and checkpoints work unchanged.
 *
 * Needs a build with MPI (meson -Dmpi=enabled; Debian's libopenmpi-dev): otherwise
 * qg_ddp_new fails saying so. The program calls MPI_Init and MPI_Finalize itself.
 *
 * ```c
 * // model: built (and prepared) the same way on every rank; opt: its optimizer; x, labels: this rank's shard
 * qg_ddp *ddp = qg_ddp_new(model, NULL, NULL);   // NULL: MPI_COMM_WORLD, default options
 * if (!ddp) fprintf(stderr, "%s\n", qg_last_error());
 * qg_tensor *loss = qg_cross_entropy(qg_ddp_forward(ddp, x), labels, QG_REDUCTION_MEAN);
 * if (qg_ddp_backward(ddp, loss)) fprintf(stderr, "%s\n", qg_last_error());   // averaged gradients
 * qg_ddp_free(ddp);
 * ```
 */
#ifndef QGRAD_DDP_H
#define QGRAD_DDP_H

#include "qgrad/export.h"

#include "qgrad/autograd.h"
#include "qgrad/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qg_ddp qg_ddp;

typedef struct qg_ddp_opts {
    double bucket_cap_mb;   /* PyTorch's bucket_cap_mb: gradients all-reduced per bucket of this size; > 0 */
    bool broadcast_buffers; /* PyTorch's broadcast_buffers: rank 0's buffers to every rank before each forward */
    /* SyncBatchNorm on the CPU, for BatchNorm1d/2d and the fused QAT ConvBn and
     * LinearBn: in training, each BN's batch statistics are the global batch's (its
     * per-channel sums and count added over the ranks, the mean first, then the
     * squares about it), and backward adds the input gradient's two sums over the
     * ranks too, as PyTorch's (GPU-only) SyncBatchNorm does. */
    bool sync_bn;
    /* Every observer's (and fused observer fake-quant's) batch min/max is the global
     * batch's: MIN/MAX over the ranks before the running min/max move, so that every
     * rank's scales and zero points see the whole batch (PyTorch's DDP does not:
     * pytorch issue #85627). */
    bool sync_observers;
} qg_ddp_opts;

/* PyTorch's defaults: 25 MB buckets, broadcast_buffers true, no sync_bn, no
 * sync_observers. */
QG_API qg_ddp_opts qg_ddp_default_opts(void);

/* Wraps model (which stays the caller's, and must outlive the wrapper) for the ranks of
 * comm, a pointer to an MPI_Comm (NULL: MPI_COMM_WORLD), and broadcasts rank 0's
 * parameters and buffers. Every rank must call it with a model of the same parameters
 * and buffers: shapes and dtypes are checked against rank 0's, and a mismatch is an
 * error on every rank naming the first tensor that differs. o NULL: the defaults. */
QG_API qg_ddp *qg_ddp_new(qg_module *model, const void *comm, const qg_ddp_opts *o);
QG_API void qg_ddp_free(qg_ddp *d);
QG_API int qg_ddp_rank(const qg_ddp *d); /* -1 for NULL */
QG_API int qg_ddp_size(const qg_ddp *d); /* -1 for NULL */

/* The model's forward, after broadcasting rank 0's buffers (broadcast_buffers); with
 * sync_bn or sync_observers, its BNs and observers reduce over the ranks (every rank
 * must run the same forward: the reductions are collectives). A BN forward run here
 * under sync_bn needs its backward run by qg_ddp_backward. */
QG_API qg_tensor *qg_ddp_forward(qg_ddp *d, qg_tensor *x);
/* qg_backward(loss), then every parameter's gradient replaced by the mean over the
 * ranks (each rank's divided by the world size, then summed by MPI_Iallreduce, bucket
 * by bucket in the reverse order of the parameters, the order backward finishes them).
 * A bucket starts inside backward as soon as backward has run the last node reading
 * its parameters, so that its all-reduce overlaps the rest of backward. A parameter
 * without a gradient on some rank is an error naming it. */
QG_API qg_status qg_ddp_backward(qg_ddp *d, qg_tensor *loss);

/* The last qg_ddp_backward's times, in seconds: the local backward, and the wait after
 * it until every bucket was summed (the communication backward did not hide); zeros,
 * and buckets' start and end -1, before the first. */
typedef struct qg_ddp_timing {
    double backward, wait;
} qg_ddp_timing;
/* Bucket k (0: the first started, the last parameters) of the last qg_ddp_backward:
 * parameters [first, last) of qg_module_parameters' order, its bytes, and when its
 * all-reduce started and was seen done, in seconds from the backward's start. */
typedef struct qg_ddp_bucket {
    int first, last;
    int64_t bytes;
    double start, end;
} qg_ddp_bucket;
QG_API int qg_ddp_num_buckets(const qg_ddp *d); /* -1 for NULL */
QG_API qg_status qg_ddp_get_timing(const qg_ddp *d, qg_ddp_timing *t);
QG_API qg_status qg_ddp_get_bucket(const qg_ddp *d, int k, qg_ddp_bucket *b);

#ifdef __cplusplus
}
#endif
#endif
