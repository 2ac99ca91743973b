/* The C-family printer: what the C printer (codegen/c.c) and the CUDA printer (codegen/cuda.c)
 * print alike. Both write C-syntax text from the loop IR; they differ in types, vectors, math
 * helpers and GPU constructs, which stay in each printer, and in a few spellings, which a
 * dialect gives. Shared here, so they cannot drift apart again: operator precedence and
 * parenthesization (f32 + and * do not associate, so a + (b + c) keeps its parentheses),
 * constants, calls, the scalar ?:, comments, and the naming of buffers and variables as
 * identifiers the dialect allows.
 *
 * A printer embeds nnc_cf as its first member and passes its own expression printer in the
 * dialect; nnc_cf_expr_prec calls back into it. */
#ifndef NNC_CG_C_FAMILY_H
#define NNC_CG_C_FAMILY_H

#include <stdbool.h>
#include <stdio.h>

#include "ir/loop.h"

typedef struct nnc_cf nnc_cf;

/* A table by loop-IR dtype (f32, i32, u8, i64, bool) and its entry for dt (bool's for any other). */
typedef const char *const nnc_cf_by_dtype[NNC_DTYPE_COUNT + 2];
static inline const char *nnc_cf_of_dtype(nnc_cf_by_dtype table, nnc_dtype dt) {
  return (unsigned)dt < NNC_DTYPE_COUNT + 2 ? table[dt] : table[NNC_BOOL];
}

typedef struct nnc_cf_dialect {
  const char *who;                            /* "C backend: ": prefixes its diagnostics */
  void (*expr)(nnc_cf *, const nnc_lexpr *);  /* the printer's expression printer */
  void (*stmt)(nnc_cf *, const nnc_lstmt *);  /* the printer's statement printer */
  const char *index_type;                     /* of a serial loop's variable */
  const char *nan, *inf, *neg_inf;            /* f32 constants C has no literal for */
  const char *bool_true, *bool_false;         /* bool constants */
  const char *const *reserved;                /* words names must avoid, NULL-terminated */
  bool cxx;                                   /* C++ rules: no "__" anywhere in a name */
} nnc_cf_dialect;

struct nnc_cf {
  const nnc_cf_dialect *dialect;
  const nnc_kernel *k;
  nnc_diags *d;
  bool ok;                                    /* no error yet: the printer reports its first */
  FILE *out;
  int depth;                                  /* indentation, two spaces each */
  char **vname, **bname;                      /* identifiers by var id and by buffer id */
  const nnc_lvar **vars;                      /* by var id (NULL: unused) */
};

#define nnc_cf_error(cf, ...) nnc_lk_error((cf)->d, &(cf)->ok, (cf)->dialect->who, (cf)->k->name, __VA_ARGS__)

void nnc_cf_emit(nnc_cf *, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The indentation of a new line. */
void nnc_cf_line(nnc_cf *);

/* C precedence of a scalar operator expression: 4 * /, 3 + -, 2 comparisons, 9 what prints as
 * a call or a primary (helpers, wrapping integer arithmetic, parenthesized logic). */
int nnc_cf_prec(const nnc_lexpr *);
/* e, parenthesized when its precedence is below min. */
void nnc_cf_expr_prec(nnc_cf *, const nnc_lexpr *e, int min);
/* fn(a[, b[, c]]) */
void nnc_cf_call(nnc_cf *, const char *fn, const nnc_lexpr *a, const nnc_lexpr *b, const nnc_lexpr *c);
/* A scalar a op b with the operator's C spelling, for nnc_cf_prec(e) < 9. */
void nnc_cf_infix(nnc_cf *, const nnc_lexpr *e);
/* Scalar and/or: && || on bools, & | on integers, parenthesized. */
void nnc_cf_logic(nnc_cf *, const nnc_lexpr *e);
/* Scalar select as (c ? a : b). */
void nnc_cf_select(nnc_cf *, const nnc_lexpr *e);
void nnc_cf_int(nnc_cf *, const nnc_lexpr *e);
void nnc_cf_float(nnc_cf *, double v);
/* The statements every dialect prints alike: a block, if, assign, a comment. False for the
 * others (loops, stores, lets, atomics, barriers): the printer's own. */
bool nnc_cf_common_stmt(nnc_cf *, const nnc_lstmt *);
/* A nested statement, one level deeper. */
void nnc_cf_body(nnc_cf *, const nnc_lstmt *);
/* if (cond) { then } else { otherwise } */
void nnc_cf_if(nnc_cf *, const nnc_lstmt *);
/* for (T v = lo; v < hi; v += step) { body } */
void nnc_cf_for(nnc_cf *, const nnc_lstmt *);
/* v = value; */
void nnc_cf_assign(nnc_cf *, const nnc_lstmt *);
/* text as comment lines, a star-slash inside one broken so it cannot end the comment early. */
void nnc_cf_comment(nnc_cf *, const char *text);

/* An identifier from a name ("fc1.weight" -> "fc1_weight"), not reserved and unique among
 * taken[0..ntaken): else suffixed with id. */
char *nnc_cf_name(nnc_cf *, const char *name, int id, char **taken, int ntaken);
/* bname and vname for every buffer and every variable of vars, all distinct. */
void nnc_cf_name_everything(nnc_cf *);

#endif
