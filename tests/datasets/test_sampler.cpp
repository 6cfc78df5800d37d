// DistributedSampler: the PyTorch DistributedSampler properties across 1-4 ranks (disjoint ranks whose
// union is the dataset, equal counts, wrap-around padding, drop_last), the epoch-seeded Philox
// shuffle (deterministic, pinned values, unbiased), and mid-epoch save/restore.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "core/error.h"
#include "datasets/sampler.h"

namespace unirep {
namespace {

std::vector<int64_t> iota_vec(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t(0));
  return v;
}

// The global order of an epoch rebuilt from the ranks' lists (rank r holds positions r, r + W, ...).
std::vector<int64_t> interleave(int64_t n, int world, uint64_t seed, int64_t epoch, bool shuffle, bool drop_last) {
  std::vector<std::vector<int64_t>> per_rank;
  for (int r = 0; r < world; ++r) {
    DistributedSampler s(n, r, world, seed, shuffle, drop_last);
    s.set_epoch(epoch);
    per_rank.push_back(s.indices());
  }
  std::vector<int64_t> global;
  for (size_t k = 0; k < per_rank[0].size(); ++k)
    for (int r = 0; r < world; ++r) global.push_back(per_rank[size_t(r)][k]);
  return global;
}

TEST(Sampler, RanksPartitionEachEpochWithPadding) {
  for (int64_t n : {1, 2, 7, 10, 13, 16, 101}) {
    for (int world = 1; world <= 4; ++world) {
      for (int64_t epoch : {0, 1, 5}) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " world=" << world << " epoch=" << epoch);
        const int64_t per_rank = (n + world - 1) / world;
        for (int r = 0; r < world; ++r) {
          DistributedSampler s(n, r, world, 17);
          EXPECT_EQ(s.num_samples(), per_rank);
          EXPECT_EQ(s.total_size(), per_rank * world);
        }
        std::vector<int64_t> global = interleave(n, world, 17, epoch, true, false);
        ASSERT_EQ(int64_t(global.size()), per_rank * world);
        // The first n positions are a permutation of the dataset: every sample exactly once.
        std::vector<int64_t> head(global.begin(), global.begin() + n);
        std::vector<int64_t> sorted = head;
        std::sort(sorted.begin(), sorted.end());
        EXPECT_EQ(sorted, iota_vec(n));
        // The padding repeats the start of the order (wrapping around as often as needed).
        for (size_t g = size_t(n); g < global.size(); ++g) EXPECT_EQ(global[g], global[g % size_t(n)]);
        // Disjoint ranks apart from the padding: each rank's own indices repeat only via padding.
        std::map<int64_t, int> count;
        for (int64_t i : global) ++count[i];
        int repeats = 0;
        for (auto& [i, c] : count) repeats += c - 1;
        EXPECT_EQ(repeats, per_rank * world - n);
      }
    }
  }
}

TEST(Sampler, PaddingWrapsAroundInOrder) {
  // No shuffle: the global order is 0..n-1, padded from its start.
  auto rank_indices = [](int64_t n, int r, int w) { return DistributedSampler(n, r, w, 0, false).indices(); };
  EXPECT_EQ(rank_indices(5, 0, 4), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(rank_indices(5, 1, 4), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(rank_indices(5, 2, 4), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(rank_indices(5, 3, 4), (std::vector<int64_t>{3, 2}));
  // Padding longer than the dataset wraps more than once (PyTorch repeats the list).
  EXPECT_EQ(interleave(2, 4, 0, 0, false, false), (std::vector<int64_t>{0, 1, 0, 1}));
  EXPECT_EQ(interleave(1, 3, 0, 0, false, false), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(interleave(10, 3, 0, 0, false, false), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1}));
}

TEST(Sampler, DropLastTruncatesToEqualDisjointShares) {
  for (int64_t n : {1, 3, 7, 10, 13, 16}) {
    for (int world = 1; world <= 4; ++world) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " world=" << world);
      std::vector<int64_t> global = interleave(n, world, 3, 2, true, true);
      EXPECT_EQ(int64_t(global.size()), n / world * world);
      std::set<int64_t> unique(global.begin(), global.end());
      EXPECT_EQ(unique.size(), global.size());  // no index twice
      // The kept indices are the head of the epoch's permutation (the tail is dropped).
      std::vector<int64_t> perm = epoch_permutation(n, 3, 2);
      EXPECT_EQ(global, std::vector<int64_t>(perm.begin(), perm.begin() + int64_t(global.size())));
    }
  }
  EXPECT_EQ(interleave(10, 4, 0, 0, false, true), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(DistributedSampler(3, 2, 4, 0, true, true).num_samples(), 0);
}

TEST(Sampler, ShuffleDependsOnSeedAndEpochOnly) {
  const int64_t n = 50;
  DistributedSampler a(n, 1, 3, 42), b(n, 1, 3, 42), other_seed(n, 1, 3, 43);
  EXPECT_EQ(a.indices(), b.indices());               // same seed, same order
  EXPECT_NE(a.indices(), other_seed.indices());      // another seed, another order
  std::vector<int64_t> epoch0 = a.indices();
  a.set_epoch(1);
  EXPECT_NE(a.indices(), epoch0);                    // another epoch, another order
  b.set_epoch(1);
  EXPECT_EQ(a.indices(), b.indices());
  a.set_epoch(0);
  EXPECT_EQ(a.indices(), epoch0);                    // back to epoch 0: the same order again
  EXPECT_NE(epoch_permutation(n, 42, 0), iota_vec(n));
  EXPECT_EQ(epoch_permutation(n, 42, 7), epoch_permutation(n, 42, 7));
  // Shuffle off: ordered, whatever the seed and epoch.
  DistributedSampler ordered(n, 0, 1, 42, false);
  ordered.set_epoch(9);
  EXPECT_EQ(ordered.indices(), iota_vec(n));
}

TEST(Sampler, PermutationValuesArePinned) {
  // The documented Philox Fisher-Yates shuffle: these values must never change, or a run resumed with
  // a newer build would read other samples than the one that saved its position. (Checked against an
  // independent Python implementation of Philox4x32-10 and the shuffle as sampler.h describes it.)
  EXPECT_EQ(epoch_permutation(10, 0, 0), (std::vector<int64_t>{7, 1, 0, 3, 6, 8, 4, 9, 2, 5}));
  EXPECT_EQ(epoch_permutation(10, 1234, 3), (std::vector<int64_t>{4, 0, 5, 6, 1, 9, 8, 2, 7, 3}));
}

TEST(Sampler, ShuffleIsUnbiased) {
  // Each index lands at each position with probability 1/n: count over many epochs (expected 500
  // per cell; bounds at ~5 sigma).
  const int64_t n = 6, epochs = 3000;
  std::vector<std::vector<int>> count(size_t(n), std::vector<int>(size_t(n), 0));
  for (int64_t e = 0; e < epochs; ++e) {
    std::vector<int64_t> p = epoch_permutation(n, 99, e);
    for (int64_t pos = 0; pos < n; ++pos) ++count[size_t(pos)][size_t(p[size_t(pos)])];
  }
  for (int64_t pos = 0; pos < n; ++pos)
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_GT(count[size_t(pos)][size_t(i)], 400) << "position " << pos << " index " << i;
      EXPECT_LT(count[size_t(pos)][size_t(i)], 600) << "position " << pos << " index " << i;
    }
}

TEST(Sampler, NextTakesTheOrderAndStopsAtTheEnd) {
  DistributedSampler s(11, 0, 2, 5);  // 6 per rank
  std::vector<int64_t> taken = s.next(4);
  EXPECT_EQ(s.consumed(), 4);
  std::vector<int64_t> rest = s.next(4);  // only 2 left
  EXPECT_EQ(rest.size(), 2u);
  taken.insert(taken.end(), rest.begin(), rest.end());
  EXPECT_EQ(taken, s.indices());
  EXPECT_TRUE(s.next(3).empty());
  EXPECT_EQ(s.remaining(), 0);
  s.set_epoch(1);
  EXPECT_EQ(s.consumed(), 0);
  EXPECT_EQ(s.next(100), s.indices());
}

TEST(Sampler, ResumeMidEpochContinuesTheSameIndices) {
  for (int world = 1; world <= 4; ++world) {
    for (int64_t epoch : {0, 3}) {
      for (int r = 0; r < world; ++r) {
        SCOPED_TRACE(testing::Message() << "world=" << world << " rank=" << r << " epoch=" << epoch);
        const int64_t n = 103, batch = 5, k = 3;
        DistributedSampler uninterrupted(n, r, world, 2024);
        uninterrupted.set_epoch(epoch);
        std::vector<int64_t> all = uninterrupted.next(uninterrupted.num_samples());

        DistributedSampler run(n, r, world, 2024);
        run.set_epoch(epoch);
        for (int i = 0; i < k; ++i) run.next(batch);
        SamplerState saved = run.state();
        EXPECT_EQ(saved.epoch, epoch);
        EXPECT_EQ(saved.seed, 2024u);
        EXPECT_EQ(saved.consumed, k * batch);

        // A fresh sampler built with another seed and epoch: restore adopts the saved ones.
        DistributedSampler resumed(n, r, world, 1);
        resumed.restore(saved);
        EXPECT_EQ(resumed.state(), saved);
        std::vector<int64_t> rest = resumed.next(resumed.remaining());
        EXPECT_EQ(rest, std::vector<int64_t>(all.begin() + k * batch, all.end()));
        // The next epoch after the resumed one is the uninterrupted run's next epoch too.
        resumed.set_epoch(epoch + 1);
        uninterrupted.set_epoch(epoch + 1);
        EXPECT_EQ(resumed.indices(), uninterrupted.indices());
      }
    }
  }
}

TEST(Sampler, RestoreRejectsAnotherDatasetOrWorld) {
  DistributedSampler s(100, 0, 2, 1);
  SamplerState st = s.state();
  DistributedSampler other_size(99, 0, 2, 1), other_world(100, 0, 4, 1);
  try {
    other_size.restore(st);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dataset of 100 samples, this sampler has 99"), std::string::npos) << e.what();
  }
  try {
    other_world.restore(st);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("world size 2, this sampler has 4"), std::string::npos) << e.what();
  }
  st.consumed = 51;  // 50 per rank
  EXPECT_THROW(s.restore(st), Error);
}

TEST(Sampler, BadArgumentsAreNamed) {
  try {
    DistributedSampler(10, 2, 2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank must be in [0, 2), got 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(DistributedSampler(10, 0, 0), Error);
  EXPECT_THROW(DistributedSampler(-1, 0, 1), Error);
  DistributedSampler s(10, 0, 1);
  EXPECT_THROW(s.set_epoch(-1), Error);
  EXPECT_THROW(s.index_at(10), Error);
  DistributedSampler empty(0, 0, 2);
  EXPECT_EQ(empty.num_samples(), 0);
  EXPECT_TRUE(empty.next(4).empty());
}

}  // namespace
}  // namespace unirep
