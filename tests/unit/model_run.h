/* Whole models through the reference interpreter, for the numerical tests (nnc_parity,
 * gradcheck_models): compile a model file with the driver's pipeline, keep named host buffers
 * (params, state, inputs, runtime scalars), run a program over them, and build the graph that
 * gives the loss's gradient with respect to every trainable param. */
#ifndef NNC_TESTS_MODEL_RUN_H
#define NNC_TESTS_MODEL_RUN_H

#include <stdio.h>

#include "driver/options.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/pipeline.h"

/* Named tensors a program call binds; each name is owned (copied) and each tensor too. */
typedef struct mr_buffers {
  int n, cap;
  char **names;
  nnc_tensor *vals;
} mr_buffers;

/* Stores t under name, freeing a tensor already stored there. Returns the stored copy. */
nnc_tensor *mr_set(mr_buffers *, const char *name, nnc_tensor t);
nnc_tensor *mr_find(const mr_buffers *, const char *name);
void mr_set_scalar(mr_buffers *, const char *name, nnc_dtype, double value);
void mr_free(mr_buffers *);

/* Runs g of m over bufs at batch n; outputs / state_outputs as nnc_interp_run. */
bool mr_run(const nnc_module *m, const nnc_graph *g, nnc_interp_precision prec, const mr_buffers *bufs, int64_t n,
            nnc_tensor *outputs, nnc_tensor *state_outputs, char *err, size_t cap);

/* Options as the driver's defaults: nothing overridden, mode TRAIN. */
nnc_options mr_default_options(void);

/* Reads path through the front end (programs: train_step, eval_step, predict too, train_step
 * from the pipeline's autodiff stage). src receives the file text, which must outlive the module
 * (locations point into it); diagnostics go to diag. NULL after reporting. */
nnc_module *mr_compile(const char *path, const nnc_options *o, bool programs, nnc_source *src, FILE *diag);

/* The pipeline (passes/pipeline.h) over m, as every backend test gets its programs: NULL after
 * reporting to diag. */
nnc_compiled *mr_pipeline(nnc_module *m, const nnc_pipeline_opts *o, FILE *diag);

/* A copy of m's forward graph (the train-mode one when compiled so) with no state outputs, whose
 * outputs are the forward's followed by one "grad.<param>" per trainable param (not frozen, not
 * state; a tied param's uses count for the param it is tied to), in m's param order. *first_grad
 * is the index of the first gradient output. NULL after reporting. */
nnc_graph *mr_gradient_graph(nnc_module *m, int *first_grad, nnc_diags *);

/* True for params the gradient graph has a "grad.<name>" output for. */
bool mr_is_trainable(const nnc_module *m, int param);

#endif
