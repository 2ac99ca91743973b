/* --emit loops: lower every program with the CPU schedule and print its kernels and calls. */
#include "driver/emit_loops.h"

#include <string.h>

#include "driver/output.h"
#include "passes/lower.h"
#include "passes/memplan.h"

/* The programs that run: train_step, eval_step, predict; the forward graph only when the
 * module has nothing else (an .ir file of one graph). */
static bool shown(const nnc_module *m, const nnc_graph *g) {
  return strcmp(g->name, "forward") != 0 || nnc_module_program_count(m) == 1;
}

int nnc_cmd_emit_loops(const nnc_module *m, const nnc_options *o) {
  nnc_outfile out;
  if (!nnc_outfile_open(&out, o->output)) return NNC_EXIT_ENVIRONMENT;
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_arena *a = nnc_arena_new();
  char err[512];
  int status = NNC_EXIT_OK;
  nnc_mem_layout *L = nnc_mem_layout_module(a, m, err, sizeof err);
  if (!L) {
    fprintf(stderr, "nnc: error: %s\n", err);
    status = NNC_EXIT_MODEL_ERROR;
  }
  nnc_lower_opts lo = {.target = NNC_LOWER_CPU, .fuse = !o->no_fusion};
  for (int i = 0; status == NNC_EXIT_OK && i < nnc_module_program_count(m); i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    if (!shown(m, g)) continue;
    nnc_lprogram *p = nnc_lower_program(a, m, g, L, &lo, &d);
    if (p) nnc_lower_print(out.f, p);
    else status = NNC_EXIT_MODEL_ERROR;
  }
  nnc_arena_free(a);
  return nnc_outfile_close(&out, status);
}
