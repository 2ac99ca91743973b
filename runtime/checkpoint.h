/* Training checkpoints (docs/training.md): a model's persist region as a safetensors file with
 * PyTorch's names and layouts, plus where training stood in "__metadata__", so a run resumed
 * from it continues bit for bit as if it had never stopped. */
#ifndef NNC_RT_CHECKPOINT_H
#define NNC_RT_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "schedule.h"

/* Where a run stands. Epoch and position within it follow from step and steps_per_epoch
 * (every epoch has the same number of steps); the data order and in-graph randomness are
 * counter-based, keyed by (seed, epoch) and step, so nothing else needs saving except the
 * state of a reduce-on-plateau schedule. */
typedef struct nnc_rt_train_state {
  int64_t step;              /* optimizer steps taken */
  int64_t steps_per_epoch;
  int64_t batch;             /* B_max the run was made with */
  uint64_t seed;
  double plateau_lr, plateau_best;
  int64_t plateau_bad_epochs, plateau_cooldown_left;
  nnc_rt_vocab vocab;        /* text models: the token of every id (size 0: none); saved as
                              * metadata "vocab" so a checkpoint decodes its own samples */
} nnc_rt_train_state;

typedef enum nnc_rt_load_mode {
  NNC_RT_LOAD_WEIGHTS,  /* params and state only (--load, --eval): optimizer moments are ignored */
  NNC_RT_LOAD_RESUME,   /* everything, and the training state from the metadata (--resume) */
} nnc_rt_load_mode;

/* Whether every f32 value a checkpoint saves is finite; else err names the first tensor that is
 * not ("'fc1.weight' holds nan at element 3"). A diverged run must not replace a good checkpoint. */
bool nnc_rt_persist_finite(const nnc_rt_model *, const uint8_t *persist, char *err, size_t cap);

/* Writes every PARAM, STATE and OPTIM buffer of persist (a tied param once, under its
 * target's name) and *st, atomically. Refuses (before touching path) when a value is not
 * finite (nnc_rt_persist_finite); other failures are I/O failures. */
bool nnc_rt_checkpoint_save(const char *path, const nnc_rt_model *, const uint8_t *persist,
                            const nnc_rt_train_state *st, char *err, size_t cap);

/* Reads path into persist. Every tensor the mode needs must be present with the buffer's
 * shape and dtype (an I64 tensor is accepted for an I32 buffer, as PyTorch saves
 * num_batches_tracked, when its values fit); a tensor the model does not have is an error,
 * except optimizer moments in WEIGHTS mode. RESUME also fills *st. On failure persist may be
 * partly written and err says "<path>: <problem>". */
bool nnc_rt_checkpoint_load(const char *path, const nnc_rt_model *, uint8_t *persist, nnc_rt_load_mode,
                            nnc_rt_train_state *st, char *err, size_t cap);

/* The vocabulary in path's metadata ("vocab", lowercase hex of the token bytes); size 0 when
 * the file has none (a model not trained on text). False for an unreadable file or a damaged
 * entry. */
bool nnc_rt_checkpoint_vocab(const char *path, nnc_rt_vocab *, char *err, size_t cap);

#endif
