/* The machine generated code runs on (DESIGN §8: a schedule picks vector widths, loop kinds and
 * tile sizes for it). nnc compiles for the machine it runs on, so the host is read at run time
 * (cpuid through the compiler's CPU detection), not when nnc itself was built.
 *
 *   f32 lanes   16 with AVX-512F (32 zmm registers), 8 with AVX2 (16 ymm), 4 otherwise
 *               (SSE2 or NEON: 128-bit registers)
 *   cores       online processors: how many workers a parallel loop can use
 *   cflags      what generated C is compiled with for this machine ("-march=native")
 *
 * NNC_VECTOR_LANES=L in the environment (a power of two, 1..64) overrides the f32 lanes, so
 * tests can pin a schedule whatever the machine. */
#ifndef NNC_TARGET_H
#define NNC_TARGET_H

#include <stdbool.h>
#include <stddef.h>

#include "ir.h"

typedef struct nnc_target {
  const char *isa;        /* "avx512f", "avx2", "sse2", "neon", "generic" */
  int vector_bits;        /* the widest vector register: 512, 256, 128 */
  int f32_lanes;          /* f32 lanes of a schedule's vectors (vector_bits / 32 or the override) */
  bool fma;               /* fused multiply-add instructions */
  bool lanes_overridden;  /* f32_lanes came from NNC_VECTOR_LANES */
  int cores;              /* online processors, at least 1 */
  const char *cflags;     /* the generated code's machine flags: "-march=native" */
} nnc_target;

/* The machine nnc runs on, with NNC_VECTOR_LANES applied. */
nnc_target nnc_target_host(void);
/* Lanes of a vector of dt in the target's registers (f32 lanes scaled by element size, at least 1). */
int nnc_target_lanes(const nnc_target *, nnc_dtype dt);
/* "avx2: 256-bit vectors, f32x8, fma, 2 cores, -march=native" */
const char *nnc_target_str(const nnc_target *, char *buf, size_t cap);

#endif
