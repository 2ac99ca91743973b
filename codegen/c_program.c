/* Whole programs as standalone C: model.c (kernels + entry functions), model.h (the API and
 * the layout as constants) and the safetensors loader. The kernels come from the kernel
 * printer (codegen/c.c); this file only orders calls and computes their pointers. */
#include "c_program.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "c.h"

const char nnc_cg_abi_text[] =
#include "abi_text.inc"
    ;

const char *nnc_cg_c_ident(const char *name, char *buf, size_t cap) {
  size_t j = 0;
  if (cap == 0) return buf;
  if (isdigit((unsigned char)name[0]) && j + 1 < cap) buf[j++] = '_';
  for (size_t i = 0; name[i] && j + 1 < cap; i++) buf[j++] = isalnum((unsigned char)name[i]) ? name[i] : '_';
  buf[j] = 0;
  return buf;
}

static const char *upper_ident(const char *name, char *buf, size_t cap) {
  nnc_cg_c_ident(name, buf, cap);
  for (char *p = buf; *p; p++) *p = (char)toupper((unsigned char)*p);
  return buf;
}

static const char *c_type(nnc_dtype dt) { return dt == NNC_F32 ? "float" : dt == NNC_I32 ? "int32_t" : "uint8_t"; }

static const char *region_base(nnc_mem_region r) { return r == NNC_MEM_PERSIST ? "P" : r == NNC_MEM_IO ? "IO" : "S"; }

/* --- model.c ----------------------------------------------------------------------------------- */

/* Kernel names are made unique across programs (node ids repeat between programs) for the
 * time of the printing; the names they had are returned, for restore_names. */
static const char **name_kernels(nnc_kernel_set *u, nnc_arena *a) {
  const char **had = nnc_xcalloc((size_t)u->n + 1, sizeof *had);
  for (int i = 0; i < u->n; i++) {
    nnc_kernel *k = u->list[i];
    char id[128];
    nnc_cg_c_ident(k->name, id, sizeof id);
    had[i] = k->name;
    k->name = nnc_arena_printf(a, "k%d_%s", i, id);
  }
  return had;
}

/* The compiled kernels keep their own names: printing twice prints the same text. */
static void restore_names(nnc_kernel_set *u, const char **had) {
  for (int i = 0; i < u->n; i++) u->list[i]->name = had[i];
  free(had);
}

/* Whether parameter j of call c shares bytes with an earlier parameter while one of the two is
 * written: an in-place call (passes/memplan_steps.c proves each element is read just before the
 * same element is written). */
static bool overlap_written(const nnc_lprogram *p, const nnc_lcall *c, const nnc_kernel *k, int i, int j) {
  const nnc_mem_buffer *a = &p->plan->bufs[c->bufs[i]], *b = &p->plan->bufs[c->bufs[j]];
  bool written = (i < k->nbufs && k->bufs[i]->written) || (j < k->nbufs && k->bufs[j]->written);
  return written && a->region == b->region && a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
}

static bool aliases_earlier(const nnc_lprogram *p, const nnc_lcall *c, const nnc_kernel *k, int j) {
  for (int i = 0; i < j; i++)
    if (overlap_written(p, c, k, i, j)) return true;
  return false;
}

/* For each unique kernel, by buffer id: some call passes the buffer over bytes another of its
 * buffers reaches, one of the two written, so the printer must not declare it `restrict`. */
static bool **shared_buffers(nnc_lprogram *const *progs, int nprogs, const nnc_kernel_set *u) {
  bool **shared = nnc_xcalloc((size_t)(u->n > 0 ? u->n : 1), sizeof *shared);
  for (int i = 0; i < u->n; i++) shared[i] = nnc_xcalloc((size_t)(u->list[i]->nbufs > 0 ? u->list[i]->nbufs : 1), 1);
  for (int pi = 0; pi < nprogs; pi++) {
    const nnc_lprogram *p = progs[pi];
    for (int ci = 0; ci < p->ncalls; ci++) {
      const nnc_lcall *c = &p->calls[ci];
      int ki = u->index[pi][c->kernel];
      const nnc_kernel *k = u->list[ki];
      for (int j = 1; j < c->nbufs && j < k->nbufs; j++)
        for (int i = 0; i < j; i++)
          if (overlap_written(p, c, k, i, j)) shared[ki][i] = shared[ki][j] = true;
    }
  }
  return shared;
}

static bool program_aliases(const nnc_lprogram *p, const nnc_kernel_set *u, int pi) {
  for (int i = 0; i < p->ncalls; i++)
    for (int j = 1; j < p->calls[i].nbufs; j++)
      if (aliases_earlier(p, &p->calls[i], u->list[u->index[pi][p->calls[i].kernel]], j)) return true;
  return false;
}

static void print_call(FILE *out, const nnc_lprogram *p, const nnc_lcall *c, const nnc_kernel *k,
                       nnc_cg_mem_debug dbg) {
  const bool *used = k->uses_scalar; /* the printer passes exactly the scalars the kernel reads */
  fprintf(out, "  /* %s */\n  %s(rt", c->what, k->name);
  for (int j = 0; j < c->nbufs; j++) {
    const nnc_mem_buffer *b = &p->plan->bufs[c->bufs[j]];
    const char *ct = c_type(k->bufs[j]->dtype);
    long long at = (long long)(b->offset + nnc_lcall_offset(c, j));
    if (dbg == NNC_CG_MEM_SEPARATE) fprintf(out, ", (%s *)(B[%d] + %lld)", ct, c->bufs[j], (long long)nnc_lcall_offset(c, j));
    else if (aliases_earlier(p, c, k, j)) fprintf(out, ", (%s *)nnc_alias(%s + %lld)", ct, region_base(b->region), at);
    else fprintf(out, ", (%s *)(%s + %lld)", ct, region_base(b->region), at);
  }
  /* kernel-local scratch would follow here; the lowering makes none yet */
  static const char *const names[NNC_LSC_COUNT] = {"n", "lr", "step", "seed"};
  for (int s = 0; s < NNC_LSC_COUNT; s++)
    if (used[s]) fprintf(out, ", %s", names[s]);
  fprintf(out, ");\n");
}

/* --- the debug variants (nnc_cg_c_model_source_debug) ------------------------------------------ */

static const char debug_helpers[] =
    "\n/* Memory-plan validation helpers (a debug variant of model.c). */\n"
    "#include <stdlib.h>\n#include <string.h>\n"
    "#define NNC_DEBUG_OVERRUN 90\n"
    "#define NNC_DEBUG_NOMEM 91\n"
    "#if defined(__SANITIZE_ADDRESS__)\n#define NNC_GUARD 0\n"
    "#elif defined(__has_feature)\n#if __has_feature(address_sanitizer)\n#define NNC_GUARD 0\n#endif\n#endif\n"
    "#ifndef NNC_GUARD\n#define NNC_GUARD 64\n#endif\n"
    "static inline void nnc_nanfill(uint8_t *p, int64_t bytes) {\n"
    "  static const uint8_t nan_bytes[4] = {0x00, 0x00, 0xc0, 0x7f}; /* f32 quiet NaN, little endian */\n"
    "  for (int64_t k = 0; k < bytes; k++) p[k] = nan_bytes[k & 3];\n}\n"
    "static inline uint8_t *nnc_dbg_alloc(int64_t bytes) {\n"
    "  uint8_t *p = malloc((size_t)bytes + 2 * NNC_GUARD + 1);\n"
    "  if (!p) return NULL;\n"
    "  nnc_nanfill(p, bytes + 2 * NNC_GUARD);\n  return p + NNC_GUARD;\n}\n"
    "static inline int nnc_dbg_guards_ok(const uint8_t *p, int64_t bytes) {\n"
    "  static const uint8_t nan_bytes[4] = {0x00, 0x00, 0xc0, 0x7f};\n"
    "  for (int64_t k = 0; k < NNC_GUARD; k++)\n"
    "    if (p[k - NNC_GUARD] != nan_bytes[(k - NNC_GUARD) & 3] || p[bytes + k] != nan_bytes[(bytes + k) & 3]) return 0;\n"
    "  return 1;\n}\n"
    "static inline void nnc_dbg_free(uint8_t *p) { if (p) free(p - NNC_GUARD); }\n"
    "/* Every buffer of a program in its own allocation, described by a table so that the entry\n"
    " * function stays straight-line code (a compiler takes long over thousands of branches). */\n"
    "typedef struct nnc_dbg_buf { int64_t bytes, offset; int32_t storage; int8_t batched, region; } nnc_dbg_buf;\n"
    "enum { NNC_DBG_UNUSED = -1, NNC_DBG_SCRATCH = 0, NNC_DBG_PERSIST = 1, NNC_DBG_IO = 2 };\n"
    "static inline int nnc_dbg_setup(const nnc_dbg_buf *t, int count, int64_t n, uint8_t *P, uint8_t *IO, uint8_t **B, int64_t *Z) {\n"
    "  for (int b = 0; b < count; b++) {\n"
    "    if (t[b].region == NNC_DBG_UNUSED) continue;\n"
    "    if (t[b].storage != b) { B[b] = B[t[b].storage], Z[b] = Z[t[b].storage]; continue; }\n"
    "    Z[b] = t[b].bytes * (t[b].batched ? n : 1);\n"
    "    if (!(B[b] = nnc_dbg_alloc(Z[b]))) return NNC_DEBUG_NOMEM;\n"
    "    if (t[b].region != NNC_DBG_SCRATCH) memcpy(B[b], (t[b].region == NNC_DBG_PERSIST ? P : IO) + t[b].offset, (size_t)Z[b]);\n"
    "  }\n  return 0;\n}\n"
    "/* After a call: the guards of the buffers it touched (listed) are intact. */\n"
    "static inline int nnc_dbg_check(int rc, uint8_t *const *B, const int64_t *Z, const int *list, int count) {\n"
    "  for (int j = 0; rc == 0 && NNC_GUARD && j < count; j++)\n"
    "    if (!nnc_dbg_guards_ok(B[list[j]], Z[list[j]])) rc = NNC_DEBUG_OVERRUN;\n"
    "  return rc;\n}\n"
    "/* Copies persist and io buffers back when every call succeeded, and frees all. */\n"
    "static inline int nnc_dbg_teardown(int rc, const nnc_dbg_buf *t, int count, uint8_t *P, uint8_t *IO, uint8_t **B, const int64_t *Z) {\n"
    "  for (int b = 0; b < count; b++) {\n"
    "    if (t[b].region == NNC_DBG_UNUSED || t[b].storage != b) continue;\n"
    "    if (rc == 0 && t[b].region != NNC_DBG_SCRATCH) memcpy((t[b].region == NNC_DBG_PERSIST ? P : IO) + t[b].offset, B[b], (size_t)Z[b]);\n"
    "    nnc_dbg_free(B[b]);\n"
    "  }\n  return rc;\n}\n";

static const char alias_helper[] =
    "\n/* An in-place call passes one range as two pointers; each element is read just before the same\n"
    " * element is written (the memory plan proves it on the loop IR), and the kernel declares those\n"
    " * parameters without restrict. The empty asm keeps the two arguments from looking equal. */\n"
    "static inline void *nnc_alias(void *p) {\n#if defined(__GNUC__)\n  __asm__(\"\" : \"+r\"(p));\n#endif\n  return p;\n}\n";

/* Prints NaN fills for the part of [lo, hi) that no buffer live after call i holds. */
static void print_dead_fill(FILE *out, const nnc_mem_plan *P, int i, int64_t lo, int64_t hi) {
  for (int b = 0; b < P->nbufs && lo < hi; b++) {
    const nnc_mem_buffer *x = &P->bufs[b];
    if (x->region != NNC_MEM_SCRATCH || x->first < 0 || x->first > i || x->last <= i) continue;
    int64_t xlo = x->offset, xhi = x->offset + x->bytes;
    if (xhi <= lo || xlo >= hi) continue;
    if (xlo > lo) print_dead_fill(out, P, i, lo, xlo); /* the part below this live buffer */
    lo = xhi;                                          /* and go on above it */
  }
  if (lo < hi) fprintf(out, "  nnc_nanfill(S + %lld, %lld);\n", (long long)lo, (long long)(hi - lo));
}

static void print_nanfill_after(FILE *out, const nnc_mem_plan *P, int i) {
  for (int b = 0; b < P->nbufs; b++) {
    const nnc_mem_buffer *x = &P->bufs[b];
    if (x->region == NNC_MEM_SCRATCH && x->first >= 0 && x->last == i)
      print_dead_fill(out, P, i, x->offset, x->offset + x->bytes);
  }
}

/* The first used buffer holding the same persist or io bytes as b (tied params share), or b. */
static int storage_of(const nnc_mem_plan *P, const bool *used, int b) {
  if (P->bufs[b].region == NNC_MEM_SCRATCH) return b;
  for (int k = 0; k < b; k++)
    if (used[k] && P->bufs[k].region == P->bufs[b].region && P->bufs[k].offset == P->bufs[b].offset) return k;
  return b;
}

static int dbg_region(nnc_mem_region r) { return r == NNC_MEM_PERSIST ? 1 : r == NNC_MEM_IO ? 2 : 0; }

/* The table of the program's buffers (before its entry function) that nnc_dbg_setup reads. */
static void print_separate_table(FILE *out, const char *id, const nnc_lprogram *p, const bool *used) {
  const nnc_mem_plan *P = p->plan;
  fprintf(out, "\nstatic const nnc_dbg_buf nnc_dbg_%s_%s[%d] = {\n", id, p->name, P->nbufs + 1);
  for (int b = 0; b < P->nbufs; b++) {
    const nnc_mem_buffer *x = &P->bufs[b];
    int64_t per = nnc_type_elements(&x->type, 1) * (int64_t)nnc_dtype_size(x->type.dtype);
    fprintf(out, "  {%lld, %lld, %d, %d, %d},\n", (long long)per, (long long)x->offset, storage_of(P, used, b),
            x->type.batch_axis >= 0, used[b] ? dbg_region(x->region) : -1);
  }
  fprintf(out, "  {0, 0, %d, 0, -1}};\n", P->nbufs);
}

static void print_separate_check(FILE *out, const nnc_lcall *c) {
  fprintf(out, "  rc = nnc_dbg_check(rc, B, Z, (const int[]){");
  for (int j = 0; j < c->nbufs; j++) fprintf(out, "%s%d", j ? ", " : "", c->bufs[j]);
  fprintf(out, "%s}, %d);\n", c->nbufs ? "" : "0", c->nbufs);
}

static void print_entry(FILE *out, const char *model, const nnc_lprogram *p, const nnc_kernel_set *u, int pi,
                        nnc_cg_mem_debug dbg) {
  char id[256];
  nnc_cg_c_ident(model, id, sizeof id);
  if (dbg == NNC_CG_MEM_SEPARATE) {
    bool *used = nnc_xcalloc((size_t)p->plan->nbufs + 1, sizeof *used);
    for (int i = 0; i < p->ncalls; i++)
      for (int j = 0; j < p->calls[i].nbufs; j++) used[p->calls[i].bufs[j]] = true;
    print_separate_table(out, id, p, used);
    free(used);
  }
  fprintf(out, "\n/* %s: %d kernel calls. */\n", p->name, p->ncalls);
  fprintf(out, "int %s_%s(const nnc_rt *rt, const nnc_args *a) {\n", id, p->name);
  fprintf(out, "  if (!rt || !a || !a->persist || !a->io || (!a->scratch && %lldu > 0)) return NNC_ABI_ERR_ARGS;\n",
          (long long)p->plan->scratch_bytes);
  fprintf(out, "  if (rt->abi_version != NNC_ABI_VERSION) return NNC_ABI_ERR_VERSION;\n");
  fprintf(out, "  if (a->n < 1 || a->n > %lld) return NNC_ABI_ERR_BATCH;\n", (long long)p->plan->layout->batch_max);
  fprintf(out, "  uint8_t *P = a->persist, *IO = a->io, *S = a->scratch;\n");
  fprintf(out, "  const int64_t n = a->n;\n  const float lr = a->lr;\n");
  fprintf(out, "  const uint32_t step = (uint32_t)a->step, seed = (uint32_t)a->seed;\n");
  fprintf(out, "  (void)P, (void)IO, (void)S, (void)n, (void)lr, (void)step, (void)seed;\n");
  if (dbg == NNC_CG_MEM_SEPARATE) {
    /* the calls run on after an overrun (no branches), the first failure is what returns */
    int nb = p->plan->nbufs + 1;
    fprintf(out, "  uint8_t *B[%d] = {0};\n  int64_t Z[%d] = {0};\n", nb, nb);
    fprintf(out, "  int rc = nnc_dbg_setup(nnc_dbg_%s_%s, %d, n, P, IO, B, Z);\n  if (rc == NNC_ABI_OK) {\n", id,
            p->name, nb);
  }
  if (dbg == NNC_CG_MEM_NANFILL) fprintf(out, "  nnc_nanfill(S, %lld);\n", (long long)p->plan->scratch_bytes);
  for (int i = 0; i < p->ncalls; i++) {
    print_call(out, p, &p->calls[i], u->list[u->index[pi][p->calls[i].kernel]], dbg);
    if (dbg == NNC_CG_MEM_NANFILL) print_nanfill_after(out, p->plan, i);
    if (dbg == NNC_CG_MEM_SEPARATE) print_separate_check(out, &p->calls[i]);
  }
  if (dbg == NNC_CG_MEM_SEPARATE)
    fprintf(out, "  }\n  return nnc_dbg_teardown(rc, nnc_dbg_%s_%s, %d, P, IO, B, Z);\n", id, p->name,
            p->plan->nbufs + 1);
  else fprintf(out, "  return NNC_ABI_OK;\n");
  fprintf(out, "}\n");
}

bool nnc_cg_c_model_source_debug(FILE *out, const char *model, nnc_lprogram *const *progs, int nprogs,
                                 nnc_cg_mem_debug dbg, nnc_diags *d) {
  nnc_kernel_set u;
  nnc_kernel_set_build(&u, progs, nprogs);
  nnc_arena *a = nnc_arena_new();
  const char **had = name_kernels(&u, a);
  fprintf(out, "/* %s: generated by nnc %s. Portable C99 (with GCC/Clang vector extensions), no dependency.\n"
               " * The entry functions and the memory layout are documented in model.h. */\n",
          model, NNC_VERSION);
  fprintf(out, "#include \"model.h\"\n\n");
  nnc_cg_c_prelude(out, (const nnc_kernel *const *)u.list, u.n);
  bool aliases = false;
  for (int p = 0; p < nprogs && dbg != NNC_CG_MEM_SEPARATE; p++) aliases = aliases || program_aliases(progs[p], &u, p);
  if (aliases) fputs(alias_helper, out);
  if (dbg != NNC_CG_MEM_NORMAL) fputs(debug_helpers, out);
  /* every buffer its own allocation: nothing is shared, every pointer stays restrict */
  bool **shared = dbg == NNC_CG_MEM_SEPARATE ? NULL : shared_buffers(progs, nprogs, &u);
  bool ok = true;
  for (int i = 0; i < u.n && ok; i++) ok = nnc_cg_c_kernel_shared(out, u.list[i], shared ? shared[i] : NULL, d);
  for (int i = 0; shared && i < u.n; i++) free(shared[i]);
  free(shared);
  for (int p = 0; p < nprogs && ok; p++) print_entry(out, model, progs[p], &u, p, dbg);
  restore_names(&u, had);
  nnc_kernel_set_free(&u);
  nnc_arena_free(a);
  return ok;
}

bool nnc_cg_c_model_source(FILE *out, const char *model, nnc_lprogram *const *progs, int nprogs, nnc_diags *d) {
  return nnc_cg_c_model_source_debug(out, model, progs, nprogs, NNC_CG_MEM_NORMAL, d);
}

/* --- model.h ----------------------------------------------------------------------------------- */

static void print_buffer_constants(FILE *out, const char *M, const nnc_mem_layout *L) {
  char name[256], type[128];
  fprintf(out, "\n/* Buffers: byte offsets in their region (64-byte aligned) and sizes at B_max. Params are\n"
               " * laid out as PyTorch lays them out, row-major; a tied param shares its target's offset. */\n");
  for (int i = 0; i < L->nbufs; i++) {
    const nnc_mem_buffer *b = &L->bufs[i];
    upper_ident(b->name, name, sizeof name);
    nnc_type_str(&b->type, type, sizeof type);
    fprintf(out, "#define %s_%s_%s %lld /* %s %s: %s, %lld bytes */\n", M,
            b->region == NNC_MEM_PERSIST ? "PERSIST" : "IO", name, (long long)b->offset, nnc_mem_region_name(b->region),
            b->name, type, (long long)b->bytes);
  }
}

void nnc_cg_c_model_header(FILE *out, const char *model, const nnc_mem_layout *L, nnc_lprogram *const *progs,
                           int nprogs) {
  char id[256], M[256];
  nnc_cg_c_ident(model, id, sizeof id);
  upper_ident(model, M, sizeof M);
  int64_t scratch = 0;
  for (int p = 0; p < nprogs; p++)
    if (progs[p]->plan->scratch_bytes > scratch) scratch = progs[p]->plan->scratch_bytes;
  fprintf(out, "/* %s, compiled by nnc %s.\n *\n", model, NNC_VERSION);
  fprintf(out, " * Usage: allocate three regions of %s_PERSIST_BYTES, %s_IO_BYTES and %s_SCRATCH_BYTES bytes,\n"
               " * each aligned to NNC_ABI_ALIGN (64) bytes; load the parameters into persist (model_loader.h);\n"
               " * write inputs into io at their offsets; call an entry function. Nothing here allocates.\n"
               " *\n"
               " *   nnc_rt rt = {NNC_ABI_VERSION, NULL, NULL};      (serial; or give a parallel_for)\n"
               " *   nnc_args a = {persist, io, scratch, n, lr, step, seed};\n"
               " *   int rc = %s_predict(&rt, &a);                  (0: NNC_ABI_OK)\n"
               " *\n"
               " * The batch n may be anything from 1 to %s_BATCH_MAX; a buffer with a batch axis holds n\n"
               " * rows at its offset, packed (row-major with that axis n long). docs/abi.md has the rest. */\n",
          M, M, M, id, M);
  fprintf(out, "#ifndef %s_MODEL_H\n#define %s_MODEL_H\n\n#include \"nnc_abi.h\"\n\n", M, M);
  fprintf(out, "#define %s_BATCH_MAX %lld\n", M, (long long)L->batch_max);
  fprintf(out, "#define %s_PERSIST_BYTES %lld\n", M, (long long)L->persist_bytes);
  fprintf(out, "#define %s_IO_BYTES %lld\n", M, (long long)L->io_bytes);
  fprintf(out, "#define %s_SCRATCH_BYTES %lld /* the largest program's */\n", M, (long long)scratch);
  print_buffer_constants(out, M, L);
  fprintf(out, "\n/* Entry functions (runtime/abi.h): 0 on success, NNC_ABI_ERR_* on bad arguments.\n");
  fprintf(out, " * train_step reads x, y, lr, step and seed and updates persist; eval_step and predict only\n"
               " * read persist. Outputs land in io. */\n");
  for (int p = 0; p < nprogs; p++) fprintf(out, "int %s_%s(const nnc_rt *rt, const nnc_args *args);\n", id, progs[p]->name);
  fprintf(out, "\n#endif\n");
}

/* --- the loader -------------------------------------------------------------------------------- */

void nnc_cg_c_loader_header(FILE *out, const char *model) {
  char id[256], M[256];
  nnc_cg_c_ident(model, id, sizeof id);
  upper_ident(model, M, sizeof M);
  fprintf(out, "/* Loads %s's parameters from a safetensors file (weights.safetensors, or a checkpoint\n"
               " * written by nnc or PyTorch with the same names) into the persist region. */\n", model);
  fprintf(out, "#ifndef %s_MODEL_LOADER_H\n#define %s_MODEL_LOADER_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n", M, M);
  fprintf(out, "/* Reads every param and state buffer of the model from path into persist (%s_PERSIST_BYTES\n"
               " * bytes), with the checks of nnc's own reader: a well-formed safetensors file whose tensors\n"
               " * tile its data exactly, each one the model has, with its shape and dtype, and every param\n"
               " * and state tensor present; optimizer moments missing from the file are zeroed. Nothing is\n"
               " * written to persist unless the whole file passes. Returns 0, or -1 with a message in err\n"
               " * (cap bytes) that names the file or the tensor at fault. */\n", M);
  fprintf(out, "int %s_load_weights(const char *path, uint8_t *persist, char *err, size_t cap);\n\n#endif\n", id);
}

static const char *st_dtype(nnc_dtype dt) { return dt == NNC_F32 ? "F32" : dt == NNC_I32 ? "I32" : "U8"; }

/* The kind of each tensor: required (params and state), an optimizer moment (zeroed when the
 * file has none), or tied to another (its values are the target's; only its shape is checked). */
static const char *spec_kind(const nnc_mem_buffer *b) {
  if (b->tied_to >= 0) return "SPEC_TIED";
  return strstr(b->name, ".exp_avg") || strstr(b->name, ".momentum_buffer") ? "SPEC_MOMENT" : "SPEC_REQUIRED";
}

static void print_loader_table(FILE *out, const nnc_mem_layout *L) {
  fprintf(out, "enum { SPEC_REQUIRED, SPEC_MOMENT, SPEC_TIED };\n\n"
               "static const struct tensor_spec {\n  const char *name, *dtype;\n  int rank;\n  int64_t shape[8];\n"
               "  size_t offset, bytes;\n  int kind;\n} specs[] = {\n");
  for (int i = 0; i < L->nparams; i++) {
    const nnc_mem_buffer *b = &L->bufs[i];
    fprintf(out, "  {\"");
    for (const char *c = b->name; *c; c++) fprintf(out, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
    fprintf(out, "\", \"%s\", %d, {", st_dtype(b->type.dtype), b->type.rank);
    for (int k = 0; k < b->type.rank; k++) fprintf(out, "%s%lld", k ? ", " : "", (long long)b->type.dims[k]);
    fprintf(out, "%s}, %lld, %lld, %s},\n", b->type.rank ? "" : "0", (long long)b->offset, (long long)b->bytes,
            spec_kind(b));
  }
  fprintf(out, "  {0, 0, 0, {0}, 0, 0, 0}\n};\n");
}

/* The loader's code, the same for every model: a bounded safetensors header parser. */
static const char loader_code[] =
#include "loader_text.inc"
    ;

void nnc_cg_c_loader_source(FILE *out, const char *model, const nnc_mem_layout *L) {
  char id[256];
  nnc_cg_c_ident(model, id, sizeof id);
  fprintf(out, "/* %s's safetensors loader, generated by nnc %s: standard C99 only. */\n", model, NNC_VERSION);
  fprintf(out, "#include \"model_loader.h\"\n\n#include <errno.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n");
  print_loader_table(out, L);
  fputs(loader_code, out);
  fprintf(out, "\nint %s_load_weights(const char *path, uint8_t *persist, char *err, size_t cap) {\n"
               "  return load_weights(path, persist, err, cap);\n}\n", id);
}
