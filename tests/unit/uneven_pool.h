/* A parallel_for for kernel tests: the range split at a third, the upper chunk run first, so a
 * kernel whose result depends on how its parallel loop is cut or ordered shows it. */
#ifndef NNC_TEST_UNEVEN_POOL_H
#define NNC_TEST_UNEVEN_POOL_H

#include <stdint.h>

#include "runtime/abi.h"

static int chunk_calls; /* parallel loops run through uneven */

static inline void uneven(void *pool, int64_t n, nnc_abi_body body, void *env) {
  (void)pool;
  int64_t cut = n / 3;
  body(env, cut, n);
  if (cut) body(env, 0, cut);
  chunk_calls++;
}

#endif
