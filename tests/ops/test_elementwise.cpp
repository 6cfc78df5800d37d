// Elementwise ops: gradcheck, CUDA-vs-CPU, values against closed forms, broadcasting, bad input.
#include <cmath>

#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::rand64;
using testing::randn64;

std::vector<OpCase> elementwise_cases() {
  auto unary = [](std::string name, std::function<Tensor(const Tensor&)> f, Shape shape, double lo = -2,
                  double hi = 2) {
    return OpCase{name, [=](Generator& g) { return std::vector<Tensor>{rand64(g, shape, lo, hi)}; },
                  [f](const std::vector<Tensor>& x) { return f(x[0]); }};
  };
  auto binary = [](std::string name, std::function<Tensor(const Tensor&, const Tensor&)> f, Shape sa, Shape sb,
                   double lo = -2, double hi = 2) {
    return OpCase{name,
                  [=](Generator& g) { return std::vector<Tensor>{rand64(g, sa, lo, hi), rand64(g, sb, lo, hi)}; },
                  [f](const std::vector<Tensor>& x) { return f(x[0], x[1]); }};
  };
  std::vector<OpCase> cases = {
      unary("relu", [](const Tensor& x) { return relu(x); }, {3, 5, 7}),
      unary("gelu", [](const Tensor& x) { return gelu(x); }, {2, 3, 5, 7}),
      unary("sigmoid", [](const Tensor& x) { return sigmoid(x); }, {33}),
      unary("silu", [](const Tensor& x) { return silu(x); }, {4, 9}),
      unary("neg", [](const Tensor& x) { return neg(x); }, {5}),
      unary("exp", [](const Tensor& x) { return exp(x); }, {3, 3}),
      unary("log", [](const Tensor& x) { return log(x); }, {3, 4}, 0.5, 3),
      unary("sqrt", [](const Tensor& x) { return sqrt(x); }, {7}, 0.5, 3),
      unary("pow_scalar", [](const Tensor& x) { return pow_scalar(x, 2.5); }, {2, 5}, 0.5, 2),
      unary("add_scalar", [](const Tensor& x) { return add_scalar(x, 1.5); }, {6}),
      unary("mul_scalar", [](const Tensor& x) { return mul_scalar(x, -3.0); }, {6}),
      unary("transposed_relu", [](const Tensor& x) { return relu(x.transpose(0, 1)); }, {5, 3}),
      binary("add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, {4, 5}, {4, 5}),
      binary("add_broadcast", [](const Tensor& a, const Tensor& b) { return add(a, b); }, {2, 3, 5}, {3, 1}),
      binary("sub_broadcast", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, {5}, {4, 1}),
      binary("mul_broadcast", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, {2, 1, 7}, {3, 7}),
      binary("div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, {3, 4}, {4}, 0.5, 2),
      binary("nhwc_channel_scale", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, {2, 3, 3, 5}, {5}),
  };
  return cases;
}

UNIREP_OP_CASE_TESTS(Elementwise, elementwise_cases)

TEST(Elementwise, GeluMatchesErfForm) {
  Tensor x = Tensor::from_vector(std::vector<double>{-3, -1, -0.5, 0, 0.5, 1, 3}, {7});
  std::vector<double> y = gelu(x).to_vector<double>();
  for (size_t i = 0; i < y.size(); ++i) {
    double v = x.to_vector<double>()[i];
    EXPECT_NEAR(y[i], 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))), 1e-15);
  }
  // Known value: gelu(1) = 0.8413447460685429.
  EXPECT_NEAR(y[5], 0.8413447460685429, 1e-15);
}

TEST(Elementwise, BroadcastValues) {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<float>{10, 20, 30}, {3});
  EXPECT_EQ((a + b).to_vector<float>(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  Tensor c = Tensor::from_vector(std::vector<float>{100, 200}, {2, 1});
  EXPECT_EQ((a * c).to_vector<float>(), (std::vector<float>{100, 200, 300, 800, 1000, 1200}));
}

// Element i of the broadcast of `values` (shape `from`, right-aligned) over `shape`.
double broadcast_at(const std::vector<double>& values, const Shape& from, const Shape& shape, int64_t i) {
  int64_t off = 0, stride = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    const int64_t pos = i % shape[size_t(d)];
    i /= shape[size_t(d)];
    const int64_t fd = d - int64_t(shape.size() - from.size());
    if (fd < 0) continue;
    if (from[size_t(fd)] != 1) off += pos * stride;
    stride *= from[size_t(fd)];
  }
  return values[size_t(off)];
}

TEST(Elementwise, BroadcastRunsMatchElementLoop) {
  // Every broadcast layout of the NHWC blocks (channel vectors, per-image channel vectors, per-pixel
  // scalars, both operands broadcast), sizes large enough that the threads split rows mid-way, and
  // layouts that leave the run loops (a transposed operand).
  struct Case {
    Shape a, b;
  };
  const std::vector<Case> cases = {{{3, 7, 11, 1001}, {1001}},       {{2, 5, 5, 40}, {2, 1, 1, 40}},
                                   {{2, 1, 1, 40}, {2, 5, 5, 40}},    {{4, 9, 9, 1}, {4, 9, 9, 33}},
                                   {{1, 1, 1, 160}, {64, 1, 1, 160}}, {{37, 1}, {1, 2049}},
                                   {{5, 1, 3}, {1, 4, 1}},            {{}, {2, 3}}};
  Generator gen(11);
  for (const Case& c : cases) {
    Shape shape = broadcast_shapes(c.a, c.b, "test");
    Tensor a = Tensor::randn(c.a, gen, DType::Float64), b = Tensor::randn(c.b, gen, DType::Float64);
    std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
    std::vector<double> prod = mul(a, b).to_vector<double>();
    std::vector<double> quot = div(a, b).to_vector<double>();
    std::vector<double> sum_f = add(a.to(DType::Float32), b.to(DType::Float32)).to_vector<double>();
    ASSERT_EQ(int64_t(prod.size()), shape_numel(shape));
    for (int64_t i = 0; i < shape_numel(shape); ++i) {
      const double x = broadcast_at(av, c.a, shape, i), y = broadcast_at(bv, c.b, shape, i);
      ASSERT_EQ(prod[size_t(i)], x * y) << shape_str(c.a) << " * " << shape_str(c.b) << " at " << i;
      ASSERT_EQ(quot[size_t(i)], x / y) << i;
      ASSERT_EQ(sum_f[size_t(i)], double(float(x) + float(y))) << i;
    }
  }
  Tensor t = Tensor::randn({300, 500}, gen, DType::Float64);
  Tensor v = Tensor::randn({300}, gen, DType::Float64);
  std::vector<double> tv = t.to_vector<double>(), vv = v.to_vector<double>();
  std::vector<double> got = mul(t.transpose(0, 1), v).to_vector<double>();  // [500, 300], a strided
  for (int64_t i = 0; i < 500; ++i)
    for (int64_t j = 0; j < 300; ++j) ASSERT_EQ(got[size_t(i * 300 + j)], tv[size_t(j * 500 + i)] * vv[size_t(j)]);
}

// The CUDA loop's layouts (core/cuda/loops.cuh): the 16-byte vector loop over contiguous and NHWC
// broadcast operands, and the per-element fallbacks (an inner dim not a multiple of the vector width,
// an operand off 16-byte alignment, a transposed operand). Add and Mul round the same float sums and
// products on both devices, so they agree bitwise; GELU within a few ulps of the CPU's erf.
TEST(Elementwise, CudaLoopLayoutsMatchCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  struct Case {
    Shape a, b;
    int64_t a_offset;  // elements sliced off the front of a's storage: misaligned when not a multiple of 8
    bool transpose_a;
  };
  const std::vector<Case> cases = {{{1024, 24}, {1024, 24}, 0, false},   {{4, 7, 9, 80}, {80}, 0, false},
                                   {{4, 7, 9, 80}, {4, 1, 1, 80}, 0, false}, {{4, 7, 9, 80}, {4, 7, 9, 1}, 0, false},
                                   {{4, 1, 1, 64}, {4, 6, 6, 64}, 0, false}, {{3, 5, 13}, {13}, 0, false},
                                   {{64, 40}, {40}, 1, false},               {{64, 40}, {64, 40}, 8, false},
                                   {{40, 64}, {64}, 0, true}};
  Generator gen(5);
  for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64}) {
    for (const Case& c : cases) {
      const Shape stored = c.transpose_a ? Shape{c.a[1], c.a[0]} : c.a;
      Tensor flat = Tensor::randn({shape_numel(stored) + c.a_offset}, gen, DType::Float32).to(dt);
      Tensor a = flat.slice(0, c.a_offset, c.a_offset + shape_numel(stored)).reshape(stored);
      if (c.transpose_a) a = a.transpose(0, 1);
      Tensor b = Tensor::randn(c.b, gen, DType::Float32).to(dt);
      Tensor ag = a.cuda(), bg = b.cuda();
      const std::string what = std::string(dtype_name(dt)) + " " + shape_str(c.a) + " with " + shape_str(c.b);
      EXPECT_EQ(mul(ag, bg).cpu().to(DType::Float64).to_vector<double>(), mul(a, b).to(DType::Float64).to_vector<double>())
          << "mul " << what;
      EXPECT_EQ(add(bg, ag).cpu().to(DType::Float64).to_vector<double>(), add(b, a).to(DType::Float64).to_vector<double>())
          << "add " << what;
      std::vector<double> want = gelu(a).to(DType::Float64).to_vector<double>();
      std::vector<double> got = gelu(ag).cpu().to(DType::Float64).to_vector<double>();
      const double tol = dt == DType::BFloat16 ? 1e-2 : dt == DType::Float32 ? 1e-6 : 1e-14;
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << what << " at " << i;
    }
  }
}

TEST(Elementwise, BadInputNamesOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  try {
    add(a, b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("add"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  }
  EXPECT_THROW(mul(a, Tensor::zeros({2, 3}, DType::Float64)), Error);
  EXPECT_THROW(relu(Tensor::zeros({2}, DType::Int64)), Error);
}

}  // namespace
}  // namespace unirep
