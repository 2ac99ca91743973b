/* The C backend as an executor backend; see exec_c.h. */
#include "driver/exec_c.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/c_program.h"
#include "codegen/cc.h"

enum { MAX_PROGRAMS = 8 };

typedef struct c_lib {
  nnc_cg_lib *so;
  char model[256];            /* the model's C identifier, the prefix of every symbol */
} c_lib;

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
static char *model_source(const char *model, nnc_lprogram **progs, int n, int mem_debug, nnc_diags *d) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return nnc_error(d, (nnc_loc){0}, "out of memory"), NULL;
  bool ok = nnc_cg_c_model_source_debug(f, model, progs, n, (nnc_cg_mem_debug)mem_debug, d);
  fclose(f);
  if (!ok) {
    free(text);
    text = NULL;
  }
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

/* model.h and nnc_abi.h in a temporary directory, model.c through cc into a shared object. */
static nnc_cg_lib *build(const nnc_compiled *c, nnc_lprogram **progs, int n, const nnc_exec_c_opts *o, char *err,
                         size_t cap) {
  char dir[] = "/tmp/nnc_exec_c_XXXXXX";
  if (!mkdtemp(dir)) return snprintf(err, cap, "cannot make a temporary directory"), (nnc_cg_lib *)NULL;
  char path[sizeof dir + 32], flags[sizeof dir + 256];
  const char *model = c->module->name;
  header_ctx h = {model, c->layout, progs, n};
  snprintf(path, sizeof path, "%s/model.h", dir);
  bool ok = write_text(path, print_header, &h);
  snprintf(path, sizeof path, "%s/nnc_abi.h", dir);
  ok = ok && write_text(path, print_abi, NULL);
  nnc_diags d; /* the executor's channel is err */
  nnc_diags_init_buffer(&d, err, cap);
  if (!ok) nnc_error(&d, (nnc_loc){0}, "cannot write the headers in %s", dir);
  char *src = ok ? model_source(model, progs, n, o->mem_debug, &d) : NULL;
  snprintf(flags, sizeof flags, "-I%s %s%s", dir, o->cflags ? o->cflags : "",
           o->mem_debug == NNC_CG_MEM_SEPARATE && process_has_asan() ? " -fsanitize=address" : "");
  nnc_cg_lib *so = src ? nnc_cg_cc_compile(src, flags, &d) : NULL;
  free(src);
  snprintf(path, sizeof path, "%s/model.h", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/nnc_abi.h", dir);
  unlink(path);
  rmdir(dir);
  return so;
}

/* --- the backend ---------------------------------------------------------------------------------- */

static nnc_rt_entry c_symbol(void *lib, const char *program) {
  c_lib *l = lib;
  char sym[512];
  snprintf(sym, sizeof sym, "%s_%s", l->model, program);
  nnc_rt_entry e = {0};
  *(void **)&e.fn = nnc_cg_cc_sym(l->so, sym);
  return e;
}

static void c_free(void *lib) {
  c_lib *l = lib;
  if (l->so) nnc_cg_cc_close(l->so);
  free(l);
}

static const nnc_rt_backend c_backend = {.name = "c", .symbol = c_symbol, .free = c_free};

nnc_rt_executor *nnc_exec_c_new(const nnc_compiled *c, const nnc_exec_c_opts *o, char *err, size_t cap) {
  nnc_lprogram *progs[MAX_PROGRAMS];
  const char *names[MAX_PROGRAMS];
  int n = 0;
  for (int i = 0; i < c->nprograms && n < MAX_PROGRAMS; i++, n++)
    progs[n] = c->programs[i].lowered, names[n] = c->programs[i].name;
  c_lib *l = nnc_xcalloc(1, sizeof *l);
  nnc_cg_c_ident(c->module->name, l->model, sizeof l->model);
  if (!(l->so = build(c, progs, n, o, err, cap))) {
    c_free(l);
    return NULL;
  }
  /* a static rt: the 2-thread parallel_for keeps no state */
  static const nnc_rt serial = {.abi_version = NNC_ABI_VERSION}, two = {.abi_version = NNC_ABI_VERSION,
                                                                        .parallel_for = parallel_for_2};
  nnc_rt_executor_opts eo = {.scratch_bytes = c->scratch_bytes, .rt = o->threads >= 2 ? &two : &serial,
                             .batch_max = c->module->batch_max};
  return nnc_rt_executor_new(&c_backend, l, names, n, &eo, err, cap);
}
