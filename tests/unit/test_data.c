/* Data sources, Philox, shuffles and augmentation. Every file is generated here, in a fresh
 * temporary directory; each reader is fed good files and every kind of broken one. */
#include "runtime/data.h"
#include "runtime/philox.h"

#include "check.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmp[256];
static char err[1024];

static const char *at(const char *name) {
  static char buf[8][512];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, 512, "%s/%s", tmp, name);
  return p;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fwrite(data, 1, n, f);
  fclose(f);
}

static void write_gz(const char *path, const void *data, size_t n) {
  gzFile f = gzopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  gzwrite(f, data, (unsigned)n);
  gzclose(f);
}

static uint8_t *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  rewind(f);
  uint8_t *p = malloc(*n + 16);
  if (fread(p, 1, *n, f) != *n) exit(2);
  fclose(f);
  return p;
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
      remove_tree(p);
    else
      unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static void clear_dir(void) {
  remove_tree(tmp);
  mkdir(tmp, 0700);
}

#define CHECK_ERR(call, needle)                                                      \
  do {                                                                               \
    err[0] = 0;                                                                      \
    bool ok_ = (call);                                                               \
    CHECK_MSG(!ok_ && strstr(err, needle), "expected an error with '%s', got %s: '%s'", \
              needle, ok_ ? "success" : "failure", err);                            \
  } while (0)

/* ---- Philox ---- */

static void test_philox(void) {
  static const struct {
    uint32_t ctr[4], key[2], out[4];
  } kat[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (size_t i = 0; i < sizeof kat / sizeof *kat; i++) {
    uint32_t out[4];
    nnc_philox4x32(kat[i].ctr, kat[i].key, out);
    for (int j = 0; j < 4; j++)
      CHECK_MSG(out[j] == kat[i].out[j], "vector %zu word %d: %08x", i, j, out[j]);
  }
  CHECK(nnc_philox_uniform(0) == 0.0f);
  CHECK(nnc_philox_uniform(0xffffffffu) < 1.0f);
  CHECK(nnc_philox_uniform(0xffffffffu) == 16777215.0f / 16777216.0f);
  CHECK(nnc_philox_uniform(0x80000000u) == 0.5f);
}

/* ---- IDX ---- */

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* An IDX images file of n images rows x cols, pixel i of image k = (k * 7 + i) & 255; extra
 * bytes appended after the data when `extra`. */
static size_t idx_images(uint8_t *buf, uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols,
                         size_t body, size_t extra) {
  be32(buf, magic), be32(buf + 4, n), be32(buf + 8, rows), be32(buf + 12, cols);
  for (size_t i = 0; i < body + extra; i++) buf[16 + i] = (uint8_t)((i / (rows * cols)) * 7 + i % (rows * cols));
  return 16 + body + extra;
}

static size_t idx_labels(uint8_t *buf, uint32_t magic, uint32_t n, const uint8_t *labels) {
  be32(buf, magic), be32(buf + 4, n);
  memcpy(buf + 8, labels, n);
  return 8 + n;
}

typedef void (*writer)(const char *, const void *, size_t);

/* A small MNIST-layout directory: 5 train, 2 test images of 3x4. */
static void make_mnist(writer w, const char *suffix) {
  uint8_t buf[1024];
  char name[128];
  static const uint8_t ltr[5] = {0, 9, 3, 5, 1}, lte[2] = {7, 2};
  snprintf(name, sizeof name, "train-images-idx3-ubyte%s", suffix);
  w(at(name), buf, idx_images(buf, 0x803, 5, 3, 4, 60, 0));
  snprintf(name, sizeof name, "train-labels-idx1-ubyte%s", suffix);
  w(at(name), buf, idx_labels(buf, 0x801, 5, ltr));
  snprintf(name, sizeof name, "t10k-images-idx3-ubyte%s", suffix);
  w(at(name), buf, idx_images(buf, 0x803, 2, 3, 4, 24, 0));
  snprintf(name, sizeof name, "t10k-labels-idx1-ubyte%s", suffix);
  w(at(name), buf, idx_labels(buf, 0x801, 2, lte));
}

static void check_small_mnist(const nnc_rt_dataset *ds) {
  CHECK(ds->train.n == 5 && ds->test.n == 2);
  CHECK(ds->x_dtype == NNC_RT_U8 && ds->x_rank == 2 && ds->x_shape[0] == 3 && ds->x_shape[1] == 4);
  CHECK(ds->x_bytes == 12 && ds->label_kind == NNC_RT_LABELS_CLASS && ds->num_classes == 10);
  const int32_t *y = ds->train.y;
  CHECK(y[0] == 0 && y[1] == 9 && y[4] == 1);
  CHECK(((int32_t *)ds->test.y)[0] == 7);
  CHECK(ds->train.x[12 * 2 + 5] == 2 * 7 + 5);
}

static void test_idx_good(void) {
  nnc_rt_dataset ds;
  clear_dir();
  make_mnist(write_gz, ".gz");
  CHECK_MSG(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "%s", err);
  check_small_mnist(&ds);
  nnc_rt_dataset_free(&ds);

  clear_dir();
  make_mnist(write_file, "");
  CHECK_MSG(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "uncompressed: %s", err);
  check_small_mnist(&ds);
  nnc_rt_dataset_free(&ds);

  /* Two gzip members in one file are one stream. */
  clear_dir();
  make_mnist(write_gz, ".gz");
  uint8_t buf[256];
  size_t n = idx_images(buf, 0x803, 5, 3, 4, 60, 0);
  write_gz(at("a.gz"), buf, 30);
  write_gz(at("b.gz"), buf + 30, n - 30);
  size_t na, nb;
  uint8_t *a = read_file(at("a.gz"), &na), *b = read_file(at("b.gz"), &nb);
  a = realloc(a, na + nb);
  memcpy(a + na, b, nb);
  write_file(at("train-images-idx3-ubyte.gz"), a, na + nb);
  free(a), free(b);
  CHECK_MSG(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "two members: %s", err);
  check_small_mnist(&ds);
  nnc_rt_dataset_free(&ds);
}

/* Replaces one file of a good directory. */
static void with_images(const uint8_t *data, size_t n, bool gz) {
  clear_dir();
  make_mnist(write_gz, ".gz");
  (gz ? write_gz : write_file)(at("train-images-idx3-ubyte.gz"), data, n);
}

static void test_idx_bad(void) {
  nnc_rt_dataset ds;
  uint8_t buf[4096];
  size_t n;

  clear_dir();
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "train-images-idx3-ubyte.gz: No such file");
  CHECK_ERR(nnc_rt_load_idx("/nonexistent/dir", &ds, err, sizeof err), "/nonexistent/dir/train-images");

  with_images(buf, idx_images(buf, 0x804, 5, 3, 4, 60, 0), true);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "bad magic 0x00000804");

  with_images(buf, idx_images(buf, 0x803, 6, 3, 4, 72, 0), true);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "5 labels for 6 images");

  with_images(buf, idx_images(buf, 0x803, 5, 3, 4, 50, 0), true);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "short read");

  with_images(buf, 10, true);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "short read: the data ends in the header");

  with_images(buf, idx_images(buf, 0x803, 5, 3, 4, 60, 3), true);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "trailing data");

  with_images(buf, idx_images(buf, 0x803, 5, 0, 4, 0, 0), true);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "bad dimension 1");

  /* A header claiming 4e15 bytes: refused by the short read, not by a failed allocation. */
  with_images(buf, idx_images(buf, 0x803, 4000000, 1000000, 1000, 60, 0), true);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "short read");
  with_images(buf, idx_images(buf, 0x803, 0xffffffffu, 0xffffffffu, 0xffffffffu, 60, 0), false);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "bad dimension 2");

  /* Gzip damage: the CRC, the middle of the deflate data, the end cut off, garbage after. */
  n = idx_images(buf, 0x803, 5, 3, 4, 60, 0);
  clear_dir();
  make_mnist(write_gz, ".gz");
  size_t gn;
  uint8_t *gz = read_file(at("train-images-idx3-ubyte.gz"), &gn);
  gz[gn - 8] ^= 0xff;
  write_file(at("train-images-idx3-ubyte.gz"), gz, gn);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "corrupt gzip stream: incorrect data check");
  gz[gn - 8] ^= 0xff;
  for (size_t i = 12; i < gn - 8; i++) gz[i] ^= 0x5a;
  write_file(at("train-images-idx3-ubyte.gz"), gz, gn);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "train-images-idx3-ubyte.gz: ");
  for (size_t i = 12; i < gn - 8; i++) gz[i] ^= 0x5a;
  write_file(at("train-images-idx3-ubyte.gz"), gz, gn / 2);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "truncated gzip stream");
  write_file(at("train-images-idx3-ubyte.gz"), gz, gn - 3);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "truncated gzip stream");
  memcpy(gz + gn, "garbage", 7);
  write_file(at("train-images-idx3-ubyte.gz"), gz, gn + 7);
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "trailing garbage after the gzip data");
  free(gz);
  (void)n;

  static const uint8_t bad_labels[5] = {0, 1, 10, 3, 4};
  clear_dir();
  make_mnist(write_gz, ".gz");
  write_gz(at("train-labels-idx1-ubyte.gz"), buf, idx_labels(buf, 0x801, 5, bad_labels));
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "label 10 of example 2 is out of range");
  write_gz(at("train-labels-idx1-ubyte.gz"), buf, idx_labels(buf, 0x803, 5, bad_labels));
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "bad magic 0x00000803 (expected 0x00000801");

  clear_dir();
  make_mnist(write_gz, ".gz");
  write_gz(at("t10k-images-idx3-ubyte.gz"), buf, idx_images(buf, 0x803, 2, 4, 3, 24, 0));
  CHECK_ERR(nnc_rt_load_idx(tmp, &ds, err, sizeof err), "images are 4x3, the train images 3x4");
}

static void test_fashion_mnist(void) {
  const char *dir = "/usr/share/datasets/fashion-mnist";
  const char *ci = getenv("CI");
  if (access(dir, F_OK) != 0) {
    CHECK_MSG(!(ci && !strcmp(ci, "true")), "%s is missing (scripts/setup installs it)", dir);
    if (!(ci && !strcmp(ci, "true"))) printf("skipped: %s is not installed\n", dir);
    return;
  }
  nnc_rt_dataset ds;
  CHECK_MSG(nnc_rt_load_idx(dir, &ds, err, sizeof err), "%s", err);
  CHECK(ds.train.n == 60000 && ds.test.n == 10000);
  CHECK(ds.x_rank == 2 && ds.x_shape[0] == 28 && ds.x_shape[1] == 28 && ds.x_dtype == NNC_RT_U8);
  if (ds.train.n == 60000) {
    int64_t count[10] = {0};
    for (int64_t i = 0; i < ds.train.n; i++) count[((int32_t *)ds.train.y)[i]]++;
    for (int c = 0; c < 10; c++) CHECK(count[c] == 6000); /* Fashion-MNIST is balanced */
    CHECK(((int32_t *)ds.train.y)[0] == 9);                /* the first image is an ankle boot */
  }
  nnc_rt_dataset_free(&ds);
}

/* ---- CIFAR-10 ---- */

static void write_cifar(const char *name, int records, int bad_label_at, size_t cut) {
  size_t n = (size_t)records * 3073;
  uint8_t *buf = malloc(n);
  for (int r = 0; r < records; r++) {
    buf[(size_t)r * 3073] = (uint8_t)(r == bad_label_at ? 10 : r % 10);
    for (int i = 0; i < 3072; i++) buf[(size_t)r * 3073 + 1 + i] = (uint8_t)(r + i);
  }
  write_file(at(name), buf, n - cut);
  free(buf);
}

static void make_cifar(void) {
  char name[64];
  clear_dir();
  for (int b = 1; b <= 5; b++) {
    snprintf(name, sizeof name, "data_batch_%d.bin", b);
    write_cifar(name, 2, -1, 0);
  }
  write_cifar("test_batch.bin", 3, -1, 0);
}

static void test_cifar(void) {
  nnc_rt_dataset ds;
  make_cifar();
  CHECK_MSG(nnc_rt_load_cifar10(tmp, &ds, err, sizeof err), "%s", err);
  CHECK(ds.train.n == 10 && ds.test.n == 3);
  CHECK(ds.x_rank == 3 && ds.x_shape[0] == 3 && ds.x_shape[1] == 32 && ds.x_shape[2] == 32);
  CHECK(ds.x_bytes == 3072 && ds.num_classes == 10);
  CHECK(((int32_t *)ds.train.y)[3] == 1 && ((int32_t *)ds.test.y)[2] == 2);
  CHECK(ds.train.x[3 * 3072 + 100] == (uint8_t)(1 + 100)); /* batch 2, record 1 */
  nnc_rt_dataset_free(&ds);

  make_cifar();
  write_cifar("data_batch_4.bin", 2, -1, 1);
  CHECK_ERR(nnc_rt_load_cifar10(tmp, &ds, err, sizeof err), "data_batch_4.bin: size 6145 is not a positive multiple of 3073");
  make_cifar();
  write_cifar("test_batch.bin", 0, -1, 0);
  CHECK_ERR(nnc_rt_load_cifar10(tmp, &ds, err, sizeof err), "test_batch.bin: size 0");
  make_cifar();
  write_cifar("data_batch_2.bin", 2, 1, 0);
  CHECK_ERR(nnc_rt_load_cifar10(tmp, &ds, err, sizeof err), "data_batch_2.bin: label 10 of record 1 is out of range");
  make_cifar();
  unlink(at("data_batch_3.bin"));
  CHECK_ERR(nnc_rt_load_cifar10(tmp, &ds, err, sizeof err), "data_batch_3.bin: No such file");
}

/* ---- CSV ---- */

static bool load_csv_text(const char *text, const nnc_rt_load_options *o, nnc_rt_dataset *ds) {
  write_file(at("d.csv"), text, strlen(text));
  return nnc_rt_load_csv(at("d.csv"), o, ds, err, sizeof err);
}

static void test_csv_good(void) {
  nnc_rt_dataset ds;
  clear_dir();
  CHECK_MSG(load_csv_text("a,b,label\n1,2,0\n3,4.5,1\n\n5,-6e1,2\n", NULL, &ds), "%s", err);
  CHECK(ds.train.n == 3 && ds.test.n == 0 && ds.x_dtype == NNC_RT_F32 && ds.x_rank == 1);
  CHECK(ds.x_shape[0] == 2 && ds.label_kind == NNC_RT_LABELS_CLASS && ds.num_classes == 3);
  CHECK(((float *)ds.train.x)[3] == 4.5f && ((float *)ds.train.x)[5] == -60.0f);
  CHECK(((int32_t *)ds.train.y)[2] == 2);
  nnc_rt_dataset_free(&ds);

  /* No header, CRLF, regression targets 0/1 as f32 [n, 1] (the 2-10-1 network). */
  nnc_rt_load_options reg = {.label_kind = NNC_RT_LABELS_VALUE};
  CHECK_MSG(load_csv_text("0,0,0\r\n0,1,1\r\n1,0,1\r\n1,1,0\r\n", &reg, &ds), "%s", err);
  CHECK(ds.train.n == 4 && ds.x_shape[0] == 2 && ds.label_kind == NNC_RT_LABELS_VALUE);
  CHECK(ds.label_rank == 1 && ds.label_shape[0] == 1 && ds.label_elems == 1 && ds.num_classes == 0);
  CHECK(((float *)ds.train.y)[1] == 1.0f && ((float *)ds.train.y)[3] == 0.0f);
  nnc_rt_dataset_free(&ds);

  /* Fractional labels make AUTO choose values. */
  CHECK_MSG(load_csv_text("1,0.25\n2,0.5\n", NULL, &ds), "%s", err);
  CHECK(ds.label_kind == NNC_RT_LABELS_VALUE && ((float *)ds.train.y)[1] == 0.5f);
  nnc_rt_dataset_free(&ds);

  /* The label column by name and by index; the rest keep their order. */
  nnc_rt_load_options by_name = {.label_column = "y", .num_classes = 10};
  CHECK_MSG(load_csv_text("y, \"x1\" ,x2\n3, 10, 20\n4, 11, 21\n", &by_name, &ds), "%s", err);
  CHECK(ds.num_classes == 10 && ((int32_t *)ds.train.y)[1] == 4 && ((float *)ds.train.x)[1] == 20.0f);
  nnc_rt_dataset_free(&ds);
  nnc_rt_load_options by_index = {.label_column = "1"};
  CHECK_MSG(load_csv_text("7,1,8\n9,0,6\n", &by_index, &ds), "%s", err);
  CHECK(ds.num_classes == 2 && ((int32_t *)ds.train.y)[0] == 1 && ((float *)ds.train.x)[1] == 8.0f);
  nnc_rt_dataset_free(&ds);
}

static void test_csv_bad(void) {
  nnc_rt_dataset ds;
  clear_dir();
  CHECK_ERR(nnc_rt_load_csv(at("missing.csv"), NULL, &ds, err, sizeof err), "missing.csv: No such file");
  CHECK_ERR(load_csv_text("a,b,c\n1,2,0\n3,4\n", NULL, &ds), "d.csv:3:3: expected 3 fields, found 2");
  CHECK_ERR(load_csv_text("1,2,0\n3,4,5,6\n", NULL, &ds), "d.csv:2:7: expected 3 fields, found 4");
  CHECK_ERR(load_csv_text("1,2,0\n1, abc,0\n", NULL, &ds), "d.csv:2:4: field 2 'abc' is not a finite number");
  CHECK_ERR(load_csv_text("1,2,0\n1,,0\n", NULL, &ds), "d.csv:2:3: field 2 '' is not a finite number");
  CHECK_ERR(load_csv_text("1,2,0\n1,nan,0\n", NULL, &ds), "d.csv:2:3: field 2 'nan'");
  CHECK_ERR(load_csv_text("1,2,0\n1,2,1e999\n", NULL, &ds), "d.csv:2:5: field 3");
  /* Finite as a double, infinite as f32: a feature, and a target. */
  CHECK_ERR(load_csv_text("1,2,0\n1e300,2,0\n", NULL, &ds), "d.csv:2:1: field 1 '1e300' is outside the f32 range");
  CHECK_ERR(load_csv_text("1,2,0.5\n1,2,-1e300\n", NULL, &ds), "d.csv: line 2: label -1.0000000000000001e+300 is outside the f32 range");
  CHECK_ERR(load_csv_text("", NULL, &ds), "no data rows");
  CHECK_ERR(load_csv_text("a,b\n", NULL, &ds), "no data rows");
  CHECK_ERR(load_csv_text("1\n2\n", NULL, &ds), "at least one feature and a label");
  nnc_rt_load_options named = {.label_column = "z"};
  CHECK_ERR(load_csv_text("a,b\n1,2\n", &named, &ds), "no column named 'z'");
  CHECK_ERR(load_csv_text("1,2\n", &named, &ds), "the file has no header");
  nnc_rt_load_options index = {.label_column = "5"};
  CHECK_ERR(load_csv_text("1,2\n", &index, &ds), "label column 5 is out of range");
  nnc_rt_load_options classes = {.label_kind = NNC_RT_LABELS_CLASS};
  CHECK_ERR(load_csv_text("1,2,0\n1,2,0.5\n", &classes, &ds), "d.csv: line 2: label 0.5 is not a class id");
  CHECK_ERR(load_csv_text("1,2,0\n1,2,-1\n", &classes, &ds), "d.csv: line 2: label -1 is not a class id");
  nnc_rt_load_options two = {.num_classes = 2};
  CHECK_ERR(load_csv_text("x,y\n1,0\n\n1,2\n", &two, &ds), "d.csv: line 4: label 2 is out of range (2 classes)");
}

/* ---- .npy ---- */

/* A .npy file with a header padded to a multiple of 64 bytes, as numpy writes it; `cut`
 * bytes are dropped from the end. */
static void write_npy(const char *name, int major, const char *dict, const void *data, size_t n,
                      size_t cut) {
  size_t pre = major == 1 ? 10 : 12, dlen = strlen(dict);
  size_t hlen = (pre + dlen + 1 + 63) / 64 * 64 - pre;
  uint8_t *buf = malloc(pre + hlen + n);
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (uint8_t)major, buf[7] = 0;
  buf[8] = (uint8_t)hlen, buf[9] = (uint8_t)(hlen >> 8);
  if (major > 1) buf[10] = (uint8_t)(hlen >> 16), buf[11] = (uint8_t)(hlen >> 24);
  memset(buf + pre, ' ', hlen);
  memcpy(buf + pre, dict, dlen);
  buf[pre + hlen - 1] = '\n';
  memcpy(buf + pre + hlen, data, n);
  write_file(at(name), buf, pre + hlen + n - cut);
  free(buf);
}

static void test_npy_good(void) {
  nnc_rt_dataset ds;
  clear_dir();
  float xf[12];
  for (int i = 0; i < 12; i++) xf[i] = (float)i * 0.5f;
  uint8_t yu[4] = {1, 0, 2, 1};
  write_npy("x.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", xf, sizeof xf, 0);
  write_npy("y.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", yu, sizeof yu, 0);
  CHECK_MSG(nnc_rt_load_npy(at("x.npy"), at("y.npy"), NULL, NULL, NULL, &ds, err, sizeof err), "%s", err);
  CHECK(ds.train.n == 4 && ds.x_dtype == NNC_RT_F32 && ds.x_rank == 1 && ds.x_shape[0] == 3);
  CHECK(ds.label_kind == NNC_RT_LABELS_CLASS && ds.num_classes == 3 && ((int32_t *)ds.train.y)[2] == 2);
  CHECK(((float *)ds.train.x)[5] == 2.5f);
  nnc_rt_dataset_free(&ds);

  /* u1 images [4, 2, 2] and i4 labels, with a test pair of i8 labels. */
  uint8_t xu[16];
  for (int i = 0; i < 16; i++) xu[i] = (uint8_t)(200 + i);
  int32_t yi[4] = {3, 1, 4, 1};
  int64_t yl[2] = {5, 9};
  write_npy("xu.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 2, 2), }", xu, 16, 0);
  write_npy("yi.npy", 1, "{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (4,)}", yi, 16, 0);
  write_npy("xt.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2), }", xu, 8, 0);
  write_npy("yt.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", yl, 16, 0);
  CHECK_MSG(nnc_rt_load_npy(at("xu.npy"), at("yi.npy"), at("xt.npy"), at("yt.npy"), NULL, &ds, err, sizeof err),
            "%s", err);
  CHECK(ds.train.n == 4 && ds.test.n == 2 && ds.x_dtype == NNC_RT_U8 && ds.x_rank == 2);
  CHECK(ds.num_classes == 10 && ((int32_t *)ds.test.y)[1] == 9 && ds.train.x[15] == 215);
  nnc_rt_dataset_free(&ds);

  /* Version 2.0 and 3.0 headers; f8 features, f4 targets [N, 1]. */
  double xd[4] = {1, 2, 3, 4};
  float yf[2] = {0.25f, 0.75f};
  write_npy("xd.npy", 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", xd, sizeof xd, 0);
  write_npy("yf.npy", 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }", yf, sizeof yf, 0);
  CHECK_MSG(nnc_rt_load_npy(at("xd.npy"), at("yf.npy"), NULL, NULL, NULL, &ds, err, sizeof err), "%s", err);
  CHECK(ds.x_dtype == NNC_RT_F64 && ds.label_kind == NNC_RT_LABELS_VALUE && ds.label_rank == 1);
  CHECK(ds.label_shape[0] == 1 && ((float *)ds.train.y)[1] == 0.75f);
  CHECK(nnc_rt_dataset_cast_inputs(&ds, NNC_RT_F32, err, sizeof err));
  CHECK(ds.x_dtype == NNC_RT_F32 && ds.x_bytes == 8 && ((float *)ds.train.x)[3] == 4.0f);
  ((float *)ds.train.x)[1] = 0.5f;
  CHECK_ERR(nnc_rt_dataset_cast_inputs(&ds, NNC_RT_U8, err, sizeof err), "train example 0 holds 0.5, which u8 cannot hold");
  nnc_rt_dataset_free(&ds);

  /* No examples: the file backs a label shape whose size overflows. */
  write_npy("x0.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1), }", xd, 0, 0);
  write_npy("y0.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }", xd, 0, 0);
  CHECK_ERR(nnc_rt_load_npy(at("x0.npy"), at("y0.npy"), NULL, NULL, NULL, &ds, err, sizeof err),
            "y0.npy: label shape too large");

  /* f8 values that f32 cannot hold: as targets, and as inputs cast to f32. */
  double huge[2] = {1, 1e300};
  write_npy("yh.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }", huge, sizeof huge, 0);
  CHECK_ERR(nnc_rt_load_npy(at("xd.npy"), at("yh.npy"), NULL, NULL, NULL, &ds, err, sizeof err),
            "yh.npy: example 1: label 1.0000000000000001e+300 is outside the f32 range");
  write_npy("xh.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }", huge, sizeof huge, 0);
  CHECK_MSG(nnc_rt_load_npy(at("xh.npy"), at("yf.npy"), NULL, NULL, NULL, &ds, err, sizeof err), "%s", err);
  CHECK_ERR(nnc_rt_dataset_cast_inputs(&ds, NNC_RT_F32, err, sizeof err),
            "train example 1 holds 1.0000000000000001e+300, which f32 cannot hold");
  nnc_rt_dataset_free(&ds);

  nnc_rt_array a;
  write_npy("s.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", xd, 8, 0);
  CHECK_MSG(nnc_rt_npy_read(at("s.npy"), &a, err, sizeof err), "%s", err);
  CHECK(a.rank == 0 && a.count == 1 && ((double *)a.data)[0] == 1.0);
  nnc_rt_array_free(&a);
}

static void test_npy_bad(void) {
  nnc_rt_dataset ds;
  nnc_rt_array a;
  float x[8] = {0};
  clear_dir();
#define NPY(dict) "{'descr': '<f4', 'fortran_order': " dict "}"
  CHECK_ERR(nnc_rt_npy_read(at("none.npy"), &a, err, sizeof err), "none.npy: No such file");
  write_npy("f.npy", 1, NPY("True, 'shape': (2, 4), "), x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("f.npy"), &a, err, sizeof err), "f.npy: fortran_order True is not supported");
  write_npy("t.npy", 1, NPY("False, 'shape': (2, 4), "), x, 32, 4);
  CHECK_ERR(nnc_rt_npy_read(at("t.npy"), &a, err, sizeof err), "t.npy: the shape needs 32 data bytes, the file holds 28");
  write_npy("l.npy", 1, NPY("False, 'shape': (2, 4), "), x, 32, 0);
  FILE *f = fopen(at("l.npy"), "ab");
  fputc(0, f);
  fclose(f);
  CHECK_ERR(nnc_rt_npy_read(at("l.npy"), &a, err, sizeof err), "the file holds 33");
  write_npy("h.npy", 1, NPY("False, 'shape': (100000000000, 100000000), "), x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("h.npy"), &a, err, sizeof err), "h.npy: shape too large");
  write_npy("h2.npy", 1, NPY("False, 'shape': (1000000000, 1000), "), x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("h2.npy"), &a, err, sizeof err), "needs 4000000000000 data bytes");
  write_npy("h3.npy", 1, NPY("False, 'shape': (99999999999999999999,), "), x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("h3.npy"), &a, err, sizeof err), "shape dimension too large");
  write_npy("e.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (8,), }", x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("e.npy"), &a, err, sizeof err), "big-endian dtype '>f4'");
  write_npy("c.npy", 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (4,), }", x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("c.npy"), &a, err, sizeof err), "unsupported dtype '<c8'");
  write_npy("k.npy", 1, "{'descr': '<f4', 'shape': (8,), }", x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("k.npy"), &a, err, sizeof err), "header lacks 'fortran_order'");
  write_npy("k2.npy", 1, NPY("False, 'shape': (8,), 'extra': 1"), x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("k2.npy"), &a, err, sizeof err), "unexpected or repeated key 'extra'");
  write_npy("k3.npy", 1, NPY("False, 'shape': (8, -1), "), x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("k3.npy"), &a, err, sizeof err), "shape holds a non-integer");
  write_npy("s.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (8,), }", x, 32, 0);
  CHECK_ERR(nnc_rt_npy_read(at("s.npy"), &a, err, sizeof err), "structured dtypes");
  write_npy("v.npy", 1, NPY("False, 'shape': (8,), "), x, 32, 0);
  size_t n;
  uint8_t *buf = read_file(at("v.npy"), &n);
  buf[6] = 4;
  write_file(at("v4.npy"), buf, n);
  CHECK_ERR(nnc_rt_npy_read(at("v4.npy"), &a, err, sizeof err), "unsupported .npy version 4.0");
  buf[6] = 1, buf[1] = 'X';
  write_file(at("m.npy"), buf, n);
  CHECK_ERR(nnc_rt_npy_read(at("m.npy"), &a, err, sizeof err), "no \\x93NUMPY magic");
  buf[1] = 'N', buf[8] = 0xff, buf[9] = 0xff;
  write_file(at("hl.npy"), buf, n);
  CHECK_ERR(nnc_rt_npy_read(at("hl.npy"), &a, err, sizeof err), "header length 65535 exceeds the file");
  write_file(at("short.npy"), buf, 7);
  CHECK_ERR(nnc_rt_npy_read(at("short.npy"), &a, err, sizeof err), "short.npy: not a .npy file");
  free(buf);

  /* Pairs that disagree. */
  write_npy("y3.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", x, 12, 0);
  write_npy("x2.npy", 1, NPY("False, 'shape': (2, 4), "), x, 32, 0);
  CHECK_ERR(nnc_rt_load_npy(at("x2.npy"), at("y3.npy"), NULL, NULL, NULL, &ds, err, sizeof err),
            "y3.npy: 3 labels for 2 examples");
  int32_t neg[2] = {1, -1};
  write_npy("yn.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", neg, 8, 0);
  CHECK_ERR(nnc_rt_load_npy(at("x2.npy"), at("yn.npy"), NULL, NULL, NULL, &ds, err, sizeof err),
            "yn.npy: example 1: label -1 is not a class id");
  nnc_rt_load_options three = {.num_classes = 3};
  int32_t big[2] = {1, 3};
  write_npy("yb.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", big, 8, 0);
  CHECK_ERR(nnc_rt_load_npy(at("x2.npy"), at("yb.npy"), NULL, NULL, &three, &ds, err, sizeof err),
            "example 1: label 3 is out of range (3 classes)");
  write_npy("x3.npy", 1, NPY("False, 'shape': (2, 2, 2), "), x, 32, 0);
  CHECK_ERR(nnc_rt_load_npy(at("x2.npy"), at("yb.npy"), at("x3.npy"), at("yb.npy"), NULL, &ds, err, sizeof err),
            "x3.npy: dtype or example shape differs");
  CHECK_ERR(nnc_rt_load_npy(at("x2.npy"), at("yb.npy"), at("x2.npy"), NULL, NULL, &ds, err, sizeof err),
            "needs both inputs and labels");
#undef NPY
}

/* ---- shuffles, splits, batches, augmentation ---- */

static bool is_permutation(const uint32_t *p, int64_t n) {
  bool *seen = calloc((size_t)n + 1, 1);
  bool ok = true;
  for (int64_t i = 0; i < n && ok; i++) {
    ok = p[i] < n && !seen[p[i]];
    if (ok) seen[p[i]] = true;
  }
  free(seen);
  return ok;
}

static void test_epoch_order(void) {
  enum { N = 1000 };
  static uint32_t a[N], b[N], c[N], d[N];
  nnc_rt_epoch_order(N, 42, 0, a);
  nnc_rt_epoch_order(N, 42, 0, b);
  nnc_rt_epoch_order(N, 42, 1, c);
  nnc_rt_epoch_order(N, 43, 0, d);
  CHECK(is_permutation(a, N) && is_permutation(c, N) && is_permutation(d, N));
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(memcmp(a, c, sizeof a) != 0);
  CHECK(memcmp(a, d, sizeof a) != 0);
  nnc_rt_epoch_order(N, 42ull | 1ull << 32, 0, d);
  CHECK(memcmp(a, d, sizeof a) != 0); /* the seed's high bits count too */
  int fixed = 0;
  for (int i = 0; i < N; i++) fixed += a[i] == (uint32_t)i;
  CHECK_MSG(fixed < 10, "%d fixed points", fixed);
  /* The stream is part of the format: a resumed run must see these orders again. */
  uint32_t small[10];
  nnc_rt_epoch_order(10, 42, 0, small);
  static const uint32_t golden[10] = {7, 2, 3, 5, 6, 9, 4, 8, 1, 0};
  CHECK_MSG(memcmp(small, golden, sizeof small) == 0, "%u %u %u %u %u %u %u %u %u %u", small[0], small[1],
            small[2], small[3], small[4], small[5], small[6], small[7], small[8], small[9]);
  uint32_t one[1] = {7};
  nnc_rt_epoch_order(1, 0, 0, one);
  CHECK(one[0] == 0);
  nnc_rt_epoch_order(0, 0, 0, NULL);
}

/* A dataset of n examples [c, h, w] u8 with value (example, pixel) -> example * 16 + pixel + 1. */
static void make_images(nnc_rt_dataset *ds, int64_t n, int64_t c, int64_t h, int64_t w) {
  memset(ds, 0, sizeof *ds);
  int64_t dims[3] = {c, h, w};
  ds->x_dtype = NNC_RT_U8;
  ds->x_rank = 3;
  memcpy(ds->x_shape, dims, sizeof dims);
  ds->x_elems = ds->x_bytes = (size_t)(c * h * w);
  ds->label_kind = NNC_RT_LABELS_CLASS;
  ds->label_elems = 1;
  ds->num_classes = 10;
  ds->train.n = n;
  ds->train.x = malloc((size_t)n * ds->x_bytes);
  ds->train.y = malloc((size_t)n * sizeof(int32_t));
  for (int64_t i = 0; i < n; i++) {
    ((int32_t *)ds->train.y)[i] = (int32_t)(i % 10);
    for (size_t p = 0; p < ds->x_bytes; p++) ds->train.x[(size_t)i * ds->x_bytes + p] = (uint8_t)(i * 16 + p + 1);
  }
}

static void test_split_and_gather(void) {
  nnc_rt_dataset ds;
  make_images(&ds, 10, 1, 2, 2);
  CHECK(nnc_rt_dataset_split_validation(&ds, 0.2, 7, err, sizeof err));
  CHECK(ds.train.n == 8 && ds.test.n == 2);
  int seen[10] = {0};
  for (int64_t i = 0; i < 8; i++) seen[((int32_t *)ds.train.y)[i]]++;
  for (int64_t i = 0; i < 2; i++) seen[((int32_t *)ds.test.y)[i]]++;
  for (int i = 0; i < 10; i++) CHECK(seen[i] == 1);
  for (int64_t i = 1; i < 8; i++) CHECK(((int32_t *)ds.train.y)[i - 1] < ((int32_t *)ds.train.y)[i]);
  int32_t held0 = ((int32_t *)ds.test.y)[0], held1 = ((int32_t *)ds.test.y)[1];
  CHECK(ds.test.x[0] == (uint8_t)(held0 * 16 + 1));
  CHECK_ERR(nnc_rt_dataset_split_validation(&ds, 0.2, 7, err, sizeof err), "already has a test split");
  nnc_rt_dataset_free(&ds);
  make_images(&ds, 10, 1, 2, 2);
  CHECK(nnc_rt_dataset_split_validation(&ds, 0.2, 7, err, sizeof err));
  CHECK(((int32_t *)ds.test.y)[0] == held0 && ((int32_t *)ds.test.y)[1] == held1); /* seeded, fixed */

  uint32_t idx[3] = {5, 0, 7};
  uint8_t x[12];
  int32_t y[3];
  CHECK(nnc_rt_gather(&ds, &ds.train, idx, 3, x, y));
  CHECK(memcmp(x, ds.train.x + 5 * 4, 4) == 0 && memcmp(x + 8, ds.train.x + 7 * 4, 4) == 0);
  CHECK(y[1] == ((int32_t *)ds.train.y)[0] && y[2] == ((int32_t *)ds.train.y)[7]);
  idx[1] = 8;
  CHECK(!nnc_rt_gather(&ds, &ds.train, idx, 3, x, y));
  nnc_rt_dataset_free(&ds);

  make_images(&ds, 10, 1, 2, 2);
  CHECK_ERR(nnc_rt_dataset_split_validation(&ds, 1.0, 7, err, sizeof err), "not between 0 and 1");
  CHECK_ERR(nnc_rt_dataset_split_validation(&ds, 0.01, 7, err, sizeof err), "leaves an empty");
  nnc_rt_dataset_free(&ds);
}

/* Whether out is in cropped from in at offset (dy, dx) with padding p, flipped or not. */
static bool is_crop(const uint8_t *in, const uint8_t *out, int c, int h, int w, int p) {
  for (int flip = 0; flip < 2; flip++)
    for (int dy = 0; dy <= 2 * p; dy++)
      for (int dx = 0; dx <= 2 * p; dx++) {
        bool match = true;
        for (int k = 0; k < c && match; k++)
          for (int y = 0; y < h && match; y++)
            for (int x = 0; x < w && match; x++) {
              int sy = y + dy - p, sx = (flip ? w - 1 - x : x) + dx - p;
              uint8_t want = sy < 0 || sy >= h || sx < 0 || sx >= w ? 0 : in[(k * h + sy) * w + sx];
              match = out[(k * h + y) * w + x] == want;
            }
        if (match) return true;
      }
  return false;
}

static void test_augment(void) {
  enum { N = 64, C = 2, H = 4, W = 5 };
  nnc_rt_dataset ds;
  make_images(&ds, N, C, H, W);
  uint32_t idx[N];
  for (int i = 0; i < N; i++) idx[i] = (uint32_t)((i * 37) % N);
  static uint8_t a[N * C * H * W], b[N * C * H * W], orig[N * C * H * W];
  nnc_rt_gather(&ds, &ds.train, idx, N, orig, NULL);
  nnc_rt_augment aug = {.pad = 2, .flip = true, .seed = 5};
  memcpy(a, orig, sizeof a);
  memcpy(b, orig, sizeof b);
  CHECK(nnc_rt_augment_batch(&aug, &ds, a, idx, N, 3, err, sizeof err));
  CHECK(nnc_rt_augment_batch(&aug, &ds, b, idx, N, 3, err, sizeof err));
  CHECK(memcmp(a, b, sizeof a) == 0);
  int changed = 0;
  for (int i = 0; i < N; i++) {
    const uint8_t *in = orig + i * C * H * W, *out = a + i * C * H * W;
    CHECK_MSG(is_crop(in, out, C, H, W, 2), "example %d", i);
    changed += memcmp(in, out, C * H * W) != 0;
  }
  CHECK(changed > N / 2);
  /* The same example gets the same draw in another batch position; another epoch differs. */
  uint32_t one = idx[9];
  uint8_t single[C * H * W];
  memcpy(single, orig + 9 * C * H * W, sizeof single);
  CHECK(nnc_rt_augment_batch(&aug, &ds, single, &one, 1, 3, err, sizeof err));
  CHECK(memcmp(single, a + 9 * C * H * W, sizeof single) == 0);
  memcpy(b, orig, sizeof b);
  CHECK(nnc_rt_augment_batch(&aug, &ds, b, idx, N, 4, err, sizeof err));
  CHECK(memcmp(a, b, sizeof a) != 0);
  /* Flip only: each example is itself or its mirror, and both happen. */
  nnc_rt_augment flip = {.flip = true, .seed = 1};
  memcpy(b, orig, sizeof b);
  CHECK(nnc_rt_augment_batch(&flip, &ds, b, idx, N, 0, err, sizeof err));
  int flipped = 0;
  for (int i = 0; i < N; i++) {
    CHECK(is_crop(orig + i * C * H * W, b + i * C * H * W, C, H, W, 0));
    flipped += memcmp(orig + i * C * H * W, b + i * C * H * W, C * H * W) != 0;
  }
  CHECK_MSG(flipped > 10 && flipped < N - 10, "%d of %d flipped", flipped, N);
  nnc_rt_augment bad = {.pad = -1};
  CHECK_ERR(nnc_rt_augment_batch(&bad, &ds, b, idx, N, 0, err, sizeof err), "padding -1");
  nnc_rt_dataset_free(&ds);
}

int main(void) {
  snprintf(tmp, sizeof tmp, "%s/nnc-data-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(tmp)) {
    perror("mkdtemp");
    return 2;
  }
  test_philox();
  test_idx_good();
  test_idx_bad();
  test_fashion_mnist();
  test_cifar();
  test_csv_good();
  test_csv_bad();
  test_npy_good();
  test_npy_bad();
  test_epoch_order();
  test_split_and_gather();
  test_augment();
  remove_tree(tmp);
  return check_summary();
}
