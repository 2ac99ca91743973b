/* Assembling a module's programs: train_step = forward + backward + update (DESIGN §4, §5). */
#include "programs.h"

#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "builder.h"
#include "optim.h"

nnc_graph *nnc_module_find_program(const nnc_module *m, const char *name) {
  for (int i = 0; i < nnc_module_program_count(m); i++) {
    nnc_graph *g = nnc_module_program(m, i);
    if (g && g->name && strcmp(g->name, name) == 0) return g;
  }
  return NULL;
}

/* The param a use of param idx trains: the end of its tied_to chain; -1 on a cycle. */
static int tie_root(const nnc_module *m, int idx) {
  for (int hops = 0; hops <= m->nparams; hops++) {
    int next = m->params[idx].tied_to;
    if (next < 0 || next >= m->nparams) return idx;
    idx = next;
  }
  return -1;
}

/* Each param node of g whose buffer is trained: the node and the param it trains. */
typedef struct param_use {
  nnc_node *node;
  int root;
} param_use;

static bool collect_uses(const nnc_module *m, nnc_graph *g, param_use *uses, int *nuses, nnc_diags *d) {
  *nuses = 0;
  for (int i = 0; i < g->nnodes; i++) {
    nnc_node *n = g->nodes[i];
    if (n->op != NNC_OP_param) continue;
    int idx = n->name ? nnc_module_find_param(m, n->name) : -1;
    int root = idx >= 0 ? tie_root(m, idx) : -1;
    if (root < 0) {
      nnc_error(d, n->loc, "'%s' is not a parameter of model '%s'", n->name ? n->name : "", m->name);
      return false;
    }
    const nnc_param *p = &m->params[root];
    if (!nnc_type_equal(&p->type, &n->type)) {
      char t1[128], t2[128];
      nnc_error(d, n->loc, "parameter '%s' is used as %s but '%s' is %s", n->name, nnc_type_str(&n->type, t1, sizeof t1),
                p->name, nnc_type_str(&p->type, t2, sizeof t2));
      return false;
    }
    if (p->frozen || p->is_state || m->params[idx].frozen) continue;
    uses[(*nuses)++] = (param_use){n, root};
  }
  return true;
}

/* The value node of param root in g: a use named as the param, else a new param node. */
static nnc_node *param_value(nnc_graph *g, const nnc_module *m, int root, const param_use *uses, int nuses) {
  for (int i = 0; i < nuses; i++)
    if (uses[i].root == root && strcmp(uses[i].node->name, m->params[root].name) == 0) return uses[i].node;
  nnc_node *n = nnc_node_new(g, NNC_OP_param, 0, NULL, (nnc_loc){0});
  n->name = nnc_arena_strdup(g->arena, m->params[root].name);
  n->type = m->params[root].type;
  return n;
}

/* One target per trained param with a gradient: the sum over its uses, in graph order. */
static int make_targets(nnc_graph *g, const nnc_module *m, const param_use *uses, nnc_node *const *grads, int nuses,
                        nnc_optim_target *targets, nnc_diags *d) {
  nnc_gb b = nnc_gb_make(g, d);
  int n = 0;
  for (int r = 0; r < m->nparams; r++) {
    nnc_node *sum = NULL;
    for (int i = 0; i < nuses; i++) {
      if (uses[i].root != r || nnc_ad_is_structural_zero(grads[i])) continue;
      b.loc = uses[i].node->loc;
      sum = sum ? nnc_gb_binary(&b, NNC_OP_add, sum, grads[i]) : grads[i];
    }
    if (sum) targets[n++] = (nnc_optim_target){m->params[r].name, param_value(g, m, r, uses, nuses), sum};
  }
  return b.failed ? -1 : n;
}

static nnc_node *loss_of(nnc_graph *g, const nnc_module *m, nnc_diags *d) {
  if (g->loss < 0 || g->loss >= g->noutputs) {
    nnc_error(d, (nnc_loc){0}, "model '%s' has no objective (minimize ...): it cannot be trained", m->name);
    return NULL;
  }
  nnc_node *loss = g->outputs[g->loss].value;
  if (loss->type.dtype != NNC_F32 || loss->type.rank != 0) {
    char t[128];
    nnc_error(d, loss->loc, "the objective must be an f32 scalar, not %s", nnc_type_str(&loss->type, t, sizeof t));
    return NULL;
  }
  if (strcmp(g->outputs[g->loss].name, "loss") != 0) g->outputs[g->loss].name = "loss";
  return loss;
}

static bool differentiate_and_update(nnc_module *m, nnc_graph *g, nnc_node *loss, nnc_diags *d) {
  param_use *uses = nnc_xcalloc((size_t)g->nnodes + 1, sizeof *uses);
  nnc_node **wrt = nnc_xcalloc((size_t)g->nnodes + 1, sizeof *wrt), **grads = nnc_xcalloc((size_t)g->nnodes + 1, sizeof *grads);
  nnc_optim_target *targets = nnc_xcalloc((size_t)m->nparams + 1, sizeof *targets);
  int nuses = 0, ntargets = -1;
  bool ok = collect_uses(m, g, uses, &nuses, d);
  for (int i = 0; ok && i < nuses; i++) wrt[i] = uses[i].node;
  ok = ok && nnc_ad_gradients(g, loss, nuses, wrt, grads, d);
  if (ok) ntargets = make_targets(g, m, uses, grads, nuses, targets, d);
  nnc_train_cfg cfg = m->train;
  if (!cfg.present || !cfg.optimizer) nnc_optim_defaults(&cfg, cfg.present ? NULL : "Adam");
  ok = ok && ntargets >= 0 && nnc_optim_update(m, g, &cfg, ntargets, targets, d);
  free(uses), free(wrt), free(grads), free(targets);
  return ok;
}

bool nnc_build_train_step(nnc_module *m, const nnc_graph *train_forward, nnc_diags *d) {
  if (nnc_module_find_program(m, "train_step")) {
    nnc_error(d, (nnc_loc){0}, "model '%s' already has a train_step", m->name);
    return false;
  }
  nnc_graph *g = nnc_graph_clone(m->arena, train_forward, "train_step");
  if (!g) {
    nnc_error(d, (nnc_loc){0}, "internal error: graph '%s' is malformed", train_forward->name);
    return false;
  }
  nnc_node *loss = loss_of(g, m, d);
  if (!loss || !differentiate_and_update(m, g, loss, d)) return false;
  nnc_module_add_program(m, g);
  /* the first program, as the io layout and the emitted model.h list it */
  memmove(m->programs + 1, m->programs, sizeof *m->programs * (size_t)(m->nprograms - 1));
  m->programs[0] = g;
  return true;
}

/* Every buffer src reads exists in m with the same type. */
static bool check_buffers(const nnc_module *m, const nnc_graph *src, nnc_diags *d) {
  bool ok = true;
  for (int i = 0; i < src->nnodes; i++) {
    const nnc_node *n = src->nodes[i];
    if (n->op != NNC_OP_param && n->op != NNC_OP_state) continue;
    int idx = n->name ? nnc_module_find_param(m, n->name) : -1;
    char t1[128], t2[128];
    if (idx < 0) {
      nnc_error(d, n->loc, "program '%s' reads '%s', which model '%s' does not have", src->name, n->name ? n->name : "",
                m->name);
      ok = false;
    } else if (!nnc_type_equal(&m->params[idx].type, &n->type)) {
      nnc_error(d, n->loc, "program '%s' reads '%s' as %s, but it is %s", src->name, n->name,
                nnc_type_str(&n->type, t1, sizeof t1), nnc_type_str(&m->params[idx].type, t2, sizeof t2));
      ok = false;
    }
  }
  return ok;
}

nnc_graph *nnc_module_import_program(nnc_module *m, const nnc_graph *src, const char *name, nnc_diags *d) {
  if (!name) name = src->name;
  if (nnc_module_find_program(m, name)) {
    nnc_error(d, (nnc_loc){0}, "model '%s' already has a program '%s'", m->name, name);
    return NULL;
  }
  if (!check_buffers(m, src, d)) return NULL;
  nnc_graph *g = nnc_graph_clone(m->arena, src, name);
  if (!g) {
    nnc_error(d, (nnc_loc){0}, "internal error: graph '%s' is malformed", src->name);
    return NULL;
  }
  nnc_module_add_program(m, g);
  return g;
}
