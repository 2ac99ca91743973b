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
  bool optimized;
  bool call_entries;  /* nnc_cg_llvm_program also emits <model>_<program>_call (codegen/llvm.h) */
};

/* Function attributes every function carries (target, prefer-vector-width, nounwind). */
void nnc_cg_llvm_fn_attrs(nnc_cg_llvm_module *, LLVMValueRef fn);
void nnc_cg_llvm_enum_attr(nnc_cg_llvm_module *, LLVMValueRef fn, unsigned idx, const char *name, uint64_t val);
/* nnc_rt as an LLVM struct: {i32 abi_version, ptr pool, ptr parallel_for}. */
LLVMTypeRef nnc_cg_llvm_rt_type(nnc_cg_llvm_module *);
/* Emits kernel k as function fname (internal unless external); NULL after reporting. */
LLVMValueRef nnc_cg_llvm_kernel_fn(nnc_cg_llvm_module *, const nnc_kernel *, const char *fname, bool external,
                                nnc_diags *);
bool nnc_cg_llvm_verify(nnc_cg_llvm_module *, nnc_diags *);
/* default<O3> for the module's target machine, once. */
bool nnc_cg_llvm_optimize(nnc_cg_llvm_module *, nnc_diags *);

#endif
