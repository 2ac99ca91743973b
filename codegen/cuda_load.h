/* NVRTC and the CUDA driver, loaded at run time (docs/cuda.md): nnc never links either, so it
 * builds and runs where no CUDA toolkit or driver is installed and says why CUDA is missing.
 *
 * CUDA C compiles to PTX through NVRTC for the device's compute capability (sm_XY) or, with no
 * device, for compute_90. PTX is cached on disk by a hash of the source, the architecture and
 * NVRTC's version, in $NNC_CACHE_DIR, else $XDG_CACHE_HOME/nnc, else ~/.cache/nnc; files are
 * written to a temporary name and renamed, so concurrent compilations never see half a file. */
#ifndef NNC_CG_CUDA_LOAD_H
#define NNC_CG_CUDA_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"

/* The architecture nnc compiles for when there is no device: Hopper's virtual architecture. */
#define NNC_CG_CUDA_DEFAULT_ARCH "compute_90"

/* --- NVRTC ---------------------------------------------------------------------------------- */

typedef struct nnc_cg_cuda_nvrtc nnc_cg_cuda_nvrtc;

/* Loads libnvrtc ($NNC_NVRTC if set, else libnvrtc.so.13, .so.12, .so, then the toolkit's
 * lib64 under $CUDA_HOME or /usr/local/cuda) and preloads its builtins library from the same
 * directory when the loader cannot find it by name. NULL, reported, when none loads. */
nnc_cg_cuda_nvrtc *nnc_cg_cuda_nvrtc_open(nnc_diags *);
void nnc_cg_cuda_nvrtc_close(nnc_cg_cuda_nvrtc *);
/* "13.0" */
const char *nnc_cg_cuda_nvrtc_version(const nnc_cg_cuda_nvrtc *);

typedef struct nnc_cg_cuda_ptx {
  char *text;          /* NUL-terminated PTX (malloc'ed) */
  size_t size;         /* bytes, without the NUL */
  bool cached;         /* read from the disk cache, not compiled */
  char *log;           /* NVRTC's log when it wrote one (malloc'ed), else NULL */
} nnc_cg_cuda_ptx;

/* Compiles CUDA C source (name: shown in NVRTC's messages) for arch ("sm_90", "compute_90")
 * to PTX, through the disk cache unless use_cache is false. False, reported (NVRTC's log,
 * when the source does not compile, in ptx->log). */
bool nnc_cg_cuda_compile(nnc_cg_cuda_nvrtc *, const char *source, const char *name, const char *arch,
                         bool use_cache, nnc_cg_cuda_ptx *ptx, nnc_diags *);
void nnc_cg_cuda_ptx_free(nnc_cg_cuda_ptx *);

/* The cache directory (not created); false when neither variable nor HOME is set. */
bool nnc_cg_cuda_cache_dir(char *buf, size_t cap);

/* --- the driver ----------------------------------------------------------------------------- */

typedef struct nnc_cg_cuda_device {
  char name[256];
  int major, minor;    /* compute capability */
  int multiprocessors;
  size_t memory;       /* bytes */
} nnc_cg_cuda_device;

/* Up to cap devices into out, and how many the driver has; -1 with the reason in why when
 * there is no driver or it cannot start ("no CUDA driver: libcuda.so.1 not found"), 0 with
 * the reason when it has no device. */
int nnc_cg_cuda_devices(nnc_cg_cuda_device *out, int cap, int *driver_version, char *why, size_t whycap);

/* The architecture to compile for: sm_XY of device 0, or NNC_CG_CUDA_DEFAULT_ARCH without one. */
void nnc_cg_cuda_arch(char *buf, size_t cap);

/* The name of a CUresult ("CUDA_ERROR_NO_DEVICE"), from a table: a stub driver's
 * cuGetErrorName fails too. */
const char *nnc_cg_cuda_error_name(int result);

#endif
