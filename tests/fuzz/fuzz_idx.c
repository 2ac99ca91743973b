/* libFuzzer target: the input is an MNIST-layout dataset, its files separated by
 * FUZZ_FILE_SEPARATOR in the order of IDX_FILES (absent files stay absent). Each may be gzip or
 * raw; nnc_rt_load_idx must load it or name the problem, never crash, hang or allocate what a
 * header claims before the data backs it. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_files.h"
#include "runtime/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const IDX_FILES[FUZZ_MAX_FILES] = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

static void use_split(const nnc_rt_dataset *ds, const nnc_rt_split *sp) {
  fuzz_touch(sp->x, (size_t)sp->n * ds->x_bytes);
  fuzz_touch(sp->y, (size_t)sp->n * ds->label_elems * sizeof(int32_t));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_part parts[FUZZ_MAX_FILES];
  int n = fuzz_split(data, size, parts);
  for (int i = 0; i < n; i++) fuzz_write_file(IDX_FILES[i], parts[i].data, parts[i].size);
  nnc_rt_dataset ds;
  char err[512];
  if (nnc_rt_load_idx(fuzz_dir(), &ds, err, sizeof err)) {
    use_split(&ds, &ds.train);
    use_split(&ds, &ds.test);
  }
  nnc_rt_dataset_free(&ds);
  fuzz_remove_files();
  return 0;
}
