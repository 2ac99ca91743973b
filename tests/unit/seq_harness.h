/* A model's loss and its gradients through the reference interpreter, for the layer tests
 * (gradcheck_layers, and tests/torch/layer_run.c for PyTorch parity): elaborate a model text,
 * append the backward pass of its objective with respect to every parameter and every f32
 * input, and run the result on named host tensors. Header-only: each test includes it once. */
#ifndef NNC_TESTS_SEQ_HARNESS_H
#define NNC_TESTS_SEQ_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/autodiff.h"

#define SH_MAX 256

typedef struct sh_model {
  nnc_source src;
  nnc_arena *ast_arena;
  nnc_module *m;
  nnc_graph *g;                   /* forward + backward */
  int nwrt;                       /* params and f32 inputs differentiated */
  nnc_node *wrt[SH_MAX];
  int first_grad;                 /* outputs[first_grad + i]: "grad.<name of wrt[i]>" */
  int nbind;                      /* values bound at run: params and inputs, in graph order */
  nnc_node *bind[SH_MAX];
  nnc_tensor val[SH_MAX];
} sh_model;

/* Elaborates text (mode, batch B_max, overrides "k=v"); false after printing diagnostics. */
static bool sh_compile(sh_model *s, const char *path, const char *text, nnc_mode mode, int64_t batch,
                       char **sets, int nsets) {
  memset(s, 0, sizeof *s);
  s->src = (nnc_source){.path = path, .text = text, .len = strlen(text)};
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  static nnc_override ov[32];
  for (int i = 0; i < nsets && i < 32; i++) {
    char *eq = strchr(sets[i], '=');
    if (!eq) return false;
    *eq = 0;
    ov[i] = (nnc_override){.name = sets[i], .value = eq + 1};
  }
  nnc_elab_opts o = {.mode = mode, .overrides = ov, .noverrides = nsets, .batch = batch};
  s->ast_arena = nnc_arena_new();
  nnc_ast *ast = nnc_parse_source(s->ast_arena, &s->src, &d);
  s->m = ast && d.nerrors == 0 ? nnc_elaborate(ast, &o, &d) : NULL;
  if (!s->m) return false;
  s->g = s->m->forward;
  if (s->g->loss < 0) {
    fprintf(stderr, "%s: the model has no objective\n", path);
    return false;
  }
  for (int i = 0; i < s->g->nnodes; i++) {
    nnc_node *n = s->g->nodes[i];
    bool src = n->op == NNC_OP_param || n->op == NNC_OP_state || n->op == NNC_OP_input;
    if (!src || s->nbind == SH_MAX) continue;
    s->bind[s->nbind++] = n;
    if (n->op != NNC_OP_state && n->type.dtype == NNC_F32) s->wrt[s->nwrt++] = n;
  }
  nnc_node *grads[SH_MAX];
  if (!nnc_ad_gradients(s->g, s->g->outputs[s->g->loss].value, s->nwrt, s->wrt, grads, &d)) return false;
  s->first_grad = s->g->noutputs;
  for (int i = 0; i < s->nwrt; i++)
    nnc_graph_add_output(s->g, nnc_arena_printf(s->m->arena, "grad.%s", s->wrt[i]->name), grads[i]);
  s->g->nstate = 0; /* running stats are not compared */
  return true;
}

/* Runs the graph at batch n over the bound values; outs gets g->noutputs tensors. */
static bool sh_run(sh_model *s, int64_t n, nnc_interp_precision prec, nnc_tensor *outs) {
  nnc_interp_binding b[SH_MAX + 2];
  int nb = 0;
  for (int i = 0; i < s->nbind; i++) b[nb++] = (nnc_interp_binding){s->bind[i]->name, &s->val[i]};
  static nnc_tensor seed, step;
  seed = nnc_tensor_alloc(nnc_type_scalar(NNC_I32), 1, false);
  step = nnc_tensor_alloc(nnc_type_scalar(NNC_I32), 1, false);
  b[nb++] = (nnc_interp_binding){"seed", &seed};
  b[nb++] = (nnc_interp_binding){"step", &step};
  nnc_interp_env env = {.n = n, .bindings = b, .nbindings = nb};
  char err[512];
  bool ok = nnc_interp_run(s->m, s->g, prec, &env, outs, NULL, err, sizeof err);
  if (!ok) fprintf(stderr, "interpreter: %s\n", err);
  nnc_tensor_free(&seed);
  nnc_tensor_free(&step);
  return ok;
}

static void sh_free(sh_model *s) {
  for (int i = 0; i < s->nbind; i++) nnc_tensor_free(&s->val[i]);
  if (s->m) nnc_module_free(s->m);
  if (s->ast_arena) nnc_arena_free(s->ast_arena);
}

#endif
