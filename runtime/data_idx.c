/* IDX files (the MNIST layout) and CIFAR-10 binary batches.
 *
 * Gzip is decoded with zlib's inflate rather than gzread: gzread silently ignores bytes after
 * the last gzip member, and a strict reader wants to report them. Concatenated gzip members
 * are valid gzip and are read as one stream. A file that does not start with the gzip magic
 * is read as is. */
#include "runtime/data.h"

#include "runtime/data_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

enum { IDX_CLASSES = 10, IDX_IMAGES_MAGIC = 0x00000803, IDX_LABELS_MAGIC = 0x00000801 };

typedef struct byte_reader {
  FILE *f;
  const char *path;
  bool gzip;
  bool member_ended; /* the last inflate call finished a gzip member */
  bool at_end;       /* no more input after a finished member */
  z_stream zs;
  unsigned char in[1 << 16];
} byte_reader;

static bool reader_open(byte_reader *r, const char *path, char *err, size_t cap) {
  memset(r, 0, sizeof *r);
  r->path = path;
  r->f = nnc_rt_open_read(path, err, cap);
  if (!r->f) return false;
  int c0 = getc(r->f), c1 = getc(r->f);
  r->gzip = c0 == 0x1f && c1 == 0x8b;
  rewind(r->f);
  if (r->gzip && inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK) {
    fclose(r->f);
    r->f = NULL;
    return nnc_rt_fail_at(err, cap, path, "cannot start the gzip decoder");
  }
  return true;
}

static void reader_close(byte_reader *r) {
  if (r->gzip) inflateEnd(&r->zs);
  if (r->f) fclose(r->f);
  r->f = NULL;
}

/* Refills the input buffer; 0 bytes means end of file. */
static bool refill(byte_reader *r, size_t *got, char *err, size_t cap) {
  *got = fread(r->in, 1, sizeof r->in, r->f);
  if (ferror(r->f)) return nnc_rt_fail_at(err, cap, r->path, "read error: %s", strerror(errno));
  r->zs.next_in = r->in;
  r->zs.avail_in = (uInt)*got;
  return true;
}

/* Reads up to n bytes; fewer only at the end of the data. */
static bool gz_read(byte_reader *r, uint8_t *buf, size_t n, size_t *done, char *err, size_t cap) {
  *done = 0;
  while (*done < n && !r->at_end) {
    size_t got = 1;
    if (r->zs.avail_in == 0 && !refill(r, &got, err, cap)) return false;
    if (got == 0) {
      if (r->member_ended) {
        r->at_end = true;
        break;
      }
      return nnc_rt_fail_at(err, cap, r->path, "truncated gzip stream (the file ends inside it)");
    }
    if (r->member_ended) {
      /* More bytes after a member: another member, or garbage that inflate rejects below. */
      inflateReset(&r->zs);
    }
    size_t want = n - *done < (1u << 30) ? n - *done : (1u << 30);
    r->zs.next_out = buf + *done;
    r->zs.avail_out = (uInt)want;
    int rc = inflate(&r->zs, Z_NO_FLUSH);
    *done += want - r->zs.avail_out;
    if (rc == Z_STREAM_END) {
      r->member_ended = true;
    } else if (rc == Z_OK || rc == Z_BUF_ERROR) {
      r->member_ended = false;
    } else if (r->member_ended) {
      return nnc_rt_fail_at(err, cap, r->path, "trailing garbage after the gzip data");
    } else {
      return nnc_rt_fail_at(err, cap, r->path, "corrupt gzip stream: %s",
                              r->zs.msg ? r->zs.msg : "inflate failed");
    }
  }
  return true;
}

static bool reader_read(byte_reader *r, void *buf, size_t n, size_t *done, char *err, size_t cap) {
  if (r->gzip) return gz_read(r, buf, n, done, err, cap);
  *done = fread(buf, 1, n, r->f);
  if (ferror(r->f)) return nnc_rt_fail_at(err, cap, r->path, "read error: %s", strerror(errno));
  return true;
}

/* Reads exactly n bytes, naming `what` if the data ends first. */
static bool read_exact(byte_reader *r, void *buf, size_t n, const char *what, char *err, size_t cap) {
  size_t done;
  if (!reader_read(r, buf, n, &done, err, cap)) return false;
  if (done < n)
    return nnc_rt_fail_at(err, cap, r->path, "short read: the data ends in the %s (%zu of %zu bytes)",
                            what, done, n);
  return true;
}

/* Reads exactly n bytes into a new buffer. The buffer grows with the data actually read, so
 * a header that claims too much costs nothing before the short read is found. */
static uint8_t *read_body(byte_reader *r, size_t n, const char *what, char *err, size_t cap) {
  size_t have = 0, size = n < (1u << 20) ? n : (1u << 20);
  uint8_t *buf = malloc(size ? size : 1);
  while (buf && have < n) {
    if (have == size) {
      size = size > n / 2 ? n : size * 2;
      uint8_t *bigger = realloc(buf, size);
      if (!bigger) break;
      buf = bigger;
    }
    size_t done;
    if (!reader_read(r, buf + have, size - have, &done, err, cap)) {
      free(buf);
      return NULL;
    }
    have += done;
    if (have < size) {
      free(buf);
      nnc_rt_fail_at(err, cap, r->path, "short read: the data ends in the %s (%zu of %zu bytes)",
                       what, have, n);
      return NULL;
    }
  }
  if (!buf || have < n) {
    free(buf);
    if (!buf) nnc_rt_oom(n);
    nnc_rt_fail_at(err, cap, r->path, "out of memory for %zu bytes", n);
    return NULL;
  }
  return buf;
}

static bool expect_end(byte_reader *r, char *err, size_t cap) {
  uint8_t extra;
  size_t done;
  if (!reader_read(r, &extra, 1, &done, err, cap)) return false;
  if (done) return nnc_rt_fail_at(err, cap, r->path, "trailing data after the last example");
  return true;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* An IDX file: magic, rank dims (big-endian u32), then the u8 body. */
static uint8_t *read_idx(const char *path, uint32_t magic, int rank, uint32_t *dims, char *err,
                         size_t cap) {
  byte_reader r;
  if (!reader_open(&r, path, err, cap)) return NULL;
  uint8_t head[16];
  uint8_t *body = NULL;
  if (!read_exact(&r, head, 4 + 4 * (size_t)rank, "header", err, cap)) goto done;
  if (be32(head) != magic) {
    nnc_rt_fail_at(err, cap, path, "bad magic 0x%08" PRIx32 " (expected 0x%08" PRIx32 ", %s)",
                     be32(head), magic, rank == 1 ? "u8 labels" : "u8 images");
    goto done;
  }
  size_t size = 1;
  for (int i = 0; i < rank; i++) {
    dims[i] = be32(head + 4 + 4 * i);
    if (dims[i] == 0 || !nnc_rt_mul_size(size, dims[i], &size)) {
      nnc_rt_fail_at(err, cap, path, "bad dimension %d: %" PRIu32, i, dims[i]);
      goto done;
    }
  }
  body = read_body(&r, size, rank == 1 ? "labels" : "images", err, cap);
  if (body && !expect_end(&r, err, cap)) {
    free(body);
    body = NULL;
  }
done:
  reader_close(&r);
  return body;
}

/* "<dir>/<name>.gz", or "<dir>/<name>" when only the uncompressed file exists; a missing
 * file is reported under the .gz name. */
static char *idx_path(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 8;
  char *p = malloc(n);
  if (!p) return NULL;
  snprintf(p, n, "%s/%s.gz", dir, name);
  if (access(p, F_OK) == 0) return p;
  snprintf(p, n, "%s/%s", dir, name);
  if (access(p, F_OK) == 0) return p;
  snprintf(p, n, "%s/%s.gz", dir, name);
  return p;
}

static bool load_idx_split(const char *dir, const char *prefix, nnc_rt_dataset *ds, nnc_rt_split *sp,
                           char *err, size_t cap) {
  char name[64];
  snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
  char *ipath = idx_path(dir, name);
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
  char *lpath = idx_path(dir, name);
  uint32_t idims[3], ldims[1];
  uint8_t *images = NULL, *labels = NULL;
  bool ok = false;
  if (!ipath || !lpath) {
    nnc_rt_fail_at(err, cap, dir, "out of memory");
    goto done;
  }
  if (!(images = read_idx(ipath, IDX_IMAGES_MAGIC, 3, idims, err, cap))) goto done;
  if (!(labels = read_idx(lpath, IDX_LABELS_MAGIC, 1, ldims, err, cap))) goto done;
  if (ldims[0] != idims[0]) {
    nnc_rt_fail_at(err, cap, lpath, "%" PRIu32 " labels for %" PRIu32 " images in %s", ldims[0],
                     idims[0], ipath);
    goto done;
  }
  int64_t shape[2] = {idims[1], idims[2]};
  if (ds->x_rank == 0) {
    nnc_rt_set_example_shape(ds, NNC_RT_U8, 2, shape);
  } else if (ds->x_shape[0] != shape[0] || ds->x_shape[1] != shape[1]) {
    nnc_rt_fail_at(err, cap, ipath, "images are %" PRId64 "x%" PRId64 ", the train images %" PRId64
                     "x%" PRId64, shape[0], shape[1], ds->x_shape[0], ds->x_shape[1]);
    goto done;
  }
  int32_t *ids = malloc((size_t)ldims[0] * sizeof *ids);
  if (!ids) {
    nnc_rt_fail_at(err, cap, lpath, "out of memory");
    goto done;
  }
  for (uint32_t i = 0; i < ldims[0]; i++) {
    if (labels[i] >= IDX_CLASSES) {
      free(ids);
      nnc_rt_fail_at(err, cap, lpath, "label %d of example %" PRIu32 " is out of range (%d classes)",
                       labels[i], i, IDX_CLASSES);
      goto done;
    }
    ids[i] = labels[i];
  }
  sp->n = idims[0];
  sp->x = images;
  sp->y = ids;
  images = NULL;
  ok = true;
done:
  free(images);
  free(labels);
  free(ipath);
  free(lpath);
  return ok;
}

static void set_class_labels(nnc_rt_dataset *ds, int32_t classes) {
  ds->label_kind = NNC_RT_LABELS_CLASS;
  ds->label_rank = 0;
  ds->label_elems = 1;
  ds->num_classes = classes;
}

bool nnc_rt_load_idx(const char *dir, nnc_rt_dataset *ds, char *err, size_t cap) {
  memset(ds, 0, sizeof *ds);
  set_class_labels(ds, IDX_CLASSES);
  if (load_idx_split(dir, "train", ds, &ds->train, err, cap) &&
      load_idx_split(dir, "t10k", ds, &ds->test, err, cap))
    return true;
  nnc_rt_dataset_free(ds);
  return false;
}

/* ---- CIFAR-10 ---- */

enum { CIFAR_IMAGE = 3 * 32 * 32, CIFAR_RECORD = 1 + CIFAR_IMAGE, CIFAR_CLASSES = 10 };

static bool cifar_file(const char *dir, const char *name, FILE **f, char **path, int64_t *records,
                       char *err, size_t cap) {
  size_t n = strlen(dir) + strlen(name) + 2;
  *path = malloc(n);
  if (!*path) return nnc_rt_fail_at(err, cap, dir, "out of memory");
  snprintf(*path, n, "%s/%s", dir, name);
  *f = nnc_rt_open_read(*path, err, cap);
  if (!*f) return false;
  int64_t size = nnc_rt_file_size(*f);
  if (size == 0 || size % CIFAR_RECORD != 0)
    return nnc_rt_fail_at(err, cap, *path, "size %" PRId64 " is not a positive multiple of %d bytes "
                            "(1 label byte + 3x32x32 image)", size, CIFAR_RECORD);
  *records = size / CIFAR_RECORD;
  return true;
}

static bool cifar_records(FILE *f, const char *path, int64_t count, uint8_t *x, int32_t *y, char *err,
                          size_t cap) {
  uint8_t rec[CIFAR_RECORD];
  for (int64_t i = 0; i < count; i++) {
    if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD)
      return nnc_rt_fail_at(err, cap, path, "short read in record %" PRId64, i);
    if (rec[0] >= CIFAR_CLASSES)
      return nnc_rt_fail_at(err, cap, path, "label %d of record %" PRId64 " is out of range (%d classes)",
                              rec[0], i, CIFAR_CLASSES);
    y[i] = rec[0];
    memcpy(x + (size_t)i * CIFAR_IMAGE, rec + 1, CIFAR_IMAGE);
  }
  return true;
}

/* Reads the files of one split into sp; all sizes are known before anything is allocated. */
static bool load_cifar_split(const char *dir, const char *const *names, int nfiles, nnc_rt_split *sp,
                             char *err, size_t cap) {
  FILE *f[5] = {0};
  char *path[5] = {0};
  int64_t records[5] = {0}, total = 0;
  bool ok = true;
  for (int i = 0; ok && i < nfiles; i++) {
    ok = cifar_file(dir, names[i], &f[i], &path[i], &records[i], err, cap);
    total += records[i];
  }
  if (ok) {
    sp->x = malloc((size_t)total * CIFAR_IMAGE);
    sp->y = malloc((size_t)total * sizeof(int32_t));
    sp->n = total;
    if (!sp->x || !sp->y) {
      nnc_rt_oom((size_t)total * CIFAR_IMAGE);
      ok = nnc_rt_fail_at(err, cap, dir, "out of memory for %" PRId64 " images", total);
    }
  }
  int64_t at = 0;
  for (int i = 0; ok && i < nfiles; i++) {
    ok = cifar_records(f[i], path[i], records[i], sp->x + (size_t)at * CIFAR_IMAGE,
                       (int32_t *)sp->y + at, err, cap);
    at += records[i];
  }
  for (int i = 0; i < nfiles; i++) {
    if (f[i]) fclose(f[i]);
    free(path[i]);
  }
  return ok;
}

bool nnc_rt_load_cifar10(const char *dir, nnc_rt_dataset *ds, char *err, size_t cap) {
  static const char *const train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                      "data_batch_4.bin", "data_batch_5.bin"};
  static const char *const test[] = {"test_batch.bin"};
  memset(ds, 0, sizeof *ds);
  set_class_labels(ds, CIFAR_CLASSES);
  nnc_rt_set_example_shape(ds, NNC_RT_U8, 3, (const int64_t[]){3, 32, 32});
  if (load_cifar_split(dir, train, 5, &ds->train, err, cap) &&
      load_cifar_split(dir, test, 1, &ds->test, err, cap))
    return true;
  nnc_rt_dataset_free(ds);
  return false;
}
