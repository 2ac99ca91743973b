/* The C printer (DESIGN §10): loop IR -> C99 with GCC/Clang vector extensions, which gcc and
 * clang compile with `-std=c99 -Wall -Wextra -Werror -O2` (docs/loops.md, "C printer").
 *
 * A C file is the prelude (vector types, lane-wise helpers, Philox) followed by kernels. A
 * kernel becomes
 *
 *     static void <name>(const nnc_rt *rt, <global buffers>, <scratch buffers>, <scalars>)
 *
 * with the global buffers in the kernel's order (`float *restrict`, `const` when only read;
 * without `restrict` where a call shares the buffer's bytes, nnc_cg_c_kernel_shared),
 * then its SCRATCH buffers (pointers into the scratch region, in buffer order), then the
 * scalars the body reads, in the order n (int64_t), lr (float), step, seed (uint32_t).
 * nnc_rt comes from runtime/abi.h, which the surrounding file includes before the prelude.
 * Parallel loops are outlined into `static void <name>_par<i>(void *env, int64_t lo,
 * int64_t hi)` and run through rt->parallel_for (OpenMP when rt has none and _OPENMP is
 * defined, else inline). */
#ifndef NNC_CG_C_H
#define NNC_CG_C_H

#include <stdbool.h>
#include <stdio.h>

#include "ir/diag.h"
#include "ir/loop.h"

/* Includes, the vector types and helpers for every lane count the kernels use, Philox. */
void nnc_cg_c_prelude(FILE *, const nnc_kernel *const *kernels, int nkernels);

/* Prints one kernel (its outlined parallel bodies first). Returns false and reports through
 * diags when the kernel holds what this printer does not translate (GPU loops, thread
 * indices, barriers, shuffles, lane counts that are not powers of two) or is malformed. */
bool nnc_cg_c_kernel(FILE *, const nnc_kernel *, nnc_diags *);

/* nnc_cg_c_kernel, with the buffers i where shared[i] (by buffer id; NULL: none) printed as
 * plain pointers instead of `restrict`: those a call passes over bytes that another of its
 * buffers also reaches while one of the two is written (an in-place call). */
bool nnc_cg_c_kernel_shared(FILE *, const nnc_kernel *, const bool *shared, nnc_diags *);

#endif
