/* backend_llvm MODEL: a model's programs through the LLVM backend (one module, ORC JIT) against
 * the reference interpreter. Both run behind the executor interface over their own copies of the
 * same regions: predict, eval_step and 5 train_steps, at n = B_max = 8 and at n = 3, compared
 * with rtol 1e-5 forward and 1e-4 once training has run (atol scaled to each tensor), the worst
 * element reported. Params after Adam steps take tests/torch/test_parity.py's rule, atol 0.01 * lr:
 * Adam divides a gradient by its RMS, so a gradient that cancels to rounding noise becomes a step
 * of about lr whichever way it rounds. Then once more with scalar loops and the runtime's pool at
 * 2 threads. The object cache is a fresh directory: the first build misses, a second build of the
 * same model hits. The sequence models run at T = 8, B_max = 4 and n = 2 (their programs unroll
 * over T: the same code paths, a module eight times smaller), tiny_gpt with 2 blocks of 4. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../unit/check.h"
#include "../unit/model_run.h"
#include "driver/exec_llvm.h"
#include "driver/exec_interp.h"
#include "driver/layout.h"
#include "ir/compare.h"
#include "passes/programs.h"
#include "runtime/pool.h"

#include "backend_common.h"

enum { BATCH = 8, SMALL_N = 3, SEQ_BATCH = 4, SEQ_SMALL_N = 2, TRAIN_STEPS = 5 };

/* The atol of params after Adam steps (test_parity.py's adam_lr), as a multiple of lr. */
static const double ADAM_PARAM_ATOL = 0.01;

/* Compares every buffer of kind `kind` (outputs in io, or all of persist). */
/* --- the F64 reference: backend_c.c's rule for results after training --------------------------
 * A persist buffer that misses its tolerance after training gets one more chance: its tolerance
 * at each element is widened by twice the F32 interpreter's own error there against the F64
 * interpreter (what rounding alone explains; tests/backend/backend_c.c tells where it grows). */

static int storage_of(const nnc_rt_model *rm, int i) { return rm->buffers[i].tied_to >= 0 ? rm->buffers[i].tied_to : i; }

/* Replays programs[0..nruns) in the F64 interpreter from persist0/io0; returns every buffer's
 * tensor afterwards (f32 ones wide), NULL after a failed check. */
static nnc_tensor *f64_replay(const nnc_module *m, const nnc_rt_model *rm, const uint8_t *persist0, const uint8_t *io0,
                              int64_t n, const char *const *programs, const nnc_rt_call *calls, int nruns) {
  nnc_tensor *t = nnc_xcalloc((size_t)rm->nbuffers + 1, sizeof *t);
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (b->tied_to >= 0) continue;
    t[i] = nnc_tensor_alloc(nnc_layout_buffer_type(b), n, b->dtype == NNC_RT_F32);
    const uint8_t *src = (b->region == NNC_RT_PERSIST ? persist0 : io0) + b->offset;
    int64_t count = nnc_tensor_elements(&t[i]);
    if (t[i].wide)
      for (int64_t k = 0; k < count; k++) ((double *)t[i].data)[k] = ((const float *)src)[k];
    else
      memcpy(t[i].data, src, (size_t)count * nnc_tensor_elem_size(&t[i]));
  }
  int nb = rm->nbuffers + 3;
  nnc_interp_binding *bind = nnc_xcalloc((size_t)nb, sizeof *bind);
  bool ok = true;
  for (int k = 0; ok && k < nruns; k++) {
    float lr = calls[k].lr;
    int32_t step = calls[k].step, seed = (int32_t)calls[k].seed;
    nnc_tensor scalars[3] = {{.type = nnc_type_scalar(NNC_F32), .n = 1, .data = &lr},
                             {.type = nnc_type_scalar(NNC_I32), .n = 1, .data = &step},
                             {.type = nnc_type_scalar(NNC_I32), .n = 1, .data = &seed}};
    for (int i = 0; i < rm->nbuffers; i++) bind[i] = (nnc_interp_binding){rm->buffers[i].name, &t[storage_of(rm, i)]};
    bind[rm->nbuffers] = (nnc_interp_binding){"lr", &scalars[0]};
    bind[rm->nbuffers + 1] = (nnc_interp_binding){"step", &scalars[1]};
    bind[rm->nbuffers + 2] = (nnc_interp_binding){"seed", &scalars[2]};
    const nnc_graph *g = nnc_module_find_program(m, programs[k]);
    nnc_tensor *outs = nnc_xcalloc((size_t)g->noutputs + 1, sizeof *outs);
    nnc_tensor *states = nnc_xcalloc((size_t)g->nstate + 1, sizeof *states);
    nnc_interp_env env = {.n = n, .bindings = bind, .nbindings = nb};
    char err[512];
    ok = nnc_interp_run(m, g, NNC_INTERP_F64, &env, outs, states, err, sizeof err);
    CHECK_MSG(ok, "F64 interpreter, %s: %s", programs[k], err);
    for (int i = 0; ok && i < g->nstate; i++) {
      const nnc_rt_buffer *b = nnc_rt_model_buffer(rm, g->state_outputs[i].name);
      int bi = b ? storage_of(rm, (int)(b - rm->buffers)) : -1;
      if (bi < 0) continue;
      nnc_tensor_free(&t[bi]);
      t[bi] = states[i], states[i] = (nnc_tensor){0};
    }
    for (int i = 0; i < g->noutputs; i++) nnc_tensor_free(&outs[i]);
    for (int i = 0; i < g->nstate; i++) nnc_tensor_free(&states[i]);
    free(outs), free(states);
  }
  free(bind);
  if (ok) return t;
  for (int i = 0; i < rm->nbuffers; i++) nnc_tensor_free(&t[i]);
  free(t);
  return NULL;
}

/* |a - b| <= atol + 2 |b - b64| + rtol |b| at each element, reported like nnc_compare_tensors.
 * Where the F64 reference never left the initial value b0 although the F32 run moved (a gradient
 * that is zero in exact arithmetic, as the key bias of attention: softmax ignores a constant per
 * row), Adam turned rounding noise into steps of up to lr each: there the tolerance is
 * noise_atol (the session's steps x lr; 0: no such rule). */
static nnc_compare_result compare_widened(const nnc_tensor *a, const nnc_tensor *b, const nnc_tensor *b64,
                                          const nnc_tensor *b0, double noise_atol, double atol, double rtol) {
  nnc_compare_result r = {.ok = true, .count = nnc_tensor_elements(b), .worst = -1, .atol = atol, .rtol = rtol};
  double worst_ratio = 0;
  for (int64_t i = 0; i < r.count; i++) {
    double x = nnc_tensor_get(a, i), y = nnc_tensor_get(b, i), y64 = nnc_tensor_get(b64, i);
    double err = fabs(x - y), tol = atol + 2 * fabs(y - y64) + rtol * fabs(y);
    if (noise_atol > 0 && b0 && fabs(y64 - nnc_tensor_get(b0, i)) <= 1e-3 * noise_atol) tol = fmax(tol, noise_atol);
    if (isfinite(err)) r.max_abs_err = fmax(r.max_abs_err, err);
    if (err <= tol) continue;
    r.ok = false, r.nbad++;
    double ratio = isfinite(err) ? err / tol : INFINITY;
    if (r.worst < 0 || ratio > worst_ratio)
      worst_ratio = ratio, r.worst = i, r.worst_a = x, r.worst_b = y, r.worst_err = err, r.worst_tol = tol;
  }
  return r;
}

/* What a session ran, for the F64 replay. */
typedef struct replay {
  const nnc_module *m;
  const uint8_t *persist0, *io0;
  int64_t n;
  const char *programs[16];
  nnc_rt_call calls[16];
  int nruns;
  nnc_tensor *f64;            /* made when first needed */
} replay;

/* param_atol > 0: the atol of trained params (Adam's rule above); rp: the session, whose F64 replay
 * widens a persist miss (NULL: no second chance). */
static void compare_region(const nnc_rt_model *rm, bool persist, const uint8_t *got, const uint8_t *ref, int64_t n,
                           double rtol, double param_atol, replay *rp, const char *what) {
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (persist ? b->region != NNC_RT_PERSIST : b->kind != NNC_RT_OUTPUT) continue;
    nnc_tensor tg = {.type = nnc_layout_buffer_type(b), .n = n, .data = (void *)(got + b->offset)};
    nnc_tensor tr = tg;
    tr.data = (void *)(ref + b->offset);
    double atol = rtol * fmax(max_abs(&tr), 1e-3);
    if (param_atol > 0 && b->kind == NNC_RT_PARAM && !b->frozen) atol = fmax(atol, param_atol);
    nnc_compare_result r = nnc_compare_tensors(&tg, &tr, atol, rtol);
    bool widened = false;
    if (!r.ok && persist && rp) {
      if (!rp->f64) rp->f64 = f64_replay(rp->m, rm, rp->persist0, rp->io0, n, rp->programs, rp->calls, rp->nruns);
      nnc_tensor t0 = tg;
      t0.data = (void *)(rp->persist0 + b->offset);
      int steps = 0;
      for (int k = 0; k < rp->nruns; k++) steps += strcmp(rp->programs[k], "train_step") == 0;
      double noise_atol = param_atol > 0 && b->kind == NNC_RT_PARAM ? steps * rp->calls[0].lr : 0;
      if (rp->f64)
        r = compare_widened(&tg, &tr, &rp->f64[storage_of(rm, i)], &t0, noise_atol, atol, rtol), widened = true;
    }
    char msg[512];
    CHECK_MSG(r.ok, "%s: %s: %s%s", what, b->name, nnc_compare_str(&r, tr.type.dims, tr.type.rank, msg, sizeof msg),
              widened ? " (atol widened by twice the reference's f32 error)" : "");
    if (r.ok && widened) printf("%s: %s: passes once widened by the reference's own f32 error\n", what, b->name);
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
  replay rp = {.m = m, .persist0 = persist0, .io0 = io0, .n = n};
  char what[128];
  const char *fwd[] = {"predict", "eval_step"};
  for (int k = 0; k < 2; k++) {
    if ((k == 0 && !rm->has_predict) || (k == 1 && !rm->has_eval_step)) continue;
    if (!run(ref, fwd[k], pr, ior, &call) || !run(c, fwd[k], pc, ioc, &call)) break;
    snprintf(what, sizeof what, "%s %s n=%lld", tag, fwd[k], (long long)n);
    compare_region(rm, false, ioc, ior, n, 1e-5, 0, NULL, what);
    rp.programs[rp.nruns] = fwd[k], rp.calls[rp.nruns++] = call;
  }
  for (int s = 0; rm->has_train_step && s < train_steps && rp.nruns < 16; s++) {
    call.step = s;
    if (!run(ref, "train_step", pr, ior, &call) || !run(c, "train_step", pc, ioc, &call)) break;
    snprintf(what, sizeof what, "%s train_step %d n=%lld", tag, s, (long long)n);
    compare_region(rm, false, ioc, ior, n, 1e-4, 0, NULL, what);
    rp.programs[rp.nruns] = "train_step", rp.calls[rp.nruns++] = call;
  }
  const char *opt = m->train.optimizer ? m->train.optimizer : "";
  bool adam = strcasecmp(opt, "Adam") == 0 || strcasecmp(opt, "AdamW") == 0;
  snprintf(what, sizeof what, "%s persist after %d steps n=%lld", tag, train_steps, (long long)n);
  compare_region(rm, true, pc, pr, n, 1e-4, adam ? ADAM_PARAM_ATOL * call.lr : 0, &rp, what);
  for (int i = 0; rp.f64 && i < rm->nbuffers; i++) nnc_tensor_free(&rp.f64[i]);
  free(rp.f64);
  free(pr), free(pc), free(ior), free(ioc);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: backend_llvm MODEL\n");
    return 2;
  }
  nnc_options o = mr_default_options();
  bool seq = is_sequence_model(argv[1]);
  o.batch = seq ? SEQ_BATCH : BATCH;
  shorten_sequence_model(argv[1], &o);
  int64_t small_n = seq ? SEQ_SMALL_N : SMALL_N;
  char path[256], err[1024];
  model_file(argv[1], path, sizeof path);
  nnc_source src;
  nnc_module *m = mr_compile(path, &o, true, &src, stderr);
  CHECK_MSG(m != NULL, "%s does not compile", path);
  if (!m) return check_summary();
  /* as --train compiles (fused, the host's lanes), and one kernel per node in scalar code */
  nnc_pipeline_opts popts[2] = {nnc_pipeline_defaults(NNC_LOWER_CPU), nnc_pipeline_defaults(NNC_LOWER_CPU)};
  popts[1].no_fusion = true;
  popts[1].lower.lanes = 1;
  nnc_compiled *compiled[2] = {mr_pipeline(m, &popts[0], stderr), mr_pipeline(m, &popts[1], stderr)};
  CHECK(compiled[0] && compiled[1]);
  if (!compiled[0] || !compiled[1]) return check_summary();
  nnc_rt_model *rm = nnc_layout_model(compiled[0]);
  uint8_t *persist0 = region(rm->persist_bytes), *io0 = region(rm->io_bytes);
  nnc_layout_init_params(m, rm, 1, persist0);
  fill_inputs(rm, io0);
  nnc_rt_executor *ref = nnc_exec_interp_new(m, rm);
  char cache[] = "/tmp/nnc_backend_llvm_XXXXXX";
  CHECK(mkdtemp(cache) != NULL);
  const nnc_exec_llvm_opts variants[] = {{.threads = 1, .jit = {.cache_dir = cache}},
                                         {.threads = 2, .jit = {.cache_dir = cache}}};
  const char *tags[] = {"llvm", "llvm-unfused-scalar-2threads"};
  for (int v = 0; v < 2; v++) {
    nnc_rt_executor *c = nnc_exec_llvm_new(compiled[v], &variants[v], err, sizeof err);
    CHECK_MSG(c != NULL, "%s: %s", tags[v], err);
    if (!c) continue;
    CHECK_MSG(nnc_exec_llvm_cache_result(c) == NNC_LLVM_CACHE_MISS, "%s: a fresh cache: %d", tags[v],
              (int)nnc_exec_llvm_cache_result(c));
    session(m, rm, ref, c, persist0, io0, o.batch, v == 0 ? TRAIN_STEPS : 1, tags[v]);
    session(m, rm, ref, c, persist0, io0, small_n, v == 0 ? TRAIN_STEPS : 1, tags[v]);
    c->destroy(c);
  }
  /* the same model again: the object comes from the cache and computes the same */
  nnc_rt_executor *c = nnc_exec_llvm_new(compiled[0], &variants[0], err, sizeof err);
  CHECK_MSG(c != NULL, "cached: %s", err);
  if (c) {
    CHECK_MSG(nnc_exec_llvm_cache_result(c) == NNC_LLVM_CACHE_HIT, "second build: %d", (int)nnc_exec_llvm_cache_result(c));
    session(m, rm, ref, c, persist0, io0, o.batch, 1, "llvm-cached");
    c->destroy(c);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cache);
  ref->destroy(ref);
  free(persist0), free(io0);
  nnc_layout_free(rm);
  for (int v = 0; v < 2; v++) nnc_compiled_free(compiled[v]);
  nnc_module_free(m);
  nnc_source_free(&src);
  return check_summary();
}
