// scaled_residual_add (layer scale + drop path + residual in one op): gradcheck, equality with the
// unfused mul / drop_path / add (values, gradients and the generator's state), CUDA vs CPU on the
// vector and per-element paths with a float32 gamma next to bf16 activations, bad input.
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

// A fresh generator per call, so every evaluation (gradcheck's too) draws the same mask.
Tensor fused(const std::vector<Tensor>& in, double rate, bool with_gamma) {
  Generator g(21);
  return scaled_residual_add(in[0], in[1], with_gamma ? in[2] : Tensor(), rate, true, g);
}

std::vector<OpCase> residual_cases() {
  auto make = [](std::string name, Shape shape, double rate, bool with_gamma) {
    const int64_t C = shape.back();
    return OpCase{name,
                  [=](Generator& g) {
                    std::vector<Tensor> in{randn64(g, shape), randn64(g, shape)};
                    if (with_gamma) in.push_back(randn64(g, {C}));
                    return in;
                  },
                  [=](const std::vector<Tensor>& in) { return fused(in, rate, with_gamma); }};
  };
  return {make("layer_scale", {3, 4, 5, 6}, 0.0, true), make("layer_scale_drop_path", {6, 3, 3, 16}, 0.5, true),
          make("drop_path_only", {5, 2, 2, 8}, 0.4, false), make("vector_rows", {4, 7, 9, 80}, 0.3, true)};
}

UNIREP_OP_CASE_TESTS(ScaledResidual, residual_cases)

TEST(ScaledResidual, EqualsTheUnfusedOps) {
  for (double rate : {0.0, 0.5}) {
    Generator gen(4);
    Tensor x = randn64(gen, {8, 3, 3, 10}), b = randn64(gen, {8, 3, 3, 10}), gamma = randn64(gen, {10});
    Generator g1(99), g2(99);
    Tensor got = scaled_residual_add(x, b, gamma, rate, true, g1);
    Tensor want = add(x, drop_path(mul(b, gamma), rate, true, g2));
    EXPECT_EQ(g1.offset(), g2.offset()) << "the generator must advance as drop_path's";
    Tensor up = Tensor::randn(x.shape(), gen, DType::Float64);
    auto grads = [&](const Tensor& out) {
      x.set_grad(Tensor());
      b.set_grad(Tensor());
      gamma.set_grad(Tensor());
      sum(mul(out, up)).backward();
      return std::vector<Tensor>{x.grad(), b.grad(), gamma.grad()};
    };
    std::vector<Tensor> gg = grads(got), gw = grads(want);
    EXPECT_LT(testing::relative_error(got, want), 1e-14) << rate;
    for (size_t i = 0; i < 3; ++i) EXPECT_LT(testing::relative_error(gg[i], gw[i]), 1e-14) << "grad " << i << " p " << rate;
    if (rate > 0) {  // some samples dropped, some kept: the mask is exercised
      std::vector<double> db = gg[1].to_vector<double>();
      int dropped = 0;
      for (int64_t n = 0; n < 8; ++n) dropped += db[size_t(n * 90)] == 0.0;
      EXPECT_GT(dropped, 0);
      EXPECT_LT(dropped, 8);
    }
  }
}

TEST(ScaledResidual, EvalAndNoScaleAreAPlainAdd) {
  Generator gen(5);
  Tensor x = Tensor::randn({2, 3, 4}, gen), b = Tensor::randn({2, 3, 4}, gen);
  Generator g(1);
  EXPECT_EQ(scaled_residual_add(x, b, Tensor(), 0.7, false, g).to_vector<float>(), add(x, b).to_vector<float>());
  EXPECT_EQ(g.offset(), 0u) << "eval draws nothing";
}

// A float32 layer scale with bf16 activations (autocast's case), CUDA against the CPU: the vector path
// (C % 8 == 0) and the per-element one (C = 13), with and without drop path.
TEST(ScaledResidual, CudaMatchesCpuBFloat16WithFloat32Gamma) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (int64_t C : {int64_t(80), int64_t(13)}) {
    for (double rate : {0.0, 0.3}) {
      Generator gen(8);
      Tensor x = Tensor::randn({16, 5, 7, C}, gen).to(DType::BFloat16);
      Tensor b = Tensor::randn({16, 5, 7, C}, gen).to(DType::BFloat16);
      Tensor gamma = Tensor::randn({C}, gen);
      Tensor up = Tensor::randn({16, 5, 7, C}, gen).to(DType::BFloat16);
      auto run = [&](Device d) {
        Tensor xd = x.to(d).detach().requires_grad_(), bd = b.to(d).detach().requires_grad_();
        Tensor gd = gamma.to(d).detach().requires_grad_();
        Generator g(3);
        Tensor out = scaled_residual_add(xd, bd, gd, rate, true, g);
        sum(mul(out, up.to(d)).to(DType::Float32)).backward();
        return std::vector<Tensor>{out.cpu(), xd.grad().cpu(), bd.grad().cpu(), gd.grad().cpu()};
      };
      std::vector<Tensor> cpu = run(Device::cpu()), gpu = run(Device::cuda(0));
      EXPECT_EQ(gpu[3].dtype(), DType::Float32);
      for (size_t i = 0; i < 4; ++i)
        EXPECT_LT(testing::relative_error(gpu[i].to(DType::Float64), cpu[i].to(DType::Float64)), i == 3 ? 1e-5 : 1e-2)
            << "C " << C << " p " << rate << " output " << i;
    }
  }
}

TEST(ScaledResidual, BadInputNamesTheProblem) {
  Tensor x = Tensor::zeros({2, 3, 4}), b = Tensor::zeros({2, 3, 4});
  Generator g(1);
  auto message = [&](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message([&] { scaled_residual_add(x, Tensor::zeros({2, 3, 5}), Tensor(), 0.1, true, g); }).find("[2, 3, 5]"),
            std::string::npos);
  EXPECT_NE(message([&] { scaled_residual_add(x, b, Tensor::ones({3}), 0.0, true, g); }).find("gamma [3]"),
            std::string::npos);
  EXPECT_NE(message([&] { scaled_residual_add(x, b, Tensor(), 1.5, true, g); }).find("drop_rate"), std::string::npos);
}

}  // namespace
}  // namespace unirep
