// HDF5 tensor files (format: layers/tensor_io.h). HDF5 C API only. Every library call goes through
// h5(): a negative return becomes a unirep::Error naming the file and object, with the innermost
// HDF5 error description; H5Scope (core/hdf5_util.h) switches the library's error printing off (and
// holds the process-wide HDF5 mutex) for the whole operation, so expected failures never reach stderr.
#include "layers/tensor_io.h"

#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>

#include <hdf5.h>

#include "core/hdf5_util.h"

namespace unirep {
namespace {

static_assert(std::endian::native == std::endian::little,
              "tensor_io writes the host's bytes as little-endian HDF5 types");

constexpr const char* kDtypeAttr = "unirep_dtype";

// Context of one save or load: the op name and the file, the prefix of every message.
struct Ctx {
  const char* op;
  const std::string& path;
  template <class... Args> std::string msg(const Args&... args) const {
    return detail::concat(op, ": tensor file '", path, "': ", args...);
  }
};

// Checks an HDF5 return value (negative = failure) and returns it.
template <class T, class... Args> T h5(T r, const Ctx& ctx, const Args&... what) {
  if (r < 0) throw Error(ctx.msg(what...) + hdf5_error_detail());
  return r;
}

H5Id make_id(hid_t id, H5Id::Closer closer, const Ctx& ctx, const std::string& what) {
  h5(id, ctx, what);
  return H5Id(id, closer);
}

// 2-byte IEEE-style floats built as h5py builds its half type: a copy of F32LE with new fields.
H5Id float16_type(const Ctx& ctx, int exponent_bits, int mantissa_bits, size_t bias) {
  H5Id t = make_id(H5Tcopy(H5T_IEEE_F32LE), H5Tclose, ctx, "cannot copy H5T_IEEE_F32LE");
  h5(H5Tset_fields(t, 15, size_t(mantissa_bits), size_t(exponent_bits), 0, size_t(mantissa_bits)), ctx,
     "cannot build a 16-bit float type");
  h5(H5Tset_size(t, 2), ctx, "cannot build a 16-bit float type");
  h5(H5Tset_ebias(t, bias), ctx, "cannot build a 16-bit float type");
  return t;
}
H5Id half_type(const Ctx& ctx) { return float16_type(ctx, 5, 10, 15); }
H5Id bfloat_type(const Ctx& ctx) { return float16_type(ctx, 8, 7, 127); }

H5Id copy_type(hid_t predefined, const Ctx& ctx) {
  return make_id(H5Tcopy(predefined), H5Tclose, ctx, "cannot copy a predefined HDF5 type");
}

// The HDF5 type a dtype is stored as (also the memory type: the host is little-endian).
H5Id storage_type(DType dtype, const Ctx& ctx) {
  switch (dtype) {
    case DType::Float32: return copy_type(H5T_IEEE_F32LE, ctx);
    case DType::Float64: return copy_type(H5T_IEEE_F64LE, ctx);
    case DType::Float16: return half_type(ctx);
    case DType::BFloat16: return copy_type(H5T_STD_U16LE, ctx);
    case DType::Int32: return copy_type(H5T_STD_I32LE, ctx);
    case DType::Int64: return copy_type(H5T_STD_I64LE, ctx);
    case DType::UInt8: return copy_type(H5T_STD_U8LE, ctx);
  }
  throw Error(ctx.msg("unknown dtype ", int(dtype)));
}

H5Id utf8_string_type(const Ctx& ctx) {
  H5Id t = copy_type(H5T_C_S1, ctx);
  h5(H5Tset_size(t, H5T_VARIABLE), ctx, "cannot build a string type");
  h5(H5Tset_cset(t, H5T_CSET_UTF8), ctx, "cannot build a string type");
  return t;
}

// A scalar variable-length UTF-8 string attribute, as h5py writes `obj.attrs[name] = "value"`.
void write_string_attribute(hid_t obj, const std::string& object, const std::string& name,
                            const std::string& value, const Ctx& ctx) {
  H5Id type = utf8_string_type(ctx);
  H5Id space = make_id(H5Screate(H5S_SCALAR), H5Sclose, ctx, "cannot create a scalar dataspace");
  H5Id attr(h5(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), ctx,
               "cannot create attribute '", name, "' on ", object),
            H5Aclose);
  const char* p = value.c_str();
  h5(H5Awrite(attr, type, &p), ctx, "cannot write attribute '", name, "' on ", object);
}

void write_tensor(hid_t file, hid_t lcpl, hid_t dcpl, const std::string& name, const Tensor& tensor,
                  const Ctx& ctx) {
  Tensor host = tensor.detach();
  if (host.is_cuda()) host = host.cpu();
  if (!host.is_contiguous()) host = host.contiguous();
  H5Id type = storage_type(host.dtype(), ctx);
  H5Id space;
  if (host.dim() == 0) {
    space = make_id(H5Screate(H5S_SCALAR), H5Sclose, ctx, "cannot create a scalar dataspace");
  } else {
    std::vector<hsize_t> dims(host.shape().begin(), host.shape().end());
    space = H5Id(h5(H5Screate_simple(int(dims.size()), dims.data(), nullptr), ctx,
                    "cannot create the dataspace ", shape_str(host.shape()), " of dataset '", name, "'"),
                 H5Sclose);
  }
  H5Id dset(h5(H5Dcreate2(file, name.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT), ctx,
               "cannot create dataset '", name, "' (", host.str(), ")"),
            H5Dclose);
  if (host.numel() > 0) {
    h5(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, host.data_ptr()), ctx, "cannot write dataset '",
       name, "' (", host.str(), ")");
  }
  if (host.dtype() == DType::BFloat16) {
    write_string_attribute(dset, "dataset '" + name + "'", kDtypeAttr, "bfloat16", ctx);
  }
  h5(dset.close(), ctx, "cannot close dataset '", name, "'");
}

void fsync_path(const std::string& path, bool directory, const Ctx& ctx) {
  ::unirep::fsync_path(path, directory, ctx.msg(""));
}

// ---- reading

// Opens `path` read-only after checking that it exists and is an HDF5 file.
H5Id open_for_reading(const Ctx& ctx) {
  std::error_code ec;
  auto status = std::filesystem::status(ctx.path, ec);
  if (!std::filesystem::exists(status)) {
    throw Error(detail::concat(ctx.op, ": tensor file '", ctx.path, "' does not exist"));
  }
  UNIREP_CHECK(!std::filesystem::is_directory(status),
               detail::concat(ctx.op, ": tensor file '", ctx.path, "' is a directory"));
#if H5_VERSION_GE(1, 12, 0)
  htri_t is_hdf5 = H5Fis_accessible(ctx.path.c_str(), H5P_DEFAULT);
#else
  htri_t is_hdf5 = H5Fis_hdf5(ctx.path.c_str());
#endif
  h5(is_hdf5, ctx, "cannot be read");
  UNIREP_CHECK(is_hdf5 > 0, detail::concat(ctx.op, ": tensor file '", ctx.path, "' is not an HDF5 file"));
  H5Id fapl = make_id(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, ctx, "cannot create a file access list");
  h5(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), ctx, "cannot set the close degree");
  return H5Id(h5(H5Fopen(ctx.path.c_str(), H5F_ACC_RDONLY, fapl), ctx,
                 "cannot be opened as an HDF5 file (truncated or corrupt?)"),
              H5Fclose);
}

const char* type_class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length sequence";
    case H5T_ARRAY: return "array";
    default: return "unknown";
  }
}

// A scalar attribute as a string: strings as they are, integers and floats in decimal. nullopt for
// anything else (arrays, compounds, ...).
std::optional<std::string> read_attribute(hid_t obj, const std::string& object, const std::string& name,
                                          const Ctx& ctx) {
  H5Id attr(h5(H5Aopen(obj, name.c_str(), H5P_DEFAULT), ctx, "cannot open attribute '", name, "' of ", object),
            H5Aclose);
  H5Id ftype(h5(H5Aget_type(attr), ctx, "cannot read the type of attribute '", name, "' of ", object), H5Tclose);
  H5Id space(h5(H5Aget_space(attr), ctx, "cannot read the dataspace of attribute '", name, "' of ", object),
             H5Sclose);
  if (h5(H5Sget_simple_extent_npoints(space), ctx, "cannot read attribute '", name, "'") != 1) return std::nullopt;
  auto cant_read = [&] { return detail::concat("cannot read attribute '", name, "' of ", object); };
  switch (H5Tget_class(ftype)) {
    case H5T_STRING: {
      if (h5(H5Tis_variable_str(ftype), ctx, cant_read()) > 0) {
        H5Id mtype = copy_type(H5T_C_S1, ctx);
        h5(H5Tset_size(mtype, H5T_VARIABLE), ctx, cant_read());
        h5(H5Tset_cset(mtype, H5Tget_cset(ftype)), ctx, cant_read());
        char* p = nullptr;
        h5(H5Aread(attr, mtype, &p), ctx, cant_read());
        std::string value = p ? p : "";
        H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, &p);
        return value;
      }
      size_t n = H5Tget_size(ftype);
      UNIREP_CHECK(n > 0, ctx.msg(cant_read()));
      std::string buf(n, '\0');
      H5Id mtype = make_id(H5Tcopy(ftype), H5Tclose, ctx, cant_read());
      h5(H5Aread(attr, mtype, buf.data()), ctx, cant_read());
      buf.resize(std::strlen(buf.c_str()));
      if (H5Tget_strpad(ftype) == H5T_STR_SPACEPAD) buf.erase(buf.find_last_not_of(' ') + 1);
      return buf;
    }
    case H5T_INTEGER: {
      if (H5Tget_sign(ftype) == H5T_SGN_NONE) {
        uint64_t v = 0;
        h5(H5Aread(attr, H5T_NATIVE_UINT64, &v), ctx, cant_read());
        return std::to_string(v);
      }
      int64_t v = 0;
      h5(H5Aread(attr, H5T_NATIVE_INT64, &v), ctx, cant_read());
      return std::to_string(v);
    }
    case H5T_FLOAT: {
      double v = 0;
      h5(H5Aread(attr, H5T_NATIVE_DOUBLE, &v), ctx, cant_read());
      char buf[64];
      auto res = std::to_chars(buf, buf + sizeof buf, v);
      return std::string(buf, res.ptr);
    }
    default: return std::nullopt;
  }
}

// A tensor from one dataset (see the type mapping in tensor_io.h).
Tensor read_tensor(hid_t dset, const std::string& name, const Ctx& ctx) {
  const std::string object = "dataset '" + name + "'";
  H5Id ftype(h5(H5Dget_type(dset), ctx, "cannot read the type of ", object), H5Tclose);
  H5Id space(h5(H5Dget_space(dset), ctx, "cannot read the dataspace of ", object), H5Sclose);
  H5S_class_t space_class = H5Sget_simple_extent_type(space);
  UNIREP_CHECK(space_class == H5S_SCALAR || space_class == H5S_SIMPLE,
               ctx.msg(object, " has a null dataspace (no shape); expected a scalar or an array"));
  Shape shape;
  if (space_class == H5S_SIMPLE) {
    int rank = h5(H5Sget_simple_extent_ndims(space), ctx, "cannot read the shape of ", object);
    std::vector<hsize_t> dims(size_t(rank), 0);
    h5(H5Sget_simple_extent_dims(space, dims.data(), nullptr), ctx, "cannot read the shape of ", object);
    for (hsize_t d : dims) {
      UNIREP_CHECK(d <= hsize_t(std::numeric_limits<int64_t>::max()), ctx.msg(object, " is too large"));
      shape.push_back(int64_t(d));
    }
  }
  std::string tag;
  if (h5(H5Aexists(dset, kDtypeAttr), ctx, "cannot read the attributes of ", object) > 0) {
    auto v = read_attribute(dset, object, kDtypeAttr, ctx);
    UNIREP_CHECK(v && *v == "bfloat16", ctx.msg(object, " has attribute ", kDtypeAttr, " = '", v.value_or("?"),
                                                "'; the only known value is 'bfloat16'"));
    tag = *v;
  }

  const H5T_class_t cls = H5Tget_class(ftype);
  const size_t size = H5Tget_size(ftype);
  auto unsupported = [&](const std::string& why) {
    return Error(ctx.msg(object, " has an unsupported type: ", type_class_name(cls), " of ", size, " bytes",
                         why.empty() ? "" : " (" + why + ")",
                         "; expected a float (2, 4 or 8 bytes) or an integer (1, 2, 4 or 8 bytes)"));
  };
  DType dtype = DType::Float32;
  H5Id mtype;
  bool from_uint64 = false;
  if (!tag.empty()) {  // bfloat16 bits in a 16-bit integer
    if (cls != H5T_INTEGER || size != 2) throw unsupported("unirep_dtype = bfloat16 needs a 16-bit integer");
    dtype = DType::BFloat16;
    mtype = copy_type(H5Tget_sign(ftype) == H5T_SGN_NONE ? H5T_STD_U16LE : H5T_STD_I16LE, ctx);
  } else if (cls == H5T_FLOAT) {
    if (size == 4) {
      dtype = DType::Float32;
      mtype = copy_type(H5T_IEEE_F32LE, ctx);
    } else if (size == 8) {
      dtype = DType::Float64;
      mtype = copy_type(H5T_IEEE_F64LE, ctx);
    } else if (size == 2) {
      size_t spos, epos, esize, mpos, msize;
      h5(H5Tget_fields(ftype, &spos, &epos, &esize, &mpos, &msize), ctx, "cannot read the type of ", object);
      dtype = esize == 8 ? DType::BFloat16 : DType::Float16;
      mtype = esize == 8 ? bfloat_type(ctx) : half_type(ctx);
    } else {
      throw unsupported("");
    }
  } else if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(ftype) != H5T_SGN_NONE;
    if (is_signed && size <= 4 && size != 3) {
      dtype = DType::Int32;  // int8 and int16 widen
      mtype = copy_type(H5T_STD_I32LE, ctx);
    } else if (is_signed && size == 8) {
      dtype = DType::Int64;
      mtype = copy_type(H5T_STD_I64LE, ctx);
    } else if (!is_signed && size == 1) {
      dtype = DType::UInt8;
      mtype = copy_type(H5T_STD_U8LE, ctx);
    } else if (!is_signed && size == 2) {
      dtype = DType::Int32;
      mtype = copy_type(H5T_STD_I32LE, ctx);
    } else if (!is_signed && size == 4) {
      dtype = DType::Int64;
      mtype = copy_type(H5T_STD_I64LE, ctx);
    } else if (!is_signed && size == 8) {
      dtype = DType::Int64;
      mtype = copy_type(H5T_STD_U64LE, ctx);  // read the bits, then check the range
      from_uint64 = true;
    } else {
      throw unsupported("");
    }
  } else {
    throw unsupported(cls == H5T_ENUM ? "h5py stores bool as an enum" : "");
  }

  Tensor t = Tensor::empty(shape, dtype);
  if (t.numel() > 0) {
    h5(H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()), ctx, "cannot read ", object, " (",
       t.str(), ")");
  }
  if (from_uint64) {
    const uint64_t* p = static_cast<const uint64_t*>(t.data_ptr());
    for (int64_t i = 0; i < t.numel(); ++i) {
      UNIREP_CHECK(p[i] <= uint64_t(std::numeric_limits<int64_t>::max()),
                   ctx.msg(object, " (uint64) holds ", p[i], " at flat index ", i, ", which does not fit int64"));
    }
  }
  return t;
}

herr_t collect_attribute_name(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

}  // namespace

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& attributes) {
  const Ctx ctx{"save_tensors", path};
  UNIREP_CHECK(!path.empty(), "save_tensors: empty file path");
  // Unique per call, so that concurrent saves of one path never write into each other's temp file.
  const std::string tmp = temp_path_for(path);
  try {
    {
      H5Scope scope;
      H5Id fcpl = make_id(H5Pcreate(H5P_FILE_CREATE), H5Pclose, ctx, "cannot create a file creation list");
      h5(H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), ctx,
         "cannot track link creation order");
      h5(H5Pset_obj_track_times(fcpl, false), ctx, "cannot switch off the root group's timestamps");
      H5Id fapl = make_id(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, ctx, "cannot create a file access list");
      h5(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), ctx, "cannot set the format version");
      h5(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), ctx, "cannot set the close degree");
      H5Id lcpl = make_id(H5Pcreate(H5P_LINK_CREATE), H5Pclose, ctx, "cannot create a link creation list");
      h5(H5Pset_char_encoding(lcpl, H5T_CSET_UTF8), ctx, "cannot set the name encoding");
      H5Id dcpl = make_id(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, ctx, "cannot create a dataset creation list");
      h5(H5Pset_obj_track_times(dcpl, false), ctx, "cannot switch off timestamps");

      H5Id file(h5(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl, fapl), ctx, "cannot create the temporary file '",
                   tmp, "'"),
                H5Fclose);
      for (const auto& [name, value] : attributes) {
        UNIREP_CHECK(!name.empty(), ctx.msg("a file attribute has an empty name"));
        write_string_attribute(file, "the file", name, value, ctx);
      }
      std::set<std::string> seen;
      for (size_t i = 0; i < tensors.size(); ++i) {
        const auto& [name, tensor] = tensors[i];
        UNIREP_CHECK(!name.empty(), ctx.msg("tensor #", i, " has an empty name"));
        UNIREP_CHECK(name.find('/') == std::string::npos,
                     ctx.msg("tensor name '", name,
                             "' contains '/'; names are dataset names at the file root (use dots)"));
        UNIREP_CHECK(name != ".", ctx.msg("tensor name '.' is not allowed"));
        UNIREP_CHECK(seen.insert(name).second, ctx.msg("tensor name '", name, "' appears twice"));
        UNIREP_CHECK(tensor.defined(), ctx.msg("tensor '", name, "' is undefined"));
        write_tensor(file, lcpl, dcpl, name, tensor, ctx);
      }
      h5(H5Fflush(file, H5F_SCOPE_GLOBAL), ctx, "cannot flush '", tmp, "'");
      h5(file.close(), ctx, "cannot close '", tmp, "'");
    }
    fsync_path(tmp, false, ctx);
    UNIREP_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0,
                 ctx.msg("cannot rename '", tmp, "' to it: ", std::strerror(errno)));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // The new file is in place; make the rename itself durable.
  fsync_path(parent_directory(path), true, ctx);
}

NamedTensors load_tensors(const std::string& path) {
  const Ctx ctx{"load_tensors", path};
  H5Scope scope;
  H5Id file = open_for_reading(ctx);
  H5Id root(h5(H5Gopen2(file, "/", H5P_DEFAULT), ctx, "cannot open the root group"), H5Gclose);
  H5Id gcpl(h5(H5Gget_create_plist(root), ctx, "cannot read the root group's properties"), H5Pclose);
  unsigned order_flags = 0;
  h5(H5Pget_link_creation_order(gcpl, &order_flags), ctx, "cannot read the root group's properties");
  const H5_index_t index = (order_flags & H5P_CRT_ORDER_TRACKED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
  H5G_info_t info;
  h5(H5Gget_info(root, &info), ctx, "cannot list the root group");

  NamedTensors out;
  out.reserve(info.nlinks);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t len = h5(H5Lget_name_by_idx(root, ".", index, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT), ctx,
                     "cannot read the name of link #", i);
    std::string name(size_t(len) + 1, '\0');
    h5(H5Lget_name_by_idx(root, ".", index, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT), ctx,
       "cannot read the name of link #", i);
    name.resize(size_t(len));
    H5L_info_t link;
    h5(H5Lget_info(root, name.c_str(), &link, H5P_DEFAULT), ctx, "cannot read link '", name, "'");
    if (link.type != H5L_TYPE_HARD) continue;  // soft and external links are not tensors
    H5Id obj(h5(H5Oopen(root, name.c_str(), H5P_DEFAULT), ctx, "cannot open object '", name, "'"), H5Oclose);
    if (H5Iget_type(obj) != H5I_DATASET) continue;  // groups, named datatypes
    out.emplace_back(name, read_tensor(obj, name, ctx));
  }
  return out;
}

std::map<std::string, std::string> load_attributes(const std::string& path) {
  const Ctx ctx{"load_attributes", path};
  H5Scope scope;
  H5Id file = open_for_reading(ctx);
  H5Id root(h5(H5Gopen2(file, "/", H5P_DEFAULT), ctx, "cannot open the root group"), H5Gclose);
  std::vector<std::string> names;
  hsize_t idx = 0;
  h5(H5Aiterate2(root, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attribute_name, &names), ctx,
     "cannot list the file attributes");
  std::map<std::string, std::string> out;
  for (const std::string& name : names) {
    if (auto v = read_attribute(root, "the file", name, ctx)) out.emplace(name, std::move(*v));
  }
  return out;
}

bool hdf5_file_exists_and_valid(const std::string& path) {
  try {
    const Ctx ctx{"hdf5_file_exists_and_valid", path};
    H5Scope scope;
    H5Id file = open_for_reading(ctx);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace unirep
