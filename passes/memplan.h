/* Memory planning (DESIGN §9): every value of a program that needs memory gets a byte range
 * in one of three regions, each range 64-byte aligned.
 *
 * - persist: the module's params and state (optimizer moments, running stats), in module
 *   param order; a tied param shares its target's range. Shared by every program.
 * - io: every program's inputs (x, y) and outputs (loss, logits) by name, at B_max, in the
 *   order the programs list them (forward first). Shared by every program.
 * - scratch: every other value of one program. For now each value has its own range (naive,
 *   correct); a reshape is a view and aliases its source's buffer.
 *
 * The persist and io layout (nnc_mem_layout) is the one the training runtime uses
 * (driver/layout.c converts it to runtime/model.h's nnc_rt_model), so compiled code and the
 * runtime agree on every offset. */
#ifndef NNC_PASSES_MEMPLAN_H
#define NNC_PASSES_MEMPLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../ir/ir.h"

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
} nnc_mem_buffer;

/* The persist and io regions of a module: buffers 0 .. nparams-1 are the params in order,
 * then the io buffers. */
typedef struct nnc_mem_layout {
  int64_t batch_max;
  nnc_mem_buffer *bufs;
  int nbufs, nparams;
  int64_t persist_bytes, io_bytes;  /* multiples of NNC_MEM_ALIGN */
} nnc_mem_layout;

/* Lays out m's persist and io regions in arena a. NULL with a message in err when two
 * programs give one input or output name different types. */
nnc_mem_layout *nnc_mem_layout_module(nnc_arena *a, const nnc_module *m, char *err, size_t cap);
/* The io or param buffer named name, or -1. */
int nnc_mem_find(const nnc_mem_layout *, const char *name);

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
} nnc_mem_plan;

/* The position of node nd in the plan's graph, or -1. */
int nnc_mem_node_pos(const nnc_mem_plan *, const nnc_node *nd);
/* The buffer holding nd's value, or -1. */
int nnc_mem_node_buffer(const nnc_mem_plan *, const nnc_node *nd);

/* Plans program g of m over layout. Every node the outputs need gets a buffer: sources their
 * persist or io buffer, a reshape its operand's, an output (not a source, not a view, named
 * once) its io buffer, every other value its own scratch range. State outputs are computed in
 * scratch and copied to persist after the program (the graph reads old values throughout).
 * `scalar` sources (lr, step, seed) get none: kernels read them as call arguments. NULL after
 * reporting through diags. */
nnc_mem_plan *nnc_mem_plan_program(nnc_arena *a, const nnc_module *m, const nnc_graph *g,
                                   const nnc_mem_layout *layout, nnc_diags *);

/* Bytes of a region of a plan. */
int64_t nnc_mem_region_bytes(const nnc_mem_plan *, nnc_mem_region);
const char *nnc_mem_region_name(nnc_mem_region);

/* One line per buffer: region, offset, bytes, name, type. */
void nnc_mem_print(FILE *, const nnc_mem_plan *);

#endif
