/* The C backend behind the executor core (runtime/executor.h), for tests: the compiled programs
 * printed as model.c and model.h (codegen/c_program.h), built by cc into a shared object
 * (codegen/cc.h) and run over the caller's regions, with a serial or a 2-thread parallel_for.
 * A program compiled for the GPU with emulate_gpu (passes/pipeline.h) runs its GPU schedules
 * under the phase emulator this way. */
#ifndef NNC_DRIVER_EXEC_C_H
#define NNC_DRIVER_EXEC_C_H

#include <stddef.h>

#include "ir/lowered.h"
#include "runtime/executor.h"

typedef struct nnc_exec_c_opts {
  int threads;                /* 1: serial parallel_for; 2: two pthreads, static split */
  const char *cflags;         /* extra compiler flags ("-fopenmp"), may be NULL */
  int mem_debug;              /* nnc_cg_mem_debug (codegen/c_program.h): 0 as emitted; NaN-filled dead
                                 ranges; every buffer its own allocation (ASan-checked in an ASan build) */
} nnc_exec_c_opts;

/* An executor for the programs of c. NULL with a message in err. */
nnc_rt_executor *nnc_exec_c_new(const nnc_compiled *c, const nnc_exec_c_opts *, char *err, size_t cap);

#endif
