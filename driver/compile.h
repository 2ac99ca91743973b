/* The compile pipeline the driver runs: model file -> module with its programs. */
#ifndef NNC_DRIVER_COMPILE_H
#define NNC_DRIVER_COMPILE_H

#include "driver/options.h"
#include "ir/ir.h"

/* Parses and elaborates src into a module whose forward graph is built in o->mode. With
 * `programs`, also builds train_step (when the model has an objective), eval_step and
 * predict, with the training flags of o applied to the optimizer. NULL after reporting. */
nnc_module *nnc_driver_compile(const nnc_source *src, const nnc_options *o, bool programs, nnc_diags *);

#endif
