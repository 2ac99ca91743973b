/* The optimizer updates of passes/optim.c, run for a few steps through the interpreter in f32,
 * against the same PyTorch 1.13 formulas written plainly here (float arithmetic, bias
 * corrections in double as PyTorch's Python code computes them). */
#include <math.h>
#include <string.h>

#include "check.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/optim.h"

#define NP 2
#define STEPS 6
static const int64_t sizes[NP] = {5, 6};
static nnc_diags diags;
static uint64_t rng_state = 88172645463325252u;

static float uniform(float lo, float hi) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return lo + (hi - lo) * (float)((double)(rng_state >> 11) / 9007199254740992.0);
}

/* --- the reference ----------------------------------------------------------------------- */

typedef struct ref {
  float p[NP][8], m[NP][8], v[NP][8], buf[NP][8];
} ref;

static void ref_clip(float g[NP][8], double max_norm) {
  float sumsq = 0;
  for (int i = 0; i < NP; i++) {
    float s = 0;
    for (int j = 0; j < sizes[i]; j++) s += g[i][j] * g[i][j];
    float norm = sqrtf(s);
    sumsq += norm * norm;
  }
  float coef = (float)max_norm / (sqrtf(sumsq) + 1e-6f);
  if (coef > 1) coef = 1;
  for (int i = 0; i < NP; i++)
    for (int j = 0; j < sizes[i]; j++) g[i][j] *= coef;
}

static void ref_step(ref *r, const nnc_train_cfg *c, float g[NP][8], float lr, int step) {
  if (c->clip_grad_norm > 0) ref_clip(g, c->clip_grad_norm);
  bool sgd = strcmp(c->optimizer, "SGD") == 0, adamw = strcmp(c->optimizer, "AdamW") == 0;
  double t = step + 1;
  double bc1 = 1 - pow(c->beta1, t), bc2 = 1 - pow(c->beta2, t);
  float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  for (int i = 0; i < NP; i++)
    for (int j = 0; j < sizes[i]; j++) {
      float *p = &r->p[i][j], d = g[i][j];
      if (sgd) {
        if (c->weight_decay != 0) d = d + (float)c->weight_decay * *p;
        if (c->momentum != 0) {
          float *b = &r->buf[i][j];
          *b = step == 0 ? d : *b * (float)c->momentum + (float)(1 - c->dampening) * d;
          d = c->nesterov ? d + (float)c->momentum * *b : *b;
        }
        *p = *p - lr * d;
        continue;
      }
      if (adamw) *p = *p * (1 - lr * (float)c->weight_decay);
      else if (c->weight_decay != 0) d = d + (float)c->weight_decay * *p;
      float *m = &r->m[i][j], *v = &r->v[i][j];
      *m = *m * (float)c->beta1 + (float)(1 - c->beta1) * d;
      *v = *v * (float)c->beta2 + (float)(1 - c->beta2) * d * d;
      float denom = sqrtf(*v) / bc2_sqrt + (float)c->eps;
      *p = *p - (step_size * *m) / denom;
    }
}

/* --- the graph ----------------------------------------------------------------------------- */

typedef struct buffers {
  const char *names[16];
  nnc_tensor vals[16];
  int n;
} buffers;

static nnc_tensor *buffer(buffers *b, const char *name, nnc_type t) {
  for (int i = 0; i < b->n; i++)
    if (strcmp(b->names[i], name) == 0) return &b->vals[i];
  b->names[b->n] = name;
  b->vals[b->n] = nnc_tensor_alloc(t, 1, false);
  return &b->vals[b->n++];
}

static void set_scalar(buffers *b, const char *name, nnc_dtype dt, double x) {
  nnc_tensor *t = buffer(b, name, nnc_type_scalar(dt));
  if (dt == NNC_F32) *(float *)t->data = (float)x;
  else *(int32_t *)t->data = (int32_t)x;
}

static void run_case_from(const char *what, nnc_train_cfg cfg, int first) {
  nnc_module *m = nnc_module_new("opt");
  nnc_graph *g = nnc_graph_new(m->arena, "train_step");
  nnc_optim_target targets[NP];
  ref r = {0};
  buffers bufs = {0};
  for (int i = 0; i < NP; i++) {
    nnc_type t = nnc_type_make(NNC_F32, 1, &sizes[i], -1);
    const char *pname = nnc_arena_printf(m->arena, "p%d", i), *gname = nnc_arena_printf(m->arena, "g%d", i);
    nnc_param p = {.name = pname, .type = t, .tied_to = -1};
    nnc_module_add_param(m, &p);
    nnc_node *pn = nnc_node_new(g, NNC_OP_param, 0, NULL, (nnc_loc){0});
    nnc_node *gn = nnc_node_new(g, NNC_OP_input, 0, NULL, (nnc_loc){0});
    pn->name = pname, pn->type = t, gn->name = gname, gn->type = t;
    targets[i] = (nnc_optim_target){pname, pn, gn};
    nnc_tensor *pv = buffer(&bufs, pname, t);
    for (int j = 0; j < sizes[i]; j++) r.p[i][j] = ((float *)pv->data)[j] = uniform(-1, 1);
  }
  CHECK(nnc_optim_update(m, g, &cfg, NP, targets, &diags));
  CHECK(nnc_verify_graph(g, &diags));
  for (int i = 0; i < m->nparams; i++)
    if (m->params[i].is_state) buffer(&bufs, m->params[i].name, m->params[i].type); /* zeros */
  float worst = 0;
  for (int step = first; step < first + STEPS; step++) {
    float grads[NP][8] = {{0}}, lr = 0.05f * (float)(step + 1);
    for (int i = 0; i < NP; i++) {
      nnc_tensor *gv = buffer(&bufs, targets[i].grad->name, targets[i].grad->type);
      for (int j = 0; j < sizes[i]; j++) grads[i][j] = ((float *)gv->data)[j] = uniform(-2, 2);
    }
    set_scalar(&bufs, "lr", NNC_F32, lr);
    set_scalar(&bufs, "step", NNC_I32, step);
    nnc_interp_binding bind[16];
    for (int i = 0; i < bufs.n; i++) bind[i] = (nnc_interp_binding){bufs.names[i], &bufs.vals[i]};
    nnc_interp_env env = {.n = 1, .bindings = bind, .nbindings = bufs.n};
    nnc_tensor out[16];
    char err[256];
    if (!nnc_interp_run(m, g, NNC_INTERP_F32, &env, NULL, out, err, sizeof err)) {
      CHECK_MSG(false, "%s: %s", what, err);
      break;
    }
    ref_step(&r, &cfg, grads, lr, step);
    for (int i = 0; i < g->nstate; i++) {
      nnc_tensor *dst = buffer(&bufs, g->state_outputs[i].name, out[i].type);
      nnc_tensor_free(dst);
      *dst = out[i];
    }
    for (int i = 0; i < NP; i++)
      for (int j = 0; j < sizes[i]; j++) {
        float got = ((float *)buffer(&bufs, targets[i].name, targets[i].param->type)->data)[j], want = r.p[i][j];
        float err_ = fabsf(got - want) / (1e-6f + fabsf(want));
        if (err_ > worst) worst = err_;
      }
  }
  printf("%-28s worst relative difference over %d steps: %.3g\n", what, STEPS, worst);
  CHECK_MSG(worst <= 5e-6f, "%s", what);
  for (int i = 0; i < bufs.n; i++) nnc_tensor_free(&bufs.vals[i]);
  nnc_module_free(m);
}

static void run_case(const char *what, nnc_train_cfg cfg) { run_case_from(what, cfg, 0); }

static nnc_train_cfg cfg_of(const char *opt) {
  nnc_train_cfg c = {.present = true};
  nnc_optim_defaults(&c, opt);
  return c;
}

int main(void) {
  nnc_diags_init(&diags, stderr);
  run_case("SGD", cfg_of("SGD"));
  nnc_train_cfg c = cfg_of("SGD");
  c.momentum = 0.9, c.dampening = 0.1, c.weight_decay = 1e-2;
  run_case("SGD momentum dampening wd", c);
  c = cfg_of("SGD");
  c.momentum = 0.8, c.nesterov = true;
  run_case("SGD nesterov", c);
  run_case("Adam", cfg_of("Adam"));
  c = cfg_of("Adam");
  c.weight_decay = 0.1, c.beta1 = 0.8, c.beta2 = 0.99, c.eps = 1e-3;
  run_case("Adam wd", c);
  run_case("AdamW", cfg_of("AdamW"));
  run_case_from("Adam from step 1000", cfg_of("Adam"), 1000);
  c = cfg_of("SGD");
  c.momentum = 0.9;
  run_case_from("SGD momentum from step 50", c, 50); /* the buffer starts at zeros, not d_p */
  c = cfg_of("Adam");
  c.clip_grad_norm = 0.5;
  run_case("Adam clip_grad_norm", c);
  c = cfg_of("SGD");
  c.clip_grad_norm = 100; /* coef clamped to 1 */
  run_case("SGD clip_grad_norm (no-op)", c);
  return check_summary();
}
