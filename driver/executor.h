/* The executor --train, --eval and --sample run programs on (--target): the LLVM JIT over the
 * runtime's thread pool (the default when nnc is built with LLVM), CUDA, or the reference
 * interpreter; each a backend of the executor core (runtime/executor.h). */
#ifndef NNC_DRIVER_EXECUTOR_H
#define NNC_DRIVER_EXECUTOR_H

#include <stdio.h>

#include "driver/options.h"
#include "ir/lowered.h"
#include "passes/pipeline.h"
#include "runtime/model.h"

/* The target o selects: "llvm", "cuda" or "interp" (--target; default llvm when built with it). */
const char *nnc_driver_target(const nnc_options *o);

/* The pipeline the target needs: every stage for the CPU (fused) or the GPU (one kernel per node:
 * the fused groups' GPU schedules are verified, not yet run); the interpreter needs the memory
 * layout only. */
nnc_pipeline_opts nnc_driver_target_pipeline(const nnc_options *o);

/* An executor for the programs of c (compiled with nnc_driver_target_pipeline) laid out as rm
 * (both must outlive it); for the JIT, programs are compiled (through the object cache) and run
 * on --threads workers. NULL with a message in err. */
nnc_rt_executor *nnc_driver_executor_new(const nnc_compiled *c, const nnc_rt_model *rm, const nnc_options *o,
                                         char *err, size_t cap);

/* Seconds spent in the front end (parsing, elaboration, verification). */
typedef struct nnc_driver_front_times {
  double front_s;
} nnc_driver_front_times;

/* Prints where compile time went, stage by stage: the front end, the pipeline's stages (c), and
 * the backend's own phases (the interpreter compiles nothing: one line says so). */
void nnc_driver_print_compile_times(FILE *out, const nnc_compiled *c, const nnc_rt_executor *e,
                                    nnc_driver_front_times ft);

/* A monotonic clock in seconds. */
double nnc_driver_seconds(void);

#endif
