/* gradcheck_layers: the gradients of every sequence layer and op (RNN, LSTM, GRU,
 * MultiheadAttention, LayerNorm, GELU, Embedding, indexing, stack, split, where, masked_fill,
 * tril, cross_entropy over [B,T,V]) against central differences in f64 through the reference
 * interpreter (DESIGN §12).
 *
 * Each case is a small model whose objective is a weighted sum of the layer's outputs. For every
 * parameter and f32 input, a random direction v is checked: (L(x + h v) - L(x - h v)) / 2h
 * against <grad, v>, with |a - b| <= atol + rtol |b|. Cases stay off kinks (no relu). */
#include <math.h>

#include "check.h"
#include "seq_harness.h"

#define STEP 1e-6
#define ATOL 1e-6
#define RTOL 1e-5
#define BATCH 3

static uint64_t rng_state = 0x2545F4914F6CDD1Du;

static double uniform(double lo, double hi) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return lo + (hi - lo) * (double)(rng_state >> 11) / 9007199254740992.0;
}

typedef struct lcase {
  const char *name;
  const char *text;
  int vocab;                      /* i32 inputs are drawn from [0, vocab) */
} lcase;

static const lcase cases[] = {
    {"rnn_2layers_h0", "model t(x: f32[B, 4, 3], h0: f32[2, B, 5], r: f32[B, 4, 5]) {\n"
                       "  layer rnn = RNN(5, num_layers=2, batch_first=true)\n"
                       "  out, hn = rnn(x, h0)\n"
                       "  minimize sum(out * r) + sum(hn * hn)\n}\n", 0},
    {"lstm_h0_c0", "model t(x: f32[4, B, 3], h0: f32[1, B, 5], c0: f32[1, B, 5], r: f32[4, B, 5]) {\n"
                   "  layer lstm = LSTM(3, 5)\n"
                   "  out, hn, cn = lstm(x, h0, c0)\n"
                   "  minimize sum(out * r) + sum(cn * hn)\n}\n", 0},
    {"gru_2layers", "model t(x: f32[B, 4, 3], r: f32[B, 4, 5]) {\n"
                    "  layer gru = GRU(3, 5, num_layers=2, batch_first=true)\n"
                    "  out, hn = gru(x)\n"
                    "  minimize sum(out * r) + sum(hn)\n}\n", 0},
    {"mha_causal", "model t(x: f32[B, 5, 8], r: f32[B, 5, 8]) {\n"
                   "  layer attn = MultiheadAttention(8, 2, batch_first=true, causal=true)\n"
                   "  minimize sum(attn(x) * r)\n}\n", 0},
    {"mha_cross_mask", "model t(q: f32[B, 3, 8], kv: f32[B, 4, 8], r: f32[B, 3, 8]) {\n"
                       "  layer attn = MultiheadAttention(8, 4, batch_first=true)\n"
                       "  m = tril(ones([3, 4])) == 0\n"
                       "  minimize sum(attn(q, kv, kv, m) * r)\n}\n", 0},
    {"layernorm_gelu", "model t(x: f32[B, 4, 6], r: f32[B, 4, 6]) {\n"
                       "  layer ln = LayerNorm(6)\n"
                       "  minimize sum(gelu(ln(x)) * r) + sum(gelu(x, approximate=\"tanh\") * r)\n}\n", 0},
    {"embedding_ce", "model t(x: i32[B, 5], y: i32[B, 5]) {\n"
                     "  layer emb = Embedding(7, 4)\n"
                     "  layer head = Linear(7)\n"
                     "  minimize cross_entropy(head(emb(x)), y)\n}\n", 7},
    {"slices_loop_stack", "model t(x: f32[B, 6, 4], r: f32[B, 3, 4]) {\n"
                          "  outs = []\n"
                          "  h = x[:, 0]\n"
                          "  for t in 1..4 {\n"
                          "    h = tanh(h * x[:, -t] + x[:, t, 0:])\n"
                          "    outs = outs + [h]\n"
                          "  }\n"
                          "  y = stack(outs, 1)\n"
                          "  a, b = split(y, [1, 3], -1)\n"
                          "  z = concat([b, a], 2)\n"
                          "  w = where(z > 0.2, z, z * z)\n"
                          "  minimize sum(w * r) + sum(masked_fill(z, tril(ones([3, 4])) == 1, 0.0))\n}\n", 0},
    {"arange_positions", "model t(x: f32[B, 5, 4], r: f32[B, 5, 4]) {\n"
                         "  layer pos = Embedding(5, 4)\n"
                         "  minimize sum((x + pos(arange(5))) * r)\n}\n", 0},
};

static bool check_case(const lcase *k) {
  sh_model s;
  if (!sh_compile(&s, k->name, k->text, NNC_MODE_EVAL, BATCH, NULL, 0)) {
    printf("%-20s does not compile\n", k->name);
    sh_free(&s);
    return false;
  }
  for (int i = 0; i < s.nbind; i++) {
    nnc_node *b = s.bind[i];
    s.val[i] = nnc_tensor_alloc(b->type, BATCH, true);
    for (int64_t j = 0; j < nnc_tensor_elements(&s.val[i]); j++) {
      if (b->type.dtype == NNC_F32) ((double *)s.val[i].data)[j] = b->op == NNC_OP_param ? uniform(-0.6, 0.6) : uniform(-1, 1);
      else ((int32_t *)s.val[i].data)[j] = (int32_t)floor(uniform(0, k->vocab));
    }
  }
  int nout = s.g->noutputs;
  nnc_tensor *outs = calloc((size_t)nout, sizeof *outs), *probe = calloc((size_t)nout, sizeof *probe);
  bool ok = sh_run(&s, BATCH, NNC_INTERP_F64, outs);
  for (int w = 0; ok && w < s.nwrt; w++) {
    int j = 0;
    while (s.bind[j] != s.wrt[w]) j++;
    nnc_tensor *x = &s.val[j], *g = &outs[s.first_grad + w];
    int64_t cnt = nnc_tensor_elements(x);
    double *xv = x->data, *v = malloc(sizeof(double) * (size_t)cnt), dot = 0, l[2];
    for (int64_t e = 0; e < cnt; e++) v[e] = uniform(-1, 1), dot += nnc_tensor_get(g, e) * v[e];
    for (int side = 0; side < 2 && ok; side++) {
      for (int64_t e = 0; e < cnt; e++) xv[e] += (side ? -2 : 1) * STEP * v[e];
      ok = sh_run(&s, BATCH, NNC_INTERP_F64, probe);
      l[side] = ok ? nnc_tensor_get(&probe[s.g->loss], 0) : NAN;
      for (int i = 0; ok && i < nout; i++) nnc_tensor_free(&probe[i]);
    }
    for (int64_t e = 0; e < cnt; e++) xv[e] += STEP * v[e];
    free(v);
    double fd = (l[0] - l[1]) / (2 * STEP);
    bool good = ok && fabs(fd - dot) <= ATOL + RTOL * fabs(dot);
    if (!good) printf("%-20s %-24s analytic %.12g, central difference %.12g\n", k->name, s.wrt[w]->name, dot, fd);
    ok &= good;
  }
  printf("%-20s %s (%d gradients)\n", k->name, ok ? "ok" : "FAILED", s.nwrt);
  for (int i = 0; i < nout; i++) nnc_tensor_free(&outs[i]);
  free(outs), free(probe);
  sh_free(&s);
  return ok;
}

int main(void) {
  int failed = 0;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) failed += !check_case(&cases[i]);
  if (failed) printf("%d of %zu cases failed\n", failed, sizeof cases / sizeof *cases);
  return failed != 0;
}
