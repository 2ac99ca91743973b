/* The C-family printer (codegen/c_family.c) through both printers: one expression printed by
 * the C and the CUDA backends must parenthesize alike. f32 addition does not associate, so
 * a + (b + c) must keep its parentheses on both (the CUDA printer once dropped them, giving
 * (a + b) + c: other bits than the interpreter's); logic and ?: print alike; names that are
 * not identifiers, or that the dialect reserves, are renamed. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codegen/c.h"
#include "codegen/cuda.h"
#include "ir/loop.h"

/* out[0] = x[0] + (x[1] + x[2]); flag[0] = (x[0] < x[1] && x[1] < x[2]) ? 1 : 0, in a CPU and
 * a GPU (one thread) schedule */
static nnc_kernel *sample(nnc_arena *a, bool gpu) {
  nnc_kernel *k = nnc_lk_new(a, "sample");
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 1);
  nnc_lbuf *flag = nnc_lk_buf(k, "3flag", NNC_I32, NNC_SCOPE_GLOBAL, 1);
  nnc_lbuf *x = nnc_lk_buf(k, "x.in", NNC_F32, NNC_SCOPE_GLOBAL, 3);
  nnc_lexpr *x0 = nnc_le_load(k, x, nnc_le_int(k, 0), 1, NULL), *x1 = nnc_le_load(k, x, nnc_le_int(k, 1), 1, NULL);
  nnc_lexpr *x2 = nnc_le_load(k, x, nnc_le_int(k, 2), 1, NULL);
  nnc_lexpr *sum = nnc_le_bin(k, NNC_LB_ADD, x0, nnc_le_bin(k, NNC_LB_ADD, x1, x2));
  nnc_lexpr *both = nnc_le_bin(k, NNC_LB_AND, nnc_le_bin(k, NNC_LB_LT, x0, x1), nnc_le_bin(k, NNC_LB_LT, x1, x2));
  nnc_lexpr *one = nnc_le_const(k, nnc_lt(NNC_I32, 1), 1), *zero = nnc_le_const(k, nnc_lt(NNC_I32, 1), 0);
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_ls_push(k, body, nnc_ls_store(k, out, nnc_le_int(k, 0), sum, NULL));
  nnc_ls_push(k, body, nnc_ls_store(k, flag, nnc_le_int(k, 0), nnc_le_select(k, both, one, zero), NULL));
  if (gpu) {
    nnc_lvar *b = nnc_lk_var(k, "block", nnc_lt(NNC_I64, 1)), *t = nnc_lk_var(k, "t", nnc_lt(NNC_I64, 1));
    nnc_lstmt *threads = nnc_ls_for(k, t, nnc_le_int(k, 0), nnc_le_int(k, 1), 1, NNC_LOOP_GPU_THREAD, body);
    threads->axis = 0;
    nnc_lstmt *blocks = nnc_ls_for(k, b, nnc_le_int(k, 0), nnc_le_int(k, 1), 1, NNC_LOOP_GPU_BLOCK, threads);
    blocks->axis = 0;
    k->gpu = true;
    body = blocks;
  }
  k->body = body;
  nnc_lk_finish(k);
  return k;
}

static char *printed(bool gpu) {
  nnc_arena *a = nnc_arena_new();
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = gpu ? nnc_cg_cuda_kernel(f, sample(a, true), &d) : nnc_cg_c_kernel(f, sample(a, false), &d);
  fclose(f);
  CHECK(ok && d.nerrors == 0);
  nnc_arena_free(a);
  return text;
}

int main(void) {
  char *c = printed(false), *cuda = printed(true);
  for (int i = 0; i < 2; i++) {
    const char *text = i ? cuda : c;
    CHECK_MSG(strstr(text, "out[0] = x_in[0] + (x_in[1] + x_in[2]);"), "%s", text);
    CHECK_MSG(strstr(text, "= ((x_in[0] < x_in[1] && x_in[1] < x_in[2]) ? 1 : 0);"), "%s", text);
    CHECK_MSG(strstr(text, "v_3flag_1[0] ="), "%s", text); /* a name cannot start with a digit */
  }
  free(c), free(cuda);
  return check_summary();
}
