// AdamW, SGD and gradient clipping against hand-computed double-precision updates (torch.optim's
// formulas), on the CPU and (when present) the GPU: two groups with different lr scales and weight
// decays, a scheduled and a per-group weight decay, a parameter that never gets a grad, and a
// resume from state_dict that must continue bit for bit.
#include <cmath>
#include <cstring>
#include <functional>

#include <gtest/gtest.h>

#include "optim/optimizer.h"

namespace unirep {
namespace {

struct Param {
  std::string name;
  Shape shape;
};
// Group 0 (decay, wd 0.1, lr scale 1): w1, w2; group 1 (no decay, lr scale 0.5): b1, frozen (never a grad).
const std::vector<Param> kParams = {{"w1", {3, 4}}, {"w2", {5}}, {"b1", {2, 3}}, {"frozen", {4}}};
constexpr size_t kFrozen = 3;

std::vector<float> initial_values(size_t k, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float((i % 2 ? -1 : 1) * (0.5 + 0.13 * double((i + 3 * k) % 7)));
  return v;
}

std::vector<float> grad_values(size_t k, int64_t n, int step) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(0.1 * double(k + 1) * std::sin(1.3 * double(i) + 0.7 * step + double(k)));
  return v;
}

struct Model {
  std::vector<Tensor> params;
  Device device;

  Model(Device device, const std::vector<std::vector<float>>& values) : device(device) {
    for (size_t k = 0; k < kParams.size(); ++k)
      params.push_back(Tensor::from_vector(values[k], kParams[k].shape, DType::Float32, device).requires_grad_());
  }
  explicit Model(Device device) : Model(device, initial()) {}
  static std::vector<std::vector<float>> initial() {
    std::vector<std::vector<float>> v;
    for (size_t k = 0; k < kParams.size(); ++k) v.push_back(initial_values(k, shape_numel(kParams[k].shape)));
    return v;
  }

  std::vector<ParamGroup> groups() const {
    ParamGroup decay{"layer_0_decay", {"w1", "w2"}, {params[0], params[1]}, 0.1, 1.0, 0};
    ParamGroup no_decay{"layer_1_no_decay", {"b1", "frozen"}, {params[2], params[3]}, 0.0, 0.5, 1};
    return {decay, no_decay};
  }
  void set_grads(int step) const {
    for (size_t k = 0; k < kParams.size(); ++k)
      if (k != kFrozen)
        params[k].set_grad(
            Tensor::from_vector(grad_values(k, params[k].numel(), step), kParams[k].shape, DType::Float32, device));
  }
  std::vector<std::vector<float>> values() const {
    std::vector<std::vector<float>> v;
    for (const Tensor& p : params) v.push_back(p.to_vector<float>());
    return v;
  }
};

// The schedule every test runs: step s has lr 0.01 (1 + 0.1 s); steps 0..2 pass a scheduled weight
// decay 0.05 + 0.01 s (groups that decay), later steps use each group's own (0.1 and 0).
double lr_at(int s) { return 0.01 * (1 + 0.1 * s); }
bool scheduled_wd(int s) { return s < 3; }
double wd_at(int s) { return 0.05 + 0.01 * s; }
double group_wd(size_t k, int s) {
  if (k >= 2) return 0.0;
  return scheduled_wd(s) ? wd_at(s) : 0.1;
}
double group_scale(size_t k) { return k >= 2 ? 0.5 : 1.0; }

void run_steps(Optimizer& opt, const Model& m, int from, int to) {
  for (int s = from; s < to; ++s) {
    m.set_grads(s);
    if (scheduled_wd(s))
      opt.step(lr_at(s), wd_at(s));
    else
      opt.step(lr_at(s));
  }
}

// |got - want| <= 1e-6 |want| element by element (values are kept away from 0).
void expect_close(const std::vector<float>& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_LE(std::abs(double(got[i]) - want[i]), 1e-6 * std::abs(want[i])) << what << "[" << i << "]: " << got[i]
                                                                            << " vs " << want[i];
}

std::vector<double> as_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

class OptimDevice : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda" && !cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
  Device device() const { return GetParam() == "cuda" ? Device::cuda() : Device::cpu(); }
};

TEST_P(OptimDevice, AdamWMatchesHandComputedUpdates) {
  Model m(device());
  AdamW opt(m.groups(), 0.9, 0.999, 1e-8);
  const int steps = 5;
  run_steps(opt, m, 0, steps);
  EXPECT_EQ(opt.steps(), steps);

  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  std::vector<std::vector<float>> init = Model::initial();
  for (size_t k = 0; k < kFrozen; ++k) {
    std::vector<double> p = as_double(init[k]), mv(p.size(), 0.0), vv(p.size(), 0.0);
    for (int s = 0; s < steps; ++s) {
      int t = s + 1;
      double lr = lr_at(s) * group_scale(k), wd = group_wd(k, s);
      std::vector<float> g = grad_values(k, int64_t(p.size()), s);
      for (size_t i = 0; i < p.size(); ++i) {
        p[i] *= 1 - lr * wd;
        mv[i] = b1 * mv[i] + (1 - b1) * g[i];
        vv[i] = b2 * vv[i] + (1 - b2) * double(g[i]) * g[i];
        p[i] -= lr / (1 - std::pow(b1, t)) * mv[i] / (std::sqrt(vv[i]) / std::sqrt(1 - std::pow(b2, t)) + eps);
      }
    }
    expect_close(m.params[k].to_vector<float>(), p, kParams[k].name);
  }
  // Never had a grad: untouched, and so is its state.
  EXPECT_EQ(m.params[kFrozen].to_vector<float>(), init[kFrozen]);
  for (const auto& [name, t] : opt.state_dict()) {
    if (name == "exp_avg.frozen" || name == "exp_avg_sq.frozen") {
      EXPECT_EQ(t.to_vector<float>(), std::vector<float>(4, 0.0f)) << name;
    }
  }
}

struct SgdCase {
  double momentum, dampening;
  bool nesterov;
};

TEST_P(OptimDevice, SgdMatchesHandComputedUpdates) {
  for (SgdCase c : {SgdCase{0.0, 0.0, false}, SgdCase{0.9, 0.0, false}, SgdCase{0.9, 0.0, true}, SgdCase{0.8, 0.1, false}}) {
    std::string what = "momentum " + std::to_string(c.momentum) + " dampening " + std::to_string(c.dampening) +
                       (c.nesterov ? " nesterov" : "");
    Model m(device());
    SGD opt(m.groups(), c.momentum, c.dampening, c.nesterov);
    const int steps = 5;
    run_steps(opt, m, 0, steps);
    std::vector<std::vector<float>> init = Model::initial();
    for (size_t k = 0; k < kFrozen; ++k) {
      std::vector<double> p = as_double(init[k]), buf(p.size(), 0.0);
      for (int s = 0; s < steps; ++s) {
        double lr = lr_at(s) * group_scale(k), wd = group_wd(k, s);
        std::vector<float> g = grad_values(k, int64_t(p.size()), s);
        for (size_t i = 0; i < p.size(); ++i) {
          double d = g[i] + wd * p[i];
          if (c.momentum > 0) {
            buf[i] = s == 0 ? d : c.momentum * buf[i] + (1 - c.dampening) * d;
            d = c.nesterov ? d + c.momentum * buf[i] : buf[i];
          }
          p[i] -= lr * d;
        }
      }
      expect_close(m.params[k].to_vector<float>(), p, what + " " + kParams[k].name);
    }
    EXPECT_EQ(m.params[kFrozen].to_vector<float>(), init[kFrozen]) << what;
    EXPECT_EQ(opt.state_dict().size(), c.momentum > 0 ? 5u : 1u) << what;  // 4 buffers + step, or the step only
  }
}

// Checkpoint after 3 steps (state and params copied to the host, as a checkpoint file would), then
// a fresh model and optimizer load it and take 3 more steps: bitwise equal to 6 uninterrupted steps.
void check_resume(Device device, const std::function<std::unique_ptr<Optimizer>(std::vector<ParamGroup>)>& make) {
  Model m(device);
  std::unique_ptr<Optimizer> opt = make(m.groups());
  run_steps(*opt, m, 0, 3);
  NamedTensors saved;
  for (const auto& [name, t] : opt->state_dict()) saved.emplace_back(name, t.cpu().clone());
  std::vector<std::vector<float>> saved_params = m.values();
  run_steps(*opt, m, 3, 6);

  Model resumed(device, saved_params);
  std::unique_ptr<Optimizer> opt2 = make(resumed.groups());
  opt2->load_state_dict(saved);
  EXPECT_EQ(opt2->steps(), 3);
  run_steps(*opt2, resumed, 3, 6);
  EXPECT_EQ(opt2->steps(), 6);
  for (size_t k = 0; k < kParams.size(); ++k) {
    std::vector<float> a = m.params[k].to_vector<float>(), b = resumed.params[k].to_vector<float>();
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << kParams[k].name;
  }
  NamedTensors s1 = opt->state_dict(), s2 = opt2->state_dict();
  ASSERT_EQ(s1.size(), s2.size());
  for (size_t i = 0; i < s1.size(); ++i) {
    EXPECT_EQ(s1[i].first, s2[i].first);
    if (s1[i].second.dtype() == DType::Float32) {
      EXPECT_EQ(s1[i].second.device(), device) << s1[i].first;
      std::vector<float> a = s1[i].second.to_vector<float>(), b = s2[i].second.to_vector<float>();
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << s1[i].first;
    }
  }
}

TEST_P(OptimDevice, ResumeFromStateDictIsBitExact) {
  check_resume(device(), [](std::vector<ParamGroup> g) { return std::make_unique<AdamW>(std::move(g)); });
  check_resume(device(), [](std::vector<ParamGroup> g) { return std::make_unique<SGD>(std::move(g), 0.9, 0.1, false); });
  check_resume(device(), [](std::vector<ParamGroup> g) { return std::make_unique<SGD>(std::move(g), 0.9, 0.0, true); });
}

TEST_P(OptimDevice, StateDictNamesAndStrictLoad) {
  Model m(device());
  AdamW opt(m.groups());
  run_steps(opt, m, 0, 2);
  NamedTensors state = opt.state_dict();
  std::vector<std::string> names;
  for (const auto& [name, t] : state) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"exp_avg.w1", "exp_avg.w2", "exp_avg.b1", "exp_avg.frozen", "exp_avg_sq.w1",
                                             "exp_avg_sq.w2", "exp_avg_sq.b1", "exp_avg_sq.frozen", "step"}));
  EXPECT_EQ(state.back().second.dim(), 0);
  EXPECT_EQ(state.back().second.dtype(), DType::Int64);
  EXPECT_EQ(state.back().second.item(), 2.0);

  // One broken dict: a missing, an unexpected and a mis-shaped entry, and no step.
  NamedTensors broken;
  for (const auto& [name, t] : state) {
    if (name == "exp_avg_sq.w1" || name == "step") continue;
    broken.emplace_back(name, name == "exp_avg.w2" ? Tensor::zeros({6}) : t);
  }
  broken.emplace_back("exp_avg.ghost", Tensor::zeros({2}));
  AdamW fresh(Model(device()).groups());
  try {
    fresh.load_state_dict(broken);
    ADD_FAILURE() << "no error for a broken state dict";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const char* part : {"missing (2)", "exp_avg_sq.w1", "step", "unexpected (1)", "exp_avg.ghost", "mismatched (1)",
                             "exp_avg.w2: checkpoint [6] vs optimizer [5]"})
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  }
  EXPECT_EQ(fresh.steps(), 0);

  NamedTensors bad_step = state;
  bad_step.back().second = Tensor::scalar(2.0, DType::Float32);
  try {
    fresh.load_state_dict(bad_step);
    ADD_FAILURE() << "no error for a float step";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step: expected a 0-d int64 tensor"), std::string::npos) << e.what();
  }
}

TEST_P(OptimDevice, ZeroGradClearsEveryGrad) {
  Model m(device());
  SGD opt(m.groups(), 0.0);
  m.set_grads(0);
  opt.zero_grad();
  for (const Tensor& p : m.params) EXPECT_FALSE(p.grad().defined());
  opt.step(0.1);  // nothing to update
  EXPECT_EQ(m.values(), Model::initial());
}

TEST_P(OptimDevice, ClipGradNormMatchesHandComputation) {
  for (double max_norm : {0.05, 1e3}) {
    Model m(device());
    m.set_grads(2);
    double sum = 0;
    std::vector<std::vector<float>> grads;
    for (size_t k = 0; k < kFrozen; ++k) {
      grads.push_back(grad_values(k, m.params[k].numel(), 2));
      for (float g : grads.back()) sum += double(g) * g;
    }
    double total = std::sqrt(sum);
    Tensor got = clip_grad_norm(m.params, max_norm);  // "frozen" has no grad and is skipped
    EXPECT_EQ(got.dim(), 0);
    EXPECT_EQ(got.dtype(), DType::Float32);
    EXPECT_EQ(got.device(), device());
    EXPECT_NEAR(got.item(), total, 1e-6 * total);
    double coef = std::min(1.0, max_norm / (total + 1e-6));
    for (size_t k = 0; k < kFrozen; ++k) {
      std::vector<float> g = m.params[k].grad().to_vector<float>();
      if (coef == 1.0) {
        EXPECT_EQ(g, grads[k]) << "unclipped grads must stay bit for bit";
      } else {
        std::vector<double> want;
        for (float x : grads[k]) want.push_back(x * coef);
        expect_close(g, want, "clipped " + kParams[k].name);
      }
    }
  }
}

TEST(Optimizer, RejectsBadParamsAndOptions) {
  Model m(Device::cpu());
  std::vector<ParamGroup> twice = m.groups();
  twice[1].params[0] = twice[0].params[0];
  EXPECT_THROW(AdamW{twice}, Error);
  std::vector<ParamGroup> f64 = m.groups();
  f64[0].params[0] = Tensor::zeros({3, 4}, DType::Float64).requires_grad_();
  EXPECT_THROW(AdamW{f64}, Error);
  EXPECT_THROW(AdamW(m.groups(), 1.0), Error);
  EXPECT_THROW(SGD(m.groups(), 0.0, 0.0, true), Error);
  AdamW opt(m.groups());
  EXPECT_THROW(opt.step(-1.0), Error);
}

INSTANTIATE_TEST_SUITE_P(Devices, OptimDevice, ::testing::Values("cpu", "cuda"));

}  // namespace
}  // namespace unirep
