/* Simplification passes (passes/simplify.h).
 *
 * How it works. Every pass is a rebuild: the nodes of the old graph are copied in order into a
 * new graph, each with its inputs replaced by what they became, and a rule may then answer a
 * replacement for the copy: an earlier node of the new graph, or new nodes it appends (after
 * the copy's inputs, so the order stays topological). A replaced copy is left dead for `dce`.
 * Rules are small functions, one per rewrite; a replacement always has the node's exact type.
 *
 * Folding computes in double and rounds each result as the interpreter's f32 mode does (a
 * float result rounded to float, integers wrapped), so a folded program gives the numbers the
 * unfolded one gave. x*0 -> 0 is the one rewrite that changes IEEE results (inf*0 is NaN): it
 * removes the zero gradients autodiff builds, whose other operand is finite in practice. */
#include "simplify.h"

#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "../ir/node_map.h"

typedef struct cse_table cse_table;

typedef struct rebuild {
  nnc_graph *g;
  nnc_node_map map;                   /* old node address -> index of its value in g */
  cse_table *cse;                     /* cse: the nodes seen so far */
} rebuild;

typedef nnc_node *(*rule_fn)(rebuild *, nnc_node *);

static nnc_node *mapped(const rebuild *R, const nnc_node *old) {
  int i = nnc_node_map_get(&R->map, (uintptr_t)old);
  return i >= 0 ? R->g->nodes[i] : NULL;
}

/* Nodes of the new graph are only appended, so a node's id is its position there. */
static void set_mapped(rebuild *R, const nnc_node *old, const nnc_node *now) {
  nnc_node_map_put(&R->map, (uintptr_t)old, now->id);
}

static nnc_node *copy_node(rebuild *R, const nnc_node *n) {
  nnc_node *c = nnc_node_new(R->g, n->op, n->ninputs, NULL, n->loc);
  for (int i = 0; i < n->ninputs; i++) c->inputs[i] = mapped(R, n->inputs[i]);
  c->type = n->type;
  c->nattrs = n->nattrs;
  memcpy(c->attrs, n->attrs, sizeof c->attrs);
  c->name = n->name;
  return c;
}

static void copy_outputs(rebuild *R, const nnc_graph *src) {
  for (int i = 0; i < src->noutputs; i++) nnc_graph_add_output(R->g, src->outputs[i].name, mapped(R, src->outputs[i].value));
  for (int i = 0; i < src->nstate; i++)
    nnc_graph_add_state_output(R->g, src->state_outputs[i].name, mapped(R, src->state_outputs[i].value));
  R->g->loss = src->loss;
}

/* Copies every node of src for which keep[] is set (all when keep is NULL), applying rule. */
static nnc_graph *run_rebuild(nnc_arena *a, const nnc_graph *src, const bool *keep, rule_fn rule, cse_table *cse) {
  rebuild R = {.g = nnc_graph_new(a, src->name), .cse = cse};
  nnc_node_map_init(&R.map, (size_t)src->nnodes);
  for (int i = 0; i < src->nnodes; i++) {
    if (keep && !keep[i]) continue;
    nnc_node *c = copy_node(&R, src->nodes[i]);
    nnc_node *r = rule ? rule(&R, c) : NULL;
    if (r && !nnc_type_equal(&r->type, &c->type)) r = NULL; /* a rule never changes a type */
    set_mapped(&R, src->nodes[i], r ? r : c);
  }
  copy_outputs(&R, src);
  nnc_node_map_free(&R.map);
  return R.g;
}

/* --- dce ----------------------------------------------------------------------------------- */

nnc_graph *nnc_simplify_dce(nnc_arena *a, const nnc_graph *src) {
  nnc_node_map pos;
  nnc_node_map_init(&pos, (size_t)src->nnodes);
  for (int i = 0; i < src->nnodes; i++) nnc_node_map_put(&pos, (uintptr_t)src->nodes[i], i);
  bool *live = nnc_xcalloc((size_t)src->nnodes + 1, sizeof *live);
  for (int i = 0; i < src->noutputs; i++) live[nnc_node_map_get(&pos, (uintptr_t)src->outputs[i].value)] = true;
  for (int i = 0; i < src->nstate; i++) live[nnc_node_map_get(&pos, (uintptr_t)src->state_outputs[i].value)] = true;
  for (int i = src->nnodes - 1; i >= 0; i--) {
    const nnc_node *n = src->nodes[i];
    if (n->op == NNC_OP_input) live[i] = true; /* the program's interface */
    if (!live[i]) continue;
    for (int j = 0; j < n->ninputs; j++) live[nnc_node_map_get(&pos, (uintptr_t)n->inputs[j])] = true;
  }
  nnc_graph *g = run_rebuild(a, src, live, NULL, NULL);
  free(live);
  nnc_node_map_free(&pos);
  return g;
}

/* --- cse ----------------------------------------------------------------------------------- */

struct cse_table {
  nnc_node **slots;
  size_t cap;
};

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * UINT64_C(0x100000001B3) + (h >> 29); }

static uint64_t node_hash(const nnc_node *n) {
  uint64_t h = mix(UINT64_C(0xcbf29ce484222325), (uint64_t)n->op);
  for (int i = 0; i < n->ninputs; i++) h = mix(h, (uint64_t)(uintptr_t)n->inputs[i]);
  h = mix(h, (uint64_t)n->type.dtype * 31 + (uint64_t)(n->type.rank * 7 + n->type.batch_axis + 1));
  for (int i = 0; i < n->type.rank; i++) h = mix(h, (uint64_t)n->type.dims[i]);
  for (int i = 0; i < n->nattrs; i++) {
    const nnc_attr *at = &n->attrs[i];
    h = mix(h, (uint64_t)at->key);
    for (int k = 0; k < at->n; k++) h = mix(h, (uint64_t)at->ints[k]);
    if (at->has_num) {
      uint64_t bits;
      memcpy(&bits, &at->num, sizeof bits);
      h = mix(h, bits);
    }
  }
  for (const char *s = n->name; s && *s; s++) h = mix(h, (uint64_t)(unsigned char)*s);
  return h;
}

static bool attrs_equal(const nnc_node *a, const nnc_node *b) {
  if (a->nattrs != b->nattrs) return false;
  for (int i = 0; i < a->nattrs; i++) {
    const nnc_attr *x = &a->attrs[i], *y = &b->attrs[i];
    if (x->key != y->key || x->n != y->n || x->has_num != y->has_num) return false;
    if (x->has_num && memcmp(&x->num, &y->num, sizeof x->num) != 0) return false;
    if (memcmp(x->ints, y->ints, sizeof x->ints[0] * (size_t)x->n) != 0) return false;
  }
  return true;
}

static bool nodes_equal(const nnc_node *a, const nnc_node *b) {
  if (a->op != b->op || a->ninputs != b->ninputs || !nnc_type_equal(&a->type, &b->type) || !attrs_equal(a, b))
    return false;
  if ((a->name == NULL) != (b->name == NULL) || (a->name && strcmp(a->name, b->name) != 0)) return false;
  for (int i = 0; i < a->ninputs; i++)
    if (a->inputs[i] != b->inputs[i]) return false;
  return true;
}

/* An earlier node equal to n, or NULL after remembering n. Inputs are already replaced by
 * their representatives, so one pass in order finds every repetition. */
static nnc_node *rule_cse(rebuild *R, nnc_node *n) {
  cse_table *t = R->cse;
  size_t i = (size_t)node_hash(n) & (t->cap - 1);
  for (; t->slots[i]; i = (i + 1) & (t->cap - 1))
    if (nodes_equal(t->slots[i], n)) return t->slots[i];
  t->slots[i] = n;
  return NULL;
}

nnc_graph *nnc_simplify_cse(nnc_arena *a, const nnc_graph *src) {
  cse_table t = {.cap = 16};
  while (t.cap < 2 * (size_t)src->nnodes + 2) t.cap *= 2;
  t.slots = nnc_xcalloc(t.cap, sizeof *t.slots);
  nnc_graph *g = run_rebuild(a, src, NULL, rule_cse, &t);
  free(t.slots);
  return g;
}

/* --- helpers for rules ------------------------------------------------------------------------ */

static bool const_value(const nnc_node *n, double *v) {
  if (n->op != NNC_OP_const) return false;
  *v = nnc_node_num(n, NNC_ATTR_value, 0);
  return true;
}

static bool is_const_eq(const nnc_node *n, double want) {
  double v;
  return const_value(n, &v) && v == want;
}

static nnc_node *new_const(rebuild *R, const nnc_type *t, double v, nnc_loc loc) {
  nnc_node *c = nnc_node_new(R->g, NNC_OP_const, 0, NULL, loc);
  c->type = *t;
  nnc_node_set_num(c, NNC_ATTR_value, v);
  return c;
}

/* A value rounded or wrapped into dtype, as the interpreter stores results. */
static double in_dtype(nnc_dtype dt, double x) {
  if (dt == NNC_F32) return (double)(float)x;
  int bits = dt == NNC_I32 ? 32 : 8;
  if (!isfinite(x)) return 0;
  uint64_t u = (uint64_t)(int64_t)x & (bits == 64 ? UINT64_MAX : ((UINT64_C(1) << bits) - 1));
  if (dt == NNC_I32 && (u >> 31)) return (double)u - 4294967296.0;
  return (double)u;
}

/* --- fold ------------------------------------------------------------------------------------- */

static bool fold_unary(nnc_op op, nnc_dtype dt, double a, double *r) {
  switch (op) {
  case NNC_OP_neg: *r = -a; return true;
  case NNC_OP_abs: *r = fabs(a); return true;
  case NNC_OP_exp: *r = exp(a); return dt == NNC_F32;
  case NNC_OP_log: *r = log(a); return dt == NNC_F32;
  case NNC_OP_sqrt: *r = sqrt(a); return dt == NNC_F32;
  case NNC_OP_rsqrt: *r = 1 / sqrt(a); return dt == NNC_F32;
  case NNC_OP_tanh: *r = tanh(a); return dt == NNC_F32;
  case NNC_OP_erf: *r = erf(a); return dt == NNC_F32;
  case NNC_OP_sin: *r = sin(a); return dt == NNC_F32;
  case NNC_OP_cos: *r = cos(a); return dt == NNC_F32;
  default: return false;
  }
}

static bool fold_binary(nnc_op op, nnc_dtype dt, double a, double b, double *r) {
  bool flt = dt == NNC_F32;
  int64_t x = (int64_t)a, y = (int64_t)b;
  switch (op) {
  case NNC_OP_add: *r = a + b; return true;
  case NNC_OP_sub: *r = a - b; return true;
  case NNC_OP_mul: *r = flt ? a * b : (double)(x * y); return true;
  case NNC_OP_div: *r = flt ? a / b : y == 0 ? 0 : (double)(x / y); return true;
  case NNC_OP_max: *r = isnan(a) || isnan(b) ? NAN : a > b ? a : b; return true;
  case NNC_OP_min: *r = isnan(a) || isnan(b) ? NAN : a < b ? a : b; return true;
  case NNC_OP_pow: *r = pow(a, b); return flt;
  default: return false;
  }
}

/* cast as docs/ir.md defines it: float -> integer truncates and saturates, NaN gives 0. */
static double fold_cast(nnc_dtype from, nnc_dtype to, double x) {
  if (to == NNC_F32 || from != NNC_F32) return in_dtype(to, x);
  if (isnan(x)) return 0;
  double t = trunc(x), lo = to == NNC_I32 ? -2147483648.0 : 0, hi = to == NNC_I32 ? 2147483647.0 : 255;
  return t < lo ? lo : t > hi ? hi : t;
}

/* The value of an elementwise op over const inputs, rounded into the result dtype. */
static bool fold_elementwise(const nnc_node *n, double *r) {
  double v[3] = {0, 0, 0};
  for (int i = 0; i < n->ninputs && i < 3; i++)
    if (!const_value(n->inputs[i], &v[i])) return false;
  nnc_dtype in = n->ninputs > 0 ? n->inputs[0]->type.dtype : n->type.dtype;
  bool ok;
  switch (nnc_ops[n->op].kind) {
  case NNC_KIND_UNARY:
    if (n->op == NNC_OP_cast) {
      *r = fold_cast(in, n->type.dtype, v[0]);
      return true;
    }
    ok = fold_unary(n->op, in, v[0], r);
    break;
  case NNC_KIND_BINARY:
    if (n->op == NNC_OP_cmp) {
      *r = nnc_cmp_holds(nnc_node_int(n, NNC_ATTR_cmp, -1), v[0], v[1]);
      return true;
    }
    ok = fold_binary(n->op, in, v[0], v[1], r);
    break;
  case NNC_KIND_TERNARY: *r = v[0] != 0 ? v[1] : v[2]; return true;
  default: return false;
  }
  if (ok) *r = in_dtype(n->type.dtype, *r);
  return ok;
}

/* Index maps of a uniform const stay that const (pad only when it pads with the same value). */
static bool fold_index_map(const nnc_node *n, double *r) {
  if (n->ninputs < 1 || !const_value(n->inputs[0], r)) return false;
  for (int i = 1; i < n->ninputs; i++)
    if (!is_const_eq(n->inputs[i], *r)) return false;
  if (n->op == NNC_OP_pad) return nnc_node_num(n, NNC_ATTR_value, 0) == *r;
  return true;
}

/* Elements a reduction combines per result, or -1 when the batch is among them (unknown). */
static int64_t reduced_count(const nnc_node *n) {
  const nnc_attr *axes = nnc_node_attr(n, NNC_ATTR_axes);
  const nnc_type *in = &n->inputs[0]->type;
  int64_t count = 1;
  for (int k = 0; axes && k < axes->n; k++) {
    if (axes->ints[k] == in->batch_axis) return -1;
    count *= in->dims[axes->ints[k]];
  }
  return count;
}

/* A reduction of a const: max keeps it; a sum adds it count times in order, as the reference
 * does (so the rounding is the same), for counts small enough to add here. */
static bool fold_reduce(const nnc_node *n, double *r) {
  double c;
  if (!const_value(n->inputs[0], &c)) return false;
  int64_t count = reduced_count(n);
  if (count <= 0) return false;
  if (n->op == NNC_OP_reduce_max) {
    *r = c;
    return true;
  }
  if (c == 0) return (*r = 0), true;
  if (count > (1 << 20)) return false;
  double s = 0;
  for (int64_t i = 0; i < count; i++) s = in_dtype(n->type.dtype, s + c);
  *r = s;
  return true;
}

static nnc_node *rule_fold(rebuild *R, nnc_node *n) {
  double v;
  if (n->ninputs == 0) return NULL;
  bool ok;
  switch (nnc_ops[n->op].kind) {
  case NNC_KIND_UNARY: case NNC_KIND_BINARY: case NNC_KIND_TERNARY: ok = fold_elementwise(n, &v); break;
  case NNC_KIND_INDEX_MAP: ok = fold_index_map(n, &v); break;
  case NNC_KIND_REDUCE: ok = fold_reduce(n, &v); break;
  default: ok = false;
  }
  return ok ? new_const(R, &n->type, v, n->loc) : NULL;
}

nnc_graph *nnc_simplify_fold(nnc_arena *a, const nnc_graph *src) { return run_rebuild(a, src, NULL, rule_fold, NULL); }

/* --- algebra ---------------------------------------------------------------------------------- */

/* x+0, 0+x, x-0, x*1, 1*x, x/1 -> x. */
static nnc_node *rule_identity_operand(rebuild *R, nnc_node *n) {
  (void)R;
  nnc_node *a = n->inputs[0], *b = n->ninputs > 1 ? n->inputs[1] : NULL;
  switch (n->op) {
  case NNC_OP_add: return is_const_eq(b, 0) ? a : is_const_eq(a, 0) ? b : NULL;
  case NNC_OP_sub: return is_const_eq(b, 0) ? a : NULL;
  case NNC_OP_mul: return is_const_eq(b, 1) ? a : is_const_eq(a, 1) ? b : NULL;
  case NNC_OP_div: return is_const_eq(b, 1) ? a : NULL;
  default: return NULL;
  }
}

/* x*0, 0*x -> the zeros (autodiff's zero gradients); 0-x -> -x; -(-x) -> x. */
static nnc_node *rule_zeros(rebuild *R, nnc_node *n) {
  if (n->op == NNC_OP_mul) return is_const_eq(n->inputs[1], 0) ? n->inputs[1] : is_const_eq(n->inputs[0], 0) ? n->inputs[0] : NULL;
  if (n->op == NNC_OP_sub && is_const_eq(n->inputs[0], 0)) {
    nnc_node *neg = nnc_node_new(R->g, NNC_OP_neg, 1, &n->inputs[1], n->loc);
    neg->type = n->type;
    return neg;
  }
  if (n->op == NNC_OP_neg && n->inputs[0]->op == NNC_OP_neg) return n->inputs[0]->inputs[0];
  return NULL;
}

static nnc_node *rule_select(rebuild *R, nnc_node *n) {
  (void)R;
  if (n->op != NNC_OP_select) return NULL;
  if (n->inputs[1] == n->inputs[2]) return n->inputs[1];
  if (is_const_eq(n->inputs[1], 0) && is_const_eq(n->inputs[2], 0)) return n->inputs[1];
  double c;
  if (const_value(n->inputs[0], &c)) return c != 0 ? n->inputs[1] : n->inputs[2];
  return NULL;
}

/* Ops that leave a value of the same type unchanged: casts to its dtype, broadcasts and
 * reshapes to its shape, identity permutes, reductions over no axis. */
static nnc_node *rule_identity_op(rebuild *R, nnc_node *n) {
  (void)R;
  if (n->ninputs != 1 || !nnc_type_equal(&n->type, &n->inputs[0]->type)) return NULL;
  switch (n->op) {
  case NNC_OP_cast: case NNC_OP_broadcast: case NNC_OP_reshape: return n->inputs[0];
  case NNC_OP_permute: {
    const nnc_attr *p = nnc_node_attr(n, NNC_ATTR_perm);
    for (int k = 0; p && k < p->n; k++)
      if (p->ints[k] != k) return NULL;
    return n->inputs[0];
  }
  case NNC_OP_reduce_sum: case NNC_OP_reduce_max: {
    const nnc_attr *ax = nnc_node_attr(n, NNC_ATTR_axes);
    return !ax || ax->n == 0 ? n->inputs[0] : NULL;
  }
  default: return NULL;
  }
}

/* reshape(reshape(x)) -> reshape(x); permute(permute(x)) -> one permute. */
static nnc_node *rule_chain(rebuild *R, nnc_node *n) {
  nnc_node *in = n->inputs[0];
  if (n->op == NNC_OP_reshape && in->op == NNC_OP_reshape) {
    if (nnc_type_equal(&n->type, &in->inputs[0]->type)) return in->inputs[0];
    nnc_node *r = nnc_node_new(R->g, NNC_OP_reshape, 1, &in->inputs[0], n->loc);
    r->type = n->type;
    return r;
  }
  if (n->op == NNC_OP_permute && in->op == NNC_OP_permute) {
    const nnc_attr *outer = nnc_node_attr(n, NNC_ATTR_perm), *inner = nnc_node_attr(in, NNC_ATTR_perm);
    if (!outer || !inner || outer->n != inner->n) return NULL;
    int64_t p[NNC_MAX_RANK];
    bool identity = true;
    for (int k = 0; k < outer->n; k++) {
      if (outer->ints[k] < 0 || outer->ints[k] >= inner->n) return NULL;
      p[k] = inner->ints[outer->ints[k]]; /* out axis k = in axis outer[k] = x axis inner[outer[k]] */
      identity &= p[k] == k;
    }
    if (identity) return in->inputs[0];
    nnc_node *r = nnc_node_new(R->g, NNC_OP_permute, 1, &in->inputs[0], n->loc);
    r->type = n->type;
    nnc_node_set_ints(r, NNC_ATTR_perm, outer->n, p);
    return r;
  }
  return NULL;
}

/* Are the reduced axes of red exactly the axes its broadcast input added, with every kept
 * axis taken as is (no size-1 axis stretched) and the batch not among the added ones? */
static bool reduces_broadcast_axes(const nnc_node *red, const nnc_node *bc) {
  const nnc_attr *rax = nnc_node_attr(red, NNC_ATTR_axes), *bax = nnc_node_attr(bc, NNC_ATTR_axes);
  const nnc_type *x = &bc->inputs[0]->type, *full = &bc->type;
  bool kept[NNC_MAX_RANK] = {false};
  for (int k = 0; bax && k < bax->n; k++) {
    if (bax->ints[k] < 0 || bax->ints[k] >= full->rank || x->dims[k] != full->dims[bax->ints[k]]) return false;
    kept[bax->ints[k]] = true;
  }
  if (x->rank != (bax ? bax->n : 0)) return false;
  int nred = rax ? rax->n : 0, added = 0;
  for (int a = 0; a < full->rank; a++) {
    if (kept[a]) continue;
    if (a == full->batch_axis) return false;
    added++;
  }
  if (nred != added) return false;
  for (int k = 0; k < nred; k++)
    if (rax->ints[k] < 0 || rax->ints[k] >= full->rank || kept[rax->ints[k]]) return false;
  return true;
}

/* reduce_max(broadcast(x)) -> x; reduce_sum(broadcast(x)) -> x * count, over the added axes. */
static nnc_node *rule_reduce_broadcast(rebuild *R, nnc_node *n) {
  if (nnc_ops[n->op].kind != NNC_KIND_REDUCE || n->inputs[0]->op != NNC_OP_broadcast) return NULL;
  nnc_node *bc = n->inputs[0], *x = bc->inputs[0];
  if (!nnc_type_equal(&x->type, &n->type) || !reduces_broadcast_axes(n, bc)) return NULL;
  int64_t count = nnc_type_elements(&bc->type, 1) / (nnc_type_elements(&x->type, 1) > 0 ? nnc_type_elements(&x->type, 1) : 1);
  if (n->op == NNC_OP_reduce_max || count == 1) return count > 0 ? x : NULL;
  if (n->type.dtype != NNC_F32 && n->type.dtype != NNC_I32) return NULL;
  nnc_node *in[2] = {x, new_const(R, &n->type, (double)count, n->loc)};
  nnc_node *m = nnc_node_new(R->g, NNC_OP_mul, 2, in, n->loc);
  m->type = n->type;
  return m;
}

/* --- sums of zero pads: one concat --------------------------------------------------------- */

/* A zero pad along one axis: its input fills [start, end) of that axis of the result. Autodiff
 * makes these: the gradient of a slice is a pad, so a tensor sliced T times (an LSTM's input
 * projection, one step at a time; its four gates) gets T pads of its size summed. */
typedef struct pad_slab {
  nnc_node *x;
  int axis;
  int64_t start, end;
} pad_slab;

static bool as_pad_slab(nnc_node *n, pad_slab *s) {
  if (n->op != NNC_OP_pad) return false;
  const nnc_attr *lo = nnc_node_attr(n, NNC_ATTR_lo), *hi = nnc_node_attr(n, NNC_ATTR_hi);
  const nnc_attr *v = nnc_node_attr(n, NNC_ATTR_value);
  if (!lo || !hi || lo->n != n->type.rank || hi->n != n->type.rank || (v && v->has_num && v->num != 0)) return false;
  s->axis = -1;
  for (int k = 0; k < lo->n; k++) {
    if (lo->ints[k] < 0 || hi->ints[k] < 0) return false;
    if (lo->ints[k] == 0 && hi->ints[k] == 0) continue;
    if (s->axis >= 0) return false;
    s->axis = k;
  }
  if (s->axis < 0 || s->axis == n->type.batch_axis) return false;
  s->x = n->inputs[0];
  s->start = lo->ints[s->axis], s->end = n->type.dims[s->axis] - hi->ints[s->axis];
  return true;
}

/* concat(a, b) along axis, a concat operand spliced in (so a chain of T sums is one concat). */
static nnc_node *concat_of(rebuild *R, nnc_node *a, nnc_node *b, int axis, nnc_loc loc) {
  int na = a->op == NNC_OP_concat && nnc_node_int(a, NNC_ATTR_axis, -1) == axis ? a->ninputs : 1;
  int nb = b->op == NNC_OP_concat && nnc_node_int(b, NNC_ATTR_axis, -1) == axis ? b->ninputs : 1;
  nnc_node **in = nnc_xcalloc((size_t)(na + nb), sizeof *in);
  for (int i = 0; i < na; i++) in[i] = na > 1 ? a->inputs[i] : a;
  for (int i = 0; i < nb; i++) in[na + i] = nb > 1 ? b->inputs[i] : b;
  nnc_node *c = nnc_node_new(R->g, NNC_OP_concat, na + nb, in, loc);
  free(in);
  c->type = a->type;
  c->type.dims[axis] = a->type.dims[axis] + b->type.dims[axis];
  int64_t ax = axis;
  nnc_node_set_ints(c, NNC_ATTR_axis, 1, &ax);
  return c;
}

/* pad(a) + pad(b) -> pad(concat(a, b)) when both pad along one axis into adjacent slabs: the
 * same numbers (x + 0 = x; a -0 comes out as -0, where the sum gave +0), written once instead
 * of summing whole tensors of zeros, and one kernel where there were 2T. */
static nnc_node *rule_pad_sum(rebuild *R, nnc_node *n) {
  pad_slab a, b;
  if (n->op != NNC_OP_add || !as_pad_slab(n->inputs[0], &a) || !as_pad_slab(n->inputs[1], &b) || a.axis != b.axis)
    return NULL;
  if (b.end == a.start) {
    pad_slab t = a;
    a = b, b = t;
  }
  if (a.end != b.start) return NULL;
  nnc_node *c = concat_of(R, a.x, b.x, a.axis, n->loc);
  int64_t lo[NNC_MAX_RANK] = {0}, hi[NNC_MAX_RANK] = {0};
  lo[a.axis] = a.start, hi[a.axis] = n->type.dims[a.axis] - b.end;
  if (lo[a.axis] == 0 && hi[a.axis] == 0) return c;
  nnc_node *p = nnc_node_new(R->g, NNC_OP_pad, 1, &c, n->loc);
  p->type = n->type;
  nnc_node_set_ints(p, NNC_ATTR_lo, n->type.rank, lo);
  nnc_node_set_ints(p, NNC_ATTR_hi, n->type.rank, hi);
  nnc_node_set_num(p, NNC_ATTR_value, 0);
  return p;
}

static const rule_fn algebra_rules[] = {rule_identity_operand, rule_zeros,    rule_select,
                                        rule_identity_op,      rule_chain,    rule_reduce_broadcast,
                                        rule_pad_sum};

static nnc_node *rule_algebra(rebuild *R, nnc_node *n) {
  if (n->ninputs == 0) return NULL; /* every rule looks at inputs */
  for (size_t i = 0; i < sizeof algebra_rules / sizeof *algebra_rules; i++) {
    nnc_node *r = algebra_rules[i](R, n);
    if (r && nnc_type_equal(&r->type, &n->type)) return r;
  }
  return NULL;
}

nnc_graph *nnc_simplify_algebra(nnc_arena *a, const nnc_graph *src) { return run_rebuild(a, src, NULL, rule_algebra, NULL); }

/* --- the pipeline ------------------------------------------------------------------------------ */

nnc_graph *nnc_simplify_graph(nnc_arena *a, const nnc_graph *src) {
  nnc_graph *g = nnc_simplify_dce(a, src);
  for (int round = 0; round < 8; round++) {
    int before = g->nnodes;
    g = nnc_simplify_dce(a, nnc_simplify_cse(a, nnc_simplify_algebra(a, nnc_simplify_fold(a, g))));
    if (g->nnodes == before) break;
  }
  return g;
}

typedef nnc_graph *(*pass_fn)(nnc_arena *, const nnc_graph *);

static const struct {
  const char *name;
  pass_fn fn;
} passes[] = {
    {"dce", nnc_simplify_dce},     {"cse", nnc_simplify_cse},         {"fold", nnc_simplify_fold},
    {"algebra", nnc_simplify_algebra}, {"simplify", nnc_simplify_graph},
};

static pass_fn find_pass(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof passes / sizeof *passes; i++)
    if (strlen(passes[i].name) == len && strncmp(passes[i].name, name, len) == 0) return passes[i].fn;
  return NULL;
}

bool nnc_simplify_known(const char *name) { return find_pass(name, strlen(name)) != NULL; }

nnc_graph *nnc_simplify_passes(nnc_arena *a, const nnc_graph *g, const char *list, nnc_diags *d) {
  nnc_graph *out = (nnc_graph *)g;
  for (const char *p = list; *p;) {
    size_t len = strcspn(p, ",");
    pass_fn fn = find_pass(p, len);
    if (!fn) {
      nnc_error(d, (nnc_loc){0}, "unknown pass '%.*s' (available: dce, cse, fold, algebra, simplify)", (int)len, p);
      return NULL;
    }
    out = fn(a, out);
    p += len;
    if (*p == ',') p++;
  }
  return out;
}
