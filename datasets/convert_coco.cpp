// COCO instances JSON + images -> encoded detection shards (datasets/convert.h). Category ids map
// to labels 0..C-1 in sorted id order (mmdet's cat2label); boxes [x, y, w, h] become [x, y, x + w,
// y + h]; polygons are kept as they are; RLE masks are stored as uncompressed counts (COCO's
// compressed "counts" strings are decoded here, as pycocotools' rleFrString does). Images are
// sorted by id, each image's annotations by annotation id. Workers read and decode the images.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "datasets/convert.h"
#include "datasets/convert_util.h"

namespace unirep {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// pycocotools' compressed RLE string -> counts (LEB128-like 5-bit groups, deltas from 2 back).
std::vector<uint32_t> decode_rle_string(const std::string& s, const std::string& who) {
  std::vector<int64_t> counts;
  size_t p = 0;
  while (p < s.size()) {
    int64_t x = 0;
    int k = 0;
    bool more = true;
    while (more) {
      UNIREP_CHECK(p < s.size() && k < 13, who, "malformed compressed RLE string");
      const int64_t c = int64_t(s[p]) - 48;
      UNIREP_CHECK(c >= 0 && c < 64, who, "malformed compressed RLE string (character '", s[p], "')");
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      ++p;
      ++k;
      if (!more && (c & 0x10)) x |= -(int64_t(1) << (5 * k));
    }
    if (counts.size() > 2) x += counts[counts.size() - 2];
    counts.push_back(x);
  }
  std::vector<uint32_t> out;
  out.reserve(counts.size());
  for (int64_t c : counts) {
    UNIREP_CHECK(c >= 0 && c <= int64_t(UINT32_MAX), who, "compressed RLE decodes to a count of ", c);
    out.push_back(uint32_t(c));
  }
  return out;
}

struct Image {
  int64_t id = 0, height = 0, width = 0;
  std::string file_name, path;
  std::vector<const json*> anns;
};

struct SplitData {
  std::string name, json_path;
  std::vector<std::pair<int64_t, std::string>> categories;  // sorted by id
  std::vector<Image> images;
  json doc;
};

double number(const json& j, const std::string& who, const char* key) {
  auto it = j.find(key);
  UNIREP_CHECK(it != j.end() && it->is_number(), who, "'", key, "' is missing or not a number");
  return it->get<double>();
}

void load_split(SplitData& d, const std::string& src) {
  std::ifstream in(d.json_path);
  UNIREP_CHECK(in, "coco: cannot open '", d.json_path, "'");
  try {
    d.doc = json::parse(in);
  } catch (const std::exception& e) {
    throw Error("coco: '" + d.json_path + "' is not valid JSON: " + e.what());
  }
  const std::string where = "coco: '" + d.json_path + "': ";
  for (const char* key : {"images", "annotations", "categories"}) {
    UNIREP_CHECK(d.doc.contains(key) && d.doc[key].is_array(), where, "no '", key, "' array");
  }
  for (const json& c : d.doc["categories"]) {
    UNIREP_CHECK(c.contains("id") && c["id"].is_number_integer() && c.contains("name") && c["name"].is_string(), where,
                 "a category lacks an integer 'id' or a string 'name': ", c.dump());
    d.categories.emplace_back(c["id"].get<int64_t>(), c["name"].get<std::string>());
  }
  std::sort(d.categories.begin(), d.categories.end());
  for (size_t i = 1; i < d.categories.size(); ++i) {
    UNIREP_CHECK(d.categories[i].first != d.categories[i - 1].first, where, "category id ", d.categories[i].first,
                 " appears twice");
  }
  std::unordered_map<int64_t, size_t> image_index;
  for (const json& im : d.doc["images"]) {
    UNIREP_CHECK(im.contains("id") && im["id"].is_number_integer() && im.contains("file_name") &&
                     im["file_name"].is_string(),
                 where, "an image lacks an integer 'id' or a 'file_name': ", im.dump());
    Image image;
    image.id = im["id"].get<int64_t>();
    const std::string who = where + "image " + std::to_string(image.id) + ": ";
    image.file_name = im["file_name"].get<std::string>();
    image.height = int64_t(number(im, who, "height"));
    image.width = int64_t(number(im, who, "width"));
    image.path = (fs::path(src) / (d.name + "2017") / image.file_name).string();
    d.images.push_back(std::move(image));
  }
  std::sort(d.images.begin(), d.images.end(), [](const Image& a, const Image& b) { return a.id < b.id; });
  for (size_t i = 0; i < d.images.size(); ++i) {
    UNIREP_CHECK(i == 0 || d.images[i].id != d.images[i - 1].id, where, "image id ", d.images[i].id, " appears twice");
    image_index[d.images[i].id] = i;
  }
  for (const json& a : d.doc["annotations"]) {
    UNIREP_CHECK(a.contains("image_id") && a["image_id"].is_number_integer(), where,
                 "an annotation lacks an integer 'image_id': ", a.dump().substr(0, 200));
    auto it = image_index.find(a["image_id"].get<int64_t>());
    UNIREP_CHECK(it != image_index.end(), where, "annotation ", a.value("id", int64_t(-1)), " refers to image ",
                 a["image_id"].get<int64_t>(), ", which is not in 'images'");
    d.images[it->second].anns.push_back(&a);
  }
  for (Image& im : d.images) {
    std::stable_sort(im.anns.begin(), im.anns.end(),
                     [](const json* a, const json* b) { return a->value("id", int64_t(0)) < b->value("id", int64_t(0)); });
  }
}

// The annotations of one image as a DetectionRecord (without the image bytes).
DetectionRecord annotations_of(const Image& im, const std::unordered_map<int64_t, int64_t>& label_of,
                               const std::string& where) {
  DetectionRecord r;
  r.image_id = im.id;
  r.file_name = im.file_name;
  for (const json* ap : im.anns) {
    const json& a = *ap;
    const std::string who = where + "annotation " + std::to_string(a.value("id", int64_t(-1))) + " (image " +
                            std::to_string(im.id) + "): ";
    UNIREP_CHECK(a.contains("category_id") && a["category_id"].is_number_integer(), who, "no integer 'category_id'");
    auto lit = label_of.find(a["category_id"].get<int64_t>());
    UNIREP_CHECK(lit != label_of.end(), who, "category_id ", a["category_id"].get<int64_t>(),
                 " is not in 'categories'");
    UNIREP_CHECK(a.contains("bbox") && a["bbox"].is_array() && a["bbox"].size() == 4, who, "'bbox' is not [x, y, w, h]");
    float b[4];
    for (int i = 0; i < 4; ++i) {
      UNIREP_CHECK(a["bbox"][size_t(i)].is_number(), who, "'bbox' holds a non-number");
      b[i] = a["bbox"][size_t(i)].get<float>();
    }
    r.boxes.insert(r.boxes.end(), {b[0], b[1], b[0] + b[2], b[1] + b[3]});
    r.labels.push_back(lit->second);
    const int64_t crowd = a.contains("iscrowd") && a["iscrowd"].is_number() ? a["iscrowd"].get<int64_t>() : 0;
    UNIREP_CHECK(crowd == 0 || crowd == 1, who, "iscrowd is ", crowd);
    r.iscrowd.push_back(uint8_t(crowd));
    r.areas.push_back(a.contains("area") && a["area"].is_number() ? a["area"].get<float>() : 0.f);
    InstanceMask m;
    if (a.contains("segmentation")) {
      const json& seg = a["segmentation"];
      if (seg.is_array() && !seg.empty()) {
        m.type = InstanceMask::Type::Polygons;
        for (const json& poly : seg) {
          UNIREP_CHECK(poly.is_array() && poly.size() % 2 == 0, who, "a polygon is not a flat list of x, y pairs");
          std::vector<float> p;
          p.reserve(poly.size());
          for (const json& v : poly) {
            UNIREP_CHECK(v.is_number(), who, "a polygon holds a non-number");
            p.push_back(v.get<float>());
          }
          m.polygons.push_back(std::move(p));
        }
      } else if (seg.is_object()) {
        m.type = InstanceMask::Type::RLE;
        UNIREP_CHECK(seg.contains("size") && seg["size"].is_array() && seg["size"].size() == 2 && seg.contains("counts"),
                     who, "an RLE mask needs 'size' [h, w] and 'counts'");
        m.rle_height = seg["size"][0].get<int64_t>();
        m.rle_width = seg["size"][1].get<int64_t>();
        const json& counts = seg["counts"];
        if (counts.is_string()) {
          m.rle_counts = decode_rle_string(counts.get<std::string>(), who);
        } else {
          UNIREP_CHECK(counts.is_array(), who, "RLE 'counts' is neither a list nor a string");
          for (const json& c : counts) {
            UNIREP_CHECK(c.is_number_integer() && c.get<int64_t>() >= 0 && c.get<int64_t>() <= int64_t(UINT32_MAX), who,
                         "RLE 'counts' holds ", c.dump());
            m.rle_counts.push_back(uint32_t(c.get<int64_t>()));
          }
        }
        uint64_t sum = 0;
        for (uint32_t c : m.rle_counts) sum += c;
        UNIREP_CHECK(m.rle_height > 0 && m.rle_width > 0 && sum == uint64_t(m.rle_height * m.rle_width), who,
                     "RLE counts sum to ", sum, " but 'size' is ", m.rle_height, "x", m.rle_width);
      }
    }
    r.masks.push_back(std::move(m));
  }
  return r;
}

struct Loaded {
  std::vector<uint8_t> bytes;
  convert::ImageInfo info;
  std::string error;
};

}  // namespace

ConvertReport convert_coco(const std::string& src, const std::string& dst, const ConvertOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<SplitData> splits;
  for (const std::string name : {"train", "val"}) {
    const std::string path = (fs::path(src) / "annotations" / ("instances_" + name + "2017.json")).string();
    if (!fs::exists(path)) {
      if (options.log) *options.log << "[data] coco: no " << path << ", split " << name << " left out\n";
      continue;
    }
    SplitData d;
    d.name = name;
    d.json_path = path;
    splits.push_back(std::move(d));
  }
  UNIREP_CHECK(!splits.empty(), "coco: '", src, "' has neither annotations/instances_train2017.json nor ",
               "annotations/instances_val2017.json");
  for (SplitData& d : splits) load_split(d, src);
  for (size_t i = 1; i < splits.size(); ++i) {
    UNIREP_CHECK(splits[i].categories == splits[0].categories, "coco: the categories of '", splits[i].json_path,
                 "' differ from those of '", splits[0].json_path, "'");
  }
  std::unordered_map<int64_t, int64_t> label_of;
  DatasetSpec spec;
  spec.kind = DatasetKind::Detection;
  spec.encoded = true;
  for (const auto& [id, name] : splits[0].categories) {
    label_of[id] = int64_t(spec.classes.size());
    spec.classes.push_back(name);
  }
  UNIREP_CHECK(!spec.classes.empty(), "coco: '", splits[0].json_path, "' has no categories");
  spec.source = "coco " + src;

  int64_t largest = 0;
  uint64_t largest_bytes = 0;
  for (const SplitData& d : splits) {
    if (int64_t(d.images.size()) <= largest) continue;
    largest = int64_t(d.images.size());
    largest_bytes = 0;
    std::error_code ec;
    for (const Image& im : d.images) {
      const auto size = fs::file_size(im.path, ec);
      if (!ec) largest_bytes += size;
    }
  }
  const int64_t shards = convert::default_shards(options.shards, largest_bytes);
  const int workers = convert::resolve_workers(options.workers);
  ShardWriter writer(dst, spec, options.overwrite);
  ConvertReport report;
  for (const SplitData& d : splits) {
    const std::string where = "coco: '" + d.json_path + "': ";
    const int64_t n = int64_t(d.images.size());
    writer.begin_split(d.name, n, convert::shards_for_split(shards, n, largest));
    int64_t skipped = 0;
    convert::ordered_parallel<Loaded>(
        n, workers, 4 * workers,
        [&](int64_t i) {
          const Image& im = d.images[size_t(i)];
          Loaded l;
          try {
            l.bytes = convert::read_file(im.path);
            l.info = convert::probe_image(l.bytes, im.path, true);
            UNIREP_CHECK(l.info.height == im.height && l.info.width == im.width, "image '", im.path, "' is ",
                         l.info.width, "x", l.info.height, " but the annotations say ", im.width, "x", im.height);
          } catch (const Error& e) {
            if (!options.skip_corrupt) throw Error("coco: " + std::string(e.what()));
            l.error = e.what();
          }
          return l;
        },
        [&](int64_t i, Loaded&& l) {
          if (!l.error.empty()) {
            convert::note_skipped(options.log, l.error, skipped);
            return;
          }
          DetectionRecord r = annotations_of(d.images[size_t(i)], label_of, where);
          r.image = std::move(l.bytes);
          r.height = l.info.height;
          r.width = l.info.width;
          r.channels = l.info.channels;
          r.encoded = true;
          writer.add(r);
        });
    writer.end_split();
    report.skipped[d.name] = skipped;
    if (options.log) *options.log << "[data] " << d.name << ": " << n - skipped << " images, " << skipped << " skipped\n";
  }
  report.manifest = writer.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace unirep
