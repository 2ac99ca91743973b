/* The LLVM backend (DESIGN §10, docs/llvm.md): loop IR -> LLVM IR through the LLVM 19 C API,
 * optimized for the host CPU and JIT-compiled with ORC LLJIT, with a persistent object cache.
 *
 * A kernel becomes a function with the C printer's signature (codegen/c.h):
 *
 *     void <name>(const nnc_rt *rt, <global buffers>, <scratch buffers>, <scalars read>)
 *
 * with the same semantics bit for bit where C defines them (evaluation order, hreduce's
 * halving, saturating casts, Philox). Buffer parameters are `noalias` and aligned to
 * NNC_ABI_ALIGN (64 bytes): callers pass region-based pointers (runtime/abi.h). Parallel loops
 * are outlined into `void (void *env, int64_t lo, int64_t hi)` bodies run through
 * rt->parallel_for (inline when rt or its parallel_for is NULL).
 *
 * Only built with NNC_WITH_LLVM=ON. */
#ifndef NNC_CG_LLVM_H
#define NNC_CG_LLVM_H

#include <stdbool.h>
#include <stddef.h>

#include "ir/diag.h"
#include "ir/loop.h"
#include "ir/lowered.h"

typedef struct nnc_cg_llvm_module nnc_cg_llvm_module;

/* The target: NULL cpu/features mean the host's (LLVMGetHostCPUName/Features). */
typedef struct nnc_cg_llvm_target {
  const char *cpu;
  const char *features;
} nnc_cg_llvm_target;

/* An empty module for the target (NULL: the host). NULL with a message when LLVM has no target
 * for this machine. */
nnc_cg_llvm_module *nnc_cg_llvm_module_new(const char *name, const nnc_cg_llvm_target *, nnc_diags *);
void nnc_cg_llvm_module_free(nnc_cg_llvm_module *);
/* The preferred vector width in bits the module's functions carry ("prefer-vector-width"):
 * 512 with AVX-512F, 256 with AVX, else 128. */
int nnc_cg_llvm_vector_bits(const nnc_cg_llvm_module *);

/* Adds kernel k as an external function named k->name. False after reporting through diags
 * when the kernel holds what a CPU backend does not run (GPU loops, thread indices, shuffles,
 * barriers, lane counts that are not powers of two) or is malformed. */
bool nnc_cg_llvm_kernel(nnc_cg_llvm_module *, const nnc_kernel *, nnc_diags *);

/* Adds a whole model: each distinct kernel of progs once (internal) and one entry function per
 * program, `int <model>_<program>(const nnc_rt *, const nnc_args *)`, as the C backend's
 * (codegen/c_program.h): the same argument checks and results. */
bool nnc_cg_llvm_program(nnc_cg_llvm_module *, const char *model, nnc_lprogram *const *progs, int nprogs,
                         nnc_diags *);

/* With on, nnc_cg_llvm_program also emits per program
 *     int <model>_<program>_call(const nnc_rt *, const nnc_args *, int64_t i)
 * which runs only kernel call i of the program (the entry's argument checks are the caller's):
 * how --check-kernels compares each kernel's output with the interpreter. Off by default. */
void nnc_cg_llvm_module_call_entries(nnc_cg_llvm_module *, bool on);

typedef enum { NNC_LLVM_EMIT_IR, NNC_LLVM_EMIT_ASM, NNC_LLVM_EMIT_OBJ } nnc_cg_llvm_emit_kind;

/* Optimizes the module (default<O3> for its target) and writes it to out: LLVM IR text,
 * assembly, or a position-independent object file. False with a message. */
bool nnc_cg_llvm_emit(nnc_cg_llvm_module *, nnc_cg_llvm_emit_kind, FILE *out, nnc_diags *);

/* --- the JIT and its object cache ------------------------------------------------------------ */

typedef enum {
  NNC_LLVM_CACHE_OFF,       /* no cache directory could be used: compiled */
  NNC_LLVM_CACHE_HIT,       /* the object came from the cache: LLVM's optimizer and codegen skipped */
  NNC_LLVM_CACHE_MISS,      /* compiled and stored */
  NNC_LLVM_CACHE_CORRUPT,   /* an entry was there but failed its checks: compiled and replaced */
} nnc_cg_llvm_cache_result;

typedef struct nnc_cg_llvm_jit_opts {
  /* The cache directory; NULL: $NNC_CACHE_DIR, else $XDG_CACHE_HOME/nnc, else ~/.cache/nnc. */
  const char *cache_dir;
  bool no_cache;            /* compile without reading or writing the cache */
  int threads;              /* nnc_cg_llvm_jit_model: kernels compiled at once; 0: the cores online */
  bool call_entries;        /* nnc_cg_llvm_jit_model: also <model>_<program>_call */
} nnc_cg_llvm_jit_opts;

typedef struct nnc_cg_llvm_jit nnc_cg_llvm_jit;

/* Compiles the module (which is consumed: freed whatever the outcome) to native code in this
 * process. The object is looked up in the cache under a hash of the module's IR, the target
 * CPU and features, the LLVM version and nnc's; a valid entry skips optimization and code
 * generation. Entries are written to a temporary file and renamed, so concurrent compilations
 * never see half an entry; each carries its size and a hash of its bytes, checked on read.
 * libm and libc symbols resolve in the process. NULL with a message. */
nnc_cg_llvm_jit *nnc_cg_llvm_jit_new(nnc_cg_llvm_module *, const nnc_cg_llvm_jit_opts *, nnc_diags *);
/* Compiles a whole model for this process kernel by kernel (docs/llvm.md, "Kernel by kernel"):
 * each distinct kernel of progs is a module of its own, looked up in the cache under its own
 * key and compiled on a miss, on opts.threads threads; a small module of entry functions, the
 * ones nnc_cg_llvm_program makes, calls them. So an edited model recompiles only the kernels
 * that changed. Symbols as nnc_cg_llvm_program's entries; NULL with a message. */
nnc_cg_llvm_jit *nnc_cg_llvm_jit_model(const char *model, nnc_lprogram *const *progs, int nprogs,
                                       const nnc_cg_llvm_jit_opts *, nnc_diags *);
/* Where a compilation's time went, in seconds: building LLVM IR, hashing it and reading the
 * cache, LLVM's optimizer and code generator (both 0 on a cache hit), and linking the objects
 * into the process. For nnc_cg_llvm_jit_model the first four are summed over its threads and
 * wall_s is the wall-clock time of all of them; kernels counts the distinct kernels, hits those
 * the cache held, compiled those compiled. */
typedef struct nnc_cg_llvm_jit_times {
  double ir_s, cache_s, optimize_s, codegen_s, link_s;
  double wall_s;
  int kernels, hits, compiled, threads;
} nnc_cg_llvm_jit_times;
nnc_cg_llvm_jit_times nnc_cg_llvm_jit_timing(const nnc_cg_llvm_jit *);
/* The address of a function of the module, or NULL. */
void *nnc_cg_llvm_jit_sym(nnc_cg_llvm_jit *, const char *name);
nnc_cg_llvm_cache_result nnc_cg_llvm_jit_cache_result(const nnc_cg_llvm_jit *);
/* The entry's path ("" with no cache). */
const char *nnc_cg_llvm_jit_cache_path(const nnc_cg_llvm_jit *);
void nnc_cg_llvm_jit_free(nnc_cg_llvm_jit *);

#endif
