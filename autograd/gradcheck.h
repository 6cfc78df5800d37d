// Finite-difference check of the analytic gradients, in float64 on the CPU.
//
// The numeric Jacobian J (one column per input element) comes from central differences
// (f(x + eps) - f(x - eps)) / 2 eps. Analytic vector-Jacobian products u^T J come from backward
// with upstream gradient u: every one-hot u when the output is small (the whole Jacobian), else
// several random u. Each entry must satisfy |analytic - numeric| <= atol + rtol |numeric|.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace unirep {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  int64_t full_jacobian_max_outputs = 48;  // above: random projections
  int random_projections = 3;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first mismatch, naming input, element and both values
};

// inputs: float64 CPU tensors; those with requires_grad are checked.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace unirep
