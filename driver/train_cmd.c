/* --train and --eval: the driver's side of the training runtime. It lays the module out,
 * loads the data the train block names (or --data), checks that the data fits the model's
 * inputs, builds the schedule, initializes or loads the params, and maps the runtime's
 * results to exit statuses (docs/training.md). */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver/commands.h"
#include "driver/executor.h"
#include "driver/layout.h"
#include "driver/sample_cmd.h"
#include "passes/programs.h"
#include "runtime/atomic_file.h"
#include "runtime/checkpoint.h"
#include "runtime/train.h"

enum { ERR_CAP = 1024 };

/* snprintf that says whether everything fit (messages and paths may be cut, never overrun). */
static bool format(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool format(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  return n >= 0 && (size_t)n < cap;
}

static void report(const char *msg) { fprintf(stderr, "nnc: error: %s\n", msg); }

/* ---- which buffers are the examples, the labels, the loss and the logits ---- */

typedef struct model_io {
  const nnc_node *x, *y;        /* eval_step's inputs, in the model's order */
  nnc_rt_io_names names;
} model_io;

/* A classifier's logits: eval_step's first f32 output besides the loss shaped as the labels y
 * plus a last axis of C >= 2 classes: [B, C] for labels [B], [B, T, C] for a sequence's [B, T]. */
static const char *find_logits(const nnc_graph *g, const nnc_type *y) {
  for (int i = 0; i < g->noutputs; i++) {
    const nnc_type *t = &g->outputs[i].value->type;
    bool fits = i != g->loss && t->dtype == NNC_F32 && t->rank == y->rank + 1 && t->batch_axis == 0 &&
                t->dims[0] == 1 && t->dims[t->rank - 1] >= 2;
    for (int k = 1; fits && k < y->rank; k++) fits = t->dims[k] == y->dims[k];
    if (fits) return g->outputs[i].name;
  }
  return NULL;
}

static bool find_model_io(const nnc_module *m, model_io *io) {
  const nnc_graph *g = nnc_module_find_program(m, "eval_step");
  if (!g || !nnc_module_find_program(m, "train_step") || g->loss < 0) {
    fprintf(stderr, "nnc: error: model %s has no objective to train or evaluate (add `minimize ...`)\n", m->name);
    return false;
  }
  io->x = io->y = NULL;
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i]->op != NNC_OP_input) continue;
    if (!io->x) io->x = g->nodes[i];
    else if (!io->y) io->y = g->nodes[i];
  }
  if (!io->y) {
    fprintf(stderr, "nnc: error: model %s needs two inputs, the examples and their labels (x, y)\n", m->name);
    return false;
  }
  io->names = (nnc_rt_io_names){.x = io->x->name, .y = io->y->name, .loss = g->outputs[g->loss].name,
                                .logits = io->y->type.dtype == NNC_I32 ? find_logits(g, &io->y->type) : NULL};
  return true;
}

/* ---- data ---- */

/* text(path): windows of the model's sequence length T (x: i32[B, T]); --val-split sets the
 * held-out tail. */
static bool load_text(const char *path, const model_io *io, double val_split, nnc_rt_dataset *ds, char *err) {
  const nnc_type *t = &io->x->type;
  if (t->dtype != NNC_I32 || t->rank != 2 || t->batch_axis != 0) {
    format(err, ERR_CAP, "%s: text needs a model whose input '%s' is tokens i32[B, T]", path, io->x->name);
    return false;
  }
  nnc_rt_text_options to = {.seq_len = t->dims[1], .val_fraction = val_split};
  return nnc_rt_load_text(path, &to, ds, err, ERR_CAP);
}

static bool load_source(const char *kind, const char *path, const model_io *io, double val_split, nnc_rt_dataset *ds,
                        char *err) {
  nnc_rt_load_options lo = {.label_kind = io->y->type.dtype == NNC_I32 ? NNC_RT_LABELS_CLASS : NNC_RT_LABELS_VALUE};
  if (strcmp(kind, "text") == 0) return load_text(path, io, val_split, ds, err);
  if (strcmp(kind, "fashion_mnist") == 0 || strcmp(kind, "mnist") == 0) return nnc_rt_load_idx(path, ds, err, ERR_CAP);
  if (strcmp(kind, "cifar10") == 0) return nnc_rt_load_cifar10(path, ds, err, ERR_CAP);
  if (strcmp(kind, "csv") == 0) return nnc_rt_load_csv(path, &lo, ds, err, ERR_CAP);
  if (strcmp(kind, "npy") == 0) {
    /* a directory of x_train.npy, y_train.npy and optionally x_test.npy, y_test.npy */
    char f[4][4096];
    const char *names[4] = {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"};
    for (int i = 0; i < 4; i++) format(f[i], sizeof f[i], "%s/%s", path, names[i]);
    bool test = access(f[2], F_OK) == 0 || access(f[3], F_OK) == 0;
    return nnc_rt_load_npy(f[0], f[1], test ? f[2] : NULL, test ? f[3] : NULL, &lo, ds, err, ERR_CAP);
  }
  format(err, ERR_CAP, "unknown data source '%s'", kind);
  return false;
}

static const char *shape_str(int rank, const int64_t *dims, char *buf, size_t cap) {
  size_t len = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)dims[i]);
  if (len < cap) snprintf(buf + len, cap - len, "]");
  return buf;
}

/* The per-example shape of a model input: its type without the leading B. */
static bool example_shape(const nnc_node *in, int *rank, int64_t *dims, char *err) {
  const nnc_type *t = &in->type;
  if (t->batch_axis != 0 || t->dims[0] != 1) {
    format(err, ERR_CAP, "input '%s' must have B as its first dimension to be fed from data", in->name);
    return false;
  }
  *rank = t->rank - 1;
  memcpy(dims, t->dims + 1, sizeof(int64_t) * (size_t)*rank);
  return true;
}

static bool same_dims(int ra, const int64_t *a, int rb, const int64_t *b) {
  if (ra != rb) return false;
  for (int i = 0; i < ra; i++)
    if (a[i] != b[i]) return false;
  return true;
}

/* Equal up to dimensions of size 1 ([28,28] feeds [1,28,28]): the bytes are the same. */
static bool same_dims_but_ones(int ra, const int64_t *a, int rb, const int64_t *b) {
  int i = 0, j = 0;
  for (;;) {
    while (i < ra && a[i] == 1) i++;
    while (j < rb && b[j] == 1) j++;
    if (i == ra || j == rb) return i == ra && j == rb;
    if (a[i++] != b[j++]) return false;
  }
}

static bool check_examples(const char *src, const model_io *io, nnc_rt_dataset *ds, char *err) {
  int rank;
  int64_t dims[NNC_MAX_RANK];
  char a[128], b[128];
  if (!example_shape(io->x, &rank, dims, err)) return false;
  if (!same_dims_but_ones(rank, dims, ds->x_rank, ds->x_shape)) {
    format(err, ERR_CAP, "%s: examples have shape %s, the model's input '%s' expects %s per example", src,
             shape_str(ds->x_rank, ds->x_shape, a, sizeof a), io->x->name, shape_str(rank, dims, b, sizeof b));
    return false;
  }
  nnc_rt_dtype want = nnc_layout_rt_dtype(io->x->type.dtype);
  if (ds->x_dtype == want) return true;
  if (want == NNC_RT_F32) return nnc_rt_dataset_cast_inputs(ds, NNC_RT_F32, err, ERR_CAP);
  format(err, ERR_CAP, "%s: examples are %s, the model's input '%s' is %s", src, nnc_rt_dtype_name(ds->x_dtype),
           io->x->name, nnc_dtype_name(io->x->type.dtype));
  return false;
}

static bool check_split_labels(const char *src, const char *split_name, const nnc_rt_split *s, size_t per_example,
                               int64_t classes, char *err) {
  const int32_t *y = s->y;
  for (int64_t i = 0; i < s->n * (int64_t)per_example; i++)
    if (y[i] < 0 || y[i] >= classes) {
      format(err, ERR_CAP, "%s: label %d of %s example %lld is out of range: the model has %lld classes", src, y[i],
               split_name, (long long)i / (long long)per_example, (long long)classes);
      return false;
    }
  return true;
}

/* A text's tokens must all be ids the model's embedding and logits have. */
static bool check_vocab_size(const char *src, const nnc_module *m, const nnc_rt_dataset *ds, int64_t classes,
                             char *err) {
  if (ds->vocab.size <= classes) return true;
  format(err, ERR_CAP,
         "%s: the text has %d distinct characters, model %s's vocabulary has %lld: raise the vocabulary size "
         "hparam to at least %d (e.g. --set V=%d)",
         src, (int)ds->vocab.size, m->name, (long long)classes, (int)ds->vocab.size, (int)ds->vocab.size);
  return false;
}

static bool check_labels(const char *src, const nnc_module *m, const model_io *io, const nnc_rt_dataset *ds,
                         char *err) {
  int rank;
  int64_t dims[NNC_MAX_RANK];
  char a[128], b[128];
  if (!example_shape(io->y, &rank, dims, err)) return false;
  if (ds->label_kind == NNC_RT_LABELS_CLASS) {
    if (io->y->type.dtype != NNC_I32 || !same_dims(rank, dims, ds->label_rank, ds->label_shape)) {
      format(err, ERR_CAP, "%s: labels are class ids %s per example, the model's input '%s' must be i32%s", src,
             shape_str(ds->label_rank, ds->label_shape, a, sizeof a), io->y->name,
             ds->label_rank ? "[B, ...] of that shape" : "[B]");
      return false;
    }
    if (!io->names.logits) return true;
    const nnc_graph *g = nnc_module_find_program(m, "eval_step");
    int64_t classes = 0;
    for (int i = 0; i < g->noutputs; i++)
      if (strcmp(g->outputs[i].name, io->names.logits) == 0) {
        const nnc_type *t = &g->outputs[i].value->type;
        classes = t->dims[t->rank - 1];
      }
    size_t per = ds->label_elems ? ds->label_elems : 1;
    return check_vocab_size(src, m, ds, classes, err) &&
           check_split_labels(src, "training", &ds->train, per, classes, err) &&
           check_split_labels(src, "test", &ds->test, per, classes, err);
  }
  if (io->y->type.dtype != NNC_F32 || !same_dims(rank, dims, ds->label_rank, ds->label_shape)) {
    format(err, ERR_CAP, "%s: labels are f32 %s per example, the model's input '%s' expects %s %s", src,
             shape_str(ds->label_rank, ds->label_shape, a, sizeof a), io->y->name,
             nnc_dtype_name(io->y->type.dtype), shape_str(rank, dims, b, sizeof b));
    return false;
  }
  return true;
}

/* A relative path in a train block is relative to the model file's directory; --data is
 * relative to the working directory, as any command-line path. */
static const char *relative_to_model(const char *model_path, const char *path, char *buf, size_t cap) {
  const char *slash = strrchr(model_path, '/');
  if (path[0] == '/' || !slash) return path;
  return format(buf, cap, "%.*s/%s", (int)(slash - model_path), model_path, path) ? buf : path;
}

static void print_text_summary(const char *path, const nnc_rt_dataset *ds) {
  printf("text %s: %d distinct characters, %lld training and %lld validation sequences of %lld, unigram entropy "
         "%.4f nats/character\n",
         path, (int)ds->vocab.size, (long long)ds->train.n, (long long)ds->test.n, (long long)ds->x_shape[0],
         ds->unigram_entropy);
}

/* Loads and checks the dataset; *eval_name tells what the evaluation split is. */
static bool load_data(const nnc_module *m, const nnc_options *o, const model_io *io, uint64_t seed,
                      nnc_rt_dataset *ds, const char **eval_name) {
  char err[ERR_CAP], resolved[4096];
  const char *kind = m->train.data_kind, *path = o->data ? o->data : m->train.data_path;
  if (!kind || !path) {
    fprintf(stderr, "nnc: error: model %s names no data: add `data = ...` to its train block\n", m->name);
    return false;
  }
  if (!o->data) path = relative_to_model(o->input, path, resolved, sizeof resolved);
  bool text = strcmp(kind, "text") == 0;
  bool ok = load_source(kind, path, io, o->val_split, ds, err) && check_examples(path, io, ds, err) &&
            check_labels(path, m, io, ds, err);
  *eval_name = text ? "validation" : "test"; /* a text's held-out tail is its validation part */
  if (ok && text && !o->quiet) print_text_summary(path, ds);
  if (ok && !text && o->val_split > 0) {
    ok = nnc_rt_dataset_split_validation(ds, o->val_split, seed, err, ERR_CAP);
    *eval_name = "validation";
  } else if (ok && ds->test.n == 0) {
    *eval_name = "training-set"; /* no held-out data: report the fit of the training set */
  }
  if (!ok) report(err);
  return ok;
}

/* ---- schedule ---- */

/* --schedule accepts "name(k=v, ...)" and the flag form "name,k=v,...". */
static bool parse_schedule_flag(nnc_rt_schedule *s, const char *spec, double lr, char *err) {
  char buf[512];
  const char *comma = strchr(spec, ',');
  if (comma && !strchr(spec, '(')) {
    snprintf(buf, sizeof buf, "%.*s(%s)", (int)(comma - spec), spec, comma + 1);
    spec = buf;
  }
  return nnc_rt_schedule_parse(s, spec, lr, err, ERR_CAP);
}

static bool train_block_schedule(nnc_rt_schedule *s, const nnc_train_cfg *t, char *err) {
  const char *kind = t->schedule ? t->schedule : "constant";
  if (!nnc_rt_schedule_init(s, kind, t->lr, err, ERR_CAP)) return false;
  if (strcmp(kind, "step") == 0)
    return nnc_rt_schedule_set(s, "step_size", t->sched_step, err, ERR_CAP) &&
           nnc_rt_schedule_set(s, "gamma", t->sched_gamma, err, ERR_CAP);
  if (strcmp(kind, "exponential") == 0) return nnc_rt_schedule_set(s, "gamma", t->sched_gamma, err, ERR_CAP);
  if ((strcmp(kind, "cosine") == 0 || strcmp(kind, "warmup") == 0) && t->sched_warmup > 0)
    return nnc_rt_schedule_set(s, "warmup", t->sched_warmup, err, ERR_CAP);
  return true;
}

/* ---- the persist region ---- */

static uint8_t *alloc_region(size_t bytes) {
  uint8_t *p = aligned_alloc(64, bytes ? bytes : 64);
  if (!p) nnc_oom(bytes);
  memset(p, 0, bytes ? bytes : 64);
  return p;
}

/* Fills persist from --resume, --load or the seeded initialization. */
static int prepare_params(const nnc_module *m, const nnc_rt_model *rm, const nnc_options *o, uint64_t seed,
                          uint8_t *persist, nnc_rt_train_state *st, bool *resumed) {
  char err[ERR_CAP];
  *resumed = false;
  if (o->resume_path && o->load_path) {
    fprintf(stderr, "nnc: error: --resume and --load cannot be combined\n");
    return NNC_EXIT_USAGE;
  }
  nnc_layout_init_params(m, rm, (uint32_t)seed, persist);
  const char *path = o->resume_path ? o->resume_path : o->load_path;
  if (!path) return NNC_EXIT_OK;
  nnc_rt_load_mode mode = o->resume_path && o->action == NNC_ACTION_TRAIN ? NNC_RT_LOAD_RESUME : NNC_RT_LOAD_WEIGHTS;
  if (!nnc_rt_checkpoint_load(path, rm, persist, mode, st, err, sizeof err)) {
    report(err);
    return NNC_EXIT_MODEL_ERROR;
  }
  *resumed = mode == NNC_RT_LOAD_RESUME;
  return NNC_EXIT_OK;
}

/* A checkpoint trained on text must have the data's vocabulary: the same id for the same
 * character. A checkpoint without one (e.g. from PyTorch) is taken as it is. */
static bool check_checkpoint_vocab(const nnc_options *o, const nnc_rt_dataset *ds) {
  const char *path = o->resume_path ? o->resume_path : o->load_path;
  if (!path || ds->vocab.size == 0) return true;
  char err[ERR_CAP];
  nnc_rt_vocab v;
  if (!nnc_rt_checkpoint_vocab(path, &v, err, sizeof err)) {
    report(err);
    return false;
  }
  if (v.size == 0 || (v.size == ds->vocab.size && memcmp(v.bytes, ds->vocab.bytes, (size_t)v.size) == 0)) return true;
  fprintf(stderr, "nnc: error: %s: the checkpoint's vocabulary (%d characters) is not the text's (%d characters): "
          "it was trained on other text\n", path, (int)v.size, (int)ds->vocab.size);
  return false;
}


/* ---- the commands ---- */

/* SIGINT (Ctrl-C) and SIGTERM (what schedulers and `kill` send) both stop the run after the
 * step in progress, with the checkpoint written; the exit status is 128 + the signal. */
static volatile sig_atomic_t interrupted;
static void on_stop_signal(int sig) { interrupted = sig; }

typedef struct session {
  model_io io;
  nnc_rt_model *rm;
  nnc_rt_executor *ex;
  nnc_rt_dataset ds;
  uint8_t *persist;
  const char *eval_name;
  uint64_t seed;
} session;

static void session_free(session *s) {
  if (s->ex) s->ex->destroy(s->ex);
  nnc_layout_free(s->rm);
  nnc_rt_dataset_free(&s->ds);
  free(s->persist);
}

static int session_open(session *s, nnc_module *m, const nnc_compiled *c, const nnc_options *o) {
  char err[ERR_CAP];
  if (!find_model_io(m, &s->io)) return NNC_EXIT_MODEL_ERROR;
  s->seed = (uint64_t)(o->seed >= 0 ? o->seed : m->train.seed);
  s->rm = nnc_layout_model(c);
  if (!load_data(m, o, &s->io, s->seed, &s->ds, &s->eval_name)) return NNC_EXIT_MODEL_ERROR;
  s->persist = alloc_region(s->rm->persist_bytes);
  if (!(s->ex = nnc_driver_executor_new(c, s->rm, o, err, sizeof err))) {
    report(err);
    return NNC_EXIT_MODEL_ERROR;
  }
  return NNC_EXIT_OK;
}

static int train_status(nnc_rt_train_status st, const char *err) {
  switch (st) {
  case NNC_RT_TRAIN_OK: return NNC_EXIT_OK;
  case NNC_RT_TRAIN_STOPPED: return 128 + (interrupted ? interrupted : SIGINT);
  case NNC_RT_TRAIN_BAD_INPUT: report(err); return NNC_EXIT_MODEL_ERROR;
  case NNC_RT_TRAIN_IO_ERROR: report(err); return NNC_EXIT_ENVIRONMENT;
  }
  return NNC_EXIT_MODEL_ERROR;
}

static int run_training(nnc_module *m, const nnc_options *o, session *s) {
  char err[ERR_CAP];
  nnc_rt_train_state st;
  bool resumed;
  int status = prepare_params(m, s->rm, o, s->seed, s->persist, &st, &resumed);
  if (status != NNC_EXIT_OK) return status;
  if (!check_checkpoint_vocab(o, &s->ds)) return NNC_EXIT_MODEL_ERROR;
  nnc_rt_train_config cfg = {
      .epochs = o->epochs > 0 ? o->epochs : (m->train.epochs > 0 ? m->train.epochs : 1),
      .max_steps = o->max_steps, .save_every = o->save_every, .seed = s->seed, .io = s->io.names,
      .eval_split = s->ds.test.n ? &s->ds.test : &s->ds.train, .eval_name = s->eval_name,
      .log_path = o->log_path, .plot_path = o->plot_path, .save_path = o->save_path,
      .resume = resumed ? &st : NULL, .quiet = o->quiet, .progress_bar = isatty(STDERR_FILENO),
      .out = stdout, .bar = stderr, .stop = &interrupted, .unigram_entropy = s->ds.unigram_entropy,
      .augment = {.pad = (int)m->train.augment_crop, .flip = m->train.augment_flip, .seed = s->seed}};
  bool ok = o->schedule ? parse_schedule_flag(&cfg.schedule, o->schedule, m->train.lr, err)
                        : train_block_schedule(&cfg.schedule, &m->train, err);
  if (!ok) {
    report(err);
    return o->schedule ? NNC_EXIT_USAGE : NNC_EXIT_MODEL_ERROR;
  }
  struct sigaction sa = {.sa_handler = on_stop_signal}, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  nnc_rt_train_status ts = nnc_rt_train(s->rm, s->ex, &s->ds, s->persist, &cfg, err, sizeof err);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  return train_status(ts, err);
}

int nnc_cmd_train(nnc_module *m, const nnc_compiled *c, const nnc_options *o) {
  session s = {0};
  if (o->sample > 0 && !(m->train.data_kind && strcmp(m->train.data_kind, "text") == 0)) {
    fprintf(stderr, "nnc: error: --sample needs a character model trained on text (data = text(...))\n");
    return NNC_EXIT_USAGE;
  }
  int status = session_open(&s, m, c, o);
  if (status == NNC_EXIT_OK) status = run_training(m, o, &s);
  if (status == NNC_EXIT_OK && o->sample > 0)
    status = nnc_sample_text(m, s.rm, s.ex, s.persist, &s.ds.vocab, o, s.seed, stdout);
  session_free(&s);
  return status;
}

int nnc_cmd_eval(nnc_module *m, const nnc_compiled *c, const nnc_options *o) {
  if (!o->load_path && !o->resume_path) {
    fprintf(stderr, "nnc: error: --eval needs weights: --load FILE or --resume FILE\n");
    return NNC_EXIT_USAGE;
  }
  session s = {0};
  char err[ERR_CAP];
  nnc_rt_train_state st;
  bool resumed;
  int status = session_open(&s, m, c, o);
  if (status == NNC_EXIT_OK) status = prepare_params(m, s.rm, o, s.seed, s.persist, &st, &resumed);
  if (status == NNC_EXIT_OK && !check_checkpoint_vocab(o, &s.ds)) status = NNC_EXIT_MODEL_ERROR;
  if (status == NNC_EXIT_OK) {
    const nnc_rt_split *split = s.ds.test.n ? &s.ds.test : &s.ds.train;
    uint8_t *io = alloc_region(s.rm->io_bytes);
    nnc_rt_metrics r;
    bool ok = nnc_rt_evaluate(s.rm, s.ex, &s.ds, split, &s.io.names, s.persist, io, &r, err, sizeof err);
    if (ok && !isfinite(r.loss)) {
      format(err, ERR_CAP, "%s: the %s loss is %s: the weights are not usable (a diverged run?)",
             o->load_path ? o->load_path : o->resume_path, s.eval_name, isnan(r.loss) ? "nan" : "inf");
      ok = false;
    }
    if (ok) {
      printf("%s loss %.4f", s.eval_name, r.loss);
      if (r.accuracy == r.accuracy) printf(", %s accuracy %.2f%%", s.eval_name, 100 * r.accuracy);
      printf(" (%lld examples)\n", (long long)r.n);
    } else {
      report(err);
      status = NNC_EXIT_MODEL_ERROR;
    }
    free(io);
  }
  session_free(&s);
  return status;
}
