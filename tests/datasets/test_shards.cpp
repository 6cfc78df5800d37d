// The shard format (datasets/shards.h): manifest, ShardWriter, ShardedDataset round trips for every
// record kind, crash safety, corruption handling, and concurrent reads (with measured records/s).
#include <gtest/gtest.h>
#include <hdf5.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "datasets/shards.h"
#include "tests/datasets/fixtures.h"
#include "tests/datasets/helpers.h"

namespace unirep {
namespace {

using testing_data::error_of;

namespace fs = std::filesystem;
using testing_data::TempDir;

std::vector<std::string> class_names(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("class" + std::to_string(i));
  return out;
}

// Sets UNIREP_SHARDS_FAST_PATH=0 for its lifetime: the reader then goes through HDF5 for everything.
struct ForceLibraryPath {
  ForceLibraryPath() { ::setenv("UNIREP_SHARDS_FAST_PATH", "0", 1); }
  ~ForceLibraryPath() { ::unsetenv("UNIREP_SHARDS_FAST_PATH"); }
};

ClassificationRecord raw_record(int64_t i, int64_t h, int64_t w, int64_t c, int64_t classes) {
  ClassificationRecord r;
  r.image = testing_data::test_pixels(int(w), int(h), int(c), uint32_t(i));
  r.label = (i * 3) % classes;
  r.height = h;
  r.width = w;
  r.channels = c;
  return r;
}

// Deterministic "encoded" payload bytes (the writer does not decode them).
std::vector<uint8_t> blob(int64_t i, size_t size) {
  std::vector<uint8_t> b(size);
  uint32_t s = uint32_t(i) * 747796405u + 2891336453u;
  for (size_t j = 0; j < size; ++j) {
    s = s * 1664525u + 1013904223u;
    b[j] = uint8_t(s >> 24);
  }
  return b;
}

ClassificationRecord encoded_record(int64_t i, size_t size, int64_t classes) {
  ClassificationRecord r;
  r.image = blob(i, size);
  r.label = i % classes;
  r.height = 10 + i;
  r.width = 20 + i;
  r.channels = i % 2 ? 3 : 1;
  r.encoded = true;
  return r;
}

// Writes an encoded classification split of `sizes.size()` records into `dir`.
std::vector<ClassificationRecord> write_encoded(const std::string& dir, const std::vector<size_t>& sizes, int64_t shards,
                                                int64_t classes = 5) {
  DatasetSpec spec;
  spec.encoded = true;
  spec.classes = class_names(int(classes));
  ShardWriter w(dir, spec);
  w.begin_split("train", int64_t(sizes.size()), shards);
  std::vector<ClassificationRecord> records;
  for (size_t i = 0; i < sizes.size(); ++i) {
    records.push_back(encoded_record(int64_t(i), sizes[i], classes));
    w.add(records.back(), RecordMeta{int64_t(1000 + i), "f" + std::to_string(i) + ".jpg"});
  }
  w.end_split();
  w.finish();
  return records;
}

// A raw classification dataset: splits train (n_train records, `shards` shards) and val (n_val).
std::vector<ClassificationRecord> write_raw(const std::string& dir, int64_t n_train, int64_t n_val, int64_t shards,
                                           int64_t h = 5, int64_t w = 4, int64_t c = 3, int64_t classes = 4) {
  DatasetSpec spec;
  spec.height = h;
  spec.width = w;
  spec.channels = c;
  spec.classes = class_names(int(classes));
  spec.source = "test";
  ShardWriter writer(dir, spec);
  std::vector<ClassificationRecord> train;
  writer.begin_split("train", n_train, shards);
  for (int64_t i = 0; i < n_train; ++i) {
    train.push_back(raw_record(i, h, w, c, classes));
    writer.add(train.back(), i % 2 ? RecordMeta{i, "img" + std::to_string(i)} : RecordMeta{});
  }
  writer.end_split();
  writer.begin_split("val", n_val, shards);
  for (int64_t i = 0; i < n_val; ++i) writer.add(raw_record(100 + i, h, w, c, classes));
  writer.end_split();
  writer.finish();
  return train;
}

std::string shard_path(const TempDir& d, const std::string& split, int k) {
  return d / shard_file_name(split, k);
}

// ---- manifest

TEST(Shards, ManifestJsonRoundTrip) {
  Manifest m;
  m.kind = DatasetKind::Detection;
  m.encoded = true;
  m.classes = {"a", "b"};
  m.source = "unit test";
  SplitInfo s;
  s.count = 7;
  s.class_counts = {3, 9};
  s.shards = {{"train-00000.h5", 4, 1000, 4294967295u}, {"train-00001.h5", 3, 900, 12}};
  m.splits["train"] = s;
  const Manifest back = Manifest::from_json(m.to_json(), "m.json");
  EXPECT_EQ(back.kind, DatasetKind::Detection);
  EXPECT_TRUE(back.encoded);
  EXPECT_EQ(back.classes, m.classes);
  EXPECT_EQ(back.source, "unit test");
  ASSERT_EQ(back.splits.count("train"), 1u);
  const SplitInfo& t = back.splits.at("train");
  EXPECT_EQ(t.count, 7);
  EXPECT_EQ(t.class_counts, (std::vector<int64_t>{3, 9}));
  ASSERT_EQ(t.shards.size(), 2u);
  EXPECT_EQ(t.shards[0].file, "train-00000.h5");
  EXPECT_EQ(t.shards[0].crc32, 4294967295u);
  EXPECT_EQ(t.shards[1].bytes, 900);
}

TEST(Shards, ManifestErrorsNameTheProblem) {
  Manifest m;
  m.height = m.width = m.channels = 2;
  m.classes = {"a"};
  m.splits["train"] = SplitInfo{2, {2}, {{"train-00000.h5", 2, 10, 5}}};
  const std::string good = m.to_json();
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  EXPECT_HAS(error_of([&] { Manifest::from_json("{not json", "x/manifest.json"); }), "x/manifest.json");
  EXPECT_HAS(error_of([&] { Manifest::from_json(replaced("\"version\": 1", "\"version\": 2"), "m"); }),
             "unsupported format version 2 (this build reads version 1)");
  EXPECT_HAS(error_of([&] { Manifest::from_json(replaced("\"unirep-shards\"", "\"other\""), "m"); }),
             "format is 'other'");
  EXPECT_HAS(error_of([&] { Manifest::from_json(replaced("\"crc32\":5", "\"crc\":5"), "m"); }),
             "missing key 'splits.train.shards[0].crc32'");
  EXPECT_HAS(error_of([&] { Manifest::from_json(replaced("\"count\": 2", "\"count\": 3"), "m"); }),
             "split 'train' has count 3 but its shards hold 2");
  EXPECT_HAS(error_of([&] { Manifest::from_json(replaced("\"kind\": \"classification\"", "\"kind\": \"x\""), "m"); }),
             "unknown dataset kind 'x'");
  EXPECT_HAS(error_of([&] { Manifest::from_json(replaced("\"image_encoding\": \"raw\",", ""), "m"); }),
             "missing key 'image_encoding'");
}

// ---- round trips

TEST(Shards, RawRoundTripAcrossShards) {
  TempDir d;
  const auto train = write_raw(d.path().string(), 23, 7, 4);
  const Manifest m = Manifest::load(d.path().string());
  EXPECT_FALSE(m.encoded);
  ASSERT_EQ(m.splits.at("train").shards.size(), 4u);
  // Shard s holds records [s*n/N, (s+1)*n/N): 5, 6, 6, 6.
  std::vector<int64_t> counts;
  for (const auto& s : m.splits.at("train").shards) counts.push_back(s.count);
  EXPECT_EQ(counts, (std::vector<int64_t>{5, 6, 6, 6}));
  EXPECT_EQ(m.splits.at("val").shards.size(), 4u);
  EXPECT_EQ(m.splits.at("train").class_counts, (std::vector<int64_t>{6, 5, 6, 6}));  // label = 3i mod 4

  ShardedDataset ds(d.path().string(), "train", /*verify_checksums=*/true);
  ASSERT_EQ(ds.size(), 23);
  EXPECT_EQ(ds.num_shards(), 4);
  EXPECT_EQ(ds.kind(), DatasetKind::Classification);
  EXPECT_EQ(ds.class_names(), class_names(4));
  EXPECT_TRUE(ds.fast_path("image"));
  for (int64_t i = 0; i < ds.size(); ++i) {
    SCOPED_TRACE(i);
    const ClassificationRecord r = ds.read(i);
    EXPECT_EQ(r.image, train[size_t(i)].image);
    EXPECT_EQ(r.label, train[size_t(i)].label);
    EXPECT_EQ(ds.label(i), train[size_t(i)].label);
    EXPECT_EQ(r.height, 5);
    EXPECT_EQ(r.width, 4);
    EXPECT_EQ(r.channels, 3);
    EXPECT_FALSE(r.encoded);
    EXPECT_EQ(ds.image_id(i), i % 2 ? i : -1);
    EXPECT_EQ(ds.file_name(i), i % 2 ? "img" + std::to_string(i) : "");
  }
  EXPECT_EQ(ds.locate(4).shard, 0);
  EXPECT_EQ(ds.locate(5).shard, 1);
  EXPECT_EQ(ds.locate(5).local, 0);
  EXPECT_EQ(ds.locate(22).shard, 3);
  EXPECT_EQ(ds.locate(22).path, shard_path(d, "train", 3));

  // The HDF5 path gives the same bytes.
  ForceLibraryPath library;
  ShardedDataset slow(d.path().string(), "train");
  EXPECT_FALSE(slow.fast_path("image"));
  for (int64_t i = 0; i < slow.size(); ++i) EXPECT_EQ(slow.read(i).image, train[size_t(i)].image);
  ShardedDataset val(d.path().string(), "val");
  EXPECT_EQ(val.size(), 7);
  EXPECT_EQ(val.read(6).image, raw_record(106, 5, 4, 3, 4).image);
}

TEST(Shards, EncodedRoundTripSmallAndLargeObjects) {
  TempDir d;
  // Objects below 4 KiB share global heap collections (the reader walks them); larger ones open
  // their own collection; a 1-byte object and one just over the minimum collection size too.
  std::vector<size_t> sizes;
  for (int i = 0; i < 37; ++i) sizes.push_back(std::vector<size_t>{1, 7, 100, 3000, 4100, 20000, 70001}[size_t(i % 7)]);
  const auto records = write_encoded(d.path().string(), sizes, 3);
  ShardedDataset ds(d.path().string(), "train", true);
  EXPECT_TRUE(ds.encoded());
  EXPECT_TRUE(ds.fast_path("image"));
  for (int64_t i = 0; i < ds.size(); ++i) {
    SCOPED_TRACE(i);
    const ClassificationRecord r = ds.read(i);
    EXPECT_EQ(r.image, records[size_t(i)].image);
    EXPECT_EQ(r.label, records[size_t(i)].label);
    EXPECT_EQ(r.height, 10 + i);
    EXPECT_EQ(r.width, 20 + i);
    EXPECT_EQ(r.channels, i % 2 ? 3 : 1);
    EXPECT_TRUE(r.encoded);
    EXPECT_EQ(ds.image_id(i), 1000 + i);
    EXPECT_EQ(ds.file_name(i), "f" + std::to_string(i) + ".jpg");
  }
  ForceLibraryPath library;
  ShardedDataset slow(d.path().string(), "train");
  EXPECT_FALSE(slow.fast_path("image"));
  for (int64_t i = 0; i < slow.size(); ++i) EXPECT_EQ(slow.read(i).image, records[size_t(i)].image);
}

DetectionRecord detection_record(int64_t i) {
  DetectionRecord r;
  r.image = blob(i, 5000 + size_t(i) * 10);
  r.height = 30;
  r.width = 40;
  r.channels = 3;
  r.encoded = true;
  r.image_id = 42 + i;
  r.file_name = "0000" + std::to_string(i) + ".jpg";
  const int k = int(i % 4);  // record 0 has no objects
  for (int j = 0; j < k; ++j) {
    r.boxes.insert(r.boxes.end(), {float(j), float(j + 1), float(j + 10.5), float(j + 20.25)});
    r.labels.push_back((i + j) % 3);
    r.iscrowd.push_back(j == 2 ? 1 : 0);
    r.areas.push_back(float(100 * j + i));
    InstanceMask m;
    if (j == 0) {
      m.type = InstanceMask::Type::Polygons;
      m.polygons = {{1, 2, 3, 4, 5, 6}, {7.5f, 8, 9, 10, 11, 12, 13, 14}};
    } else if (j == 2) {
      m.type = InstanceMask::Type::RLE;
      m.rle_height = 3;
      m.rle_width = 4;
      m.rle_counts = {0, 5, 2, 5};
    }
    r.masks.push_back(m);
  }
  return r;
}

TEST(Shards, DetectionRoundTrip) {
  TempDir d;
  DatasetSpec spec;
  spec.kind = DatasetKind::Detection;
  spec.encoded = true;
  spec.classes = {"cat", "dog", "bird"};
  ShardWriter w(d.path().string(), spec);
  w.begin_split("val", 9, 2);
  for (int64_t i = 0; i < 9; ++i) w.add(detection_record(i));
  w.end_split();
  const Manifest m = w.finish();
  // Instances per class: record i has i % 4 objects labelled (i + j) % 3.
  std::vector<int64_t> expected(3, 0);
  for (int64_t i = 0; i < 9; ++i)
    for (int j = 0; j < i % 4; ++j) expected[size_t((i + j) % 3)]++;
  EXPECT_EQ(m.splits.at("val").class_counts, expected);

  for (bool fast : {true, false}) {
    SCOPED_TRACE(fast ? "pread path" : "HDF5 path");
    std::unique_ptr<ForceLibraryPath> library;
    if (!fast) library = std::make_unique<ForceLibraryPath>();
    ShardedDataset ds(d.path().string(), "val", true);
    EXPECT_EQ(ds.fast_path("polygon_coords"), fast);
    EXPECT_EQ(ds.fast_path("rle_counts"), fast);
    ASSERT_EQ(ds.size(), 9);
    EXPECT_HAS(error_of([&] { ds.read(0); }), "the dataset is detection, not classification");
    for (int64_t i = 0; i < 9; ++i) {
      SCOPED_TRACE(i);
      const DetectionRecord want = detection_record(i);
      const DetectionRecord r = ds.read_detection(i);
      EXPECT_EQ(r.image, want.image);
      EXPECT_EQ(r.image_id, want.image_id);
      EXPECT_EQ(r.file_name, want.file_name);
      EXPECT_EQ(r.height, 30);
      EXPECT_EQ(r.boxes, want.boxes);
      EXPECT_EQ(r.labels, want.labels);
      EXPECT_EQ(r.iscrowd, want.iscrowd);
      EXPECT_EQ(r.areas, want.areas);
      ASSERT_EQ(r.masks.size(), want.masks.size());
      for (size_t j = 0; j < r.masks.size(); ++j) {
        EXPECT_EQ(r.masks[j].type, want.masks[j].type);
        EXPECT_EQ(r.masks[j].polygons, want.masks[j].polygons);
        EXPECT_EQ(r.masks[j].rle_counts, want.masks[j].rle_counts);
        EXPECT_EQ(r.masks[j].rle_height, want.masks[j].rle_height);
        EXPECT_EQ(r.masks[j].rle_width, want.masks[j].rle_width);
      }
    }
  }
}

TEST(Shards, SegmentationRoundTrip) {
  TempDir d;
  DatasetSpec spec;
  spec.kind = DatasetKind::Segmentation;
  spec.encoded = true;
  spec.classes = {"wall", "sky", "floor"};
  ShardWriter w(d.path().string(), spec);
  w.begin_split("train", 4, 2);
  for (int64_t i = 0; i < 4; ++i) {
    SegmentationRecord r;
    r.image = blob(i, 300 + size_t(i));
    r.height = 8;
    r.width = 6;
    r.channels = 3;
    r.encoded = true;
    r.label_png = blob(100 + i, 50 + size_t(i));
    r.file_name = "training/" + std::to_string(i) + ".jpg";
    w.add(r, i == 0 ? std::vector<int64_t>{} : std::vector<int64_t>{0, i % 3});
  }
  w.end_split();
  const Manifest m = w.finish();
  EXPECT_EQ(m.splits.at("train").class_counts, (std::vector<int64_t>{3 + 1, 1, 1}));
  ShardedDataset ds(d.path().string(), "train");
  EXPECT_TRUE(ds.fast_path("label_png"));
  for (int64_t i = 0; i < 4; ++i) {
    const SegmentationRecord r = ds.read_segmentation(i);
    EXPECT_EQ(r.image, blob(i, 300 + size_t(i)));
    EXPECT_EQ(r.label_png, blob(100 + i, 50 + size_t(i)));
    EXPECT_EQ(r.file_name, "training/" + std::to_string(i) + ".jpg");
    EXPECT_EQ(r.image_id, -1);
    EXPECT_EQ(r.height, 8);
  }
}

TEST(Shards, WriterRejectsBadRecords) {
  TempDir d;
  DatasetSpec spec;
  spec.height = 2;
  spec.width = 2;
  spec.channels = 1;
  spec.classes = {"a", "b"};
  ShardWriter w(d.path().string(), spec);
  EXPECT_HAS(error_of([&] { w.add(raw_record(0, 2, 2, 1, 2)); }), "no split begun");
  w.begin_split("train", 2, 1);
  ClassificationRecord r = raw_record(0, 2, 2, 1, 2);
  r.label = 2;
  EXPECT_HAS(error_of([&] { w.add(r); }), "split 'train' record 0: label 2 out of range [0, 2)");
  r = raw_record(0, 2, 2, 1, 2);
  r.image.pop_back();
  EXPECT_HAS(error_of([&] { w.add(r); }), "raw image has 3 bytes, expected 4");
  r = raw_record(0, 3, 2, 1, 2);
  EXPECT_HAS(error_of([&] { w.add(r); }), "raw image shape 3x2x1 differs from the dataset's 2x2x1");
  EXPECT_HAS(error_of([&] { w.add(encoded_record(0, 10, 2)); }), "the record's image is encoded");
  EXPECT_HAS(error_of([&] { w.add(DetectionRecord{}); }), "is classification, got a detection record");
  w.add(raw_record(0, 2, 2, 1, 2));
  w.add(raw_record(1, 2, 2, 1, 2));
  EXPECT_HAS(error_of([&] { w.add(raw_record(2, 2, 2, 1, 2)); }), "more records than the 2 expected");
  EXPECT_HAS(error_of([&] { w.finish(); }), "split 'train' is still open");
  EXPECT_HAS(error_of([&] { w.begin_split("bad/name", 1, 1); }), "split 'train' is still open");
  w.end_split();
  EXPECT_HAS(error_of([&] { w.begin_split("bad/name", 1, 1); }), "split name 'bad/name'");

  TempDir d2("_det");
  DatasetSpec det;
  det.kind = DatasetKind::Detection;
  det.encoded = true;
  det.classes = {"a"};
  ShardWriter wd(d2.path().string(), det);
  wd.begin_split("train", 5, 1);
  DetectionRecord dr = detection_record(3);
  EXPECT_HAS(error_of([&] { wd.add(dr); }), "label 1 out of range [0, 1)");
  dr.labels.assign(dr.labels.size(), 0);
  dr.masks[2].rle_counts = {1, 2};
  EXPECT_HAS(error_of([&] { wd.add(dr); }), "RLE counts sum to 3 but its size is 3x4");
  dr = detection_record(2);
  dr.labels.assign(dr.labels.size(), 0);
  dr.iscrowd.pop_back();
  EXPECT_HAS(error_of([&] { wd.add(dr); }), "inconsistent object arrays: 2 labels, 8 box coordinates, 1 crowd flags");
}

TEST(Shards, HalfWrittenConversionLeavesNoManifest) {
  TempDir d;
  const std::string dir = d / "ds";
  try {
    DatasetSpec spec;
    spec.height = spec.width = 4;
    spec.channels = 1;
    spec.classes = {"a", "b", "c", "d"};
    ShardWriter w(dir, spec);
    w.begin_split("train", 30, 3);
    for (int64_t i = 0; i < 25; ++i) w.add(raw_record(i, 4, 4, 1, 4));  // two shards written (to temp names)
    bool temp_shards = false;
    for (const auto& e : fs::directory_iterator(dir)) temp_shards |= e.path().string().find(".tmp.") != std::string::npos;
    EXPECT_TRUE(temp_shards);
    throw std::runtime_error("simulated crash");
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "simulated crash");
  }
  EXPECT_TRUE(fs::exists(dir));
  EXPECT_TRUE(fs::is_empty(dir)) << "left: " << to_string(d.entries());
  EXPECT_HAS(error_of([&] { ShardedDataset ds(dir, "train"); }), "has no manifest.json");
}

TEST(Shards, ExistingDatasetNeedsOverwrite) {
  TempDir d;
  write_raw(d.path().string(), 12, 2, 3);
  DatasetSpec spec;
  spec.height = 5;
  spec.width = 4;
  spec.channels = 3;
  spec.classes = class_names(4);
  EXPECT_HAS(error_of([&] { ShardWriter w(d.path().string(), spec); }), "already holds a dataset");
  {
    ShardWriter w(d.path().string(), spec, /*overwrite=*/true);
    // The old manifest and shards are gone as soon as the overwrite begins.
    EXPECT_FALSE(fs::exists(d / "manifest.json"));
    EXPECT_FALSE(fs::exists(shard_path(d, "train", 2)));
    w.begin_split("train", 1, 1);
    w.add(raw_record(0, 5, 4, 3, 4));
    w.end_split();
    w.finish();
  }
  ShardedDataset ds(d.path().string(), "train");
  EXPECT_EQ(ds.size(), 1);
  EXPECT_HAS(error_of([&] { ShardedDataset v(d.path().string(), "val"); }), "has no split 'val' (it has: train)");
}

// ---- errors

TEST(Shards, MissingPiecesAreNamed) {
  TempDir d;
  EXPECT_HAS(error_of([&] { ShardedDataset ds(d / "nope", "train"); }), "dataset folder '" + (d / "nope") + "' does not exist");
  write_raw(d.path().string(), 8, 2, 2);
  ShardedDataset ds(d.path().string(), "train");
  EXPECT_HAS(error_of([&] { ds.read(8); }), "record index 8 out of range [0, 8)");
  EXPECT_HAS(error_of([&] { ds.read(-1); }), "record index -1 out of range [0, 8)");
  EXPECT_HAS(error_of([&] { ds.read_segmentation(0); }), "the dataset is classification, not segmentation");
  ShardedDataset closed;
  EXPECT_HAS(error_of([&] { closed.size(); }), "no dataset is open");
  fs::remove(shard_path(d, "train", 1));
  const std::string e = error_of([&] { ShardedDataset again(d.path().string(), "train"); });
  EXPECT_HAS(e, "shard '" + shard_path(d, "train", 1) + "' (records 4..7): is missing");
}

TEST(Shards, TruncatedShardIsNamedOrSkipped) {
  TempDir d;
  const auto train = write_raw(d.path().string(), 12, 2, 3);
  const std::string victim = shard_path(d, "train", 1);
  testing_data::truncate_file(victim, fs::file_size(victim) / 2);
  std::string e = error_of([&] { ShardedDataset ds(d.path().string(), "train"); });
  EXPECT_HAS(e, "shard '" + victim + "' (records 4..7)");
  EXPECT_HAS(e, "truncated");

  // With skip_corrupt the shard's records are skipped, logged once each and counted.
  ShardedDataset ds(d.path().string(), "train", false, /*skip_corrupt=*/true);
  EXPECT_EQ(ds.size(), 12);
  EXPECT_FALSE(ds.shard_problem(1).empty());
  EXPECT_TRUE(ds.shard_problem(0).empty());
  EXPECT_EQ(ds.try_read(3)->image, train[3].image);
  EXPECT_FALSE(ds.try_read(4).has_value());
  EXPECT_FALSE(ds.try_read(5).has_value());
  EXPECT_FALSE(ds.try_read(4).has_value());
  EXPECT_EQ(ds.skipped(), 2);
  EXPECT_EQ(ds.try_read(8)->image, train[8].image);
  e = error_of([&] { ds.read(6); });  // read() never skips
  EXPECT_HAS(e, "record 6 (shard '" + victim + "', local record 2)");

  // A shard of the right size that HDF5 cannot open (its end cut off and the manifest "fixed").
  std::ifstream in(d / "manifest.json");
  std::stringstream ss;
  ss << in.rdbuf();
  Manifest m = Manifest::from_json(ss.str(), "m");
  m.splits["train"].shards[1].bytes = int64_t(fs::file_size(victim));
  std::ofstream(d / "manifest.json") << m.to_json();
  e = error_of([&] { ShardedDataset again(d.path().string(), "train"); });
  EXPECT_HAS(e, "shard '" + victim + "' (records 4..7): cannot be opened as an HDF5 file (truncated or corrupt?)");
}

TEST(Shards, FlippedByteFailsTheChecksum) {
  TempDir d;
  write_raw(d.path().string(), 12, 2, 3);
  const std::string victim = shard_path(d, "train", 2);
  testing_data::flip_byte(victim, fs::file_size(victim) - 10);
  const std::string e = error_of([&] { ShardedDataset ds(d.path().string(), "train", /*verify_checksums=*/true); });
  EXPECT_HAS(e, "shard '" + victim + "' (records 8..11): checksum mismatch");
  ShardedDataset skipping(d.path().string(), "train", true, true);
  EXPECT_HAS(skipping.shard_problem(2), "checksum mismatch");
  EXPECT_FALSE(skipping.try_read(9).has_value());
  EXPECT_TRUE(skipping.try_read(7).has_value());
}

// The file offset of record `i`'s global heap collection in an encoded shard.
uint64_t heap_collection_of(const std::string& shard, int64_t i) {
  hid_t f = H5Fopen(shard.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t dset = H5Dopen2(f, "image", H5P_DEFAULT);
  const haddr_t base = H5Dget_offset(dset);
  H5Dclose(dset);
  H5Fclose(f);
  const std::vector<uint8_t> bytes = testing_data::read_file(shard);
  uint64_t addr = 0;
  std::memcpy(&addr, bytes.data() + base + 16 * uint64_t(i) + 4, 8);
  return addr;
}

TEST(Shards, CorruptHeapObjectNamesTheRecord) {
  TempDir d;
  std::vector<size_t> sizes(10, 9000);
  write_encoded(d.path().string(), sizes, 1);
  const std::string shard = shard_path(d, "train", 0);
  const uint64_t victim = heap_collection_of(shard, 3);
  int64_t elsewhere = -1;  // a record in another heap collection
  for (int64_t i = 9; i >= 0 && elsewhere < 0; --i) {
    if (heap_collection_of(shard, i) != victim) elsewhere = i;
  }
  ASSERT_GE(elsewhere, 0);
  testing_data::flip_byte(shard, victim + 1);  // "GCOL" -> garbage
  for (bool fast : {true, false}) {
    SCOPED_TRACE(fast ? "pread path" : "HDF5 path");
    std::unique_ptr<ForceLibraryPath> library;
    if (!fast) library = std::make_unique<ForceLibraryPath>();
    ShardedDataset ds(d.path().string(), "train");
    EXPECT_FALSE(ds.fast_path());  // the damaged collection's records go through HDF5
    EXPECT_EQ(ds.read(elsewhere).image, blob(elsewhere, 9000));
    const std::string e = error_of([&] { ds.read(3); });
    EXPECT_HAS(e, "record 3 (shard '" + shard + "', local record 3)");
    EXPECT_HAS(e, "cannot read the record");
  }
  ShardedDataset skipping(d.path().string(), "train", false, true);
  EXPECT_FALSE(skipping.try_read(3).has_value());
  EXPECT_EQ(skipping.skipped(), 1);
  EXPECT_HAS(error_of([&] { ShardedDataset v(d.path().string(), "train", true); }), "checksum mismatch");
}

TEST(Shards, LabelOutOfRangeIsNamedOrSkipped) {
  TempDir d;
  write_raw(d.path().string(), 12, 2, 3);
  const std::string shard = shard_path(d, "train", 1);
  {  // Overwrite label[2] of shard 1 (record 6) with 42 through HDF5.
    hid_t f = H5Fopen(shard.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t dset = H5Dopen2(f, "label", H5P_DEFAULT);
    hid_t space = H5Dget_space(dset);
    const hsize_t start = 2, count = 1;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
    hid_t mem = H5Screate_simple(1, &count, nullptr);
    const int64_t bad = 42;
    ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, &bad), 0);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(dset);
    H5Fclose(f);
  }
  // The file size is unchanged; without verification only the label check catches it.
  const std::string e = error_of([&] { ShardedDataset ds(d.path().string(), "train"); });
  EXPECT_HAS(e, "shard '" + shard + "' (records 4..7): local record 2 (record 6): label 42 out of range [0, 4)");
  ShardedDataset ds(d.path().string(), "train", false, true);
  EXPECT_TRUE(ds.shard_problem(1).empty());
  EXPECT_FALSE(ds.try_read(6).has_value());
  EXPECT_EQ(ds.label(6), -1);
  EXPECT_TRUE(ds.try_read(5).has_value());
  EXPECT_EQ(ds.skipped(), 1);
  EXPECT_HAS(error_of([&] { ds.read(6); }), "record 6 (shard '" + shard + "', local record 2): label 42 out of range");
}

TEST(Shards, NoteCorruptFollowsThePolicy) {
  TempDir d;
  write_raw(d.path().string(), 6, 1, 2);
  ShardedDataset strict(d.path().string(), "train");
  EXPECT_HAS(error_of([&] { strict.note_corrupt(4, "bad JPEG"); }),
             "record 4 (shard '" + shard_path(d, "train", 1) + "', local record 1): bad JPEG");
  ShardedDataset lenient(d.path().string(), "train", false, true);
  lenient.note_corrupt(4, "bad JPEG");
  lenient.note_corrupt(4, "bad JPEG");
  lenient.note_corrupt(1, "bad JPEG");
  EXPECT_EQ(lenient.skipped(), 2);
}

// ---- threads

// A cheap word-wise hash (the byte-wise kind would cost more than the reads being timed).
uint64_t fnv(const std::vector<uint8_t>& v) {
  uint64_t h = 1469598103934665603ull ^ v.size();
  size_t i = 0;
  for (; i + 8 <= v.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, v.data() + i, 8);
    h = (h ^ w) * 1099511628211ull;
  }
  for (; i < v.size(); ++i) h = (h ^ v[i]) * 1099511628211ull;
  return h;
}

// Reads every record with `threads` threads (thread t takes records t, t + threads, ...); returns
// per-record hashes and the records/s.
std::pair<std::vector<uint64_t>, double> read_all(const ShardedDataset& ds, int threads) {
  std::vector<uint64_t> hashes(size_t(ds.size()));
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int64_t i = t; i < ds.size(); i += threads) {
        const ClassificationRecord r = ds.read(i);
        hashes[size_t(i)] = fnv(r.image) ^ uint64_t(r.label);
      }
    });
  }
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {hashes, double(ds.size()) / s};
}

TEST(Shards, ConcurrentReadsMatchSingleThreaded) {
  TempDir d;
  const std::string raw_dir = d / "raw", enc_dir = d / "encoded";
  {
    DatasetSpec spec;
    spec.height = spec.width = 28;
    spec.channels = 1;
    spec.classes = class_names(10);
    ShardWriter w(raw_dir, spec);
    w.begin_split("train", 20000, 4);
    ClassificationRecord r;
    r.height = r.width = 28;
    r.channels = 1;
    for (int64_t i = 0; i < 20000; ++i) {
      r.image = blob(i, 784);
      r.label = i % 10;
      w.add(r);
    }
    w.end_split();
    w.finish();
  }
  std::vector<size_t> sizes;  // ImageNet-like JPEG sizes: 20..140 KB
  for (int i = 0; i < 600; ++i) sizes.push_back(20000 + size_t(i * 7919) % 120000);
  write_encoded(enc_dir, sizes, 4, 10);

  for (const auto& [name, dir] : {std::pair<std::string, std::string>{"raw 28x28", raw_dir}, {"encoded ~80 KB", enc_dir}}) {
    for (bool fast : {true, false}) {
      std::unique_ptr<ForceLibraryPath> library;
      if (!fast) library = std::make_unique<ForceLibraryPath>();
      ShardedDataset ds(dir, "train");
      EXPECT_EQ(ds.fast_path(), fast);
      const auto [one, rate1] = read_all(ds, 1);
      std::string line = detail::concat("1 thread ", int64_t(rate1));
      std::vector<int> counts = {2, 4};
      if (std::thread::hardware_concurrency() > 4) counts.push_back(int(std::thread::hardware_concurrency()));
      for (int threads : counts) {
        const auto [hashes, rate] = read_all(ds, threads);
        EXPECT_EQ(hashes, one) << threads << " threads";
        line += detail::concat(" | ", threads, " threads ", int64_t(rate));
      }
      std::printf("[ records/s ] %-15s %-11s %s\n", name.c_str(), fast ? "pread path" : "HDF5 path", line.c_str());
    }
  }
}

}  // namespace
}  // namespace unirep
