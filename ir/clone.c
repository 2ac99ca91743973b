/* Deep copy of a graph into another arena (a program built from another module's forward
 * graph, or a train_step that grows from a copy of forward). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* Old node -> its copy, by open addressing on the pointer: the source graph is const, so
 * its nodes' aux fields are not ours to use. */
typedef struct node_map {
  const nnc_node **keys;
  nnc_node **vals;
  size_t cap;
} node_map;

static size_t hash_ptr(const void *p, size_t cap) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33, x *= UINT64_C(0xff51afd7ed558ccd), x ^= x >> 33;
  return (size_t)x & (cap - 1);
}

static void map_put(node_map *m, const nnc_node *k, nnc_node *v) {
  size_t i = hash_ptr(k, m->cap);
  while (m->keys[i] && m->keys[i] != k) i = (i + 1) & (m->cap - 1);
  m->keys[i] = k, m->vals[i] = v;
}

static nnc_node *map_get(const node_map *m, const nnc_node *k) {
  if (!k) return NULL;
  for (size_t i = hash_ptr(k, m->cap); m->keys[i]; i = (i + 1) & (m->cap - 1))
    if (m->keys[i] == k) return m->vals[i];
  return NULL;
}

static nnc_node *clone_node(nnc_graph *dst, const nnc_node *n, const node_map *m) {
  if (n->ninputs < 0 || (n->ninputs > 0 && !n->inputs)) return NULL;
  nnc_node *c = nnc_node_new(dst, n->op, n->ninputs, NULL, n->loc);
  for (int i = 0; i < n->ninputs; i++)
    if (!(c->inputs[i] = map_get(m, n->inputs[i]))) return NULL; /* not an earlier node */
  c->type = n->type;
  c->nattrs = n->nattrs;
  memcpy(c->attrs, n->attrs, sizeof c->attrs);
  c->name = n->name ? nnc_arena_strdup(dst->arena, n->name) : NULL;
  return c;
}

static bool clone_outputs(nnc_graph *dst, const nnc_output *outs, int n, bool state, const node_map *m) {
  for (int i = 0; i < n; i++) {
    nnc_node *v = map_get(m, outs[i].value);
    if (!v) return false;
    if (state) nnc_graph_add_state_output(dst, outs[i].name, v);
    else nnc_graph_add_output(dst, outs[i].name, v);
  }
  return true;
}

nnc_graph *nnc_graph_clone(nnc_arena *a, const nnc_graph *src, const char *name) {
  nnc_graph *dst = nnc_graph_new(a, name ? name : src->name);
  node_map m = {.cap = 16};
  while (m.cap < (size_t)src->nnodes * 2) m.cap *= 2;
  m.keys = nnc_xcalloc(m.cap, sizeof *m.keys);
  m.vals = nnc_xcalloc(m.cap, sizeof *m.vals);
  bool ok = true;
  for (int i = 0; i < src->nnodes && ok; i++) {
    nnc_node *c = clone_node(dst, src->nodes[i], &m);
    if (c) map_put(&m, src->nodes[i], c);
    ok = c != NULL;
  }
  ok = ok && clone_outputs(dst, src->outputs, src->noutputs, false, &m);
  ok = ok && clone_outputs(dst, src->state_outputs, src->nstate, true, &m);
  dst->loss = src->loss;
  free(m.keys);
  free(m.vals);
  return ok ? dst : NULL;
}
