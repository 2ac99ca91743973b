/* A small open-addressing map from a key (a node's address, or a number) to an int, for code
 * in ir/ that must not touch a node's `aux` (the verifier, the printer, the text parser). */
#ifndef NNC_NODE_MAP_H
#define NNC_NODE_MAP_H

#include <stdint.h>
#include <stdlib.h>

#include "arena.h"

typedef struct nnc_node_map {
  uintptr_t *keys;                /* 0: empty slot */
  int *vals;
  size_t cap, count;              /* cap: a power of two, kept above twice the count */
} nnc_node_map;

static inline void nnc_node_map_init(nnc_node_map *m, size_t expected) {
  m->cap = 16;
  while (m->cap < 2 * expected + 1) m->cap *= 2;
  m->count = 0;
  m->keys = nnc_xcalloc(m->cap, sizeof *m->keys);
  m->vals = nnc_xcalloc(m->cap, sizeof *m->vals);
}

static inline void nnc_node_map_free(nnc_node_map *m) {
  free(m->keys);
  free(m->vals);
}

static inline size_t nnc_node_map_slot(const nnc_node_map *m, uintptr_t key) {
  size_t h = (size_t)(((uint64_t)key * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (m->cap - 1);
  while (m->keys[h] && m->keys[h] != key) h = (h + 1) & (m->cap - 1);
  return h;
}

/* The value stored for key (non-zero), or -1. */
static inline int nnc_node_map_get(const nnc_node_map *m, uintptr_t key) {
  size_t h = nnc_node_map_slot(m, key);
  return m->keys[h] ? m->vals[h] : -1;
}

static inline void nnc_node_map_put(nnc_node_map *m, uintptr_t key, int val) {
  if (2 * (m->count + 1) >= m->cap) {
    nnc_node_map old = *m;
    nnc_node_map_init(m, old.count + 1);
    for (size_t i = 0; i < old.cap; i++)
      if (old.keys[i]) nnc_node_map_put(m, old.keys[i], old.vals[i]);
    nnc_node_map_free(&old);
  }
  size_t h = nnc_node_map_slot(m, key);
  if (!m->keys[h]) m->count++;
  m->keys[h] = key;
  m->vals[h] = val;
}

#endif
