/* The verifier: the invariants every pass may rely on and must keep (docs/ir.md).
 *
 * A graph is well formed when its nodes are in topological order (every input defined earlier
 * in the same graph), each node passes its shape rule (arity, attributes, input types) and its
 * stored type is the one the rule gives, and its outputs are nodes of the graph. A module is
 * well formed when its parameters are, every program is, and every persistent buffer a program
 * reads or writes is a module parameter of the same type. Every problem is reported, each at
 * the location of the node it concerns. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "node_map.h"

/* The nodes seen so far, with their position in the graph. */
typedef nnc_node_map node_set;

static void node_set_init(node_set *s, int n) { nnc_node_map_init(s, (size_t)n); }
static void node_set_free(node_set *s) { nnc_node_map_free(s); }
/* Position of n in the graph, or -1 when it is not (yet) defined. */
static int node_pos(const node_set *s, const nnc_node *n) { return nnc_node_map_get(s, (uintptr_t)n); }
static void node_set_add(node_set *s, const nnc_node *n, int pos) { nnc_node_map_put(s, (uintptr_t)n, pos); }

static const nnc_loc no_loc = {0};

/* Inputs are nodes defined earlier in this graph. */
static bool check_node_inputs(const nnc_graph *g, const nnc_node *n, const node_set *defined, nnc_diags *d) {
  if (n->ninputs < 0 || (n->ninputs > 0 && !n->inputs)) {
    nnc_error(d, n->loc, "%s: bad input list in graph '%s'", nnc_ops[n->op].name, g->name);
    return false;
  }
  bool ok = true;
  for (int i = 0; i < n->ninputs; i++)
    if (!n->inputs[i] || node_pos(defined, n->inputs[i]) < 0) {
      nnc_error(d, n->loc, "%s: input %d is not a node defined earlier in graph '%s'", nnc_ops[n->op].name, i,
                g->name);
      ok = false;
    }
  return ok;
}

/* The shape rule accepts the node and gives its stored type. The rule runs on a copy: the
 * verifier never changes the graph. */
static bool check_node_type(const nnc_node *n, nnc_diags *d) {
  nnc_node copy = *n;
  char err[512];
  if (!nnc_infer_type(&copy, err, sizeof err)) {
    nnc_error(d, n->loc, "%s", err);
    return false;
  }
  if (!nnc_type_equal(&copy.type, &n->type)) {
    char have[200], want[200];
    nnc_error(d, n->loc, "%s: stored type %s differs from the shape rule's %s", nnc_ops[n->op].name,
              nnc_type_str(&n->type, have, sizeof have), nnc_type_str(&copy.type, want, sizeof want));
    return false;
  }
  return true;
}

static bool check_nodes(const nnc_graph *g, node_set *defined, nnc_diags *d) {
  bool ok = true;
  for (int i = 0; i < g->nnodes; i++) {
    const nnc_node *n = g->nodes[i];
    if (!n) {
      nnc_error(d, no_loc, "graph '%s': node %d is missing", g->name, i);
      ok = false;
      continue;
    }
    if (node_pos(defined, n) >= 0) {
      nnc_error(d, n->loc, "graph '%s': node %d appears twice", g->name, i);
      ok = false;
      continue;
    }
    if ((unsigned)n->op >= NNC_OP_COUNT) {
      nnc_error(d, n->loc, "graph '%s': node %d has unknown op %d", g->name, i, (int)n->op);
      ok = false;
    } else if (check_node_inputs(g, n, defined, d)) {
      ok = check_node_type(n, d) && ok;
    } else {
      ok = false;
    }
    node_set_add(defined, n, i);
  }
  return ok;
}

static nnc_loc value_loc(const nnc_node *v) { return v ? v->loc : no_loc; }

/* Outputs (or state outputs): named, nodes of the graph, no name twice. */
static bool check_outputs(const nnc_graph *g, const nnc_output *outs, int count, const char *what,
                          const node_set *defined, nnc_diags *d) {
  bool ok = true;
  if (count < 0 || (count > 0 && !outs)) {
    nnc_error(d, no_loc, "graph '%s': bad %s list", g->name, what);
    return false;
  }
  for (int i = 0; i < count; i++) {
    const nnc_output *o = &outs[i];
    if (!o->name || !o->name[0]) {
      nnc_error(d, value_loc(o->value), "graph '%s': %s %d has no name", g->name, what, i);
      ok = false;
      continue;
    }
    if (!o->value || node_pos(defined, o->value) < 0) {
      nnc_error(d, value_loc(o->value), "graph '%s': %s '%s' is not a node of the graph", g->name, what, o->name);
      ok = false;
    }
    for (int j = 0; j < i; j++)
      if (outs[j].name && strcmp(outs[j].name, o->name) == 0) {
        nnc_error(d, value_loc(o->value), "graph '%s': %s '%s' given twice", g->name, what, o->name);
        ok = false;
        break;
      }
  }
  return ok;
}

bool nnc_verify_graph(const nnc_graph *g, nnc_diags *d) {
  if (!g) {
    nnc_error(d, no_loc, "missing graph");
    return false;
  }
  if (!g->name || g->nnodes < 0 || (g->nnodes > 0 && !g->nodes)) {
    nnc_error(d, no_loc, "graph '%s': malformed", g->name ? g->name : "?");
    return false;
  }
  node_set defined;
  node_set_init(&defined, g->nnodes);
  bool ok = check_nodes(g, &defined, d);
  ok = check_outputs(g, g->outputs, g->noutputs, "output", &defined, d) && ok;
  ok = check_outputs(g, g->state_outputs, g->nstate, "state output", &defined, d) && ok;
  if (g->loss < -1 || g->loss >= g->noutputs) {
    nnc_error(d, no_loc, "graph '%s': loss index %d is not an output", g->name, g->loss);
    ok = false;
  }
  node_set_free(&defined);
  return ok;
}

/* --- modules ------------------------------------------------------------------------------- */

static bool check_param(const nnc_module *m, int i, nnc_diags *d) {
  const nnc_param *p = &m->params[i];
  if (!p->name || !p->name[0]) {
    nnc_error(d, p->loc, "parameter %d has no name", i);
    return false;
  }
  bool ok = true;
  /* The shape rule of a param node checks the type (dtype, rank, dims, element count). */
  nnc_node probe = {.op = NNC_OP_param, .name = p->name, .type = p->type};
  char err[512];
  if (!nnc_infer_type(&probe, err, sizeof err)) {
    nnc_error(d, p->loc, "parameter '%s': %s", p->name, err);
    ok = false;
  }
  if (nnc_module_find_param(m, p->name) != i) {
    nnc_error(d, p->loc, "parameter '%s' declared twice", p->name);
    ok = false;
  }
  if ((unsigned)p->init.kind > NNC_INIT_NORMAL) {
    nnc_error(d, p->loc, "parameter '%s': unknown initialization %d", p->name, (int)p->init.kind);
    ok = false;
  }
  if (p->tied_to != -1 && (p->tied_to < 0 || p->tied_to >= m->nparams || p->tied_to == i ||
                           !nnc_type_equal(&m->params[p->tied_to].type, &p->type))) {
    nnc_error(d, p->loc, "parameter '%s': tied to %d, which is not another parameter of its type", p->name,
              p->tied_to);
    ok = false;
  }
  return ok;
}

/* A buffer named in a program (param or state node, state output) is a module parameter of
 * the same type. */
static bool check_buffer_ref(const nnc_module *m, const char *name, const nnc_type *t, nnc_loc loc,
                             const char *what, nnc_diags *d) {
  int i = name ? nnc_module_find_param(m, name) : -1;
  if (i < 0) {
    nnc_error(d, loc, "%s '%s' is not a parameter or state of the module", what, name ? name : "");
    return false;
  }
  if (!nnc_type_equal(t, &m->params[i].type)) {
    char have[200], want[200];
    nnc_error(d, loc, "%s '%s' has type %s, the module declares %s", what, name, nnc_type_str(t, have, sizeof have),
              nnc_type_str(&m->params[i].type, want, sizeof want));
    return false;
  }
  return true;
}

static bool check_program_buffers(const nnc_module *m, const nnc_graph *g, nnc_diags *d) {
  bool ok = true;
  for (int i = 0; i < g->nnodes; i++) {
    const nnc_node *n = g->nodes[i];
    if (n && (n->op == NNC_OP_param || n->op == NNC_OP_state))
      ok = check_buffer_ref(m, n->name, &n->type, n->loc, nnc_ops[n->op].name, d) && ok;
  }
  for (int i = 0; i < g->nstate; i++) {
    const nnc_output *o = &g->state_outputs[i];
    if (o->value && o->name) ok = check_buffer_ref(m, o->name, &o->value->type, o->value->loc, "state output", d) && ok;
  }
  return ok;
}

bool nnc_verify_module(const nnc_module *m, nnc_diags *d) {
  if (!m) {
    nnc_error(d, no_loc, "missing module");
    return false;
  }
  bool ok = true;
  if (m->nparams < 0 || (m->nparams > 0 && !m->params) || m->nprograms < 0 || (m->nprograms > 0 && !m->programs)) {
    nnc_error(d, no_loc, "module '%s': malformed", m->name ? m->name : "?");
    return false;
  }
  if (m->batch_max < 1 || m->batch_max > NNC_MAX_ELEMENTS) {
    nnc_error(d, no_loc, "module '%s': batch %lld out of range", m->name ? m->name : "?", (long long)m->batch_max);
    ok = false;
  }
  for (int i = 0; i < m->nparams; i++) ok = check_param(m, i, d) && ok;
  int count = nnc_module_program_count(m);
  for (int i = 0; i < count; i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    bool graph_ok = nnc_verify_graph(g, d);
    ok = graph_ok && ok;
    if (graph_ok) ok = check_program_buffers(m, g, d) && ok;
    for (int j = 0; g && j < i; j++) {
      const nnc_graph *h = nnc_module_program(m, j);
      if (h && h->name && g->name && strcmp(h->name, g->name) == 0) {
        nnc_error(d, no_loc, "module '%s': program '%s' given twice", m->name ? m->name : "?", g->name);
        ok = false;
        break;
      }
    }
  }
  return ok;
}
