/* Which graph nodes get a hand-written GPU schedule (passes/gpu_sched.h), and with what shape.
 *
 * The lowering (passes/lower.c) asks here first for every node it lowers for the GPU target;
 * NULL sends it to its flat schedule (one guarded loop per result element). A schedule is
 * chosen only where its kernel has exactly the GLOBAL buffers the flat kernel would have
 * (result, then the operands that are not scalar sources, at the same sizes), so the memory
 * plan and the call site do not change, and only for layouts whose every access the verifier
 * proves: a batch axis where the schedule scales by n, nowhere else. */
#include <string.h>

#include "gpu_sched.h"

static bool all_f32(const nnc_node *nd) {
  if (nd->type.dtype != NNC_F32) return false;
  for (int j = 0; j < nd->ninputs; j++)
    if (nd->inputs[j]->type.dtype != NNC_F32 || nd->inputs[j]->op == NNC_OP_scalar) return false;
  return true;
}

static int64_t product(const nnc_type *t, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= t->dims[i];
  return p;
}

static bool same_dims(const nnc_type *a, const nnc_type *b, int count) {
  for (int i = 0; i < count; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

/* --- matmul ------------------------------------------------------------------------------------ */

/* Where the batch axis sits decides what n scales: the rows of a plain [B, K] x [K, N], the
 * contraction of a weight gradient x^T dy ([B, K]^T x [B, N]), or the leading axes of a batched
 * product (attention's [B, h, T, d]). Anything else keeps the flat schedule. */
static bool matmul_shape(const nnc_node *nd, int64_t bmax, nnc_gpu_matmul_shape *s) {
  const nnc_type *a = &nd->inputs[0]->type, *b = &nd->inputs[1]->type, *o = &nd->type;
  int r = a->rank;
  if (r < 2 || o->rank != r || (b->rank != 2 && b->rank != r)) return false;
  bool ta = nnc_node_int(nd, NNC_ATTR_trans_a, 0) != 0, tb = nnc_node_int(nd, NNC_ATTR_trans_b, 0) != 0;
  *s = (nnc_gpu_matmul_shape){.M = o->dims[r - 2], .N = o->dims[r - 1], .K = a->dims[ta ? r - 2 : r - 1],
                              .trans_a = ta, .trans_b = tb, .batch_max = bmax, .batch = NNC_GPU_BATCH_NONE,
                              .mats = product(o, 0, r - 2), .b_shared = b->rank == 2 && r > 2};
  if (!same_dims(a, o, r - 2) || (b->rank == r && !same_dims(b, o, r - 2))) return false;
  int oa = o->batch_axis, ba = a->batch_axis, bb = b->batch_axis;
  if (oa < 0 && ba < 0 && bb < 0) return true;
  if (r == 2 && !ta && oa == 0 && ba == 0 && bb < 0) return s->batch = NNC_GPU_BATCH_ROWS, true;
  if (r == 2 && ta && !tb && oa < 0 && ba == 0 && bb == 0) return s->batch = NNC_GPU_BATCH_K, true;
  if (r > 2 && oa >= 0 && oa < r - 2 && ba == oa && (b->rank == 2 ? bb < 0 : bb == oa))
    return s->batch = NNC_GPU_BATCH_MATS, true;
  return false;
}

/* --- conv2d ------------------------------------------------------------------------------------- */

static void pair(const nnc_node *nd, nnc_attr_key key, int64_t dflt, int64_t *y, int64_t *x) {
  const nnc_attr *a = nnc_node_attr(nd, key);
  *y = *x = dflt;
  if (a && a->n >= 1 && a->n <= 2) *y = a->ints[0], *x = a->ints[a->n - 1];
}

/* The image [N, C, H, W] and weight of a conv node; images batched along axis 0 only. */
static bool conv_shape(const nnc_node *nd, int64_t bmax, nnc_gpu_conv_kind *kind, nnc_gpu_conv_shape *s) {
  const nnc_type *in0 = &nd->inputs[0]->type, *in1 = &nd->inputs[1]->type, *o = &nd->type;
  if (in0->rank != 4 || in1->rank != 4 || o->rank != 4) return false;
  const nnc_type *img, *w, *dy = NULL;
  switch (nd->op) {
  case NNC_OP_conv2d: *kind = NNC_GPU_CONV_FORWARD, img = in0, w = in1, dy = o; break;
  case NNC_OP_conv2d_input_grad: *kind = NNC_GPU_CONV_INPUT_GRAD, img = o, w = in1, dy = in0; break;
  case NNC_OP_conv2d_weight_grad: *kind = NNC_GPU_CONV_WEIGHT_GRAD, img = in1, w = o, dy = in0; break;
  default: return false;
  }
  if (img->batch_axis != dy->batch_axis || (img->batch_axis != 0 && img->batch_axis != -1) || w->batch_axis >= 0)
    return false;
  *s = (nnc_gpu_conv_shape){.images = img->dims[0], .C = img->dims[1], .H = img->dims[2], .W = img->dims[3],
                            .O = w->dims[0], .KH = w->dims[2], .KW = w->dims[3],
                            .groups = nnc_node_int(nd, NNC_ATTR_groups, 1), .batch_max = img->batch_axis == 0 ? bmax : 0};
  pair(nd, NNC_ATTR_stride, 1, &s->sy, &s->sx);
  pair(nd, NNC_ATTR_padding, 0, &s->py, &s->px);
  pair(nd, NNC_ATTR_dilation, 1, &s->dy, &s->dx);
  if (s->sy < 1 || s->sx < 1 || s->dy < 1 || s->dx < 1 || s->py < 0 || s->px < 0 || s->groups < 1) return false;
  /* the shapes must be the conv's: dy [N, O, OH, OW], weight [O, C/groups, KH, KW] */
  int64_t OH = (s->H + 2 * s->py - s->dy * (s->KH - 1) - 1), OW = (s->W + 2 * s->px - s->dx * (s->KW - 1) - 1);
  if (OH < 0 || OW < 0 || s->C % s->groups || w->dims[1] != s->C / s->groups) return false;
  return dy->dims[0] == s->images && dy->dims[1] == s->O && dy->dims[2] == OH / s->sy + 1 && dy->dims[3] == OW / s->sx + 1;
}

/* --- reductions --------------------------------------------------------------------------------- */

/* Reduced axes that are exactly a suffix of the input's: rows x cols. */
static bool reduce_shape(const nnc_node *nd, int64_t bmax, nnc_gpu_reduce_shape *s) {
  const nnc_type *a = &nd->inputs[0]->type;
  const nnc_attr *ax = nnc_node_attr(nd, NNC_ATTR_axes);
  if (!ax || ax->n < 1 || a->rank < 1 || ax->n > a->rank) return false;
  int first = a->rank - ax->n;
  bool seen[NNC_MAX_RANK] = {0};
  for (int j = 0; j < ax->n; j++) {
    if (ax->ints[j] < first || ax->ints[j] >= a->rank || seen[ax->ints[j]]) return false;
    seen[ax->ints[j]] = true;
  }
  *s = (nnc_gpu_reduce_shape){.rows = product(a, 0, first), .cols = product(a, first, a->rank),
                              .rows_batched = a->batch_axis >= 0 && a->batch_axis < first,
                              .cols_batched = a->batch_axis >= first, .is_max = nd->op == NNC_OP_reduce_max,
                              .batch_max = a->batch_axis >= 0 ? bmax : 0};
  return true;
}

/* --- the node ---------------------------------------------------------------------------------- */

static const char *node_comment(nnc_arena *a, const nnc_node *nd, const char *schedule) {
  char type[128], where[256] = "";
  nnc_type_str(&nd->type, type, sizeof type);
  if (nd->loc.src) nnc_loc_str(nd->loc, where, sizeof where);
  return nnc_arena_printf(a, "%%%d = %s : %s%s%s; %s", nd->id, nnc_ops[nd->op].name, type, where[0] ? "  at " : "", where,
                          schedule);
}

nnc_kernel *nnc_gpu_sched_node(nnc_arena *a, const nnc_module *m, const nnc_node *nd) {
  if (!nd || !all_f32(nd)) return NULL;
  int64_t bmax = m->batch_max > 0 ? m->batch_max : 1;
  const char *name = nnc_arena_printf(a, "%s_%d", nnc_ops[nd->op].name, nd->id);
  nnc_kernel *k = NULL;
  switch (nd->op) {
  case NNC_OP_matmul: {
    nnc_gpu_matmul_shape s;
    if (nd->ninputs == 2 && matmul_shape(nd, bmax, &s)) k = nnc_gpu_matmul_kernel(a, name, &s);
    break;
  }
  case NNC_OP_conv2d: case NNC_OP_conv2d_input_grad: case NNC_OP_conv2d_weight_grad: {
    nnc_gpu_conv_kind kind;
    nnc_gpu_conv_shape s;
    if (nd->ninputs == 2 && conv_shape(nd, bmax, &kind, &s)) k = nnc_gpu_conv2d_kernel(a, name, kind, &s);
    break;
  }
  case NNC_OP_reduce_sum: case NNC_OP_reduce_max: {
    nnc_gpu_reduce_shape s;
    if (nd->ninputs == 1 && reduce_shape(nd, bmax, &s)) k = nnc_gpu_row_reduce_kernel(a, name, &s);
    break;
  }
  default: break;
  }
  if (!k) return NULL;
  /* the verifier's bound is the module's B_max, as for the flat kernel */
  k->batch_max = bmax;
  k->comment = node_comment(a, nd, k->comment);
  nnc_lk_finish(k);
  return k;
}
