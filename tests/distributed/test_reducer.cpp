// The gradient reducer in one process: bucket layout, grads as bucket views, the collectives
// issued from the grad-ready hooks while backward still runs, accumulation micro-steps.
#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "core/generator.h"
#include "distributed/process_group.h"
#include "distributed/reducer.h"

namespace unirep {
namespace {

// Logs every collective with what backward had done by then.
class RecordingCommunicator : public Communicator {
 public:
  struct Call {
    int64_t numel;
    ReduceOp op;
    int ready_params;        // grad-ready hooks fired so far in this backward
    bool backward_returned;  // the call came after Tensor::backward returned
  };
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "recording"; }
  void all_reduce(Tensor&, ReduceOp) override {}
  void broadcast(Tensor&, int) override {}
  void barrier() override {}
  std::unique_ptr<PendingCollective> all_reduce_async(Tensor& t, ReduceOp op) override {
    calls.push_back({t.numel(), op, ready_params, backward_returned});
    return Communicator::all_reduce_async(t, op);
  }
  std::vector<Call> calls;
  int ready_params = 0;
  bool backward_returned = false;
};

// p[0] .. p[n-1] applied in turn (x * p0 * p1 ...), so backward finishes p[n-1] first.
Tensor chain_loss(const std::vector<Tensor>& params, const Tensor& x) {
  Tensor h = x;
  for (const Tensor& p : params) h = mul(h, sum(p));
  return sum(h);
}

std::vector<Tensor> make_params(const std::vector<int64_t>& sizes, uint64_t seed = 1) {
  Generator gen(seed);
  std::vector<Tensor> params;
  for (int64_t n : sizes) params.push_back(Tensor::randn({n}, gen).requires_grad_());
  return params;
}

TEST(Reducer, BucketsInReverseRegistrationOrderWithASmallFirstBucket) {
  SingleCommunicator comm;
  // float32 sizes 400, 40, 1200, 20 and 200 bytes; first bucket 256 bytes, then 1024.
  std::vector<Tensor> params = make_params({100, 10, 300, 5, 50});
  GradientReducer reducer(comm, params, 1024, 256);
  // 4 then 3 (200 + 56 padding + 20 >= 256 closes), 2 alone (1200 >= 1024), then 1 and 0 (left open).
  EXPECT_EQ(reducer.bucket_layout(), (std::vector<std::vector<int64_t>>{{4, 3}, {2}, {1, 0}}));
}

TEST(Reducer, DtypesGetTheirOwnBucketsAndFrozenParametersNone) {
  SingleCommunicator comm;
  Tensor a = Tensor::zeros({8}).requires_grad_();
  Tensor b = Tensor::zeros({8}, DType::Float64).requires_grad_();
  Tensor frozen = Tensor::zeros({8});
  Tensor c = Tensor::zeros({8}).requires_grad_();
  GradientReducer reducer(comm, {a, b, frozen, c});
  EXPECT_EQ(reducer.bucket_layout(), (std::vector<std::vector<int64_t>>{{3, 0}, {1}}));
  EXPECT_THROW(GradientReducer(comm, {a, a}), Error);
}

TEST(Reducer, GradsAreAlignedViewsIntoTheBucketsAndBackwardWritesInPlace) {
  SingleCommunicator comm;
  std::vector<Tensor> params = make_params({100, 10, 300, 5, 50});
  GradientReducer reducer(comm, params, 1024, 256);
  reducer.prepare_for_backward(true);
  std::vector<Tensor> views;
  for (const Tensor& p : params) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p.grad().data_ptr()) % 64, 0u);
    for (double v : p.grad().to_vector<double>()) ASSERT_EQ(v, 0.0);
    views.push_back(p.grad());
  }
  // Parameters of one bucket share its storage; buckets do not.
  EXPECT_EQ(params[4].grad().storage(), params[3].grad().storage());
  EXPECT_EQ(params[1].grad().storage(), params[0].grad().storage());
  EXPECT_NE(params[2].grad().storage(), params[0].grad().storage());
  EXPECT_EQ(params[3].grad().offset(), 64);  // params[4] fills 50 floats, padded to 64

  Tensor x = Tensor::full({3}, 0.5);
  chain_loss(params, x).backward();
  reducer.finish();
  // d/dp_k sum(x * prod_j sum(p_j)) = sum(x) * prod_{j != k} sum(p_j), for every element of p_k.
  std::vector<double> sums;
  for (const Tensor& p : params) sums.push_back(sum(p).item());
  for (size_t k = 0; k < params.size(); ++k) {
    EXPECT_TRUE(params[k].grad().same(views[k])) << "the grad tensor must stay the bucket view";
    double expected = 1.5;
    for (size_t j = 0; j < params.size(); ++j)
      if (j != k) expected *= sums[j];
    for (double v : params[k].grad().to_vector<double>()) ASSERT_NEAR(v, expected, 1e-4 * std::abs(expected));
  }
}

TEST(Reducer, AllReducesAreIssuedFromTheHooksBeforeBackwardReturns) {
  RecordingCommunicator comm;
  // float32 sizes: 64, 64, 64, 64 floats = 256 bytes each; first bucket 256, then 512 bytes.
  std::vector<Tensor> params = make_params({64, 64, 64, 64, 64});
  for (const Tensor& p : params) p.register_grad_ready_hook([&comm](const Tensor&) { ++comm.ready_params; });
  GradientReducer reducer(comm, params, 512, 256);
  ASSERT_EQ(reducer.bucket_layout(), (std::vector<std::vector<int64_t>>{{4}, {3, 2}, {1, 0}}));
  reducer.prepare_for_backward(true);
  chain_loss(params, Tensor::ones({2})).backward();
  comm.backward_returned = true;
  EXPECT_EQ(reducer.collectives_issued(), 3);
  reducer.finish();
  ASSERT_EQ(comm.calls.size(), 3u);
  // Each bucket goes out as soon as its last parameter is ready, while the rest still waits.
  const int ready_at_issue[] = {1, 3, 5};
  const int64_t numel[] = {64, 128, 128};
  for (size_t b = 0; b < 3; ++b) {
    EXPECT_EQ(comm.calls[b].ready_params, ready_at_issue[b]) << "bucket " << b;
    EXPECT_FALSE(comm.calls[b].backward_returned) << "bucket " << b;
    EXPECT_EQ(comm.calls[b].numel, numel[b]);
    EXPECT_EQ(comm.calls[b].op, ReduceOp::Avg);
  }
}

TEST(Reducer, AccumulationMicroStepsCommunicateNothing) {
  RecordingCommunicator comm;
  std::vector<Tensor> params = make_params({4, 4});
  GradientReducer reducer(comm, params, 8, 8);
  Tensor x = Tensor::ones({1});
  reducer.prepare_for_backward(false);
  chain_loss(params, x).backward();
  reducer.prepare_for_backward(false);
  chain_loss(params, x).backward();
  EXPECT_TRUE(comm.calls.empty());
  EXPECT_EQ(reducer.collectives_issued(), 0);
  reducer.prepare_for_backward(true);
  chain_loss(params, x).backward();
  reducer.finish();
  EXPECT_EQ(reducer.collectives_issued(), 2);
  // Three backwards accumulated in the buckets: 3 * sum(p_other) per element.
  const double s0 = sum(params[0]).item(), s1 = sum(params[1]).item();
  for (double v : params[0].grad().to_vector<double>()) EXPECT_NEAR(v, 3 * s1, 1e-5);
  for (double v : params[1].grad().to_vector<double>()) EXPECT_NEAR(v, 3 * s0, 1e-5);
}

TEST(Reducer, ZeroGradThenPrepareStartsFromZeroAndKeepsForeignGrads) {
  SingleCommunicator comm;
  std::vector<Tensor> params = make_params({4, 4});
  GradientReducer reducer(comm, params, 1 << 20, 1 << 20);
  reducer.prepare_for_backward(true);
  chain_loss(params, Tensor::ones({1})).backward();
  reducer.finish();
  params[0].set_grad(Tensor());                      // Optimizer::zero_grad
  params[1].set_grad(Tensor::full({4}, 2.0));        // a grad from elsewhere is copied in
  reducer.prepare_for_backward(true);
  for (double v : params[0].grad().to_vector<double>()) EXPECT_EQ(v, 0.0);
  for (double v : params[1].grad().to_vector<double>()) EXPECT_EQ(v, 2.0);
  EXPECT_EQ(params[0].grad().storage(), params[1].grad().storage());
  reducer.finish();
}

TEST(Reducer, UnusedParametersStillTakePartAndMisuseIsAnError) {
  RecordingCommunicator comm;
  std::vector<Tensor> params = make_params({4, 4, 4});
  GradientReducer reducer(comm, params, 16, 16);  // one bucket each
  EXPECT_THROW(reducer.finish(), Error);           // without prepare_for_backward
  reducer.prepare_for_backward(true);
  chain_loss({params[1], params[2]}, Tensor::ones({1})).backward();  // params[0] unused
  EXPECT_EQ(reducer.collectives_issued(), 2);
  reducer.finish();
  EXPECT_EQ(reducer.collectives_issued(), 3);  // the unused one's bucket goes out in finish()
  for (double v : params[0].grad().to_vector<double>()) EXPECT_EQ(v, 0.0);

  reducer.prepare_for_backward(true);
  EXPECT_THROW(reducer.prepare_for_backward(true), Error);  // the previous sync backward was not finished
  chain_loss(params, Tensor::ones({1})).backward();
  EXPECT_THROW(chain_loss(params, Tensor::ones({1})).backward(), Error);  // a second backward: ready twice
}

TEST(Reducer, HooksOutliveTheReducerHarmlessly) {
  std::vector<Tensor> params = make_params({4});
  {
    SingleCommunicator comm;
    GradientReducer reducer(comm, params);
    reducer.prepare_for_backward(true);
  }
  chain_loss(params, Tensor::ones({1})).backward();
  EXPECT_TRUE(params[0].grad().defined());
}

TEST(Reducer, ParametersMustBeOnTheCommunicatorsDevice) {
  SingleCommunicator comm(Device::cuda(0));
  EXPECT_THROW(GradientReducer(comm, make_params({4})), Error);
}

TEST(Reducer, SingleProcessHelpers) {
  SingleCommunicator comm;
  EXPECT_EQ(all_reduce_sum(comm, std::vector<int64_t>{3, (int64_t(1) << 60) + 1}),
            (std::vector<int64_t>{3, (int64_t(1) << 60) + 1}));
  EXPECT_EQ(all_reduce_sum(comm, std::vector<double>{0.25}), (std::vector<double>{0.25}));
}

}  // namespace
}  // namespace unirep
