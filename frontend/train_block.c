/* The train block (docs/training.md): data, optimizer, schedule, batch, epochs, seed,
 * clip_grad_norm and augment, with PyTorch's defaults, each checked where it is written; then
 * the --set overrides of train fields. The result is the module's nnc_train_cfg. */
#include "elab.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *const train_keys[] = {"data", "optimizer", "schedule",       "batch",
                                         "epochs", "seed",   "clip_grad_norm", "augment", NULL};

static void train_defaults(nnc_train_cfg *t) {
  memset(t, 0, sizeof *t);
  t->optimizer = "SGD";
  t->lr = 1e-3;
  t->beta1 = 0.9;
  t->beta2 = 0.999;
  t->eps = 1e-8;
  t->schedule = "constant";
  t->sched_gamma = 0.1;
  t->batch = 64;
  t->epochs = 1;
}

/* The callee name and call node of `name(...)` or a bare `name`. */
static const char *call_name(const nnc_ast *e, const nnc_ast **call) {
  *call = NULL;
  if (e->kind == AST_NAME) return e->name;
  if (e->kind == AST_CALL && e->a && e->a->kind == AST_NAME) {
    *call = e;
    return e->a->name;
  }
  return NULL;
}

/* Which of kinds (NULL-terminated) e names, as `kind` or `kind(...)`; -1 after reporting an
 * unknown one, with the closest name or the list (`expected`). what: "optimizer", ... */
static int pick_kind(el_ctx *c, const nnc_ast *e, const char *what, const char *const *kinds, const char *expected,
                     const nnc_ast **call) {
  const char *name = call_name(e, call);
  for (int i = 0; name && kinds[i]; i++)
    if (strcmp(name, kinds[i]) == 0) return i;
  const char *near = name ? el_suggest(NULL, name, kinds) : NULL;
  if (near)
    nnc_error(c->d, e->loc, "unknown %s '%s'; did you mean '%s'?", what, name, near);
  else
    nnc_error(c->d, e->loc, "unknown %s: expected %s", what, expected);
  return -1;
}

static void train_data(el_ctx *c, const nnc_ast *e) {
  static const char *const kinds[] = {"fashion_mnist", "mnist", "cifar10", "csv", "npy", "text", NULL};
  const nnc_ast *call;
  int k = pick_kind(c, e, "data source", kinds,
                    "fashion_mnist(path), mnist(path), cifar10(path), csv(path), npy(path) or text(path)", &call);
  if (k < 0) return;
  el_sig sig = {kinds[k], {"path"}, 1};
  const nnc_ast *slot[EL_MAX_ARGS] = {0};
  if (!call) {
    nnc_error(c->d, e->loc, "%s needs the data's path: %s(\"...\")", kinds[k], kinds[k]);
    return;
  }
  if (!el_bind_args(c, &sig, call, 0, slot)) return;
  el_val p = el_eval(c, c->globals, slot[0]);
  if (p.kind == V_POISON) return;
  if (p.kind != V_STR) {
    nnc_error(c->d, slot[0]->loc, "the data path must be a string, got %s", el_val_desc(c, &p));
    return;
  }
  c->m->train.data_kind = kinds[k];
  c->m->train.data_path = nnc_arena_strdup(c->arena, p.str);
  c->m->train.data_loc = e->loc;
}

static void train_optimizer(el_ctx *c, const nnc_ast *e) {
  nnc_train_cfg *t = &c->m->train;
  const nnc_ast *call;
  static const char *const opts[] = {"SGD", "Adam", "AdamW", NULL};
  int k = pick_kind(c, e, "optimizer", opts, "SGD(...), Adam(...) or AdamW(...)", &call);
  if (k < 0) return;
  t->optimizer = opts[k];
  t->weight_decay = k == 2 ? 0.01 : 0;
  if (!call) return;
  const nnc_ast *slot[EL_MAX_ARGS] = {0};
  if (k == 0) {
    el_sig sig = {"SGD", {"lr", "momentum", "dampening", "weight_decay", "nesterov"}, 0};
    if (!el_bind_args(c, &sig, call, 0, slot)) return;
    if (slot[0]) el_get_num(c, c->globals, slot[0], "lr", 0, 1e9, &t->lr);
    if (slot[1]) el_get_num(c, c->globals, slot[1], "momentum", 0, 1e9, &t->momentum);
    if (slot[2]) el_get_num(c, c->globals, slot[2], "dampening", 0, 1e9, &t->dampening);
    if (slot[3]) el_get_num(c, c->globals, slot[3], "weight_decay", 0, 1e9, &t->weight_decay);
    if (slot[4]) el_get_bool(c, c->globals, slot[4], "nesterov", &t->nesterov);
    if (t->nesterov && (t->momentum <= 0 || t->dampening != 0))
      nnc_error(c->d, e->loc, "Nesterov momentum needs momentum > 0 and dampening = 0");
    return;
  }
  el_sig sig = {opts[k], {"lr", "betas", "eps", "weight_decay"}, 0};
  if (!el_bind_args(c, &sig, call, 0, slot)) return;
  if (slot[0]) el_get_num(c, c->globals, slot[0], "lr", 0, 1e9, &t->lr);
  if (slot[1]) {
    el_val b = el_eval(c, c->globals, slot[1]);
    if (b.kind == V_LIST && b.nitems == 2 && b.items[0].kind == V_NUM && b.items[1].kind == V_NUM &&
        b.items[0].num >= 0 && b.items[0].num < 1 && b.items[1].num >= 0 && b.items[1].num < 1) {
      t->beta1 = b.items[0].num;
      t->beta2 = b.items[1].num;
    } else if (b.kind != V_POISON) {
      nnc_error(c->d, slot[1]->loc, "betas must be a pair [b1, b2] of numbers in [0, 1)");
    }
  }
  if (slot[2]) el_get_num(c, c->globals, slot[2], "eps", 0, 1, &t->eps);
  if (slot[3]) el_get_num(c, c->globals, slot[3], "weight_decay", 0, 1e9, &t->weight_decay);
}

static void train_schedule(el_ctx *c, const nnc_ast *e) {
  nnc_train_cfg *t = &c->m->train;
  const nnc_ast *call;
  static const char *const kinds[] = {"constant", "step", "exponential", "cosine", "warmup", NULL};
  int k = pick_kind(c, e, "schedule", kinds, "constant, step(...), exponential(...), cosine(...) or warmup(...)", &call);
  if (k < 0) return;
  t->schedule = kinds[k];
  static const el_sig sigs[] = {
      {"constant", {0}, 0},
      {"step", {"step_size", "gamma"}, 1},
      {"exponential", {"gamma"}, 1},
      {"cosine", {"warmup"}, 0},
      {"warmup", {"warmup"}, 1},
  };
  const nnc_ast *slot[EL_MAX_ARGS] = {0};
  if (!call) {
    if (sigs[k].nreq) nnc_error(c->d, e->loc, "schedule '%s' needs arguments", kinds[k]);
    return;
  }
  if (!el_bind_args(c, &sigs[k], call, 0, slot)) return;
  int64_t iv;
  if (k == 1) {
    if (el_get_int(c, c->globals, slot[0], "step_size", 1, INT32_MAX, &iv)) t->sched_step = (double)iv;
    if (slot[1]) el_get_num(c, c->globals, slot[1], "gamma", 0, 1e9, &t->sched_gamma);
  } else if (k == 2) {
    el_get_num(c, c->globals, slot[0], "gamma", 0, 1e9, &t->sched_gamma);
  } else if ((k == 3 || k == 4) && slot[0]) {
    if (el_get_int(c, c->globals, slot[0], "warmup", 0, INT32_MAX, &iv)) t->sched_warmup = (double)iv;
  }
}

/* One augmentation: crop(P) (a random crop after zero padding by P) or flip (horizontal). */
static void train_augment_one(el_ctx *c, const nnc_ast *e) {
  nnc_train_cfg *t = &c->m->train;
  if (e->kind == AST_NAME && strcmp(e->name, "flip") == 0) {
    t->augment_flip = true;
  } else if (e->kind == AST_CALL && e->a->kind == AST_NAME && strcmp(e->a->name, "crop") == 0) {
    if (e->list.n != 1 || e->list.items[0]->kind == AST_KV)
      nnc_error(c->d, e->loc, "crop takes one argument: the padding, e.g. crop(4)");
    else
      el_get_int(c, c->globals, e->list.items[0], "crop padding", 1, 64, &t->augment_crop);
  } else {
    nnc_error(c->d, e->loc, "unknown augmentation: expected crop(PADDING) or flip");
  }
}

/* augment = [crop(4), flip], or a single one of them. */
static void train_augment(el_ctx *c, const nnc_ast *e) {
  if (e->kind != AST_LIST) {
    train_augment_one(c, e);
    return;
  }
  for (int i = 0; i < e->list.n; i++) train_augment_one(c, e->list.items[i]);
}

static void train_entry(el_ctx *c, const nnc_ast *kv) {
  nnc_train_cfg *t = &c->m->train;
  const char *k = kv->name;
  if (strcmp(k, "data") == 0) {
    train_data(c, kv->a);
  } else if (strcmp(k, "optimizer") == 0) {
    train_optimizer(c, kv->a);
  } else if (strcmp(k, "schedule") == 0) {
    train_schedule(c, kv->a);
  } else if (strcmp(k, "batch") == 0) {
    el_get_int(c, c->globals, kv->a, "batch", 1, 1 << 24, &t->batch);
  } else if (strcmp(k, "epochs") == 0) {
    el_get_int(c, c->globals, kv->a, "epochs", 1, 1 << 24, &t->epochs);
  } else if (strcmp(k, "seed") == 0) {
    el_get_int(c, c->globals, kv->a, "seed", 0, INT32_MAX, &t->seed);
  } else if (strcmp(k, "clip_grad_norm") == 0) {
    el_get_num(c, c->globals, kv->a, "clip_grad_norm", 0, 1e30, &t->clip_grad_norm);
  } else if (strcmp(k, "augment") == 0) {
    train_augment(c, kv->a);
  } else {
    const char *near = el_suggest(NULL, k, train_keys);
    if (near)
      nnc_error(c->d, kv->loc, "unknown train setting '%s'; did you mean '%s'?", k, near);
    else
      nnc_error(c->d, kv->loc,
                "unknown train setting '%s' (data, optimizer, schedule, batch, epochs, seed, clip_grad_norm, augment)", k);
  }
}

/* `--set` for train fields: batch, epochs, seed, lr, momentum, weight_decay, clip_grad_norm. */
static void train_overrides(el_ctx *c) {
  nnc_train_cfg *t = &c->m->train;
  struct { const char *name; double *num; int64_t *ival; double lo, hi; } fields[] = {
      {"batch", NULL, &t->batch, 1, 1 << 24},      {"epochs", NULL, &t->epochs, 1, 1 << 24},
      {"seed", NULL, &t->seed, 0, INT32_MAX},      {"lr", &t->lr, NULL, 0, 1e9},
      {"momentum", &t->momentum, NULL, 0, 1e9},    {"weight_decay", &t->weight_decay, NULL, 0, 1e9},
      {"clip_grad_norm", &t->clip_grad_norm, NULL, 0, 1e30},
  };
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    nnc_override *o = el_find_override(c, fields[i].name);
    if (!o || o->used) continue; /* an hparam of the same name takes it */
    o->used = true;
    el_val v;
    if (!el_override_number(c, o, &v)) continue;
    if (v.num < fields[i].lo || v.num > fields[i].hi || (fields[i].ival && !v.is_int)) {
      nnc_error(c->d, (nnc_loc){0}, "--set %s=%s: out of range", o->name, o->value);
      continue;
    }
    if (fields[i].num) *fields[i].num = v.num;
    if (fields[i].ival) *fields[i].ival = (int64_t)v.num;
  }
}

static const nnc_ast *find_train(el_ctx *c) {
  const nnc_ast *found = NULL;
  for (int i = 0; i < c->file->list.n; i++) {
    const nnc_ast *t = c->file->list.items[i];
    if (t->kind != AST_TRAIN) continue;
    if (found) {
      nnc_error(c->d, t->loc, "a file has one train block: a second one");
      nnc_note(c->d, found->loc, "the first one is here");
      continue;
    }
    found = t;
  }
  return found;
}

const nnc_ast *el_train_block(el_ctx *c) {
  const nnc_ast *tb = find_train(c);
  train_defaults(&c->m->train);
  if (tb) {
    c->m->train.present = true;
    for (int i = 0; i < tb->list.n; i++) {
      const nnc_ast *kv = tb->list.items[i];
      for (int j = 0; j < i; j++)
        if (strcmp(tb->list.items[j]->name, kv->name) == 0) {
          nnc_error(c->d, kv->loc, "train setting '%s' given twice", kv->name);
          nnc_note(c->d, tb->list.items[j]->loc, "first given here");
        }
      train_entry(c, kv);
    }
  }
  train_overrides(c);
  return tb;
}

