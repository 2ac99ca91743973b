/* The compiled module as the runtime sees it (runtime/model.h): every param, piece of state
 * and optimizer moment in the persist region, every program input and output in the io
 * region at B_max. The layout is the pipeline's (ir/lowered.h), translated: there is no second
 * layout algorithm. */
#ifndef NNC_DRIVER_LAYOUT_H
#define NNC_DRIVER_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "ir/lowered.h"
#include "runtime/model.h"

/* c compiled at least through the plan stage. Buffers 0 .. nparams-1 are the module's params in
 * order; then the io buffers. Names point into the module and the layout, which must outlive
 * the result. */
nnc_rt_model *nnc_layout_model(const nnc_compiled *c);
void nnc_layout_free(nnc_rt_model *);

/* Writes every param's initial values (nnc_param_init_values, keyed by seed) into persist. */
void nnc_layout_init_params(const nnc_module *m, const nnc_rt_model *rm, uint32_t seed, uint8_t *persist);

/* The runtime's dtype for an IR dtype, and the IR type of a buffer (for binding tensors). */
nnc_rt_dtype nnc_layout_rt_dtype(nnc_dtype);
nnc_type nnc_layout_buffer_type(const nnc_rt_buffer *);

#endif
