/* --emit kernels, --emit dot, --stats' graph figures: what the pipeline's fuse stage made. */
#include "driver/fusion_cmd.h"

#include <string.h>

#include "driver/output.h"
#include "passes/fusion.h"

int nnc_cmd_emit_fusion(const nnc_compiled *c, const nnc_options *o, bool dot) {
  nnc_outfile out;
  if (!nnc_outfile_open(&out, o->output)) return NNC_EXIT_ENVIRONMENT;
  if (dot) nnc_fuse_dot_begin(out.f, c->module->name);
  for (int i = 0; i < c->nprograms; i++) {
    const nnc_fusion_plan *p = c->programs[i].fusion;
    if (dot) nnc_fuse_dot_program(out.f, p, i);
    else nnc_fuse_print(out.f, p);
  }
  if (dot) nnc_fuse_dot_end(out.f);
  return nnc_outfile_close(&out, NNC_EXIT_OK);
}

typedef struct counts {
  int nodes, kernels;
  int64_t bytes;
} counts;

static counts unfused_counts(const nnc_graph *g, int64_t bmax) {
  return (counts){g->nnodes, nnc_fuse_unfused_kernels(g), nnc_fuse_unfused_bytes(g, bmax)};
}

int nnc_cmd_stats(const nnc_compiled *c, FILE *out) {
  int64_t bmax = c->module->batch_max;
  fprintf(out, "%-12s %7s %7s %8s %8s %6s %14s %14s %14s\n", "program", "nodes", "passes", "kernels", "unfused", "fused",
          "bytes", "bytes unfused", "bytes fused");
  for (int i = 0; i < c->nprograms; i++) {
    const nnc_compiled_program *p = &c->programs[i];
    counts before = unfused_counts(p->source, bmax), after = unfused_counts(p->graph, bmax);
    int groups = p->fusion ? p->fusion->ngroups : after.kernels;
    int64_t bytes = p->fusion ? nnc_fuse_plan_bytes(p->fusion, bmax) : after.bytes;
    fprintf(out, "%-12s %7d %7d %8d %8d %6d %14lld %14lld %14lld\n", p->name, before.nodes, after.nodes,
            before.kernels, after.kernels, groups, (long long)before.bytes, (long long)after.bytes, (long long)bytes);
  }
  fprintf(out, "(nodes: before and after the passes; kernels: one per node before the passes, after them, and "
               "fused; bytes read and written per step at batch %lld, likewise)\n",
          (long long)bmax);
  return NNC_EXIT_OK;
}
