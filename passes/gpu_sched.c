/* Hand-written GPU and CPU schedules (passes/gpu_sched.h), built with the loop IR constructors.
 *
 * The GPU kernels follow the phase emulator's contract (docs/loops.md): block loops outermost,
 * then thread regions (perfect nests of thread loops) whose bodies hold barriers and shuffles
 * only at their top level. Values that must survive a serial loop around regions (the matmul's
 * accumulators) live in a LOCAL buffer, which is per thread. Every global access is guarded by
 * an `if` on the row and column it touches, so the verifier proves it in bounds for any M, N, K
 * and any batch n <= B_max. */
#include "gpu_sched.h"

#include <math.h>

static nnc_ltype i64(void) { return nnc_lt(NNC_I64, 1); }
static nnc_ltype f32(int lanes) { return nnc_lt(NNC_F32, lanes); }
static nnc_lexpr *I(nnc_kernel *k, int64_t v) { return nnc_le_int(k, v); }
static nnc_lexpr *V(nnc_kernel *k, const nnc_lvar *v) { return nnc_le_var(k, v); }
static nnc_lexpr *add(nnc_kernel *k, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(k, NNC_LB_ADD, a, b); }
static nnc_lexpr *mul(nnc_kernel *k, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(k, NNC_LB_MUL, a, b); }
static nnc_lexpr *lt(nnc_kernel *k, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(k, NNC_LB_LT, a, b); }
static nnc_lexpr *and_(nnc_kernel *k, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(k, NNC_LB_AND, a, b); }
static nnc_lexpr *ceil_div(nnc_kernel *k, nnc_lexpr *a, int64_t d) {
  if (a->kind == NNC_LE_INT && a->ival >= 0) return I(k, (a->ival + d - 1) / d); /* static sizes fold */
  return nnc_le_bin(k, NNC_LB_FLOORDIV, add(k, a, I(k, d - 1)), I(k, d));
}

static void push(nnc_kernel *k, nnc_lstmt *blk, nnc_lstmt *s) { nnc_ls_push(k, blk, s); }
static nnc_lstmt *let(nnc_kernel *k, nnc_lstmt *blk, const nnc_lvar *v, nnc_lexpr *e) {
  nnc_lstmt *s = nnc_ls_let(k, v, e);
  push(k, blk, s);
  return s;
}

static nnc_lstmt *gpu_loop(nnc_kernel *k, const nnc_lvar *v, nnc_lexpr *hi, nnc_loop_kind kind, int axis,
                           nnc_lstmt *body) {
  nnc_lstmt *s = nnc_ls_for(k, v, I(k, 0), hi, 1, kind, body);
  s->axis = axis;
  return s;
}

/* The rows at run time: n*rows when batched. */
static nnc_lexpr *run_rows(nnc_kernel *k, int64_t rows, int64_t batch_max) {
  return batch_max > 0 ? mul(k, nnc_le_scalar(k, NNC_LSC_N), I(k, rows)) : I(k, rows);
}

static nnc_lbuf *global(nnc_kernel *k, const char *name, int64_t size, bool batched, int64_t batch_max) {
  nnc_lbuf *b = nnc_lk_buf(k, name, NNC_F32, NNC_SCOPE_GLOBAL, batched ? size * batch_max : size);
  b->batch_scaled = batched;
  return b;
}

/* A size for comments: 10, n, 10*n. */
static const char *dim(nnc_arena *a, int64_t v, bool batched) {
  if (!batched) return nnc_arena_printf(a, "%lld", (long long)v);
  return v == 1 ? "n" : nnc_arena_printf(a, "%lld*n", (long long)v);
}

/* --- implicit GEMM: the matmul's tiles over operands given by address functions ---------------- */

/* C[M,N] = A[M,K] B[K,N] per product z (a block along z each). An operand's `at` emits into blk
 * the lets that address its element (rc, kc) -- A's row or B's column rc, the reduction index
 * kc, both already checked against M (N) and K -- and returns the element's index, setting
 * *valid to a further condition when the element may be an implicit zero (a conv's padding).
 * k_fastest: consecutive threads take consecutive kc (the operand is contiguous along K), so
 * global reads stay coalesced. */
typedef struct gemm gemm;
typedef struct gemm_operand {
  nnc_lbuf *buf;
  bool k_fastest;
  nnc_lexpr *(*at)(gemm *g, nnc_lstmt *blk, const nnc_lvar *rc, const nnc_lvar *kc, nnc_lexpr **valid);
} gemm_operand;

struct gemm {
  nnc_kernel *k;
  nnc_lexpr *M, *N, *K, *mats; /* at run time */
  gemm_operand a, b;
  nnc_lbuf *c;
  nnc_lexpr *(*c_at)(gemm *g, nnc_lstmt *blk, const nnc_lvar *row, const nnc_lvar *col); /* C's index */
  nnc_lbuf *as, *bs, *acc;
  nnc_lvar *bz, *by, *bx, *ty, *tx, *kt;
  const void *shape;           /* the caller's: matmul or conv geometry */
};

static nnc_lvar *ivar(nnc_kernel *k, const char *name) { return nnc_lk_var(k, name, i64()); }
static nnc_lexpr *fdiv(nnc_kernel *k, nnc_lexpr *a, int64_t d) { return d == 1 ? a : nnc_le_bin(k, NNC_LB_FLOORDIV, a, I(k, d)); }
static nnc_lexpr *fmod_(nnc_kernel *k, nnc_lexpr *a, int64_t d) { return d == 1 ? I(k, 0) : nnc_le_bin(k, NNC_LB_MOD, a, I(k, d)); }
static nnc_lvar *let_var(nnc_kernel *k, nnc_lstmt *blk, const char *name, nnc_lexpr *e) {
  nnc_lvar *v = ivar(k, name);
  let(k, blk, v, e);
  return v;
}

/* The thread nest (ty, tx) around body: one thread region. */
static nnc_lstmt *threads(gemm *g, nnc_lstmt *body) {
  nnc_kernel *k = g->k;
  nnc_lstmt *inner = nnc_ls_block(k);
  push(k, inner, gpu_loop(k, g->tx, I(k, NNC_GPU_MM_THREADS), NNC_LOOP_GPU_THREAD, 0, body));
  return gpu_loop(k, g->ty, I(k, NNC_GPU_MM_THREADS), NNC_LOOP_GPU_THREAD, 1, inner);
}

/* One tile element per thread and round: dst[kk*64 + i] = the operand at (rc, kc), 0 outside. */
static void load_tile(gemm *g, nnc_lstmt *blk, bool is_a, nnc_lexpr *t) {
  nnc_kernel *k = g->k;
  const gemm_operand *op = is_a ? &g->a : &g->b;
  const int64_t T = NNC_GPU_MM_TILE, KT = NNC_GPU_MM_KTILE, NT = NNC_GPU_MM_THREADS * NNC_GPU_MM_THREADS;
  bool kf = op->k_fastest;
  nnc_lvar *l = ivar(k, "l");
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_lvar *e = let_var(k, body, "e", add(k, mul(k, V(k, l), I(k, NT)), t));
  nnc_lvar *i = let_var(k, body, "i", nnc_le_bin(k, kf ? NNC_LB_FLOORDIV : NNC_LB_MOD, V(k, e), I(k, kf ? KT : T)));
  nnc_lvar *kk = let_var(k, body, "kk", nnc_le_bin(k, kf ? NNC_LB_MOD : NNC_LB_FLOORDIV, V(k, e), I(k, kf ? KT : T)));
  nnc_lvar *rc = let_var(k, body, is_a ? "arow" : "bcol", add(k, mul(k, V(k, is_a ? g->by : g->bx), I(k, T)), V(k, i)));
  nnc_lvar *kc = let_var(k, body, "kcol", add(k, mul(k, V(k, g->kt), I(k, KT)), V(k, kk)));
  nnc_lbuf *dst = is_a ? g->as : g->bs;
  /* kk*64 + i, which is e itself when i = e % 64 */
  nnc_lexpr *at = kf ? add(k, mul(k, V(k, kk), I(k, T)), V(k, i)) : V(k, e);
  /* v = 0, overwritten where the element exists, then one store: a store per branch gave cc's
   * bounds warning a path (threaded through the failed guard) it cannot rule out */
  nnc_lvar *v = nnc_lk_var(k, "v", f32(1));
  let(k, body, v, nnc_le_const(k, f32(1), 0));
  nnc_lstmt *in = nnc_ls_block(k);
  nnc_lexpr *valid = NULL;
  nnc_lexpr *index = op->at(g, in, rc, kc, &valid);
  nnc_lstmt *load = nnc_ls_block(k);
  push(k, load, nnc_ls_assign(k, v, nnc_le_load(k, op->buf, index, 1, NULL)));
  push(k, in, valid ? nnc_ls_if(k, valid, load, NULL) : load);
  push(k, body, nnc_ls_if(k, and_(k, lt(k, V(k, rc), is_a ? g->M : g->N), lt(k, V(k, kc), g->K)), in, NULL));
  push(k, body, nnc_ls_store(k, dst, at, V(k, v), NULL));
  push(k, blk, nnc_ls_for(k, l, I(k, 0), I(k, T * KT / NT), 1, NNC_LOOP_SERIAL, body));
}

/* acc[i*4 .. +4] += A[ty*4+i, kk] * B[kk, tx*4 .. +4] over the 16 columns of the tiles. */
static void accumulate(gemm *g, nnc_lstmt *blk) {
  nnc_kernel *k = g->k;
  const int64_t T = NNC_GPU_MM_TILE, R = NNC_GPU_MM_MICRO;
  nnc_lvar *kk = ivar(k, "kk"), *i = ivar(k, "i"), *bv = nnc_lk_var(k, "bv", f32(R));
  nnc_lstmt *body = nnc_ls_block(k), *row = nnc_ls_block(k);
  let(k, body, bv, nnc_le_load(k, g->bs, add(k, mul(k, V(k, kk), I(k, T)), mul(k, V(k, g->tx), I(k, R))), R, NULL));
  nnc_lexpr *av = nnc_le_load(k, g->as, add(k, add(k, mul(k, V(k, kk), I(k, T)), mul(k, V(k, g->ty), I(k, R))), V(k, i)), 1, NULL);
  nnc_lexpr *at = mul(k, V(k, i), I(k, R));
  nnc_lexpr *sum = nnc_le_fma(k, nnc_le_splat(k, av, R), V(k, bv), nnc_le_load(k, g->acc, at, R, NULL));
  push(k, row, nnc_ls_store(k, g->acc, mul(k, V(k, i), I(k, R)), sum, NULL));
  push(k, body, nnc_ls_for(k, i, I(k, 0), I(k, R), 1, NNC_LOOP_UNROLLED, row));
  push(k, blk, nnc_ls_for(k, kk, I(k, 0), I(k, NNC_GPU_MM_KTILE), 1, NNC_LOOP_SERIAL, body));
}

/* C[row, col] = acc[i*4 + j] where the tile meets C. */
static void store_tile(gemm *g, nnc_lstmt *blk) {
  nnc_kernel *k = g->k;
  const int64_t T = NNC_GPU_MM_TILE, R = NNC_GPU_MM_MICRO;
  nnc_lvar *i = ivar(k, "i"), *j = ivar(k, "j");
  nnc_lstmt *ib = nnc_ls_block(k), *jb = nnc_ls_block(k), *st = nnc_ls_block(k);
  nnc_lvar *row = let_var(k, ib, "row", add(k, add(k, mul(k, V(k, g->by), I(k, T)), mul(k, V(k, g->ty), I(k, R))), V(k, i)));
  nnc_lvar *col = let_var(k, jb, "col", add(k, add(k, mul(k, V(k, g->bx), I(k, T)), mul(k, V(k, g->tx), I(k, R))), V(k, j)));
  nnc_lexpr *val = nnc_le_load(k, g->acc, add(k, mul(k, V(k, i), I(k, R)), V(k, j)), 1, NULL);
  nnc_lexpr *index = g->c_at(g, st, row, col);
  push(k, st, nnc_ls_store(k, g->c, index, val, NULL));
  push(k, jb, nnc_ls_if(k, and_(k, lt(k, V(k, row), g->M), lt(k, V(k, col), g->N)), st, NULL));
  push(k, ib, nnc_ls_for(k, j, I(k, 0), I(k, R), 1, NNC_LOOP_UNROLLED, jb));
  push(k, blk, nnc_ls_for(k, i, I(k, 0), I(k, R), 1, NNC_LOOP_UNROLLED, ib));
}

/* The kernel around g's operands: zero the register tile, K in tiles through shared memory
 * (load, barrier, 16 rank-1 updates, barrier: the next tile overwrites these), store. */
static void build_gemm(gemm *g) {
  nnc_kernel *k = g->k;
  const int64_t T = NNC_GPU_MM_TILE, KT = NNC_GPU_MM_KTILE, R = NNC_GPU_MM_MICRO;
  g->as = nnc_lk_buf(k, "a_tile", NNC_F32, NNC_SCOPE_SHARED, KT * T);
  g->bs = nnc_lk_buf(k, "b_tile", NNC_F32, NNC_SCOPE_SHARED, KT * T);
  g->acc = nnc_lk_buf(k, "acc", NNC_F32, NNC_SCOPE_LOCAL, R * R);
  g->bz = ivar(k, "bz"), g->by = ivar(k, "by"), g->bx = ivar(k, "bx");
  g->ty = ivar(k, "ty"), g->tx = ivar(k, "tx"), g->kt = ivar(k, "kt");

  nnc_lstmt *blockb = nnc_ls_block(k);
  nnc_lstmt *zero = nnc_ls_block(k), *zb = nnc_ls_block(k);
  nnc_lvar *i = ivar(k, "i");
  push(k, zb, nnc_ls_store(k, g->acc, mul(k, V(k, i), I(k, R)), nnc_le_const(k, f32(R), 0), NULL));
  push(k, zero, nnc_ls_for(k, i, I(k, 0), I(k, R), 1, NNC_LOOP_UNROLLED, zb));
  push(k, blockb, threads(g, zero));
  nnc_lstmt *step = nnc_ls_block(k);
  nnc_lvar *t = let_var(k, step, "t", add(k, mul(k, V(k, g->ty), I(k, NNC_GPU_MM_THREADS)), V(k, g->tx)));
  load_tile(g, step, true, V(k, t));
  load_tile(g, step, false, V(k, t));
  push(k, step, nnc_ls_barrier(k));
  accumulate(g, step);
  push(k, step, nnc_ls_barrier(k));
  nnc_lstmt *kb = nnc_ls_block(k);
  push(k, kb, threads(g, step));
  push(k, blockb, nnc_ls_comment(k, "K in tiles of 16 through shared memory"));
  push(k, blockb, nnc_ls_for(k, g->kt, I(k, 0), ceil_div(k, g->K, KT), 1, NNC_LOOP_SERIAL, kb));
  nnc_lstmt *out = nnc_ls_block(k);
  store_tile(g, out);
  push(k, blockb, threads(g, out));

  nnc_lstmt *bxb = nnc_ls_block(k), *byb = nnc_ls_block(k);
  push(k, bxb, gpu_loop(k, g->bx, ceil_div(k, g->N, T), NNC_LOOP_GPU_BLOCK, 0, blockb));
  push(k, byb, gpu_loop(k, g->by, ceil_div(k, g->M, T), NNC_LOOP_GPU_BLOCK, 1, bxb));
  push(k, k->body, gpu_loop(k, g->bz, g->mats, NNC_LOOP_GPU_BLOCK, 2, byb));
}

/* --- matmul ------------------------------------------------------------------------------------ */

static const nnc_gpu_matmul_shape *mm_shape(gemm *g) { return g->shape; }

/* The product's offset into an operand of `per` elements per product (0 with one product). */
static nnc_lexpr *mat_base(gemm *g, int64_t per) {
  const nnc_gpu_matmul_shape *s = mm_shape(g);
  return s->mats > 1 || s->batch == NNC_GPU_BATCH_MATS ? mul(g->k, V(g->k, g->bz), I(g->k, per)) : NULL;
}
static nnc_lexpr *plus_base(gemm *g, nnc_lexpr *base, nnc_lexpr *e) { return base ? add(g->k, base, e) : e; }

static nnc_lexpr *mm_a_at(gemm *g, nnc_lstmt *blk, const nnc_lvar *row, const nnc_lvar *kc, nnc_lexpr **valid) {
  (void)blk, (void)valid;
  nnc_kernel *k = g->k;
  const nnc_gpu_matmul_shape *s = mm_shape(g);
  nnc_lexpr *e = s->trans_a ? add(k, mul(k, V(k, kc), I(k, s->M)), V(k, row)) : add(k, mul(k, V(k, row), I(k, s->K)), V(k, kc));
  return plus_base(g, mat_base(g, s->M * s->K), e);
}

static nnc_lexpr *mm_b_at(gemm *g, nnc_lstmt *blk, const nnc_lvar *col, const nnc_lvar *kc, nnc_lexpr **valid) {
  (void)blk, (void)valid;
  nnc_kernel *k = g->k;
  const nnc_gpu_matmul_shape *s = mm_shape(g);
  nnc_lexpr *e = s->trans_b ? add(k, mul(k, V(k, col), I(k, s->K)), V(k, kc)) : add(k, mul(k, V(k, kc), I(k, s->N)), V(k, col));
  return plus_base(g, s->b_shared ? NULL : mat_base(g, s->K * s->N), e);
}

static nnc_lexpr *mm_c_at(gemm *g, nnc_lstmt *blk, const nnc_lvar *row, const nnc_lvar *col) {
  (void)blk;
  nnc_kernel *k = g->k;
  const nnc_gpu_matmul_shape *s = mm_shape(g);
  return plus_base(g, mat_base(g, s->M * s->N), add(k, mul(k, V(k, row), I(k, s->N)), V(k, col)));
}

static bool matmul_covered(const nnc_gpu_matmul_shape *s) {
  if (!s || s->M < 1 || s->N < 1 || s->K < 1 || s->batch_max < 0 || s->mats < 0) return false;
  if ((unsigned)s->batch > NNC_GPU_BATCH_NONE) return false;
  bool several = s->mats > 1;
  if (s->batch_max == 0) return true;
  switch (s->batch) {
  case NNC_GPU_BATCH_ROWS: return !s->trans_a && !several;
  case NNC_GPU_BATCH_K: return s->trans_a && !s->trans_b && !several;
  default: return true;
  }
}

nnc_kernel *nnc_gpu_matmul_kernel(nnc_arena *a, const char *name, const nnc_gpu_matmul_shape *s) {
  if (!matmul_covered(s)) return NULL;
  nnc_kernel *k = nnc_lk_new(a, name);
  k->gpu = true;
  k->batch_max = s->batch_max > 0 ? s->batch_max : 1;
  nnc_gpu_batch batch = s->batch_max > 0 ? s->batch : NNC_GPU_BATCH_NONE;
  int64_t mats = s->mats > 1 ? s->mats : 1, B = s->batch_max;
  bool rows = batch == NNC_GPU_BATCH_ROWS, kb = batch == NNC_GPU_BATCH_K, mb = batch == NNC_GPU_BATCH_MATS;
  gemm g = {.k = k, .shape = s, .a.at = mm_a_at, .b.at = mm_b_at, .c_at = mm_c_at};
  g.c = global(k, "c", mats * s->M * s->N, rows || mb, B);
  g.a.buf = global(k, "a", mats * s->M * s->K, rows || kb || mb, B);
  g.b.buf = global(k, "b", (s->b_shared ? 1 : mats) * s->K * s->N, kb || (mb && !s->b_shared), B);
  g.a.k_fastest = !s->trans_a;
  g.b.k_fastest = s->trans_b;
  nnc_lexpr *n = nnc_le_scalar(k, NNC_LSC_N);
  g.M = rows ? mul(k, n, I(k, s->M)) : I(k, s->M);
  g.N = I(k, s->N);
  g.K = kb ? mul(k, nnc_le_scalar(k, NNC_LSC_N), I(k, s->K)) : I(k, s->K);
  g.mats = mb ? mul(k, nnc_le_scalar(k, NNC_LSC_N), I(k, mats)) : I(k, mats);
  build_gemm(&g);
  k->comment = nnc_arena_printf(a, "matmul [%s, %s] x [%s, %lld]%s%s%s: 64x64 block tiles, 16x16 threads with 4x4 register "
                                   "tiles, K tiles of 16 in shared memory",
                                dim(a, s->M, rows), dim(a, s->K, kb), dim(a, s->K, kb), (long long)s->N,
                                s->trans_a ? ", a transposed" : "", s->trans_b ? ", b transposed" : "",
                                mb || mats > 1 ? nnc_arena_printf(a, ", %s products", dim(a, mats, mb)) : "");
  nnc_lk_finish(k);
  return k;
}

/* --- conv2d and its gradients as implicit GEMMs -------------------------------------------------- */

typedef struct conv {
  nnc_gpu_conv_shape s;
  nnc_gpu_conv_kind kind;
  int64_t OH, OW, cg, og, khw;
  nnc_lbuf *x, *w, *y;        /* the image, the weight, the output image (dy for the gradients) */
} conv;

static const conv *cv(gemm *g) { return g->shape; }

/* n*images at run time, or images. */
static nnc_lexpr *images(gemm *g) {
  const conv *c = cv(g);
  return c->s.batch_max > 0 ? mul(g->k, nnc_le_scalar(g->k, NNC_LSC_N), I(g->k, c->s.images)) : I(g->k, c->s.images);
}

/* (b, ch, iy, ix) -> the flat index of an NCHW tensor with `chans` channels of h x w. */
static nnc_lexpr *nchw(nnc_kernel *k, const nnc_lvar *b, nnc_lexpr *ch, nnc_lexpr *iy, nnc_lexpr *ix, int64_t chans,
                       int64_t h, int64_t w) {
  nnc_lexpr *f = add(k, mul(k, V(k, b), I(k, chans)), ch);
  return add(k, mul(k, add(k, mul(k, f, I(k, h)), iy), I(k, w)), ix);
}

static nnc_lexpr *group_ch(gemm *g, int64_t per, const nnc_lvar *c) {
  return add(g->k, mul(g->k, V(g->k, g->bz), I(g->k, per)), V(g->k, c));
}

/* in the window: 0 <= v < size (a single conjunct when the lower bound is provable) */
static nnc_lexpr *in_range(nnc_kernel *k, const nnc_lvar *v, int64_t size) {
  return and_(k, nnc_le_bin(k, NNC_LB_GE, V(k, v), I(k, 0)), lt(k, V(k, v), I(k, size)));
}
static nnc_lexpr *and_opt(nnc_kernel *k, nnc_lexpr *a, nnc_lexpr *b) { return a ? and_(k, a, b) : b; }

/* The input position o*s - p + kk*d of a tap; whether it is inside [0, size) goes into *valid
 * when padding can put it outside. */
static nnc_lvar *tap_pos(gemm *g, nnc_lstmt *blk, const char *name, const nnc_lvar *o, const nnc_lvar *kk, int64_t s,
                         int64_t p, int64_t d, int64_t size, nnc_lexpr **valid) {
  nnc_kernel *k = g->k;
  nnc_lexpr *e = add(k, mul(k, V(k, o), I(k, s)), mul(k, V(k, kk), I(k, d)));
  nnc_lvar *v = let_var(k, blk, name, p ? nnc_le_bin(k, NNC_LB_SUB, e, I(k, p)) : e);
  if (p) *valid = and_opt(k, *valid, in_range(k, v, size));
  return v;
}

/* (c, ky, kx) of a weight column index kc = (c*KH + ky)*KW + kx. */
static void split_tap(gemm *g, nnc_lstmt *blk, const nnc_lvar *kc, nnc_lvar **c, nnc_lvar **ky, nnc_lvar **kx) {
  nnc_kernel *k = g->k;
  const conv *cn = cv(g);
  *c = let_var(k, blk, "c", fdiv(k, V(k, kc), cn->khw));
  nnc_lvar *r = let_var(k, blk, "tap", fmod_(k, V(k, kc), cn->khw));
  *ky = let_var(k, blk, "ky", fdiv(k, V(k, r), cn->s.KW));
  *kx = let_var(k, blk, "kx", fmod_(k, V(k, r), cn->s.KW));
}

/* (b, y, x) of a position index p = (b*h + y)*w + x. */
static void split_pos(gemm *g, nnc_lstmt *blk, const nnc_lvar *p, int64_t h, int64_t w, nnc_lvar **b, nnc_lvar **y,
                      nnc_lvar **x) {
  nnc_kernel *k = g->k;
  *b = let_var(k, blk, "img", fdiv(k, V(k, p), h * w));
  nnc_lvar *sp = let_var(k, blk, "pix", fmod_(k, V(k, p), h * w));
  *y = let_var(k, blk, "py", fdiv(k, V(k, sp), w));
  *x = let_var(k, blk, "px", fmod_(k, V(k, sp), w));
}

/* forward: A = w[g*og + m, kc], B = x at the tap kc of output position col */
static nnc_lexpr *fwd_a(gemm *g, nnc_lstmt *blk, const nnc_lvar *m, const nnc_lvar *kc, nnc_lexpr **valid) {
  (void)blk, (void)valid;
  const conv *c = cv(g);
  nnc_kernel *k = g->k;
  return add(k, mul(k, group_ch(g, c->og, m), I(k, c->cg * c->khw)), V(k, kc));
}
/* x at tap `tap` (channel, ky, kx) of output position `pos` (b, oy, ox): the forward's B and the
 * weight gradient's B, with the GEMM's roles of the two indices swapped. */
static nnc_lexpr *input_at_tap(gemm *g, nnc_lstmt *blk, const nnc_lvar *pos, const nnc_lvar *tap, nnc_lexpr **valid) {
  const conv *c = cv(g);
  nnc_lvar *ch, *ky, *kx, *b, *oy, *ox;
  split_tap(g, blk, tap, &ch, &ky, &kx);
  split_pos(g, blk, pos, c->OH, c->OW, &b, &oy, &ox);
  nnc_lvar *iy = tap_pos(g, blk, "iy", oy, ky, c->s.sy, c->s.py, c->s.dy, c->s.H, valid);
  nnc_lvar *ix = tap_pos(g, blk, "ix", ox, kx, c->s.sx, c->s.px, c->s.dx, c->s.W, valid);
  return nchw(g->k, b, group_ch(g, c->cg, ch), V(g->k, iy), V(g->k, ix), c->s.C, c->s.H, c->s.W);
}
/* The output (or dy) at channel m of output position pos: the forward's C, the weight gradient's A. */
static nnc_lexpr *output_at(gemm *g, nnc_lstmt *blk, const nnc_lvar *m, const nnc_lvar *pos) {
  const conv *c = cv(g);
  nnc_lvar *b, *oy, *ox;
  split_pos(g, blk, pos, c->OH, c->OW, &b, &oy, &ox);
  return nchw(g->k, b, group_ch(g, c->og, m), V(g->k, oy), V(g->k, ox), c->s.O, c->OH, c->OW);
}
static nnc_lexpr *fwd_b(gemm *g, nnc_lstmt *blk, const nnc_lvar *col, const nnc_lvar *kc, nnc_lexpr **valid) {
  return input_at_tap(g, blk, col, kc, valid);
}
static nnc_lexpr *fwd_c(gemm *g, nnc_lstmt *blk, const nnc_lvar *m, const nnc_lvar *col) {
  return output_at(g, blk, m, col);
}

/* input grad: A = w[g*og + o, m, ky, kx] for kc = (o, ky, kx), B = dy at the output position
 * whose tap (ky, kx) lands on input position col: t = i + p - k*d a multiple of s. */
static nnc_lexpr *dx_a(gemm *g, nnc_lstmt *blk, const nnc_lvar *m, const nnc_lvar *kc, nnc_lexpr **valid) {
  (void)valid;
  const conv *c = cv(g);
  nnc_kernel *k = g->k;
  nnc_lvar *o = let_var(k, blk, "o", fdiv(k, V(k, kc), c->khw));
  nnc_lvar *r = let_var(k, blk, "tap", fmod_(k, V(k, kc), c->khw));
  nnc_lexpr *f = add(k, mul(k, group_ch(g, c->og, o), I(k, c->cg)), V(k, m));
  return add(k, mul(k, f, I(k, c->khw)), V(k, r));
}
static nnc_lvar *source_pos(gemm *g, nnc_lstmt *blk, const char *name, const nnc_lvar *i, const nnc_lvar *kk, int64_t s,
                            int64_t p, int64_t d, int64_t size, nnc_lexpr **valid) {
  nnc_kernel *k = g->k;
  nnc_lexpr *t = nnc_le_bin(k, NNC_LB_SUB, add(k, V(k, i), I(k, p)), mul(k, V(k, kk), I(k, d)));
  nnc_lvar *tv = let_var(k, blk, "t", t);
  nnc_lvar *o = let_var(k, blk, name, fdiv(k, V(k, tv), s));
  *valid = and_opt(k, *valid, in_range(k, o, size));
  if (s > 1) *valid = and_(k, *valid, nnc_le_bin(k, NNC_LB_EQ, fmod_(k, V(k, tv), s), I(k, 0)));
  return o;
}
static nnc_lexpr *dx_b(gemm *g, nnc_lstmt *blk, const nnc_lvar *col, const nnc_lvar *kc, nnc_lexpr **valid) {
  const conv *c = cv(g);
  nnc_lvar *o, *ky, *kx, *b, *iy, *ix;
  split_tap(g, blk, kc, &o, &ky, &kx);
  split_pos(g, blk, col, c->s.H, c->s.W, &b, &iy, &ix);
  nnc_lvar *oy = source_pos(g, blk, "oy", iy, ky, c->s.sy, c->s.py, c->s.dy, c->OH, valid);
  nnc_lvar *ox = source_pos(g, blk, "ox", ix, kx, c->s.sx, c->s.px, c->s.dx, c->OW, valid);
  return nchw(g->k, b, group_ch(g, c->og, o), V(g->k, oy), V(g->k, ox), c->s.O, c->OH, c->OW);
}
static nnc_lexpr *dx_c(gemm *g, nnc_lstmt *blk, const nnc_lvar *m, const nnc_lvar *col) {
  const conv *c = cv(g);
  nnc_lvar *b, *iy, *ix;
  split_pos(g, blk, col, c->s.H, c->s.W, &b, &iy, &ix);
  return nchw(g->k, b, group_ch(g, c->cg, m), V(g->k, iy), V(g->k, ix), c->s.C, c->s.H, c->s.W);
}

/* weight grad: A = dy[b, g*og + m, oy, ox] for kc = (b, oy, ox), B = x at tap col of that
 * output position. */
static nnc_lexpr *dw_a(gemm *g, nnc_lstmt *blk, const nnc_lvar *m, const nnc_lvar *kc, nnc_lexpr **valid) {
  (void)valid;
  return output_at(g, blk, m, kc);
}
static nnc_lexpr *dw_b(gemm *g, nnc_lstmt *blk, const nnc_lvar *col, const nnc_lvar *kc, nnc_lexpr **valid) {
  return input_at_tap(g, blk, kc, col, valid);
}
static nnc_lexpr *dw_c(gemm *g, nnc_lstmt *blk, const nnc_lvar *m, const nnc_lvar *col) {
  (void)blk;
  const conv *c = cv(g);
  nnc_kernel *k = g->k;
  return add(k, mul(k, group_ch(g, c->og, m), I(k, c->cg * c->khw)), V(k, col));
}

nnc_kernel *nnc_gpu_conv2d_kernel(nnc_arena *a, const char *name, nnc_gpu_conv_kind kind, const nnc_gpu_conv_shape *s) {
  if (!s || (unsigned)kind > NNC_GPU_CONV_WEIGHT_GRAD) return NULL;
  if (s->images < 1 || s->C < 1 || s->H < 1 || s->W < 1 || s->O < 1 || s->KH < 1 || s->KW < 1 || s->sy < 1 ||
      s->sx < 1 || s->py < 0 || s->px < 0 || s->dy < 1 || s->dx < 1 || s->groups < 1 || s->batch_max < 0 ||
      s->C % s->groups || s->O % s->groups)
    return NULL;
  int64_t OH = (s->H + 2 * s->py - s->dy * (s->KH - 1) - 1) / s->sy + 1;
  int64_t OW = (s->W + 2 * s->px - s->dx * (s->KW - 1) - 1) / s->sx + 1;
  if (s->H + 2 * s->py - s->dy * (s->KH - 1) - 1 < 0 || s->W + 2 * s->px - s->dx * (s->KW - 1) - 1 < 0) return NULL;
  conv *c = nnc_arena_alloc(a, sizeof *c);
  *c = (conv){.s = *s, .kind = kind, .OH = OH, .OW = OW, .cg = s->C / s->groups, .og = s->O / s->groups, .khw = s->KH * s->KW};
  nnc_kernel *k = nnc_lk_new(a, name);
  k->gpu = true;
  k->batch_max = s->batch_max > 0 ? s->batch_max : 1;
  bool nb = s->batch_max > 0;
  int64_t B = s->batch_max, xs = s->images * s->C * s->H * s->W, ys = s->images * s->O * OH * OW;
  int64_t ws = s->O * c->cg * c->khw;
  gemm g = {.k = k, .shape = c};
  nnc_lexpr *img = images(&g);
  g.mats = I(k, s->groups);
  static const char *const what[] = {"conv2d", "conv2d input gradient", "conv2d weight gradient"};
  switch (kind) {
  case NNC_GPU_CONV_FORWARD: /* y, x, w */
    c->y = g.c = global(k, "y", ys, nb, B), c->x = global(k, "x", xs, nb, B), c->w = global(k, "w", ws, false, 0);
    g.a = (gemm_operand){c->w, true, fwd_a}, g.b = (gemm_operand){c->x, false, fwd_b}, g.c_at = fwd_c;
    g.M = I(k, c->og), g.N = mul(k, img, I(k, OH * OW)), g.K = I(k, c->cg * c->khw);
    break;
  case NNC_GPU_CONV_INPUT_GRAD: /* dx, dy, w */
    g.c = global(k, "dx", xs, nb, B), c->y = global(k, "dy", ys, nb, B), c->w = global(k, "w", ws, false, 0);
    g.a = (gemm_operand){c->w, true, dx_a}, g.b = (gemm_operand){c->y, false, dx_b}, g.c_at = dx_c;
    g.M = I(k, c->cg), g.N = mul(k, img, I(k, s->H * s->W)), g.K = I(k, c->og * c->khw);
    break;
  case NNC_GPU_CONV_WEIGHT_GRAD: /* dw, dy, x */
    g.c = global(k, "dw", ws, false, 0), c->y = global(k, "dy", ys, nb, B), c->x = global(k, "x", xs, nb, B);
    g.a = (gemm_operand){c->y, true, dw_a}, g.b = (gemm_operand){c->x, true, dw_b}, g.c_at = dw_c;
    g.M = I(k, c->og), g.N = I(k, c->cg * c->khw), g.K = mul(k, img, I(k, OH * OW));
    break;
  }
  build_gemm(&g);
  k->comment = nnc_arena_printf(a, "%s as an implicit GEMM: %s images %lldx%lldx%lld, %lld filters %lldx%lld, stride %lldx%lld, "
                                   "padding %lldx%lld, dilation %lldx%lld, %lld groups; 64x64 block tiles, 16x16 threads with "
                                   "4x4 register tiles, K tiles of 16 gathered into shared memory",
                                what[kind], dim(a, s->images, nb), (long long)s->C, (long long)s->H,
                                (long long)s->W, (long long)s->O, (long long)s->KH, (long long)s->KW, (long long)s->sy,
                                (long long)s->sx, (long long)s->py, (long long)s->px, (long long)s->dy, (long long)s->dx,
                                (long long)s->groups);
  nnc_lk_finish(k);
  return k;
}

/* --- row reductions ------------------------------------------------------------------------------ */

/* max with NaN winning and staying, as the lowering combines (docs/ir.md) */
static nnc_lexpr *nan_max(nnc_kernel *k, nnc_lexpr *acc, nnc_lexpr *x) {
  nnc_lexpr *isnan_acc = nnc_le_bin(k, NNC_LB_NE, acc, acc), *isnan_x = nnc_le_bin(k, NNC_LB_NE, x, x);
  return nnc_le_select(k, isnan_acc, acc, nnc_le_select(k, nnc_le_bin(k, NNC_LB_GT, x, acc), x, nnc_le_select(k, isnan_x, x, acc)));
}

static nnc_lexpr *fold(nnc_kernel *k, bool is_max, nnc_lexpr *acc, nnc_lexpr *x) {
  return is_max ? nan_max(k, acc, x) : add(k, acc, x);
}

/* The block: 32 threads for short rows, 128 up to 1024 columns, else 256. */
static int64_t reduce_threads(const nnc_gpu_reduce_shape *s) {
  if (s->cols_batched || s->cols > 1024) return 256;
  return s->cols > 32 ? 128 : 32;
}

nnc_kernel *nnc_gpu_row_reduce_kernel(nnc_arena *a, const char *name, const nnc_gpu_reduce_shape *s) {
  if (!s || s->rows < 1 || s->cols < 1 || s->batch_max < 0) return NULL;
  bool batched = s->batch_max > 0;
  bool rb = batched && s->rows_batched, cb = batched && s->cols_batched;
  if ((rb && cb) || (cb && s->rows != 1)) return NULL;
  const int64_t T = reduce_threads(s), W = T / 32;
  nnc_kernel *k = nnc_lk_new(a, name);
  k->gpu = true;
  k->batch_max = batched ? s->batch_max : 1;
  nnc_lbuf *out = global(k, "out", s->rows, rb, s->batch_max);
  nnc_lbuf *x = global(k, "x", s->rows * s->cols, rb || cb, s->batch_max);
  nnc_lbuf *part = nnc_lk_buf(k, "warp_part", NNC_F32, NNC_SCOPE_SHARED, W);
  nnc_lvar *r = ivar(k, "r"), *t = ivar(k, "t"), *c = ivar(k, "c"), *w = ivar(k, "w");
  nnc_lvar *v = nnc_lk_var(k, "v", f32(1)), *all = nnc_lk_var(k, "all", f32(1));
  nnc_lexpr *cols = cb ? mul(k, nnc_le_scalar(k, NNC_LSC_N), I(k, s->cols)) : I(k, s->cols);
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_lvar *lane = let_var(k, body, "lane", nnc_le_bin(k, NNC_LB_MOD, V(k, t), I(k, 32)));
  nnc_lvar *warp = let_var(k, body, "warp", nnc_le_bin(k, NNC_LB_FLOORDIV, V(k, t), I(k, 32)));
  let(k, body, v, nnc_le_const(k, f32(1), s->is_max ? -INFINITY : 0));
  nnc_lstmt *sb = nnc_ls_block(k);
  nnc_lexpr *xv = nnc_le_load(k, x, add(k, mul(k, V(k, r), cols), V(k, c)), 1, NULL);
  push(k, sb, nnc_ls_assign(k, v, fold(k, s->is_max, V(k, v), xv)));
  push(k, body, nnc_ls_for(k, c, V(k, t), cols, T, NNC_LOOP_SERIAL, sb));
  /* the warp's value in every lane: each shuffle is its own statement (it cuts the phase) */
  for (int m = 16; m >= 1; m /= 2) {
    nnc_lvar *o = nnc_lk_var(k, "other", f32(1));
    let(k, body, o, nnc_le_shuffle_xor(k, V(k, v), I(k, m)));
    push(k, body, nnc_ls_assign(k, v, fold(k, s->is_max, V(k, v), V(k, o))));
  }
  nnc_lstmt *st = nnc_ls_block(k);
  push(k, st, nnc_ls_store(k, part, V(k, warp), V(k, v), NULL));
  push(k, body, nnc_ls_if(k, nnc_le_bin(k, NNC_LB_EQ, V(k, lane), I(k, 0)), st, NULL));
  push(k, body, nnc_ls_barrier(k));
  /* thread 0 folds the warps in order and stores the row */
  nnc_lstmt *last = nnc_ls_block(k), *fb = nnc_ls_block(k);
  let(k, last, all, nnc_le_load(k, part, I(k, 0), 1, NULL));
  push(k, fb, nnc_ls_assign(k, all, fold(k, s->is_max, V(k, all), nnc_le_load(k, part, V(k, w), 1, NULL))));
  push(k, last, nnc_ls_for(k, w, I(k, 1), I(k, W), 1, NNC_LOOP_UNROLLED, fb));
  push(k, last, nnc_ls_store(k, out, V(k, r), V(k, all), NULL));
  push(k, body, nnc_ls_if(k, nnc_le_bin(k, NNC_LB_EQ, V(k, t), I(k, 0)), last, NULL));

  nnc_lstmt *tb = nnc_ls_block(k);
  push(k, tb, gpu_loop(k, t, I(k, T), NNC_LOOP_GPU_THREAD, 0, body));
  push(k, k->body, gpu_loop(k, r, rb ? mul(k, nnc_le_scalar(k, NNC_LSC_N), I(k, s->rows)) : I(k, s->rows), NNC_LOOP_GPU_BLOCK, 0, tb));
  k->comment = nnc_arena_printf(a, "%s over rows of %s: one block of %lld threads per row, warp shuffles, warp results in "
                                   "shared memory",
                                s->is_max ? "max" : "sum", dim(a, s->cols, cb), (long long)T);
  nnc_lk_finish(k);
  return k;
}

/* --- softmax (GPU) ----------------------------------------------------------------------------- */

typedef struct sm {
  nnc_kernel *k;
  nnc_lstmt *body;            /* the thread region's body */
  nnc_lbuf *x, *y;
  nnc_lvar *r, *t, *lane, *warp;
  int64_t cols;
} sm;

/* v = op(v, shuffle_xor(v, m)) for m = 16, 8, 4, 2, 1: every lane of the warp ends with the
 * warp's reduction. Each is its own top-level statement (a shuffle cuts the phase there). */
static void warp_reduce(sm *g, nnc_lvar *v, nnc_lbinop op) {
  nnc_kernel *k = g->k;
  for (int m = 16; m >= 1; m /= 2)
    push(k, g->body, nnc_ls_assign(k, v, nnc_le_bin(k, op, V(k, v), nnc_le_shuffle_xor(k, V(k, v), I(k, m)))));
}

/* x[r, c] for the strided columns c = t, t + 128, ... of the row: fn(c's element) folded into v. */
static nnc_lexpr *x_at(sm *g, const nnc_lvar *c) {
  nnc_kernel *k = g->k;
  return nnc_le_load(k, g->x, add(k, mul(k, V(k, g->r), I(k, g->cols)), V(k, c)), 1, NULL);
}

static nnc_lstmt *strided(sm *g, nnc_lvar *c, nnc_lstmt *body) {
  return nnc_ls_for(g->k, c, V(g->k, g->t), I(g->k, g->cols), NNC_GPU_SOFTMAX_THREADS, NNC_LOOP_SERIAL, body);
}

/* The warps' partial results in `part` (lane 0 writes), then after a barrier every thread
 * folds them into `all`. */
static void block_reduce(sm *g, nnc_lvar *v, nnc_lbuf *part, nnc_lvar *all, nnc_lbinop op) {
  nnc_kernel *k = g->k;
  const int64_t W = NNC_GPU_SOFTMAX_THREADS / 32;
  warp_reduce(g, v, op);
  nnc_lstmt *st = nnc_ls_block(k);
  push(k, st, nnc_ls_store(k, part, V(k, g->warp), V(k, v), NULL));
  push(k, g->body, nnc_ls_if(k, nnc_le_bin(k, NNC_LB_EQ, V(k, g->lane), I(k, 0)), st, NULL));
  push(k, g->body, nnc_ls_barrier(k));
  let(k, g->body, all, nnc_le_load(k, part, I(k, 0), 1, NULL));
  nnc_lvar *w = nnc_lk_var(k, "w", i64());
  nnc_lstmt *fold = nnc_ls_block(k);
  push(k, fold, nnc_ls_assign(k, all, nnc_le_bin(k, op, V(k, all), nnc_le_load(k, part, V(k, w), 1, NULL))));
  push(k, g->body, nnc_ls_for(k, w, I(k, 1), I(k, W), 1, NNC_LOOP_UNROLLED, fold));
}

nnc_kernel *nnc_gpu_softmax_kernel(nnc_arena *a, const char *name, int64_t rows, int64_t cols, int64_t batch_max) {
  if (rows < 1 || cols < 1 || batch_max < 0) return NULL;
  const int64_t W = NNC_GPU_SOFTMAX_THREADS / 32;
  nnc_kernel *k = nnc_lk_new(a, name);
  k->gpu = true;
  k->batch_max = batch_max > 0 ? batch_max : 1;
  sm g = {.k = k, .cols = cols};
  g.y = global(k, "y", rows * cols, batch_max > 0, batch_max);
  g.x = global(k, "x", rows * cols, batch_max > 0, batch_max);
  nnc_lbuf *wmax = nnc_lk_buf(k, "warp_max", NNC_F32, NNC_SCOPE_SHARED, W);
  nnc_lbuf *wsum = nnc_lk_buf(k, "warp_sum", NNC_F32, NNC_SCOPE_SHARED, W);
  g.r = nnc_lk_var(k, "r", i64()), g.t = nnc_lk_var(k, "t", i64());
  g.lane = nnc_lk_var(k, "lane", i64()), g.warp = nnc_lk_var(k, "warp", i64());
  g.body = nnc_ls_block(k);
  let(k, g.body, g.lane, nnc_le_bin(k, NNC_LB_MOD, V(k, g.t), I(k, 32)));
  let(k, g.body, g.warp, nnc_le_bin(k, NNC_LB_FLOORDIV, V(k, g.t), I(k, 32)));
  /* the row's max */
  nnc_lvar *m = nnc_lk_var(k, "m", f32(1)), *mx = nnc_lk_var(k, "row_max", f32(1)), *c = nnc_lk_var(k, "c", i64());
  let(k, g.body, m, nnc_le_const(k, f32(1), -INFINITY));
  nnc_lstmt *mb = nnc_ls_block(k);
  push(k, mb, nnc_ls_assign(k, m, nnc_le_bin(k, NNC_LB_MAX, V(k, m), x_at(&g, c))));
  push(k, g.body, strided(&g, c, mb));
  block_reduce(&g, m, wmax, mx, NNC_LB_MAX);
  /* the sum of exp(x - max) */
  nnc_lvar *s = nnc_lk_var(k, "s", f32(1)), *sum = nnc_lk_var(k, "row_sum", f32(1)), *c2 = nnc_lk_var(k, "c", i64());
  let(k, g.body, s, nnc_le_const(k, f32(1), 0));
  nnc_lstmt *sb = nnc_ls_block(k);
  nnc_lexpr *ex = nnc_le_un(k, NNC_LU_EXP, nnc_le_bin(k, NNC_LB_SUB, x_at(&g, c2), V(k, mx)));
  push(k, sb, nnc_ls_assign(k, s, add(k, V(k, s), ex)));
  push(k, g.body, strided(&g, c2, sb));
  block_reduce(&g, s, wsum, sum, NNC_LB_ADD);
  /* the normalized stores */
  nnc_lvar *inv = nnc_lk_var(k, "inv", f32(1)), *c3 = nnc_lk_var(k, "c", i64());
  let(k, g.body, inv, nnc_le_bin(k, NNC_LB_DIV, nnc_le_const(k, f32(1), 1), V(k, sum)));
  nnc_lstmt *yb = nnc_ls_block(k);
  nnc_lexpr *e3 = nnc_le_un(k, NNC_LU_EXP, nnc_le_bin(k, NNC_LB_SUB, x_at(&g, c3), V(k, mx)));
  push(k, yb, nnc_ls_store(k, g.y, add(k, mul(k, V(k, g.r), I(k, cols)), V(k, c3)), mul(k, e3, V(k, inv)), NULL));
  push(k, g.body, strided(&g, c3, yb));

  nnc_lstmt *tb = nnc_ls_block(k);
  push(k, tb, gpu_loop(k, g.t, I(k, NNC_GPU_SOFTMAX_THREADS), NNC_LOOP_GPU_THREAD, 0, g.body));
  push(k, k->body, gpu_loop(k, g.r, run_rows(k, rows, batch_max), NNC_LOOP_GPU_BLOCK, 0, tb));
  k->comment = nnc_arena_printf(a, "softmax over rows of %lld: one block of %d threads per row, warp shuffles, "
                                   "warp results in shared memory", (long long)cols, NNC_GPU_SOFTMAX_THREADS);
  nnc_lk_finish(k);
  return k;
}

/* --- softmax (CPU) ----------------------------------------------------------------------------- */

nnc_kernel *nnc_cpu_softmax_kernel(nnc_arena *a, const char *name, int64_t rows, int64_t cols, int64_t batch_max,
                                   int lanes) {
  if (rows < 1 || cols < 1 || batch_max < 0 || lanes < 1 || lanes > NNC_MAX_LANES || (lanes & (lanes - 1))) return NULL;
  const int L = lanes;
  nnc_kernel *k = nnc_lk_new(a, name);
  k->batch_max = batch_max > 0 ? batch_max : 1;
  nnc_lbuf *y = global(k, "y", rows * cols, batch_max > 0, batch_max);
  nnc_lbuf *x = global(k, "x", rows * cols, batch_max > 0, batch_max);
  nnc_lvar *r = nnc_lk_var(k, "r", i64()), *base = nnc_lk_var(k, "base", i64());
  nnc_lstmt *row = nnc_ls_block(k);
  let(k, row, base, mul(k, V(k, r), I(k, cols)));
  /* One pass over the row: mask the tail, load, fold with fn. */
  nnc_lexpr *splat_cols = NULL;
  nnc_lvar *c[3], *msk[3];
  nnc_lstmt *pass[3];
  for (int p = 0; p < 3; p++) {
    c[p] = nnc_lk_var(k, "c", i64());
    msk[p] = nnc_lk_var(k, "m", nnc_lt(NNC_BOOL, L));
    pass[p] = nnc_ls_block(k);
    splat_cols = nnc_le_splat(k, I(k, cols), L);
    let(k, pass[p], msk[p], lt(k, add(k, nnc_le_lane(k, L), nnc_le_splat(k, V(k, c[p]), L)), splat_cols));
  }
#define XV(p) nnc_le_load(k, x, add(k, V(k, base), V(k, c[p])), L, V(k, msk[p]))
  nnc_lvar *mv = nnc_lk_var(k, "mv", f32(L)), *mx = nnc_lk_var(k, "row_max", f32(1));
  nnc_lvar *sv = nnc_lk_var(k, "sv", f32(L)), *inv = nnc_lk_var(k, "inv", f32(1));
  nnc_lexpr *ninf = nnc_le_const(k, f32(L), -INFINITY), *zero = nnc_le_const(k, f32(L), 0);
  let(k, row, mv, ninf);
  push(k, pass[0], nnc_ls_assign(k, mv, nnc_le_bin(k, NNC_LB_MAX, V(k, mv), nnc_le_select(k, V(k, msk[0]), XV(0), ninf))));
  push(k, row, nnc_ls_for(k, c[0], I(k, 0), I(k, cols), L, NNC_LOOP_SERIAL, pass[0]));
  let(k, row, mx, nnc_le_hreduce(k, NNC_LB_MAX, V(k, mv)));
  let(k, row, sv, zero);
  nnc_lexpr *e1 = nnc_le_un(k, NNC_LU_EXP, nnc_le_bin(k, NNC_LB_SUB, XV(1), nnc_le_splat(k, V(k, mx), L)));
  push(k, pass[1], nnc_ls_assign(k, sv, add(k, V(k, sv), nnc_le_select(k, V(k, msk[1]), e1, zero))));
  push(k, row, nnc_ls_for(k, c[1], I(k, 0), I(k, cols), L, NNC_LOOP_SERIAL, pass[1]));
  let(k, row, inv, nnc_le_bin(k, NNC_LB_DIV, nnc_le_const(k, f32(1), 1), nnc_le_hreduce(k, NNC_LB_ADD, V(k, sv))));
  nnc_lexpr *e2 = nnc_le_un(k, NNC_LU_EXP, nnc_le_bin(k, NNC_LB_SUB, XV(2), nnc_le_splat(k, V(k, mx), L)));
  push(k, pass[2], nnc_ls_store(k, y, add(k, V(k, base), V(k, c[2])), mul(k, e2, nnc_le_splat(k, V(k, inv), L)), V(k, msk[2])));
  push(k, row, nnc_ls_for(k, c[2], I(k, 0), I(k, cols), L, NNC_LOOP_SERIAL, pass[2]));
#undef XV
  push(k, k->body, nnc_ls_for(k, r, I(k, 0), run_rows(k, rows, batch_max), 1, NNC_LOOP_PARALLEL, row));
  k->comment = nnc_arena_printf(a, "softmax over rows of %lld: rows in parallel, %d-lane vectors, masked tail", (long long)cols, L);
  nnc_lk_finish(k);
  return k;
}
