/* `nnc MODEL --emit c -o DIR`: the model as standalone C (codegen/c_program.h). */
#ifndef NNC_DRIVER_EMIT_C_H
#define NNC_DRIVER_EMIT_C_H

#include "driver/options.h"
#include "ir/ir.h"
#include "ir/lowered.h"

/* Writes DIR/model.h, DIR/model.c, DIR/nnc_abi.h, DIR/model_loader.h, DIR/model_loader.c and
 * DIR/weights.safetensors (the initial parameters, from --seed or the train block's seed).
 * Returns an exit status after reporting. */
int nnc_cmd_emit_c(const nnc_compiled *c, const nnc_options *o);

#endif
