/* layer_run: a model's outputs, loss and gradients through the reference interpreter, for the
 * PyTorch parity tests of layers and sequence models (tests/torch/layers.py).
 *
 *   layer_run MODEL.nn IN.safetensors OUT.safetensors [--f32] [--mode train|eval] [--set k=v]...
 *
 * IN holds every parameter (PyTorch state_dict names) and input of the model; the batch is the
 * size of the first input's batch dim. OUT receives, as F64, every output of the model (the
 * loss as "loss") and "grad.<name>" for every parameter and f32 input. Exit status 0 on
 * success, 1 with a message otherwise. */
#include <math.h>

#include "runtime/safetensors.h"
#include "tests/unit/seq_harness.h"

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (buf) buf[n] = 0;
  fclose(f);
  return buf;
}

/* The batch: the size of the batch dim of the first input found in the file. */
static int64_t batch_of(const sh_model *s, const nnc_st_file *in) {
  for (int i = 0; i < s->nbind; i++) {
    const nnc_node *n = s->bind[i];
    const nnc_st_tensor *t = nnc_st_find(in, n->name);
    if (n->op == NNC_OP_input && n->type.batch_axis >= 0 && t && t->rank == n->type.rank)
      return t->shape[n->type.batch_axis] / n->type.dims[n->type.batch_axis];
  }
  return 1;
}

static bool bind_values(sh_model *s, const nnc_st_file *in, int64_t n) {
  for (int i = 0; i < s->nbind; i++) {
    const nnc_node *b = s->bind[i];
    const nnc_st_tensor *t = nnc_st_find(in, b->name);
    s->val[i] = nnc_tensor_alloc(b->type, n, true);
    int64_t count = nnc_tensor_elements(&s->val[i]);
    size_t es = t ? nnc_st_dtype_size(t->dtype) : 0;
    if (!t || es == 0 || t->nbytes != (size_t)count * es) {
      fprintf(stderr, "layer_run: '%s' %s missing or of another size\n", b->name, t ? "is" : "is");
      return false;
    }
    for (int64_t k = 0; k < count; k++) {
      double v;
      const unsigned char *p = (const unsigned char *)t->data + (size_t)k * es;
      switch (t->dtype) {
      case NNC_ST_F32: { float f; memcpy(&f, p, 4); v = f; break; }
      case NNC_ST_F64: memcpy(&v, p, 8); break;
      case NNC_ST_I32: { int32_t x; memcpy(&x, p, 4); v = x; break; }
      case NNC_ST_I64: { int64_t x; memcpy(&x, p, 8); v = (double)x; break; }
      case NNC_ST_U8: v = *p; break;
      default: fprintf(stderr, "layer_run: '%s': unsupported dtype\n", b->name); return false;
      }
      switch (b->type.dtype) {
      case NNC_F32: ((double *)s->val[i].data)[k] = v; break;
      case NNC_I32: ((int32_t *)s->val[i].data)[k] = (int32_t)v; break;
      default: ((uint8_t *)s->val[i].data)[k] = (uint8_t)v; break;
      }
    }
  }
  return true;
}

static bool write_outputs(const sh_model *s, nnc_tensor *outs, const char *path) {
  int n = s->g->noutputs;
  nnc_st_tensor *ts = calloc((size_t)n, sizeof *ts);
  int64_t (*shapes)[NNC_MAX_RANK] = calloc((size_t)n, sizeof *shapes);
  double **data = calloc((size_t)n, sizeof *data);
  for (int i = 0; i < n; i++) {
    const nnc_tensor *t = &outs[i];
    int64_t count = nnc_tensor_elements(t);
    data[i] = malloc(sizeof(double) * (size_t)(count ? count : 1));
    for (int64_t k = 0; k < count; k++) data[i][k] = nnc_tensor_get(t, k);
    for (int d = 0; d < t->type.rank; d++) shapes[i][d] = t->type.dims[d] * (d == t->type.batch_axis ? t->n : 1);
    ts[i] = (nnc_st_tensor){.name = s->g->outputs[i].name, .dtype = NNC_ST_F64, .rank = t->type.rank,
                            .shape = shapes[i], .data = data[i]};
  }
  char err[512];
  bool ok = nnc_st_write(path, ts, (size_t)n, NULL, 0, err, sizeof err);
  if (!ok) fprintf(stderr, "layer_run: %s\n", err);
  for (int i = 0; i < n; i++) free(data[i]);
  free(data), free(shapes), free(ts);
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: layer_run MODEL.nn IN.safetensors OUT.safetensors [--f32] [--mode train|eval] [--set k=v]...\n");
    return 1;
  }
  char *sets[32];
  int nsets = 0;
  nnc_interp_precision prec = NNC_INTERP_F64;
  nnc_mode mode = NNC_MODE_EVAL;
  for (int i = 4; i < argc; i++) {
    if (strcmp(argv[i], "--f32") == 0) prec = NNC_INTERP_F32;
    else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) mode = strcmp(argv[++i], "train") == 0 ? NNC_MODE_TRAIN : NNC_MODE_EVAL;
    else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && nsets < 32) sets[nsets++] = argv[++i];
    else {
      fprintf(stderr, "layer_run: unknown option %s\n", argv[i]);
      return 1;
    }
  }
  char *text = read_file(argv[1]);
  nnc_st_file in;
  char err[512];
  if (!text || !nnc_st_read(argv[2], &in, err, sizeof err)) {
    fprintf(stderr, "layer_run: cannot read %s\n", text ? err : argv[1]);
    return 1;
  }
  /* elaborate once at batch 1 to learn the inputs, then at the file's batch */
  sh_model s;
  if (!sh_compile(&s, argv[1], text, mode, 0, sets, nsets)) return 1;
  int64_t n = batch_of(&s, &in);
  sh_free(&s);
  char *sets2[32];
  char copies[32][256];
  for (int i = 0; i < nsets; i++) { /* sh_compile split the first copies at '=' */
    snprintf(copies[i], sizeof copies[i], "%s=%s", sets[i], sets[i] + strlen(sets[i]) + 1);
    sets2[i] = copies[i];
  }
  if (!sh_compile(&s, argv[1], text, mode, n, sets2, nsets) || !bind_values(&s, &in, n)) return 1;
  nnc_tensor *outs = calloc((size_t)s.g->noutputs, sizeof *outs);
  if (!sh_run(&s, n, prec, outs) || !write_outputs(&s, outs, argv[3])) return 1;
  for (int i = 0; i < s.g->noutputs; i++) nnc_tensor_free(&outs[i]);
  free(outs);
  sh_free(&s);
  nnc_st_free(&in);
  free(text);
  return 0;
}
