/* The LLVM backend: loop IR kernels -> LLVM IR (codegen/llvm.h, docs/llvm.md).
 *
 * Every variable lives in an alloca of its function's entry block (SROA/mem2reg turn them into
 * registers), so loops, ifs and outlined parallel bodies need no phi bookkeeping here. The
 * semantics are the C printer's (codegen/c.c): IEEE operations without fast-math flags (the loop
 * IR fixes every order, hreduce halves with shuffles), fused multiply-add, C comparisons and
 * the interpreter's saturating casts. */
#include "codegen/llvm.h"

#include <dlfcn.h>
#include <errno.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/ErrorHandling.h>
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/llvm_internal.h"
#include "runtime/philox.h"

/* --- the module and its target --------------------------------------------------------------- */

static bool has_feature(const char *features, const char *name) {
  size_t n = strlen(name);
  for (const char *p = features; p && *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n + 1 && p[0] == '+' && !strncmp(p + 1, name, n)) return true;
    p = end ? end + 1 : p + len;
  }
  return false;
}

/* LLVM reports what it cannot recover from through a fatal-error handler, and exits after it
 * returns; what reaches it in nnc is a resource failure (an object file that cannot be
 * written), so the status is the environment's (3), with nnc's own message. */
static void on_llvm_fatal_error(const char *reason) {
  fprintf(stderr, "nnc: error: LLVM: %s\n", reason);
  fflush(stderr);
  _exit(3);
}

/* LLVM is C++: an allocation that fails inside it throws std::bad_alloc through C frames, which
 * aborts. A C++ new handler runs instead of the throw; it reports out of memory (nnc_oom, exit
 * 3). std::set_new_handler is found by its (Itanium ABI) name in the C++ runtime that libLLVM
 * loaded, as the C API does not wrap it. */
typedef void (*cxx_new_handler)(void);
typedef cxx_new_handler (*cxx_set_new_handler)(cxx_new_handler);

static void on_llvm_out_of_memory(void) { nnc_oom(0); }

static void install_new_handler(void) {
  cxx_set_new_handler set;
  *(void **)&set = dlsym(RTLD_DEFAULT, "_ZSt15set_new_handlerPFvvE");
  if (set) set(on_llvm_out_of_memory);
}

static void init_llvm_once(void) {
  static bool done;
  if (done) return;
  done = true;
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInstallFatalErrorHandler(on_llvm_fatal_error);
  install_new_handler();
}

nnc_cg_llvm_module *nnc_cg_llvm_module_new(const char *name, const nnc_cg_llvm_target *t, nnc_diags *d) {
  init_llvm_once();
  nnc_cg_llvm_module *m = nnc_xcalloc(1, sizeof *m);
  m->triple = LLVMGetDefaultTargetTriple();
  m->cpu = t && t->cpu ? strdup(t->cpu) : LLVMGetHostCPUName();
  m->features = t && t->features ? strdup(t->features) : LLVMGetHostCPUFeatures();
  LLVMTargetRef target;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(m->triple, &target, &msg)) {
    nnc_error(d, (nnc_loc){0}, "LLVM has no target for %s: %s", m->triple, msg ? msg : "");
    LLVMDisposeMessage(msg);
    nnc_cg_llvm_module_free(m);
    return NULL;
  }
  m->tm = LLVMCreateTargetMachine(target, m->triple, m->cpu, m->features, LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                  LLVMCodeModelDefault);
  m->pipeline = "default<O3>";
  m->codegen_level = (int)LLVMCodeGenLevelAggressive;
  m->vector_bits = has_feature(m->features, "avx512f") ? 512 : has_feature(m->features, "avx") ? 256 : 128;
  m->ctx = LLVMContextCreate();
  m->mod = LLVMModuleCreateWithNameInContext(name, m->ctx);
  LLVMSetTarget(m->mod, m->triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(m->tm);
  LLVMSetModuleDataLayout(m->mod, td);
  LLVMDisposeTargetData(td);
  return m;
}

void nnc_cg_llvm_module_set_codegen_level(nnc_cg_llvm_module *m, LLVMCodeGenOptLevel level) {
  LLVMTargetRef target = LLVMGetTargetMachineTarget(m->tm);
  LLVMDisposeTargetMachine(m->tm);
  m->tm = LLVMCreateTargetMachine(target, m->triple, m->cpu, m->features, level, LLVMRelocPIC, LLVMCodeModelDefault);
  m->codegen_level = (int)level;
}

void nnc_cg_llvm_module_free(nnc_cg_llvm_module *m) {
  if (!m) return;
  if (m->mod) LLVMDisposeModule(m->mod);
  if (m->ctx) LLVMContextDispose(m->ctx);
  if (m->tm) LLVMDisposeTargetMachine(m->tm);
  LLVMDisposeMessage(m->triple), LLVMDisposeMessage(m->cpu), LLVMDisposeMessage(m->features);
  free(m);
}

int nnc_cg_llvm_vector_bits(const nnc_cg_llvm_module *m) { return m->vector_bits; }

/* Attributes every function carries: the target (so TTI and inlining agree) and the vector
 * width the host prefers (LLVM defaults to 256 bits even where 512 are there). */
void nnc_cg_llvm_fn_attrs(nnc_cg_llvm_module *m, LLVMValueRef fn) {
  char bits[16];
  snprintf(bits, sizeof bits, "%d", m->vector_bits);
  const char *kv[][2] = {{"prefer-vector-width", bits}, {"target-cpu", m->cpu}, {"target-features", m->features}};
  for (int i = 0; i < 3; i++) {
    LLVMAttributeRef a = LLVMCreateStringAttribute(m->ctx, kv[i][0], (unsigned)strlen(kv[i][0]), kv[i][1],
                                                   (unsigned)strlen(kv[i][1]));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
  }
  unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(m->ctx, nounwind, 0));
}

void nnc_cg_llvm_enum_attr(nnc_cg_llvm_module *m, LLVMValueRef fn, unsigned idx, const char *name, uint64_t val) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(m->ctx, kind, val));
}

/* --- kernel code generation state -------------------------------------------------------------- */

typedef struct fnstate {
  LLVMValueRef fn;
  LLVMBasicBlockRef entry;     /* allocas only; branches to the code at the end */
  LLVMValueRef *slot;          /* by var id: its alloca in this function */
  LLVMValueRef *buf;           /* by buffer id: its base pointer in this function */
  LLVMValueRef scalar[NNC_LSC_COUNT];
  LLVMValueRef rt;             /* NULL in outlined bodies */
} fnstate;

typedef struct llvm_emitter {
  nnc_cg_llvm_module *m;
  LLVMContextRef cx;
  LLVMModuleRef mod;
  LLVMBuilderRef b, ab;        /* code; allocas in the entry block */
  const nnc_kernel *k;
  const char *fname;
  nnc_diags *d;
  bool ok;
  fnstate f;
  bool in_par;
  int npar;
  nnc_lk_uses uses;            /* variables by id, buffers touched outside parallel loops */
  const nnc_lvar **vars;       /* by var id */
  LLVMTypeRef t_f32, t_i32, t_i8, t_i64, t_i1, t_ptr, t_void, t_rt;
} llvm_emitter;

#define lerr(g, ...) nnc_lk_error((g)->d, &(g)->ok, "LLVM backend: ", (g)->k->name, __VA_ARGS__)

static LLVMTypeRef scalar_type(llvm_emitter *g, nnc_dtype dt) {
  switch ((int)dt) {
  case NNC_F32: return g->t_f32;
  case NNC_I32: return g->t_i32;
  case NNC_U8: return g->t_i8;
  case NNC_I64: return g->t_i64;
  default: return g->t_i1;
  }
}

static LLVMTypeRef ltype(llvm_emitter *g, nnc_ltype t) {
  LLVMTypeRef s = scalar_type(g, t.dtype);
  return t.lanes == 1 ? s : LLVMVectorType(s, (unsigned)t.lanes);
}

static bool check_lanes(llvm_emitter *g, nnc_ltype t) {
  if (t.lanes == 1 || (t.lanes > 1 && t.lanes <= NNC_MAX_LANES && (t.lanes & (t.lanes - 1)) == 0)) return true;
  lerr(g, "%d lanes: the LLVM backend needs a power of two", t.lanes);
  return false;
}

static unsigned elem_align(nnc_dtype dt) { return dt == NNC_U8 ? 1 : dt == NNC_I64 ? 8 : 4; }

/* A constant of scalar type s, splat to L lanes when L > 1. */
static LLVMValueRef splat_const(LLVMValueRef c, int L) {
  if (L == 1) return c;
  LLVMValueRef v[NNC_MAX_LANES];
  for (int i = 0; i < L; i++) v[i] = c;
  return LLVMConstVector(v, (unsigned)L);
}

static LLVMValueRef cint(llvm_emitter *g, LLVMTypeRef s, int L, uint64_t v) { return splat_const(LLVMConstInt(s, v, 0), L); }

static LLVMValueRef splat(llvm_emitter *g, LLVMValueRef x, int L) {
  if (L == 1) return x;
  if (LLVMIsConstant(x)) return splat_const(x, L);
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), (unsigned)L);
  LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetPoison(vt), x, LLVMConstInt(g->t_i32, 0, 0), "");
  return LLVMBuildShuffleVector(g->b, v, LLVMGetPoison(vt), LLVMConstNull(LLVMVectorType(g->t_i32, (unsigned)L)), "");
}

static int lanes_of(LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  return LLVMGetTypeKind(t) == LLVMVectorTypeKind ? (int)LLVMGetVectorSize(t) : 1;
}

/* A call of intrinsic name overloaded on types tys. */
static LLVMValueRef intrin(llvm_emitter *g, const char *name, LLVMTypeRef *tys, int ntys, LLVMValueRef *args, int nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, tys, (size_t)ntys);
  LLVMTypeRef fty = LLVMIntrinsicGetType(g->cx, id, tys, (size_t)ntys);
  return LLVMBuildCall2(g->b, fty, fn, args, (unsigned)nargs, "");
}

static LLVMValueRef intrin1(llvm_emitter *g, const char *name, LLVMValueRef a) {
  LLVMTypeRef t = LLVMTypeOf(a);
  return intrin(g, name, &t, 1, &a, 1);
}

/* A libm function float(float...) applied lane by lane (docs/llvm.md: per-lane calls for now). */
static LLVMValueRef libm(llvm_emitter *g, const char *name, LLVMValueRef *args, int nargs) {
  LLVMTypeRef params[2] = {g->t_f32, g->t_f32};
  LLVMTypeRef fty = LLVMFunctionType(g->t_f32, params, (unsigned)nargs, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(g->mod, name);
  if (!fn) fn = LLVMAddFunction(g->mod, name, fty);
  int L = lanes_of(args[0]);
  if (L == 1) return LLVMBuildCall2(g->b, fty, fn, args, (unsigned)nargs, "");
  LLVMValueRef r = LLVMGetPoison(LLVMTypeOf(args[0]));
  for (int l = 0; l < L; l++) {
    LLVMValueRef idx = LLVMConstInt(g->t_i32, (unsigned long long)l, 0), lane[2];
    for (int i = 0; i < nargs; i++) lane[i] = LLVMBuildExtractElement(g->b, args[i], idx, "");
    r = LLVMBuildInsertElement(g->b, r, LLVMBuildCall2(g->b, fty, fn, lane, (unsigned)nargs, ""), idx, "");
  }
  return r;
}

/* Entry-block alloca (SROA promotes it). */
static LLVMValueRef entry_alloca(llvm_emitter *g, LLVMTypeRef t, const char *name) {
  return LLVMBuildAlloca(g->ab, t, name);
}

static LLVMValueRef slot(llvm_emitter *g, const nnc_lvar *v) {
  if (!g->f.slot[v->id]) g->f.slot[v->id] = entry_alloca(g, ltype(g, v->type), v->name);
  return g->f.slot[v->id];
}

static LLVMBasicBlockRef new_block(llvm_emitter *g, const char *name) { return LLVMAppendBasicBlockInContext(g->cx, g->f.fn, name); }

/* --- expressions -------------------------------------------------------------------------------- */

static LLVMValueRef ex(llvm_emitter *g, const nnc_lexpr *e);

static LLVMValueRef cmp(llvm_emitter *g, nnc_lbinop op, nnc_dtype dt, LLVMValueRef a, LLVMValueRef b) {
  if (dt == NNC_F32) {
    static const LLVMRealPredicate fp[] = {[NNC_LB_LT] = LLVMRealOLT, [NNC_LB_LE] = LLVMRealOLE, [NNC_LB_GT] = LLVMRealOGT,
                                           [NNC_LB_GE] = LLVMRealOGE, [NNC_LB_EQ] = LLVMRealOEQ, [NNC_LB_NE] = LLVMRealUNE};
    return LLVMBuildFCmp(g->b, fp[op], a, b, "");
  }
  bool u = dt == NNC_U8 || dt == NNC_BOOL;
  static const LLVMIntPredicate sp[] = {[NNC_LB_LT] = LLVMIntSLT, [NNC_LB_LE] = LLVMIntSLE, [NNC_LB_GT] = LLVMIntSGT,
                                        [NNC_LB_GE] = LLVMIntSGE, [NNC_LB_EQ] = LLVMIntEQ, [NNC_LB_NE] = LLVMIntNE};
  static const LLVMIntPredicate up[] = {[NNC_LB_LT] = LLVMIntULT, [NNC_LB_LE] = LLVMIntULE, [NNC_LB_GT] = LLVMIntUGT,
                                        [NNC_LB_GE] = LLVMIntUGE, [NNC_LB_EQ] = LLVMIntEQ, [NNC_LB_NE] = LLVMIntNE};
  return LLVMBuildICmp(g->b, u ? up[op] : sp[op], a, b, "");
}

/* Floor division on integers: the quotient rounded down (C's nnc_floordiv_*). */
static LLVMValueRef int_floordiv(llvm_emitter *g, nnc_dtype dt, LLVMValueRef a, LLVMValueRef b) {
  if (dt == NNC_U8) return LLVMBuildUDiv(g->b, a, b, "");
  LLVMTypeRef t = LLVMTypeOf(a);
  int L = lanes_of(a);
  LLVMTypeRef s = L > 1 ? LLVMGetElementType(t) : t;
  LLVMValueRef zero = cint(g, s, L, 0);
  LLVMValueRef q = LLVMBuildSDiv(g->b, a, b, ""), r = LLVMBuildSRem(g->b, a, b, "");
  LLVMValueRef inexact = LLVMBuildICmp(g->b, LLVMIntNE, r, zero, "");
  LLVMValueRef signs = LLVMBuildXor(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, a, zero, ""),
                                    LLVMBuildICmp(g->b, LLVMIntSLT, b, zero, ""), "");
  LLVMValueRef adj = LLVMBuildZExt(g->b, LLVMBuildAnd(g->b, inexact, signs, ""), t, "");
  return LLVMBuildSub(g->b, q, adj, "");
}

static LLVMValueRef bin(llvm_emitter *g, const nnc_lexpr *e) {
  LLVMValueRef a = ex(g, e->a), b = ex(g, e->b);
  nnc_dtype dt = e->a->type.dtype;
  bool f = dt == NNC_F32;
  switch ((nnc_lbinop)e->op) {
  case NNC_LB_ADD: return f ? LLVMBuildFAdd(g->b, a, b, "") : LLVMBuildAdd(g->b, a, b, "");
  case NNC_LB_SUB: return f ? LLVMBuildFSub(g->b, a, b, "") : LLVMBuildSub(g->b, a, b, "");
  case NNC_LB_MUL: return f ? LLVMBuildFMul(g->b, a, b, "") : LLVMBuildMul(g->b, a, b, "");
  case NNC_LB_DIV:
    return f ? LLVMBuildFDiv(g->b, a, b, "") : dt == NNC_U8 ? LLVMBuildUDiv(g->b, a, b, "") : LLVMBuildSDiv(g->b, a, b, "");
  case NNC_LB_FLOORDIV:
    return f ? intrin1(g, "llvm.floor", LLVMBuildFDiv(g->b, a, b, "")) : int_floordiv(g, dt, a, b);
  case NNC_LB_MOD:
    if (f) return LLVMBuildFSub(g->b, a, LLVMBuildFMul(g->b, intrin1(g, "llvm.floor", LLVMBuildFDiv(g->b, a, b, "")), b, ""), "");
    if (dt == NNC_U8) return LLVMBuildURem(g->b, a, b, "");
    return LLVMBuildSub(g->b, a, LLVMBuildMul(g->b, int_floordiv(g, dt, a, b), b, ""), "");
  case NNC_LB_MIN: return LLVMBuildSelect(g->b, cmp(g, NNC_LB_LT, dt, a, b), a, b, "");
  case NNC_LB_MAX: return LLVMBuildSelect(g->b, cmp(g, NNC_LB_GT, dt, a, b), a, b, "");
  case NNC_LB_POW: return libm(g, "powf", (LLVMValueRef[]){a, b}, 2);
  case NNC_LB_AND: return LLVMBuildAnd(g->b, a, b, "");
  case NNC_LB_OR: return LLVMBuildOr(g->b, a, b, "");
  default: return cmp(g, (nnc_lbinop)e->op, dt, a, b);
  }
}

/* An f32 operator as ir/loop_ops.def spells it for LLVM: an intrinsic or a libm function. */
static LLVMValueRef f32_unary(llvm_emitter *g, const char *fn, LLVMValueRef a) {
  return strncmp(fn, "llvm.", 5) == 0 ? intrin1(g, fn, a) : libm(g, fn, &a, 1);
}

static LLVMValueRef unary(llvm_emitter *g, const nnc_lexpr *e) {
  LLVMValueRef a = ex(g, e->a);
  nnc_dtype dt = e->type.dtype;
  switch ((nnc_lunop)e->op) {
  case NNC_LU_NEG: return dt == NNC_F32 ? LLVMBuildFNeg(g->b, a, "") : LLVMBuildNeg(g->b, a, "");
  case NNC_LU_NOT: return LLVMBuildNot(g->b, a, "");
  case NNC_LU_RSQRT: {
    LLVMValueRef one = splat_const(LLVMConstReal(g->t_f32, 1.0), lanes_of(a));
    return LLVMBuildFDiv(g->b, one, intrin1(g, "llvm.sqrt", a), "");
  }
  case NNC_LU_ABS:
    if (dt == NNC_F32) break;
    if (dt == NNC_U8) return a; /* C: max(a, -a) with -a promoted to int */
    return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, a, LLVMBuildNeg(g->b, a, ""), ""), a,
                           LLVMBuildNeg(g->b, a, ""), "");
  default: break;
  }
  return f32_unary(g, nnc_lunops[e->op].llvm, a);
}

static bool is_int(nnc_dtype dt) { return dt == NNC_I32 || dt == NNC_U8 || dt == NNC_I64; }

static LLVMValueRef cast(llvm_emitter *g, nnc_ltype to, nnc_ltype from, LLVMValueRef a) {
  LLVMTypeRef T = ltype(g, to);
  if (to.dtype == from.dtype) return a;
  if (from.dtype == NNC_F32) {
    if (to.dtype == NNC_BOOL) {
      LLVMValueRef zero = splat_const(LLVMConstReal(g->t_f32, 0.0), from.lanes);
      return LLVMBuildFCmp(g->b, LLVMRealUNE, a, zero, "");
    }
    /* saturating, NaN -> 0: exactly the interpreter's and the C printer's conversion */
    LLVMTypeRef tys[2] = {T, LLVMTypeOf(a)};
    return intrin(g, to.dtype == NNC_U8 ? "llvm.fptoui.sat" : "llvm.fptosi.sat", tys, 2, &a, 1);
  }
  bool unsigned_from = from.dtype == NNC_U8 || from.dtype == NNC_BOOL;
  if (to.dtype == NNC_F32) return unsigned_from ? LLVMBuildUIToFP(g->b, a, T, "") : LLVMBuildSIToFP(g->b, a, T, "");
  if (to.dtype == NNC_BOOL) {
    LLVMTypeRef s = scalar_type(g, from.dtype);
    return LLVMBuildICmp(g->b, LLVMIntNE, a, cint(g, s, from.lanes, 0), "");
  }
  if (is_int(to.dtype)) return LLVMBuildIntCast2(g->b, a, T, !unsigned_from, "");
  return a;
}

static LLVMValueRef elem_ptr(llvm_emitter *g, const nnc_lbuf *b, LLVMValueRef idx) {
  LLVMValueRef base = g->f.buf[b->id];
  return LLVMBuildGEP2(g->b, scalar_type(g, b->dtype), base, &idx, 1, "");
}

static LLVMValueRef load(llvm_emitter *g, const nnc_lexpr *e) {
  LLVMValueRef idx = ex(g, e->a);
  const nnc_lbuf *b = e->buf;
  LLVMTypeRef T = ltype(g, e->type);
  unsigned al = elem_align(b->dtype);
  if (e->type.lanes == 1 && e->b) { /* (m ? buf[i] : 0): only load when m holds */
    LLVMValueRef m = ex(g, e->b);
    LLVMBasicBlockRef from = LLVMGetInsertBlock(g->b), yes = new_block(g, "ldm"), join = new_block(g, "ldm.end");
    LLVMBuildCondBr(g->b, m, yes, join);
    LLVMPositionBuilderAtEnd(g->b, yes);
    LLVMValueRef v = LLVMBuildLoad2(g->b, T, elem_ptr(g, b, idx), "");
    LLVMSetAlignment(v, al);
    LLVMBuildBr(g->b, join);
    LLVMPositionBuilderAtEnd(g->b, join);
    LLVMValueRef phi = LLVMBuildPhi(g->b, T, "");
    LLVMValueRef vals[2] = {LLVMConstNull(T), v};
    LLVMBasicBlockRef bbs[2] = {from, yes};
    LLVMAddIncoming(phi, vals, bbs, 2);
    return phi;
  }
  LLVMValueRef p = elem_ptr(g, b, idx);
  if (e->b) {
    LLVMTypeRef tys[2] = {T, g->t_ptr};
    LLVMValueRef args[4] = {p, LLVMConstInt(g->t_i32, al, 0), ex(g, e->b), LLVMConstNull(T)};
    return intrin(g, "llvm.masked.load", tys, 2, args, 4);
  }
  LLVMValueRef v = LLVMBuildLoad2(g->b, T, p, "");
  LLVMSetAlignment(v, al);
  return v;
}

/* lanes [0, h) meet lanes [h, 2h) until one is left: C's nnc_hsum/hmax/hmin order */
static LLVMValueRef hreduce(llvm_emitter *g, const nnc_lexpr *e) {
  LLVMValueRef v = ex(g, e->a);
  nnc_dtype dt = e->a->type.dtype;
  for (int h = e->a->type.lanes / 2; h >= 1; h /= 2) {
    LLVMValueRef lo_idx[NNC_MAX_LANES], hi_idx[NNC_MAX_LANES];
    for (int l = 0; l < h; l++)
      lo_idx[l] = LLVMConstInt(g->t_i32, (unsigned)l, 0), hi_idx[l] = LLVMConstInt(g->t_i32, (unsigned)(l + h), 0);
    LLVMValueRef lo = LLVMBuildShuffleVector(g->b, v, LLVMGetPoison(LLVMTypeOf(v)), LLVMConstVector(lo_idx, (unsigned)h), "");
    LLVMValueRef hi = LLVMBuildShuffleVector(g->b, v, LLVMGetPoison(LLVMTypeOf(v)), LLVMConstVector(hi_idx, (unsigned)h), "");
    if (h == 1) {
      lo = LLVMBuildExtractElement(g->b, lo, LLVMConstInt(g->t_i32, 0, 0), "");
      hi = LLVMBuildExtractElement(g->b, hi, LLVMConstInt(g->t_i32, 0, 0), "");
    }
    if (e->op == NNC_LB_ADD) v = dt == NNC_F32 ? LLVMBuildFAdd(g->b, lo, hi, "") : LLVMBuildAdd(g->b, lo, hi, "");
    else v = LLVMBuildSelect(g->b, cmp(g, e->op == NNC_LB_MAX ? NNC_LB_GT : NNC_LB_LT, dt, lo, hi), lo, hi, "");
  }
  return v;
}

/* A value as the u32 Philox takes ((uint32_t)x in C). */
static LLVMValueRef to_u32(llvm_emitter *g, const nnc_lexpr *e, LLVMValueRef v) {
  LLVMTypeRef t = e->type.lanes > 1 ? LLVMVectorType(g->t_i32, (unsigned)e->type.lanes) : g->t_i32;
  if (e->type.dtype == NNC_F32) return LLVMBuildFPToUI(g->b, v, t, "");
  return LLVMBuildIntCast2(g->b, v, t, e->type.dtype != NNC_U8 && e->type.dtype != NNC_BOOL, "");
}

/* (hi, lo) of the 64-bit product m * x, x u32 (scalar or vector) */
static void mulhilo(llvm_emitter *g, uint32_t m, LLVMValueRef x, int L, LLVMValueRef *hi, LLVMValueRef *lo) {
  LLVMTypeRef t64 = L > 1 ? LLVMVectorType(g->t_i64, (unsigned)L) : g->t_i64;
  LLVMTypeRef t32 = L > 1 ? LLVMVectorType(g->t_i32, (unsigned)L) : g->t_i32;
  LLVMValueRef p = LLVMBuildMul(g->b, LLVMBuildZExt(g->b, x, t64, ""), cint(g, g->t_i64, L, m), "");
  *lo = LLVMBuildTrunc(g->b, p, t32, "");
  *hi = LLVMBuildTrunc(g->b, LLVMBuildLShr(g->b, p, cint(g, g->t_i64, L, 32), ""), t32, "");
}

/* rng_uniform: Philox4x32-10 of counter (i, i >> 32, step, 0) and key (seed, key), first word's
 * top 24 bits scaled to [0, 1) (runtime/philox.h's nnc_rng_uniform_at, in IR). */
static LLVMValueRef rng(llvm_emitter *g, const nnc_lexpr *e) {
  int L = e->type.lanes;
  LLVMValueRef seed = splat(g, to_u32(g, e->a, ex(g, e->a)), L), step = splat(g, to_u32(g, e->b, ex(g, e->b)), L);
  LLVMValueRef i = ex(g, e->c);
  LLVMTypeRef t64 = L > 1 ? LLVMVectorType(g->t_i64, (unsigned)L) : g->t_i64;
  LLVMTypeRef t32 = L > 1 ? LLVMVectorType(g->t_i32, (unsigned)L) : g->t_i32;
  i = LLVMBuildIntCast2(g->b, i, e->c->type.lanes > 1 ? t64 : g->t_i64, e->c->type.dtype != NNC_U8, "");
  if (e->c->type.lanes == 1) i = splat(g, i, L);
  LLVMValueRef c0 = LLVMBuildTrunc(g->b, i, t32, ""), c1 = LLVMBuildTrunc(g->b, LLVMBuildLShr(g->b, i, cint(g, g->t_i64, L, 32), ""), t32, "");
  LLVMValueRef c2 = step, c3 = cint(g, g->t_i32, L, 0), k0 = seed, k1 = cint(g, g->t_i32, L, (uint32_t)e->ival);
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = LLVMBuildAdd(g->b, k0, cint(g, g->t_i32, L, NNC_PHILOX_W0), "");
      k1 = LLVMBuildAdd(g->b, k1, cint(g, g->t_i32, L, NNC_PHILOX_W1), "");
    }
    LLVMValueRef hi0, lo0, hi1, lo1;
    mulhilo(g, NNC_PHILOX_M0, c0, L, &hi0, &lo0);
    mulhilo(g, NNC_PHILOX_M1, c2, L, &hi1, &lo1);
    c0 = LLVMBuildXor(g->b, LLVMBuildXor(g->b, hi1, c1, ""), k0, "");
    c1 = lo1;
    c2 = LLVMBuildXor(g->b, LLVMBuildXor(g->b, hi0, c3, ""), k1, "");
    c3 = lo0;
  }
  LLVMTypeRef tf = ltype(g, e->type);
  LLVMValueRef bits = LLVMBuildLShr(g->b, c0, cint(g, g->t_i32, L, 8), "");
  return LLVMBuildFMul(g->b, LLVMBuildUIToFP(g->b, bits, tf, ""), splat_const(LLVMConstReal(g->t_f32, 0x1p-24), L), "");
}

static LLVMValueRef ex(llvm_emitter *g, const nnc_lexpr *e) {
  LLVMTypeRef T = ltype(g, e->type);
  if (!check_lanes(g, e->type)) return LLVMGetPoison(T);
  switch (e->kind) {
  case NNC_LE_INT: return cint(g, scalar_type(g, e->type.dtype), e->type.lanes, (uint64_t)e->ival);
  case NNC_LE_FLOAT: return splat_const(LLVMConstReal(g->t_f32, (double)(float)e->fval), e->type.lanes);
  case NNC_LE_VAR: return LLVMBuildLoad2(g->b, T, slot(g, e->var), "");
  case NNC_LE_SCALAR:
    if (e->scalar < 0 || e->scalar >= NNC_LSC_COUNT || !g->f.scalar[e->scalar]) {
      lerr(g, "a scalar parameter outside the kernel's");
      return LLVMGetPoison(T);
    }
    return g->f.scalar[e->scalar];
  case NNC_LE_BIN: return bin(g, e);
  case NNC_LE_UN: return unary(g, e);
  case NNC_LE_SELECT: {
    LLVMValueRef c = ex(g, e->a), a = ex(g, e->b), b = ex(g, e->c);
    return LLVMBuildSelect(g->b, c, a, b, "");
  }
  case NNC_LE_FMA: {
    LLVMValueRef args[3] = {ex(g, e->a), ex(g, e->b), ex(g, e->c)};
    return intrin(g, "llvm.fmuladd", &T, 1, args, 3);
  }
  case NNC_LE_CAST: return cast(g, e->type, e->a->type, ex(g, e->a));
  case NNC_LE_LOAD: return load(g, e);
  case NNC_LE_SPLAT: return splat(g, ex(g, e->a), e->type.lanes);
  case NNC_LE_HREDUCE: return hreduce(g, e);
  case NNC_LE_LANE: {
    LLVMValueRef v[NNC_MAX_LANES];
    for (int l = 0; l < e->type.lanes; l++) v[l] = LLVMConstInt(g->t_i64, (unsigned)l, 0);
    return LLVMConstVector(v, (unsigned)e->type.lanes);
  }
  case NNC_LE_RNG: return rng(g, e);
  case NNC_LE_THREAD:
  case NNC_LE_BLOCK:
  case NNC_LE_SHUFFLE:
    lerr(g, "GPU thread, block and shuffle expressions run under the phase emulator, not the LLVM backend");
    return LLVMGetPoison(T);
  case NNC_LE_POISON: break;
  }
  lerr(g, "an invalid expression");
  return LLVMGetPoison(T);
}

/* --- statements ----------------------------------------------------------------------------------- */

static void stmt(llvm_emitter *g, const nnc_lstmt *s);

static void store(llvm_emitter *g, const nnc_lstmt *s) {
  LLVMValueRef idx = ex(g, s->index), v = ex(g, s->value);
  unsigned al = elem_align(s->buf->dtype);
  if (s->value->type.lanes > 1 && s->mask) {
    LLVMValueRef p = elem_ptr(g, s->buf, idx);
    LLVMTypeRef tys[2] = {LLVMTypeOf(v), g->t_ptr};
    LLVMValueRef args[4] = {v, p, LLVMConstInt(g->t_i32, al, 0), ex(g, s->mask)};
    intrin(g, "llvm.masked.store", tys, 2, args, 4);
    return;
  }
  LLVMBasicBlockRef join = NULL;
  if (s->mask) { /* a scalar store under its condition */
    LLVMBasicBlockRef yes = new_block(g, "stm");
    join = new_block(g, "stm.end");
    LLVMBuildCondBr(g->b, ex(g, s->mask), yes, join);
    LLVMPositionBuilderAtEnd(g->b, yes);
  }
  LLVMValueRef st = LLVMBuildStore(g->b, v, elem_ptr(g, s->buf, idx));
  LLVMSetAlignment(st, al);
  if (join) LLVMBuildBr(g->b, join), LLVMPositionBuilderAtEnd(g->b, join);
}

static void atomic_add(llvm_emitter *g, const nnc_lstmt *s) {
  LLVMValueRef p = elem_ptr(g, s->buf, ex(g, s->index)), v = ex(g, s->value);
  bool f = s->buf->dtype == NNC_F32;
  if (g->in_par) {
    LLVMBuildAtomicRMW(g->b, f ? LLVMAtomicRMWBinOpFAdd : LLVMAtomicRMWBinOpAdd, p, v, LLVMAtomicOrderingMonotonic, 0);
    return;
  }
  LLVMValueRef old = LLVMBuildLoad2(g->b, LLVMTypeOf(v), p, "");
  LLVMSetAlignment(old, elem_align(s->buf->dtype));
  LLVMValueRef st = LLVMBuildStore(g->b, f ? LLVMBuildFAdd(g->b, old, v, "") : LLVMBuildAdd(g->b, old, v, ""), p);
  LLVMSetAlignment(st, elem_align(s->buf->dtype));
}

/* LLVM's unroller pays where the loop IR left a short loop of static trip count (a
 * convolution's 3x3 taps, a 2x2 pool): unrolled whole, its index arithmetic folds away. Partial
 * and runtime unrolling of the longer loops (a contraction's k loop, whose body is already a
 * register tile; packing loops) only multiplies the code: fashion_mlp's first matmul grew to
 * 8,500 lines of IR, most of the model's compile time, and ran no faster. So every other loop
 * says not to unroll it (docs/llvm.md, "Compile time"). */
enum { SHORT_LOOP_TRIPS = 4 };

static bool short_static_loop(const nnc_lstmt *s) {
  return s->lo->kind == NNC_LE_INT && s->hi->kind == NNC_LE_INT &&
         (s->hi->ival - s->lo->ival + s->step - 1) / s->step <= SHORT_LOOP_TRIPS;
}

/* !llvm.loop !{self, !{"llvm.loop.unroll.disable"}} on a loop's back edge */
static void forbid_unrolling(llvm_emitter *g, LLVMValueRef back_edge) {
  LLVMMetadataRef self = LLVMTemporaryMDNode(g->cx, NULL, 0);
  LLVMMetadataRef what = LLVMMDStringInContext2(g->cx, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(g->cx, &what, 1)};
  LLVMMetadataRef loop = LLVMMDNodeInContext2(g->cx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(self, loop);
  LLVMSetMetadata(back_edge, LLVMGetMDKindIDInContext(g->cx, "llvm.loop", 9), LLVMMetadataAsValue(g->cx, loop));
}

static void serial_for(llvm_emitter *g, const nnc_lstmt *s) {
  LLVMValueRef v = slot(g, s->var);
  LLVMBuildStore(g->b, ex(g, s->lo), v);
  LLVMBasicBlockRef head = new_block(g, "for"), body = new_block(g, "for.body"), done = new_block(g, "for.end");
  LLVMBuildBr(g->b, head);
  LLVMPositionBuilderAtEnd(g->b, head);
  LLVMValueRef i = LLVMBuildLoad2(g->b, g->t_i64, v, "");
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, i, ex(g, s->hi), ""), body, done);
  LLVMPositionBuilderAtEnd(g->b, body);
  stmt(g, s->body);
  LLVMValueRef i2 = LLVMBuildLoad2(g->b, g->t_i64, v, "");
  LLVMBuildStore(g->b, LLVMBuildNSWAdd(g->b, i2, LLVMConstInt(g->t_i64, (unsigned long long)s->step, 0), ""), v);
  LLVMValueRef back = LLVMBuildBr(g->b, head);
  if (!short_static_loop(s)) forbid_unrolling(g, back);
  LLVMPositionBuilderAtEnd(g->b, done);
}

static void unrolled_for(llvm_emitter *g, const nnc_lstmt *s) {
  if (!nnc_lk_check_unroll(g->k, s, g->d, &g->ok, "LLVM backend: ")) return;
  for (int64_t i = s->lo->ival; i < s->hi->ival && g->ok; i += s->step) {
    LLVMBuildStore(g->b, LLVMConstInt(g->t_i64, (unsigned long long)i, 0), slot(g, s->var));
    stmt(g, s->body);
  }
}

/* --- parallel loops: outlined bodies --------------------------------------------------------------- */

static LLVMTypeRef scalar_param_type(llvm_emitter *g, int i) {
  return i == NNC_LSC_N ? g->t_i64 : i == NNC_LSC_LR ? g->t_f32 : g->t_i32;
}

/* Zeroed allocas for the LOCAL buffers this function uses (C: `float acc[N] = {0};` at its top). */
static void declare_locals(llvm_emitter *g, const bool *used) {
  for (int i = 0; i < g->k->nbufs; i++) {
    const nnc_lbuf *b = g->k->bufs[i];
    if (b->scope != NNC_SCOPE_LOCAL || !used[i]) continue;
    LLVMTypeRef at = LLVMArrayType2(scalar_type(g, b->dtype), (uint64_t)b->size);
    LLVMValueRef p = entry_alloca(g, at, b->name);
    LLVMSetAlignment(p, 64);
    LLVMBuildMemSet(g->ab, p, LLVMConstInt(g->t_i8, 0, 0),
                    LLVMConstInt(g->t_i64, (unsigned long long)(b->size * (int64_t)nnc_dtype_size(b->dtype)), 0), 64);
    g->f.buf[i] = p;
  }
}

static void begin_function(llvm_emitter *g, LLVMValueRef fn) {
  g->f.fn = fn;
  g->f.entry = LLVMAppendBasicBlockInContext(g->cx, fn, "entry");
  LLVMPositionBuilderAtEnd(g->ab, g->f.entry);
  LLVMBasicBlockRef code = LLVMAppendBasicBlockInContext(g->cx, fn, "code");
  LLVMPositionBuilderAtEnd(g->b, code);
}

static void end_function(llvm_emitter *g) {
  LLVMBuildRetVoid(g->b);
  LLVMBasicBlockRef code = LLVMGetNextBasicBlock(g->f.entry);
  LLVMBuildBr(g->ab, code);
}


static bool captured_var(llvm_emitter *g, const nnc_lcapture *p, const nnc_lstmt *s, int v) {
  return nnc_lcapture_var(p, s, v) && g->vars[v];
}

/* What the env struct holds, field by field: a buffer, a scalar or a variable (else lo). */
typedef struct env_layout {
  int n;
  int *buf, *scalar, *var;
  LLVMTypeRef *types;
  LLVMTypeRef type;
} env_layout;

static env_layout env_new(llvm_emitter *g, const nnc_lstmt *s, const nnc_lcapture *p) {
  const nnc_kernel *k = g->k;
  int cap = k->nbufs + NNC_LSC_COUNT + k->nvars + 1;
  env_layout e = {0, nnc_xcalloc((size_t)cap, sizeof(int)), nnc_xcalloc((size_t)cap, sizeof(int)),
                  nnc_xcalloc((size_t)cap, sizeof(int)), nnc_xcalloc((size_t)cap, sizeof(LLVMTypeRef)), NULL};
  for (int i = 0; i < cap; i++) e.buf[i] = e.scalar[i] = e.var[i] = -1;
  for (int i = 0; i < k->nbufs; i++)
    if (nnc_lcapture_buf(p, k, i)) e.buf[e.n] = i, e.types[e.n++] = g->t_ptr;
  for (int i = 0; i < NNC_LSC_COUNT; i++)
    if (p->scalar_used[i]) e.scalar[e.n] = i, e.types[e.n++] = scalar_param_type(g, i);
  for (int v = 0; v < k->nvars; v++)
    if (captured_var(g, p, s, v)) e.var[e.n] = v, e.types[e.n++] = ltype(g, g->vars[v]->type);
  e.types[e.n++] = g->t_i64; /* lo */
  e.type = LLVMStructTypeInContext(g->cx, e.types, (unsigned)e.n, 0);
  return e;
}

static void env_free(env_layout *e) { free(e->buf), free(e->scalar), free(e->var), free(e->types); }

/* static void <kernel>_par<i>(void *env, int64_t lo, int64_t hi): iterations [lo, hi) of the
 * loop's trip count, the loop variable lo_ + it * step. */
static void outline_body(llvm_emitter *g, const nnc_lstmt *s, const nnc_lcapture *p, const env_layout *e, LLVMValueRef fn) {
  begin_function(g, fn);
  LLVMValueRef env = LLVMGetParam(fn, 0);
  LLVMValueRef lo_ = NULL;
  for (int f = 0; f < e->n; f++) {
    LLVMValueRef at = LLVMBuildStructGEP2(g->ab, e->type, env, (unsigned)f, "");
    LLVMValueRef v = LLVMBuildLoad2(g->ab, e->types[f], at, "");
    if (e->buf[f] >= 0) g->f.buf[e->buf[f]] = v;
    else if (e->scalar[f] >= 0) g->f.scalar[e->scalar[f]] = v;
    else if (e->var[f] >= 0) LLVMBuildStore(g->ab, v, slot(g, g->vars[e->var[f]]));
    else lo_ = v;
  }
  declare_locals(g, p->buf_used);
  LLVMValueRef it = entry_alloca(g, g->t_i64, "it");
  LLVMBuildStore(g->b, LLVMGetParam(fn, 1), it);
  LLVMBasicBlockRef head = new_block(g, "par"), body = new_block(g, "par.body"), done = new_block(g, "par.end");
  LLVMBuildBr(g->b, head);
  LLVMPositionBuilderAtEnd(g->b, head);
  LLVMValueRef i = LLVMBuildLoad2(g->b, g->t_i64, it, "");
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, i, LLVMGetParam(fn, 2), ""), body, done);
  LLVMPositionBuilderAtEnd(g->b, body);
  LLVMValueRef var = LLVMBuildAdd(g->b, lo_, LLVMBuildMul(g->b, i, LLVMConstInt(g->t_i64, (unsigned long long)s->step, 0), ""), "");
  LLVMBuildStore(g->b, var, slot(g, s->var));
  g->in_par = true;
  stmt(g, s->body);
  g->in_par = false;
  LLVMValueRef i2 = LLVMBuildLoad2(g->b, g->t_i64, it, "");
  LLVMBuildStore(g->b, LLVMBuildAdd(g->b, i2, LLVMConstInt(g->t_i64, 1, 0), ""), it);
  LLVMBuildBr(g->b, head);
  LLVMPositionBuilderAtEnd(g->b, done);
  end_function(g);
}

static void parallel_for(llvm_emitter *g, const nnc_lstmt *s) {
  const nnc_kernel *k = g->k;
  size_t nv = (size_t)(k->nvars > 0 ? k->nvars : 1), nb = (size_t)(k->nbufs > 0 ? k->nbufs : 1);
  nnc_lcapture p;
  nnc_lcapture_of(&p, k, s, &g->uses, g->d, &g->ok, "LLVM backend: ");
  env_layout e = env_new(g, s, &p);
  /* the outlined body */
  char name[300];
  snprintf(name, sizeof name, "%s_par%d", g->fname, g->npar++);
  LLVMTypeRef params[3] = {g->t_ptr, g->t_i64, g->t_i64};
  LLVMTypeRef body_t = LLVMFunctionType(g->t_void, params, 3, 0);
  LLVMValueRef fn = LLVMAddFunction(g->mod, name, body_t);
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  nnc_cg_llvm_fn_attrs(g->m, fn);
  nnc_cg_llvm_enum_attr(g->m, fn, 1, "noalias", 0);
  fnstate saved = g->f;
  LLVMBasicBlockRef at = LLVMGetInsertBlock(g->b);
  g->f = (fnstate){0};
  g->f.slot = nnc_xcalloc(nv, sizeof *g->f.slot);
  g->f.buf = nnc_xcalloc(nb, sizeof *g->f.buf);
  outline_body(g, s, &p, &e, fn);
  free(g->f.slot), free(g->f.buf);
  g->f = saved;
  LLVMPositionBuilderAtEnd(g->b, at);
  LLVMPositionBuilderAtEnd(g->ab, g->f.entry);
  /* the call site: fill env, count the iterations, run through rt->parallel_for or inline */
  LLVMValueRef env = entry_alloca(g, e.type, "env");
  LLVMValueRef lo = NULL;
  for (int f = 0; f < e.n; f++) {
    LLVMValueRef v = e.buf[f] >= 0      ? g->f.buf[e.buf[f]]
                     : e.scalar[f] >= 0 ? g->f.scalar[e.scalar[f]]
                     : e.var[f] >= 0    ? LLVMBuildLoad2(g->b, e.types[f], slot(g, g->vars[e.var[f]]), "")
                                        : (lo = ex(g, s->lo));
    LLVMBuildStore(g->b, v, LLVMBuildStructGEP2(g->b, e.type, env, (unsigned)f, ""));
  }
  LLVMValueRef hi = ex(g, s->hi);
  LLVMValueRef step = LLVMConstInt(g->t_i64, (unsigned long long)s->step, 0);
  LLVMValueRef span = LLVMBuildAdd(g->b, LLVMBuildSub(g->b, hi, lo, ""), LLVMConstInt(g->t_i64, (unsigned long long)(s->step - 1), 0), "");
  LLVMValueRef count = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, hi, lo, ""), LLVMBuildSDiv(g->b, span, step, ""),
                                       LLVMConstInt(g->t_i64, 0, 0), "count");
  LLVMBasicBlockRef has_rt = new_block(g, "rt"), pool = new_block(g, "pool"), inl = new_block(g, "inline"),
                    done = new_block(g, "par.done");
  LLVMValueRef rt = g->f.rt ? g->f.rt : LLVMConstNull(g->t_ptr);
  LLVMBuildCondBr(g->b, LLVMBuildIsNotNull(g->b, rt, ""), has_rt, inl);
  LLVMPositionBuilderAtEnd(g->b, has_rt);
  LLVMValueRef pf = LLVMBuildLoad2(g->b, g->t_ptr, LLVMBuildStructGEP2(g->b, g->t_rt, rt, 2, ""), "parallel_for");
  LLVMBuildCondBr(g->b, LLVMBuildIsNotNull(g->b, pf, ""), pool, inl);
  LLVMPositionBuilderAtEnd(g->b, pool);
  LLVMValueRef pl = LLVMBuildLoad2(g->b, g->t_ptr, LLVMBuildStructGEP2(g->b, g->t_rt, rt, 1, ""), "pool");
  LLVMTypeRef pf_params[4] = {g->t_ptr, g->t_i64, g->t_ptr, g->t_ptr};
  LLVMTypeRef pf_t = LLVMFunctionType(g->t_void, pf_params, 4, 0);
  LLVMBuildCall2(g->b, pf_t, pf, (LLVMValueRef[]){pl, count, fn, env}, 4, "");
  LLVMBuildBr(g->b, done);
  LLVMPositionBuilderAtEnd(g->b, inl);
  LLVMBuildCall2(g->b, body_t, fn, (LLVMValueRef[]){env, LLVMConstInt(g->t_i64, 0, 0), count}, 3, "");
  LLVMBuildBr(g->b, done);
  LLVMPositionBuilderAtEnd(g->b, done);
  env_free(&e);
  nnc_lcapture_free(&p);
}

static void for_loop(llvm_emitter *g, const nnc_lstmt *s) {
  switch (s->loop) {
  case NNC_LOOP_PARALLEL:
    if (!g->in_par) parallel_for(g, s);
    else serial_for(g, s); /* nested in an outlined body: serial */
    return;
  case NNC_LOOP_UNROLLED: unrolled_for(g, s); return;
  case NNC_LOOP_GPU_BLOCK:
  case NNC_LOOP_GPU_THREAD:
    lerr(g, "GPU loop %s: GPU schedules run under the phase emulator, not the LLVM backend", s->var->name);
    return;
  default: serial_for(g, s); return;
  }
}

static void stmt(llvm_emitter *g, const nnc_lstmt *s) {
  if (!s || !g->ok) return;
  switch (s->kind) {
  case NNC_LS_BLOCK:
    for (int i = 0; i < s->nitems; i++) stmt(g, s->items[i]);
    break;
  case NNC_LS_FOR: for_loop(g, s); break;
  case NNC_LS_IF: {
    LLVMValueRef c = ex(g, s->cond);
    LLVMBasicBlockRef then_b = new_block(g, "then"), else_b = s->else_s ? new_block(g, "else") : NULL,
                      join = new_block(g, "endif");
    LLVMBuildCondBr(g->b, c, then_b, else_b ? else_b : join);
    LLVMPositionBuilderAtEnd(g->b, then_b);
    stmt(g, s->then_s);
    LLVMBuildBr(g->b, join);
    if (else_b) {
      LLVMPositionBuilderAtEnd(g->b, else_b);
      stmt(g, s->else_s);
      LLVMBuildBr(g->b, join);
    }
    LLVMPositionBuilderAtEnd(g->b, join);
    break;
  }
  case NNC_LS_STORE: store(g, s); break;
  case NNC_LS_LET:
  case NNC_LS_ASSIGN:
    if (check_lanes(g, s->var->type)) LLVMBuildStore(g->b, ex(g, s->value), slot(g, s->var));
    break;
  case NNC_LS_ATOMIC_ADD: atomic_add(g, s); break;
  case NNC_LS_BARRIER: lerr(g, "barriers belong to GPU schedules (the phase emulator), not the LLVM backend"); break;
  case NNC_LS_COMMENT: break;
  }
}

/* --- the kernel function ------------------------------------------------------------------------------ */

static bool is_param_buf(const nnc_lbuf *b) { return b->scope == NNC_SCOPE_GLOBAL || b->scope == NNC_SCOPE_SCRATCH; }

/* The kernel's function with its signature and attributes, no body: rt, global and scratch
 * buffers, the scalars read (a fused optimizer update takes every param with its moments and
 * gradient: hundreds of buffers). buf_param (by buffer) and scalar_param, when given, receive
 * each parameter's index. */
static LLVMValueRef kernel_signature(nnc_cg_llvm_module *m, const nnc_kernel *k, const char *fname, int *buf_param,
                                     int *scalar_param) {
  LLVMContextRef cx = m->ctx;
  LLVMTypeRef t_ptr = LLVMPointerTypeInContext(cx, 0);
  LLVMTypeRef scalar_t[NNC_LSC_COUNT] = {LLVMInt64TypeInContext(cx), LLVMFloatTypeInContext(cx),
                                         LLVMInt32TypeInContext(cx), LLVMInt32TypeInContext(cx)};
  LLVMTypeRef *params = nnc_xcalloc((size_t)k->nbufs + NNC_LSC_COUNT + 1, sizeof *params);
  int np = 0;
  params[np++] = t_ptr;
  for (int i = 0; i < k->nbufs; i++)
    if (is_param_buf(k->bufs[i])) {
      if (buf_param) buf_param[i] = np;
      params[np++] = t_ptr;
    }
  for (int i = 0; i < NNC_LSC_COUNT; i++)
    if (k->uses_scalar[i]) {
      if (scalar_param) scalar_param[i] = np;
      params[np++] = scalar_t[i];
    }
  LLVMValueRef fn = LLVMAddFunction(m->mod, fname, LLVMFunctionType(LLVMVoidTypeInContext(cx), params, (unsigned)np, 0));
  free(params);
  nnc_cg_llvm_fn_attrs(m, fn);
  /* A kernel stays a call: a call costs nothing beside a kernel's loops, while inlining a
   * program's hundreds of kernels into its entry function makes one function that O3's
   * superlinear passes take minutes and gigabytes over (tiny_gpt: killed at 24 GB). */
  nnc_cg_llvm_enum_attr(m, fn, LLVMAttributeFunctionIndex, "noinline", 0);
  for (int i = 0, p = 1; i < k->nbufs; i++) {
    if (!is_param_buf(k->bufs[i])) continue;
    /* No noalias: the memory plan's in-place reuse passes one range as a kernel's input and
     * output, which noalias would make undefined (the C printer drops restrict for the same
     * reason; docs/memory.md). Explicit vectors do not need the alias facts. */
    nnc_cg_llvm_enum_attr(m, fn, (unsigned)p + 1, "align", NNC_LLVM_BUF_ALIGN);
    if (!k->bufs[i]->written) nnc_cg_llvm_enum_attr(m, fn, (unsigned)p + 1, "readonly", 0);
    p++;
  }
  return fn;
}

LLVMValueRef nnc_cg_llvm_kernel_decl(nnc_cg_llvm_module *m, const nnc_kernel *k, const char *fname) {
  return kernel_signature(m, k, fname, NULL, NULL);
}

LLVMValueRef nnc_cg_llvm_kernel_fn(nnc_cg_llvm_module *m, const nnc_kernel *k, const char *fname, bool external,
                                   nnc_diags *d) {
  nnc_lk_finish((nnc_kernel *)k); /* only recomputes derived fields */
  return nnc_cg_llvm_kernel_fn_finished(m, k, fname, external, d);
}

LLVMValueRef nnc_cg_llvm_kernel_fn_finished(nnc_cg_llvm_module *m, const nnc_kernel *k, const char *fname,
                                            bool external, nnc_diags *d) {
  llvm_emitter g = {.m = m, .cx = m->ctx, .mod = m->mod, .k = k, .fname = fname, .d = d, .ok = true};
  if (!nnc_lk_check_cpu(k, d, &g.ok, "LLVM backend: ", "LLVM")) return NULL;
  g.t_f32 = LLVMFloatTypeInContext(g.cx), g.t_i32 = LLVMInt32TypeInContext(g.cx), g.t_i8 = LLVMInt8TypeInContext(g.cx);
  g.t_i64 = LLVMInt64TypeInContext(g.cx), g.t_i1 = LLVMInt1TypeInContext(g.cx), g.t_ptr = LLVMPointerTypeInContext(g.cx, 0);
  g.t_void = LLVMVoidTypeInContext(g.cx);
  g.t_rt = nnc_cg_llvm_rt_type(m);
  size_t nv = (size_t)(k->nvars > 0 ? k->nvars : 1), nb = (size_t)(k->nbufs > 0 ? k->nbufs : 1);
  nnc_lk_uses_of(&g.uses, k);
  g.vars = g.uses.vars;
  g.f.slot = nnc_xcalloc(nv, sizeof *g.f.slot);
  g.f.buf = nnc_xcalloc(nb, sizeof *g.f.buf);
  int *buf_param = nnc_xcalloc(nb, sizeof *buf_param), scalar_param[NNC_LSC_COUNT];
  LLVMValueRef fn = kernel_signature(m, k, fname, buf_param, scalar_param);
  if (!external) LLVMSetLinkage(fn, LLVMInternalLinkage);
  g.b = LLVMCreateBuilderInContext(g.cx), g.ab = LLVMCreateBuilderInContext(g.cx);
  begin_function(&g, fn);
  g.f.rt = LLVMGetParam(fn, 0);
  for (int i = 0; i < k->nbufs; i++)
    if (is_param_buf(k->bufs[i])) g.f.buf[i] = LLVMGetParam(fn, (unsigned)buf_param[i]);
  for (int i = 0; i < NNC_LSC_COUNT; i++)
    if (k->uses_scalar[i]) g.f.scalar[i] = LLVMGetParam(fn, (unsigned)scalar_param[i]);
  declare_locals(&g, g.uses.outside_parallel);
  stmt(&g, k->body);
  end_function(&g);
  LLVMDisposeBuilder(g.b), LLVMDisposeBuilder(g.ab);
  nnc_lk_uses_free(&g.uses);
  free(g.f.slot), free(g.f.buf), free(buf_param);
  if (!g.ok && fn) {
    /* drop what was generated for this kernel: the module stays valid */
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s_par", fname);
    for (LLVMValueRef f = LLVMGetFirstFunction(g.mod), next; f; f = next) {
      next = LLVMGetNextFunction(f);
      size_t len;
      const char *nm = LLVMGetValueName2(f, &len);
      if (f == fn || !strncmp(nm, prefix, strlen(prefix))) LLVMDeleteFunction(f);
    }
    fn = NULL;
  }
  return g.ok ? fn : NULL;
}

LLVMTypeRef nnc_cg_llvm_rt_type(nnc_cg_llvm_module *m) {
  LLVMTypeRef f[3] = {LLVMInt32TypeInContext(m->ctx), LLVMPointerTypeInContext(m->ctx, 0), LLVMPointerTypeInContext(m->ctx, 0)};
  return LLVMStructTypeInContext(m->ctx, f, 3, 0);
}

bool nnc_cg_llvm_kernel(nnc_cg_llvm_module *m, const nnc_kernel *k, nnc_diags *d) {
  return nnc_cg_llvm_kernel_fn(m, k, k->name, true, d) != NULL;
}

/* --- optimization and output ---------------------------------------------------------------------------- */

bool nnc_cg_llvm_verify(nnc_cg_llvm_module *m, nnc_diags *d) {
  char *msg = NULL;
  if (LLVMVerifyModule(m->mod, LLVMReturnStatusAction, &msg)) {
    nnc_error(d, (nnc_loc){0}, "LLVM backend: invalid module: %s", msg ? msg : "");
    LLVMDisposeMessage(msg);
    return false;
  }
  LLVMDisposeMessage(msg);
  return true;
}

bool nnc_cg_llvm_optimize(nnc_cg_llvm_module *m, nnc_diags *d) {
  if (m->optimized) return true;
  if (!nnc_cg_llvm_verify(m, d)) return false;
  LLVMPassBuilderOptionsRef o = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
  LLVMErrorRef e = LLVMRunPasses(m->mod, m->pipeline, m->tm, o);
  LLVMDisposePassBuilderOptions(o);
  if (e) {
    char *msg = LLVMGetErrorMessage(e);
    nnc_error(d, (nnc_loc){0}, "LLVM optimization failed: %s", msg);
    LLVMDisposeErrorMessage(msg);
    return false;
  }
  m->optimized = true;
  return true;
}

/* Emitted in memory and written by the caller's stream: the driver commits the file atomically
 * (and LLVM's own file writer turns a full disk into a fatal error). */
bool nnc_cg_llvm_emit(nnc_cg_llvm_module *m, nnc_cg_llvm_emit_kind kind, FILE *out, nnc_diags *d) {
  if (!nnc_cg_llvm_optimize(m, d)) return false;
  if (kind == NNC_LLVM_EMIT_IR) {
    char *text = LLVMPrintModuleToString(m->mod);
    bool ok = fputs(text, out) >= 0 && fflush(out) == 0;
    LLVMDisposeMessage(text);
    if (!ok) nnc_error(d, (nnc_loc){0}, "writing the LLVM IR failed: %s", strerror(errno));
    return ok;
  }
  char *msg = NULL;
  LLVMMemoryBufferRef buf = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(m->tm, m->mod, kind == NNC_LLVM_EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile,
                                          &msg, &buf)) {
    nnc_error(d, (nnc_loc){0}, "LLVM code generation failed: %s", msg ? msg : "");
    LLVMDisposeMessage(msg);
    return false;
  }
  size_t size = LLVMGetBufferSize(buf);
  bool ok = fwrite(LLVMGetBufferStart(buf), 1, size, out) == size && fflush(out) == 0;
  LLVMDisposeMemoryBuffer(buf);
  if (!ok) nnc_error(d, (nnc_loc){0}, "writing the %s failed: %s", kind == NNC_LLVM_EMIT_ASM ? "assembly" : "object file",
                      strerror(errno));
  return ok;
}
