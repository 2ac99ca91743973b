/* Indexing, slicing and the ops that sequence models are written with: stack, split, chunk,
 * arange, tril/triu, masked_fill, where, ones/zeros. All are composites of the slice, reshape,
 * concat, iota, cmp and select primitives; like builtins.c, each checks its operands at the
 * source level before it emits anything.
 *
 * Indexing follows numpy's basic indexing: `x[i]` removes an axis, `x[a:b:s]` keeps it, missing
 * trailing indices take whole axes, negative indices count from the end, and slice bounds clamp
 * to the axis as Python's do. Steps are positive (the slice primitive has no reversal), and the
 * batch axis is only ever taken whole (`:`). */
#include "elab.h"

#include <math.h>
#include <string.h>

static void note_from(el_ctx *c, const el_val *v) {
  if (v->kind == V_TENSOR && v->loc.src) nnc_note(c->d, v->loc, "%s comes from here", el_type_str(c, &v->node->type));
}

/* --- unrolling bounds ------------------------------------------------------------------------- */

bool el_within_limits(el_ctx *c, nnc_loc loc) {
  if (c->too_big) return false;
  if (c->g->nnodes > EL_MAX_GRAPH_NODES) {
    nnc_error(c->d, loc, "the unrolled graph has more than %d nodes; use a shorter range or fewer layers",
              EL_MAX_GRAPH_NODES);
    c->too_big = true;
  } else if (c->iterations > EL_MAX_ITERATIONS) {
    nnc_error(c->d, loc, "more than %d loop iterations to unroll", EL_MAX_ITERATIONS);
    c->too_big = true;
  }
  return !c->too_big;
}

/* --- building blocks ----------------------------------------------------------------------------- */

nnc_node *el_slice_axis(el_ctx *c, nnc_node *x, int axis, int64_t start, int64_t stop, int64_t step, nnc_loc loc) {
  if (!x) return NULL;
  int64_t lo[NNC_MAX_RANK], hi[NNC_MAX_RANK], st[NNC_MAX_RANK];
  for (int i = 0; i < x->type.rank; i++) lo[i] = 0, hi[i] = x->type.dims[i], st[i] = 1;
  lo[axis] = start, hi[axis] = stop, st[axis] = step;
  if (start == 0 && stop == x->type.dims[axis] && step == 1) return x;
  nnc_node *n = el_new(c, NNC_OP_slice, 1, &x, loc);
  if (!n) return NULL;
  nnc_node_set_ints(n, NNC_ATTR_start, x->type.rank, lo);
  nnc_node_set_ints(n, NNC_ATTR_stop, x->type.rank, hi);
  nnc_node_set_ints(n, NNC_ATTR_step, x->type.rank, st);
  return el_done(c, n);
}

/* t without the axes marked in drop (the batch axis follows its position). */
static nnc_type drop_axes(const nnc_type *t, const bool *drop) {
  nnc_type r = {.dtype = t->dtype, .batch_axis = -1};
  for (int i = 0; i < t->rank; i++) {
    if (drop[i]) continue;
    if (i == t->batch_axis) r.batch_axis = r.rank;
    r.dims[r.rank++] = t->dims[i];
  }
  return r;
}

nnc_node *el_take(el_ctx *c, nnc_node *x, int axis, int64_t i, nnc_loc loc) {
  nnc_node *s = el_slice_axis(c, x, axis, i, i + 1, 1, loc);
  if (!s) return NULL;
  bool drop[NNC_MAX_RANK] = {false};
  drop[axis] = true;
  nnc_type t = drop_axes(&s->type, drop);
  return el_reshape(c, s, &t, loc);
}

/* The largest concat the IR takes in one node (docs/ir.md). */
#define CONCAT_MAX 4096

nnc_node *el_concat(el_ctx *c, nnc_node *const *xs, int n, int axis, nnc_loc loc) {
  if (n == 1) return xs[0];
  if (n <= CONCAT_MAX) {
    nnc_node *r = el_new(c, NNC_OP_concat, n, xs, loc);
    if (r) nnc_node_set_int(r, NNC_ATTR_axis, axis);
    return el_done(c, r);
  }
  int groups = (n + CONCAT_MAX - 1) / CONCAT_MAX;
  nnc_node **parts = nnc_arena_alloc(c->arena, sizeof(nnc_node *) * (size_t)groups);
  for (int g = 0; g < groups; g++) {
    int lo = g * CONCAT_MAX, k = n - lo < CONCAT_MAX ? n - lo : CONCAT_MAX;
    parts[g] = el_concat(c, xs + lo, k, axis, loc);
  }
  return el_concat(c, parts, groups, axis, loc);
}

nnc_node *el_stack(el_ctx *c, nnc_node *const *xs, int n, int axis, nnc_loc loc) {
  nnc_node **ys = nnc_arena_alloc(c->arena, sizeof(nnc_node *) * (size_t)n);
  for (int i = 0; i < n; i++) {
    const nnc_type *t = &xs[i]->type;
    nnc_type u = {.dtype = t->dtype, .rank = t->rank + 1, .batch_axis = t->batch_axis};
    for (int j = 0, k = 0; j < u.rank; j++) u.dims[j] = j == axis ? 1 : t->dims[k++];
    if (t->batch_axis >= axis) u.batch_axis = t->batch_axis + 1;
    ys[i] = el_reshape(c, xs[i], &u, loc);
    if (!ys[i]) return NULL;
  }
  return el_concat(c, ys, n, axis, loc);
}

nnc_node *el_sigmoid(el_ctx *c, nnc_node *x, nnc_loc loc) {
  if (!x) return NULL;
  nnc_node *e = el_unary(c, NNC_OP_exp, el_unary(c, NNC_OP_neg, x, loc), loc);
  return el_binary(c, NNC_OP_div, el_const(c, &x->type, 1, loc), el_scalar_op(c, NNC_OP_add, e, 1, loc), loc);
}

static nnc_node *iota2(el_ctx *c, int64_t m, int64_t n, int axis, nnc_loc loc) {
  nnc_node *i = el_new(c, NNC_OP_iota, 0, NULL, loc);
  if (!i) return NULL;
  i->type = nnc_type_make(NNC_I32, 2, (int64_t[]){m, n}, -1);
  nnc_node_set_int(i, NNC_ATTR_axis, axis);
  return el_done(c, i);
}

nnc_node *el_above_diagonal(el_ctx *c, int64_t m, int64_t n, int64_t diagonal, nnc_loc loc) {
  nnc_node *d = el_binary(c, NNC_OP_sub, iota2(c, m, n, 1, loc), iota2(c, m, n, 0, loc), loc);
  if (!d) return NULL;
  return el_cmp(c, NNC_CMP_GT, d, el_const(c, &d->type, (double)diagonal, loc), loc);
}

/* --- indexing ---------------------------------------------------------------------------------- */

/* Python's clamping of a slice bound against a dim of size n. */
static int64_t clamp_bound(int64_t v, int64_t n) {
  if (v < 0) v += n;
  return v < 0 ? 0 : v > n ? n : v;
}

static bool slice_part(el_ctx *c, el_scope *s, const nnc_ast *e, int64_t dflt, int64_t *out) {
  if (!e) {
    *out = dflt;
    return true;
  }
  return el_get_int(c, s, e, "index", -(INT64_C(1) << 40), INT64_C(1) << 40, out);
}

/* The [start, stop, step] of one index item against a dim of size n; *single for an integer. */
static bool index_item(el_ctx *c, el_scope *s, const nnc_ast *it, int64_t n, int64_t *r, bool *single, const char *what) {
  *single = it->kind != AST_SLICE;
  if (*single) {
    int64_t i;
    if (!slice_part(c, s, it, 0, &i)) return false;
    if (i < -n || i >= n) {
      nnc_error(c->d, it->loc, "index %lld is out of range for %s of size %lld", (long long)i, what, (long long)n);
      return false;
    }
    r[0] = i < 0 ? i + n : i, r[1] = r[0] + 1, r[2] = 1;
    return true;
  }
  bool ok = slice_part(c, s, it->c, 1, &r[2]);
  ok &= slice_part(c, s, it->a, 0, &r[0]);
  ok &= slice_part(c, s, it->b, n, &r[1]);
  if (!ok) return false;
  if (r[2] < 1) {
    nnc_error(c->d, it->c->loc, "a slice step must be positive, got %lld", (long long)r[2]);
    return false;
  }
  r[0] = clamp_bound(r[0], n), r[1] = clamp_bound(r[1], n);
  if (r[1] <= r[0]) {
    nnc_error(c->d, it->loc, "this slice of %s of size %lld is empty", what, (long long)n);
    return false;
  }
  return true;
}

static el_val index_list(el_ctx *c, el_scope *s, const nnc_ast *e, const el_val *base) {
  if (e->list.n != 1) {
    nnc_error(c->d, e->loc, "a list takes one index, got %d", e->list.n);
    return el_poison();
  }
  int64_t r[3];
  bool single;
  if (!index_item(c, s, e->list.items[0], base->nitems, r, &single, "a list")) return el_poison();
  if (single) return base->items[r[0]];
  el_val v = {.kind = V_LIST, .loc = e->loc};
  v.items = nnc_arena_alloc(c->arena, sizeof(el_val) * (size_t)(base->nitems + 1));
  for (int64_t i = r[0]; i < r[1]; i += r[2]) v.items[v.nitems++] = base->items[i];
  return v;
}

el_val el_index(el_ctx *c, el_scope *s, const nnc_ast *e) {
  el_val x = el_eval(c, s, e->a);
  if (x.kind == V_POISON) return x;
  if (x.kind == V_LIST || x.kind == V_TUPLE) return index_list(c, s, e, &x);
  if (x.kind != V_TENSOR) {
    nnc_error(c->d, e->loc, "only tensors and lists can be indexed, got %s", el_val_desc(c, &x));
    return el_poison();
  }
  const nnc_type *t = &x.node->type;
  if (e->list.n > t->rank) {
    nnc_error(c->d, e->loc, "%d indices for %s of rank %d", e->list.n, el_type_str(c, t), t->rank);
    note_from(c, &x);
    return el_poison();
  }
  int64_t lo[NNC_MAX_RANK], hi[NNC_MAX_RANK], st[NNC_MAX_RANK];
  bool drop[NNC_MAX_RANK] = {false}, sliced = false, ok = true;
  for (int i = 0; i < t->rank; i++) {
    lo[i] = 0, hi[i] = t->dims[i], st[i] = 1;
    if (i >= e->list.n) continue;
    const nnc_ast *it = e->list.items[i];
    if (i == t->batch_axis) {
      if (it->kind != AST_SLICE || it->a || it->b || it->c) {
        nnc_error(c->d, it->loc, "dim %d of %s is the batch: take it whole with ':'", i, el_type_str(c, t));
        ok = false;
      }
      continue;
    }
    int64_t r[3];
    if (!index_item(c, s, it, t->dims[i], r, &drop[i], nnc_arena_printf(c->arena, "dim %d of %s", i, el_type_str(c, t)))) {
      ok = false;
      continue;
    }
    lo[i] = r[0], hi[i] = r[1], st[i] = r[2];
    sliced |= r[0] != 0 || r[1] != t->dims[i] || r[2] != 1;
  }
  if (!ok) return el_poison();
  nnc_loc L = e->loc;
  nnc_node *n = x.node;
  if (sliced) {
    n = el_new(c, NNC_OP_slice, 1, &n, L);
    if (!n) return el_poison();
    nnc_node_set_ints(n, NNC_ATTR_start, t->rank, lo);
    nnc_node_set_ints(n, NNC_ATTR_stop, t->rank, hi);
    nnc_node_set_ints(n, NNC_ATTR_step, t->rank, st);
    n = el_done(c, n);
  }
  if (!n) return el_poison();
  nnc_type r = drop_axes(&n->type, drop);
  return el_tensor(el_reshape(c, n, &r, L), L);
}

/* --- ops ------------------------------------------------------------------------------------------ */

/* A list of at least one tensor, each of the first one's type; false after a diagnostic. */
static bool tensor_list(el_ctx *c, el_scope *s, const nnc_ast *e, const char *op, el_val *xs, bool same_type) {
  *xs = el_eval(c, s, e);
  if (xs->kind == V_POISON) return false;
  if ((xs->kind != V_LIST && xs->kind != V_TUPLE) || xs->nitems < 1) {
    nnc_error(c->d, e->loc, "%s needs a non-empty list of tensors, got %s", op, el_val_desc(c, xs));
    return false;
  }
  for (int i = 0; i < xs->nitems; i++) {
    const el_val *v = &xs->items[i];
    if (v->kind != V_TENSOR) {
      nnc_error(c->d, e->loc, "%s needs a list of tensors, item %d is %s", op, i, el_val_desc(c, v));
      return false;
    }
    if (same_type && !nnc_type_equal(&v->node->type, &xs->items[0].node->type)) {
      nnc_error(c->d, e->loc, "%s needs tensors of one type: item 0 is %s, item %d is %s", op,
                el_val_desc(c, &xs->items[0]), i, el_val_desc(c, v));
      note_from(c, &xs->items[0]);
      note_from(c, v);
      return false;
    }
  }
  return true;
}

static bool dim_arg(el_ctx *c, el_scope *s, const nnc_ast *e, int rank, int *out) {
  int64_t d = 0;
  if (!el_get_int(c, s, e, "dim", -64, 64, &d)) return false;
  if (d < -rank || d >= rank || rank == 0) {
    nnc_error(c->d, e->loc, "dim %lld is out of range for a tensor of rank %d", (long long)d, rank);
    return false;
  }
  *out = (int)(d < 0 ? d + rank : d);
  return true;
}

/* stack(tensors, dim=0): torch.stack. */
el_val el_op_stack(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val xs;
  if (!tensor_list(c, s, slot[0], "stack", &xs, true)) return el_poison();
  int rank = xs.items[0].node->type.rank, axis = 0;
  if (rank + 1 > NNC_MAX_RANK) {
    nnc_error(c->d, call->loc, "stack of %s would have more than %d dims", el_val_desc(c, &xs.items[0]), NNC_MAX_RANK);
    return el_poison();
  }
  if (slot[1] && !dim_arg(c, s, slot[1], rank + 1, &axis)) return el_poison();
  nnc_node **in = nnc_arena_alloc(c->arena, sizeof(nnc_node *) * (size_t)xs.nitems);
  for (int i = 0; i < xs.nitems; i++) in[i] = xs.items[i].node;
  return el_tensor(el_stack(c, in, xs.nitems, axis, call->loc), call->loc);
}

/* split(x, size or [sizes], dim=0) and chunk(x, chunks, dim=0): torch.split / torch.chunk, a list. */
el_val el_op_split(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!el_get_tensor(c, s, slot[0], &x)) return el_poison();
  const nnc_type *t = &x.node->type;
  /* A scalar has no dim to cut along, whether or not `dim` is given. */
  if (t->rank == 0) {
    nnc_error(c->d, call->loc, "%s of a rank-0 tensor (%s): a scalar cannot be split", sig->name, el_type_str(c, t));
    return el_poison();
  }
  int axis = 0;
  if (slot[2] && !dim_arg(c, s, slot[2], t->rank, &axis)) return el_poison();
  if (axis == t->batch_axis) {
    nnc_error(c->d, call->loc, "%s along the batch dim of %s", sig->name, el_type_str(c, t));
    return el_poison();
  }
  int64_t n = t->dims[axis], sizes[4096];
  int k = 0;
  bool chunk = strcmp(sig->name, "chunk") == 0;
  el_val a = el_eval(c, s, slot[1]);
  if (a.kind == V_POISON) return a;
  if (a.kind == V_LIST && !chunk) {
    int64_t total = 0;
    for (int i = 0; i < a.nitems; i++) {
      if (a.items[i].kind != V_NUM || !a.items[i].is_int || a.items[i].num < 1 || i >= 4096) {
        nnc_error(c->d, slot[1]->loc, "split sizes must be positive integers");
        return el_poison();
      }
      sizes[k++] = (int64_t)a.items[i].num;
      total += sizes[k - 1];
    }
    if (total != n) {
      nnc_error(c->d, slot[1]->loc, "split sizes add up to %lld, but dim %d of %s has %lld", (long long)total, axis,
                el_type_str(c, t), (long long)n);
      return el_poison();
    }
  } else {
    if (a.kind != V_NUM || !a.is_int || a.num < 1 || a.num > 1e9) {
      nnc_error(c->d, slot[1]->loc, "'%s' must be a positive integer%s", sig->params[1], chunk ? "" : " or a list of them");
      return el_poison();
    }
    int64_t size = chunk ? (n + (int64_t)a.num - 1) / (int64_t)a.num : (int64_t)a.num;
    if ((n + size - 1) / size > 4096) {
      nnc_error(c->d, call->loc, "%s into more than 4096 pieces", sig->name);
      return el_poison();
    }
    for (int64_t at = 0; at < n; at += size) sizes[k++] = at + size <= n ? size : n - at;
  }
  el_val v = {.kind = V_LIST, .loc = call->loc, .nitems = k};
  v.items = nnc_arena_alloc(c->arena, sizeof(el_val) * (size_t)k);
  for (int i = 0, at = 0; i < k; at += (int)sizes[i], i++) {
    v.items[i] = el_tensor(el_slice_axis(c, x.node, axis, at, at + sizes[i], 1, call->loc), call->loc);
    if (v.items[i].kind == V_POISON) return el_poison();
  }
  return v;
}

/* arange(end), arange(start, end, step=1): i32 when every argument is an integer, else f32. */
el_val el_op_arange(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val v[3] = {el_num(0, true, call->loc), el_num(0, true, call->loc), el_num(1, true, call->loc)};
  const nnc_ast *e[3] = {slot[1] ? slot[0] : NULL, slot[1] ? slot[1] : slot[0], slot[2]};
  bool ints = true;
  for (int i = 0; i < 3; i++) {
    if (!e[i]) continue;
    v[i] = el_eval(c, s, e[i]);
    if (v[i].kind == V_POISON) return v[i];
    if (v[i].kind != V_NUM) {
      nnc_error(c->d, e[i]->loc, "arange takes numbers, got %s", el_val_desc(c, &v[i]));
      return el_poison();
    }
    ints &= v[i].is_int;
  }
  double start = v[0].num, end = v[1].num, step = v[2].num;
  double count = step != 0 ? ceil((end - start) / step) : 0;
  if (!(count >= 1) || count > 2147483647.0) {
    nnc_error(c->d, call->loc, "arange(%g, %g, %g) has %s elements", start, end, step, count < 1 ? "no" : "too many");
    return el_poison();
  }
  nnc_loc L = call->loc;
  nnc_node *n = el_new(c, NNC_OP_iota, 0, NULL, L);
  n->type = nnc_type_make(ints ? NNC_I32 : NNC_F32, 1, (int64_t[]){(int64_t)count}, -1);
  nnc_node_set_int(n, NNC_ATTR_axis, 0);
  n = el_done(c, n);
  if (step != 1) n = el_scalar_op(c, NNC_OP_mul, n, step, L);
  if (start != 0) n = el_scalar_op(c, NNC_OP_add, n, start, L);
  return el_tensor(n, L);
}

/* tril(x, diagonal=0) / triu(x, diagonal=0) over the last two dims: torch.tril / torch.triu. */
el_val el_op_tril(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  int64_t diag = 0;
  bool ok = el_get_tensor(c, s, slot[0], &x);
  if (slot[1]) ok &= el_get_int(c, s, slot[1], "diagonal", -(INT64_C(1) << 40), INT64_C(1) << 40, &diag);
  if (!ok) return el_poison();
  const nnc_type *t = &x.node->type;
  if (t->rank < 2 || t->batch_axis >= t->rank - 2) {
    nnc_error(c->d, call->loc, "%s needs a matrix (or a batch of them) in the last two dims, got %s", sig->name,
              el_type_str(c, t));
    note_from(c, &x);
    return el_poison();
  }
  nnc_loc L = call->loc;
  int64_t m = t->dims[t->rank - 2], n = t->dims[t->rank - 1];
  bool lower = strcmp(sig->name, "tril") == 0;
  /* tril keeps column - row <= diagonal; triu keeps column - row >= diagonal */
  nnc_node *drop = lower ? el_above_diagonal(c, m, n, diag, L) : el_above_diagonal(c, n, m, -diag, L);
  if (!lower && drop) { /* the transpose of "above -diagonal" is "below diagonal" */
    nnc_node *p = el_new(c, NNC_OP_permute, 1, &drop, L);
    nnc_node_set_ints(p, NNC_ATTR_perm, 2, (int64_t[]){1, 0});
    drop = el_done(c, p);
  }
  drop = el_bcast_right(c, drop, t, L);
  nnc_node *sel = el_new(c, NNC_OP_select, 3, (nnc_node *[]){drop, el_const(c, t, 0, L), x.node}, L);
  return el_tensor(el_done(c, sel), L);
}

/* A u8 mask broadcast to x's shape; false after a diagnostic. */
static bool mask_for(el_ctx *c, const el_val *mask, const el_val *x, const char *op, nnc_loc L, nnc_node **out) {
  const nnc_type *mt = &mask->node->type, *xt = &x->node->type;
  if (mt->dtype != NNC_U8) {
    nnc_error(c->d, L, "%s needs a u8 mask (a comparison such as a > 0), got %s", op, el_type_str(c, mt));
    note_from(c, mask);
    return false;
  }
  nnc_type r, xu = *xt;
  xu.dtype = NNC_U8;
  if (!el_broadcast_type(&xu, mt, &r) || !nnc_shape_equal(&r, xt)) {
    nnc_error(c->d, L, "%s: the mask %s does not broadcast to %s", op, el_type_str(c, mt), el_type_str(c, xt));
    note_from(c, mask);
    note_from(c, x);
    return false;
  }
  *out = el_bcast_right(c, mask->node, xt, L);
  return *out != NULL;
}

/* masked_fill(x, mask, value): value where mask is 1; Tensor.masked_fill. */
el_val el_op_masked_fill(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x, mask;
  double v = 0;
  bool ok = el_get_tensor(c, s, slot[0], &x);
  ok &= el_get_tensor(c, s, slot[1], &mask);
  ok &= el_get_num(c, s, slot[2], "value", -INFINITY, INFINITY, &v);
  if (!ok) return el_poison();
  nnc_loc L = call->loc;
  if (!nnc_dtype_holds(x.node->type.dtype, v)) {
    nnc_error(c->d, slot[2]->loc, "masked_fill of %s with %g, which %s cannot hold", el_val_desc(c, &x), v,
              nnc_dtype_name(x.node->type.dtype));
    return el_poison();
  }
  nnc_node *m;
  if (!mask_for(c, &mask, &x, "masked_fill", L, &m)) return el_poison();
  nnc_node *sel = el_new(c, NNC_OP_select, 3, (nnc_node *[]){m, el_const(c, &x.node->type, v, L), x.node}, L);
  return el_tensor(el_done(c, sel), L);
}

/* where(condition, x, y): torch.where; x and y tensors or numbers, everything broadcast. */
el_val el_op_where(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val cond, a = el_eval(c, s, slot[1]), b = el_eval(c, s, slot[2]);
  bool ok = el_get_tensor(c, s, slot[0], &cond);
  if (!ok || a.kind == V_POISON || b.kind == V_POISON) return el_poison();
  nnc_loc L = call->loc;
  if (a.kind != V_TENSOR && b.kind != V_TENSOR) {
    nnc_error(c->d, L, "where needs x or y to be a tensor");
    return el_poison();
  }
  nnc_node *x, *y;
  if (!el_broadcast_pair(c, &a, &b, "where", L, &x, &y)) return el_poison();
  el_val xv = el_tensor(x, L);
  nnc_type r, cu = cond.node->type;
  cu.dtype = x->type.dtype;
  if (!el_broadcast_type(&x->type, &cu, &r)) {
    nnc_error(c->d, L, "where: the condition %s does not broadcast with %s", el_val_desc(c, &cond), el_val_desc(c, &xv));
    note_from(c, &cond);
    return el_poison();
  }
  x = el_bcast_right(c, x, &r, L), y = el_bcast_right(c, y, &r, L);
  xv = el_tensor(x, L);
  nnc_node *m;
  if (!x || !y || !mask_for(c, &cond, &xv, "where", L, &m)) return el_poison();
  return el_tensor(el_done(c, el_new(c, NNC_OP_select, 3, (nnc_node *[]){m, x, y}, L)), L);
}

/* ones([dims], dtype=f32), zeros([dims], dtype=f32): constants without a batch dim. */
el_val el_op_fill(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val d = el_eval(c, s, slot[0]);
  if (d.kind == V_POISON) return d;
  /* zeros(n) is zeros([n]): the one-item list points at `one`, which must outlive d. */
  el_val one = d;
  if (d.kind == V_NUM) d = (el_val){.kind = V_LIST, .items = &one, .nitems = 1, .loc = d.loc};
  if (d.kind != V_LIST || d.nitems > NNC_MAX_RANK) {
    nnc_error(c->d, slot[0]->loc, "%s needs a list of at most %d dims", sig->name, NNC_MAX_RANK);
    return el_poison();
  }
  nnc_dtype dt = NNC_F32;
  if (slot[1]) {
    const nnc_ast *e = slot[1];
    const char *name = e->kind == AST_NAME ? e->name : e->kind == AST_STR ? e->str : NULL;
    if (!name || !nnc_dtype_from_name(name, &dt)) {
      nnc_error(c->d, e->loc, "dtype must be f32, i32 or u8");
      return el_poison();
    }
  }
  nnc_type t = {.dtype = dt, .rank = d.nitems, .batch_axis = -1};
  for (int i = 0; i < d.nitems; i++) {
    const el_val *v = &d.items[i];
    if (v->kind != V_NUM || !v->is_int || v->num < 1 || v->num > 2147483648.0) {
      nnc_error(c->d, slot[0]->loc, "%s: dims must be positive integers (a batch dim comes from an input)", sig->name);
      return el_poison();
    }
    t.dims[i] = (int64_t)v->num;
  }
  int64_t elems = nnc_type_elements(&t, 1);
  if (elems < 0 || elems > NNC_MAX_ELEMENTS) {
    nnc_error(c->d, slot[0]->loc, "%s: %s is too large", sig->name, el_type_str(c, &t));
    return el_poison();
  }
  return el_tensor(el_const(c, &t, sig->name[0] == 'o' ? 1 : 0, call->loc), call->loc);
}
