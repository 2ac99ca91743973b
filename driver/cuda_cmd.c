/* --devices, --emit cuda and the --target cuda check (driver/cuda_cmd.h). */
#include "driver/cuda_cmd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/cuda.h"
#include "codegen/cuda_load.h"
#include "passes/lower.h"

/* --- the CPU -------------------------------------------------------------------------------- */

/* The value of the first "key : value" line of /proc/cpuinfo, into buf ("" when absent). */
static void cpuinfo_field(const char *key, char *buf, size_t cap) {
  buf[0] = 0;
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[8192];
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, klen) != 0 || (line[klen] != ' ' && line[klen] != '\t' && line[klen] != ':')) continue;
    const char *v = strchr(line, ':');
    if (!v) continue;
    v++;
    while (*v == ' ') v++;
    snprintf(buf, cap, "%s", v);
    buf[strcspn(buf, "\n")] = 0;
    break;
  }
  fclose(f);
}

static bool has_flag(const char *flags, const char *flag) {
  size_t n = strlen(flag);
  for (const char *p = flags; (p = strstr(p, flag)); p += n)
    if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return true;
  return false;
}

static void print_cpu(FILE *out) {
  char name[256], flags[8192];
  cpuinfo_field("model name", name, sizeof name);
  cpuinfo_field("flags", flags, sizeof flags);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  fprintf(out, "cpu: %s, %ld cores\n", name[0] ? name : "unknown", cores > 0 ? cores : 1);
  static const char *const features[] = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl",
                                         "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "asimd", "sve"};
  fprintf(out, "  vector features:");
  int shown = 0;
  for (size_t i = 0; i < sizeof features / sizeof *features; i++)
    if (has_flag(flags, features[i])) fprintf(out, " %s", features[i]), shown++;
  fprintf(out, "%s\n", shown ? "" : " none known");
}

/* --- CUDA ----------------------------------------------------------------------------------- */

enum { MAX_DEVICES = 16 };

int nnc_cmd_devices(FILE *out) {
  print_cpu(out);
  nnc_cg_cuda_device devs[MAX_DEVICES];
  char why[512];
  int version = 0;
  int count = nnc_cg_cuda_devices(devs, MAX_DEVICES, &version, why, sizeof why);
  if (count <= 0) {
    fprintf(out, "cuda: %s\n", why);
  } else {
    fprintf(out, "cuda: driver %d.%d, %d device%s\n", version / 1000, version % 1000 / 10, count, count == 1 ? "" : "s");
    for (int i = 0; i < count && i < MAX_DEVICES; i++)
      fprintf(out, "  device %d: %s, compute capability %d.%d (sm_%d%d), %d multiprocessors, %.1f GiB\n", i,
              devs[i].name, devs[i].major, devs[i].minor, devs[i].major, devs[i].minor, devs[i].multiprocessors,
              (double)devs[i].memory / (1024.0 * 1024.0 * 1024.0));
  }
  char err[512];
  nnc_cg_cuda_nvrtc *nv = nnc_cg_cuda_nvrtc_open(err, sizeof err);
  if (nv) fprintf(out, "nvrtc: %s\n", nnc_cg_cuda_nvrtc_version(nv)), nnc_cg_cuda_nvrtc_close(nv);
  else fprintf(out, "nvrtc: %s\n", err);
  bool failed = fflush(out) != 0 || ferror(out);
  return failed ? NNC_EXIT_ENVIRONMENT : NNC_EXIT_OK;
}

int nnc_cmd_check_cuda(void) {
  nnc_cg_cuda_device dev;
  char why[512];
  if (nnc_cg_cuda_devices(&dev, 1, NULL, why, sizeof why) > 0) {
    /* A device is there; what runs on it is the CUDA executor's (docs/cuda.md, "Device execution"). */
    fprintf(stderr, "nnc: error: --target cuda: programs do not run on CUDA devices yet (found %s, sm_%d%d); "
                    "use --emit cuda to see the kernels\n", dev.name, dev.major, dev.minor);
    return NNC_EXIT_ENVIRONMENT;
  }
  fprintf(stderr, "nnc: error: --target cuda: %s\n", why);
  return NNC_EXIT_ENVIRONMENT;
}

/* --- --emit cuda ---------------------------------------------------------------------------- */

/* Kernels shared by several programs are printed once; names that repeat between programs
 * (node ids do) get the program's name. */
static bool print_program(FILE *out, const nnc_lprogram *p, const nnc_kernel **done, int *ndone, nnc_diags *d) {
  fprintf(out, "/* ---- program %s: %d kernels, %d calls ---- */\n\n", p->name, p->nkernels, p->ncalls);
  bool ok = true;
  for (int i = 0; i < p->nkernels; i++) {
    nnc_kernel *k = p->kernels[i];
    bool seen = false, clash = false;
    for (int j = 0; j < *ndone && !seen; j++) {
      bool same_name = strcmp(done[j]->name, k->name) == 0;
      seen = same_name && done[j]->hash == k->hash && nnc_lk_equal(done[j], k);
      clash |= same_name && !seen;
    }
    if (seen) continue;
    if (clash) k->name = nnc_arena_printf(k->arena, "%s_%s", k->name, p->name);
    ok &= nnc_cg_cuda_kernel(out, k, d);
    done[(*ndone)++] = k;
  }
  return ok;
}

int nnc_cmd_emit_cuda(const nnc_module *m, const nnc_options *o) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_arena *a = nnc_arena_new();
  char err[512];
  nnc_mem_layout *L = nnc_mem_layout_module(a, m, err, sizeof err);
  if (!L) {
    fprintf(stderr, "nnc: error: %s\n", err);
    nnc_arena_free(a);
    return NNC_EXIT_MODEL_ERROR;
  }
  FILE *out = stdout;
  if (o->output && !(out = fopen(o->output, "w"))) {
    fprintf(stderr, "nnc: error: cannot write '%s': %s\n", o->output, strerror(errno));
    nnc_arena_free(a);
    return NNC_EXIT_ENVIRONMENT;
  }
  nnc_lower_opts lo = {.target = NNC_LOWER_GPU};
  const nnc_kernel **done = NULL;
  int ndone = 0, status = NNC_EXIT_OK;
  fprintf(out, "/* model %s (batch %lld): CUDA C for NVRTC, printed by nnc --emit cuda */\n", m->name,
          (long long)m->batch_max);
  nnc_cg_cuda_prelude(out);
  for (int i = 0; status == NNC_EXIT_OK && i < nnc_module_program_count(m); i++) {
    const nnc_graph *g = nnc_module_program(m, i);
    if (strcmp(g->name, "forward") == 0) continue;
    nnc_lprogram *p = nnc_lower_program(a, m, g, L, &lo, &d);
    if (p) done = nnc_xrealloc(done, sizeof *done * (size_t)(ndone + p->nkernels + 1));
    if (!p || !print_program(out, p, done, &ndone, &d)) status = NNC_EXIT_MODEL_ERROR;
  }
  free(done);
  bool failed = fflush(out) != 0 || ferror(out);
  if (out != stdout) failed |= fclose(out) != 0;
  if (failed && status == NNC_EXIT_OK) {
    fprintf(stderr, "nnc: error: writing '%s' failed: %s\n", o->output ? o->output : "standard output", strerror(errno));
    status = NNC_EXIT_ENVIRONMENT;
  }
  nnc_arena_free(a);
  return status;
}
