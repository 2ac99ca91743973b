/* A program as kernel calls (passes/lower.h): one call per needed node, or per fused group, over
 * the program's memory plan; structurally equal kernels kept once; then the copies to outputs
 * and state that are not computed in place. The kernels themselves come from lower.c (a node),
 * lower_group.c (a group) and gpu_sched.c (a GPU schedule). */
#include "lower.h"

#include <string.h>

#include "fusion.h"
#include "gpu_sched.h"

typedef struct builder {
  nnc_arena *a;
  nnc_lprogram *p;
  int kcap, ccap;
} builder;

static int add_kernel(builder *B, nnc_kernel *k) {
  nnc_lprogram *p = B->p;
  int found = nnc_kernel_find(p->kernels, p->nkernels, k);
  if (found >= 0) return found;
  if (p->nkernels == B->kcap) {
    int cap = B->kcap ? 2 * B->kcap : 16;
    p->kernels = nnc_arena_realloc(B->a, p->kernels, sizeof *p->kernels * (size_t)B->kcap, sizeof *p->kernels * (size_t)cap);
    B->kcap = cap;
  }
  p->kernels[p->nkernels] = k;
  return p->nkernels++;
}

static void add_call(builder *B, nnc_kernel *k, const nnc_node *nd, const char *what, const int *bufs, int nbufs) {
  nnc_lprogram *p = B->p;
  if (p->ncalls == B->ccap) {
    int cap = B->ccap ? 2 * B->ccap : 32;
    p->calls = nnc_arena_realloc(B->a, p->calls, sizeof *p->calls * (size_t)B->ccap, sizeof *p->calls * (size_t)cap);
    B->ccap = cap;
  }
  nnc_lcall *c = &p->calls[p->ncalls++];
  c->offsets = nnc_lower_call_offsets(B->a, k);
  c->kernel = add_kernel(B, k);
  c->node = nd;
  c->what = what;
  c->nbufs = nbufs;
  c->bufs = nnc_arena_alloc(B->a, sizeof *c->bufs * (size_t)(nbufs > 0 ? nbufs : 1));
  memcpy(c->bufs, bufs, sizeof *c->bufs * (size_t)nbufs);
}

static bool lower_node_call(builder *B, const nnc_module *m, const nnc_node *nd, const nnc_lower_opts *o, nnc_diags *d) {
  const nnc_mem_plan *P = B->p->plan;
  nnc_kernel *k = nnc_lower_node(B->a, m, nd, o, d);
  if (!k) return false;
  int *bufs = nnc_arena_alloc(B->a, sizeof *bufs * (size_t)(nd->ninputs + 1)), nb = 0;
  bufs[nb++] = nnc_mem_node_buffer(P, nd);
  for (int j = 0; j < nd->ninputs; j++)
    if (nd->inputs[j]->op != NNC_OP_scalar) bufs[nb++] = nnc_mem_node_buffer(P, nd->inputs[j]);
  add_call(B, k, nd, nnc_arena_printf(B->a, "%%%d = %s", nd->id, nnc_ops[nd->op].name), bufs, nb);
  return true;
}

/* Copies value v into buffer dst (an output or a state buffer) unless it is there already. */
static bool copy_call(builder *B, const nnc_module *m, const nnc_node *v, int dst, const char *what,
                      const nnc_lower_opts *o, nnc_diags *d) {
  const nnc_mem_plan *P = B->p->plan;
  int src = nnc_mem_node_buffer(P, v);
  if (dst < 0) {
    nnc_error(d, v->loc, "lowering: %s has no buffer", what);
    return false;
  }
  if (src >= 0 && P->bufs[src].region == P->bufs[dst].region && P->bufs[src].offset == P->bufs[dst].offset) return true;
  nnc_kernel *k = nnc_lower_copy(B->a, m, v, &P->bufs[dst].type, o, d);
  if (!k) return false;
  int bufs[2] = {dst, src};
  add_call(B, k, NULL, what, bufs, v->op == NNC_OP_scalar ? 1 : 2);
  return true;
}

static nnc_lprogram *new_program(nnc_arena *a, nnc_mem_plan *P) {
  nnc_lprogram *p = nnc_arena_alloc(a, sizeof *p);
  p->name = P->graph->name;
  p->graph = P->graph;
  p->plan = P;
  return p;
}

/* The copies of outputs and state outputs that are not computed in place. */
static nnc_lprogram *finish_program(builder *B, const nnc_module *m, const nnc_lower_opts *o, nnc_diags *d) {
  nnc_lprogram *p = B->p;
  const nnc_graph *g = p->graph;
  const nnc_mem_layout *layout = p->plan->layout;
  bool ok = true;
  for (int j = 0; j < g->noutputs && ok; j++)
    ok = copy_call(B, m, g->outputs[j].value, nnc_mem_find(layout, g->outputs[j].name),
                   nnc_arena_printf(B->a, "output %s", g->outputs[j].name), o, d);
  for (int j = 0; j < g->nstate && ok; j++) {
    int dst = nnc_mem_find(layout, g->state_outputs[j].name);
    if (dst >= 0 && layout->bufs[dst].kind != NNC_MEM_PARAM) dst = -1;
    ok = copy_call(B, m, g->state_outputs[j].value, dst, nnc_arena_printf(B->a, "state %s", g->state_outputs[j].name), o, d);
  }
  return ok ? p : NULL;
}

nnc_lprogram *nnc_lower_program(nnc_arena *a, const nnc_module *m, nnc_mem_plan *P, const nnc_lower_opts *o,
                                nnc_diags *d) {
  const nnc_graph *g = P->graph;
  builder B = {.a = a, .p = new_program(a, P)};
  bool ok = true;
  for (int i = 0; i < g->nnodes && ok; i++) {
    const nnc_node *nd = g->nodes[i];
    if (!P->needed[i] || (nnc_ops[nd->op].kind == NNC_KIND_SOURCE && nd->op != NNC_OP_nbatch)) continue;
    if (nd->op == NNC_OP_reshape && P->node_buf[i] == nnc_mem_node_buffer(P, nd->inputs[0])) continue; /* a view */
    ok = lower_node_call(&B, m, nd, o, d);
  }
  return ok ? finish_program(&B, m, o, d) : NULL;
}

/* A group that is its anchor alone, with the anchor's operands as its inputs: its kernel has the
 * node's buffers, so a GPU schedule of the node serves. */
static bool lone_anchor(const nnc_fuse_group *G) {
  if (G->nmembers != 1 || G->ninlined != 0 || G->noutputs != 1 || G->outputs[0] != G->anchor ||
      G->ninputs != G->anchor->ninputs)
    return false;
  for (int j = 0; j < G->ninputs; j++)
    if (G->inputs[j] != G->anchor->inputs[j]) return false;
  return true;
}

/* One call per group: its outputs' buffers, then its inputs' (scalar sources are arguments). */
static bool lower_group_call(builder *B, const nnc_module *m, const nnc_fusion_plan *plan, int gi,
                             const nnc_lower_opts *o, nnc_diags *d) {
  const nnc_fuse_group *G = &plan->groups[gi];
  const nnc_mem_plan *P = B->p->plan;
  nnc_kernel *k = lone_anchor(G) && o->target == NNC_LOWER_GPU ? nnc_gpu_sched_node(B->a, m, G->anchor) : NULL;
  if (!k) k = nnc_lower_group(B->a, m, plan, gi, o, d);
  if (!k) return false;
  int *bufs = nnc_arena_alloc(B->a, sizeof *bufs * (size_t)(G->noutputs + G->ninputs + 1)), nb = 0;
  for (int j = 0; j < G->noutputs; j++) bufs[nb++] = nnc_mem_node_buffer(P, G->outputs[j]);
  for (int j = 0; j < G->ninputs; j++)
    if (G->inputs[j]->op != NNC_OP_scalar) bufs[nb++] = nnc_mem_node_buffer(P, G->inputs[j]);
  for (int j = 0; j < nb; j++)
    if (bufs[j] < 0) return nnc_error(d, G->anchor->loc, "lowering: a value of a fused group has no buffer"), false;
  add_call(B, k, G->anchor, nnc_arena_printf(B->a, "%s group of %%%d = %s (%d nodes)", nnc_fuse_kind_name(G->kind),
                                             G->anchor->id, nnc_ops[G->anchor->op].name, G->nmembers),
           bufs, nb);
  return true;
}

nnc_lprogram *nnc_lower_program_fused(nnc_arena *a, const nnc_module *m, const nnc_fusion_plan *plan, nnc_mem_plan *P,
                                      const nnc_lower_opts *o, nnc_diags *d) {
  builder B = {.a = a, .p = new_program(a, P)};
  bool ok = true;
  for (int gi = 0; gi < plan->ngroups && ok; gi++) ok = lower_group_call(&B, m, plan, gi, o, d);
  return ok ? finish_program(&B, m, o, d) : NULL;
}

