/* The LLVM JIT behind the executor core (runtime/executor.h): the compiled programs JIT-compiled
 * kernel by kernel through the object cache (codegen/llvm.h, nnc_cg_llvm_jit_model), and run
 * over the caller's regions on the executor's thread pool (runtime/pool.h). */
#ifndef NNC_DRIVER_EXEC_LLVM_H
#define NNC_DRIVER_EXEC_LLVM_H

#include <stddef.h>

#include "codegen/llvm.h"
#include "ir/lowered.h"
#include "runtime/executor.h"

typedef struct nnc_exec_llvm_opts {
  int threads;                /* the pool's workers, the caller included (<= 1: serial) */
  const nnc_rt *rt;           /* instead of a pool: this nnc_rt, which must outlive the executor */
  nnc_cg_llvm_jit_opts jit;   /* jit.threads 0: as many as threads (the cores when that is 0 too) */
  bool call_entries;          /* also compile each program's kernel calls one by one (nnc_exec_llvm_call) */
} nnc_exec_llvm_opts;

/* Where building the code went: the JIT's phases (codegen/llvm.h). */
typedef struct nnc_exec_llvm_times {
  nnc_cg_llvm_jit_times jit;
} nnc_exec_llvm_times;

/* An executor for the programs of c (lowered for the CPU). NULL with a message in err. */
nnc_rt_executor *nnc_exec_llvm_new(const nnc_compiled *c, const nnc_exec_llvm_opts *, char *err, size_t cap);

nnc_exec_llvm_times nnc_exec_llvm_timing(const nnc_rt_executor *);
nnc_cg_llvm_cache_result nnc_exec_llvm_cache_result(const nnc_rt_executor *);
/* With opts.call_entries: call i of program alone, over the regions and the executor's scratch
 * region, where the memory plan puts scratch buffers. */
bool nnc_exec_llvm_call(nnc_rt_executor *, const char *program, int64_t i, uint8_t *persist, uint8_t *io,
                        const nnc_rt_call *, char *err, size_t cap);

#endif
