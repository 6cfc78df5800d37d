// `unirep data bench DIR` and `unirep data synth DST`: the whole input pipeline measured on a stored
// dataset (shard read -> JPEG decode -> ImageNet train augmentation at 224 -> normalised NHWC batch
// rows, through the DataLoader's worker pool), and a synthetic ImageNet-size JPEG dataset to run it on.
#pragma once
#include <cstdint>
#include <string>

namespace unirep {

struct DatasetBenchResult {
  double images_per_second = 0;  // wall clock, all workers
  double per_core = 0;           // images_per_second / workers
  double per_cpu_second = 0;     // images per second of process CPU time (robust to a busy machine)
  int64_t images = 0;
  int workers = 0;
};

// Encoded classification dataset of `count` synthetic 500x375 q90 photo-like JPEGs (10 classes) in `dst`.
void make_synthetic_dataset(const std::string& dst, int64_t count, int64_t shards, bool overwrite);

DatasetBenchResult dataset_bench(const std::string& dir, const std::string& split, int workers, int64_t images,
                                 int64_t batch_size, bool print);

}  // namespace unirep
