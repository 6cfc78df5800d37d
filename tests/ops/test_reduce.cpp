// Reductions: gradcheck, CUDA-vs-CPU and values.
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
