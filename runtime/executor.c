/* The executor core; see executor.h. */
#include "runtime/executor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data.h"
#include "runtime/pool.h"

typedef struct core {
  nnc_rt_executor base;       /* first: the executor the runtime calls */
  const nnc_rt_backend *b;
  void *lib;
  char **names;
  nnc_rt_entry *entries;
  int n;
  uint8_t *scratch;
  nnc_rt_pool *pool;
  nnc_rt rt;
  int64_t batch_max;
} core;

static int find(const core *x, const char *program) {
  for (int i = 0; i < x->n; i++)
    if (strcmp(x->names[i], program) == 0) return i;
  return -1;
}

nnc_args nnc_rt_executor_args(const nnc_rt_executor *e, uint8_t *persist, uint8_t *io, const nnc_rt_call *call) {
  const core *x = (const core *)e;
  return (nnc_args){.persist = persist, .io = io, .scratch = x->scratch, .n = call->n, .lr = call->lr,
                    .step = (uint64_t)(uint32_t)call->step, .seed = call->seed};
}

static bool run(nnc_rt_executor *e, const char *program, uint8_t *persist, uint8_t *io, const nnc_rt_call *call,
                char *err, size_t cap) {
  core *x = (core *)e;
  int i = find(x, program);
  if (i < 0) return snprintf(err, cap, "the model has no program '%s'", program), false;
  if (call->n < 1 || (x->batch_max > 0 && call->n > x->batch_max))
    return snprintf(err, cap, "%s: batch %lld outside [1, %lld]", program, (long long)call->n, (long long)x->batch_max),
           false;
  nnc_args a = nnc_rt_executor_args(e, persist, io, call);
  const nnc_rt_entry *en = &x->entries[i];
  if (!en->fn) return en->run(en->ctx, &a, err, cap);
  int rc = en->fn(&x->rt, &a);
  if (rc != NNC_ABI_OK) snprintf(err, cap, "%s returned %d", program, rc);
  return rc == NNC_ABI_OK;
}

static void destroy(nnc_rt_executor *e) {
  core *x = (core *)e;
  if (x->lib) x->b->free(x->lib);
  nnc_rt_pool_free(x->pool); /* after the code that ran on it */
  for (int i = 0; i < x->n; i++) free(x->names[i]);
  free(x->names);
  free(x->entries);
  free(x->scratch);
  free(x);
}

static bool resident_begin(nnc_rt_executor *e, const uint8_t *persist, const nnc_rt_buffer *loss, char *err,
                           size_t cap) {
  core *x = (core *)e;
  return x->b->resident_begin(x->lib, persist, loss, err, cap);
}
static bool resident_losses(nnc_rt_executor *e, nnc_rt_losses *l, char *err, size_t cap) {
  core *x = (core *)e;
  return x->b->resident_losses(x->lib, l, err, cap);
}
static bool resident_pull(nnc_rt_executor *e, uint8_t *persist, char *err, size_t cap) {
  core *x = (core *)e;
  return x->b->resident_pull(x->lib, persist, err, cap);
}
static void resident_end(nnc_rt_executor *e) {
  core *x = (core *)e;
  x->b->resident_end(x->lib);
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) nnc_rt_oom(n * size);
  return p;
}

/* The scratch region, and the nnc_rt: the caller's, a pool's, or serial. */
static bool provision(core *x, const nnc_rt_executor_opts *o, char *err, size_t cap) {
  size_t bytes = (size_t)(o->scratch_bytes > 0 ? o->scratch_bytes : 0);
  if (bytes && posix_memalign((void **)&x->scratch, NNC_ABI_ALIGN, bytes) != 0) {
    nnc_rt_oom(bytes);
    return snprintf(err, cap, "out of memory for %zu bytes of scratch", bytes), false;
  }
  if (o->rt) x->rt = *o->rt;
  else if (o->threads > 1 && !(x->pool = nnc_rt_pool_new(o->threads)))
    return snprintf(err, cap, "out of memory for a thread pool"), false;
  if (!o->rt) x->rt = nnc_rt_pool_rt(x->pool);
  return true;
}

nnc_rt_executor *nnc_rt_executor_new(const nnc_rt_backend *b, void *lib, const char *const *programs, int n,
                                     const nnc_rt_executor_opts *o, char *err, size_t cap) {
  core *x = xcalloc(1, sizeof *x);
  x->base = (nnc_rt_executor){.name = b->name, .run = run, .destroy = destroy};
  if (b->resident_begin) {
    x->base.resident_begin = resident_begin, x->base.resident_losses = resident_losses;
    x->base.resident_pull = resident_pull, x->base.resident_end = resident_end;
  }
  x->b = b, x->lib = lib, x->batch_max = o->batch_max;
  x->names = xcalloc((size_t)n, sizeof *x->names);
  x->entries = xcalloc((size_t)n, sizeof *x->entries);
  bool ok = provision(x, o, err, cap);
  for (int i = 0; ok && i < n; i++) {
    if (!(x->names[i] = strdup(programs[i]))) {
      nnc_rt_oom(strlen(programs[i]) + 1);
      snprintf(err, cap, "out of memory");
      ok = false;
      break;
    }
    x->n = i + 1;
    x->entries[i] = b->symbol(lib, programs[i]);
    if (!x->entries[i].fn && !x->entries[i].run) {
      snprintf(err, cap, "the compiled model has no entry for %s", programs[i]);
      ok = false;
    }
  }
  if (ok) return &x->base;
  destroy(&x->base);
  return NULL;
}

void *nnc_rt_executor_lib(const nnc_rt_executor *e) { return ((const core *)e)->lib; }
const char *nnc_rt_executor_backend(const nnc_rt_executor *e) { return ((const core *)e)->b->name; }
uint8_t *nnc_rt_executor_scratch(const nnc_rt_executor *e) { return ((const core *)e)->scratch; }
const nnc_rt *nnc_rt_executor_rt(const nnc_rt_executor *e) { return &((const core *)e)->rt; }
int nnc_rt_executor_threads(const nnc_rt_executor *e) {
  const core *x = (const core *)e;
  return x->pool ? nnc_rt_pool_threads(x->pool) : 1;
}
