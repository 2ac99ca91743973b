/* Small queries on a runtime model description (runtime/model.h). */
#include "model.h"

#include <string.h>

const nnc_rt_buffer *nnc_rt_model_buffer(const nnc_rt_model *m, const char *name) {
  for (int i = 0; i < m->nbuffers; i++)
    if (strcmp(m->buffers[i].name, name) == 0) return &m->buffers[i];
  return NULL;
}

int64_t nnc_rt_buffer_elements(const nnc_rt_buffer *b, int64_t n) {
  int64_t e = 1;
  for (int k = 0; k < b->rank; k++) e *= k == b->batch_axis ? b->dims[k] * n : b->dims[k];
  return e;
}
