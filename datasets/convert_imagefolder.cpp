// ImageNet-style folders -> encoded classification shards (datasets/convert.h). Workers read and
// fully decode each file (to reject undecodable ones); the calling thread writes the bytes as they
// were, in (class, file name) order.
#include <chrono>
#include <filesystem>
#include <map>
#include <ostream>

#include "core/error.h"
#include "datasets/convert.h"
#include "datasets/convert_util.h"

namespace unirep {

namespace fs = std::filesystem;

namespace {

struct Item {
  std::string path, rel;
  int64_t label;
};

struct Loaded {
  std::vector<uint8_t> bytes;
  convert::ImageInfo info;
  std::string error;  // non-empty: skipped (skip_corrupt)
};

const std::vector<std::string> kImageExtensions = {".jpeg", ".jpg", ".png"};

}  // namespace

ConvertReport convert_imagefolder(const std::string& src, const std::string& dst, const ConvertOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::string train_dir = (fs::path(src) / "train").string();
  UNIREP_CHECK(convert::is_directory(train_dir), "imagefolder: '", src,
               "' has no train/ folder (expected SRC/train/<class>/*.JPEG and SRC/val/<class>/*.JPEG)");
  const std::vector<std::string> classes = convert::list_subfolders(train_dir);
  UNIREP_CHECK(!classes.empty(), "imagefolder: '", train_dir, "' has no class folders");
  std::map<std::string, int64_t> label_of;
  for (size_t c = 0; c < classes.size(); ++c) label_of[classes[c]] = int64_t(c);

  std::vector<std::pair<std::string, std::vector<Item>>> splits;
  for (const std::string split : {"train", "val"}) {
    const std::string dir = (fs::path(src) / split).string();
    if (!convert::is_directory(dir)) {
      if (options.log) *options.log << "[data] imagefolder: no " << split << "/ folder, split left out\n";
      continue;
    }
    std::vector<Item> items;
    for (const std::string& cls : convert::list_subfolders(dir)) {
      auto it = label_of.find(cls);
      UNIREP_CHECK(it != label_of.end(), "imagefolder: class folder '", (fs::path(dir) / cls).string(),
                   "' has no counterpart in train/ (labels come from the train folders)");
      for (const std::string& f : convert::list_files((fs::path(dir) / cls).string(), kImageExtensions)) {
        items.push_back({(fs::path(dir) / cls / f).string(), cls + "/" + f, it->second});
      }
    }
    splits.emplace_back(split, std::move(items));
  }
  int64_t largest = 0;
  uint64_t largest_bytes = 0;
  for (const auto& [split, items] : splits) {
    if (int64_t(items.size()) <= largest) continue;
    largest = int64_t(items.size());
    largest_bytes = 0;
    for (const Item& it : items) largest_bytes += fs::file_size(it.path);
  }
  const int64_t shards = convert::default_shards(options.shards, largest_bytes);
  const int workers = convert::resolve_workers(options.workers);

  DatasetSpec spec;
  spec.kind = DatasetKind::Classification;
  spec.encoded = true;
  spec.classes = classes;
  spec.source = "imagefolder " + src;
  ShardWriter writer(dst, spec, options.overwrite);
  ConvertReport report;
  for (const auto& [split, items] : splits) {
    UNIREP_CHECK(!items.empty(), "imagefolder: '", (fs::path(src) / split).string(), "' holds no .JPEG/.jpg/.png files");
    writer.begin_split(split, int64_t(items.size()), convert::shards_for_split(shards, int64_t(items.size()), largest));
    int64_t skipped = 0;
    convert::ordered_parallel<Loaded>(
        int64_t(items.size()), workers, 4 * workers,
        [&](int64_t i) {
          Loaded l;
          try {
            l.bytes = convert::read_file(items[size_t(i)].path);
            l.info = convert::probe_image(l.bytes, items[size_t(i)].path, true);
          } catch (const Error& e) {
            if (!options.skip_corrupt) throw Error(std::string("imagefolder: ") + e.what());
            l.error = e.what();
          }
          return l;
        },
        [&](int64_t i, Loaded&& l) {
          if (!l.error.empty()) {
            convert::note_skipped(options.log, l.error, skipped);
            return;
          }
          ClassificationRecord r;
          r.image = std::move(l.bytes);
          r.label = items[size_t(i)].label;
          r.height = l.info.height;
          r.width = l.info.width;
          r.channels = l.info.channels;
          r.encoded = true;
          writer.add(r, RecordMeta{-1, items[size_t(i)].rel});
        });
    writer.end_split();
    report.skipped[split] = skipped;
    if (options.log) {
      *options.log << "[data] " << split << ": " << items.size() - size_t(skipped) << " images, " << skipped
                   << " skipped\n";
    }
  }
  report.manifest = writer.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace unirep
