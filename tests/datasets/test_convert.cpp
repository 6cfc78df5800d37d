// The converters (datasets/convert.h) on small inputs made here (gzip'ed IDX files, JPEGs from
// libjpeg's compressor, PNGs from libpng, COCO JSON), their error paths and `inspect`; plus the real
// Fashion-MNIST when Debian's dataset-fashion-mnist is installed.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "datasets/convert.h"
#include "datasets/convert_util.h"
#include "datasets/shards.h"
#include "tests/datasets/fixtures.h"
#include "tests/datasets/helpers.h"

namespace unirep {
namespace {

using testing_data::error_of;

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing_data::TempDir;

ConvertOptions opts(int64_t shards, bool skip = false) {
  ConvertOptions o;
  o.shards = shards;
  o.workers = 2;
  o.skip_corrupt = skip;
  return o;
}

int64_t inspect_problems(const std::string& dir, std::string* text = nullptr) {
  std::ostringstream out;
  const int64_t n = inspect_dataset(dir, true, out);
  if (text) *text = out.str();
  if (n) ADD_FAILURE() << out.str();
  return n;
}

// ---- Fashion-MNIST

TEST(Convert, FashionMnistRoundTrip) {
  TempDir d;
  const auto idx = testing_data::write_fake_fashion_mnist(d / "src", 50, 20);
  const ConvertReport r = convert_fashion_mnist(d / "src", d / "out", opts(3));
  const Manifest& m = r.manifest;
  EXPECT_EQ(m.classes, fashion_mnist_classes());
  EXPECT_EQ(m.classes[0], "T-shirt/top");
  EXPECT_EQ(m.classes[9], "Ankle boot");
  EXPECT_FALSE(m.encoded);
  EXPECT_EQ(m.height, 28);
  EXPECT_EQ(m.channels, 1);
  EXPECT_EQ(m.splits.at("train").shards.size(), 3u);
  EXPECT_EQ(m.splits.at("test").shards.size(), 2u);  // ceil(3 * 20 / 50)
  for (const std::string split : {"train", "test"}) {
    SCOPED_TRACE(split);
    const auto& images = split == "train" ? idx.train_images : idx.test_images;
    const auto& labels = split == "train" ? idx.train_labels : idx.test_labels;
    ShardedDataset ds(d / "out", split, true);
    ASSERT_EQ(ds.size(), int64_t(labels.size()));
    std::vector<int64_t> counts(10, 0);
    for (int64_t i = 0; i < ds.size(); ++i) {
      const ClassificationRecord rec = ds.read(i);
      EXPECT_EQ(rec.label, labels[size_t(i)]);
      EXPECT_TRUE(std::equal(rec.image.begin(), rec.image.end(), images.begin() + i * 784));
      counts[size_t(rec.label)]++;
    }
    EXPECT_EQ(m.splits.at(split).class_counts, counts);
  }
  std::string text;
  EXPECT_EQ(inspect_problems(d / "out", &text), 0);
  EXPECT_HAS(text, "split train: 50 records in 3 shards (16..17 records each)");
  EXPECT_HAS(text, "Ankle boot");
  EXPECT_HAS(text, "verify: OK (5 shards' sizes and checksums, 70 records read)");
}

TEST(Convert, FashionMnistRejectsBadFiles) {
  TempDir d;
  const std::string src = d / "src";
  testing_data::write_fake_fashion_mnist(src, 10, 5);
  const std::string images = src + "/t10k-images-idx3-ubyte.gz", labels = src + "/t10k-labels-idx1-ubyte.gz";
  // Wrong magic.
  std::vector<uint8_t> raw = {0, 0, 8, 4, 0, 0, 0, 0};
  testing_data::write_gzip(labels, raw);
  std::string e = error_of([&] { convert_fashion_mnist(src, d / "out", opts(2)); });
  EXPECT_HAS(e, "'" + labels + "' is not an IDX label file (magic 2052, expected 2049)");
  // A label out of range.
  raw = {0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3, 12, 4};
  testing_data::write_gzip(labels, raw);
  e = error_of([&] { convert_fashion_mnist(src, d / "out", opts(2)); });
  EXPECT_HAS(e, "'" + labels + "' record 3: label 12 out of range [0, 10)");
  // Truncated images.
  raw = {0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3, 4, 5};
  testing_data::write_gzip(labels, raw);
  std::vector<uint8_t> im = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28};
  im.resize(16 + 4 * 784);
  testing_data::write_gzip(images, im);
  e = error_of([&] { convert_fashion_mnist(src, d / "out", opts(2)); });
  EXPECT_HAS(e, "'" + images + "' holds 3152 bytes, expected 3936 for 5 images of 28x28 (truncated?)");
  // Not gzip at all is read as a plain file by zlib: still an IDX check failure.
  testing_data::write_file(images, {1, 2, 3});
  EXPECT_HAS(error_of([&] { convert_fashion_mnist(src, d / "out", opts(2)); }), "is not an IDX image file");
  fs::remove(images);
  EXPECT_HAS(error_of([&] { convert_fashion_mnist(src, d / "out", opts(2)); }), "has no t10k-images-idx3-ubyte.gz");
  EXPECT_FALSE(fs::exists(d / "out/manifest.json"));
}

// The real data set (Debian's dataset-fashion-mnist), when installed: about 1 s here.
TEST(Convert, FashionMnistRealDataset) {
  const std::string src = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(src + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir d;
  const auto start = std::chrono::steady_clock::now();
  const ConvertReport r = convert_fashion_mnist(src, d / "fm", opts(4));
  const double convert_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.manifest.splits.at("train").count, 60000);
  EXPECT_EQ(r.manifest.splits.at("test").count, 10000);
  EXPECT_EQ(r.manifest.splits.at("train").class_counts, std::vector<int64_t>(10, 6000));
  EXPECT_EQ(r.manifest.splits.at("test").class_counts, std::vector<int64_t>(10, 1000));
  EXPECT_EQ(r.manifest.splits.at("train").shards.size(), 4u);
  ShardedDataset train(d / "fm", "train", true);
  double sum = 0;
  for (int64_t i = 0; i < train.size(); ++i) {
    for (uint8_t v : train.read(i).image) sum += v;
  }
  EXPECT_NEAR(sum / (60000.0 * 784), 72.94, 0.01);  // the mean pixel of the training set (stack.md 5)
  EXPECT_EQ(train.read(0).label, 9);                // the first training image is an ankle boot
  const auto verify_start = std::chrono::steady_clock::now();
  EXPECT_EQ(inspect_problems(d / "fm"), 0);
  const double verify_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - verify_start).count();
  std::printf("[ fashion-mnist ] convert %.2f s, inspect --verify %.2f s\n", convert_s, verify_s);
}

// ---- image folders

struct Folder {
  std::vector<std::string> rel;  // "class/file" in record order (class, then file name)
  std::vector<int64_t> labels, heights, widths, channels;
};

// train/{a_cls,b_cls,c_cls} and val/{a_cls,c_cls}: JPEGs (RGB and grey) and a PNG.
Folder make_image_folder(const std::string& src) {
  Folder f;
  auto add = [&](const std::string& split, const std::string& cls, int label, const std::string& name, int w, int h,
                 int c, bool png) {
    const auto pixels = testing_data::test_pixels(w, h, c, uint32_t(f.rel.size() + 7));
    testing_data::write_file(src + "/" + split + "/" + cls + "/" + name,
                             png ? testing_data::encode_png(pixels, w, h, c) : testing_data::encode_jpeg(pixels, w, h, c));
    if (split == "train") {
      f.rel.push_back(cls + "/" + name);
      f.labels.push_back(label);
      f.heights.push_back(h);
      f.widths.push_back(w);
      f.channels.push_back(c);
    }
  };
  // In sorted (class, name) order for the train split.
  add("train", "a_cls", 0, "x1.JPEG", 33, 21, 3, false);
  add("train", "a_cls", 0, "x2.jpg", 17, 40, 1, false);
  add("train", "b_cls", 1, "p.png", 12, 9, 3, true);
  add("train", "b_cls", 1, "q.jpeg", 64, 48, 3, false);
  add("train", "c_cls", 2, "z.JPEG", 20, 20, 3, false);
  add("val", "a_cls", 0, "v1.JPEG", 25, 30, 3, false);
  add("val", "c_cls", 2, "v2.JPEG", 30, 25, 3, false);
  testing_data::write_file(src + "/train/a_cls/readme.txt", {'h', 'i'});  // not an image extension: ignored
  return f;
}

TEST(Convert, ImageFolderRoundTrip) {
  TempDir d;
  const std::string src = d / "src";
  const Folder f = make_image_folder(src);
  const ConvertReport r = convert_imagefolder(src, d / "out", opts(2));
  EXPECT_EQ(r.manifest.classes, (std::vector<std::string>{"a_cls", "b_cls", "c_cls"}));
  EXPECT_TRUE(r.manifest.encoded);
  EXPECT_EQ(r.manifest.splits.at("train").class_counts, (std::vector<int64_t>{2, 2, 1}));
  EXPECT_EQ(r.manifest.splits.at("val").class_counts, (std::vector<int64_t>{1, 0, 1}));
  ShardedDataset ds(d / "out", "train", true);
  ASSERT_EQ(ds.size(), 5);
  EXPECT_EQ(ds.num_shards(), 2);
  for (int64_t i = 0; i < 5; ++i) {
    SCOPED_TRACE(f.rel[size_t(i)]);
    const ClassificationRecord rec = ds.read(i);
    EXPECT_EQ(rec.image, testing_data::read_file(src + "/train/" + f.rel[size_t(i)]));  // bytes as they were
    EXPECT_EQ(rec.label, f.labels[size_t(i)]);
    EXPECT_EQ(rec.height, f.heights[size_t(i)]);
    EXPECT_EQ(rec.width, f.widths[size_t(i)]);
    EXPECT_EQ(rec.channels, f.channels[size_t(i)]);
    EXPECT_TRUE(rec.encoded);
    EXPECT_EQ(ds.file_name(i), f.rel[size_t(i)]);
  }
  ShardedDataset val(d / "out", "val");
  ASSERT_EQ(val.size(), 2);
  EXPECT_EQ(val.read(1).label, 2);
  EXPECT_EQ(val.file_name(1), "c_cls/v2.JPEG");
  EXPECT_EQ(inspect_problems(d / "out"), 0);
}

TEST(Convert, ImageFolderBadJpegIsNamedOrSkipped) {
  TempDir d;
  const std::string src = d / "src";
  make_image_folder(src);
  const auto good = testing_data::read_file(src + "/train/b_cls/q.jpeg");
  const std::string bad = src + "/train/b_cls/r_truncated.JPEG";
  testing_data::write_file(bad, std::vector<uint8_t>(good.begin(), good.begin() + long(good.size() / 2)));
  std::string e = error_of([&] { convert_imagefolder(src, d / "out", opts(2)); });
  EXPECT_HAS(e, "imagefolder: image '" + bad + "' is not a decodable JPEG");
  EXPECT_FALSE(fs::exists(d / "out/manifest.json"));  // the conversion stopped: nothing looks complete
  for (const auto& entry : fs::directory_iterator(d / "out")) ADD_FAILURE() << "left behind: " << entry.path();

  const ConvertReport r = convert_imagefolder(src, d / "out", opts(2, /*skip=*/true));
  EXPECT_EQ(r.skipped.at("train"), 1);
  EXPECT_EQ(r.skipped.at("val"), 0);
  ShardedDataset ds(d / "out", "train");
  EXPECT_EQ(ds.size(), 5);
  for (int64_t i = 0; i < ds.size(); ++i) EXPECT_NE(ds.file_name(i), "b_cls/r_truncated.JPEG");

  testing_data::write_file(src + "/val/a_cls/text.jpg", {'n', 'o', 't'});
  e = error_of([&] {
    ConvertOptions o = opts(2);
    o.overwrite = true;
    convert_imagefolder(src, d / "out2", o);
  });
  EXPECT_HAS(e, "image '" + src + "/train/b_cls/r_truncated.JPEG'");
  fs::remove(bad);
  e = error_of([&] { convert_imagefolder(src, d / "out3", opts(2)); });
  EXPECT_HAS(e, "image '" + src + "/val/a_cls/text.jpg' is neither a JPEG nor a PNG (3 bytes)");
}

// ---- COCO

// pycocotools' rleToString: counts -> the compressed string form.
std::string rle_to_string(const std::vector<uint32_t>& counts) {
  std::string s;
  for (size_t i = 0; i < counts.size(); ++i) {
    int64_t x = counts[i];
    if (i > 2) x -= int64_t(counts[i - 2]);
    bool more = true;
    while (more) {
      int64_t c = x & 0x1f;
      x >>= 5;
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s += char(c + 48);
    }
  }
  return s;
}

struct CocoFixture {
  std::string src;
  std::vector<uint32_t> rle_counts;  // the compressed RLE's counts (image 20)
};

CocoFixture make_coco(const std::string& src) {
  CocoFixture f{src, {}};
  auto jpeg = [&](const std::string& path, int w, int h) {
    testing_data::write_file(path, testing_data::encode_jpeg(testing_data::test_pixels(w, h, 3, uint32_t(w * h)), w, h, 3));
  };
  json train;
  train["categories"] = {{{"id", 7}, {"name", "zebra"}}, {{"id", 1}, {"name", "person"}}, {{"id", 3}, {"name", "car"}}};
  train["images"] = {{{"id", 30}, {"file_name", "c.jpg"}, {"height", 20}, {"width", 24}},
                     {{"id", 10}, {"file_name", "a.jpg"}, {"height", 30}, {"width", 40}},
                     {{"id", 20}, {"file_name", "b.jpg"}, {"height", 16}, {"width", 16}}};
  jpeg(src + "/train2017/a.jpg", 40, 30);
  jpeg(src + "/train2017/b.jpg", 16, 16);
  jpeg(src + "/train2017/c.jpg", 24, 20);
  // 16x16 mask: runs summing to 256, long enough to need multi-character encodings.
  f.rle_counts = {37, 5, 11, 40, 3, 100, 60};
  train["annotations"] = {
      {{"id", 5}, {"image_id", 10}, {"category_id", 3}, {"bbox", {1.5, 2, 10, 20}}, {"area", 150.5}, {"iscrowd", 0},
       {"segmentation", {{1.5, 2, 11.5, 2, 11.5, 22}}}},
      {{"id", 2}, {"image_id", 10}, {"category_id", 1}, {"bbox", {0, 0, 40, 30}}, {"area", 600}, {"iscrowd", 1},
       {"segmentation", {{"counts", {0, 600, 600}}, {"size", {30, 40}}}}},
      {{"id", 9}, {"image_id", 20}, {"category_id", 7}, {"bbox", {3, 4, 5, 6}}, {"area", 30}, {"iscrowd", 0},
       {"segmentation", {{"counts", rle_to_string(f.rle_counts)}, {"size", {16, 16}}}}},
      {{"id", 11}, {"image_id", 20}, {"category_id", 3}, {"bbox", {1, 1, 2, 2}}, {"area", 4}, {"iscrowd", 0},
       {"segmentation", {{1, 1, 3, 1, 3, 3}, {5, 5, 6, 5, 6, 6, 5, 6}}}}};
  json val = train;
  val["images"] = {{{"id", 99}, {"file_name", "v.jpg"}, {"height", 8}, {"width", 8}}};
  val["annotations"] = {{{"id", 1}, {"image_id", 99}, {"category_id", 7}, {"bbox", {0, 0, 8, 8}}, {"area", 64},
                         {"iscrowd", 0}}};  // no segmentation: a box-only annotation
  jpeg(src + "/val2017/v.jpg", 8, 8);
  fs::create_directories(src + "/annotations");
  std::ofstream(src + "/annotations/instances_train2017.json") << train.dump();
  std::ofstream(src + "/annotations/instances_val2017.json") << val.dump();
  return f;
}

TEST(Convert, CocoRoundTrip) {
  TempDir d;
  const CocoFixture f = make_coco(d / "src");
  const ConvertReport r = convert_coco(f.src, d / "out", opts(2));
  // Categories in sorted id order: 1 person, 3 car, 7 zebra.
  EXPECT_EQ(r.manifest.classes, (std::vector<std::string>{"person", "car", "zebra"}));
  EXPECT_EQ(r.manifest.kind, DatasetKind::Detection);
  EXPECT_EQ(r.manifest.splits.at("train").class_counts, (std::vector<int64_t>{1, 2, 1}));
  EXPECT_EQ(r.manifest.splits.at("val").class_counts, (std::vector<int64_t>{0, 0, 1}));
  ShardedDataset ds(d / "out", "train", true);
  ASSERT_EQ(ds.size(), 3);
  // Images sorted by id: 10, 20, 30.
  const DetectionRecord a = ds.read_detection(0);
  EXPECT_EQ(a.image_id, 10);
  EXPECT_EQ(a.file_name, "a.jpg");
  EXPECT_EQ(a.image, testing_data::read_file(f.src + "/train2017/a.jpg"));
  EXPECT_EQ(a.height, 30);
  EXPECT_EQ(a.width, 40);
  EXPECT_EQ(a.channels, 3);
  // Annotations by id: 2 (crowd person, RLE list), then 5 (car polygon).
  EXPECT_EQ(a.labels, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(a.iscrowd, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(a.boxes, (std::vector<float>{0, 0, 40, 30, 1.5f, 2, 11.5f, 22}));
  EXPECT_EQ(a.areas, (std::vector<float>{600, 150.5f}));
  ASSERT_EQ(a.masks.size(), 2u);
  EXPECT_EQ(a.masks[0].type, InstanceMask::Type::RLE);
  EXPECT_EQ(a.masks[0].rle_counts, (std::vector<uint32_t>{0, 600, 600}));
  EXPECT_EQ(a.masks[0].rle_height, 30);
  EXPECT_EQ(a.masks[0].rle_width, 40);
  EXPECT_EQ(a.masks[1].type, InstanceMask::Type::Polygons);
  EXPECT_EQ(a.masks[1].polygons, (std::vector<std::vector<float>>{{1.5f, 2, 11.5f, 2, 11.5f, 22}}));
  const DetectionRecord b = ds.read_detection(1);
  EXPECT_EQ(b.image_id, 20);
  EXPECT_EQ(b.labels, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(b.masks[0].type, InstanceMask::Type::RLE);
  EXPECT_EQ(b.masks[0].rle_counts, f.rle_counts);  // decoded from the compressed string
  EXPECT_EQ(b.masks[1].polygons.size(), 2u);
  EXPECT_EQ(b.boxes, (std::vector<float>{3, 4, 8, 10, 1, 1, 3, 3}));
  const DetectionRecord c = ds.read_detection(2);
  EXPECT_EQ(c.image_id, 30);
  EXPECT_EQ(c.num_objects(), 0);
  ShardedDataset val(d / "out", "val");
  const DetectionRecord v = val.read_detection(0);
  EXPECT_EQ(v.labels, (std::vector<int64_t>{2}));
  EXPECT_EQ(v.masks[0].type, InstanceMask::Type::None);
  EXPECT_EQ(inspect_problems(d / "out"), 0);
}

TEST(Convert, CocoErrorsNameTheAnnotationOrImage) {
  TempDir d;
  const CocoFixture f = make_coco(d / "src");
  const std::string json_path = f.src + "/annotations/instances_train2017.json";
  std::ifstream in(json_path);
  json train = json::parse(in);
  in.close();
  json bad = train;
  bad["annotations"][1]["category_id"] = 5;
  std::ofstream(json_path) << bad.dump();
  EXPECT_HAS(error_of([&] { convert_coco(f.src, d / "out", opts(1)); }),
             "annotation 2 (image 10): category_id 5 is not in 'categories'");
  bad = train;
  bad["images"][1]["width"] = 41;
  std::ofstream(json_path) << bad.dump();
  EXPECT_HAS(error_of([&] { convert_coco(f.src, d / "out", opts(1)); }),
             "image '" + f.src + "/train2017/a.jpg' is 40x30 but the annotations say 41x30");
  bad = train;
  bad["annotations"][2]["segmentation"]["size"] = {16, 17};
  std::ofstream(json_path) << bad.dump();
  EXPECT_HAS(error_of([&] { convert_coco(f.src, d / "out", opts(1)); }), "RLE counts sum to 256 but 'size' is 16x17");
  EXPECT_FALSE(fs::exists(d / "out/manifest.json"));
}

// ---- ADE20K

TEST(Convert, Ade20kRoundTrip) {
  TempDir d;
  const std::string src = d / "src";
  // Label maps: image k holds the values {0, k + 1, 150} (classes k and 149).
  auto add = [&](const std::string& folder, const std::string& stem, int w, int h, int k) {
    testing_data::write_file(src + "/images/" + folder + "/" + stem + ".jpg",
                             testing_data::encode_jpeg(testing_data::test_pixels(w, h, 3, uint32_t(k)), w, h, 3));
    std::vector<uint8_t> label(size_t(w * h), 0);
    for (size_t i = 0; i < label.size(); ++i) label[i] = i % 3 == 0 ? 0 : i % 3 == 1 ? uint8_t(k + 1) : 150;
    testing_data::write_file(src + "/annotations/" + folder + "/" + stem + ".png", testing_data::encode_png(label, w, h, 1));
  };
  add("training", "ADE_train_00000002", 20, 10, 0);
  add("training", "ADE_train_00000001", 13, 17, 1);
  add("training", "ADE_train_00000003", 8, 8, 1);
  add("validation", "ADE_val_00000001", 9, 7, 4);
  const ConvertReport r = convert_ade20k(src, d / "out", opts(2));
  EXPECT_EQ(r.manifest.classes.size(), 150u);
  EXPECT_EQ(r.manifest.classes, ade20k_classes());
  EXPECT_EQ(r.manifest.classes[0], "wall");
  EXPECT_EQ(r.manifest.classes[149], "flag");
  std::vector<int64_t> train_counts(150, 0);
  train_counts[0] = 1;
  train_counts[1] = 2;
  train_counts[149] = 3;
  EXPECT_EQ(r.manifest.splits.at("train").class_counts, train_counts);
  ShardedDataset ds(d / "out", "train", true);
  ASSERT_EQ(ds.size(), 3);
  const SegmentationRecord s0 = ds.read_segmentation(0);  // sorted by file name
  EXPECT_EQ(s0.file_name, "training/ADE_train_00000001.jpg");
  EXPECT_EQ(s0.image, testing_data::read_file(src + "/images/training/ADE_train_00000001.jpg"));
  EXPECT_EQ(s0.label_png, testing_data::read_file(src + "/annotations/training/ADE_train_00000001.png"));
  EXPECT_EQ(s0.height, 17);
  EXPECT_EQ(s0.width, 13);
  int64_t h = 0, w = 0;
  const auto values = convert::decode_label_png(s0.label_png, "x", h, w);
  EXPECT_EQ(values[1], 2);
  ShardedDataset val(d / "out", "val");
  EXPECT_EQ(val.read_segmentation(0).file_name, "validation/ADE_val_00000001.jpg");
  EXPECT_EQ(inspect_problems(d / "out"), 0);

  // Bad inputs: a label value above 150, a label map of the wrong size, a missing label map.
  const std::string label3 = src + "/annotations/training/ADE_train_00000003.png";
  testing_data::write_file(label3, testing_data::encode_png(std::vector<uint8_t>(64, 200), 8, 8, 1));
  EXPECT_HAS(error_of([&] { convert_ade20k(src, d / "bad", opts(1)); }),
             "label map '" + label3 + "' holds the value 200, out of range");
  testing_data::write_file(label3, testing_data::encode_png(std::vector<uint8_t>(63, 1), 9, 7, 1));
  EXPECT_HAS(error_of([&] { convert_ade20k(src, d / "bad", opts(1)); }),
             "label map '" + label3 + "' is 9x7 but its image");
  fs::remove(label3);
  EXPECT_HAS(error_of([&] { convert_ade20k(src, d / "bad", opts(1)); }),
             "image '" + src + "/images/training/ADE_train_00000003.jpg' has no annotation");
  EXPECT_FALSE(fs::exists(d / "bad/manifest.json"));
  const ConvertReport skipped = convert_ade20k(src, d / "skip", opts(1, true));
  EXPECT_EQ(skipped.skipped.at("train"), 1);
  EXPECT_EQ(skipped.manifest.splits.at("train").count, 2);
}

TEST(Convert, DispatchAndOrderedParallel) {
  EXPECT_HAS(error_of([&] { convert_dataset("cifar", "a", "b", {}); }), "unknown dataset kind 'cifar'");
  // ordered_parallel hands items over in order and reports the first failing item in that order.
  std::vector<int64_t> seen;
  convert::ordered_parallel<int64_t>(
      100, 3, 4, [](int64_t i) { return i * i; }, [&](int64_t i, int64_t v) {
        EXPECT_EQ(v, i * i);
        seen.push_back(i);
      });
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  const std::string e = error_of([] {
    convert::ordered_parallel<int>(
        50, 4, 8,
        [](int64_t i) -> int {
          if (i == 17 || i == 30) throw Error("item " + std::to_string(i));
          return 0;
        },
        [](int64_t, int) {});
  });
  EXPECT_EQ(e, "item 17");
  EXPECT_EQ(convert::shards_for_split(4, 10000, 60000), 1);
  EXPECT_EQ(convert::shards_for_split(7, 50000, 1281167), 1);
  EXPECT_EQ(convert::shards_for_split(1024, 50000, 1281167), 40);
  EXPECT_EQ(convert::default_shards(0, uint64_t(1) << 30), 4);
}

}  // namespace
}  // namespace unirep
