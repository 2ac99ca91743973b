/* The VJP of every differentiable primitive: one small function per op, in a table indexed by
 * op (docs/autodiff.md derives each). A VJP emits ordinary nodes through the builder; it is
 * asked only for the inputs that need a gradient (want[i]) and all of them are f32.
 *
 * Conventions that match PyTorch's backward formulas (torch 1.13, derivatives.yaml):
 * - max(a, b) sends the gradient to a where a > b, else to b; min(a, b) to a where a < b.
 *   relu = max(x, 0) then gets PyTorch's threshold_backward: gradient where x > 0.
 * - reduce_max splits the gradient evenly among tied maxima, as torch.amax does.
 * - abs' gradient at 0 is 0 (sgn); pow masks the cases PyTorch masks. */
#include "autodiff.h"

#include <string.h>

typedef nnc_gb B;

static nnc_node *sub(B *b, nnc_node *x, nnc_node *y) { return nnc_gb_binary(b, NNC_OP_sub, x, y); }
static nnc_node *mul(B *b, nnc_node *x, nnc_node *y) { return nnc_gb_binary(b, NNC_OP_mul, x, y); }
static nnc_node *dvd(B *b, nnc_node *x, nnc_node *y) { return nnc_gb_binary(b, NNC_OP_div, x, y); }
static nnc_node *neg(B *b, nnc_node *x) { return nnc_gb_unary(b, NNC_OP_neg, x); }
static nnc_node *k(B *b, const nnc_node *like, double v) { return nnc_gb_const_like(b, like, v); }
/* Where cond holds x, else 0. */
static nnc_node *where(B *b, nnc_node *cond, nnc_node *x) { return nnc_gb_select(b, cond, x, k(b, x, 0)); }
static nnc_node *where_not(B *b, nnc_node *cond, nnc_node *x) { return nnc_gb_select(b, cond, k(b, x, 0), x); }

static nnc_node *in(const nnc_node *n, int i) { return n->inputs[i]; }

static void copy_attr(nnc_node *dst, const nnc_node *src, nnc_attr_key key) {
  const nnc_attr *a = nnc_node_attr(src, key);
  if (a) dst->attrs[dst->nattrs++] = *a;
}

/* --- elementwise unary ------------------------------------------------------------------- */

static bool vjp_neg(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = neg(b, dy);
  return true;
}

static bool vjp_exp(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = mul(b, dy, n);
  return true;
}

static bool vjp_log(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = dvd(b, dy, in(n, 0));
  return true;
}

/* grad / (2 * result) */
static bool vjp_sqrt(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = dvd(b, dy, mul(b, k(b, n, 2), n));
  return true;
}

/* -0.5 * grad * result^3 */
static bool vjp_rsqrt(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *cube = mul(b, mul(b, n, n), n);
  dx[0] = mul(b, mul(b, k(b, n, -0.5), dy), cube);
  return true;
}

/* grad * (1 - y^2) */
static bool vjp_tanh(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = mul(b, dy, sub(b, k(b, n, 1), mul(b, n, n)));
  return true;
}

/* grad * 2/sqrt(pi) * exp(-x^2) */
static bool vjp_erf(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *x = in(n, 0);
  nnc_node *e = nnc_gb_unary(b, NNC_OP_exp, neg(b, mul(b, x, x)));
  dx[0] = mul(b, dy, mul(b, k(b, n, 1.12837916709551257390) /* 2/sqrt(pi) */, e));
  return true;
}

/* grad * cos(x) */
static bool vjp_sin(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = mul(b, dy, nnc_gb_unary(b, NNC_OP_cos, in(n, 0)));
  return true;
}

/* grad * -sin(x) */
static bool vjp_cos(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = mul(b, dy, neg(b, nnc_gb_unary(b, NNC_OP_sin, in(n, 0))));
  return true;
}

/* grad * sgn(x), sgn(0) = 0 */
static bool vjp_abs(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *x = in(n, 0), *zero = k(b, x, 0);
  nnc_node *sign = nnc_gb_select(b, nnc_gb_cmp(b, NNC_CMP_GT, x, zero), k(b, x, 1),
                                 nnc_gb_select(b, nnc_gb_cmp(b, NNC_CMP_LT, x, zero), k(b, x, -1), zero));
  dx[0] = mul(b, dy, sign);
  return true;
}

/* Only f32 -> f32 reaches here (casts from or to integers carry no gradient). */
static bool vjp_cast(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = dy;
  return true;
}

/* --- elementwise binary ------------------------------------------------------------------ */

static bool vjp_add(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = dx[1] = dy;
  return true;
}

static bool vjp_sub(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = dy;
  if (want[1]) dx[1] = neg(b, dy);
  return true;
}

static bool vjp_mul(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  if (want[0]) dx[0] = mul(b, dy, in(n, 1));
  if (want[1]) dx[1] = mul(b, dy, in(n, 0));
  return true;
}

/* a: grad / b;  b: -grad * ((a / b) / b) */
static bool vjp_div(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *x = in(n, 0), *y = in(n, 1);
  if (want[0]) dx[0] = dvd(b, dy, y);
  if (want[1]) dx[1] = mul(b, neg(b, dy), dvd(b, dvd(b, x, y), y));
  return true;
}

/* Ties go to the second operand: relu = max(x, 0) has gradient where x > 0. */
static bool vjp_minmax(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_cmp first_wins = n->op == NNC_OP_max ? NNC_CMP_GT : NNC_CMP_LT;
  nnc_node *mask = nnc_gb_cmp(b, first_wins, in(n, 0), in(n, 1));
  if (want[0]) dx[0] = where(b, mask, dy);
  if (want[1]) dx[1] = where_not(b, mask, dy);
  return true;
}

/* a: grad * b * a^(b-1), 0 where b == 0;  b: grad * a^b * log(a), 0 where a == 0 and b >= 0. */
static bool vjp_pow(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *x = in(n, 0), *y = in(n, 1);
  if (want[0]) {
    nnc_node *d = mul(b, dy, mul(b, y, nnc_gb_binary(b, NNC_OP_pow, x, sub(b, y, k(b, y, 1)))));
    dx[0] = where_not(b, nnc_gb_cmp(b, NNC_CMP_EQ, y, k(b, y, 0)), d);
  }
  if (want[1]) {
    nnc_node *d = mul(b, dy, mul(b, n, nnc_gb_unary(b, NNC_OP_log, x)));
    nnc_node *x_zero = nnc_gb_cmp(b, NNC_CMP_EQ, x, k(b, x, 0));
    nnc_node *y_nonneg = nnc_gb_cmp(b, NNC_CMP_GE, y, k(b, y, 0));
    dx[1] = nnc_gb_select(b, x_zero, where_not(b, y_nonneg, d), d);
  }
  return true;
}

/* The condition gets no gradient (it is u8 and never asked for). */
static bool vjp_select(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  if (want[1]) dx[1] = where(b, in(n, 0), dy);
  if (want[2]) dx[2] = where_not(b, in(n, 0), dy);
  return true;
}

/* --- index maps -------------------------------------------------------------------------- */

/* Sum over the output axes the broadcast created or expanded, then restore size-1 dims. */
static bool vjp_broadcast(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  const nnc_type *a = &in(n, 0)->type, *out = &n->type;
  const nnc_attr *axes = nnc_node_attr(n, NNC_ATTR_axes);
  int src[NNC_MAX_RANK];
  for (int o = 0; o < out->rank; o++) src[o] = -1;
  for (int i = 0; i < a->rank; i++) src[axes->ints[i]] = i;
  int64_t red[NNC_MAX_RANK];
  int nred = 0;
  for (int o = 0; o < out->rank; o++) {
    int i = src[o];
    bool kept = i >= 0 && a->dims[i] == out->dims[o] && (i == a->batch_axis) == (o == out->batch_axis);
    if (!kept) red[nred++] = o;
  }
  dx[0] = nnc_gb_reshape(b, nnc_gb_reduce_sum(b, dy, nred, red), *a);
  return true;
}

static bool vjp_reshape(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = nnc_gb_reshape(b, dy, in(n, 0)->type);
  return true;
}

static bool vjp_permute(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  const nnc_attr *perm = nnc_node_attr(n, NNC_ATTR_perm);
  int64_t inv[NNC_MAX_RANK];
  for (int i = 0; i < perm->n; i++) inv[perm->ints[i]] = i;
  nnc_node *p = nnc_gb_begin(b, NNC_OP_permute, 1, &dy, NULL);
  if (p) nnc_node_set_ints(p, NNC_ATTR_perm, perm->n, inv);
  dx[0] = nnc_gb_finish(b, p);
  return true;
}

/* Spreads axis i of x (m elements) to m*s elements, element j landing at j*s, zeros between:
 * a size-1 axis inserted after i, padded to s, merged back. */
static nnc_node *interleave_zeros(B *b, nnc_node *x, int i, int64_t s) {
  if (!x) return NULL;
  const nnc_type *t = &x->type;
  nnc_type wide = *t, spread = *t;
  wide.rank = t->rank + 1;
  for (int j = t->rank; j > i + 1; j--) wide.dims[j] = t->dims[j - 1];
  wide.dims[i + 1] = 1;
  if (t->batch_axis > i) wide.batch_axis = t->batch_axis + 1;
  int64_t lo[NNC_MAX_RANK] = {0}, hi[NNC_MAX_RANK] = {0};
  hi[i + 1] = s - 1;
  nnc_node *p = nnc_gb_pad(b, nnc_gb_reshape(b, x, wide), lo, hi, 0);
  spread.dims[i] = t->dims[i] * s;
  return nnc_gb_reshape(b, p, spread);
}

/* Zeros everywhere but the sliced positions: interleave zeros along stepped axes, clip, pad. */
static bool vjp_slice(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  const nnc_type *a = &in(n, 0)->type;
  const int64_t *start = nnc_node_attr(n, NNC_ATTR_start)->ints, *step = nnc_node_attr(n, NNC_ATTR_step)->ints;
  nnc_node *cur = dy;
  for (int i = 0; i < a->rank; i++) {
    if (step[i] == 1) continue;
    if (a->rank == NNC_MAX_RANK) return false; /* no room for the helper axis */
    cur = interleave_zeros(b, cur, i, step[i]);
  }
  if (!cur) return true;
  int64_t zero[NNC_MAX_RANK] = {0}, one[NNC_MAX_RANK], len[NNC_MAX_RANK], hi[NNC_MAX_RANK];
  bool clip = false;
  for (int i = 0; i < a->rank; i++) {
    one[i] = 1;
    len[i] = cur->type.dims[i];
    if (len[i] > a->dims[i] - start[i]) len[i] = a->dims[i] - start[i], clip = true;
    hi[i] = a->dims[i] - start[i] - len[i];
  }
  if (clip) cur = nnc_gb_slice(b, cur, zero, len, one);
  dx[0] = nnc_gb_pad(b, cur, start, hi, 0);
  return true;
}

static bool vjp_pad(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  const nnc_type *a = &in(n, 0)->type;
  const int64_t *lo = nnc_node_attr(n, NNC_ATTR_lo)->ints;
  int64_t stop[NNC_MAX_RANK], one[NNC_MAX_RANK];
  for (int i = 0; i < a->rank; i++) stop[i] = lo[i] + a->dims[i], one[i] = 1;
  dx[0] = nnc_gb_slice(b, dy, lo, stop, one);
  return true;
}

static bool vjp_concat(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  int axis = (int)nnc_node_int(n, NNC_ATTR_axis, 0);
  int64_t start[NNC_MAX_RANK] = {0}, stop[NNC_MAX_RANK], one[NNC_MAX_RANK];
  for (int i = 0; i < n->type.rank; i++) stop[i] = n->type.dims[i], one[i] = 1;
  int64_t offset = 0;
  for (int j = 0; j < n->ninputs; j++) {
    int64_t len = in(n, j)->type.dims[axis];
    start[axis] = offset, stop[axis] = offset + len;
    if (want[j]) dx[j] = nnc_gb_slice(b, dy, start, stop, one);
    offset += len;
  }
  return true;
}

/* --- reductions -------------------------------------------------------------------------- */

/* dy (a's dims without the reduced axes) broadcast back to a's type. */
static nnc_node *unreduce(B *b, nnc_node *dy, const nnc_node *n) {
  const nnc_type *a = &in(n, 0)->type;
  const nnc_attr *axes = nnc_node_attr(n, NNC_ATTR_axes);
  bool reduced[NNC_MAX_RANK] = {false};
  for (int i = 0; i < axes->n; i++) reduced[axes->ints[i]] = true;
  int64_t kept[NNC_MAX_RANK];
  int nkept = 0;
  for (int i = 0; i < a->rank; i++)
    if (!reduced[i]) kept[nkept++] = i;
  if (dy && nnc_type_equal(&dy->type, a)) return dy;
  nnc_type t = *a;
  if (dy) t.dtype = dy->type.dtype;
  return nnc_gb_broadcast(b, dy, t, nkept, kept);
}

static bool vjp_reduce_sum(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = unreduce(b, dy, n);
  return true;
}

/* Even split among tied maxima (torch.amax): mask * (grad / count of maxima). */
static bool vjp_reduce_max(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *x = in(n, 0);
  const nnc_attr *axes = nnc_node_attr(n, NNC_ATTR_axes);
  nnc_node *mask = nnc_gb_cmp(b, NNC_CMP_EQ, x, unreduce(b, n, n));
  nnc_node *count = nnc_gb_reduce_sum(b, nnc_gb_cast(b, mask, NNC_F32), axes->n, axes->ints);
  dx[0] = where(b, mask, unreduce(b, dvd(b, dy, count), n));
  return true;
}

/* --- contractions ------------------------------------------------------------------------ */

static nnc_node *swap_last_two(B *b, nnc_node *x) {
  nnc_node *p = nnc_gb_begin(b, NNC_OP_permute, 1, &x, NULL);
  if (!p) return NULL;
  int r = x->type.rank;
  int64_t perm[NNC_MAX_RANK];
  for (int i = 0; i < r; i++) perm[i] = i;
  perm[r - 2] = r - 1, perm[r - 1] = r - 2;
  nnc_node_set_ints(p, NNC_ATTR_perm, r, perm);
  return nnc_gb_finish(b, p);
}

/* x [..., R, C] as a matrix [prod(...)*R, C] (the batch flag follows the merged axes). */
static nnc_node *as_matrix(B *b, nnc_node *x) {
  const nnc_type *t = &x->type;
  int r = t->rank;
  nnc_type m = {.dtype = t->dtype, .rank = 2, .batch_axis = -1, .dims = {1, t->dims[r - 1]}};
  for (int i = 0; i < r - 1; i++) {
    m.dims[0] *= t->dims[i];
    if (i == t->batch_axis) m.batch_axis = 0;
  }
  if (t->batch_axis == r - 1) m.batch_axis = 1;
  return nnc_gb_reshape(b, x, m);
}

/* y = op(a) @ op(b), op = transpose when the flag is set. */
static bool vjp_matmul(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *x = in(n, 0), *w = in(n, 1);
  bool ta = nnc_node_int(n, NNC_ATTR_trans_a, 0), tb = nnc_node_int(n, NNC_ATTR_trans_b, 0);
  bool shared = w->type.rank == 2 && x->type.rank > 2;
  if (want[0]) {
    /* d op(a) = dy @ op(b)^T */
    if (!ta) dx[0] = nnc_gb_matmul(b, dy, w, false, !tb);
    else if (!shared) dx[0] = nnc_gb_matmul(b, w, dy, tb, true);
    else dx[0] = swap_last_two(b, nnc_gb_matmul(b, dy, w, false, !tb));
  }
  if (want[1]) {
    /* d op(b) = op(a)^T @ dy, summed over the leading dims when b is shared */
    if (shared && !ta) {
      nnc_node *x2 = as_matrix(b, x), *dy2 = as_matrix(b, dy);
      dx[1] = tb ? nnc_gb_matmul(b, dy2, x2, true, false) : nnc_gb_matmul(b, x2, dy2, true, false);
    } else {
      nnc_node *d = tb ? nnc_gb_matmul(b, dy, x, true, ta) : nnc_gb_matmul(b, x, dy, !ta, false);
      int64_t lead[NNC_MAX_RANK];
      int nlead = shared ? x->type.rank - 2 : 0;
      for (int i = 0; i < nlead; i++) lead[i] = i;
      dx[1] = nnc_gb_reduce_sum(b, d, nlead, lead);
    }
  }
  return true;
}

static void copy_conv_attrs(nnc_node *dst, const nnc_node *src) {
  copy_attr(dst, src, NNC_ATTR_stride);
  copy_attr(dst, src, NNC_ATTR_padding);
  copy_attr(dst, src, NNC_ATTR_dilation);
  copy_attr(dst, src, NNC_ATTR_groups);
}

static bool vjp_conv2d(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *x = in(n, 0), *w = in(n, 1);
  if (want[0]) {
    nnc_node *g = nnc_gb_begin(b, NNC_OP_conv2d_input_grad, 2, (nnc_node *[]){dy, w}, NULL);
    if (g) {
      copy_conv_attrs(g, n);
      nnc_node_set_ints(g, NNC_ATTR_in_shape, 2, &x->type.dims[2]);
    }
    dx[0] = nnc_gb_finish(b, g);
  }
  if (want[1]) {
    nnc_node *g = nnc_gb_begin(b, NNC_OP_conv2d_weight_grad, 2, (nnc_node *[]){dy, x}, NULL);
    if (g) {
      copy_conv_attrs(g, n);
      nnc_node_set_ints(g, NNC_ATTR_kernel, 2, &w->type.dims[2]);
    }
    dx[1] = nnc_gb_finish(b, g);
  }
  return true;
}

/* --- opaque ------------------------------------------------------------------------------ */

static void copy_pool_attrs(nnc_node *dst, const nnc_node *src) {
  copy_attr(dst, src, NNC_ATTR_kernel);
  copy_attr(dst, src, NNC_ATTR_stride);
  copy_attr(dst, src, NNC_ATTR_padding);
  copy_attr(dst, src, NNC_ATTR_dilation);
}

/* The gradient goes to the first maximum of each window (PyTorch's CPU kernel picks it too). */
static bool vjp_maxpool2d(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *x = in(n, 0);
  nnc_node *arg = nnc_gb_begin(b, NNC_OP_maxpool2d_argmax, 1, &x, NULL);
  if (arg) copy_pool_attrs(arg, n);
  arg = nnc_gb_finish(b, arg);
  nnc_node *g = nnc_gb_begin(b, NNC_OP_maxpool2d_grad, 2, (nnc_node *[]){dy, arg}, NULL);
  if (g) {
    copy_pool_attrs(g, n);
    nnc_node_set_ints(g, NNC_ATTR_in_shape, 2, &x->type.dims[2]);
  }
  dx[0] = nnc_gb_finish(b, g);
  return true;
}

static bool vjp_gather(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *s = nnc_gb_begin(b, NNC_OP_scatter_add, 2, (nnc_node *[]){dy, in(n, 1)}, &in(n, 0)->type);
  if (s) copy_attr(s, n, NNC_ATTR_axis);
  dx[0] = nnc_gb_finish(b, s);
  return true;
}

static bool vjp_scatter_add(B *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  nnc_node *g = nnc_gb_begin(b, NNC_OP_gather, 2, (nnc_node *[]){dy, in(n, 1)}, NULL);
  if (g) copy_attr(g, n, NNC_ATTR_axis);
  dx[0] = nnc_gb_finish(b, g);
  return true;
}

/* --- the table --------------------------------------------------------------------------- */

static const nnc_vjp_fn builtin[NNC_OP_COUNT] = {
  [NNC_OP_neg] = vjp_neg, [NNC_OP_exp] = vjp_exp, [NNC_OP_log] = vjp_log, [NNC_OP_sqrt] = vjp_sqrt,
  [NNC_OP_rsqrt] = vjp_rsqrt, [NNC_OP_tanh] = vjp_tanh, [NNC_OP_erf] = vjp_erf, [NNC_OP_abs] = vjp_abs,
  [NNC_OP_sin] = vjp_sin, [NNC_OP_cos] = vjp_cos,
  [NNC_OP_cast] = vjp_cast,
  [NNC_OP_add] = vjp_add, [NNC_OP_sub] = vjp_sub, [NNC_OP_mul] = vjp_mul, [NNC_OP_div] = vjp_div,
  [NNC_OP_max] = vjp_minmax, [NNC_OP_min] = vjp_minmax, [NNC_OP_pow] = vjp_pow, [NNC_OP_select] = vjp_select,
  [NNC_OP_broadcast] = vjp_broadcast, [NNC_OP_reshape] = vjp_reshape, [NNC_OP_permute] = vjp_permute,
  [NNC_OP_slice] = vjp_slice, [NNC_OP_pad] = vjp_pad, [NNC_OP_concat] = vjp_concat,
  [NNC_OP_reduce_sum] = vjp_reduce_sum, [NNC_OP_reduce_max] = vjp_reduce_max,
  [NNC_OP_matmul] = vjp_matmul, [NNC_OP_conv2d] = vjp_conv2d,
  [NNC_OP_maxpool2d] = vjp_maxpool2d, [NNC_OP_gather] = vjp_gather, [NNC_OP_scatter_add] = vjp_scatter_add,
};

static nnc_vjp_fn overrides[NNC_OP_COUNT];

nnc_vjp_fn nnc_vjp_for(nnc_op op) {
  if ((unsigned)op >= NNC_OP_COUNT) return NULL;
  return overrides[op] ? overrides[op] : builtin[op];
}

nnc_vjp_fn nnc_vjp_override(nnc_op op, nnc_vjp_fn fn) {
  if ((unsigned)op >= NNC_OP_COUNT) return NULL;
  nnc_vjp_fn before = nnc_vjp_for(op);
  overrides[op] = fn;
  return before;
}
