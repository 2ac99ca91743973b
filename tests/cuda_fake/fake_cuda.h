/* The fake CUDA driver's own entry points (tests/cuda_fake/fake_cuda.c), for tests that link it. */
#ifndef NNC_TESTS_FAKE_CUDA_H
#define NNC_TESTS_FAKE_CUDA_H

#include <stddef.h>

/* Every driver call so far, one line each; VIOLATION lines for what breaks the driver's rules. */
const char *fake_cuda_log(void);
void fake_cuda_log_clear(void);
int fake_cuda_violations(void);
/* The nth call (1: the next) of function returns result instead of running. */
void fake_cuda_fail_call(const char *function, int nth, int result);
/* Device allocation i in the order made (cuMemAlloc), and how many are live. */
void *fake_cuda_allocation(int i, size_t *bytes);
int fake_cuda_live_allocations(void);

/* Runs before each node of a graph as the stream reaches it: params[i] points at the i-th
 * parameter's bytes as captured (a device pointer is a host address here). */
typedef void (*fake_cuda_kernel_hook)(const char *name, const unsigned grid[3], const unsigned block[3],
                                      void *const *params, int nparams, void *ctx);
void fake_cuda_on_kernel(fake_cuda_kernel_hook, void *ctx);

#endif
