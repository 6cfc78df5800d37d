// The multi-tensor paths (optim/optimizer_kernels.h *_multi, global_norm, clip_by_norm) against the
// per-tensor ones, bit for bit: tensor sizes 1, 1000 and 1M+1 (many blocks, a pack tail), a view
// at a 4-byte offset (the unaligned element-by-element path), enough tensors and param groups to
// split the tables over several launches. On the CPU the multi forms are loops over the per-tensor
// ones; on CUDA they are the multi-tensor kernels.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include <gtest/gtest.h>

#include "core/generator.h"
#include "optim/optimizer.h"
#include "optim/optimizer_kernels.h"

namespace unirep {
namespace {

class MultiTensor : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda" && !cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
  Device device() const { return GetParam() == "cuda" ? Device::cuda() : Device::cpu(); }
  // The large tensor: 1M+1 elements (123 chunks and a pack tail) on CUDA; smaller on the CPU, whose
  // multi forms are loops over the per-tensor ones, to keep the suite fast.
  int64_t big() const { return GetParam() == "cuda" ? 1000001 : 10001; }
};

// Bitwise equality of two tensors' values (as float), naming the first difference.
void expect_same_bits(const Tensor& got, const Tensor& want, const std::string& what) {
  std::vector<float> a = got.to(DType::Float32).to_vector<float>(), b = want.to(DType::Float32).to_vector<float>();
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << "[" << i << "]: " << a[i] << " vs " << b[i];
      return;
    }
}

// A contiguous float32 tensor of n values whose data starts 4 bytes past an allocation (unaligned).
Tensor unaligned_randn(int64_t n, Generator& gen, Device device) {
  return Tensor::randn({n + 1}, gen, DType::Float32, device).slice(0, 1, n + 1);
}
Tensor unaligned_rand(int64_t n, Generator& gen, Device device) {
  return Tensor::rand({n + 1}, gen, 0.0, 1.0, DType::Float32, device).slice(0, 1, n + 1);
}

TEST_P(MultiTensor, AdamWStepEqualsPerTensorUpdates) {
  Generator gen(7);
  const std::vector<int64_t> sizes = {1, 1000, big(), 1000, 1, 3};
  std::vector<Tensor> params, reference, m, v;
  for (size_t i = 0; i < sizes.size(); ++i) {
    Tensor p = i == 3 ? unaligned_randn(sizes[i], gen, device()) : Tensor::randn({sizes[i]}, gen, DType::Float32, device());
    params.push_back(p.requires_grad_());
    reference.push_back(p.clone());
    m.push_back(Tensor::zeros({sizes[i]}, DType::Float32, device()));
    v.push_back(Tensor::zeros({sizes[i]}, DType::Float32, device()));
  }
  // Group 0: the first three (wd 0.05, lr scale 1); group 1: the rest (wd 0.01, lr scale 0.5).
  ParamGroup a{"a", {"p0", "p1", "p2"}, {params[0], params[1], params[2]}, 0.05, 1.0, 0};
  ParamGroup b{"b", {"p3", "p4", "p5"}, {params[3], params[4], params[5]}, 0.01, 0.5, 1};
  AdamW opt({a, b}, 0.9, 0.999, 1e-8);

  for (int step = 1; step <= 3; ++step) {
    double lr = 1e-3 * step;
    for (size_t i = 0; i < sizes.size(); ++i) {
      Tensor g = Tensor::randn({sizes[i]}, gen, DType::Float32, device());
      params[i].set_grad(g);
      bool first_group = i < 3;
      AdamWUpdate f = AdamWUpdate::make(lr * (first_group ? 1.0 : 0.5), first_group ? 0.05 : 0.01, 0.9, 0.999, 1e-8, step);
      adamw_update(reference[i], g, m[i], v[i], f);
    }
    opt.step(lr);
  }
  NamedTensors state = opt.state_dict();
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::string name = "p" + std::to_string(i);
    expect_same_bits(params[i], reference[i], name);
    for (const auto& [key, t] : state) {
      if (key == "exp_avg." + name) expect_same_bits(t, m[i], key);
      if (key == "exp_avg_sq." + name) expect_same_bits(t, v[i], key);
    }
  }
}

// 150 tensors (over three tables of 64) with 20 functors, a functor met again after others, and
// every third tensor unaligned.
TEST_P(MultiTensor, AdamWManyTensorsAndFunctorsSplitIntoLaunches) {
  Generator gen(11);
  std::vector<AdamWUpdate> functors;
  for (int k = 0; k < 20; ++k) functors.push_back(AdamWUpdate::make(1e-3 * (k + 1), 0.01 * k, 0.9, 0.999, 1e-8, 1 + k % 4));
  std::vector<AdamWTensors> multi, single;
  for (int i = 0; i < 150; ++i) {
    int64_t n = 1 + (i * 37) % 300;
    bool aligned = i % 3 != 0;
    auto normal = [&] { return aligned ? Tensor::randn({n}, gen, DType::Float32, device()) : unaligned_randn(n, gen, device()); };
    Tensor p = normal(), g = normal(), m = normal();
    Tensor v = aligned ? Tensor::rand({n}, gen, 0.0, 1.0, DType::Float32, device()) : unaligned_rand(n, gen, device());
    size_t functor = i < 140 ? size_t(i / 7) : size_t(3);
    multi.push_back({p, g, m, v, functor});
    single.push_back({p.clone(), g, m.clone(), v.clone(), functor});
  }
  std::unique_ptr<cuda::StagedUpload> staging;
  if (device().is_cuda()) staging = std::make_unique<cuda::StagedUpload>(device().index);
  adamw_update_multi(multi, functors, staging.get());
  for (const AdamWTensors& t : single) adamw_update(t.param, t.grad, t.exp_avg, t.exp_avg_sq, functors[t.functor]);
  for (size_t i = 0; i < multi.size(); ++i) {
    expect_same_bits(multi[i].param, single[i].param, "param " + std::to_string(i));
    expect_same_bits(multi[i].exp_avg, single[i].exp_avg, "exp_avg " + std::to_string(i));
    expect_same_bits(multi[i].exp_avg_sq, single[i].exp_avg_sq, "exp_avg_sq " + std::to_string(i));
  }
}

TEST_P(MultiTensor, UnscaleEqualsPerTensorAndFindsTheInf) {
  Generator gen(3);
  std::vector<Tensor> grads = {Tensor::randn({1}, gen, DType::Float32, device()),
                               Tensor::randn({1000}, gen, DType::Float32, device()),
                               Tensor::randn({big()}, gen, DType::Float32, device()),
                               unaligned_randn(999, gen, device()),
                               Tensor::randn({1003}, gen, DType::BFloat16, device()),
                               Tensor::randn({2}, gen, DType::Float16, device())};
  const float inv_scale = 1.0f / 1024;
  for (bool with_inf : {false, true}) {
    std::vector<Tensor> multi, single;
    for (const Tensor& g : grads) {
      multi.push_back(g.clone());
      single.push_back(g.clone());
    }
    if (with_inf) {
      multi[1].slice(0, 500, 501).fill_(std::numeric_limits<double>::infinity());
      single[1].slice(0, 500, 501).fill_(std::numeric_limits<double>::infinity());
    }
    Tensor found_multi = Tensor::zeros({}, DType::Float32, device()), found_single = Tensor::zeros({}, DType::Float32, device());
    unscale_and_find_inf_multi(multi, inv_scale, found_multi);
    for (const Tensor& g : single) unscale_and_find_inf(g, inv_scale, found_single);
    EXPECT_EQ(found_multi.item(), with_inf ? 1.0 : 0.0);
    EXPECT_EQ(found_single.item(), found_multi.item());
    for (size_t i = 0; i < grads.size(); ++i) expect_same_bits(multi[i], single[i], "grad " + std::to_string(i));
    EXPECT_EQ(multi[2].to_vector<float>()[123], grads[2].to_vector<float>()[123] * inv_scale);
  }
}

// 130 small grads (over one table of 128) and three large ones: the norm against a double sum,
// equal on a second run, and the clip exactly g * min(1, max_norm / (total + 1e-6)).
TEST_P(MultiTensor, GlobalNormAndClipOverManyTensors) {
  Generator gen(5);
  std::vector<Tensor> grads;
  for (int i = 0; i < 130; ++i) grads.push_back(Tensor::randn({1 + i % 5}, gen, DType::Float32, device()));
  grads.push_back(Tensor::randn({big()}, gen, DType::Float32, device()));
  grads.push_back(unaligned_randn(1000, gen, device()));
  grads.push_back(Tensor::randn({1}, gen, DType::Float32, device()));
  double want = 0.0;
  std::vector<Tensor> originals;
  for (const Tensor& g : grads) {
    for (float x : g.to_vector<float>()) want += double(x) * x;
    originals.push_back(g.clone());
  }
  want = std::sqrt(want);
  Tensor total = Tensor::zeros({}, DType::Float32, device()), again = Tensor::zeros({}, DType::Float32, device());
  global_norm(grads, total);
  global_norm(grads, again);
  EXPECT_NEAR(total.item(), want, 1e-5 * want);
  EXPECT_EQ(total.item(), again.item());

  const float max_norm = 10.0f, coef = std::min(1.0f, max_norm / (float(total.item()) + 1e-6f));
  ASSERT_LT(coef, 1.0f);
  clip_by_norm(grads, total, max_norm);
  for (size_t i = 0; i < grads.size(); ++i) {
    std::vector<float> expected = originals[i].to_vector<float>();
    for (float& x : expected) x *= coef;
    expect_same_bits(grads[i], Tensor::from_vector(expected, grads[i].shape()), "clipped grad " + std::to_string(i));
  }
}

TEST(MultiTensorChecks, RejectBadTablesAndMixedDevices) {
  Tensor p = Tensor::zeros({4}), g = Tensor::zeros({4}), m = Tensor::zeros({4}), v = Tensor::zeros({3});
  std::vector<AdamWUpdate> functors = {AdamWUpdate::make(1e-3, 0.0, 0.9, 0.999, 1e-8, 1)};
  EXPECT_THROW(adamw_update_multi({{p, g, m, v, 0}}, functors, nullptr), Error);  // exp_avg_sq of 3 elements
  EXPECT_THROW(adamw_update_multi({{p, g, m, Tensor::zeros({4}), 1}}, functors, nullptr), Error);  // functor 1 of 1
  EXPECT_THROW(unscale_and_find_inf_multi({Tensor::zeros({2}, DType::Int64)}, 1.0f, Tensor::zeros({})), Error);
  EXPECT_THROW(unscale_and_find_inf_multi({g}, 1.0f, Tensor::zeros({2})), Error);  // found is not a scalar
}

INSTANTIATE_TEST_SUITE_P(Devices, MultiTensor, ::testing::Values("cpu", "cuda"));

}  // namespace
}  // namespace unirep
