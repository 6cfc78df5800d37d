// GradScaler (torch.cuda.amp.GradScaler semantics): unscaling and inf/nan detection, the scale's
// trajectory over a scripted run of overflow / clean steps, the state round trip, disabled mode.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "optim/grad_scaler.h"

namespace unirep {
namespace {

class ScalerDevice : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda" && !cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
  Device device() const { return GetParam() == "cuda" ? Device::cuda() : Device::cpu(); }
};

GradScaler::Options enabled(double init_scale) {
  GradScaler::Options o;
  o.enabled = true;
  o.init_scale = init_scale;
  return o;
}

TEST_P(ScalerDevice, UnscalesAndDetectsInfAndNan) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  Tensor a = Tensor::zeros({4}, DType::Float32, device()).requires_grad_();
  Tensor b = Tensor::zeros({2, 2}, DType::Float32, device()).requires_grad_();
  Tensor no_grad = Tensor::zeros({3}, DType::Float32, device()).requires_grad_();
  GradScaler scaler(enabled(1024));
  auto set = [&](std::vector<float> ga, std::vector<float> gb) {
    a.set_grad(Tensor::from_vector(ga, {4}, DType::Float32, device()));
    b.set_grad(Tensor::from_vector(gb, {2, 2}, DType::Float32, device()));
  };

  set({1024, -2048, 512, 0}, {3072, 1, -1, 4096});
  EXPECT_FALSE(scaler.unscale_and_check({a, b, no_grad}));
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{1, -2, 0.5, 0}));
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{3, 1.0f / 1024, -1.0f / 1024, 4}));
  EXPECT_FALSE(no_grad.grad().defined());

  set({1024, inf, 0, 0}, {2048, 0, 0, 0});
  EXPECT_TRUE(scaler.unscale_and_check({a, b}));
  EXPECT_EQ(b.grad().to_vector<float>()[0], 2.0f);  // every grad is still unscaled
  set({0, 0, 0, 0}, {0, 0, -inf, 0});
  EXPECT_TRUE(scaler.unscale_and_check({a, b}));
  set({0, nan, 0, 0}, {0, 0, 0, 0});
  EXPECT_TRUE(scaler.unscale_and_check({a, b}));
  set({1e30f, -1e30f, 0, 0}, {0, 0, 0, 0});  // large but finite
  EXPECT_FALSE(scaler.unscale_and_check({a, b}));
}

TEST_P(ScalerDevice, ScaledLossBackpropagatesTheScale) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}, DType::Float32, device()).requires_grad_();
  GradScaler scaler(enabled(256));
  Tensor loss = sum(mul(x, x));
  Tensor scaled = scaler.scale(loss);
  EXPECT_EQ(scaled.item(), 256.0 * 14.0);
  scaled.backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{512, 1024, 1536}));
  EXPECT_FALSE(scaler.unscale_and_check({x}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 4, 6}));
}

TEST(GradScaler, ScaleTrajectory) {
  GradScaler::Options o = enabled(8);
  o.growth_factor = 2;
  o.backoff_factor = 0.5;
  o.growth_interval = 3;
  GradScaler scaler(o);
  const bool found[] = {false, false, false, true, false, false, true, false, false, false, false, true, true};
  const double scale[] = {8, 8, 16, 8, 8, 8, 4, 4, 4, 8, 8, 4, 2};
  const int64_t tracker[] = {1, 2, 0, 0, 1, 2, 0, 1, 2, 0, 1, 0, 0};
  for (size_t i = 0; i < std::size(found); ++i) {
    scaler.update(found[i]);
    EXPECT_EQ(scaler.scale_value(), scale[i]) << "after update " << i;
    EXPECT_EQ(scaler.growth_tracker(), tracker[i]) << "after update " << i;
  }
}

TEST(GradScaler, StateRoundTripAndStrictLoad) {
  GradScaler::Options o = enabled(64);
  o.growth_interval = 4;
  GradScaler a(o);
  for (bool f : {false, true, false, false}) a.update(f);
  NamedTensors state = a.state_dict();
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state[0].first, "scale");
  EXPECT_EQ(state[0].second.dtype(), DType::Float64);
  EXPECT_EQ(state[0].second.dim(), 0);
  EXPECT_EQ(state[0].second.item(), 32.0);
  EXPECT_EQ(state[1].first, "growth_tracker");
  EXPECT_EQ(state[1].second.dtype(), DType::Int64);
  EXPECT_EQ(state[1].second.item(), 2.0);

  o.init_scale = 1;  // the options come from the config; the state carries the scale and the tracker
  GradScaler b(o);
  b.load_state_dict(state);
  for (bool f : {false, false, true, false}) {
    a.update(f);
    b.update(f);
    EXPECT_EQ(a.scale_value(), b.scale_value());
    EXPECT_EQ(a.growth_tracker(), b.growth_tracker());
  }
  EXPECT_EQ(b.scale_value(), 32.0);  // grew to 64 after two clean steps, then backed off

  auto expect_error = [&](const NamedTensors& bad, const std::string& part) {
    try {
      b.load_state_dict(bad);
      ADD_FAILURE() << "no error, expected '" << part << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error({state[0]}, "missing 'growth_tracker'");
  expect_error({state[0], state[1], {"extra", Tensor::scalar(1.0)}}, "unexpected entry 'extra'");
  expect_error({{"scale", Tensor::scalar(8.0)}, state[1]}, "scale must be a float64 scalar");
  expect_error({{"scale", Tensor::scalar(-1.0, DType::Float64)}, state[1]}, "scale must be finite and > 0");
}

TEST(GradScaler, DisabledIsTheIdentity) {
  GradScaler scaler(GradScaler::Options{});
  EXPECT_FALSE(scaler.enabled());
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2}, {2}).requires_grad_();
  Tensor loss = sum(x);
  EXPECT_TRUE(scaler.scale(loss).same(loss));
  x.set_grad(Tensor::from_vector(std::vector<float>{std::numeric_limits<float>::infinity(), 4}, {2}));
  EXPECT_FALSE(scaler.unscale_and_check({x}));
  EXPECT_EQ(x.grad().to_vector<float>()[1], 4.0f);
  scaler.update(true);
  EXPECT_EQ(scaler.scale_value(), 65536.0);
  EXPECT_THROW(GradScaler(GradScaler::Options{true, 65536, 0.5}), Error);  // growth_factor must be > 1
}

INSTANTIATE_TEST_SUITE_P(Devices, ScalerDevice, ::testing::Values("cpu", "cuda"));

}  // namespace
}  // namespace unirep
