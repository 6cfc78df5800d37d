// sum, mean, amax, norm and sum_to. The reduced dims are permuted innermost and the tensor made
// contiguous, so every reduction is a row reduction (core/ops/reduce.h).
// float16 sums, means and norms reduce a float32 copy of the input and round the finished result
// once: the kernels write their output in the input's dtype, and a float16 sum (or sum of
// squares) overflows 65504 long before the mean or the norm would, e.g. GRN's mean over 1024
// channel norms of about 100 (under float16 autocast, autograd/autocast.h).
#include <algorithm>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace unirep {

namespace {

struct ReducePlan {
  std::vector<bool> reduced;  // per input dim
  Shape out_shape;            // without the reduced dims
  Shape keep_shape;           // reduced dims kept as 1
  int64_t rows = 1, cols = 1;
};

ReducePlan plan_reduction(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  ReducePlan p;
  int64_t n = x.dim();
  p.reduced.assign(size_t(n), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, n, op);
    UNIREP_CHECK(!p.reduced[size_t(w)], op, ": dim ", d, " listed twice in ", to_string(dims));
    p.reduced[size_t(w)] = true;
  }
  for (int64_t d = 0; d < n; ++d) {
    if (p.reduced[size_t(d)]) {
      p.cols *= x.size(d);
      p.keep_shape.push_back(1);
    } else {
      p.rows *= x.size(d);
      p.out_shape.push_back(x.size(d));
      p.keep_shape.push_back(x.size(d));
    }
  }
  return p;
}

// Runs the row reduction of x over the plan's dims; the result has out_shape (no history), and
// x's dtype but float32 for a float16 sum (the caller rounds it with to_input_dtype).
Tensor reduce(const Tensor& input, const ReducePlan& p, ReduceOp op, const char* name) {
  UNIREP_CHECK(is_floating(input.dtype()), name, ": expected a floating tensor, got ", dtype_name(input.dtype()));
  if (op == ReduceOp::Max)
    UNIREP_CHECK(p.cols > 0, name, ": reduction over an empty dim of a tensor of shape ", shape_str(input.shape()));
  const Tensor x = input.dtype() == DType::Float16 && op != ReduceOp::Max ? input.detach().to(DType::Float32) : input;
  Tensor out = Tensor::empty(p.out_shape, x.dtype(), x.device());
  // Reduced dims forming one block of a contiguous tensor, kept dims on both sides or after it
  // (bias gradients, per-channel sums of NHWC data, sums over H, W of NHWC maps): reduce the columns
  // of [outer, block, inner] in place, no transpose. Dims of size 1 fit either side.
  if (x.is_contiguous()) {
    int64_t first = x.dim(), last = -1;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (p.reduced[size_t(d)] && x.size(d) != 1) {
        first = std::min(first, d);
        last = d;
      }
    int64_t outer = 1, block = 1, inner = 1;
    bool one_block = last >= 0;
    for (int64_t d = 0; d < x.dim() && one_block; ++d) {
      if (d < first)
        outer *= x.size(d);
      else if (d > last)
        inner *= x.size(d);
      else if (p.reduced[size_t(d)] || x.size(d) == 1)
        block *= x.size(d);
      else
        one_block = false;
    }
    if (one_block && inner > 1) {
      reduce_cols(out, x.detach(), outer, block, inner, op);
      return out;
    }
  }
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!p.reduced[size_t(d)]) perm.push_back(d);
  for (int64_t d = 0; d < x.dim(); ++d)
    if (p.reduced[size_t(d)]) perm.push_back(d);
  Tensor xp = x.detach().permute(perm).contiguous();
  reduce_rows(out, xp, p.rows, p.cols, op);
  return out;
}

Tensor finish(const Tensor& out, const ReducePlan& p, bool keepdim) {
  return keepdim ? out.view(p.keep_shape) : out;
}

Tensor to_input_dtype(const Tensor& out, const Tensor& x) { return cast(out, x.dtype()); }

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan p = plan_reduction(x, dims, "sum");
  Tensor out = to_input_dtype(finish(reduce(x, p, ReduceOp::Sum, "sum"), p, keepdim), x);
  if (needs_grad({x})) {
    Shape in_shape = x.shape(), keep = p.keep_shape;
    record("sum", {x}, {out}, [in_shape, keep](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].reshape(keep).expand(in_shape)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan p = plan_reduction(x, dims, "mean");
  UNIREP_CHECK(p.cols > 0, "mean: reduction over an empty dim of a tensor of shape ", shape_str(x.shape()));
  Tensor out = reduce(x, p, ReduceOp::Sum, "mean");
  elementwise(out, ew::MulScalar{1.0 / double(p.cols)}, out);
  out = to_input_dtype(finish(out, p, keepdim), x);
  if (needs_grad({x})) {
    Shape in_shape = x.shape(), keep = p.keep_shape;
    double scale = 1.0 / double(p.cols);
    record("mean", {x}, {out}, [in_shape, keep, scale](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{mul_scalar(g[0], scale).reshape(keep).expand(in_shape)};
    });
  }
  return out;
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan p = plan_reduction(x, dims, "amax");
  Tensor out = finish(reduce(x, p, ReduceOp::Max, "amax"), p, keepdim);
  if (needs_grad({x})) {
    Shape keep = p.keep_shape;
    std::vector<int64_t> reduced_dims;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (p.reduced[size_t(d)]) reduced_dims.push_back(d);
    record("amax", {x}, {out}, [keep, reduced_dims, sx = save(x), so = save(out)](const std::vector<Tensor>& g) {
      Tensor maxima = so.reshape(keep).expand(sx.shape());
      Tensor mask = Tensor::empty(sx.shape(), sx.dtype(), sx.device());
      elementwise(mask, ew::EqualMask{}, sx, maxima);
      Tensor count = sum(mask, reduced_dims, true);
      return std::vector<Tensor>{mul(mask, div(g[0].reshape(keep), count))};
    });
  }
  return out;
}

Tensor norm(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan p = plan_reduction(x, dims, "norm");
  Tensor out = reduce(x, p, ReduceOp::SumSquares, "norm");
  elementwise(out, ew::Sqrt{}, out);
  out = to_input_dtype(finish(out, p, keepdim), x);
  if (needs_grad({x})) {
    Shape keep = p.keep_shape;
    record("norm", {x}, {out}, [keep, sx = save(x), so = save(out)](const std::vector<Tensor>& g) {
      Tensor scale = Tensor::empty(so.shape(), so.dtype(), so.device());
      elementwise(scale, ew::DivOrZero{}, g[0], so);
      return std::vector<Tensor>{mul(sx, scale.reshape(keep))};
    });
  }
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  int64_t lead = x.dim() - int64_t(shape.size());
  UNIREP_CHECK(lead >= 0, "sum_to: cannot sum ", shape_str(x.shape()), " to the larger rank ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    int64_t want = shape[size_t(d - lead)];
    UNIREP_CHECK(want == x.size(d) || want == 1, "sum_to: shape ", shape_str(x.shape()), " does not reduce to ",
                 shape_str(shape));
    if (want == 1 && x.size(d) != 1) dims.push_back(d);
  }
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

}  // namespace unirep
