/* The front end: model file -> module. Parse, elaborate in each mode the programs need, verify.
 * Elaboration runs once per mode (train, eval, predict) because BatchNorm, dropout and the
 * objective differ between them; eval_step and predict are the forward graphs of the eval and
 * predict elaborations, imported over the train module's buffers. train_step is the pipeline's
 * first stage (passes/pipeline.h), from the train-mode forward graph. */
#include "driver/front_end.h"

#include <stdio.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/optim.h"
#include "passes/programs.h"

static nnc_module *elaborate(const nnc_ast *file, const nnc_options *o, nnc_mode mode, nnc_diags *d) {
  nnc_elab_opts eo = {.mode = mode, .overrides = o->overrides, .noverrides = o->noverrides, .batch = o->batch};
  return nnc_elaborate(file, &eo, d);
}

static void report_unused_overrides(const nnc_options *o, nnc_diags *d) {
  for (int i = 0; i < o->noverrides; i++)
    if (!o->overrides[i].used)
      nnc_error(d, (nnc_loc){0}, "--set %s: no hyperparameter or train field is named '%s'", o->overrides[i].name,
                o->overrides[i].name);
}

/* Training flags override the train block (docs/training.md). A change of optimizer starts
 * from that optimizer's defaults, as the train block would. */
static void apply_train_flags(nnc_module *m, const nnc_options *o) {
  nnc_train_cfg *t = &m->train;
  if (!t->optimizer) nnc_optim_defaults(t, NULL);
  if (o->optimizer && strcmp(o->optimizer, t->optimizer) != 0) {
    double lr = t->lr;
    nnc_optim_defaults(t, nnc_arena_strdup(m->arena, o->optimizer));
    t->lr = lr;
  }
  if (o->lr > 0) t->lr = o->lr;
  if (o->momentum >= 0) t->momentum = o->momentum;
  if (o->weight_decay >= 0) t->weight_decay = o->weight_decay;
}

/* Adds eval_step or predict, elaborated in its own mode, to m. The train-mode elaboration has
 * already reported its warnings: this one stays quiet unless it finds an error of its own, which
 * a second run then reports. */
static bool add_mode_program(nnc_module *m, const nnc_ast *file, const nnc_options *o, nnc_mode mode,
                             const char *name, nnc_diags *d) {
  nnc_diags quiet;
  nnc_diags_init(&quiet, NULL);
  nnc_module *other = elaborate(file, o, mode, &quiet);
  if (!other || quiet.nerrors) {
    nnc_module_free(other);
    nnc_module_free(elaborate(file, o, mode, d));
    if (d->nerrors == 0) nnc_error(d, (nnc_loc){0}, "internal error: elaboration failed in %s mode only", name);
    return false;
  }
  bool ok = nnc_module_import_program(m, other->forward, name, d) != NULL;
  nnc_module_free(other);
  return ok;
}

static bool build_programs(nnc_module *m, const nnc_ast *file, const nnc_options *o, nnc_diags *d) {
  apply_train_flags(m, o);
  if (m->forward->loss >= 0 && !add_mode_program(m, file, o, NNC_MODE_EVAL, "eval_step", d)) return false;
  return add_mode_program(m, file, o, NNC_MODE_PREDICT, "predict", d);
}

nnc_module *nnc_driver_front_end(const nnc_source *src, const nnc_options *o, bool programs, nnc_diags *d) {
  nnc_arena *ast_arena = nnc_arena_new();
  nnc_ast *file = nnc_parse_source(ast_arena, src, d);
  nnc_module *m = NULL;
  if (file && d->nerrors == 0) {
    m = elaborate(file, o, programs ? NNC_MODE_TRAIN : o->mode, d);
    report_unused_overrides(o, d);
    if (m && d->nerrors == 0 && programs) build_programs(m, file, o, d);
  }
  nnc_arena_free(ast_arena);
  if (m && d->nerrors == 0 && !nnc_verify_module(m, d))
    nnc_error(d, (nnc_loc){0}, "internal error: the elaborated programs do not verify");
  if (d->nerrors) {
    nnc_module_free(m);
    return NULL;
  }
  return m;
}
