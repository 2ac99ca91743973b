/* libFuzzer target: the input is a safetensors file. It is checked from memory (nnc_st_parse)
 * and read from a file (nnc_st_read); both must reject it or accept it alike, never crash,
 * read outside the input, leak, or allocate what a header size claims before checking it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_files.h"
#include "runtime/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Everything a caller may look at: the tensors' bytes and shapes, lookups, the metadata. */
static void use_file(const nnc_st_file *f) {
  unsigned sum = 0;
  for (size_t i = 0; i < f->ntensors; i++) {
    const nnc_st_tensor *t = &f->tensors[i];
    sum += fuzz_touch(t->data, t->nbytes) + fuzz_touch(t->shape, (size_t)t->rank * sizeof *t->shape);
    if (nnc_st_find(f, t->name) == NULL) abort();
  }
  for (size_t i = 0; i < f->nmeta; i++)
    if (nnc_st_meta_get(f, f->meta[i].key) == NULL) abort();
  (void)sum;
}

/* The two readers share the checks; they must agree on what they accept and on its content. */
static void compare(const nnc_st_file *a, const nnc_st_file *b) {
  if (a->ntensors != b->ntensors || a->nmeta != b->nmeta || a->data_size != b->data_size) abort();
  for (size_t i = 0; i < a->ntensors; i++) {
    const nnc_st_tensor *x = &a->tensors[i], *y = &b->tensors[i];
    if (strcmp(x->name, y->name) || x->nbytes != y->nbytes || (x->nbytes && memcmp(x->data, y->data, x->nbytes)))
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  nnc_st_file mem, file;
  bool from_memory = nnc_st_parse("fuzz.safetensors", data, size, &mem, err, sizeof err);
  const char *path = fuzz_write_file("fuzz.safetensors", data, size);
  bool from_file = nnc_st_read(path, &file, err, sizeof err);
  if (from_memory != from_file) abort();
  if (from_memory) {
    use_file(&mem);
    compare(&mem, &file);
  }
  nnc_st_free(&mem);
  nnc_st_free(&file);
  fuzz_remove_files();
  return 0;
}
