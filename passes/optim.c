/* Optimizer updates as graph nodes, formula for formula as torch 1.13's single-tensor
 * implementations (torch/optim/{sgd,adam,adamw}.py, torch/nn/utils/clip_grad.py); the
 * comments quote the PyTorch line each group of nodes computes. Constants that PyTorch
 * computes in Python doubles (1 - beta1, ...) are computed in double here and rounded once
 * when the const is read as f32. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "builder.h"

typedef nnc_gb B;

static nnc_node *add(B *b, nnc_node *x, nnc_node *y) { return nnc_gb_binary(b, NNC_OP_add, x, y); }
static nnc_node *sub(B *b, nnc_node *x, nnc_node *y) { return nnc_gb_binary(b, NNC_OP_sub, x, y); }
static nnc_node *mul(B *b, nnc_node *x, nnc_node *y) { return nnc_gb_binary(b, NNC_OP_mul, x, y); }
static nnc_node *dvd(B *b, nnc_node *x, nnc_node *y) { return nnc_gb_binary(b, NNC_OP_div, x, y); }
static nnc_node *k(B *b, const nnc_node *like, double v) { return nnc_gb_const_like(b, like, v); }
static nnc_node *kscalar(B *b, double v) { return nnc_gb_const(b, nnc_type_scalar(NNC_F32), v); }

void nnc_optim_defaults(nnc_train_cfg *c, const char *optimizer) {
  c->optimizer = optimizer ? optimizer : "Adam";
  c->lr = 1e-3;
  c->momentum = 0, c->dampening = 0, c->weight_decay = 0, c->nesterov = false;
  c->beta1 = 0.9, c->beta2 = 0.999, c->eps = 1e-8;
  if (strcasecmp(c->optimizer, "AdamW") == 0) c->weight_decay = 1e-2;
}

nnc_node *nnc_optim_scalar(nnc_graph *g, const char *name, nnc_dtype dt) {
  for (int i = 0; i < g->nnodes; i++) {
    nnc_node *n = g->nodes[i];
    if (n->op == NNC_OP_scalar && n->name && strcmp(n->name, name) == 0)
      return n->type.dtype == dt && n->type.rank == 0 ? n : NULL;
  }
  nnc_node *n = nnc_node_new(g, NNC_OP_scalar, 0, NULL, (nnc_loc){0});
  n->name = nnc_arena_strdup(g->arena, name);
  n->type = nnc_type_scalar(dt);
  return n;
}

/* --- configuration ------------------------------------------------------------------------ */

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } opt_kind;

static bool parse_kind(const char *name, opt_kind *k) {
  if (!name || strcasecmp(name, "Adam") == 0) *k = OPT_ADAM;
  else if (strcasecmp(name, "AdamW") == 0) *k = OPT_ADAMW;
  else if (strcasecmp(name, "SGD") == 0) *k = OPT_SGD;
  else return false;
  return true;
}

/* The checks PyTorch's constructors make, so no update divides by zero or diverges by typo. */
static bool check_cfg(const nnc_train_cfg *c, opt_kind kind, nnc_diags *d) {
  nnc_loc none = {0};
  if (!(c->weight_decay >= 0)) nnc_error(d, none, "invalid weight_decay value: %g", c->weight_decay);
  else if (kind == OPT_SGD && !(c->momentum >= 0)) nnc_error(d, none, "invalid momentum value: %g", c->momentum);
  else if (kind == OPT_SGD && c->nesterov && (c->momentum <= 0 || c->dampening != 0))
    nnc_error(d, none, "nesterov momentum requires a momentum and zero dampening");
  else if (kind != OPT_SGD && !(c->beta1 >= 0 && c->beta1 < 1))
    nnc_error(d, none, "invalid beta parameter at index 0: %g", c->beta1);
  else if (kind != OPT_SGD && !(c->beta2 >= 0 && c->beta2 < 1))
    nnc_error(d, none, "invalid beta parameter at index 1: %g", c->beta2);
  else if (kind != OPT_SGD && !(c->eps >= 0)) nnc_error(d, none, "invalid epsilon value: %g", c->eps);
  else if (!(c->clip_grad_norm >= 0)) nnc_error(d, none, "invalid clip_grad_norm value: %g", c->clip_grad_norm);
  else return true;
  return false;
}

/* --- state buffers ------------------------------------------------------------------------ */

/* The moment buffer "<param>.<suffix>": a zero-initialized state param of the module, read
 * through a `state` node and written back as a state output. */
static nnc_node *moment(B *b, nnc_module *m, const nnc_optim_target *t, const char *suffix) {
  const char *name = nnc_arena_printf(b->g->arena, "%s.%s", t->name, suffix);
  int idx = nnc_module_find_param(m, name);
  if (idx < 0) {
    nnc_param p = {.name = name, .type = t->param->type, .init = {NNC_INIT_ZEROS, 0, 0}, .is_state = true,
                   .tied_to = -1};
    idx = nnc_module_add_param(m, &p);
  } else if (!nnc_type_equal(&m->params[idx].type, &t->param->type) || !m->params[idx].is_state) {
    nnc_error(b->diags, b->loc, "optimizer state '%s' clashes with a buffer of the module", name);
    b->failed = true;
    return NULL;
  }
  return nnc_gb_source(b, NNC_OP_state, name, t->param->type);
}

static void write_state(B *b, const char *name, nnc_node *v) {
  if (v && !b->failed) nnc_graph_add_state_output(b->g, name, v);
}

static void write_moment(B *b, const nnc_optim_target *t, const char *suffix, nnc_node *v) {
  write_state(b, nnc_arena_printf(b->g->arena, "%s.%s", t->name, suffix), v);
}

/* --- clip_grad_norm ------------------------------------------------------------------------- */

/* norms = [norm(g) for g]; total = norm(stack(norms)); coef = clamp(max_norm / (total + 1e-6),
 * max=1); g.mul_(coef) */
static void clip_grad_norm(B *b, double max_norm, int n, nnc_node **grads) {
  nnc_node *sumsq = NULL;
  for (int i = 0; i < n; i++) {
    nnc_node *norm = nnc_gb_unary(b, NNC_OP_sqrt, nnc_gb_sum_all(b, mul(b, grads[i], grads[i])));
    nnc_node *sq = mul(b, norm, norm);
    sumsq = sumsq ? add(b, sumsq, sq) : sq;
  }
  if (!sumsq) return;
  nnc_node *total = nnc_gb_unary(b, NNC_OP_sqrt, sumsq);
  nnc_node *coef = dvd(b, kscalar(b, max_norm), add(b, total, kscalar(b, 1e-6)));
  coef = nnc_gb_binary(b, NNC_OP_min, coef, kscalar(b, 1.0));
  for (int i = 0; i < n; i++) grads[i] = mul(b, grads[i], nnc_gb_splat(b, coef, grads[i]->type));
}

/* --- SGD ------------------------------------------------------------------------------------ */

typedef struct step_scalars {
  nnc_node *lr;                 /* f32[] */
  nnc_node *first;              /* u8[]: step == 0 */
  nnc_node *step_size;          /* Adam: lr / bias_correction1 */
  nnc_node *bc2_sqrt;           /* Adam: sqrt(bias_correction2) */
  nnc_node *decay;              /* AdamW: 1 - lr * weight_decay */
} step_scalars;

static void sgd(B *b, nnc_module *m, const nnc_train_cfg *c, const step_scalars *s, const nnc_optim_target *t,
                nnc_node *grad) {
  nnc_node *p = t->param, *d = grad;
  /* d_p = d_p.add(param, alpha=weight_decay) */
  if (c->weight_decay != 0) d = add(b, d, mul(b, k(b, p, c->weight_decay), p));
  if (c->momentum != 0) {
    /* buf = clone(d_p) on the first step, else buf.mul_(momentum).add_(d_p, alpha=1 - dampening) */
    nnc_node *buf = moment(b, m, t, "momentum_buffer");
    nnc_node *later = add(b, mul(b, buf, k(b, p, c->momentum)), mul(b, k(b, p, 1.0 - c->dampening), d));
    buf = nnc_gb_select(b, nnc_gb_splat(b, s->first, p->type), d, later);
    write_moment(b, t, "momentum_buffer", buf);
    /* d_p = d_p.add(buf, alpha=momentum) if nesterov else buf */
    d = c->nesterov ? add(b, d, mul(b, k(b, p, c->momentum), buf)) : buf;
  }
  /* param.add_(d_p, alpha=-lr) */
  write_state(b, t->name, sub(b, p, mul(b, nnc_gb_splat(b, s->lr, p->type), d)));
}

/* --- Adam, AdamW ------------------------------------------------------------------------------ */

static void adam(B *b, nnc_module *m, const nnc_train_cfg *c, opt_kind kind, const step_scalars *s,
                 const nnc_optim_target *t, nnc_node *grad) {
  nnc_node *p = t->param, *g = grad;
  /* AdamW: param.mul_(1 - lr * weight_decay);  Adam: grad = grad.add(param, alpha=weight_decay) */
  if (kind == OPT_ADAMW && c->weight_decay != 0) p = mul(b, p, nnc_gb_splat(b, s->decay, p->type));
  if (kind == OPT_ADAM && c->weight_decay != 0) g = add(b, g, mul(b, k(b, p, c->weight_decay), p));
  nnc_node *m1 = moment(b, m, t, "exp_avg"), *m2 = moment(b, m, t, "exp_avg_sq");
  /* exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1) */
  m1 = add(b, mul(b, m1, k(b, p, c->beta1)), mul(b, k(b, p, 1.0 - c->beta1), g));
  /* exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2) */
  m2 = add(b, mul(b, m2, k(b, p, c->beta2)), mul(b, mul(b, k(b, p, 1.0 - c->beta2), g), g));
  /* denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps) */
  nnc_node *denom = dvd(b, nnc_gb_unary(b, NNC_OP_sqrt, m2), nnc_gb_splat(b, s->bc2_sqrt, p->type));
  denom = add(b, denom, k(b, p, c->eps));
  /* param.addcdiv_(exp_avg, denom, value=-step_size): value * exp_avg / denom, left to right */
  nnc_node *upd = dvd(b, mul(b, nnc_gb_splat(b, s->step_size, p->type), m1), denom);
  write_state(b, t->name, sub(b, p, upd));
  write_moment(b, t, "exp_avg", m1);
  write_moment(b, t, "exp_avg_sq", m2);
}

/* expm1(x) for a rank-0 x: a degree-12 Taylor polynomial (Horner) where |x| < 0.5, whose
 * truncation error is below 1e-12 there, else exp(x) - 1, which cancels little out there. */
static nnc_node *expm1_scalar(B *b, nnc_node *x) {
  nnc_node *r = kscalar(b, 1.0);
  for (int k = 12; k >= 2; k--) r = add(b, kscalar(b, 1.0), dvd(b, mul(b, x, r), kscalar(b, k)));
  nnc_node *poly = mul(b, x, r);
  nnc_node *direct = sub(b, nnc_gb_unary(b, NNC_OP_exp, x), kscalar(b, 1.0));
  nnc_node *small = nnc_gb_cmp(b, NNC_CMP_LT, nnc_gb_unary(b, NNC_OP_abs, x), kscalar(b, 0.5));
  return nnc_gb_select(b, small, poly, direct);
}

/* 1 - beta^t as -expm1(t * ln(beta)), ln(beta) taken in double. PyTorch computes beta ** t in
 * double; in f32, 1 - beta^t cancels: 1 - 0.999 loses 3e-5 of its value to the rounding of
 * 0.999, and an f32 pow of the rounded beta drifts by t times beta's rounding error. */
static nnc_node *bias_correction(B *b, nnc_node *t, double beta) {
  if (beta == 0) return kscalar(b, 1.0);
  return nnc_gb_unary(b, NNC_OP_neg, expm1_scalar(b, mul(b, t, kscalar(b, log(beta)))));
}

static bool step_scalars_make(B *b, const nnc_train_cfg *c, opt_kind kind, step_scalars *s) {
  s->lr = nnc_optim_scalar(b->g, "lr", NNC_F32);
  nnc_node *step = nnc_optim_scalar(b->g, "step", NNC_I32);
  if (!s->lr || !step) {
    nnc_error(b->diags, b->loc, "the runtime scalars 'lr' and 'step' must be f32[] and i32[]");
    return false;
  }
  if (kind == OPT_SGD) {
    if (c->momentum != 0) s->first = nnc_gb_cmp(b, NNC_CMP_EQ, step, nnc_gb_const(b, nnc_type_scalar(NNC_I32), 0));
    return !b->failed;
  }
  /* step_t += 1; bias_correction1 = 1 - beta1 ** step; step_size = lr / bias_correction1 */
  nnc_node *t = nnc_gb_cast(b, add(b, step, nnc_gb_const(b, nnc_type_scalar(NNC_I32), 1)), NNC_F32);
  s->step_size = dvd(b, s->lr, bias_correction(b, t, c->beta1));
  s->bc2_sqrt = nnc_gb_unary(b, NNC_OP_sqrt, bias_correction(b, t, c->beta2));
  if (kind == OPT_ADAMW) s->decay = sub(b, kscalar(b, 1.0), mul(b, s->lr, kscalar(b, c->weight_decay)));
  return !b->failed;
}

bool nnc_optim_update(nnc_module *m, nnc_graph *g, const nnc_train_cfg *cfg, int n, const nnc_optim_target *targets,
                      nnc_diags *diags) {
  opt_kind kind;
  if (!parse_kind(cfg->optimizer, &kind)) {
    nnc_error(diags, (nnc_loc){0}, "unknown optimizer '%s' (SGD, Adam, AdamW)", cfg->optimizer);
    return false;
  }
  if (!check_cfg(cfg, kind, diags)) return false;
  B b = nnc_gb_make(g, diags);
  step_scalars s = {0};
  if (n == 0) return true;
  if (!step_scalars_make(&b, cfg, kind, &s)) return false;
  nnc_node **grads = nnc_xcalloc((size_t)n, sizeof *grads);
  for (int i = 0; i < n; i++) grads[i] = targets[i].grad;
  if (cfg->clip_grad_norm > 0) clip_grad_norm(&b, cfg->clip_grad_norm, n, grads);
  for (int i = 0; i < n && !b.failed; i++) {
    b.loc = targets[i].param->loc;
    if (kind == OPT_SGD) sgd(&b, m, cfg, &s, &targets[i], grads[i]);
    else adam(&b, m, cfg, kind, &s, &targets[i], grads[i]);
  }
  free(grads);
  return !b.failed;
}
