/* The C printer's vectors against its scalars: every vector operation of the loop IR (arithmetic
 * with i32 wrap-around, division, floordiv/mod, min/max, comparisons, masks, select, casts with
 * saturation, fma, math, horizontal reductions, lanes, splats, masked loads and stores) is
 * printed once as an L-lane vector expression and once lane by lane as scalars, in one kernel,
 * and the two must agree bit for bit. For L = 4, 8 and 16 (narrower than, equal to and wider
 * than AVX2's registers) compiled by cc, and L = 8 by the other of gcc and clang where installed. Also the target
 * description: NNC_VECTOR_LANES overrides the host's lanes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "codegen/c.h"
#include "codegen/cc.h"
#include "ir/target.h"

enum { NIN = 32, NOPS = 128 };

typedef struct vk {
  nnc_kernel *k;
  nnc_lbuf *x, *y, *z, *xi, *yi, *xu, *yu; /* inputs: f32, i32 and u8 (y* never zero) */
  nnc_lbuf *outv, *outs, *mv, *ms;         /* results of the vector and the scalar form */
  int lanes;
  int nops;
} vk;

/* What one test expression reads: lanes L at element 0, or one lane l. */
typedef struct at {
  vk *g;
  int lanes, l;
} at;

static nnc_lexpr *in(at p, const nnc_lbuf *b) {
  nnc_kernel *k = p.g->k;
  return nnc_le_load(k, b, nnc_le_int(k, p.lanes > 1 ? 0 : p.l), p.lanes, NULL);
}
static nnc_lexpr *cst(at p, nnc_dtype dt, double v) { return nnc_le_const(p.g->k, nnc_lt(dt, p.lanes), v); }
static nnc_lexpr *bin(at p, nnc_lbinop op, nnc_lexpr *a, nnc_lexpr *b) { return nnc_le_bin(p.g->k, op, a, b); }
static nnc_lexpr *un(at p, nnc_lunop op, nnc_lexpr *a) { return nnc_le_un(p.g->k, op, a); }
static nnc_lexpr *cast(at p, nnc_dtype dt, nnc_lexpr *a) { return nnc_le_cast(p.g->k, nnc_lt(dt, p.lanes), a); }

/* The operand pair of a dtype: f32 x, y; i32 xi, yi; u8 xu, yu; i64 the i32 ones widened. */
static nnc_lexpr *opa(at p, nnc_dtype dt) {
  return dt == NNC_F32 ? in(p, p.g->x) : dt == NNC_I32 ? in(p, p.g->xi) : dt == NNC_U8 ? in(p, p.g->xu) : cast(p, dt, in(p, p.g->xi));
}
static nnc_lexpr *opb(at p, nnc_dtype dt) {
  return dt == NNC_F32 ? in(p, p.g->y) : dt == NNC_I32 ? in(p, p.g->yi) : dt == NNC_U8 ? in(p, p.g->yu) : cast(p, dt, in(p, p.g->yi));
}

static const nnc_dtype numbers[] = {NNC_F32, NNC_I32, NNC_U8, NNC_I64};

/* Test expression number op (NULL past the last), of any type; the caller converts it to f32. */
static nnc_lexpr *test_expr(at p, int op) {
  int n = 0;
  for (int d = 0; d < 4; d++) {
    nnc_dtype dt = numbers[d];
    bool fl = dt == NNC_F32;
    static const nnc_lbinop bins[] = {NNC_LB_ADD, NNC_LB_SUB, NNC_LB_MUL, NNC_LB_DIV, NNC_LB_FLOORDIV, NNC_LB_MOD,
                                      NNC_LB_MIN, NNC_LB_MAX, NNC_LB_LT,  NNC_LB_LE,  NNC_LB_GT,       NNC_LB_GE,
                                      NNC_LB_EQ,  NNC_LB_NE,  NNC_LB_AND, NNC_LB_OR};
    for (size_t b = 0; b < sizeof bins / sizeof *bins; b++) {
      if (fl && (bins[b] == NNC_LB_AND || bins[b] == NNC_LB_OR)) continue;
      if (op == n++) return bin(p, bins[b], opa(p, dt), opb(p, dt));
    }
    if (op == n++) return un(p, NNC_LU_NEG, opa(p, dt));
    if (op == n++) return un(p, NNC_LU_ABS, opa(p, dt));
    if (!fl && op == n++) return un(p, NNC_LU_NOT, opa(p, dt));
    if (op == n++) return nnc_le_select(p.g->k, bin(p, NNC_LB_LT, opa(p, dt), opb(p, dt)), opa(p, dt), cst(p, dt, 3));
    if (op == n++) return cast(p, NNC_BOOL, opa(p, dt)); /* != 0 */
    for (int t = 0; t < 4; t++)
      if (numbers[t] != dt && op == n++) return cast(p, numbers[t], opa(p, dt));
    if (op == n++) return nnc_le_hreduce(p.g->k, NNC_LB_ADD, opa(p, dt)); /* the caller's tree when scalar */
    if (op == n++) return nnc_le_hreduce(p.g->k, NNC_LB_MAX, opa(p, dt));
    if (op == n++) return nnc_le_hreduce(p.g->k, NNC_LB_MIN, opa(p, dt));
  }
  for (int m = 0; m < NNC_LU_COUNT; m++) /* math: every f32-only operator of ir/loop_ops.def */
    if (nnc_lunops[m].dtypes == NNC_LDT_FLOAT && op == n++) return un(p, (nnc_lunop)m, in(p, p.g->x));
  if (op == n++) return nnc_le_fma(p.g->k, in(p, p.g->x), in(p, p.g->y), in(p, p.g->z));
  if (op == n++) return bin(p, NNC_LB_POW, un(p, NNC_LU_ABS, in(p, p.g->x)), in(p, p.g->y));
  nnc_lexpr *m1 = bin(p, NNC_LB_LT, in(p, p.g->x), in(p, p.g->y)), *m2 = bin(p, NNC_LB_GT, in(p, p.g->xi), in(p, p.g->yi));
  if (op == n++) return bin(p, NNC_LB_AND, m1, m2);
  if (op == n++) return bin(p, NNC_LB_OR, m1, m2);
  if (op == n++) return un(p, NNC_LU_NOT, m1);
  if (op == n++) return bin(p, NNC_LB_EQ, m1, m2);
  if (op == n++) return bin(p, NNC_LB_NE, m1, m2);
  if (op == n++) return nnc_le_select(p.g->k, m1, m2, un(p, NNC_LU_NOT, m2)); /* a select of masks */
  nnc_kernel *k = p.g->k;
  if (op == n++) /* splat of a scalar load */
    return p.lanes > 1 ? nnc_le_splat(k, nnc_le_load(k, p.g->x, nnc_le_int(k, 5), 1, NULL), p.lanes)
                       : nnc_le_load(k, p.g->x, nnc_le_int(k, 5), 1, NULL);
  if (op == n++) return p.lanes > 1 ? nnc_le_lane(k, p.lanes) : nnc_le_int(k, p.l);
  if (op == n++) { /* a masked load: the first lanes/2 + 1 lanes */
    int64_t lim = p.g->lanes / 2 + 1;
    if (p.lanes == 1) return nnc_le_load(k, p.g->x, nnc_le_int(k, p.l), 1, bin(p, NNC_LB_LT, nnc_le_int(k, p.l), nnc_le_int(k, lim)));
    return nnc_le_load(k, p.g->x, nnc_le_int(k, 0), p.lanes,
                       bin(p, NNC_LB_LT, nnc_le_lane(k, p.lanes), nnc_le_splat(k, nnc_le_int(k, lim), p.lanes)));
  }
  if (op == n++) return nnc_le_load(k, p.g->x, nnc_le_int(k, p.lanes > 1 ? 0 : p.l), p.lanes,
                                    p.lanes > 1 ? nnc_le_splat(k, nnc_le_cast(k, nnc_lt(NNC_BOOL, 1), cst((at){p.g, 1, 0}, NNC_I32, 1)), p.lanes)
                                                : NULL); /* every lane enabled: the full load */
  return NULL;
}

/* The scalar form of an hreduce: the printer's halving tree over the lanes. */
static nnc_lexpr *hreduce_tree(vk *g, nnc_lbinop rop, int op) {
  nnc_lexpr *t[64];
  for (int l = 0; l < g->lanes; l++) t[l] = test_expr((at){g, 1, l}, op)->a;
  for (int h = g->lanes / 2; h > 0; h /= 2)
    for (int l = 0; l < h; l++) t[l] = nnc_le_bin(g->k, rop, t[l], t[l + h]);
  return t[0];
}

static nnc_lexpr *as_f32(nnc_kernel *k, nnc_lexpr *e) {
  if (e->type.dtype == NNC_BOOL) e = nnc_le_cast(k, nnc_lt(NNC_I32, e->type.lanes), e);
  return nnc_le_cast(k, nnc_lt(NNC_F32, e->type.lanes), e);
}

static vk build(nnc_arena *a, int L) {
  vk g = {0};
  g.lanes = L;
  nnc_kernel *k = g.k = nnc_lk_new(a, "vec");
  nnc_lbuf **ins[] = {&g.x, &g.y, &g.z, &g.xi, &g.yi, &g.xu, &g.yu};
  const char *names[] = {"x", "y", "z", "xi", "yi", "xu", "yu"};
  const nnc_dtype dts[] = {NNC_F32, NNC_F32, NNC_F32, NNC_I32, NNC_I32, NNC_U8, NNC_U8};
  for (int i = 0; i < 7; i++) *ins[i] = nnc_lk_buf(k, names[i], dts[i], NNC_SCOPE_GLOBAL, NIN);
  g.outv = nnc_lk_buf(k, "outv", NNC_F32, NNC_SCOPE_GLOBAL, (int64_t)NOPS * L);
  g.outs = nnc_lk_buf(k, "outs", NNC_F32, NNC_SCOPE_GLOBAL, (int64_t)NOPS * L);
  g.mv = nnc_lk_buf(k, "mv", NNC_F32, NNC_SCOPE_GLOBAL, L);
  g.ms = nnc_lk_buf(k, "ms", NNC_F32, NNC_SCOPE_GLOBAL, L);
  for (int op = 0;; op++) {
    nnc_lexpr *v = test_expr((at){&g, L, 0}, op);
    if (!v) break;
    g.nops++;
    if (v->kind == NNC_LE_HREDUCE) {
      nnc_ls_push(k, k->body, nnc_ls_store(k, g.outv, nnc_le_int(k, (int64_t)op * L), as_f32(k, v), NULL));
      nnc_ls_push(k, k->body, nnc_ls_store(k, g.outs, nnc_le_int(k, (int64_t)op * L), as_f32(k, hreduce_tree(&g, v->op, op)), NULL));
      continue;
    }
    nnc_ls_push(k, k->body, nnc_ls_store(k, g.outv, nnc_le_int(k, (int64_t)op * L), as_f32(k, v), NULL));
    for (int l = 0; l < L; l++)
      nnc_ls_push(k, k->body, nnc_ls_store(k, g.outs, nnc_le_int(k, (int64_t)op * L + l), as_f32(k, test_expr((at){&g, 1, l}, op)), NULL));
  }
  /* a masked store of the lanes below 3 */
  nnc_lexpr *m = nnc_le_bin(k, NNC_LB_LT, nnc_le_lane(k, L), nnc_le_splat(k, nnc_le_int(k, 3), L));
  nnc_ls_push(k, k->body, nnc_ls_store(k, g.mv, nnc_le_int(k, 0), nnc_le_load(k, g.x, nnc_le_int(k, 0), L, NULL), m));
  for (int l = 0; l < 3 && l < L; l++)
    nnc_ls_push(k, k->body, nnc_ls_store(k, g.ms, nnc_le_int(k, l), nnc_le_load(k, g.x, nnc_le_int(k, l), 1, NULL), NULL));
  nnc_lk_finish(k);
  return g;
}

typedef void (*vec_fn)(const float *, const float *, const float *, const int32_t *, const int32_t *, const uint8_t *,
                       const uint8_t *, float *, float *, float *, float *);

static bool same(float a, float b) { return memcmp(&a, &b, 4) == 0 || (a != a && b != b); }

static void check_lanes(int L, const char *cc) {
  nnc_arena *a = nnc_arena_new();
  vk g = build(a, L);
  CHECK_MSG(g.nops <= NOPS && g.k->nerrors == 0, "%d ops, %s", g.nops, g.k->first_error ? g.k->first_error : "");
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fprintf(f, "#include \"runtime/abi.h\"\n");
  const nnc_kernel *ks[1] = {g.k};
  nnc_cg_c_prelude(f, ks, 1);
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  bool ok = nnc_cg_c_kernel(f, g.k, &d);
  fprintf(f, "void run(const float *x, const float *y, const float *z, const int32_t *xi, const int32_t *yi,"
             " const uint8_t *xu, const uint8_t *yu, float *outv, float *outs, float *mv, float *ms) {"
             " vec(0, x, y, z, xi, yi, xu, yu, outv, outs, mv, ms); }\n");
  fclose(f);
  CHECK(ok);
  char cwd[1024], flags[1100], err[8192] = "";
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  snprintf(flags, sizeof flags, "-I%s -Wl,--no-as-needed -lm", cwd); /* math lanes call libm */
  char *old_cc = getenv("CC") ? strdup(getenv("CC")) : NULL;
  if (cc) setenv("CC", cc, 1);
  nnc_diags why;
  nnc_cg_lib *lib = ok ? nnc_cg_cc_compile(text, flags, nnc_diags_init_buffer(&why, err, sizeof err)) : NULL;
  if (old_cc) setenv("CC", old_cc, 1), free(old_cc);
  else unsetenv("CC");
  CHECK_MSG(lib, "%d lanes, %s: %s", L, cc ? cc : "cc", err);
  free(text);
  vec_fn run = lib ? (vec_fn)nnc_cg_cc_sym(lib, "run") : NULL;
  if (run) {
    float x[NIN], y[NIN], z[NIN], outv[NOPS * 32], outs[NOPS * 32], mv[32], ms[32];
    int32_t xi[NIN], yi[NIN];
    uint8_t xu[NIN], yu[NIN];
    static const float xs[] = {1.5f, -2.25f, 0.0f, -0.0f, 3e9f, -3e9f, 7.75f, -0.5f, 250.5f, 300.0f, 1e-3f, -7.0f};
    static const int32_t is[] = {7, -7, 2147483647, -2147483647 - 1, 65536, -3, 0, 100000, -1, 12, 5, -100000};
    for (int t = 0; t < NIN; t++) {
      x[t] = t == 13 ? NAN : t == 14 ? INFINITY : xs[t % 12] * (float)(1 + t / 12);
      y[t] = xs[(t * 5 + 3) % 12] + 0.5f, z[t] = (float)t * 0.37f - 4.0f;
      xi[t] = (int32_t)((uint32_t)is[t % 12] + (uint32_t)(t / 12)), yi[t] = is[(t * 7 + 1) % 12] ? is[(t * 7 + 1) % 12] : 9;
      xu[t] = (uint8_t)(t * 37 + 200), yu[t] = (uint8_t)(t * 11 % 255 + 1);
    }
    for (int t = 0; t < NOPS * 32; t++) outv[t] = outs[t] = -99.0f;
    for (int t = 0; t < 32; t++) mv[t] = ms[t] = -99.0f;
    run(x, y, z, xi, yi, xu, yu, outv, outs, mv, ms);
    int bad = 0;
    for (int op = 0; op < g.nops; op++)
      for (int l = 0; l < L; l++)
        if (!same(outv[op * L + l], outs[op * L + l]) && bad++ < 8)
          fprintf(stderr, "%d lanes, %s: op %d lane %d: vector %.9g, scalar %.9g\n", L, cc ? cc : "cc", op, l,
                  outv[op * L + l], outs[op * L + l]);
    for (int l = 0; l < L; l++) bad += !same(mv[l], ms[l]);
    CHECK_MSG(bad == 0, "%d lanes, %s: %d lanes differ", L, cc ? cc : "cc", bad);
  }
  nnc_cg_cc_close(lib);
  nnc_arena_free(a);
}

static bool have(const char *cc) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "%s --version > /dev/null 2>&1", cc);
  return system(cmd) == 0;
}

static void test_target(void) {
  unsetenv("NNC_VECTOR_LANES");
  nnc_target t = nnc_target_host();
  CHECK(t.f32_lanes == 4 || t.f32_lanes == 8 || t.f32_lanes == 16);
  CHECK(t.f32_lanes * 32 == t.vector_bits && !t.lanes_overridden);
  CHECK(t.cores >= 1 && t.cflags && t.isa);
  CHECK(nnc_target_lanes(&t, NNC_U8) == 4 * t.f32_lanes && nnc_target_lanes(&t, NNC_I64) == t.f32_lanes / 2);
  setenv("NNC_VECTOR_LANES", "32", 1);
  t = nnc_target_host();
  CHECK(t.f32_lanes == 32 && t.lanes_overridden);
  char buf[160];
  CHECK(strstr(nnc_target_str(&t, buf, sizeof buf), "f32x32 (NNC_VECTOR_LANES)"));
  setenv("NNC_VECTOR_LANES", "12", 1); /* not a power of two: ignored */
  t = nnc_target_host();
  CHECK(!t.lanes_overridden && t.f32_lanes * 32 == t.vector_bits);
  setenv("NNC_VECTOR_LANES", "8x", 1);
  CHECK(!nnc_target_host().lanes_overridden);
  unsetenv("NNC_VECTOR_LANES");
}

int main(void) {
  test_target();
  static const int lanes[] = {4, 8, 16};
  for (int i = 0; i < 3; i++) check_lanes(lanes[i], NULL);
  /* the other compiler of gcc and clang, at the AVX2 width */
  bool cc_is_clang = system("cc --version 2>/dev/null | grep -qi clang") == 0;
  const char *other = cc_is_clang ? "gcc" : "clang";
  if (have(other)) check_lanes(8, other);
  return check_summary();
}
