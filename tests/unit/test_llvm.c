/* The LLVM backend on hand-built loop IR kernels, JIT-compiled and compared with the C printer
 * (compiled with cc) and the interpreter: an elementwise kernel with a masked tail, a row
 * reduction with hreduce and rng, a kernel of mixed operations (floordiv/mod, min/max, casts,
 * math, select, abs), a parallel loop split unevenly, the packed sgemm of loop_sgemm.h. Then the
 * object cache: a second compilation hits, a corrupt entry is detected and replaced, two
 * processes compiling into one cache leave it valid. Also the module's text and object output,
 * and a kernel of 300 buffer parameters.
 *
 *   test_llvm                     all of it (ctest unit_llvm)
 *   test_llvm --cache-worker DIR  one of the concurrent processes (internal) */
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "codegen/c.h"
#include "codegen/cc.h"
#include "codegen/llvm.h"
#include "ir/compare.h"
#include "ir/interp.h"
#include "ir/loop.h"
#include "loop_sgemm.h"
#include "runtime/abi.h"
#include "runtime/philox.h"

extern char **environ;

static nnc_ltype T(nnc_dtype dt, int lanes) { return nnc_lt(dt, lanes); }
#define I(v) nnc_le_int(k, v)
#define V(x) nnc_le_var(k, x)
#define ADD(a, b) nnc_le_bin(k, NNC_LB_ADD, a, b)
#define MUL(a, b) nnc_le_bin(k, NNC_LB_MUL, a, b)
#define LT(a, b) nnc_le_bin(k, NNC_LB_LT, a, b)

static char cache_root[256];

static void *aligned(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) abort();
  memset(p, 0, bytes ? bytes : 64);
  return p;
}

static bool verify(nnc_kernel *k) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_lk_finish(k);
  return nnc_lk_verify(k, &d);
}

/* The kernel through the LLVM JIT, in the test's cache directory (or none). */
static nnc_cg_llvm_jit *jit(const nnc_kernel *k, const char *cache, nnc_cg_llvm_cache_result *res) {
  char err[4096];
  nnc_diags why;
  nnc_cg_llvm_module *m = nnc_cg_llvm_module_new("test", NULL, nnc_diags_init_buffer(&why, err, sizeof err));
  CHECK_MSG(m, "%s", err);
  if (!m) return NULL;
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_llvm_kernel(m, k, &d);
  CHECK_MSG(ok, "kernel %s", k->name);
  if (!ok) {
    nnc_cg_llvm_module_free(m);
    return NULL;
  }
  nnc_cg_llvm_jit_opts o = {.cache_dir = cache, .no_cache = cache == NULL};
  nnc_cg_llvm_jit *j = nnc_cg_llvm_jit_new(m, &o, nnc_diags_init_buffer(&why, err, sizeof err));
  CHECK_MSG(j, "%s", err);
  if (j && res) *res = nnc_cg_llvm_jit_cache_result(j);
  return j;
}

/* The same kernel through the C printer and cc. */
static nnc_cg_lib *c_compile(nnc_kernel *k) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fprintf(f, "#include \"runtime/abi.h\"\n");
  const nnc_kernel *ks[1] = {k};
  nnc_cg_c_prelude(f, ks, 1);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_c_kernel(f, k, &d);
  /* the kernel is static: export it under c_<name> */
  fprintf(f, "void *c_%s = (void *)%s;\n", k->name, k->name);
  fclose(f);
  CHECK(ok);
  char cwd[1024], flags[1100], err[8192];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  snprintf(flags, sizeof flags, "-I%s -Wno-pedantic", cwd);
  nnc_diags why;
  nnc_cg_lib *lib = ok ? nnc_cg_cc_compile(text, flags, nnc_diags_init_buffer(&why, err, sizeof err)) : NULL;
  CHECK_MSG(lib, "%s", err);
  free(text);
  return lib;
}

static void *c_fn(nnc_cg_lib *lib, const char *name) {
  char sym[256];
  snprintf(sym, sizeof sym, "c_%s", name);
  void **p = lib ? nnc_cg_cc_sym(lib, sym) : NULL;
  return p ? *p : NULL;
}

static int bits_differ(const void *a, const void *b, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) bad += memcmp((const char *)a + 4 * i, (const char *)b + 4 * i, 4) != 0;
  return bad;
}

/* --- kernels ------------------------------------------------------------------------------------------ */

/* y = relu(x) * 2 over n*37 elements with f32x16 and a masked tail. */
static void test_elementwise(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "relu2");
  k->batch_max = 4;
  nnc_lbuf *x = nnc_lk_buf(k, "x", NNC_F32, NNC_SCOPE_GLOBAL, 37 * 4), *y = nnc_lk_buf(k, "y", NNC_F32, NNC_SCOPE_GLOBAL, 37 * 4);
  x->batch_scaled = y->batch_scaled = true;
  nnc_lvar *i = nnc_lk_var(k, "i", T(NNC_I64, 1)), *m = nnc_lk_var(k, "m", T(NNC_BOOL, 16));
  nnc_lexpr *total = MUL(nnc_le_scalar(k, NNC_LSC_N), I(37));
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_ls_push(k, body, nnc_ls_let(k, m, LT(ADD(nnc_le_lane(k, 16), nnc_le_splat(k, V(i), 16)), nnc_le_splat(k, total, 16))));
  nnc_lexpr *v = nnc_le_bin(k, NNC_LB_MAX, nnc_le_load(k, x, V(i), 16, V(m)), nnc_le_const(k, T(NNC_F32, 16), 0));
  nnc_ls_push(k, body, nnc_ls_store(k, y, V(i), MUL(v, nnc_le_const(k, T(NNC_F32, 16), 2)), V(m)));
  nnc_ls_push(k, k->body, nnc_ls_for(k, i, I(0), total, 16, NNC_LOOP_SERIAL, body));
  CHECK(verify(k));
  nnc_cg_llvm_jit *j = jit(k, NULL, NULL);
  typedef void (*fn)(const nnc_rt *, const float *, float *, int64_t);
  fn run = j ? (fn)nnc_cg_llvm_jit_sym(j, "relu2") : NULL;
  CHECK(run);
  if (run) {
    enum { LEN = 37 * 4 + 16 };
    float *xs = aligned(LEN * 4), *ys = aligned(LEN * 4);
    for (int t = 0; t < LEN; t++) xs[t] = (float)(t % 7) - 3.0f, ys[t] = -99;
    run(NULL, xs, ys, 3); /* 111 elements: 6 full vectors and a 15-lane tail */
    int bad = 0;
    for (int t = 0; t < 111; t++) bad += ys[t] != (xs[t] > 0 ? 2 * xs[t] : 0);
    for (int t = 111; t < LEN; t++) bad += ys[t] != -99; /* nothing past n*37 is touched */
    CHECK_MSG(bad == 0, "%d wrong elements", bad);
    free(xs), free(ys);
  }
  CHECK(nnc_cg_llvm_jit_sym(j, "no_such_function") == NULL);
  nnc_cg_llvm_jit_free(j);
  nnc_arena_free(a);
}

/* Row sums of a 5x40 matrix: f32x8 partial sums, hreduce (add and max), a masked tail, rng. */
static void test_reduce_rng(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "rowsum");
  nnc_lbuf *x = nnc_lk_buf(k, "x", NNC_F32, NNC_SCOPE_GLOBAL, 5 * 40), *s = nnc_lk_buf(k, "s", NNC_F32, NNC_SCOPE_GLOBAL, 10);
  nnc_lbuf *r = nnc_lk_buf(k, "r", NNC_F32, NNC_SCOPE_GLOBAL, 5 * 40);
  nnc_lvar *i = nnc_lk_var(k, "i", T(NNC_I64, 1)), *j = nnc_lk_var(k, "j", T(NNC_I64, 1));
  nnc_lvar *acc = nnc_lk_var(k, "acc", T(NNC_F32, 8)), *mx = nnc_lk_var(k, "mx", T(NNC_F32, 8));
  nnc_lexpr *jmask = LT(ADD(nnc_le_lane(k, 8), nnc_le_splat(k, V(j), 8)), nnc_le_splat(k, I(40), 8));
  nnc_lexpr *idx = ADD(MUL(V(i), I(40)), V(j));
  nnc_lstmt *jb = nnc_ls_block(k);
  nnc_ls_push(k, jb, nnc_ls_assign(k, acc, ADD(V(acc), nnc_le_load(k, x, idx, 8, jmask))));
  nnc_ls_push(k, jb, nnc_ls_assign(k, mx, nnc_le_bin(k, NNC_LB_MAX, V(mx), nnc_le_load(k, x, idx, 8, jmask))));
  nnc_lexpr *lanes_idx = ADD(nnc_le_splat(k, idx, 8), nnc_le_lane(k, 8));
  nnc_ls_push(k, jb, nnc_ls_store(k, r, idx, nnc_le_rng(k, nnc_le_scalar(k, NNC_LSC_SEED), 7, nnc_le_scalar(k, NNC_LSC_STEP), lanes_idx), jmask));
  nnc_lstmt *ib = nnc_ls_block(k);
  nnc_ls_push(k, ib, nnc_ls_let(k, acc, nnc_le_const(k, T(NNC_F32, 8), 0)));
  nnc_ls_push(k, ib, nnc_ls_let(k, mx, nnc_le_const(k, T(NNC_F32, 8), -1e30)));
  nnc_ls_push(k, ib, nnc_ls_for(k, j, I(0), I(40), 8, NNC_LOOP_SERIAL, jb));
  nnc_ls_push(k, ib, nnc_ls_store(k, s, V(i), nnc_le_hreduce(k, NNC_LB_ADD, V(acc)), NULL));
  nnc_ls_push(k, ib, nnc_ls_store(k, s, ADD(V(i), I(5)), nnc_le_hreduce(k, NNC_LB_MAX, V(mx)), NULL));
  nnc_ls_push(k, k->body, nnc_ls_for(k, i, I(0), I(5), 1, NNC_LOOP_SERIAL, ib));
  CHECK(verify(k));
  nnc_cg_llvm_jit *j_ = jit(k, NULL, NULL);
  nnc_cg_lib *lib = c_compile(k);
  typedef void (*fn)(const nnc_rt *, const float *, float *, float *, uint32_t, uint32_t);
  fn run = j_ ? (fn)nnc_cg_llvm_jit_sym(j_, "rowsum") : NULL, crun = (fn)c_fn(lib, "rowsum");
  CHECK(run && crun);
  if (run && crun) {
    float *xs = aligned(800), *ss = aligned(40), *rs = aligned(800), *cs = aligned(40), *cr = aligned(800);
    for (int t = 0; t < 200; t++) xs[t] = (float)((t * 37) % 11) * 0.25f + 0.1f * (float)(t % 3);
    run(NULL, xs, ss, rs, 11u, 1234u);
    crun(NULL, xs, cs, cr, 11u, 1234u);
    CHECK_MSG(bits_differ(ss, cs, 10) == 0, "hreduce differs from the C printer's");
    int bad = 0;
    for (int t = 0; t < 200; t++) bad += rs[t] != nnc_rng_uniform_at(1234u, 7u, 11u, (uint64_t)t);
    CHECK_MSG(bad == 0, "%d rng values differ from the interpreter's", bad);
    CHECK(bits_differ(rs, cr, 200) == 0);
    free(xs), free(ss), free(rs), free(cs), free(cr);
  }
  nnc_cg_cc_close(lib);
  nnc_cg_llvm_jit_free(j_);
  nnc_arena_free(a);
}

/* A kernel of mixed operations whose every output must match the C printer bit for bit. */
static void test_mixed_ops(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "mixed");
  enum { N = 64, OUTS = 12 };
  nnc_lbuf *x = nnc_lk_buf(k, "x", NNC_F32, NNC_SCOPE_GLOBAL, N), *q = nnc_lk_buf(k, "q", NNC_I32, NNC_SCOPE_GLOBAL, N);
  nnc_lbuf *of = nnc_lk_buf(k, "of", NNC_F32, NNC_SCOPE_GLOBAL, N * OUTS), *oi = nnc_lk_buf(k, "oi", NNC_I32, NNC_SCOPE_GLOBAL, N * OUTS);
  nnc_lbuf *ob = nnc_lk_buf(k, "ob", NNC_U8, NNC_SCOPE_GLOBAL, N);
  nnc_lbuf *loc = nnc_lk_buf(k, "tmp", NNC_F32, NNC_SCOPE_LOCAL, 8);
  nnc_lvar *i = nnc_lk_var(k, "i", T(NNC_I64, 1)), *u = nnc_lk_var(k, "u", T(NNC_I64, 1));
  nnc_lexpr *xv = nnc_le_load(k, x, V(i), 8, NULL), *qv = nnc_le_load(k, q, V(i), 8, NULL);
  nnc_ltype f8 = T(NNC_F32, 8), i8 = T(NNC_I32, 8);
  nnc_lexpr *fo[] = {
      nnc_le_bin(k, NNC_LB_FLOORDIV, xv, nnc_le_const(k, f8, 0.75)),
      nnc_le_bin(k, NNC_LB_MOD, xv, nnc_le_const(k, f8, -0.75)),
      nnc_le_un(k, NNC_LU_EXP, xv),
      nnc_le_un(k, NNC_LU_TANH, xv),
      nnc_le_un(k, NNC_LU_RSQRT, nnc_le_un(k, NNC_LU_ABS, xv)),
      nnc_le_un(k, NNC_LU_ERF, xv),
      nnc_le_select(k, LT(xv, nnc_le_const(k, f8, 0)), nnc_le_un(k, NNC_LU_NEG, xv), nnc_le_un(k, NNC_LU_LOG1P, xv)),
      nnc_le_bin(k, NNC_LB_POW, nnc_le_un(k, NNC_LU_ABS, xv), nnc_le_const(k, f8, 1.5)),
      nnc_le_fma(k, xv, xv, nnc_le_cast(k, f8, qv)),
      nnc_le_bin(k, NNC_LB_MIN, nnc_le_un(k, NNC_LU_FLOOR, xv), nnc_le_un(k, NNC_LU_EXPM1, xv)),
      nnc_le_cast(k, f8, LT(xv, nnc_le_const(k, f8, 1))),
      nnc_le_load(k, loc, I(0), 8, NULL),
  };
  nnc_lexpr *io[] = {
      nnc_le_bin(k, NNC_LB_FLOORDIV, qv, nnc_le_const(k, i8, -3)),
      nnc_le_bin(k, NNC_LB_MOD, qv, nnc_le_const(k, i8, 5)),
      nnc_le_cast(k, i8, MUL(xv, nnc_le_const(k, f8, 1e9))), /* saturates */
      nnc_le_bin(k, NNC_LB_MAX, qv, nnc_le_un(k, NNC_LU_NEG, qv)),
      MUL(qv, nnc_le_const(k, i8, 2000000000)), /* wraps */
      nnc_le_bin(k, NNC_LB_MIN, qv, nnc_le_const(k, i8, 17)),
  };
  nnc_lstmt *body = nnc_ls_block(k);
  /* outputs laid out [o][N]: of[o*N + i : 8] */
  for (int o = 0; o < OUTS; o++) nnc_ls_push(k, body, nnc_ls_store(k, of, ADD(I(o * N), V(i)), fo[o], NULL));
  for (int o = 0; o < 6; o++) nnc_ls_push(k, body, nnc_ls_store(k, oi, ADD(I(o * N), V(i)), io[o], NULL));
  /* scalar paths: a masked scalar load, a u8 store of a saturating cast, an unrolled loop, atomic += */
  nnc_lstmt *ub = nnc_ls_block(k);
  nnc_lexpr *iu = ADD(V(i), V(u));
  nnc_lexpr *xs = nnc_le_load(k, x, iu, 1, nnc_le_bin(k, NNC_LB_GT, nnc_le_load(k, q, iu, 1, NULL), nnc_le_const(k, T(NNC_I32, 1), 0)));
  nnc_ls_push(k, ub, nnc_ls_store(k, ob, iu, nnc_le_cast(k, T(NNC_U8, 1), MUL(xs, nnc_le_const(k, T(NNC_F32, 1), 100))), NULL));
  nnc_ls_push(k, ub, nnc_ls_atomic_add(k, oi, ADD(I(6 * N), iu), nnc_le_cast(k, T(NNC_I32, 1), nnc_le_bin(k, NNC_LB_FLOORDIV, iu, I(3)))));
  nnc_ls_push(k, body, nnc_ls_for(k, u, I(0), I(8), 1, NNC_LOOP_UNROLLED, ub));
  nnc_ls_push(k, k->body, nnc_ls_store(k, loc, I(0), nnc_le_const(k, f8, 0.5), NULL));
  nnc_ls_push(k, k->body, nnc_ls_for(k, i, I(0), I(N), 8, NNC_LOOP_SERIAL, body));
  CHECK(verify(k));
  nnc_cg_llvm_jit *j = jit(k, NULL, NULL);
  nnc_cg_lib *lib = c_compile(k);
  typedef void (*fn)(const nnc_rt *, const float *, const int32_t *, float *, int32_t *, uint8_t *);
  fn run = j ? (fn)nnc_cg_llvm_jit_sym(j, "mixed") : NULL, crun = (fn)c_fn(lib, "mixed");
  CHECK(run && crun);
  if (run && crun) {
    float *xv_ = aligned(N * 4), *f1 = aligned(N * OUTS * 4), *f2 = aligned(N * OUTS * 4);
    int32_t *qv_ = aligned(N * 4), *i1 = aligned(N * OUTS * 4), *i2 = aligned(N * OUTS * 4);
    uint8_t *b1 = aligned(N), *b2 = aligned(N);
    for (int t = 0; t < N; t++) xv_[t] = (float)(t - 30) * 0.37f, qv_[t] = (t * 7919) % 201 - 100;
    xv_[5] = NAN, xv_[6] = INFINITY, xv_[7] = -INFINITY;
    run(NULL, xv_, qv_, f1, i1, b1);
    crun(NULL, xv_, qv_, f2, i2, b2);
    for (int o = 0; o < OUTS; o++) CHECK_MSG(bits_differ(f1 + o * N, f2 + o * N, N) == 0, "f32 output %d differs", o);
    for (int o = 0; o < 7; o++) CHECK_MSG(bits_differ(i1 + o * N, i2 + o * N, N) == 0, "i32 output %d differs", o);
    CHECK(memcmp(b1, b2, N) == 0);
    free(xv_), free(f1), free(f2), free(qv_), free(i1), free(i2), free(b1), free(b2);
  }
  nnc_cg_cc_close(lib);
  nnc_cg_llvm_jit_free(j);
  nnc_arena_free(a);
}

/* out[i, j] = sum_k a[i, k] * w[j, k], i parallel over the batch. */
static nnc_kernel *matmul_kernel(nnc_arena *a, int64_t kdim) {
  nnc_kernel *k = nnc_lk_new(a, "matmul_par");
  k->batch_max = 64;
  nnc_lbuf *A = nnc_lk_buf(k, "a", NNC_F32, NNC_SCOPE_GLOBAL, 64 * kdim);
  nnc_lbuf *W = nnc_lk_buf(k, "w", NNC_F32, NNC_SCOPE_GLOBAL, 256 * kdim);
  nnc_lbuf *O = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 64 * 256);
  A->batch_scaled = O->batch_scaled = true;
  nnc_lvar *i = nnc_lk_var(k, "i", T(NNC_I64, 1)), *j = nnc_lk_var(k, "j", T(NNC_I64, 1));
  nnc_lvar *kk = nnc_lk_var(k, "k", T(NNC_I64, 1)), *acc = nnc_lk_var(k, "acc", T(NNC_F32, 1));
  nnc_lexpr *prod_a = nnc_le_load(k, A, ADD(MUL(V(i), I(kdim)), V(kk)), 1, NULL);
  nnc_lexpr *prod_w = nnc_le_load(k, W, ADD(MUL(V(j), I(kdim)), V(kk)), 1, NULL);
  nnc_lstmt *kb = nnc_ls_block(k);
  nnc_ls_push(k, kb, nnc_ls_assign(k, acc, nnc_le_fma(k, prod_a, prod_w, V(acc))));
  nnc_lstmt *jb = nnc_ls_block(k);
  nnc_ls_push(k, jb, nnc_ls_let(k, acc, nnc_le_const(k, T(NNC_F32, 1), 0)));
  nnc_ls_push(k, jb, nnc_ls_for(k, kk, I(0), I(kdim), 1, NNC_LOOP_SERIAL, kb));
  nnc_ls_push(k, jb, nnc_ls_store(k, O, ADD(MUL(V(i), I(256)), V(j)), V(acc), NULL));
  nnc_lstmt *ib = nnc_ls_block(k);
  nnc_ls_push(k, ib, nnc_ls_for(k, j, I(0), I(256), 1, NNC_LOOP_SERIAL, jb));
  nnc_ls_push(k, k->body, nnc_ls_for(k, i, I(0), nnc_le_scalar(k, NNC_LSC_N), 1, NNC_LOOP_PARALLEL, ib));
  nnc_lk_finish(k);
  return k;
}

static int chunks_run;
static void three_chunks(void *pool, int64_t n, nnc_abi_body body, void *env) {
  (void)pool;
  int64_t a = n / 5, b = n / 2;
  body(env, b, n);
  body(env, 0, a);
  body(env, a, b);
  chunks_run += 3;
}

static void test_parallel(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = matmul_kernel(a, 20);
  CHECK(verify(k));
  nnc_cg_llvm_jit *j = jit(k, NULL, NULL);
  typedef void (*fn)(const nnc_rt *, const float *, const float *, float *, int64_t);
  fn run = j ? (fn)nnc_cg_llvm_jit_sym(j, "matmul_par") : NULL;
  CHECK(run);
  if (run) {
    enum { N = 13, K = 20, J = 256 };
    float *A = aligned(64 * K * 4), *W = aligned(J * K * 4), *O = aligned(64 * J * 4), *O2 = aligned(64 * J * 4);
    for (int t = 0; t < N * K; t++) A[t] = (float)((t * 13) % 17) / 16 - 0.5f;
    for (int t = 0; t < J * K; t++) W[t] = (float)((t * 7) % 19) / 18 - 0.5f;
    nnc_rt rt = {NNC_ABI_VERSION, NULL, three_chunks};
    run(&rt, A, W, O, N);
    CHECK(chunks_run == 3);
    run(NULL, A, W, O2, N); /* no runtime: inline, the same bits */
    int bad = 0;
    for (int i = 0; i < N; i++)
      for (int c = 0; c < J; c++) {
        float acc = 0;
        for (int q = 0; q < K; q++) acc = fmaf(A[i * K + q], W[c * K + q], acc);
        bad += O[i * J + c] != acc || O2[i * J + c] != acc;
      }
    CHECK_MSG(bad == 0, "%d wrong elements", bad);
    free(A), free(W), free(O), free(O2);
  }
  nnc_cg_llvm_jit_free(j);
  /* GPU schedules are refused with a reason */
  nnc_kernel *g = nnc_lk_new(a, "gpu");
  g->gpu = true;
  char *text = NULL, err[512];
  size_t len = 0;
  FILE *errs = open_memstream(&text, &len);
  nnc_diags d;
  nnc_diags_init(&d, errs);
  nnc_diags why;
  nnc_cg_llvm_module *m = nnc_cg_llvm_module_new("gpu", NULL, nnc_diags_init_buffer(&why, err, sizeof err));
  CHECK(m && !nnc_cg_llvm_kernel(m, g, &d));
  fclose(errs);
  CHECK_MSG(strstr(text, "LLVM backend: kernel gpu: a GPU-scheduled kernel"), "%s", text);
  free(text);
  nnc_cg_llvm_module_free(m);
  nnc_arena_free(a);
}

/* --- sgemm --------------------------------------------------------------------------------------------- */

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

typedef void (*sgemm_fn)(const nnc_rt *, const float *, const float *, float *, float *);

static void check_sgemm(int64_t M, int64_t N, int64_t K) {
  nnc_arena *a = nnc_arena_new();
  sgemm_ir g = sgemm_build(a, "sgemm", M, N, K);
  CHECK(verify(g.k));
  nnc_cg_llvm_jit *j = jit(g.k, NULL, NULL);
  nnc_cg_lib *lib = c_compile(g.k);
  sgemm_fn run = j ? (sgemm_fn)nnc_cg_llvm_jit_sym(j, "sgemm") : NULL, crun = (sgemm_fn)c_fn(lib, "sgemm");
  CHECK(run && crun);
  if (run && crun) {
    float *A = aligned((size_t)(M * K) * 4), *B = aligned((size_t)(K * N) * 4), *C = aligned((size_t)(M * N) * 4);
    float *C2 = aligned((size_t)(M * N) * 4), *pack = aligned((size_t)(K * SGEMM_NR) * 4);
    uint32_t s = 12345;
    for (int64_t i = 0; i < M * K; i++) s = s * 1664525u + 1013904223u, A[i] = (float)(s >> 8) * 0x1p-24f * 2 - 1;
    for (int64_t i = 0; i < K * N; i++) s = s * 1664525u + 1013904223u, B[i] = (float)(s >> 8) * 0x1p-24f * 2 - 1;
    nnc_tensor ref = interp_matmul(A, B, M, N, K);
    nnc_tensor got = {ref.type, 1, false, C};
    nnc_rt rt = {NNC_ABI_VERSION, NULL, three_chunks};
    run(&rt, A, B, C, pack);
    nnc_compare_result r = nnc_compare_tensors(&got, &ref, 1e-6 * sqrt((double)K), 1e-5);
    char buf[512];
    CHECK_MSG(r.ok, "sgemm %lldx%lldx%lld vs the interpreter: %s", (long long)M, (long long)N, (long long)K,
              nnc_compare_str(&r, ref.type.dims, 2, buf, sizeof buf));
    crun(NULL, A, B, C2, pack);
    /* both fuse every multiply-add in the same order: the same bits */
    CHECK_MSG(bits_differ(C, C2, M * N) == 0, "sgemm %lldx%lldx%lld differs from the C printer's", (long long)M,
              (long long)N, (long long)K);
    nnc_tensor_free(&ref);
    free(A), free(B), free(C), free(C2), free(pack);
  }
  nnc_cg_cc_close(lib);
  nnc_cg_llvm_jit_free(j);
  nnc_arena_free(a);
}

/* --- the object cache ------------------------------------------------------------------------------------ */

static bool run_sgemm_ok(nnc_cg_llvm_jit *j) {
  sgemm_fn run = j ? (sgemm_fn)nnc_cg_llvm_jit_sym(j, "sgemm") : NULL;
  if (!run) return false;
  enum { M = 7, N = 40, K = 9 };
  float *A = aligned(M * K * 4), *B = aligned(K * N * 4), *C = aligned(M * N * 4), *pack = aligned(K * SGEMM_NR * 4);
  for (int i = 0; i < M * K; i++) A[i] = (float)(i % 5) - 2;
  for (int i = 0; i < K * N; i++) B[i] = (float)(i % 3) - 1;
  run(NULL, A, B, C, pack);
  int bad = 0;
  for (int i = 0; i < M; i++)
    for (int c = 0; c < N; c++) {
      float acc = 0;
      for (int q = 0; q < K; q++) acc += A[i * K + q] * B[q * N + c];
      bad += C[i * N + c] != acc;
    }
  free(A), free(B), free(C), free(pack);
  return bad == 0;
}

static nnc_cg_llvm_jit *jit_sgemm(nnc_arena *a, const char *dir, nnc_cg_llvm_cache_result *res) {
  sgemm_ir g = sgemm_build(a, "sgemm", 7, 40, 9);
  return jit(g.k, dir, res);
}

static void corrupt_file(const char *path, bool truncate_it) {
  FILE *f = fopen(path, "r+b");
  CHECK(f != NULL);
  if (!f) return;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  if (truncate_it) {
    fclose(f);
    CHECK(truncate(path, size / 2) == 0);
    return;
  }
  fseek(f, size - 100, SEEK_SET);
  int c = fgetc(f);
  fseek(f, size - 100, SEEK_SET);
  fputc(c ^ 0x5a, f);
  fclose(f);
}

static void test_cache(void) {
  char dir[300];
  snprintf(dir, sizeof dir, "%s/single", cache_root);
  nnc_arena *a = nnc_arena_new();
  nnc_cg_llvm_cache_result res = NNC_LLVM_CACHE_OFF;
  nnc_cg_llvm_jit *j = jit_sgemm(a, dir, &res);
  CHECK_MSG(res == NNC_LLVM_CACHE_MISS, "first compilation: %d", (int)res);
  CHECK(run_sgemm_ok(j));
  char path[4300];
  snprintf(path, sizeof path, "%s", j ? nnc_cg_llvm_jit_cache_path(j) : "");
  CHECK(access(path, R_OK) == 0);
  nnc_cg_llvm_jit_free(j);
  int hits = 0;
  for (int r = 0; r < 2; r++) {
    j = jit_sgemm(a, dir, &res);
    hits += res == NNC_LLVM_CACHE_HIT;
    CHECK(run_sgemm_ok(j));
    nnc_cg_llvm_jit_free(j);
  }
  CHECK_MSG(hits == 2, "%d of 2 compilations hit the cache", hits);
  /* a flipped byte, then a truncated file: detected, compiled again, replaced */
  for (int t = 0; t < 2; t++) {
    corrupt_file(path, t == 1);
    j = jit_sgemm(a, dir, &res);
    CHECK_MSG(res == NNC_LLVM_CACHE_CORRUPT, "corrupt entry (%s): %d", t ? "truncated" : "flipped byte", (int)res);
    CHECK(run_sgemm_ok(j));
    nnc_cg_llvm_jit_free(j);
    j = jit_sgemm(a, dir, &res);
    CHECK(res == NNC_LLVM_CACHE_HIT);
    nnc_cg_llvm_jit_free(j);
  }
  /* another kernel is another entry */
  sgemm_ir g2 = sgemm_build(a, "sgemm", 7, 40, 10);
  j = jit(g2.k, dir, &res);
  CHECK(res == NNC_LLVM_CACHE_MISS);
  nnc_cg_llvm_jit_free(j);
  /* NNC_CACHE_DIR is the default directory */
  char envdir[300];
  snprintf(envdir, sizeof envdir, "%s/env", cache_root);
  setenv("NNC_CACHE_DIR", envdir, 1);
  for (int r = 0; r < 2; r++) {
    sgemm_ir g3 = sgemm_build(a, "sgemm", 7, 40, 9);
    char err[512];
    nnc_diags why;
    nnc_cg_llvm_module *m = nnc_cg_llvm_module_new("test", NULL, nnc_diags_init_buffer(&why, err, sizeof err));
    nnc_diags d;
    nnc_diags_init(&d, stderr);
    CHECK(m && nnc_cg_llvm_kernel(m, g3.k, &d));
    j = nnc_cg_llvm_jit_new(m, NULL, nnc_diags_init_buffer(&why, err, sizeof err));
    CHECK(j && nnc_cg_llvm_jit_cache_result(j) == (r ? NNC_LLVM_CACHE_HIT : NNC_LLVM_CACHE_MISS));
    CHECK(j && strncmp(nnc_cg_llvm_jit_cache_path(j), envdir, strlen(envdir)) == 0);
    nnc_cg_llvm_jit_free(j);
  }
  unsetenv("NNC_CACHE_DIR");
  nnc_arena_free(a);
}

/* One of two concurrent processes: compiles into dir again and again, removing the entry every
 * other time so the two race writing it; exits 1 when a result is wrong or an entry corrupt. */
static int cache_worker(const char *dir) {
  nnc_arena *a = nnc_arena_new();
  int bad = 0;
  for (int r = 0; r < 8; r++) {
    nnc_cg_llvm_cache_result res = NNC_LLVM_CACHE_OFF;
    nnc_cg_llvm_jit *j = jit_sgemm(a, dir, &res);
    bad += !j || !run_sgemm_ok(j) || res == NNC_LLVM_CACHE_CORRUPT || res == NNC_LLVM_CACHE_OFF;
    if (j && r % 2 == 0) unlink(nnc_cg_llvm_jit_cache_path(j));
    nnc_cg_llvm_jit_free(j);
  }
  nnc_arena_free(a);
  return bad ? 1 : 0;
}

static void test_cache_concurrent(void) {
  char dir[300];
  snprintf(dir, sizeof dir, "%s/shared", cache_root);
  pid_t pids[2];
  char *argv[] = {"test_llvm", "--cache-worker", dir, NULL};
  for (int i = 0; i < 2; i++) CHECK(posix_spawn(&pids[i], "/proc/self/exe", NULL, NULL, argv, environ) == 0);
  for (int i = 0; i < 2; i++) {
    int st = 0;
    CHECK(waitpid(pids[i], &st, 0) == pids[i]);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "cache worker %d: status %d", i, st);
  }
  nnc_arena *a = nnc_arena_new();
  nnc_cg_llvm_cache_result res = NNC_LLVM_CACHE_OFF;
  nnc_cg_llvm_jit *j = jit_sgemm(a, dir, &res);
  CHECK_MSG(res == NNC_LLVM_CACHE_HIT || res == NNC_LLVM_CACHE_MISS, "after the concurrent runs: %d", (int)res);
  CHECK(run_sgemm_ok(j));
  nnc_cg_llvm_jit_free(j);
  j = jit_sgemm(a, dir, &res);
  CHECK(res == NNC_LLVM_CACHE_HIT);
  nnc_cg_llvm_jit_free(j);
  nnc_arena_free(a);
}

/* --- output files -------------------------------------------------------------------------------------------- */

/* m emitted (IR, assembly or an object) into memory; *len bytes (0 after a failed check). The
 * caller frees the result. */
static char *emitted(nnc_cg_llvm_module *m, nnc_cg_llvm_emit_kind kind, size_t *len) {
  char *text = NULL, err[512];
  FILE *f = open_memstream(&text, len);
  nnc_diags why;
  CHECK_MSG(m && f && nnc_cg_llvm_emit(m, kind, f, nnc_diags_init_buffer(&why, err, sizeof err)), "%s", err);
  if (f) fclose(f);
  return text;
}

/* A kernel of 300 buffer parameters, as an optimizer step fused over every parameter of a model
 * passes (tiny_gpt's AdamW kernel has 365): every one gets its align and readonly attributes at
 * its own index, and the JIT builds it. */
static void test_many_buffers(void) {
  enum { NIN = 299 };
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "wide");
  nnc_lexpr *sum = nnc_le_const(k, T(NNC_F32, 1), 0);
  for (int b = 0; b < NIN; b++) {
    char name[16];
    snprintf(name, sizeof name, "in%d", b);
    sum = ADD(sum, nnc_le_load(k, nnc_lk_buf(k, name, NNC_F32, NNC_SCOPE_GLOBAL, 1), I(0), 1, NULL));
  }
  nnc_ls_push(k, k->body, nnc_ls_store(k, nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 1), I(0), sum, NULL));
  CHECK(verify(k));
  char err[512];
  nnc_cg_llvm_target t = {"haswell", "+avx,+avx2,+fma,+sse4.2"};
  nnc_diags why;
  nnc_cg_llvm_module *m = nnc_cg_llvm_module_new("wide", &t, nnc_diags_init_buffer(&why, err, sizeof err));
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  CHECK(m && nnc_cg_llvm_kernel(m, k, &d));
  size_t len;
  char *text = emitted(m, NNC_LLVM_EMIT_IR, &len);
  const char *def = text ? strstr(text, "define void @wide(") : NULL;
  const char *end = def ? strchr(def, '{') : NULL;
  int aligned_params = 0, readonly_params = 0;
  for (const char *s = def; s && s < end && (s = strstr(s, "align 64 %")) && s < end; s++) aligned_params++;
  for (const char *s = def; s && s < end && (s = strstr(s, "readonly")) && s < end; s++) readonly_params++;
  CHECK_MSG(aligned_params == NIN + 1 && readonly_params == NIN, "%d aligned, %d readonly", aligned_params,
            readonly_params);
  free(text);
  nnc_cg_llvm_module_free(m);
  nnc_cg_llvm_jit *j = jit(k, NULL, NULL);
  CHECK(j && nnc_cg_llvm_jit_sym(j, "wide"));
  nnc_cg_llvm_jit_free(j);
  nnc_arena_free(a);
}

static void test_emit(void) {
  nnc_arena *a = nnc_arena_new();
  sgemm_ir g = sgemm_build(a, "sgemm", 64, 64, 64);
  char err[512];
  nnc_cg_llvm_target t = {"haswell", "+avx,+avx2,+fma,+sse4.2"}; /* pinned: the text does not depend on the host */
  nnc_diags why;
  nnc_cg_llvm_module *m = nnc_cg_llvm_module_new("sgemm", &t, nnc_diags_init_buffer(&why, err, sizeof err));
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  CHECK(m && nnc_cg_llvm_kernel(m, g.k, &d));
  CHECK(m && nnc_cg_llvm_vector_bits(m) == 256);
  size_t len;
  char *text = emitted(m, NNC_LLVM_EMIT_IR, &len);
  CHECK(text && strstr(text, "define void @sgemm(ptr") != NULL);
  CHECK(text && strstr(text, "noalias") && strstr(text, "align 64"));
  CHECK(text && strstr(text, "\"prefer-vector-width\"=\"256\""));
  CHECK(text && (strstr(text, "fmuladd") || strstr(text, "llvm.fma")));
  CHECK(text && strstr(text, "fast") == NULL && strstr(text, "reassoc") == NULL); /* the loop IR fixes every order */
  free(text);
  text = emitted(m, NNC_LLVM_EMIT_ASM, &len);
  CHECK(text && strstr(text, "vfmadd") && strstr(text, "ymm"));
  free(text);
  text = emitted(m, NNC_LLVM_EMIT_OBJ, &len);
  CHECK(text && len > 4 && memcmp(text, "\x7f" "ELF", 4) == 0);
  free(text);
  FILE *full = fopen("/dev/full", "w"); /* a full device: the write fails with a message, nothing aborts */
  CHECK(full && !nnc_cg_llvm_emit(m, NNC_LLVM_EMIT_OBJ, full, nnc_diags_init_buffer(&why, err, sizeof err)) && strstr(err, "No space"));
  if (full) fclose(full);
  nnc_cg_llvm_module_free(m);
  nnc_arena_free(a);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--cache-worker")) return cache_worker(argv[2]);
  snprintf(cache_root, sizeof cache_root, "/tmp/nnc_test_llvm_XXXXXX");
  if (!mkdtemp(cache_root)) return 1;
  test_elementwise();
  test_reduce_rng();
  test_mixed_ops();
  test_parallel();
  check_sgemm(64, 256, 784);
  check_sgemm(100, 70, 33);
  check_sgemm(5, 20, 3);
  test_cache();
  test_cache_concurrent();
  test_emit();
  test_many_buffers();
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cache_root);
  return check_summary();
}
