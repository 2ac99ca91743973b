/* --memory-plan: lower every program for the CPU (the plan is made over its kernel calls) and
 * print the plan. */
#include "driver/memplan_cmd.h"

#include <string.h>

#include "driver/output.h"
#include "passes/lower.h"
#include "passes/memplan.h"
#include "passes/programs.h"

int nnc_cmd_memory_plan(const nnc_module *m, const nnc_options *o, nnc_diags *d) {
  char err[256];
  nnc_arena *a = nnc_arena_new();
  nnc_mem_layout *L = nnc_mem_layout_module(a, m, err, sizeof err);
  if (!L) {
    nnc_error(d, (nnc_loc){0}, "memory plan: %s", err);
    nnc_arena_free(a);
    return NNC_EXIT_MODEL_ERROR;
  }
  nnc_outfile out;
  if (!nnc_outfile_open(&out, o->output)) {
    nnc_arena_free(a);
    return NNC_EXIT_ENVIRONMENT;
  }
  int status = NNC_EXIT_OK;
  nnc_lower_opts cpu = {.target = NNC_LOWER_CPU};
  int count = nnc_module_program_count(m);
  for (int i = 0; i < count && status == NNC_EXIT_OK; i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    if (count > 1 && strcmp(g->name, "forward") == 0) continue; /* the programs the backends run */
    nnc_lprogram *p = nnc_lower_program(a, m, g, L, &cpu, d);
    if (!p) status = NNC_EXIT_MODEL_ERROR;
    else nnc_mem_print(out.f, p->plan);
  }
  nnc_arena_free(a);
  return nnc_outfile_close(&out, status);
}
