#!/usr/bin/python3
"""PyTorch's training throughput for fashion_cnn on the GPU, for tests/gpu/run.sh to print beside
nnc's: the same layers (models/fashion_cnn.nn), batch 64, Adam lr 1e-3, one epoch over the idx
files of DIR (Fashion-MNIST's layout), data preloaded on the device as normalized float32.

usage: torch_fashion_cnn.py DIR   prints "torch fashion_cnn: N samples/s (DEVICE)"; exit 77 without
                                  torch or a CUDA device"""
import gzip
import os
import sys
import time


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return data[4 + 4 * dims:], shape


def main():
    try:
        import torch
        import torch.nn as nn
    except ImportError:
        print("torch is not importable")
        return 77
    if not torch.cuda.is_available():
        print("torch sees no CUDA device")
        return 77
    d = sys.argv[1]
    images, shape = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    labels, _ = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    dev = torch.device("cuda")
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(shape[0], 1, shape[1], shape[2])
    x = ((x.float() / 255.0 - 0.2860) / 0.3530).to(dev)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long().to(dev)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    batch, n = 64, x.shape[0]
    perm = torch.randperm(n, device=dev)
    done, start = 0, None
    for i, s in enumerate(range(0, n, batch)):
        if i == 10:  # warm-up: cuDNN's algorithm choice, the caching allocator
            torch.cuda.synchronize()
            start, done = time.perf_counter(), 0
        idx = perm[s:s + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        done += idx.shape[0]
    torch.cuda.synchronize()
    rate = done / (time.perf_counter() - start)
    print("torch fashion_cnn: %.0f samples/s (%s, loss %.4f)" % (rate, torch.cuda.get_device_name(0), loss.item()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
