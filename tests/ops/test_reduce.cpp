// Reductions: gradcheck, CUDA-vs-CPU and values.
#include <algorithm>
#include <cmath>

#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

std::vector<OpCase> reduce_cases() {
  auto c = [](std::string name, Shape shape, std::function<Tensor(const Tensor&)> f, double f32_tol = 1e-5) {
    OpCase oc{name, [=](Generator& g) { return std::vector<Tensor>{randn64(g, shape)}; },
              [f](const std::vector<Tensor>& x) { return f(x[0]); }};
    oc.f32_tol = f32_tol;
    return oc;
  };
  std::vector<OpCase> cases = {
      c("sum_all", {3, 4, 5}, [](const Tensor& x) { return sum(x); }),
      c("sum_last", {3, 4, 5}, [](const Tensor& x) { return sum(x, {-1}); }),
      c("sum_nhw_keepdim", {2, 3, 5, 4}, [](const Tensor& x) { return sum(x, {0, 1, 2}, true); }),
      c("sum_middle", {3, 7, 2}, [](const Tensor& x) { return sum(x, {1}); }),
      c("mean_hw", {2, 5, 3, 4}, [](const Tensor& x) { return mean(x, {1, 2}); }),
      c("mean_all", {13}, [](const Tensor& x) { return mean(x); }),
      c("amax_last", {4, 6}, [](const Tensor& x) { return amax(x, {1}); }),
      c("amax_first_keepdim", {5, 3, 2}, [](const Tensor& x) { return amax(x, {0}, true); }),
      c("norm_hw", {2, 4, 3, 5}, [](const Tensor& x) { return norm(x, {1, 2}); }),
      c("norm_all", {17}, [](const Tensor& x) { return norm(x); }),
      c("sum_to", {2, 3, 4}, [](const Tensor& x) { return sum_to(x, {3, 1}); }),
      c("sum_large_rows", {3, 40000}, [](const Tensor& x) { return sum(x, {1}); }),
  };
  cases.push_back(c("sum_nhw_large", {32, 28, 28, 40}, [](const Tensor& x) { return sum(x, {0, 1, 2}); }));
  cases.push_back(c("amax_leading_large", {300, 70}, [](const Tensor& x) { return amax(x, {0}); }));
  for (size_t i = cases.size() - 3; i < cases.size(); ++i) cases[i].gradcheck = false;
  return cases;
}

UNIREP_OP_CASE_TESTS(Reduce, reduce_cases)

TEST(Reduce, Values) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, -2, 3, 4, 5, -6}, {2, 3});
  EXPECT_EQ(sum(x, {1}).to_vector<float>(), (std::vector<float>{2, 3}));
  EXPECT_EQ(sum(x, {0}).to_vector<float>(), (std::vector<float>{5, 3, -3}));
  EXPECT_EQ(amax(x, {1}).to_vector<float>(), (std::vector<float>{3, 5}));
  EXPECT_FLOAT_EQ(mean(x).item(), 5.0f / 6.0f);
  EXPECT_FLOAT_EQ(norm(x, {1}).to_vector<float>()[0], std::sqrt(14.0f));
  EXPECT_EQ(sum(x, {0, 1}, true).shape(), (Shape{1, 1}));
}

TEST(Reduce, ColumnAndRowPathsAgree) {
  // Leading reduced dims take the column kernel; the same sums through the transposed (row) path.
  Generator gen(3);
  Tensor x = Tensor::randn({16, 9, 11, 24}, gen, DType::Float64);
  std::vector<double> cols = sum(x, {0, 1, 2}).to_vector<double>();
  std::vector<double> rows = sum(x.permute({3, 0, 1, 2}).contiguous(), {1, 2, 3}).to_vector<double>();
  ASSERT_EQ(cols.size(), rows.size());
  for (size_t i = 0; i < cols.size(); ++i) EXPECT_NEAR(cols[i], rows[i], 1e-10);
  std::vector<double> mx = amax(x, {0, 1}).to_vector<double>();
  std::vector<double> mx_rows = amax(x.permute({2, 3, 0, 1}).contiguous(), {2, 3}).to_vector<double>();
  EXPECT_EQ(mx, mx_rows);
}

TEST(Reduce, MiddleBlockMatchesLoop) {
  // Reduced dims between kept ones (a sum over H, W of NHWC maps) take the batched column kernel:
  // more slices than threads (one thread per slice) and fewer (each slice split over the threads).
  Generator gen(9);
  for (Shape shape : {Shape{9, 5, 7, 13}, Shape{1, 60, 70, 24}, Shape{3, 1, 1, 50}}) {
    Tensor x = Tensor::randn(shape, gen, DType::Float64);
    const int64_t n = shape[0], hw = shape[1] * shape[2], c = shape[3];
    std::vector<double> xv = x.to_vector<double>();
    std::vector<double> s = sum(x, {1, 2}, true).to_vector<double>(), mx = amax(x, {1, 2}).to_vector<double>();
    std::vector<double> nr = norm(x, {1, 2}, true).to_vector<double>();
    ASSERT_EQ(int64_t(s.size()), n * c);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < c; ++k) {
        double ref = 0, ref_max = -INFINITY, ref_sq = 0;
        for (int64_t p = 0; p < hw; ++p) {
          const double v = xv[size_t((i * hw + p) * c + k)];
          ref += v;
          ref_max = std::max(ref_max, v);
          ref_sq += v * v;
        }
        EXPECT_NEAR(s[size_t(i * c + k)], ref, 1e-12) << shape_str(shape);
        EXPECT_EQ(mx[size_t(i * c + k)], ref_max) << shape_str(shape);
        EXPECT_NEAR(nr[size_t(i * c + k)], std::sqrt(ref_sq), 1e-12) << shape_str(shape);
      }
  }
  // sum_to a per-image channel vector, as in the backward of x * gate[N, 1, 1, C].
  Tensor g = Tensor::randn({4, 3, 3, 6}, gen, DType::Float64);
  std::vector<double> via_sum_to = sum_to(g, {4, 1, 1, 6}).to_vector<double>();
  std::vector<double> via_rows = sum(g.permute({0, 3, 1, 2}).contiguous(), {2, 3}).to_vector<double>();
  ASSERT_EQ(via_sum_to.size(), via_rows.size());
  for (size_t i = 0; i < via_rows.size(); ++i) EXPECT_NEAR(via_sum_to[i], via_rows[i], 1e-12);
}

TEST(Reduce, AmaxSplitsGradientAmongTies) {
  Tensor x = Tensor::from_vector(std::vector<double>{2, 2, 1}, {3}).requires_grad_();
  amax(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0.5, 0.5, 0}));
}

TEST(Reduce, NormGradientAtZeroIsZero) {
  Tensor x = Tensor::zeros({4}, DType::Float64).requires_grad_();
  norm(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>(4, 0.0)));
}

TEST(Reduce, BadDims) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_THROW(sum(x, {2}), Error);
  EXPECT_THROW(sum(x, {1, -1}), Error);
  EXPECT_THROW(amax(Tensor::zeros({2, 0}), {1}), Error);
}

}  // namespace
}  // namespace unirep
