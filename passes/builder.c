/* Typed node constructors for passes (see builder.h). */
#include "builder.h"

#include <string.h>

nnc_gb nnc_gb_make(nnc_graph *g, nnc_diags *diags) { return (nnc_gb){.g = g, .diags = diags}; }

nnc_node *nnc_gb_begin(nnc_gb *b, nnc_op op, int n, nnc_node *const *inputs, const nnc_type *given) {
  if (b->failed) return NULL;
  for (int i = 0; i < n; i++)
    if (!inputs[i]) return NULL;
  nnc_node *node = nnc_node_new(b->g, op, n, inputs, b->loc);
  if (given) node->type = *given;
  return node;
}

nnc_node *nnc_gb_finish(nnc_gb *b, nnc_node *n) {
  if (!n || b->failed) return NULL;
  char err[256];
  if (nnc_infer_type(n, err, sizeof err)) return n;
  /* A pass built a node its shape rule rejects: a bug in the pass, reported once. */
  b->failed = true;
  if (b->diags) nnc_error(b->diags, b->loc, "internal error in %s: %s", b->g->name, err);
  return NULL;
}

nnc_node *nnc_gb_unary(nnc_gb *b, nnc_op op, nnc_node *a) {
  return nnc_gb_finish(b, nnc_gb_begin(b, op, 1, &a, NULL));
}

nnc_node *nnc_gb_binary(nnc_gb *b, nnc_op op, nnc_node *x, nnc_node *y) {
  return nnc_gb_finish(b, nnc_gb_begin(b, op, 2, (nnc_node *[]){x, y}, NULL));
}

nnc_node *nnc_gb_const(nnc_gb *b, nnc_type t, double value) {
  nnc_node *n = nnc_gb_begin(b, NNC_OP_const, 0, NULL, &t);
  if (n) nnc_node_set_num(n, NNC_ATTR_value, value);
  return nnc_gb_finish(b, n);
}

nnc_node *nnc_gb_const_like(nnc_gb *b, const nnc_node *a, double value) {
  return a ? nnc_gb_const(b, a->type, value) : NULL;
}

nnc_node *nnc_gb_cmp(nnc_gb *b, nnc_cmp c, nnc_node *x, nnc_node *y) {
  nnc_node *n = nnc_gb_begin(b, NNC_OP_cmp, 2, (nnc_node *[]){x, y}, NULL);
  if (n) nnc_node_set_int(n, NNC_ATTR_cmp, c);
  return nnc_gb_finish(b, n);
}

nnc_node *nnc_gb_select(nnc_gb *b, nnc_node *cond, nnc_node *x, nnc_node *y) {
  return nnc_gb_finish(b, nnc_gb_begin(b, NNC_OP_select, 3, (nnc_node *[]){cond, x, y}, NULL));
}

nnc_node *nnc_gb_cast(nnc_gb *b, nnc_node *a, nnc_dtype dt) {
  nnc_node *n = nnc_gb_begin(b, NNC_OP_cast, 1, &a, NULL);
  if (n) nnc_node_set_int(n, NNC_ATTR_dtype, dt);
  return nnc_gb_finish(b, n);
}

nnc_node *nnc_gb_reshape(nnc_gb *b, nnc_node *a, nnc_type t) {
  if (a && nnc_type_equal(&a->type, &t)) return a;
  return nnc_gb_finish(b, nnc_gb_begin(b, NNC_OP_reshape, 1, &a, &t));
}

nnc_node *nnc_gb_broadcast(nnc_gb *b, nnc_node *a, nnc_type t, int naxes, const int64_t *axes) {
  nnc_node *n = nnc_gb_begin(b, NNC_OP_broadcast, 1, &a, &t);
  if (n && naxes > 0) nnc_node_set_ints(n, NNC_ATTR_axes, naxes, axes);
  return nnc_gb_finish(b, n);
}

nnc_node *nnc_gb_splat(nnc_gb *b, nnc_node *s, nnc_type t) {
  if (!s) return NULL;
  t.dtype = s->type.dtype;
  if (t.rank == 0) return s;
  return nnc_gb_broadcast(b, s, t, 0, NULL);
}

nnc_node *nnc_gb_reduce_sum(nnc_gb *b, nnc_node *a, int naxes, const int64_t *axes) {
  if (naxes == 0) return a;
  nnc_node *n = nnc_gb_begin(b, NNC_OP_reduce_sum, 1, &a, NULL);
  if (n) nnc_node_set_ints(n, NNC_ATTR_axes, naxes, axes);
  return nnc_gb_finish(b, n);
}

nnc_node *nnc_gb_sum_all(nnc_gb *b, nnc_node *a) {
  if (!a) return NULL;
  int64_t axes[NNC_MAX_RANK];
  for (int i = 0; i < a->type.rank; i++) axes[i] = i;
  return nnc_gb_reduce_sum(b, a, a->type.rank, axes);
}

nnc_node *nnc_gb_slice(nnc_gb *b, nnc_node *a, const int64_t *start, const int64_t *stop, const int64_t *step) {
  nnc_node *n = nnc_gb_begin(b, NNC_OP_slice, 1, &a, NULL);
  if (n) {
    nnc_node_set_ints(n, NNC_ATTR_start, a->type.rank, start);
    nnc_node_set_ints(n, NNC_ATTR_stop, a->type.rank, stop);
    nnc_node_set_ints(n, NNC_ATTR_step, a->type.rank, step);
  }
  return nnc_gb_finish(b, n);
}

nnc_node *nnc_gb_pad(nnc_gb *b, nnc_node *a, const int64_t *lo, const int64_t *hi, double value) {
  nnc_node *n = nnc_gb_begin(b, NNC_OP_pad, 1, &a, NULL);
  if (n) {
    nnc_node_set_ints(n, NNC_ATTR_lo, a->type.rank, lo);
    nnc_node_set_ints(n, NNC_ATTR_hi, a->type.rank, hi);
    nnc_node_set_num(n, NNC_ATTR_value, value);
  }
  return nnc_gb_finish(b, n);
}

nnc_node *nnc_gb_matmul(nnc_gb *b, nnc_node *x, nnc_node *y, bool trans_a, bool trans_b) {
  nnc_node *n = nnc_gb_begin(b, NNC_OP_matmul, 2, (nnc_node *[]){x, y}, NULL);
  if (n && trans_a) nnc_node_set_int(n, NNC_ATTR_trans_a, 1);
  if (n && trans_b) nnc_node_set_int(n, NNC_ATTR_trans_b, 1);
  return nnc_gb_finish(b, n);
}

nnc_node *nnc_gb_source(nnc_gb *b, nnc_op op, const char *name, nnc_type t) {
  nnc_node *n = nnc_gb_begin(b, op, 0, NULL, &t);
  if (n) n->name = nnc_arena_strdup(b->g->arena, name);
  return nnc_gb_finish(b, n);
}
