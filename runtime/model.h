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

/* An executor runs a model's programs over the regions (DESIGN §11): the reference
 * interpreter, and later the C backend, the LLVM JIT and CUDA. One training loop serves all. */
typedef struct nnc_rt_executor nnc_rt_executor;
struct nnc_rt_executor {
  const char *name;
  /* Runs "train_step", "eval_step" or "predict": reads inputs from io and params/state
   * from persist, writes outputs to io and state outputs back to persist. */
  bool (*run)(nnc_rt_executor *, const char *program, uint8_t *persist, uint8_t *io,
              const nnc_rt_call *, char *err, size_t cap);
  void (*destroy)(nnc_rt_executor *);
};

#endif
