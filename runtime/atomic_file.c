/* Atomic file replacement; see atomic_file.h for the protocol and the fault-injection hook. */
#include "runtime/atomic_file.h"
#include "runtime/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* ---- the target: links followed, regular or absent ---- */

/* The directory part of path ("." when it has none), malloc'd. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return copy_string(".");
  size_t len = slash == path ? 1 : (size_t)(slash - path);
  char *dir = malloc(len + 1);
  if (dir) {
    memcpy(dir, path, len);
    dir[len] = '\0';
  }
  return dir;
}

/* A link's text taken relative to the directory of the link itself, as the kernel does. */
static char *link_destination(const char *link, const char *text) {
  if (text[0] == '/') return copy_string(text);
  const char *slash = strrchr(link, '/');
  size_t dlen = slash ? (size_t)(slash - link) + 1 : 0, n = dlen + strlen(text) + 1;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%.*s%s", (int)dlen, link, text);
  return p;
}

/* path with its symbolic links followed to the file they name, which need not exist yet (a
 * dangling link is how a user points an output at a file to be made). */
static char *follow_links(const char *path, char *err, size_t cap) {
  char *cur = copy_string(path);
  for (int hops = 0; cur && hops < 40; hops++) {
    struct stat st;
    if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur; /* absent or not a link */
    char text[PATH_MAX];
    ssize_t n = readlink(cur, text, sizeof text - 1);
    if (n < 0) {
      snprintf(err, cap, "%s: cannot read the symbolic link %s: %s", path, cur, strerror(errno));
      free(cur);
      return NULL;
    }
    text[n] = '\0';
    char *next = link_destination(cur, text);
    free(cur);
    cur = next;
  }
  if (cur) snprintf(err, cap, "%s: too many levels of symbolic links", path);
  else snprintf(err, cap, "%s: out of memory", path);
  free(cur);
  return NULL;
}

/* The resolved target may be replaced: it is absent or a regular file. */
static bool replaceable(const char *path, const char *target, char *err, size_t cap) {
  struct stat st;
  if (stat(target, &st) != 0) {
    if (errno == ENOENT) return true;
    snprintf(err, cap, "%s: %s", path, strerror(errno));
    return false;
  }
  if (S_ISREG(st.st_mode)) return true;
  if (strcmp(path, target) == 0)
    snprintf(err, cap, "%s: is %s, not a regular file: refusing to replace it", path, nnc_rt_file_kind(st.st_mode));
  else
    snprintf(err, cap, "%s: its target %s is %s, not a regular file: refusing to replace it", path, target,
             nnc_rt_file_kind(st.st_mode));
  return false;
}

bool nnc_check_regular_target(const char *path, char *err, size_t cap) {
  char *target = follow_links(path, err, cap);
  bool ok = target && replaceable(path, target, err, cap);
  free(target);
  return ok;
}

/* ---- temporaries of dead processes ---- */

/* "<base>.tmp.<pid>" -> pid, else 0. */
static long temp_owner(const char *name, const char *base) {
  size_t n = strlen(base);
  if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp.", 5) != 0) return 0;
  const char *digits = name + n + 5;
  char *end;
  errno = 0;
  long pid = strtol(digits, &end, 10);
  return !errno && *digits >= '1' && *digits <= '9' && *end == '\0' && pid > 0 ? pid : 0;
}

static bool process_gone(long pid) { return kill((pid_t)pid, 0) != 0 && errno == ESRCH; }

/* Removes the regular files "<target>.tmp.<pid>" whose pid no longer runs on this machine.
 * Best effort: a directory that cannot be listed keeps its leftovers. */
static void remove_stale_temporaries(const char *target) {
  char *dir = dir_of(target);
  const char *slash = strrchr(target, '/');
  const char *base = slash ? slash + 1 : target;
  DIR *d = dir ? opendir(dir) : NULL;
  for (struct dirent *e; d && (e = readdir(d));) {
    long pid = temp_owner(e->d_name, base);
    if (!pid || pid == (long)getpid() || !process_gone(pid)) continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
      unlinkat(dirfd(d), e->d_name, 0);
  }
  if (d) closedir(d);
  free(dir);
}

/* ---- the file ---- */

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
  f->tmp_path = NULL;
  f->path = follow_links(path, err, cap);
  if (!f->path || !replaceable(path, f->path, err, cap)) {
    release(f);
    return false;
  }
  size_t tmp_cap = strlen(f->path) + 32;
  if (!(f->tmp_path = malloc(tmp_cap))) {
    snprintf(err, cap, "%s: out of memory", path);
    release(f);
    return false;
  }
  snprintf(f->tmp_path, tmp_cap, "%s.tmp.%ld", f->path, (long)getpid());
  remove_stale_temporaries(f->path);
  int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  f->fd = open(f->tmp_path, flags, 0666);
  if (f->fd < 0 && errno == EEXIST) {
    /* Left by an earlier process that had our pid and died: it is ours to replace. */
    unlink(f->tmp_path);
    f->fd = open(f->tmp_path, flags, 0666);
  }
  if (f->fd < 0) {
    int e = errno;
    snprintf(err, cap, "%s: cannot create a temporary file in its directory: %s", path, strerror(e));
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
  char *dir = dir_of(path);
  if (!dir) {
    snprintf(err, cap, "%s: out of memory", path);
    return false;
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
  /* the target may have become a device or a directory while we wrote: never replace one */
  if (!replaceable(f->path, f->path, err, cap)) {
    nnc_afile_abort(f);
    return false;
  }
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

bool nnc_afile_write_whole(const char *path, const void *buf, size_t n, char *err, size_t cap) {
  nnc_afile f;
  if (!nnc_afile_open(&f, path, err, cap)) return false;
  bool ok = nnc_afile_write(&f, buf, n, err, cap) && nnc_afile_commit(&f, err, cap);
  nnc_afile_abort(&f);
  return ok;
}

bool nnc_afile_check(const char *path, char *err, size_t cap) {
  nnc_afile f;
  if (!nnc_afile_open(&f, path, err, cap)) return false;
  nnc_afile_abort(&f);
  return true;
}
