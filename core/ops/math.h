// Scalar math that compiles for the host and the device with float and double overloads, so the
// CPU reference and the CUDA kernels call the same functions.
#pragma once
#include <cmath>

#include "core/dtype.h"

namespace unirep::math {

UNIREP_HD float exp(float x) { return ::expf(x); }
UNIREP_HD double exp(double x) { return ::exp(x); }
UNIREP_HD float log(float x) { return ::logf(x); }
UNIREP_HD double log(double x) { return ::log(x); }
UNIREP_HD float sqrt(float x) { return ::sqrtf(x); }
UNIREP_HD double sqrt(double x) { return ::sqrt(x); }
UNIREP_HD float erf(float x) { return ::erff(x); }
UNIREP_HD double erf(double x) { return ::erf(x); }
UNIREP_HD float pow(float x, float p) { return ::powf(x, p); }
UNIREP_HD double pow(double x, double p) { return ::pow(x, p); }
UNIREP_HD float floor(float x) { return ::floorf(x); }
UNIREP_HD double floor(double x) { return ::floor(x); }
template <class T> UNIREP_HD T max(T a, T b) { return a > b ? a : b; }
template <class T> UNIREP_HD T min(T a, T b) { return a < b ? a : b; }
template <class T> UNIREP_HD T sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }

}  // namespace unirep::math
