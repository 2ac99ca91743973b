/* A whole model on CUDA: the CUDA C file of its programs and --emit ptx's host launcher
 * (codegen/cuda_program.h, docs/cuda.md "--emit ptx"). */
#include "codegen/cuda_program.h"

#include <stdlib.h>
#include <string.h>

#include "codegen/c_program.h"
#include "codegen/cuda.h"

/* --- names and the CUDA C file ------------------------------------------------------------------ */

/* Each distinct kernel one name: a kernel named as an earlier, different one takes its program's
 * name as a suffix; equal kernels of several programs share the first one's name. */
void nnc_cg_cuda_name_kernels(nnc_lprogram *const *progs, int nprogs) {
  nnc_kernel_set u;
  nnc_kernel_set_build(&u, progs, nprogs);
  for (int i = 0; i < u.n; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(u.list[j]->name, u.list[i]->name) == 0) {
        u.list[i]->name = nnc_arena_printf(u.list[i]->arena, "%s_%s", u.list[i]->name, progs[u.program[i]]->name);
        break;
      }
  for (int p = 0; p < nprogs; p++)
    for (int i = 0; i < progs[p]->nkernels; i++) progs[p]->kernels[i]->name = u.list[u.index[p][i]]->name;
  nnc_kernel_set_free(&u);
}

bool nnc_cg_cuda_model_file(FILE *out, const char *model, int64_t batch_max, nnc_lprogram *const *progs, int nprogs,
                            nnc_cg_cuda_scalars scalars, nnc_diags *d) {
  fprintf(out, "/* model %s (batch %lld): CUDA C for NVRTC, printed by nnc --emit cuda */\n", model, (long long)batch_max);
  nnc_cg_cuda_prelude(out);
  nnc_kernel_set u;
  nnc_kernel_set_build(&u, progs, nprogs);
  bool ok = true;
  for (int p = 0; p < nprogs && ok; p++) {
    fprintf(out, "/* ---- program %s: %d kernels, %d calls ---- */\n\n", progs[p]->name, progs[p]->nkernels, progs[p]->ncalls);
    for (int i = 0; i < u.n && ok; i++)
      if (u.program[i] == p) ok = nnc_cg_cuda_kernel_with(out, u.list[i], scalars, d);
  }
  nnc_kernel_set_free(&u);
  return ok;
}

/* --- the launcher ------------------------------------------------------------------------------- */

/* A block loop bound as a C expression in n (long long): constants, n, + - * min max floordiv
 * mod. False when it holds anything else. */
static bool bound_c(FILE *out, const nnc_lexpr *e) {
  switch (e->kind) {
  case NNC_LE_INT: fprintf(out, "%lldLL", (long long)e->ival); return true;
  case NNC_LE_SCALAR: fprintf(out, "n"); return e->scalar == NNC_LSC_N;
  case NNC_LE_CAST: return e->type.dtype != NNC_F32 && bound_c(out, e->a);
  case NNC_LE_BIN: {
    const char *fn = NULL, *op = NULL;
    switch ((nnc_lbinop)e->op) {
    case NNC_LB_ADD: op = " + "; break;
    case NNC_LB_SUB: op = " - "; break;
    case NNC_LB_MUL: op = " * "; break;
    case NNC_LB_MIN: fn = "nnc_min_ll"; break;
    case NNC_LB_MAX: fn = "nnc_max_ll"; break;
    case NNC_LB_FLOORDIV: fn = "nnc_floordiv_ll"; break;
    case NNC_LB_MOD: fn = "nnc_mod_ll"; break;
    default: return false;
    }
    fprintf(out, "%s(", fn ? fn : "");
    bool ok = bound_c(out, e->a);
    fprintf(out, "%s", fn ? ", " : op);
    ok = ok && bound_c(out, e->b);
    fprintf(out, ")");
    return ok;
  }
  default: return false;
  }
}

/* The grid at batch n: for every block loop, its trip count raises its axis' extent. */
enum { MAX_BLOCK_LOOPS = 64 };

/* The grid at batch n as C: the largest trip count of the block loops on each axis. */
static bool print_grid_of(FILE *out, const nnc_lstmt *body) {
  const nnc_lstmt *loops[MAX_BLOCK_LOOPS];
  int nloops = nnc_lstmt_loops(body, NNC_LOOP_GPU_BLOCK, loops, MAX_BLOCK_LOOPS);
  for (int i = 0; i < nloops; i++) {
    const nnc_lstmt *s = i < MAX_BLOCK_LOOPS ? loops[i] : NULL;
    if (!s || (unsigned)s->axis > 2 || s->step < 1) return false;
    fprintf(out, "  t = nnc_floordiv_ll(");
    bool ok = bound_c(out, s->hi);
    fprintf(out, " - ");
    ok = ok && bound_c(out, s->lo);
    fprintf(out, " + %lldLL, %lldLL);\n  if (t > g[%d]) g[%d] = t;\n", (long long)s->step - 1, (long long)s->step, s->axis,
            s->axis);
    if (!ok) return false;
  }
  return true;
}

typedef struct launcher {
  FILE *out;
  const char *id, *M;         /* the C prefix and its upper-case form */
  nnc_lprogram *const *progs;
  int nprogs;
  const nnc_kernel **kernels; /* distinct, in file order: index = function slot */
  int nk;
  nnc_diags *d;
} launcher;

static int slot_of(const launcher *L, const nnc_kernel *k) {
  for (int i = 0; i < L->nk; i++)
    if (strcmp(L->kernels[i]->name, k->name) == 0) return i;
  return -1;
}

static bool print_grid_fn(launcher *L, int slot) {
  const nnc_kernel *k = L->kernels[slot];
  for (int i = 0; i < k->nbufs; i++)
    if (k->bufs[i]->scope == NNC_SCOPE_SCRATCH) {
      nnc_error(L->d, (nnc_loc){0}, "--emit ptx: kernel %s has scratch buffers of its own", k->name);
      return false;
    }
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  bool ok = f && print_grid_of(f, k->body);
  if (f) fclose(f);
  if (ok) fprintf(L->out, "\nstatic void grid_%d(long long n, long long g[3]) { /* %s */\n  long long t;\n  (void)n, (void)t;\n"
                          "  g[0] = g[1] = g[2] = 1;\n%s}\n", slot, k->name, text);
  else nnc_error(L->d, (nnc_loc){0}, "--emit ptx: kernel %s: its grid is not a function of n", k->name);
  free(text);
  return ok;
}

static const char launcher_runtime[] =
    "\n/* The CUDA driver API, loaded at run time: the few types and functions used (cuda.h). */\n"
    "typedef int CUresult;\ntypedef int CUdevice;\ntypedef struct CUctx_st *CUcontext;\ntypedef struct CUmod_st *CUmodule;\n"
    "typedef struct CUfunc_st *CUfunction;\ntypedef struct CUstream_st *CUstream;\ntypedef unsigned long long CUdeviceptr;\n"
    "\nstatic struct {\n  void *lib;\n  CUcontext ctx;\n  CUdevice dev;\n  CUmodule mod;\n  CUdeviceptr persist, io, scratch;\n"
    "  int loaded;\n  char err[512];\n  CUfunction fn[NNC_KERNELS];\n"
    "  CUresult (*init)(unsigned);\n  CUresult (*device_get)(CUdevice *, int);\n"
    "  CUresult (*ctx_retain)(CUcontext *, CUdevice);\n  CUresult (*ctx_release)(CUdevice);\n  CUresult (*ctx_set)(CUcontext);\n"
    "  CUresult (*module_load)(CUmodule *, const void *);\n  CUresult (*module_unload)(CUmodule);\n"
    "  CUresult (*get_function)(CUfunction *, CUmodule, const char *);\n"
    "  CUresult (*mem_alloc)(CUdeviceptr *, size_t);\n  CUresult (*mem_free)(CUdeviceptr);\n"
    "  CUresult (*htod)(CUdeviceptr, const void *, size_t);\n  CUresult (*dtoh)(void *, CUdeviceptr, size_t);\n"
    "  CUresult (*launch)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,\n"
    "                     void **, void **);\n  CUresult (*sync)(void);\n} G;\n"
    "\nstatic long long nnc_floordiv_ll(long long a, long long b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }\n"
    "static inline long long nnc_mod_ll(long long a, long long b) { return a - nnc_floordiv_ll(a, b) * b; }\n"
    "static inline long long nnc_min_ll(long long a, long long b) { return a < b ? a : b; }\n"
    "static inline long long nnc_max_ll(long long a, long long b) { return a > b ? a : b; }\n"
    "\nstatic int fail(const char *what, CUresult r) {\n"
    "  if (r) snprintf(G.err, sizeof G.err, \"%s failed (CUDA error %d)\", what, r);\n"
    "  else snprintf(G.err, sizeof G.err, \"%s\", what);\n  return -1;\n}\n"
    "\nstatic int sym(void *slot, const char *name) {\n  void *p = dlsym(G.lib, name);\n"
    "  if (!p) return snprintf(G.err, sizeof G.err, \"no usable CUDA driver: libcuda.so.1 has no %s\", name), -1;\n"
    "  memcpy(slot, &p, sizeof p); /* POSIX: a function's address through void * */\n  return 0;\n}\n"
    "\nstatic int load_symbols(void) {\n"
    "  if (!(G.lib = dlopen(\"libcuda.so.1\", RTLD_NOW | RTLD_LOCAL))) return fail(\"no CUDA driver: libcuda.so.1 not found\", 0);\n"
    "  return sym(&G.init, \"cuInit\") || sym(&G.device_get, \"cuDeviceGet\") ||\n"
    "         sym(&G.ctx_retain, \"cuDevicePrimaryCtxRetain\") || sym(&G.ctx_release, \"cuDevicePrimaryCtxRelease_v2\") ||\n"
    "         sym(&G.ctx_set, \"cuCtxSetCurrent\") || sym(&G.module_load, \"cuModuleLoadData\") ||\n"
    "         sym(&G.module_unload, \"cuModuleUnload\") || sym(&G.get_function, \"cuModuleGetFunction\") ||\n"
    "         sym(&G.mem_alloc, \"cuMemAlloc_v2\") || sym(&G.mem_free, \"cuMemFree_v2\") ||\n"
    "         sym(&G.htod, \"cuMemcpyHtoD_v2\") || sym(&G.dtoh, \"cuMemcpyDtoH_v2\") ||\n"
    "         sym(&G.launch, \"cuLaunchKernel\") || sym(&G.sync, \"cuCtxSynchronize\") ? -1 : 0;\n}\n"
    "\n/* The whole file, NUL-terminated (cuModuleLoadData takes PTX text). */\n"
    "static char *read_file(const char *path) {\n  FILE *f = fopen(path, \"rb\");\n  if (!f) return NULL;\n"
    "  size_t cap = 1 << 20, len = 0, r;\n  char *buf = malloc(cap);\n"
    "  while (buf && (r = fread(buf + len, 1, cap - len - 1, f)) > 0) {\n    len += r;\n"
    "    if (len + 1 == cap) {\n      char *b = realloc(buf, cap *= 2);\n      if (!b) free(buf);\n      buf = b;\n    }\n  }\n"
    "  fclose(f);\n  if (buf) buf[len] = 0;\n  return buf;\n}\n"
    "\nstatic int launch(int k, const long long g[3], unsigned bx, unsigned by, unsigned bz, void **params) {\n"
    "  if (g[0] < 1 || g[1] < 1 || g[2] < 1) return 0; /* nothing to run at this n */\n"
    "  CUresult r = G.launch(G.fn[k], (unsigned)g[0], (unsigned)g[1], (unsigned)g[2], bx, by, bz, 0, 0, params, 0);\n"
    "  return r ? fail(kernel_names[k], r) : 0;\n}\n";

static void print_load(launcher *L, const char *M) {
  FILE *o = L->out;
  const char *id = L->id;
  fprintf(o, "\nint %s_cuda_load(const char *ptx_path) {\n  if (G.loaded) return 0;\n", id);
  fprintf(o, "  if (load_symbols() != 0) return -1;\n  CUresult r;\n");
  fprintf(o, "  if ((r = G.init(0)) != 0) return fail(r == 100 ? \"no CUDA device\" : \"cuInit\", r == 100 ? 0 : r);\n");
  fprintf(o, "  if ((r = G.device_get(&G.dev, 0)) != 0) return fail(\"cuDeviceGet\", r);\n");
  fprintf(o, "  if ((r = G.ctx_retain(&G.ctx, G.dev)) != 0) return fail(\"cuDevicePrimaryCtxRetain\", r);\n");
  fprintf(o, "  if ((r = G.ctx_set(G.ctx)) != 0) return fail(\"cuCtxSetCurrent\", r);\n");
  fprintf(o, "  char *ptx = read_file(ptx_path);\n");
  fprintf(o, "  if (!ptx) return snprintf(G.err, sizeof G.err, \"cannot read %%s\", ptx_path), -1;\n");
  fprintf(o, "  r = G.module_load(&G.mod, ptx);\n  free(ptx);\n  if (r) return fail(\"cuModuleLoadData\", r);\n");
  fprintf(o, "  for (int k = 0; k < NNC_KERNELS; k++)\n"
             "    if ((r = G.get_function(&G.fn[k], G.mod, kernel_names[k])) != 0) return fail(kernel_names[k], r);\n");
  fprintf(o, "  if ((r = G.mem_alloc(&G.persist, %s_PERSIST_BYTES + 64)) != 0 || (r = G.mem_alloc(&G.io, %s_IO_BYTES + 64)) != 0 ||\n"
             "      (r = G.mem_alloc(&G.scratch, %s_SCRATCH_BYTES + 64)) != 0)\n    return fail(\"cuMemAlloc\", r);\n",
          M, M, M);
  fprintf(o, "  G.loaded = 1;\n  return 0;\n}\n");
  fprintf(o, "\nvoid %s_cuda_unload(void) {\n  if (G.loaded) {\n    G.mem_free(G.persist), G.mem_free(G.io), G.mem_free(G.scratch);\n"
             "    G.module_unload(G.mod);\n    G.ctx_release(G.dev);\n  }\n  if (G.lib) dlclose(G.lib);\n"
             "  memset(&G, 0, sizeof G);\n}\n", id);
  fprintf(o, "\nconst char *%s_cuda_error(void) { return G.err; }\n", id);
}

static const char *region_ptr(nnc_mem_region r) { return r == NNC_MEM_PERSIST ? "G.persist" : r == NNC_MEM_IO ? "G.io" : "G.scratch"; }

static void print_call(launcher *L, const nnc_lprogram *p, const nnc_lcall *c, int slot) {
  FILE *o = L->out;
  const nnc_kernel *k = p->kernels[c->kernel];
  int64_t grid[3], block[3];
  char err[256];
  nnc_cg_cuda_launch_dims(k, 1, grid, block, err, sizeof err);
  fprintf(o, "  { /* %s: %s */\n", c->what, k->name);
  for (int j = 0; j < c->nbufs; j++) {
    const nnc_mem_buffer *b = &p->plan->bufs[c->bufs[j]];
    fprintf(o, "    CUdeviceptr b%d = %s + %lldu;\n", j, region_ptr(b->region), (long long)(b->offset + nnc_lcall_offset(c, j)));
  }
  fprintf(o, "    void *params[] = {");
  for (int j = 0; j < c->nbufs; j++) fprintf(o, "&b%d, ", j);
  static const char *const scalars[NNC_LSC_COUNT] = {"&n", "&lr", "&step", "&seed"};
  for (int s = 0; s < NNC_LSC_COUNT; s++)
    if (k->uses_scalar[s]) fprintf(o, "%s, ", scalars[s]);
  fprintf(o, "NULL};\n    long long g[3];\n    grid_%d(n, g);\n", slot);
  fprintf(o, "    if (launch(%d, g, %lldu, %lldu, %lldu, params) != 0) return %s_ERR_CUDA;\n  }\n", slot, (long long)block[0],
          (long long)block[1], (long long)block[2], L->M);
}

static void print_entry(launcher *L, const char *M, const nnc_lprogram *p) {
  FILE *o = L->out;
  bool writes_persist = strcmp(p->name, "train_step") == 0 || p->graph->nstate > 0;
  fprintf(o, "\n/* %s: %d kernel launches; persist and io go to the device before them and come back after. */\n",
          p->name, p->ncalls);
  fprintf(o, "int %s_%s(const nnc_rt *rt, const nnc_args *a) {\n", L->id, p->name);
  fprintf(o, "  if (!rt || !a || !a->persist || !a->io) return NNC_ABI_ERR_ARGS;\n");
  fprintf(o, "  if (rt->abi_version != NNC_ABI_VERSION) return NNC_ABI_ERR_VERSION;\n");
  fprintf(o, "  if (a->n < 1 || a->n > %s_BATCH_MAX) return NNC_ABI_ERR_BATCH;\n", M);
  fprintf(o, "  if (!G.loaded) return fail(\"the model is not loaded: call %s_cuda_load first\", 0), %s_ERR_CUDA;\n", L->id,
          M);
  fprintf(o, "  long long n = (long long)a->n;\n  float lr = a->lr;\n  unsigned step = (unsigned)a->step, seed = (unsigned)a->seed;\n");
  fprintf(o, "  (void)lr, (void)step, (void)seed;\n  CUresult r;\n");
  fprintf(o, "  if ((r = G.htod(G.persist, a->persist, %s_PERSIST_BYTES)) != 0 || (r = G.htod(G.io, a->io, %s_IO_BYTES)) != 0)\n"
             "    return fail(\"cuMemcpyHtoD\", r), %s_ERR_CUDA;\n",
          M, M, M);
  for (int i = 0; i < p->ncalls; i++) print_call(L, p, &p->calls[i], slot_of(L, p->kernels[p->calls[i].kernel]));
  fprintf(o, "  if ((r = G.sync()) != 0) return fail(\"cuCtxSynchronize\", r), %s_ERR_CUDA;\n", M);
  fprintf(o, "  if ((r = G.dtoh(a->io, G.io, %s_IO_BYTES)) != 0", M);
  if (writes_persist) fprintf(o, " || (r = G.dtoh(a->persist, G.persist, %s_PERSIST_BYTES)) != 0", M);
  fprintf(o, ")\n    return fail(\"cuMemcpyDtoH\", r), %s_ERR_CUDA;\n  return NNC_ABI_OK;\n}\n", M);
}

bool nnc_cg_cuda_launcher_source(FILE *out, const char *model, nnc_lprogram *const *progs, int nprogs, nnc_diags *d) {
  char id[256], M[256];
  nnc_cg_c_ident(model, id, sizeof id);
  snprintf(M, sizeof M, "%s", id);
  for (char *c = M; *c; c++) *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
  launcher L = {.out = out, .id = id, .M = M, .progs = progs, .nprogs = nprogs, .d = d};
  for (int p = 0; p < nprogs; p++) L.nk += progs[p]->nkernels;
  L.kernels = nnc_xcalloc((size_t)L.nk + 1, sizeof *L.kernels);
  L.nk = 0;
  for (int p = 0; p < nprogs; p++)
    for (int i = 0; i < progs[p]->nkernels; i++)
      if (slot_of(&L, progs[p]->kernels[i]) < 0) L.kernels[L.nk++] = progs[p]->kernels[i];
  fprintf(out, "/* %s on a CUDA GPU, compiled by nnc %s: the host side of model.ptx (docs/cuda.md).\n"
               " * C99 + POSIX dlopen; build: cc -std=c99 model.c YOUR_MAIN.c -ldl. No CUDA header or library is\n"
               " * needed to build it: libcuda.so.1 is opened when %s_cuda_load runs. */\n",
          model, NNC_VERSION, id);
  fprintf(out, "#define _POSIX_C_SOURCE 200809L\n#include <dlfcn.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
               "#include <string.h>\n\n#include \"model.h\"\n");
  fprintf(out, "\n#define NNC_KERNELS %d\nstatic const char *const kernel_names[NNC_KERNELS + 1] = {\n", L.nk);
  for (int i = 0; i < L.nk; i++) fprintf(out, "    \"%s\",\n", L.kernels[i]->name);
  fprintf(out, "    NULL};\n");
  fprintf(out, "%s", launcher_runtime);
  bool ok = true;
  for (int i = 0; i < L.nk && ok; i++) ok = print_grid_fn(&L, i);
  if (ok) print_load(&L, M);
  for (int p = 0; p < nprogs && ok; p++) print_entry(&L, M, progs[p]);
  free(L.kernels);
  return ok;
}

void nnc_cg_cuda_launcher_header(FILE *out, const char *model, const nnc_mem_layout *layout, nnc_lprogram *const *progs,
                                 int nprogs) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return;
  nnc_cg_c_model_header(f, model, layout, progs, nprogs);
  fclose(f);
  char *end = text ? strstr(text, "\n#endif") : NULL;
  char *last = end;
  while (last && (end = strstr(last + 1, "\n#endif"))) last = end;
  char id[256];
  nnc_cg_c_ident(model, id, sizeof id);
  char M[256];
  snprintf(M, sizeof M, "%s", id);
  for (char *c = M; *c; c++) *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
  fwrite(text, 1, last ? (size_t)(last - text) : len, out);
  fprintf(out, "\n\n/* CUDA (model.c of --emit ptx): the entry functions above run on device 0. Load first:\n"
               " * %s_cuda_load opens libcuda.so.1, reads the PTX file, loads it and allocates the device's\n"
               " * regions; it returns 0, or -1 with the reason in %s_cuda_error() (\"no CUDA driver: ...\").\n"
               " * args->scratch may be NULL: the device has its own. An entry function returns %s_ERR_CUDA\n"
               " * when the driver fails, the reason again in %s_cuda_error(). */\n",
          id, id, M, id);
  fprintf(out, "#define %s_ERR_CUDA 10\nint %s_cuda_load(const char *ptx_path);\nvoid %s_cuda_unload(void);\n"
               "const char *%s_cuda_error(void);\n",
          M, id, id, id);
  if (last) fputs(last, out);
  free(text);
}

void nnc_cg_cuda_launcher_main(FILE *out, const char *model) {
  char id[256], M[256];
  nnc_cg_c_ident(model, id, sizeof id);
  snprintf(M, sizeof M, "%s", id);
  for (char *c = M; *c; c++) *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
  fprintf(out, "/* Runs %s's predict once on the GPU (n = 1, zero parameters and inputs): the smallest use of\n"
               " * model.h. Build: cc -std=c99 model.c model_main.c -ldl; run: ./a.out [model.ptx]. */\n",
          model);
  fprintf(out, "#include <stdio.h>\n#include <stdlib.h>\n\n#include \"model.h\"\n\n");
  fprintf(out, "int main(int argc, char **argv) {\n  const char *ptx = argc > 1 ? argv[1] : \"model.ptx\";\n");
  fprintf(out, "  if (%s_cuda_load(ptx) != 0) {\n    fprintf(stderr, \"%s: %%s\\n\", %s_cuda_error());\n    return 1;\n  }\n", id,
          model, id);
  fprintf(out, "  uint8_t *persist = calloc(1, %s_PERSIST_BYTES + 1), *io = calloc(1, %s_IO_BYTES + 1);\n", M, M);
  fprintf(out, "  nnc_rt rt = {NNC_ABI_VERSION, NULL, NULL};\n  nnc_args a = {persist, io, NULL, 1, 0.0f, 0, 0};\n");
  fprintf(out, "  int rc = persist && io ? %s_predict(&rt, &a) : -1;\n", id);
  fprintf(out, "  if (rc != 0) fprintf(stderr, \"%s: predict failed (%%d): %%s\\n\", rc, %s_cuda_error());\n", model, id);
  fprintf(out, "  else printf(\"%s: predict ran on the GPU\\n\");\n", model);
  fprintf(out, "  free(persist), free(io);\n  %s_cuda_unload();\n  return rc != 0;\n}\n", id);
}
