/* Walks over the loop IR and the analyses the printers share (ir/loop.h, "Walks and
 * analyses"): one visitor instead of a hand-written recursion per question, and the uses and
 * captures that the C and LLVM backends both need to outline a parallel loop. */
#include <stdlib.h>

#include "loop.h"

void nnc_lwalk_expr(nnc_lwalk *w, const nnc_lexpr *e) {
  if (!e || w->stop) return;
  if (w->expr) w->expr(w, e);
  nnc_lwalk_expr(w, e->a);
  nnc_lwalk_expr(w, e->b);
  nnc_lwalk_expr(w, e->c);
}

void nnc_lwalk_stmt(nnc_lwalk *w, const nnc_lstmt *s) {
  if (!s || w->stop) return;
  if (w->stmt && !w->stmt(w, s)) return;
  const nnc_lexpr *held[] = {s->lo, s->hi, s->cond, s->index, s->value, s->mask};
  for (size_t i = 0; w->expr && i < sizeof held / sizeof *held; i++) nnc_lwalk_expr(w, held[i]);
  for (int i = 0; s->kind == NNC_LS_BLOCK && i < s->nitems; i++) nnc_lwalk_stmt(w, s->items[i]);
  nnc_lwalk_stmt(w, s->body);
  nnc_lwalk_stmt(w, s->then_s);
  nnc_lwalk_stmt(w, s->else_s);
}

typedef struct any_walk {
  nnc_lwalk w;
  bool (*stmt_pred)(const nnc_lstmt *);
  bool (*expr_pred)(const nnc_lexpr *);
} any_walk;

static bool any_stmt(nnc_lwalk *w, const nnc_lstmt *s) {
  any_walk *a = (any_walk *)w;
  if (a->stmt_pred && a->stmt_pred(s)) w->stop = true;
  return !w->stop;
}

static void any_expr(nnc_lwalk *w, const nnc_lexpr *e) {
  if (((any_walk *)w)->expr_pred(e)) w->stop = true;
}

bool nnc_lstmt_any(const nnc_lstmt *s, bool (*stmt_pred)(const nnc_lstmt *), bool (*expr_pred)(const nnc_lexpr *)) {
  any_walk a = {{.stmt = any_stmt, .expr = expr_pred ? any_expr : NULL}, stmt_pred, expr_pred};
  nnc_lwalk_stmt(&a.w, s);
  return a.w.stop;
}

typedef struct loops_walk {
  nnc_lwalk w;
  nnc_loop_kind kind;
  const nnc_lstmt **out;
  int n, cap;
} loops_walk;

static bool note_loop(nnc_lwalk *w, const nnc_lstmt *s) {
  loops_walk *lw = (loops_walk *)w;
  if (s->kind == NNC_LS_FOR && s->loop == lw->kind) {
    if (lw->n < lw->cap) lw->out[lw->n] = s;
    lw->n++;
  }
  return true;
}

int nnc_lstmt_loops(const nnc_lstmt *s, nnc_loop_kind kind, const nnc_lstmt **out, int cap) {
  loops_walk lw = {{.stmt = note_loop}, kind, out, 0, cap};
  nnc_lwalk_stmt(&lw.w, s);
  return lw.n;
}

/* --- uses ------------------------------------------------------------------------------------- */

typedef struct uses_walk {
  nnc_lwalk w;
  const nnc_kernel *k;
  nnc_lk_uses *u;
} uses_walk;

static void note_var(uses_walk *uw, const nnc_lvar *v, bool read) {
  if (!v || v->id < 0 || v->id >= uw->k->nvars) return;
  uw->u->vars[v->id] = v;
  uw->u->reads[v->id] += read;
}

static void use_expr(nnc_lwalk *w, const nnc_lexpr *e) {
  if (e->kind == NNC_LE_VAR) note_var((uses_walk *)w, e->var, true);
}

static bool use_stmt(nnc_lwalk *w, const nnc_lstmt *s) {
  note_var((uses_walk *)w, s->var, false);
  return true;
}

/* A buffer touched by a statement or an expression outside parallel loops' bodies. */
static void outside_expr(nnc_lwalk *w, const nnc_lexpr *e) {
  if (e->kind == NNC_LE_LOAD) ((uses_walk *)w)->u->outside_parallel[e->buf->id] = true;
}

static bool outside_stmt(nnc_lwalk *w, const nnc_lstmt *s) {
  if (s->kind == NNC_LS_STORE || s->kind == NNC_LS_ATOMIC_ADD) ((uses_walk *)w)->u->outside_parallel[s->buf->id] = true;
  if (s->kind != NNC_LS_FOR || s->loop != NNC_LOOP_PARALLEL) return true;
  nnc_lwalk_expr(w, s->lo); /* the bounds are evaluated outside; the body is not */
  nnc_lwalk_expr(w, s->hi);
  return false;
}

void nnc_lk_uses_of(nnc_lk_uses *u, const nnc_kernel *k) {
  size_t nv = (size_t)(k->nvars > 0 ? k->nvars : 1), nb = (size_t)(k->nbufs > 0 ? k->nbufs : 1);
  u->vars = nnc_xcalloc(nv, sizeof *u->vars);
  u->reads = nnc_xcalloc(nv, sizeof *u->reads);
  u->outside_parallel = nnc_xcalloc(nb, sizeof *u->outside_parallel);
  uses_walk uw = {{.stmt = use_stmt, .expr = use_expr}, k, u};
  nnc_lwalk_stmt(&uw.w, k->body);
  uw.w = (nnc_lwalk){.stmt = outside_stmt, .expr = outside_expr};
  nnc_lwalk_stmt(&uw.w, k->body);
}

void nnc_lk_uses_free(nnc_lk_uses *u) {
  free(u->vars), free(u->reads), free(u->outside_parallel);
  *u = (nnc_lk_uses){0};
}

/* --- the capture of a parallel loop ------------------------------------------------------------ */

typedef struct capture_walk {
  nnc_lwalk w;
  nnc_lcapture *p;
} capture_walk;

static void capture_expr(nnc_lwalk *w, const nnc_lexpr *e) {
  nnc_lcapture *p = ((capture_walk *)w)->p;
  if (e->kind == NNC_LE_VAR) p->var_used[e->var->id] = true;
  if (e->kind == NNC_LE_SCALAR && e->scalar >= 0 && e->scalar < NNC_LSC_COUNT) p->scalar_used[e->scalar] = true;
  if (e->kind == NNC_LE_LOAD) p->buf_used[e->buf->id] = true;
}

static bool capture_stmt(nnc_lwalk *w, const nnc_lstmt *s) {
  nnc_lcapture *p = ((capture_walk *)w)->p;
  if (s->kind == NNC_LS_FOR || s->kind == NNC_LS_LET) p->var_defined[s->var->id] = true;
  if (s->kind == NNC_LS_ASSIGN) p->var_assigned[s->var->id] = true;
  if (s->kind == NNC_LS_STORE || s->kind == NNC_LS_ATOMIC_ADD) p->buf_used[s->buf->id] = true;
  return true;
}

bool nnc_lcapture_of(nnc_lcapture *p, const nnc_kernel *k, const nnc_lstmt *loop, const nnc_lk_uses *u,
                     nnc_diags *d, bool *ok, const char *who) {
  size_t nv = (size_t)(k->nvars > 0 ? k->nvars : 1), nb = (size_t)(k->nbufs > 0 ? k->nbufs : 1);
  *p = (nnc_lcapture){nnc_xcalloc(nv, 1), nnc_xcalloc(nv, 1), nnc_xcalloc(nv, 1), nnc_xcalloc(nb, 1), {0}};
  capture_walk cw = {{.stmt = capture_stmt, .expr = capture_expr}, p};
  nnc_lwalk_stmt(&cw.w, loop->body);
  bool fine = true;
  for (int v = 0; v < k->nvars; v++)
    if (p->var_assigned[v] && !p->var_defined[v] && u->vars[v]) {
      nnc_lk_error(d, ok, who, k->name, "parallel loop %s assigns %s, defined outside it (iterations must be independent)",
                   loop->var->name, u->vars[v]->name);
      fine = false;
    }
  for (int i = 0; i < k->nbufs; i++)
    if (p->buf_used[i] && k->bufs[i]->scope == NNC_SCOPE_LOCAL && u->outside_parallel[i]) {
      nnc_lk_error(d, ok, who, k->name,
                   "local buffer %s is used both inside and outside parallel loop %s (it is private to each worker)",
                   k->bufs[i]->name, loop->var->name);
      fine = false;
    }
  return fine;
}

bool nnc_lcapture_var(const nnc_lcapture *p, const nnc_lstmt *loop, int v) {
  return p->var_used[v] && !p->var_defined[v] && v != loop->var->id;
}

bool nnc_lcapture_buf(const nnc_lcapture *p, const nnc_kernel *k, int i) {
  return p->buf_used[i] && k->bufs[i]->scope != NNC_SCOPE_LOCAL;
}

void nnc_lcapture_free(nnc_lcapture *p) {
  free(p->var_used), free(p->var_defined), free(p->var_assigned), free(p->buf_used);
  *p = (nnc_lcapture){0};
}

bool nnc_lk_check_cpu(const nnc_kernel *k, nnc_diags *d, bool *ok, const char *who, const char *backend) {
  if (k->nerrors)
    nnc_lk_error(d, ok, who, k->name, "malformed: %s", k->first_error ? k->first_error : "a constructor was misused");
  else if (k->gpu)
    nnc_lk_error(d, ok, who, k->name, "a GPU-scheduled kernel runs under the phase emulator, not the %s backend", backend);
  for (int i = 0; i < k->nbufs && *ok; i++)
    if (k->bufs[i]->scope == NNC_SCOPE_SHARED) nnc_lk_error(d, ok, who, k->name, "shared buffer %s in a CPU kernel", k->bufs[i]->name);
  return *ok;
}

bool nnc_lk_check_unroll(const nnc_kernel *k, const nnc_lstmt *s, nnc_diags *d, bool *ok, const char *who) {
  if (s->lo->kind != NNC_LE_INT || s->hi->kind != NNC_LE_INT)
    nnc_lk_error(d, ok, who, k->name, "unrolled loop %s needs static bounds", s->var->name);
  else if ((s->hi->ival - s->lo->ival) / s->step > 1024)
    nnc_lk_error(d, ok, who, k->name, "unrolled loop %s has more than 1024 iterations", s->var->name);
  else
    return true;
  return false;
}
