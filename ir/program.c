/* A module's list of programs: forward, kept in its own field, and the others. */
#include "ir.h"

void nnc_module_add_program(nnc_module *m, nnc_graph *g) {
  if (m->nprograms == m->programs_cap) {
    int cap = m->programs_cap ? m->programs_cap * 2 : 4;
    m->programs = nnc_arena_realloc(m->arena, m->programs, sizeof(nnc_graph *) * (size_t)m->programs_cap,
                                    sizeof(nnc_graph *) * (size_t)cap);
    m->programs_cap = cap;
  }
  m->programs[m->nprograms++] = g;
}

int nnc_module_program_count(const nnc_module *m) { return (m->forward ? 1 : 0) + m->nprograms; }

nnc_graph *nnc_module_program(const nnc_module *m, int i) {
  if (m->forward) {
    if (i == 0) return m->forward;
    i--;
  }
  return i >= 0 && i < m->nprograms ? m->programs[i] : NULL;
}
