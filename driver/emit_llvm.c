/* --emit llvm|asm|obj: lower every program, emit one LLVM module, write it. */
#include "driver/emit_llvm.h"

#include <stdio.h>
#include <string.h>

#include "codegen/llvm.h"
#include "driver/output.h"
#include "passes/lower.h"

enum { MAX_PROGRAMS = 8 };

int nnc_cmd_emit_llvm(const nnc_module *m, const nnc_options *o) {
  const char *kind = o->emit == NNC_EMIT_LLVM ? "llvm" : o->emit == NNC_EMIT_ASM ? "asm" : "obj";
  if (!o->output) {
    fprintf(stderr, "nnc: error: --emit %s needs an output file: -o FILE\n", kind);
    return NNC_EXIT_USAGE;
  }
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_arena *a = nnc_arena_new();
  char err[1024];
  int status = NNC_EXIT_OK;
  nnc_mem_layout *L = nnc_mem_layout_module(a, m, err, sizeof err);
  if (!L) {
    fprintf(stderr, "nnc: error: %s\n", err);
    status = NNC_EXIT_MODEL_ERROR;
  }
  nnc_lprogram *progs[MAX_PROGRAMS];
  int nprogs = 0;
  nnc_lower_opts lo = {.target = NNC_LOWER_CPU};
  for (int i = 0; status == NNC_EXIT_OK && i < nnc_module_program_count(m) && nprogs < MAX_PROGRAMS; i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    if (strcmp(g->name, "forward") == 0) continue;
    if (!(progs[nprogs++] = nnc_lower_program(a, m, g, L, &lo, &d))) status = NNC_EXIT_MODEL_ERROR;
  }
  nnc_cg_llvm_module *mod = NULL;
  if (status == NNC_EXIT_OK && !(mod = nnc_cg_llvm_module_new(m->name, NULL, err, sizeof err))) {
    fprintf(stderr, "nnc: error: %s\n", err);
    status = NNC_EXIT_ENVIRONMENT;
  }
  if (mod && !nnc_cg_llvm_program(mod, m->name, progs, nprogs, &d)) status = NNC_EXIT_MODEL_ERROR;
  nnc_cg_llvm_emit_kind k = o->emit == NNC_EMIT_LLVM ? NNC_LLVM_EMIT_IR : o->emit == NNC_EMIT_ASM ? NNC_LLVM_EMIT_ASM
                                                                                                   : NNC_LLVM_EMIT_OBJ;
  nnc_outfile out;
  if (status == NNC_EXIT_OK && nnc_outfile_open(&out, o->output)) {
    if (!nnc_cg_llvm_emit(mod, k, out.f, err, sizeof err)) {
      fprintf(stderr, "nnc: error: %s\n", err);
      status = NNC_EXIT_ENVIRONMENT;
    }
    status = nnc_outfile_close(&out, status);
  } else if (status == NNC_EXIT_OK) {
    status = NNC_EXIT_ENVIRONMENT;
  }
  nnc_cg_llvm_module_free(mod);
  nnc_arena_free(a);
  return status;
}
