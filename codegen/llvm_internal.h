/* What codegen/llvm.c, llvm_program.c and llvm_jit.c share: the module and the kernel emitter. */
#ifndef NNC_CG_LLVM_INTERNAL_H
#define NNC_CG_LLVM_INTERNAL_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdbool.h>
#include <stdint.h>

#include "codegen/llvm.h"

/* Buffer parameters point at region offsets, which are multiples of this (runtime/abi.h). */
#define NNC_LLVM_BUF_ALIGN 64

struct nnc_cg_llvm_module {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMTargetMachineRef tm;
  char *triple, *cpu, *features;
  int vector_bits;
  const char *pipeline;  /* LLVMRunPasses's pipeline: "default<O3>" unless the model JIT chose */
  int codegen_level;     /* the target machine's LLVMCodeGenOptLevel (Aggressive unless set) */
  bool optimized;
  bool call_entries;  /* nnc_cg_llvm_program also emits <model>_<program>_call (codegen/llvm.h) */
};

/* The target machine again, at another code generation level. */
void nnc_cg_llvm_module_set_codegen_level(nnc_cg_llvm_module *, LLVMCodeGenOptLevel);
/* Function attributes every function carries (target, prefer-vector-width, nounwind). */
void nnc_cg_llvm_fn_attrs(nnc_cg_llvm_module *, LLVMValueRef fn);
void nnc_cg_llvm_enum_attr(nnc_cg_llvm_module *, LLVMValueRef fn, unsigned idx, const char *name, uint64_t val);
/* nnc_rt as an LLVM struct: {i32 abi_version, ptr pool, ptr parallel_for}. */
LLVMTypeRef nnc_cg_llvm_rt_type(nnc_cg_llvm_module *);
/* Emits kernel k as function fname (internal unless external); NULL after reporting. */
LLVMValueRef nnc_cg_llvm_kernel_fn(nnc_cg_llvm_module *, const nnc_kernel *, const char *fname, bool external,
                                nnc_diags *);
/* The same, for a kernel already finished (nnc_lk_finish): it reads k and writes nothing, so
 * kernels are emitted on several threads, each into its own module. */
LLVMValueRef nnc_cg_llvm_kernel_fn_finished(nnc_cg_llvm_module *, const nnc_kernel *, const char *fname, bool external,
                                            nnc_diags *);
/* Declares kernel k as the external function fname, with the signature nnc_cg_llvm_kernel_fn
 * gives it: for a module that calls kernels compiled in other modules. */
LLVMValueRef nnc_cg_llvm_kernel_decl(nnc_cg_llvm_module *, const nnc_kernel *, const char *fname);
/* The entry functions of a model (nnc_cg_llvm_program): fn[i] is the function of set->list[i],
 * defined in m or declared there. */
bool nnc_cg_llvm_entries(nnc_cg_llvm_module *, const char *model, nnc_lprogram *const *progs, int nprogs,
                         const nnc_kernel_set *set, LLVMValueRef *fn, nnc_diags *);
bool nnc_cg_llvm_verify(nnc_cg_llvm_module *, nnc_diags *);
/* The module's pipeline (default<O3>) for its target machine, once. */
bool nnc_cg_llvm_optimize(nnc_cg_llvm_module *, nnc_diags *);


/* --- the object cache and the JIT (codegen/llvm_jit.c) ------------------------------------------ */

typedef struct nnc_cg_llvm_key {
  uint64_t a, b;
} nnc_cg_llvm_key;

/* 128 bits over the unoptimized module's IR text, its pipeline, target, LLVM's and nnc's versions. */
nnc_cg_llvm_key nnc_cg_llvm_module_key(nnc_cg_llvm_module *);
/* The cache directory, created; false when there is none to use. */
bool nnc_cg_llvm_cache_dir(const nnc_cg_llvm_jit_opts *, char *dir, size_t cap);
/* <dir>/<key as 32 hex digits>.o */
void nnc_cg_llvm_cache_path(const char *dir, nnc_cg_llvm_key, char *path, size_t cap);
/* The object stored under key at path, or NULL (absent: *corrupt false; failing a check: true). */
LLVMMemoryBufferRef nnc_cg_llvm_cache_read(const char *path, nnc_cg_llvm_key, bool *corrupt);
/* Stores obj under key, all or nothing; false when it could not be written. */
bool nnc_cg_llvm_cache_write(const char *dir, const char *path, nnc_cg_llvm_key, LLVMMemoryBufferRef obj);
/* Optimizes m and compiles it to an object in memory; adds the seconds of each to t. */
LLVMMemoryBufferRef nnc_cg_llvm_compile_object(nnc_cg_llvm_module *, nnc_cg_llvm_jit_times *t, nnc_diags *);
/* A JIT holding the objects (each consumed), linked with the process's libc and libm. */
nnc_cg_llvm_jit *nnc_cg_llvm_jit_link(LLVMMemoryBufferRef *objs, int n, nnc_diags *);
void nnc_cg_llvm_jit_set_result(nnc_cg_llvm_jit *, nnc_cg_llvm_cache_result, const nnc_cg_llvm_jit_times *);

#endif
