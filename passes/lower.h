/* Lowering (DESIGN §8): every primitive of the graph IR becomes one loop IR kernel, with a
 * schedule per target, and a program becomes a list of kernel calls over its memory plan.
 *
 * The CPU schedule loops over the result's axes (the outermost one parallel when there is
 * enough work) with explicit vectors on the innermost contiguous loop of elementwise ops,
 * reductions and matmul. The GPU schedule walks the flattened result index over blocks and
 * threads with a bounds guard; a reduction or contraction is a loop per thread. The batch n is
 * a runtime bound everywhere: loops run to n*K, buffers are batch-scaled. */
#ifndef NNC_PASSES_LOWER_H
#define NNC_PASSES_LOWER_H

#include <stdbool.h>

#include "../ir/ir.h"
#include "../ir/loop.h"
#include "../ir/lowered.h"
#include "memplan.h"

typedef enum { NNC_LOWER_CPU, NNC_LOWER_GPU } nnc_lower_target;

typedef struct nnc_lower_opts {
  nnc_lower_target target;
  int lanes;                  /* CPU: vector width in f32 lanes (1: scalar loops); 0: 16 */
  int gpu_threads;            /* GPU: threads per block; 0: 256 */
} nnc_lower_opts;

/* The kernel of node nd of graph g (not a source other than nbatch), in arena a. Its GLOBAL
 * buffers are the result, then each input that is not a `scalar` source, in order. NULL after
 * reporting when nd cannot be lowered. */
nnc_kernel *nnc_lower_node(nnc_arena *a, const nnc_module *m, const nnc_node *nd, const nnc_lower_opts *,
                           nnc_diags *);

/* A kernel copying value v into a buffer of type to (an output or a state buffer), in arena a.
 * NULL after reporting. */
nnc_kernel *nnc_lower_copy(nnc_arena *a, const nnc_module *m, const nnc_node *v, const nnc_type *to,
                           const nnc_lower_opts *, nnc_diags *);

/* Lowers the program of memory plan P (its graph, planned by nnc_mem_plan_program) one kernel per
 * needed node, deduplicates kernels (nnc_lk_hash, nnc_lk_equal), and appends the copies of
 * outputs and state outputs that are not computed in place. Scratch stays as P placed it
 * (nnc_mem_plan_lowered packs it). NULL after reporting. */
/* Moves the constant index offset that all reads of a read-only buffer share out of kernel k
 * (rewritten; its hash recomputed) and answers, per buffer, the bytes its call must move the
 * pointer (passes/call_offsets.c), or NULL when nothing moved: the per-step kernels of an
 * unrolled sequence become one kernel called T times. */
int64_t *nnc_lower_call_offsets(nnc_arena *a, nnc_kernel *k);

nnc_lprogram *nnc_lower_program(nnc_arena *a, const nnc_module *m, nnc_mem_plan *P, const nnc_lower_opts *,
                                nnc_diags *);

/* The kernel of group `group` of a fusion plan (passes/fusion.h) of a graph of m, in arena a:
 * the group's members and inlined nodes computed in one kernel (passes/lower_group.c,
 * docs/fusion.md). Its GLOBAL buffers are the group's outputs, then its inputs that are not
 * `scalar` sources, in the plan's order. NULL after reporting when it cannot be lowered. */
struct nnc_fusion_plan;
nnc_kernel *nnc_lower_group(nnc_arena *a, const nnc_module *m, const struct nnc_fusion_plan *plan, int group,
                            const nnc_lower_opts *, nnc_diags *);

/* Lowers the graph of a fusion plan over its memory plan P with one call per group, then the
 * copies to outputs and state as nnc_lower_program does. Values inside a group are never read or
 * written by any call, so the memory plan need not place them. */
nnc_lprogram *nnc_lower_program_fused(nnc_arena *a, const nnc_module *m, const struct nnc_fusion_plan *plan,
                                      nnc_mem_plan *P, const nnc_lower_opts *, nnc_diags *);


#endif
