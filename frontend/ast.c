/* Syntax tree constructors. */
#include "ast.h"

#include <string.h>

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

/* The dump: an S-expression per node, "(tag name children...)", for tests and debugging.
 * Recursive: trees from nnc_parse_source are bounded in depth. */
static const char *dump_tag(const nnc_ast *n) {
  switch (n->kind) {
  case AST_FILE: return "file";
  case AST_HPARAM: return "hparam";
  case AST_MODEL: return "model";
  case AST_LAYERDEF: return "layerdef";
  case AST_FORWARD: return "forward";
  case AST_TRAIN: return "train";
  case AST_PARAM: return "param";
  case AST_TYPE: return "type";
  case AST_BLOCK: return "block";
  case AST_LAYER: return "layer";
  case AST_FREEZE: return "freeze";
  case AST_ASSIGN: return "assign";
  case AST_MINIMIZE: return "minimize";
  case AST_RETURN: return "return";
  case AST_FOR: return "for";
  case AST_CALL: return "call";
  case AST_KV: return "kv";
  case AST_BINOP: return nnc_ast_op_str(n->op);
  case AST_UNOP: return "neg";
  case AST_INDEX: return "index";
  case AST_SLICE: return "slice";
  case AST_ATTR: return ".";
  case AST_LIST: return "list";
  case AST_NUM: case AST_STR: case AST_NAME: break;
  }
  return "?";
}

static void dump_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(out, "\\%c", *s);
    else if (*s == '\n') fputs("\\n", out);
    else if (*s == '\t') fputs("\\t", out);
    else fputc(*s, out);
  }
  fputc('"', out);
}

static void dump_number(FILE *out, const nnc_ast *n) {
  if (n->is_int) {
    fprintf(out, "%lld", (long long)n->ival);
    return;
  }
  char buf[64];
  snprintf(buf, sizeof buf, "%g", n->num);
  fputs(buf, out);
  if (!strpbrk(buf, ".eni")) fputs(".0", out);   /* a float stays recognizable: 2. -> 2.0 */
}

static void dump_child(FILE *out, const nnc_ast *n, bool show_null) {
  if (!n && !show_null) return;
  fputc(' ', out);
  if (n) nnc_ast_dump(out, n);
  else fputc('_', out);
}

void nnc_ast_dump(FILE *out, const nnc_ast *n) {
  if (!n) {
    fputc('_', out);
    return;
  }
  switch (n->kind) {
  case AST_NUM: dump_number(out, n); return;
  case AST_STR: dump_string(out, n->str ? n->str : ""); return;
  case AST_NAME: fputs(n->name ? n->name : "?", out); return;
  case AST_ATTR:
    fputs("(.", out);
    dump_child(out, n->a, true);
    fprintf(out, " %s)", n->name ? n->name : "?");
    return;
  default: break;
  }
  fprintf(out, "(%s", dump_tag(n));
  if (n->name) fprintf(out, " %s", n->name);
  /* Reads in source order: a call's callee before its arguments, a target before its value. */
  bool list_first = n->kind == AST_ASSIGN || n->kind == AST_LAYERDEF;
  if (list_first)
    for (int i = 0; i < n->list.n; i++) dump_child(out, n->list.items[i], true);
  if (n->kind == AST_LAYERDEF) dump_child(out, n->body, false);
  bool slice = n->kind == AST_SLICE;
  dump_child(out, n->a, slice);
  dump_child(out, n->b, slice);
  dump_child(out, n->c, slice);
  if (!list_first)
    for (int i = 0; i < n->list.n; i++) dump_child(out, n->list.items[i], true);
  if (n->kind != AST_LAYERDEF) dump_child(out, n->body, false);
  fputc(')', out);
}
