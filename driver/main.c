/* nnc: the command-line driver. It reads flags, runs the stages and decides exit statuses;
 * every stage below it reports through nnc_diags and returns. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "ir/ir.h"

/* Exit statuses (documented in --help and docs/cli.md). */
enum {
  EXIT_OK = 0,
  EXIT_MODEL_ERROR = 1,   /* an error in the model or another input file */
  EXIT_USAGE = 2,         /* bad flags */
  EXIT_ENVIRONMENT = 3,   /* no device, out of memory, I/O failure */
};

typedef enum { EMIT_NONE, EMIT_IR } emit_kind;

typedef struct options {
  const char *input;
  bool check;
  emit_kind emit;
  const char *output;
  int64_t batch;
  nnc_mode mode;
  nnc_override *overrides;
  int noverrides;
} options;

static const char usage_text[] =
    "usage: nnc FILE [options]\n"
    "\n"
    "FILE is a model (.nn) or graph IR text (.ir, as written by --emit ir).\n"
    "\n"
    "options:\n"
    "  --check            parse, elaborate and verify the model; print nothing on success\n"
    "  --emit ir          print the graph IR (the typed graph with PyTorch parameter names)\n"
    "  --mode MODE        which forward graph to build: train (default), eval, predict\n"
    "  --set NAME=VALUE   override a hyperparameter or a train-block field (repeatable)\n"
    "  --batch N          the compiled batch size B_max (default: the train block's batch, else 64)\n"
    "  -o FILE            write the output to FILE instead of standard output\n"
    "  -h, --help         print this help and exit\n"
    "  --version          print the version and exit\n"
    "\n"
    "With no action flag, nnc prints a summary of the model: inputs, outputs, parameters.\n"
    "\n"
    "exit status:\n"
    "  0  success\n"
    "  1  an error in the model or another input file (diagnostics on standard error)\n"
    "  2  a usage error (bad flags)\n"
    "  3  an environment failure (no device, out of memory, I/O failure)\n";

static void usage_error(const char *fmt, const char *arg) {
  fputs("nnc: error: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\nTry 'nnc --help' for more information.\n", stderr);
}

static void out_of_memory(size_t bytes) {
  fprintf(stderr, "nnc: error: out of memory (allocating %zu bytes)\n", bytes);
  exit(EXIT_ENVIRONMENT);
}

static bool parse_int64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static bool add_override(options *o, const char *arg) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg || !eq[1]) return false;
  o->overrides = nnc_xrealloc(o->overrides, sizeof(nnc_override) * (size_t)(o->noverrides + 1));
  size_t len = (size_t)(eq - arg);
  char *name = nnc_xmalloc(len + 1);
  memcpy(name, arg, len);
  name[len] = 0;
  o->overrides[o->noverrides++] = (nnc_override){.name = name, .value = eq + 1};
  return true;
}

static void free_options(options *o) {
  for (int i = 0; i < o->noverrides; i++) free((char *)o->overrides[i].name);
  free(o->overrides);
}

/* Returns -1 when parsing succeeded, else the exit status. */
static int parse_options(int argc, char **argv, options *o) {
  enum { OPT_CHECK = 256, OPT_EMIT, OPT_SET, OPT_BATCH, OPT_VERSION, OPT_MODE };
  static const struct option longopts[] = {
      {"check", no_argument, 0, OPT_CHECK},     {"emit", required_argument, 0, OPT_EMIT},
      {"set", required_argument, 0, OPT_SET},   {"batch", required_argument, 0, OPT_BATCH},
      {"mode", required_argument, 0, OPT_MODE}, {"help", no_argument, 0, 'h'},
      {"version", no_argument, 0, OPT_VERSION}, {0, 0, 0, 0},
  };
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
    switch (c) {
    case 'h': fputs(usage_text, stdout); return EXIT_OK;
    case OPT_VERSION: printf("nnc %s\n", NNC_VERSION); return EXIT_OK;
    case OPT_CHECK: o->check = true; break;
    case 'o': o->output = optarg; break;
    case OPT_EMIT:
      if (strcmp(optarg, "ir") != 0) {
        usage_error("unknown --emit kind '%s' (available: ir)", optarg);
        return EXIT_USAGE;
      }
      o->emit = EMIT_IR;
      break;
    case OPT_MODE:
      if (strcmp(optarg, "train") == 0) o->mode = NNC_MODE_TRAIN;
      else if (strcmp(optarg, "eval") == 0) o->mode = NNC_MODE_EVAL;
      else if (strcmp(optarg, "predict") == 0) o->mode = NNC_MODE_PREDICT;
      else {
        usage_error("unknown --mode '%s' (available: train, eval, predict)", optarg);
        return EXIT_USAGE;
      }
      break;
    case OPT_SET:
      if (!add_override(o, optarg)) {
        usage_error("--set expects NAME=VALUE, got '%s'", optarg);
        return EXIT_USAGE;
      }
      break;
    case OPT_BATCH:
      if (!parse_int64(optarg, 1, 1 << 20, &o->batch)) {
        usage_error("--batch expects an integer from 1 to 1048576, got '%s'", optarg);
        return EXIT_USAGE;
      }
      break;
    case ':': usage_error("option '%s' needs a value", argv[optind - 1]); return EXIT_USAGE;
    default: usage_error("unknown option '%s'", argv[optind - 1]); return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    usage_error("%s", "no input file");
    return EXIT_USAGE;
  }
  if (argc - optind > 1) {
    usage_error("more than one input file ('%s')", argv[optind + 1]);
    return EXIT_USAGE;
  }
  o->input = argv[optind];
  return -1;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Model file -> module; NULL after reporting errors. */
static nnc_module *compile_model(const nnc_source *src, const options *o, nnc_diags *d) {
  nnc_arena *ast_arena = nnc_arena_new();
  nnc_ast *file = nnc_parse_source(ast_arena, src, d);
  nnc_module *m = NULL;
  if (file && d->nerrors == 0) {
    nnc_elab_opts eo = {.mode = o->mode, .overrides = o->overrides, .noverrides = o->noverrides,
                        .batch = o->batch};
    m = nnc_elaborate(file, &eo, d);
    for (int i = 0; i < o->noverrides; i++)
      if (!o->overrides[i].used)
        nnc_error(d, (nnc_loc){0}, "--set %s: no hyperparameter or train field named '%s'",
                  o->overrides[i].name, o->overrides[i].name);
  }
  nnc_arena_free(ast_arena);
  if (m && d->nerrors == 0 && !nnc_verify_module(m, d)) {
    nnc_error(d, (nnc_loc){0}, "internal error: the elaborated graph does not verify");
  }
  if (d->nerrors) {
    nnc_module_free(m);
    return NULL;
  }
  return m;
}

static int64_t param_elements(const nnc_module *m, bool trainable) {
  int64_t total = 0;
  for (int i = 0; i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    if (p->tied_to >= 0 || p->is_state != !trainable) continue;
    total += nnc_type_elements(&p->type, m->batch_max);
  }
  return total;
}

static void print_summary(FILE *out, const nnc_module *m) {
  char buf[256];
  const nnc_graph *g = m->forward;
  fprintf(out, "model %s (batch %lld)\n", m->name, (long long)m->batch_max);
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i]->op == NNC_OP_input)
      fprintf(out, "  input  %-24s %s\n", g->nodes[i]->name, nnc_type_str(&g->nodes[i]->type, buf, sizeof buf));
  for (int i = 0; i < g->noutputs; i++)
    fprintf(out, "  output %-24s %s%s\n", g->outputs[i].name, nnc_type_str(&g->outputs[i].value->type, buf, sizeof buf),
            i == g->loss ? "  (objective)" : "");
  for (int i = 0; i < m->nparams; i++) {
    const nnc_param *p = &m->params[i];
    fprintf(out, "  %-6s %-24s %s%s%s\n", p->is_state ? "state" : "param", p->name,
            nnc_type_str(&p->type, buf, sizeof buf), p->frozen ? "  frozen" : "",
            p->tied_to >= 0 ? "  (tied)" : "");
  }
  fprintf(out, "%lld trainable parameters, %lld state values, %d graph nodes\n",
          (long long)param_elements(m, true), (long long)param_elements(m, false), g->nnodes);
}

static int write_output(const options *o, const nnc_module *m) {
  FILE *out = stdout;
  if (o->output && !(out = fopen(o->output, "w"))) {
    fprintf(stderr, "nnc: error: cannot write '%s': %s\n", o->output, strerror(errno));
    return EXIT_ENVIRONMENT;
  }
  if (o->emit == EMIT_IR)
    nnc_print_module(out, m);
  else
    print_summary(out, m);
  bool failed = fflush(out) != 0 || ferror(out);
  if (out != stdout) failed |= fclose(out) != 0;
  if (failed) {
    fprintf(stderr, "nnc: error: writing '%s' failed: %s\n", o->output ? o->output : "standard output",
            strerror(errno));
    return EXIT_ENVIRONMENT;
  }
  return EXIT_OK;
}

int main(int argc, char **argv) {
  nnc_set_oom_handler(out_of_memory);
  options o = {0};
  int status = parse_options(argc, argv, &o);
  if (status >= 0) {
    free_options(&o);
    return status;
  }
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_source src;
  if (!nnc_source_read(&src, o.input, &d)) {
    free_options(&o);
    return EXIT_MODEL_ERROR;
  }
  nnc_module *m = ends_with(o.input, ".ir") ? nnc_parse_module(&src, &d) : compile_model(&src, &o, &d);
  if (m && d.nerrors) {
    nnc_module_free(m);
    m = NULL;
  }
  status = !m ? EXIT_MODEL_ERROR : o.check && o.emit == EMIT_NONE ? EXIT_OK : write_output(&o, m);
  nnc_module_free(m);
  nnc_source_free(&src);
  free_options(&o);
  return status;
}
