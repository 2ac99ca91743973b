/* In-place calls in the emitted C: a hand-built program of scalar kernels whose memory plan
 * passes one scratch range as a kernel's output and its input (the shape of a loss's tail:
 * neg, div by n, then the gradient seed 1/n, negated, in one range), printed as model.c,
 * compiled with cc and run. A kernel called in place declares the shared parameters without
 * `restrict`; with them restrict, gcc inlines the kernels and drops the store of 1/n as dead
 * (the later load through the other pointer "cannot" see it), so the result came out 1, not
 * 0.25. The kernels that never share keep restrict. */
#include <stdlib.h>
#include <string.h>

#include "../../codegen/c_program.h"
#include "../../codegen/cc.h"
#include "../../runtime/abi.h"
#include "../../ir/loop.h"
#include "../../passes/lower.h"
#include "check.h"

/* out[0] = value */
static nnc_kernel *const_kernel(nnc_arena *a, double value) {
  nnc_kernel *k = nnc_lk_new(a, "const");
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 1);
  k->body = nnc_ls_block(k);
  nnc_ls_push(k, k->body, nnc_ls_store(k, out, nnc_le_int(k, 0), nnc_le_const(k, nnc_lt(NNC_F32, 1), value), NULL));
  nnc_lk_finish(k);
  return k;
}

/* out[0] = -in0[0] */
static nnc_kernel *neg_kernel(nnc_arena *a) {
  nnc_kernel *k = nnc_lk_new(a, "neg");
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 1);
  nnc_lbuf *in0 = nnc_lk_buf(k, "in0", NNC_F32, NNC_SCOPE_GLOBAL, 1);
  k->body = nnc_ls_block(k);
  nnc_lexpr *x = nnc_le_load(k, in0, nnc_le_int(k, 0), 1, NULL);
  nnc_ls_push(k, k->body, nnc_ls_store(k, out, nnc_le_int(k, 0), nnc_le_un(k, NNC_LU_NEG, x), NULL));
  nnc_lk_finish(k);
  return k;
}

/* out[0] = in0[0] / in1[0] */
static nnc_kernel *div_kernel(nnc_arena *a) {
  nnc_kernel *k = nnc_lk_new(a, "div");
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 1);
  nnc_lbuf *in0 = nnc_lk_buf(k, "in0", NNC_F32, NNC_SCOPE_GLOBAL, 1);
  nnc_lbuf *in1 = nnc_lk_buf(k, "in1", NNC_F32, NNC_SCOPE_GLOBAL, 1);
  k->body = nnc_ls_block(k);
  nnc_lexpr *q = nnc_le_bin(k, NNC_LB_DIV, nnc_le_load(k, in0, nnc_le_int(k, 0), 1, NULL),
                            nnc_le_load(k, in1, nnc_le_int(k, 0), 1, NULL));
  nnc_ls_push(k, k->body, nnc_ls_store(k, out, nnc_le_int(k, 0), q, NULL));
  nnc_lk_finish(k);
  return k;
}

enum { K_FOUR, K_ONE, K_NEG, K_DIV, NKERNELS };
/* plan buffers: x (persist 0), loss (io 0), grad (io 64), n (scratch 0), t (scratch 64) */
enum { B_X, B_LOSS, B_GRAD, B_N, B_T, NBUFS };

static nnc_lcall call(nnc_arena *a, int kernel, const char *what, int nb, int b0, int b1, int b2) {
  int *bufs = nnc_arena_alloc(a, sizeof *bufs * 3);
  bufs[0] = b0, bufs[1] = b1, bufs[2] = b2;
  return (nnc_lcall){.kernel = kernel, .bufs = bufs, .nbufs = nb, .what = what};
}

/* train_step: loss = -x / n; grad = -(-(1 / n)), with t taken over in place twice. */
static nnc_lprogram *program(nnc_arena *a) {
  static nnc_mem_layout layout;
  static nnc_mem_plan plan;
  static nnc_mem_buffer bufs[NBUFS];
  const nnc_type f32 = nnc_type_scalar(NNC_F32);
  const struct { const char *name; nnc_mem_region region; int64_t offset; } at[NBUFS] = {
      {"x", NNC_MEM_PERSIST, 0}, {"loss", NNC_MEM_IO, 0}, {"grad", NNC_MEM_IO, 64},
      {"n", NNC_MEM_SCRATCH, 0}, {"t", NNC_MEM_SCRATCH, 64}};
  for (int b = 0; b < NBUFS; b++)
    bufs[b] = (nnc_mem_buffer){.name = at[b].name, .region = at[b].region, .type = f32, .offset = at[b].offset,
                               .bytes = 4, .param = -1, .tied_to = -1, .first = -1, .last = -1, .inplace_of = -1};
  layout = (nnc_mem_layout){.batch_max = 1, .bufs = bufs, .nbufs = NBUFS, .persist_bytes = 64, .io_bytes = 128};
  plan = (nnc_mem_plan){.layout = &layout, .bufs = bufs, .nbufs = NBUFS, .scratch_bytes = 128};
  nnc_lprogram *p = nnc_arena_alloc(a, sizeof *p);
  nnc_kernel **ks = nnc_arena_alloc(a, sizeof *ks * NKERNELS);
  ks[K_FOUR] = const_kernel(a, 4.0), ks[K_ONE] = const_kernel(a, 1.0), ks[K_NEG] = neg_kernel(a), ks[K_DIV] = div_kernel(a);
  nnc_lcall *calls = nnc_arena_alloc(a, sizeof *calls * 7);
  int nc = 0;
  calls[nc++] = call(a, K_FOUR, "n", 1, B_N, -1, -1);
  calls[nc++] = call(a, K_NEG, "t = -x", 2, B_T, B_X, -1);
  calls[nc++] = call(a, K_DIV, "loss = t / n", 3, B_LOSS, B_T, B_N);
  calls[nc++] = call(a, K_ONE, "t = 1", 1, B_T, -1, -1);
  calls[nc++] = call(a, K_DIV, "t = t / n (in place)", 3, B_T, B_T, B_N);
  calls[nc++] = call(a, K_NEG, "t = -t (in place)", 2, B_T, B_T, -1);
  calls[nc++] = call(a, K_NEG, "grad = -t", 2, B_GRAD, B_T, -1);
  *p = (nnc_lprogram){.name = "train_step", .kernels = ks, .nkernels = NKERNELS, .calls = calls, .ncalls = nc,
                      .plan = &plan};
  return p;
}

/* model.c's text with its `#include "model.h"` replaced by the ABI header, which is all the
 * entry functions need: one string for nnc_cg_cc_compile. */
static char *model_source(nnc_lprogram *p) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return NULL;
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_c_model_source(f, "inplace", &p, 1, &d);
  fclose(f);
  const char *inc = ok && text ? strstr(text, "#include \"model.h\"") : NULL;
  if (!inc) return free(text), NULL;
  size_t head = (size_t)(inc - text), cap = len + strlen(nnc_cg_abi_text) + 1;
  char *src = malloc(cap);
  snprintf(src, cap, "%.*s%s%s", (int)head, text, nnc_cg_abi_text, inc + strlen("#include \"model.h\""));
  free(text);
  return src;
}

/* The signature line of the kernel whose name ends in suffix ("_neg("), or NULL. */
static const char *signature_of(const char *src, const char *suffix) {
  for (const char *s = strstr(src, "static void k"); s; s = strstr(s + 1, "static void k")) {
    const char *open = strchr(s, '(');
    if (open && (size_t)(open - s) >= strlen(suffix) - 1 && !strncmp(open - (strlen(suffix) - 1), suffix, strlen(suffix)))
      return s;
  }
  return NULL;
}

static bool line_has(const char *line, const char *what) {
  const char *end = line ? strchr(line, '\n') : NULL;
  const char *hit = line ? strstr(line, what) : NULL;
  return hit && end && hit < end;
}

static void test_inplace_scalar_chain(void) {
  nnc_arena *a = nnc_arena_new();
  char *src = model_source(program(a));
  CHECK(src != NULL);
  if (!src) return nnc_arena_free(a);
  /* neg and div are called in place over t: their out and in0 are plain pointers; div's in1
   * (n) never shares, and the const kernels' out neither */
  const char *neg = signature_of(src, "_neg("), *dv = signature_of(src, "_div("), *cst = signature_of(src, "_const(");
  CHECK(line_has(neg, "float *out") && line_has(neg, "const float *in0"));
  CHECK(line_has(dv, "float *out") && line_has(dv, "const float *in0") && line_has(dv, "const float *restrict in1"));
  CHECK(line_has(cst, "float *restrict out"));
  CHECK(strstr(src, "nnc_alias(S + 64)") != NULL);

  char err[4096];
  nnc_diags why;
  nnc_cg_lib *lib = nnc_cg_cc_compile(src, NULL, nnc_diags_init_buffer(&why, err, sizeof err));
  CHECK_MSG(lib != NULL, "%s", err);
  nnc_abi_entry entry = NULL;
  if (lib) *(void **)&entry = nnc_cg_cc_sym(lib, "inplace_train_step");
  CHECK(entry != NULL);
  if (entry) {
    _Alignas(64) static float persist[16], io[32], scratch[32];
    persist[0] = 2.0f;
    for (int i = 0; i < 32; i++) io[i] = scratch[i] = -99.0f;
    nnc_rt rt = {.abi_version = NNC_ABI_VERSION};
    nnc_args args = {.persist = (uint8_t *)persist, .io = (uint8_t *)io, .scratch = (uint8_t *)scratch, .n = 1};
    CHECK(entry(&rt, &args) == NNC_ABI_OK);
    CHECK_MSG(io[0] == -0.5f, "loss %g, not -0.5", io[0]);
    CHECK_MSG(io[16] == 0.25f, "grad %g, not 0.25 (the in-place store of 1/n was lost)", io[16]);
  }
  if (lib) nnc_cg_cc_close(lib);
  free(src);
  nnc_arena_free(a);
}

int main(void) {
  test_inplace_scalar_chain();
  return check_summary();
}
