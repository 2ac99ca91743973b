/* --emit loops: every program's loop IR kernels (ir/loop_print.c's text form) and its calls,
 * one kernel per fused group, or per node with --no-fusion (docs/cli.md, docs/fusion.md). */
#ifndef NNC_DRIVER_EMIT_LOOPS_H
#define NNC_DRIVER_EMIT_LOOPS_H

#include "driver/options.h"
#include "ir/ir.h"
#include "ir/lowered.h"

/* Prints to o->output or stdout; an exit status. */
int nnc_cmd_emit_loops(const nnc_compiled *c, const nnc_options *o);

#endif
