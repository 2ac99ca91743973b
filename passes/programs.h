/* Programs of a module (DESIGN §4): train_step built from the train-mode forward graph, and
 * eval_step / predict imported from the forward graphs of other elaborations. */
#ifndef NNC_PASSES_PROGRAMS_H
#define NNC_PASSES_PROGRAMS_H

#include "../ir/ir.h"

/* Adds program "train_step" to m, as its first program: a copy of train_forward (a forward graph over m's params,
 * with a loss), its backward pass w.r.t. every trainable param (not frozen, not state; tied
 * params through the param they are tied to, with the sum of their gradients), and the update
 * of m->train's optimizer (Adam, lr 1e-3, when the model has no train block). Its outputs are
 * the forward's (the loss among them, named "loss"); its state outputs the forward's (running
 * stats), each updated param and each optimizer moment. Returns false after reporting. */
bool nnc_build_train_step(nnc_module *m, const nnc_graph *train_forward, nnc_diags *);

/* Adds to m a copy of src (a graph of another module, e.g. the forward graph elaborated in
 * EVAL or PREDICT mode), named name (NULL: src's name). Every param and state node of src must
 * name a buffer of m of the same type, and no program of m may have that name already.
 * Returns the copy, or NULL after reporting. */
nnc_graph *nnc_module_import_program(nnc_module *m, const nnc_graph *src, const char *name, nnc_diags *);

/* The program of m named name (forward included), or NULL. */
nnc_graph *nnc_module_find_program(const nnc_module *m, const char *name);

#endif
