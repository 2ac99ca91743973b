/* The runtime's failure messages; see report.h. */
#include "runtime/report.h"

#include <stdarg.h>
#include <stdio.h>

static void vformat_after(char *err, size_t cap, int at, const char *fmt, va_list ap) {
  if (at >= 0 && (size_t)at < cap) vsnprintf(err + at, cap - (size_t)at, fmt, ap);
}

bool nnc_rt_fail(char *err, size_t cap, const char *fmt, ...) {
  if (!err || cap == 0) return false;
  va_list ap;
  va_start(ap, fmt);
  vformat_after(err, cap, 0, fmt, ap);
  va_end(ap);
  return false;
}

bool nnc_rt_fail_at(char *err, size_t cap, const char *where, const char *fmt, ...) {
  if (!err || cap == 0) return false;
  va_list ap;
  va_start(ap, fmt);
  vformat_after(err, cap, snprintf(err, cap, "%s: ", where), fmt, ap);
  va_end(ap);
  return false;
}
