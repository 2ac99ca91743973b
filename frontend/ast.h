/* The syntax tree of a model file (docs/language.md is the reference for the language).
 *
 * One node struct for every construct: a kind, a location, and the fields that kind uses
 * (listed per kind below). The parser builds it in the compilation's arena; elaboration
 * (frontend/elab.c) turns it into the graph IR. */
#ifndef NNC_AST_H
#define NNC_AST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../ir/arena.h"
#include "../ir/diag.h"

typedef enum {
  /* top level */
  AST_FILE,      /* list: HPARAM | MODEL | LAYERDEF | TRAIN */
  AST_HPARAM,    /* hparam NAME = a */
  AST_MODEL,     /* model NAME(list: PARAM with a = TYPE) body: BLOCK */
  AST_LAYERDEF,  /* layer NAME(list: PARAM with optional default a) { body: BLOCK; b: FORWARD } */
  AST_FORWARD,   /* forward(list: PARAM, no type) body: BLOCK */
  AST_TRAIN,     /* train { list: KV } */
  AST_PARAM,     /* NAME [: a] or NAME [= a]  (a model input with its TYPE, or a layer argument) */
  AST_TYPE,      /* name: "f32" | "i32" | "u8" ...; list: dimension expressions (B, ints, names) */
  /* statements */
  AST_BLOCK,     /* list: statements */
  AST_LAYER,     /* layer NAME = a (a CALL) */
  AST_FREEZE,    /* freeze list: NAME | ATTR */
  AST_ASSIGN,    /* list: targets (NAME, or ATTR for weight tying) = a */
  AST_MINIMIZE,  /* minimize a */
  AST_RETURN,    /* return list: expressions */
  AST_FOR,       /* for NAME in a .. b body: BLOCK */
  /* expressions */
  AST_NUM,       /* num; is_int and ival when written without '.' or exponent */
  AST_STR,       /* str */
  AST_NAME,      /* name */
  AST_CALL,      /* a(list: expressions, then KV keyword arguments) */
  AST_KV,        /* name = a  (keyword argument; train block entry) */
  AST_BINOP,     /* a op b */
  AST_UNOP,      /* op a */
  AST_INDEX,     /* a[list: expressions or SLICE] */
  AST_SLICE,     /* [a] : [b] [: c]  (missing parts are NULL) */
  AST_ATTR,      /* a.name */
  AST_LIST,      /* [list] */
} nnc_ast_kind;

typedef enum {
  AST_OP_ADD, AST_OP_SUB, AST_OP_MUL, AST_OP_DIV, AST_OP_MATMUL, AST_OP_POW,
  AST_OP_LT, AST_OP_LE, AST_OP_GT, AST_OP_GE, AST_OP_EQ, AST_OP_NE,
  AST_OP_NEG,
} nnc_ast_op;

typedef struct nnc_ast nnc_ast;

typedef struct nnc_ast_list {
  nnc_ast **items;
  int n, cap;
} nnc_ast_list;

struct nnc_ast {
  nnc_ast_kind kind;
  nnc_loc loc;              /* where the construct starts (for BINOP: the operator) */
  const char *name;
  const char *str;
  nnc_ast_op op;
  double num;
  bool is_int;
  int64_t ival;
  nnc_ast *a, *b, *c;
  nnc_ast *body;
  nnc_ast_list list;
};

nnc_ast *nnc_ast_new(nnc_arena *, nnc_ast_kind, nnc_loc);
void nnc_ast_push(nnc_arena *, nnc_ast_list *, nnc_ast *);
const char *nnc_ast_op_str(nnc_ast_op);
const char *nnc_ast_kind_name(nnc_ast_kind);
/* Prints a tree as one S-expression, "(model m (param x (type f32 B)) (block ...))" (tests). */
void nnc_ast_dump(FILE *, const nnc_ast *);

/* Bounds that keep hostile input from exhausting the compiler. */
#define NNC_MAX_NESTING 256       /* expression and block nesting depth */
#define NNC_MAX_SOURCE_BYTES (16u << 20)

#endif
