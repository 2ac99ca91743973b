/* --check-kernels: every kernel of every program on the JIT, one call at a time, against the
 * interpreter's values of the same graph nodes. The first kernel whose output leaves the
 * tolerance is named with its worst element: where a wrong result starts, not where it ends up.
 *
 * Inputs are generated (seeded bytes, floats in [-1, 1), labels and tokens 0/1) and params are
 * initialized as --train would; no data is read. NNC_FAULT_KERNEL=NAME adds 1 to the first
 * element each call of kernel NAME writes (the test of the checker itself). */
#ifdef NNC_WITH_LLVM
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/exec_llvm.h"
#include "driver/commands.h"
#include "driver/layout.h"
#include "ir/compare.h"
#include "ir/interp.h"
#include "passes/programs.h"
#include "runtime/pool.h"

enum { ERR_CAP = 1024 };

/* Forward values within rtol 1e-4; errors grow through a step, so atol follows each tensor's scale. */
static const double RTOL = 1e-4, ATOL_SCALE = 1e-5;

static uint8_t *region(size_t bytes) {
  uint8_t *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p) nnc_oom(bytes);
  memset(p, 0, (bytes + 63) / 64 * 64 + 64);
  return p;
}

static uint32_t next_rand(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return (uint32_t)(*s >> 33);
}

static void fill_inputs(const nnc_rt_model *rm, uint8_t *io) {
  uint64_t s = 42;
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (b->kind != NNC_RT_INPUT) continue;
    uint8_t *p = io + b->offset;
    for (int64_t k = 0; k < nnc_rt_buffer_elements(b, rm->batch_max); k++) {
      if (b->dtype == NNC_RT_U8) p[k] = (uint8_t)next_rand(&s);
      else if (b->dtype == NNC_RT_I32) ((int32_t *)p)[k] = (int32_t)(next_rand(&s) & 1);
      else ((float *)p)[k] = (float)(next_rand(&s) % 2000) / 1000.0f - 1.0f;
    }
  }
}

/* The interpreter's value of every node a kernel call computes: g cloned with those nodes as
 * extra outputs. vals[i] is call i's value (unset when the call computes no node). */
typedef struct interp_values {
  nnc_tensor *outs;
  int nouts;
  int *out_of_call;   /* per call: index into outs, or -1 */
} interp_values;

static bool bind_and_run(const nnc_module *m, const nnc_rt_model *rm, const nnc_graph *g, uint8_t *persist,
                         uint8_t *io, const nnc_rt_call *call, nnc_tensor *outs, char *err) {
  int nb = rm->nbuffers + 3;
  nnc_tensor *t = nnc_xcalloc((size_t)nb, sizeof *t);
  nnc_interp_binding *bind = nnc_xcalloc((size_t)nb, sizeof *bind);
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    t[i] = (nnc_tensor){.type = nnc_layout_buffer_type(b), .n = call->n,
                        .data = (b->region == NNC_RT_PERSIST ? persist : io) + b->offset};
    bind[i] = (nnc_interp_binding){.name = b->name, .value = &t[i]};
  }
  float lr = call->lr;
  int32_t step = call->step, seed = (int32_t)call->seed;
  const char *names[3] = {"lr", "step", "seed"};
  void *data[3] = {&lr, &step, &seed};
  nnc_dtype types[3] = {NNC_F32, NNC_I32, NNC_I32};
  for (int k = 0; k < 3; k++) {
    t[rm->nbuffers + k] = (nnc_tensor){.type = nnc_type_scalar(types[k]), .n = 1, .data = data[k]};
    bind[rm->nbuffers + k] = (nnc_interp_binding){.name = names[k], .value = &t[rm->nbuffers + k]};
  }
  nnc_interp_env env = {.n = call->n, .bindings = bind, .nbindings = nb};
  nnc_tensor *states = nnc_xcalloc((size_t)g->nstate + 1, sizeof *states);
  bool ok = nnc_interp_run(m, g, NNC_INTERP_F32, &env, outs, states, err, ERR_CAP);
  for (int i = 0; ok && i < g->nstate; i++) nnc_tensor_free(&states[i]);
  free(states), free(t), free(bind);
  return ok;
}

static bool interp_node_values(nnc_arena *a, const nnc_module *m, const nnc_rt_model *rm, const nnc_lprogram *lp,
                               uint8_t *persist, uint8_t *io, const nnc_rt_call *call, interp_values *v, char *err) {
  const nnc_graph *g = lp->graph;
  nnc_graph *c = nnc_graph_clone(a, g, NULL);
  int base = c->noutputs;
  v->out_of_call = nnc_xcalloc((size_t)lp->ncalls + 1, sizeof *v->out_of_call);
  for (int i = 0; i < lp->ncalls; i++) {
    v->out_of_call[i] = -1;
    const nnc_node *nd = lp->calls[i].node;
    for (int k = 0; nd && k < g->nnodes; k++)
      if (g->nodes[k] == nd) {
        char name[32];
        snprintf(name, sizeof name, "__check%d", i);
        v->out_of_call[i] = c->noutputs;
        nnc_graph_add_output(c, nnc_arena_strdup(a, name), c->nodes[k]);
      }
  }
  v->nouts = c->noutputs;
  v->outs = nnc_xcalloc((size_t)v->nouts + 1, sizeof *v->outs);
  (void)base;
  return bind_and_run(m, rm, c, persist, io, call, v->outs, err);
}

static void free_values(interp_values *v) {
  for (int i = 0; v->outs && i < v->nouts; i++) nnc_tensor_free(&v->outs[i]);
  free(v->outs), free(v->out_of_call);
}

static uint8_t *buffer_ptr(const nnc_mem_buffer *b, uint8_t *persist, uint8_t *io, uint8_t *scratch) {
  return (b->region == NNC_MEM_PERSIST ? persist : b->region == NNC_MEM_IO ? io : scratch) + b->offset;
}

static double max_abs(const nnc_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < nnc_tensor_elements(t); i++) m = fmax(m, fabs(nnc_tensor_get(t, i)));
  return m;
}

static void inject_fault(const nnc_kernel *k, const nnc_type *type, uint8_t *out) {
  const char *fault = getenv("NNC_FAULT_KERNEL");
  if (!fault || strcmp(fault, k->name) != 0 || type->dtype != NNC_F32) return;
  ((float *)out)[0] += 1.0f;
}

/* Runs program lp kernel by kernel; 1 when a kernel diverged (reported), 0 when all agree, -1 on error. */
static int check_program(const nnc_module *m, const nnc_rt_model *rm, nnc_rt_executor *e, const nnc_lprogram *lp,
                         const uint8_t *persist0, const uint8_t *io0, const nnc_rt_call *call, int *checked) {
  char err[ERR_CAP];
  uint8_t *pr = region(rm->persist_bytes), *ior = region(rm->io_bytes);
  uint8_t *pj = region(rm->persist_bytes), *ioj = region(rm->io_bytes);
  memcpy(pr, persist0, rm->persist_bytes), memcpy(ior, io0, rm->io_bytes);
  memcpy(pj, persist0, rm->persist_bytes), memcpy(ioj, io0, rm->io_bytes);
  nnc_arena *a = nnc_arena_new();
  interp_values v = {0};
  int result = 0;
  if (!interp_node_values(a, m, rm, lp, pr, ior, call, &v, err)) {
    fprintf(stderr, "nnc: error: %s: the interpreter failed: %s\n", lp->name, err);
    result = -1;
  }
  for (int i = 0; result == 0 && i < lp->ncalls; i++) {
    const nnc_lcall *c = &lp->calls[i];
    const nnc_kernel *k = lp->kernels[c->kernel];
    if (!nnc_exec_llvm_call(e, lp->name, i, pj, ioj, call, err, sizeof err)) {
      fprintf(stderr, "nnc: error: %s\n", err);
      result = -1;
      break;
    }
    if (v.out_of_call[i] < 0 || c->nbufs == 0) continue;
    const nnc_mem_buffer *b = &lp->plan->bufs[c->bufs[0]];
    uint8_t *out = buffer_ptr(b, pj, ioj, nnc_rt_executor_scratch(e));
    inject_fault(k, &c->node->type, out);
    const nnc_tensor *ref = &v.outs[v.out_of_call[i]];
    nnc_tensor got = {.type = c->node->type, .n = call->n, .data = out};
    nnc_compare_result r = nnc_compare_tensors(&got, ref, ATOL_SCALE * fmax(max_abs(ref), 1e-3), RTOL);
    ++*checked;
    if (r.ok) continue;
    char msg[512];
    printf("%s: kernel %s (call %d of %d: %s) diverges from the interpreter: %s\n", lp->name, k->name, i,
           lp->ncalls, c->what, nnc_compare_str(&r, ref->type.dims, ref->type.rank, msg, sizeof msg));
    result = 1;
  }
  free_values(&v);
  nnc_arena_free(a);
  free(pr), free(ior), free(pj), free(ioj);
  return result;
}

int nnc_cmd_check_kernels(const nnc_compiled *c, const nnc_options *o) {
  char err[ERR_CAP];
  const nnc_module *m = c->module;
  nnc_rt_model *rm = nnc_layout_model(c);
  nnc_exec_llvm_opts eo = {.threads = o->threads > 0 ? o->threads : nnc_rt_pool_default_threads(), .call_entries = true};
  nnc_rt_executor *e = nnc_exec_llvm_new(c, &eo, err, sizeof err);
  int status = NNC_EXIT_OK, checked = 0, programs = 0;
  if (!e) {
    fprintf(stderr, "nnc: error: %s\n", err);
    status = NNC_EXIT_MODEL_ERROR;
  }
  uint8_t *persist = region(rm->persist_bytes), *io = region(rm->io_bytes);
  uint64_t seed = (uint64_t)(o->seed >= 0 ? o->seed : m->train.seed);
  nnc_layout_init_params(m, rm, (uint32_t)seed, persist);
  fill_inputs(rm, io);
  nnc_rt_call call = {.n = rm->batch_max, .lr = (float)(m->train.lr > 0 ? m->train.lr : 1e-3), .step = 0, .seed = 7};
  const char *order[] = {"predict", "eval_step", "train_step"};
  for (int p = 0; e && p < 3 && status == NNC_EXIT_OK; p++) {
    const nnc_compiled_program *cp = nnc_compiled_find(c, order[p]);
    if (!cp) continue;
    const nnc_lprogram *lp = cp->lowered;
    programs++;
    int r = check_program(m, rm, e, lp, persist, io, &call, &checked);
    if (r != 0) status = NNC_EXIT_MODEL_ERROR;
  }
  if (status == NNC_EXIT_OK)
    printf("%d kernel calls of %d programs match the interpreter (batch %lld)\n", checked, programs,
           (long long)rm->batch_max);
  free(persist), free(io);
  if (e) e->destroy(e);
  nnc_layout_free(rm);
  return status;
}
#endif
