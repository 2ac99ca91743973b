/* Helpers the data readers share (runtime/data*.c); not part of the runtime's interface. */
#ifndef NNC_DATA_INTERNAL_H
#define NNC_DATA_INTERNAL_H

#include "runtime/data.h"
#include "runtime/files.h"
#include "runtime/report.h"

#include <stdarg.h>
#include <stdio.h>


/* a * b, false on overflow of size_t. */
static inline bool nnc_rt_mul_size(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}


/* Label values before they become class ids or targets: one double per label element, which
 * holds every i32/u8 id and every f32 value exactly. `lines` (may be NULL) names the source
 * line of each train example in messages, as CSV files have. */
typedef struct nnc_rt_raw_labels {
  const double *train, *test;
  const int64_t *lines;
  bool integral_dtype; /* the file's label type is an integer type (.npy) */
} nnc_rt_raw_labels;

/* Decides CLASS or VALUE (options->label_kind, or AUTO's rule), checks every id, and fills
 * ds->train.y, ds->test.y, num_classes and the label kind. label_rank/shape/elems are set by
 * the caller first. */
bool nnc_rt_finish_labels(nnc_rt_dataset *, const nnc_rt_raw_labels *, bool csv,
                          const nnc_rt_load_options *, const char *path, char *err, size_t cap);

/* The element of dtype t at p, as a double (which holds every value of every dtype but i64's
 * largest exactly). */
double nnc_rt_load_elem(nnc_rt_dtype t, const uint8_t *p);

/* Sets the per-example input fields from a shape. False if the sizes overflow. */
bool nnc_rt_set_example_shape(nnc_rt_dataset *, nnc_rt_dtype, int rank, const int64_t *shape);

#endif
