/* Graph IR: typed, shaped, functional dataflow graphs (DESIGN §4).
 *
 * A node is one primitive (ir/ops.def) with its inputs, attributes, one result type and the
 * source location it came from. Nodes live in a graph in topological order; a graph with its
 * named outputs is a program (forward, train_step, eval_step, predict). Everything is
 * allocated in the module's arena and freed at once.
 *
 * Shapes are static except for the batch: at most one axis of a type is a multiple of the
 * runtime batch B (`batch_axis`), whose dims[] entry is that multiple (usually 1: `B`). */
#ifndef NNC_IR_H
#define NNC_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "diag.h"

#define NNC_MAX_RANK 8
#define NNC_MAX_ATTRS 6
/* The largest tensor a model may declare (elements, with B counted as B_max); larger shapes
 * are a diagnostic, never an allocation. */
#define NNC_MAX_ELEMENTS (INT64_C(1) << 34)

typedef enum { NNC_F32, NNC_I32, NNC_U8, NNC_DTYPE_COUNT } nnc_dtype;

typedef enum {
#define OP(name, kind, arity, dtypes, loop, lang, compute) NNC_OP_##name,
#include "ops.def"
#undef OP
  NNC_OP_COUNT
} nnc_op;

typedef enum {
  NNC_KIND_SOURCE, NNC_KIND_GENERATOR, NNC_KIND_UNARY, NNC_KIND_BINARY, NNC_KIND_TERNARY,
  NNC_KIND_INDEX_MAP, NNC_KIND_REDUCE, NNC_KIND_CONTRACTION, NNC_KIND_OPAQUE
} nnc_op_kind;

typedef enum {
#define ATTR(name) NNC_ATTR_##name,
#include "attrs.def"
#undef ATTR
  NNC_ATTR_COUNT
} nnc_attr_key;

typedef enum { NNC_CMP_LT, NNC_CMP_LE, NNC_CMP_GT, NNC_CMP_GE, NNC_CMP_EQ, NNC_CMP_NE } nnc_cmp;
/* Whether a how b holds (how: an nnc_cmp; NaN compares unequal to everything). */
bool nnc_cmp_holds(int64_t how, double a, double b);

/* Which dtypes an op takes and gives (the `dtypes` column of ops.def). */
typedef enum {
  NNC_DTYPES_OWN, NNC_DTYPES_FLOAT, NNC_DTYPES_SIGNED, NNC_DTYPES_NUMERIC, NNC_DTYPES_CMP
} nnc_dtype_rule;

typedef struct nnc_op_info {
  const char *name;
  nnc_op_kind kind;
  int arity;            /* -1: variadic */
  nnc_dtype_rule dtypes;
  const char *compute;
} nnc_op_info;

extern const nnc_op_info nnc_ops[NNC_OP_COUNT];

typedef struct nnc_type {
  nnc_dtype dtype;
  int rank;
  int batch_axis;                 /* -1: no batch axis */
  int64_t dims[NNC_MAX_RANK];     /* dims[batch_axis] multiplies B */
} nnc_type;

/* An attribute: a list of integers (most) or one number (value). */
typedef struct nnc_attr {
  nnc_attr_key key;
  int n;                          /* number of ints; 0 with has_num for a plain number */
  bool has_num;
  double num;
  int64_t ints[NNC_MAX_RANK];
} nnc_attr;

typedef struct nnc_node nnc_node;
struct nnc_node {
  int id;                         /* position in the graph's node order at creation */
  nnc_op op;
  nnc_type type;
  int ninputs;
  nnc_node **inputs;
  int nattrs;
  nnc_attr attrs[NNC_MAX_ATTRS];
  const char *name;               /* input, param, state, scalar: the buffer's name */
  nnc_loc loc;                    /* where in the model file it came from */
  void *aux;                      /* private to the pass running now */
};

/* Initialization of a parameter, resolved at elaboration (PyTorch's defaults become
 * uniform bounds computed from fan-in). */
typedef enum { NNC_INIT_ZEROS, NNC_INIT_ONES, NNC_INIT_CONST, NNC_INIT_UNIFORM, NNC_INIT_NORMAL } nnc_init_kind;
typedef struct nnc_init {
  nnc_init_kind kind;
  double a, b;                    /* uniform: [a, b); normal: mean a, std b; const: a */
} nnc_init;

/* A persistent buffer of the model: a parameter or a piece of state (running stats). */
typedef struct nnc_param {
  const char *name;               /* PyTorch state_dict name: "conv1.weight" */
  nnc_type type;
  nnc_init init;
  bool frozen;                    /* no gradient, no update */
  bool is_state;                  /* not trained (BatchNorm running stats, num_batches_tracked) */
  int tied_to;                    /* -1, or the index of the param this one shares storage with */
  nnc_loc loc;
} nnc_param;

typedef struct nnc_output {
  const char *name;               /* "logits", "loss", or a state buffer's name for state outputs */
  nnc_node *value;
} nnc_output;

typedef struct nnc_graph {
  const char *name;               /* "forward", "train_step", "eval_step", "predict" */
  nnc_arena *arena;
  nnc_node **nodes;
  int nnodes, cap;
  nnc_output *outputs;            /* the program's results, in order */
  int noutputs, outputs_cap;
  nnc_output *state_outputs;      /* value -> persistent buffer of the same name */
  int nstate, state_cap;
  int loss;                       /* index into outputs of the objective, or -1 */
} nnc_graph;

/* Training configuration from the `train { }` block (fields the runtime reads). */
typedef struct nnc_train_cfg {
  bool present;
  const char *data_kind;          /* "fashion_mnist", "mnist", "cifar10", "csv", "npy", ... */
  const char *data_path;
  nnc_loc data_loc;
  const char *optimizer;          /* "SGD", "Adam", "AdamW" */
  double lr, momentum, dampening, weight_decay, beta1, beta2, eps;
  bool nesterov;
  const char *schedule;           /* "constant", "step", "exponential", "cosine", ... */
  double sched_gamma, sched_step, sched_warmup;
  int64_t batch, epochs, seed;
  double clip_grad_norm;          /* 0: off */
  int64_t augment_crop;           /* images: random crop after zero padding by this much; 0: off */
  bool augment_flip;              /* images: random horizontal flip */
} nnc_train_cfg;

typedef struct nnc_module {
  const char *name;               /* the model's name */
  nnc_arena *arena;
  nnc_param *params;
  int nparams, params_cap;
  nnc_graph *forward;             /* inputs and params -> outputs (and the loss) */
  nnc_graph **programs;           /* the other programs (train_step, eval_step, predict), in order */
  int nprograms, programs_cap;
  int64_t batch_max;              /* B_max: the compiled batch size */
  nnc_train_cfg train;
} nnc_module;

/* --- types ------------------------------------------------------------------------------ */
const char *nnc_dtype_name(nnc_dtype);
bool nnc_dtype_from_name(const char *, nnc_dtype *);
size_t nnc_dtype_size(nnc_dtype);
/* Whether a constant of the dtype can be v: any number for f32 (infinities included), a whole
 * number in range for the integer types. */
bool nnc_dtype_holds(nnc_dtype, double v);
nnc_type nnc_type_make(nnc_dtype, int rank, const int64_t *dims, int batch_axis);
nnc_type nnc_type_scalar(nnc_dtype);
bool nnc_type_equal(const nnc_type *, const nnc_type *);
bool nnc_shape_equal(const nnc_type *, const nnc_type *);
/* Elements with B = batch (batch_max for planning, n at run time); -1 on overflow. */
int64_t nnc_type_elements(const nnc_type *, int64_t batch);
/* "f32[B,1,28,28]"; writes at most cap bytes, returns buf. */
char *nnc_type_str(const nnc_type *, char *buf, size_t cap);

/* --- graphs and nodes -------------------------------------------------------------------- */
nnc_module *nnc_module_new(const char *name);
void nnc_module_free(nnc_module *);
nnc_graph *nnc_graph_new(nnc_arena *, const char *name);
/* Deep copy of src (nodes, outputs, state outputs, loss) into arena a, named name (NULL: src's
 * name); NULL when src is malformed (an input or output that is not an earlier node). */
nnc_graph *nnc_graph_clone(nnc_arena *a, const nnc_graph *src, const char *name);
/* Appends a node; the caller sets type (or calls nnc_infer_type). */
nnc_node *nnc_node_new(nnc_graph *, nnc_op, int ninputs, nnc_node *const *inputs, nnc_loc);
void nnc_node_set_ints(nnc_node *, nnc_attr_key, int n, const int64_t *v);
void nnc_node_set_int(nnc_node *, nnc_attr_key, int64_t v);
void nnc_node_set_num(nnc_node *, nnc_attr_key, double v);
const nnc_attr *nnc_node_attr(const nnc_node *, nnc_attr_key);
int64_t nnc_node_int(const nnc_node *, nnc_attr_key, int64_t dflt);
double nnc_node_num(const nnc_node *, nnc_attr_key, double dflt);
void nnc_graph_add_output(nnc_graph *, const char *name, nnc_node *);
void nnc_graph_add_state_output(nnc_graph *, const char *name, nnc_node *);
int nnc_module_add_param(nnc_module *, const nnc_param *);
int nnc_module_find_param(const nnc_module *, const char *name);
/* Appends a program besides forward (ir/program.c). */
void nnc_module_add_program(nnc_module *, nnc_graph *);
/* The module's programs: forward first (when set), then the others; i in [0, count). */
int nnc_module_program_count(const nnc_module *);
nnc_graph *nnc_module_program(const nnc_module *, int i);
const char *nnc_attr_name(nnc_attr_key);
bool nnc_attr_from_name(const char *, nnc_attr_key *);
bool nnc_op_from_name(const char *, nnc_op *);

/* --- parameter initialization (ir/init.c) ------------------------------------------------
 * Fills out (count elements of p's dtype) with p->init's values drawn from Philox4x32-10 keyed
 * by (seed, index): reproducible, and independent of every other param (docs/training.md). */
void nnc_param_init_values(const nnc_param *p, uint32_t seed, int index, void *out, int64_t count);

/* --- shape rules (ir/shape.c) ------------------------------------------------------------
 * Computes a node's result type from its inputs and attributes. On a violation returns false
 * and writes a message naming both shapes into err (the caller reports it with locations). */
bool nnc_infer_type(nnc_node *, char *err, size_t errcap);
/* The same; *too_large tells whether the violation was the size limit (NNC_MAX_ELEMENTS per
 * tensor, each dimension included): a size the user chose, not a malformed graph. */
bool nnc_infer_type_sized(nnc_node *, char *err, size_t errcap, bool *too_large);
/* Whether t's dims and element count (B = 1) are within NNC_MAX_ELEMENTS. */
bool nnc_type_within_limit(const nnc_type *t);

/* --- verifier (ir/verify.c) --------------------------------------------------------------
 * Checks topological order, arity, attributes, types against the shape rules, outputs.
 * Reports every problem through diags; returns true when the graph is well formed. */
bool nnc_verify_graph(const nnc_graph *, nnc_diags *);
bool nnc_verify_module(const nnc_module *, nnc_diags *);

/* --- text form (ir/print.c, ir/parse.c) -------------------------------------------------- */
#include <stdio.h>
void nnc_print_module(FILE *, const nnc_module *);
void nnc_print_graph(FILE *, const nnc_module *, const nnc_graph *);
/* Parses the text form written by nnc_print_module. Errors go to diags with locations in
 * the text; returns NULL on error. */
nnc_module *nnc_parse_module(const nnc_source *, nnc_diags *);

#endif
