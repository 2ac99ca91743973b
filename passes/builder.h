/* Emitting typed nodes from a pass (autodiff, optimizer update): small constructors that
 * create a node, set its attributes and type it with nnc_infer_type.
 *
 * Failure is sticky, so a VJP reads as straight-line math: when a node cannot be typed the
 * builder reports an internal error once (at the location of the forward node being
 * differentiated) and every later constructor given a NULL input returns NULL. */
#ifndef NNC_PASSES_BUILDER_H
#define NNC_PASSES_BUILDER_H

#include "../ir/ir.h"

typedef struct nnc_gb {
  nnc_graph *g;
  nnc_loc loc;                    /* stamped on every node emitted */
  nnc_diags *diags;
  bool failed;
} nnc_gb;

nnc_gb nnc_gb_make(nnc_graph *, nnc_diags *);

/* A new node over inputs (NULL if any input is NULL or the builder has failed). Attributes
 * are set by the caller, then nnc_gb_finish types it. `given` is the type of ops whose type
 * does not follow from their inputs (const, broadcast, reshape, scatter_add), else NULL. */
nnc_node *nnc_gb_begin(nnc_gb *, nnc_op, int n, nnc_node *const *inputs, const nnc_type *given);
nnc_node *nnc_gb_finish(nnc_gb *, nnc_node *);

nnc_node *nnc_gb_unary(nnc_gb *, nnc_op, nnc_node *a);
nnc_node *nnc_gb_binary(nnc_gb *, nnc_op, nnc_node *a, nnc_node *b);
nnc_node *nnc_gb_const(nnc_gb *, nnc_type, double value);
/* A const of a's type (dtype included). */
nnc_node *nnc_gb_const_like(nnc_gb *, const nnc_node *a, double value);
nnc_node *nnc_gb_cmp(nnc_gb *, nnc_cmp, nnc_node *a, nnc_node *b);
nnc_node *nnc_gb_select(nnc_gb *, nnc_node *cond, nnc_node *a, nnc_node *b);
nnc_node *nnc_gb_cast(nnc_gb *, nnc_node *a, nnc_dtype);
nnc_node *nnc_gb_reshape(nnc_gb *, nnc_node *a, nnc_type);
/* axes[i]: the output axis of input axis i (naxes == rank of a). */
nnc_node *nnc_gb_broadcast(nnc_gb *, nnc_node *a, nnc_type, int naxes, const int64_t *axes);
/* A rank-0 value broadcast to type t (its dtype kept). */
nnc_node *nnc_gb_splat(nnc_gb *, nnc_node *scalar, nnc_type t);
/* Sum over the sorted axes; with no axes, a itself. */
nnc_node *nnc_gb_reduce_sum(nnc_gb *, nnc_node *a, int naxes, const int64_t *axes);
/* Sum of every element, as a rank-0 value. */
nnc_node *nnc_gb_sum_all(nnc_gb *, nnc_node *a);
nnc_node *nnc_gb_slice(nnc_gb *, nnc_node *a, const int64_t *start, const int64_t *stop, const int64_t *step);
nnc_node *nnc_gb_pad(nnc_gb *, nnc_node *a, const int64_t *lo, const int64_t *hi, double value);
nnc_node *nnc_gb_matmul(nnc_gb *, nnc_node *a, nnc_node *b, bool trans_a, bool trans_b);
/* A source node (param, state, scalar, input) named name of type t. */
nnc_node *nnc_gb_source(nnc_gb *, nnc_op, const char *name, nnc_type t);

#endif
