/* Generating text. Every model the sampler runs is causal (an RNN, an LSTM, a GPT with causal
 * attention): position t of the logits depends on tokens 0..t only. So a context shorter than
 * T sits at the start of the window, the rest padded with id 0, and the logits at its last
 * position are exactly the model's prediction; a longer context keeps its last T tokens. */
#include "driver/sample_cmd.h"

#include <stdlib.h>
#include <string.h>

#include "driver/executor.h"
#include "driver/layout.h"
#include "passes/programs.h"
#include "runtime/checkpoint.h"
#include "runtime/sample.h"

enum { ERR_CAP = 1024 };

static const double DEFAULT_TEMPERATURE = 0.8;

/* predict's token input i32[B, T] and its logits f32[B, T, C]. */
typedef struct sample_io {
  const nnc_rt_buffer *x, *logits;
  int64_t T, C;
} sample_io;

static bool find_sample_io(const nnc_module *m, const nnc_rt_model *rm, sample_io *s) {
  const nnc_graph *g = nnc_module_find_program(m, "predict");
  const nnc_node *x = NULL;
  for (int i = 0; g && i < g->nnodes && !x; i++)
    if (g->nodes[i]->op == NNC_OP_input) x = g->nodes[i];
  const nnc_type *t = x ? &x->type : NULL;
  if (!t || t->dtype != NNC_I32 || t->rank != 2 || t->batch_axis != 0) {
    fprintf(stderr, "nnc: error: --sample needs a model whose predict takes tokens i32[B, T]\n");
    return false;
  }
  s->T = t->dims[1];
  s->x = nnc_rt_model_buffer(rm, x->name);
  s->logits = NULL;
  for (int i = 0; i < g->noutputs && !s->logits; i++) {
    const nnc_type *o = &g->outputs[i].value->type;
    if (o->dtype == NNC_F32 && o->rank == 3 && o->batch_axis == 0 && o->dims[1] == s->T) {
      s->logits = nnc_rt_model_buffer(rm, g->outputs[i].name);
      s->C = o->dims[2];
    }
  }
  if (!s->x || !s->logits) {
    fprintf(stderr, "nnc: error: --sample needs a model whose predict returns logits f32[B, T, V]\n");
    return false;
  }
  return true;
}

/* The prompt's ids; the default is a newline, or the first token when the text had none. */
static int32_t *encode_prompt(const nnc_rt_vocab *v, const char *prompt, size_t extra, size_t *len) {
  char fallback[2] = {(char)v->bytes[0], 0};
  if (!prompt) prompt = nnc_rt_vocab_id(v, '\n') >= 0 ? "\n" : fallback;
  size_t n = strlen(prompt);
  int32_t *ids = malloc((n + extra) * sizeof *ids);
  if (!ids) nnc_oom((n + extra) * sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    ids[i] = nnc_rt_vocab_id(v, (uint8_t)prompt[i]);
    if (ids[i] < 0) {
      fprintf(stderr, "nnc: error: --prompt: character %zu (byte 0x%02x) is not in the model's vocabulary\n", i + 1,
              (unsigned char)prompt[i]);
      free(ids);
      return NULL;
    }
  }
  *len = n;
  return ids;
}

/* Runs predict on the last T tokens of ids[0, len) and returns the row of logits that
 * predicts token len. */
static const float *predict_next(const sample_io *s, nnc_rt_executor *ex, uint8_t *persist, uint8_t *io,
                                 const int32_t *ids, size_t len, char *err) {
  size_t k = len < (size_t)s->T ? len : (size_t)s->T;
  int32_t *x = (int32_t *)(io + s->x->offset);
  memset(x, 0, (size_t)s->T * sizeof *x);
  memcpy(x, ids + len - k, k * sizeof *x);
  nnc_rt_call call = {.n = 1};
  if (!ex->run(ex, "predict", persist, io, &call, err, ERR_CAP)) return NULL;
  return (const float *)(io + s->logits->offset) + (k - 1) * (size_t)s->C;
}

int nnc_sample_text(const nnc_module *m, const nnc_rt_model *rm, nnc_rt_executor *ex, uint8_t *persist,
                    const nnc_rt_vocab *vocab, const nnc_options *o, uint64_t seed, FILE *out) {
  sample_io s;
  if (!find_sample_io(m, rm, &s)) return NNC_EXIT_MODEL_ERROR;
  if (vocab->size < 1 || s.C < vocab->size) {
    fprintf(stderr, "nnc: error: --sample: the vocabulary has %d tokens, the model's logits %lld\n", (int)vocab->size,
            (long long)s.C);
    return NNC_EXIT_MODEL_ERROR;
  }
  size_t len, n = (size_t)o->sample;
  int32_t *ids = encode_prompt(vocab, o->prompt, n, &len);
  if (!ids) return NNC_EXIT_USAGE;
  uint8_t *io = aligned_alloc(64, (rm->io_bytes + 63) / 64 * 64);
  if (!io) nnc_oom(rm->io_bytes);
  double temperature = o->temperature >= 0 ? o->temperature : DEFAULT_TEMPERATURE;
  char err[ERR_CAP];
  int status = NNC_EXIT_OK;
  for (size_t i = 0; i < len; i++) fputc(vocab->bytes[ids[i]], out);
  for (size_t i = 0; i < n; i++) {
    const float *row = predict_next(&s, ex, persist, io, ids, len, err);
    if (!row) {
      fprintf(stderr, "nnc: error: %s\n", err);
      status = NNC_EXIT_MODEL_ERROR;
      break;
    }
    ids[len] = nnc_rt_sample_token(row, vocab->size, temperature, seed, i);
    fputc(vocab->bytes[ids[len++]], out);
  }
  fputc('\n', out);
  if (fflush(out) != 0 && status == NNC_EXIT_OK) status = NNC_EXIT_ENVIRONMENT;
  free(io);
  free(ids);
  return status;
}

int nnc_cmd_sample(nnc_module *m, const nnc_compiled *c, const nnc_options *o) {
  const char *path = o->load_path ? o->load_path : o->resume_path;
  if (!path || (o->load_path && o->resume_path)) {
    fprintf(stderr, "nnc: error: --sample needs trained weights: --train, --load FILE or --resume FILE\n");
    return NNC_EXIT_USAGE;
  }
  char err[ERR_CAP];
  nnc_rt_vocab vocab;
  nnc_rt_model *rm = nnc_layout_model(c);
  if (!nnc_rt_checkpoint_vocab(path, &vocab, err, sizeof err)) {
    fprintf(stderr, "nnc: error: %s\n", err);
    nnc_layout_free(rm);
    return NNC_EXIT_MODEL_ERROR;
  }
  int status = NNC_EXIT_MODEL_ERROR;
  uint8_t *persist = aligned_alloc(64, (rm->persist_bytes + 63) / 64 * 64 + 64);
  if (!persist) nnc_oom(rm->persist_bytes);
  memset(persist, 0, (rm->persist_bytes + 63) / 64 * 64 + 64);
  uint64_t seed = (uint64_t)(o->seed >= 0 ? o->seed : m->train.seed);
  nnc_layout_init_params(m, rm, (uint32_t)seed, persist);
  if (vocab.size == 0)
    fprintf(stderr, "nnc: error: %s: the checkpoint has no vocabulary (metadata \"vocab\"): it was not trained on text\n",
            path);
  else if (!nnc_rt_checkpoint_load(path, rm, persist, NNC_RT_LOAD_WEIGHTS, NULL, err, sizeof err))
    fprintf(stderr, "nnc: error: %s\n", err);
  else {
    nnc_rt_executor *ex = nnc_driver_executor_new(c, rm, o, err, sizeof err);
    if (ex) {
      status = nnc_sample_text(m, rm, ex, persist, &vocab, o, seed, stdout);
      ex->destroy(ex);
    } else {
      fprintf(stderr, "nnc: error: %s\n", err);
    }
  }
  free(persist);
  nnc_layout_free(rm);
  return status;
}
