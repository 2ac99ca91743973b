/* Shape rules of every primitive (ir/shape.c): good cases and each kind of violation. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ir/ir.h"

static nnc_module *M;
static nnc_graph *G;

/* "f32[B*16,64]" -> a type (test inputs are well formed). */
static nnc_type T(const char *s) {
  nnc_type t = {.batch_axis = -1};
  char dt[4] = {s[0], s[1], s[2] == '[' ? 0 : s[2], 0};
  nnc_dtype_from_name(dt, &t.dtype);
  const char *p = strchr(s, '[') + 1;
  while (*p && *p != ']') {
    if (*p == 'B') {
      t.batch_axis = t.rank;
      p++;
      t.dims[t.rank++] = *p == '*' ? strtoll(p + 1, (char **)&p, 10) : 1;
    } else {
      t.dims[t.rank++] = strtoll(p, (char **)&p, 10);
    }
    if (*p == ',') p++;
  }
  return t;
}

static nnc_node *in(const char *ty) {
  nnc_node *n = nnc_node_new(G, NNC_OP_input, 0, NULL, (nnc_loc){0});
  n->name = "x";
  n->type = T(ty);
  return n;
}

static nnc_node *node(nnc_op op, int nin, nnc_node *a, nnc_node *b, nnc_node *c) {
  nnc_node *ins[3] = {a, b, c};
  return nnc_node_new(G, op, nin, ins, (nnc_loc){0});
}
static nnc_node *un(nnc_op op, nnc_node *a) { return node(op, 1, a, NULL, NULL); }
static nnc_node *bin(nnc_op op, nnc_node *a, nnc_node *b) { return node(op, 2, a, b, NULL); }
static void ints(nnc_node *n, nnc_attr_key k, int cnt, const int64_t *v) { nnc_node_set_ints(n, k, cnt, v); }
#define INTS(n, k, ...) ints(n, NNC_ATTR_##k, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), (int64_t[]){__VA_ARGS__})

static char err[256];

/* The rule accepts the node and its type reads `want`. */
#define OK(n, want)                                                                             \
  do {                                                                                          \
    char buf_[200];                                                                             \
    nnc_node *n_ = (n);                                                                         \
    bool ok_ = nnc_infer_type(n_, err, sizeof err);                                             \
    CHECK_MSG(ok_, "unexpected error: %s", err);                                                \
    if (ok_) CHECK_MSG(strcmp(nnc_type_str(&n_->type, buf_, sizeof buf_), want) == 0, "got %s, want %s", buf_, want); \
  } while (0)

/* The rule rejects the node with a message containing `part`. */
#define BAD(n, part)                                                                            \
  do {                                                                                          \
    bool ok_ = nnc_infer_type((n), err, sizeof err);                                            \
    CHECK_MSG(!ok_, "accepted, want error containing '%s'", part);                              \
    if (!ok_) CHECK_MSG(strstr(err, part) != NULL, "error '%s' lacks '%s'", err, part);          \
  } while (0)

static void test_sources(void) {
  nnc_node *x = in("u8[B,1,28,28]");
  OK(x, "u8[B,1,28,28]");
  x->name = NULL;
  BAD(x, "missing name");
  nnc_node *s = nnc_node_new(G, NNC_OP_scalar, 0, NULL, (nnc_loc){0});
  s->name = "lr";
  s->type = T("f32[]");
  OK(s, "f32[]");
  s->type = T("f32[2]");
  BAD(s, "not a scalar");
  nnc_node *nb = nnc_node_new(G, NNC_OP_nbatch, 0, NULL, (nnc_loc){0});
  OK(nb, "f32[]");
  nnc_node *big = in("f32[B,65536,65536,65536]");
  BAD(big, "more than");
  big->type = T("f32[-3]");
  BAD(big, "out of range");
  big->type = T("f32[2]");
  big->type.batch_axis = 4;
  BAD(big, "batch axis");
  big->type.batch_axis = -1;
  big->type.rank = 99;
  BAD(big, "rank");
  big->type = T("f32[B*0,2]");
  BAD(big, "out of range");
  big->type = T("f32[0,17179869184]");
  OK(big, "f32[0,17179869184]");
  big->type = T("f32[0,17179869185]");
  BAD(big, "the limit per tensor");
}

static void test_generators(void) {
  nnc_node *c = node(NNC_OP_const, 0, NULL, NULL, NULL);
  c->type = T("f32[B,10]");
  BAD(c, "missing attribute 'value'");
  nnc_node_set_num(c, NNC_ATTR_value, -1e30);
  OK(c, "f32[B,10]");
  c->type = T("u8[3]");
  BAD(c, "not a u8");
  c->type = T("i32[3]");
  BAD(c, "not an i32");
  nnc_node *c2 = node(NNC_OP_const, 0, NULL, NULL, NULL);
  c2->type = T("i32[]");
  INTS(c2, value, 3);
  BAD(c2, "must be one number");

  nnc_node *io = node(NNC_OP_iota, 0, NULL, NULL, NULL);
  io->type = T("i32[B,10]");
  BAD(io, "missing attribute 'axis'");
  INTS(io, axis, 1);
  OK(io, "i32[B,10]");
  INTS(io, axis, 2);
  BAD(io, "axis 2 out of range");
  io->type = T("u8[10]");
  INTS(io, axis, 0);
  BAD(io, "i32 or f32");

  nnc_node *seed = in("i32[]"), *step = in("i32[]"), *fseed = in("f32[]");
  nnc_node *r = bin(NNC_OP_rng_uniform, seed, step);
  r->type = T("f32[B,100]");
  BAD(r, "missing attribute 'key'");
  INTS(r, key, 7);
  OK(r, "f32[B,100]");
  r->type = T("i32[B,100]");
  BAD(r, "must be f32");
  nnc_node *r2 = bin(NNC_OP_rng_uniform, fseed, step);
  r2->type = T("f32[4]");
  INTS(r2, key, 1);
  BAD(r2, "seed and step must be i32[]");
}

static void test_elementwise(void) {
  nnc_node *a = in("f32[B,10]"), *b = in("f32[B,10]"), *c = in("f32[10,B]"), *i = in("i32[B,10]");
  nnc_node *bx = in("f32[B*2,10]"), *u = in("u8[B,10]");
  OK(un(NNC_OP_exp, a), "f32[B,10]");
  OK(un(NNC_OP_neg, i), "i32[B,10]");
  BAD(un(NNC_OP_log, i), "must be f32");
  BAD(un(NNC_OP_abs, u), "f32 or i32");
  nnc_node *cast = un(NNC_OP_cast, u);
  BAD(cast, "missing attribute 'dtype'");
  INTS(cast, dtype, NNC_F32);
  OK(cast, "f32[B,10]");
  INTS(cast, dtype, 7);
  BAD(cast, "unknown dtype");
  INTS(cast, dtype, 0, 1);
  BAD(cast, "needs 1 value");

  OK(bin(NNC_OP_add, a, b), "f32[B,10]");
  BAD(bin(NNC_OP_mul, a, c), "operand types differ: f32[B,10] and f32[10,B]");
  BAD(bin(NNC_OP_sub, a, bx), "operand types differ");
  BAD(bin(NNC_OP_max, a, i), "operand types differ");
  BAD(bin(NNC_OP_pow, i, i), "must be f32");
  nnc_node *cmp = bin(NNC_OP_cmp, a, b);
  BAD(cmp, "missing attribute 'cmp'");
  INTS(cmp, cmp, NNC_CMP_GE);
  OK(cmp, "u8[B,10]");
  INTS(cmp, cmp, 6);
  BAD(cmp, "unknown comparison");
  nnc_node *withattr = bin(NNC_OP_add, a, b);
  INTS(withattr, axis, 0);
  BAD(withattr, "takes no attribute 'axis'");

  OK(node(NNC_OP_select, 3, u, a, b), "f32[B,10]");
  BAD(node(NNC_OP_select, 3, a, a, b), "condition f32[B,10] must be u8");
  BAD(node(NNC_OP_select, 3, u, a, i), "operand types differ");
  BAD(node(NNC_OP_select, 3, u, a, NULL), "input 2 missing");
  BAD(node(NNC_OP_add, 1, a, NULL, NULL), "takes 2 inputs, has 1");
}

static void test_broadcast_reshape(void) {
  nnc_node *v = in("f32[10]"), *row = in("f32[1,10]"), *bv = in("f32[B,1]"), *s = in("f32[]");
  nnc_node *br = un(NNC_OP_broadcast, v);
  br->type = T("f32[B,10]");
  BAD(br, "missing attribute 'axes'");
  INTS(br, axes, 1);
  OK(br, "f32[B,10]");
  INTS(br, axes, 0);
  BAD(br, "dimension 0 of f32[10] does not broadcast to axis 0 of f32[B,10]");
  INTS(br, axes, 2);
  BAD(br, "increasing output axes");
  nnc_node *br2 = un(NNC_OP_broadcast, row);
  br2->type = T("f32[B,10]");
  INTS(br2, axes, 0, 1);
  OK(br2, "f32[B,10]");
  nnc_node *br3 = un(NNC_OP_broadcast, bv);
  br3->type = T("f32[B,10]");
  INTS(br3, axes, 0, 1);
  OK(br3, "f32[B,10]");
  br3->type = T("f32[4,10]");
  BAD(br3, "does not broadcast");
  nnc_node *br4 = un(NNC_OP_broadcast, s);
  br4->type = T("f32[B,3]");
  OK(br4, "f32[B,3]");
  br4->type = T("i32[B,3]");
  BAD(br4, "dtype changes");

  nnc_node *img = in("f32[B,1,28,28]"), *seq = in("f32[B,16,64]"), *mid = in("f32[16,B,64]");
  nnc_node *r = un(NNC_OP_reshape, img);
  r->type = T("f32[B,784]");
  OK(r, "f32[B,784]");
  r->type = T("f32[B,785]");
  BAD(r, "element counts differ: f32[B,1,28,28] and f32[B,785]");
  r->type = T("f32[784]");
  BAD(r, "element counts differ");
  r->type = T("f32[B*2,392]");
  OK(r, "f32[B*2,392]");
  nnc_node *r2 = un(NNC_OP_reshape, seq);
  r2->type = T("f32[B*16,64]");
  OK(r2, "f32[B*16,64]");
  r2->type = T("f32[B*8,64]");
  BAD(r2, "element counts differ");
  nnc_node *r3 = un(NNC_OP_reshape, mid);
  r3->type = T("f32[16,B*64]");
  OK(r3, "f32[16,B*64]");
  INTS(r3, perm, 0);
  BAD(r3, "takes no attribute 'perm'");
}

static void test_permute_slice_pad_concat(void) {
  nnc_node *a = in("f32[B,3,4]");
  nnc_node *p = un(NNC_OP_permute, a);
  INTS(p, perm, 2, 0, 1);
  OK(p, "f32[4,B,3]");
  INTS(p, perm, 0, 0, 1);
  BAD(p, "not a permutation");
  INTS(p, perm, 0, 1);
  BAD(p, "needs 3 values, has 2");
  INTS(p, perm, 0, 1, 3);
  BAD(p, "not a permutation");

  nnc_node *s = un(NNC_OP_slice, a);
  INTS(s, start, 0, 1, 0);
  BAD(s, "missing attribute 'stop'");
  INTS(s, stop, 1, 3, 4);
  INTS(s, step, 1, 1, 3);
  OK(s, "f32[B,2,2]");
  INTS(s, step, 1, 0, 1);
  BAD(s, "is not a slice of f32[B,3,4]");
  INTS(s, step, 1, 1, 1);
  INTS(s, stop, 1, 5, 4);
  BAD(s, "axis 1");
  INTS(s, stop, 1, 3, 4);
  INTS(s, start, 0, 2, 0);
  OK(s, "f32[B,1,4]");
  INTS(s, start, 0, 4, 0);
  BAD(s, "not a slice");
  nnc_node *sb = un(NNC_OP_slice, in("f32[B*4,3]"));
  INTS(sb, start, 0, 0);
  INTS(sb, stop, 2, 3);
  INTS(sb, step, 1, 1);
  BAD(sb, "batch axis 0 of f32[B*4,3] cannot be sliced");
  INTS(sb, stop, 4, 3);
  OK(sb, "f32[B*4,3]");

  nnc_node *pd = un(NNC_OP_pad, a);
  INTS(pd, lo, 0, 1, 2);
  INTS(pd, hi, 0, 1, 0);
  OK(pd, "f32[B,5,6]");
  nnc_node_set_num(pd, NNC_ATTR_value, -1.0 / 0.0);
  OK(pd, "f32[B,5,6]");
  INTS(pd, lo, 1, 1, 2);
  BAD(pd, "batch axis 0 of f32[B,3,4] cannot be padded");
  INTS(pd, lo, 0, -1, 2);
  BAD(pd, "out of range");
  INTS(pd, lo, 0, INT64_MAX, INT64_MAX);
  BAD(pd, "out of range");
  INTS(pd, lo, 0, 17179869184, 0);
  BAD(pd, "the limit per tensor");
  nnc_node *pd2 = un(NNC_OP_pad, in("f32[131072,131072]"));
  INTS(pd2, lo, 1, 0);
  INTS(pd2, hi, 0, 0);
  BAD(pd2, "more than");

  nnc_node *b = in("f32[B,5,4]"), *c = in("f32[B,3,5]");
  nnc_node *ins[3] = {a, b, a};
  nnc_node *cat = nnc_node_new(G, NNC_OP_concat, 3, ins, (nnc_loc){0});
  BAD(cat, "missing attribute 'axis'");
  INTS(cat, axis, 1);
  OK(cat, "f32[B,11,4]");
  INTS(cat, axis, 3);
  BAD(cat, "axis 3 out of range");
  INTS(cat, axis, 2);
  BAD(cat, "operands differ outside axis 2: f32[B,3,4] and f32[B,5,4]");
  nnc_node *ins2[2] = {a, c};
  nnc_node *cat2 = nnc_node_new(G, NNC_OP_concat, 2, ins2, (nnc_loc){0});
  INTS(cat2, axis, 2);
  OK(cat2, "f32[B,3,9]");
  INTS(cat2, axis, 0);
  BAD(cat2, "operands differ");
  nnc_node *cat0 = nnc_node_new(G, NNC_OP_concat, 0, NULL, (nnc_loc){0});
  BAD(cat0, "takes 1 to 4096 inputs");
}

static void test_reduce(void) {
  nnc_node *a = in("f32[B,3,4]");
  nnc_node *r = un(NNC_OP_reduce_sum, a);
  BAD(r, "missing attribute 'axes'");
  INTS(r, axes, 2);
  OK(r, "f32[B,3]");
  INTS(r, axes, 0, 2);
  OK(r, "f32[3]");
  INTS(r, axes, 2, 1);
  BAD(r, "sorted, distinct");
  INTS(r, axes, 1, 1);
  BAD(r, "sorted, distinct");
  INTS(r, axes, 3);
  BAD(r, "sorted, distinct axes of f32[B,3,4]");
  nnc_node *m = un(NNC_OP_reduce_max, in("u8[B,3]"));
  INTS(m, axes, 1);
  OK(m, "u8[B]");
  nnc_node *su = un(NNC_OP_reduce_sum, in("u8[B,3]"));
  INTS(su, axes, 1);
  BAD(su, "must be f32 or i32");
  nnc_node *all = un(NNC_OP_reduce_sum, in("f32[B,10]"));
  INTS(all, axes, 0, 1);
  OK(all, "f32[]");
}

static void test_matmul(void) {
  nnc_node *x = in("f32[B,784]"), *w = in("f32[784,100]"), *w2 = in("f32[100,10]");
  OK(bin(NNC_OP_matmul, x, w), "f32[B,100]");
  BAD(bin(NNC_OP_matmul, x, w2), "matmul: inner dimensions differ: f32[B,784] and f32[100,10]");
  /* nn.Linear stores [out, in]: x W^T */
  nnc_node *lin = bin(NNC_OP_matmul, x, in("f32[100,784]"));
  INTS(lin, trans_b, 1);
  OK(lin, "f32[B,100]");
  /* dW = dy^T x: the batch axis is contracted */
  nnc_node *dw = bin(NNC_OP_matmul, in("f32[B,10]"), x);
  INTS(dw, trans_a, 1);
  OK(dw, "f32[10,784]");
  /* contracting B against a static 784 is not a match */
  nnc_node *bad = bin(NNC_OP_matmul, in("f32[784,B]"), in("f32[784,3]"));
  BAD(bad, "inner dimensions differ");
  nnc_node *bb = bin(NNC_OP_matmul, in("f32[B,10]"), in("f32[10,B]"));
  BAD(bb, "two batch axes");
  nnc_node *fl = bin(NNC_OP_matmul, in("f32[B,10]"), in("f32[10,B]"));
  INTS(fl, trans_a, 2);
  BAD(fl, "must be 0 or 1");
  /* batched: attention scores q k^T */
  nnc_node *q = in("f32[B,4,16,8]"), *k = in("f32[B,4,16,8]");
  nnc_node *sc = bin(NNC_OP_matmul, q, k);
  INTS(sc, trans_b, 1);
  OK(sc, "f32[B,4,16,16]");
  BAD(bin(NNC_OP_matmul, q, in("f32[B,2,8,16]")), "leading dimensions differ");
  BAD(bin(NNC_OP_matmul, q, in("f32[4,8,16]")), "ranks differ");
  OK(bin(NNC_OP_matmul, q, in("f32[8,5]")), "f32[B,4,16,5]");
  BAD(bin(NNC_OP_matmul, in("f32[10]"), w), "rank >= 2");
  BAD(bin(NNC_OP_matmul, in("i32[2,2]"), in("i32[2,2]")), "must be f32");
}

static void conv_attrs(nnc_node *n, int64_t s, int64_t p, int64_t d, int64_t g) {
  INTS(n, stride, s, s);
  INTS(n, padding, p, p);
  INTS(n, dilation, d, d);
  INTS(n, groups, g);
}

static void test_conv(void) {
  nnc_node *x = in("f32[B,1,28,28]"), *w = in("f32[6,1,5,5]");
  nnc_node *c = bin(NNC_OP_conv2d, x, w);
  BAD(c, "missing attribute 'stride'");
  conv_attrs(c, 1, 2, 1, 1);
  OK(c, "f32[B,6,28,28]");
  conv_attrs(c, 2, 0, 1, 1);
  OK(c, "f32[B,6,12,12]");
  conv_attrs(c, 1, 0, 7, 1);
  BAD(c, "does not fit");
  conv_attrs(c, 0, 0, 1, 1);
  BAD(c, "out of range");
  conv_attrs(c, 1, 0, INT64_C(17179869184), 1);
  BAD(c, "does not fit");
  INTS(c, stride, 1);
  BAD(c, "'stride' needs 2 values, has 1");
  nnc_node *c2 = bin(NNC_OP_conv2d, in("f32[B,6,14,14]"), w);
  conv_attrs(c2, 1, 0, 1, 1);
  BAD(c2, "channels of f32[B,6,14,14] and f32[6,1,5,5] do not match with groups=1");
  conv_attrs(c2, 1, 0, 1, 6); /* depthwise */
  OK(c2, "f32[B,6,10,10]");
  conv_attrs(c2, 1, 0, 1, 4);
  BAD(c2, "groups=4");
  nnc_node *c3 = bin(NNC_OP_conv2d, in("f32[1,B,28,28]"), w);
  conv_attrs(c3, 1, 0, 1, 1);
  BAD(c3, "batch axis first");
  nnc_node *c4 = bin(NNC_OP_conv2d, in("f32[2,1,28,28]"), w);
  conv_attrs(c4, 1, 0, 1, 1);
  OK(c4, "f32[2,6,24,24]");

  nnc_node *dy = in("f32[B,6,12,12]");
  nnc_node *gi = bin(NNC_OP_conv2d_input_grad, dy, w);
  conv_attrs(gi, 2, 0, 1, 1);
  BAD(gi, "missing attribute 'in_shape'");
  INTS(gi, in_shape, 28, 28);
  OK(gi, "f32[B,1,28,28]");
  INTS(gi, in_shape, 27, 27); /* floor mode: 27 also gives 12 */
  OK(gi, "f32[B,1,27,27]");
  INTS(gi, in_shape, 30, 30);
  BAD(gi, "does not match the convolution's output");
  INTS(gi, in_shape, 0, 30);
  BAD(gi, "out of range");
  nnc_node *gw = bin(NNC_OP_conv2d_weight_grad, dy, x);
  conv_attrs(gw, 2, 0, 1, 1);
  BAD(gw, "missing attribute 'kernel'");
  INTS(gw, kernel, 5, 5);
  OK(gw, "f32[6,1,5,5]");
  INTS(gw, kernel, 3, 3);
  BAD(gw, "does not match");
  nnc_node *gw2 = bin(NNC_OP_conv2d_weight_grad, in("f32[4,6,12,12]"), x);
  conv_attrs(gw2, 2, 0, 1, 1);
  INTS(gw2, kernel, 5, 5);
  BAD(gw2, "does not match");
}

static void pool_attrs(nnc_node *n, int64_t k, int64_t s, int64_t p) {
  INTS(n, kernel, k, k);
  INTS(n, stride, s, s);
  INTS(n, padding, p, p);
  INTS(n, dilation, 1, 1);
}

static void test_pool(void) {
  nnc_node *x = in("f32[B,6,28,28]");
  nnc_node *p = un(NNC_OP_maxpool2d, x);
  BAD(p, "missing attribute");
  pool_attrs(p, 2, 2, 0);
  OK(p, "f32[B,6,14,14]");
  pool_attrs(p, 3, 2, 1);
  OK(p, "f32[B,6,14,14]");
  pool_attrs(p, 2, 2, 2);
  BAD(p, "exceeds half the kernel");
  pool_attrs(p, 40, 1, 0);
  BAD(p, "does not fit");
  nnc_node *am = un(NNC_OP_maxpool2d_argmax, x);
  pool_attrs(am, 3, 3, 0);
  OK(am, "u8[B,6,9,9]");
  pool_attrs(am, 17, 1, 0);
  BAD(am, "u8 index");
  nnc_node *dy = in("f32[B,6,14,14]"), *arg = in("u8[B,6,14,14]");
  nnc_node *g = bin(NNC_OP_maxpool2d_grad, dy, arg);
  pool_attrs(g, 2, 2, 0);
  BAD(g, "missing attribute 'in_shape'");
  INTS(g, in_shape, 28, 28);
  OK(g, "f32[B,6,28,28]");
  INTS(g, in_shape, 29, 29);
  OK(g, "f32[B,6,29,29]");
  INTS(g, in_shape, 31, 31);
  BAD(g, "does not match the pool's output");
  nnc_node *g2 = bin(NNC_OP_maxpool2d_grad, dy, dy);
  pool_attrs(g2, 2, 2, 0);
  INTS(g2, in_shape, 28, 28);
  BAD(g2, "must be u8");
}

static void test_gather_scatter(void) {
  nnc_node *emb = in("f32[1000,64]"), *tok = in("i32[B,16]");
  nnc_node *g = bin(NNC_OP_gather, emb, tok);
  BAD(g, "missing attribute 'axis'");
  INTS(g, axis, 0);
  OK(g, "f32[B,16,64]");
  INTS(g, axis, 2);
  BAD(g, "axis 2 out of range");
  nnc_node *gf = bin(NNC_OP_gather, emb, in("f32[B]"));
  INTS(gf, axis, 0);
  BAD(gf, "indices f32[B] must be i32");
  nnc_node *g2 = bin(NNC_OP_gather, in("f32[B,10]"), tok);
  INTS(g2, axis, 1);
  BAD(g2, "two batch axes");
  nnc_node *g3 = bin(NNC_OP_gather, in("f32[2,2,2,2,2]"), in("i32[2,2,2,2,2]"));
  INTS(g3, axis, 0);
  BAD(g3, "too many axes");

  nnc_node *upd = in("f32[B,16,64]");
  nnc_node *s = bin(NNC_OP_scatter_add, upd, tok);
  s->type = T("f32[1000,64]");
  BAD(s, "missing attribute 'axis'");
  INTS(s, axis, 0);
  OK(s, "f32[1000,64]");
  s->type = T("f32[1000,32]");
  BAD(s, "updates f32[B,16,64] do not match result f32[1000,32]");
  s->type = T("f32[1000,64]");
  INTS(s, axis, 5);
  BAD(s, "out of range");
}

static void test_attr_forms(void) {
  nnc_node *a = in("f32[4]");
  nnc_node *n = un(NNC_OP_neg, a);
  n->nattrs = 9;
  BAD(n, "bad attribute count");
  n->nattrs = 1;
  n->attrs[0] = (nnc_attr){.key = (nnc_attr_key)99};
  BAD(n, "unknown attribute");
  nnc_node *r = un(NNC_OP_reduce_sum, a);
  r->nattrs = 2;
  r->attrs[0] = (nnc_attr){.key = NNC_ATTR_axes, .n = 1};
  r->attrs[1] = (nnc_attr){.key = NNC_ATTR_axes, .n = 1};
  BAD(r, "given twice");
  r->nattrs = 1;
  r->attrs[0].n = 50;
  BAD(r, "has 50 values");
  r->attrs[0].n = 1;
  r->attrs[0].has_num = true;
  BAD(r, "list of integers");
  nnc_node *bogus = un(NNC_OP_neg, a);
  bogus->op = (nnc_op)1000;
  BAD(bogus, "unknown op");
  CHECK(!nnc_infer_type(NULL, err, sizeof err));
}

int main(void) {
  M = nnc_module_new("t");
  G = nnc_graph_new(M->arena, "forward");
  test_sources();
  test_generators();
  test_elementwise();
  test_broadcast_reshape();
  test_permute_slice_pad_concat();
  test_reduce();
  test_matmul();
  test_conv();
  test_pool();
  test_gather_scatter();
  test_attr_forms();
  nnc_module_free(M);
  return check_summary();
}
