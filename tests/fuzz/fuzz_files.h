/* Helpers of the fuzz targets whose readers take paths (the data readers): the input becomes
 * files in a private temporary directory, removed again after each input.
 *
 * Inputs that make several files (an IDX dataset's four, a .npy x/y pair) hold them one after
 * the other, separated by FUZZ_FILE_SEPARATOR; the dictionaries list it, so the fuzzer adds and
 * removes files as easily as it edits one. */
#ifndef NNC_FUZZ_FILES_H
#define NNC_FUZZ_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FUZZ_FILE_SEPARATOR "--next-file--"
#define FUZZ_MAX_FILES 4

typedef struct fuzz_part {
  const uint8_t *data;
  size_t size;
} fuzz_part;

/* Cuts data at the separators into at most FUZZ_MAX_FILES parts (the last keeps any further
 * separators); returns the number of parts, at least 1. */
int fuzz_split(const uint8_t *data, size_t size, fuzz_part *parts);

/* Writes bytes to <the private directory>/<name> and returns the path (valid until the next
 * call with the same name); aborts when the file cannot be written, as the harness is broken
 * then, not the reader. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);

/* The private directory, made on the first call and removed at exit. */
const char *fuzz_dir(void);

/* Removes every file fuzz_write_file wrote, so each input starts from an empty directory. */
void fuzz_remove_files(void);

/* Reads every byte of a buffer the reader returned, so that the sanitizers see a buffer
 * shorter than the reader claims; the sum keeps the reads from being optimized away. */
unsigned fuzz_touch(const void *data, size_t size);

#endif
