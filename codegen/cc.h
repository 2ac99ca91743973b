/* Compile C text with the system compiler and load it (tests and benchmarks run generated C
 * this way): the text goes to a fresh temporary directory, `cc` builds a shared object there,
 * dlopen loads it. CC in the environment names another compiler. */
#ifndef NNC_CG_CC_H
#define NNC_CG_CC_H

#include <stddef.h>

#include "ir/diag.h"

typedef struct nnc_cg_lib nnc_cg_lib;

/* Compiles source with `cc -std=c99 -Wall -Wextra -Werror -O2 -march=native -shared -fPIC`
 * plus flags (may be NULL: "-I/dir -fopenmp"). On failure returns NULL and reports the command
 * and the compiler's messages (or why the library did not load). */
nnc_cg_lib *nnc_cg_cc_compile(const char *source, const char *flags, nnc_diags *);
/* A symbol of the library, or NULL. */
void *nnc_cg_cc_sym(nnc_cg_lib *, const char *name);
/* Unloads the library and removes its temporary directory. */
void nnc_cg_cc_close(nnc_cg_lib *);

#endif
