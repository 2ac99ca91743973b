/* --passes, --emit kernels, --emit dot, --stats. */
#include "driver/fusion_cmd.h"

#include <errno.h>
#include <string.h>

#include "driver/output.h"
#include "passes/fusion.h"
#include "passes/simplify.h"

enum { MAX_PROGRAMS = 16 };

static const char *passes_of(const nnc_options *o) {
  if (o->passes) return o->passes;
  bool fusion_output = o->action == NNC_ACTION_STATS ||
                       (o->action == NNC_ACTION_EMIT && (o->emit == NNC_EMIT_KERNELS || o->emit == NNC_EMIT_DOT));
  return fusion_output ? "simplify" : NULL;
}

bool nnc_driver_passes_valid(const char *list) {
  char name[64];
  for (const char *p = list;; p++) {
    size_t len = strcspn(p, ",");
    if (len == 0 || len >= sizeof name) return false;
    memcpy(name, p, len);
    name[len] = 0;
    if (!nnc_simplify_known(name)) return false;
    p += len;
    if (!*p) return true;
  }
}

bool nnc_driver_run_passes(nnc_module *m, const nnc_options *o, nnc_diags *d) {
  const char *list = passes_of(o);
  return !list || nnc_simplify_module(m, list, d);
}

/* The programs fusion shows: train_step, eval_step, predict; the forward graph when the module
 * has no other (an .ir file of one graph). */
static int programs(const nnc_module *m, const nnc_graph **out) {
  int n = 0;
  for (int i = 0; i < m->nprograms && n < MAX_PROGRAMS; i++) out[n++] = m->programs[i];
  if (n == 0 && m->forward) out[n++] = m->forward;
  return n;
}

int nnc_cmd_emit_fusion(const nnc_module *m, const nnc_options *o, bool dot) {
  nnc_outfile output;
  if (!nnc_outfile_open(&output, o->output)) return NNC_EXIT_ENVIRONMENT;
  FILE *out = output.f;
  const nnc_graph *progs[MAX_PROGRAMS];
  int n = programs(m, progs);
  nnc_arena *a = nnc_arena_new();
  if (dot) nnc_fuse_dot_begin(out, m->name);
  for (int i = 0; i < n; i++) {
    nnc_fusion_plan *p = nnc_fuse_program(a, progs[i]);
    if (dot) nnc_fuse_dot_program(out, p, i);
    else nnc_fuse_print(out, p);
  }
  if (dot) nnc_fuse_dot_end(out);
  nnc_arena_free(a);
  return nnc_outfile_close(&output, NNC_EXIT_OK);
}

typedef struct counts {
  int nodes, kernels;
  int64_t bytes;
} counts;

static counts unfused_counts(const nnc_graph *g, int64_t bmax) {
  return (counts){g->nnodes, nnc_fuse_unfused_kernels(g), nnc_fuse_unfused_bytes(g, bmax)};
}

int nnc_cmd_stats(nnc_module *m, const nnc_options *o, FILE *out, nnc_diags *d) {
  const nnc_graph *progs[MAX_PROGRAMS];
  int n = programs(m, progs);
  counts before[MAX_PROGRAMS];
  for (int i = 0; i < n; i++) before[i] = unfused_counts(progs[i], m->batch_max);
  if (!nnc_simplify_module(m, passes_of(o), d)) return NNC_EXIT_MODEL_ERROR;
  n = programs(m, progs);
  nnc_arena *a = nnc_arena_new();
  fprintf(out, "%-12s %7s %7s %8s %8s %6s %14s %14s %14s\n", "program", "nodes", "passes", "kernels", "unfused", "fused",
          "bytes", "bytes unfused", "bytes fused");
  for (int i = 0; i < n; i++) {
    counts after = unfused_counts(progs[i], m->batch_max);
    nnc_fusion_plan *p = nnc_fuse_program(a, progs[i]);
    fprintf(out, "%-12s %7d %7d %8d %8d %6d %14lld %14lld %14lld\n", progs[i]->name, before[i].nodes, after.nodes,
            before[i].kernels, after.kernels, p->ngroups, (long long)before[i].bytes, (long long)after.bytes,
            (long long)nnc_fuse_plan_bytes(p, m->batch_max));
  }
  fprintf(out, "(nodes: before and after the passes; kernels: one per node before the passes, after them, and "
               "fused; bytes read and written per step at batch %lld, likewise)\n",
          (long long)m->batch_max);
  nnc_arena_free(a);
  return NNC_EXIT_OK;
}
