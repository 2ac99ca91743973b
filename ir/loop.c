/* Loop IR construction (DESIGN §8): typed constructors for kernels, buffers, variables,
 * expressions and statements, and nnc_lk_finish.
 *
 * Every expression is typed here from its operands. Vector lanes must agree exactly: a scalar
 * meets a vector only through an explicit splat, so backends never guess a broadcast. A
 * constructor given mistyped or missing operands does not crash: it records the misuse on
 * the kernel (nerrors, first_error) and returns a poison expression or a comment statement,
 * and nnc_lk_verify reports the kernel as malformed. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loop.h"

/* --- names -------------------------------------------------------------------------------- */

const nnc_lunop_info nnc_lunops[NNC_LU_COUNT] = {
#define UNOP(NAME, name, dtypes, c, cuda, llvm) [NNC_LU_##NAME] = {#name, NNC_LDT_##dtypes, c, cuda, llvm},
#include "loop_ops.def"
};

#define RESULT_SAME false
#define RESULT_BOOL true
const nnc_lbinop_info nnc_lbinops[NNC_LB_COUNT] = {
#define BINOP(NAME, name, dtypes, result, c, prec) [NNC_LB_##NAME] = {#name, NNC_LDT_##dtypes, RESULT_##result, c, prec},
#include "loop_ops.def"
};
#undef RESULT_SAME
#undef RESULT_BOOL

const char *nnc_lbinop_name(nnc_lbinop op) { return (unsigned)op < NNC_LB_COUNT ? nnc_lbinops[op].name : "?"; }

const char *nnc_lunop_name(nnc_lunop op) { return (unsigned)op < NNC_LU_COUNT ? nnc_lunops[op].name : "?"; }

static const char *dtype_str(nnc_dtype dt) {
  if (dt == NNC_I64) return "i64";
  if (dt == NNC_BOOL) return "bool";
  if ((unsigned)dt < NNC_DTYPE_COUNT) return nnc_dtype_name(dt);
  return "?";
}

const char *nnc_lt_str(nnc_ltype t, char *buf, size_t cap) {
  if (t.lanes == 1) snprintf(buf, cap, "%s", dtype_str(t.dtype));
  else snprintf(buf, cap, "%sx%d", dtype_str(t.dtype), t.lanes);
  return buf;
}

bool nnc_lt_equal(nnc_ltype a, nnc_ltype b) { return a.dtype == b.dtype && a.lanes == b.lanes; }

nnc_ltype nnc_lt(nnc_dtype dt, int lanes) { return (nnc_ltype){dt, lanes}; }

/* --- misuse ------------------------------------------------------------------------------- */

static void misuse(nnc_kernel *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void misuse(nnc_kernel *k, const char *fmt, ...) {
  k->nerrors++;
  if (k->first_error) return;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  k->first_error = nnc_arena_strdup(k->arena, msg);
}

/* An expression of kind and type over operands a, b, c (NULL where it has fewer). */
static nnc_lexpr *new_expr(nnc_kernel *k, nnc_lexpr_kind kind, nnc_ltype t, nnc_lexpr *a, nnc_lexpr *b,
                           nnc_lexpr *c) {
  nnc_lexpr *e = nnc_arena_alloc(k->arena, sizeof *e);
  e->kind = kind;
  e->type = t;
  e->a = a, e->b = b, e->c = c;
  return e;
}

static nnc_lexpr *poison(nnc_kernel *k, nnc_ltype t) {
  if (t.lanes < 1 || t.lanes > NNC_MAX_LANES) t.lanes = 1;
  return new_expr(k, NNC_LE_POISON, t, NULL, NULL, NULL);
}

static bool valid_type(nnc_ltype t) {
  return (unsigned)t.dtype <= (unsigned)NNC_BOOL && t.lanes >= 1 && t.lanes <= NNC_MAX_LANES;
}

static const char *ts(nnc_ltype t, char *buf) { return nnc_lt_str(t, buf, 24); }

static bool is_int(nnc_dtype dt) { return dt == NNC_I32 || dt == NNC_U8 || dt == NNC_I64; }

static bool takes(nnc_ldtypes dtypes, nnc_dtype dt) {
  switch (dtypes) {
  case NNC_LDT_FLOAT: return dt == NNC_F32;
  case NNC_LDT_NUMBER: return dt != NNC_BOOL;
  case NNC_LDT_BITS: return dt == NNC_BOOL || is_int(dt);
  case NNC_LDT_ANY: return true;
  }
  return false;
}

/* --- kernels, buffers, variables ------------------------------------------------------------ */

nnc_kernel *nnc_lk_new(nnc_arena *a, const char *name) {
  nnc_kernel *k = nnc_arena_alloc(a, sizeof *k);
  k->arena = a;
  k->name = nnc_arena_strdup(a, name ? name : "kernel");
  k->batch_max = 1;
  k->body = nnc_ls_block(k);
  for (int i = 0; i < 3; i++) k->block_dim[i] = 1;
  return k;
}

nnc_lbuf *nnc_lk_buf(nnc_kernel *k, const char *name, nnc_dtype dt, nnc_scope scope, int64_t size) {
  /* LOCAL buffers may also hold i64: per-thread index values (the phase emulator keeps them). */
  bool local_i64 = dt == NNC_I64 && scope == NNC_SCOPE_LOCAL;
  if ((unsigned)dt >= NNC_DTYPE_COUNT && !local_i64) {
    misuse(k, "buffer '%s': dtype must be f32, i32 or u8 (or i64 when local)", name ? name : "?");
    dt = NNC_F32;
  }
  if (size < 1) misuse(k, "buffer '%s': size %lld is not positive", name ? name : "?", (long long)size);
  nnc_lbuf *b = nnc_arena_alloc(k->arena, sizeof *b);
  b->id = k->nbufs;
  b->name = nnc_arena_strdup(k->arena, name ? name : "buf");
  b->dtype = dt;
  b->scope = scope;
  b->size = size;
  if (k->nbufs == k->bufs_cap) {
    int cap = k->bufs_cap ? 2 * k->bufs_cap : 8;
    k->bufs = nnc_arena_realloc(k->arena, k->bufs, (size_t)k->bufs_cap * sizeof *k->bufs, (size_t)cap * sizeof *k->bufs);
    k->bufs_cap = cap;
  }
  k->bufs[k->nbufs++] = b;
  return b;
}

nnc_lvar *nnc_lk_var(nnc_kernel *k, const char *name, nnc_ltype t) {
  if (!valid_type(t)) {
    misuse(k, "variable '%s': invalid type", name ? name : "?");
    t = nnc_lt(NNC_I64, 1);
  }
  nnc_lvar *v = nnc_arena_alloc(k->arena, sizeof *v);
  v->id = k->nvars++;
  v->name = nnc_arena_strdup(k->arena, name ? name : "v");
  v->type = t;
  return v;
}

/* --- expressions ---------------------------------------------------------------------------- */

nnc_lexpr *nnc_le_int(nnc_kernel *k, int64_t v) {
  nnc_lexpr *e = new_expr(k, NNC_LE_INT, nnc_lt(NNC_I64, 1), NULL, NULL, NULL);
  e->ival = v;
  return e;
}

nnc_lexpr *nnc_le_const(nnc_kernel *k, nnc_ltype t, double v) {
  if (!valid_type(t)) {
    misuse(k, "const: invalid type");
    return poison(k, nnc_lt(NNC_F32, 1));
  }
  nnc_ltype st = nnc_lt(t.dtype, 1);
  nnc_lexpr *e;
  if (t.dtype == NNC_F32) {
    e = new_expr(k, NNC_LE_FLOAT, st, NULL, NULL, NULL);
    e->fval = (double)(float)v;
  } else {
    e = new_expr(k, NNC_LE_INT, st, NULL, NULL, NULL);
    e->ival = t.dtype == NNC_BOOL ? v != 0 : (int64_t)v;
  }
  return t.lanes == 1 ? e : nnc_le_splat(k, e, t.lanes);
}

nnc_lexpr *nnc_le_var(nnc_kernel *k, const nnc_lvar *v) {
  if (!v) {
    misuse(k, "var: no variable");
    return poison(k, nnc_lt(NNC_I64, 1));
  }
  nnc_lexpr *e = new_expr(k, NNC_LE_VAR, v->type, NULL, NULL, NULL);
  e->var = v;
  return e;
}

nnc_lexpr *nnc_le_scalar(nnc_kernel *k, nnc_lscalar s) {
  static const nnc_dtype types[NNC_LSC_COUNT] = {NNC_I64, NNC_F32, NNC_I32, NNC_I32};
  if ((unsigned)s >= NNC_LSC_COUNT) {
    misuse(k, "scalar: no scalar parameter %d", (int)s);
    return poison(k, nnc_lt(NNC_I64, 1));
  }
  nnc_lexpr *e = new_expr(k, NNC_LE_SCALAR, nnc_lt(types[s], 1), NULL, NULL, NULL);
  e->scalar = (int)s;
  return e;
}

/* Operands present and not poison; poison propagates without a second report. */
static bool ok2(nnc_kernel *k, const char *what, const nnc_lexpr *a, const nnc_lexpr *b) {
  if (!a || !b) {
    misuse(k, "%s: missing operand", what);
    return false;
  }
  return a->kind != NNC_LE_POISON && b->kind != NNC_LE_POISON;
}

nnc_lexpr *nnc_le_bin(nnc_kernel *k, nnc_lbinop op, nnc_lexpr *a, nnc_lexpr *b) {
  const char *name = nnc_lbinop_name(op);
  if (!ok2(k, name, a, b)) return poison(k, a ? a->type : nnc_lt(NNC_F32, 1));
  char ta[24], tb[24];
  if (!nnc_lt_equal(a->type, b->type)) {
    misuse(k, "%s: operand types differ (%s, %s); splat scalars explicitly", name, ts(a->type, ta), ts(b->type, tb));
    return poison(k, a->type);
  }
  if ((unsigned)op >= NNC_LB_COUNT || !takes(nnc_lbinops[op].dtypes, a->type.dtype)) {
    misuse(k, "%s: not defined on %s", name, ts(a->type, ta));
    return poison(k, a->type);
  }
  nnc_ltype t = nnc_lbinops[op].gives_bool ? nnc_lt(NNC_BOOL, a->type.lanes) : a->type;
  nnc_lexpr *e = new_expr(k, NNC_LE_BIN, t, a, b, NULL);
  e->op = (int)op;
  return e;
}

nnc_lexpr *nnc_le_un(nnc_kernel *k, nnc_lunop op, nnc_lexpr *a) {
  const char *name = nnc_lunop_name(op);
  if (!ok2(k, name, a, a)) return poison(k, nnc_lt(NNC_F32, 1));
  if ((unsigned)op >= NNC_LU_COUNT || !takes(nnc_lunops[op].dtypes, a->type.dtype)) {
    char ta[24];
    misuse(k, "%s: not defined on %s", name, ts(a->type, ta));
    return poison(k, a->type);
  }
  nnc_lexpr *e = new_expr(k, NNC_LE_UN, a->type, a, NULL, NULL);
  e->op = (int)op;
  return e;
}

nnc_lexpr *nnc_le_select(nnc_kernel *k, nnc_lexpr *c, nnc_lexpr *a, nnc_lexpr *b) {
  if (!ok2(k, "select", a, b) || !ok2(k, "select", c, c)) return poison(k, a ? a->type : nnc_lt(NNC_F32, 1));
  char t1[24], t2[24];
  if (!nnc_lt_equal(a->type, b->type)) {
    misuse(k, "select: value types differ (%s, %s)", ts(a->type, t1), ts(b->type, t2));
    return poison(k, a->type);
  }
  if (c->type.dtype != NNC_BOOL || (c->type.lanes != 1 && c->type.lanes != a->type.lanes)) {
    misuse(k, "select: condition %s must be bool with the values' lanes or a scalar", ts(c->type, t1));
    return poison(k, a->type);
  }
  nnc_lexpr *e = new_expr(k, NNC_LE_SELECT, a->type, c, a, b);
  return e;
}

nnc_lexpr *nnc_le_fma(nnc_kernel *k, nnc_lexpr *a, nnc_lexpr *b, nnc_lexpr *c) {
  if (!ok2(k, "fma", a, b) || !ok2(k, "fma", c, c)) return poison(k, a ? a->type : nnc_lt(NNC_F32, 1));
  if (!nnc_lt_equal(a->type, b->type) || !nnc_lt_equal(a->type, c->type) || a->type.dtype != NNC_F32) {
    char t1[24], t2[24], t3[24];
    misuse(k, "fma: operands must be f32 of one type (%s, %s, %s)", ts(a->type, t1), ts(b->type, t2), ts(c->type, t3));
    return poison(k, a->type);
  }
  nnc_lexpr *e = new_expr(k, NNC_LE_FMA, a->type, a, b, c);
  return e;
}

nnc_lexpr *nnc_le_cast(nnc_kernel *k, nnc_ltype t, nnc_lexpr *a) {
  if (!ok2(k, "cast", a, a)) return poison(k, t);
  if (!valid_type(t) || t.lanes != a->type.lanes) {
    char t1[24], t2[24];
    misuse(k, "cast: %s to %s changes the lane count", ts(a->type, t1), ts(t, t2));
    return poison(k, t);
  }
  if (nnc_lt_equal(t, a->type)) return a;
  nnc_lexpr *e = new_expr(k, NNC_LE_CAST, t, a, NULL, NULL);
  return e;
}

/* An index is a scalar i64. */
static bool check_index(nnc_kernel *k, const char *what, const nnc_lbuf *buf, const nnc_lexpr *index) {
  if (!buf || !index) {
    misuse(k, "%s: missing buffer or index", what);
    return false;
  }
  if (index->kind == NNC_LE_POISON) return false;
  if (!nnc_lt_equal(index->type, nnc_lt(NNC_I64, 1))) {
    char t[24];
    misuse(k, "%s %s: index is %s, not a scalar i64", what, buf->name, ts(index->type, t));
    return false;
  }
  return true;
}

static bool check_mask(nnc_kernel *k, const char *what, const nnc_lbuf *buf, const nnc_lexpr *mask, int lanes) {
  if (!mask) return true;
  if (mask->kind == NNC_LE_POISON) return false;
  if (!nnc_lt_equal(mask->type, nnc_lt(NNC_BOOL, lanes))) {
    char t[24];
    misuse(k, "%s %s: mask is %s, not boolx%d", what, buf->name, ts(mask->type, t), lanes);
    return false;
  }
  return true;
}

nnc_lexpr *nnc_le_load(nnc_kernel *k, const nnc_lbuf *buf, nnc_lexpr *index, int lanes, nnc_lexpr *mask) {
  nnc_ltype t = nnc_lt(buf ? buf->dtype : NNC_F32, lanes);
  if (lanes < 1 || lanes > NNC_MAX_LANES) {
    misuse(k, "load: %d lanes", lanes);
    return poison(k, t);
  }
  if (!check_index(k, "load", buf, index) || !check_mask(k, "load", buf, mask, lanes)) return poison(k, t);
  nnc_lexpr *e = new_expr(k, NNC_LE_LOAD, t, index, mask, NULL);
  e->buf = buf;
  return e;
}

nnc_lexpr *nnc_le_splat(nnc_kernel *k, nnc_lexpr *a, int lanes) {
  if (!ok2(k, "splat", a, a)) return poison(k, nnc_lt(a ? a->type.dtype : NNC_F32, lanes));
  if (a->type.lanes != 1 || lanes < 1 || lanes > NNC_MAX_LANES) {
    char t[24];
    misuse(k, "splat: %s to %d lanes (a scalar to 1..%d lanes)", ts(a->type, t), lanes, NNC_MAX_LANES);
    return poison(k, a->type);
  }
  if (lanes == 1) return a;
  nnc_lexpr *e = new_expr(k, NNC_LE_SPLAT, nnc_lt(a->type.dtype, lanes), a, NULL, NULL);
  return e;
}

nnc_lexpr *nnc_le_hreduce(nnc_kernel *k, nnc_lbinop op, nnc_lexpr *a) {
  if (!ok2(k, "hreduce", a, a)) return poison(k, nnc_lt(a ? a->type.dtype : NNC_F32, 1));
  if ((op != NNC_LB_ADD && op != NNC_LB_MAX && op != NNC_LB_MIN) || a->type.dtype == NNC_BOOL) {
    char t[24];
    misuse(k, "hreduce: %s over %s (add, max or min over numbers)", nnc_lbinop_name(op), ts(a->type, t));
    return poison(k, nnc_lt(a->type.dtype, 1));
  }
  nnc_lexpr *e = new_expr(k, NNC_LE_HREDUCE, nnc_lt(a->type.dtype, 1), a, NULL, NULL);
  e->op = (int)op;
  return e;
}

nnc_lexpr *nnc_le_lane(nnc_kernel *k, int lanes) {
  if (lanes < 1 || lanes > NNC_MAX_LANES) {
    misuse(k, "lane: %d lanes", lanes);
    return poison(k, nnc_lt(NNC_I64, 1));
  }
  return new_expr(k, NNC_LE_LANE, nnc_lt(NNC_I64, lanes), NULL, NULL, NULL);
}

static nnc_lexpr *gpu_index(nnc_kernel *k, nnc_lexpr_kind kind, int axis) {
  if (axis < 0 || axis > 2) {
    misuse(k, "%s index: axis %d (0..2)", kind == NNC_LE_THREAD ? "thread" : "block", axis);
    return poison(k, nnc_lt(NNC_I64, 1));
  }
  nnc_lexpr *e = new_expr(k, kind, nnc_lt(NNC_I64, 1), NULL, NULL, NULL);
  e->axis = axis;
  return e;
}

nnc_lexpr *nnc_le_thread(nnc_kernel *k, int axis) { return gpu_index(k, NNC_LE_THREAD, axis); }
nnc_lexpr *nnc_le_block(nnc_kernel *k, int axis) { return gpu_index(k, NNC_LE_BLOCK, axis); }

nnc_lexpr *nnc_le_shuffle_xor(nnc_kernel *k, nnc_lexpr *a, nnc_lexpr *lane_mask) {
  if (!ok2(k, "shuffle_xor", a, lane_mask)) return poison(k, a ? a->type : nnc_lt(NNC_F32, 1));
  if (a->type.lanes != 1 || a->type.dtype == NNC_BOOL || lane_mask->type.lanes != 1 || !is_int(lane_mask->type.dtype)) {
    char t1[24], t2[24];
    misuse(k, "shuffle_xor: %s by %s (a scalar number by a scalar integer)", ts(a->type, t1), ts(lane_mask->type, t2));
    return poison(k, a->type);
  }
  nnc_lexpr *e = new_expr(k, NNC_LE_SHUFFLE, a->type, a, lane_mask, NULL);
  return e;
}

nnc_lexpr *nnc_le_rng(nnc_kernel *k, nnc_lexpr *seed, int64_t key, nnc_lexpr *step, nnc_lexpr *index) {
  if (!ok2(k, "rng", seed, step) || !ok2(k, "rng", index, index)) return poison(k, nnc_lt(NNC_F32, 1));
  nnc_ltype i32 = nnc_lt(NNC_I32, 1);
  if (!nnc_lt_equal(seed->type, i32) || !nnc_lt_equal(step->type, i32) || index->type.dtype != NNC_I64) {
    char t1[24], t2[24], t3[24];
    misuse(k, "rng: seed %s, step %s, index %s (i32, i32, i64)", ts(seed->type, t1), ts(step->type, t2),
           ts(index->type, t3));
    return poison(k, nnc_lt(NNC_F32, index->type.lanes));
  }
  nnc_lexpr *e = new_expr(k, NNC_LE_RNG, nnc_lt(NNC_F32, index->type.lanes), seed, step, index);
  e->ival = (int64_t)(uint32_t)key;
  return e;
}

/* --- statements ------------------------------------------------------------------------------ */

/* A statement, given whole, in the kernel's arena. */
static nnc_lstmt *place_stmt(nnc_kernel *k, nnc_lstmt value) {
  nnc_lstmt *s = nnc_arena_alloc(k->arena, sizeof *s);
  *s = value;
  return s;
}

static nnc_lstmt *new_stmt(nnc_kernel *k, nnc_lstmt_kind kind) { return place_stmt(k, (nnc_lstmt){.kind = kind}); }

/* A misused statement becomes a comment saying so (the kernel holds the error). */
static nnc_lstmt *bad_stmt(nnc_kernel *k) {
  return place_stmt(k, (nnc_lstmt){.kind = NNC_LS_COMMENT, .text = "invalid statement"});
}

nnc_lstmt *nnc_ls_block(nnc_kernel *k) { return new_stmt(k, NNC_LS_BLOCK); }

void nnc_ls_push(nnc_kernel *k, nnc_lstmt *block, nnc_lstmt *s) {
  if (!block || block->kind != NNC_LS_BLOCK || !s) {
    misuse(k, "push: %s", !s ? "no statement" : "not a block");
    return;
  }
  if (block->nitems == block->cap) {
    int cap = block->cap ? 2 * block->cap : 4;
    block->items = nnc_arena_realloc(k->arena, block->items, (size_t)block->cap * sizeof *block->items,
                                     (size_t)cap * sizeof *block->items);
    block->cap = cap;
  }
  block->items[block->nitems++] = s;
}

static bool is_index(const nnc_lexpr *e) { return e && nnc_lt_equal(e->type, nnc_lt(NNC_I64, 1)); }

nnc_lstmt *nnc_ls_for(nnc_kernel *k, const nnc_lvar *v, nnc_lexpr *lo, nnc_lexpr *hi, int64_t step, nnc_loop_kind kind,
                      nnc_lstmt *body) {
  if (!v || !nnc_lt_equal(v->type, nnc_lt(NNC_I64, 1)) || !is_index(lo) || !is_index(hi) || step < 1 ||
      (unsigned)kind > NNC_LOOP_GPU_THREAD) {
    misuse(k, "for %s: the variable and bounds must be scalar i64, the step positive", v ? v->name : "?");
    return bad_stmt(k);
  }
  return place_stmt(k, (nnc_lstmt){.kind = NNC_LS_FOR, .var = v, .lo = lo, .hi = hi, .step = step, .loop = kind,
                                   .body = body ? body : nnc_ls_block(k)});
}

nnc_lstmt *nnc_ls_if(nnc_kernel *k, nnc_lexpr *cond, nnc_lstmt *then_s, nnc_lstmt *else_s) {
  if (!cond || !nnc_lt_equal(cond->type, nnc_lt(NNC_BOOL, 1))) {
    char t[24];
    misuse(k, "if: condition is %s, not a scalar bool", cond ? ts(cond->type, t) : "missing");
    return bad_stmt(k);
  }
  return place_stmt(k, (nnc_lstmt){.kind = NNC_LS_IF, .cond = cond, .then_s = then_s ? then_s : nnc_ls_block(k),
                                   .else_s = else_s});
}

nnc_lstmt *nnc_ls_store(nnc_kernel *k, const nnc_lbuf *buf, nnc_lexpr *index, nnc_lexpr *value, nnc_lexpr *mask) {
  if (!check_index(k, "store", buf, index) || !ok2(k, "store", value, value)) return bad_stmt(k);
  if (value->kind == NNC_LE_POISON || !check_mask(k, "store", buf, mask, value->type.lanes)) return bad_stmt(k);
  if (value->type.dtype != buf->dtype) {
    char t[24];
    misuse(k, "store %s: value is %s, the buffer holds %s", buf->name, ts(value->type, t), nnc_dtype_name(buf->dtype));
    return bad_stmt(k);
  }
  return place_stmt(k, (nnc_lstmt){.kind = NNC_LS_STORE, .buf = buf, .index = index, .value = value, .mask = mask});
}

static nnc_lstmt *set_var(nnc_kernel *k, nnc_lstmt_kind kind, const nnc_lvar *v, nnc_lexpr *value) {
  const char *what = kind == NNC_LS_LET ? "let" : "assign";
  if (!v || !ok2(k, what, value, value)) {
    if (!v) misuse(k, "%s: no variable", what);
    return bad_stmt(k);
  }
  if (!nnc_lt_equal(v->type, value->type)) {
    char t1[24], t2[24];
    misuse(k, "%s %s: value is %s, the variable %s", what, v->name, ts(value->type, t1), ts(v->type, t2));
    return bad_stmt(k);
  }
  nnc_lstmt *s = new_stmt(k, kind);
  s->var = v;
  s->value = value;
  return s;
}

nnc_lstmt *nnc_ls_let(nnc_kernel *k, const nnc_lvar *v, nnc_lexpr *value) { return set_var(k, NNC_LS_LET, v, value); }
nnc_lstmt *nnc_ls_assign(nnc_kernel *k, const nnc_lvar *v, nnc_lexpr *value) {
  return set_var(k, NNC_LS_ASSIGN, v, value);
}

nnc_lstmt *nnc_ls_atomic_add(nnc_kernel *k, const nnc_lbuf *buf, nnc_lexpr *index, nnc_lexpr *value) {
  if (!check_index(k, "atomic_add", buf, index) || !ok2(k, "atomic_add", value, value)) return bad_stmt(k);
  if (value->kind == NNC_LE_POISON) return bad_stmt(k);
  if (!nnc_lt_equal(value->type, nnc_lt(buf->dtype, 1)) || buf->dtype == NNC_U8) {
    char t[24];
    misuse(k, "atomic_add %s: value is %s (a scalar f32 or i32 of the buffer's dtype)", buf->name, ts(value->type, t));
    return bad_stmt(k);
  }
  return place_stmt(k, (nnc_lstmt){.kind = NNC_LS_ATOMIC_ADD, .buf = buf, .index = index, .value = value});
}

nnc_lstmt *nnc_ls_barrier(nnc_kernel *k) { return new_stmt(k, NNC_LS_BARRIER); }

nnc_lstmt *nnc_ls_comment(nnc_kernel *k, const char *text) {
  return place_stmt(k, (nnc_lstmt){.kind = NNC_LS_COMMENT, .text = nnc_arena_strdup(k->arena, text ? text : "")});
}

/* --- finish --------------------------------------------------------------------------------- */

static void finish_expr(nnc_kernel *k, const nnc_lexpr *e) {
  if (!e) return;
  if (e->kind == NNC_LE_SCALAR && e->scalar >= 0 && e->scalar < NNC_LSC_COUNT) k->uses_scalar[e->scalar] = true;
  if (e->kind == NNC_LE_LOAD && e->buf) ((nnc_lbuf *)e->buf)->read = true;
  finish_expr(k, e->a);
  finish_expr(k, e->b);
  finish_expr(k, e->c);
}

static void finish_stmt(nnc_kernel *k, const nnc_lstmt *s) {
  if (!s) return;
  switch (s->kind) {
  case NNC_LS_BLOCK:
    for (int i = 0; i < s->nitems; i++) finish_stmt(k, s->items[i]);
    break;
  case NNC_LS_FOR:
    finish_expr(k, s->lo);
    finish_expr(k, s->hi);
    if (s->loop == NNC_LOOP_GPU_THREAD && s->axis >= 0 && s->axis < 3 && s->lo->kind == NNC_LE_INT &&
        s->hi->kind == NNC_LE_INT) {
      int64_t count = (s->hi->ival - s->lo->ival + s->step - 1) / s->step;
      k->block_dim[s->axis] = count > 0 ? count : 1;
    }
    finish_stmt(k, s->body);
    break;
  case NNC_LS_IF:
    finish_expr(k, s->cond);
    finish_stmt(k, s->then_s);
    finish_stmt(k, s->else_s);
    break;
  case NNC_LS_ATOMIC_ADD:
    k->nondeterministic = true;
    ((nnc_lbuf *)s->buf)->read = true;
    /* fall through */
  case NNC_LS_STORE:
    ((nnc_lbuf *)s->buf)->written = true;
    finish_expr(k, s->index);
    finish_expr(k, s->value);
    finish_expr(k, s->mask);
    break;
  case NNC_LS_LET:
  case NNC_LS_ASSIGN: finish_expr(k, s->value); break;
  case NNC_LS_BARRIER:
  case NNC_LS_COMMENT: break;
  }
}

void nnc_lk_finish(nnc_kernel *k) {
  for (int i = 0; i < k->nbufs; i++) k->bufs[i]->read = k->bufs[i]->written = false;
  for (int i = 0; i < NNC_LSC_COUNT; i++) k->uses_scalar[i] = false;
  for (int i = 0; i < 3; i++) k->block_dim[i] = 1;
  k->nondeterministic = false;
  finish_stmt(k, k->body);
  k->hash = nnc_lk_hash(k);
}

void nnc_lk_error(nnc_diags *d, bool *ok, const char *who, const char *kernel, const char *fmt, ...) {
  if (ok && !*ok) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nnc_error(d, (nnc_loc){0}, "%skernel %s: %s", who, kernel, msg);
  if (ok) *ok = false;
}
