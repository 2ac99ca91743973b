/* CSV files of numbers: comma-separated fields, one example per line, blank lines skipped.
 * The first non-blank line is a header when every field is a name (no number); a first line
 * that mixes names and numbers is an error, as is a NUL byte anywhere. Every other
 * line has the header's (or the first line's) number of fields, each a finite number; errors
 * name file:line:column, the column counted in characters, and the field's number. */
#include "runtime/data.h"

#include "runtime/data_internal.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct field {
  const char *s; /* trimmed */
  size_t len;
  int col;       /* 1-based character column of the field's start */
} field;

typedef struct csv_state {
  const char *path;
  int64_t line;
  field *fields;
  size_t nfields, fields_cap;
  /* rows read so far, grown as they come so a file never costs more than it holds */
  float *x;
  double *y;
  int64_t *lines;
  int64_t rows, rows_cap;
  size_t nfeat;
} csv_state;

static bool csv_fail(char *err, size_t cap, const csv_state *st, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static bool csv_fail(char *err, size_t cap, const csv_state *st, int col, const char *fmt, ...) {
  char where[1024], msg[512];
  snprintf(where, sizeof where, "%s:%" PRId64 ":%d", st->path, st->line, col);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return nnc_rt_fail_at(err, cap, where, "%s", msg);
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* Splits [s, e) at commas into st->fields, trimming blanks around each field. */
static bool split_line(csv_state *st, const char *line, const char *e) {
  st->nfields = 0;
  const char *s = line;
  for (;;) {
    const char *c = s;
    while (c < e && *c != ',') c++;
    if (st->nfields == st->fields_cap) {
      size_t ncap = st->fields_cap ? 2 * st->fields_cap : 16;
      field *bigger = realloc(st->fields, ncap * sizeof *bigger);
      if (!bigger) return false;
      st->fields = bigger;
      st->fields_cap = ncap;
    }
    const char *a = s, *b = c;
    while (a < b && is_blank(*a)) a++;
    while (b > a && is_blank(b[-1])) b--;
    st->fields[st->nfields++] = (field){a, (size_t)(b - a), (int)(a - line) + 1};
    if (c == e) return true;
    s = c + 1;
  }
}

static bool parse_number(const field *f, double *out) {
  char buf[128];
  if (f->len == 0 || f->len >= sizeof buf) return false;
  memcpy(buf, f->s, f->len);
  buf[f->len] = 0;
  char *end;
  errno = 0;
  *out = strtod(buf, &end);
  return *end == 0 && isfinite(*out) && errno != ERANGE;
}

/* A field that is no number at all (a name), as opposed to a malformed or non-finite one
 * ("nan", "1e999", "1.2.3" still start as numbers). */
static bool is_name(const field *f) {
  char buf[128];
  size_t n = f->len < sizeof buf - 1 ? f->len : sizeof buf - 1;
  memcpy(buf, f->s, n);
  buf[n] = 0;
  char *end;
  strtod(buf, &end);
  return n > 0 && end == buf;
}

/* The first row is a header when every field is a name. A row that mixes names and numbers is
 * neither: the error names its first name, rather than a number being dropped silently. */
static bool classify_first_row(const csv_state *st, bool *header, char *err, size_t cap) {
  size_t names = 0, first = 0;
  for (size_t i = st->nfields; i-- > 0;)
    if (is_name(&st->fields[i])) names++, first = i;
  *header = names == st->nfields;
  if (names == 0 || *header) return true;
  const field *f = &st->fields[first];
  return csv_fail(err, cap, st, f->col,
                  "field %zu '%.*s' is not a number, but other fields of this first row are: a header row names "
                  "every column, a data row holds only numbers", first + 1, (int)f->len, f->s);
}

static bool field_is(const field *f, const char *name) {
  const char *s = f->s;
  size_t len = f->len;
  if (len >= 2 && s[0] == '"' && s[len - 1] == '"') s++, len -= 2;
  return strlen(name) == len && memcmp(s, name, len) == 0;
}

/* The label column from options (a header name or a 0-based index) or the last one. */
static bool find_label_column(const csv_state *st, bool header, const char *want, size_t *col,
                              char *err, size_t cap) {
  *col = st->nfields - 1;
  if (!want) return true;
  if (*want && strspn(want, "0123456789") == strlen(want)) {
    errno = 0;
    unsigned long long i = strtoull(want, NULL, 10);
    if (errno || i >= st->nfields)
      return nnc_rt_fail_at(err, cap, st->path, "label column %s is out of range (%zu columns)", want,
                              st->nfields);
    *col = (size_t)i;
    return true;
  }
  if (!header)
    return nnc_rt_fail_at(err, cap, st->path, "label column '%s' named, but the file has no header",
                            want);
  for (size_t i = 0; i < st->nfields; i++) {
    if (field_is(&st->fields[i], want)) {
      *col = i;
      return true;
    }
  }
  return nnc_rt_fail_at(err, cap, st->path, "no column named '%s' in the header", want);
}

static bool grow_rows(csv_state *st) {
  if (st->rows < st->rows_cap) return true;
  int64_t ncap = st->rows_cap ? 2 * st->rows_cap : 256;
  size_t xcount;
  if (!nnc_rt_mul_size((size_t)ncap, st->nfeat ? st->nfeat : 1, &xcount)) return false;
  float *x = realloc(st->x, xcount * sizeof *x);
  if (x) st->x = x;
  double *y = realloc(st->y, (size_t)ncap * sizeof *y);
  if (y) st->y = y;
  int64_t *lines = realloc(st->lines, (size_t)ncap * sizeof *lines);
  if (lines) st->lines = lines;
  if (!x || !y || !lines) return false;
  st->rows_cap = ncap;
  return true;
}

static bool add_row(csv_state *st, size_t ncols, size_t label_col, char *err, size_t cap) {
  if (st->nfields != ncols) {
    int col = st->nfields > ncols ? st->fields[ncols].col : st->fields[st->nfields - 1].col;
    return csv_fail(err, cap, st, col, "expected %zu fields, found %zu", ncols, st->nfields);
  }
  if (!grow_rows(st)) return nnc_rt_fail_at(err, cap, st->path, "out of memory");
  float *x = st->x + (size_t)st->rows * st->nfeat;
  for (size_t i = 0; i < ncols; i++) {
    double v;
    const field *f = &st->fields[i];
    if (!parse_number(f, &v))
      return csv_fail(err, cap, st, f->col, "field %zu '%.*s' is not a finite number", i + 1,
                      (int)(f->len < 40 ? f->len : 40), f->s);
    /* Features become f32: a finite double beyond its range would turn into an infinity. */
    if (i != label_col && fabs(v) > FLT_MAX)
      return csv_fail(err, cap, st, f->col, "field %zu '%.*s' is outside the f32 range", i + 1,
                      (int)(f->len < 40 ? f->len : 40), f->s);
    if (i == label_col)
      st->y[st->rows] = v;
    else
      *x++ = (float)v;
  }
  st->lines[st->rows++] = st->line;
  return true;
}

static char *read_whole(const char *path, size_t *size, char *err, size_t cap) {
  FILE *f = nnc_rt_open_read(path, err, cap);
  if (!f) return NULL;
  int64_t n = nnc_rt_file_size(f);
  char *buf = malloc((size_t)n + 1);
  if (!buf) {
    nnc_rt_oom((size_t)n + 1);
    nnc_rt_fail_at(err, cap, path, "out of memory for %" PRId64 " bytes", n);
  } else if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
    nnc_rt_fail_at(err, cap, path, "short read");
    free(buf);
    buf = NULL;
  } else {
    buf[n] = 0;
    *size = (size_t)n;
  }
  fclose(f);
  return buf;
}

/* A NUL byte would end a field early (strtod stops there): the file is not text. */
static bool check_no_nul(csv_state *st, const char *text, size_t size, char *err, size_t cap) {
  const char *nul = memchr(text, '\0', size);
  if (!nul) return true;
  const char *line = text;
  for (const char *p = text; p < nul; p++)
    if (*p == '\n') st->line++, line = p + 1;
  bool ok = csv_fail(err, cap, st, (int)(nul - line) + 1, "a NUL byte: this is not a CSV text file");
  st->line = 1;
  return ok;
}

static bool parse_rows(csv_state *st, const char *text, size_t size, const nnc_rt_load_options *opt,
                       char *err, size_t cap) {
  if (!check_no_nul(st, text, size, err, cap)) return false;
  size_t ncols = 0, label_col = 0;
  bool first = true;
  for (const char *s = text, *end = text + size; s < end; st->line++) {
    const char *e = memchr(s, '\n', (size_t)(end - s));
    if (!e) e = end;
    const char *next = e < end ? e + 1 : end;
    if (e > s && e[-1] == '\r') e--;
    const char *t = s;
    while (t < e && is_blank(*t)) t++;
    if (t < e) {
      if (!split_line(st, s, e)) return nnc_rt_fail_at(err, cap, st->path, "out of memory");
      if (first) {
        first = false;
        bool header;
        if (!classify_first_row(st, &header, err, cap)) return false;
        ncols = st->nfields;
        if (ncols < 2)
          return csv_fail(err, cap, st, 1, "a row needs at least one feature and a label, found %zu field",
                          ncols);
        if (!find_label_column(st, header, opt->label_column, &label_col, err, cap)) return false;
        st->nfeat = ncols - 1;
        if (header) {
          s = next;
          continue;
        }
      }
      if (!add_row(st, ncols, label_col, err, cap)) return false;
    }
    s = next;
  }
  if (st->rows == 0) return nnc_rt_fail_at(err, cap, st->path, "no data rows");
  return true;
}

bool nnc_rt_load_csv(const char *path, const nnc_rt_load_options *options, nnc_rt_dataset *ds,
                     char *err, size_t cap) {
  static const nnc_rt_load_options defaults = {0};
  const nnc_rt_load_options *opt = options ? options : &defaults;
  memset(ds, 0, sizeof *ds);
  size_t size = 0;
  char *text = read_whole(path, &size, err, cap);
  if (!text) return false;
  csv_state st = {.path = path, .line = 1};
  bool ok = parse_rows(&st, text, size, opt, err, cap);
  if (ok) {
    ds->train.n = st.rows;
    ds->train.x = (uint8_t *)st.x;
    st.x = NULL;
    nnc_rt_set_example_shape(ds, NNC_RT_F32, 1, (const int64_t[]){(int64_t)st.nfeat});
    ds->label_rank = 1;
    ds->label_shape[0] = 1;
    ds->label_elems = 1;
    nnc_rt_raw_labels raw = {.train = st.y, .lines = st.lines};
    ok = nnc_rt_finish_labels(ds, &raw, true, opt, path, err, cap);
  }
  free(st.fields);
  free(st.x);
  free(st.y);
  free(st.lines);
  free(text);
  if (!ok) nnc_rt_dataset_free(ds);
  return ok;
}
