/* Compiled module -> nnc_rt_model: the persist and io regions exactly as the pipeline's memory
 * plan laid them out (ir/lowered.h), so the runtime and every compiled program agree on each
 * offset by construction. This file only translates the plan's buffers into the runtime's terms. */
#include "driver/layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/programs.h"

nnc_rt_dtype nnc_layout_rt_dtype(nnc_dtype dt) {
  switch (dt) {
  case NNC_I32: return NNC_RT_I32;
  case NNC_U8: return NNC_RT_U8;
  default: return NNC_RT_F32;
  }
}

nnc_type nnc_layout_buffer_type(const nnc_rt_buffer *b) {
  nnc_dtype dt = b->dtype == NNC_RT_I32 ? NNC_I32 : b->dtype == NNC_RT_U8 ? NNC_U8 : NNC_F32;
  return nnc_type_make(dt, b->rank, b->dims, b->batch_axis);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n > k && strcmp(s + n - k, suffix) == 0;
}

/* Optimizer moments are state params named after the param they belong to (passes/optim.h). */
static nnc_rt_buffer_kind param_kind(const nnc_param *p) {
  if (!p->is_state) return NNC_RT_PARAM;
  if (ends_with(p->name, ".exp_avg") || ends_with(p->name, ".exp_avg_sq") || ends_with(p->name, ".momentum_buffer"))
    return NNC_RT_OPTIM;
  return NNC_RT_STATE;
}

static nnc_rt_buffer_kind buffer_kind(const nnc_module *m, const nnc_mem_buffer *b) {
  switch (b->kind) {
  case NNC_MEM_INPUT: return NNC_RT_INPUT;
  case NNC_MEM_OUTPUT: return NNC_RT_OUTPUT;
  default: return param_kind(&m->params[b->param]);
  }
}

static nnc_rt_buffer runtime_buffer(const nnc_module *m, const nnc_mem_buffer *mb) {
  const nnc_type *t = &mb->type;
  nnc_rt_buffer b = {.name = mb->name, .kind = buffer_kind(m, mb), .dtype = nnc_layout_rt_dtype(t->dtype),
                     .rank = t->rank, .batch_axis = t->batch_axis,
                     .region = mb->region == NNC_MEM_PERSIST ? NNC_RT_PERSIST : NNC_RT_IO,
                     .offset = (size_t)mb->offset, .bytes = (size_t)mb->bytes, .tied_to = mb->tied_to};
  memcpy(b.dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
  if (mb->kind == NNC_MEM_PARAM) b.frozen = m->params[mb->param].frozen;
  return b;
}

nnc_rt_model *nnc_layout_model(const nnc_compiled *c) {
  const nnc_module *m = c->module;
  const nnc_mem_layout *L = c->layout;
  nnc_rt_model *rm = nnc_xcalloc(1, sizeof *rm);
  rm->name = m->name;
  rm->batch_max = m->batch_max;
  rm->buffers = nnc_xcalloc((size_t)L->nbufs + 1, sizeof *rm->buffers);
  for (int i = 0; i < L->nbufs; i++) rm->buffers[rm->nbuffers++] = runtime_buffer(m, &L->bufs[i]);
  rm->persist_bytes = (size_t)L->persist_bytes;
  rm->io_bytes = (size_t)L->io_bytes;
  rm->has_train_step = nnc_module_find_program(m, "train_step") != NULL;
  rm->has_eval_step = nnc_module_find_program(m, "eval_step") != NULL;
  rm->has_predict = nnc_module_find_program(m, "predict") != NULL;
  return rm;
}

void nnc_layout_free(nnc_rt_model *rm) {
  if (!rm) return;
  free(rm->buffers);
  free(rm);
}

void nnc_layout_init_params(const nnc_module *m, const nnc_rt_model *rm, uint32_t seed, uint8_t *persist) {
  for (int i = 0; i < m->nparams; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (b->tied_to >= 0) continue; /* its storage is the target's */
    nnc_param_init_values(&m->params[i], seed, i, persist + b->offset, nnc_rt_buffer_elements(b, rm->batch_max));
  }
}
