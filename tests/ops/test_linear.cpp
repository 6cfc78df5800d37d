// Matrix products: gradcheck, CUDA-vs-CPU, hand-computed values, the GEMM kernel against a naive
// loop (transposes, broadcast strides, alpha/beta, every dtype), and bad input.
#include <cmath>

#include "core/ops/matmul.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

// The message of the Error that f throws ("" when it throws none).
template <class F> std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<OpCase> linear_cases() {
  auto mm = [](std::string name, Shape sa, Shape sb, bool gradcheck = true) {
    OpCase c{name, [=](Generator& g) { return std::vector<Tensor>{randn64(g, sa), randn64(g, sb)}; },
             [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }};
    c.gradcheck = gradcheck;
    return c;
  };
  auto lin = [](std::string name, Shape sx, int64_t out, bool with_bias, bool gradcheck = true) {
    int64_t in = sx.back();
    OpCase c{name,
             [=](Generator& g) {
               return std::vector<Tensor>{randn64(g, sx), randn64(g, {out, in}, true, 0.5),
                                          with_bias ? randn64(g, {out}) : Tensor()};
             },
             [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); }};
    c.gradcheck = gradcheck;
    return c;
  };
  std::vector<OpCase> cases = {
      mm("matmul_2d", {4, 3}, {3, 5}),
      mm("matmul_odd", {7, 5}, {5, 3}),
      mm("matmul_batched", {2, 3, 4}, {2, 4, 5}),
      mm("matmul_shared_b", {2, 3, 4}, {4, 5}),               // b broadcast: one folded GEMM
      mm("matmul_shared_a", {3, 4}, {2, 4, 5}),               // a broadcast: stride 0, summed gradient
      mm("matmul_broadcast_batch", {2, 1, 3, 4}, {3, 4, 2}),  // both partially broadcast -> [2, 3, 3, 2]
      mm("matmul_batch_of_one", {1, 3, 4}, {2, 4, 3}),
      mm("matmul_1d_2d", {4}, {4, 3}),
      mm("matmul_2d_1d", {3, 4}, {4}),
      mm("matmul_1d_1d", {5}, {5}),
      mm("matmul_1d_batched", {4}, {2, 4, 3}),
      mm("matmul_batched_1d", {2, 3, 4}, {4}),
      lin("linear_2d", {4, 5}, 3, true),
      lin("linear_2d_no_bias", {4, 5}, 3, false),
      lin("linear_3d", {2, 3, 5}, 4, true),
      lin("linear_4d_nhwc", {2, 3, 3, 5}, 4, true),
      lin("linear_4d_nhwc_no_bias", {2, 3, 3, 5}, 4, false),
      lin("linear_1d", {5}, 3, true),
      // Sized for the GPU comparison only (cuBLAS tensor-core and split paths; too big for gradcheck).
      mm("matmul_large_shared_b", {8, 33, 40}, {40, 17}, false),
      mm("matmul_large_broadcast", {4, 1, 20, 30}, {3, 30, 10}, false),
      mm("matmul_large_batched", {64, 9, 12}, {64, 12, 7}, false),
      lin("linear_large_nhwc", {4, 7, 7, 96}, 192, true, false),
  };
  // Inputs that are not contiguous, and an input without gradient.
  cases.push_back(OpCase{"matmul_transposed_inputs",
                         [](Generator& g) { return std::vector<Tensor>{randn64(g, {3, 4}), randn64(g, {5, 3})}; },
                         [](const std::vector<Tensor>& x) { return matmul(x[0].transpose(0, 1), x[1].transpose(0, 1)); }});
  cases.push_back(OpCase{"linear_permuted_input",
                         [](Generator& g) {
                           return std::vector<Tensor>{randn64(g, {2, 5, 3, 3}), randn64(g, {4, 5}), randn64(g, {4})};
                         },
                         [](const std::vector<Tensor>& x) { return linear(x[0].permute({0, 2, 3, 1}), x[1], x[2]); }});
  cases.push_back(OpCase{"linear_frozen_weight",
                         [](Generator& g) {
                           return std::vector<Tensor>{randn64(g, {3, 5}), randn64(g, {2, 5}, false), randn64(g, {2})};
                         },
                         [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); }});
  return cases;
}

UNIREP_OP_CASE_TESTS(Linear, linear_cases)

TEST(Linear, MatmulValues) {
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16}) {
    Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}, dt);
    Tensor b = Tensor::from_vector(std::vector<double>{5, 6, 7, 8}, {2, 2}, dt);
    Tensor c = matmul(a, b);
    EXPECT_EQ(c.dtype(), dt);
    EXPECT_EQ(c.to_vector<double>(), (std::vector<double>{19, 22, 43, 50})) << dtype_name(dt);
  }
  // 7x5 @ 5x3 against a hand loop: a[i][j] = i - j, b[j][l] = j * l + 1.
  std::vector<double> av, bv;
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < 5; ++j) av.push_back(i - j);
  for (int j = 0; j < 5; ++j)
    for (int l = 0; l < 3; ++l) bv.push_back(j * l + 1);
  std::vector<double> c = matmul(Tensor::from_vector(av, {7, 5}), Tensor::from_vector(bv, {5, 3})).to_vector<double>();
  for (int i = 0; i < 7; ++i)
    for (int l = 0; l < 3; ++l) {
      double ref = 0;
      for (int j = 0; j < 5; ++j) ref += (i - j) * (j * l + 1);
      EXPECT_EQ(c[size_t(i * 3 + l)], ref) << i << "," << l;
    }
}

TEST(Linear, MatmulShapes) {
  auto shape_of = [](Shape sa, Shape sb) { return matmul(Tensor::zeros(sa), Tensor::zeros(sb)).shape(); };
  EXPECT_EQ(shape_of({5}, {5}), Shape{});
  EXPECT_EQ(shape_of({4}, {4, 3}), (Shape{3}));
  EXPECT_EQ(shape_of({3, 4}, {4}), (Shape{3}));
  EXPECT_EQ(shape_of({4}, {2, 4, 3}), (Shape{2, 3}));
  EXPECT_EQ(shape_of({2, 3, 4}, {4}), (Shape{2, 3}));
  EXPECT_EQ(shape_of({2, 1, 3, 4}, {5, 4, 6}), (Shape{2, 5, 3, 6}));
  EXPECT_EQ(shape_of({0, 3, 4}, {4, 2}), (Shape{0, 3, 2}));
  // An empty batch: empty output, zero gradient for the shared operand.
  for (bool shared_b : {true, false}) {
    Tensor x = Tensor::ones(shared_b ? Shape{0, 3, 4} : Shape{3, 4}).requires_grad_();
    Tensor y = Tensor::ones(shared_b ? Shape{4, 2} : Shape{0, 4, 2}).requires_grad_();
    Tensor z = matmul(x, y);
    EXPECT_EQ(z.shape(), (Shape{0, 3, 2}));
    sum(z).backward();
    EXPECT_EQ(x.grad().shape(), x.shape());
    EXPECT_EQ(y.grad().shape(), y.shape());
    EXPECT_EQ((shared_b ? y : x).grad().to_vector<float>(), std::vector<float>(shared_b ? 8 : 12, 0.0f));
  }
  // An empty inner dim gives zeros.
  EXPECT_EQ(matmul(Tensor::ones({2, 0}), Tensor::ones({0, 3})).to_vector<float>(), std::vector<float>(6, 0.0f));
  // No rows: an empty output, and zero weight and bias gradients.
  Tensor w = Tensor::ones({3, 5}).requires_grad_(), bias = Tensor::ones({3}).requires_grad_();
  Tensor y = linear(Tensor::zeros({0, 5}), w, bias);
  EXPECT_EQ(y.shape(), (Shape{0, 3}));
  sum(y).backward();
  EXPECT_EQ(w.grad().to_vector<float>(), std::vector<float>(15, 0.0f));
  EXPECT_EQ(bias.grad().to_vector<float>(), std::vector<float>(3, 0.0f));
  // 1-d @ 1-d: the dot product.
  Tensor dot = matmul(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}),
                      Tensor::from_vector(std::vector<float>{4, 5, 6}, {3}));
  EXPECT_FLOAT_EQ(dot.item(), 32.0f);
}

TEST(Linear, MatmulBroadcastGradientIsSummedOverTheBatch) {
  // c[i] = a[i] @ b for a [2, 1, 2] and shared b [2, 1]; d(sum c)/db = sum_i a[i]^T.
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 1, 2}).requires_grad_();
  Tensor b = Tensor::from_vector(std::vector<double>{10, 100}, {2, 1}).requires_grad_();
  Tensor c = matmul(a, b);
  EXPECT_EQ(c.to_vector<double>(), (std::vector<double>{210, 430}));
  sum(c).backward();
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{4, 6}));
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{10, 100, 10, 100}));
  EXPECT_EQ(b.grad().shape(), (Shape{2, 1}));
}

TEST(Linear, LinearValuesAndGradients) {
  // x [2, 3], weight [2, 3], bias [2]:
  // y = x W^T + b = [[1-3+0.5, 2+2-1], [4-6+0.5, 8+5-1]] = [[-1.5, 3], [-1.5, 12]].
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  Tensor w = Tensor::from_vector(std::vector<double>{1, 0, -1, 2, 1, 0}, {2, 3}).requires_grad_();
  Tensor b = Tensor::from_vector(std::vector<double>{0.5, -1}, {2}).requires_grad_();
  Tensor y = linear(x, w, b);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{-1.5, 3, -1.5, 12}));
  // Upstream [[1, 2], [3, 4]]: dX = G W, dW = G^T X, db = column sums of G.
  y.backward(Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 2, -1, 11, 4, -3}));
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{13, 17, 21, 18, 24, 30}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{4, 6}));
  // Without bias, on a 4-d NHWC-like input: the shape is kept, the values are those of the rows.
  Tensor x4 = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});
  Tensor y4 = linear(x4, w.detach().to(DType::Float32));
  EXPECT_EQ(y4.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y4.to_vector<float>(), (std::vector<float>{-2, 4, -2, 13}));
}

TEST(Linear, LinearBFloat16RoundsOnce) {
  // bf16 CPU: the product and the bias are summed in float and rounded once.
  Generator gen(3);
  Tensor x = Tensor::randn({6, 40}, gen, DType::BFloat16);
  Tensor w = Tensor::randn({9, 40}, gen, DType::BFloat16);
  Tensor b = Tensor::randn({9}, gen, DType::BFloat16);
  Tensor y = linear(x, w, b);
  Tensor ref = linear(x.to(DType::Float64), w.to(DType::Float64), b.to(DType::Float64));
  std::vector<double> yv = y.to_vector<double>(), rv = ref.to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_NEAR(yv[i], rv[i], std::abs(rv[i]) * (1.0 / 256) + 1e-6) << i;
}

// The CUDA linear with a bias (core/ops/matmul.h: the bias in cuBLASLt's epilogue forward, the bias
// gradient in the weight-gradient matmul's BGRADB epilogue backward) against the CPU's, for float32
// and bf16: the layer shapes of a UniRepLKNet block, odd extents, and an input off 16-byte
// alignment (a view into a larger storage). Both sum in float and round once.
TEST(Linear, CudaBiasEpiloguesMatchCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  struct Case {
    int64_t rows, in_f, out_f, x_offset;
  };
  const std::vector<Case> cases = {{6272, 80, 320, 0}, {6272, 320, 80, 0}, {37, 13, 9, 0}, {64, 40, 24, 3}, {2, 8, 1000, 1}};
  Generator gen(9);
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    for (const Case& c : cases) {
      Tensor storage = Tensor::randn({c.rows * c.in_f + c.x_offset}, gen, dt);
      Tensor w = Tensor::randn({c.out_f, c.in_f}, gen, dt), b = Tensor::randn({c.out_f}, gen, dt);
      Tensor up = Tensor::randn({c.rows, c.out_f}, gen, dt);
      auto run = [&](Device d) {
        Tensor x = storage.to(d).slice(0, c.x_offset, c.x_offset + c.rows * c.in_f).reshape({c.rows, c.in_f});
        x = x.detach().requires_grad_();
        Tensor wd = w.to(d).detach().requires_grad_(), bd = b.to(d).detach().requires_grad_();
        Tensor y = linear(x, wd, bd);
        y.backward(up.to(d));
        return std::vector<Tensor>{y.cpu(), x.grad().cpu(), wd.grad().cpu(), bd.grad().cpu()};
      };
      std::vector<Tensor> want = run(Device::cpu()), got = run(Device::cuda(0));
      const char* what[4] = {"y", "dx", "dw", "db"};
      for (size_t i = 0; i < 4; ++i)
        EXPECT_LT(testing::relative_error(got[i].to(DType::Float64), want[i].to(DType::Float64)),
                  dt == DType::BFloat16 ? 1e-2 : 1e-5)
            << what[i] << " " << dtype_name(dt) << " rows " << c.rows << " in " << c.in_f << " out " << c.out_f;
    }
  }
}

TEST(Linear, LargeBatchOfSmallProductsMatchesPerMatrixProducts) {
  // 300 small products: the CPU kernel splits this batch over the threads instead of OpenBLAS.
  Generator gen(5);
  for (DType dt : {DType::Float64, DType::BFloat16}) {
    Tensor a = Tensor::randn({300, 8, 9}, gen, dt), b = Tensor::randn({300, 9, 7}, gen, dt);
    Tensor c = matmul(a, b);
    ASSERT_EQ(c.shape(), (Shape{300, 8, 7}));
    for (int64_t i : {int64_t(0), int64_t(151), int64_t(299)}) {
      std::vector<double> got = c.select(0, i).to_vector<double>();
      std::vector<double> want = matmul(a.select(0, i), b.select(0, i)).to_vector<double>();
      for (size_t j = 0; j < got.size(); ++j) EXPECT_NEAR(got[j], want[j], 1e-12) << dtype_name(dt) << " " << i;
    }
  }
}

// The GEMM kernel on its own: every transpose combination, broadcast and gapped batch strides,
// alpha and beta, every dtype, against a double loop; on the CPU and, where there is one, the GPU.
TEST(Linear, GemmKernelMatchesNaiveLoop) {
  const int64_t batch = 3, m = 5, n = 4, k = 6;
  Generator gen(11);
  std::vector<Device> devices = {Device::cpu()};
  if (cuda_available()) devices.push_back(Device::cuda(0));
  for (Device dev : devices) {
    for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16}) {
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
          for (int64_t stride_b : {int64_t(0), k * n + 3}) {
            // a: packed; b: one shared matrix or matrices with a gap of 3 between them.
            Tensor a = Tensor::randn({batch, m * k}, gen, dt, dev);
            Tensor b = Tensor::randn({stride_b == 0 ? k * n : batch * stride_b}, gen, dt, dev);
            Tensor c = Tensor::randn({batch, m, n}, gen, dt, dev);
            std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>(), c0 = c.to_vector<double>();
            GemmParams p{batch, m, n, k, bool(ta), bool(tb), -1, stride_b, 2.0, 0.5};
            gemm(c, a, b, p);
            std::vector<double> cv = c.to_vector<double>();
            double tol = dt == DType::Float32 ? 1e-5 : dt == DType::Float64 ? 1e-12 : 3e-2;
            for (int64_t i = 0; i < batch; ++i)
              for (int64_t r = 0; r < m; ++r)
                for (int64_t col = 0; col < n; ++col) {
                  double s = 0;
                  for (int64_t j = 0; j < k; ++j) {
                    double x = av[size_t(i * m * k + (ta ? j * m + r : r * k + j))];
                    double y = bv[size_t(i * stride_b + (tb ? col * k + j : j * n + col))];
                    s += x * y;
                  }
                  size_t at = size_t((i * m + r) * n + col);
                  double ref = 2.0 * s + 0.5 * c0[at];
                  EXPECT_NEAR(cv[at], ref, tol * (1 + std::abs(ref)))
                      << dev.str() << " " << dtype_name(dt) << " ta " << ta << " tb " << tb << " stride_b " << stride_b;
                }
          }
    }
  }
}

TEST(Linear, GemmRejectsShortOperands) {
  Tensor a = Tensor::zeros({2, 3, 4}), b = Tensor::zeros({4, 5}), c = Tensor::empty({2, 3, 5});
  std::string msg = error_of([&] { gemm(c, a, b, GemmParams{2, 3, 5, 4}); });  // b packed: needs 2 matrices
  EXPECT_NE(msg.find("gemm: operand b"), std::string::npos) << msg;
  EXPECT_NO_THROW(gemm(c, a, b, GemmParams{2, 3, 5, 4, false, false, -1, 0}));
  msg = error_of([&] { gemm(Tensor::empty({2, 3}), a, b, GemmParams{2, 3, 5, 4, false, false, -1, 0}); });
  EXPECT_NE(msg.find("gemm: c must be a contiguous [2, 3, 5]"), std::string::npos) << msg;
  msg = error_of([&] { gemm(c, a, b.to(DType::Float64), GemmParams{2, 3, 5, 4, false, false, -1, 0}); });
  EXPECT_NE(msg.find("gemm: dtypes differ"), std::string::npos) << msg;
}

TEST(Linear, BadInputs) {
  std::string msg = error_of([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); });
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;

  msg = error_of([] { matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5})); });  // batch 2 vs 3
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3]"), std::string::npos) << msg;

  msg = error_of([] { matmul(Tensor::scalar(1.0), Tensor::zeros({3})); });
  EXPECT_NE(msg.find("matmul: both operands need at least 1 dim, got a [] and b [3]"), std::string::npos) << msg;
  msg = error_of([] { matmul(Tensor::zeros({2, 2}), Tensor::zeros({2, 2}, DType::Float64)); });
  EXPECT_NE(msg.find("matmul: dtype mismatch"), std::string::npos) << msg;
  msg = error_of([] { matmul(Tensor::zeros({2, 2}, DType::Int64), Tensor::zeros({2, 2}, DType::Int64)); });
  EXPECT_NE(msg.find("matmul: a must be a floating tensor"), std::string::npos) << msg;

  msg = error_of([] { linear(Tensor::zeros({2, 5}), Tensor::zeros({3, 4})); });
  EXPECT_EQ(msg, "linear: input [2, 5] has 5 features, weight [3, 4] expects 4");
  msg = error_of([] { linear(Tensor::zeros({2, 4}), Tensor::zeros({3, 4}), Tensor::zeros({4})); });
  EXPECT_EQ(msg, "linear: bias [4] does not match weight [3, 4]: expected [3]");
  msg = error_of([] { linear(Tensor::zeros({2, 4}), Tensor::zeros({4})); });
  EXPECT_EQ(msg, "linear: weight must be 2-d [out_features, in_features], got [4]");
  msg = error_of([] { linear(Tensor::scalar(1.0), Tensor::zeros({3, 1})); });
  EXPECT_NE(msg.find("linear: input must have at least 1 dim"), std::string::npos) << msg;
  msg = error_of([] { linear(Tensor::zeros({2, 4}), Tensor::zeros({3, 4}, DType::Float64)); });
  EXPECT_NE(msg.find("linear: dtype mismatch"), std::string::npos) << msg;
  msg = error_of([] { linear(Tensor::zeros({2, 4}), Tensor()); });
  EXPECT_NE(msg.find("linear: weight is undefined"), std::string::npos) << msg;
}

}  // namespace
}  // namespace unirep
