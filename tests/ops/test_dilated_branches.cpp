// dilated_branch_convs (autograd/functions/dilated_branches.h): float64 gradcheck on the CPU; the CPU op
// against one conv2d per branch (forward, dx summed over branches, each dw); CUDA (the fused kernels for
// the K = 13 set, per-branch kernels for any other set) against the CPU in float32 and bfloat16 at shapes
// that hit tile borders, images smaller than the kernel, odd C and C % 4 != 0 (scalar staging) as well as
// C % 4 == 0 (vector staging); outputs nothing flowed into; autocast; which shapes the fused kernels cover.
// The outputs are concatenated along C so every branch's output and gradient is compared. Tolerances
// as for the depthwise tests (tests/ops/test_depthwise_conv.cpp): float32 1e-5, bfloat16 1e-2.
#include "core/ops/dilated_branches.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

const std::vector<int64_t> kK13Kernels{13, 5, 7, 3, 3, 3}, kK13Dilations{1, 1, 2, 3, 4, 5};
const std::vector<int64_t> kOtherKernels{7, 3, 5}, kOtherDilations{1, 2, 3};

// x [N, H, W, C] and one weight per branch; fn: the branch outputs concatenated along C.
OpCase branch_case(int64_t N, int64_t H, int64_t W, int64_t C, const std::vector<int64_t>& kernels,
                   const std::vector<int64_t>& dilations, bool gradcheck) {
  const std::string name = "branches" + std::to_string(kernels.size()) + "_N" + std::to_string(N) + "_" +
                           std::to_string(H) + "x" + std::to_string(W) + "x" + std::to_string(C);
  OpCase c{name,
           [=](Generator& g) {
             std::vector<Tensor> in{randn64(g, {N, H, W, C})};
             for (int64_t k : kernels) in.push_back(randn64(g, {C, 1, k, k}, true, 1.0 / double(k)));
             return in;
           },
           [=](const std::vector<Tensor>& in) {
             return cat(dilated_branch_convs(in[0], std::vector<Tensor>(in.begin() + 1, in.end()), dilations), 3);
           }};
  c.gradcheck = gradcheck;
  return c;
}

std::vector<OpCase> gradcheck_cases() {
  return {branch_case(1, 5, 6, 2, kK13Kernels, kK13Dilations, true),
          branch_case(2, 4, 3, 1, kOtherKernels, kOtherDilations, true)};
}

std::vector<OpCase> cuda_cases() {
  return {
      branch_case(2, 9, 11, 5, kK13Kernels, kK13Dilations, false),    // odd C: scalar staging
      branch_case(1, 14, 14, 40, kK13Kernels, kK13Dilations, false),  // C % 4 == 0: vector staging
      branch_case(2, 17, 30, 36, kK13Kernels, kK13Dilations, false),  // several tiles, partial last ones
      branch_case(1, 3, 4, 8, kK13Kernels, kK13Dilations, false),     // image smaller than every kernel
      branch_case(2, 7, 7, 70, kK13Kernels, kK13Dilations, false),    // stage 3 like, C % 4 != 0, 3 channel groups
      branch_case(2, 10, 9, 12, kOtherKernels, kOtherDilations, false),  // another set: per-branch fallback
  };
}

TEST(DilatedBranches, Gradcheck) {
  for (const OpCase& c : gradcheck_cases()) EXPECT_TRUE(testing::check_gradients(c)) << c.name;
}

TEST(DilatedBranches, CudaMatchesCpuFloat32) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (const OpCase& c : cuda_cases()) EXPECT_TRUE(testing::check_cuda_matches_cpu(c, DType::Float32)) << c.name;
}

TEST(DilatedBranches, CudaMatchesCpuBFloat16) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (const OpCase& c : cuda_cases()) EXPECT_TRUE(testing::check_cuda_matches_cpu(c, DType::BFloat16)) << c.name;
}

// Only two of the six outputs are used: the others' gradients arrive as zeros, their weights get zero
// gradients, and dx sums the two used branches only.
OpCase partial_case(int64_t N, int64_t H, int64_t W, int64_t C) {
  OpCase c = branch_case(N, H, W, C, kK13Kernels, kK13Dilations, true);
  c.name = "partial_" + c.name;
  c.fn = [](const std::vector<Tensor>& in) {
    std::vector<Tensor> z = dilated_branch_convs(in[0], std::vector<Tensor>(in.begin() + 1, in.end()), kK13Dilations);
    return add(z[1], z[4]);
  };
  return c;
}

TEST(DilatedBranches, UnusedOutputsGradcheck) {
  const OpCase c = partial_case(1, 6, 5, 2);
  EXPECT_TRUE(testing::check_gradients(c)) << c.name;
}

TEST(DilatedBranches, UnusedOutputsCudaMatchesCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  const OpCase c = partial_case(2, 9, 12, 16);
  EXPECT_TRUE(testing::check_cuda_matches_cpu(c, DType::Float32)) << c.name;
  EXPECT_TRUE(testing::check_cuda_matches_cpu(c, DType::BFloat16)) << c.name;
}

Conv2dParams branch_params(int64_t C, int64_t k, int64_t d) {
  Conv2dParams p;
  p.pad_h = p.pad_w = d * (k - 1) / 2;
  p.dilation_h = p.dilation_w = d;
  p.groups = C;
  return p;
}

// The reference: one conv2d per branch, each output weighted by its own upstream gradient. Same forward,
// dx = the sum of the per-branch dx, each dw its branch's.
TEST(DilatedBranches, MatchesPerBranchConv2d) {
  Generator gen(3);
  const int64_t N = 2, H = 8, W = 7, C = 3;
  Tensor x = randn64(gen, {N, H, W, C});
  std::vector<Tensor> ws, us;
  for (int64_t k : kK13Kernels) {
    ws.push_back(randn64(gen, {C, 1, k, k}));
    us.push_back(randn64(gen, {N, H, W, C}, false));
  }
  const std::vector<Tensor> z = dilated_branch_convs(x, ws, kK13Dilations);
  Tensor loss = sum(mul(z[0], us[0]));
  for (size_t i = 1; i < z.size(); ++i) loss = add(loss, sum(mul(z[i], us[i])));
  loss.backward();
  Tensor dx_ref = Tensor::zeros(x.shape(), DType::Float64);
  for (size_t i = 0; i < ws.size(); ++i) {
    Tensor xi = x.detach().requires_grad_(), wi = ws[i].detach().requires_grad_();
    Tensor zi = conv2d(xi, wi, Tensor(), branch_params(C, kK13Kernels[i], kK13Dilations[i]));
    sum(mul(zi, us[i])).backward();
    EXPECT_LE(testing::relative_error(z[i], zi), 1e-14) << "forward of branch " << i;
    EXPECT_LE(testing::relative_error(ws[i].grad(), wi.grad()), 1e-14) << "weight gradient of branch " << i;
    dx_ref.add_(xi.grad());
  }
  EXPECT_LE(testing::relative_error(x.grad(), dx_ref), 1e-14);
}

// Under autocast the op behaves as conv2d: float32 x and weights run in bfloat16, the weights' gradients
// come back in float32 through the cast.
TEST(DilatedBranches, AutocastRunsInTheAutocastDtype) {
  Generator gen(4);
  Tensor x = Tensor::randn({1, 6, 6, 4}, gen, DType::Float32).requires_grad_();
  std::vector<Tensor> ws;
  for (int64_t k : kK13Kernels) ws.push_back(Tensor::randn({4, 1, k, k}, gen, DType::Float32).requires_grad_());
  std::vector<Tensor> z;
  {
    AutocastGuard amp(DType::BFloat16);
    z = dilated_branch_convs(x, ws, kK13Dilations);
  }
  ASSERT_EQ(z.size(), ws.size());
  for (size_t i = 0; i < z.size(); ++i) {
    EXPECT_EQ(z[i].dtype(), DType::BFloat16);
    Tensor ref = conv2d(x.detach().to(DType::BFloat16), ws[i].detach().to(DType::BFloat16), Tensor(),
                        branch_params(4, kK13Kernels[i], kK13Dilations[i]));
    EXPECT_LE(testing::relative_error(z[i].to(DType::Float32), ref.to(DType::Float32)), 1e-6) << i;
  }
  sum(add(z[0], z[5])).backward();
  EXPECT_EQ(x.grad().dtype(), DType::Float32);
  EXPECT_EQ(ws[0].grad().dtype(), DType::Float32);
  EXPECT_EQ(ws[3].grad().dtype(), DType::Float32);
}

TEST(DilatedBranches, RejectsBadWeights) {
  Tensor x = Tensor::zeros({1, 4, 4, 3});
  EXPECT_THROW(dilated_branch_convs(x, {Tensor::zeros({3, 1, 4, 4})}, {1}), Error);  // even kernel
  EXPECT_THROW(dilated_branch_convs(x, {Tensor::zeros({2, 1, 3, 3})}, {1}), Error);  // C mismatch
  EXPECT_THROW(dilated_branch_convs(x, {Tensor::zeros({3, 1, 3, 3})}, {1, 2}), Error);  // counts differ
  EXPECT_THROW(dilated_branch_convs(x, {Tensor::zeros({3, 1, 3, 3})}, {0}), Error);  // dilation 0
}

// Host-only: the fused kernels cover the K = 13 set at every UniRepLKNet stage shape and nothing else.
TEST(DilatedBranches, FusedCoversTheUniRepLKNetShapes) {
  const int64_t stages[4][2] = {{56, 80}, {28, 160}, {14, 320}, {7, 640}};
  for (const auto& st : stages)
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float16})
      EXPECT_TRUE(cuda::dilated_branches_fused_supported({128, st[0], st[0], st[1]}, dt, kK13Kernels, kK13Dilations))
          << st[0] << "x" << st[1] << " " << dtype_name(dt);
  EXPECT_FALSE(cuda::dilated_branches_fused_supported({2, 8, 8, 16}, DType::Float64, kK13Kernels, kK13Dilations));
  EXPECT_FALSE(cuda::dilated_branches_fused_supported({2, 8, 8, 16}, DType::Float32, kOtherKernels, kOtherDilations));
  EXPECT_FALSE(cuda::dilated_branches_fused_supported({2, 8, 8, 16}, DType::Float32, kK13Kernels,
                                                      {1, 1, 2, 3, 4, 6}));
}

}  // namespace
}  // namespace unirep
