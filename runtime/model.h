/* What the runtime knows of a compiled model (DESIGN §9, §11): its buffers, laid out in
 * regions, and its programs. The compiler (driver) describes a module this way; the runtime
 * allocates the regions, feeds data, calls programs through an executor, and maps buffer names
 * to checkpoint tensors. Nothing here refers to compiler code.
 *
 * Regions: `persist` holds params, optimizer state and running stats (what a checkpoint
 * saves); `io` holds a program call's inputs (x, y) and outputs (loss, logits), sized for
 * B_max. Every buffer starts at a 64-byte aligned offset. Tied params share one offset. */
#ifndef NNC_RT_MODEL_H
#define NNC_RT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data.h"

typedef enum nnc_rt_region { NNC_RT_PERSIST, NNC_RT_IO } nnc_rt_region;

typedef enum nnc_rt_buffer_kind {
  NNC_RT_PARAM,   /* a trained parameter (PyTorch state_dict name) */
  NNC_RT_STATE,   /* a buffer the model keeps: running_mean, num_batches_tracked */
  NNC_RT_OPTIM,   /* optimizer state: "<param>.exp_avg", ... */
  NNC_RT_INPUT,   /* a batch input: x, y */
  NNC_RT_OUTPUT,  /* a program output: loss, logits */
} nnc_rt_buffer_kind;

typedef struct nnc_rt_buffer {
  const char *name;
  nnc_rt_buffer_kind kind;
  nnc_rt_dtype dtype;              /* F32, I32 or U8 */
  int rank;
  int64_t dims[NNC_RT_MAX_RANK];   /* dims[batch_axis] multiplies the batch */
  int batch_axis;                  /* -1: none */
  nnc_rt_region region;
  size_t offset;                   /* bytes from the region's start */
  size_t bytes;                    /* at B_max */
  bool frozen;                     /* PARAM: not trained */
  int tied_to;                     /* -1, or the buffer whose storage this one shares */
} nnc_rt_buffer;

typedef struct nnc_rt_model {
  const char *name;
  int64_t batch_max;
  nnc_rt_buffer *buffers;
  int nbuffers;
  size_t persist_bytes, io_bytes;
  bool has_train_step, has_eval_step, has_predict;
} nnc_rt_model;

/* The buffer named name, or NULL. */
const nnc_rt_buffer *nnc_rt_model_buffer(const nnc_rt_model *, const char *name);
/* Elements of a buffer at batch n. */
int64_t nnc_rt_buffer_elements(const nnc_rt_buffer *, int64_t n);

/* The runtime values of one program call (DESIGN §10's nnc_args, less the regions). */
typedef struct nnc_rt_call {
  int64_t n;          /* actual batch, 1 <= n <= batch_max */
  float lr;
  int32_t step;       /* optimizer steps already taken */
  uint32_t seed;      /* dropout and other in-graph randomness */
} nnc_rt_call;

/* What the train steps a resident executor queued added up to since the last read. */
typedef struct nnc_rt_losses {
  int64_t steps;            /* train steps run */
  int64_t examples;         /* Σ n over the steps whose loss was finite */
  double sum;               /* Σ loss × n over them */
  float last;               /* the latest step's loss */
  int64_t first_nonfinite;  /* call.step + 1 of the first step whose loss was NaN or ±inf; 0: none */
  float nonfinite_loss;     /* that loss */
} nnc_rt_losses;

/* An executor runs a model's programs over the regions (DESIGN §11): the reference
 * interpreter, the C backend, the LLVM JIT and CUDA. One training loop serves all. */
typedef struct nnc_rt_executor nnc_rt_executor;
struct nnc_rt_executor {
  const char *name;
  /* Runs "train_step", "eval_step" or "predict": reads inputs from io and params/state
   * from persist, writes outputs to io and state outputs back to persist. */
  bool (*run)(nnc_rt_executor *, const char *program, uint8_t *persist, uint8_t *io,
              const nnc_rt_call *, char *err, size_t cap);
  /* Residency, for an executor whose memory is not the host's (CUDA); NULL in the host
   * executors. After resident_begin the executor's copy of persist is the truth: run ignores
   * the caller's persist, and a train_step returns once it is queued, its loss (the f32 scalar
   * `loss` of io) added to an accumulator instead of written to io; eval_step and predict still
   * return their outputs in io. resident_losses waits for the queued steps and returns what they
   * added up to since the last read; resident_pull waits and copies persist to the caller's;
   * resident_end goes back to run on the caller's regions (after a pull, or to drop the work). */
  bool (*resident_begin)(nnc_rt_executor *, const uint8_t *persist, const nnc_rt_buffer *loss, char *err,
                         size_t cap);
  bool (*resident_losses)(nnc_rt_executor *, nnc_rt_losses *, char *err, size_t cap);
  bool (*resident_pull)(nnc_rt_executor *, uint8_t *persist, char *err, size_t cap);
  void (*resident_end)(nnc_rt_executor *);
  void (*destroy)(nnc_rt_executor *);
};

#endif
