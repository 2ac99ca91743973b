/* Parameter initialization (nnc_init) from a counter-based generator: element i of param p
 * draws Philox4x32-10 block (counter i, stream "INIT"; key seed, p's index), so a param's
 * values depend only on the seed and its position in the module, never on the other params
 * or on the order they are filled in. */
#include <math.h>

#include "interp.h"
#include "ir.h"
#include "runtime/philox.h"

enum { INIT_STREAM = 0x494e4954u }; /* "INIT": apart from the data streams (shuffle, augment) */

static void init_block(uint32_t seed, int index, int64_t i, uint32_t out[4]) {
  const uint32_t ctr[4] = {(uint32_t)i, (uint32_t)((uint64_t)i >> 32), INIT_STREAM, 0};
  const uint32_t key[2] = {seed, (uint32_t)index};
  nnc_philox4x32(ctr, key, out);
}

/* Uniform in [0, 1) and (0, 1] from the top 24 bits of a word (exact in float and double). */
static double unit_open_right(uint32_t w) { return (double)(w >> 8) * (1.0 / 16777216.0); }
static double unit_open_left(uint32_t w) { return ((double)(w >> 8) + 1.0) * (1.0 / 16777216.0); }

/* Element i of the init distribution, in double. */
static double init_value(const nnc_init *in, uint32_t seed, int index, int64_t i) {
  uint32_t w[4];
  switch (in->kind) {
  case NNC_INIT_ZEROS: return 0;
  case NNC_INIT_ONES: return 1;
  case NNC_INIT_CONST: return in->a;
  case NNC_INIT_UNIFORM:
    init_block(seed, index, i, w);
    return in->a + (in->b - in->a) * unit_open_right(w[0]);
  case NNC_INIT_NORMAL: {
    /* Box-Muller on words 0 and 1; u1 in (0, 1] keeps the log finite. */
    init_block(seed, index, i, w);
    double r = sqrt(-2.0 * log(unit_open_left(w[0])));
    return in->a + in->b * r * cos(6.283185307179586 * unit_open_right(w[1]));
  }
  }
  return 0;
}

void nnc_param_init_values(const nnc_param *p, uint32_t seed, int index, void *out, int64_t count) {
  for (int64_t i = 0; i < count; i++) {
    double v = init_value(&p->init, seed, index, i);
    switch (p->type.dtype) {
    case NNC_F32: ((float *)out)[i] = (float)v; break;
    case NNC_I32: ((int32_t *)out)[i] = (int32_t)v; break;
    case NNC_U8: ((uint8_t *)out)[i] = (uint8_t)v; break;
    default: break;
    }
  }
}
