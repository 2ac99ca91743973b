/* The C printer (codegen/c.h): loop IR -> C99 with vector extensions.
 *
 * Scalars map to C types (f32 float, i32 int32_t, u8 uint8_t, i64 int64_t, bool int). A vector
 * type TxL is `nnc_TxL`, a GCC/Clang `vector_size` type; a boolxL mask is `nnc_mxL`, 32-bit
 * lanes holding -1 or 0. Vectors use the compilers' native vector operations: + - * / & | ~
 * as C operators, comparisons as vector comparisons, select/min/max as bitwise blends (C has no
 * vector ?:), conversions as __builtin_convertvector, fma as a contracted a * b + c under clang
 * with FMA hardware (lane-wise fmaf elsewhere, which gcc vectorizes). Those sit in one-line
 * always-inline prelude helpers (`nnc_sel_f32x8`, `nnc_lt_f32x8`). Only math, integer division,
 * saturating f32 -> int casts, reductions and partially masked accesses go lane by lane. Loads
 * and stores go through memcpy, so nothing assumes alignment. Unrolled loops are unrolled here,
 * with the loop variable a constant. */
#include "codegen/c.h"

#include "codegen/c_family.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* --- C names of types --------------------------------------------------------------------- */

/* the suffix of the vector types and helpers (a bool vector is a mask: nnc_mx8) */
static nnc_cf_by_dtype dt_suffixes = {[NNC_F32] = "f32", [NNC_I32] = "i32", [NNC_U8] = "u8", [NNC_I64] = "i64",
                                      [NNC_BOOL] = "m"};
static nnc_cf_by_dtype c_scalar_types = {[NNC_F32] = "float", [NNC_I32] = "int32_t", [NNC_U8] = "uint8_t",
                                         [NNC_I64] = "int64_t", [NNC_BOOL] = "int"};

static const char *dt_suffix(nnc_dtype dt) { return nnc_cf_of_dtype(dt_suffixes, dt); }
static const char *scalar_ctype(nnc_dtype dt) { return nnc_cf_of_dtype(c_scalar_types, dt); }

/* "float", "nnc_f32x16", "nnc_mx16" */
static const char *ctype(nnc_ltype t, char *buf, size_t cap) {
  if (t.lanes == 1) snprintf(buf, cap, "%s", scalar_ctype(t.dtype));
  else snprintf(buf, cap, "nnc_%sx%d", dt_suffix(t.dtype), t.lanes);
  return buf;
}

/* --- the prelude --------------------------------------------------------------------------- */

static const char prelude_fixed[] =
    "#include <math.h>\n"
    "#include <stdint.h>\n"
    "#include <string.h>\n"
    "\n"
    "/* Helpers pass vectors wider than the target's registers by value: compilers note the ABI of\n"
    " * such calls, which stay inside this file. */\n"
    "#if defined(__clang__)\n"
    "#pragma clang diagnostic ignored \"-Wunknown-warning-option\"\n"
    "#endif\n"
    "#if defined(__GNUC__)\n"
    "#pragma GCC diagnostic ignored \"-Wpsabi\"\n"
    "#endif\n"
    "\n"
    "/* Contraction: a * b + c written as two operations keeps two roundings, as in nnc's\n"
    " * interpreter; only the loop IR's fma fuses. gcc in ISO C mode (-std=c99) does not contract;\n"
    " * clang would within an expression, so it is told not to. */\n"
    "#if defined(__clang__)\n"
    "#pragma STDC FP_CONTRACT OFF\n"
    "#if defined(__FMA__) || defined(__AVX512F__) || defined(__ARM_FEATURE_FMA)\n"
    "/* vector fma as a * b + c contracted: one fused instruction per register */\n"
    "#define NNC_CONTRACT_FMA 1\n"
    "#endif\n"
    "#endif\n"
    "\n"
    "/* Helpers: each kernel file uses some of them. Vector helpers are one native vector\n"
    " * operation or a short lane loop; inlining them keeps vectors in registers. */\n"
    "#define NNC_HELPER static inline __attribute__((unused, always_inline))\n"
    "/* Lane-wise helpers (math, integer division, saturating casts, fma without a contracting\n"
    " * compiler): one loop over the lanes; gcc vectorizes fmaf lanes into fused instructions. */\n"
    "#define NNC_LANEWISE1(name, R, A, L, expr) \\\n"
    "  NNC_HELPER R name(A a) { R r; for (int l = 0; l < L; l++) r[l] = (expr); return r; }\n"
    "#define NNC_LANEWISE2(name, R, A, B, L, expr) \\\n"
    "  NNC_HELPER R name(A a, B b) { R r; for (int l = 0; l < L; l++) r[l] = (expr); return r; }\n"
    "#define NNC_LANEWISE3(name, R, A, B, C, L, expr) \\\n"
    "  NNC_HELPER R name(A a, B b, C c) { R r; for (int l = 0; l < L; l++) r[l] = (expr); return r; }\n"
    "\n"
    "/* f32 -> integer conversions saturate and send NaN to 0 (docs/ir.md). */\n"
    "NNC_HELPER int32_t nnc_f2i32(float x) {\n"
    "  return x != x ? 0 : x <= -2147483648.0f ? INT32_MIN : x >= 2147483647.0f ? INT32_MAX : (int32_t)x;\n"
    "}\n"
    "NNC_HELPER uint8_t nnc_f2u8(float x) { return x != x || x <= 0.0f ? 0 : x >= 255.0f ? 255 : (uint8_t)x; }\n"
    "NNC_HELPER int64_t nnc_f2i64(float x) {\n"
    "  return x != x ? 0 : x <= -9223372036854775808.0f ? INT64_MIN : x >= 9223372036854775808.0f ? INT64_MAX : (int64_t)x;\n"
    "}\n"
    "/* Floor division and modulo (the remainder takes the divisor's sign). */\n"
    "NNC_HELPER int64_t nnc_floordiv_i64(int64_t a, int64_t b) { int64_t q = a / b; return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q; }\n"
    "NNC_HELPER int64_t nnc_mod_i64(int64_t a, int64_t b) { return a - nnc_floordiv_i64(a, b) * b; }\n"
    "NNC_HELPER int32_t nnc_floordiv_i32(int32_t a, int32_t b) { return (int32_t)nnc_floordiv_i64(a, b); }\n"
    "NNC_HELPER int32_t nnc_mod_i32(int32_t a, int32_t b) { return (int32_t)nnc_mod_i64(a, b); }\n"
    "NNC_HELPER uint8_t nnc_floordiv_u8(uint8_t a, uint8_t b) { return (uint8_t)(a / b); }\n"
    "NNC_HELPER uint8_t nnc_mod_u8(uint8_t a, uint8_t b) { return (uint8_t)(a % b); }\n"
    "NNC_HELPER float nnc_floordiv_f32(float a, float b) { return floorf(a / b); }\n"
    "NNC_HELPER float nnc_mod_f32(float a, float b) { return a - floorf(a / b) * b; }\n"
    "NNC_HELPER float nnc_rsqrt_f32(float x) { return 1.0f / sqrtf(x); }\n"
    "#define NNC_MIN(a, b) ((a) < (b) ? (a) : (b))\n"
    "#define NNC_MAX(a, b) ((a) > (b) ? (a) : (b))\n"
    "\n"
    "/* Atomic add for parallel loops: a compare-and-swap loop on the float's bits. */\n"
    "NNC_HELPER void nnc_atomic_add_f32(float *p, float v) {\n"
    "  uint32_t old = __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED), upd;\n"
    "  do {\n"
    "    float f;\n"
    "    memcpy(&f, &old, 4);\n"
    "    f += v;\n"
    "    memcpy(&upd, &f, 4);\n"
    "  } while (!__atomic_compare_exchange_n((uint32_t *)p, &old, upd, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED));\n"
    "}\n"
    "NNC_HELPER void nnc_atomic_add_i32(int32_t *p, int32_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }\n"
    "\n"
    "/* rng_uniform (docs/ir.md, \"Random numbers\"): Philox4x32-10, the same bits as nnc's interpreter. */\n"
#include "philox_text.inc"
    "NNC_HELPER float nnc_rng(uint32_t seed, uint32_t key, uint32_t step, uint64_t i) { return nnc_rng_uniform_at(seed, key, step, i); }\n";

static const nnc_dtype value_dtypes[] = {NNC_F32, NNC_I32, NNC_U8, NNC_I64};

/* A lane-mask type of a value type's element width (what its comparisons give): blends work on
 * it bit by bit. f32 and i32 share nnc_mxL (int32 lanes). */
static const char *wide_mask(nnc_dtype dt, int L, char *buf, size_t cap) {
  if (dt == NNC_F32 || dt == NNC_I32) snprintf(buf, cap, "nnc_mx%d", L);
  else snprintf(buf, cap, "nnc_%sx%d", dt_suffix(dt), L);
  return buf;
}

/* x converted from a comparison of the element width to nnc_mxL (lanes -1 or 0). */
static void narrow_mask(FILE *f, nnc_dtype dt, int L, const char *x) {
  if (dt == NNC_F32 || dt == NNC_I32) fprintf(f, "(nnc_mx%d)(%s)", L, x);
  else fprintf(f, "__builtin_convertvector(%s, nnc_mx%d)", x, L);
}

/* "{a, a, ..., a}": an initializer of L copies. */
static void splat_init(FILE *f, const char *a, int L) {
  fputc('{', f);
  for (int l = 0; l < L; l++) fprintf(f, "%s%s", l ? ", " : "", a);
  fputc('}', f);
}

static void prelude_types(FILE *f, int L) {
  fprintf(f, "typedef int32_t nnc_mx%d __attribute__((vector_size(%d)));\n", L, 4 * L);
  fprintf(f, "typedef uint32_t nnc_u32x%d __attribute__((vector_size(%d)));\n", L, 4 * L);
  for (int i = 0; i < 4; i++) {
    nnc_dtype dt = value_dtypes[i];
    int size = dt == NNC_I64 ? 8 : (int)nnc_dtype_size(dt);
    fprintf(f, "typedef %s nnc_%sx%d __attribute__((vector_size(%d)));\n", scalar_ctype(dt), dt_suffix(dt), L, size * L);
  }
  fprintf(f, "NNC_HELPER nnc_i64x%d nnc_lane_i64x%d(void) { nnc_i64x%d r = {", L, L, L);
  for (int l = 0; l < L; l++) fprintf(f, "%s%d", l ? ", " : "", l);
  fprintf(f, "}; return r; }\n");
  /* masks: -1 or 0 in every lane, so & | ~ are and, or, not */
  fprintf(f, "NNC_HELPER nnc_mx%d nnc_splat_mx%d(int a) { int32_t v = a ? -1 : 0; nnc_mx%d r = ", L, L, L);
  splat_init(f, "v", L);
  fprintf(f, "; return r; }\n");
  fprintf(f, "NNC_HELPER nnc_mx%d nnc_sel_mx%d(nnc_mx%d m, nnc_mx%d a, nnc_mx%d b) { return (a & m) | (b & ~m); }\n", L, L, L, L, L);
  fprintf(f, "NNC_HELPER nnc_mx%d nnc_eq_mx%d(nnc_mx%d a, nnc_mx%d b) { return (nnc_mx%d)(a == b); }\n", L, L, L, L, L);
  fprintf(f, "NNC_HELPER nnc_mx%d nnc_ne_mx%d(nnc_mx%d a, nnc_mx%d b) { return (nnc_mx%d)(a != b); }\n", L, L, L, L, L);
  fprintf(f, "NNC_HELPER int nnc_all_mx%d(nnc_mx%d m) { int32_t t[%d], r = -1; memcpy(t, &m, sizeof t); for (int l = 0; l < %d; l++) r &= t[l]; return r != 0; }\n",
          L, L, L, L);
}

/* Loads, stores, splat, blend, select, min, max, comparisons, abs of one value type. */
static void prelude_value_ops(FILE *f, nnc_dtype dt, int L) {
  const char *s = dt_suffix(dt), *T = scalar_ctype(dt);
  char V[32], W[32];
  snprintf(V, sizeof V, "nnc_%sx%d", s, L);
  wide_mask(dt, L, W, sizeof W);
  fprintf(f, "NNC_HELPER %s nnc_ld_%sx%d(const %s *p) { %s r; memcpy(&r, p, sizeof r); return r; }\n", V, s, L, T, V);
  fprintf(f, "NNC_HELPER void nnc_st_%sx%d(%s *p, %s v) { memcpy(p, &v, sizeof v); }\n", s, L, T, V);
  /* masked: a full access when every lane is enabled (then every element is inside), else lane by lane */
  fprintf(f, "NNC_HELPER %s nnc_ldm_%sx%d(const %s *p, nnc_mx%d m) {\n"
             "  if (nnc_all_mx%d(m)) return nnc_ld_%sx%d(p);\n"
             "  int32_t b[%d]; %s t[%d]; %s r; memcpy(b, &m, sizeof b);\n"
             "  for (int l = 0; l < %d; l++) t[l] = b[l] ? p[l] : 0;\n"
             "  memcpy(&r, t, sizeof r); return r;\n}\n",
          V, s, L, T, L, L, s, L, L, T, L, V, L);
  fprintf(f, "NNC_HELPER void nnc_stm_%sx%d(%s *p, %s v, nnc_mx%d m) {\n"
             "  if (nnc_all_mx%d(m)) { nnc_st_%sx%d(p, v); return; }\n"
             "  int32_t b[%d]; %s t[%d]; memcpy(b, &m, sizeof b); memcpy(t, &v, sizeof t);\n"
             "  for (int l = 0; l < %d; l++) if (b[l]) p[l] = t[l];\n}\n",
          s, L, T, V, L, L, s, L, L, T, L, L);
  fprintf(f, "NNC_HELPER %s nnc_splat_%sx%d(%s a) { %s r = ", V, s, L, T, V);
  splat_init(f, "a", L);
  fprintf(f, "; return r; }\n");
  if (dt == NNC_F32)
    fprintf(f, "NNC_HELPER %s nnc_blend_%sx%d(%s w, %s a, %s b) { return (%s)(((%s)a & w) | ((%s)b & ~w)); }\n", V, s, L, W, V, V, V, W, W);
  else
    fprintf(f, "NNC_HELPER %s nnc_blend_%sx%d(%s w, %s a, %s b) { return (a & w) | (b & ~w); }\n", V, s, L, W, V, V);
  fprintf(f, "NNC_HELPER %s nnc_sel_%sx%d(nnc_mx%d m, %s a, %s b) { return nnc_blend_%sx%d(", V, s, L, L, V, V, s, L);
  if (dt == NNC_F32 || dt == NNC_I32) fprintf(f, "m");
  else fprintf(f, "__builtin_convertvector(m, %s)", W);
  fprintf(f, ", a, b); }\n");
  fprintf(f, "NNC_HELPER %s nnc_min_%sx%d(%s a, %s b) { return nnc_blend_%sx%d((%s)(a < b), a, b); }\n", V, s, L, V, V, s, L, W);
  fprintf(f, "NNC_HELPER %s nnc_max_%sx%d(%s a, %s b) { return nnc_blend_%sx%d((%s)(a > b), a, b); }\n", V, s, L, V, V, s, L, W);
  static const char *const cmps[][2] = {{"lt", "<"}, {"le", "<="}, {"gt", ">"}, {"ge", ">="}, {"eq", "=="}, {"ne", "!="}};
  for (int c = 0; c < 6; c++) {
    char x[16];
    snprintf(x, sizeof x, "a %s b", cmps[c][1]);
    fprintf(f, "NNC_HELPER nnc_mx%d nnc_%s_%sx%d(%s a, %s b) { return ", L, cmps[c][0], s, L, V, V);
    narrow_mask(f, dt, L, x);
    fprintf(f, "; }\n");
  }
  /* abs as the scalar printer's max(a, -a); u8 negation does not promote in a vector: a itself */
  if (dt == NNC_I32)
    fprintf(f, "NNC_HELPER %s nnc_abs_%sx%d(%s a) { %s n = (%s)(-(nnc_u32x%d)a); return nnc_blend_%sx%d((%s)(a > n), a, n); }\n", V, s, L,
            V, V, V, L, s, L, W);
  else if (dt == NNC_I64)
    fprintf(f, "NNC_HELPER %s nnc_abs_%sx%d(%s a) { %s n = -a; return nnc_blend_%sx%d((%s)(a > n), a, n); }\n", V, s, L, V, V, s, L, W);
  else if (dt == NNC_U8)
    fprintf(f, "NNC_HELPER %s nnc_abs_%sx%d(%s a) { return a; }\n", V, s, L, V);
}

/* floordiv and mod lane by lane (integer division has no vector instruction), reductions. */
static void prelude_lanewise_ops(FILE *f, nnc_dtype dt, int L) {
  const char *s = dt_suffix(dt), *T = scalar_ctype(dt);
  char V[32];
  snprintf(V, sizeof V, "nnc_%sx%d", s, L);
  fprintf(f, "NNC_LANEWISE2(nnc_floordiv_%sx%d, %s, %s, %s, %d, nnc_floordiv_%s(a[l], b[l]))\n", s, L, V, V, V, L, s);
  fprintf(f, "NNC_LANEWISE2(nnc_mod_%sx%d, %s, %s, %s, %d, nnc_mod_%s(a[l], b[l]))\n", s, L, V, V, V, L, s);
  /* horizontal reductions halve the vector: lanes [0, h) meet lanes [h, 2h) */
  static const char *const reds[][2] = {{"hsum", "t[l] + t[l + h]"}, {"hmax", "NNC_MAX(t[l], t[l + h])"}, {"hmin", "NNC_MIN(t[l], t[l + h])"}};
  for (int r = 0; r < 3; r++)
    fprintf(f, "NNC_HELPER %s nnc_%s_%sx%d(%s v) { %s t[%d]; memcpy(t, &v, sizeof t); for (int h = %d; h > 0; h /= 2) for (int l = 0; l < h; l++) t[l] = (%s)(%s); return t[0]; }\n",
            T, reds[r][0], s, L, V, T, L, L / 2, T, reds[r][1]);
}

/* Conversions: __builtin_convertvector has C's per-element semantics, except f32 -> integer,
 * which saturates (docs/ir.md) lane by lane. Masks convert to 1/0 and from != 0. */
static void prelude_conversions(FILE *f, nnc_dtype dt, int L) {
  const char *s = dt_suffix(dt);
  char V[32], x[48];
  snprintf(V, sizeof V, "nnc_%sx%d", s, L);
  for (int j = 0; j < 4; j++) {
    nnc_dtype to = value_dtypes[j];
    const char *ts = dt_suffix(to);
    if (to == dt) continue;
    if (dt == NNC_F32)
      fprintf(f, "NNC_LANEWISE1(nnc_cvt_%sx%d_%sx%d, nnc_%sx%d, %s, %d, nnc_f2%s(a[l]))\n", ts, L, s, L, ts, L, V, L, ts);
    else
      fprintf(f, "NNC_HELPER nnc_%sx%d nnc_cvt_%sx%d_%sx%d(%s a) { return __builtin_convertvector(a, nnc_%sx%d); }\n", ts, L, ts, L, s, L,
              V, ts, L);
  }
  fprintf(f, "NNC_HELPER %s nnc_cvt_%sx%d_mx%d(nnc_mx%d a) { return __builtin_convertvector(-a, %s); }\n", V, s, L, L, L, V);
  snprintf(x, sizeof x, "a != z");
  fprintf(f, "NNC_HELPER nnc_mx%d nnc_cvt_mx%d_%sx%d(%s a) { %s z = {0}; return ", L, L, s, L, V, V);
  narrow_mask(f, dt, L, x);
  fprintf(f, "; }\n");
}

static void prelude_lanes(FILE *f, int L) {
  fprintf(f, "\n/* --- %d lanes --- */\n", L);
  prelude_types(f, L);
  for (int i = 0; i < 4; i++) {
    prelude_value_ops(f, value_dtypes[i], L);
    prelude_lanewise_ops(f, value_dtypes[i], L);
    prelude_conversions(f, value_dtypes[i], L);
  }
  char V[32];
  snprintf(V, sizeof V, "nnc_f32x%d", L);
  fprintf(f, "#ifdef NNC_CONTRACT_FMA\n"
             "NNC_HELPER %s nnc_fma_f32x%d(%s a, %s b, %s c) {\n"
             "#pragma STDC FP_CONTRACT ON\n"
             "  return a * b + c;\n"
             "}\n"
             "#else\n"
             "NNC_LANEWISE3(nnc_fma_f32x%d, %s, %s, %s, %s, %d, fmaf(a[l], b[l], c[l]))\n"
             "#endif\n",
          V, L, V, V, V, L, V, V, V, V, L);
  fprintf(f, "NNC_LANEWISE2(nnc_pow_f32x%d, %s, %s, %s, %d, powf(a[l], b[l]))\n", L, V, V, V, L);
  for (int op = 0; op < NNC_LU_COUNT; op++)
    if (nnc_lunops[op].c)
      fprintf(f, "NNC_LANEWISE1(nnc_%s_f32x%d, %s, %s, %d, %s(a[l]))\n", nnc_lunop_name(op), L, V, V, L, nnc_lunops[op].c);
  fprintf(f, "NNC_HELPER nnc_f32x%d nnc_rng_x%d(uint32_t seed, uint32_t key, uint32_t step, nnc_i64x%d i) { nnc_f32x%d r; for (int l = 0; l < %d; l++) r[l] = nnc_rng(seed, key, step, (uint64_t)i[l]); return r; }\n", L, L, L, L, L);
}

/* Bit L set: some expression or variable has L lanes (powers of two up to 64). */
typedef struct lanes_walk {
  nnc_lwalk w;
  uint64_t mask;
} lanes_walk;

static void note_lanes(lanes_walk *lw, int L) {
  if (L > 1 && L <= NNC_MAX_LANES && (L & (L - 1)) == 0) lw->mask |= (uint64_t)L;
}

static void lanes_of_expr(nnc_lwalk *w, const nnc_lexpr *e) { note_lanes((lanes_walk *)w, e->type.lanes); }

static bool lanes_of_stmt(nnc_lwalk *w, const nnc_lstmt *s) {
  if (s->var) note_lanes((lanes_walk *)w, s->var->type.lanes);
  return true;
}

void nnc_cg_c_prelude(FILE *f, const nnc_kernel *const *ks, int nk) {
  fputs(prelude_fixed, f);
  lanes_walk lw = {{.stmt = lanes_of_stmt, .expr = lanes_of_expr}, 0};
  for (int i = 0; i < nk; i++) nnc_lwalk_stmt(&lw.w, ks[i]->body);
  for (int L = 2; L <= NNC_MAX_LANES; L *= 2)
    if (lw.mask & (uint64_t)L) prelude_lanes(f, L);
  fputc('\n', f);
}

/* --- kernels ------------------------------------------------------------------------------- */

typedef struct c_printer {
  nnc_cf cf;            /* the function being printed (out), names, the first error */
  const char *kname;    /* the kernel's name as a C identifier */
  FILE *pre;            /* outlined parallel bodies, printed before the kernel */
  bool *unrolled;       /* by var id: substituted by uval */
  int64_t *uval;
  nnc_lk_uses uses;     /* variables by id and their reads, buffers touched outside parallel loops */
  bool in_par;          /* printing an outlined body: nested parallel loops run serially */
  int npar;
  int depth;
  const bool *shared;   /* by buffer id, may be NULL: a call passes it over another buffer's bytes */
} c_printer;

#define cerr(c, ...) nnc_cf_error(&(c)->cf, __VA_ARGS__)
#define emit(c, ...) nnc_cf_emit(&(c)->cf, __VA_ARGS__)
#define line(c) nnc_cf_line(&(c)->cf)
#define cexpr_prec(c, e, min) nnc_cf_expr_prec(&(c)->cf, e, min)

static bool check_lanes(c_printer *c, nnc_ltype t) {
  if (t.lanes == 1 || (t.lanes <= NNC_MAX_LANES && (t.lanes & (t.lanes - 1)) == 0)) return true;
  cerr(c, "%d lanes: the C backend needs a power of two", t.lanes);
  return false;
}

static void cexpr(c_printer *c, const nnc_lexpr *e);

static void call2(c_printer *c, const char *fn, const nnc_lexpr *a, const nnc_lexpr *b) {
  nnc_cf_call(&c->cf, fn, a, b, NULL);
}

static void cbin_scalar(c_printer *c, const nnc_lexpr *e) {
  nnc_dtype dt = e->a->type.dtype;
  const char *s = dt_suffix(dt);
  char fn[48];
  switch ((nnc_lbinop)e->op) {
  case NNC_LB_FLOORDIV:
  case NNC_LB_MOD:
    snprintf(fn, sizeof fn, "nnc_%s_%s", e->op == NNC_LB_MOD ? "mod" : "floordiv", s);
    return call2(c, fn, e->a, e->b);
  case NNC_LB_MIN: return call2(c, "NNC_MIN", e->a, e->b);
  case NNC_LB_MAX: return call2(c, "NNC_MAX", e->a, e->b);
  case NNC_LB_POW: return call2(c, "powf", e->a, e->b);
  case NNC_LB_AND:
  case NNC_LB_OR: return nnc_cf_logic(&c->cf, e);
  default: break;
  }
  if (nnc_cf_prec(e) == 9) { /* i32/u8 + - *: wrap through unsigned arithmetic, as the interpreter does */
    const char *u = dt == NNC_I32 ? "uint32_t" : "unsigned";
    emit(c, "(%s)((%s)", scalar_ctype(dt), u);
    cexpr_prec(c, e->a, 5);
    emit(c, " %s (%s)", nnc_lbinops[e->op].c, u);
    cexpr_prec(c, e->b, 5);
    emit(c, ")");
    return;
  }
  nnc_cf_infix(&c->cf, e);
}

/* Vector + - * / & | are C operators on the vector types; i32 + - * wrap through unsigned
 * lanes (the interpreter's semantics); the rest are prelude helpers. */
static void cbin_vector(c_printer *c, const nnc_lexpr *e) {
  nnc_ltype t = e->a->type;
  if (e->op <= NNC_LB_MUL && t.dtype == NNC_I32) {
    emit(c, "(nnc_i32x%d)((nnc_u32x%d)", t.lanes, t.lanes), cexpr_prec(c, e->a, 9);
    emit(c, " %s (nnc_u32x%d)", nnc_lbinops[e->op].c, t.lanes), cexpr_prec(c, e->b, 9), emit(c, ")");
    return;
  }
  if (e->op <= NNC_LB_DIV || e->op == NNC_LB_AND || e->op == NNC_LB_OR) {
    emit(c, "(");
    cexpr(c, e->a);
    emit(c, " %s ", nnc_lbinops[e->op].c);
    cexpr(c, e->b);
    emit(c, ")");
    return;
  }
  char fn[48];
  snprintf(fn, sizeof fn, "nnc_%s_%sx%d", nnc_lbinop_name(e->op), dt_suffix(t.dtype), t.lanes);
  call2(c, fn, e->a, e->b);
}

static void cunary(c_printer *c, const nnc_lexpr *e) {
  nnc_ltype t = e->type;
  if (e->op == NNC_LU_NEG && t.lanes > 1 && t.dtype == NNC_I32) {
    emit(c, "(nnc_i32x%d)(-(nnc_u32x%d)", t.lanes, t.lanes), cexpr_prec(c, e->a, 9), emit(c, ")");
    return;
  }
  if (e->op == NNC_LU_NEG || e->op == NNC_LU_NOT) {
    const char *op = e->op == NNC_LU_NEG ? "-" : t.dtype == NNC_BOOL && t.lanes == 1 ? "!" : "~";
    if (t.lanes == 1 && (t.dtype == NNC_I32 || t.dtype == NNC_U8)) emit(c, "(%s)", scalar_ctype(t.dtype));
    emit(c, "(%s", op);
    cexpr_prec(c, e->a, 9);
    emit(c, ")");
    return;
  }
  if (t.lanes > 1) {
    emit(c, "nnc_%s_%sx%d(", nnc_lunop_name(e->op), dt_suffix(t.dtype), t.lanes);
  } else if (e->op == NNC_LU_ABS && t.dtype != NNC_F32) {
    emit(c, "(%s)NNC_MAX(", scalar_ctype(t.dtype)), cexpr(c, e->a), emit(c, ", -"), cexpr_prec(c, e->a, 9), emit(c, ")");
    return;
  } else {
    emit(c, "%s(", nnc_lunops[e->op].c);
  }
  cexpr(c, e->a);
  emit(c, ")");
}

static void ccast(c_printer *c, const nnc_lexpr *e) {
  nnc_ltype to = e->type, from = e->a->type;
  if (to.lanes > 1) {
    emit(c, "nnc_cvt_%sx%d_%sx%d(", dt_suffix(to.dtype), to.lanes, dt_suffix(from.dtype), from.lanes);
  } else if (from.dtype == NNC_F32 && to.dtype != NNC_F32 && to.dtype != NNC_BOOL) {
    emit(c, "nnc_f2%s(", dt_suffix(to.dtype));
  } else if (to.dtype == NNC_BOOL) {
    emit(c, "(");
    cexpr_prec(c, e->a, 3);
    emit(c, " != 0)");
    return;
  } else {
    emit(c, "(%s)(", scalar_ctype(to.dtype));
  }
  cexpr(c, e->a);
  emit(c, ")");
}

static void cload(c_printer *c, const nnc_lexpr *e) {
  const char *b = c->cf.bname[e->buf->id];
  if (e->type.lanes == 1) {
    if (e->b) emit(c, "("), cexpr_prec(c, e->b, 2), emit(c, " ? ");
    emit(c, "%s[", b), cexpr(c, e->a), emit(c, "]");
    if (e->b) emit(c, " : 0)");
    return;
  }
  emit(c, "nnc_ld%s_%sx%d(%s + ", e->b ? "m" : "", dt_suffix(e->type.dtype), e->type.lanes, b);
  cexpr_prec(c, e->a, 4);
  if (e->b) emit(c, ", "), cexpr(c, e->b);
  emit(c, ")");
}

static void cexpr(c_printer *c, const nnc_lexpr *e) {
  if (!check_lanes(c, e->type)) return;
  switch (e->kind) {
  case NNC_LE_INT: nnc_cf_int(&c->cf, e); break;
  case NNC_LE_FLOAT: nnc_cf_float(&c->cf, e->fval); break;
  case NNC_LE_VAR:
    if (c->unrolled[e->var->id]) emit(c, "%lld", (long long)c->uval[e->var->id]);
    else emit(c, "%s", c->cf.vname[e->var->id]);
    break;
  case NNC_LE_SCALAR: emit(c, "%s", (const char *[]){"n", "lr", "step", "seed"}[e->scalar]); break;
  case NNC_LE_BIN:
    if (e->type.lanes > 1) cbin_vector(c, e);
    else cbin_scalar(c, e);
    break;
  case NNC_LE_UN: cunary(c, e); break;
  case NNC_LE_SELECT:
    if (e->a->type.lanes > 1) {
      emit(c, "nnc_sel_%sx%d(", dt_suffix(e->type.dtype), e->type.lanes);
      cexpr(c, e->a), emit(c, ", "), cexpr(c, e->b), emit(c, ", "), cexpr(c, e->c), emit(c, ")");
    } else {
      nnc_cf_select(&c->cf, e);
    }
    break;
  case NNC_LE_FMA:
    if (e->type.lanes > 1) emit(c, "nnc_fma_f32x%d(", e->type.lanes);
    else emit(c, "fmaf(");
    cexpr(c, e->a), emit(c, ", "), cexpr(c, e->b), emit(c, ", "), cexpr(c, e->c), emit(c, ")");
    break;
  case NNC_LE_CAST: ccast(c, e); break;
  case NNC_LE_LOAD: cload(c, e); break;
  case NNC_LE_SPLAT: emit(c, "nnc_splat_%sx%d(", dt_suffix(e->type.dtype), e->type.lanes), cexpr(c, e->a), emit(c, ")"); break;
  case NNC_LE_HREDUCE:
    emit(c, "nnc_%s_%sx%d(", e->op == NNC_LB_ADD ? "hsum" : e->op == NNC_LB_MAX ? "hmax" : "hmin",
         dt_suffix(e->a->type.dtype), e->a->type.lanes);
    cexpr(c, e->a), emit(c, ")");
    break;
  case NNC_LE_LANE: emit(c, "nnc_lane_i64x%d()", e->type.lanes); break;
  case NNC_LE_RNG:
    if (e->type.lanes > 1) emit(c, "nnc_rng_x%d(", e->type.lanes);
    else emit(c, "nnc_rng(");
    emit(c, "(uint32_t)"), cexpr_prec(c, e->a, 9), emit(c, ", %lluu, (uint32_t)", (unsigned long long)(uint32_t)e->ival);
    cexpr_prec(c, e->b, 9), emit(c, ", ");
    if (e->type.lanes == 1) emit(c, "(uint64_t)"), cexpr_prec(c, e->c, 9);
    else cexpr(c, e->c);
    emit(c, ")");
    break;
  case NNC_LE_THREAD:
  case NNC_LE_BLOCK:
  case NNC_LE_SHUFFLE:
    cerr(c, "GPU thread, block and shuffle expressions run under the phase emulator, not the C backend");
    emit(c, "0");
    break;
  case NNC_LE_POISON:
    cerr(c, "an invalid expression");
    emit(c, "0");
    break;
  }
}

/* --- statements ------------------------------------------------------------------------------ */

static void cstmt(c_printer *c, const nnc_lstmt *s);

static void cstore(c_printer *c, const nnc_lstmt *s) {
  const char *b = c->cf.bname[s->buf->id];
  int L = s->value->type.lanes;
  line(c);
  if (L == 1) {
    if (s->mask) emit(c, "if ("), cexpr(c, s->mask), emit(c, ") ");
    emit(c, "%s[", b), cexpr(c, s->index), emit(c, "] = "), cexpr(c, s->value), emit(c, ";\n");
    return;
  }
  emit(c, "nnc_st%s_%sx%d(%s + ", s->mask ? "m" : "", dt_suffix(s->value->type.dtype), L, b);
  cexpr_prec(c, s->index, 4);
  emit(c, ", "), cexpr(c, s->value);
  if (s->mask) emit(c, ", "), cexpr(c, s->mask);
  emit(c, ");\n");
}

/* --- parallel loops: what the outlined body captures ------------------------------------------- */

/* `restrict` promises that no other pointer reaches the bytes while one of them is written, a
 * promise an in-place call breaks (it passes one range as two buffers): once the kernel is
 * inlined, gcc moves or drops the neighbouring calls' accesses to that range. Such buffers are
 * plain pointers. */
static const char *buf_ctype(const c_printer *c, int i, char *t, size_t cap) {
  const nnc_lbuf *b = c->cf.k->bufs[i];
  snprintf(t, cap, "%s%s *%s", b->written || b->scope != NNC_SCOPE_GLOBAL ? "" : "const ", scalar_ctype(b->dtype),
           c->shared && c->shared[i] ? "" : "restrict ");
  return t;
}

static void declare_locals(c_printer *c, const bool *used) {
  for (int i = 0; i < c->cf.k->nbufs; i++) {
    const nnc_lbuf *b = c->cf.k->bufs[i];
    if (b->scope != NNC_SCOPE_LOCAL || !used[i]) continue;
    line(c);
    emit(c, "%s %s[%lld] = {0};\n", scalar_ctype(b->dtype), c->cf.bname[i], (long long)b->size);
  }
}

/* The loop's body as static void <kernel>_par<i>(void *env, int64_t lo, int64_t hi), iterations
 * [lo, hi) of the loop's trip count; env carries the buffers, scalars and variables it reads.
 * The call site fills env and runs the body through rt->parallel_for. */
static const char *const scalar_names[] = {"n", "lr", "step", "seed"};
static const char *const scalar_types[] = {"int64_t", "float", "uint32_t", "uint32_t"};

static bool captured_var(c_printer *c, const nnc_lcapture *p, const nnc_lstmt *s, int v) {
  return nnc_lcapture_var(p, s, v) && !c->unrolled[v];
}

static void outline_body(c_printer *c, const nnc_lstmt *s, const nnc_lcapture *p, const char *fn) {
  const nnc_kernel *k = c->cf.k;
  char t[64];
  emit(c, "typedef struct %s_env {\n", fn);
  for (int i = 0; i < k->nbufs; i++)
    if (nnc_lcapture_buf(p, k, i)) emit(c, "  %s%s;\n", buf_ctype(c, i, t, sizeof t), c->cf.bname[i]);
  for (int i = 0; i < NNC_LSC_COUNT; i++)
    if (p->scalar_used[i]) emit(c, "  %s %s;\n", scalar_types[i], scalar_names[i]);
  for (int v = 0; v < k->nvars; v++)
    if (captured_var(c, p, s, v)) emit(c, "  %s %s;\n", ctype(c->cf.vars[v]->type, t, sizeof t), c->cf.vname[v]);
  emit(c, "  int64_t lo_;\n} %s_env;\n\n", fn);
  emit(c, "static void %s(void *env_, int64_t lo_, int64_t hi_) {\n", fn);
  emit(c, "  const %s_env *env = env_;\n", fn);
  c->cf.depth = 1;
  for (int i = 0; i < k->nbufs; i++)
    if (nnc_lcapture_buf(p, k, i)) line(c), emit(c, "%s%s = env->%s;\n", buf_ctype(c, i, t, sizeof t), c->cf.bname[i], c->cf.bname[i]);
  for (int i = 0; i < NNC_LSC_COUNT; i++)
    if (p->scalar_used[i]) line(c), emit(c, "const %s %s = env->%s;\n", scalar_types[i], scalar_names[i], scalar_names[i]);
  for (int v = 0; v < k->nvars; v++)
    if (captured_var(c, p, s, v))
      line(c), emit(c, "const %s %s = env->%s;\n", ctype(c->cf.vars[v]->type, t, sizeof t), c->cf.vname[v], c->cf.vname[v]);
  declare_locals(c, p->buf_used);
  line(c), emit(c, "for (int64_t it_ = lo_; it_ < hi_; it_++) {\n");
  c->cf.depth++;
  line(c), emit(c, "const int64_t %s = env->lo_ + it_ * %lld;\n", c->cf.vname[s->var->id], (long long)s->step);
  if (!c->uses.reads[s->var->id]) line(c), emit(c, "(void)%s;\n", c->cf.vname[s->var->id]);
  c->in_par = true;
  cstmt(c, s->body);
  c->in_par = false;
  c->cf.depth--;
  line(c), emit(c, "}\n}\n\n");
}

static void cparallel(c_printer *c, const nnc_lstmt *s) {
  const nnc_kernel *k = c->cf.k;
  nnc_lcapture p;
  nnc_lcapture_of(&p, k, s, &c->uses, c->cf.d, &c->cf.ok, "C backend: ");
  char fn[300];
  snprintf(fn, sizeof fn, "%s_par%d", c->kname, c->npar++);
  FILE *out = c->cf.out;
  int depth = c->cf.depth;
  c->cf.out = c->pre;
  outline_body(c, s, &p, fn);
  c->cf.out = out;
  c->cf.depth = depth;
  /* the call site */
  line(c), emit(c, "{ /* parallel for %s */\n", s->var->name);
  c->cf.depth++;
  line(c), emit(c, "%s_env env_ = {", fn);
  const char *sep = "";
  for (int i = 0; i < k->nbufs; i++)
    if (nnc_lcapture_buf(&p, k, i)) emit(c, "%s%s", sep, c->cf.bname[i]), sep = ", ";
  for (int i = 0; i < NNC_LSC_COUNT; i++)
    if (p.scalar_used[i]) emit(c, "%s%s", sep, scalar_names[i]), sep = ", ";
  for (int v = 0; v < k->nvars; v++)
    if (captured_var(c, &p, s, v)) emit(c, "%s%s", sep, c->cf.vname[v]), sep = ", ";
  emit(c, "%s", sep), cexpr(c, s->lo), emit(c, "};\n");
  line(c), emit(c, "const int64_t hi_ = "), cexpr(c, s->hi), emit(c, ";\n");
  line(c), emit(c, "const int64_t count_ = hi_ > env_.lo_ ? (hi_ - env_.lo_ + %lld) / %lld : 0;\n",
                (long long)s->step - 1, (long long)s->step);
  line(c), emit(c, "if (rt && rt->parallel_for) {\n");
  line(c), emit(c, "  rt->parallel_for(rt->pool, count_, %s, &env_);\n", fn);
  line(c), emit(c, "} else {\n");
  emit(c, "#ifdef _OPENMP\n");
  emit(c, "#pragma omp parallel for schedule(static)\n");
  line(c), emit(c, "  for (int64_t it_ = 0; it_ < count_; it_++) %s(&env_, it_, it_ + 1);\n", fn);
  emit(c, "#else\n");
  line(c), emit(c, "  %s(&env_, 0, count_);\n", fn);
  emit(c, "#endif\n");
  line(c), emit(c, "}\n");
  c->cf.depth--;
  line(c), emit(c, "}\n");
  nnc_lcapture_free(&p);
}

static void cfor(c_printer *c, const nnc_lstmt *s) {
  const char *v = c->cf.vname[s->var->id];
  switch (s->loop) {
  case NNC_LOOP_PARALLEL:
    if (!c->in_par) {
      cparallel(c, s);
      return;
    }
    break; /* nested in an outlined body: serial */
  case NNC_LOOP_UNROLLED: {
    if (!nnc_lk_check_unroll(c->cf.k, s, c->cf.d, &c->cf.ok, c->cf.dialect->who)) return;
    c->unrolled[s->var->id] = true;
    for (int64_t i = s->lo->ival; i < s->hi->ival; i += s->step) {
      c->uval[s->var->id] = i;
      line(c), emit(c, "{ /* %s = %lld */\n", v, (long long)i);
      nnc_cf_body(&c->cf, s->body);
      line(c), emit(c, "}\n");
    }
    c->unrolled[s->var->id] = false;
    return;
  }
  case NNC_LOOP_GPU_BLOCK:
  case NNC_LOOP_GPU_THREAD:
    cerr(c, "GPU loop %s: GPU schedules run under the phase emulator, not the C backend", s->var->name);
    return;
  default: break;
  }
  nnc_cf_for(&c->cf, s);
}

static void cstmt(c_printer *c, const nnc_lstmt *s) {
  char t[32];
  if (!s || nnc_cf_common_stmt(&c->cf, s)) return;
  switch (s->kind) {
  case NNC_LS_FOR: cfor(c, s); break;
  case NNC_LS_STORE: cstore(c, s); break;
  case NNC_LS_LET:
    if (!check_lanes(c, s->var->type)) return;
    line(c), emit(c, "%s %s = ", ctype(s->var->type, t, sizeof t), c->cf.vname[s->var->id]), cexpr(c, s->value);
    emit(c, ";\n");
    if (!c->uses.reads[s->var->id]) line(c), emit(c, "(void)%s;\n", c->cf.vname[s->var->id]);
    break;
  case NNC_LS_ATOMIC_ADD: {
    const char *b = c->cf.bname[s->buf->id];
    line(c);
    if (c->in_par) {
      emit(c, "nnc_atomic_add_%s(%s + ", dt_suffix(s->buf->dtype), b), cexpr_prec(c, s->index, 4);
      emit(c, ", "), cexpr(c, s->value), emit(c, ");\n");
    } else {
      emit(c, "%s[", b), cexpr(c, s->index), emit(c, "] += "), cexpr(c, s->value), emit(c, ";\n");
    }
    break;
  }
  case NNC_LS_BARRIER: cerr(c, "barriers belong to GPU schedules (the phase emulator), not the C backend"); break;
  default: break; /* printed by nnc_cf_common_stmt */
  }
}

/* --- names and the kernel's signature ------------------------------------------------------------- */

static bool is_parallel(const nnc_lstmt *s) { return s->kind == NNC_LS_FOR && s->loop == NNC_LOOP_PARALLEL; }

static void signature(c_printer *c, FILE *f) {
  const nnc_kernel *k = c->cf.k;
  char t[64];
  fprintf(f, "static void %s(const nnc_rt *rt", c->kname);
  for (int i = 0; i < k->nbufs; i++)
    if (k->bufs[i]->scope == NNC_SCOPE_GLOBAL || k->bufs[i]->scope == NNC_SCOPE_SCRATCH)
      fprintf(f, ", %s%s", buf_ctype(c, i, t, sizeof t), c->cf.bname[i]);
  for (int i = 0; i < NNC_LSC_COUNT; i++)
    if (k->uses_scalar[i]) fprintf(f, ", %s %s", scalar_types[i], scalar_names[i]);
  fprintf(f, ")");
}

static void cexpr_of_family(nnc_cf *cf, const nnc_lexpr *e) { cexpr((c_printer *)cf, e); }
static void cstmt_of_family(nnc_cf *cf, const nnc_lstmt *s) { cstmt((c_printer *)cf, s); }

static const char *const c_reserved[] = {"rt", "env", "env_", "lo_", "hi_", "it_", "count_", NULL};

static const nnc_cf_dialect c_dialect = {
    .who = "C backend: ", .expr = cexpr_of_family, .stmt = cstmt_of_family, .index_type = "int64_t",
    .nan = "__builtin_nanf(\"\")", .inf = "__builtin_inff()", .neg_inf = "-__builtin_inff()",
    .bool_true = "1", .bool_false = "0", .reserved = c_reserved};

bool nnc_cg_c_kernel(FILE *f, const nnc_kernel *k, nnc_diags *d) { return nnc_cg_c_kernel_shared(f, k, NULL, d); }

bool nnc_cg_c_kernel_shared(FILE *f, const nnc_kernel *k0, const bool *shared, nnc_diags *d) {
  nnc_kernel *k = (nnc_kernel *)k0; /* finish only recomputes derived fields */
  nnc_lk_finish(k);
  c_printer c = {.cf = {.dialect = &c_dialect, .k = k, .d = d, .ok = true}, .shared = shared};
  if (!nnc_lk_check_cpu(k, d, &c.cf.ok, c_dialect.who, "C")) return false;
  size_t nv = (size_t)(k->nvars > 0 ? k->nvars : 1), nb = (size_t)(k->nbufs > 0 ? k->nbufs : 1);
  nnc_lk_uses_of(&c.uses, k);
  c.cf.vars = c.uses.vars;
  c.cf.vname = nnc_xcalloc(nv, sizeof *c.cf.vname);
  c.unrolled = nnc_xcalloc(nv, sizeof *c.unrolled);
  c.uval = nnc_xcalloc(nv, sizeof *c.uval);
  c.cf.bname = nnc_xcalloc(nb, sizeof *c.cf.bname);
  nnc_cf_name_everything(&c.cf);
  c.kname = nnc_cf_name(&c.cf, k->name, 0, NULL, 0);
  if (strcmp(c.kname, k->name)) cerr(&c, "the kernel's name is not a C identifier");

  char *body_text = NULL, *pre_text = NULL;
  size_t body_len = 0, pre_len = 0;
  c.cf.out = open_memstream(&body_text, &body_len);
  c.pre = open_memstream(&pre_text, &pre_len);
  if (!c.cf.out || !c.pre) {
    cerr(&c, "out of memory for the generated text");
  } else {
    c.cf.depth = 1;
    if (!nnc_lstmt_any(k->body, is_parallel, NULL)) line(&c), emit(&c, "(void)rt;\n");
    for (int i = 0; i < k->nbufs; i++) {
      const nnc_lbuf *b = k->bufs[i];
      if ((b->scope == NNC_SCOPE_GLOBAL || b->scope == NNC_SCOPE_SCRATCH) && !b->read && !b->written)
        line(&c), emit(&c, "(void)%s;\n", c.cf.bname[i]);
    }
    declare_locals(&c, c.uses.outside_parallel);
    cstmt(&c, k->body);
  }
  if (c.cf.out) fclose(c.cf.out);
  if (c.pre) fclose(c.pre);
  if (c.cf.ok) {
    if (pre_len) fputs(pre_text, f);
    if (k->comment) {
      c_printer cc = c;
      cc.cf.out = f;
      cc.cf.depth = 0;
      nnc_cf_comment(&cc.cf, k->comment);
    }
    signature(&c, f);
    fprintf(f, " {\n%s}\n\n", body_text ? body_text : "");
  }
  free(body_text), free(pre_text);
  nnc_lk_uses_free(&c.uses);
  free(c.cf.vname), free(c.unrolled), free(c.uval), free(c.cf.bname);
  return c.cf.ok;
}
