// The end of a UniRepLKNet block in one pass: out = x + keep[n] * gamma[c] * branch, where gamma
// is the layer scale (absent: 1) and keep[n] is drop path's per-sample factor (spec 2.8):
// 1 / (1 - p) for kept samples and a select of x alone for dropped ones, from the same Philox
// counters drop_path draws (core/ops/random.h), so masks match the unfused ops.
//
// Unfused that is mul(branch, gamma), drop_path, add: three passes writing two temporaries, and in
// backward a broadcast mul, a mul, a column sum and the mask again. Fused:
//   forward:  read x and branch, write out (values summed in float, rounded once);
//   backward: dx = dout (the same tensor, no pass), and one pass over dout and branch that writes
//             dbranch = keep * gamma * dout and sums dgamma[c] = sum_rows keep * dout * branch
//             in fixed-order per-block partials (no atomics: deterministic).
// Tensors are channel-last [rows, C] as far as the kernels care: x, branch, out, dout contiguous with
// C innermost and dim 0 the sample; gamma [C] float32 (with a bf16/f16 x) or x's dtype.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace unirep {

struct ResidualScale {
  bool drop = false;  // drop path active (training with p > 0)
  uint64_t seed = 0, offset = 0;
  double p = 0.0;
  double keep_scale = 1.0;  // 1 / (1 - p) (timm's scale_by_keep)
  int64_t per_sample = 1;   // elements of one sample: numel / dim 0
};

// gamma may be undefined (no layer scale).
void scaled_residual_forward(const Tensor& out, const Tensor& x, const Tensor& branch, const Tensor& gamma,
                             const ResidualScale& s);
// dbranch and/or dgamma may be undefined (not needed); dgamma has gamma's dtype.
void scaled_residual_backward(const Tensor& dbranch, const Tensor& dgamma, const Tensor& dout, const Tensor& branch,
                              const Tensor& gamma, const ResidualScale& s);

namespace cuda {
void scaled_residual_forward(const Tensor& out, const Tensor& x, const Tensor& branch, const Tensor& gamma,
                             const ResidualScale& s);
void scaled_residual_backward(const Tensor& dbranch, const Tensor& dgamma, const Tensor& dout, const Tensor& branch,
                              const Tensor& gamma, const ResidualScale& s);
}  // namespace cuda

}  // namespace unirep
