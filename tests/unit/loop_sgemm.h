/* A packed, register-tiled sgemm written in loop IR by hand (DESIGN §8's proof of
 * expressiveness): C[M,N] = A[M,K] B[K,N], row-major, f32. With L lanes (16 for AVX-512,
 * 8 for AVX2, 4 for SSE/NEON: nnc_target's f32 lanes) a panel is NR = 2L columns:
 *
 *   for each NR-column panel j0 of B:
 *     pack B[:, j0:j0+NR] into scratch (masked loads zero-fill past N)
 *     for each 6-row tile i0 of A (a parallel loop):
 *       12 f32xL accumulators (6 rows x 2 vectors): 12 of the 16 (AVX2) or 32 (AVX-512)
 *       vector registers, leaving room for the two panel vectors and a broadcast
 *       for k: two panel loads, six broadcasts of A, twelve FMAs
 *       store the tile (masked on the last panel when N is not a multiple of NR)
 *   the last M % 6 rows: the same tile with fewer rows
 *
 * Shared by tests/unit/test_loop_matmul.c and bench/loop_matmul.c. */
#ifndef NNC_TEST_LOOP_SGEMM_H
#define NNC_TEST_LOOP_SGEMM_H

#include <stdio.h>

#include "ir/loop.h"

/* rows of a tile; SGEMM_VL and SGEMM_NR: sgemm_build's lanes and panel width (sgemm_build_lanes
 * takes any lanes; its panel width is sgemm_ir.nr) */
enum { SGEMM_MR = 6, SGEMM_NR = 32, SGEMM_VL = 16 };

typedef struct sgemm_ir {
  nnc_kernel *k;
  nnc_lbuf *A, *B, *C, *pack;
  int64_t M, N, K;
  int vl, nr; /* lanes of a vector, columns of a panel (2 vectors) */
} sgemm_ir;

/* lane + splat(s) < splat(N): the lanes of a vector at column s that lie inside the matrix */
static nnc_lexpr *sgemm_cols(nnc_kernel *k, nnc_lexpr *s, int64_t N, int vl) {
  return nnc_le_bin(k, NNC_LB_LT, nnc_le_bin(k, NNC_LB_ADD, nnc_le_lane(k, vl), nnc_le_splat(k, s, vl)),
                    nnc_le_splat(k, nnc_le_int(k, N), vl));
}

/* The column of vector v of the panel at j0: j0 or j0 + L. */
static nnc_lexpr *sgemm_col(nnc_kernel *k, const nnc_lvar *j0, int v, int vl) {
  nnc_lexpr *j = nnc_le_var(k, j0);
  return v ? nnc_le_bin(k, NNC_LB_ADD, j, nnc_le_int(k, (int64_t)vl * v)) : j;
}

/* pack[k*NR + Lv : L] = B[k*N + col : L], masked when the panel may pass N. */
static nnc_lstmt *sgemm_pack(sgemm_ir *g, const nnc_lvar *j0, bool masked) {
  nnc_kernel *k = g->k;
  nnc_lvar *kk = nnc_lk_var(k, "k", nnc_lt(NNC_I64, 1));
  nnc_lstmt *body = nnc_ls_block(k);
  for (int v = 0; v < 2; v++) {
    nnc_lexpr *src = nnc_le_bin(k, NNC_LB_ADD, nnc_le_bin(k, NNC_LB_MUL, nnc_le_var(k, kk), nnc_le_int(k, g->N)), sgemm_col(k, j0, v, g->vl));
    nnc_lexpr *ld = nnc_le_load(k, g->B, src, g->vl, masked ? sgemm_cols(k, sgemm_col(k, j0, v, g->vl), g->N, g->vl) : NULL);
    nnc_lexpr *dst = nnc_le_bin(k, NNC_LB_ADD, nnc_le_bin(k, NNC_LB_MUL, nnc_le_var(k, kk), nnc_le_int(k, g->nr)),
                                nnc_le_int(k, (int64_t)g->vl * v));
    nnc_ls_push(k, body, nnc_ls_store(k, g->pack, dst, ld, NULL));
  }
  return nnc_ls_for(k, kk, nnc_le_int(k, 0), nnc_le_int(k, g->K), 1, NNC_LOOP_SERIAL, body);
}

/* One rows x NR tile at row i0 (an expression) of the panel at j0. */
static void sgemm_tile(sgemm_ir *g, nnc_lstmt *out, nnc_lexpr *(*row0)(sgemm_ir *), const nnc_lvar *j0, int rows,
                       bool masked) {
  nnc_kernel *k = g->k;
  nnc_lvar *acc[SGEMM_MR][2];
  nnc_ltype vt = nnc_lt(NNC_F32, g->vl);
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < 2; v++) {
      char name[32];
      snprintf(name, sizeof name, "c%d%d", r, v);
      acc[r][v] = nnc_lk_var(k, name, vt);
      nnc_ls_push(k, out, nnc_ls_let(k, acc[r][v], nnc_le_const(k, vt, 0)));
    }
  nnc_lvar *kk = nnc_lk_var(k, "k", nnc_lt(NNC_I64, 1));
  nnc_lvar *b[2] = {nnc_lk_var(k, "b0", vt), nnc_lk_var(k, "b1", vt)};
  nnc_lstmt *kb = nnc_ls_block(k);
  for (int v = 0; v < 2; v++) {
    nnc_lexpr *at = nnc_le_bin(k, NNC_LB_ADD, nnc_le_bin(k, NNC_LB_MUL, nnc_le_var(k, kk), nnc_le_int(k, g->nr)),
                               nnc_le_int(k, (int64_t)g->vl * v));
    nnc_ls_push(k, kb, nnc_ls_let(k, b[v], nnc_le_load(k, g->pack, at, g->vl, NULL)));
  }
  for (int r = 0; r < rows; r++) {
    nnc_lexpr *row = nnc_le_bin(k, NNC_LB_ADD, row0(g), nnc_le_int(k, r));
    nnc_lexpr *a = nnc_le_load(k, g->A, nnc_le_bin(k, NNC_LB_ADD, nnc_le_bin(k, NNC_LB_MUL, row, nnc_le_int(k, g->K)), nnc_le_var(k, kk)), 1, NULL);
    nnc_lexpr *as = nnc_le_splat(k, a, g->vl);
    for (int v = 0; v < 2; v++)
      nnc_ls_push(k, kb, nnc_ls_assign(k, acc[r][v], nnc_le_fma(k, as, nnc_le_var(k, b[v]), nnc_le_var(k, acc[r][v]))));
  }
  nnc_ls_push(k, out, nnc_ls_for(k, kk, nnc_le_int(k, 0), nnc_le_int(k, g->K), 1, NNC_LOOP_SERIAL, kb));
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < 2; v++) {
      nnc_lexpr *row = nnc_le_bin(k, NNC_LB_ADD, row0(g), nnc_le_int(k, r));
      nnc_lexpr *at = nnc_le_bin(k, NNC_LB_ADD, nnc_le_bin(k, NNC_LB_MUL, row, nnc_le_int(k, g->N)), sgemm_col(k, j0, v, g->vl));
      nnc_lexpr *m = masked ? sgemm_cols(k, sgemm_col(k, j0, v, g->vl), g->N, g->vl) : NULL;
      nnc_ls_push(k, out, nnc_ls_store(k, g->C, at, nnc_le_var(k, acc[r][v]), m));
    }
}

static const nnc_lvar *sgemm_i0;
static int64_t sgemm_rest_row;
static nnc_lexpr *sgemm_row_var(sgemm_ir *g) { return nnc_le_var(g->k, sgemm_i0); }
static nnc_lexpr *sgemm_row_rest(sgemm_ir *g) { return nnc_le_int(g->k, sgemm_rest_row); }

/* The panel at j0: pack, full row tiles (parallel), the rest rows. */
static nnc_lstmt *sgemm_panel(sgemm_ir *g, const nnc_lvar *j0, bool masked) {
  nnc_kernel *k = g->k;
  nnc_lstmt *p = nnc_ls_block(k);
  nnc_ls_push(k, p, nnc_ls_comment(k, masked ? "the last panel: columns past N are masked" : "a full panel"));
  nnc_ls_push(k, p, sgemm_pack(g, j0, masked));
  int64_t mfull = g->M / SGEMM_MR * SGEMM_MR;
  if (mfull) {
    nnc_lvar *i0 = nnc_lk_var(k, "i0", nnc_lt(NNC_I64, 1));
    nnc_lstmt *tile = nnc_ls_block(k);
    sgemm_i0 = i0;
    sgemm_tile(g, tile, sgemm_row_var, j0, SGEMM_MR, masked);
    nnc_ls_push(k, p, nnc_ls_for(k, i0, nnc_le_int(k, 0), nnc_le_int(k, mfull), SGEMM_MR, NNC_LOOP_PARALLEL, tile));
  }
  if (g->M > mfull) {
    sgemm_rest_row = mfull;
    nnc_ls_push(k, p, nnc_ls_comment(k, "the last rows"));
    sgemm_tile(g, p, sgemm_row_rest, j0, (int)(g->M - mfull), masked);
  }
  return p;
}

/* lanes: a power of two, 2..64 (nnc_target_host().f32_lanes fits the machine's registers). */
static sgemm_ir sgemm_build_lanes(nnc_arena *a, const char *name, int64_t M, int64_t N, int64_t K, int lanes) {
  sgemm_ir g = {0};
  g.M = M, g.N = N, g.K = K, g.vl = lanes, g.nr = 2 * lanes;
  nnc_kernel *k = g.k = nnc_lk_new(a, name);
  k->comment = nnc_arena_printf(a, "C[%lld,%lld] = A[%lld,%lld] B[%lld,%lld]: packed panels, 6x%d register tiles of f32x%d",
                                (long long)M, (long long)N, (long long)M, (long long)K, (long long)K, (long long)N, g.nr, lanes);
  g.A = nnc_lk_buf(k, "A", NNC_F32, NNC_SCOPE_GLOBAL, M * K);
  g.B = nnc_lk_buf(k, "B", NNC_F32, NNC_SCOPE_GLOBAL, K * N);
  g.C = nnc_lk_buf(k, "C", NNC_F32, NNC_SCOPE_GLOBAL, M * N);
  g.pack = nnc_lk_buf(k, "pack", NNC_F32, NNC_SCOPE_SCRATCH, K * g.nr);
  int64_t nfull = N / g.nr * g.nr;
  if (nfull) {
    nnc_lvar *j0 = nnc_lk_var(k, "j0", nnc_lt(NNC_I64, 1));
    nnc_ls_push(k, k->body, nnc_ls_for(k, j0, nnc_le_int(k, 0), nnc_le_int(k, nfull), g.nr, NNC_LOOP_SERIAL,
                                       sgemm_panel(&g, j0, false)));
  }
  if (N > nfull) {
    nnc_lvar *j0 = nnc_lk_var(k, "j0", nnc_lt(NNC_I64, 1));
    nnc_ls_push(k, k->body, nnc_ls_for(k, j0, nnc_le_int(k, nfull), nnc_le_int(k, N), g.nr, NNC_LOOP_SERIAL,
                                       sgemm_panel(&g, j0, true)));
  }
  nnc_lk_finish(k);
  return g;
}

/* The AVX-512-width kernel: 6x32 tiles of f32x16. */
static inline sgemm_ir sgemm_build(nnc_arena *a, const char *name, int64_t M, int64_t N, int64_t K) {
  return sgemm_build_lanes(a, name, M, N, K, 16);
}

#endif
