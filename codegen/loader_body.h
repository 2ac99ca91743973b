/* The body of every emitted model_loader.c (codegen/c_program.c prints it after the model's
 * table `specs`); the build turns it into a string (scripts/gen_inc.py). Standard C99.
 *
 * It accepts what nnc's own reader accepts (runtime/safetensors.c, runtime/checkpoint.c) and
 * rejects the rest: the 8-byte little-endian header length, a header of at most 100000000
 * bytes that is one JSON object (whitespace after it only) of name -> {dtype, shape,
 * data_offsets} entries with no duplicate names or fields, an optional "__metadata__" of
 * string values; tensors that tile the data buffer exactly (no holes, no overlaps, nothing past
 * its end or after the last tensor), each holding shape x dtype-size bytes. Against the model:
 * every tensor is one it has (optimizer moments it lacks are ignored), with its shape and dtype
 * (an I64 tensor fills an i32 buffer when every value fits, as PyTorch saves counters), and
 * every param and state buffer is present. Everything is checked before the first byte of
 * persist is written: a rejected file leaves the weights as they were. */

static void set_err(char *err, size_t cap, const char *msg, const char *name) {
  if (err && cap) snprintf(err, cap, "%s%s%s", msg, name ? ": " : "", name ? name : "");
}

#define MAX_HEADER 100000000u
#define MAX_RANK 8
#define NAME_CAP 1024

typedef struct cursor {
  const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int expect(cursor *c, char ch) {
  skip_ws(c);
  if (c->p >= c->end || *c->p != ch) return 0;
  c->p++;
  return 1;
}

static int hex_digit(char h) {
  return h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
}

/* The length of the UTF-8 sequence at p (1 to 4), or 0 when it is not valid UTF-8 (a stray
 * continuation byte, an overlong form, a surrogate, past U+10FFFF): JSON text is UTF-8. */
static int utf8_length(const unsigned char *p, const unsigned char *end) {
  int n = p[0] < 0x80 ? 1 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
          : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
  if (n == 0 || end - p < n) return 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80) return 0;
  if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) || (p[0] == 0xf0 && p[1] < 0x90) ||
      (p[0] == 0xf4 && p[1] > 0x8f))
    return 0;
  return n;
}

/* A JSON string into out (or only checked, when out is NULL): escapes \" \\ \/ \b \f \n \r \t
 * and \u of ASCII other than NUL (what names and metadata use); control characters and invalid
 * UTF-8 are not JSON, and a string that does not fit is refused rather than cut, so two names
 * never compare equal by truncation. */
static int read_string(cursor *c, char *out, size_t cap) {
  size_t n = 0;
  if (!expect(c, '"')) return 0;
  while (c->p < c->end && *c->p != '"') {
    char ch = *c->p;
    int len = utf8_length((const unsigned char *)c->p, (const unsigned char *)c->end);
    if (len == 0 || (unsigned char)ch < 0x20) return 0;
    if (ch == '\\') {
      if (++c->p >= c->end) return 0;
      ch = *c->p++;
      switch (ch) {
      case 'b': ch = '\b'; break;
      case 'f': ch = '\f'; break;
      case 'n': ch = '\n'; break;
      case 'r': ch = '\r'; break;
      case 't': ch = '\t'; break;
      case 'u': {
        int v = 0;
        for (int i = 0; i < 4; i++) {
          int h = c->p < c->end ? hex_digit(*c->p++) : -1;
          if (h < 0) return 0;
          v = v * 16 + h;
        }
        if (v == 0 || v > 0x7f) return 0;
        ch = (char)v;
        break;
      }
      case '"': case '\\': case '/': break;
      default: return 0;
      }
      len = 1;
    } else {
      c->p += len;
    }
    if (out && n + (size_t)len >= cap) return 0;
    if (out) memcpy(out + n, len == 1 ? &ch : c->p - len, (size_t)len);
    n += (size_t)len;
  }
  if (out) out[n] = 0;
  return c->p < c->end && *c->p++ == '"';
}

/* A non-negative JSON integer ("-0" is one). */
static int read_uint(cursor *c, uint64_t *v) {
  skip_ws(c);
  if (c->p + 1 < c->end && c->p[0] == '-' && c->p[1] == '0') c->p++;
  if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
  if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9') return 0; /* no leading zeros in JSON */
  *v = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    if (*v > (UINT64_MAX - 9) / 10) return 0;
    *v = *v * 10 + (uint64_t)(*c->p++ - '0');
  }
  /* a fraction or an exponent is not an integer */
  return !(c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'));
}

/* [a, b, ...] of at most max unsigned integers. */
static int read_uints(cursor *c, uint64_t *out, int max, int *count) {
  *count = 0;
  if (!expect(c, '[')) return 0;
  skip_ws(c);
  if (c->p < c->end && *c->p == ']') return c->p++, 1;
  do {
    if (*count >= max || !read_uint(c, &out[*count])) return 0;
    (*count)++;
  } while (expect(c, ','));
  return expect(c, ']');
}

/* {"key": "value", ...}, the metadata: every value a string, no key twice. */
static int skip_metadata(cursor *c) {
  char key[NAME_CAP], (*keys)[NAME_CAP] = NULL;
  size_t n = 0, room = 0;
  int ok = expect(c, '{');
  skip_ws(c);
  if (ok && c->p < c->end && *c->p == '}') return c->p++, 1;
  while (ok) {
    ok = read_string(c, key, sizeof key) && expect(c, ':') && (skip_ws(c), read_string(c, NULL, 0));
    for (size_t i = 0; ok && i < n; i++) ok = strcmp(keys[i], key) != 0;
    if (ok && n == room) {
      char (*bigger)[NAME_CAP] = realloc(keys, (room = room ? 2 * room : 16) * sizeof *keys);
      ok = bigger != NULL;
      if (ok) keys = bigger;
    }
    if (ok) strcpy(keys[n++], key);
    if (!ok || !expect(c, ',')) break;
  }
  free(keys);
  return ok && expect(c, '}');
}

/* One tensor of the header. */
typedef struct entry {
  char name[NAME_CAP];
  char dtype[16];
  uint64_t shape[MAX_RANK], offs[2];
  int rank;
  const struct tensor_spec *spec;
} entry;

static int read_entry(cursor *c, entry *e) {
  char key[64];
  int have = 0, noffs = 0;
  if (!expect(c, '{')) return 0;
  do {
    if (!read_string(c, key, sizeof key) || !expect(c, ':')) return 0;
    skip_ws(c);
    if (strcmp(key, "dtype") == 0 && !(have & 1) && read_string(c, e->dtype, sizeof e->dtype)) have |= 1;
    else if (strcmp(key, "shape") == 0 && !(have & 2) && read_uints(c, e->shape, MAX_RANK, &e->rank)) have |= 2;
    else if (strcmp(key, "data_offsets") == 0 && !(have & 4) && read_uints(c, e->offs, 2, &noffs) && noffs == 2)
      have |= 4;
    else return 0;
  } while (expect(c, ','));
  return expect(c, '}') && have == 7 && e->offs[0] <= e->offs[1];
}

static size_t dtype_size(const char *d) {
  static const char *const names[] = {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
                                      "I32", "U32", "F32", "I64", "U64", "F64", 0};
  static const size_t sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
  for (int i = 0; names[i]; i++)
    if (strcmp(names[i], d) == 0) return sizes[i];
  return 0;
}

/* shape x dtype-size, 0 on overflow or an unknown dtype (reported by the caller). */
static int entry_bytes(const entry *e, uint64_t *bytes) {
  uint64_t n = dtype_size(e->dtype);
  if (!n) return 0;
  for (int k = 0; k < e->rank; k++) {
    if (e->shape[k] != 0 && n > UINT64_MAX / e->shape[k]) return 0;
    n *= e->shape[k];
  }
  *bytes = n;
  return 1;
}

/* The header's entries, in file order; *n of them in a malloc'd array. */
static int read_header(cursor *c, entry **out, size_t *n, char *err, size_t cap) {
  char name[NAME_CAP];
  size_t room = 0;
  int seen_metadata = 0;
  *out = NULL;
  *n = 0;
  if (!expect(c, '{')) return set_err(err, cap, "the header is not a JSON object", NULL), -1;
  skip_ws(c);
  if (c->p < c->end && *c->p == '}') return c->p++, 0;
  do {
    if (!read_string(c, name, sizeof name) || !expect(c, ':')) return set_err(err, cap, "malformed header", NULL), -1;
    if (strcmp(name, "__metadata__") == 0) {
      if (seen_metadata++ || !skip_metadata(c)) return set_err(err, cap, "malformed __metadata__", NULL), -1;
      continue;
    }
    for (size_t i = 0; i < *n; i++)
      if (strcmp((*out)[i].name, name) == 0) return set_err(err, cap, "duplicate tensor name", name), -1;
    if (*n == room) {
      entry *bigger = realloc(*out, (room = room ? 2 * room : 64) * sizeof *bigger);
      if (!bigger) return set_err(err, cap, "out of memory", NULL), -1;
      *out = bigger;
    }
    entry *e = &(*out)[(*n)++];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    if (!read_entry(c, e)) return set_err(err, cap, "malformed tensor entry", name), -1;
  } while (expect(c, ','));
  return expect(c, '}') ? 0 : (set_err(err, cap, "malformed header", NULL), -1);
}

/* nnc's order: by offset, then size (an empty tensor before the one that starts where it is),
 * then name. */
static int by_offset(const void *a, const void *b) {
  const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
  uint64_t sx = x->offs[1] - x->offs[0], sy = y->offs[1] - y->offs[0];
  if (x->offs[0] != y->offs[0]) return x->offs[0] < y->offs[0] ? -1 : 1;
  if (sx != sy) return sx < sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* The tensors tile [0, size) exactly, each of its dtype's size. */
static int check_layout(entry *e, size_t n, uint64_t size, char *err, size_t cap) {
  entry **order = malloc((n ? n : 1) * sizeof *order);
  if (!order) return set_err(err, cap, "out of memory", NULL), -1;
  for (size_t i = 0; i < n; i++) order[i] = &e[i];
  qsort(order, n, sizeof *order, by_offset);
  uint64_t at = 0, bytes = 0;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const entry *t = order[i];
    if (!entry_bytes(t, &bytes)) rc = (set_err(err, cap, "unknown dtype or a shape too large", t->name), -1);
    else if (t->offs[1] - t->offs[0] != bytes) rc = (set_err(err, cap, "data_offsets do not hold shape x dtype", t->name), -1);
    else if (t->offs[1] > size) rc = (set_err(err, cap, "data offsets past the end of the file (truncated?)", t->name), -1);
    else if (t->offs[0] != at) rc = (set_err(err, cap, t->offs[0] < at ? "tensors overlap" : "a hole in the data before", t->name), -1);
    at = t->offs[1];
  }
  if (rc == 0 && at != size) rc = (set_err(err, cap, "data after the last tensor", NULL), -1);
  free(order);
  return rc;
}

static const struct tensor_spec *find_spec(const char *name) {
  for (int i = 0; specs[i].name; i++)
    if (strcmp(specs[i].name, name) == 0) return &specs[i];
  return NULL;
}

static int is_moment(const char *name) {
  static const char *const suffixes[] = {".exp_avg", ".exp_avg_sq", ".momentum_buffer", 0};
  size_t n = strlen(name);
  for (int i = 0; suffixes[i]; i++) {
    size_t k = strlen(suffixes[i]);
    if (n > k && strcmp(name + n - k, suffixes[i]) == 0) return 1;
  }
  return 0;
}

static int64_t read_i64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return (int64_t)v;
}

/* An entry against the model's tensor: same shape, same dtype or I64 values that fit an I32. */
static int check_entry(entry *e, const unsigned char *data, char *err, size_t cap) {
  const struct tensor_spec *s = e->spec = find_spec(e->name);
  if (!s) return is_moment(e->name) ? 0 : (set_err(err, cap, "a tensor the model does not have", e->name), -1);
  if (e->rank != s->rank) return set_err(err, cap, "wrong shape", s->name), -1;
  for (int k = 0; k < s->rank; k++)
    if (e->shape[k] != (uint64_t)s->shape[k]) return set_err(err, cap, "wrong shape", s->name), -1;
  if (s->kind == SPEC_TIED || strcmp(e->dtype, s->dtype) == 0) return 0;
  if (strcmp(e->dtype, "I64") != 0 || strcmp(s->dtype, "I32") != 0) return set_err(err, cap, "wrong dtype", s->name), -1;
  for (uint64_t at = e->offs[0]; at < e->offs[1]; at += 8) {
    int64_t v = read_i64(data + at);
    if (v < -2147483647 - 1 || v > 2147483647) return set_err(err, cap, "an I64 value does not fit the model's i32", s->name), -1;
  }
  return 0;
}

/* Only once every check passed: the file's tensors into persist; absent moments zeroed. */
static void copy_tensors(const entry *e, size_t n, const unsigned char *data, uint8_t *persist) {
  for (int i = 0; specs[i].name; i++)
    if (specs[i].kind == SPEC_MOMENT) memset(persist + specs[i].offset, 0, specs[i].bytes);
  for (size_t i = 0; i < n; i++) {
    const struct tensor_spec *s = e[i].spec;
    if (!s || s->kind == SPEC_TIED) continue; /* a tied tensor's values are its target's */
    if (strcmp(e[i].dtype, s->dtype) == 0) {
      memcpy(persist + s->offset, data + e[i].offs[0], s->bytes);
      continue;
    }
    for (size_t k = 0; k < s->bytes / 4; k++) { /* I64 -> I32, checked to fit */
      int32_t v = (int32_t)read_i64(data + e[i].offs[0] + 8 * k);
      memcpy(persist + s->offset + 4 * k, &v, 4);
    }
  }
}

/* The whole file, read as it comes (a directory or an unreadable file fails the read rather
 * than reporting a size). */
static unsigned char *read_file(const char *path, size_t *size, char *err, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return set_err(err, cap, strerror(errno), path), (unsigned char *)NULL;
  size_t room = 1 << 16, len = 0, got;
  unsigned char *buf = malloc(room);
  while (buf && (got = fread(buf + len, 1, room - len, f)) > 0) {
    len += got;
    if (len == room) {
      unsigned char *bigger = room <= ((size_t)-1) / 2 ? realloc(buf, room *= 2) : NULL;
      if (!bigger) free(buf);
      buf = bigger;
    }
  }
  int failed = !buf || ferror(f);
  fclose(f);
  if (failed) {
    set_err(err, cap, buf ? "cannot read (not a regular file?)" : "out of memory", path);
    free(buf);
    return NULL;
  }
  *size = len;
  return buf;
}

static int load_weights(const char *path, uint8_t *persist, char *err, size_t cap) {
  size_t size = 0, n = 0;
  unsigned char *file = read_file(path, &size, err, cap);
  if (!file) return -1;
  entry *e = NULL;
  int rc = -1;
  uint64_t hlen = size >= 8 ? (uint64_t)read_i64(file) : 0;
  if (size < 8) {
    set_err(err, cap, "too short for a safetensors file", path);
  } else if (hlen > size - 8 || hlen > MAX_HEADER) {
    set_err(err, cap, "not a safetensors file (its header length is outside the file)", path);
  } else {
    cursor c = {(const char *)file + 8, (const char *)file + 8 + hlen};
    const unsigned char *data = file + 8 + hlen;
    rc = read_header(&c, &e, &n, err, cap);
    skip_ws(&c);
    if (rc == 0 && c.p != c.end) rc = (set_err(err, cap, "the header has text after its JSON object", path), -1);
    if (rc == 0) rc = check_layout(e, n, size - 8 - hlen, err, cap);
    for (size_t i = 0; rc == 0 && i < n; i++) rc = check_entry(&e[i], data, err, cap);
    for (int i = 0; rc == 0 && specs[i].name; i++) {
      int present = 0;
      for (size_t k = 0; k < n && !present; k++) present = e[k].spec == &specs[i];
      if (!present && specs[i].kind == SPEC_REQUIRED) rc = (set_err(err, cap, "missing tensor", specs[i].name), -1);
    }
    if (rc == 0) copy_tensors(e, n, data, persist);
  }
  free(e);
  free(file);
  return rc;
}
