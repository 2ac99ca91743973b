/* The parse entry: source text -> syntax tree, with the bounds that keep hostile input harmless. */
#include "frontend.h"
#include "syntax.h"

#include <stdlib.h>

/* The deepest tree handed on. Brackets are bounded by the scanner; this also bounds chains of
 * operators (a + a + ... + a), over which later stages recurse. */
#define NNC_MAX_TREE_DEPTH (4 * NNC_MAX_NESTING)

typedef struct {
  const nnc_ast *node;
  int depth;
} depth_item;

static void push_child(depth_item *stack, int *n, const nnc_ast *child, int depth) {
  if (child) stack[(*n)++] = (depth_item){child, depth};
}

/* Walks the tree without recursion; returns the first node deeper than the bound, or NULL. */
static const nnc_ast *too_deep_node(const nnc_ast *root) {
  int cap = 64, n = 0;
  depth_item *stack = nnc_xmalloc(sizeof *stack * (size_t)cap);
  stack[n++] = (depth_item){root, 1};
  const nnc_ast *found = NULL;
  while (n > 0 && !found) {
    depth_item it = stack[--n];
    if (it.depth > NNC_MAX_TREE_DEPTH) {
      found = it.node;
      break;
    }
    int need = n + 4 + it.node->list.n;
    if (need > cap) {
      while (cap < need) cap *= 2;
      stack = nnc_xrealloc(stack, sizeof *stack * (size_t)cap);
    }
    push_child(stack, &n, it.node->a, it.depth + 1);
    push_child(stack, &n, it.node->b, it.depth + 1);
    push_child(stack, &n, it.node->c, it.depth + 1);
    push_child(stack, &n, it.node->body, it.depth + 1);
    for (int i = 0; i < it.node->list.n; i++) push_child(stack, &n, it.node->list.items[i], it.depth + 1);
  }
  free(stack);
  return found;
}

nnc_ast *nnc_parse_source(nnc_arena *arena, const nnc_source *src, nnc_diags *diags) {
  if (src->len > NNC_MAX_SOURCE_BYTES) {
    nnc_error(diags, (nnc_loc){0}, "'%s' is too large (%zu bytes; the limit is %u MiB)", src->path, src->len,
              NNC_MAX_SOURCE_BYTES >> 20);
    return NULL;
  }
  nnc_parse_ctx ctx = {.arena = arena, .src = src, .diags = diags, .line = 1, .col = 1, .last_was_newline = true};
  ctx.scanner = nnc_scanner_open(&ctx);
  if (!ctx.scanner) {
    nnc_error(diags, (nnc_loc){0}, "cannot start the scanner for '%s'", src->path);
    return NULL;
  }
  int rc = nnc_yyparse(&ctx);
  nnc_scanner_close(ctx.scanner);
  if (rc != 0 || ctx.aborted || !ctx.root) return NULL;
  const nnc_ast *deep = too_deep_node(ctx.root);
  if (deep) {
    nnc_error(diags, deep->loc, "expression nested too deeply (the limit is %d levels)", NNC_MAX_TREE_DEPTH);
    return NULL;
  }
  return ctx.root;
}
