/* Proof of expressiveness (a): the packed, register-tiled sgemm of loop_sgemm.h verifies, prints
 * to C that compiles with -Werror, and matches the interpreter's matmul on square, MLP and
 * ragged shapes (rtol 1e-5, atol scaled by sqrt(K)), run once inline and once through a
 * parallel_for that splits the row tiles unevenly; with 16 lanes (6x32 tiles), 8 and 4, and the
 * host target's lanes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "codegen/c.h"
#include "codegen/cc.h"
#include "ir/compare.h"
#include "ir/interp.h"
#include "ir/target.h"
#include "loop_sgemm.h"
#include "uneven_pool.h"
#include "runtime/abi.h"

typedef void (*sgemm_fn)(const nnc_rt *, const float *, const float *, float *, float *);

static nnc_cg_lib *compile_sgemm(sgemm_ir *g) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fprintf(f, "#include \"runtime/abi.h\"\n");
  const nnc_kernel *ks[1] = {g->k};
  nnc_cg_c_prelude(f, ks, 1);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_c_kernel(f, g->k, &d);
  fprintf(f, "void run(const nnc_rt *rt, const float *A, const float *B, float *C, float *pack) { %s(rt, A, B, C, pack); }\n",
          g->k->name);
  fclose(f);
  CHECK(ok);
  char cwd[1024], flags[1100], err[8192];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  snprintf(flags, sizeof flags, "-I%s", cwd);
  nnc_diags why;
  nnc_cg_lib *lib = ok ? nnc_cg_cc_compile(text, flags, nnc_diags_init_buffer(&why, err, sizeof err)) : NULL;
  CHECK_MSG(lib, "%s", err);
  free(text);
  return lib;
}

/* The interpreter's matmul of A[M,K] and B[K,N]. */
static nnc_tensor interp_matmul(const float *A, const float *B, int64_t M, int64_t N, int64_t K) {
  nnc_module *m = nnc_module_new("mm");
  m->batch_max = 1;
  nnc_graph *g = nnc_graph_new(m->arena, "forward");
  nnc_type ta = nnc_type_make(NNC_F32, 2, (int64_t[]){M, K}, -1), tb = nnc_type_make(NNC_F32, 2, (int64_t[]){K, N}, -1);
  nnc_node *a = nnc_node_new(g, NNC_OP_input, 0, NULL, (nnc_loc){0}), *b = nnc_node_new(g, NNC_OP_input, 0, NULL, (nnc_loc){0});
  a->type = ta, a->name = "a", b->type = tb, b->name = "b";
  nnc_node *mm = nnc_node_new(g, NNC_OP_matmul, 2, (nnc_node *[]){a, b}, (nnc_loc){0});
  mm->type = nnc_type_make(NNC_F32, 2, (int64_t[]){M, N}, -1);
  nnc_graph_add_output(g, "c", mm);
  nnc_tensor xa = {ta, 1, false, (void *)A}, xb = {tb, 1, false, (void *)B}, out = {0};
  nnc_interp_binding bind[2] = {{"a", &xa}, {"b", &xb}};
  nnc_interp_env env = {1, bind, 2};
  char err[512];
  bool ok = nnc_interp_run(m, g, NNC_INTERP_F32, &env, &out, NULL, err, sizeof err);
  CHECK_MSG(ok, "%s", err);
  nnc_module_free(m);
  return out;
}

static void check_shape_lanes(int64_t M, int64_t N, int64_t K, int lanes) {
  nnc_arena *a = nnc_arena_new();
  char name[64];
  snprintf(name, sizeof name, "sgemm_%lldx%lldx%lld_f32x%d", (long long)M, (long long)N, (long long)K, lanes);
  sgemm_ir g = sgemm_build_lanes(a, name, M, N, K, lanes);
  char *diag = NULL;
  size_t dlen = 0;
  FILE *df = open_memstream(&diag, &dlen);
  nnc_diags d;
  nnc_diags_init(&d, df);
  bool verified = nnc_lk_verify(g.k, &d);
  fclose(df);
  CHECK_MSG(verified, "%s: %s", name, diag);
  free(diag);
  nnc_cg_lib *lib = compile_sgemm(&g);
  sgemm_fn run = (sgemm_fn)nnc_cg_cc_sym(lib, "run");
  CHECK(run);
  if (run) {
    float *A = malloc((size_t)(M * K) * sizeof *A), *B = malloc((size_t)(K * N) * sizeof *B);
    float *C = malloc((size_t)(M * N) * sizeof *C), *pack = malloc((size_t)(K * g.nr) * sizeof *pack);
    uint32_t s = 12345;
    for (int64_t i = 0; i < M * K; i++) s = s * 1664525u + 1013904223u, A[i] = (float)(s >> 8) * 0x1p-24f * 2 - 1;
    for (int64_t i = 0; i < K * N; i++) s = s * 1664525u + 1013904223u, B[i] = (float)(s >> 8) * 0x1p-24f * 2 - 1;
    nnc_tensor ref = interp_matmul(A, B, M, N, K);
    nnc_tensor got = {ref.type, 1, false, C};
    for (int mode = 0; mode < 2; mode++) {
      for (int64_t i = 0; i < M * N; i++) C[i] = NAN;
      nnc_rt rt = {NNC_ABI_VERSION, NULL, uneven};
      run(mode ? &rt : NULL, A, B, C, pack);
      nnc_compare_result r = nnc_compare_tensors(&got, &ref, 1e-6 * sqrt((double)K), 1e-5);
      char buf[512];
      CHECK_MSG(r.ok, "%s (%s): %s", name, mode ? "parallel_for" : "inline", nnc_compare_str(&r, ref.type.dims, 2, buf, sizeof buf));
    }
    nnc_tensor_free(&ref);
    free(A), free(B), free(C), free(pack);
  }
  nnc_cg_cc_close(lib);
  nnc_arena_free(a);
}

static void check_shape(int64_t M, int64_t N, int64_t K) { check_shape_lanes(M, N, K, SGEMM_VL); }

int main(void) {
  check_shape(64, 256, 784);  /* the MLP's first layer */
  check_shape(256, 256, 256); /* a square */
  check_shape(100, 70, 33);   /* ragged: 4 rest rows, a 6-column masked panel */
  check_shape(5, 20, 3);      /* rest rows only, one masked panel */
  /* the AVX2 and SSE/NEON tiles (6x16 of f32x8, 6x8 of f32x4), and the host target's */
  check_shape_lanes(100, 70, 33, 8);
  check_shape_lanes(64, 256, 784, 8);
  check_shape_lanes(100, 70, 33, 4);
  check_shape_lanes(13, 37, 50, nnc_target_host().f32_lanes);
  CHECK(chunk_calls > 0);
  return check_summary();
}
