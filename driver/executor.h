/* The executor --train, --eval and --sample run programs on (--target): the LLVM JIT over the
 * runtime's thread pool (the default when nnc is built with LLVM), or the reference interpreter. */
#ifndef NNC_DRIVER_EXECUTOR_H
#define NNC_DRIVER_EXECUTOR_H

#include <stdio.h>

#include "driver/options.h"
#include "ir/ir.h"
#include "runtime/model.h"

/* The target o selects: "llvm" or "interp" (--target; default llvm when built with it). */
const char *nnc_driver_target(const nnc_options *o);

/* An executor for m laid out as rm (both must outlive it); for the JIT, programs are compiled
 * (through the object cache) and run on --threads workers. NULL with a message in err. */
nnc_rt_executor *nnc_driver_executor_new(const nnc_module *m, const nnc_rt_model *rm, const nnc_options *o,
                                         char *err, size_t cap);

/* Seconds spent before the executor: parsing and elaboration, graph passes (negative: not measured). */
typedef struct nnc_driver_front_times {
  double front_s, passes_s;
} nnc_driver_front_times;

/* Prints where compile time went, phase by phase, for an executor made by
 * nnc_driver_executor_new (the interpreter compiles nothing: one line says so). */
void nnc_driver_print_compile_times(FILE *out, const nnc_rt_executor *e, nnc_driver_front_times ft);

/* A monotonic clock in seconds. */
double nnc_driver_seconds(void);

#endif
