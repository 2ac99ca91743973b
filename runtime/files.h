/* Opening the files the runtime reads (data, checkpoints): regular files only. A FIFO would block
 * the reader forever and a directory or device is never what a user meant, so every reader
 * opens through nnc_rt_open_read, which refuses them without blocking. */
#ifndef NNC_RT_FILES_H
#define NNC_RT_FILES_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Opens path for reading; on failure (a missing file, not a regular file) fills err with
 * "<path>: <reason>" and returns NULL. */
FILE *nnc_rt_open_read(const char *path, char *err, size_t cap);
/* Size of an open regular file, or -1. */
int64_t nnc_rt_file_size(FILE *);
/* "a directory", "a FIFO", ... for messages. */
const char *nnc_rt_file_kind(mode_t);

#endif
