/* Ops callable in model expressions, and the graph-building helpers they share.
 *
 * Every op checks its operands at the source level first (dtypes, ranks, shapes, attribute
 * values), reporting against the call and pointing with notes at where each operand came
 * from; only then does it emit primitives. A shape-rule failure after these checks is an
 * internal error. Composites (softmax, gelu, normalize, the losses, ...) expand here into
 * primitives of ir/ops.def, each node located at the call. */
#include "elab.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SQRT_2_OVER_PI 0.79788456080286535588
#define SQRT_HALF 0.70710678118654752440

/* --- graph building ---------------------------------------------------------------------------- */

nnc_node *el_new(el_ctx *c, nnc_op op, int n, nnc_node *const *in, nnc_loc loc) {
  for (int i = 0; i < n; i++)
    if (!in[i]) return NULL;
  return nnc_node_new(c->g, op, n, in, loc);
}

nnc_node *el_done(el_ctx *c, nnc_node *n) {
  if (!n) return NULL;
  char err[512];
  bool too_large;
  if (nnc_infer_type_sized(n, err, sizeof err, &too_large)) return n;
  if (too_large) nnc_error(c->d, n->loc, "%s", err); /* sizes the user chose */
  else el_internal(c, n->loc, err);
  return NULL;
}

static nnc_node *typed(el_ctx *c, nnc_op op, int n, nnc_node *const *in, const nnc_type *t, nnc_loc loc) {
  nnc_node *x = el_new(c, op, n, in, loc);
  if (x) x->type = *t;
  return x;
}

nnc_node *el_const(el_ctx *c, const nnc_type *t, double v, nnc_loc loc) {
  nnc_node *n = typed(c, NNC_OP_const, 0, NULL, t, loc);
  nnc_node_set_num(n, NNC_ATTR_value, v);
  return el_done(c, n);
}

nnc_node *el_unary(el_ctx *c, nnc_op op, nnc_node *x, nnc_loc loc) { return el_done(c, el_new(c, op, 1, &x, loc)); }

nnc_node *el_binary(el_ctx *c, nnc_op op, nnc_node *a, nnc_node *b, nnc_loc loc) {
  return el_done(c, el_new(c, op, 2, (nnc_node *[]){a, b}, loc));
}

nnc_node *el_scalar_op(el_ctx *c, nnc_op op, nnc_node *x, double v, nnc_loc loc) {
  if (!x) return NULL;
  return el_binary(c, op, x, el_const(c, &x->type, v, loc), loc);
}

nnc_node *el_bcast(el_ctx *c, nnc_node *x, const nnc_type *to, const int *axes, nnc_loc loc) {
  if (!x) return NULL;
  nnc_type t = *to;
  t.dtype = x->type.dtype;
  if (nnc_type_equal(&x->type, &t)) return x;
  nnc_node *n = typed(c, NNC_OP_broadcast, 1, &x, &t, loc);
  int64_t ax[NNC_MAX_RANK];
  for (int i = 0; i < x->type.rank; i++) ax[i] = axes[i];
  nnc_node_set_ints(n, NNC_ATTR_axes, x->type.rank, ax);
  return el_done(c, n);
}

nnc_node *el_bcast_right(el_ctx *c, nnc_node *x, const nnc_type *to, nnc_loc loc) {
  if (!x) return NULL;
  int axes[NNC_MAX_RANK];
  for (int i = 0; i < x->type.rank; i++) axes[i] = i + to->rank - x->type.rank;
  return el_bcast(c, x, to, axes, loc);
}

/* Broadcast of a reduced value back over the axes it lost. */
static nnc_node *bcast_back(el_ctx *c, nnc_node *r, const nnc_type *to, const int *axes, int n, nnc_loc loc) {
  int keep[NNC_MAX_RANK] = {0}, k = 0;
  for (int i = 0; i < to->rank; i++) {
    bool reduced = false;
    for (int j = 0; j < n; j++) reduced |= axes[j] == i;
    if (!reduced) keep[k++] = i;
  }
  return el_bcast(c, r, to, keep, loc);
}

nnc_node *el_reduce(el_ctx *c, nnc_op op, nnc_node *x, const int *axes, int n, nnc_loc loc) {
  nnc_node *r = el_new(c, op, 1, &x, loc);
  if (!r) return NULL;
  int64_t ax[NNC_MAX_RANK];
  for (int i = 0; i < n; i++) ax[i] = axes[i];
  nnc_node_set_ints(r, NNC_ATTR_axes, n, ax);
  return el_done(c, r);
}

nnc_node *el_reshape(el_ctx *c, nnc_node *x, const nnc_type *t, nnc_loc loc) {
  if (x && nnc_type_equal(&x->type, t)) return x;
  return el_done(c, typed(c, NNC_OP_reshape, 1, &x, t, loc));
}

nnc_node *el_cast(el_ctx *c, nnc_node *x, nnc_dtype dt, nnc_loc loc) {
  if (x && x->type.dtype == dt) return x;
  nnc_node *n = el_new(c, NNC_OP_cast, 1, &x, loc);
  if (n) nnc_node_set_int(n, NNC_ATTR_dtype, dt);
  return el_done(c, n);
}

nnc_node *el_cmp(el_ctx *c, nnc_cmp cmp, nnc_node *a, nnc_node *b, nnc_loc loc) {
  nnc_node *n = el_new(c, NNC_OP_cmp, 2, (nnc_node *[]){a, b}, loc);
  if (n) nnc_node_set_int(n, NNC_ATTR_cmp, cmp);
  return el_done(c, n);
}

nnc_node *el_matmul(el_ctx *c, nnc_node *a, nnc_node *b, bool ta, bool tb, nnc_loc loc) {
  nnc_node *n = el_new(c, NNC_OP_matmul, 2, (nnc_node *[]){a, b}, loc);
  if (!n) return NULL;
  if (ta) nnc_node_set_int(n, NNC_ATTR_trans_a, 1);
  if (tb) nnc_node_set_int(n, NNC_ATTR_trans_b, 1);
  return el_done(c, n);
}

nnc_node *el_nbatch(el_ctx *c, nnc_loc loc) {
  if (!c->nbatch) c->nbatch = el_done(c, el_new(c, NNC_OP_nbatch, 0, NULL, loc));
  return c->nbatch;
}

nnc_node *el_scalar_source(el_ctx *c, const char *name, nnc_loc loc) {
  nnc_node **slot = strcmp(name, "seed") == 0 ? &c->seed : &c->step;
  if (!*slot) {
    nnc_type t = nnc_type_scalar(NNC_I32);
    nnc_node *n = typed(c, NNC_OP_scalar, 0, NULL, &t, loc);
    n->name = nnc_arena_strdup(c->arena, name);
    *slot = el_done(c, n);
  }
  return *slot;
}

/* The number of elements over the given axes (all when axes is NULL) as an f32[]: a constant,
 * or the actual batch n times one when the batch axis is among them. */
nnc_node *el_count(el_ctx *c, const nnc_type *t, const int *axes, int n, nnc_loc loc) {
  double k = 1;
  bool batch = false;
  for (int i = 0; i < t->rank; i++) {
    bool in = !axes;
    for (int j = 0; axes && j < n; j++) in |= axes[j] == i;
    if (!in) continue;
    k *= (double)t->dims[i];
    batch |= i == t->batch_axis;
  }
  nnc_type s = nnc_type_scalar(NNC_F32);
  if (!batch) return el_const(c, &s, k, loc);
  nnc_node *nb = el_nbatch(c, loc);
  return k == 1 ? nb : el_scalar_op(c, NNC_OP_mul, nb, k, loc);
}

/* The mean over axes (all when axes is NULL): a sum divided by the element count, so a
 * partial last batch divides by its actual size. */
nnc_node *el_mean(el_ctx *c, nnc_node *x, const int *axes, int n, nnc_loc loc) {
  if (!x) return NULL;
  int all[NNC_MAX_RANK];
  if (!axes) {
    for (int i = 0; i < x->type.rank; i++) all[i] = i;
    axes = all;
    n = x->type.rank;
  }
  nnc_node *s = el_reduce(c, NNC_OP_reduce_sum, x, axes, n, loc);
  nnc_node *cnt = el_count(c, &x->type, axes, n, loc);
  if (!s || !cnt) return NULL;
  return el_binary(c, NNC_OP_div, s, el_bcast(c, cnt, &s->type, NULL, loc), loc);
}

/* softmax / log_softmax along axis, stabilized by subtracting the maximum. */
nnc_node *el_softmax(el_ctx *c, nnc_node *x, int axis, bool log, nnc_loc loc) {
  if (!x) return NULL;
  nnc_node *m = el_reduce(c, NNC_OP_reduce_max, x, &axis, 1, loc);
  nnc_node *z = el_binary(c, NNC_OP_sub, x, bcast_back(c, m, &x->type, &axis, 1, loc), loc);
  nnc_node *e = el_unary(c, NNC_OP_exp, z, loc);
  nnc_node *s = el_reduce(c, NNC_OP_reduce_sum, e, &axis, 1, loc);
  if (log) return el_binary(c, NNC_OP_sub, z, bcast_back(c, el_unary(c, NNC_OP_log, s, loc), &x->type, &axis, 1, loc), loc);
  return el_binary(c, NNC_OP_div, e, bcast_back(c, s, &x->type, &axis, 1, loc), loc);
}

/* Inverted dropout (PyTorch's): in training keep each element with probability 1-p and scale
 * the kept ones by 1/(1-p); the mask is a counter-based draw keyed by the dropout site. */
nnc_node *el_dropout(el_ctx *c, nnc_node *x, double p, nnc_loc loc) {
  if (!x || c->mode != NNC_MODE_TRAIN || p == 0) return x;
  if (p >= 1) return el_const(c, &x->type, 0, loc);
  nnc_node *seed = el_scalar_source(c, "seed", loc), *step = el_scalar_source(c, "step", loc);
  nnc_node *u = typed(c, NNC_OP_rng_uniform, 2, (nnc_node *[]){seed, step}, &x->type, loc);
  if (u) nnc_node_set_int(u, NNC_ATTR_key, c->dropout_sites++);
  u = el_done(c, u);
  nnc_node *keep = el_cmp(c, NNC_CMP_GE, u, el_const(c, &x->type, p, loc), loc);
  nnc_node *scaled = el_scalar_op(c, NNC_OP_mul, x, 1.0 / (1.0 - p), loc);
  nnc_node *sel = el_new(c, NNC_OP_select, 3, (nnc_node *[]){keep, scaled, el_const(c, &x->type, 0, loc)}, loc);
  return el_done(c, sel);
}

/* --- argument binding -------------------------------------------------------------------------- */

static int sig_count(const el_sig *sig) {
  int n = 0;
  while (n < EL_MAX_ARGS && sig->params[n]) n++;
  return n;
}

static const char *plural(int n, const char *word) { return n == 1 ? word : "arguments"; }

bool el_bind_args(el_ctx *c, const el_sig *sig, const nnc_ast *call, int first, const nnc_ast **slots) {
  int np = sig_count(sig);
  for (int i = 0; i < EL_MAX_ARGS; i++) slots[i] = NULL;
  int pos = first;
  bool ok = true, seen_kw = false;
  for (int i = 0; i < call->list.n; i++) {
    const nnc_ast *a = call->list.items[i];
    if (a->kind != AST_KV) {
      if (seen_kw) return false; /* the parser reports it */
      if (pos >= np) {
        int lo = sig->nreq - first, hi = np - first;
        int given = first;
        for (int j = 0; j < call->list.n; j++) given += call->list.items[j]->kind != AST_KV;
        given -= first;
        if (lo == hi)
          nnc_error(c->d, a->loc, "'%s' takes %d %s, got %d", sig->name, hi, plural(hi, "argument"), given);
        else
          nnc_error(c->d, a->loc, "'%s' takes %d to %d arguments, got %d", sig->name, lo < 0 ? 0 : lo, hi, given);
        return false;
      }
      slots[pos++] = a;
      continue;
    }
    seen_kw = true;
    int k = -1;
    for (int j = 0; j < np; j++)
      if (strcmp(sig->params[j], a->name) == 0) k = j;
    if (k < 0) {
      const char *names[EL_MAX_ARGS + 1] = {0};
      for (int j = 0; j < np; j++) names[j] = sig->params[j];
      const char *near = el_suggest(NULL, a->name, names);
      if (near)
        nnc_error(c->d, a->loc, "unknown keyword '%s' for '%s'; did you mean '%s'?", a->name, sig->name, near);
      else
        nnc_error(c->d, a->loc, "unknown keyword '%s' for '%s'", a->name, sig->name);
      ok = false;
      continue;
    }
    if (slots[k]) {
      nnc_error(c->d, a->loc, "argument '%s' of '%s' given twice", a->name, sig->name);
      ok = false;
      continue;
    }
    slots[k] = a->a;
  }
  for (int j = 0; ok && j < sig->nreq; j++)
    if (!slots[j]) {
      nnc_error(c->d, call->loc, "'%s' needs argument '%s'", sig->name, sig->params[j]);
      ok = false;
    }
  return ok;
}

/* What a value that is not an integer is, for "must be an integer, got ...": a whole number
 * written as a real one (1e3, 64.0) says how to write it. */
const char *el_non_int_desc(el_ctx *c, const el_val *v) {
  if (v->kind != V_NUM) return el_val_desc(c, v);
  if (v->num == floor(v->num) && fabs(v->num) < 9e15)
    return nnc_arena_printf(c->arena, "the real number %.0f (written with '.' or an exponent: write %.0f)", v->num,
                            v->num);
  return nnc_arena_printf(c->arena, "the fraction %g", v->num);
}

bool el_get_int(el_ctx *c, el_scope *s, const nnc_ast *e, const char *what, int64_t lo, int64_t hi, int64_t *out) {
  el_val v = el_eval(c, s, e);
  if (v.kind == V_POISON) return false;
  if (v.kind != V_NUM || !v.is_int) {
    nnc_error(c->d, e->loc, "'%s' must be an integer, got %s", what, el_non_int_desc(c, &v));
    return false;
  }
  if (v.num < (double)lo) {
    nnc_error(c->d, e->loc, "'%s' must be at least %lld, got %.0f", what, (long long)lo, v.num);
    return false;
  }
  if (v.num > (double)hi) {
    nnc_error(c->d, e->loc, "'%s' must be at most %lld, got %.0f", what, (long long)hi, v.num);
    return false;
  }
  *out = (int64_t)v.num;
  return true;
}

bool el_get_num(el_ctx *c, el_scope *s, const nnc_ast *e, const char *what, double lo, double hi, double *out) {
  el_val v = el_eval(c, s, e);
  if (v.kind == V_POISON) return false;
  if (v.kind != V_NUM) {
    nnc_error(c->d, e->loc, "'%s' must be a number, got %s", what, el_val_desc(c, &v));
    return false;
  }
  if (v.num < lo || v.num > hi) {
    nnc_error(c->d, e->loc, "'%s' must be between %g and %g, got %g", what, lo, hi, v.num);
    return false;
  }
  *out = v.num;
  return true;
}

bool el_get_bool(el_ctx *c, el_scope *s, const nnc_ast *e, const char *what, bool *out) {
  el_val v = el_eval(c, s, e);
  if (v.kind == V_POISON) return false;
  if (v.kind != V_BOOL) {
    nnc_error(c->d, e->loc, "'%s' must be true or false, got %s", what, el_val_desc(c, &v));
    return false;
  }
  *out = v.num != 0;
  return true;
}

/* An int or a pair [a, b] (kernel_size=3, stride=[2, 1]). */
bool el_get_pair(el_ctx *c, el_scope *s, const nnc_ast *e, const char *what, int64_t lo, int64_t *out) {
  el_val v = el_eval(c, s, e);
  if (v.kind == V_POISON) return false;
  el_val one = v, two = v;
  if (v.kind == V_LIST && v.nitems == 2) one = v.items[0], two = v.items[1];
  if (one.kind != V_NUM || !one.is_int || two.kind != V_NUM || !two.is_int) {
    nnc_error(c->d, e->loc, "'%s' must be an integer or a pair [a, b], got %s", what, el_val_desc(c, &v));
    return false;
  }
  if (one.num < (double)lo || two.num < (double)lo || one.num > 1e9 || two.num > 1e9) {
    double bad = one.num < (double)lo || one.num > 1e9 ? one.num : two.num;
    if (bad < (double)lo)
      nnc_error(c->d, e->loc, "'%s' must be at least %lld, got %.0f", what, (long long)lo, bad);
    else
      nnc_error(c->d, e->loc, "'%s' is too large: %.0f", what, bad);
    return false;
  }
  out[0] = (int64_t)one.num;
  out[1] = (int64_t)two.num;
  return true;
}

bool el_get_tensor(el_ctx *c, el_scope *s, const nnc_ast *e, el_val *out) {
  *out = el_eval(c, s, e);
  if (out->kind == V_POISON) return false;
  if (out->kind != V_TENSOR) {
    nnc_error(c->d, e->loc, "expected a tensor, got %s", el_val_desc(c, out));
    *out = el_poison();
    return false;
  }
  return true;
}

static void note_from(el_ctx *c, const el_val *v) {
  if (v->kind == V_TENSOR && v->loc.src) nnc_note(c->d, v->loc, "%s comes from here", el_type_str(c, &v->node->type));
}

bool el_need_float(el_ctx *c, const el_val *v, const char *what, nnc_loc loc) {
  if (v->node->type.dtype == NNC_F32) return true;
  const char *t = el_val_desc(c, v);
  if (v->node->type.dtype == NNC_U8)
    nnc_error(c->d, loc, "%s needs f32, got %s: use normalize(x, ...) or cast(x, f32)", what, t);
  else
    nnc_error(c->d, loc, "%s needs f32, got %s: use cast(x, f32)", what, t);
  note_from(c, v);
  return false;
}

/* --- broadcasting arithmetic ------------------------------------------------------------------- */

/* The numpy broadcast of two types (aligned on the right); false when a pair of dims differs
 * and neither is a plain 1, or the result would have two batch axes. */
bool el_broadcast_type(const nnc_type *a, const nnc_type *b, nnc_type *out) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  *out = (nnc_type){.dtype = a->dtype, .rank = r, .batch_axis = -1};
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    bool ha = ia >= 0, hb = ib >= 0;
    int64_t da = ha ? a->dims[ia] : 1, db = hb ? b->dims[ib] : 1;
    bool ba = ha && ia == a->batch_axis, bb = hb && ib == b->batch_axis;
    int64_t d;
    bool bat;
    if (da == db && ba == bb) d = da, bat = ba;
    else if (da == 1 && !ba) d = db, bat = bb;
    else if (db == 1 && !bb) d = da, bat = ba;
    else return false;
    out->dims[i] = d;
    if (bat) {
      if (out->batch_axis >= 0) return false;
      out->batch_axis = i;
    }
  }
  return true;
}

static nnc_node *num_const(el_ctx *c, const el_val *num, const nnc_type *like, const char *opname, nnc_loc loc) {
  double v = num->num;
  if (nnc_dtype_holds(like->dtype, v)) return el_const(c, like, v, loc);
  if (isfinite(v) && v != floor(v))
    nnc_error(c->d, loc, "'%s' of %s and the fraction %g: cast the tensor to f32 first", opname, el_type_str(c, like), v);
  else
    nnc_error(c->d, loc, "'%s' of %s and %g: the number is outside the range of %s", opname, el_type_str(c, like), v,
              nnc_dtype_name(like->dtype));
  return NULL;
}

bool el_broadcast_pair(el_ctx *c, const el_val *a, const el_val *b, const char *opname, nnc_loc loc, nnc_node **x,
                       nnc_node **y) {
  *x = *y = NULL;
  if (a->kind == V_POISON || b->kind == V_POISON) return false;
  const el_val *t = a->kind == V_TENSOR ? a : b;
  if (a->kind != V_TENSOR || b->kind != V_TENSOR) {
    const el_val *n = a->kind == V_TENSOR ? b : a;
    nnc_node *k = num_const(c, n, &t->node->type, opname, loc);
    if (!k) return false;
    *x = a->kind == V_TENSOR ? a->node : k;
    *y = b->kind == V_TENSOR ? b->node : k;
    return true;
  }
  const nnc_type *ta = &a->node->type, *tb = &b->node->type;
  if (ta->dtype != tb->dtype) {
    nnc_error(c->d, loc, "'%s' of %s and %s: element types differ; use cast(x, %s)", opname, el_type_str(c, ta),
              el_type_str(c, tb), ta->dtype == NNC_F32 || tb->dtype == NNC_F32 ? "f32" : nnc_dtype_name(ta->dtype));
    note_from(c, a);
    note_from(c, b);
    return false;
  }
  nnc_type r;
  if (!el_broadcast_type(ta, tb, &r)) {
    nnc_error(c->d, loc, "shapes %s and %s do not broadcast in '%s'", el_type_str(c, ta), el_type_str(c, tb), opname);
    note_from(c, a);
    note_from(c, b);
    return false;
  }
  *x = el_bcast_right(c, a->node, &r, loc);
  *y = el_bcast_right(c, b->node, &r, loc);
  return *x && *y;
}

el_val el_arith(el_ctx *c, nnc_op op, const el_val *a, const el_val *b, const char *opname, nnc_loc loc) {
  if (a->kind == V_POISON || b->kind == V_POISON) return el_poison();
  const el_val *t = a->kind == V_TENSOR ? a : b;
  if (t->node->type.dtype == NNC_U8) {
    nnc_error(c->d, loc, "'%s' on %s: u8 holds bytes; use normalize(x, ...) or cast(x, f32) first", opname,
              el_val_desc(c, t));
    note_from(c, t);
    return el_poison();
  }
  if (op == NNC_OP_pow && !el_need_float(c, t, "'**'", loc)) return el_poison();
  nnc_node *x, *y;
  if (!el_broadcast_pair(c, a, b, opname, loc, &x, &y)) return el_poison();
  return el_tensor(el_binary(c, op, x, y, loc), loc);
}

/* --- ops ------------------------------------------------------------------------------------------ */

typedef el_val (*op_fn)(el_ctx *, el_scope *, const nnc_ast *call, const nnc_ast **slot, const el_sig *);

/* Normalizes a possibly negative dim against rank; false after a diagnostic. */
static bool norm_dim(el_ctx *c, const nnc_ast *e, int64_t d, int rank, int *out) {
  if (d < -rank || d >= rank || rank == 0) {
    nnc_error(c->d, e->loc, "dim %lld is out of range for a tensor of rank %d", (long long)d, rank);
    return false;
  }
  *out = (int)(d < 0 ? d + rank : d);
  return true;
}

static bool get_dim(el_ctx *c, el_scope *s, const nnc_ast *e, int rank, int *out) {
  int64_t d;
  return el_get_int(c, s, e, "dim", -64, 64, &d) && norm_dim(c, e, d, rank, out);
}

/* A float operand: a tensor of f32. */
static bool float_arg(el_ctx *c, el_scope *s, const nnc_ast *e, const char *op, el_val *v) {
  return el_get_tensor(c, s, e, v) && el_need_float(c, v, op, e->loc);
}

/* A primitive the language exposes under its own name (ops.def's `lang` column): exp(x). */
static el_val op_primitive(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  nnc_op op;
  if (!float_arg(c, s, slot[0], sig->name, &x)) return el_poison();
  if (!nnc_op_from_name(sig->name, &op) || nnc_ops[op].arity != 1) {
    el_internal(c, call->loc, "no unary primitive of this name");
    return el_poison();
  }
  return el_tensor(el_unary(c, op, x.node, call->loc), call->loc);
}

static el_val op_relu(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!float_arg(c, s, slot[0], sig->name, &x)) return el_poison();
  return el_tensor(el_scalar_op(c, NNC_OP_max, x.node, 0, call->loc), call->loc);
}

static el_val op_sigmoid(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!float_arg(c, s, slot[0], sig->name, &x)) return el_poison();
  return el_tensor(el_sigmoid(c, x.node, call->loc), call->loc);
}

/* silu(x) = x * sigmoid(x) (F.silu); its gradient comes from the primitives'. */
static el_val op_silu(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!float_arg(c, s, slot[0], sig->name, &x)) return el_poison();
  nnc_loc L = call->loc;
  return el_tensor(el_binary(c, NNC_OP_mul, x.node, el_sigmoid(c, x.node, L), L), L);
}

/* gelu: x/2 (1 + erf(x/sqrt 2)), or PyTorch's tanh approximation. */
static el_val op_gelu(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  bool tanh_form = false;
  if (slot[1]) {
    el_val a = el_eval(c, s, slot[1]);
    if (a.kind == V_POISON) return a;
    if (a.kind != V_STR || (strcmp(a.str, "none") != 0 && strcmp(a.str, "tanh") != 0)) {
      nnc_error(c->d, slot[1]->loc, "'approximate' must be \"none\" or \"tanh\"");
      return el_poison();
    }
    tanh_form = strcmp(a.str, "tanh") == 0;
  }
  if (!float_arg(c, s, slot[0], "gelu", &x)) return el_poison();
  nnc_loc L = call->loc;
  nnc_node *n = x.node, *inner;
  if (tanh_form) {
    nnc_node *cube = el_binary(c, NNC_OP_mul, el_binary(c, NNC_OP_mul, n, n, L), n, L);
    nnc_node *t = el_binary(c, NNC_OP_add, n, el_scalar_op(c, NNC_OP_mul, cube, 0.044715, L), L);
    inner = el_unary(c, NNC_OP_tanh, el_scalar_op(c, NNC_OP_mul, t, SQRT_2_OVER_PI, L), L);
  } else {
    inner = el_unary(c, NNC_OP_erf, el_scalar_op(c, NNC_OP_mul, n, SQRT_HALF, L), L);
  }
  nnc_node *half = el_scalar_op(c, NNC_OP_mul, n, 0.5, L);
  return el_tensor(el_binary(c, NNC_OP_mul, half, el_scalar_op(c, NNC_OP_add, inner, 1, L), L), L);
}

static el_val op_softmax(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!float_arg(c, s, slot[0], sig->name, &x)) return el_poison();
  int axis = x.node->type.rank - 1;
  if (slot[1] && !get_dim(c, s, slot[1], x.node->type.rank, &axis)) return el_poison();
  if (x.node->type.rank == 0) {
    nnc_error(c->d, call->loc, "%s of a scalar", sig->name);
    return el_poison();
  }
  return el_tensor(el_softmax(c, x.node, axis, sig->name[0] == 'l', call->loc), call->loc);
}

/* flatten(x, start_dim=1, end_dim=-1): dims start..end become one; a batch axis may only be
 * the first of them (B stays the outermost factor). */
static el_val op_flatten(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!el_get_tensor(c, s, slot[0], &x)) return el_poison();
  const nnc_type *t = &x.node->type;
  int lo = t->rank > 1 ? 1 : 0, hi = t->rank - 1;
  if (t->rank == 0) return x;
  if (slot[1] && !get_dim(c, s, slot[1], t->rank, &lo)) return el_poison();
  if (slot[2] && !get_dim(c, s, slot[2], t->rank, &hi)) return el_poison();
  if (lo > hi) {
    nnc_error(c->d, call->loc, "flatten: start_dim %d comes after end_dim %d", lo, hi);
    return el_poison();
  }
  if (t->batch_axis > lo && t->batch_axis <= hi) {
    nnc_error(c->d, call->loc, "flatten of %s over dims %d..%d would bury the batch axis", el_type_str(c, t), lo, hi);
    note_from(c, &x);
    return el_poison();
  }
  nnc_type r = {.dtype = t->dtype, .batch_axis = -1};
  for (int i = 0; i < t->rank; i++) {
    if (i > lo && i <= hi) {
      r.dims[r.rank - 1] *= t->dims[i];
      continue;
    }
    if (i == t->batch_axis) r.batch_axis = r.rank;
    r.dims[r.rank++] = t->dims[i];
  }
  return el_tensor(el_reshape(c, x.node, &r, call->loc), call->loc);
}

static bool is_batch_name(const nnc_ast *e) { return e->kind == AST_NAME && strcmp(e->name, "B") == 0; }

/* reshape(x, [dims]): one dim may be -1; for a batched x, write B (or B*k) for the batch axis,
 * or let -1 stand for it. The dims before the batch axis must keep their product, and so must
 * those after it (times its multiple). */
static el_val op_reshape(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!el_get_tensor(c, s, slot[0], &x)) return el_poison();
  const nnc_ast *shape = slot[1];
  if (shape->kind != AST_LIST || shape->list.n > NNC_MAX_RANK) {
    nnc_error(c->d, shape->loc, "%s needs a list of at most %d dims: [B, -1]", sig->name, NNC_MAX_RANK);
    return el_poison();
  }
  const nnc_type *t = &x.node->type;
  nnc_type r = {.dtype = t->dtype, .rank = shape->list.n, .batch_axis = -1};
  int infer = -1;
  for (int i = 0; i < r.rank; i++) {
    const nnc_ast *e = shape->list.items[i];
    const nnc_ast *k = NULL;
    bool batch = is_batch_name(e) && !el_lookup(s, "B");
    if (e->kind == AST_BINOP && e->op == AST_OP_MUL) {
      if (is_batch_name(e->a)) k = e->b, batch = true;
      else if (is_batch_name(e->b)) k = e->a, batch = true;
    }
    int64_t v = 1;
    if (batch && r.batch_axis >= 0) {
      nnc_error(c->d, e->loc, "B appears twice; a tensor has one batch axis");
      return el_poison();
    }
    if (batch && k && !el_get_int(c, s, k, "dimension", 1, INT32_MAX, &v)) return el_poison();
    if (!batch && !el_get_int(c, s, e, "dimension", -1, INT32_MAX, &v)) return el_poison();
    if (!batch && v == 0) {
      nnc_error(c->d, e->loc, "dimension must be positive, got 0");
      return el_poison();
    }
    if (v == -1) {
      if (infer >= 0) {
        nnc_error(c->d, e->loc, "only one dimension can be -1");
        return el_poison();
      }
      infer = i;
      v = 1;
    }
    if (batch) r.batch_axis = i;
    r.dims[i] = v;
  }
  bool ok = true;
  if (t->batch_axis < 0) {
    if (r.batch_axis >= 0) {
      nnc_error(c->d, call->loc, "%s has no batch axis to place at B", el_type_str(c, t));
      note_from(c, &x);
      return el_poison();
    }
    int64_t total = nnc_type_elements(t, 1), known = nnc_type_elements(&r, 1);
    if (infer >= 0 && known > 0 && total % known == 0) r.dims[infer] = total / known;
    ok = nnc_type_elements(&r, 1) == total;
  } else {
    int64_t pre = 1, post = t->dims[t->batch_axis];
    for (int i = 0; i < t->rank; i++) {
      if (i < t->batch_axis) pre *= t->dims[i];
      if (i > t->batch_axis) post *= t->dims[i];
    }
    if (r.batch_axis < 0 && infer < 0) {
      nnc_error(c->d, shape->loc, "reshape of batched %s: write B (or -1) for the batch dimension", el_type_str(c, t));
      return el_poison();
    }
    if (r.batch_axis < 0) r.batch_axis = infer, infer = -1, r.dims[r.batch_axis] = 0;
    int64_t rpre = 1, rpost = 1;
    for (int i = 0; i < r.rank; i++) {
      if (i < r.batch_axis) rpre *= r.dims[i];
      if (i > r.batch_axis) rpost *= r.dims[i];
    }
    if (r.dims[r.batch_axis] == 0) { /* -1 stands for the batch axis: its multiple follows */
      r.dims[r.batch_axis] = rpost > 0 && post % rpost == 0 ? post / rpost : 0;
      ok = r.dims[r.batch_axis] > 0 && rpre == pre;
    } else {
      rpost *= r.dims[r.batch_axis];
      if (infer >= 0 && infer < r.batch_axis && pre % rpre == 0) r.dims[infer] = pre / rpre, rpre = pre;
      if (infer > r.batch_axis && post % rpost == 0) r.dims[infer] = post / rpost, rpost = post;
      ok = rpre == pre && rpost == post;
    }
  }
  if (!ok) {
    nnc_error(c->d, call->loc, "cannot reshape %s: the element counts do not match", el_type_str(c, t));
    note_from(c, &x);
    return el_poison();
  }
  return el_tensor(el_reshape(c, x.node, &r, call->loc), call->loc);
}

static el_val permute_by(el_ctx *c, const el_val *x, const int *perm, nnc_loc L) {
  int64_t p[NNC_MAX_RANK];
  for (int i = 0; i < x->node->type.rank; i++) p[i] = perm[i];
  nnc_node *n = el_new(c, NNC_OP_permute, 1, &x->node, L);
  if (n) nnc_node_set_ints(n, NNC_ATTR_perm, x->node->type.rank, p);
  return el_tensor(el_done(c, n), L);
}

static el_val op_permute(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x, dims;
  if (!el_get_tensor(c, s, slot[0], &x)) return el_poison();
  dims = el_eval(c, s, slot[1]);
  if (dims.kind == V_POISON) return dims;
  int rank = x.node->type.rank, perm[NNC_MAX_RANK];
  bool used[NNC_MAX_RANK] = {false};
  if (dims.kind != V_LIST || dims.nitems != rank) {
    nnc_error(c->d, slot[1]->loc, "permute of %s needs a list of %d dims", el_type_str(c, &x.node->type), rank);
    return el_poison();
  }
  for (int i = 0; i < rank; i++) {
    el_val d = dims.items[i];
    if (d.kind != V_NUM || !d.is_int || !norm_dim(c, slot[1], (int64_t)d.num, rank, &perm[i])) {
      if (d.kind != V_NUM || !d.is_int) nnc_error(c->d, slot[1]->loc, "permute dims must be integers");
      return el_poison();
    }
    if (used[perm[i]]) {
      nnc_error(c->d, slot[1]->loc, "permute dims must name each axis once");
      return el_poison();
    }
    used[perm[i]] = true;
  }
  return permute_by(c, &x, perm, call->loc);
}

static el_val op_transpose(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!el_get_tensor(c, s, slot[0], &x)) return el_poison();
  int rank = x.node->type.rank, a, b, perm[NNC_MAX_RANK];
  if (!get_dim(c, s, slot[1], rank, &a) || !get_dim(c, s, slot[2], rank, &b)) return el_poison();
  for (int i = 0; i < rank; i++) perm[i] = i;
  perm[a] = b;
  perm[b] = a;
  return permute_by(c, &x, perm, call->loc);
}

/* An image operand [N,C,H,W] in f32 with the batch axis first (or none). */
static bool image_arg(el_ctx *c, el_scope *s, const nnc_ast *e, const char *op, el_val *x) {
  if (!float_arg(c, s, e, op, x)) return false;
  const nnc_type *t = &x->node->type;
  if (t->rank != 4 || (t->batch_axis != 0 && t->batch_axis != -1)) {
    nnc_error(c->d, e->loc, "%s needs an image batch [N, C, H, W], got %s", op, el_type_str(c, t));
    note_from(c, x);
    return false;
  }
  return true;
}

static void set_pair(nnc_node *n, nnc_attr_key k, const int64_t *v) { nnc_node_set_ints(n, k, 2, v); }

/* The output size of a window sweep, or a diagnostic when the window does not fit. */
static bool window_fits(el_ctx *c, const el_val *x, const int64_t *k, const int64_t *st, const int64_t *pad,
                        const int64_t *dil, const char *op, nnc_loc L) {
  for (int i = 0; i < 2; i++) {
    int64_t span = dil[i] * (k[i] - 1) + 1;
    if (x->node->type.dims[2 + i] + 2 * pad[i] - span < 0) {
      nnc_error(c->d, L, "%s: the %lldx%lld window does not fit the input %s", op, (long long)k[0], (long long)k[1],
                el_type_str(c, &x->node->type));
      note_from(c, x);
      return false;
    }
    (void)st;
  }
  return true;
}

static el_val op_pool(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  bool avg = sig->name[0] == 'a';
  int64_t k[2], st[2], pad[2] = {0, 0}, dil[2] = {1, 1};
  bool ok = image_arg(c, s, slot[0], sig->name, &x);
  ok &= el_get_pair(c, s, slot[1], "kernel_size", 1, k);
  if (ok && slot[2]) ok &= el_get_pair(c, s, slot[2], "stride", 1, st);
  else if (ok) st[0] = k[0], st[1] = k[1];
  if (ok && slot[3]) ok &= el_get_pair(c, s, slot[3], "padding", 0, pad);
  if (ok && !avg && slot[4]) ok &= el_get_pair(c, s, slot[4], "dilation", 1, dil);
  if (!ok) return el_poison();
  if (pad[0] > k[0] / 2 || pad[1] > k[1] / 2) {
    nnc_error(c->d, slot[3]->loc, "padding should be at most half the kernel size");
    return el_poison();
  }
  nnc_loc L = call->loc;
  if (!window_fits(c, &x, k, st, pad, dil, sig->name, L)) return el_poison();
  if (avg) {
    /* PyTorch's avg_pool2d (count_include_pad): a depthwise convolution with 1/(kh*kw). */
    int64_t ch = x.node->type.dims[1];
    nnc_type wt = nnc_type_make(NNC_F32, 4, (int64_t[]){ch, 1, k[0], k[1]}, -1);
    nnc_node *w = el_const(c, &wt, 1.0 / (double)(k[0] * k[1]), L);
    nnc_node *n = el_new(c, NNC_OP_conv2d, 2, (nnc_node *[]){x.node, w}, L);
    if (!n) return el_poison();
    set_pair(n, NNC_ATTR_stride, st);
    set_pair(n, NNC_ATTR_padding, pad);
    set_pair(n, NNC_ATTR_dilation, dil);
    nnc_node_set_int(n, NNC_ATTR_groups, ch);
    return el_tensor(el_done(c, n), L);
  }
  nnc_node *n = el_new(c, NNC_OP_maxpool2d, 1, &x.node, L);
  set_pair(n, NNC_ATTR_kernel, k);
  set_pair(n, NNC_ATTR_stride, st);
  set_pair(n, NNC_ATTR_padding, pad);
  set_pair(n, NNC_ATTR_dilation, dil);
  return el_tensor(el_done(c, n), L);
}

/* sum / mean / max over dim (an int, a list, or all dims), optionally keeping reduced dims as 1. */
static el_val op_reduce(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!el_get_tensor(c, s, slot[0], &x)) return el_poison();
  const nnc_type *t = &x.node->type;
  bool is_mean = strcmp(sig->name, "mean") == 0, is_max = strcmp(sig->name, "max") == 0;
  if (is_mean && !el_need_float(c, &x, "mean", slot[0]->loc)) return el_poison();
  if (t->dtype == NNC_U8) {
    nnc_error(c->d, slot[0]->loc, "%s of %s: cast the bytes to f32 or i32 first", sig->name, el_type_str(c, t));
    return el_poison();
  }
  int axes[NNC_MAX_RANK], n = 0;
  bool keep = false;
  if (slot[2] && !el_get_bool(c, s, slot[2], "keepdim", &keep)) return el_poison();
  if (!slot[1]) {
    for (int i = 0; i < t->rank; i++) axes[n++] = i;
  } else {
    el_val d = el_eval(c, s, slot[1]);
    if (d.kind == V_POISON) return d;
    int cnt = d.kind == V_LIST ? d.nitems : 1;
    for (int i = 0; i < cnt && i < NNC_MAX_RANK; i++) {
      el_val it = d.kind == V_LIST ? d.items[i] : d;
      if (it.kind != V_NUM || !it.is_int) {
        nnc_error(c->d, slot[1]->loc, "'dim' must be an integer or a list of integers");
        return el_poison();
      }
      int a;
      if (!norm_dim(c, slot[1], (int64_t)it.num, t->rank, &a)) return el_poison();
      for (int j = 0; j < n; j++)
        if (axes[j] == a) {
          nnc_error(c->d, slot[1]->loc, "dim %d is named twice", a);
          return el_poison();
        }
      int j = n++;
      while (j > 0 && axes[j - 1] > a) axes[j] = axes[j - 1], j--;
      axes[j] = a;
    }
  }
  nnc_loc L = call->loc;
  nnc_node *r = is_mean ? el_mean(c, x.node, axes, n, L) : el_reduce(c, is_max ? NNC_OP_reduce_max : NNC_OP_reduce_sum, x.node, axes, n, L);
  if (r && keep) {
    nnc_type k = *t;
    for (int j = 0; j < n; j++) k.dims[axes[j]] = 1;
    for (int j = 0; j < n; j++)
      if (axes[j] == t->batch_axis) k.batch_axis = -1;
    r = el_reshape(c, r, &k, L);
  }
  return el_tensor(r, L);
}

static void mismatch(el_ctx *c, nnc_loc L, const char *what, const el_val *a, const el_val *b) {
  nnc_error(c->d, L, "%s: %s and %s", what, el_type_str(c, &a->node->type), el_type_str(c, &b->node->type));
  note_from(c, a);
  note_from(c, b);
}

static bool dim_eq(const nnc_type *a, int i, const nnc_type *b, int j) {
  return a->dims[i] == b->dims[j] && (i == a->batch_axis) == (j == b->batch_axis);
}

/* matmul(a, b) / a @ b with numpy semantics for the leading (batch-like) dims. */
static el_val op_matmul(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val a, b;
  bool ok = float_arg(c, s, slot[0], "matmul", &a);
  ok &= float_arg(c, s, slot[1], "matmul", &b);
  if (!ok) return el_poison();
  const nnc_type *ta = &a.node->type, *tb = &b.node->type;
  nnc_loc L = call->loc;
  if (ta->rank < 2 || tb->rank < 2) {
    mismatch(c, L, "matmul needs operands of rank 2 or more", &a, &b);
    return el_poison();
  }
  if (!dim_eq(ta, ta->rank - 1, tb, tb->rank - 2)) {
    mismatch(c, L, "matmul: inner dimensions differ", &a, &b);
    return el_poison();
  }
  if (tb->rank == 2) return el_tensor(el_matmul(c, a.node, b.node, false, false, L), L);
  /* leading dims broadcast as numpy does: [.., M, K] and [.., K, N] */
  nnc_type la = *ta, lb = *tb, lr;
  la.rank -= 2, lb.rank -= 2;
  if (la.batch_axis >= la.rank) la.batch_axis = -1;
  if (lb.batch_axis >= lb.rank) lb.batch_axis = -1;
  if (!el_broadcast_type(&la, &lb, &lr) || (ta->batch_axis >= ta->rank - 2 && lr.rank > 0) ||
      (tb->batch_axis >= tb->rank - 2)) {
    mismatch(c, L, "matmul: leading dimensions do not broadcast", &a, &b);
    return el_poison();
  }
  nnc_type fa = lr, fb = lr;
  fa.dtype = fb.dtype = NNC_F32;
  fa.rank = fb.rank = lr.rank + 2;
  fa.dims[lr.rank] = ta->dims[ta->rank - 2], fa.dims[lr.rank + 1] = ta->dims[ta->rank - 1];
  fb.dims[lr.rank] = tb->dims[tb->rank - 2], fb.dims[lr.rank + 1] = tb->dims[tb->rank - 1];
  if (ta->batch_axis >= ta->rank - 2) fa.batch_axis = ta->batch_axis - ta->rank + fa.rank;
  nnc_node *x = el_bcast_right(c, a.node, &fa, L), *y = el_bcast_right(c, b.node, &fb, L);
  return el_tensor(el_matmul(c, x, y, false, false, L), L);
}

static el_val op_concat(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val xs = el_eval(c, s, slot[0]);
  if (xs.kind == V_POISON) return xs;
  if (xs.kind != V_LIST || xs.nitems < 1 || xs.nitems > 4096) {
    nnc_error(c->d, slot[0]->loc, "concat needs a list of tensors: concat([a, b], dim)");
    return el_poison();
  }
  for (int i = 0; i < xs.nitems; i++)
    if (xs.items[i].kind != V_TENSOR) {
      nnc_error(c->d, slot[0]->loc, "concat needs a list of tensors, item %d is %s", i, el_val_desc(c, &xs.items[i]));
      return el_poison();
    }
  const nnc_type *t0 = &xs.items[0].node->type;
  int axis = 0;
  if (slot[1] && !get_dim(c, s, slot[1], t0->rank, &axis)) return el_poison();
  if (axis == t0->batch_axis) {
    nnc_error(c->d, call->loc, "concat along the batch axis of %s is not supported", el_type_str(c, t0));
    return el_poison();
  }
  nnc_node **in = nnc_arena_alloc(c->arena, sizeof(nnc_node *) * (size_t)xs.nitems);
  for (int i = 0; i < xs.nitems; i++) {
    const nnc_type *t = &xs.items[i].node->type;
    bool same = t->dtype == t0->dtype && t->rank == t0->rank && t->batch_axis == t0->batch_axis;
    for (int j = 0; same && j < t->rank; j++) same = j == axis || t->dims[j] == t0->dims[j];
    if (!same) {
      mismatch(c, call->loc, nnc_arena_printf(c->arena, "concat along dim %d: shapes differ", axis), &xs.items[0], &xs.items[i]);
      return el_poison();
    }
    in[i] = xs.items[i].node;
  }
  nnc_node *n = el_new(c, NNC_OP_concat, xs.nitems, in, call->loc);
  if (n) nnc_node_set_int(n, NNC_ATTR_axis, axis);
  return el_tensor(el_done(c, n), call->loc);
}

/* A per-channel constant [C] (a list of numbers) broadcast over axis 1 of like, or a scalar. */
static nnc_node *channel_const(el_ctx *c, const el_val *v, const nnc_ast *e, const nnc_type *like, const char *what, nnc_loc L) {
  if (v->kind == V_NUM) return el_const(c, like, v->num, L);
  if (v->kind != V_LIST || like->rank < 2 || v->nitems != like->dims[1] || like->batch_axis == 1) {
    nnc_error(c->d, e->loc, "'%s' must be a number or a list of one number per channel (%lld for %s)", what,
              like->rank >= 2 ? (long long)like->dims[1] : 0LL, el_type_str(c, like));
    return NULL;
  }
  nnc_node **parts = nnc_arena_alloc(c->arena, sizeof(nnc_node *) * (size_t)v->nitems);
  nnc_type one = nnc_type_make(NNC_F32, 1, (int64_t[]){1}, -1);
  for (int i = 0; i < v->nitems; i++) {
    if (v->items[i].kind != V_NUM) {
      nnc_error(c->d, e->loc, "'%s' must be a list of numbers", what);
      return NULL;
    }
    parts[i] = el_const(c, &one, v->items[i].num, L);
  }
  nnc_node *cat = el_new(c, NNC_OP_concat, v->nitems, parts, L);
  if (cat) nnc_node_set_int(cat, NNC_ATTR_axis, 0);
  return el_bcast(c, el_done(c, cat), like, (int[]){1}, L);
}

/* normalize(x, mean=, std=): PyTorch's ToTensor + Normalize, inside the graph. */
static el_val op_normalize(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  if (!el_get_tensor(c, s, slot[0], &x)) return el_poison();
  el_val mean = slot[1] ? el_eval(c, s, slot[1]) : el_num(0, false, call->loc);
  el_val std = slot[2] ? el_eval(c, s, slot[2]) : el_num(1, false, call->loc);
  if (mean.kind == V_POISON || std.kind == V_POISON) return el_poison();
  if (x.node->type.dtype == NNC_I32) {
    nnc_error(c->d, slot[0]->loc, "normalize takes u8 pixels or f32, got %s", el_val_desc(c, &x));
    note_from(c, &x);
    return el_poison();
  }
  nnc_loc L = call->loc;
  nnc_node *h = x.node;
  if (h->type.dtype == NNC_U8) h = el_scalar_op(c, NNC_OP_div, el_cast(c, h, NNC_F32, L), 255.0, L);
  if (!h) return el_poison();
  nnc_node *m = channel_const(c, &mean, slot[1], &h->type, "mean", L);
  nnc_node *sd = m ? channel_const(c, &std, slot[2], &h->type, "std", L) : NULL;
  if (!m || !sd) return el_poison();
  return el_tensor(el_binary(c, NNC_OP_div, el_binary(c, NNC_OP_sub, h, m, L), sd, L), L);
}

static el_val op_cast(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  bool ok = el_get_tensor(c, s, slot[0], &x);
  const nnc_ast *d = slot[1];
  nnc_dtype dt;
  const char *name = d->kind == AST_NAME ? d->name : d->kind == AST_STR ? d->str : NULL;
  if (!name || !nnc_dtype_from_name(name, &dt)) {
    nnc_error(c->d, d->loc, "cast needs an element type: f32, i32 or u8");
    return el_poison();
  }
  if (!ok) return el_poison();
  return el_tensor(el_cast(c, x.node, dt, call->loc), call->loc);
}

static el_val op_dropout(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val x;
  double p = 0.5;
  bool ok = float_arg(c, s, slot[0], "dropout", &x);
  if (slot[1]) ok &= el_get_num(c, s, slot[1], "p", 0, 1, &p);
  if (!ok) return el_poison();
  return el_tensor(el_dropout(c, x.node, p, call->loc), call->loc);
}

/* --- losses: PyTorch's mean reduction over the actual batch ------------------------------------- */

static bool same_shape_args(el_ctx *c, el_scope *s, const nnc_ast **slot, const char *op, el_val *a, el_val *b, nnc_loc L) {
  bool ok = float_arg(c, s, slot[0], op, a);
  ok &= float_arg(c, s, slot[1], op, b);
  if (!ok) return false;
  if (!nnc_shape_equal(&a->node->type, &b->node->type)) {
    mismatch(c, L, nnc_arena_printf(c->arena, "%s: shapes differ", op), a, b);
    return false;
  }
  return true;
}

static el_val op_cross_entropy(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val z, y;
  bool ok = float_arg(c, s, slot[0], "cross_entropy", &z);
  ok &= el_get_tensor(c, s, slot[1], &y);
  if (!ok) return el_poison();
  nnc_loc L = call->loc;
  const nnc_type *tz = &z.node->type, *ty = &y.node->type;
  if (ty->dtype != NNC_I32) {
    nnc_error(c->d, slot[1]->loc, "cross_entropy needs class ids (i32) as target, got %s", el_type_str(c, ty));
    note_from(c, &y);
    return el_poison();
  }
  /* logits [N, C, d...] and targets [N, d...]: the class axis is 1, as in PyTorch; else logits
   * [N, d..., C] with the classes last (PyTorch's loss on logits.view(-1, C), targets.view(-1)) */
  int cls = -1;
  for (int k = 0; k < 2 && cls < 0; k++) {
    int a = k == 0 ? 1 : tz->rank - 1;
    bool match = tz->rank >= 2 && ty->rank == tz->rank - 1 && tz->batch_axis != a;
    for (int i = 0, j = 0; match && i < tz->rank; i++) {
      if (i == a) continue;
      match = dim_eq(tz, i, ty, j++);
    }
    if (match) cls = a;
  }
  if (cls < 0) {
    mismatch(c, L, "cross_entropy: logits [N, C, ...] or [N, ..., C] and class ids [N, ...] do not match", &z, &y);
    return el_poison();
  }
  nnc_node *ls = el_softmax(c, z.node, cls, true, L);
  nnc_type ti = *tz;
  ti.dtype = NNC_I32;
  nnc_node *iota = typed(c, NNC_OP_iota, 0, NULL, &ti, L);
  nnc_node_set_int(iota, NNC_ATTR_axis, cls);
  int keep[NNC_MAX_RANK] = {0};
  for (int i = 0, j = 0; i < tz->rank; i++)
    if (i != cls) keep[j++] = i;
  nnc_node *onehot = el_cmp(c, NNC_CMP_EQ, el_done(c, iota), el_bcast(c, y.node, &ti, keep, L), L);
  nnc_node *picked = el_new(c, NNC_OP_select, 3, (nnc_node *[]){onehot, ls, el_const(c, tz, 0, L)}, L);
  int all[NNC_MAX_RANK];
  for (int i = 0; i < tz->rank; i++) all[i] = i;
  nnc_node *sum = el_reduce(c, NNC_OP_reduce_sum, el_done(c, picked), all, tz->rank, L);
  nnc_node *cnt = el_count(c, ty, NULL, 0, L);
  return el_tensor(el_binary(c, NNC_OP_div, el_unary(c, NNC_OP_neg, sum, L), cnt, L), L);
}

static el_val op_mse(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val p, t;
  if (!same_shape_args(c, s, slot, sig->name, &p, &t, call->loc)) return el_poison();
  nnc_loc L = call->loc;
  nnc_node *d = el_binary(c, NNC_OP_sub, p.node, t.node, L);
  return el_tensor(el_mean(c, el_binary(c, NNC_OP_mul, d, d, L), NULL, 0, L), L);
}

/* Binary cross-entropy on probabilities; logs clamped at -100 as PyTorch does. */
static el_val op_bce(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val p, t;
  if (!same_shape_args(c, s, slot, sig->name, &p, &t, call->loc)) return el_poison();
  nnc_loc L = call->loc;
  nnc_node *one = el_const(c, &p.node->type, 1, L);
  nnc_node *lp = el_scalar_op(c, NNC_OP_max, el_unary(c, NNC_OP_log, p.node, L), -100, L);
  nnc_node *lq = el_scalar_op(c, NNC_OP_max, el_unary(c, NNC_OP_log, el_binary(c, NNC_OP_sub, one, p.node, L), L), -100, L);
  nnc_node *a = el_binary(c, NNC_OP_mul, t.node, lp, L);
  nnc_node *b = el_binary(c, NNC_OP_mul, el_binary(c, NNC_OP_sub, one, t.node, L), lq, L);
  nnc_node *l = el_unary(c, NNC_OP_neg, el_binary(c, NNC_OP_add, a, b, L), L);
  return el_tensor(el_mean(c, l, NULL, 0, L), L);
}

/* bce on logits in the stable form max(z, 0) - z t + log(1 + exp(-|z|)). */
static el_val op_bce_logits(el_ctx *c, el_scope *s, const nnc_ast *call, const nnc_ast **slot, const el_sig *sig) {
  el_val z, t;
  if (!same_shape_args(c, s, slot, sig->name, &z, &t, call->loc)) return el_poison();
  nnc_loc L = call->loc;
  nnc_node *relu = el_scalar_op(c, NNC_OP_max, z.node, 0, L);
  nnc_node *zt = el_binary(c, NNC_OP_mul, z.node, t.node, L);
  nnc_node *e = el_unary(c, NNC_OP_exp, el_unary(c, NNC_OP_neg, el_unary(c, NNC_OP_abs, z.node, L), L), L);
  nnc_node *sp = el_unary(c, NNC_OP_log, el_scalar_op(c, NNC_OP_add, e, 1, L), L);
  nnc_node *l = el_binary(c, NNC_OP_add, el_binary(c, NNC_OP_sub, relu, zt, L), sp, L);
  return el_tensor(el_mean(c, l, NULL, 0, L), L);
}

/* --- the table ------------------------------------------------------------------------------------ */

typedef struct op_entry {
  el_sig sig;
  op_fn fn;
} op_entry;

/* Expands the primitives of ops.def whose `lang` is FN with the macro FN(name). */
#define NO(name)
#define OP(name, kind, arity, dtypes, loop, lang, compute) lang(name)

static const op_entry ops[] = {
    {{"relu", {"x"}, 1}, op_relu},
    {{"sigmoid", {"x"}, 1}, op_sigmoid},
#define FN(name) {{#name, {"x"}, 1}, op_primitive},
#include "../ir/ops.def"
#undef FN
    {{"silu", {"x"}, 1}, op_silu},
    {{"gelu", {"x", "approximate"}, 1}, op_gelu},
    {{"softmax", {"x", "dim"}, 1}, op_softmax},
    {{"log_softmax", {"x", "dim"}, 1}, op_softmax},
    {{"flatten", {"x", "start_dim", "end_dim"}, 1}, op_flatten},
    {{"reshape", {"x", "shape"}, 2}, op_reshape},
    {{"view", {"x", "shape"}, 2}, op_reshape},
    {{"permute", {"x", "dims"}, 2}, op_permute},
    {{"transpose", {"x", "dim0", "dim1"}, 3}, op_transpose},
    {{"maxpool2d", {"x", "kernel_size", "stride", "padding", "dilation"}, 2}, op_pool},
    {{"avgpool2d", {"x", "kernel_size", "stride", "padding"}, 2}, op_pool},
    {{"sum", {"x", "dim", "keepdim"}, 1}, op_reduce},
    {{"mean", {"x", "dim", "keepdim"}, 1}, op_reduce},
    {{"max", {"x", "dim", "keepdim"}, 1}, op_reduce},
    {{"matmul", {"a", "b"}, 2}, op_matmul},
    {{"concat", {"tensors", "dim"}, 1}, op_concat},
    {{"normalize", {"x", "mean", "std"}, 1}, op_normalize},
    {{"cast", {"x", "dtype"}, 2}, op_cast},
    {{"dropout", {"x", "p"}, 1}, op_dropout},
    {{"stack", {"tensors", "dim"}, 1}, el_op_stack},
    {{"split", {"x", "split_size_or_sections", "dim"}, 2}, el_op_split},
    {{"chunk", {"x", "chunks", "dim"}, 2}, el_op_split},
    {{"arange", {"start", "end", "step"}, 1}, el_op_arange},
    {{"tril", {"x", "diagonal"}, 1}, el_op_tril},
    {{"triu", {"x", "diagonal"}, 1}, el_op_tril},
    {{"masked_fill", {"x", "mask", "value"}, 3}, el_op_masked_fill},
    {{"where", {"condition", "x", "y"}, 3}, el_op_where},
    {{"ones", {"shape", "dtype"}, 1}, el_op_fill},
    {{"zeros", {"shape", "dtype"}, 1}, el_op_fill},
    {{"cross_entropy", {"input", "target"}, 2}, op_cross_entropy},
    {{"mse", {"input", "target"}, 2}, op_mse},
    {{"bce", {"input", "target"}, 2}, op_bce},
    {{"bce_with_logits", {"input", "target"}, 2}, op_bce_logits},
};

#define NOPS (sizeof ops / sizeof *ops)

const char *const el_builtin_names[] = {
    "relu", "sigmoid",
#define FN(name) #name,
#include "../ir/ops.def"
#undef FN
    "silu", "gelu", "softmax", "log_softmax",
    "flatten", "reshape", "view", "permute", "transpose", "maxpool2d", "avgpool2d", "sum", "mean", "max",
    "matmul", "concat", "normalize", "cast", "dropout", "cross_entropy", "mse", "bce", "bce_with_logits",
    "stack", "split", "chunk", "arange", "tril", "triu", "masked_fill", "where", "ones", "zeros", NULL};

#undef OP
#undef NO

static const op_entry *find_op(const char *name) {
  for (size_t i = 0; i < NOPS; i++)
    if (strcmp(ops[i].sig.name, name) == 0) return &ops[i];
  return NULL;
}

bool el_is_builtin_op(const char *name) { return find_op(name) != NULL; }

el_val el_call_builtin(el_ctx *c, el_scope *s, const char *name, const nnc_ast *call) {
  const op_entry *op = find_op(name);
  const nnc_ast *slot[EL_MAX_ARGS];
  if (!op || !el_bind_args(c, &op->sig, call, 0, slot)) return el_poison();
  return op->fn(c, s, call, slot, &op->sig);
}
