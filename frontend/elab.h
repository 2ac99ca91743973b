/* Elaboration internals, shared by frontend/elab.c (core: environment, statements, inputs,
 * hyperparameters, the train block), frontend/builtins.c (ops and composites) and
 * frontend/layers.c (built-in and user-defined layers).
 *
 * Elaboration evaluates the syntax tree like an interpreter whose tensor values are graph
 * nodes. Every expression yields a value; a failed expression yields a poison value after
 * exactly one diagnostic, and everything computed from poison is silently poison. */
#ifndef NNC_ELAB_H
#define NNC_ELAB_H

#include "frontend.h"

typedef struct el_layer el_layer;
typedef struct el_scope el_scope;

typedef enum { V_POISON, V_NONE, V_NUM, V_BOOL, V_STR, V_TENSOR, V_LIST, V_TUPLE, V_LAYER } el_kind;

typedef struct el_val {
  el_kind kind;
  nnc_loc loc;              /* where the value was defined (named in notes) */
  double num;               /* V_NUM, V_BOOL */
  bool is_int;
  const char *str;          /* V_STR */
  nnc_node *node;           /* V_TENSOR */
  struct el_val *items;     /* V_LIST, V_TUPLE */
  int nitems;
  el_layer *layer;          /* V_LAYER */
} el_val;

typedef enum { E_HPARAM, E_VAR, E_LAYER } el_entry_kind;

typedef struct el_entry {
  const char *name;
  el_entry_kind kind;
  el_val val;
  nnc_loc loc;              /* where the name was introduced */
  const nnc_ast *hparam;    /* E_HPARAM: its declaration (resolved on demand) */
  int state;                /* E_HPARAM: 0 unresolved, 1 resolving, 2 done */
} el_entry;

struct el_scope {
  el_scope *parent;
  el_entry *entries;
  int n, cap;
};

typedef enum {
  LK_LINEAR, LK_CONV2D, LK_BATCHNORM2D, LK_LAYERNORM, LK_DROPOUT, LK_EMBEDDING,
  LK_RNN, LK_LSTM, LK_GRU, LK_MHA, /* in el_layer_names order */
  LK_USER, LK_REPEAT
} el_layer_kind;

/* A weight init given by `init=`; fan-based schemes resolve when the weight's shape is known. */
typedef enum { IS_DEFAULT, IS_FIXED, IS_XAVIER_UNIFORM, IS_XAVIER_NORMAL, IS_KAIMING_UNIFORM, IS_KAIMING_NORMAL } el_init_scheme;

#define EL_MAX_PARAMS 32

struct el_layer {
  el_layer_kind kind;
  const char *name;         /* full prefix of its parameters: "fc1", "blk.fc" */
  const char *ctor;         /* "Linear", or the user layer's name */
  nnc_loc loc;              /* the declaration */
  /* configuration of the built-in layers */
  int64_t in, out;          /* in = 0: inferred at first use */
  int64_t k[2], stride[2], pad[2], dil[2], groups;
  bool bias;
  double eps, momentum, p;
  int64_t norm_shape[NNC_MAX_RANK];
  int nnorm;
  int64_t num_layers, heads;  /* RNN/LSTM/GRU stacked layers; MultiheadAttention heads */
  bool batch_first, causal, relu; /* recurrent and attention layers; relu: RNN nonlinearity */
  el_init_scheme init_scheme;
  nnc_init init;            /* IS_FIXED */
  /* parameters, once their shapes are known */
  bool materialized;
  bool oversized;           /* a parameter past the size limit (reported once) */
  int nparams;
  int param[EL_MAX_PARAMS]; /* module param indices */
  const char *pname[EL_MAX_PARAMS];
  bool frozen;
  bool used;
  nnc_loc first_use;
  nnc_type first_type;
  /* weight tying requested before this layer's params existed: suffix -> source param */
  const char *tie_suffix[EL_MAX_PARAMS];
  int tie_src[EL_MAX_PARAMS];
  nnc_loc tie_loc[EL_MAX_PARAMS];
  int nties;
  el_layer *parent;
  int seq;                  /* declaration order, for PyTorch's parameter order */
  /* user-defined layers */
  const nnc_ast *def;
  el_scope *scope;          /* its arguments and inner layers */
  el_layer **children;
  int nchildren;
  int busy;                 /* forward running: a layer calling itself */
  /* repeat(N, Layer(...)): children are the N instances, applied in sequence */
};

/* Bounds on unrolling (for loops, repeat): beyond them elaboration stops with a diagnostic. */
#define EL_MAX_GRAPH_NODES 1000000
#define EL_MAX_ITERATIONS 1000000

typedef struct el_ctx {
  nnc_module *m;
  nnc_arena *arena;
  nnc_graph *g;
  nnc_diags *d;
  const nnc_elab_opts *opts;
  nnc_mode mode;
  const nnc_ast *file;
  el_scope *globals;
  nnc_node *nbatch, *seed, *step;
  nnc_node **pnodes;        /* param node per module param index, created at first use */
  int pnodes_cap;
  int dropout_sites;
  el_layer **layers;        /* every instance, for the unused-layer warning */
  int nlayers, layers_cap;
  int layer_seq;
  const nnc_ast *inst_stack[64];
  int ninst;
  int depth;                /* expression nesting */
  int64_t iterations;       /* loop iterations unrolled so far */
  bool too_big;             /* an unrolling limit was hit and reported */
  int loop_depth;
  bool have_loss;
  bool has_return;
  nnc_loc loss_loc;
} el_ctx;

/* --- core (elab.c) --- */
el_val el_poison(void);
el_val el_num(double v, bool is_int, nnc_loc);
el_val el_tensor(nnc_node *, nnc_loc);
el_val el_eval(el_ctx *, el_scope *, const nnc_ast *);
const char *el_type_str(el_ctx *, const nnc_type *);
const char *el_val_desc(el_ctx *, const el_val *);
const char *el_non_int_desc(el_ctx *, const el_val *);
/* --set NAME=VALUE for name, or NULL; and its value as a number (an error without location when
 * it is not one). */
nnc_override *el_find_override(el_ctx *, const char *name);
bool el_override_number(el_ctx *, nnc_override *, el_val *out);
/* The file's train block elaborated into the module's train config, with PyTorch's defaults and
 * the --set overrides (frontend/train_block.c); the block, or NULL when the file has none. */
const nnc_ast *el_train_block(el_ctx *);
el_entry *el_lookup(el_scope *, const char *);
el_entry *el_define(el_ctx *, el_scope *, const char *name, el_entry_kind, el_val, nnc_loc);
el_scope *el_scope_new(el_ctx *, el_scope *parent);
const char *el_suggest(el_scope *, const char *name, const char *const *extra);
void el_internal(el_ctx *, nnc_loc, const char *what);

/* --- argument binding (builtins.c) --- */
#define EL_MAX_ARGS 12
typedef struct el_sig {
  const char *name;
  const char *params[EL_MAX_ARGS]; /* positional order; keyword names */
  int nreq;                         /* leading params that must be given */
} el_sig;
/* Matches a call's arguments to sig; slots get the argument expressions (NULL: not given).
 * Reports wrong counts and unknown or repeated keywords; false then. */
bool el_bind_args(el_ctx *, const el_sig *, const nnc_ast *call, int first, const nnc_ast **slots);
bool el_get_int(el_ctx *, el_scope *, const nnc_ast *, const char *what, int64_t lo, int64_t hi, int64_t *out);
bool el_get_num(el_ctx *, el_scope *, const nnc_ast *, const char *what, double lo, double hi, double *out);
bool el_get_bool(el_ctx *, el_scope *, const nnc_ast *, const char *what, bool *out);
bool el_get_pair(el_ctx *, el_scope *, const nnc_ast *, const char *what, int64_t lo, int64_t *out);
bool el_get_tensor(el_ctx *, el_scope *, const nnc_ast *, el_val *out);
bool el_need_float(el_ctx *, const el_val *, const char *what, nnc_loc);

/* --- graph building (builtins.c): NULL in, NULL out; infer failures are internal errors --- */
nnc_node *el_new(el_ctx *, nnc_op, int n, nnc_node *const *in, nnc_loc);
nnc_node *el_done(el_ctx *, nnc_node *);
nnc_node *el_const(el_ctx *, const nnc_type *, double v, nnc_loc);
nnc_node *el_unary(el_ctx *, nnc_op, nnc_node *, nnc_loc);
nnc_node *el_binary(el_ctx *, nnc_op, nnc_node *, nnc_node *, nnc_loc);
nnc_node *el_scalar_op(el_ctx *, nnc_op, nnc_node *, double v, nnc_loc);
nnc_node *el_bcast(el_ctx *, nnc_node *, const nnc_type *to, const int *axes, nnc_loc);
nnc_node *el_bcast_right(el_ctx *, nnc_node *, const nnc_type *to, nnc_loc);
nnc_node *el_reduce(el_ctx *, nnc_op, nnc_node *, const int *axes, int n, nnc_loc);
nnc_node *el_reshape(el_ctx *, nnc_node *, const nnc_type *, nnc_loc);
nnc_node *el_cast(el_ctx *, nnc_node *, nnc_dtype, nnc_loc);
nnc_node *el_cmp(el_ctx *, nnc_cmp, nnc_node *, nnc_node *, nnc_loc);
nnc_node *el_matmul(el_ctx *, nnc_node *, nnc_node *, bool ta, bool tb, nnc_loc);
nnc_node *el_nbatch(el_ctx *, nnc_loc);
nnc_node *el_count(el_ctx *, const nnc_type *, const int *axes, int n, nnc_loc);
nnc_node *el_mean(el_ctx *, nnc_node *, const int *axes, int n, nnc_loc);
nnc_node *el_softmax(el_ctx *, nnc_node *, int axis, bool log, nnc_loc);
nnc_node *el_dropout(el_ctx *, nnc_node *, double p, nnc_loc);
nnc_node *el_scalar_source(el_ctx *, const char *name, nnc_loc);

/* User-level elementwise arithmetic with numpy broadcasting and source-level diagnostics. */
el_val el_arith(el_ctx *, nnc_op, const el_val *, const el_val *, const char *opname, nnc_loc);
/* Both operands as tensors of one broadcast type (numbers become constants); false after a
 * diagnostic, or silently for poison. */
bool el_broadcast_pair(el_ctx *, const el_val *, const el_val *, const char *opname, nnc_loc, nnc_node **x, nnc_node **y);
bool el_is_builtin_op(const char *name);
el_val el_call_builtin(el_ctx *, el_scope *, const char *name, const nnc_ast *call);
extern const char *const el_builtin_names[];

/* The numpy broadcast of two types (dtype of a); false when they do not broadcast. */
bool el_broadcast_type(const nnc_type *a, const nnc_type *b, nnc_type *out);
typedef el_val (*el_op_fn)(el_ctx *, el_scope *, const nnc_ast *call, const nnc_ast **slot, const el_sig *);

/* --- sequences (seq_ops.c): indexing, slicing, stacking and the ops sequence models use --- */
el_val el_index(el_ctx *, el_scope *, const nnc_ast *e);
/* x[start:stop:step] along axis (other axes whole). */
nnc_node *el_slice_axis(el_ctx *, nnc_node *x, int axis, int64_t start, int64_t stop, int64_t step, nnc_loc);
/* x[..., i, ...] along axis: the axis removed. */
nnc_node *el_take(el_ctx *, nnc_node *x, int axis, int64_t i, nnc_loc);
/* The tensors (one type) stacked along a new axis. */
nnc_node *el_stack(el_ctx *, nnc_node *const *xs, int n, int axis, nnc_loc);
/* Concatenation of any number of tensors along axis (nested when more than a node takes). */
nnc_node *el_concat(el_ctx *, nnc_node *const *xs, int n, int axis, nnc_loc);
nnc_node *el_sigmoid(el_ctx *, nnc_node *x, nnc_loc);
/* u8 [m, n]: 1 where column - row > diagonal (above it), for causal masks and tril/triu. */
nnc_node *el_above_diagonal(el_ctx *, int64_t m, int64_t n, int64_t diagonal, nnc_loc);
/* False (after one diagnostic) once the graph or the unrolled iterations pass their bounds. */
bool el_within_limits(el_ctx *, nnc_loc);
el_val el_op_stack(el_ctx *, el_scope *, const nnc_ast *, const nnc_ast **, const el_sig *);
el_val el_op_split(el_ctx *, el_scope *, const nnc_ast *, const nnc_ast **, const el_sig *);
el_val el_op_arange(el_ctx *, el_scope *, const nnc_ast *, const nnc_ast **, const el_sig *);
el_val el_op_tril(el_ctx *, el_scope *, const nnc_ast *, const nnc_ast **, const el_sig *);
el_val el_op_masked_fill(el_ctx *, el_scope *, const nnc_ast *, const nnc_ast **, const el_sig *);
el_val el_op_where(el_ctx *, el_scope *, const nnc_ast *, const nnc_ast **, const el_sig *);
el_val el_op_fill(el_ctx *, el_scope *, const nnc_ast *, const nnc_ast **, const el_sig *);

/* --- layers (layers.c) --- */
bool el_is_builtin_layer(const char *name);
extern const char *const el_layer_names[];
el_layer *el_instantiate(el_ctx *, el_scope *, const char *name, const char *prefix, const nnc_ast *call);
el_val el_apply_layer(el_ctx *, el_scope *, el_layer *, const nnc_ast *call);
/* Applies a layer to evaluated inputs (repeat passes each instance's result to the next). */
el_val el_apply_layer_vals(el_ctx *, el_layer *, const el_val *args, int nargs, nnc_loc);
int el_add_param(el_ctx *, el_layer *, const char *suffix, nnc_type, nnc_init, bool is_state, nnc_loc);
nnc_node *el_pnode(el_ctx *, el_layer *, const char *suffix, nnc_loc);
bool el_check_in(el_ctx *, el_layer *, int64_t got, const char *what, const el_val *x, nnc_loc);

/* --- recurrent and attention layers (seq_layers.c) --- */
bool el_declare_seq_layer(el_ctx *, el_scope *, el_layer *, const nnc_ast *call);
void el_materialize_seq_layer(el_ctx *, el_layer *);
bool el_materialize(el_ctx *, el_layer *);
el_val el_call_seq_layer(el_ctx *, el_layer *, const el_val *args, int nargs, nnc_loc);
void el_freeze_layer(el_ctx *, el_layer *);
nnc_node *el_param_node(el_ctx *, int param, nnc_loc);
el_layer *el_find_layer_path(el_ctx *, el_scope *, const nnc_ast *target, const char **suffix);
void el_tie(el_ctx *, el_scope *, const nnc_ast *dst, const nnc_ast *src);
bool el_parse_init(el_ctx *, el_scope *, const nnc_ast *, el_layer *);
void el_exec_block(el_ctx *, el_scope *, const nnc_ast *block, el_val *ret, bool in_model);
void el_exec_layer_body(el_ctx *, el_scope *, const nnc_ast *block, const char *prefix, el_layer *owner);

#endif
