/* gradcheck_primitives: every differentiable primitive's VJP against central finite
 * differences in f64 through the reference interpreter (DESIGN §12).
 *
 * Each case builds y = op(params...) on random inputs and shapes, differentiates
 * L = sum(y * r) for a fixed random r, and checks (1) every element of every gradient
 * against (L(x + h e_i) - L(x - h e_i)) / 2h and (2) a random direction v against
 * (L(x + h v) - L(x - h v)) / 2h = <grad, v>, with |a - b| <= atol + rtol * |b|, reporting the
 * worst element. Inputs keep clear of the kinks of abs, max, min and pooling (no ties), so
 * the finite differences are of a smooth function. Every primitive with a VJP must have a case
 * of its name. A permanent negative test installs a wrong tanh VJP and asserts the checker
 * rejects it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ir/compare.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "passes/autodiff.h"

#define MAX_PARAMS 4
#define MAX_INPUTS 4
#define STEP 1e-6
#define ATOL 1e-6
#define RTOL 1e-5

static nnc_diags diags;
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static double uniform(double lo, double hi) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return lo + (hi - lo) * (double)(rng_state >> 11) / 9007199254740992.0;
}

/* Values of a param: uniform in [lo, hi], or with |x| in [lo, hi] and a random sign. */
typedef enum { ANY, POSITIVE, AWAY_FROM_ZERO } value_kind;

typedef struct gc {
  nnc_module *m;
  nnc_graph *g;
  int nparams, ninputs;
  nnc_node *params[MAX_PARAMS];
  nnc_tensor pvals[MAX_PARAMS];
  nnc_node *inputs[MAX_INPUTS];
  nnc_tensor ivals[MAX_INPUTS];
  int64_t n;                      /* the batch */
} gc;

/* --- graph construction ------------------------------------------------------------------- */

static nnc_node *typed(gc *c, nnc_node *n) {
  char err[256];
  if (!nnc_infer_type(n, err, sizeof err)) {
    fprintf(stderr, "test graph: %s\n", err);
    exit(1);
  }
  return n;
}

static nnc_node *node(gc *c, nnc_op op, int k, nnc_node *const *in) { return nnc_node_new(c->g, op, k, in, (nnc_loc){0}); }
static nnc_node *un(gc *c, nnc_op op, nnc_node *a) { return typed(c, node(c, op, 1, &a)); }
static nnc_node *bin(gc *c, nnc_op op, nnc_node *a, nnc_node *b) { return typed(c, node(c, op, 2, (nnc_node *[]){a, b})); }
static nnc_type T(int rank, const int64_t *dims) { return nnc_type_make(NNC_F32, rank, dims, -1); }
#define DIMS(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
static nnc_type TD(int rank, const int64_t *dims) { return T(rank, dims); }
#define TY(...) TD(DIMS(__VA_ARGS__))

static nnc_node *param(gc *c, nnc_type t, value_kind kind, double lo, double hi) {
  const char *name = nnc_arena_printf(c->m->arena, "p%d", c->nparams);
  nnc_param p = {.name = name, .type = t, .tied_to = -1};
  nnc_module_add_param(c->m, &p);
  nnc_node *n = node(c, NNC_OP_param, 0, NULL);
  n->name = name, n->type = t;
  typed(c, n);
  nnc_tensor v = nnc_tensor_alloc(t, c->n, true);
  double *d = v.data;
  for (int64_t i = 0; i < nnc_tensor_elements(&v); i++) {
    d[i] = uniform(lo, hi);
    if (kind == AWAY_FROM_ZERO && uniform(0, 1) < 0.5) d[i] = -d[i];
  }
  (void)POSITIVE;
  c->params[c->nparams] = n;
  c->pvals[c->nparams++] = v;
  return n;
}

/* A non-differentiated input (u8 conditions, i32 indices, the loss weights). */
static nnc_node *input(gc *c, nnc_type t, double lo, double hi, bool integer) {
  const char *name = nnc_arena_printf(c->m->arena, "in%d", c->ninputs);
  nnc_node *n = node(c, NNC_OP_input, 0, NULL);
  n->name = name, n->type = t;
  typed(c, n);
  nnc_tensor v = nnc_tensor_alloc(t, c->n, t.dtype == NNC_F32);
  for (int64_t i = 0; i < nnc_tensor_elements(&v); i++) {
    double x = uniform(lo, hi);
    if (t.dtype == NNC_F32) ((double *)v.data)[i] = integer ? floor(x) : x;
    else if (t.dtype == NNC_I32) ((int32_t *)v.data)[i] = (int32_t)floor(x);
    else ((uint8_t *)v.data)[i] = (uint8_t)floor(x);
  }
  c->inputs[c->ninputs] = n;
  c->ivals[c->ninputs++] = v;
  return n;
}

static nnc_node *with_ints(nnc_node *n, nnc_attr_key k, int count, const int64_t *v) {
  nnc_node_set_ints(n, k, count, v);
  return n;
}
#define INTS(n, key, ...) with_ints(n, key, DIMS(__VA_ARGS__))

static nnc_node *sum_all(gc *c, nnc_node *a) {
  nnc_node *n = node(c, NNC_OP_reduce_sum, 1, &a);
  int64_t axes[NNC_MAX_RANK];
  for (int i = 0; i < a->type.rank; i++) axes[i] = i;
  nnc_node_set_ints(n, NNC_ATTR_axes, a->type.rank, axes);
  return typed(c, n);
}

/* --- running ------------------------------------------------------------------------------- */

/* Runs the graph; out[0] is the loss, out[1 + i] the gradient of param i. */
static bool run(gc *c, nnc_tensor *out) {
  nnc_interp_binding b[MAX_PARAMS + MAX_INPUTS];
  int nb = 0;
  for (int i = 0; i < c->nparams; i++) b[nb++] = (nnc_interp_binding){c->params[i]->name, &c->pvals[i]};
  for (int i = 0; i < c->ninputs; i++) b[nb++] = (nnc_interp_binding){c->inputs[i]->name, &c->ivals[i]};
  nnc_interp_env env = {.n = c->n, .bindings = b, .nbindings = nb};
  char err[256];
  if (nnc_interp_run(c->m, c->g, NNC_INTERP_F64, &env, out, NULL, err, sizeof err)) return true;
  fprintf(stderr, "interpreter: %s\n", err);
  return false;
}

static double loss_at(gc *c) {
  nnc_tensor out[1 + MAX_PARAMS];
  if (!run(c, out)) return NAN;
  double l = nnc_tensor_get(&out[0], 0);
  for (int i = 0; i < c->g->noutputs; i++) nnc_tensor_free(&out[i]);
  return l;
}

static bool report(const char *name, const char *what, const nnc_compare_result *r, const nnc_type *t, bool verbose) {
  char buf[512];
  nnc_compare_str(r, t ? t->dims : NULL, t ? t->rank : 0, buf, sizeof buf);
  if (verbose || !r->ok) printf("%-24s %-16s %s\n", name, what, buf);
  return r->ok;
}

/* Elementwise central differences of every param against its analytic gradient. */
static bool check_elements(gc *c, const char *name, const nnc_tensor *grads, bool verbose) {
  bool ok = true;
  for (int p = 0; p < c->nparams; p++) {
    double *x = c->pvals[p].data;
    int64_t count = nnc_tensor_elements(&c->pvals[p]);
    double *fd = calloc((size_t)count + 1, sizeof *fd), *an = calloc((size_t)count + 1, sizeof *an);
    for (int64_t i = 0; i < count; i++) {
      double keep = x[i];
      x[i] = keep + STEP;
      double lp = loss_at(c);
      x[i] = keep - STEP;
      double lm = loss_at(c);
      x[i] = keep;
      fd[i] = (lp - lm) / (2 * STEP);
      an[i] = nnc_tensor_get(&grads[p], i);
    }
    nnc_compare_result r = nnc_compare_f64(an, fd, count, ATOL, RTOL);
    char what[32];
    snprintf(what, sizeof what, "d/d%s", c->params[p]->name);
    ok = report(name, what, &r, &c->params[p]->type, verbose) && ok;
    free(fd), free(an);
  }
  return ok;
}

/* One random direction v over all params: (L(x+hv) - L(x-hv)) / 2h against <grad, v>. */
static bool check_direction(gc *c, const char *name, const nnc_tensor *grads, bool verbose) {
  double *v[MAX_PARAMS], dot = 0;
  for (int p = 0; p < c->nparams; p++) {
    int64_t count = nnc_tensor_elements(&c->pvals[p]);
    v[p] = calloc((size_t)count + 1, sizeof(double));
    for (int64_t i = 0; i < count; i++) {
      v[p][i] = uniform(-1, 1);
      dot += v[p][i] * nnc_tensor_get(&grads[p], i);
    }
  }
  double l[2];
  for (int s = 0; s < 2; s++) {
    double h = s == 0 ? STEP : -STEP;
    for (int p = 0; p < c->nparams; p++)
      for (int64_t i = 0; i < nnc_tensor_elements(&c->pvals[p]); i++) ((double *)c->pvals[p].data)[i] += h * v[p][i];
    l[s] = loss_at(c);
    for (int p = 0; p < c->nparams; p++)
      for (int64_t i = 0; i < nnc_tensor_elements(&c->pvals[p]); i++) ((double *)c->pvals[p].data)[i] -= h * v[p][i];
  }
  for (int p = 0; p < c->nparams; p++) free(v[p]);
  double fd = (l[0] - l[1]) / (2 * STEP);
  nnc_compare_result r = nnc_compare_f64(&dot, &fd, 1, ATOL, RTOL);
  return report(name, "direction", &r, NULL, verbose);
}

typedef nnc_node *(*build_fn)(gc *);

/* Builds L = sum(build() * r), differentiates it, and checks the gradients. */
static bool gradcheck(const char *name, build_fn build, bool verbose) {
  gc c = {.n = 3};
  c.m = nnc_module_new(name);
  c.m->batch_max = 4;
  c.g = c.m->forward = nnc_graph_new(c.m->arena, "forward");
  nnc_node *y = build(&c);
  nnc_node *r = input(&c, y->type, -1, 1, false);
  nnc_node *loss = sum_all(&c, bin(&c, NNC_OP_mul, y, r));
  nnc_node *grads[MAX_PARAMS];
  bool ok = nnc_ad_gradients(c.g, loss, c.nparams, c.params, grads, &diags);
  ok = ok && nnc_verify_graph(c.g, &diags);
  nnc_graph_add_output(c.g, "loss", loss);
  for (int i = 0; ok && i < c.nparams; i++) nnc_graph_add_output(c.g, nnc_arena_printf(c.m->arena, "grad%d", i), grads[i]);
  nnc_tensor out[1 + MAX_PARAMS];
  ok = ok && run(&c, out);
  if (ok) {
    ok = check_elements(&c, name, out + 1, verbose);
    ok = check_direction(&c, name, out + 1, verbose) && ok;
    for (int i = 0; i < c.g->noutputs; i++) nnc_tensor_free(&out[i]);
  } else {
    printf("%-24s could not be differentiated or run\n", name);
  }
  for (int i = 0; i < c.nparams; i++) nnc_tensor_free(&c.pvals[i]);
  for (int i = 0; i < c.ninputs; i++) nnc_tensor_free(&c.ivals[i]);
  nnc_module_free(c.m);
  return ok;
}

/* --- cases ----------------------------------------------------------------------------------- */

#define UNARY_CASE(op, kind, lo, hi)                                                               \
  static nnc_node *case_##op(gc *c) { return un(c, NNC_OP_##op, param(c, TY(2, 3), kind, lo, hi)); }
UNARY_CASE(neg, ANY, -2, 2)
UNARY_CASE(exp, ANY, -2, 2)
UNARY_CASE(log, POSITIVE, 0.2, 3)
UNARY_CASE(sqrt, POSITIVE, 0.2, 3)
UNARY_CASE(rsqrt, POSITIVE, 0.2, 3)
UNARY_CASE(tanh, ANY, -2, 2)
UNARY_CASE(erf, ANY, -2, 2)
UNARY_CASE(abs, AWAY_FROM_ZERO, 0.1, 2)
UNARY_CASE(sin, ANY, -4, 4)
UNARY_CASE(cos, ANY, -4, 4)

static nnc_node *case_cast(gc *c) {
  nnc_node *n = node(c, NNC_OP_cast, 1, (nnc_node *[]){param(c, TY(4), ANY, -1, 1)});
  nnc_node_set_int(n, NNC_ATTR_dtype, NNC_F32);
  return typed(c, n);
}

#define BINARY_CASE(op, kind_b, lo_b, hi_b)                                                        \
  static nnc_node *case_##op(gc *c) {                                                              \
    nnc_node *a = param(c, TY(3, 2), ANY, -2, 2);                                                  \
    nnc_node *b = param(c, TY(3, 2), kind_b, lo_b, hi_b);                                          \
    return bin(c, NNC_OP_##op, a, b);                                                              \
  }
BINARY_CASE(add, ANY, -2, 2)
BINARY_CASE(sub, ANY, -2, 2)
BINARY_CASE(mul, ANY, -2, 2)
BINARY_CASE(div, AWAY_FROM_ZERO, 0.3, 2)

/* b = a +- [0.1, 1]: never a tie, so max and min are smooth at the inputs. */
static nnc_node *minmax(gc *c, nnc_op op) {
  nnc_node *a = param(c, TY(2, 4), ANY, -2, 2);
  nnc_node *b = param(c, TY(2, 4), AWAY_FROM_ZERO, 0.1, 1);
  double *da = c->pvals[0].data, *db = c->pvals[1].data;
  for (int i = 0; i < 8; i++) db[i] += da[i];
  return bin(c, op, a, b);
}
static nnc_node *case_max(gc *c) { return minmax(c, NNC_OP_max); }
static nnc_node *case_min(gc *c) { return minmax(c, NNC_OP_min); }

/* relu = max(x, 0) with x away from 0 */
static nnc_node *case_relu(gc *c) {
  nnc_node *x = param(c, TY(2, 5), AWAY_FROM_ZERO, 0.05, 2);
  nnc_node *z = node(c, NNC_OP_const, 0, NULL);
  z->type = x->type;
  nnc_node_set_num(z, NNC_ATTR_value, 0);
  return bin(c, NNC_OP_max, x, typed(c, z));
}

static nnc_node *case_pow(gc *c) {
  nnc_node *a = param(c, TY(2, 3), POSITIVE, 0.3, 2);
  nnc_node *b = param(c, TY(2, 3), ANY, -2, 2);
  return bin(c, NNC_OP_pow, a, b);
}

static nnc_node *case_select(gc *c) {
  nnc_type t = TY(3, 3);
  nnc_node *a = param(c, t, ANY, -1, 1);
  nnc_node *b = param(c, t, ANY, -1, 1);
  t.dtype = NNC_U8;
  nnc_node *cond = input(c, t, 0, 2, true);
  return typed(c, node(c, NNC_OP_select, 3, (nnc_node *[]){cond, a, b}));
}

static nnc_node *broadcast(gc *c, nnc_node *a, nnc_type t, int naxes, const int64_t *axes) {
  nnc_node *n = node(c, NNC_OP_broadcast, 1, &a);
  n->type = t;
  if (naxes) nnc_node_set_ints(n, NNC_ATTR_axes, naxes, axes);
  return typed(c, n);
}

/* [3,1] -> [2,3,4]: one new axis, one expanded */
static nnc_node *case_broadcast(gc *c) {
  return broadcast(c, param(c, TY(3, 1), ANY, -1, 1), TY(2, 3, 4), DIMS(1, 2));
}

/* [1,3] -> [B,3] and a scalar -> [B,3]: the batch axis appears */
static nnc_node *case_broadcast_batch(gc *c) {
  nnc_type t = nnc_type_make(NNC_F32, 2, (int64_t[]){1, 3}, 0);
  nnc_node *a = broadcast(c, param(c, TY(1, 3), ANY, -1, 1), t, DIMS(0, 1));
  nnc_node *s = broadcast(c, param(c, T(0, NULL), ANY, -1, 1), t, 0, NULL);
  return bin(c, NNC_OP_mul, a, s);
}

static nnc_node *case_reshape(gc *c) {
  nnc_node *n = node(c, NNC_OP_reshape, 1, (nnc_node *[]){param(c, TY(2, 6), ANY, -1, 1)});
  n->type = TY(3, 4);
  return typed(c, n);
}

static nnc_node *case_permute(gc *c) {
  return typed(c, INTS(node(c, NNC_OP_permute, 1, (nnc_node *[]){param(c, TY(2, 3, 4), ANY, -1, 1)}), NNC_ATTR_perm, 2, 0, 1));
}

static nnc_node *slice(gc *c, nnc_node *a, const int64_t *start, const int64_t *stop, const int64_t *step) {
  nnc_node *n = node(c, NNC_OP_slice, 1, &a);
  nnc_node_set_ints(n, NNC_ATTR_start, a->type.rank, start);
  nnc_node_set_ints(n, NNC_ATTR_stop, a->type.rank, stop);
  nnc_node_set_ints(n, NNC_ATTR_step, a->type.rank, step);
  return typed(c, n);
}

/* steps 2 and 3; the second slice's last step overshoots the end */
static nnc_node *case_slice(gc *c) {
  nnc_node *a = param(c, TY(5, 7), ANY, -1, 1);
  nnc_node *s1 = slice(c, a, (int64_t[]){1, 0}, (int64_t[]){5, 7}, (int64_t[]){2, 3});
  nnc_node *b = param(c, TY(2, 6, 3), ANY, -1, 1);
  nnc_node *s2 = slice(c, b, (int64_t[]){0, 1, 1}, (int64_t[]){2, 6, 2}, (int64_t[]){1, 4, 1});
  nnc_node *r = node(c, NNC_OP_reshape, 1, &s2);
  r->type = TY(2, 2);
  return bin(c, NNC_OP_add, typed(c, r), slice(c, s1, (int64_t[]){0, 1}, (int64_t[]){2, 3}, (int64_t[]){1, 1}));
}

static nnc_node *case_pad(gc *c) {
  nnc_node *n = node(c, NNC_OP_pad, 1, (nnc_node *[]){param(c, TY(2, 3), ANY, -1, 1)});
  INTS(n, NNC_ATTR_lo, 1, 0);
  INTS(n, NNC_ATTR_hi, 2, 1);
  nnc_node_set_num(n, NNC_ATTR_value, 0.5);
  return typed(c, n);
}

static nnc_node *case_concat(gc *c) {
  nnc_node *a = param(c, TY(2, 1), ANY, -1, 1);
  nnc_node *b = param(c, TY(2, 3), ANY, -1, 1);
  nnc_node *d = param(c, TY(2, 2), ANY, -1, 1);
  nnc_node *n = node(c, NNC_OP_concat, 3, (nnc_node *[]){a, b, d});
  nnc_node_set_int(n, NNC_ATTR_axis, 1);
  return typed(c, n);
}

static nnc_node *case_reduce_sum(gc *c) {
  return typed(c, INTS(node(c, NNC_OP_reduce_sum, 1, (nnc_node *[]){param(c, TY(2, 3, 4), ANY, -1, 1)}), NNC_ATTR_axes, 0, 2));
}

static nnc_node *case_reduce_max(gc *c) {
  return typed(c, INTS(node(c, NNC_OP_reduce_max, 1, (nnc_node *[]){param(c, TY(3, 4, 5), ANY, -1, 1)}), NNC_ATTR_axes, 1, 2));
}

/* log(sum(exp(x - max(x)))) + max(x): the max's gradient cancels in exact arithmetic */
static nnc_node *case_logsumexp(gc *c) {
  nnc_node *x = param(c, TY(3, 4), ANY, -2, 2);
  nnc_node *mx = typed(c, INTS(node(c, NNC_OP_reduce_max, 1, &x), NNC_ATTR_axes, 1));
  nnc_node *mb = broadcast(c, mx, x->type, DIMS(0));
  nnc_node *s = typed(c, INTS(node(c, NNC_OP_reduce_sum, 1, (nnc_node *[]){un(c, NNC_OP_exp, bin(c, NNC_OP_sub, x, mb))}),
                              NNC_ATTR_axes, 1));
  return bin(c, NNC_OP_add, un(c, NNC_OP_log, s), mx);
}

static nnc_node *matmul(gc *c, nnc_type ta_type, nnc_type tb_type, bool ta, bool tb) {
  nnc_node *a = param(c, ta_type, ANY, -1, 1);
  nnc_node *b = param(c, tb_type, ANY, -1, 1);
  nnc_node *n = node(c, NNC_OP_matmul, 2, (nnc_node *[]){a, b});
  if (ta) nnc_node_set_int(n, NNC_ATTR_trans_a, 1);
  if (tb) nnc_node_set_int(n, NNC_ATTR_trans_b, 1);
  return typed(c, n);
}
static nnc_node *case_matmul(gc *c) { return matmul(c, TY(3, 4), TY(4, 5), false, false); }
static nnc_node *case_matmul_ta(gc *c) { return matmul(c, TY(4, 3), TY(4, 5), true, false); }
static nnc_node *case_matmul_tb(gc *c) { return matmul(c, TY(3, 4), TY(5, 4), false, true); }
static nnc_node *case_matmul_tab(gc *c) { return matmul(c, TY(4, 3), TY(5, 4), true, true); }
static nnc_node *case_matmul_batched(gc *c) { return matmul(c, TY(2, 4, 3), TY(2, 5, 4), true, true); }
static nnc_node *case_matmul_shared(gc *c) { return matmul(c, TY(2, 3, 4), TY(4, 5), false, false); }
static nnc_node *case_matmul_shared_ta(gc *c) { return matmul(c, TY(2, 4, 3), TY(4, 5), true, false); }
static nnc_node *case_matmul_shared_tb(gc *c) { return matmul(c, TY(2, 3, 4), TY(5, 4), false, true); }
static nnc_node *case_matmul_shared_tab(gc *c) { return matmul(c, TY(2, 2, 4, 3), TY(5, 4), true, true); }

/* x [B,C,H,W] with the batch axis: Linear-style contraction over the batch in dW */
static nnc_node *case_matmul_batch_axis(gc *c) {
  nnc_type xt = nnc_type_make(NNC_F32, 2, (int64_t[]){1, 4}, 0);
  nnc_node *x = param(c, xt, ANY, -1, 1);
  nnc_node *w = param(c, TY(3, 4), ANY, -1, 1);
  return typed(c, INTS(node(c, NNC_OP_matmul, 2, (nnc_node *[]){x, w}), NNC_ATTR_trans_b, 1));
}

static nnc_node *conv(gc *c, nnc_type xt, nnc_type wt, int64_t s0, int64_t s1, int64_t p0, int64_t p1, int64_t d0,
                      int64_t d1, int64_t groups) {
  nnc_node *x = param(c, xt, ANY, -1, 1);
  nnc_node *w = param(c, wt, ANY, -1, 1);
  nnc_node *n = node(c, NNC_OP_conv2d, 2, (nnc_node *[]){x, w});
  nnc_node_set_ints(n, NNC_ATTR_stride, 2, (int64_t[]){s0, s1});
  nnc_node_set_ints(n, NNC_ATTR_padding, 2, (int64_t[]){p0, p1});
  nnc_node_set_ints(n, NNC_ATTR_dilation, 2, (int64_t[]){d0, d1});
  nnc_node_set_int(n, NNC_ATTR_groups, groups);
  return typed(c, n);
}
static nnc_node *case_conv2d(gc *c) { return conv(c, TY(2, 3, 5, 5), TY(4, 3, 3, 3), 1, 1, 1, 1, 1, 1, 1); }
static nnc_node *case_conv2d_strided(gc *c) { return conv(c, TY(2, 4, 7, 6), TY(6, 2, 3, 2), 2, 1, 1, 1, 1, 2, 2); }

static nnc_node *case_maxpool2d(gc *c) {
  nnc_node *x = param(c, TY(2, 2, 6, 7), ANY, -3, 3);
  nnc_node *n = node(c, NNC_OP_maxpool2d, 1, &x);
  INTS(n, NNC_ATTR_kernel, 3, 3);
  INTS(n, NNC_ATTR_stride, 2, 1);
  INTS(n, NNC_ATTR_padding, 1, 1);
  INTS(n, NNC_ATTR_dilation, 1, 1);
  return typed(c, n);
}

static nnc_node *case_gather(gc *c) {
  nnc_node *a = param(c, TY(5, 3), ANY, -1, 1);
  nnc_type it = TY(2, 3);
  it.dtype = NNC_I32;
  nnc_node *idx = input(c, it, 0, 3, true); /* repeats likely: gradients add up */
  return typed(c, INTS(node(c, NNC_OP_gather, 2, (nnc_node *[]){a, idx}), NNC_ATTR_axis, 1));
}

static nnc_node *case_scatter_add(gc *c) {
  nnc_node *u = param(c, TY(4, 3), ANY, -1, 1);
  nnc_type it = TY(4);
  it.dtype = NNC_I32;
  nnc_node *idx = input(c, it, 0, 5, true);
  nnc_node *n = node(c, NNC_OP_scatter_add, 2, (nnc_node *[]){u, idx});
  n->type = TY(5, 3);
  return typed(c, INTS(n, NNC_ATTR_axis, 0));
}

/* x used four times through different ops: accumulated gradients */
static nnc_node *case_reuse(gc *c) {
  nnc_node *x = param(c, TY(3, 3), POSITIVE, 0.5, 2);
  nnc_node *t = un(c, NNC_OP_tanh, x);
  nnc_node *l = un(c, NNC_OP_log, x);
  return bin(c, NNC_OP_mul, bin(c, NNC_OP_add, t, l), bin(c, NNC_OP_mul, x, x));
}

static const struct {
  const char *name;
  build_fn build;
} cases[] = {
#define CASE(n) {#n, case_##n}
  CASE(neg), CASE(exp), CASE(log), CASE(sqrt), CASE(rsqrt), CASE(tanh), CASE(erf), CASE(abs), CASE(cast),
  CASE(sin), CASE(cos),
  CASE(add), CASE(sub), CASE(mul), CASE(div), CASE(max), CASE(min), CASE(relu), CASE(pow), CASE(select),
  CASE(broadcast), CASE(broadcast_batch), CASE(reshape), CASE(permute), CASE(slice), CASE(pad), CASE(concat),
  CASE(reduce_sum), CASE(reduce_max), CASE(logsumexp),
  CASE(matmul), CASE(matmul_ta), CASE(matmul_tb), CASE(matmul_tab), CASE(matmul_batched), CASE(matmul_shared),
  CASE(matmul_shared_ta), CASE(matmul_shared_tb), CASE(matmul_shared_tab), CASE(matmul_batch_axis),
  CASE(conv2d), CASE(conv2d_strided), CASE(maxpool2d), CASE(gather), CASE(scatter_add), CASE(reuse),
#undef CASE
};

/* Ties, where finite differences do not apply: reduce_max splits evenly among tied maxima
 * (torch.amax), max(x, 0) gives 0 at x == 0 (relu's threshold_backward). */
static nnc_node *case_ties(gc *c) {
  nnc_node *x = param(c, TY(4), ANY, 0, 1);
  double *d = c->pvals[0].data;
  d[0] = 1, d[1] = 3, d[2] = 3, d[3] = 0;
  nnc_node *mx = typed(c, INTS(node(c, NNC_OP_reduce_max, 1, &x), NNC_ATTR_axes, 0));
  nnc_node *z = node(c, NNC_OP_const, 0, NULL);
  z->type = x->type;
  nnc_node_set_num(z, NNC_ATTR_value, 0);
  nnc_node *relu = sum_all(c, bin(c, NNC_OP_max, x, typed(c, z)));
  return bin(c, NNC_OP_add, mx, relu);
}

static void test_ties(void) {
  gc c = {.n = 1};
  c.m = nnc_module_new("ties");
  c.g = c.m->forward = nnc_graph_new(c.m->arena, "forward");
  nnc_node *loss = case_ties(&c), *grad = NULL;
  CHECK(nnc_ad_gradients(c.g, loss, 1, c.params, &grad, &diags));
  nnc_graph_add_output(c.g, "loss", loss);
  nnc_graph_add_output(c.g, "grad", grad);
  nnc_tensor out[2];
  if (run(&c, out)) {
    const double want[4] = {1, 1.5, 1.5, 0};
    for (int i = 0; i < 4; i++) CHECK_MSG(nnc_tensor_get(&out[1], i) == want[i], "tie gradient %d: %g", i, nnc_tensor_get(&out[1], i));
    nnc_tensor_free(&out[0]), nnc_tensor_free(&out[1]);
  } else {
    CHECK(!"ties graph runs");
  }
  nnc_tensor_free(&c.pvals[0]);
  nnc_module_free(c.m);
}

/* Every primitive with a VJP has a case of its name, so a new one cannot go unchecked. */
static void test_every_vjp_has_a_case(void) {
  for (int op = 0; op < NNC_OP_COUNT; op++) {
    if (!nnc_vjp_for((nnc_op)op)) continue;
    bool found = false;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) found |= strcmp(cases[i].name, nnc_ops[op].name) == 0;
    CHECK_MSG(found, "%s has a VJP but no case here", nnc_ops[op].name);
  }
}

/* A wrong tanh VJP (1 - y instead of 1 - y^2) that the checker must reject. */
static bool wrong_tanh(nnc_gb *b, nnc_node *n, nnc_node *dy, const bool *want, nnc_node **dx) {
  dx[0] = nnc_gb_binary(b, NNC_OP_mul, dy, nnc_gb_binary(b, NNC_OP_sub, nnc_gb_const_like(b, n, 1), n));
  return true;
}

int main(int argc, char **argv) {
  bool verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
  nnc_diags_init(&diags, stderr);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK_MSG(gradcheck(cases[i].name, cases[i].build, verbose), "gradient check of %s", cases[i].name);
  test_ties();
  test_every_vjp_has_a_case();
  nnc_vjp_fn builtin = nnc_vjp_override(NNC_OP_tanh, wrong_tanh);
  printf("negative test (a wrong tanh VJP must be rejected):\n");
  CHECK_MSG(!gradcheck("wrong_tanh", case_tanh, false), "the checker accepted a wrong VJP");
  nnc_vjp_override(NNC_OP_tanh, NULL);
  CHECK(nnc_vjp_for(NNC_OP_tanh) == builtin);
  return check_summary();
}
