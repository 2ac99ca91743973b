/* The driver's view of the graph passes: `--passes LIST`, `--emit kernels`, `--emit dot` and
 * `--stats` (docs/cli.md, docs/fusion.md). */
#ifndef NNC_DRIVER_FUSION_CMD_H
#define NNC_DRIVER_FUSION_CMD_H

#include <stdbool.h>
#include <stdio.h>

#include "driver/options.h"
#include "ir/ir.h"

/* Is every name of the comma-separated list a pass? */
bool nnc_driver_passes_valid(const char *list);

/* Runs --passes (or, for the fusion outputs without --passes, `simplify`) on every program
 * of m. False after reporting. --stats runs them itself, to count before and after. */
bool nnc_driver_run_passes(nnc_module *m, const nnc_options *o, nnc_diags *d);

/* --emit kernels / --emit dot: print to o->output or stdout; an exit status. */
int nnc_cmd_emit_fusion(const nnc_module *m, const nnc_options *o, bool dot);
/* --stats' graph figures, printed to out; an exit status. */
int nnc_cmd_stats(nnc_module *m, const nnc_options *o, FILE *out, nnc_diags *d);

#endif
