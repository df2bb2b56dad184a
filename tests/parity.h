/* Shared runner of the PyTorch parity tests: a table of cases (fixture case name ->
 * function building qgrad's output from the fixture's inputs), and the comparison
 * rules described in tests/test_parity_ops.c. */
#ifndef QG_PARITY_H
#define QG_PARITY_H
#include <stdbool.h>

#include "qgrad/autograd.h"
#include "qgrad/nn.h"

#define TOL_EW 1e-6
#define TOL_RED 1e-5
#define TOL_F64 1e-10
#define MAX_IN 8

typedef qg_tensor *(*case_fn)(qg_tensor *const *in, qg_tensor **aux);

typedef struct op_case {
    const char *name; /* fixture case; <name>_f64 runs the same function */
    case_fn fn;
    double tol;       /* float32 tolerance */
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

/* The fixture file being checked (set by parity_run). */
extern const qg_tensor_dict *parity_fixture;
/* The fixture's tensor "<c>.<what>", or NULL (no error) if it has none. */
qg_tensor *parity_fx(const char *c, const char *what);
/* Error measure of ours vs PyTorch's (see test_parity_ops.c), INFINITY on shape mismatch. */
double parity_compare(const qg_tensor *a, const qg_tensor *b, char *why, size_t nwhy);
/* Loads the fixture named in argv[1] and runs every case of it that ends in ".out"
 * through the table; counts into *passed / *failed. Returns the loaded dict (the
 * caller frees it) or NULL. */
qg_tensor_dict *parity_run(int argc, char **argv, op_case *cases, int ncases, int *passed, int *failed);
#endif
