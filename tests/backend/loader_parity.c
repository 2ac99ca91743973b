/* loader_parity NNC: the emitted model_loader.c (codegen/loader_body.h) against nnc's own
 * checkpoint reader (runtime/checkpoint.c, --load) on the same files: a valid checkpoint,
 * files crafted to break one rule each (duplicate names, overlapping or missing data, text after
 * the header, wrong shapes and dtypes, tensors the model lacks, a directory), every truncation
 * of a checkpoint, and random byte flips. Both must accept or both reject, and a rejected file
 * must leave the emitted loader's weights untouched.
 *
 * The model has a BatchNorm (an i32 state buffer that PyTorch saves as I64), Adam moments and a
 * tied weight: every kind of tensor the loader treats apart. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../unit/check.h"
#include "../unit/model_run.h"
#include "driver/layout.h"
#include "runtime/checkpoint.h"
#include "runtime/safetensors.h"

static const char model_text[] =
    "model tiny(x: f32[B, 2, 2, 2], y: i32[B]) {\n"
    "  layer bn = BatchNorm2d(2)\n"
    "  layer fc = Linear(8, 8)\n"
    "  layer out = Linear(8, 8, bias=false)\n"
    "  out.weight = fc.weight\n"
    "  logits = out(relu(fc(flatten(bn(x)))))\n"
    "  minimize cross_entropy(logits, y)\n"
    "  return logits\n"
    "}\n"
    "train {\n"
    "  optimizer = Adam(lr=1e-3)\n"
    "}\n";

/* The program the loader is built into: loads each file named on the command line into a
 * persist region filled with 0xA5 and prints "accept" or "reject", and whether persist changed. */
static const char driver_text[] =
    "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
    "#include \"model.h\"\n#include \"model_loader.h\"\n"
    "int main(int argc, char **argv) {\n"
    "  static uint8_t persist[TINY_PERSIST_BYTES], before[TINY_PERSIST_BYTES];\n"
    "  for (int i = 1; i < argc; i++) {\n"
    "    char err[512];\n"
    "    memset(persist, 0xA5, sizeof persist);\n"
    "    memcpy(before, persist, sizeof persist);\n"
    "    int rc = tiny_load_weights(argv[i], persist, err, sizeof err);\n"
    "    printf(\"%s %s\\n\", rc == 0 ? \"accept\" : \"reject\",\n"
    "           memcmp(before, persist, sizeof persist) ? \"changed\" : \"unchanged\");\n"
    "  }\n"
    "  return 0;\n"
    "}\n";

static char dir[] = "/tmp/nnc_loader_parity_XXXXXX";
static nnc_compiled *compiled;
static nnc_rt_model *rm;
static uint8_t *persist;
static char good[512];           /* a valid checkpoint of the model */
static unsigned char *good_bytes;
static size_t good_size;

typedef struct file_case {
  char path[512];
  const char *what;
} file_case;

enum { MAX_CASES = 4096 };
static file_case cases[MAX_CASES];
static int ncases;

static bool write_file(const char *path, const void *bytes, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return false;
  bool ok = fwrite(bytes, 1, n, f) == n;
  return fclose(f) == 0 && ok;
}

static unsigned char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc((size_t)len + 1);
  *n = fread(p, 1, (size_t)len, f);
  fclose(f);
  return p;
}

static void add_case(const char *what, const void *bytes, size_t n) {
  if (ncases == MAX_CASES) return;
  file_case *c = &cases[ncases];
  snprintf(c->path, sizeof c->path, "%s/case%d.safetensors", dir, ncases);
  c->what = what;
  if (bytes) CHECK(write_file(c->path, bytes, n));
  ncases++;
}

/* A file of the 8-byte length, header (as given) and data bytes. */
static void add_crafted(const char *what, const char *header, const unsigned char *data, size_t ndata) {
  size_t h = strlen(header);
  unsigned char *img = malloc(8 + h + ndata + 1);
  for (int i = 0; i < 8; i++) img[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(img + 8, header, h);
  if (ndata) memcpy(img + 8 + h, data, ndata);
  add_case(what, img, 8 + h + ndata);
  free(img);
}

/* The valid checkpoint's header text and data, to edit. */
static char *good_header(size_t *len, const unsigned char **data, size_t *ndata) {
  uint64_t h = 0;
  for (int i = 7; i >= 0; i--) h = h << 8 | good_bytes[i];
  *len = (size_t)h;
  char *s = malloc(h + 1);
  memcpy(s, good_bytes + 8, h);
  s[h] = 0;
  *data = good_bytes + 8 + h;
  *ndata = good_size - 8 - (size_t)h;
  return s;
}

/* The good file with its header's first `from` replaced by `to`. */
static void add_edit(const char *what, const char *from, const char *to) {
  size_t len, ndata;
  const unsigned char *data;
  char *h = good_header(&len, &data, &ndata);
  char *at = strstr(h, from);
  CHECK_MSG(at != NULL, "%s: '%s' is not in the header", what, from);
  if (!at) return free(h);
  size_t n = strlen(h) + strlen(to) + 1;
  char *edited = malloc(n);
  snprintf(edited, n, "%.*s%s%s", (int)(at - h), h, to, at + strlen(from));
  add_crafted(what, edited, data, ndata);
  free(edited);
  free(h);
}

static void add_crafted_cases(void) {
  size_t len, ndata;
  const unsigned char *data;
  char *h = good_header(&len, &data, &ndata);
  add_crafted("the checkpoint as written", h, data, ndata);
  char *trailing = malloc(len + 8);
  snprintf(trailing, len + 8, "%s x", h);
  add_crafted("text after the JSON object", trailing, data, ndata);
  free(trailing);
  unsigned char *more = malloc(ndata + 4);
  memcpy(more, data, ndata);
  memset(more + ndata, 0, 4);
  add_crafted("data after the last tensor", h, more, ndata + 4);
  free(more);
  free(h);
  add_edit("a duplicate tensor name", "\"bn.bias\":", "\"bn.weight\":");
  add_edit("a duplicate field in an entry", "\"dtype\":\"F32\",", "\"dtype\":\"F32\",\"dtype\":\"F32\",");
  add_edit("an unknown field in an entry", "\"dtype\":\"F32\",", "\"dtype\":\"F32\",\"x\":1,");
  add_edit("a tensor the model does not have", "\"bn.bias\":", "\"bn.bias2\":");
  add_edit("a moment the model does not have (ignored)", "\"bn.bias.exp_avg\":", "\"bn.bias.momentum_buffer\":");
  add_edit("a wrong dtype", "\"dtype\":\"F32\"", "\"dtype\":\"I32\"");
  add_edit("an unknown dtype", "\"dtype\":\"F32\"", "\"dtype\":\"F33\"");
  add_edit("a non-integer shape", "\"shape\":[2]", "\"shape\":[2.0]");
  add_edit("a negative offset", "\"data_offsets\":[0,", "\"data_offsets\":[-0,");
  add_edit("a leading zero", "\"shape\":[2]", "\"shape\":[02]");
  add_edit("an escaped name", "\"bn.bias\":", "\"bn.\\u0062ias\":");
  add_edit("a non-ASCII escape", "\"bn.bias\":", "\"bn.bi\\u00e9s\":");
  add_edit("a NUL escape", "\"bn.bias\":", "\"bn.bias\\u0000\":");
  add_edit("invalid UTF-8 in a name", "\"bn.bias\":", "\"bn.bias\xff\":");
  add_edit("an overlong UTF-8 form", "\"bn.bias\":", "\"bn.bias\xc0\xaf\":");
  add_edit("a control character in a name", "\"bn.bias\":", "\"bn.bias\t\":");
  add_edit("a metadata value that is not a string", "\"format\":\"pt\"", "\"format\":1");
  add_edit("a duplicate metadata key", "\"format\":\"pt\"", "\"format\":\"pt\",\"format\":\"pt\"");
  add_edit("two metadata objects", "\"__metadata__\":{", "\"__metadata__\":{},\"__metadata__\":{");
  add_edit("a header that is an array", "{", "[");
}

/* Offsets moved by hand: a tensor's end into the next one (overlap), a gap, a swapped pair. */
static void add_layout_cases(void) {
  add_crafted("two tensors that overlap",
              "{\"bn.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"bn.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              (const unsigned char *)"0123456789ab", 12);
  add_crafted("a hole between tensors",
              "{\"bn.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"bn.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
              (const unsigned char *)"0123456789abcdefghij", 20);
  add_crafted("offsets that do not hold the shape",
              "{\"bn.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", (const unsigned char *)"0123", 4);
  add_crafted("offsets past the end", "{\"bn.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
              (const unsigned char *)"0123", 4);
  add_crafted("a header length past the file", "{", NULL, 0);
  add_crafted("an empty header", "", NULL, 0);
  add_case("a file of 3 bytes", "abc", 3);
  add_case("a missing file", NULL, 0);
  file_case *c = &cases[ncases];
  add_case("a directory", NULL, 0);
  CHECK(mkdir(c->path, 0700) == 0);
}

/* The checkpoint with one tensor replaced (dtype, shape and bytes), written by nnc's writer. */
static void add_replaced(const char *what, const char *name, nnc_st_dtype dt, int rank, const int64_t *shape,
                         const void *bytes, size_t nbytes) {
  nnc_st_file f;
  char err[512], path[600];
  CHECK_MSG(nnc_st_read(good, &f, err, sizeof err), "%s", err);
  nnc_st_tensor *t = malloc(sizeof *t * (f.ntensors + 1));
  for (size_t i = 0; i < f.ntensors; i++) {
    t[i] = f.tensors[i];
    if (strcmp(t[i].name, name) == 0)
      t[i] = (nnc_st_tensor){.name = name, .dtype = dt, .rank = rank, .shape = shape, .data = bytes, .nbytes = nbytes};
  }
  snprintf(path, sizeof path, "%s/replaced.safetensors", dir);
  CHECK_MSG(nnc_st_write(path, t, f.ntensors, f.meta, f.nmeta, err, sizeof err), "%s", err);
  size_t n;
  unsigned char *img = read_file(path, &n);
  add_case(what, img, n);
  free(img);
  free(t);
  nnc_st_free(&f);
}

/* num_batches_tracked as PyTorch saves it (I64): accepted when it fits the model's i32; and the
 * tied weight, whose values are its target's, with a wrong shape. */
static void add_replaced_cases(void) {
  int64_t fits = 7, too_big = INT64_C(1) << 32, wrong[2] = {4, 16};
  static float zeros[64];
  add_replaced("an I64 counter that fits", "bn.num_batches_tracked", NNC_ST_I64, 0, NULL, &fits, 8);
  add_replaced("an I64 counter that does not fit", "bn.num_batches_tracked", NNC_ST_I64, 0, NULL, &too_big, 8);
  add_replaced("an F32 counter", "bn.num_batches_tracked", NNC_ST_F32, 0, NULL, zeros, 4);
  add_replaced("a param of the wrong shape", "fc.weight", NNC_ST_F32, 2, wrong, zeros, sizeof zeros);
  add_replaced("a tied weight of the wrong shape", "out.weight", NNC_ST_F32, 2, wrong, zeros, sizeof zeros);
}

/* Every cut of the checkpoint, and random flips of its bytes. */
static void add_damaged_cases(void) {
  for (size_t cut = 0; cut < good_size; cut += good_size / 97 + 1) add_case("a truncated checkpoint", good_bytes, cut);
  unsigned char *img = malloc(good_size);
  uint64_t rng = 0x243f6a8885a308d3ULL;
  for (int round = 0; round < 1500; round++) {
    memcpy(img, good_bytes, good_size);
    for (int k = 0; k < 1 + round % 3; k++) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      /* mostly in the header, where the rules are */
      size_t span = round % 4 ? 8 + (size_t)(good_bytes[0] | good_bytes[1] << 8) : good_size;
      img[(rng >> 33) % (span < good_size ? span : good_size)] = (unsigned char)(rng >> 17);
    }
    add_case("a checkpoint with flipped bytes", img, good_size);
  }
  free(img);
}

/* nnc's verdict on one file, as --load gives it. */
static bool nnc_accepts(const char *path) {
  char err[512];
  nnc_rt_train_state st;
  return nnc_rt_checkpoint_load(path, rm, persist, NNC_RT_LOAD_WEIGHTS, &st, err, sizeof err);
}

static bool sh(const char *cmd) {
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "failed (%d): %s", rc, cmd);
  return rc == 0;
}

/* Builds the emitted loader into a program and runs it over every case; compares. */
static void compare(const char *nnc) {
  char cmd[8192], path[600];
  snprintf(cmd, sizeof cmd, "%s %s/tiny.nn --emit c -o %s/out", nnc, dir, dir);
  if (!sh(cmd)) return;
  snprintf(path, sizeof path, "%s/out/main.c", dir);
  CHECK(write_file(path, driver_text, strlen(driver_text)));
  snprintf(cmd, sizeof cmd, "cc -std=c99 -Wall -Wextra -Werror -O1 -I%s/out %s/out/main.c %s/out/model_loader.c -o %s/load",
           dir, dir, dir, dir);
  if (!sh(cmd)) return;
  snprintf(path, sizeof path, "%s/verdicts", dir);
  FILE *list = NULL;
  int disagree = 0;
  for (int start = 0; start < ncases; start += 256) {
    int n = snprintf(cmd, sizeof cmd, "%s/load", dir);
    for (int i = start; i < ncases && i < start + 256; i++) n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s", cases[i].path + strlen(dir) + 1);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " > %s", path);
    char full[9000];
    snprintf(full, sizeof full, "cd %s && %s", dir, cmd);
    if (!sh(full) || !(list = fopen(path, "r"))) return;
    for (int i = start; i < ncases && i < start + 256; i++) {
      char verdict[16] = "", effect[16] = "";
      CHECK(fscanf(list, "%15s %15s", verdict, effect) == 2);
      bool loader = strcmp(verdict, "accept") == 0, ours = nnc_accepts(cases[i].path);
      if (loader != ours && disagree++ < 20)
        fprintf(stderr, "%s (%s): nnc %s, the emitted loader %s\n", cases[i].what, cases[i].path,
                ours ? "accepts" : "rejects", loader ? "accepts" : "rejects");
      CHECK_MSG(loader || strcmp(effect, "unchanged") == 0, "%s: rejected, but the weights changed", cases[i].what);
      CHECK_MSG(!loader || strcmp(effect, "changed") == 0, "%s: accepted, but no weight was written", cases[i].what);
    }
    fclose(list);
  }
  CHECK_MSG(disagree == 0, "%d of %d files get different verdicts", disagree, ncases);
  int accepted = 0;
  for (int i = 0; i < ncases; i++) accepted += nnc_accepts(cases[i].path);
  printf("%d files, %d accepted by both\n", ncases, accepted);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: loader_parity NNC\n");
    return 2;
  }
  if (!mkdtemp(dir)) return fprintf(stderr, "cannot make a temporary directory\n"), 1;
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/tiny.nn", dir);
  CHECK(write_file(path, model_text, strlen(model_text)));
  nnc_options o = mr_default_options();
  nnc_source src;
  nnc_module *m = mr_compile(path, &o, true, &src, stderr);
  CHECK(m != NULL);
  if (!m) return check_summary();
  nnc_pipeline_opts po = {.train = true, .last = NNC_STAGE_PLAN};
  compiled = mr_pipeline(m, &po, stderr);
  CHECK(compiled != NULL);
  if (!compiled) return check_summary();
  rm = nnc_layout_model(compiled);
  persist = nnc_xcalloc(1, rm->persist_bytes + 1);
  nnc_layout_init_params(m, rm, 1, persist);
  snprintf(good, sizeof good, "%s/good.safetensors", dir);
  nnc_rt_train_state st = {.batch = 64};
  CHECK_MSG(nnc_rt_checkpoint_save(good, rm, persist, &st, err, sizeof err), "%s", err);
  good_bytes = read_file(good, &good_size);
  add_crafted_cases();
  add_layout_cases();
  add_replaced_cases();
  add_damaged_cases();
  compare(argv[1]);
  free(good_bytes);
  free(persist);
  nnc_layout_free(rm);
  nnc_compiled_free(compiled);
  nnc_module_free(m);
  nnc_source_free(&src);
  snprintf(path, sizeof path, "rm -rf %s", dir);
  if (system(path) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_summary();
}
