/* Elaboration: every model file, parameter names and shapes, B_max, the train block, modes,
 * --set overrides, user layers, init, freeze, weight tying, and that errors give NULL. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "frontend/frontend.h"

typedef struct elab_run {
  nnc_arena *ast_arena;
  nnc_source src;
  nnc_diags d;
  char *diag_text;
  size_t diag_len;
  FILE *diag_file;
  nnc_module *m;
} elab_run;

static void run_text(elab_run *r, const char *path, const char *text, const nnc_elab_opts *o) {
  memset(r, 0, sizeof *r);
  r->diag_file = open_memstream(&r->diag_text, &r->diag_len);
  nnc_diags_init(&r->d, r->diag_file);
  r->src = (nnc_source){.path = path, .text = text, .len = strlen(text)};
  r->ast_arena = nnc_arena_new();
  nnc_ast *ast = nnc_parse_source(r->ast_arena, &r->src, &r->d);
  r->m = ast && r->d.nerrors == 0 ? nnc_elaborate(ast, o, &r->d) : NULL;
  if (r->m && !nnc_verify_module(r->m, &r->d)) CHECK_MSG(false, "%s does not verify", path);
  fflush(r->diag_file);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = 0;
  fclose(f);
  return s;
}

static char *file_text;

static void run_file(elab_run *r, const char *path, const nnc_elab_opts *o) {
  free(file_text);
  file_text = slurp(path);
  CHECK_MSG(file_text != NULL, "cannot read %s", path);
  run_text(r, path, file_text ? file_text : "", o);
}

static void done(elab_run *r) {
  nnc_module_free(r->m);
  nnc_arena_free(r->ast_arena);
  fclose(r->diag_file);
  free(r->diag_text);
}

static const nnc_param *param(const nnc_module *m, const char *name) {
  int i = nnc_module_find_param(m, name);
  return i < 0 ? NULL : &m->params[i];
}

static bool param_is(const nnc_module *m, const char *name, const char *type) {
  const nnc_param *p = param(m, name);
  char buf[128];
  if (!p) return false;
  nnc_type_str(&p->type, buf, sizeof buf);
  if (strcmp(buf, type) != 0) fprintf(stderr, "%s is %s, expected %s\n", name, buf, type);
  return strcmp(buf, type) == 0;
}

static int count_op(const nnc_graph *g, nnc_op op) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) n += g->nodes[i]->op == op;
  return n;
}

static const nnc_node *input_named(const nnc_graph *g, const char *name) {
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i]->op == NNC_OP_input && strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
  return NULL;
}

static void test_every_model(void) {
  static const char *const models[] = {"mnist_conv", "xor_mlp", "cifar_cnn", "fashion_mlp", "fashion_cnn", "lenet",
                                       "fashion_bn_cnn"};
  for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
    char path[128];
    snprintf(path, sizeof path, "models/%s.nn", models[i]);
    for (int mode = NNC_MODE_TRAIN; mode <= NNC_MODE_PREDICT; mode++) {
      elab_run r;
      run_file(&r, path, &(nnc_elab_opts){.mode = (nnc_mode)mode});
      CHECK_MSG(r.m != NULL && r.d.nerrors == 0 && r.d.nwarnings == 0, "%s (mode %d): %s", path, mode,
                r.diag_text ? r.diag_text : "");
      if (r.m) {
        CHECK(strcmp(r.m->name, models[i]) == 0);
        CHECK(r.m->train.present);
        CHECK((r.m->forward->loss >= 0) == (mode != NNC_MODE_PREDICT));
      }
      done(&r);
    }
  }
}

static void test_lenet(void) {
  elab_run r;
  run_file(&r, "models/lenet.nn", &(nnc_elab_opts){0});
  nnc_module *m = r.m;
  CHECK(m != NULL);
  if (m) {
    CHECK(param_is(m, "conv1.weight", "f32[6,1,5,5]"));
    CHECK(param_is(m, "conv1.bias", "f32[6]"));
    CHECK(param_is(m, "conv2.weight", "f32[16,6,5,5]"));
    CHECK(param_is(m, "fc1.weight", "f32[120,400]"));
    CHECK(param_is(m, "fc2.weight", "f32[84,120]"));
    CHECK(param_is(m, "fc3.bias", "f32[10]"));
    CHECK(m->nparams == 10);
    CHECK(strcmp(m->params[0].name, "conv1.weight") == 0 && strcmp(m->params[9].name, "fc3.bias") == 0);
    /* PyTorch's default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 1*5*5 */
    const nnc_param *w = param(m, "conv1.weight");
    CHECK(w && w->init.kind == NNC_INIT_UNIFORM && fabs(w->init.b - 0.2) < 1e-12 && fabs(w->init.a + 0.2) < 1e-12);
    CHECK(m->batch_max == 64);
    CHECK(strcmp(m->train.optimizer, "Adam") == 0 && m->train.lr == 1e-3 && m->train.beta2 == 0.999 && m->train.eps == 1e-8);
    CHECK(strcmp(m->train.schedule, "cosine") == 0 && m->train.sched_warmup == 200);
    CHECK(m->train.epochs == 5 && strcmp(m->train.data_kind, "fashion_mnist") == 0);
    CHECK(strcmp(m->train.data_path, "/usr/share/datasets/fashion-mnist") == 0);
    const nnc_graph *g = m->forward;
    CHECK(g->noutputs == 2 && strcmp(g->outputs[g->loss].name, "loss") == 0);
    CHECK(strcmp(g->outputs[1].name, "logits") == 0);
    CHECK(count_op(g, NNC_OP_conv2d) == 2 && count_op(g, NNC_OP_maxpool2d) == 2 && count_op(g, NNC_OP_param) == 10);
    CHECK(count_op(g, NNC_OP_nbatch) == 1);
  }
  done(&r);
}

static void test_batch_and_overrides(void) {
  nnc_override ov[] = {{"hidden", "128", false}, {"epochs", "3", false}, {"lr", "0.01", false}, {"nothing", "1", false}};
  elab_run r;
  run_file(&r, "models/fashion_mlp.nn", &(nnc_elab_opts){.overrides = ov, .noverrides = 4, .batch = 32});
  CHECK(r.m != NULL);
  if (r.m) {
    CHECK(param_is(r.m, "fc1.weight", "f32[128,784]"));
    CHECK(r.m->batch_max == 32 && r.m->train.batch == 64);
    CHECK(r.m->train.epochs == 3 && r.m->train.lr == 0.01);
  }
  CHECK(ov[0].used && ov[1].used && ov[2].used && !ov[3].used);
  done(&r);

  nnc_override bad[] = {{"hidden", "lots", false}};
  run_file(&r, "models/fashion_mlp.nn", &(nnc_elab_opts){.overrides = bad, .noverrides = 1});
  CHECK(r.m == NULL && strstr(r.diag_text, "--set hidden=lots: not a number"));
  done(&r);

  run_file(&r, "models/cifar_cnn.nn", &(nnc_elab_opts){0});
  CHECK(r.m && r.m->batch_max == 128 && strcmp(r.m->train.data_kind, "cifar10") == 0);
  CHECK(r.m && r.m->train.momentum == 0.9 && r.m->train.weight_decay == 5e-4);
  done(&r);

  run_text(&r, "nobatch.nn", "model m(x: f32[B*4, 3]) {\n  return x\n}\n", &(nnc_elab_opts){0});
  CHECK(r.m && r.m->batch_max == 64 && !r.m->train.present);
  if (r.m) {
    const nnc_node *x = input_named(r.m->forward, "x");
    CHECK(x && x->type.batch_axis == 0 && x->type.dims[0] == 4);
  }
  done(&r);
}

static void test_modes(void) {
  elab_run r;
  run_file(&r, "models/fashion_bn_cnn.nn", &(nnc_elab_opts){.mode = NNC_MODE_TRAIN});
  CHECK(r.m != NULL);
  if (r.m) {
    const nnc_graph *g = r.m->forward;
    CHECK(g->nstate == 6);
    CHECK(strcmp(g->state_outputs[0].name, "bn1.running_mean") == 0);
    CHECK(strcmp(g->state_outputs[2].name, "bn1.num_batches_tracked") == 0);
    CHECK(count_op(g, NNC_OP_rng_uniform) == 2);
    CHECK(count_op(g, NNC_OP_scalar) == 2);
    const nnc_param *nbt = param(r.m, "bn2.num_batches_tracked");
    CHECK(nbt && nbt->is_state && nbt->type.dtype == NNC_I32 && nbt->type.rank == 0);
    CHECK(param(r.m, "bn1.running_var")->is_state && !param(r.m, "bn1.weight")->is_state);
    CHECK(param(r.m, "conv1.bias") == NULL);
    CHECK(strcmp(r.m->train.optimizer, "AdamW") == 0 && r.m->train.weight_decay == 0.01);
    CHECK(strcmp(r.m->train.schedule, "step") == 0 && r.m->train.sched_step == 2 && r.m->train.sched_gamma == 0.5);
  }
  done(&r);

  run_file(&r, "models/fashion_bn_cnn.nn", &(nnc_elab_opts){.mode = NNC_MODE_EVAL});
  CHECK(r.m && r.m->forward->nstate == 0 && count_op(r.m->forward, NNC_OP_rng_uniform) == 0);
  CHECK(r.m && r.m->forward->loss >= 0 && input_named(r.m->forward, "y"));
  done(&r);

  run_file(&r, "models/fashion_bn_cnn.nn", &(nnc_elab_opts){.mode = NNC_MODE_PREDICT});
  CHECK(r.m && r.m->forward->loss < 0 && r.m->forward->noutputs == 1);
  CHECK(r.m && input_named(r.m->forward, "x") && !input_named(r.m->forward, "y"));
  done(&r);
}

static const char user_layers[] =
    "hparam d = 16\n"
    "layer Block(d, hidden=2) {\n"
    "  layer ln = LayerNorm(d)\n"
    "  layer fc = Linear(d * hidden, init=normal(0.02))\n"
    "  layer out = Linear(d, bias=false, init=zeros)\n"
    "  forward(x) {\n"
    "    return x + out(gelu(fc(ln(x))))\n"
    "  }\n"
    "}\n"
    "model m(t: i32[B, 8], y: i32[B, 8]) {\n"
    "  layer tok = Embedding(100, d)\n"
    "  layer b0 = Block(d)\n"
    "  layer b1 = Block(d, hidden=4)\n"
    "  layer head = Linear(100, bias=false, init=xavier_uniform)\n"
    "  head.weight = tok.weight\n"
    "  freeze b0\n"
    "  h = b1(b0(tok(t)))\n"
    "  logits = transpose(head(h), 1, 2)\n"
    "  minimize cross_entropy(logits, y)\n"
    "  return softmax(logits, dim=1)\n"
    "}\n";

static void test_user_layers(void) {
  elab_run r;
  run_text(&r, "user.nn", user_layers, &(nnc_elab_opts){0});
  CHECK_MSG(r.m != NULL, "%s", r.diag_text);
  if (r.m) {
    CHECK(param_is(r.m, "b0.ln.weight", "f32[16]"));
    CHECK(param_is(r.m, "b0.fc.weight", "f32[32,16]"));
    CHECK(param_is(r.m, "b1.fc.weight", "f32[64,16]"));
    CHECK(param_is(r.m, "b1.out.weight", "f32[16,64]"));
    CHECK(param(r.m, "b1.out.bias") == NULL);
    CHECK(param(r.m, "b0.fc.weight")->frozen && param(r.m, "b0.ln.bias")->frozen && !param(r.m, "b1.fc.weight")->frozen);
    const nnc_param *fc = param(r.m, "b1.fc.weight");
    CHECK(fc->init.kind == NNC_INIT_NORMAL && fc->init.a == 0 && fc->init.b == 0.02);
    CHECK(param(r.m, "b1.out.weight")->init.kind == NNC_INIT_ZEROS);
    const nnc_param *tok = param(r.m, "tok.weight"), *head = param(r.m, "head.weight");
    CHECK(tok && tok->init.kind == NNC_INIT_NORMAL && tok->init.b == 1);
    CHECK(head && head->tied_to == nnc_module_find_param(r.m, "tok.weight"));
    CHECK(strcmp(r.m->params[0].name, "tok.weight") == 0);
    /* the graph reads the tied weight once, through tok.weight */
    int reads = 0;
    for (int i = 0; i < r.m->forward->nnodes; i++) {
      const nnc_node *n = r.m->forward->nodes[i];
      if (n->op == NNC_OP_param && strstr(n->name, ".weight") && (strcmp(n->name, "tok.weight") == 0 || strcmp(n->name, "head.weight") == 0)) reads++;
    }
    CHECK(reads == 1);
    CHECK(count_op(r.m->forward, NNC_OP_erf) == 2 && count_op(r.m->forward, NNC_OP_gather) == 1);
  }
  done(&r);
}

static void test_init_schemes(void) {
  elab_run r;
  run_text(&r, "init.nn",
           "model m(x: f32[B, 4]) {\n"
           "  layer a = Linear(3, init=kaiming_normal)\n"
           "  layer b = Linear(3, init=uniform(-0.5, 0.5))\n"
           "  layer c = Conv2d(4, 2, 3, init=xavier_normal(gain=2.0))\n"
           "  return b(a(x)) + 1\n"
           "}\n",
           &(nnc_elab_opts){0});
  CHECK(r.m && r.d.nwarnings == 1 && strstr(r.diag_text, "warning: layer 'c' is never used"));
  if (r.m) {
    const nnc_param *a = param(r.m, "a.weight"), *b = param(r.m, "b.weight"), *c = param(r.m, "c.weight");
    CHECK(a->init.kind == NNC_INIT_NORMAL && fabs(a->init.b - sqrt(2.0 / 4)) < 1e-12);
    CHECK(b->init.kind == NNC_INIT_UNIFORM && b->init.a == -0.5 && b->init.b == 0.5);
    /* xavier: gain * sqrt(2 / (fan_in + fan_out)), fans 2*9 and 4*9 */
    CHECK(c && c->init.kind == NNC_INIT_NORMAL && fabs(c->init.b - 2.0 * sqrt(2.0 / 54)) < 1e-12);
    CHECK(param(r.m, "a.bias")->init.kind == NNC_INIT_UNIFORM && fabs(param(r.m, "a.bias")->init.b - 0.5) < 1e-12);
  }
  done(&r);
}

/* Each error gives NULL and one error (the lit tests check the messages). */
static void test_errors(void) {
  static const char *const bad[] = {
      "",
      "model m(x: f32[B, 4]) {\n  return relu(x, 1)\n}\n",
      "model m(x: f32[B, 4], y: i32[B]) {\n  return relu(y)\n}\n",
      "model m(x: f32[B, 0]) {\n  return x\n}\n",
      "model m(x: f32[B, B]) {\n  return x\n}\n",
      "model m(x: f32[65536, 65536, 65536]) {\n  return x\n}\n",
      "hparam a = b\nhparam b = a\nmodel m(x: f32[B, a]) {\n  return x\n}\n",
      "model m(x: f32[B, 4]) {\n  layer f = Linear(2)\n  minimize sum(f(x))\n}\ntrain {\n  batch = 8\n  epoch = 3\n}\n",
      "model m(x: f32[B, 4]) {\n  minimize sum(x)\n  minimize sum(x)\n}\n",
      "model m(x: f32[B, 4]) {\n  return reshape(x, [3, -1])\n}\n",
      "model m(x: f32[B, 4]) {\n  return maxpool2d(x, 2)\n}\n",
      "model m(x: f32[B, 4]) {\n  for i in 0..3 {\n    layer f = Linear(4)\n  }\n  return x\n}\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    elab_run r;
    run_text(&r, "bad.nn", bad[i], &(nnc_elab_opts){0});
    CHECK_MSG(r.m == NULL && r.d.nerrors >= 1, "case %zu should fail", i);
    CHECK_MSG(r.d.nerrors == 1, "case %zu: %d errors:\n%s", i, r.d.nerrors, r.diag_text);
    done(&r);
  }
}

static void test_ops(void) {
  elab_run r;
  run_text(&r, "ops.nn",
           "model m(x: f32[B, 3, 8, 8], t: f32[B, 10]) {\n"
           "  a = avgpool2d(x, 2)\n"
           "  v = view(a, [-1, 48])\n"
           "  w = reshape(v, [B, 4, 12])\n"
           "  s = mean(w, dim=[1, 2], keepdim=true)\n"
           "  p = permute(w, [0, 2, 1]) @ w\n"
           "  c = concat([w, w], dim=2)\n"
           "  m = max(c, dim=-1)\n"
           "  l = log_softmax(t) + tanh(t) * 2 - exp(t) / sqrt(abs(t) + 1)\n"
           "  k = cast(t > 0.5, f32)\n"
           "  minimize mse(t, k) + bce(sigmoid(t), k) + mean(l) + sum(p) + sum(m) + sum(s)\n"
           "  return normalize(x, mean=[0.1, 0.2, 0.3], std=[1, 2, 3]), gelu(t, approximate=\"tanh\")\n"
           "}\n",
           &(nnc_elab_opts){0});
  CHECK_MSG(r.m != NULL, "%s", r.diag_text);
  if (r.m) {
    const nnc_graph *g = r.m->forward;
    CHECK(g->noutputs == 3 && strcmp(g->outputs[1].name, "output0") == 0);
    CHECK(count_op(g, NNC_OP_matmul) == 1 && count_op(g, NNC_OP_conv2d) == 1 && count_op(g, NNC_OP_cmp) == 1);
  }
  done(&r);
}

int main(void) {
  test_every_model();
  test_lenet();
  test_batch_and_overrides();
  test_modes();
  test_user_layers();
  test_init_schemes();
  test_errors();
  test_ops();
  free(file_text);
  return check_summary();
}
