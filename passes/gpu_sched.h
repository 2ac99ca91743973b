/* Hand-written schedules in loop IR (DESIGN §8, docs/loops.md "GPU schedules and the phase
 * emulator"): a shared-memory tiled GPU matmul and a row softmax with a block-level reduction
 * for GPUs, and the row softmax's vectorized CPU schedule. Each returns a finished kernel
 * that nnc_lk_verify accepts, or NULL when the shape is outside what the schedule covers.
 *
 * Buffers are GLOBAL, the result first (as the lowering orders them). With batch_max > 0 the
 * leading (row) dimension is n times the given rows at run time, n <= batch_max, and the
 * buffers holding it are batch-scaled. */
#ifndef NNC_PASSES_GPU_SCHED_H
#define NNC_PASSES_GPU_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "../ir/loop.h"

/* The matmul's tiles: a block computes a 64x64 tile of C with 16x16 threads, each a 4x4
 * register tile; K advances 16 at a time through SHARED tiles of A and B. */
enum { NNC_GPU_MM_TILE = 64, NNC_GPU_MM_KTILE = 16, NNC_GPU_MM_THREADS = 16, NNC_GPU_MM_MICRO = 4 };

typedef struct nnc_gpu_matmul_shape {
  int64_t M, N, K;            /* C[M,N] = A[M,K] B[K,N]; M: rows per batch element when batched */
  bool trans_a, trans_b;      /* A stored [K,M], B stored [N,K] */
  int64_t batch_max;          /* > 0: C and A hold n*M rows (trans_a is then not covered) */
} nnc_gpu_matmul_shape;

/* Buffers c, a, b. NULL when a dimension is not positive or trans_a meets batch rows. */
nnc_kernel *nnc_gpu_matmul_kernel(nnc_arena *, const char *name, const nnc_gpu_matmul_shape *);

/* Threads of a softmax block: 4 warps. */
enum { NNC_GPU_SOFTMAX_THREADS = 128 };

/* y[r, :] = softmax(x[r, :]) for rows r (times n when batch_max > 0), cols columns. Buffers y,
 * x. GPU: one block per row; each thread reduces a strided slice, warps reduce by shuffles,
 * warps meet in SHARED memory behind a barrier (max, then the sum of exp), then the stores.
 * CPU: rows in parallel, each a vector loop (lanes: a power of two up to 64) with a masked tail
 * and horizontal reductions. NULL when rows or cols is not positive or lanes is not a power of
 * two in [1, 64]. */
nnc_kernel *nnc_gpu_softmax_kernel(nnc_arena *, const char *name, int64_t rows, int64_t cols, int64_t batch_max);
nnc_kernel *nnc_cpu_softmax_kernel(nnc_arena *, const char *name, int64_t rows, int64_t cols, int64_t batch_max,
                                   int lanes);

#endif
