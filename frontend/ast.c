/* Syntax tree constructors. */
#include "ast.h"

nnc_ast *nnc_ast_new(nnc_arena *a, nnc_ast_kind kind, nnc_loc loc) {
  nnc_ast *n = nnc_arena_alloc(a, sizeof *n);
  n->kind = kind;
  n->loc = loc;
  return n;
}

void nnc_ast_push(nnc_arena *a, nnc_ast_list *l, nnc_ast *item) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 4;
    l->items = nnc_arena_realloc(a, l->items, sizeof(nnc_ast *) * (size_t)l->cap, sizeof(nnc_ast *) * (size_t)cap);
    l->cap = cap;
  }
  l->items[l->n++] = item;
}

const char *nnc_ast_op_str(nnc_ast_op op) {
  static const char *const s[] = {"+", "-", "*", "/", "@", "**", "<", "<=", ">", ">=", "==", "!=", "-"};
  return (unsigned)op < sizeof s / sizeof *s ? s[op] : "?";
}

const char *nnc_ast_kind_name(nnc_ast_kind k) {
  static const char *const s[] = {
      "file", "hparam", "model", "layer definition", "forward", "train block", "parameter", "type",
      "block", "layer declaration", "freeze", "assignment", "minimize", "return", "for",
      "number", "string", "name", "call", "keyword argument", "binary operation", "unary operation",
      "index", "slice", "attribute", "list"};
  return (unsigned)k < sizeof s / sizeof *s ? s[k] : "?";
}
