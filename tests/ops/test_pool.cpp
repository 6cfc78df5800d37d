// Pooling and resizing: gradcheck, CUDA-vs-CPU, values against hand-computed and known PyTorch
// numbers, dtype coverage on the CPU, and bad input.
#include <cmath>

#include "core/ops/pool.h"
#include "core/ops/pool_elements.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

MaxPool2dParams pool_params(int64_t k, int64_t s, int64_t p = 0, int64_t d = 1, bool ceil_mode = false) {
  MaxPool2dParams m;
  m.kernel_h = m.kernel_w = k;
  m.stride_h = m.stride_w = s;
  m.pad_h = m.pad_w = p;
  m.dilation_h = m.dilation_w = d;
  m.ceil_mode = ceil_mode;
  return m;
}

std::vector<OpCase> pool_cases() {
  auto c = [](std::string name, Shape shape, std::function<Tensor(const Tensor&)> f) {
    return OpCase{name, [=](Generator& g) { return std::vector<Tensor>{randn64(g, shape)}; },
                  [f](const std::vector<Tensor>& x) { return f(x[0]); }};
  };
  auto mp = [](MaxPool2dParams p) { return [p](const Tensor& x) { return max_pool2d(x, p); }; };
  auto aap = [](int64_t oh, int64_t ow) { return [=](const Tensor& x) { return adaptive_avg_pool2d(x, oh, ow); }; };
  auto bil = [](int64_t oh, int64_t ow, bool ac) {
    return [=](const Tensor& x) { return interpolate_bilinear(x, oh, ow, ac); };
  };
  MaxPool2dParams asym = pool_params(3, 2, 1);
  asym.kernel_w = 2;
  asym.stride_w = 1;
  asym.pad_w = 0;
  asym.dilation_w = 2;
  std::vector<OpCase> cases = {
      c("global_avg_pool", {2, 5, 7, 3}, [](const Tensor& x) { return global_avg_pool(x); }),
      c("global_avg_pool_1x1", {3, 1, 1, 4}, [](const Tensor& x) { return global_avg_pool(x); }),
      c("max_pool_2x2_s2", {2, 5, 7, 3}, mp(pool_params(2, 2))),
      c("max_pool_3x3_s2_p1", {2, 5, 7, 3}, mp(pool_params(3, 2, 1))),
      c("max_pool_ceil_mode", {1, 5, 7, 3}, mp(pool_params(2, 2, 0, 1, true))),
      // ceil_mode where PyTorch drops the last window (it would start in the right padding): 5 -> 2.
      c("max_pool_ceil_last_window", {1, 5, 5, 2}, mp(pool_params(3, 3, 1, 1, true))),
      c("max_pool_dilation2", {1, 7, 7, 2}, mp(pool_params(3, 2, 1, 2))),
      c("max_pool_asymmetric", {1, 6, 7, 2}, mp(asym)),
      c("max_pool_permuted_input", {2, 3, 5, 6},
        [](const Tensor& x) { return max_pool2d(x.permute({0, 2, 3, 1}), pool_params(3, 2, 1)); }),
      c("adaptive_avg_7x5_to_3x2", {2, 7, 5, 3}, aap(3, 2)),
      c("adaptive_avg_to_1x1", {2, 5, 7, 3}, aap(1, 1)),
      c("adaptive_avg_up_3x4_to_5x6", {1, 3, 4, 2}, aap(5, 6)),
      c("bilinear_up_5x4_to_9x7", {2, 5, 4, 3}, bil(9, 7, false)),
      c("bilinear_up_5x4_to_9x7_ac", {2, 5, 4, 3}, bil(9, 7, true)),
      c("bilinear_down_8x8_to_3x5", {1, 8, 8, 3}, bil(3, 5, false)),
      c("bilinear_down_8x8_to_3x5_ac", {1, 8, 8, 3}, bil(3, 5, true)),
      c("bilinear_to_1x1_ac", {1, 3, 4, 2}, bil(1, 1, true)),
      c("bilinear_to_1x2", {1, 3, 4, 2}, bil(1, 2, false)),
      c("bilinear_same_size", {1, 3, 4, 2}, bil(3, 4, false)),
      c("bilinear_up_x4", {1, 2, 3, 2}, bil(8, 12, false)),
  };
  // Sized for the GPU comparison only: warp-wide channel runs, many blocks, grid-stride loops.
  std::vector<OpCase> large = {
      c("large_global_avg_pool", {4, 28, 28, 32}, [](const Tensor& x) { return global_avg_pool(x); }),
      c("large_global_avg_pool_wide_c", {2, 7, 7, 1000}, [](const Tensor& x) { return global_avg_pool(x); }),
      c("large_max_pool_3x3_s2_p1", {4, 28, 28, 32}, mp(pool_params(3, 2, 1))),
      c("large_max_pool_2x2_ceil", {4, 27, 27, 32}, mp(pool_params(2, 2, 0, 1, true))),
      c("large_adaptive_avg_to_7x7", {4, 28, 28, 32}, aap(7, 7)),
      c("large_adaptive_avg_to_5x3", {4, 28, 28, 33}, aap(5, 3)),
      c("large_bilinear_up_x2", {4, 28, 28, 32}, bil(56, 56, false)),
      c("large_bilinear_up_ac", {4, 28, 28, 32}, bil(61, 45, true)),
      c("large_bilinear_down", {4, 28, 28, 32}, bil(13, 9, false)),
  };
  for (OpCase& l : large) {
    l.gradcheck = false;
    cases.push_back(l);
  }
  return cases;
}

UNIREP_OP_CASE_TESTS(Pool, pool_cases)

// NHWC tensor [1, H, W, 1] from row-major H x W values.
Tensor image(const std::vector<double>& v, int64_t h, int64_t w, DType dtype = DType::Float64) {
  return Tensor::from_vector(v, {1, h, w, 1}, dtype);
}

void expect_near(const std::vector<double>& actual, const std::vector<double>& expected, double tol) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) EXPECT_NEAR(actual[i], expected[i], tol) << "at " << i;
}

TEST(Pool, BilinearUpsampleMatchesPyTorch) {
  // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=4, mode="bilinear")
  Tensor x = image({1, 2, 3, 4}, 2, 2);
  expect_near(interpolate_bilinear(x, 4, 4, false).to_vector<double>(),
              {1.00, 1.25, 1.75, 2.00,  //
               1.50, 1.75, 2.25, 2.50,  //
               2.50, 2.75, 3.25, 3.50,  //
               3.00, 3.25, 3.75, 4.00},
              1e-12);
  // ... and with align_corners=True.
  const double t = 1.0 / 3.0;
  expect_near(interpolate_bilinear(x, 4, 4, true).to_vector<double>(),
              {1.0, 1 + t, 1 + 2 * t, 2.0,          //
               1 + 2 * t, 2.0, 2 + t, 2 + 2 * t,    //
               2 + t, 2 + 2 * t, 3.0, 3 + t,        //
               3.0, 3 + t, 3 + 2 * t, 4.0},
              1e-12);
  // A single row [1, 2] widened to 4 (float32 path).
  Tensor row = image({1, 2}, 1, 2, DType::Float32);
  EXPECT_EQ(interpolate_bilinear(row, 1, 4, false).to_vector<float>(), (std::vector<float>{1.0f, 1.25f, 1.75f, 2.0f}));
}

TEST(Pool, BilinearDownsampleIsExactOnLinearImages) {
  // x[h, w] = 10 h + w: bilinear interpolation reproduces it at the source coordinates
  //   align_corners=False: src = (dst + 0.5) in/out - 0.5; 8 -> 3: 5/6, 3.5, 37/6; 8 -> 5: 0.3, 1.9, 3.5, 5.1, 6.7
  //   align_corners=True:  src = dst (in-1)/(out-1);       8 -> 3: 0, 3.5, 7;     8 -> 5: 0, 1.75, 3.5, 5.25, 7
  std::vector<double> v;
  for (int h = 0; h < 8; ++h)
    for (int w = 0; w < 8; ++w) v.push_back(10 * h + w);
  Tensor x = image(v, 8, 8);
  auto expected = [](std::vector<double> sh, std::vector<double> sw) {
    std::vector<double> e;
    for (double a : sh)
      for (double b : sw) e.push_back(10 * a + b);
    return e;
  };
  expect_near(interpolate_bilinear(x, 3, 5, false).to_vector<double>(),
              expected({5.0 / 6, 3.5, 37.0 / 6}, {0.3, 1.9, 3.5, 5.1, 6.7}), 1e-12);
  expect_near(interpolate_bilinear(x, 3, 5, true).to_vector<double>(),
              expected({0, 3.5, 7}, {0, 1.75, 3.5, 5.25, 7}), 1e-12);
  // align_corners=True with one output takes the first pixel; False takes the centre.
  expect_near(interpolate_bilinear(x, 1, 1, true).to_vector<double>(), {0.0}, 0);
  expect_near(interpolate_bilinear(x, 1, 1, false).to_vector<double>(), {35.0 + 3.5}, 1e-12);
}

TEST(Pool, BilinearClampsAtTheBorder) {
  // Upsampling a row [1, 2] to 6 without align_corners: src = (dst + 0.5)/3 - 0.5 = -1/3, 0, 1/3, 2/3, 1, 4/3,
  // clamped below at 0 and above at the last pixel.
  Tensor x = image({1, 2}, 1, 2);
  expect_near(interpolate_bilinear(x, 1, 6, false).to_vector<double>(), {1, 1, 1 + 1.0 / 3, 1 + 2.0 / 3, 2, 2}, 1e-12);
}

TEST(Pool, BilinearGradientConservesMass) {
  // Each output's weights sum to one, so the input gradient sums to the number of outputs.
  for (bool ac : {false, true}) {
    for (auto [oh, ow] : {std::pair<int64_t, int64_t>{9, 7}, {3, 5}, {1, 1}, {16, 2}}) {
      Generator gen(3);
      Tensor x = randn64(gen, {2, 5, 4, 3});
      interpolate_bilinear(x, oh, ow, ac).backward(Tensor::ones({2, oh, ow, 3}, DType::Float64));
      EXPECT_NEAR(sum(x.grad()).item(), double(2 * oh * ow * 3), 1e-9) << oh << "x" << ow << " ac " << ac;
    }
  }
}

TEST(Pool, BilinearUpsampleGradientValues) {
  // Row [a, b] -> 4 outputs with weights (1,0), (.75,.25), (.25,.75), (0,1): d/da = 2, d/db = 2 for ones;
  // upstream [1, 10, 100, 1000] gives da = 1 + 7.5 + 25 = 33.5, db = 2.5 + 75 + 1000 = 1077.5.
  Tensor x = image({1, 2}, 1, 2).requires_grad_();
  interpolate_bilinear(x, 1, 4, false).backward(image({1, 10, 100, 1000}, 1, 4));
  expect_near(x.grad().to_vector<double>(), {33.5, 1077.5}, 1e-12);
}

TEST(Pool, AdaptiveAvgPoolBins) {
  // A 5-wide row to 3 outputs: bins [0, 2), [1, 4), [3, 5).
  Tensor x = image({1, 2, 3, 4, 5}, 1, 5).requires_grad_();
  Tensor y = adaptive_avg_pool2d(x, 1, 3);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3, 1}));
  expect_near(y.to_vector<double>(), {1.5, 3.0, 4.5}, 1e-12);
  y.backward(image({2, 3, 4}, 1, 3));
  // x0: 2/2; x1: 2/2 + 3/3; x2: 3/3; x3: 3/3 + 4/2; x4: 4/2.
  expect_near(x.grad().to_vector<double>(), {1, 2, 1, 3, 2}, 1e-12);
  // 7 rows to 3: bins [0, 3), [2, 5), [4, 7).
  EXPECT_EQ(pool_detail::bin_start(1, 7, 3), 2);
  EXPECT_EQ(pool_detail::bin_end(1, 7, 3), 5);
  EXPECT_EQ(pool_detail::bin_end(2, 7, 3), 7);
  // Upsampling 2 -> 3: bins [0, 1), [0, 2), [1, 2).
  expect_near(adaptive_avg_pool2d(image({1, 3}, 1, 2), 1, 3).to_vector<double>(), {1, 2, 3}, 1e-12);
}

TEST(Pool, AdaptiveToOneIsGlobalMean) {
  Generator gen(5);
  Tensor x = randn64(gen, {2, 5, 7, 3}, false);
  EXPECT_LT(testing::relative_error(adaptive_avg_pool2d(x, 1, 1).reshape({2, 3}), global_avg_pool(x)), 1e-14);
  EXPECT_LT(testing::relative_error(global_avg_pool(x), mean(x, {1, 2})), 1e-14);
}

TEST(Pool, GlobalAvgPoolValues) {
  // [1, 2, 2, 2]: channel 0 holds 1..4, channel 1 holds 10, 20, 30, 40.
  Tensor x = Tensor::from_vector(std::vector<double>{1, 10, 2, 20, 3, 30, 4, 40}, {1, 2, 2, 2}).requires_grad_();
  Tensor y = global_avg_pool(x);
  EXPECT_EQ(y.shape(), (Shape{1, 2}));
  expect_near(y.to_vector<double>(), {2.5, 25}, 1e-12);
  y.backward(Tensor::from_vector(std::vector<double>{4, 8}, {1, 2}));
  expect_near(x.grad().to_vector<double>(), {1, 2, 1, 2, 1, 2, 1, 2}, 1e-12);
}

TEST(Pool, MaxPoolValuesAndIndices) {
  // 4x4, 2x2 stride 2.
  Tensor x = image({1, 5, 2, 0,   //
                    3, 4, 7, 8,   //
                    -1, -2, 6, 6,  //
                    -3, -4, 9, 6},
                   4, 4)
                 .requires_grad_();
  Tensor y = max_pool2d(x, pool_params(2, 2));
  expect_near(y.to_vector<double>(), {5, 8, -1, 9}, 0);
  y.backward(image({1, 2, 3, 4}, 2, 2));
  expect_near(x.grad().to_vector<double>(), {0, 1, 0, 0, 0, 0, 0, 2, 3, 0, 0, 0, 0, 0, 4, 0}, 0);

  Tensor out = Tensor::empty({1, 2, 2, 1}, DType::Float64), ind = Tensor::empty({1, 2, 2, 1}, DType::Int64);
  PoolWindow win{2, 2, 2, 2, 0, 0, 1, 1};
  max_pool2d_forward(out, ind, x.detach(), win);
  EXPECT_EQ(ind.to_vector<int64_t>(), (std::vector<int64_t>{1, 7, 8, 14}));
}

TEST(Pool, MaxPoolTiesGoToFirstMaximum) {
  Tensor x = Tensor::ones({1, 2, 2, 1}, DType::Float64).requires_grad_();
  max_pool2d(x, pool_params(2, 2)).backward(Tensor::ones({1, 1, 1, 1}, DType::Float64));
  expect_near(x.grad().to_vector<double>(), {1, 0, 0, 0}, 0);
}

TEST(Pool, MaxPoolPaddingIsMinusInfinity) {
  // All-negative 3x3 input, 3x3 stride 1 padding 1: padding must not win (a zero pad would give 0).
  Tensor x = image({-9, -8, -7, -6, -5, -4, -3, -2, -1}, 3, 3).requires_grad_();
  Tensor y = max_pool2d(x, pool_params(3, 1, 1));
  expect_near(y.to_vector<double>(), {-5, -4, -4, -2, -1, -1, -2, -1, -1}, 0);
  // Overlapping windows send several gradients to the same maximum.
  y.backward(Tensor::ones({1, 3, 3, 1}, DType::Float64));
  expect_near(x.grad().to_vector<double>(), {0, 0, 0, 0, 1, 2, 0, 2, 4}, 0);
}

TEST(Pool, MaxPoolOutputSizeAsPyTorch) {
  EXPECT_EQ(pool_output_size(7, 2, 2, 0, 1, false), 3);
  EXPECT_EQ(pool_output_size(7, 2, 2, 0, 1, true), 4);
  EXPECT_EQ(pool_output_size(5, 3, 2, 1, 1, false), 3);
  EXPECT_EQ(pool_output_size(7, 3, 2, 1, 2, false), 3);
  EXPECT_EQ(pool_output_size(56, 3, 2, 1, 1, false), 28);
  // ceil_mode would give 3, but the third window would start at 6 >= 5 + 1 (in the right padding).
  EXPECT_EQ(pool_output_size(5, 3, 3, 1, 1, true), 2);
  EXPECT_EQ(pool_output_size(6, 3, 3, 1, 1, true), 3);
  EXPECT_EQ(pool_output_size(1, 3, 1, 0, 1, false), -1);
  Tensor x = Tensor::zeros({1, 5, 5, 2});
  EXPECT_EQ(max_pool2d(x, pool_params(3, 3, 1, 1, true)).shape(), (Shape{1, 2, 2, 2}));
  EXPECT_EQ(max_pool2d(x, pool_params(2, 2, 0, 1, true)).shape(), (Shape{1, 3, 3, 2}));
  EXPECT_EQ(max_pool2d(x, pool_params(2, 2)).shape(), (Shape{1, 2, 2, 2}));
}

TEST(Pool, MaxPoolDilatedWindow) {
  // 1x5 row, kernel 1x2 with dilation 2, stride 1: windows {0, 2}, {1, 3}, {2, 4}.
  MaxPool2dParams p = pool_params(1, 1, 0, 1);
  p.kernel_w = 2;
  p.dilation_w = 2;
  Tensor x = image({3, 1, 2, 5, 4}, 1, 5).requires_grad_();
  Tensor y = max_pool2d(x, p);
  expect_near(y.to_vector<double>(), {3, 5, 4}, 0);
  y.backward(image({1, 10, 100}, 1, 3));
  expect_near(x.grad().to_vector<double>(), {1, 0, 0, 10, 100}, 0);
}

// Every op in float32, bfloat16 and float16 on the CPU, forward and backward, against float64.
TEST(Pool, LowPrecisionMatchesFloat64OnCpu) {
  std::vector<OpCase> cases = pool_cases();
  for (const OpCase& c : cases) {
    if (!c.gradcheck) continue;
    Generator gen(11);
    Tensor x64 = c.make_inputs(gen)[0].detach();
    Tensor up64;
    {
      NoGradGuard no_grad;
      up64 = Tensor::randn(c.fn({x64}).shape(), gen, DType::Float64);
    }
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float16}) {
      // The float64 reference sees the same rounded input and upstream gradient, so max pooling picks
      // the same maxima and only the arithmetic precision differs.
      Tensor xr = x64.to(dt).to(DType::Float64).requires_grad_();
      Tensor up = up64.to(dt);
      Tensor ref = c.fn({xr});
      ref.backward(up.to(DType::Float64));
      Tensor gref = xr.grad();
      Tensor x = x64.to(dt).requires_grad_();
      Tensor y = c.fn({x});
      ASSERT_EQ(y.dtype(), dt) << c.name;
      y.backward(up);
      double tol = dt == DType::Float32 ? 1e-6 : 1e-2;
      EXPECT_LT(testing::relative_error(y, ref), tol) << c.name << " " << dtype_name(dt);
      EXPECT_LT(testing::relative_error(x.grad(), gref), tol) << c.name << " grad " << dtype_name(dt);
    }
  }
}

// The CUDA kernels compute every element with the host+device functions of core/ops/pool_elements.h.
// Running those functions here on the host against the CPU kernels checks the device code paths (window,
// bin and tap geometry, gather ranges, argmax rule) on a machine without a GPU.
template <class T> void check_element_functions() {
  using acc = acc_t<T>;
  const double tol = std::is_same<T, double>::value ? 1e-12 : std::is_same<T, float>::value ? 1e-6 : 1e-2;
  Generator gen(21);
  auto rnd = [&](const Shape& s) { return Tensor::randn(s, gen, DTypeOf<T>::value); };
  // a: an element function's acc result, rounded to T as the kernel stores it; b: the CPU kernel's value.
  auto near = [&](acc a, double b) {
    double r = double(static_cast<acc>(static_cast<T>(a)));
    return std::fabs(r - b) <= tol * (1 + std::fabs(b));
  };
  auto for_each = [](const Shape& s, auto f) {
    for (int64_t n = 0; n < s[0]; ++n)
      for (int64_t h = 0; h < s[1]; ++h)
        for (int64_t w = 0; w < s[2]; ++w)
          for (int64_t c = 0; c < s[3]; ++c) f(n, h, w, c, ((n * s[1] + h) * s[2] + w) * s[3] + c);
  };
  const Shape in_shape{2, 7, 6, 3};
  // Max pool: kernel, stride, padding, dilation per dim; ceil_mode.
  std::vector<std::pair<PoolWindow, bool>> windows = {
      {{2, 2, 2, 2, 0, 0, 1, 1}, false}, {{3, 3, 2, 2, 1, 1, 1, 1}, false}, {{2, 2, 2, 2, 0, 0, 1, 1}, true},
      {{3, 3, 3, 3, 1, 1, 1, 1}, true},  {{3, 3, 2, 2, 1, 1, 2, 2}, false}, {{3, 2, 2, 1, 1, 0, 1, 2}, false},
      {{2, 2, 1, 1, 1, 1, 6, 5}, false},  // windows wholly in the padding: -inf, no gradient
  };
  for (const auto& [k, ceil_mode] : windows) {
    const int64_t oh = pool_output_size(in_shape[1], k.kernel_h, k.stride_h, k.pad_h, k.dilation_h, ceil_mode);
    const int64_t ow = pool_output_size(in_shape[2], k.kernel_w, k.stride_w, k.pad_w, k.dilation_w, ceil_mode);
    ASSERT_GT(oh, 0);
    ASSERT_GT(ow, 0);
    const Shape out_shape{in_shape[0], oh, ow, in_shape[3]};
    const pool_detail::Geom g{in_shape[1], in_shape[2], in_shape[3], oh, ow};
    // Small integers: many ties, so the first-maximum rule is exercised too.
    std::vector<double> xv = rnd(in_shape).template to_vector<double>();
    for (double& v : xv) v = std::round(2 * v);
    Tensor x = Tensor::from_vector(xv, in_shape, DTypeOf<T>::value);
    Tensor dy = rnd(out_shape), dx = Tensor::like(x), out = Tensor::like(dy);
    Tensor ind = Tensor::empty(out_shape, DType::Int64);
    max_pool2d_forward(out, ind, x, k);
    max_pool2d_backward(dx, dy, ind, k);
    const T* xp = x.data<T>();
    const int64_t* ip = ind.data<int64_t>();
    for_each(out_shape, [&](int64_t n, int64_t h, int64_t w, int64_t c, int64_t i) {
      int64_t arg;
      const double v = double(static_cast<T>(pool_detail::max_pool_at(xp, g, k, n, h, w, c, arg)));
      const double ref = double(static_cast<acc>(out.data<T>()[i]));
      EXPECT_TRUE(v == ref || (std::isinf(v) && std::isinf(ref))) << "max_pool_at " << i << ": " << v << " vs " << ref;
      EXPECT_EQ(arg, ip[i]) << "argmax at " << i;
    });
    for_each(in_shape, [&](int64_t n, int64_t h, int64_t w, int64_t c, int64_t i) {
      const acc v = acc(pool_detail::max_pool_grad_at(dy.data<T>(), ip, g, k, n, h, w, c));
      EXPECT_TRUE(near(v, double(static_cast<acc>(dx.data<T>()[i])))) << "max_pool_grad_at " << i << ": " << v;
    });
  }
  // Adaptive average pool and bilinear resize, down and up.
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{3, 2}, {1, 1}, {7, 6}, {9, 13}, {4, 1}}) {
    const Shape out_shape{in_shape[0], oh, ow, in_shape[3]};
    const pool_detail::Geom g{in_shape[1], in_shape[2], in_shape[3], oh, ow};
    Tensor x = rnd(in_shape), dy = rnd(out_shape), dx = Tensor::like(x), out = Tensor::like(dy);
    adaptive_avg_pool2d_forward(out, x);
    adaptive_avg_pool2d_backward(dx, dy);
    for_each(out_shape, [&](int64_t n, int64_t h, int64_t w, int64_t c, int64_t i) {
      EXPECT_TRUE(near((pool_detail::adaptive_at(x.data<T>(), g, n, h, w, c)),
                       double(static_cast<acc>(out.data<T>()[i]))))
          << "adaptive_at " << i;
    });
    for_each(in_shape, [&](int64_t n, int64_t h, int64_t w, int64_t c, int64_t i) {
      EXPECT_TRUE(near((pool_detail::adaptive_grad_at(dy.data<T>(), g, n, h, w, c)),
                       double(static_cast<acc>(dx.data<T>()[i]))))
          << "adaptive_grad_at " << i;
    });
    for (bool ac : {false, true}) {
      const acc sh = pool_detail::linear_scale<acc>(g.H, g.OH, ac), sw = pool_detail::linear_scale<acc>(g.W, g.OW, ac);
      bilinear_forward(out, x, ac);
      bilinear_backward(dx, dy, ac);
      for_each(out_shape, [&](int64_t n, int64_t h, int64_t w, int64_t c, int64_t i) {
        EXPECT_TRUE(near((pool_detail::bilinear_at(x.data<T>(), g, sh, sw, ac, n, h, w, c)),
                         double(static_cast<acc>(out.data<T>()[i]))))
            << "bilinear_at " << i << " ac " << ac;
      });
      for_each(in_shape, [&](int64_t n, int64_t h, int64_t w, int64_t c, int64_t i) {
        EXPECT_TRUE(near((pool_detail::bilinear_grad_at(dy.data<T>(), g, sh, sw, ac, n, h, w, c)),
                         double(static_cast<acc>(dx.data<T>()[i]))))
            << "bilinear_grad_at " << i << " ac " << ac;
      });
    }
  }
}

TEST(Pool, DeviceElementFunctionsMatchCpuKernels) {
  check_element_functions<double>();
  check_element_functions<float>();
  check_element_functions<bf16>();
}

template <class F> void expect_error(F f, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning " << parts[0];
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
  }
}

TEST(Pool, BadInputNamesOpAndShapes) {
  Tensor x3 = Tensor::zeros({2, 5, 7});
  Tensor x = Tensor::zeros({2, 5, 7, 3});
  expect_error([&] { global_avg_pool(x3); }, {"global_avg_pool", "[2, 5, 7]", "NHWC"});
  expect_error([&] { max_pool2d(x3, pool_params(2, 2)); }, {"max_pool2d", "[2, 5, 7]"});
  expect_error([&] { adaptive_avg_pool2d(x3, 2, 2); }, {"adaptive_avg_pool2d", "[2, 5, 7]"});
  expect_error([&] { interpolate_bilinear(x3, 2, 2, false); }, {"interpolate_bilinear", "[2, 5, 7]"});
  expect_error([&] { global_avg_pool(Tensor::zeros({2, 0, 7, 3})); }, {"global_avg_pool", "[2, 0, 7, 3]"});
  expect_error([&] { max_pool2d(Tensor::zeros({2, 5, 7, 3}, DType::Int64), pool_params(2, 2)); },
               {"max_pool2d", "int64"});
  // Padding above half the kernel.
  expect_error([&] { max_pool2d(x, pool_params(3, 2, 2)); }, {"max_pool2d", "padding [2, 2]", "kernel [3, 3]",
                                                              "[2, 5, 7, 3]"});
  expect_error([&] { max_pool2d(x, pool_params(2, 2, -1)); }, {"max_pool2d", "padding"});
  expect_error([&] { max_pool2d(x, pool_params(0, 2)); }, {"max_pool2d", "kernel", "[2, 5, 7, 3]"});
  expect_error([&] { max_pool2d(x, pool_params(2, 0)); }, {"max_pool2d", "stride", "[2, 5, 7, 3]"});
  expect_error([&] { max_pool2d(x, pool_params(2, 2, 0, 0)); }, {"max_pool2d", "dilation", "[2, 5, 7, 3]"});
  // Window larger than the input.
  expect_error([&] { max_pool2d(Tensor::zeros({1, 2, 2, 1}), pool_params(3, 1)); },
               {"max_pool2d", "[1, 2, 2, 1]", "too small"});
  expect_error([&] { adaptive_avg_pool2d(x, 0, 2); }, {"adaptive_avg_pool2d", "[0, 2]", "[2, 5, 7, 3]"});
  expect_error([&] { interpolate_bilinear(x, 4, -1, true); }, {"interpolate_bilinear", "[4, -1]", "[2, 5, 7, 3]"});
  expect_error([&] { interpolate_bilinear(Tensor(), 4, 4, true); }, {"interpolate_bilinear", "undefined"});
}

TEST(Pool, EmptyBatchAndChannels) {
  EXPECT_EQ(global_avg_pool(Tensor::zeros({0, 3, 3, 2})).shape(), (Shape{0, 2}));
  EXPECT_EQ(max_pool2d(Tensor::zeros({2, 4, 4, 0}), pool_params(2, 2)).shape(), (Shape{2, 2, 2, 0}));
  EXPECT_EQ(interpolate_bilinear(Tensor::zeros({0, 4, 4, 3}), 8, 8, false).shape(), (Shape{0, 8, 8, 3}));
}

}  // namespace
}  // namespace unirep
