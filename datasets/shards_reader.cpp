// ShardedDataset: the random-access reader of sharded HDF5 datasets (format and threading contract
// in datasets/shards.h).
//
// open() does all the HDF5 work once, under the HDF5 mutex: it opens each shard, reads the small
// per-record arrays into memory and resolves each payload dataset to file offsets. read() then
// copies bytes with pread() on a per-shard POSIX fd, so reader threads never meet in the HDF5 lock:
//   * fixed-type payloads (raw images, polygon coordinates, RLE counts): the dataset is contiguous,
//     so element e of it is at H5Dget_offset(dataset) + e * element size;
//   * variable-length payloads (encoded images, label PNGs): the dataset's raw data is one 16-byte
//     heap reference per record (sequence length u32, global heap collection address u64, object
//     index u32: HDF5 file format spec, "Variable-Length" datatype and "Global Heap"). open() reads
//     those references with one pread and walks each referenced collection's object headers once
//     ("GCOL" signature, then index u16, refcount u16, reserved u32, size u64, data padded to 8) to
//     find every record's object; read() is one pread of the object's header and data, checking
//     that the header still carries the expected index and size. Records whose collection does not
//     parse are read through HDF5 (which then reports the damage).
// Anything else (chunked or filtered datasets, other address sizes, a user block, a spot check at
// open that disagrees with the library) is read through HDF5 under the mutex: one hyperslab H5Dread.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <hdf5.h>

#include "datasets/shards.h"
#include "datasets/shards_internal.h"

namespace unirep {

namespace fs = std::filesystem;
using namespace shards;

namespace {

// Reads exactly n bytes at `offset`; a short read means the file ends early.
void pread_full(int fd, void* buf, size_t n, uint64_t offset, const std::string& who) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, p + done, n - done, off_t(offset + done));
    if (r < 0 && errno == EINTR) continue;
    UNIREP_CHECK(r >= 0, who, "read of ", n, " bytes at offset ", offset, " failed: ", std::strerror(errno));
    UNIREP_CHECK(r > 0, who, "the file ends before offset ", offset + n, " (truncated?)");
    done += size_t(r);
  }
}

// Reads up to n bytes; returns how many (fewer only at the end of the file).
size_t pread_some(int fd, void* buf, size_t n, uint64_t offset, const std::string& who) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, p + done, n - done, off_t(offset + done));
    if (r < 0 && errno == EINTR) continue;
    UNIREP_CHECK(r >= 0, who, "read of ", n, " bytes at offset ", offset, " failed: ", std::strerror(errno));
    if (r == 0) break;
    done += size_t(r);
  }
  return done;
}

uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24); }
uint64_t le64(const uint8_t* p) { return uint64_t(le32(p)) | (uint64_t(le32(p + 4)) << 32); }

constexpr uint64_t kHeapHeader = 16;    // "GCOL", version, 3 reserved, collection size (8)
constexpr uint64_t kObjectHeader = 16;  // index (2), reference count (2), reserved (4), size (8)

// One fixed-type dataset read by rows (dim 0) of `row_elems` elements.
struct Payload {
  bool present = false;
  H5Id dset, mtype, filespace;
  size_t elem_size = 0;
  int64_t rows = 0, row_elems = 1;
  std::vector<hsize_t> dims;
  int64_t file_offset = -1;  // >= 0: fast path
  bool fast() const { return file_offset >= 0 || rows * row_elems == 0; }
};

// One variable-length uint8 dataset [n].
struct VlenPayload {
  bool present = false;
  H5Id dset, mtype, filespace, memspace;
  int64_t rows = 0;
  bool fast = false;
  std::vector<uint64_t> offset;  // file offset of each record's heap object header (fast path)
  std::vector<uint32_t> index, len;
  int64_t slow_records = 0;      // records whose heap object was not found at open: read through HDF5
  static constexpr uint64_t kSlow = ~uint64_t(0);
  bool fast_for(size_t i) const { return fast && offset[i] != kSlow; }
};

struct Shard {
  std::string path;
  std::string prefix;  // "shard 'path' (records a..b): "
  int64_t first = 0, count = 0;
  std::string bad;     // non-empty: unusable (skip_corrupt), the reason
  int fd = -1;
  H5Id file;
  Payload raw_image, polygon_coords, rle_counts;
  VlenPayload image, label_png;
  H5Id file_name, string_type, name_filespace, name_memspace;
  std::vector<int32_t> shapes;
  std::vector<int64_t> labels, image_ids;
  std::vector<int64_t> object_offset, obj_labels, polygon_offset, polygon_coord_offset, rle_offset, rle_size;
  std::vector<float> boxes, area;
  std::vector<uint8_t> iscrowd, mask_type;
  std::unordered_map<int64_t, std::string> bad_records;  // local index -> reason
  ~Shard() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

struct ShardedDataset::Impl {
  std::string dir, split;
  Manifest manifest;
  bool skip = false;
  int64_t size = 0;
  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<int64_t> starts;  // first record of each shard
  bool fast_allowed = true;     // UNIREP_SHARDS_FAST_PATH=0 forces the HDF5 path (for measurements)
  mutable std::mutex log_mutex;
  mutable std::unordered_set<int64_t> skipped;

  ~Impl() {
    H5Scope scope;  // HDF5 ids close under the mutex
    shards.clear();
  }

  std::string where() const { return "ShardedDataset: dataset '" + dir + "' split '" + split + "': "; }

  void open(const std::string& dir_, const std::string& split_, bool verify, bool skip_corrupt);
  void open_shard(Shard& s, bool crc_checked);
  void resolve_payload(Shard& s, Payload& p, const char* name, hid_t mtype, bool required);
  void resolve_vlen(Shard& s, VlenPayload& p, const char* name, bool fast_allowed);
  template <class T> std::vector<T> preload(Shard& s, const char* name, hid_t mtype, std::vector<hsize_t>* dims);

  // Locates `index`; throws when out of range (always, even with skip_corrupt).
  std::pair<const Shard*, int64_t> locate(int64_t index) const {
    UNIREP_CHECK(index >= 0 && index < size, where(), "record index ", index, " out of range [0, ", size, ")");
    auto it = std::upper_bound(starts.begin(), starts.end(), index);
    const Shard* s = shards[size_t(it - starts.begin() - 1)].get();
    return {s, index - s->first};
  }
  std::string record_prefix(int64_t index, const Shard& s, int64_t local) const {
    return detail::concat(where(), "record ", index, " (shard '", s.path, "', local record ", local, "): ");
  }
  void note_skip(int64_t index, const std::string& message) const {
    std::lock_guard<std::mutex> lock(log_mutex);
    if (skipped.insert(index).second) std::fprintf(stderr, "[data] skipping a corrupt record: %s\n", message.c_str());
  }
  // Runs f() for record `index`; a failure becomes an Error with the record's context, or (when
  // allow_skip and skip_corrupt) a logged, counted skip returning nullopt.
  template <class R, class F> std::optional<R> guarded(int64_t index, bool allow_skip, F&& f) const {
    auto [s, local] = locate(index);
    std::string problem;
    if (!s->bad.empty()) {
      problem = s->bad;
    } else if (auto it = s->bad_records.find(local); it != s->bad_records.end()) {
      problem = it->second;
    } else {
      try {
        return f(*s, local);
      } catch (const std::exception& e) {
        problem = e.what();
      }
    }
    std::string message = record_prefix(index, *s, local) + problem;
    if (!(allow_skip && skip)) throw Error(message);
    note_skip(index, message);
    return std::nullopt;
  }

  std::vector<uint8_t> read_payload_rows(const Shard& s, const Payload& p, int64_t row, int64_t nrows) const;
  std::vector<uint8_t> read_vlen(const Shard& s, const VlenPayload& p, int64_t local) const;
  std::vector<uint8_t> read_vlen_fast(const Shard& s, const VlenPayload& p, int64_t local) const;
  std::vector<uint8_t> read_vlen_library(const Shard& s, const VlenPayload& p, int64_t local) const;
  std::string read_file_name(const Shard& s, int64_t local) const;
  void read_image(const Shard& s, int64_t local, std::vector<uint8_t>& image, int64_t& h, int64_t& w, int64_t& c,
                  bool& encoded) const;
  DetectionRecord read_detection_record(const Shard& s, int64_t local) const;
  SegmentationRecord read_segmentation_record(const Shard& s, int64_t local) const;
};

// ---- open

void ShardedDataset::Impl::open(const std::string& dir_, const std::string& split_, bool verify, bool skip_corrupt) {
  dir = dir_;
  split = split_;
  skip = skip_corrupt;
  const char* env = std::getenv("UNIREP_SHARDS_FAST_PATH");
  fast_allowed = !(env && std::string(env) == "0");
  manifest = Manifest::load(dir);
  auto it = manifest.splits.find(split);
  if (it == manifest.splits.end()) {
    std::string names;
    for (const auto& [name, info] : manifest.splits) names += (names.empty() ? "" : ", ") + name;
    throw Error(detail::concat("ShardedDataset: dataset '", dir, "' has no split '", split, "' (it has: ", names, ")"));
  }
  const SplitInfo& info = it->second;
  int64_t first = 0;
  for (const ShardInfo& si : info.shards) {
    auto s = std::make_unique<Shard>();
    s->path = (fs::path(dir) / si.file).string();
    s->first = first;
    s->count = si.count;
    s->prefix = detail::concat("shard '", s->path, "' (records ", first, "..", first + si.count - 1, "): ");
    starts.push_back(first);
    first += si.count;
    shards.push_back(std::move(s));
  }
  size = first;

  // Existence and size (cheap, always), then the checksums (every byte; threads over shards).
  std::vector<std::string> problems(shards.size());
  for (size_t i = 0; i < shards.size(); ++i) {
    const ShardInfo& si = info.shards[i];
    struct stat st;
    if (::stat(shards[i]->path.c_str(), &st) != 0) {
      problems[i] = "is missing";
    } else if (int64_t(st.st_size) != si.bytes) {
      problems[i] = detail::concat("has ", int64_t(st.st_size), " bytes, the manifest says ", si.bytes,
                                   " (truncated or replaced?)");
    }
  }
  if (verify) {
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next++) < shards.size();) {
        if (!problems[i].empty()) continue;
        try {
          const uint32_t crc = file_crc32(shards[i]->path);
          if (crc != info.shards[i].crc32) {
            problems[i] = detail::concat("checksum mismatch: crc32 ", crc, ", the manifest says ", info.shards[i].crc32,
                                         " (the file is corrupt or was modified)");
          }
        } catch (const std::exception& e) {
          problems[i] = e.what();
        }
      }
    };
    const size_t nthreads = std::min<size_t>(shards.size(), std::max(1u, std::min(8u, std::thread::hardware_concurrency())));
    std::vector<std::thread> pool;
    for (size_t t = 1; t < nthreads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
  }
  for (size_t i = 0; i < shards.size(); ++i) {
    Shard& s = *shards[i];
    try {
      UNIREP_CHECK(problems[i].empty(), problems[i]);
      open_shard(s, verify);
    } catch (const std::exception& e) {
      const std::string message = where() + s.prefix + e.what();
      if (!skip) throw Error(message);
      s.bad = e.what();
      s.file = H5Id();
      std::fprintf(stderr, "[data] skipping a corrupt shard: %s\n", message.c_str());
    }
  }
}

template <class T>
std::vector<T> ShardedDataset::Impl::preload(Shard& s, const char* name, hid_t mtype, std::vector<hsize_t>* dims) {
  H5Id dset(h5check(H5Dopen2(s.file, name, H5P_DEFAULT), "", "cannot open dataset '", name, "'"), H5Dclose);
  H5Id space(h5check(H5Dget_space(dset), "", "cannot read the dataspace of '", name, "'"), H5Sclose);
  const int rank = h5check(H5Sget_simple_extent_ndims(space), "", "cannot read the rank of '", name, "'");
  std::vector<hsize_t> d(size_t(std::max(rank, 0)));
  h5check(H5Sget_simple_extent_dims(space, d.data(), nullptr), "", "cannot read the shape of '", name, "'");
  hsize_t total = 1;
  for (hsize_t x : d) total *= x;
  UNIREP_CHECK(rank >= 1, "dataset '", name, "' should be an array, it is a scalar");
  std::vector<T> out(total);
  if (total > 0) h5check(H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), "", "cannot read dataset '", name, "'");
  *dims = d;
  return out;
}

namespace {

bool has_dataset(hid_t file, const char* name) {
  htri_t r = H5Lexists(file, name, H5P_DEFAULT);
  return r > 0;
}

std::string dims_str(const std::vector<hsize_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

void expect_dims(const char* name, const std::vector<hsize_t>& got, const std::vector<hsize_t>& want) {
  UNIREP_CHECK(got == want, "dataset '", name, "' has shape ", dims_str(got), ", expected ", dims_str(want));
}

// offsets: size `n`, starts at 0, non-decreasing, ends at `last`.
void expect_offsets(const char* name, const std::vector<int64_t>& v, size_t n, int64_t last) {
  UNIREP_CHECK(v.size() == n, "dataset '", name, "' has ", v.size(), " entries, expected ", n);
  UNIREP_CHECK(!v.empty() && v.front() == 0 && v.back() == last, "dataset '", name, "' should run from 0 to ", last,
               ", it runs from ", v.empty() ? -1 : v.front(), " to ", v.empty() ? -1 : v.back());
  for (size_t i = 1; i < v.size(); ++i) {
    UNIREP_CHECK(v[i] >= v[i - 1], "dataset '", name, "' decreases at entry ", i, " (", v[i - 1], " then ", v[i], ")");
  }
}

}  // namespace

void ShardedDataset::Impl::resolve_payload(Shard& s, Payload& p, const char* name, hid_t mtype, bool required) {
  if (!has_dataset(s.file, name)) {
    UNIREP_CHECK(!required, "dataset '", name, "' is missing");
    return;
  }
  p.present = true;
  p.dset = H5Id(h5check(H5Dopen2(s.file, name, H5P_DEFAULT), "", "cannot open dataset '", name, "'"), H5Dclose);
  p.mtype = H5Id(h5check(H5Tcopy(mtype), "", "cannot copy a type"), H5Tclose);
  p.elem_size = H5Tget_size(mtype);
  p.filespace = H5Id(h5check(H5Dget_space(p.dset), "", "cannot read the dataspace of '", name, "'"), H5Sclose);
  const int rank = h5check(H5Sget_simple_extent_ndims(p.filespace), "", "cannot read the rank of '", name, "'");
  UNIREP_CHECK(rank >= 1, "dataset '", name, "' should be an array, it is a scalar");
  p.dims.assign(size_t(rank), 0);
  h5check(H5Sget_simple_extent_dims(p.filespace, p.dims.data(), nullptr), "", "cannot read the shape of '", name, "'");
  p.rows = int64_t(p.dims[0]);
  p.row_elems = 1;
  for (size_t i = 1; i < p.dims.size(); ++i) p.row_elems *= int64_t(p.dims[i]);
  // Fast path: contiguous storage of exactly the memory type.
  H5Id dcpl(h5check(H5Dget_create_plist(p.dset), "", "cannot read the properties of '", name, "'"), H5Pclose);
  H5Id ftype(h5check(H5Dget_type(p.dset), "", "cannot read the type of '", name, "'"), H5Tclose);
  const int64_t nbytes = p.rows * p.row_elems * int64_t(p.elem_size);
  if (fast_allowed && H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_external_count(dcpl) == 0 &&
      H5Tequal(ftype, mtype) > 0 && nbytes > 0) {
    const haddr_t addr = H5Dget_offset(p.dset);
    if (addr != HADDR_UNDEF && int64_t(H5Dget_storage_size(p.dset)) == nbytes) p.file_offset = int64_t(addr);
  }
}

void ShardedDataset::Impl::resolve_vlen(Shard& s, VlenPayload& p, const char* name, bool fast_allowed) {
  p.present = true;
  p.dset = H5Id(h5check(H5Dopen2(s.file, name, H5P_DEFAULT), "", "cannot open dataset '", name, "'"), H5Dclose);
  H5Id ftype(h5check(H5Dget_type(p.dset), "", "cannot read the type of '", name, "'"), H5Tclose);
  bool byte_vlen = H5Tget_class(ftype) == H5T_VLEN;
  if (byte_vlen) {
    H5Id super(h5check(H5Tget_super(ftype), "", "cannot read the type of '", name, "'"), H5Tclose);
    byte_vlen = H5Tget_class(super) == H5T_INTEGER && H5Tget_size(super) == 1;
  }
  UNIREP_CHECK(byte_vlen, "dataset '", name, "' should hold variable-length uint8 sequences");
  p.mtype = H5Id(h5check(H5Tvlen_create(H5T_NATIVE_UINT8), "", "cannot create a vlen type"), H5Tclose);
  p.filespace = H5Id(h5check(H5Dget_space(p.dset), "", "cannot read the dataspace of '", name, "'"), H5Sclose);
  hsize_t one = 1;
  p.memspace = H5Id(h5check(H5Screate_simple(1, &one, nullptr), "", "cannot create a dataspace"), H5Sclose);
  const int rank = h5check(H5Sget_simple_extent_ndims(p.filespace), "", "cannot read the rank of '", name, "'");
  hsize_t n = 0;
  UNIREP_CHECK(rank == 1, "dataset '", name, "' should be 1-d, it has rank ", rank);
  h5check(H5Sget_simple_extent_dims(p.filespace, &n, nullptr), "", "cannot read the shape of '", name, "'");
  UNIREP_CHECK(int64_t(n) == s.count, "dataset '", name, "' has ", n, " records, the manifest says ", s.count);
  p.rows = int64_t(n);
  if (!fast_allowed || n == 0) return;
  // Fast path: contiguous heap references, 8-byte addresses and lengths, no user block.
  H5Id dcpl(h5check(H5Dget_create_plist(p.dset), "", "cannot read the properties of '", name, "'"), H5Pclose);
  if (H5Pget_layout(dcpl) != H5D_CONTIGUOUS || H5Pget_external_count(dcpl) != 0) return;
  const haddr_t base = H5Dget_offset(p.dset);
  if (base == HADDR_UNDEF || H5Dget_storage_size(p.dset) != n * 16) return;
  std::vector<uint8_t> refs(n * 16);
  pread_full(s.fd, refs.data(), refs.size(), base, "");
  std::vector<uint64_t> addr(n);
  p.offset.assign(n, 0);
  p.index.resize(n);
  p.len.resize(n);
  for (hsize_t i = 0; i < n; ++i) {
    const uint8_t* r = refs.data() + 16 * i;
    p.len[i] = le32(r);
    addr[i] = le64(r + 4);
    p.index[i] = le32(r + 12);
  }
  // Walk each collection's object headers once: (collection, object index) -> header offset. A
  // collection that does not parse leaves its records to the HDF5 path (which reports the damage).
  struct Collection {
    bool ok = true;
    std::unordered_map<uint32_t, uint64_t> objects;
  };
  std::unordered_map<uint64_t, Collection> collections;
  for (hsize_t i = 0; i < n; ++i) {
    if (p.len[i] == 0) continue;
    auto [it, inserted] = collections.try_emplace(addr[i]);
    Collection& c = it->second;
    if (inserted) {
      uint8_t header[kHeapHeader];
      const bool read = pread_some(s.fd, header, kHeapHeader, addr[i], "") == kHeapHeader;
      c.ok = read && std::memcmp(header, "GCOL", 4) == 0 && header[4] == 1;
      const uint64_t end = c.ok ? addr[i] + le64(header + 8) : 0;
      for (uint64_t pos = addr[i] + kHeapHeader; c.ok && pos + kObjectHeader <= end;) {
        uint8_t h[kObjectHeader];
        c.ok = pread_some(s.fd, h, kObjectHeader, pos, "") == kObjectHeader;
        const uint16_t idx = le16(h);
        const uint64_t size = le64(h + 8);
        if (!c.ok || idx == 0) break;  // object 0 is the free space, always last
        c.ok = pos + kObjectHeader + size <= end;
        c.objects[idx] = pos;
        pos += kObjectHeader + ((size + 7) & ~uint64_t(7));
      }
    }
    auto obj = c.objects.find(p.index[i]);
    if (!c.ok || obj == c.objects.end()) {
      p.offset[i] = VlenPayload::kSlow;
      ++p.slow_records;
    } else {
      p.offset[i] = obj->second;
    }
  }
  // Spot check against the library: first, middle and last record.
  p.fast = true;
  for (hsize_t i : {hsize_t(0), n / 2, n - 1}) {
    std::vector<uint8_t> lib;
    try {
      lib = read_vlen_library(s, p, int64_t(i));
    } catch (const std::exception&) {
      continue;  // a bad record: read() reports it
    }
    try {
      if (!p.fast_for(i) || read_vlen_fast(s, p, int64_t(i)) == lib) continue;
    } catch (const std::exception&) {
    }
    p.fast = false;
    break;
  }
}

void ShardedDataset::Impl::open_shard(Shard& s, bool /*crc_checked*/) {
  s.fd = ::open(s.path.c_str(), O_RDONLY | O_CLOEXEC);
  UNIREP_CHECK(s.fd >= 0, "cannot open: ", std::strerror(errno));
  H5Scope scope;
#if H5_VERSION_GE(1, 12, 0)
  htri_t is_hdf5 = H5Fis_accessible(s.path.c_str(), H5P_DEFAULT);
#else
  htri_t is_hdf5 = H5Fis_hdf5(s.path.c_str());
#endif
  UNIREP_CHECK(is_hdf5 > 0, "is not an HDF5 file (corrupt?)");
  s.file = H5Id(h5check(H5Fopen(s.path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "",
                        "cannot be opened as an HDF5 file (truncated or corrupt?)"),
                H5Fclose);
  // File-level conditions of the vlen fast path.
  H5Id fcpl(h5check(H5Fget_create_plist(s.file), "", "cannot read the file properties"), H5Pclose);
  size_t sizeof_addr = 0, sizeof_size = 0;
  hsize_t userblock = 0;
  h5check(H5Pget_sizes(fcpl, &sizeof_addr, &sizeof_size), "", "cannot read the file properties");
  h5check(H5Pget_userblock(fcpl, &userblock), "", "cannot read the file properties");
  const bool vlen_fast_ok = fast_allowed && sizeof_addr == 8 && sizeof_size == 8 && userblock == 0;

  const Manifest& m = manifest;
  const int64_t n = s.count;
  const hsize_t un = hsize_t(n);
  std::vector<hsize_t> dims;
  auto bad_record = [&](int64_t local, const std::string& why) {
    if (!skip) throw Error(detail::concat("local record ", local, " (record ", s.first + local, "): ", why));
    s.bad_records.emplace(local, why);
  };

  if (m.encoded) {
    resolve_vlen(s, s.image, kImage, vlen_fast_ok);
    s.shapes = preload<int32_t>(s, kImageShape, H5T_NATIVE_INT32, &dims);
    expect_dims(kImageShape, dims, {un, 3});
    for (int64_t i = 0; i < n; ++i) {
      const int32_t* sh = &s.shapes[size_t(3 * i)];
      if (sh[0] <= 0 || sh[1] <= 0 || sh[2] < 1 || sh[2] > 4) {
        bad_record(i, detail::concat("bad image shape ", sh[0], "x", sh[1], "x", sh[2]));
      }
    }
  } else {
    resolve_payload(s, s.raw_image, kImage, H5T_NATIVE_UINT8, true);
    expect_dims(kImage, s.raw_image.dims, {un, hsize_t(m.height), hsize_t(m.width), hsize_t(m.channels)});
  }
  if (has_dataset(s.file, kImageId)) {
    s.image_ids = preload<int64_t>(s, kImageId, H5T_NATIVE_INT64, &dims);
    expect_dims(kImageId, dims, {un});
  }
  if (has_dataset(s.file, kFileName)) {
    s.file_name = H5Id(h5check(H5Dopen2(s.file, kFileName, H5P_DEFAULT), "", "cannot open dataset 'file_name'"), H5Dclose);
    H5Id ftype(h5check(H5Dget_type(s.file_name), "", "cannot read the type of 'file_name'"), H5Tclose);
    UNIREP_CHECK(H5Tget_class(ftype) == H5T_STRING && H5Tis_variable_str(ftype) > 0,
                 "dataset 'file_name' should hold variable-length strings");
    s.string_type = H5Id(h5check(H5Tcopy(H5T_C_S1), "", "cannot copy a string type"), H5Tclose);
    h5check(H5Tset_size(s.string_type, H5T_VARIABLE), "", "cannot build a string type");
    h5check(H5Tset_cset(s.string_type, H5Tget_cset(ftype)), "", "cannot build a string type");
    s.name_filespace = H5Id(h5check(H5Dget_space(s.file_name), "", "cannot read a dataspace"), H5Sclose);
    hsize_t one = 1, got = 0;
    s.name_memspace = H5Id(h5check(H5Screate_simple(1, &one, nullptr), "", "cannot create a dataspace"), H5Sclose);
    h5check(H5Sget_simple_extent_dims(s.name_filespace, &got, nullptr), "", "cannot read the shape of 'file_name'");
    UNIREP_CHECK(got == un, "dataset 'file_name' has ", got, " records, the manifest says ", n);
  }
  const int64_t classes = int64_t(m.classes.size());
  switch (m.kind) {
    case DatasetKind::Classification: {
      s.labels = preload<int64_t>(s, kLabel, H5T_NATIVE_INT64, &dims);
      expect_dims(kLabel, dims, {un});
      for (int64_t i = 0; i < n; ++i) {
        if (s.labels[size_t(i)] < 0 || s.labels[size_t(i)] >= classes) {
          bad_record(i, detail::concat("label ", s.labels[size_t(i)], " out of range [0, ", classes, ")"));
        }
      }
      break;
    }
    case DatasetKind::Detection: {
      s.object_offset = preload<int64_t>(s, kObjectOffset, H5T_NATIVE_INT64, &dims);
      s.obj_labels = preload<int64_t>(s, kLabels, H5T_NATIVE_INT64, &dims);
      const hsize_t k = s.obj_labels.size();
      expect_offsets(kObjectOffset, s.object_offset, size_t(n + 1), int64_t(k));
      s.boxes = preload<float>(s, kBoxes, H5T_NATIVE_FLOAT, &dims);
      expect_dims(kBoxes, dims, {k, 4});
      s.iscrowd = preload<uint8_t>(s, kIsCrowd, H5T_NATIVE_UINT8, &dims);
      expect_dims(kIsCrowd, dims, {k});
      s.area = preload<float>(s, kArea, H5T_NATIVE_FLOAT, &dims);
      expect_dims(kArea, dims, {k});
      s.mask_type = preload<uint8_t>(s, kMaskType, H5T_NATIVE_UINT8, &dims);
      expect_dims(kMaskType, dims, {k});
      s.polygon_offset = preload<int64_t>(s, kPolygonOffset, H5T_NATIVE_INT64, &dims);
      s.polygon_coord_offset = preload<int64_t>(s, kPolygonCoordOffset, H5T_NATIVE_INT64, &dims);
      resolve_payload(s, s.polygon_coords, kPolygonCoords, H5T_NATIVE_FLOAT, true);
      UNIREP_CHECK(s.polygon_coords.dims.size() == 1, "dataset 'polygon_coords' should be 1-d");
      UNIREP_CHECK(!s.polygon_coord_offset.empty(), "dataset 'polygon_coord_offset' is empty");
      expect_offsets(kPolygonCoordOffset, s.polygon_coord_offset, s.polygon_coord_offset.size(), s.polygon_coords.rows);
      expect_offsets(kPolygonOffset, s.polygon_offset, size_t(k + 1), int64_t(s.polygon_coord_offset.size()) - 1);
      s.rle_offset = preload<int64_t>(s, kRleOffset, H5T_NATIVE_INT64, &dims);
      resolve_payload(s, s.rle_counts, kRleCounts, H5T_NATIVE_UINT32, true);
      UNIREP_CHECK(s.rle_counts.dims.size() == 1, "dataset 'rle_counts' should be 1-d");
      expect_offsets(kRleOffset, s.rle_offset, size_t(k + 1), s.rle_counts.rows);
      s.rle_size = preload<int64_t>(s, kRleSize, H5T_NATIVE_INT64, &dims);
      expect_dims(kRleSize, dims, {k, 2});
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = s.object_offset[size_t(i)]; j < s.object_offset[size_t(i + 1)]; ++j) {
          const size_t u = size_t(j);
          const int64_t npoly = s.polygon_offset[u + 1] - s.polygon_offset[u];
          const int64_t nrle = s.rle_offset[u + 1] - s.rle_offset[u];
          std::string why;
          if (s.obj_labels[u] < 0 || s.obj_labels[u] >= classes) {
            why = detail::concat("object ", j - s.object_offset[size_t(i)], ": label ", s.obj_labels[u],
                                 " out of range [0, ", classes, ")");
          } else if (s.mask_type[u] > 2 || (s.mask_type[u] != 1 && npoly != 0) || (s.mask_type[u] != 2 && nrle != 0) ||
                     (s.mask_type[u] == 2 && (s.rle_size[2 * u] <= 0 || s.rle_size[2 * u + 1] <= 0))) {
            why = detail::concat("object ", j - s.object_offset[size_t(i)], ": inconsistent mask (type ",
                                 int(s.mask_type[u]), ", ", npoly, " polygons, ", nrle, " RLE counts)");
          }
          if (!why.empty()) {
            bad_record(i, why);
            break;
          }
        }
      }
      break;
    }
    case DatasetKind::Segmentation: resolve_vlen(s, s.label_png, kLabelPng, vlen_fast_ok); break;
  }
}

// ---- reading

std::vector<uint8_t> ShardedDataset::Impl::read_payload_rows(const Shard& s, const Payload& p, int64_t row,
                                                             int64_t nrows) const {
  const size_t nbytes = size_t(nrows * p.row_elems) * p.elem_size;
  std::vector<uint8_t> out(nbytes);
  if (nbytes == 0) return out;
  if (p.file_offset >= 0) {
    pread_full(s.fd, out.data(), nbytes, uint64_t(p.file_offset) + uint64_t(row * p.row_elems) * p.elem_size, "");
    return out;
  }
  H5Scope scope;
  std::vector<hsize_t> start(p.dims.size(), 0), count = p.dims;
  start[0] = hsize_t(row);
  count[0] = hsize_t(nrows);
  h5check(H5Sselect_hyperslab(p.filespace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), "",
          "cannot select rows ", row, "..", row + nrows - 1);
  H5Id mem(h5check(H5Screate_simple(int(count.size()), count.data(), nullptr), "", "cannot create a dataspace"),
           H5Sclose);
  h5check(H5Dread(p.dset, p.mtype, mem, p.filespace, H5P_DEFAULT, out.data()), "", "cannot read rows ", row, "..",
          row + nrows - 1);
  return out;
}

std::vector<uint8_t> ShardedDataset::Impl::read_vlen_fast(const Shard& s, const VlenPayload& p, int64_t local) const {
  const size_t i = size_t(local);
  const uint64_t len = p.len[i], pos = p.offset[i], index = p.index[i];
  std::vector<uint8_t> out;
  if (len == 0) return out;
  // One preadv of the object's header and its data (straight into `out`); the header must still
  // say what open() found.
  uint8_t header[kObjectHeader];
  out.resize(size_t(len));
  iovec iov[2] = {{header, kObjectHeader}, {out.data(), size_t(len)}};
  const size_t want = kObjectHeader + size_t(len);
  size_t done = 0;
  while (done < want) {
    ssize_t r = ::preadv(s.fd, iov, 2, off_t(pos + done));
    if (r < 0 && errno == EINTR) continue;
    UNIREP_CHECK(r >= 0, "read of ", want, " bytes at offset ", pos, " failed: ", std::strerror(errno));
    UNIREP_CHECK(r > 0, "the file ends before offset ", pos + want, " (truncated?)");
    done += size_t(r);
    if (done < want) {  // a short read: finish with plain preads
      if (done < kObjectHeader) pread_full(s.fd, header + done, kObjectHeader - done, pos + done, "");
      const size_t data_done = done > kObjectHeader ? done - kObjectHeader : 0;
      pread_full(s.fd, out.data() + data_done, size_t(len) - data_done, pos + kObjectHeader + data_done, "");
      done = want;
    }
  }
  UNIREP_CHECK(le16(header) == index && le64(header + 8) == len, "global heap object ", index, " at offset ", pos,
               ": its header says object ", le16(header), " of ", le64(header + 8), " bytes, expected ", len,
               " bytes (corrupt shard?)");
  return out;
}

std::vector<uint8_t> ShardedDataset::Impl::read_vlen_library(const Shard& s, const VlenPayload& p, int64_t local) const {
  H5Scope scope;
  const hsize_t start = hsize_t(local), count = 1;
  h5check(H5Sselect_hyperslab(p.filespace, H5S_SELECT_SET, &start, nullptr, &count, nullptr), "",
          "cannot select a record");
  hvl_t v{0, nullptr};
  h5check(H5Dread(p.dset, p.mtype, p.memspace, p.filespace, H5P_DEFAULT, &v), "", "cannot read the record");
  std::vector<uint8_t> out(static_cast<const uint8_t*>(v.p), static_cast<const uint8_t*>(v.p) + v.len);
  H5Dvlen_reclaim(p.mtype, p.memspace, H5P_DEFAULT, &v);
  return out;
}

std::vector<uint8_t> ShardedDataset::Impl::read_vlen(const Shard& s, const VlenPayload& p, int64_t local) const {
  return p.fast_for(size_t(local)) ? read_vlen_fast(s, p, local) : read_vlen_library(s, p, local);
}

std::string ShardedDataset::Impl::read_file_name(const Shard& s, int64_t local) const {
  if (!s.file_name.valid()) return "";
  H5Scope scope;
  const hsize_t start = hsize_t(local), count = 1;
  h5check(H5Sselect_hyperslab(s.name_filespace, H5S_SELECT_SET, &start, nullptr, &count, nullptr), "",
          "cannot select a file name");
  char* p = nullptr;
  h5check(H5Dread(s.file_name, s.string_type, s.name_memspace, s.name_filespace, H5P_DEFAULT, &p), "",
          "cannot read the file name");
  std::string out = p ? p : "";
  H5Dvlen_reclaim(s.string_type, s.name_memspace, H5P_DEFAULT, &p);
  return out;
}

void ShardedDataset::Impl::read_image(const Shard& s, int64_t local, std::vector<uint8_t>& image, int64_t& h,
                                      int64_t& w, int64_t& c, bool& encoded) const {
  encoded = manifest.encoded;
  if (encoded) {
    image = read_vlen(s, s.image, local);
    const int32_t* sh = &s.shapes[size_t(3 * local)];
    h = sh[0];
    w = sh[1];
    c = sh[2];
    UNIREP_CHECK(!image.empty(), "empty image bytes");
  } else {
    image = read_payload_rows(s, s.raw_image, local, 1);
    h = manifest.height;
    w = manifest.width;
    c = manifest.channels;
  }
}

// ---- the public class

ShardedDataset::ShardedDataset() = default;
ShardedDataset::ShardedDataset(const std::string& dir, const std::string& split, bool verify_checksums,
                               bool skip_corrupt) {
  open(dir, split, verify_checksums, skip_corrupt);
}
ShardedDataset::~ShardedDataset() = default;
ShardedDataset::ShardedDataset(ShardedDataset&&) noexcept = default;
ShardedDataset& ShardedDataset::operator=(ShardedDataset&&) noexcept = default;

void ShardedDataset::open(const std::string& dir, const std::string& split, bool verify_checksums, bool skip_corrupt) {
  impl_.reset();
  auto impl = std::make_unique<Impl>();
  impl->open(dir, split, verify_checksums, skip_corrupt);
  impl_ = std::move(impl);
}

bool ShardedDataset::is_open() const { return impl_ != nullptr; }

#define UNIREP_OPEN_IMPL() \
  (impl_ ? *impl_ : throw Error("ShardedDataset: no dataset is open (call open(dir, split) first)"))

int64_t ShardedDataset::size() const { return UNIREP_OPEN_IMPL().size; }
const Manifest& ShardedDataset::manifest() const { return UNIREP_OPEN_IMPL().manifest; }
DatasetKind ShardedDataset::kind() const { return UNIREP_OPEN_IMPL().manifest.kind; }
bool ShardedDataset::encoded() const { return UNIREP_OPEN_IMPL().manifest.encoded; }
const std::vector<std::string>& ShardedDataset::class_names() const { return UNIREP_OPEN_IMPL().manifest.classes; }
int64_t ShardedDataset::num_classes() const { return int64_t(UNIREP_OPEN_IMPL().manifest.classes.size()); }
const std::string& ShardedDataset::dir() const { return UNIREP_OPEN_IMPL().dir; }
const std::string& ShardedDataset::split() const { return UNIREP_OPEN_IMPL().split; }
int64_t ShardedDataset::num_shards() const { return int64_t(UNIREP_OPEN_IMPL().shards.size()); }
bool ShardedDataset::skip_corrupt() const { return UNIREP_OPEN_IMPL().skip; }

std::string ShardedDataset::shard_problem(int64_t shard) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  UNIREP_CHECK(shard >= 0 && shard < int64_t(d.shards.size()), d.where(), "shard ", shard, " out of range [0, ",
               d.shards.size(), ")");
  return d.shards[size_t(shard)]->bad;
}

int64_t ShardedDataset::skipped() const {
  const Impl& d = UNIREP_OPEN_IMPL();
  std::lock_guard<std::mutex> lock(d.log_mutex);
  return int64_t(d.skipped.size());
}

namespace {
void expect_kind(const Manifest& m, DatasetKind want, const char* op, const std::string& where) {
  UNIREP_CHECK(m.kind == want, where, op, ": the dataset is ", kind_name(m.kind), ", not ", kind_name(want));
}
}  // namespace

std::optional<ClassificationRecord> ShardedDataset::try_read(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  expect_kind(d.manifest, DatasetKind::Classification, "read", d.where());
  return d.guarded<ClassificationRecord>(index, true, [&](const Shard& s, int64_t local) {
    ClassificationRecord r;
    d.read_image(s, local, r.image, r.height, r.width, r.channels, r.encoded);
    r.label = s.labels[size_t(local)];
    return r;
  });
}

ClassificationRecord ShardedDataset::read(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  expect_kind(d.manifest, DatasetKind::Classification, "read", d.where());
  return *d.guarded<ClassificationRecord>(index, false, [&](const Shard& s, int64_t local) {
    ClassificationRecord r;
    d.read_image(s, local, r.image, r.height, r.width, r.channels, r.encoded);
    r.label = s.labels[size_t(local)];
    return r;
  });
}

int64_t ShardedDataset::label(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  expect_kind(d.manifest, DatasetKind::Classification, "label", d.where());
  auto r = d.guarded<int64_t>(index, true, [&](const Shard& s, int64_t local) { return s.labels[size_t(local)]; });
  return r ? *r : -1;
}

std::optional<DetectionRecord> ShardedDataset::try_read_detection(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  expect_kind(d.manifest, DatasetKind::Detection, "read_detection", d.where());
  return d.guarded<DetectionRecord>(index, true,
                                    [&](const Shard& s, int64_t local) { return d.read_detection_record(s, local); });
}

DetectionRecord ShardedDataset::read_detection(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  expect_kind(d.manifest, DatasetKind::Detection, "read_detection", d.where());
  return *d.guarded<DetectionRecord>(index, false,
                                     [&](const Shard& s, int64_t local) { return d.read_detection_record(s, local); });
}

namespace {

template <class T> std::vector<T> as_vector(const std::vector<uint8_t>& bytes) {
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

}  // namespace

DetectionRecord ShardedDataset::Impl::read_detection_record(const Shard& s, int64_t local) const {
  const Impl& d = *this;
  DetectionRecord r;
  d.read_image(s, local, r.image, r.height, r.width, r.channels, r.encoded);
  r.image_id = s.image_ids.empty() ? -1 : s.image_ids[size_t(local)];
  r.file_name = d.read_file_name(s, local);
  const size_t a = size_t(s.object_offset[size_t(local)]), b = size_t(s.object_offset[size_t(local) + 1]);
  const size_t k = b - a;
  r.boxes.assign(s.boxes.begin() + 4 * a, s.boxes.begin() + 4 * b);
  r.labels.assign(s.obj_labels.begin() + a, s.obj_labels.begin() + b);
  r.iscrowd.assign(s.iscrowd.begin() + a, s.iscrowd.begin() + b);
  r.areas.assign(s.area.begin() + a, s.area.begin() + b);
  r.masks.resize(k);
  // One read of the record's polygon coordinates and one of its RLE counts.
  const int64_t p0 = s.polygon_offset[a], p1 = s.polygon_offset[b];
  const int64_t c0 = s.polygon_coord_offset[size_t(p0)], c1 = s.polygon_coord_offset[size_t(p1)];
  const std::vector<float> coords = as_vector<float>(d.read_payload_rows(s, s.polygon_coords, c0, c1 - c0));
  const int64_t r0 = s.rle_offset[a], r1 = s.rle_offset[b];
  const std::vector<uint32_t> counts = as_vector<uint32_t>(d.read_payload_rows(s, s.rle_counts, r0, r1 - r0));
  for (size_t j = 0; j < k; ++j) {
    const size_t u = a + j;
    InstanceMask& m = r.masks[j];
    m.type = InstanceMask::Type(s.mask_type[u]);
    for (int64_t p = s.polygon_offset[u]; p < s.polygon_offset[u + 1]; ++p) {
      const int64_t x0 = s.polygon_coord_offset[size_t(p)] - c0, x1 = s.polygon_coord_offset[size_t(p) + 1] - c0;
      m.polygons.emplace_back(coords.begin() + x0, coords.begin() + x1);
    }
    if (m.type == InstanceMask::Type::RLE) {
      m.rle_counts.assign(counts.begin() + (s.rle_offset[u] - r0), counts.begin() + (s.rle_offset[u + 1] - r0));
      m.rle_height = s.rle_size[2 * u];
      m.rle_width = s.rle_size[2 * u + 1];
      uint64_t sum = 0;
      for (uint32_t c : m.rle_counts) sum += c;
      UNIREP_CHECK(sum == uint64_t(m.rle_height * m.rle_width), "object ", j, ": RLE counts sum to ", sum,
                   ", its size is ", m.rle_height, "x", m.rle_width);
    }
  }
  return r;
}

SegmentationRecord ShardedDataset::Impl::read_segmentation_record(const Shard& s, int64_t local) const {
  const Impl& d = *this;
  SegmentationRecord r;
  d.read_image(s, local, r.image, r.height, r.width, r.channels, r.encoded);
  r.label_png = d.read_vlen(s, s.label_png, local);
  UNIREP_CHECK(!r.label_png.empty(), "empty label PNG");
  r.image_id = s.image_ids.empty() ? -1 : s.image_ids[size_t(local)];
  r.file_name = d.read_file_name(s, local);
  return r;
}

std::optional<SegmentationRecord> ShardedDataset::try_read_segmentation(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  expect_kind(d.manifest, DatasetKind::Segmentation, "read_segmentation", d.where());
  return d.guarded<SegmentationRecord>(
      index, true, [&](const Shard& s, int64_t local) { return d.read_segmentation_record(s, local); });
}

SegmentationRecord ShardedDataset::read_segmentation(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  expect_kind(d.manifest, DatasetKind::Segmentation, "read_segmentation", d.where());
  return *d.guarded<SegmentationRecord>(
      index, false, [&](const Shard& s, int64_t local) { return d.read_segmentation_record(s, local); });
}

int64_t ShardedDataset::image_id(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  auto [s, local] = d.locate(index);
  return s->image_ids.empty() ? -1 : s->image_ids[size_t(local)];
}

std::string ShardedDataset::file_name(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  auto r = d.guarded<std::string>(index, false, [&](const Shard& s, int64_t local) { return d.read_file_name(s, local); });
  return *r;
}

RecordLocation ShardedDataset::locate(int64_t index) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  auto [s, local] = d.locate(index);
  auto it = std::upper_bound(d.starts.begin(), d.starts.end(), index);
  return RecordLocation{int64_t(it - d.starts.begin() - 1), local, s->path};
}

void ShardedDataset::note_corrupt(int64_t index, const std::string& reason) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  auto [s, local] = d.locate(index);
  const std::string message = d.record_prefix(index, *s, local) + reason;
  if (!d.skip) throw Error(message);
  d.note_skip(index, message);
}

bool ShardedDataset::fast_path(const std::string& field) const {
  const Impl& d = UNIREP_OPEN_IMPL();
  bool any = false;
  for (const auto& sp : d.shards) {
    const Shard& s = *sp;
    if (!s.bad.empty()) continue;
    if (field == kImage) {
      if (d.manifest.encoded ? !(s.image.fast && s.image.slow_records == 0) : !s.raw_image.fast()) return false;
      any = true;
    } else if (field == kLabelPng && s.label_png.present) {
      if (!(s.label_png.fast && s.label_png.slow_records == 0)) return false;
      any = true;
    } else if (field == kPolygonCoords && s.polygon_coords.present) {
      if (!s.polygon_coords.fast()) return false;
      any = true;
    } else if (field == kRleCounts && s.rle_counts.present) {
      if (!s.rle_counts.fast()) return false;
      any = true;
    }
  }
  return any;
}

}  // namespace unirep
