#!/usr/bin/env python3
"""Reference files for ember's NPY and safetensors readers (tests/test_io.cpp), and the
check that files written by ember load in Python with the same values.

    make_io_reference.py              writes the io_ref_* files next to this script
    make_io_reference.py check DIR    verifies the ember_* files that the test case
                                      "npy and safetensors files for Python" writes into
                                      DIR when run with EMBER_IO_EXPORT_DIR=DIR

Needs numpy and torch (Debian: python3-numpy python3-torch). The `safetensors` package is
used as well when installed; otherwise (and always, as a second opinion) the small
reader/writer below, written from the format's specification, is used:
8-byte little-endian header length N, N bytes of JSON, then the raw little-endian data.

The values here are the literals tests/test_io.cpp compares against; change both together.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

# ---- the values -----------------------------------------------------------------------

NPY = {
    # name: (array, format version used for the reference file)
    "f32_2x3": (np.array([[1.5, -2.25, 3.0], [0.0, 0.1, -7.0]], dtype="<f4"), (1, 0)),
    "f64_scalar": (np.array(3.141592653589793, dtype="<f8"), (2, 0)),
    "u8_rank4": (np.array([0, 1, 2, 127, 128, 200, 254, 255, 3, 4, 5, 6], dtype="|u1").reshape(1, 2, 2, 3), (3, 0)),
    "f64_vec": (np.array([-0.5, 1e-300, 2.5e10, 1e300], dtype="<f8"), (1, 0)),
    "f32_rank3": (np.array([1, 2, 3, 4], dtype="<f4").reshape(2, 1, 2), (1, 0)),
    "f32_empty": (np.zeros((0, 3), dtype="<f4"), (1, 0)),
}

# Files each reader must refuse (see test_io.cpp for the expected messages).
NPY_BAD = {
    "bad_fortran": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),
    "bad_bigendian": np.array([1.0, 2.0], dtype=">f8"),
    "bad_int32": np.array([1, 2], dtype="<i4"),
    "bad_rank5": np.zeros((1, 1, 1, 1, 2), dtype="<f4"),
}

# One tensor of each rank 0-4 and each dtype, and an empty one.
CHECKPOINT = {
    "step": torch.tensor(7.0, dtype=torch.float32),
    "bias": torch.tensor([1e-3, -2.5, 1e10], dtype=torch.float64),
    "weight": torch.tensor([[0.5, -1.0], [0.1, 2.0]], dtype=torch.float32),
    "cube": torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float32).reshape(2, 2, 1),
    "image": torch.tensor([0, 17, 254, 255], dtype=torch.uint8).reshape(1, 2, 2, 1),
    "empty": torch.zeros((0, 2), dtype=torch.float32),
}
METADATA = {"format": "pt", "note": 'quote " backslash \\ newline \n tab \t e-acute \u00e9 emoji \U0001F600'}

# ember writes one dtype per file, so its checkpoint is split by dtype.
EMBER_CHECKPOINTS = {
    "ember_checkpoint_f32.safetensors": ["step", "weight", "cube", "empty"],
    "ember_checkpoint_f64.safetensors": ["bias"],
    "ember_checkpoint_u8.safetensors": ["image"],
}

# ---- safetensors, from the specification ------------------------------------------------

DTYPES = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8"), torch.uint8: ("U8", "|u1")}
FROM_NAME = {name: (torch_dtype, np_dtype) for torch_dtype, (name, np_dtype) in DTYPES.items()}


def write_safetensors(path, tensors, metadata):
    """As the reference implementation lays files out: tensors sorted by alignment (largest
    element first) then name, compact JSON, header padded with spaces to 8 bytes."""
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in order:
        t = tensors[name].contiguous()
        code, np_dtype = DTYPES[t.dtype]
        blob = t.numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    """Returns ({name: torch tensor}, metadata), checking what the spec requires."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw), "header runs past the end"
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n :]
    tensors, covered = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, end = info["data_offsets"]
        assert begin == covered, f"{name}: gap or overlap at {begin}"
        torch_dtype, np_dtype = FROM_NAME[info["dtype"]]
        array = np.frombuffer(data[begin:end], dtype=np_dtype).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
        assert tensors[name].dtype == torch_dtype
        covered = end
    assert covered == len(data), "data section not covered"
    return tensors, metadata


# ---- the two modes ---------------------------------------------------------------------


def generate(out_dir):
    for name, (array, version) in NPY.items():
        with open(os.path.join(out_dir, f"io_ref_{name}.npy"), "wb") as f:
            np.lib.format.write_array(f, array, version=version)
    for name, array in NPY_BAD.items():
        np.save(os.path.join(out_dir, f"io_ref_{name}.npy"), array)
    path = os.path.join(out_dir, "io_ref_checkpoint.safetensors")
    write_safetensors(path, CHECKPOINT, METADATA)
    tensors, metadata = read_safetensors(path)  # our writer agrees with our reader
    assert metadata == METADATA and all(torch.equal(tensors[k], v) for k, v in CHECKPOINT.items())


def check(ember_dir):
    failures = []
    for name, (expected, _) in NPY.items():
        path = os.path.join(ember_dir, f"ember_{name}.npy")
        got = np.load(path)
        if got.dtype != expected.dtype or got.shape != expected.shape or not np.array_equal(got, expected):
            failures.append(f"{path}: got {got.dtype} {got.shape} {got!r}")
    try:
        from safetensors.torch import load_file  # the real implementation, when installed
    except ImportError:
        load_file = None
    for file_name, names in EMBER_CHECKPOINTS.items():
        path = os.path.join(ember_dir, file_name)
        tensors, metadata = read_safetensors(path)
        loaders = [("spec reader", tensors)] + ([("safetensors", load_file(path))] if load_file else [])
        for loader, got in loaders:
            if sorted(got) != sorted(names):
                failures.append(f"{path} ({loader}): tensors {sorted(got)}, expected {sorted(names)}")
                continue
            for k in names:
                e = CHECKPOINT[k]
                if got[k].dtype != e.dtype or got[k].shape != e.shape or not torch.equal(got[k], e):
                    failures.append(f"{path} ({loader}): {k} = {got[k]!r}, expected {e!r}")
        if metadata != METADATA:
            failures.append(f"{path}: metadata {metadata!r}")
    for f in failures:
        print("MISMATCH", f)
    print(f"checked {len(NPY)} npy files and {len(EMBER_CHECKPOINTS)} safetensors files from {ember_dir}: "
          + ("FAILED" if failures else "all equal")
          + ("" if load_file else " (safetensors package not installed; spec reader only)"))
    return not failures


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(0 if check(sys.argv[2]) else 1)
    elif len(sys.argv) == 1:
        generate(os.path.dirname(os.path.abspath(__file__)))
    else:
        sys.exit(__doc__)
