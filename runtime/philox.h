/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the
 * constants and round structure of Random123). A counter-based generator: the output is a
 * pure function of a 128-bit counter and a 64-bit key, so any draw can be computed on its own,
 * in any order, on any backend. That is what makes shuffles and augmentation of epoch k
 * reproducible without replaying epochs 0..k-1. Header-only, so generated code can carry it. */
#ifndef NNC_PHILOX_H
#define NNC_PHILOX_H

#include <stdint.h>

#define NNC_PHILOX_M0 0xD2511F53u
#define NNC_PHILOX_M1 0xCD9E8D57u
#define NNC_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define NNC_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

static inline void nnc_philox_round(uint32_t c[4], const uint32_t k[2]) {
  uint64_t p0 = (uint64_t)NNC_PHILOX_M0 * c[0];
  uint64_t p1 = (uint64_t)NNC_PHILOX_M1 * c[2];
  uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
  uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
  uint32_t c1 = c[1], c3 = c[3];
  c[0] = hi1 ^ c1 ^ k[0];
  c[1] = lo1;
  c[2] = hi0 ^ c3 ^ k[1];
  c[3] = lo0;
}

/* Ten rounds; the key is bumped by the Weyl constants between rounds. */
static inline void nnc_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  uint32_t k[2] = {key[0], key[1]};
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k[0] += NNC_PHILOX_W0;
      k[1] += NNC_PHILOX_W1;
    }
    nnc_philox_round(c, k);
  }
  out[0] = c[0];
  out[1] = c[1];
  out[2] = c[2];
  out[3] = c[3];
}

/* A float in [0, 1) from the top 24 bits: every value is exact in f32, and 1.0 is never drawn. */
static inline float nnc_philox_uniform(uint32_t word) {
  return (float)(word >> 8) * (1.0f / 16777216.0f);
}

#endif
