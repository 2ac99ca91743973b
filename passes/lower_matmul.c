/* The CPU schedule of matmul and convolutions: register tiles over the host's vector lanes
 * (docs/loops.md "CPU matmul and convolution schedule"), in place of lower.c's
 * one-element-at-a-time dot products. Convolutions and their gradients are the packed form
 * below over views of the image (implicit GEMM, at the end of the file).
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

struct mm;
typedef nnc_lexpr *(*mm_a_fn)(struct mm *g, nnc_lexpr *row, nnc_lexpr *const *k);
typedef nnc_lexpr *(*mm_b_fn)(struct mm *g, nnc_lexpr *const *k, nnc_lexpr *col);
typedef void (*mm_put_fn)(struct mm *g, nnc_lstmt *blk, nnc_lexpr *row, nnc_lexpr *col, nnc_lexpr *v);

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
  int64_t m_static, m_max;            /* M when static (else -1), M at B_max */
  /* The packed form's contraction: nk nested k axes (the first may scale with the batch, the
   * others static) and the accessors of a, b and the result: matmul's, or a convolution's
   * (lower_conv.c's implicit GEMM views). */
  int nk;
  nnc_lexpr *kext[3];
  int64_t kdim[3];                    /* static extents; kdim[0] = -1 when it scales with the batch */
  int64_t kmult;                      /* then kext[0] = n * kmult: chunks divide kmult */
  mm_a_fn a_at;
  mm_b_fn b_at;
  mm_put_fn put;
  const void *view;                   /* the accessors' data */
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
  int64_t mb, nr;                     /* rows of a block, columns of a panel */
  int64_t kc;                         /* units of the first k axis in a chunk */
  nnc_lbuf *pk;                       /* pk[kflat*nr + c] = b[k, j0 + c] (0 past N) */
  nnc_lbuf *part;                     /* part[t*nr + c]: the block's partial sums */
} packed;

static int64_t inner_k(const mm *g) {
  int64_t e = 1;
  for (int i = 1; i < g->nk; i++) e *= g->kdim[i];
  return e;
}

/* Serial loops over a chunk's k (len units of the first axis from k0, the others whole) into
 * blk: the innermost body, the k indices and the flat index inside the chunk. */
static nnc_lstmt *k_loops(mm *g, nnc_lstmt *blk, nnc_lexpr *k0, int64_t len, nnc_lexpr **k, nnc_lexpr **flat) {
  lower *L = g->L;
  *flat = NULL;
  for (int i = 0; i < g->nk; i++) {
    nnc_lvar *v = idx_var(L, "k");
    nnc_lstmt *body = nnc_ls_block(L->k);
    nnc_ls_push(L->k, blk, nnc_ls_for(L->k, v, I(L, 0), I(L, i ? g->kdim[i] : len), 1, NNC_LOOP_SERIAL, body));
    k[i] = i ? var(L, v) : add(L, k0, var(L, v));
    *flat = i ? add(L, mul_const(L, *flat, g->kdim[i]), var(L, v)) : var(L, v);
    blk = body;
  }
  return blk;
}

/* pk = the chunk of the panel at j0: b at (k, j0 + c), one column at a time. */
static void pack_chunk(mm *g, const packed *P, nnc_lstmt *blk, nnc_lexpr *j0, nnc_lexpr *k0, int64_t len) {
  lower *L = g->L;
  nnc_lvar *c = idx_var(L, "c");
  nnc_lexpr *j = add(L, j0, var(L, c));
  nnc_lstmt *loads = nnc_ls_block(L->k), *body = nnc_ls_block(L->k);
  nnc_lexpr *k[3], *flat;
  nnc_lstmt *in = k_loops(g, loads, k0, len, k, &flat);
  nnc_ls_push(L->k, in, nnc_ls_store(L->k, P->pk, add(L, mul_const(L, flat, P->nr), var(L, c)), g->b_at(g, k, j), NULL));
  if (g->n_static % P->nr == 0) {
    nnc_ls_push(L->k, body, loads);
  } else {
    nnc_lvar *z = idx_var(L, "z");
    nnc_lstmt *zero = nnc_ls_block(L->k), *els = nnc_ls_block(L->k);
    nnc_ls_push(L->k, zero, nnc_ls_store(L->k, P->pk, add(L, mul_const(L, var(L, z), P->nr), var(L, c)),
                                         nnc_le_const(L->k, nnc_lt(NNC_F32, 1), 0), NULL));
    nnc_ls_push(L->k, els, nnc_ls_for(L->k, z, I(L, 0), I(L, len * inner_k(g)), 1, NNC_LOOP_SERIAL, zero));
    nnc_ls_push(L->k, body, nnc_ls_if(L->k, bin(L, NNC_LB_LT, j, g->N), loads, els));
  }
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, c, I(L, 0), I(L, P->nr), 1, NNC_LOOP_SERIAL, body));
}

/* rows x nr partial sums at block row t (an expression) += a[i0 + t.., chunk] pk. */
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
  nnc_lexpr *k[3], *flat;
  nnc_lstmt *kb = k_loops(g, blk, k0, len, k, &flat);
  nnc_lvar *b[MAX_NV];
  for (int v = 0; v < nv; v++) {
    b[v] = new_var(L, "b", vt);
    nnc_lexpr *at = add_const(L, mul_const(L, flat, P->nr), (int64_t)v * g->vl);
    nnc_ls_push(L->k, kb, nnc_ls_let(L->k, b[v], nnc_le_load(L->k, P->pk, at, g->vl, NULL)));
  }
  for (int r = 0; r < rows; r++) {
    nnc_lvar *a = new_var(L, "a", vt);
    nnc_ls_push(L->k, kb, nnc_ls_let(L->k, a, nnc_le_splat(L->k, g->a_at(g, add(L, P->i0, add_const(L, t, r)), k), g->vl)));
    for (int v = 0; v < nv; v++)
      nnc_ls_push(L->k, kb, nnc_ls_assign(L->k, acc[r][v], add(L, var(L, acc[r][v]), mul(L, var(L, a), var(L, b[v])))));
  }
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < nv; v++) {
      nnc_lexpr *at = add_const(L, mul_const(L, add_const(L, t, r), P->nr), (int64_t)v * g->vl);
      nnc_ls_push(L->k, blk, nnc_ls_store(L->k, P->part, at, var(L, acc[r][v]), NULL));
    }
}

/* The block's rows for one chunk: full tiles of mr rows (every row of the block exists), or
 * row by row under a guard (the last block). */
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

/* The epilogue of the block's panel at j0: each result through put. */
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
  g->put(g, at, i, j, nnc_le_load(L->k, P->part, add(L, mul_const(L, var(L, t), P->nr), var(L, c)), 1, NULL));
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
  bool dynamic = g->kdim[0] < 0; /* chunks of one unit up to the batch-scaled extent */
  int64_t kfull = dynamic ? 0 : g->kdim[0] / P->kc * P->kc;
  if (dynamic || kfull > 0) {
    nnc_lvar *k0 = idx_var(L, "k");
    nnc_lstmt *cb = nnc_ls_block(L->k);
    pack_chunk(g, P, cb, var(L, j0), var(L, k0), P->kc);
    packed_rows(g, P, cb, guarded, mr, var(L, k0), P->kc);
    nnc_ls_push(L->k, pb, nnc_ls_for(L->k, k0, I(L, 0), dynamic ? g->kext[0] : I(L, kfull), P->kc, NNC_LOOP_SERIAL, cb));
  }
  if (!dynamic && g->kdim[0] > kfull) {
    pack_chunk(g, P, pb, var(L, j0), I(L, kfull), g->kdim[0] - kfull);
    packed_rows(g, P, pb, guarded, mr, I(L, kfull), g->kdim[0] - kfull);
  }
  packed_store(g, P, pb, var(L, j0), guarded);
  int64_t npanels = (g->n_static + P->nr - 1) / P->nr;
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, j0, I(L, 0), I(L, npanels * P->nr), P->nr, NNC_LOOP_SERIAL, pb));
}

/* matmul's accessors for the packed form */
static nnc_lexpr *mm_a_at(mm *g, nnc_lexpr *row, nnc_lexpr *const *k) {
  nnc_lexpr *ai[NNC_MAX_RANK];
  a_index(g, row, k[0], ai);
  return scalar_operand(g, 0, ai);
}
static nnc_lexpr *mm_b_at(mm *g, nnc_lexpr *const *k, nnc_lexpr *col) {
  nnc_lexpr *bi[NNC_MAX_RANK];
  b_index(g, k[0], col, bi);
  return scalar_operand(g, 1, bi);
}

/* --- the schedule ------------------------------------------------------------------------------- */

typedef struct shape {
  bool packed;                        /* b transposed: the packed form */
  int mr;                             /* rows of a register tile */
  int nv;                             /* vectors of a panel */
  int64_t mb, kc;                     /* packed: rows of a block, k of a chunk */
} shape;

/* The tile that fills the host's vector registers (12 of AVX2's 16, 24 of AVX-512's 32:
 * room for the panel vectors and a broadcast) with two vectors of columns. For the packed
 * form: its row blocks and k chunks; false when a chunk of one unit of the first k axis does not
 * fit local memory. */
static bool tile_shape(const mm *g, bool packed_form, shape *s) {
  *s = (shape){.packed = packed_form, .nv = 2};
  s->mr = (g->regs >= 32 ? 24 : 12) / s->nv;
  if (s->mr > MAX_MR) s->mr = MAX_MR;
  if (!s->packed) return true;
  /* a panel is packed once per block of rows: larger blocks share it more, while at least
   * two blocks keep two cores busy */
  int64_t per = g->m_max / (2 * s->mr);
  s->mb = s->mr * (per < 1 ? 1 : per > 4 ? 4 : per);
  if (s->mb > PACK_ROWS_MAX) s->mb = PACK_ROWS_MAX / s->mr * s->mr;
  int64_t nr = (int64_t)s->nv * g->vl;
  s->kc = PACK_LOCAL / (nr * inner_k(g));
  while (g->kdim[0] < 0 && s->kc > 1 && g->kmult % s->kc) s->kc--;
  if (g->kdim[0] >= 0 && s->kc > g->kdim[0]) s->kc = g->kdim[0];
  return s->kc >= 1;
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
    x->P.pk = nnc_lk_buf(L->k, nnc_arena_printf(L->k->arena, "pack%d", L->nvars++), NNC_F32, NNC_SCOPE_LOCAL,
                         x->P.kc * inner_k(g) * x->P.nr);
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
    x.P = (packed){.mb = s->mb, .nr = (int64_t)s->nv * g->vl, .kc = s->kc};
  }
  nnc_loop_kind kind = parallel ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL;
  nnc_lvar *i0 = idx_var(L, "i");
  nnc_lstmt *full = nnc_ls_block(L->k);
  rows_at(&x, full, var(L, i0), false, 0);
  if (g->m_static >= 0) {
    int64_t m = g->m_static, mfull = m / step * step;
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

/* nb batch loops (extents ext) around the row tiles: the outermost parallel when it has more
 * than one iteration (batch_max: its extent at B_max), else the row tiles when parallel. */
static void batch_and_rows(mm *g, const shape *s, int nb, nnc_lexpr *const *ext, int64_t batch_max, bool parallel) {
  lower *L = g->L;
  bool par_batch = parallel && nb > 0 && batch_max >= 2;
  nnc_lvar *bv[NNC_MAX_RANK];
  nnc_lstmt *body[NNC_MAX_RANK + 1];
  body[0] = L->k->body;
  for (int d = 0; d < nb; d++) {
    bv[d] = idx_var(L, "b");
    g->batch[d] = var(L, bv[d]);
    body[d + 1] = nnc_ls_block(L->k);
  }
  row_tiles(g, s, body[nb], parallel && !par_batch);
  for (int d = nb - 1; d >= 0; d--)
    nnc_ls_push(L->k, body[d], nnc_ls_for(L->k, bv[d], I(L, 0), ext[d], 1,
                                          d == 0 && par_batch ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL, body[d + 1]));
}

static int host_registers(void) {
  nnc_target t = nnc_target_host();
  return t.isa && t.vector_bits >= 512 ? 32 : 16;
}

/* The lanes and registers of the host; false for scalar loops and the GPU. */
static bool cpu_vectors(lower *L, mm *g) {
  if (L->o->target != NNC_LOWER_CPU || nnc_lw_lanes(L->o) < 2) return false;
  nnc_target host = nnc_target_host();
  int lanes = nnc_lw_lanes(L->o), hl = host.f32_lanes > 0 ? host.f32_lanes : 4;
  g->vl = lanes < hl ? lanes : hl;
  g->regs = host_registers();
  return true;
}

bool nnc_lw_matmul_cpu(lower *L) {
  const nnc_node *nd = L->nd;
  mm g = {.L = L, .ta = nnc_node_int(nd, NNC_ATTR_trans_a, 0) != 0, .tb = nnc_node_int(nd, NNC_ATTR_trans_b, 0) != 0};
  if (nd->op != NNC_OP_matmul || L->nin != 2 || !cpu_vectors(L, &g)) return false;
  g.a = &L->in[0]->type, g.b = &L->in[1]->type, g.o = L->out_type;
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
  g.m_static = g.o->batch_axis == g.r - 2 ? -1 : g.o->dims[g.r - 2];
  g.m_max = g.o->dims[g.r - 2] * (g.m_static < 0 ? L->bmax : 1);
  g.nk = 1, g.kext[0] = g.K, g.kdim[0] = g.k_static;
  g.a_at = mm_a_at, g.b_at = mm_b_at, g.put = store_element;
  if (g.tb && g.k_static < 0) return false;
  shape s;
  if (!tile_shape(&g, g.tb, &s)) return false;
  int nb = g.r - 2;
  nnc_lexpr *ext[NNC_MAX_RANK];
  for (int d = 0; d < nb; d++) ext[d] = extent(L, g.o, d);
  int64_t work = nnc_type_elements(g.o, L->bmax) * (g.k_static > 0 ? g.k_static : L->bmax);
  int64_t batch_max = nb > 0 ? g.o->dims[0] * (g.o->batch_axis == 0 ? L->bmax : 1) : 1;
  batch_and_rows(&g, &s, nb, ext, batch_max, work >= PARALLEL_MIN_ELEMENTS);
  return true;
}

/* --- convolutions as implicit GEMM: the packed form over views of the image -------------------- */

typedef struct conv_view {
  const nnc_type *x, *w, *y;          /* image [B,C,H,W], weight [O,C,KH,KW], result [B,O,Ho,Wo] */
  int64_t sy, sx, py, px, dy, dx;
  bool rows_k;                        /* weight gradient: k is (b*Ho + oy, ox), not (b, oy, ox) */
} conv_view;

static const conv_view *view_of(const mm *g) { return g->view; }

static void conv_pair(const nnc_node *nd, nnc_attr_key key, int64_t dflt, int64_t *y, int64_t *x) {
  const nnc_attr *a = nnc_node_attr(nd, key);
  *y = *x = dflt;
  if (a && a->n >= 1 && a->n <= 2) *y = a->ints[0], *x = a->ints[a->n - 1];
}

/* The window attributes of L->nd, and whether this schedule takes them (one group). */
static bool conv_window(lower *L, conv_view *v) {
  conv_pair(L->nd, NNC_ATTR_stride, 1, &v->sy, &v->sx);
  conv_pair(L->nd, NNC_ATTR_padding, 0, &v->py, &v->px);
  conv_pair(L->nd, NNC_ATTR_dilation, 1, &v->dy, &v->dx);
  return nnc_node_int(L->nd, NNC_ATTR_groups, 1) == 1 && v->sy >= 1 && v->sx >= 1 && v->dy >= 1 && v->dx >= 1 &&
         v->py >= 0 && v->px >= 0;
}

/* x at image position (o*s + k*d - p) of output position o along one axis: the clamped index,
 * and the condition that it lies inside (NULL without padding). */
static nnc_lexpr *image_pos(lower *L, nnc_lexpr *o, nnc_lexpr *k, int64_t s, int64_t p, int64_t d, int64_t size,
                            nnc_lexpr **inside) {
  nnc_lexpr *pos = add_const(L, add(L, mul_const(L, o, s), mul_const(L, k, d)), -p);
  *inside = NULL;
  if (p == 0) return pos;
  *inside = and_(L, bin(L, NNC_LB_GE, pos, I(L, 0)), bin(L, NNC_LB_LT, pos, I(L, size)));
  return clamp(L, pos, 0, I(L, size - 1));
}

/* The image x (operand j) at [b, c, oy*s + ky*d - p, ox*s + kx*d - p], 0 in the padding: a
 * padded tap adds +-0 where lower.c's loops skip it, the same value. */
static nnc_lexpr *image_at(mm *g, int j, nnc_lexpr *b, nnc_lexpr *c, nnc_lexpr *oy, nnc_lexpr *ox, nnc_lexpr *ky,
                           nnc_lexpr *kx) {
  lower *L = g->L;
  const conv_view *v = view_of(g);
  nnc_lexpr *in_y, *in_x;
  nnc_lexpr *iy = image_pos(L, oy, ky, v->sy, v->py, v->dy, v->x->dims[2], &in_y);
  nnc_lexpr *ix = image_pos(L, ox, kx, v->sx, v->px, v->dx, v->x->dims[3], &in_x);
  nnc_lexpr *idx[4] = {b, c, iy, ix};
  nnc_lexpr *val = scalar_operand(g, j, idx), *inside = in_y ? and_(L, in_y, in_x) : in_x;
  return inside ? nnc_le_select(L->k, inside, val, nnc_le_const(L->k, nnc_lt(NNC_F32, 1), 0)) : val;
}

/* conv2d: rows (oy, ox) of image b, columns o, k (c, ky, kx). */
static nnc_lexpr *fwd_a(mm *g, nnc_lexpr *row, nnc_lexpr *const *k) {
  int64_t wo = view_of(g)->y->dims[3];
  lower *L = g->L;
  return image_at(g, 0, g->batch[0], k[0], bin(L, NNC_LB_FLOORDIV, row, I(L, wo)), bin(L, NNC_LB_MOD, row, I(L, wo)), k[1], k[2]);
}
static nnc_lexpr *fwd_b(mm *g, nnc_lexpr *const *k, nnc_lexpr *col) {
  nnc_lexpr *idx[4] = {col, k[0], k[1], k[2]};
  return scalar_operand(g, 1, idx);
}
/* Stores v at [batch, col, row / w, row % w] of an image result of width w. */
static void put_image(mm *g, nnc_lstmt *blk, nnc_lexpr *row, nnc_lexpr *col, nnc_lexpr *v, int64_t w) {
  lower *L = g->L;
  nnc_lexpr *idx[4] = {g->batch[0], col, bin(L, NNC_LB_FLOORDIV, row, I(L, w)), bin(L, NNC_LB_MOD, row, I(L, w))};
  if (L->store_hook) return L->store_hook(L, blk, idx, L->nd, v);
  nnc_ls_push(L->k, blk, nnc_ls_store(L->k, L->out, ravel(L, L->out_type, idx), v, NULL));
}
static void fwd_put(mm *g, nnc_lstmt *blk, nnc_lexpr *row, nnc_lexpr *col, nnc_lexpr *v) {
  put_image(g, blk, row, col, v, view_of(g)->y->dims[3]);
}

/* conv2d_weight_grad: rows o, columns (c, ky, kx), k (b, oy, ox) with b up to the batch, or
 * (b*Ho + oy, ox) when an image's output positions do not fit one chunk. */
static void wgrad_k(mm *g, nnc_lexpr *const *k, nnc_lexpr **b, nnc_lexpr **oy, nnc_lexpr **ox) {
  lower *L = g->L;
  const conv_view *v = view_of(g);
  if (!v->rows_k) {
    *b = k[0], *oy = k[1], *ox = k[2];
    return;
  }
  *b = bin(L, NNC_LB_FLOORDIV, k[0], I(L, v->y->dims[2]));
  *oy = bin(L, NNC_LB_MOD, k[0], I(L, v->y->dims[2]));
  *ox = k[1];
}
static nnc_lexpr *wgrad_a(mm *g, nnc_lexpr *row, nnc_lexpr *const *k) {
  nnc_lexpr *idx[4] = {NULL, row, NULL, NULL};
  wgrad_k(g, k, &idx[0], &idx[2], &idx[3]);
  return scalar_operand(g, 0, idx);
}
static void wgrad_col(mm *g, nnc_lexpr *col, nnc_lexpr **c, nnc_lexpr **ky, nnc_lexpr **kx) {
  lower *L = g->L;
  const nnc_type *w = view_of(g)->w;
  *c = bin(L, NNC_LB_FLOORDIV, col, I(L, w->dims[2] * w->dims[3]));
  *ky = bin(L, NNC_LB_MOD, bin(L, NNC_LB_FLOORDIV, col, I(L, w->dims[3])), I(L, w->dims[2]));
  *kx = bin(L, NNC_LB_MOD, col, I(L, w->dims[3]));
}
static nnc_lexpr *wgrad_b(mm *g, nnc_lexpr *const *k, nnc_lexpr *col) {
  nnc_lexpr *c, *ky, *kx, *b, *oy, *ox;
  wgrad_col(g, col, &c, &ky, &kx);
  wgrad_k(g, k, &b, &oy, &ox);
  return image_at(g, 1, b, c, oy, ox, ky, kx);
}
static void wgrad_put(mm *g, nnc_lstmt *blk, nnc_lexpr *row, nnc_lexpr *col, nnc_lexpr *v) {
  lower *L = g->L;
  nnc_lexpr *c, *ky, *kx;
  wgrad_col(g, col, &c, &ky, &kx);
  nnc_lexpr *idx[4] = {row, c, ky, kx};
  if (L->store_hook) return L->store_hook(L, blk, idx, L->nd, v);
  nnc_ls_push(L->k, blk, nnc_ls_store(L->k, L->out, ravel(L, L->out_type, idx), v, NULL));
}

/* conv2d_input_grad: rows (iy, ix) of image b, columns c, k (o, ky, kx); a is the gradient at
 * the output position whose window tap (ky, kx) lands on (iy, ix), 0 where none does (lower.c's
 * loops skip those taps: the same value). */
static nnc_lexpr *source_pos(lower *L, nnc_lexpr *i, nnc_lexpr *k, int64_t s, int64_t p, int64_t d, int64_t size,
                             nnc_lexpr **valid) {
  nnc_lexpr *t = sub(L, add_const(L, i, p), mul_const(L, k, d));
  nnc_lexpr *o = s == 1 ? t : bin(L, NNC_LB_FLOORDIV, t, I(L, s));
  nnc_lexpr *ok = and_(L, bin(L, NNC_LB_GE, t, I(L, 0)), bin(L, NNC_LB_LT, o, I(L, size)));
  if (s != 1) ok = and_(L, ok, bin(L, NNC_LB_EQ, bin(L, NNC_LB_MOD, t, I(L, s)), I(L, 0)));
  *valid = ok;
  return clamp(L, o, 0, I(L, size - 1));
}
static nnc_lexpr *igrad_a(mm *g, nnc_lexpr *row, nnc_lexpr *const *k) {
  lower *L = g->L;
  const conv_view *v = view_of(g);
  int64_t w = v->x->dims[3];
  nnc_lexpr *vy, *vx;
  nnc_lexpr *oy = source_pos(L, bin(L, NNC_LB_FLOORDIV, row, I(L, w)), k[1], v->sy, v->py, v->dy, v->y->dims[2], &vy);
  nnc_lexpr *ox = source_pos(L, bin(L, NNC_LB_MOD, row, I(L, w)), k[2], v->sx, v->px, v->dx, v->y->dims[3], &vx);
  nnc_lexpr *idx[4] = {g->batch[0], k[0], oy, ox};
  return nnc_le_select(L->k, and_(L, vy, vx), scalar_operand(g, 0, idx), nnc_le_const(L->k, nnc_lt(NNC_F32, 1), 0));
}
static nnc_lexpr *igrad_b(mm *g, nnc_lexpr *const *k, nnc_lexpr *col) {
  nnc_lexpr *idx[4] = {k[0], col, k[1], k[2]};
  return scalar_operand(g, 1, idx);
}
static void igrad_put(mm *g, nnc_lstmt *blk, nnc_lexpr *row, nnc_lexpr *col, nnc_lexpr *v) {
  put_image(g, blk, row, col, v, view_of(g)->x->dims[3]);
}

/* The forward and the input gradient: a GEMM per image of `image` (rows its positions, columns
 * its channels) over k = the three weight axes kdim, the batch loop outside. */
static bool per_image_gemm(mm *g, conv_view *v, const nnc_type *image, const int64_t kdim[3],
                           mm_a_fn a_at, mm_b_fn b_at, mm_put_fn put) {
  lower *L = g->L;
  if (v->x->batch_axis != 0 || v->y->batch_axis != 0 || v->w->batch_axis >= 0 || v->x->dims[0] != 1) return false;
  g->m_static = g->m_max = image->dims[2] * image->dims[3];
  g->M = I(L, g->m_static);
  g->n_static = image->dims[1], g->N = I(L, g->n_static);
  g->nk = 3;
  for (int i = 0; i < 3; i++) g->kdim[i] = kdim[i], g->kext[i] = I(L, kdim[i]);
  g->a_at = a_at, g->b_at = b_at, g->put = put;
  shape s;
  if (!tile_shape(g, true, &s)) return false;
  nnc_lexpr *ext[1] = {extent(L, image, 0)};
  int64_t work = nnc_type_elements(image, L->bmax) * inner_k(g) * g->kdim[0];
  batch_and_rows(g, &s, 1, ext, L->bmax, work >= PARALLEL_MIN_ELEMENTS);
  return true;
}

/* conv2d and its gradients (one group; any stride, padding and dilation) as the packed form:
 * the forward with rows the output positions of one image (the batch loop outside) and columns
 * the output channels; the input gradient likewise over the image positions and channels; the
 * weight gradient with rows the output channels, columns the (c, ky, kx) of the weight and k the
 * batch and output positions, one image per chunk. Each result sums in lower.c's order ((c, ky,
 * kx), (o, ky, kx) or (b, oy, ox)), unfused. */
bool nnc_lw_conv_cpu(lower *L) {
  const nnc_node *nd = L->nd;
  bool fwd = nd->op == NNC_OP_conv2d, wgrad = nd->op == NNC_OP_conv2d_weight_grad, igrad = nd->op == NNC_OP_conv2d_input_grad;
  mm g = {.L = L};
  conv_view v = {0};
  if (!(fwd || wgrad || igrad) || L->nin != 2 || !cpu_vectors(L, &g) || !conv_window(L, &v)) return false;
  for (int j = 0; j < 2; j++)
    if (L->in[j]->type.dtype != NNC_F32 || L->in[j]->type.rank != 4) return false;
  if (L->out_type->dtype != NNC_F32 || L->out_type->rank != 4) return false;
  g.view = &v;
  g.o = L->out_type;
  shape s;
  if (fwd) {
    v.x = &L->in[0]->type, v.w = &L->in[1]->type, v.y = L->out_type;
    const int64_t k[3] = {v.w->dims[1], v.w->dims[2], v.w->dims[3]};
    return per_image_gemm(&g, &v, v.y, k, fwd_a, fwd_b, fwd_put);
  }
  if (igrad) {
    v.y = &L->in[0]->type, v.w = &L->in[1]->type, v.x = L->out_type;
    const int64_t k[3] = {v.w->dims[0], v.w->dims[2], v.w->dims[3]};
    return per_image_gemm(&g, &v, v.x, k, igrad_a, igrad_b, igrad_put);
  }
  v.y = &L->in[0]->type, v.x = &L->in[1]->type, v.w = L->out_type;
  if (v.x->batch_axis != 0 || v.y->batch_axis != 0 || v.w->batch_axis >= 0 || v.x->dims[0] != 1) return false;
  g.m_static = g.m_max = v.w->dims[0];
  g.M = I(L, g.m_static);
  g.n_static = v.w->dims[1] * v.w->dims[2] * v.w->dims[3], g.N = I(L, g.n_static);
  g.nk = 3;
  g.kdim[0] = -1, g.kext[0] = extent(L, v.y, 0), g.kmult = 1;
  for (int i = 1; i < 3; i++) g.kdim[i] = v.y->dims[i + 1], g.kext[i] = I(L, g.kdim[i]);
  g.a_at = wgrad_a, g.b_at = wgrad_b, g.put = wgrad_put;
  if (!tile_shape(&g, true, &s)) { /* chunks of output rows */
    v.rows_k = true;
    g.nk = 2;
    g.kmult = v.y->dims[2], g.kext[0] = mul_const(L, extent(L, v.y, 0), g.kmult);
    g.kdim[1] = v.y->dims[3], g.kext[1] = I(L, g.kdim[1]);
    if (!tile_shape(&g, true, &s)) return false;
  }
  int64_t work = nnc_type_elements(v.w, L->bmax) * L->bmax * inner_k(&g);
  batch_and_rows(&g, &s, 0, NULL, 1, work >= PARALLEL_MIN_ELEMENTS);
  return true;
}
