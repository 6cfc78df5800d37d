// Differentiable pooling and resizing of NHWC activations over the kernels of core/ops/pool.h.
// Each op validates its input, runs the forward kernel on the detached, contiguous input and records a
// backward that runs the matching gather kernel (max_pool2d keeps its int64 argmax indices for it).
#include "autograd/functions/pool.h"

#include "autograd/node.h"
#include "core/ops/pool.h"

namespace unirep {

namespace {

std::string pair_str(int64_t a, int64_t b) { return to_string(std::vector<int64_t>{a, b}); }

void check_nhwc(const char* op, const Tensor& x) {
  UNIREP_CHECK(x.defined(), op, ": undefined input");
  UNIREP_CHECK(is_floating(x.dtype()), op, ": expected a floating input, got ", x.str());
  UNIREP_CHECK(x.dim() == 4, op, ": expected a 4-d NHWC input [N, H, W, C], got shape ", shape_str(x.shape()));
  UNIREP_CHECK(x.size(1) > 0 && x.size(2) > 0, op, ": expected an input [N, H, W, C] with H, W > 0, got shape ",
               shape_str(x.shape()));
}

void check_output_size(const char* op, const Tensor& x, int64_t out_h, int64_t out_w) {
  UNIREP_CHECK(out_h > 0 && out_w > 0, op, ": output size must be positive, got ", pair_str(out_h, out_w),
               " for input shape ", shape_str(x.shape()));
}

// Runs a gather backward kernel: dx of the input's shape from the (made contiguous) output gradient.
template <class K> Tensor backward_into(const Shape& in_shape, const Tensor& g, const K& kernel) {
  Tensor gc = g.contiguous();
  Tensor dx = Tensor::empty(in_shape, gc.dtype(), gc.device());
  kernel(dx, gc);
  return dx;
}

}  // namespace

Tensor global_avg_pool(const Tensor& x) {
  check_nhwc("global_avg_pool", x);
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty({x.size(0), x.size(3)}, x.dtype(), x.device());
  global_avg_pool_forward(out, xc);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record("global_avg_pool", {x}, {out}, [in_shape](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{backward_into(
          in_shape, g[0], [](const Tensor& dx, const Tensor& dy) { global_avg_pool_backward(dx, dy); })};
    });
  }
  return out;
}

Tensor max_pool2d(const Tensor& x, const MaxPool2dParams& p) {
  const char* op = "max_pool2d";
  check_nhwc(op, x);
  UNIREP_CHECK(p.kernel_h > 0 && p.kernel_w > 0, op, ": kernel size must be positive, got ",
               pair_str(p.kernel_h, p.kernel_w), " for input shape ", shape_str(x.shape()));
  UNIREP_CHECK(p.stride_h > 0 && p.stride_w > 0, op, ": stride must be positive, got ",
               pair_str(p.stride_h, p.stride_w), " for input shape ", shape_str(x.shape()));
  UNIREP_CHECK(p.dilation_h > 0 && p.dilation_w > 0, op, ": dilation must be positive, got ",
               pair_str(p.dilation_h, p.dilation_w), " for input shape ", shape_str(x.shape()));
  UNIREP_CHECK(p.pad_h >= 0 && p.pad_w >= 0 && p.pad_h <= p.kernel_h / 2 && p.pad_w <= p.kernel_w / 2, op,
               ": padding must be between 0 and half the kernel size, got padding ", pair_str(p.pad_h, p.pad_w),
               " with kernel ", pair_str(p.kernel_h, p.kernel_w), " for input shape ", shape_str(x.shape()));
  const int64_t oh = pool_output_size(x.size(1), p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
  const int64_t ow = pool_output_size(x.size(2), p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
  UNIREP_CHECK(oh > 0 && ow > 0, op, ": input shape ", shape_str(x.shape()), " is too small for kernel ",
               pair_str(p.kernel_h, p.kernel_w), ", stride ", pair_str(p.stride_h, p.stride_w), ", padding ",
               pair_str(p.pad_h, p.pad_w), ", dilation ", pair_str(p.dilation_h, p.dilation_w),
               ": output size would be ", pair_str(oh, ow));
  PoolWindow win{p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w};
  Tensor xc = x.detach().contiguous();
  Shape out_shape{x.size(0), oh, ow, x.size(3)};
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(out_shape, DType::Int64, x.device());
  max_pool2d_forward(out, indices, xc, win);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(op, {x}, {out}, [in_shape, win, indices](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{backward_into(in_shape, g[0], [&](const Tensor& dx, const Tensor& dy) {
        max_pool2d_backward(dx, dy, indices, win);
      })};
    });
  }
  return out;
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  const char* op = "adaptive_avg_pool2d";
  check_nhwc(op, x);
  check_output_size(op, x, out_h, out_w);
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty({x.size(0), out_h, out_w, x.size(3)}, x.dtype(), x.device());
  adaptive_avg_pool2d_forward(out, xc);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(op, {x}, {out}, [in_shape](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{backward_into(
          in_shape, g[0], [](const Tensor& dx, const Tensor& dy) { adaptive_avg_pool2d_backward(dx, dy); })};
    });
  }
  return out;
}

Tensor interpolate_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners) {
  const char* op = "interpolate_bilinear";
  check_nhwc(op, x);
  check_output_size(op, x, out_h, out_w);
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty({x.size(0), out_h, out_w, x.size(3)}, x.dtype(), x.device());
  bilinear_forward(out, xc, align_corners);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(op, {x}, {out}, [in_shape, align_corners](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{backward_into(in_shape, g[0], [&](const Tensor& dx, const Tensor& dy) {
        bilinear_backward(dx, dy, align_corners);
      })};
    });
  }
  return out;
}

}  // namespace unirep
