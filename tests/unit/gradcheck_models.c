/* gradcheck_models: for every model in models/, the f64 gradient of the loss with respect to all
 * trainable params, along a random direction v, against the central difference
 * (L(p + h v) - L(p - h v)) / 2h, everything through the reference interpreter in f64.
 *
 * The loss is piecewise smooth (ReLU, max-pool): a difference whose interval crosses a kink
 * does not measure the derivative. Such a crossing shows as a difference that changes with the
 * step size, so each check computes it at h and h/2; when they disagree the direction is
 * redrawn (up to MAX_REDRAWS times). v is scaled per param by the param's RMS, so h is a relative
 * step. Small batches (n = 2) keep the run short; models with dropout run with their mask
 * (seed and step are fixed, so the mask is too). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model_run.h"

#define NDIRS 3       /* directions checked per model */
#define MAX_REDRAWS 6
#define STEP 1e-6
#define RTOL 1e-7      /* analytic vs numeric, relative to sum |g_i v_i| */
#define KINK_RTOL 1e-8 /* D(h) vs D(h/2): a larger gap means a kink was crossed */

/* splitmix64: a small deterministic generator, independent of the library's RNG. */
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static double uniform01(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1p-53;
}
static double uniform(double a, double b) { return a + (b - a) * uniform01(); }
static double normal(void) { return sqrt(-2 * log(1 - uniform01())) * cos(6.283185307179586 * uniform01()); }

/* A param's starting value: its init, with ones/zeros/consts jittered so that BatchNorm's affine
 * params are not at a special point. */
static double init_value(const nnc_init *in) {
  switch (in->kind) {
  case NNC_INIT_UNIFORM: return uniform(in->a, in->b);
  case NNC_INIT_NORMAL: return in->a + in->b * normal();
  case NNC_INIT_ONES: return 1 + uniform(-0.2, 0.2);
  case NNC_INIT_CONST: return in->a + uniform(-0.1, 0.1);
  default: return uniform(-0.1, 0.1);
  }
}

static void fill_params(const nnc_module *m, mr_buffers *bufs) {
  for (int i = 0; i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    if (p->tied_to >= 0) continue;
    nnc_tensor t = nnc_tensor_alloc(p->type, 1, true);
    int64_t count = nnc_tensor_elements(&t);
    for (int64_t k = 0; k < count && !p->is_state; k++) {
      double v = init_value(&p->init);
      if (p->type.dtype == NNC_F32) ((double *)t.data)[k] = v;
    }
    if (p->is_state && p->init.kind == NNC_INIT_ONES && p->type.dtype == NNC_F32)
      for (int64_t k = 0; k < count; k++) ((double *)t.data)[k] = 1;
    mr_set(bufs, p->name, t);
  }
}

/* Random inputs: bytes for u8 images, labels in [0, 10) for i32, [0, 1) for f32 targets named y,
 * [-1, 1) for other f32 inputs. */
static void fill_inputs(const nnc_module *m, mr_buffers *bufs, int64_t n) {
  for (int i = 0; i < m->forward->nnodes; i++) {
    const nnc_node *nd = m->forward->nodes[i];
    if (nd->op != NNC_OP_input) continue;
    nnc_tensor t = nnc_tensor_alloc(nd->type, n, false);
    int64_t count = nnc_tensor_elements(&t);
    for (int64_t k = 0; k < count; k++) {
      if (nd->type.dtype == NNC_U8) ((uint8_t *)t.data)[k] = (uint8_t)(uniform01() * 256);
      else if (nd->type.dtype == NNC_I32) ((int32_t *)t.data)[k] = (int32_t)(uniform01() * 10);
      else ((float *)t.data)[k] = (float)(strcmp(nd->name, "y") == 0 ? uniform01() : uniform(-1, 1));
    }
    mr_set(bufs, nd->name, t);
  }
}

typedef struct model_check {
  const nnc_module *m;
  const nnc_graph *loss_graph;
  mr_buffers *bufs;
  int64_t n;
  double *base;        /* the trainable params' values, concatenated */
  double *dir;         /* v, same layout */
  double *grad;        /* the analytic gradient, same layout */
  int64_t total;
} model_check;

/* Sets every trainable param to base + t * dir. */
static void move_params(model_check *c, double t) {
  int64_t off = 0;
  for (int i = 0; i < c->m->nparams; i++) {
    if (!mr_is_trainable(c->m, i)) continue;
    nnc_tensor *p = mr_find(c->bufs, c->m->params[i].name);
    int64_t count = nnc_tensor_elements(p);
    for (int64_t k = 0; k < count; k++) ((double *)p->data)[k] = c->base[off + k] + t * c->dir[off + k];
    off += count;
  }
}

static bool loss_at(model_check *c, double t, double *loss) {
  move_params(c, t);
  nnc_tensor *outs = nnc_xcalloc((size_t)c->loss_graph->noutputs, sizeof *outs);
  char err[512];
  bool ok = mr_run(c->m, c->loss_graph, NNC_INTERP_F64, c->bufs, c->n, outs, NULL, err, sizeof err);
  CHECK_MSG(ok, "%s: %s", c->m->name, err);
  if (ok) *loss = nnc_tensor_get(&outs[c->loss_graph->loss], 0);
  for (int i = 0; ok && i < c->loss_graph->noutputs; i++) nnc_tensor_free(&outs[i]);
  free(outs);
  return ok;
}

static bool central_difference(model_check *c, double h, double *d) {
  double lp, lm;
  if (!loss_at(c, h, &lp) || !loss_at(c, -h, &lm)) return false;
  *d = (lp - lm) / (2 * h);
  return true;
}

/* A random direction, each param's part scaled by that param's RMS (0.01 at least). */
static void draw_direction(model_check *c) {
  int64_t off = 0;
  for (int i = 0; i < c->m->nparams; i++) {
    if (!mr_is_trainable(c->m, i)) continue;
    int64_t count = nnc_tensor_elements(mr_find(c->bufs, c->m->params[i].name));
    double ss = 0;
    for (int64_t k = 0; k < count; k++) ss += c->base[off + k] * c->base[off + k];
    double scale = fmax(sqrt(ss / (double)count), 0.01);
    for (int64_t k = 0; k < count; k++) c->dir[off + k] = scale * uniform(-1, 1);
    off += count;
  }
}

/* The analytic directional derivative and sum |g_i v_i| (the scale errors are measured in). */
static double directional(const model_check *c, double *abs_sum) {
  double dd = 0, as = 0;
  for (int64_t k = 0; k < c->total; k++) {
    dd += c->grad[k] * c->dir[k];
    as += fabs(c->grad[k] * c->dir[k]);
  }
  *abs_sum = as;
  return dd;
}

/* Checks one model along NDIRS directions that cross no kink, drawing up to MAX_REDRAWS more. */
static void check_directions(model_check *c, const char *name) {
  int accepted = 0, redrawn = 0;
  while (accepted < NDIRS && redrawn <= MAX_REDRAWS) {
    draw_direction(c);
    double d1, d2, scale;
    if (!central_difference(c, STEP, &d1) || !central_difference(c, STEP / 2, &d2)) return;
    double dd = directional(c, &scale);
    if (fabs(d1 - d2) > KINK_RTOL * scale) {
      printf("%s: a direction crosses a kink (D(h) %.12g, D(h/2) %.12g); redrawing\n", name, d1, d2);
      redrawn++;
      continue;
    }
    accepted++;
    double err = fabs(dd - d2), tol = RTOL * scale;
    printf("%s: analytic %.12g numeric %.12g |diff| %.3g (tol %.3g), %lld params\n", name, dd, d2, err, tol,
           (long long)c->total);
    CHECK_MSG(err <= tol, "%s: gradient along v is %.12g, central difference %.12g (|diff| %.3g > tol %.3g)", name, dd,
              d2, err, tol);
    /* The check itself must reject an error of 1% of sum |g_i v_i|. */
    CHECK_MSG(fabs(dd + 0.01 * scale - d2) > tol, "%s: the check would accept a gradient off by 1%%", name);
  }
  CHECK_MSG(accepted == NDIRS, "%s: %d of the directions drawn crossed a kink", name, redrawn);
}

/* Gradients of the loss w.r.t. every trainable param at the params in bufs, concatenated. */
static bool analytic_gradient(nnc_module *m, mr_buffers *bufs, int64_t n, model_check *c) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  int first = 0;
  nnc_graph *g = mr_gradient_graph(m, &first, &d);
  CHECK_MSG(g != NULL, "%s: no gradient graph", m->name);
  if (!g) return false;
  nnc_tensor *outs = nnc_xcalloc((size_t)g->noutputs, sizeof *outs);
  char err[512];
  bool ok = mr_run(m, g, NNC_INTERP_F64, bufs, n, outs, NULL, err, sizeof err);
  CHECK_MSG(ok, "%s: gradient run: %s", m->name, err);
  c->total = 0;
  for (int i = first; ok && i < g->noutputs; i++) c->total += nnc_tensor_elements(&outs[i]);
  c->grad = nnc_xcalloc((size_t)c->total + 1, sizeof *c->grad);
  c->base = nnc_xcalloc((size_t)c->total + 1, sizeof *c->base);
  c->dir = nnc_xcalloc((size_t)c->total + 1, sizeof *c->dir);
  int64_t off = 0;
  for (int i = first; ok && i < g->noutputs; i++) {
    const nnc_tensor *p = mr_find(bufs, g->outputs[i].name + strlen("grad."));
    for (int64_t k = 0; k < nnc_tensor_elements(&outs[i]); k++, off++) {
      c->grad[off] = nnc_tensor_get(&outs[i], k);
      c->base[off] = nnc_tensor_get(p, k);
    }
  }
  for (int i = 0; ok && i < g->noutputs; i++) nnc_tensor_free(&outs[i]);
  free(outs);
  return ok;
}

static void check_model(const char *model, int64_t batch_max, int64_t n) {
  char path[256];
  snprintf(path, sizeof path, "models/%s.nn", model);
  nnc_options o = mr_default_options();
  o.batch = batch_max;
  nnc_source src = {0};
  nnc_module *m = mr_compile(path, &o, false, &src, stderr);
  CHECK_MSG(m != NULL, "%s does not compile", path);
  if (m) {
    mr_buffers bufs = {0};
    fill_params(m, &bufs);
    fill_inputs(m, &bufs, n);
    mr_set_scalar(&bufs, "seed", NNC_I32, 7);
    mr_set_scalar(&bufs, "step", NNC_I32, 0);
    mr_set_scalar(&bufs, "lr", NNC_F32, 0.1);
    nnc_graph *loss_graph = nnc_graph_clone(m->arena, m->forward, "loss");
    loss_graph->nstate = 0;
    model_check c = {.m = m, .loss_graph = loss_graph, .bufs = &bufs, .n = n};
    if (analytic_gradient(m, &bufs, n, &c)) check_directions(&c, model);
    free(c.grad), free(c.base), free(c.dir);
    mr_free(&bufs);
  }
  nnc_module_free(m);
  nnc_source_free(&src);
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int64_t batch_max, n;
  } models[] = {{"xor_mlp", 4, 3},     {"fashion_mlp", 3, 2}, {"mnist_conv", 3, 2},    {"lenet", 3, 2},
                {"fashion_cnn", 3, 2}, {"fashion_bn_cnn", 3, 2}, {"cifar_cnn", 2, 2}};
  for (size_t i = 0; i < sizeof models / sizeof *models; i++)
    if (argc < 2 || strcmp(argv[1], models[i].name) == 0) check_model(models[i].name, models[i].batch_max, models[i].n);
  return check_summary();
}
