// Collectives and the reducer across real processes: run under `mpirun -np 2` (CTest does, in a
// loopback-only network namespace: tests/distributed/netns_mpirun.sh); skipped in a plain run.
// Every rank runs the same tests in the same order, so their collectives match up.
#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "core/generator.h"
#include "distributed/process_group.h"
#include "distributed/reducer.h"
#include "layers/basic.h"
#include "layers/module.h"

namespace unirep {
namespace {

Communicator* world() {
  static std::unique_ptr<Communicator> comm = [] {
    const DistributedEnv env = read_distributed_env();
    return env.launched && env.size > 1 ? make_communicator("mpi", Device::cpu(), 60) : nullptr;
  }();
  return comm.get();
}

#define REQUIRE_WORLD()                                                                 \
  Communicator* comm = world();                                                         \
  if (!comm) GTEST_SKIP() << "needs mpirun -np 2 or more (tests/distributed/netns_mpirun.sh)"; \
  const int rank = comm->rank(), size = comm->size()

TEST(DistributedMpi, MaxOverRanksOfAHostValue) {
  REQUIRE_WORLD();
  // The trainer's stop flag: only the last rank saw a signal, every rank learns of it.
  EXPECT_EQ(comm->max_over_ranks(rank == size - 1 ? 15 : 0), 15);
  EXPECT_EQ(comm->max_over_ranks(0), 0);
  EXPECT_EQ(comm->max_over_ranks(int64_t(rank) * (int64_t(1) << 40)), int64_t(size - 1) << 40);
  // The default path (a tensor all-reduce on the communicator's device) agrees.
  EXPECT_EQ(comm->Communicator::max_over_ranks(rank + 7), size + 6);
}

TEST(DistributedMpi, AllReduceSumAndMax) {
  REQUIRE_WORLD();
  EXPECT_EQ(comm->backend(), "mpi");
  // float32: rank r contributes (r + 1) * (i + 1) at index i.
  std::vector<float> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float((rank + 1) * (i + 1));
  Tensor f = Tensor::from_vector(values, {1000});
  comm->all_reduce(f, ReduceOp::Sum);
  const double ranks_sum = double(size) * (size + 1) / 2;
  std::vector<float> got = f.to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], float(ranks_sum * double(i + 1))) << i;
  Tensor fmax = Tensor::from_vector(std::vector<float>{float(rank), -float(rank)}, {2});
  comm->all_reduce(fmax, ReduceOp::Max);
  EXPECT_EQ(fmax.to_vector<float>(), (std::vector<float>{float(size - 1), 0.f}));
  // int64 beyond float precision.
  const int64_t big = int64_t(1) << 55;
  Tensor i64 = Tensor::from_vector(std::vector<int64_t>{big + rank, -rank, 7}, {3});
  comm->all_reduce(i64, ReduceOp::Sum);
  EXPECT_EQ(i64.to_vector<int64_t>(), (std::vector<int64_t>{size * big + int64_t(ranks_sum) - size,
                                                            -(int64_t(ranks_sum) - size), 7 * size}));
  Tensor imax = Tensor::from_vector(std::vector<int64_t>{big + rank, -rank}, {2});
  comm->all_reduce(imax, ReduceOp::Max);
  EXPECT_EQ(imax.to_vector<int64_t>(), (std::vector<int64_t>{big + size - 1, 0}));
  Tensor imin = Tensor::from_vector(std::vector<int64_t>{rank}, {1});
  comm->all_reduce(imin, ReduceOp::Min);
  EXPECT_EQ(imin.item(), 0.0);
}

TEST(DistributedMpi, BroadcastFromEveryRoot) {
  REQUIRE_WORLD();
  for (int root = 0; root < size; ++root) {
    Tensor t = Tensor::full({2, 3}, rank == root ? 10.0 + root : -1.0, DType::Float64);
    comm->broadcast(t, root);
    for (double v : t.to_vector<double>()) ASSERT_EQ(v, 10.0 + root);
  }
  comm->barrier();
}

TEST(DistributedMpi, BadTensorsAreNamed) {
  REQUIRE_WORLD();
  Tensor bf16 = Tensor::zeros({2}, DType::BFloat16);
  EXPECT_THROW(comm->all_reduce(bf16), Error);
  Tensor ints = Tensor::zeros({2}, DType::Int64);
  EXPECT_THROW(comm->all_reduce(ints, ReduceOp::Avg), Error);
  (void)rank, (void)size;
}

TEST(DistributedMpi, EvalSumsAreExact) {
  REQUIRE_WORLD();
  const int64_t big = (int64_t(1) << 60) / size;
  std::vector<int64_t> counts = all_reduce_sum(*comm, std::vector<int64_t>{big + rank, 1});
  EXPECT_EQ(counts, (std::vector<int64_t>{big * size + size * (size - 1) / 2, size}));
  std::vector<double> sums = all_reduce_sum(*comm, std::vector<double>{0.5 * rank});
  EXPECT_EQ(sums[0], 0.25 * size * (size - 1));
}

// Two layers; rank q's batch is drawn from seed 100 + q.
struct Model {
  Tensor w1, b1, w2;
  explicit Model(uint64_t seed) {
    Generator gen(seed);
    w1 = Tensor::randn({6, 16}, gen).requires_grad_();
    b1 = Tensor::randn({16}, gen).requires_grad_();
    w2 = Tensor::randn({16, 3}, gen).requires_grad_();
  }
  std::vector<Tensor> params() const { return {w1, b1, w2}; }
  Tensor loss(int q, int micro) const {
    Generator gen(100 + uint64_t(q) * 10 + uint64_t(micro));
    Tensor x = Tensor::randn({5, 6}, gen);
    Tensor y = matmul(gelu(add(matmul(x, w1), b1)), w2);
    return mean(mul(y, y));
  }
};

TEST(DistributedMpi, ReducerAveragesTheRanksGradients) {
  REQUIRE_WORLD();
  Model model(7);
  const std::vector<Tensor> params = model.params();
  // Every rank's gradient of two accumulated micro-batches, computed here alone.
  std::vector<Tensor> expected;
  for (int q = 0; q < size; ++q) {
    for (const Tensor& p : params) p.set_grad(Tensor());
    model.loss(q, 0).backward();
    model.loss(q, 1).backward();
    for (size_t i = 0; i < params.size(); ++i) {
      if (q == 0)
        expected.push_back(params[i].grad().clone());
      else
        expected[i].add_(params[i].grad());
    }
  }
  for (Tensor& e : expected) e.mul_(1.0 / size);

  for (const Tensor& p : params) p.set_grad(Tensor());
  GradientReducer reducer(*comm, params, /*bucket_bytes=*/64, /*first_bucket_bytes=*/64);
  EXPECT_EQ(reducer.bucket_layout(), (std::vector<std::vector<int64_t>>{{2}, {1}, {0}}));
  for (int step = 0; step < 2; ++step) {
    reducer.prepare_for_backward(false);
    model.loss(rank, 0).backward();
    EXPECT_EQ(reducer.collectives_issued(), 3 * step);
    reducer.prepare_for_backward(true);
    model.loss(rank, 1).backward();
    EXPECT_EQ(reducer.collectives_issued(), 3 * step + 3);  // all issued during backward
    reducer.finish();
    for (size_t i = 0; i < params.size(); ++i) {
      std::vector<float> got = params[i].grad().to_vector<float>(), want = expected[i].to_vector<float>();
      for (size_t k = 0; k < got.size(); ++k)
        ASSERT_NEAR(got[k], want[k], 1e-5f * std::max(1.f, std::abs(want[k]))) << "param " << i << " [" << k << "]";
    }
    for (const Tensor& p : params) p.set_grad(Tensor());  // zero_grad
  }
}

struct Net : Container {
  Net() {
    fc = add("fc", std::make_shared<Linear>(4, 3));
    bn = add("bn", std::make_shared<BatchNorm2d>(3));
  }
  Linear* fc;
  BatchNorm2d* bn;
};

TEST(DistributedMpi, ModuleStateComesFromRoot) {
  REQUIRE_WORLD();
  Net net;
  NamedTensors state = net.state_dict();  // parameters and buffers (an int64 counter among them)
  {
    NoGradGuard no_grad;
    for (size_t k = 0; k < state.size(); ++k) state[k].second.fill_(double(rank * 100 + int(k)));
  }
  broadcast_module_state(*comm, net, size - 1);
  for (size_t k = 0; k < state.size(); ++k)
    for (double v : state[k].second.to_vector<double>()) ASSERT_EQ(v, double((size - 1) * 100 + int(k))) << state[k].first;
}

}  // namespace
}  // namespace unirep
