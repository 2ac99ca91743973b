/* Fusion: grouping the nodes of a program into kernels (passes/fusion.h, docs/fusion.md).
 *
 * How it works. Nodes are first classed: sources (memory), cheap nodes that every consumer
 * recomputes (inlined), optimizer-update nodes, and the rest. Then one walk in graph order
 * puts each computed node into a group: a node joins the group of one of its inputs when the
 * group's iteration space takes it (an elementwise op of the same shape as a contraction's
 * result is its epilogue; a reduction of an elementwise group's shape turns it into a row
 * group; a broadcast of a row value back over the reduced axes stays in its row group) and the
 * join makes no cycle between groups (a group never waits for a group that waits for it).
 * Otherwise it starts a group of its own, anchored by it. Max-pool values and argmax over the
 * same input share one group. Update nodes (elementwise, feeding only state outputs) all go
 * into one group that runs last. Expensive nodes (contractions, reductions, gathers, pools)
 * start or join exactly one group, so their work is never duplicated. */
#include "fusion.h"

#include <stdlib.h>
#include <string.h>

#include "../ir/node_map.h"

typedef enum { CLS_UNUSED, CLS_SOURCE, CLS_INLINE, CLS_UPDATE, CLS_COMPUTE } node_class;

typedef struct ivec {
  int *v;
  int n, cap;
} ivec;

static void ivec_push(ivec *a, int x) {
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 8;
    a->v = nnc_xrealloc(a->v, sizeof *a->v * (size_t)a->cap);
  }
  a->v[a->n++] = x;
}

static bool ivec_has(const ivec *a, int x) {
  for (int i = 0; i < a->n; i++)
    if (a->v[i] == x) return true;
  return false;
}

typedef struct bgroup {
  nnc_fuse_kind kind;
  int anchor;                     /* node position */
  nnc_type space;                 /* ELEMENTWISE: its shape; CONTRACTION, OPAQUE: the anchor's */
  nnc_type full, row;             /* REDUCE */
  const nnc_attr *axes;           /* REDUCE: the anchor's axes attribute */
  ivec members, deps;             /* deps: groups it reads from */
} bgroup;

typedef struct fuser {
  const nnc_graph *g;
  int n;
  nnc_node_map pos;
  node_class *cls;
  int *grp;
  bgroup *groups;
  int ngroups, cap;
  int update_group;               /* -1 until the first update node */
  int *stamp;                     /* per group: DFS visit marks */
  int stamp_now;
} fuser;

static int pos_of(const fuser *F, const nnc_node *nd) { return nnc_node_map_get(&F->pos, (uintptr_t)nd); }

/* --- classes ----------------------------------------------------------------------------------- */

static bool is_elementwise(nnc_op op) {
  nnc_op_kind k = nnc_ops[op].kind;
  return k == NNC_KIND_UNARY || k == NNC_KIND_BINARY || k == NNC_KIND_TERNARY;
}

static bool is_generator(nnc_op op) { return nnc_ops[op].kind == NNC_KIND_GENERATOR || op == NNC_OP_nbatch; }

static bool is_cheap_index_map(nnc_op op) {
  return op == NNC_OP_broadcast || op == NNC_OP_reshape || op == NNC_OP_permute || op == NNC_OP_slice;
}

/* Which nodes the outputs need, and which of those feed a program output (not only state). */
static void mark_needed(fuser *F, bool *needed, bool *feeds_output) {
  const nnc_graph *g = F->g;
  for (int i = 0; i < g->noutputs; i++) needed[pos_of(F, g->outputs[i].value)] = feeds_output[pos_of(F, g->outputs[i].value)] = true;
  for (int i = 0; i < g->nstate; i++) needed[pos_of(F, g->state_outputs[i].value)] = true;
  for (int i = F->n - 1; i >= 0; i--) {
    const nnc_node *nd = g->nodes[i];
    for (int j = 0; j < nd->ninputs; j++) {
      int p = pos_of(F, nd->inputs[j]);
      needed[p] |= needed[i];
      feeds_output[p] |= feeds_output[i];
    }
  }
}

static bool is_program_output(const fuser *F, const nnc_node *nd) {
  for (int i = 0; i < F->g->noutputs; i++)
    if (F->g->outputs[i].value == nd) return true;
  for (int i = 0; i < F->g->nstate; i++)
    if (F->g->state_outputs[i].value == nd) return true;
  return false;
}

/* Cheap to recompute in every consumer: generators, and cheap index maps or rank-0 arithmetic
 * whose inputs are all sources or cheap themselves. A program output is materialized. */
static bool inlinable(const fuser *F, const nnc_node *nd) {
  if (is_program_output(F, nd)) return false;
  if (is_generator(nd->op)) return true;
  bool scalar_math = is_elementwise(nd->op) && nd->type.rank == 0;
  bool of_generated = is_elementwise(nd->op); /* e.g. a label mask cmp(iota, broadcast(y)) */
  for (int j = 0; j < nd->ninputs; j++) {
    node_class c = F->cls[pos_of(F, nd->inputs[j])];
    if (c != CLS_SOURCE && c != CLS_INLINE) return false;
    of_generated &= c == CLS_INLINE;
  }
  return scalar_math || of_generated || is_cheap_index_map(nd->op);
}

/* Update nodes: elementwise work (and its broadcasts and reshapes) that feeds no program
 * output and whose every consumer is an update node or a state output. */
static void mark_updates(fuser *F, const bool *feeds_output) {
  const nnc_graph *g = F->g;
  bool *other_use = nnc_xcalloc((size_t)F->n + 1, sizeof *other_use);
  for (int i = F->n - 1; i >= 0; i--) {
    const nnc_node *nd = g->nodes[i];
    bool kind_ok = is_elementwise(nd->op) || nd->op == NNC_OP_broadcast || nd->op == NNC_OP_reshape;
    if (F->cls[i] == CLS_COMPUTE && kind_ok && !feeds_output[i] && !other_use[i]) F->cls[i] = CLS_UPDATE;
    if (F->cls[i] == CLS_UPDATE || F->cls[i] == CLS_UNUSED) continue;
    for (int j = 0; j < nd->ninputs; j++) other_use[pos_of(F, nd->inputs[j])] = true;
  }
  free(other_use);
}

static void classify(fuser *F) {
  bool *needed = nnc_xcalloc((size_t)F->n + 1, sizeof *needed);
  bool *feeds = nnc_xcalloc((size_t)F->n + 1, sizeof *feeds);
  mark_needed(F, needed, feeds);
  for (int i = 0; i < F->n; i++) {
    const nnc_node *nd = F->g->nodes[i];
    if (!needed[i]) F->cls[i] = CLS_UNUSED;
    else if (nnc_ops[nd->op].kind == NNC_KIND_SOURCE && nd->op != NNC_OP_nbatch) F->cls[i] = CLS_SOURCE;
    else F->cls[i] = inlinable(F, nd) ? CLS_INLINE : CLS_COMPUTE;
  }
  mark_updates(F, feeds);
  free(needed);
  free(feeds);
}

/* --- groups ------------------------------------------------------------------------------------ */

static int new_group(fuser *F, nnc_fuse_kind kind, int anchor) {
  if (F->ngroups == F->cap) {
    F->cap = F->cap ? 2 * F->cap : 32;
    F->groups = nnc_xrealloc(F->groups, sizeof *F->groups * (size_t)F->cap);
    F->stamp = nnc_xrealloc(F->stamp, sizeof *F->stamp * (size_t)F->cap);
  }
  bgroup *G = &F->groups[F->ngroups];
  memset(G, 0, sizeof *G);
  G->kind = kind;
  G->anchor = anchor;
  const nnc_node *nd = F->g->nodes[anchor];
  G->space = nd->type;
  if (kind == NNC_FUSE_REDUCE) {
    G->full = nd->inputs[0]->type;
    G->row = nd->type;
    G->axes = nnc_node_attr(nd, NNC_ATTR_axes);
  }
  F->stamp[F->ngroups] = 0;
  return F->ngroups++;
}

static void join(fuser *F, int gi, int i) {
  bgroup *G = &F->groups[gi];
  ivec_push(&G->members, i);
  F->grp[i] = gi;
  const nnc_node *nd = F->g->nodes[i];
  for (int j = 0; j < nd->ninputs; j++) {
    int h = F->grp[pos_of(F, nd->inputs[j])];
    if (h >= 0 && h != gi && !ivec_has(&G->deps, h)) ivec_push(&G->deps, h);
  }
}

/* Does group from (transitively) read from group target? */
static bool reaches(fuser *F, int from, int target) {
  if (from == target) return true;
  if (F->stamp[from] == F->stamp_now) return false;
  F->stamp[from] = F->stamp_now;
  const bgroup *G = &F->groups[from];
  for (int k = 0; k < G->deps.n; k++)
    if (reaches(F, G->deps.v[k], target)) return true;
  return false;
}

/* Would node i joining group gi make a cycle? Only if another input's group reads from gi. */
static bool makes_cycle(fuser *F, int gi, int i) {
  const nnc_node *nd = F->g->nodes[i];
  for (int j = 0; j < nd->ninputs; j++) {
    int h = F->grp[pos_of(F, nd->inputs[j])];
    if (h < 0 || h == gi) continue;
    F->stamp_now++;
    if (reaches(F, h, gi)) return true;
  }
  return false;
}

static int64_t flat_elements(const nnc_type *t) { return nnc_type_elements(t, 1); }

static bool same_flat_space(const nnc_type *a, const nnc_type *b) {
  return flat_elements(a) == flat_elements(b) && (a->batch_axis >= 0) == (b->batch_axis >= 0);
}

static bool same_axes(const nnc_attr *a, const nnc_attr *b) {
  int na = a ? a->n : 0, nb = b ? b->n : 0;
  if (na != nb) return false;
  for (int k = 0; k < na; k++)
    if (a->ints[k] != b->ints[k]) return false;
  return true;
}

/* A broadcast from a row back over exactly the reduced axes of the row group's full shape. */
static bool is_row_broadcast(const bgroup *G, const nnc_node *nd) {
  if (!nnc_shape_equal(&nd->inputs[0]->type, &G->row) || !nnc_shape_equal(&nd->type, &G->full)) return false;
  const nnc_attr *bax = nnc_node_attr(nd, NNC_ATTR_axes);
  bool reduced[NNC_MAX_RANK] = {false};
  for (int k = 0; G->axes && k < G->axes->n; k++) reduced[G->axes->ints[k]] = true;
  int m = 0;
  for (int a = 0; a < G->full.rank; a++) {
    if (reduced[a]) continue;
    if (!bax || m >= bax->n || bax->ints[m] != a) return false;
    m++;
  }
  return bax ? m == bax->n : m == 0;
}

static bool all_members_shaped(const fuser *F, const bgroup *G, const nnc_type *t) {
  for (int k = 0; k < G->members.n; k++)
    if (!nnc_shape_equal(&F->g->nodes[G->members.v[k]]->type, t)) return false;
  return true;
}

/* Does group G's iteration space take node nd (as an epilogue, a row op or a reduction)? */
static bool space_takes(const fuser *F, bgroup *G, const nnc_node *nd, bool *to_reduce) {
  const nnc_type *t = &nd->type;
  *to_reduce = false;
  switch (G->kind) {
  case NNC_FUSE_ELEMENTWISE:
    if (is_elementwise(nd->op) || nd->op == NNC_OP_reshape) return same_flat_space(t, &G->space);
    if (nnc_ops[nd->op].kind == NNC_KIND_REDUCE && all_members_shaped(F, G, &nd->inputs[0]->type))
      return (*to_reduce = true);
    return false;
  case NNC_FUSE_REDUCE:
    if (is_elementwise(nd->op)) return nnc_shape_equal(t, &G->full) || nnc_shape_equal(t, &G->row);
    if (nd->op == NNC_OP_broadcast) return is_row_broadcast(G, nd);
    if (nnc_ops[nd->op].kind == NNC_KIND_REDUCE)
      return nnc_shape_equal(&nd->inputs[0]->type, &G->full) && same_axes(nnc_node_attr(nd, NNC_ATTR_axes), G->axes);
    return false;
  case NNC_FUSE_CONTRACTION: case NNC_FUSE_OPAQUE:
    return is_elementwise(nd->op) && nnc_shape_equal(t, &G->space);
  default: return false;
  }
}

static bool is_pool(nnc_op op) { return op == NNC_OP_maxpool2d || op == NNC_OP_maxpool2d_argmax; }

static bool same_attrs(const nnc_node *a, const nnc_node *b) {
  if (a->nattrs != b->nattrs) return false;
  for (int i = 0; i < a->nattrs; i++) {
    const nnc_attr *x = &a->attrs[i], *y = nnc_node_attr(b, a->attrs[i].key);
    if (!y || x->n != y->n || memcmp(x->ints, y->ints, sizeof x->ints[0] * (size_t)x->n) != 0) return false;
  }
  return true;
}

/* Max-pool values and argmax over one input, with one window: one kernel, two outputs. */
static int pool_sibling(fuser *F, const nnc_node *nd) {
  if (!is_pool(nd->op)) return -1;
  for (int gi = 0; gi < F->ngroups; gi++) {
    const nnc_node *a = F->g->nodes[F->groups[gi].anchor];
    if (F->groups[gi].kind == NNC_FUSE_OPAQUE && is_pool(a->op) && a->op != nd->op && a->inputs[0] == nd->inputs[0] &&
        same_attrs(a, nd))
      return gi;
  }
  return -1;
}

static nnc_fuse_kind own_kind(const nnc_node *nd) {
  switch (nnc_ops[nd->op].kind) {
  case NNC_KIND_REDUCE: return NNC_FUSE_REDUCE;
  case NNC_KIND_CONTRACTION: return NNC_FUSE_CONTRACTION;
  case NNC_KIND_OPAQUE: return NNC_FUSE_OPAQUE;
  default: return NNC_FUSE_ELEMENTWISE;
  }
}

static bool has_computed_input(const fuser *F, const nnc_node *nd) {
  for (int j = 0; j < nd->ninputs; j++)
    if (F->grp[pos_of(F, nd->inputs[j])] >= 0) return true;
  return false;
}

/* Tries the groups of i's inputs in order; true when i joined one. A node that reads only
 * sources and inlined values (the gradient of a loss starts so) may join any group whose
 * space takes it, the latest first: it cannot make a cycle. */
static bool join_an_input_group(fuser *F, int i) {
  const nnc_node *nd = F->g->nodes[i];
  bool free_node = !has_computed_input(F, nd);
  int ncand = free_node ? F->ngroups : nd->ninputs;
  for (int j = 0; j < ncand; j++) {
    int gi = free_node ? F->ngroups - 1 - j : F->grp[pos_of(F, nd->inputs[j])];
    if (gi < 0 || gi == F->update_group) continue;
    bgroup *G = &F->groups[gi];
    bool to_reduce;
    if (!space_takes(F, G, nd, &to_reduce) || makes_cycle(F, gi, i)) continue;
    if (to_reduce) {
      G->kind = NNC_FUSE_REDUCE;
      G->anchor = i;
      G->full = nd->inputs[0]->type;
      G->row = nd->type;
      G->axes = nnc_node_attr(nd, NNC_ATTR_axes);
    }
    join(F, gi, i);
    return true;
  }
  return false;
}

static void place(fuser *F, int i) {
  const nnc_node *nd = F->g->nodes[i];
  if (F->cls[i] == CLS_UPDATE) {
    if (F->update_group < 0) F->update_group = new_group(F, NNC_FUSE_UPDATE, i);
    return join(F, F->update_group, i);
  }
  int sib = pool_sibling(F, nd);
  if (sib >= 0 && !makes_cycle(F, sib, i)) return join(F, sib, i);
  if (join_an_input_group(F, i)) return;
  join(F, new_group(F, own_kind(nd), i), i);
}

/* --- the plan ---------------------------------------------------------------------------------- */

typedef struct collect {
  const nnc_node **list;
  int n, cap;
} collect;

static void collect_add(nnc_arena *a, collect *c, const nnc_node *nd) {
  for (int i = 0; i < c->n; i++)
    if (c->list[i] == nd) return;
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 8;
    c->list = nnc_arena_realloc(a, c->list, sizeof *c->list * (size_t)c->cap, sizeof *c->list * (size_t)cap);
    c->cap = cap;
  }
  c->list[c->n++] = nd;
}

/* The inputs of nd as the group gi sees them: inlined nodes (recursively) or memory. */
static void gather_reads(nnc_arena *a, const fuser *F, int gi, const nnc_node *nd, collect *inl, collect *in) {
  for (int j = 0; j < nd->ninputs; j++) {
    const nnc_node *x = nd->inputs[j];
    int p = pos_of(F, x);
    if (F->grp[p] == gi) continue;
    if (F->cls[p] == CLS_INLINE) {
      int before = inl->n;
      collect_add(a, inl, x);
      if (inl->n > before) gather_reads(a, F, gi, x, inl, in);
    } else {
      collect_add(a, in, x);
    }
  }
}

static int by_position_fuser_pos(const fuser *F, const nnc_node *nd) { return pos_of(F, nd); }

static void sort_by_position(const fuser *F, const nnc_node **list, int n) {
  for (int i = 1; i < n; i++) /* insertion sort: the lists are short and nearly sorted */
    for (int k = i; k > 0 && by_position_fuser_pos(F, list[k - 1]) > by_position_fuser_pos(F, list[k]); k--) {
      const nnc_node *t = list[k];
      list[k] = list[k - 1], list[k - 1] = t;
    }
}

/* Per node: read by a node of another group (one pass over the edges, not one per member). */
static bool *read_outside(const fuser *F) {
  bool *out = nnc_xcalloc((size_t)F->n + 1, sizeof *out);
  for (int k = 0; k < F->n; k++) {
    const nnc_node *c = F->g->nodes[k];
    if (F->grp[k] < 0) continue;
    for (int j = 0; j < c->ninputs; j++) {
      int p = pos_of(F, c->inputs[j]);
      if (p >= 0 && F->grp[p] != F->grp[k]) out[p] = true;
    }
  }
  return out;
}

static bool leaves_group(const fuser *F, int i, const bool *outside) {
  return is_program_output(F, F->g->nodes[i]) || outside[i];
}

static void fill_group(nnc_arena *a, const fuser *F, int gi, const bool *outside, nnc_fuse_group *out) {
  const bgroup *G = &F->groups[gi];
  out->kind = G->kind;
  out->anchor = F->g->nodes[G->anchor];
  out->nmembers = G->members.n;
  out->members = nnc_arena_alloc(a, sizeof *out->members * (size_t)(G->members.n + 1));
  collect inl = {0}, in = {0}, outs = {0};
  for (int k = 0; k < G->members.n; k++) {
    int i = G->members.v[k];
    out->members[k] = F->g->nodes[i];
    gather_reads(a, F, gi, F->g->nodes[i], &inl, &in);
    if (leaves_group(F, i, outside)) collect_add(a, &outs, F->g->nodes[i]);
  }
  sort_by_position(F, inl.list, inl.n);
  out->inlined = inl.list, out->ninlined = inl.n;
  out->inputs = in.list, out->ninputs = in.n;
  out->outputs = outs.list, out->noutputs = outs.n;
  if (G->kind == NNC_FUSE_REDUCE) {
    out->reduce_shape = G->full;
    out->reduce_axes = G->axes ? G->axes->ints : NULL;
    out->nreduce_axes = G->axes ? G->axes->n : 0;
  }
}

/* Groups in dependency order; among ready groups, the one whose first node comes first. */
static int *order_groups(fuser *F) {
  int *order = nnc_xcalloc((size_t)F->ngroups + 1, sizeof *order);
  bool *done = nnc_xcalloc((size_t)F->ngroups + 1, sizeof *done);
  for (int k = 0; k < F->ngroups; k++) {
    int best = -1;
    for (int gi = 0; gi < F->ngroups; gi++) {
      if (done[gi]) continue;
      bool ready = true;
      for (int d = 0; d < F->groups[gi].deps.n && ready; d++) ready = done[F->groups[gi].deps.v[d]];
      if (ready && (best < 0 || F->groups[gi].members.v[0] < F->groups[best].members.v[0])) best = gi;
    }
    if (best < 0) break; /* a cycle: impossible by construction */
    done[best] = true;
    order[k] = best;
  }
  free(done);
  return order;
}

nnc_fusion_plan *nnc_fuse_program(nnc_arena *a, const nnc_graph *g) {
  fuser F = {.g = g, .n = g->nnodes, .update_group = -1};
  nnc_node_map_init(&F.pos, (size_t)g->nnodes);
  for (int i = 0; i < g->nnodes; i++) nnc_node_map_put(&F.pos, (uintptr_t)g->nodes[i], i);
  F.cls = nnc_xcalloc((size_t)F.n + 1, sizeof *F.cls);
  F.grp = nnc_xcalloc((size_t)F.n + 1, sizeof *F.grp);
  for (int i = 0; i < F.n; i++) F.grp[i] = -1;
  classify(&F);
  for (int i = 0; i < F.n; i++)
    if (F.cls[i] == CLS_COMPUTE || F.cls[i] == CLS_UPDATE) place(&F, i);

  nnc_fusion_plan *p = nnc_arena_alloc(a, sizeof *p);
  p->graph = g;
  p->ngroups = F.ngroups;
  p->groups = nnc_arena_alloc(a, sizeof *p->groups * (size_t)(F.ngroups + 1));
  p->group_of = nnc_arena_alloc(a, sizeof *p->group_of * (size_t)(F.n + 1));
  int *order = order_groups(&F), *rank = nnc_xcalloc((size_t)F.ngroups + 1, sizeof *rank);
  for (int k = 0; k < F.ngroups; k++) rank[order[k]] = k;
  bool *outside = read_outside(&F);
  for (int k = 0; k < F.ngroups; k++) fill_group(a, &F, order[k], outside, &p->groups[k]);
  free(outside);
  for (int i = 0; i < F.n; i++) p->group_of[i] = F.grp[i] >= 0 ? rank[F.grp[i]] : -1;
  for (int gi = 0; gi < F.ngroups; gi++) {
    free(F.groups[gi].members.v);
    free(F.groups[gi].deps.v);
  }
  free(order), free(rank), free(F.groups), free(F.stamp), free(F.cls), free(F.grp);
  nnc_node_map_free(&F.pos);
  return p;
}

/* --- counts ------------------------------------------------------------------------------------ */

static int64_t value_bytes(const nnc_node *nd, int64_t batch_max) {
  int64_t e = nnc_type_elements(&nd->type, batch_max);
  return e < 0 ? 0 : e * (int64_t)nnc_dtype_size(nd->type.dtype);
}

static bool *needed_nodes(const nnc_graph *g, nnc_node_map *pos) {
  nnc_node_map_init(pos, (size_t)g->nnodes);
  for (int i = 0; i < g->nnodes; i++) nnc_node_map_put(pos, (uintptr_t)g->nodes[i], i);
  bool *needed = nnc_xcalloc((size_t)g->nnodes + 1, sizeof *needed);
  for (int i = 0; i < g->noutputs; i++) needed[nnc_node_map_get(pos, (uintptr_t)g->outputs[i].value)] = true;
  for (int i = 0; i < g->nstate; i++) needed[nnc_node_map_get(pos, (uintptr_t)g->state_outputs[i].value)] = true;
  for (int i = g->nnodes - 1; i >= 0; i--)
    for (int j = 0; needed[i] && j < g->nodes[i]->ninputs; j++)
      needed[nnc_node_map_get(pos, (uintptr_t)g->nodes[i]->inputs[j])] = true;
  return needed;
}

static bool unfused_kernel(const nnc_node *nd) {
  if (nnc_ops[nd->op].kind == NNC_KIND_SOURCE && nd->op != NNC_OP_nbatch) return false;
  return nd->op != NNC_OP_reshape;
}

int nnc_fuse_unfused_kernels(const nnc_graph *g) {
  nnc_node_map pos;
  bool *needed = needed_nodes(g, &pos);
  int count = 0;
  for (int i = 0; i < g->nnodes; i++) count += needed[i] && unfused_kernel(g->nodes[i]);
  free(needed);
  nnc_node_map_free(&pos);
  return count;
}

int64_t nnc_fuse_unfused_bytes(const nnc_graph *g, int64_t batch_max) {
  nnc_node_map pos;
  bool *needed = needed_nodes(g, &pos);
  int64_t bytes = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const nnc_node *nd = g->nodes[i];
    if (!needed[i] || !unfused_kernel(nd)) continue;
    bytes += value_bytes(nd, batch_max);
    for (int j = 0; j < nd->ninputs; j++)
      if (nd->inputs[j]->op != NNC_OP_scalar) bytes += value_bytes(nd->inputs[j], batch_max);
  }
  free(needed);
  nnc_node_map_free(&pos);
  return bytes;
}

int64_t nnc_fuse_plan_bytes(const nnc_fusion_plan *p, int64_t batch_max) {
  int64_t bytes = 0;
  for (int k = 0; k < p->ngroups; k++) {
    const nnc_fuse_group *G = &p->groups[k];
    for (int i = 0; i < G->ninputs; i++)
      if (G->inputs[i]->op != NNC_OP_scalar) bytes += value_bytes(G->inputs[i], batch_max);
    for (int i = 0; i < G->noutputs; i++) bytes += value_bytes(G->outputs[i], batch_max);
  }
  return bytes;
}

/* --- printing ---------------------------------------------------------------------------------- */

const char *nnc_fuse_kind_name(nnc_fuse_kind k) {
  static const char *const names[] = {"elementwise", "reduce", "contraction", "opaque", "update"};
  return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

/* A node's number as `--emit ir` prints it: its position in the graph. */
static int number(const nnc_fusion_plan *p, const nnc_node *nd) {
  for (int i = 0; i < p->graph->nnodes; i++)
    if (p->graph->nodes[i] == nd) return i;
  return -1;
}

static void print_node_line(FILE *out, const nnc_fusion_plan *p, const nnc_node *nd, bool inlined) {
  char type[128], where[256] = "";
  fprintf(out, "  %s%%%d = %s(", inlined ? "inline " : "", number(p, nd), nnc_ops[nd->op].name);
  for (int j = 0; j < nd->ninputs; j++) fprintf(out, "%s%%%d", j ? ", " : "", number(p, nd->inputs[j]));
  fprintf(out, ") : %s", nnc_type_str(&nd->type, type, sizeof type));
  if (nd->loc.src) fprintf(out, "  # %s", nnc_loc_str(nd->loc, where, sizeof where));
  fputc('\n', out);
}

static void print_value_list(FILE *out, const nnc_fusion_plan *p, const char *what, const nnc_node *const *v, int n) {
  fprintf(out, "  %s:", what);
  for (int i = 0; i < n; i++) fprintf(out, " %%%d", number(p, v[i]));
  fputc('\n', out);
}

void nnc_fuse_print(FILE *out, const nnc_fusion_plan *p) {
  fprintf(out, "program %s: %d kernels (%d unfused)\n", p->graph->name, p->ngroups, nnc_fuse_unfused_kernels(p->graph));
  for (int k = 0; k < p->ngroups; k++) {
    const nnc_fuse_group *G = &p->groups[k];
    fprintf(out, "kernel %d %s anchor %%%d %s: %d nodes, %d outputs\n", k, nnc_fuse_kind_name(G->kind),
            number(p, G->anchor), nnc_ops[G->anchor->op].name, G->nmembers, G->noutputs);
    print_value_list(out, p, "in", G->inputs, G->ninputs);
    int a = 0, b = 0; /* members and inlined nodes merged in graph order */
    while (a < G->nmembers || b < G->ninlined) {
      bool take_inlined = b < G->ninlined && (a >= G->nmembers || number(p, G->inlined[b]) < number(p, G->members[a]));
      if (take_inlined) print_node_line(out, p, G->inlined[b++], true);
      else print_node_line(out, p, G->members[a++], false);
    }
    print_value_list(out, p, "out", G->outputs, G->noutputs);
  }
}

void nnc_fuse_dot_begin(FILE *out, const char *module) {
  fprintf(out, "digraph \"");
  for (const char *c = module; *c; c++) fprintf(out, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
  fprintf(out, "\" {\n  rankdir=TB;\n  node [shape=box, fontsize=10];\n");
}

void nnc_fuse_dot_end(FILE *out) { fprintf(out, "}\n"); }

void nnc_fuse_dot_program(FILE *out, const nnc_fusion_plan *p, int pi) {
  const nnc_graph *g = p->graph;
  fprintf(out, "  subgraph cluster_p%d {\n    label=\"%s\";\n", pi, g->name);
  for (int k = 0; k < p->ngroups; k++) {
    const nnc_fuse_group *G = &p->groups[k];
    fprintf(out, "    subgraph cluster_p%d_k%d {\n      label=\"kernel %d (%s)\";\n      style=filled; color=lightgrey;\n", pi,
            k, k, nnc_fuse_kind_name(G->kind));
    for (int i = 0; i < G->nmembers; i++) {
      int n = number(p, G->members[i]);
      fprintf(out, "      p%d_n%d [label=\"%%%d %s\"%s];\n", pi, n, n, nnc_ops[G->members[i]->op].name,
              G->members[i] == G->anchor ? ", penwidth=2" : "");
    }
    fprintf(out, "    }\n");
  }
  for (int i = 0; i < g->nnodes; i++) {
    const nnc_node *nd = g->nodes[i];
    if (p->group_of[i] >= 0) continue;
    const char *name = nd->name ? nd->name : nnc_ops[nd->op].name;
    fprintf(out, "    p%d_n%d [label=\"%%%d ", pi, i, i);
    for (const char *c = name; *c; c++) fprintf(out, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
    fprintf(out, "\", shape=ellipse, style=dashed];\n");
  }
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i]->ninputs; j++)
      fprintf(out, "    p%d_n%d -> p%d_n%d;\n", pi, number(p, g->nodes[i]->inputs[j]), pi, i);
  fprintf(out, "  }\n");
}
