/* `nnc FILE --memory-plan` (docs/memory.md): every program's memory plan as the C backend uses
 * it: each buffer's region, offset, size and live steps, the scratch size, the naive sum and
 * the lower bound. */
#ifndef NNC_DRIVER_MEMPLAN_CMD_H
#define NNC_DRIVER_MEMPLAN_CMD_H

#include "driver/options.h"
#include "ir/ir.h"
#include "ir/lowered.h"

/* Prints to o->output or stdout; an exit status. */
int nnc_cmd_memory_plan(const nnc_compiled *c, const nnc_options *o);

#endif
