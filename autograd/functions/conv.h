// 2-d convolution over NHWC activations with PyTorch-shaped weights [C_out, C_in / groups, kH, kW].
// Depthwise convs (groups == C_in == C_out) take dedicated kernels (any odd or even kernel, stride,
// dilation); other convs go through im2col + BLAS on the CPU and cuDNN on the GPU. Under autocast
// the conv runs in the autocast dtype (autograd/autocast.h).
#pragma once
#include "core/tensor.h"

namespace unirep {

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

// x [N, H, W, C_in], weight [C_out, C_in / groups, kH, kW], bias [C_out] or undefined
// -> [N, H_out, W_out, C_out], H_out = (H + 2 pad_h - dilation_h (kH - 1) - 1) / stride_h + 1.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params);

}  // namespace unirep
