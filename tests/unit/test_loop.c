/* Loop IR: typed construction and its misuse, the text form, the verifier (bounds proved from
 * loop ranges, batch-scaled buffers, guards and masks; barriers, scopes, variables), the
 * structural hash, and the C printer: its output compiles with -std=c99 -Wall -Wextra -Werror
 * and computes what the interpreter would (tail masks, hreduce, parallel loops split unevenly,
 * Philox). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "codegen/c.h"
#include "codegen/cc.h"
#include "ir/interp.h"
#include "ir/loop.h"
#include "runtime/abi.h"
#include "runtime/philox.h"

static nnc_ltype T(nnc_dtype dt, int lanes) { return nnc_lt(dt, lanes); }
#define I(v) nnc_le_int(k, v)
#define V(x) nnc_le_var(k, x)
#define ADD(a, b) nnc_le_bin(k, NNC_LB_ADD, a, b)
#define MUL(a, b) nnc_le_bin(k, NNC_LB_MUL, a, b)
#define LT(a, b) nnc_le_bin(k, NNC_LB_LT, a, b)

static nnc_lstmt *block1(nnc_kernel *k, nnc_lstmt *s) {
  nnc_lstmt *b = nnc_ls_block(k);
  nnc_ls_push(k, b, s);
  return b;
}

static nnc_lstmt *loop(nnc_kernel *k, nnc_lvar *v, nnc_lexpr *lo, nnc_lexpr *hi, nnc_loop_kind kind, nnc_lstmt *body) {
  return nnc_ls_for(k, v, lo, hi, 1, kind, body);
}

/* Verifies k; on failure the diagnostics are kept in msg (which must then contain want). */
static bool verify(nnc_kernel *k, char *msg, size_t cap) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  nnc_diags d;
  nnc_diags_init(&d, f);
  nnc_lk_finish(k);
  bool ok = nnc_lk_verify(k, &d);
  fclose(f);
  snprintf(msg, cap, "%s", text ? text : "");
  free(text);
  return ok;
}

static char *printed(const nnc_kernel *k) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  nnc_lk_print(f, k);
  fclose(f);
  return text;
}

/* The example of the documentation: out[i, j] = sum_k a[i, k] * w[j, k], i over the batch. */
static nnc_kernel *matmul_kernel(nnc_arena *a, const char *name, const char *iname, int64_t kdim) {
  nnc_kernel *k = nnc_lk_new(a, name);
  k->batch_max = 64;
  nnc_lbuf *A = nnc_lk_buf(k, "a", NNC_F32, NNC_SCOPE_GLOBAL, 64 * kdim);
  nnc_lbuf *W = nnc_lk_buf(k, "w", NNC_F32, NNC_SCOPE_GLOBAL, 256 * kdim);
  nnc_lbuf *O = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 64 * 256);
  A->batch_scaled = O->batch_scaled = true;
  nnc_lvar *i = nnc_lk_var(k, iname, T(NNC_I64, 1)), *j = nnc_lk_var(k, "j", T(NNC_I64, 1));
  nnc_lvar *kk = nnc_lk_var(k, "k", T(NNC_I64, 1)), *acc = nnc_lk_var(k, "acc", T(NNC_F32, 1));
  nnc_lexpr *prod_a = nnc_le_load(k, A, ADD(MUL(V(i), I(kdim)), V(kk)), 1, NULL);
  nnc_lexpr *prod_w = nnc_le_load(k, W, ADD(MUL(V(j), I(kdim)), V(kk)), 1, NULL);
  nnc_lstmt *inner = loop(k, kk, I(0), I(kdim), NNC_LOOP_SERIAL,
                          block1(k, nnc_ls_assign(k, acc, nnc_le_fma(k, prod_a, prod_w, V(acc)))));
  nnc_lstmt *jb = nnc_ls_block(k);
  nnc_ls_push(k, jb, nnc_ls_let(k, acc, nnc_le_const(k, T(NNC_F32, 1), 0)));
  nnc_ls_push(k, jb, inner);
  nnc_ls_push(k, jb, nnc_ls_store(k, O, ADD(MUL(V(i), I(256)), V(j)), V(acc), NULL));
  nnc_lstmt *jl = loop(k, j, I(0), I(256), NNC_LOOP_SERIAL, jb);
  k->comment = "%11 = matmul(%9, %10) {trans_b=1}  models/fashion_mlp.nn:9:12";
  nnc_ls_push(k, k->body, loop(k, i, I(0), nnc_le_scalar(k, NNC_LSC_N), NNC_LOOP_PARALLEL, block1(k, jl)));
  nnc_lk_finish(k);
  return k;
}

static void test_typing(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "typing");
  nnc_lexpr *x = nnc_le_const(k, T(NNC_F32, 1), 2), *v = nnc_le_const(k, T(NNC_F32, 16), 1);
  CHECK(v->kind == NNC_LE_SPLAT && v->type.lanes == 16 && v->a->kind == NNC_LE_FLOAT);
  nnc_lexpr *cmp = nnc_le_bin(k, NNC_LB_LT, v, v);
  CHECK(cmp->type.dtype == NNC_BOOL && cmp->type.lanes == 16);
  CHECK(nnc_le_fma(k, v, v, v)->type.lanes == 16);
  CHECK(nnc_le_hreduce(k, NNC_LB_ADD, v)->type.lanes == 1);
  CHECK(nnc_le_select(k, cmp, v, v)->type.lanes == 16);
  CHECK(nnc_le_cast(k, T(NNC_I32, 16), v)->type.dtype == NNC_I32);
  CHECK(nnc_le_scalar(k, NNC_LSC_N)->type.dtype == NNC_I64);
  CHECK(nnc_le_rng(k, nnc_le_scalar(k, NNC_LSC_SEED), 3, nnc_le_scalar(k, NNC_LSC_STEP), nnc_le_lane(k, 8))->type.lanes == 8);
  CHECK(k->nerrors == 0);
  /* a scalar meets a vector only through an explicit splat */
  nnc_lexpr *bad = nnc_le_bin(k, NNC_LB_ADD, x, v);
  CHECK(bad->kind == NNC_LE_POISON && k->nerrors == 1);
  CHECK(k->first_error && strstr(k->first_error, "splat scalars explicitly"));
  CHECK(nnc_le_bin(k, NNC_LB_ADD, bad, x)->kind == NNC_LE_POISON && k->nerrors == 1); /* poison propagates quietly */
  CHECK(nnc_le_un(k, NNC_LU_EXP, I(3))->kind == NNC_LE_POISON);                       /* exp of an index */
  CHECK(nnc_le_load(k, NULL, I(0), 1, NULL)->kind == NNC_LE_POISON);                   /* no buffer: no crash */
  CHECK(nnc_le_select(k, x, x, x)->kind == NNC_LE_POISON);                             /* condition not bool */
  CHECK(nnc_ls_if(k, NULL, NULL, NULL)->kind == NNC_LS_COMMENT);
  CHECK(nnc_le_splat(k, v, 4)->kind == NNC_LE_POISON);
  nnc_lvar *f = nnc_lk_var(k, "f", T(NNC_F32, 1));
  CHECK(nnc_ls_let(k, f, I(1))->kind == NNC_LS_COMMENT); /* i64 into an f32 variable */
  nnc_ls_push(k, k->body, nnc_ls_let(k, f, bad));
  char msg[2048];
  CHECK(!verify(k, msg, sizeof msg));
  CHECK_MSG(strstr(msg, "kernel typing: malformed: add: operand types differ (f32, f32x16)"), "%s", msg);
  nnc_arena_free(a);
}

static void test_print(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = matmul_kernel(a, "matmul_fc1", "i", 784);
  char *text = printed(k);
  const char *want =
      "kernel matmul_fc1(global f32 a[50176] (batch), global f32 w[200704], global f32 out[16384] (batch); n) {\n"
      "  # %11 = matmul(%9, %10) {trans_b=1}  models/fashion_mlp.nn:9:12\n"
      "  parallel for i in 0..n {\n"
      "    for j in 0..256 {\n"
      "      let acc: f32 = 0\n"
      "      for k in 0..784 { acc = fma(a[i*784 + k], w[j*784 + k], acc) }\n"
      "      out[i*256 + j] = acc\n"
      "    }\n"
      "  }\n"
      "}\n";
  CHECK_MSG(!strcmp(text, want), "got:\n%s", text);
  free(text);

  /* vectors, masks, precedence */
  nnc_kernel *v = nnc_lk_new(a, "vec");
  k = v;
  nnc_lbuf *x = nnc_lk_buf(k, "x", NNC_F32, NNC_SCOPE_GLOBAL, 100);
  nnc_lvar *i = nnc_lk_var(k, "i", T(NNC_I64, 1));
  nnc_lexpr *mask = LT(ADD(nnc_le_lane(k, 16), nnc_le_splat(k, V(i), 16)), nnc_le_splat(k, I(100), 16));
  nnc_lexpr *ld = nnc_le_load(k, x, V(i), 16, mask);
  nnc_lexpr *val = nnc_le_bin(k, NNC_LB_MAX, ld, nnc_le_const(k, T(NNC_F32, 16), 0));
  nnc_ls_push(k, k->body, nnc_ls_for(k, i, I(0), I(100), 16, NNC_LOOP_SERIAL, block1(k, nnc_ls_store(k, x, V(i), val, mask))));
  nnc_lexpr *e = nnc_le_bin(k, NNC_LB_MUL, nnc_le_bin(k, NNC_LB_SUB, I(1), nnc_le_bin(k, NNC_LB_SUB, I(2), I(3))), I(4));
  char buf[256];
  CHECK_MSG(!strcmp(nnc_le_str(e, buf, sizeof buf), "(1 - (2 - 3))*4"), "%s", buf);
  text = printed(v);
  CHECK_MSG(strstr(text, "for i in 0..100 step 16 { x[i:16 if lane16 + splat16(i) < splat16(100)] = "
                         "max(x[i:16 if lane16 + splat16(i) < splat16(100)], splat16(0)) }"),
            "%s", text);
  free(text);
  nnc_arena_free(a);
}

/* A kernel over a batch-scaled buffer of K*B_max elements: for i in 0..hi: buf[i] = 0. */
static nnc_kernel *fill_kernel(nnc_arena *a, nnc_lexpr *(*hi)(nnc_kernel *), bool guard) {
  nnc_kernel *k = nnc_lk_new(a, "fill");
  k->batch_max = 8;
  nnc_lbuf *b = nnc_lk_buf(k, "buf", NNC_F32, NNC_SCOPE_GLOBAL, 10 * 8);
  b->batch_scaled = true;
  nnc_lvar *i = nnc_lk_var(k, "i", T(NNC_I64, 1));
  nnc_lstmt *st = nnc_ls_store(k, b, V(i), nnc_le_const(k, T(NNC_F32, 1), 0), NULL);
  if (guard) st = nnc_ls_if(k, LT(V(i), MUL(nnc_le_scalar(k, NNC_LSC_N), I(10))), block1(k, st), NULL);
  nnc_ls_push(k, k->body, loop(k, i, I(0), hi(k), NNC_LOOP_SERIAL, block1(k, st)));
  return k;
}

static nnc_lexpr *n_times_10(nnc_kernel *k) { return MUL(nnc_le_scalar(k, NNC_LSC_N), I(10)); }
static nnc_lexpr *bmax_times_10(nnc_kernel *k) { return I(80); }

static void test_verify(void) {
  nnc_arena *a = nnc_arena_new();
  char msg[2048];
  CHECK_MSG(verify(matmul_kernel(a, "mm", "i", 784), msg, sizeof msg), "%s", msg);
  CHECK_MSG(verify(fill_kernel(a, n_times_10, false), msg, sizeof msg), "%s", msg);
  /* B_max*10 elements of a buffer that holds n*10 at batch n: rejected unless guarded */
  CHECK(!verify(fill_kernel(a, bmax_times_10, false), msg, sizeof msg));
  CHECK_MSG(strstr(msg, "kernel fill: store to buf[i]: cannot prove the access inside the buffer's 80 (n/B_max of "
                        "them at batch n) elements (elements [0, 79] at n = 1"),
            "%s", msg);
  CHECK_MSG(verify(fill_kernel(a, bmax_times_10, true), msg, sizeof msg), "%s", msg);

  /* out of bounds by one, through an index expression */
  nnc_kernel *k = nnc_lk_new(a, "oob");
  nnc_lbuf *b = nnc_lk_buf(k, "b", NNC_F32, NNC_SCOPE_GLOBAL, 12);
  nnc_lvar *i = nnc_lk_var(k, "i", T(NNC_I64, 1)), *j = nnc_lk_var(k, "j", T(NNC_I64, 1));
  nnc_lstmt *st = nnc_ls_store(k, b, ADD(MUL(V(i), I(4)), V(j)), nnc_le_const(k, T(NNC_F32, 1), 1), NULL);
  nnc_ls_push(k, k->body, loop(k, i, I(0), I(3), NNC_LOOP_SERIAL, block1(k, loop(k, j, I(0), I(5), NNC_LOOP_SERIAL, block1(k, st)))));
  CHECK(!verify(k, msg, sizeof msg));
  CHECK_MSG(strstr(msg, "kernel oob: store to b[i*4 + j]: cannot prove") && strstr(msg, "12 elements") &&
                strstr(msg, "[0, 12]"),
            "%s", msg);

  /* a vector tail: masked, proved; unmasked, rejected */
  for (int masked = 0; masked < 2; masked++) {
    k = nnc_lk_new(a, "tail");
    b = nnc_lk_buf(k, "x", NNC_F32, NNC_SCOPE_GLOBAL, 100);
    i = nnc_lk_var(k, "i", T(NNC_I64, 1));
    nnc_lexpr *m = masked ? LT(ADD(nnc_le_lane(k, 16), nnc_le_splat(k, V(i), 16)), nnc_le_splat(k, I(100), 16)) : NULL;
    nnc_lstmt *s = nnc_ls_store(k, b, V(i), nnc_le_const(k, T(NNC_F32, 16), 0), m);
    nnc_ls_push(k, k->body, nnc_ls_for(k, i, I(0), I(100), 16, NNC_LOOP_SERIAL, block1(k, s)));
    CHECK_MSG(verify(k, msg, sizeof msg) == (masked == 1), "%s", msg);
  }

  /* a variable used outside its scope, and a loop variable assigned */
  k = nnc_lk_new(a, "undef");
  nnc_lvar *t = nnc_lk_var(k, "t", T(NNC_F32, 1));
  b = nnc_lk_buf(k, "x", NNC_F32, NNC_SCOPE_GLOBAL, 4);
  nnc_ls_push(k, k->body, nnc_ls_store(k, b, I(0), V(t), NULL));
  CHECK(!verify(k, msg, sizeof msg));
  CHECK_MSG(strstr(msg, "kernel undef: variable t used outside its definition's scope"), "%s", msg);
  k = nnc_lk_new(a, "assign_loopvar");
  i = nnc_lk_var(k, "i", T(NNC_I64, 1));
  nnc_ls_push(k, k->body, loop(k, i, I(0), I(4), NNC_LOOP_SERIAL, block1(k, nnc_ls_assign(k, i, I(2)))));
  CHECK(!verify(k, msg, sizeof msg));
  CHECK_MSG(strstr(msg, "loop variable i is assigned"), "%s", msg);

  /* shared memory in a CPU kernel; a local buffer too large */
  k = nnc_lk_new(a, "scopes");
  nnc_lk_buf(k, "tile", NNC_F32, NNC_SCOPE_SHARED, 256);
  nnc_lk_buf(k, "acc", NNC_F32, NNC_SCOPE_LOCAL, 5000);
  CHECK(!verify(k, msg, sizeof msg));
  CHECK_MSG(strstr(msg, "kernel scopes: shared buffer tile in a CPU kernel"), "%s", msg);
  CHECK_MSG(strstr(msg, "local buffer acc holds 5000 elements"), "%s", msg);

  /* barriers: at the top of a thread loop's body, fine; inside an if within it, rejected */
  for (int nested = 0; nested < 2; nested++) {
    k = nnc_lk_new(a, "gpu_barrier");
    k->gpu = true;
    nnc_lbuf *tile = nnc_lk_buf(k, "tile", NNC_F32, NNC_SCOPE_SHARED, 128);
    nnc_lvar *tx = nnc_lk_var(k, "tx", T(NNC_I64, 1));
    nnc_lstmt *body = nnc_ls_block(k);
    nnc_ls_push(k, body, nnc_ls_store(k, tile, V(tx), nnc_le_const(k, T(NNC_F32, 1), 0), NULL));
    nnc_lstmt *bar = nnc_ls_barrier(k);
    nnc_ls_push(k, body, nested ? nnc_ls_if(k, LT(V(tx), I(64)), block1(k, bar), NULL) : bar);
    nnc_lstmt *tl = loop(k, tx, I(0), I(128), NNC_LOOP_GPU_THREAD, body);
    nnc_ls_push(k, k->body, tl);
    bool ok = verify(k, msg, sizeof msg);
    CHECK_MSG(ok == !nested, "%s", msg);
    CHECK(k->block_dim[0] == 128);
    if (nested) CHECK_MSG(strstr(msg, "kernel gpu_barrier: a barrier must sit directly in the body of a GPU thread loop"), "%s", msg);
  }
  /* a GPU thread loop with a runtime bound */
  k = nnc_lk_new(a, "gpu_dyn");
  k->gpu = true;
  i = nnc_lk_var(k, "t", T(NNC_I64, 1));
  nnc_ls_push(k, k->body, loop(k, i, I(0), nnc_le_scalar(k, NNC_LSC_N), NNC_LOOP_GPU_THREAD, NULL));
  CHECK(!verify(k, msg, sizeof msg) && strstr(msg, "a GPU thread loop needs static bounds"));
  nnc_arena_free(a);
}

static void test_hash(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *x = matmul_kernel(a, "first", "i", 784), *y = matmul_kernel(a, "second", "row", 784);
  nnc_kernel *z = matmul_kernel(a, "third", "i", 783);
  CHECK(nnc_lk_equal(x, y) && x->hash == y->hash);
  CHECK(!nnc_lk_equal(x, z) && x->hash != z->hash);
  nnc_arena_free(a);
}

/* --- the C printer --------------------------------------------------------------------------- */

/* Prelude, kernel and a wrapper; compiled with -Werror. */
static nnc_cg_lib *compile(nnc_kernel *k, const char *wrapper) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fprintf(f, "#include \"runtime/abi.h\"\n");
  const nnc_kernel *ks[1] = {k};
  nnc_cg_c_prelude(f, ks, 1);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_c_kernel(f, k, &d);
  fprintf(f, "%s\n", wrapper);
  fclose(f);
  CHECK(ok);
  char cwd[1024], flags[1100], err[4096];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  snprintf(flags, sizeof flags, "-I%s", cwd);
  nnc_diags why;
  nnc_cg_lib *lib = ok ? nnc_cg_cc_compile(text, flags, nnc_diags_init_buffer(&why, err, sizeof err)) : NULL;
  CHECK_MSG(lib, "%s\n--- source ---\n%s", err, text);
  free(text);
  return lib;
}

/* y = relu(x) * 2 over n*37 elements with f32x16 and a masked tail. */
static void test_c_elementwise(void) {
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
  nnc_ls_push(k, k->body, nnc_ls_comment(k, "y = relu(x) * 2"));
  nnc_ls_push(k, k->body, nnc_ls_for(k, i, I(0), total, 16, NNC_LOOP_SERIAL, body));
  char msg[2048];
  CHECK_MSG(verify(k, msg, sizeof msg), "%s", msg);
  nnc_cg_lib *lib = compile(k, "void run(const float *x, float *y, int64_t n) { relu2(0, x, y, n); }");
  void (*run)(const float *, float *, int64_t) = (void (*)(const float *, float *, int64_t))nnc_cg_cc_sym(lib, "run");
  CHECK(run);
  if (run) {
    float xs[37 * 4 + 16], ys[37 * 4 + 16];
    for (int t = 0; t < 37 * 4 + 16; t++) xs[t] = (float)(t % 7) - 3.0f, ys[t] = -99;
    run(xs, ys, 3); /* 111 elements: 6 full vectors and a 15-lane tail */
    int bad = 0;
    for (int t = 0; t < 111; t++) bad += ys[t] != (xs[t] > 0 ? 2 * xs[t] : 0);
    for (int t = 111; t < 37 * 4 + 16; t++) bad += ys[t] != -99; /* nothing past n*37 is touched */
    CHECK_MSG(bad == 0, "%d wrong elements", bad);
  }
  nnc_cg_cc_close(lib);
  nnc_arena_free(a);
}

/* Row sums of a 5x40 matrix: f32x8 partial sums, hreduce, a masked tail, rng into a second output. */
static void test_c_reduce_rng(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "rowsum");
  nnc_lbuf *x = nnc_lk_buf(k, "x", NNC_F32, NNC_SCOPE_GLOBAL, 5 * 40), *s = nnc_lk_buf(k, "s", NNC_F32, NNC_SCOPE_GLOBAL, 5);
  nnc_lbuf *r = nnc_lk_buf(k, "r", NNC_F32, NNC_SCOPE_GLOBAL, 5 * 40);
  nnc_lvar *i = nnc_lk_var(k, "i", T(NNC_I64, 1)), *j = nnc_lk_var(k, "j", T(NNC_I64, 1)), *acc = nnc_lk_var(k, "acc", T(NNC_F32, 8));
  nnc_lexpr *jmask = LT(ADD(nnc_le_lane(k, 8), nnc_le_splat(k, V(j), 8)), nnc_le_splat(k, I(40), 8));
  nnc_lexpr *idx = ADD(MUL(V(i), I(40)), V(j));
  nnc_lstmt *jb = nnc_ls_block(k);
  nnc_ls_push(k, jb, nnc_ls_assign(k, acc, ADD(V(acc), nnc_le_load(k, x, idx, 8, jmask))));
  nnc_lexpr *lanes_idx = ADD(nnc_le_splat(k, idx, 8), nnc_le_lane(k, 8));
  nnc_ls_push(k, jb, nnc_ls_store(k, r, idx, nnc_le_rng(k, nnc_le_scalar(k, NNC_LSC_SEED), 7, nnc_le_scalar(k, NNC_LSC_STEP), lanes_idx), jmask));
  nnc_lstmt *ib = nnc_ls_block(k);
  nnc_ls_push(k, ib, nnc_ls_let(k, acc, nnc_le_const(k, T(NNC_F32, 8), 0)));
  nnc_ls_push(k, ib, nnc_ls_for(k, j, I(0), I(40), 8 * 0 + 8, NNC_LOOP_SERIAL, jb));
  nnc_ls_push(k, ib, nnc_ls_store(k, s, V(i), nnc_le_hreduce(k, NNC_LB_ADD, V(acc)), NULL));
  nnc_ls_push(k, k->body, loop(k, i, I(0), I(5), NNC_LOOP_SERIAL, ib));
  char msg[2048];
  CHECK_MSG(verify(k, msg, sizeof msg), "%s", msg);
  nnc_cg_lib *lib = compile(k, "void run(const float *x, float *s, float *r) { rowsum(0, x, s, r, 11u, 1234u); }");
  void (*run)(const float *, float *, float *) = (void (*)(const float *, float *, float *))nnc_cg_cc_sym(lib, "run");
  CHECK(run);
  if (run) {
    float xs[200], ss[5], rs[200];
    for (int t = 0; t < 200; t++) xs[t] = (float)((t * 37) % 11) * 0.25f;
    run(xs, ss, rs);
    for (int row = 0; row < 5; row++) {
      double want = 0;
      for (int c = 0; c < 40; c++) want += xs[row * 40 + c];
      CHECK_MSG(fabs(ss[row] - want) <= 1e-5 * fabs(want), "row %d: %g vs %g", row, ss[row], want);
    }
    int bad = 0;
    for (int t = 0; t < 200; t++) bad += rs[t] != nnc_rng_uniform_at(1234u, 7u, 11u, (uint64_t)t);
    CHECK_MSG(bad == 0, "%d rng values differ from the interpreter's", bad);
  }
  nnc_cg_cc_close(lib);
  nnc_arena_free(a);
}

/* parallel_for that runs the body in three uneven chunks, last first. */
static int chunks_run;
static void three_chunks(void *pool, int64_t n, nnc_abi_body body, void *env) {
  (void)pool;
  int64_t a = n / 5, b = n / 2;
  body(env, b, n);
  body(env, 0, a);
  body(env, a, b);
  chunks_run += 3;
}

static void test_c_parallel(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = matmul_kernel(a, "matmul_fc1", "i", 20);
  char msg[2048];
  CHECK_MSG(verify(k, msg, sizeof msg), "%s", msg);
  nnc_cg_lib *lib = compile(k, "void run(const nnc_rt *rt, const float *a, const float *w, float *o, int64_t n) {"
                               " matmul_fc1(rt, a, w, o, n); }");
  typedef void (*fn)(const nnc_rt *, const float *, const float *, float *, int64_t);
  fn run = (fn)nnc_cg_cc_sym(lib, "run");
  CHECK(run);
  if (run) {
    enum { N = 13, K = 20, J = 256 };
    float *A = calloc(64 * K, sizeof *A), *W = calloc(J * K, sizeof *W), *O = calloc(64 * J, sizeof *O), *O2 = calloc(64 * J, sizeof *O2);
    for (int t = 0; t < N * K; t++) A[t] = (float)((t * 13) % 17) / 16 - 0.5f;
    for (int t = 0; t < J * K; t++) W[t] = (float)((t * 7) % 19) / 18 - 0.5f;
    nnc_rt rt = {NNC_ABI_VERSION, NULL, three_chunks};
    run(&rt, A, W, O, N);
    CHECK(chunks_run == 3);
    run(NULL, A, W, O2, N); /* no runtime: inline, the same bits */
    int bad = 0;
    for (int i = 0; i < N; i++)
      for (int j = 0; j < J; j++) {
        float acc = 0;
        for (int q = 0; q < K; q++) acc = fmaf(A[i * K + q], W[j * K + q], acc);
        bad += O[i * J + j] != acc || O2[i * J + j] != acc;
      }
    CHECK_MSG(bad == 0, "%d wrong elements", bad);
    free(A), free(W), free(O), free(O2);
  }
  nnc_cg_cc_close(lib);

  /* GPU schedules are refused with a reason */
  nnc_kernel *g = nnc_lk_new(a, "gpu");
  g->gpu = true;
  char *text = NULL;
  size_t len = 0;
  FILE *errs = open_memstream(&text, &len);
  nnc_diags d;
  nnc_diags_init(&d, errs);
  FILE *sink = fopen("/dev/null", "w");
  CHECK(!nnc_cg_c_kernel(sink, g, &d));
  fclose(sink);
  fclose(errs);
  CHECK_MSG(strstr(text, "C backend: kernel gpu: a GPU-scheduled kernel runs under the phase emulator"), "%s", text);
  free(text);
  /* a compiler error comes back with the compiler's message */
  char err[4096];
  nnc_diags why;
  CHECK(!nnc_cg_cc_compile("int f(void) { return undeclared_name; }\n", NULL, nnc_diags_init_buffer(&why, err, sizeof err)));
  CHECK_MSG(strstr(err, "C compiler failed") && strstr(err, "undeclared_name"), "%s", err);
  nnc_arena_free(a);
}

static bool is_parallel_loop(const nnc_lstmt *s) { return s->kind == NNC_LS_FOR && s->loop == NNC_LOOP_PARALLEL; }
static bool is_scalar_n(const nnc_lexpr *e) { return e->kind == NNC_LE_SCALAR && e->scalar == NNC_LSC_N; }

/* The analyses the C and LLVM printers share (ir/loop_walk.c): uses, captures, any. */
static void test_analyses(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = nnc_lk_new(a, "outline");
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 64);
  nnc_lbuf *tmp = nnc_lk_buf(k, "tmp", NNC_F32, NNC_SCOPE_LOCAL, 4);
  nnc_lvar *i = nnc_lk_var(k, "i", nnc_lt(NNC_I64, 1)), *acc = nnc_lk_var(k, "acc", nnc_lt(NNC_F32, 1));
  nnc_lvar *scale = nnc_lk_var(k, "scale", nnc_lt(NNC_F32, 1)), *unused = nnc_lk_var(k, "unused", nnc_lt(NNC_F32, 1));
  (void)unused;
  /* scale = 2; tmp[0] = 1; acc = 0; parallel for i: out[i] = scale * tmp[0] + n; acc = acc + 1 */
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_lexpr *val = nnc_le_bin(k, NNC_LB_MUL, nnc_le_var(k, scale), nnc_le_load(k, tmp, nnc_le_int(k, 0), 1, NULL));
  nnc_ls_push(k, body, nnc_ls_store(k, out, nnc_le_var(k, i), val, NULL));
  nnc_ls_push(k, body, nnc_ls_assign(k, acc, nnc_le_bin(k, NNC_LB_ADD, nnc_le_var(k, acc), nnc_le_const(k, nnc_lt(NNC_F32, 1), 1))));
  nnc_lstmt *loop = nnc_ls_for(k, i, nnc_le_int(k, 0), nnc_le_scalar(k, NNC_LSC_N), 1, NNC_LOOP_PARALLEL, body);
  k->body = nnc_ls_block(k);
  nnc_ls_push(k, k->body, nnc_ls_let(k, scale, nnc_le_const(k, nnc_lt(NNC_F32, 1), 2)));
  nnc_ls_push(k, k->body, nnc_ls_store(k, tmp, nnc_le_int(k, 0), nnc_le_const(k, nnc_lt(NNC_F32, 1), 1), NULL));
  nnc_ls_push(k, k->body, nnc_ls_let(k, acc, nnc_le_const(k, nnc_lt(NNC_F32, 1), 0)));
  nnc_ls_push(k, k->body, loop);
  nnc_lk_finish(k);

  nnc_lk_uses u;
  nnc_lk_uses_of(&u, k);
  CHECK(u.vars[i->id] == i && u.vars[scale->id] == scale && u.vars[unused->id] == NULL);
  CHECK(u.reads[scale->id] == 1 && u.reads[acc->id] == 1 && u.reads[i->id] == 1);
  CHECK(u.outside_parallel[tmp->id] && !u.outside_parallel[out->id]); /* out is stored inside the loop only */

  char *text = NULL;
  size_t len = 0;
  FILE *errs = open_memstream(&text, &len);
  nnc_diags d;
  nnc_diags_init(&d, errs);
  bool ok = true;
  nnc_lcapture p;
  CHECK(!nnc_lcapture_of(&p, k, loop, &u, &d, &ok, "test: "));
  fclose(errs);
  CHECK(!ok && d.nerrors == 1); /* with ok, the first problem only */
  CHECK_MSG(text && strstr(text, "test: kernel outline: parallel loop i assigns acc, defined outside it"), "%s", text);
  free(text);
  CHECK(nnc_lcapture_var(&p, loop, scale->id) && !nnc_lcapture_var(&p, loop, i->id));
  CHECK(nnc_lcapture_buf(&p, k, out->id) && !nnc_lcapture_buf(&p, k, tmp->id) && p.buf_used[tmp->id]);
  CHECK(p.scalar_used[NNC_LSC_N] == false); /* n is the loop bound, evaluated outside the body */
  nnc_lcapture_free(&p);

  nnc_diags quiet;
  char msg[256];
  nnc_diags_init_buffer(&quiet, msg, sizeof msg);
  CHECK(!nnc_lcapture_of(&p, k, loop, &u, &quiet, NULL, "")); /* without ok: every problem */
  CHECK(quiet.nerrors == 2 && strstr(msg, "assigns acc"));
  nnc_lcapture_free(&p);
  nnc_lk_uses_free(&u);

  CHECK(nnc_lstmt_any(k->body, is_parallel_loop, NULL) && !nnc_lstmt_any(body, is_parallel_loop, NULL));
  CHECK(nnc_lstmt_any(k->body, NULL, is_scalar_n) && !nnc_lstmt_any(body, NULL, is_scalar_n));
  nnc_arena_free(a);
}

int main(void) {
  test_typing();
  test_print();
  test_verify();
  test_hash();
  test_analyses();
  test_c_elementwise();
  test_c_reduce_rng();
  test_c_parallel();
  return check_summary();
}
