/* Atomic file replacement: write to "<path>.tmp.<pid>" in the same directory, fsync it, rename
 * it over <path>, fsync the directory. Readers see the old file or the new one, never a mix,
 * and a failure at any step leaves the old file as it was and removes the temporary.
 *
 * Fault injection (for tests of full disks): when the environment variable
 * NNC_FAULT_WRITE_AFTER=<bytes> is set when a file is opened, writes to that file accept
 * <bytes> bytes in total and then fail with ENOSPC ("No space left on device"), after a short
 * write for the part that still fits. It applies to every atomic file the process opens. */
#ifndef NNC_ATOMIC_FILE_H
#define NNC_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nnc_afile {
  int fd;                   /* -1 once committed or aborted */
  char *path;               /* the target */
  char *tmp_path;           /* the temporary written first */
  uint64_t written;
  uint64_t fail_after;      /* UINT64_MAX: no injected fault */
} nnc_afile;

/* All functions return false and fill err ("<path>: <problem>") on failure; after a failure
 * the temporary is already removed, so the caller only reports. */
bool nnc_afile_open(nnc_afile *, const char *path, char *err, size_t cap);
bool nnc_afile_write(nnc_afile *, const void *buf, size_t n, char *err, size_t cap);
/* fsync, close, rename over the target, fsync the directory. */
bool nnc_afile_commit(nnc_afile *, char *err, size_t cap);
/* Drops the temporary; the target is untouched. Safe after a failure or a commit. */
void nnc_afile_abort(nnc_afile *);

#endif
