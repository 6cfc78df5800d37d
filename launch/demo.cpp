// `unirep demo`: a small end-to-end training run through the autograd engine, on the GPU when one
// is present. The task is synthetic and needs no data files: 16x16 RGB noise images with a bright
// 5x5 square in one of four quadrants; the label is the quadrant. The net touches the ops the
// UniRepLKNet blocks use (dense and depthwise conv, batch and layer norm, GELU, global pooling,
// dropout, linear, label-smoothed cross-entropy) and trains with SGD + momentum.
#include "launch/demo.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "autograd/ops.h"

namespace unirep {

namespace {

constexpr int64_t kSize = 16, kClasses = 4;

// Images [n, 16, 16, 3] (NHWC) and labels [n], drawn from `gen`.
void make_batch(int64_t n, Generator& gen, Device device, Tensor& images, Tensor& labels) {
  std::vector<float> noise = Tensor::randn({n, kSize, kSize, 3}, gen).to_vector<float>();
  std::vector<float> u = Tensor::rand({n, 3}, gen).to_vector<float>();
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t label = std::min<int64_t>(kClasses - 1, int64_t(u[size_t(3 * i)] * kClasses));
    y[size_t(i)] = label;
    int64_t half = kSize / 2, side = 5;
    int64_t top = (label / 2) * half + int64_t(u[size_t(3 * i + 1)] * (half - side + 1));
    int64_t left = (label % 2) * half + int64_t(u[size_t(3 * i + 2)] * (half - side + 1));
    for (int64_t h = top; h < top + side; ++h)
      for (int64_t w = left; w < left + side; ++w)
        for (int64_t c = 0; c < 3; ++c) noise[size_t(((i * kSize + h) * kSize + w) * 3 + c)] += 2.0f;
  }
  images = Tensor::from_vector(noise, {n, kSize, kSize, 3}, DType::Float32, device);
  labels = Tensor::from_vector(y, {n}, DType::Int64, device);
}

struct Net {
  Tensor stem_w, stem_b, bn1_w, bn1_b, bn1_mean, bn1_var;
  Tensor dw_w, bn2_w, bn2_b, bn2_mean, bn2_var;
  Tensor down_w, down_b, ln_w, ln_b, head_w, head_b;

  std::vector<Tensor> parameters() const {
    return {stem_w, stem_b, bn1_w, bn1_b, dw_w, bn2_w, bn2_b, down_w, down_b, ln_w, ln_b, head_w, head_b};
  }

  static Net create(Device device, Generator& gen) {
    auto param = [&](const Shape& shape, double std) {
      Tensor t = Tensor::randn(shape, gen).to(device);
      t.mul_(std);
      return t.requires_grad_();
    };
    auto constant = [&](const Shape& shape, double v, bool grad) {
      Tensor t = Tensor::full(shape, v, DType::Float32, device);
      return grad ? t.requires_grad_() : t;
    };
    Net n;
    n.stem_w = param({16, 3, 3, 3}, std::sqrt(2.0 / 27));
    n.stem_b = constant({16}, 0, true);
    n.bn1_w = constant({16}, 1, true), n.bn1_b = constant({16}, 0, true);
    n.bn1_mean = constant({16}, 0, false), n.bn1_var = constant({16}, 1, false);
    n.dw_w = param({16, 1, 7, 7}, std::sqrt(2.0 / 49));
    n.bn2_w = constant({16}, 1, true), n.bn2_b = constant({16}, 0, true);
    n.bn2_mean = constant({16}, 0, false), n.bn2_var = constant({16}, 1, false);
    n.down_w = param({32, 16, 3, 3}, std::sqrt(2.0 / 144));
    n.down_b = constant({32}, 0, true);
    n.ln_w = constant({32}, 1, true), n.ln_b = constant({32}, 0, true);
    n.head_w = param({kClasses, 32}, 0.02);
    n.head_b = constant({kClasses}, 0, true);
    return n;
  }

  Tensor forward(const Tensor& x, bool training, Generator& gen) const {
    Conv2dParams same{1, 1, 1, 1, 1, 1, 1};
    Tensor h = conv2d(x, stem_w, stem_b, same);
    h = gelu(batch_norm(h, bn1_w, bn1_b, bn1_mean, bn1_var, training));
    Conv2dParams depthwise{1, 1, 3, 3, 1, 1, 16};
    h = add(h, gelu(batch_norm(conv2d(h, dw_w, Tensor(), depthwise), bn2_w, bn2_b, bn2_mean, bn2_var, training)));
    Conv2dParams down{2, 2, 1, 1, 1, 1, 1};
    h = gelu(layer_norm(conv2d(h, down_w, down_b, down), ln_w, ln_b));
    h = dropout(global_avg_pool(h), 0.1, training, gen);
    return linear(h, head_w, head_b);
  }
};

double accuracy(const Tensor& logits, const Tensor& labels) {
  std::vector<float> l = logits.to_vector<float>();
  std::vector<int64_t> y = labels.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const float* row = &l[i * kClasses];
    correct += int64_t(std::max_element(row, row + kClasses) - row) == y[i];
  }
  return double(correct) / double(y.size());
}

}  // namespace

int run_demo(const DemoOptions& opt) {
  Device device = opt.device == "cuda" || (opt.device == "auto" && cuda_available()) ? Device::cuda() : Device::cpu();
  std::printf("demo: training a small NHWC conv net on %s for %d steps (batch %d)\n", device.str().c_str(),
              opt.steps, opt.batch);
  Generator gen(opt.seed);
  Net net = Net::create(device, gen);
  std::vector<Tensor> params = net.parameters(), velocity;
  for (const Tensor& p : params) velocity.push_back(Tensor::zeros(p.shape(), p.dtype(), device));

  auto start = std::chrono::steady_clock::now();
  double last_loss = 0;
  for (int step = 1; step <= opt.steps; ++step) {
    Tensor images, labels;
    make_batch(opt.batch, gen, device, images, labels);
    Tensor logits = net.forward(images, true, gen);
    Tensor loss = cross_entropy(logits, labels, -100, 0.1);
    for (const Tensor& p : params) p.set_grad(Tensor());
    loss.backward();
    {
      NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) {
        velocity[i].mul_(0.9);
        velocity[i].add_(params[i].grad());
        params[i].add_(velocity[i], -opt.lr);
      }
    }
    last_loss = loss.item();
    if (step % 10 == 0 || step == 1) {
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("step %4d  loss %.4f  batch acc %.3f  %.0f img/s\n", step, last_loss, accuracy(logits, labels),
                  step * opt.batch / seconds);
    }
  }
  Tensor images, labels;
  Generator eval_gen(opt.seed + 1000);
  make_batch(1024, eval_gen, device, images, labels);
  double acc;
  {
    NoGradGuard no_grad;
    acc = accuracy(net.forward(images, false, gen), labels);
  }
  std::printf("{\"device\": \"%s\", \"steps\": %d, \"final_loss\": %.4f, \"eval_accuracy\": %.4f}\n",
              device.str().c_str(), opt.steps, last_loss, acc);
  return acc >= opt.min_accuracy ? 0 : 1;
}

}  // namespace unirep
