/* safetensors: round trips through files, every kind of damaged file rejected with its own
 * message, and atomic writes that leave the previous file intact when a write fails. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/safetensors.h"
#include "check.h"

static char dir[64];
static char err[512];

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, 512, "%s/%s", dir, name);
  return p;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
  FILE *fp = fopen(path, "wb");
  CHECK(fp && fwrite(bytes, 1, n, fp) == n);
  if (fp) fclose(fp);
}

static size_t file_bytes(const char *path, unsigned char *buf, size_t cap) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return 0;
  size_t n = fread(buf, 1, cap, fp);
  fclose(fp);
  return n;
}

/* Entries in the scratch directory: a failed write must leave no temporary behind. */
static int count_dir_entries(void) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  if (d) closedir(d);
  return n;
}

/* ---- round trips ---- */

static const float w_f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-7f, -1e30f};
static const int32_t b_i32[4] = {1, -2, 2147483647, -2147483647 - 1};
static const uint8_t px_u8[5] = {0, 1, 127, 128, 255};
static const float lr_f32 = 0.125f;
static const double d_f64[2] = {3.141592653589793, -0.1};
static const int64_t step_i64[1] = {1234567890123LL};
static const uint8_t mask_bool[3] = {1, 0, 1};
static const int64_t shape_w[2] = {2, 3}, shape_b[1] = {4}, shape_px[1] = {5}, shape_d[1] = {2},
                     shape_step[1] = {1}, shape_mask[3] = {1, 3, 1}, shape_empty[2] = {0, 3};

static const nnc_st_tensor sample[] = {
    {.name = "fc.weight", .dtype = NNC_ST_F32, .rank = 2, .shape = shape_w, .data = w_f32},
    {.name = "fc.bias", .dtype = NNC_ST_I32, .rank = 1, .shape = shape_b, .data = b_i32},
    {.name = "pixels", .dtype = NNC_ST_U8, .rank = 1, .shape = shape_px, .data = px_u8},
    {.name = "lr", .dtype = NNC_ST_F32, .rank = 0, .shape = NULL, .data = &lr_f32},
    {.name = "d", .dtype = NNC_ST_F64, .rank = 1, .shape = shape_d, .data = d_f64},
    {.name = "step", .dtype = NNC_ST_I64, .rank = 1, .shape = shape_step, .data = step_i64},
    {.name = "mask", .dtype = NNC_ST_BOOL, .rank = 3, .shape = shape_mask, .data = mask_bool},
    {.name = "empty", .dtype = NNC_ST_F32, .rank = 2, .shape = shape_empty, .data = NULL},
};
enum { NSAMPLE = sizeof sample / sizeof sample[0] };

static bool same_tensor(const nnc_st_tensor *got, const nnc_st_tensor *want) {
  size_t bytes = nnc_st_dtype_size(want->dtype);
  for (int i = 0; i < want->rank; i++) bytes *= (size_t)want->shape[i];
  if (!got || got->dtype != want->dtype || got->rank != want->rank || got->nbytes != bytes) return false;
  for (int i = 0; i < want->rank; i++)
    if (got->shape[i] != want->shape[i]) return false;
  return bytes == 0 || memcmp(got->data, want->data, bytes) == 0;
}

static void check_sample(const nnc_st_file *f) {
  CHECK(f->ntensors == NSAMPLE);
  for (size_t i = 0; i < NSAMPLE; i++)
    CHECK_MSG(same_tensor(nnc_st_find(f, sample[i].name), &sample[i]), "%s", sample[i].name);
  for (size_t i = 0; i < f->ntensors; i++) {
    const nnc_st_tensor *t = &f->tensors[i];
    CHECK_MSG(t->offset % nnc_st_dtype_size(t->dtype) == 0, "%s misaligned", t->name);
    CHECK(((uintptr_t)t->data) % nnc_st_dtype_size(t->dtype) == 0);
  }
  CHECK(nnc_st_find(f, "nope") == NULL);
}

static void test_round_trip_without_metadata(void) {
  const char *path = tmp_path("plain.safetensors");
  CHECK_MSG(nnc_st_write(path, sample, NSAMPLE, NULL, 0, err, sizeof err), "%s", err);
  nnc_st_file f;
  CHECK_MSG(nnc_st_read(path, &f, err, sizeof err), "%s", err);
  check_sample(&f);
  CHECK(f.nmeta == 0 && nnc_st_meta_get(&f, "format") == NULL);
  nnc_st_free(&f);

  /* The header is padded with spaces to a multiple of 8, keys sorted. */
  unsigned char buf[4096];
  size_t n = file_bytes(path, buf, sizeof buf);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
  CHECK(n > 8 && hlen % 8 == 0 && hlen < n);
  CHECK(memcmp(buf + 8, "{\"d\":{", 6) == 0);
}

static void test_round_trip_with_metadata(void) {
  const char *path = tmp_path("meta.safetensors");
  const nnc_st_meta meta[] = {{"format", "pt"}, {"step", "12"}, {"note", "caf\xc3\xa9 \"quoted\""}};
  CHECK_MSG(nnc_st_write(path, sample, NSAMPLE, meta, 3, err, sizeof err), "%s", err);
  nnc_st_file f;
  CHECK_MSG(nnc_st_read(path, &f, err, sizeof err), "%s", err);
  check_sample(&f);
  CHECK(f.nmeta == 3);
  CHECK(nnc_st_meta_get(&f, "format") && strcmp(nnc_st_meta_get(&f, "format"), "pt") == 0);
  CHECK(nnc_st_meta_get(&f, "step") && strcmp(nnc_st_meta_get(&f, "step"), "12") == 0);
  CHECK(nnc_st_meta_get(&f, "note") && strcmp(nnc_st_meta_get(&f, "note"), meta[2].value) == 0);
  nnc_st_free(&f);
}

/* The exact bytes of a one-tensor file, as the reference writer lays them out. */
static void test_exact_layout(void) {
  const char *path = tmp_path("exact.safetensors");
  static const float v[2] = {1.0f, 2.0f};
  static const int64_t shape[1] = {2};
  nnc_st_tensor t = {.name = "w", .dtype = NNC_ST_F32, .rank = 1, .shape = shape, .data = v};
  CHECK_MSG(nnc_st_write(path, &t, 1, NULL, 0, err, sizeof err), "%s", err);
  const char header[] = "{\"w\":{\"data_offsets\":[0,8],\"dtype\":\"F32\",\"shape\":[2]}}  ";  /* 54 bytes + 2 */
  unsigned char want[8 + sizeof header - 1 + 8] = {sizeof header - 1};
  memcpy(want + 8, header, sizeof header - 1);
  memcpy(want + 8 + sizeof header - 1, v, 8);
  unsigned char got[256];
  CHECK(file_bytes(path, got, sizeof got) == sizeof want && memcmp(got, want, sizeof want) == 0);
}

static void test_empty_file_set(void) {
  const char *path = tmp_path("none.safetensors");
  CHECK_MSG(nnc_st_write(path, NULL, 0, NULL, 0, err, sizeof err), "%s", err);
  nnc_st_file f;
  CHECK_MSG(nnc_st_read(path, &f, err, sizeof err), "%s", err);
  CHECK(f.ntensors == 0 && f.nmeta == 0 && f.data_size == 0);
  nnc_st_free(&f);
}

/* ---- damaged files ---- */

/* A file image: the size prefix (hlen, or strlen(header)), the header, ndata data bytes. */
static size_t craft(unsigned char *out, uint64_t hlen, const char *header, size_t ndata) {
  size_t n = strlen(header);
  for (int i = 0; i < 8; i++) out[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(out + 8, header, n);
  memset(out + 8 + n, 0x5a, ndata);
  return 8 + n + ndata;
}

/* Rejected both from memory and from a file, with a message that names the file. */
static void expect_reject_image(const unsigned char *img, size_t n, const char *needle, int line) {
  nnc_st_file f;
  bool ok = nnc_st_parse("image.safetensors", img, n, &f, err, sizeof err);
  CHECK_MSG(!ok && strstr(err, needle) && strncmp(err, "image.safetensors: ", 19) == 0,
            "line %d: parse: want '%s', got '%s'", line, needle, ok ? "(accepted)" : err);
  if (ok) nnc_st_free(&f);
  const char *path = tmp_path("bad.safetensors");
  write_bytes(path, img, n);
  ok = nnc_st_read(path, &f, err, sizeof err);
  CHECK_MSG(!ok && strstr(err, needle) && strncmp(err, path, strlen(path)) == 0,
            "line %d: read: want '%s', got '%s'", line, needle, ok ? "(accepted)" : err);
  CHECK(f.ntensors == 0 && f.tensors == NULL);
  if (ok) nnc_st_free(&f);
  unlink(path);
}

static void expect_reject(const char *header, size_t ndata, const char *needle, int line) {
  unsigned char img[1024];
  size_t n = craft(img, strlen(header), header, ndata);
  expect_reject_image(img, n, needle, line);
}
#define REJECT(header, ndata, needle) expect_reject(header, ndata, needle, __LINE__)

static void test_rejects_bad_sizes(void) {
  unsigned char img[64];
  expect_reject_image((const unsigned char *)"\x10\0\0", 3, "too short for the 8-byte header size", __LINE__);
  expect_reject_image(img, 0, "file is 0 bytes", __LINE__);
  expect_reject_image(img, craft(img, 100, "{}", 0), "header size 100 exceeds the 2 bytes", __LINE__);
  expect_reject_image(img, craft(img, 200000000, "{}", 0), "larger than the 100000000-byte limit", __LINE__);
  expect_reject_image(img, craft(img, UINT64_MAX, "{}", 0), "larger than the 100000000-byte limit", __LINE__);
  expect_reject_image(img, craft(img, 0, "", 0), "not valid JSON", __LINE__);
}

static void test_rejects_bad_json(void) {
  REJECT("{\"a\":", 0, "header is not valid JSON");
  REJECT("{} trailing", 0, "header is not valid JSON");
  REJECT("[1, 2]", 0, "header is not a JSON object");
  REJECT("\"str\"", 0, "not a JSON object");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate tensor name");
  REJECT("{\"a\":\"F32\"}", 0, "tensor 'a': entry is not a JSON object");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown field 'x'");
  REJECT("{\"__metadata__\":[]}", 0, "\"__metadata__\" is not a JSON object");
  REJECT("{\"__metadata__\":{\"k\":1}}", 0, "value of 'k' is not a string");
}

static void test_rejects_bad_entries(void) {
  REJECT("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': unknown dtype 'F33'");
  REJECT("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "non-string \"dtype\"");
  REJECT("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "non-string \"dtype\"");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", 4, "non-list \"shape\"");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0] is negative (-1)");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,4]}}", 4, "shape[1] is not an integer");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
         "byte size of shape [4294967296, 4294967296] overflows");
  REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
         "header is not valid JSON");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
         "tensor 'a': data_offsets [0, 4] hold 4 bytes, but F32 [2] needs 8");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, "but F32 [] needs 4");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "\"data_offsets\" is not [begin, end]");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "\"data_offsets\" is not [begin, end]");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "\"data_offsets\" is not [begin, end]");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "\"data_offsets\" is not [begin, end]");
}

static void test_rejects_bad_offsets(void) {
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
         "data_offsets [0, 8] go past the end of the 4-byte data buffer");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, "hole in the data buffer: bytes 4 to 8 between 'a' and 'b'");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
         "hole in the data buffer: bytes 0 to 4 before 'a'");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "tensors 'a' and 'b' overlap");
  REJECT("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "tensors 'a' and 'b' overlap");
  REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         "the tensors cover 4 bytes of the 8-byte data buffer");
  REJECT("{}", 3, "the tensors cover 0 bytes of the 3-byte data buffer");
}

static void test_rejects_truncated_file(void) {
  const char *path = tmp_path("whole.safetensors");
  CHECK_MSG(nnc_st_write(path, sample, NSAMPLE, NULL, 0, err, sizeof err), "%s", err);
  unsigned char buf[4096];
  size_t n = file_bytes(path, buf, sizeof buf);
  expect_reject_image(buf, n - 1, "(truncated file?)", __LINE__);
  expect_reject_image(buf, n - 20, "(truncated file?)", __LINE__);
  expect_reject_image(buf, 20, "(truncated file?)", __LINE__);
  expect_reject_image(buf, 5, "(truncated file?)", __LINE__);
  /* No cut may crash or be accepted. */
  int accepted = 0;
  for (size_t cut = 0; cut < n; cut++) {
    nnc_st_file f;
    if (nnc_st_parse("cut", buf, cut, &f, err, sizeof err)) {
      accepted++;
      nnc_st_free(&f);
    }
  }
  CHECK(accepted == 0);
  unlink(path);
}

/* Random byte flips of a valid image: anything may be rejected, nothing may crash, and what
 * is accepted still has every tensor inside the data buffer. */
static void test_random_corruption_is_safe(void) {
  const char *path = tmp_path("fuzz.safetensors");
  CHECK_MSG(nnc_st_write(path, sample, NSAMPLE, NULL, 0, err, sizeof err), "%s", err);
  unsigned char orig[4096], img[4096];
  size_t n = file_bytes(path, orig, sizeof orig);
  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  bool inside = true;
  for (int round = 0; round < 3000; round++) {
    memcpy(img, orig, n);
    for (int k = 0; k < 1 + round % 4; k++) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      img[(rng >> 33) % n] = (unsigned char)(rng >> 17);
    }
    nnc_st_file f;
    if (!nnc_st_parse("fuzz", img, n, &f, err, sizeof err)) continue;
    for (size_t i = 0; i < f.ntensors; i++)
      inside = inside && f.tensors[i].offset + f.tensors[i].nbytes <= f.data_size;
    nnc_st_free(&f);
  }
  CHECK(inside);
  unlink(path);
}

static void test_rejects_unreadable(void) {
  nnc_st_file f;
  const char *missing = tmp_path("missing.safetensors");
  CHECK(!nnc_st_read(missing, &f, err, sizeof err) && strstr(err, "No such file") && strstr(err, missing));
  CHECK(!nnc_st_read(dir, &f, err, sizeof err) && strstr(err, "not a regular file"));
}

/* ---- writer failures ---- */

static void test_write_rejects_bad_tensors(void) {
  const char *path = tmp_path("never.safetensors");
  static const int64_t neg[1] = {-1};
  nnc_st_tensor dup[2] = {sample[0], sample[0]};
  CHECK(!nnc_st_write(path, dup, 2, NULL, 0, err, sizeof err) && strstr(err, "duplicate tensor name 'fc.weight'"));
  nnc_st_tensor t = sample[0];
  t.name = "__metadata__";
  CHECK(!nnc_st_write(path, &t, 1, NULL, 0, err, sizeof err) && strstr(err, "\"__metadata__\""));
  t = sample[0];
  t.shape = neg;
  t.rank = 1;
  CHECK(!nnc_st_write(path, &t, 1, NULL, 0, err, sizeof err) && strstr(err, "shape[0] is negative"));
  t = sample[0];
  t.data = NULL;
  CHECK(!nnc_st_write(path, &t, 1, NULL, 0, err, sizeof err) && strstr(err, "no data"));
  t = sample[0];
  t.name = "bad\xff";
  CHECK(!nnc_st_write(path, &t, 1, NULL, 0, err, sizeof err) && strstr(err, "not valid UTF-8"));
  const nnc_st_meta meta[2] = {{"k", "1"}, {"k", "2"}};
  CHECK(!nnc_st_write(path, sample, 1, meta, 2, err, sizeof err) && strstr(err, "duplicate metadata key 'k'"));
  CHECK(access(path, F_OK) != 0);
}

static void test_write_to_unwritable_path(void) {
  /* Tests run as root, so a read-only directory would not stop us: a regular file as the
   * parent directory does. */
  const char *under_file = "/etc/passwd/x.safetensors";
  CHECK(!nnc_st_write(under_file, sample, NSAMPLE, NULL, 0, err, sizeof err));
  CHECK_MSG(strncmp(err, under_file, strlen(under_file)) == 0 && strstr(err, "Not a directory"), "%s", err);
  const char *no_dir = tmp_path("no/such/dir/x.safetensors");
  CHECK(!nnc_st_write(no_dir, sample, NSAMPLE, NULL, 0, err, sizeof err));
  CHECK_MSG(strstr(err, no_dir) && strstr(err, "No such file or directory"), "%s", err);
}

/* A write failing after any number of bytes (a full disk) reports the file, removes the
 * temporary and leaves the previous checkpoint byte for byte as it was. */
static void test_injected_write_failure_keeps_previous_file(void) {
  const char *path = tmp_path("ckpt.safetensors");
  int before = count_dir_entries();
  nnc_st_tensor v1 = sample[0];
  CHECK_MSG(nnc_st_write(path, &v1, 1, NULL, 0, err, sizeof err), "%s", err);
  unsigned char old[4096], now[4096];
  size_t old_n = file_bytes(path, old, sizeof old);
  static const size_t after[] = {0, 1, 7, 8, 9, 40, 100, 300};
  for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
    char val[32];
    snprintf(val, sizeof val, "%zu", after[i]);
    setenv("NNC_FAULT_WRITE_AFTER", val, 1);
    bool ok = nnc_st_write(path, sample, NSAMPLE, NULL, 0, err, sizeof err);
    CHECK_MSG(!ok && strncmp(err, path, strlen(path)) == 0 && strstr(err, "No space left on device"),
              "after %zu: %s", after[i], ok ? "(written)" : err);
    CHECK(file_bytes(path, now, sizeof now) == old_n && memcmp(now, old, old_n) == 0);
    CHECK_MSG(count_dir_entries() == before + 1, "after %zu: a temporary was left behind", after[i]);
  }
  /* A fault beyond the file's size does not fire. */
  setenv("NNC_FAULT_WRITE_AFTER", "1000000", 1);
  CHECK_MSG(nnc_st_write(path, sample, NSAMPLE, NULL, 0, err, sizeof err), "%s", err);
  unsetenv("NNC_FAULT_WRITE_AFTER");
  nnc_st_file f;
  CHECK_MSG(nnc_st_read(path, &f, err, sizeof err), "%s", err);
  check_sample(&f);
  nnc_st_free(&f);
  CHECK(count_dir_entries() == before + 1);
}

static void remove_scratch_dir(void) {
  DIR *d = opendir(dir);
  for (struct dirent *e; d && (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tmp_path(e->d_name));
  if (d) closedir(d);
  rmdir(dir);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/nnc_st_XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip_without_metadata();
  test_round_trip_with_metadata();
  test_exact_layout();
  test_empty_file_set();
  test_rejects_bad_sizes();
  test_rejects_bad_json();
  test_rejects_bad_entries();
  test_rejects_bad_offsets();
  test_rejects_truncated_file();
  test_random_corruption_is_safe();
  test_rejects_unreadable();
  test_write_rejects_bad_tensors();
  test_write_to_unwritable_path();
  test_injected_write_failure_keeps_previous_file();
  remove_scratch_dir();
  return check_summary();
}
