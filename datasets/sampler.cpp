// DistributedSampler (see sampler.h for the semantics and the shuffle).
#include "datasets/sampler.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/generator.h"

namespace unirep {

namespace {
constexpr int64_t kMaxDatasetSize = int64_t(1) << 40;  // the counter's low 40 bits hold i
constexpr int64_t kMaxEpoch = int64_t(1) << 24;        // its high 24 bits hold the epoch
}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  UNIREP_CHECK(n >= 0 && n < kMaxDatasetSize, "epoch_permutation: size must be in [0, 2^40), got ", n);
  UNIREP_CHECK(epoch >= 0 && epoch < kMaxEpoch, "epoch_permutation: epoch must be in [0, 2^24), got ", epoch);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  const uint64_t base = uint64_t(epoch) << 40;
  for (int64_t i = n - 1; i > 0; --i) {
    PhiloxResult r = philox4x32(seed, base + uint64_t(i));
    uint64_t u = (uint64_t(r.x[0]) << 32) | r.x[1];
    auto j = int64_t((static_cast<unsigned __int128>(u) * uint64_t(i + 1)) >> 64);
    std::swap(order[size_t(i)], order[size_t(j)]);
  }
  return order;
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int rank, int world_size, uint64_t seed, bool shuffle,
                                       bool drop_last)
    : dataset_size_(dataset_size), rank_(rank), world_size_(world_size), seed_(seed), shuffle_(shuffle),
      drop_last_(drop_last) {
  UNIREP_CHECK(world_size >= 1, "DistributedSampler: world_size must be >= 1, got ", world_size);
  UNIREP_CHECK(rank >= 0 && rank < world_size, "DistributedSampler: rank must be in [0, ", world_size, "), got ",
               rank);
  UNIREP_CHECK(dataset_size >= 0 && dataset_size < kMaxDatasetSize,
               "DistributedSampler: dataset_size must be in [0, 2^40), got ", dataset_size);
  if (drop_last)
    num_samples_ = dataset_size / world_size;
  else
    num_samples_ = (dataset_size + world_size - 1) / world_size;
  build_indices();
}

void DistributedSampler::build_indices() {
  std::vector<int64_t> order;
  if (shuffle_) {
    order = epoch_permutation(dataset_size_, seed_, epoch_);
  } else {
    order.resize(size_t(dataset_size_));
    std::iota(order.begin(), order.end(), int64_t(0));
  }
  indices_.resize(size_t(num_samples_));
  // Global position g = rank + k * W; past N (padding) it wraps to the start of the order. With
  // drop_last, total <= N and no position wraps.
  for (int64_t k = 0; k < num_samples_; ++k) {
    int64_t g = rank_ + k * int64_t(world_size_);
    indices_[size_t(k)] = order[size_t(g % dataset_size_)];
  }
}

void DistributedSampler::set_epoch(int64_t epoch) {
  UNIREP_CHECK(epoch >= 0 && epoch < kMaxEpoch, "DistributedSampler::set_epoch: epoch must be in [0, 2^24), got ",
               epoch);
  consumed_ = 0;
  if (epoch == epoch_) return;  // same order: nothing to recompute
  epoch_ = epoch;
  build_indices();
}

int64_t DistributedSampler::index_at(int64_t position) const {
  UNIREP_CHECK(position >= 0 && position < num_samples_, "DistributedSampler::index_at: position ", position,
               " out of range [0, ", num_samples_, ")");
  return indices_[size_t(position)];
}

std::vector<int64_t> DistributedSampler::next(int64_t n) {
  UNIREP_CHECK(n >= 0, "DistributedSampler::next: count must be >= 0, got ", n);
  int64_t take = std::min(n, remaining());
  std::vector<int64_t> out(indices_.begin() + consumed_, indices_.begin() + consumed_ + take);
  consumed_ += take;
  return out;
}

SamplerState DistributedSampler::state() const {
  return SamplerState{seed_, epoch_, consumed_, dataset_size_, world_size_};
}

void DistributedSampler::restore(const SamplerState& s) {
  UNIREP_CHECK(s.dataset_size == dataset_size_, "DistributedSampler::restore: the state is for a dataset of ",
               s.dataset_size, " samples, this sampler has ", dataset_size_);
  UNIREP_CHECK(s.world_size == world_size_, "DistributedSampler::restore: the state is for world size ",
               s.world_size, ", this sampler has ", world_size_);
  UNIREP_CHECK(s.epoch >= 0 && s.epoch < kMaxEpoch, "DistributedSampler::restore: epoch must be in [0, 2^24), got ",
               s.epoch);
  UNIREP_CHECK(s.consumed >= 0 && s.consumed <= num_samples_, "DistributedSampler::restore: consumed must be in [0, ",
               num_samples_, "], got ", s.consumed);
  bool rebuild = s.seed != seed_ || s.epoch != epoch_;
  seed_ = s.seed;
  epoch_ = s.epoch;
  if (rebuild) build_indices();
  consumed_ = s.consumed;
}

}  // namespace unirep
