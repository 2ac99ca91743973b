/* libFuzzer target: the first byte of the input picks the load options (label column, label
 * kind, class count), the rest is a CSV file. nnc_rt_load_csv must load it or name the
 * problem, never crash, hang or read outside the file; what it loads must be finite, as the
 * reader promises (docs/training.md). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_files.h"
#include "runtime/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bits 0-1: label column (last, "0", "1", "label"); bits 2-3: label kind; bit 4: 3 classes. */
static nnc_rt_load_options options_from(uint8_t b) {
  static const char *const columns[] = {NULL, "0", "1", "label"};
  static const nnc_rt_label_kind kinds[] = {NNC_RT_LABELS_AUTO, NNC_RT_LABELS_CLASS, NNC_RT_LABELS_VALUE,
                                            NNC_RT_LABELS_AUTO};
  return (nnc_rt_load_options){columns[b & 3], kinds[(b >> 2) & 3], b & 16 ? 3 : 0};
}

static void check_finite(const float *v, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (!isfinite(v[i])) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  nnc_rt_load_options opt = options_from(data[0]);
  const char *path = fuzz_write_file("fuzz.csv", data + 1, size - 1);
  nnc_rt_dataset ds;
  char err[512];
  if (nnc_rt_load_csv(path, &opt, &ds, err, sizeof err)) {
    size_t labels = (size_t)ds.train.n * ds.label_elems;
    check_finite((const float *)ds.train.x, (size_t)ds.train.n * ds.x_elems);
    if (ds.label_kind == NNC_RT_LABELS_VALUE) check_finite(ds.train.y, labels);
    else fuzz_touch(ds.train.y, labels * sizeof(int32_t));
  }
  nnc_rt_dataset_free(&ds);
  fuzz_remove_files();
  return 0;
}
