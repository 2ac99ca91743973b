/* Data sources for training and evaluation (docs/training.md describes each format, the checks
 * made, shuffling and augmentation).
 *
 * A dataset is N examples of one fixed input shape, kept as the values of its file in the
 * file's dtype (u8 images stay u8: normalization is part of the compiled graph), plus one label
 * per example: an i32 class id, or f32 target values (regression). It has a train split and a
 * test split; a source without a test set gets one from nnc_rt_dataset_split_validation.
 *
 * Readers are strict and never trust a header: every size is checked against what the file
 * holds before anything is allocated, and every failure is a message "<file>: <problem>"
 * written into err (cap bytes), with the function returning false and the dataset left empty.
 *
 * Randomness (shuffles, augmentation, the validation split) comes from Philox4x32-10
 * (runtime/philox.h) keyed by (seed, epoch), so a seed gives the same stream bit for bit on
 * every backend and epoch k needs nothing from epochs before it. */
#ifndef NNC_DATA_H
#define NNC_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NNC_RT_MAX_RANK 8

/* The element types a data file may hold. */
typedef enum nnc_rt_dtype {
  NNC_RT_U8,
  NNC_RT_I8,
  NNC_RT_U16,
  NNC_RT_I16,
  NNC_RT_U32,
  NNC_RT_I32,
  NNC_RT_I64,
  NNC_RT_F32,
  NNC_RT_F64,
} nnc_rt_dtype;

const char *nnc_rt_dtype_name(nnc_rt_dtype);
size_t nnc_rt_dtype_size(nnc_rt_dtype);

/* The runtime's out-of-memory hook: a reader, the training loop or an executor calls it with
 * the size of a large allocation that failed, before reporting the failure as an error. The
 * nnc driver installs one that exits with the environment status (3); unset (a program that
 * links the runtime as a library), it does nothing and the error is returned as usual. */
void nnc_rt_set_oom_handler(void (*)(size_t bytes));
void nnc_rt_oom(size_t bytes);

typedef enum nnc_rt_label_kind {
  NNC_RT_LABELS_AUTO,  /* readers choose: see nnc_rt_load_options */
  NNC_RT_LABELS_CLASS, /* i32 class ids, 0 <= id < num_classes: one per example, or label_shape
                        * of them (text: one next-token id per position, [T]) */
  NNC_RT_LABELS_VALUE, /* f32 targets, label_shape per example */
} nnc_rt_label_kind;

typedef struct nnc_rt_split {
  int64_t n;   /* examples */
  uint8_t *x;  /* n * x_bytes, in x_dtype */
  void *y;     /* n * label_elems int32_t (classes) or float (values) */
} nnc_rt_split;

/* A byte-level vocabulary: id i is the byte bytes[i]; the bytes that occur, ascending. */
typedef struct nnc_rt_vocab {
  int32_t size;
  uint8_t bytes[256];
} nnc_rt_vocab;

typedef struct nnc_rt_dataset {
  nnc_rt_dtype x_dtype;
  int x_rank;                        /* shape of one example */
  int64_t x_shape[NNC_RT_MAX_RANK];
  size_t x_elems, x_bytes;           /* per example */
  nnc_rt_label_kind label_kind;      /* CLASS or VALUE once loaded */
  int label_rank;                    /* per example: 0 for class ids, e.g. 1 ([1]) for CSV targets */
  int64_t label_shape[NNC_RT_MAX_RANK];
  size_t label_elems;                /* per example: 1 for class ids */
  int32_t num_classes;               /* CLASS only; 0 for VALUE */
  nnc_rt_split train, test;
  nnc_rt_vocab vocab;                /* text: the token of every id; size 0 for other sources */
  double unigram_entropy;            /* text: nats per token of the whole text's distribution */
} nnc_rt_dataset;

void nnc_rt_dataset_free(nnc_rt_dataset *);

/* Options of the sources whose files do not fix the labels (CSV, .npy). Zero-initialized
 * options are the defaults. */
typedef struct nnc_rt_load_options {
  /* CSV: the label column, a header name or a 0-based index ("3"); NULL: the last column. */
  const char *label_column;
  /* AUTO: CSV -> class ids when every label is a non-negative integer, else values;
   * .npy -> class ids for integer dtypes, values for float dtypes. */
  nnc_rt_label_kind label_kind;
  /* Class ids must be below it; 0: one more than the largest id seen. */
  int32_t num_classes;
} nnc_rt_load_options;

/* MNIST layout (MNIST, Fashion-MNIST, KMNIST): <dir>/train-images-idx3-ubyte.gz,
 * train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, each
 * gzip-compressed or, when the .gz file is absent, the same name without .gz uncompressed.
 * Examples u8 [rows, cols]; 10 classes. */
bool nnc_rt_load_idx(const char *dir, nnc_rt_dataset *, char *err, size_t cap);

/* CIFAR-10 binary version: <dir>/data_batch_1.bin .. data_batch_5.bin (train), test_batch.bin
 * (test); records of 1 label byte + 3072 bytes. Examples u8 [3, 32, 32] (CHW); 10 classes. */
bool nnc_rt_load_cifar10(const char *dir, nnc_rt_dataset *, char *err, size_t cap);

/* A CSV file of numbers: features f32 [columns - 1], the label column as options say. The
 * whole file is the train split. */
bool nnc_rt_load_csv(const char *path, const nnc_rt_load_options *, nnc_rt_dataset *, char *err,
                     size_t cap);

/* NumPy .npy pairs: x [N, ...] in its dtype and y [N] or [N, ...]. x_test/y_test may both be
 * NULL (no test split). */
bool nnc_rt_load_npy(const char *x_path, const char *y_path, const char *x_test_path,
                     const char *y_test_path, const nnc_rt_load_options *, nnc_rt_dataset *,
                     char *err, size_t cap);

/* One .npy array, read strictly (version 1.0, 2.0 or 3.0; C order; little-endian or
 * byte-sized dtypes). */
typedef struct nnc_rt_array {
  nnc_rt_dtype dtype;
  int rank;
  int64_t shape[NNC_RT_MAX_RANK];
  size_t count;                      /* product of shape */
  void *data;
} nnc_rt_array;

bool nnc_rt_npy_read(const char *path, nnc_rt_array *, char *err, size_t cap);
void nnc_rt_array_free(nnc_rt_array *);

/* A text file, or every regular file of a directory (sorted by name, concatenated, symbolic
 * links and names starting with '.' skipped), as a character-level language-modelling set:
 * tokens are bytes, the vocabulary the bytes that occur. The last val_fraction of the text is
 * the test split. Each part is cut into windows of seq_len + 1 tokens, starting every `stride`
 * tokens in the train part (every seq_len in the test part: each held-out token is predicted
 * once); an example is the window's first seq_len ids (i32 [T]), its label the last seq_len
 * (i32 [T]: the next token at every position). */
typedef struct nnc_rt_text_options {
  int64_t seq_len;      /* T, >= 1 */
  int64_t stride;       /* 0: seq_len (non-overlapping windows) */
  double val_fraction;  /* of the text held out at its end; 0: 0.1 */
} nnc_rt_text_options;

bool nnc_rt_load_text(const char *path, const nnc_rt_text_options *, nnc_rt_dataset *, char *err,
                      size_t cap);

/* The id of a byte, or -1 when the vocabulary does not have it. */
int32_t nnc_rt_vocab_id(const nnc_rt_vocab *, uint8_t byte);
/* The vocabulary as lowercase hex, two digits per byte (cap >= 2 * size + 1), and back: the
 * form checkpoints keep it in. Parsing fails on odd lengths, non-hex digits, an empty string
 * and bytes not strictly ascending. */
void nnc_rt_vocab_to_hex(const nnc_rt_vocab *, char *out, size_t cap);
bool nnc_rt_vocab_from_hex(const char *hex, nnc_rt_vocab *);

/* Moves a fraction 0 < F < 1 of the train split into the (empty) test split: the validation
 * examples are the last round(F * n) positions of a fixed shuffle drawn from Philox with key
 * (seed, 0) on its own stream, so they do not depend on the epoch orders. Both parts keep the
 * file's order. Fails when the dataset already has a test split or a part would be empty. */
bool nnc_rt_dataset_split_validation(nnc_rt_dataset *, double fraction, uint64_t seed, char *err,
                                     size_t cap);

/* Converts every example to dtype (e.g. f64 .npy features to the model's f32). */
bool nnc_rt_dataset_cast_inputs(nnc_rt_dataset *, nnc_rt_dtype, char *err, size_t cap);

/* The order of epoch `epoch`: perm[0..n) is a permutation of 0..n-1, a Fisher-Yates shuffle
 * drawing from Philox with key (seed, epoch) in a fixed order. n <= UINT32_MAX. */
void nnc_rt_epoch_order(int64_t n, uint64_t seed, uint32_t epoch, uint32_t *perm);

/* Copies examples idx[0..count) of a split into contiguous x_out (count * x_bytes) and y_out
 * (count * label_elems int32_t or float; may be NULL). False if an index is out of range. */
bool nnc_rt_gather(const nnc_rt_dataset *, const nnc_rt_split *, const uint32_t *idx, int64_t count,
                   void *x_out, void *y_out);

/* Image augmentation of a gathered batch, in place: a random crop of the image zero-padded by
 * `pad` on every side back to H x W, then a horizontal flip with probability 1/2 if `flip`.
 * Examples are [..., H, W] (the leading dimensions are channels and share one draw). The draw
 * for an example comes from Philox with key (seed, epoch) and counter = its index in the split,
 * so it is the same whatever the batch size or order. */
typedef struct nnc_rt_augment {
  int pad;
  bool flip;
  uint64_t seed;
} nnc_rt_augment;

bool nnc_rt_augment_batch(const nnc_rt_augment *, const nnc_rt_dataset *, void *x,
                          const uint32_t *idx, int64_t count, uint32_t epoch, char *err, size_t cap);

#endif
