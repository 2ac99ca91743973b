/* The LLVM JIT as an executor backend; see exec_llvm.h. */
#include "driver/exec_llvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/c_program.h"

enum { MAX_PROGRAMS = 8 };

typedef struct jit_lib {
  nnc_cg_llvm_jit *jit;
  char model[256];            /* the model's C identifier, the prefix of every symbol */
  const nnc_compiled *c;
  int (*calls[MAX_PROGRAMS])(const nnc_rt *, const nnc_args *, int64_t);
  nnc_exec_llvm_times times;
} jit_lib;

static void *symbol_of(jit_lib *l, const char *program, const char *suffix) {
  char sym[512];
  snprintf(sym, sizeof sym, "%s_%s%s", l->model, program, suffix);
  return nnc_cg_llvm_jit_sym(l->jit, sym);
}

static nnc_rt_entry jit_symbol(void *lib, const char *program) {
  nnc_rt_entry e = {0};
  *(void **)&e.fn = symbol_of(lib, program, "");
  return e;
}

static void jit_free(void *lib) {
  jit_lib *l = lib;
  nnc_cg_llvm_jit_free(l->jit);
  free(l);
}

static const nnc_rt_backend llvm_backend = {.name = "llvm", .symbol = jit_symbol, .free = jit_free};

/* Every program of c, compiled kernel by kernel (codegen/llvm.h). */
static nnc_cg_llvm_jit *compile(const nnc_compiled *c, const nnc_exec_llvm_opts *o, nnc_diags *d) {
  nnc_lprogram *progs[MAX_PROGRAMS];
  int n = 0;
  for (int i = 0; i < c->nprograms && n < MAX_PROGRAMS; i++) progs[n++] = c->programs[i].lowered;
  nnc_cg_llvm_jit_opts jo = o->jit;
  jo.call_entries = o->call_entries;
  /* the compile takes the cores the steps will: --threads bounds both */
  if (jo.threads <= 0 && o->threads > 0) jo.threads = o->threads;
  return nnc_cg_llvm_jit_model(c->module->name, progs, n, &jo, d);
}

static bool find_calls(jit_lib *l, char *err, size_t cap) {
  for (int i = 0; i < l->c->nprograms && i < MAX_PROGRAMS; i++) {
    *(void **)&l->calls[i] = symbol_of(l, l->c->programs[i].name, "_call");
    if (!l->calls[i]) return snprintf(err, cap, "the compiled model has no calls of %s", l->c->programs[i].name), false;
  }
  return true;
}

nnc_rt_executor *nnc_exec_llvm_new(const nnc_compiled *c, const nnc_exec_llvm_opts *o, char *err, size_t cap) {
  jit_lib *l = nnc_xcalloc(1, sizeof *l);
  l->c = c;
  nnc_cg_c_ident(c->module->name, l->model, sizeof l->model);
  nnc_diags d; /* the executor's channel is err */
  nnc_diags_init_buffer(&d, err, cap);
  l->jit = compile(c, o, &d);
  if (l->jit) l->times.jit = nnc_cg_llvm_jit_timing(l->jit);
  if (!l->jit || (o->call_entries && !find_calls(l, err, cap))) {
    jit_free(l);
    return NULL;
  }
  const char *names[MAX_PROGRAMS];
  int n = 0;
  for (int i = 0; i < c->nprograms && n < MAX_PROGRAMS; i++) names[n++] = c->programs[i].name;
  nnc_rt_executor_opts eo = {.scratch_bytes = c->scratch_bytes, .threads = o->threads, .rt = o->rt,
                             .batch_max = c->module->batch_max};
  return nnc_rt_executor_new(&llvm_backend, l, names, n, &eo, err, cap);
}

nnc_exec_llvm_times nnc_exec_llvm_timing(const nnc_rt_executor *e) {
  return ((const jit_lib *)nnc_rt_executor_lib(e))->times;
}

nnc_cg_llvm_cache_result nnc_exec_llvm_cache_result(const nnc_rt_executor *e) {
  return nnc_cg_llvm_jit_cache_result(((const jit_lib *)nnc_rt_executor_lib(e))->jit);
}

bool nnc_exec_llvm_call(nnc_rt_executor *e, const char *program, int64_t i, uint8_t *persist, uint8_t *io,
                        const nnc_rt_call *call, char *err, size_t cap) {
  jit_lib *l = nnc_rt_executor_lib(e);
  const nnc_compiled_program *p = nnc_compiled_find(l->c, program);
  int k = p ? (int)(p - l->c->programs) : -1;
  if (k < 0 || k >= MAX_PROGRAMS || !l->calls[k] || i < 0 || i >= p->lowered->ncalls || call->n < 1 ||
      call->n > l->c->module->batch_max)
    return snprintf(err, cap, "%s: no kernel call %lld to run alone", program, (long long)i), false;
  nnc_args a = nnc_rt_executor_args(e, persist, io, call);
  int rc = l->calls[k](nnc_rt_executor_rt(e), &a, i);
  if (rc != NNC_ABI_OK) snprintf(err, cap, "%s call %lld returned %d", program, (long long)i, rc);
  return rc == NNC_ABI_OK;
}
