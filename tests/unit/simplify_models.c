/* simplify_models: every model's programs (train_step, eval_step, predict), before and after
 * `simplify` (passes/simplify.h), through the reference interpreter in f32 at a small batch:
 * every output and state output agrees (rtol 1e-6, atol scaled to the tensor). Each simplified
 * program verifies and its fusion plan covers every computed node exactly once. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "ir/compare.h"
#include "model_run.h"
#include "passes/fusion.h"
#include "passes/simplify.h"

enum { BATCH = 4, N = 3 };

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static double uniform01(void) {
  rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static void fill(const nnc_module *m, mr_buffers *bufs) {
  for (int i = 0; i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    if (p->tied_to >= 0) continue;
    nnc_tensor t = nnc_tensor_alloc(p->type, 1, false);
    nnc_param_init_values(p, 1, i, t.data, nnc_tensor_elements(&t));
    if (p->is_state && p->type.dtype == NNC_F32) /* moments and running stats away from zero */
      for (int64_t k = 0; k < nnc_tensor_elements(&t); k++) ((float *)t.data)[k] += (float)(0.01 + 0.1 * uniform01());
    mr_set(bufs, p->name, t);
  }
  for (int i = 0; i < m->forward->nnodes; i++) {
    const nnc_node *nd = m->forward->nodes[i];
    if (nd->op != NNC_OP_input) continue;
    nnc_tensor t = nnc_tensor_alloc(nd->type, N, false);
    for (int64_t k = 0; k < nnc_tensor_elements(&t); k++) {
      if (nd->type.dtype == NNC_U8) ((uint8_t *)t.data)[k] = (uint8_t)(uniform01() * 256);
      else if (nd->type.dtype == NNC_I32) ((int32_t *)t.data)[k] = (int32_t)(uniform01() * 10);
      else ((float *)t.data)[k] = (float)(strcmp(nd->name, "y") == 0 ? uniform01() : 2 * uniform01() - 1);
    }
    mr_set(bufs, nd->name, t);
  }
  mr_set_scalar(bufs, "seed", NNC_I32, 7);
  mr_set_scalar(bufs, "step", NNC_I32, 3);
  mr_set_scalar(bufs, "lr", NNC_F32, 0.01);
}

static double max_abs(const nnc_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < nnc_tensor_elements(t); i++) m = fmax(m, fabs(nnc_tensor_get(t, i)));
  return m;
}

static void compare(const char *what, const char *name, nnc_tensor *got, nnc_tensor *ref) {
  double rtol = 1e-6, atol = rtol * fmax(max_abs(ref), 1e-3);
  nnc_compare_result r = nnc_compare_tensors(got, ref, atol, rtol);
  char msg[512];
  CHECK_MSG(r.ok, "%s %s: %s", what, name, nnc_compare_str(&r, ref->type.dims, ref->type.rank, msg, sizeof msg));
}

/* Every needed non-source node is in one group or inlined; no group is empty. */
static void check_plan(const char *what, const nnc_graph *g) {
  nnc_arena *a = nnc_arena_new();
  nnc_fusion_plan *p = nnc_fuse_program(a, g);
  int members = 0;
  for (int k = 0; k < p->ngroups; k++) {
    CHECK_MSG(p->groups[k].nmembers > 0, "%s: kernel %d is empty", what, k);
    members += p->groups[k].nmembers;
    for (int i = 0; i < p->groups[k].nmembers; i++) {
      int pos = -1;
      for (int q = 0; q < g->nnodes; q++)
        if (g->nodes[q] == p->groups[k].members[i]) pos = q;
      CHECK_MSG(pos >= 0 && p->group_of[pos] == k, "%s: kernel %d member not mapped back", what, k);
    }
  }
  CHECK_MSG(members <= nnc_fuse_unfused_kernels(g) + g->nnodes, "%s: members counted twice", what);
  CHECK_MSG(p->ngroups <= nnc_fuse_unfused_kernels(g), "%s: more kernels fused than unfused", what);
  nnc_arena_free(a);
}

static void check_program(nnc_module *m, const nnc_graph *g, mr_buffers *bufs) {
  nnc_graph *s = nnc_simplify_graph(m->arena, g);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  CHECK_MSG(nnc_verify_graph(s, &d), "%s %s: the simplified graph does not verify", m->name, g->name);
  CHECK_MSG(s->nnodes <= g->nnodes, "%s %s: simplify grew the graph", m->name, g->name);
  nnc_tensor o1[16] = {0}, o2[16] = {0}, s1[64] = {0}, s2[64] = {0};
  char err[512], what[128];
  if (g->noutputs > 16 || g->nstate > 64) return;
  snprintf(what, sizeof what, "%s %s", m->name, g->name);
  bool ok1 = mr_run(m, g, NNC_INTERP_F32, bufs, N, o1, s1, err, sizeof err);
  CHECK_MSG(ok1, "%s: %s", what, err);
  bool ok2 = ok1 && mr_run(m, s, NNC_INTERP_F32, bufs, N, o2, s2, err, sizeof err);
  CHECK_MSG(!ok1 || ok2, "%s simplified: %s", what, err);
  if (ok1 && ok2) {
    for (int i = 0; i < g->noutputs; i++) compare(what, g->outputs[i].name, &o2[i], &o1[i]);
    for (int i = 0; i < g->nstate; i++) compare(what, g->state_outputs[i].name, &s2[i], &s1[i]);
  }
  for (int i = 0; ok1 && i < g->noutputs; i++) nnc_tensor_free(&o1[i]);
  for (int i = 0; ok1 && i < g->nstate; i++) nnc_tensor_free(&s1[i]);
  for (int i = 0; ok2 && i < g->noutputs; i++) nnc_tensor_free(&o2[i]);
  for (int i = 0; ok2 && i < g->nstate; i++) nnc_tensor_free(&s2[i]);
  check_plan(what, s);
}

static void check_model(const char *model) {
  char path[256];
  snprintf(path, sizeof path, "models/%s.nn", model);
  nnc_options o = mr_default_options();
  o.batch = BATCH;
  nnc_source src;
  nnc_module *m = mr_compile(path, &o, true, &src, stderr);
  CHECK_MSG(m != NULL, "%s does not compile", path);
  if (!m) return;
  mr_buffers bufs = {0};
  fill(m, &bufs);
  for (int i = 0; i < m->nprograms; i++) check_program(m, m->programs[i], &bufs);
  mr_free(&bufs);
  nnc_module_free(m);
  nnc_source_free(&src);
}

int main(void) {
  static const char *const models[] = {"xor_mlp", "fashion_mlp", "mnist_conv", "lenet", "fashion_cnn",
                                       "fashion_bn_cnn", "cifar_cnn", "char_rnn", "char_lstm", "tiny_gpt"};
  for (size_t i = 0; i < sizeof models / sizeof *models; i++) check_model(models[i]);
  return check_summary();
}
