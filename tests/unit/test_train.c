/* The training runtime on its own: seeded parameter initialization, checkpoint round trips and
 * rejections, and the loop over a hand-written executor (a one-weight regression whose
 * gradient is computed here), including exact resume, a non-finite loss and a stop request. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ir/ir.h"
#include "runtime/checkpoint.h"
#include "runtime/safetensors.h"
#include "runtime/train.h"

static char tmpdir[] = "/tmp/nnc-unit-train-XXXXXX";

static const char *tmp(const char *name) {
  static char buf[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

/* ---- initialization ---- */

static void test_init(void) {
  nnc_param p = {.name = "w", .type = nnc_type_make(NNC_F32, 1, (int64_t[]){4000}, -1),
                 .init = {NNC_INIT_UNIFORM, -0.5, 0.25}, .tied_to = -1};
  float *a = calloc(4000, 4), *b = calloc(4000, 4), *c = calloc(4000, 4);
  nnc_param_init_values(&p, 7, 2, a, 4000);
  nnc_param_init_values(&p, 7, 2, b, 4000);
  nnc_param_init_values(&p, 7, 3, c, 4000);
  CHECK(memcmp(a, b, 4000 * 4) == 0);   /* reproducible */
  CHECK(memcmp(a, c, 4000 * 4) != 0);   /* another param draws other values */
  bool in_range = true;
  double sum = 0;
  for (int i = 0; i < 4000; i++) in_range &= a[i] >= -0.5f && a[i] < 0.25f, sum += a[i];
  CHECK(in_range);
  CHECK(fabs(sum / 4000 - (-0.125)) < 0.02);
  p.init = (nnc_init){NNC_INIT_NORMAL, 1.0, 2.0};
  nnc_param_init_values(&p, 7, 2, a, 4000);
  double m = 0, v = 0;
  for (int i = 0; i < 4000; i++) m += a[i];
  m /= 4000;
  for (int i = 0; i < 4000; i++) v += (a[i] - m) * (a[i] - m);
  CHECK_MSG(fabs(m - 1.0) < 0.15 && fabs(sqrt(v / 4000) - 2.0) < 0.15, "mean %g std %g", m, sqrt(v / 4000));
  p.init = (nnc_init){NNC_INIT_CONST, 0.5, 0};
  nnc_param_init_values(&p, 7, 2, a, 4);
  CHECK(a[0] == 0.5f && a[3] == 0.5f);
  free(a), free(b), free(c);
}

/* ---- a model of three persist buffers and io for a 1-weight regression ---- */

enum { B = 4 };

static nnc_rt_buffer buf(const char *name, nnc_rt_buffer_kind kind, nnc_rt_dtype dt, int rank, int64_t d0, int64_t d1,
                         int batch_axis, size_t offset) {
  nnc_rt_buffer b = {.name = name, .kind = kind, .dtype = dt, .rank = rank, .dims = {d0, d1}, .batch_axis = batch_axis,
                     .tied_to = -1, .offset = offset};
  b.region = kind == NNC_RT_INPUT || kind == NNC_RT_OUTPUT ? NNC_RT_IO : NNC_RT_PERSIST;
  b.bytes = (size_t)nnc_rt_buffer_elements(&b, B) * 4;
  return b;
}

static nnc_rt_buffer buffers[7];
static nnc_rt_model model = {.name = "lin", .batch_max = B, .buffers = buffers, .nbuffers = 7, .persist_bytes = 192,
                             .io_bytes = 256};

static void make_model(void) {
  buffers[0] = buf("w", NNC_RT_PARAM, NNC_RT_F32, 1, 1, 0, -1, 0);
  buffers[1] = buf("w.momentum_buffer", NNC_RT_OPTIM, NNC_RT_F32, 1, 1, 0, -1, 64);
  buffers[2] = buf("count", NNC_RT_STATE, NNC_RT_I32, 0, 0, 0, -1, 128);
  buffers[3] = buf("x", NNC_RT_INPUT, NNC_RT_F32, 2, 1, 1, 0, 0);
  buffers[4] = buf("y", NNC_RT_INPUT, NNC_RT_F32, 2, 1, 1, 0, 64);
  buffers[5] = buf("loss", NNC_RT_OUTPUT, NNC_RT_F32, 0, 0, 0, -1, 128);
  buffers[6] = buf("logits", NNC_RT_OUTPUT, NNC_RT_F32, 2, 1, 1, 0, 192);
}

/* loss = mean (w x - y)^2; SGD with momentum 0.5; count += 1. nan_at: the step that yields NaN. */
typedef struct fake_exec {
  nnc_rt_executor base;
  int64_t nan_at, steps;
} fake_exec;

static bool fake_run(nnc_rt_executor *e, const char *program, uint8_t *persist, uint8_t *io, const nnc_rt_call *c,
                     char *err, size_t cap) {
  fake_exec *f = (fake_exec *)e;
  float *w = (float *)persist, *mom = (float *)(persist + 64), *x = (float *)io, *y = (float *)(io + 64);
  int32_t *count = (int32_t *)(persist + 128);
  float loss = 0, grad = 0;
  for (int64_t i = 0; i < c->n; i++) {
    float r = w[0] * x[i] - y[i];
    loss += r * r / (float)c->n;
    grad += 2 * r * x[i] / (float)c->n;
    ((float *)(io + 192))[i] = r;
  }
  if (strcmp(program, "train_step") == 0) {
    if (++f->steps == f->nan_at) loss = NAN;
    mom[0] = 0.5f * mom[0] + grad;
    w[0] -= c->lr * mom[0];
    count[0]++;
  }
  memcpy(io + 128, &loss, 4);
  return true;
}

static void fake_destroy(nnc_rt_executor *e) { (void)e; }

static fake_exec fake(int64_t nan_at) {
  return (fake_exec){.base = {.name = "fake", .run = fake_run, .destroy = fake_destroy}, .nan_at = nan_at};
}

/* y = 3 x for x = 0.1 .. 1.0, 10 examples: 3 steps per epoch, the last one of 2. */
static void make_data(nnc_rt_dataset *ds) {
  memset(ds, 0, sizeof *ds);
  ds->x_dtype = NNC_RT_F32, ds->x_rank = 1, ds->x_shape[0] = 1, ds->x_elems = 1, ds->x_bytes = 4;
  ds->label_kind = NNC_RT_LABELS_VALUE, ds->label_rank = 1, ds->label_shape[0] = 1, ds->label_elems = 1;
  ds->train.n = 10;
  ds->train.x = malloc(40);
  ds->train.y = malloc(40);
  for (int i = 0; i < 10; i++) {
    ((float *)ds->train.x)[i] = 0.1f * (float)(i + 1);
    ((float *)ds->train.y)[i] = 0.3f * (float)(i + 1);
  }
}

static nnc_rt_train_config config(int64_t epochs) {
  nnc_rt_train_config c = {.epochs = epochs, .seed = 5, .io = {"x", "y", "loss", NULL}, .eval_name = "test",
                           .quiet = true, .out = stdout, .bar = stderr};
  char err[256];
  nnc_rt_schedule_parse(&c.schedule, "constant", 0.2, err, sizeof err);
  return c;
}

static void test_checkpoint(void) {
  uint8_t persist[192] = {0}, back[192] = {0};
  float w = 1.5f, m = -2.0f;
  int32_t count = 41;
  memcpy(persist, &w, 4), memcpy(persist + 64, &m, 4), memcpy(persist + 128, &count, 4);
  nnc_rt_train_state st = {.step = 17, .steps_per_epoch = 3, .batch = B, .seed = 9, .plateau_lr = 0.25,
                           .plateau_best = INFINITY}, got = {0};
  char err[512];
  CHECK_MSG(nnc_rt_checkpoint_save(tmp("a.st"), &model, persist, &st, err, sizeof err), "%s", err);
  CHECK_MSG(nnc_rt_checkpoint_load(tmp("a.st"), &model, back, NNC_RT_LOAD_RESUME, &got, err, sizeof err), "%s", err);
  CHECK(memcmp(back, persist, 4) == 0 && memcmp(back + 64, persist + 64, 4) == 0 && memcmp(back + 128, persist + 128, 4) == 0);
  CHECK(got.step == 17 && got.steps_per_epoch == 3 && got.seed == 9 && got.plateau_lr == 0.25 && isinf(got.plateau_best));

  /* weights only: moments are not read */
  memset(back, 0, sizeof back);
  CHECK(nnc_rt_checkpoint_load(tmp("a.st"), &model, back, NNC_RT_LOAD_WEIGHTS, NULL, err, sizeof err));
  CHECK(memcmp(back, persist, 4) == 0 && ((float *)(back + 64))[0] == 0);

  /* PyTorch-style: count as I64, no moments, no metadata; an extra tensor is named */
  int64_t c64 = 41, shape1[1] = {1};
  nnc_st_tensor ts[3] = {{.name = "w", .dtype = NNC_ST_F32, .rank = 1, .shape = shape1, .data = &w},
                         {.name = "count", .dtype = NNC_ST_I64, .rank = 0, .data = &c64},
                         {.name = "bogus", .dtype = NNC_ST_F32, .rank = 1, .shape = shape1, .data = &w}};
  CHECK(nnc_st_write(tmp("pt.st"), ts, 2, NULL, 0, err, sizeof err));
  memset(back, 0, sizeof back);
  CHECK_MSG(nnc_rt_checkpoint_load(tmp("pt.st"), &model, back, NNC_RT_LOAD_WEIGHTS, NULL, err, sizeof err), "%s", err);
  CHECK(((int32_t *)(back + 128))[0] == 41);
  CHECK(!nnc_rt_checkpoint_load(tmp("pt.st"), &model, back, NNC_RT_LOAD_RESUME, &got, err, sizeof err));
  CHECK_MSG(strstr(err, "no tensor 'w.momentum_buffer'"), "%s", err);
  CHECK(nnc_st_write(tmp("extra.st"), ts, 3, NULL, 0, err, sizeof err));
  CHECK(!nnc_rt_checkpoint_load(tmp("extra.st"), &model, back, NNC_RT_LOAD_WEIGHTS, NULL, err, sizeof err));
  CHECK_MSG(strstr(err, "tensor 'bogus' is not in model lin"), "%s", err);
  int64_t shape2[1] = {2};
  float two[2] = {1, 2};
  ts[0] = (nnc_st_tensor){.name = "w", .dtype = NNC_ST_F32, .rank = 1, .shape = shape2, .data = two};
  CHECK(nnc_st_write(tmp("shape.st"), ts, 2, NULL, 0, err, sizeof err));
  CHECK(!nnc_rt_checkpoint_load(tmp("shape.st"), &model, back, NNC_RT_LOAD_WEIGHTS, NULL, err, sizeof err));
  CHECK_MSG(strstr(err, "tensor 'w' has shape [2], the model expects [1]"), "%s", err);
}

static void test_loop(void) {
  nnc_rt_dataset ds;
  make_data(&ds);
  char err[512];
  /* straight: 4 epochs */
  uint8_t p1[192] = {0};
  fake_exec f = fake(0);
  nnc_rt_train_config c = config(4);
  c.save_path = tmp("straight.st");
  CHECK_MSG(nnc_rt_train(&model, &f.base, &ds, p1, &c, err, sizeof err) == NNC_RT_TRAIN_OK, "%s", err);
  CHECK(f.steps == 12 && ((int32_t *)(p1 + 128))[0] == 12);
  CHECK_MSG(fabsf(((float *)p1)[0] - 3.0f) < 0.05f, "w = %g", ((float *)p1)[0]);

  /* 5 steps (mid-epoch), then resume to the end */
  uint8_t p2[192] = {0};
  fake_exec g = fake(0);
  c = config(4);
  c.max_steps = 5;
  c.save_path = tmp("part.st");
  CHECK(nnc_rt_train(&model, &g.base, &ds, p2, &c, err, sizeof err) == NNC_RT_TRAIN_OK);
  nnc_rt_train_state st;
  uint8_t p3[192] = {0};
  CHECK(nnc_rt_checkpoint_load(tmp("part.st"), &model, p3, NNC_RT_LOAD_RESUME, &st, err, sizeof err));
  CHECK(st.step == 5);
  fake_exec h = fake(0);
  c = config(4);
  c.resume = &st;
  c.save_path = tmp("resumed.st");
  CHECK_MSG(nnc_rt_train(&model, &h.base, &ds, p3, &c, err, sizeof err) == NNC_RT_TRAIN_OK, "%s", err);
  CHECK(h.steps == 7 && memcmp(p1, p3, sizeof p1) == 0);

  /* a NaN at step 4 names step 4 of epoch 2 and writes no checkpoint */
  uint8_t p4[192] = {0};
  fake_exec n = fake(4);
  c = config(4);
  c.save_path = tmp("never.st");
  CHECK(nnc_rt_train(&model, &n.base, &ds, p4, &c, err, sizeof err) == NNC_RT_TRAIN_BAD_INPUT);
  CHECK_MSG(strcmp(err, "loss is nan at step 4 (epoch 2)") == 0, "%s", err);
  CHECK(access(tmp("never.st"), F_OK) != 0);

  /* a stop request saves where the run stands */
  volatile sig_atomic_t stop = 1;
  uint8_t p5[192] = {0};
  fake_exec s = fake(0);
  c = config(4);
  c.stop = &stop;
  c.save_path = tmp("stopped.st");
  CHECK(nnc_rt_train(&model, &s.base, &ds, p5, &c, err, sizeof err) == NNC_RT_TRAIN_STOPPED);
  CHECK(s.steps == 0 && access(tmp("stopped.st"), F_OK) == 0);

  /* evaluation: the mean over all 10 examples, batches 4 + 4 + 2 */
  uint8_t io[256];
  nnc_rt_metrics mt;
  float w3 = 3.0f;
  memcpy(p5, &w3, 4);
  nnc_rt_io_names names = {"x", "y", "loss", NULL};
  CHECK(nnc_rt_evaluate(&model, &s.base, &ds, &ds.train, &names, p5, io, &mt, err, sizeof err));
  CHECK_MSG(mt.n == 10 && mt.loss < 1e-10 && isnan(mt.accuracy), "loss %g", mt.loss);
  nnc_rt_dataset_free(&ds);
}

int main(void) {
  if (!mkdtemp(tmpdir)) return 1;
  make_model();
  test_init();
  test_checkpoint();
  test_loop();
  const char *files[] = {"a.st", "pt.st", "extra.st", "shape.st", "straight.st", "part.st", "resumed.st", "stopped.st"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(tmp(files[i]));
  rmdir(tmpdir);
  return check_summary();
}
