/* Numeric comparison with a worst-element report (see compare.h). */
#include "compare.h"

#include <math.h>
#include <stdio.h>

/* How far element pair (x, ref) is outside its tolerance: <= 1 passes, INFINITY for a NaN or
 * infinity that the other side does not match. */
static double excess(double x, double ref, double tol, double *err) {
  if (isnan(x) || isnan(ref)) {
    *err = isnan(x) && isnan(ref) ? 0 : INFINITY;
    return *err;
  }
  if (isinf(x) || isinf(ref)) {
    *err = x == ref ? 0 : INFINITY;
    return *err;
  }
  *err = fabs(x - ref);
  if (*err == 0) return 0;
  return tol > 0 ? *err / tol : INFINITY;
}

nnc_compare_result nnc_compare_fn(int64_t count, double (*get_a)(const void *, int64_t), const void *a,
                                  double (*get_b)(const void *, int64_t), const void *b, double atol, double rtol) {
  nnc_compare_result r = {.ok = true, .count = count, .worst = -1, .atol = atol, .rtol = rtol};
  double worst_excess = -1;
  for (int64_t i = 0; i < count; i++) {
    double x = get_a(a, i), ref = get_b(b, i), err;
    double tol = atol + rtol * fabs(ref);
    double e = excess(x, ref, tol, &err);
    if (isfinite(err) && err > r.max_abs_err) r.max_abs_err = err;
    if (e > 1) r.nbad++;
    if (e > worst_excess) {
      worst_excess = e;
      r.worst = i, r.worst_a = x, r.worst_b = ref, r.worst_err = err, r.worst_tol = isfinite(tol) ? tol : 0;
    }
  }
  r.ok = r.nbad == 0;
  return r;
}

static double get_f64(const void *p, int64_t i) { return ((const double *)p)[i]; }
static double get_tensor(const void *p, int64_t i) { return nnc_tensor_get(p, i); }

nnc_compare_result nnc_compare_f64(const double *a, const double *b, int64_t count, double atol, double rtol) {
  return nnc_compare_fn(count, get_f64, a, get_f64, b, atol, rtol);
}

nnc_compare_result nnc_compare_tensors(const nnc_tensor *a, const nnc_tensor *ref, double atol, double rtol) {
  int64_t na = nnc_tensor_elements(a), nb = nnc_tensor_elements(ref);
  bool same = na == nb && na >= 0 && a->type.rank == ref->type.rank;
  for (int i = 0; same && i < a->type.rank; i++) {
    int64_t da = a->type.dims[i] * (i == a->type.batch_axis ? a->n : 1);
    int64_t db = ref->type.dims[i] * (i == ref->type.batch_axis ? ref->n : 1);
    same = da == db;
  }
  if (!same) return (nnc_compare_result){.ok = false, .count = -1, .worst = -1, .atol = atol, .rtol = rtol};
  return nnc_compare_fn(na, get_tensor, a, get_tensor, ref, atol, rtol);
}

static size_t index_str(int64_t flat, const int64_t *dims, int rank, char *buf, size_t cap) {
  if (!dims || rank <= 0) return (size_t)snprintf(buf, cap, "%lld", (long long)flat);
  int64_t idx[16];
  if (rank > 16) rank = 16;
  for (int i = rank - 1; i >= 0; i--) {
    idx[i] = dims[i] > 0 ? flat % dims[i] : 0;
    flat = dims[i] > 0 ? flat / dims[i] : 0;
  }
  size_t len = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)idx[i]);
  if (len < cap) len += (size_t)snprintf(buf + len, cap - len, "]");
  return len;
}

char *nnc_compare_str(const nnc_compare_result *r, const int64_t *dims, int rank, char *buf, size_t cap) {
  if (cap == 0) return buf;
  if (r->count < 0) {
    snprintf(buf, cap, "shapes differ");
    return buf;
  }
  if (r->ok) {
    snprintf(buf, cap, "ok: %lld elements, max |a-b| %.3g", (long long)r->count, r->max_abs_err);
    return buf;
  }
  char where[160];
  index_str(r->worst, dims, rank, where, sizeof where);
  snprintf(buf, cap, "%lld of %lld elements outside |a-b| <= %.3g + %.3g*|b|; worst at %s: %.17g vs %.17g (|a-b| %.3g > tol %.3g)",
           (long long)r->nbad, (long long)r->count, r->atol, r->rtol, where, r->worst_a, r->worst_b, r->worst_err,
           r->worst_tol);
  return buf;
}
