/* See fuzz_files.h. */
#include "fuzz_files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_NAMES = 8, PATH_CAP = 512 };

static char dir[PATH_CAP];
static char paths[MAX_NAMES][PATH_CAP];
static int npaths;

static void remove_dir(void) {
  fuzz_remove_files();
  rmdir(dir);
}

/* tmpfs when there is one: the readers then cost no disk I/O per input. */
const char *fuzz_dir(void) {
  if (dir[0]) return dir;
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/nnc-fuzz-XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(dir)) {
    perror("fuzz: mkdtemp");
    abort();
  }
  atexit(remove_dir);
  return dir;
}

/* The first separator in [s, end), or NULL (memmem is not in C17 or POSIX). */
static const uint8_t *find_separator(const uint8_t *s, const uint8_t *end) {
  const size_t len = sizeof FUZZ_FILE_SEPARATOR - 1;
  for (; (size_t)(end - s) >= len; s++)
    if (memcmp(s, FUZZ_FILE_SEPARATOR, len) == 0) return s;
  return NULL;
}

int fuzz_split(const uint8_t *data, size_t size, fuzz_part *parts) {
  int n = 0;
  const uint8_t *s = data, *end = data + size;
  while (n < FUZZ_MAX_FILES - 1) {
    const uint8_t *at = find_separator(s, end);
    if (!at) break;
    parts[n++] = (fuzz_part){s, (size_t)(at - s)};
    s = at + sizeof FUZZ_FILE_SEPARATOR - 1;
  }
  parts[n++] = (fuzz_part){s, (size_t)(end - s)};
  return n;
}

/* A slot for <dir>/<name> among the files to remove. */
static const char *remember(const char *name) {
  char path[PATH_CAP];
  if (snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name) >= (int)sizeof path) abort();
  for (int i = 0; i < npaths; i++)
    if (strcmp(paths[i], path) == 0) return paths[i];
  if (npaths == MAX_NAMES) abort();
  memcpy(paths[npaths], path, sizeof path);
  return paths[npaths++];
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size) {
  const char *path = remember(name);
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
    perror(path);
    abort();
  }
  return path;
}

void fuzz_remove_files(void) {
  for (int i = 0; i < npaths; i++) unlink(paths[i]);
  npaths = 0;
}

unsigned fuzz_touch(const void *data, size_t size) {
  const volatile uint8_t *p = data;
  unsigned sum = 0;
  for (size_t i = 0; i < size; i++) sum += p[i];
  return sum;
}
