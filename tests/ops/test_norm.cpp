// Normalisation: gradcheck and CUDA-vs-CPU of batch_norm / layer_norm, running statistics against
// PyTorch's formulas computed by hand, eval mode, normalised moments, eps, composite references for
// shapes large enough to cross the CPU kernels' row blocks and tiles, and bad input.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::rand64;
using testing::randn64;

// Inputs: x, weight, bias, running_mean, running_var (any may be undefined).
struct BnSpec {
  Shape shape;
  int64_t dim = -1;
  bool affine = true;
  bool running = true;
  bool training = true;
};

OpCase bn_case(std::string name, BnSpec spec, bool gradcheck = true) {
  OpCase c{name,
           [spec](Generator& g) {
             const int64_t C = spec.shape[size_t(spec.dim < 0 ? spec.dim + int64_t(spec.shape.size()) : spec.dim)];
             std::vector<Tensor> in{randn64(g, spec.shape, true, 2.0), Tensor(), Tensor(), Tensor(), Tensor()};
             // Shift the input so the statistics are not trivially (0, 1).
             {
               NoGradGuard no_grad;
               in[0] = add_scalar(in[0], 0.5).detach().requires_grad_();
             }
             if (spec.affine) {
               in[1] = rand64(g, {C}, 0.5, 1.5);
               in[2] = randn64(g, {C});
             }
             if (spec.running) {
               in[3] = randn64(g, {C}, false);
               in[4] = rand64(g, {C}, 0.5, 2.0, false);
             }
             return in;
           },
           [spec](const std::vector<Tensor>& in) {
             return batch_norm(in[0], in[1], in[2], in[3], in[4], spec.training, 0.1, 1e-5, spec.dim);
           }};
  c.gradcheck = gradcheck;
  return c;
}

struct LnSpec {
  Shape shape;
  int64_t dim = -1;
  bool affine = true;
};

OpCase ln_case(std::string name, LnSpec spec, bool gradcheck = true) {
  OpCase c{name,
           [spec](Generator& g) {
             const int64_t C = spec.shape[size_t(spec.dim < 0 ? spec.dim + int64_t(spec.shape.size()) : spec.dim)];
             std::vector<Tensor> in{randn64(g, spec.shape, true, 1.5), Tensor(), Tensor()};
             if (spec.affine) {
               in[1] = rand64(g, {C}, 0.5, 1.5);
               in[2] = randn64(g, {C});
             }
             return in;
           },
           [spec](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-6, spec.dim); }};
  c.gradcheck = gradcheck;
  return c;
}

std::vector<OpCase> norm_cases() {
  return {
      bn_case("bn_train_nhwc", {{2, 3, 3, 4}}),
      bn_case("bn_train_odd", {{3, 5, 2, 3}}),
      bn_case("bn_train_nchw", {{2, 4, 3, 3}, 1}),
      bn_case("bn_train_no_affine_no_running", {{2, 3, 3, 4}, -1, false, false}),
      bn_case("bn_train_2d", {{9, 5}}),
      bn_case("bn_eval_nhwc", {{2, 3, 3, 4}, -1, true, true, false}),
      bn_case("bn_eval_nchw_no_affine", {{2, 4, 3, 3}, 1, false, true, false}),
      ln_case("ln_last", {{2, 3, 3, 5}}),
      ln_case("ln_channels_first", {{2, 4, 3, 3}, 1}),
      ln_case("ln_2d", {{4, 7}}),
      ln_case("ln_last_no_affine", {{2, 3, 3, 5}, -1, false}),
      ln_case("ln_channels_first_no_affine", {{2, 4, 3, 3}, 1, false}),
      // Sized for the GPU comparison only (several blocks per channel, register rows, wide rows).
      bn_case("bn_train_large_nhwc", {{8, 14, 14, 64}}, false),
      bn_case("bn_train_large_nchw", {{8, 64, 14, 14}, 1}, false),
      bn_case("bn_train_large_odd_c", {{4, 9, 9, 45}, -1, false, true}, false),
      bn_case("bn_eval_large_nhwc", {{8, 14, 14, 64}, -1, true, true, false}, false),
      // Channel-last CUDA paths: C % 8 == 0 (16-byte vectors in bf16 and f32) with a row block that is
      // not a power of two (160 channels: 20 bf16 vectors x 12 rows) and ~33 row ranges; C % 8 == 4
      // (vectors in f32, scalar in bf16); channel tiles of 256 vectors (2056 channels: 2 tiles in bf16,
      // 3 in f32); the eval dx pass.
      bn_case("bn_train_vec_c160", {{4, 28, 28, 160}}, false),
      bn_case("bn_train_c36", {{6, 10, 10, 36}}, false),
      bn_case("bn_train_wide_c", {{96, 2056}}, false),
      bn_case("bn_eval_vec_c160", {{4, 14, 14, 160}, -1, true, true, false}, false),
      ln_case("ln_large_nhwc", {{8, 14, 14, 64}}, false),
      ln_case("ln_large_nchw", {{8, 64, 14, 14}, 1}, false),
      ln_case("ln_large_odd_c", {{4, 9, 9, 100}}, false),
      ln_case("ln_large_wide_rows", {{64, 1536}}, false),
  };
}

UNIREP_OP_CASE_TESTS(Norm, norm_cases)

// ---------------------------------------------------------------- batch norm values

// x [rows, C] channel-last, values chosen by hand; expected statistics from the definitions.
TEST(Norm, BatchNormRunningStatsFollowPyTorch) {
  const int64_t rows = 4, C = 2;
  std::vector<double> xv = {1, 10, 2, 20, 4, 30, 7, 60};  // channel 0: 1 2 4 7, channel 1: 10 20 30 60
  // Buffers move the same way whether or not a graph is recorded: x without grad, x with grad,
  // x with grad under NoGradGuard.
  for (int mode = 0; mode < 3; ++mode) {
    Tensor x = Tensor::from_vector(xv, {rows, C});
    if (mode > 0) x.requires_grad_();
    Tensor rm = Tensor::from_vector(std::vector<double>{0.5, -1.0}, {C});
    Tensor rv = Tensor::from_vector(std::vector<double>{2.0, 3.0}, {C});
    const double momentum = 0.25;
    Tensor y;
    {
      std::optional<NoGradGuard> no_grad;
      if (mode == 2) no_grad.emplace();
      y = batch_norm(x, Tensor(), Tensor(), rm, rv, true, momentum, 1e-5);
    }
    EXPECT_EQ(y.requires_grad(), mode == 1);
    std::vector<double> ym = y.to_vector<double>(), rmv = rm.to_vector<double>(), rvv = rv.to_vector<double>();
    const double init_m[2] = {0.5, -1.0}, init_v[2] = {2.0, 3.0};
    for (int64_t c = 0; c < C; ++c) {
      double mean = 0, var = 0;
      for (int64_t r = 0; r < rows; ++r) mean += xv[size_t(r * C + c)] / rows;
      for (int64_t r = 0; r < rows; ++r) var += std::pow(xv[size_t(r * C + c)] - mean, 2);
      const double biased = var / rows, unbiased = var / (rows - 1);
      EXPECT_NEAR(rmv[size_t(c)], (1 - momentum) * init_m[c] + momentum * mean, 1e-12)
          << "mode " << mode << " channel " << c;
      EXPECT_NEAR(rvv[size_t(c)], (1 - momentum) * init_v[c] + momentum * unbiased, 1e-12)
          << "mode " << mode << " channel " << c;
      for (int64_t r = 0; r < rows; ++r)
        EXPECT_NEAR(ym[size_t(r * C + c)], (xv[size_t(r * C + c)] - mean) / std::sqrt(biased + 1e-5), 1e-12)
            << "mode " << mode;
    }
  }
  // Channel 0 by the numbers: mean 3.5, unbiased variance 7, so 0.75*0.5 + 0.25*3.5 and 0.75*2 + 0.25*7.
  Tensor rm = Tensor::zeros({C}, DType::Float64), rv = Tensor::ones({C}, DType::Float64);
  batch_norm(Tensor::from_vector(xv, {rows, C}), Tensor(), Tensor(), rm, rv, true, 0.25);
  EXPECT_NEAR(rm.to_vector<double>()[0], 0.875, 1e-12);
  EXPECT_NEAR(rv.to_vector<double>()[0], 0.75 + 1.75, 1e-12);
}

// float32 running stats next to a bfloat16 input; statistics are accumulated in float32.
TEST(Norm, BatchNormBFloat16InputFloat32RunningStats) {
  Generator gen(3);
  Tensor x64 = Tensor::randn({6, 5, 8}, gen, DType::Float64);
  Tensor xb = x64.to(DType::BFloat16);
  Tensor xr = xb.to(DType::Float64);  // the values the kernel sees
  Tensor rm = Tensor::zeros({8}), rv = Tensor::ones({8});
  Tensor y = batch_norm(xb, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5);
  EXPECT_EQ(y.dtype(), DType::BFloat16);
  EXPECT_EQ(rm.dtype(), DType::Float32);
  std::vector<double> xv = xr.to_vector<double>(), rmv = rm.to_vector<double>(), rvv = rv.to_vector<double>();
  const int64_t n = 30;
  for (int64_t c = 0; c < 8; ++c) {
    double mean = 0, var = 0;
    for (int64_t r = 0; r < n; ++r) mean += xv[size_t(r * 8 + c)] / n;
    for (int64_t r = 0; r < n; ++r) var += std::pow(xv[size_t(r * 8 + c)] - mean, 2);
    EXPECT_NEAR(rmv[size_t(c)], 0.1 * mean, 1e-6);
    EXPECT_NEAR(rvv[size_t(c)], 0.9 + 0.1 * var / (n - 1), 1e-6);
  }
}

TEST(Norm, BatchNormEvalUsesRunningStats) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor w = Tensor::from_vector(std::vector<double>{2, -1}, {2});
  Tensor b = Tensor::from_vector(std::vector<double>{0.5, 1}, {2});
  Tensor rm = Tensor::from_vector(std::vector<double>{1, -2}, {2});
  Tensor rv = Tensor::from_vector(std::vector<double>{4, 0.25}, {2});
  std::vector<double> y = batch_norm(x, w, b, rm, rv, false, 0.1, 1e-5).to_vector<double>();
  const double xs[6] = {1, 2, 3, 4, 5, 6};
  const double m[2] = {1, -2}, v[2] = {4, 0.25}, wv[2] = {2, -1}, bv[2] = {0.5, 1};
  for (int i = 0; i < 6; ++i) {
    const int c = i % 2;
    EXPECT_NEAR(y[size_t(i)], (xs[i] - m[c]) / std::sqrt(v[c] + 1e-5) * wv[c] + bv[c], 1e-12) << i;
  }
  // Eval leaves the buffers alone.
  EXPECT_EQ(rm.to_vector<double>(), (std::vector<double>{1, -2}));
  EXPECT_EQ(rv.to_vector<double>(), (std::vector<double>{4, 0.25}));
  // The op is affine per channel: dx = dy * w / sqrt(running_var + eps).
  Tensor xg = x.detach().requires_grad_();
  sum(batch_norm(xg, w, b, rm, rv, false)).backward();
  std::vector<double> gx = xg.grad().to_vector<double>();
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(gx[size_t(i)], wv[i % 2] / std::sqrt(v[i % 2] + 1e-5), 1e-12);
}

TEST(Norm, BatchNormEpsIsHonoured) {
  // One channel, values +-a: biased variance a^2 = 1e-5, the default eps, so y = +-1/sqrt(2).
  const double a = std::sqrt(1e-5);
  Tensor x = Tensor::from_vector(std::vector<double>{a, -a, a, -a}, {4, 1});
  std::vector<double> y = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true).to_vector<double>();
  EXPECT_NEAR(y[0], 1 / std::sqrt(2.0), 1e-9);
  EXPECT_NEAR(y[1], -1 / std::sqrt(2.0), 1e-9);
  std::vector<double> y0 = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 0.0).to_vector<double>();
  EXPECT_NEAR(y0[0], 1.0, 1e-9);
}

// ---------------------------------------------------------------- layer norm values

TEST(Norm, LayerNormRowsHaveZeroMeanUnitVariance) {
  Generator gen(5);
  for (int64_t dim : {int64_t(-1), int64_t(1)}) {
    Tensor x = Tensor::randn({3, 16, 5}, gen, DType::Float64);
    x = add_scalar(mul_scalar(x, 3.0), 2.0);
    std::vector<double> y = layer_norm(x, Tensor(), Tensor(), 1e-6, dim).to_vector<double>();
    const int64_t outer = dim == 1 ? 3 : 3 * 16, C = dim == 1 ? 16 : 5, inner = dim == 1 ? 5 : 1;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; ++c) mean += y[size_t((o * C + c) * inner + i)] / C;
        for (int64_t c = 0; c < C; ++c) var += std::pow(y[size_t((o * C + c) * inner + i)] - mean, 2) / C;
        EXPECT_NEAR(mean, 0.0, 1e-12) << "dim " << dim;
        EXPECT_NEAR(var, 1.0, 1e-5) << "dim " << dim;  // var / (var + eps)
      }
  }
}

TEST(Norm, LayerNormEpsIsHonoured) {
  // Row (a, -a) with a^2 = 1e-6, the default eps: y = a / sqrt(2e-6) = 1/sqrt(2).
  Tensor x = Tensor::from_vector(std::vector<double>{1e-3, -1e-3}, {1, 2});
  EXPECT_NEAR(layer_norm(x, Tensor(), Tensor()).to_vector<double>()[0], 1 / std::sqrt(2.0), 1e-9);
  EXPECT_NEAR(layer_norm(x, Tensor(), Tensor(), 0.0).to_vector<double>()[0], 1.0, 1e-9);
  EXPECT_NEAR(layer_norm(x, Tensor(), Tensor(), 1e-5).to_vector<double>()[0], 1e-3 / std::sqrt(1.1e-5), 1e-9);
}

TEST(Norm, LayerNormAffine) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 6, 6, 6}, {2, 3});
  Tensor w = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3});
  Tensor b = Tensor::from_vector(std::vector<float>{0, 1, -1}, {3});
  std::vector<float> y = layer_norm(x, w, b, 1e-6).to_vector<float>();
  const float s = 1.0f / std::sqrt(2.0f / 3.0f + 1e-6f);
  EXPECT_NEAR(y[0], -s, 1e-5);
  EXPECT_NEAR(y[1], 1, 1e-5);
  EXPECT_NEAR(y[2], 3 * s - 1, 1e-5);
  // A constant row normalises to zero: y = bias.
  EXPECT_NEAR(y[3], 0, 1e-6);
  EXPECT_NEAR(y[4], 1, 1e-6);
  EXPECT_NEAR(y[5], -1, 1e-6);
}

// ---------------------------------------------------------------- composite references

// Shapes crossing the CPU kernels' row blocks (256 rows), tiles (64 positions) and thread chunks, in float64,
// against the same math written with differentiable elementwise ops and reductions: outputs and
// all three gradients.
void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  EXPECT_EQ(a.shape(), b.shape()) << what;
  EXPECT_LT(testing::relative_error(a, b), tol) << what;
}

TEST(Norm, BatchNormMatchesCompositeOnLargerShapes) {
  Generator gen(11);
  struct Case { Shape shape; int64_t dim; };
  // The last two exceed the parallel grain, so several threads share the work.
  for (const Case& cs : {Case{{3, 11, 10, 6}, -1}, Case{{3, 6, 9, 10}, 1}, Case{{4, 40, 40, 16}, -1},
                         Case{{4, 16, 40, 40}, 1}}) {
    const int64_t C = cs.shape[size_t(cs.dim < 0 ? cs.dim + 4 : cs.dim)];
    Tensor x = randn64(gen, cs.shape), w = randn64(gen, {C}), b = randn64(gen, {C});
    Tensor up = Tensor::randn(cs.shape, gen, DType::Float64);
    Tensor y = batch_norm(x, w, b, Tensor(), Tensor(), true, 0.1, 1e-5, cs.dim);
    y.backward(up);
    Tensor gx = x.grad(), gw = w.grad(), gb = b.grad();
    for (const Tensor& t : {x, w, b}) t.set_grad(Tensor());

    std::vector<int64_t> dims;
    for (int64_t d = 0; d < 4; ++d)
      if (d != (cs.dim < 0 ? cs.dim + 4 : cs.dim)) dims.push_back(d);
    Shape pshape(4, 1);
    pshape[size_t(cs.dim < 0 ? cs.dim + 4 : cs.dim)] = C;
    Tensor xc = x - mean(x, dims, true);
    Tensor var = mean(xc * xc, dims, true);
    Tensor ref = xc / sqrt(var + 1e-5) * w.reshape(pshape) + b.reshape(pshape);
    ref.backward(up);
    expect_close(y, ref, 1e-12, "batch_norm forward");
    expect_close(gx, x.grad(), 1e-10, "batch_norm dx");
    expect_close(gw, w.grad(), 1e-10, "batch_norm dweight");
    expect_close(gb, b.grad(), 1e-10, "batch_norm dbias");
  }
}

TEST(Norm, LayerNormMatchesCompositeOnLargerShapes) {
  Generator gen(12);
  struct Case { Shape shape; int64_t dim; };
  // The last two exceed the parallel grain, so several threads share the work.
  for (const Case& cs : {Case{{2, 70, 33}, -1}, Case{{2, 5, 9, 10}, 1}, Case{{300, 7}, -1}, Case{{4, 40, 40, 16}, -1},
                         Case{{4, 16, 40, 40}, 1}}) {
    const int64_t nd = int64_t(cs.shape.size()), d = cs.dim < 0 ? cs.dim + nd : cs.dim, C = cs.shape[size_t(d)];
    Tensor x = randn64(gen, cs.shape), w = randn64(gen, {C}), b = randn64(gen, {C});
    Tensor up = Tensor::randn(cs.shape, gen, DType::Float64);
    Tensor y = layer_norm(x, w, b, 1e-6, cs.dim);
    y.backward(up);
    Tensor gx = x.grad(), gw = w.grad(), gb = b.grad();
    for (const Tensor& t : {x, w, b}) t.set_grad(Tensor());

    Shape pshape(size_t(nd), 1);
    pshape[size_t(d)] = C;
    Tensor xc = x - mean(x, {d}, true);
    Tensor var = mean(xc * xc, {d}, true);
    Tensor ref = xc / sqrt(var + 1e-6) * w.reshape(pshape) + b.reshape(pshape);
    ref.backward(up);
    expect_close(y, ref, 1e-12, "layer_norm forward");
    expect_close(gx, x.grad(), 1e-10, "layer_norm dx");
    expect_close(gw, w.grad(), 1e-10, "layer_norm dweight");
    expect_close(gb, b.grad(), 1e-10, "layer_norm dbias");
  }
}

// ---------------------------------------------------------------- CUDA running statistics

TEST(Norm, CudaRunningStatsMatchCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  Generator gen(21);
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    for (int64_t dim : {int64_t(-1), int64_t(1)}) {
      Tensor x = Tensor::randn({8, 32, 12, 12}, gen, dt);
      const int64_t C = dim == 1 ? 32 : 12;
      Tensor rm_cpu = Tensor::randn({C}, gen), rv_cpu = Tensor::rand({C}, gen, 0.5, 2.0);
      Tensor rm_gpu = rm_cpu.cuda(), rv_gpu = rv_cpu.cuda();
      batch_norm(x, Tensor(), Tensor(), rm_cpu, rv_cpu, true, 0.1, 1e-5, dim);
      batch_norm(x.cuda(), Tensor(), Tensor(), rm_gpu, rv_gpu, true, 0.1, 1e-5, dim);
      EXPECT_LT(testing::relative_error(rm_gpu.cpu(), rm_cpu), 1e-5) << dtype_name(dt) << " dim " << dim;
      EXPECT_LT(testing::relative_error(rv_gpu.cpu(), rv_cpu), 1e-5) << dtype_name(dt) << " dim " << dim;
    }
  }
}

// Data far from zero (mean 1000, std 1, float32): the statistics must stay as accurate as a centred
// two-pass variance; E[x^2] - E[x]^2 in float32 would be off by about 1000^2 * 2^-24, 6% of the
// variance. The float32 mean itself can only be within half an ulp of 1000 (3e-5), which bounds y.
// Momentum 1 makes the running stats the batch mean and the unbiased variance. Checked against
// float64 statistics of the same float32 values on the CPU, and on CUDA when there is a device
// (8 x 28 x 28 rows of 64 channels: several row ranges per channel, 16-byte vectors; and a view
// one element off 16-byte alignment, which takes the scalar path).
TEST(Norm, BatchNormLargeMeanStatisticsFloat32) {
  const int64_t rows = 8 * 28 * 28, C = 64;
  Generator gen(31);
  Tensor x64;
  {
    NoGradGuard no_grad;
    x64 = add_scalar(Tensor::randn({rows * C + 1}, gen, DType::Float64), 1000.0);
  }
  const Tensor x_flat = x64.to(DType::Float32);
  const std::vector<double> xv = x_flat.to(DType::Float64).to_vector<double>();
  auto check = [&](const Tensor& x, int64_t offset, const std::string& what) {
    Tensor rm = Tensor::zeros({C}, DType::Float32, x.device()), rv = Tensor::ones({C}, DType::Float32, x.device());
    const std::vector<float> y = batch_norm(x, Tensor(), Tensor(), rm, rv, true, 1.0, 0.0).cpu().to_vector<float>();
    const std::vector<float> rmv = rm.cpu().to_vector<float>(), rvv = rv.cpu().to_vector<float>();
    double worst_y = 0;
    for (int64_t c = 0; c < C; ++c) {
      double mean = 0, m2 = 0;
      for (int64_t r = 0; r < rows; ++r) mean += xv[size_t(offset + r * C + c)];
      mean /= double(rows);
      for (int64_t r = 0; r < rows; ++r) m2 += std::pow(xv[size_t(offset + r * C + c)] - mean, 2);
      EXPECT_NEAR(rmv[size_t(c)], mean, 1e-4) << what << " channel " << c;
      EXPECT_NEAR(rvv[size_t(c)] / (m2 / double(rows - 1)), 1.0, 1e-4) << what << " channel " << c;
      const double invstd = 1 / std::sqrt(m2 / double(rows));
      for (int64_t r = 0; r < rows; ++r) {
        const size_t e = size_t(r * C + c);
        worst_y = std::max(worst_y, std::abs(double(y[e]) - (xv[size_t(offset) + e] - mean) * invstd));
      }
    }
    EXPECT_LT(worst_y, 2e-4) << what;
  };
  const Tensor x = x_flat.slice(0, 0, rows * C).reshape({rows, C});
  check(x, 0, "cpu");
  if (!cuda_available()) return;
  check(x.cuda(), 0, "cuda");
  const Tensor shifted = x_flat.cuda().slice(0, 1, rows * C + 1).reshape({rows, C});  // 4 bytes past alignment
  check(shifted, 1, "cuda, unaligned");
}

// Gradients through the scalar channel-last path: an input view one element past 16-byte alignment
// (C % 8 == 0, so only the alignment keeps it off the vector path), against the CPU.
TEST(Norm, CudaBatchNormUnalignedChannelLastMatchesCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  Generator gen(32);
  const int64_t rows = 2 * 28 * 28, C = 80;
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    const Tensor flat = Tensor::randn({rows * C + 1}, gen, dt);
    const Tensor w = Tensor::rand({C}, gen, 0.5, 1.5), b = Tensor::randn({C}, gen);
    const Tensor up = Tensor::randn({rows, C}, gen, dt);
    struct Result { Tensor y, dx, dw, db; };
    auto run = [&](Device dev) {
      Tensor x = flat.to(dev).slice(0, 1, rows * C + 1).reshape({rows, C}).requires_grad_();
      Tensor wd = w.to(dev).detach().requires_grad_(), bd = b.to(dev).detach().requires_grad_();
      Tensor y = batch_norm(x, wd, bd, Tensor(), Tensor(), true, 0.1, 1e-5);
      y.backward(up.to(dev));
      return Result{y.cpu(), x.grad().cpu(), wd.grad().cpu(), bd.grad().cpu()};
    };
    const Result cpu = run(Device::cpu()), gpu = run(Device::cuda());
    const double tol = dt == DType::Float32 ? 1e-5 : 1e-2;
    EXPECT_LT(testing::relative_error(gpu.y, cpu.y), tol) << dtype_name(dt);
    EXPECT_LT(testing::relative_error(gpu.dx, cpu.dx), tol) << dtype_name(dt);
    EXPECT_LT(testing::relative_error(gpu.dw, cpu.dw), tol) << dtype_name(dt);
    EXPECT_LT(testing::relative_error(gpu.db, cpu.db), tol) << dtype_name(dt);
  }
}

// ---------------------------------------------------------------- bad input

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(Norm, BatchNormBadInput) {
  Tensor x = Tensor::zeros({2, 3, 3, 4});
  Tensor c4 = Tensor::ones({4}), c3 = Tensor::ones({3});
  expect_error([&] { batch_norm(x, c3, Tensor(), Tensor(), Tensor(), true); },
               {"batch_norm", "weight", "[4]", "[2, 3, 3, 4]", "[3]"});
  expect_error([&] { batch_norm(x, c4, Tensor::ones({4, 1}), Tensor(), Tensor(), true); },
               {"batch_norm", "bias", "[4]", "[4, 1]"});
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), c3, Tensor::ones({4}), true); },
               {"batch_norm", "running_mean", "[4]", "[3]"});
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), c4, Tensor(), true); },
               {"batch_norm", "running_mean and running_var"});
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), Tensor::ones({4}, DType::Float64), c4, true); },
               {"batch_norm", "running_mean", "float64"});
  expect_error([&] { batch_norm(x, Tensor::ones({4}, DType::Float64), Tensor(), Tensor(), Tensor(), true); },
               {"batch_norm", "weight", "float64", "float32"});
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false); },
               {"batch_norm", "eval", "running_mean"});
  expect_error([&] { batch_norm(Tensor::zeros({1, 4}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
               {"batch_norm", "more than one value", "[1, 4]"});
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, 4); },
               {"batch_norm", "dim 4"});
  expect_error([&] { batch_norm(Tensor::zeros({2, 4}, DType::Int64), Tensor(), Tensor(), Tensor(), Tensor(), true); },
               {"batch_norm", "floating"});
  expect_error([&] { batch_norm(Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), true); },
               {"batch_norm", "undefined"});
  Tensor grad_buffer = Tensor::zeros({4}).requires_grad_();
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), grad_buffer, c4, true); },
               {"batch_norm", "running_mean", "buffer"});
}

TEST(Norm, BatchNormBadInputChecksAreCorrectForChannelsFirst) {
  // Same tensor, channel dim 1 (size 3): [3] parameters are right and [4] ones are wrong.
  Tensor x = Tensor::zeros({2, 3, 3, 4});
  Tensor c3 = Tensor::ones({3});
  EXPECT_NO_THROW(batch_norm(x, c3, c3, Tensor::zeros({3}), Tensor::ones({3}), true, 0.1, 1e-5, 1));
  expect_error([&] { batch_norm(x, Tensor::ones({4}), c3, Tensor(), Tensor(), true, 0.1, 1e-5, 1); },
               {"batch_norm", "weight", "[3]", "dim 1", "[4]"});
}

TEST(Norm, LayerNormBadInput) {
  Tensor x = Tensor::zeros({2, 4, 3, 3});
  expect_error([&] { layer_norm(x, Tensor::ones({4}), Tensor()); },
               {"layer_norm", "weight", "[3]", "[2, 4, 3, 3]", "[4]"});
  expect_error([&] { layer_norm(x, Tensor::ones({3}), Tensor::ones({3}), 1e-6, 1); },
               {"layer_norm", "weight", "[4]", "[3]"});
  expect_error([&] { layer_norm(x, Tensor(), Tensor::ones({2, 2})); }, {"layer_norm", "bias", "[3]", "[2, 2]"});
  expect_error([&] { layer_norm(x, Tensor::ones({3}, DType::BFloat16), Tensor()); },
               {"layer_norm", "weight", "bfloat16", "float32"});
  expect_error([&] { layer_norm(x, Tensor(), Tensor(), 1e-6, -5); }, {"layer_norm", "dim -5"});
  expect_error([&] { layer_norm(Tensor::zeros({2, 0}), Tensor(), Tensor()); }, {"layer_norm", "empty", "[2, 0]"});
  expect_error([&] { layer_norm(Tensor::zeros({2, 3}, DType::Int32), Tensor(), Tensor()); },
               {"layer_norm", "floating"});
}

}  // namespace
}  // namespace unirep
