/* The parser of model files: tokens (scanner.l) -> syntax tree (ast.h).
 *
 * An LALR(1) grammar that follows the EBNF of docs/language.md rule for rule. Every node gets
 * the location where its construct starts (a binary operation: its operator).
 *
 * Errors. Bison reports the first error of a statement through yyreport_syntax_error, which
 * turns the expected-token set into one human message ("expected ')'", "expected an
 * expression"). Recovery happens at three levels, with an `error` rule each: statements in a
 * block, entries of a train block, and top-level items. Bison then discards tokens up to the
 * end of the statement. Two things keep one mistake at one message:
 *  - the token filter (nnc_yylex) skips whole nested { } blocks after an error, so that the
 *    statements of a broken `for` or `model` header are not parsed as statements of the
 *    enclosing block (each would be an error of its own);
 *  - a ( or [ left open at a line break is forgotten once the error is found, so that the line
 *    ends the broken statement instead of the rest of the file.
 * Nesting is bounded twice: the scanner stops at NNC_MAX_NESTING open brackets, and bison's
 * stack (YYMAXDEPTH) stops long right-recursive chains such as `- - - - x`. */

%define api.pure full
%define api.prefix {nnc_yy}
%define parse.error custom
%define parse.lac full
%locations
%param {nnc_parse_ctx *ctx}
%expect 0

%code requires {
#include "syntax.h"
}

%code {
#include <string.h>

/* The flex scanner (scanner.l); its header is not included: its macros clash with bison's. */
int nnc_scan_lex(NNC_YYSTYPE *, NNC_YYLTYPE *, void *scanner);

/* Bounds bison's stack: deep enough for NNC_MAX_NESTING brackets of any expression. */
#define YYMAXDEPTH (64 * NNC_MAX_NESTING)

static int nnc_yylex(NNC_YYSTYPE *, NNC_YYLTYPE *, nnc_parse_ctx *);
static void nnc_yyerror(NNC_YYLTYPE *, nnc_parse_ctx *, const char *);

static nnc_loc at(nnc_parse_ctx *ctx, NNC_YYLTYPE l) { return (nnc_loc){ctx->src, l.first_line, l.first_column}; }

static nnc_ast *node(nnc_parse_ctx *ctx, nnc_ast_kind kind, NNC_YYLTYPE l) {
  return nnc_ast_new(ctx->arena, kind, at(ctx, l));
}

static nnc_ast *named(nnc_parse_ctx *ctx, nnc_ast_kind kind, const char *name, NNC_YYLTYPE l) {
  nnc_ast *n = node(ctx, kind, l);
  n->name = name;
  return n;
}

static nnc_ast *with_a(nnc_ast *n, nnc_ast *a) {
  n->a = a;
  return n;
}

static nnc_ast *with_list(nnc_ast *n, nnc_ast_list list) {
  n->list = list;
  return n;
}

static nnc_ast *binop(nnc_parse_ctx *ctx, nnc_ast_op op, nnc_ast *a, nnc_ast *b, NNC_YYLTYPE oploc) {
  nnc_ast *n = node(ctx, AST_BINOP, oploc);
  n->op = op;
  n->a = a;
  n->b = b;
  return n;
}

static nnc_ast_list list1(nnc_parse_ctx *ctx, nnc_ast *item) {
  nnc_ast_list l = {0};
  if (item) nnc_ast_push(ctx->arena, &l, item);
  return l;
}

static nnc_ast_list append(nnc_parse_ctx *ctx, nnc_ast_list l, nnc_ast *item) {
  if (item) nnc_ast_push(ctx->arena, &l, item);
  return l;
}

/* Keyword arguments come after the positional ones (as in Python). */
static nnc_ast *call(nnc_parse_ctx *ctx, nnc_ast *callee, nnc_ast_list args, NNC_YYLTYPE l) {
  bool seen_keyword = false;
  for (int i = 0; i < args.n; i++) {
    if (args.items[i]->kind == AST_KV)
      seen_keyword = true;
    else if (seen_keyword)
      nnc_error(ctx->diags, args.items[i]->loc, "positional argument after a keyword argument");
  }
  return with_list(with_a(node(ctx, AST_CALL, l), callee), args);
}

static nnc_ast *slice(nnc_parse_ctx *ctx, nnc_ast *a, nnc_ast *b, nnc_ast *c, NNC_YYLTYPE l) {
  nnc_ast *n = node(ctx, AST_SLICE, l);
  n->a = a;
  n->b = b;
  n->c = c;
  return n;
}

/* A layer definition's body: its statements, and exactly one forward. Items that failed to
 * parse are NULL; a forward among them may have been lost, so none missing is reported then. */
static nnc_ast *layerdef(nnc_parse_ctx *ctx, const char *name, NNC_YYLTYPE l, nnc_ast_list params,
                         NNC_YYLTYPE body_loc, nnc_ast_list items) {
  nnc_ast *def = with_list(named(ctx, AST_LAYERDEF, name, l), params);
  def->body = node(ctx, AST_BLOCK, body_loc);
  bool broken = false;
  for (int i = 0; i < items.n; i++) {
    nnc_ast *it = items.items[i];
    if (!it)
      broken = true;
    else if (it->kind != AST_FORWARD)
      nnc_ast_push(ctx->arena, &def->body->list, it);
    else if (def->b)
      nnc_error(ctx->diags, it->loc, "layer '%s' has a second forward (the first is at line %d)", name,
                def->b->loc.line);
    else
      def->b = it;
  }
  if (!def->b && !broken) nnc_error(ctx->diags, def->loc, "layer '%s' has no forward(...) { ... }", name);
  return def;
}
}

%union {
  nnc_ast *node;
  const char *str;
  nnc_ast_list list;
}

%token NEWLINE "end of line"
%token <str> IDENT "a name"
%token <node> INT "an integer"
%token <node> FLOAT "a number"
%token <str> STRING "a string"
%token MODEL "'model'" LAYER "'layer'" FORWARD "'forward'" TRAIN "'train'" HPARAM "'hparam'"
%token MINIMIZE "'minimize'" RETURN "'return'" FREEZE "'freeze'" FOR "'for'" IN "'in'"
%token PLUS "'+'" MINUS "'-'" STAR "'*'" SLASH "'/'" AT "'@'" POW "'**'"
%token LT "'<'" LE "'<='" GT "'>'" GE "'>='" EQ "'=='" NE "'!='"
%token ASSIGN "'='" COLON "':'" COMMA "','" DOT "'.'" DOTDOT "'..'"
%token LPAREN "'('" RPAREN "')'" LBRACKET "'['" RBRACKET "']'" LBRACE "'{'" RBRACE "'}'"

%type <node> item hparam model input type layerdef lparam forward train kv block stmt target
%type <node> lbody_item expr sum term unary power postfix primary arg slice opt_expr
%type <list> items inputs_opt inputs dims_opt lparams_opt lparams idents_opt idents kv_seq kv_seq1
%type <list> stmt_seq stmt_seq1 lbody_seq lbody_seq1 targets exprs exprs_opt args_opt args slices

%%

/* file = { hparam | model | layerdef | train } */
file: nl_opt items {
    ctx->root = with_list(nnc_ast_new(ctx->arena, AST_FILE, (nnc_loc){ctx->src, 1, 1}), $2);
  }
  ;

items: %empty { $$ = (nnc_ast_list){0}; }
  | items item nl_opt { $$ = append(ctx, $1, $2); }
  ;

item: hparam | model | layerdef | train
  | error { $$ = NULL; }
  ;

nl_opt: %empty | nls ;
nls: NEWLINE | nls NEWLINE ;

/* hparam = "hparam" IDENT "=" expr NL */
hparam: HPARAM IDENT ASSIGN expr { $$ = with_a(named(ctx, AST_HPARAM, $2, @1), $4); }
  ;

/* model = "model" IDENT "(" [ input { "," input } ] ")" block */
model: MODEL IDENT LPAREN inputs_opt RPAREN block {
    $$ = with_list(named(ctx, AST_MODEL, $2, @1), $4);
    $$->body = $6;
  }
  ;

inputs_opt: %empty { $$ = (nnc_ast_list){0}; } | inputs ;
inputs: input { $$ = list1(ctx, $1); }
  | inputs COMMA input { $$ = append(ctx, $1, $3); }
  ;

/* input = IDENT ":" type */
input: IDENT COLON type { $$ = with_a(named(ctx, AST_PARAM, $1, @1), $3); }
  ;

/* type = IDENT "[" [ expr { "," expr } ] "]" */
type: IDENT LBRACKET dims_opt RBRACKET { $$ = with_list(named(ctx, AST_TYPE, $1, @1), $3); }
  ;

dims_opt: %empty { $$ = (nnc_ast_list){0}; } | exprs ;

/* layerdef = "layer" IDENT "(" [ lparam { "," lparam } ] ")" "{" { stmt NL } forward { NL } "}" */
layerdef: LAYER IDENT LPAREN lparams_opt RPAREN LBRACE nl_opt lbody_seq RBRACE {
    $$ = layerdef(ctx, $2, @1, $4, @6, $8);
  }
  ;

lparams_opt: %empty { $$ = (nnc_ast_list){0}; } | lparams ;
lparams: lparam { $$ = list1(ctx, $1); }
  | lparams COMMA lparam { $$ = append(ctx, $1, $3); }
  ;

/* lparam = IDENT [ "=" expr ] */
lparam: IDENT { $$ = named(ctx, AST_PARAM, $1, @1); }
  | IDENT ASSIGN expr { $$ = with_a(named(ctx, AST_PARAM, $1, @1), $3); }
  ;

/* The statements and the forward of a layer definition (failed items are kept as NULL). */
lbody_seq: %empty { $$ = (nnc_ast_list){0}; } | lbody_seq1 | lbody_seq1 nls ;
lbody_seq1: lbody_item { $$ = (nnc_ast_list){0}; nnc_ast_push(ctx->arena, &$$, $1); }
  | lbody_seq1 nls lbody_item { $$ = $1; nnc_ast_push(ctx->arena, &$$, $3); }
  ;
lbody_item: stmt | forward ;

/* forward = "forward" "(" [ IDENT { "," IDENT } ] ")" block */
forward: FORWARD LPAREN idents_opt RPAREN block {
    $$ = with_list(node(ctx, AST_FORWARD, @1), $3);
    $$->body = $5;
  }
  ;

idents_opt: %empty { $$ = (nnc_ast_list){0}; } | idents ;
idents: IDENT { $$ = list1(ctx, named(ctx, AST_PARAM, $1, @1)); }
  | idents COMMA IDENT { $$ = append(ctx, $1, named(ctx, AST_PARAM, $3, @3)); }
  ;

/* train = "train" "{" { IDENT "=" expr NL } "}" */
train: TRAIN LBRACE nl_opt kv_seq RBRACE { $$ = with_list(node(ctx, AST_TRAIN, @1), $4); }
  ;

kv_seq: %empty { $$ = (nnc_ast_list){0}; } | kv_seq1 | kv_seq1 nls ;
kv_seq1: kv { $$ = list1(ctx, $1); }
  | kv_seq1 nls kv { $$ = append(ctx, $1, $3); }
  ;
kv: IDENT ASSIGN expr { $$ = with_a(named(ctx, AST_KV, $1, @1), $3); }
  | error { $$ = NULL; }
  ;

/* block = "{" { stmt NL } "}" */
block: LBRACE nl_opt stmt_seq RBRACE { $$ = with_list(node(ctx, AST_BLOCK, @1), $3); }
  ;

stmt_seq: %empty { $$ = (nnc_ast_list){0}; } | stmt_seq1 | stmt_seq1 nls ;
stmt_seq1: stmt { $$ = list1(ctx, $1); }
  | stmt_seq1 nls stmt { $$ = append(ctx, $1, $3); }
  ;

stmt: LAYER IDENT ASSIGN expr { $$ = with_a(named(ctx, AST_LAYER, $2, @1), $4); }
  | FREEZE targets { $$ = with_list(node(ctx, AST_FREEZE, @1), $2); }
  | targets ASSIGN expr { $$ = with_a(with_list(node(ctx, AST_ASSIGN, @1), $1), $3); }
  | MINIMIZE expr { $$ = with_a(node(ctx, AST_MINIMIZE, @1), $2); }
  | RETURN exprs { $$ = with_list(node(ctx, AST_RETURN, @1), $2); }
  | FOR IDENT IN expr DOTDOT expr block {
      $$ = named(ctx, AST_FOR, $2, @1);
      $$->a = $4;
      $$->b = $6;
      $$->body = $7;
    }
  | error { $$ = NULL; }
  ;

targets: target { $$ = list1(ctx, $1); }
  | targets COMMA target { $$ = append(ctx, $1, $3); }
  ;

/* target = IDENT { "." IDENT }  (head.weight = tok.weight ties two parameters) */
target: IDENT { $$ = named(ctx, AST_NAME, $1, @1); }
  | target DOT IDENT { $$ = with_a(named(ctx, AST_ATTR, $3, @1), $1); }
  ;

exprs: expr { $$ = list1(ctx, $1); }
  | exprs COMMA expr { $$ = append(ctx, $1, $3); }
  ;

/* expr = cmp ;  cmp = sum [ ("<"|"<="|">"|">="|"=="|"!=") sum ] */
expr: sum
  | sum LT sum { $$ = binop(ctx, AST_OP_LT, $1, $3, @2); }
  | sum LE sum { $$ = binop(ctx, AST_OP_LE, $1, $3, @2); }
  | sum GT sum { $$ = binop(ctx, AST_OP_GT, $1, $3, @2); }
  | sum GE sum { $$ = binop(ctx, AST_OP_GE, $1, $3, @2); }
  | sum EQ sum { $$ = binop(ctx, AST_OP_EQ, $1, $3, @2); }
  | sum NE sum { $$ = binop(ctx, AST_OP_NE, $1, $3, @2); }
  ;

/* sum = term { ("+"|"-") term } */
sum: term
  | sum PLUS term { $$ = binop(ctx, AST_OP_ADD, $1, $3, @2); }
  | sum MINUS term { $$ = binop(ctx, AST_OP_SUB, $1, $3, @2); }
  ;

/* term = unary { ("*"|"/"|"@") unary } */
term: unary
  | term STAR unary { $$ = binop(ctx, AST_OP_MUL, $1, $3, @2); }
  | term SLASH unary { $$ = binop(ctx, AST_OP_DIV, $1, $3, @2); }
  | term AT unary { $$ = binop(ctx, AST_OP_MATMUL, $1, $3, @2); }
  ;

/* unary = "-" unary | power */
unary: MINUS unary {
    $$ = with_a(node(ctx, AST_UNOP, @1), $2);
    $$->op = AST_OP_NEG;
  }
  | power
  ;

/* power = postfix [ "**" unary ]  (right-associative, binds tighter than unary minus on its left) */
power: postfix
  | postfix POW unary { $$ = binop(ctx, AST_OP_POW, $1, $3, @2); }
  ;

/* postfix = primary { "(" [ args ] ")" | "[" slices "]" | "." IDENT } */
postfix: primary
  | postfix LPAREN args_opt RPAREN { $$ = call(ctx, $1, $3, @1); }
  | postfix LBRACKET slices RBRACKET { $$ = with_list(with_a(node(ctx, AST_INDEX, @1), $1), $3); }
  | postfix DOT IDENT { $$ = with_a(named(ctx, AST_ATTR, $3, @1), $1); }
  ;

/* args = arg { "," arg } [","] */
args_opt: %empty { $$ = (nnc_ast_list){0}; } | args | args COMMA ;
args: arg { $$ = list1(ctx, $1); }
  | args COMMA arg { $$ = append(ctx, $1, $3); }
  ;

/* arg = IDENT "=" expr | expr */
arg: expr
  | IDENT ASSIGN expr { $$ = with_a(named(ctx, AST_KV, $1, @1), $3); }
  ;

/* slices = slice { "," slice } ;  slice = expr | [expr] ":" [expr] [ ":" [expr] ] */
slices: slice { $$ = list1(ctx, $1); }
  | slices COMMA slice { $$ = append(ctx, $1, $3); }
  ;

slice: expr
  | opt_expr COLON opt_expr { $$ = slice(ctx, $1, $3, NULL, $1 ? @1 : @2); }
  | opt_expr COLON opt_expr COLON opt_expr { $$ = slice(ctx, $1, $3, $5, $1 ? @1 : @2); }
  ;

opt_expr: %empty { $$ = NULL; } | expr ;

/* primary = INT | FLOAT | STRING | IDENT | "(" expr ")" | "[" [ expr { "," expr } ] "]" */
primary: INT
  | FLOAT
  | STRING {
      $$ = node(ctx, AST_STR, @1);
      $$->str = $1;
    }
  | IDENT { $$ = named(ctx, AST_NAME, $1, @1); }
  | LPAREN expr RPAREN { $$ = $2; }
  | LBRACKET exprs_opt RBRACKET { $$ = with_list(node(ctx, AST_LIST, @1), $2); }
  ;

exprs_opt: %empty { $$ = (nnc_ast_list){0}; } | exprs ;

%%

/* The token filter between the scanner and the parser. It remembers where the previous token
 * ended (for messages about a missing token at a line end) and, after an error, skips the
 * nested { } blocks of the abandoned statement. */
static int nnc_yylex(NNC_YYSTYPE *lval, NNC_YYLTYPE *lloc, nnc_parse_ctx *ctx) {
  for (;;) {
    int depth_before = ctx->brace_depth;
    int tok = nnc_scan_lex(lval, lloc, ctx->scanner);
    int depth = tok == RBRACE ? ctx->brace_depth : depth_before;
    if (tok == NNC_YYerror && !ctx->skipping) {
      ctx->skipping = true;
      ctx->skip_depth = depth_before;
    } else if (ctx->skipping && tok != NNC_YYEOF) {
      bool nested = depth > ctx->skip_depth || (depth == ctx->skip_depth && (tok == LBRACE || tok == RBRACE));
      if (nested) continue;
      if (tok == NEWLINE || depth < ctx->skip_depth) ctx->skipping = false;
    }
    ctx->token_brace_depth = depth;
    ctx->token_name = tok == IDENT ? lval->str : NULL;
    if (tok != NEWLINE) {
      ctx->prev_end_line = ctx->last_end_line;
      ctx->prev_end_col = ctx->last_end_col;
      ctx->last_end_line = lloc->last_line;
      ctx->last_end_col = lloc->last_column;
    }
    return tok;
  }
}

static void nnc_yyerror(NNC_YYLTYPE *loc, nnc_parse_ctx *ctx, const char *msg) {
  if (ctx->aborted) return;
  if (!strcmp(msg, "memory exhausted"))
    nnc_error(ctx->diags, at(ctx, *loc), "expression nested too deeply");
  else
    nnc_error(ctx->diags, at(ctx, *loc), "%s", msg);
  ctx->aborted = true;
}

static bool expects(const yysymbol_kind_t *exp, int n, yysymbol_kind_t sym) {
  for (int i = 0; i < n; i++)
    if (exp[i] == sym) return true;
  return false;
}

/* How the unexpected token reads in a message. */
static const char *unexpected_name(const nnc_parse_ctx *ctx, yysymbol_kind_t tok, char *buf, size_t cap) {
  if (tok == YYSYMBOL_IDENT && ctx->token_name) {
    snprintf(buf, cap, "'%.60s%s'", ctx->token_name, strlen(ctx->token_name) > 60 ? "..." : "");
    return buf;
  }
  if (tok == YYSYMBOL_INT || tok == YYSYMBOL_FLOAT) return "number";
  if (tok == YYSYMBOL_STRING) return "string";
  return yysymbol_name(tok);
}

/* "to match this '('": the innermost bracket of the kind the parser expected to be closed. The
 * unexpected token itself may have opened one more. */
static void note_opening(nnc_parse_ctx *ctx, yysymbol_kind_t tok, char closer) {
  bool brace = closer == '}';
  int depth = brace ? ctx->brace_depth : ctx->paren_depth;
  if (brace ? tok == YYSYMBOL_LBRACE : tok == YYSYMBOL_LPAREN || tok == YYSYMBOL_LBRACKET) depth--;
  if (depth < 1 || depth > NNC_MAX_NESTING) return;
  nnc_loc open = brace ? ctx->open_brace[depth - 1] : ctx->open_paren[depth - 1];
  nnc_note(ctx->diags, open, "to match this '%c'", closer == ')' ? '(' : closer == ']' ? '[' : '{');
}

/* One message per syntax error, from the tokens that could have come instead:
 *  - a closing bracket missing at a line end is reported just after the line's last token;
 *  - where the statement could have ended, the token is simply unexpected;
 *  - a missing closing bracket, or a missing expression, is named as such;
 *  - otherwise up to three alternatives are listed. */
static int yyreport_syntax_error(const yypcontext_t *yyctx, nnc_parse_ctx *ctx) {
  if (ctx->aborted) return 0;
  yysymbol_kind_t exp[YYNTOKENS];
  int n = yypcontext_expected_tokens(yyctx, exp, YYNTOKENS);
  if (n < 0) n = 0;
  yysymbol_kind_t tok = yypcontext_token(yyctx);
  NNC_YYLTYPE loc = *yypcontext_location(yyctx);
  nnc_loc tok_loc = at(ctx, loc);
  nnc_loc after_prev = {ctx->src, ctx->prev_end_line, ctx->prev_end_col};
  bool line_break_before = tok == YYSYMBOL_YYEOF || loc.first_line > ctx->prev_end_line;
  if (ctx->prev_end_line == 0) after_prev = tok_loc;

  const char *closer = expects(exp, n, YYSYMBOL_RPAREN)     ? "')'"
                       : expects(exp, n, YYSYMBOL_RBRACKET) ? "']'"
                       : expects(exp, n, YYSYMBOL_RBRACE)   ? "'}'"
                                                            : NULL;
  char buf[96];
  bool starts_item = tok == YYSYMBOL_YYEOF || tok == YYSYMBOL_MODEL || tok == YYSYMBOL_TRAIN || tok == YYSYMBOL_HPARAM;
  if (closer && closer[1] != '}' && line_break_before) {
    nnc_error(ctx->diags, after_prev, "expected %s", closer);
    note_opening(ctx, tok, closer[1]);
    /* The bracket left open swallowed the line break: let the line end the statement. */
    ctx->paren_depth = 0;
  } else if (closer && starts_item) {
    nnc_error(ctx->diags, after_prev, "expected %s", closer);
    note_opening(ctx, tok, closer[1]);
  } else if (expects(exp, n, YYSYMBOL_NEWLINE) && tok != YYSYMBOL_YYEOF) {
    nnc_error(ctx->diags, tok_loc, "unexpected %s", unexpected_name(ctx, tok, buf, sizeof buf));
  } else if (closer) {
    nnc_error(ctx->diags, tok == YYSYMBOL_YYEOF ? after_prev : tok_loc, "expected %s", closer);
    note_opening(ctx, tok, closer[1]);
  } else if (expects(exp, n, YYSYMBOL_INT)) {
    nnc_error(ctx->diags, tok == YYSYMBOL_YYEOF ? after_prev : tok_loc, "expected an expression");
  } else if (n >= 1 && n <= 3) {
    char list[160] = "";
    for (int i = 0; i < n; i++) {
      if (i) strcat(list, i == n - 1 ? " or " : ", ");
      strncat(list, yysymbol_name(exp[i]), 40);
    }
    nnc_error(ctx->diags, tok == YYSYMBOL_YYEOF ? after_prev : tok_loc, "expected %s", list);
  } else {
    nnc_error(ctx->diags, tok_loc, "unexpected %s", unexpected_name(ctx, tok, buf, sizeof buf));
  }
  /* Skip the nested blocks of the abandoned statement (not past its end, which is here). */
  if (tok != YYSYMBOL_NEWLINE && tok != YYSYMBOL_YYEOF && tok != YYSYMBOL_RBRACE && !ctx->skipping) {
    ctx->skipping = true;
    ctx->skip_depth = ctx->token_brace_depth;
  }
  return 0;
}
