/* The interpreter as an executor. Every buffer of the layout is bound by name as a tensor
 * that points into its region, and the runtime scalars (lr, step, seed) as rank-0 tensors.
 * The interpreter returns fresh tensors; outputs are copied into io and state outputs into
 * persist only after the whole program ran, since the graph reads the old values throughout. */
#include "driver/exec_interp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/layout.h"
#include "ir/interp.h"
#include "runtime/executor.h"

enum { SCALAR_LR, SCALAR_STEP, SCALAR_SEED, NSCALARS };

enum { MAX_PROGRAMS = 8 };

typedef struct exec_interp exec_interp;

/* What an entry runs: one graph of the module. */
typedef struct interp_program {
  exec_interp *x;
  const nnc_graph *g;
} interp_program;

struct exec_interp {
  const nnc_module *m;
  const nnc_rt_model *rm;
  nnc_tensor *tensors;             /* per buffer, then the scalars */
  nnc_interp_binding *bindings;
  float lr;
  int32_t step, seed;
  interp_program progs[MAX_PROGRAMS];
};

static void bind_buffers(exec_interp *x, uint8_t *persist, uint8_t *io, int64_t n) {
  for (int i = 0; i < x->rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &x->rm->buffers[i];
    x->tensors[i].data = (b->region == NNC_RT_PERSIST ? persist : io) + b->offset;
    x->tensors[i].n = n;
  }
}

/* Copies a result into the buffer of the same name in its region. */
static bool store_result(exec_interp *x, const char *name, const nnc_tensor *t, uint8_t *persist, uint8_t *io,
                         char *err, size_t cap) {
  const nnc_rt_buffer *b = nnc_rt_model_buffer(x->rm, name);
  size_t bytes = (size_t)nnc_tensor_elements(t) * nnc_tensor_elem_size(t);
  if (!b || bytes > b->bytes) {
    snprintf(err, cap, "program result '%s' has no buffer that holds it", name);
    return false;
  }
  memcpy((b->region == NNC_RT_PERSIST ? persist : io) + b->offset, t->data, bytes);
  return true;
}

static bool store_results(exec_interp *x, const nnc_graph *g, nnc_tensor *outs, nnc_tensor *states,
                          uint8_t *persist, uint8_t *io, char *err, size_t cap) {
  bool ok = true;
  for (int i = 0; ok && i < g->noutputs; i++) ok = store_result(x, g->outputs[i].name, &outs[i], persist, io, err, cap);
  for (int i = 0; ok && i < g->nstate; i++)
    ok = store_result(x, g->state_outputs[i].name, &states[i], persist, io, err, cap);
  return ok;
}

static bool interp_run(void *ctx, const nnc_args *a, char *err, size_t cap) {
  interp_program *p = ctx;
  exec_interp *x = p->x;
  const nnc_graph *g = p->g;
  uint8_t *persist = a->persist, *io = a->io;
  bind_buffers(x, persist, io, a->n);
  x->lr = a->lr, x->step = (int32_t)a->step, x->seed = (int32_t)a->seed;
  nnc_interp_env env = {.n = a->n, .bindings = x->bindings, .nbindings = x->rm->nbuffers + NSCALARS};
  nnc_tensor *outs = nnc_xcalloc((size_t)g->noutputs + 1, sizeof *outs);
  nnc_tensor *states = nnc_xcalloc((size_t)g->nstate + 1, sizeof *states);
  bool ok = nnc_interp_run(x->m, g, NNC_INTERP_F32, &env, outs, states, err, cap) &&
            store_results(x, g, outs, states, persist, io, err, cap);
  for (int i = 0; i < g->noutputs; i++) nnc_tensor_free(&outs[i]);
  for (int i = 0; i < g->nstate; i++) nnc_tensor_free(&states[i]);
  free(outs);
  free(states);
  return ok;
}

static nnc_rt_entry interp_symbol(void *lib, const char *program) {
  exec_interp *x = lib;
  for (int i = 0; i < MAX_PROGRAMS && x->progs[i].g; i++)
    if (strcmp(x->progs[i].g->name, program) == 0) return (nnc_rt_entry){.run = interp_run, .ctx = &x->progs[i]};
  return (nnc_rt_entry){0};
}

static void interp_free(void *lib) {
  exec_interp *x = lib;
  free(x->tensors);
  free(x->bindings);
  free(x);
}

static const nnc_rt_backend interp_backend = {.name = "interp", .symbol = interp_symbol, .free = interp_free};

static void bind_scalar(exec_interp *x, int slot, const char *name, nnc_dtype dt, void *data) {
  int i = x->rm->nbuffers + slot;
  x->tensors[i] = (nnc_tensor){.type = nnc_type_scalar(dt), .n = 1, .data = data};
  x->bindings[i] = (nnc_interp_binding){.name = name, .value = &x->tensors[i]};
}

nnc_rt_executor *nnc_exec_interp_new(const nnc_module *m, const nnc_rt_model *rm) {
  exec_interp *x = nnc_xcalloc(1, sizeof *x);
  x->m = m, x->rm = rm;
  size_t n = (size_t)rm->nbuffers + NSCALARS;
  x->tensors = nnc_xcalloc(n, sizeof *x->tensors);
  x->bindings = nnc_xcalloc(n, sizeof *x->bindings);
  for (int i = 0; i < rm->nbuffers; i++) {
    x->tensors[i].type = nnc_layout_buffer_type(&rm->buffers[i]);
    x->bindings[i] = (nnc_interp_binding){.name = rm->buffers[i].name, .value = &x->tensors[i]};
  }
  bind_scalar(x, SCALAR_LR, "lr", NNC_F32, &x->lr);
  bind_scalar(x, SCALAR_STEP, "step", NNC_I32, &x->step);
  bind_scalar(x, SCALAR_SEED, "seed", NNC_I32, &x->seed);
  const char *names[MAX_PROGRAMS];
  int np = 0;
  for (int i = 0; i < nnc_module_program_count(m) && np < MAX_PROGRAMS; i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    x->progs[np] = (interp_program){x, g};
    names[np++] = g->name;
  }
  char err[256];
  nnc_rt_executor_opts eo = {.batch_max = rm->batch_max};
  return nnc_rt_executor_new(&interp_backend, x, names, np, &eo, err, sizeof err); /* cannot fail */
}
