/* Layers: the built-ins (PyTorch's semantics, parameter names and layouts) and user-defined
 * layers (a body of inner layers and a forward).
 *
 * A declaration creates an instance. Its parameters are added to the module once their
 * shapes are known: at the declaration when every size is given, else at the first call,
 * which fixes the inferred input size; later calls are checked against it. Parameter nodes
 * are created in the graph where a parameter is first used. */
#include "elab.h"

#include <math.h>
#include <string.h>

const char *const el_layer_names[] = {"Linear", "Conv2d", "BatchNorm2d", "LayerNorm", "Dropout", "Embedding",
                                      "RNN", "LSTM", "GRU", "MultiheadAttention", NULL};

bool el_is_builtin_layer(const char *name) {
  for (int i = 0; el_layer_names[i]; i++)
    if (strcmp(el_layer_names[i], name) == 0) return true;
  return false;
}

static void note_from(el_ctx *c, const el_val *v) {
  if (v->kind == V_TENSOR && v->loc.src) nnc_note(c->d, v->loc, "%s comes from here", el_type_str(c, &v->node->type));
}

/* --- parameters -------------------------------------------------------------------------------- */

nnc_node *el_param_node(el_ctx *c, int idx, nnc_loc loc) {
  nnc_module *m = c->m;
  for (int hops = 0; m->params[idx].tied_to >= 0 && hops < m->nparams; hops++) idx = m->params[idx].tied_to;
  if (idx >= c->pnodes_cap) {
    int cap = c->pnodes_cap ? c->pnodes_cap : 16;
    while (cap <= idx) cap *= 2;
    c->pnodes = nnc_arena_realloc(c->arena, c->pnodes, sizeof(nnc_node *) * (size_t)c->pnodes_cap,
                                  sizeof(nnc_node *) * (size_t)cap);
    c->pnodes_cap = cap;
  }
  if (!c->pnodes[idx]) {
    const nnc_param *p = &m->params[idx];
    nnc_node *n = el_new(c, p->is_state ? NNC_OP_state : NNC_OP_param, 0, NULL, loc);
    n->type = p->type;
    n->name = p->name;
    c->pnodes[idx] = el_done(c, n);
  }
  return c->pnodes[idx];
}

/* Resolves a fan-based init scheme against a weight's shape (PyTorch's torch.nn.init). */
static nnc_init weight_init(const el_layer *l, const nnc_type *w, nnc_init dflt) {
  double recept = 1;
  for (int i = 2; i < w->rank; i++) recept *= (double)w->dims[i];
  double fan_in = w->rank >= 2 ? (double)w->dims[1] * recept : (double)w->dims[0];
  double fan_out = (double)w->dims[0] * recept;
  double gain = sqrt(2.0); /* kaiming's default: leaky_relu with a = 0 */
  double b;
  switch (l->init_scheme) {
  case IS_FIXED: return l->init;
  case IS_XAVIER_UNIFORM:
    b = l->init.a * sqrt(6.0 / (fan_in + fan_out));
    return (nnc_init){NNC_INIT_UNIFORM, -b, b};
  case IS_XAVIER_NORMAL: return (nnc_init){NNC_INIT_NORMAL, 0, l->init.a * sqrt(2.0 / (fan_in + fan_out))};
  case IS_KAIMING_UNIFORM:
    b = gain * sqrt(3.0 / fan_in);
    return (nnc_init){NNC_INIT_UNIFORM, -b, b};
  case IS_KAIMING_NORMAL: return (nnc_init){NNC_INIT_NORMAL, 0, gain / sqrt(fan_in)};
  default: return dflt;
  }
}

/* A parameter's size comes from the user's hyperparameters: past the limit per tensor it is an
 * error in the model, reported once at the layer, and the layer is unusable from then on. */
static bool param_within_limit(el_ctx *c, el_layer *l, const char *suffix, const nnc_type *t, nnc_loc loc) {
  if (nnc_type_within_limit(t)) return true;
  if (!l->oversized)
    nnc_error(c->d, loc, "'%s' (%s): parameter '%s.%s' %s has more than %lld elements, the limit per tensor",
              l->name, l->ctor, l->name, suffix, el_type_str(c, t), (long long)NNC_MAX_ELEMENTS);
  l->oversized = true;
  return false;
}

int el_add_param(el_ctx *c, el_layer *l, const char *suffix, nnc_type t, nnc_init init, bool is_state, nnc_loc loc) {
  if (!param_within_limit(c, l, suffix, &t, loc)) return -1;
  nnc_param p = {.name = nnc_arena_printf(c->arena, "%s.%s", l->name, suffix), .type = t, .init = init,
                 .frozen = l->frozen, .is_state = is_state, .tied_to = -1, .loc = loc};
  int idx = nnc_module_add_param(c->m, &p);
  l->param[l->nparams] = idx;
  l->pname[l->nparams++] = suffix;
  for (int i = 0; i < l->nties; i++) {
    if (strcmp(l->tie_suffix[i], suffix) != 0) continue;
    const nnc_param *src = &c->m->params[l->tie_src[i]];
    if (!nnc_type_equal(&src->type, &t)) {
      nnc_error(c->d, l->tie_loc[i], "cannot tie '%s' %s to '%s' %s: shapes differ", c->m->params[idx].name,
                el_type_str(c, &t), src->name, el_type_str(c, &src->type));
      continue;
    }
    c->m->params[idx].tied_to = l->tie_src[i];
  }
  return idx;
}

static nnc_type vec(int64_t n) { return nnc_type_make(NNC_F32, 1, &n, -1); }

static nnc_init uniform_fan(double fan_in) {
  double b = fan_in > 0 ? 1.0 / sqrt(fan_in) : 0;
  return (nnc_init){NNC_INIT_UNIFORM, -b, b};
}

/* Adds the parameters of a built-in layer whose sizes are all known; false when one of them is
 * too large (reported). */
bool el_materialize(el_ctx *c, el_layer *l) {
  if (l->materialized) return !l->oversized;
  l->materialized = true;
  nnc_init ones = {NNC_INIT_ONES, 0, 0}, zeros = {NNC_INIT_ZEROS, 0, 0};
  nnc_type w;
  switch (l->kind) {
  case LK_LINEAR:
    w = nnc_type_make(NNC_F32, 2, (int64_t[]){l->out, l->in}, -1);
    el_add_param(c, l, "weight", w, weight_init(l, &w, uniform_fan((double)l->in)), false, l->loc);
    if (l->bias) el_add_param(c, l, "bias", vec(l->out), uniform_fan((double)l->in), false, l->loc);
    break;
  case LK_CONV2D: {
    w = nnc_type_make(NNC_F32, 4, (int64_t[]){l->out, l->in / l->groups, l->k[0], l->k[1]}, -1);
    double fan_in = (double)(l->in / l->groups * l->k[0] * l->k[1]);
    el_add_param(c, l, "weight", w, weight_init(l, &w, uniform_fan(fan_in)), false, l->loc);
    if (l->bias) el_add_param(c, l, "bias", vec(l->out), uniform_fan(fan_in), false, l->loc);
    break;
  }
  case LK_BATCHNORM2D:
    el_add_param(c, l, "weight", vec(l->in), ones, false, l->loc);
    el_add_param(c, l, "bias", vec(l->in), zeros, false, l->loc);
    el_add_param(c, l, "running_mean", vec(l->in), zeros, true, l->loc);
    el_add_param(c, l, "running_var", vec(l->in), ones, true, l->loc);
    el_add_param(c, l, "num_batches_tracked", nnc_type_scalar(NNC_I32), zeros, true, l->loc);
    break;
  case LK_LAYERNORM:
    w = nnc_type_make(NNC_F32, l->nnorm, l->norm_shape, -1);
    el_add_param(c, l, "weight", w, ones, false, l->loc);
    el_add_param(c, l, "bias", w, zeros, false, l->loc);
    break;
  case LK_EMBEDDING:
    w = nnc_type_make(NNC_F32, 2, (int64_t[]){l->in, l->out}, -1);
    el_add_param(c, l, "weight", w, weight_init(l, &w, (nnc_init){NNC_INIT_NORMAL, 0, 1}), false, l->loc);
    break;
  case LK_RNN: case LK_LSTM: case LK_GRU: case LK_MHA: el_materialize_seq_layer(c, l); break;
  default: break;
  }
  return !l->oversized;
}

nnc_node *el_pnode(el_ctx *c, el_layer *l, const char *suffix, nnc_loc loc) {
  for (int i = 0; i < l->nparams; i++)
    if (strcmp(l->pname[i], suffix) == 0) return el_param_node(c, l->param[i], loc);
  return NULL;
}

/* --- init= --------------------------------------------------------------------------------------- */

bool el_parse_init(el_ctx *c, el_scope *s, const nnc_ast *e, el_layer *l) {
  static const char *const names[] = {"normal", "uniform", "zeros", "ones", "constant", "xavier_uniform",
                                      "xavier_normal", "kaiming_uniform", "kaiming_normal", NULL};
  const nnc_ast *call = e->kind == AST_CALL && e->a && e->a->kind == AST_NAME ? e : NULL;
  const char *name = call ? e->a->name : e->kind == AST_NAME ? e->name : NULL;
  int k = -1;
  for (int i = 0; name && names[i]; i++)
    if (strcmp(names[i], name) == 0) k = i;
  if (k < 0) {
    const char *near = name ? el_suggest(NULL, name, names) : NULL;
    if (near)
      nnc_error(c->d, e->loc, "unknown init '%s'; did you mean '%s'?", name, near);
    else
      nnc_error(c->d, e->loc, "unknown init: expected normal(mean, std), uniform(a, b), zeros, ones, constant(v), "
                              "xavier_uniform, xavier_normal, kaiming_uniform or kaiming_normal");
    return false;
  }
  static const el_sig sigs[] = {
      {"normal", {"mean", "std"}, 0},       {"uniform", {"a", "b"}, 0},     {"zeros", {0}, 0},
      {"ones", {0}, 0},                     {"constant", {"val"}, 1},       {"xavier_uniform", {"gain"}, 0},
      {"xavier_normal", {"gain"}, 0},       {"kaiming_uniform", {0}, 0},    {"kaiming_normal", {0}, 0},
  };
  const nnc_ast *slot[EL_MAX_ARGS] = {0};
  if (call && !el_bind_args(c, &sigs[k], call, 0, slot)) return false;
  if (!call && sigs[k].nreq) {
    nnc_error(c->d, e->loc, "init '%s' needs arguments", name);
    return false;
  }
  double a = 0, b = 1;
  bool ok = true;
  switch (k) {
  case 0: /* normal(std) with one positional argument, as normal(0.02) reads */
    if (slot[0] && !slot[1] && call->list.n == 1 && call->list.items[0]->kind != AST_KV) slot[1] = slot[0], slot[0] = NULL;
    if (slot[0]) ok &= el_get_num(c, s, slot[0], "mean", -1e30, 1e30, &a);
    if (slot[1]) ok &= el_get_num(c, s, slot[1], "std", 0, 1e30, &b);
    l->init = (nnc_init){NNC_INIT_NORMAL, a, b};
    break;
  case 1:
    if (slot[0]) ok &= el_get_num(c, s, slot[0], "a", -1e30, 1e30, &a);
    if (slot[1]) ok &= el_get_num(c, s, slot[1], "b", -1e30, 1e30, &b);
    if (ok && b < a) {
      nnc_error(c->d, e->loc, "uniform(a, b) needs a <= b");
      ok = false;
    }
    l->init = (nnc_init){NNC_INIT_UNIFORM, a, b};
    break;
  case 2: l->init = (nnc_init){NNC_INIT_ZEROS, 0, 0}; break;
  case 3: l->init = (nnc_init){NNC_INIT_ONES, 0, 0}; break;
  case 4:
    ok &= el_get_num(c, s, slot[0], "val", -1e30, 1e30, &a);
    l->init = (nnc_init){NNC_INIT_CONST, a, 0};
    break;
  default:
    if (slot[0]) ok &= el_get_num(c, s, slot[0], "gain", 0, 1e30, &b);
    l->init = (nnc_init){NNC_INIT_CONST, b, 0}; /* a holds the gain */
    break;
  }
  static const el_init_scheme schemes[] = {IS_FIXED, IS_FIXED, IS_FIXED, IS_FIXED, IS_FIXED, IS_XAVIER_UNIFORM,
                                           IS_XAVIER_NORMAL, IS_KAIMING_UNIFORM, IS_KAIMING_NORMAL};
  l->init_scheme = schemes[k];
  return ok;
}

/* --- declarations of built-in layers ----------------------------------------------------------- */

static int positional_count(const nnc_ast *call) {
  int n = 0;
  for (int i = 0; i < call->list.n; i++) n += call->list.items[i]->kind != AST_KV;
  return n;
}

static bool declare_linear(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *call) {
  static const el_sig two = {"Linear", {"in_features", "out_features", "bias", "init"}, 2};
  static const el_sig one = {"Linear", {"out_features", "bias", "init", "in_features"}, 1};
  const nnc_ast *slot[EL_MAX_ARGS];
  bool pos2 = positional_count(call) >= 2;
  if (!el_bind_args(c, pos2 ? &two : &one, call, 0, slot)) return false;
  const nnc_ast *in = pos2 ? slot[0] : slot[3], *out = pos2 ? slot[1] : slot[0];
  const nnc_ast *bias = pos2 ? slot[2] : slot[1], *init = pos2 ? slot[3] : slot[2];
  bool ok = el_get_int(c, s, out, "out_features", 1, INT32_MAX, &l->out);
  if (in) ok &= el_get_int(c, s, in, "in_features", 1, INT32_MAX, &l->in);
  if (bias) ok &= el_get_bool(c, s, bias, "bias", &l->bias);
  if (init) ok &= el_parse_init(c, s, init, l);
  return ok;
}

static bool declare_conv(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *call) {
  static const el_sig three = {"Conv2d", {"in_channels", "out_channels", "kernel_size", "stride", "padding",
                                          "dilation", "groups", "bias", "init"}, 3};
  static const el_sig two = {"Conv2d", {"out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                                        "bias", "init", "in_channels"}, 2};
  const nnc_ast *slot[EL_MAX_ARGS];
  bool pos3 = positional_count(call) >= 3;
  if (!el_bind_args(c, pos3 ? &three : &two, call, 0, slot)) return false;
  const nnc_ast **a = pos3 ? slot + 1 : slot; /* out_channels onward */
  const nnc_ast *in = pos3 ? slot[0] : slot[8];
  bool ok = el_get_int(c, s, a[0], "out_channels", 1, INT32_MAX, &l->out);
  ok &= el_get_pair(c, s, a[1], "kernel_size", 1, l->k);
  if (a[2]) ok &= el_get_pair(c, s, a[2], "stride", 1, l->stride);
  if (a[3]) ok &= el_get_pair(c, s, a[3], "padding", 0, l->pad);
  if (a[4]) ok &= el_get_pair(c, s, a[4], "dilation", 1, l->dil);
  if (a[5]) ok &= el_get_int(c, s, a[5], "groups", 1, INT32_MAX, &l->groups);
  if (a[6]) ok &= el_get_bool(c, s, a[6], "bias", &l->bias);
  if (a[7]) ok &= el_parse_init(c, s, a[7], l);
  if (in) ok &= el_get_int(c, s, in, "in_channels", 1, INT32_MAX, &l->in);
  if (ok && l->out % l->groups) {
    nnc_error(c->d, call->loc, "out_channels %lld is not divisible by groups %lld", (long long)l->out, (long long)l->groups);
    ok = false;
  }
  if (ok && l->in && l->in % l->groups) {
    nnc_error(c->d, call->loc, "in_channels %lld is not divisible by groups %lld", (long long)l->in, (long long)l->groups);
    ok = false;
  }
  return ok;
}

static bool declare_norm_shape(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *e) {
  el_val v = el_eval(c, s, e);
  if (v.kind == V_POISON) return false;
  int n = v.kind == V_LIST ? v.nitems : 1;
  if (n < 1 || n > NNC_MAX_RANK) {
    nnc_error(c->d, e->loc, "normalized_shape must be an integer or a list of 1 to %d integers", NNC_MAX_RANK);
    return false;
  }
  for (int i = 0; i < n; i++) {
    el_val d = v.kind == V_LIST ? v.items[i] : v;
    if (d.kind != V_NUM || !d.is_int || d.num < 1 || d.num > INT32_MAX) {
      nnc_error(c->d, e->loc, "normalized_shape must hold positive integers");
      return false;
    }
    l->norm_shape[i] = (int64_t)d.num;
  }
  l->nnorm = n;
  return true;
}

static bool declare_builtin(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *call) {
  const nnc_ast *slot[EL_MAX_ARGS];
  bool ok = true;
  switch (l->kind) {
  case LK_LINEAR: return declare_linear(c, s, l, call);
  case LK_CONV2D: return declare_conv(c, s, l, call);
  case LK_BATCHNORM2D: {
    static const el_sig sig = {"BatchNorm2d", {"num_features", "eps", "momentum"}, 0};
    if (!el_bind_args(c, &sig, call, 0, slot)) return false;
    if (slot[0]) ok &= el_get_int(c, s, slot[0], "num_features", 1, INT32_MAX, &l->in);
    if (slot[1]) ok &= el_get_num(c, s, slot[1], "eps", 0, 1, &l->eps);
    if (slot[2]) ok &= el_get_num(c, s, slot[2], "momentum", 0, 1, &l->momentum);
    return ok;
  }
  case LK_LAYERNORM: {
    static const el_sig sig = {"LayerNorm", {"normalized_shape", "eps"}, 0};
    if (!el_bind_args(c, &sig, call, 0, slot)) return false;
    if (slot[0]) ok &= declare_norm_shape(c, s, l, slot[0]);
    if (slot[1]) ok &= el_get_num(c, s, slot[1], "eps", 0, 1, &l->eps);
    return ok;
  }
  case LK_DROPOUT: {
    static const el_sig sig = {"Dropout", {"p"}, 0};
    if (!el_bind_args(c, &sig, call, 0, slot)) return false;
    if (slot[0]) ok &= el_get_num(c, s, slot[0], "p", 0, 1, &l->p);
    return ok;
  }
  case LK_EMBEDDING: {
    static const el_sig sig = {"Embedding", {"num_embeddings", "embedding_dim", "init"}, 2};
    if (!el_bind_args(c, &sig, call, 0, slot)) return false;
    ok &= el_get_int(c, s, slot[0], "num_embeddings", 1, INT32_MAX, &l->in);
    ok &= el_get_int(c, s, slot[1], "embedding_dim", 1, INT32_MAX, &l->out);
    if (slot[2]) ok &= el_parse_init(c, s, slot[2], l);
    return ok;
  }
  case LK_RNN: case LK_LSTM: case LK_GRU: case LK_MHA: return el_declare_seq_layer(c, s, l, call);
  default: return false;
  }
}

/* Whether every size is known at the declaration, so the parameters exist from the start. */
static bool sizes_known(const el_layer *l) {
  switch (l->kind) {
  case LK_LINEAR: case LK_CONV2D: case LK_BATCHNORM2D: case LK_EMBEDDING:
  case LK_RNN: case LK_LSTM: case LK_GRU: case LK_MHA: return l->in > 0;
  case LK_LAYERNORM: return l->nnorm > 0;
  default: return false;
  }
}

/* --- user-defined layers -------------------------------------------------------------------------- */

static const nnc_ast *find_layerdef(el_ctx *c, const char *name) {
  for (int i = 0; i < c->file->list.n; i++) {
    const nnc_ast *d = c->file->list.items[i];
    if (d->kind == AST_LAYERDEF && strcmp(d->name, name) == 0) return d;
  }
  return NULL;
}

static bool declare_user(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *def, const nnc_ast *call) {
  for (int i = 0; i < c->ninst; i++)
    if (c->inst_stack[i] == def) {
      nnc_error(c->d, call->loc, "layer '%s' uses itself (a recursive layer has no end)", def->name);
      nnc_note(c->d, def->loc, "'%s' is defined here", def->name);
      return false;
    }
  if (c->ninst == (int)(sizeof c->inst_stack / sizeof *c->inst_stack)) {
    nnc_error(c->d, call->loc, "layers nested too deeply");
    return false;
  }
  el_sig sig = {def->name, {0}, 0};
  int np = def->list.n < EL_MAX_ARGS ? def->list.n : EL_MAX_ARGS;
  bool defaults = false;
  for (int i = 0; i < np; i++) {
    sig.params[i] = def->list.items[i]->name;
    if (def->list.items[i]->a) defaults = true;
    else if (!defaults) sig.nreq = i + 1;
  }
  const nnc_ast *slot[EL_MAX_ARGS];
  if (!el_bind_args(c, &sig, call, 0, slot)) return false;
  l->scope = el_scope_new(c, c->globals);
  bool ok = true;
  for (int i = 0; i < np; i++) {
    const nnc_ast *p = def->list.items[i];
    el_val v = slot[i] ? el_eval(c, s, slot[i]) : p->a ? el_eval(c, l->scope, p->a) : el_poison();
    if (!slot[i] && !p->a) {
      nnc_error(c->d, call->loc, "'%s' needs argument '%s'", def->name, p->name);
      v = el_poison();
    }
    ok &= v.kind != V_POISON;
    el_define(c, l->scope, p->name, E_VAR, v, p->loc);
  }
  if (!ok) return false;
  if (!def->b || def->b->kind != AST_FORWARD) {
    nnc_error(c->d, def->loc, "layer '%s' has no forward", def->name);
    return false;
  }
  c->inst_stack[c->ninst++] = def;
  el_exec_layer_body(c, l->scope, def->body, l->name, l);
  c->ninst--;
  return true;
}

/* repeat(N, Layer(...)): N instances named prefix.0 ... prefix.N-1, as nn.ModuleList names them. */
static bool declare_repeat(el_ctx *c, el_scope *s, el_layer *l, const char *name, const nnc_ast *call) {
  static const el_sig sig = {"repeat", {"n", "layer"}, 2};
  const nnc_ast *slot[EL_MAX_ARGS];
  int64_t n;
  if (!el_bind_args(c, &sig, call, 0, slot) || !el_get_int(c, s, slot[0], "n", 1, 100000, &n)) return false;
  const nnc_ast *inner = slot[1];
  if (inner->kind != AST_CALL || !inner->a || inner->a->kind != AST_NAME) {
    nnc_error(c->d, inner->loc, "repeat needs a layer constructor: repeat(%lld, Block(...))", (long long)n);
    return false;
  }
  l->ctor = inner->a->name;
  l->children = nnc_arena_alloc(c->arena, sizeof(el_layer *) * (size_t)n);
  for (int64_t i = 0; i < n; i++) {
    el_layer *k = el_instantiate(c, s, name, nnc_arena_printf(c->arena, "%s.%lld", l->name, (long long)i), inner);
    if (!k) return false;
    k->parent = l;
    l->children[l->nchildren++] = k;
    if (!el_within_limits(c, call->loc)) return false;
  }
  return true;
}

el_layer *el_instantiate(el_ctx *c, el_scope *s, const char *name, const char *prefix, const nnc_ast *call) {
  if (!call || call->kind != AST_CALL || !call->a || call->a->kind != AST_NAME) {
    nnc_error(c->d, call ? call->loc : (nnc_loc){0}, "a layer declaration needs a constructor call: layer %s = Linear(10)", name);
    return NULL;
  }
  const char *ctor = call->a->name;
  el_layer *l = nnc_arena_alloc(c->arena, sizeof *l);
  *l = (el_layer){.name = prefix, .ctor = ctor, .loc = call->loc, .bias = true, .eps = 1e-5, .momentum = 0.1,
                  .p = 0.5, .groups = 1, .stride = {1, 1}, .dil = {1, 1}};
  l->seq = c->layer_seq++;
  const nnc_ast *def = find_layerdef(c, ctor);
  bool ok;
  if (!def && strcmp(ctor, "repeat") == 0) {
    l->kind = LK_REPEAT;
    ok = declare_repeat(c, s, l, name, call);
  } else if (def) {
    l->kind = LK_USER;
    l->def = def;
    ok = declare_user(c, s, l, def, call);
  } else if (el_is_builtin_layer(ctor)) {
    for (int i = 0; el_layer_names[i]; i++)
      if (strcmp(el_layer_names[i], ctor) == 0) l->kind = (el_layer_kind)i;
    ok = declare_builtin(c, s, l, call);
    if (ok && sizes_known(l)) el_materialize(c, l);
  } else {
    if (el_is_builtin_op(ctor)) {
      nnc_error(c->d, call->a->loc, "'%s' is an op, not a layer: call it where it is needed, %s(x)", ctor, ctor);
    } else {
      const char *cands[64];
      int n = 0;
      for (int i = 0; el_layer_names[i]; i++) cands[n++] = el_layer_names[i];
      for (int i = 0; i < c->file->list.n && n < 63; i++)
        if (c->file->list.items[i]->kind == AST_LAYERDEF) cands[n++] = c->file->list.items[i]->name;
      cands[n] = NULL;
      const char *near = el_suggest(NULL, ctor, cands);
      if (near)
        nnc_error(c->d, call->a->loc, "unknown layer '%s'; did you mean '%s'?", ctor, near);
      else
        nnc_error(c->d, call->a->loc, "unknown layer '%s'", ctor);
    }
    return NULL;
  }
  if (!ok) return NULL;
  if (c->nlayers == c->layers_cap) {
    int cap = c->layers_cap ? c->layers_cap * 2 : 16;
    c->layers = nnc_arena_realloc(c->arena, c->layers, sizeof(el_layer *) * (size_t)c->layers_cap, sizeof(el_layer *) * (size_t)cap);
    c->layers_cap = cap;
  }
  c->layers[c->nlayers++] = l;
  return l;
}

/* --- calls ------------------------------------------------------------------------------------------ */

/* Fixes an inferred input size at the first call or checks it at later ones. */
bool el_check_in(el_ctx *c, el_layer *l, int64_t got, const char *what, const el_val *x, nnc_loc L) {
  if (l->in == got) return true;
  if (l->in == 0) {
    l->in = got;
    return true;
  }
  nnc_error(c->d, L, "'%s' expects %lld %s, got %s", l->name, (long long)l->in, what, el_type_str(c, &x->node->type));
  if (l->used && l->first_use.src)
    nnc_note(c->d, l->first_use, "%lld %s since its first use here with %s", (long long)l->in, what,
             el_type_str(c, &l->first_type));
  else
    nnc_note(c->d, l->loc, "'%s' is declared here", l->name);
  note_from(c, x);
  return false;
}

static el_val call_linear(el_ctx *c, el_layer *l, const el_val *x, nnc_loc L) {
  const nnc_type *t = &x->node->type;
  if (t->rank < 1 || t->batch_axis == t->rank - 1) {
    nnc_error(c->d, L, "'%s' (Linear) needs features in the last dimension, got %s", l->name, el_type_str(c, t));
    note_from(c, x);
    return el_poison();
  }
  if (!el_check_in(c, l, t->dims[t->rank - 1], "input features", x, L)) return el_poison();
  if (!el_materialize(c, l)) return el_poison();
  nnc_node *in = x->node;
  if (t->rank == 1) in = el_reshape(c, in, &(nnc_type){NNC_F32, 2, -1, {1, t->dims[0]}}, L);
  nnc_node *y = el_matmul(c, in, el_pnode(c, l, "weight", L), false, true, L);
  if (!y) return el_poison();
  if (l->bias) y = el_binary(c, NNC_OP_add, y, el_bcast_right(c, el_pnode(c, l, "bias", L), &y->type, L), L);
  if (y && t->rank == 1) y = el_reshape(c, y, &(nnc_type){NNC_F32, 1, -1, {l->out}}, L);
  return el_tensor(y, L);
}

static bool image(el_ctx *c, el_layer *l, const el_val *x, nnc_loc L) {
  const nnc_type *t = &x->node->type;
  if (t->rank == 4 && (t->batch_axis == 0 || t->batch_axis == -1)) return true;
  nnc_error(c->d, L, "'%s' (%s) needs an image batch [N, C, H, W], got %s", l->name, l->ctor, el_type_str(c, t));
  note_from(c, x);
  return false;
}

static el_val call_conv(el_ctx *c, el_layer *l, const el_val *x, nnc_loc L) {
  const nnc_type *t = &x->node->type;
  if (!image(c, l, x, L) || !el_check_in(c, l, t->dims[1], "input channels", x, L)) return el_poison();
  if (l->in % l->groups) {
    nnc_error(c->d, L, "'%s': %lld input channels are not divisible by groups %lld", l->name, (long long)l->in,
              (long long)l->groups);
    return el_poison();
  }
  for (int i = 0; i < 2; i++)
    if (t->dims[2 + i] + 2 * l->pad[i] - (l->dil[i] * (l->k[i] - 1) + 1) < 0) {
      nnc_error(c->d, L, "'%s': the %lldx%lld kernel does not fit the input %s", l->name, (long long)l->k[0],
                (long long)l->k[1], el_type_str(c, t));
      note_from(c, x);
      return el_poison();
    }
  if (!el_materialize(c, l)) return el_poison();
  nnc_node *y = el_new(c, NNC_OP_conv2d, 2, (nnc_node *[]){x->node, el_pnode(c, l, "weight", L)}, L);
  if (!y) return el_poison();
  nnc_node_set_ints(y, NNC_ATTR_stride, 2, l->stride);
  nnc_node_set_ints(y, NNC_ATTR_padding, 2, l->pad);
  nnc_node_set_ints(y, NNC_ATTR_dilation, 2, l->dil);
  nnc_node_set_int(y, NNC_ATTR_groups, l->groups);
  y = el_done(c, y);
  if (l->bias && y) y = el_binary(c, NNC_OP_add, y, el_bcast(c, el_pnode(c, l, "bias", L), &y->type, (int[]){1}, L), L);
  return el_tensor(y, L);
}

/* A buffer's value as this graph has it so far: the state output an earlier call of the layer
 * wrote (so a BatchNorm called twice in training updates its running stats twice, in order, as
 * PyTorch does), else the buffer as the step starts. */
static nnc_node *current_buffer(el_ctx *c, el_layer *l, const char *suffix, nnc_loc L) {
  const char *name = nnc_arena_printf(c->arena, "%s.%s", l->name, suffix);
  for (int i = 0; i < c->g->nstate; i++)
    if (strcmp(c->g->state_outputs[i].name, name) == 0) return c->g->state_outputs[i].value;
  return el_pnode(c, l, suffix, L);
}

/* Writes a buffer's new value: replaces an earlier call's state output, else adds one. */
static void write_buffer(el_ctx *c, el_layer *l, const char *suffix, nnc_node *value) {
  const char *name = nnc_arena_printf(c->arena, "%s.%s", l->name, suffix);
  for (int i = 0; i < c->g->nstate; i++)
    if (strcmp(c->g->state_outputs[i].name, name) == 0) {
      c->g->state_outputs[i].value = value;
      return;
    }
  nnc_graph_add_state_output(c->g, name, value);
}

/* BatchNorm2d. Training: normalize with the batch statistics over (N, H, W) and the biased
 * variance; update the running stats with the unbiased one, as PyTorch does. Eval: running
 * stats. */
static el_val call_batchnorm(el_ctx *c, el_layer *l, const el_val *x, nnc_loc L) {
  const nnc_type *t = &x->node->type;
  if (!image(c, l, x, L) || !el_check_in(c, l, t->dims[1], "channels", x, L)) return el_poison();
  if (!el_materialize(c, l)) return el_poison();
  const int red[3] = {0, 2, 3};
  const int ch[1] = {1};
  nnc_node *xn = x->node, *mean, *var;
  bool train = c->mode == NNC_MODE_TRAIN;
  nnc_node *rm = train ? current_buffer(c, l, "running_mean", L) : el_pnode(c, l, "running_mean", L);
  nnc_node *rv = train ? current_buffer(c, l, "running_var", L) : el_pnode(c, l, "running_var", L);
  if (train) {
    mean = el_mean(c, xn, red, 3, L);
    nnc_node *d = el_binary(c, NNC_OP_sub, xn, el_bcast(c, mean, t, ch, L), L);
    var = el_mean(c, el_binary(c, NNC_OP_mul, d, d, L), red, 3, L);
    /* running stats: (1 - m) old + m new, the variance unbiased by cnt / (cnt - 1) */
    double m = l->momentum;
    nnc_node *cnt = el_count(c, t, red, 3, L);
    nnc_node *unb = el_binary(c, NNC_OP_div, cnt, el_scalar_op(c, NNC_OP_sub, cnt, 1, L), L);
    nnc_node *vu = var ? el_binary(c, NNC_OP_mul, var, el_bcast(c, unb, &var->type, NULL, L), L) : NULL;
    nnc_node *nrm = el_binary(c, NNC_OP_add, el_scalar_op(c, NNC_OP_mul, rm, 1 - m, L), el_scalar_op(c, NNC_OP_mul, mean, m, L), L);
    nnc_node *nrv = el_binary(c, NNC_OP_add, el_scalar_op(c, NNC_OP_mul, rv, 1 - m, L), el_scalar_op(c, NNC_OP_mul, vu, m, L), L);
    nnc_node *nbt = el_scalar_op(c, NNC_OP_add, current_buffer(c, l, "num_batches_tracked", L), 1, L);
    if (!nrm || !nrv || !nbt) return el_poison();
    write_buffer(c, l, "running_mean", nrm);
    write_buffer(c, l, "running_var", nrv);
    write_buffer(c, l, "num_batches_tracked", nbt);
  } else {
    mean = rm;
    var = rv;
  }
  nnc_node *inv = el_unary(c, NNC_OP_rsqrt, el_scalar_op(c, NNC_OP_add, var, l->eps, L), L);
  nnc_node *scale = el_binary(c, NNC_OP_mul, inv, el_pnode(c, l, "weight", L), L);
  nnc_node *y = el_binary(c, NNC_OP_sub, xn, el_bcast(c, mean, t, ch, L), L);
  y = el_binary(c, NNC_OP_mul, y, el_bcast(c, scale, t, ch, L), L);
  y = el_binary(c, NNC_OP_add, y, el_bcast(c, el_pnode(c, l, "bias", L), t, ch, L), L);
  return el_tensor(y, L);
}

static el_val call_layernorm(el_ctx *c, el_layer *l, const el_val *x, nnc_loc L) {
  const nnc_type *t = &x->node->type;
  if (l->nnorm == 0 && t->rank >= 1 && t->batch_axis != t->rank - 1) {
    l->nnorm = 1;
    l->norm_shape[0] = t->dims[t->rank - 1];
  }
  bool ok = t->rank >= l->nnorm && l->nnorm > 0;
  for (int i = 0; ok && i < l->nnorm; i++) {
    int a = t->rank - l->nnorm + i;
    ok = a != t->batch_axis && t->dims[a] == l->norm_shape[i];
  }
  if (!ok) {
    nnc_type want = nnc_type_make(NNC_F32, l->nnorm, l->norm_shape, -1);
    nnc_error(c->d, L, "'%s' normalizes the last dims %s, got %s", l->name, el_type_str(c, &want), el_type_str(c, t));
    note_from(c, x);
    return el_poison();
  }
  if (!el_materialize(c, l)) return el_poison();
  int axes[NNC_MAX_RANK];
  for (int i = 0; i < l->nnorm; i++) axes[i] = t->rank - l->nnorm + i;
  int keep[NNC_MAX_RANK];
  for (int i = 0; i < t->rank - l->nnorm; i++) keep[i] = i;
  nnc_node *mean = el_mean(c, x->node, axes, l->nnorm, L);
  nnc_node *d = el_binary(c, NNC_OP_sub, x->node, el_bcast(c, mean, t, keep, L), L);
  nnc_node *var = el_mean(c, el_binary(c, NNC_OP_mul, d, d, L), axes, l->nnorm, L);
  nnc_node *inv = el_unary(c, NNC_OP_rsqrt, el_scalar_op(c, NNC_OP_add, var, l->eps, L), L);
  nnc_node *y = el_binary(c, NNC_OP_mul, d, el_bcast(c, inv, t, keep, L), L);
  y = el_binary(c, NNC_OP_mul, y, el_bcast_right(c, el_pnode(c, l, "weight", L), t, L), L);
  y = el_binary(c, NNC_OP_add, y, el_bcast_right(c, el_pnode(c, l, "bias", L), t, L), L);
  return el_tensor(y, L);
}

static el_val call_embedding(el_ctx *c, el_layer *l, const el_val *x, nnc_loc L) {
  if (x->node->type.dtype != NNC_I32) {
    nnc_error(c->d, L, "'%s' (Embedding) needs token ids (i32), got %s", l->name, el_type_str(c, &x->node->type));
    note_from(c, x);
    return el_poison();
  }
  nnc_node *g = el_new(c, NNC_OP_gather, 2, (nnc_node *[]){el_pnode(c, l, "weight", L), x->node}, L);
  if (g) nnc_node_set_int(g, NNC_ATTR_axis, 0);
  return el_tensor(el_done(c, g), L);
}

static el_val call_user(el_ctx *c, el_layer *l, const el_val *args, int nargs, nnc_loc L) {
  const nnc_ast *fwd = l->def->b;
  if (nargs != fwd->list.n) {
    nnc_error(c->d, L, "'%s' (%s) takes %d %s, got %d", l->name, l->ctor, fwd->list.n,
              fwd->list.n == 1 ? "input" : "inputs", nargs);
    return el_poison();
  }
  el_scope *fs = el_scope_new(c, l->scope);
  for (int i = 0; i < fwd->list.n; i++) el_define(c, fs, fwd->list.items[i]->name, E_VAR, args[i], fwd->list.items[i]->loc);
  if (l->busy) {
    nnc_error(c->d, L, "layer '%s' calls itself", l->name);
    return el_poison();
  }
  l->busy = 1;
  el_val ret = el_poison();
  el_exec_block(c, fs, fwd->body, &ret, false);
  l->busy = 0;
  return ret;
}

/* repeat(N, Layer(...)): each instance takes the previous one's result (several results are
 * passed on as several inputs), as nn.Sequential applies its modules. */
static el_val call_repeat(el_ctx *c, el_layer *l, const el_val *args, int nargs, nnc_loc L) {
  el_val cur = {.kind = V_TUPLE, .items = (el_val *)args, .nitems = nargs};
  for (int i = 0; i < l->nchildren; i++) {
    const el_val *in = cur.kind == V_TUPLE ? cur.items : &cur;
    int n = cur.kind == V_TUPLE ? cur.nitems : 1;
    cur = el_apply_layer_vals(c, l->children[i], in, n, L);
    if (cur.kind == V_POISON || !el_within_limits(c, L)) return el_poison();
  }
  return cur.kind == V_TUPLE && cur.nitems == 1 ? cur.items[0] : cur;
}

el_val el_apply_layer(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *call) {
  if (!l) return el_poison(); /* its declaration failed and was reported */
  int n = call->list.n;
  el_val *args = nnc_arena_alloc(c->arena, sizeof(el_val) * (size_t)(n + 1));
  bool ok = true;
  for (int i = 0; i < n; i++) {
    const nnc_ast *a = call->list.items[i];
    if (a->kind == AST_KV) {
      nnc_error(c->d, a->loc, "a layer's inputs are positional");
      return el_poison();
    }
    args[i] = el_eval(c, s, a);
    ok &= args[i].kind != V_POISON;
    if (args[i].kind == V_TENSOR) args[i].loc = args[i].loc.src ? args[i].loc : a->loc;
  }
  if (!ok) return el_poison();
  return el_apply_layer_vals(c, l, args, n, call->loc);
}

static void mark_used(el_layer *l, const el_val *x, nnc_loc L) {
  if (l->used) return;
  l->used = true;
  l->first_use = L;
  l->first_type = x->node->type;
}

el_val el_apply_layer_vals(el_ctx *c, el_layer *l, const el_val *args, int nargs, nnc_loc L) {
  if (!l) return el_poison();
  if (l->kind == LK_USER || l->kind == LK_REPEAT) {
    el_val r = l->kind == LK_USER ? call_user(c, l, args, nargs, L) : call_repeat(c, l, args, nargs, L);
    l->used = true;
    return r;
  }
  bool seq = l->kind == LK_RNN || l->kind == LK_LSTM || l->kind == LK_GRU || l->kind == LK_MHA;
  if (!seq && nargs != 1) {
    nnc_error(c->d, L, "'%s' (%s) takes one input, got %d", l->name, l->ctor, nargs);
    return el_poison();
  }
  for (int i = 0; i < nargs; i++) {
    if (args[i].kind != V_TENSOR) {
      nnc_error(c->d, L, "'%s' (%s) takes tensors, input %d is %s", l->name, l->ctor, i, el_val_desc(c, &args[i]));
      return el_poison();
    }
    bool mask = l->kind == LK_MHA && i == 3; /* an attention mask may be u8 */
    if (l->kind != LK_EMBEDDING && !mask &&
        !el_need_float(c, &args[i], nnc_arena_printf(c->arena, "'%s' (%s)", l->name, l->ctor), L))
      return el_poison();
  }
  const el_val *x = &args[0];
  el_val r;
  switch (l->kind) {
  case LK_LINEAR: r = call_linear(c, l, x, L); break;
  case LK_CONV2D: r = call_conv(c, l, x, L); break;
  case LK_BATCHNORM2D: r = call_batchnorm(c, l, x, L); break;
  case LK_LAYERNORM: r = call_layernorm(c, l, x, L); break;
  case LK_DROPOUT: r = el_tensor(el_dropout(c, x->node, l->p, L), L); break;
  case LK_EMBEDDING: r = call_embedding(c, l, x, L); break;
  default: r = seq ? el_call_seq_layer(c, l, args, nargs, L) : el_poison(); break;
  }
  if (r.kind != V_POISON) mark_used(l, x, L);
  return r;
}

/* --- freeze and weight tying --------------------------------------------------------------------- */

void el_freeze_layer(el_ctx *c, el_layer *l) {
  l->frozen = true;
  for (int i = 0; i < l->nparams; i++)
    if (!c->m->params[l->param[i]].is_state) c->m->params[l->param[i]].frozen = true;
  for (int i = 0; i < l->nchildren; i++) el_freeze_layer(c, l->children[i]);
}

/* `a`, `a.b` (an inner layer), or `a.weight` (a parameter: suffix set). */
el_layer *el_find_layer_path(el_ctx *c, el_scope *s, const nnc_ast *t, const char **suffix) {
  *suffix = NULL;
  if (t->kind == AST_NAME) {
    el_entry *e = el_lookup(s, t->name);
    if (e && e->kind == E_LAYER) return e->val.layer; /* NULL after a failed declaration */
    if (e) {
      nnc_error(c->d, t->loc, "'%s' is not a layer", t->name);
      return NULL;
    }
    const char *near = el_suggest(s, t->name, NULL);
    if (near)
      nnc_error(c->d, t->loc, "unknown layer '%s'; did you mean '%s'?", t->name, near);
    else
      nnc_error(c->d, t->loc, "unknown layer '%s'", t->name);
    return NULL;
  }
  if (t->kind != AST_ATTR) {
    nnc_error(c->d, t->loc, "expected a layer name or a parameter such as fc.weight");
    return NULL;
  }
  const char *inner = NULL;
  el_layer *base = el_find_layer_path(c, s, t->a, &inner);
  if (!base) return NULL;
  if (inner) {
    nnc_error(c->d, t->loc, "'%s.%s' is a parameter; it has no '%s'", base->name, inner, t->name);
    return NULL;
  }
  if (base->kind == LK_USER) {
    for (int i = 0; i < base->nchildren; i++) {
      const char *full = base->children[i]->name;
      size_t n = strlen(base->name);
      if (strncmp(full, base->name, n) == 0 && full[n] == '.' && strcmp(full + n + 1, t->name) == 0) return base->children[i];
    }
    nnc_error(c->d, t->loc, "layer '%s' has no inner layer '%s'", base->name, t->name);
    return NULL;
  }
  *suffix = t->name;
  return base;
}

static int layer_param(el_ctx *c, el_layer *l, const char *suffix) {
  for (int i = 0; i < l->nparams; i++)
    if (strcmp(l->pname[i], suffix) == 0) return l->param[i];
  return -1;
}

static bool has_param_named(const el_layer *l, const char *suffix) {
  bool w = strcmp(suffix, "weight") == 0, b = strcmp(suffix, "bias") == 0;
  switch (l->kind) {
  case LK_LINEAR: case LK_CONV2D: return w || (b && l->bias);
  case LK_BATCHNORM2D: case LK_LAYERNORM: return w || b;
  case LK_EMBEDDING: return w;
  case LK_RNN: case LK_LSTM: case LK_GRU: case LK_MHA: return layer_param(NULL, (el_layer *)l, suffix) >= 0;
  default: return false;
  }
}

/* `dst.weight = src.weight`: dst's parameter shares src's storage (PyTorch's weight tying).
 * The graph reads the shared parameter through src's node, so gradients of both uses sum. */
void el_tie(el_ctx *c, el_scope *s, const nnc_ast *dst, const nnc_ast *src) {
  const char *ds = NULL, *ss = NULL;
  el_layer *dl = el_find_layer_path(c, s, dst, &ds);
  if (!dl) return;
  if (!src || src->kind != AST_ATTR) {
    nnc_error(c->d, src ? src->loc : dst->loc, "weight tying takes a parameter: %s.%s = other.weight", dl->name, ds ? ds : "weight");
    return;
  }
  el_layer *sl = el_find_layer_path(c, s, src, &ss);
  if (!sl) return;
  if (!ds || !has_param_named(dl, ds)) {
    nnc_error(c->d, dst->loc, "'%s' has no parameter '%s'", dl->name, ds ? ds : "");
    return;
  }
  if (!ss || !has_param_named(sl, ss)) {
    nnc_error(c->d, src->loc, "'%s' has no parameter '%s'", sl->name, ss ? ss : "");
    return;
  }
  int si = layer_param(c, sl, ss);
  if (si < 0) {
    nnc_error(c->d, src->loc, "'%s.%s' has no shape yet: give '%s' its input size or use it before tying", sl->name, ss, sl->name);
    return;
  }
  int di = layer_param(c, dl, ds);
  if (di < 0) {
    if (dl->nties == EL_MAX_PARAMS) return;
    dl->tie_suffix[dl->nties] = ds;
    dl->tie_src[dl->nties] = si;
    dl->tie_loc[dl->nties++] = dst->loc;
    return;
  }
  if (di < c->pnodes_cap && c->pnodes[di]) {
    nnc_error(c->d, dst->loc, "tie '%s.%s' before its first use", dl->name, ds);
    return;
  }
  const nnc_param *sp = &c->m->params[si], *dp = &c->m->params[di];
  if (!nnc_type_equal(&sp->type, &dp->type)) {
    nnc_error(c->d, dst->loc, "cannot tie '%s' %s to '%s' %s: shapes differ", dp->name, el_type_str(c, &dp->type), sp->name,
              el_type_str(c, &sp->type));
    return;
  }
  if (si != di) c->m->params[di].tied_to = si;
}
