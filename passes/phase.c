/* The phase emulator (passes/phase.h): a GPU kernel rewritten as a CPU kernel.
 *
 * The rewrite copies the kernel tree into a fresh kernel (variables keep their ids, GLOBAL and
 * SCRATCH buffers their order) and changes only what a CPU cannot run:
 *   - block loops become serial loops (the outermost parallel when asked); block(axis) reads
 *     their variable;
 *   - a thread region is cut into phases; each phase is its own loop nest over the threads;
 *   - a variable that one phase defines and another reads, a LOCAL buffer, and a shuffle's
 *     operand live in arrays indexed by the flattened thread id (x fastest, as CUDA's);
 *   - a shuffle reads its operand array at the partner thread (lane ^ mask) in the next phase;
 *   - SHARED buffers become LOCAL arrays (one per block, as the block loop runs them in turn). */
#include "phase.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>


typedef struct pitem {
  const nnc_lstmt *s;          /* a statement of the region's top level, or NULL: */
  const nnc_lexpr *shuf;       /* the shuffle whose operand this item stores for every thread */
  int phase;
} pitem;

typedef struct region {
  const nnc_lstmt *loop[3];    /* by axis: the thread loop, or NULL */
  int64_t count[3];            /* threads along each axis (1 without a loop) */
  const nnc_lstmt *nest[3];    /* outermost first */
  int nnest;
  int64_t threads;
} region;

typedef struct shuf_map {
  const nnc_lexpr *e;
  nnc_lbuf *buf;
} shuf_map;

typedef struct emulator {
  const nnc_kernel *s;         /* the GPU kernel */
  nnc_kernel *k;               /* the emulating kernel */
  nnc_diags *d;
  bool ok;
  bool parallel_blocks, in_block;
  nnc_lvar **var;              /* by old var id */
  const nnc_lvar **old_var;
  nnc_lbuf **buf;              /* by old buffer id */
  bool *local_inside, *local_outside;
  int64_t threads;             /* the most threads of any region: per-thread LOCAL arrays' stride */
  const nnc_lstmt *block_loop[3];
  region *r;                   /* the region being rewritten, or NULL */
  nnc_lbuf **var_arr;          /* by old var id: the per-thread array holding it, or NULL */
  shuf_map *shuf;
  int nshuf, shuf_cap;
} emulator;

#define err(m, ...) nnc_lk_error((m)->d, &(m)->ok, "phase emulator, ", (m)->s->name, __VA_ARGS__)

/* --- small expression builders -------------------------------------------------------------- */

static nnc_lexpr *I(emulator *m, int64_t v) { return nnc_le_int(m->k, v); }
static nnc_lexpr *add(emulator *m, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(m->k, NNC_LB_ADD, a, b); }
static nnc_lexpr *mul(emulator *m, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(m->k, NNC_LB_MUL, a, b); }

static int64_t trip_count(const nnc_lstmt *f) {
  int64_t c = (f->hi->ival - f->lo->ival + f->step - 1) / f->step;
  return c > 0 ? c : 0;
}

/* The iteration number of a GPU loop (its thread or block index) from its variable. */
static nnc_lexpr *rw(emulator *m, const nnc_lexpr *e);

static nnc_lexpr *loop_index(emulator *m, const nnc_lstmt *f) {
  nnc_lexpr *v = nnc_le_var(m->k, m->var[f->var->id]);
  bool zero_lo = f->lo->kind == NNC_LE_INT && f->lo->ival == 0;
  if (zero_lo && f->step == 1) return v;
  nnc_lexpr *rel = zero_lo ? v : nnc_le_bin(m->k, NNC_LB_SUB, v, rw(m, f->lo));
  return f->step == 1 ? rel : nnc_le_bin(m->k, NNC_LB_FLOORDIV, rel, I(m, f->step));
}

/* The flattened thread id, x fastest: x + cx * (y + cy * z). */
static nnc_lexpr *tid(emulator *m) {
  region *r = m->r;
  nnc_lexpr *t = NULL;
  for (int axis = 2; axis >= 0; axis--) {
    if (!r->loop[axis]) continue;
    nnc_lexpr *idx = loop_index(m, r->loop[axis]);
    t = t ? add(m, idx, mul(m, I(m, r->count[axis]), t)) : idx;
  }
  return t ? t : I(m, 0);
}

/* --- scanning: thread counts, where LOCAL buffers are used ------------------------------------- */

static const nnc_lstmt *single_stmt(const nnc_lstmt *s) {
  while (s && s->kind == NNC_LS_BLOCK) {
    const nnc_lstmt *only = NULL;
    for (int i = 0; i < s->nitems; i++) {
      if (s->items[i]->kind == NNC_LS_COMMENT) continue;
      if (only) return NULL;
      only = s->items[i];
    }
    s = only;
  }
  return s;
}

/* The perfect nest of thread loops starting at f. */
static bool region_of(emulator *m, const nnc_lstmt *f, region *r) {
  memset(r, 0, sizeof *r);
  for (int i = 0; i < 3; i++) r->count[i] = 1;
  for (const nnc_lstmt *cur = f; cur && cur->kind == NNC_LS_FOR && cur->loop == NNC_LOOP_GPU_THREAD;
       cur = single_stmt(cur->body)) {
    if (cur->axis < 0 || cur->axis > 2 || r->loop[cur->axis] || r->nnest == 3) {
      err(m, "thread loop %s: axis %d repeats or is out of range", cur->var->name, cur->axis);
      return false;
    }
    if (cur->lo->kind != NNC_LE_INT || cur->hi->kind != NNC_LE_INT) {
      err(m, "thread loop %s needs static bounds", cur->var->name);
      return false;
    }
    r->loop[cur->axis] = cur;
    r->count[cur->axis] = trip_count(cur);
    r->nest[r->nnest++] = cur;
  }
  r->threads = r->count[0] * r->count[1] * r->count[2];
  return true;
}

static void scan_expr(emulator *m, const nnc_lexpr *e, bool inside) {
  if (!e) return;
  if (e->kind == NNC_LE_VAR && e->var && e->var->id >= 0 && e->var->id < m->s->nvars) m->old_var[e->var->id] = e->var;
  if (e->kind == NNC_LE_LOAD && e->buf && e->buf->scope == NNC_SCOPE_LOCAL)
    (inside ? m->local_inside : m->local_outside)[e->buf->id] = true;
  scan_expr(m, e->a, inside), scan_expr(m, e->b, inside), scan_expr(m, e->c, inside);
}

static void scan_stmt(emulator *m, const nnc_lstmt *s, bool inside) {
  if (!s) return;
  if (s->var && s->var->id >= 0 && s->var->id < m->s->nvars) m->old_var[s->var->id] = s->var;
  if ((s->kind == NNC_LS_STORE || s->kind == NNC_LS_ATOMIC_ADD) && s->buf && s->buf->scope == NNC_SCOPE_LOCAL)
    (inside ? m->local_inside : m->local_outside)[s->buf->id] = true;
  if (s->kind == NNC_LS_FOR && s->loop == NNC_LOOP_GPU_THREAD && !inside) {
    region r;
    if (region_of(m, s, &r) && r.threads > m->threads) m->threads = r.threads;
    inside = true;
  }
  for (int i = 0; s->kind == NNC_LS_BLOCK && i < s->nitems; i++) scan_stmt(m, s->items[i], inside);
  scan_expr(m, s->lo, inside), scan_expr(m, s->hi, inside), scan_expr(m, s->cond, inside);
  scan_expr(m, s->index, inside), scan_expr(m, s->value, inside), scan_expr(m, s->mask, inside);
  scan_stmt(m, s->body, inside), scan_stmt(m, s->then_s, inside), scan_stmt(m, s->else_s, inside);
}

/* --- expressions ---------------------------------------------------------------------------- */

/* The array a thread-indexed value lives in: element tid * lanes. */
static nnc_lexpr *arr_index(emulator *m, int lanes) { return mul(m, tid(m), I(m, lanes)); }

static nnc_lexpr *arr_load(emulator *m, nnc_lbuf *b, nnc_ltype t) {
  nnc_lexpr *v = nnc_le_load(m->k, b, arr_index(m, t.lanes), t.lanes, NULL);
  if (t.dtype != NNC_BOOL) return v;
  return nnc_le_bin(m->k, NNC_LB_NE, v, nnc_le_const(m->k, nnc_lt(NNC_U8, t.lanes), 0));
}

static nnc_lstmt *arr_store(emulator *m, nnc_lbuf *b, nnc_ltype t, nnc_lexpr *v) {
  if (t.dtype == NNC_BOOL)
    v = nnc_le_select(m->k, v, nnc_le_const(m->k, nnc_lt(NNC_U8, t.lanes), 1), nnc_le_const(m->k, nnc_lt(NNC_U8, t.lanes), 0));
  return nnc_ls_store(m->k, b, arr_index(m, t.lanes), v, NULL);
}

static nnc_lbuf *shuffle_buf(emulator *m, const nnc_lexpr *e) {
  for (int i = 0; i < m->nshuf; i++)
    if (m->shuf[i].e == e) return m->shuf[i].buf;
  return NULL;
}

/* bit b of x (x >= 0): (x floordiv 2^b) mod 2 */
static nnc_lexpr *bit(emulator *m, nnc_lexpr *x, int b) {
  return nnc_le_bin(m->k, NNC_LB_MOD, nnc_le_bin(m->k, NNC_LB_FLOORDIV, x, I(m, INT64_C(1) << b)), I(m, 2));
}

/* The partner of thread t in shuffle_xor by mask: t ^ mask, built from +, floordiv and mod
 * (the loop IR has no xor). A constant mask flips only its set bits. */
static nnc_lexpr *xor_partner(emulator *m, nnc_lexpr *t, const nnc_lexpr *mask0) {
  if (mask0->kind == NNC_LE_INT) {
    int64_t mk = mask0->ival;
    if (mk < 0 || mk >= NNC_PHASE_WARP) {
      err(m, "shuffle lane mask %lld is outside [0, %d)", (long long)mk, NNC_PHASE_WARP);
      return t;
    }
    nnc_lexpr *src = t;
    for (int b = 0; b < 5; b++)
      if (mk & (1 << b)) /* t + 2^b * (1 - 2 * bit) */
        src = add(m, src, mul(m, I(m, INT64_C(1) << b), nnc_le_bin(m->k, NNC_LB_SUB, I(m, 1), mul(m, I(m, 2), bit(m, t, b)))));
    return src;
  }
  nnc_lexpr *mk = nnc_le_bin(m->k, NNC_LB_MOD, nnc_le_cast(m->k, nnc_lt(NNC_I64, 1), rw(m, mask0)), I(m, NNC_PHASE_WARP));
  nnc_lexpr *src = nnc_le_bin(m->k, NNC_LB_SUB, t, nnc_le_bin(m->k, NNC_LB_MOD, t, I(m, NNC_PHASE_WARP)));
  for (int b = 0; b < 5; b++) { /* xor of two bits: x + y - 2xy */
    nnc_lexpr *x = bit(m, t, b), *y = bit(m, mk, b);
    nnc_lexpr *xb = nnc_le_bin(m->k, NNC_LB_SUB, add(m, x, y), mul(m, I(m, 2), mul(m, x, y)));
    src = add(m, src, mul(m, I(m, INT64_C(1) << b), xb));
  }
  return src;
}

/* A shuffle's result: its operand array at the partner, or at the thread itself when the
 * partner lies beyond the block's threads. */
static nnc_lexpr *rw_shuffle(emulator *m, const nnc_lexpr *e) {
  nnc_lbuf *b = shuffle_buf(m, e);
  if (!b || !m->r) {
    err(m, "a shuffle outside the top level of a thread region");
    return nnc_le_const(m->k, e->type, 0);
  }
  const nnc_lexpr *mask = e->b;
  if (mask->kind == NNC_LE_CAST && mask->a->kind == NNC_LE_INT) mask = mask->a;
  nnc_lexpr *src = xor_partner(m, tid(m), mask);
  nnc_lexpr *in = nnc_le_bin(m->k, NNC_LB_LT, src, I(m, m->r->threads));
  return nnc_le_load(m->k, b, nnc_le_select(m->k, in, src, tid(m)), 1, NULL);
}

static nnc_lexpr *rw_gpu_index(emulator *m, const nnc_lexpr *e) {
  if (e->kind == NNC_LE_BLOCK) return m->block_loop[e->axis] ? loop_index(m, m->block_loop[e->axis]) : I(m, 0);
  if (!m->r) {
    err(m, "thread(%d) outside a thread region", e->axis);
    return I(m, 0);
  }
  return m->r->loop[e->axis] ? loop_index(m, m->r->loop[e->axis]) : I(m, 0);
}

static nnc_lexpr *rw(emulator *m, const nnc_lexpr *e) {
  if (!e) return NULL;
  switch (e->kind) {
  case NNC_LE_VAR:
    if (m->var_arr[e->var->id]) return arr_load(m, m->var_arr[e->var->id], e->var->type);
    return nnc_le_var(m->k, m->var[e->var->id]);
  case NNC_LE_THREAD:
  case NNC_LE_BLOCK: return rw_gpu_index(m, e);
  case NNC_LE_SHUFFLE: return rw_shuffle(m, e);
  case NNC_LE_LOAD: {
    const nnc_lbuf *ob = e->buf;
    nnc_lexpr *index = rw(m, e->a);
    if (ob->scope == NNC_SCOPE_LOCAL && m->local_inside[ob->id]) index = add(m, mul(m, tid(m), I(m, ob->size)), index);
    return nnc_le_load(m->k, m->buf[ob->id], index, e->type.lanes, rw(m, e->b));
  }
  default: {
    nnc_lexpr *c = nnc_arena_alloc(m->k->arena, sizeof *c);
    *c = *e;
    c->a = rw(m, e->a), c->b = rw(m, e->b), c->c = rw(m, e->c);
    return c;
  }
  }
}

/* --- statements ------------------------------------------------------------------------------ */

static nnc_lstmt *rs(emulator *m, const nnc_lstmt *s);

static nnc_lexpr *rw_index(emulator *m, const nnc_lbuf *ob, const nnc_lexpr *index) {
  nnc_lexpr *i = rw(m, index);
  if (ob->scope == NNC_SCOPE_LOCAL && m->local_inside[ob->id]) i = add(m, mul(m, tid(m), I(m, ob->size)), i);
  return i;
}

static bool head_has_shuffle(const nnc_lexpr *e) {
  return e && (e->kind == NNC_LE_SHUFFLE || head_has_shuffle(e->a) || head_has_shuffle(e->b) || head_has_shuffle(e->c));
}

static bool stmt_head_has_shuffle(const nnc_lstmt *s) {
  return head_has_shuffle(s->lo) || head_has_shuffle(s->hi) || head_has_shuffle(s->cond) ||
         head_has_shuffle(s->index) || head_has_shuffle(s->value) || head_has_shuffle(s->mask);
}

/* A block inside a region's body is cut into the phases when it holds a cut at its top level. */
static bool holds_cut(const nnc_lstmt *s) {
  for (int i = 0; s->kind == NNC_LS_BLOCK && i < s->nitems; i++) {
    const nnc_lstmt *t = s->items[i];
    if (t->kind == NNC_LS_BARRIER || stmt_head_has_shuffle(t) || (t->kind == NNC_LS_BLOCK && holds_cut(t))) return true;
  }
  return false;
}

typedef struct items {
  pitem *v;
  int n, cap, phase;
} items;

static void push_item(items *it, const nnc_lstmt *s, const nnc_lexpr *shuf) {
  if (it->n == it->cap) {
    it->cap = it->cap ? 2 * it->cap : 16;
    it->v = nnc_xrealloc(it->v, (size_t)it->cap * sizeof *it->v);
  }
  it->v[it->n++] = (pitem){s, shuf, it->phase};
}

/* Each shuffle of e (inner ones first) stores its operand at the end of the current phase;
 * the phase ends there. */
static void cut_shuffles(emulator *m, items *it, const nnc_lexpr *e) {
  if (!e) return;
  cut_shuffles(m, it, e->a), cut_shuffles(m, it, e->b), cut_shuffles(m, it, e->c);
  if (e->kind != NNC_LE_SHUFFLE) return;
  if (m->nshuf == m->shuf_cap) {
    m->shuf_cap = m->shuf_cap ? 2 * m->shuf_cap : 8;
    m->shuf = nnc_xrealloc(m->shuf, (size_t)m->shuf_cap * sizeof *m->shuf);
  }
  const char *name = nnc_arena_printf(m->k->arena, "shfl%d", m->nshuf);
  m->shuf[m->nshuf++] = (shuf_map){e, nnc_lk_buf(m->k, name, e->type.dtype, NNC_SCOPE_LOCAL, m->r->threads)};
  push_item(it, NULL, e);
  it->phase++;
}

static void collect_items(emulator *m, items *it, const nnc_lstmt *body) {
  for (int i = 0; body->kind == NNC_LS_BLOCK && i < body->nitems; i++) {
    const nnc_lstmt *s = body->items[i];
    if (s->kind == NNC_LS_BARRIER) {
      it->phase++;
    } else if (s->kind == NNC_LS_BLOCK && holds_cut(s)) {
      collect_items(m, it, s);
    } else {
      cut_shuffles(m, it, s->lo), cut_shuffles(m, it, s->hi), cut_shuffles(m, it, s->cond);
      cut_shuffles(m, it, s->index), cut_shuffles(m, it, s->value), cut_shuffles(m, it, s->mask);
      push_item(it, s, NULL);
    }
  }
  if (body->kind != NNC_LS_BLOCK) push_item(it, body, NULL);
}

static void refs_expr(const nnc_lexpr *e, bool *used) {
  if (!e) return;
  if (e->kind == NNC_LE_VAR) used[e->var->id] = true;
  refs_expr(e->a, used), refs_expr(e->b, used), refs_expr(e->c, used);
}

static void refs_stmt(const nnc_lstmt *s, bool *used) {
  if (!s) return;
  if (s->var) used[s->var->id] = true;
  for (int i = 0; s->kind == NNC_LS_BLOCK && i < s->nitems; i++) refs_stmt(s->items[i], used);
  refs_expr(s->lo, used), refs_expr(s->hi, used), refs_expr(s->cond, used);
  refs_expr(s->index, used), refs_expr(s->value, used), refs_expr(s->mask, used);
  refs_stmt(s->body, used), refs_stmt(s->then_s, used), refs_stmt(s->else_s, used);
}

static nnc_dtype arr_dtype(nnc_dtype dt) { return dt == NNC_BOOL ? NNC_U8 : dt; }

/* Variables a region's top-level let defines in one phase and another phase uses. */
static void place_arrays(emulator *m, const items *it) {
  int nv = m->s->nvars > 0 ? m->s->nvars : 1;
  bool *used = nnc_xcalloc((size_t)nv, 1);
  for (int i = 0; i < it->n; i++) {
    const nnc_lstmt *def = it->v[i].s;
    if (!def || def->kind != NNC_LS_LET) continue;
    int id = def->var->id;
    bool cross = false;
    for (int j = 0; j < it->n && !cross; j++) {
      if (it->v[j].phase == it->v[i].phase) continue;
      memset(used, 0, (size_t)nv);
      if (it->v[j].s) refs_stmt(it->v[j].s, used);
      else refs_expr(it->v[j].shuf->a, used);
      cross = used[id];
    }
    if (!cross) continue;
    nnc_ltype t = def->var->type;
    const char *name = nnc_arena_printf(m->k->arena, "%s_t", def->var->name);
    m->var_arr[id] = nnc_lk_buf(m->k, name, arr_dtype(t.dtype), NNC_SCOPE_LOCAL, m->r->threads * t.lanes);
  }
  free(used);
}

static nnc_lstmt *rw_item(emulator *m, const pitem *p) {
  if (!p->s) {
    nnc_lbuf *b = shuffle_buf(m, p->shuf);
    return nnc_ls_store(m->k, b, tid(m), rw(m, p->shuf->a), NULL);
  }
  return rs(m, p->s);
}

/* A thread region: every phase as its own loop nest over all threads of the block. */
static nnc_lstmt *rs_region(emulator *m, const nnc_lstmt *f) {
  nnc_lstmt *out = nnc_ls_block(m->k);
  region r;
  if (!region_of(m, f, &r)) return out;
  m->r = &r;
  items it = {0};
  collect_items(m, &it, r.nest[r.nnest - 1]->body);
  place_arrays(m, &it);
  for (int p = 0, i = 0; p <= it.phase && m->ok; p++) {
    nnc_lstmt *body = nnc_ls_block(m->k);
    int count = 0;
    for (; i < it.n && it.v[i].phase == p; i++, count++) nnc_ls_push(m->k, body, rw_item(m, &it.v[i]));
    if (!count) continue;
    char note[64];
    snprintf(note, sizeof note, "phase %d", p);
    nnc_ls_push(m->k, out, nnc_ls_comment(m->k, note));
    for (int l = r.nnest - 1; l >= 0; l--) {
      const nnc_lstmt *tl = r.nest[l];
      nnc_lstmt *loop = nnc_ls_for(m->k, m->var[tl->var->id], I(m, tl->lo->ival), I(m, tl->hi->ival), tl->step,
                                   NNC_LOOP_SERIAL, body);
      body = nnc_ls_block(m->k);
      nnc_ls_push(m->k, body, loop);
    }
    nnc_ls_push(m->k, out, body);
  }
  for (int v = 0; v < m->s->nvars; v++) m->var_arr[v] = NULL; /* region variables end with it */
  free(it.v);
  m->r = NULL;
  return out;
}

static nnc_lstmt *rs_for(emulator *m, const nnc_lstmt *s) {
  if (s->loop == NNC_LOOP_GPU_THREAD) {
    if (m->r) {
      err(m, "thread loop %s inside a thread region (thread loops must form a perfect nest)", s->var->name);
      return nnc_ls_block(m->k);
    }
    return rs_region(m, s);
  }
  nnc_loop_kind kind = s->loop;
  const nnc_lstmt *saved = NULL;
  bool was_in_block = m->in_block;
  if (s->loop == NNC_LOOP_GPU_BLOCK) {
    if (s->axis < 0 || s->axis > 2) {
      err(m, "block loop %s: axis %d", s->var->name, s->axis);
      return nnc_ls_block(m->k);
    }
    kind = m->parallel_blocks && !m->in_block ? NNC_LOOP_PARALLEL : NNC_LOOP_SERIAL;
    saved = m->block_loop[s->axis];
    m->block_loop[s->axis] = s;
    m->in_block = true;
  }
  nnc_lstmt *body = rs(m, s->body);
  if (s->loop == NNC_LOOP_GPU_BLOCK) m->block_loop[s->axis] = saved, m->in_block = was_in_block;
  return nnc_ls_for(m->k, m->var[s->var->id], rw(m, s->lo), rw(m, s->hi), s->step, kind, body);
}

static nnc_lstmt *rs(emulator *m, const nnc_lstmt *s) {
  if (!s) return NULL;
  switch (s->kind) {
  case NNC_LS_BLOCK: {
    nnc_lstmt *b = nnc_ls_block(m->k);
    for (int i = 0; i < s->nitems; i++) nnc_ls_push(m->k, b, rs(m, s->items[i]));
    return b;
  }
  case NNC_LS_FOR: return rs_for(m, s);
  case NNC_LS_IF: return nnc_ls_if(m->k, rw(m, s->cond), rs(m, s->then_s), rs(m, s->else_s));
  case NNC_LS_STORE:
    return nnc_ls_store(m->k, m->buf[s->buf->id], rw_index(m, s->buf, s->index), rw(m, s->value), rw(m, s->mask));
  case NNC_LS_ATOMIC_ADD:
    return nnc_ls_atomic_add(m->k, m->buf[s->buf->id], rw_index(m, s->buf, s->index), rw(m, s->value));
  case NNC_LS_LET:
  case NNC_LS_ASSIGN: {
    nnc_lbuf *arr = m->var_arr[s->var->id];
    if (arr) return arr_store(m, arr, s->var->type, rw(m, s->value));
    nnc_lvar *v = m->var[s->var->id];
    return s->kind == NNC_LS_LET ? nnc_ls_let(m->k, v, rw(m, s->value)) : nnc_ls_assign(m->k, v, rw(m, s->value));
  }
  case NNC_LS_BARRIER:
    err(m, "a barrier outside the top level of a thread region");
    return nnc_ls_block(m->k);
  case NNC_LS_COMMENT: return nnc_ls_comment(m->k, s->text);
  }
  return nnc_ls_block(m->k);
}

/* --- the kernel ------------------------------------------------------------------------------ */

static void copy_buffers(emulator *m) {
  const nnc_kernel *s = m->s;
  for (int pass = 0; pass < 2; pass++) /* parameters (global, then scratch) keep their order */
    for (int i = 0; i < s->nbufs; i++) {
      const nnc_lbuf *b = s->bufs[i];
      bool param = b->scope == NNC_SCOPE_GLOBAL || b->scope == NNC_SCOPE_SCRATCH;
      bool now = pass == 0 ? b->scope == NNC_SCOPE_GLOBAL : b->scope != NNC_SCOPE_GLOBAL;
      if (!now) continue;
      nnc_scope scope = param ? b->scope : NNC_SCOPE_LOCAL;
      int64_t size = b->scope == NNC_SCOPE_LOCAL && m->local_inside[i] ? b->size * m->threads : b->size;
      nnc_lbuf *c = nnc_lk_buf(m->k, b->name, b->dtype, scope, size);
      c->batch_scaled = b->batch_scaled;
      m->buf[i] = c;
      if (b->scope == NNC_SCOPE_LOCAL && m->local_inside[i] && m->local_outside[i])
        err(m, "local buffer %s is used both inside and outside thread regions", b->name);
    }
}

static void copy_vars(emulator *m) {
  for (int v = 0; v < m->s->nvars; v++) {
    const nnc_lvar *o = m->old_var[v];
    m->var[v] = nnc_lk_var(m->k, o ? o->name : "unused", o ? o->type : nnc_lt(NNC_I64, 1));
  }
}

nnc_kernel *nnc_phase_lower(nnc_arena *a, const nnc_kernel *s, const nnc_phase_opts *o, nnc_diags *d) {
  if (!s->gpu) return (nnc_kernel *)s;
  emulator m = {.s = s, .d = d, .ok = true, .parallel_blocks = o && o->parallel_blocks, .threads = 1};
  if (s->nerrors) {
    err(&m, "malformed: %s", s->first_error ? s->first_error : "a constructor was misused");
    return NULL;
  }
  size_t nv = (size_t)(s->nvars > 0 ? s->nvars : 1), nb = (size_t)(s->nbufs > 0 ? s->nbufs : 1);
  m.var = nnc_xcalloc(nv, sizeof *m.var);
  m.old_var = nnc_xcalloc(nv, sizeof *m.old_var);
  m.var_arr = nnc_xcalloc(nv, sizeof *m.var_arr);
  m.buf = nnc_xcalloc(nb, sizeof *m.buf);
  m.local_inside = nnc_xcalloc(nb, 1);
  m.local_outside = nnc_xcalloc(nb, 1);
  m.k = nnc_lk_new(a, s->name);
  m.k->batch_max = s->batch_max;
  m.k->comment = nnc_arena_printf(a, "%s%sphase emulation of a GPU schedule", s->comment ? s->comment : "",
                                  s->comment ? "\n" : "");
  scan_stmt(&m, s->body, false);
  copy_vars(&m);
  copy_buffers(&m);
  if (m.ok) m.k->body = rs(&m, s->body);
  nnc_lk_finish(m.k);
  if (m.ok && m.k->nerrors) err(&m, "the rewrite is malformed: %s", m.k->first_error ? m.k->first_error : "?");
  free(m.var), free(m.old_var), free(m.var_arr), free(m.buf), free(m.local_inside), free(m.local_outside), free(m.shuf);
  return m.ok ? m.k : NULL;
}

bool nnc_phase_program(nnc_arena *a, nnc_lprogram *p, const nnc_phase_opts *o, nnc_diags *d) {
  for (int i = 0; i < p->nkernels; i++) {
    nnc_kernel *e = nnc_phase_lower(a, p->kernels[i], o, d);
    if (!e) return false;
    p->kernels[i] = e;
  }
  return true;
}
