/* libFuzzer target: the input is a model file. It is parsed and, when it parses cleanly,
 * elaborated; whatever the input, neither may crash, hang, leak or exhaust memory. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frontend/frontend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *quiet_output(void) {
  static FILE *devnull;
  if (!devnull) devnull = fopen("/dev/null", "w");
  return devnull;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nnc_source src = {"fuzz.nn", (const char *)data, size};
  nnc_diags diags;
  nnc_diags_init(&diags, quiet_output());
  nnc_arena *arena = nnc_arena_new();
  nnc_ast *tree = nnc_parse_source(arena, &src, &diags);
  if (tree && diags.nerrors == 0) {
    nnc_elab_opts opts = {.mode = NNC_MODE_TRAIN};
    nnc_module *module = nnc_elaborate(tree, &opts, &diags);
    if (module) nnc_module_free(module);
  }
  nnc_arena_free(arena);
  return 0;
}
