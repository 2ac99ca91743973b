/* nnc: the command-line driver. It reads flags, runs the stages and decides exit statuses;
 * every stage below it reports through nnc_diags and returns. */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "driver/commands.h"
#include "driver/front_end.h"
#include "driver/cuda_cmd.h"
#include "driver/emit_c.h"
#include "driver/executor.h"
#ifdef NNC_WITH_LLVM
#include "driver/emit_llvm.h"
#endif
#include "driver/emit_loops.h"
#include "driver/fusion_cmd.h"
#include "driver/layout.h"
#include "driver/memplan_cmd.h"
#include "driver/options.h"
#include "driver/output.h"
#include "runtime/atomic_file.h"
#include "driver/sample_cmd.h"
#include "ir/ir.h"
#include "passes/pipeline.h"
#include "passes/programs.h"
#include "passes/simplify.h"
#include "runtime/data.h"
#include "runtime/pool.h"

static const char usage_text[] =
    "usage: nnc FILE [options]\n"
    "\n"
    "FILE is a model (.nn) or graph IR text (.ir, as written by --emit ir); '-' reads a model\n"
    "from standard input. Flags may come in any order (docs/cli.md, \"Combining flags\").\n"
    "\n"
    "actions (default: print a summary of the model):\n"
    "  --check              parse, elaborate, differentiate and verify; print nothing on success\n"
    "  --check-kernels      run each kernel of every program on the LLVM JIT and on the interpreter\n"
    "                       side by side; name the first kernel whose output differs\n"
    "  --emit ir            print the graph IR (typed graph with PyTorch parameter names);\n"
    "                       with --train, every program: train_step, eval_step, predict\n"
    "  --emit c -o DIR      write the model as standalone C: DIR/model.h, model.c, nnc_abi.h,\n"
    "                       model_loader.{h,c} and weights.safetensors (docs/embedding.md)\n"
    "  --emit llvm|asm|obj -o FILE  the programs as one LLVM module for this machine (docs/llvm.md)\n"
    "  --emit cuda          print every program's kernels as CUDA C with the GPU schedule (docs/cuda.md)\n"
    "  --emit ptx -o DIR    model.ptx (NVRTC) and a C host launcher with model.h's API (docs/cuda.md)\n"
    "  --emit kernels       print each program's fused kernels: anchor, nodes, source lines\n"
    "  --emit loops         print each program's loop IR kernels (CPU schedule) and calls\n"
    "  --emit dot           print the programs as Graphviz, each kernel a cluster\n"
    "  --stats              print nodes, kernels and bytes per step, before and after fusion,\n"
    "                       then compile the programs and print the time of each phase\n"
    "  --memory-plan        print every program's memory plan: buffers, offsets, live steps,\n"
    "                       the scratch size, the naive sum and the lower bound (docs/memory.md)\n"
    "  --train              train the model on its data (the train block, or --data)\n"
    "  --eval               evaluate the model on the test split (with --load or --resume)\n"
    "\n"
    "model:\n"
    "  --set NAME=VALUE     override a hyperparameter or a train-block field (repeatable)\n"
    "  --batch N            the compiled batch size B_max (default: the train block's, else 64)\n"
    "  --passes LIST        the graph passes of the pipeline: dce, cse, fold, algebra, simplify\n"
    "                       (default: simplify)\n"
    "  --no-fusion          one kernel per graph node instead of one per fused group\n"
    "  --stop-after STAGE   run the pipeline up to STAGE: autodiff, simplify, fuse, plan, lower,\n"
    "                       scratch (with --emit ir, kernels, dot, loops or --memory-plan)\n"
    "  --mode MODE          the forward graph --emit ir shows: train (default), eval, predict\n"
    "\n"
    "training (each overrides the train block; see docs/training.md):\n"
    "  --epochs N           number of epochs\n"
    "  --lr X               learning rate\n"
    "  --optimizer NAME     SGD, Adam or AdamW\n"
    "  --momentum X         SGD momentum\n"
    "  --weight-decay X     weight decay\n"
    "  --schedule SPEC      constant | step | exponential | cosine | warmup | plateau, with\n"
    "                       options: 'cosine,warmup=200', 'step,step_size=2,gamma=0.5'\n"
    "  --seed N             seed of initialization, shuffling and dropout\n"
    "  --data PATH          the data source's path (its kind comes from the train block)\n"
    "  --val-split F        hold out the last fraction F of the training set for evaluation\n"
    "  --threads N          worker threads, the calling thread included, 1 to 4 x the cores\n"
    "                       (default: all cores); results do not depend on it\n"
    "  --target NAME        executor: llvm (native code through the LLVM JIT, the default),\n"
    "                       interp (the reference interpreter), cuda (needs a CUDA device)\n"
    "  --max-steps N        stop after N training steps\n"
    "  --log FILE           write metrics as CSV\n"
    "  --plot FILE          draw loss and accuracy curves as SVG\n"
    "  --save FILE          write a checkpoint (safetensors) at the end, atomically; also on\n"
    "                       SIGINT or SIGTERM, after the step in progress\n"
    "  --save-every N       also every N steps\n"
    "  --resume FILE        continue training from a checkpoint\n"
    "  --load FILE          start from the weights in FILE (e.g. trained by PyTorch)\n"
    "  --quiet              no progress output\n"
    "\n"
    "sampling (character models; docs/training.md):\n"
    "  --sample N           generate N characters after --train, or from --load/--resume FILE\n"
    "  --prompt TEXT        the text to continue (default: a newline)\n"
    "  --temperature X      divide the logits by X before the softmax (default 0.8; 0: argmax)\n"
    "\n"
    "output:\n"
    "  -o FILE              write the output to FILE instead of standard output\n"
    "  -h, --help           print this help and exit\n"
    "  --version            print the version and exit\n"
    "  --devices            print the CPU and the CUDA devices (or why there is none) and exit\n"
    "\n"
    "exit status:\n"
    "  0  success\n"
    "  1  an error in the model or another input file (diagnostics on standard error)\n"
    "  2  a usage error (bad flags)\n"
    "  3  an environment failure (no device, out of memory, I/O failure)\n"
    "  130, 143  training stopped by SIGINT or SIGTERM, the checkpoint written\n";

static void usage_error(const char *fmt, const char *arg) {
  fputs("nnc: error: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\nTry 'nnc --help' for more information.\n", stderr);
}

/* bytes = 0: an allocation of unknown size (inside LLVM). */
static void out_of_memory(size_t bytes) {
  if (bytes) fprintf(stderr, "nnc: error: out of memory (allocating %zu bytes)\n", bytes);
  else fputs("nnc: error: out of memory\n", stderr);
  exit(NNC_EXIT_ENVIRONMENT);
}

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static bool parse_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

static bool add_override(nnc_options *o, const char *arg) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg || !eq[1]) return false;
  o->overrides = nnc_xrealloc(o->overrides, sizeof(nnc_override) * (size_t)(o->noverrides + 1));
  size_t len = (size_t)(eq - arg);
  char *name = nnc_xmalloc(len + 1);
  memcpy(name, arg, len);
  name[len] = 0;
  o->overrides[o->noverrides++] = (nnc_override){.name = name, .value = eq + 1};
  return true;
}

static void free_options(nnc_options *o) {
  for (int i = 0; i < o->noverrides; i++) free((char *)o->overrides[i].name);
  free(o->overrides);
  free(o->passes_list);
}

enum {
  OPT_CHECK = 256, OPT_EMIT, OPT_TRAIN, OPT_EVAL, OPT_SET, OPT_BATCH, OPT_MODE, OPT_VERSION,
  OPT_EPOCHS, OPT_LR, OPT_OPTIMIZER, OPT_MOMENTUM, OPT_WD, OPT_SCHEDULE, OPT_SEED, OPT_DATA,
  OPT_VAL_SPLIT, OPT_THREADS, OPT_TARGET, OPT_MAX_STEPS, OPT_LOG, OPT_PLOT, OPT_SAVE,
  OPT_SAVE_EVERY, OPT_RESUME, OPT_LOAD, OPT_QUIET, OPT_DEVICES, OPT_PASSES, OPT_STATS, OPT_MEMORY_PLAN, OPT_NO_FUSION,
  OPT_SAMPLE, OPT_PROMPT, OPT_TEMPERATURE, OPT_CHECK_KERNELS, OPT_STOP_AFTER,
};

static const struct option longopts[] = {
    {"check", no_argument, 0, OPT_CHECK},          {"emit", required_argument, 0, OPT_EMIT},
    {"train", no_argument, 0, OPT_TRAIN},          {"eval", no_argument, 0, OPT_EVAL},
    {"set", required_argument, 0, OPT_SET},        {"batch", required_argument, 0, OPT_BATCH},
    {"mode", required_argument, 0, OPT_MODE},      {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, OPT_VERSION},      {"epochs", required_argument, 0, OPT_EPOCHS},
    {"lr", required_argument, 0, OPT_LR},          {"optimizer", required_argument, 0, OPT_OPTIMIZER},
    {"momentum", required_argument, 0, OPT_MOMENTUM}, {"weight-decay", required_argument, 0, OPT_WD},
    {"schedule", required_argument, 0, OPT_SCHEDULE}, {"seed", required_argument, 0, OPT_SEED},
    {"data", required_argument, 0, OPT_DATA},      {"val-split", required_argument, 0, OPT_VAL_SPLIT},
    {"threads", required_argument, 0, OPT_THREADS}, {"target", required_argument, 0, OPT_TARGET},
    {"max-steps", required_argument, 0, OPT_MAX_STEPS}, {"log", required_argument, 0, OPT_LOG},
    {"plot", required_argument, 0, OPT_PLOT},      {"save", required_argument, 0, OPT_SAVE},
    {"save-every", required_argument, 0, OPT_SAVE_EVERY}, {"resume", required_argument, 0, OPT_RESUME},
    {"load", required_argument, 0, OPT_LOAD},      {"quiet", no_argument, 0, OPT_QUIET},
    {"devices", no_argument, 0, OPT_DEVICES},
    {"passes", required_argument, 0, OPT_PASSES},  {"stats", no_argument, 0, OPT_STATS},
    {"memory-plan", no_argument, 0, OPT_MEMORY_PLAN}, {"no-fusion", no_argument, 0, OPT_NO_FUSION},
    {"sample", required_argument, 0, OPT_SAMPLE},  {"prompt", required_argument, 0, OPT_PROMPT},
    {"temperature", required_argument, 0, OPT_TEMPERATURE}, {"check-kernels", no_argument, 0, OPT_CHECK_KERNELS},
    {"stop-after", required_argument, 0, OPT_STOP_AFTER},
    {0, 0, 0, 0},
};

/* --passes LIST: graph passes (passes/simplify.h) for the simplify stage, and pipeline stages
 * after it, which stop the pipeline there (`--passes simplify,fuse --emit kernels`). The graph
 * passes are kept in o->passes_list (NULL: none named); false for an unknown name. */
static bool take_passes(nnc_options *o, const char *list) {
  size_t cap = strlen(list) + 1, used = 0;
  char *graph = nnc_xmalloc(cap), name[64];
  for (const char *p = list;; p++) {
    size_t len = strcspn(p, ",");
    nnc_stage st;
    if (len == 0 || len >= sizeof name) return free(graph), false;
    memcpy(name, p, len);
    name[len] = 0;
    if (nnc_simplify_known(name)) used += (size_t)snprintf(graph + used, cap - used, "%s%s", used ? "," : "", name);
    else if (nnc_stage_from_name(name, &st) && st > NNC_STAGE_SIMPLIFY) o->stop_after = o->stop_after > (int)st ? o->stop_after : (int)st;
    else return free(graph), false;
    p += len;
    if (!*p) break;
  }
  free(o->passes_list);
  o->passes_list = used ? graph : NULL;
  if (!used) free(graph);
  o->passes = o->passes_list ? o->passes_list : "";
  return true;
}

/* The flag that asks for each action. */
static const char *const action_flags[] = {
    [NNC_ACTION_CHECK] = "--check", [NNC_ACTION_CHECK_KERNELS] = "--check-kernels", [NNC_ACTION_EMIT] = "--emit",
    [NNC_ACTION_STATS] = "--stats", [NNC_ACTION_MEMPLAN] = "--memory-plan", [NNC_ACTION_EVAL] = "--eval",
    [NNC_ACTION_TRAIN] = "--train",
};

static bool give_action(nnc_options *o, nnc_action a) {
  o->actions_given |= 1u << a;
  return true;
}

/* The action of the flags given, whatever their order (docs/cli.md, "Combining flags"): one
 * action at most, except that --train with --emit asks for the training programs. */
static bool resolve_action(nnc_options *o) {
  unsigned given = o->actions_given;
  if (given & (1u << NNC_ACTION_EMIT)) {
    o->emit_train = given & (1u << NNC_ACTION_TRAIN);
    given &= ~(1u << NNC_ACTION_TRAIN);
  }
  o->action = NNC_ACTION_SUMMARY;
  for (unsigned a = 0; a < sizeof action_flags / sizeof *action_flags; a++) {
    if (!(given & (1u << a))) continue;
    if (o->action != NNC_ACTION_SUMMARY) {
      fprintf(stderr, "nnc: error: %s and %s cannot be combined: give one action\n", action_flags[o->action],
              action_flags[a]);
      fputs("Try 'nnc --help' for more information.\n", stderr);
      return false;
    }
    o->action = (nnc_action)a;
  }
  return true;
}

/* The numeric flags: each one's range, said as its message says it, and its field. */
typedef struct num_flag {
  int opt;
  const char *flag;
  double lo, hi;
  bool integer;
  size_t field;               /* offsetof(nnc_options, ...): int64_t for an integer, else double */
  const char *range;
} num_flag;

static const num_flag num_flags[] = {
    {OPT_BATCH, "--batch", 1, 1 << 20, true, offsetof(nnc_options, batch), "an integer from 1 to 1048576"},
    {OPT_EPOCHS, "--epochs", 1, 1000000, true, offsetof(nnc_options, epochs), "an integer from 1 to 1000000"},
    {OPT_MAX_STEPS, "--max-steps", 1, INT32_MAX, true, offsetof(nnc_options, max_steps),
     "an integer from 1 to 2147483647"},
    {OPT_SAVE_EVERY, "--save-every", 1, INT32_MAX, true, offsetof(nnc_options, save_every),
     "an integer from 1 to 2147483647"},
    {OPT_SEED, "--seed", 0, UINT32_MAX, true, offsetof(nnc_options, seed), "an integer from 0 to 4294967295"},
    {OPT_SAMPLE, "--sample", 1, 100000000, true, offsetof(nnc_options, sample),
     "a number of characters from 1 to 100000000"},
    {OPT_LR, "--lr", 1e-12, 1e6, false, offsetof(nnc_options, lr), "a number from 1e-12 to 1e6"},
    {OPT_MOMENTUM, "--momentum", 0, 1, false, offsetof(nnc_options, momentum), "a number from 0 to 1"},
    {OPT_WD, "--weight-decay", 0, 1e3, false, offsetof(nnc_options, weight_decay), "a number from 0 to 1000"},
    {OPT_VAL_SPLIT, "--val-split", 1e-9, 1 - 1e-9, false, offsetof(nnc_options, val_split),
     "a fraction between 0 and 1"},
    {OPT_TEMPERATURE, "--temperature", 0, 100, false, offsetof(nnc_options, temperature), "a number from 0 to 100"},
};

/* A numeric flag's value into its field; NULL when c is not one, else whether it parsed. */
static const num_flag *take_number(nnc_options *o, int c, const char *arg, bool *ok) {
  for (size_t i = 0; i < sizeof num_flags / sizeof *num_flags; i++) {
    const num_flag *f = &num_flags[i];
    if (f->opt != c) continue;
    char *field = (char *)o + f->field;
    *ok = f->integer ? parse_int(arg, (int64_t)f->lo, (int64_t)f->hi, (int64_t *)(void *)field)
                     : parse_num(arg, f->lo, f->hi, (double *)(void *)field);
    if (!*ok) fprintf(stderr, "nnc: error: %s expects %s, got '%s'\nTry 'nnc --help' for more information.\n",
                      f->flag, f->range, arg);
    return f;
  }
  return NULL;
}

/* One flag with its value; false after a usage error. */
static bool take_flag(nnc_options *o, int c, const char *arg) {
  int64_t i;
  bool ok;
  if (take_number(o, c, arg, &ok)) return ok;
  switch (c) {
  case OPT_CHECK: return give_action(o, NNC_ACTION_CHECK);
  case OPT_CHECK_KERNELS:
#ifdef NNC_WITH_LLVM
    return give_action(o, NNC_ACTION_CHECK_KERNELS);
#else
    usage_error("%s: this nnc was built without the LLVM backend (NNC_WITH_LLVM=OFF)", "--check-kernels");
    return false;
#endif
  case OPT_EVAL: return give_action(o, NNC_ACTION_EVAL);
  case OPT_TRAIN: return give_action(o, NNC_ACTION_TRAIN);
  case OPT_EMIT:
    if (strcmp(arg, "kernels") == 0 || strcmp(arg, "dot") == 0 || strcmp(arg, "loops") == 0) {
      o->emit = arg[0] == 'k' ? NNC_EMIT_KERNELS : arg[0] == 'd' ? NNC_EMIT_DOT : NNC_EMIT_LOOPS;
      return give_action(o, NNC_ACTION_EMIT);
    }
    if (strcmp(arg, "llvm") == 0 || strcmp(arg, "asm") == 0 || strcmp(arg, "obj") == 0) {
#ifdef NNC_WITH_LLVM
      o->emit = arg[0] == 'l' ? NNC_EMIT_LLVM : arg[0] == 'a' ? NNC_EMIT_ASM : NNC_EMIT_OBJ;
      return give_action(o, NNC_ACTION_EMIT);
#else
      usage_error("--emit %s: this nnc was built without the LLVM backend (NNC_WITH_LLVM=OFF)", arg);
      return false;
#endif
    }
    if (strcmp(arg, "ptx") == 0) {
      o->emit = NNC_EMIT_PTX;
      return give_action(o, NNC_ACTION_EMIT);
    }
    if (strcmp(arg, "ir") != 0 && strcmp(arg, "c") != 0 && strcmp(arg, "cuda") != 0) {
      usage_error("unknown --emit kind '%s' (available: ir, c, cuda, ptx, kernels, dot, loops, llvm, asm, obj)", arg);
      return false;
    }
    o->emit = strcmp(arg, "c") == 0 ? NNC_EMIT_C : strcmp(arg, "cuda") == 0 ? NNC_EMIT_CUDA : NNC_EMIT_IR;
    return give_action(o, NNC_ACTION_EMIT);
  case 'o': o->output = arg; return true;
  case OPT_PASSES:
    if (take_passes(o, arg)) return true;
    usage_error("--passes: unknown pass in '%s' (available: dce, cse, fold, algebra, simplify, and the stages fuse, "
                "plan, lower, scratch)", arg);
    return false;
  case OPT_STATS: return give_action(o, NNC_ACTION_STATS);
  case OPT_MEMORY_PLAN: return give_action(o, NNC_ACTION_MEMPLAN);
  case OPT_NO_FUSION: o->no_fusion = true; return true;
  case OPT_STOP_AFTER: {
    nnc_stage st;
    if (nnc_stage_from_name(arg, &st)) {
      o->stop_after = (int)st;
      return true;
    }
    usage_error("unknown --stop-after stage '%s' (available: autodiff, simplify, fuse, plan, lower, scratch)", arg);
    return false;
  }
  case OPT_MODE:
    if (strcmp(arg, "train") == 0) o->mode = NNC_MODE_TRAIN;
    else if (strcmp(arg, "eval") == 0) o->mode = NNC_MODE_EVAL;
    else if (strcmp(arg, "predict") == 0) o->mode = NNC_MODE_PREDICT;
    else {
      usage_error("unknown --mode '%s' (available: train, eval, predict)", arg);
      return false;
    }
    return true;
  case OPT_SET:
    if (add_override(o, arg)) return true;
    usage_error("--set expects NAME=VALUE, got '%s'", arg);
    return false;
  case OPT_THREADS:
    if (parse_int(arg, 1, nnc_rt_pool_max_threads(), &i)) {
      o->threads = (int)i;
      return true;
    }
    fprintf(stderr, "nnc: error: --threads expects an integer from 1 to %d (%d x the %d online cores), got '%s'\n",
            nnc_rt_pool_max_threads(), NNC_RT_POOL_OVERSUBSCRIBE, nnc_rt_pool_default_threads(), arg);
    fputs("Try 'nnc --help' for more information.\n", stderr);
    return false;
  case OPT_OPTIMIZER:
    if (strcasecmp(arg, "SGD") == 0 || strcasecmp(arg, "Adam") == 0 || strcasecmp(arg, "AdamW") == 0) {
      o->optimizer = arg;
      return true;
    }
    usage_error("unknown --optimizer '%s' (available: SGD, Adam, AdamW)", arg);
    return false;
  case OPT_TARGET:
    if (strcmp(arg, "interp") == 0 || strcmp(arg, "cuda") == 0) {
      o->target = arg;
      return true;
    }
    if (strcmp(arg, "llvm") == 0) {
#ifdef NNC_WITH_LLVM
      o->target = arg;
      return true;
#else
      usage_error("--target %s: this nnc was built without the LLVM backend (NNC_WITH_LLVM=OFF)", arg);
      return false;
#endif
    }
    usage_error("unknown --target '%s' (available: llvm, interp, cuda)", arg);
    return false;
  case OPT_SCHEDULE: o->schedule = arg; return true;
  case OPT_DATA: o->data = arg; return true;
  case OPT_LOG: o->log_path = arg; return true;
  case OPT_PLOT: o->plot_path = arg; return true;
  case OPT_SAVE: o->save_path = arg; return true;
  case OPT_RESUME: o->resume_path = arg; return true;
  case OPT_LOAD: o->load_path = arg; return true;
  case OPT_QUIET: o->quiet = true; return true;
  case OPT_PROMPT:
    if (arg[0]) {
      o->prompt = arg;
      return true;
    }
    usage_error("%s", "--prompt is empty: give at least one character to continue");
    return false;
  }
  return false;
}

/* --sample follows --train, or is the action itself with --load/--resume. */
static bool check_sample(nnc_options *o) {
  if (!o->sample) {
    if (!o->prompt && o->temperature < 0) return true;
    usage_error("%s", "--prompt and --temperature go with --sample N");
    return false;
  }
  if (o->action == NNC_ACTION_SUMMARY) o->action = NNC_ACTION_SAMPLE;
  if (o->action == NNC_ACTION_SAMPLE || o->action == NNC_ACTION_TRAIN) return true;
  usage_error("%s", "--sample goes with --train, --load FILE or --resume FILE, not another action");
  return false;
}

/* --stop-after goes with the actions that print what a stage made, from the stage that makes it
 * on; the fusion plan is what --emit kernels and --emit dot print, so they take no --no-fusion. */
static bool check_pipeline_flags(const nnc_options *o) {
  bool plans = o->action == NNC_ACTION_EMIT && (o->emit == NNC_EMIT_KERNELS || o->emit == NNC_EMIT_DOT);
  if (plans && o->no_fusion) {
    usage_error("%s", "--no-fusion: --emit kernels and --emit dot show the fusion plan");
    return false;
  }
  if (o->stop_after < 0) return true;
  nnc_stage least = o->action == NNC_ACTION_MEMPLAN ? NNC_STAGE_PLAN
                    : o->action != NNC_ACTION_EMIT ? NNC_STAGE_COUNT
                    : o->emit == NNC_EMIT_IR ? NNC_STAGE_AUTODIFF
                    : plans ? NNC_STAGE_FUSE
                    : o->emit == NNC_EMIT_LOOPS ? NNC_STAGE_LOWER : NNC_STAGE_COUNT;
  if (least == NNC_STAGE_COUNT) {
    usage_error("%s", "--stop-after goes with --emit ir, kernels, dot or loops, or --memory-plan");
    return false;
  }
  if ((int)least <= o->stop_after) return true;
  fprintf(stderr, "nnc: error: --stop-after %s: what the action prints is made by the %s stage, after it\n",
          nnc_stage_name((nnc_stage)o->stop_after), nnc_stage_name(least));
  fputs("Try 'nnc --help' for more information.\n", stderr);
  return false;
}

/* Returns -1 when parsing succeeded, else the exit status. */
static int parse_options(int argc, char **argv, nnc_options *o) {
  o->lr = -1, o->momentum = -1, o->weight_decay = -1, o->epochs = 0, o->seed = -1, o->temperature = -1;
  o->stop_after = -1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
    if (c == 'h') {
      fputs(usage_text, stdout);
      return NNC_EXIT_OK;
    }
    if (c == OPT_VERSION) {
      printf("nnc %s\n", NNC_VERSION);
      return NNC_EXIT_OK;
    }
    if (c == OPT_DEVICES) return nnc_cmd_devices(stdout);
    if (c == ':') {
      usage_error("option '%s' needs a value", argv[optind - 1]);
      return NNC_EXIT_USAGE;
    }
    if (c == '?') {
      usage_error("unknown option '%s'", argv[optind - 1]);
      return NNC_EXIT_USAGE;
    }
    if (!take_flag(o, c, optarg)) return NNC_EXIT_USAGE;
  }
  if (optind >= argc) {
    usage_error("%s", "no input file");
    return NNC_EXIT_USAGE;
  }
  if (argc - optind > 1) {
    usage_error("more than one input file ('%s')", argv[optind + 1]);
    return NNC_EXIT_USAGE;
  }
  o->input = argv[optind];
  return resolve_action(o) && check_sample(o) && check_pipeline_flags(o) ? -1 : NNC_EXIT_USAGE;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Elements of the module's own buffers of one kind (shared storage counted once, as PyTorch's
 * parameters() lists a tied tensor once): trainable params, frozen params, or state buffers. */
enum param_kind { PARAMS_TRAINABLE, PARAMS_FROZEN, PARAMS_STATE };

static int64_t count_params(const nnc_module *m, enum param_kind kind) {
  int64_t total = 0;
  for (int i = 0; i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    enum param_kind k = p->is_state ? PARAMS_STATE : p->frozen ? PARAMS_FROZEN : PARAMS_TRAINABLE;
    if (p->tied_to < 0 && k == kind) total += nnc_type_elements(&p->type, m->batch_max);
  }
  return total;
}

static void print_summary(FILE *out, const nnc_module *m) {
  char buf[256];
  const nnc_graph *g = m->forward;
  fprintf(out, "model %s (batch %lld)\n", m->name, (long long)m->batch_max);
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i]->op == NNC_OP_input)
      fprintf(out, "  input  %-28s %s\n", g->nodes[i]->name, nnc_type_str(&g->nodes[i]->type, buf, sizeof buf));
  for (int i = 0; i < g->noutputs; i++)
    fprintf(out, "  output %-28s %s%s\n", g->outputs[i].name,
            nnc_type_str(&g->outputs[i].value->type, buf, sizeof buf), i == g->loss ? "  (objective)" : "");
  for (int i = 0; i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    fprintf(out, "  %-6s %-28s %s%s%s\n", p->is_state ? "state" : "param", p->name,
            nnc_type_str(&p->type, buf, sizeof buf), p->frozen ? "  frozen" : "",
            p->tied_to >= 0 ? "  (tied)" : "");
  }
  fprintf(out, "programs:");
  for (int i = 0; i < nnc_module_program_count(m); i++) fprintf(out, " %s", nnc_module_program(m, i)->name);
  fprintf(out, "\n%lld trainable parameters, ", (long long)count_params(m, PARAMS_TRAINABLE));
  int64_t frozen = count_params(m, PARAMS_FROZEN);
  if (frozen > 0) fprintf(out, "%lld frozen, ", (long long)frozen);
  fprintf(out, "%lld state values\n", (long long)count_params(m, PARAMS_STATE));
}

/* The summary, or the IR text of --emit ir. */
static int write_output(const nnc_options *o, const nnc_module *m) {
  nnc_outfile out;
  if (!nnc_outfile_open(&out, o->output)) return NNC_EXIT_ENVIRONMENT;
  if (o->action == NNC_ACTION_EMIT)
    nnc_print_module(out.f, m);
  else
    print_summary(out.f, m);
  return nnc_outfile_close(&out, NNC_EXIT_OK);
}

/* Which programs the front end builds: a summary, a check and training need all of them; --emit ir
 * shows one forward graph unless --train asks for the training programs. */
static bool wants_programs(const nnc_options *o) { return o->action != NNC_ACTION_EMIT || o->emit != NNC_EMIT_IR || o->emit_train; }

static bool gpu_emit(const nnc_options *o) {
  return o->action == NNC_ACTION_EMIT && (o->emit == NNC_EMIT_CUDA || o->emit == NNC_EMIT_PTX);
}

/* The last pipeline stage an action needs (docs/cli.md, "The pipeline"). */
static nnc_stage stage_needed(const nnc_options *o) {
  switch (o->action) {
  case NNC_ACTION_SUMMARY: case NNC_ACTION_CHECK: return NNC_STAGE_AUTODIFF;
  case NNC_ACTION_EMIT:
    if (o->emit == NNC_EMIT_IR) return o->passes ? NNC_STAGE_SIMPLIFY : NNC_STAGE_AUTODIFF;
    if (o->emit == NNC_EMIT_KERNELS || o->emit == NNC_EMIT_DOT) return NNC_STAGE_FUSE;
    return NNC_STAGE_SCRATCH;
  default: return NNC_STAGE_SCRATCH;
  }
}

/* The pipeline's options for the action: training, evaluation, sampling and --stats compile for
 * --target; the emitters for the CPU, or the GPU for CUDA C and PTX; --check-kernels lowers one
 * kernel per node so that each call is a node the interpreter computes too. */
static nnc_pipeline_opts pipeline_for(const nnc_options *o, bool is_ir) {
  bool runs = o->action == NNC_ACTION_TRAIN || o->action == NNC_ACTION_EVAL || o->action == NNC_ACTION_SAMPLE ||
              o->action == NNC_ACTION_STATS;
  if (runs) return nnc_driver_target_pipeline(o);
  nnc_pipeline_opts p = nnc_pipeline_defaults(gpu_emit(o) ? NNC_LOWER_GPU : NNC_LOWER_CPU);
  p.passes = o->passes;
  p.no_fusion = o->no_fusion || gpu_emit(o) || o->action == NNC_ACTION_CHECK_KERNELS;
  p.train = is_ir ? o->emit_train : wants_programs(o);
  p.last = o->stop_after >= 0 ? (nnc_stage)o->stop_after : stage_needed(o);
  return p;
}

/* --emit llvm|asm|obj (driver/emit_llvm.c, built with NNC_WITH_LLVM). */
static int emit_llvm(const nnc_compiled *c, const nnc_options *o) {
#ifdef NNC_WITH_LLVM
  return nnc_cmd_emit_llvm(c, o);
#else
  (void)c, (void)o;
  return NNC_EXIT_USAGE;
#endif
}

/* --stats, after the graph figures: build the executor for the target and say where the time went. */
static int stats_compile(const nnc_compiled *c, const nnc_options *o, FILE *out, nnc_driver_front_times ft) {
  if (!nnc_compiled_find(c, "predict")) return NNC_EXIT_OK; /* a lone graph (.ir) has no programs to run */
  char err[1024];
  nnc_rt_model *rm = nnc_layout_model(c);
  nnc_rt_executor *e = nnc_driver_executor_new(c, rm, o, err, sizeof err);
  if (e) nnc_driver_print_compile_times(out, c, e, ft);
  else fprintf(stderr, "nnc: error: %s\n", err);
  if (e) e->destroy(e);
  nnc_layout_free(rm);
  return e ? NNC_EXIT_OK : NNC_EXIT_MODEL_ERROR;
}

static int stats(const nnc_compiled *c, const nnc_options *o, nnc_driver_front_times ft) {
  nnc_outfile out;
  if (!nnc_outfile_open(&out, o->output)) return NNC_EXIT_ENVIRONMENT;
  int status = nnc_cmd_stats(c, out.f);
  if (status == NNC_EXIT_OK) status = stats_compile(c, o, out.f, ft);
  return nnc_outfile_close(&out, status);
}

/* What the action does with the pipeline's result. */
static int dispatch(nnc_module *m, const nnc_compiled *c, const nnc_options *o, nnc_driver_front_times ft) {
  switch (o->action) {
  case NNC_ACTION_CHECK: return NNC_EXIT_OK;
  case NNC_ACTION_TRAIN: return nnc_cmd_train(m, c, o);
  case NNC_ACTION_EVAL: return nnc_cmd_eval(m, c, o);
#ifdef NNC_WITH_LLVM
  case NNC_ACTION_CHECK_KERNELS: return nnc_cmd_check_kernels(c, o);
#endif
  case NNC_ACTION_SAMPLE: return nnc_cmd_sample(m, c, o);
  case NNC_ACTION_STATS: return stats(c, o, ft);
  case NNC_ACTION_MEMPLAN: return nnc_cmd_memory_plan(c, o);
  case NNC_ACTION_EMIT:
    switch (o->emit) {
    case NNC_EMIT_LLVM: case NNC_EMIT_ASM: case NNC_EMIT_OBJ: return emit_llvm(c, o);
    case NNC_EMIT_C: return nnc_cmd_emit_c(c, o);
    case NNC_EMIT_CUDA: return nnc_cmd_emit_cuda(c, o);
    case NNC_EMIT_PTX: return nnc_cmd_emit_ptx(c, o);
    case NNC_EMIT_LOOPS: return nnc_cmd_emit_loops(c, o);
    case NNC_EMIT_KERNELS: case NNC_EMIT_DOT: return nnc_cmd_emit_fusion(c, o, o->emit == NNC_EMIT_DOT);
    default: return write_output(o, nnc_compiled_module_view(c));
    }
  default: return write_output(o, m);
  }
}

/* Outputs that cannot be written fail before any work (docs/cli.md): -o, and training's --save,
 * --plot (replaced atomically) and --log (appended to as the run goes: absent or a regular file). */
static bool outputs_writable(const nnc_options *o) {
  bool dir_output = o->action == NNC_ACTION_EMIT && (o->emit == NNC_EMIT_C || o->emit == NNC_EMIT_PTX);
  if (o->output && !dir_output && !nnc_outfile_check(o->output)) return false;
  if (o->output && dir_output && !nnc_outdir_usable(o->output)) return false;
  if (o->action != NNC_ACTION_TRAIN) return true;
  char err[1024];
  if ((o->save_path && !nnc_outfile_check(o->save_path)) || (o->plot_path && !nnc_outfile_check(o->plot_path)))
    return false;
  if (!o->log_path || nnc_check_regular_target(o->log_path, err, sizeof err)) return true;
  fprintf(stderr, "nnc: error: %s\n", err);
  return false;
}

/* main.c -> the front end (driver/front_end.c) -> the pipeline (passes/pipeline.c) -> an emitter or
 * an executor: the walk of docs/pipeline.md. */
static int run(const nnc_options *o) {
  if (!outputs_writable(o)) return NNC_EXIT_ENVIRONMENT;
  if (o->target && strcmp(o->target, "cuda") == 0 && nnc_cmd_check_cuda() != NNC_EXIT_OK) return NNC_EXIT_ENVIRONMENT;
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_source src;
  if (!nnc_source_read(&src, o->input, &d)) return NNC_EXIT_MODEL_ERROR;
  bool is_ir = ends_with(o->input, ".ir");
  double t0 = nnc_driver_seconds();
  nnc_module *m = is_ir ? nnc_parse_module(&src, &d) : nnc_driver_front_end(&src, o, wants_programs(o), &d);
  nnc_driver_front_times ft = {.front_s = nnc_driver_seconds() - t0};
  nnc_compiled *c = NULL;
  if (m && d.nerrors == 0) {
    nnc_pipeline_opts p = pipeline_for(o, is_ir);
    c = nnc_compile(m, &p, &d);
  }
  int status = c ? dispatch(m, c, o, ft) : NNC_EXIT_MODEL_ERROR;
  nnc_compiled_free(c);
  nnc_module_free(m);
  nnc_source_free(&src);
  return status;
}

int main(int argc, char **argv) {
  nnc_set_oom_handler(out_of_memory);
  nnc_rt_set_oom_handler(out_of_memory);
  nnc_options o = {0};
  int status = parse_options(argc, argv, &o);
  if (status < 0) status = run(&o);
  free_options(&o);
  return status;
}
