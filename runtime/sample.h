/* Drawing the next token of a language model from its logits (nnc --sample, docs/training.md). */
#ifndef NNC_RT_SAMPLE_H
#define NNC_RT_SAMPLE_H

#include <stdint.h>

/* A token in [0, n) drawn from softmax(logits / temperature), or the argmax (the first on ties)
 * when temperature is 0. Draw `index` of a run uses one Philox4x32-10 block, key (low 32 bits
 * of seed, 0x53414d50 "SAMP"), counter (index, index >> 32, 4, high 32 bits of seed), so the
 * text generated from a seed is the same on every machine. Logits that are not finite count
 * as -infinity; if none is finite the result is 0. */
int32_t nnc_rt_sample_token(const float *logits, int32_t n, double temperature, uint64_t seed, uint64_t index);

#endif
