// Sharded HDF5 datasets (format: datasets/shards.h): the manifest, checksums and ShardWriter.
// The writer buffers one shard in memory and writes it with a handful of HDF5 calls (one H5Dwrite
// per dataset, all contiguous) to a temp file; finish() renames the shards and writes the manifest last.
#include "datasets/shards.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <hdf5.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "datasets/shards_internal.h"

namespace unirep {

static_assert(std::endian::native == std::endian::little, "shards store the host's bytes as little-endian types");

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using namespace shards;

const char* kind_name(DatasetKind kind) {
  switch (kind) {
    case DatasetKind::Classification: return "classification";
    case DatasetKind::Detection: return "detection";
    case DatasetKind::Segmentation: return "segmentation";
  }
  return "?";
}

DatasetKind parse_kind(const std::string& name) {
  if (name == "classification") return DatasetKind::Classification;
  if (name == "detection") return DatasetKind::Detection;
  if (name == "segmentation") return DatasetKind::Segmentation;
  throw Error("unknown dataset kind '" + name + "' (expected classification, detection or segmentation)");
}

std::string shard_file_name(const std::string& split, int64_t shard) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%05lld.h5", static_cast<long long>(shard));
  return split + buf;
}

uint32_t file_crc32(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  UNIREP_CHECK(fd >= 0, "crc32: cannot open '", path, "': ", std::strerror(errno));
  std::vector<unsigned char> buf(size_t(4) << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw Error(detail::concat("crc32: cannot read '", path, "': ", std::strerror(err)));
    }
    if (n == 0) break;
    crc = crc32_z(crc, buf.data(), size_t(n));
  }
  ::close(fd);
  return uint32_t(crc);
}

// ---- manifest

namespace {
// Objects one key per line; arrays of scalars on one line; arrays of objects one element per line.
std::string pretty_json(const json& j, int indent) {
  const std::string pad(size_t(indent) + 1, ' '), close(size_t(indent), ' ');
  if (j.is_object() && !j.empty()) {
    std::string out = "{\n";
    size_t i = 0;
    for (auto it = j.begin(); it != j.end(); ++it, ++i) {
      out += pad + json(it.key()).dump() + ": " + pretty_json(it.value(), indent + 1) + (i + 1 < j.size() ? ",\n" : "\n");
    }
    return out + close + "}";
  }
  if (j.is_array() && !j.empty() && j.front().is_object()) {
    std::string out = "[\n";
    for (size_t i = 0; i < j.size(); ++i) out += pad + j[i].dump() + (i + 1 < j.size() ? ",\n" : "\n");
    return out + close + "]";
  }
  return j.dump();
}
}  // namespace

std::string Manifest::to_json() const {
  json j;
  j["format"] = kFormat;
  j["version"] = kShardFormatVersion;
  j["kind"] = kind_name(kind);
  j["image_encoding"] = encoded ? "encoded" : "raw";
  if (!encoded) j["image_shape"] = {{"height", height}, {"width", width}, {"channels", channels}};
  j["classes"] = classes;
  if (!source.empty()) j["source"] = source;
  json sp = json::object();
  for (const auto& [name, s] : splits) {
    json shards_j = json::array();
    for (const ShardInfo& sh : s.shards) {
      shards_j.push_back({{"file", sh.file}, {"count", sh.count}, {"bytes", sh.bytes}, {"crc32", sh.crc32}});
    }
    sp[name] = {{"count", s.count}, {"class_counts", s.class_counts}, {"shards", shards_j}};
  }
  j["splits"] = sp;
  return pretty_json(j, 0) + "\n";
}

namespace {

// Typed access with messages naming the key path.
struct JsonReader {
  std::string where;
  [[noreturn]] void fail(const std::string& what) const { throw Error("dataset manifest '" + where + "': " + what); }
  const json& at(const json& obj, const std::string& key, const std::string& path) const {
    if (!obj.is_object()) fail("'" + path + "' should be an object");
    auto it = obj.find(key);
    if (it == obj.end()) fail("missing key '" + (path.empty() ? key : path + "." + key) + "'");
    return *it;
  }
  std::string str(const json& obj, const std::string& key, const std::string& path) const {
    const json& v = at(obj, key, path);
    if (!v.is_string()) fail("key '" + join(path, key) + "' should be a string, got " + v.dump());
    return v.get<std::string>();
  }
  int64_t integer(const json& obj, const std::string& key, const std::string& path, int64_t min_value = 0) const {
    const json& v = at(obj, key, path);
    if (!v.is_number_integer()) fail("key '" + join(path, key) + "' should be an integer, got " + v.dump());
    int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX) ? -1 : v.get<int64_t>();
    if (x < min_value) fail("key '" + join(path, key) + "' should be >= " + std::to_string(min_value) + ", got " + v.dump());
    return x;
  }
  static std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }
};

}  // namespace

Manifest Manifest::from_json(const std::string& text, const std::string& where) {
  JsonReader r{where};
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    r.fail(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) r.fail("the top level should be an object");
  const std::string format = r.str(j, "format", "");
  if (format != kFormat) r.fail("format is '" + format + "', expected '" + kFormat + "'");
  const int64_t version = r.integer(j, "version", "", INT64_MIN);
  if (version != kShardFormatVersion) {
    r.fail("unsupported format version " + std::to_string(version) + " (this build reads version " +
           std::to_string(kShardFormatVersion) + ")");
  }
  Manifest m;
  try {
    m.kind = parse_kind(r.str(j, "kind", ""));
  } catch (const Error& e) {
    r.fail(e.what());
  }
  const std::string enc = r.str(j, "image_encoding", "");
  if (enc != "raw" && enc != "encoded") r.fail("image_encoding is '" + enc + "', expected 'raw' or 'encoded'");
  m.encoded = enc == "encoded";
  if (!m.encoded) {
    const json& shape = r.at(j, "image_shape", "");
    m.height = r.integer(shape, "height", "image_shape", 1);
    m.width = r.integer(shape, "width", "image_shape", 1);
    m.channels = r.integer(shape, "channels", "image_shape", 1);
  }
  const json& classes = r.at(j, "classes", "");
  if (!classes.is_array()) r.fail("key 'classes' should be an array of strings");
  for (const json& c : classes) {
    if (!c.is_string()) r.fail("key 'classes' should be an array of strings, has " + c.dump());
    m.classes.push_back(c.get<std::string>());
  }
  if (j.contains("source") && j["source"].is_string()) m.source = j["source"].get<std::string>();
  const json& splits = r.at(j, "splits", "");
  if (!splits.is_object()) r.fail("key 'splits' should be an object");
  for (auto it = splits.begin(); it != splits.end(); ++it) {
    const std::string sp = "splits." + it.key();
    SplitInfo s;
    s.count = r.integer(it.value(), "count", sp);
    const json& cc = r.at(it.value(), "class_counts", sp);
    if (!cc.is_array() || cc.size() != m.classes.size()) {
      r.fail("key '" + sp + ".class_counts' should be an array of " + std::to_string(m.classes.size()) + " integers");
    }
    for (const json& c : cc) {
      if (!c.is_number_integer()) r.fail("key '" + sp + ".class_counts' holds " + c.dump());
      s.class_counts.push_back(c.get<int64_t>());
    }
    const json& shards_j = r.at(it.value(), "shards", sp);
    if (!shards_j.is_array()) r.fail("key '" + sp + ".shards' should be an array");
    int64_t total = 0;
    for (size_t i = 0; i < shards_j.size(); ++i) {
      const std::string p = sp + ".shards[" + std::to_string(i) + "]";
      ShardInfo sh;
      sh.file = r.str(shards_j[i], "file", p);
      if (sh.file.empty() || sh.file.find('/') != std::string::npos) r.fail("key '" + p + ".file' is not a plain file name");
      sh.count = r.integer(shards_j[i], "count", p);
      sh.bytes = r.integer(shards_j[i], "bytes", p);
      const int64_t crc = r.integer(shards_j[i], "crc32", p);
      if (crc > int64_t(UINT32_MAX)) r.fail("key '" + p + ".crc32' does not fit 32 bits");
      sh.crc32 = uint32_t(crc);
      total += sh.count;
      s.shards.push_back(std::move(sh));
    }
    if (total != s.count) {
      r.fail("split '" + it.key() + "' has count " + std::to_string(s.count) + " but its shards hold " +
             std::to_string(total));
    }
    m.splits.emplace(it.key(), std::move(s));
  }
  return m;
}

Manifest Manifest::load(const std::string& dir) {
  std::error_code ec;
  UNIREP_CHECK(fs::is_directory(dir, ec), "dataset folder '", dir, "' does not exist");
  const std::string path = (fs::path(dir) / kManifest).string();
  UNIREP_CHECK(fs::exists(path, ec), "dataset folder '", dir, "' has no ", kManifest,
               " (not a dataset, or an unfinished conversion: the manifest is written last)");
  std::ifstream in(path, std::ios::binary);
  UNIREP_CHECK(in, "dataset manifest '", path, "': cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json(ss.str(), path);
}

// ---- writer

struct ShardWriter::Shard {
  int64_t number = 0, first = 0, target = 0, n = 0;
  std::vector<uint8_t> raw;
  std::vector<std::vector<uint8_t>> blobs;
  std::vector<int32_t> shapes;
  std::vector<int64_t> labels;
  std::vector<int64_t> image_ids;
  std::vector<std::string> names;
  bool any_id = false, any_name = false;
  std::vector<int64_t> object_offset{0};
  std::vector<float> boxes, area;
  std::vector<int64_t> obj_labels;
  std::vector<uint8_t> iscrowd, mask_type;
  std::vector<int64_t> polygon_offset{0}, polygon_coord_offset{0};
  std::vector<float> polygon_coords;
  std::vector<int64_t> rle_offset{0};
  std::vector<uint32_t> rle_counts;
  std::vector<int64_t> rle_size;
  std::vector<std::vector<uint8_t>> label_pngs;
};

ShardWriter::ShardWriter(std::string dir, DatasetSpec spec, bool overwrite) : dir_(std::move(dir)), spec_(std::move(spec)) {
  const std::string who = "ShardWriter: dataset folder '" + dir_ + "': ";
  UNIREP_CHECK(!dir_.empty(), "ShardWriter: empty dataset folder name");
  UNIREP_CHECK(!spec_.classes.empty(), who, "no class names");
  if (!spec_.encoded) {
    UNIREP_CHECK(spec_.height > 0 && spec_.width > 0 && spec_.channels > 0, who,
                 "raw images need a positive height, width and channels, got ", spec_.height, "x", spec_.width, "x",
                 spec_.channels);
  }
  std::error_code ec;
  fs::create_directories(dir_, ec);
  UNIREP_CHECK(fs::is_directory(dir_), who, "cannot be created: ", ec.message());
  const fs::path manifest = fs::path(dir_) / kManifest;
  if (fs::exists(manifest)) {
    UNIREP_CHECK(overwrite, who, "already holds a dataset (", kManifest, "); remove it or pass --overwrite");
    fs::remove(manifest);  // first: from here on the folder no longer looks complete
    static const std::regex shard_name(R"(.+-[0-9]{5}\.h5)");
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.is_regular_file() && std::regex_match(e.path().filename().string(), shard_name)) fs::remove(e.path());
    }
  }
  manifest_.kind = spec_.kind;
  manifest_.encoded = spec_.encoded;
  if (!spec_.encoded) {
    manifest_.height = spec_.height;
    manifest_.width = spec_.width;
    manifest_.channels = spec_.channels;
  }
  manifest_.classes = spec_.classes;
  manifest_.source = spec_.source;
}

ShardWriter::~ShardWriter() {
  if (finished_) return;
  for (const auto& [tmp, final_path] : temps_) ::unlink(tmp.c_str());
}

int64_t ShardWriter::records_in_split() const { return added_; }

void ShardWriter::check_open_split(const char* op) const {
  UNIREP_CHECK(!finished_, "ShardWriter::", op, ": dataset '", dir_, "' is already finished");
  UNIREP_CHECK(in_split_, "ShardWriter::", op, ": dataset '", dir_, "': no split begun (call begin_split first)");
}

void ShardWriter::begin_split(const std::string& split, int64_t expected_records, int64_t num_shards) {
  UNIREP_CHECK(!finished_, "ShardWriter::begin_split: dataset '", dir_, "' is already finished");
  UNIREP_CHECK(!in_split_, "ShardWriter::begin_split: split '", split_, "' is still open (call end_split)");
  static const std::regex split_name(R"([A-Za-z0-9_]+)");
  UNIREP_CHECK(std::regex_match(split, split_name), "ShardWriter::begin_split: split name '", split,
               "' should be letters, digits and '_'");
  UNIREP_CHECK(!manifest_.splits.count(split), "ShardWriter::begin_split: split '", split, "' was written already");
  UNIREP_CHECK(expected_records >= 0 && num_shards >= 1, "ShardWriter::begin_split: split '", split,
               "': expected records must be >= 0 and shards >= 1, got ", expected_records, " and ", num_shards);
  split_ = split;
  in_split_ = true;
  expected_ = expected_records;
  num_shards_ = std::max<int64_t>(1, std::min(num_shards, expected_records));
  added_ = 0;
  SplitInfo info;
  info.class_counts.assign(spec_.classes.size(), 0);
  manifest_.splits[split] = info;
  shard_.reset();
}

void ShardWriter::prepare_add(const char* op, int64_t height, int64_t width, int64_t channels, size_t image_bytes,
                              bool encoded) {
  check_open_split(op);
  const std::string who = detail::concat("ShardWriter::", op, ": split '", split_, "' record ", added_, ": ");
  UNIREP_CHECK(added_ < expected_, who, "more records than the ", expected_, " expected by begin_split");
  UNIREP_CHECK(encoded == spec_.encoded, who, "the record's image is ", encoded ? "encoded" : "raw",
               " but the dataset stores ", spec_.encoded ? "encoded" : "raw", " images");
  if (spec_.encoded) {
    UNIREP_CHECK(image_bytes > 0, who, "empty image bytes");
    UNIREP_CHECK(height > 0 && width > 0 && channels >= 1 && channels <= 4 && height <= INT32_MAX && width <= INT32_MAX,
                 who, "bad image shape ", height, "x", width, "x", channels);
  } else {
    UNIREP_CHECK(height == spec_.height && width == spec_.width && channels == spec_.channels, who,
                 "raw image shape ", height, "x", width, "x", channels, " differs from the dataset's ", spec_.height,
                 "x", spec_.width, "x", spec_.channels);
    UNIREP_CHECK(int64_t(image_bytes) == height * width * channels, who, "raw image has ", image_bytes,
                 " bytes, expected ", height * width * channels);
  }
  if (!shard_) {
    shard_ = std::make_unique<Shard>();
    const auto& shards = manifest_.splits[split_].shards;
    shard_->number = int64_t(shards.size());
    shard_->first = added_;
    const int64_t s = shard_->number;
    shard_->target = (s + 1) * expected_ / num_shards_ - s * expected_ / num_shards_;  // earlier shards are full
  }
}

namespace {
template <class S> void append_image(S& s, bool encoded, const std::vector<uint8_t>& image, int64_t h, int64_t w,
                                     int64_t c) {
  if (encoded) {
    s.blobs.push_back(image);
    s.shapes.insert(s.shapes.end(), {int32_t(h), int32_t(w), int32_t(c)});
  } else {
    s.raw.insert(s.raw.end(), image.begin(), image.end());
  }
}
}  // namespace

void ShardWriter::add(const ClassificationRecord& r, const RecordMeta& meta) {
  UNIREP_CHECK(spec_.kind == DatasetKind::Classification, "ShardWriter::add: dataset '", dir_, "' is ",
               kind_name(spec_.kind), ", got a classification record");
  prepare_add("add", r.height, r.width, r.channels, r.image.size(), r.encoded);
  UNIREP_CHECK(r.label >= 0 && r.label < int64_t(spec_.classes.size()), "ShardWriter::add: split '", split_,
               "' record ", added_, ": label ", r.label, " out of range [0, ", spec_.classes.size(), ")");
  Shard& s = *shard_;
  append_image(s, spec_.encoded, r.image, r.height, r.width, r.channels);
  s.labels.push_back(r.label);
  s.image_ids.push_back(meta.image_id);
  s.names.push_back(meta.file_name);
  s.any_id |= meta.image_id >= 0;
  s.any_name |= !meta.file_name.empty();
  manifest_.splits[split_].class_counts[size_t(r.label)]++;
  ++s.n;
  ++added_;
  if (s.n == s.target) flush_shard();
}

void ShardWriter::add(const DetectionRecord& r) {
  UNIREP_CHECK(spec_.kind == DatasetKind::Detection, "ShardWriter::add: dataset '", dir_, "' is ",
               kind_name(spec_.kind), ", got a detection record");
  prepare_add("add", r.height, r.width, r.channels, r.image.size(), r.encoded);
  const std::string who = detail::concat("ShardWriter::add: split '", split_, "' record ", added_,
                                         r.file_name.empty() ? "" : " ('" + r.file_name + "')", ": ");
  const size_t k = r.labels.size();
  UNIREP_CHECK(r.boxes.size() == 4 * k && r.iscrowd.size() == k && (r.areas.empty() || r.areas.size() == k) &&
                   (r.masks.empty() || r.masks.size() == k),
               who, "inconsistent object arrays: ", k, " labels, ", r.boxes.size(), " box coordinates, ",
               r.iscrowd.size(), " crowd flags, ", r.areas.size(), " areas, ", r.masks.size(), " masks");
  for (size_t j = 0; j < k; ++j) {
    UNIREP_CHECK(r.labels[j] >= 0 && r.labels[j] < int64_t(spec_.classes.size()), who, "object ", j, ": label ",
                 r.labels[j], " out of range [0, ", spec_.classes.size(), ")");
    UNIREP_CHECK(r.iscrowd[j] <= 1, who, "object ", j, ": iscrowd ", int(r.iscrowd[j]), " is not 0 or 1");
    if (!r.masks.empty()) {
      const InstanceMask& m = r.masks[j];
      if (m.type == InstanceMask::Type::Polygons) {
        for (const auto& poly : m.polygons) {
          UNIREP_CHECK(poly.size() % 2 == 0, who, "object ", j, ": a polygon has an odd number of coordinates (",
                       poly.size(), ")");
        }
      } else if (m.type == InstanceMask::Type::RLE) {
        uint64_t sum = 0;
        for (uint32_t c : m.rle_counts) sum += c;
        UNIREP_CHECK(m.rle_height > 0 && m.rle_width > 0 && sum == uint64_t(m.rle_height * m.rle_width), who,
                     "object ", j, ": RLE counts sum to ", sum, " but its size is ", m.rle_height, "x", m.rle_width);
      }
    }
  }
  Shard& s = *shard_;
  append_image(s, spec_.encoded, r.image, r.height, r.width, r.channels);
  s.image_ids.push_back(r.image_id);
  s.names.push_back(r.file_name);
  s.any_id |= r.image_id >= 0;
  s.any_name |= !r.file_name.empty();
  auto& counts = manifest_.splits[split_].class_counts;
  for (size_t j = 0; j < k; ++j) {
    counts[size_t(r.labels[j])]++;
    s.boxes.insert(s.boxes.end(), r.boxes.begin() + 4 * j, r.boxes.begin() + 4 * j + 4);
    s.obj_labels.push_back(r.labels[j]);
    s.iscrowd.push_back(r.iscrowd[j]);
    s.area.push_back(r.areas.empty() ? 0.f : r.areas[j]);
    const InstanceMask none;
    const InstanceMask& m = r.masks.empty() ? none : r.masks[j];
    s.mask_type.push_back(uint8_t(m.type));
    if (m.type == InstanceMask::Type::Polygons) {
      for (const auto& poly : m.polygons) {
        s.polygon_coords.insert(s.polygon_coords.end(), poly.begin(), poly.end());
        s.polygon_coord_offset.push_back(int64_t(s.polygon_coords.size()));
      }
    }
    s.polygon_offset.push_back(int64_t(s.polygon_coord_offset.size()) - 1);
    if (m.type == InstanceMask::Type::RLE) {
      s.rle_counts.insert(s.rle_counts.end(), m.rle_counts.begin(), m.rle_counts.end());
      s.rle_size.insert(s.rle_size.end(), {m.rle_height, m.rle_width});
    } else {
      s.rle_size.insert(s.rle_size.end(), {0, 0});
    }
    s.rle_offset.push_back(int64_t(s.rle_counts.size()));
  }
  s.object_offset.push_back(int64_t(s.obj_labels.size()));
  ++s.n;
  ++added_;
  if (s.n == s.target) flush_shard();
}

void ShardWriter::add(const SegmentationRecord& r, const std::vector<int64_t>& classes_present) {
  UNIREP_CHECK(spec_.kind == DatasetKind::Segmentation, "ShardWriter::add: dataset '", dir_, "' is ",
               kind_name(spec_.kind), ", got a segmentation record");
  prepare_add("add", r.height, r.width, r.channels, r.image.size(), r.encoded);
  const std::string who = detail::concat("ShardWriter::add: split '", split_, "' record ", added_,
                                         r.file_name.empty() ? "" : " ('" + r.file_name + "')", ": ");
  UNIREP_CHECK(!r.label_png.empty(), who, "empty label PNG");
  auto& counts = manifest_.splits[split_].class_counts;
  for (int64_t c : classes_present) {
    UNIREP_CHECK(c >= 0 && c < int64_t(counts.size()), who, "class ", c, " out of range [0, ", counts.size(), ")");
  }
  for (int64_t c : classes_present) counts[size_t(c)]++;
  Shard& s = *shard_;
  append_image(s, spec_.encoded, r.image, r.height, r.width, r.channels);
  s.label_pngs.push_back(r.label_png);
  s.image_ids.push_back(r.image_id);
  s.names.push_back(r.file_name);
  s.any_id |= r.image_id >= 0;
  s.any_name |= !r.file_name.empty();
  ++s.n;
  ++added_;
  if (s.n == s.target) flush_shard();
}

namespace {

struct ShardFileWriter {
  hid_t file;
  hid_t lcpl, dcpl;
  std::string who;

  void write(const char* name, hid_t type, const std::vector<hsize_t>& dims, const void* data) {
    H5Id space(h5check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), who,
                       "cannot create the dataspace of '", name, "'"),
               H5Sclose);
    H5Id dset(h5check(H5Dcreate2(file, name, type, space, lcpl, dcpl, H5P_DEFAULT), who, "cannot create dataset '",
                      name, "'"),
              H5Dclose);
    hsize_t total = 1;
    for (hsize_t d : dims) total *= d;
    if (total > 0) {
      h5check(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), who, "cannot write dataset '", name, "'");
    }
    h5check(dset.close(), who, "cannot close dataset '", name, "'");
  }
  template <class T> void write_vec(const char* name, hid_t type, const std::vector<T>& v, hsize_t cols = 1) {
    write(name, type, cols == 1 ? std::vector<hsize_t>{v.size()} : std::vector<hsize_t>{v.size() / cols, cols},
          v.data());
  }
  void write_blobs(const char* name, const std::vector<std::vector<uint8_t>>& blobs) {
    H5Id vlen(h5check(H5Tvlen_create(H5T_NATIVE_UINT8), who, "cannot create a vlen type"), H5Tclose);
    std::vector<hvl_t> vl(blobs.size());
    for (size_t i = 0; i < blobs.size(); ++i) {
      vl[i].len = blobs[i].size();
      vl[i].p = const_cast<uint8_t*>(blobs[i].data());
    }
    write(name, vlen, {blobs.size()}, vl.data());
  }
  void write_strings(const char* name, const std::vector<std::string>& strings) {
    H5Id t(h5check(H5Tcopy(H5T_C_S1), who, "cannot copy a string type"), H5Tclose);
    h5check(H5Tset_size(t, H5T_VARIABLE), who, "cannot build a string type");
    h5check(H5Tset_cset(t, H5T_CSET_UTF8), who, "cannot build a string type");
    std::vector<const char*> p(strings.size());
    for (size_t i = 0; i < strings.size(); ++i) p[i] = strings[i].c_str();
    write(name, t, {strings.size()}, p.data());
  }
  void attribute(const char* name, const std::string& value) {
    H5Id t(h5check(H5Tcopy(H5T_C_S1), who, "cannot copy a string type"), H5Tclose);
    h5check(H5Tset_size(t, H5T_VARIABLE), who, "cannot build a string type");
    h5check(H5Tset_cset(t, H5T_CSET_UTF8), who, "cannot build a string type");
    H5Id space(h5check(H5Screate(H5S_SCALAR), who, "cannot create a scalar dataspace"), H5Sclose);
    H5Id attr(h5check(H5Acreate2(file, name, t, space, H5P_DEFAULT, H5P_DEFAULT), who, "cannot create attribute '",
                      name, "'"),
              H5Aclose);
    const char* p = value.c_str();
    h5check(H5Awrite(attr, t, &p), who, "cannot write attribute '", name, "'");
  }
};

}  // namespace

void ShardWriter::flush_shard() {
  if (!shard_ || shard_->n == 0) {
    shard_.reset();
    return;
  }
  Shard& s = *shard_;
  const std::string name = shard_file_name(split_, s.number);
  const std::string final_path = (fs::path(dir_) / name).string();
  const std::string tmp = temp_path_for(final_path);
  temps_.emplace_back(tmp, final_path);  // the destructor removes it if we never finish
  const std::string who = "ShardWriter: shard '" + tmp + "': ";
  const hsize_t n = hsize_t(s.n);
  {
    H5Scope scope;
    H5Id fapl(h5check(H5Pcreate(H5P_FILE_ACCESS), who, "cannot create a file access list"), H5Pclose);
    h5check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), who, "cannot set the format version");
    h5check(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), who, "cannot set the close degree");
    H5Id lcpl(h5check(H5Pcreate(H5P_LINK_CREATE), who, "cannot create a link creation list"), H5Pclose);
    h5check(H5Pset_char_encoding(lcpl, H5T_CSET_UTF8), who, "cannot set the name encoding");
    H5Id dcpl(h5check(H5Pcreate(H5P_DATASET_CREATE), who, "cannot create a dataset creation list"), H5Pclose);
    h5check(H5Pset_obj_track_times(dcpl, false), who, "cannot switch off timestamps");
    H5Id fcpl(h5check(H5Pcreate(H5P_FILE_CREATE), who, "cannot create a file creation list"), H5Pclose);
    h5check(H5Pset_obj_track_times(fcpl, false), who, "cannot switch off timestamps");  // the root group's
    H5Id file(h5check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl, fapl), who, "cannot create the file"), H5Fclose);
    ShardFileWriter w{file, lcpl, dcpl, who};
    w.attribute("format", kFormat);
    w.attribute("version", std::to_string(kShardFormatVersion));
    w.attribute("kind", kind_name(spec_.kind));
    w.attribute("split", split_);
    w.attribute("shard", std::to_string(s.number));
    w.attribute("first_index", std::to_string(s.first));
    w.attribute("count", std::to_string(s.n));
    if (spec_.encoded) {
      w.write_blobs(kImage, s.blobs);
      w.write_vec(kImageShape, H5T_STD_I32LE, s.shapes, 3);
    } else {
      w.write(kImage, H5T_STD_U8LE, {n, hsize_t(spec_.height), hsize_t(spec_.width), hsize_t(spec_.channels)},
              s.raw.data());
    }
    if (s.any_id) w.write_vec(kImageId, H5T_STD_I64LE, s.image_ids);
    if (s.any_name) w.write_strings(kFileName, s.names);
    switch (spec_.kind) {
      case DatasetKind::Classification: w.write_vec(kLabel, H5T_STD_I64LE, s.labels); break;
      case DatasetKind::Detection: {
        w.write_vec(kObjectOffset, H5T_STD_I64LE, s.object_offset);
        w.write(kBoxes, H5T_IEEE_F32LE, {s.obj_labels.size(), 4}, s.boxes.data());
        w.write_vec(kLabels, H5T_STD_I64LE, s.obj_labels);
        w.write_vec(kIsCrowd, H5T_STD_U8LE, s.iscrowd);
        w.write_vec(kArea, H5T_IEEE_F32LE, s.area);
        w.write_vec(kMaskType, H5T_STD_U8LE, s.mask_type);
        w.write_vec(kPolygonOffset, H5T_STD_I64LE, s.polygon_offset);
        w.write_vec(kPolygonCoordOffset, H5T_STD_I64LE, s.polygon_coord_offset);
        w.write_vec(kPolygonCoords, H5T_IEEE_F32LE, s.polygon_coords);
        w.write_vec(kRleOffset, H5T_STD_I64LE, s.rle_offset);
        w.write_vec(kRleCounts, H5T_STD_U32LE, s.rle_counts);
        w.write(kRleSize, H5T_STD_I64LE, {s.obj_labels.size(), 2}, s.rle_size.data());
        break;
      }
      case DatasetKind::Segmentation: w.write_blobs(kLabelPng, s.label_pngs); break;
    }
    h5check(H5Fflush(file, H5F_SCOPE_GLOBAL), who, "cannot flush");
    h5check(file.close(), who, "cannot close");
  }
  fsync_path(tmp, false, who);
  ShardInfo info;
  info.file = name;
  info.count = s.n;
  info.bytes = int64_t(fs::file_size(tmp));
  info.crc32 = file_crc32(tmp);
  SplitInfo& split = manifest_.splits[split_];
  split.shards.push_back(info);
  split.count += s.n;
  shard_.reset();
}

void ShardWriter::end_split() {
  check_open_split("end_split");
  flush_shard();
  in_split_ = false;
}

Manifest ShardWriter::finish() {
  UNIREP_CHECK(!finished_, "ShardWriter::finish: dataset '", dir_, "' is already finished");
  UNIREP_CHECK(!in_split_, "ShardWriter::finish: split '", split_, "' is still open (call end_split)");
  UNIREP_CHECK(!manifest_.splits.empty(), "ShardWriter::finish: dataset '", dir_, "' has no split");
  const std::string who = "ShardWriter: dataset folder '" + dir_ + "': ";
  for (const auto& [tmp, final_path] : temps_) {
    UNIREP_CHECK(std::rename(tmp.c_str(), final_path.c_str()) == 0, who, "cannot rename '", tmp, "' to '",
                 final_path, "': ", std::strerror(errno));
  }
  temps_.clear();
  fsync_path(dir_, true, who);
  write_file_atomically((fs::path(dir_) / kManifest).string(), manifest_.to_json(), who);
  finished_ = true;
  return manifest_;
}

}  // namespace unirep
