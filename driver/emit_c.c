/* --emit c: lower every program, print the C files, write the initial weights. */
#include "driver/emit_c.h"

#include <stdlib.h>
#include <string.h>

#include "codegen/c_program.h"
#include "driver/layout.h"
#include "driver/output.h"
#include "runtime/safetensors.h"

enum { MAX_PROGRAMS = 8 };

typedef struct emit {
  const char *dir;
  const char *model;
  const nnc_mem_layout *L;
  nnc_lprogram *progs[MAX_PROGRAMS];
  int nprogs;
} emit;

enum { SRC_ABI, SRC_HEADER, SRC_MODEL, SRC_LOADER_HEADER, SRC_LOADER, SRC_COUNT };
static const char *const source_names[SRC_COUNT] = {"nnc_abi.h", "model.h", "model.c", "model_loader.h",
                                                    "model_loader.c"};

/* Prints source i; false when the printer failed (reported through d). */
static bool print_source(const emit *e, int i, FILE *f, nnc_diags *d) {
  switch (i) {
  case SRC_ABI: fputs(nnc_cg_abi_text, f); return true;
  case SRC_HEADER: nnc_cg_c_model_header(f, e->model, e->L, e->progs, e->nprogs); return true;
  case SRC_MODEL: return nnc_cg_c_model_source(f, e->model, e->progs, e->nprogs, d);
  case SRC_LOADER_HEADER: nnc_cg_c_loader_header(f, e->model); return true;
  default: nnc_cg_c_loader_source(f, e->model, e->L); return true;
  }
}

/* Each file appears whole or not at all (driver/output.h). An exit status. */
static int write_sources(const emit *e, nnc_diags *d) {
  int status = NNC_EXIT_OK;
  for (int i = 0; i < SRC_COUNT && status == NNC_EXIT_OK; i++) {
    nnc_outfile out;
    if (!nnc_outfile_open_in(&out, e->dir, source_names[i])) return NNC_EXIT_ENVIRONMENT;
    status = nnc_outfile_close(&out, print_source(e, i, out.f, d) ? NNC_EXIT_OK : NNC_EXIT_MODEL_ERROR);
  }
  return status;
}

static nnc_st_dtype st_dtype(nnc_dtype dt) { return dt == NNC_F32 ? NNC_ST_F32 : dt == NNC_I32 ? NNC_ST_I32 : NNC_ST_U8; }

/* The initial persist region as safetensors: every param and state buffer (tied ones once). */
static bool write_weights(const emit *e, const nnc_compiled *c, uint32_t seed) {
  char err[512];
  const nnc_module *m = c->module;
  nnc_rt_model *rm = nnc_layout_model(c);
  uint8_t *persist = nnc_xcalloc(1, rm->persist_bytes + 1);
  nnc_layout_init_params(m, rm, seed, persist);
  nnc_st_tensor *t = nnc_xcalloc((size_t)m->nparams + 1, sizeof *t);
  size_t n = 0;
  for (int i = 0; i < m->nparams; i++) {
    const nnc_mem_buffer *b = &e->L->bufs[i];
    if (b->tied_to >= 0) continue;
    t[n++] = (nnc_st_tensor){.name = b->name, .dtype = st_dtype(b->type.dtype), .rank = b->type.rank,
                             .shape = b->type.dims, .data = persist + b->offset, .nbytes = (size_t)b->bytes};
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/weights.safetensors", e->dir);
  nnc_st_meta meta[] = {{"format", "pt"}};
  bool ok = nnc_st_write(path, t, n, meta, 1, err, sizeof err);
  if (!ok) fprintf(stderr, "nnc: error: %s\n", err);
  free(t);
  free(persist);
  nnc_layout_free(rm);
  return ok;
}

int nnc_cmd_emit_c(const nnc_compiled *c, const nnc_options *o) {
  if (!o->output) {
    fprintf(stderr, "nnc: error: --emit c needs an output directory: -o DIR\n");
    return NNC_EXIT_USAGE;
  }
  if (!nnc_outdir_make(o->output)) return NNC_EXIT_ENVIRONMENT;
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  const nnc_module *m = c->module;
  emit e = {.dir = o->output, .model = m->name, .L = c->layout};
  for (int i = 0; i < c->nprograms && e.nprogs < MAX_PROGRAMS; i++) e.progs[e.nprogs++] = c->programs[i].lowered;
  uint32_t seed = (uint32_t)(o->seed >= 0 ? o->seed : m->train.seed);
  int status = write_sources(&e, &d);
  if (status == NNC_EXIT_OK && !write_weights(&e, c, seed)) status = NNC_EXIT_ENVIRONMENT;
  return status;
}
