/* The text form's parser: IR text (docs/ir.md, "Text form") -> a verified module.
 *
 * The text is line-oriented, so the parser is a loop over lines with a small recursive-descent
 * parser per line kind and no recursion across lines: no input can exhaust the stack. A
 * malformed line gets one diagnostic at its line:col and the parser goes on with the next
 * line. A value whose line failed is poisoned: lines using it fail silently, so one mistake
 * gives one diagnostic.
 *
 * Nodes are located at their IR line while the module is checked (every shape rule as its
 * line is read, then the module verifier), so errors point into the IR text. Once the module
 * is valid, each node and parameter takes the location of its trailing `# file:line:col`
 * comment (or none), so passes run on IR text report errors at the original model source. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "node_map.h"

#define MAX_INPUTS 4096           /* as the shape rule of concat allows */
#define POISON (-2)               /* a %value whose line failed */
#define MAX_SOURCES 64            /* distinct file paths in location comments that are shared */

typedef enum { T_EOF, T_NEWLINE, T_IDENT, T_NUMBER, T_STRING, T_VALUE, T_COMMENT, T_PUNCT, T_BAD } tok_kind;

typedef struct token {
  tok_kind kind;
  const char *s;                  /* its text in the source */
  int len;
  int line, col;
} token;

/* Where a node's or parameter's location comes from once the module is checked. */
typedef struct loc_fix {
  nnc_node *node;                 /* or NULL for a parameter */
  int param;
  nnc_loc loc;
} loc_fix;

/* A `tied NAME` waiting for every parameter to be declared. */
typedef struct pending_tie {
  int param;
  const char *name;
  token at;
} pending_tie;

typedef struct parser {
  const nnc_source *src;
  const char *p, *end, *line_start;
  int line;
  token tok;
  nnc_diags *d;
  nnc_module *m;
  nnc_graph *g;                   /* the graph being read */
  nnc_node_map values;            /* %N + 1 -> node index in g, or POISON */
  loc_fix *fixes;
  int nfixes, fixes_cap;
  pending_tie *ties;
  int nties, ties_cap;
  nnc_source *sources[MAX_SOURCES];
  int nsources;
} parser;

/* --- tokens -------------------------------------------------------------------------------- */

static bool is_ident_start(int c) { return isalpha(c) || c == '_'; }
static bool is_ident_char(int c) { return isalnum(c) || c == '_' || c == '.'; }

static const char *scan_number(const char *p, const char *end) {
  if (p < end && (*p == '-' || *p == '+')) p++;
  if (end - p >= 3 && strncmp(p, "inf", 3) == 0) return p + 3;
  while (p < end && (isdigit((unsigned char)*p) || *p == '.')) p++;
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '-' || *p == '+')) p++;
    while (p < end && isdigit((unsigned char)*p)) p++;
  }
  return p;
}

static const char *scan_string(const char *p, const char *end) {
  for (p++; p < end && *p != '"' && *p != '\n'; p++)
    if (*p == '\\' && p + 1 < end && p[1] != '\n') p++;
  return p < end && *p == '"' ? p + 1 : NULL;
}

static void next(parser *P) {
  while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\r')) P->p++;
  token t = {T_EOF, P->p, 0, P->line, (int)(P->p - P->line_start) + 1};
  const char *p = P->p, *end = P->end, *q = p + 1;
  if (p >= end) {
    P->tok = t;
    return;
  }
  unsigned char c = (unsigned char)*p;
  if (c == '\n') {
    t.kind = T_NEWLINE;
    P->line++;
    P->line_start = q;
  } else if (c == '#') {
    t.kind = T_COMMENT;
    while (q < end && *q != '\n') q++;
  } else if (is_ident_start(c)) {
    t.kind = T_IDENT;
    while (q < end && is_ident_char((unsigned char)*q)) q++;
  } else if (isdigit(c) || ((c == '-' || c == '+') && q < end && (isdigit((unsigned char)*q) || *q == 'i'))) {
    t.kind = T_NUMBER;
    q = scan_number(p, end);
  } else if (c == '"') {
    const char *e = scan_string(p, end);
    t.kind = e ? T_STRING : T_BAD;
    q = e ? e : q;
  } else if (c == '%') {
    t.kind = T_VALUE;
    while (q < end && isdigit((unsigned char)*q)) q++;
  } else if (strchr("=(){}[],:*", c) && c) {
    t.kind = T_PUNCT;
  } else {
    t.kind = T_BAD;
  }
  t.len = (int)(q - p);
  P->p = q;
  P->tok = t;
}

static nnc_loc tok_loc(const parser *P, const token *t) { return (nnc_loc){P->src, t->line, t->col}; }

static bool error_at(parser *P, const token *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool error_at(parser *P, const token *t, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nnc_error(P->d, tok_loc(P, t), "%s", msg);
  return false;
}

/* How a token reads in "expected X, found Y" messages. */
static const char *tok_desc(const token *t, char *buf, size_t cap) {
  switch (t->kind) {
  case T_EOF: return "end of file";
  case T_NEWLINE: return "end of line";
  case T_BAD:
    if (!isprint((unsigned char)t->s[0]))
      snprintf(buf, cap, "byte 0x%02X", (unsigned char)t->s[0]);
    else
      snprintf(buf, cap, "'%.*s'", t->len > 20 ? 20 : t->len, t->s);
    return buf;
  default: snprintf(buf, cap, "'%.*s'", t->len > 40 ? 40 : t->len, t->s); return buf;
  }
}

static bool expected(parser *P, const char *what) {
  char buf[64];
  if (P->tok.kind == T_BAD && P->tok.s[0] == '"') return error_at(P, &P->tok, "unterminated string");
  return error_at(P, &P->tok, "expected %s, found %s", what, tok_desc(&P->tok, buf, sizeof buf));
}

static bool is_punct(const parser *P, char c) { return P->tok.kind == T_PUNCT && P->tok.s[0] == c; }
static bool is_word(const parser *P, const char *w) {
  return P->tok.kind == T_IDENT && (size_t)P->tok.len == strlen(w) && strncmp(P->tok.s, w, (size_t)P->tok.len) == 0;
}

static bool accept_punct(parser *P, char c) {
  if (!is_punct(P, c)) return false;
  next(P);
  return true;
}

static bool expect_punct(parser *P, char c) {
  if (accept_punct(P, c)) return true;
  char what[8] = {'\'', c, '\'', 0};
  return expected(P, what);
}

static bool expect_word(parser *P, const char *w) {
  if (is_word(P, w)) {
    next(P);
    return true;
  }
  char what[32];
  snprintf(what, sizeof what, "'%s'", w);
  return expected(P, what);
}

/* Skips the rest of a line that failed. */
static void skip_line(parser *P) {
  while (P->tok.kind != T_NEWLINE && P->tok.kind != T_EOF) next(P);
  if (P->tok.kind == T_NEWLINE) next(P);
}

/* Skips blank lines and lines holding only a comment. */
static void skip_blank(parser *P) {
  while (P->tok.kind == T_NEWLINE || P->tok.kind == T_COMMENT) next(P);
}

/* --- locations from comments --------------------------------------------------------------- */

static const nnc_source *source_for(parser *P, const char *path, size_t len) {
  for (int i = 0; i < P->nsources; i++)
    if (strlen(P->sources[i]->path) == len && strncmp(P->sources[i]->path, path, len) == 0) return P->sources[i];
  nnc_source *s = nnc_arena_alloc(P->m->arena, sizeof *s);
  s->path = nnc_arena_strndup(P->m->arena, path, len);
  if (P->nsources < MAX_SOURCES) P->sources[P->nsources++] = s;
  return s;
}

/* Reads a positive int from [p, end) exactly. */
static bool read_pos_int(const char *p, const char *end, int *out) {
  if (p >= end || end - p > 9) return false;
  int v = 0;
  for (; p < end; p++) {
    if (!isdigit((unsigned char)*p)) return false;
    v = v * 10 + (*p - '0');
  }
  *out = v;
  return v > 0;
}

/* `# path:line:col` -> a location; other comments give none. */
static nnc_loc comment_loc(parser *P, const token *t) {
  const char *s = t->s + 1, *end = t->s + t->len;
  while (s < end && (*s == ' ' || *s == '\t')) s++;
  while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) end--;
  const char *c2 = end;
  while (c2 > s && c2[-1] != ':') c2--;
  const char *c1 = c2 > s ? c2 - 1 : s;
  while (c1 > s && c1[-1] != ':') c1--;
  nnc_loc loc = {0};
  int line, col;
  if (c1 - 1 <= s || c2 - 1 <= c1 || !read_pos_int(c1, c2 - 1, &line) || !read_pos_int(c2, end, &col)) return loc;
  loc.src = source_for(P, s, (size_t)(c1 - 1 - s));
  loc.line = line;
  loc.col = col;
  return loc;
}

/* The end of a statement: an optional location comment, then the end of the line. */
static bool end_line(parser *P, nnc_loc *loc) {
  nnc_loc none = {0};
  if (P->tok.kind == T_COMMENT) {
    none = comment_loc(P, &P->tok);
    next(P);
  }
  if (loc) *loc = none;
  if (P->tok.kind != T_NEWLINE && P->tok.kind != T_EOF) return expected(P, "end of line");
  if (P->tok.kind == T_NEWLINE) next(P);
  return true;
}

static void add_fix(parser *P, nnc_node *n, int param, nnc_loc loc) {
  if (P->nfixes == P->fixes_cap) {
    P->fixes_cap = P->fixes_cap ? 2 * P->fixes_cap : 64;
    P->fixes = nnc_xrealloc(P->fixes, sizeof *P->fixes * (size_t)P->fixes_cap);
  }
  P->fixes[P->nfixes++] = (loc_fix){n, param, loc};
}

static void apply_fixes(parser *P) {
  for (int i = 0; i < P->nfixes; i++) {
    loc_fix *f = &P->fixes[i];
    if (f->node)
      f->node->loc = f->loc;
    else
      P->m->params[f->param].loc = f->loc;
  }
}

/* --- small things: names, numbers, types --------------------------------------------------- */

static int hex_digit(int c) { return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10; }

/* A name: an identifier (dots allowed) or a quoted string with \" \\ \xHH escapes. */
static bool parse_name(parser *P, const char **out, const char *what) {
  token t = P->tok;
  if (t.kind == T_IDENT) {
    *out = nnc_arena_strndup(P->m->arena, t.s, (size_t)t.len);
    next(P);
    return true;
  }
  if (t.kind != T_STRING) return expected(P, what);
  char *s = nnc_arena_alloc(P->m->arena, (size_t)t.len), *o = s;
  for (const char *p = t.s + 1; p < t.s + t.len - 1; p++) {
    if (*p != '\\') {
      *o++ = *p;
    } else if (p[1] == 'x' && isxdigit((unsigned char)p[2]) && isxdigit((unsigned char)p[3])) {
      int c = hex_digit((unsigned char)p[2]) * 16 + hex_digit((unsigned char)p[3]);
      if (c == 0) return error_at(P, &t, "a name cannot contain \\x00");
      *o++ = (char)c;
      p += 3;
    } else if (p[1] == '"' || p[1] == '\\') {
      *o++ = *++p;
    } else {
      return error_at(P, &t, "unknown escape in string");
    }
  }
  *o = 0;
  if (!s[0]) return error_at(P, &t, "empty name");
  *out = s;
  next(P);
  return true;
}

static bool parse_int(parser *P, int64_t *out) {
  token t = P->tok;
  if (t.kind != T_NUMBER) return expected(P, "an integer");
  char buf[40];
  if (t.len >= (int)sizeof buf) return error_at(P, &t, "integer out of range");
  memcpy(buf, t.s, (size_t)t.len);
  buf[t.len] = 0;
  char *e;
  errno = 0;
  long long v = strtoll(buf, &e, 10);
  if (*e) return error_at(P, &t, "expected an integer, found '%s'", buf);
  if (errno == ERANGE) return error_at(P, &t, "integer out of range");
  *out = v;
  next(P);
  return true;
}

/* A number as printed: decimal, inf, -inf or nan. */
static bool parse_num(parser *P, double *out) {
  token t = P->tok;
  char buf[64];
  if (t.kind == T_IDENT && (is_word(P, "inf") || is_word(P, "nan"))) {
    *out = is_word(P, "inf") ? INFINITY : NAN;
    next(P);
    return true;
  }
  if (t.kind != T_NUMBER) return expected(P, "a number");
  if (t.len >= (int)sizeof buf) return error_at(P, &t, "number too long");
  memcpy(buf, t.s, (size_t)t.len);
  buf[t.len] = 0;
  char *e;
  double v = strtod(buf, &e);
  if (*e || e == buf) return error_at(P, &t, "malformed number '%s'", buf);
  *out = v;
  next(P);
  return true;
}

/* type = dtype "[" [ dim { "," dim } ] "]" ; dim = INT | "B" [ "*" INT ] */
static bool parse_type(parser *P, nnc_type *t) {
  token at = P->tok;
  *t = (nnc_type){.batch_axis = -1};
  char dt[8] = {0};
  if (at.kind != T_IDENT) return expected(P, "a type");
  if (at.len < (int)sizeof dt) memcpy(dt, at.s, (size_t)at.len);
  if (!nnc_dtype_from_name(dt, &t->dtype)) return error_at(P, &at, "unknown dtype '%.*s'", at.len > 20 ? 20 : at.len, at.s);
  next(P);
  if (!expect_punct(P, '[')) return false;
  while (!is_punct(P, ']')) {
    if (t->rank > 0 && !expect_punct(P, ',')) return false;
    if (t->rank == NNC_MAX_RANK) return error_at(P, &P->tok, "more than %d dimensions", NNC_MAX_RANK);
    int64_t v = 1;
    if (is_word(P, "B")) {
      if (t->batch_axis >= 0) return error_at(P, &P->tok, "a second batch dimension");
      next(P);
      if (accept_punct(P, '*') && !parse_int(P, &v)) return false;
      t->batch_axis = t->rank;
    } else if (!parse_int(P, &v)) {
      return false;
    }
    t->dims[t->rank++] = v;
  }
  next(P);
  /* the shape rule of a param node checks dims and element count */
  nnc_node probe = {.op = NNC_OP_param, .name = "t", .type = *t};
  char err[256];
  if (!nnc_infer_type(&probe, err, sizeof err)) {
    const char *msg = strncmp(err, "param: ", 7) == 0 ? err + 7 : err;
    return error_at(P, &at, "bad type: %s", msg);
  }
  return true;
}

/* --- module-level declarations ------------------------------------------------------------- */

/* init = "init" ( "zeros" | "ones" | "const" "(" num ")" | ("uniform" | "normal") "(" num "," num ")" ) */
static bool parse_init(parser *P, nnc_init *init) {
  static const struct { const char *name; nnc_init_kind kind; int nargs; } kinds[] = {
      {"zeros", NNC_INIT_ZEROS, 0}, {"ones", NNC_INIT_ONES, 0}, {"const", NNC_INIT_CONST, 1},
      {"uniform", NNC_INIT_UNIFORM, 2}, {"normal", NNC_INIT_NORMAL, 2}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (!is_word(P, kinds[i].name)) continue;
    next(P);
    init->kind = kinds[i].kind;
    if (kinds[i].nargs == 0) return true;
    if (!expect_punct(P, '(') || !parse_num(P, &init->a)) return false;
    if (kinds[i].nargs == 2 && (!expect_punct(P, ',') || !parse_num(P, &init->b))) return false;
    return expect_punct(P, ')');
  }
  return expected(P, "an initialization (zeros, ones, const, uniform, normal)");
}

/* decl = ("param" | "state") NAME ":" type [ "init" init ] [ "frozen" ] [ "tied" NAME ] */
static bool parse_decl(parser *P) {
  nnc_param p = {.is_state = is_word(P, "state"), .tied_to = -1};
  token at = P->tok;
  next(P);
  const char *tied = NULL;
  token tied_at = {0};
  if (!parse_name(P, &p.name, "a parameter name") || !expect_punct(P, ':') || !parse_type(P, &p.type)) return false;
  if (is_word(P, "init")) {
    next(P);
    if (!parse_init(P, &p.init)) return false;
  }
  if (is_word(P, "frozen")) {
    p.frozen = true;
    next(P);
  }
  if (is_word(P, "tied")) {
    next(P);
    tied_at = P->tok;
    if (!parse_name(P, &tied, "the name of the tied parameter")) return false;
  }
  nnc_loc loc;
  if (!end_line(P, &loc)) return false;
  if (nnc_module_find_param(P->m, p.name) >= 0) {
    error_at(P, &at, "parameter '%s' declared twice", p.name);
    return true; /* the line is consumed */
  }
  p.loc = tok_loc(P, &at);
  int index = nnc_module_add_param(P->m, &p);
  add_fix(P, NULL, index, loc);
  if (tied) {
    if (P->nties == P->ties_cap) {
      P->ties_cap = P->ties_cap ? 2 * P->ties_cap : 8;
      P->ties = nnc_xrealloc(P->ties, sizeof *P->ties * (size_t)P->ties_cap);
    }
    P->ties[P->nties++] = (pending_tie){index, tied, tied_at};
  }
  return true;
}

static void resolve_ties(parser *P) {
  for (int i = 0; i < P->nties; i++) {
    int j = nnc_module_find_param(P->m, P->ties[i].name);
    if (j < 0)
      error_at(P, &P->ties[i].at, "tied to unknown parameter '%s'", P->ties[i].name);
    else
      P->m->params[P->ties[i].param].tied_to = j;
  }
}

/* --- graph statements ---------------------------------------------------------------------- */

/* A %N token's number; false (reported) when malformed. */
static bool value_number(parser *P, int *out) {
  token t = P->tok;
  int64_t v = 0;
  if (t.kind != T_VALUE) return expected(P, "a value (%N)");
  if (t.len < 2 || t.len > 10) return error_at(P, &t, "malformed value '%.*s'", t.len > 12 ? 12 : t.len, t.s);
  for (int i = 1; i < t.len; i++) v = v * 10 + (t.s[i] - '0');
  if (v > INT_MAX - 1) return error_at(P, &t, "value number too large");
  *out = (int)v;
  return true;
}

/* A use of %N: its node index, POISON, or -1 (reported) when undefined. */
static int value_use(parser *P) {
  int num;
  if (!value_number(P, &num)) return -1;
  int idx = nnc_node_map_get(&P->values, (uintptr_t)num + 1);
  if (idx == -1) error_at(P, &P->tok, "undefined value %%%d", num);
  next(P);
  return idx;
}

static const char *const cmp_names[] = {"lt", "le", "gt", "ge", "eq", "ne"};

/* attr value = num (for `value`) | INT | "[" [ INT { "," INT } ] "]" | dtype name | cmp name */
static bool parse_attr_value(parser *P, nnc_attr *a) {
  if (a->key == NNC_ATTR_value) {
    a->has_num = true;
    return parse_num(P, &a->num);
  }
  if (P->tok.kind == T_IDENT) {
    char w[8] = {0};
    if (P->tok.len < (int)sizeof w) memcpy(w, P->tok.s, (size_t)P->tok.len);
    nnc_dtype dt;
    if (a->key == NNC_ATTR_dtype && nnc_dtype_from_name(w, &dt)) {
      a->n = 1, a->ints[0] = dt;
      next(P);
      return true;
    }
    for (int i = 0; a->key == NNC_ATTR_cmp && i <= NNC_CMP_NE; i++)
      if (strcmp(w, cmp_names[i]) == 0) {
        a->n = 1, a->ints[0] = i;
        next(P);
        return true;
      }
    return error_at(P, &P->tok, "bad value for attribute '%s'", nnc_attr_name(a->key));
  }
  if (!accept_punct(P, '[')) {
    a->n = 1;
    return parse_int(P, &a->ints[0]);
  }
  while (!accept_punct(P, ']')) {
    if (a->n > 0 && !expect_punct(P, ',')) return false;
    if (a->n == NNC_MAX_RANK) return error_at(P, &P->tok, "more than %d values in a list", NNC_MAX_RANK);
    if (!parse_int(P, &a->ints[a->n++])) return false;
  }
  return true;
}

/* attrs = "{" attr { "," attr } "}" ; attr = NAME "=" value */
static bool parse_attrs(parser *P, nnc_node *n) {
  while (!accept_punct(P, '}')) {
    if (n->nattrs > 0 && !expect_punct(P, ',')) return false;
    token at = P->tok;
    char w[32] = {0};
    if (at.kind != T_IDENT) return expected(P, "an attribute name");
    if (at.len < (int)sizeof w) memcpy(w, at.s, (size_t)at.len);
    nnc_attr_key k;
    if (!nnc_attr_from_name(w, &k)) return error_at(P, &at, "unknown attribute '%.*s'", at.len > 30 ? 30 : at.len, at.s);
    if (nnc_node_attr(n, k)) return error_at(P, &at, "attribute '%s' given twice", w);
    if (n->nattrs == NNC_MAX_ATTRS) return error_at(P, &at, "more than %d attributes", NNC_MAX_ATTRS);
    next(P);
    nnc_attr *a = &n->attrs[n->nattrs++];
    *a = (nnc_attr){.key = k};
    if (!expect_punct(P, '=') || !parse_attr_value(P, a)) return false;
  }
  return true;
}

static bool has_buffer_name(nnc_op op) {
  return op == NNC_OP_input || op == NNC_OP_param || op == NNC_OP_state || op == NNC_OP_scalar;
}

/* The node of a statement, built on the side until its line has parsed. */
typedef struct node_line {
  nnc_node n;
  nnc_node **inputs;
  bool poisoned;
  token op_at, type_at;
} node_line;

/* inputs = "(" VALUE { "," VALUE } ")" */
static bool parse_inputs(parser *P, node_line *L) {
  if (!accept_punct(P, '(')) return true;
  L->inputs = nnc_xmalloc(sizeof(nnc_node *) * MAX_INPUTS);
  while (!accept_punct(P, ')')) {
    if (L->n.ninputs > 0 && !expect_punct(P, ',')) return false;
    if (L->n.ninputs == MAX_INPUTS) return error_at(P, &P->tok, "more than %d inputs", MAX_INPUTS);
    int idx = value_use(P);
    if (idx == -1) return false;
    if (idx == POISON) L->poisoned = true;
    L->inputs[L->n.ninputs++] = idx >= 0 ? P->g->nodes[idx] : NULL;
  }
  return true;
}

/* node = VALUE "=" OP [ inputs ] [ NAME ] [ attrs ] ":" type */
static bool parse_node_line(parser *P, node_line *L) {
  if (!expect_punct(P, '=')) return false;
  L->op_at = P->tok;
  char w[32] = {0};
  if (P->tok.kind != T_IDENT) return expected(P, "an op");
  if (P->tok.len < (int)sizeof w) memcpy(w, P->tok.s, (size_t)P->tok.len);
  if (!nnc_op_from_name(w, &L->n.op))
    return error_at(P, &P->tok, "unknown op '%.*s'", P->tok.len > 30 ? 30 : P->tok.len, P->tok.s);
  next(P);
  if (!parse_inputs(P, L)) return false;
  if (P->tok.kind == T_STRING || P->tok.kind == T_IDENT) {
    if (!has_buffer_name(L->n.op)) return error_at(P, &P->tok, "%s takes no name", w);
    if (!parse_name(P, &L->n.name, "a name")) return false;
  }
  if (accept_punct(P, '{') && !parse_attrs(P, &L->n)) return false;
  if (!expect_punct(P, ':')) return false;
  L->type_at = P->tok;
  return parse_type(P, &L->n.type);
}

/* Adds a parsed node line to the graph, checked by its shape rule. */
static bool add_node(parser *P, node_line *L, const token *at, nnc_loc comment) {
  nnc_node *n = nnc_node_new(P->g, L->n.op, L->n.ninputs, L->inputs, tok_loc(P, at));
  n->name = L->n.name;
  n->type = L->n.type;
  n->nattrs = L->n.nattrs;
  memcpy(n->attrs, L->n.attrs, sizeof n->attrs);
  add_fix(P, n, -1, comment);
  nnc_node copy = *n;
  char err[512];
  if (!nnc_infer_type(&copy, err, sizeof err)) return error_at(P, &L->op_at, "%s", err);
  if (!nnc_type_equal(&copy.type, &n->type)) {
    char have[200], want[200];
    return error_at(P, &L->type_at, "%s: type %s differs from the shape rule's %s", nnc_ops[n->op].name,
                    nnc_type_str(&n->type, have, sizeof have), nnc_type_str(&copy.type, want, sizeof want));
  }
  return true;
}

static bool parse_node(parser *P) {
  token at = P->tok;
  int num;
  if (!value_number(P, &num)) return false;
  if (nnc_node_map_get(&P->values, (uintptr_t)num + 1) != -1) {
    error_at(P, &at, "value %%%d defined twice", num);
    return false;
  }
  next(P);
  node_line L = {.n = {.type = {.batch_axis = -1}}};
  nnc_loc comment;
  bool parsed = parse_node_line(P, &L) && end_line(P, &comment);
  bool ok = parsed && !L.poisoned && add_node(P, &L, &at, comment);
  free(L.inputs);
  nnc_node_map_put(&P->values, (uintptr_t)num + 1, ok ? P->g->nnodes - 1 : POISON);
  return parsed; /* a line that parsed but failed its check is consumed already */
}

/* output = "output" NAME "=" VALUE [ "minimize" ] ; state = "state" NAME "=" VALUE */
static bool parse_output(parser *P, bool state) {
  token at = P->tok;
  next(P);
  const char *name;
  if (!parse_name(P, &name, "an output name") || !expect_punct(P, '=')) return false;
  int idx = value_use(P);
  if (idx == -1) return false;
  bool minimize = !state && is_word(P, "minimize");
  if (minimize) next(P);
  if (!end_line(P, NULL)) return false;
  if (idx == POISON) return true;
  nnc_node *v = P->g->nodes[idx];
  if (state) {
    nnc_graph_add_state_output(P->g, name, v);
    return true;
  }
  if (minimize && P->g->loss >= 0) {
    error_at(P, &at, "graph '%s' has a second objective", P->g->name);
    return true; /* the line is consumed */
  }
  if (minimize) P->g->loss = P->g->noutputs;
  nnc_graph_add_output(P->g, name, v);
  return true;
}

static bool parse_graph_line(parser *P) {
  if (P->tok.kind == T_VALUE) return parse_node(P);
  if (is_word(P, "output")) return parse_output(P, false);
  if (is_word(P, "state")) return parse_output(P, true);
  return expected(P, "a node (%N = ...), 'output', 'state' or '}'");
}

/* graph = "graph" NAME "{" NL { line NL } "}" NL */
static void parse_graph(parser *P) {
  token at = P->tok;
  next(P);
  const char *name = "?";
  if (!parse_name(P, &name, "a graph name") || !expect_punct(P, '{') || !end_line(P, NULL)) skip_line(P);
  nnc_graph *g = nnc_graph_new(P->m->arena, name);
  bool twice = false;
  for (int i = 0; i < nnc_module_program_count(P->m); i++)
    twice = twice || strcmp(nnc_module_program(P->m, i)->name, name) == 0;
  if (twice)
    error_at(P, &at, "graph '%s' defined twice", name);
  else if (strcmp(name, "forward") == 0)
    P->m->forward = g;
  else
    nnc_module_add_program(P->m, g);
  P->g = g;
  nnc_node_map_free(&P->values);
  nnc_node_map_init(&P->values, 64);
  for (;;) {
    skip_blank(P);
    if (P->tok.kind == T_EOF) {
      error_at(P, &at, "graph '%s' is not closed with '}'", name);
      return;
    }
    if (accept_punct(P, '}')) break;
    if (!parse_graph_line(P)) skip_line(P);
  }
  if (!end_line(P, NULL)) skip_line(P);
}

/* --- the module ---------------------------------------------------------------------------- */

/* header = "module" NAME "batch" INT */
static bool parse_header(parser *P, const char **name, int64_t *batch) {
  if (!expect_word(P, "module")) return false;
  if (!parse_name(P, name, "the module's name")) return false;
  token at = P->tok;
  if (!expect_word(P, "batch") || !parse_int(P, batch)) return false;
  if (*batch < 1 || *batch > NNC_MAX_ELEMENTS) return error_at(P, &at, "batch %lld out of range", (long long)*batch);
  return end_line(P, NULL);
}

static void parse_body(parser *P) {
  for (;;) {
    skip_blank(P);
    if (P->tok.kind == T_EOF) return;
    if (is_word(P, "param") || is_word(P, "state")) {
      if (!parse_decl(P)) skip_line(P);
    } else if (is_word(P, "graph")) {
      parse_graph(P);
    } else {
      expected(P, "'param', 'state' or 'graph'");
      skip_line(P);
    }
  }
}

nnc_module *nnc_parse_module(const nnc_source *src, nnc_diags *d) {
  parser P = {.src = src, .p = src->text, .end = src->text + src->len, .line_start = src->text, .line = 1, .d = d};
  int errors_before = d->nerrors;
  nnc_node_map_init(&P.values, 16);
  /* the header's name is read into a scratch module's arena, then the module is named */
  P.m = nnc_module_new("model");
  next(&P);
  skip_blank(&P);
  const char *name = NULL;
  int64_t batch = 64;
  /* Text that does not start with the header is not IR (binary data, a model file named .ir):
   * one error says so, rather than one per line. */
  bool is_ir = is_word(&P, "module");
  if (parse_header(&P, &name, &batch)) {
    P.m->name = name;
    P.m->batch_max = batch;
  } else {
    skip_line(&P);
  }
  if (is_ir) parse_body(&P);
  resolve_ties(&P);
  bool ok = d->nerrors == errors_before && nnc_verify_module(P.m, d);
  if (ok) apply_fixes(&P);
  nnc_node_map_free(&P.values);
  free(P.fixes);
  free(P.ties);
  if (!ok) {
    nnc_module_free(P.m);
    return NULL;
  }
  return P.m;
}
