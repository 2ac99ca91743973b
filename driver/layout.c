/* Module -> nnc_rt_model: the buffer layout both regions share with every executor. Offsets
 * are 64-byte aligned so vector loads of any backend may start at any buffer. */
#include "driver/layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/programs.h"

enum { LAYOUT_ALIGN = 64 };

static size_t align_up(size_t x) { return (x + LAYOUT_ALIGN - 1) / LAYOUT_ALIGN * LAYOUT_ALIGN; }

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

static nnc_rt_buffer make_buffer(const char *name, nnc_rt_buffer_kind kind, const nnc_type *t, int64_t batch_max) {
  nnc_rt_buffer b = {.name = name, .kind = kind, .dtype = nnc_layout_rt_dtype(t->dtype), .rank = t->rank,
                     .batch_axis = t->batch_axis, .tied_to = -1};
  memcpy(b.dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
  b.region = kind == NNC_RT_INPUT || kind == NNC_RT_OUTPUT ? NNC_RT_IO : NNC_RT_PERSIST;
  b.bytes = (size_t)nnc_type_elements(t, batch_max) * nnc_dtype_size(t->dtype);
  return b;
}

/* Adds an io buffer unless one of that name exists; a second one must have the same type. */
static bool add_io(nnc_rt_model *rm, const char *name, nnc_rt_buffer_kind kind, const nnc_type *t, char *err,
                   size_t cap) {
  nnc_rt_buffer b = make_buffer(name, kind, t, rm->batch_max);
  for (int i = 0; i < rm->nbuffers; i++) {
    nnc_rt_buffer *o = &rm->buffers[i];
    if (strcmp(o->name, name) != 0) continue;
    if (o->kind != kind || o->dtype != b.dtype || o->rank != b.rank || o->batch_axis != b.batch_axis ||
        memcmp(o->dims, b.dims, sizeof(int64_t) * (size_t)b.rank) != 0) {
      snprintf(err, cap, "the programs disagree on the type of '%s'", name);
      return false;
    }
    return true;
  }
  b.offset = align_up(rm->io_bytes);
  rm->io_bytes = b.offset + b.bytes;
  rm->buffers[rm->nbuffers++] = b;
  return true;
}

static int count_io(const nnc_module *m) {
  int n = 0;
  for (int i = 0; i < nnc_module_program_count(m); i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    n += g->noutputs;
    for (int k = 0; k < g->nnodes; k++) n += g->nodes[k]->op == NNC_OP_input;
  }
  return n;
}

static void layout_persist(const nnc_module *m, nnc_rt_model *rm) {
  for (int i = 0; i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    nnc_rt_buffer b = make_buffer(p->name, param_kind(p), &p->type, rm->batch_max);
    b.frozen = p->frozen;
    b.tied_to = p->tied_to;
    if (p->tied_to < 0) {
      b.offset = align_up(rm->persist_bytes);
      rm->persist_bytes = b.offset + b.bytes;
    }
    rm->buffers[rm->nbuffers++] = b;
  }
  /* A tied param shares its target's storage, wherever the target comes in the order. */
  for (int i = 0; i < m->nparams; i++) {
    int t = m->params[i].tied_to;
    if (t >= 0 && t < m->nparams) rm->buffers[i].offset = rm->buffers[t].offset;
  }
}

static bool layout_io(const nnc_module *m, nnc_rt_model *rm, char *err, size_t cap) {
  for (int i = 0; i < nnc_module_program_count(m); i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    for (int k = 0; k < g->nnodes; k++)
      if (g->nodes[k]->op == NNC_OP_input && !add_io(rm, g->nodes[k]->name, NNC_RT_INPUT, &g->nodes[k]->type, err, cap))
        return false;
    for (int k = 0; k < g->noutputs; k++)
      if (!add_io(rm, g->outputs[k].name, NNC_RT_OUTPUT, &g->outputs[k].value->type, err, cap)) return false;
  }
  return true;
}

nnc_rt_model *nnc_layout_model(const nnc_module *m, char *err, size_t cap) {
  nnc_rt_model *rm = nnc_xcalloc(1, sizeof *rm);
  rm->name = m->name;
  rm->batch_max = m->batch_max;
  rm->buffers = nnc_xcalloc((size_t)(m->nparams + count_io(m)) + 1, sizeof *rm->buffers);
  layout_persist(m, rm);
  if (!layout_io(m, rm, err, cap)) {
    nnc_layout_free(rm);
    return NULL;
  }
  rm->persist_bytes = align_up(rm->persist_bytes);
  rm->io_bytes = align_up(rm->io_bytes);
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
