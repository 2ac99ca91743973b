/* The LLVM backend behind the executor interface: lower, emit one module, JIT, call. */
#include "codegen/llvm_exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/c_program.h"
#include "runtime/abi.h"

enum { MAX_PROGRAMS = 8 };

typedef struct llvm_exec {
  nnc_rt_executor base;
  nnc_arena *arena;
  nnc_cg_llvm_jit *jit;
  const char *names[MAX_PROGRAMS];
  nnc_abi_entry entries[MAX_PROGRAMS];
  int (*calls[MAX_PROGRAMS])(const nnc_rt *, const nnc_args *, int64_t);
  nnc_lprogram *lprogs[MAX_PROGRAMS];
  int nprogs;
  uint8_t *scratch;
  nnc_rt rt;
  nnc_llvm_exec_times times;
} llvm_exec;

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* --- building -------------------------------------------------------------------------------------- */

static bool layouts_agree(const nnc_mem_layout *L, const nnc_rt_model *rm, char *err, size_t cap) {
  if ((size_t)L->persist_bytes != rm->persist_bytes || (size_t)L->io_bytes != rm->io_bytes) {
    snprintf(err, cap, "the runtime's regions (%zu, %zu bytes) differ from the plan's (%lld, %lld)", rm->persist_bytes,
             rm->io_bytes, (long long)L->persist_bytes, (long long)L->io_bytes);
    return false;
  }
  for (int i = 0; i < rm->nbuffers; i++) {
    int b = nnc_mem_find(L, rm->buffers[i].name);
    if (b < 0 || (size_t)L->bufs[b].offset != rm->buffers[i].offset) {
      snprintf(err, cap, "buffer '%s' is not where the memory plan puts it", rm->buffers[i].name);
      return false;
    }
  }
  return true;
}

/* The module of every program but forward, emitted; its diagnostics land in err. */
static nnc_cg_llvm_module *emit_module(llvm_exec *x, const nnc_module *m, const nnc_mem_layout *L,
                                       const nnc_llvm_exec_opts *o, int64_t *scratch, char *err, size_t cap) {
  nnc_lprogram *progs[MAX_PROGRAMS];
  char *msg = NULL;
  size_t msglen = 0;
  FILE *df = open_memstream(&msg, &msglen);
  nnc_diags d;
  nnc_diags_init(&d, df ? df : stderr);
  bool ok = true;
  double t0 = seconds();
  for (int i = 0; ok && i < nnc_module_program_count(m) && x->nprogs < MAX_PROGRAMS; i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    if (strcmp(g->name, "forward") == 0) continue;
    nnc_lprogram *p = nnc_lower_program(x->arena, m, g, L, &o->lower, &d);
    if (!p) {
      ok = false;
      break;
    }
    if (p->plan->scratch_bytes > *scratch) *scratch = p->plan->scratch_bytes;
    x->names[x->nprogs] = g->name;
    x->lprogs[x->nprogs] = p;
    progs[x->nprogs++] = p;
  }
  double t1 = seconds();
  x->times.lower_s = t1 - t0;
  nnc_cg_llvm_module *mod = ok ? nnc_cg_llvm_module_new(m->name, NULL, err, cap) : NULL;
  if (mod) nnc_cg_llvm_module_call_entries(mod, o->call_entries);
  if (mod && !nnc_cg_llvm_program(mod, m->name, progs, x->nprogs, &d)) {
    nnc_cg_llvm_module_free(mod);
    mod = NULL;
    ok = false;
  }
  x->times.emit_s = seconds() - t1;
  if (df) fclose(df);
  if (!ok) snprintf(err, cap, "lowering or LLVM emission failed: %s", msg ? msg : "");
  free(msg);
  return mod;
}

static bool build(llvm_exec *x, const nnc_module *m, const nnc_rt_model *rm, const nnc_llvm_exec_opts *o, char *err,
                  size_t cap) {
  nnc_mem_layout *L = nnc_mem_layout_module(x->arena, m, err, cap);
  if (!L || !layouts_agree(L, rm, err, cap)) return false;
  int64_t scratch = 0;
  nnc_cg_llvm_module *mod = emit_module(x, m, L, o, &scratch, err, cap);
  if (!mod) return false;
  x->jit = nnc_cg_llvm_jit_new(mod, &o->jit, err, cap);
  if (!x->jit) return false;
  x->times.jit = nnc_cg_llvm_jit_timing(x->jit);
  char id[256], sym[512];
  nnc_cg_c_ident(m->name, id, sizeof id);
  for (int i = 0; i < x->nprogs; i++) {
    snprintf(sym, sizeof sym, "%s_%s", id, x->names[i]);
    *(void **)&x->entries[i] = nnc_cg_llvm_jit_sym(x->jit, sym);
    if (!x->entries[i]) return snprintf(err, cap, "the compiled model has no %s", sym), false;
    if (!o->call_entries) continue;
    snprintf(sym, sizeof sym, "%s_%s_call", id, x->names[i]);
    *(void **)&x->calls[i] = nnc_cg_llvm_jit_sym(x->jit, sym);
    if (!x->calls[i]) return snprintf(err, cap, "the compiled model has no %s", sym), false;
  }
  if (posix_memalign((void **)&x->scratch, NNC_ABI_ALIGN, (size_t)(scratch > 0 ? scratch : NNC_ABI_ALIGN)) != 0)
    nnc_oom((size_t)scratch);
  return true;
}

/* --- running ---------------------------------------------------------------------------------------- */

static bool llvm_run(nnc_rt_executor *e, const char *program, uint8_t *persist, uint8_t *io, const nnc_rt_call *call,
                     char *err, size_t cap) {
  llvm_exec *x = (llvm_exec *)e;
  for (int i = 0; i < x->nprogs; i++) {
    if (strcmp(x->names[i], program) != 0) continue;
    nnc_args a = {.persist = persist, .io = io, .scratch = x->scratch, .n = call->n, .lr = call->lr,
                  .step = (uint64_t)(uint32_t)call->step, .seed = call->seed};
    int rc = x->entries[i](&x->rt, &a);
    if (rc != NNC_ABI_OK) snprintf(err, cap, "%s returned %d", program, rc);
    return rc == NNC_ABI_OK;
  }
  snprintf(err, cap, "the model has no program '%s'", program);
  return false;
}

static void llvm_destroy(nnc_rt_executor *e) {
  llvm_exec *x = (llvm_exec *)e;
  nnc_cg_llvm_jit_free(x->jit);
  nnc_arena_free(x->arena);
  free(x->scratch);
  free(x);
}

nnc_rt_executor *nnc_llvm_exec_new(const nnc_module *m, const nnc_rt_model *rm, const nnc_llvm_exec_opts *o, char *err,
                                   size_t cap) {
  llvm_exec *x = nnc_xcalloc(1, sizeof *x);
  x->base = (nnc_rt_executor){.name = "llvm", .run = llvm_run, .destroy = llvm_destroy};
  x->arena = nnc_arena_new();
  x->rt = o->rt ? *o->rt : (nnc_rt){.abi_version = NNC_ABI_VERSION};
  if (!build(x, m, rm, o, err, cap)) {
    llvm_destroy(&x->base);
    return NULL;
  }
  return &x->base;
}

nnc_cg_llvm_cache_result nnc_llvm_exec_cache_result(const nnc_rt_executor *e) {
  return nnc_cg_llvm_jit_cache_result(((const llvm_exec *)e)->jit);
}

nnc_llvm_exec_times nnc_llvm_exec_timing(const nnc_rt_executor *e) { return ((const llvm_exec *)e)->times; }

static int program_index(const llvm_exec *x, const char *program) {
  for (int i = 0; i < x->nprogs; i++)
    if (strcmp(x->names[i], program) == 0) return i;
  return -1;
}

const nnc_lprogram *nnc_llvm_exec_lprogram(const nnc_rt_executor *e, const char *program) {
  const llvm_exec *x = (const llvm_exec *)e;
  int i = program_index(x, program);
  return i < 0 ? NULL : x->lprogs[i];
}

bool nnc_llvm_exec_call(nnc_rt_executor *e, const char *program, int64_t i, uint8_t *persist, uint8_t *io,
                        const nnc_rt_call *call, char *err, size_t cap) {
  llvm_exec *x = (llvm_exec *)e;
  int p = program_index(x, program);
  if (p < 0 || !x->calls[p] || i < 0 || i >= x->lprogs[p]->ncalls || call->n < 1 ||
      call->n > x->lprogs[p]->plan->layout->batch_max) {
    snprintf(err, cap, "%s: no kernel call %lld to run alone", program, (long long)i);
    return false;
  }
  nnc_args a = {.persist = persist, .io = io, .scratch = x->scratch, .n = call->n, .lr = call->lr,
                .step = (uint64_t)(uint32_t)call->step, .seed = call->seed};
  int rc = x->calls[p](&x->rt, &a, i);
  if (rc != NNC_ABI_OK) snprintf(err, cap, "%s call %lld returned %d", program, (long long)i, rc);
  return rc == NNC_ABI_OK;
}

uint8_t *nnc_llvm_exec_scratch(const nnc_rt_executor *e) { return ((const llvm_exec *)e)->scratch; }
