// The depthwise convolutions of a Dilated Reparam Block in training (spec 2.5) as one op: branch i is a
// depthwise conv of the SAME x with weight w_i [C, 1, k_i, k_i] (k_i odd), dilation d_i, padding
// d_i (k_i - 1) / 2, stride 1, no bias, so every output z_i is shaped like x [N, H, W, C] (NHWC):
//   z_i[n, h, w, c]  = sum_{r, s < k_i} x[n, h - p_i + r d_i, w - p_i + s d_i, c] w_i[c, 0, r, s]
//   dx               = sum_i conv_transpose_i(dz_i)
//   dw_i[c, 0, r, s] = sum_{n, h, w} dz_i[n, h, w, c] x[n, h - p_i + r d_i, w - p_i + s d_i, c]
// On CUDA the K = 13 set {13 d1, 5 d1, 7 d2, 3 d3, 3 d4, 3 d5} runs the forward and the input gradient as
// one kernel each (core/ops/dilated_branches_kernels.cuh); any other set, geometry or device takes the
// per-branch conv2d kernels (core/ops/conv2d.h), the reference. The weight gradients are per branch.
// Every tensor passed in is contiguous; outputs are fully overwritten.
#pragma once
#include <vector>

#include "core/ops/conv2d.h"

namespace unirep {

// The conv2d geometry of one branch on x [N, H, W, C].
ConvGeometry dilated_branch_geometry(const Shape& x_shape, int64_t kernel, int64_t dilation);

// zs[i] = branch i of x.
void dilated_branches_forward(const std::vector<Tensor>& zs, const Tensor& x, const std::vector<Tensor>& ws,
                              const std::vector<int64_t>& dilations);
// dx = sum over branches of the input gradient of dzs[i].
void dilated_branches_backward_input(const Tensor& dx, const std::vector<Tensor>& dzs, const std::vector<Tensor>& ws,
                                     const std::vector<int64_t>& dilations);
// dws[i] = the weight gradient of branch i (undefined dws[i]: skipped).
void dilated_branches_backward_weight(const std::vector<Tensor>& dws, const std::vector<Tensor>& dzs, const Tensor& x,
                                      const std::vector<int64_t>& dilations);

namespace cuda {
// Whether the fused kernels cover this branch set (kernel widths, dilations), x shape and dtype.
bool dilated_branches_fused_supported(const Shape& x_shape, DType dtype, const std::vector<int64_t>& kernels,
                                      const std::vector<int64_t>& dilations);
void dilated_branches_forward_fused(const std::vector<Tensor>& zs, const Tensor& x, const std::vector<Tensor>& ws);
void dilated_branches_backward_input_fused(const Tensor& dx, const std::vector<Tensor>& dzs,
                                           const std::vector<Tensor>& ws);
}  // namespace cuda

}  // namespace unirep
