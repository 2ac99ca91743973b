/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the
 * constants and round structure of Random123). A counter-based generator: the output is a
 * pure function of a 128-bit counter and a 64-bit key, so any draw can be computed on its own,
 * in any order, on any backend. That is what makes shuffles and augmentation of epoch k
 * reproducible without replaying epochs 0..k-1, and rng_uniform the same bits everywhere.
 *
 * Part of the ABI, like abi.h: plain C99, header-only, no dependency. The interpreter, the
 * runtime's data streams and parameter init include it; the C and CUDA backends print it into
 * the code they emit (the CUDA prelude defines NNC_PHILOX_FN as a device function), and the
 * LLVM backend builds the same rounds from these constants. */
#ifndef NNC_PHILOX_H
#define NNC_PHILOX_H

/* No header, so that CUDA C for NVRTC can carry it: the word types are spelled out. */
typedef unsigned int nnc_philox_u32;
typedef unsigned long long nnc_philox_u64;
typedef char nnc_philox_u32_has_32_bits[sizeof(nnc_philox_u32) == 4 ? 1 : -1];
#ifndef NNC_PHILOX_FN
#define NNC_PHILOX_FN static inline
#endif

#define NNC_PHILOX_M0 0xD2511F53u
#define NNC_PHILOX_M1 0xCD9E8D57u
#define NNC_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define NNC_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

NNC_PHILOX_FN void nnc_philox_round(nnc_philox_u32 c[4], const nnc_philox_u32 k[2]) {
  nnc_philox_u64 p0 = (nnc_philox_u64)NNC_PHILOX_M0 * c[0];
  nnc_philox_u64 p1 = (nnc_philox_u64)NNC_PHILOX_M1 * c[2];
  nnc_philox_u32 hi0 = (nnc_philox_u32)(p0 >> 32), lo0 = (nnc_philox_u32)p0;
  nnc_philox_u32 hi1 = (nnc_philox_u32)(p1 >> 32), lo1 = (nnc_philox_u32)p1;
  nnc_philox_u32 c1 = c[1], c3 = c[3];
  c[0] = hi1 ^ c1 ^ k[0];
  c[1] = lo1;
  c[2] = hi0 ^ c3 ^ k[1];
  c[3] = lo0;
}

/* Ten rounds; the key is bumped by the Weyl constants between rounds, not before the first. */
NNC_PHILOX_FN void nnc_philox4x32(const nnc_philox_u32 ctr[4], const nnc_philox_u32 key[2], nnc_philox_u32 out[4]) {
  nnc_philox_u32 c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  nnc_philox_u32 k[2] = {key[0], key[1]};
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
NNC_PHILOX_FN float nnc_philox_uniform(nnc_philox_u32 word) {
  return (float)(word >> 8) * (1.0f / 16777216.0f);
}

/* Element i of rng_uniform(seed, key) at step (docs/ir.md, "Random numbers"): word 0 of the
 * block at counter (i, i >> 32, step, 0) and key (seed, key). */
NNC_PHILOX_FN float nnc_rng_uniform_at(nnc_philox_u32 seed, nnc_philox_u32 key, nnc_philox_u32 step, nnc_philox_u64 i) {
  const nnc_philox_u32 ctr[4] = {(nnc_philox_u32)i, (nnc_philox_u32)(i >> 32), step, 0};
  const nnc_philox_u32 k[2] = {seed, key};
  nnc_philox_u32 out[4];
  nnc_philox4x32(ctr, k, out);
  return nnc_philox_uniform(out[0]);
}

#endif
