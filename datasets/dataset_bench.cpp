#include "datasets/dataset_bench.h"

#include <ctime>
#include <chrono>
#include <cstdio>
#include <thread>

#include "datasets/bench.h"
#include "datasets/loader.h"
#include "datasets/random.h"
#include "datasets/sampler.h"
#include "datasets/shards.h"
#include "datasets/transforms.h"

namespace unirep {

void make_synthetic_dataset(const std::string& dst, int64_t count, int64_t shards, bool overwrite) {
  UNIREP_CHECK(count > 0 && shards > 0, "data synth: --count and --shards must be positive");
  DatasetSpec spec;
  spec.kind = DatasetKind::Classification;
  spec.encoded = true;
  for (int c = 0; c < 10; ++c) spec.classes.push_back("class" + std::to_string(c));
  spec.source = "synthetic 500x375 q90 JPEGs (unirep data synth)";
  ShardWriter writer(dst, spec, overwrite);
  writer.begin_split("train", count, shards);
  std::vector<std::vector<uint8_t>> jpegs = synthetic_jpegs(16);
  for (int64_t i = 0; i < count; ++i) {
    ClassificationRecord r;
    r.image = jpegs[size_t(i % int64_t(jpegs.size()))];
    r.label = i % 10;
    r.height = 375, r.width = 500, r.channels = 3;
    r.encoded = true;
    writer.add(r);
  }
  writer.end_split();
  writer.finish();
}

DatasetBenchResult dataset_bench(const std::string& dir, const std::string& split, int workers, int64_t images,
                                 int64_t batch_size, bool print) {
  if (workers <= 0) workers = int(std::max(1u, std::thread::hardware_concurrency()));
  ShardedDataset data(dir, split);
  UNIREP_CHECK(data.size() > 0, "data bench: split '", split, "' of '", dir, "' is empty");
  UNIREP_CHECK(data.manifest().encoded, "data bench: '", dir, "' stores raw images; the bench measures JPEG decoding");
  LoaderOptions o;
  o.batch_size = batch_size;
  o.height = 224, o.width = 224, o.channels = 3;
  o.num_workers = workers;
  o.prefetch = 2 * workers;
  ImageNetTrainConfig config;
  auto fetch = [&](int64_t index, int64_t row, Batch& batch) {
    ClassificationRecord r = data.read(index);
    Rng rng = make_rng(0x5eed, uint64_t(index), uint64_t(batch.epoch));
    imagenet_train_transform_jpeg(r.image.data(), r.image.size(), config, rng, batch.image(row));
    *batch.label(row) = r.label;
    return true;
  };
  DatasetBenchResult result;
  result.workers = workers;
  std::clock_t cpu0 = std::clock();
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t epoch = 0; result.images < images; ++epoch) {
    DataLoader loader(DistributedSampler(data.size(), 0, 1, 0, true, false), o, fetch);
    loader.set_epoch(epoch);
    while (const Batch* b = loader.next()) {
      result.images += b->size;
      if (result.images >= images) break;
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = double(std::clock() - cpu0) / CLOCKS_PER_SEC;
  result.images_per_second = double(result.images) / seconds;
  result.per_core = result.images_per_second / workers;
  result.per_cpu_second = cpu > 0 ? double(result.images) / cpu : 0;
  if (print)
    std::printf("[data bench] %s/%s: %lld images, %d workers, batch %lld: %.0f img/s, %.0f img/s per core "
                "(wall), %.0f img/s per CPU-second\n",
                dir.c_str(), split.c_str(), (long long)result.images, workers, (long long)batch_size,
                result.images_per_second, result.per_core, result.per_cpu_second);
  return result;
}

}  // namespace unirep
