/* Elaboration: syntax tree -> graph IR module (DESIGN §3, §4; docs/language.md).
 *
 * The tree is evaluated like a program whose tensor values are graph nodes: names live in
 * scopes (hyperparameters at the top, then the model's inputs, layers and variables; a user
 * layer's forward sees its arguments, its inner layers and the hyperparameters), layer
 * declarations create instances whose parameters appear once their input sizes are known,
 * and calls of ops and layers append primitives to the forward graph. This file holds the
 * environment, expressions, statements, model inputs, hyperparameters and the train block;
 * builtins.c the ops and composites, layers.c the layers. */
#include "elab.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- values ---------------------------------------------------------------------------------- */

el_val el_poison(void) { return (el_val){.kind = V_POISON}; }

el_val el_num(double v, bool is_int, nnc_loc loc) { return (el_val){.kind = V_NUM, .num = v, .is_int = is_int, .loc = loc}; }

el_val el_tensor(nnc_node *n, nnc_loc loc) { return n ? (el_val){.kind = V_TENSOR, .node = n, .loc = loc} : el_poison(); }

const char *el_type_str(el_ctx *c, const nnc_type *t) {
  char buf[160];
  return nnc_arena_strdup(c->arena, nnc_type_str(t, buf, sizeof buf));
}

/* What a value is, for messages: its type for tensors, else its kind. */
const char *el_val_desc(el_ctx *c, const el_val *v) {
  switch (v->kind) {
  case V_TENSOR: return el_type_str(c, &v->node->type);
  case V_NUM: return v->is_int ? "an integer" : "a number";
  case V_BOOL: return "a boolean";
  case V_STR: return "a string";
  case V_LIST: return "a list";
  case V_TUPLE: return "several values";
  case V_LAYER: return "a layer";
  case V_NONE: return "no value";
  default: return "an invalid value";
  }
}

void el_internal(el_ctx *c, nnc_loc loc, const char *what) {
  nnc_error(c->d, loc, "internal error: %s", what);
}

/* --- scopes ---------------------------------------------------------------------------------- */

el_scope *el_scope_new(el_ctx *c, el_scope *parent) {
  el_scope *s = nnc_arena_alloc(c->arena, sizeof *s);
  s->parent = parent;
  return s;
}

static el_entry *scope_find_local(el_scope *s, const char *name) {
  for (int i = s->n - 1; i >= 0; i--)
    if (strcmp(s->entries[i].name, name) == 0) return &s->entries[i];
  return NULL;
}

el_entry *el_lookup(el_scope *s, const char *name) {
  for (; s; s = s->parent) {
    el_entry *e = scope_find_local(s, name);
    if (e) return e;
  }
  return NULL;
}

el_entry *el_define(el_ctx *c, el_scope *s, const char *name, el_entry_kind kind, el_val v, nnc_loc loc) {
  el_entry *e = scope_find_local(s, name);
  if (!e) {
    if (s->n == s->cap) {
      int cap = s->cap ? s->cap * 2 : 16;
      s->entries = nnc_arena_realloc(c->arena, s->entries, sizeof(el_entry) * (size_t)s->cap, sizeof(el_entry) * (size_t)cap);
      s->cap = cap;
    }
    e = &s->entries[s->n++];
    memset(e, 0, sizeof *e);
    e->name = nnc_arena_strdup(c->arena, name);
  }
  e->kind = kind;
  e->val = v;
  e->loc = loc;
  return e;
}

/* Edit distance, for "did you mean". */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return 99;
  int d[64][64];
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
      d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
  return d[la][lb];
}

static void consider(const char *name, const char *cand, const char **best, int *bestd) {
  int dist = edit_distance(name, cand);
  int limit = strlen(name) >= 6 ? 2 : 1;
  if (dist <= limit && dist < *bestd && strcmp(name, cand) != 0) {
    *best = cand;
    *bestd = dist;
  }
}

/* The closest name in scope (or in extra, a NULL-terminated list), or NULL. */
const char *el_suggest(el_scope *s, const char *name, const char *const *extra) {
  const char *best = NULL;
  int bestd = 99;
  for (; s; s = s->parent)
    for (int i = 0; i < s->n; i++) consider(name, s->entries[i].name, &best, &bestd);
  for (int i = 0; extra && extra[i]; i++) consider(name, extra[i], &best, &bestd);
  return best;
}

/* --- hyperparameters --------------------------------------------------------------------------- */

nnc_override *el_find_override(el_ctx *c, const char *name) {
  for (int i = 0; c->opts && i < c->opts->noverrides; i++)
    if (strcmp(c->opts->overrides[i].name, name) == 0) return &c->opts->overrides[i];
  return NULL;
}

/* An override's value as a number; an error (without location) when it is not one. */
bool el_override_number(el_ctx *c, nnc_override *o, el_val *out) {
  char *end;
  double v = strtod(o->value, &end);
  if (end == o->value || *end || !isfinite(v)) {
    nnc_error(c->d, (nnc_loc){0}, "--set %s=%s: not a number", o->name, o->value);
    return false;
  }
  bool is_int = !strpbrk(o->value, ".eEnN") && v == floor(v) && fabs(v) < 9e15;
  *out = el_num(v, is_int, (nnc_loc){0});
  return true;
}

static el_val resolve_hparam(el_ctx *c, el_entry *e) {
  if (e->state == 2) return e->val;
  if (e->state == 1) {
    nnc_error(c->d, e->loc, "hyperparameter '%s' is defined in terms of itself", e->name);
    e->state = 2;
    e->val = el_poison();
    return e->val;
  }
  e->state = 1;
  el_val v;
  nnc_override *o = el_find_override(c, e->name);
  if (o) {
    o->used = true;
    if (!el_override_number(c, o, &v)) v = el_poison();
    v.loc = e->loc;
  } else {
    v = el_eval(c, c->globals, e->hparam->a);
    if (v.kind != V_NUM && v.kind != V_BOOL && v.kind != V_STR && v.kind != V_LIST && v.kind != V_POISON) {
      nnc_error(c->d, e->hparam->a->loc, "hyperparameter '%s' must be a number, got %s", e->name, el_val_desc(c, &v));
      v = el_poison();
    }
  }
  e->val = v;
  e->state = 2;
  return v;
}

static void declare_hparams(el_ctx *c) {
  for (int i = 0; i < c->file->list.n; i++) {
    const nnc_ast *h = c->file->list.items[i];
    if (h->kind != AST_HPARAM || !h->a) continue;
    el_entry *prev = scope_find_local(c->globals, h->name);
    if (prev) {
      nnc_error(c->d, h->loc, "redefinition of hyperparameter '%s'", h->name);
      nnc_note(c->d, prev->loc, "previous definition is here");
      continue;
    }
    el_entry *e = el_define(c, c->globals, h->name, E_HPARAM, el_poison(), h->loc);
    e->hparam = h;
  }
  for (int i = 0; i < c->globals->n; i++) resolve_hparam(c, &c->globals->entries[i]);
}

/* --- expressions ------------------------------------------------------------------------------ */

static el_val eval_name(el_ctx *c, el_scope *s, const nnc_ast *e) {
  el_entry *ent = el_lookup(s, e->name);
  if (!ent) {
    if (strcmp(e->name, "true") == 0 || strcmp(e->name, "false") == 0)
      return (el_val){.kind = V_BOOL, .num = e->name[0] == 't', .loc = e->loc};
    if (strcmp(e->name, "inf") == 0) return el_num(INFINITY, false, e->loc); /* masked_fill(x, m, -inf) */
    const char *near = el_suggest(s, e->name, NULL);
    if (near)
      nnc_error(c->d, e->loc, "unknown name '%s'; did you mean '%s'?", e->name, near);
    else
      nnc_error(c->d, e->loc, "unknown name '%s'", e->name);
    return el_poison();
  }
  if (ent->kind == E_HPARAM) {
    el_val v = resolve_hparam(c, ent);
    return v;
  }
  return ent->val;
}

static double num_binop(nnc_ast_op op, double a, double b) {
  switch (op) {
  case AST_OP_ADD: return a + b;
  case AST_OP_SUB: return a - b;
  case AST_OP_MUL: return a * b;
  case AST_OP_DIV: return a / b;
  case AST_OP_POW: return pow(a, b);
  case AST_OP_LT: return a < b;
  case AST_OP_LE: return a <= b;
  case AST_OP_GT: return a > b;
  case AST_OP_GE: return a >= b;
  case AST_OP_EQ: return a == b;
  case AST_OP_NE: return a != b;
  default: return NAN;
  }
}

/* Arithmetic on numbers at elaboration time (sizes, hyperparameters): integers stay integers
 * while the result is exact. */
static el_val eval_num_binop(el_ctx *c, const nnc_ast *e, const el_val *a, const el_val *b) {
  if (e->op == AST_OP_MATMUL) {
    nnc_error(c->d, e->loc, "'@' needs tensors, got %s and %s", el_val_desc(c, a), el_val_desc(c, b));
    return el_poison();
  }
  if (e->op == AST_OP_DIV && b->num == 0) {
    nnc_error(c->d, e->loc, "division by zero");
    return el_poison();
  }
  double r = num_binop(e->op, a->num, b->num);
  if (!isfinite(r)) {
    nnc_error(c->d, e->loc, "the value of this expression is not finite");
    return el_poison();
  }
  bool cmp = e->op >= AST_OP_LT && e->op <= AST_OP_NE;
  bool is_int = cmp || (a->is_int && b->is_int && r == floor(r) && fabs(r) < 9e15 && !(e->op == AST_OP_POW && b->num < 0));
  el_val v = el_num(r, is_int, e->loc);
  if (cmp) v.kind = V_BOOL;
  return v;
}

static const char *binop_name(nnc_ast_op op) { return nnc_ast_op_str(op); }

/* `outs + [h]`: lists join, as Python's do (how a loop collects its results). */
static el_val list_concat(el_ctx *c, const el_val *a, const el_val *b, nnc_loc loc) {
  el_val v = {.kind = V_LIST, .loc = loc, .nitems = a->nitems + b->nitems};
  v.items = nnc_arena_alloc(c->arena, sizeof(el_val) * (size_t)(v.nitems + 1));
  memcpy(v.items, a->items, sizeof(el_val) * (size_t)a->nitems);
  memcpy(v.items + a->nitems, b->items, sizeof(el_val) * (size_t)b->nitems);
  return v;
}

static el_val eval_binop(el_ctx *c, el_scope *s, const nnc_ast *e) {
  el_val a = el_eval(c, s, e->a), b = el_eval(c, s, e->b);
  if (a.kind == V_POISON || b.kind == V_POISON) return el_poison();
  if (a.kind == V_LIST && b.kind == V_LIST && e->op == AST_OP_ADD) return list_concat(c, &a, &b, e->loc);
  bool an = a.kind == V_NUM || a.kind == V_BOOL, bn = b.kind == V_NUM || b.kind == V_BOOL;
  if (an && bn) return eval_num_binop(c, e, &a, &b);
  if ((a.kind != V_TENSOR && !an) || (b.kind != V_TENSOR && !bn)) {
    nnc_error(c->d, e->loc, "operator '%s' needs numbers or tensors, got %s and %s", binop_name(e->op),
              el_val_desc(c, &a), el_val_desc(c, &b));
    return el_poison();
  }
  static const nnc_op arith[] = {[AST_OP_ADD] = NNC_OP_add, [AST_OP_SUB] = NNC_OP_sub, [AST_OP_MUL] = NNC_OP_mul,
                                 [AST_OP_DIV] = NNC_OP_div, [AST_OP_POW] = NNC_OP_pow};
  switch (e->op) {
  case AST_OP_ADD: case AST_OP_SUB: case AST_OP_MUL: case AST_OP_DIV: case AST_OP_POW:
    return el_arith(c, arith[e->op], &a, &b, binop_name(e->op), e->loc);
  case AST_OP_MATMUL: {
    /* `a @ b` is matmul(a, b): build a call-shaped evaluation through the builtin. */
    nnc_arena *ar = c->arena;
    nnc_ast *call = nnc_ast_new(ar, AST_CALL, e->loc);
    nnc_ast_push(ar, &call->list, e->a);
    nnc_ast_push(ar, &call->list, e->b);
    (void)a, (void)b;
    return el_call_builtin(c, s, "matmul", call);
  }
  default: {
    static const nnc_cmp cmps[] = {[AST_OP_LT] = NNC_CMP_LT, [AST_OP_LE] = NNC_CMP_LE, [AST_OP_GT] = NNC_CMP_GT,
                                   [AST_OP_GE] = NNC_CMP_GE, [AST_OP_EQ] = NNC_CMP_EQ, [AST_OP_NE] = NNC_CMP_NE};
    nnc_node *x, *y;
    if (!el_broadcast_pair(c, &a, &b, binop_name(e->op), e->loc, &x, &y)) return el_poison();
    nnc_node *out = el_new(c, NNC_OP_cmp, 2, (nnc_node *[]){x, y}, e->loc);
    if (out) nnc_node_set_int(out, NNC_ATTR_cmp, cmps[e->op]);
    return el_tensor(el_done(c, out), e->loc);
  }
  }
}

static el_val eval_unop(el_ctx *c, el_scope *s, const nnc_ast *e) {
  el_val a = el_eval(c, s, e->a);
  if (a.kind == V_POISON) return a;
  if (a.kind == V_NUM) return el_num(-a.num, a.is_int, e->loc);
  if (a.kind != V_TENSOR) {
    nnc_error(c->d, e->loc, "cannot negate %s", el_val_desc(c, &a));
    return el_poison();
  }
  if (a.node->type.dtype == NNC_U8) {
    nnc_error(c->d, e->loc, "cannot negate %s: cast it to f32 first", el_val_desc(c, &a));
    return el_poison();
  }
  return el_tensor(el_unary(c, NNC_OP_neg, a.node, e->loc), e->loc);
}

static el_val eval_list(el_ctx *c, el_scope *s, const nnc_ast *e) {
  el_val v = {.kind = V_LIST, .loc = e->loc, .nitems = e->list.n};
  v.items = nnc_arena_alloc(c->arena, sizeof(el_val) * (size_t)(e->list.n + 1));
  bool poison = false;
  for (int i = 0; i < e->list.n; i++) {
    v.items[i] = el_eval(c, s, e->list.items[i]);
    poison |= v.items[i].kind == V_POISON;
  }
  return poison ? el_poison() : v;
}

static el_val eval_call(el_ctx *c, el_scope *s, const nnc_ast *e) {
  const nnc_ast *callee = e->a;
  if (!callee || callee->kind != AST_NAME) {
    nnc_error(c->d, e->loc, "only named ops and layers can be called");
    return el_poison();
  }
  const char *name = callee->name;
  el_entry *ent = el_lookup(s, name);
  if (ent && ent->kind == E_LAYER) return el_apply_layer(c, s, ent->val.layer, e);
  if (ent && ent->kind != E_LAYER) {
    nnc_error(c->d, callee->loc, "'%s' is not a layer or an op and cannot be called", name);
    return el_poison();
  }
  if (el_is_builtin_op(name)) return el_call_builtin(c, s, name, e);
  bool user_layer = false;
  for (int i = 0; i < c->file->list.n; i++) {
    const nnc_ast *d = c->file->list.items[i];
    if (d->kind == AST_LAYERDEF && strcmp(d->name, name) == 0) user_layer = true;
  }
  if (user_layer || el_is_builtin_layer(name)) {
    nnc_error(c->d, callee->loc, "'%s' is a layer type: declare an instance with 'layer NAME = %s(...)' and call that",
              name, name);
    return el_poison();
  }
  const char *near = el_suggest(NULL, name, el_builtin_names);
  if (!near) near = el_suggest(s, name, NULL);
  if (near)
    nnc_error(c->d, callee->loc, "unknown op '%s'; did you mean '%s'?", name, near);
  else
    nnc_error(c->d, callee->loc, "unknown layer or op '%s'", name);
  for (int i = 0; i < e->list.n; i++) {
    const nnc_ast *arg = e->list.items[i];
    el_eval(c, s, arg->kind == AST_KV ? arg->a : arg); /* independent errors inside still count */
  }
  return el_poison();
}

el_val el_eval(el_ctx *c, el_scope *s, const nnc_ast *e) {
  if (!e) return el_poison();
  if (c->depth >= NNC_MAX_NESTING) {
    nnc_error(c->d, e->loc, "expression nested too deeply");
    return el_poison();
  }
  c->depth++;
  el_val v;
  switch (e->kind) {
  case AST_NUM: v = el_num(e->is_int ? (double)e->ival : e->num, e->is_int, e->loc); break;
  case AST_STR: v = (el_val){.kind = V_STR, .str = e->str, .loc = e->loc}; break;
  case AST_NAME: v = eval_name(c, s, e); break;
  case AST_LIST: v = eval_list(c, s, e); break;
  case AST_BINOP: v = eval_binop(c, s, e); break;
  case AST_UNOP: v = eval_unop(c, s, e); break;
  case AST_CALL: v = eval_call(c, s, e); break;
  case AST_INDEX: v = el_index(c, s, e); break;
  case AST_ATTR:
    nnc_error(c->d, e->loc, "'.%s' is only allowed in 'freeze' and weight tying (a.weight = b.weight)", e->name);
    v = el_poison();
    break;
  default:
    nnc_error(c->d, e->loc, "expected an expression, found a %s", nnc_ast_kind_name(e->kind));
    v = el_poison();
    break;
  }
  c->depth--;
  return v;
}

/* --- statements ------------------------------------------------------------------------------- */

static bool is_declared_here(el_ctx *c, el_scope *s, const char *name, nnc_loc loc, const char *what) {
  el_entry *prev = scope_find_local(s, name);
  if (!prev || (prev->kind == E_VAR && strcmp(what, "layer") != 0)) return false;
  if (prev->kind == E_VAR && prev->val.kind != V_TENSOR) return false;
  nnc_error(c->d, loc, "redefinition of '%s'", name);
  nnc_note(c->d, prev->loc, "previous definition is here");
  return true;
}

static void exec_layer_decl(el_ctx *c, el_scope *s, const nnc_ast *st, const char *prefix) {
  if (is_declared_here(c, s, st->name, st->loc, "layer")) return;
  const char *full = prefix ? nnc_arena_printf(c->arena, "%s.%s", prefix, st->name) : st->name;
  el_layer *l = el_instantiate(c, s, st->name, full, st->a);
  el_val v = l ? (el_val){.kind = V_LAYER, .layer = l, .loc = st->loc} : el_poison();
  el_define(c, s, st->name, E_LAYER, v, st->loc);
}

static void exec_freeze(el_ctx *c, el_scope *s, const nnc_ast *st) {
  for (int i = 0; i < st->list.n; i++) {
    const char *suffix = NULL;
    el_layer *l = el_find_layer_path(c, s, st->list.items[i], &suffix);
    if (!l) continue;
    if (suffix) {
      nnc_error(c->d, st->list.items[i]->loc, "freeze takes layers, not parameters: write 'freeze %s'", l->name);
      continue;
    }
    el_freeze_layer(c, l);
  }
}

static void exec_assign(el_ctx *c, el_scope *s, const nnc_ast *st) {
  if (st->list.n == 1 && st->list.items[0]->kind == AST_ATTR) {
    el_tie(c, s, st->list.items[0], st->a);
    return;
  }
  el_val v = el_eval(c, s, st->a);
  int n = st->list.n;
  bool several = v.kind == V_TUPLE || (v.kind == V_LIST && n > 1); /* a, b = split(x, 2) unpacks */
  if (n > 1 && v.kind != V_POISON && (!several || v.nitems != n)) {
    nnc_error(c->d, st->loc, "%d names on the left but %s on the right", n,
              several ? nnc_arena_printf(c->arena, "%d values", v.nitems) : "one value");
    v = el_poison();
  }
  if (n == 1 && v.kind == V_TUPLE) {
    nnc_error(c->d, st->a->loc, "this returns %d values; name each: a, b = ...", v.nitems);
    v = el_poison();
  }
  for (int i = 0; i < n; i++) {
    const nnc_ast *t = st->list.items[i];
    if (t->kind != AST_NAME) {
      nnc_error(c->d, t->loc, "cannot assign to this: expected a name");
      continue;
    }
    el_entry *prev = scope_find_local(s, t->name);
    if (prev && prev->kind != E_VAR) {
      nnc_error(c->d, t->loc, "cannot assign to '%s': it is a %s", t->name, prev->kind == E_LAYER ? "layer" : "hyperparameter");
      nnc_note(c->d, prev->loc, "'%s' is defined here", t->name);
      continue;
    }
    el_val item = v.kind == V_POISON ? v : n > 1 ? v.items[i] : v;
    if (item.kind == V_TENSOR) item.loc = st->a->loc;
    el_define(c, s, t->name, E_VAR, item, t->loc);
  }
}

static void exec_minimize(el_ctx *c, el_scope *s, const nnc_ast *st) {
  if (c->mode == NNC_MODE_PREDICT) return; /* predict has no objective and no labels */
  if (c->have_loss) {
    nnc_error(c->d, st->loc, "a model has one objective: a second 'minimize'");
    nnc_note(c->d, c->loss_loc, "the first one is here");
    return;
  }
  c->have_loss = true;
  c->loss_loc = st->loc;
  el_val v = el_eval(c, s, st->a);
  if (v.kind == V_POISON) return;
  if (v.kind != V_TENSOR || v.node->type.rank != 0 || v.node->type.dtype != NNC_F32) {
    nnc_error(c->d, st->a->loc, "the objective must be a scalar f32 (a loss), got %s", el_val_desc(c, &v));
    return;
  }
  nnc_graph_add_output(c->g, "loss", v.node);
  c->g->loss = c->g->noutputs - 1;
}

static void exec_return_model(el_ctx *c, el_scope *s, const nnc_ast *st, bool *returned) {
  if (*returned) {
    nnc_error(c->d, st->loc, "a model returns once: a second 'return'");
    return;
  }
  *returned = true;
  c->has_return = true;
  for (int i = 0; i < st->list.n; i++) {
    const nnc_ast *e = st->list.items[i];
    el_val v = el_eval(c, s, e);
    if (v.kind == V_POISON) continue;
    if (v.kind != V_TENSOR) {
      nnc_error(c->d, e->loc, "a model returns tensors, got %s", el_val_desc(c, &v));
      continue;
    }
    const char *name = e->kind == AST_NAME ? e->name : nnc_arena_printf(c->arena, "output%d", i);
    for (int j = 0; j < c->g->noutputs; j++)
      if (strcmp(c->g->outputs[j].name, name) == 0) name = nnc_arena_printf(c->arena, "output%d", i);
    nnc_graph_add_output(c->g, name, v.node);
  }
}

static el_val forward_return(el_ctx *c, el_scope *s, const nnc_ast *st) {
  if (st->list.n == 1) return el_eval(c, s, st->list.items[0]);
  el_val t = {.kind = V_TUPLE, .loc = st->loc, .nitems = st->list.n};
  t.items = nnc_arena_alloc(c->arena, sizeof(el_val) * (size_t)st->list.n);
  bool poison = false;
  for (int i = 0; i < st->list.n; i++) {
    t.items[i] = el_eval(c, s, st->list.items[i]);
    poison |= t.items[i].kind == V_POISON;
  }
  return poison ? el_poison() : t;
}

static void exec_stmts(el_ctx *c, el_scope *s, const nnc_ast *block, el_val *ret, bool in_model, bool *returned);

/* `for t in a..b { }`: unrolled at elaboration. The body runs in the enclosing scope, so an
 * assignment to an outer variable is seen by the next iteration (a loop-carried value), and
 * names the body defines stay visible after the loop, as in Python. */
static void exec_for(el_ctx *c, el_scope *s, const nnc_ast *st, el_val *ret, bool in_model) {
  int64_t lo, hi;
  bool ok = el_get_int(c, s, st->a, "range start", -(INT64_C(1) << 40), INT64_C(1) << 40, &lo);
  ok &= el_get_int(c, s, st->b, "range end", -(INT64_C(1) << 40), INT64_C(1) << 40, &hi);
  if (!ok) return;
  el_entry *prev = el_lookup(s, st->name);
  if (prev && (prev->kind != E_VAR || (prev->val.kind != V_NUM && prev->val.kind != V_POISON))) {
    nnc_error(c->d, st->loc, "the loop variable '%s' would hide %s", st->name,
              prev->kind == E_LAYER ? "a layer" : prev->kind == E_HPARAM ? "a hyperparameter" : "a variable");
    nnc_note(c->d, prev->loc, "'%s' is defined here", st->name);
    return;
  }
  if (hi - lo > EL_MAX_ITERATIONS) {
    nnc_error(c->d, st->loc, "the range %lld..%lld has more than %d iterations to unroll", (long long)lo, (long long)hi,
              EL_MAX_ITERATIONS);
    return;
  }
  int errors = c->d->nerrors;
  c->loop_depth++;
  for (int64_t t = lo; t < hi; t++) {
    c->iterations++;
    if (!el_within_limits(c, st->loc)) break;
    el_define(c, s, st->name, E_VAR, el_num((double)t, true, st->loc), st->loc);
    bool returned = false;
    exec_stmts(c, s, st->body, ret, in_model, &returned);
    if (c->d->nerrors > errors) break; /* the same mistake would be reported once per iteration */
  }
  c->loop_depth--;
}

/* Runs the statements of a model body (in_model) or of a forward (ret receives the value of
 * its return). Layer declarations and freeze belong to the model body or a layer's body. */
void el_exec_block(el_ctx *c, el_scope *s, const nnc_ast *block, el_val *ret, bool in_model) {
  bool returned = false;
  exec_stmts(c, s, block, ret, in_model, &returned);
  if (!in_model && !returned && ret) {
    nnc_error(c->d, block ? block->loc : (nnc_loc){0}, "forward has no 'return'");
    *ret = el_poison();
  }
}

static bool outside_loop(el_ctx *c, const nnc_ast *st, const char *what) {
  if (c->loop_depth == 0) return true;
  nnc_error(c->d, st->loc, "%s inside a 'for' loop: it would run once per iteration", what);
  return false;
}

static void exec_stmts(el_ctx *c, el_scope *s, const nnc_ast *block, el_val *ret, bool in_model, bool *returned_p) {
  bool returned = *returned_p;
  for (int i = 0; block && i < block->list.n; i++) {
    const nnc_ast *st = block->list.items[i];
    switch (st->kind) {
    case AST_LAYER:
      if (!outside_loop(c, st, "a layer declaration")) break;
      if (in_model)
        exec_layer_decl(c, s, st, NULL);
      else
        nnc_error(c->d, st->loc, "declare layers in the layer's body, not inside forward");
      break;
    case AST_FREEZE:
      if (outside_loop(c, st, "'freeze'")) exec_freeze(c, s, st);
      break;
    case AST_ASSIGN: exec_assign(c, s, st); break;
    case AST_MINIMIZE:
      if (!outside_loop(c, st, "'minimize'")) break;
      if (in_model)
        exec_minimize(c, s, st);
      else
        nnc_error(c->d, st->loc, "'minimize' belongs in the model, not in a layer");
      break;
    case AST_RETURN:
      if (!outside_loop(c, st, "'return'")) break;
      if (in_model) {
        exec_return_model(c, s, st, &returned);
      } else if (returned) {
        nnc_error(c->d, st->loc, "a forward returns once: a second 'return'");
      } else {
        returned = true;
        *ret = forward_return(c, s, st);
      }
      break;
    case AST_FOR: exec_for(c, s, st, ret, in_model); break;
    default: nnc_error(c->d, st->loc, "expected a statement, found a %s", nnc_ast_kind_name(st->kind)); break;
    }
    if (c->too_big) break;
  }
  *returned_p = returned;
}

/* Runs a user layer's body: its inner layer declarations (named under prefix) and freezes. */
void el_exec_layer_body(el_ctx *c, el_scope *s, const nnc_ast *block, const char *prefix, el_layer *owner) {
  for (int i = 0; block && i < block->list.n; i++) {
    const nnc_ast *st = block->list.items[i];
    if (st->kind == AST_LAYER) {
      exec_layer_decl(c, s, st, prefix);
      el_entry *e = scope_find_local(s, st->name);
      if (e && e->kind == E_LAYER && e->val.kind == V_LAYER) {
        e->val.layer->parent = owner;
        owner->children = nnc_arena_realloc(c->arena, owner->children, sizeof(el_layer *) * (size_t)owner->nchildren,
                                            sizeof(el_layer *) * (size_t)(owner->nchildren + 1));
        owner->children[owner->nchildren++] = e->val.layer;
      }
    } else if (st->kind == AST_FREEZE) {
      exec_freeze(c, s, st);
    } else if (st->kind == AST_ASSIGN) {
      exec_assign(c, s, st);
    } else {
      nnc_error(c->d, st->loc, "a layer's body declares layers; computation goes in its forward");
    }
  }
}

/* --- model inputs ----------------------------------------------------------------------------- */

#define MAX_DIM (INT64_C(1) << 31)

/* One dimension of an input type: `B`, `B*k`, `k*B`, or a positive integer expression. */
static bool eval_dim(el_ctx *c, const nnc_ast *e, int64_t *size, bool *batch) {
  *batch = false;
  const nnc_ast *k = NULL;
  if (e->kind == AST_NAME && strcmp(e->name, "B") == 0 && !el_lookup(c->globals, "B")) {
    *batch = true;
    *size = 1;
    return true;
  }
  if (e->kind == AST_BINOP && e->op == AST_OP_MUL) {
    if (e->a->kind == AST_NAME && strcmp(e->a->name, "B") == 0) k = e->b;
    if (e->b->kind == AST_NAME && strcmp(e->b->name, "B") == 0) k = e->a;
  }
  el_val v = el_eval(c, c->globals, k ? k : e);
  if (v.kind == V_POISON) return false;
  if (v.kind != V_NUM || !v.is_int) {
    nnc_error(c->d, e->loc, "a dimension must be an integer, got %s", el_non_int_desc(c, &v));
    return false;
  }
  if (v.num <= 0) {
    nnc_error(c->d, e->loc, "dimension must be positive, got %.0f", v.num);
    return false;
  }
  if (v.num > (double)MAX_DIM) {
    nnc_error(c->d, e->loc, "dimension %.0f is too large (the limit is 2^31)", v.num);
    return false;
  }
  *size = (int64_t)v.num;
  *batch = k != NULL;
  return true;
}

static bool eval_input_type(el_ctx *c, const nnc_ast *p, nnc_type *out) {
  const nnc_ast *t = p->a;
  if (!t || t->kind != AST_TYPE) {
    nnc_error(c->d, p->loc, "input '%s' needs a type: %s: f32[B, 10]", p->name, p->name);
    return false;
  }
  nnc_dtype dt;
  bool ok = true;
  if (!nnc_dtype_from_name(t->name, &dt)) {
    nnc_error(c->d, t->loc, "unknown element type '%s' (f32, i32 or u8)", t->name);
    ok = false;
  }
  if (t->list.n > NNC_MAX_RANK) {
    nnc_error(c->d, t->loc, "a tensor has at most %d dimensions, this one has %d", NNC_MAX_RANK, t->list.n);
    return false;
  }
  *out = (nnc_type){.dtype = dt, .rank = t->list.n, .batch_axis = -1};
  for (int i = 0; i < t->list.n; i++) {
    bool batch;
    if (!eval_dim(c, t->list.items[i], &out->dims[i], &batch)) {
      ok = false;
      continue;
    }
    if (batch && out->batch_axis >= 0) {
      nnc_error(c->d, t->list.items[i]->loc, "B appears twice in this type; a tensor has one batch axis");
      ok = false;
    } else if (batch) {
      out->batch_axis = i;
    }
  }
  if (!ok) return false;
  int64_t elems = nnc_type_elements(out, c->m->batch_max);
  if (elems < 0 || elems > NNC_MAX_ELEMENTS) {
    nnc_error(c->d, t->loc, "tensor %s is too large (more than 2^34 elements with B = %lld)", el_type_str(c, out),
              (long long)c->m->batch_max);
    return false;
  }
  return true;
}

static void declare_inputs(el_ctx *c, el_scope *s, const nnc_ast *model) {
  for (int i = 0; i < model->list.n; i++) {
    const nnc_ast *p = model->list.items[i];
    el_entry *prev = scope_find_local(s, p->name);
    if (prev) {
      nnc_error(c->d, p->loc, "redefinition of input '%s'", p->name);
      nnc_note(c->d, prev->loc, "previous definition is here");
      continue;
    }
    nnc_type t;
    el_val v = el_poison();
    if (eval_input_type(c, p, &t)) {
      nnc_node *n = el_new(c, NNC_OP_input, 0, NULL, p->loc);
      n->type = t;
      n->name = nnc_arena_strdup(c->arena, p->name);
      v = el_tensor(el_done(c, n), p->loc);
    }
    el_define(c, s, p->name, E_VAR, v, p->loc);
  }
}

/* Predict builds no objective: inputs only it would have read (labels) are dropped. */
static void drop_unused_inputs(el_ctx *c) {
  nnc_graph *g = c->g;
  bool *used = nnc_arena_alloc(c->arena, (size_t)g->nnodes + 1);
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i]->ninputs; j++) used[g->nodes[i]->inputs[j]->id] = true;
  for (int i = 0; i < g->noutputs; i++) used[g->outputs[i].value->id] = true;
  for (int i = 0; i < g->nstate; i++) used[g->state_outputs[i].value->id] = true;
  int k = 0;
  for (int i = 0; i < g->nnodes; i++) {
    nnc_node *n = g->nodes[i];
    if (n->op == NNC_OP_input && !used[n->id]) continue;
    g->nodes[k++] = n;
  }
  g->nnodes = k;
  for (int i = 0; i < g->nnodes; i++) g->nodes[i]->id = i;
}

/* --- the model -------------------------------------------------------------------------------- */

static const nnc_ast *pick_model(el_ctx *c) {
  const nnc_ast *last = NULL;
  const char *want = c->opts ? c->opts->model : NULL;
  for (int i = 0; i < c->file->list.n; i++) {
    const nnc_ast *m = c->file->list.items[i];
    if (m->kind != AST_MODEL) continue;
    if (want && strcmp(m->name, want) == 0) return m;
    last = m;
  }
  nnc_loc start = {.src = c->file->loc.src, .line = 1, .col = 1};
  if (want)
    nnc_error(c->d, start, "no model named '%s' in this file", want);
  else if (!last && c->d->nerrors == 0) /* after a syntax error the model may be what failed */
    nnc_error(c->d, start, "no model in file: write 'model NAME(inputs) { ... }'");
  return want ? NULL : last;
}

static void check_layerdefs(el_ctx *c) {
  for (int i = 0; i < c->file->list.n; i++) {
    const nnc_ast *d = c->file->list.items[i];
    if (d->kind != AST_LAYERDEF) continue;
    if (el_is_builtin_layer(d->name) || el_is_builtin_op(d->name))
      nnc_error(c->d, d->loc, "layer '%s' has the name of a built-in", d->name);
    for (int j = 0; j < i; j++) {
      const nnc_ast *p = c->file->list.items[j];
      if (p->kind == AST_LAYERDEF && strcmp(p->name, d->name) == 0) {
        nnc_error(c->d, d->loc, "redefinition of layer '%s'", d->name);
        nnc_note(c->d, p->loc, "previous definition is here");
      }
    }
  }
}

static void warn_unused_layers(el_ctx *c) {
  for (int i = 0; i < c->nlayers; i++) {
    el_layer *l = c->layers[i];
    if (l->used || (l->parent && !l->parent->used)) continue;
    bool dup = false; /* one warning per declaration, however many instances it has */
    for (int j = 0; j < i; j++)
      if (!c->layers[j]->used && c->layers[j]->loc.line == l->loc.line && c->layers[j]->loc.col == l->loc.col) dup = true;
    if (!dup) nnc_warning(c->d, l->loc, "layer '%s' is never used", l->name);
  }
}

/* Parameters in declaration order, as PyTorch's state_dict lists them (a layer whose sizes are
 * inferred adds its parameters only at its first use). */
static void order_params(el_ctx *c) {
  nnc_module *m = c->m;
  int n = m->nparams;
  if (n < 2) return;
  int64_t *key = nnc_arena_alloc(c->arena, sizeof(int64_t) * (size_t)n);
  int *order = nnc_arena_alloc(c->arena, sizeof(int) * (size_t)n), *where = nnc_arena_alloc(c->arena, sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) key[i] = (int64_t)i;
  for (int i = 0; i < c->nlayers; i++)
    for (int j = 0; j < c->layers[i]->nparams; j++) key[c->layers[i]->param[j]] = (int64_t)c->layers[i]->seq * 64 + j;
  for (int i = 0; i < n; i++) {
    int k = i;
    while (k > 0 && key[order[k - 1]] > key[i]) order[k] = order[k - 1], k--;
    order[k] = i;
  }
  nnc_param *sorted = nnc_arena_alloc(c->arena, sizeof(nnc_param) * (size_t)m->params_cap);
  for (int i = 0; i < n; i++) where[order[i]] = i;
  for (int i = 0; i < n; i++) {
    sorted[i] = m->params[order[i]];
    if (sorted[i].tied_to >= 0) sorted[i].tied_to = where[sorted[i].tied_to];
  }
  m->params = sorted;
}

static void check_objective(el_ctx *c, const nnc_ast *model, const nnc_ast *tb) {
  if (c->too_big) return; /* elaboration stopped early and said so */
  if (c->mode == NNC_MODE_PREDICT) {
    if (!c->has_return) nnc_error(c->d, model->loc, "nothing to predict: model '%s' returns no value", model->name);
    return;
  }
  if (tb && !c->have_loss)
    nnc_error(c->d, tb->loc, "training needs an objective: add 'minimize ...' to model '%s'", model->name);
  if (!c->has_return && !c->have_loss)
    nnc_error(c->d, model->loc, "model '%s' computes nothing: add 'return ...' or 'minimize ...'", model->name);
}

nnc_module *nnc_elaborate(const nnc_ast *file, const nnc_elab_opts *opts, nnc_diags *d) {
  if (!file) return NULL;
  int errors_before = d->nerrors;
  nnc_elab_opts none = {0};
  el_ctx ctx = {.d = d, .opts = opts ? opts : &none, .file = file};
  el_ctx *c = &ctx;
  c->mode = c->opts->mode;
  const nnc_ast *model = pick_model(c);
  c->m = nnc_module_new(model ? model->name : "model");
  c->arena = c->m->arena;
  c->g = nnc_graph_new(c->arena, "forward");
  c->m->forward = c->g;
  c->globals = el_scope_new(c, NULL);
  declare_hparams(c);
  check_layerdefs(c);
  const nnc_ast *tb = el_train_block(c);
  c->m->batch_max = c->opts->batch > 0 ? c->opts->batch : c->m->train.batch;
  if (!tb && c->opts->batch <= 0 && !el_find_override(c, "batch")) c->m->batch_max = 64;
  if (!c->m->train.present) c->m->train.batch = c->m->batch_max;
  if (model) {
    el_scope *s = el_scope_new(c, c->globals);
    declare_inputs(c, s, model);
    el_exec_block(c, s, model->body, NULL, true);
    check_objective(c, model, tb);
    if (d->nerrors == errors_before) warn_unused_layers(c); /* a failed call leaves its layer unused */
    order_params(c);
    if (c->mode == NNC_MODE_PREDICT) drop_unused_inputs(c);
  }
  if (d->nerrors > errors_before) {
    nnc_module_free(c->m);
    return NULL;
  }
  return c->m;
}
