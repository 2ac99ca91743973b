/* The reference interpreter (DESIGN §6): runs a program of the graph IR op by op with one
 * hand-written loop per primitive, in f32 or f64. It is the oracle for every backend and for
 * gradient checks, so it shares no compute code with lowering and is never the fast path.
 *
 * Values are held as doubles whatever their dtype. In F32 mode every float result (including
 * each partial sum of a reduction or contraction) is rounded to float, which is exactly IEEE
 * float arithmetic for + - * / sqrt; in F64 mode nothing is rounded. i32 and u8 values are
 * exact in both modes and their arithmetic wraps (docs/ir.md, "Reference semantics"). */
#ifndef NNC_INTERP_H
#define NNC_INTERP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir.h"

typedef enum { NNC_INTERP_F32, NNC_INTERP_F64 } nnc_interp_precision;

/* A dense row-major host tensor. `n` is the batch its batch axis is multiplied by (ignored
 * when type.batch_axis < 0). f32 elements are stored as float, or as double when `wide`
 * is set (gradient checks perturb inputs in double); i32 as int32_t, u8 as uint8_t. */
typedef struct nnc_tensor {
  nnc_type type;
  int64_t n;
  bool wide;
  void *data;
} nnc_tensor;

/* Elements of a tensor at its batch n; -1 on overflow. */
int64_t nnc_tensor_elements(const nnc_tensor *);
/* Bytes per element as stored (8 for a wide f32). */
size_t nnc_tensor_elem_size(const nnc_tensor *);
/* Element i as a double (any dtype, any storage). */
double nnc_tensor_get(const nnc_tensor *, int64_t i);
/* Allocates zeroed data for t's type at batch n (nnc_xmalloc); free with nnc_tensor_free. */
nnc_tensor nnc_tensor_alloc(nnc_type t, int64_t n, bool wide);
void nnc_tensor_free(nnc_tensor *);

/* One value a program call binds: an input ("x", "y"), a param or state buffer (by its
 * name), or a runtime scalar ("lr", "step", "seed": rank-0 tensors). The interpreter only
 * reads `value->data`. */
typedef struct nnc_interp_binding {
  const char *name;
  const nnc_tensor *value;
} nnc_interp_binding;

typedef struct nnc_interp_env {
  int64_t n;                              /* actual batch, 1 <= n <= module->batch_max */
  const nnc_interp_binding *bindings;
  int nbindings;
} nnc_interp_env;

/* Runs graph g of module m under env. On success fills outputs[i] for each g->outputs[i]
 * and state_outputs[i] for each g->state_outputs[i] (either array may be NULL when the graph
 * has none) with freshly allocated tensors: f32 results are wide in F64 mode. The caller
 * frees them with nnc_tensor_free. On failure (a missing or mistyped binding, a bad batch,
 * an index out of range in gather/scatter_add, a malformed node) writes a message naming
 * the problem to err, allocates nothing and returns false. */
bool nnc_interp_run(const nnc_module *m, const nnc_graph *g, nnc_interp_precision prec,
                    const nnc_interp_env *env, nnc_tensor *outputs, nnc_tensor *state_outputs,
                    char *err, size_t errcap);

#endif
