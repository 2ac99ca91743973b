#include "diag.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

void nnc_diags_init(nnc_diags *d, FILE *out) {
  memset(d, 0, sizeof *d);
  d->out = out;
  d->max_errors = 50;
}

const char *nnc_loc_str(nnc_loc loc, char *buf, size_t cap) {
  if (loc.src)
    snprintf(buf, cap, "%s:%d:%d", loc.src->path, loc.line, loc.col);
  else
    snprintf(buf, cap, "<generated>");
  return buf;
}

/* Prints the line of loc and a caret under its column; tabs are kept so the caret lines up. */
static void print_caret(FILE *out, nnc_loc loc) {
  if (!loc.src || !loc.src->text || loc.line < 1) return;
  const char *p = loc.src->text, *end = p + loc.src->len;
  for (int line = 1; line < loc.line && p < end; p++)
    if (*p == '\n') line++;
  const char *eol = p;
  while (eol < end && *eol != '\n') eol++;
  if (p >= end && p == eol) return;
  fprintf(out, "%.*s\n", (int)(eol - p), p);
  for (int i = 1; i < loc.col && p + i - 1 < eol; i++) fputc(p[i - 1] == '\t' ? '\t' : ' ', out);
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

bool nnc_source_read(nnc_source *s, const char *path, nnc_diags *d) {
  memset(s, 0, sizeof *s);
  FILE *f = fopen(path, "rb");
  nnc_loc none = {0};
  if (!f) {
    nnc_error(d, none, "cannot open '%s': %s", path, strerror(errno));
    return false;
  }
  size_t cap = 4096, len = 0;
  char *text = nnc_xmalloc(cap);
  for (;;) {
    if (len + 1 >= cap) text = nnc_xrealloc(text, cap *= 2);
    size_t got = fread(text + len, 1, cap - len - 1, f);
    len += got;
    if (got == 0) break;
  }
  bool failed = ferror(f);
  fclose(f);
  if (failed) {
    nnc_error(d, none, "cannot read '%s'", path);
    free(text);
    return false;
  }
  text[len] = 0;
  char *p = nnc_xmalloc(strlen(path) + 1);
  strcpy(p, path);
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
