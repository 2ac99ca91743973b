/* --target: the JIT (with the thread pool it runs on) or the interpreter behind one executor. */
#include "driver/executor.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cuda_exec.h"
#include "driver/exec_interp.h"
#include "runtime/pool.h"
#ifdef NNC_WITH_LLVM
#include "codegen/llvm_exec.h"
#endif

double nnc_driver_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *nnc_driver_target(const nnc_options *o) {
  if (o->target && strcmp(o->target, "cuda") == 0) return "cuda"; /* codegen/cuda_exec.h */
  if (o->target && strcmp(o->target, "llvm") != 0) return "interp";
#ifdef NNC_WITH_LLVM
  return "llvm";
#else
  return "interp";
#endif
}

#ifdef NNC_WITH_LLVM
/* The JIT's executor together with the pool its code runs on; the pool outlives the code. */
typedef struct jit_exec {
  nnc_rt_executor base;
  nnc_rt_executor *inner;
  nnc_rt_pool *pool;
  nnc_rt rt;
  int threads;
} jit_exec;

static bool jit_run(nnc_rt_executor *e, const char *program, uint8_t *persist, uint8_t *io, const nnc_rt_call *call,
                    char *err, size_t cap) {
  jit_exec *x = (jit_exec *)e;
  return x->inner->run(x->inner, program, persist, io, call, err, cap);
}

static void jit_destroy(nnc_rt_executor *e) {
  jit_exec *x = (jit_exec *)e;
  if (x->inner) x->inner->destroy(x->inner);
  nnc_rt_pool_free(x->pool);
  free(x);
}

static nnc_rt_executor *jit_new(const nnc_module *m, const nnc_rt_model *rm, const nnc_options *o, char *err,
                                size_t cap) {
  jit_exec *x = nnc_xcalloc(1, sizeof *x);
  x->base = (nnc_rt_executor){.name = "llvm", .run = jit_run, .destroy = jit_destroy};
  x->pool = nnc_rt_pool_new(o->threads);
  if (!x->pool) nnc_oom(sizeof(nnc_rt_pool *));
  x->threads = nnc_rt_pool_threads(x->pool);
  x->rt = nnc_rt_pool_rt(x->pool);
  nnc_llvm_exec_opts eo = {.lower = {.target = NNC_LOWER_CPU, .fuse = !o->no_fusion}, .rt = &x->rt};
  x->inner = nnc_llvm_exec_new(m, rm, &eo, err, cap);
  if (!x->inner) {
    jit_destroy(&x->base);
    return NULL;
  }
  return &x->base;
}

static const char *cache_word(nnc_cg_llvm_cache_result r) {
  switch (r) {
  case NNC_LLVM_CACHE_HIT: return "hit";
  case NNC_LLVM_CACHE_MISS: return "miss, stored";
  case NNC_LLVM_CACHE_CORRUPT: return "corrupt entry, replaced";
  case NNC_LLVM_CACHE_OFF: return "off";
  }
  return "?";
}
#endif

nnc_rt_executor *nnc_driver_executor_new(const nnc_module *m, const nnc_rt_model *rm, const nnc_options *o,
                                         char *err, size_t cap) {
  if (strcmp(nnc_driver_target(o), "cuda") == 0) return nnc_cuda_exec_new(m, rm, err, cap);
#ifdef NNC_WITH_LLVM
  if (strcmp(nnc_driver_target(o), "llvm") == 0) return jit_new(m, rm, o, err, cap);
#else
  (void)err, (void)cap;
#endif
  return nnc_exec_interp_new(m, rm);
}

#ifdef NNC_WITH_LLVM /* only the JIT reports phases */
static void line(FILE *out, const char *what, double s, const char *note) {
  if (s >= 0) fprintf(out, "  %-28s %9.3f s%s%s\n", what, s, note ? "  " : "", note ? note : "");
}
#endif

void nnc_driver_print_compile_times(FILE *out, const nnc_rt_executor *e, nnc_driver_front_times ft) {
#ifdef NNC_WITH_LLVM
  if (strcmp(e->name, "llvm") == 0) {
    const jit_exec *x = (const jit_exec *)e;
    nnc_llvm_exec_times t = nnc_llvm_exec_timing(x->inner);
    nnc_cg_llvm_cache_result c = nnc_llvm_exec_cache_result(x->inner);
    double total = ft.front_s + (ft.passes_s > 0 ? ft.passes_s : 0) + t.lower_s + t.emit_s + t.jit.cache_s +
                   t.jit.optimize_s + t.jit.codegen_s + t.jit.link_s;
    fprintf(out, "compile time (target llvm, %d thread%s):\n", x->threads, x->threads == 1 ? "" : "s");
    line(out, "front end", ft.front_s, "parse, elaborate, autodiff, verify");
    line(out, "graph passes", ft.passes_s, NULL);
    line(out, "lowering and memory plan", t.lower_s, NULL);
    line(out, "LLVM IR", t.emit_s, NULL);
    line(out, "object cache", t.jit.cache_s, cache_word(c));
    line(out, "LLVM optimization", t.jit.optimize_s, NULL);
    line(out, "code generation", t.jit.codegen_s, NULL);
    line(out, "link", t.jit.link_s, NULL);
    line(out, "total", total, NULL);
    return;
  }
#endif
  fprintf(out, "compile time (target %s): front end %.3f s; the interpreter runs the graph as it is\n", e->name,
          ft.front_s);
}
