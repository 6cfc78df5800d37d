// Batch norm and layer norm with a bf16/f16 input and float32 weight, bias and running stats (what
// autocast feeds them): against the float32 kernels on the same rounded input and upstream
// gradient (the mixed kernels compute in float32 too, so they must agree to float32 rounding
// before the final rounding of y and dx), CUDA against CPU, and the dtype rules.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "autograd/ops.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::relative_error;

struct NormCase {
  std::string name;
  bool batch = true;  // batch_norm, else layer_norm
  Shape shape;
  int64_t dim = -1;
  bool training = true;
};

// Channel-last and channels-first layouts, batch norm partials over more than one row block (256
// rows) and layer norm tiles over more than one 64-position tile, eval-mode batch norm.
std::vector<NormCase> cases() {
  return {{"bn_nhwc", true, {4, 5, 5, 24}},         {"bn_nhwc_rows", true, {2, 16, 17, 8}},
          {"bn_nchw", true, {3, 6, 4, 5}, 1},       {"bn_eval", true, {4, 3, 3, 16}, -1, false},
          {"ln_nhwc", false, {4, 5, 5, 24}},        {"ln_nchw_tiles", false, {2, 6, 9, 9}, 1}};
}

struct Inputs {
  Tensor x, w, b, rm, rv, dy;  // float64 CPU
};

Inputs make_inputs(const NormCase& c, uint64_t seed) {
  Generator gen(seed);
  const int64_t C = c.shape[size_t(c.dim < 0 ? c.dim + int64_t(c.shape.size()) : c.dim)];
  Inputs in;
  in.x = Tensor::randn(c.shape, gen, DType::Float64).mul_(2.0);
  in.x.add_(Tensor::full(c.shape, 0.7, DType::Float64));
  in.w = Tensor::rand({C}, gen, 0.5, 1.5, DType::Float64);
  in.b = Tensor::randn({C}, gen, DType::Float64);
  in.rm = Tensor::randn({C}, gen, DType::Float64).mul_(0.3);
  in.rv = Tensor::rand({C}, gen, 0.5, 2.0, DType::Float64);
  in.dy = Tensor::randn(c.shape, gen, DType::Float64);
  return in;
}

struct Outputs {
  Tensor y, dx, dw, db, rm, rv;  // CPU, in the dtypes the op produced
};

// x and dy in x_dtype, weight/bias in p_dtype, running stats float32.
Outputs run(const NormCase& c, const Inputs& in, DType x_dtype, DType p_dtype, Device dev) {
  Tensor x = in.x.to(x_dtype).to(dev).requires_grad_();
  Tensor w = in.w.to(p_dtype).to(dev).requires_grad_(), b = in.b.to(p_dtype).to(dev).requires_grad_();
  Tensor rm = in.rm.to(DType::Float32).to(dev), rv = in.rv.to(DType::Float32).to(dev);
  Tensor y = c.batch ? batch_norm(x, w, b, rm, rv, c.training, 0.1, 1e-5, c.dim) : layer_norm(x, w, b, 1e-6, c.dim);
  y.backward(in.dy.to(x_dtype).to(dev));
  return {y.cpu(), x.grad().cpu(), w.grad().cpu(), b.grad().cpu(), rm.cpu(), rv.cpu()};
}

// The inputs as the mixed kernels see them: x and dy rounded to `low`.
Inputs rounded(Inputs in, DType low) {
  in.x = in.x.to(low).to(DType::Float64);
  in.dy = in.dy.to(low).to(DType::Float64);
  return in;
}

// Elements of a and b (same dtype) that differ, and the largest difference in units of b's spacing
// at that magnitude (ulps of the 16-bit format: 2^-7 or 2^-10 relative).
std::pair<int64_t, double> ulp_mismatch(const Tensor& a, const Tensor& b, DType low) {
  const double frac = low == DType::BFloat16 ? 7 : 10;
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  int64_t n = 0;
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    if (va[i] == vb[i]) continue;
    ++n;
    const double ulp = std::ldexp(1.0, std::ilogb(std::fabs(vb[i])) - int(frac));
    worst = std::max(worst, std::fabs(va[i] - vb[i]) / ulp);
  }
  return {n, worst};
}

TEST(NormMixed, Float32ParametersMatchTheFloat32KernelsOnTheRoundedInput) {
  for (DType low : {DType::BFloat16, DType::Float16})
    for (const NormCase& c : cases()) {
      const Inputs in = make_inputs(c, 3);
      const Outputs mixed = run(c, in, low, DType::Float32, Device::cpu());
      const Outputs ref = run(c, rounded(in, low), DType::Float32, DType::Float32, Device::cpu());
      const std::string what = c.name + " " + dtype_name(low);
      ASSERT_EQ(mixed.y.dtype(), low) << what;
      ASSERT_EQ(mixed.dx.dtype(), low) << what;
      for (const Tensor* t : {&mixed.dw, &mixed.db, &mixed.rm, &mixed.rv})
        ASSERT_EQ(t->dtype(), DType::Float32) << what;
      // y and dx: the float32 results rounded once. Float32 sums in the same order: at most a rare
      // last-bit difference can move a value across a rounding boundary, one ulp. Measured here:
      // no element differs in any case; dw/db within 4.2e-8 (nchw batch norm), else identical.
      auto [ny, wy] = ulp_mismatch(mixed.y, ref.y.to(low), low);
      auto [ndx, wdx] = ulp_mismatch(mixed.dx, ref.dx.to(low), low);
      EXPECT_LE(wy, 1.0) << what;
      EXPECT_LE(wdx, 1.0) << what;
      EXPECT_LE(ny + ndx, mixed.y.numel() / 100) << what;
      // Float32 outputs: float32 rounding.
      EXPECT_LE(relative_error(mixed.dw, ref.dw), 1e-6) << what;
      EXPECT_LE(relative_error(mixed.db, ref.db), 1e-6) << what;
      EXPECT_LE(relative_error(mixed.rm, ref.rm), 1e-6) << what;
      EXPECT_LE(relative_error(mixed.rv, ref.rv), 1e-6) << what;
      // And the whole thing is close to the float64 computation on the unrounded input: the 16-bit
      // input and dy cost about 2^-9 (bf16) relative, nothing more.
      const Outputs exact = run(c, in, DType::Float64, DType::Float64, Device::cpu());
      const double tol = low == DType::BFloat16 ? 1e-2 : 2e-3;
      EXPECT_LE(relative_error(mixed.y, exact.y), tol) << what;
      EXPECT_LE(relative_error(mixed.dx, exact.dx), tol) << what;
      EXPECT_LE(relative_error(mixed.dw, exact.dw), tol) << what;
      std::printf("[norm mixed] %-14s %-8s y %lld, dx %lld of %lld elements differ; dw %.1e db %.1e vs f32\n",
                  c.name.c_str(), dtype_name(low), (long long)ny, (long long)ndx, (long long)mixed.y.numel(),
                  relative_error(mixed.dw, ref.dw), relative_error(mixed.db, ref.db));
    }
}

// The same float32 math in another summation order: float32 results agree to float32 rounding
// (a channel's sum over up to 4352 positions, so 1e-4 for dw/db), and the 16-bit y/dx at most flip
// a rare rounding by one ulp.
TEST(NormMixed, CudaMatchesCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (DType low : {DType::BFloat16, DType::Float16})
    for (const NormCase& c : cases()) {
      const Inputs in = make_inputs(c, 4);
      const Outputs cpu = run(c, in, low, DType::Float32, Device::cpu());
      const Outputs gpu = run(c, in, low, DType::Float32, Device::cuda());
      const std::string what = c.name + " " + dtype_name(low);
      EXPECT_EQ(gpu.y.dtype(), low) << what;
      EXPECT_EQ(gpu.dw.dtype(), DType::Float32) << what;
      auto [ny, wy] = ulp_mismatch(gpu.y, cpu.y, low);
      auto [ndx, wdx] = ulp_mismatch(gpu.dx, cpu.dx, low);
      EXPECT_LE(wy, 1.0) << what;
      EXPECT_LE(wdx, 1.0) << what;
      EXPECT_LE(ny + ndx, gpu.y.numel() / 20) << what;
      EXPECT_LE(relative_error(gpu.dw, cpu.dw), 1e-4) << what;
      EXPECT_LE(relative_error(gpu.db, cpu.db), 1e-4) << what;
      EXPECT_LE(relative_error(gpu.rm, cpu.rm), 1e-5) << what;
      EXPECT_LE(relative_error(gpu.rv, cpu.rv), 1e-5) << what;
      std::printf("[norm mixed cuda-vs-cpu] %-14s %-8s y %lld, dx %lld of %lld differ; dw %.1e db %.1e\n",
                  c.name.c_str(), dtype_name(low), (long long)ny, (long long)ndx, (long long)gpu.y.numel(),
                  relative_error(gpu.dw, cpu.dw), relative_error(gpu.db, cpu.db));
    }
}

TEST(NormMixed, ParameterDtypeRules) {
  Tensor xb = Tensor::zeros({4, 3}, DType::BFloat16), x32 = Tensor::zeros({4, 3});
  Tensor w32 = Tensor::ones({3}), wb = Tensor::ones({3}, DType::BFloat16), wh = Tensor::ones({3}, DType::Float16);
  // Allowed: the input's dtype, or float32 next to a 16-bit input.
  EXPECT_EQ(layer_norm(xb, w32, w32).dtype(), DType::BFloat16);
  EXPECT_EQ(layer_norm(xb, wb, wb).dtype(), DType::BFloat16);
  EXPECT_EQ(batch_norm(xb, w32, Tensor(), Tensor(), Tensor(), true).dtype(), DType::BFloat16);
  // Not: 16-bit parameters next to a float32 input, another 16-bit dtype, float64, or two dtypes.
  EXPECT_THROW(layer_norm(x32, wb, Tensor()), Error);
  EXPECT_THROW(layer_norm(xb, wh, Tensor()), Error);
  EXPECT_THROW(layer_norm(xb, Tensor::ones({3}, DType::Float64), Tensor()), Error);
  try {
    batch_norm(xb, w32, wb, Tensor(), Tensor(), true);
    ADD_FAILURE() << "mixed weight/bias dtypes accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("batch_norm"), std::string::npos) << msg;
    EXPECT_NE(msg.find("share one dtype"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace unirep
