/* The CPU matmul and convolution schedules (passes/lower_matmul.c): a matmul node lowered with vector lanes
 * verifies, prints to C that compiles with -Werror, is register-tiled (vector accumulators),
 * and matches the interpreter's matmul bit for bit (every result sums its products in k order,
 * unfused), in the axpy form (b not transposed) and the packed form (b transposed). Sizes are
 * not multiples of the tiles (rest rows, masked or zero-filled last panels, a last chunk of k
 * in the packed form); the batch scales the rows, the contraction (a weight gradient) or a
 * batched product's outer axis, run at B_max and at a smaller n, inline and through a
 * parallel_for that splits the loop unevenly; with 4, 8 and 16 lanes. Convolutions (forward,
 * input gradient, weight gradient) as implicit GEMM on odd sizes with stride, padding and
 * dilation, against the interpreter: equal values (a padded tap adds +-0 where the
 * interpreter skips it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "codegen/c.h"
#include "codegen/cc.h"
#include "ir/compare.h"
#include "ir/interp.h"
#include "passes/lower.h"
#include "runtime/abi.h"
#include "uneven_pool.h"

typedef void (*mm_fn)(const nnc_rt *, float *, const float *, const float *, int64_t);

typedef struct mm_case {
  const char *name;
  int rank;
  int64_t a[3], b[3], o[3]; /* dims; batch axes below */
  int ba, bb, bo;           /* batch axes (-1: none) */
  bool ta, tb;
  int64_t bmax;
} mm_case;

static nnc_cg_lib *compile_kernel(const nnc_kernel *k) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fprintf(f, "#include \"runtime/abi.h\"\n");
  nnc_cg_c_prelude(f, &k, 1);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_c_kernel(f, k, &d);
  fprintf(f, "void run(const nnc_rt *rt, float *o, const float *a, const float *b, int64_t n) { (void)n; %s(rt, o, a, b%s); }\n",
          k->name, k->uses_scalar[NNC_LSC_N] ? ", n" : "");
  fclose(f);
  CHECK(ok);
  char cwd[1024], flags[1100], err[8192] = "";
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  snprintf(flags, sizeof flags, "-I%s", cwd);
  nnc_diags why;
  nnc_cg_lib *lib = ok ? nnc_cg_cc_compile(text, flags, nnc_diags_init_buffer(&why, err, sizeof err)) : NULL;
  CHECK_MSG(lib, "%s", err);
  free(text);
  return lib;
}

static void fill(float *x, int64_t count, uint32_t s) {
  for (int64_t i = 0; i < count; i++) s = s * 1664525u + 1013904223u, x[i] = (float)(s >> 8) * 0x1p-24f * 2 - 1;
}

static bool has_vectors(const nnc_kernel *k) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  nnc_lk_print(f, k);
  fclose(f);
  bool v = strstr(text, ": f32x") != NULL;
  free(text);
  return v;
}

/* Lowers node out of g (inputs a and b bound to A and B), checks the kernel, runs it at each n
 * and compares with the interpreter: equal values. */
static void check_node(nnc_module *m, nnc_graph *g, nnc_node *out, nnc_node *a, nnc_node *b, const char *name, int lanes) {
  nnc_arena *ar = nnc_arena_new();
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_lower_opts o = {.target = NNC_LOWER_CPU, .lanes = lanes};
  nnc_kernel *k = nnc_lower_node(ar, m, out, &o, &d);
  CHECK_MSG(k != NULL, "%s: does not lower", name);
  if (!k) {
    nnc_arena_free(ar);
    return;
  }
  CHECK_MSG(nnc_lk_verify(k, &d), "%s: the kernel does not verify", name);
  CHECK_MSG(has_vectors(k), "%s: not register-tiled", name);
  nnc_cg_lib *lib = compile_kernel(k);
  mm_fn run = lib ? (mm_fn)nnc_cg_cc_sym(lib, "run") : NULL;
  CHECK(run);
  int64_t bmax = m->batch_max;
  int64_t na = nnc_type_elements(&a->type, bmax), nb = nnc_type_elements(&b->type, bmax), no = nnc_type_elements(&out->type, bmax);
  float *A = malloc(sizeof *A * (size_t)na), *B = malloc(sizeof *B * (size_t)nb), *C = malloc(sizeof *C * (size_t)no);
  fill(A, na, 12345), fill(B, nb, 777);
  int64_t ns[2] = {bmax, bmax > 2 ? bmax / 2 + 1 : 1};
  for (int t = 0; run && t < 2; t++) {
    int64_t n = ns[t];
    nnc_tensor xa = {a->type, n, false, A}, xb = {b->type, n, false, B}, ref = {0};
    nnc_interp_binding bind[2] = {{"a", &xa}, {"b", &xb}};
    nnc_interp_env env = {n, bind, 2};
    char err[512];
    bool ok = nnc_interp_run(m, g, NNC_INTERP_F32, &env, &ref, NULL, err, sizeof err);
    CHECK_MSG(ok, "%s: %s", name, err);
    if (!ok) continue;
    nnc_tensor got = {out->type, n, false, C};
    for (int mode = 0; mode < 2; mode++) {
      for (int64_t i = 0; i < no; i++) C[i] = NAN;
      nnc_rt rt = {NNC_ABI_VERSION, NULL, uneven};
      run(mode ? &rt : NULL, C, A, B, n);
      nnc_compare_result r = nnc_compare_tensors(&got, &ref, 0, 0); /* the same values */
      char buf[512];
      CHECK_MSG(r.ok, "%s n=%lld (%s): %s", name, (long long)n, mode ? "parallel_for" : "inline",
                nnc_compare_str(&r, ref.type.dims, ref.type.rank, buf, sizeof buf));
    }
    nnc_tensor_free(&ref);
  }
  free(A), free(B), free(C);
  if (lib) nnc_cg_cc_close(lib);
  nnc_arena_free(ar);
}

static nnc_node *input(nnc_graph *g, const char *name, nnc_type t) {
  nnc_node *x = nnc_node_new(g, NNC_OP_input, 0, NULL, (nnc_loc){0});
  x->type = t, x->name = name;
  return x;
}

static void check_case(const mm_case *c, int lanes) {
  nnc_module *m = nnc_module_new("mm");
  m->batch_max = c->bmax;
  nnc_graph *g = nnc_graph_new(m->arena, "forward");
  nnc_node *a = input(g, "a", nnc_type_make(NNC_F32, c->rank, c->a, c->ba));
  nnc_node *b = input(g, "b", nnc_type_make(NNC_F32, c->rank == 3 && c->b[2] == 0 ? 2 : c->rank, c->b, c->bb));
  nnc_node *mm = nnc_node_new(g, NNC_OP_matmul, 2, (nnc_node *[]){a, b}, (nnc_loc){0});
  if (c->ta) nnc_node_set_int(mm, NNC_ATTR_trans_a, 1);
  if (c->tb) nnc_node_set_int(mm, NNC_ATTR_trans_b, 1);
  mm->type = nnc_type_make(NNC_F32, c->rank, c->o, c->bo);
  nnc_graph_add_output(g, "c", mm);
  char name[96];
  snprintf(name, sizeof name, "%s f32x%d", c->name, lanes);
  check_node(m, g, mm, a, b, name, lanes);
  nnc_module_free(m);
}

typedef struct conv_case {
  int64_t c, h, w, o, k, stride, pad, dil, bmax;
} conv_case;

/* conv2d(x, w), conv2d_input_grad(dy, w) and conv2d_weight_grad(dy, x) of one geometry. */
static void check_conv(const conv_case *cc, int lanes) {
  for (int op = 0; op < 3; op++) {
    nnc_module *m = nnc_module_new("conv");
    m->batch_max = cc->bmax;
    nnc_graph *g = nnc_graph_new(m->arena, "forward");
    int64_t ho = (cc->h + 2 * cc->pad - cc->dil * (cc->k - 1) - 1) / cc->stride + 1;
    int64_t wo = (cc->w + 2 * cc->pad - cc->dil * (cc->k - 1) - 1) / cc->stride + 1;
    nnc_type tx = nnc_type_make(NNC_F32, 4, (int64_t[]){1, cc->c, cc->h, cc->w}, 0);
    nnc_type tw = nnc_type_make(NNC_F32, 4, (int64_t[]){cc->o, cc->c, cc->k, cc->k}, -1);
    nnc_type ty = nnc_type_make(NNC_F32, 4, (int64_t[]){1, cc->o, ho, wo}, 0);
    static const nnc_op ops[3] = {NNC_OP_conv2d, NNC_OP_conv2d_input_grad, NNC_OP_conv2d_weight_grad};
    static const char *names[3] = {"conv2d", "conv2d_input_grad", "conv2d_weight_grad"};
    nnc_node *a = input(g, "a", op == 0 ? tx : ty), *b = input(g, "b", op == 2 ? tx : tw);
    nnc_node *nd = nnc_node_new(g, ops[op], 2, (nnc_node *[]){a, b}, (nnc_loc){0});
    nnc_node_set_ints(nd, NNC_ATTR_stride, 2, (int64_t[]){cc->stride, cc->stride});
    nnc_node_set_ints(nd, NNC_ATTR_padding, 2, (int64_t[]){cc->pad, cc->pad});
    nnc_node_set_ints(nd, NNC_ATTR_dilation, 2, (int64_t[]){cc->dil, cc->dil});
    nnc_node_set_int(nd, NNC_ATTR_groups, 1);
    if (op == 1) nnc_node_set_ints(nd, NNC_ATTR_in_shape, 2, (int64_t[]){cc->h, cc->w});
    if (op == 2) nnc_node_set_ints(nd, NNC_ATTR_kernel, 2, (int64_t[]){cc->k, cc->k});
    char err[256], name[128];
    bool typed = nnc_infer_type(nd, err, sizeof err);
    CHECK_MSG(typed, "%s: %s", names[op], err);
    snprintf(name, sizeof name, "%s c%lld %lldx%lld o%lld k%lld s%lld p%lld d%lld f32x%d", names[op], (long long)cc->c,
             (long long)cc->h, (long long)cc->w, (long long)cc->o, (long long)cc->k, (long long)cc->stride,
             (long long)cc->pad, (long long)cc->dil, lanes);
    if (typed) {
      nnc_graph_add_output(g, "c", nd);
      check_node(m, g, nd, a, b, name, lanes);
    }
    nnc_module_free(m);
  }
}

int main(void) {
  const mm_case cases[] = {
      /* axpy form: rest rows (13 = 2 tiles of 6 + 1), a masked last panel (37 columns) */
      {"a[13,50] b[50,37]", 2, {13, 50}, {50, 37}, {13, 37}, -1, -1, -1, false, false, 1},
      /* a transposed: strided scalar loads of a */
      {"a[50,13]^T b[50,37]", 2, {50, 13}, {50, 37}, {13, 37}, -1, -1, -1, true, false, 1},
      /* the batch scales the rows: tiles under a guard, the last rows one at a time */
      {"a[B*3,20] b[20,9]", 2, {3, 20}, {20, 9}, {3, 9}, 0, -1, 0, false, false, 7},
      /* a weight gradient: the batch scales the contraction */
      {"a[B*4,11]^T b[B*4,19]", 2, {4, 11}, {4, 19}, {11, 19}, 0, 0, -1, true, false, 5},
      /* packed form: b transposed (a Linear layer), a zero-filled last panel; k in chunks of
       * 4096 / panel width (256 at 8 lanes) and a last partial chunk; the batch scales the
       * rows (a guarded last block); both transposed */
      {"a[13,50] b[37,50]^T", 2, {13, 50}, {37, 50}, {13, 37}, -1, -1, -1, false, true, 1},
      {"a[29,600] b[21,600]^T", 2, {29, 600}, {21, 600}, {29, 21}, -1, -1, -1, false, true, 1},
      {"a[B*2,9] b[6,9]^T", 2, {2, 9}, {6, 9}, {2, 6}, 0, -1, 0, false, true, 30},
      {"a[B*3,20] b[32,20]^T", 2, {3, 20}, {32, 20}, {3, 32}, 0, -1, 0, false, true, 10},
      {"a[50,13]^T b[37,50]^T", 2, {50, 13}, {37, 50}, {13, 37}, -1, -1, -1, true, true, 1},
      /* batched: b per batch (parallel over the batch), and b shared */
      {"a[B,7,10] b[B,10,21]", 3, {1, 7, 10}, {1, 10, 21}, {1, 7, 21}, 0, 0, 0, false, false, 4},
      {"a[B,5,12] b[B,9,12]^T", 3, {1, 5, 12}, {1, 9, 12}, {1, 5, 9}, 0, 0, 0, false, true, 3},
      {"a[2,7,10] b[10,21]", 3, {2, 7, 10}, {10, 21, 0}, {2, 7, 21}, -1, -1, -1, false, false, 1},
  };
  int lanes[] = {4, 8, 16};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    for (int l = 0; l < 3; l++) check_case(&cases[i], lanes[l]);
  /* fashion_cnn's second layer, shrunk; lenet's first (5x5, padding 2) on a ragged image;
   * stride 2 with padding and dilation; an image whose output positions (26 x 26) take more
   * than a chunk of local memory (the weight gradient's k in chunks of output rows) */
  const conv_case convs[] = {{5, 9, 9, 19, 3, 1, 0, 1, 3}, {3, 11, 8, 7, 5, 1, 2, 1, 4}, {2, 10, 9, 5, 3, 2, 1, 2, 2},
                             {1, 28, 28, 6, 3, 1, 0, 1, 3}};
  for (size_t i = 0; i < sizeof convs / sizeof *convs; i++)
    for (int l = 0; l < 3; l++) check_conv(&convs[i], lanes[l]);
  CHECK(chunk_calls > 0);
  return check_summary();
}
