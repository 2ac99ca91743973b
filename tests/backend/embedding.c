/* embedding NNC: the program of docs/embedding.md, taken from the page (its only ```c block),
 * built against `nnc models/fashion_mlp.nn --emit c` with cc -std=c99 -Wall -Wextra -Werror
 * -O2, run on its synthetic image; its argmax and logits must match the interpreter's predict
 * of the same image with the same initial weights (rtol 1e-5, atol scaled to the logits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../unit/check.h"
#include "../unit/model_run.h"
#include "driver/exec_interp.h"
#include "driver/layout.h"
#include "ir/compare.h"

enum { NCLASSES = 10 };

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = nnc_xmalloc((size_t)len + 1);
  size_t got = fread(s, 1, (size_t)len, f);
  fclose(f);
  s[got] = 0;
  return s;
}

/* The text between "```c\n" and the next "```" line, written to path. */
static bool extract_program(const char *md, const char *path) {
  const char *start = strstr(md, "\n```c\n");
  if (!start) return false;
  start += 6;
  const char *end = strstr(start, "\n```");
  if (!end || strstr(end + 4, "\n```c\n")) return false; /* exactly one C block */
  FILE *f = fopen(path, "w");
  if (!f) return false;
  fwrite(start, 1, (size_t)(end - start + 1), f);
  return fclose(f) == 0;
}

static bool sh(const char *cmd) {
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "failed (%d): %s", rc, cmd);
  return rc == 0;
}

/* Reads "argmax K" and "logits v0 .. v9" from the program's output. */
static bool parse_output(const char *path, int *argmax, float *logits) {
  FILE *f = fopen(path, "r");
  if (!f) return false;
  bool ok = fscanf(f, "argmax %d logits", argmax) == 1;
  for (int k = 0; ok && k < NCLASSES; k++) ok = fscanf(f, "%f", &logits[k]) == 1;
  fclose(f);
  return ok;
}

/* The interpreter's predict of the page's synthetic image, from the emitted initial weights. */
static bool reference_logits(float *logits) {
  nnc_options o = mr_default_options();
  nnc_source src;
  nnc_module *m = mr_compile("models/fashion_mlp.nn", &o, true, &src, stderr);
  CHECK(m != NULL);
  if (!m) return false;
  char err[512];
  nnc_pipeline_opts po = {.train = true, .last = NNC_STAGE_PLAN}; /* the layout the interpreter runs over */
  nnc_compiled *c = mr_pipeline(m, &po, stderr);
  CHECK(c != NULL);
  if (!c) return false;
  nnc_rt_model *rm = nnc_layout_model(c);
  uint8_t *persist = nnc_xcalloc(1, rm->persist_bytes + 1), *io = nnc_xcalloc(1, rm->io_bytes + 1);
  nnc_layout_init_params(m, rm, (uint32_t)m->train.seed, persist); /* what --emit c writes */
  uint8_t *x = io + nnc_rt_model_buffer(rm, "x")->offset;
  for (int i = 0; i < 28 * 28; i++) x[i] = (uint8_t)((37 * i + 11) % 256);
  nnc_rt_executor *ref = nnc_exec_interp_new(m, rm);
  nnc_rt_call call = {.n = 1};
  bool ok = ref->run(ref, "predict", persist, io, &call, err, sizeof err);
  CHECK_MSG(ok, "interpreter predict: %s", err);
  if (ok) memcpy(logits, io + nnc_rt_model_buffer(rm, "logits")->offset, sizeof(float) * NCLASSES);
  ref->destroy(ref);
  free(persist), free(io);
  nnc_layout_free(rm);
  nnc_compiled_free(c);
  nnc_module_free(m);
  nnc_source_free(&src);
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: embedding NNC (run in the source directory)\n");
    return 2;
  }
  char dir[] = "/tmp/nnc_embedding_XXXXXX", cmd[4096], path[256];
  if (!mkdtemp(dir)) return fprintf(stderr, "cannot make a temporary directory\n"), 1;
  char *md = read_text("docs/embedding.md");
  CHECK_MSG(md != NULL, "cannot read docs/embedding.md");
  snprintf(path, sizeof path, "%s/embed.c", dir);
  bool ok = md && extract_program(md, path);
  CHECK_MSG(ok, "docs/embedding.md has no single ```c block");
  free(md);
  snprintf(cmd, sizeof cmd, "%s models/fashion_mlp.nn --emit c -o %s/out", argv[1], dir);
  ok = ok && sh(cmd);
  snprintf(cmd, sizeof cmd,
           "cc -std=c99 -Wall -Wextra -Werror -O2 -I%s/out %s/embed.c %s/out/model.c %s/out/model_loader.c -o %s/embed -lm",
           dir, dir, dir, dir, dir);
  ok = ok && sh(cmd);
  snprintf(cmd, sizeof cmd, "%s/embed %s/out/weights.safetensors > %s/stdout", dir, dir, dir);
  ok = ok && sh(cmd);
  int argmax = -1;
  float got[NCLASSES], want[NCLASSES];
  snprintf(path, sizeof path, "%s/stdout", dir);
  if (ok) {
    ok = parse_output(path, &argmax, got);
    CHECK_MSG(ok, "the program printed no argmax and 10 logits");
  }
  if (ok && reference_logits(want)) {
    double m = 0;
    int best = 0;
    for (int k = 0; k < NCLASSES; k++) {
      m = fmax(m, fabs(want[k]));
      if (want[k] > want[best]) best = k;
    }
    nnc_compare_result r = nnc_compare_f64((double[NCLASSES]){got[0], got[1], got[2], got[3], got[4], got[5], got[6], got[7], got[8], got[9]},
                                           (double[NCLASSES]){want[0], want[1], want[2], want[3], want[4], want[5], want[6], want[7], want[8], want[9]},
                                           NCLASSES, 1e-5 * fmax(m, 1e-3), 1e-5);
    char msg[512];
    CHECK_MSG(r.ok, "logits: %s", nnc_compare_str(&r, NULL, 0, msg, sizeof msg));
    CHECK_MSG(argmax == best, "argmax %d, the interpreter's %d", argmax, best);
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_summary();
}
