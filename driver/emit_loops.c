/* --emit loops: every program's loop IR kernels and calls, as the pipeline lowered them. */
#include "driver/emit_loops.h"

#include "driver/output.h"

int nnc_cmd_emit_loops(const nnc_compiled *c, const nnc_options *o) {
  nnc_outfile out;
  if (!nnc_outfile_open(&out, o->output)) return NNC_EXIT_ENVIRONMENT;
  for (int i = 0; i < c->nprograms; i++) nnc_lower_print(out.f, c->programs[i].lowered);
  return nnc_outfile_close(&out, NNC_EXIT_OK);
}
