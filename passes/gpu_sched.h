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

/* What the batch n scales in a matmul when batch_max > 0 (the zero value keeps batched rows). */
typedef enum {
  NNC_GPU_BATCH_ROWS,         /* C and A hold n*M rows (not with trans_a) */
  NNC_GPU_BATCH_K,            /* K is n*K: A stored [n*K, M] (trans_a), B [n*K, N] (not trans_b); the
                               * weight gradient of a linear layer, a contraction over the batch */
  NNC_GPU_BATCH_MATS,         /* n*mats independent products */
  NNC_GPU_BATCH_NONE,         /* nothing: batch_max only bounds n for the verifier */
} nnc_gpu_batch;

typedef struct nnc_gpu_matmul_shape {
  int64_t M, N, K;            /* C[M,N] = A[M,K] B[K,N]; M: rows per batch element when batched */
  bool trans_a, trans_b;      /* A stored [K,M], B stored [N,K] */
  int64_t batch_max;          /* > 0: n <= batch_max at run time, scaling what `batch` says */
  nnc_gpu_batch batch;
  int64_t mats;               /* products (0: 1), one per block along z: C[i] = A[i] B[i] */
  bool b_shared;              /* with mats: one B for every product */
} nnc_gpu_matmul_shape;

/* Buffers c, a, b. NULL when a dimension is not positive or the batch meets a layout whose
 * strides would depend on n (trans_a with batched rows; batched K unless A is transposed and
 * B is not; batched rows or K with several products). */
nnc_kernel *nnc_gpu_matmul_kernel(nnc_arena *, const char *name, const nnc_gpu_matmul_shape *);

/* conv2d and its two gradients as implicit GEMMs through the matmul's tiles: per group (one
 * block along z each) C[M,N] = A[M,K] B[K,N] where
 *   forward      y  = conv2d(x, w):            M = O/g, N = images*OH*OW, K = C/g*KH*KW
 *   input grad   dx = conv2d_input_grad(dy, w): M = C/g, N = images*H*W,   K = O/g*KH*KW
 *   weight grad  dw = conv2d_weight_grad(dy, x): M = O/g, N = C/g*KH*KW,   K = images*OH*OW
 * The operand that is a window of an image (x, or dy for the input gradient) is gathered into
 * the shared tile with zeros for padding, dilation gaps and stride misses; K runs in the
 * interpreter's order of the sum. Buffers in the lowering's order: result, operand 0, 1. */
typedef enum { NNC_GPU_CONV_FORWARD, NNC_GPU_CONV_INPUT_GRAD, NNC_GPU_CONV_WEIGHT_GRAD } nnc_gpu_conv_kind;

typedef struct nnc_gpu_conv_shape {
  int64_t images;             /* N: images, times n at run time when batch_max > 0 */
  int64_t C, H, W;            /* the input */
  int64_t O, KH, KW;          /* the weight [O, C/groups, KH, KW] */
  int64_t sy, sx, py, px, dy, dx, groups;
  int64_t batch_max;
} nnc_gpu_conv_shape;

/* NULL when a size is not positive, groups do not divide C and O, or the output is empty. */
nnc_kernel *nnc_gpu_conv2d_kernel(nnc_arena *, const char *name, nnc_gpu_conv_kind, const nnc_gpu_conv_shape *);

/* out[r] = sum (or max, NaN winning as docs/ir.md says) of in[r, 0..cols): one block per row;
 * each thread folds a strided slice, warps reduce by shuffles, warps meet in SHARED memory
 * behind a barrier. Rows (or cols, with a single row) are n times as many at run time when
 * batch_max > 0 and rows_batched (cols_batched). Buffers out, in. NULL when a size is not
 * positive or both are batched, or cols are batched with several rows. */
typedef struct nnc_gpu_reduce_shape {
  int64_t rows, cols;
  bool rows_batched, cols_batched, is_max;
  int64_t batch_max;
} nnc_gpu_reduce_shape;
nnc_kernel *nnc_gpu_row_reduce_kernel(nnc_arena *, const char *name, const nnc_gpu_reduce_shape *);

/* The GPU schedule of graph node nd of m when one applies (passes/gpu_sched_node.c): f32
 * matmul (batched rows, the weight gradient's contraction over the batch, leading batch
 * axes), conv2d and both gradients, reduce_sum and reduce_max over a suffix of the axes. The
 * kernel has the GLOBAL buffers nnc_lower_node would give it (result, then operands) with the
 * same sizes. NULL when no schedule covers the node: the lowering's flat schedule is used. */
nnc_kernel *nnc_gpu_sched_node(nnc_arena *, const nnc_module *, const nnc_node *);

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
