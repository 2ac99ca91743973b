/* --emit kernels, --emit dot and the graph figures of --stats (driver/fusion_cmd.c). */
#ifndef NNC_DRIVER_FUSION_CMD_H
#define NNC_DRIVER_FUSION_CMD_H

#include <stdbool.h>
#include <stdio.h>

#include "driver/options.h"
#include "ir/lowered.h"

/* --emit kernels / --emit dot: the fusion plans of c (compiled through fuse), to o->output or
 * stdout; an exit status. */
int nnc_cmd_emit_fusion(const nnc_compiled *c, const nnc_options *o, bool dot);
/* --stats' graph figures of c, printed to out; an exit status. */
int nnc_cmd_stats(const nnc_compiled *c, FILE *out);

#endif
