#!/usr/bin/env python3
"""h5py side of the tensor-file interop test (tests/layers/test_tensor_io.cpp, TensorIo.H5pyInterop).

    h5py_interop.py write FILE   writes a state dict the way a Python converter would (h5py defaults:
                                 no creation order, so the C++ reader lists it by name)
    h5py_interop.py read FILE    checks the file that the C++ test wrote with save_tensors

Both sides hard-code the same contents; exit status 0 means every check passed. The format is
documented in layers/tensor_io.h.
"""
import sys

import h5py
import numpy as np


def bf16_bits(values):
    """float32 -> bfloat16 bits (round to nearest even), as uint16."""
    u = np.asarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2")


def write(path):
    with h5py.File(path, "w") as f:
        f["w.f32"] = (np.arange(6, dtype="<f4") * 0.25 - 0.5).reshape(2, 3)
        f["w.f64"] = np.arange(4, dtype="<f8") / 3
        f["w.f16"] = np.array([0.5, -2.0, 65504.0], dtype="<f2")
        f["w.bf16"] = bf16_bits([1.0, -2.5, 3.0e38])
        f["w.bf16"].attrs["unirep_dtype"] = "bfloat16"
        f["i8"] = np.array([-128, 0, 127], dtype="i1")
        f["i16"] = np.array([-32768, 1, 32767], dtype="<i2")
        f["u16"] = np.array([0, 1, 65535], dtype="<u2")
        f["u32"] = np.array([0, 4294967295], dtype="<u4")
        f["u64"] = np.array([0, 2**63 - 1], dtype="<u8")
        f["i32"] = np.array([[-7], [8]], dtype="<i4")
        f["num_batches_tracked"] = np.int64(42)  # 0-d
        f["u8"] = np.array([0, 200, 255], dtype="u1")
        f["be.f64"] = np.array([1.5, -0.25], dtype=">f8")  # big-endian: converted on read
        f["empty"] = np.zeros((0, 4), dtype="<f4")
        f.create_group("meta")["inner"] = np.zeros(3)  # groups are skipped
        f.attrs["format"] = "unirep-state-dict"
        f.attrs["version"] = 1
        f.attrs["model"] = "a"


def check(cond, what):
    if not cond:
        print("h5py_interop read: " + what, file=sys.stderr)
        sys.exit(1)


def read(path):
    expected = [  # name, numpy dtype, value
        ("stem.0.weight", "<f4", (np.arange(6, dtype="<f4") * 0.25 - 0.5).reshape(2, 3)),
        ("stem.1.running_var", "<f8", np.arange(4, dtype="<f8") / 3),
        ("stem.1.num_batches_tracked", "<i8", np.int64(7)),
        ("head.weight", "<f2", np.array([0.5, -2.0, 65504.0], dtype="<f2")),
        ("head.bias", "<u2", bf16_bits([1.0, -2.5])),
        ("idx", "<i4", np.array([-1, 0, 5], dtype="<i4")),
        ("mask", "|u1", np.array([0, 200, 255], dtype="u1")),
        ("empty", "<f4", np.zeros((0, 4), dtype="<f4")),
    ]
    with h5py.File(path, "r") as f:
        order = []
        f.id.links.iterate(order.append, idx_type=h5py.h5.INDEX_CRT_ORDER)
        names = [n.decode() for n in order]
        check(names == [e[0] for e in expected], "creation order %r" % names)
        for name, dtype, value in expected:
            d = f[name]
            check(d.dtype.str == dtype, "%s: dtype %s, expected %s" % (name, d.dtype.str, dtype))
            check(d.shape == np.shape(value), "%s: shape %r, expected %r" % (name, d.shape, np.shape(value)))
            check(np.array_equal(d[()], value), "%s: values %r, expected %r" % (name, d[()], value))
        check(f["head.bias"].attrs.get("unirep_dtype") == "bfloat16", "head.bias: no unirep_dtype = bfloat16")
        check("unirep_dtype" not in f["head.weight"].attrs, "head.weight: unexpected unirep_dtype")
        attrs = {k: f.attrs[k] for k in f.attrs}
        check(attrs == {"format": "unirep-state-dict", "version": "1", "model": "a"}, "attributes %r" % attrs)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit("usage: h5py_interop.py write|read FILE")
    (write if sys.argv[1] == "write" else read)(sys.argv[2])
    print("h5py_interop %s %s: ok" % (sys.argv[1], sys.argv[2]))
