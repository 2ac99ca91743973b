/* The compile pipeline (DESIGN §2, docs/pipeline.md): one function runs the stages once and in
 * order, and every emitter, executor and test harness takes what it returns. Nothing else
 * differentiates a module, fuses, lays memory out or lowers.
 *
 *   autodiff   train_step from the train-mode forward graph (passes/programs.h)
 *   simplify   the graph passes on every program (passes/simplify.h)
 *   fuse       a fusion plan per program (passes/fusion.h); without fusion, none
 *   plan       the module's persist and io layout, and each program's memory plan
 *   lower      each kernel (a fused group, or one node) to loop IR with the target's schedule
 *              (passes/lower.h): the CPU's register tiles, or the GPU's hand-written schedules
 *              for the anchors that have one; GPU kernels that a CPU is to run (tests) are then
 *              rewritten by the phase emulator (passes/phase.h)
 *   scratch    each program's scratch region packed by liveness over its calls (passes/memplan.h)
 *
 * The result (ir/lowered.h) holds the programs after each stage, so a caller that stops early
 * (`--stop-after fuse --emit kernels`) prints what it needs from the same structure. The module
 * itself only gains train_step: its programs are not replaced, so the reference interpreter
 * keeps running the graphs the front end built. */
#ifndef NNC_PASSES_PIPELINE_H
#define NNC_PASSES_PIPELINE_H

#include <stdbool.h>

#include "../ir/ir.h"
#include "../ir/lowered.h"
#include "lower.h"

typedef enum {
  NNC_STAGE_AUTODIFF,
  NNC_STAGE_SIMPLIFY,
  NNC_STAGE_FUSE,
  NNC_STAGE_PLAN,
  NNC_STAGE_LOWER,
  NNC_STAGE_SCRATCH,
  NNC_STAGE_COUNT
} nnc_stage;

typedef struct nnc_pipeline_opts {
  bool train;                 /* autodiff: build train_step when the forward graph has an objective */
  const char *passes;         /* simplify: the graph passes, as `--passes` (NULL: "simplify"; "": none) */
  bool no_fusion;             /* fuse: one kernel per node instead of one per fused group */
  nnc_lower_opts lower;       /* lower: the target and its schedule's parameters */
  bool emulate_gpu;           /* lower: GPU kernels rewritten to run on the CPU (passes/phase.h) */
  nnc_stage last;             /* the last stage to run; 0 (autodiff) runs only the first */
} nnc_pipeline_opts;

/* The options that run every stage for target t, fused, simplified: what `--train` compiles. */
nnc_pipeline_opts nnc_pipeline_defaults(nnc_lower_target t);

/* Runs the stages of o over m, up to o->last. The result lives in its own arena and points into
 * m (which must outlive it). NULL after reporting through d. */
nnc_compiled *nnc_compile(nnc_module *m, const nnc_pipeline_opts *o, nnc_diags *d);
void nnc_compiled_free(nnc_compiled *);

/* The stage named name ("autodiff", "simplify", "fuse", "plan", "lower", "scratch"), false when
 * there is none; and a stage's name. */
bool nnc_stage_from_name(const char *name, nnc_stage *out);
const char *nnc_stage_name(nnc_stage);
/* A module like m whose programs are the compiled graphs (after the graph passes): what
 * `--emit ir` prints after the pipeline. In c's arena. */
const nnc_module *nnc_compiled_module_view(const nnc_compiled *c);

#endif
