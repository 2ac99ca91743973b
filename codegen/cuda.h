/* The CUDA printer (DESIGN §10, docs/cuda.md): loop IR with GPU schedules -> CUDA C for NVRTC.
 *
 * A CUDA file is the prelude (scalar typedefs, lane-wise vector templates, saturating casts,
 * floor division, Philox) followed by kernels. It includes no header, so NVRTC compiles it
 * without an include path. A kernel becomes
 *
 *     extern "C" __global__ void __launch_bounds__(T) <name>(<global buffers>, <scratch buffers>,
 *                                                            <scalars>)
 *
 * with the parameters in the C printer's order (codegen/c.h) less `rt`: global buffers as
 * `float *__restrict__` (`const` when only read), scratch buffers, then the scalars the body
 * reads: n (long long), lr (float), step, seed (unsigned). GPU block loops read blockIdx, GPU
 * thread loops threadIdx, each guarded by its loop's bound where the launch may overshoot it.
 * The launch geometry comes from nnc_cg_cuda_launch_dims. */
#ifndef NNC_CG_CUDA_H
#define NNC_CG_CUDA_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/diag.h"
#include "ir/loop.h"

/* Where a kernel reads lr, step and seed. As parameters (--emit cuda, --emit ptx's launcher); or
 * from a `const nnc_step_values *` parameter after the buffers and n, for the executor's CUDA
 * Graphs (driver/exec_cuda.c): a graph bakes its kernels' parameters when it is captured, so the
 * values that change every step are written to device memory before each replay. n stays a
 * parameter: a graph is captured per batch size. */
typedef enum nnc_cg_cuda_scalars { NNC_CUDA_SCALARS_PARAMS, NNC_CUDA_SCALARS_IN_MEMORY } nnc_cg_cuda_scalars;

/* The fixed prelude every CUDA file starts with. */
void nnc_cg_cuda_prelude(FILE *);

/* Prints one kernel. Returns false and reports through diags when the kernel holds what the
 * printer does not translate (a block loop inside a thread or serial loop, a barrier or
 * shuffle under a thread loop that needs a bound check, more than 1024 threads per block,
 * atomics on u8, a store outside the block loops of a multi-block kernel) or is malformed. */
bool nnc_cg_cuda_kernel(FILE *, const nnc_kernel *, nnc_diags *);
/* The same with lr, step and seed taken as `scalars` says. */
bool nnc_cg_cuda_kernel_with(FILE *, const nnc_kernel *, nnc_cg_cuda_scalars scalars, nnc_diags *);

/* The prelude and every kernel. False after reporting (the text is then incomplete). */
bool nnc_cg_cuda_file(FILE *, const nnc_kernel *const *kernels, int nkernels, nnc_diags *);

/* The launch geometry of kernel k at batch n: block[] from its thread loops (the largest trip
 * count along each axis), grid[] from its block loops (bounds in constants and n). False with
 * a message in err when a bound depends on anything else. */
bool nnc_cg_cuda_launch_dims(const nnc_kernel *k, int64_t n, int64_t grid[3], int64_t block[3], char *err,
                             size_t cap);

#endif
