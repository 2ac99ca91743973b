/* lower_models: every program of every model in models/ lowers, one kernel per node, under each
 * schedule (CPU scalar, CPU vector, GPU), every kernel passes nnc_lk_verify, identical kernels are shared, and the
 * memory plan keeps every buffer inside its region. */
#include <stdlib.h>
#include <string.h>

#include "../unit/check.h"
#include "../unit/model_run.h"
#include "ir/loop.h"
#include "passes/lower.h"
#include "passes/memplan.h"

static const char *const models[] = {"xor_mlp", "fashion_mlp", "mnist_conv", "lenet",
                                     "fashion_cnn", "fashion_bn_cnn", "cifar_cnn"};

static void check_plan(const nnc_mem_plan *P, const char *model) {
  for (int i = 0; i < P->nbufs; i++) {
    const nnc_mem_buffer *b = &P->bufs[i];
    CHECK_MSG(b->offset % NNC_MEM_ALIGN == 0 && b->offset + b->bytes <= nnc_mem_region_bytes(P, b->region),
              "%s/%s: buffer %s at %lld (+%lld) outside its region", model, P->graph->name, b->name,
              (long long)b->offset, (long long)b->bytes);
  }
  /* Scratch buffers live at the same time never overlap (except an in-place pair). */
  char err[512];
  CHECK_MSG(nnc_mem_plan_valid(P, err, sizeof err), "%s/%s: %s", model, P->graph->name, err);
}

static void check_program(const nnc_lprogram *p, const char *model, const char *sched) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  const nnc_graph *g = p->graph;
  {
    check_plan(p->plan, model);
    for (int i = 0; i < p->nkernels; i++) {
      bool ok = nnc_lk_verify(p->kernels[i], &d);
      CHECK_MSG(ok, "%s/%s (%s): kernel %s does not verify", model, g->name, sched, p->kernels[i]->name);
      if (!ok && getenv("LOWER_DUMP")) nnc_lk_print(stderr, p->kernels[i]);
    }
    for (int i = 0; i < p->ncalls; i++) {
      const nnc_lcall *c = &p->calls[i];
      CHECK(c->nbufs == 0 || c->nbufs <= p->kernels[c->kernel]->nbufs);
      for (int j = 0; j < c->nbufs; j++) CHECK(c->bufs[j] >= 0 && c->bufs[j] < p->plan->nbufs);
    }
    CHECK(p->nkernels <= p->ncalls);
    printf("%-16s %-11s %-10s %4d calls %4d kernels, scratch %lld bytes\n", model, g->name, sched, p->ncalls,
           p->nkernels, (long long)p->plan->scratch_bytes);
  }
}

int main(int argc, char **argv) {
  nnc_options o = mr_default_options();
  o.batch = 8;
  for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
    if (argc > 1 && strcmp(argv[1], models[i]) != 0) continue;
    char path[256];
    snprintf(path, sizeof path, "models/%s.nn", models[i]);
    nnc_source src;
    nnc_module *m = mr_compile(path, &o, true, &src, stderr);
    CHECK_MSG(m != NULL, "%s does not compile", path);
    if (!m) continue;
    const nnc_lower_opts scheds[] = {{.target = NNC_LOWER_CPU, .lanes = 1}, {.target = NNC_LOWER_CPU, .lanes = 16},
                                     {.target = NNC_LOWER_GPU}};
    const char *names[] = {"cpu", "cpu-vec16", "gpu"};
    for (int s = 0; s < 3; s++) {
      nnc_pipeline_opts po = nnc_pipeline_defaults(scheds[s].target);
      po.lower = scheds[s];
      po.no_fusion = true; /* one kernel per node: every primitive's lowering */
      nnc_compiled *c = mr_pipeline(m, &po, stderr);
      CHECK_MSG(c != NULL, "%s (%s) does not lower", models[i], names[s]);
      for (int k = 0; c && k < c->nprograms; k++) check_program(c->programs[k].lowered, models[i], names[s]);
      nnc_compiled_free(c);
    }
    nnc_module_free(m);
    nnc_source_free(&src);
  }
  return check_summary();
}
