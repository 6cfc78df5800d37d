// A whole training step through the engine: a small NHWC conv net learns on the CPU, and on the GPU
// its steady-state steps allocate nothing new from the driver (the caching allocator serves them).
#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "core/allocator.h"

namespace unirep {
namespace {

struct TinyNet {
  Tensor conv_w, conv_b, bn_w, bn_b, bn_mean, bn_var, dw_w, ln_w, ln_b, fc_w, fc_b;

  explicit TinyNet(Device device) {
    Generator gen(1);
    auto param = [&](const Shape& s, double std) {
      Tensor t = Tensor::randn(s, gen).to(device);
      t.mul_(std);
      return t.requires_grad_();
    };
    auto constant = [&](int64_t n, double v, bool grad) {
      Tensor t = Tensor::full({n}, v, DType::Float32, device);
      return grad ? t.requires_grad_() : t;
    };
    conv_w = param({8, 3, 3, 3}, 0.3), conv_b = constant(8, 0, true);
    bn_w = constant(8, 1, true), bn_b = constant(8, 0, true);
    bn_mean = constant(8, 0, false), bn_var = constant(8, 1, false);
    dw_w = param({8, 1, 5, 5}, 0.2);
    ln_w = constant(8, 1, true), ln_b = constant(8, 0, true);
    fc_w = param({3, 8}, 0.1), fc_b = constant(3, 0, true);
  }
  std::vector<Tensor> parameters() const { return {conv_w, conv_b, bn_w, bn_b, dw_w, ln_w, ln_b, fc_w, fc_b}; }

  Tensor loss(const Tensor& x, const Tensor& y, Generator& gen) const {
    Tensor h = conv2d(x, conv_w, conv_b, Conv2dParams{2, 2, 1, 1, 1, 1, 1});
    h = gelu(batch_norm(h, bn_w, bn_b, bn_mean, bn_var, true));
    h = add(h, conv2d(h, dw_w, Tensor(), Conv2dParams{1, 1, 2, 2, 1, 1, 8}));
    h = layer_norm(h, ln_w, ln_b);
    h = dropout(global_avg_pool(h), 0.1, true, gen);
    return cross_entropy(linear(h, fc_w, fc_b), y, -100, 0.1);
  }
};

// Class c images have channel c brighter than the others.
void batch(Generator& gen, Device device, Tensor& x, Tensor& y) {
  const int64_t n = 24;
  std::vector<float> v = Tensor::randn({n, 8, 8, 3}, gen).to_vector<float>();
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    labels[size_t(i)] = i % 3;
    for (int64_t p = 0; p < 64; ++p) v[size_t((i * 64 + p) * 3 + i % 3)] += 1.5f;
  }
  x = Tensor::from_vector(v, {n, 8, 8, 3}, DType::Float32, device);
  y = Tensor::from_vector(labels, {n}, DType::Int64, device);
}

double sgd_step(TinyNet& net, Generator& gen, Device device) {
  Tensor x, y;
  batch(gen, device, x, y);
  Tensor loss = net.loss(x, y, gen);
  for (const Tensor& p : net.parameters()) p.set_grad(Tensor());
  loss.backward();
  NoGradGuard no_grad;
  for (Tensor p : net.parameters()) p.add_(p.grad(), -0.2);
  return loss.item();
}

TEST(TrainingStep, LossFallsOnCpu) {
  TinyNet net(Device::cpu());
  Generator gen(5);
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    double l = sgd_step(net, gen, Device::cpu());
    if (step < 5) first += l / 5;
    if (step >= 35) last += l / 5;
  }
  EXPECT_LT(last, 0.6 * first) << "mean loss of the first 5 steps " << first << ", of the last 5 " << last;
}

TEST(TrainingStep, SteadyStateMakesNoCudaMalloc) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  TinyNet net(Device::cuda());
  Generator gen(5);
  for (int step = 0; step < 3; ++step) sgd_step(net, gen, Device::cuda());
  CudaAllocatorStats warm = cuda_allocator_stats(0);
  for (int step = 0; step < 10; ++step) sgd_step(net, gen, Device::cuda());
  CudaAllocatorStats after = cuda_allocator_stats(0);
  EXPECT_EQ(after.cuda_malloc_calls, warm.cuda_malloc_calls);
  EXPECT_EQ(after.cuda_free_calls, warm.cuda_free_calls);
  EXPECT_EQ(after.reserved_bytes, warm.reserved_bytes);
}

}  // namespace
}  // namespace unirep
