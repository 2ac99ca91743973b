#!/usr/bin/python3
"""Training throughput of nnc (LLVM JIT) against PyTorch on one machine, in one run.

For fashion_mlp, fashion_cnn and mnist_conv (Fashion-MNIST, batch 64, Adam lr 1e-3) at 1 and 2
threads: training samples/s of both and their ratio, nnc's compile time with a cold and a warm
object cache (nnc --stats), and the peak RSS of each process. PyTorch runs in its best
configuration: data preloaded as normalized float32 tensors, OPENBLAS_NUM_THREADS=1,
torch.set_num_threads(T), with and without OPENBLAS_CORETYPE=Haswell (the faster is kept).

nnc's samples/s is the one `nnc --train` prints (time inside train_step calls, batches gathered
outside it); PyTorch's covers batch gather, forward, backward and the Adam step. Both skip the
first steps (compilation, warm-up) -- nnc's clock starts at its first step, PyTorch's after 10.

usage: /usr/bin/python3 bench/train_vs_pytorch.py [--nnc build/nnc] [--steps 300] [--data DIR]
(run from the source root; Debian's python3 has python3-torch)
"""
import argparse
import gzip
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

MODELS = ["fashion_mlp", "fashion_cnn", "mnist_conv"]
MEAN, STD = {"mnist_conv": (0.1307, 0.3081)}, (0.2860, 0.3530)


def torch_model(name):
    import torch.nn as nn
    if name == "fashion_mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if name == "fashion_cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 10, 3), nn.ReLU(), nn.Flatten(), nn.Linear(10 * 26 * 26, 10))


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def torch_worker(args):
    """One PyTorch measurement; prints 'samples/s RSS-kB'."""
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mean, std = MEAN.get(args.model, STD)
    x = torch.from_numpy(read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz")).copy()).float()
    x = ((x / 255.0 - mean) / std).unsqueeze(1).contiguous()
    y = torch.from_numpy(read_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz")).astype("int64"))
    model = torch_model(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(x.shape[0])
    warmup, t0 = 10, 0.0
    for step in range(args.steps + warmup):
        if step == warmup:
            t0 = time.perf_counter()
        idx = perm[(step * 64) % (x.shape[0] - 64):][:64]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    rate = args.steps * 64 / (time.perf_counter() - t0)
    print("%.1f %d" % (rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def run_torch(model, threads, coretype, args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(threads))
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    r = subprocess.run(["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker", "--model", model, "--threads",
                        str(threads), "--steps", str(args.steps), "--data", args.data],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("PyTorch failed on %s: %s" % (model, r.stderr))
    rate, rss = r.stdout.split()
    return float(rate), int(rss) / 1024.0


def compile_total(nnc, model, cache):
    r = subprocess.run([nnc, model, "--stats"], capture_output=True, text=True,
                       env=dict(os.environ, NNC_CACHE_DIR=cache))
    m = re.search(r"total\s+([0-9.]+) s", r.stdout)
    if r.returncode != 0 or not m:
        sys.exit("nnc --stats failed on %s: %s" % (model, r.stderr))
    return float(m.group(1))


def run_nnc(nnc, model, threads, cache, args):
    cmd = ["/usr/bin/time", "-f", "RSS %M", nnc, model, "--train", "--max-steps", str(args.steps), "--threads",
           str(threads), "--optimizer", "Adam", "--lr", "1e-3", "--data", args.data]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, NNC_CACHE_DIR=cache))
    rate = re.search(r"\(([0-9.]+) samples/s\)", r.stdout)
    rss = re.search(r"RSS ([0-9]+)", r.stderr)
    if r.returncode != 0 or not rate or not rss:
        sys.exit("nnc --train failed on %s: %s%s" % (model, r.stdout, r.stderr))
    return float(rate.group(1)), int(rss.group(1)) / 1024.0


def torch_blas():
    """The BLAS library Debian's torch runs its matmuls on (libblas.so.3's alternative), as loaded."""
    code = ("import torch; torch.ones(8, 8) @ torch.ones(8, 8); "
            "print([l.split()[-1] for l in open('/proc/self/maps') if 'blas' in l.lower()][-1])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return os.path.realpath(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else "unknown"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nnc", default="build/nnc")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--torch-worker", action="store_true")
    p.add_argument("--model")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.torch_worker:
        return torch_worker(args)
    nnc = os.path.abspath(args.nnc)
    blas = torch_blas()
    print("PyTorch %s runs its matmuls on %s" % (__import__("torch").__version__, blas))
    if "openblas" not in blas:
        sys.exit("PyTorch loaded the reference BLAS: its figures would mean nothing. "
                 "apt-get install libopenblas0-pthread (as root), then run this again.")
    print("load before: %s" % os.getloadavg()[0])
    rows = []
    for name in args.models.split(","):
        model = os.path.join("models", name + ".nn")
        cache = tempfile.mkdtemp(prefix="nnc-bench-cache-")
        cold = compile_total(nnc, model, cache)
        warm = compile_total(nnc, model, cache)
        for t in (1, 2):
            nr, nrss = run_nnc(nnc, model, t, cache, args)
            best = max((run_torch(name, t, ct, args) + (ct or "default",) for ct in (None, "Haswell")),
                       key=lambda r: r[0])
            rows.append((name, t, nr, best[0], best[2], cold, warm, nrss, best[1]))
            print("  %s threads %d: nnc %.0f/s, torch %.0f/s (%s)" % (name, t, nr, best[0], best[2]), flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    print("load after: %s" % os.getloadavg()[0])
    print()
    print("| model | threads | nnc samples/s | PyTorch samples/s (OpenBLAS core) | nnc / PyTorch | nnc compile cold | "
          "warm | nnc peak RSS | PyTorch peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, t, nr, tr, ct, cold, warm, nrss, trss in rows:
        print("| %s | %d | %.0f | %.0f (%s) | %.2f | %.2f s | %.2f s | %.0f MB | %.0f MB |" %
              (name, t, nr, tr, ct, nr / tr, cold, warm, nrss, trss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
