// Dropout and drop_path: gradcheck and CUDA-vs-CPU with a fixed seed (the generator is created
// inside fn, so every call, finite differences included, uses the same mask, and the CUDA
// comparison checks that both devices draw the same mask), statistics, masks and bad input.
#include <cmath>

#include "core/ops/random.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::randn64;

std::vector<OpCase> random_cases() {
  auto c = [](std::string name, Shape shape, std::function<Tensor(const Tensor&)> f) {
    return OpCase{name, [=](Generator& g) { return std::vector<Tensor>{randn64(g, shape)}; },
                  [f](const std::vector<Tensor>& x) { return f(x[0]); }};
  };
  std::vector<OpCase> cases = {
      c("dropout_p03", {4, 5, 3},
        [](const Tensor& x) {
          Generator g(3);
          return dropout(x, 0.3, true, g);
        }),
      c("dropout_p07_offset", {37},
        [](const Tensor& x) {
          Generator g(11);
          g.advance(1000);  // a mask from the middle of the stream
          return dropout(x, 0.7, true, g);
        }),
      c("dropout_of_transposed", {3, 4},
        [](const Tensor& x) {
          Generator g(5);
          return dropout(x.transpose(0, 1), 0.5, true, g);
        }),
      c("drop_path_p04", {6, 2, 3},
        [](const Tensor& x) {
          Generator g(3);
          return drop_path(x, 0.4, true, g);
        }),
      c("drop_path_no_scale", {5, 7},
        [](const Tensor& x) {
          Generator g(9);
          return drop_path(x, 0.5, true, g, false);
        }),
  };
  OpCase big = c("dropout_big", {64, 33, 40}, [](const Tensor& x) {
    Generator g(21);
    return dropout(x, 0.25, true, g);
  });
  big.gradcheck = false;  // sized for the GPU comparison (many blocks, grid-stride loop)
  cases.push_back(big);
  OpCase big_path = c("drop_path_big", {64, 9, 40}, [](const Tensor& x) {
    Generator g(22);
    return drop_path(x, 0.3, true, g);
  });
  big_path.gradcheck = false;
  cases.push_back(big_path);
  return cases;
}

UNIREP_OP_CASE_TESTS(Random, random_cases)

TEST(Random, DropoutKeepsAboutOneMinusPAndPreservesMean) {
  const int64_t n = 100000;
  const double p = 0.3;
  Generator gen(123);
  Tensor x = Tensor::ones({n}, DType::Float32);
  std::vector<float> y = dropout(x, p, true, gen).to_vector<float>();
  int64_t kept = 0;
  double total = 0;
  for (float v : y) {
    if (v != 0.0f) {
      ++kept;
      EXPECT_FLOAT_EQ(v, float(1.0 / (1.0 - p)));
    }
    total += v;
  }
  EXPECT_NEAR(double(kept) / double(n), 1.0 - p, 0.01);
  EXPECT_NEAR(total / double(n), 1.0, 0.02);  // E[out] = E[x] = 1; sd of the mean ~0.002
  EXPECT_EQ(gen.offset(), uint64_t(n));
}

TEST(Random, DropoutMaskIsThePhiloxFormula) {
  Generator gen(77);
  gen.advance(5);
  const double p = 0.4;
  Tensor x = Tensor::ones({1000}, DType::Float64);
  std::vector<double> y = dropout(x, p, true, gen).to_vector<double>();
  for (size_t i = 0; i < y.size(); ++i) {
    bool keep = philox_uniform(77, 5 + i) >= p;
    EXPECT_EQ(y[i], keep ? 1.0 / (1.0 - p) : 0.0) << i;
  }
}

TEST(Random, DropoutGradientUsesTheForwardMask) {
  Generator gen(4);
  Tensor x = Tensor::full({50}, 2.0, DType::Float64).requires_grad_();
  Tensor y = dropout(x, 0.5, true, gen);
  gen.advance(999);  // later draws must not change the backward
  y.backward(Tensor::ones({50}, DType::Float64));
  std::vector<double> out = y.to_vector<double>(), gx = x.grad().to_vector<double>();
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(gx[i], out[i] / 2.0) << i;  // mask * 2 = out / x
}

TEST(Random, DropPathZeroesWholeSamples) {
  const double p = 0.5;
  Generator gen(8);
  Tensor x = Tensor::ones({64, 3, 4, 5}, DType::Float32);
  Tensor y = drop_path(x, p, true, gen);
  EXPECT_EQ(gen.offset(), 64u);
  std::vector<float> v = y.to_vector<float>();
  int dropped = 0;
  for (int64_t n = 0; n < 64; ++n) {
    float first = v[size_t(n * 60)];
    bool keep = philox_uniform(8, uint64_t(n)) >= p;
    EXPECT_EQ(first, keep ? 2.0f : 0.0f) << n;
    for (int64_t j = 0; j < 60; ++j) EXPECT_EQ(v[size_t(n * 60 + j)], first) << n << " " << j;
    dropped += first == 0.0f;
  }
  EXPECT_GT(dropped, 10);
  EXPECT_LT(dropped, 54);
  Generator gen2(8);
  std::vector<float> unscaled = drop_path(x, p, true, gen2, false).to_vector<float>();
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(unscaled[i], v[i] / 2.0f);
}

TEST(Random, EvalModeAndZeroPAreIdentity) {
  Generator gen(1);
  Tensor x = Tensor::ones({3, 4});
  EXPECT_TRUE(dropout(x, 0.5, false, gen).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true, gen).same(x));
  EXPECT_TRUE(drop_path(x, 0.5, false, gen).same(x));
  EXPECT_TRUE(drop_path(x, 0.0, true, gen).same(x));
  EXPECT_EQ(gen.offset(), 0u);  // nothing drawn
}

TEST(Random, POneGivesZeros) {
  Generator gen(1);
  Tensor x = Tensor::full({3, 4}, INFINITY, DType::Float64).requires_grad_();
  Tensor y = dropout(x, 1.0, true, gen);
  EXPECT_EQ(y.to_vector<double>(), std::vector<double>(12, 0.0));
  y.backward(Tensor::ones({3, 4}, DType::Float64));
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(12, 0.0));
  EXPECT_EQ(drop_path(x.detach(), 1.0, true, gen).to_vector<double>(), std::vector<double>(12, 0.0));
}

TEST(Random, SameSeedSameMaskDifferentSeedDifferentMask) {
  Tensor x = Tensor::ones({4000}, DType::BFloat16);
  auto mask = [&](uint64_t seed) {
    Generator g(seed);
    return dropout(x, 0.5, true, g).to(DType::Float32).to_vector<float>();
  };
  EXPECT_EQ(mask(5), mask(5));
  EXPECT_NE(mask(5), mask(6));
  Generator g(5);  // consecutive draws from one generator differ
  std::vector<float> a = dropout(x, 0.5, true, g).to(DType::Float32).to_vector<float>();
  std::vector<float> b = dropout(x, 0.5, true, g).to(DType::Float32).to_vector<float>();
  EXPECT_NE(a, b);
  Generator h(5);
  Tensor xs = Tensor::ones({200, 3});
  Generator h2(5);
  EXPECT_EQ(drop_path(xs, 0.5, true, h).to_vector<float>(), drop_path(xs, 0.5, true, h2).to_vector<float>());
}

TEST(Random, BadInputs) {
  Tensor x = Tensor::ones({2, 3});
  for (double p : {-0.1, 1.5, double(NAN)}) {
    try {
      dropout(x, p, true);
      ADD_FAILURE() << "expected an error for p = " << p;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("dropout"), std::string::npos) << msg;
      EXPECT_NE(msg.find("[0, 1]"), std::string::npos) << msg;
    }
  }
  EXPECT_THROW(dropout(x, 1.5, false), Error);  // invalid p throws even in eval mode
  try {
    drop_path(x, 2.0, true);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("drop_path"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  }
  EXPECT_THROW(dropout(Tensor::zeros({3}, DType::Int64), 0.5, true), Error);
  EXPECT_THROW(drop_path(Tensor::scalar(1.0), 0.5, true), Error);
}

}  // namespace
}  // namespace unirep
