/* The thread pool: a generation counter announces each loop; workers spin on it, then park. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* How long an idle worker spins before parking: longer than the gap between two loops of a step
 * (a serial kernel or two), far shorter than the gap between steps. */
enum { SPIN_NS = 200 * 1000, SPINS_PER_CLOCK_READ = 256, CALLER_SPINS_BEFORE_YIELD = 4096 };

typedef struct worker {
  nnc_rt_pool *pool;
  int index;
  pthread_t thread;
} worker;

struct nnc_rt_pool {
  int threads;                   /* workers, the caller included */
  bool oversubscribed;           /* more workers than cores: spinning would starve the working ones */
  worker *workers;               /* [1, threads) are started threads */
  /* the loop being run, written by the caller before gen is bumped */
  nnc_abi_body body;
  void *env;
  int64_t n;
  atomic_uint_fast64_t gen;      /* bumped once per loop; workers run a chunk when it changes */
  atomic_int remaining;          /* started workers still running their chunk */
  atomic_int sleepers;           /* workers parked (or about to park) on wake */
  atomic_bool quit;
  pthread_mutex_t lock;
  pthread_cond_t wake;
};

/* Set while a thread runs a loop body: a parallel_for from there runs serially. */
static _Thread_local bool in_body;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void run_chunk(nnc_rt_pool *p, int w) {
  int64_t lo = p->n * w / p->threads, hi = p->n * (w + 1) / p->threads;
  if (lo >= hi) return;
  in_body = true;
  p->body(p->env, lo, hi);
  in_body = false;
}

/* Spins until gen moves past seen, then parks; returns the new generation. */
static uint64_t await_loop(nnc_rt_pool *p, uint64_t seen) {
  int64_t deadline = now_ns() + SPIN_NS;
  for (unsigned i = 1;; i++) {
    uint64_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
    if (g != seen || atomic_load(&p->quit)) return g;
    if (i % SPINS_PER_CLOCK_READ == 0 && now_ns() > deadline) break;
    if (p->oversubscribed) sched_yield();
    else cpu_relax();
  }
  pthread_mutex_lock(&p->lock);
  atomic_fetch_add(&p->sleepers, 1);
  /* the caller bumps gen, then reads sleepers: either it sees this sleeper and broadcasts under the
   * lock, or this load sees the new generation (both sequentially consistent) */
  while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->wake, &p->lock);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->lock);
  return atomic_load_explicit(&p->gen, memory_order_acquire);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  nnc_rt_pool *p = w->pool;
  uint64_t seen = 0; /* gen's initial value: the caller may announce a loop before this thread runs */
  for (;;) {
    seen = await_loop(p, seen);
    if (atomic_load(&p->quit)) return NULL;
    run_chunk(p, w->index);
    atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_release);
  }
}

int nnc_rt_pool_default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > NNC_RT_POOL_MAX_THREADS / NNC_RT_POOL_OVERSUBSCRIBE ? NNC_RT_POOL_MAX_THREADS / NNC_RT_POOL_OVERSUBSCRIBE : (int)n;
}

int nnc_rt_pool_max_threads(void) { return NNC_RT_POOL_OVERSUBSCRIBE * nnc_rt_pool_default_threads(); }

nnc_rt_pool *nnc_rt_pool_new(int threads) {
  if (threads <= 0) threads = nnc_rt_pool_default_threads();
  nnc_rt_pool *p = calloc(1, sizeof *p);
  worker *ws = calloc((size_t)threads, sizeof *ws);
  if (!p || !ws) {
    free(ws);
    free(p);
    return NULL;
  }
  p->workers = ws;
  p->threads = 1;
  p->oversubscribed = threads > nnc_rt_pool_default_threads();
  atomic_init(&p->gen, 0);
  atomic_init(&p->remaining, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->quit, false);
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  for (int i = 1; i < threads; i++) {
    ws[i] = (worker){.pool = p, .index = i};
    if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) break;
    p->threads = i + 1;
  }
  return p;
}

int nnc_rt_pool_threads(const nnc_rt_pool *p) { return p ? p->threads : 1; }

static void wake_sleepers(nnc_rt_pool *p) {
  if (atomic_load(&p->sleepers) == 0) return;
  pthread_mutex_lock(&p->lock);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
}

void nnc_rt_pool_parallel_for(void *pool, int64_t n, nnc_abi_body body, void *env) {
  nnc_rt_pool *p = pool;
  if (n <= 0) return;
  if (!p || p->threads == 1 || in_body) {
    body(env, 0, n);
    return;
  }
  p->body = body, p->env = env, p->n = n;
  atomic_store_explicit(&p->remaining, p->threads - 1, memory_order_relaxed);
  atomic_fetch_add(&p->gen, 1); /* publishes the loop (sequentially consistent, see await_loop) */
  wake_sleepers(p);
  run_chunk(p, 0);
  for (unsigned i = 1; atomic_load_explicit(&p->remaining, memory_order_acquire) > 0; i++) {
    if (i > CALLER_SPINS_BEFORE_YIELD) sched_yield(); /* a worker was descheduled: let it run */
    else cpu_relax();
  }
}

nnc_rt nnc_rt_pool_rt(nnc_rt_pool *p) {
  bool parallel = p && p->threads > 1;
  return (nnc_rt){.abi_version = NNC_ABI_VERSION, .pool = parallel ? p : NULL,
                  .parallel_for = parallel ? nnc_rt_pool_parallel_for : NULL};
}

void nnc_rt_pool_free(nnc_rt_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  atomic_store(&p->quit, true);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  for (int i = 1; i < p->threads; i++) pthread_join(p->workers[i].thread, NULL);
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->wake);
  free(p->workers);
  free(p);
}
