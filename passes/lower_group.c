/* Lowering a fused group (passes/fusion.h) to one loop IR kernel (docs/fusion.md "How a group
 * lowers").
 *
 * How it works. Values are computed by `value(node, at)`: `at` is where in the node's shape
 * the value is wanted (a multi-index, a flat index, or both; lanes and a mask in a vector
 * loop). A group input is a load from its GLOBAL buffer at the flat index; a scalar source is
 * the call's argument; a member or inlined node is its op applied to its operands' values:
 * elementwise ops at the same index, reshapes at the same flat index, broadcast / permute /
 * slice / pad at the operand index lower.c's index maps compute, composed. So only the
 * group's inputs are read from memory and only its outputs are written.
 *
 * Each element of the iteration space is a "site": a member wanted at the site's own index is
 * computed once there (a `let`), so a value used twice is not recomputed; inlined nodes and
 * members reached through an index map are recomputed where needed (they are cheap, or the
 * fusion rules put them in the group for that). Rank-0 inlined values are hoisted to the top
 * of a CPU kernel.
 *
 * The schedule depends on the group's kind:
 * - elementwise and update: a flat loop per iteration space (the update group has one per
 *   buffer shape, in sequence), vectorized on the CPU when every access is at the flat index;
 *   on the GPU one flat index over blocks and threads covers them all, each space guarded;
 * - contraction and opaque: the anchor's loops and element builder from lower.c, its operand
 *   loads going through value(); at its store the epilogue is applied to the accumulator and
 *   every output of the group is stored (e.g. ReLU and its mask);
 * - reduce: a loop nest over the rows; per row, one pass over the reduced axes per reduction
 *   (in member order) with its own accumulator, full-shape members recomputed in each pass
 *   that needs them, row-shape members computed once per row as soon as their reductions are
 *   done, and every full-shape output stored in the last pass that computes it (or in a final
 *   pass). A total reduction has no row loop: one serial pass, deterministic. */
#include <string.h>

#include "fusion.h"
#include "lower_impl.h"
#include "../ir/node_map.h"

enum { ROLE_INPUT, ROLE_SCALAR, ROLE_INLINED, ROLE_MEMBER };

typedef struct site {
  int id;
  nnc_lstmt *blk;                     /* where lets of this site go */
} site;

/* Where a value is wanted. */
typedef struct at {
  const nnc_type *t;
  nnc_lexpr *idx[NNC_MAX_RANK];
  bool has_idx;
  nnc_lexpr *flat;                    /* NULL until needed */
  int lanes;                          /* > 1: flat index only, contiguous */
  nnc_lexpr *mask;
  const site *own;                    /* the site's own index: members are kept in lets */
} at;

typedef struct ginfo {
  const nnc_node *nd;
  int role;
  nnc_lbuf *buf;                      /* INPUT, and members that are outputs */
  nnc_lvar *memo;                     /* MEMBER: its value at memo_site */
  int memo_site;
  nnc_lvar *row;                      /* REDUCE: a row value computed for the current row */
  nnc_lbuf *row_buf;                  /* REDUCE in column blocks: the row values of the block */
  nnc_lvar *hoisted;                  /* a rank-0 inlined value at the top of the kernel */
  bool output;
  bool stored;                        /* REDUCE: a full-shape output already stored */
} ginfo;

typedef struct gctx {
  lower L;
  const nnc_fuse_group *G;
  nnc_node_map map;
  ginfo *info;
  int ninfo;
  int nsites;
  int nanchors, pending;              /* CONTRACTION/OPAQUE: anchors stored at the current site */
  site anchor_site;
  bool flat_sites;                    /* a site is a flat index (elementwise, update) */
  int reduce_pass;                    /* REDUCE: the pass being built, for `demanded` */
  int cb;                             /* REDUCE on the CPU: columns per block (0: one row at a time) */
  nnc_lexpr *col;                     /* the column within the block of the loop being built */
} gctx;

static gctx *ctx_of(lower *L) { return L->group; }

static ginfo *info_of(gctx *c, const nnc_node *nd) {
  int i = nnc_node_map_get(&c->map, (uintptr_t)nd);
  return i >= 0 ? &c->info[i] : NULL;
}

static void gfail(gctx *c, const nnc_node *nd, const char *what) {
  if (!c->L.failed) nnc_error(c->L.d, nd->loc, "cannot lower the fused group of %s: %s", nnc_ops[nd->op].name, what);
  c->L.failed = true;
}

/* --- indices ------------------------------------------------------------------------------------ */

static nnc_lexpr *at_flat(gctx *c, at *p) {
  if (!p->flat) p->flat = ravel(&c->L, p->t, p->idx);
  return p->flat;
}

/* The multi-index of a flat index: the last axis varies fastest. */
static nnc_lexpr *const *at_idx(gctx *c, at *p) {
  if (p->has_idx) return p->idx;
  lower *L = &c->L;
  nnc_lexpr *rest = p->flat;
  for (int i = p->t->rank - 1; i > 0; i--) {
    nnc_lexpr *ext = extent(L, p->t, i);
    p->idx[i] = bin(L, NNC_LB_MOD, rest, ext);
    rest = bin(L, NNC_LB_FLOORDIV, rest, ext);
  }
  if (p->t->rank > 0) p->idx[0] = rest;
  p->has_idx = true;
  return p->idx;
}

static at at_index(const nnc_type *t, nnc_lexpr *const *idx, const site *own) {
  at p = {.t = t, .has_idx = true, .lanes = 1, .own = own};
  for (int i = 0; i < t->rank; i++) p.idx[i] = idx[i];
  return p;
}

static at at_flat_index(const nnc_type *t, nnc_lexpr *flat, int lanes, nnc_lexpr *mask, const site *own) {
  return (at){.t = t, .flat = flat, .lanes = lanes, .mask = mask, .own = own};
}

static at at_scalar(const nnc_type *t) { return (at){.t = t, .has_idx = true, .lanes = 1, .flat = NULL}; }

/* --- values ------------------------------------------------------------------------------------- */

static nnc_lexpr *value(gctx *c, const nnc_node *nd, at *p);

static nnc_lexpr *splat(gctx *c, nnc_lexpr *e, int lanes) { return lanes > 1 ? nnc_le_splat(c->L.k, e, lanes) : e; }

static nnc_lexpr *scalar_source(gctx *c, const nnc_node *nd, int lanes) {
  const char *name = nd->name ? nd->name : "";
  nnc_lscalar s = strcmp(name, "lr") == 0 ? NNC_LSC_LR : strcmp(name, "step") == 0 ? NNC_LSC_STEP
                  : strcmp(name, "seed") == 0 ? NNC_LSC_SEED : NNC_LSC_COUNT;
  if (s == NNC_LSC_COUNT) {
    gfail(c, nd, "unknown runtime scalar");
    s = NNC_LSC_LR;
  }
  nnc_lexpr *raw = nnc_le_scalar(c->L.k, s);
  if (s != NNC_LSC_LR) raw = nnc_le_cast(c->L.k, nnc_lt(NNC_I64, 1), raw); /* step, seed: unsigned words */
  return splat(c, nnc_le_cast(c->L.k, nnc_lt(nd->type.dtype, 1), raw), lanes);
}

/* concat: the operand whose slab holds the index, as nested selects. */
static nnc_lexpr *concat_value(gctx *c, const nnc_node *nd, at *p) {
  lower *L = &c->L;
  int64_t axis = nnc_node_int(nd, NNC_ATTR_axis, -1);
  if (axis < 0 || axis >= nd->type.rank) return gfail(c, nd, "concat axis outside the rank"), I(L, 0);
  nnc_lexpr *const *idx = at_idx(c, p);
  nnc_lexpr *result = NULL, *off = I(L, 0);
  for (int j = 0; j < nd->ninputs; j++) {
    const nnc_type *t = &nd->inputs[j]->type;
    nnc_lexpr *ext = extent(L, t, (int)axis), *rel = sub(L, idx[axis], off);
    nnc_lexpr *ai[NNC_MAX_RANK];
    for (int k = 0; k < nd->type.rank; k++) ai[k] = k == axis ? clamp(L, rel, 0, sub(L, ext, I(L, 1))) : idx[k];
    at q = at_index(t, ai, NULL);
    nnc_lexpr *v = value(c, nd->inputs[j], &q);
    result = result ? nnc_le_select(L->k, bin(L, NNC_LB_LT, rel, I(L, 0)), result, v) : v;
    off = add(L, off, ext);
  }
  return result;
}

/* The value of a member or inlined node at p, from its operands' values. */
static nnc_lexpr *compute(gctx *c, const nnc_node *nd, at *p) {
  lower *L = &c->L;
  nnc_op_kind kind = nnc_ops[nd->op].kind;
  if (kind == NNC_KIND_UNARY || kind == NNC_KIND_BINARY || kind == NNC_KIND_TERNARY) {
    nnc_lexpr *v[3] = {0};
    for (int j = 0; j < nd->ninputs && j < 3; j++) {
      at q = *p; /* the same shape, the same index */
      q.t = &nd->inputs[j]->type;
      v[j] = value(c, nd->inputs[j], &q);
      p->flat = q.flat;
    }
    return nnc_lw_elementwise_value(L, nd, v);
  }
  switch (nd->op) {
  case NNC_OP_reshape: {
    at q = at_flat_index(&nd->inputs[0]->type, at_flat(c, p), p->lanes, p->mask, c->flat_sites ? p->own : NULL);
    return value(c, nd->inputs[0], &q);
  }
  case NNC_OP_broadcast:
    if (nd->inputs[0]->type.rank == 0) { /* a scalar everywhere: a splat in a vector loop */
      at q = at_scalar(&nd->inputs[0]->type);
      q.lanes = p->lanes;
      return value(c, nd->inputs[0], &q);
    }
    /* fall through */
  case NNC_OP_permute: case NNC_OP_slice: case NNC_OP_pad: {
    nnc_lexpr *ai[NNC_MAX_RANK] = {0}, *inside;
    if (!nnc_lw_operand_index(L, nd, at_idx(c, p), ai, &inside)) return I(L, 0);
    at q = at_index(&nd->inputs[0]->type, ai, NULL);
    return nnc_lw_pad_fill(L, nd, inside, value(c, nd->inputs[0], &q));
  }
  case NNC_OP_concat: return concat_value(c, nd, p);
  case NNC_OP_const: return splat(c, nnc_lw_const_value(L, nd), p->lanes);
  case NNC_OP_nbatch: return splat(c, nnc_le_cast(L->k, nnc_lt(NNC_F32, 1), nnc_le_scalar(L->k, NNC_LSC_N)), p->lanes);
  case NNC_OP_iota: {
    int64_t axis = nnc_node_int(nd, NNC_ATTR_axis, 0);
    if (axis < 0 || axis >= nd->type.rank) return gfail(c, nd, "iota axis outside the rank"), I(L, 0);
    return nnc_le_cast(L->k, nnc_lt(nd->type.dtype, 1), at_idx(c, p)[axis]);
  }
  case NNC_OP_rng_uniform: {
    at s0 = at_scalar(&nd->inputs[0]->type), s1 = at_scalar(&nd->inputs[1]->type);
    if (nd->inputs[0]->type.rank || nd->inputs[1]->type.rank) return gfail(c, nd, "seed and step must be scalars"), I(L, 0);
    nnc_lexpr *seed = nnc_le_cast(L->k, nnc_lt(NNC_I32, 1), value(c, nd->inputs[0], &s0));
    nnc_lexpr *step = nnc_le_cast(L->k, nnc_lt(NNC_I32, 1), value(c, nd->inputs[1], &s1));
    return nnc_le_rng(L->k, seed, (int64_t)(uint32_t)nnc_node_int(nd, NNC_ATTR_key, 0), step, at_flat(c, p));
  }
  default: return gfail(c, nd, "its value is not available here"), I(L, 0);
  }
}

static nnc_lexpr *value(gctx *c, const nnc_node *nd, at *p) {
  lower *L = &c->L;
  ginfo *gi = info_of(c, nd);
  if (!gi) return gfail(c, nd, "a value outside the group"), I(L, 0);
  if (gi->role == ROLE_SCALAR) return scalar_source(c, nd, p->lanes);
  if (gi->hoisted) return splat(c, var(L, gi->hoisted), p->lanes);
  if (gi->row) return splat(c, var(L, gi->row), p->lanes);
  if (gi->row_buf) return splat(c, nnc_le_load(L->k, gi->row_buf, c->col, 1, NULL), p->lanes);
  if (nd->type.rank == 0 && p->lanes > 1) { /* a scalar in a vector loop */
    at q = at_scalar(&nd->type);
    q.own = gi->role == ROLE_MEMBER && nd->type.rank == p->t->rank ? p->own : NULL;
    return splat(c, value(c, nd, &q), p->lanes);
  }
  if (gi->role == ROLE_INPUT) return nnc_le_load(L->k, gi->buf, at_flat(c, p), p->lanes, p->lanes > 1 ? p->mask : NULL);
  if (gi->role == ROLE_MEMBER && p->own && gi->memo && gi->memo_site == p->own->id) return var(L, gi->memo);
  nnc_lexpr *e = compute(c, nd, p);
  if (gi->role != ROLE_MEMBER || !p->own) return e;
  gi->memo = new_var(L, "v", e->type);
  gi->memo_site = p->own->id;
  nnc_ls_push(L->k, p->own->blk, nnc_ls_let(L->k, gi->memo, e));
  return var(L, gi->memo);
}

static site new_site(gctx *c, nnc_lstmt *blk) { return (site){.id = ++c->nsites, .blk = blk}; }

static void store_output(gctx *c, ginfo *gi, at *p) {
  nnc_lexpr *v = value(c, gi->nd, p);
  nnc_ls_push(c->L.k, p->own->blk, nnc_ls_store(c->L.k, gi->buf, at_flat(c, p), v, p->lanes > 1 ? p->mask : NULL));
}

/* --- elementwise and update: flat loops ------------------------------------------------------------ */

/* Can nd be computed with every access at the flat index (a contiguous vector)? */
static bool flat_only(gctx *c, const nnc_node *nd, const nnc_type *space) {
  ginfo *gi = info_of(c, nd);
  if (!gi) return false;
  if (gi->role == ROLE_SCALAR || gi->hoisted || (nd->type.rank == 0 && space->rank > 0))
    return true;
  if (gi->role == ROLE_INPUT) return nnc_type_elements(&nd->type, 1) == nnc_type_elements(space, 1) &&
                                     (nd->type.batch_axis >= 0) == (space->batch_axis >= 0);
  nnc_op_kind kind = nnc_ops[nd->op].kind;
  if (nd->op == NNC_OP_const || (nd->op == NNC_OP_broadcast && nd->inputs[0]->type.rank == 0)) return true;
  if (nd->op == NNC_OP_cmp && nd->inputs[0]->type.dtype != NNC_F32) return false; /* vector compares of ints: keep scalar */
  if (kind != NNC_KIND_UNARY && kind != NNC_KIND_BINARY && kind != NNC_KIND_TERNARY && nd->op != NNC_OP_reshape) return false;
  for (int j = 0; j < nd->ninputs; j++)
    if (!flat_only(c, nd->inputs[j], space)) return false;
  return true;
}

typedef struct space {
  const nnc_type *t;
  int first_output;                   /* index into the group's outputs */
} space;

static bool same_space(const nnc_type *a, const nnc_type *b) {
  return nnc_type_elements(a, 1) == nnc_type_elements(b, 1) && (a->batch_axis >= 0) == (b->batch_axis >= 0);
}

/* The outputs of space s at flat index f (lanes wide, masked) into blk. */
static void space_body(gctx *c, const space *s, nnc_lstmt *blk, nnc_lexpr *f, int lanes, nnc_lexpr *mask) {
  site st = new_site(c, blk);
  for (int o = s->first_output; o < c->G->noutputs; o++) {
    ginfo *gi = info_of(c, c->G->outputs[o]);
    if (!same_space(&gi->nd->type, s->t)) continue;
    at p = at_flat_index(&gi->nd->type, f, lanes, mask, &st);
    store_output(c, gi, &p);
  }
}

static void cpu_flat_loop(gctx *c, const space *s) {
  lower *L = &c->L;
  bool vec = nnc_lw_lanes(L->o) > 1;
  for (int o = s->first_output; o < c->G->noutputs && vec; o++)
    if (same_space(&c->G->outputs[o]->type, s->t)) vec = flat_only(c, c->G->outputs[o], s->t);
  int lanes = vec ? nnc_lw_lanes(L->o) : 1;
  nnc_lexpr *total = total_elements(L, s->t);
  nnc_lvar *i = idx_var(L, "i");
  nnc_lstmt *body = nnc_ls_block(L->k);
  nnc_lexpr *mask = lanes > 1 ? bin(L, NNC_LB_LT, add(L, nnc_le_splat(L->k, var(L, i), lanes), nnc_le_lane(L->k, lanes)),
                                    nnc_le_splat(L->k, total, lanes))
                              : NULL;
  space_body(c, s, body, var(L, i), lanes, mask);
  bool par = nnc_type_elements(s->t, L->bmax) >= PARALLEL_MIN_ELEMENTS * (lanes > 1 ? 4 : 1);
  nnc_ls_push(L->k, L->k->body, nnc_ls_for(L->k, i, I(L, 0), total, lanes, par ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL, body));
}

/* GPU: one flat index over blocks and threads covering every space, each space guarded. */
static void gpu_flat_spaces(gctx *c, const space *sp, int nsp) {
  lower *L = &c->L;
  int64_t T = L->o->gpu_threads > 0 ? L->o->gpu_threads : DEFAULT_GPU_THREADS;
  nnc_lvar *b = idx_var(L, "block"), *th = idx_var(L, "thread"), *flat = idx_var(L, "flat");
  nnc_lstmt *inner = nnc_ls_block(L->k);
  nnc_ls_push(L->k, inner, nnc_ls_let(L->k, flat, add(L, mul(L, var(L, b), I(L, T)), var(L, th))));
  nnc_lexpr *most = NULL;
  for (int s = 0; s < nsp; s++) {
    nnc_lexpr *total = total_elements(L, sp[s].t);
    nnc_lstmt *guarded = nnc_ls_block(L->k);
    space_body(c, &sp[s], guarded, var(L, flat), 1, NULL);
    nnc_ls_push(L->k, inner, nnc_ls_if(L->k, bin(L, NNC_LB_LT, var(L, flat), total), guarded, NULL));
    most = most ? bin(L, NNC_LB_MAX, most, total) : total;
  }
  nnc_lstmt *tb = nnc_ls_block(L->k);
  nnc_ls_push(L->k, tb, nnc_ls_for(L->k, th, I(L, 0), I(L, T), 1, NNC_LOOP_GPU_THREAD, inner));
  nnc_lexpr *nblocks = bin(L, NNC_LB_FLOORDIV, add_const(L, most, T - 1), I(L, T));
  nnc_ls_push(L->k, L->k->body, nnc_ls_for(L->k, b, I(L, 0), nblocks, 1, NNC_LOOP_GPU_BLOCK, tb));
}

/* One space per distinct shape among the outputs (the update group has one per buffer). */
static void lower_flat_group(gctx *c) {
  const nnc_fuse_group *G = c->G;
  c->flat_sites = true;
  space *sp = nnc_arena_alloc(c->L.k->arena, sizeof *sp * (size_t)(G->noutputs + 1));
  int nsp = 0;
  for (int o = 0; o < G->noutputs; o++) {
    bool seen = false;
    for (int s = 0; s < nsp && !seen; s++) seen = same_space(sp[s].t, &G->outputs[o]->type);
    if (!seen) sp[nsp++] = (space){.t = &G->outputs[o]->type, .first_output = o};
  }
  if (c->L.o->target == NNC_LOWER_GPU) return gpu_flat_spaces(c, sp, nsp);
  for (int s = 0; s < nsp; s++) cpu_flat_loop(c, &sp[s]);
}

/* --- contraction and opaque: the anchor's loops, the epilogue at its store ------------------------ */

static nnc_lexpr *anchor_load(lower *L, int j, nnc_lexpr *const *idx) {
  gctx *c = ctx_of(L);
  at p = at_index(&L->nd->inputs[j]->type, idx, NULL);
  return value(c, L->nd->inputs[j], &p);
}

/* The anchor's value at idx: kept in a let; once every anchor of the group has stored (a pool's
 * values and argmax), the epilogue computes and stores every output at the same index. */
static void anchor_store(lower *L, nnc_lstmt *blk, nnc_lexpr *const *idx, const nnc_node *nd, nnc_lexpr *v) {
  gctx *c = ctx_of(L);
  if (c->pending == 0) c->anchor_site = new_site(c, blk);
  ginfo *gi = info_of(c, nd);
  gi->memo = new_var(L, "v", v->type);
  gi->memo_site = c->anchor_site.id;
  nnc_ls_push(L->k, blk, nnc_ls_let(L->k, gi->memo, v));
  if (++c->pending < c->nanchors) return;
  c->pending = 0;
  for (int o = 0; o < c->G->noutputs; o++) {
    ginfo *out = info_of(c, c->G->outputs[o]);
    at p = at_index(&out->nd->type, idx, &c->anchor_site);
    store_output(c, out, &p);
  }
}

static bool anchor_vec_ok(lower *L, int j) {
  gctx *c = ctx_of(L);
  const nnc_node *x = L->nd->inputs[j];
  return flat_only(c, x, &x->type);
}

static nnc_lexpr *anchor_vec_load(lower *L, int j, nnc_lexpr *flat, int lanes, nnc_lexpr *mask) {
  gctx *c = ctx_of(L);
  at p = at_flat_index(&L->nd->inputs[j]->type, flat, lanes, mask, NULL);
  return value(c, L->nd->inputs[j], &p);
}

static bool is_anchor_like(const nnc_node *nd) {
  nnc_op_kind k = nnc_ops[nd->op].kind;
  return k == NNC_KIND_CONTRACTION || k == NNC_KIND_OPAQUE;
}

static void lower_anchored_group(gctx *c) {
  lower *L = &c->L;
  const nnc_node *a = c->G->anchor;
  element_fn fn = nnc_lw_element_builder(a->op);
  if (!fn) return gfail(c, a, "no element builder");
  for (int m = 0; m < c->G->nmembers; m++)
    if (is_anchor_like(c->G->members[m])) {
      c->nanchors++;
      if (c->G->members[m] != a) L->pool_pair = c->G->members[m];
    }
  if (c->nanchors > 2 || (L->pool_pair && (a->op != NNC_OP_maxpool2d && a->op != NNC_OP_maxpool2d_argmax)))
    return gfail(c, a, "more than one anchor");
  L->nd = a;
  L->out_type = &a->type;
  L->in = (const nnc_node **)a->inputs;
  L->nin = a->ninputs;
  L->load_hook = anchor_load;
  L->store_hook = anchor_store;
  L->vec_ok_hook = anchor_vec_ok;
  L->vec_load_hook = anchor_vec_load;
  if (a->op == NNC_OP_matmul && nnc_lw_matmul_cpu(L)) return;
  if (nnc_lw_conv_cpu(L)) return;
  if (L->o->target == NNC_LOWER_GPU) nnc_lw_gpu_flat(L, L->k->body, &a->type, fn);
  else nnc_lw_cpu_nest(L, L->k->body, &a->type, nnc_lw_work_per_element(a), fn);
}

/* --- reduce: rows, one pass per reduction ---------------------------------------------------------- */

static bool is_reduction(const nnc_node *nd) { return nnc_ops[nd->op].kind == NNC_KIND_REDUCE; }

static bool has_row(const ginfo *gi) { return gi->row || gi->row_buf; }

/* Column blocks: a serial loop over the block's columns into blk; its body, with c->col its
 * variable and cidx the row index of that column. Without blocks: blk and the row index. */
static nnc_lstmt *column_loop(gctx *c, nnc_lstmt *blk, nnc_lexpr **row_idx, nnc_lexpr **cidx) {
  lower *L = &c->L;
  const nnc_type *row = &c->G->anchor->type;
  for (int k = 0; k < row->rank; k++) cidx[k] = row_idx[k];
  if (!c->cb) return blk;
  nnc_lvar *v = idx_var(L, "c");
  nnc_lstmt *body = nnc_ls_block(L->k);
  nnc_ls_push(L->k, blk, nnc_ls_for(L->k, v, I(L, 0), I(L, c->cb), 1, NNC_LOOP_SERIAL, body));
  c->col = var(L, v);
  cidx[row->rank - 1] = add(L, row_idx[row->rank - 1], c->col);
  return body;
}

static nnc_lbuf *column_buf(gctx *c) {
  return nnc_lk_buf(c->L.k, nnc_arena_printf(c->L.k->arena, "col%d", c->L.nvars++), NNC_F32, NNC_SCOPE_LOCAL, c->cb);
}

/* Is every reduction nd depends on through the group's members already done? */
static bool row_ready(gctx *c, const nnc_node *nd) {
  ginfo *gi = info_of(c, nd);
  if (!gi || gi->role != ROLE_MEMBER || has_row(gi)) return true;
  if (is_reduction(nd)) return false;
  for (int j = 0; j < nd->ninputs; j++)
    if (!row_ready(c, nd->inputs[j])) return false;
  return true;
}

/* Row-shape members whose reductions are done: computed once, into the row block (column
 * blocks: into a local buffer of the block's values, by a loop over its columns). */
static void compute_ready_rows(gctx *c, nnc_lstmt *row_blk, nnc_lexpr **row_idx, const site *row_site) {
  const nnc_type *row = &c->G->anchor->type;
  for (int m = 0; m < c->G->nmembers; m++) {
    const nnc_node *nd = c->G->members[m];
    ginfo *gi = info_of(c, nd);
    if (has_row(gi) || is_reduction(nd) || !nnc_shape_equal(&nd->type, row) || !row_ready(c, nd)) continue;
    nnc_lexpr *cidx[NNC_MAX_RANK];
    nnc_lstmt *blk = column_loop(c, row_blk, row_idx, cidx);
    site col_site = new_site(c, blk);
    at p = at_index(row, cidx, c->cb ? &col_site : row_site);
    nnc_lexpr *v = value(c, nd, &p);
    if (gi->output) nnc_ls_push(c->L.k, blk, nnc_ls_store(c->L.k, gi->buf, at_flat(c, &p), v, NULL));
    if (!c->cb) {
      gi->row = gi->memo;
      continue;
    }
    gi->row_buf = column_buf(c);
    nnc_ls_push(c->L.k, blk, nnc_ls_store(c->L.k, gi->row_buf, c->col, v, NULL));
  }
}

/* Does computing nd at a full index need member target (through same-index members)? */
static bool needs(gctx *c, const nnc_node *nd, const nnc_node *target) {
  if (nd == target) return true;
  ginfo *gi = info_of(c, nd);
  if (!gi || gi->role != ROLE_MEMBER || has_row(gi) || !nnc_shape_equal(&nd->type, &c->G->reduce_shape)) return false;
  for (int j = 0; j < nd->ninputs; j++)
    if (needs(c, nd->inputs[j], target)) return true;
  return false;
}

/* The last pass (index among the reductions) whose input needs nd, or -1. */
static int last_pass_needing(gctx *c, const nnc_node *nd) {
  int last = -1, pass = 0;
  for (int m = 0; m < c->G->nmembers; m++)
    if (is_reduction(c->G->members[m])) {
      if (needs(c, c->G->members[m]->inputs[0], nd)) last = pass;
      pass++;
    }
  return last;
}

/* One pass over the reduced axes of the current row (or column block): the reduction red (or
 * none: only the stores of the full-shape outputs left). */
static void reduce_pass(gctx *c, nnc_lstmt *row_blk, nnc_lexpr **row_idx, const nnc_node *red, int pass) {
  lower *L = &c->L;
  const nnc_fuse_group *G = c->G;
  const nnc_type *full = &G->reduce_shape;
  nnc_lexpr *ext[NNC_MAX_RANK], *rv[NNC_MAX_RANK] = {0}, *fi[NNC_MAX_RANK] = {0}, *cidx[NNC_MAX_RANK];
  int nred = 0;
  for (int k = 0; k < full->rank; k++)
    if (nnc_lw_reduced_axis(G->anchor, k)) ext[nred++] = extent(L, full, k);
  bool is_max = red && red->op == NNC_OP_reduce_max;
  nnc_lvar *acc = NULL;
  nnc_lbuf *accs = NULL;
  if (red && c->cb) { /* one accumulator per column of the block */
    accs = column_buf(c);
    nnc_lstmt *init = column_loop(c, row_blk, row_idx, cidx);
    nnc_ls_push(L->k, init, nnc_ls_store(L->k, accs, c->col, nnc_lw_reduce_init(L, red->inputs[0]->type.dtype, is_max), NULL));
  } else if (red) {
    acc = new_var(L, "acc", nnc_lt(red->inputs[0]->type.dtype, 1));
    nnc_ls_push(L->k, row_blk, nnc_ls_let(L->k, acc, nnc_lw_reduce_init(L, red->inputs[0]->type.dtype, is_max)));
  }
  nnc_lstmt *inner = nnc_lw_serial_loops(L, row_blk, nred, ext, rv);
  inner = column_loop(c, inner, row_idx, cidx);
  for (int k = 0, o = 0, r = 0; k < full->rank; k++) fi[k] = nnc_lw_reduced_axis(G->anchor, k) ? rv[r++] : cidx[o++];
  site st = new_site(c, inner);
  if (red) {
    at p = at_index(full, fi, &st);
    nnc_lexpr *x = value(c, red->inputs[0], &p);
    if (accs)
      nnc_ls_push(L->k, inner, nnc_ls_store(L->k, accs, c->col, nnc_lw_combine(L, nnc_le_load(L->k, accs, c->col, 1, NULL), x, is_max), NULL));
    else
      nnc_ls_push(L->k, inner, nnc_ls_assign(L->k, acc, nnc_lw_combine(L, var(L, acc), x, is_max)));
  }
  for (int o = 0; o < G->noutputs; o++) { /* full-shape outputs whose last computing pass this is */
    ginfo *gi = info_of(c, G->outputs[o]);
    if (gi->stored || !nnc_shape_equal(&gi->nd->type, full) || has_row(gi)) continue;
    if (red ? last_pass_needing(c, gi->nd) != pass : !row_ready(c, gi->nd)) continue;
    at p = at_index(full, fi, &st);
    store_output(c, gi, &p);
    gi->stored = true;
  }
  if (!red) return;
  ginfo *ri = info_of(c, red);
  if (accs) ri->row_buf = accs;
  else ri->row = acc;
  if (ri->output) {
    nnc_lstmt *blk = column_loop(c, row_blk, row_idx, cidx);
    at p = at_index(&red->type, cidx, NULL);
    nnc_lexpr *v = accs ? nnc_le_load(L->k, accs, c->col, 1, NULL) : var(L, acc);
    nnc_ls_push(L->k, blk, nnc_ls_store(L->k, ri->buf, at_flat(c, &p), v, NULL));
  }
}

static void reduce_row(lower *L, nnc_lstmt *blk, nnc_lexpr **row_idx) {
  gctx *c = ctx_of(L);
  const nnc_fuse_group *G = c->G;
  for (int i = 0; i < c->ninfo; i++) c->info[i].row = NULL, c->info[i].row_buf = NULL, c->info[i].stored = false;
  site row_site = new_site(c, blk);
  compute_ready_rows(c, blk, row_idx, &row_site);
  int pass = 0;
  for (int m = 0; m < G->nmembers; m++) {
    if (!is_reduction(G->members[m])) continue;
    reduce_pass(c, blk, row_idx, G->members[m], pass++);
    compute_ready_rows(c, blk, row_idx, &row_site);
  }
  bool left = false;
  for (int o = 0; o < G->noutputs; o++) {
    ginfo *gi = info_of(c, G->outputs[o]);
    left |= !gi->stored && !has_row(gi) && nnc_shape_equal(&gi->nd->type, &G->reduce_shape);
  }
  if (left) reduce_pass(c, blk, row_idx, NULL, pass);
  for (int o = 0; o < G->noutputs; o++) {
    ginfo *gi = info_of(c, G->outputs[o]);
    if (!gi->stored && !has_row(gi) && !nnc_shape_equal(&gi->nd->type, &G->reduce_shape))
      gfail(c, gi->nd, "an output in neither the row nor the full shape");
  }
}

/* CPU: when the reduced axes are outer ones and the row's last axis is the full shape's last
 * (a bias gradient's sum over the batch), one row at a time reads the full shape with the
 * row length as stride: every load touches another cache line. Blocks of columns read whole
 * cache lines instead. The block size (16, 8 or 4 f32 columns) divides the row's last axis. */
static int column_block(gctx *c) {
  const nnc_type *row = &c->G->anchor->type, *full = &c->G->reduce_shape;
  if (c->L.o->target != NNC_LOWER_CPU || row->rank < 1 || full->rank < 2) return 0;
  if (nnc_lw_reduced_axis(c->G->anchor, full->rank - 1) || row->batch_axis == row->rank - 1) return 0;
  for (int m = 0; m < c->G->nmembers; m++) { /* the block's row values are f32 buffers */
    const nnc_node *nd = c->G->members[m];
    if (is_reduction(nd) && nd->inputs[0]->type.dtype != NNC_F32) return 0;
    if (nnc_shape_equal(&nd->type, row) && nd->type.dtype != NNC_F32) return 0;
  }
  int64_t last = row->dims[row->rank - 1];
  for (int cb = 16; cb >= 4; cb /= 2)
    if (last % cb == 0) return cb;
  return 0;
}

/* The row loops with the last one stepping over column blocks; the outermost parallel. */
static void cpu_column_nest(gctx *c, int64_t per_row) {
  lower *L = &c->L;
  const nnc_type *row = &c->G->anchor->type;
  nnc_lexpr *idx[NNC_MAX_RANK];
  nnc_lvar *vars[NNC_MAX_RANK];
  for (int i = 0; i < row->rank; i++) {
    vars[i] = idx_var(L, "i");
    idx[i] = var(L, vars[i]);
  }
  nnc_lstmt *body = nnc_ls_block(L->k);
  reduce_row(L, body, idx);
  bool par = nnc_lw_wants_parallel(L, row, per_row) && (row->rank > 1 || row->dims[0] / c->cb >= 2);
  for (int i = row->rank - 1; i >= 0; i--) {
    nnc_loop_kind kind = i == 0 && par ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL;
    nnc_lstmt *loop = nnc_ls_for(L->k, vars[i], I(L, 0), extent(L, row, i), i == row->rank - 1 ? c->cb : 1, kind, body);
    body = nnc_ls_block(L->k);
    nnc_ls_push(L->k, body, loop);
  }
  nnc_ls_push(L->k, L->k->body, body);
}

static void lower_reduce_group(gctx *c) {
  lower *L = &c->L;
  const nnc_type *row = &c->G->anchor->type;
  int64_t per_row = nnc_type_elements(&c->G->reduce_shape, 1) / (nnc_type_elements(row, 1) > 0 ? nnc_type_elements(row, 1) : 1);
  L->nd = c->G->anchor;
  L->out_type = row;
  c->cb = column_block(c);
  if (c->cb) return cpu_column_nest(c, per_row > 0 ? per_row : 1);
  if (L->o->target == NNC_LOWER_GPU) nnc_lw_gpu_flat(L, L->k->body, row, reduce_row);
  else nnc_lw_cpu_nest(L, L->k->body, row, per_row > 0 ? per_row : 1, reduce_row);
}

/* --- the kernel ------------------------------------------------------------------------------------ */

static void add_info(gctx *c, const nnc_node *nd, int role) {
  if (nnc_node_map_get(&c->map, (uintptr_t)nd) >= 0) return;
  nnc_node_map_put(&c->map, (uintptr_t)nd, c->ninfo);
  c->info[c->ninfo++] = (ginfo){.nd = nd, .role = role};
}

static nnc_lbuf *global_buf(gctx *c, const char *prefix, int i, const nnc_node *nd) {
  nnc_lbuf *b = nnc_lk_buf(c->L.k, nnc_arena_printf(c->L.k->arena, "%s%d", prefix, i), nd->type.dtype, NNC_SCOPE_GLOBAL,
                           nnc_type_elements(&nd->type, c->L.bmax));
  b->batch_scaled = nd->type.batch_axis >= 0;
  return b;
}

/* "matmul_add_max_12": the anchor, then the other ops of the group in order (a few). */
static const char *group_name(nnc_arena *a, const nnc_fuse_group *G) {
  char name[128];
  int len = snprintf(name, sizeof name, "%s", nnc_ops[G->anchor->op].name), shown = 0;
  for (int m = 0; m < G->nmembers && shown < 3; m++) {
    const char *op = nnc_ops[G->members[m]->op].name;
    if (G->members[m] == G->anchor || strstr(name, op)) continue;
    len += snprintf(name + len, sizeof name - (size_t)len, "_%s", op);
    shown++;
    if (len >= (int)sizeof name - 1) break;
  }
  return nnc_arena_printf(a, "%s_%d", name, G->anchor->id);
}

/* CPU: rank-0 inlined values (the optimizer's bias corrections) once, at the top. */
static void hoist_scalars(gctx *c) {
  if (c->L.o->target == NNC_LOWER_GPU) return;
  for (int i = 0; i < c->G->ninlined; i++) {
    const nnc_node *nd = c->G->inlined[i];
    if (nd->type.rank != 0 || nd->op == NNC_OP_const) continue;
    ginfo *gi = info_of(c, nd);
    at p = at_scalar(&nd->type);
    nnc_lexpr *v = value(c, nd, &p);
    gi->hoisted = new_var(&c->L, "s", v->type);
    nnc_ls_push(c->L.k, c->L.k->body, nnc_ls_let(c->L.k, gi->hoisted, v));
  }
}

nnc_kernel *nnc_lower_group(nnc_arena *a, const nnc_module *m, const nnc_fusion_plan *plan, int group,
                            const nnc_lower_opts *o, nnc_diags *d) {
  const nnc_fuse_group *G = &plan->groups[group];
  gctx c = {.G = G};
  lower *L = &c.L;
  *L = (lower){.o = o, .nd = G->anchor, .out_type = &G->anchor->type, .bmax = m->batch_max > 0 ? m->batch_max : 1, .d = d,
               .group = &c};
  L->k = nnc_lk_new(a, group_name(a, G));
  L->k->comment = nnc_arena_printf(a, "%s group: %s (%d nodes, %d inlined)", nnc_fuse_kind_name(G->kind),
                                   nnc_lw_kernel_comment(a, G->anchor), G->nmembers, G->ninlined);
  L->k->batch_max = L->bmax;
  L->k->gpu = o->target == NNC_LOWER_GPU;
  int total = G->nmembers + G->ninlined + G->ninputs;
  c.info = nnc_arena_alloc(a, sizeof *c.info * (size_t)(total + 1));
  nnc_node_map_init(&c.map, (size_t)total + 1);
  for (int i = 0; i < G->nmembers; i++) add_info(&c, G->members[i], ROLE_MEMBER);
  for (int i = 0; i < G->ninlined; i++) add_info(&c, G->inlined[i], ROLE_INLINED);
  for (int i = 0; i < G->ninputs; i++) add_info(&c, G->inputs[i], G->inputs[i]->op == NNC_OP_scalar ? ROLE_SCALAR : ROLE_INPUT);
  for (int i = 0; i < G->noutputs; i++) {
    ginfo *gi = info_of(&c, G->outputs[i]);
    gi->output = true;
    gi->buf = global_buf(&c, "out", i, G->outputs[i]);
  }
  for (int i = 0, n = 0; i < G->ninputs; i++)
    if (G->inputs[i]->op != NNC_OP_scalar) info_of(&c, G->inputs[i])->buf = global_buf(&c, "in", n++, G->inputs[i]);
  L->k->body = nnc_ls_block(L->k);
  nnc_ls_push(L->k, L->k->body, nnc_ls_comment(L->k, L->k->comment));
  hoist_scalars(&c);
  switch (G->kind) {
  case NNC_FUSE_ELEMENTWISE: case NNC_FUSE_UPDATE: lower_flat_group(&c); break;
  case NNC_FUSE_CONTRACTION: case NNC_FUSE_OPAQUE: lower_anchored_group(&c); break;
  case NNC_FUSE_REDUCE: lower_reduce_group(&c); break;
  }
  nnc_node_map_free(&c.map);
  if (L->failed) return NULL;
  nnc_lk_finish(L->k);
  return L->k;
}
