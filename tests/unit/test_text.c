/* The text data source (runtime/data_text.c) on files generated here, the vocabulary's hex
 * form, and next-token sampling (runtime/sample.c). */
#include "runtime/data.h"
#include "runtime/sample.h"

#include "check.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];
static char err[1024];

static const char *at(const char *name) {
  static char buf[8][512];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, 512, "%s/%s", tmp, name);
  return p;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fwrite(text, 1, strlen(text), f);
  fclose(f);
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

#define CHECK_ERR(call, needle)                                                          \
  do {                                                                                   \
    err[0] = 0;                                                                          \
    bool ok_ = (call);                                                                   \
    CHECK_MSG(!ok_ && strstr(err, needle), "expected an error with '%s', got %s: '%s'", needle, \
              ok_ ? "success" : "failure", err);                                         \
  } while (0)

/* The decoded characters of row i of a split's x (or y) as a string. */
static const char *decode(const nnc_rt_dataset *ds, const void *data, int64_t row) {
  const int32_t *ids = data;
  static char buf[256];
  int64_t T = ds->x_shape[0];
  for (int64_t t = 0; t < T; t++) buf[t] = (char)ds->vocab.bytes[ids[row * T + t]];
  buf[T] = 0;
  return buf;
}

/* 40 characters, T = 4, stride 4 (the default), the last 20% (8 characters) held out. */
static void test_windows(void) {
  const char *text = "the quick brown fox jumps over the lazy.";
  write_text(at("a.txt"), text);
  nnc_rt_text_options o = {.seq_len = 4, .val_fraction = 0.2};
  nnc_rt_dataset ds;
  CHECK_MSG(nnc_rt_load_text(at("a.txt"), &o, &ds, err, sizeof err), "%s", err);
  /* vocabulary: the distinct bytes, ascending: ' ' '.' a b c e f h i j k l m n o p q r s t u v w x y z */
  CHECK(ds.vocab.size == 26);
  CHECK(ds.vocab.bytes[0] == ' ' && ds.vocab.bytes[1] == '.' && ds.vocab.bytes[2] == 'a');
  for (int i = 1; i < ds.vocab.size; i++) CHECK(ds.vocab.bytes[i - 1] < ds.vocab.bytes[i]);
  CHECK(nnc_rt_vocab_id(&ds.vocab, 'a') == 2 && nnc_rt_vocab_id(&ds.vocab, 'z') == 25);
  CHECK(nnc_rt_vocab_id(&ds.vocab, 'd') == -1 && nnc_rt_vocab_id(&ds.vocab, 0xff) == -1);
  CHECK(ds.num_classes == 26 && ds.label_kind == NNC_RT_LABELS_CLASS);
  CHECK(ds.x_dtype == NNC_RT_I32 && ds.x_rank == 1 && ds.x_shape[0] == 4 && ds.x_bytes == 16);
  CHECK(ds.label_rank == 1 && ds.label_shape[0] == 4 && ds.label_elems == 4);
  /* head: 32 characters "the quick brown fox jumps over t", windows at 0, 4, .., 24 (28 needs 33) */
  CHECK_MSG(ds.train.n == 7, "%lld training windows", (long long)ds.train.n);
  CHECK(strcmp(decode(&ds, ds.train.x, 0), "the ") == 0);
  CHECK(strcmp(decode(&ds, ds.train.y, 0), "he q") == 0);
  CHECK(strcmp(decode(&ds, ds.train.x, 6), "s ov") == 0);
  CHECK(strcmp(decode(&ds, ds.train.y, 6), " ove") == 0);
  /* tail: the last 8 characters "he lazy.", one window */
  CHECK(ds.test.n == 1);
  CHECK(strcmp(decode(&ds, ds.test.x, 0), "he l") == 0);
  CHECK(strcmp(decode(&ds, ds.test.y, 0), "e la") == 0);
  /* gather copies T labels per example */
  uint32_t idx[2] = {6, 0};
  int32_t x[8], y[8];
  CHECK(nnc_rt_gather(&ds, &ds.train, idx, 2, x, y));
  CHECK(memcmp(x, (int32_t *)ds.train.x + 24, 16) == 0 && memcmp(y + 4, ds.train.y, 16) == 0);
  nnc_rt_dataset_free(&ds);

  /* stride 1: every start in the head; the tail stays non-overlapping */
  o.stride = 1;
  CHECK_MSG(nnc_rt_load_text(at("a.txt"), &o, &ds, err, sizeof err), "%s", err);
  CHECK(ds.train.n == 28 && ds.test.n == 1);
  CHECK(strcmp(decode(&ds, ds.train.x, 1), "he q") == 0);
  nnc_rt_dataset_free(&ds);
}

static void test_entropy(void) {
  write_text(at("e.txt"), "aabbaabbaabbaabbaabb"); /* two characters, equally often */
  nnc_rt_text_options o = {.seq_len = 2, .val_fraction = 0.25}; /* 15 + 5 characters */
  nnc_rt_dataset ds;
  CHECK_MSG(nnc_rt_load_text(at("e.txt"), &o, &ds, err, sizeof err), "%s", err);
  CHECK_MSG(fabs(ds.unigram_entropy - log(2)) < 1e-12, "%.17g", ds.unigram_entropy);
  CHECK(ds.vocab.size == 2 && ds.train.n == 7 && ds.test.n == 2);
  nnc_rt_dataset_free(&ds);
}

/* Every regular file in name order; dot files and symbolic links are skipped, so fortune's
 * "name.u8 -> name" links do not repeat a file. */
static void test_directory(void) {
  mkdir(at("d"), 0700);
  write_text(at("d/b"), "bbbbbbbbbb");
  write_text(at("d/a"), "aaaaaaaaaa");
  write_text(at("d/.hidden"), "zzzzzzzzzz");
  CHECK(symlink("a", at("d/c")) == 0);
  mkdir(at("d/sub"), 0700);
  nnc_rt_text_options o = {.seq_len = 3, .val_fraction = 0.2};
  nnc_rt_dataset ds;
  CHECK_MSG(nnc_rt_load_text(at("d"), &o, &ds, err, sizeof err), "%s", err);
  CHECK(ds.vocab.size == 2 && ds.vocab.bytes[0] == 'a' && ds.vocab.bytes[1] == 'b');
  /* "aaaaaaaaaabbbbbbbbbb": head 16, tail 4 "bbbb" */
  CHECK(ds.train.n == 5 && ds.test.n == 1);
  CHECK(strcmp(decode(&ds, ds.train.x, 2), "aaa") == 0 && strcmp(decode(&ds, ds.train.y, 2), "aaa") == 0);
  CHECK(strcmp(decode(&ds, ds.train.x, 3), "abb") == 0 && strcmp(decode(&ds, ds.train.y, 3), "bbb") == 0);
  nnc_rt_dataset_free(&ds);
  mkdir(at("empty_dir"), 0700);
  CHECK_ERR(nnc_rt_load_text(at("empty_dir"), &o, &ds, err, sizeof err), "no regular files");
}

static void test_errors(void) {
  nnc_rt_text_options o = {.seq_len = 4};
  nnc_rt_dataset ds;
  write_text(at("empty.txt"), "");
  CHECK_ERR(nnc_rt_load_text(at("empty.txt"), &o, &ds, err, sizeof err), "empty.txt: the text is empty");
  CHECK(ds.train.n == 0 && ds.vocab.size == 0);
  CHECK_ERR(nnc_rt_load_text(at("nothing.txt"), &o, &ds, err, sizeof err), "nothing.txt: No such file");
  write_text(at("short.txt"), "abcd");
  CHECK_ERR(nnc_rt_load_text(at("short.txt"), &o, &ds, err, sizeof err), "too few for one training sequence of 4 + 1");
  write_text(at("tail.txt"), "abcdefghijklmnopqrst"); /* 10%: 2 characters held out */
  CHECK_ERR(nnc_rt_load_text(at("tail.txt"), &o, &ds, err, sizeof err), "(2 characters) is shorter than one sequence");
  nnc_rt_text_options bad = {.seq_len = 0};
  CHECK_ERR(nnc_rt_load_text(at("tail.txt"), &bad, &ds, err, sizeof err), "sequence length 0");
  bad = (nnc_rt_text_options){.seq_len = 2, .stride = -1};
  CHECK_ERR(nnc_rt_load_text(at("tail.txt"), &bad, &ds, err, sizeof err), "stride -1");
  bad = (nnc_rt_text_options){.seq_len = 2, .val_fraction = 1};
  CHECK_ERR(nnc_rt_load_text(at("tail.txt"), &bad, &ds, err, sizeof err), "validation fraction 1");
}

/* Bytes outside ASCII are tokens like any other; the hex form round-trips every byte. */
static void test_vocab_hex(void) {
  FILE *f = fopen(at("bin"), "wb");
  for (int rep = 0; rep < 2; rep++)
    for (int b = 255; b >= 0; b--) fputc(b, f);
  fclose(f);
  nnc_rt_text_options o = {.seq_len = 8};
  nnc_rt_dataset ds;
  CHECK_MSG(nnc_rt_load_text(at("bin"), &o, &ds, err, sizeof err), "%s", err);
  CHECK(ds.vocab.size == 256 && ds.vocab.bytes[0] == 0 && ds.vocab.bytes[255] == 255);
  CHECK_MSG(fabs(ds.unigram_entropy - log(256)) < 1e-9, "%.17g", ds.unigram_entropy);
  char hex[513];
  nnc_rt_vocab_to_hex(&ds.vocab, hex, sizeof hex);
  CHECK(strlen(hex) == 512 && strncmp(hex, "000102", 6) == 0 && strcmp(hex + 506, "fdfeff") == 0);
  nnc_rt_vocab back;
  CHECK(nnc_rt_vocab_from_hex(hex, &back) && back.size == 256 && memcmp(back.bytes, ds.vocab.bytes, 256) == 0);
  nnc_rt_dataset_free(&ds);
  CHECK(nnc_rt_vocab_from_hex("0A2061", &back) && back.size == 3 && back.bytes[0] == '\n');
  const char *bad[] = {"", "0", "0a0a", "610a", "zz", "0g", "61 62"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK_MSG(!nnc_rt_vocab_from_hex(bad[i], &back), "'%s'", bad[i]);
  char big[1100];
  memset(big, '0', sizeof big - 1);
  big[sizeof big - 1] = 0;
  CHECK(!nnc_rt_vocab_from_hex(big, &back));
}

static void test_sampling(void) {
  float logits[4] = {0.0f, 2.0f, 2.0f, 1.0f};
  CHECK(nnc_rt_sample_token(logits, 4, 0, 1, 0) == 1); /* argmax, the first on ties */
  CHECK(nnc_rt_sample_token(logits, 1, 0.8, 1, 0) == 0);
  /* frequencies follow softmax(logits / t) */
  enum { N = 20000 };
  int counts[4] = {0};
  double t = 0.7;
  for (int i = 0; i < N; i++) counts[nnc_rt_sample_token(logits, 4, t, 42, (uint64_t)i)]++;
  double z = 0;
  for (int k = 0; k < 4; k++) z += exp(logits[k] / t);
  for (int k = 0; k < 4; k++) {
    double p = exp(logits[k] / t) / z, sd = sqrt(p * (1 - p) / N);
    CHECK_MSG(fabs((double)counts[k] / N - p) < 5 * sd, "token %d: %d of %d, p = %.4f", k, counts[k], N, p);
  }
  /* a pure function of (seed, index) */
  CHECK(nnc_rt_sample_token(logits, 4, t, 42, 17) == nnc_rt_sample_token(logits, 4, t, 42, 17));
  int differ = 0;
  for (int i = 0; i < 64; i++)
    differ += nnc_rt_sample_token(logits, 4, t, 42, (uint64_t)i) != nnc_rt_sample_token(logits, 4, t, 43, (uint64_t)i);
  CHECK(differ > 10);
  /* non-finite logits are never drawn; a tiny temperature is the argmax, not NaN */
  float odd[3] = {NAN, 1.0f, INFINITY};
  for (int i = 0; i < 100; i++) CHECK(nnc_rt_sample_token(odd, 3, 1.0, 7, (uint64_t)i) == 1);
  float none[2] = {NAN, NAN};
  CHECK(nnc_rt_sample_token(none, 2, 1.0, 7, 0) == 0);
  CHECK(nnc_rt_sample_token(logits, 4, 1e-300, 7, 3) == 1 || nnc_rt_sample_token(logits, 4, 1e-300, 7, 3) == 2);
}

int main(void) {
  snprintf(tmp, sizeof tmp, "%s/nnc-text-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(tmp)) {
    perror("mkdtemp");
    return 2;
  }
  test_windows();
  test_entropy();
  test_directory();
  test_errors();
  test_vocab_hex();
  test_sampling();
  remove_tree(tmp);
  return check_summary();
}
