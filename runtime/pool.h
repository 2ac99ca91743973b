/* The runtime's thread pool (DESIGN §11): the parallel_for that compiled programs call through
 * nnc_rt (runtime/abi.h).
 *
 * The calling thread is worker 0; threads - 1 more are started once. A parallel loop of n
 * iterations is split statically into `threads` contiguous chunks, chunk w = [n*w/T, n*(w+1)/T):
 * which thread runs an iteration never changes its arithmetic, so results do not depend on the
 * thread count. Between loops the workers spin for a short while (the loops of one training step
 * follow each other within microseconds), then park on a condition variable until the next loop
 * (between steps: data loading, evaluation, logging).
 *
 * One thread at a time may call parallel_for on a pool. A parallel_for issued from inside a loop
 * body (a nested parallel loop) runs serially on the thread that issued it. */
#ifndef NNC_RT_POOL_H
#define NNC_RT_POOL_H

#include <stdint.h>

#include "abi.h"

typedef struct nnc_rt_pool nnc_rt_pool;

/* More workers than cores only slow a step down (a parallel loop waits for its slowest chunk,
 * and a descheduled worker is slow), and each costs a stack: a pool has at most
 * NNC_RT_POOL_OVERSUBSCRIBE workers per online core. */
enum { NNC_RT_POOL_OVERSUBSCRIBE = 4, NNC_RT_POOL_MAX_THREADS = 1024 };

/* The number of online cores (sysconf), at least 1. */
int nnc_rt_pool_default_threads(void);
/* The most workers a pool should have here: NNC_RT_POOL_OVERSUBSCRIBE x the online cores. */
int nnc_rt_pool_max_threads(void);

/* A pool of `threads` workers, the caller included (<= 0: nnc_rt_pool_default_threads()). When a
 * worker thread cannot be started the pool keeps those it has (at least the caller). NULL only
 * when out of memory. */
nnc_rt_pool *nnc_rt_pool_new(int threads);
/* The workers the pool runs loops on, the caller included. */
int nnc_rt_pool_threads(const nnc_rt_pool *);
/* Runs body over [0, n) in the static split above and returns when every chunk is done. Its
 * signature is nnc_rt's parallel_for: pool is an nnc_rt_pool. */
void nnc_rt_pool_parallel_for(void *pool, int64_t n, nnc_abi_body body, void *env);
/* The nnc_rt that hands compiled code this pool (serial when the pool has one worker). */
nnc_rt nnc_rt_pool_rt(nnc_rt_pool *);
/* Stops and joins the workers. NULL is accepted. */
void nnc_rt_pool_free(nnc_rt_pool *);

#endif
