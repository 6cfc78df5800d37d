// AutocastWeightCache: casts served from one buffer with the cast node still recorded, a small
// model's forward and backward bitwise equal with and without the cache (CPU, CUDA), inert outside
// autocast, for float64 and for another dtype, and no value served from a cache that has ended or
// for a parameter replaced by another tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "autograd/autocast_weight_cache.h"
#include "autograd/ops.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

Tensor param(Generator& gen, const Shape& shape, double scale, Device device = Device::cpu()) {
  Tensor t = Tensor::randn(shape, gen);
  t.mul_(scale);
  return t.to(device).requires_grad_();
}

TEST(AutocastWeightCache, ServesViewsOfOneBufferAndRecordsTheCast) {
  Generator gen(1);
  Tensor w = param(gen, {3, 5}, 1.0), b = param(gen, {3}, 1.0);
  AutocastGuard amp(DType::BFloat16);
  AutocastWeightCache cache({w, b, w});
  EXPECT_EQ(cache.size(), 2u);  // w once
  Tensor cw = cast(w, DType::BFloat16), cw2 = cast(w, DType::BFloat16), cb = cast(b, DType::BFloat16);
  EXPECT_EQ(cw.to_vector<float>(), w.detach().to(DType::BFloat16).to_vector<float>());
  EXPECT_EQ(cb.to_vector<float>(), b.detach().to(DType::BFloat16).to_vector<float>());
  EXPECT_EQ(cw.storage(), cb.storage());
  EXPECT_EQ(cw.offset(), 0);
  EXPECT_EQ(cb.offset(), 16);  // 15 elements rounded up to the 8-element pack
  EXPECT_EQ(cw.shape(), w.shape());
  // Each use gets its own handle with its own node; gradients of both uses reach w in float32.
  EXPECT_FALSE(cw.same(cw2));
  ASSERT_TRUE(cw.grad_fn() && cw2.grad_fn() && cw.grad_fn() != cw2.grad_fn());
  {
    AutocastGuard plain(DType::BFloat16, false);
    Tensor loss = sum(add(mul(cw, cw2), cb.reshape({3, 1})));
    loss.backward();
  }
  ASSERT_EQ(w.grad().dtype(), DType::Float32);
  const std::vector<float> wv = cw.to_vector<float>(), gw = w.grad().to_vector<float>();
  for (size_t i = 0; i < wv.size(); ++i) EXPECT_FLOAT_EQ(gw[i], 2 * wv[i]);
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{5, 5, 5}));
  // A contiguous view of a cached parameter (SE's reshaped 1x1 conv weights) is served too; a
  // strided one is cast as before.
  Tensor rows = cast(w.slice(0, 1, 3).reshape({10}), DType::BFloat16);
  EXPECT_EQ(rows.storage(), cw.storage());
  EXPECT_EQ(rows.offset(), 5);
  EXPECT_EQ(rows.to_vector<float>(), w.detach().slice(0, 1, 3).to(DType::BFloat16).reshape({10}).to_vector<float>());
  Tensor wt = cast(w.transpose(0, 1), DType::BFloat16);
  EXPECT_NE(wt.storage(), cw.storage());
  EXPECT_EQ(wt.to_vector<float>(), w.detach().transpose(0, 1).to(DType::BFloat16).to_vector<float>());
  // Another dtype than the cached one is cast as before.
  EXPECT_NE(cast(w, DType::Float16).storage(), cw.storage());
}

TEST(AutocastWeightCache, InertOutsideAutocastAndForFloat64) {
  Generator gen(2);
  Tensor w = param(gen, {4}, 1.0), w64 = param(gen, {4}, 1.0).detach().to(DType::Float64).requires_grad_();
  {
    AutocastWeightCache cache({w, w64});
    EXPECT_EQ(cache.size(), 0u);
    EXPECT_FALSE(autocast_cached_cast(w, DType::BFloat16).defined());
  }
  AutocastGuard amp(DType::BFloat16);
  {
    AutocastGuard off(DType::BFloat16, false);
    AutocastWeightCache cache({w});
    EXPECT_EQ(cache.size(), 0u);
  }
  AutocastWeightCache cache({w64});
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(linear(Tensor::ones({1, 4}, DType::Float64), w64.reshape({1, 4})).dtype(), DType::Float64);
}

TEST(AutocastWeightCache, NoValueOutlivesTheCacheOrAReplacedParameter) {
  Generator gen(3);
  Tensor w = param(gen, {6}, 1.0);
  AutocastGuard amp(DType::BFloat16);
  {
    AutocastWeightCache cache({w});
    EXPECT_TRUE(autocast_cached_cast(w, DType::BFloat16).defined());
  }
  EXPECT_FALSE(autocast_cached_cast(w, DType::BFloat16).defined());
  // The usage: a parameter updated between forwards is cast afresh by the next forward's cache.
  {
    NoGradGuard no_grad;
    w.add_(Tensor::ones({6}), 1.0);
  }
  AutocastWeightCache outer({w});
  EXPECT_EQ(cast(w, DType::BFloat16).to_vector<float>(), w.detach().to(DType::BFloat16).to_vector<float>());
  // A tensor put in place of a cached one is not served the old values.
  Tensor replaced = w;
  w = param(gen, {6}, 1.0);
  EXPECT_FALSE(autocast_cached_cast(w, DType::BFloat16).defined());
  EXPECT_EQ(cast(w, DType::BFloat16).to_vector<float>(), w.detach().to(DType::BFloat16).to_vector<float>());
  // Caches nest: the inner one serves w, the outer still serves what only it holds.
  AutocastWeightCache inner({w});
  EXPECT_NE(autocast_cached_cast(w, DType::BFloat16).storage(),
            autocast_cached_cast(replaced, DType::BFloat16).storage());
  EXPECT_TRUE(autocast_cached_cast(replaced, DType::BFloat16).defined());
}

// conv, batch norm, gelu, a depthwise conv under a layer scale, pooling, two uses of one linear and
// a 1x1 conv weight reshaped into a linear's (as SE): every kind of autocast cast a UniRepLKNet
// block makes (conv/linear weights and biases, the layer scale, views of weights).
struct SmallNet {
  Tensor conv_w, conv_b, bn_w, bn_b, dw_w, gamma, fc_w, fc_b, se_w, head_w, head_b;

  explicit SmallNet(Device device) {
    Generator gen(4);
    conv_w = param(gen, {8, 3, 3, 3}, 0.3, device), conv_b = param(gen, {8}, 0.1, device);
    bn_w = param(gen, {8}, 0.1, device), bn_b = param(gen, {8}, 0.1, device);
    dw_w = param(gen, {8, 1, 5, 5}, 0.2, device), gamma = param(gen, {8}, 0.5, device);
    fc_w = param(gen, {8, 8}, 0.3, device), fc_b = param(gen, {8}, 0.1, device);
    se_w = param(gen, {8, 8, 1, 1}, 0.3, device);
    head_w = param(gen, {3, 8}, 0.3, device), head_b = param(gen, {3}, 0.1, device);
  }
  std::vector<Tensor> parameters() const {
    return {conv_w, conv_b, bn_w, bn_b, dw_w, gamma, fc_w, fc_b, se_w, head_w, head_b};
  }
  Tensor logits(const Tensor& x) const {
    const Device d = x.device();
    Tensor mean = Tensor::zeros({8}, DType::Float32, d), var = Tensor::ones({8}, DType::Float32, d);
    Tensor h = conv2d(x, conv_w, conv_b, Conv2dParams{1, 1, 1, 1, 1, 1, 1});
    h = gelu(batch_norm(h, bn_w, bn_b, mean, var, true));
    h = add(h, mul(conv2d(h, dw_w, Tensor(), Conv2dParams{1, 1, 2, 2, 1, 1, 8}), gamma));
    h = global_avg_pool(h);
    h = linear(gelu(linear(h, fc_w, fc_b)), fc_w, fc_b);
    h = mul(h, sigmoid(linear(h, se_w.reshape({8, 8}))));
    return linear(h, head_w, head_b);
  }
};

struct StepResult {
  std::vector<float> logits, loss;
  std::vector<std::vector<float>> grads;
};

StepResult step(Device device, bool with_cache) {
  SmallNet net(device);
  Generator gen(5);
  Tensor x = Tensor::randn({4, 6, 6, 3}, gen).to(device);
  Tensor y = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 1}, {4}, DType::Int64, device);
  Tensor logits, loss;
  {
    AutocastGuard amp(DType::BFloat16);
    std::optional<AutocastWeightCache> cache;
    if (with_cache) {
      cache.emplace(net.parameters());
      EXPECT_EQ(cache->size(), net.parameters().size());
    }
    logits = net.logits(x);
    loss = cross_entropy(logits, y, -100, 0.1);
  }
  loss.backward();
  StepResult r{cast(logits, DType::Float32).to_vector<float>(), loss.to_vector<float>(), {}};
  for (const Tensor& p : net.parameters()) {
    EXPECT_EQ(p.grad().dtype(), DType::Float32);
    r.grads.push_back(p.grad().to_vector<float>());
  }
  return r;
}

double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += double(a[i] - b[i]) * (a[i] - b[i]), norm += double(b[i]) * b[i];
  return std::sqrt(diff / norm);
}

// Bitwise, except a gradient that two runs without the cache already disagree on (a cuDNN weight
// gradient algorithm with atomics, if the heuristics pick one): that one to 1e-5.
void expect_same_step(Device device) {
  const StepResult plain = step(device, false), again = step(device, false), cached = step(device, true);
  EXPECT_EQ(cached.logits, plain.logits);
  EXPECT_EQ(cached.loss, plain.loss);
  ASSERT_EQ(cached.grads.size(), plain.grads.size());
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    if (again.grads[i] == plain.grads[i])
      EXPECT_EQ(cached.grads[i], plain.grads[i]) << "parameter " << i;
    else
      EXPECT_LT(relative_difference(cached.grads[i], plain.grads[i]), 1e-5) << "parameter " << i << " (not deterministic)";
  }
}

TEST(AutocastWeightCache, SmallNetStepBitwiseAsWithoutTheCacheCpu) { expect_same_step(Device::cpu()); }

TEST(AutocastWeightCache, SmallNetStepBitwiseAsWithoutTheCacheCuda) {
  UNIREP_SKIP_WITHOUT_CUDA();
  expect_same_step(Device::cuda(0));
}

}  // namespace
}  // namespace unirep
