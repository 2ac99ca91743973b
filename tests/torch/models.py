"""Hand-written PyTorch equivalents of the models in models/*.nn, for tests/torch/test_parity.py.

Each module has the state_dict names and shapes nnc gives the model, takes the model's inputs as
they are stored (u8 images, i32 labels), normalizes inside (x/255, then (x - mean)/std as
nnc's normalize does), and returns (loss, output) with the loss a mean over the batch.

Dropout: PyTorch's generator is not nnc's, so DropoutNNC draws the mask exactly as nnc's
rng_uniform does (Philox4x32-10, docs/ir.md): element i of dropout site k (the k-th dropout the
model applies, counted from 0) at runtime scalars seed and step keeps x[i] when
u(seed, k, step, i) >= p. The modules read seed and step from their `rng` attribute.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32_10(c, k):
    """Philox4x32-10 on counters c (four uint64 arrays holding 32-bit words) and key k (two ints)."""
    c0, c1, c2, c3 = (np.asarray(x, dtype=np.uint64) for x in c)
    k0, k1 = np.uint64(k[0] & MASK), np.uint64(k[1] & MASK)
    m0, m1, mask, s32 = np.uint64(M0), np.uint64(M1), np.uint64(MASK), np.uint64(32)
    for r in range(10):
        if r:
            k0, k1 = (k0 + np.uint64(W0)) & mask, (k1 + np.uint64(W1)) & mask
        p0, p1 = m0 * c0, m1 * c2  # < 2^64: exact in uint64
        c0, c1, c2, c3 = (p1 >> s32) ^ c1 ^ k0, p1 & mask, (p0 >> s32) ^ c3 ^ k1, p0 & mask
    return c0, c1, c2, c3


def rng_uniform(seed, key, step, shape):
    """nnc's rng_uniform: element i (row-major) is (w0 >> 8) * 2^-24 of Philox at counter
    (i mod 2^32, i >> 32, step, 0) and key (seed, key)."""
    count = int(np.prod(shape))
    i = np.arange(count, dtype=np.uint64)
    z = np.zeros(count, dtype=np.uint64)
    w0 = philox4x32_10((i & np.uint64(MASK), i >> np.uint64(32), z + np.uint64(step & MASK), z), (seed, key))[0]
    return ((w0 >> np.uint64(8)).astype(np.float64) * 2.0 ** -24).astype(np.float32).reshape(shape)


class RngState:
    """The runtime scalars a forward draws dropout masks with; sites count up within a call."""

    def __init__(self, seed=0, step=0):
        self.seed, self.step, self.site = seed, step, 0


class DropoutNNC(nn.Module):
    def __init__(self, p, rng):
        super().__init__()
        self.p, self.rng = p, rng

    def forward(self, x):
        site = self.rng.site
        self.rng.site += 1
        if not self.training or self.p == 0:
            return x
        u = torch.from_numpy(rng_uniform(self.rng.seed, site, self.rng.step, tuple(x.shape)))
        scale = torch.tensor(1.0 / (1.0 - self.p), dtype=x.dtype)
        return torch.where(u >= torch.tensor(self.p, dtype=torch.float32), x * scale, torch.zeros_like(x))


def normalize(module, x, mean, std):
    """In the module's float type: nnc's f64 interpreter keeps mean and std in double."""
    dt = next(module.parameters()).dtype
    h = x.to(dt) / 255.0
    c = h.shape[1]
    mean = torch.tensor(mean if isinstance(mean, (list, tuple)) else [mean] * c, dtype=dt).view(1, c, 1, 1)
    std = torch.tensor(std if isinstance(std, (list, tuple)) else [std] * c, dtype=dt).view(1, c, 1, 1)
    return (h - mean) / std


def classify(logits, y):
    return F.cross_entropy(logits, y.long()), logits


class FashionMLP(nn.Module):
    """models/fashion_mlp.nn"""

    def __init__(self, rng, hidden=256):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x, y):
        h = normalize(self, x, 0.2860, 0.3530)
        h = F.relu(self.fc1(torch.flatten(h, 1)))
        return classify(self.fc2(h), y)


class FashionCNN(nn.Module):
    """models/fashion_cnn.nn"""

    def __init__(self, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(1600, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x, y):
        h = normalize(self, x, 0.2860, 0.3530)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc1(torch.flatten(h, 1)))
        return classify(self.fc2(h), y)


class LeNet(nn.Module):
    """models/lenet.nn"""

    def __init__(self, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x, y):
        h = normalize(self, x, 0.2860, 0.3530)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc2(F.relu(self.fc1(torch.flatten(h, 1)))))
        return classify(self.fc3(h), y)


class MnistConv(nn.Module):
    """models/mnist_conv.nn"""

    def __init__(self, rng):
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 3)
        self.fc = nn.Linear(10 * 26 * 26, 10)

    def forward(self, x, y):
        h = normalize(self, x, 0.1307, 0.3081)
        h = F.relu(self.conv(h))
        return classify(self.fc(torch.flatten(h, 1)), y)


class CifarCNN(nn.Module):
    """models/cifar_cnn.nn"""

    def __init__(self, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3)
        self.conv2 = nn.Conv2d(64, 128, 3)
        self.fc1 = nn.Linear(128 * 6 * 6, 1024)
        self.fc2 = nn.Linear(1024, 10)

    def forward(self, x, y):
        h = normalize(self, x, [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc1(torch.flatten(h, 1)))
        return classify(self.fc2(h), y)


class XorMLP(nn.Module):
    """models/xor_mlp.nn: returns sigmoid(z), the loss is bce_with_logits(z, y)."""

    def __init__(self, rng):
        super().__init__()
        self.fc1 = nn.Linear(2, 10)
        self.fc2 = nn.Linear(10, 1)

    def forward(self, x, y):
        z = self.fc2(torch.sigmoid(self.fc1(x)))
        return F.binary_cross_entropy_with_logits(z, y), torch.sigmoid(z)


class FashionBnCNN(nn.Module):
    """models/fashion_bn_cnn.nn: BatchNorm in train mode (batch statistics, running-stat
    updates), dropout sites 0 (the `drop` layer, p 0.25) and 1 (dropout(.., 0.5))."""

    def __init__(self, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.drop = DropoutNNC(0.25, rng)
        self.drop_fc = DropoutNNC(0.5, rng)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x, y):
        h = normalize(self, x, 0.2860, 0.3530)
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(h))), 2)
        h = F.max_pool2d(F.relu(self.bn2(self.conv2(h))), 2)
        h = self.drop(torch.flatten(h, 1))
        h = self.drop_fc(F.relu(self.fc1(h)))
        return classify(self.fc2(h), y)


# name -> (module class, inputs: (name, dtype, shape without the batch), B_max, batch sizes to test)
MODELS = {
    "fashion_mlp": (FashionMLP, [("x", "u8", (1, 28, 28)), ("y", "label", ())]),
    "fashion_cnn": (FashionCNN, [("x", "u8", (1, 28, 28)), ("y", "label", ())]),
    "lenet": (LeNet, [("x", "u8", (1, 28, 28)), ("y", "label", ())]),
    "mnist_conv": (MnistConv, [("x", "u8", (1, 28, 28)), ("y", "label", ())]),
    "cifar_cnn": (CifarCNN, [("x", "u8", (3, 32, 32)), ("y", "label", ())]),
    "xor_mlp": (XorMLP, [("x", "f32", (2,)), ("y", "target", (1,))]),
    "fashion_bn_cnn": (FashionBnCNN, [("x", "u8", (1, 28, 28)), ("y", "label", ())]),
}
