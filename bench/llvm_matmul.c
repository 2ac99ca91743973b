/* GFLOP/s of the loop IR sgemm (tests/unit/loop_sgemm.h) through the LLVM JIT and through the C
 * printer + cc, side by side, on one thread: 1024^3, the MLP's first layer (64x256x784) and its
 * weight gradient (256x784x64). Also the JIT's compile time, cold (no cache) and from the cache.
 *
 *   bench_llvm_matmul [repeats]        run from the source root (the C side includes runtime/abi.h) */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/c.h"
#include "codegen/cc.h"
#include "codegen/llvm.h"
#include "runtime/abi.h"
#include "tests/unit/loop_sgemm.h"

typedef void (*sgemm_fn)(const nnc_rt *, const float *, const float *, float *, float *);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static nnc_cg_lib *c_lib(sgemm_ir *g, char *err, size_t cap) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fprintf(f, "#include \"runtime/abi.h\"\n");
  const nnc_kernel *ks[1] = {g->k};
  nnc_cg_c_prelude(f, ks, 1);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_c_kernel(f, g->k, &d);
  fprintf(f, "void run(const nnc_rt *rt, const float *A, const float *B, float *C, float *pack) { sgemm(rt, A, B, C, pack); }\n");
  fclose(f);
  char cwd[1024], flags[1100];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  snprintf(flags, sizeof flags, "-I%s", cwd);
  nnc_diags why;
  nnc_cg_lib *lib = ok ? nnc_cg_cc_compile(text, flags, nnc_diags_init_buffer(&why, err, cap)) : NULL;
  free(text);
  return lib;
}

static nnc_cg_llvm_jit *llvm_jit(sgemm_ir *g, const char *cache, double *secs, char *err, size_t cap) {
  double t0 = now();
  nnc_diags d;
  nnc_diags_init_buffer(&d, err, cap);
  nnc_cg_llvm_module *m = nnc_cg_llvm_module_new("sgemm", NULL, &d);
  if (!m || !nnc_cg_llvm_kernel(m, g->k, &d)) {
    nnc_cg_llvm_module_free(m);
    return NULL;
  }
  nnc_cg_llvm_jit_opts o = {.cache_dir = cache, .no_cache = cache == NULL};
  nnc_cg_llvm_jit *j = nnc_cg_llvm_jit_new(m, &o, &d);
  *secs = now() - t0;
  return j;
}

static double gflops(sgemm_fn run, int64_t M, int64_t N, int64_t K, int repeats) {
  float *A = aligned_alloc(64, (size_t)(M * K) * 4 + 64), *B = aligned_alloc(64, (size_t)(K * N) * 4 + 64);
  float *C = aligned_alloc(64, (size_t)(M * N) * 4 + 64), *pack = aligned_alloc(64, (size_t)(K * SGEMM_NR) * 4 + 64);
  for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 13) * 0.01f;
  for (int64_t i = 0; i < K * N; i++) B[i] = (float)(i % 7) * 0.01f;
  run(NULL, A, B, C, pack); /* warm up */
  double best = 1e30;
  for (int r = 0; r < repeats; r++) {
    double t0 = now(), t;
    int calls = 0;
    do { /* at least 50 ms per sample */
      run(NULL, A, B, C, pack);
      calls++;
      t = now() - t0;
    } while (t < 0.05);
    if (t / calls < best) best = t / calls;
  }
  free(A), free(B), free(C), free(pack);
  return 2.0 * (double)M * (double)N * (double)K / best * 1e-9;
}

static int bench(int64_t M, int64_t N, int64_t K, int repeats, const char *cache) {
  nnc_arena *a = nnc_arena_new();
  sgemm_ir g = sgemm_build(a, "sgemm", M, N, K);
  char err[8192];
  double cold = 0, warm = 0;
  nnc_cg_llvm_jit *j = llvm_jit(&g, NULL, &cold, err, sizeof err);
  nnc_cg_llvm_jit *j2 = j ? llvm_jit(&g, cache, &warm, err, sizeof err) : NULL; /* fills the cache */
  nnc_cg_llvm_jit_free(j2);
  j2 = j ? llvm_jit(&g, cache, &warm, err, sizeof err) : NULL;               /* and reads it */
  nnc_cg_lib *lib = j ? c_lib(&g, err, sizeof err) : NULL;
  int rc = 0;
  if (!j || !lib) {
    fprintf(stderr, "bench_llvm_matmul: %s\n", err);
    rc = 1;
  } else {
    double gl = gflops((sgemm_fn)nnc_cg_llvm_jit_sym(j, "sgemm"), M, N, K, repeats);
    double gc = gflops((sgemm_fn)nnc_cg_cc_sym(lib, "run"), M, N, K, repeats);
    printf("%5lld x %5lld x %5lld  %7.1f  %7.1f  %8.1f ms  %6.1f ms (%s)\n", (long long)M, (long long)N, (long long)K,
           gl, gc, cold * 1e3, warm * 1e3, nnc_cg_llvm_jit_cache_result(j2) == NNC_LLVM_CACHE_HIT ? "hit" : "miss");
  }
  if (lib) nnc_cg_cc_close(lib);
  nnc_cg_llvm_jit_free(j);
  nnc_cg_llvm_jit_free(j2);
  nnc_arena_free(a);
  return rc;
}

int main(int argc, char **argv) {
  int repeats = argc > 1 ? atoi(argv[1]) : 5;
  if (repeats < 1) repeats = 1;
  char cache[] = "/tmp/nnc_bench_llvm_XXXXXX";
  if (!mkdtemp(cache)) return 1;
  printf("loop IR sgemm (6x32 tile, f32x16), 1 thread: LLVM JIT (O3, host CPU) vs C printer (cc -O2 -march=native)\n");
  printf("    M x     N x     K   LLVM GFLOP/s  C GFLOP/s  JIT compile: cold, cached\n");
  int rc = 0;
  rc |= bench(1024, 1024, 1024, repeats, cache);
  rc |= bench(64, 256, 784, repeats, cache);
  rc |= bench(256, 784, 64, repeats, cache);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cache);
  return rc;
}
