// Scalar math that compiles for the host and the device with float and double overloads, so the
// CPU reference and the CUDA kernels call the same functions.
//
// erf(float) and gauss(float) = e^(-x^2 / 2) on the host are branch-free polynomial code instead of
// calls to libm's erff / expf, which keep any loop around them scalar: the GELU kernels spent most
// of their time there. Both are within 2 ulp of the correctly rounded value over every float
// (tests/ops/test_math.cpp). The coefficients are near-minimax fits (weighted least squares,
// Lawson iterations, mpmath references):
//   |x| < 1:  erf(x) = x P(x^2), P of degree 6, relative error 1.2e-9;
//   |x| >= 1: erf(x) = sign(x) (1 - e^(H(t) - t^2)), t = min(|x|, 4) (erf rounds to 1 from 3.92),
//             H(t) = log erfc(t) + t^2 of degree 6, smooth and small on [1, 4]; its error 1e-9
//             is scaled by erfc(t) / erf(t) <= 0.19 in erf;
//   e^y, y <= 0: y = k ln2 + r, |r| <= ln2 / 2 (Cody-Waite: ln2 in two parts, the first exact
//             times any k), e^r = 1 + r Q(r) of degree 6 (relative error 1.5e-9), times 2^k built
//             in the exponent bits; 0 below -87.3 (where e^y leaves the normal floats).
// On the device and for double they are the library functions.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace unirep::math {

namespace poly {

inline __attribute__((always_inline)) float exp_nonpositive(float y) {
  // t = 1.5 * 2^23 + k with k = round(y / ln2): k sits in the low bits of t (unsigned arithmetic,
  // so inputs out of the domain give garbage, replaced below, and never undefined behaviour).
  const float kRound = 12582912.0f;
  const float t = y * 1.44269504088896341f + kRound;
  const float k = t - kRound;
  float r = y - k * 0.693145751953125f;  // ln2 = 0.693145751953125 + 1.42860682030941723e-6
  r = r - k * 1.42860682030941723e-6f;
  float q = 1.3953236075e-03f;
  q = q * r + 8.3741814761e-03f;
  q = q * r + 4.1666148705e-02f;
  q = q * r + 1.6666430119e-01f;
  q = q * r + 5.0000001240e-01f;
  q = q * r + 1.0000000330e+00f;
  uint32_t t_bits;
  std::memcpy(&t_bits, &t, sizeof(t_bits));
  const uint32_t scale_bits = (t_bits - 0x4B400000u + 127u) << 23;  // 0x4B400000: the bits of 1.5 * 2^23
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  const float e = (1.0f + r * q) * scale;
  return y < -87.3f ? 0.0f : e;  // NaN stays NaN (through r)
}

inline __attribute__((always_inline)) float erf(float x) {
  const float s = x * x;
  float p = 7.8540263290e-05f;
  p = p * s - 8.0102476600e-04f;
  p = p * s + 5.1883345024e-03f;
  p = p * s - 2.6853816070e-02f;
  p = p * s + 1.1283585271e-01f;
  p = p * s - 3.7612625840e-01f;
  p = p * s + 1.283791657e-01f;  // P(s) - 1: x P(s) is x + x (P(s) - 1), so x is added exactly
  const float t = x < 0.0f ? -x : x;
  const float u = t > 4.0f ? 4.0f : t;  // NaN stays NaN
  float h = 1.8638008408e-04f;
  h = h * u - 2.9476667948e-03f;
  h = h * u + 2.1838096961e-02f;
  h = h * u - 1.0310682135e-01f;
  h = h * u + 3.6185524181e-01f;
  h = h * u - 1.1270892338e+00f;
  h = h * u - 3.4151259372e-04f;
  const float tail = 1.0f - exp_nonpositive(h - u * u);
  return t < 1.0f ? x + x * p : (x < 0.0f ? -tail : tail);
}

}  // namespace poly

UNIREP_HD float exp(float x) { return ::expf(x); }
UNIREP_HD double exp(double x) { return ::exp(x); }
UNIREP_HD float log(float x) { return ::logf(x); }
UNIREP_HD double log(double x) { return ::log(x); }
UNIREP_HD float sqrt(float x) { return ::sqrtf(x); }
UNIREP_HD double sqrt(double x) { return ::sqrt(x); }
UNIREP_HD float erf(float x) {
#ifdef __CUDA_ARCH__
  return ::erff(x);
#else
  return poly::erf(x);
#endif
}
UNIREP_HD double erf(double x) { return ::erf(x); }
UNIREP_HD float pow(float x, float p) { return ::powf(x, p); }
UNIREP_HD double pow(double x, double p) { return ::pow(x, p); }
UNIREP_HD float floor(float x) { return ::floorf(x); }
UNIREP_HD double floor(double x) { return ::floor(x); }
// e^(-x^2 / 2).
UNIREP_HD float gauss(float x) {
#ifdef __CUDA_ARCH__
  return ::expf(-0.5f * x * x);
#else
  return poly::exp_nonpositive(-0.5f * x * x);
#endif
}
UNIREP_HD double gauss(double x) { return ::exp(-0.5 * x * x); }
template <class T> UNIREP_HD T max(T a, T b) { return a > b ? a : b; }
template <class T> UNIREP_HD T min(T a, T b) { return a < b ? a : b; }
template <class T> UNIREP_HD T sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }

}  // namespace unirep::math
