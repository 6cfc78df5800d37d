#!/usr/bin/env python3
"""Convert state dicts between PyTorch checkpoints (.pth) and unirep's HDF5 format (.h5).

Usage
  python3 launch/convert_pytorch.py to-hdf5    IN.pth OUT.h5
  python3 launch/convert_pytorch.py to-pytorch IN.h5  OUT.pth

to-hdf5 reads a bare state dict or a checkpoint dict holding one under 'model' (ImageNet scripts;
'model_ema' is ignored) or 'state_dict' (mmdet/mmseg), loading with map_location='cpu'. Entries that
are not tensors are reported and skipped. to-pytorch writes a bare state dict (torch.save) that
loads with strict=True into the matching model. Both write atomically (a temporary file in the
destination folder, then os.replace), so OUT is either the old file or the complete new one.

HDF5 format "unirep-state-dict", version "1" (read and written by the C++ side too):
  * file attributes: format = "unirep-state-dict", version = "1" (scalar variable-length UTF-8
    strings, h5py's default for Python str);
  * one dataset per tensor at the file root, named exactly by its state-dict key (dots kept, no
    groups), in state-dict order (link creation order is tracked, so readers that iterate by
    creation order see the original order; by-name readers need nothing special);
  * shape kept (0-d tensors are scalar datasets, empty tensors keep their zero extents),
    contiguous layout, no compression or filters, little-endian;
  * dtype kept: float32 '<f4', float64 '<f8', int64 '<i8', int32 '<i4', uint8 '|u1',
    float16 '<f2'; bfloat16 is stored as its raw 16-bit patterns with dtype '<u2' and the dataset
    attribute unirep_dtype = "bfloat16". Any other dtype is an error.
The round trip .pth -> .h5 -> .pth is bit-identical (tests/reference/test_convert.py).

Library use: write_h5(path, tensors, attrs=None), read_h5(path) -> OrderedDict,
extract_state_dict(checkpoint), load_checkpoint(path).
"""

import argparse
import collections
import os
import sys
import tempfile
import warnings

import h5py
import numpy as np
import torch

FORMAT = "unirep-state-dict"
VERSION = "1"
BF16_ATTR = "unirep_dtype"

# torch dtype -> numpy dtype stored in the file
_TO_NUMPY = {
    torch.float32: np.dtype("<f4"),
    torch.float64: np.dtype("<f8"),
    torch.int64: np.dtype("<i8"),
    torch.int32: np.dtype("<i4"),
    torch.uint8: np.dtype("|u1"),
    torch.float16: np.dtype("<f2"),
}
_FROM_NUMPY = {v.str: k for k, v in _TO_NUMPY.items()}


class ConvertError(Exception):
    """A user-facing error: the message says what is wrong with which file."""


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _tensor_to_numpy(name, t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.dtype("<u2")), "bfloat16"
    if t.dtype not in _TO_NUMPY:
        raise ConvertError("tensor %r has dtype %s, which the unirep HDF5 format does not support "
                           "(float32, float64, float16, bfloat16, int64, int32, uint8)"
                           % (name, str(t.dtype).replace("torch.", "")))
    return t.numpy().astype(_TO_NUMPY[t.dtype], copy=False), None


def _atomic_write(path, write_fn):
    """Call write_fn(tmp_path), then move tmp_path onto path; tmp_path is removed on failure."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ConvertError("output folder %s does not exist" % folder)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp's 0600 -> the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_h5(path, tensors, attrs=None):
    """Write an ordered mapping name -> torch.Tensor as a unirep-state-dict HDF5 file, atomically.
    `attrs` adds file attributes (str, int or float values) next to format and version."""
    arrays = []
    for name, t in tensors.items():
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ConvertError("cannot store tensor named %r: dataset names must be non-empty "
                               "and contain no '/'" % (name,))
        arrays.append((name,) + _tensor_to_numpy(name, t))

    def write(tmp):
        # Link creation order tracked (keeps state-dict order); no object timestamps, so the
        # same tensors always give the same bytes.
        fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
        fcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
        fcpl.set_obj_track_times(False)
        fid = h5py.h5f.create(tmp.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)
        with h5py.File(fid) as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            for k, v in (attrs or {}).items():
                f.attrs[k] = str(v) if isinstance(v, str) else v   # plain str, not subclasses
            for name, arr, special in arrays:
                ds = f.create_dataset(name, data=arr, track_times=False)
                if special is not None:
                    ds.attrs[BF16_ATTR] = special

    _atomic_write(path, write)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def _attr_str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr_str(v[()])
    return v if isinstance(v, str) else str(v)


def _names_in_creation_order(f):
    """Root link names in creation order when the file tracks it (ours do), else by name."""
    names = []

    def visit(name):
        names.append(name.decode("utf-8") if isinstance(name, bytes) else name)

    try:
        f.id.links.iterate(visit, idx_type=h5py.h5.INDEX_CRT_ORDER)
    except Exception:                                   # noqa: BLE001 - order not tracked
        names = list(f.keys())
    return names


def read_h5(path):
    """Read a unirep-state-dict HDF5 file into an OrderedDict name -> torch.Tensor (file order)."""
    if not os.path.isfile(path):
        raise ConvertError("%s: no such file" % path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConvertError("%s is not an HDF5 file (%s)" % (path, e))
    out = collections.OrderedDict()
    with f:
        fmt = _attr_str(f.attrs.get("format", ""))
        ver = _attr_str(f.attrs.get("version", ""))
        if fmt != FORMAT:
            raise ConvertError("%s is not a unirep state-dict file (format attribute %r, want %r)"
                               % (path, fmt, FORMAT))
        if ver != VERSION:
            raise ConvertError("%s has format version %r; this converter reads version %r"
                               % (path, ver, VERSION))
        for name in _names_in_creation_order(f):
            obj = f[name]
            if not isinstance(obj, h5py.Dataset):
                raise ConvertError("%s: %r is not a dataset; the format has only root datasets"
                                   % (path, name))
            arr = np.array(obj[()], copy=True, order="C")   # keeps 0-d shapes
            special = obj.attrs.get(BF16_ATTR)
            if special is not None:
                special = _attr_str(special)
                if special != "bfloat16" or arr.dtype.str != "<u2":
                    raise ConvertError("%s: dataset %r has %s=%r and dtype %s; only bfloat16 "
                                       "stored as '<u2' is defined"
                                       % (path, name, BF16_ATTR, special, arr.dtype.str))
                t = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
            else:
                if arr.dtype.byteorder == ">":
                    arr = arr.astype(arr.dtype.newbyteorder("<"))
                if arr.dtype.str not in _FROM_NUMPY:
                    raise ConvertError("%s: dataset %r has unsupported dtype %s"
                                       % (path, name, arr.dtype.str))
                t = torch.from_numpy(arr)
            out[name] = t
    return out


def load_checkpoint(path):
    """torch.load on the CPU, with a clear error for missing files and non-checkpoints.
    Tries weights_only=True first; checkpoints with pickled objects (e.g. the argparse args in
    ImageNet checkpoints) fall back to a full unpickle, so only convert files you trust."""
    if not os.path.isfile(path):
        raise ConvertError("%s: no such file" % path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:                              # noqa: BLE001 - reported below
        first = e
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:                              # noqa: BLE001
        msg = (str(e) or str(first)).strip().splitlines()
        raise ConvertError("%s is not a PyTorch checkpoint (%s: %s)"
                           % (path, type(e).__name__, msg[0] if msg else "unreadable"))
    warnings.warn("%s holds pickled objects besides tensors and needed a full unpickle "
                  "(weights_only=False); only convert checkpoints you trust" % path)
    return ckpt


def extract_state_dict(ckpt, source="checkpoint"):
    """The state dict inside a checkpoint: ckpt['model'], else ckpt['state_dict'], else ckpt
    itself. Non-tensor entries are reported (warnings) and skipped."""
    if not isinstance(ckpt, dict):
        raise ConvertError("%s holds a %s, not a state dict or checkpoint dict"
                           % (source, type(ckpt).__name__))
    sd, where = ckpt, "bare state dict"
    for key in ("model", "state_dict"):
        if isinstance(ckpt.get(key), dict):
            sd, where = ckpt[key], "'%s' entry" % key
            break
    out = collections.OrderedDict()
    skipped = []
    for name, v in sd.items():
        if isinstance(v, torch.Tensor):
            out[name] = v
        else:
            skipped.append((name, type(v).__name__))
    for name, tname in skipped:
        warnings.warn("%s (%s): skipping %r, which is a %s, not a tensor"
                      % (source, where, name, tname))
    if not out:
        raise ConvertError("%s (%s) contains no tensors" % (source, where))
    return out


def to_hdf5(src, dst):
    sd = extract_state_dict(load_checkpoint(src), source=src)
    write_h5(dst, sd)
    return sd


def to_pytorch(src, dst):
    sd = read_h5(src)
    _atomic_write(dst, lambda tmp: torch.save(sd, tmp))
    return sd


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert state dicts between PyTorch .pth and unirep HDF5 (.h5).",
        epilog="See the module docstring for the HDF5 layout.")
    sub = ap.add_subparsers(dest="cmd", metavar="{to-hdf5,to-pytorch}")
    sub.required = True
    p = sub.add_parser("to-hdf5", help="IN.pth -> OUT.h5")
    p.add_argument("src", metavar="IN.pth")
    p.add_argument("dst", metavar="OUT.h5")
    p = sub.add_parser("to-pytorch", help="IN.h5 -> OUT.pth (bare state dict)")
    p.add_argument("src", metavar="IN.h5")
    p.add_argument("dst", metavar="OUT.pth")
    a = ap.parse_args(argv)
    warnings.simplefilter("always")
    warnings.formatwarning = lambda msg, *args, **kw: "convert_pytorch: warning: %s\n" % msg
    try:
        sd = (to_hdf5 if a.cmd == "to-hdf5" else to_pytorch)(a.src, a.dst)
    except ConvertError as e:
        print("convert_pytorch: error: %s" % e, file=sys.stderr)
        return 1
    n = sum(t.numel() for t in sd.values())
    print("convert_pytorch: wrote %s (%d tensors, %d elements)" % (a.dst, len(sd), n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
