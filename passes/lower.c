/* Lowering: one primitive -> one loop IR kernel (DESIGN §8).
 *
 * How it works. Every kernel computes its result element by element: a schedule builds the
 * iteration space over the result's axes (CPU: nested loops, the outermost parallel; GPU: a
 * flattened index over blocks and threads with a guard) and hands the element's multi-index
 * to the op's element builder, which emits the statements that compute and store that one
 * element (an accumulator loop for reductions, contractions and windows). Scatter-like ops
 * (scatter_add, maxpool2d_grad) are written as gathers over their result so that every element
 * has one writer: no atomics, deterministic, and the terms are added in the interpreter's order.
 *
 * Index arithmetic is i64. A batch axis has extent n * multiple, so row-major strides after it
 * depend on n; loads clamp data-dependent or padded indices into range and select the value,
 * so every access is provably inside its buffer. Elementwise ops additionally get a vector
 * schedule on the CPU: one flat loop over the whole tensor in `lanes`-wide steps with a masked
 * tail. Reductions over the innermost axis vectorize their inner loop; matmul on the CPU has
 * its own register-tiled schedule (passes/lower_matmul.c). */
#include "lower_impl.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fusion.h"
#include "gpu_sched.h"
#include "programs.h"
#include "simplify.h"

static int64_t elements_at_max(lower *L, const nnc_type *t) { return nnc_type_elements(t, L->bmax); }

/* --- operands ------------------------------------------------------------------------------- */

static nnc_lscalar scalar_slot(const char *name) {
  if (!name) return NNC_LSC_COUNT;
  if (strcmp(name, "lr") == 0) return NNC_LSC_LR;
  if (strcmp(name, "step") == 0) return NNC_LSC_STEP;
  if (strcmp(name, "seed") == 0) return NNC_LSC_SEED;
  return NNC_LSC_COUNT;
}

/* Operand j at flat index f, as its dtype (lanes > 1: contiguous, masked by mask). A scalar
 * source is the call's argument. */
nnc_lexpr *nnc_lw_load_flat(lower *L, int j, nnc_lexpr *f, int lanes, nnc_lexpr *mask) {
  const nnc_node *x = L->in[j];
  if (!L->inbuf[j]) {
    nnc_lscalar s = scalar_slot(x->name);
    if (s == NNC_LSC_COUNT) {
      fail(L, "unknown runtime scalar");
      s = NNC_LSC_LR;
    }
    /* through i64: backends pass step and seed as unsigned words, the graph reads them as i32 */
    nnc_lexpr *raw = nnc_le_scalar(L->k, s);
    if (s != NNC_LSC_LR) raw = nnc_le_cast(L->k, nnc_lt(NNC_I64, 1), raw);
    nnc_lexpr *v = nnc_le_cast(L->k, nnc_lt(x->type.dtype, 1), raw);
    return lanes > 1 ? nnc_le_splat(L->k, v, lanes) : v;
  }
  return nnc_le_load(L->k, L->inbuf[j], f, lanes, mask);
}
static nnc_lexpr *load_at(lower *L, int j, nnc_lexpr *const *idx) {
  if (L->load_hook) return L->load_hook(L, j, idx);
  return nnc_lw_load_flat(L, j, ravel(L, &L->in[j]->type, idx), 1, NULL);
}
static const nnc_type *in_type(lower *L, int j) { return &L->in[j]->type; }

static void store_at(lower *L, nnc_lstmt *blk, nnc_lexpr *const *idx, nnc_lexpr *v) {
  if (L->store_hook) return L->store_hook(L, blk, idx, L->nd, v);
  nnc_ls_push(L->k, blk, nnc_ls_store(L->k, L->out, ravel(L, L->out_type, idx), v, NULL));
}

/* --- elementwise arithmetic (scalars or vectors alike) ------------------------------------- */

static nnc_lexpr *cst(lower *L, nnc_ltype t, double v) { return nnc_le_const(L->k, t, v); }
static nnc_lexpr *is_nan(lower *L, nnc_lexpr *a) { return bin(L, NNC_LB_NE, a, a); }

/* max/min of f32 propagate NaN (docs/ir.md), whatever a backend's max does with NaN. */
static nnc_lexpr *nan_max(lower *L, nnc_lexpr *a, nnc_lexpr *b, bool is_max) {
  nnc_lexpr *pick = nnc_le_select(L->k, bin(L, is_max ? NNC_LB_GT : NNC_LB_LT, a, b), a, b);
  return nnc_le_select(L->k, is_nan(L, a), a, nnc_le_select(L->k, is_nan(L, b), b, pick));
}

/* Integer division truncates; by zero gives 0; by -1 negates (no INT_MIN / -1 trap). */
static nnc_lexpr *int_div(lower *L, nnc_lexpr *a, nnc_lexpr *b) {
  nnc_ltype t = a->type;
  nnc_lexpr *zero = bin(L, NNC_LB_EQ, b, cst(L, t, 0));
  if (t.dtype == NNC_U8) {
    nnc_lexpr *q = bin(L, NNC_LB_DIV, a, nnc_le_select(L->k, zero, cst(L, t, 1), b));
    return nnc_le_select(L->k, zero, cst(L, t, 0), q);
  }
  nnc_lexpr *minus1 = bin(L, NNC_LB_EQ, b, cst(L, t, -1));
  nnc_lexpr *safe = nnc_le_select(L->k, bin(L, NNC_LB_OR, zero, minus1), cst(L, t, 1), b);
  nnc_lexpr *q = bin(L, NNC_LB_DIV, a, safe);
  return nnc_le_select(L->k, zero, cst(L, t, 0), nnc_le_select(L->k, minus1, nnc_le_un(L->k, NNC_LU_NEG, a), q));
}

/* Each elementwise primitive's loop operator, an nnc_lunop or nnc_lbinop (ops.def); -1: none. */
#define LU(op) NNC_LU_##op
#define LB(op) NNC_LB_##op
#define NONE -1
static const int loop_operator[NNC_OP_COUNT] = {
#define OP(name, kind, arity, dtypes, loop, lang, compute) [NNC_OP_##name] = loop,
#include "../ir/ops.def"
#undef OP
};
#undef LU
#undef LB
#undef NONE

static nnc_lexpr *unary_value(lower *L, nnc_op op, nnc_lexpr *a) {
  if (loop_operator[op] < 0) {
    fail(L, "no loop operator for a unary op");
    return a;
  }
  return nnc_le_un(L->k, (nnc_lunop)loop_operator[op], a);
}

static nnc_lexpr *compare(lower *L, const nnc_node *nd, nnc_lexpr *a, nnc_lexpr *b) {
  static const nnc_lbinop cmps[] = {NNC_LB_LT, NNC_LB_LE, NNC_LB_GT, NNC_LB_GE, NNC_LB_EQ, NNC_LB_NE};
  int64_t how = nnc_node_int(nd, NNC_ATTR_cmp, NNC_CMP_NE);
  if (how < 0 || how > NNC_CMP_NE) how = NNC_CMP_NE;
  return nnc_le_cast(L->k, nnc_lt(NNC_U8, a->type.lanes), bin(L, cmps[how], a, b));
}

/* The dtype-dependent cases first: integer division, NaN-propagating f32 max and min. */
static nnc_lexpr *binary_value(lower *L, const nnc_node *nd, nnc_lexpr *a, nnc_lexpr *b) {
  bool flt = a->type.dtype == NNC_F32;
  if (nd->op == NNC_OP_cmp) return compare(L, nd, a, b);
  if (nd->op == NNC_OP_div && !flt) return int_div(L, a, b);
  if ((nd->op == NNC_OP_max || nd->op == NNC_OP_min) && flt) return nan_max(L, a, b, nd->op == NNC_OP_max);
  if (loop_operator[nd->op] < 0) {
    fail(L, "not a binary op");
    return a;
  }
  return bin(L, (nnc_lbinop)loop_operator[nd->op], a, b);
}

/* The value of elementwise node nd from its operands' values v[]. */
nnc_lexpr *nnc_lw_elementwise_value(lower *L, const nnc_node *nd, nnc_lexpr **v) {
  int lanes = v[0]->type.lanes;
  switch (nnc_ops[nd->op].kind) {
  case NNC_KIND_UNARY:
    if (nd->op == NNC_OP_cast) return nnc_le_cast(L->k, nnc_lt(nd->type.dtype, lanes), v[0]);
    return unary_value(L, nd->op, v[0]);
  case NNC_KIND_BINARY: return binary_value(L, nd, v[0], v[1]);
  case NNC_KIND_TERNARY:
    return nnc_le_select(L->k, bin(L, NNC_LB_NE, v[0], cst(L, nnc_lt(NNC_U8, lanes), 0)), v[1], v[2]);
  default: fail(L, "not elementwise"); return v[0];
  }
}

/* --- schedules: the iteration space over the result ----------------------------------------- */

bool nnc_lw_wants_parallel(lower *L, const nnc_type *t, int64_t work_per_element) {
  if (t->rank == 0 || nnc_type_elements(t, L->bmax) * work_per_element < PARALLEL_MIN_ELEMENTS) return false;
  return (t->batch_axis == 0 ? L->bmax * t->dims[0] : t->dims[0]) >= 2;
}

/* CPU: one loop per axis of t (the outermost parallel when there is enough work); the element
 * body goes innermost. */
void nnc_lw_cpu_nest(lower *L, nnc_lstmt *blk, const nnc_type *t, int64_t work, element_fn fn) {
  nnc_lexpr *idx[NNC_MAX_RANK];
  nnc_lvar *vars[NNC_MAX_RANK];
  for (int i = 0; i < t->rank; i++) {
    vars[i] = idx_var(L, "i");
    idx[i] = var(L, vars[i]);
  }
  nnc_lstmt *body = nnc_ls_block(L->k);
  fn(L, body, idx);
  bool par = nnc_lw_wants_parallel(L, t, work);
  for (int i = t->rank - 1; i >= 0; i--) {
    nnc_loop_kind kind = i == 0 && par ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL;
    nnc_lstmt *loop = nnc_ls_for(L->k, vars[i], I(L, 0), extent(L, t, i), 1, kind, body);
    body = nnc_ls_block(L->k);
    nnc_ls_push(L->k, body, loop);
  }
  nnc_ls_push(L->k, blk, body);
}

/* GPU: the flat index over blocks and threads, guarded, unraveled into the multi-index. */
void nnc_lw_gpu_flat(lower *L, nnc_lstmt *blk, const nnc_type *t, element_fn fn) {
  int64_t T = L->o->gpu_threads > 0 ? L->o->gpu_threads : DEFAULT_GPU_THREADS;
  nnc_lvar *b = idx_var(L, "block"), *th = idx_var(L, "thread"), *flat = idx_var(L, "flat");
  nnc_lexpr *total = total_elements(L, t);
  nnc_lstmt *inner = nnc_ls_block(L->k);
  nnc_ls_push(L->k, inner, nnc_ls_let(L->k, flat, add(L, mul(L, var(L, b), I(L, T)), var(L, th))));
  nnc_lstmt *guarded = nnc_ls_block(L->k);
  nnc_lexpr *idx[NNC_MAX_RANK];
  nnc_lexpr *rest = var(L, flat);
  for (int i = t->rank - 1; i >= 0; i--) {
    if (i == 0) {
      idx[i] = rest;
      break;
    }
    nnc_lvar *v = idx_var(L, "i");
    nnc_lexpr *ext = extent(L, t, i);
    nnc_ls_push(L->k, guarded, nnc_ls_let(L->k, v, bin(L, NNC_LB_MOD, rest, ext)));
    idx[i] = var(L, v);
    nnc_lvar *r = idx_var(L, "rest");
    nnc_ls_push(L->k, guarded, nnc_ls_let(L->k, r, bin(L, NNC_LB_FLOORDIV, rest, extent(L, t, i))));
    rest = var(L, r);
  }
  fn(L, guarded, idx);
  nnc_ls_push(L->k, inner, nnc_ls_if(L->k, bin(L, NNC_LB_LT, var(L, flat), total), guarded, NULL));
  nnc_lstmt *tb = nnc_ls_block(L->k);
  nnc_lstmt *tloop = nnc_ls_for(L->k, th, I(L, 0), I(L, T), 1, NNC_LOOP_GPU_THREAD, inner);
  nnc_ls_push(L->k, tb, tloop);
  nnc_lexpr *nblocks = bin(L, NNC_LB_FLOORDIV, add_const(L, total, T - 1), I(L, T));
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, b, I(L, 0), nblocks, 1, NNC_LOOP_GPU_BLOCK, tb));
}

static void over_result(lower *L, int64_t work, element_fn fn) {
  if (L->o->target == NNC_LOWER_GPU)
    nnc_lw_gpu_flat(L, L->k->body, L->out_type, fn);
  else
    nnc_lw_cpu_nest(L, L->k->body, L->out_type, work, fn);
}

/* A serial loop nest over the given extents inside blk; returns the innermost block. */
nnc_lstmt *nnc_lw_serial_loops(lower *L, nnc_lstmt *blk, int count, nnc_lexpr *const *ext, nnc_lexpr **vars_out) {
  for (int i = 0; i < count; i++) {
    nnc_lvar *v = idx_var(L, "r");
    vars_out[i] = var(L, v);
    nnc_lstmt *body = nnc_ls_block(L->k);
    nnc_ls_push(L->k, blk, nnc_ls_for(L->k, v, I(L, 0), ext[i], 1, NNC_LOOP_SERIAL, body));
    blk = body;
  }
  return blk;
}

/* --- generators ------------------------------------------------------------------------------ */

static double const_value(const nnc_node *nd) {
  double v = nnc_node_num(nd, NNC_ATTR_value, 0);
  if (nd->type.dtype == NNC_F32) return v;
  if (isnan(v)) return 0; /* the interpreter's float -> integer conversion: truncate, saturate */
  double t = trunc(v), lo = nd->type.dtype == NNC_I32 ? -2147483648.0 : 0, hi = nd->type.dtype == NNC_I32 ? 2147483647.0 : 255;
  return t < lo ? lo : t > hi ? hi : t;
}

static void elem_const(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  store_at(L, blk, idx, cst(L, nnc_lt(L->nd->type.dtype, 1), const_value(L->nd)));
}

static void elem_iota(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  int64_t axis = nnc_node_int(L->nd, NNC_ATTR_axis, 0);
  if (axis < 0 || axis >= L->out_type->rank) return fail(L, "iota axis outside the rank");
  store_at(L, blk, idx, nnc_le_cast(L->k, nnc_lt(L->nd->type.dtype, 1), idx[axis]));
}

static void elem_nbatch(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  store_at(L, blk, idx, nnc_le_cast(L->k, nnc_lt(NNC_F32, 1), nnc_le_scalar(L->k, NNC_LSC_N)));
}

static nnc_lexpr *scalar_operand(lower *L, int j) {
  nnc_lexpr *zero[1] = {NULL};
  if (in_type(L, j)->rank != 0) fail(L, "seed and step must be scalars");
  return nnc_le_cast(L->k, nnc_lt(NNC_I32, 1), load_at(L, j, zero));
}

static void elem_rng(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  int64_t key = nnc_node_int(L->nd, NNC_ATTR_key, 0);
  nnc_lexpr *v = nnc_le_rng(L->k, scalar_operand(L, 0), (int64_t)(uint32_t)key, scalar_operand(L, 1),
                            ravel(L, L->out_type, idx));
  store_at(L, blk, idx, v);
}

/* --- elementwise ---------------------------------------------------------------------------- */

static void elem_elementwise(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  nnc_lexpr *v[3];
  for (int j = 0; j < L->nin && j < 3; j++) v[j] = load_at(L, j, idx);
  store_at(L, blk, idx, nnc_lw_elementwise_value(L, L->nd, v));
}

/* The vector schedule of an elementwise op: every operand has the result's shape and layout,
 * so the whole tensor is one contiguous loop: full vectors, then one masked tail. */
static void lower_elementwise_vector(lower *L, int lanes) {
  nnc_kernel *k = L->k;
  nnc_lexpr *total = total_elements(L, L->out_type);
  nnc_lvar *i = idx_var(L, "i");
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_lexpr *mask = bin(L, NNC_LB_LT, add(L, nnc_le_splat(k, var(L, i), lanes), nnc_le_lane(k, lanes)),
                        nnc_le_splat(k, total, lanes));
  nnc_lexpr *v[3];
  for (int j = 0; j < L->nin && j < 3; j++) v[j] = nnc_lw_load_flat(L, j, var(L, i), lanes, mask);
  nnc_ls_push(k, body, nnc_ls_store(k, L->out, var(L, i), nnc_lw_elementwise_value(L, L->nd, v), mask));
  bool par = elements_at_max(L, L->out_type) >= PARALLEL_MIN_ELEMENTS * 4;
  nnc_ls_push(k, k->body, nnc_ls_for(k, i, I(L, 0), total, lanes, par ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL, body));
}

/* --- index maps ------------------------------------------------------------------------------- */

/* The operand index ai of index map nd (broadcast, permute, slice, pad) at its result index
 * idx; for pad also whether the position is inside the operand (NULL: always). False after
 * failing. Fused groups compose these maps (passes/lower_group.c). */
bool nnc_lw_operand_index(lower *L, const nnc_node *nd, nnc_lexpr *const *idx, nnc_lexpr **ai, nnc_lexpr **inside) {
  const nnc_type *a = &nd->inputs[0]->type, *out = &nd->type;
  *inside = NULL;
  const nnc_attr *axes = nnc_node_attr(nd, NNC_ATTR_axes), *perm = nnc_node_attr(nd, NNC_ATTR_perm);
  const nnc_attr *start = nnc_node_attr(nd, NNC_ATTR_start), *step = nnc_node_attr(nd, NNC_ATTR_step);
  const nnc_attr *lo = nnc_node_attr(nd, NNC_ATTR_lo);
  for (int k = 0; k < a->rank; k++) {
    switch (nd->op) {
    case NNC_OP_broadcast:
      if (!axes || axes->n != a->rank || axes->ints[k] < 0 || axes->ints[k] >= out->rank)
        return fail(L, "broadcast axes do not fit"), false;
      ai[k] = a->dims[k] == 1 && k != a->batch_axis ? I(L, 0) : idx[axes->ints[k]];
      break;
    case NNC_OP_permute:
      if (!perm || perm->n != a->rank || perm->ints[k] < 0 || perm->ints[k] >= a->rank)
        return fail(L, "perm does not fit"), false;
      ai[perm->ints[k]] = idx[k];
      break;
    case NNC_OP_slice:
      if (k == a->batch_axis) {
        ai[k] = idx[k];
        break;
      }
      if (!start || !step || start->n != a->rank || step->n != a->rank) return fail(L, "slice attributes do not fit"), false;
      ai[k] = add_const(L, mul_const(L, idx[k], step->ints[k]), start->ints[k]);
      break;
    case NNC_OP_pad: {
      int64_t low = k == a->batch_axis ? 0 : lo && lo->n == a->rank ? lo->ints[k] : -1;
      if (low < 0) return fail(L, "pad attributes do not fit"), false;
      if (low == 0 && a->dims[k] == out->dims[k]) {
        ai[k] = idx[k];
        break;
      }
      nnc_lexpr *x = add_const(L, idx[k], -low);
      *inside = and_(L, *inside, and_(L, bin(L, NNC_LB_GE, x, I(L, 0)), bin(L, NNC_LB_LT, x, extent(L, a, k))));
      ai[k] = clamp(L, x, 0, extent_last(L, a, k));
      break;
    }
    default: return fail(L, "not an index map"), false;
    }
  }
  return true;
}

/* pad's fill where the position is outside the operand. */
nnc_lexpr *nnc_lw_pad_fill(lower *L, const nnc_node *nd, nnc_lexpr *inside, nnc_lexpr *v) {
  if (!inside) return v;
  nnc_dtype dt = nd->inputs[0]->type.dtype;
  double fill = nnc_node_num(nd, NNC_ATTR_value, 0);
  return nnc_le_select(L->k, inside, v, cst(L, nnc_lt(dt, 1), dt == NNC_F32 ? fill : (double)(int64_t)fill));
}

static void elem_index_map(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  nnc_lexpr *ai[NNC_MAX_RANK] = {0}, *inside;
  if (!nnc_lw_operand_index(L, L->nd, idx, ai, &inside)) return;
  store_at(L, blk, idx, nnc_lw_pad_fill(L, L->nd, inside, load_at(L, 0, ai)));
}

static void elem_reshape(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  store_at(L, blk, idx, nnc_lw_load_flat(L, 0, ravel(L, L->out_type, idx), 1, NULL));
}

/* concat on the CPU: one loop nest per operand, writing its slab of the result. */
static void elem_concat_operand(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  int64_t axis = nnc_node_int(L->nd, NNC_ATTR_axis, 0);
  nnc_lexpr *oi[NNC_MAX_RANK];
  nnc_lexpr *off = I(L, 0);
  for (int j = 0; j < L->concat_operand; j++) off = add(L, off, extent(L, in_type(L, j), (int)axis));
  for (int k = 0; k < L->out_type->rank; k++) oi[k] = k == axis ? add(L, idx[k], off) : idx[k];
  store_at(L, blk, oi, load_at(L, L->concat_operand, idx));
}

/* concat on the GPU: each result element takes the one operand whose slab holds it. */
static void elem_concat_select(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  int64_t axis = nnc_node_int(L->nd, NNC_ATTR_axis, 0);
  nnc_lexpr *off = I(L, 0);
  for (int j = 0; j < L->nin; j++) {
    nnc_lexpr *ext = extent(L, in_type(L, j), (int)axis);
    nnc_lexpr *rel = sub(L, idx[axis], off);
    nnc_lexpr *ai[NNC_MAX_RANK] = {0};
    for (int k = 0; k < L->out_type->rank; k++) ai[k] = k == axis ? clamp(L, rel, 0, sub(L, ext, I(L, 1))) : idx[k];
    nnc_lstmt *then = nnc_ls_block(L->k);
    store_at(L, then, idx, load_at(L, j, ai));
    nnc_lexpr *in = and_(L, bin(L, NNC_LB_GE, rel, I(L, 0)), bin(L, NNC_LB_LT, rel, ext));
    nnc_ls_push(L->k, blk, nnc_ls_if(L->k, in, then, NULL));
    off = add(L, off, ext);
  }
}

static void lower_concat(lower *L) {
  int64_t axis = nnc_node_int(L->nd, NNC_ATTR_axis, -1);
  if (axis < 0 || axis >= L->out_type->rank) return fail(L, "concat axis outside the rank");
  if (L->o->target == NNC_LOWER_GPU) return over_result(L, 1, elem_concat_select);
  for (L->concat_operand = 0; L->concat_operand < L->nin; L->concat_operand++)
    nnc_lw_cpu_nest(L, L->k->body, in_type(L, L->concat_operand), 1, elem_concat_operand);
}

/* --- reductions ----------------------------------------------------------------------------- */

bool nnc_lw_reduced_axis(const nnc_node *nd, int k) {
  const nnc_attr *ax = nnc_node_attr(nd, NNC_ATTR_axes);
  for (int j = 0; ax && j < ax->n; j++)
    if (ax->ints[j] == k) return true;
  return false;
}

nnc_lexpr *nnc_lw_reduce_init(lower *L, nnc_dtype dt, bool is_max) {
  nnc_ltype t = nnc_lt(dt, 1);
  if (!is_max) return cst(L, t, 0);
  return cst(L, t, dt == NNC_F32 ? -INFINITY : dt == NNC_I32 ? -2147483648.0 : 0);
}

nnc_lexpr *nnc_lw_combine(lower *L, nnc_lexpr *acc, nnc_lexpr *x, bool is_max) {
  if (!is_max) return add(L, acc, x);
  if (x->type.dtype != NNC_F32) return bin(L, NNC_LB_MAX, acc, x);
  /* NaN wins and stays: isnan(acc) || isnan(x) ? NaN : max */
  return nnc_le_select(L->k, is_nan(L, acc), acc, nnc_le_select(L->k, bin(L, NNC_LB_GT, x, acc), x,
                                                                  nnc_le_select(L->k, is_nan(L, x), x, acc)));
}

static void elem_reduce(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  const nnc_type *a = in_type(L, 0);
  bool is_max = L->nd->op == NNC_OP_reduce_max;
  nnc_lexpr *ext[NNC_MAX_RANK], *rv[NNC_MAX_RANK] = {0}, *ai[NNC_MAX_RANK] = {0};
  int nred = 0;
  for (int k = 0; k < a->rank; k++)
    if (nnc_lw_reduced_axis(L->nd, k)) ext[nred++] = extent(L, a, k);
  nnc_lvar *acc = new_var(L, "acc", nnc_lt(a->dtype, 1));
  nnc_ls_push(L->k, blk, nnc_ls_let(L->k, acc, nnc_lw_reduce_init(L, a->dtype, is_max)));
  nnc_lstmt *inner = nnc_lw_serial_loops(L, blk, nred, ext, rv);
  for (int k = 0, o = 0, r = 0; k < a->rank; k++) ai[k] = nnc_lw_reduced_axis(L->nd, k) ? rv[r++] : idx[o++];
  nnc_ls_push(L->k, inner, nnc_ls_assign(L->k, acc, nnc_lw_combine(L, var(L, acc), load_at(L, 0, ai), is_max)));
  store_at(L, blk, idx, var(L, acc));
}

/* --- contractions ----------------------------------------------------------------------------- */

typedef struct mm_geom {
  bool ta, tb;
  int r, rb;
  const nnc_type *a, *b;
} mm_geom;

static mm_geom mm_geometry(lower *L) {
  mm_geom g = {.ta = nnc_node_int(L->nd, NNC_ATTR_trans_a, 0) != 0, .tb = nnc_node_int(L->nd, NNC_ATTR_trans_b, 0) != 0,
               .a = in_type(L, 0), .b = in_type(L, 1)};
  g.r = g.a->rank, g.rb = g.b->rank;
  if (g.r < 2 || L->out_type->rank != g.r || !(g.rb == 2 || g.rb == g.r)) fail(L, "matmul ranks do not fit");
  return g;
}

/* a and b indices of out[.., i, j] at reduction index kk. */
static void mm_indices(lower *L, const mm_geom *g, nnc_lexpr **idx, nnc_lexpr *kk, nnc_lexpr **ai, nnc_lexpr **bi) {
  int r = g->r;
  for (int k = 0; k < r - 2; k++) ai[k] = bi[k] = idx[k];
  ai[r - 2] = g->ta ? kk : idx[r - 2];
  ai[r - 1] = g->ta ? idx[r - 2] : kk;
  int o = g->rb == 2 ? 0 : r - 2;
  bi[o] = g->tb ? idx[r - 1] : kk;
  bi[o + 1] = g->tb ? kk : idx[r - 1];
}

static void elem_matmul(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  mm_geom g = mm_geometry(L);
  if (L->failed) return;
  nnc_lexpr *K = extent(L, g.a, g.ta ? g.r - 2 : g.r - 1);
  nnc_lvar *acc = new_var(L, "acc", nnc_lt(NNC_F32, 1));
  nnc_ls_push(L->k, blk, nnc_ls_let(L->k, acc, cst(L, nnc_lt(NNC_F32, 1), 0)));
  nnc_lexpr *kk;
  nnc_lstmt *inner = nnc_lw_serial_loops(L, blk, 1, &K, &kk);
  nnc_lexpr *ai[NNC_MAX_RANK] = {0}, *bi[NNC_MAX_RANK] = {0};
  mm_indices(L, &g, idx, kk, ai, bi);
  nnc_lexpr *p = mul(L, load_at(L, 0, ai), load_at(L, 1, bi));
  nnc_ls_push(L->k, inner, nnc_ls_assign(L->k, acc, add(L, var(L, acc), p)));
  store_at(L, blk, idx, var(L, acc));
}

/* The window of a conv or pool: [y, x] pairs. */
typedef struct window {
  int64_t kh, kw, sy, sx, py, px, dy, dx;
} window;

static void pair_attr(const nnc_node *nd, nnc_attr_key key, int64_t dflt_y, int64_t dflt_x, int64_t *y, int64_t *x) {
  const nnc_attr *a = nnc_node_attr(nd, key);
  *y = dflt_y, *x = dflt_x;
  if (!a || a->n == 0 || a->n > 2) return;
  *y = a->ints[0], *x = a->ints[a->n - 1];
}

static bool window_of(lower *L, window *w, int64_t kh, int64_t kw, bool pool) {
  w->kh = kh, w->kw = kw;
  pair_attr(L->nd, NNC_ATTR_stride, pool ? kh : 1, pool ? kw : 1, &w->sy, &w->sx);
  pair_attr(L->nd, NNC_ATTR_padding, 0, 0, &w->py, &w->px);
  pair_attr(L->nd, NNC_ATTR_dilation, 1, 1, &w->dy, &w->dx);
  if (w->kh < 1 || w->kw < 1 || w->sy < 1 || w->sx < 1 || w->dy < 1 || w->dx < 1 || w->py < 0 || w->px < 0) {
    fail(L, "bad window attributes");
    return false;
  }
  return true;
}

/* The input position of window tap (ky, kx) at output (oy, ox), clamped into [0, H) x [0, W),
 * and whether it is inside (NULL when it always is: no padding). */
static nnc_lexpr *tap(lower *L, nnc_lexpr *o, nnc_lexpr *kk, int64_t s, int64_t p, int64_t d, int64_t size,
                      nnc_lexpr **inside) {
  nnc_lexpr *pos = add_const(L, add(L, mul_const(L, o, s), mul_const(L, kk, d)), -p);
  if (p == 0) {
    *inside = NULL;
    return pos;
  }
  *inside = and_(L, bin(L, NNC_LB_GE, pos, I(L, 0)), bin(L, NNC_LB_LT, pos, I(L, size)));
  return clamp(L, pos, 0, I(L, size - 1));
}

static int64_t groups_of(lower *L, int64_t C, int64_t O) {
  int64_t g = nnc_node_int(L->nd, NNC_ATTR_groups, 1);
  if (g < 1 || C % g || O % g) {
    fail(L, "groups do not divide the channels");
    return 1;
  }
  return g;
}

/* acc = inside ? acc + p : acc */
static void accumulate(lower *L, nnc_lstmt *blk, nnc_lvar *acc, nnc_lexpr *p, nnc_lexpr *inside) {
  nnc_lexpr *sum = add(L, var(L, acc), p);
  nnc_ls_push(L->k, blk, nnc_ls_assign(L->k, acc, inside ? nnc_le_select(L->k, inside, sum, var(L, acc)) : sum));
}

static nnc_lvar *zero_acc(lower *L, nnc_lstmt *blk) {
  nnc_lvar *acc = new_var(L, "acc", nnc_lt(NNC_F32, 1));
  nnc_ls_push(L->k, blk, nnc_ls_let(L->k, acc, cst(L, nnc_lt(NNC_F32, 1), 0)));
  return acc;
}

/* y[n,o,oy,ox] = sum over c, ky, kx of x[n, g*cg+c, iy, ix] * w[o,c,ky,kx] */
static void el_conv2d(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  const nnc_type *x = in_type(L, 0), *w = in_type(L, 1);
  window win;
  if (!window_of(L, &win, w->dims[2], w->dims[3], false)) return;
  int64_t groups = groups_of(L, x->dims[1], w->dims[0]), cg = x->dims[1] / groups, og = w->dims[0] / groups;
  nnc_lvar *acc = zero_acc(L, blk);
  nnc_lexpr *ext[3] = {I(L, cg), I(L, win.kh), I(L, win.kw)}, *rv[3];
  nnc_lstmt *inner = nnc_lw_serial_loops(L, blk, 3, ext, rv);
  nnc_lexpr *in_y, *in_x;
  nnc_lexpr *iy = tap(L, idx[2], rv[1], win.sy, win.py, win.dy, x->dims[2], &in_y);
  nnc_lexpr *ix = tap(L, idx[3], rv[2], win.sx, win.px, win.dx, x->dims[3], &in_x);
  nnc_lexpr *ch = add(L, mul_const(L, bin(L, NNC_LB_FLOORDIV, idx[1], I(L, og)), cg), rv[0]);
  nnc_lexpr *xi[4] = {idx[0], ch, iy, ix}, *wi[4] = {idx[1], rv[0], rv[1], rv[2]};
  accumulate(L, inner, acc, mul(L, load_at(L, 0, xi), load_at(L, 1, wi)), in_y ? and_(L, in_y, in_x) : in_x);
  store_at(L, blk, idx, var(L, acc));
}

/* The output position that window tap k of input position i comes from: t = i + p - k*d must
 * be a non-negative multiple of s below size*s. */
static nnc_lexpr *source_pos(lower *L, nnc_lexpr *i, nnc_lexpr *kk, int64_t s, int64_t p, int64_t d, int64_t size,
                             nnc_lexpr **valid) {
  nnc_lexpr *t = sub(L, add_const(L, i, p), mul_const(L, kk, d));
  nnc_lexpr *o = s == 1 ? t : bin(L, NNC_LB_FLOORDIV, t, I(L, s));
  nnc_lexpr *ok = and_(L, bin(L, NNC_LB_GE, t, I(L, 0)), bin(L, NNC_LB_LT, o, I(L, size)));
  if (s != 1) ok = and_(L, ok, bin(L, NNC_LB_EQ, bin(L, NNC_LB_MOD, t, I(L, s)), I(L, 0)));
  *valid = ok;
  return clamp(L, o, 0, I(L, size - 1));
}

/* dx[n,ch,iy,ix] = sum over o of ch's group, ky, kx of dy[n,o,oy,ox] * w[o,ch%cg,ky,kx] where
 * the tap lands on (iy, ix). */
static void el_conv2d_input_grad(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  const nnc_type *dy = in_type(L, 0), *w = in_type(L, 1), *dx = L->out_type;
  window win;
  if (!window_of(L, &win, w->dims[2], w->dims[3], false)) return;
  int64_t groups = groups_of(L, dx->dims[1], w->dims[0]), cg = dx->dims[1] / groups, og = w->dims[0] / groups;
  nnc_lvar *acc = zero_acc(L, blk);
  nnc_lexpr *ext[3] = {I(L, og), I(L, win.kh), I(L, win.kw)}, *rv[3];
  nnc_lstmt *inner = nnc_lw_serial_loops(L, blk, 3, ext, rv);
  nnc_lexpr *vy, *vx;
  nnc_lexpr *oy = source_pos(L, idx[2], rv[1], win.sy, win.py, win.dy, dy->dims[2], &vy);
  nnc_lexpr *ox = source_pos(L, idx[3], rv[2], win.sx, win.px, win.dx, dy->dims[3], &vx);
  nnc_lexpr *o = add(L, mul_const(L, bin(L, NNC_LB_FLOORDIV, idx[1], I(L, cg)), og), rv[0]);
  nnc_lexpr *dyi[4] = {idx[0], o, oy, ox}, *wi[4] = {o, bin(L, NNC_LB_MOD, idx[1], I(L, cg)), rv[1], rv[2]};
  accumulate(L, inner, acc, mul(L, load_at(L, 0, dyi), load_at(L, 1, wi)), and_(L, vy, vx));
  store_at(L, blk, idx, var(L, acc));
}

/* dw[o,c,ky,kx] = sum over n, oy, ox of dy[n,o,oy,ox] * x[n, g*cg+c, iy, ix] */
static void el_conv2d_weight_grad(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  const nnc_type *dy = in_type(L, 0), *x = in_type(L, 1), *dw = L->out_type;
  window win;
  if (!window_of(L, &win, dw->dims[2], dw->dims[3], false)) return;
  int64_t groups = groups_of(L, x->dims[1], dw->dims[0]), cg = x->dims[1] / groups, og = dw->dims[0] / groups;
  nnc_lvar *acc = zero_acc(L, blk);
  nnc_lexpr *ext[3] = {extent(L, dy, 0), I(L, dy->dims[2]), I(L, dy->dims[3])}, *rv[3];
  nnc_lstmt *inner = nnc_lw_serial_loops(L, blk, 3, ext, rv);
  nnc_lexpr *in_y, *in_x;
  nnc_lexpr *iy = tap(L, rv[1], idx[2], win.sy, win.py, win.dy, x->dims[2], &in_y);
  nnc_lexpr *ix = tap(L, rv[2], idx[3], win.sx, win.px, win.dx, x->dims[3], &in_x);
  nnc_lexpr *ch = add(L, mul_const(L, bin(L, NNC_LB_FLOORDIV, idx[0], I(L, og)), cg), idx[1]);
  nnc_lexpr *dyi[4] = {rv[0], idx[0], rv[1], rv[2]}, *xi[4] = {rv[0], ch, iy, ix};
  accumulate(L, inner, acc, mul(L, load_at(L, 0, dyi), load_at(L, 1, xi)), in_y ? and_(L, in_y, in_x) : in_x);
  store_at(L, blk, idx, var(L, acc));
}

/* --- opaque ------------------------------------------------------------------------------------ */

static bool pool_window(lower *L, window *w) {
  const nnc_attr *k = nnc_node_attr(L->nd, NNC_ATTR_kernel);
  if (!k || k->n < 1 || k->n > 2) {
    fail(L, "maxpool needs a kernel");
    return false;
  }
  return window_of(L, w, k->ints[0], k->ints[k->n - 1], true);
}

/* The first maximum of the window in row-major order; a NaN is the maximum (the first NaN
 * wins); padding is never chosen (an all-padding window gives -inf at position 0). */
static void elem_maxpool(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  const nnc_type *x = in_type(L, 0);
  window w;
  if (!pool_window(L, &w)) return;
  nnc_kernel *k = L->k;
  nnc_lvar *best = new_var(L, "best", nnc_lt(NNC_F32, 1)), *where = new_var(L, "where", nnc_lt(NNC_I64, 1));
  nnc_ls_push(k, blk, nnc_ls_let(k, best, cst(L, nnc_lt(NNC_F32, 1), -INFINITY)));
  nnc_ls_push(k, blk, nnc_ls_let(k, where, I(L, -1)));
  nnc_lexpr *ext[2] = {I(L, w.kh), I(L, w.kw)}, *rv[2];
  nnc_lstmt *inner = nnc_lw_serial_loops(L, blk, 2, ext, rv);
  nnc_lexpr *in_y, *in_x;
  nnc_lexpr *iy = tap(L, idx[2], rv[0], w.sy, w.py, w.dy, x->dims[2], &in_y);
  nnc_lexpr *ix = tap(L, idx[3], rv[1], w.sx, w.px, w.dx, x->dims[3], &in_x);
  nnc_lexpr *xi[4] = {idx[0], idx[1], iy, ix};
  nnc_lvar *v = new_var(L, "v", nnc_lt(NNC_F32, 1));
  nnc_ls_push(k, inner, nnc_ls_let(k, v, load_at(L, 0, xi)));
  nnc_lexpr *better = bin(L, NNC_LB_OR, bin(L, NNC_LB_LT, var(L, where), I(L, 0)),
                          bin(L, NNC_LB_OR, bin(L, NNC_LB_GT, var(L, v), var(L, best)), is_nan(L, var(L, v))));
  nnc_lexpr *take = and_(L, and_(L, in_y ? and_(L, in_y, in_x) : in_x, nnc_le_un(k, NNC_LU_NOT, is_nan(L, var(L, best)))), better);
  nnc_lstmt *then = nnc_ls_block(k);
  nnc_ls_push(k, then, nnc_ls_assign(k, best, var(L, v)));
  nnc_ls_push(k, then, nnc_ls_assign(k, where, add(L, mul_const(L, rv[0], w.kw), rv[1])));
  nnc_ls_push(k, inner, nnc_ls_if(k, take, then, NULL));
  nnc_lexpr *pos = nnc_le_cast(k, nnc_lt(NNC_U8, 1), bin(L, NNC_LB_MAX, var(L, where), I(L, 0)));
  if (L->pool_pair) { /* a fused group keeps both results of the one scan */
    const nnc_node *values = L->nd->op == NNC_OP_maxpool2d ? L->nd : L->pool_pair;
    L->store_hook(L, blk, idx, values, var(L, best));
    L->store_hook(L, blk, idx, values == L->nd ? L->pool_pair : L->nd, pos);
    return;
  }
  store_at(L, blk, idx, L->nd->op == NNC_OP_maxpool2d ? var(L, best) : pos);
}

/* dx[n,c,iy,ix] = sum of dy[n,c,oy,ox] over the windows whose argmax is (iy, ix). The taps run
 * backwards so that windows come in increasing (oy, ox): the interpreter's order of the sum. */
static void elem_maxpool_grad(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  const nnc_type *dy = in_type(L, 0);
  window w;
  if (!pool_window(L, &w)) return;
  nnc_kernel *k = L->k;
  nnc_lvar *acc = zero_acc(L, blk);
  nnc_lexpr *ext[2] = {I(L, w.kh), I(L, w.kw)}, *rv[2];
  nnc_lstmt *inner = nnc_lw_serial_loops(L, blk, 2, ext, rv);
  nnc_lexpr *ky = sub(L, I(L, w.kh - 1), rv[0]), *kx = sub(L, I(L, w.kw - 1), rv[1]);
  nnc_lexpr *vy, *vx;
  nnc_lexpr *oy = source_pos(L, idx[2], ky, w.sy, w.py, w.dy, dy->dims[2], &vy);
  nnc_lexpr *ox = source_pos(L, idx[3], kx, w.sx, w.px, w.dx, dy->dims[3], &vx);
  nnc_lexpr *di[4] = {idx[0], idx[1], oy, ox};
  nnc_lexpr *am = nnc_le_cast(k, nnc_lt(NNC_I64, 1), load_at(L, 1, di));
  nnc_lexpr *hit = bin(L, NNC_LB_EQ, am, add(L, mul_const(L, ky, w.kw), kx));
  accumulate(L, inner, acc, load_at(L, 0, di), and_(L, and_(L, vy, vx), hit));
  store_at(L, blk, idx, var(L, acc));
}

/* out[pre.., j.., post..] = a[pre.., idx[j..], post..], the index clamped into the axis. */
static void elem_gather(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  const nnc_type *a = in_type(L, 0), *ix = in_type(L, 1);
  int64_t axis = nnc_node_int(L->nd, NNC_ATTR_axis, -1);
  if (axis < 0 || axis >= a->rank) return fail(L, "gather axis outside the rank");
  nnc_lexpr *ai[NNC_MAX_RANK] = {0};
  nnc_lexpr *v = nnc_le_cast(L->k, nnc_lt(NNC_I64, 1), load_at(L, 1, idx + axis));
  for (int k = 0; k < axis; k++) ai[k] = idx[k];
  ai[axis] = clamp(L, v, 0, extent_last(L, a, (int)axis));
  for (int k = (int)axis + 1; k < a->rank; k++) ai[k] = idx[k - 1 + ix->rank];
  store_at(L, blk, idx, load_at(L, 0, ai));
}

/* out[pre.., v, post..] = sum over the index positions j holding v of upd[pre.., j.., post..]:
 * a gather over the result, the terms in increasing j as the interpreter adds them. */
static void elem_scatter_add(lower *L, nnc_lstmt *blk, nnc_lexpr **idx) {
  const nnc_type *up = in_type(L, 0), *ix = in_type(L, 1), *out = L->out_type;
  int64_t axis = nnc_node_int(L->nd, NNC_ATTR_axis, -1);
  if (axis < 0 || axis >= out->rank) return fail(L, "scatter_add axis outside the rank");
  nnc_lvar *acc = new_var(L, "acc", nnc_lt(out->dtype, 1));
  nnc_ls_push(L->k, blk, nnc_ls_let(L->k, acc, cst(L, nnc_lt(out->dtype, 1), 0)));
  nnc_lexpr *ext[NNC_MAX_RANK], *jv[NNC_MAX_RANK] = {0}, *ui[NNC_MAX_RANK] = {0};
  for (int k = 0; k < ix->rank; k++) ext[k] = extent(L, ix, k);
  nnc_lstmt *inner = nnc_lw_serial_loops(L, blk, ix->rank, ext, jv);
  for (int k = 0; k < axis; k++) ui[k] = idx[k];
  for (int k = 0; k < ix->rank; k++) ui[axis + k] = jv[k];
  for (int k = (int)axis + 1; k < out->rank; k++) ui[k - 1 + ix->rank] = idx[k];
  (void)up;
  nnc_lexpr *hit = bin(L, NNC_LB_EQ, nnc_le_cast(L->k, nnc_lt(NNC_I64, 1), load_at(L, 1, jv)), idx[axis]);
  accumulate(L, inner, acc, load_at(L, 0, ui), hit);
  store_at(L, blk, idx, var(L, acc));
}

/* --- one node ---------------------------------------------------------------------------------- */

element_fn nnc_lw_element_builder(nnc_op op) {
  switch (op) {
  case NNC_OP_const: return elem_const;
  case NNC_OP_iota: return elem_iota;
  case NNC_OP_nbatch: return elem_nbatch;
  case NNC_OP_rng_uniform: return elem_rng;
  case NNC_OP_broadcast: case NNC_OP_permute: case NNC_OP_slice: case NNC_OP_pad: return elem_index_map;
  case NNC_OP_reshape: return elem_reshape;
  case NNC_OP_reduce_sum: case NNC_OP_reduce_max: return elem_reduce;
  case NNC_OP_matmul: return elem_matmul;
  case NNC_OP_conv2d: return el_conv2d;
  case NNC_OP_conv2d_input_grad: return el_conv2d_input_grad;
  case NNC_OP_conv2d_weight_grad: return el_conv2d_weight_grad;
  case NNC_OP_gather: return elem_gather;
  case NNC_OP_scatter_add: return elem_scatter_add;
  case NNC_OP_maxpool2d: case NNC_OP_maxpool2d_argmax: return elem_maxpool;
  case NNC_OP_maxpool2d_grad: return elem_maxpool_grad;
  default: return NULL;
  }
}

/* Work per result element, for the decision to parallelize. */
static int64_t work_per_element(lower *L) { return nnc_lw_work_per_element(L->nd); }

int nnc_lw_lanes(const nnc_lower_opts *o) {
  int lanes = o->lanes > 0 ? o->lanes : DEFAULT_LANES;
  return lanes > NNC_MAX_LANES ? NNC_MAX_LANES : lanes;
}

static void lower_body(lower *L) {
  const nnc_node *nd = L->nd;
  nnc_op_kind kind = nnc_ops[nd->op].kind;
  bool elementwise = kind == NNC_KIND_UNARY || kind == NNC_KIND_BINARY || kind == NNC_KIND_TERNARY;
  if (elementwise && L->o->target == NNC_LOWER_CPU && nnc_lw_lanes(L->o) > 1) return lower_elementwise_vector(L, nnc_lw_lanes(L->o));
  if (elementwise) return over_result(L, 1, elem_elementwise);
  if (nd->op == NNC_OP_concat) return lower_concat(L);
  if (nd->op == NNC_OP_matmul && nnc_lw_matmul_cpu(L)) return;
  if (nnc_lw_conv_cpu(L)) return;
  element_fn fn = nnc_lw_element_builder(nd->op);
  if (!fn) return fail(L, "a source has no kernel");
  over_result(L, work_per_element(L), fn);
}

static const char *kernel_name(nnc_arena *a, const nnc_node *nd) {
  return nnc_arena_printf(a, "%s_%d", nnc_ops[nd->op].name, nd->id);
}

const char *nnc_lw_kernel_comment(nnc_arena *a, const nnc_node *nd) {
  char type[128], where[256] = "";
  nnc_type_str(&nd->type, type, sizeof type);
  if (nd->loc.src) nnc_loc_str(nd->loc, where, sizeof where);
  return nnc_arena_printf(a, "%%%d = %s : %s%s%s", nd->id, nnc_ops[nd->op].name, type, where[0] ? "  at " : "", where);
}

/* A kernel for nd whose result has type t (a copy: nd is the operand and op is reshape). */
static nnc_kernel *lower_with(nnc_arena *a, const nnc_module *m, const nnc_node *nd, const nnc_node *as_op,
                              const nnc_type *t, const nnc_lower_opts *o, nnc_diags *d) {
  lower L = {.o = o, .nd = as_op, .out_type = t, .bmax = m->batch_max > 0 ? m->batch_max : 1, .d = d};
  L.k = nnc_lk_new(a, as_op == nd ? kernel_name(a, nd) : nnc_arena_printf(a, "copy_%d", nd->id));
  L.k->comment = nnc_lw_kernel_comment(a, nd);
  L.k->batch_max = L.bmax;
  L.k->gpu = o->target == NNC_LOWER_GPU;
  L.out = nnc_lk_buf(L.k, "out", t->dtype, NNC_SCOPE_GLOBAL, nnc_type_elements(t, L.bmax));
  L.out->batch_scaled = t->batch_axis >= 0;
  int nin = as_op == nd ? nd->ninputs : 1;
  L.inbuf = nnc_arena_alloc(a, sizeof *L.inbuf * (size_t)(nin + 1));
  L.in = nnc_arena_alloc(a, sizeof *L.in * (size_t)(nin + 1));
  for (int j = 0; j < nin; j++) {
    const nnc_node *x = as_op == nd ? nd->inputs[j] : nd;
    L.in[j] = x;
    if (x->op == NNC_OP_scalar) continue;
    nnc_lbuf *b = nnc_lk_buf(L.k, nnc_arena_printf(a, "in%d", j), x->type.dtype, NNC_SCOPE_GLOBAL,
                             nnc_type_elements(&x->type, L.bmax));
    b->batch_scaled = x->type.batch_axis >= 0;
    L.inbuf[j] = b;
  }
  L.nin = nin;
  L.k->body = nnc_ls_block(L.k);
  nnc_ls_push(L.k, L.k->body, nnc_ls_comment(L.k, L.k->comment));
  lower_body(&L);
  if (L.failed) return NULL;
  nnc_lk_finish(L.k);
  return L.k;
}

/* GPU target: a hand-written schedule (shared-memory tiles, block reductions; passes/gpu_sched.h)
 * when one covers the node, with the flat kernel's buffers; NULL otherwise. */
static nnc_kernel *gpu_schedule(nnc_arena *a, const nnc_module *m, const nnc_node *nd, const nnc_lower_opts *o) {
  return o->target == NNC_LOWER_GPU ? nnc_gpu_sched_node(a, m, nd) : NULL;
}

nnc_kernel *nnc_lower_copy(nnc_arena *a, const nnc_module *m, const nnc_node *v, const nnc_type *to,
                           const nnc_lower_opts *o, nnc_diags *d) {
  static const nnc_node copy_op = {.op = NNC_OP_reshape, .id = -1};
  return lower_with(a, m, v, &copy_op, to, o, d);
}

nnc_kernel *nnc_lower_node(nnc_arena *a, const nnc_module *m, const nnc_node *nd, const nnc_lower_opts *o,
                           nnc_diags *d) {
  if (nnc_ops[nd->op].kind == NNC_KIND_SOURCE && nd->op != NNC_OP_nbatch) {
    nnc_error(d, nd->loc, "cannot lower %s: a source has no kernel", nnc_ops[nd->op].name);
    return NULL;
  }
  nnc_kernel *k = gpu_schedule(a, m, nd, o);
  return k ? k : lower_with(a, m, nd, nd, &nd->type, o, d);
}

/* --- shared with passes/lower_group.c (lower_impl.h) ------------------------------------------- */

nnc_lexpr *nnc_lw_const_value(lower *L, const nnc_node *nd) { return cst(L, nnc_lt(nd->type.dtype, 1), const_value(nd)); }
int64_t nnc_lw_work_per_element(const nnc_node *nd) {
  switch (nnc_ops[nd->op].kind) {
  case NNC_KIND_REDUCE: case NNC_KIND_CONTRACTION: case NNC_KIND_OPAQUE: return 64;
  default: return 1;
  }
}
