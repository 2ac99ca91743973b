/* --emit llvm|asm|obj: the compiled programs as one LLVM module, written atomically. */
#include "driver/emit_llvm.h"

#include <stdio.h>
#include <string.h>

#include "codegen/llvm.h"
#include "driver/output.h"

enum { MAX_PROGRAMS = 8 };

int nnc_cmd_emit_llvm(const nnc_compiled *c, const nnc_options *o) {
  const char *kind = o->emit == NNC_EMIT_LLVM ? "llvm" : o->emit == NNC_EMIT_ASM ? "asm" : "obj";
  if (!o->output) {
    fprintf(stderr, "nnc: error: --emit %s needs an output file: -o FILE\n", kind);
    return NNC_EXIT_USAGE;
  }
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_lprogram *progs[MAX_PROGRAMS];
  int nprogs = 0;
  for (int i = 0; i < c->nprograms && nprogs < MAX_PROGRAMS; i++) progs[nprogs++] = c->programs[i].lowered;
  const char *name = c->module->name;
  int status = NNC_EXIT_OK;
  nnc_cg_llvm_module *mod = nnc_cg_llvm_module_new(name, NULL, &d);
  if (!mod) status = NNC_EXIT_ENVIRONMENT;
  if (mod && !nnc_cg_llvm_program(mod, name, progs, nprogs, &d)) status = NNC_EXIT_MODEL_ERROR;
  nnc_cg_llvm_emit_kind k = o->emit == NNC_EMIT_LLVM ? NNC_LLVM_EMIT_IR : o->emit == NNC_EMIT_ASM ? NNC_LLVM_EMIT_ASM
                                                                                                   : NNC_LLVM_EMIT_OBJ;
  nnc_outfile out;
  if (status == NNC_EXIT_OK && nnc_outfile_open(&out, o->output)) {
    if (!nnc_cg_llvm_emit(mod, k, out.f, &d)) status = NNC_EXIT_ENVIRONMENT;
    status = nnc_outfile_close(&out, status);
  } else if (status == NNC_EXIT_OK) {
    status = NNC_EXIT_ENVIRONMENT;
  }
  nnc_cg_llvm_module_free(mod);
  return status;
}
