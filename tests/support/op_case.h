// Shared test drivers for every op: one table of cases per op family, run three ways.
//   Gradcheck                — float64 CPU finite differences (autograd/gradcheck.h)
//   CudaMatchesCpuFloat32    — forward and every input gradient, CUDA vs CPU, float32
//   CudaMatchesCpuBFloat16   — the same in bfloat16
// The CUDA tests skip without a GPU. Errors are normwise relative, ||cuda - cpu|| / ||cpu||, with
// the tolerance stated per case (defaults: 1e-5 float32, 1e-2 bfloat16).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/generator.h"

namespace unirep::testing {

struct OpCase {
  std::string name;
  // float64 CPU inputs; differentiable ones have requires_grad set. Index tensors are int64.
  std::function<std::vector<Tensor>(Generator&)> make_inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  double f32_tol = 1e-5;
  double bf16_tol = 1e-2;
  GradcheckOptions gradcheck_options = {};
  bool gradcheck = true;  // false for cases sized for the GPU comparison only
};

// Convenience for make_inputs: normal samples, shape given, requires_grad set.
Tensor randn64(Generator& gen, const Shape& shape, bool requires_grad = true, double scale = 1.0);
// Uniform [lo, hi) float64 samples.
Tensor rand64(Generator& gen, const Shape& shape, double lo, double hi, bool requires_grad = true);

::testing::AssertionResult check_gradients(const OpCase& c);
::testing::AssertionResult check_cuda_matches_cpu(const OpCase& c, DType dtype);
double relative_error(const Tensor& actual, const Tensor& expected);

}  // namespace unirep::testing

#define UNIREP_SKIP_WITHOUT_CUDA() \
  if (!::unirep::cuda_available()) GTEST_SKIP() << "no CUDA device"

// Declares the three standard tests for the cases returned by CASES_FN (a function returning
// std::vector<OpCase>).
#define UNIREP_OP_CASE_TESTS(SUITE, CASES_FN)                                                     \
  TEST(SUITE, Gradcheck) {                                                                        \
    for (const auto& c : CASES_FN()) EXPECT_TRUE(::unirep::testing::check_gradients(c)) << c.name; \
  }                                                                                               \
  TEST(SUITE, CudaMatchesCpuFloat32) {                                                            \
    UNIREP_SKIP_WITHOUT_CUDA();                                                                   \
    for (const auto& c : CASES_FN())                                                              \
      EXPECT_TRUE(::unirep::testing::check_cuda_matches_cpu(c, ::unirep::DType::Float32)) << c.name; \
  }                                                                                               \
  TEST(SUITE, CudaMatchesCpuBFloat16) {                                                           \
    UNIREP_SKIP_WITHOUT_CUDA();                                                                   \
    for (const auto& c : CASES_FN())                                                              \
      EXPECT_TRUE(::unirep::testing::check_cuda_matches_cpu(c, ::unirep::DType::BFloat16)) << c.name; \
  }
