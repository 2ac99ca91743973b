/* A whole model as standalone C (DESIGN §10): the kernels of its lowered programs printed by
 * the kernel printer (codegen/c.h), and one entry function per program,
 *
 *     int <model>_<program>(const nnc_rt *rt, const nnc_args *args)   (runtime/abi.h)
 *
 * that checks its arguments and calls the kernels in order with pointers computed from the
 * region bases and the memory plan's offsets. The header gives region sizes and every
 * persist and io buffer's offset as constants; nothing is allocated inside. The loader reads
 * weights.safetensors into the persist region without any library. */
#ifndef NNC_CG_C_PROGRAM_H
#define NNC_CG_C_PROGRAM_H

#include <stdbool.h>
#include <stdio.h>

#include "ir/diag.h"
#include "ir/lowered.h"

/* runtime/abi.h, verbatim: written beside model.h as nnc_abi.h. */
extern const char nnc_cg_abi_text[];

/* The model's C identifier prefix: its name with every character outside [A-Za-z0-9_]
 * replaced by '_' (and a leading '_' before a digit); written into buf. */
const char *nnc_cg_c_ident(const char *name, char *buf, size_t cap);

/* model.c: the kernels of every program (each distinct kernel once) and the entry functions.
 * progs share one layout. False after reporting when a kernel cannot be printed. */
bool nnc_cg_c_model_source(FILE *, const char *model, nnc_lprogram *const *progs, int nprogs, nnc_diags *);
/* Variants of model.c that validate a memory plan by execution (DESIGN §9). NANFILL: the scratch
 * region starts as NaN and, after every kernel call, the bytes of every buffer that died at it
 * (and that no live buffer shares) are filled with NaN, so a kernel that reads a dead range
 * sees NaN. SEPARATE: every buffer (scratch, io, persist) gets its own heap allocation sized at
 * the call's n, io and persist copied in and out around the calls; compiled with
 * -fsanitize=address ASan sees any overrun, otherwise NaN guard bytes around each allocation
 * are checked after every call (an entry returns NNC_DEBUG_OVERRUN, 90, when one changed). */
typedef enum { NNC_CG_MEM_NORMAL, NNC_CG_MEM_NANFILL, NNC_CG_MEM_SEPARATE } nnc_cg_mem_debug;
bool nnc_cg_c_model_source_debug(FILE *, const char *model, nnc_lprogram *const *progs, int nprogs, nnc_cg_mem_debug,
                                 nnc_diags *);

/* model.h: the documented API, sizes, offsets, entry declarations. */
void nnc_cg_c_model_header(FILE *, const char *model, const nnc_mem_layout *, nnc_lprogram *const *progs, int nprogs);
/* model_loader.h / model_loader.c: <model>_load_weights(path, persist, err, cap). */
void nnc_cg_c_loader_header(FILE *, const char *model);
void nnc_cg_c_loader_source(FILE *, const char *model, const nnc_mem_layout *);

#endif
