/* The executor core (DESIGN §11): the one implementation of runtime/model.h's nnc_rt_executor.
 * It keeps what every backend needs the same way: the table of programs (a name and an entry
 * each), the scratch region compiled code works in, the nnc_rt it passes (with the thread pool of
 * the CPU backends), the packing of a call's values into nnc_args and the errors of a call.
 *
 * A backend is small: it loads the compiled programs into a `lib` of its own (a JIT, a shared
 * object, a CUDA module, the interpreter over the module's graphs) before the core is made, and
 * gives the core three hooks: the entry of a program (`symbol`), how to free the lib, and, for a
 * device whose memory is not the host's, the residency hooks of nnc_rt_executor. */
#ifndef NNC_RT_EXECUTOR_H
#define NNC_RT_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "abi.h"
#include "model.h"

/* How a program runs: compiled code called through the ABI (fn), or a backend's own runner
 * (run, with ctx) for one that is not a C function of the ABI (the interpreter, a device). */
typedef struct nnc_rt_entry {
  nnc_abi_entry fn;
  bool (*run)(void *ctx, const nnc_args *, char *err, size_t cap);
  void *ctx;
} nnc_rt_entry;

typedef struct nnc_rt_backend {
  const char *name;                                        /* "llvm", "c", "cuda", "interp" */
  nnc_rt_entry (*symbol)(void *lib, const char *program);  /* fn and run NULL: no such program */
  void (*free)(void *lib);
  /* residency (runtime/model.h), NULL for the host's backends */
  bool (*resident_begin)(void *lib, const uint8_t *persist, const nnc_rt_buffer *loss, char *err, size_t cap);
  bool (*resident_losses)(void *lib, nnc_rt_losses *, char *err, size_t cap);
  bool (*resident_pull)(void *lib, uint8_t *persist, char *err, size_t cap);
  void (*resident_end)(void *lib);
} nnc_rt_backend;

typedef struct nnc_rt_executor_opts {
  int64_t scratch_bytes;      /* the scratch region compiled code gets (0: none) */
  int threads;                /* > 0: a thread pool of that many workers, the caller included, behind
                                 parallel_for (runtime/pool.h); 0: serial */
  const nnc_rt *rt;           /* instead of a pool: this nnc_rt, which must outlive the executor */
  int64_t batch_max;          /* the largest n a call may have */
} nnc_rt_executor_opts;

/* An executor over lib with an entry for each of the n programs (names copied). NULL with a
 * message in err when a program has no entry; lib is freed with the executor, or then. */
nnc_rt_executor *nnc_rt_executor_new(const nnc_rt_backend *, void *lib, const char *const *programs, int n,
                                     const nnc_rt_executor_opts *, char *err, size_t cap);

/* What the core keeps, for a backend's own queries (timing, one kernel call at a time). */
void *nnc_rt_executor_lib(const nnc_rt_executor *);
const char *nnc_rt_executor_backend(const nnc_rt_executor *);
uint8_t *nnc_rt_executor_scratch(const nnc_rt_executor *);
const nnc_rt *nnc_rt_executor_rt(const nnc_rt_executor *);
int nnc_rt_executor_threads(const nnc_rt_executor *);
/* The ABI arguments of a call over the caller's regions and the executor's scratch. */
nnc_args nnc_rt_executor_args(const nnc_rt_executor *, uint8_t *persist, uint8_t *io, const nnc_rt_call *);

#endif
