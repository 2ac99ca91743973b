/* What the backend tests share: aligned regions, a seeded input batch, the largest magnitude
 * of a reference tensor. Header-only; each test is one executable. */
#ifndef NNC_TEST_BACKEND_COMMON_H
#define NNC_TEST_BACKEND_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/options.h"
#include "ir/interp.h"
#include "runtime/model.h"

/* A model's file: models/NAME.nn, or PATH.nn for a test model named by its path
 * (tests/models/sincos_mlp). */
static inline void model_file(const char *model, char *path, size_t cap) {
  snprintf(path, cap, strchr(model, '/') ? "%s.nn" : "models/%s.nn", model);
}

static inline uint8_t *region(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) abort();
  memset(p, 0, bytes ? bytes : 64);
  return p;
}

static inline uint32_t next(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return (uint32_t)(*s >> 33);
}

/* Inputs: pixels as random bytes or floats, labels in [0, 10) (or 0/1 for f32 targets). */
static inline void fill_inputs(const nnc_rt_model *rm, uint8_t *io) {
  uint64_t s = 42;
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (b->kind != NNC_RT_INPUT) continue;
    int64_t count = nnc_rt_buffer_elements(b, rm->batch_max);
    bool label = strcmp(b->name, "y") == 0;
    for (int64_t k = 0; k < count; k++) {
      uint8_t *p = io + b->offset;
      if (b->dtype == NNC_RT_U8) p[k] = (uint8_t)next(&s);
      else if (b->dtype == NNC_RT_I32) ((int32_t *)p)[k] = (int32_t)(next(&s) % 10);
      else ((float *)p)[k] = label ? (float)(next(&s) & 1) : (float)(next(&s) % 2000) / 1000.0f - 1.0f;
    }
  }
}

static inline double max_abs(const nnc_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < nnc_tensor_elements(t); i++) m = fmax(m, fabs(nnc_tensor_get(t, i)));
  return m;
}

static inline bool is_sequence_model(const char *name) {
  return strcmp(name, "char_rnn") == 0 || strcmp(name, "char_lstm") == 0 || strcmp(name, "tiny_gpt") == 0;
}

/* The sequence models at T = 8 (their programs unroll over T: the same code paths, a module
 * eight times smaller), tiny_gpt with 2 of its 4 blocks (every block is the same code). */
static inline void shorten_sequence_model(const char *name, nnc_options *o) {
  static nnc_override short_seq[2] = {{.name = "T", .value = "8"}, {.name = "layers", .value = "2"}};
  if (!is_sequence_model(name)) return;
  o->overrides = short_seq;
  o->noverrides = strcmp(name, "tiny_gpt") == 0 ? 2 : 1;
}

#endif
