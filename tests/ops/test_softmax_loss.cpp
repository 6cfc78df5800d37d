// softmax, log_softmax, cross_entropy and cross_entropy_soft: gradcheck, CUDA-vs-CPU, values and
// bad inputs.
#include <cmath>

#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::rand64;
using testing::randn64;

// Class indices in [0, C) drawn from gen; every `ignore_every`-th row (when > 0) gets ignore_index.
Tensor make_targets(Generator& gen, int64_t n, int64_t classes, int64_t ignore_every = 0, int64_t ignore_index = -100) {
  std::vector<double> u = Tensor::rand({n}, gen, 0.0, double(classes), DType::Float64).to_vector<double>();
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    t[size_t(i)] = std::min<int64_t>(classes - 1, int64_t(std::floor(u[size_t(i)])));
    if (ignore_every > 0 && i % ignore_every == 1) t[size_t(i)] = ignore_index;
  }
  return Tensor::from_vector(t, {n}, DType::Int64);
}

// Non-negative rows summing to 1 (float64), as mixup/cutmix produce.
Tensor make_soft_targets(Generator& gen, int64_t n, int64_t classes, bool requires_grad) {
  std::vector<double> v = Tensor::rand({n, classes}, gen, 0.0, 1.0, DType::Float64).to_vector<double>();
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t c = 0; c < classes; ++c) s += v[size_t(i * classes + c)];
    for (int64_t c = 0; c < classes; ++c) v[size_t(i * classes + c)] /= s;
  }
  Tensor t = Tensor::from_vector(v, {n, classes}, DType::Float64);
  if (requires_grad) t.requires_grad_();
  return t;
}

std::vector<OpCase> softmax_loss_cases() {
  auto sm = [](std::string name, Shape shape, int64_t dim, bool log, double scale = 1.0) {
    return OpCase{name, [=](Generator& g) { return std::vector<Tensor>{randn64(g, shape, true, scale)}; },
                  [=](const std::vector<Tensor>& x) { return log ? log_softmax(x[0], dim) : softmax(x[0], dim); }};
  };
  auto ce = [](std::string name, int64_t n, int64_t classes, Reduction r, double smoothing, int64_t ignore_every,
               double scale = 1.0) {
    return OpCase{name,
                  [=](Generator& g) {
                    Tensor logits = randn64(g, {n, classes}, true, scale);
                    return std::vector<Tensor>{logits, make_targets(g, n, classes, ignore_every)};
                  },
                  [=](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], -100, smoothing, r); }};
  };
  auto soft = [](std::string name, int64_t n, int64_t classes, Reduction r, bool target_grad) {
    return OpCase{name,
                  [=](Generator& g) {
                    Tensor logits = randn64(g, {n, classes});
                    return std::vector<Tensor>{logits, make_soft_targets(g, n, classes, target_grad)};
                  },
                  [=](const std::vector<Tensor>& x) { return cross_entropy_soft(x[0], x[1], r); }};
  };
  std::vector<OpCase> cases = {
      sm("softmax_last", {5, 7}, -1, false),
      sm("log_softmax_last", {3, 11}, 1, true),
      sm("softmax_dim1_3d", {3, 5, 4}, 1, false),
      sm("log_softmax_dim1_4d", {2, 3, 4, 5}, 1, true),
      sm("softmax_dim0", {4, 3, 2}, 0, false),
      sm("softmax_1d_large_values", {9}, 0, false, 30.0),  // max-subtraction keeps exp finite
      sm("log_softmax_single_class", {4, 1}, -1, true),
      ce("ce_mean", 6, 5, Reduction::Mean, 0.0, 0),
      ce("ce_sum", 5, 7, Reduction::Sum, 0.0, 0),
      ce("ce_none", 4, 6, Reduction::None, 0.0, 0),
      ce("ce_smooth_mean", 6, 5, Reduction::Mean, 0.1, 0),
      ce("ce_smooth_none", 3, 9, Reduction::None, 0.1, 0),
      ce("ce_ignore_mean", 7, 4, Reduction::Mean, 0.0, 3),
      ce("ce_ignore_smooth_sum", 7, 5, Reduction::Sum, 0.1, 2),
      ce("ce_ignore_none", 5, 3, Reduction::None, 0.0, 2),
      soft("soft_mean", 4, 6, Reduction::Mean, false),
      soft("soft_sum_target_grad", 3, 5, Reduction::Sum, true),
      soft("soft_none_target_grad", 4, 3, Reduction::None, true),
  };
  // Sized for the GPU comparison only (the row kernels' warp-per-row and block-per-row paths).
  std::vector<OpCase> large = {
      sm("softmax_rows_256x1000", {256, 1000}, -1, false),
      sm("log_softmax_rows_64x3000", {64, 3000}, -1, true),
      sm("softmax_dim1_8x100x7x9", {8, 100, 7, 9}, 1, false),
      sm("log_softmax_dim1_4x2000x33", {4, 2000, 33}, 1, true),
      ce("ce_mean_256x1000", 256, 1000, Reduction::Mean, 0.0, 0, 3.0),
      ce("ce_smooth_ignore_sum_256x1000", 256, 1000, Reduction::Sum, 0.1, 5, 3.0),
      ce("ce_none_33x5000", 33, 5000, Reduction::None, 0.1, 4, 3.0),
      soft("soft_mean_256x1000", 256, 1000, Reduction::Mean, true),
      soft("soft_none_16x4097", 16, 4097, Reduction::None, false),
  };
  for (OpCase& c : large) {
    c.gradcheck = false;
    cases.push_back(c);
  }
  return cases;
}

UNIREP_OP_CASE_TESTS(SoftmaxLoss, softmax_loss_cases)

void expect_near(const std::vector<double>& actual, const std::vector<double>& expected, double tol) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) EXPECT_NEAR(actual[i], expected[i], tol) << "element " << i;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

Tensor logits123() { return Tensor::from_vector(std::vector<double>{1, 2, 3}, {1, 3}); }
Tensor targets(std::vector<int64_t> v) { return Tensor::from_vector(v, {int64_t(v.size())}, DType::Int64); }

TEST(SoftmaxLoss, SoftmaxValues) {
  Tensor x = logits123();
  // exp(k) / (e + e^2 + e^3) and k - log(e + e^2 + e^3) = k - 3.40760596444438.
  expect_near(softmax(x, 1).to_vector<double>(), {0.09003057317038046, 0.24472847105479767, 0.6652409557748219}, 1e-14);
  expect_near(log_softmax(x, -1).to_vector<double>(), {-2.40760596444438, -1.40760596444438, -0.40760596444438},
              1e-13);
  // Huge logits: a naive exp would overflow.
  Tensor big = Tensor::from_vector(std::vector<float>{1000, 1001, 1002}, {3});
  std::vector<float> p = softmax(big, 0).to_vector<float>();
  EXPECT_NEAR(p[2], 0.66524096f, 1e-6f);
  EXPECT_NEAR(log_softmax(big, 0).to_vector<float>()[0], -2.4076059f, 1e-5f);
}

TEST(SoftmaxLoss, SoftmaxRowsSumToOneOnEveryDim) {
  Generator gen(3);
  Tensor x = Tensor::randn({3, 4, 5, 6}, gen, DType::Float64);
  for (int64_t d = 0; d < 4; ++d) {
    Tensor s = sum(softmax(x, d), {d});
    for (double v : s.to_vector<double>()) EXPECT_NEAR(v, 1.0, 1e-12) << "dim " << d;
    // log_softmax == log(softmax) on every dim (tiled and row paths alike).
    expect_near(log_softmax(x, d).to_vector<double>(), log(softmax(x, d)).to_vector<double>(), 1e-12);
  }
}

// Sizes above the parallel grain: the multi-threaded row and tile paths agree with each other and
// the fused loss agrees with -log_softmax picked at the target.
TEST(SoftmaxLoss, LargeCpuPathsAgree) {
  Generator gen(11);
  Tensor x = Tensor::randn({4, 2000, 33}, gen, DType::Float32);
  for (bool lg : {false, true}) {
    Tensor tiled = lg ? log_softmax(x, 1) : softmax(x, 1);
    Tensor x_rows = x.transpose(1, 2).contiguous();
    Tensor rows = (lg ? log_softmax(x_rows, -1) : softmax(x_rows, -1)).transpose(1, 2).contiguous();
    EXPECT_LT(testing::relative_error(tiled, rows), 1e-6) << (lg ? "log_softmax" : "softmax");
  }
  const int64_t n = 256, classes = 1000;
  Tensor logits = Tensor::randn({n, classes}, gen, DType::Float32);
  Tensor t = make_targets(gen, n, classes, 7);
  std::vector<float> lp = log_softmax(logits, 1).to_vector<float>();
  std::vector<int64_t> tv = t.to_vector<int64_t>();
  std::vector<double> expected(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t ti = tv[size_t(i)];
    expected[size_t(i)] = ti == -100 ? 0.0 : -lp[size_t(i * classes + ti)];
  }
  expect_near(cross_entropy(logits, t, -100, 0, Reduction::None).to_vector<double>(), expected, 1e-5);
}

TEST(SoftmaxLoss, HalfPrecisionDtypesMatchFloat64) {
  Generator gen(5);
  Tensor x = Tensor::randn({6, 7, 3}, gen, DType::Float64);
  for (DType dt : {DType::Float32, DType::BFloat16, DType::Float16}) {
    Tensor xd = x.to(dt);
    Tensor ref = softmax(xd.to(DType::Float64), 1);
    Tensor y = softmax(xd, 1);
    EXPECT_EQ(y.dtype(), dt);
    EXPECT_LT(testing::relative_error(y, ref), dt == DType::Float32 ? 1e-6 : 1e-2) << dtype_name(dt);
    Tensor t = make_targets(gen, 6, 7);
    Tensor x2 = xd.select(2, 0);
    Tensor ce_ref = cross_entropy(x2.to(DType::Float64), t, -100, 0.1);
    Tensor ce = cross_entropy(x2, t, -100, 0.1);
    EXPECT_EQ(ce.dtype(), dt);
    EXPECT_NEAR(ce.item(), ce_ref.item(), dt == DType::Float32 ? 1e-6 : 1e-2) << dtype_name(dt);
  }
}

TEST(SoftmaxLoss, CrossEntropyValues) {
  // -log_softmax([1, 2, 3])[2] = log(e + e^2 + e^3) - 3.
  EXPECT_NEAR(cross_entropy(logits123(), targets({2})).item(), 0.40760596444438, 1e-13);
  // Label smoothing 0.1: -(0.9) logp_2 - (0.1 / 3)(logp_0 + logp_1 + logp_2)
  //   = 0.9 * 0.40760596444438 + (0.1 / 3) * (2.40760596444438 + 1.40760596444438 + 0.40760596444438)
  //   = 0.36684536799994 + 0.14076059644444 = 0.50760596444438.
  EXPECT_NEAR(cross_entropy(logits123(), targets({2}), -100, 0.1).item(), 0.50760596444438, 1e-13);
  // Two rows: mean, sum and none.
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor t = targets({0, 1});
  const double l0 = 2.40760596444438, l1 = std::log(3.0);
  expect_near(cross_entropy(x, t, -100, 0, Reduction::None).to_vector<double>(), {l0, l1}, 1e-13);
  EXPECT_NEAR(cross_entropy(x, t, -100, 0, Reduction::Sum).item(), l0 + l1, 1e-13);
  EXPECT_NEAR(cross_entropy(x, t).item(), (l0 + l1) / 2, 1e-13);
  EXPECT_EQ(cross_entropy(x, t).shape(), Shape{});
  EXPECT_EQ(cross_entropy(x, t, -100, 0, Reduction::None).shape(), (Shape{2}));
  // int32 targets work too.
  EXPECT_NEAR(cross_entropy(x, Tensor::from_vector(std::vector<int32_t>{0, 1}, {2}, DType::Int32)).item(),
              (l0 + l1) / 2, 1e-13);
}

TEST(SoftmaxLoss, CrossEntropyGradientIsSoftmaxMinusTarget) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 0, 0, 0}, {2, 3}).requires_grad_();
  cross_entropy(x, targets({2, 0})).backward();
  const double p0 = 0.09003057317038046, p1 = 0.24472847105479767, p2 = 0.6652409557748219, u = 1.0 / 3;
  expect_near(x.grad().to_vector<double>(), {p0 / 2, p1 / 2, (p2 - 1) / 2, (u - 1) / 2, u / 2, u / 2}, 1e-14);
  // With smoothing 0.1 the target distribution is 0.9 one_hot + 0.1 / 3.
  Tensor y = logits123().requires_grad_();
  cross_entropy(y, targets({1}), -100, 0.1, Reduction::Sum).backward();
  const double e = 0.1 / 3;
  expect_near(y.grad().to_vector<double>(), {p0 - e, p1 - 0.9 - e, p2 - e}, 1e-14);
}

TEST(SoftmaxLoss, IgnoreIndex) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 5, -1, 2, 0, 0, 0}, {3, 3}).requires_grad_();
  Tensor t = targets({2, -100, 1});
  const double l0 = 0.40760596444438, l2 = std::log(3.0);
  expect_near(cross_entropy(x, t, -100, 0, Reduction::None).to_vector<double>(), {l0, 0.0, l2}, 1e-13);
  Tensor m = cross_entropy(x, t);
  EXPECT_NEAR(m.item(), (l0 + l2) / 2, 1e-13);  // divided by the 2 kept rows, not 3
  m.backward();
  std::vector<double> g = x.grad().to_vector<double>();
  for (int c = 3; c < 6; ++c) EXPECT_EQ(g[size_t(c)], 0.0) << "ignored row got gradient at " << c;
  EXPECT_NEAR(g[8], (1.0 / 3) / 2, 1e-14);
  // A custom ignore_index; smoothing does not touch ignored rows either.
  Tensor t2 = targets({7, 7, 1});
  EXPECT_NEAR(cross_entropy(x.detach(), t2, 7, 0.1).item(), std::log(3.0), 1e-13);
  // Every row ignored: the mean is NaN (0 / 0, as PyTorch), the sum 0, the gradient 0.
  Tensor all = targets({-100, -100, -100});
  Tensor z = x.detach().requires_grad_();
  Tensor mean_all = cross_entropy(z, all);
  EXPECT_TRUE(std::isnan(mean_all.item()));
  mean_all.backward();
  for (double v : z.grad().to_vector<double>()) EXPECT_EQ(v, 0.0);
  EXPECT_EQ(cross_entropy(x.detach(), all, -100, 0, Reduction::Sum).item(), 0.0);
}

TEST(SoftmaxLoss, SoftTargets) {
  // A one-hot soft target gives the hard loss; a smoothed one the smoothed loss.
  Tensor oh = Tensor::from_vector(std::vector<double>{0, 0, 1}, {1, 3});
  EXPECT_NEAR(cross_entropy_soft(logits123(), oh).item(), 0.40760596444438, 1e-13);
  const double e = 0.1 / 3;
  Tensor smooth = Tensor::from_vector(std::vector<double>{e, e, 0.9 + e}, {1, 3});
  EXPECT_NEAR(cross_entropy_soft(logits123(), smooth).item(), 0.50760596444438, 1e-13);
  // Gradients: softmax * sum(q) - q for the logits, -log_softmax for the target.
  Tensor x = logits123().requires_grad_();
  Tensor q = Tensor::from_vector(std::vector<double>{0.5, 0.5, 0}, {1, 3}).requires_grad_();
  cross_entropy_soft(x, q, Reduction::Sum).backward();
  expect_near(x.grad().to_vector<double>(), {0.09003057317038046 - 0.5, 0.24472847105479767 - 0.5, 0.6652409557748219},
              1e-14);
  expect_near(q.grad().to_vector<double>(), {2.40760596444438, 1.40760596444438, 0.40760596444438}, 1e-13);
  // Mean divides by N.
  Tensor x2 = Tensor::from_vector(std::vector<double>{1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor q2 = Tensor::from_vector(std::vector<double>{0, 0, 1, 1, 0, 0}, {2, 3});
  EXPECT_NEAR(cross_entropy_soft(x2, q2).item(), (0.40760596444438 + std::log(3.0)) / 2, 1e-13);
  expect_near(cross_entropy_soft(x2, q2, Reduction::None).to_vector<double>(), {0.40760596444438, std::log(3.0)},
              1e-13);
}

TEST(SoftmaxLoss, BadTargetsNameRowAndValue) {
  Tensor x = Tensor::zeros({4, 5});
  std::string msg = error_of([&] { cross_entropy(x, targets({0, 1, 5, 2})); });
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("target[2] = 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[0, 5)"), std::string::npos) << msg;
  msg = error_of([&] { cross_entropy(x, targets({0, -1, 0, 0})); });
  EXPECT_NE(msg.find("target[1] = -1"), std::string::npos) << msg;
  // -1 is fine when it is the ignore_index.
  EXPECT_NO_THROW(cross_entropy(x, targets({0, -1, 0, 0}), -1));
}

// CUDA targets are not read on the host (that would synchronise every training step): an
// out-of-range row's loss is NaN, so the mean is NaN, and its gradient row is NaN; the other rows'
// gradients, the ignored rows and the kept-row count of the mean are unaffected.
TEST(SoftmaxLoss, CudaOutOfRangeTargetsGiveNaNRows) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Device gpu = Device::cuda(0);
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 5, -1, 2, 0, 0, 0, 1, 1, 1}, {4, 3});
  Tensor t = targets({2, 7, -100, 1}).to(gpu);
  std::vector<float> rows = cross_entropy(x.to(gpu), t, -100, 0, Reduction::None).to_vector<float>();
  EXPECT_NEAR(rows[0], 0.40760596444438, 1e-6);
  EXPECT_TRUE(std::isnan(rows[1]));
  EXPECT_EQ(rows[2], 0.0f);
  EXPECT_NEAR(rows[3], std::log(3.0), 1e-6);
  Tensor xg = x.to(gpu).requires_grad_();
  Tensor mean = cross_entropy(xg, t);
  EXPECT_TRUE(std::isnan(mean.item()));
  mean.backward();
  std::vector<float> g = xg.grad().to_vector<float>();
  for (int c = 3; c < 6; ++c) EXPECT_TRUE(std::isnan(g[size_t(c)])) << c;
  for (int c = 6; c < 9; ++c) EXPECT_EQ(g[size_t(c)], 0.0f) << c;
  EXPECT_NEAR(g[10], (1.0 / 3 - 1.0) / 3, 1e-6);  // divided by the 3 kept rows
  // Valid targets with an ignored row: the mean over the kept rows, as on the CPU.
  Tensor ok = targets({2, 0, -100, 1});
  EXPECT_NEAR(cross_entropy(x.to(gpu), ok.to(gpu)).item(), cross_entropy(x, ok).item(), 1e-6);
}

TEST(SoftmaxLoss, BadInputsNameOpAndShapes) {
  Tensor x = Tensor::zeros({4, 5});
  std::string msg = error_of([&] { cross_entropy(x, targets({0, 1, 2})); });
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  msg = error_of([&] { cross_entropy(Tensor::zeros({20}), targets({0})); });
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[20]"), std::string::npos) << msg;
  msg = error_of([&] { cross_entropy(x, Tensor::zeros({4})); });
  EXPECT_NE(msg.find("int64"), std::string::npos) << msg;
  EXPECT_NE(msg.find("float32[4]"), std::string::npos) << msg;
  msg = error_of([&] { cross_entropy(x, targets({0, 0, 0, 0}), -100, 1.5); });
  EXPECT_NE(msg.find("label_smoothing"), std::string::npos) << msg;
  msg = error_of([&] { cross_entropy_soft(x, Tensor::zeros({4, 6})); });
  EXPECT_NE(msg.find("cross_entropy_soft"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 6]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  EXPECT_THROW(cross_entropy_soft(x, Tensor::zeros({4, 5}, DType::Float64)), Error);
  msg = error_of([&] { softmax(x, 2); });
  EXPECT_NE(msg.find("softmax"), std::string::npos) << msg;
  EXPECT_THROW(log_softmax(Tensor::zeros({3}, DType::Int64), 0), Error);
}

}  // namespace
}  // namespace unirep
