/* Diagnostics, clang-style: "file:line:col: error: message", the source line, a caret.
 * Every stage reports through one nnc_diags; nothing prints errors on its own or exits. */
#ifndef NNC_DIAG_H
#define NNC_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* A source text in memory (a model file, IR text, or a string given on the command line). */
typedef struct nnc_source {
  const char *path;
  const char *text;
  size_t len;
} nnc_source;

typedef struct nnc_loc {
  const nnc_source *src;          /* NULL: no location (generated) */
  int line, col;                  /* 1-based */
} nnc_loc;

typedef struct nnc_diags {
  FILE *out;                      /* where diagnostics go (stderr in the driver) */
  int nerrors, nwarnings;
  int max_errors;                 /* stop reporting after this many (0: 50) */
  bool color;
  char *first;                    /* when set: the first error's message is kept here */
  size_t first_cap;
} nnc_diags;

void nnc_diags_init(nnc_diags *, FILE *out);
/* Diagnostics kept, not printed: the first error's message (no "nnc: error:", no location)
 * goes to buf. For the one place the compiler hands a failure to code whose channel is an
 * error string: the executors, which run compiled programs for the runtime. */
nnc_diags *nnc_diags_init_buffer(nnc_diags *, char *buf, size_t cap);
void nnc_error(nnc_diags *, nnc_loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void nnc_warning(nnc_diags *, nnc_loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A note attached to the previous error ("shape [3,4] came from here"). */
void nnc_note(nnc_diags *, nnc_loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "file:line:col" of a location, for messages that mention another place. */
const char *nnc_loc_str(nnc_loc, char *buf, size_t cap);

/* Reads a whole file into a source; returns false and reports (without location) on failure. */
bool nnc_source_read(nnc_source *, const char *path, nnc_diags *);
void nnc_source_free(nnc_source *);

#endif
