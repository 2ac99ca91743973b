/* backend_llvm MODEL: a model's programs through the LLVM backend (one module, ORC JIT) against
 * the reference interpreter. Both run behind the executor interface over their own copies of the
 * same regions: predict, eval_step and 5 train_steps, at n = B_max = 8 and at n = 3, compared
 * with rtol 1e-5 forward and 1e-4 once training has run (atol scaled to each tensor), the worst
 * element reported. Then once more with scalar loops and a 2-thread parallel_for. The object
 * cache is a fresh directory: the first build misses, a second build of the same model hits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/check.h"
#include "../unit/model_run.h"
#include "codegen/llvm_exec.h"
#include "driver/exec_interp.h"
#include "driver/layout.h"
#include "ir/compare.h"
#include "runtime/pool.h"

enum { BATCH = 8, TRAIN_STEPS = 5 };

static uint8_t *region(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) abort();
  memset(p, 0, bytes ? bytes : 64);
  return p;
}

static uint32_t next(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return (uint32_t)(*s >> 33);
}

/* Inputs: pixels as random bytes or floats, labels in [0, 10) (or 0/1 for f32 targets). */
static void fill_inputs(const nnc_rt_model *rm, uint8_t *io) {
  uint64_t s = 42;
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (b->kind != NNC_RT_INPUT) continue;
    int64_t count = nnc_rt_buffer_elements(b, rm->batch_max);
    bool label = strcmp(b->name, "y") == 0;
    for (int64_t k = 0; k < count; k++) {
      uint8_t *p = io + b->offset;
      if (b->dtype == NNC_RT_U8) p[k] = (uint8_t)next(&s);
      else if (b->dtype == NNC_RT_I32) ((int32_t *)p)[k] = (int32_t)(next(&s) % 10);
      else ((float *)p)[k] = label ? (float)(next(&s) & 1) : (float)(next(&s) % 2000) / 1000.0f - 1.0f;
    }
  }
}

static double max_abs(const nnc_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < nnc_tensor_elements(t); i++) m = fmax(m, fabs(nnc_tensor_get(t, i)));
  return m;
}

/* Compares every buffer of kind `kind` (outputs in io, or all of persist). */
static void compare_region(const nnc_rt_model *rm, bool persist, const uint8_t *got, const uint8_t *ref, int64_t n,
                           double rtol, const char *what) {
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (persist ? b->region != NNC_RT_PERSIST : b->kind != NNC_RT_OUTPUT) continue;
    nnc_tensor tg = {.type = nnc_layout_buffer_type(b), .n = n, .data = (void *)(got + b->offset)};
    nnc_tensor tr = tg;
    tr.data = (void *)(ref + b->offset);
    double atol = rtol * fmax(max_abs(&tr), 1e-3);
    nnc_compare_result r = nnc_compare_tensors(&tg, &tr, atol, rtol);
    char msg[512];
    CHECK_MSG(r.ok, "%s: %s: %s", what, b->name, nnc_compare_str(&r, tr.type.dims, tr.type.rank, msg, sizeof msg));
  }
}

static bool run(nnc_rt_executor *e, const char *prog, uint8_t *p, uint8_t *io, const nnc_rt_call *c) {
  char err[512];
  bool ok = e->run(e, prog, p, io, c, err, sizeof err);
  CHECK_MSG(ok, "%s %s: %s", e->name, prog, err);
  return ok;
}

/* One comparison session at batch n; train_steps of training. */
static void session(const nnc_module *m, const nnc_rt_model *rm, nnc_rt_executor *ref, nnc_rt_executor *c,
                    const uint8_t *persist0, const uint8_t *io0, int64_t n, int train_steps, const char *tag) {
  uint8_t *pr = region(rm->persist_bytes), *pc = region(rm->persist_bytes);
  uint8_t *ior = region(rm->io_bytes), *ioc = region(rm->io_bytes);
  memcpy(pr, persist0, rm->persist_bytes), memcpy(pc, persist0, rm->persist_bytes);
  memcpy(ior, io0, rm->io_bytes), memcpy(ioc, io0, rm->io_bytes);
  nnc_rt_call call = {.n = n, .lr = (float)(m->train.lr > 0 ? m->train.lr : 1e-3), .step = 0, .seed = 7};
  char what[128];
  const char *fwd[] = {"predict", "eval_step"};
  for (int k = 0; k < 2; k++) {
    if ((k == 0 && !rm->has_predict) || (k == 1 && !rm->has_eval_step)) continue;
    if (!run(ref, fwd[k], pr, ior, &call) || !run(c, fwd[k], pc, ioc, &call)) break;
    snprintf(what, sizeof what, "%s %s n=%lld", tag, fwd[k], (long long)n);
    compare_region(rm, false, ioc, ior, n, 1e-5, what);
  }
  for (int s = 0; rm->has_train_step && s < train_steps; s++) {
    call.step = s;
    if (!run(ref, "train_step", pr, ior, &call) || !run(c, "train_step", pc, ioc, &call)) break;
    snprintf(what, sizeof what, "%s train_step %d n=%lld", tag, s, (long long)n);
    compare_region(rm, false, ioc, ior, n, 1e-4, what);
  }
  snprintf(what, sizeof what, "%s persist after %d steps n=%lld", tag, train_steps, (long long)n);
  compare_region(rm, true, pc, pr, n, 1e-4, what);
  free(pr), free(pc), free(ior), free(ioc);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: backend_llvm MODEL\n");
    return 2;
  }
  nnc_options o = mr_default_options();
  o.batch = BATCH;
  char path[256], err[1024];
  snprintf(path, sizeof path, "models/%s.nn", argv[1]);
  nnc_source src;
  nnc_module *m = mr_compile(path, &o, true, &src, stderr);
  CHECK_MSG(m != NULL, "%s does not compile", path);
  if (!m) return check_summary();
  nnc_rt_model *rm = nnc_layout_model(m, err, sizeof err);
  CHECK_MSG(rm != NULL, "%s", err);
  uint8_t *persist0 = region(rm->persist_bytes), *io0 = region(rm->io_bytes);
  nnc_layout_init_params(m, rm, 1, persist0);
  fill_inputs(rm, io0);
  nnc_rt_executor *ref = nnc_exec_interp_new(m, rm);
  char cache[] = "/tmp/nnc_backend_llvm_XXXXXX";
  CHECK(mkdtemp(cache) != NULL);
  nnc_rt_pool *pool = nnc_rt_pool_new(2);
  nnc_rt rt2 = nnc_rt_pool_rt(pool);
  const nnc_llvm_exec_opts variants[] = {
      {.lower = {.target = NNC_LOWER_CPU}, .jit = {.cache_dir = cache}},
      {.lower = {.target = NNC_LOWER_CPU, .lanes = 1}, .rt = &rt2, .jit = {.cache_dir = cache}}};
  const char *tags[] = {"llvm", "llvm-scalar-2threads"};
  for (int v = 0; v < 2; v++) {
    nnc_rt_executor *c = nnc_llvm_exec_new(m, rm, &variants[v], err, sizeof err);
    CHECK_MSG(c != NULL, "%s: %s", tags[v], err);
    if (!c) continue;
    CHECK_MSG(nnc_llvm_exec_cache_result(c) == NNC_LLVM_CACHE_MISS, "%s: a fresh cache: %d", tags[v],
              (int)nnc_llvm_exec_cache_result(c));
    session(m, rm, ref, c, persist0, io0, BATCH, v == 0 ? TRAIN_STEPS : 1, tags[v]);
    session(m, rm, ref, c, persist0, io0, 3, v == 0 ? TRAIN_STEPS : 1, tags[v]);
    c->destroy(c);
  }
  /* the same model again: the object comes from the cache and computes the same */
  nnc_rt_executor *c = nnc_llvm_exec_new(m, rm, &variants[0], err, sizeof err);
  CHECK_MSG(c != NULL, "cached: %s", err);
  if (c) {
    CHECK_MSG(nnc_llvm_exec_cache_result(c) == NNC_LLVM_CACHE_HIT, "second build: %d", (int)nnc_llvm_exec_cache_result(c));
    session(m, rm, ref, c, persist0, io0, BATCH, 1, "llvm-cached");
    c->destroy(c);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cache);
  ref->destroy(ref);
  nnc_rt_pool_free(pool);
  free(persist0), free(io0);
  nnc_layout_free(rm);
  nnc_module_free(m);
  nnc_source_free(&src);
  return check_summary();
}
