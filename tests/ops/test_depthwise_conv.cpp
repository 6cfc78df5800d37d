// The tiled CUDA depthwise kernels (core/ops/depthwise_conv.h) against the CPU conv2d: forward, input
// gradient and weight gradient through autograd, float32 / bfloat16 / float16, every odd kernel width
// 3..31, dilations 1..5, images smaller than the kernel or not a multiple of the tile, channel counts
// not a multiple of 8 or 32, batch 1 and 2, non-"same" padding (the input gradient then runs with a
// mirrored padding that can be negative). Tolerances, normwise relative: float32 1e-5 (float
// accumulation in another order); bfloat16 / float16 1e-2 (both devices accumulate in float and round
// each output once, so elements differ by at most one unit in the last place, 2^-8 / 2^-11 relative).
// The weight gradient runs v4 (core/ops/depthwise_conv_wgrad.cuh) where use_v4 says so (else v3): its
// whole-image tiles (images up to ~20x20 such as 7x7 and 14x14, bounds-checked reads), halo tiles (larger images),
// several warps per kernel-row block (parts), several blocks along the kernel rows (R = 31), OW 4 and 8
// and the scalar staging of odd channel counts are all among the cases below.
// bfloat16 / float16 with R = S odd 7..15 and C % 8 == 0 run on tensor cores
// (core/ops/depthwise_conv_tc.cuh), also covered by TensorCoreMatchesCpu.
// The CUDA tests skip without a GPU; the dispatch test is host-only and runs everywhere.
#include "core/ops/depthwise_conv.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

Conv2dParams dw_params(int64_t C, int64_t pad_h, int64_t pad_w, int64_t dilation) {
  Conv2dParams p;
  p.pad_h = pad_h;
  p.pad_w = pad_w;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = C;
  return p;
}

// Depthwise case: x [N, H, W, C], kernel R x S, padding (ph, pw), dilation d.
OpCase dw_case(int64_t N, int64_t H, int64_t W, int64_t C, int64_t R, int64_t S, int64_t ph, int64_t pw,
               int64_t d, bool bias) {
  const std::string name = "dw_N" + std::to_string(N) + "_" + std::to_string(H) + "x" + std::to_string(W) + "x" +
                           std::to_string(C) + "_k" + std::to_string(R) + "x" + std::to_string(S) + "_p" +
                           std::to_string(ph) + "," + std::to_string(pw) + "_d" + std::to_string(d) +
                           (bias ? "_bias" : "");
  const Conv2dParams p = dw_params(C, ph, pw, d);
  OpCase c{name,
           [=](Generator& g) {
             std::vector<Tensor> in{randn64(g, {N, H, W, C}), randn64(g, {C, 1, R, S}, true, 1.0 / double(R))};
             if (bias) in.push_back(randn64(g, {C}));
             return in;
           },
           [=](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), p); }};
  c.gradcheck = false;
  return c;
}

OpCase same_case(int64_t N, int64_t H, int64_t W, int64_t C, int64_t k, int64_t d, bool bias) {
  return dw_case(N, H, W, C, k, k, d * (k - 1) / 2, d * (k - 1) / 2, d, bias);
}

std::vector<OpCase> tiled_cases() {
  std::vector<OpCase> cases;
  for (int64_t k = 3; k <= 31; k += 2)  // every odd width; borders and odd channel counts vary with k
    cases.push_back(same_case(1 + k % 2, 9 + k % 5, 11 + k % 7, 5 + k % 4, k, 1, k % 4 == 1));
  for (int64_t d = 2; d <= 5; ++d) {
    cases.push_back(same_case(2, 13, 10, 40, 3, d, d % 2 == 0));
    cases.push_back(same_case(1, 17, 19, 33, d < 5 ? 7 : 5, d, false));
  }
  cases.push_back(same_case(1, 3, 4, 70, 13, 1, true));   // image smaller than the kernel
  cases.push_back(same_case(2, 7, 7, 64, 13, 1, false));  // stage 3 like
  cases.push_back(same_case(2, 28, 28, 48, 13, 1, true)); // several tiles per image
  cases.push_back(same_case(2, 14, 14, 96, 7, 2, false)); // a DRB branch
  cases.push_back(dw_case(2, 9, 10, 6, 5, 5, 0, 0, 1, true));  // valid conv: input-grad padding 4
  cases.push_back(dw_case(1, 6, 8, 3, 3, 5, 3, 5, 1, false));  // padding beyond "same": mirrored pad < 0
  cases.push_back(dw_case(2, 8, 9, 10, 4, 3, 1, 2, 2, true));  // even R, asymmetric padding
  // Weight-gradient v4 paths: whole-image tiles at each DRB dilation on 7x7 and 14x14 (odd C: scalar
  // staging), 7x7 d2 and 5x5 on a 14x14 image, a 31x31 kernel (kernel-row blocks over blockIdx.z), a
  // 13x13 kernel on 30x30 (halo tiles with edge tiles), a 1-pixel-wide image (no whole-image tile).
  for (int64_t d = 3; d <= 5; ++d) {
    cases.push_back(same_case(2, 7, 7, 37, 3, d, false));
    cases.push_back(same_case(1, 14, 14, 64, 3, d, false));
  }
  cases.push_back(same_case(2, 14, 14, 40, 7, 2, false));
  cases.push_back(same_case(1, 14, 14, 36, 5, 1, false));
  cases.push_back(same_case(1, 7, 7, 8, 13, 1, false));
  cases.push_back(same_case(1, 9, 33, 4, 31, 1, false));
  cases.push_back(same_case(1, 30, 30, 32, 13, 1, false));
  cases.push_back(same_case(2, 40, 1, 12, 3, 1, false));
  return cases;
}

TEST(DepthwiseTiled, CudaMatchesCpuFloat32) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (const OpCase& c : tiled_cases()) EXPECT_TRUE(testing::check_cuda_matches_cpu(c, DType::Float32)) << c.name;
}

TEST(DepthwiseTiled, CudaMatchesCpuBFloat16) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (const OpCase& c : tiled_cases()) EXPECT_TRUE(testing::check_cuda_matches_cpu(c, DType::BFloat16)) << c.name;
}

// float16 is not in the standard drivers' tolerance table: forward and gradients compared here.
void expect_float16_matches_cpu(const OpCase& c) {
  Generator gen(5);
  std::vector<Tensor> inputs64 = c.make_inputs(gen);
  std::vector<Tensor> outs, grads[2];
  int slot = 0;
  for (Device dev : {Device::cpu(), Device::cuda(0)}) {
    std::vector<Tensor> in;
    for (const Tensor& t : inputs64) in.push_back(t.detach().to(DType::Float16).to(dev).requires_grad_());
    Tensor y = c.fn(in);
    Generator ug(9);
    y.backward(Tensor::randn(y.shape(), ug, DType::Float64).to(DType::Float16).to(dev));
    outs.push_back(y);
    for (const Tensor& t : in) grads[slot].push_back(t.grad());
    ++slot;
  }
  EXPECT_LE(testing::relative_error(outs[1], outs[0]), 1e-2) << c.name << " forward";
  for (size_t i = 0; i < inputs64.size(); ++i)
    EXPECT_LE(testing::relative_error(grads[1][i], grads[0][i]), 1e-2) << c.name << " grad " << i;
}

TEST(DepthwiseTiled, CudaMatchesCpuFloat16) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (const OpCase& c : {same_case(2, 14, 14, 40, 13, 1, true), same_case(1, 11, 9, 21, 3, 3, false),
                          same_case(2, 7, 7, 40, 3, 5, false)})
    expect_float16_matches_cpu(c);
}

// The tensor-core path (core/ops/depthwise_conv_tc.cuh: bf16 / f16, R = S odd 7..15, C % 8 == 0, images of
// 14 x 14 and up): several 32 x 32 tiles with partial edges, an image smaller than one tile, "valid"
// padding (input-grad padding R - 1), and C = 24 (three channel groups). Smaller images (the 7 x 7 stage)
// run the CUDA-core kernels; core/cuda/playground/depthwise_tc.cu checks the tensor-core kernels there too.
TEST(DepthwiseTiled, TensorCoreMatchesCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (const OpCase& c : {same_case(2, 28, 28, 16, 13, 1, true), same_case(1, 15, 17, 8, 13, 1, false),
                          same_case(2, 28, 28, 16, 7, 1, false), same_case(1, 14, 19, 8, 7, 1, true),
                          same_case(1, 40, 35, 24, 15, 1, false), dw_case(1, 30, 32, 8, 11, 11, 0, 0, 1, true)})
    EXPECT_TRUE(testing::check_cuda_matches_cpu(c, DType::BFloat16)) << c.name;
  expect_float16_matches_cpu(same_case(2, 28, 28, 16, 13, 1, true));
  expect_float16_matches_cpu(same_case(1, 15, 17, 8, 9, 1, false));
}

// The weight gradient sums fixed per-split partials in a fixed order: two runs agree bit for bit.
TEST(DepthwiseTiled, WeightGradientIsDeterministic) {
  UNIREP_SKIP_WITHOUT_CUDA();
  // float32 runs v3 / v4, bfloat16 the tensor-core kernels.
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    Generator gen(11);
    Tensor x = Tensor::randn({4, 28, 28, 64}, gen, DType::Float32).to(dt).to(Device::cuda(0));
    Tensor w = Tensor::randn({64, 1, 13, 13}, gen, DType::Float32).to(dt).to(Device::cuda(0));
    w.requires_grad_();
    Tensor u = Tensor::randn({4, 28, 28, 64}, gen, DType::Float32).to(dt).to(Device::cuda(0));
    std::vector<float> first;
    for (int run = 0; run < 2; ++run) {
      Tensor wr = w.detach().requires_grad_();
      conv2d(x, wr, Tensor(), dw_params(64, 6, 6, 1)).backward(u);
      std::vector<float> g = wr.grad().to(DType::Float32).to(Device::cpu()).to_vector<float>();
      if (run == 0) first = g;
      else EXPECT_EQ(g, first) << dtype_name(dt);
    }
  }
}

ConvGeometry geometry(int64_t H, int64_t C, int64_t k, int64_t d, int64_t stride = 1) {
  ConvGeometry g;
  g.N = 128;
  g.H = g.W = H;
  g.C = g.K = g.groups = C;
  g.R = g.S = k;
  g.dh = g.dw = d;
  g.ph = g.pw = d * (k - 1) / 2;
  g.sh = g.sw = stride;
  g.Ho = (H + 2 * g.ph - d * (k - 1) - 1) / stride + 1;
  g.Wo = g.Ho;
  return g;
}

// Host-only: which geometries conv2d routes to the tiled kernels.
TEST(DepthwiseTiled, CoversTheUniRepLKNetShapes) {
  const int64_t stages[4][2] = {{56, 80}, {28, 160}, {14, 320}, {7, 640}};
  const int64_t kd[7][2] = {{3, 1}, {13, 1}, {5, 1}, {7, 2}, {3, 3}, {3, 4}, {3, 5}};
  for (const auto& st : stages)
    for (const auto& b : kd)
      for (DType dt : {DType::Float32, DType::BFloat16, DType::Float16})
        EXPECT_TRUE(cuda::depthwise_tiled_supported(geometry(st[0], st[1], b[0], b[1]), dt))
            << st[0] << "x" << st[0] << "x" << st[1] << " k" << b[0] << " d" << b[1] << " " << dtype_name(dt);
  for (int64_t k = 3; k <= 31; k += 2) EXPECT_TRUE(cuda::depthwise_tiled_supported(geometry(32, 8, k, 1), DType::Float32)) << k;
  EXPECT_FALSE(cuda::depthwise_tiled_supported(geometry(28, 160, 3, 1, 2), DType::BFloat16));  // stride 2
  EXPECT_FALSE(cuda::depthwise_tiled_supported(geometry(28, 160, 4, 1), DType::BFloat16));     // even width
  EXPECT_FALSE(cuda::depthwise_tiled_supported(geometry(40, 16, 33, 1), DType::Float32));      // width > 31
  EXPECT_FALSE(cuda::depthwise_tiled_supported(geometry(28, 160, 13, 1), DType::Float64));
  ConvGeometry grouped = geometry(28, 160, 3, 1);
  grouped.K = 320;
  EXPECT_FALSE(cuda::depthwise_tiled_supported(grouped, DType::Float32));  // channel multiplier 2
}

}  // namespace
}  // namespace unirep
