/* Shape rules: the result type of every primitive (docs/ir.md, "Primitives").
 *
 * nnc_infer_type checks a node's arity, its attributes and its inputs' types, then sets the
 * result type of ops whose type follows from their inputs, or checks the type the builder gave
 * to ops whose type does not (sources, generators, broadcast, reshape, scatter_add). Every
 * quantity read from a node is range-checked before it is used, so no node, however it was
 * built (by elaboration, a pass, or the IR text parser), can make this code overflow or index
 * out of bounds.
 *
 * Batch dims: two dims match when their sizes are equal and both or neither are batch dims. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

#define TYPE_STR_CAP 200
/* A type as text, valid until the end of the enclosing full expression's block. */
#define TS(t) nnc_type_str((t), (char[TYPE_STR_CAP]){0}, TYPE_STR_CAP)

static bool fail(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t cap, const char *fmt, ...) {
  if (err && cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
  }
  return false;
}

/* --- which attributes each op takes ------------------------------------------------------- */

#define A(k) (1u << NNC_ATTR_##k)
#define CONV_ATTRS (A(stride) | A(padding) | A(dilation) | A(groups))
#define POOL_ATTRS (A(kernel) | A(stride) | A(padding) | A(dilation))

static unsigned allowed_attrs(nnc_op op) {
  switch (op) {
  case NNC_OP_const: return A(value);
  case NNC_OP_iota: return A(axis);
  case NNC_OP_rng_uniform: return A(key);
  case NNC_OP_cast: return A(dtype);
  case NNC_OP_cmp: return A(cmp);
  case NNC_OP_broadcast: return A(axes);
  case NNC_OP_permute: return A(perm);
  case NNC_OP_slice: return A(start) | A(stop) | A(step);
  case NNC_OP_pad: return A(lo) | A(hi) | A(value);
  case NNC_OP_concat: case NNC_OP_gather: case NNC_OP_scatter_add: return A(axis);
  case NNC_OP_reduce_sum: case NNC_OP_reduce_max: return A(axes);
  case NNC_OP_matmul: return A(trans_a) | A(trans_b);
  case NNC_OP_conv2d: return CONV_ATTRS;
  case NNC_OP_conv2d_input_grad: return CONV_ATTRS | A(in_shape);
  case NNC_OP_conv2d_weight_grad: return CONV_ATTRS | A(kernel);
  case NNC_OP_maxpool2d: case NNC_OP_maxpool2d_argmax: return POOL_ATTRS;
  case NNC_OP_maxpool2d_grad: return POOL_ATTRS | A(in_shape);
  default: return 0;
  }
}

/* Every attribute is known, allowed for the op, given once, and of its form: `value` is one
 * number, every other attribute a list of integers. */
static bool check_attr_forms(const nnc_node *n, const char *op, char *err, size_t cap) {
  if (n->nattrs < 0 || n->nattrs > NNC_MAX_ATTRS) return fail(err, cap, "%s: bad attribute count %d", op, n->nattrs);
  unsigned seen = 0, allowed = allowed_attrs(n->op);
  for (int i = 0; i < n->nattrs; i++) {
    const nnc_attr *a = &n->attrs[i];
    if ((unsigned)a->key >= NNC_ATTR_COUNT) return fail(err, cap, "%s: unknown attribute %d", op, (int)a->key);
    const char *name = nnc_attr_name(a->key);
    unsigned bit = 1u << a->key;
    if (!(allowed & bit)) return fail(err, cap, "%s: takes no attribute '%s'", op, name);
    if (seen & bit) return fail(err, cap, "%s: attribute '%s' given twice", op, name);
    seen |= bit;
    if (a->n < 0 || a->n > NNC_MAX_RANK) return fail(err, cap, "%s: attribute '%s' has %d values", op, name, a->n);
    if (a->key == NNC_ATTR_value) {
      if (!a->has_num || a->n != 0) return fail(err, cap, "%s: attribute 'value' must be one number", op);
    } else if (a->has_num) {
      return fail(err, cap, "%s: attribute '%s' must be a list of integers", op, name);
    }
  }
  return true;
}

/* The attribute's integers when it has exactly `count` (count < 0: any number). */
static const int64_t *need_ints(const nnc_node *n, nnc_attr_key k, int count, const char *op, char *err, size_t cap) {
  const nnc_attr *a = nnc_node_attr(n, k);
  if (!a) {
    fail(err, cap, "%s: missing attribute '%s'", op, nnc_attr_name(k));
    return NULL;
  }
  if (count >= 0 && a->n != count) {
    fail(err, cap, "%s: attribute '%s' needs %d value%s, has %d", op, nnc_attr_name(k), count,
         count == 1 ? "" : "s", a->n);
    return NULL;
  }
  return a->ints;
}

/* An optional 0/1 flag. */
static bool get_flag(const nnc_node *n, nnc_attr_key k, bool *out, const char *op, char *err, size_t cap) {
  const nnc_attr *a = nnc_node_attr(n, k);
  *out = false;
  if (!a) return true;
  if (a->n != 1 || (a->ints[0] != 0 && a->ints[0] != 1))
    return fail(err, cap, "%s: attribute '%s' must be 0 or 1", op, nnc_attr_name(k));
  *out = a->ints[0] == 1;
  return true;
}

static bool in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

/* --- types --------------------------------------------------------------------------------- */

/* Set when the last rule failed on the size limit (nnc_infer_type_sized). */
static _Thread_local bool limit_failed;

bool nnc_type_within_limit(const nnc_type *t) {
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i] > NNC_MAX_ELEMENTS) return false;
  int64_t e = nnc_type_elements(t, 1);
  return e >= 0 && e <= NNC_MAX_ELEMENTS;
}

/* A type is well formed: known dtype, rank and batch axis in range, every dim within bounds,
 * and at most NNC_MAX_ELEMENTS elements with B = 1. */
static bool check_type(const nnc_type *t, const char *what, char *err, size_t cap) {
  if ((unsigned)t->dtype >= NNC_DTYPE_COUNT) return fail(err, cap, "%s: unknown dtype %d", what, (int)t->dtype);
  if (t->rank < 0 || t->rank > NNC_MAX_RANK) return fail(err, cap, "%s: rank %d out of range", what, t->rank);
  if (t->batch_axis < -1 || t->batch_axis >= t->rank)
    return fail(err, cap, "%s: batch axis %d out of range for rank %d", what, t->batch_axis, t->rank);
  for (int i = 0; i < t->rank; i++) {
    int64_t lo = i == t->batch_axis ? 1 : 0;
    if (t->dims[i] < lo)
      return fail(err, cap, "%s: dimension %d of size %lld out of range", what, i, (long long)t->dims[i]);
  }
  if (!nnc_type_within_limit(t)) {
    limit_failed = true;
    return fail(err, cap, "%s: %s has more than %lld elements, the limit per tensor", what, TS(t),
                (long long)NNC_MAX_ELEMENTS);
  }
  return true;
}

static bool is_batch(const nnc_type *t, int axis) { return axis == t->batch_axis; }

static bool dims_match(const nnc_type *a, int i, const nnc_type *b, int j) {
  return a->dims[i] == b->dims[j] && is_batch(a, i) == is_batch(b, j);
}

/* Appends a dim to a type under construction; false when the rank or the single batch axis
 * would be exceeded. */
static bool push_dim(nnc_type *t, int64_t size, bool batch) {
  if (t->rank >= NNC_MAX_RANK) return false;
  if (batch) {
    if (t->batch_axis >= 0) return false;
    t->batch_axis = t->rank;
  }
  t->dims[t->rank++] = size;
  return true;
}

static nnc_type empty_type(nnc_dtype dt) { return (nnc_type){.dtype = dt, .batch_axis = -1}; }

/* --- sources and generators ---------------------------------------------------------------- */

static bool rule_source(nnc_node *n, const char *op, char *err, size_t cap) {
  if (n->op == NNC_OP_nbatch) {
    n->type = nnc_type_scalar(NNC_F32);
    return true;
  }
  if (!n->name || !n->name[0]) return fail(err, cap, "%s: missing name", op);
  if (!check_type(&n->type, op, err, cap)) return false;
  if (n->op == NNC_OP_scalar && n->type.rank != 0)
    return fail(err, cap, "scalar: type %s is not a scalar", TS(&n->type));
  return true;
}

static bool rule_const(nnc_node *n, char *err, size_t cap) {
  const nnc_attr *v = nnc_node_attr(n, NNC_ATTR_value);
  if (!v) return fail(err, cap, "const: missing attribute 'value'");
  if (!check_type(&n->type, "const", err, cap)) return false;
  double x = v->num;
  if (!nnc_dtype_holds(n->type.dtype, x))
    return fail(err, cap, "const: value %.9g is not %s %s", x, n->type.dtype == NNC_I32 ? "an" : "a",
                nnc_dtype_name(n->type.dtype));
  return true;
}

static bool rule_iota(nnc_node *n, char *err, size_t cap) {
  const int64_t *axis = need_ints(n, NNC_ATTR_axis, 1, "iota", err, cap);
  if (!axis || !check_type(&n->type, "iota", err, cap)) return false;
  if (n->type.dtype == NNC_U8) return fail(err, cap, "iota: type %s must be i32 or f32", TS(&n->type));
  if (!in_range(axis[0], 0, n->type.rank - 1))
    return fail(err, cap, "iota: axis %lld out of range for %s", (long long)axis[0], TS(&n->type));
  return true;
}

static bool rule_rng_uniform(nnc_node *n, char *err, size_t cap) {
  const int64_t *key = need_ints(n, NNC_ATTR_key, 1, "rng_uniform", err, cap);
  if (!key || !check_type(&n->type, "rng_uniform", err, cap)) return false;
  const nnc_type *seed = &n->inputs[0]->type, *step = &n->inputs[1]->type;
  if (seed->dtype != NNC_I32 || seed->rank != 0 || step->dtype != NNC_I32 || step->rank != 0)
    return fail(err, cap, "rng_uniform: seed and step must be i32[]: %s and %s", TS(seed), TS(step));
  if (n->type.dtype != NNC_F32) return fail(err, cap, "rng_uniform: type %s must be f32", TS(&n->type));
  return true;
}

/* --- elementwise ---------------------------------------------------------------------------- */

/* The op's dtype rule (ops.def) on its operand type a; the shape rules check the rest. */
static bool check_dtype_rule(const nnc_node *n, const char *op, const nnc_type *a, char *err, size_t cap) {
  const char *operand = n->ninputs > 1 ? "operands" : "operand";
  switch (nnc_ops[n->op].dtypes) {
  case NNC_DTYPES_FLOAT:
    if (a->dtype != NNC_F32) return fail(err, cap, "%s: %s %s must be f32", op, operand, TS(a));
    return true;
  case NNC_DTYPES_SIGNED:
    if (a->dtype == NNC_U8) return fail(err, cap, "%s: %s %s must be f32 or i32", op, operand, TS(a));
    return true;
  default: return true;
  }
}

static bool rule_unary(nnc_node *n, const char *op, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type;
  if (n->op == NNC_OP_cast) {
    const int64_t *dt = need_ints(n, NNC_ATTR_dtype, 1, op, err, cap);
    if (!dt) return false;
    if (!in_range(dt[0], 0, NNC_DTYPE_COUNT - 1)) return fail(err, cap, "cast: unknown dtype %lld", (long long)dt[0]);
    n->type = *a;
    n->type.dtype = (nnc_dtype)dt[0];
    return true;
  }
  if (!check_dtype_rule(n, op, a, err, cap)) return false;
  n->type = *a;
  return true;
}

static bool rule_binary(nnc_node *n, const char *op, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type, *b = &n->inputs[1]->type;
  if (!nnc_type_equal(a, b)) return fail(err, cap, "%s: operand types differ: %s and %s", op, TS(a), TS(b));
  if (!check_dtype_rule(n, op, a, err, cap)) return false;
  n->type = *a;
  if (nnc_ops[n->op].dtypes == NNC_DTYPES_CMP) n->type.dtype = NNC_U8;
  if (n->op == NNC_OP_cmp) {
    const int64_t *c = need_ints(n, NNC_ATTR_cmp, 1, op, err, cap);
    if (!c) return false;
    if (!in_range(c[0], NNC_CMP_LT, NNC_CMP_NE)) return fail(err, cap, "cmp: unknown comparison %lld", (long long)c[0]);
  }
  return true;
}

static bool rule_select(nnc_node *n, char *err, size_t cap) {
  const nnc_type *c = &n->inputs[0]->type, *a = &n->inputs[1]->type, *b = &n->inputs[2]->type;
  if (c->dtype != NNC_U8) return fail(err, cap, "select: condition %s must be u8", TS(c));
  if (!nnc_shape_equal(c, a) || !nnc_type_equal(a, b))
    return fail(err, cap, "select: operand types differ: %s, %s and %s", TS(c), TS(a), TS(b));
  n->type = *a;
  return true;
}

/* --- index maps ----------------------------------------------------------------------------- */

static bool rule_broadcast(nnc_node *n, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type, *out = &n->type;
  if (!check_type(out, "broadcast", err, cap)) return false;
  if (a->dtype != out->dtype) return fail(err, cap, "broadcast: dtype changes: %s to %s", TS(a), TS(out));
  const nnc_attr *axes_attr = nnc_node_attr(n, NNC_ATTR_axes);
  if (!axes_attr && a->rank > 0) return fail(err, cap, "broadcast: missing attribute 'axes'");
  int naxes = axes_attr ? axes_attr->n : 0;
  if (naxes != a->rank)
    return fail(err, cap, "broadcast: 'axes' has %d values for operand %s", naxes, TS(a));
  for (int i = 0; i < a->rank; i++) {
    int64_t o = axes_attr->ints[i];
    if (!in_range(o, 0, out->rank - 1) || (i > 0 && o <= axes_attr->ints[i - 1]))
      return fail(err, cap, "broadcast: 'axes' must be increasing output axes of %s", TS(out));
    bool keeps = dims_match(a, i, out, (int)o);
    bool expands = a->dims[i] == 1 && !is_batch(a, i);
    if (!keeps && !expands)
      return fail(err, cap, "broadcast: dimension %d of %s does not broadcast to axis %lld of %s", i, TS(a),
                  (long long)o, TS(out));
  }
  return true;
}

/* The product of the static dims and the batch multiple of a type. */
static int64_t static_size(const nnc_type *t) { return nnc_type_elements(t, 1); }

static bool rule_reshape(nnc_node *n, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type, *out = &n->type;
  if (!check_type(out, "reshape", err, cap)) return false;
  if (a->dtype != out->dtype) return fail(err, cap, "reshape: dtype changes: %s to %s", TS(a), TS(out));
  if ((a->batch_axis >= 0) != (out->batch_axis >= 0) || static_size(a) != static_size(out))
    return fail(err, cap, "reshape: element counts differ: %s and %s", TS(a), TS(out));
  return true;
}

static bool rule_permute(nnc_node *n, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type;
  const int64_t *perm = need_ints(n, NNC_ATTR_perm, a->rank, "permute", err, cap);
  if (!perm) return false;
  bool used[NNC_MAX_RANK] = {false};
  nnc_type t = empty_type(a->dtype);
  for (int i = 0; i < a->rank; i++) {
    if (!in_range(perm[i], 0, a->rank - 1) || used[perm[i]])
      return fail(err, cap, "permute: 'perm' is not a permutation of the axes of %s", TS(a));
    used[perm[i]] = true;
    push_dim(&t, a->dims[perm[i]], is_batch(a, (int)perm[i]));
  }
  n->type = t;
  return true;
}

static bool rule_slice(nnc_node *n, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type;
  const int64_t *start = need_ints(n, NNC_ATTR_start, a->rank, "slice", err, cap);
  const int64_t *stop = start ? need_ints(n, NNC_ATTR_stop, a->rank, "slice", err, cap) : NULL;
  const int64_t *step = stop ? need_ints(n, NNC_ATTR_step, a->rank, "slice", err, cap) : NULL;
  if (!step) return false;
  nnc_type t = *a;
  for (int i = 0; i < a->rank; i++) {
    if (step[i] < 1 || !in_range(start[i], 0, a->dims[i]) || !in_range(stop[i], start[i], a->dims[i]))
      return fail(err, cap, "slice: axis %d: [%lld:%lld:%lld] is not a slice of %s", i, (long long)start[i],
                  (long long)stop[i], (long long)step[i], TS(a));
    if (is_batch(a, i) && (start[i] != 0 || stop[i] != a->dims[i] || step[i] != 1))
      return fail(err, cap, "slice: the batch axis %d of %s cannot be sliced", i, TS(a));
    t.dims[i] = (stop[i] - start[i] + step[i] - 1) / step[i];
  }
  n->type = t;
  return true;
}

static bool rule_pad(nnc_node *n, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type;
  const int64_t *lo = need_ints(n, NNC_ATTR_lo, a->rank, "pad", err, cap);
  const int64_t *hi = lo ? need_ints(n, NNC_ATTR_hi, a->rank, "pad", err, cap) : NULL;
  if (!hi) return false;
  double fill = nnc_node_num(n, NNC_ATTR_value, 0);
  if (!nnc_dtype_holds(a->dtype, fill))
    return fail(err, cap, "pad: the fill %g does not fit %s", fill, nnc_dtype_name(a->dtype));
  nnc_type t = *a;
  for (int i = 0; i < a->rank; i++) {
    if (!in_range(lo[i], 0, NNC_MAX_ELEMENTS) || !in_range(hi[i], 0, NNC_MAX_ELEMENTS))
      return fail(err, cap, "pad: axis %d: padding %lld, %lld out of range", i, (long long)lo[i], (long long)hi[i]);
    if (is_batch(a, i) && (lo[i] || hi[i]))
      return fail(err, cap, "pad: the batch axis %d of %s cannot be padded", i, TS(a));
    t.dims[i] += lo[i] + hi[i];
  }
  if (!check_type(&t, "pad", err, cap)) return false;
  n->type = t;
  return true;
}

static bool rule_concat(nnc_node *n, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type;
  const int64_t *axis = need_ints(n, NNC_ATTR_axis, 1, "concat", err, cap);
  if (!axis) return false;
  if (!in_range(axis[0], 0, a->rank - 1))
    return fail(err, cap, "concat: axis %lld out of range for %s", (long long)axis[0], TS(a));
  int ax = (int)axis[0];
  nnc_type t = *a;
  for (int k = 1; k < n->ninputs; k++) {
    const nnc_type *b = &n->inputs[k]->type;
    bool same = b->dtype == a->dtype && b->rank == a->rank && b->batch_axis == a->batch_axis;
    for (int i = 0; same && i < a->rank; i++)
      if (i != ax && b->dims[i] != a->dims[i]) same = false;
    if (!same) return fail(err, cap, "concat: operands differ outside axis %d: %s and %s", ax, TS(a), TS(b));
    t.dims[ax] += b->dims[ax]; /* each term is at most NNC_MAX_ELEMENTS: no overflow */
    if (t.dims[ax] > NNC_MAX_ELEMENTS) break;
  }
  if (!check_type(&t, "concat", err, cap)) return false;
  n->type = t;
  return true;
}

/* --- reductions ----------------------------------------------------------------------------- */

static bool rule_reduce(nnc_node *n, const char *op, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type;
  const int64_t *axes = need_ints(n, NNC_ATTR_axes, -1, op, err, cap);
  if (!axes) return false;
  int naxes = nnc_node_attr(n, NNC_ATTR_axes)->n;
  bool reduced[NNC_MAX_RANK] = {false};
  for (int i = 0; i < naxes; i++) {
    if (!in_range(axes[i], 0, a->rank - 1) || (i > 0 && axes[i] <= axes[i - 1]))
      return fail(err, cap, "%s: 'axes' must be sorted, distinct axes of %s", op, TS(a));
    reduced[axes[i]] = true;
  }
  if (n->op == NNC_OP_reduce_sum && a->dtype == NNC_U8) return fail(err, cap, "%s: operand %s must be f32 or i32", op, TS(a));
  nnc_type t = empty_type(a->dtype);
  for (int i = 0; i < a->rank; i++)
    if (!reduced[i]) push_dim(&t, a->dims[i], is_batch(a, i));
  n->type = t;
  return true;
}

/* --- contractions --------------------------------------------------------------------------- */

/* The axis of an operand holding its row (r = 0) or column (r = 1) after an optional
 * transpose of its last two axes. */
static int mat_axis(const nnc_type *t, bool trans, int r) { return t->rank - 2 + (trans ? 1 - r : r); }

static bool rule_matmul(nnc_node *n, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type, *b = &n->inputs[1]->type;
  bool ta, tb;
  if (!get_flag(n, NNC_ATTR_trans_a, &ta, "matmul", err, cap) || !get_flag(n, NNC_ATTR_trans_b, &tb, "matmul", err, cap))
    return false;
  if (a->dtype != NNC_F32 || b->dtype != NNC_F32) return fail(err, cap, "matmul: operands must be f32: %s and %s", TS(a), TS(b));
  if (a->rank < 2 || b->rank < 2) return fail(err, cap, "matmul: operands need rank >= 2: %s and %s", TS(a), TS(b));
  if (b->rank != 2 && b->rank != a->rank)
    return fail(err, cap, "matmul: operand ranks differ: %s and %s", TS(a), TS(b));
  int lead = a->rank - 2;
  for (int i = 0; b->rank > 2 && i < lead; i++)
    if (!dims_match(a, i, b, i)) return fail(err, cap, "matmul: leading dimensions differ: %s and %s", TS(a), TS(b));
  int ak = mat_axis(a, ta, 1), bk = mat_axis(b, tb, 0);
  if (!dims_match(a, ak, b, bk)) return fail(err, cap, "matmul: inner dimensions differ: %s and %s", TS(a), TS(b));
  nnc_type t = empty_type(NNC_F32);
  for (int i = 0; i < lead; i++) push_dim(&t, a->dims[i], is_batch(a, i));
  int am = mat_axis(a, ta, 0), bn = mat_axis(b, tb, 1);
  bool ok = push_dim(&t, a->dims[am], is_batch(a, am));
  ok = ok && push_dim(&t, b->dims[bn], is_batch(b, bn));
  if (!ok) return fail(err, cap, "matmul: result would have two batch axes: %s and %s", TS(a), TS(b));
  if (!check_type(&t, "matmul", err, cap)) return false;
  n->type = t;
  return true;
}

/* A 2-d window's attributes: kernel size, stride, padding, dilation per spatial axis. */
typedef struct window {
  int64_t k[2], s[2], p[2], d[2];
} window;

static bool read_window(const nnc_node *n, bool with_kernel, window *w, const char *op, char *err, size_t cap) {
  const int64_t *s = need_ints(n, NNC_ATTR_stride, 2, op, err, cap);
  const int64_t *p = s ? need_ints(n, NNC_ATTR_padding, 2, op, err, cap) : NULL;
  const int64_t *d = p ? need_ints(n, NNC_ATTR_dilation, 2, op, err, cap) : NULL;
  const int64_t *k = d && with_kernel ? need_ints(n, NNC_ATTR_kernel, 2, op, err, cap) : NULL;
  if (!d || (with_kernel && !k)) return false;
  for (int i = 0; i < 2; i++) {
    if (!in_range(s[i], 1, NNC_MAX_ELEMENTS) || !in_range(p[i], 0, NNC_MAX_ELEMENTS) ||
        !in_range(d[i], 1, NNC_MAX_ELEMENTS) || (k && !in_range(k[i], 1, NNC_MAX_ELEMENTS)))
      return fail(err, cap, "%s: window attributes out of range (kernel >= 1, stride >= 1, padding >= 0, dilation >= 1)", op);
    w->s[i] = s[i], w->p[i] = p[i], w->d[i] = d[i], w->k[i] = k ? k[i] : 0;
  }
  return true;
}

/* Output size of a window sweep (PyTorch floor mode); -1 when the window does not fit. Sizes,
 * padding and strides are at most NNC_MAX_ELEMENTS (2^34); only the dilated span can overflow. */
static int64_t window_out(int64_t in, const window *w, int i) {
  if (w->k[i] < 1 || (w->k[i] > 1 && w->d[i] > (INT64_MAX / 4) / (w->k[i] - 1))) return -1;
  int64_t span = w->d[i] * (w->k[i] - 1) + 1;
  int64_t room = in + 2 * w->p[i] - span;
  return room < 0 ? -1 : room / w->s[i] + 1;
}

/* An image operand [N,C,H,W] with the batch axis at 0 or absent. */
static bool check_image(const nnc_type *t, const char *role, const char *op, char *err, size_t cap) {
  if (t->rank != 4 || (t->batch_axis != 0 && t->batch_axis != -1))
    return fail(err, cap, "%s: %s %s must be [N,C,H,W] with the batch axis first", op, role, TS(t));
  return true;
}

static bool read_groups(const nnc_node *n, int64_t *g, const char *op, char *err, size_t cap) {
  const int64_t *v = need_ints(n, NNC_ATTR_groups, 1, op, err, cap);
  if (!v) return false;
  if (!in_range(v[0], 1, NNC_MAX_ELEMENTS)) return fail(err, cap, "%s: groups %lld must be >= 1", op, (long long)v[0]);
  *g = v[0];
  return true;
}

/* Output image [N,O,Ho,Wo] of a convolution of x [N,C,H,W] with w [O,C/g,KH,KW]. */
static bool conv_forward_type(const nnc_type *x, const nnc_type *w, const nnc_node *n, nnc_type *out, const char *op,
                              char *err, size_t cap) {
  window win;
  int64_t g = 1; /* set by read_groups; initialized for -O3, which cannot see it */
  if (!read_window(n, false, &win, op, err, cap) || !read_groups(n, &g, op, err, cap)) return false;
  if (!check_image(x, "input", op, err, cap)) return false;
  if (w->rank != 4 || w->batch_axis != -1) return fail(err, cap, "%s: weight %s must be [O,C/g,KH,KW]", op, TS(w));
  if (x->dtype != NNC_F32 || w->dtype != NNC_F32) return fail(err, cap, "%s: operands must be f32: %s and %s", op, TS(x), TS(w));
  if (x->dims[1] % g || w->dims[0] % g || w->dims[1] != x->dims[1] / g)
    return fail(err, cap, "%s: channels of %s and %s do not match with groups=%lld", op, TS(x), TS(w), (long long)g);
  win.k[0] = w->dims[2], win.k[1] = w->dims[3];
  int64_t ho = window_out(x->dims[2], &win, 0), wo = window_out(x->dims[3], &win, 1);
  if (ho < 1 || wo < 1 || win.k[0] < 1 || win.k[1] < 1)
    return fail(err, cap, "%s: kernel of %s does not fit input %s", op, TS(w), TS(x));
  *out = nnc_type_make(NNC_F32, 4, (int64_t[]){x->dims[0], w->dims[0], ho, wo}, x->batch_axis);
  return true;
}

static bool rule_conv2d(nnc_node *n, char *err, size_t cap) {
  nnc_type t;
  if (!conv_forward_type(&n->inputs[0]->type, &n->inputs[1]->type, n, &t, "conv2d", err, cap)) return false;
  if (!check_type(&t, "conv2d", err, cap)) return false;
  n->type = t;
  return true;
}

/* dy [N,O,Ho,Wo], w [O,C/g,KH,KW], in_shape [H,W] -> dx [N,C,H,W], where conv2d of dx gives dy. */
static bool rule_conv2d_input_grad(nnc_node *n, char *err, size_t cap) {
  const char *op = "conv2d_input_grad";
  const nnc_type *dy = &n->inputs[0]->type, *w = &n->inputs[1]->type;
  const int64_t *hw = need_ints(n, NNC_ATTR_in_shape, 2, op, err, cap);
  int64_t g = 1; /* set by read_groups; initialized for -O3, which cannot see it */
  if (!hw || !read_groups(n, &g, op, err, cap)) return false;
  if (!check_image(dy, "gradient", op, err, cap)) return false;
  if (w->rank != 4) return fail(err, cap, "%s: weight %s must be [O,C/g,KH,KW]", op, TS(w));
  if (!in_range(hw[0], 1, NNC_MAX_ELEMENTS) || !in_range(hw[1], 1, NNC_MAX_ELEMENTS))
    return fail(err, cap, "%s: 'in_shape' [%lld,%lld] out of range", op, (long long)hw[0], (long long)hw[1]);
  if (!in_range(w->dims[1], 0, NNC_MAX_ELEMENTS / g))
    return fail(err, cap, "%s: channels of %s overflow with groups=%lld", op, TS(w), (long long)g);
  nnc_type dx = nnc_type_make(NNC_F32, 4, (int64_t[]){dy->dims[0], w->dims[1] * g, hw[0], hw[1]}, dy->batch_axis);
  if (!check_type(&dx, op, err, cap)) return false;
  nnc_type fwd;
  if (!conv_forward_type(&dx, w, n, &fwd, op, err, cap)) return false;
  if (!nnc_type_equal(&fwd, dy))
    return fail(err, cap, "%s: gradient %s does not match the convolution's output %s", op, TS(dy), TS(&fwd));
  n->type = dx;
  return true;
}

/* dy [N,O,Ho,Wo], x [N,C,H,W], kernel [KH,KW] -> dw [O,C/g,KH,KW], where conv2d of x gives dy. */
static bool rule_conv2d_weight_grad(nnc_node *n, char *err, size_t cap) {
  const char *op = "conv2d_weight_grad";
  const nnc_type *dy = &n->inputs[0]->type, *x = &n->inputs[1]->type;
  const int64_t *k = need_ints(n, NNC_ATTR_kernel, 2, op, err, cap);
  int64_t g = 1; /* set by read_groups; initialized for -O3, which cannot see it */
  if (!k || !read_groups(n, &g, op, err, cap)) return false;
  if (!check_image(dy, "gradient", op, err, cap) || !check_image(x, "input", op, err, cap)) return false;
  if (x->dims[1] % g) return fail(err, cap, "%s: channels of %s not divisible by groups=%lld", op, TS(x), (long long)g);
  if (!in_range(k[0], 1, NNC_MAX_ELEMENTS) || !in_range(k[1], 1, NNC_MAX_ELEMENTS))
    return fail(err, cap, "%s: 'kernel' [%lld,%lld] out of range", op, (long long)k[0], (long long)k[1]);
  nnc_type dw = nnc_type_make(NNC_F32, 4, (int64_t[]){dy->dims[1], x->dims[1] / g, k[0], k[1]}, -1);
  if (!check_type(&dw, op, err, cap)) return false;
  nnc_type fwd;
  if (!conv_forward_type(x, &dw, n, &fwd, op, err, cap)) return false;
  if (!nnc_type_equal(&fwd, dy))
    return fail(err, cap, "%s: gradient %s does not match the convolution's output %s", op, TS(dy), TS(&fwd));
  n->type = dw;
  return true;
}

/* --- opaque ops ----------------------------------------------------------------------------- */

/* a.shape[:axis] + idx.shape + a.shape[axis+1:], keeping batch flags. */
static bool take_type(const nnc_type *a, const nnc_type *idx, int axis, nnc_type *t) {
  *t = empty_type(a->dtype);
  bool ok = true;
  for (int i = 0; i < axis; i++) ok = ok && push_dim(t, a->dims[i], is_batch(a, i));
  for (int i = 0; i < idx->rank; i++) ok = ok && push_dim(t, idx->dims[i], is_batch(idx, i));
  for (int i = axis + 1; i < a->rank; i++) ok = ok && push_dim(t, a->dims[i], is_batch(a, i));
  return ok;
}

static bool rule_gather(nnc_node *n, char *err, size_t cap) {
  const nnc_type *a = &n->inputs[0]->type, *idx = &n->inputs[1]->type;
  const int64_t *axis = need_ints(n, NNC_ATTR_axis, 1, "gather", err, cap);
  if (!axis) return false;
  if (idx->dtype != NNC_I32) return fail(err, cap, "gather: indices %s must be i32", TS(idx));
  if (!in_range(axis[0], 0, a->rank - 1))
    return fail(err, cap, "gather: axis %lld out of range for %s", (long long)axis[0], TS(a));
  nnc_type t;
  if (!take_type(a, idx, (int)axis[0], &t))
    return fail(err, cap, "gather: result of %s and %s has too many axes or two batch axes", TS(a), TS(idx));
  if (!check_type(&t, "gather", err, cap)) return false;
  n->type = t;
  return true;
}

static bool rule_scatter_add(nnc_node *n, char *err, size_t cap) {
  const nnc_type *upd = &n->inputs[0]->type, *idx = &n->inputs[1]->type, *out = &n->type;
  const int64_t *axis = need_ints(n, NNC_ATTR_axis, 1, "scatter_add", err, cap);
  if (!axis || !check_type(out, "scatter_add", err, cap)) return false;
  if (idx->dtype != NNC_I32) return fail(err, cap, "scatter_add: indices %s must be i32", TS(idx));
  if (!in_range(axis[0], 0, out->rank - 1))
    return fail(err, cap, "scatter_add: axis %lld out of range for %s", (long long)axis[0], TS(out));
  nnc_type want;
  if (!take_type(out, idx, (int)axis[0], &want) || !nnc_type_equal(&want, upd))
    return fail(err, cap, "scatter_add: updates %s do not match result %s indexed by %s", TS(upd), TS(out), TS(idx));
  return true;
}

/* Output [N,C,Ho,Wo] of a max-pool over x [N,C,H,W]. Padding is at most half the kernel (as
 * PyTorch requires), so every window holds at least one element of x. */
static bool pool_forward_type(const nnc_type *x, const window *w, nnc_type *out, const char *op, char *err, size_t cap) {
  if (!check_image(x, "input", op, err, cap)) return false;
  for (int i = 0; i < 2; i++)
    if (w->p[i] > w->k[i] / 2)
      return fail(err, cap, "%s: padding %lld exceeds half the kernel %lld", op, (long long)w->p[i], (long long)w->k[i]);
  int64_t ho = window_out(x->dims[2], w, 0), wo = window_out(x->dims[3], w, 1);
  if (ho < 1 || wo < 1) return fail(err, cap, "%s: window does not fit input %s", op, TS(x));
  *out = nnc_type_make(x->dtype, 4, (int64_t[]){x->dims[0], x->dims[1], ho, wo}, x->batch_axis);
  return true;
}

static bool rule_maxpool2d(nnc_node *n, const char *op, char *err, size_t cap) {
  window w;
  nnc_type t;
  if (!read_window(n, true, &w, op, err, cap) || !pool_forward_type(&n->inputs[0]->type, &w, &t, op, err, cap))
    return false;
  if (n->op == NNC_OP_maxpool2d_argmax) {
    if (w.k[0] > 256 || w.k[1] > 256 || w.k[0] * w.k[1] > 256)
      return fail(err, cap, "%s: a %lldx%lld window does not fit a u8 index", op, (long long)w.k[0], (long long)w.k[1]);
    t.dtype = NNC_U8;
  }
  n->type = t;
  return true;
}

static bool rule_maxpool2d_grad(nnc_node *n, char *err, size_t cap) {
  const char *op = "maxpool2d_grad";
  const nnc_type *dy = &n->inputs[0]->type, *arg = &n->inputs[1]->type;
  const int64_t *hw = need_ints(n, NNC_ATTR_in_shape, 2, op, err, cap);
  window w;
  if (!hw || !read_window(n, true, &w, op, err, cap)) return false;
  if (!check_image(dy, "gradient", op, err, cap)) return false;
  if (arg->dtype != NNC_U8 || !nnc_shape_equal(arg, dy))
    return fail(err, cap, "%s: argmax %s must be u8 of the gradient's shape %s", op, TS(arg), TS(dy));
  if (!in_range(hw[0], 1, NNC_MAX_ELEMENTS) || !in_range(hw[1], 1, NNC_MAX_ELEMENTS))
    return fail(err, cap, "%s: 'in_shape' [%lld,%lld] out of range", op, (long long)hw[0], (long long)hw[1]);
  nnc_type dx = nnc_type_make(dy->dtype, 4, (int64_t[]){dy->dims[0], dy->dims[1], hw[0], hw[1]}, dy->batch_axis);
  if (!check_type(&dx, op, err, cap)) return false;
  nnc_type fwd;
  if (!pool_forward_type(&dx, &w, &fwd, op, err, cap)) return false;
  if (!nnc_shape_equal(&fwd, dy))
    return fail(err, cap, "%s: gradient %s does not match the pool's output %s", op, TS(dy), TS(&fwd));
  n->type = dx;
  return true;
}

/* --- entry ---------------------------------------------------------------------------------- */

static bool check_inputs(const nnc_node *n, const char *op, char *err, size_t cap) {
  int arity = nnc_ops[n->op].arity;
  if (arity >= 0 && n->ninputs != arity)
    return fail(err, cap, "%s: takes %d input%s, has %d", op, arity, arity == 1 ? "" : "s", n->ninputs);
  if (arity < 0 && (n->ninputs < 1 || n->ninputs > 4096))
    return fail(err, cap, "%s: takes 1 to 4096 inputs, has %d", op, n->ninputs);
  if (n->ninputs > 0 && !n->inputs) return fail(err, cap, "%s: inputs missing", op);
  for (int i = 0; i < n->ninputs; i++) {
    if (!n->inputs[i]) return fail(err, cap, "%s: input %d missing", op, i);
    char what[64];
    snprintf(what, sizeof what, "%s: input %d", op, i);
    if (!check_type(&n->inputs[i]->type, what, err, cap)) return false;
  }
  return true;
}

static bool apply_rule(nnc_node *n, const char *op, char *err, size_t cap) {
  switch (nnc_ops[n->op].kind) {
  case NNC_KIND_SOURCE: return rule_source(n, op, err, cap);
  case NNC_KIND_UNARY: return rule_unary(n, op, err, cap);
  case NNC_KIND_BINARY: return rule_binary(n, op, err, cap);
  case NNC_KIND_REDUCE: return rule_reduce(n, op, err, cap);
  default: break;
  }
  switch (n->op) {
  case NNC_OP_const: return rule_const(n, err, cap);
  case NNC_OP_iota: return rule_iota(n, err, cap);
  case NNC_OP_rng_uniform: return rule_rng_uniform(n, err, cap);
  case NNC_OP_select: return rule_select(n, err, cap);
  case NNC_OP_broadcast: return rule_broadcast(n, err, cap);
  case NNC_OP_reshape: return rule_reshape(n, err, cap);
  case NNC_OP_permute: return rule_permute(n, err, cap);
  case NNC_OP_slice: return rule_slice(n, err, cap);
  case NNC_OP_pad: return rule_pad(n, err, cap);
  case NNC_OP_concat: return rule_concat(n, err, cap);
  case NNC_OP_matmul: return rule_matmul(n, err, cap);
  case NNC_OP_conv2d: return rule_conv2d(n, err, cap);
  case NNC_OP_conv2d_input_grad: return rule_conv2d_input_grad(n, err, cap);
  case NNC_OP_conv2d_weight_grad: return rule_conv2d_weight_grad(n, err, cap);
  case NNC_OP_gather: return rule_gather(n, err, cap);
  case NNC_OP_scatter_add: return rule_scatter_add(n, err, cap);
  case NNC_OP_maxpool2d: case NNC_OP_maxpool2d_argmax: return rule_maxpool2d(n, nnc_ops[n->op].name, err, cap);
  case NNC_OP_maxpool2d_grad: return rule_maxpool2d_grad(n, err, cap);
  default: return fail(err, cap, "%s: no shape rule", op);
  }
}

bool nnc_infer_type_sized(nnc_node *n, char *err, size_t errcap, bool *too_large) {
  limit_failed = false;
  bool ok = nnc_infer_type(n, err, errcap);
  *too_large = !ok && limit_failed;
  return ok;
}

bool nnc_infer_type(nnc_node *n, char *err, size_t errcap) {
  if (err && errcap) err[0] = 0;
  if (!n) return fail(err, errcap, "missing node");
  if ((unsigned)n->op >= NNC_OP_COUNT) return fail(err, errcap, "unknown op %d", (int)n->op);
  const char *op = nnc_ops[n->op].name;
  if (!check_inputs(n, op, err, errcap) || !check_attr_forms(n, op, err, errcap)) return false;
  return apply_rule(n, op, err, errcap);
}
