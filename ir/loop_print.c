/* The loop IR's text form (`nnc --emit loops`, docs/loops.md): one kernel as
 *
 *   kernel name(global f32 a[50176] (batch), global f32 w[200704]; n) {
 *     # the graph nodes it implements
 *     parallel for i in 0..n {
 *       for k in 0..784 { acc = fma(a[i*784 + k], w[j*784 + k], acc) }
 *     }
 *   }
 *
 * Expressions print with the usual precedence (products tight, sums spaced); vector loads and
 * stores as buf[index:lanes], masked ones as buf[index:lanes if mask]. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

/* A bounded string builder: text past the capacity is dropped, never overrun. */
typedef struct sb {
  char *buf;
  size_t cap, len;
} sb;

static void put(sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sb *s, const char *fmt, ...) {
  if (s->len + 1 >= s->cap) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
  va_end(ap);
  if (n > 0) s->len = s->len + (size_t)n < s->cap ? s->len + (size_t)n : s->cap - 1;
}

static const char *const scalar_names[NNC_LSC_COUNT] = {"n", "lr", "step", "seed"};
static const char axis_names[3] = {'x', 'y', 'z'};

/* An operator's C precedence; 5 for what prints as a call or a primary. */
static int prec_of(const nnc_lexpr *e) {
  if (e->kind != NNC_LE_BIN || (unsigned)e->op >= NNC_LB_COUNT || !nnc_lbinops[e->op].prec) return 5;
  return nnc_lbinops[e->op].prec;
}

static void expr(sb *s, const nnc_lexpr *e);

static void expr_prec(sb *s, const nnc_lexpr *e, int min) {
  if (e && prec_of(e) < min) {
    put(s, "(");
    expr(s, e);
    put(s, ")");
  } else {
    expr(s, e);
  }
}

static void bin(sb *s, const nnc_lexpr *e) {
  static const char *const infix[] = {[NNC_LB_ADD] = " + ", [NNC_LB_SUB] = " - ", [NNC_LB_MUL] = "*",
                                      [NNC_LB_DIV] = "/",   [NNC_LB_AND] = " and ", [NNC_LB_OR] = " or ",
                                      [NNC_LB_LT] = " < ",  [NNC_LB_LE] = " <= ", [NNC_LB_GT] = " > ",
                                      [NNC_LB_GE] = " >= ", [NNC_LB_EQ] = " == ", [NNC_LB_NE] = " != "};
  int p = prec_of(e);
  if (p == 5) {
    put(s, "%s(", nnc_lbinop_name(e->op));
    expr(s, e->a);
    put(s, ", ");
    expr(s, e->b);
    put(s, ")");
    return;
  }
  /* left-associative: the right operand of - and / needs parentheses at equal precedence */
  bool tight_right = e->op == NNC_LB_SUB || e->op == NNC_LB_DIV || p == 2;
  expr_prec(s, e->a, p == 2 ? 3 : p);
  put(s, "%s", infix[e->op]);
  expr_prec(s, e->b, tight_right ? p + 1 : p);
}

static void load(sb *s, const nnc_lexpr *e) {
  put(s, "%s[", e->buf ? e->buf->name : "?");
  expr(s, e->a);
  if (e->type.lanes > 1) put(s, ":%d", e->type.lanes);
  if (e->b) {
    put(s, " if ");
    expr(s, e->b);
  }
  put(s, "]");
}

static void expr(sb *s, const nnc_lexpr *e) {
  char t[24];
  if (!e) {
    put(s, "<missing>");
    return;
  }
  switch (e->kind) {
  case NNC_LE_INT:
    if (e->type.dtype == NNC_BOOL) put(s, "%s", e->ival ? "true" : "false");
    else put(s, "%lld", (long long)e->ival);
    break;
  case NNC_LE_FLOAT: put(s, "%.9g", e->fval); break;
  case NNC_LE_VAR: put(s, "%s", e->var ? e->var->name : "?"); break;
  case NNC_LE_SCALAR: put(s, "%s", e->scalar >= 0 && e->scalar < NNC_LSC_COUNT ? scalar_names[e->scalar] : "?"); break;
  case NNC_LE_BIN: bin(s, e); break;
  case NNC_LE_UN:
    if (e->op == NNC_LU_NEG || e->op == NNC_LU_NOT) {
      put(s, "%s", e->op == NNC_LU_NEG ? "-" : "!");
      expr_prec(s, e->a, 5);
    } else {
      put(s, "%s(", nnc_lunop_name(e->op));
      expr(s, e->a);
      put(s, ")");
    }
    break;
  case NNC_LE_SELECT:
  case NNC_LE_FMA:
    put(s, "%s(", e->kind == NNC_LE_FMA ? "fma" : "select");
    expr(s, e->a), put(s, ", "), expr(s, e->b), put(s, ", "), expr(s, e->c);
    put(s, ")");
    break;
  case NNC_LE_CAST: put(s, "%s(", nnc_lt_str(e->type, t, sizeof t)), expr(s, e->a), put(s, ")"); break;
  case NNC_LE_LOAD: load(s, e); break;
  case NNC_LE_SPLAT: put(s, "splat%d(", e->type.lanes), expr(s, e->a), put(s, ")"); break;
  case NNC_LE_HREDUCE:
    put(s, "h%s(", e->op == NNC_LB_ADD ? "sum" : e->op == NNC_LB_MAX ? "max" : "min"), expr(s, e->a), put(s, ")");
    break;
  case NNC_LE_LANE: put(s, "lane%d", e->type.lanes); break;
  case NNC_LE_THREAD:
  case NNC_LE_BLOCK:
    put(s, "%s.%c", e->kind == NNC_LE_THREAD ? "thread" : "block", e->axis >= 0 && e->axis < 3 ? axis_names[e->axis] : '?');
    break;
  case NNC_LE_SHUFFLE: put(s, "shuffle_xor("), expr(s, e->a), put(s, ", "), expr(s, e->b), put(s, ")"); break;
  case NNC_LE_RNG:
    put(s, "rng("), expr(s, e->a), put(s, ", key=%lld, ", (long long)e->ival), expr(s, e->b), put(s, ", ");
    expr(s, e->c), put(s, ")");
    break;
  case NNC_LE_POISON: put(s, "<invalid>"); break;
  }
}

const char *nnc_le_str(const nnc_lexpr *e, char *buf, size_t cap) {
  sb s = {buf, cap, 0};
  if (cap) buf[0] = 0;
  expr(&s, e);
  return buf;
}

/* --- statements -------------------------------------------------------------------------------- */

/* Expressions of any length: printed through a growing heap buffer. */
static void print_expr(FILE *f, const nnc_lexpr *e) {
  size_t cap = 256;
  for (;;) {
    char *buf = nnc_xmalloc(cap);
    sb s = {buf, cap, 0};
    buf[0] = 0;
    expr(&s, e);
    if (s.len + 1 < cap || cap >= ((size_t)1 << 24)) {
      fputs(buf, f);
      free(buf);
      return;
    }
    free(buf);
    cap *= 4;
  }
}

static void indent(FILE *f, int depth) { fprintf(f, "%*s", 2 * depth, ""); }

static void access(FILE *f, const nnc_lbuf *b, const nnc_lexpr *index, int lanes, const nnc_lexpr *mask) {
  fprintf(f, "%s[", b ? b->name : "?");
  print_expr(f, index);
  if (lanes > 1) fprintf(f, ":%d", lanes);
  if (mask) fprintf(f, " if "), print_expr(f, mask);
  fprintf(f, "]");
}

static void stmt(FILE *f, const nnc_lstmt *s, int depth);

/* A body of one simple statement stays on the loop's line: `for k in 0..784 { acc = ... }`. */
static bool simple(const nnc_lstmt *s) {
  return s && s->kind != NNC_LS_BLOCK && s->kind != NNC_LS_FOR && s->kind != NNC_LS_IF && s->kind != NNC_LS_COMMENT;
}

static void simple_stmt(FILE *f, const nnc_lstmt *s) {
  char t[24];
  switch (s->kind) {
  case NNC_LS_STORE: access(f, s->buf, s->index, s->value->type.lanes, s->mask), fprintf(f, " = "); break;
  case NNC_LS_ATOMIC_ADD: fprintf(f, "atomic "), access(f, s->buf, s->index, 1, NULL), fprintf(f, " += "); break;
  case NNC_LS_LET: fprintf(f, "let %s: %s = ", s->var->name, nnc_lt_str(s->var->type, t, sizeof t)); break;
  case NNC_LS_ASSIGN: fprintf(f, "%s = ", s->var->name); break;
  case NNC_LS_BARRIER: fprintf(f, "barrier"); return;
  default: return;
  }
  print_expr(f, s->value);
}

static void body(FILE *f, const nnc_lstmt *b, int depth) {
  const nnc_lstmt *only = b && b->kind == NNC_LS_BLOCK && b->nitems == 1 ? b->items[0] : b;
  if (only && simple(only)) {
    fprintf(f, "{ ");
    simple_stmt(f, only);
    fprintf(f, " }\n");
    return;
  }
  fprintf(f, "{\n");
  stmt(f, b, depth + 1);
  indent(f, depth);
  fprintf(f, "}\n");
}

static void for_stmt(FILE *f, const nnc_lstmt *s, int depth) {
  static const char *const kinds[] = {"", "parallel ", "unrolled ", "gpu_block", "gpu_thread"};
  if (s->loop == NNC_LOOP_GPU_BLOCK || s->loop == NNC_LOOP_GPU_THREAD)
    fprintf(f, "%s.%c ", kinds[s->loop], s->axis >= 0 && s->axis < 3 ? axis_names[s->axis] : '?');
  else if ((unsigned)s->loop < 3)
    fprintf(f, "%s", kinds[s->loop]);
  fprintf(f, "for %s in ", s->var->name);
  print_expr(f, s->lo);
  fprintf(f, "..");
  print_expr(f, s->hi);
  if (s->step != 1) fprintf(f, " step %lld", (long long)s->step);
  fprintf(f, " ");
  body(f, s->body, depth);
}

static void stmt(FILE *f, const nnc_lstmt *s, int depth) {
  if (!s) return;
  if (s->kind == NNC_LS_BLOCK) {
    for (int i = 0; i < s->nitems; i++) stmt(f, s->items[i], depth);
    return;
  }
  indent(f, depth);
  switch (s->kind) {
  case NNC_LS_FOR: for_stmt(f, s, depth); break;
  case NNC_LS_IF:
    fprintf(f, "if ");
    print_expr(f, s->cond);
    fprintf(f, " ");
    if (!s->else_s) {
      body(f, s->then_s, depth);
      break;
    }
    fprintf(f, "{\n");
    stmt(f, s->then_s, depth + 1);
    indent(f, depth);
    fprintf(f, "} else ");
    body(f, s->else_s, depth);
    break;
  case NNC_LS_COMMENT: {
    const char *t = s->text ? s->text : "";
    for (const char *nl; (nl = strchr(t, '\n')); t = nl + 1) { /* one # per line */
      fprintf(f, "# %.*s\n", (int)(nl - t), t);
      indent(f, depth);
    }
    fprintf(f, "# %s\n", t);
    break;
  }
  default:
    simple_stmt(f, s);
    fprintf(f, "\n");
    break;
  }
}

/* The scalar parameters a body reads (the kernel need not be finished to be printed). */
typedef struct scalars_walk {
  nnc_lwalk w;
  bool used[NNC_LSC_COUNT];
} scalars_walk;

static void note_scalar(nnc_lwalk *w, const nnc_lexpr *e) {
  if (e->kind == NNC_LE_SCALAR && e->scalar >= 0 && e->scalar < NNC_LSC_COUNT) ((scalars_walk *)w)->used[e->scalar] = true;
}

void nnc_lk_print(FILE *f, const nnc_kernel *k) {
  static const char *const scopes[] = {"global", "shared", "local", "scratch"};
  fprintf(f, "%skernel %s(", k->gpu ? "gpu " : "", k->name);
  int nglobal = 0;
  for (int i = 0; i < k->nbufs; i++) {
    const nnc_lbuf *b = k->bufs[i];
    if (b->scope != NNC_SCOPE_GLOBAL) continue;
    fprintf(f, "%sglobal %s %s[%lld]%s", nglobal++ ? ", " : "", nnc_dtype_name(b->dtype), b->name, (long long)b->size,
            b->batch_scaled ? " (batch)" : "");
  }
  scalars_walk sw = {{.expr = note_scalar}, {0}};
  nnc_lwalk_stmt(&sw.w, k->body);
  const char *sep = "; ";
  for (int i = 0; i < NNC_LSC_COUNT; i++)
    if (sw.used[i]) fprintf(f, "%s%s", sep, scalar_names[i]), sep = ", ";
  fprintf(f, ")");
  if (k->gpu)
    fprintf(f, " block(%lld, %lld, %lld)", (long long)k->block_dim[0], (long long)k->block_dim[1],
            (long long)k->block_dim[2]);
  fprintf(f, " {\n");
  if (k->comment) {
    nnc_lstmt c = {.kind = NNC_LS_COMMENT, .text = k->comment};
    stmt(f, &c, 1);
  }
  for (int i = 0; i < k->nbufs; i++) {
    const nnc_lbuf *b = k->bufs[i];
    if (b->scope != NNC_SCOPE_GLOBAL && (unsigned)b->scope < 4)
    {
      char t[24];
      fprintf(f, "  %s %s %s[%lld]\n", scopes[b->scope], nnc_lt_str(nnc_lt(b->dtype, 1), t, sizeof t), b->name,
              (long long)b->size);
    }
  }
  stmt(f, k->body, 1);
  fprintf(f, "}\n");
}
