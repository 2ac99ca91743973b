/* `nnc MODEL --emit llvm|asm|obj -o FILE`: the model's programs as one LLVM module
 * (codegen/llvm.h), optimized for this machine, as LLVM IR text, assembly or an object file. */
#ifndef NNC_DRIVER_EMIT_LLVM_H
#define NNC_DRIVER_EMIT_LLVM_H

#include "driver/options.h"
#include "ir/ir.h"
#include "ir/lowered.h"

/* Returns an exit status after reporting. */
int nnc_cmd_emit_llvm(const nnc_compiled *c, const nnc_options *o);

#endif
