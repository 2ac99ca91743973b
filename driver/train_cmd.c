/* --train and --eval (replaced by the training runtime as it lands). */
#include <stdio.h>

#include "driver/commands.h"

int nnc_cmd_train(nnc_module *m, const nnc_options *o) {
  fprintf(stderr, "nnc: error: training is not available in this build\n");
  return NNC_EXIT_ENVIRONMENT;
}

int nnc_cmd_eval(nnc_module *m, const nnc_options *o) { return nnc_cmd_train(m, o); }
