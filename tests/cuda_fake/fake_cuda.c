/* A CUDA driver for tests, on host memory: built as libcuda.so.1 in its own directory, which a
 * test puts first in LD_LIBRARY_PATH, so that nnc's executor (driver/exec_cuda.c) runs through
 * it where there is no GPU (tests/backend/cuda_exec_fake.c, docs/cuda.md).
 *
 * What it models, and checks:
 * - device memory is host memory; every copy must stay inside one live allocation;
 * - a stream is a queue: asynchronous copies, graph launches and event records run in order
 *   when the host waits (cuStreamSynchronize, cuEventSynchronize), not before. A copy from
 *   pinned memory reads its source when it runs, and the source must not have changed since it
 *   was queued; from pageable memory it is read when queued, and a copy to pageable memory
 *   waits for the stream, as the real driver does;
 * - capture: kernels launched on a capturing stream become the graph's nodes (their parameters
 *   copied at launch, sized from the PTX's .entry declaration); a copy, an event or a wait on a
 *   capturing stream is an error, as is a launch outside a capture (the executor only replays);
 * - kernels do not run (there is no PTX to run), except the executor's accumulator, which is
 *   one line of arithmetic; a hook set by the test runs before each node, e.g. to write the
 *   loss the model's kernels would have computed.
 * Every call is logged, one line each (fake_cuda_log); a call can be made to fail
 * (fake_cuda_fail_call, or FAKE_CUDA_FAIL=function:nth:result for a whole program); what breaks
 * the rules above is logged as a VIOLATION line and fails the call. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda_api.h"
#include "driver/exec_cuda.h"
#include "fake_cuda.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- the log and injected failures ---- */

static char *log_text;
static size_t log_len, log_cap;
static int violations;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  size_t need = log_len + (size_t)(k < (int)sizeof line ? k : (int)sizeof line - 1) + 2;
  if (need > log_cap) {
    log_cap = need * 2;
    log_text = realloc(log_text, log_cap);
    if (!log_text) abort();
  }
  log_len += (size_t)snprintf(log_text + log_len, log_cap - log_len, "%s\n", line);
}

/* The log goes with the library: nnc dlcloses the driver when an executor is destroyed. */
__attribute__((destructor)) static void free_log(void) {
  free(log_text);
  log_text = NULL, log_len = log_cap = 0;
}

static CUresult violation(const char *what) {
  violations++;
  say("VIOLATION %s", what);
  return NNC_CUDA_ERROR_INVALID_VALUE;
}

EXPORT const char *fake_cuda_log(void) { return log_text ? log_text : ""; }
EXPORT void fake_cuda_log_clear(void) { log_len = 0; if (log_text) log_text[0] = 0; }
EXPORT int fake_cuda_violations(void) { return violations; }

static struct { char name[64]; int countdown; CUresult result; } failure;

EXPORT void fake_cuda_fail_call(const char *function, int nth, int result) {
  snprintf(failure.name, sizeof failure.name, "%s", function);
  failure.countdown = nth, failure.result = result;
}

/* The injected failure of this call, if it is the one. */
static CUresult injected(const char *function) {
  if (failure.countdown > 0 && strcmp(failure.name, function) == 0 && --failure.countdown == 0) {
    say("%s -> injected failure %d", function, failure.result);
    return failure.result;
  }
  return 0;
}

static void read_env_failure(void) {
  static bool read;
  const char *s = getenv("FAKE_CUDA_FAIL");
  if (read || !s) return;
  read = true;
  char name[64];
  int nth, result;
  if (sscanf(s, "%63[^:]:%d:%d", name, &nth, &result) == 3) fake_cuda_fail_call(name, nth, result);
}

#define ENTER(fn)                     \
  do {                                \
    CUresult inj_ = injected(#fn);    \
    if (inj_) return inj_;            \
  } while (0)

/* ---- memory ---- */

typedef struct alloc {
  uint8_t *p;
  size_t bytes;
  bool pinned, live;
} alloc;

static alloc allocs[256];
static int nallocs;

static alloc *find_alloc(const void *p, size_t bytes, bool pinned) {
  for (int i = 0; i < nallocs; i++) {
    alloc *a = &allocs[i];
    if (a->live && a->pinned == pinned && (const uint8_t *)p >= a->p && (const uint8_t *)p + bytes <= a->p + a->bytes)
      return a;
  }
  return NULL;
}

static int alloc_index(const alloc *a) { return (int)(a - allocs); }

EXPORT void *fake_cuda_allocation(int i, size_t *bytes) {
  for (int k = 0, seen = 0; k < nallocs; k++)
    if (!allocs[k].pinned && allocs[k].live && seen++ == i) {
      if (bytes) *bytes = allocs[k].bytes;
      return allocs[k].p;
    }
  return NULL;
}

EXPORT int fake_cuda_live_allocations(void) {
  int live = 0;
  for (int k = 0; k < nallocs; k++) live += allocs[k].live;
  return live;
}

static CUresult new_alloc(void **out, size_t bytes, bool pinned) {
  if (nallocs == (int)(sizeof allocs / sizeof *allocs)) return NNC_CUDA_ERROR_OUT_OF_MEMORY;
  uint8_t *p = calloc(1, bytes ? bytes : 1);
  if (!p) return NNC_CUDA_ERROR_OUT_OF_MEMORY;
  allocs[nallocs++] = (alloc){.p = p, .bytes = bytes, .pinned = pinned, .live = true};
  *out = p;
  return 0;
}

static CUresult free_alloc(void *p, bool pinned, const char *fn) {
  for (int i = 0; i < nallocs; i++)
    if (allocs[i].live && allocs[i].p == p && allocs[i].pinned == pinned) {
      allocs[i].live = false;
      free(p);
      allocs[i].p = NULL;
      return 0;
    }
  char msg[128];
  snprintf(msg, sizeof msg, "%s of a pointer that is not a live allocation", fn);
  return violation(msg);
}

static uint64_t checksum(const void *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ull;
  return h;
}

/* ---- modules and functions: the PTX's .entry declarations ---- */

enum { MAX_PARAMS = 256, MAX_ENTRIES = 2048 };

typedef struct function {
  char name[128];
  int nparams;
  int param_bytes[MAX_PARAMS];
} function;

typedef struct module {
  function fn[MAX_ENTRIES];
  int nfn;
} module;

static int ptx_type_bytes(const char *t) {
  if (!strncmp(t, ".u64", 4) || !strncmp(t, ".s64", 4) || !strncmp(t, ".b64", 4) || !strncmp(t, ".f64", 4)) return 8;
  if (!strncmp(t, ".u32", 4) || !strncmp(t, ".s32", 4) || !strncmp(t, ".b32", 4) || !strncmp(t, ".f32", 4)) return 4;
  if (!strncmp(t, ".u16", 4) || !strncmp(t, ".s16", 4) || !strncmp(t, ".b16", 4)) return 2;
  if (!strncmp(t, ".u8", 3) || !strncmp(t, ".s8", 3) || !strncmp(t, ".b8", 3)) return 1;
  return -1;
}

/* Every ".entry NAME(.param .TYPE NAME, ...)" of the PTX. */
static bool parse_entries(const char *ptx, module *m) {
  for (const char *s = strstr(ptx, ".entry "); s; s = strstr(s + 1, ".entry ")) {
    if (m->nfn == (int)(sizeof m->fn / sizeof *m->fn)) return false;
    function *f = &m->fn[m->nfn++];
    memset(f, 0, sizeof *f);
    s += 7;
    size_t len = strcspn(s, "( \n");
    if (len >= sizeof f->name) return false;
    memcpy(f->name, s, len);
    const char *end = strchr(s, ')');
    for (const char *p = strstr(s, ".param "); p && end && p < end; p = strstr(p + 1, ".param ")) {
      const char *t = p + 7;
      if (!strncmp(t, ".align", 6)) return false; /* struct parameters: not used by nnc */
      int b = ptx_type_bytes(t);
      if (b < 0 || f->nparams == MAX_PARAMS) return false;
      f->param_bytes[f->nparams++] = b;
    }
  }
  return m->nfn > 0;
}

/* ---- streams, graphs, events ---- */

typedef struct node {
  const function *fn;
  unsigned grid[3], block[3];
  uint8_t params[MAX_PARAMS][8];
} node;

typedef struct graph {
  node *nodes;
  int nnodes, cap;
  int id;
} graph;

typedef enum { OP_COPY_IN, OP_COPY_OUT, OP_GRAPH, OP_EVENT } op_kind;

typedef struct op {
  op_kind kind;
  uint8_t *dst;
  const uint8_t *src;
  size_t bytes;
  uint8_t *snapshot;   /* a pageable source, read when queued */
  uint64_t sum;        /* a pinned source's checksum when queued */
  const graph *g;
  struct event *ev;
} op;

typedef struct event {
  bool recorded_pending;
} event;

typedef struct stream {
  op *ops;
  int nops, cap;
  bool capturing;
  graph *capture;
} stream;

static fake_cuda_kernel_hook hook;
static void *hook_ctx;
static int graphs_made;

EXPORT void fake_cuda_on_kernel(fake_cuda_kernel_hook h, void *ctx) { hook = h, hook_ctx = ctx; }

static void push(stream *s, op o) {
  if (s->nops == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->ops = realloc(s->ops, sizeof *s->ops * (size_t)s->cap);
    if (!s->ops) abort();
  }
  s->ops[s->nops++] = o;
}

/* The executor's accumulator (driver/exec_cuda.c): nothing else of a kernel can run here. */
static void accumulate(const node *n) {
  float *loss, l;
  nnc_cuda_losses *acc;
  const nnc_cuda_step_values *sv;
  long long count;
  memcpy(&loss, n->params[0], 8), memcpy(&acc, n->params[1], 8), memcpy(&sv, n->params[2], 8);
  memcpy(&count, n->params[3], 8);
  l = *loss;
  acc->last = l;
  acc->steps += 1;
  if (l - l == 0.0f) acc->sum += (double)l * (double)count, acc->examples += count;
  else if (acc->first_nonfinite == 0) acc->first_nonfinite = (long long)sv->step + 1, acc->nonfinite_loss = l;
}

static void run_op(op *o) {
  switch (o->kind) {
  case OP_COPY_IN:
    if (o->snapshot) memcpy(o->dst, o->snapshot, o->bytes);
    else {
      if (checksum(o->src, o->bytes) != o->sum) violation("a pinned source changed before its copy ran");
      memcpy(o->dst, o->src, o->bytes);
    }
    free(o->snapshot);
    break;
  case OP_COPY_OUT: memcpy(o->dst, o->src, o->bytes); break;
  case OP_GRAPH:
    say("run graph %d (%d nodes)", o->g->id, o->g->nnodes);
    for (int i = 0; i < o->g->nnodes; i++) {
      const node *n = &o->g->nodes[i];
      void *params[MAX_PARAMS];
      for (int p = 0; p < n->fn->nparams; p++) params[p] = (void *)n->params[p];
      if (hook) hook(n->fn->name, n->grid, n->block, params, n->fn->nparams, hook_ctx);
      if (strcmp(n->fn->name, NNC_CUDA_ACCUMULATE_KERNEL) == 0) accumulate(n);
    }
    break;
  case OP_EVENT: o->ev->recorded_pending = false; break;
  }
}

/* Runs the stream's queue up to and including op `upto` (all of it: s->nops - 1). */
static void drain(stream *s, int upto) {
  int k = upto + 1;
  for (int i = 0; i < k; i++) run_op(&s->ops[i]);
  if (s->nops > k) memmove(s->ops, s->ops + k, sizeof *s->ops * (size_t)(s->nops - k)); /* ops may be NULL */
  s->nops -= k;
}

static stream *the_stream; /* the executor makes one */

/* ---- the API ---- */

EXPORT CUresult cuInit(unsigned flags) {
  read_env_failure();
  say("cuInit %u", flags);
  ENTER(cuInit);
  return 0;
}

/* The driver's private tables, which NVRTC asks a loaded libcuda.so.1 for: none here. */
EXPORT CUresult cuGetExportTable(const void **table, const void *id) {
  (void)id;
  say("cuGetExportTable");
  *table = NULL;
  return 801; /* CUDA_ERROR_NOT_SUPPORTED */
}

EXPORT CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
EXPORT CUresult cuDeviceGetCount(int *n) { ENTER(cuDeviceGetCount); *n = 1; return 0; }
EXPORT CUresult cuDeviceGet(CUdevice *d, int i) { ENTER(cuDeviceGet); *d = i; return 0; }
EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
  (void)d;
  snprintf(name, (size_t)len, "nnc fake device");
  return 0;
}

EXPORT CUresult cuDeviceGetAttribute(int *v, int attr, CUdevice d) {
  (void)d;
  *v = attr == NNC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR ? 9
       : attr == NNC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR ? 0
       : attr == NNC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT ? 132 : 0;
  return 0;
}

EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice d) { (void)d; *bytes = (size_t)1 << 30; return 0; }

static int ctx_token;
EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) {
  (void)d;
  say("cuDevicePrimaryCtxRetain");
  ENTER(cuDevicePrimaryCtxRetain);
  *c = (CUcontext)&ctx_token;
  return 0;
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { (void)d; say("cuDevicePrimaryCtxRelease_v2"); return 0; }
EXPORT CUresult cuCtxSetCurrent(CUcontext c) { ENTER(cuCtxSetCurrent); return c == (CUcontext)&ctx_token ? 0 : violation("cuCtxSetCurrent: not the primary context"); }

EXPORT CUresult cuModuleLoadData(CUmodule *m, const void *image) {
  say("cuModuleLoadData");
  ENTER(cuModuleLoadData);
  module *mod = calloc(1, sizeof *mod);
  if (!mod) return NNC_CUDA_ERROR_OUT_OF_MEMORY;
  if (!parse_entries(image, mod)) {
    free(mod);
    return violation("cuModuleLoadData: the image is not PTX with .entry declarations fake_cuda reads");
  }
  *m = (CUmodule)mod;
  return 0;
}

EXPORT CUresult cuModuleUnload(CUmodule m) { say("cuModuleUnload"); free(m); return 0; }

EXPORT CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
  ENTER(cuModuleGetFunction);
  module *mod = (module *)m;
  for (int i = 0; i < mod->nfn; i++)
    if (strcmp(mod->fn[i].name, name) == 0) {
      *f = (CUfunction)&mod->fn[i];
      return 0;
    }
  say("cuModuleGetFunction %s: not in the PTX", name);
  return 500; /* CUDA_ERROR_NOT_FOUND */
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes) {
  say("cuMemAlloc_v2 %zu", bytes);
  ENTER(cuMemAlloc_v2);
  void *q;
  CUresult r = new_alloc(&q, bytes, false);
  if (!r) *p = (CUdeviceptr)(uintptr_t)q;
  return r;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr p) { say("cuMemFree_v2"); return free_alloc((void *)(uintptr_t)p, false, "cuMemFree"); }

EXPORT CUresult cuMemHostAlloc(void **p, size_t bytes, unsigned flags) {
  say("cuMemHostAlloc %zu flags=%u", bytes, flags);
  ENTER(cuMemHostAlloc);
  return new_alloc(p, bytes, true);
}

EXPORT CUresult cuMemFreeHost(void *p) { say("cuMemFreeHost"); return free_alloc(p, true, "cuMemFreeHost"); }

static CUresult not_capturing(const stream *s, const char *fn) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s on a capturing stream", fn);
  return s && s->capturing ? violation(msg) : 0;
}

static CUresult known_stream(CUstream h, const char *fn) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s on %s", fn, h ? "an unknown stream" : "the NULL stream (the executor has its own)");
  return h && (stream *)h == the_stream ? 0 : violation(msg);
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, CUstream h) {
  CUresult r = known_stream(h, "cuMemcpyHtoDAsync");
  if (r) return r;
  stream *s = (stream *)h;
  alloc *d = find_alloc((void *)(uintptr_t)dst, bytes, false);
  alloc *pin = find_alloc(src, bytes, true);
  say("cuMemcpyHtoDAsync_v2 %zu %s -> device %d+%zu", bytes, pin ? "pinned" : "pageable", d ? alloc_index(d) : -1,
      d ? (size_t)((uint8_t *)(uintptr_t)dst - d->p) : 0);
  ENTER(cuMemcpyHtoDAsync_v2);
  if ((r = not_capturing(s, "cuMemcpyHtoDAsync"))) return r;
  if (!d) return violation("cuMemcpyHtoDAsync: the destination is not inside one device allocation");
  op o = {.kind = OP_COPY_IN, .dst = (uint8_t *)(uintptr_t)dst, .src = src, .bytes = bytes};
  if (pin) o.sum = checksum(src, bytes);
  else {
    o.snapshot = malloc(bytes ? bytes : 1);
    memcpy(o.snapshot, src, bytes);
  }
  push(s, o);
  return 0;
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes, CUstream h) {
  CUresult r = known_stream(h, "cuMemcpyDtoHAsync");
  if (r) return r;
  stream *s = (stream *)h;
  alloc *d = find_alloc((void *)(uintptr_t)src, bytes, false);
  alloc *pin = find_alloc(dst, bytes, true);
  say("cuMemcpyDtoHAsync_v2 %zu device %d+%zu -> %s", bytes, d ? alloc_index(d) : -1,
      d ? (size_t)((uint8_t *)(uintptr_t)src - d->p) : 0, pin ? "pinned" : "pageable");
  ENTER(cuMemcpyDtoHAsync_v2);
  if ((r = not_capturing(s, "cuMemcpyDtoHAsync"))) return r;
  if (!d) return violation("cuMemcpyDtoHAsync: the source is not inside one device allocation");
  push(s, (op){.kind = OP_COPY_OUT, .dst = dst, .src = (const uint8_t *)(uintptr_t)src, .bytes = bytes});
  if (!pin) drain(s, s->nops - 1); /* to pageable memory the call returns when the copy is done */
  return 0;
}

EXPORT CUresult cuStreamCreate(CUstream *h, unsigned flags) {
  say("cuStreamCreate flags=%u", flags);
  ENTER(cuStreamCreate);
  if (the_stream) return violation("cuStreamCreate: a second stream");
  the_stream = calloc(1, sizeof *the_stream);
  *h = (CUstream)the_stream;
  return 0;
}

EXPORT CUresult cuStreamDestroy_v2(CUstream h) {
  say("cuStreamDestroy_v2");
  CUresult r = known_stream(h, "cuStreamDestroy");
  if (r) return r;
  if (the_stream->nops) violation("cuStreamDestroy: work still queued");
  free(the_stream->ops);
  free(the_stream);
  the_stream = NULL;
  return 0;
}

EXPORT CUresult cuStreamSynchronize(CUstream h) {
  CUresult r = known_stream(h, "cuStreamSynchronize");
  if (r) return r;
  say("cuStreamSynchronize (%d queued)", the_stream->nops);
  ENTER(cuStreamSynchronize);
  if ((r = not_capturing(the_stream, "cuStreamSynchronize"))) return r;
  drain(the_stream, the_stream->nops - 1);
  return 0;
}

EXPORT CUresult cuEventCreate(CUevent *e, unsigned flags) {
  say("cuEventCreate flags=%u", flags);
  ENTER(cuEventCreate);
  *e = (CUevent)calloc(1, sizeof(event));
  return 0;
}

EXPORT CUresult cuEventDestroy_v2(CUevent e) { say("cuEventDestroy_v2"); free(e); return 0; }

EXPORT CUresult cuEventRecord(CUevent e, CUstream h) {
  CUresult r = known_stream(h, "cuEventRecord");
  if (r) return r;
  say("cuEventRecord");
  ENTER(cuEventRecord);
  if ((r = not_capturing(the_stream, "cuEventRecord"))) return r;
  event *ev = (event *)e;
  ev->recorded_pending = true;
  push(the_stream, (op){.kind = OP_EVENT, .ev = ev});
  return 0;
}

EXPORT CUresult cuEventSynchronize(CUevent e) {
  event *ev = (event *)e;
  say("cuEventSynchronize");
  ENTER(cuEventSynchronize);
  if (!ev->recorded_pending) return 0;
  if (the_stream->capturing) return violation("cuEventSynchronize while the stream captures");
  for (int i = 0; i < the_stream->nops; i++)
    if (the_stream->ops[i].kind == OP_EVENT && the_stream->ops[i].ev == ev) drain(the_stream, i);
  return 0;
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned shared, CUstream h, void **params, void **extra) {
  const function *fn = (const function *)f;
  CUresult r = known_stream(h, "cuLaunchKernel");
  if (r) return r;
  say("cuLaunchKernel %s grid=(%u,%u,%u) block=(%u,%u,%u)%s", fn->name, gx, gy, gz, bx, by, bz,
      the_stream->capturing ? " captured" : "");
  ENTER(cuLaunchKernel);
  if (!the_stream->capturing) return violation("cuLaunchKernel outside a capture (the executor replays graphs)");
  if (shared || extra || !params) return violation("cuLaunchKernel: dynamic shared memory or extra");
  if ((uint64_t)bx * by * bz > 1024 || !gx || !gy || !gz) return violation("cuLaunchKernel: a launch CUDA refuses");
  graph *g = the_stream->capture;
  if (g->nnodes == g->cap) {
    g->cap = g->cap ? 2 * g->cap : 16;
    g->nodes = realloc(g->nodes, sizeof *g->nodes * (size_t)g->cap);
  }
  node *n = &g->nodes[g->nnodes++];
  *n = (node){.fn = fn, .grid = {gx, gy, gz}, .block = {bx, by, bz}};
  for (int p = 0; p < fn->nparams; p++) memcpy(n->params[p], params[p], (size_t)fn->param_bytes[p]);
  return 0;
}

EXPORT CUresult cuStreamBeginCapture_v2(CUstream h, int mode) {
  CUresult r = known_stream(h, "cuStreamBeginCapture");
  if (r) return r;
  say("cuStreamBeginCapture_v2 mode=%d", mode);
  ENTER(cuStreamBeginCapture_v2);
  if (the_stream->capturing) return violation("cuStreamBeginCapture: already capturing");
  the_stream->capturing = true;
  the_stream->capture = calloc(1, sizeof(graph));
  the_stream->capture->id = ++graphs_made;
  return 0;
}

EXPORT CUresult cuStreamEndCapture(CUstream h, CUgraph *out) {
  CUresult r = known_stream(h, "cuStreamEndCapture");
  if (r) return r;
  if (!the_stream->capturing) return violation("cuStreamEndCapture without a capture");
  graph *g = the_stream->capture;
  the_stream->capturing = false, the_stream->capture = NULL;
  say("cuStreamEndCapture graph %d (%d nodes)", g->id, g->nnodes);
  *out = (CUgraph)g;
  return injected("cuStreamEndCapture");
}

EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *e, CUgraph g, unsigned long long flags) {
  say("cuGraphInstantiateWithFlags graph %d", ((graph *)g)->id);
  ENTER(cuGraphInstantiateWithFlags);
  if (flags) return violation("cuGraphInstantiate: flags");
  const graph *src = (const graph *)g;
  graph *copy = calloc(1, sizeof *copy);
  *copy = *src;
  copy->nodes = malloc(sizeof *copy->nodes * (size_t)(src->nnodes ? src->nnodes : 1));
  memcpy(copy->nodes, src->nodes, sizeof *copy->nodes * (size_t)src->nnodes);
  copy->cap = src->nnodes;
  *e = (CUgraphExec)copy;
  return 0;
}

EXPORT CUresult cuGraphLaunch(CUgraphExec e, CUstream h) {
  CUresult r = known_stream(h, "cuGraphLaunch");
  if (r) return r;
  say("cuGraphLaunch graph %d", ((graph *)e)->id);
  ENTER(cuGraphLaunch);
  if ((r = not_capturing(the_stream, "cuGraphLaunch"))) return r;
  push(the_stream, (op){.kind = OP_GRAPH, .g = (const graph *)e});
  return 0;
}

/* An executable graph still queued is freed when it has run, as the driver does; here it is
 * kept (the test process is short). */
EXPORT CUresult cuGraphExecDestroy(CUgraphExec e) {
  say("cuGraphExecDestroy graph %d", ((graph *)e)->id);
  for (int i = 0; the_stream && i < the_stream->nops; i++)
    if (the_stream->ops[i].kind == OP_GRAPH && the_stream->ops[i].g == (const graph *)e) return 0;
  free(((graph *)e)->nodes);
  free(e);
  return 0;
}

EXPORT CUresult cuGraphDestroy(CUgraph g) {
  say("cuGraphDestroy graph %d", ((graph *)g)->id);
  free(((graph *)g)->nodes);
  free(g);
  return 0;
}
