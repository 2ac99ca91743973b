"""safetensors with json and numpy only (Debian packages no safetensors for Python).

load(path) -> (dict name -> numpy array), save(path, dict, metadata=None); load_metadata(path).
Layout as the reference writer: 8-byte little-endian header size, a JSON header padded with
spaces to a multiple of 8, then the data, largest elements first, then by name. BF16 loads
as float32 (numpy has no bfloat16) and cannot be saved.
"""
import json
import struct

import numpy as np

DTYPES = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
    "I16": np.dtype("<i2"), "U16": np.dtype("<u2"), "F16": np.dtype("<f2"),
    "I32": np.dtype("<i4"), "U32": np.dtype("<u4"), "F32": np.dtype("<f4"),
    "I64": np.dtype("<i8"), "U64": np.dtype("<u8"), "F64": np.dtype("<f8"),
}
NAMES = {v: k for k, v in DTYPES.items()}


def _read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: file is {len(blob)} bytes, too short")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > 100_000_000 or 8 + n > len(blob):
        raise ValueError(f"{path}: bad header size {n}")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    return header, memoryview(blob)[8 + n:]


def load_metadata(path):
    return _read(path)[0].get("__metadata__", {})


def load(path):
    header, data = _read(path)
    out, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])):
        if name == "__metadata__":
            continue
        begin, stop = info["data_offsets"]
        if begin != end:
            raise ValueError(f"{path}: tensor '{name}' does not start where the previous one ends")
        end = stop
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            bits = np.frombuffer(data[begin:stop], dtype="<u2").astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
            continue
        dt = DTYPES[info["dtype"]]
        if stop - begin != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor '{name}': size does not match its shape")
        out[name] = np.frombuffer(data[begin:stop], dtype=dt).reshape(shape).copy()
    if end != len(data):
        raise ValueError(f"{path}: the tensors do not cover the data buffer")
    return out


def save(path, tensors, metadata=None):
    arrays = {k: np.asarray(v, order="C") for k, v in tensors.items()}  # keeps 0-d shapes
    for k, a in arrays.items():
        if a.dtype.newbyteorder("<") not in NAMES:
            raise TypeError(f"tensor '{k}': dtype {a.dtype} has no safetensors name")
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header, at = {}, 0
    for k in order:
        a = arrays[k]
        header[k] = {"dtype": NAMES[a.dtype.newbyteorder("<")], "shape": list(a.shape), "data_offsets": [at, at + a.nbytes]}
        at += a.nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for k in order:
            a = arrays[k]
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
