/* The LLVM JIT (ORC LLJIT) and its persistent object cache (codegen/llvm.h, docs/llvm.md).
 *
 * Every compilation goes through an object file: on a cache miss the module is optimized and
 * compiled by the module's target machine and the object stored; on a hit the stored object is
 * used as is. Either way LLJIT only links the object, so a hit skips all of LLVM's optimizer
 * and code generator.
 *
 * An entry is `<dir>/<key>.o`, key = 128 bits of hash over the unoptimized IR text, the target
 * triple, CPU and features, the vector width, LLVM's version and nnc's. Its bytes are a header
 * (magic, the key, the object's size and a hash of the object) and the object. A reader checks
 * all of it and treats any mismatch as corrupt (recompile, replace). Writers write a private
 * temporary file and rename it over the entry, so readers see a whole entry or none. */
#include <errno.h>
#include <fcntl.h>
#include <llvm-c/Error.h>
#include <llvm/Config/llvm-config.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codegen/llvm_internal.h"

#ifndef NNC_VERSION
#define NNC_VERSION "0"
#endif

struct nnc_cg_llvm_jit {
  LLVMOrcLLJITRef jit;
  nnc_cg_llvm_cache_result cache;
  nnc_cg_llvm_jit_times times;
  char path[4200];
};

/* --- hashing ---------------------------------------------------------------------------------- */

/* 64-bit FNV-1a, then a final avalanche (murmur3's fmix64); two seeds give 128 bits. */
static uint64_t hash64(const void *data, size_t len, uint64_t seed) {
  const unsigned char *p = data;
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  h ^= h >> 33, h *= 0xff51afd7ed558ccdull, h ^= h >> 33, h *= 0xc4ceb9fe1a85ec53ull, h ^= h >> 33;
  return h;
}

nnc_cg_llvm_key nnc_cg_llvm_module_key(nnc_cg_llvm_module *m) {
  char *ir = LLVMPrintModuleToString(m->mod);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  nnc_cg_llvm_key k = {0, 0};
  if (f) {
    fprintf(f, "nnc %s\nllvm %d.%d.%d\ntriple %s\ncpu %s\nfeatures %s\nvector %d\nopt %s codegen %d\n%s", NNC_VERSION,
            LLVM_VERSION_MAJOR, LLVM_VERSION_MINOR, LLVM_VERSION_PATCH, m->triple, m->cpu, m->features, m->vector_bits,
            m->pipeline, m->codegen_level, ir);
    fclose(f);
    k.a = hash64(text, len, 0);
    k.b = hash64(text, len, 0x9E3779B97F4A7C15ull);
  }
  free(text);
  LLVMDisposeMessage(ir);
  return k;
}

/* --- the cache directory ------------------------------------------------------------------------- */

/* mkdir -p; true when dir exists as a directory afterwards */
static bool make_dirs(const char *dir) {
  char p[4096];
  if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return false;
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = 0;
      if (mkdir(p, 0755) != 0 && errno != EEXIST) return false;
      *s = '/';
    }
  if (mkdir(p, 0755) != 0 && errno != EEXIST) return false;
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

bool nnc_cg_llvm_cache_dir(const nnc_cg_llvm_jit_opts *o, char *dir, size_t cap) {
  const char *env;
  if (o && o->cache_dir) snprintf(dir, cap, "%s", o->cache_dir);
  else if ((env = getenv("NNC_CACHE_DIR")) && *env) snprintf(dir, cap, "%s", env);
  else if ((env = getenv("XDG_CACHE_HOME")) && *env) snprintf(dir, cap, "%s/nnc", env);
  else if ((env = getenv("HOME")) && *env) snprintf(dir, cap, "%s/.cache/nnc", env);
  else return false;
  return make_dirs(dir);
}

/* --- entries ------------------------------------------------------------------------------------ */

enum { HEADER_WORDS = 6 };
static const uint64_t ENTRY_MAGIC = 0x314a424f434e4e00ull; /* "\0NNCOBJ1" */

void nnc_cg_llvm_cache_path(const char *dir, nnc_cg_llvm_key key, char *path, size_t cap) {
  snprintf(path, cap, "%s/%016llx%016llx.o", dir, (unsigned long long)key.a, (unsigned long long)key.b);
}

/* The object of a valid entry at path (malloc'd), NULL when absent; *corrupt when present but
 * failing a check. */
static char *read_entry(const char *path, nnc_cg_llvm_key key, size_t *size, bool *corrupt) {
  *corrupt = false;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint64_t h[HEADER_WORDS];
  char *obj = NULL;
  bool ok = fread(h, sizeof h, 1, f) == 1 && h[0] == ENTRY_MAGIC && h[1] == key.a && h[2] == key.b &&
            h[3] > 0 && h[3] < ((uint64_t)1 << 32);
  if (ok) {
    obj = malloc((size_t)h[3] + 1);
    ok = obj && fread(obj, 1, (size_t)h[3], f) == (size_t)h[3] && fgetc(f) == EOF &&
         hash64(obj, (size_t)h[3], 1) == h[4] && h[5] == (h[0] ^ h[1] ^ h[2] ^ h[3] ^ h[4]);
  }
  fclose(f);
  if (!ok) {
    free(obj);
    *corrupt = true;
    return NULL;
  }
  *size = (size_t)h[3];
  return obj;
}

LLVMMemoryBufferRef nnc_cg_llvm_cache_read(const char *path, nnc_cg_llvm_key key, bool *corrupt) {
  size_t size = 0;
  char *bytes = read_entry(path, key, &size, corrupt);
  if (!bytes) return NULL;
  LLVMMemoryBufferRef obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(bytes, size, "nnc-cached");
  free(bytes);
  return obj;
}

/* Writes a private temporary file and renames it over path: all or nothing. No fsync: an entry
 * cut short by a crash fails its size and hash checks and is compiled again. */
bool nnc_cg_llvm_cache_write(const char *dir, const char *path, nnc_cg_llvm_key key, LLVMMemoryBufferRef buf) {
  static _Atomic unsigned counter; /* the model JIT writes entries from several threads */
  const char *obj = LLVMGetBufferStart(buf);
  size_t size = LLVMGetBufferSize(buf);
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s/.tmp.%ld.%u.%lx", dir, (long)getpid(), counter++, (unsigned long)time(NULL));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return false;
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    close(fd);
    unlink(tmp);
    return false;
  }
  uint64_t h[HEADER_WORDS] = {ENTRY_MAGIC, key.a, key.b, size, hash64(obj, size, 1), 0};
  h[5] = h[0] ^ h[1] ^ h[2] ^ h[3] ^ h[4];
  bool ok = fwrite(h, sizeof h, 1, f) == 1 && fwrite(obj, 1, size, f) == size;
  ok = (fflush(f) == 0) && ok;
  ok = (fclose(f) == 0) && ok;
  if (ok) ok = rename(tmp, path) == 0;
  if (!ok) unlink(tmp);
  return ok;
}

/* --- compiling ------------------------------------------------------------------------------------ */

static bool take_error(LLVMErrorRef e, const char *what, nnc_diags *d) {
  if (!e) return true;
  char *msg = LLVMGetErrorMessage(e);
  nnc_error(d, (nnc_loc){0}, "%s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return false;
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

LLVMMemoryBufferRef nnc_cg_llvm_compile_object(nnc_cg_llvm_module *m, nnc_cg_llvm_jit_times *t, nnc_diags *d) {
  double t0 = seconds();
  if (!nnc_cg_llvm_optimize(m, d)) return NULL;
  double t1 = seconds();
  t->optimize_s += t1 - t0;
  LLVMMemoryBufferRef buf = NULL;
  char *msg = NULL;
  bool failed = LLVMTargetMachineEmitToMemoryBuffer(m->tm, m->mod, LLVMObjectFile, &msg, &buf);
  t->codegen_s += seconds() - t1;
  if (failed) {
    nnc_error(d, (nnc_loc){0}, "LLVM code generation failed: %s", msg ? msg : "");
    LLVMDisposeMessage(msg);
    return NULL;
  }
  return buf;
}

static bool start_jit(nnc_cg_llvm_jit *j, LLVMMemoryBufferRef *objs, int n, nnc_diags *d) {
  int added = 0;
  if (!take_error(LLVMOrcCreateLLJIT(&j->jit, NULL), "cannot create the LLVM JIT", d)) goto fail;
  LLVMOrcJITDylibRef main_jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
  LLVMOrcDefinitionGeneratorRef gen = NULL;
  /* expf, powf, memset ...: resolved in this process */
  if (!take_error(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL,
                                                                        NULL),
                  "cannot search the process's symbols", d))
    goto fail;
  LLVMOrcJITDylibAddGenerator(main_jd, gen);
  for (; added < n; added++)
    if (!take_error(LLVMOrcLLJITAddObjectFile(j->jit, main_jd, objs[added]), "the JIT refused an object", d)) {
      added++; /* consumed even when refused */
      goto fail;
    }
  return true;
fail:
  for (int i = added; i < n; i++) LLVMDisposeMemoryBuffer(objs[i]);
  return false;
}

nnc_cg_llvm_jit *nnc_cg_llvm_jit_link(LLVMMemoryBufferRef *objs, int n, nnc_diags *d) {
  nnc_cg_llvm_jit *j = nnc_xcalloc(1, sizeof *j);
  double t0 = seconds();
  if (!start_jit(j, objs, n, d)) {
    nnc_cg_llvm_jit_free(j);
    return NULL;
  }
  j->times.link_s = seconds() - t0;
  return j;
}

void nnc_cg_llvm_jit_set_result(nnc_cg_llvm_jit *j, nnc_cg_llvm_cache_result r, const nnc_cg_llvm_jit_times *t) {
  double link_s = j->times.link_s;
  j->cache = r;
  j->times = *t;
  j->times.link_s = link_s;
}

nnc_cg_llvm_jit *nnc_cg_llvm_jit_new(nnc_cg_llvm_module *m, const nnc_cg_llvm_jit_opts *o, nnc_diags *d) {
  char dir[4096], path[4200] = "";
  bool cached = !(o && o->no_cache) && nnc_cg_llvm_cache_dir(o, dir, sizeof dir);
  LLVMMemoryBufferRef obj = NULL;
  nnc_cg_llvm_jit_times t = {.kernels = 1, .threads = 1};
  nnc_cg_llvm_cache_result result = NNC_LLVM_CACHE_OFF;
  if (!nnc_cg_llvm_verify(m, d)) goto fail;
  nnc_cg_llvm_key key = {0, 0};
  double t0 = seconds();
  if (cached) {
    key = nnc_cg_llvm_module_key(m);
    nnc_cg_llvm_cache_path(dir, key, path, sizeof path);
    bool corrupt = false;
    obj = nnc_cg_llvm_cache_read(path, key, &corrupt);
    result = obj ? NNC_LLVM_CACHE_HIT : corrupt ? NNC_LLVM_CACHE_CORRUPT : NNC_LLVM_CACHE_MISS;
  }
  t.cache_s = seconds() - t0;
  if (!obj) {
    obj = nnc_cg_llvm_compile_object(m, &t, d);
    if (!obj) goto fail;
    /* a cache that cannot be written is no error: the code still runs */
    if (cached && !nnc_cg_llvm_cache_write(dir, path, key, obj)) result = NNC_LLVM_CACHE_OFF;
  }
  t.hits = result == NNC_LLVM_CACHE_HIT, t.compiled = !t.hits;
  t.wall_s = seconds() - t0;
  nnc_cg_llvm_module_free(m);
  nnc_cg_llvm_jit *j = nnc_cg_llvm_jit_link(&obj, 1, d);
  if (j) {
    nnc_cg_llvm_jit_set_result(j, result, &t);
    snprintf(j->path, sizeof j->path, "%s", result == NNC_LLVM_CACHE_OFF ? "" : path);
  }
  return j;
fail:
  nnc_cg_llvm_module_free(m);
  return NULL;
}

void *nnc_cg_llvm_jit_sym(nnc_cg_llvm_jit *j, const char *name) {
  LLVMOrcExecutorAddress addr = 0;
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &addr, name);
  if (e) {
    LLVMConsumeError(e);
    return NULL;
  }
  return (void *)(uintptr_t)addr;
}

nnc_cg_llvm_cache_result nnc_cg_llvm_jit_cache_result(const nnc_cg_llvm_jit *j) { return j->cache; }

nnc_cg_llvm_jit_times nnc_cg_llvm_jit_timing(const nnc_cg_llvm_jit *j) { return j->times; }

const char *nnc_cg_llvm_jit_cache_path(const nnc_cg_llvm_jit *j) { return j->path; }

void nnc_cg_llvm_jit_free(nnc_cg_llvm_jit *j) {
  if (!j) return;
  if (j->jit) LLVMConsumeError(LLVMOrcDisposeLLJIT(j->jit));
  free(j);
}
