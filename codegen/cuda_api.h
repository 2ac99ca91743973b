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
  NNC_CUDA_ERROR_INVALID_VALUE = 1,
  NNC_CUDA_ERROR_OUT_OF_MEMORY = 2,
  NNC_CUDA_ERROR_NOT_INITIALIZED = 3,
  NNC_CUDA_ERROR_STUB_LIBRARY = 34,
  NNC_CUDA_ERROR_INSUFFICIENT_DRIVER = 35,
  NNC_CUDA_ERROR_NO_DEVICE = 100,
  NNC_CUDA_ERROR_INVALID_DEVICE = 101,
  NNC_CUDA_ERROR_ILLEGAL_ADDRESS = 700,
  NNC_CUDA_ERROR_LAUNCH_FAILED = 719,
  NNC_CUDA_ERROR_SYSTEM_NOT_READY = 802,
  NNC_CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
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

/* Running programs (driver/exec_cuda.c): one stream, pinned host staging, asynchronous copies,
 * each program captured from the stream into a CUDA Graph and replayed. */
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
typedef unsigned long long CUdeviceptr;

enum {
  NNC_CU_STREAM_NON_BLOCKING = 0x1,             /* CUstream_flags: no implicit sync with stream 0 */
  NNC_CU_EVENT_DISABLE_TIMING = 0x2,            /* CUevent_flags */
  NNC_CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,  /* CUstreamCaptureMode */
};

typedef CUresult (*cuDevicePrimaryCtxRetain_fn)(CUcontext *, CUdevice);
typedef CUresult (*cuDevicePrimaryCtxRelease_v2_fn)(CUdevice);
typedef CUresult (*cuCtxSetCurrent_fn)(CUcontext);
typedef CUresult (*cuModuleLoadData_fn)(CUmodule *, const void *image);
typedef CUresult (*cuModuleUnload_fn)(CUmodule);
typedef CUresult (*cuModuleGetFunction_fn)(CUfunction *, CUmodule, const char *name);
typedef CUresult (*cuMemAlloc_v2_fn)(CUdeviceptr *, size_t bytes);
typedef CUresult (*cuMemFree_v2_fn)(CUdeviceptr);
typedef CUresult (*cuMemHostAlloc_fn)(void **, size_t bytes, unsigned flags);
typedef CUresult (*cuMemFreeHost_fn)(void *);
typedef CUresult (*cuMemcpyHtoDAsync_v2_fn)(CUdeviceptr dst, const void *src, size_t bytes, CUstream);
typedef CUresult (*cuMemcpyDtoHAsync_v2_fn)(void *dst, CUdeviceptr src, size_t bytes, CUstream);
typedef CUresult (*cuStreamCreate_fn)(CUstream *, unsigned flags);
typedef CUresult (*cuStreamDestroy_v2_fn)(CUstream);
typedef CUresult (*cuStreamSynchronize_fn)(CUstream);
typedef CUresult (*cuEventCreate_fn)(CUevent *, unsigned flags);
typedef CUresult (*cuEventRecord_fn)(CUevent, CUstream);
typedef CUresult (*cuEventSynchronize_fn)(CUevent);
typedef CUresult (*cuEventDestroy_v2_fn)(CUevent);
typedef CUresult (*cuLaunchKernel_fn)(CUfunction, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                      unsigned bz, unsigned shared_bytes, CUstream, void **params, void **extra);
typedef CUresult (*cuStreamBeginCapture_v2_fn)(CUstream, int mode);
typedef CUresult (*cuStreamEndCapture_fn)(CUstream, CUgraph *);
typedef CUresult (*cuGraphInstantiateWithFlags_fn)(CUgraphExec *, CUgraph, unsigned long long flags);
typedef CUresult (*cuGraphLaunch_fn)(CUgraphExec, CUstream);
typedef CUresult (*cuGraphExecDestroy_fn)(CUgraphExec);
typedef CUresult (*cuGraphDestroy_fn)(CUgraph);

#endif
