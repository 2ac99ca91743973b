/* Numeric comparison of a result against a reference (DESIGN §12): element i passes when
 * |a[i] - b[i]| <= atol + rtol * |b[i]|, b being the reference. NaN matches only NaN and an
 * infinity only the same infinity. A failure is reported by its worst element: the one whose
 * error exceeds its tolerance by the largest factor, with its index and both values, so a
 * message says where and by how much, not just "differs". */
#ifndef NNC_COMPARE_H
#define NNC_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "interp.h"

typedef struct nnc_compare_result {
  bool ok;
  int64_t count;           /* elements compared */
  int64_t nbad;            /* elements outside the tolerance */
  int64_t worst;           /* index of the worst element (largest error / tolerance), -1 if none */
  double worst_a, worst_b; /* its values: result, reference */
  double worst_err;        /* |a - b| there */
  double worst_tol;        /* atol + rtol * |b| there */
  double max_abs_err;      /* over all finite pairs */
  double atol, rtol;
} nnc_compare_result;

/* Compares count elements read through get(ctx, i) for the result and the reference. */
nnc_compare_result nnc_compare_fn(int64_t count, double (*get_a)(const void *, int64_t), const void *a,
                                  double (*get_b)(const void *, int64_t), const void *b, double atol, double rtol);
nnc_compare_result nnc_compare_f64(const double *a, const double *b, int64_t count, double atol, double rtol);
/* Two host tensors of one shape (any dtypes and storage); a shape mismatch is a failure
 * with worst = -1 and count = -1. */
nnc_compare_result nnc_compare_tensors(const nnc_tensor *a, const nnc_tensor *ref, double atol, double rtol);

/* "ok: 12 elements, max |a-b| 3e-07" or "3 of 12 elements outside |a-b| <= 1e-06 + 1e-05*|b|;
 * worst at [1,0,2]: 0.5 vs 0.49 (|a-b| 0.01 > tol 6e-06)". The index is written as a
 * multi-index when dims are given (rank > 0), else flat. Returns buf. */
char *nnc_compare_str(const nnc_compare_result *, const int64_t *dims, int rank, char *buf, size_t cap);

#endif
