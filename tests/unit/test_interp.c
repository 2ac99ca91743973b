/* The reference interpreter: every primitive against answers worked out by hand or by a
 * naive formula written differently here, the conv and pool gradients as exact adjoints,
 * batches below B_max, f32 against f64, Philox known answers, binding errors.
 *
 *   test_interp                 the unit tests
 *   test_interp --torch FILE    compares against PyTorch's answers written by
 *                               tests/torch/interp_ops.py (the ctest torch_interp_ops) */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ir/compare.h"
#include "ir/interp.h"
#include "ir/ir.h"
#include "runtime/philox.h"

static const nnc_loc noloc = {0};

/* --- building graphs ------------------------------------------------------------------------ */

static nnc_type ty(nnc_dtype dt, int batch_axis, int rank, const int64_t *dims) {
  return nnc_type_make(dt, rank, dims, batch_axis);
}
#define TY(dt, ba, ...) ty(dt, ba, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define SCALAR(dt) nnc_type_scalar(dt)

static nnc_node *op(nnc_graph *g, nnc_op o, nnc_type t, int nin, ...) {
  nnc_node *in[8];
  va_list ap;
  va_start(ap, nin);
  for (int i = 0; i < nin; i++) in[i] = va_arg(ap, nnc_node *);
  va_end(ap);
  nnc_node *n = nnc_node_new(g, o, nin, in, noloc);
  n->type = t;
  return n;
}

static nnc_node *src(nnc_graph *g, nnc_op o, const char *name, nnc_type t) {
  nnc_node *n = op(g, o, t, 0);
  n->name = nnc_arena_strdup(g->arena, name);
  return n;
}

#define INTS(n, key, ...) nnc_node_set_ints(n, key, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

/* A test fixture: a module, one graph, the bindings of one call. */
typedef struct fx {
  nnc_module *m;
  nnc_graph *g;
  nnc_interp_binding b[16];
  nnc_tensor t[16];
  int nb;
  bool unverified;               /* a deliberately malformed graph */
} fx;

static fx fx_new(int64_t batch_max) {
  fx f = {0};
  f.m = nnc_module_new("t");
  f.m->batch_max = batch_max;
  f.g = nnc_graph_new(f.m->arena, "forward");
  return f;
}

static void fx_free(fx *f) {
  for (int i = 0; i < f->nb; i++) nnc_tensor_free(&f->t[i]);
  nnc_module_free(f->m);
}

/* Binds name to a tensor of node type t at batch n holding vals (wide f32 when asked). */
static void bind_wide(fx *f, const char *name, nnc_type t, int64_t n, const double *vals, bool wide) {
  nnc_tensor *x = &f->t[f->nb];
  *x = nnc_tensor_alloc(t, n, wide);
  int64_t count = nnc_tensor_elements(x);
  for (int64_t i = 0; i < count; i++) {
    if (t.dtype == NNC_F32 && wide) ((double *)x->data)[i] = vals[i];
    else if (t.dtype == NNC_F32) ((float *)x->data)[i] = (float)vals[i];
    else if (t.dtype == NNC_I32) ((int32_t *)x->data)[i] = (int32_t)vals[i];
    else ((uint8_t *)x->data)[i] = (uint8_t)vals[i];
  }
  f->b[f->nb] = (nnc_interp_binding){name, x};
  f->nb++;
}

static void bind(fx *f, const char *name, nnc_type t, int64_t n, const double *vals) {
  bind_wide(f, name, t, n, vals, true);
}

/* Every graph these tests run (but the deliberately malformed ones) passes the verifier, so
 * the interpreter reads attributes and shapes as the shape rules define them. */
static void expect_verified(const fx *f) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  CHECK_MSG(nnc_verify_graph(f->g, &d), "graph fails the verifier");
}

/* Runs the graph; the outputs land in out[] (caller frees). */
static bool fx_run(fx *f, nnc_interp_precision p, int64_t n, nnc_tensor *out, char *err, size_t cap) {
  if (!f->unverified) expect_verified(f);
  nnc_interp_env env = {.n = n, .bindings = f->b, .nbindings = f->nb};
  return nnc_interp_run(f->m, f->g, p, &env, out, NULL, err, cap);
}

/* Runs a graph with a single output and checks its values equal want (tolerance tol). */
static void expect_values(fx *f, nnc_interp_precision p, int64_t n, const double *want, int64_t count, double tol,
                          const char *what) {
  nnc_tensor out[4];
  char err[256];
  bool ok = fx_run(f, p, n, out, err, sizeof err);
  CHECK_MSG(ok, "%s: %s", what, err);
  if (!ok) return;
  CHECK_MSG(nnc_tensor_elements(&out[0]) == count, "%s: %lld elements", what, (long long)nnc_tensor_elements(&out[0]));
  for (int64_t i = 0; i < count && i < nnc_tensor_elements(&out[0]); i++) {
    double got = nnc_tensor_get(&out[0], i);
    bool same = got == want[i] || (isnan(want[i]) && isnan(got)) || fabs(got - want[i]) <= tol * (1 + fabs(want[i]));
    CHECK_MSG(same, "%s[%lld]: got %.17g, want %.17g", what, (long long)i, got, want[i]);
  }
  for (int i = 0; i < f->g->noutputs; i++) nnc_tensor_free(&out[i]);
}

/* out = o(a) or o(a, b) over given values, one call; for table-driven elementwise tests. */
static void check_elementwise(nnc_op o, nnc_dtype dt, int nin, const double *a, const double *b, const double *want,
                              int count, nnc_dtype out_dt, const char *what) {
  fx f = fx_new(4);
  nnc_type t = TY(dt, -1, count);
  nnc_node *x = src(f.g, NNC_OP_input, "a", t), *y = nin > 1 ? src(f.g, NNC_OP_input, "b", t) : NULL;
  nnc_type tout = t;
  tout.dtype = out_dt;
  nnc_node *r = nin > 1 ? op(f.g, o, tout, 2, x, y) : op(f.g, o, tout, 1, x);
  if (o == NNC_OP_cast) nnc_node_set_int(r, NNC_ATTR_dtype, out_dt);
  nnc_graph_add_output(f.g, "r", r);
  bind(&f, "a", t, 1, a);
  if (nin > 1) bind(&f, "b", t, 1, b);
  expect_values(&f, NNC_INTERP_F64, 1, want, count, 1e-15, what);
  fx_free(&f);
}

/* --- elementwise --------------------------------------------------------------------------- */

static void test_unary_float(void) {
  const double a[] = {0.5, 1.25, 2.0, 3.5};
  static const nnc_op ops[] = {NNC_OP_neg, NNC_OP_exp, NNC_OP_log, NNC_OP_sqrt, NNC_OP_rsqrt, NNC_OP_tanh, NNC_OP_erf, NNC_OP_abs};
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    double want[4];
    for (int i = 0; i < 4; i++) {
      double v = a[i];
      switch (ops[k]) {
      case NNC_OP_neg: want[i] = 0 - v; break;
      case NNC_OP_exp: want[i] = exp(v); break;
      case NNC_OP_log: want[i] = log(v); break;
      case NNC_OP_sqrt: want[i] = sqrt(v); break;
      case NNC_OP_rsqrt: want[i] = pow(v, -0.5); break;
      case NNC_OP_tanh: want[i] = (exp(2 * v) - 1) / (exp(2 * v) + 1); break;
      case NNC_OP_erf: want[i] = erf(v); break;
      default: want[i] = v < 0 ? -v : v; break;
      }
    }
    check_elementwise(ops[k], NNC_F32, 1, a, NULL, want, 4, NNC_F32, nnc_ops[ops[k]].name);
  }
  const double neg[] = {-2, -0.5, 0, 3};
  check_elementwise(NNC_OP_abs, NNC_F32, 1, neg, NULL, (const double[]){2, 0.5, 0, 3}, 4, NNC_F32, "abs");
}

static void test_binary_float(void) {
  const double a[] = {1, -2, 3, NAN}, b[] = {4, 0.5, -1, 1};
  check_elementwise(NNC_OP_add, NNC_F32, 2, a, b, (const double[]){5, -1.5, 2, NAN}, 4, NNC_F32, "add");
  check_elementwise(NNC_OP_sub, NNC_F32, 2, a, b, (const double[]){-3, -2.5, 4, NAN}, 4, NNC_F32, "sub");
  check_elementwise(NNC_OP_mul, NNC_F32, 2, a, b, (const double[]){4, -1, -3, NAN}, 4, NNC_F32, "mul");
  check_elementwise(NNC_OP_div, NNC_F32, 2, a, b, (const double[]){0.25, -4, -3, NAN}, 4, NNC_F32, "div");
  /* max and min propagate NaN (torch.maximum): relu(NaN) is NaN */
  check_elementwise(NNC_OP_max, NNC_F32, 2, a, b, (const double[]){4, 0.5, 3, NAN}, 4, NNC_F32, "max");
  check_elementwise(NNC_OP_min, NNC_F32, 2, a, b, (const double[]){1, -2, -1, NAN}, 4, NNC_F32, "min");
  const double pa[] = {2, 9, 0.5, -2}, pb[] = {3, 0.5, -1, 2};
  check_elementwise(NNC_OP_pow, NNC_F32, 2, pa, pb, (const double[]){8, 3, 2, 4}, 4, NNC_F32, "pow");
}

static void test_integer_arithmetic(void) {
  const double a[] = {2147483647, -7, 7, -2147483648.0, 5}, b[] = {1, 2, 0, -1, -3};
  /* i32 wraps; division truncates toward zero, by zero gives 0 */
  check_elementwise(NNC_OP_add, NNC_I32, 2, a, b, (const double[]){-2147483648.0, -5, 7, 2147483647, 2}, 5, NNC_I32, "i32 add");
  check_elementwise(NNC_OP_div, NNC_I32, 2, a, b, (const double[]){2147483647, -3, 0, -2147483648.0, -1}, 5, NNC_I32, "i32 div");
  check_elementwise(NNC_OP_mul, NNC_I32, 2, a, b, (const double[]){2147483647, -14, 0, -2147483648.0, -15}, 5, NNC_I32, "i32 mul");
  check_elementwise(NNC_OP_neg, NNC_I32, 1, a, NULL, (const double[]){-2147483647, 7, -7, -2147483648.0, -5}, 5, NNC_I32, "i32 neg");
  const double ua[] = {3, 250, 0}, ub[] = {5, 10, 1};
  check_elementwise(NNC_OP_sub, NNC_U8, 2, ua, ub, (const double[]){254, 240, 255}, 3, NNC_U8, "u8 sub");
  check_elementwise(NNC_OP_add, NNC_U8, 2, ua, ub, (const double[]){8, 4, 1}, 3, NNC_U8, "u8 add");
  check_elementwise(NNC_OP_max, NNC_I32, 2, a, b, (const double[]){2147483647, 2, 7, -1, 5}, 5, NNC_I32, "i32 max");
}

static void test_cmp_select_cast(void) {
  const double a[] = {1, 2, 3, NAN}, b[] = {2, 2, 2, 1};
  const double want[6][4] = {{1, 0, 0, 0}, {1, 1, 0, 0}, {0, 0, 1, 0}, {0, 1, 1, 0}, {0, 1, 0, 0}, {1, 0, 1, 1}};
  for (int c = 0; c < 6; c++) {
    fx f = fx_new(4);
    nnc_type t = TY(NNC_F32, -1, 4);
    nnc_node *x = src(f.g, NNC_OP_input, "a", t), *y = src(f.g, NNC_OP_input, "b", t);
    nnc_node *r = op(f.g, NNC_OP_cmp, TY(NNC_U8, -1, 4), 2, x, y);
    nnc_node_set_int(r, NNC_ATTR_cmp, c);
    nnc_graph_add_output(f.g, "r", r);
    bind(&f, "a", t, 1, a);
    bind(&f, "b", t, 1, b);
    expect_values(&f, NNC_INTERP_F64, 1, want[c], 4, 0, "cmp");
    fx_free(&f);
  }
  {
    fx f = fx_new(4);
    nnc_type t = TY(NNC_F32, -1, 3);
    nnc_node *c = src(f.g, NNC_OP_input, "c", TY(NNC_U8, -1, 3));
    nnc_node *x = src(f.g, NNC_OP_input, "a", t), *y = src(f.g, NNC_OP_input, "b", t);
    nnc_graph_add_output(f.g, "r", op(f.g, NNC_OP_select, t, 3, c, x, y));
    bind(&f, "c", TY(NNC_U8, -1, 3), 1, (const double[]){1, 0, 7});
    bind(&f, "a", t, 1, (const double[]){1, 2, 3});
    bind(&f, "b", t, 1, (const double[]){-1, -2, -3});
    expect_values(&f, NNC_INTERP_F64, 1, (const double[]){1, -2, 3}, 3, 0, "select");
    fx_free(&f);
  }
  const double fa[] = {-2.7, 2.7, -0.5, 300.9, 3e9, NAN};
  check_elementwise(NNC_OP_cast, NNC_F32, 1, fa, NULL, (const double[]){-2, 2, 0, 300, 2147483647, 0}, 6, NNC_I32, "f32->i32");
  check_elementwise(NNC_OP_cast, NNC_F32, 1, fa, NULL, (const double[]){0, 2, 0, 255, 255, 0}, 6, NNC_U8, "f32->u8");
  const double ia[] = {300, -1, 255, 16777217};
  check_elementwise(NNC_OP_cast, NNC_I32, 1, ia, NULL, (const double[]){44, 255, 255, 1}, 4, NNC_U8, "i32->u8");
  check_elementwise(NNC_OP_cast, NNC_I32, 1, ia, NULL, (const double[]){300, -1, 255, 16777217}, 4, NNC_F32, "i32->f32");
  check_elementwise(NNC_OP_cast, NNC_U8, 1, (const double[]){0, 200, 255}, NULL, (const double[]){0, 200, 255}, 3, NNC_F32, "u8->f32");
}

/* --- generators and batch --------------------------------------------------------------------- */

static void test_generators_and_batch(void) {
  fx f = fx_new(4);
  nnc_node *c = op(f.g, NNC_OP_const, TY(NNC_F32, -1, 2, 2), 0);
  nnc_node_set_num(c, NNC_ATTR_value, 1.5);
  nnc_node *it = op(f.g, NNC_OP_iota, TY(NNC_I32, 0, 1, 3), 0);  /* i32[B,3], index along B */
  nnc_node_set_int(it, NNC_ATTR_axis, 0);
  nnc_node *nb = op(f.g, NNC_OP_nbatch, SCALAR(NNC_F32), 0);
  nnc_graph_add_output(f.g, "c", c);
  nnc_graph_add_output(f.g, "iota", it);
  nnc_graph_add_output(f.g, "n", nb);
  nnc_tensor out[3];
  char err[256];
  bool ok = fx_run(&f, NNC_INTERP_F32, 2, out, err, sizeof err);
  CHECK_MSG(ok, "%s", err);
  if (ok) {
    CHECK(nnc_tensor_elements(&out[0]) == 4 && ((float *)out[0].data)[3] == 1.5f && !out[0].wide);
    CHECK(nnc_tensor_elements(&out[1]) == 6 && out[1].n == 2);
    const int32_t *iv = out[1].data;
    CHECK(iv[0] == 0 && iv[2] == 0 && iv[3] == 1 && iv[5] == 1);
    CHECK(((float *)out[2].data)[0] == 2.0f);
    for (int i = 0; i < 3; i++) nnc_tensor_free(&out[i]);
  }
  fx_free(&f);
}

/* The same graph at every n <= B_max: a batch mean over x f32[B,3] and a matmul per row. */
static void test_batch_below_max(void) {
  for (int64_t n = 1; n <= 5; n++) {
    fx f = fx_new(5);
    nnc_type tx = TY(NNC_F32, 0, 1, 3);
    nnc_node *x = src(f.g, NNC_OP_input, "x", tx);
    nnc_node *w = src(f.g, NNC_OP_param, "w", TY(NNC_F32, -1, 3, 2));
    nnc_node *y = op(f.g, NNC_OP_matmul, TY(NNC_F32, 0, 1, 2), 2, x, w);  /* [B,2] */
    nnc_node *s = op(f.g, NNC_OP_reduce_sum, TY(NNC_F32, -1, 2), 1, y);
    INTS(s, NNC_ATTR_axes, 0);
    nnc_node *nb = op(f.g, NNC_OP_nbatch, SCALAR(NNC_F32), 0);
    nnc_node *nb2 = op(f.g, NNC_OP_broadcast, TY(NNC_F32, -1, 2), 1, nb);
    nnc_node_set_ints(nb2, NNC_ATTR_axes, 0, NULL);
    nnc_graph_add_output(f.g, "mean", op(f.g, NNC_OP_div, TY(NNC_F32, -1, 2), 2, s, nb2));
    double xv[15], want[2] = {0, 0};
    const double wv[6] = {1, 2, 3, 4, 5, 6};
    for (int i = 0; i < 15; i++) xv[i] = i + 1;
    for (int64_t r = 0; r < n; r++)
      for (int j = 0; j < 2; j++)
        for (int k = 0; k < 3; k++) want[j] += xv[r * 3 + k] * wv[k * 2 + j] / (double)n;
    bind(&f, "x", tx, n, xv);
    bind(&f, "w", TY(NNC_F32, -1, 3, 2), 1, wv);
    expect_values(&f, NNC_INTERP_F64, n, want, 2, 1e-14, "batch mean");
    fx_free(&f);
  }
}

/* A program with only state outputs (an update w - lr*w): they land in state_outputs; a node
 * no output needs (an unused input) needs no binding. */
static void test_state_outputs(void) {
  fx f = fx_new(4);
  nnc_type wt = TY(NNC_F32, -1, 3);
  nnc_node *w = src(f.g, NNC_OP_param, "w", wt), *lr = src(f.g, NNC_OP_scalar, "lr", SCALAR(NNC_F32));
  src(f.g, NNC_OP_input, "y", TY(NNC_I32, 0, 1));
  nnc_node *lrb = op(f.g, NNC_OP_broadcast, wt, 1, lr);
  nnc_node_set_ints(lrb, NNC_ATTR_axes, 0, NULL);
  nnc_graph_add_state_output(f.g, "w", op(f.g, NNC_OP_sub, wt, 2, w, op(f.g, NNC_OP_mul, wt, 2, lrb, w)));
  bind(&f, "w", wt, 1, (const double[]){1, -2, 4});
  bind(&f, "lr", SCALAR(NNC_F32), 1, (const double[]){0.25});
  expect_verified(&f);
  nnc_interp_env env = {.n = 2, .bindings = f.b, .nbindings = f.nb};
  nnc_tensor st[1];
  char err[256];
  bool ok = nnc_interp_run(f.m, f.g, NNC_INTERP_F32, &env, NULL, st, err, sizeof err);
  CHECK_MSG(ok, "%s", err);
  if (ok) {
    const float *v = st[0].data;
    CHECK(v[0] == 0.75f && v[1] == -1.5f && v[2] == 3.0f);
    nnc_tensor_free(&st[0]);
  }
  fx_free(&f);
}

/* --- index maps --------------------------------------------------------------------------------- */

static void test_index_maps(void) {
  double v24[24];
  for (int i = 0; i < 24; i++) v24[i] = i;
  { /* broadcast [3] -> [2,3] and [2,1] -> [2,3] */
    fx f = fx_new(4);
    nnc_node *a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 3));
    nnc_node *b = op(f.g, NNC_OP_broadcast, TY(NNC_F32, -1, 2, 3), 1, a);
    INTS(b, NNC_ATTR_axes, 1);
    nnc_node *c = src(f.g, NNC_OP_input, "c", TY(NNC_F32, -1, 2, 1));
    nnc_node *d = op(f.g, NNC_OP_broadcast, TY(NNC_F32, -1, 2, 3), 1, c);
    INTS(d, NNC_ATTR_axes, 0, 1);
    nnc_graph_add_output(f.g, "r", op(f.g, NNC_OP_add, TY(NNC_F32, -1, 2, 3), 2, b, d));
    bind(&f, "a", TY(NNC_F32, -1, 3), 1, (const double[]){1, 2, 3});
    bind(&f, "c", TY(NNC_F32, -1, 2, 1), 1, (const double[]){10, 20});
    expect_values(&f, NNC_INTERP_F64, 1, (const double[]){11, 12, 13, 21, 22, 23}, 6, 0, "broadcast");
    fx_free(&f);
  }
  { /* permute [2,3,4] by (2,0,1) -> [4,2,3]: out[i,j,k] = a[j,k,i] */
    fx f = fx_new(4);
    nnc_node *a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 2, 3, 4));
    nnc_node *p = op(f.g, NNC_OP_permute, TY(NNC_F32, -1, 4, 2, 3), 1, a);
    INTS(p, NNC_ATTR_perm, 2, 0, 1);
    nnc_graph_add_output(f.g, "r", p);
    bind(&f, "a", TY(NNC_F32, -1, 2, 3, 4), 1, v24);
    double want[24];
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 2; j++)
        for (int k = 0; k < 3; k++) want[(i * 2 + j) * 3 + k] = (j * 3 + k) * 4 + i;
    expect_values(&f, NNC_INTERP_F64, 1, want, 24, 0, "permute");
    fx_free(&f);
  }
  { /* slice [2,3,4] -> a[1:2, 0:3:2, 1:4:2] = [1,2,2]; then reshape to [4] */
    fx f = fx_new(4);
    nnc_node *a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 2, 3, 4));
    nnc_node *s = op(f.g, NNC_OP_slice, TY(NNC_F32, -1, 1, 2, 2), 1, a);
    INTS(s, NNC_ATTR_start, 1, 0, 1);
    INTS(s, NNC_ATTR_stop, 2, 3, 4);
    INTS(s, NNC_ATTR_step, 1, 2, 2);
    nnc_graph_add_output(f.g, "r", op(f.g, NNC_OP_reshape, TY(NNC_F32, -1, 4), 1, s));
    bind(&f, "a", TY(NNC_F32, -1, 2, 3, 4), 1, v24);
    expect_values(&f, NNC_INTERP_F64, 1, (const double[]){13, 15, 21, 23}, 4, 0, "slice");
    fx_free(&f);
  }
  { /* pad [2,2] by lo (1,0), hi (0,2) with 9 */
    fx f = fx_new(4);
    nnc_node *a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 2, 2));
    nnc_node *p = op(f.g, NNC_OP_pad, TY(NNC_F32, -1, 3, 4), 1, a);
    INTS(p, NNC_ATTR_lo, 1, 0);
    INTS(p, NNC_ATTR_hi, 0, 2);
    nnc_node_set_num(p, NNC_ATTR_value, 9);
    nnc_graph_add_output(f.g, "r", p);
    bind(&f, "a", TY(NNC_F32, -1, 2, 2), 1, (const double[]){1, 2, 3, 4});
    expect_values(&f, NNC_INTERP_F64, 1, (const double[]){9, 9, 9, 9, 1, 2, 9, 9, 3, 4, 9, 9}, 12, 0, "pad");
    fx_free(&f);
  }
  { /* concat [2,1] and [2,2] along axis 1 */
    fx f = fx_new(4);
    nnc_node *a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 2, 1));
    nnc_node *b = src(f.g, NNC_OP_input, "b", TY(NNC_F32, -1, 2, 2));
    nnc_node *c = op(f.g, NNC_OP_concat, TY(NNC_F32, -1, 2, 3), 2, a, b);
    nnc_node_set_int(c, NNC_ATTR_axis, 1);
    nnc_graph_add_output(f.g, "r", c);
    bind(&f, "a", TY(NNC_F32, -1, 2, 1), 1, (const double[]){1, 2});
    bind(&f, "b", TY(NNC_F32, -1, 2, 2), 1, (const double[]){3, 4, 5, 6});
    expect_values(&f, NNC_INTERP_F64, 1, (const double[]){1, 3, 4, 2, 5, 6}, 6, 0, "concat");
    fx_free(&f);
  }
}

/* concat along the batch axis (the multiples add: B and B*2 give B*3, a's n rows first), and
 * a concat of 100 operands. */
static void test_concat_batch_and_many(void) {
  fx f = fx_new(4);
  nnc_node *a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, 0, 1, 2)), *b = src(f.g, NNC_OP_input, "b", TY(NNC_F32, 0, 2, 2));
  nnc_node *c = op(f.g, NNC_OP_concat, TY(NNC_F32, 0, 3, 2), 2, a, b);
  nnc_node_set_int(c, NNC_ATTR_axis, 0);
  nnc_graph_add_output(f.g, "r", c);
  bind(&f, "a", TY(NNC_F32, 0, 1, 2), 2, (const double[]){1, 2, 3, 4});
  bind(&f, "b", TY(NNC_F32, 0, 2, 2), 2, (const double[]){5, 6, 7, 8, 9, 10, 11, 12});
  expect_values(&f, NNC_INTERP_F64, 2, (const double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 12, 0, "batch concat");
  fx_free(&f);

  f = fx_new(1);
  nnc_node *in[100];
  for (int i = 0; i < 100; i++) {
    nnc_node *k = op(f.g, NNC_OP_const, TY(NNC_F32, -1, 1), 0);
    nnc_node_set_num(k, NNC_ATTR_value, i);
    in[i] = k;
  }
  c = nnc_node_new(f.g, NNC_OP_concat, 100, in, noloc);
  c->type = TY(NNC_F32, -1, 100);
  nnc_node_set_int(c, NNC_ATTR_axis, 0);
  nnc_graph_add_output(f.g, "r", c);
  double want[100];
  for (int i = 0; i < 100; i++) want[i] = i;
  expect_values(&f, NNC_INTERP_F32, 1, want, 100, 0, "concat of 100");
  fx_free(&f);
}

/* --- reductions and matmul ---------------------------------------------------------------------- */

static void test_reductions(void) {
  double v24[24];
  for (int i = 0; i < 24; i++) v24[i] = i;
  fx f = fx_new(4);
  nnc_node *a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 2, 3, 4));
  nnc_node *s = op(f.g, NNC_OP_reduce_sum, TY(NNC_F32, -1, 3), 1, a);
  INTS(s, NNC_ATTR_axes, 0, 2);
  nnc_graph_add_output(f.g, "r", s);
  bind(&f, "a", TY(NNC_F32, -1, 2, 3, 4), 1, v24);
  double want[3] = {0};
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++) want[j] += (i * 3 + j) * 4 + k;
  expect_values(&f, NNC_INTERP_F64, 1, want, 3, 0, "reduce_sum");
  fx_free(&f);

  f = fx_new(4);
  a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 3, 3));
  s = op(f.g, NNC_OP_reduce_max, TY(NNC_F32, -1, 3), 1, a);
  INTS(s, NNC_ATTR_axes, 1);
  nnc_graph_add_output(f.g, "r", s);
  bind(&f, "a", TY(NNC_F32, -1, 3, 3), 1, (const double[]){-5, -7, -6, 1, NAN, 3, -INFINITY, -INFINITY, -INFINITY});
  expect_values(&f, NNC_INTERP_F64, 1, (const double[]){-5, NAN, -INFINITY}, 3, 0, "reduce_max");
  fx_free(&f);
}

static void test_matmul(void) {
  const double a[6] = {1, 2, 3, 4, 5, 6};          /* [2,3] */
  const double b[6] = {7, 8, 9, 10, 11, 12};       /* [3,2] */
  const double want[4] = {58, 64, 139, 154};
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      fx f = fx_new(4);
      nnc_type at = ta ? TY(NNC_F32, -1, 3, 2) : TY(NNC_F32, -1, 2, 3);
      nnc_type bt = tb ? TY(NNC_F32, -1, 2, 3) : TY(NNC_F32, -1, 3, 2);
      double as[6], bs[6];
      for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++) as[ta ? k * 2 + i : i * 3 + k] = a[i * 3 + k];
      for (int k = 0; k < 3; k++)
        for (int j = 0; j < 2; j++) bs[tb ? j * 3 + k : k * 2 + j] = b[k * 2 + j];
      nnc_node *x = src(f.g, NNC_OP_input, "a", at), *y = src(f.g, NNC_OP_input, "b", bt);
      nnc_node *m = op(f.g, NNC_OP_matmul, TY(NNC_F32, -1, 2, 2), 2, x, y);
      nnc_node_set_int(m, NNC_ATTR_trans_a, ta);
      nnc_node_set_int(m, NNC_ATTR_trans_b, tb);
      nnc_graph_add_output(f.g, "r", m);
      bind(&f, "a", at, 1, as);
      bind(&f, "b", bt, 1, bs);
      expect_values(&f, NNC_INTERP_F64, 1, want, 4, 0, "matmul");
      fx_free(&f);
    }
  /* batched [2,2,3] @ [2,3,2] and with a shared rank-2 b */
  for (int shared = 0; shared < 2; shared++) {
    fx f = fx_new(4);
    double a2[12], b2[12], w[8];
    for (int i = 0; i < 12; i++) a2[i] = i % 6 + 1 + (i >= 6 ? 1 : 0), b2[i] = i % 6 + 7 + (i >= 6 && !shared ? 2 : 0);
    nnc_type bt = shared ? TY(NNC_F32, -1, 3, 2) : TY(NNC_F32, -1, 2, 3, 2);
    nnc_node *x = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 2, 2, 3)), *y = src(f.g, NNC_OP_input, "b", bt);
    nnc_graph_add_output(f.g, "r", op(f.g, NNC_OP_matmul, TY(NNC_F32, -1, 2, 2, 2), 2, x, y));
    for (int p = 0; p < 2; p++)
      for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
          double acc = 0;
          for (int k = 0; k < 3; k++) acc += a2[p * 6 + i * 3 + k] * b2[(shared ? 0 : p * 6) + k * 2 + j];
          w[(p * 2 + i) * 2 + j] = acc;
        }
    bind(&f, "a", TY(NNC_F32, -1, 2, 2, 3), 1, a2);
    bind(&f, "b", bt, 1, b2);
    expect_values(&f, NNC_INTERP_F64, 1, w, 8, 0, "batched matmul");
    fx_free(&f);
  }
}

/* --- gather and scatter_add --------------------------------------------------------------------- */

static void test_gather_scatter(void) {
  fx f = fx_new(4);
  nnc_node *a = src(f.g, NNC_OP_input, "a", TY(NNC_F32, -1, 2, 3));
  nnc_node *ix = src(f.g, NNC_OP_input, "i", TY(NNC_I32, -1, 2, 2));
  nnc_node *g = op(f.g, NNC_OP_gather, TY(NNC_F32, -1, 2, 2, 2), 2, a, ix);  /* take(a, i, axis=1) */
  nnc_node_set_int(g, NNC_ATTR_axis, 1);
  nnc_graph_add_output(f.g, "r", g);
  bind(&f, "a", TY(NNC_F32, -1, 2, 3), 1, (const double[]){1, 2, 3, 4, 5, 6});
  bind(&f, "i", TY(NNC_I32, -1, 2, 2), 1, (const double[]){2, 0, 1, 1});
  expect_values(&f, NNC_INTERP_F64, 1, (const double[]){3, 1, 2, 2, 6, 4, 5, 5}, 8, 0, "gather");
  fx_free(&f);

  /* scatter_add is gather's adjoint: <gather(a, i), u> == <a, scatter_add(u, i)> */
  f = fx_new(4);
  nnc_type at = TY(NNC_F32, -1, 3, 4), it = TY(NNC_I32, -1, 5), ut = TY(NNC_F32, -1, 5, 4);
  a = src(f.g, NNC_OP_input, "a", at);
  ix = src(f.g, NNC_OP_input, "i", it);
  nnc_node *u = src(f.g, NNC_OP_input, "u", ut);
  g = op(f.g, NNC_OP_gather, ut, 2, a, ix);
  nnc_node_set_int(g, NNC_ATTR_axis, 0);
  nnc_node *s = op(f.g, NNC_OP_scatter_add, at, 2, u, ix);
  nnc_node_set_int(s, NNC_ATTR_axis, 0);
  nnc_graph_add_output(f.g, "g", g);
  nnc_graph_add_output(f.g, "s", s);
  double av[12], uv[20];
  for (int i = 0; i < 12; i++) av[i] = sin(i + 1.0);
  for (int i = 0; i < 20; i++) uv[i] = cos(i * 0.7);
  bind(&f, "a", at, 1, av);
  bind(&f, "i", it, 1, (const double[]){2, 0, 2, 1, 2});
  bind(&f, "u", ut, 1, uv);
  nnc_tensor out[2];
  char err[256];
  bool ok = fx_run(&f, NNC_INTERP_F64, 1, out, err, sizeof err);
  CHECK_MSG(ok, "%s", err);
  if (ok) {
    double lhs = 0, rhs = 0;
    for (int i = 0; i < 20; i++) lhs += ((double *)out[0].data)[i] * uv[i];
    for (int i = 0; i < 12; i++) rhs += av[i] * ((double *)out[1].data)[i];
    CHECK_MSG(fabs(lhs - rhs) <= 1e-12 * fabs(lhs), "%.17g vs %.17g", lhs, rhs);
    /* row 2 of the scatter got rows 0, 2 and 4 of u */
    CHECK(fabs(((double *)out[1].data)[8] - (uv[0] + uv[8] + uv[16])) < 1e-15);
    nnc_tensor_free(&out[0]);
    nnc_tensor_free(&out[1]);
  }
  /* an index out of range is an error naming it, not a crash */
  f.t[1].type.dtype = NNC_I32;
  ((int32_t *)f.t[1].data)[3] = 3;
  ok = fx_run(&f, NNC_INTERP_F64, 1, out, err, sizeof err);
  CHECK_MSG(!ok && strstr(err, "index 3") && strstr(err, "[0, 3)"), "%s", err);
  fx_free(&f);
}

/* --- conv2d ------------------------------------------------------------------------------------- */

typedef struct conv_cfg {
  int64_t N, C, H, W, O, KH, KW, sy, sx, py, px, dy, dx, groups;
} conv_cfg;

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

/* A graph computing y = conv2d(x, w), dx = conv2d_input_grad(dy, w), dw = conv2d_weight_grad(dy, x),
 * with x and dy batched (N = B). */
static void conv_graph(fx *f, const conv_cfg *c) {
  int64_t Ho = conv_out(c->H, c->KH, c->sy, c->py, c->dy), Wo = conv_out(c->W, c->KW, c->sx, c->px, c->dx);
  nnc_type xt = TY(NNC_F32, 0, 1, c->C, c->H, c->W), wt = TY(NNC_F32, -1, c->O, c->C / c->groups, c->KH, c->KW);
  nnc_type yt = TY(NNC_F32, 0, 1, c->O, Ho, Wo);
  nnc_node *x = src(f->g, NNC_OP_input, "x", xt), *w = src(f->g, NNC_OP_param, "w", wt);
  nnc_node *dy = src(f->g, NNC_OP_input, "dy", yt);
  nnc_node *y = op(f->g, NNC_OP_conv2d, yt, 2, x, w);
  nnc_node *dx = op(f->g, NNC_OP_conv2d_input_grad, xt, 2, dy, w);
  nnc_node *dw = op(f->g, NNC_OP_conv2d_weight_grad, wt, 2, dy, x);
  nnc_node *all[3] = {y, dx, dw};
  for (int i = 0; i < 3; i++) {
    INTS(all[i], NNC_ATTR_stride, c->sy, c->sx);
    INTS(all[i], NNC_ATTR_padding, c->py, c->px);
    INTS(all[i], NNC_ATTR_dilation, c->dy, c->dx);
    nnc_node_set_int(all[i], NNC_ATTR_groups, c->groups);
  }
  INTS(dx, NNC_ATTR_in_shape, c->H, c->W);
  INTS(dw, NNC_ATTR_kernel, c->KH, c->KW);
  nnc_graph_add_output(f->g, "y", y);
  nnc_graph_add_output(f->g, "dx", dx);
  nnc_graph_add_output(f->g, "dw", dw);
}

/* The hand example: x = 1..12 as [1,1,3,4], w = 3x3 ones, stride 2, padding 1 -> 2x2:
 * each output is the sum of the in-bounds part of its window. */
static void test_conv2d_by_hand(void) {
  conv_cfg c = {1, 1, 3, 4, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1};
  fx f = fx_new(2);
  conv_graph(&f, &c);
  double x[12], w[9];
  for (int i = 0; i < 12; i++) x[i] = i + 1;
  for (int i = 0; i < 9; i++) w[i] = 1;
  bind(&f, "x", f.g->nodes[0]->type, 1, x);
  bind(&f, "w", f.g->nodes[1]->type, 1, w);
  bind(&f, "dy", f.g->nodes[2]->type, 1, (const double[]){1, 0, 0, 0});
  nnc_tensor out[3];
  char err[256];
  bool ok = fx_run(&f, NNC_INTERP_F64, 1, out, err, sizeof err);
  CHECK_MSG(ok, "%s", err);
  if (!ok) return fx_free(&f);
  const double *y = out[0].data, *dx = out[1].data, *dw = out[2].data;
  /* rows 0..1 x cols 0..1; rows 0..1 x cols 1..3; rows 1..2 x cols 0..1; rows 1..2 x cols 1..3 */
  CHECK(y[0] == 1 + 2 + 5 + 6 && y[1] == 2 + 3 + 4 + 6 + 7 + 8 && y[2] == 5 + 6 + 9 + 10 && y[3] == 6 + 7 + 8 + 10 + 11 + 12);
  /* dy = e_00: dx is the window of output (0,0) (rows 0..1, cols 0..1), dw the input under it */
  const double want_dx[12] = {1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0};
  const double want_dw[9] = {0, 0, 0, 0, 1, 2, 0, 5, 6};
  for (int i = 0; i < 12; i++) CHECK_MSG(dx[i] == want_dx[i], "dx[%d] = %g", i, dx[i]);
  for (int i = 0; i < 9; i++) CHECK_MSG(dw[i] == want_dw[i], "dw[%d] = %g", i, dw[i]);
  for (int i = 0; i < 3; i++) nnc_tensor_free(&out[i]);
  fx_free(&f);
}

/* A naive conv written differently: pad the input explicitly, then walk the dilated kernel. */
static void naive_conv(const conv_cfg *c, const double *x, const double *w, double *y) {
  int64_t Hp = c->H + 2 * c->py, Wp = c->W + 2 * c->px;
  int64_t Ho = conv_out(c->H, c->KH, c->sy, c->py, c->dy), Wo = conv_out(c->W, c->KW, c->sx, c->px, c->dx);
  double *xp = calloc((size_t)(c->N * c->C * Hp * Wp), sizeof(double));
  for (int64_t i = 0; i < c->N * c->C; i++)
    for (int64_t r = 0; r < c->H; r++)
      for (int64_t s = 0; s < c->W; s++) xp[(i * Hp + r + c->py) * Wp + s + c->px] = x[(i * c->H + r) * c->W + s];
  int64_t cg = c->C / c->groups, og = c->O / c->groups;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t g = 0; g < c->groups; g++)
      for (int64_t oo = 0; oo < og; oo++)
        for (int64_t r = 0; r < Ho; r++)
          for (int64_t s = 0; s < Wo; s++) {
            int64_t o = g * og + oo;
            double acc = 0;
            for (int64_t ci = 0; ci < cg; ci++)
              for (int64_t ky = 0; ky < c->KH; ky++)
                for (int64_t kx = 0; kx < c->KW; kx++)
                  acc += xp[((n * c->C + g * cg + ci) * Hp + r * c->sy + ky * c->dy) * Wp + s * c->sx + kx * c->dx] *
                         w[((o * cg + ci) * c->KH + ky) * c->KW + kx];
            y[((n * c->O + o) * Ho + r) * Wo + s] = acc;
          }
  free(xp);
}

static double dot(const double *a, const double *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* conv2d against the naive formula, and its gradients as exact adjoints:
 * <conv(x,w), dy> == <x, input_grad(dy,w)> == <w, weight_grad(dy,x)>, in f64 to 1e-12. */
static void test_conv2d_adjoints(void) {
  static const conv_cfg cfgs[] = {
    {2, 3, 7, 6, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {1, 4, 9, 8, 6, 3, 2, 1, 2, 2, 0, 2, 1, 2},
    {3, 6, 8, 7, 3, 3, 3, 3, 2, 1, 2, 1, 2, 3},
    {2, 2, 5, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1, 2},
    {1, 1, 3, 4, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1},
  };
  for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
    const conv_cfg *c = &cfgs[k];
    fx f = fx_new(c->N + 2);  /* run below B_max */
    conv_graph(&f, c);
    int64_t nx = c->N * c->C * c->H * c->W, nw = c->O * (c->C / c->groups) * c->KH * c->KW;
    int64_t ny = nnc_type_elements(&f.g->nodes[2]->type, c->N);
    double *x = malloc(sizeof(double) * (size_t)nx), *w = malloc(sizeof(double) * (size_t)nw);
    double *dy = malloc(sizeof(double) * (size_t)ny), *yref = malloc(sizeof(double) * (size_t)ny);
    for (int64_t i = 0; i < nx; i++) x[i] = sin(0.37 * (double)i + 0.1 * (double)k);
    for (int64_t i = 0; i < nw; i++) w[i] = cos(0.91 * (double)i);
    for (int64_t i = 0; i < ny; i++) dy[i] = sin(1.3 * (double)i + 2);
    bind(&f, "x", f.g->nodes[0]->type, c->N, x);
    bind(&f, "w", f.g->nodes[1]->type, c->N, w);
    bind(&f, "dy", f.g->nodes[2]->type, c->N, dy);
    nnc_tensor out[3];
    char err[256];
    bool ok = fx_run(&f, NNC_INTERP_F64, c->N, out, err, sizeof err);
    CHECK_MSG(ok, "conv %zu: %s", k, err);
    if (ok) {
      naive_conv(c, x, w, yref);
      nnc_compare_result r = nnc_compare_f64(out[0].data, yref, ny, 1e-13, 1e-12);
      char msg[512];
      CHECK_MSG(r.ok, "conv %zu vs naive: %s", k, nnc_compare_str(&r, NULL, 0, msg, sizeof msg));
      double a = dot(out[0].data, dy, ny), b = dot(x, out[1].data, nx), cc = dot(w, out[2].data, nw);
      CHECK_MSG(fabs(a - b) <= 1e-12 * fabs(a) && fabs(a - cc) <= 1e-12 * fabs(a),
                "conv %zu adjoints: %.17g %.17g %.17g", k, a, b, cc);
      for (int i = 0; i < 3; i++) nnc_tensor_free(&out[i]);
    }
    free(x), free(w), free(dy), free(yref);
    fx_free(&f);
  }
}

/* --- max-pooling -------------------------------------------------------------------------------- */

/* x [B,C,H,W] (run at n = 1) -> maxpool2d values, argmax, and the grad of dy through them. */
static void pool_graph(fx *f, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s, int64_t p, int64_t d, int64_t Ho, int64_t Wo) {
  nnc_type xt = TY(NNC_F32, 0, 1, C, H, W), yt = TY(NNC_F32, 0, 1, C, Ho, Wo), at = TY(NNC_U8, 0, 1, C, Ho, Wo);
  nnc_node *x = src(f->g, NNC_OP_input, "x", xt), *dy = src(f->g, NNC_OP_input, "dy", yt);
  nnc_node *y = op(f->g, NNC_OP_maxpool2d, yt, 1, x), *am = op(f->g, NNC_OP_maxpool2d_argmax, at, 1, x);
  nnc_node *dx = op(f->g, NNC_OP_maxpool2d_grad, xt, 2, dy, am);
  nnc_node *all[3] = {y, am, dx};
  for (int i = 0; i < 3; i++) {
    INTS(all[i], NNC_ATTR_kernel, k, k);
    INTS(all[i], NNC_ATTR_stride, s, s);
    INTS(all[i], NNC_ATTR_padding, p, p);
    INTS(all[i], NNC_ATTR_dilation, d, d);
  }
  INTS(dx, NNC_ATTR_in_shape, H, W);
  nnc_graph_add_output(f->g, "y", y);
  nnc_graph_add_output(f->g, "argmax", am);
  nnc_graph_add_output(f->g, "dx", dx);
}

static void run_pool(fx *f, const double *x, const double *dy, nnc_tensor *out, bool *ok) {
  bind(f, "x", f->g->nodes[0]->type, 1, x);
  bind(f, "dy", f->g->nodes[1]->type, 1, dy);
  char err[256];
  *ok = fx_run(f, NNC_INTERP_F64, 1, out, err, sizeof err);
  CHECK_MSG(*ok, "%s", err);
}

static void test_maxpool(void) {
  { /* 4x4, 2x2 stride 2, with ties: the first maximum in row-major window order wins */
    fx f = fx_new(1);
    pool_graph(&f, 1, 4, 4, 2, 2, 0, 1, 2, 2);
    const double x[16] = {1, 3, 5, 5,
                          3, 2, 5, 5,
                          0, 0, -1, -2,
                          0, 0, -3, -1};
    nnc_tensor out[3];
    bool ok;
    run_pool(&f, x, (const double[]){10, 20, 30, 40}, out, &ok);
    if (ok) {
      const double *y = out[0].data, *dx = out[2].data;
      const uint8_t *am = out[1].data;
      CHECK(y[0] == 3 && y[1] == 5 && y[2] == 0 && y[3] == -1);
      CHECK_MSG(am[0] == 1 && am[1] == 0 && am[2] == 0 && am[3] == 0, "argmax %d %d %d %d", am[0], am[1], am[2], am[3]);
      const double want[16] = {0, 10, 20, 0, 0, 0, 0, 0, 30, 0, 40, 0, 0, 0, 0, 0};
      for (int i = 0; i < 16; i++) CHECK_MSG(dx[i] == want[i], "dx[%d] = %g", i, dx[i]);
      for (int i = 0; i < 3; i++) nnc_tensor_free(&out[i]);
    }
    fx_free(&f);
  }
  { /* padding is -inf, not 0: negative inputs keep their max; overlapping windows
     * (3x3, stride 1, padding 1) accumulate the gradient at a shared maximum */
    fx f = fx_new(1);
    pool_graph(&f, 1, 3, 3, 3, 1, 1, 1, 3, 3);
    const double x[9] = {-9, -8, -7, -6, -1, -5, -4, -3, -2};
    double dy[9];
    for (int i = 0; i < 9; i++) dy[i] = i + 1;
    nnc_tensor out[3];
    bool ok;
    run_pool(&f, x, dy, out, &ok);
    if (ok) {
      const double *y = out[0].data, *dx = out[2].data;
      const uint8_t *am = out[1].data;
      for (int i = 0; i < 9; i++) CHECK_MSG(y[i] == -1, "y[%d] = %g", i, y[i]);
      /* the centre (1,1) is window position (1-oy+1)*3 + (1-ox+1) of output (oy,ox) */
      for (int i = 0; i < 9; i++) CHECK_MSG(am[i] == (2 - i / 3) * 3 + (2 - i % 3), "am[%d] = %d", i, am[i]);
      CHECK(dx[4] == 45);
      for (int i = 0; i < 9; i++) CHECK(i == 4 || dx[i] == 0);
      for (int i = 0; i < 3; i++) nnc_tensor_free(&out[i]);
    }
    fx_free(&f);
  }
  { /* dilation 2: a 2x2 window over a 5x5 input reads every other pixel; and grad as an
     * adjoint: <y, dy> == <x, dx> since y = x at the argmax */
    fx f = fx_new(1);
    pool_graph(&f, 2, 5, 5, 2, 1, 0, 2, 3, 3);
    double x[50], dy[18];
    for (int i = 0; i < 50; i++) x[i] = sin(1.7 * i);
    for (int i = 0; i < 18; i++) dy[i] = cos(0.3 * i);
    nnc_tensor out[3];
    bool ok;
    run_pool(&f, x, dy, out, &ok);
    if (ok) {
      const double *y = out[0].data;
      for (int c = 0; c < 2; c++)
        for (int oy = 0; oy < 3; oy++)
          for (int ox = 0; ox < 3; ox++) {
            double m = -INFINITY;
            for (int ky = 0; ky < 2; ky++)
              for (int kx = 0; kx < 2; kx++) m = fmax(m, x[c * 25 + (oy + 2 * ky) * 5 + ox + 2 * kx]);
            CHECK(y[c * 9 + oy * 3 + ox] == m);
          }
      double a = dot(y, dy, 18), b = dot(x, out[2].data, 50);
      CHECK_MSG(fabs(a - b) <= 1e-14 * fabs(a), "%.17g vs %.17g", a, b);
      for (int i = 0; i < 3; i++) nnc_tensor_free(&out[i]);
    }
    fx_free(&f);
  }
}

/* --- precision -------------------------------------------------------------------------------- */

/* A small MLP layer, tanh(x @ w) summed: f32 mode agrees with f64 to float accuracy, every f32
 * result is a float, and f32 mode accumulates in float (1 + 2^-25 + 2^-25 stays 1). */
static void test_f32_vs_f64(void) {
  fx f = fx_new(8);
  nnc_type xt = TY(NNC_F32, 0, 1, 16), wt = TY(NNC_F32, -1, 16, 8), ht = TY(NNC_F32, 0, 1, 8);
  nnc_node *x = src(f.g, NNC_OP_input, "x", xt), *w = src(f.g, NNC_OP_param, "w", wt);
  nnc_node *h = op(f.g, NNC_OP_tanh, ht, 1, op(f.g, NNC_OP_matmul, ht, 2, x, w));
  nnc_graph_add_output(f.g, "h", h);
  double xv[128], wv[128];
  for (int i = 0; i < 128; i++) xv[i] = sin(i * 0.61), wv[i] = cos(i * 0.23) * 0.3;
  bind_wide(&f, "x", xt, 8, xv, false);
  bind_wide(&f, "w", wt, 1, wv, false);
  nnc_tensor o32[1], o64[1];
  char err[256];
  bool ok = fx_run(&f, NNC_INTERP_F32, 8, o32, err, sizeof err) && fx_run(&f, NNC_INTERP_F64, 8, o64, err, sizeof err);
  CHECK_MSG(ok, "%s", err);
  if (ok) {
    CHECK(!o32[0].wide && o64[0].wide);
    nnc_compare_result r = nnc_compare_tensors(&o32[0], &o64[0], 1e-6, 1e-5);
    char msg[512];
    CHECK_MSG(r.ok && r.max_abs_err > 0, "f32 vs f64: %s", nnc_compare_str(&r, o64[0].type.dims, 2, msg, sizeof msg));
    nnc_tensor_free(&o32[0]);
    nnc_tensor_free(&o64[0]);
  }
  fx_free(&f);

  f = fx_new(1);
  nnc_type t = TY(NNC_F32, -1, 3);
  nnc_node *s = op(f.g, NNC_OP_reduce_sum, SCALAR(NNC_F32), 1, src(f.g, NNC_OP_input, "a", t));
  INTS(s, NNC_ATTR_axes, 0);
  nnc_graph_add_output(f.g, "s", s);
  bind(&f, "a", t, 1, (const double[]){1, 0x1p-25, 0x1p-25});
  expect_values(&f, NNC_INTERP_F32, 1, (const double[]){1}, 1, 0, "f32 accumulation");
  expect_values(&f, NNC_INTERP_F64, 1, (const double[]){1 + 0x1p-24}, 1, 0, "f64 accumulation");
  fx_free(&f);

  /* a wide f64 binding is not rounded in F64 mode (gradient checks perturb in double), and is
   * rounded to float in F32 mode */
  f = fx_new(1);
  t = TY(NNC_F32, -1, 1);
  nnc_graph_add_output(f.g, "r", op(f.g, NNC_OP_neg, t, 1, src(f.g, NNC_OP_input, "a", t)));
  bind(&f, "a", t, 1, (const double[]){1 + 1e-12});
  expect_values(&f, NNC_INTERP_F64, 1, (const double[]){-(1 + 1e-12)}, 1, 0, "wide input");
  expect_values(&f, NNC_INTERP_F32, 1, (const double[]){-1}, 1, 0, "wide input in f32");
  fx_free(&f);
}

/* --- random numbers ------------------------------------------------------------------------------ */

static void test_philox(void) {
  /* Known answers of philox4x32-10 from the Random123 test suite (kat_vectors). */
  static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}, {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (size_t k = 0; k < sizeof kat / sizeof kat[0]; k++) {
    uint32_t out[4];
    nnc_philox4x32(kat[k].ctr, kat[k].key, out);
    for (int i = 0; i < 4; i++) CHECK_MSG(out[i] == kat[k].out[i], "kat %zu word %d: %08x", k, i, out[i]);
  }

  /* rng_uniform over f32[B,5] at n=3: element i is word 0 of block (ctr (i, 0, step, 0),
   * key (seed, key)) scaled to [0,1) */
  fx f = fx_new(4);
  nnc_node *seed = src(f.g, NNC_OP_scalar, "seed", SCALAR(NNC_I32)), *step = src(f.g, NNC_OP_scalar, "step", SCALAR(NNC_I32));
  nnc_node *r = op(f.g, NNC_OP_rng_uniform, TY(NNC_F32, 0, 1, 5), 2, seed, step);
  nnc_node_set_int(r, NNC_ATTR_key, 7);
  nnc_graph_add_output(f.g, "r", r);
  bind(&f, "seed", SCALAR(NNC_I32), 1, (const double[]){-3});
  bind(&f, "step", SCALAR(NNC_I32), 1, (const double[]){42});
  double want[15];
  for (uint32_t i = 0; i < 15; i++) {
    uint32_t out[4];
    nnc_philox4x32((const uint32_t[]){i, 0, 42, 0}, (const uint32_t[]){0xfffffffd, 7}, out);
    want[i] = (double)(out[0] >> 8) / 16777216.0;
  }
  expect_values(&f, NNC_INTERP_F32, 3, want, 15, 0, "rng_uniform");
  CHECK(nnc_rng_uniform_at(1, 2, 3, UINT64_C(1) << 32) != nnc_rng_uniform_at(1, 2, 3, 0));
  double mean = 0;
  for (int i = 0; i < 10000; i++) {
    float u = nnc_rng_uniform_at(5, 1, 0, (uint64_t)i);
    CHECK(u >= 0 && u < 1);
    mean += u / 10000.0;
  }
  CHECK_MSG(fabs(mean - 0.5) < 0.01, "mean %g", mean);
  fx_free(&f);
}

/* --- errors -------------------------------------------------------------------------------------- */

static void test_binding_errors(void) {
  fx f = fx_new(4);
  nnc_type xt = TY(NNC_F32, 0, 1, 3);
  nnc_node *x = src(f.g, NNC_OP_input, "x", xt);
  nnc_graph_add_output(f.g, "r", op(f.g, NNC_OP_exp, xt, 1, x));
  nnc_tensor out[1];
  char err[256];
  CHECK(!fx_run(&f, NNC_INTERP_F64, 2, out, err, sizeof err) && strstr(err, "no binding for input 'x'"));
  double v[16] = {0};
  bind(&f, "x", xt, 2, v);
  CHECK_MSG(!fx_run(&f, NNC_INTERP_F64, 5, out, err, sizeof err) && strstr(err, "batch 5 outside [1, 4]"), "%s", err);
  CHECK_MSG(!fx_run(&f, NNC_INTERP_F64, 0, out, err, sizeof err) && strstr(err, "batch 0"), "%s", err);
  CHECK_MSG(!fx_run(&f, NNC_INTERP_F64, 3, out, err, sizeof err) && strstr(err, "batch of 2"), "%s", err);
  f.t[0].type = TY(NNC_F32, 0, 1, 4);
  CHECK_MSG(!fx_run(&f, NNC_INTERP_F64, 2, out, err, sizeof err) && strstr(err, "f32[B,4]") && strstr(err, "f32[B,3]"), "%s", err);
  f.t[0].type = TY(NNC_I32, 0, 1, 3);
  CHECK_MSG(!fx_run(&f, NNC_INTERP_F64, 2, out, err, sizeof err) && strstr(err, "i32[B,3]"), "%s", err);
  f.t[0].type = xt;
  bool ok = fx_run(&f, NNC_INTERP_F64, 2, out, err, sizeof err);
  CHECK_MSG(ok, "%s", err);
  if (ok) nnc_tensor_free(&out[0]);
  fx_free(&f);

  /* a malformed node (a conv whose result shape is wrong) is an error, not a read out of bounds */
  f = fx_new(1);
  f.unverified = true;
  nnc_type t4 = TY(NNC_F32, -1, 1, 1, 4, 4);
  nnc_node *c = op(f.g, NNC_OP_conv2d, TY(NNC_F32, -1, 1, 1, 5, 5), 2, src(f.g, NNC_OP_input, "x", t4),
                   src(f.g, NNC_OP_input, "w", TY(NNC_F32, -1, 1, 1, 3, 3)));
  nnc_graph_add_output(f.g, "r", c);
  bind(&f, "x", t4, 1, v);
  bind(&f, "w", TY(NNC_F32, -1, 1, 1, 3, 3), 1, v);
  CHECK_MSG(!fx_run(&f, NNC_INTERP_F64, 1, out, err, sizeof err) && strstr(err, "conv2d") && strstr(err, "window"), "%s", err);
  fx_free(&f);
}

/* --- PyTorch's answers ---------------------------------------------------------------------------- */

/* Reads "name count v0 v1 ..." into a fresh array; NULL on a format error. */
static double *read_tensor(FILE *in, const char *want, int64_t *count) {
  char name[32];
  long long n;
  if (fscanf(in, "%31s %lld", name, &n) != 2 || strcmp(name, want) != 0 || n < 0 || n > 10000000) return NULL;
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  for (long long i = 0; i < n; i++)
    if (fscanf(in, "%lf", &v[i]) != 1) {
      free(v);
      return NULL;
    }
  *count = n;
  return v;
}

/* Compares output k of a run with a reference, in both precisions' tolerances. */
static void compare_ref(const char *what, const nnc_tensor *got, const double *ref, int64_t count, bool f64) {
  double scale = 0;
  for (int64_t i = 0; i < count; i++) scale = fmax(scale, fabs(ref[i]));
  nnc_tensor r = {.type = got->type, .n = got->n, .wide = true, .data = (void *)ref};
  r.type.dtype = NNC_F32;
  nnc_tensor g = *got;
  nnc_compare_result res = f64 ? nnc_compare_tensors(&g, &r, 1e-12 * scale, 1e-10) : nnc_compare_tensors(&g, &r, 1e-5 * scale, 1e-4);
  char msg[512];
  CHECK_MSG(res.ok && res.count == count, "%s (%s): %s", what, f64 ? "f64" : "f32", nnc_compare_str(&res, NULL, 0, msg, sizeof msg));
}

static bool torch_case(FILE *in, const char *kind) {
  bool conv = strcmp(kind, "conv2d") == 0;
  long long p[14] = {0};
  int want = conv ? 14 : 12;
  for (int i = 0; i < want; i++)
    if (fscanf(in, "%lld", &p[i]) != 1) return false;
  static const char *const conv_names[] = {"x", "w", "y", "dy", "dx", "dw"};
  static const char *const pool_names[] = {"x", "y", "argmax", "dy", "dx"};
  const char *const *names = conv ? conv_names : pool_names;
  int nt = conv ? 6 : 5;
  double *t[6] = {0};
  int64_t cnt[6] = {0};
  bool ok = true;
  for (int i = 0; i < nt && ok; i++) ok = (t[i] = read_tensor(in, names[i], &cnt[i])) != NULL;
  char end[8];
  ok = ok && fscanf(in, "%7s", end) == 1 && strcmp(end, "end") == 0;
  if (ok) {
    fx f = fx_new(p[0] + 1);
    nnc_tensor out[3];
    char err[256];
    if (conv) {
      conv_cfg c = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]};
      conv_graph(&f, &c);
      bind(&f, "x", f.g->nodes[0]->type, c.N, t[0]);
      bind(&f, "w", f.g->nodes[1]->type, c.N, t[1]);
      bind(&f, "dy", f.g->nodes[2]->type, c.N, t[3]);
    } else {
      int64_t Ho = conv_out(p[2], p[4], p[6], p[8], p[10]), Wo = conv_out(p[3], p[5], p[7], p[9], p[11]);
      nnc_type xt = TY(NNC_F32, 0, 1, p[1], p[2], p[3]), yt = TY(NNC_F32, 0, 1, p[1], Ho, Wo);
      nnc_node *x = src(f.g, NNC_OP_input, "x", xt), *dy = src(f.g, NNC_OP_input, "dy", yt);
      nnc_node *y = op(f.g, NNC_OP_maxpool2d, yt, 1, x), *am = op(f.g, NNC_OP_maxpool2d_argmax, TY(NNC_U8, 0, 1, p[1], Ho, Wo), 1, x);
      nnc_node *dx = op(f.g, NNC_OP_maxpool2d_grad, xt, 2, dy, am);
      nnc_node *all[3] = {y, am, dx};
      for (int i = 0; i < 3; i++) {
        INTS(all[i], NNC_ATTR_kernel, p[4], p[5]);
        INTS(all[i], NNC_ATTR_stride, p[6], p[7]);
        INTS(all[i], NNC_ATTR_padding, p[8], p[9]);
        INTS(all[i], NNC_ATTR_dilation, p[10], p[11]);
      }
      INTS(dx, NNC_ATTR_in_shape, p[2], p[3]);
      nnc_graph_add_output(f.g, "y", y);
      nnc_graph_add_output(f.g, "argmax", am);
      nnc_graph_add_output(f.g, "dx", dx);
      bind(&f, "x", xt, p[0], t[0]);
      bind(&f, "dy", yt, p[0], t[3]);
    }
    for (int prec = 0; prec < 2; prec++) {
      bool ran = fx_run(&f, prec ? NNC_INTERP_F64 : NNC_INTERP_F32, p[0], out, err, sizeof err);
      CHECK_MSG(ran, "%s: %s", kind, err);
      if (!ran) continue;
      if (conv) {
        compare_ref("conv2d", &out[0], t[2], cnt[2], prec);
        compare_ref("conv2d_input_grad", &out[1], t[4], cnt[4], prec);
        compare_ref("conv2d_weight_grad", &out[2], t[5], cnt[5], prec);
      } else {
        compare_ref("maxpool2d", &out[0], t[1], cnt[1], prec);
        int64_t bad = 0;
        for (int64_t i = 0; i < cnt[2]; i++) bad += nnc_tensor_get(&out[1], i) != t[2][i];
        CHECK_MSG(bad == 0 && nnc_tensor_elements(&out[1]) == cnt[2], "maxpool2d_argmax: %lld differ", (long long)bad);
        compare_ref("maxpool2d_grad", &out[2], t[4], cnt[4], prec);
      }
      for (int i = 0; i < 3; i++) nnc_tensor_free(&out[i]);
    }
    fx_free(&f);
  }
  for (int i = 0; i < nt; i++) free(t[i]);
  return ok;
}

/* "unary OP": y = OP(x) by PyTorch, x a vector. */
static bool torch_unary_case(FILE *in) {
  char name[32];
  nnc_op o;
  if (fscanf(in, "%31s", name) != 1 || !nnc_op_from_name(name, &o) || nnc_ops[o].kind != NNC_KIND_UNARY) return false;
  int64_t nx = 0, ny = 0;
  double *x = read_tensor(in, "x", &nx), *y = x ? read_tensor(in, "y", &ny) : NULL;
  char end[8];
  bool ok = y && nx == ny && nx > 0 && fscanf(in, "%7s", end) == 1 && strcmp(end, "end") == 0;
  if (ok) {
    fx f = fx_new(1);
    nnc_type t = TY(NNC_F32, -1, nx);
    nnc_graph_add_output(f.g, "y", op(f.g, o, t, 1, src(f.g, NNC_OP_input, "x", t)));
    bind(&f, "x", t, 1, x);
    for (int prec = 0; prec < 2; prec++) {
      nnc_tensor out[1];
      char err[256];
      bool ran = fx_run(&f, prec ? NNC_INTERP_F64 : NNC_INTERP_F32, 1, out, err, sizeof err);
      CHECK_MSG(ran, "%s: %s", name, err);
      if (!ran) continue;
      compare_ref(name, &out[0], y, ny, prec);
      nnc_tensor_free(&out[0]);
    }
    fx_free(&f);
  }
  free(x);
  free(y);
  return ok;
}

static int run_torch_file(const char *path) {
  FILE *in = fopen(path, "r");
  if (!in) {
    fprintf(stderr, "cannot open %s\n", path);
    return 1;
  }
  char kind[32];
  int cases = 0;
  while (fscanf(in, "%31s", kind) == 1) {
    bool ok = strcmp(kind, "unary") == 0 ? torch_unary_case(in)
              : (strcmp(kind, "conv2d") == 0 || strcmp(kind, "maxpool2d") == 0) && torch_case(in, kind);
    CHECK_MSG(ok, "%s: malformed case %d (%s)", path, cases, kind);
    if (!ok) break;
    cases++;
  }
  fclose(in);
  CHECK_MSG(cases > 0, "%s holds no cases", path);
  printf("%d PyTorch cases\n", cases);
  return check_summary();
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--torch") == 0) return run_torch_file(argv[2]);
  test_unary_float();
  test_binary_float();
  test_integer_arithmetic();
  test_cmp_select_cast();
  test_generators_and_batch();
  test_batch_below_max();
  test_state_outputs();
  test_index_maps();
  test_concat_batch_and_many();
  test_reductions();
  test_matmul();
  test_gather_scatter();
  test_conv2d_by_hand();
  test_conv2d_adjoints();
  test_maxpool();
  test_f32_vs_f64();
  test_philox();
  test_binding_errors();
  return check_summary();
}
