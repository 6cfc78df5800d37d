// SyncBatchNorm (distributed/sync_batch_norm.h) on 1, 2 and 3 in-process ranks: forward and
// backward equal single-process batch norm over the concatenated batch (sync_batch_norm_check.h),
// even and uneven splits, a rank with no samples, float64/float32/bf16, one collective per layer
// and direction, a float64 gradcheck of the single-rank path, the BatchNorm2d switch (size-1
// fallback, eval without communication, checkpoint recompute), and the fake communicator itself.
#include <atomic>
#include <string>

#include "autograd/checkpoint.h"
#include "autograd/gradcheck.h"
#include "layers/basic.h"
#include "layers/unireplknet/blocks.h"
#include "tests/distributed/fake_communicator.h"
#include "tests/distributed/sync_batch_norm_check.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::FakeCommunicator;
using testing::FakeGroup;
using testing::run_ranks;
using testing::SyncBnCheck;

void expect_matches_concatenated_batch(const SyncBnCheck& c) {
  run_ranks(int(c.rows.size()), [&](Communicator& comm) {
    EXPECT_TRUE(testing::check_sync_batch_norm(comm, c));
  });
}

// ---------------------------------------------------------------- the op against plain batch norm

TEST(SyncBatchNorm, TwoRanksMatchConcatenatedBatchFloat64) {
  expect_matches_concatenated_batch({{4, 3, 2, 5}, {2, 2}});
  expect_matches_concatenated_batch({{5, 7}, {3, 2}, DType::Float64, Device::cpu(), 1e-12, 1});  // [N, C] input
}

TEST(SyncBatchNorm, ThreeRanksUnevenSplitsFloat64) {
  expect_matches_concatenated_batch({{7, 2, 3, 6}, {3, 1, 3}, DType::Float64, Device::cpu(), 1e-12, 2});
  // A rank without samples still joins both collectives.
  expect_matches_concatenated_batch({{5, 2, 2, 4}, {3, 0, 2}, DType::Float64, Device::cpu(), 1e-12, 3});
  // Affine off.
  SyncBnCheck c{{6, 2, 2, 3}, {2, 2, 2}, DType::Float64, Device::cpu(), 1e-12, 4};
  c.affine = false;
  expect_matches_concatenated_batch(c);
}

TEST(SyncBatchNorm, MatchesConcatenatedBatchFloat32) {
  expect_matches_concatenated_batch({{4, 3, 2, 5}, {2, 2}, DType::Float32, Device::cpu(), 1e-5, 5});
  expect_matches_concatenated_batch({{7, 2, 3, 6}, {3, 1, 3}, DType::Float32, Device::cpu(), 1e-5, 6});
  // 288 rows: the reference's CPU sums cross a row block.
  expect_matches_concatenated_batch({{8, 6, 6, 12}, {5, 3}, DType::Float32, Device::cpu(), 1e-5, 7});
}

// A bf16 input with float32 parameters and running stats (autocast); y and x.grad are bf16, so a
// value may round to the neighbouring bf16 of the reference's.
TEST(SyncBatchNorm, BFloat16InputFloat32Parameters) {
  expect_matches_concatenated_batch({{4, 3, 2, 5}, {1, 3}, DType::BFloat16, Device::cpu(), 1e-2, 8});
}

TEST(SyncBatchNorm, CudaMatchesConcatenatedBatch) {
  UNIREP_SKIP_WITHOUT_CUDA();
  expect_matches_concatenated_batch({{8, 6, 6, 12}, {5, 3}, DType::Float32, Device::cuda(), 1e-5, 9});
  expect_matches_concatenated_batch({{7, 2, 3, 40}, {3, 0, 4}, DType::Float32, Device::cuda(), 1e-5, 10});
  expect_matches_concatenated_batch({{8, 6, 6, 12}, {4, 4}, DType::BFloat16, Device::cuda(), 1e-2, 11});
  expect_matches_concatenated_batch({{4, 3, 2, 5}, {2, 2}, DType::Float64, Device::cuda(), 1e-12, 12});
}

// The float32 combination of per-rank sums would lose the variance of data far from 0 (mean 1e4,
// std 1: E[x^2] - E[x]^2 cancels 8 digits); the float64 sums keep it.
TEST(SyncBatchNorm, VarianceOfDataFarFromZeroFloat32) {
  const int64_t rows = 64, C = 2;
  Generator gen(13);
  Tensor x64;
  {
    NoGradGuard no_grad;
    x64 = add_scalar(Tensor::randn({rows, C}, gen, DType::Float64), 1e4);
  }
  const Tensor x = x64.to(DType::Float32);
  Tensor rv_ref = Tensor::ones({C});
  batch_norm(x, Tensor(), Tensor(), Tensor::zeros({C}), rv_ref, true, 1.0, 1e-5);
  run_ranks(2, [&](Communicator& comm) {
    Tensor rv = Tensor::ones({C});
    sync_batch_norm(x.slice(0, comm.rank() * 32, comm.rank() * 32 + 32), Tensor(), Tensor(), Tensor::zeros({C}), rv,
                    true, 1.0, 1e-5, comm);
    EXPECT_TRUE(testing::sync_bn_close("unbiased variance", rv, rv_ref, 1e-5));
  });
}

// ---------------------------------------------------------------- collectives

TEST(SyncBatchNorm, OneCollectivePerLayerAndDirection) {
  run_ranks(2, [](FakeCommunicator& comm) {
    Generator gen(14);
    Tensor x = Tensor::randn({3, 2, 2, 8}, gen, DType::Float64).requires_grad_();
    Tensor w = Tensor::ones({8}, DType::Float64).requires_grad_(), b = Tensor::zeros({8}, DType::Float64);
    Tensor rm = Tensor::zeros({8}, DType::Float64), rv = Tensor::ones({8}, DType::Float64);
    Tensor y = sync_batch_norm(x, w, b, rm, rv, true, 0.1, 1e-5, comm);
    EXPECT_EQ(comm.all_reduces(), 1) << "forward";
    sum(mul(y, y)).backward();
    EXPECT_EQ(comm.all_reduces(), 2) << "backward";
    // Only the weight needs a gradient: dx is not formed, nothing to reduce.
    Tensor xc = x.detach();
    sum(mul(sync_batch_norm(xc, w, b, rm, rv, true, 0.1, 1e-5, comm), xc)).backward();
    EXPECT_EQ(comm.all_reduces(), 3) << "weight-only backward";
    // Eval: the running stats, no communication.
    sync_batch_norm(x, w, b, rm, rv, false, 0.1, 1e-5, comm);
    EXPECT_EQ(comm.all_reduces(), 3) << "eval";
  });
}

// ---------------------------------------------------------------- single rank

TEST(SyncBatchNorm, GradcheckSingleRank) {
  FakeGroup group(1);
  FakeCommunicator comm(group, 0);
  Generator gen(15);
  for (const Shape& shape : {Shape{3, 2, 2, 4}, Shape{5, 3}}) {
    const int64_t C = shape.back();
    std::vector<Tensor> in{Tensor::randn(shape, gen, DType::Float64).requires_grad_(),
                           Tensor::rand({C}, gen, 0.5, 1.5, DType::Float64).requires_grad_(),
                           Tensor::randn({C}, gen, DType::Float64).requires_grad_()};
    GradcheckResult r = gradcheck(
        [&](const std::vector<Tensor>& t) {
          return sync_batch_norm(t[0], t[1], t[2], Tensor(), Tensor(), true, 0.1, 1e-5, comm);
        },
        in);
    EXPECT_TRUE(r.ok) << shape_str(shape) << ": " << r.message;
  }
}

TEST(SyncBatchNorm, SingleRankEqualsPlainBatchNorm) {
  FakeGroup group(1);
  FakeCommunicator comm(group, 0);
  EXPECT_TRUE(testing::check_sync_batch_norm(comm, {{4, 3, 2, 5}, {4}, DType::Float64, Device::cpu(), 1e-12, 16}));
  EXPECT_TRUE(testing::check_sync_batch_norm(comm, {{4, 3, 2, 5}, {4}, DType::Float32, Device::cpu(), 1e-6, 17}));
  // One value per channel: an error, as for plain batch norm.
  try {
    sync_batch_norm(Tensor::ones({1, 1, 1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, comm);
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than one value per channel"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- BatchNorm2d and the switch

TEST(SyncBatchNorm, ConvertSetsEveryBatchNorm2d) {
  Container root;
  auto* bn0 = root.add("bn0", std::make_shared<BatchNorm2d>(4));
  auto* inner = root.add("inner", std::make_shared<Container>());
  auto* bn1 = inner->add("bn1", std::make_shared<BatchNorm2d>(4));
  inner->add("conv", std::make_shared<Conv2d>(4, 4, 1));
  inner->add("ln", std::make_shared<LayerNorm>(4));
  FakeGroup group(1);
  FakeCommunicator comm(group, 0);
  EXPECT_EQ(convert_sync_batch_norm(root, &comm), 2);
  EXPECT_EQ(bn0->sync, &comm);
  EXPECT_EQ(bn1->sync, &comm);
  EXPECT_EQ(convert_sync_batch_norm(root, nullptr), 2);
  EXPECT_EQ(bn0->sync, nullptr);
  EXPECT_EQ(bn1->sync, nullptr);
}

// A single-rank communicator leaves BatchNorm2d on plain batch norm: bitwise the same, no collective.
TEST(SyncBatchNorm, BatchNorm2dSingleRankIsPlain) {
  Generator gen(18);
  Tensor x = Tensor::randn({2, 3, 3, 4}, gen);
  BatchNorm2d plain(4), synced(4);
  FakeGroup group(1);
  FakeCommunicator comm(group, 0);
  convert_sync_batch_norm(synced, &comm);
  EXPECT_EQ(synced.forward(x).to_vector<float>(), plain.forward(x).to_vector<float>());
  EXPECT_EQ(synced.running_var.to_vector<float>(), plain.running_var.to_vector<float>());
  EXPECT_EQ(comm.all_reduces(), 0);
}

// Two ranks of BatchNorm2d, each on half the batch, against one on all of it: outputs, running
// stats and num_batches_tracked over two training steps, then eval (no collectives), then a
// checkpointed training step (the recompute's collective included) with its gradients.
TEST(SyncBatchNorm, BatchNorm2dOverRanks) {
  Generator gen(19);
  const Shape shape{4, 3, 2, 6};
  const Tensor x1 = Tensor::randn(shape, gen, DType::Float64), x2 = Tensor::randn(shape, gen, DType::Float64);
  const Tensor u = Tensor::randn(shape, gen, DType::Float64);  // loss weights
  auto make = [] {
    auto bn = std::make_shared<BatchNorm2d>(6);
    bn->to(DType::Float64);
    return bn;
  };
  auto ref = make();
  const Tensor y1 = ref->forward(x1), y2 = ref->forward(x2);
  ref->eval();
  const Tensor y_eval = ref->forward(x1);
  ref->train();
  Tensor xr = x2.clone().requires_grad_();
  sum(mul(checkpoint([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{ref->forward(in[0])}; },
                     {xr})[0],
          u))
      .backward();

  run_ranks(2, [&](FakeCommunicator& comm) {
    auto bn = make();
    convert_sync_batch_norm(*bn, &comm);
    const int64_t begin = 2 * comm.rank(), end = begin + 2;
    auto mine = [&](const Tensor& t) { return t.slice(0, begin, end); };
    const std::string tag = "rank " + std::to_string(comm.rank()) + ": ";
    EXPECT_TRUE(testing::sync_bn_close(tag + "step 1", bn->forward(mine(x1)), mine(y1), 1e-12));
    EXPECT_TRUE(testing::sync_bn_close(tag + "step 2", bn->forward(mine(x2)), mine(y2), 1e-12));
    EXPECT_EQ(comm.all_reduces(), 2);
    EXPECT_EQ(bn->num_batches_tracked.item(), 2.0);
    bn->eval();
    EXPECT_TRUE(testing::sync_bn_close(tag + "eval", bn->forward(mine(x1)), mine(y_eval), 1e-12));
    EXPECT_EQ(comm.all_reduces(), 2) << "eval communicates";
    bn->train();
    Tensor xs = mine(x2).clone().requires_grad_();
    // Rank loss: this rank's share of the reference's sum, so x.grad equals the reference's rows
    // and the weight's gradients sum (not average) to the reference's.
    sum(mul(checkpoint([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{bn->forward(in[0])}; },
                       {xs})[0],
            mine(u)))
        .backward();
    EXPECT_EQ(comm.all_reduces(), 5) << "checkpointed step: forward, recompute, backward";
    EXPECT_TRUE(testing::sync_bn_close(tag + "checkpointed x.grad", xs.grad(), mine(xr.grad()), 1e-12));
    Tensor dw = bn->weight.grad().clone();
    comm.all_reduce(dw);
    EXPECT_TRUE(testing::sync_bn_close(tag + "checkpointed weight.grad", dw, ref->weight.grad(), 1e-12));
    EXPECT_TRUE(testing::sync_bn_close(tag + "running_var", bn->running_var, ref->running_var, 1e-12));
    EXPECT_EQ(bn->num_batches_tracked.item(), 3.0);
  });
}

// A UniRepLKNet block with a 13x13 LarK mixer has 8 BatchNorms (origin + 5 dilated branches, norm,
// pwconv2's): converted, two ranks each on half the batch train it as one block on all of it.
// Every parameter's gradient summed over the ranks equals the reference's (the rank losses are
// shares of the reference's sum; the BN biases followed by another BN have gradients that are 0
// up to rounding, hence an absolute floor), as do x.grad and the running stats; checkpointed too,
// where the recompute's collectives interleave with the backward's.
TEST(SyncBatchNorm, UniRepLKNetBlockOverRanks) {
  for (bool with_cp : {false, true}) {
    Generator gen(20);
    const Shape shape{4, 5, 5, 8};
    const Tensor x = Tensor::randn(shape, gen, DType::Float64), u = Tensor::randn(shape, gen, DType::Float64);
    auto make = [&] {
      auto block = std::make_shared<UniRepLKNetBlock>(8, 13, 0.0, 1e-6, false, with_cp);
      block->to(DType::Float64);
      return block;
    };
    auto ref = make();
    {
      NoGradGuard no_grad;
      for (auto& [name, p] : ref->named_parameters()) Tensor(p).copy_(Tensor::randn(p.shape(), gen, DType::Float64));
    }
    NamedTensors initial;
    for (auto& [name, t] : ref->state_dict()) initial.emplace_back(name, t.clone());
    Tensor xr = x.clone().requires_grad_();
    sum(mul(ref->forward(xr, gen), u)).backward();
    const NamedTensors ref_params = ref->named_parameters();

    run_ranks(2, [&](FakeCommunicator& comm) {
      auto block = make();
      block->load_state_dict(initial);
      EXPECT_EQ(convert_sync_batch_norm(*block, &comm), 8);
      Generator rank_gen(21);
      auto mine = [&](const Tensor& t) { return t.slice(0, 2 * comm.rank(), 2 * comm.rank() + 2); };
      const std::string tag =
          std::string(with_cp ? "checkpointed, " : "") + "rank " + std::to_string(comm.rank()) + ": ";
      Tensor xs = mine(x).clone().requires_grad_();
      sum(mul(block->forward(xs, rank_gen), mine(u))).backward();
      // norm and pwconv2's BN one each, the mixer's six BNs (batch_norm_branch_sum) one together.
      EXPECT_EQ(comm.all_reduces(), with_cp ? 9 : 6) << tag << "forward (and recompute) and backward, per BN op";
      EXPECT_TRUE(testing::sync_bn_close(tag + "x.grad", xs.grad(), mine(xr.grad()), 1e-10));
      const NamedTensors params = block->named_parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        Tensor g = params[i].second.grad().clone();
        comm.all_reduce(g);
        EXPECT_TRUE(
            testing::sync_bn_close(tag + params[i].first + ".grad", g, ref_params[i].second.grad(), 1e-10, 1.0));
      }
      const NamedTensors buffers = block->named_buffers(), ref_buffers = ref->named_buffers();
      for (size_t i = 0; i < buffers.size(); ++i)
        EXPECT_TRUE(testing::sync_bn_close(tag + buffers[i].first, buffers[i].second, ref_buffers[i].second, 1e-12));
    });
  }
}

// The mixer's six BatchNorm2d as one op (batch_norm_branch_sum) over two ranks against the same
// modules' own sync forwards and adds: outputs, x.grad, the (local) parameter gradients, running
// stats and num_batches_tracked; one all-reduce per direction for all six, not one per BN.
TEST(SyncBatchNorm, BranchSumMatchesUnfusedOverRanks) {
  Generator gen(22);
  const int64_t C = 5, B = 6;
  const Shape shape{6, 3, 3, C};
  std::vector<Tensor> x, u;
  for (int64_t i = 0; i < B; ++i)
    x.push_back(add_scalar(Tensor::randn(shape, gen, DType::Float64), double(i)));
  for (int step = 0; step < 2; ++step) u.push_back(Tensor::randn(shape, gen, DType::Float64));
  NamedTensors initial;
  {
    BatchNorm2d bn(C);
    bn.to(DType::Float64);
    NoGradGuard no_grad;
    bn.weight.copy_(Tensor::randn({C}, gen, DType::Float64));
    bn.bias.copy_(Tensor::randn({C}, gen, DType::Float64));
    for (auto& [name, t] : bn.state_dict()) initial.emplace_back(name, t.clone());
  }
  run_ranks(2, [&](FakeCommunicator& comm) {
    std::vector<std::shared_ptr<BatchNorm2d>> ref, fused;
    std::vector<BatchNorm2d*> bns;
    for (int64_t i = 0; i < B; ++i)
      for (auto* list : {&ref, &fused}) {
        list->push_back(std::make_shared<BatchNorm2d>(C));
        list->back()->to(DType::Float64);
        list->back()->load_state_dict(initial);
        convert_sync_batch_norm(*list->back(), &comm);
      }
    for (auto& bn : fused) bns.push_back(bn.get());
    auto mine = [&](const Tensor& t) { return t.slice(0, 3 * comm.rank(), 3 * comm.rank() + 3); };
    const std::string tag = "rank " + std::to_string(comm.rank()) + ": ";
    for (int step = 0; step < 2; ++step) {
      std::vector<Tensor> xs_ref, xs;
      for (int64_t i = 0; i < B; ++i) {
        xs_ref.push_back(mine(x[size_t(i)]).clone().requires_grad_());
        xs.push_back(mine(x[size_t(i)]).clone().requires_grad_());
      }
      Tensor y_ref;
      for (int64_t i = 0; i < B; ++i) {
        Tensor y = ref[size_t(i)]->forward(xs_ref[size_t(i)]);
        y_ref = i == 0 ? y : add(y_ref, y);
      }
      sum(mul(y_ref, mine(u[size_t(step)]))).backward();
      const int before = comm.all_reduces();
      const Tensor y = batch_norm_branch_sum(xs, bns);
      sum(mul(y, mine(u[size_t(step)]))).backward();
      EXPECT_EQ(comm.all_reduces() - before, 2) << tag << "one collective per direction";
      EXPECT_TRUE(testing::sync_bn_close(tag + "forward", y, y_ref, 1e-12));
      for (size_t i = 0; i < size_t(B); ++i) {
        const std::string t = tag + "step " + std::to_string(step) + " branch " + std::to_string(i) + " ";
        EXPECT_TRUE(testing::sync_bn_close(t + "x.grad", xs[i].grad(), xs_ref[i].grad(), 1e-11));
        EXPECT_TRUE(testing::sync_bn_close(t + "weight.grad", fused[i]->weight.grad(), ref[i]->weight.grad(), 1e-11));
        EXPECT_TRUE(testing::sync_bn_close(t + "bias.grad", fused[i]->bias.grad(), ref[i]->bias.grad(), 1e-11));
        EXPECT_TRUE(testing::sync_bn_close(t + "running_mean", fused[i]->running_mean, ref[i]->running_mean, 1e-13));
        EXPECT_TRUE(testing::sync_bn_close(t + "running_var", fused[i]->running_var, ref[i]->running_var, 1e-13));
        EXPECT_EQ(fused[i]->num_batches_tracked.item(), double(step + 1)) << t;
      }
    }
  });
}

// ---------------------------------------------------------------- bad input and the fake itself

TEST(SyncBatchNorm, BadInput) {
  FakeGroup group(1);
  FakeCommunicator comm(group, 0);
  Tensor x = Tensor::zeros({2, 3, 3, 4});
  auto expect_error = [](const std::function<void()>& f, const std::vector<std::string>& parts) {
    try {
      f();
      ADD_FAILURE() << "no error thrown";
    } catch (const Error& e) {
      for (const std::string& p : parts)
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
    }
  };
  expect_error([&] { sync_batch_norm(x, Tensor::ones({3}), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, comm); },
               {"sync_batch_norm", "weight", "[4]", "[2, 3, 3, 4]", "[3]"});
  expect_error([&] { sync_batch_norm(x, Tensor(), Tensor(), Tensor::zeros({4}), Tensor(), true, 0.1, 1e-5, comm); },
               {"sync_batch_norm", "running_mean and running_var"});
  expect_error(
      [&] {
        sync_batch_norm(x, Tensor(), Tensor(), Tensor::zeros({4}), Tensor::ones({4}, DType::Float64), true, 0.1, 1e-5,
                        comm);
      },
      {"sync_batch_norm", "running_var", "float64"});
  expect_error(
      [&] {
        sync_batch_norm(x, Tensor::ones({4}, DType::Float64), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, comm);
      },
      {"sync_batch_norm", "float64", "float32"});
  EXPECT_EQ(comm.all_reduces(), 0) << "a bad input must throw before any collective";
  // One value per channel over all ranks (1 + 0 rows): every rank throws after the all-reduce (CPU).
  expect_error(
      [] {
        run_ranks(2, [](Communicator& comm) {
          sync_batch_norm(Tensor::ones({1 - comm.rank(), 3}), Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5,
                          comm);
        });
      },
      {"more than one value per channel over all processes, got 1"});
}

TEST(FakeCommunicator, CollectivesAndFailure) {
  run_ranks(3, [](FakeCommunicator& comm) {
    const double r = comm.rank();
    Tensor t = Tensor::from_vector(std::vector<double>{r, 10 * r, -r}, {3});
    comm.all_reduce(t);
    EXPECT_EQ(t.to_vector<double>(), (std::vector<double>{3, 30, -3}));
    Tensor m = Tensor::from_vector(std::vector<float>{float(r), float(-r)}, {2});
    comm.all_reduce(m, ReduceOp::Max);
    EXPECT_EQ(m.to_vector<float>(), (std::vector<float>{2, 0}));
    Tensor b = Tensor::full({2}, r, DType::Int64);
    comm.broadcast(b, 1);
    EXPECT_EQ(b.to_vector<int64_t>(), (std::vector<int64_t>{1, 1}));
    comm.barrier();
  });
  // A rank that throws releases the others from their collectives: no hang, its error comes back.
  std::atomic<int> released{0};
  try {
    run_ranks(3, [&](FakeCommunicator& comm) {
      if (comm.rank() == 2) UNIREP_CHECK(false, "rank 2 fails");
      try {
        comm.barrier();
      } catch (const Error&) {
        ++released;
        throw;
      }
    });
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 2 fails"), std::string::npos) << e.what();
  }
  EXPECT_EQ(released.load(), 2);
}

}  // namespace
}  // namespace unirep
