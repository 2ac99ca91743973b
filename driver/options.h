/* The driver's options: every flag of `nnc --help`, parsed once in driver/main.c. */
#ifndef NNC_DRIVER_OPTIONS_H
#define NNC_DRIVER_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/frontend.h"

/* Exit statuses (documented in --help and docs/cli.md). */
enum {
  NNC_EXIT_OK = 0,
  NNC_EXIT_MODEL_ERROR = 1,   /* an error in the model or another input file */
  NNC_EXIT_USAGE = 2,         /* bad flags */
  NNC_EXIT_ENVIRONMENT = 3,   /* no device, out of memory, I/O failure */
};

typedef enum { NNC_EMIT_NONE, NNC_EMIT_IR, NNC_EMIT_C, NNC_EMIT_CUDA, NNC_EMIT_KERNELS, NNC_EMIT_DOT,
              NNC_EMIT_LOOPS, NNC_EMIT_PTX, /* before LLVM: kinds from LLVM on are the LLVM backend's */
              NNC_EMIT_LLVM, NNC_EMIT_ASM, NNC_EMIT_OBJ } nnc_emit_kind;
typedef enum { NNC_ACTION_SUMMARY, NNC_ACTION_CHECK, NNC_ACTION_EMIT, NNC_ACTION_TRAIN, NNC_ACTION_EVAL,
              NNC_ACTION_STATS, NNC_ACTION_SAMPLE, NNC_ACTION_MEMPLAN, NNC_ACTION_CHECK_KERNELS } nnc_action;

typedef struct nnc_options {
  const char *input;
  nnc_action action;          /* resolved from actions_given once every flag is read */
  unsigned actions_given;     /* 1 << nnc_action for each action flag given */
  nnc_emit_kind emit;
  bool emit_train;            /* --emit ir --train: print the programs, train_step included */
  const char *output;         /* -o */
  const char *passes;         /* --passes: the pipeline's graph passes, comma-separated (docs/cli.md);
                                 "" when it named stages only */
  char *passes_list;          /* owned storage behind passes */
  bool no_fusion;             /* --no-fusion: one kernel per node */
  int stop_after;             /* --stop-after: the last pipeline stage (passes/pipeline.h's nnc_stage); -1: all */
  nnc_mode mode;              /* --mode: which forward graph --emit ir shows */
  nnc_override *overrides;    /* --set */
  int noverrides;
  int64_t batch;              /* --batch; 0: the model's */

  /* training (docs/training.md); numbers < 0 / NULL mean "the train block's" */
  int64_t epochs;
  double lr, momentum, weight_decay;
  const char *optimizer;
  const char *schedule;       /* e.g. "cosine", "cosine,warmup=200", "step,step_size=2,gamma=0.5" */
  int64_t seed;               /* -1: the train block's (default 0) */
  const char *data;           /* overrides the train block's data source path */
  double val_split;           /* 0: none */
  int threads;                /* 0: all cores */
  const char *target;         /* "interp" (default for now) */
  const char *log_path;       /* --log FILE.csv */
  const char *plot_path;      /* --plot FILE.svg */
  const char *save_path;      /* --save FILE.safetensors */
  int64_t save_every;         /* --save-every N steps; 0: only at the end */
  const char *resume_path;    /* --resume FILE */
  const char *load_path;      /* --load FILE */
  int64_t max_steps;          /* --max-steps N: stop after N steps (tests, quick runs); 0: no limit */
  bool quiet;                 /* --quiet: no progress bar or per-epoch lines */

  /* sampling from a character model (docs/training.md) */
  int64_t sample;             /* --sample N characters after training or from --load; 0: none */
  const char *prompt;         /* --prompt TEXT; NULL: a newline */
  double temperature;         /* --temperature X; < 0: 0.8 */
} nnc_options;

#endif
