/* Proof of expressiveness (b) and (c): the shared-memory tiled GPU matmul and the block-reduced
 * GPU row softmax (passes/gpu_sched.h) verify, run through the phase emulator (passes/phase.h,
 * serial blocks and parallel blocks) compiled with cc, and match the interpreter on ragged and
 * round shapes; the softmax's CPU schedule runs through the C printer. Also: the emulator's
 * rules (shuffle partners, variables across barriers, LOCAL per thread, rejections) on small
 * hand-built kernels. The schedules the lowering picks for graph nodes (nnc_gpu_sched_node):
 * conv2d and both gradients with stride, padding, dilation and groups, batched, weight-gradient
 * and leading-axis matmuls, row reductions over suffixes of the axes, each at n = B_max and a
 * smaller n against the interpreter. --bench prints the CPU softmax's throughput on 1000x1000. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "codegen/c.h"
#include "codegen/cc.h"
#include "passes/phase.h"
#include "ir/compare.h"
#include "ir/interp.h"
#include "passes/gpu_sched.h"
#include "runtime/abi.h"

static double worst_matmul, worst_softmax, worst_softmax_cpu; /* the largest |a - b| seen */

static bool verify(const nnc_kernel *k) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_lk_verify(k, &d);
  CHECK_MSG(ok, "kernel %s does not verify", k->name);
  return ok;
}

/* Prelude, kernel (emulated when a GPU kernel) and a wrapper, compiled with -Werror. */
static nnc_cg_lib *compile(nnc_arena *a, const nnc_kernel *k, bool parallel_blocks, const char *wrapper,
                           const char *flags_extra) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_phase_opts o = {.parallel_blocks = parallel_blocks};
  nnc_kernel *e = nnc_phase_lower(a, k, &o, &d);
  CHECK_MSG(e != NULL, "kernel %s: the emulator refuses it", k->name);
  if (!e) return NULL;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fprintf(f, "#include \"runtime/abi.h\"\n");
  const nnc_kernel *ks[1] = {e};
  nnc_cg_c_prelude(f, ks, 1);
  bool ok = nnc_cg_c_kernel(f, e, &d);
  fprintf(f, "%s\n", wrapper);
  fclose(f);
  CHECK_MSG(ok, "kernel %s does not print", k->name);
  char cwd[1024], flags[1300], err[16384];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  snprintf(flags, sizeof flags, "-I%s %s", cwd, flags_extra ? flags_extra : "");
  nnc_diags why;
  nnc_cg_lib *lib = ok ? nnc_cg_cc_compile(text, flags, nnc_diags_init_buffer(&why, err, sizeof err)) : NULL;
  CHECK_MSG(lib, "%s\n--- source ---\n%s", err, text);
  free(text);
  return lib;
}

static float *random_floats(int64_t count, uint32_t seed, float scale) {
  float *p = nnc_xmalloc((size_t)(count > 0 ? count : 1) * sizeof *p);
  uint64_t s = seed * 2654435761u + 1;
  for (int64_t i = 0; i < count; i++) {
    s = s * 6364136223846793005u + 1442695040888963407u;
    p[i] = ((float)(uint32_t)(s >> 40) / (float)(1u << 24) * 2.0f - 1.0f) * scale;
  }
  return p;
}

/* --- reference graphs ---------------------------------------------------------------------------- */

static nnc_node *input(nnc_graph *g, const char *name, int64_t r, int64_t c) {
  nnc_node *n = nnc_node_new(g, NNC_OP_input, 0, NULL, (nnc_loc){0});
  n->type = nnc_type_make(NNC_F32, 2, (int64_t[]){r, c}, -1);
  n->name = name;
  return n;
}

static nnc_node *op(nnc_graph *g, nnc_op o, int nin, nnc_node **in) {
  nnc_node *n = nnc_node_new(g, o, nin, in, (nnc_loc){0});
  char err[256];
  if (!nnc_infer_type(n, err, sizeof err)) CHECK_MSG(false, "reference graph: %s", err);
  return n;
}

static nnc_node *reduce(nnc_graph *g, nnc_op o, nnc_node *x) {
  nnc_node *n = nnc_node_new(g, o, 1, &x, (nnc_loc){0});
  nnc_node_set_ints(n, NNC_ATTR_axes, 1, (int64_t[]){1});
  char err[256];
  if (!nnc_infer_type(n, err, sizeof err)) CHECK_MSG(false, "reference graph: %s", err);
  return n;
}

static nnc_node *broadcast_rows(nnc_graph *g, nnc_node *v, int64_t r, int64_t c) {
  nnc_node *n = nnc_node_new(g, NNC_OP_broadcast, 1, &v, (nnc_loc){0});
  nnc_node_set_ints(n, NNC_ATTR_axes, 1, (int64_t[]){0});
  n->type = nnc_type_make(NNC_F32, 2, (int64_t[]){r, c}, -1);
  return n;
}

/* Runs g's output "out" with the bindings; the result's data (free it). */
static float *interp(nnc_module *m, nnc_graph *g, nnc_interp_binding *bind, int nbind) {
  nnc_tensor out = {0};
  nnc_interp_env env = {1, bind, nbind};
  char err[512];
  bool ok = nnc_interp_run(m, g, NNC_INTERP_F32, &env, &out, NULL, err, sizeof err);
  CHECK_MSG(ok, "interpreter: %s", err);
  return ok ? out.data : NULL;
}

/* The interpreter's matmul of the stored A and B (transposes as the kernel reads them). */
static float *ref_matmul(const float *A, const float *B, int64_t M, int64_t N, int64_t K, bool ta, bool tb) {
  nnc_module *m = nnc_module_new("mm");
  m->batch_max = 1;
  nnc_graph *g = nnc_graph_new(m->arena, "forward");
  nnc_node *in[2] = {input(g, "a", ta ? K : M, ta ? M : K), input(g, "b", tb ? N : K, tb ? K : N)};
  nnc_node *mm = nnc_node_new(g, NNC_OP_matmul, 2, in, (nnc_loc){0});
  if (ta) nnc_node_set_int(mm, NNC_ATTR_trans_a, 1);
  if (tb) nnc_node_set_int(mm, NNC_ATTR_trans_b, 1);
  char err[256];
  if (!nnc_infer_type(mm, err, sizeof err)) CHECK_MSG(false, "reference matmul: %s", err);
  nnc_graph_add_output(g, "out", mm);
  nnc_tensor xa = {in[0]->type, 1, false, (void *)A}, xb = {in[1]->type, 1, false, (void *)B};
  nnc_interp_binding bind[2] = {{"a", &xa}, {"b", &xb}};
  float *r = interp(m, g, bind, 2);
  nnc_module_free(m);
  return r;
}

/* softmax(x) = exp(x - max) / sum(exp(x - max)) over each row, from the primitives. */
static float *ref_softmax(const float *X, int64_t R, int64_t C) {
  nnc_module *m = nnc_module_new("sm");
  m->batch_max = 1;
  nnc_graph *g = nnc_graph_new(m->arena, "forward");
  nnc_node *x = input(g, "x", R, C);
  nnc_node *mx = broadcast_rows(g, reduce(g, NNC_OP_reduce_max, x), R, C);
  nnc_node *e = op(g, NNC_OP_exp, 1, (nnc_node *[]){op(g, NNC_OP_sub, 2, (nnc_node *[]){x, mx})});
  nnc_node *s = broadcast_rows(g, reduce(g, NNC_OP_reduce_sum, e), R, C);
  nnc_graph_add_output(g, "out", op(g, NNC_OP_div, 2, (nnc_node *[]){e, s}));
  nnc_tensor xt = {x->type, 1, false, (void *)X};
  nnc_interp_binding bind[1] = {{"x", &xt}};
  float *r = interp(m, g, bind, 1);
  nnc_module_free(m);
  return r;
}

static void compare(const char *what, const float *got, const float *ref, int64_t R, int64_t C, double atol,
                    double rtol, double *worst) {
  nnc_type t = nnc_type_make(NNC_F32, 2, (int64_t[]){R, C}, -1);
  nnc_tensor tg = {t, 1, false, (void *)got}, tr = {t, 1, false, (void *)ref};
  nnc_compare_result r = nnc_compare_tensors(&tg, &tr, atol, rtol);
  char msg[512];
  CHECK_MSG(r.ok, "%s: %s", what, nnc_compare_str(&r, t.dims, 2, msg, sizeof msg));
  *worst = fmax(*worst, r.max_abs_err);
}

/* --- (b) the GPU matmul ------------------------------------------------------------------------- */

typedef void (*mm_fn)(const nnc_rt *, float *, const float *, const float *, int64_t);

static void check_matmul(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int64_t batch_max, int64_t n) {
  nnc_arena *a = nnc_arena_new();
  nnc_gpu_matmul_shape s = {.M = M, .N = N, .K = K, .trans_a = ta, .trans_b = tb, .batch_max = batch_max};
  nnc_kernel *k = nnc_gpu_matmul_kernel(a, "mm", &s);
  CHECK(k != NULL);
  if (!k || !verify(k)) return nnc_arena_free(a);
  CHECK(k->gpu && k->block_dim[0] == 16 && k->block_dim[1] == 16);
  int64_t rows = batch_max > 0 ? n * M : M;
  float *A = random_floats(rows * K, 1, 1.0f), *B = random_floats(K * N, 2, 1.0f);
  float *C = nnc_xcalloc((size_t)(rows * N), sizeof *C);
  float *ref = ref_matmul(A, B, rows, N, K, ta, tb);
  char what[160];
  for (int par = 0; par < 2 && ref; par++) {
    nnc_cg_lib *lib = compile(a, k, par == 1,
                              batch_max > 0 ? "void run(const nnc_rt *rt, float *c, const float *a, const float *b, int64_t n) { mm(rt, c, a, b, n); }"
                                            : "void run(const nnc_rt *rt, float *c, const float *a, const float *b, int64_t n) { (void)n; mm(rt, c, a, b); }",
                              NULL);
    if (!lib) break;
    mm_fn run = (mm_fn)(uintptr_t)nnc_cg_cc_sym(lib, "run");
    nnc_rt rt = {NNC_ABI_VERSION, NULL, NULL};
    memset(C, 0, (size_t)(rows * N) * sizeof *C);
    run(&rt, C, A, B, n);
    snprintf(what, sizeof what, "gpu matmul %lldx%lldx%lld%s%s%s n=%lld (%s blocks)", (long long)M, (long long)N,
             (long long)K, ta ? " trans_a" : "", tb ? " trans_b" : "", batch_max ? " batched" : "", (long long)n,
             par ? "parallel" : "serial");
    compare(what, C, ref, rows, N, 1e-6 * sqrt((double)K), 1e-5, &worst_matmul);
    nnc_cg_cc_close(lib);
  }
  free(A), free(B), free(C), free(ref);
  nnc_arena_free(a);
}

static void test_matmul(void) {
  check_matmul(100, 70, 33, false, false, 0, 1);
  check_matmul(64, 64, 64, false, false, 0, 1);
  check_matmul(1, 1, 1, false, false, 0, 1);
  check_matmul(100, 70, 33, true, false, 0, 1);
  check_matmul(100, 70, 33, false, true, 0, 1);
  check_matmul(65, 129, 17, true, true, 0, 1);
  check_matmul(10, 70, 33, false, false, 8, 7); /* rows n*10 at run time */
  check_matmul(10, 70, 33, false, true, 8, 1);
  nnc_arena *a = nnc_arena_new();
  nnc_gpu_matmul_shape bad = {.M = 10, .N = 10, .K = 10, .trans_a = true, .batch_max = 4};
  CHECK(nnc_gpu_matmul_kernel(a, "mm", &bad) == NULL);
  nnc_gpu_matmul_shape zero = {.M = 0, .N = 10, .K = 10};
  CHECK(nnc_gpu_matmul_kernel(a, "mm", &zero) == NULL);
  nnc_gpu_matmul_shape kb = {.M = 10, .N = 10, .K = 10, .trans_b = true, .batch_max = 4, .batch = NNC_GPU_BATCH_K};
  CHECK(nnc_gpu_matmul_kernel(a, "mm", &kb) == NULL); /* batched K needs A transposed, B not */
  kb.trans_b = false, kb.trans_a = true, kb.mats = 3;
  CHECK(nnc_gpu_matmul_kernel(a, "mm", &kb) == NULL); /* batched K with several products */
  nnc_gpu_conv_shape cbad = {.images = 1, .C = 3, .H = 4, .W = 4, .O = 4, .KH = 5, .KW = 5, .sy = 1, .sx = 1, .dy = 1, .dx = 1, .groups = 1};
  CHECK(nnc_gpu_conv2d_kernel(a, "cv", NNC_GPU_CONV_FORWARD, &cbad) == NULL); /* the window exceeds the image */
  cbad.KH = cbad.KW = 3, cbad.groups = 2;
  CHECK(nnc_gpu_conv2d_kernel(a, "cv", NNC_GPU_CONV_FORWARD, &cbad) == NULL); /* 2 groups do not divide 3 channels */
  nnc_gpu_reduce_shape rbad = {.rows = 3, .cols = 4, .cols_batched = true, .batch_max = 4};
  CHECK(nnc_gpu_row_reduce_kernel(a, "r", &rbad) == NULL); /* batched columns of several rows */
  nnc_arena_free(a);
}

/* --- (c) softmax, both schedules ---------------------------------------------------------------- */

typedef void (*sm_fn)(const nnc_rt *, float *, const float *, int64_t);

static void check_softmax(int64_t R, int64_t C, int64_t batch_max, int64_t n, bool gpu) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = gpu ? nnc_gpu_softmax_kernel(a, "sm", R, C, batch_max) : nnc_cpu_softmax_kernel(a, "sm", R, C, batch_max, 16);
  CHECK(k != NULL);
  if (!k || !verify(k)) return nnc_arena_free(a);
  int64_t rows = batch_max > 0 ? n * R : R;
  float *X = random_floats(rows * C, 3, 8.0f), *Y = nnc_xcalloc((size_t)(rows * C), sizeof *Y);
  float *ref = ref_softmax(X, rows, C);
  char what[160];
  for (int par = 0; par < 2 && ref; par++) {
    nnc_cg_lib *lib = compile(a, k, par == 1,
                              batch_max > 0 ? "void run(const nnc_rt *rt, float *y, const float *x, int64_t n) { sm(rt, y, x, n); }"
                                            : "void run(const nnc_rt *rt, float *y, const float *x, int64_t n) { (void)n; sm(rt, y, x); }",
                              NULL);
    if (!lib) break;
    sm_fn run = (sm_fn)(uintptr_t)nnc_cg_cc_sym(lib, "run");
    nnc_rt rt = {NNC_ABI_VERSION, NULL, NULL};
    memset(Y, 0, (size_t)(rows * C) * sizeof *Y);
    run(&rt, Y, X, n);
    snprintf(what, sizeof what, "%s softmax %lldx%lld%s n=%lld (%s)", gpu ? "gpu" : "cpu", (long long)R, (long long)C,
             batch_max ? " batched" : "", (long long)n, par ? "parallel blocks" : "serial blocks");
    compare(what, Y, ref, rows, C, 1e-7, 1e-5, gpu ? &worst_softmax : &worst_softmax_cpu);
    nnc_cg_cc_close(lib);
    if (!gpu) break; /* the CPU schedule has no blocks */
  }
  free(X), free(Y), free(ref);
  nnc_arena_free(a);
}

static void test_softmax(void) {
  const int64_t cols[] = {1, 31, 1000, 129};
  for (int gpu = 0; gpu < 2; gpu++) {
    for (int i = 0; i < 4; i++) check_softmax(3, cols[i], 0, 1, gpu);
    check_softmax(2, 45, 4, 3, gpu); /* rows n*2 at run time */
  }
  nnc_arena *a = nnc_arena_new();
  CHECK(nnc_gpu_softmax_kernel(a, "sm", 0, 4, 0) == NULL);
  CHECK(nnc_cpu_softmax_kernel(a, "sm", 4, 4, 0, 12) == NULL);
  nnc_arena_free(a);
}


/* --- graph nodes through nnc_gpu_sched_node: conv2d and its gradients, batched matmuls, row
 * reductions, each against the interpreter at n = B_max and a smaller n ----------------------- */

static double worst_conv, worst_reduce, worst_node_mm;

static nnc_node *typed_input(nnc_graph *g, const char *name, int rank, const int64_t *dims, int batch_axis) {
  nnc_node *n = nnc_node_new(g, NNC_OP_input, 0, NULL, (nnc_loc){0});
  n->type = nnc_type_make(NNC_F32, rank, dims, batch_axis);
  n->name = name;
  return n;
}

static nnc_node *typed_op(nnc_graph *g, nnc_op o, nnc_node *x, nnc_node *y) {
  nnc_node *in[2] = {x, y};
  return nnc_node_new(g, o, y ? 2 : 1, in, (nnc_loc){0});
}

static bool infer(nnc_node *n) {
  char err[256];
  bool ok = nnc_infer_type(n, err, sizeof err);
  CHECK_MSG(ok, "reference node: %s", err);
  return ok;
}

typedef void (*node_fn)(const nnc_rt *, float *, const float *, const float *, int64_t);

/* The schedule of node nd (inputs x, optional y) emulated (serial and parallel blocks) and
 * compared with the interpreter at batch n = B_max and, when B_max > 1, n = n2; `what` names
 * the case. */
static void check_node(nnc_module *m, nnc_graph *g, nnc_node *nd, int64_t n2, const char *what, double *worst) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_gpu_sched_node(a, m, nd);
  CHECK_MSG(k != NULL, "%s: no GPU schedule", what);
  if (!k || !verify(k)) return nnc_arena_free(a);
  CHECK_MSG(strstr(k->comment, "shared memory") != NULL, "%s: %s", what, k->comment);
  int nin = nd->ninputs;
  char wrapper[512];
  snprintf(wrapper, sizeof wrapper,
           "void run(const nnc_rt *rt, float *o, const float *x, const float *y, int64_t n) { (void)y; (void)n; %s(rt, o, x%s%s); }",
           k->name, nin > 1 ? ", y" : "", k->uses_scalar[NNC_LSC_N] ? ", n" : "");
  for (int par = 0; par < 2; par++) {
    nnc_cg_lib *lib = compile(a, k, par == 1, wrapper, NULL);
    if (!lib) break;
    node_fn run = (node_fn)(uintptr_t)nnc_cg_cc_sym(lib, "run");
    int64_t ns[2] = {m->batch_max, n2};
    for (int r = 0; r < (m->batch_max > 1 ? 2 : 1); r++) {
      int64_t n = ns[r];
      float *in[2] = {NULL, NULL};
      nnc_tensor t[2];
      nnc_interp_binding bind[2];
      for (int j = 0; j < nin; j++) {
        const nnc_node *x = nd->inputs[j];
        t[j] = (nnc_tensor){x->type, n, false, NULL};
        t[j].data = in[j] = random_floats(nnc_tensor_elements(&t[j]), (uint32_t)(11 + j), 1.0f);
        bind[j] = (nnc_interp_binding){x->name, &t[j]};
      }
      nnc_tensor out = {0};
      nnc_interp_env env = {n, bind, nin};
      char err[512];
      bool ok = nnc_interp_run(m, g, NNC_INTERP_F32, &env, &out, NULL, err, sizeof err);
      CHECK_MSG(ok, "%s: interpreter: %s", what, err);
      int64_t count = ok ? nnc_tensor_elements(&out) : 0;
      float *got = nnc_xcalloc((size_t)(count > 0 ? count : 1), sizeof *got);
      for (int64_t i = 0; i < count; i++) got[i] = NAN; /* every element must be written */
      nnc_rt rt = {NNC_ABI_VERSION, NULL, NULL};
      if (ok) run(&rt, got, in[0], in[1], n);
      char full[300];
      snprintf(full, sizeof full, "%s n=%lld (%s blocks)", what, (long long)n, par ? "parallel" : "serial");
      if (ok) compare(full, got, out.data, 1, count, 1e-5, 1e-5, worst);
      free(got), free(in[0]), free(in[1]), free(out.data);
    }
    nnc_cg_cc_close(lib);
  }
  nnc_arena_free(a);
}

typedef struct conv_case {
  int64_t N, C, H, W, O, KH, KW, sy, sx, py, px, dy, dx, groups, bmax; /* bmax 0: no batch axis */
} conv_case;

static void set_conv_attrs(nnc_node *n, const conv_case *c) {
  nnc_node_set_ints(n, NNC_ATTR_stride, 2, (int64_t[]){c->sy, c->sx});
  nnc_node_set_ints(n, NNC_ATTR_padding, 2, (int64_t[]){c->py, c->px});
  nnc_node_set_ints(n, NNC_ATTR_dilation, 2, (int64_t[]){c->dy, c->dx});
  nnc_node_set_int(n, NNC_ATTR_groups, c->groups);
}

/* conv2d, conv2d_input_grad and conv2d_weight_grad of one geometry, at n = B_max and n = 1. */
static void check_conv(const conv_case *c) {
  for (int which = 0; which < 3; which++) {
    nnc_module *m = nnc_module_new("conv");
    m->batch_max = c->bmax > 0 ? c->bmax : 1;
    nnc_graph *g = nnc_graph_new(m->arena, "forward");
    int ba = c->bmax > 0 ? 0 : -1;
    nnc_node *x = typed_input(g, "x", 4, (int64_t[]){c->N, c->C, c->H, c->W}, ba);
    nnc_node *w = typed_input(g, "w", 4, (int64_t[]){c->O, c->C / c->groups, c->KH, c->KW}, -1);
    nnc_node *y = typed_op(g, NNC_OP_conv2d, x, w);
    set_conv_attrs(y, c);
    if (!infer(y)) return nnc_module_free(m);
    nnc_node *nd = y;
    if (which > 0) {
      nnc_node *dy = typed_input(g, "dy", 4, y->type.dims, ba);
      nd = typed_op(g, which == 1 ? NNC_OP_conv2d_input_grad : NNC_OP_conv2d_weight_grad, dy, which == 1 ? w : x);
      set_conv_attrs(nd, c);
      if (which == 1) nnc_node_set_ints(nd, NNC_ATTR_in_shape, 2, (int64_t[]){c->H, c->W});
      else nnc_node_set_ints(nd, NNC_ATTR_kernel, 2, (int64_t[]){c->KH, c->KW});
      if (!infer(nd)) return nnc_module_free(m);
    }
    nnc_graph_add_output(g, "out", nd);
    char what[256];
    static const char *const names[] = {"conv2d", "conv2d_input_grad", "conv2d_weight_grad"};
    snprintf(what, sizeof what, "%s %lldx%lldx%lldx%lld * %lldx%lldx%lld stride %lldx%lld pad %lldx%lld dil %lldx%lld groups %lld",
             names[which], (long long)c->N, (long long)c->C, (long long)c->H, (long long)c->W, (long long)c->O,
             (long long)c->KH, (long long)c->KW, (long long)c->sy, (long long)c->sx, (long long)c->py, (long long)c->px,
             (long long)c->dy, (long long)c->dx, (long long)c->groups);
    check_node(m, g, nd, 1, what, &worst_conv);
    nnc_module_free(m);
  }
}

static void test_conv(void) {
  static const conv_case cases[] = {
      {1, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3},    /* same padding, batched */
      {1, 4, 9, 8, 6, 3, 2, 2, 1, 1, 0, 1, 2, 2, 2},    /* stride, dilation, 2 groups */
      {2, 4, 10, 10, 4, 3, 3, 2, 2, 2, 2, 2, 2, 4, 0},  /* depthwise, no batch axis */
      {1, 70, 9, 9, 65, 1, 1, 1, 1, 0, 0, 1, 1, 1, 2},  /* 1x1: several tiles along M and K */
      {1, 1, 28, 28, 8, 5, 5, 1, 1, 2, 2, 1, 1, 1, 2},  /* one input channel, several tiles along N */
      {1, 2, 5, 6, 3, 2, 3, 3, 2, 0, 1, 1, 1, 1, 2},    /* a stride that skips input rows */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_conv(&cases[i]);
}

/* matmul nodes: [B*m, K] x [K, N], the weight gradient x^T dy over the batch, leading batch
 * axes with a shared or a per-product B. */
static void check_mm_node(int ra, const int64_t *ad, int aba, int rb, const int64_t *bd, int bba, bool ta, bool tb,
                          int64_t bmax, const char *what) {
  nnc_module *m = nnc_module_new("mm");
  m->batch_max = bmax;
  nnc_graph *g = nnc_graph_new(m->arena, "forward");
  nnc_node *x = typed_input(g, "x", ra, ad, aba), *y = typed_input(g, "y", rb, bd, bba);
  nnc_node *mm = typed_op(g, NNC_OP_matmul, x, y);
  if (ta) nnc_node_set_int(mm, NNC_ATTR_trans_a, 1);
  if (tb) nnc_node_set_int(mm, NNC_ATTR_trans_b, 1);
  if (infer(mm)) {
    nnc_graph_add_output(g, "out", mm);
    check_node(m, g, mm, bmax - 1, what, &worst_node_mm);
  }
  nnc_module_free(m);
}

static void test_matmul_nodes(void) {
  check_mm_node(2, (int64_t[]){3, 33}, 0, 2, (int64_t[]){33, 70}, -1, false, false, 4, "matmul rows n*3");
  check_mm_node(2, (int64_t[]){1, 33}, 0, 2, (int64_t[]){70, 33}, -1, false, true, 4, "matmul rows n, b transposed");
  check_mm_node(2, (int64_t[]){5, 70}, 0, 2, (int64_t[]){5, 10}, 0, true, false, 4, "weight gradient: K n*5");
  check_mm_node(4, (int64_t[]){1, 2, 9, 8}, 0, 4, (int64_t[]){1, 2, 8, 9}, 0, false, false, 3, "attention scores");
  check_mm_node(4, (int64_t[]){1, 2, 9, 9}, 0, 4, (int64_t[]){1, 2, 9, 8}, 0, false, false, 3, "attention values");
  check_mm_node(3, (int64_t[]){1, 5, 8}, 0, 3, (int64_t[]){1, 5, 9}, 0, true, false, 3, "batched, a transposed");
  check_mm_node(3, (int64_t[]){1, 70, 8}, 0, 2, (int64_t[]){8, 9}, -1, false, false, 3, "batched, shared b");
  check_mm_node(3, (int64_t[]){2, 30, 8}, -1, 3, (int64_t[]){2, 9, 8}, -1, false, true, 2, "no batch axis, 2 products");
}

static void check_reduce_node(nnc_op op, int rank, const int64_t *dims, int ba, int naxes, const int64_t *axes, int64_t bmax,
                              const char *what) {
  nnc_module *m = nnc_module_new("red");
  m->batch_max = bmax;
  nnc_graph *g = nnc_graph_new(m->arena, "forward");
  nnc_node *x = typed_input(g, "x", rank, dims, ba);
  nnc_node *r = typed_op(g, op, x, NULL);
  nnc_node_set_ints(r, NNC_ATTR_axes, naxes, axes);
  if (infer(r)) {
    nnc_graph_add_output(g, "out", r);
    check_node(m, g, r, 1, what, &worst_reduce);
  }
  nnc_module_free(m);
}

static void test_reduce_nodes(void) {
  for (int mx = 0; mx < 2; mx++) {
    nnc_op op = mx ? NNC_OP_reduce_max : NNC_OP_reduce_sum;
    check_reduce_node(op, 2, (int64_t[]){1, 10}, 0, 1, (int64_t[]){1}, 5, mx ? "max of rows of 10" : "sum of rows of 10");
    check_reduce_node(op, 2, (int64_t[]){3, 1000}, -1, 1, (int64_t[]){1}, 1, mx ? "max of rows of 1000" : "sum of rows of 1000");
    check_reduce_node(op, 3, (int64_t[]){1, 7, 33}, 0, 2, (int64_t[]){1, 2}, 3, mx ? "max over two axes" : "sum over two axes");
    check_reduce_node(op, 1, (int64_t[]){1}, 0, 1, (int64_t[]){0}, 7, mx ? "max over the batch" : "sum over the batch");
    check_reduce_node(op, 2, (int64_t[]){4, 2000}, -1, 1, (int64_t[]){1}, 1, mx ? "max of rows of 2000" : "sum of rows of 2000");
  }
  /* not a suffix of the axes: the flat schedule */
  nnc_module *m = nnc_module_new("red");
  m->batch_max = 2;
  nnc_graph *g = nnc_graph_new(m->arena, "forward");
  nnc_node *r = typed_op(g, NNC_OP_reduce_sum, typed_input(g, "x", 2, (int64_t[]){1, 10}, 0), NULL);
  nnc_node_set_ints(r, NNC_ATTR_axes, 1, (int64_t[]){0});
  nnc_arena *a = nnc_arena_new();
  if (infer(r)) CHECK(nnc_gpu_sched_node(a, m, r) == NULL);
  nnc_arena_free(a);
  nnc_module_free(m);
}

/* --- the emulator's rules on small kernels ------------------------------------------------------ */

static nnc_lstmt *thread_loop(nnc_kernel *k, nnc_lvar *t, int64_t count, int axis, nnc_lstmt *body) {
  nnc_lstmt *s = nnc_ls_for(k, t, nnc_le_int(k, 0), nnc_le_int(k, count), 1, NNC_LOOP_GPU_THREAD, body);
  s->axis = axis;
  return s;
}

/* out[t] = the value thread t ^ mask computed, and a value kept across a barrier, with 48
 * threads (a partial second warp: partners beyond the block give the thread its own value). */
static void test_shuffle_and_barrier(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "shfl");
  k->gpu = true;
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 48 * 3);
  nnc_lbuf *sh = nnc_lk_buf(k, "sh", NNC_F32, NNC_SCOPE_SHARED, 48);
  nnc_lvar *t = nnc_lk_var(k, "t", nnc_lt(NNC_I64, 1)), *v = nnc_lk_var(k, "v", nnc_lt(NNC_F32, 1));
  nnc_lvar *w = nnc_lk_var(k, "w", nnc_lt(NNC_F32, 1)), *odd = nnc_lk_var(k, "odd", nnc_lt(NNC_BOOL, 1));
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_lexpr *tf = nnc_le_cast(k, nnc_lt(NNC_F32, 1), nnc_le_thread(k, 0));
  nnc_ls_push(k, body, nnc_ls_let(k, v, tf));
  nnc_ls_push(k, body, nnc_ls_let(k, odd, nnc_le_bin(k, NNC_LB_EQ, nnc_le_bin(k, NNC_LB_MOD, nnc_le_var(k, t), nnc_le_int(k, 2)), nnc_le_int(k, 1))));
  nnc_ls_push(k, body, nnc_ls_store(k, sh, nnc_le_var(k, t), nnc_le_var(k, v), NULL));
  nnc_ls_push(k, body, nnc_ls_let(k, w, nnc_le_shuffle_xor(k, nnc_le_var(k, v), nnc_le_int(k, 5))));
  nnc_ls_push(k, body, nnc_ls_barrier(k));
  /* after the barrier: the neighbour's shared value, w and odd from before it */
  nnc_lexpr *nb = nnc_le_load(k, sh, nnc_le_bin(k, NNC_LB_MOD, nnc_le_bin(k, NNC_LB_ADD, nnc_le_var(k, t), nnc_le_int(k, 1)), nnc_le_int(k, 48)), 1, NULL);
  nnc_lexpr *row = nnc_le_bin(k, NNC_LB_MUL, nnc_le_var(k, t), nnc_le_int(k, 3));
  nnc_ls_push(k, body, nnc_ls_store(k, out, row, nb, NULL));
  nnc_ls_push(k, body, nnc_ls_store(k, out, nnc_le_bin(k, NNC_LB_ADD, row, nnc_le_int(k, 1)), nnc_le_var(k, w), NULL));
  nnc_ls_push(k, body, nnc_ls_store(k, out, nnc_le_bin(k, NNC_LB_ADD, row, nnc_le_int(k, 2)),
                                    nnc_le_select(k, nnc_le_var(k, odd), nnc_le_const(k, nnc_lt(NNC_F32, 1), 1), nnc_le_const(k, nnc_lt(NNC_F32, 1), 0)), NULL));
  nnc_ls_push(k, k->body, thread_loop(k, t, 48, 0, body));
  nnc_lk_finish(k);
  if (!verify(k)) return nnc_arena_free(a);
  nnc_cg_lib *lib = compile(a, k, false, "void run(const nnc_rt *rt, float *o) { shfl(rt, o); }", NULL);
  if (lib) {
    void (*run)(const nnc_rt *, float *) = (void (*)(const nnc_rt *, float *))(uintptr_t)nnc_cg_cc_sym(lib, "run");
    float o[48 * 3];
    run(NULL, o);
    for (int i = 0; i < 48; i++) {
      int partner = (i ^ 5) < 48 ? i ^ 5 : i;
      CHECK_MSG(o[3 * i] == (float)((i + 1) % 48), "thread %d: shared neighbour %g", i, o[3 * i]);
      CHECK_MSG(o[3 * i + 1] == (float)partner, "thread %d: shuffle gave %g, not %d", i, o[3 * i + 1], partner);
      CHECK_MSG(o[3 * i + 2] == (float)(i & 1), "thread %d: bool kept across the barrier %g", i, o[3 * i + 2]);
    }
    nnc_cg_cc_close(lib);
  }
  nnc_arena_free(a);
}

/* Shuffles and barriers inside an if are refused by the verifier and by the emulator. */
static void test_rejections(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "bad");
  k->gpu = true;
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 32);
  nnc_lvar *t = nnc_lk_var(k, "t", nnc_lt(NNC_I64, 1));
  nnc_lstmt *then = nnc_ls_block(k), *body = nnc_ls_block(k);
  nnc_lexpr *tf = nnc_le_cast(k, nnc_lt(NNC_F32, 1), nnc_le_var(k, t));
  nnc_ls_push(k, then, nnc_ls_store(k, out, nnc_le_var(k, t), nnc_le_shuffle_xor(k, tf, nnc_le_int(k, 1)), NULL));
  nnc_ls_push(k, body, nnc_ls_if(k, nnc_le_bin(k, NNC_LB_LT, nnc_le_var(k, t), nnc_le_int(k, 16)), then, NULL));
  nnc_ls_push(k, k->body, thread_loop(k, t, 32, 0, body));
  nnc_lk_finish(k);
  char *msg = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&msg, &len);
  nnc_diags d;
  nnc_diags_init(&d, f);
  CHECK(!nnc_lk_verify(k, &d));
  CHECK(nnc_phase_lower(a, k, NULL, &d) == NULL);
  fclose(f);
  CHECK_MSG(strstr(msg, "a shuffle must sit") && strstr(msg, "phase emulator"), "messages: %s", msg);
  free(msg);
  /* a shuffle mask beyond the warp */
  nnc_kernel *k2 = nnc_lk_new(a, "wide");
  k2->gpu = true;
  nnc_lbuf *o2 = nnc_lk_buf(k2, "out", NNC_F32, NNC_SCOPE_GLOBAL, 64);
  nnc_lvar *t2 = nnc_lk_var(k2, "t", nnc_lt(NNC_I64, 1));
  nnc_lstmt *b2 = nnc_ls_block(k2);
  nnc_ls_push(k2, b2, nnc_ls_store(k2, o2, nnc_le_var(k2, t2), nnc_le_shuffle_xor(k2, nnc_le_const(k2, nnc_lt(NNC_F32, 1), 1), nnc_le_int(k2, 32)), NULL));
  nnc_ls_push(k2, k2->body, thread_loop(k2, t2, 64, 0, b2));
  nnc_lk_finish(k2);
  msg = NULL;
  f = open_memstream(&msg, &len);
  nnc_diags_init(&d, f);
  CHECK(nnc_phase_lower(a, k2, NULL, &d) == NULL);
  fclose(f);
  CHECK_MSG(strstr(msg, "outside [0, 32)"), "messages: %s", msg);
  free(msg);
  /* a CPU kernel passes through unchanged */
  nnc_kernel *cpu = nnc_lk_new(a, "cpu");
  CHECK(nnc_phase_lower(a, cpu, NULL, &d) == cpu);
  nnc_arena_free(a);
}

/* --- the CPU softmax's throughput ---------------------------------------------------------------- */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void bench_softmax(void) {
  const int64_t R = 1000, C = 1000;
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_cpu_softmax_kernel(a, "sm", R, C, 0, 16);
  for (int omp = 0; omp < 2; omp++) {
    nnc_cg_lib *lib = compile(a, k, false, "void run(const nnc_rt *rt, float *y, const float *x, int64_t n) { (void)n; sm(rt, y, x); }",
                              omp ? "-fopenmp" : NULL);
    if (!lib) break;
    sm_fn run = (sm_fn)(uintptr_t)nnc_cg_cc_sym(lib, "run");
    float *X = random_floats(R * C, 5, 8.0f), *Y = nnc_xmalloc((size_t)(R * C) * sizeof *Y);
    nnc_rt rt = {NNC_ABI_VERSION, NULL, NULL};
    run(&rt, Y, X, 1);
    double best = 1e30;
    for (int rep = 0; rep < 20; rep++) {
      double t0 = now();
      run(&rt, Y, X, 1);
      best = fmin(best, now() - t0);
    }
    double bytes = 2.0 * (double)(R * C) * sizeof(float); /* one read of x, one write of y */
    printf("softmax 1000x1000 (CPU schedule, f32x16%s): %.3f ms, %.2f GB/s (x read once + y written)\n",
           omp ? ", OpenMP" : ", serial", best * 1e3, bytes / best / 1e9);
    free(X), free(Y);
    if (!omp) nnc_cg_cc_close(lib); /* libgomp's idle workers would outlive an unloaded libgomp */
  }
  nnc_arena_free(a);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
    bench_softmax();
    return check_summary();
  }
  test_shuffle_and_barrier();
  test_rejections();
  test_matmul();
  test_softmax();
  test_conv();
  test_matmul_nodes();
  test_reduce_nodes();
  printf("largest |a - b| against the interpreter: gpu matmul %.3g, gpu softmax %.3g, cpu softmax %.3g, conv %.3g, matmul "
         "nodes %.3g, reductions %.3g\n",
         worst_matmul, worst_softmax, worst_softmax_cpu, worst_conv, worst_node_mm, worst_reduce);
  return check_summary();
}
