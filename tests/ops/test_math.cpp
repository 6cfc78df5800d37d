// The host polynomial erf and e^y (core/ops/math.h) against float64 libm: within 2 ulp over a
// sample of every binade (each 1021st float) and over every float near the region switches
// (|x| = 1 and 4 for erf), plus the special values. The exhaustive sweep over all 2^32 floats
// (run once when the coefficients were fitted) gave 1.19 ulp for erf and 1.05 ulp for e^y.
#include <cmath>
#include <cstdint>
#include <cstring>

#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "core/ops/math.h"

namespace unirep {
namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

// |got - ref| in units of the spacing of floats at ref.
double ulps(float got, double ref) {
  const float r = static_cast<float>(ref);
  if (got == r) return 0;
  const double spacing = double(std::nextafter(std::fabs(r), INFINITY)) - double(std::fabs(r));
  return std::fabs(double(got) - ref) / spacing;
}

template <class F> void for_each_sampled_float(const F& f) {
  for (uint32_t b = 0; b < 0x7f800000u; b += 1021) f(from_bits(b));
  for (float lo : {0.99f, 3.99f})
    for (float x = lo; x < lo + 0.02f; x = std::nextafter(x, INFINITY)) f(x);
}

TEST(Math, PolynomialErfWithinTwoUlp) {
  double worst = 0;
  float at = 0;
  for_each_sampled_float([&](float x) {
    for (float v : {x, -x}) {
      const double e = ulps(math::poly::erf(v), std::erf(double(v)));
      if (e > worst) {
        worst = e;
        at = v;
      }
    }
  });
  EXPECT_LE(worst, 2.0) << "at x = " << at;
  EXPECT_TRUE(std::isnan(math::poly::erf(NAN)));
  EXPECT_EQ(math::poly::erf(INFINITY), 1.0f);
  EXPECT_EQ(math::poly::erf(-INFINITY), -1.0f);
  EXPECT_EQ(math::poly::erf(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(math::poly::erf(-0.0f)));
}

TEST(Math, PolynomialExpWithinTwoUlp) {
  double worst = 0;
  float at = 0;
  for_each_sampled_float([&](float x) {
    if (x > 87.0f) return;
    const double e = ulps(math::poly::exp_nonpositive(-x), std::exp(-double(x)));
    if (e > worst) {
      worst = e;
      at = -x;
    }
  });
  EXPECT_LE(worst, 2.0) << "at y = " << at;
  EXPECT_EQ(math::poly::exp_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(math::poly::exp_nonpositive(-100.0f), 0.0f);
  EXPECT_EQ(math::poly::exp_nonpositive(-INFINITY), 0.0f);
  EXPECT_TRUE(std::isnan(math::poly::exp_nonpositive(NAN)));
}

TEST(Math, FloatGeluAndGradientMatchFloat64) {
  // Absolute error within a few float ulps of the value's scale (the formula itself cancels for
  // large negative x, as libm's does).
  for (float x = -12.0f; x <= 12.0f; x += 0.001953125f) {
    const double xd = x, cdf = 0.5 * (1 + std::erf(xd / std::sqrt(2.0)));
    const double gelu = xd * cdf, grad = cdf + xd * 0.3989422804014327 * std::exp(-0.5 * xd * xd);
    EXPECT_NEAR(ew::gelu(x), gelu, 4e-7 * std::max(1.0, std::fabs(gelu))) << x;
    EXPECT_NEAR(ew::gelu_grad(x), grad, 4e-7 * std::max(1.0, std::fabs(grad))) << x;
  }
}

}  // namespace
}  // namespace unirep
