// `unirep data inspect DIR [--verify]` (datasets/convert.h): the manifest summary, per-class counts
// of every split, and with --verify every shard's size and crc32 and every record read back.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "core/error.h"
#include "datasets/convert.h"
#include "datasets/convert_util.h"
#include "datasets/shards.h"

namespace unirep {

namespace fs = std::filesystem;

namespace {

std::string megabytes(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  return buf;
}

// Reads record i of `ds` as its kind says; for encoded images also parses the file's header and
// compares its shape with the stored one. Throws on any problem.
void check_record(const ShardedDataset& ds, int64_t i) {
  std::vector<uint8_t> image;
  int64_t h = 0, w = 0, c = 0;
  switch (ds.kind()) {
    case DatasetKind::Classification: {
      ClassificationRecord r = ds.read(i);
      image = std::move(r.image);
      h = r.height, w = r.width, c = r.channels;
      break;
    }
    case DatasetKind::Detection: {
      DetectionRecord r = ds.read_detection(i);
      image = std::move(r.image);
      h = r.height, w = r.width, c = r.channels;
      break;
    }
    case DatasetKind::Segmentation: {
      SegmentationRecord r = ds.read_segmentation(i);
      image = std::move(r.image);
      h = r.height, w = r.width, c = r.channels;
      int64_t lh = 0, lw = 0;
      // The label map's header only: decode_label_png would decode it all.
      convert::ImageInfo li = convert::probe_image(r.label_png, "label map", false);
      lh = li.height, lw = li.width;
      UNIREP_CHECK(lh == h && lw == w, "label map is ", lw, "x", lh, ", the image is ", w, "x", h);
      break;
    }
  }
  if (ds.encoded()) {
    const RecordLocation loc = ds.locate(i);
    std::ostringstream name;
    name << "record " << i << " of shard '" << loc.path << "'";
    const convert::ImageInfo info = convert::probe_image(image, name.str(), false);
    UNIREP_CHECK(info.height == h && info.width == w && info.channels == c, "the image's header says ", info.width, "x",
                 info.height, "x", info.channels, ", the shard says ", w, "x", h, "x", c);
  }
}

}  // namespace

int64_t inspect_dataset(const std::string& dir, bool verify, std::ostream& out) {
  const Manifest m = Manifest::load(dir);
  out << "dataset " << dir << ": unirep-shards v" << kShardFormatVersion << ", " << kind_name(m.kind) << ", ";
  if (m.encoded) {
    out << "encoded images (JPEG/PNG)";
  } else {
    out << "raw images " << m.height << "x" << m.width << "x" << m.channels;
  }
  out << ", " << m.classes.size() << " classes\n";
  if (!m.source.empty()) out << "source: " << m.source << "\n";
  std::vector<std::string> split_names;
  for (const auto& [name, s] : m.splits) {
    split_names.push_back(name);
    int64_t bytes = 0, lo = INT64_MAX, hi = 0;
    for (const ShardInfo& sh : s.shards) {
      bytes += sh.bytes;
      lo = std::min(lo, sh.count);
      hi = std::max(hi, sh.count);
    }
    out << "split " << name << ": " << s.count << " records in " << s.shards.size() << " shards";
    if (!s.shards.empty()) out << " (" << lo << (lo == hi ? "" : ".." + std::to_string(hi)) << " records each)";
    out << ", " << megabytes(bytes) << "\n";
  }
  const char* what = m.kind == DatasetKind::Classification ? "records"
                     : m.kind == DatasetKind::Detection    ? "object instances"
                                                           : "images containing the class";
  out << "per-class counts (" << what << "):\n";
  size_t name_width = 5;
  for (const std::string& c : m.classes) name_width = std::max(name_width, c.size());
  out << "  " << std::setw(5) << "label" << "  " << std::left << std::setw(int(name_width)) << "class" << std::right;
  for (const std::string& s : split_names) out << "  " << std::setw(10) << s;
  out << "\n";
  for (size_t c = 0; c < m.classes.size(); ++c) {
    out << "  " << std::setw(5) << c << "  " << std::left << std::setw(int(name_width)) << m.classes[c] << std::right;
    for (const std::string& s : split_names) out << "  " << std::setw(10) << m.splits.at(s).class_counts[c];
    out << "\n";
  }
  if (!verify) return 0;

  int64_t problems = 0, shards_checked = 0, records_checked = 0;
  constexpr int64_t kMaxListed = 20;
  for (const auto& [name, s] : m.splits) {
    int64_t split_problems = 0;
    auto report = [&](const std::string& message) {
      ++problems;
      if (split_problems++ < kMaxListed) out << "  problem: " << message << "\n";
    };
    std::vector<bool> shard_reported(s.shards.size(), false);
    for (size_t k = 0; k < s.shards.size(); ++k) {
      const ShardInfo& sh = s.shards[k];
      const std::string path = (fs::path(dir) / sh.file).string();
      ++shards_checked;
      std::error_code ec;
      const auto size = fs::file_size(path, ec);
      if (ec) {
        report("shard '" + path + "' is missing");
        shard_reported[k] = true;
      } else if (int64_t(size) != sh.bytes) {
        report(detail::concat("shard '", path, "' has ", size, " bytes, the manifest says ", sh.bytes, " (truncated?)"));
        shard_reported[k] = true;
      } else {
        const uint32_t crc = file_crc32(path);
        if (crc != sh.crc32) {
          report(detail::concat("shard '", path, "': checksum mismatch: crc32 ", crc, ", the manifest says ", sh.crc32));
        }
      }
    }
    ShardedDataset ds;
    try {
      ds.open(dir, name, false, /*skip_corrupt=*/true);
    } catch (const std::exception& e) {
      report(e.what());
      continue;
    }
    for (int64_t k = 0; k < ds.num_shards(); ++k) {
      const std::string problem = ds.shard_problem(k);
      if (!problem.empty() && !shard_reported[size_t(k)]) {
        report("shard '" + (fs::path(dir) / s.shards[size_t(k)].file).string() + "': " + problem);
      }
    }
    for (int64_t i = 0; i < ds.size(); ++i) {
      const RecordLocation loc = ds.locate(i);
      if (!ds.shard_problem(loc.shard).empty()) continue;  // reported once above
      ++records_checked;
      try {
        check_record(ds, i);
      } catch (const std::exception& e) {
        std::string message = e.what();
        if (message.find("record " + std::to_string(i)) == std::string::npos) {
          message = detail::concat("split '", name, "' record ", i, " (shard '", loc.path, "', local record ",
                                   loc.local, "): ", message);
        }
        report(message);
      }
    }
    if (split_problems > kMaxListed) out << "  ... and " << split_problems - kMaxListed << " more problems in split " << name << "\n";
  }
  if (problems == 0) {
    out << "verify: OK (" << shards_checked << " shards' sizes and checksums, " << records_checked << " records read)\n";
  } else {
    out << "verify: " << problems << " problems (" << shards_checked << " shards, " << records_checked
        << " records read)\n";
  }
  return problems;
}

}  // namespace unirep
