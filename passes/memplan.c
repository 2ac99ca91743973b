/* Memory planning: persist and io laid out once per module; every scratch value of a program
 * first in its own aligned range, reshapes as views (the naive plan, which nnc_mem_plan_steps
 * then packs by liveness: passes/memplan_steps.c). */
#include "memplan.h"

#include <stdlib.h>
#include <string.h>

#include "programs.h"

static int64_t align_up(int64_t x) { return (x + NNC_MEM_ALIGN - 1) / NNC_MEM_ALIGN * NNC_MEM_ALIGN; }

static int64_t type_bytes(const nnc_type *t, int64_t batch_max) {
  return nnc_type_elements(t, batch_max) * (int64_t)nnc_dtype_size(t->dtype);
}

/* --- the module layout: persist and io ------------------------------------------------- */

static int count_io(const nnc_module *m) {
  int n = 0;
  for (int i = 0; i < nnc_module_program_count(m); i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    n += g->noutputs;
    for (int k = 0; k < g->nnodes; k++) n += g->nodes[k]->op == NNC_OP_input;
  }
  return n;
}

static void layout_persist(const nnc_module *m, nnc_mem_layout *L) {
  for (int i = 0; i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    nnc_mem_buffer *b = &L->bufs[L->nbufs++];
    *b = (nnc_mem_buffer){.name = p->name, .kind = NNC_MEM_PARAM, .region = NNC_MEM_PERSIST, .type = p->type,
                          .bytes = type_bytes(&p->type, m->batch_max), .param = i, .tied_to = p->tied_to,
                          .first = -1, .last = -1, .inplace_of = -1};
    if (p->tied_to < 0) {
      b->offset = align_up(L->persist_bytes);
      L->persist_bytes = b->offset + b->bytes;
    }
  }
  /* A tied param shares its target's storage, wherever the target comes in the order. */
  for (int i = 0; i < m->nparams; i++) {
    int t = m->params[i].tied_to;
    if (t >= 0 && t < m->nparams) L->bufs[i].offset = L->bufs[t].offset;
  }
}

/* Adds an io buffer unless one of that name exists; a second one must have the same type. */
static bool add_io(nnc_mem_layout *L, const char *name, nnc_mem_kind kind, const nnc_type *t, nnc_diags *d) {
  for (int i = L->nparams; i < L->nbufs; i++) {
    const nnc_mem_buffer *o = &L->bufs[i];
    if (strcmp(o->name, name) != 0) continue;
    if (o->kind != kind || !nnc_type_equal(&o->type, t)) {
      nnc_error(d, (nnc_loc){0}, "memory plan: the programs disagree on the type of '%s'", name);
      return false;
    }
    return true;
  }
  nnc_mem_buffer *b = &L->bufs[L->nbufs++];
  *b = (nnc_mem_buffer){.name = name, .kind = kind, .region = NNC_MEM_IO, .type = *t,
                        .bytes = type_bytes(t, L->batch_max), .param = -1, .tied_to = -1, .first = -1,
                        .last = -1, .inplace_of = -1};
  b->offset = align_up(L->io_bytes);
  L->io_bytes = b->offset + b->bytes;
  return true;
}

static bool layout_io(const nnc_module *m, nnc_mem_layout *L, nnc_diags *d) {
  for (int i = 0; i < nnc_module_program_count(m); i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    for (int k = 0; k < g->nnodes; k++)
      if (g->nodes[k]->op == NNC_OP_input && !add_io(L, g->nodes[k]->name, NNC_MEM_INPUT, &g->nodes[k]->type, d))
        return false;
    for (int k = 0; k < g->noutputs; k++)
      if (!add_io(L, g->outputs[k].name, NNC_MEM_OUTPUT, &g->outputs[k].value->type, d)) return false;
  }
  return true;
}

nnc_mem_layout *nnc_mem_layout_module(nnc_arena *a, const nnc_module *m, nnc_diags *d) {
  nnc_mem_layout *L = nnc_arena_alloc(a, sizeof *L);
  L->batch_max = m->batch_max;
  L->nparams = m->nparams;
  L->bufs = nnc_arena_alloc(a, sizeof *L->bufs * (size_t)(m->nparams + count_io(m) + 1));
  layout_persist(m, L);
  if (!layout_io(m, L, d)) return NULL;
  L->persist_bytes = align_up(L->persist_bytes);
  L->io_bytes = align_up(L->io_bytes);
  return L;
}

/* --- the program plan -------------------------------------------------------------------- */

/* Marks what the outputs and state outputs depend on; false when the graph is malformed. */
static bool mark_needed(nnc_mem_plan *P, nnc_diags *d) {
  const nnc_graph *g = P->graph;
  for (int pass = 0; pass < 2; pass++) {
    const nnc_output *list = pass ? g->state_outputs : g->outputs;
    int count = pass ? g->nstate : g->noutputs;
    for (int j = 0; j < count; j++) {
      int p = list[j].value ? nnc_mem_node_pos(P, list[j].value) : -1;
      if (p < 0) {
        nnc_error(d, (nnc_loc){0}, "memory plan: output '%s' is not a node of '%s'", list[j].name, g->name);
        return false;
      }
      P->needed[p] = true;
    }
  }
  for (int i = g->nnodes - 1; i >= 0; i--) {
    if (!P->needed[i]) continue;
    for (int k = 0; k < g->nodes[i]->ninputs; k++) {
      int p = nnc_mem_node_pos(P, g->nodes[i]->inputs[k]);
      if (p < 0 || p >= i) {
        nnc_error(g->nodes[i]->loc.src ? d : d, g->nodes[i]->loc, "memory plan: an input is not an earlier node");
        return false;
      }
      P->needed[p] = true;
    }
  }
  return true;
}

static int add_scratch(nnc_arena *a, nnc_mem_plan *P, const nnc_node *nd) {
  nnc_mem_buffer *b = &P->bufs[P->nbufs];
  *b = (nnc_mem_buffer){.name = nnc_arena_printf(a, "%%%d", nnc_mem_node_pos(P, nd)), .kind = NNC_MEM_VALUE,
                        .region = NNC_MEM_SCRATCH, .type = nd->type,
                        .bytes = type_bytes(&nd->type, P->layout->batch_max), .param = -1, .tied_to = -1,
                        .first = -1, .last = -1, .inplace_of = -1};
  b->offset = align_up(P->scratch_bytes);
  P->scratch_bytes = b->offset + b->bytes;
  return P->nbufs++;
}

/* The io buffer an output node may be computed into directly: it is computed (not a source
 * or a view), it is one output only, and no state output takes it. */
static int direct_output_buffer(const nnc_mem_plan *P, const nnc_node *nd) {
  const nnc_graph *g = P->graph;
  if (nnc_ops[nd->op].kind == NNC_KIND_SOURCE || nd->op == NNC_OP_reshape) return -1;
  int found = -1, uses = 0;
  for (int j = 0; j < g->noutputs; j++)
    if (g->outputs[j].value == nd) found = j, uses++;
  for (int j = 0; j < g->nstate; j++) uses += g->state_outputs[j].value == nd ? 2 : 0;
  return uses == 1 ? nnc_mem_find(P->layout, g->outputs[found].name) : -1;
}

static bool assign_source(nnc_mem_plan *P, int i, nnc_diags *d) {
  const nnc_node *nd = P->graph->nodes[i];
  if (nd->op == NNC_OP_scalar) return true;
  if (nd->op == NNC_OP_nbatch) return false; /* computed: a scratch value */
  int b = nd->name ? nnc_mem_find(P->layout, nd->name) : -1;
  bool ok = b >= 0 && (nd->op == NNC_OP_input ? P->bufs[b].kind == NNC_MEM_INPUT : P->bufs[b].kind == NNC_MEM_PARAM) &&
            nnc_type_equal(&P->bufs[b].type, &nd->type);
  if (!ok) {
    nnc_error(d, nd->loc, "memory plan: %s '%s' has no buffer of its type", nnc_ops[nd->op].name,
              nd->name ? nd->name : "?");
    return true;
  }
  P->node_buf[i] = b;
  return true;
}

nnc_mem_plan *nnc_mem_plan_program(nnc_arena *a, const nnc_module *m, const nnc_graph *g,
                                   const nnc_mem_layout *layout, nnc_diags *d) {
  nnc_mem_plan *P = nnc_arena_alloc(a, sizeof *P);
  size_t nn = (size_t)(g->nnodes > 0 ? g->nnodes : 1);
  P->graph = g;
  P->layout = layout;
  P->bufs = nnc_arena_alloc(a, sizeof *P->bufs * ((size_t)layout->nbufs + nn));
  memcpy(P->bufs, layout->bufs, sizeof *P->bufs * (size_t)layout->nbufs);
  P->nbufs = layout->nbufs;
  P->node_buf = nnc_arena_alloc(a, sizeof *P->node_buf * nn);
  P->needed = nnc_arena_alloc(a, sizeof *P->needed * nn);
  P->slots = nnc_arena_alloc(a, sizeof *P->slots * nn);
  for (int i = 0; i < g->nnodes; i++) {
    P->slots[i] = (struct nnc_mem_slot){g->nodes[i], i};
    P->node_buf[i] = -1;
  }
  qsort(P->slots, (size_t)g->nnodes, sizeof *P->slots, nnc_mem_slot_cmp);
  if (!mark_needed(P, d)) return NULL;
  int errors = d->nerrors;
  for (int i = 0; i < g->nnodes; i++) {
    const nnc_node *nd = g->nodes[i];
    if (!P->needed[i]) continue;
    if (nnc_ops[nd->op].kind == NNC_KIND_SOURCE && assign_source(P, i, d)) continue;
    if (nd->op == NNC_OP_reshape && P->node_buf[nnc_mem_node_pos(P, nd->inputs[0])] >= 0) {
      P->node_buf[i] = P->node_buf[nnc_mem_node_pos(P, nd->inputs[0])]; /* a view */
      continue;
    }
    int io = direct_output_buffer(P, nd);
    P->node_buf[i] = io >= 0 ? io : add_scratch(a, P, nd);
  }
  (void)m;
  P->scratch_bytes = align_up(P->scratch_bytes);
  P->scratch_naive = P->scratch_lower_bound = P->scratch_bytes;
  P->scratch_order = "naive";
  return d->nerrors > errors ? NULL : P;
}

