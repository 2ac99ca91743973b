/* The host machine as a target (ir/target.h). */
#include "ir/target.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The vector ISA from cpuid, through the compiler's CPU detection (run time, not build time). */
static void detect_isa(nnc_target *t) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) t->isa = "avx512f", t->vector_bits = 512, t->fma = true;
  else if (__builtin_cpu_supports("avx2")) t->isa = "avx2", t->vector_bits = 256, t->fma = __builtin_cpu_supports("fma");
  else t->isa = "sse2", t->vector_bits = 128, t->fma = false;
#elif defined(__aarch64__)
  t->isa = "neon", t->vector_bits = 128, t->fma = true;
#else
  t->isa = "generic", t->vector_bits = 128, t->fma = false;
#endif
}

/* NNC_VECTOR_LANES: a power of two in 1..64, else ignored (0). */
static int lanes_override(void) {
  const char *s = getenv("NNC_VECTOR_LANES");
  if (!s || !*s) return 0;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v < 1 || v > 64 || (v & (v - 1))) return 0;
  return (int)v;
}

nnc_target nnc_target_host(void) {
  nnc_target t = {0};
  detect_isa(&t);
  t.f32_lanes = t.vector_bits / 32;
  int o = lanes_override();
  if (o) t.f32_lanes = o, t.lanes_overridden = true;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  t.cores = n > 0 ? (int)n : 1;
  t.cflags = "-march=native";
  return t;
}

int nnc_target_lanes(const nnc_target *t, nnc_dtype dt) {
  size_t size = dt == (nnc_dtype)NNC_DTYPE_COUNT ? 8 : nnc_dtype_size(dt); /* i64, the loop IR's index type */
  int lanes = (int)((size_t)t->f32_lanes * 4 / (size ? size : 4));
  return lanes > 0 ? lanes : 1;
}

const char *nnc_target_str(const nnc_target *t, char *buf, size_t cap) {
  snprintf(buf, cap, "%s: %d-bit vectors, f32x%d%s%s, %d core%s, %s", t->isa, t->vector_bits, t->f32_lanes,
           t->lanes_overridden ? " (NNC_VECTOR_LANES)" : "", t->fma ? ", fma" : "", t->cores, t->cores == 1 ? "" : "s",
           t->cflags);
  return buf;
}
