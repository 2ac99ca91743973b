/* Text for character-level language models (docs/training.md, "Text"). The tokens are bytes:
 * every file is valid input whatever its encoding, ids need no tokenizer, and the vocabulary
 * is the bytes that occur, in ascending order, so the same text always gives the same ids.
 * (A UTF-8 character outside ASCII is several tokens; the models predict it byte by byte.)
 *
 * The held-out part is the tail of the text, not a random sample of windows: neighbouring
 * windows share their context, so a random split would leak training text into validation. */
#include "runtime/data.h"

#include "runtime/data_internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { DEFAULT_VAL_PERCENT = 10 };

/* ---- reading: one file, or a directory's regular files in name order ---- */

typedef struct text_buf {
  uint8_t *data;
  size_t len, cap;
} text_buf;

static bool text_reserve(text_buf *t, size_t more) {
  size_t need;
  if (__builtin_add_overflow(t->len, more, &need)) return false;
  if (need <= t->cap) return true;
  size_t cap = t->cap ? t->cap : 4096;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(t->data, cap);
  if (!p) return false;
  t->data = p, t->cap = cap;
  return true;
}

/* Appends the whole file; its size is checked before anything is allocated for it. */
static bool append_file(text_buf *t, const char *path, char *err, size_t cap) {
  FILE *f = nnc_rt_open_read(path, err, cap);
  if (!f) return false;
  int64_t size = nnc_rt_file_size(f);
  bool ok = size >= 0 && text_reserve(t, (size_t)size);
  if (!ok && size >= 0) nnc_rt_oom((size_t)size);
  if (!ok) nnc_rt_fail_at(err, cap, path, "out of memory (%" PRId64 " bytes)", size);
  else if (fread(t->data + t->len, 1, (size_t)size, f) != (size_t)size)
    ok = nnc_rt_fail_at(err, cap, path, "short read: %s", ferror(f) ? strerror(errno) : "the file shrank");
  else
    t->len += (size_t)size;
  fclose(f);
  return ok;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_regular_file(const char *dir, const char *name) {
  char path[4096];
  struct stat st;
  int n = snprintf(path, sizeof path, "%s/%s", dir, name);
  return n > 0 && (size_t)n < sizeof path && lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The names of dir's regular files, sorted; *count of them. NULL after filling err. */
static char **list_files(const char *dir, size_t *count, char *err, size_t cap) {
  DIR *d = opendir(dir);
  if (!d) return nnc_rt_fail_at(err, cap, dir, "%s", strerror(errno)), NULL;
  char **names = NULL;
  size_t n = 0, room = 0;
  bool ok = true;
  for (struct dirent *e; ok && (e = readdir(d));) {
    if (e->d_name[0] == '.' || !is_regular_file(dir, e->d_name)) continue;
    if (n == room) {
      room = room ? 2 * room : 16;
      char **p = realloc(names, room * sizeof *p);
      if (!p) {
        ok = false;
        break;
      }
      names = p;
    }
    if (!(names[n] = strdup(e->d_name))) ok = false;
    else n++;
  }
  closedir(d);
  if (!ok) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return nnc_rt_fail_at(err, cap, dir, "out of memory"), NULL;
  }
  if (n) qsort(names, n, sizeof *names, compare_names);
  *count = n;
  if (!names && !(names = malloc(sizeof *names))) nnc_rt_fail_at(err, cap, dir, "out of memory");
  return names; /* non-NULL for an empty directory */
}

static bool read_directory(text_buf *t, const char *dir, char *err, size_t cap) {
  size_t n = 0;
  char **names = list_files(dir, &n, err, cap);
  if (!names) return false;
  bool ok = n > 0 || nnc_rt_fail_at(err, cap, dir, "the directory has no regular files");
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (ok && (len < 0 || (size_t)len >= sizeof path)) ok = nnc_rt_fail_at(err, cap, dir, "a file name is too long");
    if (ok) ok = append_file(t, path, err, cap);
    free(names[i]);
  }
  free(names);
  return ok;
}

static bool read_text(text_buf *t, const char *path, char *err, size_t cap) {
  struct stat st;
  if (stat(path, &st) != 0) return nnc_rt_fail_at(err, cap, path, "%s", strerror(errno));
  return S_ISDIR(st.st_mode) ? read_directory(t, path, err, cap) : append_file(t, path, err, cap);
}

/* ---- the vocabulary ---- */

int32_t nnc_rt_vocab_id(const nnc_rt_vocab *v, uint8_t byte) {
  int32_t lo = 0, hi = v->size;
  while (lo < hi) {
    int32_t mid = (lo + hi) / 2;
    if (v->bytes[mid] < byte) lo = mid + 1;
    else hi = mid;
  }
  return lo < v->size && v->bytes[lo] == byte ? lo : -1;
}

void nnc_rt_vocab_to_hex(const nnc_rt_vocab *v, char *out, size_t cap) {
  static const char digits[] = "0123456789abcdef";
  size_t k = 0;
  for (int32_t i = 0; i < v->size && k + 2 < cap; i++) {
    out[k++] = digits[v->bytes[i] >> 4];
    out[k++] = digits[v->bytes[i] & 15];
  }
  if (cap) out[k] = 0;
}

static int hex_digit(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bool nnc_rt_vocab_from_hex(const char *hex, nnc_rt_vocab *v) {
  size_t n = strlen(hex);
  if (n == 0 || n % 2 || n > 2 * 256) return false;
  nnc_rt_vocab out = {.size = (int32_t)(n / 2)};
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.bytes[i] = (uint8_t)(hi << 4 | lo);
    if (i > 0 && out.bytes[i] <= out.bytes[i - 1]) return false;
  }
  *v = out;
  return true;
}

/* The bytes that occur, ascending, and the entropy of their distribution in nats. */
static double build_vocab(const uint8_t *text, size_t len, nnc_rt_vocab *v) {
  size_t counts[256] = {0};
  for (size_t i = 0; i < len; i++) counts[text[i]]++;
  double entropy = 0;
  v->size = 0;
  for (int b = 0; b < 256; b++) {
    if (!counts[b]) continue;
    v->bytes[v->size++] = (uint8_t)b;
    double p = (double)counts[b] / (double)len;
    entropy -= p * log(p);
  }
  return entropy;
}

/* ---- windows ---- */

/* Windows of T + 1 tokens starting every stride tokens within [0, len). */
static int64_t window_count(int64_t len, int64_t T, int64_t stride) {
  return len < T + 1 ? 0 : (len - T - 1) / stride + 1;
}

/* Fills a split with the windows of ids[0, len). */
static bool make_windows(nnc_rt_split *s, const int32_t *ids, int64_t len, int64_t T, int64_t stride) {
  int64_t n = window_count(len, T, stride);
  size_t bytes;
  if (!nnc_rt_mul_size((size_t)n, (size_t)T * sizeof(int32_t), &bytes)) return false;
  s->n = n;
  s->x = malloc(bytes ? bytes : 1);
  s->y = malloc(bytes ? bytes : 1);
  if (!s->x || !s->y) return false;
  int32_t *x = (int32_t *)s->x, *y = s->y;
  for (int64_t i = 0; i < n; i++) {
    memcpy(x + i * T, ids + i * stride, (size_t)T * sizeof *x);
    memcpy(y + i * T, ids + i * stride + 1, (size_t)T * sizeof *y);
  }
  return true;
}

static bool check_options(const char *path, const nnc_rt_text_options *o, char *err, size_t cap) {
  if (o->seq_len < 1 || o->seq_len > INT32_MAX)
    return nnc_rt_fail_at(err, cap, path, "sequence length %" PRId64 " is not a positive integer", o->seq_len);
  if (o->stride < 0 || o->stride > INT32_MAX)
    return nnc_rt_fail_at(err, cap, path, "stride %" PRId64 " is not a positive integer", o->stride);
  if (!(o->val_fraction >= 0 && o->val_fraction < 1))
    return nnc_rt_fail_at(err, cap, path, "validation fraction %g is not in [0, 1)", o->val_fraction);
  return true;
}

/* Splits the ids into the train head and the held-out tail and cuts both into windows. */
static bool split_windows(const char *path, const int32_t *ids, int64_t len, const nnc_rt_text_options *o,
                          nnc_rt_dataset *ds, char *err, size_t cap) {
  int64_t T = o->seq_len, stride = o->stride ? o->stride : T;
  double fraction = o->val_fraction > 0 ? o->val_fraction : DEFAULT_VAL_PERCENT / 100.0;
  int64_t held = llround(fraction * (double)len), head = len - held;
  if (window_count(head, T, stride) == 0)
    return nnc_rt_fail_at(err, cap, path,
                            "%" PRId64 " characters (%" PRId64 " before the held-out %g) are too few for one "
                            "training sequence of %" PRId64 " + 1",
                            len, head, fraction, T);
  if (window_count(held, T, T) == 0)
    return nnc_rt_fail_at(err, cap, path,
                            "the held-out last %g of the text (%" PRId64 " characters) is shorter than one "
                            "sequence of %" PRId64 " + 1: use a longer text or a smaller sequence length",
                            fraction, held, T);
  if (!make_windows(&ds->train, ids, head, T, stride) || !make_windows(&ds->test, ids + head, held, T, T))
    return nnc_rt_fail_at(err, cap, path, "out of memory");
  return true;
}

bool nnc_rt_load_text(const char *path, const nnc_rt_text_options *o, nnc_rt_dataset *ds, char *err, size_t cap) {
  memset(ds, 0, sizeof *ds);
  if (!check_options(path, o, err, cap)) return false;
  text_buf t = {0};
  if (!read_text(&t, path, err, cap)) {
    free(t.data);
    return false;
  }
  if (t.len == 0) {
    free(t.data);
    return nnc_rt_fail_at(err, cap, path, "the text is empty");
  }
  ds->unigram_entropy = build_vocab(t.data, t.len, &ds->vocab);
  size_t bytes;
  int32_t *ids = nnc_rt_mul_size(t.len, sizeof *ids, &bytes) ? malloc(bytes) : NULL;
  bool ok = ids != NULL || nnc_rt_fail_at(err, cap, path, "out of memory");
  for (size_t i = 0; ok && i < t.len; i++) ids[i] = nnc_rt_vocab_id(&ds->vocab, t.data[i]);
  free(t.data);
  int64_t T = o->seq_len;
  ok = ok && split_windows(path, ids, (int64_t)t.len, o, ds, err, cap) &&
       (nnc_rt_set_example_shape(ds, NNC_RT_I32, 1, &T) || nnc_rt_fail_at(err, cap, path, "sequence too long"));
  free(ids);
  if (!ok) {
    nnc_rt_dataset_free(ds);
    return false;
  }
  ds->label_kind = NNC_RT_LABELS_CLASS;
  ds->label_rank = 1;
  ds->label_shape[0] = T;
  ds->label_elems = (size_t)T;
  ds->num_classes = ds->vocab.size;
  return true;
}
