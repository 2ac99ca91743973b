/* The phase emulator (DESIGN §8, docs/loops.md "GPU schedules and the phase emulator"): a loop IR
 * rewrite of a GPU-scheduled kernel into a CPU kernel that any CPU backend runs, so CUDA schedules
 * run and are tested on machines without a GPU (the pipeline's option emulate_gpu).
 *
 * GPU block loops become ordinary loops (the outermost one parallel when asked). A thread
 * region (a perfect nest of GPU thread loops) is cut into phases at its top-level barriers and
 * shuffles; each phase becomes its own loop nest over all threads of the block, run in order.
 * What lives across phases becomes an array indexed by the flattened thread id: LET variables
 * defined before a cut and used after it, LOCAL buffers (per thread), and the operand of each
 * shuffle. SHARED buffers become one LOCAL array per block. Atomic adds run as plain adds in
 * serial block loops, so results are deterministic in the emulator only.
 *
 * The emulating kernel keeps the GPU kernel's GLOBAL and SCRATCH buffers in order and reads the
 * same scalars, so it is called exactly as the GPU kernel would be. */
#ifndef NNC_PASSES_PHASE_H
#define NNC_PASSES_PHASE_H

#include <stdbool.h>
#include <stdio.h>

#include "../ir/diag.h"
#include "../ir/loop.h"
#include "../ir/lowered.h"

/* The lanes of a warp: shuffles exchange values among 32 consecutive flattened thread ids. */
#define NNC_PHASE_WARP 32

typedef struct nnc_phase_opts {
  bool parallel_blocks;       /* the outermost block loop becomes a parallel loop (else serial) */
} nnc_phase_opts;

/* The CPU kernel that emulates GPU kernel k, in arena a (k itself is not changed). NULL after
 * reporting through diags when k holds what the emulator cannot run: thread loops that do not
 * form a perfect nest, a shuffle or barrier outside a thread region's top level, a shuffle lane
 * mask outside [0, 32), a LOCAL buffer used both inside and outside thread regions. A CPU
 * kernel (k->gpu false) is returned as it is. opts may be NULL (serial blocks). */
nnc_kernel *nnc_phase_lower(nnc_arena *a, const nnc_kernel *k, const nnc_phase_opts *opts, nnc_diags *d);

/* Replaces every GPU kernel of a lowered program by its emulating kernel (allocated in a), so a
 * CPU backend runs a GPU-scheduled program. False after reporting. */
bool nnc_phase_program(nnc_arena *a, nnc_lprogram *p, const nnc_phase_opts *opts, nnc_diags *d);

#endif
