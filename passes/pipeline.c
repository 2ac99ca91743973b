/* The compile pipeline: each stage of passes/pipeline.h is one function over the result, run once,
 * in order. A stage reads what the stages before it left in the result and adds its own part. */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fusion.h"
#include "memplan.h"
#include "phase.h"
#include "programs.h"
#include "simplify.h"

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *const stage_names[NNC_STAGE_COUNT] = {"autodiff", "simplify", "fuse", "plan", "lower", "scratch"};

const char *nnc_stage_name(nnc_stage s) { return (unsigned)s < NNC_STAGE_COUNT ? stage_names[s] : "?"; }

bool nnc_stage_from_name(const char *name, nnc_stage *out) {
  for (int s = 0; s < NNC_STAGE_COUNT; s++)
    if (strcmp(stage_names[s], name) == 0) return *out = (nnc_stage)s, true;
  return false;
}

nnc_pipeline_opts nnc_pipeline_defaults(nnc_lower_target t) {
  return (nnc_pipeline_opts){.train = true, .lower = {.target = t}, .last = NNC_STAGE_SCRATCH};
}

/* --- autodiff ----------------------------------------------------------------------------------- */

/* The programs backends run: every program but forward, or the forward graph alone (a module of
 * one graph, as an .ir file may be). */
static void list_programs(nnc_compiled *c) {
  const nnc_module *m = c->module;
  int n = m->nprograms > 0 ? m->nprograms : m->forward ? 1 : 0;
  c->programs = nnc_arena_alloc(c->arena, sizeof *c->programs * (size_t)(n + 1));
  for (int i = 0; i < n; i++) {
    const nnc_graph *g = m->nprograms > 0 ? m->programs[i] : m->forward;
    c->programs[i] = (nnc_compiled_program){.name = g->name, .source = g, .graph = g};
  }
  c->nprograms = n;
}

static bool autodiff(nnc_compiled *c, nnc_module *m, const nnc_pipeline_opts *o, nnc_diags *d) {
  bool wants = o->train && m->forward && m->forward->loss >= 0 && !nnc_module_find_program(m, "train_step");
  if (wants && !nnc_build_train_step(m, m->forward, d)) return false;
  if (wants && !nnc_verify_module(m, d)) {
    nnc_error(d, (nnc_loc){0}, "internal error: train_step does not verify");
    return false;
  }
  list_programs(c);
  return true;
}

/* --- simplify ----------------------------------------------------------------------------------- */

static bool simplify(nnc_compiled *c, const nnc_pipeline_opts *o, nnc_diags *d) {
  const char *passes = o->passes ? o->passes : "simplify";
  for (int i = 0; i < c->nprograms; i++) {
    nnc_compiled_program *p = &c->programs[i];
    nnc_graph *g = nnc_simplify_passes(c->arena, p->graph, passes, d);
    if (!g) return false;
    nnc_diags quiet;
    nnc_diags_init(&quiet, NULL);
    if (!nnc_verify_graph(g, &quiet)) {
      nnc_error(d, (nnc_loc){0}, "internal error: %s does not verify after the passes '%s'", p->name, passes);
      return false;
    }
    p->graph = g;
  }
  return true;
}

/* --- fuse, plan, lower, scratch ------------------------------------------------------------------ */

static bool fuse(nnc_compiled *c, const nnc_pipeline_opts *o) {
  for (int i = 0; i < c->nprograms && !o->no_fusion; i++)
    c->programs[i].fusion = nnc_fuse_program(c->arena, c->programs[i].graph);
  return true;
}

static bool plan(nnc_compiled *c, nnc_diags *d) {
  if (!(c->layout = nnc_mem_layout_module(c->arena, c->module, d))) return false;
  for (int i = 0; i < c->nprograms; i++) {
    nnc_compiled_program *p = &c->programs[i];
    p->plan = nnc_mem_plan_program(c->arena, c->module, p->graph, c->layout, d);
    if (!p->plan) return false;
  }
  return true;
}

static bool lower(nnc_compiled *c, const nnc_pipeline_opts *o, nnc_diags *d) {
  c->gpu = o->lower.target == NNC_LOWER_GPU;
  for (int i = 0; i < c->nprograms; i++) {
    nnc_compiled_program *p = &c->programs[i];
    p->lowered = p->fusion ? nnc_lower_program_fused(c->arena, c->module, p->fusion, p->plan, &o->lower, d)
                           : nnc_lower_program(c->arena, c->module, p->plan, &o->lower, d);
    if (!p->lowered) return false;
    if (c->gpu && o->emulate_gpu && !nnc_phase_program(c->arena, p->lowered, NULL, d)) return false;
  }
  return true;
}

static bool scratch(nnc_compiled *c, nnc_diags *d) {
  for (int i = 0; i < c->nprograms; i++) {
    nnc_compiled_program *p = &c->programs[i];
    if (!nnc_mem_plan_lowered(p->lowered, d)) return false;
    if (p->plan->scratch_bytes > c->scratch_bytes) c->scratch_bytes = p->plan->scratch_bytes;
  }
  return true;
}

static bool run_stage(nnc_compiled *c, nnc_module *m, nnc_stage s, const nnc_pipeline_opts *o, nnc_diags *d) {
  switch (s) {
  case NNC_STAGE_AUTODIFF: return autodiff(c, m, o, d);
  case NNC_STAGE_SIMPLIFY: return simplify(c, o, d);
  case NNC_STAGE_FUSE: return fuse(c, o);
  case NNC_STAGE_PLAN: return plan(c, d);
  case NNC_STAGE_LOWER: return lower(c, o, d);
  case NNC_STAGE_SCRATCH: return scratch(c, d);
  default: return false;
  }
}

nnc_compiled *nnc_compile(nnc_module *m, const nnc_pipeline_opts *o, nnc_diags *d) {
  nnc_compiled *c = nnc_xcalloc(1, sizeof *c);
  c->arena = nnc_arena_new();
  c->module = m;
  for (int s = 0; s <= (int)o->last && s < NNC_STAGE_COUNT; s++) {
    double t0 = seconds();
    if (!run_stage(c, m, (nnc_stage)s, o, d)) {
      nnc_compiled_free(c);
      return NULL;
    }
    c->seconds[s] = seconds() - t0;
    c->stages = s + 1;
  }
  return c;
}

void nnc_compiled_free(nnc_compiled *c) {
  if (!c) return;
  nnc_arena_free(c->arena);
  free(c);
}

const nnc_module *nnc_compiled_module_view(const nnc_compiled *c) {
  nnc_module *v = nnc_arena_alloc(c->arena, sizeof *v);
  *v = *c->module;
  const nnc_module *m = c->module;
  if (m->nprograms == 0 && c->nprograms == 1) {
    v->forward = (nnc_graph *)c->programs[0].graph;
    return v;
  }
  v->programs = nnc_arena_alloc(c->arena, sizeof *v->programs * (size_t)(c->nprograms + 1));
  for (int i = 0; i < c->nprograms; i++) v->programs[i] = (nnc_graph *)c->programs[i].graph;
  return v;
}
