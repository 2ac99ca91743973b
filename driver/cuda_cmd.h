/* The CUDA commands of the driver: `nnc --devices`, `nnc MODEL --emit cuda` and the check
 * behind `--target cuda` (docs/cuda.md). */
#ifndef NNC_DRIVER_CUDA_CMD_H
#define NNC_DRIVER_CUDA_CMD_H

#include <stdio.h>

#include "driver/options.h"
#include "ir/ir.h"
#include "ir/lowered.h"
#include "ir/lowered.h"

/* Prints the CPU (name, vector features, cores) and every CUDA device (name, compute
 * capability, memory), or why there is none. Returns an exit status (0: printed). */
int nnc_cmd_devices(FILE *out);

/* --target cuda: whether a CUDA driver and device are present. Returns NNC_EXIT_OK, or prints
 * one line saying why not and returns NNC_EXIT_ENVIRONMENT. */
int nnc_cmd_check_cuda(void);

/* --emit cuda: every program of c (lowered with the GPU schedule) printed as one CUDA C file
 * (to -o FILE or standard output). Returns an exit status after reporting. */
int nnc_cmd_emit_cuda(const nnc_compiled *c, const nnc_options *o);

/* --emit ptx -o DIR: model.ptx (NVRTC, for device 0's sm_XY or compute_90), model.cu (its
 * source), and the host launcher: model.c, model.h (the C backend's API plus
 * <model>_cuda_load), nnc_abi.h and model_main.c (codegen/cuda_program.h). */
int nnc_cmd_emit_ptx(const nnc_compiled *c, const nnc_options *o);

#endif
