/* safetensors files (the format of Hugging Face's safetensors, which PyTorch users exchange):
 *
 *   8 bytes   N, little-endian u64
 *   N bytes   a JSON object {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
 *             ..., "__metadata__": {"<key>": "<value>", ...}}, padded with spaces
 *   the rest  the data buffer; tensor <name> is bytes [b, e) of it, row-major, little-endian
 *
 * The reader checks everything a hostile or damaged file could get wrong (docs/checkpoints.md
 * lists the checks) and names the file and the problem in one message. The writer replaces
 * its target atomically (runtime/atomic_file.h), so a crash or a full disk never leaves a
 * half-written checkpoint; NNC_FAULT_WRITE_AFTER=<bytes> injects a write failure for tests.
 *
 * Errors: functions return false and write "<path>: <problem>" into err (cap bytes). */
#ifndef NNC_SAFETENSORS_H
#define NNC_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The dtypes whose elements are whole bytes; the names are the format's. */
#define NNC_ST_DTYPES(X) \
  X(BOOL, 1)             \
  X(U8, 1)               \
  X(I8, 1)               \
  X(F8_E5M2, 1)          \
  X(F8_E4M3, 1)          \
  X(I16, 2)              \
  X(U16, 2)              \
  X(F16, 2)              \
  X(BF16, 2)             \
  X(I32, 4)              \
  X(U32, 4)              \
  X(F32, 4)              \
  X(I64, 8)              \
  X(U64, 8)              \
  X(F64, 8)

typedef enum nnc_st_dtype {
#define NNC_ST_ENUM(name, size) NNC_ST_##name,
  NNC_ST_DTYPES(NNC_ST_ENUM)
#undef NNC_ST_ENUM
  NNC_ST_NUM_DTYPES
} nnc_st_dtype;

const char *nnc_st_dtype_name(nnc_st_dtype);
size_t nnc_st_dtype_size(nnc_st_dtype);
/* False for a name the format does not have (or that has sub-byte elements). */
bool nnc_st_dtype_from_name(const char *name, nnc_st_dtype *out);

#define NNC_ST_MAX_HEADER ((uint64_t)100000000)  /* as the reference implementation */

typedef struct nnc_st_tensor {
  const char *name;
  nnc_st_dtype dtype;
  int rank;                   /* 0: a scalar */
  const int64_t *shape;
  const void *data;           /* nbytes bytes; see nnc_st_file on alignment */
  size_t nbytes;              /* product(shape) * dtype size */
  uint64_t offset;            /* reader: where data starts in the data buffer */
} nnc_st_tensor;

typedef struct nnc_st_meta {
  const char *key, *value;
} nnc_st_meta;

/* A file read into memory. Tensors are listed in data order (by offset). The data buffer is
 * allocated on its own (malloc alignment), so a tensor's data is aligned to its element
 * size whenever its offset is, which holds for files from nnc_st_write and from the
 * reference writer; others may need memcpy. */
typedef struct nnc_st_file {
  nnc_st_tensor *tensors;
  size_t ntensors;
  nnc_st_meta *meta;          /* "__metadata__", in the header's order */
  size_t nmeta;
  const unsigned char *data;  /* the data buffer */
  size_t data_size;
  void *storage_;             /* what nnc_st_free releases */
  unsigned char *owned_data_;
} nnc_st_file;

/* Reads and checks the whole file. On failure *out is empty (nnc_st_free is still safe). */
bool nnc_st_read(const char *path, nnc_st_file *out, char *err, size_t cap);
/* Checks a file image in memory; tensors point into bytes, which must outlive *out. name
 * is only used in messages. */
bool nnc_st_parse(const char *name, const void *bytes, size_t size, nnc_st_file *out, char *err,
                  size_t cap);
void nnc_st_free(nnc_st_file *);

const nnc_st_tensor *nnc_st_find(const nnc_st_file *, const char *name);
const char *nnc_st_meta_get(const nnc_st_file *, const char *key);

/* Writes tensors (name, dtype, rank, shape, data; nbytes and offset are ignored and
 * recomputed) and metadata (NULL when nmeta is 0). Names must be unique, non-empty and
 * not "__metadata__". Data is laid out contiguously, by descending element size then name
 * (as the reference writer does, so every tensor is aligned); header keys are sorted and
 * the header is padded with spaces to a multiple of 8. Atomic: see runtime/atomic_file.h. */
bool nnc_st_write(const char *path, const nnc_st_tensor *tensors, size_t n, const nnc_st_meta *meta,
                  size_t nmeta, char *err, size_t cap);

#endif
