/* nnc_parity: what tests/torch/test_parity.py compares against PyTorch, for one model.
 *
 *   nnc_parity MODEL.nn --params P.safetensors --data D.safetensors --out O.safetensors
 *              [--optimizer SGD|Adam|AdamW] [--lr X] [--momentum X] [--weight-decay X]
 *              [--steps K] [--batch BMAX] [--seed S] [--f64] [--set NAME=VALUE]...
 *
 * P holds the initial params and state by their state_dict names (num_batches_tracked may be
 * I64, as torch saves it; optimizer moments missing from P start at zero). D holds one tensor
 * per model input ("x", "y"), batch first, n <= BMAX. O receives, all computed by the
 * reference interpreter:
 *   loss, out.<output>     the train-mode forward at the initial weights (step 0)
 *   grad.<param>           the loss's gradient w.r.t. every trainable param there
 *   step<k>.loss           the loss train_step reports at step k (k < K)
 *   after.<buffer>         every buffer train_step writes (params, moments, running stats),
 *                          after K calls of train_step
 * Everything runs in f32 (F32 tensors), or with --f64 in f64 (F64 tensors: the interpreter
 * rounds nothing, so what differs from a float64 reference is not rounding). The runtime
 * scalars are lr, step (= the steps already taken) and seed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/programs.h"
#include "runtime/safetensors.h"
#include "../unit/model_run.h"

typedef struct parity_args {
  const char *model, *params, *data, *out;
  nnc_options opt;
  nnc_override sets[32];
  int64_t steps, seed;
  bool f64;
} parity_args;

static int usage(const char *msg) {
  fprintf(stderr,
          "nnc_parity: %s\nusage: nnc_parity MODEL.nn --params P.safetensors --data D.safetensors --out O.safetensors\n"
          "       [--optimizer SGD|Adam|AdamW] [--lr X] [--momentum X] [--weight-decay X] [--steps K]\n"
          "       [--batch BMAX] [--seed S] [--f64] [--set NAME=VALUE]...\n",
          msg);
  return 2;
}

static bool parse_num(const char *s, double *out) {
  char *end;
  errno = 0;
  *out = strtod(s, &end);
  return s[0] && !*end && errno == 0;
}

/* Returns 0 or an exit status after printing what is wrong. */
static int parse_args(int argc, char **argv, parity_args *a) {
  *a = (parity_args){.opt = mr_default_options(), .steps = 3};
  a->opt.overrides = a->sets;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i];
    if (strcmp(k, "--f64") == 0) {
      a->f64 = true;
      continue;
    }
    if (k[0] != '-') {
      if (a->model) return usage("more than one model file");
      a->model = k;
      continue;
    }
    if (i + 1 >= argc) return usage("a flag lacks its value");
    const char *v = argv[++i];
    double x = 0;
    bool num = parse_num(v, &x);
    if (strcmp(k, "--params") == 0) a->params = v;
    else if (strcmp(k, "--data") == 0) a->data = v;
    else if (strcmp(k, "--out") == 0) a->out = v;
    else if (strcmp(k, "--optimizer") == 0) a->opt.optimizer = v;
    else if (strcmp(k, "--lr") == 0 && num && x > 0) a->opt.lr = x;
    else if (strcmp(k, "--momentum") == 0 && num && x >= 0) a->opt.momentum = x;
    else if (strcmp(k, "--weight-decay") == 0 && num && x >= 0) a->opt.weight_decay = x;
    else if (strcmp(k, "--steps") == 0 && num && x >= 0 && x <= 1000) a->steps = (int64_t)x;
    else if (strcmp(k, "--batch") == 0 && num && x >= 1 && x <= 1 << 20) a->opt.batch = (int64_t)x;
    else if (strcmp(k, "--seed") == 0 && num && x >= 0 && x < 2147483648.0) a->seed = (int64_t)x;
    else if (strcmp(k, "--set") == 0 && strchr(v, '=') && a->opt.noverrides < 32) {
      char *eq = strchr(v, '=');
      a->sets[a->opt.noverrides++] = (nnc_override){strndup(v, (size_t)(eq - v)), eq + 1, false};
    } else {
      fprintf(stderr, "nnc_parity: bad flag or value: %s %s\n", k, v);
      return 2;
    }
  }
  if (!a->model || !a->params || !a->data || !a->out) return usage("MODEL, --params, --data and --out are required");
  return 0;
}

/* --- reading tensors from safetensors files ------------------------------------------------ */

static double st_get(const nnc_st_tensor *t, int64_t i) {
  const unsigned char *p = t->data;
  switch (t->dtype) {
  case NNC_ST_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
  case NNC_ST_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
  case NNC_ST_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
  case NNC_ST_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
  case NNC_ST_U8: return p[i];
  default: return 0;
  }
}

static bool dtype_fits(nnc_st_dtype st, nnc_dtype want) {
  switch (want) {
  case NNC_F32: return st == NNC_ST_F32 || st == NNC_ST_F64;
  case NNC_I32: return st == NNC_ST_I32 || st == NNC_ST_I64;
  case NNC_U8: return st == NNC_ST_U8;
  default: return false;
  }
}

/* The file tensor as a host tensor of type `type` at batch n; false (with a message) when its
 * dtype or shape does not fit. */
static bool tensor_from_file(const nnc_st_tensor *t, const nnc_type *type, int64_t n, nnc_tensor *out) {
  char ts[128];
  bool ok = dtype_fits(t->dtype, type->dtype) && t->rank == type->rank;
  for (int i = 0; ok && i < t->rank; i++) ok = t->shape[i] == type->dims[i] * (i == type->batch_axis ? n : 1);
  if (!ok) {
    fprintf(stderr, "nnc_parity: '%s' (%s, rank %d) does not fit %s at batch %lld\n", t->name,
            nnc_st_dtype_name(t->dtype), t->rank, nnc_type_str(type, ts, sizeof ts), (long long)n);
    return false;
  }
  *out = nnc_tensor_alloc(*type, n, false);
  int64_t count = nnc_tensor_elements(out);
  for (int64_t i = 0; i < count; i++) {
    double v = st_get(t, i);
    if (type->dtype == NNC_F32) ((float *)out->data)[i] = (float)v;
    else if (type->dtype == NNC_I32) ((int32_t *)out->data)[i] = (int32_t)v;
    else ((uint8_t *)out->data)[i] = (uint8_t)v;
  }
  return true;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool is_moment(const char *name) {
  return ends_with(name, ".exp_avg") || ends_with(name, ".exp_avg_sq") || ends_with(name, ".momentum_buffer");
}

/* Every buffer of m from the params file; optimizer moments it lacks start at zero. */
static bool load_params(const nnc_module *m, const char *path, mr_buffers *bufs) {
  nnc_st_file f;
  char err[512];
  if (!nnc_st_read(path, &f, err, sizeof err)) {
    fprintf(stderr, "nnc_parity: %s\n", err);
    return false;
  }
  bool ok = true;
  for (int i = 0; ok && i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    if (p->tied_to >= 0) continue;
    const nnc_st_tensor *t = nnc_st_find(&f, p->name);
    nnc_tensor v;
    if (t) ok = tensor_from_file(t, &p->type, 1, &v);
    else if (p->is_state && is_moment(p->name)) v = nnc_tensor_alloc(p->type, 1, false);
    else {
      fprintf(stderr, "nnc_parity: %s has no tensor '%s'\n", path, p->name);
      ok = false;
    }
    if (ok) mr_set(bufs, p->name, v);
  }
  nnc_st_free(&f);
  return ok;
}

/* Every input of the forward graph from the data file; sets *n from their batch. */
static bool load_inputs(const nnc_module *m, const char *path, mr_buffers *bufs, int64_t *n) {
  nnc_st_file f;
  char err[512];
  if (!nnc_st_read(path, &f, err, sizeof err)) {
    fprintf(stderr, "nnc_parity: %s\n", err);
    return false;
  }
  bool ok = true;
  *n = -1;
  for (int i = 0; ok && i < m->forward->nnodes; i++) {
    const nnc_node *nd = m->forward->nodes[i];
    if (nd->op != NNC_OP_input) continue;
    const nnc_st_tensor *t = nnc_st_find(&f, nd->name);
    int ax = nd->type.batch_axis;
    if (!t || ax < 0 || t->rank <= ax) {
      fprintf(stderr, "nnc_parity: %s has no batched tensor '%s'\n", path, nd->name);
      ok = false;
      break;
    }
    int64_t tn = t->shape[ax] / nd->type.dims[ax];
    if (*n < 0) *n = tn;
    if (tn != *n || tn < 1 || tn > m->batch_max) {
      fprintf(stderr, "nnc_parity: '%s' holds a batch of %lld; the batch is %lld, at most %lld\n", nd->name,
              (long long)tn, (long long)*n, (long long)m->batch_max);
      ok = false;
      break;
    }
    nnc_tensor v;
    ok = tensor_from_file(t, &nd->type, *n, &v);
    if (ok) mr_set(bufs, nd->name, v);
  }
  if (ok && *n < 0) {
    fprintf(stderr, "nnc_parity: the model has no input\n");
    ok = false;
  }
  nnc_st_free(&f);
  return ok;
}

/* --- the results file ------------------------------------------------------------------- */

typedef struct results {
  int n, cap;
  nnc_st_tensor *t;
} results;

/* Adds a copy of v under name: F64 for wide tensors, else the tensor's own dtype. */
static void add_result(results *r, const char *name, const nnc_tensor *v) {
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 64;
    r->t = nnc_xrealloc(r->t, sizeof *r->t * (size_t)r->cap);
  }
  int64_t *shape = nnc_xcalloc(NNC_MAX_RANK, sizeof *shape);
  for (int i = 0; i < v->type.rank; i++) shape[i] = v->type.dims[i] * (i == v->type.batch_axis ? v->n : 1);
  int64_t count = nnc_tensor_elements(v);
  size_t esz = nnc_tensor_elem_size(v);
  nnc_st_dtype dt = v->type.dtype == NNC_F32 ? (v->wide ? NNC_ST_F64 : NNC_ST_F32)
                    : v->type.dtype == NNC_I32 ? NNC_ST_I32 : NNC_ST_U8;
  void *data = nnc_xmalloc((size_t)count * esz + 1);
  memcpy(data, v->data, (size_t)count * esz);
  size_t len = strlen(name) + 1;
  r->t[r->n++] = (nnc_st_tensor){.name = memcpy(nnc_xmalloc(len), name, len), .dtype = dt, .rank = v->type.rank,
                                 .shape = shape, .data = data};
}

static void free_results(results *r) {
  for (int i = 0; i < r->n; i++) {
    free((void *)r->t[i].name);
    free((void *)r->t[i].shape);
    free((void *)r->t[i].data);
  }
  free(r->t);
}

static void free_tensors(nnc_tensor *t, int n) {
  for (int i = 0; i < n; i++) nnc_tensor_free(&t[i]);
  free(t);
}

/* --- the runs ----------------------------------------------------------------------------- */

/* loss, out.<name> and grad.<param> at the initial weights. */
static bool gradient_run(nnc_module *m, const parity_args *a, mr_buffers *bufs, int64_t n, results *r) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  int first_grad = 0;
  nnc_graph *g = mr_gradient_graph(m, &first_grad, &d);
  if (!g) return false;
  mr_set_scalar(bufs, "step", NNC_I32, 0);
  nnc_tensor *outs = nnc_xcalloc((size_t)g->noutputs, sizeof *outs);
  char err[512], name[600];
  if (!mr_run(m, g, a->f64 ? NNC_INTERP_F64 : NNC_INTERP_F32, bufs, n, outs, NULL, err, sizeof err)) {
    fprintf(stderr, "nnc_parity: gradient run: %s\n", err);
    free(outs);
    return false;
  }
  for (int i = 0; i < g->noutputs; i++) {
    const char *o = g->outputs[i].name;
    if (i == g->loss) snprintf(name, sizeof name, "loss");
    else if (i >= first_grad) snprintf(name, sizeof name, "%s", o);
    else snprintf(name, sizeof name, "out.%s", o);
    add_result(r, name, &outs[i]);
  }
  free_tensors(outs, g->noutputs);
  return true;
}

/* K calls of train_step, each writing its state outputs back into bufs; step<k>.loss and
 * after.<buffer>. */
static bool train_run(nnc_module *m, const parity_args *a, mr_buffers *bufs, int64_t n, results *r) {
  nnc_graph *g = nnc_module_find_program(m, "train_step");
  if (!g) {
    fprintf(stderr, "nnc_parity: model '%s' has no train_step\n", m->name);
    return false;
  }
  char err[512], name[600];
  for (int64_t k = 0; k < a->steps; k++) {
    mr_set_scalar(bufs, "step", NNC_I32, (double)k);
    nnc_tensor *outs = nnc_xcalloc((size_t)g->noutputs + 1, sizeof *outs);
    nnc_tensor *souts = nnc_xcalloc((size_t)g->nstate + 1, sizeof *souts);
    if (!mr_run(m, g, a->f64 ? NNC_INTERP_F64 : NNC_INTERP_F32, bufs, n, outs, souts, err, sizeof err)) {
      fprintf(stderr, "nnc_parity: train_step %lld: %s\n", (long long)k, err);
      free(outs), free(souts);
      return false;
    }
    snprintf(name, sizeof name, "step%lld.loss", (long long)k);
    add_result(r, name, &outs[g->loss]);
    for (int i = 0; i < g->nstate; i++) {
      mr_set(bufs, g->state_outputs[i].name, souts[i]);
      souts[i] = (nnc_tensor){0};
    }
    free_tensors(outs, g->noutputs);
    free_tensors(souts, g->nstate);
  }
  for (int i = 0; i < g->nstate && a->steps > 0; i++) {
    snprintf(name, sizeof name, "after.%s", g->state_outputs[i].name);
    add_result(r, name, mr_find(bufs, g->state_outputs[i].name));
  }
  return true;
}

static int run(const parity_args *a) {
  nnc_source src = {0};
  nnc_module *m = mr_compile(a->model, &a->opt, true, &src, stderr);
  if (!m) {
    nnc_source_free(&src);
    return 1;
  }
  mr_buffers bufs = {0};
  results r = {0};
  int64_t n = 0;
  bool ok = load_params(m, a->params, &bufs) && load_inputs(m, a->data, &bufs, &n);
  if (ok) {
    mr_set_scalar(&bufs, "lr", NNC_F32, m->train.lr);
    mr_set_scalar(&bufs, "seed", NNC_I32, (double)a->seed);
    ok = gradient_run(m, a, &bufs, n, &r) && train_run(m, a, &bufs, n, &r);
  }
  char err[512];
  if (ok && !nnc_st_write(a->out, r.t, (size_t)r.n, NULL, 0, err, sizeof err)) {
    fprintf(stderr, "nnc_parity: %s\n", err);
    ok = false;
  }
  free_results(&r);
  mr_free(&bufs);
  nnc_module_free(m);
  nnc_source_free(&src);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  parity_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc == 0) rc = run(&a);
  for (int i = 0; i < a.opt.noverrides; i++) free((void *)a.sets[i].name);
  return rc;
}
