/* Temperature sampling. The softmax is computed in double after subtracting the largest
 * logit, so no temperature overflows exp; the uniform draw has 53 bits, so even a
 * token of probability 1e-12 among 256 is drawn at its rate. */
#include "runtime/sample.h"

#include <math.h>

#include "runtime/philox.h"

enum { SAMPLE_KEY = 0x53414d50, STREAM_SAMPLE = 4 };

static double uniform53(uint64_t seed, uint64_t index) {
  uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), STREAM_SAMPLE, (uint32_t)(seed >> 32)};
  uint32_t key[2] = {(uint32_t)seed, SAMPLE_KEY}, out[4];
  nnc_philox4x32(ctr, key, out);
  uint64_t bits = ((uint64_t)out[0] << 21) ^ (out[1] >> 11); /* 53 bits */
  return (double)(bits & ((1ull << 53) - 1)) * 0x1p-53;
}

static int32_t argmax(const float *logits, int32_t n) {
  int32_t best = -1;
  for (int32_t i = 0; i < n; i++)
    if (isfinite(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
  return best < 0 ? 0 : best;
}

int32_t nnc_rt_sample_token(const float *logits, int32_t n, double temperature, uint64_t seed, uint64_t index) {
  int32_t top = argmax(logits, n);
  if (!(temperature > 0) || !isfinite(logits[top])) return top;
  /* (l - max) / t, not l / t - max / t: a tiny t cannot turn it into inf - inf */
  double max = logits[top], total = 0;
  for (int32_t i = 0; i < n; i++)
    if (isfinite(logits[i])) total += exp((logits[i] - max) / temperature);
  double target = uniform53(seed, index) * total, sum = 0;
  int32_t last = top;
  for (int32_t i = 0; i < n; i++) {
    if (!isfinite(logits[i])) continue;
    sum += exp((logits[i] - max) / temperature);
    last = i;
    if (target < sum) return i;
  }
  return last; /* rounding left target at the very top */
}
