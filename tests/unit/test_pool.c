/* The thread pool (runtime/pool.h): every iteration runs exactly once, in the static split
 * [n*w/T, n*(w+1)/T), for pools of 1 to 5 threads and loops shorter than the pool; a nested
 * parallel_for runs serially; loops after the workers parked still run; nnc_rt wiring. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "runtime/pool.h"

enum { MAX_N = 10000, MAX_RANGES = 64 };

typedef struct record {
  atomic_int hits[MAX_N];
  atomic_int nranges;
  int64_t lo[MAX_RANGES], hi[MAX_RANGES];
  pthread_t thread[MAX_RANGES];
} record;

static void count_body(void *env, int64_t lo, int64_t hi) {
  record *r = env;
  int k = atomic_fetch_add(&r->nranges, 1);
  if (k < MAX_RANGES) r->lo[k] = lo, r->hi[k] = hi, r->thread[k] = pthread_self();
  for (int64_t i = lo; i < hi; i++) atomic_fetch_add(&r->hits[i], 1);
}

static int64_t chunk_lo(int64_t n, int w, int t) { return n * w / t; }

/* Each range is one worker's static chunk, the caller ran chunk 0, and every index ran once. */
static void check_loop(nnc_rt_pool *p, int64_t n) {
  static record r;
  memset(&r, 0, sizeof r);
  nnc_rt_pool_parallel_for(p, n, count_body, &r);
  int t = nnc_rt_pool_threads(p), ranges = atomic_load(&r.nranges), nonempty = 0;
  for (int w = 0; w < t; w++) nonempty += chunk_lo(n, w + 1, t) > chunk_lo(n, w, t);
  CHECK_MSG(ranges == nonempty, "threads %d n %lld: %d ranges, %d non-empty chunks", t, (long long)n, ranges, nonempty);
  for (int k = 0; k < ranges && k < MAX_RANGES; k++) {
    bool is_chunk = false;
    for (int w = 0; w < t; w++) {
      if (r.lo[k] != chunk_lo(n, w, t) || r.hi[k] != chunk_lo(n, w + 1, t)) continue;
      is_chunk = true;
      if (w == 0) CHECK_MSG(pthread_equal(r.thread[k], pthread_self()), "chunk 0 runs on the caller");
    }
    CHECK_MSG(is_chunk, "threads %d n %lld: range [%lld, %lld) is not a chunk", t, (long long)n, (long long)r.lo[k],
              (long long)r.hi[k]);
  }
  int bad = 0;
  for (int64_t i = 0; i < n; i++) bad += atomic_load(&r.hits[i]) != 1;
  CHECK_MSG(bad == 0, "threads %d n %lld: %d indices not run exactly once", t, (long long)n, bad);
}

typedef struct nested {
  nnc_rt_pool *pool;
  atomic_int inner_calls;
  atomic_int inner_iters;
} nested;

static void inner_body(void *env, int64_t lo, int64_t hi) {
  nested *s = env;
  atomic_fetch_add(&s->inner_calls, 1);
  atomic_fetch_add(&s->inner_iters, (int)(hi - lo));
}

static void outer_body(void *env, int64_t lo, int64_t hi) {
  nested *s = env;
  for (int64_t i = lo; i < hi; i++) nnc_rt_pool_parallel_for(s->pool, 10, inner_body, s);
}

static void sum_body(void *env, int64_t lo, int64_t hi) {
  int64_t *parts = env;
  for (int64_t i = lo; i < hi; i++) parts[i] = i * i;
}

int main(void) {
  CHECK(nnc_rt_pool_default_threads() >= 1);
  for (int t = 1; t <= 5; t++) {
    nnc_rt_pool *p = nnc_rt_pool_new(t);
    CHECK(p != NULL);
    CHECK_MSG(nnc_rt_pool_threads(p) == t, "asked %d threads, got %d", t, nnc_rt_pool_threads(p));
    const int64_t sizes[] = {0, 1, 2, 3, 4, 7, 64, 1000, MAX_N};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) check_loop(p, sizes[i]);
    /* many short loops back to back, as the kernels of a step */
    int64_t parts[64];
    bool ok = true;
    for (int rep = 0; rep < 2000 && ok; rep++) {
      memset(parts, 0, sizeof parts);
      nnc_rt_pool_parallel_for(p, 64, sum_body, parts);
      for (int64_t i = 0; i < 64; i++) ok &= parts[i] == i * i;
    }
    CHECK_MSG(ok, "threads %d: back-to-back loops", t);
    /* after the workers have parked */
    struct timespec pause = {0, 5 * 1000 * 1000};
    nanosleep(&pause, NULL);
    check_loop(p, 1000);
    nested s = {.pool = p};
    nnc_rt_pool_parallel_for(p, 6, outer_body, &s);
    CHECK_MSG(atomic_load(&s.inner_calls) == 6 && atomic_load(&s.inner_iters) == 60,
              "threads %d: nested loops run serially: %d calls, %d iterations", t, atomic_load(&s.inner_calls),
              atomic_load(&s.inner_iters));
    nnc_rt rt = nnc_rt_pool_rt(p);
    CHECK(rt.abi_version == NNC_ABI_VERSION);
    CHECK_MSG((rt.parallel_for != NULL) == (t > 1), "threads %d: parallel_for only with workers", t);
    nnc_rt_pool_free(p);
  }
  nnc_rt_pool_free(NULL);
  nnc_rt_pool *dflt = nnc_rt_pool_new(0);
  CHECK(nnc_rt_pool_threads(dflt) == nnc_rt_pool_default_threads());
  nnc_rt_pool_free(dflt);
  return check_summary();
}
