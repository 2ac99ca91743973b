/* Datasets: labels, the validation split, casts, epoch orders, batch gathering and image
 * augmentation. The file readers are data_idx.c (IDX, CIFAR-10), data_csv.c and data_npy.c. */
#include "runtime/data.h"

#include "runtime/data_internal.h"
#include "runtime/philox.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Counter word 2 separates the uses of one (seed, epoch) key, so a shuffle and an
 * augmentation never draw the same numbers. */
enum { STREAM_SHUFFLE = 1, STREAM_AUGMENT = 2, STREAM_VALIDATION = 3 };


static void (*oom_handler)(size_t);

void nnc_rt_set_oom_handler(void (*h)(size_t)) { oom_handler = h; }

void nnc_rt_oom(size_t bytes) {
  if (oom_handler) oom_handler(bytes);
}

const char *nnc_rt_dtype_name(nnc_rt_dtype t) {
  static const char *const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "i64", "f32", "f64"};
  return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
}

size_t nnc_rt_dtype_size(nnc_rt_dtype t) {
  static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 8, 4, 8};
  return (unsigned)t < sizeof sizes / sizeof *sizes ? sizes[t] : 0;
}

void nnc_rt_dataset_free(nnc_rt_dataset *ds) {
  free(ds->train.x);
  free(ds->train.y);
  free(ds->test.x);
  free(ds->test.y);
  memset(ds, 0, sizeof *ds);
}

bool nnc_rt_set_example_shape(nnc_rt_dataset *ds, nnc_rt_dtype t, int rank, const int64_t *shape) {
  if (rank < 0 || rank > NNC_RT_MAX_RANK) return false;
  size_t elems = 1;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0 || !nnc_rt_mul_size(elems, (size_t)shape[i], &elems)) return false;
    ds->x_shape[i] = shape[i];
  }
  ds->x_dtype = t;
  ds->x_rank = rank;
  ds->x_elems = elems;
  return nnc_rt_mul_size(elems, nnc_rt_dtype_size(t), &ds->x_bytes);
}

/* ---- labels ---- */

static bool all_class_ids(const double *v, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!(v[i] >= 0 && v[i] <= INT32_MAX && v[i] == floor(v[i]))) return false;
  return true;
}

/* Names where example i of a split comes from: a CSV line or an example number. */
static void label_site(char *buf, size_t cap, const nnc_rt_raw_labels *raw, bool test, int64_t i) {
  if (!test && raw->lines)
    snprintf(buf, cap, "line %" PRId64, raw->lines[i]);
  else
    snprintf(buf, cap, "%sexample %" PRId64, test ? "test " : "", i);
}

static bool check_class_ids(const nnc_rt_raw_labels *raw, const double *v, int64_t n, bool test,
                            int32_t num_classes, const char *path, char *err, size_t cap) {
  char site[64];
  for (int64_t i = 0; i < n; i++) {
    if (v[i] >= 0 && v[i] < (double)num_classes && v[i] == floor(v[i])) continue;
    label_site(site, sizeof site, raw, test, i);
    if (v[i] == floor(v[i]) && v[i] >= 0)
      return nnc_rt_fail_at(err, cap, path, "%s: label %.17g is out of range (%" PRId32 " classes)",
                              site, v[i], num_classes);
    return nnc_rt_fail_at(err, cap, path, "%s: label %.17g is not a class id (a non-negative integer)",
                            site, v[i]);
  }
  return true;
}

static int32_t classes_seen(const double *v, int64_t n, int32_t sofar) {
  for (int64_t i = 0; i < n; i++)
    if (v[i] >= sofar) sofar = (int32_t)v[i] + 1;
  return sofar;
}

static void *labels_as_ids(const double *v, int64_t n) {
  int32_t *out = malloc((size_t)(n ? n : 1) * sizeof *out);
  if (out)
    for (int64_t i = 0; i < n; i++) out[i] = (int32_t)v[i];
  return out;
}

/* Targets become f32: a finite label beyond its range would turn into an infinity. (Labels
 * that are already inf or nan in a float file are the file's values and stay.) */
static bool check_f32_values(const nnc_rt_raw_labels *raw, const double *v, int64_t n, size_t elems,
                             bool test, const char *path, char *err, size_t cap) {
  char site[64];
  for (size_t i = 0; i < (size_t)n * elems; i++) {
    if (!isfinite(v[i]) || fabs(v[i]) <= FLT_MAX) continue;
    label_site(site, sizeof site, raw, test, (int64_t)(i / elems));
    return nnc_rt_fail_at(err, cap, path, "%s: label %.17g is outside the f32 range", site, v[i]);
  }
  return true;
}

static void *labels_as_values(const double *v, size_t count) {
  float *out = malloc((count ? count : 1) * sizeof *out);
  if (out)
    for (size_t i = 0; i < count; i++) out[i] = (float)v[i];
  return out;
}

bool nnc_rt_finish_labels(nnc_rt_dataset *ds, const nnc_rt_raw_labels *raw, bool csv,
                          const nnc_rt_load_options *opt, const char *path, char *err, size_t cap) {
  int64_t ntr = ds->train.n, nte = ds->test.n;
  nnc_rt_label_kind kind = opt->label_kind;
  if (kind == NNC_RT_LABELS_AUTO) {
    bool ids = csv ? all_class_ids(raw->train, ntr) && all_class_ids(raw->test, nte)
                   : raw->integral_dtype;
    kind = ids && ds->label_elems == 1 ? NNC_RT_LABELS_CLASS : NNC_RT_LABELS_VALUE;
  }
  if (kind == NNC_RT_LABELS_CLASS) {
    if (ds->label_elems != 1 || ds->label_rank > 1)
      return nnc_rt_fail_at(err, cap, path, "class labels need one id per example, not %zu values",
                              ds->label_elems);
    int32_t k = opt->num_classes;
    if (k < 0) return nnc_rt_fail_at(err, cap, path, "negative number of classes %" PRId32, k);
    if (k == 0) {
      /* Inferring: reject what is not an id first, so the message says so. */
      if (!check_class_ids(raw, raw->train, ntr, false, INT32_MAX, path, err, cap) ||
          !check_class_ids(raw, raw->test, nte, true, INT32_MAX, path, err, cap))
        return false;
      k = classes_seen(raw->test, nte, classes_seen(raw->train, ntr, 0));
    }
    if (!check_class_ids(raw, raw->train, ntr, false, k, path, err, cap) ||
        !check_class_ids(raw, raw->test, nte, true, k, path, err, cap))
      return false;
    ds->label_rank = 0;
    ds->num_classes = k;
    ds->train.y = labels_as_ids(raw->train, ntr);
    ds->test.y = labels_as_ids(raw->test, nte);
  } else {
    if (!check_f32_values(raw, raw->train, ntr, ds->label_elems, false, path, err, cap) ||
        !check_f32_values(raw, raw->test, nte, ds->label_elems, true, path, err, cap))
      return false;
    ds->num_classes = 0;
    ds->train.y = labels_as_values(raw->train, (size_t)ntr * ds->label_elems);
    ds->test.y = labels_as_values(raw->test, (size_t)nte * ds->label_elems);
  }
  ds->label_kind = kind;
  if (!ds->train.y || !ds->test.y) return nnc_rt_fail_at(err, cap, path, "out of memory for labels");
  return true;
}

/* ---- Philox streams ---- */

typedef struct philox_stream {
  uint32_t key[2], ctr[4], buf[4];
  int used;
} philox_stream;

/* Key (low 32 bits of the seed, epoch); the seed's high bits go into counter word 3, so every
 * 64-bit seed gives its own stream. Counter words 0-1 count blocks of four draws. */
static void stream_init(philox_stream *s, uint64_t seed, uint32_t epoch, uint32_t stream) {
  s->key[0] = (uint32_t)seed;
  s->key[1] = epoch;
  s->ctr[0] = s->ctr[1] = 0;
  s->ctr[2] = stream;
  s->ctr[3] = (uint32_t)(seed >> 32);
  s->used = 4;
}

static uint32_t stream_next(philox_stream *s) {
  if (s->used == 4) {
    nnc_philox4x32(s->ctr, s->key, s->buf);
    if (++s->ctr[0] == 0) s->ctr[1]++;
    s->used = 0;
  }
  return s->buf[s->used++];
}

/* Uniform in [0, bound), bound > 0, without bias: Lemire's multiply-shift with rejection. */
static uint32_t stream_below(philox_stream *s, uint32_t bound) {
  uint64_t m = (uint64_t)stream_next(s) * bound;
  uint32_t low = (uint32_t)m;
  if (low < bound) {
    uint32_t threshold = (uint32_t)-bound % bound;
    while (low < threshold) {
      m = (uint64_t)stream_next(s) * bound;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

static void shuffle(uint32_t *perm, int64_t n, philox_stream *s) {
  for (int64_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
  for (int64_t i = n - 1; i > 0; i--) {
    uint32_t j = stream_below(s, (uint32_t)(i + 1));
    uint32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

void nnc_rt_epoch_order(int64_t n, uint64_t seed, uint32_t epoch, uint32_t *perm) {
  philox_stream s;
  stream_init(&s, seed, epoch, STREAM_SHUFFLE);
  shuffle(perm, n, &s);
}

/* ---- splits, casts, batches ---- */

/* Bytes of one example's labels: label_elems i32 ids or f32 values (a class label without a
 * shape is one id). */
static size_t label_bytes(const nnc_rt_dataset *ds) {
  size_t elem = ds->label_kind == NNC_RT_LABELS_CLASS ? sizeof(int32_t) : sizeof(float);
  return (ds->label_elems ? ds->label_elems : 1) * elem;
}

static bool copy_examples(const nnc_rt_dataset *ds, const nnc_rt_split *from, const uint32_t *idx,
                          int64_t count, nnc_rt_split *to) {
  size_t ybytes = label_bytes(ds);
  to->n = count;
  to->x = malloc(count && ds->x_bytes ? (size_t)count * ds->x_bytes : 1);
  to->y = malloc(count ? (size_t)count * ybytes : 1);
  if (!to->x || !to->y) return false;
  return nnc_rt_gather(ds, from, idx, count, to->x, to->y);
}

bool nnc_rt_dataset_split_validation(nnc_rt_dataset *ds, double fraction, uint64_t seed, char *err,
                                     size_t cap) {
  const char *what = "validation split";
  if (!(fraction > 0 && fraction < 1))
    return nnc_rt_fail_at(err, cap, what, "fraction %g is not between 0 and 1", fraction);
  if (ds->test.n > 0)
    return nnc_rt_fail_at(err, cap, what, "the dataset already has a test split");
  int64_t n = ds->train.n, k = llround(fraction * (double)n);
  if (k < 1 || k >= n)
    return nnc_rt_fail_at(err, cap, what,
                            "%g of %" PRId64 " examples leaves an empty train or validation part",
                            fraction, n);
  uint32_t *perm = malloc((size_t)n * sizeof *perm);
  bool *held_out = calloc((size_t)n, sizeof *held_out);
  uint32_t *order = malloc((size_t)n * sizeof *order);
  bool ok = perm && held_out && order;
  if (ok) {
    philox_stream s;
    stream_init(&s, seed, 0, STREAM_VALIDATION);
    shuffle(perm, n, &s);
    for (int64_t i = n - k; i < n; i++) held_out[perm[i]] = true;
    /* Both parts in file order: train examples first, then the held-out ones. */
    int64_t a = 0, b = n - k;
    for (int64_t i = 0; i < n; i++) order[held_out[i] ? b++ : a++] = (uint32_t)i;
    nnc_rt_split train = {0}, test = {0};
    ok = copy_examples(ds, &ds->train, order, n - k, &train) &&
         copy_examples(ds, &ds->train, order + (n - k), k, &test);
    if (ok) {
      free(ds->train.x);
      free(ds->train.y);
      free(ds->test.x);
      free(ds->test.y);
      ds->train = train;
      ds->test = test;
    } else {
      free(train.x), free(train.y), free(test.x), free(test.y);
    }
  }
  free(perm);
  free(held_out);
  free(order);
  return ok ? true : nnc_rt_fail_at(err, cap, what, "out of memory");
}

double nnc_rt_load_elem(nnc_rt_dtype t, const uint8_t *p) {
  switch (t) {
#define LOAD(tag, type) \
  case tag: {           \
    type v;             \
    memcpy(&v, p, sizeof v); \
    return (double)v;   \
  }
    LOAD(NNC_RT_U8, uint8_t)
    LOAD(NNC_RT_I8, int8_t)
    LOAD(NNC_RT_U16, uint16_t)
    LOAD(NNC_RT_I16, int16_t)
    LOAD(NNC_RT_U32, uint32_t)
    LOAD(NNC_RT_I32, int32_t)
    LOAD(NNC_RT_I64, int64_t)
    LOAD(NNC_RT_F32, float)
    LOAD(NNC_RT_F64, double)
#undef LOAD
  }
  return 0;
}

/* Stores v as t; false if t is an integer type that cannot hold v exactly, or if v is finite
 * and beyond f32's range (it would become an infinity). */
static bool store_elem(nnc_rt_dtype t, uint8_t *p, double v) {
  static const double lo[] = {0, INT8_MIN, 0, INT16_MIN, 0, INT32_MIN, -9007199254740992.0};
  static const double hi[] = {UINT8_MAX, INT8_MAX, UINT16_MAX, INT16_MAX, UINT32_MAX, INT32_MAX,
                              9007199254740992.0};
  if (t < NNC_RT_F32 && !(v >= lo[t] && v <= hi[t] && v == floor(v))) return false;
  if (t == NNC_RT_F32 && isfinite(v) && fabs(v) > FLT_MAX) return false;
  switch (t) {
#define STORE(tag, type) \
  case tag: {            \
    type x = (type)v;    \
    memcpy(p, &x, sizeof x); \
    return true;         \
  }
    STORE(NNC_RT_U8, uint8_t)
    STORE(NNC_RT_I8, int8_t)
    STORE(NNC_RT_U16, uint16_t)
    STORE(NNC_RT_I16, int16_t)
    STORE(NNC_RT_U32, uint32_t)
    STORE(NNC_RT_I32, int32_t)
    STORE(NNC_RT_I64, int64_t)
    STORE(NNC_RT_F32, float)
    STORE(NNC_RT_F64, double)
#undef STORE
  }
  return false;
}

static bool cast_split(const nnc_rt_dataset *ds, nnc_rt_split *sp, nnc_rt_dtype to, size_t to_size,
                       const char *name, char *err, size_t cap) {
  size_t count = (size_t)sp->n * ds->x_elems;
  uint8_t *out = malloc(count ? count * to_size : 1);
  if (!out) {
    nnc_rt_oom(count * to_size);
    return nnc_rt_fail_at(err, cap, "cast", "out of memory");
  }
  size_t from_size = nnc_rt_dtype_size(ds->x_dtype);
  for (size_t i = 0; i < count; i++) {
    double v = nnc_rt_load_elem(ds->x_dtype, sp->x + i * from_size);
    if (!store_elem(to, out + i * to_size, v)) {
      free(out);
      return nnc_rt_fail_at(err, cap, "cast", "%s example %zu holds %.17g, which %s cannot hold",
                              name, i / ds->x_elems, v, nnc_rt_dtype_name(to));
    }
  }
  free(sp->x);
  sp->x = out;
  return true;
}

bool nnc_rt_dataset_cast_inputs(nnc_rt_dataset *ds, nnc_rt_dtype to, char *err, size_t cap) {
  size_t to_size = nnc_rt_dtype_size(to);
  if (!to_size) return nnc_rt_fail_at(err, cap, "cast", "unknown dtype %d", (int)to);
  if (to == ds->x_dtype) return true;
  if (!cast_split(ds, &ds->train, to, to_size, "train", err, cap) ||
      !cast_split(ds, &ds->test, to, to_size, "test", err, cap))
    return false;
  ds->x_dtype = to;
  ds->x_bytes = ds->x_elems * to_size;
  return true;
}

bool nnc_rt_gather(const nnc_rt_dataset *ds, const nnc_rt_split *sp, const uint32_t *idx, int64_t count,
                   void *x_out, void *y_out) {
  size_t ybytes = label_bytes(ds);
  for (int64_t b = 0; b < count; b++) {
    if ((int64_t)idx[b] >= sp->n) return false;
    memcpy((uint8_t *)x_out + (size_t)b * ds->x_bytes, sp->x + (size_t)idx[b] * ds->x_bytes, ds->x_bytes);
    if (y_out)
      memcpy((uint8_t *)y_out + (size_t)b * ybytes, (const uint8_t *)sp->y + (size_t)idx[b] * ybytes,
             ybytes);
  }
  return true;
}

/* ---- augmentation ---- */

/* One example, planes of h x w elements of esize bytes: out(y, x) = in(y + dy - pad,
 * x' + dx - pad), zero outside, where x' = w-1-x when flipped. */
static void crop_flip(const uint8_t *in, uint8_t *out, size_t planes, int64_t h, int64_t w,
                      size_t esize, int64_t dy, int64_t dx, int pad, bool flipped) {
  for (size_t p = 0; p < planes; p++) {
    const uint8_t *src = in + p * (size_t)(h * w) * esize;
    uint8_t *dst = out + p * (size_t)(h * w) * esize;
    for (int64_t y = 0; y < h; y++) {
      for (int64_t x = 0; x < w; x++) {
        int64_t sy = y + dy - pad, sx = (flipped ? w - 1 - x : x) + dx - pad;
        uint8_t *d = dst + (size_t)(y * w + x) * esize;
        if (sy < 0 || sy >= h || sx < 0 || sx >= w)
          memset(d, 0, esize);
        else
          memcpy(d, src + (size_t)(sy * w + sx) * esize, esize);
      }
    }
  }
}

/* Multiply-shift into [0, bound): the bias is below bound / 2^32, far under anything an image
 * crop could show, and one Philox block per example keeps the draw order fixed. */
static int64_t word_below(uint32_t word, uint32_t bound) {
  return (int64_t)(((uint64_t)word * bound) >> 32);
}

bool nnc_rt_augment_batch(const nnc_rt_augment *a, const nnc_rt_dataset *ds, void *x,
                          const uint32_t *idx, int64_t count, uint32_t epoch, char *err, size_t cap) {
  if (a->pad == 0 && !a->flip) return true;
  if (ds->x_rank < 2)
    return nnc_rt_fail_at(err, cap, "augmentation", "examples of rank %d are not images", ds->x_rank);
  if (a->pad < 0 || a->pad > 65535)
    return nnc_rt_fail_at(err, cap, "augmentation", "padding %d is out of range", a->pad);
  int64_t h = ds->x_shape[ds->x_rank - 2], w = ds->x_shape[ds->x_rank - 1];
  size_t esize = nnc_rt_dtype_size(ds->x_dtype);
  size_t planes = h > 0 && w > 0 ? ds->x_elems / (size_t)(h * w) : 0;
  uint8_t *tmp = malloc(ds->x_bytes ? ds->x_bytes : 1);
  if (!tmp) return nnc_rt_fail_at(err, cap, "augmentation", "out of memory");
  uint32_t key[2] = {(uint32_t)a->seed, epoch};
  for (int64_t b = 0; b < count; b++) {
    uint32_t ctr[4] = {idx[b], 0, STREAM_AUGMENT, (uint32_t)(a->seed >> 32)}, r[4];
    nnc_philox4x32(ctr, key, r);
    uint8_t *ex = (uint8_t *)x + (size_t)b * ds->x_bytes;
    memcpy(tmp, ex, ds->x_bytes);
    uint32_t span = 2 * (uint32_t)a->pad + 1;
    crop_flip(tmp, ex, planes, h, w, esize, word_below(r[0], span), word_below(r[1], span), a->pad,
              a->flip && (r[2] >> 31));
  }
  free(tmp);
  return true;
}
