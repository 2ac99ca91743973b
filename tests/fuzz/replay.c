/* Runs a fuzz target over every file of its corpus directory (the ctests fuzz_replay_<target>,
 * one executable per target), so that the inputs the fuzzer found keep passing in ordinary
 * builds. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "fuzz_replay: cannot open %s\n", path);
    return 1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (!buf) return 1;
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz_replay CORPUS_DIR\n");
    return 2;
  }
  DIR *dir = opendir(argv[1]);
  if (!dir) {
    fprintf(stderr, "fuzz_replay: cannot open directory %s\n", argv[1]);
    return 2;
  }
  int files = 0, failed = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    if (e->d_name[0] == '.') continue;
    size_t n = strlen(argv[1]) + strlen(e->d_name) + 2;
    char *path = malloc(n);
    snprintf(path, n, "%s/%s", argv[1], e->d_name);
    failed += replay_file(path);
    files++;
    free(path);
  }
  closedir(dir);
  printf("%d inputs replayed, %d unreadable\n", files, failed);
  return failed || files == 0;
}
