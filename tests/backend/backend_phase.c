/* backend_phase [MODEL...]: every model's programs under the GPU schedule of the lowering
 * (passes/lower.h, target GPU), run through the phase emulator (passes/phase.h) as C compiled
 * with cc, against the reference interpreter: predict, eval_step and 2 train_steps at n =
 * B_max = 2 and at n = 1, rtol 1e-5 forward and 1e-4 once training has run (atol scaled to
 * each tensor), the worst element reported. Without arguments: every model file in models/.
 * The sequence models run at T = 8 in the emulator (backend_common.h), at full size on a device.
 *
 * Params that Adam updates from a gradient that is zero up to rounding (the key bias of
 * attention: softmax ignores a shift) move by up to lr per step in a direction set by rounding
 * noise, under any schedule; after training, params are therefore compared with an atol of
 * 2 * lr * steps for the models listed in adam_noise (the CPU schedule shows the same).
 *
 * `backend_phase --cuda [MODEL...]` runs the same comparison with the programs on CUDA device 0
 * (driver/exec_cuda.h) instead of the emulator; without a driver or device it skips (77). */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/check.h"
#include "../unit/model_run.h"
#include "driver/exec_c.h"
#include "driver/exec_cuda.h"
#include "driver/exec_interp.h"
#include "driver/layout.h"
#include "ir/compare.h"

#include "backend_common.h"

enum { BATCH = 2, TRAIN_STEPS = 2 };

static double persist_atol; /* 0: the default; else the atol of params after training */

/* Compares every buffer of kind `kind` (outputs in io, or all of persist). */
static void compare_region(const nnc_rt_model *rm, bool persist, const uint8_t *got, const uint8_t *ref, int64_t n,
                           double rtol, const char *what) {
  for (int i = 0; i < rm->nbuffers; i++) {
    const nnc_rt_buffer *b = &rm->buffers[i];
    if (persist ? b->region != NNC_RT_PERSIST : b->kind != NNC_RT_OUTPUT) continue;
    nnc_tensor tg = {.type = nnc_layout_buffer_type(b), .n = n, .data = (void *)(got + b->offset)};
    nnc_tensor tr = tg;
    tr.data = (void *)(ref + b->offset);
    double atol = persist && persist_atol > 0 ? persist_atol : rtol * fmax(max_abs(&tr), 1e-3);
    nnc_compare_result r = nnc_compare_tensors(&tg, &tr, atol, rtol);
    char msg[512];
    CHECK_MSG(r.ok, "%s: %s: %s", what, b->name, nnc_compare_str(&r, tr.type.dims, tr.type.rank, msg, sizeof msg));
  }
}

static bool run(nnc_rt_executor *e, const char *prog, uint8_t *p, uint8_t *io, const nnc_rt_call *c) {
  char err[512];
  bool ok = e->run(e, prog, p, io, c, err, sizeof err);
  CHECK_MSG(ok, "%s %s: %s", e->name, prog, err);
  return ok;
}

/* One comparison session at batch n; train_steps of training. */
static void session(const nnc_module *m, const nnc_rt_model *rm, nnc_rt_executor *ref, nnc_rt_executor *c,
                    const uint8_t *persist0, const uint8_t *io0, int64_t n, int train_steps, const char *tag) {
  uint8_t *pr = region(rm->persist_bytes), *pc = region(rm->persist_bytes);
  uint8_t *ior = region(rm->io_bytes), *ioc = region(rm->io_bytes);
  memcpy(pr, persist0, rm->persist_bytes), memcpy(pc, persist0, rm->persist_bytes);
  memcpy(ior, io0, rm->io_bytes), memcpy(ioc, io0, rm->io_bytes);
  nnc_rt_call call = {.n = n, .lr = (float)(m->train.lr > 0 ? m->train.lr : 1e-3), .step = 0, .seed = 7};
  char what[128];
  const char *fwd[] = {"predict", "eval_step"};
  for (int k = 0; k < 2; k++) {
    if ((k == 0 && !rm->has_predict) || (k == 1 && !rm->has_eval_step)) continue;
    if (!run(ref, fwd[k], pr, ior, &call) || !run(c, fwd[k], pc, ioc, &call)) break;
    snprintf(what, sizeof what, "%s %s n=%lld", tag, fwd[k], (long long)n);
    compare_region(rm, false, ioc, ior, n, 1e-5, what);
  }
  for (int s = 0; rm->has_train_step && s < train_steps; s++) {
    call.step = s;
    if (!run(ref, "train_step", pr, ior, &call) || !run(c, "train_step", pc, ioc, &call)) break;
    snprintf(what, sizeof what, "%s train_step %d n=%lld", tag, s, (long long)n);
    compare_region(rm, false, ioc, ior, n, 1e-4, what);
  }
  snprintf(what, sizeof what, "%s persist after %d steps n=%lld", tag, train_steps, (long long)n);
  compare_region(rm, true, pc, pr, n, 1e-4, what);
  free(pr), free(pc), free(ior), free(ioc);
}

static nnc_lower_target target = NNC_LOWER_GPU; /* --cpu: the CPU schedule, to tell lowering from emulation */
static bool on_cuda;                            /* --cuda: on the device, not the emulator */
static bool no_device;                          /* --cuda found no driver or device: skip */

static void check_model(const char *name) {
  nnc_options o = mr_default_options();
  o.batch = BATCH;
  if (!on_cuda) shorten_sequence_model(name, &o); /* the emulator runs every thread in turn */
  char path[512], err[1024];
  model_file(name, path, sizeof path);
  nnc_source src;
  nnc_module *m = mr_compile(path, &o, true, &src, stderr);
  CHECK_MSG(m != NULL, "%s does not compile", path);
  if (!m) return;
  /* unfused, as --target cuda compiles; emulated on the CPU unless on the device */
  nnc_pipeline_opts po = nnc_pipeline_defaults(target);
  po.no_fusion = true;
  po.lower.gpu_threads = on_cuda ? 0 : 64;
  po.emulate_gpu = !on_cuda;
  nnc_compiled *compiled = mr_pipeline(m, &po, stderr);
  CHECK_MSG(compiled != NULL, "%s does not lower", path);
  nnc_rt_model *rm = compiled ? nnc_layout_model(compiled) : NULL;
  if (rm) {
    uint8_t *persist0 = region(rm->persist_bytes), *io0 = region(rm->io_bytes);
    nnc_layout_init_params(m, rm, 1, persist0);
    fill_inputs(rm, io0);
    nnc_rt_executor *ref = nnc_exec_interp_new(m, rm);
    /* per model: the atol of params after training as a multiple of lr * steps; char_lstm's
     * near-zero gradients (readout rows of classes absent from the labels) move a param by a
     * small fraction of lr, the zero ones of attention's key bias by up to lr per step */
    static const struct { const char *model; double lr_steps; } adam_noise[] = {
        {"char_rnn", 2.0}, {"tiny_gpt", 2.0}, {"char_lstm", 0.01}};
    persist_atol = 0;
    for (size_t i = 0; i < sizeof adam_noise / sizeof *adam_noise; i++)
      if (strcmp(name, adam_noise[i].model) == 0)
        persist_atol = adam_noise[i].lr_steps * (m->train.lr > 0 ? m->train.lr : 1e-3) * TRAIN_STEPS;
    nnc_exec_c_opts emulator = {.threads = 1};
    nnc_rt_executor *c = on_cuda ? nnc_exec_cuda_new(compiled, rm, err, sizeof err)
                                 : nnc_exec_c_new(compiled, &emulator, err, sizeof err);
    if (!c && on_cuda && strncmp(err, "no CUDA", 7) == 0) no_device = true, printf("%s: skipped: %s\n", name, err);
    else CHECK_MSG(c != NULL, "%s: %s", name, err);
    char tag[300];
    snprintf(tag, sizeof tag, "%s %s", name, on_cuda ? "cuda" : "phase");
    if (c) {
      session(m, rm, ref, c, persist0, io0, BATCH, TRAIN_STEPS, tag);
      session(m, rm, ref, c, persist0, io0, 1, 0, tag); /* forward only at the smaller batch */
      c->destroy(c);
    }
    ref->destroy(ref);
    free(persist0), free(io0);
    nnc_layout_free(rm);
  }
  nnc_compiled_free(compiled);
  nnc_module_free(m);
  nnc_source_free(&src);
  printf("%s: checked\n", name);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--cpu") == 0) target = NNC_LOWER_CPU, argc--, argv++;
  if (argc > 1 && strcmp(argv[1], "--cuda") == 0) on_cuda = true, argc--, argv++;
  if (argc > 1) {
    for (int i = 1; i < argc; i++) check_model(argv[i]);
    return no_device ? 77 : check_summary();
  }
  DIR *dir = opendir("models");
  CHECK_MSG(dir != NULL, "no models directory (run from the source root)");
  if (!dir) return check_summary();
  char *names[256];
  int n = 0;
  for (struct dirent *e; (e = readdir(dir)) != NULL && n < 256;) {
    size_t len = strlen(e->d_name);
    if (len > 3 && strcmp(e->d_name + len - 3, ".nn") == 0) names[n++] = strndup(e->d_name, len - 3);
  }
  closedir(dir);
  qsort(names, (size_t)n, sizeof *names, by_name);
  CHECK(n > 0);
  for (int i = 0; i < n; i++) check_model(names[i]), free(names[i]);
  return no_device ? 77 : check_summary();
}
