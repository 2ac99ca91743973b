/* The parser: the trees it builds (compared as nnc_ast_dump S-expressions), node locations,
 * and its diagnostics on broken input (how many, where, what they say). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "frontend/frontend.h"

/* One parse, with its diagnostics and its tree's dump captured as text. */
typedef struct {
  nnc_arena *arena;
  nnc_source src;
  nnc_ast *tree;
  int nerrors;
  char *diag_text;
  char *dump;
} parsed;

static parsed parse_n(const char *text, size_t len) {
  parsed p = {.arena = nnc_arena_new()};
  p.src = (nnc_source){"t.nn", text, len};
  size_t dsize, tsize;
  FILE *dout = open_memstream(&p.diag_text, &dsize);
  nnc_diags d;
  nnc_diags_init(&d, dout);
  p.tree = nnc_parse_source(p.arena, &p.src, &d);
  fclose(dout);
  p.nerrors = d.nerrors;
  FILE *tout = open_memstream(&p.dump, &tsize);
  if (p.tree) nnc_ast_dump(tout, p.tree);
  fclose(tout);
  return p;
}

static parsed parse(const char *text) { return parse_n(text, strlen(text)); }

static void done(parsed *p) {
  nnc_arena_free(p->arena);
  free(p->diag_text);
  free(p->dump);
}

/* The example of the language reference, parsed whole. */
static const char *example =
    "# a comment runs to the end of the line\n"
    "hparam hidden = 256                 # top-level hyperparameter\n"
    "\n"
    "model fashion_mlp(x: u8[B, 1, 28, 28], y: i32[B]) {\n"
    "  layer fc1 = Linear(hidden)        # layer declaration\n"
    "  layer fc2 = Linear(10, init=normal(0.0, 0.02), bias=false)\n"
    "  freeze fc1                        # no gradient\n"
    "  h = normalize(x, mean=0.2860, std=0.3530)   # u8 -> f32 inside the graph\n"
    "  h = relu(fc1(flatten(h)))\n"
    "  logits = fc2(h)\n"
    "  minimize cross_entropy(logits, y) # the objective\n"
    "  return logits                     # outputs\n"
    "}\n"
    "\n"
    "layer Block(d, heads=4) {           # a user-defined layer\n"
    "  layer ln = LayerNorm(d)\n"
    "  layer fc = Linear(d)\n"
    "  forward(x) {\n"
    "    return x + fc(ln(x))\n"
    "  }\n"
    "}\n"
    "\n"
    "train {\n"
    "  data = fashion_mnist(\"/usr/share/datasets/fashion-mnist\")\n"
    "  optimizer = Adam(lr=1e-3)\n"
    "  schedule = cosine(warmup=200)\n"
    "  batch = 64\n"
    "  epochs = 5\n"
    "  seed = 0\n"
    "}\n";

static void test_example(void) {
  parsed p = parse(example);
  CHECK_MSG(p.nerrors == 0, "%s", p.diag_text);
  const char *want =
      "(file (hparam hidden 256)"
      " (model fashion_mlp (param x (type u8 B 1 28 28)) (param y (type i32 B))"
      " (block (layer fc1 (call Linear hidden))"
      " (layer fc2 (call Linear 10 (kv init (call normal 0.0 0.02)) (kv bias false)))"
      " (freeze fc1)"
      " (assign h (call normalize x (kv mean 0.286) (kv std 0.353)))"
      " (assign h (call relu (call fc1 (call flatten h))))"
      " (assign logits (call fc2 h))"
      " (minimize (call cross_entropy logits y))"
      " (return logits)))"
      " (layerdef Block (param d) (param heads 4)"
      " (block (layer ln (call LayerNorm d)) (layer fc (call Linear d)))"
      " (forward (param x) (block (return (+ x (call fc (call ln x)))))))"
      " (train (kv data (call fashion_mnist \"/usr/share/datasets/fashion-mnist\"))"
      " (kv optimizer (call Adam (kv lr 0.001))) (kv schedule (call cosine (kv warmup 200)))"
      " (kv batch 64) (kv epochs 5) (kv seed 0)))";
  CHECK_MSG(!strcmp(p.dump, want), "got  %s\nwant %s", p.dump, want);

  /* Locations: where each construct starts; a binary operation at its operator. */
  nnc_ast *file = p.tree;
  CHECK(file && file->kind == AST_FILE && file->list.n == 4);
  if (file && file->list.n == 4) {
    nnc_ast *model = file->list.items[1];
    CHECK(model->kind == AST_MODEL && model->loc.line == 4 && model->loc.col == 1);
    nnc_ast *x = model->list.items[0];
    CHECK(x->kind == AST_PARAM && x->loc.line == 4 && x->loc.col == 19);
    CHECK(x->a->kind == AST_TYPE && x->a->loc.col == 22 && x->a->list.n == 4);
    nnc_ast *fc2 = model->body->list.items[1];
    CHECK(fc2->kind == AST_LAYER && fc2->loc.line == 6 && fc2->loc.col == 3);
    nnc_ast *init = fc2->a->list.items[1];
    CHECK(init->kind == AST_KV && init->loc.col == 26 && init->a->kind == AST_CALL);
    CHECK(init->a->list.items[1]->kind == AST_NUM && !init->a->list.items[1]->is_int &&
          init->a->list.items[1]->num == 0.02);
    nnc_ast *block = file->list.items[2];
    nnc_ast *ret = block->b->body->list.items[0];
    CHECK(ret->kind == AST_RETURN && ret->loc.line == 19 && ret->loc.col == 5);
    CHECK(ret->list.items[0]->kind == AST_BINOP && ret->list.items[0]->loc.col == 14);
    nnc_ast *train = file->list.items[3];
    CHECK(train->kind == AST_TRAIN && train->list.items[1]->a->list.items[0]->a->num == 1e-3);
    CHECK(file->list.items[0]->a->is_int && file->list.items[0]->a->ival == 256);
  }
  done(&p);
}

/* Each snippet is one hparam's expression, or one model's block: (input, expected dump). */
static void check_tree(const char *text, const char *want, int line) {
  parsed p = parse(text);
  CHECK_MSG(p.nerrors == 0 && !strcmp(p.dump, want), "line %d: %s\n  got  %s\n  want %s", line, p.diag_text,
            p.dump, want);
  done(&p);
}

#define TREE(text, want) check_tree(text, want, __LINE__)

static void test_expressions(void) {
  TREE("hparam a = 1 + 2 * 3", "(file (hparam a (+ 1 (* 2 3))))");
  TREE("hparam a = (1 + 2) * 3", "(file (hparam a (* (+ 1 2) 3)))");
  TREE("hparam a = 1 - 2 - 3", "(file (hparam a (- (- 1 2) 3)))");
  TREE("hparam a = a / b @ c * d", "(file (hparam a (* (@ (/ a b) c) d)))");
  TREE("hparam a = -x ** 2", "(file (hparam a (neg (** x 2))))");
  TREE("hparam a = x ** -y ** 2", "(file (hparam a (** x (neg (** y 2)))))");
  TREE("hparam a = - - x", "(file (hparam a (neg (neg x))))");
  TREE("hparam a = a + b < c * d", "(file (hparam a (< (+ a b) (* c d))))");
  TREE("hparam a = a <= b", "(file (hparam a (<= a b)))");
  TREE("hparam a = a > b", "(file (hparam a (> a b)))");
  TREE("hparam a = a >= b", "(file (hparam a (>= a b)))");
  TREE("hparam a = a == b", "(file (hparam a (== a b)))");
  TREE("hparam a = a != b", "(file (hparam a (!= a b)))");
  TREE("hparam a = 1.5 + .5 + 2. + 1e-3 + 3E2 + 7", "(file (hparam a (+ (+ (+ (+ (+ 1.5 0.5) 2.0) 0.001) 300.0) 7)))");
  TREE("hparam a = \"s\\\"q\\\\b\\nc\\td\"", "(file (hparam a \"s\\\"q\\\\b\\nc\\td\"))");
  TREE("hparam a = [1, [2, 3], []]", "(file (hparam a (list 1 (list 2 3) (list))))");
  TREE("hparam a = f()", "(file (hparam a (call f)))");
  TREE("hparam a = f(1, 2,)", "(file (hparam a (call f 1 2)))");
  TREE("hparam a = f(x)(y).z[0]", "(file (hparam a (index (. (call (call f x) y) z) 0)))");
  TREE("hparam a = f(a, k=1, j=g(b=2))", "(file (hparam a (call f a (kv k 1) (kv j (call g (kv b 2))))))");
  TREE("hparam a = x[1:2, :, ::2, 3:, :4, 1:2:3, i]",
       "(file (hparam a (index x (slice 1 2 _) (slice _ _ _) (slice _ _ 2) (slice 3 _ _) (slice _ 4 _)"
       " (slice 1 2 3) i)))");
  TREE("hparam a = x[-1]", "(file (hparam a (index x (neg 1))))");
  TREE("hparam a = f(1,\n  2,\n\n  3)", "(file (hparam a (call f 1 2 3)))");
  TREE("hparam a = [1,\n 2]", "(file (hparam a (list 1 2)))");
  TREE("hparam a = 9223372036854775807", "(file (hparam a 9223372036854775807))");
}

static void test_statements(void) {
  TREE("model m(x: f32[B, 4*B, n], y: i32[]) {}",
       "(file (model m (param x (type f32 B (* 4 B) n)) (param y (type i32)) (block)))");
  TREE("model m() {\n}\n", "(file (model m (block)))");
  TREE("model m() { return x }", "(file (model m (block (return x))))");
  TREE("model m() {\n  a, b = split(x, 2)\n  return a, b\n}",
       "(file (model m (block (assign a b (call split x 2)) (return a b))))");
  TREE("model m() {\n  head.weight = tok.weight\n}",
       "(file (model m (block (assign (. head weight) (. tok weight)))))");
  TREE("model m() {\n  a.b.c = d\n}", "(file (model m (block (assign (. (. a b) c) d))))");
  TREE("model m() {\n  freeze a, b.c\n}", "(file (model m (block (freeze a (. b c)))))");
  TREE("model m() {\n  minimize mse(a, b) + 0.1 * l\n}",
       "(file (model m (block (minimize (+ (call mse a b) (* 0.1 l))))))");
  TREE("model m() {\n  for t in 0..T {\n    h = cell(x[t], h)\n  }\n}",
       "(file (model m (block (for t 0 T (block (assign h (call cell (index x t) h)))))))");
  TREE("model m() {\n  for i in a+1..n*2 { }\n}", "(file (model m (block (for i (+ a 1) (* n 2) (block)))))");
  TREE("model m() { a = 1; b = 2;; return a }",
       "(file (model m (block (assign a 1) (assign b 2) (return a))))");
  TREE("model m() {\n\n\n  a = 1   # comment\n  # comment line\n\n  return a\n\n}\n\n",
       "(file (model m (block (assign a 1) (return a))))");
  TREE("layer L() {\n  forward() {\n    return 1\n  }\n}",
       "(file (layerdef L (block) (forward (block (return 1)))))");
  TREE("layer L(a, b=2, c=f(1)) {\n  layer x = Linear(a)\n\n  forward(p, q) { return x(p) + q }\n\n}",
       "(file (layerdef L (param a) (param b 2) (param c (call f 1)) (block (layer x (call Linear a)))"
       " (forward (param p) (param q) (block (return (+ (call x p) q))))))");
  TREE("train {}", "(file (train))");
  TREE("train { batch = 32; epochs = 1 }", "(file (train (kv batch 32) (kv epochs 1)))");
  TREE("hparam a = 1; hparam b = 2", "(file (hparam a 1) (hparam b 2))");
  TREE("\n\nhparam a = 1\n\n\nhparam b = 2", "(file (hparam a 1) (hparam b 2))");
  TREE("hparam a = 1\r\nhparam b = 2\r\n", "(file (hparam a 1) (hparam b 2))");
  TREE("", "(file)");
  TREE("# only a comment", "(file)");
  TREE("\n\n# a\n\n# b\n", "(file)");
}

/* Broken input: the number of errors, where the first one is, and a part of its message. */
typedef struct {
  const char *text;
  int nerrors;
  int line, col;
  const char *msg;
} broken_case;

static const broken_case broken[] = {
    /* a missing ')' at a line end is reported just after the line's last token */
    {"model m(x: f32[B]) {\n  h = relu(fc1(x)\n  logits = fc2(h)\n  return logits\n}\n", 1, 2, 18, "expected ')'"},
    {"model m(x: f32[B]) {\n  h = f(x y)\n}\n", 1, 2, 11, "expected ')'"},
    {"model m(x: f32[B] {\n  return x\n}\n", 1, 1, 19, "expected ')'"},
    {"hparam a = x[1, 2\nhparam b = 3\n", 1, 1, 18, "expected ']'"},
    /* a missing '}' */
    {"model m(x: f32[B]) {\n  h = x\n", 1, 2, 8, "expected '}'"},
    {"model m(x: f32[B]) {\n  h = x\n\nmodel n(y: f32[B]) {\n  return y\n}\n", 1, 2, 8, "expected '}'"},
    {"layer L() {\n  forward(x) {\n    return x\n  }\n", 1, 4, 4, "expected '}'"},
    /* stray tokens */
    {"model m(x: f32[B]) {\n  h = x )\n}\n", 1, 2, 9, "unexpected ')'"},
    {"model m(x: f32[B]) {\n  h = x y\n}\n", 1, 2, 9, "unexpected 'y'"},
    {"}\n", 1, 1, 1, "unexpected '}'"},
    {"modle m(x: f32[B]) {\n  layer fc = Linear(3)\n  return fc(x)\n}\nhparam k = 3\n", 1, 1, 1, "unexpected 'modle'"},
    {"model m() {\n  for i in 0..3) {\n    h = x\n    g = h\n  }\n  return x\n}\n", 1, 2, 16, "unexpected ')'"},
    {"model m(x: f32[B]) {\n  h = x $ 2\n}\n", 1, 2, 9, "unexpected character '$'"},
    {"hparam a = b ! c\n", 1, 1, 14, "unexpected character '!'"},
    {"hparam a = caf\xc3\xa9\n", 1, 1, 15, "unexpected byte 0xc3"},
    /* missing pieces */
    {"model (x: f32[B]) {\n  layer fc = Linear(3)\n  return fc(x)\n}\n", 1, 1, 7, "expected a name"},
    {"model m(x: f32[B]) {\n  h = x +\n  return h\n}\n", 1, 2, 10, "expected an expression"},
    {"hparam a 3\n", 1, 1, 10, "expected '='"},
    {"model m(x) {}\n", 1, 1, 10, "expected ':'"},
    {"model m() {\n  layer fc Linear(3)\n}\n", 1, 2, 12, "expected '='"},
    {"train {\n  batch = \n  epochs = 5\n}\n", 1, 2, 11, "expected an expression"},
    {"hparam a = 1 < 2 < 3\n", 1, 1, 18, "unexpected '<'"},
    /* lexical errors */
    {"model m() {\n  s = \"abc\n  y = 3\n}\n", 1, 2, 7, "unterminated string"},
    {"hparam s = \"abc", 1, 1, 12, "unterminated string"},
    {"hparam s = \"a\\qb\"\n", 1, 1, 14, "unknown escape sequence '\\q'"},
    {"hparam n = 99999999999999999999\n", 1, 1, 12, "integer '99999999999999999999' is too large"},
    {"hparam n = 1e999\n", 1, 1, 12, "number '1e999' is too large"},
    {"hparam n = 1e\n", 1, 1, 12, "invalid number '1e'"},
    {"hparam n = 12abc\n", 1, 1, 12, "invalid number '12abc'"},
    /* structure */
    {"hparam a = f(k=1, 2)\n", 1, 1, 19, "positional argument after a keyword argument"},
    {"layer L(d) {\n  layer fc = Linear(d)\n}\n", 1, 1, 1, "layer 'L' has no forward"},
    {"layer L() {\n  forward() { return 1 }\n  forward() { return 2 }\n}\n", 1, 3, 3, "layer 'L' has a second forward"},
    /* two independent mistakes, two messages */
    {"model m(x: f32[B]) {\n  h = x )\n  g = h\n  y = h $ 3\n}\n", 2, 2, 9, "unexpected ')'"},
    {"hparam a = (1\nhparam b = 2\nmodel m() {\n  h = x +\n}\n", 2, 1, 14, "expected ')'"},
    {"model a() {\n  x = = 1\n}\nmodel b() {\n  y = )\n}\n", 2, 2, 7, "expected an expression"},
};

/* "t.nn:LINE:COL: error: MSG" of the first diagnostic. */
static bool first_error(const char *text, int *line, int *col, const char **msg) {
  if (!text || sscanf(text, "t.nn:%d:%d: error: ", line, col) != 2) return false;
  *msg = strstr(text, "error: ") + 7;
  return true;
}

static void test_broken(void) {
  for (size_t i = 0; i < sizeof broken / sizeof *broken; i++) {
    const broken_case *c = &broken[i];
    parsed p = parse(c->text);
    int line = 0, col = 0;
    const char *msg = "";
    bool ok = first_error(p.diag_text, &line, &col, &msg);
    CHECK_MSG(ok && p.nerrors == c->nerrors && line == c->line && col == c->col && !strncmp(msg, c->msg, strlen(c->msg)),
              "case %zu: want %d error(s), first %d:%d '%s'; got %d:\n%s", i, c->nerrors, c->line, c->col, c->msg,
              p.nerrors, p.diag_text);
    done(&p);
  }
  /* A missing closing bracket comes with a note on the bracket left open. */
  parsed p = parse(broken[0].text);
  CHECK_MSG(strstr(p.diag_text, "t.nn:2:11: note: to match this '('"), "%s", p.diag_text);
  done(&p);
  p = parse("model m() {\n  for i in 0..3 {\n    h = x\n  return h\n}\n");
  CHECK_MSG(p.nerrors == 1 && strstr(p.diag_text, "t.nn:5:2: error: expected '}'") &&
                strstr(p.diag_text, "t.nn:1:11: note: to match this '{'"),
            "%s", p.diag_text);
  done(&p);
}

/* Hostile input: each gives one clean diagnostic, never a crash, a hang or a deep tree. */
static char *repeat(const char *prefix, const char *unit, int n, const char *suffix_unit, int m) {
  size_t len = strlen(prefix) + strlen(unit) * (size_t)n + strlen(suffix_unit) * (size_t)m + 1;
  char *s = malloc(len), *o = s;
  o += sprintf(o, "%s", prefix);
  for (int i = 0; i < n; i++) o += sprintf(o, "%s", unit);
  for (int i = 0; i < m; i++) o += sprintf(o, "%s", suffix_unit);
  return s;
}

static void check_one_error(char *text, const char *msg, int line) {
  parsed p = parse(text);
  CHECK_MSG(p.nerrors == 1 && !p.tree && strstr(p.diag_text, msg), "line %d: %d errors:\n%.300s", line, p.nerrors,
            p.diag_text);
  done(&p);
  free(text);
}

static void test_limits(void) {
  check_one_error(repeat("hparam a = ", "(", 10000, ")", 10000), "nested too deeply", __LINE__);
  check_one_error(repeat("hparam a = ", "[", 10000, "]", 10000), "nested too deeply", __LINE__);
  check_one_error(repeat("hparam a = ", "f(", 10000, ")", 10000), "nested too deeply", __LINE__);
  check_one_error(repeat("model m() {\n", "for i in 0..3 {\n", 5000, "}\n", 5001), "nested too deeply", __LINE__);
  check_one_error(repeat("hparam a = x", "+x", 100000, "", 0), "nested too deeply", __LINE__);
  check_one_error(repeat("hparam a = ", "-", 100000, "x", 1), "nested too deeply", __LINE__);
  check_one_error(repeat("hparam a = x", "**x", 100000, "", 0), "nested too deeply", __LINE__);
  check_one_error(repeat("hparam a = x", ".y", 100000, "", 0), "nested too deeply", __LINE__);

  /* Just within the bounds: 200 nested calls parse. */
  char *ok = repeat("hparam a = ", "f(", 200, ")", 200);
  parsed p = parse(ok);
  CHECK_MSG(p.nerrors == 0 && p.tree, "%.300s", p.diag_text);
  done(&p);
  free(ok);

  /* A NUL byte, control bytes, a file over the size limit. */
  p = parse_n("hparam a = 1\n\0hparam b = 2\n", 26);
  CHECK_MSG(p.nerrors == 1 && strstr(p.diag_text, "t.nn:2:1: error: NUL byte"), "%s", p.diag_text);
  done(&p);
  p = parse("hparam a = \x01\x02\n");
  CHECK_MSG(p.nerrors == 1 && strstr(p.diag_text, "control character 0x01"), "%s", p.diag_text);
  done(&p);
  nnc_source big = {"big.nn", "", (size_t)NNC_MAX_SOURCE_BYTES + 1};
  nnc_arena *arena = nnc_arena_new();
  nnc_diags d;
  nnc_diags_init(&d, NULL);
  CHECK(nnc_parse_source(arena, &big, &d) == NULL && d.nerrors == 1);
  nnc_arena_free(arena);

  /* Random bytes: some errors, no crash (sanitizer builds check the rest). */
  srand(1);
  for (int round = 0; round < 200; round++) {
    char buf[512];
    int n = 1 + rand() % (int)sizeof buf;
    for (int i = 0; i < n; i++) buf[i] = (char)(rand() % 256);
    p = parse_n(buf, (size_t)n);
    CHECK(p.nerrors >= 1 || p.tree);
    done(&p);
  }
  /* Random tokens of the language: errors or a tree, never both missing. */
  static const char *const toks[] = {"model ", "layer ", "forward", "train", "hparam ", "for ", " in ", "return ",
                                     "x", "1", "2.5", "\"s\"", "(", ")", "[", "]", "{", "}", "=", ",", ".", "..",
                                     ":", "+", "*", "**", "-", "\n", ";", " "};
  for (int round = 0; round < 500; round++) {
    char buf[2048] = "";
    int n = rand() % 120;
    for (int i = 0; i < n; i++) strcat(buf, toks[rand() % (int)(sizeof toks / sizeof *toks)]);
    p = parse(buf);
    CHECK_MSG(p.nerrors >= 1 || p.tree, "%s", buf);
    done(&p);
  }
}

int main(void) {
  test_example();
  test_expressions();
  test_statements();
  test_broken();
  test_limits();
  return check_summary();
}
