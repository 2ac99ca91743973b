/* libFuzzer target: the first byte of the input picks the load options (label kind, class
 * count), the rest is one to four .npy files separated by FUZZ_FILE_SEPARATOR: x, y, x_test,
 * y_test. One file is read alone and also as both inputs and labels of a dataset; more make a
 * dataset of x/y pairs. The readers must load them or name the problem, never crash, read
 * outside a file or allocate what a header claims before the file backs it; a loaded dataset's
 * sizes must be those of its shapes. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_files.h"
#include "runtime/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const NPY_FILES[FUZZ_MAX_FILES] = {"x.npy", "y.npy", "x_test.npy", "y_test.npy"};

/* Bits 0-1: label kind; bit 2: 3 classes. */
static nnc_rt_load_options options_from(uint8_t b) {
  static const nnc_rt_label_kind kinds[] = {NNC_RT_LABELS_AUTO, NNC_RT_LABELS_CLASS, NNC_RT_LABELS_VALUE,
                                            NNC_RT_LABELS_AUTO};
  return (nnc_rt_load_options){NULL, kinds[b & 3], b & 4 ? 3 : 0};
}

static void read_one(const char *path) {
  nnc_rt_array a;
  char err[512];
  if (nnc_rt_npy_read(path, &a, err, sizeof err)) fuzz_touch(a.data, a.count * nnc_rt_dtype_size(a.dtype));
  nnc_rt_array_free(&a);
}

static void use_split(const nnc_rt_dataset *ds, const nnc_rt_split *sp) {
  size_t label_size = ds->label_kind == NNC_RT_LABELS_CLASS ? sizeof(int32_t) : sizeof(float);
  fuzz_touch(sp->x, (size_t)sp->n * ds->x_bytes);
  fuzz_touch(sp->y, (size_t)sp->n * ds->label_elems * label_size);
}

/* The per-example sizes a dataset reports are those of its shapes, without wrapping around. */
static size_t elements(const int64_t *shape, int rank) {
  size_t n = 1;
  for (int i = 0; i < rank; i++)
    if (shape[i] < 0 || __builtin_mul_overflow(n, (size_t)shape[i], &n)) abort();
  return n;
}

static void check_sizes(const nnc_rt_dataset *ds) {
  if (elements(ds->x_shape, ds->x_rank) != ds->x_elems) abort();
  if (elements(ds->label_shape, ds->label_rank) != ds->label_elems) abort();
}

static void load_dataset(const char *const *paths, const nnc_rt_load_options *opt) {
  nnc_rt_dataset ds;
  char err[512];
  if (nnc_rt_load_npy(paths[0], paths[1], paths[2], paths[3], opt, &ds, err, sizeof err)) {
    check_sizes(&ds);
    use_split(&ds, &ds.train);
    use_split(&ds, &ds.test);
  }
  nnc_rt_dataset_free(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  nnc_rt_load_options opt = options_from(data[0]);
  fuzz_part parts[FUZZ_MAX_FILES];
  int n = fuzz_split(data + 1, size - 1, parts);
  const char *paths[FUZZ_MAX_FILES] = {0};
  for (int i = 0; i < n; i++) paths[i] = fuzz_write_file(NPY_FILES[i], parts[i].data, parts[i].size);
  if (n == 1) {
    read_one(paths[0]);
    paths[1] = paths[0];
  }
  load_dataset(paths, &opt);
  fuzz_remove_files();
  return 0;
}
