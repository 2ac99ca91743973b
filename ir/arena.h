/* An arena per compilation (as QBE does): many small allocations, freed at once.
 * Out of memory goes to one hook that the driver sets; library code never exits. */
#ifndef NNC_ARENA_H
#define NNC_ARENA_H

#include <stddef.h>

typedef struct nnc_arena nnc_arena;

/* Called when an allocation fails; must not return (the driver reports and exits with 3,
 * tests may longjmp). The default prints "nnc: out of memory" and aborts. */
typedef void (*nnc_oom_handler)(size_t bytes);
void nnc_set_oom_handler(nnc_oom_handler);
void nnc_oom(size_t bytes);

nnc_arena *nnc_arena_new(void);
void nnc_arena_free(nnc_arena *);
void *nnc_arena_alloc(nnc_arena *, size_t bytes);          /* zeroed, 16-byte aligned */
void *nnc_arena_realloc(nnc_arena *, void *old, size_t old_bytes, size_t new_bytes);
char *nnc_arena_strdup(nnc_arena *, const char *);
char *nnc_arena_strndup(nnc_arena *, const char *, size_t);
char *nnc_arena_printf(nnc_arena *, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checked heap allocation for buffers outside arenas (data, regions): never returns NULL. */
void *nnc_xmalloc(size_t bytes);
void *nnc_xcalloc(size_t n, size_t size);
void *nnc_xrealloc(void *, size_t bytes);

#endif
