/* The IR text form (ir/print.c, ir/parse.c): hand-built modules print, parse and print again
 * to the same text; broken texts give an error at the right line; no input crashes. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ir/ir.h"

static const nnc_source model_src = {"net.nn", "", 0};

static nnc_loc at(int line, int col) { return (nnc_loc){&model_src, line, col}; }

static nnc_type ty(const char *dt, int rank, const int64_t *dims, int batch_axis) {
  nnc_dtype d;
  nnc_dtype_from_name(dt, &d);
  return nnc_type_make(d, rank, dims, batch_axis);
}
#define TY(dt, ba, ...) ty(dt, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), (int64_t[]){__VA_ARGS__}, ba)

static nnc_graph *G;

static nnc_node *src(nnc_op op, const char *name, nnc_type t) {
  nnc_node *n = nnc_node_new(G, op, 0, NULL, at(1, 1));
  n->name = name;
  n->type = t;
  return n;
}

/* A node with its attributes set by the caller before typing: op(inputs), then infer. */
static nnc_node *op(nnc_op o, int nin, nnc_node **ins) { return nnc_node_new(G, o, nin, ins, (nnc_loc){0}); }

static nnc_node *typed(nnc_node *n) {
  char err[256];
  if (!nnc_infer_type(n, err, sizeof err)) fprintf(stderr, "building %s: %s\n", nnc_ops[n->op].name, err);
  return n;
}

static nnc_node *given(nnc_node *n, nnc_type t) {
  n->type = t;
  return typed(n);
}

static void param(nnc_module *m, const char *name, nnc_type t, nnc_init init, bool frozen, bool state, int tied) {
  nnc_param p = {.name = name, .type = t, .init = init, .frozen = frozen, .is_state = state, .tied_to = tied,
                 .loc = at(2, 3)};
  nnc_module_add_param(m, &p);
}

/* x @ W1^T + b1 -> relu -> @ W2: logits; a sum as the loss; a step counter as state. */
static nnc_module *build_mlp(void) {
  nnc_module *m = nnc_module_new("mlp");
  m->batch_max = 32;
  G = m->forward = nnc_graph_new(m->arena, "forward");
  param(m, "fc1.weight", TY("f32", -1, 100, 784), (nnc_init){NNC_INIT_UNIFORM, -0.0357142857142857, 0.1}, false, false, -1);
  param(m, "fc1.bias", TY("f32", -1, 100), (nnc_init){NNC_INIT_CONST, 0.1, 0}, true, false, -1);
  param(m, "fc2.weight", TY("f32", -1, 10, 100), (nnc_init){NNC_INIT_NORMAL, 0, 0.02}, false, false, -1);
  param(m, "steps", TY("i32", -1, 1), (nnc_init){NNC_INIT_ZEROS, 0, 0}, false, true, -1);
  nnc_node *x = src(NNC_OP_input, "x", TY("f32", 0, 1, 784));
  nnc_node *w1 = src(NNC_OP_param, "fc1.weight", TY("f32", -1, 100, 784));
  nnc_node *mm = op(NNC_OP_matmul, 2, (nnc_node *[]){x, w1});
  nnc_node_set_int(mm, NNC_ATTR_trans_b, 1);
  typed(mm)->loc = at(5, 9);
  nnc_node *b1 = src(NNC_OP_param, "fc1.bias", TY("f32", -1, 100));
  nnc_node *bb = op(NNC_OP_broadcast, 1, &b1);
  nnc_node_set_int(bb, NNC_ATTR_axes, 1);
  given(bb, mm->type);
  nnc_node *h = typed(op(NNC_OP_add, 2, (nnc_node *[]){mm, bb}));
  nnc_node *zero = op(NNC_OP_const, 0, NULL);
  nnc_node_set_num(zero, NNC_ATTR_value, 0);
  given(zero, h->type);
  nnc_node *relu = typed(op(NNC_OP_max, 2, (nnc_node *[]){h, zero}));
  relu->loc = at(6, 12);
  nnc_node *w2 = src(NNC_OP_param, "fc2.weight", TY("f32", -1, 10, 100));
  nnc_node *logits = op(NNC_OP_matmul, 2, (nnc_node *[]){relu, w2});
  nnc_node_set_int(logits, NNC_ATTR_trans_b, 1);
  typed(logits);
  nnc_node *sum = op(NNC_OP_reduce_sum, 1, &logits);
  nnc_node_set_ints(sum, NNC_ATTR_axes, 2, (int64_t[]){0, 1});
  typed(sum);
  nnc_node *n = typed(op(NNC_OP_nbatch, 0, NULL));
  nnc_node *third = op(NNC_OP_const, 0, NULL);
  nnc_node_set_num(third, NNC_ATTR_value, 1.0 / 3.0);
  given(third, n->type);
  nnc_node *loss = typed(op(NNC_OP_div, 2, (nnc_node *[]){typed(op(NNC_OP_mul, 2, (nnc_node *[]){sum, third})), n}));
  nnc_node *steps = src(NNC_OP_state, "steps", TY("i32", -1, 1));
  nnc_node *one = op(NNC_OP_const, 0, NULL);
  nnc_node_set_num(one, NNC_ATTR_value, 1);
  given(one, steps->type);
  nnc_node *next = typed(op(NNC_OP_add, 2, (nnc_node *[]){steps, one}));
  nnc_graph_add_output(G, "logits", logits);
  nnc_graph_add_output(G, "loss", loss);
  G->loss = 1;
  nnc_graph_add_state_output(G, "steps", next);
  return m;
}

static void conv_attrs(nnc_node *n, int64_t s, int64_t p) {
  nnc_node_set_ints(n, NNC_ATTR_stride, 2, (int64_t[]){s, s});
  nnc_node_set_ints(n, NNC_ATTR_padding, 2, (int64_t[]){p, p});
  nnc_node_set_ints(n, NNC_ATTR_dilation, 2, (int64_t[]){1, 1});
}

/* u8 image -> cast -> conv2d -> maxpool2d (values and argmax) -> flatten. */
static nnc_module *build_conv(void) {
  nnc_module *m = nnc_module_new("lenet");
  G = m->forward = nnc_graph_new(m->arena, "forward");
  param(m, "conv1.weight", TY("f32", -1, 6, 1, 5, 5), (nnc_init){NNC_INIT_UNIFORM, -0.2, 0.2}, false, false, -1);
  nnc_node *x = src(NNC_OP_input, "x", TY("u8", 0, 1, 1, 28, 28));
  nnc_node *xf = op(NNC_OP_cast, 1, &x);
  nnc_node_set_int(xf, NNC_ATTR_dtype, NNC_F32);
  typed(xf);
  nnc_node *w = src(NNC_OP_param, "conv1.weight", TY("f32", -1, 6, 1, 5, 5));
  nnc_node *c = op(NNC_OP_conv2d, 2, (nnc_node *[]){xf, w});
  conv_attrs(c, 1, 2);
  nnc_node_set_int(c, NNC_ATTR_groups, 1);
  typed(c);
  nnc_node *p = op(NNC_OP_maxpool2d, 1, &c);
  conv_attrs(p, 2, 0);
  nnc_node_set_ints(p, NNC_ATTR_kernel, 2, (int64_t[]){2, 2});
  typed(p);
  nnc_node *am = op(NNC_OP_maxpool2d_argmax, 1, &c);
  conv_attrs(am, 2, 0);
  nnc_node_set_ints(am, NNC_ATTR_kernel, 2, (int64_t[]){2, 2});
  typed(am);
  nnc_node *flat = given(op(NNC_OP_reshape, 1, &p), TY("f32", 0, 1, 6 * 14 * 14));
  nnc_graph_add_output(G, "features", flat);
  nnc_graph_add_output(G, "argmax", am);
  return m;
}

/* Batch multiples (B*16), odd names, tied weights, and many ops, in two programs. */
static nnc_module *build_seq(void) {
  nnc_module *m = nnc_module_new("seq model");
  G = m->forward = nnc_graph_new(m->arena, "forward");
  param(m, "0.weight", TY("f32", -1, 64, 32), (nnc_init){NNC_INIT_ONES, 0, 0}, false, false, -1);
  param(m, "emb \"tok\"", TY("f32", -1, 64, 32), (nnc_init){NNC_INIT_NORMAL, 0, 1e-30}, false, false, 0);
  nnc_node *x = src(NNC_OP_input, "x\tin", TY("f32", 0, 1, 16, 64));
  nnc_node *flat = given(op(NNC_OP_reshape, 1, &x), TY("f32", 0, 16, 64));
  nnc_node *w = src(NNC_OP_param, "0.weight", TY("f32", -1, 64, 32));
  nnc_node *y = typed(op(NNC_OP_matmul, 2, (nnc_node *[]){flat, w}));
  nnc_node *y3 = given(op(NNC_OP_reshape, 1, &y), TY("f32", 0, 1, 16, 32));
  nnc_node *pm = op(NNC_OP_permute, 1, &y3);
  nnc_node_set_ints(pm, NNC_ATTR_perm, 3, (int64_t[]){1, 0, 2});
  typed(pm);
  nnc_node *sl = op(NNC_OP_slice, 1, &pm);
  nnc_node_set_ints(sl, NNC_ATTR_start, 3, (int64_t[]){1, 0, 0});
  nnc_node_set_ints(sl, NNC_ATTR_stop, 3, (int64_t[]){16, 1, 32});
  nnc_node_set_ints(sl, NNC_ATTR_step, 3, (int64_t[]){2, 1, 3});
  typed(sl);
  nnc_node *pd = op(NNC_OP_pad, 1, &sl);
  nnc_node_set_ints(pd, NNC_ATTR_lo, 3, (int64_t[]){0, 0, 1});
  nnc_node_set_ints(pd, NNC_ATTR_hi, 3, (int64_t[]){0, 0, 0});
  nnc_node_set_num(pd, NNC_ATTR_value, -1.0 / 0.0);
  typed(pd);
  nnc_node *cat = op(NNC_OP_concat, 3, (nnc_node *[]){pd, pd, pd});
  nnc_node_set_int(cat, NNC_ATTR_axis, 2);
  typed(cat);
  nnc_node *cmp = op(NNC_OP_cmp, 2, (nnc_node *[]){cat, cat});
  nnc_node_set_int(cmp, NNC_ATTR_cmp, NNC_CMP_GE);
  typed(cmp);
  nnc_node *sel = typed(op(NNC_OP_select, 3, (nnc_node *[]){cmp, cat, cat}));
  nnc_node *seed = src(NNC_OP_scalar, "seed", TY("i32", -1, 0));
  seed->type.rank = 0;
  nnc_node *r = op(NNC_OP_rng_uniform, 2, (nnc_node *[]){seed, seed});
  nnc_node_set_int(r, NNC_ATTR_key, 3);
  given(r, sel->type);
  nnc_node *io = op(NNC_OP_iota, 0, NULL);
  nnc_node_set_int(io, NNC_ATTR_axis, 0);
  given(io, TY("i32", -1, 5));
  nnc_node *tab = src(NNC_OP_param, "emb \"tok\"", TY("f32", -1, 64, 32));
  nnc_node *gt = op(NNC_OP_gather, 2, (nnc_node *[]){tab, io});
  nnc_node_set_int(gt, NNC_ATTR_axis, 0);
  typed(gt);
  nnc_graph_add_output(G, "out", typed(op(NNC_OP_mul, 2, (nnc_node *[]){sel, r})));
  nnc_graph_add_output(G, "rows", gt);
  /* a second program */
  G = nnc_graph_new(m->arena, "predict");
  nnc_module_add_program(m, G);
  nnc_node *x2 = src(NNC_OP_input, "x", TY("f32", -1, 3));
  nnc_graph_add_output(G, "y", typed(op(NNC_OP_exp, 1, &x2)));
  return m;
}

static char *print_to_string(const nnc_module *m) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  nnc_print_module(f, m);
  fclose(f);
  return buf;
}

static char *diag_buf;

/* Parses text as "t.ir"; diagnostics land in diag_buf. */
static nnc_module *parse_text(const char *text, int *nerrors) {
  static nnc_source s;
  s = (nnc_source){"t.ir", text, strlen(text)};
  free(diag_buf);
  size_t len;
  FILE *f = open_memstream(&diag_buf, &len);
  nnc_diags d;
  nnc_diags_init(&d, f);
  nnc_module *m = nnc_parse_module(&s, &d);
  fclose(f);
  *nerrors = d.nerrors;
  return m;
}

static void round_trip(nnc_module *m, const char *must_contain) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  CHECK(nnc_verify_module(m, &d));
  char *t1 = print_to_string(m);
  CHECK_MSG(strstr(t1, must_contain) != NULL, "'%s' not in:\n%s", must_contain, t1);
  int nerr;
  nnc_module *m2 = parse_text(t1, &nerr);
  CHECK_MSG(m2 && nerr == 0, "parse failed:\n%s\n%s", t1, diag_buf);
  if (m2) {
    char *t2 = print_to_string(m2);
    CHECK_MSG(strcmp(t1, t2) == 0, "texts differ:\n%s\n---\n%s", t1, t2);
    free(t2);
    nnc_module_free(m2);
  }
  free(t1);
  nnc_module_free(m);
}

static void test_round_trips(void) {
  round_trip(build_mlp(), "  %2 = matmul(%0, %1) {trans_b=1} : f32[B,100]  # net.nn:5:9\n");
  round_trip(build_mlp(), "param fc1.bias : f32[100] init const(0.1) frozen  # net.nn:2:3\n");
  round_trip(build_mlp(), "  output loss = %14 minimize\n  state steps = %17\n}\n");
  round_trip(build_mlp(), "{value=0.333333333333333");
  round_trip(build_conv(), "{stride=[1,1], padding=[2,2], dilation=[1,1], groups=1} : f32[B,6,28,28]");
  round_trip(build_conv(), "cast(%0) {dtype=f32} : f32[B,1,28,28]");
  round_trip(build_conv(), "maxpool2d_argmax(%3) {stride=[2,2], padding=[0,0], dilation=[1,1], kernel=[2,2]} : u8[B,6,14,14]");
  round_trip(build_seq(), "reshape(%0) : f32[B*16,64]");
  round_trip(build_seq(), "module \"seq model\" batch 64\n");
  round_trip(build_seq(), "param \"emb \\\"tok\\\"\" : f32[64,32] init normal(0, 1e-30) tied \"0.weight\"");
  round_trip(build_seq(), "input \"x\\x09in\" :");
  round_trip(build_seq(), "{lo=[0,0,1], hi=[0,0,0], value=-inf}");
  round_trip(build_seq(), "{cmp=ge} : u8[8,B,36]");
  round_trip(build_seq(), "graph predict {\n  %0 = input \"x\" : f32[3]  # net.nn:1:1\n");
}

/* Locations come back from the comments; nodes without one have none. */
static void test_locations(void) {
  nnc_module *m = build_mlp();
  char *t = print_to_string(m);
  int nerr;
  nnc_module *m2 = parse_text(t, &nerr);
  CHECK(m2 != NULL);
  if (m2) {
    nnc_node *mm = m2->forward->nodes[2], *add = m2->forward->nodes[5];
    CHECK(mm->loc.src && strcmp(mm->loc.src->path, "net.nn") == 0 && mm->loc.line == 5 && mm->loc.col == 9);
    CHECK(add->loc.src == NULL);
    CHECK(m2->params[0].loc.src && m2->params[0].loc.line == 2);
    CHECK(m2->forward->nodes[0]->loc.src == m2->forward->nodes[1]->loc.src); /* one source per path */
    CHECK(m2->params[3].is_state && m2->params[1].frozen && m2->params[2].init.kind == NNC_INIT_NORMAL);
    nnc_module_free(m2);
  }
  free(t);
  nnc_module_free(m);
}

static const char *header = "module m batch 8\nparam w : f32[10,4] init zeros\n";

typedef struct broken {
  const char *body;               /* appended to the header: lines 3.. */
  int line, col;
  const char *message;
} broken;

static const broken broken_texts[] = {
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %1 = frobnicate(%0) : f32[B,10]\n}\n", 5, 8, "unknown op 'frobnicate'"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %1 = exp(%7) : f32[B,10]\n}\n", 5, 12, "undefined value %7"},
  {"graph forward {\n  %0 = input \"x\" : f64[B,10]\n}\n", 4, 20, "unknown dtype 'f64'"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,B]\n}\n", 4, 26, "a second batch dimension"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10\n}\n", 4, 28, "expected ','"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %1 = exp(%0) {colour=1} : f32[B,10]\n}\n", 5, 17, "unknown attribute 'colour'"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %1 = exp(%0) {axis=1} : f32[B,10]\n}\n", 5, 8, "exp: takes no attribute 'axis'"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %1 = cast(%0) {dtype=f16} : f32[B,10]\n}\n", 5, 24, "bad value for attribute 'dtype'"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %1 = exp(%0) : f32[B,11]\n}\n", 5, 18, "exp: type f32[B,11] differs from the shape rule's f32[B,10]"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,784]\n  %1 = param \"w\" : f32[10,4]\n"
   "  %2 = matmul(%0, %1) : f32[B,4]\n}\n", 6, 8, "matmul: inner dimensions differ: f32[B,784] and f32[10,4]"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %0 = exp(%0) : f32[B,10]\n}\n", 5, 3, "value %0 defined twice"},
  {"graph forward {\n  %0 = input \"x\" f32[B,10]\n}\n", 4, 18, "expected ':'"},
  {"graph forward {\n  %0 = input \"x : f32[B,10]\n}\n", 4, 14, "unterminated string"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n", 3, 1, "graph 'forward' is not closed"},
  {"param w : f32[3] init zeros\n", 3, 1, "parameter 'w' declared twice"},
  {"param v : f32[3] init gaussian(0, 1)\n", 3, 23, "expected an initialization"},
  {"param v : f32[3] init zeros tied nothing\n", 3, 34, "tied to unknown parameter 'nothing'"},
  {"param v : f32[1099511627776,1099511627776] init zeros\n", 3, 11, "bad type"},
  {"param v : f32[99999999999999999999] init zeros\n", 3, 15, "integer out of range"},
  {"graph forward {\n  %0 = param \"v\" : f32[10,4]\n}\n", 4, 3, "param 'v' is not a parameter or state of the module"},
  {"graph forward {\n  %0 = param \"w\" : f32[10,5]\n}\n", 4, 3, "param 'w' has type f32[10,5], the module declares f32[10,4]"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  state w = %0\n}\n", 4, 3, "state output 'w' has type f32[B,10]"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  output y = %0 minimize\n  output z = %0 minimize\n}\n", 6, 3,
   "second objective"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  output y = %3\n}\n", 5, 14, "undefined value %3"},
  {"graph forward {\n  %0 = add \"x\" : f32[B,10]\n}\n", 4, 12, "add takes no name"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]  # net.nn:3\n  %1 = exp(%0) : f32[B,10] junk\n}\n", 5, 28,
   "expected end of line"},
  {"graph forward {\n}\ngraph forward {\n}\n", 5, 1, "graph 'forward' defined twice"},
  {"wibble\n", 3, 1, "expected 'param', 'state' or 'graph'"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %1 = reduce_sum(%0) {axes=[1,2,3,4,5,6,7,8,9]} : f32[B]\n}\n", 5, 46,
   "more than 8 values in a list"},
  {"graph forward {\n  %0 = const {value=zero} : f32[]\n}\n", 4, 21, "expected a number"},
  {"graph forward {\n  %0 = input \"x\" : f32[B,10]\n  %1 = exp(%0) : f32[B,10] @\n}\n", 5, 28, "expected end of line"},
};

static void test_broken(void) {
  for (size_t i = 0; i < sizeof broken_texts / sizeof broken_texts[0]; i++) {
    const broken *b = &broken_texts[i];
    char text[1024], where[32];
    snprintf(text, sizeof text, "%s%s", header, b->body);
    snprintf(where, sizeof where, "t.ir:%d:%d: error: ", b->line, b->col);
    int nerr;
    nnc_module *m = parse_text(text, &nerr);
    CHECK_MSG(m == NULL, "case %zu accepted", i);
    nnc_module_free(m);
    CHECK_MSG(nerr == 1, "case %zu: %d errors:\n%s", i, nerr, diag_buf);
    CHECK_MSG(strstr(diag_buf, where) != NULL, "case %zu: want %s in:\n%s", i, where, diag_buf);
    CHECK_MSG(strstr(diag_buf, b->message) != NULL, "case %zu: want '%s' in:\n%s", i, b->message, diag_buf);
  }
}

/* One mistake gives one diagnostic: uses of a failed value are silent; independent mistakes
 * are each reported. */
static void test_no_cascade(void) {
  int nerr;
  nnc_module *m = parse_text("module m batch 8\ngraph forward {\n  %0 = input \"x\" : f32[B,10]\n"
                             "  %1 = sqrt(%0) : f32[B,9]\n  %2 = exp(%1) : f32[B,10]\n  output y = %2\n"
                             "  %3 = bogus(%0) : f32[]\n}\n", &nerr);
  CHECK(m == NULL);
  CHECK_MSG(nerr == 2, "%d errors:\n%s", nerr, diag_buf);
  CHECK(strstr(diag_buf, "t.ir:4:") && strstr(diag_buf, "t.ir:7:"));
  m = parse_text("", &nerr);
  CHECK(m == NULL && nerr == 1 && strstr(diag_buf, "expected 'module'"));
  m = parse_text("module m batch 0\n", &nerr);
  CHECK(m == NULL && strstr(diag_buf, "batch 0 out of range"));
  m = parse_text("# a comment\nmodule m batch 4\n\ngraph forward {\n  # nothing yet\n}\n", &nerr);
  CHECK_MSG(m != NULL && nerr == 0, "%s", diag_buf);
  nnc_module_free(m);
}

/* Truncations and byte changes of a valid text never crash (the sanitizer build checks). */
static void test_mangled(void) {
  nnc_module *m = build_seq();
  char *t = print_to_string(m);
  nnc_module_free(m);
  size_t len = strlen(t);
  char *buf = malloc(len + 1);
  unsigned seed = 12345;
  int accepted = 0;
  for (size_t cut = 0; cut < len; cut += 7) {
    memcpy(buf, t, cut);
    buf[cut] = 0;
    int nerr;
    nnc_module *r = parse_text(buf, &nerr);
    accepted += r != NULL;
    nnc_module_free(r);
  }
  static const char alphabet[] = "%[]{}(),:=*B#\"\\\n 0123456789-eaxzf.";
  for (int round = 0; round < 2000; round++) {
    memcpy(buf, t, len + 1);
    for (int k = 0; k < 3; k++) {
      seed = seed * 1103515245u + 12345u;
      size_t pos = (seed >> 8) % len;
      seed = seed * 1103515245u + 12345u;
      buf[pos] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
    }
    int nerr;
    nnc_module *r = parse_text(buf, &nerr);
    if (r) {
      nnc_diags d;
      nnc_diags_init(&d, NULL);
      CHECK(nnc_verify_module(r, &d));
      char *again = print_to_string(r);
      free(again);
    }
    nnc_module_free(r);
  }
  CHECK(accepted >= 0);
  free(buf);
  free(t);
}

int main(void) {
  test_round_trips();
  test_locations();
  test_broken();
  test_no_cascade();
  test_mangled();
  free(diag_buf);
  return check_summary();
}
