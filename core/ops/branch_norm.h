// The sum of B batch-normalised branches of one shape, as in the Dilated Reparam Block:
//   y = sum_i ((x_i - mean_i[c]) * invstd_i[c] * w_i[c] + b_i[c]),      i = 0 .. B-1, 1 <= B <= 8
// and its input gradients, where dy is the same for every branch (d y / d bn_i(x_i) = 1):
//   dx_i = w_i invstd_i (dy - gs_i[c] / N - (x_i - mean_i) invstd_i^2 gs_i[C + c] / N)
// with gs_i = [sum(dy), sum(dy (x_i - mean_i))] per channel over the whole batch (batch norm's
// training backward, core/ops/norm.h's batch_norm_backward_elemt), or without gs (eval, mean/invstd
// from the running stats): dx_i = w_i invstd_i dy.
// The statistics, the running-stat updates and the sums gs come from norm.h's kernels per branch
// (batch_norm_stats / batch_norm_partial_sums, batch_norm_backward_reduce); these kernels replace the
// B applies and B - 1 adds (forward) and the B dx passes (backward) by one pass each: the forward
// reads every x_i once and writes y once (the sum kept in float, rounded once); the backward reads
// dy once and every x_i once and writes every dx_i.
//
// Channels last: every x_i, dx_i, y and dy is contiguous [rows, C] (NormShape with inner = 1) of one
// floating dtype T; mean/invstd [C] norm_stat_dtype(T); weight/bias [C] (either may be undefined:
// 1 and 0) of one dtype shared by every branch, T or float32 next to a bf16/f16 T (norm.h).
#pragma once
#include <vector>

#include "core/ops/norm.h"

namespace unirep {

constexpr int kMaxNormBranches = 8;

struct NormBranch {
  Tensor x, mean, invstd, weight, bias;
};

void batch_norm_branch_sum_apply(const Tensor& y, const std::vector<NormBranch>& branches, NormShape s);

// dxs[i] may be undefined (that gradient not wanted). grad_sums: [B, 2C] norm_stat_dtype, row i the
// summed gs_i, or undefined (eval). count: float64 [1] holding N on x's device (the summed count of
// the split batch norm, so no host reads it), or undefined: N = rows.
void batch_norm_branch_sum_dx(const std::vector<Tensor>& dxs, const Tensor& dy, const std::vector<NormBranch>& branches,
                              const Tensor& grad_sums, const Tensor& count, NormShape s);

namespace cuda {
void batch_norm_branch_sum_apply(const Tensor& y, const std::vector<NormBranch>& branches, NormShape s);
void batch_norm_branch_sum_dx(const std::vector<Tensor>& dxs, const Tensor& dy, const std::vector<NormBranch>& branches,
                              const Tensor& grad_sums, const Tensor& count, NormShape s);
}  // namespace cuda

}  // namespace unirep
