/* Whole models through the reference interpreter (see model_run.h). */
#include "model_run.h"

#include <stdlib.h>
#include <string.h>

#include "driver/front_end.h"
#include "passes/autodiff.h"
#include "passes/builder.h"

nnc_tensor *mr_find(const mr_buffers *b, const char *name) {
  for (int i = 0; i < b->n; i++)
    if (strcmp(b->names[i], name) == 0) return &b->vals[i];
  return NULL;
}

nnc_tensor *mr_set(mr_buffers *b, const char *name, nnc_tensor t) {
  nnc_tensor *old = mr_find(b, name);
  if (old) {
    nnc_tensor_free(old);
    *old = t;
    return old;
  }
  if (b->n == b->cap) {
    b->cap = b->cap ? 2 * b->cap : 16;
    b->names = nnc_xrealloc(b->names, sizeof *b->names * (size_t)b->cap);
    b->vals = nnc_xrealloc(b->vals, sizeof *b->vals * (size_t)b->cap);
  }
  size_t len = strlen(name) + 1;
  b->names[b->n] = memcpy(nnc_xmalloc(len), name, len);
  b->vals[b->n] = t;
  return &b->vals[b->n++];
}

void mr_set_scalar(mr_buffers *b, const char *name, nnc_dtype dt, double value) {
  nnc_tensor t = nnc_tensor_alloc(nnc_type_scalar(dt), 1, false);
  if (dt == NNC_F32) *(float *)t.data = (float)value;
  else if (dt == NNC_I32) *(int32_t *)t.data = (int32_t)value;
  else *(uint8_t *)t.data = (uint8_t)value;
  mr_set(b, name, t);
}

void mr_free(mr_buffers *b) {
  for (int i = 0; i < b->n; i++) {
    free(b->names[i]);
    nnc_tensor_free(&b->vals[i]);
  }
  free(b->names);
  free(b->vals);
  *b = (mr_buffers){0};
}

bool mr_run(const nnc_module *m, const nnc_graph *g, nnc_interp_precision prec, const mr_buffers *bufs, int64_t n,
            nnc_tensor *outputs, nnc_tensor *state_outputs, char *err, size_t cap) {
  nnc_interp_binding *bind = nnc_xcalloc((size_t)bufs->n + 1, sizeof *bind);
  for (int i = 0; i < bufs->n; i++) bind[i] = (nnc_interp_binding){bufs->names[i], &bufs->vals[i]};
  nnc_interp_env env = {.n = n, .bindings = bind, .nbindings = bufs->n};
  bool ok = nnc_interp_run(m, g, prec, &env, outputs, state_outputs, err, cap);
  free(bind);
  return ok;
}

nnc_options mr_default_options(void) {
  /* as driver/main.c: numbers < 0 and NULL mean "the train block's" */
  return (nnc_options){.mode = NNC_MODE_TRAIN, .lr = -1, .momentum = -1, .weight_decay = -1, .seed = -1,
                       .stop_after = -1};
}

nnc_module *mr_compile(const char *path, const nnc_options *o, bool programs, nnc_source *src, FILE *diag) {
  nnc_diags d;
  nnc_diags_init(&d, diag);
  if (!nnc_source_read(src, path, &d)) return NULL;
  nnc_module *m = nnc_driver_front_end(src, o, programs, &d);
  nnc_pipeline_opts p = {.train = programs, .last = NNC_STAGE_AUTODIFF};
  nnc_compiled *c = m && programs ? nnc_compile(m, &p, &d) : NULL; /* the module keeps train_step */
  if (m && programs && !c) {
    nnc_module_free(m);
    m = NULL;
  }
  nnc_compiled_free(c);
  return m;
}

nnc_compiled *mr_pipeline(nnc_module *m, const nnc_pipeline_opts *o, FILE *diag) {
  nnc_diags d;
  nnc_diags_init(&d, diag);
  return nnc_compile(m, o, &d);
}

/* The param whose buffer a use of param idx trains: the end of its tied_to chain, -1 on a cycle. */
static int tie_root(const nnc_module *m, int idx) {
  for (int hops = 0; hops <= m->nparams; hops++) {
    int next = m->params[idx].tied_to;
    if (next < 0 || next >= m->nparams) return idx;
    idx = next;
  }
  return -1;
}

bool mr_is_trainable(const nnc_module *m, int i) {
  const nnc_param *p = &m->params[i];
  return p->tied_to < 0 && !p->frozen && !p->is_state;
}

/* Param nodes of g that train a param: wrt[] and the root param each one trains. */
static int collect_wrt(const nnc_module *m, const nnc_graph *g, nnc_node **wrt, int *root) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) {
    nnc_node *nd = g->nodes[i];
    if (nd->op != NNC_OP_param || !nd->name) continue;
    int idx = nnc_module_find_param(m, nd->name);
    int r = idx >= 0 ? tie_root(m, idx) : -1;
    if (r < 0 || m->params[idx].frozen || !mr_is_trainable(m, r)) continue;
    wrt[n] = nd;
    root[n++] = r;
  }
  return n;
}

nnc_graph *mr_gradient_graph(nnc_module *m, int *first_grad, nnc_diags *d) {
  nnc_graph *g = nnc_graph_clone(m->arena, m->forward, "gradients");
  if (!g || g->loss < 0) {
    nnc_error(d, (nnc_loc){0}, "model '%s' has no objective to differentiate", m->name);
    return NULL;
  }
  g->nstate = 0;
  nnc_node **wrt = nnc_xcalloc((size_t)g->nnodes + 1, sizeof *wrt), **grads = nnc_xcalloc((size_t)g->nnodes + 1, sizeof *grads);
  int *root = nnc_xcalloc((size_t)g->nnodes + 1, sizeof *root);
  int nwrt = collect_wrt(m, g, wrt, root);
  bool ok = nnc_ad_gradients(g, g->outputs[g->loss].value, nwrt, wrt, grads, d);
  *first_grad = g->noutputs;
  nnc_gb b = nnc_gb_make(g, d);
  for (int p = 0; ok && p < m->nparams; p++) {
    if (!mr_is_trainable(m, p)) continue;
    nnc_node *sum = NULL;
    for (int i = 0; i < nwrt; i++)
      if (root[i] == p) sum = sum ? nnc_gb_binary(&b, NNC_OP_add, sum, grads[i]) : grads[i];
    if (!sum) sum = nnc_gb_const(&b, m->params[p].type, 0);
    nnc_graph_add_output(g, nnc_arena_printf(m->arena, "grad.%s", m->params[p].name), sum);
    ok = !b.failed;
  }
  free(wrt), free(grads), free(root);
  return ok && nnc_verify_graph(g, d) ? g : NULL;
}
