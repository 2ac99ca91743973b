/* A model JIT-compiled kernel by kernel (codegen/llvm.h, docs/llvm.md "Kernel by kernel").
 *
 * The one-module form (llvm_program.c) is what --emit writes. To run a model in this process,
 * each distinct kernel is instead a module of its own, because then
 *  - the modules compile on several threads at once (one LLVM context each, nothing shared);
 *  - each has its own cache entry, so a model edited in one layer recompiles that layer's
 *    kernels and finds the rest in the cache, as does another model with the same kernels.
 * A kernel's function is named after its key, nnck_<32 hex digits>: the same code has the same
 * name whichever model it came from, so identical kernels share one object. A small module of
 * entry functions declares the kernels and calls them; it is cached like a kernel. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/llvm_internal.h"

/* One distinct kernel: what a worker thread makes of it. */
typedef struct kernel_job {
  const nnc_kernel *k;
  char fname[48];                 /* nnck_<key> */
  LLVMMemoryBufferRef obj;
  nnc_cg_llvm_cache_result result;
  nnc_cg_llvm_jit_times t;
  char err[1024];
  bool failed;
} kernel_job;

typedef struct compile_queue {
  kernel_job *jobs;
  int n;
  atomic_int next;
  const char *dir;                /* the cache directory, NULL without a cache */
  nnc_cg_llvm_target target;      /* the host's, asked once */
} compile_queue;

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* m's object: from the cache under m's key, else compiled (and stored). Names the function fn
 * after the key first, so the name is part of the object. */
static LLVMMemoryBufferRef object_of(nnc_cg_llvm_module *m, LLVMValueRef fn, const char *dir, char *fname,
                                     size_t cap, nnc_cg_llvm_cache_result *result, nnc_cg_llvm_jit_times *t,
                                     nnc_diags *d) {
  double t0 = seconds();
  nnc_cg_llvm_key key = nnc_cg_llvm_module_key(m);
  if (fn) {
    snprintf(fname, cap, "nnck_%016llx%016llx", (unsigned long long)key.a, (unsigned long long)key.b);
    LLVMSetValueName2(fn, fname, strlen(fname));
  }
  char path[4200];
  LLVMMemoryBufferRef obj = NULL;
  *result = NNC_LLVM_CACHE_OFF;
  if (dir) {
    nnc_cg_llvm_cache_path(dir, key, path, sizeof path);
    bool corrupt = false;
    obj = nnc_cg_llvm_cache_read(path, key, &corrupt);
    *result = obj ? NNC_LLVM_CACHE_HIT : corrupt ? NNC_LLVM_CACHE_CORRUPT : NNC_LLVM_CACHE_MISS;
  }
  t->cache_s += seconds() - t0;
  if (obj) return obj;
  obj = nnc_cg_llvm_compile_object(m, t, d);
  /* a cache that cannot be written is no error: the code still runs */
  if (obj && dir && !nnc_cg_llvm_cache_write(dir, path, key, obj)) *result = NNC_LLVM_CACHE_OFF;
  return obj;
}

static void compile_kernel(const compile_queue *q, kernel_job *j) {
  nnc_diags d;
  nnc_diags_init_buffer(&d, j->err, sizeof j->err);
  double t0 = seconds();
  nnc_cg_llvm_module *m = nnc_cg_llvm_module_new("nnc_kernel", &q->target, &d);
  LLVMValueRef fn = NULL;
  if (m) fn = nnc_cg_llvm_kernel_fn_finished(m, j->k, "nnck", true, &d);
  j->t.ir_s += seconds() - t0;
  if (fn) j->obj = object_of(m, fn, q->dir, j->fname, sizeof j->fname, &j->result, &j->t, &d);
  j->failed = !j->obj;
  nnc_cg_llvm_module_free(m);
}

static void *compile_worker(void *arg) {
  compile_queue *q = arg;
  for (int i; (i = atomic_fetch_add(&q->next, 1)) < q->n;) compile_kernel(q, &q->jobs[i]);
  return NULL;
}

/* Runs the queue on up to `threads` threads, this one included. */
static void compile_all(compile_queue *q, int threads) {
  enum { MAX_THREADS = 64 };
  pthread_t tid[MAX_THREADS];
  int started = 0;
  for (int i = 1; i < threads && i < q->n && started < MAX_THREADS; i++)
    if (pthread_create(&tid[started], NULL, compile_worker, q) == 0) started++;
  compile_worker(q);
  for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

static int threads_for(const nnc_cg_llvm_jit_opts *o) {
  if (o && o->threads > 0) return o->threads;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return cores > 0 ? (int)cores : 1;
}

static void add_times(nnc_cg_llvm_jit_times *sum, const nnc_cg_llvm_jit_times *t) {
  sum->ir_s += t->ir_s, sum->cache_s += t->cache_s, sum->optimize_s += t->optimize_s, sum->codegen_s += t->codegen_s;
}

/* What happened to the model as a whole: off without a cache, corrupt when an entry was,
 * a miss when anything was compiled, else a hit. */
static nnc_cg_llvm_cache_result model_result(const kernel_job *jobs, int n, nnc_cg_llvm_cache_result entries) {
  nnc_cg_llvm_cache_result r = entries;
  for (int i = 0; i < n; i++) {
    nnc_cg_llvm_cache_result k = jobs[i].result;
    if (k == NNC_LLVM_CACHE_OFF || r == NNC_LLVM_CACHE_OFF) r = NNC_LLVM_CACHE_OFF;
    else if (k == NNC_LLVM_CACHE_CORRUPT || r == NNC_LLVM_CACHE_CORRUPT) r = NNC_LLVM_CACHE_CORRUPT;
    else if (k == NNC_LLVM_CACHE_MISS) r = NNC_LLVM_CACHE_MISS;
  }
  return r;
}

/* The entries module: each kernel declared under its object's name, the entries calling them. */
static LLVMMemoryBufferRef entries_object(nnc_cg_llvm_module *m, const char *model, nnc_lprogram *const *progs,
                                          int nprogs, const nnc_kernel_set *set, const kernel_job *jobs,
                                          const char *dir, nnc_cg_llvm_cache_result *result,
                                          nnc_cg_llvm_jit_times *t, nnc_diags *d) {
  double t0 = seconds();
  LLVMValueRef *fn = nnc_xcalloc((size_t)set->n + 1, sizeof *fn);
  for (int i = 0; i < set->n; i++) {
    fn[i] = LLVMGetNamedFunction(m->mod, jobs[i].fname); /* identical kernels share a name */
    if (!fn[i]) fn[i] = nnc_cg_llvm_kernel_decl(m, set->list[i], jobs[i].fname);
  }
  bool ok = nnc_cg_llvm_entries(m, model, progs, nprogs, set, fn, d);
  free(fn);
  t->ir_s += seconds() - t0;
  if (!ok || !nnc_cg_llvm_verify(m, d)) return NULL;
  char unused[8];
  return object_of(m, NULL, dir, unused, sizeof unused, result, t, d);
}

/* Every distinct object once, the entries last: kernels the lowering tells apart (by buffer
 * sizes the code does not depend on) can make the same IR, so the same key and name, and a
 * name defined twice makes the JIT refuse the second object. */
static int unique_objects(kernel_job *jobs, int n, LLVMMemoryBufferRef entries, LLVMMemoryBufferRef *objs) {
  int count = 0;
  for (int i = 0; i < n; i++) {
    bool seen = false;
    for (int j = 0; j < i && !seen; j++) seen = !strcmp(jobs[j].fname, jobs[i].fname);
    if (seen) LLVMDisposeMemoryBuffer(jobs[i].obj);
    else objs[count++] = jobs[i].obj;
  }
  for (int i = 0; i < n; i++) jobs[i].obj = NULL;
  objs[count++] = entries;
  return count;
}

nnc_cg_llvm_jit *nnc_cg_llvm_jit_model(const char *model, nnc_lprogram *const *progs, int nprogs,
                                       const nnc_cg_llvm_jit_opts *o, nnc_diags *d) {
  double t0 = seconds();
  /* the entries' module first: it also initializes LLVM, before any thread uses it */
  nnc_cg_llvm_module *em = nnc_cg_llvm_module_new(model, NULL, d);
  if (!em) return NULL;
  /* straight-line calls: nothing for an optimizer to find, and the fast instruction selector
   * emits them as well (char_lstm's 1,514 calls: 1.06 s at O1 and O3 code generation, 0.035 s) */
  em->pipeline = "default<O0>";
  nnc_cg_llvm_module_set_codegen_level(em, LLVMCodeGenLevelNone);
  em->call_entries = o && o->call_entries;
  for (int p = 0; p < nprogs; p++)
    for (int i = 0; i < progs[p]->nkernels; i++) nnc_lk_finish(progs[p]->kernels[i]);
  nnc_kernel_set set = {0};
  nnc_kernel_set_build(&set, progs, nprogs);
  char dir[4096];
  bool cached = !(o && o->no_cache) && nnc_cg_llvm_cache_dir(o, dir, sizeof dir);
  compile_queue q = {.jobs = nnc_xcalloc((size_t)set.n + 1, sizeof *q.jobs), .n = set.n, .dir = cached ? dir : NULL,
                     .target = {.cpu = em->cpu, .features = em->features}};
  for (int i = 0; i < set.n; i++) q.jobs[i].k = set.list[i];
  nnc_cg_llvm_jit_times t = {.kernels = set.n, .threads = threads_for(o)};
  compile_all(&q, t.threads);
  bool ok = true;
  for (int i = 0; i < set.n; i++) {
    add_times(&t, &q.jobs[i].t);
    t.hits += q.jobs[i].result == NNC_LLVM_CACHE_HIT;
    if (q.jobs[i].failed && ok) nnc_error(d, (nnc_loc){0}, "%s", q.jobs[i].err);
    ok = ok && !q.jobs[i].failed;
  }
  t.compiled = set.n - t.hits;
  nnc_cg_llvm_cache_result entries_result = NNC_LLVM_CACHE_OFF;
  LLVMMemoryBufferRef entries =
      ok ? entries_object(em, model, progs, nprogs, &set, q.jobs, q.dir, &entries_result, &t, d) : NULL;
  nnc_cg_llvm_module_free(em);
  t.wall_s = seconds() - t0;
  nnc_cg_llvm_jit *j = NULL;
  if (entries) {
    LLVMMemoryBufferRef *objs = nnc_xcalloc((size_t)set.n + 1, sizeof *objs);
    int n = unique_objects(q.jobs, set.n, entries, objs);
    j = nnc_cg_llvm_jit_link(objs, n, d);
    free(objs);
    if (j) nnc_cg_llvm_jit_set_result(j, model_result(q.jobs, set.n, entries_result), &t);
  }
  for (int i = 0; i < set.n; i++)
    if (q.jobs[i].obj) LLVMDisposeMemoryBuffer(q.jobs[i].obj);
  free(q.jobs);
  nnc_kernel_set_free(&set);
  return j;
}
