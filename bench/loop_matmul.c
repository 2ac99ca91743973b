/* GFLOP/s of the loop IR sgemm (tests/unit/loop_sgemm.h) through the C printer and cc, on one
 * thread: 1024^3, the MLP's first layer (64x256x784) and its weight gradient (256x784x64).
 * The vector width is the host target's (ir/target.h): f32x16 tiles with AVX-512, f32x8 with
 * AVX2; NNC_VECTOR_LANES overrides it, CC picks the compiler.
 *
 *   bench_loop_matmul [repeats]        run from the source root (it includes runtime/abi.h)
 *
 * Times are the best of the repeats, each at least 50 ms of calls, in thread CPU time (a busy
 * machine's other work does not count) and wall time. NNC_BENCH_DUMP=file.c keeps the
 * generated C of the last shape. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/c.h"
#include "codegen/cc.h"
#include "ir/target.h"
#include "runtime/abi.h"
#include "tests/unit/loop_sgemm.h"

typedef void (*sgemm_fn)(const nnc_rt *, const float *, const float *, float *, float *);

static double clock_s(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int bench(int64_t M, int64_t N, int64_t K, int repeats, int lanes) {
  nnc_arena *a = nnc_arena_new();
  sgemm_ir g = sgemm_build_lanes(a, "sgemm", M, N, K, lanes);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fprintf(f, "#include \"runtime/abi.h\"\n");
  const nnc_kernel *ks[1] = {g.k};
  nnc_cg_c_prelude(f, ks, 1);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_c_kernel(f, g.k, &d);
  fprintf(f, "void run(const nnc_rt *rt, const float *A, const float *B, float *C, float *pack) { sgemm(rt, A, B, C, pack); }\n");
  fclose(f);
  char cwd[1024], flags[1100], err[8192];
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  snprintf(flags, sizeof flags, "-I%s", cwd);
  const char *dump = getenv("NNC_BENCH_DUMP"); /* where to keep the generated C */
  FILE *df = dump ? fopen(dump, "w") : NULL;
  if (df) fputs(text, df), fclose(df);
  nnc_diags why;
  nnc_cg_lib *lib = ok ? nnc_cg_cc_compile(text, flags, nnc_diags_init_buffer(&why, err, sizeof err)) : NULL;
  free(text);
  if (!lib) {
    fprintf(stderr, "bench_loop_matmul: %s\n", ok ? err : "the C printer refused the kernel");
    nnc_arena_free(a);
    return 1;
  }
  sgemm_fn run = (sgemm_fn)nnc_cg_cc_sym(lib, "run");
  float *A = calloc((size_t)(M * K), 4), *B = calloc((size_t)(K * N), 4), *C = calloc((size_t)(M * N), 4);
  float *pack = calloc((size_t)(K * g.nr), 4);
  for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 13) * 0.01f;
  for (int64_t i = 0; i < K * N; i++) B[i] = (float)(i % 7) * 0.01f;
  run(NULL, A, B, C, pack); /* warm up */
  double best = 1e30, best_wall = 1e30;
  for (int r = 0; r < repeats; r++) {
    double t0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
    double t;
    int calls = 0;
    do { /* at least 50 ms per sample */
      run(NULL, A, B, C, pack);
      calls++;
      t = clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
    } while (t < 0.05);
    double w = clock_s(CLOCK_MONOTONIC) - w0;
    if (t / calls < best) best = t / calls;
    if (w / calls < best_wall) best_wall = w / calls;
  }
  double flop = 2.0 * (double)M * (double)N * (double)K;
  printf("%5lld x %5lld x %5lld  %8.3f ms  %7.1f GFLOP/s  (wall %7.1f)\n", (long long)M, (long long)N, (long long)K,
         best * 1e3, flop / best * 1e-9, flop / best_wall * 1e-9);
  free(A), free(B), free(C), free(pack);
  nnc_cg_cc_close(lib);
  nnc_arena_free(a);
  return 0;
}

int main(int argc, char **argv) {
  int repeats = argc > 1 ? atoi(argv[1]) : 5;
  if (repeats < 1) repeats = 1;
  nnc_target t = nnc_target_host();
  char desc[160];
  const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
  printf("target %s\n", nnc_target_str(&t, desc, sizeof desc));
  printf("loop IR sgemm (6x%d tile, f32x%d) through the C printer, 1 thread, %s -O2 -march=native\n", 2 * t.f32_lanes,
         t.f32_lanes, cc);
  printf("    M x     N x     K        time      CPU time rate\n");
  int rc = 0;
  rc |= bench(1024, 1024, 1024, repeats, t.f32_lanes);
  rc |= bench(64, 256, 784, repeats, t.f32_lanes);
  rc |= bench(256, 784, 64, repeats, t.f32_lanes);
  return rc;
}
