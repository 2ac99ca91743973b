/* Atomic file replacement; see atomic_file.h for the protocol and the fault-injection hook. */
#include "runtime/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

/* NNC_FAULT_WRITE_AFTER=<bytes>: a malformed value injects nothing rather than failing every
 * write, so a typo shows up as a test that did not fail, not as a mysterious disk error. */
static uint64_t fault_write_after(void) {
  const char *s = getenv("NNC_FAULT_WRITE_AFTER");
  if (!s || !*s) return UINT64_MAX;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || s[0] == '-') return UINT64_MAX;
  return (uint64_t)v;
}

static void release(nnc_afile *f) {
  free(f->path);
  free(f->tmp_path);
  f->path = f->tmp_path = NULL;
}

void nnc_afile_abort(nnc_afile *f) {
  if (f->fd >= 0) {
    close(f->fd);
    f->fd = -1;
    if (f->tmp_path) unlink(f->tmp_path);
  }
  release(f);
}

/* Reports errno's reason for the target file and drops the temporary. */
static bool fail_errno(nnc_afile *f, const char *what, int errnum, char *err, size_t cap) {
  snprintf(err, cap, "%s: %s: %s", f->path ? f->path : "?", what, strerror(errnum));
  nnc_afile_abort(f);
  return false;
}

bool nnc_afile_open(nnc_afile *f, const char *path, char *err, size_t cap) {
  f->fd = -1;
  f->written = 0;
  f->fail_after = fault_write_after();
  f->path = copy_string(path);
  size_t tmp_cap = strlen(path) + 32;
  f->tmp_path = malloc(tmp_cap);
  if (!f->path || !f->tmp_path) {
    snprintf(err, cap, "%s: out of memory", path);
    release(f);
    return false;
  }
  snprintf(f->tmp_path, tmp_cap, "%s.tmp.%ld", path, (long)getpid());
  int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  f->fd = open(f->tmp_path, flags, 0666);
  if (f->fd < 0 && errno == EEXIST) {
    /* Left by an earlier process that had our pid and died: it is ours to replace. */
    unlink(f->tmp_path);
    f->fd = open(f->tmp_path, flags, 0666);
  }
  if (f->fd < 0) {
    int e = errno;
    snprintf(err, cap, "%s: cannot create temporary file %s: %s", path, f->tmp_path, strerror(e));
    release(f);
    return false;
  }
  return true;
}

/* write(2) until done: a short write is not an error by itself, only a write that makes no
 * progress (or fails) is. */
static ssize_t write_some(nnc_afile *f, const unsigned char *p, size_t n) {
  if (f->fail_after != UINT64_MAX) {
    uint64_t room = f->written < f->fail_after ? f->fail_after - f->written : 0;
    if (room == 0) {
      errno = ENOSPC;
      return -1;
    }
    if (n > room) n = (size_t)room;
  }
  return write(f->fd, p, n);
}

bool nnc_afile_write(nnc_afile *f, const void *buf, size_t n, char *err, size_t cap) {
  if (f->fd < 0) {
    snprintf(err, cap, "%s: write after the file was closed", f->path ? f->path : "?");
    return false;
  }
  const unsigned char *p = buf;
  while (n > 0) {
    ssize_t k = write_some(f, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return fail_errno(f, "write failed", k < 0 ? errno : EIO, err, cap);
    p += k;
    n -= (size_t)k;
    f->written += (uint64_t)k;
  }
  return true;
}

/* The rename is durable only once the directory entry is on disk. Some file systems cannot
 * fsync a directory (EINVAL): there is nothing more to do on those. */
static bool sync_parent_dir(const char *path, char *err, size_t cap) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? malloc((size_t)(slash - path) + 2) : copy_string(".");
  if (!dir) {
    snprintf(err, cap, "%s: out of memory", path);
    return false;
  }
  if (slash) {
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, len);
    dir[len] = '\0';
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int e = fd < 0 ? errno : 0;
  if (fd >= 0 && fsync(fd) != 0 && errno != EINVAL) e = errno;
  if (fd >= 0) close(fd);
  if (e) snprintf(err, cap, "%s: written, but syncing directory %s failed: %s", path, dir, strerror(e));
  free(dir);
  return e == 0;
}

bool nnc_afile_commit(nnc_afile *f, char *err, size_t cap) {
  if (f->fd < 0) {
    snprintf(err, cap, "%s: commit after the file was closed", f->path ? f->path : "?");
    return false;
  }
  if (fsync(f->fd) != 0) return fail_errno(f, "fsync failed", errno, err, cap);
  int fd = f->fd;
  f->fd = -1;
  if (close(fd) != 0) {
    int e = errno;
    unlink(f->tmp_path);
    return fail_errno(f, "close failed", e, err, cap);
  }
  if (rename(f->tmp_path, f->path) != 0) {
    int e = errno;
    unlink(f->tmp_path);
    return fail_errno(f, "rename failed", e, err, cap);
  }
  bool ok = sync_parent_dir(f->path, err, cap);
  release(f);
  return ok;
}
