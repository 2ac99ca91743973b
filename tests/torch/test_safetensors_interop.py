"""safetensors interop: files nnc writes load in numpy, files numpy writes load in nnc.

usage: test_safetensors_interop.py <st_tool>   (tests/unit/st_tool.c)
Exit 0: passed, 1: failed, 77: skipped (numpy missing; under CI=true that fails instead).
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import numpy as np
    import safetensors_np as st
except ImportError as e:
    if os.environ.get("CI") == "true":
        print(f"FAIL: numpy is required under CI=true: {e}")
        sys.exit(1)
    print(f"SKIP: numpy not available: {e}")
    sys.exit(77)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


def expected_c_sample():
    """What st_tool write stores, recomputed here."""
    return {
        "conv1.weight": np.array([i * 0.25 - 3.0 for i in range(36)], np.float32).reshape(4, 1, 3, 3),
        "conv1.bias": np.array([1.0 / (i + 1) for i in range(4)], np.float64),
        "fc.index": np.array([i * -7 + 3 for i in range(6)], np.int32).reshape(2, 3),
        "fc.big": np.array([1 << 40, -5, 9000000000000000000], np.int64),
        "pixels": np.array([i * 37 % 256 for i in range(8)], np.uint8).reshape(2, 2, 2),
        "scale": np.array(0.5, np.float32),
        "mask": np.array([True, False, True]),
        "half": np.array([1.0, -2.0, 2.0 ** -24], np.float16),
        "brain": np.array([1.0, 3.140625], np.float32),
        "none": np.zeros((0, 5), np.float32),
        "nonfinite": np.array([np.inf, -np.inf, -0.0], np.float32),
    }


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def c_to_numpy(tool, tmp):
    path = os.path.join(tmp, "from_c.safetensors")
    subprocess.run([tool, "write", path], check=True)
    got = st.load(path)
    want = expected_c_sample()
    check(sorted(got) == sorted(want), f"C file holds {sorted(got)}")
    for name, w in want.items():
        if name in got:
            check(same(got[name], w), f"C->numpy '{name}': got {got[name]!r}, want {w!r}")
    check(st.load_metadata(path) == {"format": "pt", "producer": "nnc"}, "C->numpy metadata")
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = blob[8:8 + n].decode()
    check(n % 8 == 0 and header.rstrip(" ").endswith("}"), "header padded with spaces to 8 bytes")
    keys = list(json.loads(header))
    check(keys == sorted(keys), f"header keys sorted: {keys}")
    # The reference writer's order: largest elements first, so every tensor is aligned.
    info = json.loads(header)
    for name, t in info.items():
        if name != "__metadata__":
            size = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2}.get(t["dtype"], 1)
            check(t["data_offsets"][0] % size == 0, f"'{name}' aligned in the data buffer")


def from_json(v):
    if isinstance(v, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]
    return v


def numpy_sample():
    rng = np.random.default_rng(7)
    return {
        "layer.0.weight": rng.standard_normal((3, 4)).astype(np.float32),
        "layer.0.bias": rng.standard_normal(3).astype(np.float64),
        "ids": rng.integers(-2**31, 2**31 - 1, size=(2, 2), dtype=np.int32),
        "steps": np.array([-(2**62), 2**62, 0], np.int64),
        "image": rng.integers(0, 256, size=(1, 2, 3), dtype=np.uint8),
        "flags": np.array([[True], [False]]),
        "h": np.array([0.5, -65504.0, 6e-8], np.float16),
        "small": rng.integers(-128, 128, size=4, dtype=np.int8),
        "u16": np.array([0, 65535], np.uint16),
        "i16": np.array([-32768, 32767], np.int16),
        "u32": np.array([4294967295], np.uint32),
        "t": np.array(2.5, np.float64),
        "empty": np.zeros((2, 0), np.int32),
        "transposed": np.arange(6, dtype=np.float32).reshape(2, 3).T,
    }


def numpy_to_c(tool, tmp):
    path = os.path.join(tmp, "from_numpy.safetensors")
    want = numpy_sample()
    st.save(path, want, {"epoch": "3", "note": "caf\u00e9"})
    out = subprocess.run([tool, "dump", path], capture_output=True, text=True)
    check(out.returncode == 0, f"C reads the numpy file: {out.stderr.strip()}")
    if out.returncode != 0:
        return
    got = json.loads(out.stdout)
    check(got["metadata"] == {"epoch": "3", "note": "caf\u00e9"}, f"numpy->C metadata: {got['metadata']}")
    check(sorted(got["tensors"]) == sorted(want), f"numpy->C names: {sorted(got['tensors'])}")
    for name, w in want.items():
        t = got["tensors"].get(name)
        if t is None:
            continue
        check(t["dtype"] == st.NAMES[w.dtype.newbyteorder("<")], f"'{name}' dtype {t['dtype']}")
        check(tuple(t["shape"]) == w.shape, f"'{name}' shape {t['shape']} vs {w.shape}")
        values = np.array([from_json(v) for v in t["values"]], dtype=w.dtype)
        check(same(values.reshape(w.shape), np.asarray(w, order="C")), f"numpy->C '{name}': {t['values']} vs {w}")


def damaged_numpy_file_rejected(tool, tmp):
    path = os.path.join(tmp, "damaged.safetensors")
    st.save(path, {"a": np.ones(4, np.float32)})
    with open(path, "ab") as f:
        f.write(b"\0\0\0\0")
    out = subprocess.run([tool, "dump", path], capture_output=True, text=True)
    check(out.returncode == 1 and out.stderr.startswith(path + ": ")
          and "the tensors cover 16 bytes of the 20-byte data buffer" in out.stderr,
          f"trailing bytes rejected with a message: {out.stderr.strip()!r}")


def main():
    tool = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        c_to_numpy(tool, tmp)
        numpy_to_c(tool, tmp)
        damaged_numpy_file_rejected(tool, tmp)
    print(f"{len(failures)} failed" if failures else "safetensors interop: passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
