// Fast depthwise convolution on CUDA for stride 1 (the UniRepLKNet mixers: 3x3, 13x13 and the dilated
// reparam branches), NHWC, float32 / bfloat16 / float16 with float accumulation. The kernels and their
// memory plan are described in core/ops/depthwise_conv_kernels.cuh; conv2d's CUDA entry points route
// the geometries covered here (depthwise_tiled_supported) to these and keep the direct kernels for the
// rest (stride 2, even or > 31 kernel widths, float64).
// Layouts as in core/ops/conv2d.h: x [N, H, W, C], weight [C, 1, R, S], y [N, Ho, Wo, C]; contiguous.
#pragma once
#include "core/ops/conv2d.h"

namespace unirep::cuda {

bool depthwise_tiled_supported(const ConvGeometry& g, DType dtype);

// The current device's opt-in shared memory per block, which bounds the tiles; without a device
// (host-only callers) the kernels' own cap, with the failed query's error cleared.
size_t depthwise_smem_limit();
// y = conv(x, w) + bias (bias [C] or undefined).
void depthwise_tiled_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
                             const ConvGeometry& g);
// dx from dy: the forward on dy with the kernel flipped and the padding mirrored.
void depthwise_tiled_backward_input(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvGeometry& g);
// dw [C, 1, R, S]: per-split partial sums in registers, then a fixed-order sum over splits.
void depthwise_tiled_backward_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvGeometry& g);

}  // namespace unirep::cuda
