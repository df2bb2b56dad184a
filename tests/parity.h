/* The PyTorch parity rule, shared by every tests/test_parity_*.c, and the runner of the
 * op-table tests (a fixture case name -> a function building qgrad's output).
 *
 * The rule (docs/testing.md): a float32 result is judged by its distance from the
 * exact answer, not from PyTorch's float32 answer, so that any correct summation order
 * passes. Each fixture tensor comes with a float64 reference r ("<c>.ref.<t>"):
 * PyTorch's same computation in float64 on the same inputs; for QAT models, in float64
 * with the fake-quant modules kept in float32 (their float32 rounding is their
 * definition, and PyTorch's kernels take float32 only). With the per-tensor error
 *     e(x) = max_i |x_i - r_i| / max_j |r_j|
 * qgrad's float32 result a passes when
 *     e(a) <= PARITY_K * max(e(b), PARITY_FLOOR)
 * where b is PyTorch's float32 result: qgrad may be up to K = 4 times as far from the
 * exact answer as PyTorch is. PARITY_FLOOR = 2^-21 (8 units of float32 roundoff of
 * the tensor's largest value) stands in for e(b) where PyTorch is closer than that:
 * below it, which of two correct float32 evaluations lands nearer is luck.
 * e(b) itself must stay below PARITY_REF_MAX, a check of the reference.
 * Integer tensors must be equal; float64 results must be within PARITY_F64 of
 * PyTorch's float64 ones under e(). Fake-quantized tensors are judged by
 * parity_judge_grid: see there. */
#ifndef QG_PARITY_H
#define QG_PARITY_H
#include <stdbool.h>

#include "compare.h"
#include "qgrad/autograd.h"
#include "qgrad/nn.h"

#define PARITY_K 4.0
#define PARITY_FLOOR 0x1p-21
#define PARITY_REF_MAX 1e-4
#define PARITY_F64 1e-10
/* fake-quant flips allowed, as a fraction of a tensor's elements */
#define PARITY_MAX_FLIPS 0.01
#define MAX_IN 8

typedef qg_tensor *(*case_fn)(qg_tensor *const *in, qg_tensor **aux);

typedef struct op_case {
    const char *name; /* fixture case; <name>_f64 runs the same function */
    case_fn fn;
    int runs;         /* fixture cases that used this entry */
} op_case;

/* One function per case: `in` are the fixture's inputs, aux receives extra outputs
 * (max's indices), compared with <case>.idx. */
#define CASE(nm, expr)                                                          \
    static qg_tensor *case_##nm(qg_tensor *const *in, qg_tensor **aux) {        \
        (void)in;                                                               \
        (void)aux;                                                              \
        return (expr);                                                          \
    }

#define MEAN QG_REDUCTION_MEAN
#define SUM QG_REDUCTION_SUM
#define NONE QG_REDUCTION_NONE

/* Tallies of every judged tensor of this program. */
typedef struct parity_tally {
    int passed, failed;
    double worst_ratio; /* largest e(a) / bound over the float32 tensors that passed */
    char worst[128];    /* and which tensor */
    int probed, caught; /* float32 tensors given the corruption probe, and those it failed */
    char missed[128];   /* the first tensor whose corruption passed */
    bool quiet;         /* no FAIL lines (a test of the judges themselves) */
} parity_tally;
extern parity_tally parity;

/* The fixture file being checked (set by parity_run, or by the test), and its tensor
 * named by a printf-style key, or NULL (no error: cases have optional parts). */
extern const qg_tensor_dict *parity_fixture;
#define PFX(...) tst_fixture(parity_fixture, TST_MAYBE, __VA_ARGS__)

/* Judges ours against PyTorch's result `torch` by the rule above: float32 against the
 * float64 reference ref (required for float32), float64 and integers against torch.
 * Counts into `parity`, prints a FAIL line naming `what` on failure (and an ok line
 * with the figures when PARITY_VERBOSE is set in the environment). Also probes the rule: the same check with ours' largest
 * element corrupted by 1e-3 relative must fail (counted in parity.probed/caught). */
bool parity_judge(const char *what, const qg_tensor *ours, const qg_tensor *torch, const qg_tensor *ref);
/* A fake-quantized float32 tensor, ours on a grid of step `step`, PyTorch's on one of
 * `torch_step` (each side's own scale, judged apart by parity_judge): every element's
 * integer level (value / step) equals PyTorch's, and its bits too where the steps are
 * equal, except "flips", levels one apart (a pre-quantization value within rounding
 * error of a rounding tie, rounded the other way). At most PARITY_MAX_FLIPS of the
 * elements may flip. Returns the flip count in *flips. */
bool parity_judge_grid(const char *what, const qg_tensor *ours, double step, const qg_tensor *torch, double torch_step,
                       int64_t *flips);
/* Prints the tallies: the worst ratio error/bound and the corruption probe's count;
 * a corruption that passed counts as a failure. */
void parity_report(void);
/* Loads the fixture named in argv[1] and runs every case of it that ends in ".out"
 * through the table. Returns the loaded dict (the caller frees it) or NULL. */
qg_tensor_dict *parity_run(int argc, char **argv, op_case *cases, int ncases);
#endif
