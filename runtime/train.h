/* The training loop (DESIGN §11, docs/training.md): epochs of shuffled batches through any
 * executor, evaluation after each epoch, progress, a metrics CSV, an SVG plot, periodic and
 * final checkpoints, and exact resume. Depends on no compiler code. */
#ifndef NNC_RT_TRAIN_H
#define NNC_RT_TRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "checkpoint.h"
#include "data.h"
#include "model.h"
#include "schedule.h"

/* The io buffers a run feeds and reads. logits may be NULL (no accuracy: not a classifier). */
typedef struct nnc_rt_io_names {
  const char *x, *y, *loss, *logits;
} nnc_rt_io_names;

typedef struct nnc_rt_metrics {
  double loss;       /* mean over all examples (a sequence model's loss is per token already) */
  double accuracy;   /* fraction of labels correct (every position's, for [B, T] labels); NaN
                      * without logits */
  int64_t n;
} nnc_rt_metrics;

typedef struct nnc_rt_train_config {
  int64_t epochs;                 /* the run's total, epochs done before a resume included */
  int64_t max_steps;              /* 0: none; else stop once this many steps are taken in all */
  int64_t save_every;             /* 0: only at the end */
  uint64_t seed;
  nnc_rt_schedule schedule;       /* parsed; the loop fills total_steps and steps_per_epoch */
  nnc_rt_io_names io;
  const nnc_rt_split *eval_split; /* NULL or empty: no evaluation */
  const char *eval_name;          /* "test", "validation", ... in messages */
  const char *log_path, *plot_path, *save_path;
  const nnc_rt_train_state *resume; /* NULL: a fresh start */
  bool quiet;                     /* no per-epoch lines and no progress bar */
  bool progress_bar;              /* redraw a bar on `bar` (a terminal) */
  FILE *out;                      /* per-epoch lines and the summary */
  FILE *bar;
  volatile sig_atomic_t *stop;    /* set (e.g. by SIGINT): save if asked, then return STOPPED */
  double unigram_entropy;         /* > 0: the text's, shown in the summary beside the loss */
  nnc_rt_augment augment;         /* images: crop padding / flip per batch; zero: none */
} nnc_rt_train_config;

typedef enum nnc_rt_train_status {
  NNC_RT_TRAIN_OK,
  NNC_RT_TRAIN_STOPPED,     /* *stop was set; the checkpoint (if any) was written */
  NNC_RT_TRAIN_BAD_INPUT,   /* a non-finite loss, a program failure, a checkpoint that does not fit */
  NNC_RT_TRAIN_IO_ERROR,    /* an output file could not be written */
} nnc_rt_train_status;

/* Trains from the params in persist (initialized or loaded by the caller). The error, if any,
 * is one message in err. */
nnc_rt_train_status nnc_rt_train(const nnc_rt_model *, nnc_rt_executor *, const nnc_rt_dataset *, uint8_t *persist,
                                 nnc_rt_train_config *, char *err, size_t cap);

/* Runs eval_step over every example of split in order, in batches of B_max (the last one
 * partial). io must be m->io_bytes long. */
bool nnc_rt_evaluate(const nnc_rt_model *, nnc_rt_executor *, const nnc_rt_dataset *, const nnc_rt_split *,
                     const nnc_rt_io_names *, uint8_t *persist, uint8_t *io, nnc_rt_metrics *, char *err, size_t cap);

#endif
