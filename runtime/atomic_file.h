/* Atomic file replacement: write to "<target>.tmp.<pid>" in the target's directory, fsync it,
 * rename it over the target, fsync the directory. Readers see the old file or the new one,
 * never a mix, and a failure at any step leaves the old file as it was and removes the
 * temporary.
 *
 * The target is the path with its symbolic links followed: writing through a link updates the
 * file it points to and keeps the link. A target that exists and is not a regular file (a
 * directory, a device node such as /dev/full, a FIFO, a socket) is refused when the file is
 * opened, so a caller that opens (or checks) its outputs before long work loses nothing; the
 * commit checks again and never renames over one.
 *
 * Temporaries of processes that died (SIGKILL, power loss) would pile up next to the target:
 * opening removes every "<target>.tmp.<pid>" whose process no longer exists.
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
  char *path;               /* the target, symbolic links followed */
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

/* open + write + commit of a whole buffer. */
bool nnc_afile_write_whole(const char *path, const void *buf, size_t n, char *err, size_t cap);

/* Whether path can be replaced atomically: what nnc_afile_open checks (the target's type, a
 * temporary created and removed in its directory), with nothing left behind. */
bool nnc_afile_check(const char *path, char *err, size_t cap);

/* Whether path is absent or a regular file once symbolic links are followed: the check for
 * outputs that are appended to as they go (a metrics log) rather than replaced. */
bool nnc_check_regular_target(const char *path, char *err, size_t cap);

#endif
