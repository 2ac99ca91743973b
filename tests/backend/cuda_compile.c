/* cuda_compile: GPU-scheduled kernels printed as CUDA C (codegen/cuda.c) compile through NVRTC
 * to PTX for compute_90 and pass `ptxas -arch=sm_90 -v`, whose registers and spills are
 * reported. Kernels: hand-built ones (an elementwise map with a bounds guard, a block reduction
 * with shuffles and shared memory, one using every vector form), the schedules of
 * passes/gpu_sched.h (tiled matmul, its weight-gradient form, conv2d and both gradients with
 * stride, padding, dilation and groups, a row reduction, softmax), and the GPU schedule of every
 * program of every model (passes/lower.c, which takes those schedules where they apply; every
 * model must have some). Registers and spills are summed up per schedule. Also: the printer's
 * refusals, launch geometry, and the PTX disk cache.
 *
 * No GPU is needed. Without NVRTC or ptxas the test skips (77), except under CI=true, where the
 * setup installs the toolkit and a missing one fails.
 *
 * `cuda_compile --print NAME` prints the CUDA C of one hand-built kernel or schedule (matmul,
 * softmax, reduce, elementwise, vector, conv, conv_dx, conv_dw, row_max, matmul_dw) for the lit
 * tests. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../unit/check.h"
#include "../unit/model_run.h"
#include "codegen/cuda.h"
#include "codegen/cuda_load.h"
#include "ir/loop.h"
#include "passes/gpu_sched.h"
#include "passes/lower.h"

enum { SKIP = 77 };

static bool in_ci(void) {
  const char *ci = getenv("CI");
  return ci && strcmp(ci, "true") == 0;
}

/* --- hand-built kernels ---------------------------------------------------------------------- */

static nnc_ltype i64t(void) { return nnc_lt(NNC_I64, 1); }
static nnc_lexpr *I(nnc_kernel *k, int64_t v) { return nnc_le_int(k, v); }
static nnc_lexpr *V(nnc_kernel *k, const nnc_lvar *v) { return nnc_le_var(k, v); }
static nnc_lexpr *bin(nnc_kernel *k, nnc_lbinop op, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(k, op, a, b); }
static nnc_lexpr *N(nnc_kernel *k) { return nnc_le_scalar(k, NNC_LSC_N); }

static nnc_lstmt *gpu_for(nnc_kernel *k, nnc_lvar *v, nnc_lexpr *hi, nnc_loop_kind kind, nnc_lstmt *body) {
  nnc_lstmt *s = nnc_ls_for(k, v, I(k, 0), hi, 1, kind, body);
  s->axis = 0;
  return s;
}

static nnc_lbuf *global(nnc_kernel *k, const char *name, int64_t per_row, int64_t bmax) {
  nnc_lbuf *b = nnc_lk_buf(k, name, NNC_F32, NNC_SCOPE_GLOBAL, per_row * bmax);
  b->batch_scaled = true;
  return b;
}

/* out[i] = exp(x[i]) * 2 over n*1000 elements: 256 threads a block, the last block guarded. */
static nnc_kernel *elementwise(nnc_arena *a) {
  nnc_kernel *k = nnc_lk_new(a, "exp_times_two");
  k->gpu = true, k->batch_max = 8;
  k->comment = "%3 = exp(%2) * 2  (hand-built)";
  nnc_lbuf *out = global(k, "out", 1000, 8), *x = global(k, "x", 1000, 8);
  nnc_lvar *b = nnc_lk_var(k, "b", i64t()), *t = nnc_lk_var(k, "t", i64t()), *i = nnc_lk_var(k, "i", i64t());
  nnc_lexpr *total = bin(k, NNC_LB_MUL, N(k), I(k, 1000));
  nnc_lstmt *guarded = nnc_ls_block(k);
  nnc_ls_push(k, guarded, nnc_ls_store(k, out, V(k, i),
                                       bin(k, NNC_LB_MUL, nnc_le_un(k, NNC_LU_EXP, nnc_le_load(k, x, V(k, i), 1, NULL)),
                                           nnc_le_const(k, nnc_lt(NNC_F32, 1), 2.0)),
                                       NULL));
  nnc_lstmt *tb = nnc_ls_block(k);
  nnc_ls_push(k, tb, nnc_ls_let(k, i, bin(k, NNC_LB_ADD, bin(k, NNC_LB_MUL, V(k, b), I(k, 256)), V(k, t))));
  nnc_ls_push(k, tb, nnc_ls_if(k, bin(k, NNC_LB_LT, V(k, i), total), guarded, NULL));
  nnc_lstmt *bb = nnc_ls_block(k);
  nnc_ls_push(k, bb, gpu_for(k, t, I(k, 256), NNC_LOOP_GPU_THREAD, tb));
  nnc_lexpr *blocks = bin(k, NNC_LB_FLOORDIV, bin(k, NNC_LB_ADD, total, I(k, 255)), I(k, 256));
  nnc_ls_push(k, k->body, gpu_for(k, b, blocks, NNC_LOOP_GPU_BLOCK, bb));
  nnc_lk_finish(k);
  return k;
}

/* out[r] = sum of x[r, 0..C): one block of 256 threads per row; strided partial sums, a warp
 * reduction by shuffles, warps meet in shared memory behind a barrier, warp 0 finishes. */
static nnc_kernel *block_reduce(nnc_arena *a) {
  const int64_t C = 1000, T = 256, W = T / 32;
  nnc_kernel *k = nnc_lk_new(a, "row_sum");
  k->gpu = true, k->batch_max = 8;
  k->comment = "%5 = sum(%4, dim=1)  (hand-built)";
  nnc_lbuf *out = global(k, "out", 1, 8), *x = global(k, "x", C, 8);
  nnc_lbuf *part = nnc_lk_buf(k, "part", NNC_F32, NNC_SCOPE_SHARED, W);
  nnc_ltype f = nnc_lt(NNC_F32, 1);
  nnc_lvar *r = nnc_lk_var(k, "r", i64t()), *t = nnc_lk_var(k, "t", i64t()), *j = nnc_lk_var(k, "j", i64t());
  nnc_lvar *acc = nnc_lk_var(k, "acc", f);
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_ls_push(k, body, nnc_ls_let(k, acc, nnc_le_const(k, f, 0)));
  nnc_lstmt *jb = nnc_ls_block(k);
  nnc_lexpr *xi = bin(k, NNC_LB_ADD, bin(k, NNC_LB_MUL, V(k, r), I(k, C)), V(k, j));
  nnc_ls_push(k, jb, nnc_ls_assign(k, acc, bin(k, NNC_LB_ADD, V(k, acc), nnc_le_load(k, x, xi, 1, NULL))));
  nnc_ls_push(k, body, nnc_ls_for(k, j, V(k, t), I(k, C), T, NNC_LOOP_SERIAL, jb));
  nnc_lexpr *prev = V(k, acc);
  for (int m = 16; m >= 1; m /= 2) {
    nnc_lvar *s = nnc_lk_var(k, "s", f);
    nnc_ls_push(k, body, nnc_ls_let(k, s, bin(k, NNC_LB_ADD, prev, nnc_le_shuffle_xor(k, prev, I(k, m)))));
    prev = V(k, s);
  }
  nnc_lstmt *lane0 = nnc_ls_block(k);
  nnc_ls_push(k, lane0, nnc_ls_store(k, part, bin(k, NNC_LB_FLOORDIV, V(k, t), I(k, 32)), prev, NULL));
  nnc_ls_push(k, body, nnc_ls_if(k, bin(k, NNC_LB_EQ, bin(k, NNC_LB_MOD, V(k, t), I(k, 32)), I(k, 0)), lane0, NULL));
  nnc_ls_push(k, body, nnc_ls_barrier(k));
  nnc_lvar *w = nnc_lk_var(k, "w", f);
  nnc_lexpr *in_range = bin(k, NNC_LB_LT, V(k, t), I(k, W));
  nnc_lexpr *widx = bin(k, NNC_LB_MIN, V(k, t), I(k, W - 1));
  nnc_ls_push(k, body, nnc_ls_let(k, w, nnc_le_select(k, in_range, nnc_le_load(k, part, widx, 1, NULL), nnc_le_const(k, f, 0))));
  prev = V(k, w);
  for (int m = W / 2; m >= 1; m /= 2) {
    nnc_lvar *s = nnc_lk_var(k, "s", f);
    nnc_ls_push(k, body, nnc_ls_let(k, s, bin(k, NNC_LB_ADD, prev, nnc_le_shuffle_xor(k, prev, I(k, m)))));
    prev = V(k, s);
  }
  nnc_lstmt *first = nnc_ls_block(k);
  nnc_ls_push(k, first, nnc_ls_store(k, out, V(k, r), prev, NULL));
  nnc_ls_push(k, body, nnc_ls_if(k, bin(k, NNC_LB_EQ, V(k, t), I(k, 0)), first, NULL));
  nnc_lstmt *bb = nnc_ls_block(k);
  nnc_ls_push(k, bb, gpu_for(k, t, I(k, T), NNC_LOOP_GPU_THREAD, body));
  nnc_ls_push(k, k->body, gpu_for(k, r, N(k), NNC_LOOP_GPU_BLOCK, bb));
  nnc_lk_finish(k);
  return k;
}

/* Every vector form once: f32x4 loads (masked on the tail), fma, splat, compare, select, math,
 * casts, horizontal sums, i32 wrapping arithmetic, rng and atomics, over a LOCAL tile. */
static nnc_kernel *vector_forms(nnc_arena *a) {
  const int L = 4;
  nnc_kernel *k = nnc_lk_new(a, "vector_forms");
  k->gpu = true, k->batch_max = 4;
  nnc_lbuf *y = global(k, "y", 64, 4), *x = global(k, "x", 64, 4);
  nnc_lbuf *sum = nnc_lk_buf(k, "sum", NNC_F32, NNC_SCOPE_GLOBAL, 1);
  nnc_lbuf *cnt = nnc_lk_buf(k, "count", NNC_I32, NNC_SCOPE_GLOBAL, 1);
  nnc_lbuf *tile = nnc_lk_buf(k, "tile", NNC_F32, NNC_SCOPE_LOCAL, L);
  nnc_ltype fv = nnc_lt(NNC_F32, L), iv = nnc_lt(NNC_I32, L), f = nnc_lt(NNC_F32, 1);
  nnc_lvar *t = nnc_lk_var(k, "t", i64t()), *v = nnc_lk_var(k, "v", fv), *m = nnc_lk_var(k, "m", nnc_lt(NNC_BOOL, L));
  nnc_lvar *q = nnc_lk_var(k, "q", iv), *u = nnc_lk_var(k, "u", fv), *base = nnc_lk_var(k, "base", i64t());
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_lexpr *total = bin(k, NNC_LB_MUL, N(k), I(k, 64));
  nnc_ls_push(k, body, nnc_ls_let(k, base, bin(k, NNC_LB_MUL, V(k, t), I(k, L))));
  nnc_lexpr *lanes = bin(k, NNC_LB_ADD, nnc_le_lane(k, L), nnc_le_splat(k, V(k, base), L));
  nnc_ls_push(k, body, nnc_ls_let(k, m, bin(k, NNC_LB_LT, lanes, nnc_le_splat(k, total, L))));
  nnc_ls_push(k, body, nnc_ls_let(k, v, nnc_le_load(k, x, V(k, base), L, V(k, m))));
  nnc_lexpr *e = nnc_le_fma(k, V(k, v), nnc_le_splat(k, nnc_le_const(k, f, 0.5), L), nnc_le_un(k, NNC_LU_TANH, V(k, v)));
  e = nnc_le_select(k, bin(k, NNC_LB_GT, V(k, v), nnc_le_const(k, fv, 0)), e, nnc_le_un(k, NNC_LU_ERF, V(k, v)));
  nnc_lexpr *rng = nnc_le_rng(k, nnc_le_scalar(k, NNC_LSC_SEED), 7, nnc_le_scalar(k, NNC_LSC_STEP), lanes);
  nnc_ls_push(k, body, nnc_ls_let(k, u, bin(k, NNC_LB_ADD, e, rng)));
  nnc_ls_push(k, body, nnc_ls_let(k, q, bin(k, NNC_LB_MUL, nnc_le_cast(k, iv, V(k, u)), nnc_le_const(k, iv, 3))));
  nnc_ls_push(k, body, nnc_ls_store(k, tile, I(k, 0), bin(k, NNC_LB_MAX, V(k, u), nnc_le_cast(k, fv, V(k, q))), NULL));
  nnc_ls_push(k, body, nnc_ls_store(k, y, V(k, base), nnc_le_load(k, tile, I(k, 0), L, NULL), V(k, m)));
  nnc_ls_push(k, body, nnc_ls_atomic_add(k, sum, I(k, 0), nnc_le_hreduce(k, NNC_LB_ADD, V(k, u))));
  nnc_ls_push(k, body, nnc_ls_atomic_add(k, cnt, I(k, 0), nnc_le_hreduce(k, NNC_LB_MAX, V(k, q))));
  nnc_lstmt *bb = nnc_ls_block(k);
  nnc_ls_push(k, bb, gpu_for(k, t, I(k, 64), NNC_LOOP_GPU_THREAD, body));
  nnc_ls_push(k, k->body, bb);
  nnc_lk_finish(k);
  return k;
}

static nnc_kernel *matmul(nnc_arena *a) {
  nnc_gpu_matmul_shape s = {.M = 100, .N = 70, .K = 300, .trans_b = true, .batch_max = 0};
  return nnc_gpu_matmul_kernel(a, "matmul_tiled", &s);
}

static nnc_kernel *softmax(nnc_arena *a) { return nnc_gpu_softmax_kernel(a, "softmax_rows", 1, 1000, 16); }

/* a strided, padded, dilated, grouped conv and its gradients: 8 images (n of them at run time) */
static const nnc_gpu_conv_shape conv_geometry = {.images = 1, .C = 8, .H = 15, .W = 13, .O = 12, .KH = 3, .KW = 3, .sy = 2,
                                                 .sx = 1, .py = 2, .px = 1, .dy = 2, .dx = 1, .groups = 2, .batch_max = 8};
static nnc_kernel *conv_fwd(nnc_arena *a) { return nnc_gpu_conv2d_kernel(a, "conv_fwd", NNC_GPU_CONV_FORWARD, &conv_geometry); }
static nnc_kernel *conv_dx(nnc_arena *a) { return nnc_gpu_conv2d_kernel(a, "conv_dx", NNC_GPU_CONV_INPUT_GRAD, &conv_geometry); }
static nnc_kernel *conv_dw(nnc_arena *a) { return nnc_gpu_conv2d_kernel(a, "conv_dw", NNC_GPU_CONV_WEIGHT_GRAD, &conv_geometry); }
static nnc_kernel *row_max(nnc_arena *a) {
  nnc_gpu_reduce_shape s = {.rows = 10, .cols = 300, .rows_batched = true, .is_max = true, .batch_max = 16};
  return nnc_gpu_row_reduce_kernel(a, "row_max", &s);
}
static nnc_kernel *matmul_dw(nnc_arena *a) { /* a weight gradient: K is the batch */
  nnc_gpu_matmul_shape s = {.M = 784, .N = 128, .K = 1, .trans_a = true, .batch_max = 256, .batch = NNC_GPU_BATCH_K};
  return nnc_gpu_matmul_kernel(a, "matmul_weight_grad", &s);
}

typedef struct named_kernel {
  const char *name;
  nnc_kernel *(*make)(nnc_arena *);
} named_kernel;

static const named_kernel hand_kernels[] = {
    {"elementwise", elementwise}, {"reduce", block_reduce}, {"vector", vector_forms},
    {"matmul", matmul},           {"softmax", softmax},  {"conv", conv_fwd},
    {"conv_dx", conv_dx},         {"conv_dw", conv_dw},  {"row_max", row_max},
    {"matmul_dw", matmul_dw},
};

/* --- NVRTC and ptxas ------------------------------------------------------------------------ */

/* The schedules whose registers and spills are reported, told apart by the kernel comment the
 * schedule writes (passes/gpu_sched.c); everything else is the lowering's flat schedule. */
enum { SCHED_MATMUL, SCHED_CONV, SCHED_CONV_DX, SCHED_CONV_DW, SCHED_REDUCE, SCHED_SOFTMAX, SCHED_FLAT, SCHED_COUNT };
static const char *const sched_names[SCHED_COUNT] = {
    "matmul (64x64 tiles, 4x4 per thread)", "conv2d (implicit GEMM)", "conv2d input grad (implicit GEMM)",
    "conv2d weight grad (implicit GEMM)", "row reduction (shuffles + shared)", "softmax (block reduction)",
    "flat (one element per thread)"};

typedef struct sched_stats {
  int kernels, min_regs, max_regs, spilling, max_spill;
} sched_stats;

static int sched_of(const nnc_kernel *k) {
  const char *c = k->comment ? k->comment : "";
  if (strstr(c, "conv2d input gradient as an implicit GEMM")) return SCHED_CONV_DX;
  if (strstr(c, "conv2d weight gradient as an implicit GEMM")) return SCHED_CONV_DW;
  if (strstr(c, "conv2d as an implicit GEMM")) return SCHED_CONV;
  if (strstr(c, "64x64 block tiles")) return SCHED_MATMUL;
  if (strstr(c, "over rows of") && strstr(c, "softmax")) return SCHED_SOFTMAX;
  if (strstr(c, "over rows of")) return SCHED_REDUCE;
  return SCHED_FLAT;
}

typedef struct tools {
  nnc_cg_cuda_nvrtc *nv;
  char ptxas[4096];
  char tmp[256];
  int files;
  int kernels, max_regs, spilling;
  nnc_kernel *const *current;  /* the kernels of the file being validated, for their schedules */
  int ncurrent;
  sched_stats sched[SCHED_COUNT];
} tools;

static void count_schedule(tools *T, const char *name, size_t len, int regs, int spill) {
  int which = SCHED_FLAT;
  for (int i = 0; i < T->ncurrent; i++)
    if (strlen(T->current[i]->name) == len && !strncmp(T->current[i]->name, name, len)) which = sched_of(T->current[i]);
  sched_stats *s = &T->sched[which];
  if (!s->kernels || regs < s->min_regs) s->min_regs = regs;
  if (regs > s->max_regs) s->max_regs = regs;
  s->kernels++;
  s->spilling += spill > 0;
  if (spill > s->max_spill) s->max_spill = spill;
}

static void print_schedules(const tools *T) {
  printf("%-38s %8s %10s %9s\n", "schedule", "kernels", "registers", "spilling");
  for (int i = 0; i < SCHED_COUNT; i++) {
    const sched_stats *s = &T->sched[i];
    if (!s->kernels) continue;
    char spill[32];
    snprintf(spill, sizeof spill, s->spilling ? "%d (<= %d B)" : "0", s->spilling, s->max_spill);
    printf("%-38s %8d %4d .. %-3d %9s\n", sched_names[i], s->kernels, s->min_regs, s->max_regs, spill);
  }
}

static bool find_ptxas(char *out, size_t cap) {
  const char *env = getenv("NNC_PTXAS"), *home = getenv("CUDA_HOME");
  if (env && *env) return snprintf(out, cap, "%s", env), access(out, X_OK) == 0;
  if (home && *home && (snprintf(out, cap, "%s/bin/ptxas", home), access(out, X_OK) == 0)) return true;
  if (snprintf(out, cap, "/usr/local/cuda/bin/ptxas"), access(out, X_OK) == 0) return true;
  const char *path = getenv("PATH");
  for (const char *p = path; p && *p;) {
    size_t n = strcspn(p, ":");
    snprintf(out, cap, "%.*s/ptxas", (int)n, p);
    if (access(out, X_OK) == 0) return true;
    p += n + (p[n] == ':');
  }
  return false;
}

/* ptxas -v: "Compiling entry function 'k' for 'sm_90'", then "N bytes spill stores, M bytes spill
 * loads" and "Used R registers". */
static void parse_ptxas(tools *T, const char *what, const char *out) {
  const char *p = out;
  while ((p = strstr(p, "Compiling entry function '"))) {
    p += strlen("Compiling entry function '");
    const char *end = strchr(p, '\'');
    if (!end) break;
    const char *next = strstr(end, "Compiling entry function '");
    const char *used = strstr(end, "Used "), *spill = strstr(end, "bytes spill stores");
    int regs = 0;
    if (used && (!next || used < next)) regs = atoi(used + 5);
    int stores = 0;
    if (spill && (!next || spill < next)) {
      const char *q = spill;
      while (q > end && q[-1] == ' ') q--;
      while (q > end && q[-1] >= '0' && q[-1] <= '9') q--;
      stores = atoi(q);
    }
    T->kernels++;
    count_schedule(T, p, (size_t)(end - p), regs, stores);
    if (regs > T->max_regs) T->max_regs = regs;
    if (stores > 0) {
      T->spilling++;
      printf("  %s: %.*s spills %d bytes (%d registers)\n", what, (int)(end - p), p, stores, regs);
    }
    p = end;
  }
}

/* Compiles CUDA C through NVRTC (no cache) and validates the PTX with ptxas. */
static bool compile_and_validate(tools *T, const char *what, const char *src) {
  nnc_cg_cuda_ptx ptx;
  char err[1024];
  nnc_diags why;
  if (!nnc_cg_cuda_compile(T->nv, src, what, NNC_CG_CUDA_DEFAULT_ARCH, false, &ptx, nnc_diags_init_buffer(&why, err, sizeof err))) {
    fprintf(stderr, "%s: %s\n%s\n", what, err, ptx.log ? ptx.log : "");
    if (getenv("CUDA_DUMP")) fputs(src, stderr);
    nnc_cg_cuda_ptx_free(&ptx);
    return false;
  }
  char path[512], cmd[5000];
  snprintf(path, sizeof path, "%s/k%d.ptx", T->tmp, T->files++);
  FILE *f = fopen(path, "w");
  bool ok = f && fwrite(ptx.text, 1, ptx.size, f) == ptx.size;
  if (f) ok = fclose(f) == 0 && ok;
  nnc_cg_cuda_ptx_free(&ptx);
  if (!ok) return fprintf(stderr, "%s: cannot write %s\n", what, path), false;
  snprintf(cmd, sizeof cmd, "'%s' -arch=sm_90 -v '%s' -o /dev/null 2>&1", T->ptxas, path);
  FILE *p = popen(cmd, "r");
  if (!p) return false;
  size_t cap = 1 << 16, len = 0;
  char *out = malloc(cap);
  size_t r;
  while ((r = fread(out + len, 1, cap - len - 1, p)) > 0) {
    len += r;
    if (len + 1 == cap) out = realloc(out, cap *= 2);
  }
  out[len] = 0;
  int status = pclose(p);
  if (status != 0) fprintf(stderr, "%s: ptxas failed:\n%s\n", what, out);
  else parse_ptxas(T, what, out);
  free(out);
  remove(path);
  return status == 0;
}

static char *print_kernels(nnc_kernel *const *ks, int nk, bool *ok) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  *ok = nnc_cg_cuda_file(f, (const nnc_kernel *const *)ks, nk, &d);
  fclose(f);
  return text;
}

/* --- the checks ------------------------------------------------------------------------------ */

static void check_hand_kernels(tools *T) {
  for (size_t i = 0; i < sizeof hand_kernels / sizeof *hand_kernels; i++) {
    nnc_arena *a = nnc_arena_new();
    nnc_kernel *k = hand_kernels[i].make(a);
    CHECK_MSG(k != NULL, "%s: no kernel", hand_kernels[i].name);
    if (!k) continue;
    nnc_diags d;
    nnc_diags_init(&d, stderr);
    CHECK_MSG(nnc_lk_verify(k, &d), "%s does not verify", hand_kernels[i].name);
    bool ok;
    char *src = print_kernels(&k, 1, &ok);
    CHECK_MSG(ok, "%s does not print", hand_kernels[i].name);
    CHECK(strstr(src, "extern \"C\" __global__") != NULL);
    T->current = &k, T->ncurrent = 1;
    if (ok) CHECK_MSG(compile_and_validate(T, hand_kernels[i].name, src), "%s", hand_kernels[i].name);
    T->ncurrent = 0;
    if (!strcmp(hand_kernels[i].name, "reduce") || !strcmp(hand_kernels[i].name, "softmax")) {
      CHECK(strstr(src, "__shfl_xor_sync(0xffffffffu") && strstr(src, "__shared__ float") && strstr(src, "__syncthreads()"));
    }
    if (!strncmp(hand_kernels[i].name, "matmul", 6) || !strncmp(hand_kernels[i].name, "conv", 4))
      CHECK(strstr(src, "__shared__ float") && strstr(src, "__syncthreads()"));
    if (!strcmp(hand_kernels[i].name, "row_max"))
      CHECK(strstr(src, "__shfl_xor_sync(0xffffffffu") && strstr(src, "__shared__ float") && strstr(src, "__syncthreads()"));
    free(src);
    nnc_arena_free(a);
  }
}

static void check_launch_dims(void) {
  nnc_arena *a = nnc_arena_new();
  int64_t g[3], b[3];
  char err[256];
  CHECK(nnc_cg_cuda_launch_dims(elementwise(a), 3, g, b, err, sizeof err));
  CHECK(g[0] == 12 && g[1] == 1 && b[0] == 256 && b[1] == 1); /* ceil(3000 / 256) */
  CHECK(nnc_cg_cuda_launch_dims(block_reduce(a), 5, g, b, err, sizeof err));
  CHECK(g[0] == 5 && b[0] == 256);
  nnc_kernel *mm = matmul(a);
  CHECK(mm && nnc_cg_cuda_launch_dims(mm, 1, g, b, err, sizeof err));
  if (mm) CHECK(g[0] * 64 >= 70 && g[1] * 64 >= 100 && b[0] * b[1] == 256);
  nnc_arena_free(a);
}

/* What the printer refuses, with one message each. */
static void check_refusals(void) {
  nnc_arena *a = nnc_arena_new();
  nnc_diags d;
  char *text = NULL;
  size_t len = 0;
  FILE *sink = fopen("/dev/null", "w");
  /* a barrier in a thread loop narrower than the block */
  nnc_kernel *k = nnc_lk_new(a, "narrow_barrier");
  k->gpu = true;
  nnc_lvar *t = nnc_lk_var(k, "t", i64t()), *u = nnc_lk_var(k, "u", i64t());
  nnc_lstmt *b1 = nnc_ls_block(k), *b2 = nnc_ls_block(k);
  nnc_ls_push(k, b1, nnc_ls_barrier(k));
  nnc_ls_push(k, k->body, gpu_for(k, t, I(k, 64), NNC_LOOP_GPU_THREAD, b2));
  nnc_ls_push(k, k->body, gpu_for(k, u, I(k, 32), NNC_LOOP_GPU_THREAD, b1));
  nnc_diags_init(&d, sink);
  FILE *f = open_memstream(&text, &len);
  CHECK(!nnc_cg_cuda_kernel(f, k, &d) && d.nerrors == 1);
  /* a CPU kernel */
  nnc_kernel *cpu = nnc_lk_new(a, "cpu_kernel");
  nnc_diags_init(&d, sink);
  CHECK(!nnc_cg_cuda_kernel(f, cpu, &d) && d.nerrors == 1);
  /* a block loop inside a thread loop */
  nnc_kernel *nest = nnc_lk_new(a, "inverted");
  nest->gpu = true;
  nnc_lvar *tt = nnc_lk_var(nest, "t", i64t()), *bb = nnc_lk_var(nest, "b", i64t());
  nnc_lstmt *inner = nnc_ls_block(nest), *outer = nnc_ls_block(nest);
  nnc_ls_push(nest, outer, gpu_for(nest, bb, I(nest, 4), NNC_LOOP_GPU_BLOCK, inner));
  nnc_ls_push(nest, nest->body, gpu_for(nest, tt, I(nest, 32), NNC_LOOP_GPU_THREAD, outer));
  nnc_diags_init(&d, sink);
  CHECK(!nnc_cg_cuda_kernel(f, nest, &d) && d.nerrors == 1);
  /* a name that is not an identifier */
  nnc_kernel *bad = elementwise(a);
  bad->name = "exp-2";
  nnc_diags_init(&d, sink);
  CHECK(!nnc_cg_cuda_kernel(f, bad, &d) && d.nerrors == 1);
  fclose(f);
  free(text);
  fclose(sink);
  nnc_arena_free(a);
}

static void check_cache(tools *T) {
  char dir[300], old[4096] = "";
  snprintf(dir, sizeof dir, "%s/cache", T->tmp);
  const char *prev = getenv("NNC_CACHE_DIR");
  if (prev) snprintf(old, sizeof old, "%s", prev);
  setenv("NNC_CACHE_DIR", dir, 1);
  nnc_arena *a = nnc_arena_new();
  nnc_kernel *k = elementwise(a);
  bool ok;
  char *src = print_kernels(&k, 1, &ok);
  nnc_cg_cuda_ptx p1, p2;
  char err[512];
  nnc_diags why;
  CHECK(nnc_cg_cuda_compile(T->nv, src, "cached", "compute_90", true, &p1, nnc_diags_init_buffer(&why, err, sizeof err)) && !p1.cached);
  CHECK(nnc_cg_cuda_compile(T->nv, src, "cached", "compute_90", true, &p2, nnc_diags_init_buffer(&why, err, sizeof err)) && p2.cached);
  CHECK(p1.text && p2.text && p1.size == p2.size && memcmp(p1.text, p2.text, p1.size) == 0);
  int files = 0, temps = 0;
  DIR *dp = opendir(dir);
  for (struct dirent *e; dp && (e = readdir(dp));) {
    if (e->d_name[0] == '.') continue;
    files++;
    temps += strstr(e->d_name, ".tmp") != NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    remove(path);
  }
  if (dp) closedir(dp);
  rmdir(dir);
  CHECK(files == 1 && temps == 0);
  nnc_cg_cuda_ptx_free(&p1), nnc_cg_cuda_ptx_free(&p2);
  free(src);
  nnc_arena_free(a);
  if (prev) setenv("NNC_CACHE_DIR", old, 1);
  else unsetenv("NNC_CACHE_DIR");
}

/* The executor's form of a model's kernels (driver/exec_cuda.c replays CUDA Graphs, so lr, step
 * and seed come from device memory): the kernels that read any of them, printed so, through NVRTC
 * and ptxas. Not counted in the schedule table, which is the --emit form's. */
static void check_executor_form(tools *T, const char *model, nnc_kernel *const *ks, int nk) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_cg_cuda_prelude(f);
  bool ok = true;
  int n = 0;
  for (int i = 0; i < nk; i++) {
    const nnc_kernel *k = ks[i];
    if (!k->uses_scalar[NNC_LSC_LR] && !k->uses_scalar[NNC_LSC_STEP] && !k->uses_scalar[NNC_LSC_SEED]) continue;
    ok &= nnc_cg_cuda_kernel_with(f, k, NNC_CUDA_SCALARS_IN_MEMORY, &d);
    n++;
  }
  fclose(f);
  CHECK_MSG(ok, "%s: the executor's form does not print", model);
  tools saved = *T;
  char what[300];
  snprintf(what, sizeof what, "%s (executor form)", model);
  if (ok && n) CHECK_MSG(compile_and_validate(T, what, text), "%s", what);
  CHECK_MSG(!ok || T->kernels - saved.kernels == n, "%s: %d kernels in, %d validated", what, n,
            T->kernels - saved.kernels);
  saved.files = T->files;
  *T = saved;
  if (ok && n) printf("%-16s %4d kernels reading lr/step/seed from memory through NVRTC and ptxas\n", model, n);
  free(text);
}

/* The GPU schedule of every program of every model (and of the test models that use ops the
 * models do not: sin, cos, silu): one CUDA file per program. */
static void check_models(tools *T, const char *only) {
  static const char *const models[] = {"xor_mlp", "fashion_mlp", "mnist_conv", "lenet", "fashion_cnn",
                                       "fashion_bn_cnn", "cifar_cnn", "char_rnn", "char_lstm", "tiny_gpt",
                                       "tests/models/sincos_mlp"};
  nnc_options o = mr_default_options();
  o.batch = 8;
  for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
    if (only && strcmp(only, models[i])) continue;
    char path[256];
    snprintf(path, sizeof path, strchr(models[i], '/') ? "%s.nn" : "models/%s.nn", models[i]);
    nnc_source src;
    nnc_module *m = mr_compile(path, &o, true, &src, stderr);
    CHECK_MSG(m != NULL, "%s does not compile", path);
    if (!m) continue;
    nnc_arena *a = nnc_arena_new();
    /* as --target cuda compiles: one file per model, the distinct kernels of its programs */
    nnc_pipeline_opts po = nnc_pipeline_defaults(NNC_LOWER_GPU);
    po.no_fusion = true;
    nnc_compiled *c = mr_pipeline(m, &po, stderr);
    CHECK_MSG(c != NULL, "%s does not lower", models[i]);
    nnc_kernel **ks = NULL;
    int nk = 0;
    for (int p = 0; c && p < c->nprograms; p++) {
      const nnc_graph *g = c->programs[p].graph;
      nnc_lprogram *lp = c->programs[p].lowered;
      ks = realloc(ks, sizeof *ks * (size_t)(nk + lp->nkernels));
      for (int j = 0; j < lp->nkernels; j++) {
        nnc_kernel *k = lp->kernels[j];
        bool seen = false, clash = false;
        for (int q = 0; q < nk && !seen; q++) {
          bool same_name = !strcmp(ks[q]->name, k->name);
          seen = same_name && ks[q]->hash == k->hash && nnc_lk_equal(ks[q], k);
          clash |= same_name && !seen;
        }
        if (seen) continue;
        if (clash) k->name = nnc_arena_printf(a, "%s_%s", k->name, g->name);
        ks[nk++] = k;
      }
    }
    bool ok;
    char *text = print_kernels(ks, nk, &ok);
    CHECK_MSG(ok, "%s does not print", models[i]);
    int before = T->kernels;
    T->current = ks, T->ncurrent = nk;
    if (ok) CHECK_MSG(compile_and_validate(T, models[i], text), "%s", models[i]);
    T->ncurrent = 0;
    if (ok) check_executor_form(T, models[i], ks, nk);
    int tiled = 0;
    for (int j = 0; j < nk; j++) tiled += sched_of(ks[j]) != SCHED_FLAT;
    CHECK_MSG(tiled > 0, "%s: no kernel took a shared-memory schedule", models[i]);
    printf("%-16s %4d kernels through NVRTC and ptxas\n", models[i], T->kernels - before);
    free(text);
    free(ks);
    nnc_compiled_free(c);
    nnc_arena_free(a);
    nnc_module_free(m);
    nnc_source_free(&src);
  }
}

static int print_one(const char *name) {
  for (size_t i = 0; i < sizeof hand_kernels / sizeof *hand_kernels; i++) {
    if (strcmp(name, hand_kernels[i].name)) continue;
    nnc_arena *a = nnc_arena_new();
    nnc_kernel *k = hand_kernels[i].make(a);
    nnc_diags d;
    nnc_diags_init(&d, stderr);
    bool ok = k && nnc_cg_cuda_kernel(stdout, k, &d);
    nnc_arena_free(a);
    return ok ? 0 : 1;
  }
  fprintf(stderr, "cuda_compile: no kernel named %s\n", name);
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--print")) return print_one(argv[2]);
  tools T = {0};
  char err[512];
  nnc_diags why;
  if (!(T.nv = nnc_cg_cuda_nvrtc_open(nnc_diags_init_buffer(&why, err, sizeof err)))) {
    printf("cuda_compile: %s: %s\n", in_ci() ? "failing (CI=true)" : "skipped", err);
    return in_ci() ? 1 : SKIP;
  }
  if (!find_ptxas(T.ptxas, sizeof T.ptxas)) {
    printf("cuda_compile: %s: ptxas not found (set NNC_PTXAS or CUDA_HOME)\n", in_ci() ? "failing (CI=true)" : "skipped");
    nnc_cg_cuda_nvrtc_close(T.nv);
    return in_ci() ? 1 : SKIP;
  }
  snprintf(T.tmp, sizeof T.tmp, "%s/nnc_cuda_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(T.tmp)) return fprintf(stderr, "cuda_compile: no temporary directory\n"), 1;
  printf("NVRTC %s, %s, compute_90 -> sm_90\n", nnc_cg_cuda_nvrtc_version(T.nv), T.ptxas);
  check_hand_kernels(&T);
  check_launch_dims();
  check_refusals();
  check_cache(&T);
  check_models(&T, argc == 2 ? argv[1] : NULL);
  printf("%d kernels validated by ptxas: at most %d registers, %d spilling\n", T.kernels, T.max_regs, T.spilling);
  print_schedules(&T);
  rmdir(T.tmp);
  nnc_cg_cuda_nvrtc_close(T.nv);
  return check_summary();
}
