/* The front end the driver runs: model file -> module with its forward programs. */
#ifndef NNC_DRIVER_FRONT_END_H
#define NNC_DRIVER_FRONT_END_H

#include "driver/options.h"
#include "ir/ir.h"

/* Parses and elaborates src into a module whose forward graph is built in o->mode. With
 * `programs`, the forward graph is the train-mode one, eval_step (when the model has an
 * objective) and predict are added, and the training flags of o are applied to the optimizer
 * (for train_step, which the pipeline builds). NULL after reporting. */
nnc_module *nnc_driver_front_end(const nnc_source *src, const nnc_options *o, bool programs, nnc_diags *);

#endif
