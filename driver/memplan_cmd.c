/* --memory-plan: every program's memory plan as the pipeline made it (over the kernel calls of
 * the CPU lowering, with scratch packed by liveness; naive with --stop-after plan or lower). */
#include "driver/memplan_cmd.h"

#include "driver/output.h"

int nnc_cmd_memory_plan(const nnc_compiled *c, const nnc_options *o) {
  nnc_outfile out;
  if (!nnc_outfile_open(&out, o->output)) return NNC_EXIT_ENVIRONMENT;
  for (int i = 0; i < c->nprograms; i++) nnc_mem_print(out.f, c->programs[i].plan);
  return nnc_outfile_close(&out, NNC_EXIT_OK);
}
