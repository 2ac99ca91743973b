/* Learning-rate schedules against values worked out by hand from PyTorch's formulas.
 *
 * With arguments it prints rates for tests/torch/schedules.py, which compares them with
 * torch.optim.lr_scheduler:
 *   test_schedule --print SPEC LR STEPS TOTAL_STEPS STEPS_PER_EPOCH   the rate of steps 0..STEPS-1
 *   test_schedule --plateau SPEC LR LOSS...                          the rate after each loss */
#include "runtime/schedule.h"

#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char err[256];

static nnc_rt_schedule make(const char *spec, double lr, int64_t total, int64_t per_epoch) {
  nnc_rt_schedule s;
  bool ok = nnc_rt_schedule_parse(&s, spec, lr, err, sizeof err) &&
            nnc_rt_schedule_finish(&s, total, per_epoch, err, sizeof err);
  CHECK_MSG(ok, "%s: %s", spec, err);
  return s;
}

#define CHECK_LR(s, step, want)                                                              \
  do {                                                                                       \
    double got_ = nnc_rt_schedule_lr(&(s), step), want_ = (want);                            \
    CHECK_MSG(fabs(got_ - want_) <= 1e-6 * fabs(want_) + 1e-9, "step %d: %.9g, want %.9g", \
              (int)(step), got_, want_);                                                     \
  } while (0)

static void test_constant_step_exponential(void) {
  nnc_rt_schedule s = make("constant", 0.1, 0, 0);
  CHECK_LR(s, 0, 0.1);
  CHECK_LR(s, 123456, 0.1);

  s = make("step(step_size=3, gamma=0.5)", 1, 0, 0);
  CHECK_LR(s, 0, 1);
  CHECK_LR(s, 2, 1);
  CHECK_LR(s, 3, 0.5);
  CHECK_LR(s, 5, 0.5);
  CHECK_LR(s, 6, 0.25);
  s = make("step(step_size=3)", 1, 0, 0); /* StepLR's default gamma */
  CHECK_LR(s, 3, 0.1);

  /* Per epoch: 10 steps an epoch, a decay every 2 epochs. */
  s = make("step(step_size=2, gamma=0.1, per_epoch=1)", 1, 0, 10);
  CHECK_LR(s, 19, 1);
  CHECK_LR(s, 20, 0.1);
  CHECK_LR(s, 45, 0.01);

  s = make("exponential(gamma=0.9)", 1, 0, 0);
  CHECK_LR(s, 0, 1);
  CHECK_LR(s, 3, 0.729);
  s = make("exponential(gamma=0.5, per_epoch=1, steps_per_epoch=4)", 2, 0, 100);
  CHECK(s.steps_per_epoch == 4); /* an explicit value wins over the run's */
  CHECK_LR(s, 7, 1);
  CHECK_LR(s, 8, 0.5);
}

static void test_cosine_and_warmup(void) {
  nnc_rt_schedule s = make("cosine", 1, 100, 0);
  CHECK(s.total_steps == 100);
  CHECK_LR(s, 0, 1);
  CHECK_LR(s, 25, (1 + sqrt(0.5)) / 2); /* (1 + cos(pi / 4)) / 2 */
  CHECK_LR(s, 50, 0.5);
  CHECK_LR(s, 100, 0);
  CHECK_LR(s, 150, 0); /* held at eta_min past the end */

  s = make("cosine(eta_min=0.1, total_steps=100)", 1, 5000, 0);
  CHECK_LR(s, 50, 0.55);
  CHECK_LR(s, 100, 0.1);

  /* Warmup then cosine: the cosine spans the 100 steps after a 10-step warmup from 0. */
  s = make("cosine(warmup=10, total_steps=110)", 1, 0, 0);
  CHECK_LR(s, 0, 0);
  CHECK_LR(s, 5, 0.5);
  CHECK_LR(s, 9, 0.9);
  CHECK_LR(s, 10, 1);
  CHECK_LR(s, 60, 0.5);
  CHECK_LR(s, 110, 0);

  /* LinearLR with a start factor: 0.25 -> 1 over 4 steps, then constant. */
  s = make("warmup(warmup=4, start_factor=0.25)", 2, 0, 0);
  CHECK_LR(s, 0, 0.5);
  CHECK_LR(s, 2, 1.25);
  CHECK_LR(s, 4, 2);
  CHECK_LR(s, 1000, 2);

  /* Warmup before a step decay: t counts from the end of warmup. */
  s = make("step(warmup=5, step_size=10, gamma=0.5)", 1, 0, 0);
  CHECK_LR(s, 14, 1);
  CHECK_LR(s, 15, 0.5);
}

static void test_plateau(void) {
  /* PyTorch's defaults: factor 0.1, patience 10, threshold 1e-4 relative. */
  nnc_rt_schedule s = make("plateau", 1, 0, 0);
  CHECK(s.factor == 0.1 && s.patience == 10 && s.threshold == 1e-4 && s.cooldown == 0);
  CHECK(!nnc_rt_schedule_observe(&s, 1.0));
  for (int i = 0; i < 10; i++) CHECK(!nnc_rt_schedule_observe(&s, 0.99995)); /* not 1e-4 better */
  CHECK_LR(s, 0, 1);
  CHECK(nnc_rt_schedule_observe(&s, 1.0)); /* the 11th bad epoch */
  CHECK_LR(s, 0, 0.1);
  CHECK(s.num_bad_epochs == 0);

  /* patience 1, factor 0.5, cooldown 1, min_lr 0.2:
   * loss 5 best; 5 bad1; 5 bad2 -> 0.5 (cooldown 1); 5 cooldown; 5 bad1; 5 bad2 -> 0.25;
   * 4 better (ends the cooldown); 4 bad1; 4 bad2 -> max(0.125, 0.2) = 0.2; then no change. */
  s = make("reduce_on_plateau(patience=1, factor=0.5, cooldown=1, min_lr=0.2)", 1, 0, 0);
  static const double loss[] = {5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4};
  static const double want[] = {1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2};
  for (size_t i = 0; i < sizeof loss / sizeof *loss; i++) {
    nnc_rt_schedule_observe(&s, loss[i]);
    CHECK_MSG(fabs(nnc_rt_schedule_lr(&s, 0) - want[i]) < 1e-7, "epoch %zu: %g, want %g", i,
              nnc_rt_schedule_lr(&s, 0), want[i]);
  }
  /* A warmup in front of plateau applies to the steps before it. */
  s = make("plateau(warmup=2)", 1, 0, 0);
  CHECK_LR(s, 1, 0.5);
  CHECK_LR(s, 2, 1);
  /* Other kinds ignore the loss. */
  s = make("cosine", 1, 10, 0);
  CHECK(!nnc_rt_schedule_observe(&s, 1) && !nnc_rt_schedule_observe(&s, 2));
}

static void check_error(const char *spec, int64_t total, int64_t per_epoch, const char *needle) {
  nnc_rt_schedule s;
  err[0] = 0;
  bool ok = nnc_rt_schedule_parse(&s, spec, 0.1, err, sizeof err) &&
            nnc_rt_schedule_finish(&s, total, per_epoch, err, sizeof err);
  CHECK_MSG(!ok && strstr(err, needle), "%s: expected '%s', got '%s'", spec, needle, err);
}

static void test_spec_errors(void) {
  nnc_rt_schedule s = make("  cosine ( warmup = 200 , eta_min=1e-5 ) ", 3e-4, 1000, 0);
  CHECK(s.kind == NNC_RT_SCHED_COSINE && s.warmup == 200 && s.eta_min == 1e-5 && s.lr == 3e-4);
  s = make("constant(lr=0.5)", 0.1, 0, 0);
  CHECK_LR(s, 0, 0.5);
  s = make("plateau(lr=0.5)", 0.1, 0, 0);
  CHECK_LR(s, 0, 0.5);
  check_error("linear", 0, 0, "unknown schedule 'linear'");
  check_error("cosine(gamma=0.1)", 100, 0, "schedule cosine takes no 'gamma'");
  check_error("cosine(warm=1)", 100, 0, "unknown keyword 'warm'");
  check_error("step(step_size=2.5)", 0, 0, "step_size must be a non-negative integer");
  check_error("step(step_size=-1)", 0, 0, "step_size must be a non-negative integer");
  check_error("step(step_size=3", 0, 0, "expected ',' or ')'");
  check_error("step[step_size=3]", 0, 0, "expected '(' after the name");
  check_error("cosine(warmup=x)", 100, 0, "'warmup' needs a number");
  check_error("cosine(warmup)", 100, 0, "expected key=number");
  check_error("cosine(warmup=1) x", 100, 0, "text after ')'");
  check_error("cosine(eta_min=inf)", 100, 0, "eta_min is not finite");
  check_error("cosine", 0, 0, "total_steps 0 must exceed warmup 0");
  check_error("cosine(warmup=100)", 100, 0, "total_steps 100 must exceed warmup 100");
  check_error("step", 0, 0, "step needs step_size > 0");
  check_error("step(step_size=1, gamma=0)", 0, 0, "needs gamma > 0");
  check_error("exponential", 0, 0, "exponential needs gamma > 0");
  check_error("exponential(gamma=0.9, per_epoch=1)", 0, 0, "per_epoch needs steps_per_epoch > 0");
  check_error("exponential(gamma=0.9, per_epoch=2)", 0, 0, "per_epoch is 0 or 1");
  check_error("plateau(factor=1)", 0, 0, "factor 1 is not in (0, 1)");
  check_error("warmup(warmup=3, start_factor=2)", 0, 0, "start_factor 2 is not in [0, 1]");
  check_error("constant(lr=-1)", 0, 0, "lr -1 is not >= 0");
}

/* Rates for tests/torch/schedules.py. */
static int print_rates(int argc, char **argv) {
  nnc_rt_schedule s;
  bool plateau = strcmp(argv[1], "--plateau") == 0;
  if (argc < 4 || !nnc_rt_schedule_parse(&s, argv[2], atof(argv[3]), err, sizeof err) ||
      !nnc_rt_schedule_finish(&s, argc > 5 && !plateau ? atoll(argv[5]) : 0,
                              argc > 6 && !plateau ? atoll(argv[6]) : 0, err, sizeof err)) {
    fprintf(stderr, "%s\n", argc < 4 ? "usage: see the top of test_schedule.c" : err);
    return 2;
  }
  if (plateau) {
    for (int i = 4; i < argc; i++) {
      nnc_rt_schedule_observe(&s, atof(argv[i]));
      printf("%.9g\n", nnc_rt_schedule_lr(&s, 0));
    }
  } else {
    int64_t steps = argc > 4 ? atoll(argv[4]) : 0;
    for (int64_t t = 0; t < steps; t++) printf("%.9g\n", nnc_rt_schedule_lr(&s, t));
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1) return print_rates(argc, argv);
  test_constant_step_exponential();
  test_cosine_and_warmup();
  test_plateau();
  test_spec_errors();
  return check_summary();
}
