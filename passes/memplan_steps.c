/* Scratch by liveness (DESIGN §9): the steps of a program (its kernel calls in order) give each
 * scratch buffer the interval from its first to its last use; an elementwise kernel whose loop
 * IR reads each element of an input just before writing the same element of its output lets
 * the output take over that input's range when the input dies there; the ranges are then
 * packed by greedy best fit (passes/memplan_alloc.c). */
#include <stdlib.h>
#include <string.h>

#include "lower.h"
#include "memplan.h"

static int64_t align_up(int64_t x) { return (x + NNC_MEM_ALIGN - 1) / NNC_MEM_ALIGN * NNC_MEM_ALIGN; }

/* --- in-place proof on the loop IR ---------------------------------------------------------- */

static bool expr_equal(const nnc_lexpr *a, const nnc_lexpr *b) {
  if (!a || !b) return a == b;
  return a->kind == b->kind && nnc_lt_equal(a->type, b->type) && a->op == b->op && a->ival == b->ival &&
         (a->fval == b->fval || (a->fval != a->fval && b->fval != b->fval)) && a->var == b->var &&
         a->scalar == b->scalar && a->buf == b->buf && a->axis == b->axis && expr_equal(a->a, b->a) &&
         expr_equal(a->b, b->b) && expr_equal(a->c, b->c);
}

typedef struct proof {
  const nnc_lbuf *out, *in;
  const nnc_lstmt *store;          /* the one store to out */
  const nnc_lstmt *loops[16];      /* the loops around it, outermost first */
  int nloops;
  int nstores, stray_loads;        /* stores to out; loads of in outside the store's value */
  bool bad;                        /* out read, in written, an atomic on either, too deep */
} proof;

/* Loads of in inside e: each must match the store's index, lanes and mask. */
static void check_loads(proof *p, const nnc_lexpr *e, const nnc_lstmt *st) {
  if (!e) return;
  if (e->kind == NNC_LE_LOAD && e->buf == p->out) p->bad = true;
  if (e->kind == NNC_LE_LOAD && e->buf == p->in) {
    int lanes = st->value ? st->value->type.lanes : 1;
    if (!expr_equal(e->a, st->index) || !expr_equal(e->b, st->mask) || e->type.lanes != lanes) p->bad = true;
  }
  check_loads(p, e->a, st), check_loads(p, e->b, st), check_loads(p, e->c, st);
}

/* Loads of in or out outside the store (anywhere else in the kernel): the first ends the proof. */
static void count_stray(proof *p, const nnc_lexpr *e) {
  if (!e || p->bad) return;
  if (e->kind == NNC_LE_LOAD && (e->buf == p->in || e->buf == p->out)) p->stray_loads++, p->bad = true;
  count_stray(p, e->a), count_stray(p, e->b), count_stray(p, e->c);
}

static void walk(proof *p, const nnc_lstmt *s, const nnc_lstmt **stack, int depth) {
  if (!s || p->bad) return;
  if (depth >= 16) {
    p->bad = true;
    return;
  }
  switch (s->kind) {
  case NNC_LS_BLOCK:
    for (int i = 0; i < s->nitems; i++) walk(p, s->items[i], stack, depth);
    return;
  case NNC_LS_FOR:
    count_stray(p, s->lo), count_stray(p, s->hi);
    stack[depth] = s;
    walk(p, s->body, stack, depth + 1);
    return;
  case NNC_LS_IF:
    count_stray(p, s->cond);
    walk(p, s->then_s, stack, depth), walk(p, s->else_s, stack, depth);
    return;
  case NNC_LS_STORE:
  case NNC_LS_ATOMIC_ADD:
    if (s->buf == p->in || (s->buf == p->out && s->kind == NNC_LS_ATOMIC_ADD)) p->bad = true;
    if (s->buf == p->out) {
      p->nstores++;
      p->store = s;
      p->nloops = depth;
      memcpy(p->loops, stack, sizeof *stack * (size_t)depth);
      count_stray(p, s->index), count_stray(p, s->mask);
      check_loads(p, s->value, s);
    } else {
      count_stray(p, s->index), count_stray(p, s->mask), count_stray(p, s->value);
    }
    return;
  case NNC_LS_LET:
  case NNC_LS_ASSIGN: count_stray(p, s->value); return;
  default: return;
  }
}

static bool is_loop_var(const nnc_lexpr *e, const nnc_lstmt *loop) {
  return e && e->kind == NNC_LE_VAR && e->var == loop->var;
}
static bool is_zero(const nnc_lexpr *e) { return e && e->kind == NNC_LE_INT && e->ival == 0; }

/* The store's index visits each element once: no loop (one execution); or one loop from 0 whose
 * variable is the index, stepping by the store's lanes; or the row-major index of the nest,
 * ((v0 * hi1 + v1) * hi2 + v2)..., every loop from 0 by 1. */
static bool index_injective(const proof *p) {
  const nnc_lstmt *st = p->store;
  int lanes = st->value ? st->value->type.lanes : 1;
  if (p->nloops == 0) return true;
  for (int k = 0; k < p->nloops; k++)
    if (!is_zero(p->loops[k]->lo)) return false;
  if (p->nloops == 1 && is_loop_var(st->index, p->loops[0])) return p->loops[0]->step == lanes;
  if (lanes != 1) return false;
  const nnc_lexpr *e = st->index;
  for (int k = p->nloops - 1; k > 0; k--) {
    const nnc_lstmt *loop = p->loops[k];
    if (loop->step != 1 || !e || e->kind != NNC_LE_BIN || e->op != NNC_LB_ADD || !is_loop_var(e->b, loop)) return false;
    const nnc_lexpr *m = e->a;
    bool unit = is_zero(loop->hi) || (loop->hi->kind == NNC_LE_INT && loop->hi->ival == 1);
    if (unit && is_loop_var(m, p->loops[k - 1])) { /* mul_const by 1 is left out */
      e = m;
      continue;
    }
    if (!m || m->kind != NNC_LE_BIN || m->op != NNC_LB_MUL || !expr_equal(m->b, loop->hi)) return false;
    e = m->a;
  }
  return p->loops[0]->step == 1 && is_loop_var(e, p->loops[0]);
}

bool nnc_mem_inplace_proven(const nnc_kernel *k, int out, int in) {
  if (!k || out == in || out < 0 || in < 0 || out >= k->nbufs || in >= k->nbufs) return false;
  const nnc_lbuf *bo = k->bufs[out], *bi = k->bufs[in];
  if (bo->scope != NNC_SCOPE_GLOBAL || bi->scope != NNC_SCOPE_GLOBAL || bo->read || !bo->written || bi->written ||
      nnc_dtype_size(bo->dtype) != nnc_dtype_size(bi->dtype) || bo->size > bi->size || k->nondeterministic)
    return false;
  proof p = {.out = bo, .in = bi};
  const nnc_lstmt *stack[16];
  walk(&p, k->body, stack, 0);
  return !p.bad && p.nstores == 1 && p.stray_loads == 0 && index_injective(&p);
}

/* --- liveness and packing ------------------------------------------------------------------- */

static bool is_scratch(const nnc_mem_plan *P, int b) { return P->bufs[b].region == NNC_MEM_SCRATCH; }

/* The group (in-place chain) a buffer belongs to: the buffer whose range it uses. */
static int group_of(const nnc_mem_plan *P, int b) {
  while (P->bufs[b].inplace_of >= 0) b = P->bufs[b].inplace_of;
  return b;
}

static bool touch(nnc_mem_plan *P, int b, int step, nnc_diags *d) {
  if (b < 0 || b >= P->nbufs) {
    nnc_error(d, (nnc_loc){0}, "memory plan of %s: step %d uses buffer %d of %d", P->graph->name, step, b, P->nbufs);
    return false;
  }
  nnc_mem_buffer *x = &P->bufs[b];
  if (x->region != NNC_MEM_SCRATCH) return true;
  if (x->first < 0) x->first = step;
  x->last = step;
  return true;
}

/* Out takes over in's range at step s when in's whole group is done at s, nothing of that group
 * is born at s already, out is born at s, and out fits. */
static void try_inplace(nnc_mem_plan *P, int out, int in, int s, int64_t *group_bytes, int *group_last) {
  if (out < 0 || in < 0 || out >= P->nbufs || in >= P->nbufs || out == in) return;
  if (!is_scratch(P, out) || !is_scratch(P, in) || P->bufs[out].inplace_of >= 0 || P->bufs[out].first != s) return;
  int g = group_of(P, in);
  if (g == out || group_last[g] != s || P->bufs[in].last != s) return;
  for (int b = 0; b < P->nbufs; b++)
    if (is_scratch(P, b) && b != out && P->bufs[b].first == s && group_of(P, b) == g) return;
  if (align_up(P->bufs[out].bytes) > group_bytes[g]) return;
  /* out must not be the group of anything yet (it is born here, so nothing refers to it) */
  P->bufs[out].inplace_of = in;
  group_last[g] = P->bufs[out].last;
  P->ninplace++;
}

bool nnc_mem_plan_steps(nnc_mem_plan *P, const nnc_mem_step *steps, int nsteps, nnc_diags *d) {
  for (int b = 0; b < P->nbufs; b++)
    if (is_scratch(P, b)) P->bufs[b].first = P->bufs[b].last = -1, P->bufs[b].inplace_of = -1;
  P->ninplace = 0;
  P->nsteps = nsteps;
  for (int s = 0; s < nsteps; s++) {
    for (int j = 0; j < steps[s].nreads; j++)
      if (!touch(P, steps[s].reads[j], s, d)) return false;
    for (int j = 0; j < steps[s].nwrites; j++)
      if (!touch(P, steps[s].writes[j], s, d)) return false;
  }
  int64_t *group_bytes = nnc_xcalloc((size_t)P->nbufs + 1, sizeof *group_bytes);
  int *group_last = nnc_xcalloc((size_t)P->nbufs + 1, sizeof *group_last);
  for (int b = 0; b < P->nbufs; b++) group_bytes[b] = align_up(P->bufs[b].bytes), group_last[b] = P->bufs[b].last;
  for (int s = 0; s < nsteps; s++)
    for (int j = 0; j < steps[s].ninplace; j++)
      try_inplace(P, steps[s].inplace[j][0], steps[s].inplace[j][1], s, group_bytes, group_last);
  /* one range per group: the union of its members' lives, its first member's size */
  nnc_mem_interval *iv = nnc_xcalloc((size_t)P->nbufs + 1, sizeof *iv);
  P->scratch_naive = 0;
  for (int b = 0; b < P->nbufs; b++) iv[b] = (nnc_mem_interval){.first = -1, .last = -1};
  for (int b = 0; b < P->nbufs; b++) {
    if (!is_scratch(P, b)) continue;
    P->scratch_naive += align_up(P->bufs[b].bytes);
    if (P->bufs[b].first < 0) continue;
    nnc_mem_interval *g = &iv[group_of(P, b)];
    if (g->first < 0 || P->bufs[b].first < g->first) g->first = P->bufs[b].first;
    if (P->bufs[b].last > g->last) g->last = P->bufs[b].last;
    if (P->bufs[b].bytes > g->bytes) g->bytes = P->bufs[b].bytes;
  }
  nnc_mem_order order;
  P->scratch_bytes = align_up(nnc_mem_pack(iv, P->nbufs, &order));
  P->scratch_lower_bound = nnc_mem_lower_bound(iv, P->nbufs);
  P->scratch_order = nnc_mem_order_name(order);
  for (int b = 0; b < P->nbufs; b++)
    if (is_scratch(P, b)) P->bufs[b].offset = P->bufs[b].first < 0 ? 0 : iv[group_of(P, b)].offset;
  free(iv), free(group_bytes), free(group_last);
  return true;
}

/* Two scratch buffers may share bytes while both live only when one took over the other's
 * range in place at the step where the first dies and the second is born. */
static bool may_share(const nnc_mem_buffer *a, const nnc_mem_buffer *b, int ia, int ib) {
  return (b->inplace_of == ia && a->last == b->first) || (a->inplace_of == ib && b->last == a->first);
}

bool nnc_mem_plan_valid(const nnc_mem_plan *P, char *err, size_t cap) {
  for (int i = 0; i < P->nbufs; i++) {
    const nnc_mem_buffer *a = &P->bufs[i];
    int64_t region = nnc_mem_region_bytes(P, a->region);
    bool used = a->region != NNC_MEM_SCRATCH || a->first >= 0;
    if (used && (a->offset < 0 || a->offset % NNC_MEM_ALIGN != 0 || a->offset + a->bytes > region)) {
      snprintf(err, cap, "%s %s: %lld bytes at %lld, unaligned or outside %lld bytes", nnc_mem_region_name(a->region),
               a->name, (long long)a->bytes, (long long)a->offset, (long long)region);
      return false;
    }
    if (a->region != NNC_MEM_SCRATCH || a->first < 0) continue;
    for (int j = i + 1; j < P->nbufs; j++) {
      const nnc_mem_buffer *b = &P->bufs[j];
      if (b->region != NNC_MEM_SCRATCH || b->first < 0 || a->first > b->last || b->first > a->last) continue;
      bool overlap = a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
      if (overlap && !may_share(a, b, i, j)) {
        snprintf(err, cap, "scratch %s [%d,%d] and %s [%d,%d] live together and overlap at %lld/%lld", a->name, a->first,
                 a->last, b->name, b->first, b->last, (long long)a->offset, (long long)b->offset);
        return false;
      }
    }
  }
  return true;
}

/* --- a lowered program's steps -------------------------------------------------------------- */

/* nnc_mem_inplace_proven for parameters (out, in) of the program's kernel ki, each pair proved
 * once: a kernel is called many times (an unrolled sequence's per-step kernel, T times). */
typedef struct proofs {
  signed char **memo; /* per kernel: nbufs * nbufs, -1 until proved */
} proofs;

static bool proven(proofs *pf, const nnc_lprogram *p, int ki, int out, int in) {
  const nnc_kernel *k = p->kernels[ki];
  if (!pf->memo[ki]) {
    size_t n = (size_t)k->nbufs * (size_t)k->nbufs;
    pf->memo[ki] = nnc_xcalloc(n + 1, 1);
    memset(pf->memo[ki], -1, n);
  }
  signed char *m = &pf->memo[ki][out * k->nbufs + in];
  if (*m < 0) *m = nnc_mem_inplace_proven(k, out, in);
  return *m;
}

/* Every parameter of k bound to the same plan buffer as parameter in must pass the proof too.
 * Only scratch takes over scratch (try_inplace), so the proof, a walk of the kernel, is skipped
 * for the rest: a fused optimizer update binds hundreds of params and moments. */
static bool call_inplace_ok(proofs *pf, const nnc_lprogram *p, const nnc_lcall *c, int out, int in) {
  const nnc_mem_plan *P = p->plan;
  if (c->bufs[out] == c->bufs[in] || !is_scratch(P, c->bufs[out]) || !is_scratch(P, c->bufs[in])) return false;
  const nnc_kernel *k = p->kernels[c->kernel];
  for (int j = 0; j < c->nbufs && j < k->nbufs; j++)
    if (c->bufs[j] == c->bufs[in] && (nnc_lcall_offset(c, j) != 0 || !proven(pf, p, c->kernel, out, j))) return false;
  return true;
}

bool nnc_mem_plan_lowered(struct nnc_lprogram *p, nnc_diags *d) {
  int n = p->ncalls;
  nnc_mem_step *steps = nnc_xcalloc((size_t)n + 1, sizeof *steps);
  int total = 0;
  for (int i = 0; i < n; i++) total += p->calls[i].nbufs;
  int *reads = nnc_xcalloc((size_t)total + 1, sizeof *reads), *writes = nnc_xcalloc((size_t)total + 1, sizeof *writes);
  int(*pairs)[2] = nnc_xcalloc((size_t)total * (size_t)total + 1, sizeof *pairs);
  int nr = 0, nw = 0, np = 0;
  proofs pf = {.memo = nnc_xcalloc((size_t)p->nkernels + 1, sizeof *pf.memo)};
  for (int i = 0; i < n; i++) {
    const nnc_lcall *c = &p->calls[i];
    const nnc_kernel *k = p->kernels[c->kernel];
    nnc_mem_step *s = &steps[i];
    s->reads = reads + nr, s->writes = writes + nw, s->inplace = (const int(*)[2])(pairs + np);
    for (int j = 0; j < c->nbufs; j++) {
      bool known = j < k->nbufs;
      /* a parameter the kernel does not describe counts as both */
      if (!known || k->bufs[j]->read) reads[nr++] = c->bufs[j], s->nreads++;
      if (!known || k->bufs[j]->written) writes[nw++] = c->bufs[j], s->nwrites++;
    }
    for (int o = 0; o < c->nbufs && o < k->nbufs; o++)
      for (int j = 0; j < c->nbufs && j < k->nbufs; j++)
        if (k->bufs[o]->written && call_inplace_ok(&pf, p, c, o, j)) {
          pairs[np][0] = c->bufs[o], pairs[np][1] = c->bufs[j];
          np++, s->ninplace++;
        }
  }
  bool ok = nnc_mem_plan_steps(p->plan, steps, n, d);
  for (int ki = 0; ki < p->nkernels; ki++) free(pf.memo[ki]);
  free(pf.memo), free(steps), free(reads), free(writes), free(pairs);
  return ok;
}
