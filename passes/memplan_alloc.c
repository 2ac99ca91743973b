/* The scratch allocator (DESIGN §9): greedy best fit of live ranges in several orders, the
 * smallest kept, as XLA's heap simulator and Glow's allocator do; the lower bound it is
 * measured against; and the validity check the tests use. */
#include <stdlib.h>
#include <string.h>

#include "memplan.h"

static int64_t align_up(int64_t x) { return (x + NNC_MEM_ALIGN - 1) / NNC_MEM_ALIGN * NNC_MEM_ALIGN; }

const char *nnc_mem_order_name(nnc_mem_order o) {
  static const char *const names[NNC_MEM_ORDER_COUNT] = {"size", "lifetime", "start", "area"};
  return o >= 0 && o < NNC_MEM_ORDER_COUNT ? names[o] : "?";
}

static bool is_live(const nnc_mem_interval *v) { return v->first >= 0 && v->last >= v->first && v->bytes > 0; }

static bool overlap_in_time(const nnc_mem_interval *a, const nnc_mem_interval *b) {
  return a->first <= b->last && b->first <= a->last;
}

/* qsort has no context argument: the intervals being sorted and the order. */
static const nnc_mem_interval *sort_iv;
static nnc_mem_order sort_order;

static int64_t order_key(const nnc_mem_interval *v, nnc_mem_order o) {
  int64_t len = v->last - v->first + 1;
  switch (o) {
  case NNC_MEM_ORDER_SIZE: return align_up(v->bytes);
  case NNC_MEM_ORDER_LIFETIME: return len;
  case NNC_MEM_ORDER_START: return -(int64_t)v->first;
  default: return align_up(v->bytes) / NNC_MEM_ALIGN * len;
  }
}

/* Descending key, then larger first, then earlier first, then index: a total order, so every
 * platform's qsort gives the same placement. */
static int by_order(const void *pa, const void *pb) {
  int ia = *(const int *)pa, ib = *(const int *)pb;
  const nnc_mem_interval *a = &sort_iv[ia], *b = &sort_iv[ib];
  int64_t ka = order_key(a, sort_order), kb = order_key(b, sort_order);
  if (ka != kb) return ka > kb ? -1 : 1;
  if (align_up(a->bytes) != align_up(b->bytes)) return align_up(a->bytes) > align_up(b->bytes) ? -1 : 1;
  if (a->first != b->first) return a->first < b->first ? -1 : 1;
  return ia < ib ? -1 : ia > ib;
}

static int by_offset(const void *pa, const void *pb) {
  int ia = *(const int *)pa, ib = *(const int *)pb;
  int64_t a = sort_iv[ia].offset, b = sort_iv[ib].offset;
  return a < b ? -1 : a > b ? 1 : (ia > ib) - (ia < ib);
}

/* Where range i goes among placed[0..n), sorted by offset (by_offset's order). */
static int sorted_position(const int *placed, int n, int i) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (by_offset(&placed[mid], &i) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* The offset best fit gives v among the placed ranges live with it (sorted by offset). */
static int64_t best_gap(const nnc_mem_interval *iv, const int *busy, int nbusy, int64_t size) {
  int64_t cur = 0, best = -1, best_len = 0;
  for (int k = 0; k < nbusy; k++) {
    const nnc_mem_interval *y = &iv[busy[k]];
    int64_t gap = y->offset - cur;
    if (gap >= size && (best < 0 || gap < best_len)) best = cur, best_len = gap;
    int64_t top = y->offset + align_up(y->bytes);
    if (top > cur) cur = top;
  }
  return best >= 0 ? best : cur;
}

int64_t nnc_mem_best_fit(nnc_mem_interval *iv, int n, nnc_mem_order order) {
  int *idx = nnc_xcalloc((size_t)n + 1, sizeof *idx), *placed = nnc_xcalloc((size_t)n + 1, sizeof *placed);
  int *busy = nnc_xcalloc((size_t)n + 1, sizeof *busy);
  int nlive = 0, nplaced = 0;
  for (int i = 0; i < n; i++) {
    iv[i].offset = 0;
    if (is_live(&iv[i])) idx[nlive++] = i;
  }
  sort_iv = iv;
  sort_order = order;
  qsort(idx, (size_t)nlive, sizeof *idx, by_order);
  int64_t total = 0;
  /* placed stays sorted by offset, so the ranges live with v come out sorted: sorting them for
   * every v made planning char_lstm at T = 256 (10,000 ranges) take 4 s */
  for (int k = 0; k < nlive; k++) {
    nnc_mem_interval *v = &iv[idx[k]];
    int nbusy = 0;
    for (int j = 0; j < nplaced; j++)
      if (overlap_in_time(v, &iv[placed[j]])) busy[nbusy++] = placed[j];
    v->offset = best_gap(iv, busy, nbusy, align_up(v->bytes));
    int at = sorted_position(placed, nplaced, idx[k]);
    memmove(placed + at + 1, placed + at, sizeof *placed * (size_t)(nplaced - at));
    placed[at] = idx[k], nplaced++;
    if (v->offset + align_up(v->bytes) > total) total = v->offset + align_up(v->bytes);
  }
  free(idx), free(placed), free(busy);
  return total;
}

int64_t nnc_mem_pack(nnc_mem_interval *iv, int n, nnc_mem_order *chosen) {
  int64_t best = -1;
  nnc_mem_order best_order = NNC_MEM_ORDER_SIZE;
  for (int o = 0; o < NNC_MEM_ORDER_COUNT; o++) {
    int64_t t = nnc_mem_best_fit(iv, n, (nnc_mem_order)o);
    if (best < 0 || t < best) best = t, best_order = (nnc_mem_order)o;
  }
  int64_t total = nnc_mem_best_fit(iv, n, best_order); /* redo the winner: its offsets stay */
  if (chosen) *chosen = best_order;
  return total;
}

int64_t nnc_mem_lower_bound(const nnc_mem_interval *iv, int n) {
  int steps = 0;
  for (int i = 0; i < n; i++)
    if (is_live(&iv[i]) && iv[i].last + 1 > steps) steps = iv[i].last + 1;
  /* a difference array over the steps: +bytes at first, -bytes after last */
  int64_t *delta = nnc_xcalloc((size_t)steps + 2, sizeof *delta);
  for (int i = 0; i < n; i++) {
    if (!is_live(&iv[i])) continue;
    delta[iv[i].first] += align_up(iv[i].bytes);
    delta[iv[i].last + 1] -= align_up(iv[i].bytes);
  }
  int64_t live = 0, most = 0;
  for (int s = 0; s <= steps; s++) {
    live += delta[s];
    if (live > most) most = live;
  }
  free(delta);
  return most;
}

bool nnc_mem_intervals_valid(const nnc_mem_interval *iv, int n, int64_t total, char *err, size_t cap) {
  for (int i = 0; i < n; i++) {
    const nnc_mem_interval *a = &iv[i];
    if (!is_live(a)) continue;
    if (a->offset < 0 || a->offset % NNC_MEM_ALIGN != 0 || a->offset + a->bytes > total) {
      snprintf(err, cap, "range %d (%lld bytes at %lld) is unaligned or outside %lld bytes", i, (long long)a->bytes,
               (long long)a->offset, (long long)total);
      return false;
    }
    for (int j = i + 1; j < n; j++) {
      const nnc_mem_interval *b = &iv[j];
      if (!is_live(b) || !overlap_in_time(a, b)) continue;
      if (a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes) {
        snprintf(err, cap, "ranges %d [%d,%d] and %d [%d,%d] are live together and overlap at %lld/%lld", i, a->first,
                 a->last, j, b->first, b->last, (long long)a->offset, (long long)b->offset);
        return false;
      }
    }
  }
  return true;
}
