/* safetensors reader and writer; the format and the checks are in safetensors.h and
 * docs/checkpoints.md. The header is parsed by jansson and kept alive for the file's
 * lifetime: tensor names and metadata point into it. */
#include "runtime/safetensors.h"
#include "runtime/report.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/atomic_file.h"
#include "runtime/files.h"

/* ---- dtypes ---- */

static const struct {
  const char *name;
  size_t size;
} dtype_table[NNC_ST_NUM_DTYPES] = {
#define NNC_ST_ROW(name, size) {#name, size},
    NNC_ST_DTYPES(NNC_ST_ROW)
#undef NNC_ST_ROW
};

const char *nnc_st_dtype_name(nnc_st_dtype d) {
  return (unsigned)d < NNC_ST_NUM_DTYPES ? dtype_table[d].name : "?";
}

size_t nnc_st_dtype_size(nnc_st_dtype d) {
  return (unsigned)d < NNC_ST_NUM_DTYPES ? dtype_table[d].size : 0;
}

bool nnc_st_dtype_from_name(const char *name, nnc_st_dtype *out) {
  for (int d = 0; d < NNC_ST_NUM_DTYPES; d++) {
    if (strcmp(dtype_table[d].name, name) == 0) {
      *out = (nnc_st_dtype)d;
      return true;
    }
  }
  return false;
}

/* ---- shared helpers ---- */

/* Every message is "<file>: <problem>". */

static void format_shape(char *buf, size_t cap, const int64_t *shape, int rank) {
  size_t used = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && used < cap; i++)
    used += (size_t)snprintf(buf + used, cap - used, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (used < cap) snprintf(buf + used, cap - used, "]");
}

/* product(shape) * element size, or false when it does not fit in 64 bits or size_t. */
static bool tensor_bytes(const int64_t *shape, int rank, size_t elem, uint64_t *out) {
  uint64_t n = elem;
  for (int i = 0; i < rank; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (d != 0 && n > UINT64_MAX / d) return false;
    n *= d;
  }
  if (n > SIZE_MAX) return false;
  *out = n;
  return true;
}

/* ---- reader ---- */

typedef struct st_storage {
  json_t *root;
  int64_t *shapes;
} st_storage;

void nnc_st_free(nnc_st_file *f) {
  st_storage *s = f->storage_;
  if (s) {
    json_decref(s->root);
    free(s->shapes);
    free(s);
  }
  free(f->tensors);
  free(f->meta);
  free(f->owned_data_);
  memset(f, 0, sizeof *f);
}

/* "shape": a list of non-negative integers. */
static bool read_shape(const char *file, const char *name, json_t *js, int64_t *shape, char *err,
                       size_t cap) {
  size_t i;
  json_t *dim;
  json_array_foreach(js, i, dim) {
    if (!json_is_integer(dim))
      return nnc_rt_fail_at(err, cap, file, "tensor '%s': shape[%zu] is not an integer", name, i);
    json_int_t v = json_integer_value(dim);
    if (v < 0) return nnc_rt_fail_at(err, cap, file, "tensor '%s': shape[%zu] is negative (%lld)", name, i, (long long)v);
    shape[i] = (int64_t)v;
  }
  return true;
}

/* "data_offsets": [begin, end], 0 <= begin <= end. */
static bool read_offsets(const char *file, const char *name, json_t *js, uint64_t *begin, uint64_t *end,
                         char *err, size_t cap) {
  json_t *b = json_array_get(js, 0), *e = json_array_get(js, 1);
  if (!json_is_array(js) || json_array_size(js) != 2 || !json_is_integer(b) || !json_is_integer(e) ||
      json_integer_value(b) < 0 || json_integer_value(e) < json_integer_value(b))
    return nnc_rt_fail_at(err, cap, file, "tensor '%s': \"data_offsets\" is not [begin, end] with 0 <= begin <= end",
                name);
  *begin = (uint64_t)json_integer_value(b);
  *end = (uint64_t)json_integer_value(e);
  return true;
}

static bool check_entry_fields(const char *file, const char *name, json_t *entry, char *err, size_t cap) {
  if (!json_is_object(entry)) return nnc_rt_fail_at(err, cap, file, "tensor '%s': entry is not a JSON object", name);
  const char *key;
  json_t *v;
  json_object_foreach(entry, key, v) {
    if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
      return nnc_rt_fail_at(err, cap, file, "tensor '%s': unknown field '%s'", name, key);
  }
  return true;
}

/* One tensor entry of the header: dtype, shape, offsets, and that they agree. */
static bool read_tensor(const char *file, const char *name, json_t *entry, int64_t *shape_store,
                        size_t data_size, nnc_st_tensor *t, char *err, size_t cap) {
  if (!check_entry_fields(file, name, entry, err, cap)) return false;
  json_t *jd = json_object_get(entry, "dtype"), *js = json_object_get(entry, "shape");
  if (!json_is_string(jd)) return nnc_rt_fail_at(err, cap, file, "tensor '%s': missing or non-string \"dtype\"", name);
  if (!nnc_st_dtype_from_name(json_string_value(jd), &t->dtype))
    return nnc_rt_fail_at(err, cap, file, "tensor '%s': unknown dtype '%s'", name, json_string_value(jd));
  if (!json_is_array(js)) return nnc_rt_fail_at(err, cap, file, "tensor '%s': missing or non-list \"shape\"", name);
  if (!read_shape(file, name, js, shape_store, err, cap)) return false;
  t->name = name;
  t->rank = (int)json_array_size(js);
  t->shape = shape_store;
  char shp[256];
  format_shape(shp, sizeof shp, t->shape, t->rank);
  uint64_t need = 0, begin = 0, end = 0;
  if (!tensor_bytes(t->shape, t->rank, nnc_st_dtype_size(t->dtype), &need))
    return nnc_rt_fail_at(err, cap, file, "tensor '%s': the byte size of shape %s overflows", name, shp);
  if (!read_offsets(file, name, json_object_get(entry, "data_offsets"), &begin, &end, err, cap)) return false;
  if (end - begin != need)
    return nnc_rt_fail_at(err, cap, file,
                "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                " bytes, but %s %s needs %" PRIu64,
                name, begin, end, end - begin, nnc_st_dtype_name(t->dtype), shp, need);
  if (end > data_size)
    return nnc_rt_fail_at(err, cap, file,
                "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                "] go past the end of the %zu-byte data buffer (truncated file?)",
                name, begin, end, data_size);
  t->offset = begin;
  t->nbytes = (size_t)need;
  return true;
}

static int by_offset(const void *a, const void *b) {
  const nnc_st_tensor *x = a, *y = b;
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* As the reference implementation: sorted by offset, the tensors tile the data buffer
 * exactly, with no overlap, no hole and nothing after the last one. */
static bool check_tiling(const char *file, const nnc_st_file *f, char *err, size_t cap) {
  uint64_t at = 0;
  const char *prev = NULL;
  for (size_t i = 0; i < f->ntensors; i++) {
    const nnc_st_tensor *t = &f->tensors[i];
    if (t->offset < at)
      return nnc_rt_fail_at(err, cap, file, "tensors '%s' and '%s' overlap in the data buffer (bytes %" PRIu64 " to %" PRIu64 ")",
                  prev, t->name, t->offset, at);
    if (t->offset > at) {
      if (!prev)
        return nnc_rt_fail_at(err, cap, file, "hole in the data buffer: bytes 0 to %" PRIu64 " before '%s' belong to no tensor",
                    t->offset, t->name);
      return nnc_rt_fail_at(err, cap, file, "hole in the data buffer: bytes %" PRIu64 " to %" PRIu64 " between '%s' and '%s' belong to no tensor",
                  at, t->offset, prev, t->name);
    }
    at = t->offset + t->nbytes;
    prev = t->name;
  }
  if (at != f->data_size)
    return nnc_rt_fail_at(err, cap, file, "the tensors cover %" PRIu64 " bytes of the %zu-byte data buffer; the rest belongs to no tensor",
                at, f->data_size);
  return true;
}

static bool read_metadata(const char *file, json_t *jm, nnc_st_file *f, char *err, size_t cap) {
  if (!json_is_object(jm)) return nnc_rt_fail_at(err, cap, file, "\"__metadata__\" is not a JSON object");
  f->meta = calloc(json_object_size(jm) + 1, sizeof *f->meta);
  if (!f->meta) return nnc_rt_fail_at(err, cap, file, "out of memory");
  const char *key;
  json_t *v;
  json_object_foreach(jm, key, v) {
    if (!json_is_string(v)) return nnc_rt_fail_at(err, cap, file, "\"__metadata__\" value of '%s' is not a string", key);
    f->meta[f->nmeta++] = (nnc_st_meta){key, json_string_value(v)};
  }
  return true;
}

static size_t total_rank(json_t *root) {
  size_t n = 0;
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) n += json_array_size(json_object_get(v, "shape"));
  return n;
}

static bool parse_json(const char *file, const char *header, size_t n, json_t **root, char *err, size_t cap) {
  json_error_t je;
  *root = json_loadb(header, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
  if (!*root) {
    if (json_error_code(&je) == json_error_duplicate_key)
      return nnc_rt_fail_at(err, cap, file, "duplicate tensor name in the header (%s)", je.text);
    return nnc_rt_fail_at(err, cap, file, "header is not valid JSON: %s (at byte %d of the header)", je.text, je.position);
  }
  if (!json_is_object(*root)) return nnc_rt_fail_at(err, cap, file, "header is not a JSON object");
  return true;
}

/* The header (n bytes) and the data buffer that follows it. */
static bool parse_header(const char *file, const char *header, size_t n, nnc_st_file *f, char *err, size_t cap) {
  st_storage *s = calloc(1, sizeof *s);
  if (!s) return nnc_rt_fail_at(err, cap, file, "out of memory");
  f->storage_ = s;
  if (!parse_json(file, header, n, &s->root, err, cap)) return false;
  s->shapes = malloc((total_rank(s->root) + 1) * sizeof *s->shapes);
  f->tensors = calloc(json_object_size(s->root) + 1, sizeof *f->tensors);
  if (!s->shapes || !f->tensors) return nnc_rt_fail_at(err, cap, file, "out of memory");
  size_t shape_at = 0;
  const char *key;
  json_t *v;
  json_object_foreach(s->root, key, v) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!read_metadata(file, v, f, err, cap)) return false;
      continue;
    }
    nnc_st_tensor *t = &f->tensors[f->ntensors];
    if (!read_tensor(file, key, v, s->shapes + shape_at, f->data_size, t, err, cap)) return false;
    shape_at += (size_t)t->rank;
    f->ntensors++;
  }
  qsort(f->tensors, f->ntensors, sizeof *f->tensors, by_offset);
  if (!check_tiling(file, f, err, cap)) return false;
  for (size_t i = 0; i < f->ntensors; i++) f->tensors[i].data = f->data + f->tensors[i].offset;
  return true;
}

static uint64_t read_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* The size prefix against the file size, in the reference implementation's order. */
static bool check_header_size(const char *file, uint64_t size, uint64_t n, char *err, size_t cap) {
  if (n > NNC_ST_MAX_HEADER)
    return nnc_rt_fail_at(err, cap, file, "header size %" PRIu64 " is larger than the %" PRIu64 "-byte limit (not a safetensors file?)",
                n, NNC_ST_MAX_HEADER);
  if (n > size - 8)
    return nnc_rt_fail_at(err, cap, file, "header size %" PRIu64 " exceeds the %" PRIu64 " bytes that follow it (truncated file?)",
                n, size - 8);
  return true;
}

bool nnc_st_parse(const char *name, const void *bytes, size_t size, nnc_st_file *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  const unsigned char *p = bytes;
  if (size < 8)
    return nnc_rt_fail_at(err, cap, name, "file is %zu bytes, too short for the 8-byte header size (truncated file?)", size);
  uint64_t n = read_le64(p);
  if (!check_header_size(name, size, n, err, cap)) return false;
  out->data = p + 8 + n;
  out->data_size = size - 8 - (size_t)n;
  if (parse_header(name, (const char *)p + 8, (size_t)n, out, err, cap)) return true;
  nnc_st_free(out);
  return false;
}

static bool read_exactly(FILE *fp, const char *path, void *buf, size_t n, char *err, size_t cap) {
  if (n == 0 || fread(buf, 1, n, fp) == n) return true;
  if (ferror(fp)) return nnc_rt_fail_at(err, cap, path, "read failed: %s", strerror(errno));
  return nnc_rt_fail_at(err, cap, path, "file ended early while reading (changed while being read?)");
}

/* Reads the file in three parts so that the data buffer gets an allocation of its own. */
static bool read_file(FILE *fp, const char *path, nnc_st_file *out, char **header, uint64_t *hsize, char *err,
                      size_t cap) {
  struct stat st;
  if (fstat(fileno(fp), &st) != 0) return nnc_rt_fail_at(err, cap, path, "cannot stat: %s", strerror(errno));
  if (!S_ISREG(st.st_mode)) return nnc_rt_fail_at(err, cap, path, "not a regular file");
  uint64_t size = (uint64_t)st.st_size;
  unsigned char prefix[8];
  if (size < 8)
    return nnc_rt_fail_at(err, cap, path, "file is %" PRIu64 " bytes, too short for the 8-byte header size (truncated file?)",
                size);
  if (!read_exactly(fp, path, prefix, 8, err, cap)) return false;
  *hsize = read_le64(prefix);
  if (!check_header_size(path, size, *hsize, err, cap)) return false;
  if (size - 8 - *hsize > SIZE_MAX - 1) return nnc_rt_fail_at(err, cap, path, "file too large for this machine");
  out->data_size = (size_t)(size - 8 - *hsize);
  *header = malloc((size_t)*hsize + 1);
  out->owned_data_ = malloc(out->data_size + 1);
  if (!*header || !out->owned_data_) return nnc_rt_fail_at(err, cap, path, "out of memory");
  out->data = out->owned_data_;
  return read_exactly(fp, path, *header, (size_t)*hsize, err, cap) &&
         read_exactly(fp, path, out->owned_data_, out->data_size, err, cap);
}

bool nnc_st_read(const char *path, nnc_st_file *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  FILE *fp = nnc_rt_open_read(path, err, cap);
  if (!fp) return false;
  char *header = NULL;
  uint64_t hsize = 0;
  bool ok = read_file(fp, path, out, &header, &hsize, err, cap) &&
            parse_header(path, header, (size_t)hsize, out, err, cap);
  fclose(fp);
  free(header);
  if (!ok) nnc_st_free(out);
  return ok;
}

const nnc_st_tensor *nnc_st_find(const nnc_st_file *f, const char *name) {
  for (size_t i = 0; i < f->ntensors; i++)
    if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}

const char *nnc_st_meta_get(const nnc_st_file *f, const char *key) {
  for (size_t i = 0; i < f->nmeta; i++)
    if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
  return NULL;
}

/* ---- writer ---- */

static int by_name(const void *a, const void *b) {
  return strcmp((*(const nnc_st_tensor *const *)a)->name, (*(const nnc_st_tensor *const *)b)->name);
}

/* Largest elements first, then by name: every tensor starts aligned to its element size. */
static int by_layout(const void *a, const void *b) {
  const nnc_st_tensor *x = *(const nnc_st_tensor *const *)a, *y = *(const nnc_st_tensor *const *)b;
  size_t sx = nnc_st_dtype_size(x->dtype), sy = nnc_st_dtype_size(y->dtype);
  if (sx != sy) return sx > sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

static bool check_write_tensor(const char *path, const nnc_st_tensor *t, char *err, size_t cap) {
  if (!t->name || !*t->name) return nnc_rt_fail_at(err, cap, path, "a tensor has no name");
  if (strcmp(t->name, "__metadata__") == 0) return nnc_rt_fail_at(err, cap, path, "a tensor cannot be named \"__metadata__\"");
  if ((unsigned)t->dtype >= NNC_ST_NUM_DTYPES) return nnc_rt_fail_at(err, cap, path, "tensor '%s': invalid dtype %d", t->name, (int)t->dtype);
  if (t->rank < 0 || (t->rank > 0 && !t->shape)) return nnc_rt_fail_at(err, cap, path, "tensor '%s': invalid rank or shape", t->name);
  for (int i = 0; i < t->rank; i++)
    if (t->shape[i] < 0) return nnc_rt_fail_at(err, cap, path, "tensor '%s': shape[%d] is negative", t->name, i);
  uint64_t n;
  if (!tensor_bytes(t->shape, t->rank, nnc_st_dtype_size(t->dtype), &n))
    return nnc_rt_fail_at(err, cap, path, "tensor '%s': byte size overflows", t->name);
  if (n > 0 && !t->data) return nnc_rt_fail_at(err, cap, path, "tensor '%s': no data", t->name);
  return true;
}

/* The byte size of a tensor that check_write_tensor accepted. */
static uint64_t checked_bytes(const nnc_st_tensor *t) {
  uint64_t n = 0;
  tensor_bytes(t->shape, t->rank, nnc_st_dtype_size(t->dtype), &n);
  return n;
}

/* Checks the tensors and returns them in data order (a malloc'd array of pointers). */
static const nnc_st_tensor **plan_layout(const char *path, const nnc_st_tensor *ts, size_t n, char *err, size_t cap) {
  const nnc_st_tensor **order = malloc((n + 1) * sizeof *order);
  if (!order) {
    nnc_rt_fail_at(err, cap, path, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    order[i] = &ts[i];
    if (!check_write_tensor(path, &ts[i], err, cap)) goto bad;
  }
  qsort(order, n, sizeof *order, by_name);
  for (size_t i = 1; i < n; i++)
    if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
      nnc_rt_fail_at(err, cap, path, "duplicate tensor name '%s'", order[i]->name);
      goto bad;
    }
  qsort(order, n, sizeof *order, by_layout);
  return order;
bad:
  free(order);
  return NULL;
}

static json_t *tensor_entry(const nnc_st_tensor *t, uint64_t begin, uint64_t end) {
  json_t *shape = json_array();
  for (int i = 0; i < t->rank; i++) json_array_append_new(shape, json_integer(t->shape[i]));
  return json_pack("{s:s, s:o, s:[I, I]}", "dtype", nnc_st_dtype_name(t->dtype), "shape", shape, "data_offsets",
                   (json_int_t)begin, (json_int_t)end);
}

/* jansson refuses keys and strings that are not UTF-8: name the culprit. */
static bool add_key(const char *path, json_t *obj, const char *key, json_t *value, const char *what, char *err,
                    size_t cap) {
  if (!value) return nnc_rt_fail_at(err, cap, path, "%s '%s': not valid UTF-8 (or out of memory)", what, key);
  if (json_object_set_new(obj, key, value) != 0)
    return nnc_rt_fail_at(err, cap, path, "%s '%s': not valid UTF-8 (or out of memory)", what, key);
  return true;
}

static json_t *build_metadata(const char *path, const nnc_st_meta *meta, size_t nmeta, char *err, size_t cap) {
  json_t *m = json_object();
  for (size_t i = 0; m && i < nmeta; i++) {
    if (!meta[i].key || !meta[i].value) {
      nnc_rt_fail_at(err, cap, path, "metadata entry %zu has no key or value", i);
    } else if (json_object_get(m, meta[i].key)) {
      nnc_rt_fail_at(err, cap, path, "duplicate metadata key '%s'", meta[i].key);
    } else if (add_key(path, m, meta[i].key, json_string(meta[i].value), "metadata key", err, cap)) {
      continue;
    }
    json_decref(m);
    return NULL;
  }
  if (!m) nnc_rt_fail_at(err, cap, path, "out of memory");
  return m;
}

/* The header text, padded with spaces to a multiple of 8 bytes as the reference writer does. */
static char *build_header(const char *path, const nnc_st_tensor **order, size_t n, const nnc_st_meta *meta,
                          size_t nmeta, size_t *len, char *err, size_t cap) {
  json_t *root = json_object();
  uint64_t at = 0;
  bool ok = root != NULL;
  for (size_t i = 0; ok && i < n; i++) {
    const nnc_st_tensor *t = order[i];
    uint64_t bytes = checked_bytes(t);
    ok = add_key(path, root, t->name, tensor_entry(t, at, at + bytes), "tensor", err, cap);
    at += bytes;
  }
  if (ok && nmeta > 0) {
    json_t *m = build_metadata(path, meta, nmeta, err, cap);
    ok = m && json_object_set_new(root, "__metadata__", m) == 0;
  }
  char *text = ok ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(root);
  if (!ok) return NULL;
  size_t raw = text ? strlen(text) : 0, padded = (raw + 7) / 8 * 8;
  char *out = text ? realloc(text, padded + 1) : NULL;
  if (!out) {
    free(text);
    nnc_rt_fail_at(err, cap, path, "out of memory");
    return NULL;
  }
  memset(out + raw, ' ', padded - raw);
  out[padded] = '\0';
  *len = padded;
  return out;
}

static bool write_all(nnc_afile *af, const char *header, size_t hlen, const nnc_st_tensor **order, size_t n,
                      char *err, size_t cap) {
  unsigned char prefix[8];
  for (int i = 0; i < 8; i++) prefix[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  if (!nnc_afile_write(af, prefix, 8, err, cap) || !nnc_afile_write(af, header, hlen, err, cap)) return false;
  for (size_t i = 0; i < n; i++) {
    uint64_t bytes = checked_bytes(order[i]);
    if (bytes && !nnc_afile_write(af, order[i]->data, (size_t)bytes, err, cap)) return false;
  }
  return nnc_afile_commit(af, err, cap);
}

bool nnc_st_write(const char *path, const nnc_st_tensor *tensors, size_t n, const nnc_st_meta *meta, size_t nmeta,
                  char *err, size_t cap) {
  const nnc_st_tensor **order = plan_layout(path, tensors, n, err, cap);
  if (!order) return false;
  size_t hlen = 0;
  char *header = build_header(path, order, n, meta, nmeta, &hlen, err, cap);
  nnc_afile af;
  bool ok = header && nnc_afile_open(&af, path, err, cap);
  if (ok) {
    ok = write_all(&af, header, hlen, order, n, err, cap);
    nnc_afile_abort(&af);
  }
  free(header);
  free(order);
  return ok;
}
