// conv2d: gradcheck and CUDA-vs-CPU over dense, grouped, dilated and depthwise cases, hand-computed
// values, depthwise vs the generic grouped / dense paths, low-precision CPU paths, and bad inputs.
#include <cmath>

#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

Conv2dParams params(int64_t stride, int64_t pad, int64_t dilation = 1, int64_t groups = 1) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return p;
}

// x [N, H, W, C], weight [K, C / groups, kH, kW], bias [K] when `bias`.
OpCase conv_case(std::string name, Shape x, Shape w, bool bias, Conv2dParams p) {
  OpCase c{name,
           [=](Generator& g) {
             std::vector<Tensor> in{randn64(g, x), randn64(g, w, true, 0.5)};
             if (bias) in.push_back(randn64(g, {w[0]}));
             return in;
           },
           [=](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), p); }};
  // Dense and grouped convs run cuDNN on the GPU, whose algorithms (implicit GEMM tiles, split
  // reductions for dW, possibly Winograd) add the products in another order than the CPU's im2col GEMM,
  // so float32 gets 1e-4. The depthwise kernels sum in the CPU's order (dW aside) and keep 1e-5.
  const bool depthwise = p.groups == x[3] && p.groups == w[0];
  if (!depthwise) c.f32_tol = 1e-4;
  return c;
}

std::vector<OpCase> conv_cases() {
  Conv2dParams odd = params(2, 1);
  odd.stride_w = 1;
  odd.pad_w = 0;
  Conv2dParams dw_odd = params(1, 1, 1, 3);
  dw_odd.pad_w = 2;
  std::vector<OpCase> cases = {
      // dense / grouped: cuDNN on the GPU
      conv_case("dense_3x3_s1_p1_bias", {2, 5, 5, 3}, {4, 3, 3, 3}, true, params(1, 1)),
      conv_case("dense_3x3_s2_p1_stem", {2, 7, 7, 3}, {4, 3, 3, 3}, true, params(2, 1)),
      conv_case("dense_1x1", {2, 5, 6, 4}, {5, 4, 1, 1}, false, params(1, 0)),
      conv_case("dense_1x1_s2_bias", {2, 5, 6, 4}, {3, 4, 1, 1}, true, params(2, 0)),
      conv_case("grouped_g2_3x3", {2, 5, 5, 4}, {6, 2, 3, 3}, true, params(1, 1, 1, 2)),
      conv_case("dilated_dense_3x3_d2", {2, 7, 7, 3}, {4, 3, 3, 3}, false, params(1, 2, 2)),
      conv_case("dense_odd_7x5_s2x1", {2, 7, 5, 3}, {4, 3, 3, 3}, true, odd),
      conv_case("grouped_multiplier2_3x3", {2, 5, 6, 3}, {6, 1, 3, 3}, false, params(1, 1, 1, 3)),
      // depthwise: dedicated kernels
      conv_case("depthwise_3x3_bias", {2, 5, 5, 4}, {4, 1, 3, 3}, true, params(1, 1, 1, 4)),
      conv_case("depthwise_5x5", {2, 6, 6, 3}, {3, 1, 5, 5}, false, params(1, 2, 1, 3)),
      conv_case("depthwise_7x7_d2_p6", {1, 7, 7, 3}, {3, 1, 7, 7}, true, params(1, 6, 2, 3)),
      conv_case("depthwise_3x3_d3_p3", {2, 6, 6, 3}, {3, 1, 3, 3}, false, params(1, 3, 3, 3)),
      conv_case("depthwise_3x3_s2_bias", {2, 7, 7, 4}, {4, 1, 3, 3}, true, params(2, 1, 1, 4)),
      conv_case("depthwise_odd_7x5_k3x5", {2, 7, 5, 3}, {3, 1, 3, 5}, true, dw_odd),
      conv_case("depthwise_4x4_even_p0", {1, 6, 7, 3}, {3, 1, 4, 4}, false, params(1, 0, 1, 3)),
  };
  // GPU comparison only (too big for finite differences).
  std::vector<OpCase> large = {
      conv_case("depthwise_13x13_large", {2, 14, 14, 16}, {16, 1, 13, 13}, true, params(1, 6, 1, 16)),
      conv_case("depthwise_31x31_large", {1, 32, 32, 8}, {8, 1, 31, 31}, true, params(1, 15, 1, 8)),
      conv_case("depthwise_3x3_d5_large", {2, 20, 20, 48}, {48, 1, 3, 3}, false, params(1, 5, 5, 48)),
      // undilated 3x3 / 5x5 depthwise with 4-channel staging and several channel groups
      conv_case("depthwise_3x3_bias_large", {2, 20, 20, 48}, {48, 1, 3, 3}, true, params(1, 1, 1, 48)),
      conv_case("depthwise_5x5_large", {2, 14, 14, 40}, {40, 1, 5, 5}, false, params(1, 2, 1, 40)),
      conv_case("dense_stem_s2_large", {2, 32, 32, 3}, {24, 3, 3, 3}, true, params(2, 1)),
      conv_case("dense_downsample_large", {2, 16, 16, 32}, {64, 32, 3, 3}, true, params(2, 1)),
  };
  for (OpCase& c : large) {
    c.gradcheck = false;
    cases.push_back(c);
  }
  return cases;
}

UNIREP_OP_CASE_TESTS(Conv2d, conv_cases)

TEST(Conv2d, HandComputedValuesAndGradients) {
  // x = [[1 2 3] [4 5 6] [7 8 9]] (one channel), w = [[1 2] [3 4]], b = 0.5
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 3, 3, 1}).requires_grad_();
  Tensor w = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {1, 1, 2, 2}).requires_grad_();
  Tensor b = Tensor::from_vector(std::vector<double>{0.5}, {1}).requires_grad_();
  Tensor y = conv2d(x, w, b, Conv2dParams{});
  EXPECT_EQ(y.shape(), (Shape{1, 2, 2, 1}));
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{37.5, 47.5, 67.5, 77.5}));
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 3, 2, 4, 10, 6, 3, 7, 4}));
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{12, 16, 24, 28}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{4}));
}

TEST(Conv2d, HandComputedStridePaddingDilation) {
  // 1 channel 4x4 ramp, 2x2 all-ones kernel, dilation 2, padding 1, stride 2: output 2x2.
  // Padded input is 6x6; each output sums the 4 taps at (2i + {0, 2}, 2j + {0, 2}) of the padded image.
  std::vector<float> v(16);
  for (int i = 0; i < 16; ++i) v[size_t(i)] = float(i + 1);
  Tensor x = Tensor::from_vector(v, {1, 4, 4, 1});
  Tensor w = Tensor::ones({1, 1, 2, 2});
  Tensor y = conv2d(x, w, Tensor(), params(2, 1, 2));
  // padded (r, c) -> x[r - 1][c - 1]; taps of output (0,0): (0,0) (0,2) (2,0) (2,2) -> 0 + 0 + 0 + x[1][1] = 6
  // (0,1): (0,2) (0,4) (2,2) (2,4) -> x[1][1] + x[1][3] = 6 + 8; (1,0): x[1][1] + x[3][1] = 6 + 14;
  // (1,1): x[1][1] + x[1][3] + x[3][1] + x[3][3] = 6 + 8 + 14 + 16
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{6, 14, 20, 44}));
}

TEST(Conv2d, DepthwiseMatchesGenericGroupedAndDenseOnCpu) {
  Generator gen(3);
  const int64_t C = 5;
  Conv2dParams p = params(2, 3, 2, C);
  Tensor x = randn64(gen, {2, 9, 8, C});
  Tensor w = randn64(gen, {C, 1, 5, 5});
  Tensor b = randn64(gen, {C});
  Tensor y = conv2d(x, w, b, p);  // depthwise kernels
  Tensor u = Tensor::randn(y.shape(), gen, DType::Float64);
  sum(mul(y, u)).backward();

  // Generic grouped path: channel multiplier 2, even output channels carry the depthwise weight.
  Tensor x2 = x.detach().requires_grad_();
  Tensor w2 = Tensor::randn({2 * C, 1, 5, 5}, gen, DType::Float64);
  Tensor b2 = Tensor::randn({2 * C}, gen, DType::Float64);
  w2.slice(0, 0, 2 * C, 2).copy_(w.detach());
  b2.slice(0, 0, 2 * C, 2).copy_(b.detach());
  w2.requires_grad_();
  b2.requires_grad_();
  Tensor y2 = conv2d(x2, w2, b2, p).slice(3, 0, 2 * C, 2);
  EXPECT_LT(testing::relative_error(y2, y), 1e-12);
  sum(mul(y2, u)).backward();
  EXPECT_LT(testing::relative_error(x2.grad(), x.grad()), 1e-12);
  EXPECT_LT(testing::relative_error(w2.grad().slice(0, 0, 2 * C, 2), w.grad()), 1e-12);
  EXPECT_LT(testing::relative_error(b2.grad().slice(0, 0, 2 * C, 2), b.grad()), 1e-12);

  // Dense path (groups 1) with a block-diagonal weight.
  Tensor w3 = Tensor::zeros({C, C, 5, 5}, DType::Float64);
  for (int64_t c = 0; c < C; ++c) w3.select(0, c).select(0, c).copy_(w.detach().select(0, c).select(0, 0));
  Conv2dParams pd = p;
  pd.groups = 1;
  Tensor y3 = conv2d(x.detach(), w3, b.detach(), pd);
  EXPECT_LT(testing::relative_error(y3, y), 1e-12);
}

TEST(Conv2d, DepthwiseOnMapsSmallerThanTheKernel) {
  // The late stages of UniRepLKNet at small inputs: kernels larger than the map, most taps in the
  // padding (the depthwise kernels skip them). Against the dense im2col path with a block-diagonal
  // weight: output, input gradient and weight gradient.
  struct Case {
    int64_t h, w, k, stride, pad, dilation;
  };
  const std::vector<Case> cases = {{4, 4, 13, 1, 6, 1}, {2, 2, 13, 1, 6, 1}, {1, 1, 13, 1, 6, 1}, {2, 3, 5, 1, 4, 2},
                                   {1, 2, 3, 1, 3, 3},  {3, 3, 7, 2, 5, 1}, {2, 5, 3, 2, 6, 3}};
  Generator gen(13);
  const int64_t C = 3;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.h << "x" << c.w << " k " << c.k << " s " << c.stride << " p " << c.pad
                                      << " d " << c.dilation);
    Conv2dParams p = params(c.stride, c.pad, c.dilation, C);
    Tensor x = randn64(gen, {2, c.h, c.w, C});
    Tensor w = randn64(gen, {C, 1, c.k, c.k});
    Tensor y = conv2d(x, w, Tensor(), p);
    Tensor u = Tensor::randn(y.shape(), gen, DType::Float64);
    sum(mul(y, u)).backward();

    Tensor x3 = x.detach().requires_grad_();
    Tensor w3 = Tensor::zeros({C, C, c.k, c.k}, DType::Float64);
    for (int64_t ch = 0; ch < C; ++ch) w3.select(0, ch).select(0, ch).copy_(w.detach().select(0, ch).select(0, 0));
    w3.requires_grad_();
    Conv2dParams pd = p;
    pd.groups = 1;
    Tensor y3 = conv2d(x3, w3, Tensor(), pd);
    ASSERT_EQ(y3.shape(), y.shape());
    EXPECT_LT(testing::relative_error(y3, y), 1e-12);
    sum(mul(y3, u)).backward();
    EXPECT_LT(testing::relative_error(x3.grad(), x.grad()), 1e-12);
    for (int64_t ch = 0; ch < C; ++ch)
      EXPECT_LT(testing::relative_error(w3.grad().select(0, ch).select(0, ch), w.grad().select(0, ch).select(0, 0)),
                1e-12);
  }
}

TEST(Conv2d, CpuLowPrecisionMatchesFloat64) {
  Generator gen(5);
  struct Case {
    Shape x, w;
    Conv2dParams p;
  };
  for (const Case& c : {Case{{2, 9, 7, 8}, {8, 1, 7, 7}, params(1, 3, 1, 8)},
                        Case{{2, 9, 7, 6}, {4, 3, 3, 3}, params(2, 1, 1, 2)}}) {
    Tensor x = randn64(gen, c.x), w = randn64(gen, c.w), b = randn64(gen, {c.w[0]});
    Tensor y = conv2d(x, w, b, c.p);
    Tensor u = Tensor::randn(y.shape(), gen, DType::Float64);
    sum(mul(y, u)).backward();
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float16}) {
      const double tol = dt == DType::Float32 ? 1e-6 : dt == DType::BFloat16 ? 2e-2 : 4e-3;
      Tensor xl = x.detach().to(dt).requires_grad_(), wl = w.detach().to(dt).requires_grad_();
      Tensor bl = b.detach().to(dt).requires_grad_();
      Tensor yl = conv2d(xl, wl, bl, c.p);
      ASSERT_EQ(yl.dtype(), dt);
      sum(mul(yl, u.to(dt))).backward();
      EXPECT_LT(testing::relative_error(yl, y), tol) << dtype_name(dt);
      EXPECT_LT(testing::relative_error(xl.grad(), x.grad()), tol) << dtype_name(dt);
      EXPECT_LT(testing::relative_error(wl.grad(), w.grad()), tol) << dtype_name(dt);
      EXPECT_LT(testing::relative_error(bl.grad(), b.grad()), tol) << dtype_name(dt);
    }
  }
}

TEST(Conv2d, GradientsOnlyWhereRequired) {
  Generator gen(9);
  Tensor x = randn64(gen, {1, 5, 5, 2}, false);
  Tensor w = randn64(gen, {2, 2, 3, 3});
  Tensor b = randn64(gen, {2}, false);
  sum(conv2d(x, w, b, params(1, 1))).backward();
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().shape(), (Shape{2, 2, 3, 3}));
}

// Expects conv2d to throw with a message containing every fragment.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning " << fragments[0];
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << msg;
  }
}

TEST(Conv2d, BadInputs) {
  Tensor x = Tensor::zeros({2, 5, 5, 4});
  Tensor w = Tensor::zeros({6, 4, 3, 3});
  expect_error([&] { conv2d(Tensor::zeros({5, 5, 4}), w, Tensor(), {}); }, {"conv2d", "[5, 5, 4]"});
  expect_error([&] { conv2d(x, Tensor::zeros({6, 4, 3}), Tensor(), {}); }, {"conv2d", "[6, 4, 3]"});
  expect_error([&] { conv2d(x, Tensor::zeros({6, 3, 3, 3}), Tensor(), {}); },
               {"conv2d", "[6, 3, 3, 3]", "[2, 5, 5, 4]"});
  expect_error([&] { conv2d(x, Tensor::zeros({6, 1, 3, 3}), Tensor(), params(1, 1, 1, 3)); },
               {"conv2d", "C_in = 4", "[2, 5, 5, 4]", "groups = 3"});
  expect_error([&] { conv2d(x, Tensor::zeros({5, 2, 3, 3}), Tensor(), params(1, 1, 1, 2)); },
               {"conv2d", "C_out = 5", "[5, 2, 3, 3]", "groups = 2"});
  expect_error([&] { conv2d(x, w, Tensor::zeros({4}), {}); }, {"conv2d", "bias", "[4]", "[6]"});
  expect_error([&] { conv2d(x, Tensor::zeros({6, 4, 7, 7}), Tensor(), {}); },
               {"conv2d", "output size", "[2, 5, 5, 4]", "[6, 4, 7, 7]"});
  expect_error([&] { conv2d(x, w, Tensor(), params(1, 1, 4)); }, {"conv2d", "output size", "dilation [4, 4]"});
  expect_error([&] { conv2d(x, w, Tensor(), params(0, 1)); }, {"conv2d", "stride [0, 0]"});
  expect_error([&] { conv2d(x, Tensor::zeros({6, 4, 3, 3}, DType::Float64), Tensor(), {}); },
               {"conv2d", "float32", "float64"});
  expect_error([&] { conv2d(x, w, Tensor::zeros({6}, DType::Float64), {}); }, {"conv2d", "float64"});
  expect_error([&] { conv2d(Tensor(), w, Tensor(), {}); }, {"conv2d", "undefined"});
}

}  // namespace
}  // namespace unirep
