/* Where a command writes its text: standard output, or the file of -o, which appears whole or
 * not at all. The text is built in memory and committed through the runtime's atomic writer
 * (runtime/atomic_file.h): a full disk, a device node or a directory in the way leaves what was
 * there before untouched, and a command that fails half way writes nothing. */
#ifndef NNC_DRIVER_OUTPUT_H
#define NNC_DRIVER_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

typedef struct nnc_outfile {
  FILE *f;            /* what the command prints to */
  const char *path;   /* NULL: standard output */
  char *text;         /* the memory stream behind f, for a path */
  size_t len;
  char *owned;        /* path, when built by nnc_outfile_open_in */
} nnc_outfile;

/* Opens path (NULL: standard output). False, reported, when it cannot be: exit status 3. */
bool nnc_outfile_open(nnc_outfile *, const char *path);
/* A file of an output directory: dir/name. */
bool nnc_outfile_open_in(nnc_outfile *, const char *dir, const char *name);
/* Commits the text when status is 0 (for a path: replaces the file atomically), else drops it.
 * Returns status, or 3 when the commit failed (reported). */
int nnc_outfile_close(nnc_outfile *, int status);

/* Whether path can be written as an output file before any work is done: absent or a regular
 * file (links followed) in a writable directory. Reported when not. */
bool nnc_outfile_check(const char *path);
/* Makes dir the output directory: an existing directory, or a new one. Reported when not. */
bool nnc_outdir_make(const char *dir);
/* Whether dir is a directory or absent (nnc_outdir_make would create it), checked before any
 * work is done. Reported when not. */
bool nnc_outdir_usable(const char *dir);

#endif
