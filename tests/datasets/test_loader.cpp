// DataLoader: output equal to a sequential reference whatever the worker count and timing, the bounded
// queue, error propagation and skipping, prompt shutdown, buffer reuse, save/restore of the consumed
// position (not the prefetched one), the batch function, and the CUDA path (skipped without a GPU).
// A watchdog aborts the process if a test hangs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/pinned.h"
#include "datasets/loader.h"

namespace unirep {
namespace {

using Clock = std::chrono::steady_clock;

// Aborts the test binary if the scope is not left within `limit` (a hung loader would otherwise
// block the suite forever).
class Watchdog {
 public:
  explicit Watchdog(std::chrono::milliseconds limit) : thread_([this, limit] {
      std::unique_lock<std::mutex> lk(mu_);
      if (!cv_.wait_for(lk, limit, [this] { return done_; })) {
        std::fprintf(stderr, "Watchdog: test exceeded %lld ms (a hang?)\n", static_cast<long long>(limit.count()));
        std::abort();
      }
    }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

constexpr int64_t kH = 3, kW = 2, kC = 3, kRow = kH * kW * kC;

float pixel(int64_t index, int64_t e) { return float(index * 100 + e); }
int64_t label_of(int64_t index) { return (index * 7) % 11; }

void random_sleep(int max_us) {
  thread_local std::mt19937 rng(unsigned(std::hash<std::thread::id>()(std::this_thread::get_id())));
  std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, max_us)(rng)));
}

// Writes the deterministic record for `index` into row `row`.
bool write_record(int64_t index, int64_t row, Batch& b) {
  float* img = b.image(row);
  for (int64_t e = 0; e < kRow; ++e) img[e] = pixel(index, e);
  *b.label(row) = label_of(index);
  return true;
}

LoaderOptions small_options(int workers, int prefetch = 2, int64_t batch = 4, bool drop_last = false) {
  LoaderOptions o;
  o.batch_size = batch;
  o.height = kH;
  o.width = kW;
  o.channels = kC;
  o.num_workers = workers;
  o.prefetch = prefetch;
  o.drop_last = drop_last;
  o.log_skips = false;
  return o;
}

// Checks one handed-out batch against the sampler order: rows hold positions first..first+size-1.
void expect_batch(const Batch& b, const std::vector<int64_t>& order, int64_t first, int64_t size, int64_t epoch) {
  ASSERT_EQ(b.size, size);
  ASSERT_EQ(b.images.shape(), (Shape{size, kH, kW, kC}));
  ASSERT_EQ(b.labels.shape(), (Shape{size}));
  EXPECT_EQ(b.position, first);
  EXPECT_EQ(b.epoch, epoch);
  std::vector<float> img = b.images.to_vector<float>();
  std::vector<int64_t> lab = b.labels.to_vector<int64_t>();
  for (int64_t r = 0; r < size; ++r) {
    int64_t index = order[size_t(first + r)];
    ASSERT_EQ(b.indices[size_t(r)], index) << "row " << r;
    EXPECT_EQ(lab[size_t(r)], label_of(index)) << "row " << r;
    for (int64_t e = 0; e < kRow; ++e) ASSERT_EQ(img[size_t(r * kRow + e)], pixel(index, e)) << "row " << r;
  }
}

// Consumes a whole epoch and compares it with the sequential reference (the sampler's order cut into
// batches).
void expect_epoch(DataLoader& loader, const DistributedSampler& reference, int64_t epoch, int64_t first = 0) {
  const int64_t bs = loader.options().batch_size, n = reference.num_samples();
  int64_t pos = first, count = 0;
  while (const Batch* b = loader.next()) {
    int64_t size = std::min(bs, n - pos);
    SCOPED_TRACE(testing::Message() << "epoch " << epoch << " batch at position " << pos);
    expect_batch(*b, reference.indices(), pos, size, epoch);
    EXPECT_EQ(b->batch_index, pos / bs);
    pos += size;
    ++count;
  }
  int64_t expected_end = loader.options().drop_last ? first + (n - first) / bs * bs : n;
  EXPECT_EQ(pos, expected_end);
  EXPECT_EQ(loader.next(), nullptr);  // stays at the end
  (void)count;
}

TEST(DataLoader, MatchesSequentialReferenceForAnyWorkerCount) {
  Watchdog dog(std::chrono::seconds(30));
  for (int workers : {1, 2, 4}) {
    for (bool drop_last : {false, true}) {
      SCOPED_TRACE(testing::Message() << workers << " workers, drop_last " << drop_last);
      DistributedSampler sampler(75, 1, 2, 11);  // 38 per rank: 9 full batches of 4 and one of 2
      DataLoader loader(sampler, small_options(workers, 2, 4, drop_last), [](int64_t i, int64_t row, Batch& b) {
        random_sleep(300);  // workers finish out of order
        return write_record(i, row, b);
      });
      EXPECT_EQ(loader.num_batches(), drop_last ? 9 : 10);
      DistributedSampler reference = sampler;
      for (int64_t epoch = 0; epoch < 2; ++epoch) {
        loader.set_epoch(epoch);
        reference.set_epoch(epoch);
        expect_epoch(loader, reference, epoch);
      }
    }
  }
}

TEST(DataLoader, QueueNeverExceedsItsCapacity) {
  Watchdog dog(std::chrono::seconds(30));
  const int prefetch = 3;
  std::atomic<int64_t> next_calls{0}, violations{0};
  DistributedSampler sampler(96, 0, 1, 5);
  // The loader may start batch b only while b < handed_out + prefetch; next_calls >= handed_out.
  DataLoader loader(sampler, small_options(4, prefetch), [&](int64_t i, int64_t row, Batch& b) {
    if (b.batch_index >= next_calls.load() + prefetch) ++violations;
    return write_record(i, row, b);
  });
  for (;;) {
    ++next_calls;
    const Batch* b = loader.next();
    if (!b) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a slow consumer: the queue fills up
  }
  EXPECT_EQ(violations.load(), 0);
  LoaderStats st = loader.stats();
  EXPECT_EQ(st.max_in_flight, prefetch);  // filled, never exceeded
  EXPECT_EQ(st.batches_returned, 24);
  EXPECT_EQ(st.batches_started, 24);
}

TEST(DataLoader, WorkerExceptionPropagatesWithTheIndex) {
  Watchdog dog(std::chrono::seconds(30));
  DistributedSampler sampler(40, 0, 1, 8);
  const int64_t bad = sampler.index_at(9);  // batch 2, row 1
  std::atomic<bool> corrupt{true};
  DataLoader loader(sampler, small_options(4, 3), [&](int64_t i, int64_t row, Batch& b) {
    random_sleep(200);
    if (corrupt && i == bad) throw Error("shard_0003.h5: record is corrupt");
    return write_record(i, row, b);
  });
  for (int64_t k = 0; k < 2; ++k) {
    const Batch* b = loader.next();
    ASSERT_NE(b, nullptr);
    expect_batch(*b, sampler.indices(), k * 4, 4, 0);
  }
  for (int attempt = 0; attempt < 2; ++attempt) {  // the loader stays failed: the same error again
    try {
      loader.next();
      FAIL() << "expected the worker's error";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("fetching index " + std::to_string(bad) + " (epoch 0, batch 2, row 1)"), std::string::npos)
          << msg;
      EXPECT_NE(msg.find("shard_0003.h5: record is corrupt"), std::string::npos) << msg;
    }
  }
  EXPECT_EQ(loader.state().consumed, 8);  // the two good batches
  // A new pass recovers.
  corrupt = false;
  loader.set_epoch(1);
  DistributedSampler reference = sampler;
  reference.set_epoch(1);
  expect_epoch(loader, reference, 1);
}

TEST(DataLoader, BatchFunctionErrorPropagates) {
  Watchdog dog(std::chrono::seconds(30));
  DataLoader loader(DistributedSampler(20, 0, 1), small_options(2), write_record, [](Batch& b) {
    if (b.batch_index == 1) throw Error("mixup: bad lambda");
  });
  ASSERT_NE(loader.next(), nullptr);
  try {
    loader.next();
    FAIL() << "expected the batch function's error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch function failed on batch 1 (epoch 0): mixup: bad lambda"),
              std::string::npos)
        << e.what();
  }
}

TEST(DataLoader, SkippedRecordsAreSubstitutedAndCounted) {
  Watchdog dog(std::chrono::seconds(30));
  DistributedSampler sampler(30, 0, 1, 4);
  const std::vector<int64_t>& order = sampler.indices();
  // Corrupt: positions 3 and 4 (consecutive: position 3's first substitute is corrupt too) and the
  // last position (its substitute wraps around to position 0).
  std::set<int64_t> corrupt{order[3], order[4], order[29]};
  DataLoader loader(sampler, small_options(3, 2, 4), [&](int64_t i, int64_t row, Batch& b) {
    random_sleep(100);
    if (corrupt.count(i)) return false;
    return write_record(i, row, b);
  });
  std::vector<int64_t> expected = order;
  expected[3] = order[5];
  expected[4] = order[5];
  expected[29] = order[0];
  std::vector<int64_t> got;
  while (const Batch* b = loader.next()) {
    std::vector<float> img = b->images.to_vector<float>();
    for (int64_t r = 0; r < b->size; ++r) {
      got.push_back(b->indices[size_t(r)]);
      EXPECT_EQ(img[size_t(r * kRow)], pixel(b->indices[size_t(r)], 0));  // the row holds the substitute
    }
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(loader.stats().skipped, 4);  // position 3 skipped two records, 4 and 29 one each
}

TEST(DataLoader, TooManySkipsIsAnError) {
  Watchdog dog(std::chrono::seconds(30));
  LoaderOptions o = small_options(2);
  o.max_substitutes = 3;
  o.log_skips = true;  // exercises the log lines (a few on stderr)
  DistributedSampler sampler(10, 0, 1, 0, false);
  DataLoader loader(sampler, o, [](int64_t i, int64_t row, Batch& b) { return i >= 8 ? write_record(i, row, b) : false; });
  try {
    loader.next();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    // Position 0 tried indices 0, 1, 2, 3: all unreadable.
    EXPECT_NE(std::string(e.what()).find("record 3 (epoch 0, position 3) could not be read and neither could 3 "
                                         "substitutes for position 0"),
              std::string::npos)
        << e.what();
  }
}

TEST(DataLoader, DestructionMidEpochIsPrompt) {
  Watchdog dog(std::chrono::seconds(30));
  auto slow_fetch = [](int64_t i, int64_t row, Batch& b) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return write_record(i, row, b);
  };
  DistributedSampler big(100000, 0, 1);
  for (int consumed : {0, 2}) {
    auto loader = std::make_unique<DataLoader>(big, small_options(4, 4, 8), slow_fetch);
    for (int k = 0; k < consumed; ++k) ASSERT_NE(loader->next(), nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers busy, or blocked on a full queue
    auto t0 = Clock::now();
    loader.reset();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    EXPECT_LT(ms, 250.0) << "destruction took " << ms << " ms";  // a record takes 5 ms
  }
  // Right after construction, and with the queue full and nobody consuming.
  { DataLoader quick(big, small_options(2), slow_fetch); }
  {
    DataLoader full(big, small_options(2, 1, 2), write_record);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(full.stats().max_in_flight, 1);
  }
}

TEST(DataLoader, BuffersAreAllocatedOnceAndReused) {
  Watchdog dog(std::chrono::seconds(30));
  const int prefetch = 2;
  DataLoader loader(DistributedSampler(43, 0, 1, 1), small_options(3, prefetch, 4), write_record);
  std::set<const void*> first_epoch;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    loader.set_epoch(epoch);
    while (const Batch* b = loader.next()) {
      const void* p = b->images.data_ptr();
      if (epoch == 0)
        first_epoch.insert(p);
      else
        EXPECT_TRUE(first_epoch.count(p)) << "epoch " << epoch << " batch " << b->batch_index << " uses a new buffer";
      EXPECT_EQ(b->images.storage()->nbytes, size_t(4 * kRow) * sizeof(float));  // the slot's full buffer
    }
  }
  EXPECT_EQ(first_epoch.size(), size_t(prefetch + 1));
}

TEST(DataLoader, StateIsTheConsumedPositionNotThePrefetchedOne) {
  Watchdog dog(std::chrono::seconds(30));
  const int64_t bs = 4;
  DistributedSampler sampler(90, 2, 3, 77);  // 30 per rank
  sampler.set_epoch(2);
  DataLoader loader(sampler, small_options(4, 4, bs), write_record);
  for (int k = 0; k < 3; ++k) ASSERT_NE(loader.next(), nullptr);
  // Let the workers run ahead: they prefetch up to 4 batches beyond the 3 handed out.
  for (int i = 0; i < 200 && loader.stats().batches_started < 7; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(loader.stats().batches_started, 7);
  SamplerState saved = loader.state();
  EXPECT_EQ(saved.epoch, 2);
  EXPECT_EQ(saved.seed, 77u);
  EXPECT_EQ(saved.consumed, 3 * bs);  // the held batch counts, the prefetched ones do not

  // A new loader on a fresh sampler continues exactly where the consumer was.
  DataLoader resumed(DistributedSampler(90, 2, 3, 0), small_options(2, 2, bs), write_record);
  resumed.restore(saved);
  EXPECT_EQ(resumed.state(), saved);
  expect_epoch(resumed, sampler, 2, 3 * bs);
  // Restoring the first loader to its own state drops its prefetched batches and continues too.
  loader.restore(saved);
  expect_epoch(loader, sampler, 2, 3 * bs);
  EXPECT_EQ(loader.state().consumed, 30);
  // The next epoch is the uninterrupted run's next epoch.
  resumed.set_epoch(3);
  DistributedSampler reference = sampler;
  reference.set_epoch(3);
  expect_epoch(resumed, reference, 3);
}

TEST(DataLoader, BatchFunctionSeesCompleteBatchesAndSoftTargets) {
  Watchdog dog(std::chrono::seconds(30));
  LoaderOptions o = small_options(4, 2, 4);
  o.num_classes = 11;
  std::atomic<int> incomplete{0};
  DistributedSampler sampler(22, 0, 1, 3);
  DataLoader loader(
      sampler, o,
      [](int64_t i, int64_t row, Batch& b) {
        random_sleep(200);
        return write_record(i, row, b);
      },
      [&](Batch& b) {  // label smoothing 0.1 into the soft targets
        for (int64_t r = 0; r < b.size; ++r) {
          if (*b.label(r) != label_of(b.indices[size_t(r)])) ++incomplete;
          float* t = b.soft_target(r);
          for (int64_t c = 0; c < 11; ++c) t[c] = 0.1f / 11;
          t[*b.label(r)] += 0.9f;
        }
      });
  int64_t rows = 0;
  while (const Batch* b = loader.next()) {
    ASSERT_EQ(b->soft_targets.shape(), (Shape{b->size, 11}));
    std::vector<float> t = b->soft_targets.to_vector<float>();
    for (int64_t r = 0; r < b->size; ++r)
      for (int64_t c = 0; c < 11; ++c)
        EXPECT_FLOAT_EQ(t[size_t(r * 11 + c)], 0.1f / 11 + (c == label_of(b->indices[size_t(r)]) ? 0.9f : 0.f));
    rows += b->size;
  }
  EXPECT_EQ(rows, 22);
  EXPECT_EQ(incomplete.load(), 0);
}

TEST(DataLoader, BadOptionsAreNamed) {
  LoaderOptions o = small_options(1);
  o.batch_size = 0;
  try {
    DataLoader(DistributedSampler(4, 0, 1), o, write_record);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch_size must be >= 1, got 0"), std::string::npos) << e.what();
  }
  o = small_options(0);
  EXPECT_THROW(DataLoader(DistributedSampler(4, 0, 1), o, write_record), Error);
  o = small_options(1, 0);
  EXPECT_THROW(DataLoader(DistributedSampler(4, 0, 1), o, write_record), Error);
  EXPECT_THROW(DataLoader(DistributedSampler(4, 0, 1), small_options(1), nullptr), Error);
  DataLoader loader(DistributedSampler(4, 0, 1), small_options(1), write_record);
  EXPECT_THROW(loader.restore(DistributedSampler(5, 0, 1).state()), Error);
  ASSERT_NE(loader.next(), nullptr);  // a rejected restore leaves the pass running
  // An empty epoch ends at once.
  DataLoader empty(DistributedSampler(0, 0, 1), small_options(1), write_record);
  EXPECT_EQ(empty.next(), nullptr);
}

TEST(DataLoader, PinnedMemory) {
  if (!cuda_available()) {
    // Without a driver, pinning fails with a clear error instead of returning pageable memory.
    try {
      pinned_empty({4, 4});
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("pinned_alloc: cudaHostAlloc of 64 bytes failed"), std::string::npos)
          << e.what();
    }
    GTEST_SKIP() << "no CUDA device";
  }
  Tensor t = pinned_empty({4, 4}, DType::Float32);
  EXPECT_TRUE(is_pinned(t));
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_FALSE(is_pinned(Tensor::empty({4, 4})));
  t.fill_(3.0);
  EXPECT_EQ(t.cuda().cpu().to_vector<float>(), std::vector<float>(16, 3.0f));
}

TEST(DataLoader, CudaBatchesEqualTheHostRecords) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Watchdog dog(std::chrono::seconds(60));
  LoaderOptions o = small_options(3, 3, 4);
  o.device = Device::cuda(0);
  o.num_classes = 11;
  DistributedSampler sampler(50, 1, 2, 9);
  DataLoader loader(
      sampler, o,
      [](int64_t i, int64_t row, Batch& b) {
        random_sleep(200);
        return write_record(i, row, b);
      },
      [](Batch& b) {
        for (int64_t r = 0; r < b.size; ++r)
          for (int64_t c = 0; c < 11; ++c) b.soft_target(r)[c] = float(*b.label(r) + c);
      });
  std::set<const void*> buffers;
  DistributedSampler reference = sampler;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    loader.set_epoch(epoch);
    reference.set_epoch(epoch);
    int64_t pos = 0;
    while (const Batch* b = loader.next()) {
      ASSERT_TRUE(b->images.is_cuda());
      ASSERT_TRUE(b->labels.is_cuda());
      int64_t size = std::min<int64_t>(4, reference.num_samples() - pos);
      expect_batch(*b, reference.indices(), pos, size, epoch);  // to_vector copies on the compute stream
      std::vector<float> t = b->soft_targets.to_vector<float>();
      for (int64_t r = 0; r < size; ++r)
        EXPECT_EQ(t[size_t(r * 11 + 5)], float(label_of(reference.indices()[size_t(pos + r)]) + 5));
      buffers.insert(b->images.data_ptr());
      pos += size;
    }
    EXPECT_EQ(pos, reference.num_samples());
  }
  EXPECT_EQ(buffers.size(), 4u);  // prefetch + 1 device buffers, reused in the second epoch
}

}  // namespace
}  // namespace unirep
