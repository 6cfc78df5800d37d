// An in-process Communicator for tests without MPI: R "ranks" are R std::threads of one process
// that meet in a shared FakeGroup.
//
//   run_ranks(3, [&](Communicator& comm) { ... comm.all_reduce(t); ... });
//
// A collective is two barrier phases: every rank publishes its tensor (a handle) in its slot; after
// the first barrier each rank reduces all slots in rank order into a fresh tensor (so every rank
// gets bitwise the same result, as from a real backend); after the second barrier, when nobody
// reads the slots any more, it copies the result into its own tensor. Sums add in the tensor's
// dtype (as NCCL/MPI do); max/min compare through double. Tensors may live on any device.
// When a rank throws, the group is aborted: ranks waiting in (or later entering) a barrier throw
// too instead of hanging, and run_ranks rethrows the first rank's exception.
#pragma once
#include <algorithm>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <omp.h>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "distributed/communicator.h"

namespace unirep::testing {

class FakeGroup {
 public:
  explicit FakeGroup(int size) : size_(size), slots_(size_t(size)) {}
  int size() const { return size_; }

  // Blocks until all ranks arrived; throws once the group is aborted.
  void barrier() {
    std::unique_lock<std::mutex> lock(mutex_);
    check_alive();
    const uint64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
    check_alive();
  }

  void abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
    cv_.notify_all();
  }

  Tensor& slot(int rank) { return slots_[size_t(rank)]; }

 private:
  void check_alive() const { UNIREP_CHECK(!aborted_, "FakeGroup: another rank failed"); }

  const int size_;
  std::vector<Tensor> slots_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

class FakeCommunicator : public Communicator {
 public:
  FakeCommunicator(FakeGroup& group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_.size(); }
  std::string backend() const override { return "fake"; }

  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) override {
    exchange(t, [&] {
      NoGradGuard no_grad;
      Tensor out = group_.slot(0).clone();
      if (op == ReduceOp::Sum) {
        for (int r = 1; r < size(); ++r) out.add_(group_.slot(r));
        return out;
      }
      std::vector<double> acc = out.to_vector<double>();
      for (int r = 1; r < size(); ++r) {
        const std::vector<double> v = group_.slot(r).to_vector<double>();
        for (size_t i = 0; i < acc.size(); ++i)
          acc[i] = op == ReduceOp::Max ? std::max(acc[i], v[i]) : std::min(acc[i], v[i]);
      }
      return Tensor::from_vector(acc, t.shape(), t.dtype(), t.device());
    });
    ++all_reduces_;
  }

  void broadcast(Tensor& t, int root = 0) override {
    exchange(t, [&] {
      NoGradGuard no_grad;
      return group_.slot(root).clone();
    });
  }

  void barrier() override { group_.barrier(); }

  // How many all_reduce calls this rank made (tests count the collectives of a layer).
  int all_reduces() const { return all_reduces_; }

 private:
  template <class Reduce> void exchange(Tensor& t, const Reduce& reduce) {
    UNIREP_CHECK(t.is_contiguous(), "FakeCommunicator: collectives need contiguous tensors, got ", t.str());
    group_.slot(rank_) = t;
    group_.barrier();
    for (int r = 0; r < size(); ++r)
      UNIREP_CHECK(group_.slot(r).shape() == t.shape() && group_.slot(r).dtype() == t.dtype(),
                   "FakeCommunicator: rank ", r, " passed ", group_.slot(r).str(), ", rank ", rank_, " ", t.str());
    Tensor out = reduce();
    group_.barrier();
    group_.slot(rank_) = Tensor();
    NoGradGuard no_grad;
    t.copy_(out);
  }

  FakeGroup& group_;
  const int rank_;
  int all_reduces_ = 0;
};

// Runs fn(comm) for ranks 0..size-1, each on its own thread with one OpenMP thread, and rethrows
// the first exception a rank threw (the others are released from their barriers).
inline void run_ranks(int size, const std::function<void(FakeCommunicator&)>& fn) {
  FakeGroup group(size);
  std::mutex mutex;
  std::exception_ptr first_error;
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      omp_set_num_threads(1);
      FakeCommunicator comm(group, r);
      try {
        fn(comm);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          if (!first_error) first_error = std::current_exception();
        }
        group.abort();
      }
    });
  for (auto& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace unirep::testing
