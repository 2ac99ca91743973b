/* The CUDA executor backend (driver/exec_cuda.h). */
#include "driver/exec_cuda.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda.h"
#include "codegen/cuda_api.h"
#include "codegen/cuda_load.h"
#include "codegen/cuda_program.h"

enum {
  MAX_PROGRAMS = 8,
  MAX_GRAPHS = 8,     /* captured (program, n) pairs kept; training needs two per program */
  SLOTS = 2,          /* staging slots: a step's inputs are copied while the one before runs */
  REGIONS = 4,        /* persist, io, scratch (nnc_mem_region order), then the control block */
  CONTROL = 3,
};

/* The accumulator, appended to the model's CUDA C (its struct mirrors nnc_cuda_losses). A loss
 * is finite when l - l is 0 (NaN and ±inf give NaN): no math header needed. */
static const char accumulate_source[] =
    "/* ---- the executor's loss accumulator (driver/exec_cuda.c) ---- */\n"
    "struct nnc_losses { double sum; long long examples, steps, first_nonfinite; float last, nonfinite_loss; };\n"
    "extern \"C\" __global__ void __launch_bounds__(1) nnc_accumulate_loss(const float *__restrict__ loss,\n"
    "    nnc_losses *__restrict__ acc, const nnc_step_values *__restrict__ sv, long long n) {\n"
    "  const float l = *loss;\n"
    "  acc->last = l;\n"
    "  acc->steps += 1;\n"
    "  if (l - l == 0.0f) {\n"
    "    acc->sum += (double)l * (double)n;\n"
    "    acc->examples += n;\n"
    "  } else if (acc->first_nonfinite == 0) {\n"
    "    acc->first_nonfinite = (long long)sv->step + 1;\n"
    "    acc->nonfinite_loss = l;\n"
    "  }\n"
    "}\n";

typedef struct cu_api {
  void *lib;
  cuInit_fn init;
  cuDeviceGet_fn device_get;
  cuDevicePrimaryCtxRetain_fn ctx_retain;
  cuDevicePrimaryCtxRelease_v2_fn ctx_release;
  cuCtxSetCurrent_fn ctx_set;
  cuModuleLoadData_fn module_load;
  cuModuleUnload_fn module_unload;
  cuModuleGetFunction_fn get_function;
  cuMemAlloc_v2_fn mem_alloc;
  cuMemFree_v2_fn mem_free;
  cuMemHostAlloc_fn host_alloc;
  cuMemFreeHost_fn host_free;
  cuMemcpyHtoDAsync_v2_fn htod;
  cuMemcpyDtoHAsync_v2_fn dtoh;
  cuStreamCreate_fn stream_create;
  cuStreamDestroy_v2_fn stream_destroy;
  cuStreamSynchronize_fn stream_sync;
  cuEventCreate_fn event_create;
  cuEventRecord_fn event_record;
  cuEventSynchronize_fn event_sync;
  cuEventDestroy_v2_fn event_destroy;
  cuLaunchKernel_fn launch;
  cuStreamBeginCapture_v2_fn begin_capture;
  cuStreamEndCapture_fn end_capture;
  cuGraphInstantiateWithFlags_fn instantiate;
  cuGraphLaunch_fn graph_launch;
  cuGraphExecDestroy_fn graph_exec_destroy;
  cuGraphDestroy_fn graph_destroy;
} cu_api;

typedef struct cuda_exec cuda_exec;

typedef struct cu_program {
  cuda_exec *x;
  nnc_lprogram *p;
  int *fn;                    /* per kernel of p: its function slot */
  bool writes_persist, is_train;
} cu_program;

/* One program captured at one batch size, with or without the loss accumulation. */
typedef struct cu_graph {
  const cu_program *prog;     /* NULL: a free entry */
  int64_t n;
  bool accumulate;
  CUgraph graph;
  CUgraphExec exec;
  uint64_t last_use;
} cu_graph;

/* Pinned staging for one call: the inputs at their io offsets, the step's values. The event
 * marks the end of the copies out of it; the slot is not written again before. */
typedef struct slot {
  uint8_t *io;
  nnc_cuda_step_values *values;
  CUevent copied;
  bool in_flight;
} slot;

struct cuda_exec {
  nnc_arena *arena;
  const nnc_rt_model *rm;
  cu_api cu;
  CUdevice dev;
  CUcontext ctx;
  CUmodule mod;
  CUstream stream;
  CUfunction *fn;
  CUfunction accumulate;
  const nnc_kernel **kernels; /* per function slot */
  int nfn;
  CUdeviceptr region[REGIONS];
  size_t bytes[REGIONS];
  void *pinned;               /* one pinned block: the slots, the losses read back, zeros */
  slot slots[SLOTS];
  int next_slot;
  nnc_cuda_losses *losses_in, *losses_zero;
  cu_graph graphs[MAX_GRAPHS];
  uint64_t uses;
  bool resident;
  CUdeviceptr loss;           /* resident: the loss scalar in io */
  cu_program progs[MAX_PROGRAMS];
  int nprogs;
};

static bool cu_fail(char *err, size_t cap, const char *what, CUresult r) {
  snprintf(err, cap, "CUDA: %s failed: %s (%d)", what, nnc_cg_cuda_error_name(r), r);
  return false;
}

static bool load_api(cu_api *c, char *err, size_t cap) {
  if (!(c->lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)))
    return snprintf(err, cap, "no CUDA driver: libcuda.so.1 not found"), false;
  struct { void *slot; const char *name; } syms[] = {
      {&c->init, "cuInit"}, {&c->device_get, "cuDeviceGet"}, {&c->ctx_retain, "cuDevicePrimaryCtxRetain"},
      {&c->ctx_release, "cuDevicePrimaryCtxRelease_v2"}, {&c->ctx_set, "cuCtxSetCurrent"},
      {&c->module_load, "cuModuleLoadData"}, {&c->module_unload, "cuModuleUnload"},
      {&c->get_function, "cuModuleGetFunction"}, {&c->mem_alloc, "cuMemAlloc_v2"}, {&c->mem_free, "cuMemFree_v2"},
      {&c->host_alloc, "cuMemHostAlloc"}, {&c->host_free, "cuMemFreeHost"},
      {&c->htod, "cuMemcpyHtoDAsync_v2"}, {&c->dtoh, "cuMemcpyDtoHAsync_v2"},
      {&c->stream_create, "cuStreamCreate"}, {&c->stream_destroy, "cuStreamDestroy_v2"},
      {&c->stream_sync, "cuStreamSynchronize"}, {&c->event_create, "cuEventCreate"},
      {&c->event_record, "cuEventRecord"}, {&c->event_sync, "cuEventSynchronize"},
      {&c->event_destroy, "cuEventDestroy_v2"}, {&c->launch, "cuLaunchKernel"},
      {&c->begin_capture, "cuStreamBeginCapture_v2"}, {&c->end_capture, "cuStreamEndCapture"},
      {&c->instantiate, "cuGraphInstantiateWithFlags"}, {&c->graph_launch, "cuGraphLaunch"},
      {&c->graph_exec_destroy, "cuGraphExecDestroy"}, {&c->graph_destroy, "cuGraphDestroy"},
  };
  for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
    void *p = dlsym(c->lib, syms[i].name);
    if (!p) return snprintf(err, cap, "no usable CUDA driver: libcuda.so.1 has no %s", syms[i].name), false;
    memcpy(syms[i].slot, &p, sizeof p); /* POSIX: a function's address through void * */
  }
  return true;
}

static void drop_graph(cuda_exec *x, cu_graph *g) {
  if (g->exec) x->cu.graph_exec_destroy(g->exec);
  if (g->graph) x->cu.graph_destroy(g->graph);
  *g = (cu_graph){0};
}

static void destroy(void *lib) {
  cuda_exec *x = lib;
  if (x->ctx) {
    x->cu.ctx_set(x->ctx);
    if (x->stream) x->cu.stream_sync(x->stream); /* nothing may still read what is freed below */
    for (int i = 0; i < MAX_GRAPHS; i++) drop_graph(x, &x->graphs[i]);
    for (int i = 0; i < SLOTS; i++)
      if (x->slots[i].copied) x->cu.event_destroy(x->slots[i].copied);
    if (x->stream) x->cu.stream_destroy(x->stream);
    if (x->pinned) x->cu.host_free(x->pinned);
    for (int r = 0; r < REGIONS; r++)
      if (x->region[r]) x->cu.mem_free(x->region[r]);
    if (x->mod) x->cu.module_unload(x->mod);
    x->cu.ctx_release(x->dev);
  }
  if (x->cu.lib) dlclose(x->cu.lib);
  free(x->fn);
  nnc_arena_free(x->arena);
  free(x);
}

static cu_program *find_program(cuda_exec *x, const char *name) {
  for (int i = 0; i < x->nprogs; i++)
    if (strcmp(x->progs[i].p->name, name) == 0) return &x->progs[i];
  return NULL;
}

/* ---- capture: the program's kernels launched on the stream while it records a graph ---- */

static bool launch_call(cuda_exec *x, const cu_program *cp, const nnc_lcall *c, int64_t n, char *err, size_t cap) {
  const nnc_lprogram *p = cp->p;
  const nnc_kernel *k = p->kernels[c->kernel];
  int64_t grid[3], block[3];
  if (!nnc_cg_cuda_launch_dims(k, n, grid, block, err, cap)) return false;
  if (grid[0] < 1 || grid[1] < 1 || grid[2] < 1) return true; /* nothing to do at this n */
  /* the driver copies the values when the launch is captured: these need not outlive the call */
  CUdeviceptr *bufs = nnc_xcalloc((size_t)c->nbufs + 1, sizeof *bufs);
  void **params = nnc_xcalloc((size_t)c->nbufs + 2, sizeof *params);
  int np = 0;
  for (int j = 0; j < c->nbufs; j++) {
    const nnc_mem_buffer *b = &p->plan->bufs[c->bufs[j]];
    bufs[j] = x->region[b->region] + (CUdeviceptr)(b->offset + nnc_lcall_offset(c, j));
    params[np++] = &bufs[j];
  }
  /* n is baked into the graph (one per n); lr, step and seed are read from the control block */
  long long n_param = n;
  CUdeviceptr values = x->region[CONTROL] + NNC_CUDA_CONTROL_STEP_VALUES;
  if (k->uses_scalar[NNC_LSC_N]) params[np++] = &n_param;
  if (k->uses_scalar[NNC_LSC_LR] || k->uses_scalar[NNC_LSC_STEP] || k->uses_scalar[NNC_LSC_SEED])
    params[np++] = &values;
  CUresult r = x->cu.launch(x->fn[cp->fn[c->kernel]], (unsigned)grid[0], (unsigned)grid[1], (unsigned)grid[2],
                            (unsigned)block[0], (unsigned)block[1], (unsigned)block[2], 0, x->stream, params, NULL);
  free(bufs), free(params);
  return r == 0 || cu_fail(err, cap, k->name, r);
}

static bool launch_accumulate(cuda_exec *x, int64_t n, char *err, size_t cap) {
  CUdeviceptr loss = x->loss, acc = x->region[CONTROL] + NNC_CUDA_CONTROL_LOSSES,
              values = x->region[CONTROL] + NNC_CUDA_CONTROL_STEP_VALUES;
  long long n_param = n;
  void *params[] = {&loss, &acc, &values, &n_param};
  CUresult r = x->cu.launch(x->accumulate, 1, 1, 1, 1, 1, 1, 0, x->stream, params, NULL);
  return r == 0 || cu_fail(err, cap, NNC_CUDA_ACCUMULATE_KERNEL, r);
}

static bool capture(cuda_exec *x, const cu_program *cp, int64_t n, bool accumulate, cu_graph *g, char *err,
                    size_t cap) {
  CUresult r = x->cu.begin_capture(x->stream, NNC_CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
  if (r) return cu_fail(err, cap, "cuStreamBeginCapture", r);
  bool ok = true;
  for (int i = 0; ok && i < cp->p->ncalls; i++) ok = launch_call(x, cp, &cp->p->calls[i], n, err, cap);
  if (ok && accumulate) ok = launch_accumulate(x, n, err, cap);
  CUgraph graph = NULL;
  r = x->cu.end_capture(x->stream, &graph); /* also after a failed launch: the stream leaves capture */
  if (ok && r) ok = cu_fail(err, cap, "cuStreamEndCapture", r);
  CUgraphExec exec = NULL;
  if (ok && (r = x->cu.instantiate(&exec, graph, 0)) != 0) ok = cu_fail(err, cap, "cuGraphInstantiate", r);
  if (!ok) {
    if (graph) x->cu.graph_destroy(graph);
    return false;
  }
  *g = (cu_graph){.prog = cp, .n = n, .accumulate = accumulate, .graph = graph, .exec = exec};
  return true;
}

/* The graph of cp at n, captured now if it is not kept; the least recently used one makes room. */
static cu_graph *graph_for(cuda_exec *x, const cu_program *cp, int64_t n, bool accumulate, char *err, size_t cap) {
  cu_graph *victim = &x->graphs[0];
  for (int i = 0; i < MAX_GRAPHS; i++) {
    cu_graph *g = &x->graphs[i];
    if (g->prog == cp && g->n == n && g->accumulate == accumulate) {
      g->last_use = ++x->uses;
      return g;
    }
    if (!g->prog || (victim->prog && g->last_use < victim->last_use)) victim = g;
  }
  drop_graph(x, victim);
  if (!capture(x, cp, n, accumulate, victim, err, cap)) return NULL;
  victim->last_use = ++x->uses;
  return victim;
}

/* ---- copies ---- */

static bool htod(cuda_exec *x, CUdeviceptr dst, const void *src, size_t bytes, char *err, size_t cap) {
  CUresult r = x->cu.htod(dst, src, bytes, x->stream);
  return r == 0 || cu_fail(err, cap, "cuMemcpyHtoDAsync", r);
}

static bool dtoh(cuda_exec *x, void *dst, CUdeviceptr src, size_t bytes, char *err, size_t cap) {
  CUresult r = x->cu.dtoh(dst, src, bytes, x->stream);
  return r == 0 || cu_fail(err, cap, "cuMemcpyDtoHAsync", r);
}

static bool wait_stream(cuda_exec *x, const char *what, char *err, size_t cap) {
  CUresult r = x->cu.stream_sync(x->stream);
  return r == 0 || cu_fail(err, cap, what, r);
}

/* The next staging slot, once the copies queued out of it have run. */
static slot *take_slot(cuda_exec *x, char *err, size_t cap) {
  slot *s = &x->slots[x->next_slot];
  x->next_slot = (x->next_slot + 1) % SLOTS;
  CUresult r = s->in_flight ? x->cu.event_sync(s->copied) : 0;
  if (r) return cu_fail(err, cap, "waiting for a staging buffer", r), NULL;
  s->in_flight = false;
  return s;
}

/* Queues a call's copies to the device: the step's values and the batch inputs through a pinned
 * slot, or (not resident) the caller's whole persist and io. */
static bool queue_inputs(cuda_exec *x, const uint8_t *persist, const uint8_t *io, const nnc_args *a, char *err,
                         size_t cap) {
  slot *s = take_slot(x, err, cap);
  if (!s) return false;
  *s->values = (nnc_cuda_step_values){.lr = a->lr, .step = (uint32_t)a->step, .seed = a->seed};
  bool ok = htod(x, x->region[CONTROL] + NNC_CUDA_CONTROL_STEP_VALUES, s->values, sizeof *s->values, err, cap);
  if (!x->resident) {
    ok = ok && htod(x, x->region[NNC_MEM_PERSIST], persist, x->bytes[NNC_MEM_PERSIST], err, cap) &&
         htod(x, x->region[NNC_MEM_IO], io, x->bytes[NNC_MEM_IO], err, cap);
  } else {
    for (int i = 0; ok && i < x->rm->nbuffers; i++) {
      const nnc_rt_buffer *b = &x->rm->buffers[i];
      if (b->region != NNC_RT_IO || b->kind != NNC_RT_INPUT) continue;
      memcpy(s->io + b->offset, io + b->offset, b->bytes);
      ok = htod(x, x->region[NNC_MEM_IO] + b->offset, s->io + b->offset, b->bytes, err, cap);
    }
  }
  CUresult r = ok ? x->cu.event_record(s->copied, x->stream) : 0;
  if (r) return cu_fail(err, cap, "cuEventRecord", r);
  s->in_flight = ok;
  return ok;
}

/* Resident: the outputs, through the pinned slot last written, into the caller's io. */
static bool read_outputs(cuda_exec *x, uint8_t *io, const char *program, char *err, size_t cap) {
  slot *s = &x->slots[(x->next_slot + SLOTS - 1) % SLOTS];
  for (int i = 0; i < x->rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &x->rm->buffers[i];
    if (b->region == NNC_RT_IO && b->kind == NNC_RT_OUTPUT &&
        !dtoh(x, s->io + b->offset, x->region[NNC_MEM_IO] + b->offset, b->bytes, err, cap))
      return false;
  }
  if (!wait_stream(x, program, err, cap)) return false;
  for (int i = 0; i < x->rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &x->rm->buffers[i];
    if (b->region == NNC_RT_IO && b->kind == NNC_RT_OUTPUT) memcpy(io + b->offset, s->io + b->offset, b->bytes);
  }
  return true;
}

/* ---- running ---- */

/* Program cp over the caller's regions (a's), or, resident, over the device's persist. */
static bool run_program(void *ctx, const nnc_args *a, char *err, size_t cap) {
  cu_program *cp = ctx;
  cuda_exec *x = cp->x;
  const char *program = cp->p->name;
  CUresult r;
  if ((r = x->cu.ctx_set(x->ctx)) != 0) return cu_fail(err, cap, "cuCtxSetCurrent", r);
  bool accumulate = x->resident && cp->is_train;
  cu_graph *g = graph_for(x, cp, a->n, accumulate, err, cap);
  if (!g || !queue_inputs(x, a->persist, a->io, a, err, cap)) return false;
  if ((r = x->cu.graph_launch(g->exec, x->stream)) != 0) return cu_fail(err, cap, "cuGraphLaunch", r);
  if (accumulate) return true; /* queued: its loss is read with the others' */
  if (x->resident) return read_outputs(x, a->io, program, err, cap);
  return dtoh(x, a->io, x->region[NNC_MEM_IO], x->bytes[NNC_MEM_IO], err, cap) &&
         (!cp->writes_persist || dtoh(x, a->persist, x->region[NNC_MEM_PERSIST], x->bytes[NNC_MEM_PERSIST], err, cap)) &&
         wait_stream(x, program, err, cap);
}

static nnc_rt_entry symbol(void *lib, const char *program) {
  cu_program *cp = find_program(lib, program);
  return (nnc_rt_entry){.run = cp ? run_program : NULL, .ctx = cp};
}

/* ---- residency ---- */

static bool resident_begin(void *lib, const uint8_t *persist, const nnc_rt_buffer *loss, char *err, size_t cap) {
  cuda_exec *x = lib;
  if (loss->region != NNC_RT_IO || loss->dtype != NNC_RT_F32 || loss->bytes < 4)
    return snprintf(err, cap, "the loss '%s' is not an f32 scalar in io", loss->name), false;
  CUresult r;
  if ((r = x->cu.ctx_set(x->ctx)) != 0) return cu_fail(err, cap, "cuCtxSetCurrent", r);
  x->loss = x->region[NNC_MEM_IO] + loss->offset;
  if (!htod(x, x->region[NNC_MEM_PERSIST], persist, x->bytes[NNC_MEM_PERSIST], err, cap) ||
      !htod(x, x->region[CONTROL] + NNC_CUDA_CONTROL_LOSSES, x->losses_zero, sizeof *x->losses_zero, err, cap) ||
      !wait_stream(x, "copying persist to the device", err, cap))
    return false;
  x->resident = true;
  return true;
}

/* The accumulator read back and cleared in stream order, then the one wait. */
static bool resident_losses(void *lib, nnc_rt_losses *out, char *err, size_t cap) {
  cuda_exec *x = lib;
  CUdeviceptr acc = x->region[CONTROL] + NNC_CUDA_CONTROL_LOSSES;
  CUresult r;
  if ((r = x->cu.ctx_set(x->ctx)) != 0) return cu_fail(err, cap, "cuCtxSetCurrent", r);
  if (!dtoh(x, x->losses_in, acc, sizeof *x->losses_in, err, cap) ||
      !htod(x, acc, x->losses_zero, sizeof *x->losses_zero, err, cap) ||
      !wait_stream(x, "running the queued train steps", err, cap))
    return false;
  const nnc_cuda_losses *l = x->losses_in;
  *out = (nnc_rt_losses){.steps = l->steps, .examples = l->examples, .sum = l->sum, .last = l->last,
                         .first_nonfinite = l->first_nonfinite, .nonfinite_loss = l->nonfinite_loss};
  return true;
}

static bool resident_pull(void *lib, uint8_t *persist, char *err, size_t cap) {
  cuda_exec *x = lib;
  CUresult r;
  if ((r = x->cu.ctx_set(x->ctx)) != 0) return cu_fail(err, cap, "cuCtxSetCurrent", r);
  return dtoh(x, persist, x->region[NNC_MEM_PERSIST], x->bytes[NNC_MEM_PERSIST], err, cap) &&
         wait_stream(x, "copying persist from the device", err, cap);
}

static void resident_end(void *lib) { ((cuda_exec *)lib)->resident = false; }

static const nnc_rt_backend cuda_backend = {.name = "cuda", .symbol = symbol, .free = destroy,
                                            .resident_begin = resident_begin, .resident_losses = resident_losses,
                                            .resident_pull = resident_pull, .resident_end = resident_end};

/* ---- setup ---- */

/* The programs of c, their kernels named apart, each distinct kernel a function slot. */
static bool take_programs(cuda_exec *x, const nnc_compiled *c, char *err, size_t cap) {
  if (!c->gpu) return snprintf(err, cap, "the programs were not compiled for the GPU"), false;
  const nnc_mem_layout *L = c->layout;
  nnc_lprogram *progs[MAX_PROGRAMS];
  for (int i = 0; i < c->nprograms && x->nprogs < MAX_PROGRAMS; i++) {
    const nnc_compiled_program *p = &c->programs[i];
    x->progs[x->nprogs] = (cu_program){.x = x, .p = p->lowered, .is_train = strcmp(p->name, "train_step") == 0};
    x->progs[x->nprogs].writes_persist = x->progs[x->nprogs].is_train || p->graph->nstate > 0;
    progs[x->nprogs++] = p->lowered;
  }
  int64_t scratch = c->scratch_bytes;
  nnc_cg_cuda_name_kernels(progs, x->nprogs);
  nnc_kernel_set u;
  nnc_kernel_set_build(&u, progs, x->nprogs);
  x->kernels = nnc_arena_alloc(x->arena, sizeof *x->kernels * (size_t)(u.n + 1));
  for (x->nfn = 0; x->nfn < u.n; x->nfn++) x->kernels[x->nfn] = u.list[x->nfn];
  for (int i = 0; i < x->nprogs; i++) {
    cu_program *cp = &x->progs[i];
    cp->fn = nnc_arena_alloc(x->arena, sizeof *cp->fn * (size_t)(cp->p->nkernels + 1));
    for (int k = 0; k < cp->p->nkernels; k++) cp->fn[k] = u.index[i][k];
  }
  nnc_kernel_set_free(&u);
  x->bytes[NNC_MEM_PERSIST] = (size_t)L->persist_bytes;
  x->bytes[NNC_MEM_IO] = (size_t)L->io_bytes;
  x->bytes[NNC_MEM_SCRATCH] = (size_t)scratch;
  x->bytes[CONTROL] = NNC_CUDA_CONTROL_BYTES;
  return true;
}

/* The CUDA C of the programs (lr, step and seed in device memory) and the accumulator through
 * NVRTC for the device, loaded as a module. */
static bool load_module(cuda_exec *x, const nnc_module *m, const char *arch, char *err, size_t cap) {
  nnc_lprogram *progs[MAX_PROGRAMS];
  for (int i = 0; i < x->nprogs; i++) progs[i] = x->progs[i].p;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return snprintf(err, cap, "out of memory"), false;
  nnc_diags d; /* the executor's channel is err */
  nnc_diags_init_buffer(&d, err, cap);
  bool ok = nnc_cg_cuda_model_file(f, m->name, m->batch_max, progs, x->nprogs, NNC_CUDA_SCALARS_IN_MEMORY, &d);
  fputs(accumulate_source, f);
  fclose(f);
  if (!ok) return free(text), false;
  nnc_cg_cuda_nvrtc *nv = nnc_cg_cuda_nvrtc_open(&d);
  nnc_cg_cuda_ptx ptx = {0};
  ok = nv && nnc_cg_cuda_compile(nv, text, "model.cu", arch, true, &ptx, &d);
  free(text);
  if (nv) nnc_cg_cuda_nvrtc_close(nv);
  CUresult r = ok ? x->cu.module_load(&x->mod, ptx.text) : 0;
  nnc_cg_cuda_ptx_free(&ptx);
  if (!ok) return false;
  if (r) return cu_fail(err, cap, "cuModuleLoadData", r);
  x->fn = nnc_xcalloc((size_t)x->nfn + 1, sizeof *x->fn);
  for (int i = 0; i < x->nfn; i++)
    if ((r = x->cu.get_function(&x->fn[i], x->mod, x->kernels[i]->name)) != 0)
      return cu_fail(err, cap, x->kernels[i]->name, r);
  if ((r = x->cu.get_function(&x->accumulate, x->mod, NNC_CUDA_ACCUMULATE_KERNEL)) != 0)
    return cu_fail(err, cap, NNC_CUDA_ACCUMULATE_KERNEL, r);
  return true;
}

/* The stream, the staging slots and their events in one pinned block, one allocation per region. */
static bool allocate(cuda_exec *x, char *err, size_t cap) {
  CUresult r;
  if ((r = x->cu.stream_create(&x->stream, NNC_CU_STREAM_NON_BLOCKING)) != 0) return cu_fail(err, cap, "cuStreamCreate", r);
  size_t slot_io = (x->bytes[NNC_MEM_IO] + 63) / 64 * 64, slot_bytes = slot_io + 64;
  if ((r = x->cu.host_alloc(&x->pinned, SLOTS * slot_bytes + 128, 0)) != 0) return cu_fail(err, cap, "cuMemHostAlloc", r);
  uint8_t *p = x->pinned;
  memset(p, 0, SLOTS * slot_bytes + 128);
  for (int i = 0; i < SLOTS; i++) {
    x->slots[i].io = p + (size_t)i * slot_bytes;
    x->slots[i].values = (nnc_cuda_step_values *)(p + (size_t)i * slot_bytes + slot_io);
    if ((r = x->cu.event_create(&x->slots[i].copied, NNC_CU_EVENT_DISABLE_TIMING)) != 0)
      return cu_fail(err, cap, "cuEventCreate", r);
  }
  x->losses_in = (nnc_cuda_losses *)(p + SLOTS * slot_bytes);
  x->losses_zero = (nnc_cuda_losses *)(p + SLOTS * slot_bytes + 64);
  for (int i = 0; i < REGIONS; i++)
    if ((r = x->cu.mem_alloc(&x->region[i], x->bytes[i] + 64)) != 0) return cu_fail(err, cap, "cuMemAlloc", r);
  return true;
}

nnc_rt_executor *nnc_exec_cuda_new(const nnc_compiled *c, const nnc_rt_model *rm, char *err, size_t cap) {
  nnc_cg_cuda_device dev;
  if (nnc_cg_cuda_devices(&dev, 1, NULL, err, cap) <= 0) return NULL;
  cuda_exec *x = nnc_xcalloc(1, sizeof *x);
  x->arena = nnc_arena_new();
  x->rm = rm;
  char arch[16];
  snprintf(arch, sizeof arch, "sm_%d%d", dev.major, dev.minor);
  CUresult r = 0;
  bool ok = load_api(&x->cu, err, cap) && take_programs(x, c, err, cap);
  if (ok && ((r = x->cu.init(0)) != 0 || (r = x->cu.device_get(&x->dev, 0)) != 0))
    ok = cu_fail(err, cap, "starting the driver", r);
  if (ok && (r = x->cu.ctx_retain(&x->ctx, x->dev)) != 0) ok = cu_fail(err, cap, "cuDevicePrimaryCtxRetain", r);
  if (ok && (r = x->cu.ctx_set(x->ctx)) != 0) ok = cu_fail(err, cap, "cuCtxSetCurrent", r);
  ok = ok && load_module(x, c->module, arch, err, cap) && allocate(x, err, cap);
  if (!ok) {
    destroy(x);
    return NULL;
  }
  const char *names[MAX_PROGRAMS];
  for (int i = 0; i < x->nprogs; i++) names[i] = x->progs[i].p->name;
  nnc_rt_executor_opts eo = {.batch_max = c->module->batch_max}; /* scratch lives on the device */
  return nnc_rt_executor_new(&cuda_backend, x, names, x->nprogs, &eo, err, cap);
}
