/* cuda_exec_fake: the CUDA executor (driver/exec_cuda.c) and the training loop's resident path
 * (runtime/train.c) without a GPU, through the fake driver tests/cuda_fake/fake_cuda.c, which
 * this program links as libcuda.so.1, so the executor's dlopen finds it. The kernels are the
 * real ones (NVRTC compiles xor_mlp for sm_90 and the fake reads the PTX's entry points), but
 * nothing runs them: the fake's hook stands in for what they compute (the loss of a step, a
 * change to the params), so that where values come from and when they move can be checked:
 *
 * - setup: one device allocation per region plus the control block, one pinned block, one stream;
 * - each program captured once per batch size as a graph whose nodes are the program's calls in
 *   order with the launch geometry nnc_cg_cuda_launch_dims gives at that n, train_step's ending
 *   with the accumulator; replays after that, re-captured for the last partial batch;
 * - resident train steps: only copies from pinned memory, no stream wait, lr/step/seed read by the
 *   kernels from the control block as the step ran; the losses read with one wait;
 * - nnc_rt_train on it: per-epoch train losses from the accumulator, the first non-finite step
 *   named as the CPU path names it, persist back on the host at the end;
 * - a failing driver call gives one clear error and leaves no allocation behind.
 * Without NVRTC it skips (77), under CI=true it fails. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cuda_fake/fake_cuda.h"
#include "../unit/check.h"
#include "../unit/model_run.h"
#include "codegen/cuda.h"
#include "codegen/cuda_api.h"
#include "driver/exec_cuda.h"
#include "codegen/cuda_load.h"
#include "codegen/cuda_program.h"
#include "driver/layout.h"
#include "passes/lower.h"
#include "runtime/train.h"

enum { BATCH = 3 }; /* xor's 4 examples: a batch of 3 and a partial batch of 1 per epoch */

static uint8_t *region(size_t bytes) {
  size_t size = (bytes + 63) / 64 * 64;
  uint8_t *p = aligned_alloc(64, size ? size : 64);
  if (!p) abort();
  memset(p, 0, size ? size : 64);
  return p;
}

/* ---- the stand-in for the kernels ---- */

typedef struct script {
  float *device_persist;    /* the fake's persist allocation */
  int64_t nan_step;         /* the step whose loss is NaN; -1: none */
  int64_t steps_seen;
  uint32_t step_of[64];     /* the step value each accumulator node read */
  float lr_of[64];
} script;

static float scripted_loss(uint32_t step) { return 1.0f + 0.125f * (float)step; }

/* At the accumulator: the loss "the step's kernels computed", and one change to a param (what
 * the optimizer would do), so that persist's trip to the host can be seen. */
static void on_kernel(const char *name, const unsigned grid[3], const unsigned block[3], void *const *params,
                      int nparams, void *ctx) {
  (void)grid, (void)block;
  script *s = ctx;
  if (strcmp(name, NNC_CUDA_ACCUMULATE_KERNEL) != 0 || nparams != 4) return;
  float *loss;
  const nnc_cuda_step_values *sv;
  memcpy(&loss, params[0], sizeof loss);
  memcpy(&sv, params[2], sizeof sv);
  *loss = (int64_t)sv->step == s->nan_step ? NAN : scripted_loss(sv->step);
  if (s->steps_seen < 64) s->step_of[s->steps_seen] = sv->step, s->lr_of[s->steps_seen] = sv->lr;
  s->steps_seen++;
  if (s->device_persist) s->device_persist[0] += 1.0f;
}

/* ---- the log ---- */

static int count_lines(const char *log, const char *prefix) {
  int n = 0;
  size_t len = strlen(prefix);
  for (const char *l = log; *l;) {
    if (strncmp(l, prefix, len) == 0) n++;
    const char *nl = strchr(l, '\n');
    if (!nl) break;
    l = nl + 1;
  }
  return n;
}

/* The captured launches, "name grid=(..) block=(..)" per line, of the graph that starts at the
 * k-th capture in the log. */
static char *captured(const char *log, int k) {
  const char *l = log;
  for (int i = 0; i <= k; i++) {
    l = strstr(l, "cuStreamBeginCapture_v2");
    if (!l) return NULL;
    l += 1;
  }
  const char *end = strstr(l, "cuStreamEndCapture");
  size_t cap = end ? (size_t)(end - l) + 1 : 1;
  char *out = calloc(1, cap), *o = out;
  for (l = strchr(l, '\n') + 1; end && l < end;) {
    const char *nl = strchr(l, '\n');
    if (strncmp(l, "cuLaunchKernel ", 15) == 0) {
      size_t n = (size_t)(nl - l) - 15 - strlen(" captured");
      memcpy(o, l + 15, n), o += n, *o++ = '\n';
    }
    l = nl + 1;
  }
  return out;
}

/* What a capture of program `name` at n must launch: its calls in order with their geometry,
 * as compiled for the executor. */
static char *expected_launches(const nnc_compiled *c, const char *name, int64_t n, bool accumulate) {
  char err[256];
  nnc_lprogram *progs[8] = {0}, *p = NULL;
  int np = 0;
  for (int i = 0; i < c->nprograms && np < 8; i++) {
    progs[np] = c->programs[i].lowered;
    if (strcmp(c->programs[i].name, name) == 0) p = progs[np];
    np++;
  }
  nnc_cg_cuda_name_kernels(progs, np);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  for (int i = 0; p && i < p->ncalls; i++) {
    const nnc_kernel *k = p->kernels[p->calls[i].kernel];
    int64_t g[3], b[3];
    if (!nnc_cg_cuda_launch_dims(k, n, g, b, err, sizeof err)) fprintf(f, "? %s\n", err);
    else fprintf(f, "%s grid=(%lld,%lld,%lld) block=(%lld,%lld,%lld)\n", k->name, (long long)g[0], (long long)g[1],
                 (long long)g[2], (long long)b[0], (long long)b[1], (long long)b[2]);
  }
  if (accumulate) fprintf(f, "%s grid=(1,1,1) block=(1,1,1)\n", NNC_CUDA_ACCUMULATE_KERNEL);
  fclose(f);
  return text;
}

/* ---- the checks ---- */

typedef struct fixture {
  nnc_module *m;
  nnc_compiled *c;
  nnc_source src;
  nnc_rt_model *rm;
  uint8_t *persist, *io;
  const nnc_rt_buffer *loss;
} fixture;

static bool open_fixture(fixture *f) {
  nnc_options o = mr_default_options();
  o.batch = BATCH;
  f->m = mr_compile("models/xor_mlp.nn", &o, true, &f->src, stderr);
  CHECK(f->m != NULL);
  if (!f->m) return false;
  nnc_pipeline_opts po = nnc_pipeline_defaults(NNC_LOWER_GPU);
  po.no_fusion = true; /* as --target cuda */
  f->c = mr_pipeline(f->m, &po, stderr);
  CHECK(f->c != NULL);
  if (!f->c) return false;
  f->rm = nnc_layout_model(f->c);
  f->persist = region(f->rm->persist_bytes);
  f->io = region(f->rm->io_bytes);
  nnc_layout_init_params(f->m, f->rm, 1, f->persist);
  f->loss = nnc_rt_model_buffer(f->rm, "loss");
  CHECK(f->loss != NULL);
  return f->loss != NULL;
}

static void close_fixture(fixture *f) {
  free(f->persist), free(f->io);
  nnc_layout_free(f->rm);
  nnc_compiled_free(f->c);
  nnc_module_free(f->m);
  nnc_source_free(&f->src);
}

static nnc_rt_executor *new_exec(fixture *f, script *s) {
  char err[512];
  nnc_rt_executor *ex = nnc_exec_cuda_new(f->c, f->rm, err, sizeof err);
  CHECK_MSG(ex != NULL, "%s", err);
  s->device_persist = fake_cuda_allocation(fake_cuda_live_allocations() - 5, NULL); /* 4 regions, 1 pinned */
  fake_cuda_on_kernel(on_kernel, s);
  return ex;
}

static void check_setup(fixture *f) {
  fake_cuda_log_clear();
  script s = {.nan_step = -1};
  int live = fake_cuda_live_allocations();
  nnc_rt_executor *ex = new_exec(f, &s);
  if (!ex) return;
  const char *log = fake_cuda_log();
  CHECK_MSG(count_lines(log, "cuMemAlloc_v2 ") == 4, "%s", log);
  char line[64];
  snprintf(line, sizeof line, "cuMemAlloc_v2 %zu\n", f->rm->persist_bytes + 64);
  CHECK_MSG(strstr(log, line) != NULL, "persist: %s", line);
  snprintf(line, sizeof line, "cuMemAlloc_v2 %zu\n", f->rm->io_bytes + 64);
  CHECK_MSG(strstr(log, line) != NULL, "io: %s", line);
  snprintf(line, sizeof line, "cuMemAlloc_v2 %d\n", NNC_CUDA_CONTROL_BYTES + 64);
  CHECK_MSG(strstr(log, line) != NULL, "control: %s", line);
  CHECK(count_lines(log, "cuMemHostAlloc ") == 1);
  CHECK(count_lines(log, "cuStreamCreate flags=1") == 1);
  CHECK(count_lines(log, "cuModuleLoadData") == 1);
  CHECK(count_lines(log, "cuStreamBeginCapture") == 0); /* captured when first run */
  ex->destroy(ex);
  CHECK(fake_cuda_live_allocations() == live);
  CHECK_MSG(fake_cuda_violations() == 0, "%s", fake_cuda_log());
}

/* Resident train steps queue without waiting; each graph captured once per n and replayed. */
static void check_resident_steps(fixture *f) {
  script s = {.nan_step = -1};
  nnc_rt_executor *ex = new_exec(f, &s);
  if (!ex) return;
  char err[512];
  fake_cuda_log_clear();
  CHECK_MSG(ex->resident_begin(ex, f->persist, f->loss, err, sizeof err), "%s", err);
  fake_cuda_log_clear();
  const int64_t ns[] = {3, 1, 3, 1, 3};
  for (int i = 0; i < 5; i++) {
    nnc_rt_call call = {.n = ns[i], .lr = 0.5f / (float)(i + 1), .step = 10 + i, .seed = 7};
    CHECK_MSG(ex->run(ex, "train_step", f->persist, f->io, &call, err, sizeof err), "%s", err);
  }
  const char *log = fake_cuda_log();
  CHECK_MSG(count_lines(log, "cuStreamSynchronize") == 0, "a train step waited:\n%s", log);
  CHECK(count_lines(log, "cuStreamBeginCapture") == 2);
  CHECK(count_lines(log, "cuGraphLaunch") == 5);
  CHECK(count_lines(log, "cuMemAlloc") == 0 && count_lines(log, "cuMemHostAlloc") == 0);
  CHECK(count_lines(log, "cuMemcpyHtoDAsync_v2") > 0);
  CHECK_MSG(strstr(log, "pageable") == NULL, "a step copied from or to pageable memory:\n%s", log);
  CHECK(count_lines(log, "cuMemcpyDtoHAsync") == 0);
  CHECK(count_lines(log, "run graph") <= 3); /* the host ran ahead: at most the slots' wait ran graphs */

  char *got = captured(log, 0), *want = expected_launches(f->c, "train_step", 3, true);
  CHECK_MSG(got && want && strcmp(got, want) == 0, "train_step at n=3 launched\n%s\nnot\n%s", got, want);
  free(got), free(want);
  got = captured(log, 1), want = expected_launches(f->c, "train_step", 1, true);
  CHECK_MSG(got && want && strcmp(got, want) == 0, "train_step at n=1 launched\n%s\nnot\n%s", got, want);
  free(got), free(want);

  fake_cuda_log_clear();
  nnc_rt_losses l;
  CHECK_MSG(ex->resident_losses(ex, &l, err, sizeof err), "%s", err);
  log = fake_cuda_log();
  CHECK(count_lines(log, "cuStreamSynchronize") == 1);
  CHECK(count_lines(log, "cuMemcpyDtoHAsync_v2 ") == 1 && strstr(log, "+64 -> pinned") != NULL); /* the accumulator */
  CHECK(l.steps == 5 && l.examples == 11 && l.first_nonfinite == 0);
  double want_sum = 0;
  for (int i = 0; i < 5; i++) want_sum += (double)scripted_loss((uint32_t)(10 + i)) * (double)ns[i];
  CHECK_MSG(l.sum == want_sum && l.last == scripted_loss(14), "sum %g (want %g), last %g", l.sum, want_sum,
            (double)l.last);
  /* lr and step as each step ran: read from the control block, not baked into the graph */
  CHECK(s.steps_seen == 5);
  for (int i = 0; i < 5 && i < s.steps_seen; i++)
    CHECK_MSG(s.step_of[i] == (uint32_t)(10 + i) && s.lr_of[i] == 0.5f / (float)(i + 1), "step %d: %u %g", i,
              s.step_of[i], (double)s.lr_of[i]);
  CHECK(ex->resident_losses(ex, &l, err, sizeof err) && l.steps == 0 && l.sum == 0); /* cleared by the read */

  /* persist comes back on a pull: the device's copy moved once per step */
  float before;
  memcpy(&before, f->persist, 4);
  uint8_t *back = region(f->rm->persist_bytes);
  CHECK_MSG(ex->resident_pull(ex, back, err, sizeof err), "%s", err);
  float after;
  memcpy(&after, back, 4);
  CHECK_MSG(after == before + 5.0f, "%g after %g", (double)after, (double)before);
  free(back);

  /* eval at the resident params: outputs back through pinned memory, then one wait */
  fake_cuda_log_clear();
  nnc_rt_call call = {.n = 3};
  CHECK_MSG(ex->run(ex, "eval_step", f->persist, f->io, &call, err, sizeof err), "%s", err);
  log = fake_cuda_log();
  CHECK(count_lines(log, "cuStreamSynchronize") == 1 && count_lines(log, "cuMemcpyDtoHAsync") > 0 &&
        !strstr(log, "-> pageable"));
  ex->resident_end(ex);
  ex->destroy(ex);
  CHECK_MSG(fake_cuda_violations() == 0, "%s", fake_cuda_log());
}

/* Not resident (the executor contract backend_phase --cuda relies on): persist and io go in and
 * come back with every call. */
static void check_synchronous_run(fixture *f) {
  script s = {.nan_step = -1};
  nnc_rt_executor *ex = new_exec(f, &s);
  if (!ex) return;
  char err[512];
  float p0;
  memcpy(&p0, f->persist, 4);
  nnc_rt_call call = {.n = 2, .lr = 0.1f, .step = 3, .seed = 1};
  fake_cuda_log_clear();
  CHECK_MSG(ex->run(ex, "train_step", f->persist, f->io, &call, err, sizeof err), "%s", err);
  const char *log = fake_cuda_log();
  CHECK(count_lines(log, "cuStreamSynchronize") == 1);
  /* no accumulator outside residency: the persist change of on_kernel does not happen */
  CHECK(strstr(log, "cuLaunchKernel " NNC_CUDA_ACCUMULATE_KERNEL) == NULL);
  float p1;
  memcpy(&p1, f->persist, 4);
  CHECK(p1 == p0);
  ex->destroy(ex);
  CHECK_MSG(fake_cuda_violations() == 0, "%s", fake_cuda_log());
}

static nnc_rt_dataset xor_data(void) {
  nnc_rt_dataset ds;
  char err[512];
  nnc_rt_load_options lo = {.label_kind = NNC_RT_LABELS_VALUE};
  CHECK_MSG(nnc_rt_load_csv("models/data/xor.csv", &lo, &ds, err, sizeof err), "%s", err);
  return ds;
}

static nnc_rt_train_config config(const char *log_path) {
  nnc_rt_train_config c = {.epochs = 3, .seed = 5, .io = {"x", "y", "loss", NULL}, .eval_name = "test",
                           .quiet = true, .out = stdout, .bar = stderr, .log_path = log_path};
  char err[256];
  nnc_rt_schedule_parse(&c.schedule, "constant", 0.25, err, sizeof err);
  return c;
}

/* The training loop on the executor: epoch losses from the accumulator, persist back at the end. */
static void check_training(fixture *f, const nnc_rt_dataset *ds) {
  script s = {.nan_step = -1};
  nnc_rt_executor *ex = new_exec(f, &s);
  if (!ex) return;
  char err[512], path[] = "/tmp/nnc_cuda_fake_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  nnc_rt_train_config c = config(path);
  c.eval_split = &ds->train;
  float p0;
  memcpy(&p0, f->persist, 4);
  fake_cuda_log_clear();
  CHECK_MSG(nnc_rt_train(f->rm, ex, ds, f->persist, &c, err, sizeof err) == NNC_RT_TRAIN_OK, "%s", err);
  const char *log = fake_cuda_log();
  /* train_step at 3 and 1, eval_step at 3 and 1: four captures for 6 + 6 replays */
  CHECK_MSG(count_lines(log, "cuStreamBeginCapture") == 4, "%d", count_lines(log, "cuStreamBeginCapture"));
  CHECK(count_lines(log, "cuGraphLaunch") == 12);
  CHECK(count_lines(log, "cuMemAlloc") == 0);
  float p1;
  memcpy(&p1, f->persist, 4);
  CHECK_MSG(p1 == p0 + 6.0f, "persist[0] %g, was %g", (double)p1, (double)p0);
  /* the CSV: each epoch's train loss is its steps' losses weighted by n (3, then 1) */
  FILE *csv = fopen(path, "r");
  char line[256];
  int rows = 0;
  while (csv && fgets(line, sizeof line, csv)) {
    long long epoch, step;
    double train_loss;
    if (sscanf(line, "%lld,%lld,%lf", &epoch, &step, &train_loss) != 3) continue;
    double want = (3.0 * scripted_loss((uint32_t)(2 * epoch - 2)) + scripted_loss((uint32_t)(2 * epoch - 1))) / 4.0;
    CHECK_MSG(fabs(train_loss - want) < 1e-6 && step == 2 * epoch, "%s (want %f)", line, want);
    rows++;
  }
  if (csv) fclose(csv);
  CHECK(rows == 3);
  unlink(path);
  ex->destroy(ex);
  CHECK_MSG(fake_cuda_violations() == 0, "%s", fake_cuda_log());
}

/* A NaN at step 4 (0-based 3) stops the run with the CPU path's words, at the next read. */
static void check_nonfinite(fixture *f, const nnc_rt_dataset *ds) {
  script s = {.nan_step = 3};
  nnc_rt_executor *ex = new_exec(f, &s);
  if (!ex) return;
  char err[512];
  nnc_rt_train_config c = config(NULL);
  CHECK(nnc_rt_train(f->rm, ex, ds, f->persist, &c, err, sizeof err) == NNC_RT_TRAIN_BAD_INPUT);
  CHECK_MSG(strcmp(err, "loss is nan at step 4 (epoch 2)") == 0, "%s", err);
  ex->destroy(ex);
}

/* Driver failures: one message naming the call and the error, and nothing left allocated. */
static void check_failures(fixture *f, const nnc_rt_dataset *ds) {
  char err[512];
  int live = fake_cuda_live_allocations();
  fake_cuda_fail_call("cuMemHostAlloc", 1, NNC_CUDA_ERROR_OUT_OF_MEMORY);
  nnc_rt_executor *ex = nnc_exec_cuda_new(f->c, f->rm, err, sizeof err);
  CHECK(ex == NULL);
  CHECK_MSG(strcmp(err, "CUDA: cuMemHostAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (2)") == 0, "%s", err);
  CHECK(fake_cuda_live_allocations() == live);

  script s = {.nan_step = -1};
  ex = new_exec(f, &s);
  if (!ex) return;
  nnc_rt_call call = {.n = 3, .lr = 0.1f};
  fake_cuda_fail_call("cuLaunchKernel", 2, NNC_CUDA_ERROR_INVALID_VALUE); /* mid-capture */
  CHECK(!ex->run(ex, "eval_step", f->persist, f->io, &call, err, sizeof err));
  CHECK_MSG(strstr(err, "failed: CUDA_ERROR_INVALID_VALUE (1)") != NULL, "%s", err);
  CHECK_MSG(ex->run(ex, "eval_step", f->persist, f->io, &call, err, sizeof err), "the stream stays usable: %s", err);

  fake_cuda_fail_call("cuStreamSynchronize", 2, NNC_CUDA_ERROR_LAUNCH_FAILED); /* the first read of the losses */
  nnc_rt_train_config c = config(NULL);
  CHECK(nnc_rt_train(f->rm, ex, ds, f->persist, &c, err, sizeof err) == NNC_RT_TRAIN_BAD_INPUT);
  CHECK_MSG(strcmp(err, "CUDA: running the queued train steps failed: CUDA_ERROR_LAUNCH_FAILED (719)") == 0, "%s",
            err);
  fake_cuda_fail_call("cuGraphLaunch", 1, NNC_CUDA_ERROR_ILLEGAL_ADDRESS);
  CHECK(nnc_rt_train(f->rm, ex, ds, f->persist, &c, err, sizeof err) == NNC_RT_TRAIN_BAD_INPUT);
  CHECK_MSG(strcmp(err, "CUDA: cuGraphLaunch failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)") == 0, "%s", err);
  ex->destroy(ex);
  CHECK(fake_cuda_live_allocations() == live);
  CHECK_MSG(fake_cuda_violations() == 0, "%s", fake_cuda_log());
}

int main(void) {
  char err[512];
  nnc_diags why;
  nnc_cg_cuda_nvrtc *nv = nnc_cg_cuda_nvrtc_open(nnc_diags_init_buffer(&why, err, sizeof err));
  if (!nv) {
    printf("skipped: %s\n", err);
    const char *ci = getenv("CI");
    return ci && strcmp(ci, "true") == 0 ? 1 : 77;
  }
  nnc_cg_cuda_nvrtc_close(nv);
  fixture f = {0};
  if (open_fixture(&f)) {
    nnc_rt_dataset ds = xor_data();
    check_setup(&f);
    check_resident_steps(&f);
    check_synchronous_run(&f);
    check_training(&f, &ds);
    check_nonfinite(&f, &ds);
    check_failures(&f, &ds);
    nnc_rt_dataset_free(&ds);
  }
  close_fixture(&f);
  return check_summary();
}
