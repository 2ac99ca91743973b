/* Graph IR basics: the op table, types, nodes, graphs, modules. */
#include "ir.h"

#include <stdio.h>
#include <string.h>

const nnc_op_info nnc_ops[NNC_OP_COUNT] = {
#define OP(name, kind, arity, dtypes, loop, lang, compute) {#name, NNC_KIND_##kind, arity, NNC_DTYPES_##dtypes, compute},
#include "ops.def"
#undef OP
};

static const char *const attr_names[NNC_ATTR_COUNT] = {
#define ATTR(name) #name,
#include "attrs.def"
#undef ATTR
};

static const char *const dtype_names[NNC_DTYPE_COUNT] = {"f32", "i32", "u8"};
static const size_t dtype_sizes[NNC_DTYPE_COUNT] = {4, 4, 1};

const char *nnc_dtype_name(nnc_dtype t) { return (unsigned)t < NNC_DTYPE_COUNT ? dtype_names[t] : "?"; }
size_t nnc_dtype_size(nnc_dtype t) { return (unsigned)t < NNC_DTYPE_COUNT ? dtype_sizes[t] : 0; }

/* The range is tested first: converting an infinity, a nan or a huge value to an integer is
 * undefined, so only a value in range is converted to test it for being whole. */
bool nnc_dtype_holds(nnc_dtype t, double v) {
  switch (t) {
  case NNC_F32: return true;
  case NNC_I32: return v >= INT32_MIN && v <= INT32_MAX && v == (double)(int64_t)v;
  case NNC_U8: return v >= 0 && v <= 255 && v == (double)(int64_t)v;
  default: return false;
  }
}

bool nnc_cmp_holds(int64_t how, double a, double b) {
  switch (how) {
  case NNC_CMP_LT: return a < b;
  case NNC_CMP_LE: return a <= b;
  case NNC_CMP_GT: return a > b;
  case NNC_CMP_GE: return a >= b;
  case NNC_CMP_EQ: return a == b;
  default: return a != b;
  }
}

bool nnc_dtype_from_name(const char *s, nnc_dtype *out) {
  for (int i = 0; i < NNC_DTYPE_COUNT; i++)
    if (strcmp(s, dtype_names[i]) == 0) {
      *out = (nnc_dtype)i;
      return true;
    }
  return false;
}

const char *nnc_attr_name(nnc_attr_key k) { return (unsigned)k < NNC_ATTR_COUNT ? attr_names[k] : "?"; }

bool nnc_attr_from_name(const char *s, nnc_attr_key *out) {
  for (int i = 0; i < NNC_ATTR_COUNT; i++)
    if (strcmp(s, attr_names[i]) == 0) {
      *out = (nnc_attr_key)i;
      return true;
    }
  return false;
}

bool nnc_op_from_name(const char *s, nnc_op *out) {
  for (int i = 0; i < NNC_OP_COUNT; i++)
    if (strcmp(s, nnc_ops[i].name) == 0) {
      *out = (nnc_op)i;
      return true;
    }
  return false;
}

/* --- types ------------------------------------------------------------------------------ */

nnc_type nnc_type_make(nnc_dtype dt, int rank, const int64_t *dims, int batch_axis) {
  nnc_type t = {.dtype = dt, .rank = rank, .batch_axis = batch_axis};
  for (int i = 0; i < rank && i < NNC_MAX_RANK; i++) t.dims[i] = dims[i];
  return t;
}

nnc_type nnc_type_scalar(nnc_dtype dt) { return nnc_type_make(dt, 0, NULL, -1); }

bool nnc_shape_equal(const nnc_type *a, const nnc_type *b) {
  if (a->rank != b->rank || a->batch_axis != b->batch_axis) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

bool nnc_type_equal(const nnc_type *a, const nnc_type *b) {
  return a->dtype == b->dtype && nnc_shape_equal(a, b);
}

int64_t nnc_type_elements(const nnc_type *t, int64_t batch) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    int64_t d = t->dims[i];
    if (i == t->batch_axis) {
      if (d != 0 && batch > INT64_MAX / d) return -1;
      d *= batch;
    }
    if (d < 0) return -1;
    if (d != 0 && n > INT64_MAX / d) return -1;
    n *= d;
  }
  return n;
}

char *nnc_type_str(const nnc_type *t, char *buf, size_t cap) {
  size_t len = (size_t)snprintf(buf, cap, "%s[", nnc_dtype_name(t->dtype));
  for (int i = 0; i < t->rank && len < cap; i++) {
    const char *sep = i ? "," : "";
    if (i == t->batch_axis)
      len += (size_t)(t->dims[i] == 1 ? snprintf(buf + len, cap - len, "%sB", sep)
                                      : snprintf(buf + len, cap - len, "%sB*%lld", sep, (long long)t->dims[i]));
    else
      len += (size_t)snprintf(buf + len, cap - len, "%s%lld", sep, (long long)t->dims[i]);
  }
  if (len < cap) snprintf(buf + len, cap - len, "]");
  return buf;
}

/* --- nodes and graphs -------------------------------------------------------------------- */

nnc_module *nnc_module_new(const char *name) {
  nnc_arena *a = nnc_arena_new();
  nnc_module *m = nnc_arena_alloc(a, sizeof *m);
  m->arena = a;
  m->name = nnc_arena_strdup(a, name ? name : "model");
  m->batch_max = 64;
  return m;
}

void nnc_module_free(nnc_module *m) {
  if (m) nnc_arena_free(m->arena);
}

nnc_graph *nnc_graph_new(nnc_arena *a, const char *name) {
  nnc_graph *g = nnc_arena_alloc(a, sizeof *g);
  g->arena = a;
  g->name = nnc_arena_strdup(a, name);
  g->loss = -1;
  return g;
}

nnc_node *nnc_node_new(nnc_graph *g, nnc_op op, int ninputs, nnc_node *const *inputs, nnc_loc loc) {
  if (g->nnodes == g->cap) {
    int cap = g->cap ? g->cap * 2 : 64;
    g->nodes = nnc_arena_realloc(g->arena, g->nodes, sizeof(nnc_node *) * (size_t)g->cap,
                                 sizeof(nnc_node *) * (size_t)cap);
    g->cap = cap;
  }
  nnc_node *n = nnc_arena_alloc(g->arena, sizeof *n);
  n->id = g->nnodes;
  n->op = op;
  n->loc = loc;
  n->type.batch_axis = -1;
  n->ninputs = ninputs;
  if (ninputs > 0) {
    n->inputs = nnc_arena_alloc(g->arena, sizeof(nnc_node *) * (size_t)ninputs);
    if (inputs) memcpy(n->inputs, inputs, sizeof(nnc_node *) * (size_t)ninputs);
  }
  g->nodes[g->nnodes++] = n;
  return n;
}

static nnc_attr *attr_slot(nnc_node *n, nnc_attr_key k) {
  for (int i = 0; i < n->nattrs; i++)
    if (n->attrs[i].key == k) return &n->attrs[i];
  if (n->nattrs == NNC_MAX_ATTRS) return NULL; /* the op table never needs more */
  nnc_attr *a = &n->attrs[n->nattrs++];
  memset(a, 0, sizeof *a);
  a->key = k;
  return a;
}

void nnc_node_set_ints(nnc_node *n, nnc_attr_key k, int count, const int64_t *v) {
  nnc_attr *a = attr_slot(n, k);
  if (!a) return;
  a->n = count < NNC_MAX_RANK ? count : NNC_MAX_RANK;
  for (int i = 0; i < a->n; i++) a->ints[i] = v[i];
}

void nnc_node_set_int(nnc_node *n, nnc_attr_key k, int64_t v) { nnc_node_set_ints(n, k, 1, &v); }

void nnc_node_set_num(nnc_node *n, nnc_attr_key k, double v) {
  nnc_attr *a = attr_slot(n, k);
  if (!a) return;
  a->has_num = true;
  a->num = v;
}

const nnc_attr *nnc_node_attr(const nnc_node *n, nnc_attr_key k) {
  for (int i = 0; i < n->nattrs; i++)
    if (n->attrs[i].key == k) return &n->attrs[i];
  return NULL;
}

int64_t nnc_node_int(const nnc_node *n, nnc_attr_key k, int64_t dflt) {
  const nnc_attr *a = nnc_node_attr(n, k);
  return a && a->n > 0 ? a->ints[0] : dflt;
}

double nnc_node_num(const nnc_node *n, nnc_attr_key k, double dflt) {
  const nnc_attr *a = nnc_node_attr(n, k);
  return a && a->has_num ? a->num : dflt;
}

static void push_output(nnc_arena *a, nnc_output **list, int *n, int *cap, const char *name, nnc_node *v) {
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 8;
    *list = nnc_arena_realloc(a, *list, sizeof(nnc_output) * (size_t)*cap, sizeof(nnc_output) * (size_t)nc);
    *cap = nc;
  }
  (*list)[(*n)++] = (nnc_output){nnc_arena_strdup(a, name), v};
}

void nnc_graph_add_output(nnc_graph *g, const char *name, nnc_node *v) {
  push_output(g->arena, &g->outputs, &g->noutputs, &g->outputs_cap, name, v);
}

void nnc_graph_add_state_output(nnc_graph *g, const char *name, nnc_node *v) {
  push_output(g->arena, &g->state_outputs, &g->nstate, &g->state_cap, name, v);
}

int nnc_module_add_param(nnc_module *m, const nnc_param *p) {
  if (m->nparams == m->params_cap) {
    int cap = m->params_cap ? m->params_cap * 2 : 16;
    m->params = nnc_arena_realloc(m->arena, m->params, sizeof(nnc_param) * (size_t)m->params_cap,
                                  sizeof(nnc_param) * (size_t)cap);
    m->params_cap = cap;
  }
  m->params[m->nparams] = *p;
  m->params[m->nparams].name = nnc_arena_strdup(m->arena, p->name);
  return m->nparams++;
}

int nnc_module_find_param(const nnc_module *m, const char *name) {
  for (int i = 0; i < m->nparams; i++)
    if (strcmp(m->params[i].name, name) == 0) return i;
  return -1;
}
