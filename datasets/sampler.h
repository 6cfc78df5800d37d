// DistributedSampler: which dataset indices this rank reads in an epoch, in which order.
//
// PyTorch's torch.utils.data.DistributedSampler semantics:
// - The epoch's global order is a permutation of [0, N) (shuffle) or [0, N) itself (no shuffle). It
//   depends only on (seed, epoch), so every rank computes the same one without communicating.
// - Without drop_last it is padded to total = W * ceil(N / W) by wrapping around to its start
//   (global position g holds order[g % N]); with drop_last it is cut to total = W * floor(N / W).
// - Rank r takes global positions r, r + W, r + 2W, ...: num_samples = total / W indices. The ranks
//   are disjoint and together cover every index once per epoch, apart from the wrap-around padding
//   (at most W - 1 repeats, or the dropped tail with drop_last).
//
// The shuffle is a Fisher-Yates shuffle driven by Philox4x32-10 (core/generator.h), not by
// std::mt19937_64 with a std:: distribution (whose output differs between standard libraries): for
// i = N-1 down to 1, the draw is the 64-bit word u = (x0 << 32) | x1 of philox4x32(key = seed,
// counter = epoch * 2^40 + i) and j = floor(u * (i + 1) / 2^64); swap(order[i], order[j]). The result
// is the same on every platform, compiler and thread count. Hence N < 2^40 and 0 <= epoch < 2^24.
//
// Position: the sampler counts the indices consumed in the epoch; state() saves (seed, epoch,
// consumed) and restore() continues with exactly the indices an uninterrupted run would have
// produced. The data loader (datasets/loader.h) saves the position of the batches it has handed
// out, not of those it has prefetched.
#pragma once
#include <cstdint>
#include <vector>

namespace unirep {

struct SamplerState {
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t consumed = 0;      // indices of the epoch this rank has consumed
  int64_t dataset_size = 0;  // restore() checks these two against the sampler's
  int64_t world_size = 1;
  bool operator==(const SamplerState& o) const {  // spelled out: the header stays C++17 (.cu files)
    return seed == o.seed && epoch == o.epoch && consumed == o.consumed && dataset_size == o.dataset_size &&
           world_size == o.world_size;
  }
  bool operator!=(const SamplerState& o) const { return !(*this == o); }
};

// The epoch's shuffled order of [0, n) (the Philox Fisher-Yates shuffle described above).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

class DistributedSampler {
 public:
  DistributedSampler(int64_t dataset_size, int rank, int world_size, uint64_t seed = 0, bool shuffle = true,
                     bool drop_last = false);

  // Starts epoch `epoch` from its beginning (call it before every epoch, as in PyTorch).
  void set_epoch(int64_t epoch);

  int64_t epoch() const { return epoch_; }
  uint64_t seed() const { return seed_; }
  int64_t dataset_size() const { return dataset_size_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool shuffle() const { return shuffle_; }
  bool drop_last() const { return drop_last_; }
  int64_t num_samples() const { return num_samples_; }  // per rank and epoch
  int64_t total_size() const { return num_samples_ * world_size_; }

  // This rank's indices of the epoch, in order (num_samples of them).
  const std::vector<int64_t>& indices() const { return indices_; }
  int64_t index_at(int64_t position) const;  // indices()[position], range-checked

  int64_t consumed() const { return consumed_; }
  int64_t remaining() const { return num_samples_ - consumed_; }
  // Takes up to n of the next indices (fewer at the end of the epoch, none after it).
  std::vector<int64_t> next(int64_t n);

  SamplerState state() const;
  // Moves to the saved epoch and position, adopting the saved seed. Throws naming both values when the
  // dataset size or the world size differ from this sampler's (the position would mean other indices).
  void restore(const SamplerState& state);

 private:
  void build_indices();

  int64_t dataset_size_;
  int rank_;
  int world_size_;
  uint64_t seed_;
  bool shuffle_;
  bool drop_last_;
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
  int64_t consumed_ = 0;
  std::vector<int64_t> indices_;
};

}  // namespace unirep
