// Tensor files: state dicts and checkpoints in HDF5. This comment is the format's documentation;
// any HDF5 library reads these files and may write them. In Python (h5py), in state-dict order:
//     with h5py.File(path, "r") as f:
//         names = []
//         f.id.links.iterate(names.append, idx_type=h5py.h5.INDEX_CRT_ORDER)
//         state = {n.decode(): f[n.decode()][()] for n in names}  # numpy; bf16 as uint16 bits
//         meta = dict(f.attrs)                                    # {"format": "unirep-state-dict"}
// (`list(f)` lists by name; tests/layers/h5py_interop.py writes and reads such files.)
//
// The file
//   * One dataset per tensor, directly under the root group, named by its state-dict name exactly
//     (`stages.2.5.dwconv.lk_origin.weight`). Names are non-empty, unique and contain no '/'.
//     Nothing is nested: groups and soft/external links under the root are ignored by the reader.
//   * Shape kept: dataspace dims = tensor shape (row-major, as numpy); a 0-d tensor (e.g.
//     `num_batches_tracked`) is a scalar dataspace; an empty tensor has a 0 in its dims.
//   * Contiguous layout, no chunking, no filters (plain little-endian bytes at one offset).
//   * dtype kept, as these HDF5 types (numpy dtype in brackets):
//         float32  H5T_IEEE_F32LE  (<f4)        int64   H5T_STD_I64LE  (<i8)
//         float64  H5T_IEEE_F64LE  (<f8)        int32   H5T_STD_I32LE  (<i4)
//         float16  IEEE half        (<f2)       uint8   H5T_STD_U8LE   (<u1)
//         bfloat16 H5T_STD_U16LE   (<u2, the raw bf16 bits) with the dataset attribute
//                  unirep_dtype = "bfloat16" (numpy has no bfloat16; in Python:
//                  torch.from_numpy(a.view('<i2')).view(torch.bfloat16))
//     The half type is h5py's: a copy of F32LE with fields (sign 15, exponent 10+5 bits, mantissa
//     0+10 bits), size 2, exponent bias 15.
//   * Datasets are in state-dict order: the file tracks link creation order (file creation
//     property H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED). Files that do not track it (h5py's
//     default; h5py.File(path, "w", track_order=True) does) are read in name order.
//   * File attributes (optional, root group): variable-length UTF-8 string scalars, e.g.
//     format = "unirep-state-dict", version = "1", model = "a". Strings as h5py writes them.
//   * Written with HDF5 1.8 format structures (libver bounds v18..v18: metadata carries checksums;
//     any HDF5 >= 1.8 reads it) and no object timestamps, so equal contents give equal bytes.
//
// Reading maps HDF5 types back to tensors: a float of size 4/8/2 -> float32/float64/float16 (a
// 2-byte float with an 8-bit exponent -> bfloat16); integers: uint8 -> uint8, int32 -> int32, int64
// -> int64, int8/int16/uint16 -> int32 (widened), uint32 -> int64, uint64 -> int64 (values above
// INT64_MAX are an error); uint16 with unirep_dtype = "bfloat16" -> bfloat16. Other types (strings,
// compounds, enums/bools, arrays) and null dataspaces are an error naming the dataset. Any layout and
// filter the HDF5 build decodes is read (h5py's compression="gzip" included). Tensors come back on
// the CPU, contiguous.
//
// Writing is atomic: the file is written to `path.tmp.<pid>.<n>` (n counts calls), flushed, closed
// and fsync'ed, then renamed over `path`, and the directory is fsync'ed. On any error the temp file
// is removed and an existing `path` is left as it was. All errors are unirep::Error naming the file (and the dataset
// or attribute); the HDF5 library never prints its error stack. Calls are serialised by a mutex
// (HDF5 builds need not be thread-safe) and may come from any thread.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace unirep {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (any device, any strides; copied to the host as needed) in order, plus the
// string `attributes` on the root group. Replaces `path` atomically.
void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& attributes = {});

// Every dataset at the root, in creation order when the file tracks it, else by name; CPU tensors.
NamedTensors load_tensors(const std::string& path);

// The root group's attributes: strings as they are, numeric scalars in decimal (h5py users may
// write `f.attrs['version'] = 1`); array and other attributes are skipped.
std::map<std::string, std::string> load_attributes(const std::string& path);

// True when `path` is a regular file that HDF5 opens (a quick check before resuming from it);
// never throws.
bool hdf5_file_exists_and_valid(const std::string& path);

}  // namespace unirep
