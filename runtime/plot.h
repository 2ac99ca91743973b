/* The record of a training run, one row per epoch, and its plot (docs/training.md, --plot). */
#ifndef NNC_RT_PLOT_H
#define NNC_RT_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nnc_rt_epoch_row {
  int64_t epoch, step;
  double train_loss, test_loss, test_acc, lr, seconds;
} nnc_rt_epoch_row;

/* The training loss, the evaluation loss (dashed) and the evaluation accuracy of rows[0..n)
 * against epochs as an SVG file at path, written atomically; eval_name names the evaluation
 * split in the legend. False with "<path>: <problem>" in err. */
bool nnc_rt_write_plot(const char *path, const nnc_rt_epoch_row *rows, int64_t n, const char *eval_name, char *err,
                       size_t cap);

#endif
