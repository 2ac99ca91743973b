/* The body of every emitted model_loader.c (codegen/c_program.c prints it after the model's
 * table `specs`); scripts/gen_inc.py turns it into codegen/loader_text.inc. Standard C99: a
 * bounded reader of the safetensors header (8-byte little-endian length, JSON object of
 * name -> {dtype, shape, data_offsets}, optional __metadata__), then the data. */

static void set_err(char *err, size_t cap, const char *msg, const char *name) {
  if (err && cap) snprintf(err, cap, "%s%s%s", msg, name ? ": " : "", name ? name : "");
}

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

/* A JSON string into out (escapes \" \\ \/ \b \f \n \r \t; \u of ASCII only). */
static int read_string(cursor *c, char *out, size_t cap) {
  size_t n = 0;
  if (!expect(c, '"')) return 0;
  while (c->p < c->end && *c->p != '"') {
    char ch = *c->p++;
    if (ch == '\\') {
      if (c->p >= c->end) return 0;
      ch = *c->p++;
      switch (ch) {
      case 'b': ch = '\b'; break;
      case 'f': ch = '\f'; break;
      case 'n': ch = '\n'; break;
      case 'r': ch = '\r'; break;
      case 't': ch = '\t'; break;
      case 'u': {
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
          if (c->p >= c->end) return 0;
          char h = *c->p++;
          v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
          if (v > 0xffff) return 0;
        }
        if (v == 0 || v > 0x7f) return 0;
        ch = (char)v;
        break;
      }
      case '"': case '\\': case '/': break;
      default: return 0;
      }
    }
    if (n + 1 >= cap) return 0;
    out[n++] = ch;
  }
  out[n] = 0;
  return expect(c, '"');
}

static int read_uint(cursor *c, uint64_t *v) {
  skip_ws(c);
  if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
  *v = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    if (*v > (UINT64_MAX - 9) / 10) return 0;
    *v = *v * 10 + (uint64_t)(*c->p++ - '0');
  }
  return 1;
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

/* Skips {"key": "value", ...} (the metadata). */
static int skip_metadata(cursor *c) {
  char buf[1024];
  if (!expect(c, '{')) return 0;
  skip_ws(c);
  if (c->p < c->end && *c->p == '}') return c->p++, 1;
  do {
    if (!read_string(c, buf, sizeof buf) || !expect(c, ':') || !read_string(c, buf, sizeof buf)) return 0;
  } while (expect(c, ','));
  return expect(c, '}');
}

typedef struct entry {
  char dtype[16];
  uint64_t shape[8], offs[2];
  int rank, noffs;
} entry;

static int read_entry(cursor *c, entry *e) {
  char key[64];
  int have = 0;
  if (!expect(c, '{')) return 0;
  do {
    if (!read_string(c, key, sizeof key) || !expect(c, ':')) return 0;
    if (strcmp(key, "dtype") == 0 && read_string(c, e->dtype, sizeof e->dtype)) have |= 1;
    else if (strcmp(key, "shape") == 0 && read_uints(c, e->shape, 8, &e->rank)) have |= 2;
    else if (strcmp(key, "data_offsets") == 0 && read_uints(c, e->offs, 2, &e->noffs) && e->noffs == 2) have |= 4;
    else return 0;
  } while (expect(c, ','));
  return expect(c, '}') && have == 7;
}

static const struct tensor_spec *find_spec(const char *name) {
  for (int i = 0; specs[i].name; i++)
    if (strcmp(specs[i].name, name) == 0) return &specs[i];
  return NULL;
}

static int check_and_copy(const struct tensor_spec *s, const entry *e, const unsigned char *data, uint64_t size,
                          uint8_t *persist, char *err, size_t cap) {
  if (strcmp(e->dtype, s->dtype) != 0) return set_err(err, cap, "wrong dtype", s->name), -1;
  if (e->rank != s->rank) return set_err(err, cap, "wrong rank", s->name), -1;
  for (int k = 0; k < s->rank; k++)
    if (e->shape[k] != (uint64_t)s->shape[k]) return set_err(err, cap, "wrong shape", s->name), -1;
  if (e->offs[0] > e->offs[1] || e->offs[1] > size || e->offs[1] - e->offs[0] != (uint64_t)s->bytes)
    return set_err(err, cap, "data offsets outside the file or of the wrong size (a truncated file?)", s->name), -1;
  memcpy(persist + s->offset, data + e->offs[0], s->bytes);
  return 0;
}

/* The header's entries, each tensor checked and copied; found[i] marks specs[i]. */
static int read_header(cursor *c, const unsigned char *data, uint64_t size, uint8_t *persist, unsigned char *found,
                       char *err, size_t cap) {
  char name[1024];
  if (!expect(c, '{')) return set_err(err, cap, "the header is not a JSON object", NULL), -1;
  skip_ws(c);
  if (c->p < c->end && *c->p == '}') return 0;
  do {
    if (!read_string(c, name, sizeof name) || !expect(c, ':')) return set_err(err, cap, "malformed header", NULL), -1;
    if (strcmp(name, "__metadata__") == 0) {
      if (!skip_metadata(c)) return set_err(err, cap, "malformed __metadata__", NULL), -1;
      continue;
    }
    entry e;
    memset(&e, 0, sizeof e);
    if (!read_entry(c, &e)) return set_err(err, cap, "malformed tensor entry", name), -1;
    const struct tensor_spec *s = find_spec(name);
    if (!s) continue;
    if (check_and_copy(s, &e, data, size, persist, err, cap) != 0) return -1;
    found[s - specs] = 1;
  } while (expect(c, ','));
  if (!expect(c, '}')) return set_err(err, cap, "malformed header", NULL), -1;
  return 0;
}

static unsigned char *read_file(const char *path, size_t *size, char *err, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return set_err(err, cap, strerror(errno), path), (unsigned char *)NULL;
  unsigned char *buf = NULL;
  long len = -1;
  if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
  if (len >= 8 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len)) != NULL &&
      fread(buf, 1, (size_t)len, f) != (size_t)len) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (!buf) set_err(err, cap, len < 8 ? "too short for a safetensors file" : "cannot read", path);
  *size = buf ? (size_t)len : 0;
  return buf;
}

static int load_weights(const char *path, uint8_t *persist, char *err, size_t cap) {
  size_t size;
  unsigned char *file = read_file(path, &size, err, cap);
  if (!file) return -1;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | file[i];
  int rc = -1;
  unsigned char found[sizeof specs / sizeof specs[0]];
  memset(found, 0, sizeof found);
  if (hlen > size - 8 || hlen > 100000000) {
    set_err(err, cap, "not a safetensors file (its header length is outside the file)", path);
  } else {
    cursor c = {(const char *)file + 8, (const char *)file + 8 + hlen};
    rc = read_header(&c, file + 8 + hlen, size - 8 - hlen, persist, found, err, cap);
  }
  for (int i = 0; rc == 0 && specs[i].name; i++) {
    if (found[i]) continue;
    if (!specs[i].optional) {
      set_err(err, cap, "missing tensor", specs[i].name);
      rc = -1;
    } else if (strstr(specs[i].name, ".exp_avg") || strstr(specs[i].name, ".momentum_buffer")) {
      memset(persist + specs[i].offset, 0, specs[i].bytes); /* a fresh optimizer state */
    }
  }
  free(file);
  return rc;
}
