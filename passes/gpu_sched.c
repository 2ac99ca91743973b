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

/* --- matmul ------------------------------------------------------------------------------------ */

typedef struct mm {
  nnc_kernel *k;
  const nnc_gpu_matmul_shape *s;
  nnc_lbuf *c, *a, *b, *as, *bs, *acc;
  nnc_lvar *by, *bx, *ty, *tx, *kt;
  nnc_lexpr *rows;            /* M at run time */
} mm;

/* The thread nest (ty, tx) around body: one thread region. */
static nnc_lstmt *threads(mm *g, nnc_lstmt *body) {
  nnc_kernel *k = g->k;
  nnc_lstmt *inner = nnc_ls_block(k);
  push(k, inner, gpu_loop(k, g->tx, I(k, NNC_GPU_MM_THREADS), NNC_LOOP_GPU_THREAD, 0, body));
  return gpu_loop(k, g->ty, I(k, NNC_GPU_MM_THREADS), NNC_LOOP_GPU_THREAD, 1, inner);
}

/* One tile element per thread and round: dst[kk*64 + i] = src at (row, kcol), 0 outside. The
 * element order keeps global reads contiguous along src's fastest axis. */
static void load_tile(mm *g, nnc_lstmt *blk, bool is_a, nnc_lexpr *t) {
  nnc_kernel *k = g->k;
  const nnc_gpu_matmul_shape *s = g->s;
  const int64_t T = NNC_GPU_MM_TILE, KT = NNC_GPU_MM_KTILE, NT = NNC_GPU_MM_THREADS * NNC_GPU_MM_THREADS;
  bool k_fastest = is_a ? !s->trans_a : s->trans_b; /* the stored matrix is [.., K] */
  nnc_lvar *l = nnc_lk_var(k, "l", i64()), *e = nnc_lk_var(k, "e", i64()), *i = nnc_lk_var(k, "i", i64());
  nnc_lvar *kk = nnc_lk_var(k, "kk", i64()), *row = nnc_lk_var(k, is_a ? "arow" : "bcol", i64());
  nnc_lvar *kc = nnc_lk_var(k, "kcol", i64());
  nnc_lstmt *body = nnc_ls_block(k);
  let(k, body, e, add(k, mul(k, V(k, l), I(k, NT)), t));
  let(k, body, i, nnc_le_bin(k, k_fastest ? NNC_LB_FLOORDIV : NNC_LB_MOD, V(k, e), I(k, k_fastest ? KT : T)));
  let(k, body, kk, nnc_le_bin(k, k_fastest ? NNC_LB_MOD : NNC_LB_FLOORDIV, V(k, e), I(k, k_fastest ? KT : T)));
  let(k, body, row, add(k, mul(k, V(k, is_a ? g->by : g->bx), I(k, T)), V(k, i)));
  let(k, body, kc, add(k, mul(k, V(k, g->kt), I(k, KT)), V(k, kk)));
  nnc_lexpr *extent = is_a ? g->rows : I(k, s->N);
  int64_t other = is_a ? s->M : s->N; /* the stored row length when K is the slow axis */
  nnc_lexpr *index = k_fastest ? add(k, mul(k, V(k, row), I(k, s->K)), V(k, kc))
                               : add(k, mul(k, V(k, kc), I(k, other)), V(k, row));
  nnc_lbuf *src = is_a ? g->a : g->b, *dst = is_a ? g->as : g->bs;
  nnc_lexpr *at = add(k, mul(k, V(k, kk), I(k, T)), V(k, i));
  nnc_lstmt *in = nnc_ls_block(k), *out = nnc_ls_block(k);
  push(k, in, nnc_ls_store(k, dst, at, nnc_le_load(k, src, index, 1, NULL), NULL));
  push(k, out, nnc_ls_store(k, dst, add(k, mul(k, V(k, kk), I(k, T)), V(k, i)), nnc_le_const(k, f32(1), 0), NULL));
  push(k, body, nnc_ls_if(k, and_(k, lt(k, V(k, row), extent), lt(k, V(k, kc), I(k, s->K))), in, out));
  push(k, blk, nnc_ls_for(k, l, I(k, 0), I(k, T * KT / NT), 1, NNC_LOOP_SERIAL, body));
}

/* acc[i*4 .. +4] += A[ty*4+i, kk] * B[kk, tx*4 .. +4] over the 16 columns of the tiles. */
static void accumulate(mm *g, nnc_lstmt *blk) {
  nnc_kernel *k = g->k;
  const int64_t T = NNC_GPU_MM_TILE, R = NNC_GPU_MM_MICRO;
  nnc_lvar *kk = nnc_lk_var(k, "kk", i64()), *i = nnc_lk_var(k, "i", i64()), *bv = nnc_lk_var(k, "bv", f32(R));
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
static void store_tile(mm *g, nnc_lstmt *blk) {
  nnc_kernel *k = g->k;
  const int64_t T = NNC_GPU_MM_TILE, R = NNC_GPU_MM_MICRO;
  nnc_lvar *i = nnc_lk_var(k, "i", i64()), *j = nnc_lk_var(k, "j", i64());
  nnc_lvar *row = nnc_lk_var(k, "row", i64()), *col = nnc_lk_var(k, "col", i64());
  nnc_lstmt *ib = nnc_ls_block(k), *jb = nnc_ls_block(k), *st = nnc_ls_block(k);
  let(k, ib, row, add(k, add(k, mul(k, V(k, g->by), I(k, T)), mul(k, V(k, g->ty), I(k, R))), V(k, i)));
  let(k, jb, col, add(k, add(k, mul(k, V(k, g->bx), I(k, T)), mul(k, V(k, g->tx), I(k, R))), V(k, j)));
  nnc_lexpr *val = nnc_le_load(k, g->acc, add(k, mul(k, V(k, i), I(k, R)), V(k, j)), 1, NULL);
  push(k, st, nnc_ls_store(k, g->c, add(k, mul(k, V(k, row), I(k, g->s->N)), V(k, col)), val, NULL));
  push(k, jb, nnc_ls_if(k, and_(k, lt(k, V(k, row), g->rows), lt(k, V(k, col), I(k, g->s->N))), st, NULL));
  push(k, ib, nnc_ls_for(k, j, I(k, 0), I(k, R), 1, NNC_LOOP_UNROLLED, jb));
  push(k, blk, nnc_ls_for(k, i, I(k, 0), I(k, R), 1, NNC_LOOP_UNROLLED, ib));
}

nnc_kernel *nnc_gpu_matmul_kernel(nnc_arena *a, const char *name, const nnc_gpu_matmul_shape *s) {
  if (!s || s->M < 1 || s->N < 1 || s->K < 1 || s->batch_max < 0 || (s->batch_max > 0 && s->trans_a)) return NULL;
  const int64_t T = NNC_GPU_MM_TILE, KT = NNC_GPU_MM_KTILE, R = NNC_GPU_MM_MICRO;
  nnc_kernel *k = nnc_lk_new(a, name);
  k->gpu = true;
  k->batch_max = s->batch_max > 0 ? s->batch_max : 1;
  bool batched = s->batch_max > 0;
  mm g = {.k = k, .s = s};
  g.c = global(k, "c", s->M * s->N, batched, s->batch_max);
  g.a = global(k, "a", s->M * s->K, batched, s->batch_max);
  g.b = global(k, "b", s->K * s->N, false, 0);
  g.as = nnc_lk_buf(k, "a_tile", NNC_F32, NNC_SCOPE_SHARED, KT * T);
  g.bs = nnc_lk_buf(k, "b_tile", NNC_F32, NNC_SCOPE_SHARED, KT * T);
  g.acc = nnc_lk_buf(k, "acc", NNC_F32, NNC_SCOPE_LOCAL, R * R);
  g.by = nnc_lk_var(k, "by", i64()), g.bx = nnc_lk_var(k, "bx", i64());
  g.ty = nnc_lk_var(k, "ty", i64()), g.tx = nnc_lk_var(k, "tx", i64()), g.kt = nnc_lk_var(k, "kt", i64());
  g.rows = run_rows(k, s->M, s->batch_max);

  nnc_lstmt *blockb = nnc_ls_block(k);
  /* region: zero the register tile */
  nnc_lstmt *zero = nnc_ls_block(k);
  nnc_lvar *i = nnc_lk_var(k, "i", i64());
  nnc_lstmt *zb = nnc_ls_block(k);
  push(k, zb, nnc_ls_store(k, g.acc, mul(k, V(k, i), I(k, R)), nnc_le_const(k, f32(R), 0), NULL));
  push(k, zero, nnc_ls_for(k, i, I(k, 0), I(k, R), 1, NNC_LOOP_UNROLLED, zb));
  push(k, blockb, threads(&g, zero));
  /* K tiles: load both tiles, barrier, accumulate, barrier (the next tile overwrites them) */
  nnc_lstmt *step = nnc_ls_block(k);
  nnc_lvar *t = nnc_lk_var(k, "t", i64());
  let(k, step, t, add(k, mul(k, V(k, g.ty), I(k, NNC_GPU_MM_THREADS)), V(k, g.tx)));
  load_tile(&g, step, true, V(k, t));
  load_tile(&g, step, false, V(k, t));
  push(k, step, nnc_ls_barrier(k));
  accumulate(&g, step);
  push(k, step, nnc_ls_barrier(k));
  nnc_lstmt *kb = nnc_ls_block(k);
  push(k, kb, threads(&g, step));
  push(k, blockb, nnc_ls_comment(k, "K in tiles of 16 through shared memory"));
  push(k, blockb, nnc_ls_for(k, g.kt, I(k, 0), I(k, (s->K + KT - 1) / KT), 1, NNC_LOOP_SERIAL, kb));
  /* region: the register tile to C */
  nnc_lstmt *out = nnc_ls_block(k);
  store_tile(&g, out);
  push(k, blockb, threads(&g, out));

  nnc_lstmt *bxb = nnc_ls_block(k);
  push(k, bxb, gpu_loop(k, g.bx, I(k, (s->N + T - 1) / T), NNC_LOOP_GPU_BLOCK, 0, blockb));
  push(k, k->body, gpu_loop(k, g.by, ceil_div(k, g.rows, T), NNC_LOOP_GPU_BLOCK, 1, bxb));
  k->comment = nnc_arena_printf(a, "matmul [%lld%s, %lld] x [%lld, %lld]%s%s: 64x64 block tiles, 16x16 threads with 4x4 "
                                   "register tiles, K tiles of 16 in shared memory",
                                (long long)s->M, batched ? "*n" : "", (long long)s->K, (long long)s->K, (long long)s->N,
                                s->trans_a ? ", a transposed" : "", s->trans_b ? ", b transposed" : "");
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
