/* Structure of the backward pass and the update on hand-built graphs: accumulation, pruning,
 * frozen and tied params, optimizer state, errors, clone and program import. */
#include <string.h>

#include "check.h"
#include "ir/ir.h"
#include "passes/autodiff.h"
#include "passes/optim.h"
#include "passes/programs.h"

static nnc_diags diags;

static nnc_node *typed(nnc_node *n) {
  char err[256];
  if (!nnc_infer_type(n, err, sizeof err)) fprintf(stderr, "test graph: %s\n", err);
  return n;
}

static nnc_type f32(int rank, const int64_t *dims) { return nnc_type_make(NNC_F32, rank, dims, -1); }

static nnc_node *source(nnc_graph *g, nnc_op op, const char *name, nnc_type t) {
  nnc_node *n = nnc_node_new(g, op, 0, NULL, (nnc_loc){0});
  n->name = name;
  n->type = t;
  return typed(n);
}

static nnc_node *un(nnc_graph *g, nnc_op op, nnc_node *a) { return typed(nnc_node_new(g, op, 1, &a, (nnc_loc){0})); }
static nnc_node *bin(nnc_graph *g, nnc_op op, nnc_node *a, nnc_node *b) {
  return typed(nnc_node_new(g, op, 2, (nnc_node *[]){a, b}, (nnc_loc){0}));
}
static nnc_node *sum_all(nnc_graph *g, nnc_node *a) {
  nnc_node *n = nnc_node_new(g, NNC_OP_reduce_sum, 1, &a, (nnc_loc){0});
  int64_t axes[NNC_MAX_RANK];
  for (int i = 0; i < a->type.rank; i++) axes[i] = i;
  nnc_node_set_ints(n, NNC_ATTR_axes, a->type.rank, axes);
  return typed(n);
}

static bool uses(const nnc_node *n, const nnc_node *x) {
  for (int i = 0; i < n->ninputs; i++)
    if (n->inputs[i] == x) return true;
  return false;
}

static bool verified(const nnc_graph *g) { return nnc_verify_graph(g, &diags); }

/* x used three times: one gradient, a chain of adds in backward order (never a tree). */
static void test_accumulation(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_graph *g = nnc_graph_new(a, "t");
  nnc_node *x = source(g, NNC_OP_param, "x", f32(1, (int64_t[]){3}));
  nnc_node *e = un(g, NNC_OP_exp, x), *t = un(g, NNC_OP_tanh, x), *n = un(g, NNC_OP_neg, x);
  nnc_node *y = bin(g, NNC_OP_add, bin(g, NNC_OP_add, e, t), n);
  nnc_node *loss = sum_all(g, y);
  int before = g->nnodes;
  nnc_node *grad = NULL;
  CHECK(nnc_ad_gradients(g, loss, 1, &x, &grad, &diags));
  CHECK(verified(g));
  CHECK(grad && grad->op == NNC_OP_add && nnc_type_equal(&grad->type, &x->type));
  /* the running sum: ((d_neg + d_tanh) + d_exp), each add fed by the previous sum */
  CHECK(grad && grad->inputs[0]->op == NNC_OP_add && grad->inputs[1]->op != NNC_OP_add);
  int adds_into_x = 0;
  for (int i = before; i < g->nnodes; i++)
    if (g->nodes[i]->op == NNC_OP_add) adds_into_x++;
  CHECK(adds_into_x == 2); /* three contributions, two adds */
  /* the first contribution (from neg, the last use) comes first in the sum */
  CHECK(grad && grad->inputs[0]->inputs[0]->op == NNC_OP_neg);
  nnc_arena_free(a);
}

/* Values that do not reach the loss, or do not depend on x, get no backward nodes. */
static void test_pruning(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_graph *g = nnc_graph_new(a, "t");
  nnc_node *x = source(g, NNC_OP_param, "x", f32(1, (int64_t[]){3}));
  nnc_node *side = un(g, NNC_OP_exp, x); /* an output, not on the loss's path */
  nnc_graph_add_output(g, "side", side);
  nnc_node *c1 = source(g, NNC_OP_input, "c", f32(1, (int64_t[]){1}));
  nnc_node *c = un(g, NNC_OP_exp, c1);
  nnc_node *cb = nnc_node_new(g, NNC_OP_broadcast, 1, &c, (nnc_loc){0});
  cb->type = x->type;
  nnc_node_set_ints(cb, NNC_ATTR_axes, 1, (int64_t[]){0});
  typed(cb);
  nnc_node *loss = sum_all(g, bin(g, NNC_OP_mul, un(g, NNC_OP_tanh, x), cb));
  int before = g->nnodes;
  nnc_node *grad = NULL;
  CHECK(nnc_ad_gradients(g, loss, 1, &x, &grad, &diags));
  CHECK(verified(g));
  for (int i = before; i < g->nnodes; i++) {
    CHECK(!uses(g->nodes[i], side));
    CHECK(g->nodes[i]->type.rank != 1 || g->nodes[i]->type.dims[0] != 1); /* nothing for c's [1] branch */
  }
  nnc_arena_free(a);
}

/* A wrt node the loss does not depend on gets zeros; integer paths carry no gradient. */
static void test_no_dependence(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_graph *g = nnc_graph_new(a, "t");
  nnc_node *x = source(g, NNC_OP_param, "x", f32(1, (int64_t[]){4}));
  nnc_node *u = source(g, NNC_OP_param, "u", f32(1, (int64_t[]){4}));
  nnc_node *xi = nnc_node_new(g, NNC_OP_cast, 1, &x, (nnc_loc){0});
  nnc_node_set_int(xi, NNC_ATTR_dtype, NNC_I32);
  typed(xi);
  nnc_node *xf = nnc_node_new(g, NNC_OP_cast, 1, &xi, (nnc_loc){0});
  nnc_node_set_int(xf, NNC_ATTR_dtype, NNC_F32);
  typed(xf);
  nnc_node *loss = sum_all(g, bin(g, NNC_OP_mul, xf, u));
  nnc_node *grads[2] = {0};
  CHECK(nnc_ad_gradients(g, loss, 2, (nnc_node *[]){x, u}, grads, &diags));
  CHECK(grads[0] && nnc_ad_is_structural_zero(grads[0]) && nnc_type_equal(&grads[0]->type, &x->type));
  CHECK(grads[1] && !nnc_ad_is_structural_zero(grads[1]));
  CHECK(verified(g));
  nnc_arena_free(a);
}

/* A *_grad op is an error only when the loss depends on it through the wrt node. */
static void test_no_gradient_error(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_graph *g = nnc_graph_new(a, "t");
  nnc_node *dy = source(g, NNC_OP_input, "dy", nnc_type_make(NNC_F32, 4, (int64_t[]){1, 2, 3, 3}, -1));
  nnc_node *w = source(g, NNC_OP_param, "w", nnc_type_make(NNC_F32, 4, (int64_t[]){2, 1, 1, 1}, -1));
  nnc_node *gi = nnc_node_new(g, NNC_OP_conv2d_input_grad, 2, (nnc_node *[]){dy, w}, (nnc_loc){0});
  nnc_node_set_ints(gi, NNC_ATTR_stride, 2, (int64_t[]){1, 1});
  nnc_node_set_ints(gi, NNC_ATTR_padding, 2, (int64_t[]){0, 0});
  nnc_node_set_ints(gi, NNC_ATTR_dilation, 2, (int64_t[]){1, 1});
  nnc_node_set_int(gi, NNC_ATTR_groups, 1);
  nnc_node_set_ints(gi, NNC_ATTR_in_shape, 2, (int64_t[]){3, 3});
  typed(gi);
  nnc_node *off_path = sum_all(g, gi);
  nnc_node *loss = sum_all(g, w);
  nnc_node *grad = NULL;
  CHECK(nnc_ad_gradients(g, loss, 1, &w, &grad, &diags)); /* gi does not reach this loss */
  FILE *sink = tmpfile();
  nnc_diags quiet;
  nnc_diags_init(&quiet, sink);
  CHECK(!nnc_ad_gradients(g, off_path, 1, &w, &grad, &quiet));
  CHECK(quiet.nerrors == 1);
  char buf[256] = {0};
  rewind(sink);
  CHECK(fread(buf, 1, sizeof buf - 1, sink) > 0 && strstr(buf, "no gradient for op conv2d_input_grad"));
  fclose(sink);
  nnc_arena_free(a);
}

/* A module: w (frozen), v, a, b tied to a; loss = sum(w*v*x) + sum(a*x) + sum(b*b). */
static nnc_module *small_module(void) {
  nnc_module *m = nnc_module_new("small");
  nnc_type t = f32(1, (int64_t[]){3});
  nnc_param p = {.name = "w", .type = t, .frozen = true, .tied_to = -1};
  nnc_module_add_param(m, &p);
  p = (nnc_param){.name = "v", .type = t, .tied_to = -1};
  nnc_module_add_param(m, &p);
  p = (nnc_param){.name = "a", .type = t, .tied_to = -1};
  int ia = nnc_module_add_param(m, &p);
  p = (nnc_param){.name = "b", .type = t, .tied_to = ia};
  nnc_module_add_param(m, &p);
  p = (nnc_param){.name = "bn.running_mean", .type = t, .is_state = true, .tied_to = -1};
  nnc_module_add_param(m, &p);
  nnc_graph *g = m->forward = nnc_graph_new(m->arena, "forward");
  nnc_node *x = source(g, NNC_OP_input, "x", t);
  nnc_node *w = source(g, NNC_OP_param, "w", t), *v = source(g, NNC_OP_param, "v", t);
  nnc_node *pa = source(g, NNC_OP_param, "a", t), *pb = source(g, NNC_OP_param, "b", t);
  nnc_node *rm = source(g, NNC_OP_param, "bn.running_mean", t);
  nnc_node *l1 = sum_all(g, bin(g, NNC_OP_mul, bin(g, NNC_OP_mul, w, v), x));
  nnc_node *l2 = sum_all(g, bin(g, NNC_OP_mul, pa, x));
  nnc_node *l3 = sum_all(g, bin(g, NNC_OP_mul, pb, pb));
  nnc_node *loss = bin(g, NNC_OP_add, bin(g, NNC_OP_add, l1, l2), l3);
  nnc_graph_add_output(g, "loss", loss);
  g->loss = 0;
  nnc_graph_add_state_output(g, "bn.running_mean", bin(g, NNC_OP_add, rm, x));
  return m;
}

static const nnc_node *state_output(const nnc_graph *g, const char *name) {
  for (int i = 0; i < g->nstate; i++)
    if (strcmp(g->state_outputs[i].name, name) == 0) return g->state_outputs[i].value;
  return NULL;
}

static const nnc_node *node_named(const nnc_graph *g, nnc_op op, const char *name) {
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i]->op == op && g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
  return NULL;
}

static void test_train_step_adam(void) {
  nnc_module *m = small_module();
  CHECK(nnc_build_train_step(m, m->forward, &diags));
  nnc_graph *g = nnc_module_find_program(m, "train_step");
  CHECK(g != NULL);
  if (!g) return;
  CHECK(nnc_verify_module(m, &diags));
  /* frozen w: no update, no moments */
  CHECK(!state_output(g, "w") && nnc_module_find_param(m, "w.exp_avg") < 0);
  /* v and a are updated; b is tied to a: one update of a, no buffer of b */
  CHECK(state_output(g, "v") && state_output(g, "a"));
  CHECK(!state_output(g, "b") && nnc_module_find_param(m, "b.exp_avg") < 0);
  /* Adam reads and writes both moments; they are zero-initialized state buffers */
  const char *moments[] = {"v.exp_avg", "v.exp_avg_sq", "a.exp_avg", "a.exp_avg_sq"};
  for (int i = 0; i < 4; i++) {
    CHECK_MSG(node_named(g, NNC_OP_state, moments[i]) != NULL, "%s read", moments[i]);
    CHECK_MSG(state_output(g, moments[i]) != NULL, "%s written", moments[i]);
    int idx = nnc_module_find_param(m, moments[i]);
    CHECK(idx >= 0 && m->params[idx].is_state && m->params[idx].init.kind == NNC_INIT_ZEROS);
  }
  /* the forward's own state output is kept; running stats are not trained */
  CHECK(state_output(g, "bn.running_mean") && !state_output(g, "bn.running_mean.exp_avg"));
  CHECK(g->loss >= 0 && strcmp(g->outputs[g->loss].name, "loss") == 0);
  CHECK(node_named(g, NNC_OP_scalar, "lr") && node_named(g, NNC_OP_scalar, "step"));
  /* building twice is an error, not a second program */
  nnc_diags quiet;
  nnc_diags_init(&quiet, NULL);
  FILE *sink = tmpfile();
  quiet.out = sink;
  CHECK(!nnc_build_train_step(m, m->forward, &quiet));
  fclose(sink);
  nnc_module_free(m);
}

static void test_train_step_sgd(void) {
  nnc_module *m = small_module();
  m->train.present = true;
  m->train.optimizer = "SGD";
  m->train.lr = 0.1, m->train.momentum = 0.9;
  CHECK(nnc_build_train_step(m, m->forward, &diags));
  nnc_graph *g = nnc_module_find_program(m, "train_step");
  CHECK(g && state_output(g, "v.momentum_buffer") && !state_output(g, "v.exp_avg"));
  CHECK(g && nnc_verify_module(m, &diags));
  nnc_module_free(m);
}

static void test_clone_and_import(void) {
  nnc_module *m = small_module();
  nnc_arena *a = nnc_arena_new();
  nnc_graph *c = nnc_graph_clone(a, m->forward, "copy");
  CHECK(c && c->nnodes == m->forward->nnodes && c->noutputs == 1 && c->nstate == 1 && c->loss == 0);
  for (int i = 0; c && i < c->nnodes; i++) {
    CHECK(c->nodes[i] != m->forward->nodes[i] && c->nodes[i]->op == m->forward->nodes[i]->op);
    for (int j = 0; j < c->nodes[i]->ninputs; j++) CHECK(c->nodes[i]->inputs[j]->id < i);
  }
  CHECK(c && c->outputs[0].value == c->nodes[m->forward->outputs[0].value->id]);
  CHECK(c && verified(c));

  nnc_module *other = small_module();
  CHECK(nnc_module_import_program(m, other->forward, "eval_step", &diags) != NULL);
  CHECK(nnc_module_find_program(m, "eval_step") != NULL);
  FILE *sink = tmpfile();
  nnc_diags quiet;
  nnc_diags_init(&quiet, sink);
  CHECK(nnc_module_import_program(m, other->forward, "eval_step", &quiet) == NULL); /* taken */
  other->forward->nodes[1]->name = "missing";
  CHECK(nnc_module_import_program(m, other->forward, "predict", &quiet) == NULL);
  CHECK(quiet.nerrors == 2);
  fclose(sink);
  nnc_module_free(other);
  nnc_arena_free(a);
  nnc_module_free(m);
}

static void test_bad_config(void) {
  nnc_module *m = small_module();
  m->train.present = true;
  m->train.optimizer = "Adagrad";
  FILE *sink = tmpfile();
  nnc_diags quiet;
  nnc_diags_init(&quiet, sink);
  CHECK(!nnc_build_train_step(m, m->forward, &quiet) && quiet.nerrors == 1);
  m->train.optimizer = "Adam";
  m->train.beta1 = 1.0, m->train.beta2 = 0.999;
  CHECK(!nnc_build_train_step(m, m->forward, &quiet));
  fclose(sink);
  nnc_module_free(m);
}

int main(void) {
  nnc_diags_init(&diags, stderr);
  test_accumulation();
  test_pruning();
  test_no_dependence();
  test_no_gradient_error();
  test_train_step_adam();
  test_train_step_sgd();
  test_clone_and_import();
  test_bad_config();
  CHECK(diags.nerrors == 0);
  return check_summary();
}
