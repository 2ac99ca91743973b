/* The scratch allocator on synthetic interval sets (optimal cases, each order, the smallest
 * kept, random sets valid and above their lower bound), liveness and in-place reuse over
 * synthetic steps, and the in-place proof on hand-built loop IR kernels. */
#include <stdlib.h>
#include <string.h>

#include "../../ir/loop.h"
#include "../../passes/memplan.h"
#include "check.h"

#define IV(b, f, l) ((nnc_mem_interval){.bytes = (b), .first = (f), .last = (l)})

static bool valid(const nnc_mem_interval *iv, int n, int64_t total) {
  char err[256];
  bool ok = nnc_mem_intervals_valid(iv, n, total, err, sizeof err);
  if (!ok) fprintf(stderr, "%s\n", err);
  return ok;
}

/* Ranges never live together all start at 0; ranges all live together stack up. */
static void test_optimal_cases(void) {
  nnc_mem_interval chain[] = {IV(100, 0, 0), IV(64, 1, 1), IV(640, 2, 2), IV(1, 3, 3)};
  CHECK(nnc_mem_pack(chain, 4, NULL) == 640);
  for (int i = 0; i < 4; i++) CHECK(chain[i].offset == 0);
  nnc_mem_interval all[] = {IV(100, 0, 5), IV(64, 1, 4), IV(640, 2, 3), IV(1, 0, 9)};
  CHECK(nnc_mem_pack(all, 4, NULL) == 128 + 64 + 640 + 64);
  CHECK(nnc_mem_lower_bound(all, 4) == 128 + 64 + 640 + 64);
  CHECK(valid(all, 4, 896));
  /* a forward/backward shape: activations a0..a2 live to their backward use */
  nnc_mem_interval fb[] = {IV(256, 0, 6), IV(256, 1, 5), IV(256, 2, 4), IV(128, 3, 4), IV(128, 4, 5), IV(128, 5, 6)};
  int64_t t = nnc_mem_pack(fb, 6, NULL);
  CHECK(t == nnc_mem_lower_bound(fb, 6));
  CHECK(valid(fb, 6, t));
  /* unused ranges take no space */
  nnc_mem_interval unused[] = {IV(4096, -1, -1), IV(64, 0, 1), IV(0, 0, 3)};
  CHECK(nnc_mem_pack(unused, 3, NULL) == 64);
  CHECK(nnc_mem_lower_bound(unused, 3) == 64);
}

/* Best fit takes the smallest gap that fits, not the first. */
static void test_best_fit_gap(void) {
  /* placed by size: A (512, all) at 0, B (128, [0,1]) at 512, C (192, [0,3]) at 640, then
   * B dies: D (128, [2,3]) fits B's gap exactly rather than going on top */
  nnc_mem_interval iv[] = {IV(512, 0, 3), IV(128, 0, 1), IV(192, 0, 3), IV(128, 2, 3)};
  int64_t t = nnc_mem_best_fit(iv, 4, NNC_MEM_ORDER_SIZE);
  CHECK(t == 512 + 128 + 192);
  CHECK(iv[3].offset == iv[1].offset);
  CHECK(valid(iv, 4, t));
}

static uint32_t rnd(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return (uint32_t)(*s >> 33);
}

/* Random sets: every order gives a valid placement; pack keeps the smallest of them; nothing
 * beats the lower bound. */
static void test_random_sets(void) {
  uint64_t s = 1;
  int improved = 0;
  for (int round = 0; round < 300; round++) {
    int n = 1 + (int)(rnd(&s) % 40);
    nnc_mem_interval iv[40];
    for (int i = 0; i < n; i++) {
      int f = (int)(rnd(&s) % 30), len = (int)(rnd(&s) % 10);
      iv[i] = IV(1 + (int64_t)(rnd(&s) % 5000), f, f + len);
    }
    int64_t lb = nnc_mem_lower_bound(iv, n), best = -1, by_size = 0;
    for (int o = 0; o < NNC_MEM_ORDER_COUNT; o++) {
      int64_t t = nnc_mem_best_fit(iv, n, (nnc_mem_order)o);
      CHECK(valid(iv, n, t));
      CHECK(t >= lb);
      if (best < 0 || t < best) best = t;
      if (o == NNC_MEM_ORDER_SIZE) by_size = t;
    }
    nnc_mem_order chosen;
    int64_t t = nnc_mem_pack(iv, n, &chosen);
    CHECK(t == best);
    CHECK(valid(iv, n, t));
    CHECK(strcmp(nnc_mem_order_name(chosen), "?") != 0);
    improved += best < by_size;
  }
  CHECK(improved > 0); /* the other orders earn their keep on some sets */
}

/* --- liveness and in place over synthetic steps --------------------------------------------- */

typedef struct synth {
  nnc_graph g;
  nnc_mem_layout L;
  nnc_mem_buffer bufs[8];
  nnc_mem_plan P;
} synth;

static void synth_init(synth *x, int n, const int64_t *bytes) {
  memset(x, 0, sizeof *x);
  x->g.name = "synthetic";
  x->P = (nnc_mem_plan){.graph = &x->g, .layout = &x->L, .bufs = x->bufs, .nbufs = n};
  for (int i = 0; i < n; i++)
    x->bufs[i] = (nnc_mem_buffer){.name = "b", .kind = NNC_MEM_VALUE, .region = NNC_MEM_SCRATCH, .bytes = bytes[i],
                                  .param = -1, .tied_to = -1, .first = -1, .last = -1, .inplace_of = -1};
}

static void test_steps_inplace(void) {
  synth x;
  const int64_t bytes[] = {256, 256, 256, 256};
  synth_init(&x, 4, bytes);
  /* s0: b0 = f(); s1: b1 = g(b0) in place; s2: b2 = h(b1) in place but b1 is read again at s3;
   * s3: b3 = k(b1, b2) */
  const int w0[] = {0}, r1[] = {0}, w1[] = {1}, r2[] = {1}, w2[] = {2}, r3[] = {1, 2}, w3[] = {3};
  const int p1[][2] = {{1, 0}}, p2[][2] = {{2, 1}};
  nnc_mem_step steps[] = {{.writes = w0, .nwrites = 1},
                          {.reads = r1, .nreads = 1, .writes = w1, .nwrites = 1, .inplace = p1, .ninplace = 1},
                          {.reads = r2, .nreads = 1, .writes = w2, .nwrites = 1, .inplace = p2, .ninplace = 1},
                          {.reads = r3, .nreads = 2, .writes = w3, .nwrites = 1}};
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  CHECK(nnc_mem_plan_steps(&x.P, steps, 4, &d));
  CHECK(x.bufs[1].inplace_of == 0 && x.bufs[1].offset == x.bufs[0].offset);
  CHECK(x.bufs[2].inplace_of == -1);
  CHECK(x.bufs[0].first == 0 && x.bufs[0].last == 1 && x.bufs[1].last == 3 && x.bufs[3].first == 3);
  CHECK(x.P.ninplace == 1);
  CHECK(x.P.scratch_bytes == 3 * 256 && x.P.scratch_lower_bound == 3 * 256 && x.P.scratch_naive == 4 * 256);
  char err[256];
  CHECK(nnc_mem_plan_valid(&x.P, err, sizeof err));
  /* a step naming a buffer the plan lacks is reported */
  const int bad[] = {7};
  nnc_mem_step wrong = {.reads = bad, .nreads = 1};
  FILE *sink = fopen("/dev/null", "w");
  nnc_diags quiet;
  nnc_diags_init(&quiet, sink ? sink : stderr);
  CHECK(!nnc_mem_plan_steps(&x.P, &wrong, 1, &quiet));
  if (sink) fclose(sink);
}

/* An overlap the plan did not earn is caught. */
static void test_plan_valid_catches_overlap(void) {
  synth x;
  const int64_t bytes[] = {128, 128};
  synth_init(&x, 2, bytes);
  x.bufs[0].first = 0, x.bufs[0].last = 2, x.bufs[1].first = 1, x.bufs[1].last = 3;
  x.P.scratch_bytes = 256;
  x.bufs[1].offset = 64;
  char err[256];
  CHECK(!nnc_mem_plan_valid(&x.P, err, sizeof err));
  x.bufs[1].offset = 128;
  CHECK(nnc_mem_plan_valid(&x.P, err, sizeof err));
  x.bufs[1].offset = 160; /* unaligned, and past the region */
  CHECK(!nnc_mem_plan_valid(&x.P, err, sizeof err));
}

/* --- the in-place proof on loop IR ------------------------------------------------------------ */

typedef enum { SAME, SHIFTED, INNER_REPEAT, RAVEL_2D, TRANSPOSED, READ_AFTER } shape;

static nnc_kernel *kernel(nnc_arena *a, shape sh) {
  nnc_kernel *k = nnc_lk_new(a, "k");
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 16);
  nnc_lbuf *in = nnc_lk_buf(k, "in", NNC_F32, NNC_SCOPE_GLOBAL, 16);
  k->body = nnc_ls_block(k);
  nnc_lvar *i = nnc_lk_var(k, "i", nnc_lt(NNC_I64, 1)), *j = nnc_lk_var(k, "j", nnc_lt(NNC_I64, 1));
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_lexpr *vi = nnc_le_var(k, i), *vj = nnc_le_var(k, j);
  if (sh == SAME || sh == SHIFTED) {
    nnc_lexpr *at = sh == SAME ? vi : nnc_le_bin(k, NNC_LB_ADD, vi, nnc_le_int(k, 1));
    nnc_ls_push(k, body, nnc_ls_store(k, out, vi, nnc_le_un(k, NNC_LU_EXP, nnc_le_load(k, in, at, 1, NULL)), NULL));
    nnc_ls_push(k, k->body, nnc_ls_for(k, i, nnc_le_int(k, 0), nnc_le_int(k, 15), 1, NNC_LOOP_PARALLEL, body));
  } else if (sh == INNER_REPEAT) {
    nnc_ls_push(k, body, nnc_ls_store(k, out, vi, nnc_le_load(k, in, vi, 1, NULL), NULL));
    nnc_lstmt *inner = nnc_ls_block(k);
    nnc_ls_push(k, inner, nnc_ls_for(k, j, nnc_le_int(k, 0), nnc_le_int(k, 2), 1, NNC_LOOP_SERIAL, body));
    nnc_ls_push(k, k->body, nnc_ls_for(k, i, nnc_le_int(k, 0), nnc_le_int(k, 16), 1, NNC_LOOP_SERIAL, inner));
  } else if (sh == RAVEL_2D || sh == TRANSPOSED) {
    nnc_lexpr *rm = nnc_le_bin(k, NNC_LB_ADD, nnc_le_bin(k, NNC_LB_MUL, vi, nnc_le_int(k, 4)), vj);
    nnc_lexpr *tr = nnc_le_bin(k, NNC_LB_ADD, nnc_le_bin(k, NNC_LB_MUL, vj, nnc_le_int(k, 4)), vi);
    nnc_lexpr *load = nnc_le_load(k, in, sh == RAVEL_2D ? nnc_le_bin(k, NNC_LB_ADD, nnc_le_bin(k, NNC_LB_MUL, vi, nnc_le_int(k, 4)), vj) : tr, 1, NULL);
    nnc_ls_push(k, body, nnc_ls_store(k, out, rm, load, NULL));
    nnc_lstmt *inner = nnc_ls_block(k);
    nnc_ls_push(k, inner, nnc_ls_for(k, j, nnc_le_int(k, 0), nnc_le_int(k, 4), 1, NNC_LOOP_SERIAL, body));
    nnc_ls_push(k, k->body, nnc_ls_for(k, i, nnc_le_int(k, 0), nnc_le_int(k, 4), 1, NNC_LOOP_PARALLEL, inner));
  } else {
    /* out[i] = 1; then in[i] read in a later statement */
    nnc_lvar *t = nnc_lk_var(k, "t", nnc_lt(NNC_F32, 1));
    nnc_ls_push(k, body, nnc_ls_store(k, out, vi, nnc_le_const(k, nnc_lt(NNC_F32, 1), 1.0), NULL));
    nnc_ls_push(k, body, nnc_ls_let(k, t, nnc_le_load(k, in, vi, 1, NULL)));
    nnc_ls_push(k, k->body, nnc_ls_for(k, i, nnc_le_int(k, 0), nnc_le_int(k, 16), 1, NNC_LOOP_SERIAL, body));
  }
  nnc_lk_finish(k);
  return k;
}

/* The vector schedule's shape: lanes-wide steps, masked loads and store at the loop variable. */
static nnc_kernel *vector_kernel(nnc_arena *a, int step) {
  nnc_kernel *k = nnc_lk_new(a, "v");
  nnc_lbuf *out = nnc_lk_buf(k, "out", NNC_F32, NNC_SCOPE_GLOBAL, 20);
  nnc_lbuf *in = nnc_lk_buf(k, "in", NNC_F32, NNC_SCOPE_GLOBAL, 20);
  k->body = nnc_ls_block(k);
  nnc_lvar *i = nnc_lk_var(k, "i", nnc_lt(NNC_I64, 1));
  nnc_lexpr *mask = nnc_le_bin(k, NNC_LB_LT, nnc_le_bin(k, NNC_LB_ADD, nnc_le_splat(k, nnc_le_var(k, i), 4), nnc_le_lane(k, 4)),
                               nnc_le_splat(k, nnc_le_int(k, 20), 4));
  nnc_lstmt *body = nnc_ls_block(k);
  nnc_lexpr *x = nnc_le_load(k, in, nnc_le_var(k, i), 4, mask);
  nnc_ls_push(k, body, nnc_ls_store(k, out, nnc_le_var(k, i), nnc_le_bin(k, NNC_LB_MUL, x, x), mask));
  nnc_ls_push(k, k->body, nnc_ls_for(k, i, nnc_le_int(k, 0), nnc_le_int(k, 20), step, NNC_LOOP_SERIAL, body));
  nnc_lk_finish(k);
  return k;
}

static void test_inplace_proof(void) {
  nnc_arena *a = nnc_arena_new();
  CHECK(nnc_mem_inplace_proven(kernel(a, SAME), 0, 1));
  CHECK(!nnc_mem_inplace_proven(kernel(a, SAME), 1, 0));     /* in is not written */
  CHECK(!nnc_mem_inplace_proven(kernel(a, SAME), 0, 0));
  CHECK(!nnc_mem_inplace_proven(kernel(a, SHIFTED), 0, 1));  /* another element */
  CHECK(!nnc_mem_inplace_proven(kernel(a, INNER_REPEAT), 0, 1)); /* written twice */
  CHECK(nnc_mem_inplace_proven(kernel(a, RAVEL_2D), 0, 1));
  CHECK(!nnc_mem_inplace_proven(kernel(a, TRANSPOSED), 0, 1));
  CHECK(!nnc_mem_inplace_proven(kernel(a, READ_AFTER), 0, 1));
  CHECK(nnc_mem_inplace_proven(vector_kernel(a, 4), 0, 1));
  CHECK(!nnc_mem_inplace_proven(vector_kernel(a, 2), 0, 1)); /* vectors overlap the next step's */
  CHECK(!nnc_mem_inplace_proven(NULL, 0, 1));
  nnc_arena_free(a);
}

int main(void) {
  test_optimal_cases();
  test_best_fit_gap();
  test_random_sets();
  test_steps_inplace();
  test_plan_valid_catches_overlap();
  test_inplace_proof();
  return check_summary();
}
