/* Reading lowered programs: their memory and calls (ir/lowered.h). */
#include "lowered.h"

#include <stdlib.h>
#include <string.h>

const char *nnc_mem_region_name(nnc_mem_region r) {
  return r == NNC_MEM_PERSIST ? "persist" : r == NNC_MEM_IO ? "io" : "scratch";
}

int nnc_mem_find(const nnc_mem_layout *L, const char *name) {
  for (int i = 0; i < L->nbufs; i++)
    if (strcmp(L->bufs[i].name, name) == 0) return i;
  return -1;
}

const nnc_compiled_program *nnc_compiled_find(const nnc_compiled *c, const char *name) {
  for (int i = 0; i < c->nprograms; i++)
    if (strcmp(c->programs[i].name, name) == 0) return &c->programs[i];
  return NULL;
}

int nnc_mem_slot_cmp(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const struct nnc_mem_slot *)a)->node, y = (uintptr_t)((const struct nnc_mem_slot *)b)->node;
  return x < y ? -1 : x > y;
}

int nnc_mem_node_pos(const nnc_mem_plan *P, const nnc_node *nd) {
  struct nnc_mem_slot key = {nd, 0};
  const struct nnc_mem_slot *s = bsearch(&key, P->slots, (size_t)P->graph->nnodes, sizeof key, nnc_mem_slot_cmp);
  return s ? s->pos : -1;
}

int nnc_mem_node_buffer(const nnc_mem_plan *P, const nnc_node *nd) {
  int p = nnc_mem_node_pos(P, nd);
  return p < 0 ? -1 : P->node_buf[p];
}

int64_t nnc_mem_region_bytes(const nnc_mem_plan *P, nnc_mem_region r) {
  return r == NNC_MEM_PERSIST ? P->layout->persist_bytes : r == NNC_MEM_IO ? P->layout->io_bytes : P->scratch_bytes;
}

void nnc_mem_print(FILE *out, const nnc_mem_plan *P) {
  char buf[128], live[48];
  fprintf(out, "# memory plan of %s: persist %lld, io %lld, scratch %lld bytes, %d steps\n", P->graph->name,
          (long long)P->layout->persist_bytes, (long long)P->layout->io_bytes, (long long)P->scratch_bytes,
          P->nsteps);
  fprintf(out, "# region       offset      bytes  live       name  type\n");
  int inside = 0;
  for (int i = 0; i < P->nbufs; i++) {
    const nnc_mem_buffer *b = &P->bufs[i];
    /* after the scratch stage, a value no call reads or writes lives inside a fused kernel */
    if (P->nsteps > 0 && b->region == NNC_MEM_SCRATCH && b->first < 0 && ++inside) continue;
    if (b->region != NNC_MEM_SCRATCH) snprintf(live, sizeof live, "all");
    else if (b->first < 0) snprintf(live, sizeof live, "-");
    else snprintf(live, sizeof live, "[%d,%d]", b->first, b->last);
    fprintf(out, "%-7s %12lld %10lld  %-10s %s  %s", nnc_mem_region_name(b->region), (long long)b->offset,
            (long long)b->bytes, live, b->name, nnc_type_str(&b->type, buf, sizeof buf));
    if (b->inplace_of >= 0) fprintf(out, "  in place of %s", P->bufs[b->inplace_of].name);
    fprintf(out, "\n");
  }
  if (inside) fprintf(out, "# %d values live only inside fused kernels: no memory\n", inside);
  fprintf(out, "# scratch %lld bytes (order %s), naive %lld, lower bound %lld, %d in place\n",
          (long long)P->scratch_bytes, P->scratch_order ? P->scratch_order : "naive", (long long)P->scratch_naive,
          (long long)P->scratch_lower_bound, P->ninplace);
}

void nnc_lower_print(FILE *out, const nnc_lprogram *p) {
  fprintf(out, "# program %s: %d kernels, %d calls\n", p->name, p->nkernels, p->ncalls);
  for (int i = 0; i < p->nkernels; i++) nnc_lk_print(out, p->kernels[i]);
  for (int i = 0; i < p->ncalls; i++) {
    const nnc_lcall *c = &p->calls[i];
    fprintf(out, "call %s(", p->kernels[c->kernel]->name);
    for (int j = 0; j < c->nbufs; j++) {
      fprintf(out, "%s%s", j ? ", " : "", p->plan->bufs[c->bufs[j]].name);
      if (nnc_lcall_offset(c, j)) fprintf(out, " + %lld bytes", (long long)nnc_lcall_offset(c, j));
    }
    fprintf(out, ")  # %s\n", c->what);
  }
}


int nnc_kernel_find(nnc_kernel *const *list, int n, const nnc_kernel *k) {
  for (int i = 0; i < n; i++)
    if (list[i]->hash == k->hash && nnc_lk_equal(list[i], k)) return i;
  return -1;
}

void nnc_kernel_set_build(nnc_kernel_set *u, nnc_lprogram *const *progs, int nprogs) {
  int total = 0;
  for (int p = 0; p < nprogs; p++) total += progs[p]->nkernels;
  *u = (nnc_kernel_set){.nprogs = nprogs};
  u->list = nnc_xcalloc((size_t)total + 1, sizeof *u->list);
  u->program = nnc_xcalloc((size_t)total + 1, sizeof *u->program);
  u->index = nnc_xcalloc((size_t)nprogs + 1, sizeof *u->index);
  for (int p = 0; p < nprogs; p++) {
    u->index[p] = nnc_xcalloc((size_t)progs[p]->nkernels + 1, sizeof **u->index);
    for (int i = 0; i < progs[p]->nkernels; i++) {
      nnc_kernel *k = progs[p]->kernels[i];
      int found = nnc_kernel_find(u->list, u->n, k);
      if (found < 0) found = u->n, u->program[u->n] = p, u->list[u->n++] = k;
      u->index[p][i] = found;
    }
  }
}

void nnc_kernel_set_free(nnc_kernel_set *u) {
  for (int p = 0; p < u->nprogs; p++) free(u->index[p]);
  free(u->index), free(u->list), free(u->program);
  *u = (nnc_kernel_set){0};
}
