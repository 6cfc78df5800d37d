// ModelEma against hand computation: parameters and float buffers follow
// ema = decay ema + (1 - decay) model, the int64 BatchNorm counter is copied, reset copies everything.
#include <cmath>

#include <gtest/gtest.h>

#include "autograd/grad_mode.h"
#include "layers/basic.h"
#include "optim/ema.h"

namespace unirep {
namespace {

// A BatchNorm (weight, bias, running_mean, running_var, num_batches_tracked) and a Linear.
struct Net : Module {
  BatchNorm2d bn{3};
  Linear fc{2, 3};
  explicit Net(Device device) {
    register_module("bn", &bn);
    register_module("fc", &fc);
    to(device);
  }
};

// Float entry k, element i, at version u; the int counter is 10 + u.
double value(size_t k, int64_t i, int u) { return 0.3 * double(k + 1) + 0.1 * double(i) - 0.25 * u + 0.01 * u * u; }

void set_values(Module& m, int u) {
  NoGradGuard no_grad;
  NamedTensors state = m.state_dict();
  for (size_t k = 0; k < state.size(); ++k) {
    Tensor t = state[k].second;
    if (t.dtype() == DType::Int64) {
      t.fill_(double(10 + u));
      continue;
    }
    std::vector<float> v;
    for (int64_t i = 0; i < t.numel(); ++i) v.push_back(float(value(k, i, u)));
    t.copy_(Tensor::from_vector(v, t.shape()));
  }
}

class EmaDevice : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda" && !cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
  Device device() const { return GetParam() == "cuda" ? Device::cuda() : Device::cpu(); }
};

TEST_P(EmaDevice, UpdatesParamsAndBuffersAndCopiesIntegers) {
  Net model(device()), shadow(device());
  set_values(model, 0);
  const double decay = 0.9;
  ModelEma ema(shadow, decay);
  EXPECT_EQ(ema.decay(), decay);
  EXPECT_EQ(&ema.module(), &shadow);
  ema.reset(model);
  NamedTensors m0 = model.state_dict(), e0 = shadow.state_dict();
  for (size_t k = 0; k < m0.size(); ++k)
    EXPECT_EQ(e0[k].second.to(DType::Float64).to_vector<double>(), m0[k].second.to(DType::Float64).to_vector<double>())
        << m0[k].first;

  const int updates = 3;
  for (int u = 1; u <= updates; ++u) {
    set_values(model, u);
    ema.update(model);
  }
  NamedTensors state = shadow.state_dict();
  ASSERT_EQ(state.size(), 7u);  // bn: 2 params + 3 buffers; fc: 2 params
  for (size_t k = 0; k < state.size(); ++k) {
    const auto& [name, t] = state[k];
    EXPECT_EQ(t.device(), device()) << name;
    if (name == "bn.num_batches_tracked") {
      EXPECT_EQ(t.dtype(), DType::Int64);
      EXPECT_EQ(t.item(), double(10 + updates)) << "integer entries are copied";
      continue;
    }
    std::vector<float> got = t.to_vector<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      double e = double(float(value(k, i, 0)));
      for (int u = 1; u <= updates; ++u) e = decay * e + (1 - decay) * double(float(value(k, i, u)));
      EXPECT_NEAR(got[size_t(i)], e, 1e-6 * std::abs(e) + 1e-7) << name << "[" << i << "]";
    }
  }
  // The model itself is untouched by the EMA.
  EXPECT_EQ(model.bn.running_var.to_vector<float>()[0], float(value(3, 0, updates)));
}

TEST(ModelEma, RejectsBadDecayAndMismatchedModels) {
  Net a(Device::cpu());
  EXPECT_THROW(ModelEma(a, 1.5), Error);
  struct Other : Module {
    Linear fc{2, 4};
    Other() { register_module("fc", &fc); }
  } other;
  ModelEma ema(a, 0.99);
  EXPECT_THROW(ema.update(other), Error);
}

INSTANTIATE_TEST_SUITE_P(Devices, EmaDevice, ::testing::Values("cpu", "cuda"));

}  // namespace
}  // namespace unirep
