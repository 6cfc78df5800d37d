// The data-pipeline benchmark (`unirep data bench`): decoded + augmented images per second with the
// full ImageNet training pipeline at 224 (decode -> RandomResizedCrop bicubic -> flip -> RandAugment
// rand-m9-mstd0.5-inc1 -> normalise -> random erasing), on JPEGs of ImageNet size.
#pragma once
#include <cstdint>
#include <vector>

#include "datasets/image.h"

namespace unirep {

// A photo-like test image: smooth colour gradients, objects with hard edges, a mid-frequency texture
// that varies over the image, and sensor-like noise. At 500x375 and quality 90 it encodes to
// ~100-130 KB, the size of a typical ImageNet JPEG (flat colours would compress to a few KB and
// decode unrealistically fast). Deterministic for a seed.
Image synthetic_photo(int64_t height, int64_t width, uint64_t seed);

// `count` distinct synthetic JPEGs of the given size and quality (seeds seed, seed + 1, ...).
std::vector<std::vector<uint8_t>> synthetic_jpegs(int count, int64_t height = 375, int64_t width = 500,
                                                  int quality = 90, uint64_t seed = 0);

struct AugmentBenchResult {
  double images_per_second = 0;   // all threads together, wall clock
  double per_core = 0;            // images_per_second / threads
  // Images per second of CPU time the worker threads consumed (CLOCK_THREAD_CPUTIME_ID): the per-core
  // cost of the pipeline itself, which other processes sharing the cores do not inflate. On an idle
  // machine it equals per_core (up to thread start-up).
  double per_cpu_second = 0;
  int threads = 0;
  int images = 0;
  double seconds = 0;
  double cpu_seconds = 0;
  double mean_jpeg_bytes = 0;
};

// Runs the pipeline on `images` images (cycling through 16 distinct synthetic 500x375 q90 JPEGs) on
// `threads` threads (<= 0: all cores), each writing a normalised float32 224x224x3 tensor into its
// own buffer. Prints the figures when `print` is set.
AugmentBenchResult augment_bench(int threads, int images, bool print, bool channels_last = true);

// The CLI entry point (`unirep data bench` is hooked here by the launcher): returns images/s per core.
double run_augment_bench(int threads, int images, bool print);

// `unirep data bench`: runs augment_bench with printing and returns a process exit code (0).
int data_bench(int threads = 0, int images = 2000);

}  // namespace unirep
