/* The CUDA backend behind the executor core (runtime/executor.h, docs/cuda.md "Device
 * execution"): the programs compiled with the GPU schedules, printed as CUDA C with lr, step and
 * seed read from device memory (codegen/cuda.h), compiled by NVRTC for device 0 (through the PTX
 * cache), loaded with the driver API (libcuda.so.1 by dlopen).
 *
 * Device memory is one allocation per region (persist, io, scratch) and a small control block
 * (the step's values and the loss accumulator). Everything runs on one stream: a call's inputs
 * are copied from pinned staging with asynchronous copies, then the program runs as a CUDA Graph
 * captured from the stream the first time it runs at that batch size, and replayed after. Two
 * staging slots let a step's copies be queued while the previous step runs.
 *
 * `run` on the caller's regions (the executor contract) copies persist and io in, replays, copies
 * them out and waits. Resident (nnc_rt_executor's resident_*, what the training loop uses),
 * persist stays on the device, a train_step only queues its copies and its graph, which ends
 * with nnc_accumulate_loss adding the step's loss to the accumulator, and the host waits only
 * when it reads the losses or pulls persist. */
#ifndef NNC_DRIVER_EXEC_CUDA_H
#define NNC_DRIVER_EXEC_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "ir/lowered.h"
#include "runtime/executor.h"

/* An executor for the programs of c (compiled for the GPU, laid out as rm) on CUDA device 0.
 * NULL with a message in err: without a driver it starts "no CUDA driver", without a device
 * "no CUDA device". */
nnc_rt_executor *nnc_exec_cuda_new(const nnc_compiled *c, const nnc_rt_model *rm, char *err, size_t cap);

/* The control block's layout, host mirrors of the CUDA C structs the kernels read and write:
 * nnc_step_values (codegen/cuda.c's prelude) at offset 0, the accumulator at 64. */
typedef struct nnc_cuda_step_values {
  float lr;
  uint32_t step, seed, unused;
} nnc_cuda_step_values;

typedef struct nnc_cuda_losses {
  double sum;                    /* Σ loss × n over the finite losses */
  int64_t examples, steps;
  int64_t first_nonfinite;       /* step + 1 of the first non-finite loss, 0: none */
  float last, nonfinite_loss;
} nnc_cuda_losses;

enum { NNC_CUDA_CONTROL_STEP_VALUES = 0, NNC_CUDA_CONTROL_LOSSES = 64, NNC_CUDA_CONTROL_BYTES = 128 };

/* The accumulator's kernel: one thread, launched last in train_step's graph. */
#define NNC_CUDA_ACCUMULATE_KERNEL "nnc_accumulate_loss"

#endif
