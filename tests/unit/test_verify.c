/* The verifier (ir/verify.c): a well-formed module passes; each kind of broken graph or
 * module is rejected with a diagnostic at the node's location. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ir/ir.h"

static const nnc_source src = {"mlp.nn", "model mlp(x: f32[B,784])\n", 26};

static nnc_loc at(int line) { return (nnc_loc){&src, line, 1}; }

static nnc_type ty(nnc_dtype dt, int rank, const int64_t *dims, int batch_axis) {
  return nnc_type_make(dt, rank, dims, batch_axis);
}

static nnc_node *typed(nnc_graph *g, nnc_op op, int nin, nnc_node **ins, int line) {
  nnc_node *n = nnc_node_new(g, op, nin, ins, at(line));
  char err[256];
  if (!nnc_infer_type(n, err, sizeof err)) fprintf(stderr, "building: %s\n", err);
  return n;
}

static nnc_node *source(nnc_graph *g, nnc_op op, const char *name, nnc_type t, int line) {
  nnc_node *n = nnc_node_new(g, op, 0, NULL, at(line));
  n->name = name;
  n->type = t;
  return n;
}

static void add_param(nnc_module *m, const char *name, nnc_type t, bool is_state) {
  nnc_param p = {.name = name, .type = t, .init = {NNC_INIT_UNIFORM, -0.1, 0.1}, .is_state = is_state, .tied_to = -1};
  nnc_module_add_param(m, &p);
}

/* x @ W1 + b1 -> relu -> @ W2: logits; plus a state output counting steps. */
typedef struct mlp {
  nnc_module *m;
  nnc_graph *g;
  nnc_node *x, *w1, *mm, *bias, *add, *relu, *logits, *steps, *next;
} mlp;

static mlp build_mlp(void) {
  mlp t;
  t.m = nnc_module_new("mlp");
  t.g = nnc_graph_new(t.m->arena, "forward");
  t.m->forward = t.g;
  nnc_type w1t = ty(NNC_F32, 2, (int64_t[]){784, 100}, -1), b1t = ty(NNC_F32, 1, (int64_t[]){100}, -1);
  nnc_type w2t = ty(NNC_F32, 2, (int64_t[]){100, 10}, -1), st = nnc_type_scalar(NNC_F32);
  add_param(t.m, "fc1.weight", w1t, false);
  add_param(t.m, "fc1.bias", b1t, false);
  add_param(t.m, "fc2.weight", w2t, false);
  add_param(t.m, "steps", st, true);
  nnc_graph *g = t.g;
  t.x = source(g, NNC_OP_input, "x", ty(NNC_F32, 2, (int64_t[]){1, 784}, 0), 1);
  t.w1 = source(g, NNC_OP_param, "fc1.weight", w1t, 2);
  t.mm = typed(g, NNC_OP_matmul, 2, (nnc_node *[]){t.x, t.w1}, 3);
  nnc_node *b1 = source(g, NNC_OP_param, "fc1.bias", b1t, 4);
  t.bias = nnc_node_new(g, NNC_OP_broadcast, 1, &b1, at(5));
  t.bias->type = t.mm->type;
  nnc_node_set_int(t.bias, NNC_ATTR_axes, 1);
  t.add = typed(g, NNC_OP_add, 2, (nnc_node *[]){t.mm, t.bias}, 6);
  nnc_node *zero = nnc_node_new(g, NNC_OP_const, 0, NULL, at(7));
  zero->type = t.add->type;
  nnc_node_set_num(zero, NNC_ATTR_value, 0);
  t.relu = typed(g, NNC_OP_max, 2, (nnc_node *[]){t.add, zero}, 8);
  nnc_node *w2 = source(g, NNC_OP_param, "fc2.weight", w2t, 9);
  t.logits = typed(g, NNC_OP_matmul, 2, (nnc_node *[]){t.relu, w2}, 10);
  t.steps = source(g, NNC_OP_state, "steps", st, 11);
  nnc_node *one = nnc_node_new(g, NNC_OP_const, 0, NULL, at(12));
  one->type = st;
  nnc_node_set_num(one, NNC_ATTR_value, 1);
  t.next = typed(g, NNC_OP_add, 2, (nnc_node *[]){t.steps, one}, 13);
  nnc_graph_add_output(g, "logits", t.logits);
  nnc_graph_add_state_output(g, "steps", t.next);
  return t;
}

static char *out_buf;
static size_t out_len;

/* Runs the module verifier; returns its verdict, the diagnostics land in out_buf. */
static bool verify(const nnc_module *m, int *nerrors) {
  free(out_buf);
  FILE *f = open_memstream(&out_buf, &out_len);
  nnc_diags d;
  nnc_diags_init(&d, f);
  bool ok = nnc_verify_module(m, &d);
  fclose(f);
  *nerrors = d.nerrors;
  return ok;
}

/* The module is rejected, with one error per listed message fragment. */
static void expect_errors(const mlp *t, int count, const char *part, const char *where) {
  int nerr;
  bool ok = verify(t->m, &nerr);
  CHECK_MSG(!ok, "accepted a broken module (%s)", part);
  CHECK_MSG(nerr == count, "%d errors, want %d: %s", nerr, count, out_buf);
  CHECK_MSG(strstr(out_buf, part) != NULL, "'%s' not in: %s", part, out_buf);
  if (where) CHECK_MSG(strstr(out_buf, where) != NULL, "'%s' not in: %s", where, out_buf);
  nnc_module_free(t->m);
}

static void test_good(void) {
  mlp t = build_mlp();
  int nerr;
  CHECK_MSG(verify(t.m, &nerr), "%s", out_buf);
  CHECK(nerr == 0);
  /* extra programs are verified too */
  nnc_graph *p = nnc_graph_new(t.m->arena, "predict");
  nnc_module_add_program(t.m, p);
  source(p, NNC_OP_input, "x", ty(NNC_F32, 1, (int64_t[]){3}, -1), 1);
  CHECK(nnc_module_program_count(t.m) == 2);
  CHECK(nnc_module_program(t.m, 1) == p);
  CHECK(nnc_module_program(t.m, 2) == NULL);
  CHECK_MSG(verify(t.m, &nerr), "%s", out_buf);
  nnc_module_free(t.m);
}

static void test_order_and_arity(void) {
  mlp t = build_mlp();
  /* swap matmul and its weight: an input used before it is defined */
  t.g->nodes[1] = t.mm;
  t.g->nodes[2] = t.w1;
  expect_errors(&t, 1, "matmul: input 1 is not a node defined earlier in graph 'forward'", "mlp.nn:3:1");

  t = build_mlp();
  t.mm->ninputs = 1;
  expect_errors(&t, 1, "matmul: takes 2 inputs, has 1", "mlp.nn:3:1");

  t = build_mlp();
  nnc_graph *other = nnc_graph_new(t.m->arena, "other");
  nnc_node *foreign = source(other, NNC_OP_input, "y", t.x->type, 20);
  t.add->inputs[1] = foreign;
  expect_errors(&t, 1, "add: input 1 is not a node defined earlier", "mlp.nn:6:1");

  t = build_mlp();
  t.g->nodes[5] = t.g->nodes[4];
  expect_errors(&t, 2, "appears twice", NULL); /* and the broadcast it replaced is missing */

  t = build_mlp();
  t.g->nodes[3] = NULL;
  expect_errors(&t, 2, "node 3 is missing", NULL);
}

static void test_attrs_and_types(void) {
  mlp t = build_mlp();
  nnc_node_set_int(t.add, NNC_ATTR_axis, 0);
  expect_errors(&t, 1, "add: takes no attribute 'axis'", "mlp.nn:6:1");

  t = build_mlp();
  nnc_node_set_int(t.mm, NNC_ATTR_trans_b, 1);
  expect_errors(&t, 1, "matmul: inner dimensions differ: f32[B,784] and f32[784,100]", "mlp.nn:3:1");

  t = build_mlp();
  t.relu->type.dims[1] = 99;
  expect_errors(&t, 2, "max: stored type f32[B,99] differs from the shape rule's f32[B,100]", "mlp.nn:8:1");

  t = build_mlp();
  t.bias->type.dims[1] = 50;
  expect_errors(&t, 2, "broadcast: dimension 0 of f32[100] does not broadcast", NULL);

  t = build_mlp();
  t.x->type.rank = 40;
  expect_errors(&t, 2, "input: rank 40 out of range", "mlp.nn:1:1");

  t = build_mlp();
  t.mm->op = (nnc_op)777;
  expect_errors(&t, 1, "unknown op 777", NULL);
}

static void test_outputs(void) {
  mlp t = build_mlp();
  nnc_graph *other = nnc_graph_new(t.m->arena, "other");
  nnc_graph_add_output(t.g, "stray", source(other, NNC_OP_input, "y", t.x->type, 30));
  expect_errors(&t, 1, "output 'stray' is not a node of the graph", "mlp.nn:30:1");

  t = build_mlp();
  t.g->outputs[0].value = NULL;
  expect_errors(&t, 1, "output 'logits' is not a node of the graph", NULL);

  t = build_mlp();
  nnc_graph_add_output(t.g, "logits", t.relu);
  expect_errors(&t, 1, "output 'logits' given twice", NULL);

  t = build_mlp();
  t.g->loss = 3;
  expect_errors(&t, 1, "loss index 3 is not an output", NULL);

  t = build_mlp();
  t.g->outputs[0].name = NULL;
  expect_errors(&t, 1, "output 0 has no name", NULL);
}

static void test_buffers(void) {
  mlp t = build_mlp();
  t.g->state_outputs[0].name = "stepz";
  expect_errors(&t, 1, "state output 'stepz' is not a parameter or state of the module", "mlp.nn:13:1");

  t = build_mlp();
  t.g->state_outputs[0].value = t.relu;
  expect_errors(&t, 1, "state output 'steps' has type f32[B,100], the module declares f32[]", NULL);

  t = build_mlp();
  t.w1->name = "fc9.weight";
  expect_errors(&t, 1, "param 'fc9.weight' is not a parameter or state", "mlp.nn:2:1");

  t = build_mlp();
  t.m->params[0].type.dims[0] = 783;
  expect_errors(&t, 1, "param 'fc1.weight' has type f32[784,100], the module declares f32[783,100]", NULL);

  t = build_mlp();
  add_param(t.m, "fc1.bias", t.m->params[1].type, false);
  expect_errors(&t, 1, "parameter 'fc1.bias' declared twice", NULL);

  t = build_mlp();
  t.m->params[2].tied_to = 0;
  expect_errors(&t, 1, "parameter 'fc2.weight': tied to 0", NULL);

  t = build_mlp();
  t.m->params[2].tied_to = 57;
  expect_errors(&t, 1, "tied to 57", NULL);

  t = build_mlp();
  t.m->params[1].type.dims[0] = -5;
  expect_errors(&t, 2, "parameter 'fc1.bias': param: dimension 0 of size -5 out of range", NULL);

  t = build_mlp();
  nnc_graph *dup = nnc_graph_new(t.m->arena, "forward");
  nnc_module_add_program(t.m, dup);
  expect_errors(&t, 1, "program 'forward' given twice", NULL);

  int nerr;
  CHECK(!verify(NULL, &nerr) && nerr == 1);
  nnc_diags d;
  nnc_diags_init(&d, NULL);
  CHECK(!nnc_verify_graph(NULL, &d) && d.nerrors == 1);
}

int main(void) {
  test_good();
  test_order_and_arity();
  test_attrs_and_types();
  test_outputs();
  test_buffers();
  free(out_buf);
  return check_summary();
}
