"""Cold compile time of a whole training step in JAX (jax.jit), for bench/compile_time.sh.

Each model is the one in models/ (the same layers, sizes, batch and Adam), its step the
forward pass, the gradient and the Adam update, jitted as one function; what is timed is
`jax.jit(step).lower(*args).compile()` in a fresh process with JAX's persistent compilation
cache off, which is what a user's first step pays. The recurrence is lax.scan, as a JAX user
writes it, so its compile time does not grow with T.

usage: python bench/compile_peers.py MODEL [T] [STEPS]   (a venv with jax; bench/compile_time.sh makes it)
prints one line: MODEL seconds; with STEPS, also the training samples/s of that many steps after
the compiled one (run it under `taskset -c 0` for one thread)
"""
import sys
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_compilation_cache", False)


def dense(key, n_in, n_out):
    k1, k2 = jax.random.split(key)
    bound = 1.0 / n_in ** 0.5
    return {"w": jax.random.uniform(k1, (n_in, n_out), minval=-bound, maxval=bound),
            "b": jax.random.uniform(k2, (n_out,), minval=-bound, maxval=bound)}


def conv(key, c_in, c_out):
    k1, k2 = jax.random.split(key)
    bound = 1.0 / (c_in * 9) ** 0.5
    return {"w": jax.random.uniform(k1, (c_out, c_in, 3, 3), minval=-bound, maxval=bound),
            "b": jax.random.uniform(k2, (c_out,), minval=-bound, maxval=bound)}


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1))


def mlp():
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    params = {"fc1": dense(k[0], 784, 256), "fc2": dense(k[1], 256, 10)}

    def loss(p, x, y):
        h = jax.nn.relu(x.reshape(x.shape[0], -1) @ p["fc1"]["w"] + p["fc1"]["b"])
        return cross_entropy(h @ p["fc2"]["w"] + p["fc2"]["b"], y)

    return params, loss, (jnp.zeros((64, 1, 28, 28)), jnp.zeros((64,), jnp.int32))


def cnn():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"c1": conv(k[0], 1, 32), "c2": conv(k[1], 32, 64), "fc1": dense(k[2], 1600, 128), "fc2": dense(k[3], 128, 10)}

    def conv_relu_pool(x, c):
        y = jax.lax.conv_general_dilated(x, c["w"], (1, 1), "VALID") + c["b"][None, :, None, None]
        y = jax.nn.relu(y)
        return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss(p, x, y):
        h = conv_relu_pool(conv_relu_pool(x, p["c1"]), p["c2"]).reshape(x.shape[0], -1)
        h = jax.nn.relu(h @ p["fc1"]["w"] + p["fc1"]["b"])
        return cross_entropy(h @ p["fc2"]["w"] + p["fc2"]["b"], y)

    return params, loss, (jnp.zeros((64, 1, 28, 28)), jnp.zeros((64,), jnp.int32))


def lstm(T):
    V, E, H, B = 128, 64, 256, 32
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"emb": jax.random.normal(k[0], (V, E)), "ih": dense(k[1], E, 4 * H), "hh": dense(k[2], H, 4 * H),
              "head": dense(k[3], H, V)}

    def loss(p, x, y):
        xs = p["emb"][x] @ p["ih"]["w"] + p["ih"]["b"]          # [B, T, 4H]

        def cell(carry, xt):
            h, c = carry
            g = xt + h @ p["hh"]["w"] + p["hh"]["b"]
            i, f, gg, o = jnp.split(g, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], H))
        _, hs = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
        logits = jnp.swapaxes(hs, 0, 1) @ p["head"]["w"] + p["head"]["b"]
        return cross_entropy(logits, y)

    return params, loss, (jnp.zeros((B, T), jnp.int32), jnp.zeros((B, T), jnp.int32))


def adam_step(loss, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    def step(p, m, v, t, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        scale = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), p, m, v)
        return p, m, v, value

    return step


def main():
    name = sys.argv[1]
    T = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    params, loss, batch = {"fashion_mlp": mlp, "fashion_cnn": cnn}.get(name, lambda: lstm(T))()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    start = time.perf_counter()
    step = jax.jit(adam_step(loss)).lower(params, zeros, zeros, 1.0, *batch).compile()
    line = f"{name} {time.perf_counter() - start:.3f}"
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if steps:
        p, m, v = params, zeros, zeros
        p, m, v, _ = step(p, m, v, 1.0, *batch)  # warm-up
        jax.block_until_ready(p)
        start = time.perf_counter()
        for t in range(steps):
            p, m, v, value = step(p, m, v, float(t + 2), *batch)
        jax.block_until_ready(value)
        line += f" {steps * batch[0].shape[0] / (time.perf_counter() - start):.1f}"
    print(line)


if __name__ == "__main__":
    main()
