#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} chunk;

struct nnc_arena {
  chunk *head;
};

static void default_oom(size_t bytes) {
  fprintf(stderr, "nnc: out of memory (allocating %zu bytes)\n", bytes);
  abort();
}

static nnc_oom_handler oom_handler = default_oom;

void nnc_set_oom_handler(nnc_oom_handler h) { oom_handler = h ? h : default_oom; }

void nnc_oom(size_t bytes) {
  oom_handler(bytes);
  abort(); /* a handler that returns has broken its contract */
}

void *nnc_xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) nnc_oom(bytes);
  return p;
}

void *nnc_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) nnc_oom(n * size);
  return p;
}

void *nnc_xrealloc(void *old, size_t bytes) {
  void *p = realloc(old, bytes ? bytes : 1);
  if (!p) nnc_oom(bytes);
  return p;
}

nnc_arena *nnc_arena_new(void) { return nnc_xcalloc(1, sizeof(nnc_arena)); }

void nnc_arena_free(nnc_arena *a) {
  if (!a) return;
  for (chunk *c = a->head, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  free(a);
}

void *nnc_arena_alloc(nnc_arena *a, size_t bytes) {
  bytes = (bytes + 15) & ~(size_t)15;
  chunk *c = a->head;
  if (!c || c->cap - c->used < bytes) {
    size_t cap = bytes > 65536 ? bytes : 65536;
    if (cap > SIZE_MAX - sizeof(chunk)) nnc_oom(bytes);
    c = malloc(sizeof(chunk) + cap);
    if (!c) nnc_oom(bytes);
    c->used = 0;
    c->cap = cap;
    c->next = a->head;
    a->head = c;
  }
  void *p = c->data + c->used;
  c->used += bytes;
  memset(p, 0, bytes);
  return p;
}

void *nnc_arena_realloc(nnc_arena *a, void *old, size_t old_bytes, size_t new_bytes) {
  if (new_bytes <= old_bytes) return old;
  void *p = nnc_arena_alloc(a, new_bytes);
  if (old) memcpy(p, old, old_bytes);
  return p;
}

char *nnc_arena_strndup(nnc_arena *a, const char *s, size_t n) {
  char *p = nnc_arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *nnc_arena_strdup(nnc_arena *a, const char *s) { return nnc_arena_strndup(a, s, strlen(s)); }

char *nnc_arena_printf(nnc_arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = nnc_arena_alloc(a, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}
