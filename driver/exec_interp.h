/* An executor (runtime/model.h) over the reference interpreter in F32 mode: the slowest and
 * the surest way to run a model, and the one every backend is compared against. */
#ifndef NNC_DRIVER_EXEC_INTERP_H
#define NNC_DRIVER_EXEC_INTERP_H

#include "ir/ir.h"
#include "runtime/model.h"

/* An executor for m laid out as rm; both must outlive it. */
nnc_rt_executor *nnc_exec_interp_new(const nnc_module *m, const nnc_rt_model *rm);

#endif
