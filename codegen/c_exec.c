/* The C backend behind the executor interface: lower, print, cc, dlopen, call. */
#include "c_exec.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "c_program.h"
#include "cc.h"
#include "phase.h"
#include "runtime/abi.h"

enum { MAX_PROGRAMS = 8 };

typedef struct c_exec {
  nnc_rt_executor base;
  nnc_arena *arena;
  nnc_cg_lib *lib;
  const char *names[MAX_PROGRAMS];
  nnc_abi_entry entries[MAX_PROGRAMS];
  int nprogs;
  uint8_t *scratch;
  nnc_rt rt;
} c_exec;

/* --- parallel_for: serial, or two threads over a static split ------------------------------------ */

typedef struct half {
  nnc_abi_body body;
  void *env;
  int64_t lo, hi;
} half;

static void *run_half(void *arg) {
  half *h = arg;
  if (h->lo < h->hi) h->body(h->env, h->lo, h->hi);
  return NULL;
}

static void parallel_for_2(void *pool, int64_t n, nnc_abi_body body, void *env) {
  (void)pool;
  half h[2] = {{body, env, 0, n / 2}, {body, env, n / 2, n}};
  pthread_t t;
  if (pthread_create(&t, NULL, run_half, &h[1]) != 0) {
    body(env, 0, n); /* no thread: the same iterations, serially */
    return;
  }
  run_half(&h[0]);
  pthread_join(t, NULL);
}

/* --- building ------------------------------------------------------------------------------------ */

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

static bool write_text(const char *path, void (*fn)(FILE *, const void *), const void *ctx) {
  FILE *f = fopen(path, "w");
  if (!f) return false;
  fn(f, ctx);
  return fclose(f) == 0;
}

typedef struct header_ctx {
  const char *model;
  const nnc_mem_layout *L;
  nnc_lprogram **progs;
  int n;
} header_ctx;

static void print_header(FILE *f, const void *c) {
  const header_ctx *h = c;
  nnc_cg_c_model_header(f, h->model, h->L, h->progs, h->n);
}
static void print_abi(FILE *f, const void *c) {
  (void)c;
  fputs(nnc_cg_abi_text, f);
}

/* model.c's text in a heap string. */
static char *model_source(const char *model, nnc_lprogram **progs, int n, int mem_debug, char *err, size_t cap) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return NULL;
  char *msg = NULL;
  size_t msglen = 0;
  FILE *df = open_memstream(&msg, &msglen);
  nnc_diags d;
  nnc_diags_init(&d, df);
  bool ok = nnc_cg_c_model_source_debug(f, model, progs, n, (nnc_cg_mem_debug)mem_debug, &d);
  fclose(f);
  if (df) fclose(df);
  if (!ok) {
    snprintf(err, cap, "printing C failed: %s", msg ? msg : "");
    free(text);
    text = NULL;
  }
  free(msg);
  return text;
}

/* Separate allocations are checked by ASan when this process carries its runtime (a Sanitize
 * build); a shared object built with it cannot be loaded into a process without it. */
static bool process_has_asan(void) {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

static bool build(c_exec *x, const nnc_module *m, const nnc_rt_model *rm, const nnc_c_exec_opts *o, char *err,
                  size_t cap) {
  nnc_mem_layout *L = nnc_mem_layout_module(x->arena, m, err, cap);
  if (!L || !layouts_agree(L, rm, err, cap)) return false;
  nnc_lprogram *progs[MAX_PROGRAMS];
  int64_t scratch = 0;
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  for (int i = 0; i < nnc_module_program_count(m) && x->nprogs < MAX_PROGRAMS; i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    if (strcmp(g->name, "forward") == 0) continue;
    nnc_lprogram *p = nnc_lower_program(x->arena, m, g, L, &o->lower, &d);
    if (!p) return snprintf(err, cap, "lowering %s failed", g->name), false;
    /* GPU schedules run under the phase emulator (codegen/phase.h) */
    if (o->lower.target == NNC_LOWER_GPU && !nnc_cg_phase_program(x->arena, p, NULL, &d))
      return snprintf(err, cap, "the phase emulator refuses a kernel of %s", g->name), false;
    if (p->plan->scratch_bytes > scratch) scratch = p->plan->scratch_bytes;
    x->names[x->nprogs] = g->name;
    progs[x->nprogs++] = p;
  }
  char dir[] = "/tmp/nnc_c_exec_XXXXXX";
  if (!mkdtemp(dir)) return snprintf(err, cap, "cannot make a temporary directory"), false;
  char path[sizeof dir + 32], flags[sizeof dir + 256];
  header_ctx h = {m->name, L, progs, x->nprogs};
  snprintf(path, sizeof path, "%s/model.h", dir);
  bool ok = write_text(path, print_header, &h);
  snprintf(path, sizeof path, "%s/nnc_abi.h", dir);
  ok = ok && write_text(path, print_abi, NULL);
  char *src = ok ? model_source(m->name, progs, x->nprogs, o->mem_debug, err, cap) : NULL;
  snprintf(flags, sizeof flags, "-I%s %s%s", dir, o->cflags ? o->cflags : "",
           o->mem_debug == NNC_CG_MEM_SEPARATE && process_has_asan() ? " -fsanitize=address" : "");
  if (src) x->lib = nnc_cg_cc_compile(src, flags, err, cap);
  free(src);
  snprintf(path, sizeof path, "%s/model.h", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/nnc_abi.h", dir);
  unlink(path);
  rmdir(dir);
  if (!x->lib) return false;
  char id[256], sym[512];
  nnc_cg_c_ident(m->name, id, sizeof id);
  for (int i = 0; i < x->nprogs; i++) {
    snprintf(sym, sizeof sym, "%s_%s", id, x->names[i]);
    *(void **)&x->entries[i] = nnc_cg_cc_sym(x->lib, sym);
    if (!x->entries[i]) return snprintf(err, cap, "the compiled model has no %s", sym), false;
  }
  if (posix_memalign((void **)&x->scratch, NNC_ABI_ALIGN, (size_t)(scratch > 0 ? scratch : NNC_ABI_ALIGN)) != 0)
    nnc_oom((size_t)scratch);
  return true;
}

/* --- running -------------------------------------------------------------------------------------- */

static bool c_run(nnc_rt_executor *e, const char *program, uint8_t *persist, uint8_t *io, const nnc_rt_call *call,
                  char *err, size_t cap) {
  c_exec *x = (c_exec *)e;
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

static void c_destroy(nnc_rt_executor *e) {
  c_exec *x = (c_exec *)e;
  if (x->lib) nnc_cg_cc_close(x->lib);
  nnc_arena_free(x->arena);
  free(x->scratch);
  free(x);
}

nnc_rt_executor *nnc_c_exec_new(const nnc_module *m, const nnc_rt_model *rm, const nnc_c_exec_opts *o, char *err,
                                size_t cap) {
  c_exec *x = nnc_xcalloc(1, sizeof *x);
  x->base = (nnc_rt_executor){.name = "c", .run = c_run, .destroy = c_destroy};
  x->arena = nnc_arena_new();
  x->rt = (nnc_rt){.abi_version = NNC_ABI_VERSION, .parallel_for = o->threads >= 2 ? parallel_for_2 : NULL};
  if (!build(x, m, rm, o, err, cap)) {
    c_destroy(&x->base);
    return NULL;
  }
  return &x->base;
}
