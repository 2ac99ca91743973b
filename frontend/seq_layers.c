/* The recurrent layers (RNN, LSTM, GRU) and MultiheadAttention: PyTorch's semantics, parameter
 * names, layouts and default inits, as composites of primitives.
 *
 * A recurrent layer is unrolled over its static sequence length: the input projection of every
 * step is one matmul over the whole sequence, then each step adds the recurrent projection of
 * the previous hidden state and applies the cell (PyTorch's equations, gate orders i,f,g,o for
 * LSTM and r,z,n for GRU). Calls return the output sequence and the final states as several
 * values: `out, h = rnn(x)`, `out, h, c = lstm(x)`. MultiheadAttention returns the attention
 * output only (PyTorch's first result). */
#include "elab.h"

#include <math.h>
#include <string.h>

static void note_from(el_ctx *c, const el_val *v) {
  if (v->kind == V_TENSOR && v->loc.src) nnc_note(c->d, v->loc, "%s comes from here", el_type_str(c, &v->node->type));
}

static int gates(const el_layer *l) { return l->kind == LK_LSTM ? 4 : l->kind == LK_GRU ? 3 : 1; }

/* --- declarations ------------------------------------------------------------------------------ */

/* The keyword list of a recurrent layer: PyTorch's positional order with two positional
 * arguments (input_size, hidden_size), else hidden_size first and input_size inferred. */
static el_sig recurrent_sig(const el_layer *l, bool two) {
  static const char *const rest[] = {"num_layers", "nonlinearity", "bias", "batch_first", "dropout", "bidirectional"};
  el_sig sig = {l->ctor, {0}, two ? 2 : 1};
  int n = 0;
  if (two) sig.params[n++] = "input_size";
  sig.params[n++] = "hidden_size";
  for (size_t i = 0; i < sizeof rest / sizeof *rest; i++)
    if (l->kind == LK_RNN || strcmp(rest[i], "nonlinearity") != 0) sig.params[n++] = rest[i];
  if (!two) sig.params[n++] = "input_size";
  return sig;
}

static const nnc_ast *kw(const el_sig *sig, const nnc_ast **slot, const char *name) {
  for (int i = 0; i < EL_MAX_ARGS && sig->params[i]; i++)
    if (strcmp(sig->params[i], name) == 0) return slot[i];
  return NULL;
}

static bool declare_recurrent(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *call) {
  int npos = 0;
  for (int i = 0; i < call->list.n; i++) npos += call->list.items[i]->kind != AST_KV;
  el_sig sig = recurrent_sig(l, npos >= 2);
  const nnc_ast *slot[EL_MAX_ARGS], *e;
  if (!el_bind_args(c, &sig, call, 0, slot)) return false;
  bool ok = el_get_int(c, s, kw(&sig, slot, "hidden_size"), "hidden_size", 1, INT32_MAX, &l->out);
  if ((e = kw(&sig, slot, "input_size"))) ok &= el_get_int(c, s, e, "input_size", 1, INT32_MAX, &l->in);
  if ((e = kw(&sig, slot, "num_layers"))) ok &= el_get_int(c, s, e, "num_layers", 1, 64, &l->num_layers);
  if ((e = kw(&sig, slot, "bias"))) ok &= el_get_bool(c, s, e, "bias", &l->bias);
  if ((e = kw(&sig, slot, "batch_first"))) ok &= el_get_bool(c, s, e, "batch_first", &l->batch_first);
  if ((e = kw(&sig, slot, "dropout"))) ok &= el_get_num(c, s, e, "dropout", 0, 1, &l->p);
  if ((e = kw(&sig, slot, "bidirectional"))) {
    bool bi = false;
    ok &= el_get_bool(c, s, e, "bidirectional", &bi);
    if (bi) {
      nnc_error(c->d, e->loc, "bidirectional %s layers are not supported: run a second one over the reversed sequence", l->ctor);
      ok = false;
    }
  }
  if ((e = kw(&sig, slot, "nonlinearity"))) {
    el_val v = el_eval(c, s, e);
    if (v.kind != V_POISON && (v.kind != V_STR || (strcmp(v.str, "tanh") != 0 && strcmp(v.str, "relu") != 0))) {
      nnc_error(c->d, e->loc, "'nonlinearity' must be \"tanh\" or \"relu\"");
      ok = false;
    }
    ok &= v.kind != V_POISON;
    l->relu = ok && strcmp(v.str, "relu") == 0;
  }
  return ok;
}

static bool declare_mha(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *call) {
  static const el_sig sig = {"MultiheadAttention", {"embed_dim", "num_heads", "dropout", "bias", "batch_first", "causal"}, 2};
  const nnc_ast *slot[EL_MAX_ARGS];
  if (!el_bind_args(c, &sig, call, 0, slot)) return false;
  bool ok = el_get_int(c, s, slot[0], "embed_dim", 1, INT32_MAX, &l->in);
  ok &= el_get_int(c, s, slot[1], "num_heads", 1, INT32_MAX, &l->heads);
  if (slot[2]) ok &= el_get_num(c, s, slot[2], "dropout", 0, 1, &l->p);
  if (slot[3]) ok &= el_get_bool(c, s, slot[3], "bias", &l->bias);
  if (slot[4]) ok &= el_get_bool(c, s, slot[4], "batch_first", &l->batch_first);
  if (slot[5]) ok &= el_get_bool(c, s, slot[5], "causal", &l->causal);
  if (ok && l->in % l->heads) {
    nnc_error(c->d, call->loc, "embed_dim %lld is not divisible by num_heads %lld", (long long)l->in, (long long)l->heads);
    ok = false;
  }
  l->out = l->in;
  return ok;
}

bool el_declare_seq_layer(el_ctx *c, el_scope *s, el_layer *l, const nnc_ast *call) {
  l->p = 0; /* dropout defaults to 0 here, not Dropout's 0.5 */
  l->num_layers = 1;
  return l->kind == LK_MHA ? declare_mha(c, s, l, call) : declare_recurrent(c, s, l, call);
}

/* --- parameters ---------------------------------------------------------------------------------- */

static nnc_type mat(int64_t r, int64_t k) { return nnc_type_make(NNC_F32, 2, (int64_t[]){r, k}, -1); }
static nnc_type vec(int64_t n) { return nnc_type_make(NNC_F32, 1, &n, -1); }

/* RNN/LSTM/GRU: weight_ih_lK [G*H, in], weight_hh_lK [G*H, H], bias_ih_lK, bias_hh_lK [G*H], every
 * one uniform(-1/sqrt(H), 1/sqrt(H)) (PyTorch's reset_parameters). MultiheadAttention (torch
 * 1.13's _reset_parameters): in_proj_weight [3E, E] xavier_uniform, in_proj_bias zeros,
 * out_proj.weight as Linear(E, E) (uniform +-1/sqrt(E)), out_proj.bias zeros. */
void el_materialize_seq_layer(el_ctx *c, el_layer *l) {
  nnc_init zeros = {NNC_INIT_ZEROS, 0, 0};
  if (l->kind == LK_MHA) {
    int64_t e = l->in;
    double xb = sqrt(6.0 / (double)(e + 3 * e)), lb = 1.0 / sqrt((double)e);
    el_add_param(c, l, "in_proj_weight", mat(3 * e, e), (nnc_init){NNC_INIT_UNIFORM, -xb, xb}, false, l->loc);
    if (l->bias) el_add_param(c, l, "in_proj_bias", vec(3 * e), zeros, false, l->loc);
    el_add_param(c, l, "out_proj.weight", mat(e, e), (nnc_init){NNC_INIT_UNIFORM, -lb, lb}, false, l->loc);
    if (l->bias) el_add_param(c, l, "out_proj.bias", vec(e), zeros, false, l->loc);
    return;
  }
  int64_t h = l->out, g = gates(l) * h;
  double b = 1.0 / sqrt((double)h);
  nnc_init u = {NNC_INIT_UNIFORM, -b, b};
  for (int64_t k = 0; k < l->num_layers; k++) {
    int64_t in = k == 0 ? l->in : h;
    el_add_param(c, l, nnc_arena_printf(c->arena, "weight_ih_l%lld", (long long)k), mat(g, in), u, false, l->loc);
    el_add_param(c, l, nnc_arena_printf(c->arena, "weight_hh_l%lld", (long long)k), mat(g, h), u, false, l->loc);
    if (!l->bias) continue;
    el_add_param(c, l, nnc_arena_printf(c->arena, "bias_ih_l%lld", (long long)k), vec(g), u, false, l->loc);
    el_add_param(c, l, nnc_arena_printf(c->arena, "bias_hh_l%lld", (long long)k), vec(g), u, false, l->loc);
  }
}

static nnc_node *param_k(el_ctx *c, el_layer *l, const char *what, int64_t k, nnc_loc L) {
  return el_pnode(c, l, nnc_arena_printf(c->arena, "%s_l%lld", what, (long long)k), L);
}

/* --- helpers -------------------------------------------------------------------------------------- */

static nnc_node *permute(el_ctx *c, nnc_node *x, const int64_t *perm, nnc_loc L) {
  nnc_node *n = el_new(c, NNC_OP_permute, 1, &x, L);
  if (n) nnc_node_set_ints(n, NNC_ATTR_perm, x->type.rank, perm);
  return el_done(c, n);
}

/* x @ w^T + b over the last axis (b may be NULL): nn.Linear's affine map. */
static nnc_node *affine(el_ctx *c, nnc_node *x, nnc_node *w, nnc_node *b, nnc_loc L) {
  nnc_node *y = el_matmul(c, x, w, false, true, L);
  return b && y ? el_binary(c, NNC_OP_add, y, el_bcast_right(c, b, &y->type, L), L) : y;
}

static nnc_node *gate(el_ctx *c, nnc_node *x, int j, int64_t h, nnc_loc L) {
  return x ? el_slice_axis(c, x, x->type.rank - 1, j * h, (j + 1) * h, 1, L) : NULL;
}

static nnc_node *add(el_ctx *c, nnc_node *a, nnc_node *b, nnc_loc L) { return el_binary(c, NNC_OP_add, a, b, L); }
static nnc_node *mul(el_ctx *c, nnc_node *a, nnc_node *b, nnc_loc L) { return el_binary(c, NNC_OP_mul, a, b, L); }

/* A sequence tensor of rank 3 whose time and feature axes are static; false after a diagnostic. */
static bool sequence_arg(el_ctx *c, el_layer *l, const el_val *x, int time_axis, nnc_loc L) {
  const nnc_type *t = &x->node->type;
  if (t->rank == 3 && t->batch_axis != time_axis && t->batch_axis != 2) return true;
  nnc_error(c->d, L, "'%s' (%s) needs a sequence %s, got %s", l->name, l->ctor,
            l->batch_first ? "[batch, time, features] (batch_first=true)" : "[time, batch, features] (batch_first=false)",
            el_type_str(c, t));
  note_from(c, x);
  return false;
}

/* --- recurrent layers ------------------------------------------------------------------------------ */

/* One step of the cell. xt: the input projection at this step [B, G*H] (bias included); h, cs:
 * the previous states (NULL: zeros at the first step without initial states). */
static nnc_node *cell(el_ctx *c, el_layer *l, int64_t k, nnc_node *xt, nnc_node *h, nnc_node **cs, nnc_loc L) {
  int64_t H = l->out;
  nnc_node *bhh = l->bias ? param_k(c, l, "bias_hh", k, L) : NULL;
  nnc_node *hw = h ? affine(c, h, param_k(c, l, "weight_hh", k, L), bhh, L) : bhh ? el_bcast_right(c, bhh, &xt->type, L) : NULL;
  if (l->kind == LK_RNN) {
    nnc_node *pre = hw ? add(c, xt, hw, L) : xt;
    return l->relu ? el_scalar_op(c, NNC_OP_max, pre, 0, L) : el_unary(c, NNC_OP_tanh, pre, L);
  }
  if (l->kind == LK_LSTM) {
    nnc_node *g = hw ? add(c, xt, hw, L) : xt;
    nnc_node *i = el_sigmoid(c, gate(c, g, 0, H, L), L), *f = el_sigmoid(c, gate(c, g, 1, H, L), L);
    nnc_node *gg = el_unary(c, NNC_OP_tanh, gate(c, g, 2, H, L), L), *o = el_sigmoid(c, gate(c, g, 3, H, L), L);
    *cs = *cs ? add(c, mul(c, f, *cs, L), mul(c, i, gg, L), L) : mul(c, i, gg, L);
    return mul(c, o, el_unary(c, NNC_OP_tanh, *cs, L), L);
  }
  /* GRU: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (1 - z) n + z h = n + z (h - n) */
  nnc_node *r = el_sigmoid(c, hw ? add(c, gate(c, xt, 0, H, L), gate(c, hw, 0, H, L), L) : gate(c, xt, 0, H, L), L);
  nnc_node *z = el_sigmoid(c, hw ? add(c, gate(c, xt, 1, H, L), gate(c, hw, 1, H, L), L) : gate(c, xt, 1, H, L), L);
  nnc_node *n = gate(c, xt, 2, H, L);
  if (hw) n = add(c, n, mul(c, r, gate(c, hw, 2, H, L), L), L);
  n = el_unary(c, NNC_OP_tanh, n, L);
  if (!h) return el_binary(c, NNC_OP_sub, n, mul(c, z, n, L), L);
  return add(c, n, mul(c, z, el_binary(c, NNC_OP_sub, h, n, L), L), L);
}

/* An initial state [num_layers, B, H] matching the input's batch; false after a diagnostic. */
static bool state_arg(el_ctx *c, el_layer *l, const el_val *s, const nnc_type *x, const char *what, nnc_loc L) {
  const nnc_type *t = &s->node->type;
  int64_t b = x->dims[0];
  bool ok = t->rank == 3 && t->dims[0] == l->num_layers && t->dims[1] == b && t->dims[2] == l->out &&
            (t->batch_axis == 1) == (x->batch_axis == 0) && t->batch_axis != 0 && t->batch_axis != 2;
  if (ok) return true;
  nnc_type want = {.dtype = NNC_F32, .rank = 3, .dims = {l->num_layers, b, l->out}, .batch_axis = x->batch_axis == 0 ? 1 : -1};
  nnc_error(c->d, L, "'%s' (%s): the initial %s must be %s, got %s", l->name, l->ctor, what, el_type_str(c, &want), el_type_str(c, t));
  note_from(c, s);
  return false;
}

static el_val call_recurrent(el_ctx *c, el_layer *l, const el_val *args, int nargs, nnc_loc L) {
  int nstate = l->kind == LK_LSTM ? 2 : 1;
  if (nargs < 1 || nargs > 1 + nstate) {
    nnc_error(c->d, L, "'%s' (%s) takes the input sequence and optionally %s, got %d inputs", l->name, l->ctor,
              nstate == 2 ? "h0 and c0" : "h0", nargs);
    return el_poison();
  }
  const el_val *x = &args[0];
  int time_axis = l->batch_first ? 1 : 0;
  if (!sequence_arg(c, l, x, time_axis, L)) return el_poison();
  if (!el_check_in(c, l, x->node->type.dims[2], "input features", x, L)) return el_poison();
  if (!el_materialize(c, l)) return el_poison();
  nnc_node *seq = l->batch_first ? x->node : permute(c, x->node, (int64_t[]){1, 0, 2}, L); /* [B, T, I] */
  if (!seq) return el_poison();
  const nnc_type *bt = &seq->type;
  for (int i = 1; i < nargs; i++)
    if (!state_arg(c, l, &args[i], bt, i == 1 ? "hidden state h0" : "cell state c0", L)) return el_poison();
  if (nargs > 1 && nargs < 1 + nstate) {
    nnc_error(c->d, L, "'%s' (LSTM) needs both h0 and c0, or neither", l->name);
    return el_poison();
  }
  int64_t T = bt->dims[1], nl = l->num_layers;
  if (T > EL_MAX_ITERATIONS) {
    nnc_error(c->d, L, "'%s': a sequence of %lld steps is too long to unroll", l->name, (long long)T);
    return el_poison();
  }
  nnc_node **hs = nnc_arena_alloc(c->arena, sizeof(nnc_node *) * (size_t)T);
  nnc_node **hn = nnc_arena_alloc(c->arena, sizeof(nnc_node *) * (size_t)nl), **cn = nnc_arena_alloc(c->arena, sizeof(nnc_node *) * (size_t)nl);
  for (int64_t k = 0; k < nl; k++) {
    nnc_node *bih = l->bias ? param_k(c, l, "bias_ih", k, L) : NULL;
    nnc_node *xw = affine(c, seq, param_k(c, l, "weight_ih", k, L), bih, L); /* every step's input projection */
    nnc_node *h = nargs > 1 ? el_take(c, args[1].node, 0, k, L) : NULL;
    nnc_node *cs = nargs > 2 ? el_take(c, args[2].node, 0, k, L) : NULL;
    for (int64_t t = 0; t < T; t++) {
      c->iterations++;
      if (!el_within_limits(c, L)) return el_poison();
      h = cell(c, l, k, el_take(c, xw, 1, t, L), h, &cs, L);
      if (!h) return el_poison();
      hs[t] = h;
    }
    hn[k] = h, cn[k] = cs;
    seq = el_stack(c, hs, (int)T, 1, L); /* [B, T, H] */
    if (k + 1 < nl) seq = el_dropout(c, seq, l->p, L);
  }
  nnc_node *out = l->batch_first ? seq : permute(c, seq, (int64_t[]){1, 0, 2}, L);
  el_val r = {.kind = V_TUPLE, .loc = L, .nitems = 1 + nstate};
  r.items = nnc_arena_alloc(c->arena, sizeof(el_val) * (size_t)r.nitems);
  r.items[0] = el_tensor(out, L);
  r.items[1] = el_tensor(el_stack(c, hn, (int)nl, 0, L), L);
  if (nstate == 2) r.items[2] = el_tensor(el_stack(c, cn, (int)nl, 0, L), L);
  for (int i = 0; i < r.nitems; i++)
    if (r.items[i].kind == V_POISON) return el_poison();
  return r;
}

/* --- attention ---------------------------------------------------------------------------------- */

/* [B, L, E] -> [B, heads, L, E/heads] */
static nnc_node *split_heads(el_ctx *c, nnc_node *x, int64_t heads, nnc_loc L) {
  if (!x) return NULL;
  const nnc_type *t = &x->type;
  nnc_type r = {.dtype = NNC_F32, .rank = 4, .dims = {t->dims[0], t->dims[1], heads, t->dims[2] / heads}, .batch_axis = t->batch_axis};
  return permute(c, el_reshape(c, x, &r, L), (int64_t[]){0, 2, 1, 3}, L);
}

static bool attention_mask(el_ctx *c, el_layer *l, const el_val *m, int64_t lq, int64_t ls, nnc_loc L) {
  const nnc_type *t = &m->node->type;
  if (t->rank == 2 && t->batch_axis < 0 && t->dims[0] == lq && t->dims[1] == ls && t->dtype != NNC_I32) return true;
  nnc_error(c->d, L, "'%s': attn_mask must be u8 (1: masked out) or f32 (added) of shape [%lld, %lld], got %s", l->name,
            (long long)lq, (long long)ls, el_type_str(c, t));
  note_from(c, m);
  return false;
}

/* PyTorch's multi_head_attention_forward: q, k, v projected by in_proj, split into heads,
 * softmax(q k^T / sqrt(d) + mask) v, heads joined, out_proj. */
static el_val call_mha(el_ctx *c, el_layer *l, const el_val *args, int nargs, nnc_loc L) {
  if (nargs != 1 && nargs != 3 && nargs != 4) {
    nnc_error(c->d, L, "'%s' (MultiheadAttention) takes x, or query, key, value and optionally attn_mask; got %d inputs",
              l->name, nargs);
    return el_poison();
  }
  int time_axis = l->batch_first ? 1 : 0;
  nnc_node *qkv[3];
  for (int i = 0; i < 3; i++) {
    const el_val *a = &args[nargs == 1 ? 0 : i];
    if (!sequence_arg(c, l, a, time_axis, L) || !el_check_in(c, l, a->node->type.dims[2], "embedding features", a, L))
      return el_poison();
    qkv[i] = l->batch_first ? a->node : permute(c, a->node, (int64_t[]){1, 0, 2}, L);
    if (!qkv[i]) return el_poison();
  }
  const nnc_type *tq = &qkv[0]->type, *tk = &qkv[1]->type;
  if (tq->dims[0] != tk->dims[0] || tq->batch_axis != tk->batch_axis || !nnc_shape_equal(tk, &qkv[2]->type)) {
    nnc_error(c->d, L, "'%s': query %s, key %s and value %s do not match", l->name, el_type_str(c, tq), el_type_str(c, tk),
              el_type_str(c, &qkv[2]->type));
    return el_poison();
  }
  int64_t E = l->in, H = l->heads, d = E / H, lq = tq->dims[1], ls = tk->dims[1];
  if (nargs == 4 && !attention_mask(c, l, &args[3], lq, ls, L)) return el_poison();
  if (!el_materialize(c, l)) return el_poison();
  nnc_node *w = el_pnode(c, l, "in_proj_weight", L), *b = l->bias ? el_pnode(c, l, "in_proj_bias", L) : NULL;
  nnc_node *q, *k, *v;
  if (qkv[0] == qkv[1] && qkv[1] == qkv[2]) { /* self-attention: one projection, then its thirds */
    nnc_node *p = affine(c, qkv[0], w, b, L);
    q = gate(c, p, 0, E, L), k = gate(c, p, 1, E, L), v = gate(c, p, 2, E, L);
  } else {
    nnc_node *pr[3];
    for (int i = 0; i < 3; i++)
      pr[i] = affine(c, qkv[i], el_slice_axis(c, w, 0, i * E, (i + 1) * E, 1, L), b ? el_slice_axis(c, b, 0, i * E, (i + 1) * E, 1, L) : NULL, L);
    q = pr[0], k = pr[1], v = pr[2];
  }
  q = el_scalar_op(c, NNC_OP_mul, q, 1.0 / sqrt((double)d), L);
  nnc_node *qh = split_heads(c, q, H, L), *kh = split_heads(c, k, H, L), *vh = split_heads(c, v, H, L);
  nnc_node *s = el_matmul(c, qh, kh, false, true, L); /* [B, heads, Lq, Ls] */
  if (!s) return el_poison();
  nnc_node *masked = l->causal ? el_above_diagonal(c, lq, ls, 0, L) : NULL;
  if (nargs == 4 && args[3].node->type.dtype == NNC_F32) s = add(c, s, el_bcast_right(c, args[3].node, &s->type, L), L);
  else if (nargs == 4) masked = masked ? el_binary(c, NNC_OP_max, masked, args[3].node, L) : args[3].node;
  if (masked && s) {
    nnc_node *sel = el_new(c, NNC_OP_select, 3, (nnc_node *[]){el_bcast_right(c, masked, &s->type, L), el_const(c, &s->type, -INFINITY, L), s}, L);
    s = el_done(c, sel);
  }
  nnc_node *a = el_dropout(c, el_softmax(c, s, 3, false, L), l->p, L);
  nnc_node *o = permute(c, el_matmul(c, a, vh, false, false, L), (int64_t[]){0, 2, 1, 3}, L); /* [B, Lq, heads, d] */
  if (!o) return el_poison();
  nnc_type ot = {.dtype = NNC_F32, .rank = 3, .dims = {tq->dims[0], lq, E}, .batch_axis = tq->batch_axis};
  nnc_node *y = affine(c, el_reshape(c, o, &ot, L), el_pnode(c, l, "out_proj.weight", L), l->bias ? el_pnode(c, l, "out_proj.bias", L) : NULL, L);
  if (y && !l->batch_first) y = permute(c, y, (int64_t[]){1, 0, 2}, L);
  return el_tensor(y, L);
}

el_val el_call_seq_layer(el_ctx *c, el_layer *l, const el_val *args, int nargs, nnc_loc L) {
  return l->kind == LK_MHA ? call_mha(c, l, args, nargs, L) : call_recurrent(c, l, args, nargs, L);
}
