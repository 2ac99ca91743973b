/* Learning-rate schedules: PyTorch's formulas (torch.optim.lr_scheduler) as pure functions of
 * the optimizer step, so a resumed run computes the same rate without replaying anything.
 * docs/training.md gives every formula. Reduce-on-plateau is the one stateful schedule: its
 * state is the fields under "plateau state", which a checkpoint saves.
 *
 *   constant      lr
 *   step          lr * gamma^floor(t / step_size)         StepLR
 *   exponential   lr * gamma^t                            ExponentialLR
 *   cosine        eta_min + (lr - eta_min)(1 + cos(pi t / T)) / 2,  T = total_steps - warmup
 *                                                         CosineAnnealingLR (t clamped to T)
 *   plateau       lr, times factor after patience epochs without improvement   ReduceLROnPlateau
 *
 * Every kind may start with a linear warmup of `warmup` steps from start_factor * lr to lr
 * (LinearLR), after which t counts from 0 (SequentialLR). t counts optimizer steps, or epochs
 * for step and exponential when per_epoch is set (t = (step - warmup) / steps_per_epoch).
 *
 * Specs: "cosine(warmup=200, eta_min=1e-5)", "step(step_size=30, gamma=0.1, per_epoch=1)",
 * "exponential(gamma=0.95)", "plateau(factor=0.5, patience=3)", "constant", "warmup(warmup=100)"
 * (constant after warmup). */
#ifndef NNC_SCHEDULE_H
#define NNC_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nnc_rt_schedule_kind {
  NNC_RT_SCHED_CONSTANT,
  NNC_RT_SCHED_STEP,
  NNC_RT_SCHED_EXPONENTIAL,
  NNC_RT_SCHED_COSINE,
  NNC_RT_SCHED_PLATEAU,
} nnc_rt_schedule_kind;

typedef struct nnc_rt_schedule {
  nnc_rt_schedule_kind kind;
  double lr;               /* the base rate */
  int64_t warmup;          /* steps of linear warmup; 0: none */
  double start_factor;     /* warmup starts at start_factor * lr; default 0 */
  int64_t total_steps;     /* cosine: all steps, warmup included */
  double eta_min;          /* cosine: the final rate; default 0 */
  double gamma;            /* step (default 0.1), exponential (required) */
  int64_t step_size;       /* step: required */
  bool per_epoch;          /* step, exponential: t counts epochs */
  int64_t steps_per_epoch; /* needed by per_epoch */
  /* plateau, PyTorch's defaults: mode 'min', threshold_mode 'rel' */
  double factor;           /* 0.1 */
  int64_t patience;        /* 10 */
  double threshold;        /* 1e-4 */
  int64_t cooldown;        /* 0 */
  double min_lr;           /* 0 */
  double eps;              /* 1e-8: smaller reductions are skipped */
  /* plateau state */
  double plateau_lr;       /* the current rate */
  double best;             /* +inf until the first observation */
  int64_t num_bad_epochs;
  int64_t cooldown_left;
} nnc_rt_schedule;

/* A schedule of the named kind ("constant", "step", "exponential", "cosine", "plateau" or
 * "reduce_on_plateau", "warmup") with base rate lr and PyTorch's defaults. */
bool nnc_rt_schedule_init(nnc_rt_schedule *, const char *kind, double lr, char *err, size_t cap);

/* Sets one keyword argument (lr, warmup, start_factor, total_steps, eta_min, gamma, step_size,
 * per_epoch, steps_per_epoch, factor, patience, threshold, cooldown, min_lr, eps); a keyword
 * the kind does not take, or a count that is not a non-negative integer, is an error. */
bool nnc_rt_schedule_set(nnc_rt_schedule *, const char *key, double value, char *err, size_t cap);

/* Parses "name" or "name(key=number, ...)" over base rate lr. */
bool nnc_rt_schedule_parse(nnc_rt_schedule *, const char *spec, double lr, char *err, size_t cap);

/* Fills what the run decides (total_steps and steps_per_epoch, where not given) and checks that
 * the schedule is complete and sane. Call before the first nnc_rt_schedule_lr. */
bool nnc_rt_schedule_finish(nnc_rt_schedule *, int64_t total_steps, int64_t steps_per_epoch, char *err,
                            size_t cap);

/* The rate for optimizer step `step` (0-based). */
float nnc_rt_schedule_lr(const nnc_rt_schedule *, int64_t step);

/* Reduce-on-plateau: feed the evaluation loss after each epoch. Returns true when the rate was
 * reduced. A no-op for the other kinds. */
bool nnc_rt_schedule_observe(nnc_rt_schedule *, double loss);

#endif
