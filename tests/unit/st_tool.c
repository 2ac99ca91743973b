/* The C side of the safetensors interop test (tests/torch/test_safetensors_interop.py):
 *
 *   st_tool write <path>   writes a fixed set of tensors whose values the script recomputes
 *   st_tool dump <path>    reads a file and prints it as JSON: {"metadata": {..}, "tensors":
 *                          {name: {"dtype", "shape", "values": [flat, row-major]}}}
 *
 * Floats print with 17 significant digits (exact); NaN and infinities as strings. A file the
 * reader rejects prints its message on stderr and exits with 1. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/safetensors.h"

/* ---- write ---- */

static float conv_w[4 * 1 * 3 * 3];
static double conv_b[4];
static int32_t fc_index[2 * 3];
static const int64_t fc_big[3] = {1LL << 40, -5, 9000000000000000000LL};
static uint8_t pixels[2 * 2 * 2];
static const float scale = 0.5f;
static const uint8_t mask[3] = {1, 0, 1};
static const uint16_t half[3] = {0x3c00, 0xc000, 0x0001};   /* 1, -2, smallest subnormal */
static const uint16_t brain[2] = {0x3f80, 0x4049};          /* 1, 3.140625 */
static const float nonfinite[3] = {INFINITY, -INFINITY, -0.0f};

static int write_sample(const char *path) {
  for (int i = 0; i < 36; i++) conv_w[i] = (float)i * 0.25f - 3.0f;
  for (int i = 0; i < 4; i++) conv_b[i] = 1.0 / (i + 1);
  for (int i = 0; i < 6; i++) fc_index[i] = i * -7 + 3;
  for (int i = 0; i < 8; i++) pixels[i] = (uint8_t)(i * 37 % 256);
  static const int64_t s_w[4] = {4, 1, 3, 3}, s_b[1] = {4}, s_idx[2] = {2, 3}, s_big[1] = {3},
                       s_px[3] = {2, 2, 2}, s_mask[1] = {3}, s_half[1] = {3}, s_brain[1] = {2},
                       s_none[2] = {0, 5}, s_nf[1] = {3};
  const nnc_st_tensor ts[] = {
      {.name = "conv1.weight", .dtype = NNC_ST_F32, .rank = 4, .shape = s_w, .data = conv_w},
      {.name = "conv1.bias", .dtype = NNC_ST_F64, .rank = 1, .shape = s_b, .data = conv_b},
      {.name = "fc.index", .dtype = NNC_ST_I32, .rank = 2, .shape = s_idx, .data = fc_index},
      {.name = "fc.big", .dtype = NNC_ST_I64, .rank = 1, .shape = s_big, .data = fc_big},
      {.name = "pixels", .dtype = NNC_ST_U8, .rank = 3, .shape = s_px, .data = pixels},
      {.name = "scale", .dtype = NNC_ST_F32, .rank = 0, .data = &scale},
      {.name = "mask", .dtype = NNC_ST_BOOL, .rank = 1, .shape = s_mask, .data = mask},
      {.name = "half", .dtype = NNC_ST_F16, .rank = 1, .shape = s_half, .data = half},
      {.name = "brain", .dtype = NNC_ST_BF16, .rank = 1, .shape = s_brain, .data = brain},
      {.name = "none", .dtype = NNC_ST_F32, .rank = 2, .shape = s_none},
      {.name = "nonfinite", .dtype = NNC_ST_F32, .rank = 1, .shape = s_nf, .data = nonfinite},
  };
  const nnc_st_meta meta[] = {{"format", "pt"}, {"producer", "nnc"}};
  char err[512];
  if (!nnc_st_write(path, ts, sizeof ts / sizeof ts[0], meta, 2, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  return 0;
}

/* ---- dump ---- */

static double half_to_double(uint16_t h) {
  int exp = (h >> 10) & 31, frac = h & 1023;
  double v = exp == 0    ? ldexp(frac, -24)
             : exp == 31 ? (frac ? NAN : INFINITY)
                         : ldexp(frac + 1024, exp - 25);
  return (h >> 15) ? -v : v;
}

static double bf16_to_double(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static json_t *real_or_name(double v) {
  if (isnan(v)) return json_string("nan");
  if (isinf(v)) return json_string(v > 0 ? "inf" : "-inf");
  return json_real(v);
}

/* Element i of a tensor as JSON; data may be unaligned, hence memcpy. */
static json_t *element(const nnc_st_tensor *t, size_t i) {
  const unsigned char *p = (const unsigned char *)t->data + i * nnc_st_dtype_size(t->dtype);
  union {
    int8_t i8; uint8_t u8; int16_t i16; uint16_t u16; int32_t i32; uint32_t u32;
    int64_t i64; uint64_t u64; float f32; double f64;
  } v;
  memcpy(&v, p, nnc_st_dtype_size(t->dtype));
  switch (t->dtype) {
  case NNC_ST_BOOL: return json_boolean(v.u8 != 0);
  case NNC_ST_U8: case NNC_ST_F8_E5M2: case NNC_ST_F8_E4M3: return json_integer(v.u8);
  case NNC_ST_I8: return json_integer(v.i8);
  case NNC_ST_I16: return json_integer(v.i16);
  case NNC_ST_U16: return json_integer(v.u16);
  case NNC_ST_F16: return real_or_name(half_to_double(v.u16));
  case NNC_ST_BF16: return real_or_name(bf16_to_double(v.u16));
  case NNC_ST_I32: return json_integer(v.i32);
  case NNC_ST_U32: return json_integer(v.u32);
  case NNC_ST_F32: return real_or_name(v.f32);
  case NNC_ST_I64: return json_integer(v.i64);
  case NNC_ST_U64: return v.u64 > INT64_MAX ? real_or_name((double)v.u64) : json_integer((json_int_t)v.u64);
  case NNC_ST_F64: return real_or_name(v.f64);
  default: return json_null();
  }
}

static json_t *describe(const nnc_st_tensor *t) {
  json_t *shape = json_array(), *values = json_array();
  for (int i = 0; i < t->rank; i++) json_array_append_new(shape, json_integer(t->shape[i]));
  size_t n = t->nbytes / nnc_st_dtype_size(t->dtype);
  for (size_t i = 0; i < n; i++) json_array_append_new(values, element(t, i));
  return json_pack("{s:s, s:o, s:o, s:I}", "dtype", nnc_st_dtype_name(t->dtype), "shape", shape, "values", values,
                   "offset", (json_int_t)t->offset);
}

static int dump(const char *path) {
  nnc_st_file f;
  char err[512];
  if (!nnc_st_read(path, &f, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  json_t *meta = json_object(), *tensors = json_object();
  for (size_t i = 0; i < f.nmeta; i++) json_object_set_new(meta, f.meta[i].key, json_string(f.meta[i].value));
  for (size_t i = 0; i < f.ntensors; i++) json_object_set_new(tensors, f.tensors[i].name, describe(&f.tensors[i]));
  json_t *root = json_pack("{s:o, s:o}", "metadata", meta, "tensors", tensors);
  int rc = json_dumpf(root, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) == 0 ? 0 : 1;
  putchar('\n');
  json_decref(root);
  nnc_st_free(&f);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "write") == 0) return write_sample(argv[2]);
  if (argc == 3 && strcmp(argv[1], "dump") == 0) return dump(argv[2]);
  fprintf(stderr, "usage: st_tool write|dump <file.safetensors>\n");
  return 2;
}
