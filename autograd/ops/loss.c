/* Losses: nll_loss, cross_entropy (= nll_loss of log_softmax, as PyTorch composes
 * it; with probability targets or label smoothing composed from differentiable ops the
 * way PyTorch 1.13 composes them), mse_loss. Targets equal to -100 are ignored
 * (PyTorch's default ignore_index). */
#include <math.h>

#include "op_internal.h"

#define IGNORE_INDEX (-100)

static int64_t target_at(const qg_tensor *t, int64_t i) {
    const char *p = qg__data(t) + i * t->strides[0] * (int64_t)qg_dtype_size(t->dtype);
    return t->dtype == QG_I64 ? *(const int64_t *)p : *(const int32_t *)p;
}

static qg_status check_targets(const char *op, const qg_tensor *logp, const qg_tensor *target) {
    char a[128], b[128];
    if (!logp || !target) return qg__err_null(op);
    if (qg__check_float(op, logp)) return qg_last_status();
    if (target->dtype != QG_I64 && target->dtype != QG_I32)
        return qg__err(QG_EDTYPE, "%s: target must be i64 or i32 class indices (or probabilities of the input's dtype), got %s", op,
                       qg_dtype_name(target->dtype));
    if (logp->ndim != 2 || target->ndim != 1 || target->shape[0] != logp->shape[0])
        return qg__err(QG_ESHAPE, "%s: expected input (N, C) and target (N), got %s and %s", op,
                       qg_shape_str(logp, a, sizeof a), qg_shape_str(target, b, sizeof b));
    int64_t C = logp->shape[1];
    for (int64_t i = 0; i < target->shape[0]; i++) {
        int64_t t = target_at(target, i);
        if (t != IGNORE_INDEX && (t < 0 || t >= C))
            return qg__err(QG_EINVAL, "%s: target[%lld] = %lld is not a class in [0, %lld)", op,
                           (long long)i, (long long)t, (long long)C);
    }
    return QG_OK;
}

static qg_status nll_backward(qg_node *n) {
    qg_tensor *x = n->in[0], *target = n->saved[0];
    if (!qg__wants_grad(x)) return QG_OK;
    qg_tensor *gx = qg__grad_of(x), *g = n->out->grad;
    if (!gx) return QG_ENOMEM;
    qg_reduction red = (qg_reduction)n->ip[0];
    double count = n->p[0];
    int64_t N = x->shape[0], C = x->shape[1];
    QG_FLOAT_DISPATCH(x->dtype, {
        real *d = (real *)qg__data(gx);
        const real *gg = (const real *)qg__data(g);
        for (int64_t i = 0; i < N; i++) {
            int64_t t = target_at(target, i);
            if (t == IGNORE_INDEX) continue;
            real gi = red == QG_REDUCTION_NONE ? gg[i] : gg[0];
            d[i * C + t] += red == QG_REDUCTION_MEAN ? (real)(-gi / count) : -gi;
        }
    });
    return QG_OK;
}

qg_tensor *qg_nll_loss(const qg_tensor *logp, const qg_tensor *target, qg_reduction red) {
    if (check_targets("nll_loss", logp, target)) return NULL;
    if ((unsigned)red > QG_REDUCTION_NONE) return qg__err(QG_EINVAL, "nll_loss: unknown reduction %d", (int)red), NULL;
    int64_t N = logp->shape[0];
    qg_tensor *out = red == QG_REDUCTION_NONE ? qg__tape_tensor(logp->dtype, 1, &N)
                                              : qg__tape_tensor(logp->dtype, 0, NULL);
    if (!out) return NULL;
    double total = 0, count = 0;
    size_t es = qg_dtype_size(logp->dtype);
    for (int64_t i = 0; i < N; i++) {
        int64_t t = target_at(target, i);
        double v = 0;
        if (t != IGNORE_INDEX) {
            v = -qg__load(qg__data(logp) + (i * logp->strides[0] + t * logp->strides[1]) * (int64_t)es, logp->dtype);
            count += 1;
        }
        if (red == QG_REDUCTION_NONE) qg__store(qg__data(out) + i * (int64_t)es, out->dtype, v);
        total += v;
    }
    if (red != QG_REDUCTION_NONE) /* mean over no targets is nan, as PyTorch */
        qg__store(qg__data(out), out->dtype, red == QG_REDUCTION_MEAN ? total / count : total);
    if (qg__needs_grad(1, &logp)) {
        qg_node *n = qg__record("nll_loss", nll_backward, out, 1, &logp);
        if (!n) return NULL;
        n->saved[0] = (qg_tensor *)target;
        n->ip[0] = red;
        n->p[0] = count;
    }
    return out;
}

/* -sum_c(logp * w) per sample, reduced: mean divides by `count` (the samples). */
static qg_tensor *reduce_samples(qg_tensor *per_sample, qg_reduction red, double count) {
    if (red == QG_REDUCTION_NONE) return per_sample;
    qg_tensor *s = qg_sum(per_sample, 0, NULL, false);
    return red == QG_REDUCTION_MEAN ? qg_div_scalar(s, count) : s;
}

/* Probability targets (N, C): -sum_c target' * logp, target' = (1 - eps) target + eps/C. */
static qg_tensor *ce_probs(const qg_tensor *logits, const qg_tensor *target, qg_reduction red, double eps) {
    char a[128], b[128];
    if (qg__check_same_float("cross_entropy", logits, target)) return NULL;
    if (target->ndim != 2 || memcmp(target->shape, logits->shape, sizeof(int64_t) * 2))
        return qg__err(QG_ESHAPE, "cross_entropy: probability target %s must have the input's shape %s",
                       qg_shape_str(target, b, sizeof b), qg_shape_str(logits, a, sizeof a)), NULL;
    const double C = (double)logits->shape[1];
    const qg_tensor *t = eps > 0 ? qg_add_scalar(qg_mul_scalar(target, 1 - eps), eps / C) : target;
    qg_tensor *per = qg_neg(qg_sum(qg_mul(qg_log_softmax(logits, 1), t), 1, (const int[]){1}, false));
    return reduce_samples(per, red, (double)logits->shape[0]);
}

/* Class targets with smoothing: (1 - eps) nll + eps/C * (-sum_c logp), the second term
 * over the samples that are not ignored (the mean divides both by their count). */
static qg_tensor *ce_smooth(const qg_tensor *logits, const qg_tensor *target, qg_reduction red, double eps) {
    qg_tensor *logp = qg_log_softmax(logits, 1);
    qg_tensor *nll = qg_nll_loss(logp, target, red);
    if (!nll) return NULL;
    int64_t N = logits->shape[0];
    qg_tensor *keep = qg__tape_tensor(logits->dtype, 1, &N);
    if (!keep) return NULL;
    double count = 0;
    for (int64_t i = 0; i < N; i++) {
        bool k = target_at(target, i) != IGNORE_INDEX;
        qg__store(qg__data(keep) + i * (int64_t)qg_dtype_size(keep->dtype), keep->dtype, k ? 1.0 : 0.0);
        count += k;
    }
    qg_tensor *smooth = qg_mul(qg_neg(qg_sum(logp, 1, (const int[]){1}, false)), keep);
    smooth = reduce_samples(smooth, red, count);
    return qg_add(qg_mul_scalar(nll, 1 - eps), qg_mul_scalar(smooth, eps / (double)logits->shape[1]));
}

qg_tensor *qg_cross_entropy_label_smoothing(const qg_tensor *logits, const qg_tensor *target, qg_reduction red,
                                            double label_smoothing) {
    if (!logits || !target) return qg__err_null("cross_entropy"), NULL;
    if (!(label_smoothing >= 0 && label_smoothing <= 1))
        return qg__err(QG_EINVAL, "cross_entropy: label_smoothing must be in [0, 1], got %g", label_smoothing), NULL;
    if ((unsigned)red > QG_REDUCTION_NONE) return qg__err(QG_EINVAL, "cross_entropy: unknown reduction %d", (int)red), NULL;
    if (qg__check_float("cross_entropy", logits)) return NULL;
    if (logits->ndim != 2) {
        char a[128];
        return qg__err(QG_ESHAPE, "cross_entropy: expected input (N, C), got %s", qg_shape_str(logits, a, sizeof a)), NULL;
    }
    if (qg__is_float(target->dtype)) return ce_probs(logits, target, red, label_smoothing);
    if (check_targets("cross_entropy", logits, target)) return NULL;
    if (label_smoothing > 0) return ce_smooth(logits, target, red, label_smoothing);
    return qg_nll_loss(qg_log_softmax(logits, 1), target, red);
}

qg_tensor *qg_cross_entropy(const qg_tensor *logits, const qg_tensor *target, qg_reduction red) {
    return qg_cross_entropy_label_smoothing(logits, target, red, 0);
}

qg_tensor *qg_mse_loss(const qg_tensor *x, const qg_tensor *y, qg_reduction red) {
    char a[128], b[128];
    if (qg__check_same_float("mse_loss", x, y)) return NULL;
    if (x->ndim != y->ndim || memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim))
        return qg__err(QG_ESHAPE, "mse_loss: input %s and target %s must have the same shape",
                       qg_shape_str(x, a, sizeof a), qg_shape_str(y, b, sizeof b)), NULL;
    if ((unsigned)red > QG_REDUCTION_NONE) return qg__err(QG_EINVAL, "mse_loss: unknown reduction %d", (int)red), NULL;
    qg_tensor *sq = qg_pow_scalar(qg_sub(x, y), 2.0);
    if (red == QG_REDUCTION_NONE) return sq;
    return red == QG_REDUCTION_MEAN ? qg_mean(sq, 0, NULL, false) : qg_sum(sq, 0, NULL, false);
}
