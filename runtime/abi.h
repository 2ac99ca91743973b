/* The ABI between compiled programs and whoever calls them (DESIGN §10, docs/abi.md).
 *
 * Every backend (C, LLVM, CUDA host code) compiles each program of a model (train_step,
 * eval_step, predict) to one entry function
 *
 *     int <model>_<program>(const nnc_rt *rt, const nnc_args *args);
 *
 * that reads and writes only the three regions it is given: persist (params, optimizer state,
 * running stats), io (the inputs x, y and the outputs: loss, logits) and scratch (everything
 * else). Buffer offsets inside the regions are constants of the compiled model; the caller
 * allocates the regions (64-byte aligned, sizes from the model) and keeps them between calls.
 *
 * Compiled code never resolves a symbol of nnc or of its runtime: the one service it needs,
 * running a parallel loop, is passed in as a function pointer. This header is plain C99 with
 * no dependency, so emitted code carries it unchanged (`nnc --emit c` writes it as nnc_abi.h). */
#ifndef NNC_ABI_H
#define NNC_ABI_H

#include <stdint.h>

/* Bumped whenever nnc_rt, nnc_args or the entry signature changes. */
#define NNC_ABI_VERSION 1u

/* Every region and every buffer inside one starts at a multiple of this. */
#define NNC_ABI_ALIGN 64

/* Entry function results. */
#define NNC_ABI_OK 0
#define NNC_ABI_ERR_VERSION 1  /* rt->abi_version is not the one the code was compiled for */
#define NNC_ABI_ERR_BATCH 2    /* args->n is outside [1, B_max] */
#define NNC_ABI_ERR_ARGS 3     /* a NULL rt, args or region */

/* One parallel loop body: iterations [lo, hi) of a loop of n iterations; env holds what the
 * body needs (the outlined loop's captured values). */
typedef void (*nnc_abi_body)(void *env, int64_t lo, int64_t hi);

typedef struct nnc_rt {
  uint32_t abi_version;     /* NNC_ABI_VERSION */
  void *pool;               /* the runtime's thread pool, passed back to parallel_for */
  /* Runs body over [0, n) split into contiguous static ranges, one per worker, and returns
   * when all are done. The split may depend on the number of workers, never the results:
   * iterations of a parallel loop are independent. NULL: compiled code runs body(env, 0, n). */
  void (*parallel_for)(void *pool, int64_t n, nnc_abi_body body, void *env);
} nnc_rt;

typedef struct nnc_args {
  uint8_t *persist;         /* params, optimizer state, running stats: what a checkpoint saves */
  uint8_t *io;              /* inputs (x, y) and outputs (loss, logits), laid out at B_max */
  uint8_t *scratch;         /* intermediate values; contents are not kept between calls */
  int64_t n;                /* the actual batch, 1 <= n <= B_max */
  float lr;                 /* learning rate of this step (train_step) */
  uint64_t step;            /* optimizer steps already taken (train_step; Adam's bias correction) */
  uint64_t seed;            /* in-graph randomness (dropout): low 32 bits are used */
} nnc_args;

typedef int (*nnc_abi_entry)(const nnc_rt *rt, const nnc_args *args);

#endif
