/* --target: the JIT, CUDA or the interpreter behind the executor core. */
#include "driver/executor.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver/exec_cuda.h"
#include "driver/exec_interp.h"
#include "runtime/pool.h"
#ifdef NNC_WITH_LLVM
#include "driver/exec_llvm.h"
#endif

double nnc_driver_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *nnc_driver_target(const nnc_options *o) {
  if (o->target && strcmp(o->target, "cuda") == 0) return "cuda";
  if (o->target && strcmp(o->target, "llvm") != 0) return "interp";
#ifdef NNC_WITH_LLVM
  return "llvm";
#else
  return "interp";
#endif
}

nnc_pipeline_opts nnc_driver_target_pipeline(const nnc_options *o) {
  const char *t = nnc_driver_target(o);
  bool gpu = strcmp(t, "cuda") == 0;
  nnc_pipeline_opts p = nnc_pipeline_defaults(gpu ? NNC_LOWER_GPU : NNC_LOWER_CPU);
  p.passes = o->passes;
  p.no_fusion = o->no_fusion || gpu;
  if (strcmp(t, "interp") == 0) p.last = NNC_STAGE_PLAN;
  return p;
}

nnc_rt_executor *nnc_driver_executor_new(const nnc_compiled *c, const nnc_rt_model *rm, const nnc_options *o,
                                         char *err, size_t cap) {
  const char *t = nnc_driver_target(o);
  if (strcmp(t, "cuda") == 0) return nnc_exec_cuda_new(c, rm, err, cap);
#ifdef NNC_WITH_LLVM
  if (strcmp(t, "llvm") == 0) {
    nnc_exec_llvm_opts eo = {.threads = o->threads > 0 ? o->threads : nnc_rt_pool_default_threads()};
    return nnc_exec_llvm_new(c, &eo, err, cap);
  }
#else
  (void)err, (void)cap;
#endif
  return nnc_exec_interp_new(c->module, rm);
}

static void line(FILE *out, const char *what, double s, const char *note) {
  if (s >= 0) fprintf(out, "  %-28s %9.3f s%s%s\n", what, s, note ? "  " : "", note ? note : "");
}

/* The pipeline's stages, as ran. */
static double print_stages(FILE *out, const nnc_compiled *c) {
  double total = 0;
  for (int s = 0; s < c->stages; s++) {
    line(out, nnc_stage_name((nnc_stage)s), c->seconds[s], NULL);
    total += c->seconds[s];
  }
  return total;
}

#ifdef NNC_WITH_LLVM
static const char *cache_word(nnc_cg_llvm_cache_result r) {
  switch (r) {
  case NNC_LLVM_CACHE_HIT: return "hit";
  case NNC_LLVM_CACHE_MISS: return "miss, stored";
  case NNC_LLVM_CACHE_CORRUPT: return "corrupt entry, replaced";
  case NNC_LLVM_CACHE_OFF: return "off";
  }
  return "?";
}

/* The JIT compiles kernels on several threads: its phases are CPU seconds summed over them,
 * and the wall-clock time of all of them is what the total counts. */
static double print_llvm_phases(FILE *out, const nnc_rt_executor *e) {
  nnc_cg_llvm_jit_times t = nnc_exec_llvm_timing(e).jit;
  char what[160];
  line(out, "LLVM IR", t.ir_s, NULL);
  snprintf(what, sizeof what, "%s: %d kernels, %d from the cache, %d compiled",
           cache_word(nnc_exec_llvm_cache_result(e)), t.kernels, t.hits, t.compiled);
  line(out, "object cache", t.cache_s, what);
  line(out, "LLVM optimization", t.optimize_s, NULL);
  line(out, "code generation", t.codegen_s, NULL);
  snprintf(what, sizeof what, "the four above on %d thread%s", t.threads, t.threads == 1 ? "" : "s");
  line(out, "kernels, wall clock", t.wall_s, what);
  line(out, "link", t.link_s, NULL);
  return t.wall_s + t.link_s;
}
#endif

void nnc_driver_print_compile_times(FILE *out, const nnc_compiled *c, const nnc_rt_executor *e,
                                    nnc_driver_front_times ft) {
  const char *backend = nnc_rt_executor_backend(e);
  int threads = nnc_rt_executor_threads(e);
  fprintf(out, "compile time (target %s, %d thread%s):\n", backend, threads, threads == 1 ? "" : "s");
  line(out, "front end", ft.front_s, "parse, elaborate, verify");
  double total = ft.front_s + print_stages(out, c);
#ifdef NNC_WITH_LLVM
  if (strcmp(backend, "llvm") == 0) total += print_llvm_phases(out, e);
#endif
  line(out, "total", total, strcmp(backend, "interp") == 0 ? "the interpreter runs the graphs as they are" : NULL);
}
