/* Fusion (DESIGN §7, docs/fusion.md): which nodes of a program form each kernel.
 *
 * A group is one kernel: an anchor (a contraction, a pooling or gather, a row reduction, or the
 * first node of an elementwise chain), the nodes computed inside it (producers whose index
 * expressions are inlined into its loads, and the epilogue applied at its stores), and the
 * values that leave it. Every computed node belongs to exactly one group, so nothing is
 * computed twice, except the cheap nodes listed as `inlined`: generators (const, iota,
 * nbatch, rng_uniform), index maps of sources (a broadcast bias, a transposed weight) and
 * rank-0 arithmetic over sources (the optimizer's bias corrections). Those cost a few
 * operations per element and no memory traffic, so each group that reads one recomputes it.
 *
 * The plan is data: lowering turns each group into one loop IR kernel, the driver prints it
 * (`--emit kernels`, `--emit dot`) and counts it (`--stats`). */
#ifndef NNC_PASSES_FUSION_H
#define NNC_PASSES_FUSION_H

#include <stdint.h>
#include <stdio.h>

#include "../ir/ir.h"

typedef enum {
  NNC_FUSE_ELEMENTWISE,   /* one iteration space (flat: reshapes keep the flat index) */
  NNC_FUSE_REDUCE,        /* rows: reductions over the same axes of one shape, with elementwise
                             ops in the full and in the row shape, and broadcasts row -> full */
  NNC_FUSE_CONTRACTION,   /* matmul, conv2d and its gradients, with an elementwise epilogue */
  NNC_FUSE_OPAQUE,        /* gather, scatter_add, max-pooling (values + argmax), pool gradient */
  NNC_FUSE_UPDATE,        /* the optimizer update (and running stats) of every buffer: one
                             kernel of several loops, run after every gradient is known */
} nnc_fuse_kind;

typedef struct nnc_fuse_group {
  nnc_fuse_kind kind;
  const nnc_node *anchor;
  const nnc_node **members;     /* computed here and only here, in graph order; anchor included */
  int nmembers;
  const nnc_node **inlined;     /* cheap nodes recomputed here (possibly in other groups too) */
  int ninlined;
  const nnc_node **outputs;     /* members read by other groups, or program / state outputs */
  int noutputs;
  const nnc_node **inputs;      /* values read from memory: sources and other groups' outputs */
  int ninputs;
  const int64_t *reduce_axes;   /* REDUCE: the reduced axes of reduce_shape */
  int nreduce_axes;
  nnc_type reduce_shape;        /* REDUCE: the full shape the rows come from */
} nnc_fuse_group;

typedef struct nnc_fusion_plan {
  const nnc_graph *graph;
  nnc_fuse_group *groups;       /* in an order that respects their dependencies */
  int ngroups;
  int *group_of;                /* per node position: its group, or -1 (source, inlined, unused) */
} nnc_fusion_plan;

/* Groups the nodes of g that its outputs and state outputs need. Never fails on a graph that
 * verifies. Everything is allocated in arena a. */
nnc_fusion_plan *nnc_fuse_program(nnc_arena *a, const nnc_graph *g);

/* The kernel count of g without fusion: one per needed node that is not a source (nbatch
 * excepted) or a reshape (a view), as passes/lower.c lowers it. */
int nnc_fuse_unfused_kernels(const nnc_graph *g);
/* Bytes read and written by one step at B_max: every unfused kernel reading its inputs and
 * writing its result, or every group reading its inputs and writing its outputs. */
int64_t nnc_fuse_unfused_bytes(const nnc_graph *g, int64_t batch_max);
int64_t nnc_fuse_plan_bytes(const nnc_fusion_plan *, int64_t batch_max);

const char *nnc_fuse_kind_name(nnc_fuse_kind);
/* `--emit kernels`: each group with its anchor, nodes (inlined ones marked), source lines. */
void nnc_fuse_print(FILE *, const nnc_fusion_plan *);
/* `--emit dot`: the graph with each group as a cluster (Graphviz); call once per program,
 * between nnc_fuse_dot_begin and nnc_fuse_dot_end. */
void nnc_fuse_dot_begin(FILE *, const char *module);
void nnc_fuse_dot_program(FILE *, const nnc_fusion_plan *, int program_index);
void nnc_fuse_dot_end(FILE *);

#endif
