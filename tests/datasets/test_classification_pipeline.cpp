// The classification fetch functions: geometry of the Small pipeline, determinism per (seed, epoch,
// index), channel replication, and errors that name the record.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "datasets/classification_pipeline.h"
#include "tests/datasets/fixtures.h"
#include "tests/datasets/helpers.h"

namespace unirep {
namespace {

using testing_data::TempDir;
using testing_data::error_of;

// 3 raw 4x4 grey images: pixel value 10 * (record + 1) + y * 4 + x; labels 0, 1, 7.
std::shared_ptr<const ShardedDataset> tiny_dataset(const TempDir& dir) {
  DatasetSpec spec;
  spec.height = spec.width = 4;
  spec.channels = 1;
  spec.classes = {"a", "b", "c", "d", "e", "f", "g", "h"};
  ShardWriter writer(dir / "ds", spec, true);
  writer.begin_split("train", 3, 1);
  const int64_t labels[] = {0, 1, 7};
  for (int64_t i = 0; i < 3; ++i) {
    ClassificationRecord r;
    r.height = r.width = 4;
    r.channels = 1;
    r.label = labels[i];
    for (int64_t p = 0; p < 16; ++p) r.image.push_back(uint8_t(10 * (i + 1) + p));
    writer.add(r);
  }
  writer.end_split();
  writer.finish();
  return std::make_shared<const ShardedDataset>(dir / "ds", "train");
}

struct Fetched {
  std::vector<float> image;
  int64_t label;
};

Fetched fetch(const FetchFn& fn, int64_t index, int64_t size, int64_t channels, int64_t epoch = 0) {
  Batch batch;
  batch.images = Tensor::zeros({1, size, size, channels});
  batch.labels = Tensor::zeros({1}, DType::Int64);
  batch.epoch = epoch;
  EXPECT_TRUE(fn(index, 0, batch));
  return {batch.images.to_vector<float>(), batch.labels.to_vector<int64_t>()[0]};
}

ClassificationPipeline small_pipeline(int64_t size, int64_t channels) {
  ClassificationPipeline p;
  p.kind = ClassificationPipeline::Kind::Small;
  p.size = size;
  p.channels = channels;
  p.norm.mean[0] = p.norm.mean[1] = p.norm.mean[2] = 0.0f;
  p.norm.std[0] = p.norm.std[1] = p.norm.std[2] = 1.0f;
  p.translate = 2;
  p.hflip = 0.5;
  p.imagenet.erasing.probability = 0;
  return p;
}

TEST(ClassificationPipeline, SmallEvalCentresTheImageOnZeros) {
  TempDir dir;
  auto ds = tiny_dataset(dir);
  Fetched f = fetch(make_classification_fetch(ds, small_pipeline(8, 1), false, 0, 10), 1, 8, 1);
  EXPECT_EQ(f.label, 1);
  for (int64_t y = 0; y < 8; ++y)
    for (int64_t x = 0; x < 8; ++x) {
      const bool inside = y >= 2 && y < 6 && x >= 2 && x < 6;
      const float expected = inside ? float(20 + (y - 2) * 4 + (x - 2)) / 255.0f : 0.0f;
      EXPECT_FLOAT_EQ(f.image[size_t(y * 8 + x)], expected) << y << "," << x;
    }
}

TEST(ClassificationPipeline, SmallTrainShiftsWithinTheRangeDeterministically) {
  TempDir dir;
  auto ds = tiny_dataset(dir);
  FetchFn fn = make_classification_fetch(ds, small_pipeline(8, 1), true, 5, 10);
  std::set<std::vector<float>> distinct;
  for (int64_t epoch = 0; epoch < 12; ++epoch) {
    Fetched f = fetch(fn, 0, 8, 1, epoch);
    EXPECT_EQ(f.image, fetch(fn, 0, 8, 1, epoch).image) << "same seed, epoch and index";
    double sum = 0;
    for (float v : f.image) sum += v;
    double expected = 0;
    for (int p = 0; p < 16; ++p) expected += (10 + p) / 255.0;
    EXPECT_NEAR(sum, expected, 1e-4) << "a shift of at most 2 keeps the whole 4x4 image on the 8x8 canvas";
    distinct.insert(f.image);
  }
  EXPECT_GT(distinct.size(), 4u);
}

TEST(ClassificationPipeline, GreyRecordsAreReplicatedToRgb) {
  TempDir dir;
  auto ds = tiny_dataset(dir);
  Fetched f = fetch(make_classification_fetch(ds, small_pipeline(4, 3), false, 0, 10), 2, 4, 3);
  for (int64_t p = 0; p < 16; ++p)
    for (int64_t c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(f.image[size_t(p * 3 + c)], float(30 + p) / 255.0f);
}

TEST(ClassificationPipeline, LabelOutOfRangeNamesTheRecord) {
  TempDir dir;
  auto ds = tiny_dataset(dir);
  FetchFn fn = make_classification_fetch(ds, small_pipeline(4, 1), false, 0, 3);
  Batch batch;
  batch.images = Tensor::zeros({1, 4, 4, 1});
  batch.labels = Tensor::zeros({1}, DType::Int64);
  EXPECT_HAS(error_of([&] { fn(2, 0, batch); }), "record 2: label 7 is outside [0, 3)");
  EXPECT_HAS(error_of([] { parse_pipeline_kind("fancy"); }), "unknown augmentation pipeline 'fancy'");
}

}  // namespace
}  // namespace unirep
