/* memplan_models MODEL: the memory plan of every program of a model, validated by execution
 * (DESIGN §9). Each program's plan must be valid (nnc_mem_plan_valid: aligned, inside its
 * region, no two buffers live at once overlapping unless one took the other's range in place)
 * and no larger than the naive plan nor smaller than its lower bound. Then the emitted C runs
 * three ways over copies of the same regions: as emitted, with every dead scratch range filled
 * with NaN after every kernel, and with every buffer in its own allocation (ASan-checked in a
 * Sanitize build, guard-checked otherwise); predict, eval_step and 3 train_steps at n = B_max
 * and at n = 3 must give the same outputs and persist region bit for bit. B_max is small (4)
 * and the C is compiled at -O1 to keep the test short; the sequence models run at T = 8
 * (backend_common.h). */
#include <stdlib.h>
#include <string.h>

#include "../unit/check.h"
#include "../unit/model_run.h"
#include "driver/exec_c.h"
#include "codegen/c_program.h"
#include "driver/layout.h"
#include "passes/lower.h"
#include "passes/memplan.h"

#include "backend_common.h"

enum { BATCH = 4, TRAIN_STEPS = 3 };

/* Every program's plan: valid, between its lower bound and the naive sum. */
static void check_plans(const nnc_compiled *c) {
  char err[512];
  const nnc_module *m = c->module;
  for (int i = 0; i < c->nprograms; i++) {
    const nnc_graph *g = c->programs[i].graph;
    const nnc_mem_plan *P = c->programs[i].plan;
    CHECK_MSG(nnc_mem_plan_valid(P, err, sizeof err), "%s: %s", g->name, err);
    CHECK_MSG(P->scratch_lower_bound <= P->scratch_bytes && P->scratch_bytes <= P->scratch_naive,
              "%s: scratch %lld outside [lower bound %lld, naive %lld]", g->name, (long long)P->scratch_bytes,
              (long long)P->scratch_lower_bound, (long long)P->scratch_naive);
    printf("%-16s %-11s scratch %10lld  lower bound %10lld  naive %10lld  (%s, %d in place)\n", m->name, g->name,
           (long long)P->scratch_bytes, (long long)P->scratch_lower_bound, (long long)P->scratch_naive,
           P->scratch_order, P->ninplace);
  }
}

typedef struct regions {
  uint8_t *persist, *io;
} regions;

static bool run(nnc_rt_executor *e, const char *prog, regions *r, const nnc_rt_call *c, const char *tag) {
  char err[512];
  bool ok = e->run(e, prog, r->persist, r->io, c, err, sizeof err);
  CHECK_MSG(ok, "%s %s: %s", tag, prog, err);
  return ok;
}

/* The outputs in io at batch n and the whole persist region must be the same bits. */
static void compare(const nnc_rt_model *rm, const regions *got, const regions *ref, int64_t n, const char *what) {
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (b->kind != NNC_RT_OUTPUT) continue;
    size_t bytes = b->bytes / (size_t)rm->batch_max * (b->batch_axis >= 0 ? (size_t)n : (size_t)rm->batch_max);
    CHECK_MSG(memcmp(got->io + b->offset, ref->io + b->offset, bytes) == 0, "%s: output %s differs", what, b->name);
  }
  CHECK_MSG(memcmp(got->persist, ref->persist, rm->persist_bytes) == 0, "%s: the persist region differs", what);
}

static void session(const nnc_module *m, const nnc_rt_model *rm, nnc_rt_executor **ex, const char *const *tags, int nex,
                    const uint8_t *persist0, const uint8_t *io0, int64_t n) {
  regions r[3];
  for (int v = 0; v < nex; v++) {
    r[v] = (regions){region(rm->persist_bytes), region(rm->io_bytes)};
    memcpy(r[v].persist, persist0, rm->persist_bytes);
    memcpy(r[v].io, io0, rm->io_bytes);
  }
  nnc_rt_call call = {.n = n, .lr = (float)(m->train.lr > 0 ? m->train.lr : 1e-3), .step = 0, .seed = 11};
  const char *progs[2 + TRAIN_STEPS] = {"predict", "eval_step"};
  bool has[2 + TRAIN_STEPS] = {rm->has_predict, rm->has_eval_step};
  for (int s = 0; s < TRAIN_STEPS; s++) progs[2 + s] = "train_step", has[2 + s] = rm->has_train_step;
  for (int k = 0; k < 2 + TRAIN_STEPS; k++) {
    if (!has[k]) continue;
    call.step = k < 2 ? 0 : k - 2;
    bool ok = true;
    for (int v = 0; v < nex; v++) ok = ok && run(ex[v], progs[k], &r[v], &call, tags[v]);
    if (!ok) break;
    for (int v = 1; v < nex; v++) {
      char what[160];
      snprintf(what, sizeof what, "%s %s #%d n=%lld against %s", tags[v], progs[k], k, (long long)n, tags[0]);
      compare(rm, &r[v], &r[0], n, what);
    }
  }
  for (int v = 0; v < nex; v++) free(r[v].persist), free(r[v].io);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: memplan_models MODEL\n");
    return 2;
  }
  nnc_options o = mr_default_options();
  o.batch = BATCH;
  shorten_sequence_model(argv[1], &o);
  char path[256], err[1024];
  snprintf(path, sizeof path, "models/%s.nn", argv[1]);
  nnc_source src;
  nnc_module *m = mr_compile(path, &o, true, &src, stderr);
  CHECK_MSG(m != NULL, "%s does not compile", path);
  if (!m) return check_summary();
  nnc_pipeline_opts po = nnc_pipeline_defaults(NNC_LOWER_CPU);
  po.no_fusion = true; /* one kernel per node: the most buffers to plan */
  nnc_compiled *c = mr_pipeline(m, &po, stderr);
  CHECK(c != NULL);
  if (!c) return check_summary();
  check_plans(c);
  nnc_rt_model *rm = nnc_layout_model(c);
  uint8_t *persist0 = region(rm->persist_bytes), *io0 = region(rm->io_bytes);
  nnc_layout_init_params(m, rm, 1, persist0);
  fill_inputs(rm, io0);
  const char *tags[3] = {"as emitted", "nan-fill", "separate"};
  nnc_rt_executor *ex[3];
  int nex = 0;
  for (int v = 0; v < 3; v++) {
    nnc_exec_c_opts co = {.threads = 1, .cflags = "-O1", .mem_debug = v};
    ex[nex] = nnc_exec_c_new(c, &co, err, sizeof err);
    CHECK_MSG(ex[nex] != NULL, "%s: %s", tags[v], err);
    if (ex[nex]) tags[nex] = tags[v], nex++;
  }
  if (nex == 3) {
    session(m, rm, ex, tags, nex, persist0, io0, BATCH);
    session(m, rm, ex, tags, nex, persist0, io0, 3);
  }
  for (int v = 0; v < nex; v++) ex[v]->destroy(ex[v]);
  free(persist0), free(io0);
  nnc_layout_free(rm);
  nnc_compiled_free(c);
  nnc_module_free(m);
  nnc_source_free(&src);
  return check_summary();
}
