/* A whole model on CUDA (docs/cuda.md): the kernels of its GPU-lowered programs as one CUDA C
 * file, and `--emit ptx`'s host launcher, a C99 file that runs the programs through the CUDA
 * driver API with the C backend's entry functions (codegen/c_program.h):
 *
 *     int <model>_<program>(const nnc_rt *rt, const nnc_args *args)
 *
 * The launcher loads libcuda.so.1 with dlopen (no link dependency) and the PTX from a file,
 * allocates one device allocation per region, and per call copies persist and io to the
 * device, launches the program's kernels in order (grids computed from the batch n), and
 * copies them back. */
#ifndef NNC_CG_CUDA_PROGRAM_H
#define NNC_CG_CUDA_PROGRAM_H

#include <stdbool.h>
#include <stdio.h>

#include "codegen/cuda.h"
#include "ir/diag.h"
#include "ir/lowered.h"

/* Gives kernels that share a name but differ (node ids repeat between programs) the program's
 * name as a suffix, so a name means one kernel in the whole file. */
void nnc_cg_cuda_name_kernels(nnc_lprogram *const *progs, int nprogs);

/* The CUDA C of every program (after nnc_cg_cuda_name_kernels): the prelude, then each program's
 * kernels, each distinct kernel once, with lr, step and seed taken as `scalars` says (codegen/cuda.h).
 * False after reporting when a kernel cannot be printed. */
bool nnc_cg_cuda_model_file(FILE *, const char *model, int64_t batch_max, nnc_lprogram *const *progs, int nprogs,
                            nnc_cg_cuda_scalars scalars, nnc_diags *);

/* The launcher's model.c and model.h (the C backend's header plus <model>_cuda_load,
 * <model>_cuda_unload and <model>_cuda_error). False after reporting when a kernel has a
 * launch the host cannot compute or scratch buffers of its own. */
bool nnc_cg_cuda_launcher_source(FILE *, const char *model, nnc_lprogram *const *progs, int nprogs, nnc_diags *);
void nnc_cg_cuda_launcher_header(FILE *, const char *model, const nnc_mem_layout *, nnc_lprogram *const *progs,
                                 int nprogs);
/* A small program that loads the PTX (argv[1], else model.ptx), runs predict at n = 1 on zeros
 * and says what happened; without a CUDA driver: one line on stderr, exit status 1. */
void nnc_cg_cuda_launcher_main(FILE *, const char *model);

#endif
