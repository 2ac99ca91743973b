/* The training curves as SVG (--plot): the loss (left axis) and the accuracy (right axis)
 * against epochs, written atomically. */
#include "runtime/plot.h"
#include "runtime/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/atomic_file.h"


typedef struct svg {
  char *buf;
  size_t len, cap;
  bool oom;
} svg;

static void svg_printf(svg *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void svg_printf(svg *s, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
    va_end(ap);
    if (k < 0 || s->oom) return;
    if (s->buf && s->len + (size_t)k < s->cap) {
      s->len += (size_t)k;
      return;
    }
    size_t cap = (s->cap + (size_t)k + 1) * 2;
    char *p = realloc(s->buf, cap);
    if (!p) {
      s->oom = true;
      return;
    }
    s->buf = p, s->cap = cap;
  }
}

enum { PLOT_W = 720, PLOT_H = 420, PLOT_L = 70, PLOT_R = 70, PLOT_T = 40, PLOT_B = 60 };

/* The smallest 1, 2 or 5 times a power of ten at or above x. */
static double nice_ceiling(double x) {
  if (!(x > 0) || !isfinite(x)) return 1;
  double p = pow(10, floor(log10(x)));
  return x <= p ? p : x <= 2 * p ? 2 * p : x <= 5 * p ? 5 * p : 10 * p;
}

static double plot_x(double epoch, double max_epoch) {
  return PLOT_L + (PLOT_W - PLOT_L - PLOT_R) * (max_epoch > 0 ? epoch / max_epoch : 0);
}
static double plot_y(double v, double max) { return PLOT_H - PLOT_B - (PLOT_H - PLOT_T - PLOT_B) * v / max; }

static void plot_axes(svg *s, double max_epoch, double max_loss) {
  int x0 = PLOT_L, x1 = PLOT_W - PLOT_R, y0 = PLOT_H - PLOT_B, y1 = PLOT_T;
  svg_printf(s, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", x0, y1,
             x1 - x0, y0 - y1);
  for (int i = 0; i <= 5; i++) {
    double y = plot_y(max_loss * i / 5, max_loss);
    svg_printf(s, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x1, y);
    svg_printf(s, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", x0 - 6, y + 4, max_loss * i / 5);
    svg_printf(s, "<text x=\"%d\" y=\"%.1f\">%d%%</text>\n", x1 + 6, y + 4, 20 * i);
  }
  int step = max_epoch <= 10 ? 1 : (int)ceil(max_epoch / 10);
  for (int e = 0; e <= (int)max_epoch; e += step) {
    double x = plot_x(e, max_epoch);
    svg_printf(s, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>\n", x, y0, x, y0 + 5);
    svg_printf(s, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x, y0 + 20, e);
  }
  svg_printf(s, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n", (x0 + x1) / 2, PLOT_H - 15);
  svg_printf(s, "<text transform=\"translate(18,%d) rotate(-90)\" text-anchor=\"middle\">loss</text>\n", (y0 + y1) / 2);
  svg_printf(s, "<text transform=\"translate(%d,%d) rotate(90)\" text-anchor=\"middle\">accuracy</text>\n", PLOT_W - 18,
             (y0 + y1) / 2);
}

/* One curve; which: 0 train loss, 1 test loss, 2 test accuracy (scaled to the right axis). */
static void plot_curve(svg *s, const nnc_rt_epoch_row *rows, int64_t n, int which, double max_epoch, double max_loss,
                       const char *color, const char *dash) {
  svg_printf(s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color, dash);
  for (int64_t i = 0; i < n; i++) {
    double v = which == 0 ? rows[i].train_loss : which == 1 ? rows[i].test_loss : rows[i].test_acc * max_loss;
    if (isfinite(v)) svg_printf(s, "%.1f,%.1f ", plot_x((double)rows[i].epoch, max_epoch), plot_y(v, max_loss));
  }
  svg_printf(s, "\"/>\n");
}

static void plot_legend(svg *s, int i, const char *color, const char *dash, const char *label) {
  int x = PLOT_L + 10 + 150 * i, y = PLOT_T - 14;
  svg_printf(s, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", x, y - 4,
             x + 24, y - 4, color, dash);
  svg_printf(s, "<text x=\"%d\" y=\"%d\">%s</text>\n", x + 30, y, label);
}

bool nnc_rt_write_plot(const char *path, const nnc_rt_epoch_row *rows, int64_t n, const char *eval_name, char *err,
                       size_t cap) {
  double max_epoch = n ? (double)rows[n - 1].epoch : 1, max_loss = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isfinite(rows[i].train_loss) && rows[i].train_loss > max_loss) max_loss = rows[i].train_loss;
    if (isfinite(rows[i].test_loss) && rows[i].test_loss > max_loss) max_loss = rows[i].test_loss;
  }
  max_loss = nice_ceiling(max_loss);
  svg s = {0};
  svg_printf(&s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                 "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
             PLOT_W, PLOT_H, PLOT_W, PLOT_H);
  plot_axes(&s, max_epoch, max_loss);
  static const char *const dashed = " stroke-dasharray=\"6,4\"";
  char label[64];
  plot_curve(&s, rows, n, 0, max_epoch, max_loss, "#1f77b4", "");
  plot_curve(&s, rows, n, 1, max_epoch, max_loss, "#ff7f0e", dashed);
  plot_curve(&s, rows, n, 2, max_epoch, max_loss, "#2ca02c", "");
  plot_legend(&s, 0, "#1f77b4", "", "train loss");
  snprintf(label, sizeof label, "%s loss", eval_name);
  plot_legend(&s, 1, "#ff7f0e", dashed, label);
  snprintf(label, sizeof label, "%s accuracy", eval_name);
  plot_legend(&s, 2, "#2ca02c", "", label);
  svg_printf(&s, "</svg>\n");
  bool ok = !s.oom;
  if (!ok) nnc_rt_fail(err, cap, "%s: out of memory", path);
  ok = ok && nnc_afile_write_whole(path, s.buf, s.len, err, cap);
  free(s.buf);
  return ok;
}
