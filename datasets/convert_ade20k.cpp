// ADE20K (ADEChallengeData2016 layout) -> encoded segmentation shards (datasets/convert.h).
// images/{training,validation}/X.jpg pairs with annotations/{training,validation}/X.png by stem;
// splits "train" and "val". Workers read and decode both files: the label map must be an 8-bit
// single-channel PNG of the image's size with values 0..150 (0 = other, c + 1 = class c); its PNG
// bytes are stored as they are, and the classes it contains feed the manifest's per-class counts.
#include <chrono>
#include <filesystem>
#include <map>
#include <ostream>

#include "core/error.h"
#include "datasets/convert.h"
#include "datasets/convert_util.h"

namespace unirep {

namespace fs = std::filesystem;

const std::vector<std::string>& ade20k_classes() {
  static const std::vector<std::string> names = {
      "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
      "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
      "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
      "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
      "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
      "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
      "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
      "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
      "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
      "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
      "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
      "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
      "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
      "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
      "bulletin board", "shower", "radiator", "glass", "clock", "flag"};
  return names;
}

namespace {

struct Pair {
  std::string image, label, rel;
};

struct Loaded {
  std::vector<uint8_t> image, label_png;
  convert::ImageInfo info;
  std::vector<int64_t> present;
  std::string error;
};

}  // namespace

ConvertReport convert_ade20k(const std::string& src, const std::string& dst, const ConvertOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const auto& classes = ade20k_classes();
  UNIREP_CHECK(classes.size() == 150, "ade20k: the class table has ", classes.size(), " names, expected 150");
  UNIREP_CHECK(convert::is_directory((fs::path(src) / "images").string()), "ade20k: '", src,
               "' has no images/ folder (expected images/{training,validation}/*.jpg and ",
               "annotations/{training,validation}/*.png)");
  ConvertReport report;
  std::vector<std::pair<std::string, std::vector<Pair>>> splits;
  std::vector<std::string> missing;  // images without a label map (skip_corrupt)
  for (const auto& [split, folder] : {std::pair<std::string, std::string>{"train", "training"}, {"val", "validation"}}) {
    const std::string image_dir = (fs::path(src) / "images" / folder).string();
    const std::string label_dir = (fs::path(src) / "annotations" / folder).string();
    if (!convert::is_directory(image_dir)) {
      if (options.log) *options.log << "[data] ade20k: no " << image_dir << ", split " << split << " left out\n";
      continue;
    }
    UNIREP_CHECK(convert::is_directory(label_dir), "ade20k: '", image_dir, "' has no annotation folder '", label_dir, "'");
    std::map<std::string, std::string> labels;
    for (const std::string& f : convert::list_files(label_dir, {".png"})) labels[fs::path(f).stem().string()] = f;
    std::vector<Pair> pairs;
    int64_t skipped = 0;
    for (const std::string& f : convert::list_files(image_dir, {".jpg", ".jpeg", ".png"})) {
      const std::string stem = fs::path(f).stem().string();
      const std::string image_path = (fs::path(image_dir) / f).string();
      auto it = labels.find(stem);
      if (it == labels.end()) {
        const std::string message =
            "ade20k: image '" + image_path + "' has no annotation '" + (fs::path(label_dir) / (stem + ".png")).string() + "'";
        UNIREP_CHECK(options.skip_corrupt, message);
        convert::note_skipped(options.log, message, skipped);
        continue;
      }
      pairs.push_back({image_path, (fs::path(label_dir) / it->second).string(), folder + "/" + f});
      labels.erase(it);
    }
    if (!labels.empty() && options.log) {
      *options.log << "[data] ade20k: " << labels.size() << " annotations in " << label_dir
                   << " have no image (ignored), e.g. " << labels.begin()->second << "\n";
    }
    report.skipped[split] = skipped;
    splits.emplace_back(split, std::move(pairs));
  }
  UNIREP_CHECK(!splits.empty(), "ade20k: '", src, "' has neither images/training nor images/validation");

  int64_t largest = 0;
  uint64_t largest_bytes = 0;
  for (const auto& [split, pairs] : splits) {
    if (int64_t(pairs.size()) <= largest) continue;
    largest = int64_t(pairs.size());
    largest_bytes = 0;
    for (const Pair& p : pairs) largest_bytes += fs::file_size(p.image) + fs::file_size(p.label);
  }
  const int64_t shards = convert::default_shards(options.shards, largest_bytes);
  const int workers = convert::resolve_workers(options.workers);
  DatasetSpec spec;
  spec.kind = DatasetKind::Segmentation;
  spec.encoded = true;
  spec.classes = classes;
  spec.source = "ade20k " + src;
  ShardWriter writer(dst, spec, options.overwrite);
  for (const auto& [split, pairs] : splits) {
    const int64_t n = int64_t(pairs.size());
    writer.begin_split(split, n, convert::shards_for_split(shards, n, largest));
    int64_t skipped = 0;
    convert::ordered_parallel<Loaded>(
        n, workers, 4 * workers,
        [&](int64_t i) {
          const Pair& p = pairs[size_t(i)];
          Loaded l;
          try {
            l.image = convert::read_file(p.image);
            l.info = convert::probe_image(l.image, p.image, true);
            l.label_png = convert::read_file(p.label);
            int64_t h = 0, w = 0;
            const std::vector<uint8_t> values = convert::decode_label_png(l.label_png, p.label, h, w);
            UNIREP_CHECK(h == l.info.height && w == l.info.width, "label map '", p.label, "' is ", w, "x", h,
                         " but its image '", p.image, "' is ", l.info.width, "x", l.info.height);
            bool seen[256] = {false};
            for (uint8_t v : values) seen[v] = true;
            for (int v = 0; v < 256; ++v) {
              if (!seen[v] || v == 0) continue;
              UNIREP_CHECK(v <= 150, "label map '", p.label, "' holds the value ", v,
                           ", out of range (0 = other, 1..150 = the classes)");
              l.present.push_back(v - 1);
            }
          } catch (const Error& e) {
            if (!options.skip_corrupt) throw Error("ade20k: " + std::string(e.what()));
            l.error = e.what();
          }
          return l;
        },
        [&](int64_t i, Loaded&& l) {
          if (!l.error.empty()) {
            convert::note_skipped(options.log, l.error, skipped);
            return;
          }
          SegmentationRecord r;
          r.image = std::move(l.image);
          r.height = l.info.height;
          r.width = l.info.width;
          r.channels = l.info.channels;
          r.encoded = true;
          r.label_png = std::move(l.label_png);
          r.file_name = pairs[size_t(i)].rel;
          writer.add(r, l.present);
        });
    writer.end_split();
    report.skipped[split] += skipped;
    if (options.log) *options.log << "[data] " << split << ": " << n - skipped << " images, " << skipped << " skipped\n";
  }
  report.manifest = writer.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace unirep
