/* Simplification of programs (DESIGN §2, docs/passes.md): dead-code elimination, common
 * subexpression elimination, constant folding and the algebraic rewrites that generated
 * backward graphs need.
 *
 * Every pass reads a graph and builds a new one in an arena (nodes keep their order, so the
 * result is topologically sorted and verifies whenever the input does); the input is not
 * changed. Passes are named so the driver can run any list of them (`nnc --passes dce,cse`):
 *
 *   dce       drop nodes no output or state output needs (program inputs stay: they are the
 *             program's interface)
 *   cse       merge nodes with the same op, attributes, type, buffer name and inputs
 *   fold      constant folding: ops whose inputs are all `const` become one `const`
 *   algebra   x*1, x+0, x-0, x/1 -> x; x*0 -> 0; 0-x -> -x; -(-x) -> x; select(c,a,a) -> a;
 *             identity casts, broadcasts, reshapes, permutes and reductions -> x; a permute of a
 *             permute, a reshape of a reshape -> one; a reduction over exactly the axes a
 *             broadcast added -> the value (max) or the value times the count (sum)
 *   simplify  fold, algebra, cse, dce, repeated until nothing changes */
#ifndef NNC_PASSES_SIMPLIFY_H
#define NNC_PASSES_SIMPLIFY_H

#include <stdbool.h>

#include "../ir/ir.h"

nnc_graph *nnc_simplify_dce(nnc_arena *, const nnc_graph *);
nnc_graph *nnc_simplify_cse(nnc_arena *, const nnc_graph *);
nnc_graph *nnc_simplify_fold(nnc_arena *, const nnc_graph *);
nnc_graph *nnc_simplify_algebra(nnc_arena *, const nnc_graph *);
/* The whole pipeline to a fixed point (at most 8 rounds). */
nnc_graph *nnc_simplify_graph(nnc_arena *, const nnc_graph *);

/* Is name one of the passes above? */
bool nnc_simplify_known(const char *name);
/* Runs the comma-separated list of passes on g, in order ("" runs none and returns g). NULL
 * after reporting an unknown pass name. */
nnc_graph *nnc_simplify_passes(nnc_arena *, const nnc_graph *g, const char *passes, nnc_diags *);

#endif
