/* Per-thread error state: the status and message of the last failure. */
#include <stdarg.h>

#include "internal.h"

static _Thread_local char err_msg[1024];
static _Thread_local qg_status err_status;
static _Thread_local uint64_t err_serial; /* counts qg__err calls */

uint64_t qg__err_serial(void) { return err_serial; }

qg_status qg__err(qg_status st, const char *fmt, ...) {
    char tmp[sizeof err_msg]; /* the arguments may include qg_last_error() itself */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(err_msg, tmp, sizeof err_msg);
    err_status = st;
    err_serial++;
    return st;
}

qg_status qg__err_null(const char *op) {
    if (err_status != QG_OK) return QG_EINVAL;
    return qg__err(QG_EINVAL, "%s: input is NULL", op);
}

const char *qg_last_error(void) { return err_msg; }
qg_status qg_last_status(void) { return err_status; }

void qg_clear_error(void) {
    err_msg[0] = 0;
    err_status = QG_OK;
}
