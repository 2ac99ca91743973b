/* How the runtime reports a failure: a message in the caller's buffer and false, so that a
 * reader, the training loop or an executor can `return nnc_rt_fail(...)`. Messages name what
 * failed first ("fashion/train-images-idx3-ubyte.gz: truncated gzip stream"). The compiler
 * reports through nnc_diags instead (ir/diag.h): the runtime depends on no compiler code. */
#ifndef NNC_RT_REPORT_H
#define NNC_RT_REPORT_H

#include <stdbool.h>
#include <stddef.h>

/* The message into err (cap bytes, cut to fit); returns false. err may be NULL. */
bool nnc_rt_fail(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "<where>: <message>" into err; returns false. */
bool nnc_rt_fail_at(char *err, size_t cap, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
