/* Command output through memory streams and the atomic writer; see output.h. */
#include "driver/output.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "driver/options.h"
#include "runtime/atomic_file.h"

static void report(const char *what, const char *path) {
  fprintf(stderr, "nnc: error: %s '%s': %s\n", what, path, strerror(errno));
}

bool nnc_outfile_open(nnc_outfile *out, const char *path) {
  *out = (nnc_outfile){.f = stdout, .path = path};
  if (!path) return true;
  out->f = open_memstream(&out->text, &out->len);
  if (!out->f) report("cannot write", path);
  return out->f != NULL;
}

bool nnc_outfile_open_in(nnc_outfile *out, const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *path = malloc(n);
  if (!path) return report("cannot write", name), false;
  snprintf(path, n, "%s/%s", dir, name);
  bool ok = nnc_outfile_open(out, path);
  out->owned = path;
  return ok;
}

static void release(nnc_outfile *out) {
  if (out->path && out->f) fclose(out->f);
  free(out->text);
  free(out->owned);
  *out = (nnc_outfile){0};
}

int nnc_outfile_close(nnc_outfile *out, int status) {
  if (!out->f) {
    release(out);
    return status == NNC_EXIT_OK ? NNC_EXIT_ENVIRONMENT : status;
  }
  bool failed = fflush(out->f) != 0 || ferror(out->f);
  if (!out->path) {
    if (failed && status == NNC_EXIT_OK) {
      report("writing failed:", "standard output");
      status = NNC_EXIT_ENVIRONMENT;
    }
    *out = (nnc_outfile){0};
    return status;
  }
  char err[1024];
  if (status == NNC_EXIT_OK && (failed || !nnc_afile_write_whole(out->path, out->text, out->len, err, sizeof err))) {
    if (failed) report("cannot write", out->path);
    else fprintf(stderr, "nnc: error: %s\n", err);
    status = NNC_EXIT_ENVIRONMENT;
  }
  release(out);
  return status;
}

bool nnc_outfile_check(const char *path) {
  char err[1024];
  if (nnc_afile_check(path, err, sizeof err)) return true;
  fprintf(stderr, "nnc: error: %s\n", err);
  return false;
}

bool nnc_outdir_usable(const char *dir) {
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno == ENOENT) return true;
  } else {
    if (S_ISDIR(st.st_mode)) return true;
    errno = ENOTDIR;
  }
  report("cannot write to the output directory", dir);
  return false;
}

bool nnc_outdir_make(const char *dir) {
  struct stat st;
  if (mkdir(dir, 0777) == 0 || (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))) return true;
  if (errno == EEXIST) errno = ENOTDIR;
  report("cannot create the output directory", dir);
  return false;
}
