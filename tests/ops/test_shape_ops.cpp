// Joins, splits, padding and indexing: gradcheck, CUDA-vs-CPU, values and bad input.
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

// Deterministic, irregular index values in [0, range) with repeats.
Tensor index_tensor(const Shape& shape, int64_t range, DType dtype = DType::Int64) {
  std::vector<int64_t> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t((i * 37 + 11) ^ (i >> 2)) % range;
  return Tensor::from_vector(v, shape).to(dtype);
}

Tensor ivec(std::vector<int64_t> v) {
  Shape s{int64_t(v.size())};
  return Tensor::from_vector(v, s);
}

std::vector<OpCase> shape_cases() {
  auto inputs = [](std::vector<Shape> shapes) {
    return [shapes](Generator& g) {
      std::vector<Tensor> xs;
      for (const Shape& s : shapes) xs.push_back(randn64(g, s));
      return xs;
    };
  };
  auto with_index = [](Shape shape, Tensor index) {
    return [shape, index](Generator& g) { return std::vector<Tensor>{randn64(g, shape), index}; };
  };
  std::vector<OpCase> cases = {
      {"cat_dim0_three", inputs({{2, 3, 3}, {1, 3, 3}, {3, 3, 3}}),
       [](const std::vector<Tensor>& x) { return cat(x, 0); }},
      {"cat_dim1_two", inputs({{2, 1, 3}, {2, 3, 3}}), [](const std::vector<Tensor>& x) { return cat(x, 1); }},
      {"cat_dim2_three", inputs({{2, 3, 1}, {2, 3, 2}, {2, 3, 3}}),
       [](const std::vector<Tensor>& x) { return cat(x, -1); }},
      {"cat_of_transposed", inputs({{3, 2, 3}, {3, 2, 1}}),
       [](const std::vector<Tensor>& x) { return cat({x[0].transpose(0, 2), x[1].transpose(0, 2)}, 0); }},
      {"split_uneven_weighted", inputs({{3, 7, 2}}),
       [](const std::vector<Tensor>& x) {
         auto p = split(x[0], {2, 1, 4}, 1);
         return cat({mul_scalar(p[0], 1.5), mul_scalar(p[1], -2.0), mul_scalar(p[2], 0.5)}, 1);
       }},
      {"split_last_pieces_reused", inputs({{2, 3, 7}}),
       [](const std::vector<Tensor>& x) {
         // Pieces 0 and 2 share a shape; piece 1 unused (its gradient arrives as zeros); piece 0 used twice.
         auto p = split(x[0], {3, 1, 3}, -1);
         return mul_scalar(p[0], 2.0) - p[2] + mul(p[0], p[2]);
       }},
      {"pad_positive", inputs({{2, 3, 4}}),
       [](const std::vector<Tensor>& x) { return pad(x[0], {1, 2, 0, 1}, 0.5); }},
      {"pad_negative_and_positive", inputs({{2, 5, 4}}),
       [](const std::vector<Tensor>& x) { return pad(x[0], {-1, 2, 1, -2}); }},
      {"pad_three_dims", inputs({{2, 3, 3}}),
       [](const std::vector<Tensor>& x) { return pad(x[0], {1, 1, 0, 2, 1, 0}, -1.0); }},
      {"index_select_dim0_repeats", with_index({4, 3, 2}, ivec({3, 0, 3, 1, 3})),
       [](const std::vector<Tensor>& x) { return index_select(x[0], 0, x[1]); }},
      {"index_select_dim1_int32", with_index({2, 5, 3}, ivec({4, 4, 0, 2}).to(DType::Int32)),
       [](const std::vector<Tensor>& x) { return index_select(x[0], 1, x[1]); }},
      {"index_select_last", with_index({3, 2, 4}, ivec({1, 3, 1})),
       [](const std::vector<Tensor>& x) { return index_select(x[0], -1, x[1]); }},
      {"gather_dim1_repeats", with_index({3, 4, 2}, index_tensor({3, 5, 2}, 4)),
       [](const std::vector<Tensor>& x) { return gather(x[0], 1, x[1]); }},
      {"gather_last_smaller_index", with_index({2, 3, 5}, index_tensor({2, 2, 4}, 5, DType::Int32)),
       [](const std::vector<Tensor>& x) { return gather(x[0], -1, x[1]); }},
      {"gather_dim0", with_index({3, 4}, index_tensor({5, 3}, 3)),
       [](const std::vector<Tensor>& x) { return gather(x[0], 0, x[1]); }},
  };
  // Larger cases for the GPU comparison only (many CUDA blocks, atomics colliding on few rows).
  OpCase big_cat{"cat_big", inputs({{8, 33, 40}, {8, 17, 40}}),
                 [](const std::vector<Tensor>& x) { return cat(x, 1); }};
  big_cat.gradcheck = false;
  cases.push_back(big_cat);
  OpCase big_index{"index_select_big_repeats", with_index({64, 7, 48}, index_tensor({300}, 7)),
                   [](const std::vector<Tensor>& x) { return index_select(x[0], 1, x[1]); }};
  big_index.gradcheck = false;
  big_index.bf16_tol = 2e-2;  // bf16 gradients: 300 indices onto 7 rows, ~43 terms per sum, rounded once
  cases.push_back(big_index);
  OpCase big_gather{"gather_big_repeats", with_index({16, 9, 64}, index_tensor({16, 200, 64}, 9)),
                    [](const std::vector<Tensor>& x) { return gather(x[0], 1, x[1]); }};
  big_gather.gradcheck = false;
  big_gather.bf16_tol = 2e-2;  // as above: ~22 terms per scatter-add sum
  cases.push_back(big_gather);
  return cases;
}

UNIREP_OP_CASE_TESTS(ShapeOps, shape_cases)

std::vector<float> fvec(const Tensor& t) { return t.to_vector<float>(); }

TEST(ShapeOps, CatValues) {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::from_vector(std::vector<float>{5, 6}, {1, 2});
  Tensor c = Tensor::from_vector(std::vector<float>{7, 8}, {2, 1});
  EXPECT_EQ(fvec(cat({a, b}, 0)), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(cat({a, b}, 0).shape(), (Shape{3, 2}));
  EXPECT_EQ(fvec(cat({a, c}, 1)), (std::vector<float>{1, 2, 7, 3, 4, 8}));
  EXPECT_EQ(fvec(cat({c, a, c}, -1)), (std::vector<float>{7, 1, 2, 7, 8, 3, 4, 8}));
}

TEST(ShapeOps, CatGradientIsSliceOfUpstream) {
  Tensor a = Tensor::zeros({2, 2}, DType::Float64).requires_grad_();
  Tensor b = Tensor::zeros({2, 1}, DType::Float64).requires_grad_();
  Tensor g = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  cat({a, b}, 1).backward(g);
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{1, 2, 4, 5}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{3, 6}));
}

TEST(ShapeOps, SplitValuesAreViews) {
  Tensor x = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {2, 5});
  auto p = split(x, {1, 3, 1}, 1);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].shape(), (Shape{2, 1}));
  EXPECT_EQ(fvec(p[1]), (std::vector<float>{1, 2, 3, 6, 7, 8}));
  EXPECT_EQ(fvec(p[2]), (std::vector<float>{4, 9}));
  EXPECT_EQ(p[1].storage(), x.storage());
  auto rows = split(x, {2, 0}, 0);
  EXPECT_EQ(rows[1].shape(), (Shape{0, 5}));
}

TEST(ShapeOps, SplitGradientAccumulatesOverPieces) {
  Tensor x = Tensor::zeros({6}, DType::Float64).requires_grad_();
  auto p = split(x, {2, 1, 3}, 0);
  // Piece 0 used twice (weights 1 and 2), piece 1 unused, piece 2 weighted by 5.
  Tensor loss = sum(p[0]) + sum(mul_scalar(p[0], 2.0)) + sum(mul_scalar(p[2], 5.0));
  loss.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3, 3, 0, 5, 5, 5}));
}

TEST(ShapeOps, PadValues) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(fvec(pad(x, {1, 0}, 9)), (std::vector<float>{9, 1, 2, 9, 3, 4}));
  Tensor y = pad(x, {0, 1, 1, 0});
  EXPECT_EQ(y.shape(), (Shape{3, 3}));
  EXPECT_EQ(fvec(y), (std::vector<float>{0, 0, 0, 1, 2, 0, 3, 4, 0}));
  EXPECT_EQ(fvec(pad(x, {-1, 0})), (std::vector<float>{2, 4}));
  EXPECT_EQ(fvec(pad(x, {-1, 1, 0, -1}, 7)), (std::vector<float>{2, 7}));
  EXPECT_EQ(pad(x, {-2, 1}, 5).shape(), (Shape{2, 1}));  // everything cropped, one padded column
  EXPECT_EQ(fvec(pad(x, {-2, 1}, 5)), (std::vector<float>{5, 5}));
  EXPECT_EQ(fvec(pad(x, {})), fvec(x));
}

TEST(ShapeOps, PadGradientZeroOnCroppedParts) {
  Tensor x = Tensor::zeros({2, 3}, DType::Float64).requires_grad_();
  Tensor g = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  pad(x, {-1, 1}).backward(g);  // out[:, j] = x[:, j + 1] for j < 2, out[:, 2] = 0
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1, 2, 0, 4, 5}));
}

TEST(ShapeOps, IndexSelectValuesAndGradient) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  Tensor out = index_select(x, 1, ivec({2, 0, 2}));
  EXPECT_EQ(out.to_vector<double>(), (std::vector<double>{3, 1, 3, 6, 4, 6}));
  out.backward(Tensor::ones({2, 3}, DType::Float64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 0, 2, 1, 0, 2}));
  EXPECT_EQ(fvec(index_select(x.detach().to(DType::Float32), 0, ivec({1, 1}).to(DType::Int32))),
            (std::vector<float>{4, 5, 6, 4, 5, 6}));
  EXPECT_EQ(index_select(x, 0, Tensor::empty({0}, DType::Int64)).shape(), (Shape{0, 3}));
}

TEST(ShapeOps, GatherValuesAndGradient) {
  // torch.gather's documented example: gather([[1, 2], [3, 4]], 1, [[0, 0], [1, 0]]) = [[1, 1], [4, 3]].
  Tensor t = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 0, 1, 0}, {2, 2});
  Tensor out = gather(t, 1, idx);
  EXPECT_EQ(out.to_vector<double>(), (std::vector<double>{1, 1, 4, 3}));
  out.backward(Tensor::from_vector(std::vector<double>{1, 10, 100, 1000}, {2, 2}));
  EXPECT_EQ(t.grad().to_vector<double>(), (std::vector<double>{11, 0, 1000, 100}));
  Tensor idx0 = Tensor::from_vector(std::vector<int32_t>{1, 0}, {1, 2});
  EXPECT_EQ(gather(t.detach(), 0, idx0).to_vector<double>(), (std::vector<double>{3, 2}));
}

TEST(ShapeOps, ReducedPrecisionBackwardAccumulatesInFloat) {
  // 300 contributions of 1 to one row: a bfloat16 running sum would stall at 256.
  Tensor x = Tensor::zeros({4, 2}, DType::BFloat16).requires_grad_();
  Tensor idx = Tensor::zeros({300}, DType::Int64);
  index_select(x, 0, idx).backward(Tensor::ones({300, 2}, DType::BFloat16));
  EXPECT_EQ(fvec(x.grad().to(DType::Float32)), (std::vector<float>{300, 300, 0, 0, 0, 0, 0, 0}));
  Tensor y = Tensor::zeros({2, 3}, DType::Float16).requires_grad_();
  gather(y, 1, Tensor::zeros({2, 300}, DType::Int32)).backward(Tensor::ones({2, 300}, DType::Float16));
  EXPECT_EQ(fvec(y.grad().to(DType::Float32)), (std::vector<float>{300, 0, 0, 300, 0, 0}));
}

TEST(ShapeOps, LargeIndexingMatchesNaiveLoops) {
  // Big enough for the multi-threaded CPU paths (several chunks per kernel).
  Generator gen(3);
  const int64_t A = 24, D = 7, B = 40, K = 300;
  Tensor x = Tensor::randn({A, D, B}, gen, DType::Float64).requires_grad_();
  Tensor idx = index_tensor({K}, D);
  Tensor g = Tensor::randn({A, K, B}, gen, DType::Float64);
  Tensor out = index_select(x, 1, idx);
  out.backward(g);
  std::vector<double> xv = x.detach().to_vector<double>(), ov = out.to_vector<double>(), gv = g.to_vector<double>();
  std::vector<int64_t> iv = idx.to_vector<int64_t>();
  std::vector<double> ref_grad(xv.size(), 0.0);
  double worst = 0;
  for (int64_t a = 0; a < A; ++a)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t b = 0; b < B; ++b) {
        size_t o = size_t((a * K + k) * B + b), s = size_t((a * D + iv[size_t(k)]) * B + b);
        ASSERT_EQ(ov[o], xv[s]);
        ref_grad[s] += gv[o];
      }
  std::vector<double> gx = x.grad().to_vector<double>();
  for (size_t i = 0; i < gx.size(); ++i) worst = std::max(worst, std::abs(gx[i] - ref_grad[i]));
  EXPECT_LT(worst, 1e-11);

  // gather along dim 1 with an index [A, K2, B2] smaller than x in dim 2.
  const int64_t K2 = 500, B2 = 33;
  Tensor x2 = Tensor::randn({A, D, B}, gen, DType::Float64).requires_grad_();
  Tensor idx2 = index_tensor({A, K2, B2}, D);
  Tensor g2 = Tensor::randn({A, K2, B2}, gen, DType::Float64);
  Tensor out2 = gather(x2, 1, idx2);
  out2.backward(g2);
  std::vector<double> x2v = x2.detach().to_vector<double>(), o2 = out2.to_vector<double>();
  std::vector<double> g2v = g2.to_vector<double>();
  std::vector<int64_t> i2 = idx2.to_vector<int64_t>();
  std::vector<double> ref2(x2v.size(), 0.0);
  for (int64_t a = 0; a < A; ++a)
    for (int64_t k = 0; k < K2; ++k)
      for (int64_t b = 0; b < B2; ++b) {
        size_t p = size_t((a * K2 + k) * B2 + b), s = size_t((a * D + i2[p]) * B + b);
        ASSERT_EQ(o2[p], x2v[s]);
        ref2[s] += g2v[p];
      }
  std::vector<double> gx2 = x2.grad().to_vector<double>();
  worst = 0;
  for (size_t i = 0; i < gx2.size(); ++i) worst = std::max(worst, std::abs(gx2[i] - ref2[i]));
  EXPECT_LT(worst, 1e-11);
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning " << to_string(parts);
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(ShapeOps, BadInputs) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({2, 4});
  expect_error([&] { cat({a, b}, 0); }, {"cat", "dim 0", "[2, 3]", "[2, 4]"});
  expect_error([&] { cat({a, Tensor::zeros({2, 3, 1})}, 1); }, {"cat", "dim 1", "[2, 3]", "[2, 3, 1]"});
  expect_error([&] { cat({a, Tensor::zeros({2, 3}, DType::Float64)}, 0); }, {"cat", "float64", "float32"});
  expect_error([&] { cat({}, 0); }, {"cat"});
  expect_error([&] { cat({a, b}, 2); }, {"cat"});
  expect_error([&] { split(a, {1, 1}, 1); }, {"split", "[1, 1]", "[2, 3]", "2", "3"});
  expect_error([&] { split(a, {4, -1}, 1); }, {"split", "negative", "[2, 3]"});
  expect_error([&] { pad(a, {1, 1, 1}); }, {"pad", "[1, 1, 1]", "[2, 3]"});
  expect_error([&] { pad(a, {1, 1, 1, 1, 1, 1}); }, {"pad", "[2, 3]"});
  expect_error([&] { pad(a, {-2, -2}); }, {"pad", "[2, 3]", "-1"});
  expect_error([&] { index_select(a, 1, ivec({0, 3})); }, {"index_select", "index 3", "[0, 3)", "[2, 3]"});
  expect_error([&] { index_select(a, 0, ivec({-1})); }, {"index_select", "index -1", "[0, 2)", "negative"});
  expect_error([&] { index_select(a, 0, Tensor::zeros({2})); }, {"index_select", "int32 or int64", "float32"});
  expect_error([&] { index_select(a, 0, Tensor::zeros({2, 1}, DType::Int64)); }, {"index_select", "1-d", "[2, 1]"});
  expect_error([&] { gather(a, 1, Tensor::zeros({2}, DType::Int64)); }, {"gather", "[2]", "[2, 3]", "rank"});
  expect_error([&] { gather(a, 1, Tensor::zeros({3, 1}, DType::Int64)); }, {"gather", "[3, 1]", "[2, 3]"});
  expect_error([&] { gather(a, 1, Tensor::full({2, 2}, 5, DType::Int64)); }, {"gather", "index 5", "[0, 3)"});
}

}  // namespace
}  // namespace unirep
