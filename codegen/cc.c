/* cc + dlopen for generated C (codegen/cc.h). */
#include "codegen/cc.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/arena.h"

struct nnc_cg_lib {
  void *handle;
  char dir[64];
};

static bool write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return false;
  bool ok = fputs(text, f) >= 0;
  return fclose(f) == 0 && ok;
}

/* The compiler's messages, at most cap-1 bytes of them. */
static void read_text(const char *path, char *buf, size_t cap) {
  buf[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f) return;
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = 0;
  fclose(f);
}

static void remove_dir(const char *dir) {
  static const char *const files[] = {"kernel.c", "kernel.so", "cc.log"};
  char path[128];
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
}

nnc_cg_lib *nnc_cg_cc_compile(const char *source, const char *flags, nnc_diags *d) {
  nnc_cg_lib *lib = nnc_xcalloc(1, sizeof *lib);
  snprintf(lib->dir, sizeof lib->dir, "/tmp/nnc-cc-XXXXXX");
  if (!mkdtemp(lib->dir)) {
    nnc_error(d, (nnc_loc){0}, "cannot create a temporary directory for the C compiler");
    free(lib);
    return NULL;
  }
  char src[128], so[128], log[128];
  snprintf(src, sizeof src, "%s/kernel.c", lib->dir);
  snprintf(so, sizeof so, "%s/kernel.so", lib->dir);
  snprintf(log, sizeof log, "%s/cc.log", lib->dir);
  if (!write_text(src, source)) {
    nnc_error(d, (nnc_loc){0}, "cannot write %s", src);
    remove_dir(lib->dir);
    free(lib);
    return NULL;
  }
  const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
  size_t cap = strlen(cc) + (flags ? strlen(flags) : 0) + 512;
  char *cmd = nnc_xmalloc(cap);
  snprintf(cmd, cap, "%s -std=c99 -Wall -Wextra -Werror -O2 -march=native -shared -fPIC %s -o %s %s 2> %s", cc,
           flags ? flags : "", so, src, log);
  int rc = system(cmd);
  if (rc != 0) {
    char msgs[3000];
    read_text(log, msgs, sizeof msgs);
    nnc_error(d, (nnc_loc){0}, "C compiler failed (status %d): %.*s\n%s", rc, (int)(strstr(cmd, " 2> ") - cmd), cmd, msgs);
    free(cmd);
    remove_dir(lib->dir);
    free(lib);
    return NULL;
  }
  free(cmd);
  lib->handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle) {
    const char *why = dlerror();
    nnc_error(d, (nnc_loc){0}, "cannot load the compiled code: %s", why ? why : "unknown error");
    remove_dir(lib->dir);
    free(lib);
    return NULL;
  }
  return lib;
}

void *nnc_cg_cc_sym(nnc_cg_lib *lib, const char *name) { return lib && lib->handle ? dlsym(lib->handle, name) : NULL; }

void nnc_cg_cc_close(nnc_cg_lib *lib) {
  if (!lib) return;
  if (lib->handle) dlclose(lib->handle);
  remove_dir(lib->dir);
  free(lib);
}
