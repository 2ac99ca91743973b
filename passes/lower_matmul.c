/* The CPU schedule of matmul: register tiles over the host's vector lanes (docs/loops.md "CPU
 * matmul schedule"), in place of lower.c's one-element-at-a-time dot products.
 *
 * How it works. A register tile is MR rows x NV vectors of L columns of the result: MR*NV
 * vector accumulators; for each k, NV vector loads of b's row k, MR scalar loads of a (any
 * layout, through the load hook, so a transposed a is a strided scalar load) broadcast, MR*NV
 * multiplies and adds. Each result sums its products in k order, each product and each sum
 * rounded (no fused multiply-add): the interpreter's arithmetic, so the results are the same
 * bits as its matmul and as lower.c's loops. Two forms, by b's layout:
 *
 * - axpy form, b not transposed: b's rows are contiguous along the result's columns, read in
 *   place (a group input, or a view of one with the same flat index). The result goes straight
 *   to the output (one node) or through a local tile to the group's scalar epilogue (bias,
 *   activation, mask).
 * - packed form, b transposed (a Linear layer's x W^T): b's columns are strided, so a panel of
 *   NR = NV*L of them is copied, transposed, into a local buffer, a chunk of KC k at a time
 *   (kernel-local scratch is not planned by the memory planner, so local memory bounds KC*NR).
 *   A panel is packed once per block of MB rows; the block's partial sums wait in a local
 *   buffer between chunks (stored and reloaded exactly), and go through the epilogue after the
 *   last chunk.
 *
 * Tiles fill the vector registers the host has (nnc_target_host: 16 with AVX2, 32 with
 * AVX-512) with room for the operand vectors. Rows are tiled in steps of MR (or MB) with a
 * guard for the last partial step when M scales with the batch, columns in full panels and one
 * masked (axpy) or zero-filled (packed) last panel, so any size works and every access is
 * provably in bounds. The row loop (or the outermost batch loop of a batched matmul) is the
 * parallel one. */
#include "lower_impl.h"

#include "../ir/target.h"

typedef struct mm {
  lower *L;
  bool ta, tb;
  int r, rb;                          /* ranks of a (and the result), of b */
  const nnc_type *a, *b, *o;
  nnc_lexpr *M, *N, *K;               /* extents; M and K may scale with the batch */
  int64_t n_static, k_static;         /* N and K when static, else -1 */
  int vl;                             /* lanes of a vector */
  int regs;                           /* vector registers of the host at vl lanes */
  nnc_lexpr *batch[NNC_MAX_RANK];     /* the batch indices of the current tile */
} mm;

/* --- operands --------------------------------------------------------------------------------- */

static void a_index(const mm *g, nnc_lexpr *i, nnc_lexpr *k, nnc_lexpr **ai) {
  for (int d = 0; d < g->r - 2; d++) ai[d] = g->batch[d];
  ai[g->r - 2] = g->ta ? k : i;
  ai[g->r - 1] = g->ta ? i : k;
}

static void b_index(const mm *g, nnc_lexpr *k, nnc_lexpr *j, nnc_lexpr **bi) {
  int o = g->rb == 2 ? 0 : g->r - 2;
  for (int d = 0; d < o; d++) bi[d] = g->batch[d];
  bi[o] = g->tb ? j : k;
  bi[o + 1] = g->tb ? k : j;
}

static nnc_lexpr *scalar_operand(mm *g, int j, nnc_lexpr *const *idx) {
  lower *L = g->L;
  if (L->load_hook) return L->load_hook(L, j, idx);
  return nnc_lw_load_flat(L, j, ravel(L, &L->in[j]->type, idx), 1, NULL);
}

/* Operand j as a vector at idx (contiguous along its last axis), masked. */
static nnc_lexpr *vector_operand(mm *g, int j, nnc_lexpr *const *idx, nnc_lexpr *mask) {
  lower *L = g->L;
  nnc_lexpr *f = ravel(L, &L->in[j]->type, idx);
  if (L->vec_load_hook) return L->vec_load_hook(L, j, f, g->vl, mask);
  return nnc_lw_load_flat(L, j, f, g->vl, mask);
}

static bool vector_readable(const mm *g, int j) {
  const lower *L = g->L;
  if (L->vec_ok_hook) return L->vec_ok_hook(g->L, j);
  return L->inbuf[j] != NULL;
}

/* lane + splat(s) < splat(bound): the lanes of a vector starting at s that lie before bound. */
static nnc_lexpr *lanes_before(mm *g, nnc_lexpr *s, nnc_lexpr *bound) {
  lower *L = g->L;
  return bin(L, NNC_LB_LT, add(L, nnc_le_lane(L->k, g->vl), nnc_le_splat(L->k, s, g->vl)), nnc_le_splat(L->k, bound, g->vl));
}

static void out_index(const mm *g, nnc_lexpr *i, nnc_lexpr *j, nnc_lexpr **idx) {
  for (int d = 0; d < g->r - 2; d++) idx[d] = g->batch[d];
  idx[g->r - 2] = i;
  idx[g->r - 1] = j;
}

static void store_element(mm *g, nnc_lstmt *blk, nnc_lexpr *i, nnc_lexpr *j, nnc_lexpr *v) {
  lower *L = g->L;
  nnc_lexpr *idx[NNC_MAX_RANK];
  out_index(g, i, j, idx);
  if (L->store_hook) return L->store_hook(L, blk, idx, L->nd, v);
  nnc_ls_push(L->k, blk, nnc_ls_store(L->k, L->out, ravel(L, L->out_type, idx), v, NULL));
}

static nnc_lvar *zero_vector(mm *g, nnc_lstmt *blk, const char *name) {
  nnc_ltype vt = nnc_lt(NNC_F32, g->vl);
  nnc_lvar *v = new_var(g->L, name, vt);
  nnc_ls_push(g->L->k, blk, nnc_ls_let(g->L->k, v, nnc_le_const(g->L->k, vt, 0)));
  return v;
}

/* --- axpy form: b's rows along the result's columns ------------------------------------------- */

enum { MAX_MR = 8, MAX_NV = 4 };

typedef struct tile {
  nnc_lexpr *row0;                    /* the first row */
  int rows;
  nnc_lexpr *col0;                    /* the first column */
  int nv;                             /* vectors of vl columns */
  bool masked;                        /* columns past N are masked */
} tile;

static nnc_lexpr *row_of(mm *g, const tile *t, int r) { return add_const(g->L, t->row0, r); }

static nnc_lexpr *col_of(mm *g, const tile *t, int v) { return add_const(g->L, t->col0, (int64_t)v * g->vl); }

/* The accumulators through a local tile, then the group's epilogue element by element. */
static void axpy_epilogue(mm *g, nnc_lstmt *blk, const tile *t, nnc_lvar *acc[MAX_MR][MAX_NV]) {
  lower *L = g->L;
  int64_t width = (int64_t)t->nv * g->vl;
  nnc_lbuf *loc = nnc_lk_buf(L->k, nnc_arena_printf(L->k->arena, "tile%d", L->nvars++), NNC_F32, NNC_SCOPE_LOCAL,
                             t->rows * width);
  for (int r = 0; r < t->rows; r++)
    for (int v = 0; v < t->nv; v++)
      nnc_ls_push(L->k, blk, nnc_ls_store(L->k, loc, I(L, r * width + (int64_t)v * g->vl), var(L, acc[r][v]), NULL));
  for (int r = 0; r < t->rows; r++) {
    nnc_lvar *c = idx_var(L, "c");
    nnc_lstmt *body = nnc_ls_block(L->k), *at = body;
    nnc_lexpr *j = add(L, t->col0, var(L, c));
    if (t->masked) {
      at = nnc_ls_block(L->k);
      nnc_ls_push(L->k, body, nnc_ls_if(L->k, bin(L, NNC_LB_LT, j, g->N), at, NULL));
    }
    nnc_lexpr *v = nnc_le_load(L->k, loc, add(L, I(L, r * width), var(L, c)), 1, NULL);
    store_element(g, at, row_of(g, t, r), j, v);
    nnc_ls_push(L->k, blk, nnc_ls_for(L->k, c, I(L, 0), I(L, width), 1, NNC_LOOP_SERIAL, body));
  }
}

static void axpy_tile(mm *g, nnc_lstmt *blk, const tile *t) {
  lower *L = g->L;
  nnc_lvar *acc[MAX_MR][MAX_NV];
  for (int r = 0; r < t->rows; r++)
    for (int v = 0; v < t->nv; v++) acc[r][v] = zero_vector(g, blk, "c");
  nnc_lexpr *mask[MAX_NV] = {0};
  for (int v = 0; v < t->nv; v++) mask[v] = t->masked ? lanes_before(g, col_of(g, t, v), g->N) : NULL;
  nnc_lvar *k = idx_var(L, "k");
  nnc_lstmt *kb = nnc_ls_block(L->k);
  nnc_lvar *b[MAX_NV];
  for (int v = 0; v < t->nv; v++) {
    nnc_lexpr *bi[NNC_MAX_RANK];
    b_index(g, var(L, k), col_of(g, t, v), bi);
    b[v] = new_var(L, "b", nnc_lt(NNC_F32, g->vl));
    nnc_ls_push(L->k, kb, nnc_ls_let(L->k, b[v], vector_operand(g, 1, bi, mask[v])));
  }
  for (int r = 0; r < t->rows; r++) {
    nnc_lexpr *ai[NNC_MAX_RANK];
    a_index(g, row_of(g, t, r), var(L, k), ai);
    nnc_lvar *a = new_var(L, "a", nnc_lt(NNC_F32, g->vl));
    nnc_ls_push(L->k, kb, nnc_ls_let(L->k, a, nnc_le_splat(L->k, scalar_operand(g, 0, ai), g->vl)));
    for (int v = 0; v < t->nv; v++)
      nnc_ls_push(L->k, kb, nnc_ls_assign(L->k, acc[r][v], add(L, var(L, acc[r][v]), mul(L, var(L, a), var(L, b[v])))));
  }
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, k, I(L, 0), g->K, 1, NNC_LOOP_SERIAL, kb));
  if (L->store_hook) return axpy_epilogue(g, blk, t, acc);
  for (int r = 0; r < t->rows; r++)
    for (int v = 0; v < t->nv; v++) {
      nnc_lexpr *idx[NNC_MAX_RANK];
      out_index(g, row_of(g, t, r), col_of(g, t, v), idx);
      nnc_ls_push(L->k, blk, nnc_ls_store(L->k, L->out, ravel(L, L->out_type, idx), var(L, acc[r][v]), mask[v]));
    }
}

/* Every column panel of the rows at row0: full panels of nv vectors, then a masked one. */
static void axpy_rows(mm *g, nnc_lstmt *blk, nnc_lexpr *row0, int rows, int nv) {
  lower *L = g->L;
  int64_t width = (int64_t)nv * g->vl, nfull = g->n_static / width * width;
  if (nfull > 0) {
    nnc_lvar *j0 = idx_var(L, "j");
    nnc_lstmt *body = nnc_ls_block(L->k);
    axpy_tile(g, body, &(tile){.row0 = row0, .rows = rows, .col0 = var(L, j0), .nv = nv});
    nnc_ls_push(L->k, blk, nnc_ls_for(L->k, j0, I(L, 0), I(L, nfull), width, NNC_LOOP_SERIAL, body));
  }
  if (g->n_static > nfull) {
    int rest = (int)((g->n_static - nfull + g->vl - 1) / g->vl);
    axpy_tile(g, blk, &(tile){.row0 = row0, .rows = rows, .col0 = I(L, nfull), .nv = rest, .masked = true});
  }
}

/* --- packed form: b transposed, its panels copied into local memory ---------------------------- */

enum { PACK_ROWS_MAX = 32, PACK_LOCAL = 4096 };

typedef struct packed {
  nnc_lexpr *i0;                      /* the block's first row */
  int64_t mb, nr, kc;                 /* rows of a block, columns of a panel, k of a chunk */
  nnc_lbuf *pk;                       /* pk[k*nr + c] = b[j0 + c, k0 + k] (0 past N) */
  nnc_lbuf *part;                     /* part[t*nr + c]: the block's partial sums */
} packed;

/* pk = the chunk of the panel at j0 from k0, len k long: b's rows along k, one column at a time. */
static void pack_chunk(mm *g, const packed *P, nnc_lstmt *blk, nnc_lexpr *j0, nnc_lexpr *k0, int64_t len) {
  lower *L = g->L;
  nnc_lvar *c = idx_var(L, "c"), *k = idx_var(L, "k");
  nnc_lexpr *j = add(L, j0, var(L, c));
  nnc_lexpr *dst = add(L, mul_const(L, var(L, k), P->nr), var(L, c));
  nnc_lexpr *bi[NNC_MAX_RANK];
  b_index(g, add(L, k0, var(L, k)), j, bi);
  nnc_lstmt *load = nnc_ls_block(L->k), *zero = nnc_ls_block(L->k), *body = nnc_ls_block(L->k);
  nnc_ls_push(L->k, load, nnc_ls_store(L->k, P->pk, dst, scalar_operand(g, 1, bi), NULL));
  nnc_lstmt *loads = nnc_ls_for(L->k, k, I(L, 0), I(L, len), 1, NNC_LOOP_SERIAL, load);
  if (g->n_static % P->nr == 0) {
    nnc_ls_push(L->k, body, loads);
  } else {
    nnc_lvar *kz = idx_var(L, "k");
    nnc_ls_push(L->k, zero, nnc_ls_store(L->k, P->pk, add(L, mul_const(L, var(L, kz), P->nr), var(L, c)),
                                         nnc_le_const(L->k, nnc_lt(NNC_F32, 1), 0), NULL));
    nnc_lstmt *then = nnc_ls_block(L->k), *els = nnc_ls_block(L->k);
    nnc_ls_push(L->k, then, loads);
    nnc_ls_push(L->k, els, nnc_ls_for(L->k, kz, I(L, 0), I(L, len), 1, NNC_LOOP_SERIAL, zero));
    nnc_ls_push(L->k, body, nnc_ls_if(L->k, bin(L, NNC_LB_LT, j, g->N), then, els));
  }
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, c, I(L, 0), I(L, P->nr), 1, NNC_LOOP_SERIAL, body));
}

/* rows x nr partial sums at block row t (an expression) += a[i0 + t.., k0..k0+len] pk. */
static void packed_tile(mm *g, const packed *P, nnc_lstmt *blk, nnc_lexpr *t, int rows, nnc_lexpr *k0, int64_t len) {
  lower *L = g->L;
  int nv = (int)(P->nr / g->vl);
  nnc_lvar *acc[MAX_MR][MAX_NV];
  nnc_ltype vt = nnc_lt(NNC_F32, g->vl);
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < nv; v++) {
      acc[r][v] = new_var(L, "c", vt);
      nnc_lexpr *at = add_const(L, mul_const(L, add_const(L, t, r), P->nr), (int64_t)v * g->vl);
      nnc_ls_push(L->k, blk, nnc_ls_let(L->k, acc[r][v], nnc_le_load(L->k, P->part, at, g->vl, NULL)));
    }
  nnc_lvar *k = idx_var(L, "k");
  nnc_lstmt *kb = nnc_ls_block(L->k);
  nnc_lvar *b[MAX_NV];
  for (int v = 0; v < nv; v++) {
    b[v] = new_var(L, "b", vt);
    nnc_lexpr *at = add_const(L, mul_const(L, var(L, k), P->nr), (int64_t)v * g->vl);
    nnc_ls_push(L->k, kb, nnc_ls_let(L->k, b[v], nnc_le_load(L->k, P->pk, at, g->vl, NULL)));
  }
  for (int r = 0; r < rows; r++) {
    nnc_lexpr *ai[NNC_MAX_RANK];
    a_index(g, add(L, P->i0, add_const(L, t, r)), add(L, k0, var(L, k)), ai);
    nnc_lvar *a = new_var(L, "a", vt);
    nnc_ls_push(L->k, kb, nnc_ls_let(L->k, a, nnc_le_splat(L->k, scalar_operand(g, 0, ai), g->vl)));
    for (int v = 0; v < nv; v++)
      nnc_ls_push(L->k, kb, nnc_ls_assign(L->k, acc[r][v], add(L, var(L, acc[r][v]), mul(L, var(L, a), var(L, b[v])))));
  }
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, k, I(L, 0), I(L, len), 1, NNC_LOOP_SERIAL, kb));
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < nv; v++) {
      nnc_lexpr *at = add_const(L, mul_const(L, add_const(L, t, r), P->nr), (int64_t)v * g->vl);
      nnc_ls_push(L->k, blk, nnc_ls_store(L->k, P->part, at, var(L, acc[r][v]), NULL));
    }
}

/* The block's rows for one chunk: full tiles of mr rows (every row of the block exists), or
 * row by row under a guard (the last block of a batch-scaled M). */
static void packed_rows(mm *g, const packed *P, nnc_lstmt *blk, bool guarded, int mr, nnc_lexpr *k0, int64_t len) {
  lower *L = g->L;
  nnc_lvar *t = idx_var(L, "t");
  nnc_lstmt *body = nnc_ls_block(L->k), *at = body;
  if (guarded) {
    at = nnc_ls_block(L->k);
    nnc_ls_push(L->k, body, nnc_ls_if(L->k, bin(L, NNC_LB_LT, add(L, P->i0, var(L, t)), g->M), at, NULL));
  }
  packed_tile(g, P, at, var(L, t), guarded ? 1 : mr, k0, len);
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, t, I(L, 0), I(L, P->mb), guarded ? 1 : mr, NNC_LOOP_SERIAL, body));
}

/* The epilogue of the block's panel at j0: each result through the store hook. */
static void packed_store(mm *g, const packed *P, nnc_lstmt *blk, nnc_lexpr *j0, bool guarded) {
  lower *L = g->L;
  nnc_lvar *t = idx_var(L, "t"), *c = idx_var(L, "c");
  nnc_lexpr *i = add(L, P->i0, var(L, t)), *j = add(L, j0, var(L, c));
  nnc_lexpr *cond = g->n_static % P->nr ? bin(L, NNC_LB_LT, j, g->N) : NULL;
  if (guarded) { /* the row first: and_ takes a missing left operand */
    nnc_lexpr *row = bin(L, NNC_LB_LT, i, g->M);
    cond = cond ? nnc_le_bin(L->k, NNC_LB_AND, row, cond) : row;
  }
  nnc_lstmt *body = nnc_ls_block(L->k), *at = body;
  if (cond) {
    at = nnc_ls_block(L->k);
    nnc_ls_push(L->k, body, nnc_ls_if(L->k, cond, at, NULL));
  }
  store_element(g, at, i, j, nnc_le_load(L->k, P->part, add(L, mul_const(L, var(L, t), P->nr), var(L, c)), 1, NULL));
  nnc_lstmt *rows = nnc_ls_block(L->k);
  nnc_ls_push(L->k, rows, nnc_ls_for(L->k, c, I(L, 0), I(L, P->nr), 1, NNC_LOOP_SERIAL, body));
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, t, I(L, 0), I(L, P->mb), 1, NNC_LOOP_SERIAL, rows));
}

/* Every panel of the block at P->i0: zero the partial sums, per chunk of k pack the panel and
 * run the block's rows over it, then the epilogue. */
static void packed_block(mm *g, const packed *P, nnc_lstmt *blk, bool guarded, int mr) {
  lower *L = g->L;
  nnc_lvar *j0 = idx_var(L, "j");
  nnc_lstmt *pb = nnc_ls_block(L->k);
  nnc_lvar *z = idx_var(L, "z");
  nnc_lstmt *zb = nnc_ls_block(L->k);
  nnc_ls_push(L->k, zb, nnc_ls_store(L->k, P->part, var(L, z), nnc_le_const(L->k, nnc_lt(NNC_F32, g->vl), 0), NULL));
  nnc_ls_push(L->k, pb, nnc_ls_for(L->k, z, I(L, 0), I(L, P->mb * P->nr), g->vl, NNC_LOOP_SERIAL, zb));
  int64_t kfull = g->k_static / P->kc * P->kc;
  if (kfull > 0) {
    nnc_lvar *k0 = idx_var(L, "k");
    nnc_lstmt *cb = nnc_ls_block(L->k);
    pack_chunk(g, P, cb, var(L, j0), var(L, k0), P->kc);
    packed_rows(g, P, cb, guarded, mr, var(L, k0), P->kc);
    nnc_ls_push(L->k, pb, nnc_ls_for(L->k, k0, I(L, 0), I(L, kfull), P->kc, NNC_LOOP_SERIAL, cb));
  }
  if (g->k_static > kfull) {
    pack_chunk(g, P, pb, var(L, j0), I(L, kfull), g->k_static - kfull);
    packed_rows(g, P, pb, guarded, mr, I(L, kfull), g->k_static - kfull);
  }
  packed_store(g, P, pb, var(L, j0), guarded);
  int64_t npanels = (g->n_static + P->nr - 1) / P->nr;
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, j0, I(L, 0), I(L, npanels * P->nr), P->nr, NNC_LOOP_SERIAL, pb));
}

/* --- the schedule ------------------------------------------------------------------------------- */

typedef struct shape {
  bool packed;                        /* b transposed: the packed form */
  int mr;                             /* rows of a register tile */
  int nv;                             /* vectors of a panel */
  int64_t mb, kc;                     /* packed: rows of a block, k of a chunk */
} shape;

/* The tile that fills the host's vector registers (12 of AVX2's 16, 24 of AVX-512's 32:
 * room for the panel vectors and a broadcast) with two vectors of columns. */
static shape tile_shape(const mm *g) {
  shape s = {.packed = g->tb, .nv = 2};
  s.mr = (g->regs >= 32 ? 24 : 12) / s.nv;
  if (s.mr > MAX_MR) s.mr = MAX_MR;
  if (!s.packed) return s;
  /* a panel is packed once per block of rows: larger blocks share it more, while at least
   * two blocks keep two cores busy */
  int64_t m = g->o->dims[g->r - 2] * (g->o->batch_axis == g->r - 2 ? g->L->bmax : 1);
  int64_t per = m / (2 * s.mr);
  s.mb = s.mr * (per < 1 ? 1 : per > 4 ? 4 : per);
  if (s.mb > PACK_ROWS_MAX) s.mb = PACK_ROWS_MAX / s.mr * s.mr;
  int64_t nr = (int64_t)s.nv * g->vl;
  s.kc = PACK_LOCAL / nr;
  if (s.kc > g->k_static) s.kc = g->k_static;
  return s;
}

typedef struct rows_ctx {
  mm *g;
  const shape *s;
  packed P;
} rows_ctx;

/* The rows from row0: a full step (mr rows, or a block of mb) or the rest, guarded by M. */
static void rows_at(rows_ctx *x, nnc_lstmt *blk, nnc_lexpr *row0, bool rest, int rest_rows) {
  mm *g = x->g;
  if (x->s->packed) { /* local buffers of its own: the last block may lie outside the parallel loop */
    lower *L = g->L;
    x->P.i0 = row0;
    x->P.pk = nnc_lk_buf(L->k, nnc_arena_printf(L->k->arena, "pack%d", L->nvars++), NNC_F32, NNC_SCOPE_LOCAL, x->P.kc * x->P.nr);
    x->P.part = nnc_lk_buf(L->k, nnc_arena_printf(L->k->arena, "part%d", L->nvars++), NNC_F32, NNC_SCOPE_LOCAL, x->P.mb * x->P.nr);
    return packed_block(g, &x->P, blk, rest, x->s->mr);
  }
  if (!rest) return axpy_rows(g, blk, row0, x->s->mr, x->s->nv);
  if (rest_rows > 0) return axpy_rows(g, blk, row0, rest_rows, x->s->nv);
  lower *L = g->L; /* M scales with the batch: the last rows one at a time */
  nnc_lvar *i = idx_var(L, "i");
  nnc_lstmt *one = nnc_ls_block(L->k);
  axpy_rows(g, one, var(L, i), 1, x->s->nv);
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, i, row0, g->M, 1, NNC_LOOP_SERIAL, one));
}

/* Steps of mr rows (axpy) or mb (packed) over M, then the last rows: M % step of them when M is
 * static, under a guard when it scales with the batch. */
static void row_tiles(mm *g, const shape *s, nnc_lstmt *blk, bool parallel) {
  lower *L = g->L;
  rows_ctx x = {.g = g, .s = s};
  int64_t step = s->mr;
  if (s->packed) {
    step = s->mb;
    int64_t nr = (int64_t)s->nv * g->vl;
    x.P = (packed){.mb = s->mb, .nr = nr, .kc = s->kc};
  }
  nnc_loop_kind kind = parallel ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL;
  nnc_lvar *i0 = idx_var(L, "i");
  nnc_lstmt *full = nnc_ls_block(L->k);
  rows_at(&x, full, var(L, i0), false, 0);
  if (g->o->batch_axis != g->r - 2) {
    int64_t m = g->o->dims[g->r - 2], mfull = m / step * step;
    if (mfull > 0) nnc_ls_push(L->k, blk, nnc_ls_for(L->k, i0, I(L, 0), I(L, mfull), step, kind, full));
    if (m > mfull) rows_at(&x, blk, I(L, mfull), true, (int)(m - mfull));
    return;
  }
  nnc_lstmt *body = nnc_ls_block(L->k), *rest = nnc_ls_block(L->k);
  rows_at(&x, rest, var(L, i0), true, 0);
  nnc_lexpr *fits = bin(L, NNC_LB_LE, add_const(L, var(L, i0), step), g->M);
  nnc_ls_push(L->k, body, nnc_ls_if(L->k, fits, full, rest));
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, i0, I(L, 0), g->M, step, kind, body));
}

static int host_registers(void) {
  nnc_target t = nnc_target_host();
  return t.isa && t.vector_bits >= 512 ? 32 : 16;
}

bool nnc_lw_matmul_cpu(lower *L) {
  const nnc_node *nd = L->nd;
  if (L->o->target != NNC_LOWER_CPU || nnc_lw_lanes(L->o) < 2 || nd->op != NNC_OP_matmul || L->nin != 2) return false;
  mm g = {.L = L, .ta = nnc_node_int(nd, NNC_ATTR_trans_a, 0) != 0, .tb = nnc_node_int(nd, NNC_ATTR_trans_b, 0) != 0,
          .a = &L->in[0]->type, .b = &L->in[1]->type, .o = L->out_type};
  g.r = g.a->rank, g.rb = g.b->rank;
  if (g.r < 2 || g.o->rank != g.r || !(g.rb == 2 || g.rb == g.r)) return false;
  if (g.a->dtype != NNC_F32 || g.b->dtype != NNC_F32 || g.o->dtype != NNC_F32) return false;
  if (g.o->batch_axis == g.r - 1) return false; /* columns must be static */
  /* axpy reads b's rows as vectors; the packed form reads b element by element */
  if (!g.tb && !vector_readable(&g, 1)) return false;
  int ka = g.ta ? g.r - 2 : g.r - 1;
  g.M = extent(L, g.o, g.r - 2);
  g.N = extent(L, g.o, g.r - 1);
  g.K = extent(L, g.a, ka);
  g.n_static = g.o->dims[g.r - 1];
  g.k_static = g.a->batch_axis == ka ? -1 : g.a->dims[ka];
  if (g.tb && g.k_static < 0) return false;
  nnc_target host = nnc_target_host();
  int lanes = nnc_lw_lanes(L->o), hl = host.f32_lanes > 0 ? host.f32_lanes : 4;
  g.vl = lanes < hl ? lanes : hl;
  g.regs = host_registers();
  shape s = tile_shape(&g);

  /* batch loops outside the row tiles: the outermost parallel when it has more than one
   * iteration, else the row tiles */
  int nb = g.r - 2;
  int64_t work = nnc_type_elements(g.o, L->bmax) * (g.k_static > 0 ? g.k_static : L->bmax);
  bool par = work >= PARALLEL_MIN_ELEMENTS;
  bool par_batch = par && nb > 0 && (g.o->batch_axis == 0 ? L->bmax * g.o->dims[0] : g.o->dims[0]) >= 2;
  nnc_lvar *bv[NNC_MAX_RANK];
  nnc_lstmt *body[NNC_MAX_RANK + 1];
  body[0] = L->k->body;
  for (int d = 0; d < nb; d++) {
    bv[d] = idx_var(L, "b");
    g.batch[d] = var(L, bv[d]);
    body[d + 1] = nnc_ls_block(L->k);
  }
  row_tiles(&g, &s, body[nb], par && !par_batch);
  for (int d = nb - 1; d >= 0; d--)
    nnc_ls_push(L->k, body[d], nnc_ls_for(L->k, bv[d], I(L, 0), extent(L, g.o, d), 1,
                                          d == 0 && par_batch ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL, body[d + 1]));
  return true;
}
