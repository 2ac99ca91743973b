#!/usr/bin/python3
"""Writes PyTorch's answers for conv2d and max_pool2d (values, argmax and gradients) on a few
random shapes and for every elementwise unary primitive on random values, then runs the
interpreter's check against them.

    interp_ops.py OUT_FILE [CHECK_COMMAND ...]

OUT_FILE is plain text: for each case a header line ("conv2d N C H W O KH KW sy sx py px dy dx
groups", "maxpool2d N C H W KH KW sy sx py px dy dx" or "unary OP"), then one line per tensor:
its name, its element count and its values in float64, row-major; "end" closes the case. Then
CHECK_COMMAND OUT_FILE runs (test_interp --torch) and its status is ours. Without torch the
test skips (77), except under CI=true where a missing dependency is a failure."""
import os
import subprocess
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch not found: skipping", file=sys.stderr)
    sys.exit(1 if os.environ.get("CI") == "true" else 77)

CONV_CASES = [  # N C H W O KH KW stride padding dilation groups
    (2, 3, 7, 6, 4, 3, 3, (2, 2), (1, 1), (1, 1), 1),
    (1, 4, 9, 8, 6, 3, 2, (1, 2), (2, 0), (2, 1), 2),
    (3, 2, 5, 5, 2, 1, 1, (1, 1), (0, 0), (1, 1), 2),
    (2, 6, 8, 7, 3, 3, 3, (3, 2), (1, 2), (1, 2), 3),
]
POOL_CASES = [  # N C H W KH KW stride padding dilation
    (2, 3, 8, 8, 2, 2, (2, 2), (0, 0), (1, 1)),
    (1, 2, 7, 9, 3, 3, (2, 2), (1, 1), (1, 1)),
    (2, 2, 9, 8, 3, 2, (1, 2), (1, 0), (2, 1)),
    (1, 1, 6, 6, 3, 3, (1, 1), (1, 1), (1, 1)),  # overlapping windows: the gradient accumulates
]

UNARY_CASES = [  # nnc's primitive, PyTorch's function, the range of the operand
    ("neg", torch.neg, -3, 3),
    ("exp", torch.exp, -3, 3),
    ("log", torch.log, 0.01, 10),
    ("sqrt", torch.sqrt, 0, 10),
    ("rsqrt", torch.rsqrt, 0.01, 10),
    ("tanh", torch.tanh, -4, 4),
    ("erf", torch.erf, -3, 3),
    ("abs", torch.abs, -3, 3),
    ("sin", torch.sin, -10, 10),
    ("cos", torch.cos, -10, 10),
]


def put(f, name, t):
    v = t.detach().double().reshape(-1).tolist()
    f.write(f"{name} {len(v)} " + " ".join(repr(x) for x in v) + "\n")


def conv_case(f, n, c, h, w, o, kh, kw, s, p, d, g):
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(o, c // g, kh, kw, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, wt, stride=s, padding=p, dilation=d, groups=g)
    dy = torch.randn_like(y)
    y.backward(dy)
    f.write(f"conv2d {n} {c} {h} {w} {o} {kh} {kw} {s[0]} {s[1]} {p[0]} {p[1]} {d[0]} {d[1]} {g}\n")
    for name, t in (("x", x), ("w", wt), ("y", y), ("dy", dy), ("dx", x.grad), ("dw", wt.grad)):
        put(f, name, t)
    f.write("end\n")


def window_argmax(flat, h_in, w_in, s, p, d, kw):
    """PyTorch's flat input index (iy*W+ix) -> our window index ky*KW+kx."""
    ho, wo = flat.shape[2], flat.shape[3]
    oy = torch.arange(ho).view(1, 1, ho, 1)
    ox = torch.arange(wo).view(1, 1, 1, wo)
    ky = (flat // w_in - (oy * s[0] - p[0])) // d[0]
    kx = (flat % w_in - (ox * s[1] - p[1])) // d[1]
    return ky * kw + kx


def pool_case(f, n, c, h, w, kh, kw, s, p, d):
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    y, idx = F.max_pool2d(x, (kh, kw), stride=s, padding=p, dilation=d, return_indices=True)
    dy = torch.randn_like(y)
    y.backward(dy)
    f.write(f"maxpool2d {n} {c} {h} {w} {kh} {kw} {s[0]} {s[1]} {p[0]} {p[1]} {d[0]} {d[1]}\n")
    for name, t in (("x", x), ("y", y), ("argmax", window_argmax(idx, h, w, s, p, d, kw)), ("dy", dy),
                    ("dx", x.grad)):
        put(f, name, t)
    f.write("end\n")


def unary_case(f, op, fn, lo, hi):
    x = lo + (hi - lo) * torch.rand(64, dtype=torch.float64)
    f.write(f"unary {op}\n")
    put(f, "x", x)
    put(f, "y", fn(x))
    f.write("end\n")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    torch.manual_seed(1234)
    with open(sys.argv[1], "w") as f:
        for case in CONV_CASES:
            conv_case(f, *case)
        for case in POOL_CASES:
            pool_case(f, *case)
        for case in UNARY_CASES:
            unary_case(f, *case)
    if len(sys.argv) > 2:
        return subprocess.call(sys.argv[2:] + [sys.argv[1]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
