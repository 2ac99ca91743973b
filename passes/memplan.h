/* Memory planning (DESIGN §9): every value of a program that needs memory gets a byte range in
 * one of the three regions of ir/lowered.h, each range 64-byte aligned. The module layout
 * (persist and io) is made once; each program's plan first gives every scratch value its own
 * range (naive, correct), and once the program's kernel order is known, nnc_mem_plan_steps packs
 * scratch by liveness (below). */
#ifndef NNC_PASSES_MEMPLAN_H
#define NNC_PASSES_MEMPLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../ir/ir.h"
#include "../ir/lowered.h"

/* Lays out m's persist and io regions in arena a. NULL after reporting when two programs give
 * one input or output name different types. */
nnc_mem_layout *nnc_mem_layout_module(nnc_arena *a, const nnc_module *m, nnc_diags *);

/* Plans program g of m over layout. Every node the outputs need gets a buffer: sources their
 * persist or io buffer, a reshape its operand's, an output (not a source, not a view, named
 * once) its io buffer, every other value its own scratch range. State outputs are computed in
 * scratch and copied to persist after the program (the graph reads old values throughout).
 * `scalar` sources (lr, step, seed) get none: kernels read them as call arguments. NULL after
 * reporting through diags. */
nnc_mem_plan *nnc_mem_plan_program(nnc_arena *a, const nnc_module *m, const nnc_graph *g,
                                   const nnc_mem_layout *layout, nnc_diags *);

/* --- scratch by liveness (passes/memplan_alloc.c, passes/memplan_steps.c) ------------------ */

/* A range to place: bytes (aligned up by the allocator) live over steps [first, last]
 * inclusive; first < 0: never live, placed at 0. */
typedef struct nnc_mem_interval {
  int64_t bytes;
  int first, last;
  int64_t offset;             /* out */
} nnc_mem_interval;

typedef enum {
  NNC_MEM_ORDER_SIZE,         /* largest first */
  NNC_MEM_ORDER_LIFETIME,     /* longest-lived first */
  NNC_MEM_ORDER_START,        /* in order of first use, largest first among equals */
  NNC_MEM_ORDER_AREA,         /* bytes x steps, largest first */
  NNC_MEM_ORDER_COUNT
} nnc_mem_order;

const char *nnc_mem_order_name(nnc_mem_order);
/* Greedy best fit in one order: each range goes into the smallest gap between the ranges
 * already placed that are live at the same time, or above them all. Returns the bytes used. */
int64_t nnc_mem_best_fit(nnc_mem_interval *, int n, nnc_mem_order);
/* Best fit in every order, keeping the smallest; *chosen (may be NULL) names it. */
int64_t nnc_mem_pack(nnc_mem_interval *, int n, nnc_mem_order *chosen);
/* The most (aligned) bytes live at one step: no placement can use less. */
int64_t nnc_mem_lower_bound(const nnc_mem_interval *, int n);
/* A placement is valid when every range is aligned, inside [0, total), and no two ranges
 * live at a common step overlap. False with the first offending pair in err. */
bool nnc_mem_intervals_valid(const nnc_mem_interval *, int n, int64_t total, char *err, size_t cap);

/* One step of a program (a kernel call): the plan buffers it reads and writes, and the pairs
 * (out, in) for which its loop IR proves in-place safe: out may take in's range when in dies
 * at this step. Buffers may repeat. */
typedef struct nnc_mem_step {
  const int *reads;
  int nreads;
  const int *writes;
  int nwrites;
  const int (*inplace)[2];    /* {out, in} pairs */
  int ninplace;
} nnc_mem_step;

/* Replans the scratch region of P over the program's steps, in order: liveness from first to
 * last use (views share their source's buffer, so they extend its life; values saved for the
 * backward pass live to their last backward read), in-place pairs applied where the input dies
 * and the output is born at that step and fits, then nnc_mem_pack. Sets the buffers' first,
 * last, inplace_of and offsets, and the plan's scratch numbers. False after reporting when a
 * step names a buffer the plan lacks. */
bool nnc_mem_plan_steps(nnc_mem_plan *, const nnc_mem_step *, int nsteps, nnc_diags *);
/* Checks P's scratch placement (nnc_mem_intervals_valid over its scratch buffers) and that
 * every persist and io buffer lies inside its region, aligned. */
bool nnc_mem_plan_valid(const nnc_mem_plan *, char *err, size_t cap);

/* The steps of a lowered program (passes/lower.h): one per kernel call, reads and writes
 * from the kernel's GLOBAL buffers, in-place pairs from nnc_mem_inplace_proven; then
 * nnc_mem_plan_steps over its plan. nnc_lower_program calls it. */
struct nnc_lprogram;
bool nnc_mem_plan_lowered(struct nnc_lprogram *, nnc_diags *);

/* Whether kernel k may write its GLOBAL parameter out over parameter in: out is only stored to,
 * by one store, in is only loaded, every load of in sits in that store's value at the same
 * index, lanes and mask (read before write, same element), the elements are the same size,
 * and the store's index visits each element once (the loop variable of its only loop, or the
 * row-major index of its loop nest). */
struct nnc_kernel;
bool nnc_mem_inplace_proven(const struct nnc_kernel *k, int out, int in);



#endif
