/* The LLVM JIT as an executor (runtime/model.h): the module's programs are lowered, emitted as
 * one LLVM module (codegen/llvm.h), JIT-compiled through the object cache and run over the
 * caller's regions, with a serial or a 2-thread parallel_for. */
#ifndef NNC_CG_LLVM_EXEC_H
#define NNC_CG_LLVM_EXEC_H

#include <stddef.h>

#include "codegen/llvm.h"
#include "ir/ir.h"
#include "passes/lower.h"
#include "runtime/model.h"

typedef struct nnc_llvm_exec_opts {
  nnc_lower_opts lower;
  int threads;                /* 1: serial parallel_for; 2: two pthreads, static split */
  nnc_cg_llvm_jit_opts jit;
} nnc_llvm_exec_opts;

/* An executor for m whose regions are laid out as rm (checked against the memory plan's layout).
 * NULL with a message in err. */
nnc_rt_executor *nnc_llvm_exec_new(const nnc_module *m, const nnc_rt_model *rm, const nnc_llvm_exec_opts *,
                                   char *err, size_t cap);
/* How the executor's code was obtained from the object cache. */
nnc_cg_llvm_cache_result nnc_llvm_exec_cache_result(const nnc_rt_executor *);

#endif
