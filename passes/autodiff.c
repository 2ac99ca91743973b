/* Reverse-mode autodiff (DESIGN §5, docs/autodiff.md).
 *
 * 1. Mark: a node is active when it depends on a wrt node and the loss depends on it, both
 *    through f32 -> f32 edges (an edge into a u8 or i32 value, or out of one, carries no
 *    gradient: comparisons, casts to and from integers, indices, select's condition).
 * 2. Walk the active nodes from the loss back, applying each one's VJP to its dy and adding
 *    each contribution into its input's running sum as soon as it is produced. A node is
 *    visited only after all its consumers, so its sum is complete when its VJP reads it.
 * Nodes that are not active get no adjoint and no backward nodes. */
#include "autodiff.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct ad_node {
  nnc_node *node;
  bool reach;             /* depends on a wrt node */
  bool active;            /* ... and the loss depends on it */
  nnc_node *adjoint;      /* running sum of the gradient contributions so far */
} ad_node;

typedef struct ad_state {
  nnc_graph *g;
  ad_node *info;          /* per node of g, in graph order */
  int n;                  /* nodes of the forward part (the backward pass is appended after) */
  nnc_diags *diags;
} ad_state;

static ad_node *info_of(const ad_state *s, const nnc_node *n) {
  ad_node *r = n ? (ad_node *)n->aux : NULL;
  uintptr_t p = (uintptr_t)r, lo = (uintptr_t)s->info, hi = (uintptr_t)(s->info + s->n);
  return p >= lo && p < hi && r->node == n ? r : NULL;
}

static bool carries_gradient(const nnc_node *consumer, const nnc_node *input) {
  return consumer->type.dtype == NNC_F32 && input->type.dtype == NNC_F32;
}

bool nnc_ad_is_structural_zero(const nnc_node *grad) {
  return grad && grad->op == NNC_OP_const && grad->ninputs == 0 && nnc_node_num(grad, NNC_ATTR_value, 1) == 0 &&
         grad->name == NULL;
}

static void mark_reach(ad_state *s, int nwrt, nnc_node *const *wrt) {
  for (int i = 0; i < nwrt; i++) info_of(s, wrt[i])->reach = true;
  for (int i = 0; i < s->n; i++) {
    nnc_node *n = s->info[i].node;
    for (int j = 0; j < n->ninputs && !s->info[i].reach; j++) {
      ad_node *in = info_of(s, n->inputs[j]);
      if (in && in->reach && carries_gradient(n, n->inputs[j])) s->info[i].reach = true;
    }
  }
}

static void mark_active(ad_state *s, ad_node *loss) {
  loss->active = loss->reach;
  for (int i = s->n - 1; i >= 0; i--) {
    if (!s->info[i].active) continue;
    nnc_node *n = s->info[i].node;
    for (int j = 0; j < n->ninputs; j++) {
      ad_node *in = info_of(s, n->inputs[j]);
      if (in && in->reach && carries_gradient(n, n->inputs[j])) in->active = true;
    }
  }
}

static bool check_args(ad_state *s, nnc_node *loss, int nwrt, nnc_node *const *wrt) {
  nnc_loc none = {0};
  if (!info_of(s, loss)) {
    nnc_error(s->diags, none, "autodiff: the loss is not a node of graph '%s'", s->g->name);
    return false;
  }
  if (loss->type.dtype != NNC_F32) {
    nnc_error(s->diags, loss->loc, "autodiff: the loss must be f32, not %s", nnc_dtype_name(loss->type.dtype));
    return false;
  }
  for (int i = 0; i < nwrt; i++) {
    if (!info_of(s, wrt[i])) {
      nnc_error(s->diags, none, "autodiff: gradient requested for a node outside graph '%s'", s->g->name);
      return false;
    }
    if (wrt[i]->type.dtype != NNC_F32) {
      nnc_error(s->diags, wrt[i]->loc, "autodiff: no gradient with respect to %s '%s' of type %s",
                nnc_ops[wrt[i]->op].name, wrt[i]->name ? wrt[i]->name : "", nnc_dtype_name(wrt[i]->type.dtype));
      return false;
    }
  }
  return true;
}

/* Adds contribution d into the running sum of x's adjoint. */
static void accumulate(nnc_gb *b, ad_node *x, nnc_node *d) {
  if (!d) return;
  x->adjoint = x->adjoint ? nnc_gb_binary(b, NNC_OP_add, x->adjoint, d) : d;
}

/* Applies n's VJP to its adjoint and accumulates into its active inputs. */
static bool backprop_node(ad_state *s, nnc_gb *b, ad_node *a) {
  nnc_node *n = a->node;
  bool want[n->ninputs > 0 ? n->ninputs : 1];
  nnc_node *dx[n->ninputs > 0 ? n->ninputs : 1];
  bool any = false;
  for (int j = 0; j < n->ninputs; j++) {
    ad_node *in = info_of(s, n->inputs[j]);
    want[j] = in && in->active && carries_gradient(n, n->inputs[j]);
    dx[j] = NULL;
    any |= want[j];
  }
  if (!any) return true;
  nnc_vjp_fn vjp = nnc_vjp_for(n->op);
  b->loc = n->loc;
  if (!vjp || !vjp(b, n, a->adjoint, want, dx)) {
    nnc_error(s->diags, n->loc, "no gradient for op %s", nnc_ops[n->op].name);
    return false;
  }
  for (int j = 0; j < n->ninputs && !b->failed; j++) {
    if (!want[j]) continue;
    nnc_node *x = n->inputs[j];
    if (!dx[j] || !nnc_type_equal(&dx[j]->type, &x->type)) {
      char t1[128] = "nothing", t2[128];
      if (dx[j]) nnc_type_str(&dx[j]->type, t1, sizeof t1);
      nnc_error(s->diags, n->loc, "internal error: the gradient of %s for input %d is %s, not %s", nnc_ops[n->op].name,
                j, t1, nnc_type_str(&x->type, t2, sizeof t2));
      return false;
    }
    accumulate(b, info_of(s, x), dx[j]);
  }
  return !b->failed;
}

static bool backprop(ad_state *s, ad_node *loss) {
  if (!loss->active) return true; /* the loss depends on no wrt node */
  nnc_gb b = nnc_gb_make(s->g, s->diags);
  b.loc = loss->node->loc;
  loss->adjoint = nnc_gb_const_like(&b, loss->node, 1.0);
  for (int i = (int)(loss - s->info); i >= 0; i--) {
    ad_node *a = &s->info[i];
    if (a->active && !backprop_node(s, &b, a)) return false;
  }
  return !b.failed;
}

static void set_grads(ad_state *s, int nwrt, nnc_node *const *wrt, nnc_node **grads) {
  nnc_gb b = nnc_gb_make(s->g, s->diags);
  for (int i = 0; i < nwrt; i++) {
    ad_node *a = info_of(s, wrt[i]);
    b.loc = wrt[i]->loc;
    grads[i] = a->active ? a->adjoint : nnc_gb_const_like(&b, wrt[i], 0.0);
  }
}

bool nnc_ad_gradients(nnc_graph *g, nnc_node *loss, int nwrt, nnc_node *const *wrt, nnc_node **grads,
                      nnc_diags *diags) {
  for (int i = 0; i < nwrt; i++) grads[i] = NULL;
  ad_state s = {.g = g, .n = g->nnodes, .diags = diags};
  s.info = nnc_xcalloc((size_t)(g->nnodes > 0 ? g->nnodes : 1), sizeof *s.info);
  void **saved_aux = nnc_xcalloc((size_t)(g->nnodes > 0 ? g->nnodes : 1), sizeof *saved_aux);
  for (int i = 0; i < g->nnodes; i++) {
    s.info[i].node = g->nodes[i];
    saved_aux[i] = g->nodes[i]->aux;
    g->nodes[i]->aux = &s.info[i];
  }
  bool ok = check_args(&s, loss, nwrt, wrt);
  if (ok) {
    mark_reach(&s, nwrt, wrt);
    mark_active(&s, info_of(&s, loss));
    ok = backprop(&s, info_of(&s, loss));
  }
  if (ok) set_grads(&s, nwrt, wrt, grads);
  for (int i = 0; i < s.n; i++) g->nodes[i]->aux = saved_aux[i];
  free(saved_aux);
  free(s.info);
  for (int i = 0; ok && i < nwrt; i++) ok = grads[i] != NULL;
  return ok;
}
