#!/usr/bin/env python3
"""`nnc models/cifar_cnn.nn --train` on generated files in the CIFAR-10 binary format (Debian
packages no CIFAR-10): the real model, its augmentation (crop + flip) reproducible from the seed,
and a damaged batch file rejected with one message.

usage: test_cifar.py PATH/TO/nnc ROOT    (run by ctest as `train_cifar`)
"""
import os
import random
import subprocess
import sys
import tempfile

NNC, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
MODEL = os.path.join(ROOT, "models", "cifar_cnn.nn")
failures = []
passed = []


def check(cond, what, detail=""):
    print(("ok: " if cond else "FAIL: ") + what)
    (passed if cond else failures).append(what)
    if not cond:
        if detail:
            print(detail)


def write_cifar(d, per_file):
    """Records of 1 label byte + 3072 image bytes; class c brightens one channel band."""
    rnd = random.Random(7)
    os.makedirs(d, exist_ok=True)
    names = ["data_batch_%d.bin" % k for k in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        out = bytearray()
        for _ in range(per_file):
            label = rnd.randrange(10)
            img = bytearray(rnd.randrange(60) for _ in range(3072))
            band = (label % 3) * 1024 + (label // 3) * 8 * 32
            for i in range(band, band + 8 * 32):
                img[i] += 150
            out += bytes([label]) + img
        with open(os.path.join(d, name), "wb") as f:
            f.write(out)


def nnc(*args):
    p = subprocess.run([NNC, MODEL, *args], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


tmp = tempfile.mkdtemp(prefix="nnc-cifar-")
data = os.path.join(tmp, "cifar")
write_cifar(data, 2)
common = ["--train", "--data", data, "--batch", "2", "--max-steps", "2", "--quiet"]

rc, out, err = nnc(*common, "--save", os.path.join(tmp, "a.st"))
check(rc == 0 and "test accuracy" in out, "cifar_cnn trains on CIFAR-10 binary files", out + err)
rc, out, err = nnc(*common, "--save", os.path.join(tmp, "b.st"))
same = rc == 0 and open(os.path.join(tmp, "a.st"), "rb").read() == open(os.path.join(tmp, "b.st"), "rb").read()
check(same, "the same seed gives the same augmented run, bit for bit", err)
rc, out, err = nnc(*common, "--seed", "5", "--save", os.path.join(tmp, "c.st"))
differs = rc == 0 and open(os.path.join(tmp, "a.st"), "rb").read() != open(os.path.join(tmp, "c.st"), "rb").read()
check(differs, "another seed gives another run", err)

with open(os.path.join(data, "data_batch_3.bin"), "ab") as f:
    f.write(b"\0" * 100)
rc, out, err = nnc(*common)
check(rc == 1 and "data_batch_3.bin" in err and "3073" in err and err.count("error") == 1,
      "a batch file of the wrong size is one error naming it", err)

print("%d passed, %d failed" % (len(passed), len(failures)))
sys.exit(1 if failures else 0)
