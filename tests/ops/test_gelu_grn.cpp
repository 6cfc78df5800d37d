// gelu_grn (autograd/functions/gelu_grn.h): float64 gradcheck; forward and every gradient against
// the unfused composition gelu() then GRN::forward; a bf16 h with float32 parameters on the CPU
// against the float64 composition; CUDA against CPU in float32 and bf16 on shapes that take the
// 16-byte vector path and the scalar fallback (F not a multiple of the vector, a misaligned h),
// with one or several position splits and channel tiles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "layers/basic.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::relative_error;

// h with a channel that is 0 at every position of every sample (G == 0 there), gamma O(1) so the
// normalisation term matters, beta optional; float64 CPU leaves requiring grad.
struct Inputs {
  Tensor h, gamma, beta, dy;
};

Inputs make_inputs(const Shape& shape, bool with_beta, uint64_t seed, int64_t zero_channel = 1) {
  Generator gen(seed);
  const int64_t F = shape.back();
  Inputs in;
  std::vector<double> h = Tensor::randn(shape, gen, DType::Float64).mul_(1.5).to_vector<double>();
  if (zero_channel >= 0)
    for (size_t i = size_t(zero_channel); i < h.size(); i += size_t(F)) h[i] = 0.0;
  in.h = Tensor::from_vector(h, shape).requires_grad_();
  in.gamma = Tensor::randn({1, 1, 1, F}, gen, DType::Float64).requires_grad_();
  if (with_beta) in.beta = Tensor::randn({1, 1, 1, F}, gen, DType::Float64).requires_grad_();
  in.dy = Tensor::randn(shape, gen, DType::Float64);
  return in;
}

struct Results {
  Tensor out, dh, dgamma, dbeta;
};

// Forward and backward of f(h, gamma, beta) on copies of `in` in the given dtypes and device.
template <class Fn>
Results run(const Fn& f, const Inputs& in, DType h_dtype, DType p_dtype, Device dev) {
  Tensor h = in.h.detach().to(h_dtype).to(dev).requires_grad_();
  Tensor gamma = in.gamma.detach().to(p_dtype).to(dev).requires_grad_();
  Tensor beta = in.beta.defined() ? in.beta.detach().to(p_dtype).to(dev).requires_grad_() : Tensor();
  Tensor out = f(h, gamma, beta);
  out.backward(in.dy.to(h_dtype).to(dev));
  return {out.cpu(), h.grad().cpu(), gamma.grad().cpu(), beta.defined() ? beta.grad().cpu() : Tensor()};
}

Tensor fused(const Tensor& h, const Tensor& gamma, const Tensor& beta) { return gelu_grn(h, gamma, beta); }

// GRN::forward after gelu(), with GRN's parameters set to gamma and beta.
Tensor unfused(const Tensor& h, const Tensor& gamma, const Tensor& beta) {
  GRN grn(h.size(-1), beta.defined());
  grn.gamma = gamma;
  grn.beta = beta;
  return grn.forward(gelu(h));
}

TEST(GeluGrn, Gradcheck) {
  struct Case {
    Shape shape;
    bool beta;
  };
  // [2, 2, 2, 3]: 24 outputs, the whole Jacobian; the others by random projections.
  for (const Case& c : std::vector<Case>{{{2, 2, 2, 3}, true}, {{2, 3, 3, 5}, true}, {{2, 3, 2, 4}, false}}) {
    Inputs in = make_inputs(c.shape, c.beta, 11);
    std::vector<Tensor> inputs{in.h, in.gamma};
    if (c.beta) inputs.push_back(in.beta);
    GradcheckResult r = gradcheck(
        [](const std::vector<Tensor>& v) { return gelu_grn(v[0], v[1], v.size() > 2 ? v[2] : Tensor()); }, inputs);
    EXPECT_TRUE(r.ok) << shape_str(c.shape) << (c.beta ? " with beta: " : " without beta: ") << r.message;
  }
}

TEST(GeluGrn, MatchesUnfusedFloat64) {
  struct Case {
    Shape shape;
    bool beta;
  };
  for (const Case& c : std::vector<Case>{{{2, 4, 4, 8}, true}, {{3, 5, 3, 7}, true}, {{1, 2, 2, 13}, false},
                                         {{2, 9, 9, 16}, true}}) {
    Inputs in = make_inputs(c.shape, c.beta, 5);
    Results a = run(fused, in, DType::Float64, DType::Float64, Device::cpu());
    Results b = run(unfused, in, DType::Float64, DType::Float64, Device::cpu());
    const std::string name = shape_str(c.shape);
    EXPECT_LT(relative_error(a.out, b.out), 1e-13) << name;
    EXPECT_LT(relative_error(a.dh, b.dh), 1e-12) << name;
    EXPECT_LT(relative_error(a.dgamma, b.dgamma), 1e-12) << name;
    EXPECT_EQ(a.dgamma.shape(), (Shape{1, 1, 1, c.shape.back()})) << name;
    if (c.beta) {
      EXPECT_LT(relative_error(a.dbeta, b.dbeta), 1e-12) << name;
    }
  }
}

TEST(GeluGrn, ForwardByHand) {
  // One sample, 2 positions, 2 channels: h = [[1, 0], [-1, 0]] (channel 1 all zero, so G = 0).
  const double g1 = 0.8413447460685429, gm1 = -0.15865525393145707;  // gelu(1), gelu(-1)
  Tensor h = Tensor::from_vector(std::vector<double>{1, 0, -1, 0}, {1, 1, 2, 2});
  Tensor gamma = Tensor::from_vector(std::vector<double>{0.5, 2.0}, {1, 1, 1, 2});
  Tensor beta = Tensor::from_vector(std::vector<double>{0.25, -1.0}, {1, 1, 1, 2});
  std::vector<double> out = gelu_grn(h, gamma, beta).to_vector<double>();
  const double G = std::sqrt(g1 * g1 + gm1 * gm1), d = G / 2 + 1e-6, scale = 0.5 * G / d + 1;
  EXPECT_NEAR(out[0], g1 * scale + 0.25, 1e-15);
  EXPECT_NEAR(out[1], -1.0, 1e-15);
  EXPECT_NEAR(out[2], gm1 * scale + 0.25, 1e-15);
  EXPECT_NEAR(out[3], -1.0, 1e-15);
}

// bf16 h with float32 gamma/beta straight into the op (and through GRN under autocast: no casts):
// h's dtype out, float32 parameter gradients, close to the float64 composition on the same rounded
// h and dy (z and the sums stay in float32, only out and dh are rounded).
TEST(GeluGrn, BFloat16WithFloat32ParamsCpu) {
  for (const Shape& shape : std::vector<Shape>{{2, 5, 5, 16}, {3, 4, 3, 13}}) {
    Inputs in = make_inputs(shape, true, 3);
    Inputs rounded = in;
    rounded.h = in.h.detach().to(DType::BFloat16).to(DType::Float64).requires_grad_();
    rounded.dy = in.dy.to(DType::BFloat16).to(DType::Float64);
    Results ref = run(unfused, rounded, DType::Float64, DType::Float64, Device::cpu());
    Results mixed = run(fused, in, DType::BFloat16, DType::Float32, Device::cpu());
    const std::string name = shape_str(shape);
    EXPECT_EQ(mixed.out.dtype(), DType::BFloat16) << name;
    EXPECT_EQ(mixed.dh.dtype(), DType::BFloat16) << name;
    EXPECT_EQ(mixed.dgamma.dtype(), DType::Float32) << name;
    EXPECT_EQ(mixed.dbeta.dtype(), DType::Float32) << name;
    EXPECT_LT(relative_error(mixed.out, ref.out), 4e-3) << name;
    EXPECT_LT(relative_error(mixed.dh, ref.dh), 4e-3) << name;
    EXPECT_LT(relative_error(mixed.dgamma, ref.dgamma), 1e-5) << name;
    EXPECT_LT(relative_error(mixed.dbeta, ref.dbeta), 1e-5) << name;

    Results amp = run(
        [](const Tensor& h, const Tensor& gamma, const Tensor& beta) {
          AutocastGuard guard(DType::BFloat16);
          return gelu_grn(h, gamma, beta);
        },
        in, DType::BFloat16, DType::Float32, Device::cpu());
    EXPECT_EQ(relative_error(amp.out, mixed.out), 0.0) << name;
    EXPECT_EQ(relative_error(amp.dgamma, mixed.dgamma), 0.0) << name;
  }
}

TEST(GeluGrn, RejectsBadParameters) {
  Tensor h = Tensor::zeros({2, 3, 3, 8}, DType::BFloat16);
  EXPECT_THROW(gelu_grn(h, Tensor::zeros({1, 1, 1, 7}), Tensor()), Error);
  EXPECT_THROW(gelu_grn(h, Tensor::zeros({2, 1, 1, 8}), Tensor()), Error);
  EXPECT_THROW(gelu_grn(h, Tensor::zeros({8}, DType::Float64), Tensor()), Error);
  EXPECT_THROW(gelu_grn(h, Tensor::zeros({8}), Tensor::zeros({8}, DType::BFloat16)), Error);
  EXPECT_THROW(gelu_grn(Tensor::zeros({8}), Tensor::zeros({8}), Tensor()), Error);
  EXPECT_EQ(gelu_grn(h, Tensor::zeros({8}), Tensor::zeros({8})).dtype(), DType::BFloat16);
}

// A contiguous copy of h starting one element into its storage: never 16-byte aligned.
Tensor misaligned_copy(const Tensor& h) {
  Tensor storage = Tensor::empty({h.numel() + 1}, h.dtype(), h.device());
  Tensor view = storage.slice(0, 1, h.numel() + 1).view(h.shape());
  view.copy_(h);
  return view;
}

// Channels chosen for the vector path (16 bytes = 8 bf16 or 4 float32 channels): 320 (40 bf16
// vectors, 6 rows per block, several position splits), 2560 (two channel tiles), 20 (vector in
// float32, scalar in bf16), 13 (scalar in both), and 320 with a misaligned h on the GPU (scalar).
TEST(GeluGrn, CudaMatchesCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  struct Case {
    Shape shape;
    bool beta;
    bool misaligned;
  };
  const std::vector<Case> cases{{{2, 16, 16, 320}, true, false}, {{2, 7, 7, 2560}, true, false},
                                {{2, 24, 24, 20}, false, false}, {{2, 24, 24, 13}, true, false},
                                {{3, 5, 5, 320}, true, true}};
  for (const Case& c : cases)
    for (DType dt : {DType::Float32, DType::BFloat16}) {
      Inputs in = make_inputs(c.shape, c.beta, 17);
      Results cpu = run(fused, in, dt, DType::Float32, Device::cpu());
      Tensor h = in.h.detach().to(dt).cuda();
      if (c.misaligned) {
        h = misaligned_copy(h);
        EXPECT_NE(reinterpret_cast<uintptr_t>(h.data_ptr()) % 16, 0u);
      }
      h.requires_grad_();
      Tensor gamma = in.gamma.detach().to(DType::Float32).cuda().requires_grad_();
      Tensor beta = c.beta ? in.beta.detach().to(DType::Float32).cuda().requires_grad_() : Tensor();
      Tensor out = gelu_grn(h, gamma, beta);
      out.backward(in.dy.to(dt).cuda());
      const double tol = dt == DType::BFloat16 ? 1e-2 : 1e-5;
      const std::string name = shape_str(c.shape) + " " + dtype_name(dt) + (c.misaligned ? " misaligned" : "");
      ASSERT_TRUE(out.dtype() == dt && out.is_cuda()) << name;
      EXPECT_LT(relative_error(out.cpu(), cpu.out), tol) << name;
      EXPECT_LT(relative_error(h.grad().cpu(), cpu.dh), tol) << name;
      // Parameter gradients: float32 sums of the same float32 terms in another order.
      EXPECT_LT(relative_error(gamma.grad().cpu(), cpu.dgamma), 1e-4) << name;
      if (c.beta) {
        EXPECT_LT(relative_error(beta.grad().cpu(), cpu.dbeta), 1e-4) << name;
      }
    }
}


// gelu_grn_linear: linear(gelu_grn(...)) with the linear's input rebuilt in backward. Gradcheck in
// float64 (bias and beta present and absent), and the output and all five gradients against the
// unfused composition, float64 on the CPU and, on a GPU, bf16 under autocast with float32 parameters
// (the training configuration) against the same on the CPU.
struct MlpInputs {
  Inputs grn;
  Tensor weight, bias;
};

MlpInputs make_mlp_inputs(const Shape& shape, int64_t out_f, bool with_beta, bool with_bias, uint64_t seed) {
  MlpInputs in{make_inputs(shape, with_beta, seed), Tensor(), Tensor()};
  Generator gen(seed + 1);
  in.weight = Tensor::randn({out_f, shape.back()}, gen, DType::Float64).mul_(0.3).requires_grad_();
  if (with_bias) in.bias = Tensor::randn({out_f}, gen, DType::Float64).requires_grad_();
  Shape out_shape = shape;
  out_shape.back() = out_f;
  in.grn.dy = Tensor::randn(out_shape, gen, DType::Float64);
  return in;
}

TEST(GeluGrnLinear, Gradcheck) {
  for (bool with_bias : {true, false}) {
    MlpInputs in = make_mlp_inputs({2, 3, 2, 5}, 4, !with_bias, with_bias, 31);
    std::vector<Tensor> inputs{in.grn.h, in.grn.gamma, in.weight};
    if (in.grn.beta.defined()) inputs.push_back(in.grn.beta);
    if (in.bias.defined()) inputs.push_back(in.bias);
    const bool beta = in.grn.beta.defined();
    GradcheckResult r = gradcheck(
        [beta, with_bias](const std::vector<Tensor>& x) {
          return gelu_grn_linear(x[0], x[1], beta ? x[3] : Tensor(), x[2], with_bias ? x[3] : Tensor());
        },
        inputs);
    EXPECT_TRUE(r.ok) << "bias " << with_bias << ": " << r.message;
  }
}

std::vector<Tensor> mlp_run(bool fused_op, const MlpInputs& in, DType h_dtype, Device dev, bool autocast) {
  Tensor h = in.grn.h.detach().to(h_dtype).to(dev).requires_grad_();
  const DType p_dtype = h_dtype == DType::Float64 ? DType::Float64 : DType::Float32;
  Tensor gamma = in.grn.gamma.detach().to(p_dtype).to(dev).requires_grad_();
  Tensor beta = in.grn.beta.detach().to(p_dtype).to(dev).requires_grad_();
  Tensor w = in.weight.detach().to(p_dtype).to(dev).requires_grad_();
  Tensor b = in.bias.detach().to(p_dtype).to(dev).requires_grad_();
  Tensor y;
  {
    AutocastGuard amp(DType::BFloat16, autocast);
    y = fused_op ? gelu_grn_linear(h, gamma, beta, w, b) : linear(gelu_grn(h, gamma, beta), w, b);
  }
  y.backward(in.grn.dy.to(y.dtype()).to(dev));
  return {y.cpu(), h.grad().cpu(), gamma.grad().cpu(), beta.grad().cpu(), w.grad().cpu(), b.grad().cpu()};
}

TEST(GeluGrnLinear, EqualsTheUnfusedOpsFloat64) {
  MlpInputs in = make_mlp_inputs({3, 4, 4, 12}, 7, true, true, 41);
  std::vector<Tensor> fused_r = mlp_run(true, in, DType::Float64, Device::cpu(), false);
  std::vector<Tensor> plain = mlp_run(false, in, DType::Float64, Device::cpu(), false);
  const char* what[6] = {"y", "dh", "dgamma", "dbeta", "dweight", "dbias"};
  for (size_t i = 0; i < 6; ++i) EXPECT_LT(relative_error(fused_r[i], plain[i]), 1e-13) << what[i];
}

TEST(GeluGrnLinear, AutocastCastsTheLinearOnly) {
  MlpInputs in = make_mlp_inputs({2, 5, 5, 16}, 8, true, true, 43);
  std::vector<Tensor> fused_r = mlp_run(true, in, DType::BFloat16, Device::cpu(), true);
  std::vector<Tensor> plain = mlp_run(false, in, DType::BFloat16, Device::cpu(), true);
  EXPECT_EQ(fused_r[0].dtype(), DType::BFloat16);
  for (size_t i = 2; i < 6; ++i) EXPECT_EQ(fused_r[i].dtype(), DType::Float32) << "parameter gradient " << i;
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(relative_error(fused_r[i], plain[i]), 0.0) << i;
}

TEST(GeluGrnLinear, CudaMatchesCpuUnderAutocast) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (int64_t F : {int64_t(320), int64_t(20)}) {
    MlpInputs in = make_mlp_inputs({4, 14, 14, F}, F / 4, true, true, 47);
    std::vector<Tensor> cpu = mlp_run(true, in, DType::BFloat16, Device::cpu(), true);
    std::vector<Tensor> gpu = mlp_run(true, in, DType::BFloat16, Device::cuda(0), true);
    const char* what[6] = {"y", "dh", "dgamma", "dbeta", "dweight", "dbias"};
    for (size_t i = 0; i < 6; ++i)
      EXPECT_LT(relative_error(gpu[i].to(DType::Float64), cpu[i].to(DType::Float64)), 2e-2) << what[i] << " F " << F;
  }
}

}  // namespace
}  // namespace unirep
