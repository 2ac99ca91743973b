/* The CUDA executor (runtime/model.h's nnc_rt_executor, docs/cuda.md "Device execution"): the
 * module's programs lowered with the GPU schedules, printed as CUDA C, compiled by NVRTC for
 * device 0 (through the PTX cache), loaded with the driver API (libcuda.so.1 by dlopen).
 *
 * One device allocation per region (persist, io, scratch). A run copies persist and io to the
 * device, launches the program's kernels in order on the default stream with the grid of the
 * call's n, waits, and copies io back (and persist after a program that writes it): simple and
 * synchronous; the caller's regions stay the truth between calls. */
#ifndef NNC_CG_CUDA_EXEC_H
#define NNC_CG_CUDA_EXEC_H

#include <stddef.h>

#include "ir/ir.h"
#include "runtime/model.h"

/* An executor for m laid out as rm on CUDA device 0. NULL with a message in err: without a
 * driver it starts "no CUDA driver", without a device "no CUDA device". */
nnc_rt_executor *nnc_cuda_exec_new(const nnc_module *m, const nnc_rt_model *rm, char *err, size_t cap);

#endif
