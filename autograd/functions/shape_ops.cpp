// Differentiable joins, splits, padding and indexing (autograd/functions/shape_ops.h).
//
// cat, split and pad are views plus copies: cat copies each input into its slice of a fresh output
// (one strided copy per input) and its backward hands each input the matching slice (a view) of
// the gradient; split returns views of x from one node with one output per piece, whose backward
// copies the pieces' gradients into one buffer (pieces that got none arrive as zeros); pad fills
// only the border slabs of the output and copies the (possibly cropped) input into the interior,
// and its backward is the interior slice of the gradient (a view when nothing was cropped, else
// copied into zeros). index_select and gather run the kernels of core/ops/index.h.
#include "autograd/functions/shape_ops.h"

#include <algorithm>

#include "autograd/node.h"
#include "core/ops/copy.h"
#include "core/ops/index.h"

namespace unirep {

namespace {

void check_defined(const char* op, const Tensor& t, const char* what) {
  UNIREP_CHECK(t.defined(), op, ": ", what, " is undefined");
}

void check_index_tensor(const char* op, const Tensor& x, const Tensor& index) {
  check_defined(op, index, "index");
  UNIREP_CHECK(index.dtype() == DType::Int32 || index.dtype() == DType::Int64, op,
               ": index must be an int32 or int64 tensor, got ", dtype_name(index.dtype()), " with shape ",
               shape_str(index.shape()));
  check_same_device(op, x, index);
}

// Padding / cropping geometry of one dim: the input range [in_start, in_start + len) lands at
// [out_start, out_start + len) of an output of size out_size.
struct PadDim {
  int64_t dim, before, after, out_size, in_start, out_start, len;
};

}  // namespace

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  UNIREP_CHECK(!xs.empty(), "cat: expected at least one tensor, got an empty list");
  const Tensor& first = xs[0];
  check_defined("cat", first, "input 0");
  UNIREP_CHECK(first.dim() > 0, "cat: input 0 is zero-dimensional (shape ", shape_str(first.shape()),
               "); cat needs tensors of rank >= 1");
  const int64_t d = wrap_dim(dim, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[size_t(d)] = 0;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& t = xs[i];
    UNIREP_CHECK(t.defined(), "cat: input ", i, " is undefined");
    UNIREP_CHECK(t.dim() == first.dim(), "cat: along dim ", d, ", input ", i, " has shape ", shape_str(t.shape()),
                 " of rank ", t.dim(), " but input 0 has shape ", shape_str(first.shape()), " of rank ", first.dim());
    for (int64_t j = 0; j < t.dim(); ++j)
      UNIREP_CHECK(j == d || t.size(j) == first.size(j), "cat: along dim ", d, ", input ", i, " has shape ",
                   shape_str(t.shape()), " but input 0 has shape ", shape_str(first.shape()),
                   " (sizes must match except in dim ", d, "; they differ in dim ", j, ")");
    UNIREP_CHECK(t.dtype() == first.dtype(), "cat: input ", i, " (shape ", shape_str(t.shape()), ") has dtype ",
                 dtype_name(t.dtype()), " but input 0 (shape ", shape_str(first.shape()), ") has dtype ",
                 dtype_name(first.dtype()));
    UNIREP_CHECK(t.device() == first.device(), "cat: input ", i, " (shape ", shape_str(t.shape()), ") is on ",
                 t.device().str(), " but input 0 (shape ", shape_str(first.shape()), ") is on ",
                 first.device().str());
    sizes.push_back(t.size(d));
    out_shape[size_t(d)] += t.size(d);
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  int64_t off = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (sizes[i] > 0 && xs[i].numel() > 0) copy_tensor(out.slice(d, off, off + sizes[i]), xs[i].detach());
    off += sizes[i];
  }
  if (needs_grad(xs)) {
    record("cat", xs, {out}, [sizes, d](const std::vector<Tensor>& g) {
      std::vector<Tensor> grads;
      int64_t o = 0;
      for (int64_t len : sizes) {
        grads.push_back(g[0].slice(d, o, o + len));
        o += len;
      }
      return grads;
    });
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_defined("split", x, "input");
  UNIREP_CHECK(x.dim() > 0, "split: x is zero-dimensional; split needs a tensor of rank >= 1");
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    UNIREP_CHECK(s >= 0, "split: negative size in sizes ", to_string(sizes), " for x with shape ",
                 shape_str(x.shape()));
    total += s;
  }
  UNIREP_CHECK(total == x.size(d), "split: sizes ", to_string(sizes), " add up to ", total, " but dim ", d,
               " of x with shape ", shape_str(x.shape()), " has size ", x.size(d));
  Tensor base = x.detach();
  std::vector<Tensor> pieces;
  int64_t off = 0;
  for (int64_t s : sizes) {
    pieces.push_back(base.slice(d, off, off + s));
    off += s;
  }
  if (!pieces.empty() && needs_grad({x})) {
    Shape shape = x.shape();
    DType dtype = x.dtype();
    Device device = x.device();
    record("split", {x}, pieces, [=](const std::vector<Tensor>& g) {
      Tensor gx = Tensor::empty(shape, dtype, device);
      int64_t o = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (sizes[i] > 0) copy_tensor(gx.slice(d, o, o + sizes[i]), g[i]);
        o += sizes[i];
      }
      return std::vector<Tensor>{gx};
    });
  }
  return pieces;
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  check_defined("pad", x, "input");
  const int64_t rank = x.dim();
  UNIREP_CHECK(pads.size() % 2 == 0 && int64_t(pads.size()) <= 2 * rank, "pad: pads ", to_string(pads),
               " must have an even length of at most 2 * rank = ", 2 * rank, " for x with shape ",
               shape_str(x.shape()));
  Shape out_shape = x.shape();
  std::vector<PadDim> dims;
  bool crops = false, empty_interior = false;
  for (size_t i = 0; i < pads.size() / 2; ++i) {
    PadDim p;
    p.dim = rank - 1 - int64_t(i);
    p.before = pads[2 * i];
    p.after = pads[2 * i + 1];
    const int64_t size = x.size(p.dim);
    p.out_size = size + p.before + p.after;
    UNIREP_CHECK(p.out_size >= 0, "pad: pads ", to_string(pads), " give dim ", p.dim, " of x with shape ",
                 shape_str(x.shape()), " the negative size ", p.out_size);
    p.in_start = std::max<int64_t>(0, -p.before);
    p.out_start = std::max<int64_t>(0, p.before);
    p.len = std::max<int64_t>(0, size - std::max<int64_t>(0, -p.after) - p.in_start);
    crops = crops || p.before < 0 || p.after < 0;
    empty_interior = empty_interior || p.len == 0;
    out_shape[size_t(p.dim)] = p.out_size;
    dims.push_back(p);
  }
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  if (empty_interior) {
    fill_tensor(out, value);
  } else {
    // Border slabs only (corners are written more than once); then the interior.
    for (const PadDim& p : dims) {
      if (p.out_start > 0) fill_tensor(out.slice(p.dim, 0, p.out_start), value);
      if (p.out_start + p.len < p.out_size) fill_tensor(out.slice(p.dim, p.out_start + p.len, p.out_size), value);
    }
    Tensor src = x.detach(), dst = out;
    for (const PadDim& p : dims) {
      src = src.slice(p.dim, p.in_start, p.in_start + p.len);
      dst = dst.slice(p.dim, p.out_start, p.out_start + p.len);
    }
    copy_tensor(dst, src);
  }
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record("pad", {x}, {out}, [dims, crops, empty_interior, in_shape](const std::vector<Tensor>& g) {
      Tensor interior = g[0];
      for (const PadDim& p : dims) interior = interior.slice(p.dim, p.out_start, p.out_start + p.len);
      if (!crops) return std::vector<Tensor>{interior};
      Tensor gx = Tensor::zeros(in_shape, g[0].dtype(), g[0].device());
      if (!empty_interior) {
        Tensor region = gx;
        for (const PadDim& p : dims) region = region.slice(p.dim, p.in_start, p.in_start + p.len);
        copy_tensor(region, interior);
      }
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("index_select", x, "x");
  check_index_tensor("index_select", x, index);
  UNIREP_CHECK(x.dim() > 0, "index_select: x is zero-dimensional; index_select needs a tensor of rank >= 1");
  UNIREP_CHECK(index.dim() <= 1, "index_select: index must be 1-d, got shape ", shape_str(index.shape()),
               " (x has shape ", shape_str(x.shape()), ")");
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  const int64_t D = x.size(d);
  check_index_range("index_select", index, D, detail::concat("dim ", d, " of x with shape ", shape_str(x.shape())));
  int64_t outer = 1, inner = 1;
  for (int64_t j = 0; j < d; ++j) outer *= x.size(j);
  for (int64_t j = d + 1; j < x.dim(); ++j) inner *= x.size(j);
  Shape out_shape = x.shape();
  out_shape[size_t(d)] = index.numel();
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor idx = index.detach().reshape({index.numel()});
  index_select_kernel(out, x.detach().contiguous(), idx, outer, D, inner);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record("index_select", {x}, {out}, [si = save(idx), in_shape, outer, D, inner](const std::vector<Tensor>& g) {
      Tensor gx = Tensor::empty(in_shape, g[0].dtype(), g[0].device());
      index_add_backward_kernel(gx, g[0].contiguous(), si, outer, D, inner);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("gather", x, "x");
  check_index_tensor("gather", x, index);
  UNIREP_CHECK(x.dim() > 0, "gather: x is zero-dimensional; gather needs a tensor of rank >= 1");
  UNIREP_CHECK(index.dim() == x.dim(), "gather: index with shape ", shape_str(index.shape()),
               " must have the rank of x with shape ", shape_str(x.shape()));
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  for (int64_t j = 0; j < x.dim(); ++j)
    UNIREP_CHECK(j == d || index.size(j) <= x.size(j), "gather: along dim ", d, ", index with shape ",
                 shape_str(index.shape()), " is larger than x with shape ", shape_str(x.shape()), " in dim ", j);
  check_index_range("gather", index, x.size(d), detail::concat("dim ", d, " of x with shape ", shape_str(x.shape())));
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  gather_kernel(out, x.detach(), d, index.detach());
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record("gather", {x}, {out}, [si = save(index), in_shape, d](const std::vector<Tensor>& g) {
      Tensor gx = Tensor::empty(in_shape, g[0].dtype(), g[0].device());
      scatter_add_backward_kernel(gx, g[0], d, si);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

}  // namespace unirep
