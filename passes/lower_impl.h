/* The lowering's internals shared by passes/lower.c (one node per kernel),
 * passes/lower_group.c (one fused group per kernel) and passes/lower_matmul.c (the CPU matmul
 * schedule): the builder state, the expression and shape helpers, and the schedules and
 * element builders lower.c defines. Not an interface of the compiler: only those files
 * include it. */
#ifndef NNC_PASSES_LOWER_IMPL_H
#define NNC_PASSES_LOWER_IMPL_H

#include "lower.h"

enum { PARALLEL_MIN_ELEMENTS = 4096, DEFAULT_LANES = 16, DEFAULT_GPU_THREADS = 256 };

typedef struct lower {
  nnc_kernel *k;
  const nnc_lower_opts *o;
  const nnc_node *nd;
  const nnc_type *out_type;
  int64_t bmax;
  nnc_lbuf *out;
  const nnc_node **in;                /* per input (a copy: the copied value) */
  nnc_lbuf **inbuf;                   /* per input; NULL for a scalar source */
  int nin;
  int nvars;
  nnc_diags *d;
  bool failed;
  int concat_operand;                 /* concat on the CPU: the operand being copied */
  /* A fused group (passes/lower_group.c): operand loads and result stores go through these
   * hooks, so the element builders below compute a group's anchor unchanged. */
  nnc_lexpr *(*load_hook)(struct lower *L, int j, nnc_lexpr *const *idx);
  void (*store_hook)(struct lower *L, nnc_lstmt *blk, nnc_lexpr *const *idx, const nnc_node *nd, nnc_lexpr *v);
  /* Vector loads of operand j at a flat index of its own type (lower_matmul.c): whether the
   * group can give one, and the load. Unset: operand j's buffer, when it has one. */
  bool (*vec_ok_hook)(struct lower *L, int j);
  nnc_lexpr *(*vec_load_hook)(struct lower *L, int j, nnc_lexpr *flat, int lanes, nnc_lexpr *mask);
  void *group;
  const nnc_node *pool_pair;          /* maxpool values and argmax in one group: the other one */
} lower;

/* --- small expression helpers ------------------------------------------------------------- */

static inline nnc_lexpr *I(lower *L, int64_t v) { return nnc_le_int(L->k, v); }
static inline nnc_lexpr *add(lower *L, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(L->k, NNC_LB_ADD, a, b); }
static inline nnc_lexpr *sub(lower *L, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(L->k, NNC_LB_SUB, a, b); }
static inline nnc_lexpr *mul(lower *L, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(L->k, NNC_LB_MUL, a, b); }
static inline nnc_lexpr *bin(lower *L, nnc_lbinop op, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(L->k, op, a, b); }
static inline nnc_lexpr *and_(lower *L, nnc_lexpr *a, nnc_lexpr *b) { return a ? nnc_le_bin(L->k, NNC_LB_AND, a, b) : b; }
static inline nnc_lexpr *var(lower *L, const nnc_lvar *v) { return nnc_le_var(L->k, v); }

/* a*c + b with constants folded where it keeps the text readable. */
static inline nnc_lexpr *mul_const(lower *L, nnc_lexpr *a, int64_t c) {
  if (c == 1) return a;
  return mul(L, a, I(L, c));
}
static inline nnc_lexpr *add_const(lower *L, nnc_lexpr *a, int64_t c) {
  if (c == 0) return a;
  return c > 0 ? add(L, a, I(L, c)) : sub(L, a, I(L, -c));
}
static inline nnc_lexpr *clamp(lower *L, nnc_lexpr *x, int64_t lo, nnc_lexpr *hi_incl) {
  return bin(L, NNC_LB_MIN, bin(L, NNC_LB_MAX, x, I(L, lo)), hi_incl);
}

static inline nnc_lvar *new_var(lower *L, const char *prefix, nnc_ltype t) {
  return nnc_lk_var(L->k, nnc_arena_printf(L->k->arena, "%s%d", prefix, L->nvars++), t);
}
static inline nnc_lvar *idx_var(lower *L, const char *prefix) { return new_var(L, prefix, nnc_lt(NNC_I64, 1)); }

static inline void fail(lower *L, const char *what) {
  if (!L->failed) nnc_error(L->d, L->nd->loc, "cannot lower %s: %s", nnc_ops[L->nd->op].name, what);
  L->failed = true;
}

/* --- shapes --------------------------------------------------------------------------------- */

/* The run-time extent of axis i of t: n * multiple on the batch axis. */
static inline nnc_lexpr *extent(lower *L, const nnc_type *t, int i) {
  if (i == t->batch_axis) return mul_const(L, nnc_le_scalar(L->k, NNC_LSC_N), t->dims[i]);
  return I(L, t->dims[i]);
}
static inline nnc_lexpr *extent_last(lower *L, const nnc_type *t, int i) { return sub(L, extent(L, t, i), I(L, 1)); }

/* Row-major flat index of idx in t (Horner form). */
static inline nnc_lexpr *ravel(lower *L, const nnc_type *t, nnc_lexpr *const *idx) {
  if (t->rank == 0) return I(L, 0);
  nnc_lexpr *f = idx[0];
  for (int i = 1; i < t->rank; i++)
    f = add(L, i == t->batch_axis ? mul(L, f, extent(L, t, i)) : mul_const(L, f, t->dims[i]), idx[i]);
  return f;
}

static inline nnc_lexpr *total_elements(lower *L, const nnc_type *t) {
  nnc_lexpr *e = NULL;
  int64_t stat = 1;
  for (int i = 0; i < t->rank; i++)
    if (i == t->batch_axis) e = nnc_le_scalar(L->k, NNC_LSC_N), stat *= t->dims[i];
    else stat *= t->dims[i];
  return e ? mul_const(L, e, stat) : I(L, stat);
}

/* Builds the statements of one result element at multi-index idx into blk. */
typedef void (*element_fn)(lower *L, nnc_lstmt *blk, nnc_lexpr **idx);

/* From passes/lower.c. */
element_fn nnc_lw_element_builder(nnc_op op);
nnc_lexpr *nnc_lw_elementwise_value(lower *L, const nnc_node *nd, nnc_lexpr **v);
nnc_lexpr *nnc_lw_load_flat(lower *L, int j, nnc_lexpr *f, int lanes, nnc_lexpr *mask);
nnc_lexpr *nnc_lw_const_value(lower *L, const nnc_node *nd);
nnc_lexpr *nnc_lw_reduce_init(lower *L, nnc_dtype dt, bool is_max);
nnc_lexpr *nnc_lw_combine(lower *L, nnc_lexpr *acc, nnc_lexpr *x, bool is_max);
/* Index maps (broadcast, permute, slice, pad): the operand index at result index idx, and for
 * pad whether it is inside (NULL: always) and the fill outside. */
bool nnc_lw_operand_index(lower *L, const nnc_node *nd, nnc_lexpr *const *idx, nnc_lexpr **ai, nnc_lexpr **inside);
nnc_lexpr *nnc_lw_pad_fill(lower *L, const nnc_node *nd, nnc_lexpr *inside, nnc_lexpr *v);
bool nnc_lw_reduced_axis(const nnc_node *nd, int k);
/* The iteration space over t: CPU nested loops (outermost parallel when work allows), GPU the
 * flat index over blocks and threads; fn builds each element. */
void nnc_lw_cpu_nest(lower *L, nnc_lstmt *blk, const nnc_type *t, int64_t work, element_fn fn);
void nnc_lw_gpu_flat(lower *L, nnc_lstmt *blk, const nnc_type *t, element_fn fn);
nnc_lstmt *nnc_lw_serial_loops(lower *L, nnc_lstmt *blk, int count, nnc_lexpr *const *ext, nnc_lexpr **vars_out);
bool nnc_lw_wants_parallel(lower *L, const nnc_type *t, int64_t work_per_element);
int64_t nnc_lw_work_per_element(const nnc_node *nd);
int nnc_lw_lanes(const nnc_lower_opts *o);
const char *nnc_lw_kernel_comment(nnc_arena *a, const nnc_node *nd);

/* From passes/lower_matmul.c: the register-tiled CPU schedule of L->nd, a matmul, built into
 * the kernel's body; false (nothing built) when it does not apply: the GPU, scalar loops, or
 * operands that cannot be read as vectors (lower.c's loops then lower it). */
bool nnc_lw_matmul_cpu(lower *L);
/* The same for conv2d and its input and weight gradients as implicit GEMM (one group). */
bool nnc_lw_conv_cpu(lower *L);

#endif
