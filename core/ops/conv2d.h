// 2-d convolution kernels over NHWC activations, weights [K, C / groups, R, S] (PyTorch's shape):
//   y[n, ho, wo, k] = b[k] + sum_{r, s, c in group(k)} x[n, ho sh - ph + r dh, wo sw - pw + s dw, c] w[k, c', r, s]
// (cross-correlation; taps outside the input read zero padding).
//
// Three paths:
//   depthwise (groups == C == K), CUDA, stride 1, odd kernel widths 3..31, float32/bf16/f16: the tiled
//     kernels of core/ops/depthwise_conv.h (shared-memory tiles, register sliding windows).
//   depthwise otherwise: direct kernels on both devices. The weight is first transposed to
//     [R, S, C] so the channel dim is contiguous in every operand and the inner loops / the threads of a
//     warp run over C. The input gradient is a gather (each dx element sums the taps that read it), so
//     it needs no atomics; the weight gradient is a reduction over N Ho Wo per (r, s, c), done as
//     per-chunk (CPU) or per-block (CUDA) partial sums that a second pass adds up in a fixed order.
//   dense / grouped, CPU: im2col into rows (n, ho, wo) x columns (g, r, s, c') followed by one BLAS
//     GEMM per group against the weight transposed to [K, R, S, C'], a chunk of images at a time so the
//     column buffer stays small; backward: dcol = dy W then col2im (a gather, like the depthwise dx),
//     dW = dy^T col. 1x1 stride-1 unpadded convs skip im2col (the input already is the column matrix).
//     bf16/f16 run the float32 path on converted copies.
//   dense / grouped, CUDA: cuDNN with NHWC tensors and an NHWC ([K, R, S, C']) filter.
// Every tensor passed in is contiguous; outputs are fully overwritten.
#pragma once
#include "core/tensor.h"

namespace unirep {

struct ConvGeometry {
  int64_t N = 0, H = 0, W = 0, C = 0;  // input [N, H, W, C]
  int64_t K = 0, R = 0, S = 0;          // output channels, kernel height and width
  int64_t Ho = 0, Wo = 0;               // output [N, Ho, Wo, K]
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  int64_t groups = 1;
  bool depthwise() const { return groups == C && groups == K; }
  bool pointwise() const { return R == 1 && S == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

// y [N, Ho, Wo, K] = conv(x, w) + bias (bias [K] or undefined).
void conv2d_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvGeometry& g);
// dx [N, H, W, C] from dy [N, Ho, Wo, K].
void conv2d_backward_input(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvGeometry& g);
// dw [K, C / groups, R, S] from dy and x.
void conv2d_backward_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvGeometry& g);
// db [K] = sum of dy over N, Ho, Wo.
void conv2d_backward_bias(const Tensor& db, const Tensor& dy);

namespace cuda {
void conv2d_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvGeometry& g);
void conv2d_backward_input(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvGeometry& g);
void conv2d_backward_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvGeometry& g);
void conv2d_backward_bias(const Tensor& db, const Tensor& dy);
}  // namespace cuda

}  // namespace unirep
