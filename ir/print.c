/* The stable text form of the graph IR (docs/ir.md, "Text form"): what `--emit ir` writes and
 * ir/parse.c reads back. Values are renumbered densely in print order; numbers are printed so
 * that they parse back to the same double; source locations become trailing comments. The
 * printer never fails on a malformed graph: what it cannot name it prints as `?`. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "node_map.h"

/* A name prints bare when it is an identifier with dots (conv1.weight), quoted otherwise. */
static bool is_bare_name(const char *s) {
  if (!(isalpha((unsigned char)s[0]) || s[0] == '_')) return false;
  for (const char *p = s; *p; p++)
    if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '.')) return false;
  return true;
}

static void print_quoted(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f)
      fprintf(f, "\\x%02x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static void print_name(FILE *f, const char *s) {
  if (!s)
    fputs("\"\"", f);
  else if (is_bare_name(s))
    fputs(s, f);
  else
    print_quoted(f, s);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double. */
static void print_num(FILE *f, double v) {
  if (isnan(v)) {
    fputs("nan", f);
    return;
  }
  if (isinf(v)) {
    fputs(v < 0 ? "-inf" : "inf", f);
    return;
  }
  char buf[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  fputs(buf, f);
}

static void print_type(FILE *f, const nnc_type *t) {
  char buf[256];
  fputs(nnc_type_str(t, buf, sizeof buf), f);
}

static void print_loc(FILE *f, nnc_loc loc) {
  if (loc.src && loc.src->path) fprintf(f, "  # %s:%d:%d", loc.src->path, loc.line, loc.col);
}

/* --- attributes ---------------------------------------------------------------------------- */

static const char *const cmp_names[] = {"lt", "le", "gt", "ge", "eq", "ne"};

/* Keys that hold one integer print it bare; list keys always print a list. */
static bool is_scalar_key(nnc_attr_key k) {
  switch (k) {
  case NNC_ATTR_axis: case NNC_ATTR_groups: case NNC_ATTR_trans_a: case NNC_ATTR_trans_b:
  case NNC_ATTR_dtype: case NNC_ATTR_cmp: case NNC_ATTR_key:
    return true;
  default:
    return false;
  }
}

static void print_attr_value(FILE *f, const nnc_attr *a) {
  if (a->has_num) {
    print_num(f, a->num);
    return;
  }
  int n = a->n < 0 ? 0 : a->n > NNC_MAX_RANK ? NNC_MAX_RANK : a->n;
  if (n == 1 && is_scalar_key(a->key)) {
    int64_t v = a->ints[0];
    if (a->key == NNC_ATTR_dtype && v >= 0 && v < NNC_DTYPE_COUNT)
      fputs(nnc_dtype_name((nnc_dtype)v), f);
    else if (a->key == NNC_ATTR_cmp && v >= 0 && v <= NNC_CMP_NE)
      fputs(cmp_names[v], f);
    else
      fprintf(f, "%lld", (long long)v);
    return;
  }
  fputc('[', f);
  for (int i = 0; i < n; i++) fprintf(f, "%s%lld", i ? "," : "", (long long)a->ints[i]);
  fputc(']', f);
}

static void print_attrs(FILE *f, const nnc_node *n) {
  int count = n->nattrs < 0 ? 0 : n->nattrs > NNC_MAX_ATTRS ? NNC_MAX_ATTRS : n->nattrs;
  if (count == 0) return;
  fputs(" {", f);
  for (int i = 0; i < count; i++) {
    fprintf(f, "%s%s=", i ? ", " : "", nnc_attr_name(n->attrs[i].key));
    print_attr_value(f, &n->attrs[i]);
  }
  fputc('}', f);
}

/* --- graphs -------------------------------------------------------------------------------- */

static void print_value_ref(FILE *f, const nnc_node_map *num, const nnc_node *v) {
  int i = v ? nnc_node_map_get(num, (uintptr_t)v) : -1;
  if (i < 0)
    fputs("%?", f);
  else
    fprintf(f, "%%%d", i);
}

static bool has_buffer_name(nnc_op op) {
  return op == NNC_OP_input || op == NNC_OP_param || op == NNC_OP_state || op == NNC_OP_scalar;
}

static void print_node(FILE *f, const nnc_node_map *num, const nnc_node *n, int index) {
  fprintf(f, "  %%%d = %s", index, (unsigned)n->op < NNC_OP_COUNT ? nnc_ops[n->op].name : "?");
  if (n->ninputs > 0 && n->inputs) {
    fputc('(', f);
    for (int i = 0; i < n->ninputs; i++) {
      if (i) fputs(", ", f);
      print_value_ref(f, num, n->inputs[i]);
    }
    fputc(')', f);
  }
  if (has_buffer_name(n->op) && n->name) {
    fputc(' ', f);
    print_quoted(f, n->name);
  }
  print_attrs(f, n);
  fputs(" : ", f);
  print_type(f, &n->type);
  print_loc(f, n->loc);
  fputc('\n', f);
}

void nnc_print_graph(FILE *f, const nnc_module *m, const nnc_graph *g) {
  (void)m;
  if (!g) return;
  fputs("graph ", f);
  print_name(f, g->name);
  fputs(" {\n", f);
  nnc_node_map num;
  nnc_node_map_init(&num, g->nnodes > 0 ? (size_t)g->nnodes : 0);
  int index = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const nnc_node *n = g->nodes[i];
    if (!n) continue;
    nnc_node_map_put(&num, (uintptr_t)n, index);
    print_node(f, &num, n, index++);
  }
  for (int i = 0; i < g->noutputs; i++) {
    fputs("  output ", f);
    print_name(f, g->outputs[i].name);
    fputs(" = ", f);
    print_value_ref(f, &num, g->outputs[i].value);
    fputs(i == g->loss ? " minimize\n" : "\n", f);
  }
  for (int i = 0; i < g->nstate; i++) {
    fputs("  state ", f);
    print_name(f, g->state_outputs[i].name);
    fputs(" = ", f);
    print_value_ref(f, &num, g->state_outputs[i].value);
    fputc('\n', f);
  }
  fputs("}\n", f);
  nnc_node_map_free(&num);
}

/* --- modules ------------------------------------------------------------------------------- */

static void print_init(FILE *f, const nnc_init *init) {
  fputs(" init ", f);
  switch (init->kind) {
  case NNC_INIT_ZEROS: fputs("zeros", f); return;
  case NNC_INIT_ONES: fputs("ones", f); return;
  case NNC_INIT_CONST: fputs("const(", f); print_num(f, init->a); fputc(')', f); return;
  case NNC_INIT_UNIFORM: fputs("uniform(", f); break;
  case NNC_INIT_NORMAL: fputs("normal(", f); break;
  default: fputs("?", f); return;
  }
  print_num(f, init->a);
  fputs(", ", f);
  print_num(f, init->b);
  fputc(')', f);
}

static void print_param(FILE *f, const nnc_module *m, const nnc_param *p) {
  fputs(p->is_state ? "state " : "param ", f);
  print_name(f, p->name);
  fputs(" : ", f);
  print_type(f, &p->type);
  print_init(f, &p->init);
  if (p->frozen) fputs(" frozen", f);
  if (p->tied_to >= 0 && p->tied_to < m->nparams) {
    fputs(" tied ", f);
    print_name(f, m->params[p->tied_to].name);
  }
  print_loc(f, p->loc);
  fputc('\n', f);
}

void nnc_print_module(FILE *f, const nnc_module *m) {
  if (!m) return;
  fputs("module ", f);
  print_name(f, m->name);
  fprintf(f, " batch %lld\n", (long long)m->batch_max);
  for (int i = 0; i < m->nparams; i++) print_param(f, m, &m->params[i]);
  int count = nnc_module_program_count(m);
  for (int i = 0; i < count; i++) nnc_print_graph(f, m, nnc_module_program(m, i));
}
