/* Constant offsets of a kernel's reads moved to its call (passes/lower.h, docs/loops.md).
 *
 * A sequence model unrolled over T steps reads step t's slice of a [B, T, H] tensor at an index
 * whose constant term is t*H; an LSTM reads its four gates at 0, H, 2H, 3H. As written, those
 * kernels differ only in that constant, so a program had T copies of each (char_lstm: 64 at
 * T = 64, 256 at T = 256), each compiled. Here, when every read of a read-only buffer has the
 * same constant term c, c leaves the kernel: its indices lose it and the call passes the pointer
 * c elements further. The T kernels become one, called T times.
 *
 * The constant term of an index is that of its sum of products as written (+, a constant
 * subtracted, * by a positive constant); anything else is a term without a constant, so what
 * is left is a sum of the terms the index had, none negated. Only offsets that keep the pointer
 * 64-byte aligned (NNC_ABI_ALIGN, which the backends tell their compilers) move; written
 * buffers never do, so what a call writes, what runs in place and what a test reads back are
 * unchanged. The buffer keeps its declared size, so that the calls with different offsets share
 * the kernel: the verifier's bound for the moved reads is looser by the offset than the
 * buffer's real end (each moved read is an unmoved read of the kernel as lowered, minus c). */
#include "lower.h"

#include <stdlib.h>

enum { POINTER_ALIGN = 64 };

/* e = *c + rest; rest NULL when e is the constant alone. */
static nnc_lexpr *split_const(nnc_kernel *k, nnc_lexpr *e, int64_t *c) {
  *c = 0;
  if (e->kind == NNC_LE_INT) {
    *c = e->ival;
    return NULL;
  }
  if (e->kind != NNC_LE_BIN || e->type.lanes != 1 || e->type.dtype != NNC_I64) return e;
  int64_t ca, cb, sum;
  nnc_lexpr *ra, *rb;
  switch (e->op) {
  case NNC_LB_ADD:
    ra = split_const(k, e->a, &ca), rb = split_const(k, e->b, &cb);
    if ((ca == 0 && cb == 0) || (!ra && !rb) || __builtin_add_overflow(ca, cb, &sum)) return e;
    *c = sum;
    return ra && rb ? nnc_le_bin(k, NNC_LB_ADD, ra, rb) : ra ? ra : rb;
  case NNC_LB_SUB: /* x - constant only: a term subtracted could make what is left negative */
    if (e->b->kind != NNC_LE_INT) return e;
    ra = split_const(k, e->a, &ca);
    if (!ra || __builtin_sub_overflow(ca, e->b->ival, &sum)) return e;
    *c = sum;
    return ra;
  case NNC_LB_MUL: {
    nnc_lexpr *x = e->b->kind == NNC_LE_INT ? e->a : e->a->kind == NNC_LE_INT ? e->b : NULL;
    nnc_lexpr *m = x == e->a ? e->b : e->a;
    if (!x || m->ival <= 0) return e;
    ra = split_const(k, x, &ca);
    if (ca == 0 || !ra || __builtin_mul_overflow(ca, m->ival, &sum)) return e;
    *c = sum;
    return nnc_le_bin(k, NNC_LB_MUL, ra, m);
  }
  default: return e;
  }
}

/* What the reads of each buffer have in common. */
typedef struct offsets {
  nnc_kernel *k;
  int64_t *c;          /* per buffer: the constant term every read has */
  bool *seen, *mixed;  /* per buffer: read at all; read with two different terms */
  bool rewrite;        /* second walk: take the offsets out of the loads */
} offsets;

static void visit_expr(offsets *o, nnc_lexpr *e);

static void visit_load(offsets *o, nnc_lexpr *e) {
  int b = e->buf->id;
  int64_t c;
  nnc_lexpr *rest = split_const(o->k, e->a, &c);
  if (o->rewrite) {
    if (o->c[b] != 0 && !o->mixed[b]) e->a = rest ? rest : nnc_le_int(o->k, 0);
    return;
  }
  if (o->seen[b] && o->c[b] != c) o->mixed[b] = true;
  o->seen[b] = true, o->c[b] = c;
}

static void visit_expr(offsets *o, nnc_lexpr *e) {
  if (!e) return;
  if (e->kind == NNC_LE_LOAD && e->buf->scope == NNC_SCOPE_GLOBAL) {
    visit_expr(o, e->b); /* the mask first: visit_load may replace the index */
    nnc_lexpr *index = e->a;
    visit_load(o, e);
    visit_expr(o, index);
    return;
  }
  visit_expr(o, e->a), visit_expr(o, e->b), visit_expr(o, e->c);
}

static void visit_stmt(offsets *o, nnc_lstmt *s) {
  if (!s) return;
  nnc_lexpr *held[] = {s->lo, s->hi, s->cond, s->index, s->value, s->mask};
  for (size_t i = 0; i < sizeof held / sizeof *held; i++) visit_expr(o, held[i]);
  for (int i = 0; s->kind == NNC_LS_BLOCK && i < s->nitems; i++) visit_stmt(o, s->items[i]);
  visit_stmt(o, s->body), visit_stmt(o, s->then_s), visit_stmt(o, s->else_s);
}

/* Which buffers move: read only, one common nonzero term, 64-byte aligned, inside the buffer. */
static bool choose(offsets *o) {
  bool any = false;
  for (int b = 0; b < o->k->nbufs; b++) {
    const nnc_lbuf *buf = o->k->bufs[b];
    int64_t bytes = o->c[b] * (int64_t)nnc_dtype_size(buf->dtype);
    bool moves = o->seen[b] && !o->mixed[b] && buf->scope == NNC_SCOPE_GLOBAL && !buf->written && o->c[b] > 0 &&
                 o->c[b] < buf->size && bytes % POINTER_ALIGN == 0;
    if (!moves) o->c[b] = 0;
    any |= moves;
  }
  return any;
}

int64_t *nnc_lower_call_offsets(nnc_arena *a, nnc_kernel *k) {
  if (k->nbufs == 0) return NULL;
  offsets o = {.k = k};
  o.c = nnc_xcalloc((size_t)k->nbufs, sizeof *o.c);
  o.seen = nnc_xcalloc((size_t)k->nbufs, sizeof *o.seen);
  o.mixed = nnc_xcalloc((size_t)k->nbufs, sizeof *o.mixed);
  int64_t *bytes = NULL;
  visit_stmt(&o, k->body);
  if (choose(&o)) {
    o.rewrite = true;
    visit_stmt(&o, k->body);
    k->hash = nnc_lk_hash(k); /* the reads and writes are the same buffers; only the hash changed */
    bytes = nnc_arena_alloc(a, sizeof *bytes * (size_t)k->nbufs);
    for (int b = 0; b < k->nbufs; b++) bytes[b] = o.c[b] * (int64_t)nnc_dtype_size(k->bufs[b]->dtype);
  }
  free(o.c), free(o.seen), free(o.mixed);
  return bytes;
}
