/* What lowering hands every backend (DESIGN §8-§10): the memory of a module and of each program
 * (three regions of 64-byte aligned ranges), and a program as a list of loop IR kernel calls
 * over that memory. The pipeline makes them; the printers and executors of codegen/ read them,
 * and need nothing from passes/ to do so.
 *
 * - persist: the module's params and state (optimizer moments, running stats), in module
 *   param order; a tied param shares its target's range. Shared by every program.
 * - io: every program's inputs (x, y) and outputs (loss, logits) by name, at B_max, in the
 *   order the programs list them (forward first). Shared by every program.
 * - scratch: every other value of one program, packed by liveness over the program's calls;
 *   a reshape is a view and aliases its source's buffer.
 *
 * The persist and io layout is the one the training runtime uses (driver/layout.c converts it
 * to runtime/model.h's nnc_rt_model), so compiled code and the runtime agree on every offset. */
#ifndef NNC_IR_LOWERED_H
#define NNC_IR_LOWERED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ir.h"
#include "loop.h"

#define NNC_MEM_ALIGN 64

typedef enum { NNC_MEM_PERSIST, NNC_MEM_IO, NNC_MEM_SCRATCH } nnc_mem_region;

typedef enum {
  NNC_MEM_PARAM,      /* a module param or state buffer (param >= 0) */
  NNC_MEM_INPUT,      /* a program input: x, y */
  NNC_MEM_OUTPUT,     /* a program output: loss, logits */
  NNC_MEM_VALUE,      /* an intermediate value of one program (node >= 0) */
} nnc_mem_kind;

typedef struct nnc_mem_buffer {
  const char *name;           /* param, input or output name; "%<node id>" for values */
  nnc_mem_kind kind;
  nnc_mem_region region;
  nnc_type type;              /* dims at B: the bytes below are at B_max */
  int64_t offset;             /* bytes from the region's start; a multiple of NNC_MEM_ALIGN */
  int64_t bytes;              /* at B_max */
  int param;                  /* PARAM: index into the module's params; else -1 */
  int tied_to;                /* PARAM: the param whose storage this one shares, or -1 */
  /* SCRATCH, after nnc_mem_plan_steps: the steps (kernel calls) from its first to its last use,
   * inclusive; first = -1 when no step uses it. */
  int first, last;
  int inplace_of;             /* SCRATCH: the buffer whose range it takes over in place, or -1 */
} nnc_mem_buffer;

/* The persist and io regions of a module: buffers 0 .. nparams-1 are the params in order,
 * then the io buffers. */
typedef struct nnc_mem_layout {
  int64_t batch_max;
  nnc_mem_buffer *bufs;
  int nbufs, nparams;
  int64_t persist_bytes, io_bytes;  /* multiples of NNC_MEM_ALIGN */
} nnc_mem_layout;

/* The plan of one program: the layout's buffers (same indices) followed by its scratch
 * buffers, and for each node of the graph (by position) the buffer holding its value. */
typedef struct nnc_mem_plan {
  const nnc_graph *graph;
  const nnc_mem_layout *layout;
  nnc_mem_buffer *bufs;
  int nbufs;
  int *node_buf;              /* per node position: a buffer, or -1 (unused, or a scalar source) */
  bool *needed;               /* per node position: an output or state output depends on it */
  int64_t scratch_bytes;      /* a multiple of NNC_MEM_ALIGN */
  struct nnc_mem_slot *slots; /* nodes sorted by address, for nnc_mem_node_pos */
  /* After nnc_mem_plan_steps (else 0 steps, and the naive plan's numbers): */
  int nsteps;
  int64_t scratch_naive;      /* every scratch buffer in its own range */
  int64_t scratch_lower_bound; /* the most bytes live at once (ranges aligned, in-place shared) */
  const char *scratch_order;  /* the allocation order that won */
  int ninplace;               /* buffers that took over an input's range */
} nnc_mem_plan;


/* One kernel call of a program: the kernel and, for each of its GLOBAL buffers in parameter
 * order, the plan buffer it is bound to, and how far into it the pointer passed starts. */
typedef struct nnc_lcall {
  int kernel;                 /* index into the program's kernels */
  int *bufs;
  int nbufs;
  int64_t *offsets;           /* per parameter, bytes past its buffer's start (a multiple of 64;
                               * only read-only ones, passes/call_offsets.c); NULL: all 0 */
  const nnc_node *node;       /* the node it computes; NULL for a copy to an output or state */
  const char *what;           /* "%12 = matmul", "state fc1.weight", "output logits" */
} nnc_lcall;

/* The bytes past the start of its plan buffer at which call c passes parameter j. */
static inline int64_t nnc_lcall_offset(const nnc_lcall *c, int j) { return c->offsets ? c->offsets[j] : 0; }

typedef struct nnc_lprogram {
  const char *name;           /* "train_step", "eval_step", "predict" */
  const nnc_graph *graph;
  nnc_kernel **kernels;       /* deduplicated: structurally equal kernels appear once */
  int nkernels;
  nnc_lcall *calls;           /* in order */
  int ncalls;
  nnc_mem_plan *plan;
} nnc_lprogram;

/* --- the pipeline's result (passes/pipeline.h) ------------------------------------------------ */

/* One program through the pipeline: its graph after each stage that changes it. */
typedef struct nnc_compiled_program {
  const char *name;
  const nnc_graph *source;          /* the module's program */
  const nnc_graph *graph;           /* after the graph passes */
  const struct nnc_fusion_plan *fusion; /* its fusion plan; NULL without fusion */
  nnc_mem_plan *plan;               /* its memory plan (scratch packed after the scratch stage) */
  nnc_lprogram *lowered;            /* its kernel calls */
} nnc_compiled_program;

typedef struct nnc_compiled {
  nnc_arena *arena;
  const nnc_module *module;
  int stages;                       /* how many stages ran (passes/pipeline.h's nnc_stage order) */
  bool gpu;                         /* lowered with the GPU schedules */
  nnc_compiled_program *programs;   /* what backends run: every program but forward, or forward alone */
  int nprograms;
  const nnc_mem_layout *layout;     /* persist and io, from the plan stage on */
  int64_t scratch_bytes;            /* the largest program's scratch region */
  double seconds[8];                /* the time each stage took, in nnc_stage order */
} nnc_compiled;

/* The distinct kernels of several programs, equal kernels (nnc_lk_equal) counted once: what the
 * emitters print once and the executors load once. */
typedef struct nnc_kernel_set {
  nnc_kernel **list;
  int n, nprogs;
  int **index;                      /* per program, per program kernel: its index in list */
  int *program;                     /* per kernel of list: the program it first appears in */
} nnc_kernel_set;

/* The index in list[0..n) of a kernel equal to k (by its hash from nnc_lk_finish, then
 * structurally), or -1. */
int nnc_kernel_find(nnc_kernel *const *list, int n, const nnc_kernel *k);
void nnc_kernel_set_build(nnc_kernel_set *, nnc_lprogram *const *progs, int nprogs);
void nnc_kernel_set_free(nnc_kernel_set *);

/* The compiled program named name, or NULL. */
const nnc_compiled_program *nnc_compiled_find(const nnc_compiled *, const char *name);

/* A plan's nodes sorted by address (the planner sorts them with nnc_mem_slot_cmp), so that a
 * node's position is a binary search away. */
struct nnc_mem_slot {
  const nnc_node *node;
  int pos;
};
int nnc_mem_slot_cmp(const void *, const void *);

/* The io or param buffer named name, or -1. */
int nnc_mem_find(const nnc_mem_layout *, const char *name);
/* The position of node nd in the plan's graph, or -1. */
int nnc_mem_node_pos(const nnc_mem_plan *, const nnc_node *nd);
/* The buffer holding nd's value, or -1. */
int nnc_mem_node_buffer(const nnc_mem_plan *, const nnc_node *nd);
/* Bytes of a region of a plan. */
int64_t nnc_mem_region_bytes(const nnc_mem_plan *, nnc_mem_region);
const char *nnc_mem_region_name(nnc_mem_region);

/* One line per buffer: region, offset, bytes, live steps, name, type; then the scratch size,
 * the naive sum and the lower bound. */
void nnc_mem_print(FILE *, const nnc_mem_plan *);
/* Prints every kernel (nnc_lk_print) and the call list. */
void nnc_lower_print(FILE *, const nnc_lprogram *);

#endif
