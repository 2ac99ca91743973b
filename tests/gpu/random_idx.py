#!/usr/bin/python3
"""Random images and labels in Fashion-MNIST's gzipped idx layout, for throughput runs where the
data set is not installed: random_idx.py DIR TRAIN TEST (28x28 bytes, labels in [0, 10))."""
import gzip
import os
import random
import sys


def write(d, prefix, count, rng):
    with gzip.open(os.path.join(d, prefix + "-images-idx3-ubyte.gz"), "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 3]) + count.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
        f.write(rng.randbytes(count * 28 * 28))
    with gzip.open(os.path.join(d, prefix + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + count.to_bytes(4, "big") + bytes(rng.randrange(10) for _ in range(count)))


def main():
    d, train, test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.makedirs(d, exist_ok=True)
    rng = random.Random(1)
    write(d, "train", train, rng)
    write(d, "t10k", test, rng)


if __name__ == "__main__":
    main()
