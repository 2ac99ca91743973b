/* Reverse-mode automatic differentiation over the primitives (DESIGN §5, docs/autodiff.md). */
#ifndef NNC_PASSES_AUTODIFF_H
#define NNC_PASSES_AUTODIFF_H

#include "../ir/ir.h"
#include "builder.h"

/* Appends to g the backward pass of `loss` (an f32 node of g; a non-scalar loss is seeded
 * with ones, i.e. its sum is differentiated) and sets grads[i] to the gradient of the loss
 * with respect to wrt[i] (f32 nodes of g), typed as wrt[i]. Only nodes that both depend on a
 * wrt node and reach the loss get adjoints. A wrt node the loss does not depend on gets a
 * zeros const. Errors (an op without a gradient on a path that matters, bad arguments) go to
 * diags with the location of the offending node; returns false then. */
bool nnc_ad_gradients(nnc_graph *g, nnc_node *loss, int nwrt, nnc_node *const *wrt, nnc_node **grads,
                      nnc_diags *diags);

/* True when grad is the zeros const nnc_ad_gradients gives a wrt node the loss does not
 * depend on (PyTorch leaves such a .grad at None, and its optimizers skip the parameter). */
bool nnc_ad_is_structural_zero(const nnc_node *grad);

/* --- the VJP table (passes/vjp.c) ---------------------------------------------------------
 * A VJP gets the forward node n and its adjoint dy, and sets dx[i] for every input i with
 * want[i] (a node typed as n->inputs[i]); it emits nodes through the builder. It returns
 * false only when it cannot differentiate the case at hand. */
typedef bool (*nnc_vjp_fn)(nnc_gb *, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx);

/* The op's VJP, or NULL when it has no gradient. */
nnc_vjp_fn nnc_vjp_for(nnc_op);
/* Replaces an op's VJP (NULL restores the built-in one); returns the one in effect before.
 * A test hook: the gradient checker's negative test installs a wrong VJP through it. */
nnc_vjp_fn nnc_vjp_override(nnc_op, nnc_vjp_fn);

#endif
