/* The driver's commands that run programs (driver/train_cmd.c). Each returns an exit status
 * (driver/options.h) after reporting any error itself. */
#ifndef NNC_DRIVER_COMMANDS_H
#define NNC_DRIVER_COMMANDS_H

#include "driver/options.h"
#include "ir/ir.h"
#include "ir/lowered.h"

/* --train: trains m (compiled as c, by nnc_driver_target_pipeline) on its data through an executor
 * (docs/training.md). */
int nnc_cmd_train(nnc_module *m, const nnc_compiled *c, const nnc_options *o);
/* --eval: evaluates m's weights (--load / --resume) on the test split. */
int nnc_cmd_eval(nnc_module *m, const nnc_compiled *c, const nnc_options *o);
/* --check-kernels: each kernel on the JIT against the interpreter (driver/check_kernels.c, LLVM only). */
int nnc_cmd_check_kernels(const nnc_compiled *c, const nnc_options *o);

#endif
