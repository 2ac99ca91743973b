/* NVRTC and the CUDA driver through dlopen (codegen/cuda_load.h). */
#define _GNU_SOURCE /* dladdr: where libnvrtc was loaded from */
#include "codegen/cuda_load.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/cuda_api.h"
#include "ir/ir.h"

/* --- NVRTC ---------------------------------------------------------------------------------- */

struct nnc_cg_cuda_nvrtc {
  void *lib, *builtins;
  int major, minor;
  char version[16];
  nvrtcGetErrorString_fn error_string;
  nvrtcCreateProgram_fn create;
  nvrtcCompileProgram_fn compile;
  nvrtcGetPTXSize_fn ptx_size;
  nvrtcGetPTX_fn ptx;
  nvrtcGetProgramLogSize_fn log_size;
  nvrtcGetProgramLog_fn log;
  nvrtcDestroyProgram_fn destroy;
};

static void *open_nvrtc_library(nnc_diags *d) {
  const char *env = getenv("NNC_NVRTC");
  if (env && *env) {
    void *lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    if (!lib) nnc_error(d, (nnc_loc){0}, "NVRTC: cannot load NNC_NVRTC=%s: %s", env, dlerror());
    return lib;
  }
  static const char *const names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (lib) return lib;
  }
  const char *home = getenv("CUDA_HOME");
  const char *roots[] = {home && *home ? home : NULL, "/usr/local/cuda"};
  for (size_t r = 0; r < 2; r++) {
    for (size_t i = 0; roots[r] && i < sizeof names / sizeof *names; i++) {
      char path[4096];
      snprintf(path, sizeof path, "%s/lib64/%s", roots[r], names[i]);
      void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      if (lib) return lib;
    }
  }
  nnc_error(d, (nnc_loc){0}, "no NVRTC: libnvrtc.so.13 not found (install the CUDA toolkit, or set NNC_NVRTC)");
  return NULL;
}

/* NVRTC opens its builtins library by soname while compiling; where the loader cannot find it
 * (the toolkit's lib64 not in the loader's path), load it from libnvrtc's own directory. */
static void *preload_builtins(nnc_cg_cuda_nvrtc *nv, void *any_symbol) {
  char soname[64];
  snprintf(soname, sizeof soname, "libnvrtc-builtins.so.%d.%d", nv->major, nv->minor);
  void *lib = dlopen(soname, RTLD_NOW | RTLD_GLOBAL);
  if (lib) return lib;
  Dl_info info;
  if (!dladdr(any_symbol, &info) || !info.dli_fname) return NULL;
  char path[4096];
  snprintf(path, sizeof path, "%s", info.dli_fname);
  char *slash = strrchr(path, '/');
  if (!slash) return NULL;
  snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "%s", soname);
  return dlopen(path, RTLD_NOW | RTLD_GLOBAL);
}

#define LOOKUP(nv, field, type, name)                                                       \
  do {                                                                                      \
    *(void **)&(nv)->field = dlsym((nv)->lib, name);                                        \
    if (!(nv)->field) {                                                                     \
      nnc_error(d, (nnc_loc){0}, "NVRTC: %s not found in the library", name);               \
      nnc_cg_cuda_nvrtc_close(nv);                                                          \
      return NULL;                                                                          \
    }                                                                                       \
  } while (0)

nnc_cg_cuda_nvrtc *nnc_cg_cuda_nvrtc_open(nnc_diags *d) {
  void *lib = open_nvrtc_library(d);
  if (!lib) return NULL;
  nnc_cg_cuda_nvrtc *nv = nnc_xcalloc(1, sizeof *nv);
  nv->lib = lib;
  nvrtcVersion_fn version;
  *(void **)&version = dlsym(lib, "nvrtcVersion");
  if (!version || version(&nv->major, &nv->minor) != 0) {
    nnc_error(d, (nnc_loc){0}, "NVRTC: nvrtcVersion failed");
    nnc_cg_cuda_nvrtc_close(nv);
    return NULL;
  }
  snprintf(nv->version, sizeof nv->version, "%d.%d", nv->major, nv->minor);
  LOOKUP(nv, error_string, nvrtcGetErrorString_fn, "nvrtcGetErrorString");
  LOOKUP(nv, create, nvrtcCreateProgram_fn, "nvrtcCreateProgram");
  LOOKUP(nv, compile, nvrtcCompileProgram_fn, "nvrtcCompileProgram");
  LOOKUP(nv, ptx_size, nvrtcGetPTXSize_fn, "nvrtcGetPTXSize");
  LOOKUP(nv, ptx, nvrtcGetPTX_fn, "nvrtcGetPTX");
  LOOKUP(nv, log_size, nvrtcGetProgramLogSize_fn, "nvrtcGetProgramLogSize");
  LOOKUP(nv, log, nvrtcGetProgramLog_fn, "nvrtcGetProgramLog");
  LOOKUP(nv, destroy, nvrtcDestroyProgram_fn, "nvrtcDestroyProgram");
  nv->builtins = preload_builtins(nv, *(void **)&version);
  return nv;
}

/* NVRTC stays loaded: its C++ runtime allocates an exception pool when it loads, which an
 * unload would turn into an unreachable block (LeakSanitizer reports it), and a process that
 * compiles once may compile again. */
void nnc_cg_cuda_nvrtc_close(nnc_cg_cuda_nvrtc *nv) { free(nv); }

const char *nnc_cg_cuda_nvrtc_version(const nnc_cg_cuda_nvrtc *nv) { return nv->version; }

void nnc_cg_cuda_ptx_free(nnc_cg_cuda_ptx *p) {
  if (!p) return;
  free(p->text), free(p->log);
  p->text = p->log = NULL;
  p->size = 0;
}

/* --- the PTX cache -------------------------------------------------------------------------- */

bool nnc_cg_cuda_cache_dir(char *buf, size_t cap) {
  const char *dir = getenv("NNC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n;
  if (dir && *dir) n = snprintf(buf, cap, "%s", dir);
  else if (xdg && *xdg) n = snprintf(buf, cap, "%s/nnc", xdg);
  else if (home && *home) n = snprintf(buf, cap, "%s/.cache/nnc", home);
  else return false;
  return n > 0 && (size_t)n < cap;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* Creates dir and its parents. */
static bool make_dirs(const char *dir) {
  char path[4400];
  snprintf(path, sizeof path, "%s", dir);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(path, 0777) != 0 && errno != EEXIST) return false;
    *p = '/';
  }
  return mkdir(path, 0777) == 0 || errno == EEXIST;
}

static bool cache_path(const nnc_cg_cuda_nvrtc *nv, const char *src, const char *arch, const char *const *opts,
                       int nopts, char *path, size_t cap) {
  char dir[4000];
  if (!nnc_cg_cuda_cache_dir(dir, sizeof dir)) return false;
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(h, nv->version, strlen(nv->version) + 1);
  for (int i = 0; i < nopts; i++) h = fnv1a(h, opts[i], strlen(opts[i]) + 1);
  size_t len = strlen(src);
  h = fnv1a(h, &len, sizeof len);
  h = fnv1a(h, src, len);
  int n = snprintf(path, cap, "%s/cuda-%016llx-%s.ptx", dir, (unsigned long long)h, arch);
  return n > 0 && (size_t)n < cap;
}

static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
  if (len > 0 && fseek(f, 0, SEEK_SET) == 0) {
    buf = nnc_xmalloc((size_t)len + 1);
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) free(buf), buf = NULL;
    else buf[len] = 0, *size = (size_t)len;
  }
  fclose(f);
  return buf;
}

/* Written to a temporary name in the same directory, then renamed: readers see all or nothing.
 * A cache that cannot be written only costs a recompilation next time. */
static void write_cache(const char *path, const char *text, size_t size) {
  char dir[4400], tmp[4400];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) return;
  *slash = 0;
  if (!make_dirs(dir)) return;
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  bool ok = fwrite(text, 1, size, f) == size;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) remove(tmp);
}

/* --- compilation ---------------------------------------------------------------------------- */

static char *program_log(nnc_cg_cuda_nvrtc *nv, nvrtcProgram prog) {
  size_t n = 0;
  if (nv->log_size(prog, &n) != 0 || n <= 1) return NULL;
  char *log = nnc_xmalloc(n + 1);
  if (nv->log(prog, log) != 0) {
    free(log);
    return NULL;
  }
  log[n] = 0;
  return log;
}

bool nnc_cg_cuda_compile(nnc_cg_cuda_nvrtc *nv, const char *src, const char *name, const char *arch, bool use_cache,
                         nnc_cg_cuda_ptx *out, nnc_diags *d) {
  memset(out, 0, sizeof *out);
  char arch_opt[64];
  snprintf(arch_opt, sizeof arch_opt, "--gpu-architecture=%s", arch);
  /* no fast math: expf, logf, tanhf and erff stay within a few ulp of the interpreter's */
  const char *opts[] = {arch_opt, "--std=c++17", "--fmad=true", "-default-device"};
  int nopts = (int)(sizeof opts / sizeof *opts);
  char path[4200];
  bool cacheable = use_cache && cache_path(nv, src, arch, opts, nopts, path, sizeof path);
  if (cacheable && (out->text = read_file(path, &out->size))) {
    out->cached = true;
    return true;
  }
  nvrtcProgram prog = NULL;
  nvrtcResult r = nv->create(&prog, src, name, 0, NULL, NULL);
  if (r != 0) {
    nnc_error(d, (nnc_loc){0}, "NVRTC: nvrtcCreateProgram: %s", nv->error_string(r));
    return false;
  }
  r = nv->compile(prog, nopts, opts);
  out->log = program_log(nv, prog);
  size_t size = 0;
  if (r == 0 && nv->ptx_size(prog, &size) == 0 && size > 1) {
    out->text = nnc_xmalloc(size + 1);
    if (nv->ptx(prog, out->text) == 0) {
      out->text[size] = 0;
      out->size = strlen(out->text);
    } else {
      free(out->text), out->text = NULL;
    }
  }
  nv->destroy(&prog);
  if (!out->text) {
    nnc_error(d, (nnc_loc){0}, "NVRTC: %s does not compile for %s: %s", name, arch,
              r != 0 ? nv->error_string(r) : "no PTX was produced");
    return false;
  }
  if (cacheable) write_cache(path, out->text, out->size);
  return true;
}

/* --- the driver ----------------------------------------------------------------------------- */

const char *nnc_cg_cuda_error_name(int r) {
  switch (r) {
  case NNC_CUDA_SUCCESS: return "CUDA_SUCCESS";
  case NNC_CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
  case NNC_CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
  case NNC_CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
  case NNC_CUDA_ERROR_STUB_LIBRARY: return "CUDA_ERROR_STUB_LIBRARY (the driver is the toolkit's link stub)";
  case NNC_CUDA_ERROR_INSUFFICIENT_DRIVER: return "CUDA_ERROR_INSUFFICIENT_DRIVER (the driver is older than the runtime)";
  case NNC_CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
  case NNC_CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
  case NNC_CUDA_ERROR_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
  case NNC_CUDA_ERROR_LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
  case NNC_CUDA_ERROR_SYSTEM_NOT_READY: return "CUDA_ERROR_SYSTEM_NOT_READY";
  case NNC_CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: return "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED";
  case NNC_CUDA_ERROR_UNKNOWN: return "CUDA_ERROR_UNKNOWN";
  default: return "a CUDA driver error";
  }
}

typedef struct driver {
  void *lib;
  cuInit_fn init;
  cuDriverGetVersion_fn version;
  cuDeviceGetCount_fn count;
  cuDeviceGet_fn get;
  cuDeviceGetName_fn name;
  cuDeviceGetAttribute_fn attribute;
  cuDeviceTotalMem_v2_fn total_mem;
} driver;

static bool open_driver(driver *d, char *why, size_t cap) {
  memset(d, 0, sizeof *d);
  if (!(d->lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL))) {
    snprintf(why, cap, "no CUDA driver: libcuda.so.1 not found");
    return false;
  }
  struct { void **slot; const char *name; } syms[] = {
      {(void **)&d->init, "cuInit"},
      {(void **)&d->version, "cuDriverGetVersion"},
      {(void **)&d->count, "cuDeviceGetCount"},
      {(void **)&d->get, "cuDeviceGet"},
      {(void **)&d->name, "cuDeviceGetName"},
      {(void **)&d->attribute, "cuDeviceGetAttribute"},
      {(void **)&d->total_mem, "cuDeviceTotalMem_v2"},
  };
  for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
    if (!(*syms[i].slot = dlsym(d->lib, syms[i].name))) {
      snprintf(why, cap, "no usable CUDA driver: libcuda.so.1 has no %s", syms[i].name);
      dlclose(d->lib);
      return false;
    }
  }
  return true;
}

int nnc_cg_cuda_devices(nnc_cg_cuda_device *out, int cap, int *driver_version, char *why, size_t whycap) {
  driver d;
  if (!open_driver(&d, why, whycap)) return -1;
  int count = 0, version = 0;
  CUresult r = d.init(0);
  if (r != 0) {
    if (r == NNC_CUDA_ERROR_NO_DEVICE) snprintf(why, whycap, "no CUDA device (the driver found none)");
    else snprintf(why, whycap, "the CUDA driver does not start: cuInit: %s", nnc_cg_cuda_error_name(r));
    dlclose(d.lib);
    return r == NNC_CUDA_ERROR_NO_DEVICE ? 0 : -1;
  }
  if (d.version(&version) == 0 && driver_version) *driver_version = version;
  if ((r = d.count(&count)) != 0 || count == 0) {
    snprintf(why, whycap, "no CUDA device%s%s", r ? ": cuDeviceGetCount: " : "", r ? nnc_cg_cuda_error_name(r) : "");
    dlclose(d.lib);
    return 0;
  }
  for (int i = 0; i < count && i < cap; i++) {
    nnc_cg_cuda_device *dev = &out[i];
    memset(dev, 0, sizeof *dev);
    CUdevice h;
    if (d.get(&h, i) != 0) continue;
    if (d.name(dev->name, (int)sizeof dev->name, h) != 0) snprintf(dev->name, sizeof dev->name, "device %d", i);
    d.attribute(&dev->major, NNC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, h);
    d.attribute(&dev->minor, NNC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, h);
    d.attribute(&dev->multiprocessors, NNC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, h);
    d.total_mem(&dev->memory, h);
  }
  dlclose(d.lib);
  return count;
}

void nnc_cg_cuda_arch(char *buf, size_t cap) {
  nnc_cg_cuda_device dev;
  char why[256];
  if (nnc_cg_cuda_devices(&dev, 1, NULL, why, sizeof why) > 0 && dev.major > 0)
    snprintf(buf, cap, "sm_%d%d", dev.major, dev.minor);
  else snprintf(buf, cap, "%s", NNC_CG_CUDA_DEFAULT_ARCH);
}
