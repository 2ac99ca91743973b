/* The front end: model file text -> syntax tree -> graph IR module. */
#ifndef NNC_FRONTEND_H
#define NNC_FRONTEND_H

#include "../ir/ir.h"
#include "ast.h"

/* Parses a model file. Every syntax error is reported through diags (the parser recovers at
 * statement boundaries); returns the tree of what parsed, or NULL when nothing did. */
nnc_ast *nnc_parse_source(nnc_arena *, const nnc_source *, nnc_diags *);

/* `--set NAME=VALUE` overrides of hyperparameters (and train-block fields). */
typedef struct nnc_override {
  const char *name;
  const char *value;
  bool used;
} nnc_override;

/* Training mode: BatchNorm uses batch statistics and updates its running stats (as state
 * outputs), dropout draws a mask. Eval mode: running stats, no dropout. Predict: eval mode
 * without the objective and without inputs only the objective needs (labels). */
typedef enum { NNC_MODE_TRAIN, NNC_MODE_EVAL, NNC_MODE_PREDICT } nnc_mode;

typedef struct nnc_elab_opts {
  nnc_mode mode;
  nnc_override *overrides;
  int noverrides;
  int64_t batch;              /* --batch: B_max; 0 = the train block's batch, else 64 */
  const char *model;          /* which model of the file; NULL: the only (or last) one */
} nnc_elab_opts;

/* Elaborates the tree into a module: hyperparameters resolved, layers instantiated with
 * PyTorch-named parameters, composites expanded into primitives, every shape checked.
 * Reports every independent error; returns NULL if there was any. */
nnc_module *nnc_elaborate(const nnc_ast *file, const nnc_elab_opts *, nnc_diags *);

#endif
