/* NumPy .npy files (numpy/lib/format.py):
 *
 *   "\x93NUMPY", major, minor      version 1.0, 2.0 or 3.0
 *   header length                  u16 LE (1.0) or u32 LE (2.0, 3.0)
 *   header                         a Python dict literal: {'descr': '<f4', 'fortran_order': False,
 *                                  'shape': (N, 28, 28), } padded with spaces and a newline
 *   data                           product(shape) elements, C order
 *
 * The reader accepts exactly these three keys, a C-order array, and little-endian (or
 * byte-sized) integer and float dtypes; the data must fill the rest of the file exactly, which
 * is checked against the file size before anything is allocated. */
#include "runtime/data.h"

#include "runtime/data_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum { NPY_MAX_HEADER = 1 << 20 };

typedef struct header_parser {
  const char *begin, *s, *end, *path;
  char *err;
  size_t cap;
} header_parser;

static void skip_space(header_parser *p) {
  while (p->s < p->end && isspace((unsigned char)*p->s)) p->s++;
}

static bool expect(header_parser *p, char c) {
  skip_space(p);
  if (p->s < p->end && *p->s == c) {
    p->s++;
    return true;
  }
  return nnc_rt_fail_at(p->err, p->cap, p->path, "header: expected '%c' at offset %td", c,
                          p->s - p->begin);
}

/* A quoted string (single or double quotes, no escapes: numpy writes none in these values). */
static bool parse_string(header_parser *p, char *out, size_t cap) {
  skip_space(p);
  if (p->s >= p->end || (*p->s != '\'' && *p->s != '"'))
    return nnc_rt_fail_at(p->err, p->cap, p->path, "header: expected a string");
  char q = *p->s++;
  const char *start = p->s;
  while (p->s < p->end && *p->s != q) p->s++;
  size_t n = (size_t)(p->s - start);
  if (p->s >= p->end || n >= cap)
    return nnc_rt_fail_at(p->err, p->cap, p->path, "header: bad string");
  memcpy(out, start, n);
  out[n] = 0;
  p->s++;
  return true;
}

static bool parse_bool(header_parser *p, bool *out) {
  skip_space(p);
  size_t left = (size_t)(p->end - p->s);
  if (left >= 4 && memcmp(p->s, "True", 4) == 0) {
    *out = true;
    p->s += 4;
    return true;
  }
  if (left >= 5 && memcmp(p->s, "False", 5) == 0) {
    *out = false;
    p->s += 5;
    return true;
  }
  return nnc_rt_fail_at(p->err, p->cap, p->path, "header: fortran_order is not True or False");
}

/* (), (n,), (a, b), (a, b,) */
static bool parse_shape(header_parser *p, nnc_rt_array *a) {
  if (!expect(p, '(')) return false;
  a->rank = 0;
  for (;;) {
    skip_space(p);
    if (p->s < p->end && *p->s == ')') break;
    if (a->rank == NNC_RT_MAX_RANK)
      return nnc_rt_fail_at(p->err, p->cap, p->path, "shape has more than %d dimensions", NNC_RT_MAX_RANK);
    int64_t v = 0;
    if (p->s >= p->end || !isdigit((unsigned char)*p->s))
      return nnc_rt_fail_at(p->err, p->cap, p->path, "header: shape holds a non-integer");
    while (p->s < p->end && isdigit((unsigned char)*p->s)) {
      if (v > (INT64_MAX - 9) / 10)
        return nnc_rt_fail_at(p->err, p->cap, p->path, "header: shape dimension too large");
      v = v * 10 + (*p->s++ - '0');
    }
    a->shape[a->rank++] = v;
    skip_space(p);
    if (p->s < p->end && *p->s == ',') {
      p->s++;
      continue;
    }
    skip_space(p);
    if (p->s >= p->end || *p->s != ')')
      return nnc_rt_fail_at(p->err, p->cap, p->path, "header: bad shape tuple");
  }
  p->s++;
  return true;
}

/* '<f4', '|u1', ...: little-endian or byte-sized integers and floats. */
static bool parse_descr(const char *d, nnc_rt_dtype *t, const char *path, char *err, size_t cap) {
  static const struct {
    const char *code;
    nnc_rt_dtype t;
  } table[] = {{"u1", NNC_RT_U8},  {"i1", NNC_RT_I8},  {"u2", NNC_RT_U16}, {"i2", NNC_RT_I16},
               {"u4", NNC_RT_U32}, {"i4", NNC_RT_I32}, {"i8", NNC_RT_I64}, {"f4", NNC_RT_F32},
               {"f8", NNC_RT_F64}, {"b1", NNC_RT_U8}};
  char order = d[0];
  for (size_t i = 0; order && i < sizeof table / sizeof *table; i++) {
    if (strcmp(d + 1, table[i].code) != 0) continue;
    bool byte_sized = nnc_rt_dtype_size(table[i].t) == 1;
    if (order == '<' || order == '|' || (order == '>' && byte_sized)) {
      *t = table[i].t;
      return true;
    }
    if (order == '>') return nnc_rt_fail_at(err, cap, path, "big-endian dtype '%s' is not supported", d);
  }
  return nnc_rt_fail_at(err, cap, path, "unsupported dtype '%s' (integers u1..i8, floats f4, f8)", d);
}

static bool parse_header(header_parser *p, nnc_rt_array *a) {
  bool seen_descr = false, seen_order = false, seen_shape = false;
  if (!expect(p, '{')) return false;
  for (;;) {
    skip_space(p);
    if (p->s < p->end && *p->s == '}') break;
    char key[32], descr[32];
    if (!parse_string(p, key, sizeof key) || !expect(p, ':')) return false;
    if (strcmp(key, "descr") == 0 && !seen_descr) {
      skip_space(p);
      if (p->s < p->end && *p->s == '[')
        return nnc_rt_fail_at(p->err, p->cap, p->path, "structured dtypes are not supported");
      if (!parse_string(p, descr, sizeof descr) || !parse_descr(descr, &a->dtype, p->path, p->err, p->cap))
        return false;
      seen_descr = true;
    } else if (strcmp(key, "fortran_order") == 0 && !seen_order) {
      bool fortran = false;
      if (!parse_bool(p, &fortran)) return false;
      if (fortran)
        return nnc_rt_fail_at(p->err, p->cap, p->path, "fortran_order True is not supported (save C order)");
      seen_order = true;
    } else if (strcmp(key, "shape") == 0 && !seen_shape) {
      if (!parse_shape(p, a)) return false;
      seen_shape = true;
    } else {
      return nnc_rt_fail_at(p->err, p->cap, p->path, "header: unexpected or repeated key '%s'", key);
    }
    skip_space(p);
    if (p->s < p->end && *p->s == ',') p->s++;
  }
  p->s++;
  skip_space(p);
  if (p->s != p->end)
    return nnc_rt_fail_at(p->err, p->cap, p->path, "header: text after the dictionary");
  if (!seen_descr || !seen_order || !seen_shape)
    return nnc_rt_fail_at(p->err, p->cap, p->path, "header lacks '%s'",
                            !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
  return true;
}

/* Reads the preamble and header; leaves f at the data and *data_bytes what must follow. */
static bool read_preamble(FILE *f, const char *path, int64_t file_size, nnc_rt_array *a,
                          size_t *data_bytes, char *err, size_t cap) {
  unsigned char pre[12];
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
    return nnc_rt_fail_at(err, cap, path, "not a .npy file (no \\x93NUMPY magic)");
  int major = pre[6], minor = pre[7];
  if (!(major >= 1 && major <= 3 && minor == 0))
    return nnc_rt_fail_at(err, cap, path, "unsupported .npy version %d.%d", major, minor);
  size_t hlen = pre[8] | (size_t)pre[9] << 8, at = 10;
  if (major >= 2) {
    if (fread(pre + 10, 1, 2, f) != 2) return nnc_rt_fail_at(err, cap, path, "truncated header");
    hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    at = 12;
  }
  if (hlen > NPY_MAX_HEADER || (int64_t)(at + hlen) > file_size)
    return nnc_rt_fail_at(err, cap, path, "header length %zu exceeds the file", hlen);
  char *h = malloc(hlen + 1);
  if (!h) return nnc_rt_fail_at(err, cap, path, "out of memory");
  bool ok = fread(h, 1, hlen, f) == hlen;
  if (!ok) nnc_rt_fail_at(err, cap, path, "truncated header");
  header_parser p = {h, h, h + hlen, path, err, cap};
  ok = ok && parse_header(&p, a);
  free(h);
  if (!ok) return false;
  size_t count = 1, bytes;
  for (int i = 0; i < a->rank; i++)
    if (!nnc_rt_mul_size(count, (size_t)a->shape[i], &count))
      return nnc_rt_fail_at(err, cap, path, "shape too large");
  if (!nnc_rt_mul_size(count, nnc_rt_dtype_size(a->dtype), &bytes))
    return nnc_rt_fail_at(err, cap, path, "shape too large");
  int64_t left = file_size - (int64_t)(at + hlen);
  if ((uint64_t)left != bytes)
    return nnc_rt_fail_at(err, cap, path, "the shape needs %zu data bytes, the file holds %" PRId64,
                            bytes, left);
  a->count = count;
  *data_bytes = bytes;
  return true;
}

void nnc_rt_array_free(nnc_rt_array *a) {
  free(a->data);
  memset(a, 0, sizeof *a);
}

bool nnc_rt_npy_read(const char *path, nnc_rt_array *a, char *err, size_t cap) {
  memset(a, 0, sizeof *a);
  FILE *f = nnc_rt_open_read(path, err, cap);
  if (!f) return false;
  size_t bytes = 0;
  bool ok = read_preamble(f, path, nnc_rt_file_size(f), a, &bytes, err, cap);
  if (ok) {
    a->data = malloc(bytes ? bytes : 1);
    if (!a->data) {
      nnc_rt_oom(bytes);
      ok = nnc_rt_fail_at(err, cap, path, "out of memory for %zu bytes", bytes);
    }
    else if (fread(a->data, 1, bytes, f) != bytes)
      ok = nnc_rt_fail_at(err, cap, path, "short read in the data");
  }
  fclose(f);
  if (!ok) nnc_rt_array_free(a);
  return ok;
}

/* ---- a dataset from x/y pairs ---- */

static bool is_integral(nnc_rt_dtype t) { return t != NNC_RT_F32 && t != NNC_RT_F64; }

static double *labels_as_doubles(const nnc_rt_array *y) {
  double *v = malloc((y->count ? y->count : 1) * sizeof *v);
  if (v)
    for (size_t i = 0; i < y->count; i++) v[i] = nnc_rt_load_elem(y->dtype, (const uint8_t *)y->data + i * nnc_rt_dtype_size(y->dtype));
  return v;
}

/* x [N, ...] and y [N, ...] agree on N; the example shapes come from the train pair. */
static bool check_pair(const nnc_rt_array *x, const nnc_rt_array *y, const char *xp, const char *yp,
                       char *err, size_t cap) {
  if (x->rank < 1) return nnc_rt_fail_at(err, cap, xp, "a scalar is not a set of examples");
  if (y->rank < 1) return nnc_rt_fail_at(err, cap, yp, "a scalar is not a set of labels");
  if (x->shape[0] != y->shape[0])
    return nnc_rt_fail_at(err, cap, yp, "%" PRId64 " labels for %" PRId64 " examples in %s", y->shape[0],
                            x->shape[0], xp);
  return true;
}

/* Inputs must agree in dtype; labels only in being integers or floats, as they are converted. */
static bool same_example_shape(const nnc_rt_array *a, const nnc_rt_array *b, bool labels) {
  if (a->rank != b->rank) return false;
  if (labels ? is_integral(a->dtype) != is_integral(b->dtype) : a->dtype != b->dtype) return false;
  for (int i = 1; i < a->rank; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

static bool build_dataset(nnc_rt_array *arr, const char *const *paths, bool has_test,
                          const nnc_rt_load_options *opt, nnc_rt_dataset *ds, char *err, size_t cap) {
  if (!check_pair(&arr[0], &arr[1], paths[0], paths[1], err, cap)) return false;
  if (has_test) {
    if (!check_pair(&arr[2], &arr[3], paths[2], paths[3], err, cap)) return false;
    for (int i = 0; i < 2; i++)
      if (!same_example_shape(&arr[i], &arr[i + 2], i == 1))
        return nnc_rt_fail_at(err, cap, paths[i + 2], "%s or example shape differs from %s",
                                i == 1 ? "label type" : "dtype",
                                paths[i]);
  }
  if (!nnc_rt_set_example_shape(ds, arr[0].dtype, arr[0].rank - 1, arr[0].shape + 1))
    return nnc_rt_fail_at(err, cap, paths[0], "example shape too large");
  ds->label_rank = arr[1].rank - 1;
  ds->label_elems = 1;
  /* With no examples the file backs any label shape, so its size may still overflow. */
  for (int i = 1; i < arr[1].rank; i++) {
    ds->label_shape[i - 1] = arr[1].shape[i];
    if (!nnc_rt_mul_size(ds->label_elems, (size_t)arr[1].shape[i], &ds->label_elems))
      return nnc_rt_fail_at(err, cap, paths[1], "label shape too large");
  }
  ds->train = (nnc_rt_split){arr[0].shape[0], arr[0].data, NULL};
  arr[0].data = NULL;
  if (has_test) {
    ds->test = (nnc_rt_split){arr[2].shape[0], arr[2].data, NULL};
    arr[2].data = NULL;
  }
  double *ytr = labels_as_doubles(&arr[1]);
  double *yte = has_test ? labels_as_doubles(&arr[3]) : NULL;
  bool ok = ytr && (yte || !has_test);
  if (!ok) nnc_rt_fail_at(err, cap, paths[1], "out of memory");
  nnc_rt_raw_labels raw = {.train = ytr, .test = yte, .integral_dtype = is_integral(arr[1].dtype)};
  ok = ok && nnc_rt_finish_labels(ds, &raw, false, opt, paths[1], err, cap);
  free(ytr);
  free(yte);
  return ok;
}

bool nnc_rt_load_npy(const char *x_path, const char *y_path, const char *x_test_path,
                     const char *y_test_path, const nnc_rt_load_options *options, nnc_rt_dataset *ds,
                     char *err, size_t cap) {
  static const nnc_rt_load_options defaults = {0};
  const nnc_rt_load_options *opt = options ? options : &defaults;
  memset(ds, 0, sizeof *ds);
  const char *paths[4] = {x_path, y_path, x_test_path, y_test_path};
  bool has_test = x_test_path || y_test_path;
  if (has_test && !(x_test_path && y_test_path))
    return nnc_rt_fail_at(err, cap, x_test_path ? x_test_path : y_test_path,
                            "a test split needs both inputs and labels");
  nnc_rt_array arr[4] = {0};
  bool ok = true;
  for (int i = 0; ok && i < (has_test ? 4 : 2); i++) ok = nnc_rt_npy_read(paths[i], &arr[i], err, cap);
  ok = ok && build_dataset(arr, paths, has_test, opt, ds, err, cap);
  for (int i = 0; i < 4; i++) nnc_rt_array_free(&arr[i]);
  if (!ok) nnc_rt_dataset_free(ds);
  return ok;
}
