#!/usr/bin/env python3
"""Tests of launch/convert_pytorch.py: bit-identical .pth -> .h5 -> .pth round trips for every
supported dtype, the HDF5 layout the C++ reader relies on, checkpoint containers, and errors.

    python3 tests/reference/test_convert.py [-v]
"""

import argparse
import collections
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONVERTER = os.path.join(ROOT, "launch", "convert_pytorch.py")
sys.path.insert(0, HERE)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import unireplknet_ref as ref  # noqa: E402

_spec = importlib.util.spec_from_file_location("convert_pytorch", CONVERTER)
conv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conv)

# dtype -> (integer dtype of the same width for bit comparisons, stored numpy dtype string)
DTYPES = collections.OrderedDict([
    (torch.float32, (torch.int32, "<f4")),
    (torch.float64, (torch.int64, "<f8")),
    (torch.int64, (torch.int64, "<i8")),
    (torch.int32, (torch.int32, "<i4")),
    (torch.uint8, (torch.uint8, "|u1")),
    (torch.float16, (torch.int16, "<f2")),
    (torch.bfloat16, (torch.int16, "<u2")),
])


def random_bits(dtype, shape, gen):
    """Tensor of `dtype` whose bit patterns are uniformly random (NaN payloads, infinities,
    subnormals and negative zero included for the floating types)."""
    int_dtype = DTYPES[dtype][0]
    if int_dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8).to(dtype)
    info = torch.iinfo(int_dtype)
    bits = torch.randint(info.min, info.max, shape, generator=gen, dtype=torch.int64)
    bits = bits.to(int_dtype)
    return bits.view(dtype) if dtype.is_floating_point else bits.to(dtype)


def special_values(dtype):
    vals = [0.0, -0.0, 1.0, -2.5, float("inf"), float("-inf"), float("nan")]
    if dtype.is_floating_point:
        info = torch.finfo(dtype)
        vals += [info.max, info.min, info.tiny, info.tiny / 4, info.eps]
        return torch.tensor(vals, dtype=torch.float64).to(dtype)
    info = torch.iinfo(dtype)
    return torch.tensor([0, 1, info.max, info.min], dtype=dtype)


NAN_BITS = {   # signalling NaN, quiet NaN, negative NaN with payload, smallest subnormal, -0
    torch.float16: ("<u2", "<i2", [0x7C01, 0x7E00, 0xFE01, 0x0001, 0x8000]),
    torch.bfloat16: ("<u2", "<i2", [0x7F81, 0x7FC0, 0xFFC1, 0x0001, 0x8000]),
    torch.float32: ("<u4", "<i4", [0x7F800001, 0x7FC00000, 0xFFC00001, 0x1, 0x80000000]),
    torch.float64: ("<u8", "<i8", [0x7FF0000000000001, 0x7FF8000000000000, 0xFFF8000000000001,
                                   0x1, 0x8000000000000000]),
}


def nan_payloads(dtype):
    udt, idt, bits = NAN_BITS[dtype]
    ints = torch.from_numpy(np.array(bits, dtype=udt).view(idt))
    return ints.view(dtype)


def sample_state_dict(seed=0):
    gen = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for dtype in DTYPES:
        name = str(dtype).replace("torch.", "")
        sd["layer.%s.weight" % name] = random_bits(dtype, (3, 4, 5), gen)
        sd["layer.%s.scalar" % name] = random_bits(dtype, (), gen)
        sd["layer.%s.empty" % name] = torch.zeros((0, 3), dtype=dtype)
        sd["layer.%s.special" % name] = special_values(dtype)
        sd["layer.%s.transposed" % name] = random_bits(dtype, (4, 6), gen).t()   # non-contiguous
        if dtype in NAN_BITS:
            sd["layer.%s.nan_payloads" % name] = nan_payloads(dtype)
    sd["bn.num_batches_tracked"] = torch.tensor(7)
    sd["zz.order.check"] = torch.ones(2)        # state-dict order is not alphabetical
    sd["aa.order.check"] = torch.ones(2)
    return sd


def bit_equal(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    int_dtype = DTYPES[a.dtype][0]
    return torch.equal(a.contiguous().view(int_dtype), b.contiguous().view(int_dtype))


def run_cli(*args):
    return subprocess.run([sys.executable, CONVERTER] + list(args), capture_output=True,
                          text=True)


class ConvertTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def assert_same_state_dict(self, got, want):
        self.assertEqual(list(got.keys()), list(want.keys()))
        for k in want:
            self.assertTrue(bit_equal(got[k], want[k]), "tensor %s differs" % k)

    # -- round trips ---------------------------------------------------------------------------
    def test_cli_round_trip_all_dtypes_bit_identical(self):
        sd = sample_state_dict()
        torch.save(sd, self.path("in.pth"))
        r = run_cli("to-hdf5", self.path("in.pth"), self.path("w.h5"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("warning", r.stderr)
        r = run_cli("to-pytorch", self.path("w.h5"), self.path("out.pth"))
        self.assertEqual(r.returncode, 0, r.stderr)
        back = torch.load(self.path("out.pth"), map_location="cpu")
        self.assertIsInstance(back, dict)
        self.assert_same_state_dict(back, sd)
        self.assertEqual(sorted(os.listdir(self.dir)), ["in.pth", "out.pth", "w.h5"])

    def test_hdf5_layout(self):
        sd = sample_state_dict()
        conv.write_h5(self.path("w.h5"), sd)
        with h5py.File(self.path("w.h5"), "r") as f:
            self.assertEqual(f.attrs["format"], "unirep-state-dict")
            self.assertEqual(f.attrs["version"], "1")
            for key in ("format", "version"):
                self.assertTrue(f.attrs.get_id(key).get_type().is_variable_str())
            self.assertEqual(sorted(f.keys()), sorted(sd.keys()))    # all at the root
            for name, t in sd.items():
                ds = f[name]
                self.assertIsInstance(ds, h5py.Dataset)
                self.assertEqual(ds.shape, tuple(t.shape), name)
                self.assertEqual(ds.dtype.str, DTYPES[t.dtype][1], name)
                self.assertIsNone(ds.compression)
                self.assertIsNone(ds.chunks)
                if t.dtype == torch.bfloat16:
                    self.assertEqual(ds.attrs["unirep_dtype"], "bfloat16")
                    bits = t.contiguous().view(torch.int16).numpy().view(np.uint16)
                    np.testing.assert_array_equal(ds[()], bits)
                else:
                    self.assertNotIn("unirep_dtype", ds.attrs)
                    if t.numel() and not t.dtype.is_floating_point:
                        np.testing.assert_array_equal(ds[()], t.numpy())
            self.assertEqual(f["bn.num_batches_tracked"].shape, ())
            self.assertEqual(f["bn.num_batches_tracked"][()], 7)
        # creation order is the state-dict order
        self.assertEqual(list(conv.read_h5(self.path("w.h5")).keys()), list(sd.keys()))

    def test_written_bytes_are_deterministic(self):
        sd = sample_state_dict()
        conv.write_h5(self.path("a.h5"), sd)
        conv.write_h5(self.path("b.h5"), sd)
        with open(self.path("a.h5"), "rb") as a, open(self.path("b.h5"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_reference_model_round_trip_loads_strictly(self):
        for deploy in (False, True):
            with ref.no_init():
                model = ref.unireplknet("a", deploy=deploy, num_classes=10)
            ref.randomize_(model, seed=3)
            torch.save(model.state_dict(), self.path("m.pth"))
            conv.to_hdf5(self.path("m.pth"), self.path("m.h5"))
            conv.to_pytorch(self.path("m.h5"), self.path("m2.pth"))
            sd = torch.load(self.path("m2.pth"), map_location="cpu")
            with ref.no_init():
                other = ref.unireplknet("a", deploy=deploy, num_classes=10)
            other.load_state_dict(sd, strict=True)
            self.assert_same_state_dict(other.state_dict(), model.state_dict())
            x = torch.randn(1, 3, 32, 32)
            with torch.no_grad():
                self.assertTrue(torch.equal(model.eval()(x), other.eval()(x)))

    # -- containers ----------------------------------------------------------------------------
    def test_model_entry_used_and_ema_ignored(self):
        sd = sample_state_dict()
        ema = collections.OrderedDict((k, torch.zeros(1)) for k in ("ema.only",))
        ckpt = {"model": sd, "model_ema": ema, "optimizer": {"state": {}}, "epoch": "best",
                "args": argparse.Namespace(lr=1e-3), "scaler": {}}
        torch.save(ckpt, self.path("ck.pth"))
        r = run_cli("to-hdf5", self.path("ck.pth"), self.path("w.h5"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_same_state_dict(conv.read_h5(self.path("w.h5")), sd)

    def test_state_dict_entry(self):
        sd = sample_state_dict()
        torch.save({"state_dict": sd, "meta": {"epoch": 36}}, self.path("mm.pth"))
        self.assert_same_state_dict(conv.to_hdf5(self.path("mm.pth"), self.path("w.h5")), sd)
        self.assert_same_state_dict(conv.read_h5(self.path("w.h5")), sd)

    def test_non_tensor_entries_skipped_with_warning(self):
        sd = collections.OrderedDict([("a", torch.ones(2)), ("note", "hello"), ("n", 3),
                                      ("b", torch.zeros(1, dtype=torch.int64))])
        torch.save(sd, self.path("mixed.pth"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = conv.to_hdf5(self.path("mixed.pth"), self.path("w.h5"))
        self.assertEqual(list(got.keys()), ["a", "b"])
        text = "\n".join(str(w.message) for w in caught)
        self.assertIn("'note'", text)
        self.assertIn("'n'", text)
        r = run_cli("to-hdf5", self.path("mixed.pth"), self.path("w2.h5"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warning", r.stderr)
        self.assertIn("'note'", r.stderr)

    # -- errors --------------------------------------------------------------------------------
    def test_missing_input(self):
        r = run_cli("to-hdf5", self.path("nope.pth"), self.path("w.h5"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such file", r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        with self.assertRaises(conv.ConvertError):
            conv.to_pytorch(self.path("nope.h5"), self.path("o.pth"))

    def test_not_a_checkpoint_and_not_hdf5(self):
        with open(self.path("text.pth"), "w") as f:
            f.write("this is not a checkpoint\n")
        r = run_cli("to-hdf5", self.path("text.pth"), self.path("w.h5"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a PyTorch checkpoint", r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertFalse(os.path.exists(self.path("w.h5")))
        with self.assertRaisesRegex(conv.ConvertError, "not an HDF5 file"):
            conv.read_h5(self.path("text.pth"))
        torch.save([1, 2, 3], self.path("list.pth"))
        with self.assertRaisesRegex(conv.ConvertError, "not a state dict"):
            conv.to_hdf5(self.path("list.pth"), self.path("w.h5"))
        torch.save({"epoch": 3}, self.path("empty.pth"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with self.assertRaisesRegex(conv.ConvertError, "no tensors"):
                conv.to_hdf5(self.path("empty.pth"), self.path("w.h5"))

    def test_wrong_format_attribute(self):
        with h5py.File(self.path("other.h5"), "w") as f:
            f["x"] = np.ones(2, np.float32)
        with self.assertRaisesRegex(conv.ConvertError, "not a unirep state-dict file"):
            conv.read_h5(self.path("other.h5"))
        with h5py.File(self.path("v2.h5"), "w") as f:
            f.attrs["format"] = "unirep-state-dict"
            f.attrs["version"] = "2"
        with self.assertRaisesRegex(conv.ConvertError, "version"):
            conv.read_h5(self.path("v2.h5"))

    def test_unsupported_dtype_is_an_error_and_output_untouched(self):
        with open(self.path("w.h5"), "wb") as f:
            f.write(b"old")
        torch.save({"mask": torch.ones(3, dtype=torch.bool)}, self.path("b.pth"))
        r = run_cli("to-hdf5", self.path("b.pth"), self.path("w.h5"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("bool", r.stderr)
        with open(self.path("w.h5"), "rb") as f:
            self.assertEqual(f.read(), b"old")                   # atomic: old file kept
        self.assertEqual(sorted(os.listdir(self.dir)), ["b.pth", "w.h5"])   # no temp left

    def test_missing_output_folder(self):
        torch.save({"a": torch.ones(1)}, self.path("a.pth"))
        with self.assertRaisesRegex(conv.ConvertError, "does not exist"):
            conv.to_hdf5(self.path("a.pth"), self.path("no/dir/w.h5"))


if __name__ == "__main__":
    unittest.main()
