/* The reference interpreter (DESIGN §6).
 *
 * How it works: the nodes a program's outputs need are run in graph order, each by one plain
 * loop over its output elements (or, for reductions and scatters, its input elements). Every
 * value is an array of doubles with its actual dims (the batch axis multiplied by n); after a
 * value's last use it is freed. After every arithmetic step the result is passed through
 * norm(), which rounds f32 results to float in F32 mode and wraps i32/u8 results, so one loop
 * per primitive serves every dtype and both precisions. The loops are written for reading
 * (each index computed from its formula in docs/ir.md), not for speed: this is the oracle
 * that backends and gradient checks are compared against.
 *
 * The interpreter trusts the verifier for the meaning of a graph but never for memory
 * safety: every fact a loop's indexing relies on is checked before the loop runs, and a
 * broken one is an error, not a crash. */
#include "interp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/philox.h"

typedef struct value {
  nnc_dtype dtype;
  int rank;
  int64_t dims[NNC_MAX_RANK];   /* actual sizes: the batch axis multiplied by n */
  int64_t count;
  double *data;                 /* NULL before the node runs and after its last use */
} value;

typedef struct node_slot {
  const nnc_node *node;
  int index;                    /* position in g->nodes */
} node_slot;

typedef struct interp {
  const nnc_graph *g;
  nnc_interp_precision prec;
  const nnc_interp_env *env;
  int64_t n;
  node_slot *slots;             /* the graph's nodes sorted by address, to find an input's position */
  value *vals;                  /* per node position */
  const nnc_node *cur;          /* the node running now, named in messages */
  char *err;
  size_t errcap;
} interp;

/* --- errors ------------------------------------------------------------------------------ */

static bool fail(interp *I, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(interp *I, const char *fmt, ...) {
  if (!I->err || I->errcap == 0) return false;
  size_t len = 0;
  const nnc_node *nd = I->cur;
  if (nd) {
    char where[256] = "";
    if (nd->loc.src) {
      nnc_loc_str(nd->loc, where, sizeof where - 2);
      strcat(where, ": ");
    }
    const char *op = (unsigned)nd->op < NNC_OP_COUNT ? nnc_ops[nd->op].name : "?";
    int w = snprintf(I->err, I->errcap, "%snode %d (%s%s%s): ", where, nd->id, op,
                     nd->name ? " " : "", nd->name ? nd->name : "");
    len = w < 0 ? 0 : (size_t)w;
    if (len >= I->errcap) return false;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(I->err + len, I->errcap - len, fmt, ap);
  va_end(ap);
  return false;
}

/* --- scalars: rounding, wrapping, conversions ----------------------------------------------- */

/* Two's-complement wrap of an integer-valued double to `bits` bits. */
static double wrap_int(double x, int bits, bool is_signed) {
  if (!isfinite(x) || fabs(x) >= 9.2e18) return 0;
  uint64_t mask = bits == 64 ? ~UINT64_C(0) : (UINT64_C(1) << bits) - 1;
  uint64_t u = (uint64_t)(int64_t)x & mask;
  if (is_signed && (u >> (bits - 1))) return (double)u - ldexp(1.0, bits);
  return (double)u;
}

/* The result of one arithmetic step, in dt: rounded to float (F32 mode) or wrapped. */
static double norm(const interp *I, nnc_dtype dt, double x) {
  switch (dt) {
  case NNC_F32: return I->prec == NNC_INTERP_F32 ? (double)(float)x : x;
  case NNC_I32: return wrap_int(x, 32, true);
  case NNC_U8: return wrap_int(x, 8, false);
  default: return x;
  }
}

/* cast: float -> integer truncates toward zero like C; outside the target's range it
 * saturates and NaN gives 0 (where C is undefined). Integer -> integer wraps like C. */
static double convert(const interp *I, nnc_dtype from, nnc_dtype to, double x) {
  if (to == NNC_F32) return norm(I, NNC_F32, x);
  if (from == NNC_F32) {
    if (isnan(x)) return 0;
    double t = trunc(x);
    double lo = to == NNC_I32 ? -2147483648.0 : 0, hi = to == NNC_I32 ? 2147483647.0 : 255;
    return t < lo ? lo : t > hi ? hi : t;
  }
  return norm(I, to, x);
}

static bool is_float(nnc_dtype dt) { return dt == NNC_F32; }

/* --- host tensors ------------------------------------------------------------------------- */

int64_t nnc_tensor_elements(const nnc_tensor *t) { return nnc_type_elements(&t->type, t->n); }

size_t nnc_tensor_elem_size(const nnc_tensor *t) {
  return t->type.dtype == NNC_F32 && t->wide ? sizeof(double) : nnc_dtype_size(t->type.dtype);
}

double nnc_tensor_get(const nnc_tensor *t, int64_t i) {
  switch (t->type.dtype) {
  case NNC_F32: return t->wide ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
  case NNC_I32: return ((const int32_t *)t->data)[i];
  case NNC_U8: return ((const uint8_t *)t->data)[i];
  default: return 0;
  }
}

static void tensor_set(nnc_tensor *t, int64_t i, double x) {
  switch (t->type.dtype) {
  case NNC_F32:
    if (t->wide)
      ((double *)t->data)[i] = x;
    else
      ((float *)t->data)[i] = (float)x;
    break;
  case NNC_I32: ((int32_t *)t->data)[i] = (int32_t)x; break;
  case NNC_U8: ((uint8_t *)t->data)[i] = (uint8_t)x; break;
  default: break;
  }
}

nnc_tensor nnc_tensor_alloc(nnc_type type, int64_t n, bool wide) {
  nnc_tensor t = {.type = type, .n = n, .wide = wide && type.dtype == NNC_F32};
  int64_t count = nnc_tensor_elements(&t);
  size_t bytes = count > 0 ? (size_t)count * nnc_tensor_elem_size(&t) : 1;
  t.data = nnc_xcalloc(1, bytes);
  return t;
}

void nnc_tensor_free(nnc_tensor *t) {
  if (!t) return;
  free(t->data);
  t->data = NULL;
}

/* --- values and indexing ------------------------------------------------------------------ */

static bool value_alloc(interp *I, value *v, const nnc_type *t) {
  if ((unsigned)t->dtype >= NNC_DTYPE_COUNT) return fail(I, "bad dtype %d", (int)t->dtype);
  if (t->rank < 0 || t->rank > NNC_MAX_RANK) return fail(I, "bad rank %d", t->rank);
  if (t->batch_axis < -1 || t->batch_axis >= t->rank) return fail(I, "bad batch axis %d", t->batch_axis);
  v->dtype = t->dtype;
  v->rank = t->rank;
  for (int i = 0; i < t->rank; i++) {
    if (t->dims[i] < 0) return fail(I, "negative dimension %lld", (long long)t->dims[i]);
    v->dims[i] = t->dims[i] * (i == t->batch_axis ? I->n : 1);
  }
  v->count = nnc_type_elements(t, I->n);
  if (v->count < 0 || v->count > NNC_MAX_ELEMENTS) return fail(I, "result too large to allocate");
  v->data = nnc_xcalloc(v->count > 0 ? (size_t)v->count : 1, sizeof(double));
  return true;
}

static void value_free(value *v) {
  free(v->data);
  v->data = NULL;
}

static void unravel(int64_t flat, const int64_t *dims, int rank, int64_t *idx) {
  for (int i = rank - 1; i >= 0; i--) {
    idx[i] = dims[i] ? flat % dims[i] : 0;
    flat = dims[i] ? flat / dims[i] : 0;
  }
}

static int64_t ravel(const int64_t *idx, const int64_t *dims, int rank) {
  int64_t flat = 0;
  for (int i = 0; i < rank; i++) flat = flat * dims[i] + idx[i];
  return flat;
}

static bool same_shape(const value *a, const value *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

static const char *shape_str(const value *v, char *buf, size_t cap) {
  size_t len = (size_t)snprintf(buf, cap, "%s[", nnc_dtype_name(v->dtype));
  for (int i = 0; i < v->rank && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)v->dims[i]);
  if (len < cap) snprintf(buf + len, cap - len, "]");
  return buf;
}

/* The integer list of attribute k with exactly `count` entries, or NULL. */
static const int64_t *ints_attr(const nnc_node *nd, nnc_attr_key k, int count) {
  const nnc_attr *a = nnc_node_attr(nd, k);
  return a && a->n == count ? a->ints : NULL;
}

/* --- sources and generators ------------------------------------------------------------- */

static const nnc_tensor *find_binding(const interp *I, const char *name) {
  for (int i = 0; i < I->env->nbindings; i++) {
    const nnc_interp_binding *b = &I->env->bindings[i];
    if (b->name && strcmp(b->name, name) == 0) return b->value;
  }
  return NULL;
}

static bool run_source(interp *I, const nnc_node *nd, value *out) {
  if (!nd->name) return fail(I, "source has no name");
  const nnc_tensor *t = find_binding(I, nd->name);
  char want[128], got[128];
  nnc_type_str(&nd->type, want, sizeof want);
  if (!t) return fail(I, "no binding for %s '%s' (%s)", nnc_ops[nd->op].name, nd->name, want);
  if (!nnc_type_equal(&t->type, &nd->type))
    return fail(I, "binding '%s' has type %s, the program expects %s", nd->name,
                nnc_type_str(&t->type, got, sizeof got), want);
  if (nd->type.batch_axis >= 0 && t->n != I->n)
    return fail(I, "binding '%s' holds a batch of %lld, the call's batch is %lld", nd->name,
                (long long)t->n, (long long)I->n);
  if (!t->data && out->count > 0) return fail(I, "binding '%s' has no data", nd->name);
  for (int64_t i = 0; i < out->count; i++) out->data[i] = norm(I, out->dtype, nnc_tensor_get(t, i));
  return true;
}

static bool run_const(interp *I, const nnc_node *nd, value *out) {
  const nnc_attr *a = nnc_node_attr(nd, NNC_ATTR_value);
  if (!a || !a->has_num) return fail(I, "const has no value");
  double v = convert(I, NNC_F32, out->dtype, a->num);
  for (int64_t i = 0; i < out->count; i++) out->data[i] = v;
  return true;
}

static bool run_iota(interp *I, const nnc_node *nd, value *out) {
  int64_t axis = nnc_node_int(nd, NNC_ATTR_axis, -1);
  if (axis < 0 || axis >= out->rank) return fail(I, "iota axis %lld outside rank %d", (long long)axis, out->rank);
  int64_t idx[NNC_MAX_RANK];
  for (int64_t i = 0; i < out->count; i++) {
    unravel(i, out->dims, out->rank, idx);
    out->data[i] = norm(I, out->dtype, (double)idx[axis]);
  }
  return true;
}

static bool run_rng_uniform(interp *I, const nnc_node *nd, value *out, const value *seed, const value *step) {
  if (out->dtype != NNC_F32) return fail(I, "rng_uniform must give f32");
  if (seed->count != 1 || step->count != 1) return fail(I, "seed and step must be scalars");
  if (seed->dtype != NNC_I32 || step->dtype != NNC_I32) return fail(I, "seed and step must be i32");
  const nnc_attr *ka = nnc_node_attr(nd, NNC_ATTR_key);
  if (!ka || ka->n != 1) return fail(I, "rng_uniform has no key");
  uint32_t s = (uint32_t)(int32_t)seed->data[0], st = (uint32_t)(int32_t)step->data[0];
  uint32_t key = (uint32_t)ka->ints[0];
  for (int64_t i = 0; i < out->count; i++) out->data[i] = nnc_rng_uniform_at(s, key, st, (uint64_t)i);
  return true;
}

/* --- elementwise ---------------------------------------------------------------------------- */

/* The formulas are written here, not taken from ops.def or lowering: the interpreter is the
 * oracle (DESIGN §6). False: an op without one. */
static bool unary_float(nnc_op op, double a, double *r) {
  switch (op) {
  case NNC_OP_neg: *r = -a; return true;
  case NNC_OP_exp: *r = exp(a); return true;
  case NNC_OP_log: *r = log(a); return true;
  case NNC_OP_sqrt: *r = sqrt(a); return true;
  case NNC_OP_rsqrt: *r = 1.0 / sqrt(a); return true;
  case NNC_OP_tanh: *r = tanh(a); return true;
  case NNC_OP_erf: *r = erf(a); return true;
  case NNC_OP_abs: *r = fabs(a); return true;
  case NNC_OP_sin: *r = sin(a); return true;
  case NNC_OP_cos: *r = cos(a); return true;
  default: return false;
  }
}

static bool run_unary(interp *I, const nnc_node *nd, value *out, const value *a) {
  if (!same_shape(out, a)) return fail(I, "operand shape differs from the result's");
  if (nd->op == NNC_OP_cast) {
    if (nnc_node_int(nd, NNC_ATTR_dtype, -1) != (int64_t)out->dtype)
      return fail(I, "cast's dtype attribute differs from its result type");
    for (int64_t i = 0; i < out->count; i++) out->data[i] = convert(I, a->dtype, out->dtype, a->data[i]);
    return true;
  }
  if (a->dtype != out->dtype) return fail(I, "operand dtype differs from the result's");
  bool int_ok = nd->op == NNC_OP_neg || nd->op == NNC_OP_abs;
  if (!is_float(a->dtype) && !int_ok) return fail(I, "%s needs an f32 operand", nnc_ops[nd->op].name);
  for (int64_t i = 0; i < out->count; i++) {
    double r;
    if (!unary_float(nd->op, a->data[i], &r)) return fail(I, "%s has no formula in the interpreter", nnc_ops[nd->op].name);
    out->data[i] = norm(I, out->dtype, r);
  }
  return true;
}

/* max and min propagate NaN, like torch.maximum. */
static double binary_float(nnc_op op, double a, double b) {
  switch (op) {
  case NNC_OP_add: return a + b;
  case NNC_OP_sub: return a - b;
  case NNC_OP_mul: return a * b;
  case NNC_OP_div: return a / b;
  case NNC_OP_max: return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
  case NNC_OP_min: return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
  case NNC_OP_pow: return pow(a, b);
  default: return NAN;
  }
}

/* Integer arithmetic in int64 (operands are i32 or u8, so nothing overflows here); norm()
 * then wraps. Division truncates toward zero; division by zero gives 0. */
static double binary_int(nnc_op op, int64_t a, int64_t b) {
  switch (op) {
  case NNC_OP_add: return (double)(a + b);
  case NNC_OP_sub: return (double)(a - b);
  case NNC_OP_mul: return (double)(a * b);
  case NNC_OP_div: return b == 0 ? 0 : (double)(a / b);
  case NNC_OP_max: return (double)(a > b ? a : b);
  case NNC_OP_min: return (double)(a < b ? a : b);
  default: return 0;
  }
}

static bool run_binary(interp *I, const nnc_node *nd, value *out, const value *a, const value *b) {
  if (!same_shape(a, b) || !same_shape(a, out)) return fail(I, "operand shapes differ");
  if (a->dtype != b->dtype) return fail(I, "operand dtypes differ");
  if (nd->op == NNC_OP_cmp) {
    int64_t how = nnc_node_int(nd, NNC_ATTR_cmp, -1);
    if (how < NNC_CMP_LT || how > NNC_CMP_NE) return fail(I, "bad comparison %lld", (long long)how);
    if (out->dtype != NNC_U8) return fail(I, "cmp must give u8");
    for (int64_t i = 0; i < out->count; i++) out->data[i] = nnc_cmp_holds(how, a->data[i], b->data[i]);
    return true;
  }
  if (out->dtype != a->dtype) return fail(I, "operand dtype differs from the result's");
  bool flt = is_float(a->dtype);
  if (!flt && nd->op == NNC_OP_pow) return fail(I, "pow needs f32 operands");
  for (int64_t i = 0; i < out->count; i++) {
    double r = flt ? binary_float(nd->op, a->data[i], b->data[i])
                   : binary_int(nd->op, (int64_t)a->data[i], (int64_t)b->data[i]);
    out->data[i] = norm(I, out->dtype, r);
  }
  return true;
}

static bool run_select(interp *I, value *out, const value *c, const value *a, const value *b) {
  if (!same_shape(c, a) || !same_shape(a, b) || !same_shape(a, out)) return fail(I, "operand shapes differ");
  if (c->dtype != NNC_U8 || a->dtype != b->dtype || a->dtype != out->dtype)
    return fail(I, "select needs a u8 condition and two operands of the result's dtype");
  for (int64_t i = 0; i < out->count; i++) out->data[i] = c->data[i] != 0 ? a->data[i] : b->data[i];
  return true;
}

/* --- index maps ------------------------------------------------------------------------------ */

static bool run_broadcast(interp *I, const nnc_node *nd, value *out, const value *a) {
  const int64_t *axes = ints_attr(nd, NNC_ATTR_axes, a->rank);
  if (!axes && a->rank > 0) return fail(I, "broadcast needs one output axis per input axis");
  if (a->dtype != out->dtype) return fail(I, "broadcast changes the dtype");
  for (int k = 0; k < a->rank; k++) {
    if (axes[k] < 0 || axes[k] >= out->rank || (k > 0 && axes[k] <= axes[k - 1]))
      return fail(I, "broadcast axes must increase within the result's rank");
    if (a->dims[k] != 1 && a->dims[k] != out->dims[axes[k]])
      return fail(I, "input dim %lld cannot broadcast to %lld", (long long)a->dims[k], (long long)out->dims[axes[k]]);
  }
  int64_t oi[NNC_MAX_RANK], ai[NNC_MAX_RANK];
  for (int64_t i = 0; i < out->count; i++) {
    unravel(i, out->dims, out->rank, oi);
    for (int k = 0; k < a->rank; k++) ai[k] = a->dims[k] == 1 ? 0 : oi[axes[k]];
    out->data[i] = a->data[ravel(ai, a->dims, a->rank)];
  }
  return true;
}

static bool run_reshape(interp *I, value *out, const value *a) {
  if (a->count != out->count || a->dtype != out->dtype)
    return fail(I, "reshape of %lld elements to %lld", (long long)a->count, (long long)out->count);
  memcpy(out->data, a->data, sizeof(double) * (size_t)out->count);
  return true;
}

static bool run_permute(interp *I, const nnc_node *nd, value *out, const value *a) {
  const int64_t *perm = ints_attr(nd, NNC_ATTR_perm, a->rank);
  if ((!perm && a->rank > 0) || out->rank != a->rank) return fail(I, "permute needs one entry per axis");
  bool seen[NNC_MAX_RANK] = {false};
  for (int i = 0; i < a->rank; i++) {
    if (perm[i] < 0 || perm[i] >= a->rank || seen[perm[i]]) return fail(I, "perm is not a permutation");
    seen[perm[i]] = true;
    if (out->dims[i] != a->dims[perm[i]]) return fail(I, "result dim %d is not input dim %lld", i, (long long)perm[i]);
  }
  int64_t oi[NNC_MAX_RANK], ai[NNC_MAX_RANK];
  for (int64_t i = 0; i < out->count; i++) {
    unravel(i, out->dims, out->rank, oi);
    for (int k = 0; k < a->rank; k++) ai[perm[k]] = oi[k];
    out->data[i] = a->data[ravel(ai, a->dims, a->rank)];
  }
  return true;
}

static bool run_slice(interp *I, const nnc_node *nd, value *out, const value *a) {
  const int64_t *start = ints_attr(nd, NNC_ATTR_start, a->rank), *step = ints_attr(nd, NNC_ATTR_step, a->rank);
  if ((!start || !step) && a->rank > 0) return fail(I, "slice needs start and step per axis");
  if (out->rank != a->rank) return fail(I, "slice changes the rank");
  int64_t st[NNC_MAX_RANK], first[NNC_MAX_RANK];
  for (int k = 0; k < a->rank; k++) {
    bool batch = k == nd->inputs[0]->type.batch_axis;  /* the batch axis is never sliced */
    first[k] = batch ? 0 : start[k];
    st[k] = batch ? 1 : step[k];
    if (st[k] < 1 || first[k] < 0 || (out->dims[k] > 0 && first[k] + (out->dims[k] - 1) * st[k] >= a->dims[k]))
      return fail(I, "slice of axis %d reads outside its %lld elements", k, (long long)a->dims[k]);
  }
  int64_t oi[NNC_MAX_RANK], ai[NNC_MAX_RANK];
  for (int64_t i = 0; i < out->count; i++) {
    unravel(i, out->dims, out->rank, oi);
    for (int k = 0; k < a->rank; k++) ai[k] = first[k] + oi[k] * st[k];
    out->data[i] = a->data[ravel(ai, a->dims, a->rank)];
  }
  return true;
}

static bool run_pad(interp *I, const nnc_node *nd, value *out, const value *a) {
  const int64_t *lo = ints_attr(nd, NNC_ATTR_lo, a->rank), *hi = ints_attr(nd, NNC_ATTR_hi, a->rank);
  if ((!lo || !hi) && a->rank > 0) return fail(I, "pad needs lo and hi per axis");
  if (out->rank != a->rank) return fail(I, "pad changes the rank");
  int64_t low[NNC_MAX_RANK];
  for (int k = 0; k < a->rank; k++) {
    bool batch = k == nd->inputs[0]->type.batch_axis;  /* the batch axis is never padded */
    low[k] = batch ? 0 : lo[k];
    int64_t high = batch ? 0 : hi[k];
    if (low[k] < 0 || high < 0 || a->dims[k] + low[k] + high != out->dims[k])
      return fail(I, "pad of axis %d does not give %lld", k, (long long)out->dims[k]);
  }
  double fill = norm(I, out->dtype, nnc_node_num(nd, NNC_ATTR_value, 0));
  int64_t oi[NNC_MAX_RANK], ai[NNC_MAX_RANK];
  for (int64_t i = 0; i < out->count; i++) {
    unravel(i, out->dims, out->rank, oi);
    bool inside = true;
    for (int k = 0; k < a->rank; k++) {
      ai[k] = oi[k] - low[k];
      inside = inside && ai[k] >= 0 && ai[k] < a->dims[k];
    }
    out->data[i] = inside ? a->data[ravel(ai, a->dims, a->rank)] : fill;
  }
  return true;
}

static bool run_concat(interp *I, const nnc_node *nd, value *out, const value *const *in, int nin) {
  int64_t axis = nnc_node_int(nd, NNC_ATTR_axis, -1);
  if (axis < 0 || axis >= out->rank || nin < 1) return fail(I, "concat axis %lld outside rank %d", (long long)axis, out->rank);
  int64_t total = 0;
  for (int j = 0; j < nin; j++) {
    if (in[j]->rank != out->rank || in[j]->dtype != out->dtype) return fail(I, "concat operand %d differs in rank or dtype", j);
    for (int k = 0; k < out->rank; k++)
      if (k != axis && in[j]->dims[k] != out->dims[k]) return fail(I, "concat operand %d differs in dim %d", j, k);
    total += in[j]->dims[axis];
  }
  if (total != out->dims[axis]) return fail(I, "concat operands sum to %lld along the axis, not %lld", (long long)total, (long long)out->dims[axis]);
  int64_t oi[NNC_MAX_RANK];
  for (int64_t i = 0; i < out->count; i++) {
    unravel(i, out->dims, out->rank, oi);
    int j = 0;
    while (oi[axis] >= in[j]->dims[axis]) oi[axis] -= in[j++]->dims[axis];
    out->data[i] = in[j]->data[ravel(oi, in[j]->dims, out->rank)];
  }
  return true;
}

/* --- reductions ----------------------------------------------------------------------------- */

static bool run_reduce(interp *I, const nnc_node *nd, value *out, const value *a) {
  const nnc_attr *ax = nnc_node_attr(nd, NNC_ATTR_axes);
  bool reduced[NNC_MAX_RANK] = {false};
  int nred = ax ? ax->n : 0;
  for (int j = 0; j < nred; j++) {
    if (ax->ints[j] < 0 || ax->ints[j] >= a->rank || (j > 0 && ax->ints[j] <= ax->ints[j - 1]))
      return fail(I, "reduce axes must be sorted, distinct and within rank %d", a->rank);
    reduced[ax->ints[j]] = true;
  }
  if (out->rank != a->rank - nred || out->dtype != a->dtype) return fail(I, "result rank or dtype is wrong");
  for (int k = 0, o = 0; k < a->rank; k++)
    if (!reduced[k] && a->dims[k] != out->dims[o++]) return fail(I, "result dims are not the kept input dims");
  bool is_max = nd->op == NNC_OP_reduce_max;
  for (int64_t i = 0; i < out->count; i++) out->data[i] = is_max ? -INFINITY : 0;
  /* Walking the input in order adds each output's terms in increasing reduced index. */
  int64_t ai[NNC_MAX_RANK], oi[NNC_MAX_RANK];
  for (int64_t i = 0; i < a->count; i++) {
    unravel(i, a->dims, a->rank, ai);
    int o = 0;
    for (int k = 0; k < a->rank; k++)
      if (!reduced[k]) oi[o++] = ai[k];
    double *acc = &out->data[ravel(oi, out->dims, out->rank)], x = a->data[i];
    if (is_max)
      *acc = isnan(*acc) || isnan(x) ? NAN : x > *acc ? x : *acc;
    else
      *acc = norm(I, out->dtype, *acc + x);
  }
  for (int64_t i = 0; i < out->count; i++) out->data[i] = norm(I, out->dtype, out->data[i]);
  return true;
}

/* --- contractions ---------------------------------------------------------------------------- */

/* matmul in F32 mode, the same arithmetic as the plain loop below, only faster: each
 * product and each partial sum is one float operation (a product of two floats is exact in
 * double and an f32 sum of two floats rounded via double is the float sum, so float
 * arithmetic here equals norm() after every double step), and k still runs in order for
 * every result. The operands are copied to float as A[i][k] and B[k][j] rows, and eight
 * results of a row are accumulated side by side so their sums do not wait on each other.
 * Products and sums are separate statements: a fused multiply-add would round once. */
enum { MATMUL_LANES = 8 };

static void matmul_f32_row(const float *Ar, const float *Bp, double *out_row, int64_t N, int64_t K) {
  for (int64_t j0 = 0; j0 < N; j0 += MATMUL_LANES) {
    int64_t w = N - j0 < MATMUL_LANES ? N - j0 : MATMUL_LANES;
    float acc[MATMUL_LANES] = {0};
    for (int64_t k = 0; k < K; k++) {
      const float x = Ar[k], *Bk = Bp + k * N + j0;
      for (int64_t jj = 0; jj < w; jj++) {
        float prod = x * Bk[jj];
        acc[jj] = acc[jj] + prod;
      }
    }
    for (int64_t jj = 0; jj < w; jj++) out_row[j0 + jj] = acc[jj];
  }
}

static void matmul_f32(const double *a, const double *b, double *out, int64_t batches, int64_t M, int64_t N,
                       int64_t K, bool ta, bool tb, bool b_shared) {
  float *Af = nnc_xmalloc(sizeof(float) * (size_t)(M * K + 1));
  float *Bf = nnc_xmalloc(sizeof(float) * (size_t)(K * N + 1));
  for (int64_t p = 0; p < batches; p++) {
    const double *A = a + p * M * K, *B = b + (b_shared ? 0 : p * K * N);
    if (p == 0 || !b_shared)
      for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) Bf[k * N + j] = (float)(tb ? B[j * K + k] : B[k * N + j]);
    for (int64_t i = 0; i < M; i++)
      for (int64_t k = 0; k < K; k++) Af[i * K + k] = (float)(ta ? A[k * M + i] : A[i * K + k]);
    for (int64_t i = 0; i < M; i++) matmul_f32_row(Af + i * K, Bf, out + (p * M + i) * N, N, K);
  }
  free(Af);
  free(Bf);
}

static bool run_matmul(interp *I, const nnc_node *nd, value *out, const value *a, const value *b) {
  bool ta = nnc_node_int(nd, NNC_ATTR_trans_a, 0) != 0, tb = nnc_node_int(nd, NNC_ATTR_trans_b, 0) != 0;
  int r = a->rank;
  if (r < 2 || out->rank != r || !(b->rank == 2 || b->rank == r)) return fail(I, "matmul ranks do not fit");
  if (a->dtype != b->dtype || a->dtype != out->dtype) return fail(I, "matmul dtypes differ");
  int64_t M = ta ? a->dims[r - 1] : a->dims[r - 2], K = ta ? a->dims[r - 2] : a->dims[r - 1];
  int rb = b->rank;
  int64_t Kb = tb ? b->dims[rb - 1] : b->dims[rb - 2], N = tb ? b->dims[rb - 2] : b->dims[rb - 1];
  char sa[96], sb[96];
  if (K != Kb || out->dims[r - 2] != M || out->dims[r - 1] != N)
    return fail(I, "matmul of %s and %s does not fit the result", shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
  int64_t batches = 1;
  for (int k = 0; k < r - 2; k++) {
    if (out->dims[k] != a->dims[k] || (rb == r && b->dims[k] != a->dims[k])) return fail(I, "matmul leading dims differ");
    batches *= a->dims[k];
  }
  if (out->dtype == NNC_F32 && I->prec == NNC_INTERP_F32) {
    matmul_f32(a->data, b->data, out->data, batches, M, N, K, ta, tb, rb == 2);
    return true;
  }
  for (int64_t p = 0; p < batches; p++) {
    const double *A = a->data + p * M * K, *B = b->data + (rb == 2 ? 0 : p * K * N);
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++) {
          double x = ta ? A[k * M + i] : A[i * K + k], y = tb ? B[j * K + k] : B[k * N + j];
          acc = norm(I, out->dtype, acc + norm(I, out->dtype, x * y));
        }
        out->data[(p * M + i) * N + j] = acc;
      }
  }
  return true;
}

/* The window of a conv or pool: kernel, stride, padding, dilation as [y, x]. */
typedef struct window {
  int64_t kh, kw, sy, sx, py, px, dy, dx;
} window;

/* A [y, x] attribute: absent -> the defaults, one entry -> both, two -> y and x. */
static bool pair_attr(const nnc_node *nd, nnc_attr_key k, int64_t dy, int64_t dx, int64_t *y, int64_t *x) {
  const nnc_attr *a = nnc_node_attr(nd, k);
  *y = dy, *x = dx;
  if (!a || a->n == 0) return true;
  if (a->n > 2) return false;
  *y = a->ints[0];
  *x = a->ints[a->n - 1];
  return true;
}

/* Reads stride, padding, dilation (kernel already set); the stride defaults to (dsy, dsx). */
static bool window_attrs(interp *I, const nnc_node *nd, window *w, int64_t dsy, int64_t dsx) {
  if (!pair_attr(nd, NNC_ATTR_stride, dsy, dsx, &w->sy, &w->sx) || !pair_attr(nd, NNC_ATTR_padding, 0, 0, &w->py, &w->px) ||
      !pair_attr(nd, NNC_ATTR_dilation, 1, 1, &w->dy, &w->dx))
    return fail(I, "stride, padding and dilation take one or two entries");
  const int64_t big = INT64_C(1) << 30;
  if (w->kh < 1 || w->kw < 1 || w->sy < 1 || w->sx < 1 || w->dy < 1 || w->dx < 1 || w->py < 0 || w->px < 0 ||
      w->kh > big || w->kw > big || w->sy > big || w->sx > big || w->dy > big || w->dx > big || w->py > big || w->px > big)
    return fail(I, "kernel, stride and dilation must be >= 1 and padding >= 0");
  return true;
}

/* Output size of a window sweep (PyTorch's floor mode), or -1 when the window does not fit. */
static int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  int64_t span = in + 2 * p - d * (k - 1) - 1;
  return span < 0 ? -1 : span / s + 1;
}

static bool window_fits(interp *I, const window *w, int64_t h, int64_t wd, int64_t ho, int64_t wo) {
  if (window_out(h, w->kh, w->sy, w->py, w->dy) != ho || window_out(wd, w->kw, w->sx, w->px, w->dx) != wo)
    return fail(I, "a %lldx%lld window over %lldx%lld does not give %lldx%lld", (long long)w->kh, (long long)w->kw,
                (long long)h, (long long)wd, (long long)ho, (long long)wo);
  return true;
}

static int64_t at4(const value *v, int64_t a, int64_t b, int64_t c, int64_t d) {
  return ((a * v->dims[1] + b) * v->dims[2] + c) * v->dims[3] + d;
}

/* The geometry of a conv2d-family node: x [N,C,H,W], w [O,C/g,KH,KW], y [N,O,Ho,Wo]. */
typedef struct conv_geom {
  int64_t N, C, H, W, O, Ho, Wo, groups, cg, og;  /* cg = C/groups, og = O/groups */
  window win;
} conv_geom;

static bool conv_geom_make(interp *I, const nnc_node *nd, const value *x, const value *w, const value *y, conv_geom *c) {
  if (x->rank != 4 || w->rank != 4 || y->rank != 4) return fail(I, "conv operands must have rank 4");
  if (x->dtype != NNC_F32 || w->dtype != NNC_F32 || y->dtype != NNC_F32) return fail(I, "conv operands must be f32");
  c->N = x->dims[0], c->C = x->dims[1], c->H = x->dims[2], c->W = x->dims[3];
  c->O = w->dims[0], c->Ho = y->dims[2], c->Wo = y->dims[3];
  c->groups = nnc_node_int(nd, NNC_ATTR_groups, 1);
  c->win.kh = w->dims[2], c->win.kw = w->dims[3];
  if (!window_attrs(I, nd, &c->win, 1, 1)) return false;
  if (c->groups < 1 || c->C % c->groups || c->O % c->groups || w->dims[1] != c->C / c->groups)
    return fail(I, "%lld groups do not fit %lld input and %lld output channels (weight takes %lld)", (long long)c->groups,
                (long long)c->C, (long long)c->O, (long long)w->dims[1]);
  c->cg = c->C / c->groups, c->og = c->O / c->groups;
  if (y->dims[0] != c->N || y->dims[1] != c->O) return fail(I, "conv batch or channel counts differ");
  return window_fits(I, &c->win, c->H, c->W, c->Ho, c->Wo);
}

/* y[n,o,oy,ox] = sum over c, ky, kx of x[n, g*cg+c, oy*sy-py+ky*dy, ox*sx-px+kx*dx] * w[o,c,ky,kx] */
static void conv2d_forward(interp *I, const conv_geom *c, const value *x, const value *w, value *y) {
  const window *k = &c->win;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t o = 0; o < c->O; o++)
      for (int64_t oy = 0; oy < c->Ho; oy++)
        for (int64_t ox = 0; ox < c->Wo; ox++) {
          int64_t g = o / c->og;
          double acc = 0;
          for (int64_t ci = 0; ci < c->cg; ci++)
            for (int64_t ky = 0; ky < k->kh; ky++)
              for (int64_t kx = 0; kx < k->kw; kx++) {
                int64_t iy = oy * k->sy - k->py + ky * k->dy, ix = ox * k->sx - k->px + kx * k->dx;
                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue; /* zero padding */
                double p = x->data[at4(x, n, g * c->cg + ci, iy, ix)] * w->data[at4(w, o, ci, ky, kx)];
                acc = norm(I, NNC_F32, acc + norm(I, NNC_F32, p));
              }
          y->data[at4(y, n, o, oy, ox)] = acc;
        }
}

/* The transposed convolution, written as a gather over dx: dx[n,c,iy,ix] sums dy[n,o,oy,ox] *
 * w[o,c,ky,kx] over the (o, ky, kx) whose window position oy*sy-py+ky*dy lands on iy. */
static void conv2d_input_grad(interp *I, const conv_geom *c, const value *dy, const value *w, value *dx) {
  const window *k = &c->win;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t ch = 0; ch < c->C; ch++)
      for (int64_t iy = 0; iy < c->H; iy++)
        for (int64_t ix = 0; ix < c->W; ix++) {
          int64_t g = ch / c->cg, ci = ch % c->cg;
          double acc = 0;
          for (int64_t o = g * c->og; o < (g + 1) * c->og; o++)
            for (int64_t ky = 0; ky < k->kh; ky++)
              for (int64_t kx = 0; kx < k->kw; kx++) {
                int64_t ty = iy + k->py - ky * k->dy, tx = ix + k->px - kx * k->dx;
                if (ty < 0 || tx < 0 || ty % k->sy || tx % k->sx) continue;
                int64_t oy = ty / k->sy, ox = tx / k->sx;
                if (oy >= c->Ho || ox >= c->Wo) continue;
                double p = dy->data[at4(dy, n, o, oy, ox)] * w->data[at4(w, o, ci, ky, kx)];
                acc = norm(I, NNC_F32, acc + norm(I, NNC_F32, p));
              }
          dx->data[at4(dx, n, ch, iy, ix)] = acc;
        }
}

/* dw[o,c,ky,kx] = sum over n, oy, ox of dy[n,o,oy,ox] * x[n, g*cg+c, oy*sy-py+ky*dy, ox*sx-px+kx*dx] */
static void conv2d_weight_grad(interp *I, const conv_geom *c, const value *dy, const value *x, value *dw) {
  const window *k = &c->win;
  for (int64_t o = 0; o < c->O; o++)
    for (int64_t ci = 0; ci < c->cg; ci++)
      for (int64_t ky = 0; ky < k->kh; ky++)
        for (int64_t kx = 0; kx < k->kw; kx++) {
          int64_t ch = (o / c->og) * c->cg + ci;
          double acc = 0;
          for (int64_t n = 0; n < c->N; n++)
            for (int64_t oy = 0; oy < c->Ho; oy++)
              for (int64_t ox = 0; ox < c->Wo; ox++) {
                int64_t iy = oy * k->sy - k->py + ky * k->dy, ix = ox * k->sx - k->px + kx * k->dx;
                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                double p = dy->data[at4(dy, n, o, oy, ox)] * x->data[at4(x, n, ch, iy, ix)];
                acc = norm(I, NNC_F32, acc + norm(I, NNC_F32, p));
              }
          dw->data[at4(dw, o, ci, ky, kx)] = acc;
        }
}

static bool run_conv(interp *I, const nnc_node *nd, value *out, const value *a, const value *b) {
  conv_geom c;
  switch (nd->op) {
  case NNC_OP_conv2d:
    if (!conv_geom_make(I, nd, a, b, out, &c)) return false;
    conv2d_forward(I, &c, a, b, out);
    return true;
  case NNC_OP_conv2d_input_grad: {
    const int64_t *hw = ints_attr(nd, NNC_ATTR_in_shape, 2);
    if (!hw || out->rank != 4 || hw[0] != out->dims[2] || hw[1] != out->dims[3])
      return fail(I, "in_shape must give the result's [H, W]");
    if (!conv_geom_make(I, nd, out, b, a, &c)) return false;
    conv2d_input_grad(I, &c, a, b, out);
    return true;
  }
  default: {
    const int64_t *kk = ints_attr(nd, NNC_ATTR_kernel, 2);
    if (!kk || out->rank != 4 || kk[0] != out->dims[2] || kk[1] != out->dims[3])
      return fail(I, "kernel must give the result's [KH, KW]");
    if (!conv_geom_make(I, nd, b, out, a, &c)) return false;
    conv2d_weight_grad(I, &c, a, b, out);
    return true;
  }
  }
}

/* --- opaque: gather, scatter_add, max-pooling ------------------------------------------------ */

/* The index of a gather/scatter as read from idx, checked against the axis size. */
static bool index_at(interp *I, const value *idx, int64_t pos, int64_t size, int64_t *out) {
  double v = idx->data[pos];
  if (!(v >= 0 && v < (double)size))
    return fail(I, "index %.0f at element %lld is outside [0, %lld)", v, (long long)pos, (long long)size);
  *out = (int64_t)v;
  return true;
}

/* For gather a=src, big=a; for scatter_add big=the result: big.shape[:axis] + idx.shape +
 * big.shape[axis+1:] must be small's shape. */
static bool take_shapes_fit(interp *I, const nnc_node *nd, const value *big, const value *idx, const value *small, int64_t *axis) {
  *axis = nnc_node_int(nd, NNC_ATTR_axis, -1);
  if (idx->dtype != NNC_I32) return fail(I, "indices must be i32");
  if (*axis < 0 || *axis >= big->rank || small->rank != big->rank - 1 + idx->rank || small->dtype != big->dtype)
    return fail(I, "axis, ranks or dtypes of the operands do not fit");
  int64_t expect[NNC_MAX_RANK];
  int r = 0;
  for (int k = 0; k < *axis; k++) expect[r++] = big->dims[k];
  for (int k = 0; k < idx->rank; k++) expect[r++] = idx->dims[k];
  for (int k = (int)*axis + 1; k < big->rank; k++) expect[r++] = big->dims[k];
  for (int k = 0; k < r; k++)
    if (expect[k] != small->dims[k]) return fail(I, "dim %d is %lld, expected %lld", k, (long long)small->dims[k], (long long)expect[k]);
  return true;
}

/* Splits an index of the small side into the big side's index, given the idx value. */
static void take_index(const int64_t *si, int64_t axis, int idx_rank, int big_rank, int64_t v, int64_t *bi) {
  for (int k = 0; k < axis; k++) bi[k] = si[k];
  bi[axis] = v;
  for (int k = (int)axis + 1; k < big_rank; k++) bi[k] = si[k - 1 + idx_rank];
}

static bool run_gather(interp *I, const nnc_node *nd, value *out, const value *a, const value *idx) {
  int64_t axis;
  if (!take_shapes_fit(I, nd, a, idx, out, &axis)) return false;
  int64_t oi[NNC_MAX_RANK], ai[NNC_MAX_RANK], v = 0;
  for (int64_t i = 0; i < out->count; i++) {
    unravel(i, out->dims, out->rank, oi);
    if (!index_at(I, idx, ravel(oi + axis, idx->dims, idx->rank), a->dims[axis], &v)) return false;
    take_index(oi, axis, idx->rank, a->rank, v, ai);
    out->data[i] = a->data[ravel(ai, a->dims, a->rank)];
  }
  return true;
}

static bool run_scatter_add(interp *I, const nnc_node *nd, value *out, const value *upd, const value *idx) {
  int64_t axis;
  if (!take_shapes_fit(I, nd, out, idx, upd, &axis)) return false;
  int64_t ui[NNC_MAX_RANK], oi[NNC_MAX_RANK], v = 0;
  for (int64_t i = 0; i < upd->count; i++) {
    unravel(i, upd->dims, upd->rank, ui);
    if (!index_at(I, idx, ravel(ui + axis, idx->dims, idx->rank), out->dims[axis], &v)) return false;
    take_index(ui, axis, idx->rank, out->rank, v, oi);
    double *acc = &out->data[ravel(oi, out->dims, out->rank)];
    *acc = norm(I, out->dtype, *acc + upd->data[i]);
  }
  return true;
}

/* Pool geometry: kernel from the attribute, stride defaulting to the kernel (PyTorch). */
static bool pool_window(interp *I, const nnc_node *nd, window *w) {
  const int64_t *k = ints_attr(nd, NNC_ATTR_kernel, 2);
  const int64_t *k1 = ints_attr(nd, NNC_ATTR_kernel, 1);
  if (!k && !k1) return fail(I, "maxpool needs a kernel");
  w->kh = k ? k[0] : k1[0], w->kw = k ? k[1] : k1[0];
  if (!window_attrs(I, nd, w, w->kh, w->kw)) return false;
  if (w->kh * w->kw > 256) return fail(I, "a %lldx%lld window does not fit a u8 argmax", (long long)w->kh, (long long)w->kw);
  return true;
}

/* The max of one window and where it is (ky*KW+kx): the first maximum in row-major window
 * order; a NaN counts as above everything (the first NaN wins), padding is -inf and never
 * chosen unless the whole window is padding (then -inf at position 0). */
static void window_max(const window *w, const value *x, int64_t n, int64_t c, int64_t oy, int64_t ox, double *best, int64_t *where) {
  *best = -INFINITY;
  *where = -1;
  int64_t H = x->dims[2], W = x->dims[3];
  for (int64_t ky = 0; ky < w->kh; ky++)
    for (int64_t kx = 0; kx < w->kw; kx++) {
      int64_t iy = oy * w->sy - w->py + ky * w->dy, ix = ox * w->sx - w->px + kx * w->dx;
      if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
      double v = x->data[at4(x, n, c, iy, ix)];
      if (isnan(*best)) continue;
      if (*where < 0 || v > *best || isnan(v)) *best = v, *where = ky * w->kw + kx;
    }
  if (*where < 0) *where = 0;
}

static bool run_maxpool(interp *I, const nnc_node *nd, value *out, const value *x) {
  window w;
  if (!pool_window(I, nd, &w)) return false;
  if (x->rank != 4 || out->rank != 4 || x->dtype != NNC_F32) return fail(I, "maxpool needs an f32 [N,C,H,W] input");
  if (out->dims[0] != x->dims[0] || out->dims[1] != x->dims[1]) return fail(I, "maxpool changes N or C");
  bool want_argmax = nd->op == NNC_OP_maxpool2d_argmax;
  if (out->dtype != (want_argmax ? NNC_U8 : NNC_F32)) return fail(I, "maxpool result has the wrong dtype");
  if (!window_fits(I, &w, x->dims[2], x->dims[3], out->dims[2], out->dims[3])) return false;
  for (int64_t n = 0; n < out->dims[0]; n++)
    for (int64_t c = 0; c < out->dims[1]; c++)
      for (int64_t oy = 0; oy < out->dims[2]; oy++)
        for (int64_t ox = 0; ox < out->dims[3]; ox++) {
          double best;
          int64_t where;
          window_max(&w, x, n, c, oy, ox, &best, &where);
          out->data[at4(out, n, c, oy, ox)] = want_argmax ? (double)where : best;
        }
  return true;
}

/* dx[n,c,iy,ix] += dy[n,c,oy,ox] at the window position argmax[n,c,oy,ox] names; a position
 * in the padding receives nothing. */
static bool run_maxpool_grad(interp *I, const nnc_node *nd, value *dx, const value *dy, const value *am) {
  window w;
  if (!pool_window(I, nd, &w)) return false;
  const int64_t *hw = ints_attr(nd, NNC_ATTR_in_shape, 2);
  if (dx->rank != 4 || dy->rank != 4 || !same_shape(dy, am) || am->dtype != NNC_U8 || dy->dtype != NNC_F32 ||
      dx->dtype != NNC_F32)
    return fail(I, "maxpool2d_grad needs f32 dy and u8 argmax of one shape [N,C,Ho,Wo]");
  if (!hw || hw[0] != dx->dims[2] || hw[1] != dx->dims[3]) return fail(I, "in_shape must give the result's [H, W]");
  if (dx->dims[0] != dy->dims[0] || dx->dims[1] != dy->dims[1]) return fail(I, "maxpool2d_grad changes N or C");
  if (!window_fits(I, &w, dx->dims[2], dx->dims[3], dy->dims[2], dy->dims[3])) return false;
  for (int64_t n = 0; n < dy->dims[0]; n++)
    for (int64_t c = 0; c < dy->dims[1]; c++)
      for (int64_t oy = 0; oy < dy->dims[2]; oy++)
        for (int64_t ox = 0; ox < dy->dims[3]; ox++) {
          int64_t pos = (int64_t)am->data[at4(am, n, c, oy, ox)];
          if (pos >= w.kh * w.kw) return fail(I, "argmax %lld outside a %lldx%lld window", (long long)pos, (long long)w.kh, (long long)w.kw);
          int64_t iy = oy * w.sy - w.py + (pos / w.kw) * w.dy, ix = ox * w.sx - w.px + (pos % w.kw) * w.dx;
          if (iy < 0 || iy >= dx->dims[2] || ix < 0 || ix >= dx->dims[3]) continue;
          double *acc = &dx->data[at4(dx, n, c, iy, ix)];
          *acc = norm(I, NNC_F32, *acc + dy->data[at4(dy, n, c, oy, ox)]);
        }
  return true;
}

/* --- the driver loop ------------------------------------------------------------------------- */

static bool run_node(interp *I, const nnc_node *nd, value *out, const value *const *in) {
  /* elementwise ops by their class (ops.def); each has its formula in unary_float/binary_float */
  nnc_op_kind kind = (unsigned)nd->op < NNC_OP_COUNT ? nnc_ops[nd->op].kind : NNC_KIND_OPAQUE;
  if (kind == NNC_KIND_UNARY) return run_unary(I, nd, out, in[0]);
  if (kind == NNC_KIND_BINARY) return run_binary(I, nd, out, in[0], in[1]);
  switch (nd->op) {
  case NNC_OP_input: case NNC_OP_param: case NNC_OP_state: case NNC_OP_scalar: return run_source(I, nd, out);
  case NNC_OP_nbatch:
    if (out->count != 1 || out->dtype != NNC_F32) return fail(I, "nbatch must be f32[]");
    out->data[0] = norm(I, NNC_F32, (double)I->n);
    return true;
  case NNC_OP_const: return run_const(I, nd, out);
  case NNC_OP_iota: return run_iota(I, nd, out);
  case NNC_OP_rng_uniform: return run_rng_uniform(I, nd, out, in[0], in[1]);
  case NNC_OP_select: return run_select(I, out, in[0], in[1], in[2]);
  case NNC_OP_broadcast: return run_broadcast(I, nd, out, in[0]);
  case NNC_OP_reshape: return run_reshape(I, out, in[0]);
  case NNC_OP_permute: return run_permute(I, nd, out, in[0]);
  case NNC_OP_slice: return run_slice(I, nd, out, in[0]);
  case NNC_OP_pad: return run_pad(I, nd, out, in[0]);
  case NNC_OP_concat: return run_concat(I, nd, out, in, nd->ninputs);
  case NNC_OP_reduce_sum: case NNC_OP_reduce_max: return run_reduce(I, nd, out, in[0]);
  case NNC_OP_matmul: return run_matmul(I, nd, out, in[0], in[1]);
  case NNC_OP_conv2d: case NNC_OP_conv2d_input_grad: case NNC_OP_conv2d_weight_grad: return run_conv(I, nd, out, in[0], in[1]);
  case NNC_OP_gather: return run_gather(I, nd, out, in[0], in[1]);
  case NNC_OP_scatter_add: return run_scatter_add(I, nd, out, in[0], in[1]);
  case NNC_OP_maxpool2d: case NNC_OP_maxpool2d_argmax: return run_maxpool(I, nd, out, in[0]);
  case NNC_OP_maxpool2d_grad: return run_maxpool_grad(I, nd, out, in[0], in[1]);
  default: return fail(I, "unknown op %d", (int)nd->op);
  }
}

static int slot_cmp(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const node_slot *)a)->node, y = (uintptr_t)((const node_slot *)b)->node;
  return x < y ? -1 : x > y;
}

/* The position of node nd in the graph, or -1. */
static int position_of(const interp *I, const nnc_node *nd) {
  node_slot key = {nd, 0};
  const node_slot *s = bsearch(&key, I->slots, (size_t)I->g->nnodes, sizeof key, slot_cmp);
  return s ? s->index : -1;
}

/* Marks the nodes the outputs need and, for each, the position of its last use (nnodes for
 * an output, which is never freed). Checks that every input is defined earlier. */
static bool plan_uses(interp *I, int *last_use) {
  const nnc_graph *g = I->g;
  for (int i = 0; i < g->nnodes; i++) last_use[i] = -1;
  for (int pass = 0; pass < 2; pass++) {
    const nnc_output *list = pass ? g->state_outputs : g->outputs;
    int count = pass ? g->nstate : g->noutputs;
    for (int j = 0; j < count; j++) {
      int p = list[j].value ? position_of(I, list[j].value) : -1;
      if (p < 0) return fail(I, "output '%s' is not a node of graph '%s'", list[j].name ? list[j].name : "?", g->name);
      last_use[p] = g->nnodes;
    }
  }
  for (int i = g->nnodes - 1; i >= 0; i--) {
    if (last_use[i] < 0) continue;
    const nnc_node *nd = g->nodes[i];
    I->cur = nd;
    if ((unsigned)nd->op >= NNC_OP_COUNT) return fail(I, "unknown op");
    int arity = nnc_ops[nd->op].arity;
    if (arity >= 0 ? nd->ninputs != arity : nd->ninputs < 1)
      return fail(I, "%d inputs, %s takes %d", nd->ninputs, nnc_ops[nd->op].name, arity);
    for (int k = 0; k < nd->ninputs; k++) {
      int p = nd->inputs[k] ? position_of(I, nd->inputs[k]) : -1;
      if (p < 0 || p >= i) return fail(I, "input %d is not defined earlier in the graph", k);
      if (last_use[p] < i) last_use[p] = i;
    }
  }
  I->cur = NULL;
  return true;
}

static bool run_graph(interp *I, const int *last_use) {
  const nnc_graph *g = I->g;
  for (int i = 0; i < g->nnodes; i++) {
    if (last_use[i] < 0) continue;
    const nnc_node *nd = g->nodes[i];
    I->cur = nd;
    const value **in = nnc_xmalloc(sizeof *in * (size_t)(nd->ninputs > 0 ? nd->ninputs : 1));
    for (int k = 0; k < nd->ninputs; k++) in[k] = &I->vals[position_of(I, nd->inputs[k])];
    bool ok = value_alloc(I, &I->vals[i], &nd->type) && run_node(I, nd, &I->vals[i], in);
    free(in);
    if (!ok) return false;
    for (int k = 0; k < nd->ninputs; k++) {
      int p = position_of(I, nd->inputs[k]);
      if (last_use[p] == i) value_free(&I->vals[p]);
    }
  }
  I->cur = NULL;
  return true;
}

static nnc_tensor to_tensor(const interp *I, const value *v, const nnc_type *t) {
  nnc_tensor out = nnc_tensor_alloc(*t, I->n, I->prec == NNC_INTERP_F64);
  for (int64_t i = 0; i < v->count; i++) tensor_set(&out, i, v->data[i]);
  return out;
}

bool nnc_interp_run(const nnc_module *m, const nnc_graph *g, nnc_interp_precision prec, const nnc_interp_env *env,
                    nnc_tensor *outputs, nnc_tensor *state_outputs, char *err, size_t errcap) {
  interp I = {.g = g, .prec = prec, .env = env, .err = err, .errcap = errcap};
  if (err && errcap) err[0] = 0;
  if (!m || !g || !env) return fail(&I, "no module, graph or environment");
  I.n = env->n;
  if (env->n < 1 || env->n > m->batch_max)
    return fail(&I, "batch %lld outside [1, %lld] (the module's batch_max)", (long long)env->n, (long long)m->batch_max);
  if (env->nbindings > 0 && !env->bindings) return fail(&I, "bindings missing");
  if ((g->noutputs > 0 && !outputs) || (g->nstate > 0 && !state_outputs)) return fail(&I, "no room for the results");
  size_t nn = g->nnodes > 0 ? (size_t)g->nnodes : 1;
  I.slots = nnc_xmalloc(nn * sizeof *I.slots);
  I.vals = nnc_xcalloc(nn, sizeof *I.vals);
  int *last_use = nnc_xmalloc(nn * sizeof *last_use);
  for (int i = 0; i < g->nnodes; i++) I.slots[i] = (node_slot){g->nodes[i], i};
  qsort(I.slots, (size_t)g->nnodes, sizeof *I.slots, slot_cmp);
  bool ok = plan_uses(&I, last_use) && run_graph(&I, last_use);
  if (ok) {
    for (int j = 0; j < g->noutputs; j++) {
      const nnc_node *v = g->outputs[j].value;
      outputs[j] = to_tensor(&I, &I.vals[position_of(&I, v)], &v->type);
    }
    for (int j = 0; j < g->nstate; j++) {
      const nnc_node *v = g->state_outputs[j].value;
      state_outputs[j] = to_tensor(&I, &I.vals[position_of(&I, v)], &v->type);
    }
  }
  for (int i = 0; i < g->nnodes; i++) value_free(&I.vals[i]);
  free(I.vals);
  free(I.slots);
  free(last_use);
  return ok;
}
