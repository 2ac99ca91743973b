#!/usr/bin/env python3
"""An nnc checkpoint loads into the hand-written torch module of models.py and gives the same
test accuracy on Fashion-MNIST's 10,000 test images as `nnc --eval` does.

usage: test_checkpoint_accuracy.py PATH/TO/nnc ROOT    (ctest torch_checkpoint_accuracy)
"""
import gzip
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77
NNC, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
DATA = "/usr/share/datasets/fashion-mnist"
in_ci = os.environ.get("CI") == "true"

try:
    import numpy as np
    import torch
except ImportError as e:
    print("cannot import %s" % e.name)
    sys.exit(1 if in_ci else SKIP)
if not os.path.exists(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")):
    print("no Fashion-MNIST at %s (scripts/setup installs dataset-fashion-mnist)" % DATA)
    sys.exit(1 if in_ci else SKIP)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import safetensors_np  # noqa: E402


def read_idx(name, header):
    with gzip.open(os.path.join(DATA, name)) as f:
        return np.frombuffer(f.read()[header:], dtype=np.uint8)


tmp = tempfile.mkdtemp(prefix="nnc-ckpt-")
ckpt = os.path.join(tmp, "fashion_mlp.safetensors")
model = os.path.join(ROOT, "models", "fashion_mlp.nn")
run = subprocess.run([NNC, model, "--train", "--max-steps", "40", "--save", ckpt, "--quiet"],
                     capture_output=True, text=True, timeout=600)
if run.returncode != 0:
    print("nnc --train failed:\n" + run.stdout + run.stderr)
    sys.exit(1)
run = subprocess.run([NNC, model, "--eval", "--load", ckpt], capture_output=True, text=True, timeout=600)
m = re.search(r"test accuracy ([0-9.]+)% \((\d+) examples\)", run.stdout)
if run.returncode != 0 or not m:
    print("nnc --eval failed:\n" + run.stdout + run.stderr)
    sys.exit(1)
nnc_correct = round(float(m.group(1)) / 100 * int(m.group(2)))

tensors = safetensors_np.load(ckpt)
net = models.FashionMLP(None)
state = {k: torch.from_numpy(np.array(tensors[k])) for k in net.state_dict()}
net.load_state_dict(state)
net.eval()
images = read_idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
labels = read_idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int32)
with torch.no_grad():
    _, logits = net(torch.from_numpy(images.copy()), torch.from_numpy(labels))
torch_correct = int((logits.argmax(1).numpy() == labels).sum())

print("nnc --eval: %d of %d correct; torch with the same checkpoint: %d" % (nnc_correct, len(labels), torch_correct))
# Logits agree to float rounding; an image whose two best classes tie to within it may go
# either way, so one or two of 10,000 may differ.
ok = abs(nnc_correct - torch_correct) <= 2
print("%d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
sys.exit(0 if ok else 1)
