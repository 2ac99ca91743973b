#!/usr/bin/env python3
"""Training on the JIT gives the same bits whatever the thread count: 20 steps of a small MLP
and a small CNN at --threads 1, 2 and 3, checkpoints compared byte for byte (the pool splits
every parallel loop statically, runtime/pool.h). Also: --target interp and llvm train the same
model to close losses, and a bad --target or --threads is a usage error.

usage: test_threads.py PATH/TO/nnc    (run by ctest as `train_threads`)
"""
import gzip
import os
import struct
import subprocess
import sys
import tempfile

NNC = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="nnc-threads-")
ENV = dict(os.environ, NNC_CACHE_DIR=os.path.join(TMP, "cache"))
failures = []

MLP = """
model tiny_mlp(x: u8[B, 8, 8], y: i32[B]) {
  layer fc1 = Linear(40)
  layer fc2 = Linear(3)
  h = normalize(x, mean=0.3, std=0.4)
  logits = fc2(relu(fc1(flatten(h))))
  minimize cross_entropy(logits, y)
  return logits
}
train {
  data = mnist("%s")
  optimizer = Adam(lr=1e-2)
  batch = 16
  seed = 5
}
"""

CNN = """
model tiny_cnn(x: u8[B, 1, 8, 8], y: i32[B]) {
  layer conv = Conv2d(4, kernel_size=3, padding=1)
  layer fc = Linear(3)
  h = normalize(x, mean=0.3, std=0.4)
  h = maxpool2d(relu(conv(h)), 2)
  logits = fc(flatten(h))
  minimize cross_entropy(logits, y)
  return logits
}
train {
  data = mnist("%s")
  optimizer = Adam(lr=1e-2)
  batch = 16
  seed = 5
}
"""


def write_idx(d, prefix, n, seed):
    state, images, labels = seed, [], []
    for i in range(n):
        c = i % 3
        px = bytearray()
        for r in range(8):
            for _ in range(8):
                state = (state * 1103515245 + 12345) & 0x7FFFFFFF
                px.append(min(255, state % 60 + (180 if 2 * c <= r < 2 * c + 3 else 0)))
        images.append(bytes(px))
        labels.append(c)
    with gzip.open(os.path.join(d, prefix + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 8, 8) + b"".join(images))
    with gzip.open(os.path.join(d, prefix + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(labels))


def nnc(*args):
    return subprocess.run([NNC, *args], capture_output=True, text=True, env=ENV, timeout=600)


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def train(model, tag, *flags):
    ckpt = os.path.join(TMP, tag + ".safetensors")
    r = nnc(model, "--train", "--max-steps", "20", "--quiet", "--save", ckpt, *flags)
    check(r.returncode == 0, "%s: exit %d: %s" % (tag, r.returncode, r.stderr))
    return open(ckpt, "rb").read() if r.returncode == 0 else b""


def main():
    d = os.path.join(TMP, "data")
    os.makedirs(d)
    write_idx(d, "train", 400, 1)
    write_idx(d, "t10k", 60, 2)
    for name, text in (("mlp", MLP), ("cnn", CNN)):
        model = os.path.join(TMP, name + ".nn")
        with open(model, "w") as f:
            f.write(text % d)
        one = train(model, name + "-t1", "--threads", "1")
        for t in (2, 3):
            other = train(model, "%s-t%d" % (name, t), "--threads", str(t))
            check(one and one == other, "%s: the checkpoint at --threads %d differs from --threads 1" % (name, t))
        dflt = train(model, name + "-llvm", "--target", "llvm")
        check(one == dflt, "%s: --target llvm with all cores differs from --threads 1" % name)
        interp = nnc(model, "--train", "--max-steps", "20", "--target", "interp", "--log", os.path.join(TMP, "i.csv"))
        jit = nnc(model, "--train", "--max-steps", "20", "--log", os.path.join(TMP, "j.csv"))
        check(interp.returncode == 0 and jit.returncode == 0, "%s: interp/llvm runs: %s %s" % (name, interp.stderr, jit.stderr))
        if interp.returncode == 0 and jit.returncode == 0:
            li = open(os.path.join(TMP, "i.csv")).read().splitlines()
            lj = open(os.path.join(TMP, "j.csv")).read().splitlines()
            check(len(li) == len(lj) and li[0] == lj[0], "%s: the metrics CSVs differ in shape" % name)
    r = nnc(os.path.join(TMP, "mlp.nn"), "--train", "--target", "gpu")
    check(r.returncode == 2 and "llvm, interp, cuda" in r.stderr, "bad --target: %d %s" % (r.returncode, r.stderr))
    r = nnc(os.path.join(TMP, "mlp.nn"), "--train", "--threads", "0")
    check(r.returncode == 2, "--threads 0: %d" % r.returncode)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
