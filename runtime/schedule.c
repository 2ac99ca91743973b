/* Learning-rate schedules; see schedule.h for the formulas and docs/training.md. */
#include "runtime/schedule.h"
#include "runtime/report.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double pi = 3.14159265358979323846;


static const struct {
  const char *name;
  nnc_rt_schedule_kind kind;
} kind_names[] = {
    {"constant", NNC_RT_SCHED_CONSTANT}, {"warmup", NNC_RT_SCHED_CONSTANT},
    {"step", NNC_RT_SCHED_STEP},         {"exponential", NNC_RT_SCHED_EXPONENTIAL},
    {"cosine", NNC_RT_SCHED_COSINE},     {"plateau", NNC_RT_SCHED_PLATEAU},
    {"reduce_on_plateau", NNC_RT_SCHED_PLATEAU},
};

static const char *kind_name(nnc_rt_schedule_kind k) {
  for (size_t i = 0; i < sizeof kind_names / sizeof *kind_names; i++)
    if (kind_names[i].kind == k && strcmp(kind_names[i].name, "warmup") != 0) return kind_names[i].name;
  return "?";
}

bool nnc_rt_schedule_init(nnc_rt_schedule *s, const char *kind, double lr, char *err, size_t cap) {
  memset(s, 0, sizeof *s);
  size_t i = 0, n = sizeof kind_names / sizeof *kind_names;
  while (i < n && strcmp(kind_names[i].name, kind) != 0) i++;
  if (i == n)
    return nnc_rt_fail(err, cap, "unknown schedule '%s' (constant, step, exponential, cosine, warmup, plateau)",
                kind);
  s->kind = kind_names[i].kind;
  s->lr = lr;
  s->gamma = s->kind == NNC_RT_SCHED_STEP ? 0.1 : 0;
  s->factor = 0.1;
  s->patience = 10;
  s->threshold = 1e-4;
  s->eps = 1e-8;
  s->plateau_lr = lr;
  s->best = INFINITY;
  return true;
}

#define ALL_KINDS 0x1f
#define KIND(k) (1u << (k))

/* The keyword arguments: where each lives, whether it counts, and which kinds take it. */
static const struct {
  const char *key;
  size_t offset;
  bool is_count;
  unsigned kinds;
} keys[] = {
#define REAL(name, kinds) {#name, offsetof(nnc_rt_schedule, name), false, kinds}
#define COUNT(name, kinds) {#name, offsetof(nnc_rt_schedule, name), true, kinds}
    REAL(lr, ALL_KINDS),
    COUNT(warmup, ALL_KINDS),
    REAL(start_factor, ALL_KINDS),
    COUNT(total_steps, KIND(NNC_RT_SCHED_COSINE)),
    REAL(eta_min, KIND(NNC_RT_SCHED_COSINE)),
    REAL(gamma, KIND(NNC_RT_SCHED_STEP) | KIND(NNC_RT_SCHED_EXPONENTIAL)),
    COUNT(step_size, KIND(NNC_RT_SCHED_STEP)),
    COUNT(per_epoch, KIND(NNC_RT_SCHED_STEP) | KIND(NNC_RT_SCHED_EXPONENTIAL)),
    COUNT(steps_per_epoch, KIND(NNC_RT_SCHED_STEP) | KIND(NNC_RT_SCHED_EXPONENTIAL)),
    REAL(factor, KIND(NNC_RT_SCHED_PLATEAU)),
    COUNT(patience, KIND(NNC_RT_SCHED_PLATEAU)),
    REAL(threshold, KIND(NNC_RT_SCHED_PLATEAU)),
    COUNT(cooldown, KIND(NNC_RT_SCHED_PLATEAU)),
    REAL(min_lr, KIND(NNC_RT_SCHED_PLATEAU)),
    REAL(eps, KIND(NNC_RT_SCHED_PLATEAU)),
#undef REAL
#undef COUNT
};

bool nnc_rt_schedule_set(nnc_rt_schedule *s, const char *key, double value, char *err, size_t cap) {
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    if (strcmp(keys[i].key, key) != 0) continue;
    if (!(keys[i].kinds & KIND(s->kind)))
      return nnc_rt_fail(err, cap, "schedule %s takes no '%s'", kind_name(s->kind), key);
    if (!isfinite(value)) return nnc_rt_fail(err, cap, "schedule %s: %s is not finite", kind_name(s->kind), key);
    char *field = (char *)s + keys[i].offset;
    if (strcmp(key, "per_epoch") == 0) {
      if (value != 0 && value != 1) return nnc_rt_fail(err, cap, "per_epoch is 0 or 1, not %g", value);
      s->per_epoch = value == 1;
    } else if (keys[i].is_count) {
      if (!(value >= 0 && value <= 9e15 && value == floor(value)))
        return nnc_rt_fail(err, cap, "schedule %s: %s must be a non-negative integer, not %g", kind_name(s->kind),
                    key, value);
      *(int64_t *)(void *)field = (int64_t)value;
    } else {
      *(double *)(void *)field = value;
    }
    if (strcmp(key, "lr") == 0) s->plateau_lr = value;
    return true;
  }
  return nnc_rt_fail(err, cap, "schedule %s: unknown keyword '%s'", kind_name(s->kind), key);
}

/* name [ "(" [ key "=" number { "," key "=" number } ] ")" ] */
bool nnc_rt_schedule_parse(nnc_rt_schedule *s, const char *spec, double lr, char *err, size_t cap) {
  const char *p = spec;
  char name[32], key[32];
  size_t n = 0;
  while (isspace((unsigned char)*p)) p++;
  while ((isalnum((unsigned char)*p) || *p == '_') && n + 1 < sizeof name) name[n++] = *p++;
  name[n] = 0;
  if (!nnc_rt_schedule_init(s, name, lr, err, cap)) return false;
  while (isspace((unsigned char)*p)) p++;
  if (*p == 0) return true;
  if (*p++ != '(') return nnc_rt_fail(err, cap, "schedule '%s': expected '(' after the name", spec);
  for (;;) {
    while (isspace((unsigned char)*p)) p++;
    if (*p == ')') break;
    n = 0;
    while ((isalnum((unsigned char)*p) || *p == '_') && n + 1 < sizeof key) key[n++] = *p++;
    key[n] = 0;
    while (isspace((unsigned char)*p)) p++;
    if (n == 0 || *p++ != '=') return nnc_rt_fail(err, cap, "schedule '%s': expected key=number", spec);
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno == ERANGE)
      return nnc_rt_fail(err, cap, "schedule '%s': '%s' needs a number", spec, key);
    if (!nnc_rt_schedule_set(s, key, v, err, cap)) return false;
    p = end;
    while (isspace((unsigned char)*p)) p++;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p != ')') return nnc_rt_fail(err, cap, "schedule '%s': expected ',' or ')'", spec);
  }
  p++;
  while (isspace((unsigned char)*p)) p++;
  if (*p) return nnc_rt_fail(err, cap, "schedule '%s': text after ')'", spec);
  return true;
}

bool nnc_rt_schedule_finish(nnc_rt_schedule *s, int64_t total_steps, int64_t steps_per_epoch, char *err,
                            size_t cap) {
  const char *k = kind_name(s->kind);
  if (s->total_steps == 0) s->total_steps = total_steps;
  if (s->steps_per_epoch == 0) s->steps_per_epoch = steps_per_epoch;
  if (!(s->lr >= 0 && isfinite(s->lr))) return nnc_rt_fail(err, cap, "schedule %s: lr %g is not >= 0", k, s->lr);
  if (!(s->start_factor >= 0 && s->start_factor <= 1))
    return nnc_rt_fail(err, cap, "schedule %s: start_factor %g is not in [0, 1]", k, s->start_factor);
  switch (s->kind) {
  case NNC_RT_SCHED_CONSTANT:
    break;
  case NNC_RT_SCHED_STEP:
  case NNC_RT_SCHED_EXPONENTIAL:
    if (s->kind == NNC_RT_SCHED_STEP && s->step_size <= 0)
      return nnc_rt_fail(err, cap, "schedule step needs step_size > 0");
    if (!(s->gamma > 0)) return nnc_rt_fail(err, cap, "schedule %s needs gamma > 0", k);
    if (s->per_epoch && s->steps_per_epoch <= 0)
      return nnc_rt_fail(err, cap, "schedule %s: per_epoch needs steps_per_epoch > 0", k);
    break;
  case NNC_RT_SCHED_COSINE:
    if (s->total_steps <= s->warmup)
      return nnc_rt_fail(err, cap, "schedule cosine: total_steps %lld must exceed warmup %lld",
                  (long long)s->total_steps, (long long)s->warmup);
    if (!(s->eta_min >= 0)) return nnc_rt_fail(err, cap, "schedule cosine: eta_min %g is negative", s->eta_min);
    break;
  case NNC_RT_SCHED_PLATEAU:
    if (!(s->factor > 0 && s->factor < 1))
      return nnc_rt_fail(err, cap, "schedule plateau: factor %g is not in (0, 1)", s->factor);
    if (!(s->threshold >= 0 && s->min_lr >= 0 && s->eps >= 0))
      return nnc_rt_fail(err, cap, "schedule plateau: threshold, min_lr and eps must be >= 0");
    break;
  }
  return true;
}

float nnc_rt_schedule_lr(const nnc_rt_schedule *s, int64_t step) {
  if (step < 0) step = 0;
  if (step < s->warmup) {
    double f = s->start_factor + (1 - s->start_factor) * (double)step / (double)s->warmup;
    return (float)(s->lr * f);
  }
  int64_t t = step - s->warmup;
  if (s->per_epoch && s->steps_per_epoch > 0) t /= s->steps_per_epoch;
  switch (s->kind) {
  case NNC_RT_SCHED_CONSTANT:
    return (float)s->lr;
  case NNC_RT_SCHED_STEP:
    return (float)(s->lr * pow(s->gamma, (double)(t / (s->step_size > 0 ? s->step_size : 1))));
  case NNC_RT_SCHED_EXPONENTIAL:
    return (float)(s->lr * pow(s->gamma, (double)t));
  case NNC_RT_SCHED_COSINE: {
    /* Past T the rate stays at eta_min (PyTorch's cosine would climb back). */
    int64_t T = s->total_steps - s->warmup;
    if (T <= 0) return (float)s->eta_min;
    double x = (double)(t < T ? t : T) / (double)T;
    return (float)(s->eta_min + (s->lr - s->eta_min) * (1 + cos(pi * x)) / 2);
  }
  case NNC_RT_SCHED_PLATEAU:
    return (float)s->plateau_lr;
  }
  return (float)s->lr;
}

/* ReduceLROnPlateau.step(metrics) with mode 'min', threshold_mode 'rel'. */
bool nnc_rt_schedule_observe(nnc_rt_schedule *s, double loss) {
  if (s->kind != NNC_RT_SCHED_PLATEAU) return false;
  if (loss < s->best * (1 - s->threshold)) {
    s->best = loss;
    s->num_bad_epochs = 0;
  } else {
    s->num_bad_epochs++;
  }
  if (s->cooldown_left > 0) {
    s->cooldown_left--;
    s->num_bad_epochs = 0; /* bad epochs during cooldown do not count */
  }
  if (s->num_bad_epochs <= s->patience) return false;
  s->cooldown_left = s->cooldown;
  s->num_bad_epochs = 0;
  double reduced = fmax(s->plateau_lr * s->factor, s->min_lr);
  if (s->plateau_lr - reduced <= s->eps) return false;
  s->plateau_lr = reduced;
  return true;
}
