/* --sample N: text from a character-level model, after --train or from the weights of --load
 * or --resume (docs/training.md, "Sampling"). */
#ifndef NNC_DRIVER_SAMPLE_CMD_H
#define NNC_DRIVER_SAMPLE_CMD_H

#include <stdio.h>

#include "driver/options.h"
#include "ir/ir.h"
#include "ir/lowered.h"
#include "runtime/model.h"

/* Writes the prompt (--prompt, default a newline) and o->sample characters generated after it
 * to out: predict runs through ex on the last T tokens, the next one is drawn from
 * softmax(logits / --temperature) with Philox keyed by seed. Returns an exit status after
 * reporting any error. */
int nnc_sample_text(const nnc_module *m, const nnc_rt_model *rm, nnc_rt_executor *ex, uint8_t *persist,
                    const nnc_rt_vocab *vocab, const nnc_options *o, uint64_t seed, FILE *out);

/* --sample without --train: the weights and the vocabulary come from --load or --resume. */
int nnc_cmd_sample(nnc_module *m, const nnc_compiled *c, const nnc_options *o);

#endif
