/* Checkpoints over the safetensors reader and atomic writer. The metadata holds decimal
 * strings ("step": "1876"); doubles are written with 17 significant digits so they read back
 * exactly. */
#include "checkpoint.h"
#include "runtime/report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"


static nnc_st_dtype st_dtype(nnc_rt_dtype dt) {
  return dt == NNC_RT_I32 ? NNC_ST_I32 : dt == NNC_RT_U8 ? NNC_ST_U8 : NNC_ST_F32;
}

static bool saved(const nnc_rt_buffer *b) {
  return b->region == NNC_RT_PERSIST && b->tied_to < 0;
}

/* ---- metadata ---- */

enum { META_MAX = 16, META_LEN = 40 };

typedef struct meta_builder {
  nnc_st_meta items[META_MAX];
  char values[META_MAX][META_LEN];
  size_t n;
} meta_builder;

static void meta_add(meta_builder *mb, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void meta_add(meta_builder *mb, const char *key, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(mb->values[mb->n], META_LEN, fmt, ap);
  va_end(ap);
  mb->items[mb->n] = (nnc_st_meta){key, mb->values[mb->n]};
  mb->n++;
}

static void meta_fill(meta_builder *mb, const nnc_rt_model *m, const nnc_rt_train_state *st) {
  meta_add(mb, "format", "pt");
  meta_add(mb, "producer", "nnc");
  meta_add(mb, "step", "%" PRId64, st->step);
  meta_add(mb, "epoch", "%" PRId64, st->steps_per_epoch > 0 ? st->step / st->steps_per_epoch : 0);
  meta_add(mb, "steps_per_epoch", "%" PRId64, st->steps_per_epoch);
  meta_add(mb, "batch", "%" PRId64, st->batch);
  meta_add(mb, "seed", "%" PRIu64, st->seed);
  meta_add(mb, "plateau_lr", "%.17g", st->plateau_lr);
  meta_add(mb, "plateau_best", "%.17g", st->plateau_best);
  meta_add(mb, "plateau_bad_epochs", "%" PRId64, st->plateau_bad_epochs);
  meta_add(mb, "plateau_cooldown_left", "%" PRId64, st->plateau_cooldown_left);
}

bool nnc_rt_persist_finite(const nnc_rt_model *m, const uint8_t *persist, char *err, size_t cap) {
  for (int i = 0; i < m->nbuffers; i++) {
    const nnc_rt_buffer *b = &m->buffers[i];
    if (!saved(b) || b->dtype != NNC_RT_F32) continue;
    for (size_t k = 0; k < b->bytes / 4; k++) {
      float v;
      memcpy(&v, persist + b->offset + 4 * k, 4);
      if (isfinite(v)) continue;
      snprintf(err, cap, "'%s' holds %s at element %zu", b->name, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf", k);
      return false;
    }
  }
  return true;
}

bool nnc_rt_checkpoint_save(const char *path, const nnc_rt_model *m, const uint8_t *persist,
                            const nnc_rt_train_state *st, char *err, size_t cap) {
  char why[256];
  if (!nnc_rt_persist_finite(m, persist, why, sizeof why)) return nnc_rt_fail_at(err, cap, path, "not written: %s", why);
  nnc_st_tensor *ts = calloc((size_t)m->nbuffers + 1, sizeof *ts);
  if (!ts) return nnc_rt_fail_at(err, cap, path, "out of memory");
  size_t n = 0;
  for (int i = 0; i < m->nbuffers; i++) {
    const nnc_rt_buffer *b = &m->buffers[i];
    if (!saved(b)) continue;
    ts[n++] = (nnc_st_tensor){.name = b->name, .dtype = st_dtype(b->dtype), .rank = b->rank, .shape = b->dims,
                              .data = persist + b->offset};
  }
  meta_builder mb = {0};
  meta_fill(&mb, m, st);
  char vocab[2 * 256 + 1];
  if (st->vocab.size > 0) {
    nnc_rt_vocab_to_hex(&st->vocab, vocab, sizeof vocab);
    mb.items[mb.n++] = (nnc_st_meta){"vocab", vocab};
  }
  bool ok = nnc_st_write(path, ts, n, mb.items, mb.n, err, cap);
  free(ts);
  return ok;
}

/* ---- reading ---- */

static bool is_moment_name(const char *s) {
  static const char *const suffixes[] = {".exp_avg", ".exp_avg_sq", ".momentum_buffer"};
  size_t n = strlen(s);
  for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
    size_t k = strlen(suffixes[i]);
    if (n > k && strcmp(s + n - k, suffixes[i]) == 0) return true;
  }
  return false;
}

static const char *shape_str(int rank, const int64_t *dims, char *buf, size_t cap) {
  size_t len = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? "," : "", dims[i]);
  if (len < cap) snprintf(buf + len, cap - len, "]");
  return buf;
}

static bool wanted(const nnc_rt_buffer *b, nnc_rt_load_mode mode) {
  return saved(b) && (mode == NNC_RT_LOAD_RESUME || b->kind != NNC_RT_OPTIM);
}

static bool check_shape(const char *path, const nnc_rt_buffer *b, const nnc_st_tensor *t, char *err, size_t cap) {
  char want[160], got[160];
  bool same = t->rank == b->rank;
  for (int k = 0; same && k < b->rank; k++) same = t->shape[k] == b->dims[k];
  if (same) return true;
  return nnc_rt_fail_at(err, cap, path, "tensor '%s' has shape %s, the model expects %s", b->name,
              shape_str(t->rank, t->shape, got, sizeof got), shape_str(b->rank, b->dims, want, sizeof want));
}

/* Copies tensor t into buffer b after checking its shape and dtype. */
static bool load_tensor(const char *path, const nnc_rt_buffer *b, const nnc_st_tensor *t, uint8_t *dst, char *err,
                        size_t cap) {
  if (!check_shape(path, b, t, err, cap)) return false;
  nnc_st_dtype dt = st_dtype(b->dtype);
  if (t->dtype == dt) {
    memcpy(dst, t->data, t->nbytes);
    return true;
  }
  if (dt == NNC_ST_I32 && t->dtype == NNC_ST_I64) {
    size_t n = t->nbytes / 8;
    for (size_t i = 0; i < n; i++) {
      int64_t v;
      memcpy(&v, (const uint8_t *)t->data + 8 * i, 8);
      if (v < INT32_MIN || v > INT32_MAX)
        return nnc_rt_fail_at(err, cap, path, "tensor '%s': value %" PRId64 " does not fit the model's i32", b->name, v);
      int32_t w = (int32_t)v;
      memcpy(dst + 4 * i, &w, 4);
    }
    return true;
  }
  return nnc_rt_fail_at(err, cap, path, "tensor '%s' has dtype %s, the model expects %s", b->name, nnc_st_dtype_name(t->dtype),
              nnc_st_dtype_name(dt));
}

/* Every tensor of the file must be something the model has (optimizer moments aside when
 * only weights are loaded). */
static bool check_extra(const char *path, const nnc_st_file *f, const nnc_rt_model *m, nnc_rt_load_mode mode,
                        char *err, size_t cap) {
  for (size_t i = 0; i < f->ntensors; i++) {
    const char *name = f->tensors[i].name;
    const nnc_rt_buffer *b = nnc_rt_model_buffer(m, name);
    if (b && b->region == NNC_RT_PERSIST) continue;
    if (mode == NNC_RT_LOAD_WEIGHTS && is_moment_name(name)) continue;
    return nnc_rt_fail_at(err, cap, path, "tensor '%s' is not in model %s", name, m->name);
  }
  return true;
}

static bool meta_int(const char *path, const nnc_st_file *f, const char *key, int64_t lo, int64_t *out, char *err,
                     size_t cap) {
  const char *s = nnc_st_meta_get(f, key);
  if (!s) return nnc_rt_fail_at(err, cap, path, "no \"%s\" in the metadata: not a checkpoint written by nnc --save", key);
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo)
    return nnc_rt_fail_at(err, cap, path, "metadata \"%s\" is '%s', not an integer >= %" PRId64, key, s, lo);
  *out = v;
  return true;
}

static bool meta_num(const char *path, const nnc_st_file *f, const char *key, double *out, char *err, size_t cap) {
  const char *s = nnc_st_meta_get(f, key);
  if (!s) return nnc_rt_fail_at(err, cap, path, "no \"%s\" in the metadata: not a checkpoint written by nnc --save", key);
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || isnan(v)) return nnc_rt_fail_at(err, cap, path, "metadata \"%s\" is '%s', not a number", key, s);
  *out = v;
  return true;
}

static bool read_state(const char *path, const nnc_st_file *f, nnc_rt_train_state *st, char *err, size_t cap) {
  int64_t seed = 0;
  bool ok = meta_int(path, f, "step", 0, &st->step, err, cap) &&
            meta_int(path, f, "steps_per_epoch", 0, &st->steps_per_epoch, err, cap) &&
            meta_int(path, f, "batch", 1, &st->batch, err, cap) && meta_int(path, f, "seed", 0, &seed, err, cap) &&
            meta_num(path, f, "plateau_lr", &st->plateau_lr, err, cap) &&
            meta_num(path, f, "plateau_best", &st->plateau_best, err, cap) &&
            meta_int(path, f, "plateau_bad_epochs", 0, &st->plateau_bad_epochs, err, cap) &&
            meta_int(path, f, "plateau_cooldown_left", 0, &st->plateau_cooldown_left, err, cap);
  st->seed = (uint64_t)seed;
  return ok;
}

static bool read_vocab(const char *path, const nnc_st_file *f, nnc_rt_vocab *v, char *err, size_t cap) {
  const char *s = nnc_st_meta_get(f, "vocab");
  v->size = 0;
  if (!s || nnc_rt_vocab_from_hex(s, v)) return true;
  return nnc_rt_fail_at(err, cap, path, "metadata \"vocab\" is not a list of ascending bytes in hex");
}

bool nnc_rt_checkpoint_load(const char *path, const nnc_rt_model *m, uint8_t *persist, nnc_rt_load_mode mode,
                            nnc_rt_train_state *st, char *err, size_t cap) {
  nnc_st_file f;
  if (!nnc_st_read(path, &f, err, cap)) return false;
  bool ok = check_extra(path, &f, m, mode, err, cap);
  for (int i = 0; ok && i < m->nbuffers; i++) {
    const nnc_rt_buffer *b = &m->buffers[i];
    if (!wanted(b, mode)) continue;
    const nnc_st_tensor *t = nnc_st_find(&f, b->name);
    if (!t) ok = nnc_rt_fail_at(err, cap, path, "no tensor '%s', which model %s has", b->name, m->name);
    else ok = load_tensor(path, b, t, persist + b->offset, err, cap);
  }
  /* A tied param in the file must agree in shape with its target (the values are the target's). */
  for (int i = 0; ok && i < m->nbuffers; i++) {
    const nnc_rt_buffer *b = &m->buffers[i];
    const nnc_st_tensor *t = b->tied_to >= 0 ? nnc_st_find(&f, b->name) : NULL;
    if (t) ok = check_shape(path, b, t, err, cap);
  }
  if (ok && mode == NNC_RT_LOAD_RESUME)
    ok = read_state(path, &f, st, err, cap) && read_vocab(path, &f, &st->vocab, err, cap);
  nnc_st_free(&f);
  return ok;
}

bool nnc_rt_checkpoint_vocab(const char *path, nnc_rt_vocab *v, char *err, size_t cap) {
  nnc_st_file f;
  if (!nnc_st_read(path, &f, err, cap)) return false;
  bool ok = read_vocab(path, &f, v, err, cap);
  nnc_st_free(&f);
  return ok;
}
