/* What the scanner (scanner.l), the parser (parser.y) and the parse entry (parse.c) share:
 * one state per parse. Not part of the front end's interface (see frontend.h). */
#ifndef NNC_SYNTAX_H
#define NNC_SYNTAX_H

#include <stdbool.h>

#include "ast.h"

typedef struct nnc_parse_ctx {
  nnc_arena *arena;
  const nnc_source *src;
  nnc_diags *diags;
  void *scanner;             /* the flex scanner (yyscan_t) */
  nnc_ast *root;             /* the AST_FILE, set when the file rule reduces */

  /* Scanner state. */
  int line, col;             /* position of the next character */
  int paren_depth;           /* open ( and [: newlines inside them are not statement ends */
  int brace_depth;           /* open { */
  nnc_loc open_paren[NNC_MAX_NESTING];  /* where each open ( or [ is, by depth (for notes) */
  nnc_loc open_brace[NNC_MAX_NESTING];
  bool last_was_newline;     /* collapses blank lines into one NEWLINE token */
  bool newline_swallowed;    /* a line break inside ( ) or [ ] came before the current token */
  bool aborted;              /* a fatal error (nesting too deep) was reported: the rest is EOF */

  /* Parser-side state (the token filter between scanner and parser). */
  int last_end_line, last_end_col;  /* just after the current token (NEWLINEs aside) */
  int prev_end_line, prev_end_col;  /* just after the token before it */
  const char *token_name;    /* the current token's text when it is a name */
  int token_brace_depth;     /* brace depth the current token sits at */
  bool skipping;             /* after an error: skip nested { } blocks until the statement ends */
  int skip_depth;
} nnc_parse_ctx;

/* The flex scanner over ctx->src (scanner.l). open returns NULL if flex cannot start. */
void *nnc_scanner_open(nnc_parse_ctx *);
void nnc_scanner_close(void *scanner);

/* The bison parser (parser.y); 0 when the whole input parsed (errors may have been recovered). */
int nnc_yyparse(nnc_parse_ctx *);

#endif
