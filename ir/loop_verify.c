/* The loop IR verifier and the structural hash (DESIGN §8).
 *
 * Bounds are proved by interval analysis: every integer expression gets a lower and an upper
 * bound, each affine in the batch n (c0 + c1*n), from loop ranges, let values, and the facts
 * that enclosing `if` conditions and masks establish. A bound holds for every n in [1, B_max]
 * when it holds at both ends, because it is affine. A batch-scaled buffer holds size/B_max*n
 * elements, so `for i in 0..n*K: buf[i]` is proved and `for i in 0..B_max*K: buf[i]` is not.
 *
 * The hash and equality serialize a kernel into a token stream (names and comments left out,
 * variables numbered by first appearance) and compare or hash that. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

/* --- affine intervals --------------------------------------------------------------------- */

typedef struct aff {
  int64_t c0, c1; /* c0 + c1*n */
} aff;

typedef struct ival {
  bool known;
  aff lo, hi;
} ival;

static const ival unknown = {0};

static ival konst(int64_t v) { return (ival){true, {v, 0}, {v, 0}}; }

static bool aff_add(aff a, aff b, aff *r) {
  return !__builtin_add_overflow(a.c0, b.c0, &r->c0) && !__builtin_add_overflow(a.c1, b.c1, &r->c1);
}

static bool aff_scale(aff a, int64_t s, aff *r) {
  return !__builtin_mul_overflow(a.c0, s, &r->c0) && !__builtin_mul_overflow(a.c1, s, &r->c1);
}

static int64_t aff_at(aff a, int64_t n) { return a.c0 + a.c1 * n; }

/* Both ends of n's range; a.c1 * bmax cannot overflow for the bounds we keep (checked). */
static bool aff_le(aff a, aff b, int64_t bmax) {
  return aff_at(a, 1) <= aff_at(b, 1) && aff_at(a, bmax) <= aff_at(b, bmax);
}

static bool aff_fits(aff a, int64_t bmax) {
  int64_t t;
  return !__builtin_mul_overflow(a.c1, bmax, &t) && !__builtin_add_overflow(a.c0, t, &t);
}

static int64_t aff_min(aff a, int64_t bmax) {
  int64_t x = aff_at(a, 1), y = aff_at(a, bmax);
  return x < y ? x : y;
}

static int64_t aff_max(aff a, int64_t bmax) {
  int64_t x = aff_at(a, 1), y = aff_at(a, bmax);
  return x > y ? x : y;
}

static ival checked(ival v, int64_t bmax) {
  return v.known && aff_fits(v.lo, bmax) && aff_fits(v.hi, bmax) ? v : unknown;
}

/* The same interval without its dependence on n. */
static ival concrete(ival v, int64_t bmax) {
  return (ival){true, {aff_min(v.lo, bmax), 0}, {aff_max(v.hi, bmax), 0}};
}

static ival iv_add(ival a, ival b) {
  ival r = {true, {0, 0}, {0, 0}};
  if (!a.known || !b.known || !aff_add(a.lo, b.lo, &r.lo) || !aff_add(a.hi, b.hi, &r.hi)) return unknown;
  return r;
}

static ival iv_neg(ival a) {
  ival r = {true, {0, 0}, {0, 0}};
  if (!a.known || !aff_scale(a.hi, -1, &r.lo) || !aff_scale(a.lo, -1, &r.hi)) return unknown;
  return r;
}

static bool is_const(ival a) { return a.known && a.lo.c1 == 0 && a.hi.c1 == 0 && a.lo.c0 == a.hi.c0; }

static ival iv_mul(ival a, ival b, int64_t bmax) {
  if (!a.known || !b.known) return unknown;
  if (is_const(a)) {
    ival t = a;
    a = b;
    b = t;
  }
  if (is_const(b)) {
    int64_t s = b.lo.c0;
    ival r = {true, {0, 0}, {0, 0}};
    if (!aff_scale(s >= 0 ? a.lo : a.hi, s, &r.lo) || !aff_scale(s >= 0 ? a.hi : a.lo, s, &r.hi)) return unknown;
    return r;
  }
  a = concrete(a, bmax), b = concrete(b, bmax);
  int64_t p[4];
  if (__builtin_mul_overflow(a.lo.c0, b.lo.c0, &p[0]) || __builtin_mul_overflow(a.lo.c0, b.hi.c0, &p[1]) ||
      __builtin_mul_overflow(a.hi.c0, b.lo.c0, &p[2]) || __builtin_mul_overflow(a.hi.c0, b.hi.c0, &p[3]))
    return unknown;
  int64_t lo = p[0], hi = p[0];
  for (int i = 1; i < 4; i++) lo = p[i] < lo ? p[i] : lo, hi = p[i] > hi ? p[i] : hi;
  return (ival){true, {lo, 0}, {hi, 0}};
}

static int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static aff aff_floordiv(aff a, int64_t c, int64_t bmax, bool upper) {
  if (a.c1 % c == 0) return (aff){floordiv(a.c0, c), a.c1 / c};
  return (aff){floordiv(upper ? aff_max(a, bmax) : aff_min(a, bmax), c), 0};
}

/* A lower bound of min(a, b) and an upper bound of max(a, b): whichever is below (above) at
 * both ends, or a constant when they cross. */
static aff aff_lower(aff a, aff b, int64_t bmax) {
  if (aff_le(a, b, bmax)) return a;
  if (aff_le(b, a, bmax)) return b;
  int64_t x = aff_min(a, bmax), y = aff_min(b, bmax);
  return (aff){x < y ? x : y, 0};
}

static aff aff_upper(aff a, aff b, int64_t bmax) {
  if (aff_le(a, b, bmax)) return b;
  if (aff_le(b, a, bmax)) return a;
  int64_t x = aff_max(a, bmax), y = aff_max(b, bmax);
  return (aff){x > y ? x : y, 0};
}

/* --- structural equality of expressions ----------------------------------------------------- */

static bool expr_same(const nnc_lexpr *a, const nnc_lexpr *b) {
  if (a == b) return true;
  if (!a || !b) return false;
  return a->kind == b->kind && nnc_lt_equal(a->type, b->type) && a->op == b->op && a->ival == b->ival &&
         a->fval == b->fval && a->var == b->var && a->scalar == b->scalar && a->buf == b->buf && a->axis == b->axis &&
         expr_same(a->a, b->a) && expr_same(a->b, b->b) && expr_same(a->c, b->c);
}

/* --- the verifier's state ------------------------------------------------------------------ */

/* What an enclosing condition or mask proves: lo_incl <= e and e < hi_excl (either may be unset). */
typedef struct fact {
  const nnc_lexpr *e;
  const nnc_lexpr *bound;
  int64_t shift;  /* e < bound + shift, or e >= bound + shift */
  bool upper;
} fact;

typedef struct vctx {
  const nnc_kernel *k;
  nnc_diags *d;
  bool ok;
  int64_t bmax;
  ival *vars;       /* by var id: the range of a loop variable or an immutable let */
  bool *live;       /* defined in the current scope */
  bool *loopvar;    /* a live loop variable (must not be assigned) */
  bool *assigned;   /* assigned somewhere: its let value does not bound it */
  fact *facts;
  int nfacts, facts_cap;
  const nnc_lstmt *nearest;  /* the nearest enclosing non-block statement (barrier placement) */
  int thread_loops;
} vctx;

/* every problem is reported */
#define verr(c, ...) ((c)->ok = false, nnc_lk_error((c)->d, NULL, "", (c)->k->name, __VA_ARGS__))

static ival eval(vctx *c, const nnc_lexpr *e);

static ival tighten(vctx *c, const nnc_lexpr *e, ival v) {
  for (int i = c->nfacts - 1; i >= 0; i--) {
    const fact *f = &c->facts[i];
    if (!expr_same(f->e, e)) continue;
    int saved = c->nfacts; /* the bound is judged by the facts outside this one: no cycles */
    c->nfacts = i;
    ival b = eval(c, f->bound);
    c->nfacts = saved;
    if (!b.known) continue;
    if (f->upper) { /* e < bound + shift: e <= hi(bound) + shift - 1 */
      aff h;
      if (!aff_add(b.hi, (aff){f->shift - 1, 0}, &h)) continue;
      v.hi = v.known ? aff_lower(v.hi, h, c->bmax) : h;
      if (!v.known) v.lo = (aff){INT64_MIN / 4, 0};
    } else {
      aff l;
      if (!aff_add(b.lo, (aff){f->shift, 0}, &l)) continue;
      v.lo = v.known ? aff_upper(v.lo, l, c->bmax) : l;
      if (!v.known) v.hi = (aff){INT64_MAX / 4, 0};
    }
    v.known = true;
  }
  return v;
}

static ival eval_bin(vctx *c, const nnc_lexpr *e) {
  ival a = eval(c, e->a), b = eval(c, e->b);
  switch ((nnc_lbinop)e->op) {
  case NNC_LB_ADD: return iv_add(a, b);
  case NNC_LB_SUB: return iv_add(a, iv_neg(b));
  case NNC_LB_MUL: return iv_mul(a, b, c->bmax);
  case NNC_LB_FLOORDIV:
    if (!a.known || !is_const(b) || b.lo.c0 <= 0) return unknown;
    return (ival){true, aff_floordiv(a.lo, b.lo.c0, c->bmax, false), aff_floordiv(a.hi, b.lo.c0, c->bmax, true)};
  case NNC_LB_MOD:
    if (!is_const(b) || b.lo.c0 <= 0) return unknown;
    if (a.known && aff_le((aff){0, 0}, a.lo, c->bmax) && aff_le(a.hi, (aff){b.lo.c0 - 1, 0}, c->bmax)) return a;
    return (ival){true, {0, 0}, {b.lo.c0 - 1, 0}};
  case NNC_LB_MIN:
    if (!a.known || !b.known) return a.known ? (ival){true, {INT64_MIN / 4, 0}, a.hi} : b.known ? (ival){true, {INT64_MIN / 4, 0}, b.hi} : unknown;
    return (ival){true, aff_lower(a.lo, b.lo, c->bmax), aff_lower(a.hi, b.hi, c->bmax)};
  case NNC_LB_MAX: /* max(x, lo) is at least lo whatever x is: a clamped data-dependent index */
    if (!a.known || !b.known) return a.known ? (ival){true, a.lo, {INT64_MAX / 4, 0}} : b.known ? (ival){true, b.lo, {INT64_MAX / 4, 0}} : unknown;
    return (ival){true, aff_upper(a.lo, b.lo, c->bmax), aff_upper(a.hi, b.hi, c->bmax)};
  default: return unknown;
  }
}

static ival eval_raw(vctx *c, const nnc_lexpr *e) {
  switch (e->kind) {
  case NNC_LE_INT: return e->type.dtype == NNC_BOOL ? unknown : konst(e->ival);
  case NNC_LE_VAR:
    if (!e->var || e->var->id < 0 || e->var->id >= c->k->nvars || c->assigned[e->var->id]) return unknown;
    return c->vars[e->var->id];
  case NNC_LE_SCALAR: return e->scalar == NNC_LSC_N ? (ival){true, {0, 1}, {0, 1}} : unknown;
  case NNC_LE_BIN: return eval_bin(c, e);
  case NNC_LE_SELECT: {
    ival a = eval(c, e->b), b = eval(c, e->c);
    if (!a.known || !b.known) return unknown;
    return (ival){true, aff_lower(a.lo, b.lo, c->bmax), aff_upper(a.hi, b.hi, c->bmax)};
  }
  case NNC_LE_CAST: return e->a->type.dtype == NNC_I32 || e->a->type.dtype == NNC_I64 || e->a->type.dtype == NNC_U8 ? eval(c, e->a) : unknown;
  case NNC_LE_SPLAT: return eval(c, e->a);
  case NNC_LE_LANE: return (ival){true, {0, 0}, {e->type.lanes - 1, 0}};
  case NNC_LE_THREAD: return (ival){true, {0, 0}, {c->k->block_dim[e->axis] - 1, 0}};
  default: return unknown;
  }
}

static ival eval(vctx *c, const nnc_lexpr *e) {
  if (!e) return unknown;
  return checked(tighten(c, e, eval_raw(c, e)), c->bmax);
}

/* --- facts from conditions ----------------------------------------------------------------- */

static void push_fact(vctx *c, const nnc_lexpr *e, const nnc_lexpr *bound, int64_t shift, bool upper) {
  /* e + k < bound + s  <=>  e < bound + (s - k) */
  for (;;) {
    if (e->kind == NNC_LE_BIN && (e->op == NNC_LB_ADD || e->op == NNC_LB_SUB) && e->b->kind == NNC_LE_INT &&
        e->b->type.dtype == NNC_I64 && e->b->ival > -(INT64_C(1) << 40) && e->b->ival < (INT64_C(1) << 40)) {
      shift += e->op == NNC_LB_ADD ? -e->b->ival : e->b->ival;
      e = e->a;
    } else if (e->kind == NNC_LE_BIN && e->op == NNC_LB_ADD && e->a->kind == NNC_LE_INT && e->a->type.dtype == NNC_I64 &&
               e->a->ival > -(INT64_C(1) << 40) && e->a->ival < (INT64_C(1) << 40)) {
      shift -= e->a->ival;
      e = e->b;
    } else {
      break;
    }
  }
  if (c->nfacts == c->facts_cap) {
    c->facts_cap = c->facts_cap ? 2 * c->facts_cap : 16;
    c->facts = nnc_xrealloc(c->facts, (size_t)c->facts_cap * sizeof *c->facts);
  }
  c->facts[c->nfacts++] = (fact){e, bound, shift, upper};
}

/* What `cond` being true proves: a < b gives a <= b - 1 and b >= a + 1, and so on. */
static void assume(vctx *c, const nnc_lexpr *cond) {
  if (!cond || cond->kind != NNC_LE_BIN || cond->type.lanes != 1) return;
  const nnc_lexpr *a = cond->a, *b = cond->b;
  if (a->type.dtype != NNC_I64 && cond->op != NNC_LB_AND) return;
  switch ((nnc_lbinop)cond->op) {
  case NNC_LB_AND: assume(c, a), assume(c, b); break;
  case NNC_LB_LT: push_fact(c, a, b, 0, true), push_fact(c, b, a, 1, false); break;
  case NNC_LB_LE: push_fact(c, a, b, 1, true), push_fact(c, b, a, 0, false); break;
  case NNC_LB_GT: push_fact(c, b, a, 0, true), push_fact(c, a, b, 1, false); break;
  case NNC_LB_GE: push_fact(c, b, a, 1, true), push_fact(c, a, b, 0, false); break;
  default: break;
  }
}

/* --- accesses --------------------------------------------------------------------------------- */

static const nnc_lexpr *look_through(vctx *c, const nnc_lexpr *e, const nnc_lexpr *const *letval) {
  while (e && e->kind == NNC_LE_VAR && e->var && e->var->id < c->k->nvars && !c->assigned[e->var->id] &&
         letval[e->var->id])
    e = letval[e->var->id];
  return e;
}

/* index == f + s: the rest f (NULL for index == s itself), or false. */
static bool split_summand(const nnc_lexpr *index, const nnc_lexpr *s, const nnc_lexpr **f) {
  if (expr_same(index, s)) return *f = NULL, true;
  if (index->kind != NNC_LE_BIN || index->op != NNC_LB_ADD) return false;
  if (expr_same(index->b, s)) return *f = index->a, true;
  if (expr_same(index->a, s)) return *f = index->b, true;
  return false;
}

/* A mask lane + splat(s) < bound (or <=) bounds the elements index + lane of an access whose
 * index is f + s: the largest enabled element is hi(f) + hi(bound) - 1. */
static bool mask_bound(vctx *c, const nnc_lexpr *mask, const nnc_lexpr *index, const nnc_lexpr *const *letval,
                       aff *elem_hi) {
  mask = look_through(c, mask, letval);
  if (!mask || mask->kind != NNC_LE_BIN) return false;
  if (mask->op == NNC_LB_AND)
    return mask_bound(c, mask->a, index, letval, elem_hi) || mask_bound(c, mask->b, index, letval, elem_hi);
  if (mask->op != NNC_LB_LT && mask->op != NNC_LB_LE) return false;
  const nnc_lexpr *x = look_through(c, mask->a, letval);
  if (!x || x->kind != NNC_LE_BIN || x->op != NNC_LB_ADD) return false;
  const nnc_lexpr *sp = x->a->kind == NNC_LE_LANE ? x->b : x->b->kind == NNC_LE_LANE ? x->a : NULL;
  if (!sp || sp->kind != NNC_LE_SPLAT) return false;
  const nnc_lexpr *f;
  if (!split_summand(index, sp->a, &f)) return false;
  ival fb = f ? eval(c, f) : konst(0), bb = eval(c, mask->b);
  if (!fb.known || !bb.known) return false;
  aff h;
  if (!aff_add(fb.hi, bb.hi, &h) || !aff_add(h, (aff){mask->op == NNC_LB_LT ? -1 : 0, 0}, &h)) return false;
  *elem_hi = h;
  return true;
}

static void check_access(vctx *c, const char *what, const nnc_lbuf *b, const nnc_lexpr *index, int lanes,
                         const nnc_lexpr *mask, const nnc_lexpr *const *letval) {
  char is[256];
  nnc_le_str(index, is, sizeof is);
  aff ext = b->batch_scaled ? (aff){0, b->size / c->bmax} : (aff){b->size, 0};
  ival iv = eval(c, index);
  if (!iv.known) {
    verr(c, "%s %s[%s]: the index cannot be bounded (guard it with an if or a mask)", what, b->name, is);
    return;
  }
  aff hi = iv.hi, mh;
  if (!aff_add(hi, (aff){lanes - 1, 0}, &hi)) hi = (aff){INT64_MAX / 4, 0};
  if (mask && mask_bound(c, mask, index, letval, &mh)) hi = aff_lower(hi, mh, c->bmax);
  aff last = {ext.c0 - 1, ext.c1};
  if (aff_le((aff){0, 0}, iv.lo, c->bmax) && aff_le(hi, last, c->bmax)) return;
  verr(c,
       "%s %s[%s]: cannot prove the access inside the buffer's %lld%s elements (elements [%lld, %lld] at n = 1, "
       "[%lld, %lld] at n = %lld)",
       what, b->name, is, (long long)aff_at(ext, c->bmax), b->batch_scaled ? " (n/B_max of them at batch n)" : "",
       (long long)aff_at(iv.lo, 1), (long long)aff_at(hi, 1), (long long)aff_at(iv.lo, c->bmax),
       (long long)aff_at(hi, c->bmax), (long long)c->bmax);
}

/* --- expressions and statements ------------------------------------------------------------------ */

typedef struct walk {
  vctx *c;
  const nnc_lexpr **letval;
} walk;

static bool owns(const nnc_kernel *k, const nnc_lbuf *b) { return b && b->id >= 0 && b->id < k->nbufs && k->bufs[b->id] == b; }

static void check_expr(walk *w, const nnc_lexpr *e) {
  vctx *c = w->c;
  if (!e) return;
  switch (e->kind) {
  case NNC_LE_POISON: verr(c, "an invalid expression (a constructor was misused)"); return;
  case NNC_LE_VAR:
    if (!e->var || e->var->id < 0 || e->var->id >= c->k->nvars) verr(c, "a variable of another kernel");
    else if (!c->live[e->var->id]) verr(c, "variable %s used outside its definition's scope", e->var->name);
    else if (!nnc_lt_equal(e->type, e->var->type)) verr(c, "variable %s read with another type", e->var->name);
    return;
  case NNC_LE_LOAD:
    if (!owns(c->k, e->buf)) {
      verr(c, "load from a buffer of another kernel");
      return;
    }
    if (e->type.dtype != e->buf->dtype) verr(c, "load from %s with the wrong dtype", e->buf->name);
    break;
  case NNC_LE_THREAD:
  case NNC_LE_BLOCK:
  case NNC_LE_SHUFFLE:
    if (!c->k->gpu) verr(c, "GPU thread, block or shuffle expressions in a CPU kernel");
    /* A shuffle is a warp-level barrier (the phase emulator splits the phase there), so it sits
     * where a barrier may: in a statement directly in a thread loop's body. */
    else if (e->kind == NNC_LE_SHUFFLE && (!c->nearest || c->nearest->kind != NNC_LS_FOR ||
                                           c->nearest->loop != NNC_LOOP_GPU_THREAD))
      verr(c, "a shuffle must sit in a statement directly in the body of a GPU thread loop (not in an if or a "
              "nested loop there)");
    break;
  default: break;
  }
  check_expr(w, e->a);
  check_expr(w, e->b);
  check_expr(w, e->c);
  if (e->kind == NNC_LE_LOAD && owns(c->k, e->buf))
    check_access(c, "load from", e->buf, e->a, e->type.lanes, e->b, w->letval);
}

static void walk_stmt(walk *w, const nnc_lstmt *s);

static void walk_block(walk *w, const nnc_lstmt *s) {
  for (int i = 0; i < s->nitems; i++) walk_stmt(w, s->items[i]);
  for (int i = 0; i < s->nitems; i++) /* lets end with their block */
    if (s->items[i]->kind == NNC_LS_LET && s->items[i]->var) {
      w->c->live[s->items[i]->var->id] = false;
      w->letval[s->items[i]->var->id] = NULL;
    }
}

static bool static_bound(const nnc_lexpr *e) { return e->kind == NNC_LE_INT; }

static void walk_for(walk *w, const nnc_lstmt *s) {
  vctx *c = w->c;
  int id = s->var->id;
  check_expr(w, s->lo);
  check_expr(w, s->hi);
  bool gpu_loop = s->loop == NNC_LOOP_GPU_BLOCK || s->loop == NNC_LOOP_GPU_THREAD;
  if (gpu_loop && !c->k->gpu) verr(c, "loop %s: a GPU loop in a CPU kernel", s->var->name);
  if (gpu_loop && (s->axis < 0 || s->axis > 2)) verr(c, "loop %s: GPU axis %d (0..2)", s->var->name, s->axis);
  if (s->loop == NNC_LOOP_GPU_THREAD && (!static_bound(s->lo) || !static_bound(s->hi)))
    verr(c, "loop %s: a GPU thread loop needs static bounds", s->var->name);
  if (s->loop == NNC_LOOP_UNROLLED && (!static_bound(s->lo) || !static_bound(s->hi)))
    verr(c, "loop %s: an unrolled loop needs static bounds", s->var->name);
  if (c->live[id]) {
    verr(c, "loop variable %s is already defined", s->var->name);
    return;
  }
  ival lo = eval(c, s->lo), hi = eval(c, s->hi);
  ival range = unknown;
  if (lo.known && hi.known) {
    aff last = {hi.hi.c0 - 1, hi.hi.c1};
    /* the last value taken: exact when the step divides the trip */
    if (s->step > 1 && lo.lo.c1 == 0 && lo.lo.c0 == lo.hi.c0 && lo.hi.c1 == 0 && hi.hi.c1 % s->step == 0)
      last = (aff){lo.lo.c0 + floordiv(hi.hi.c0 - 1 - lo.lo.c0, s->step) * s->step, hi.hi.c1};
    range = checked((ival){true, lo.lo, last}, c->bmax);
  }
  ival saved = c->vars[id];
  const nnc_lstmt *near = c->nearest;
  c->vars[id] = range;
  c->live[id] = c->loopvar[id] = true;
  c->nearest = s;
  walk_stmt(w, s->body);
  c->nearest = near;
  c->live[id] = c->loopvar[id] = false;
  c->vars[id] = saved;
}

static void walk_stmt(walk *w, const nnc_lstmt *s) {
  vctx *c = w->c;
  if (!s) return;
  switch (s->kind) {
  case NNC_LS_BLOCK: walk_block(w, s); break;
  case NNC_LS_FOR: walk_for(w, s); break;
  case NNC_LS_IF: {
    check_expr(w, s->cond);
    const nnc_lstmt *near = c->nearest;
    c->nearest = s;
    int nf = c->nfacts;
    assume(c, s->cond);
    walk_stmt(w, s->then_s);
    c->nfacts = nf;
    walk_stmt(w, s->else_s);
    c->nearest = near;
    break;
  }
  case NNC_LS_STORE:
  case NNC_LS_ATOMIC_ADD: {
    const char *what = s->kind == NNC_LS_STORE ? "store to" : "atomic_add to";
    if (!owns(c->k, s->buf)) {
      verr(c, "%s a buffer of another kernel", what);
      break;
    }
    check_expr(w, s->index);
    check_expr(w, s->value);
    check_expr(w, s->mask);
    check_access(c, what, s->buf, s->index, s->value->type.lanes, s->mask, w->letval);
    break;
  }
  case NNC_LS_LET: {
    check_expr(w, s->value);
    int id = s->var->id;
    if (c->live[id]) verr(c, "variable %s is defined twice", s->var->name);
    c->live[id] = true;
    c->vars[id] = c->assigned[id] ? unknown : eval(c, s->value);
    w->letval[id] = c->assigned[id] ? NULL : s->value;
    break;
  }
  case NNC_LS_ASSIGN:
    check_expr(w, s->value);
    if (!c->live[s->var->id]) verr(c, "variable %s assigned before its definition", s->var->name);
    else if (c->loopvar[s->var->id]) verr(c, "loop variable %s is assigned", s->var->name);
    break;
  case NNC_LS_BARRIER:
    if (!c->k->gpu || !c->nearest || c->nearest->kind != NNC_LS_FOR || c->nearest->loop != NNC_LOOP_GPU_THREAD)
      verr(c, "a barrier must sit directly in the body of a GPU thread loop (not in an if or a nested loop)");
    break;
  case NNC_LS_COMMENT: break;
  }
}

static void mark_assigned(vctx *c, const nnc_lstmt *s) {
  if (!s) return;
  if (s->kind == NNC_LS_ASSIGN && s->var && s->var->id >= 0 && s->var->id < c->k->nvars) c->assigned[s->var->id] = true;
  for (int i = 0; s->kind == NNC_LS_BLOCK && i < s->nitems; i++) mark_assigned(c, s->items[i]);
  if (s->kind == NNC_LS_FOR) mark_assigned(c, s->body);
  if (s->kind == NNC_LS_IF) mark_assigned(c, s->then_s), mark_assigned(c, s->else_s);
}

/* Variables belong to the kernel; statements refer to them by id. */
static bool vars_in_range(const nnc_kernel *k, const nnc_lstmt *s) {
  if (!s) return true;
  if ((s->kind == NNC_LS_FOR || s->kind == NNC_LS_LET || s->kind == NNC_LS_ASSIGN) &&
      (!s->var || s->var->id < 0 || s->var->id >= k->nvars))
    return false;
  for (int i = 0; s->kind == NNC_LS_BLOCK && i < s->nitems; i++)
    if (!vars_in_range(k, s->items[i])) return false;
  if (s->kind == NNC_LS_FOR) return vars_in_range(k, s->body);
  if (s->kind == NNC_LS_IF) return vars_in_range(k, s->then_s) && vars_in_range(k, s->else_s);
  return true;
}

#define NNC_LOCAL_MAX 4096
#define NNC_SHARED_MAX_BYTES (48 * 1024)

static void check_buffers(vctx *c) {
  const nnc_kernel *k = c->k;
  bool seen_other = false;
  int64_t shared_bytes = 0;
  for (int i = 0; i < k->nbufs; i++) {
    const nnc_lbuf *b = k->bufs[i];
    if (b->scope == NNC_SCOPE_GLOBAL && seen_other) verr(c, "global buffer %s after a non-global one", b->name);
    if (b->scope != NNC_SCOPE_GLOBAL) seen_other = true;
    if (b->batch_scaled && (b->scope != NNC_SCOPE_GLOBAL || b->size % k->batch_max != 0))
      verr(c, "buffer %s: only a global buffer whose size is a multiple of B_max = %lld scales with the batch",
           b->name, (long long)k->batch_max);
    if (b->scope == NNC_SCOPE_SHARED && !k->gpu) verr(c, "shared buffer %s in a CPU kernel", b->name);
    if (b->scope == NNC_SCOPE_LOCAL && b->size > NNC_LOCAL_MAX)
      verr(c, "local buffer %s holds %lld elements (at most %d)", b->name, (long long)b->size, NNC_LOCAL_MAX);
    if (b->scope == NNC_SCOPE_SHARED) shared_bytes += b->size * (int64_t)nnc_dtype_size(b->dtype);
  }
  if (shared_bytes > NNC_SHARED_MAX_BYTES)
    verr(c, "shared buffers take %lld bytes (at most %d)", (long long)shared_bytes, NNC_SHARED_MAX_BYTES);
}

bool nnc_lk_verify(const nnc_kernel *k, nnc_diags *d) {
  vctx c = {.k = k, .d = d, .ok = true, .bmax = k->batch_max > 0 ? k->batch_max : 1};
  if (k->nerrors) {
    verr(&c, "malformed: %s%s", k->first_error ? k->first_error : "a constructor was misused",
         k->nerrors > 1 ? " (and more)" : "");
    return false;
  }
  if (k->batch_max < 1) verr(&c, "B_max %lld is not positive", (long long)k->batch_max);
  if (!vars_in_range(k, k->body)) {
    verr(&c, "a statement uses a variable of another kernel");
    return false;
  }
  check_buffers(&c);
  size_t nv = (size_t)(k->nvars > 0 ? k->nvars : 1);
  c.vars = nnc_xcalloc(nv, sizeof *c.vars);
  c.live = nnc_xcalloc(nv, sizeof *c.live);
  c.loopvar = nnc_xcalloc(nv, sizeof *c.loopvar);
  c.assigned = nnc_xcalloc(nv, sizeof *c.assigned);
  walk w = {&c, nnc_xcalloc(nv, sizeof *w.letval)};
  mark_assigned(&c, k->body);
  walk_stmt(&w, k->body);
  free(c.vars), free(c.live), free(c.loopvar), free(c.assigned), free(c.facts), free(w.letval);
  return c.ok;
}

/* --- structural hash and equality ------------------------------------------------------------- */

typedef struct tokens {
  int64_t *t;
  int n, cap;
  int *canon;     /* var id -> its number by first appearance, -1 before */
  int nextvar;
  int nvars;
} tokens;

static void tok(tokens *s, int64_t v) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 256;
    s->t = nnc_xrealloc(s->t, (size_t)s->cap * sizeof *s->t);
  }
  s->t[s->n++] = v;
}

static void tok_var(tokens *s, const nnc_lvar *v) {
  if (!v || v->id < 0 || v->id >= s->nvars) return tok(s, -2);
  if (s->canon[v->id] < 0) s->canon[v->id] = s->nextvar++;
  tok(s, s->canon[v->id]);
  tok(s, v->type.dtype), tok(s, v->type.lanes);
}

static void tok_expr(tokens *s, const nnc_lexpr *e) {
  if (!e) return tok(s, -1);
  int64_t bits;
  memcpy(&bits, &e->fval, sizeof bits);
  tok(s, e->kind), tok(s, e->type.dtype), tok(s, e->type.lanes), tok(s, e->op), tok(s, e->ival), tok(s, bits);
  tok(s, e->scalar), tok(s, e->axis), tok(s, e->buf ? e->buf->id : -1);
  if (e->kind == NNC_LE_VAR) tok_var(s, e->var);
  tok_expr(s, e->a), tok_expr(s, e->b), tok_expr(s, e->c);
}

static void tok_stmt(tokens *s, const nnc_lstmt *st) {
  if (!st) return tok(s, -1);
  if (st->kind == NNC_LS_COMMENT) return;
  tok(s, st->kind + 1000);
  switch (st->kind) {
  case NNC_LS_BLOCK:
    for (int i = 0; i < st->nitems; i++) tok_stmt(s, st->items[i]);
    tok(s, -3);
    break;
  case NNC_LS_FOR:
    tok_var(s, st->var), tok_expr(s, st->lo), tok_expr(s, st->hi);
    tok(s, st->step), tok(s, st->loop), tok(s, st->axis);
    tok_stmt(s, st->body);
    break;
  case NNC_LS_IF: tok_expr(s, st->cond), tok_stmt(s, st->then_s), tok_stmt(s, st->else_s); break;
  case NNC_LS_STORE:
  case NNC_LS_ATOMIC_ADD:
    tok(s, st->buf ? st->buf->id : -1), tok_expr(s, st->index), tok_expr(s, st->value), tok_expr(s, st->mask);
    break;
  case NNC_LS_LET:
  case NNC_LS_ASSIGN: tok_var(s, st->var), tok_expr(s, st->value); break;
  default: break;
  }
}

static tokens tokenize(const nnc_kernel *k) {
  tokens s = {0};
  s.nvars = k->nvars;
  s.canon = nnc_xmalloc((size_t)(k->nvars > 0 ? k->nvars : 1) * sizeof *s.canon);
  for (int i = 0; i < k->nvars; i++) s.canon[i] = -1;
  tok(&s, k->gpu), tok(&s, k->batch_max), tok(&s, k->nbufs);
  for (int i = 0; i < k->nbufs; i++) {
    const nnc_lbuf *b = k->bufs[i];
    tok(&s, b->dtype), tok(&s, b->scope), tok(&s, b->size), tok(&s, b->batch_scaled);
  }
  tok_stmt(&s, k->body);
  return s;
}

uint64_t nnc_lk_hash(const nnc_kernel *k) {
  tokens s = tokenize(k);
  uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a over the tokens' bytes */
  for (int i = 0; i < s.n; i++)
    for (int b = 0; b < 8; b++) h = (h ^ (uint8_t)((uint64_t)s.t[i] >> (8 * b))) * UINT64_C(0x100000001b3);
  free(s.t), free(s.canon);
  return h;
}

bool nnc_lk_equal(const nnc_kernel *a, const nnc_kernel *b) {
  tokens x = tokenize(a), y = tokenize(b);
  bool eq = x.n == y.n && (x.n == 0 || memcmp(x.t, y.t, (size_t)x.n * sizeof *x.t) == 0);
  free(x.t), free(x.canon), free(y.t), free(y.canon);
  return eq;
}
