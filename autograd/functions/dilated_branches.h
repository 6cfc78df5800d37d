// The Dilated Reparam Block's depthwise convs on one x as one differentiable op (core/ops/dilated_branches.h):
// branch i convolves x [N, H, W, C] (NHWC) with the depthwise weight weights[i] [C, 1, k_i, k_i] (k_i odd),
// dilation dilations[i], padding dilations[i] (k_i - 1) / 2, stride 1, no bias; returns one output per branch,
// each shaped like x. One autograd node: its backward computes dx as one sum over the branches (one kernel
// on CUDA for the K = 13 set) and each weight's gradient. Under autocast it behaves as conv2d: x and the
// weights run in the autocast dtype (autograd/autocast.h).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace unirep {

std::vector<Tensor> dilated_branch_convs(const Tensor& x, const std::vector<Tensor>& weights,
                                         const std::vector<int64_t>& dilations);

}  // namespace unirep
