/* The optimizer update as graph nodes (DESIGN §4 functional state, docs/autodiff.md): the new
 * value of every trained param and optimizer moment is a state output of the program, computed
 * exactly as PyTorch 1.13's single-tensor (foreach=False) optimizers compute it. */
#ifndef NNC_PASSES_OPTIM_H
#define NNC_PASSES_OPTIM_H

#include "../ir/ir.h"

/* One trained parameter: its buffer's name, its value in the graph and its gradient. */
typedef struct nnc_optim_target {
  const char *name;
  nnc_node *param;
  nnc_node *grad;
} nnc_optim_target;

/* PyTorch's defaults for optimizer ("SGD", "Adam", "AdamW"; NULL: Adam), lr 1e-3. */
void nnc_optim_defaults(nnc_train_cfg *, const char *optimizer);

/* The runtime scalar of g named name ("lr": f32[], "step": i32[], the steps already taken),
 * added as a `scalar` source node when g has none; NULL if g has one of another type. */
nnc_node *nnc_optim_scalar(nnc_graph *g, const char *name, nnc_dtype);

/* Appends clip_grad_norm (when cfg->clip_grad_norm > 0) and the update of cfg->optimizer for
 * each target, as state outputs of g named after the params and their moments
 * ("<param>.exp_avg", "<param>.exp_avg_sq", "<param>.momentum_buffer"). Moments are added to
 * module m as zero-initialized state params when missing, and read through `state` nodes.
 * Reports a bad configuration through diags and returns false. */
bool nnc_optim_update(nnc_module *m, nnc_graph *g, const nnc_train_cfg *cfg, int n, const nnc_optim_target *targets,
                      nnc_diags *);

#endif
