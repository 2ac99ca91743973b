/* The CUDA executor (codegen/cuda_exec.h). */
#define _POSIX_C_SOURCE 200809L
#include "codegen/cuda_exec.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda.h"
#include "codegen/cuda_api.h"
#include "codegen/cuda_load.h"
#include "codegen/cuda_program.h"
#include "passes/lower.h"

enum { MAX_PROGRAMS = 8 };

typedef struct cu_api {
  void *lib;
  cuInit_fn init;
  cuDeviceGet_fn device_get;
  cuDevicePrimaryCtxRetain_fn ctx_retain;
  cuDevicePrimaryCtxRelease_v2_fn ctx_release;
  cuCtxSetCurrent_fn ctx_set;
  cuCtxSynchronize_fn sync;
  cuModuleLoadData_fn module_load;
  cuModuleUnload_fn module_unload;
  cuModuleGetFunction_fn get_function;
  cuMemAlloc_v2_fn mem_alloc;
  cuMemFree_v2_fn mem_free;
  cuMemcpyHtoD_v2_fn htod;
  cuMemcpyDtoH_v2_fn dtoh;
  cuLaunchKernel_fn launch;
} cu_api;

typedef struct cu_program {
  nnc_lprogram *p;
  int *fn;                    /* per kernel of p: its function slot */
  bool writes_persist;
} cu_program;

typedef struct cuda_exec {
  nnc_rt_executor base;
  nnc_arena *arena;
  cu_api cu;
  CUdevice dev;
  CUcontext ctx;
  CUmodule mod;
  CUfunction *fn;
  const nnc_kernel **kernels; /* per function slot */
  int nfn;
  CUdeviceptr region[3];      /* persist, io, scratch (nnc_mem_region order) */
  size_t bytes[3];
  cu_program progs[MAX_PROGRAMS];
  int nprogs;
} cuda_exec;

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
      {&c->sync, "cuCtxSynchronize"}, {&c->module_load, "cuModuleLoadData"}, {&c->module_unload, "cuModuleUnload"},
      {&c->get_function, "cuModuleGetFunction"}, {&c->mem_alloc, "cuMemAlloc_v2"}, {&c->mem_free, "cuMemFree_v2"},
      {&c->htod, "cuMemcpyHtoD_v2"}, {&c->dtoh, "cuMemcpyDtoH_v2"}, {&c->launch, "cuLaunchKernel"},
  };
  for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
    void *p = dlsym(c->lib, syms[i].name);
    if (!p) return snprintf(err, cap, "no usable CUDA driver: libcuda.so.1 has no %s", syms[i].name), false;
    memcpy(syms[i].slot, &p, sizeof p); /* POSIX: a function's address through void * */
  }
  return true;
}

static void destroy(nnc_rt_executor *e) {
  cuda_exec *x = (cuda_exec *)e;
  if (x->ctx) {
    for (int r = 0; r < 3; r++)
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

static bool launch_call(cuda_exec *x, const cu_program *cp, const nnc_lcall *c, const nnc_rt_call *call, char *err,
                        size_t cap) {
  const nnc_lprogram *p = cp->p;
  const nnc_kernel *k = p->kernels[c->kernel];
  int64_t grid[3], block[3];
  if (!nnc_cg_cuda_launch_dims(k, call->n, grid, block, err, cap)) return false;
  if (grid[0] < 1 || grid[1] < 1 || grid[2] < 1) return true; /* nothing to do at this n */
  CUdeviceptr bufs[64];
  void *params[64 + NNC_LSC_COUNT];
  int np = 0;
  if (c->nbufs > 64) return snprintf(err, cap, "kernel %s: too many buffers", k->name), false;
  for (int j = 0; j < c->nbufs; j++) {
    const nnc_mem_buffer *b = &p->plan->bufs[c->bufs[j]];
    bufs[j] = x->region[b->region] + (CUdeviceptr)b->offset;
    params[np++] = &bufs[j];
  }
  long long n = call->n;
  float lr = call->lr;
  unsigned step = (unsigned)call->step, seed = call->seed;
  void *scalars[NNC_LSC_COUNT] = {&n, &lr, &step, &seed};
  for (int s = 0; s < NNC_LSC_COUNT; s++)
    if (k->uses_scalar[s]) params[np++] = scalars[s];
  CUresult r = x->cu.launch(x->fn[cp->fn[c->kernel]], (unsigned)grid[0], (unsigned)grid[1], (unsigned)grid[2],
                            (unsigned)block[0], (unsigned)block[1], (unsigned)block[2], 0, NULL, params, NULL);
  return r == 0 || cu_fail(err, cap, k->name, r);
}

static bool run(nnc_rt_executor *e, const char *program, uint8_t *persist, uint8_t *io, const nnc_rt_call *call,
                char *err, size_t cap) {
  cuda_exec *x = (cuda_exec *)e;
  cu_program *cp = find_program(x, program);
  if (!cp) return snprintf(err, cap, "the model has no program %s", program), false;
  if (call->n < 1 || call->n > cp->p->plan->layout->batch_max)
    return snprintf(err, cap, "batch %lld outside [1, %lld]", (long long)call->n, (long long)cp->p->plan->layout->batch_max),
           false;
  CUresult r;
  if ((r = x->cu.ctx_set(x->ctx)) != 0) return cu_fail(err, cap, "cuCtxSetCurrent", r);
  if ((r = x->cu.htod(x->region[NNC_MEM_PERSIST], persist, x->bytes[NNC_MEM_PERSIST])) != 0 ||
      (r = x->cu.htod(x->region[NNC_MEM_IO], io, x->bytes[NNC_MEM_IO])) != 0)
    return cu_fail(err, cap, "cuMemcpyHtoD", r);
  for (int i = 0; i < cp->p->ncalls; i++)
    if (!launch_call(x, cp, &cp->p->calls[i], call, err, cap)) return false;
  if ((r = x->cu.sync()) != 0) return cu_fail(err, cap, "running the kernels", r);
  if ((r = x->cu.dtoh(io, x->region[NNC_MEM_IO], x->bytes[NNC_MEM_IO])) != 0) return cu_fail(err, cap, "cuMemcpyDtoH", r);
  if (cp->writes_persist && (r = x->cu.dtoh(persist, x->region[NNC_MEM_PERSIST], x->bytes[NNC_MEM_PERSIST])) != 0)
    return cu_fail(err, cap, "cuMemcpyDtoH", r);
  return true;
}

/* Lowers every program but forward, names kernels apart, gives each distinct kernel a slot. */
static bool lower_all(cuda_exec *x, const nnc_module *m, const nnc_rt_model *rm, char *err, size_t cap) {
  nnc_mem_layout *L = nnc_mem_layout_module(x->arena, m, err, cap);
  if (!L) return false;
  if ((size_t)L->persist_bytes != (size_t)rm->persist_bytes || (size_t)L->io_bytes != (size_t)rm->io_bytes)
    return snprintf(err, cap, "the runtime's layout is not the memory plan's"), false;
  nnc_lower_opts lo = {.target = NNC_LOWER_GPU};
  nnc_lprogram *progs[MAX_PROGRAMS];
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  int64_t scratch = 0;
  for (int i = 0; i < nnc_module_program_count(m) && x->nprogs < MAX_PROGRAMS; i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    if (strcmp(g->name, "forward") == 0) continue;
    nnc_lprogram *p = nnc_lower_program(x->arena, m, g, L, &lo, &d);
    if (!p) return snprintf(err, cap, "lowering %s for the GPU failed", g->name), false;
    if (p->plan->scratch_bytes > scratch) scratch = p->plan->scratch_bytes;
    x->progs[x->nprogs].p = p;
    x->progs[x->nprogs].writes_persist = strcmp(g->name, "train_step") == 0 || g->nstate > 0;
    progs[x->nprogs++] = p;
  }
  nnc_cg_cuda_name_kernels(progs, x->nprogs);
  int total = 0;
  for (int i = 0; i < x->nprogs; i++) total += progs[i]->nkernels;
  x->kernels = nnc_arena_alloc(x->arena, sizeof *x->kernels * (size_t)(total + 1));
  for (int i = 0; i < x->nprogs; i++) {
    cu_program *cp = &x->progs[i];
    cp->fn = nnc_arena_alloc(x->arena, sizeof *cp->fn * (size_t)(cp->p->nkernels + 1));
    for (int k = 0; k < cp->p->nkernels; k++) {
      int slot = -1;
      for (int s = 0; s < x->nfn && slot < 0; s++)
        if (strcmp(x->kernels[s]->name, cp->p->kernels[k]->name) == 0) slot = s;
      if (slot < 0) slot = x->nfn, x->kernels[x->nfn++] = cp->p->kernels[k];
      cp->fn[k] = slot;
    }
  }
  x->bytes[NNC_MEM_PERSIST] = (size_t)L->persist_bytes;
  x->bytes[NNC_MEM_IO] = (size_t)L->io_bytes;
  x->bytes[NNC_MEM_SCRATCH] = (size_t)scratch;
  return true;
}

/* The CUDA C of the programs through NVRTC for the device, loaded as a module. */
static bool load_module(cuda_exec *x, const nnc_module *m, const char *arch, char *err, size_t cap) {
  nnc_lprogram *progs[MAX_PROGRAMS];
  for (int i = 0; i < x->nprogs; i++) progs[i] = x->progs[i].p;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return snprintf(err, cap, "out of memory"), false;
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_cuda_model_file(f, m->name, m->batch_max, progs, x->nprogs, &d);
  fclose(f);
  if (!ok) return free(text), snprintf(err, cap, "a kernel cannot be printed as CUDA C"), false;
  nnc_cg_cuda_nvrtc *nv = nnc_cg_cuda_nvrtc_open(err, cap);
  nnc_cg_cuda_ptx ptx = {0};
  ok = nv && nnc_cg_cuda_compile(nv, text, "model.cu", arch, true, &ptx, err, cap);
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
  return true;
}

nnc_rt_executor *nnc_cuda_exec_new(const nnc_module *m, const nnc_rt_model *rm, char *err, size_t cap) {
  nnc_cg_cuda_device dev;
  if (nnc_cg_cuda_devices(&dev, 1, NULL, err, cap) <= 0) return NULL;
  cuda_exec *x = nnc_xcalloc(1, sizeof *x);
  x->base = (nnc_rt_executor){.name = "cuda", .run = run, .destroy = destroy};
  x->arena = nnc_arena_new();
  char arch[16];
  snprintf(arch, sizeof arch, "sm_%d%d", dev.major, dev.minor);
  CUresult r = 0;
  bool ok = load_api(&x->cu, err, cap) && lower_all(x, m, rm, err, cap);
  if (ok && ((r = x->cu.init(0)) != 0 || (r = x->cu.device_get(&x->dev, 0)) != 0))
    ok = cu_fail(err, cap, "starting the driver", r);
  if (ok && (r = x->cu.ctx_retain(&x->ctx, x->dev)) != 0) ok = cu_fail(err, cap, "cuDevicePrimaryCtxRetain", r);
  if (ok && (r = x->cu.ctx_set(x->ctx)) != 0) ok = cu_fail(err, cap, "cuCtxSetCurrent", r);
  ok = ok && load_module(x, m, arch, err, cap);
  for (int i = 0; ok && i < 3; i++)
    if ((r = x->cu.mem_alloc(&x->region[i], x->bytes[i] + 64)) != 0) ok = cu_fail(err, cap, "cuMemAlloc", r);
  if (!ok) {
    destroy(&x->base);
    return NULL;
  }
  return &x->base;
}
