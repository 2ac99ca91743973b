/* The LLVM JIT as an executor (runtime/model.h): the module's programs are lowered, emitted as
 * one LLVM module (codegen/llvm.h), JIT-compiled through the object cache and run over the
 * caller's regions with the caller's nnc_rt (a thread pool's parallel_for, runtime/pool.h). */
#ifndef NNC_CG_LLVM_EXEC_H
#define NNC_CG_LLVM_EXEC_H

#include <stddef.h>

#include "codegen/llvm.h"
#include "ir/ir.h"
#include "passes/lower.h"
#include "runtime/abi.h"
#include "runtime/model.h"

typedef struct nnc_llvm_exec_opts {
  nnc_lower_opts lower;
  const nnc_rt *rt;           /* what compiled code gets (e.g. nnc_rt_pool_rt); NULL: serial.
                                 It must outlive the executor. */
  nnc_cg_llvm_jit_opts jit;
  bool call_entries;          /* also compile each program's kernel calls one by one (nnc_llvm_exec_call) */
} nnc_llvm_exec_opts;

/* Where building the executor's code went, in seconds: lowering and memory planning, building
 * the LLVM IR, then the JIT's phases (codegen/llvm.h). */
typedef struct nnc_llvm_exec_times {
  double lower_s, emit_s;
  nnc_cg_llvm_jit_times jit;
} nnc_llvm_exec_times;

/* An executor for m whose regions are laid out as rm (checked against the memory plan's layout).
 * NULL with a message in err. */
nnc_rt_executor *nnc_llvm_exec_new(const nnc_module *m, const nnc_rt_model *rm, const nnc_llvm_exec_opts *,
                                   char *err, size_t cap);
/* How the executor's code was obtained from the object cache. */
nnc_cg_llvm_cache_result nnc_llvm_exec_cache_result(const nnc_rt_executor *);
nnc_llvm_exec_times nnc_llvm_exec_timing(const nnc_rt_executor *);

/* Kernel by kernel (with opts.call_entries): the lowered program named program (NULL when there
 * is none), and a run of its call i alone over the regions and the executor's scratch region
 * (nnc_llvm_exec_scratch), where the plan puts scratch buffers. */
const nnc_lprogram *nnc_llvm_exec_lprogram(const nnc_rt_executor *, const char *program);
bool nnc_llvm_exec_call(nnc_rt_executor *, const char *program, int64_t i, uint8_t *persist, uint8_t *io,
                        const nnc_rt_call *, char *err, size_t cap);
uint8_t *nnc_llvm_exec_scratch(const nnc_rt_executor *);

#endif
