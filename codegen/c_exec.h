/* The C backend as an executor (runtime/model.h), for tests: the module's programs are lowered,
 * printed as model.c / model.h, compiled with cc into a shared object and run over the
 * caller's regions, with a serial or a 2-thread parallel_for. */
#ifndef NNC_CG_C_EXEC_H
#define NNC_CG_C_EXEC_H

#include <stddef.h>

#include "ir/ir.h"
#include "passes/lower.h"
#include "runtime/model.h"

typedef struct nnc_c_exec_opts {
  nnc_lower_opts lower;       /* target GPU: the GPU schedules run under the phase emulator */
  int threads;                /* 1: serial parallel_for; 2: two pthreads, static split */
  const char *cflags;         /* extra compiler flags ("-fopenmp"), may be NULL */
  int mem_debug;              /* nnc_cg_mem_debug (codegen/c_program.h): 0 as emitted; NaN-filled dead
                                 ranges; every buffer its own allocation (ASan-checked in an ASan build) */
} nnc_c_exec_opts;

/* An executor for m whose regions are laid out as rm (checked against the memory plan's
 * layout: every buffer at the same offset). NULL with a message in err. */
nnc_rt_executor *nnc_c_exec_new(const nnc_module *m, const nnc_rt_model *rm, const nnc_c_exec_opts *,
                                char *err, size_t cap);

#endif
