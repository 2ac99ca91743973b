/* The training loop. One step: gather the next batch of the epoch's shuffled order into io,
 * call train_step with the schedule's rate, read the loss. Everything a step depends on is a
 * function of (seed, step): the epoch order is keyed by (seed, epoch), the position in it is
 * step mod steps_per_epoch, the rate a pure function of step (plateau aside, whose state the
 * checkpoint keeps), so a resumed run takes exactly the steps the uninterrupted run takes.
 *
 * A resident executor (runtime/model.h; CUDA) keeps persist and the losses on its device: steps
 * are queued, and the losses are read at the log intervals only (a progress bar redraw, the end
 * of an epoch, a checkpoint, the end of the run), where a non-finite loss stops the run with the
 * step it happened at; persist comes back to the host for checkpoints and at the end. */
#include "train.h"
#include "runtime/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "atomic_file.h"
#include "plot.h"


static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *alloc_region(size_t bytes) {
  void *p = aligned_alloc(64, bytes ? bytes : 64);
  if (p) memset(p, 0, bytes ? bytes : 64);
  return p;
}

/* ---- evaluation ---- */

typedef struct io_views {
  const nnc_rt_buffer *x, *y, *loss, *logits;
} io_views;

static bool find_views(const nnc_rt_model *m, const nnc_rt_io_names *names, io_views *v, char *err, size_t cap) {
  v->x = nnc_rt_model_buffer(m, names->x);
  v->y = nnc_rt_model_buffer(m, names->y);
  v->loss = nnc_rt_model_buffer(m, names->loss);
  v->logits = names->logits ? nnc_rt_model_buffer(m, names->logits) : NULL;
  if (!v->x || !v->y || !v->loss || (names->logits && !v->logits))
    return nnc_rt_fail(err, cap, "model %s has no buffers '%s', '%s' and '%s'", m->name, names->x, names->y, names->loss);
  if (v->loss->dtype != NNC_RT_F32 || nnc_rt_buffer_elements(v->loss, 1) != 1)
    return nnc_rt_fail(err, cap, "the loss '%s' is not an f32 scalar", names->loss);
  return true;
}

static float read_f32(const uint8_t *io, const nnc_rt_buffer *b, int64_t i) {
  float v;
  memcpy(&v, io + b->offset + 4 * (size_t)i, 4);
  return v;
}

/* Labels of the batch that their logits' argmax (the first on ties) gets right. A classifier
 * has one label per example and logits [B, C]; a sequence model one per position, labels
 * [B, T] and logits [B, T, C]. */
static int64_t count_correct(const uint8_t *io, const io_views *v, int64_t n) {
  int64_t positions = nnc_rt_buffer_elements(v->y, 1), correct = 0;
  int64_t classes = nnc_rt_buffer_elements(v->logits, 1) / positions;
  const uint8_t *ybase = io + v->y->offset;
  for (int64_t i = 0; i < n * positions; i++) {
    int64_t best = 0;
    for (int64_t c = 1; c < classes; c++)
      if (read_f32(io, v->logits, i * classes + c) > read_f32(io, v->logits, i * classes + best)) best = c;
    int32_t label;
    memcpy(&label, ybase + 4 * (size_t)i, 4);
    correct += best == label;
  }
  return correct;
}

bool nnc_rt_evaluate(const nnc_rt_model *m, nnc_rt_executor *ex, const nnc_rt_dataset *ds, const nnc_rt_split *split,
                     const nnc_rt_io_names *names, uint8_t *persist, uint8_t *io, nnc_rt_metrics *out, char *err,
                     size_t cap) {
  io_views v;
  if (!find_views(m, names, &v, err, cap)) return false;
  uint32_t *idx = malloc(sizeof *idx * (size_t)(m->batch_max > 0 ? m->batch_max : 1));
  if (!idx) return nnc_rt_fail(err, cap, "out of memory");
  double loss_sum = 0;
  int64_t correct = 0;
  bool ok = true;
  for (int64_t start = 0; ok && start < split->n; start += m->batch_max) {
    int64_t n = split->n - start < m->batch_max ? split->n - start : m->batch_max;
    for (int64_t i = 0; i < n; i++) idx[i] = (uint32_t)(start + i);
    nnc_rt_call call = {.n = n};
    ok = nnc_rt_gather(ds, split, idx, n, io + v.x->offset, io + v.y->offset) &&
         ex->run(ex, "eval_step", persist, io, &call, err, cap);
    if (!ok) break;
    loss_sum += (double)read_f32(io, v.loss, 0) * (double)n;
    if (v.logits) correct += count_correct(io, &v, n);
  }
  free(idx);
  if (!ok) return false;
  out->n = split->n;
  out->loss = split->n ? loss_sum / (double)split->n : NAN;
  double labels = (double)split->n * (double)nnc_rt_buffer_elements(v.y, 1);
  out->accuracy = v.logits && split->n ? (double)correct / labels : NAN;
  return true;
}

/* ---- the run's record: one row per epoch ---- */


typedef struct run {
  const nnc_rt_model *m;
  nnc_rt_executor *ex;
  const nnc_rt_dataset *ds;
  nnc_rt_train_config *cfg;
  uint8_t *persist, *io;
  io_views v;
  uint32_t *perm;
  int64_t spe, total_steps, step;
  FILE *log;
  nnc_rt_epoch_row *rows;
  int64_t nrows;
  double t0, train_seconds;       /* wall clock at start; time spent in train steps */
  int64_t samples;                /* examples trained on in this run */
  double epoch_loss_sum;          /* over the examples of this epoch trained in this run */
  int64_t epoch_examples;
  bool resident;                  /* the executor keeps persist and the losses (resident_*) */
  int64_t unread_steps;           /* resident: steps queued since the losses were last read */
  double last_loss;
  double last_bar;
  nnc_rt_metrics last_eval;
  bool evaluated_last_step;
  char *err;
  size_t cap;
} run;

static void format_duration(double s, char *buf, size_t cap) {
  long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
  if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

/* Whether the progress bar is drawn now: at most ten times a second, and at the end of an epoch. */
static bool bar_due(run *r, bool force) {
  nnc_rt_train_config *c = r->cfg;
  if (c->quiet || !c->progress_bar) return false;
  double t = now_seconds();
  if (!force && t - r->last_bar < 0.1) return false;
  r->last_bar = t;
  return true;
}

static void draw_bar(run *r, int64_t epoch, int64_t in_epoch, double loss) {
  nnc_rt_train_config *c = r->cfg;
  enum { WIDTH = 24 };
  int filled = (int)(WIDTH * in_epoch / (r->spe ? r->spe : 1));
  char bar[WIDTH + 1];
  for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
  bar[WIDTH] = 0;
  double rate = r->train_seconds > 0 ? (double)r->samples / r->train_seconds : 0;
  double steps_per_s = r->train_seconds > 0 ? (double)(r->samples ? r->samples : 1) / r->train_seconds /
                                                  (double)r->m->batch_max : 0;
  char eta[32];
  format_duration(steps_per_s > 0 ? (double)(r->total_steps - r->step) / steps_per_s : 0, eta, sizeof eta);
  fprintf(c->bar, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld  loss %.4f  %.0f samples/s  ETA %s", (long long)epoch + 1,
          (long long)c->epochs, bar, (long long)in_epoch, (long long)r->spe, loss, rate, eta);
  fflush(c->bar);
}

static void clear_bar(run *r) {
  if (!r->cfg->quiet && r->cfg->progress_bar) {
    fputs("\r\033[K", r->cfg->bar);
    fflush(r->cfg->bar);
  }
}

static bool open_log(run *r) {
  const char *path = r->cfg->log_path;
  if (!path) return true;
  bool append = r->cfg->resume != NULL;
  r->log = fopen(path, append ? "a" : "w");
  if (!r->log) return nnc_rt_fail(r->err, r->cap, "%s: cannot write: %s", path, strerror(errno));
  if (!append || ftell(r->log) == 0) fputs("epoch,step,train_loss,test_loss,test_acc,lr,seconds\n", r->log);
  if (fflush(r->log) != 0) return nnc_rt_fail(r->err, r->cap, "%s: write failed: %s", path, strerror(errno));
  return true;
}

static bool log_row(run *r, const nnc_rt_epoch_row *row) {
  if (!r->log) return true;
  fprintf(r->log, "%lld,%lld,%.6f,%.6f,%.6f,%.6g,%.3f\n", (long long)row->epoch, (long long)row->step, row->train_loss,
          row->test_loss, row->test_acc, row->lr, row->seconds);
  if (fflush(r->log) != 0 || ferror(r->log))
    return nnc_rt_fail(r->err, r->cap, "%s: write failed: %s", r->cfg->log_path, strerror(errno));
  return true;
}

static void print_epoch(run *r, const nnc_rt_epoch_row *row) {
  nnc_rt_train_config *c = r->cfg;
  if (c->quiet) return;
  clear_bar(r);
  fprintf(c->out, "epoch %lld/%lld  step %lld  train loss %.4f", (long long)row->epoch, (long long)c->epochs,
          (long long)row->step, row->train_loss);
  if (!isnan(row->test_loss)) fprintf(c->out, "  %s loss %.4f", c->eval_name, row->test_loss);
  if (!isnan(row->test_acc)) fprintf(c->out, "  %s accuracy %.2f%%", c->eval_name, 100 * row->test_acc);
  fprintf(c->out, "  lr %.3g  %.1fs\n", row->lr, row->seconds);
  fflush(c->out);
}

/* A non-finite evaluation loss means the weights diverged: the run stops there, as for a
 * non-finite training loss, before a checkpoint is written. */
static bool evaluate(run *r, nnc_rt_metrics *out) {
  const nnc_rt_split *s = r->cfg->eval_split;
  if (!s || s->n == 0) {
    *out = (nnc_rt_metrics){.loss = NAN, .accuracy = NAN};
    return true;
  }
  if (!nnc_rt_evaluate(r->m, r->ex, r->ds, s, &r->cfg->io, r->persist, r->io, out, r->err, r->cap)) return false;
  if (isfinite(out->loss)) return true;
  return nnc_rt_fail(r->err, r->cap, "the %s loss is %s after step %lld: the weights diverged", r->cfg->eval_name,
              isnan(out->loss) ? "nan" : "inf", (long long)r->step);
}

static bool nonfinite_loss(run *r, double loss, int64_t step) {
  return nnc_rt_fail(r->err, r->cap, "loss is %s at step %lld (epoch %lld)", isnan(loss) ? "nan" : "inf", (long long)step,
              (long long)((step - 1) / r->spe + 1));
}

/* Resident: the losses of the steps queued since the last read (waiting for them is training
 * time), and the end of the run at the first non-finite one. */
static bool collect_losses(run *r) {
  if (!r->resident || r->unread_steps == 0) return true;
  double t = now_seconds();
  nnc_rt_losses l;
  if (!r->ex->resident_losses(r->ex, &l, r->err, r->cap)) return false;
  r->train_seconds += now_seconds() - t;
  if (l.steps != r->unread_steps)
    return nnc_rt_fail(r->err, r->cap, "internal error: %lld train steps queued, %lld accumulated", (long long)r->unread_steps,
                (long long)l.steps);
  r->unread_steps = 0;
  if (l.first_nonfinite) return nonfinite_loss(r, l.nonfinite_loss, l.first_nonfinite);
  r->epoch_loss_sum += l.sum;
  r->epoch_examples += l.examples;
  r->last_loss = l.last;
  return true;
}

/* The host's persist up to date (resident executors keep theirs on the device). */
static bool pull_persist(run *r) {
  return !r->resident || r->ex->resident_pull(r->ex, r->persist, r->err, r->cap);
}

/* After the last step of an epoch: evaluate, let a plateau schedule see the loss, record. */
static bool end_epoch(run *r, int64_t epoch) {
  nnc_rt_metrics e;
  if (!collect_losses(r) || !evaluate(r, &e)) return false;
  r->last_eval = e;
  r->evaluated_last_step = true;
  if (!isnan(e.loss)) nnc_rt_schedule_observe(&r->cfg->schedule, e.loss);
  nnc_rt_epoch_row row = {.epoch = epoch + 1, .step = r->step,
                   .train_loss = r->epoch_examples ? r->epoch_loss_sum / (double)r->epoch_examples : NAN,
                   .test_loss = e.loss, .test_acc = e.accuracy,
                   .lr = nnc_rt_schedule_lr(&r->cfg->schedule, r->step > 0 ? r->step - 1 : 0),
                   .seconds = now_seconds() - r->t0};
  r->rows = realloc(r->rows, sizeof *r->rows * (size_t)(r->nrows + 1));
  if (!r->rows) return nnc_rt_fail(r->err, r->cap, "out of memory");
  r->rows[r->nrows++] = row;
  r->epoch_loss_sum = 0, r->epoch_examples = 0;
  print_epoch(r, &row);
  return log_row(r, &row);
}

static nnc_rt_train_state current_state(const run *r) {
  const nnc_rt_schedule *s = &r->cfg->schedule;
  return (nnc_rt_train_state){.step = r->step, .steps_per_epoch = r->spe, .batch = r->m->batch_max,
                              .seed = r->cfg->seed, .plateau_lr = s->plateau_lr, .plateau_best = s->best,
                              .plateau_bad_epochs = s->num_bad_epochs, .plateau_cooldown_left = s->cooldown_left,
                              .vocab = r->ds->vocab};
}

/* A checkpoint of weights that are not finite would replace the last good one: the run stops
 * with an error instead (a diverged run is an input problem: the learning rate, the data). */
static nnc_rt_train_status save(run *r) {
  if (!r->cfg->save_path) return NNC_RT_TRAIN_OK;
  char why[256];
  if (!nnc_rt_persist_finite(r->m, r->persist, why, sizeof why)) {
    nnc_rt_fail(r->err, r->cap, "the weights are not finite after step %lld (%s): %s is not written, the last checkpoint "
         "is kept (a lower learning rate may help)", (long long)r->step, why, r->cfg->save_path);
    return NNC_RT_TRAIN_BAD_INPUT;
  }
  nnc_rt_train_state st = current_state(r);
  return nnc_rt_checkpoint_save(r->cfg->save_path, r->m, r->persist, &st, r->err, r->cap) ? NNC_RT_TRAIN_OK
                                                                                         : NNC_RT_TRAIN_IO_ERROR;
}

/* One optimizer step on batch `b` of epoch `epoch`; false after filling err. */
static bool train_step(run *r, int64_t epoch, int64_t b) {
  int64_t B = r->m->batch_max, n_train = r->ds->train.n;
  int64_t start = b * B, n = n_train - start < B ? n_train - start : B;
  if (!nnc_rt_gather(r->ds, &r->ds->train, r->perm + start, n, r->io + r->v.x->offset, r->io + r->v.y->offset))
    return nnc_rt_fail(r->err, r->cap, "internal error: a batch index is out of range");
  const nnc_rt_augment *aug = &r->cfg->augment;
  if ((aug->pad > 0 || aug->flip) &&
      !nnc_rt_augment_batch(aug, r->ds, r->io + r->v.x->offset, r->perm + start, n, (uint32_t)epoch, r->err, r->cap))
    return false;
  nnc_rt_call call = {.n = n, .lr = nnc_rt_schedule_lr(&r->cfg->schedule, r->step), .step = (int32_t)r->step,
                      .seed = (uint32_t)r->cfg->seed};
  double t = now_seconds();
  if (!r->ex->run(r->ex, "train_step", r->persist, r->io, &call, r->err, r->cap)) return false;
  r->train_seconds += now_seconds() - t;
  r->samples += n;
  if (r->resident) { /* queued; its loss is read with the others' */
    r->step++;
    r->unread_steps++;
    return true;
  }
  double loss = read_f32(r->io, r->v.loss, 0);
  if (!isfinite(loss)) return nonfinite_loss(r, loss, r->step + 1);
  r->step++;
  r->epoch_loss_sum += loss * (double)n;
  r->epoch_examples += n;
  r->last_loss = loss;
  return true;
}

static bool check_resume(run *r) {
  const nnc_rt_train_state *st = r->cfg->resume;
  if (!st) return true;
  if (st->batch != r->m->batch_max)
    return nnc_rt_fail(r->err, r->cap, "the checkpoint was trained with batch %lld, this run has batch %lld", (long long)st->batch,
                (long long)r->m->batch_max);
  if (st->steps_per_epoch != r->spe)
    return nnc_rt_fail(r->err, r->cap, "the checkpoint's epochs have %lld steps, this data gives %lld (another dataset?)",
                (long long)st->steps_per_epoch, (long long)r->spe);
  r->step = st->step;
  r->cfg->seed = st->seed;
  nnc_rt_schedule *s = &r->cfg->schedule;
  s->plateau_lr = st->plateau_lr, s->best = st->plateau_best;
  s->num_bad_epochs = st->plateau_bad_epochs, s->cooldown_left = st->plateau_cooldown_left;
  return true;
}

static nnc_rt_train_status train_epochs(run *r) {
  nnc_rt_train_config *c = r->cfg;
  for (int64_t epoch = r->step / r->spe; epoch < c->epochs && r->step < r->total_steps; epoch++) {
    nnc_rt_epoch_order(r->ds->train.n, c->seed, (uint32_t)epoch, r->perm);
    for (int64_t b = r->step % r->spe; b < r->spe && r->step < r->total_steps; b++) {
      if (c->stop && *c->stop) return NNC_RT_TRAIN_STOPPED;
      if (!train_step(r, epoch, b)) return NNC_RT_TRAIN_BAD_INPUT;
      r->evaluated_last_step = false;
      if (bar_due(r, b + 1 == r->spe)) {
        if (!collect_losses(r)) return NNC_RT_TRAIN_BAD_INPUT;
        draw_bar(r, epoch, b + 1, r->last_loss);
      }
      if (b + 1 == r->spe && !end_epoch(r, epoch))
        return r->log && ferror(r->log) ? NNC_RT_TRAIN_IO_ERROR : NNC_RT_TRAIN_BAD_INPUT;
      if (c->save_every && r->step % c->save_every == 0) {
        /* no checkpoint after a non-finite loss */
        if (!collect_losses(r) || !pull_persist(r)) return NNC_RT_TRAIN_BAD_INPUT;
        nnc_rt_train_status saved = save(r);
        if (saved != NNC_RT_TRAIN_OK) return saved;
      }
    }
  }
  return NNC_RT_TRAIN_OK;
}


static void summary(run *r, nnc_rt_train_status status) {
  nnc_rt_train_config *c = r->cfg;
  clear_bar(r);
  char dur[32];
  format_duration(now_seconds() - r->t0, dur, sizeof dur);
  fprintf(c->out, "%s after %lld steps in %s (%.0f samples/s)", status == NNC_RT_TRAIN_STOPPED ? "interrupted" : "trained",
          (long long)r->step, dur, r->train_seconds > 0 ? (double)r->samples / r->train_seconds : 0.0);
  if (!isnan(r->last_eval.loss)) fprintf(c->out, "; %s loss %.4f", c->eval_name, r->last_eval.loss);
  if (!isnan(r->last_eval.accuracy)) fprintf(c->out, ", %s accuracy %.2f%%", c->eval_name, 100 * r->last_eval.accuracy);
  if (c->unigram_entropy > 0) fprintf(c->out, " (unigram entropy %.4f nats/token)", c->unigram_entropy);
  fputc('\n', c->out);
  if (c->save_path) fprintf(c->out, "checkpoint: %s (step %lld)\n", c->save_path, (long long)r->step);
  fflush(c->out);
}

/* Saves, evaluates when the last epoch was cut short, plots and reports at the end of a run. */
static nnc_rt_train_status finish(run *r, nnc_rt_train_status status) {
  if (status != NNC_RT_TRAIN_OK && status != NNC_RT_TRAIN_STOPPED) return status;
  if (!collect_losses(r)) return NNC_RT_TRAIN_BAD_INPUT;
  if (status == NNC_RT_TRAIN_OK && !r->evaluated_last_step && !evaluate(r, &r->last_eval))
    return NNC_RT_TRAIN_BAD_INPUT;
  if (!pull_persist(r)) return NNC_RT_TRAIN_BAD_INPUT;
  nnc_rt_train_status saved = save(r);
  if (saved != NNC_RT_TRAIN_OK) return saved;
  if (r->cfg->plot_path && !nnc_rt_write_plot(r->cfg->plot_path, r->rows, r->nrows, r->cfg->eval_name, r->err, r->cap))
    return NNC_RT_TRAIN_IO_ERROR;
  summary(r, status);
  return status;
}

nnc_rt_train_status nnc_rt_train(const nnc_rt_model *m, nnc_rt_executor *ex, const nnc_rt_dataset *ds, uint8_t *persist,
                                 nnc_rt_train_config *cfg, char *err, size_t cap) {
  run r = {.m = m, .ex = ex, .ds = ds, .cfg = cfg, .persist = persist, .err = err, .cap = cap, .t0 = now_seconds()};
  r.last_eval = (nnc_rt_metrics){.loss = NAN, .accuracy = NAN};
  if (ds->train.n == 0 || m->batch_max < 1) return nnc_rt_fail(err, cap, "no training examples"), NNC_RT_TRAIN_BAD_INPUT;
  r.spe = (ds->train.n + m->batch_max - 1) / m->batch_max;
  r.total_steps = cfg->epochs * r.spe;
  if (cfg->max_steps > 0 && cfg->max_steps < r.total_steps) r.total_steps = cfg->max_steps;
  if (!find_views(m, &cfg->io, &r.v, err, cap) || !check_resume(&r) ||
      !nnc_rt_schedule_finish(&cfg->schedule, cfg->epochs * r.spe, r.spe, err, cap))
    return NNC_RT_TRAIN_BAD_INPUT;
  if (r.step > r.total_steps)
    return nnc_rt_fail(err, cap, "the checkpoint is at step %lld, past the %lld steps of this run", (long long)r.step,
                (long long)r.total_steps), NNC_RT_TRAIN_BAD_INPUT;
  r.io = alloc_region(m->io_bytes);
  r.perm = malloc(sizeof *r.perm * (size_t)ds->train.n);
  nnc_rt_train_status status = NNC_RT_TRAIN_IO_ERROR;
  r.resident = ex->resident_begin != NULL;
  if (!r.io || !r.perm) nnc_rt_fail(err, cap, "out of memory");
  else if (r.resident && !ex->resident_begin(ex, persist, r.v.loss, err, cap)) status = NNC_RT_TRAIN_BAD_INPUT;
  else if (open_log(&r)) status = finish(&r, train_epochs(&r));
  if (r.resident) ex->resident_end(ex);
  if (status == NNC_RT_TRAIN_BAD_INPUT) clear_bar(&r);
  if (r.log && fclose(r.log) != 0 && status == NNC_RT_TRAIN_OK) {
    nnc_rt_fail(err, cap, "%s: write failed: %s", cfg->log_path, strerror(errno));
    status = NNC_RT_TRAIN_IO_ERROR;
  }
  free(r.rows);
  free(r.perm);
  free(r.io);
  return status;
}
