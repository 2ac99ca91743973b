#!/usr/bin/env python3
"""End-to-end tests of `nnc --train` / `--eval` through the reference interpreter, on small data
made here: an IDX set of 8x8 images with 3 learnable classes, and the XOR table as CSV.

usage: test_train.py PATH/TO/nnc    (run by ctest as `train`)
"""
import gzip
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

NNC = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="nnc-train-")
failures = []

MODEL = """
hparam hidden = 16
model tiny(x: u8[B, 8, 8], y: i32[B]) {
  layer fc1 = Linear(hidden)
  layer fc2 = Linear(3)
  h = normalize(x, mean=0.3, std=0.4)
  h = relu(fc1(flatten(h)))
  logits = fc2(h)
  minimize cross_entropy(logits, y)
  return logits
}
train {
  data = mnist("%s")
  optimizer = Adam(lr=1e-2)
  batch = 16
  epochs = 2
  seed = 3
}
"""


def write_idx(d, prefix, images, labels):
    with gzip.open(os.path.join(d, prefix + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(images), 8, 8) + b"".join(images))
    with gzip.open(os.path.join(d, prefix + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + bytes(labels))


def make_images(n, seed, bad_label=None):
    """Class c lights up rows 2c..2c+2; a little noise everywhere (a fixed LCG, no numpy)."""
    state = seed
    images, labels = [], []
    for i in range(n):
        c = i % 3
        px = bytearray()
        for r in range(8):
            for _ in range(8):
                state = (state * 1103515245 + 12345) & 0x7FFFFFFF
                noise = state % 60
                px.append(min(255, noise + (180 if 2 * c <= r < 2 * c + 3 else 0)))
        images.append(bytes(px))
        labels.append(c)
    if bad_label is not None:
        labels[7] = bad_label
    return images, labels


def make_dataset(name, bad_label=None):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    write_idx(d, "train", *make_images(200, 1, bad_label))
    write_idx(d, "t10k", *make_images(60, 2))
    model = os.path.join(TMP, name + ".nn")
    with open(model, "w") as f:
        f.write(MODEL % d)
    return model


def nnc(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([NNC, *args], capture_output=True, text=True, env=e, timeout=600)
    return p.returncode, p.stdout, p.stderr


def path(name):
    return os.path.join(TMP, name)


def check(cond, what, detail=""):
    if cond:
        print("PASS", what)
    else:
        print("FAIL", what, detail)
        failures.append(what)


def read_bytes(p):
    with open(p, "rb") as f:
        return f.read()


def test_training_reduces_loss(model):
    rc, out, err = nnc(model, "--train", "--epochs", "4", "--log", path("log.csv"), "--plot", path("plot.svg"),
                       "--save", path("trained.st"))
    check(rc == 0, "train exits 0", err)
    rows = [l.split(",") for l in open(path("log.csv")).read().split("\n")[1:] if l]
    check(len(rows) == 4, "log has one row per epoch", rows)
    first, last = float(rows[0][2]), float(rows[-1][2])
    check(last < first * 0.5, "training loss falls (%s -> %s)" % (first, last))
    check(float(rows[-1][4]) > 0.9, "test accuracy above 90%", rows[-1])
    check("test accuracy" in out and "checkpoint: " in out, "summary names accuracy and checkpoint", out)
    svg = ET.parse(path("plot.svg")).getroot()
    check(len([e for e in svg.iter() if e.tag.endswith("polyline")]) == 3, "plot has three curves")
    rc, out, err = nnc(model, "--eval", "--load", path("trained.st"))
    check(rc == 0 and re.search(r"test loss [0-9.]+, test accuracy [0-9.]+% \(60 examples\)", out), "--eval", out + err)


def test_resume_is_exact(model):
    nnc(model, "--train", "--epochs", "2", "--save", path("straight.st"), "--quiet")
    nnc(model, "--train", "--epochs", "1", "--save", path("first.st"), "--quiet")
    rc, _, err = nnc(model, "--train", "--epochs", "2", "--resume", path("first.st"), "--save", path("resumed.st"),
                     "--quiet")
    check(rc == 0 and read_bytes(path("straight.st")) == read_bytes(path("resumed.st")),
          "resume after an epoch equals the straight run byte for byte", err)
    nnc(model, "--train", "--max-steps", "5", "--save", path("mid.st"), "--quiet")
    rc, _, err = nnc(model, "--train", "--epochs", "2", "--resume", path("mid.st"), "--save", path("mid2.st"), "--quiet")
    check(rc == 0 and read_bytes(path("straight.st")) == read_bytes(path("mid2.st")),
          "resume mid-epoch equals the straight run byte for byte", err)
    nnc(model, "--train", "--epochs", "2", "--save-every", "7", "--max-steps", "20", "--save", path("every.st"), "--quiet")
    rc, _, err = nnc(model, "--train", "--epochs", "2", "--resume", path("every.st"), "--save", path("every2.st"),
                     "--quiet")
    check(rc == 0 and read_bytes(path("straight.st")) == read_bytes(path("every2.st")),
          "resume from a --save-every checkpoint equals the straight run", err)


def test_bad_checkpoints(model):
    nnc(model, "--train", "--max-steps", "1", "--set", "hidden=32", "--save", path("wide.st"), "--quiet")
    rc, _, err = nnc(model, "--train", "--load", path("wide.st"))
    check(rc == 1 and "tensor 'fc1.weight' has shape [32,64], the model expects [16,64]" in err,
          "--load of another shape names the tensor", err)
    good = read_bytes(path("straight.st"))
    (n,) = struct.unpack("<Q", good[:8])
    cases = {
        "truncated header": good[:20],
        "bad header json": good[:8] + b"{" * n + good[8 + n:],
        "truncated data": good[:-16],
    }
    header = good[8:8 + n].decode()
    m = re.search(r'"fc2.bias":\{"data_offsets":\[(\d+),(\d+)\]', header)
    if m:
        b, e = int(m.group(1)), int(m.group(2))
        past = header.replace('"data_offsets":[%d,%d]' % (b, e), '"data_offsets":[%d,%d]' % (b + 10**6, e + 10**6), 1)
        cases["offsets past the end"] = struct.pack("<Q", len(past)) + past.encode() + good[8 + n:]
        over = header.replace('"data_offsets":[%d,%d]' % (b, e), '"data_offsets":[%d,%d]' % (b - 4, e - 4), 1)
        cases["overlapping tensors"] = struct.pack("<Q", len(over)) + over.encode() + good[8 + n:]
    for what, data in cases.items():
        p = path("bad.st")
        with open(p, "wb") as f:
            f.write(data)
        rc, _, err = nnc(model, "--train", "--load", p)
        lines = err.strip().split("\n")
        check(rc == 1 and len(lines) == 1 and p in err, "--load rejects a checkpoint with " + what, err)
    with open(path("xor.csv"), "w") as f:
        f.write("a,b,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    xor = os.path.join(ROOT, "models", "xor_mlp.nn")
    nnc(xor, "--train", "--data", path("xor.csv"), "--max-steps", "3", "--save", path("xor.st"), "--quiet")
    rc, _, err = nnc(model, "--train", "--load", path("xor.st"))
    check(rc == 1 and "xor.st: tensor 'fc1.weight' has shape [10,2], the model expects [16,64]" in err,
          "--load of another model's checkpoint fails", err)
    rc, out, err = nnc(xor, "--train", "--data", path("xor.csv"), "--epochs", "300", "--quiet")
    check(rc == 0 and "training-set loss" in out, "xor_mlp trains from CSV", out + err)


def test_outputs(model):
    rc, _, err = nnc(model, "--train", "--save", path("nodir/x.st"))
    check(rc == 3 and not os.path.exists(path("nodir")), "unwritable --save exits 3", err)
    before = read_bytes(path("straight.st"))
    rc, _, err = nnc(model, "--train", "--max-steps", "2", "--save", path("straight.st"), env={"NNC_FAULT_WRITE_AFTER": "100"})
    left = [f for f in os.listdir(TMP) if ".tmp." in f]
    check(rc == 3 and read_bytes(path("straight.st")) == before and not left,
          "a failed write keeps the previous checkpoint", err)


def test_bad_data():
    model = make_dataset("badlabels", bad_label=5)
    rc, _, err = nnc(model, "--train")
    check(rc == 1 and "label 5 of training example 7 is out of range: the model has 3 classes" in err,
          "labels out of range are named", err)


def test_nan(model):
    rc, _, err = nnc(model, "--train", "--optimizer", "SGD", "--lr", "1e6", "--save", path("nan.st"))
    check(rc == 1 and re.search(r"loss is (nan|inf) at step \d+ \(epoch \d+\)", err) and not os.path.exists(path("nan.st")),
          "a non-finite loss stops training with the step named", err)


def test_sigint(model):
    p = subprocess.Popen([NNC, model, "--train", "--epochs", "100000", "--save", path("int.st"), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    check(p.returncode == 130 and os.path.exists(path("int.st")) and "interrupted" in out,
          "SIGINT saves a checkpoint and exits 130", out + err)


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
os.chdir(TMP)
model = make_dataset("tiny")
test_training_reduces_loss(model)
test_resume_is_exact(model)
test_bad_checkpoints(model)
test_outputs(model)
test_bad_data()
test_nan(model)
test_sigint(model)
print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
