/* The C-family printer (codegen/c_family.h). */
#include "codegen/c_family.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void nnc_cf_emit(nnc_cf *cf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(cf->out, fmt, ap);
  va_end(ap);
}

void nnc_cf_line(nnc_cf *cf) { fprintf(cf->out, "%*s", 2 * cf->depth, ""); }

/* --- expressions ---------------------------------------------------------------------------- */

int nnc_cf_prec(const nnc_lexpr *e) {
  if (e->kind != NNC_LE_BIN || e->type.lanes > 1 || (unsigned)e->op >= NNC_LB_COUNT) return 9;
  int p = nnc_lbinops[e->op].prec;
  bool wraps = e->a->type.dtype == NNC_I32 || e->a->type.dtype == NNC_U8; /* through unsigned: a call */
  if (p < 2 || (wraps && e->op <= NNC_LB_MUL)) return 9;                  /* and/or print parenthesized */
  return p;
}

void nnc_cf_expr_prec(nnc_cf *cf, const nnc_lexpr *e, int min) {
  bool paren = nnc_cf_prec(e) < min;
  if (paren) nnc_cf_emit(cf, "(");
  cf->dialect->expr(cf, e);
  if (paren) nnc_cf_emit(cf, ")");
}

void nnc_cf_call(nnc_cf *cf, const char *fn, const nnc_lexpr *a, const nnc_lexpr *b, const nnc_lexpr *c) {
  nnc_cf_emit(cf, "%s(", fn);
  cf->dialect->expr(cf, a);
  if (b) nnc_cf_emit(cf, ", "), cf->dialect->expr(cf, b);
  if (c) nnc_cf_emit(cf, ", "), cf->dialect->expr(cf, c);
  nnc_cf_emit(cf, ")");
}

void nnc_cf_infix(nnc_cf *cf, const nnc_lexpr *e) {
  int p = nnc_cf_prec(e);
  /* f32 + and * do not associate: a + (b + c) keeps its parentheses */
  bool tight_right = e->op == NNC_LB_SUB || e->op == NNC_LB_DIV || p == 2 || e->a->type.dtype == NNC_F32;
  nnc_cf_expr_prec(cf, e->a, p == 2 ? 3 : p);
  nnc_cf_emit(cf, p == 4 ? "%s" : " %s ", nnc_lbinops[e->op].c);
  nnc_cf_expr_prec(cf, e->b, tight_right ? p + 1 : p);
}

void nnc_cf_logic(nnc_cf *cf, const nnc_lexpr *e) {
  bool logical = e->a->type.dtype == NNC_BOOL;
  const char *op = e->op == NNC_LB_AND ? (logical ? "&&" : "&") : (logical ? "||" : "|");
  nnc_cf_emit(cf, "(");
  nnc_cf_expr_prec(cf, e->a, 2), nnc_cf_emit(cf, " %s ", op), nnc_cf_expr_prec(cf, e->b, 2);
  nnc_cf_emit(cf, ")");
}

void nnc_cf_select(nnc_cf *cf, const nnc_lexpr *e) {
  nnc_cf_emit(cf, "(");
  nnc_cf_expr_prec(cf, e->a, 2), nnc_cf_emit(cf, " ? "), nnc_cf_expr_prec(cf, e->b, 2);
  nnc_cf_emit(cf, " : "), nnc_cf_expr_prec(cf, e->c, 2);
  nnc_cf_emit(cf, ")");
}

void nnc_cf_int(nnc_cf *cf, const nnc_lexpr *e) {
  if (e->type.dtype == NNC_BOOL) nnc_cf_emit(cf, "%s", e->ival ? cf->dialect->bool_true : cf->dialect->bool_false);
  else if (e->ival < 0) nnc_cf_emit(cf, "(%lld%s)", (long long)e->ival, e->ival < INT32_MIN ? "LL" : "");
  else nnc_cf_emit(cf, "%lld%s", (long long)e->ival, e->ival > INT32_MAX ? "LL" : "");
}

void nnc_cf_float(nnc_cf *cf, double v) {
  float f = (float)v;
  if (f != f) nnc_cf_emit(cf, "%s", cf->dialect->nan);
  else if (f == (float)INFINITY) nnc_cf_emit(cf, "%s", cf->dialect->inf);
  else if (f == -(float)INFINITY) nnc_cf_emit(cf, "%s", cf->dialect->neg_inf);
  else {
    char buf[48];
    snprintf(buf, sizeof buf, "%.9g", f);
    bool has_point = strpbrk(buf, ".en") != NULL;
    nnc_cf_emit(cf, "%s%s%sf%s", f < 0 ? "(" : "", buf, has_point ? "" : ".0", f < 0 ? ")" : "");
  }
}

/* --- statements ----------------------------------------------------------------------------- */

bool nnc_cf_common_stmt(nnc_cf *cf, const nnc_lstmt *s) {
  switch (s->kind) {
  case NNC_LS_BLOCK:
    for (int i = 0; i < s->nitems; i++) cf->dialect->stmt(cf, s->items[i]);
    return true;
  case NNC_LS_IF: nnc_cf_if(cf, s); return true;
  case NNC_LS_ASSIGN: nnc_cf_assign(cf, s); return true;
  case NNC_LS_COMMENT: nnc_cf_comment(cf, s->text); return true;
  default: return false;
  }
}

void nnc_cf_body(nnc_cf *cf, const nnc_lstmt *s) {
  cf->depth++;
  cf->dialect->stmt(cf, s);
  cf->depth--;
}

void nnc_cf_if(nnc_cf *cf, const nnc_lstmt *s) {
  nnc_cf_line(cf), nnc_cf_emit(cf, "if ("), cf->dialect->expr(cf, s->cond), nnc_cf_emit(cf, ") {\n");
  nnc_cf_body(cf, s->then_s);
  if (s->else_s) nnc_cf_line(cf), nnc_cf_emit(cf, "} else {\n"), nnc_cf_body(cf, s->else_s);
  nnc_cf_line(cf), nnc_cf_emit(cf, "}\n");
}

void nnc_cf_for(nnc_cf *cf, const nnc_lstmt *s) {
  const char *v = cf->vname[s->var->id];
  nnc_cf_line(cf), nnc_cf_emit(cf, "for (%s %s = ", cf->dialect->index_type, v), cf->dialect->expr(cf, s->lo);
  nnc_cf_emit(cf, "; %s < ", v), cf->dialect->expr(cf, s->hi);
  if (s->step == 1) nnc_cf_emit(cf, "; %s++) {\n", v);
  else nnc_cf_emit(cf, "; %s += %lld) {\n", v, (long long)s->step);
  nnc_cf_body(cf, s->body);
  nnc_cf_line(cf), nnc_cf_emit(cf, "}\n");
}

void nnc_cf_assign(nnc_cf *cf, const nnc_lstmt *s) {
  nnc_cf_line(cf), nnc_cf_emit(cf, "%s = ", cf->vname[s->var->id]), cf->dialect->expr(cf, s->value);
  nnc_cf_emit(cf, ";\n");
}

void nnc_cf_comment(nnc_cf *cf, const char *text) {
  const char *t = text ? text : "";
  while (*t) {
    const char *nl = strchr(t, '\n');
    size_t len = nl ? (size_t)(nl - t) : strlen(t);
    nnc_cf_line(cf), nnc_cf_emit(cf, "/* ");
    for (size_t i = 0; i < len; i++) /* a comment cannot close the C comment early */
      nnc_cf_emit(cf, "%c", t[i] == '*' && i + 1 < len && t[i + 1] == '/' ? '+' : t[i]);
    nnc_cf_emit(cf, " */\n");
    t += len + (nl ? 1 : 0);
  }
}

/* --- names ---------------------------------------------------------------------------------- */

static bool is_reserved(const nnc_cf *cf, const char *s) {
  static const char *const c_words[] = {
      "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
      "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
      "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while",
      /* the kernels' own parameters and locals */
      "n", "lr", "step", "seed", "l", NULL};
  for (const char *const *w = c_words; *w; w++)
    if (!strcmp(s, *w)) return true;
  for (const char *const *w = cf->dialect->reserved; w && *w; w++)
    if (!strcmp(s, *w)) return true;
  /* the prelude's names, and what C reserves to the implementation (C++ also any "__") */
  return !strncmp(s, "nnc_", 4) || !strncmp(s, "NNC_", 4) || !strncmp(s, "__", 2) ||
         (cf->dialect->cxx && strstr(s, "__")) || (s[0] == '_' && s[1] >= 'A' && s[1] <= 'Z');
}

char *nnc_cf_name(nnc_cf *cf, const char *name, int id, char **taken, int ntaken) {
  char base[120];
  size_t n = 0;
  for (const char *p = name ? name : ""; *p && n < sizeof base - 1; p++)
    base[n++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ? *p : '_');
  base[n] = 0;
  bool bad_start = n == 0 || (base[0] >= '0' && base[0] <= '9') || is_reserved(cf, base);
  bool clash = bad_start;
  for (int i = 0; i < ntaken && !clash; i++) clash = taken[i] && !strcmp(taken[i], base);
  if (!clash) return nnc_arena_strdup(cf->k->arena, base);
  while (n > 0 && base[n - 1] == '_') base[--n] = 0; /* "x_" + "_3" would make "__" */
  if (n == 0) return nnc_arena_printf(cf->k->arena, "v_%d", id);
  return nnc_arena_printf(cf->k->arena, "%s%s_%d", bad_start ? "v_" : "", base, id);
}

void nnc_cf_name_everything(nnc_cf *cf) {
  const nnc_kernel *k = cf->k;
  char **taken = nnc_xcalloc((size_t)(k->nbufs + k->nvars + 1), sizeof *taken);
  int nt = 0;
  for (int i = 0; i < k->nbufs; i++) {
    cf->bname[i] = nnc_cf_name(cf, k->bufs[i]->name, i, taken, nt);
    taken[nt++] = cf->bname[i];
  }
  for (int v = 0; v < k->nvars; v++) {
    if (!cf->vars[v]) continue;
    const char *name = cf->vars[v]->name;
    bool dup = false; /* two variables of one name: both get their id */
    for (int w = 0; w < k->nvars && !dup; w++) dup = w != v && cf->vars[w] && !strcmp(cf->vars[w]->name, name);
    cf->vname[v] = nnc_cf_name(cf, dup ? nnc_arena_printf(k->arena, "%s_%d", name, v) : name, v, taken, nt);
    taken[nt++] = cf->vname[v];
  }
  free(taken);
}
