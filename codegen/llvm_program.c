/* Whole programs as one LLVM module: each distinct kernel once (internal functions) and one entry
 * per program, `int <model>_<program>(const nnc_rt *rt, const nnc_args *args)`, which checks its
 * arguments as the C backend's entry does (codegen/c_program.c) and calls the kernels in order
 * with pointers at the memory plan's offsets in the regions. */
#include <llvm-c/Core.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/c_program.h"
#include "codegen/llvm_internal.h"
#include "runtime/abi.h"

/* The distinct kernels of the programs and their LLVM functions. */
typedef struct unique_kernels {
  const nnc_kernel_set *set;
  LLVMValueRef *fn;             /* per kernel of set */
} unique_kernels;

typedef struct entry_cx {
  nnc_cg_llvm_module *m;
  LLVMBuilderRef b;
  LLVMTypeRef i32, i64, f32, ptr, i8, args_t;
  LLVMValueRef fn;
} entry_cx;

static void ret_if(entry_cx *c, LLVMValueRef cond, int code) {
  LLVMBasicBlockRef bad = LLVMAppendBasicBlockInContext(c->m->ctx, c->fn, "bad");
  LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(c->m->ctx, c->fn, "ok");
  LLVMBuildCondBr(c->b, cond, bad, ok);
  LLVMPositionBuilderAtEnd(c->b, bad);
  LLVMBuildRet(c->b, LLVMConstInt(c->i32, (unsigned)code, 0));
  LLVMPositionBuilderAtEnd(c->b, ok);
}

static LLVMValueRef field(entry_cx *c, LLVMValueRef args, unsigned i, LLVMTypeRef t, const char *name) {
  return LLVMBuildLoad2(c->b, t, LLVMBuildStructGEP2(c->b, c->args_t, args, i, ""), name);
}

/* Kernel call i of program p, with pointers at the plan's offsets in the regions P, IO, S. */
static bool emit_call(entry_cx *c, const nnc_lprogram *p, const unique_kernels *u, int pi, int i, LLVMValueRef rt,
                      LLVMValueRef P, LLVMValueRef IO, LLVMValueRef S, const LLVMValueRef *scalars, nnc_diags *d) {
  const nnc_lcall *call = &p->calls[i];
  int ki = u->set->index[pi][call->kernel];
  const nnc_kernel *k = u->set->list[ki];
  int nparam_bufs = 0;
  for (int j = 0; j < k->nbufs; j++) nparam_bufs += k->bufs[j]->scope == NNC_SCOPE_GLOBAL || k->bufs[j]->scope == NNC_SCOPE_SCRATCH;
  if (nparam_bufs != call->nbufs) {
    nnc_error(d, (nnc_loc){0}, "LLVM backend: kernel %s: %d buffer parameters, bound to %d buffers (kernel-local scratch is not planned)",
              k->name, nparam_bufs, call->nbufs);
    return false;
  }
  LLVMValueRef *argv = nnc_xcalloc((size_t)call->nbufs + NNC_LSC_COUNT + 1, sizeof *argv);
  int na = 0;
  argv[na++] = rt;
  for (int j = 0; j < call->nbufs; j++) {
    const nnc_mem_buffer *b = &p->plan->bufs[call->bufs[j]];
    LLVMValueRef base = b->region == NNC_MEM_PERSIST ? P : b->region == NNC_MEM_IO ? IO : S;
    LLVMValueRef off = LLVMConstInt(c->i64, (unsigned long long)(b->offset + nnc_lcall_offset(call, j)), 0);
    argv[na++] = LLVMBuildGEP2(c->b, c->i8, base, &off, 1, "");
  }
  for (int s = 0; s < NNC_LSC_COUNT; s++)
    if (k->uses_scalar[s]) argv[na++] = scalars[s];
  LLVMBuildCall2(c->b, LLVMGlobalGetValueType(u->fn[ki]), u->fn[ki], argv, (unsigned)na, "");
  free(argv);
  return true;
}

static bool entry_function(entry_cx *c, const char *model, const nnc_lprogram *p, const unique_kernels *u, int pi,
                           nnc_diags *d) {
  char id[256], name[600];
  nnc_cg_c_ident(model, id, sizeof id);
  snprintf(name, sizeof name, "%s_%s", id, p->name);
  LLVMTypeRef params[2] = {c->ptr, c->ptr};
  c->fn = LLVMAddFunction(c->m->mod, name, LLVMFunctionType(c->i32, params, 2, 0));
  nnc_cg_llvm_fn_attrs(c->m, c->fn);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->m->ctx, c->fn, "entry"));
  LLVMValueRef rt = LLVMGetParam(c->fn, 0), args = LLVMGetParam(c->fn, 1);
  /* if (!rt || !a || !a->persist || !a->io || (!a->scratch && scratch_bytes > 0)) return NNC_ABI_ERR_ARGS */
  ret_if(c, LLVMBuildOr(c->b, LLVMBuildIsNull(c->b, rt, ""), LLVMBuildIsNull(c->b, args, ""), ""), NNC_ABI_ERR_ARGS);
  LLVMValueRef P = field(c, args, 0, c->ptr, "P"), IO = field(c, args, 1, c->ptr, "IO"), S = field(c, args, 2, c->ptr, "S");
  LLVMValueRef missing = LLVMBuildOr(c->b, LLVMBuildIsNull(c->b, P, ""), LLVMBuildIsNull(c->b, IO, ""), "");
  if (p->plan->scratch_bytes > 0) missing = LLVMBuildOr(c->b, missing, LLVMBuildIsNull(c->b, S, ""), "");
  ret_if(c, missing, NNC_ABI_ERR_ARGS);
  LLVMValueRef ver = LLVMBuildLoad2(c->b, c->i32, LLVMBuildStructGEP2(c->b, nnc_cg_llvm_rt_type(c->m), rt, 0, ""), "");
  ret_if(c, LLVMBuildICmp(c->b, LLVMIntNE, ver, LLVMConstInt(c->i32, NNC_ABI_VERSION, 0), ""), NNC_ABI_ERR_VERSION);
  LLVMValueRef n = field(c, args, 3, c->i64, "n");
  LLVMValueRef bad_n = LLVMBuildOr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, n, LLVMConstInt(c->i64, 1, 0), ""),
                                   LLVMBuildICmp(c->b, LLVMIntSGT, n, LLVMConstInt(c->i64, (unsigned long long)p->plan->layout->batch_max, 0), ""), "");
  ret_if(c, bad_n, NNC_ABI_ERR_BATCH);
  LLVMValueRef scalars[NNC_LSC_COUNT] = {
      n, field(c, args, 4, c->f32, "lr"), LLVMBuildTrunc(c->b, field(c, args, 5, c->i64, ""), c->i32, "step"),
      LLVMBuildTrunc(c->b, field(c, args, 6, c->i64, ""), c->i32, "seed")};
  for (int i = 0; i < p->ncalls; i++)
    if (!emit_call(c, p, u, pi, i, rt, P, IO, S, scalars, d)) return false;
  LLVMBuildRet(c->b, LLVMConstInt(c->i32, NNC_ABI_OK, 0));
  return true;
}

/* int <model>_<program>_call(rt, args, i): kernel call i alone (a switch over the calls); 3 when i
 * is out of range. */
static bool call_entry_function(entry_cx *c, const char *model, const nnc_lprogram *p, const unique_kernels *u,
                                int pi, nnc_diags *d) {
  char id[256], name[600];
  nnc_cg_c_ident(model, id, sizeof id);
  snprintf(name, sizeof name, "%s_%s_call", id, p->name);
  LLVMTypeRef params[3] = {c->ptr, c->ptr, c->i64};
  c->fn = LLVMAddFunction(c->m->mod, name, LLVMFunctionType(c->i32, params, 3, 0));
  nnc_cg_llvm_fn_attrs(c->m, c->fn);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->m->ctx, c->fn, "entry"));
  LLVMValueRef rt = LLVMGetParam(c->fn, 0), args = LLVMGetParam(c->fn, 1), index = LLVMGetParam(c->fn, 2);
  LLVMValueRef P = field(c, args, 0, c->ptr, "P"), IO = field(c, args, 1, c->ptr, "IO"), S = field(c, args, 2, c->ptr, "S");
  LLVMValueRef scalars[NNC_LSC_COUNT] = {
      field(c, args, 3, c->i64, "n"), field(c, args, 4, c->f32, "lr"),
      LLVMBuildTrunc(c->b, field(c, args, 5, c->i64, ""), c->i32, "step"),
      LLVMBuildTrunc(c->b, field(c, args, 6, c->i64, ""), c->i32, "seed")};
  LLVMBasicBlockRef bad = LLVMAppendBasicBlockInContext(c->m->ctx, c->fn, "bad");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->m->ctx, c->fn, "done");
  LLVMValueRef sw = LLVMBuildSwitch(c->b, index, bad, (unsigned)p->ncalls);
  for (int i = 0; i < p->ncalls; i++) {
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c->m->ctx, c->fn, "call");
    LLVMAddCase(sw, LLVMConstInt(c->i64, (unsigned long long)i, 0), bb);
    LLVMPositionBuilderAtEnd(c->b, bb);
    if (!emit_call(c, p, u, pi, i, rt, P, IO, S, scalars, d)) return false;
    LLVMBuildBr(c->b, done);
  }
  LLVMPositionBuilderAtEnd(c->b, bad);
  LLVMBuildRet(c->b, LLVMConstInt(c->i32, NNC_ABI_ERR_ARGS, 0));
  LLVMPositionBuilderAtEnd(c->b, done);
  LLVMBuildRet(c->b, LLVMConstInt(c->i32, NNC_ABI_OK, 0));
  return true;
}

void nnc_cg_llvm_module_call_entries(nnc_cg_llvm_module *m, bool on) { m->call_entries = on; }

bool nnc_cg_llvm_entries(nnc_cg_llvm_module *m, const char *model, nnc_lprogram *const *progs, int nprogs,
                         const nnc_kernel_set *set, LLVMValueRef *fn, nnc_diags *d) {
  unique_kernels u = {.set = set, .fn = fn};
  entry_cx c = {.m = m, .b = LLVMCreateBuilderInContext(m->ctx)};
  c.i32 = LLVMInt32TypeInContext(m->ctx), c.i64 = LLVMInt64TypeInContext(m->ctx), c.f32 = LLVMFloatTypeInContext(m->ctx);
  c.ptr = LLVMPointerTypeInContext(m->ctx, 0), c.i8 = LLVMInt8TypeInContext(m->ctx);
  /* nnc_args: persist, io, scratch, n, lr, step, seed (the data layout gives C's offsets) */
  LLVMTypeRef fields[7] = {c.ptr, c.ptr, c.ptr, c.i64, c.f32, c.i64, c.i64};
  c.args_t = LLVMStructTypeInContext(m->ctx, fields, 7, 0);
  bool ok = true;
  for (int p = 0; p < nprogs && ok; p++) ok = entry_function(&c, model, progs[p], &u, p, d);
  for (int p = 0; p < nprogs && ok && m->call_entries; p++) ok = call_entry_function(&c, model, progs[p], &u, p, d);
  LLVMDisposeBuilder(c.b);
  return ok;
}

bool nnc_cg_llvm_program(nnc_cg_llvm_module *m, const char *model, nnc_lprogram *const *progs, int nprogs,
                         nnc_diags *d) {
  for (int p = 0; p < nprogs; p++)
    for (int i = 0; i < progs[p]->nkernels; i++) nnc_lk_finish(progs[p]->kernels[i]);
  nnc_kernel_set set = {0};
  nnc_kernel_set_build(&set, progs, nprogs);
  LLVMValueRef *fn = nnc_xcalloc((size_t)set.n + 1, sizeof *fn);
  bool ok = true;
  for (int i = 0; i < set.n && ok; i++) {
    char id[128], fname[200];
    nnc_cg_c_ident(set.list[i]->name, id, sizeof id);
    snprintf(fname, sizeof fname, "k%d_%s", i, id);
    fn[i] = nnc_cg_llvm_kernel_fn(m, set.list[i], fname, false, d);
    ok = fn[i] != NULL;
  }
  ok = ok && nnc_cg_llvm_entries(m, model, progs, nprogs, &set, fn, d);
  nnc_kernel_set_free(&set);
  free(fn);
  return ok;
}
