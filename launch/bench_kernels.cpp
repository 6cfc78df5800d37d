// `unirep bench-kernels`: times each op family's forward and backward on the GPU at UniRepLKNet-T
// shapes (batch 128, 224x224 input) and prints each time next to its floor: the larger of
// (bytes that must move / measured copy bandwidth) and (FLOPs / peak rate). The numbers go into
// core/cuda/PERF.md.
#include "launch/bench_kernels.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "autograd/ops.h"
#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/gelu_grn.h"

namespace unirep {

namespace {

// Median milliseconds of `fn` over `reps` runs after warm-up, timed with events on the op stream.
double time_ms(const std::function<void()>& fn, int reps = 20) {
  for (int i = 0; i < 3; ++i) fn();
  cudaStream_t s = cuda::stream();
  std::vector<float> times;
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a, s));
    fn();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    times.push_back(ms);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Row {
  std::string name;
  double bytes, flops, ms;
};

}  // namespace

int run_bench_kernels(double peak_tflops) {
  UNIREP_CHECK(cuda_available(), "bench-kernels: needs a CUDA GPU");
  Generator gen(0);
  Device dev = Device::cuda();
  const DType bf = DType::BFloat16;
  auto randn = [&](const Shape& s, DType dt = DType::BFloat16) { return Tensor::randn(s, gen, dt, dev); };

  // Copy ceiling: 1 GiB device-to-device, bytes read + written.
  Tensor big = randn({int64_t(1) << 28}, DType::Float32), big2 = Tensor::like(big);
  double copy_ms = time_ms([&] { big2.copy_(big); }, 10);
  double bandwidth = 2.0 * double(big.numel()) * 4 / (copy_ms * 1e-3);
  std::printf("device-to-device copy: %.0f GB/s (read + write); peak compute assumed %.0f TFLOP/s (bf16)\n",
              bandwidth / 1e9, peak_tflops);
  big = Tensor();
  big2 = Tensor();

  std::vector<Row> rows;
  auto add_row = [&](std::string name, double bytes, double flops, const std::function<void()>& fn) {
    rows.push_back({std::move(name), bytes, flops, time_ms(fn)});
  };
  NoGradGuard no_grad;
  const int64_t N = 128;

  Tensor x56 = randn({N, 56, 56, 80}), g56 = randn({N, 56, 56, 80});
  double e56 = double(x56.numel());
  add_row("gelu fwd [128,56,56,80] bf16", 4 * e56, 0, [&] { gelu(x56); });
  add_row("add [128,56,56,80] bf16", 6 * e56, e56, [&] { add(x56, g56); });
  add_row("sum over N,H,W [128,56,56,80] bf16", 2 * e56, e56, [&] { sum(x56, {0, 1, 2}); });
  Tensor w80 = randn({80}, DType::Float32), b80 = randn({80}, DType::Float32);
  Tensor rm = Tensor::zeros({80}, DType::Float32, dev), rv = Tensor::ones({80}, DType::Float32, dev);
  add_row("batch_norm train fwd [128,56,56,80] bf16", 6 * e56, 0,
          [&] { batch_norm(x56, w80.to(bf), b80.to(bf), rm, rv, true); });
  add_row("layer_norm fwd [128,56,56,80] bf16", 4 * e56, 0, [&] { layer_norm(x56, w80.to(bf), b80.to(bf)); });

  Tensor x28 = randn({N, 28, 28, 160});
  double e28 = double(x28.numel());
  Tensor w13 = randn({160, 1, 13, 13});
  Conv2dParams dw13{1, 1, 6, 6, 1, 1, 160};
  add_row("depthwise 13x13 fwd [128,28,28,160] bf16", 4 * e28, 2 * e28 * 169, [&] { conv2d(x28, w13, Tensor(), dw13); });
  Tensor w7 = randn({160, 1, 7, 7});
  Conv2dParams dw7d2{1, 1, 6, 6, 2, 2, 160};
  add_row("depthwise 7x7 d2 fwd [128,28,28,160] bf16", 4 * e28, 2 * e28 * 49, [&] { conv2d(x28, w7, Tensor(), dw7d2); });
  Tensor wd = randn({320, 160, 3, 3});
  Conv2dParams down{2, 2, 1, 1, 1, 1, 1};
  add_row("dense 3x3 s2 conv fwd 160->320 @28x28 bf16", 2 * e28 + 2 * e28, 2.0 * N * 14 * 14 * 320 * 160 * 9,
          [&] { conv2d(x28, wd, Tensor(), down); });
  Tensor w1 = randn({640, 160}), b1 = randn({640});
  double rows28 = double(N) * 28 * 28;
  add_row("linear 160->640 on [128,28,28,160] bf16", 2 * (e28 + rows28 * 640), 2 * rows28 * 160 * 640,
          [&] { linear(x28, w1, b1); });
  Tensor logits = randn({N, 1000}, DType::Float32);
  Tensor target = Tensor::from_vector(std::vector<int64_t>(size_t(N), 3), {N}, DType::Int64, dev);
  add_row("cross_entropy [128,1000] f32", 4.0 * N * 1000, 0, [&] { cross_entropy(logits, target); });
  add_row("bilinear x2 [128,28,28,160] bf16", 2 * e28 * 5, 0, [&] { interpolate_bilinear(x28, 56, 56, false); });
  add_row("max_pool 3x3 s2 [128,56,56,80] bf16", 2 * e56 * 1.25, 0,
          [&] { max_pool2d(x56, MaxPool2dParams{3, 3, 2, 2, 1, 1, 1, 1, false}); });

  // Fused GELU + GRN at the MLP hidden shapes of stages 0 and 2 (kernels called directly: the
  // backward needs no graph); the unfused forward (gelu, then GRN's ops in bf16 as autocast runs
  // them) at the first shape for comparison. Floors: forward reads h twice and writes out, backward
  // reads h and dy twice and writes dh.
  for (const Shape& shape : std::vector<Shape>{{N, 56, 56, 320}, {N, 14, 14, 1280}}) {
    Tensor h = randn(shape), dy = randn(shape), out = Tensor::like(h), dh = Tensor::like(h);
    GeluGrnShape gs{shape[0], shape[1] * shape[2], shape[3]};
    Tensor gamma = randn({shape[3]}, DType::Float32), beta = randn({shape[3]}, DType::Float32);
    Tensor dgamma = Tensor::like(gamma), dbeta = Tensor::like(beta);
    Tensor norms = Tensor::empty({gs.batch * gs.channels}, DType::Float32, dev);
    const double e = double(h.numel());
    const std::string dims = shape_str(shape);
    add_row("gelu_grn fwd " + dims + " bf16", 6 * e, 0, [&] { gelu_grn_forward(out, norms, h, gamma, beta, gs); });
    add_row("gelu_grn bwd " + dims + " bf16", 10 * e, 0,
            [&] { gelu_grn_backward(dh, dgamma, dbeta, dy, h, norms, gamma, gs); });
    if (shape[3] == 320) {
      Tensor gamma_bf = gamma.reshape({1, 1, 1, 320}).to(bf), beta_bf = beta.reshape({1, 1, 1, 320}).to(bf);
      add_row("gelu + GRN unfused fwd " + dims + " bf16", 6 * e, 0, [&] {
        Tensor z = gelu(h);
        Tensor g = norm(z, {1, 2}, true);
        add(mul(add_scalar(mul(gamma_bf, div(g, add_scalar(mean(g, {3}, true), 1e-6))), 1.0), z), beta_bf);
      });
    }
  }

  std::printf("%-48s %10s %10s %8s\n", "kernel", "time ms", "floor ms", "x floor");
  for (const Row& r : rows) {
    double floor_ms = std::max(r.bytes / bandwidth, r.flops / (peak_tflops * 1e12)) * 1e3;
    std::printf("%-48s %10.3f %10.3f %8.1f\n", r.name.c_str(), r.ms, floor_ms, r.ms / floor_ms);
  }
  return 0;
}

}  // namespace unirep
