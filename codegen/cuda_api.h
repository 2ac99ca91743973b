/* The few NVRTC and CUDA driver API declarations nnc uses, vendored so that nnc builds where no
 * CUDA toolkit is installed: both libraries are loaded with dlopen (codegen/cuda_load.c) and
 * never linked. Values and signatures are those of cuda.h and nvrtc.h (CUDA 12 and 13); the
 * driver functions are looked up by their versioned exported names (cuDeviceTotalMem_v2),
 * which is what cuda.h's macros map the plain names to. */
#ifndef NNC_CG_CUDA_API_H
#define NNC_CG_CUDA_API_H

#include <stddef.h>

/* --- NVRTC (nvrtc.h) -------------------------------------------------------------------------- */

typedef int nvrtcResult;                         /* NVRTC_SUCCESS = 0 */
typedef struct _nvrtcProgram *nvrtcProgram;

typedef nvrtcResult (*nvrtcVersion_fn)(int *major, int *minor);
typedef const char *(*nvrtcGetErrorString_fn)(nvrtcResult);
typedef nvrtcResult (*nvrtcCreateProgram_fn)(nvrtcProgram *, const char *src, const char *name, int num_headers,
                                             const char *const *headers, const char *const *include_names);
typedef nvrtcResult (*nvrtcCompileProgram_fn)(nvrtcProgram, int num_options, const char *const *options);
typedef nvrtcResult (*nvrtcGetPTXSize_fn)(nvrtcProgram, size_t *);
typedef nvrtcResult (*nvrtcGetPTX_fn)(nvrtcProgram, char *);
typedef nvrtcResult (*nvrtcGetProgramLogSize_fn)(nvrtcProgram, size_t *);
typedef nvrtcResult (*nvrtcGetProgramLog_fn)(nvrtcProgram, char *);
typedef nvrtcResult (*nvrtcDestroyProgram_fn)(nvrtcProgram *);

/* --- the driver API (cuda.h) ------------------------------------------------------------------ */

typedef int CUresult;                            /* CUDA_SUCCESS = 0 */
typedef int CUdevice;

enum {
  NNC_CUDA_SUCCESS = 0,
  NNC_CUDA_ERROR_NOT_INITIALIZED = 3,
  NNC_CUDA_ERROR_STUB_LIBRARY = 34,
  NNC_CUDA_ERROR_INSUFFICIENT_DRIVER = 35,
  NNC_CUDA_ERROR_NO_DEVICE = 100,
  NNC_CUDA_ERROR_INVALID_DEVICE = 101,
  NNC_CUDA_ERROR_SYSTEM_NOT_READY = 802,
  NNC_CUDA_ERROR_UNKNOWN = 999,
};

/* CUdevice_attribute values */
enum {
  NNC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
  NNC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  NNC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
};

typedef CUresult (*cuInit_fn)(unsigned flags);
typedef CUresult (*cuDriverGetVersion_fn)(int *version);
typedef CUresult (*cuDeviceGetCount_fn)(int *count);
typedef CUresult (*cuDeviceGet_fn)(CUdevice *, int ordinal);
typedef CUresult (*cuDeviceGetName_fn)(char *name, int len, CUdevice);
typedef CUresult (*cuDeviceGetAttribute_fn)(int *value, int attribute, CUdevice);
typedef CUresult (*cuDeviceTotalMem_v2_fn)(size_t *bytes, CUdevice);

/* Running programs (codegen/cuda_exec.c). */
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr;

typedef CUresult (*cuDevicePrimaryCtxRetain_fn)(CUcontext *, CUdevice);
typedef CUresult (*cuDevicePrimaryCtxRelease_v2_fn)(CUdevice);
typedef CUresult (*cuCtxSetCurrent_fn)(CUcontext);
typedef CUresult (*cuCtxSynchronize_fn)(void);
typedef CUresult (*cuModuleLoadData_fn)(CUmodule *, const void *image);
typedef CUresult (*cuModuleUnload_fn)(CUmodule);
typedef CUresult (*cuModuleGetFunction_fn)(CUfunction *, CUmodule, const char *name);
typedef CUresult (*cuMemAlloc_v2_fn)(CUdeviceptr *, size_t bytes);
typedef CUresult (*cuMemFree_v2_fn)(CUdeviceptr);
typedef CUresult (*cuMemcpyHtoD_v2_fn)(CUdeviceptr dst, const void *src, size_t bytes);
typedef CUresult (*cuMemcpyDtoH_v2_fn)(void *dst, CUdeviceptr src, size_t bytes);
typedef CUresult (*cuLaunchKernel_fn)(CUfunction, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                      unsigned bz, unsigned shared_bytes, CUstream, void **params, void **extra);

#endif
