/* Loop IR (DESIGN §8): the small imperative IR every kernel lowers to and every backend (C,
 * LLVM, CUDA) prints or emits. One loop IR for all targets: a schedule chooses loop kinds,
 * vector widths and buffer scopes; the backends only translate.
 *
 * A kernel takes its global buffers and runtime scalars as parameters (no baked addresses),
 * so structurally identical kernels hash equal and are compiled once. Its body is a tree of
 * statements over expressions; both live in the arena of the compilation.
 *
 * Types: every expression has a dtype (f32, i32, u8, or the index type i64) and a lane count:
 * 1 is a scalar, >1 an explicit vector (f32x16). Vector loads and stores are contiguous from a
 * scalar index, optionally masked by a vector of lane conditions. */
#ifndef NNC_LOOP_H
#define NNC_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir.h"

#define NNC_MAX_LANES 64

/* The index type of loop variables and subscripts: i64 (loop IR only). */
#define NNC_I64 ((nnc_dtype)NNC_DTYPE_COUNT)
/* Lane conditions (vector masks, comparisons): a bool type (loop IR only). */
#define NNC_BOOL ((nnc_dtype)(NNC_DTYPE_COUNT + 1))

typedef struct nnc_ltype {
  nnc_dtype dtype;                /* NNC_F32, NNC_I32, NNC_U8, NNC_I64, NNC_BOOL */
  int lanes;                      /* 1: scalar */
} nnc_ltype;

/* --- buffers ----------------------------------------------------------------------------- */

typedef enum {
  NNC_SCOPE_GLOBAL,               /* a kernel parameter: a buffer of the program's regions */
  NNC_SCOPE_SHARED,               /* GPU shared memory of a block */
  NNC_SCOPE_LOCAL,                /* registers/stack of one thread: an accumulator tile */
  NNC_SCOPE_SCRATCH,              /* kernel-local scratch in the scratch region (packed panels) */
} nnc_scope;

typedef struct nnc_lbuf {
  int id;                         /* index in the kernel's buffer list */
  const char *name;
  nnc_dtype dtype;
  nnc_scope scope;
  int64_t size;                   /* elements; GLOBAL: at B_max (the verifier's bound) */
  bool batch_scaled;              /* GLOBAL: size is size/B_max * n at run time */
  bool read, written;             /* GLOBAL: how the kernel uses it (set by nnc_lk_finish) */
} nnc_lbuf;

/* --- expressions --------------------------------------------------------------------------- */

typedef enum {
  NNC_LE_INT,        /* ival (i64 or i32/u8 constant) */
  NNC_LE_FLOAT,      /* fval */
  NNC_LE_VAR,        /* a loop variable or a local variable: var */
  NNC_LE_SCALAR,     /* a runtime scalar parameter of the kernel: scalar (n, lr, step, seed) */
  NNC_LE_BIN,        /* op(a, b) */
  NNC_LE_UN,         /* op(a) */
  NNC_LE_SELECT,     /* a ? b : c (a bool, lanes equal or a scalar) */
  NNC_LE_FMA,        /* a * b + c, fused */
  NNC_LE_CAST,       /* a converted to the expression's type (C semantics; f32->int saturates, docs/ir.md) */
  NNC_LE_LOAD,       /* buf[a] (lanes > 1: lanes contiguous elements from a), masked by b if set */
  NNC_LE_SPLAT,      /* a scalar a broadcast to every lane */
  NNC_LE_HREDUCE,    /* op over the lanes of a (NNC_LB_ADD or NNC_LB_MAX): a scalar */
  NNC_LE_LANE,       /* the vector 0, 1, ..., lanes-1 (i64) */
  NNC_LE_THREAD,     /* GPU thread index along axis (0..2) */
  NNC_LE_BLOCK,      /* GPU block index along axis */
  NNC_LE_SHUFFLE,    /* warp shuffle xor: a from the lane (lane ^ b) */
  NNC_LE_RNG,        /* rng_uniform: philox(seed a, key ival, step b, flat index c) in [0,1) */
  NNC_LE_POISON,     /* what a constructor returns on misuse (the kernel records the error) */
} nnc_lexpr_kind;

/* The scalar operators, one row each in ir/loop_ops.def. */
typedef enum {
#define BINOP(NAME, name, dtypes, result, c, prec) NNC_LB_##NAME,
#include "loop_ops.def"
  NNC_LB_COUNT
} nnc_lbinop;

typedef enum {
#define UNOP(NAME, name, dtypes, c, cuda, llvm) NNC_LU_##NAME,
#include "loop_ops.def"
  NNC_LU_COUNT
} nnc_lunop;

/* The operand dtypes an operator takes: f32 only, any but bool, bool or integers, any. */
typedef enum { NNC_LDT_FLOAT, NNC_LDT_NUMBER, NNC_LDT_BITS, NNC_LDT_ANY } nnc_ldtypes;

/* An operator's row of ir/loop_ops.def; a NULL spelling: the printer has code of its own. */
typedef struct nnc_lunop_info {
  const char *name;
  nnc_ldtypes dtypes;
  const char *c, *cuda, *llvm;    /* the f32 function of each backend */
} nnc_lunop_info;

typedef struct nnc_lbinop_info {
  const char *name;
  nnc_ldtypes dtypes;
  bool gives_bool;                /* a comparison: the result is a lane condition */
  const char *c;                  /* the C infix operator on scalars */
  int prec;                       /* its C precedence: 4 * /, 3 + -, 2 comparisons, 1 & |; 0 none */
} nnc_lbinop_info;

extern const nnc_lunop_info nnc_lunops[NNC_LU_COUNT];
extern const nnc_lbinop_info nnc_lbinops[NNC_LB_COUNT];

typedef struct nnc_lvar {
  int id;
  const char *name;               /* "i", "k", "acc" */
  nnc_ltype type;
} nnc_lvar;

typedef struct nnc_lexpr nnc_lexpr;
struct nnc_lexpr {
  nnc_lexpr_kind kind;
  nnc_ltype type;
  int op;                         /* nnc_lbinop / nnc_lunop / hreduce op */
  int64_t ival;
  double fval;
  const nnc_lvar *var;
  int scalar;                     /* NNC_LE_SCALAR: index of the kernel's scalar parameter */
  const nnc_lbuf *buf;
  int axis;
  nnc_lexpr *a, *b, *c;
};

/* --- statements ---------------------------------------------------------------------------- */

typedef enum {
  NNC_LOOP_SERIAL,
  NNC_LOOP_PARALLEL,              /* outlined; iterations split statically over workers */
  NNC_LOOP_UNROLLED,              /* fully unrolled by the backend (static trip count) */
  NNC_LOOP_GPU_BLOCK,             /* one iteration per GPU block along axis */
  NNC_LOOP_GPU_THREAD,            /* one iteration per GPU thread along axis */
} nnc_loop_kind;

typedef enum {
  NNC_LS_BLOCK,      /* list */
  NNC_LS_FOR,        /* for var in [lo, hi) step: body */
  NNC_LS_IF,         /* if cond: then else otherwise (may be NULL) */
  NNC_LS_STORE,      /* buf[index] = value (vector: contiguous), masked by mask if set */
  NNC_LS_LET,        /* var = value, defining var (a local scalar or vector) */
  NNC_LS_ASSIGN,     /* var = value, updating a defined var (accumulators) */
  NNC_LS_ATOMIC_ADD, /* buf[index] += value atomically: non-deterministic order */
  NNC_LS_BARRIER,    /* block-wide barrier: only at the top level of a thread region */
  NNC_LS_COMMENT,    /* text, carried into generated code */
} nnc_lstmt_kind;

typedef struct nnc_lstmt nnc_lstmt;
struct nnc_lstmt {
  nnc_lstmt_kind kind;
  /* FOR */
  const nnc_lvar *var;
  nnc_lexpr *lo, *hi;
  int64_t step;
  nnc_loop_kind loop;
  int axis;                       /* GPU loops: 0, 1, 2 = x, y, z */
  nnc_lstmt *body;
  /* IF */
  nnc_lexpr *cond;
  nnc_lstmt *then_s, *else_s;
  /* STORE, ATOMIC_ADD, LET, ASSIGN */
  const nnc_lbuf *buf;
  nnc_lexpr *index, *value, *mask;
  /* BLOCK */
  nnc_lstmt **items;
  int nitems, cap;
  const char *text;               /* COMMENT */
};

/* --- kernels ------------------------------------------------------------------------------- */

typedef enum { NNC_LSC_N, NNC_LSC_LR, NNC_LSC_STEP, NNC_LSC_SEED, NNC_LSC_COUNT } nnc_lscalar;

typedef struct nnc_kernel {
  const char *name;               /* what it computes: "matmul_bias_relu_fc1" */
  const char *comment;            /* the graph nodes it implements, with source locations */
  nnc_arena *arena;
  nnc_lbuf **bufs;                /* GLOBAL buffers first, in parameter order */
  int nbufs, bufs_cap;
  int nvars;
  nnc_lstmt *body;
  bool gpu;                       /* a GPU schedule: block/thread loops at the top */
  int64_t block_dim[3];           /* GPU: threads per block (from the thread loops) */
  bool nondeterministic;          /* uses atomics */
  uint64_t hash;                  /* structural hash (nnc_lk_hash): names excluded */
  int64_t batch_max;              /* B_max: n's upper bound for the verifier (default 1) */
  bool uses_scalar[NNC_LSC_COUNT]; /* scalar parameters the body reads (set by nnc_lk_finish) */
  int nerrors;                    /* constructor misuses (mistyped operands); 0 when well built */
  const char *first_error;        /* the first one's message, reported by nnc_lk_verify */
} nnc_kernel;

/* Construction (ir/loop.c). Expressions and statements are arena-allocated. */
nnc_kernel *nnc_lk_new(nnc_arena *, const char *name);
nnc_lbuf *nnc_lk_buf(nnc_kernel *, const char *name, nnc_dtype, nnc_scope, int64_t size);
nnc_lvar *nnc_lk_var(nnc_kernel *, const char *name, nnc_ltype);

nnc_ltype nnc_lt(nnc_dtype, int lanes);
nnc_lexpr *nnc_le_int(nnc_kernel *, int64_t v);                 /* i64 */
nnc_lexpr *nnc_le_const(nnc_kernel *, nnc_ltype, double v);     /* any type; vectors splat */
nnc_lexpr *nnc_le_var(nnc_kernel *, const nnc_lvar *);
nnc_lexpr *nnc_le_scalar(nnc_kernel *, nnc_lscalar);            /* n: i64, lr: f32, step/seed: i32 */
nnc_lexpr *nnc_le_bin(nnc_kernel *, nnc_lbinop, nnc_lexpr *a, nnc_lexpr *b);
nnc_lexpr *nnc_le_un(nnc_kernel *, nnc_lunop, nnc_lexpr *a);
nnc_lexpr *nnc_le_select(nnc_kernel *, nnc_lexpr *c, nnc_lexpr *a, nnc_lexpr *b);
nnc_lexpr *nnc_le_fma(nnc_kernel *, nnc_lexpr *a, nnc_lexpr *b, nnc_lexpr *c);
nnc_lexpr *nnc_le_cast(nnc_kernel *, nnc_ltype, nnc_lexpr *a);
nnc_lexpr *nnc_le_load(nnc_kernel *, const nnc_lbuf *, nnc_lexpr *index, int lanes, nnc_lexpr *mask);
nnc_lexpr *nnc_le_splat(nnc_kernel *, nnc_lexpr *a, int lanes);
nnc_lexpr *nnc_le_hreduce(nnc_kernel *, nnc_lbinop, nnc_lexpr *a);
nnc_lexpr *nnc_le_lane(nnc_kernel *, int lanes);
nnc_lexpr *nnc_le_thread(nnc_kernel *, int axis);
nnc_lexpr *nnc_le_block(nnc_kernel *, int axis);
nnc_lexpr *nnc_le_shuffle_xor(nnc_kernel *, nnc_lexpr *a, nnc_lexpr *lane_mask);
nnc_lexpr *nnc_le_rng(nnc_kernel *, nnc_lexpr *seed, int64_t key, nnc_lexpr *step, nnc_lexpr *index);

nnc_lstmt *nnc_ls_block(nnc_kernel *);
void nnc_ls_push(nnc_kernel *, nnc_lstmt *block, nnc_lstmt *s);
nnc_lstmt *nnc_ls_for(nnc_kernel *, const nnc_lvar *, nnc_lexpr *lo, nnc_lexpr *hi, int64_t step, nnc_loop_kind,
                      nnc_lstmt *body);
nnc_lstmt *nnc_ls_if(nnc_kernel *, nnc_lexpr *cond, nnc_lstmt *then_s, nnc_lstmt *else_s);
nnc_lstmt *nnc_ls_store(nnc_kernel *, const nnc_lbuf *, nnc_lexpr *index, nnc_lexpr *value, nnc_lexpr *mask);
nnc_lstmt *nnc_ls_let(nnc_kernel *, const nnc_lvar *, nnc_lexpr *value);
nnc_lstmt *nnc_ls_assign(nnc_kernel *, const nnc_lvar *, nnc_lexpr *value);
nnc_lstmt *nnc_ls_atomic_add(nnc_kernel *, const nnc_lbuf *, nnc_lexpr *index, nnc_lexpr *value);
nnc_lstmt *nnc_ls_barrier(nnc_kernel *);
nnc_lstmt *nnc_ls_comment(nnc_kernel *, const char *text);

/* Computes read/written flags, block_dim, nondeterminism and the structural hash. */
void nnc_lk_finish(nnc_kernel *);

/* Names for printers: "f32x16", "i64", "bool"; "add", "floordiv"; "exp", "rsqrt". */
const char *nnc_lt_str(nnc_ltype, char *buf, size_t cap);
const char *nnc_lbinop_name(nnc_lbinop);
const char *nnc_lunop_name(nnc_lunop);
bool nnc_lt_equal(nnc_ltype, nnc_ltype);
/* An expression in the text form ("i*784 + k"), for messages; returns buf. */
const char *nnc_le_str(const nnc_lexpr *, char *buf, size_t cap);

/* Text form (`nnc --emit loops`), verifier, hash (ir/loop_print.c, ir/loop_verify.c). */
void nnc_lk_print(FILE *, const nnc_kernel *);
/* Checks types, that every access is inside its buffer (proved from loop bounds with n <=
 * B_max, or guarded by an enclosing if/mask), scopes (SHARED only in GPU kernels, LOCAL sizes
 * static), barriers only at the top level of a thread region, variables defined before use.
 * Reports through diags (with the kernel's name); returns true when well formed. */
bool nnc_lk_verify(const nnc_kernel *, nnc_diags *);
/* --- walks and analyses (ir/loop_walk.c) --------------------------------------------------- */

/* One walk over a statement tree: stmt sees each statement before what it holds and may return
 * false to skip it (its expressions and children); expr sees every expression node, pre-order.
 * Either may be NULL; a callback sets stop to end the walk. A walk with state of its own embeds
 * nnc_lwalk as its first member. */
typedef struct nnc_lwalk nnc_lwalk;
struct nnc_lwalk {
  bool (*stmt)(nnc_lwalk *, const nnc_lstmt *);
  void (*expr)(nnc_lwalk *, const nnc_lexpr *);
  bool stop;
};
void nnc_lwalk_stmt(nnc_lwalk *, const nnc_lstmt *);
void nnc_lwalk_expr(nnc_lwalk *, const nnc_lexpr *);
/* The loops of kind in s, in walk order: up to cap of them into out; how many there are. The
 * GPU loops give a kernel's launch geometry (the grid from its block loops, the block from its
 * thread loops). */
int nnc_lstmt_loops(const nnc_lstmt *s, nnc_loop_kind kind, const nnc_lstmt **out, int cap);
/* Whether a statement in s satisfies stmt_pred or an expression in it expr_pred (either NULL). */
bool nnc_lstmt_any(const nnc_lstmt *s, bool (*stmt_pred)(const nnc_lstmt *), bool (*expr_pred)(const nnc_lexpr *));

/* What a kernel uses, for the printers: each variable by id (NULL for an id nothing mentions),
 * how often it is read, and each buffer touched outside the bodies of parallel loops (a LOCAL
 * one there cannot be private to a worker). */
typedef struct nnc_lk_uses {
  const nnc_lvar **vars;
  int *reads;
  bool *outside_parallel;
} nnc_lk_uses;
void nnc_lk_uses_of(nnc_lk_uses *, const nnc_kernel *);
void nnc_lk_uses_free(nnc_lk_uses *);

/* What a parallel loop's body uses, by id: the environment of the function it is outlined into. */
typedef struct nnc_lcapture {
  bool *var_used, *var_defined, *var_assigned;
  bool *buf_used;
  bool scalar_used[NNC_LSC_COUNT];
} nnc_lcapture;
/* The capture of loop's body. Reports (nnc_lk_error with ok and who) what forbids running its
 * iterations apart: a variable defined outside assigned inside, a LOCAL buffer used inside and
 * outside parallel loops. */
bool nnc_lcapture_of(nnc_lcapture *, const nnc_kernel *, const nnc_lstmt *loop, const nnc_lk_uses *, nnc_diags *,
                     bool *ok, const char *who);
/* Variable v travels into the outlined body: used there, defined outside it, not the loop's own. */
bool nnc_lcapture_var(const nnc_lcapture *, const nnc_lstmt *loop, int v);
/* Buffer i travels into it as a pointer: used there and not a per-worker LOCAL array. */
bool nnc_lcapture_buf(const nnc_lcapture *, const nnc_kernel *, int i);
void nnc_lcapture_free(nnc_lcapture *);
/* Whether a CPU backend (named backend in the message) can take the kernel: well built,
 * CPU-scheduled, no SHARED buffers. The first problem is reported (nnc_lk_error with ok, who). */
/* Whether a backend can unroll loop s: static bounds, at most 1024 iterations (else reported). */
bool nnc_lk_check_unroll(const nnc_kernel *, const nnc_lstmt *s, nnc_diags *, bool *ok, const char *who);
bool nnc_lk_check_cpu(const nnc_kernel *, nnc_diags *, bool *ok, const char *who, const char *backend);

/* Reports "<who>kernel <name>: <message>": the one error format of every walk over a kernel
 * (verifier, printers, emulator). With ok, only while *ok is set, which it then clears, so a
 * printer reports its first problem only; with ok NULL, every time. */
void nnc_lk_error(nnc_diags *, bool *ok, const char *who, const char *kernel, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
uint64_t nnc_lk_hash(const nnc_kernel *);
bool nnc_lk_equal(const nnc_kernel *, const nnc_kernel *);

#endif
