#include "diag.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"

void nnc_diags_init(nnc_diags *d, FILE *out) {
  memset(d, 0, sizeof *d);
  d->out = out;
  d->max_errors = 50;
}

nnc_diags *nnc_diags_init_buffer(nnc_diags *d, char *buf, size_t cap) {
  nnc_diags_init(d, NULL);
  d->first = buf, d->first_cap = cap;
  if (cap > 0) buf[0] = 0;
  return d;
}

const char *nnc_loc_str(nnc_loc loc, char *buf, size_t cap) {
  if (loc.src)
    snprintf(buf, cap, "%s:%d:%d", loc.src->path, loc.line, loc.col);
  else
    snprintf(buf, cap, "<generated>");
  return buf;
}

/* Quoted source lines are cut to a window around the caret: a diagnostic on a 1 MB line shows
 * the part that matters, not the megabyte. */
enum { QUOTE_MAX = 120, QUOTE_BEFORE = 70 };

/* Length of the valid UTF-8 sequence at p (2 to 4 bytes), or 0. */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
  int n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
  if (p[0] >= 0xf5 || end - p < n) return 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80) return 0;
  return n;
}

/* Writes the bytes [p, stop) as a terminal shows them safely: printable ASCII, tabs and valid
 * UTF-8 as they are, anything else (control bytes, binary garbage) as <XX>. With pad set, writes
 * the blanks that line a caret up under the text instead. */
static void put_quoted(FILE *out, const unsigned char *p, const unsigned char *stop, bool pad) {
  while (p < stop) {
    int n = *p >= 0x80 ? utf8_len(p, stop) : 0;
    if (*p == '\t') {
      fputc('\t', out);
      p++;
    } else if (*p >= 0x20 && *p < 0x7f) {
      fputc(pad ? ' ' : *p, out);
      p++;
    } else if (n > 0) {
      if (pad) fputc(' ', out);
      else fwrite(p, 1, (size_t)n, out);
      p += n;
    } else {
      if (pad) fputs("    ", out);
      else fprintf(out, "<%02X>", *p);
      p++;
    }
  }
}

/* Prints the line of loc and a caret under its column; tabs are kept so the caret lines up. */
static void print_caret(FILE *out, nnc_loc loc) {
  if (!loc.src || !loc.src->text || loc.line < 1) return;
  const unsigned char *p = (const unsigned char *)loc.src->text, *end = p + loc.src->len;
  for (int line = 1; line < loc.line && p < end; p++)
    if (*p == '\n') line++;
  const unsigned char *eol = p;
  while (eol < end && *eol != '\n') eol++;
  if (p >= end && p == eol) return;
  if (eol > p && eol[-1] == '\r') eol--;
  const unsigned char *caret = loc.col < 1 ? p : loc.col - 1 < eol - p ? p + (loc.col - 1) : eol;
  const unsigned char *from = p, *to = eol;
  if (eol - p > QUOTE_MAX) {
    from = caret - p > QUOTE_BEFORE ? caret - QUOTE_BEFORE : p;
    while (from > p && from < eol && (*from & 0xc0) == 0x80) from--; /* not inside a UTF-8 character */
    to = eol - from > QUOTE_MAX ? from + QUOTE_MAX : eol;
    while (to < eol && (*to & 0xc0) == 0x80) to++;
  }
  const char *more_before = from > p ? "..." : "", *more_after = to < eol ? "..." : "";
  fputs(more_before, out);
  put_quoted(out, from, to, false);
  fprintf(out, "%s\n", more_after);
  fprintf(out, "%*s", (int)strlen(more_before), "");
  put_quoted(out, from, caret < to ? caret : to, true);
  fputs("^\n", out);
}

static bool report(nnc_diags *d, const char *kind, nnc_loc loc, const char *fmt, va_list ap) {
  if (!d->out) return false;
  char where[512];
  if (loc.src)
    fprintf(d->out, "%s: %s: ", nnc_loc_str(loc, where, sizeof where), kind);
  else
    fprintf(d->out, "nnc: %s: ", kind);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  print_caret(d->out, loc);
  return true;
}

static bool suppressed(const nnc_diags *d) { return d->max_errors > 0 && d->nerrors > d->max_errors; }

void nnc_error(nnc_diags *d, nnc_loc loc, const char *fmt, ...) {
  d->nerrors++;
  if (suppressed(d)) {
    if (d->nerrors == d->max_errors + 1 && d->out)
      fprintf(d->out, "nnc: error: too many errors, stopping here\n");
    return;
  }
  va_list ap;
  if (d->first && d->first_cap > 0 && d->nerrors == 1) {
    va_start(ap, fmt);
    vsnprintf(d->first, d->first_cap, fmt, ap);
    va_end(ap);
  }
  va_start(ap, fmt);
  report(d, "error", loc, fmt, ap);
  va_end(ap);
}

void nnc_warning(nnc_diags *d, nnc_loc loc, const char *fmt, ...) {
  d->nwarnings++;
  va_list ap;
  va_start(ap, fmt);
  report(d, "warning", loc, fmt, ap);
  va_end(ap);
}

void nnc_note(nnc_diags *d, nnc_loc loc, const char *fmt, ...) {
  if (suppressed(d)) return;
  va_list ap;
  va_start(ap, fmt);
  report(d, "note", loc, fmt, ap);
  va_end(ap);
}

/* The model file, opened without blocking (a FIFO would wait for a writer forever) and only when
 * it is a regular file; "-" is standard input, read when the user asks for it. */
static FILE *open_source(const char *path, nnc_diags *d) {
  nnc_loc none = {0};
  if (strcmp(path, "-") == 0) return stdin;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    nnc_error(d, none, "cannot open '%s': %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    nnc_error(d, none, "cannot read '%s': %s, not a regular file (use '-' to read a model from standard input)",
              path, S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket");
    close(fd);
    return NULL;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    nnc_error(d, none, "cannot open '%s': %s", path, strerror(errno));
    close(fd);
  }
  return f;
}

bool nnc_source_read(nnc_source *s, const char *path, nnc_diags *d) {
  memset(s, 0, sizeof *s);
  nnc_loc none = {0};
  FILE *f = open_source(path, d);
  if (!f) return false;
  size_t cap = 4096, len = 0;
  char *text = nnc_xmalloc(cap);
  for (;;) {
    if (len + 1 >= cap) text = nnc_xrealloc(text, cap *= 2);
    size_t got = fread(text + len, 1, cap - len - 1, f);
    len += got;
    if (got == 0) break;
  }
  bool failed = ferror(f);
  int err = errno; /* fclose may change it */
  if (f != stdin) fclose(f);
  if (failed) {
    nnc_error(d, none, "cannot read '%s': %s", path, strerror(err));
    free(text);
    return false;
  }
  text[len] = 0;
  const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  char *p = nnc_xmalloc(strlen(name) + 1);
  strcpy(p, name);
  s->path = p;
  s->text = text;
  s->len = len;
  return true;
}

void nnc_source_free(nnc_source *s) {
  free((char *)s->path);
  free((char *)s->text);
  memset(s, 0, sizeof *s);
}
