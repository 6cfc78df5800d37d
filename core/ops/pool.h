// Pooling and resizing kernels over contiguous NHWC tensors [N, H, W, C] (channels innermost).
//
//   global average pool   out[n, c] = sum_{h,w} x[n, h, w, c] / (H W);  dx = dy / (H W) broadcast.
//   max pool 2d           out[n, oh, ow, c] = max over the window rows oh*sh - ph + i*dh (i < kh), columns
//                         likewise; padding is -inf. indices[n, oh, ow, c] = h*W + w of the FIRST maximum
//                         (NaN counts as a maximum), as PyTorch.
//   adaptive avg pool     bin i covers rows floor(i H / OH) .. ceil((i+1) H / OH) (exclusive), as PyTorch.
//   bilinear resize       as torch interpolate(mode="bilinear"): per dim a source coordinate
//                           align_corners: src = dst (in-1)/(out-1) (0 when out == 1)
//                           otherwise:     src = max((dst + 0.5) in/out - 0.5, 0)
//                         taps i0 = floor(src), i1 = min(i0 + 1, in-1), weights 1 - (src - i0), src - i0.
//
// Every backward is a GATHER from the input side: each input element sums the output gradients that
// reference it (found from the index/bin/tap geometry, which is monotone in the output index), so no
// kernel needs atomics, results are deterministic, and bf16/f16 gradients accumulate in float.
// All kernels take contiguous tensors of one floating dtype (indices: int64), the same device.
#pragma once
#include "core/tensor.h"

namespace unirep {

struct PoolWindow {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
};

// Output length of one max-pooled dim, as PyTorch's pooling_output_shape: with ceil_mode the division
// rounds up, but the last window must start inside the input or the left padding. May be <= 0 for
// inputs too small for the window (the caller rejects that).
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, bool ceil_mode);

// out [N, C] from x [N, H, W, C]; dx [N, H, W, C] from dy [N, C].
void global_avg_pool_forward(const Tensor& out, const Tensor& x);
void global_avg_pool_backward(const Tensor& dx, const Tensor& dy);

// out and indices (int64) [N, OH, OW, C] from x [N, H, W, C]; dx [N, H, W, C] from dy and indices.
void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const PoolWindow& win);
void max_pool2d_backward(const Tensor& dx, const Tensor& dy, const Tensor& indices, const PoolWindow& win);

// out [N, OH, OW, C] from x [N, H, W, C]; the output sizes come from the tensors' shapes.
void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x);
void adaptive_avg_pool2d_backward(const Tensor& dx, const Tensor& dy);

void bilinear_forward(const Tensor& out, const Tensor& x, bool align_corners);
void bilinear_backward(const Tensor& dx, const Tensor& dy, bool align_corners);

namespace cuda {
void global_avg_pool_forward(const Tensor& out, const Tensor& x);
void global_avg_pool_backward(const Tensor& dx, const Tensor& dy);
void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const PoolWindow& win);
void max_pool2d_backward(const Tensor& dx, const Tensor& dy, const Tensor& indices, const PoolWindow& win);
void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x);
void adaptive_avg_pool2d_backward(const Tensor& dx, const Tensor& dy);
void bilinear_forward(const Tensor& out, const Tensor& x, bool align_corners);
void bilinear_backward(const Tensor& dx, const Tensor& dy, bool align_corners);
}  // namespace cuda

// ---- geometry shared by the CPU and CUDA kernels (host and device)
namespace pool_detail {

// Rows of bin i of an adaptive pool from `in` to `out`: [bin_start, bin_end).
UNIREP_HD int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
UNIREP_HD int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
// The bins containing input row h are first_bin(h) .. last_bin(h) (inclusive).
UNIREP_HD int64_t first_bin(int64_t h, int64_t in, int64_t out) { return (h * out) / in; }
UNIREP_HD int64_t last_bin(int64_t h, int64_t in, int64_t out) {
  int64_t b = ((h + 1) * out + in - 1) / in - 1;
  return b < out - 1 ? b : out - 1;
}

// Max pool: the outputs whose window may contain input row h are lo .. hi (inclusive, maybe empty).
UNIREP_HD void window_range(int64_t h, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, int64_t out,
                            int64_t& lo, int64_t& hi) {
  int64_t first = h + pad - (kernel - 1) * dilation;  // windows starting at or after this row
  lo = first > 0 ? (first + stride - 1) / stride : 0;
  hi = (h + pad) / stride;
  if (hi > out - 1) hi = out - 1;
}

template <class acc> UNIREP_HD acc linear_scale(int64_t in, int64_t out, bool align_corners) {
  if (align_corners) return out > 1 ? acc(in - 1) / acc(out - 1) : acc(0);
  return acc(in) / acc(out);
}

template <class acc> struct LinearTap {
  int64_t i0, i1;
  acc l0, l1;
};

// Source taps of output index `dst` along a dim of input length `in` (the formulas in the file comment).
template <class acc> UNIREP_HD LinearTap<acc> linear_tap(int64_t dst, int64_t in, acc scale, bool align_corners) {
  acc src = align_corners ? scale * acc(dst) : scale * (acc(dst) + acc(0.5)) - acc(0.5);
  if (src < acc(0)) src = acc(0);
  int64_t i0 = int64_t(src);
  if (i0 > in - 1) i0 = in - 1;
  LinearTap<acc> t;
  t.i0 = i0;
  t.i1 = i0 < in - 1 ? i0 + 1 : i0;
  t.l1 = src - acc(i0);
  t.l0 = acc(1) - t.l1;
  return t;
}

// Weight with which output tap t reads input index i (both taps when they coincide at the edge).
template <class acc> UNIREP_HD acc linear_weight(const LinearTap<acc>& t, int64_t i) {
  acc w = acc(0);
  if (t.i0 == i) w += t.l0;
  if (t.i1 == i) w += t.l1;
  return w;
}

// First output index whose i0 exceeds v (out when none). i0 is non-decreasing in the output index.
template <class acc>
UNIREP_HD int64_t linear_first_above(int64_t v, int64_t in, int64_t out, acc scale, bool align_corners) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (linear_tap<acc>(mid, in, scale, align_corners).i0 > v)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// The outputs reading input index i are exactly those with i0 in {i-1, i}: [lo, hi).
template <class acc>
UNIREP_HD void linear_range(int64_t i, int64_t in, int64_t out, acc scale, bool align_corners, int64_t& lo,
                            int64_t& hi) {
  lo = linear_first_above<acc>(i - 2, in, out, scale, align_corners);
  hi = linear_first_above<acc>(i, in, out, scale, align_corners);
}

}  // namespace pool_detail

}  // namespace unirep
