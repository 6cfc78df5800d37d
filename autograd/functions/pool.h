// Pooling and resizing of NHWC activations [N, H, W, C].
#pragma once
#include "core/tensor.h"

namespace unirep {

// Mean over H and W: [N, H, W, C] -> [N, C].
Tensor global_avg_pool(const Tensor& x);

struct MaxPool2dParams {
  int64_t kernel_h = 2, kernel_w = 2;
  int64_t stride_h = 2, stride_w = 2;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  bool ceil_mode = false;
};
// As torch max_pool2d (padding counts as -inf). The gradient goes to the first maximum of a window.
Tensor max_pool2d(const Tensor& x, const MaxPool2dParams& params);

// As torch adaptive_avg_pool2d: output cell (i, j) averages rows floor(i H / oh) .. ceil((i+1) H / oh).
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

// Bilinear resize as torch interpolate(mode="bilinear") with the given align_corners.
Tensor interpolate_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners);

}  // namespace unirep
