/* --devices, --emit cuda and the --target cuda check (driver/cuda_cmd.h). */
#include "driver/cuda_cmd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/cuda.h"
#include "codegen/cuda_load.h"
#include "codegen/cuda_program.h"
#include "codegen/c_program.h"
#include "driver/output.h"

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
  nnc_diags why_not;
  nnc_diags_init_buffer(&why_not, err, sizeof err);
  nnc_cg_cuda_nvrtc *nv = nnc_cg_cuda_nvrtc_open(&why_not);
  if (nv) fprintf(out, "nvrtc: %s\n", nnc_cg_cuda_nvrtc_version(nv)), nnc_cg_cuda_nvrtc_close(nv);
  else fprintf(out, "nvrtc: %s\n", err);
  bool failed = fflush(out) != 0 || ferror(out);
  return failed ? NNC_EXIT_ENVIRONMENT : NNC_EXIT_OK;
}

int nnc_cmd_check_cuda(void) {
  nnc_cg_cuda_device dev;
  char why[512];
  if (nnc_cg_cuda_devices(&dev, 1, NULL, why, sizeof why) > 0) return NNC_EXIT_OK; /* driver/exec_cuda.h runs there */
  fprintf(stderr, "nnc: error: --target cuda: %s\n", why);
  return NNC_EXIT_ENVIRONMENT;
}

/* --- --emit cuda and --emit ptx --------------------------------------------------------------- */

enum { MAX_PROGRAMS = 8 };

/* The programs of c (lowered with the GPU schedule) into progs, kernels named apart; the count. */
static int gpu_programs(const nnc_compiled *c, nnc_lprogram **progs) {
  int n = 0;
  for (int i = 0; i < c->nprograms && n < MAX_PROGRAMS; i++) progs[n++] = c->programs[i].lowered;
  nnc_cg_cuda_name_kernels(progs, n);
  return n;
}

int nnc_cmd_emit_cuda(const nnc_compiled *c, const nnc_options *o) {
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  nnc_lprogram *progs[MAX_PROGRAMS];
  int count = gpu_programs(c, progs);
  nnc_outfile out;
  if (!nnc_outfile_open(&out, o->output)) return NNC_EXIT_ENVIRONMENT;
  bool ok = nnc_cg_cuda_model_file(out.f, c->module->name, c->module->batch_max, progs, count,
                                   NNC_CUDA_SCALARS_PARAMS, &d);
  return nnc_outfile_close(&out, ok ? NNC_EXIT_OK : NNC_EXIT_MODEL_ERROR);
}

/* DIR/name: written through fn(f), whole or not at all; reported on failure. */
static bool write_file(const char *dir, const char *name, void (*fn)(FILE *, void *), void *ctx) {
  nnc_outfile out;
  if (!nnc_outfile_open_in(&out, dir, name)) return false;
  fn(out.f, ctx);
  return nnc_outfile_close(&out, NNC_EXIT_OK) == NNC_EXIT_OK;
}

typedef struct ptx_job {
  const nnc_module *m;
  nnc_lprogram **progs;
  int count;
  const char *text;
  nnc_diags *d;
  bool ok;
} ptx_job;

static void put_text(FILE *f, void *ctx) { fputs(((ptx_job *)ctx)->text, f); }
static void put_abi(FILE *f, void *ctx) { (void)ctx, fputs(nnc_cg_abi_text, f); }
static void put_source(FILE *f, void *ctx) {
  ptx_job *j = ctx;
  j->ok = nnc_cg_cuda_launcher_source(f, j->m->name, j->progs, j->count, j->d);
}
static void put_header(FILE *f, void *ctx) {
  ptx_job *j = ctx;
  nnc_cg_cuda_launcher_header(f, j->m->name, j->progs[0]->plan->layout, j->progs, j->count);
}
static void put_main(FILE *f, void *ctx) { nnc_cg_cuda_launcher_main(f, ((ptx_job *)ctx)->m->name); }

int nnc_cmd_emit_ptx(const nnc_compiled *c, const nnc_options *o) {
  if (!o->output) {
    fprintf(stderr, "nnc: error: --emit ptx writes a directory: give it with -o DIR\n");
    return NNC_EXIT_USAGE;
  }
  nnc_diags d;
  nnc_diags_init(&d, stderr);
  const nnc_module *m = c->module;
  nnc_lprogram *progs[MAX_PROGRAMS];
  int count = gpu_programs(c, progs), status = NNC_EXIT_OK;
  char *cu = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&cu, &len);
  if (f && !nnc_cg_cuda_model_file(f, m->name, m->batch_max, progs, count, NNC_CUDA_SCALARS_PARAMS, &d)) status = NNC_EXIT_MODEL_ERROR;
  if (f) fclose(f);
  char err[1024], arch[32];
  nnc_diags failure; /* said with the flag that needed it */
  nnc_diags_init_buffer(&failure, err, sizeof err);
  nnc_cg_cuda_ptx ptx = {0};
  nnc_cg_cuda_nvrtc *nv = NULL;
  if (status == NNC_EXIT_OK && !(nv = nnc_cg_cuda_nvrtc_open(&failure))) {
    fprintf(stderr, "nnc: error: --emit ptx: %s\n", err);
    status = NNC_EXIT_ENVIRONMENT;
  }
  nnc_cg_cuda_arch(arch, sizeof arch);
  if (nv && !nnc_cg_cuda_compile(nv, cu, "model.cu", arch, true, &ptx, &failure)) {
    fprintf(stderr, "nnc: error: --emit ptx: NVRTC: %s\n%s", err, ptx.log ? ptx.log : "");
    status = NNC_EXIT_MODEL_ERROR;
  }
  if (status == NNC_EXIT_OK && !nnc_outdir_make(o->output)) status = NNC_EXIT_ENVIRONMENT;
  if (status == NNC_EXIT_OK) {
    ptx_job j = {.m = m, .progs = progs, .count = count, .d = &d, .ok = true};
    bool ok = true;
    j.text = ptx.text, ok &= write_file(o->output, "model.ptx", put_text, &j);
    j.text = cu, ok &= write_file(o->output, "model.cu", put_text, &j);
    ok &= write_file(o->output, "model.c", put_source, &j);
    ok &= write_file(o->output, "model.h", put_header, &j);
    ok &= write_file(o->output, "nnc_abi.h", put_abi, &j);
    ok &= write_file(o->output, "model_main.c", put_main, &j);
    status = !j.ok ? NNC_EXIT_MODEL_ERROR : !ok ? NNC_EXIT_ENVIRONMENT : NNC_EXIT_OK;
  }
  nnc_cg_cuda_ptx_free(&ptx);
  if (nv) nnc_cg_cuda_nvrtc_close(nv);
  free(cu);
  return status;
}
