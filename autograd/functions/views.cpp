// Views and copies as differentiable ops: the Tensor methods reshape, permute, slice, expand, ...
// A view shares storage; its backward maps the gradient back to the base's geometry.
#include <algorithm>
#include <optional>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/ops/copy.h"

namespace unirep {

namespace {

// Strides that let `new_shape` view memory laid out as (old_shape, old_strides), if any exist
// (dims merge only where they are contiguous with each other).
std::optional<Shape> view_strides(const Shape& old_shape, const Shape& old_strides, const Shape& new_shape) {
  if (shape_numel(old_shape) == 0 || old_shape.empty()) return contiguous_strides(new_shape);
  Shape new_strides(new_shape.size());
  int64_t view_d = int64_t(new_shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        new_strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return new_strides;
}

Shape infer_shape(const Shape& requested, int64_t numel, const char* op) {
  Shape shape = requested;
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      UNIREP_CHECK(infer_at < 0, op, ": more than one -1 in shape ", shape_str(requested));
      infer_at = int64_t(i);
    } else {
      UNIREP_CHECK(shape[i] >= 0, op, ": negative size in shape ", shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    UNIREP_CHECK(known > 0 && numel % known == 0, op, ": cannot infer -1 in shape ", shape_str(requested),
                 " for ", numel, " elements");
    shape[size_t(infer_at)] = numel / known;
  }
  UNIREP_CHECK(shape_numel(shape) == numel, op, ": shape ", shape_str(requested), " does not fit ", numel,
               " elements");
  return shape;
}

// Records `out` as a view/copy of `in` whose gradient is `back(grad)`.
template <class F> Tensor with_grad(const char* name, const Tensor& in, Tensor out, F back) {
  if (needs_grad({in})) record(name, {in}, {out}, [back](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{back(g[0])};
    });
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  Shape shape = infer_shape(requested, numel(), "view");
  auto strides = view_strides(this->shape(), this->strides(), shape);
  UNIREP_CHECK(strides.has_value(), "view: shape ", shape_str(shape), " is not a view of a tensor of shape ",
               shape_str(this->shape()), " with strides ", shape_str(this->strides()), "; use reshape()");
  Shape in_shape = this->shape();
  return with_grad("view", *this, make_view(*this, shape, *strides, offset()),
                   [in_shape](const Tensor& g) { return g.reshape(in_shape); });
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape shape = infer_shape(requested, numel(), "reshape");
  if (view_strides(this->shape(), this->strides(), shape)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  int64_t n = dim();
  UNIREP_CHECK(int64_t(dims.size()) == n, "permute: ", dims.size(), " dims given for a tensor of shape ",
               shape_str(shape()));
  std::vector<int64_t> inverse(static_cast<size_t>(n), -1);
  Shape sh(static_cast<size_t>(n)), st(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t d = wrap_dim(dims[size_t(i)], n, "permute");
    UNIREP_CHECK(inverse[size_t(d)] < 0, "permute: dim ", d, " repeated in ", to_string(dims));
    inverse[size_t(d)] = i;
    sh[size_t(i)] = shape()[size_t(d)];
    st[size_t(i)] = strides()[size_t(d)];
  }
  return with_grad("permute", *this, make_view(*this, sh, st, offset()),
                   [inverse](const Tensor& g) { return g.permute(inverse); });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> dims(static_cast<size_t>(dim()));
  for (int64_t i = 0; i < dim(); ++i) dims[size_t(i)] = i;
  std::swap(dims[size_t(wrap_dim(d0, dim(), "transpose"))], dims[size_t(wrap_dim(d1, dim(), "transpose"))]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  UNIREP_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t size = shape()[size_t(d)];
  auto clamp = [size](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + size : i, 0, size); };
  start = clamp(start);
  end = std::max(clamp(end), start);
  Shape sh = shape(), st = strides();
  sh[size_t(d)] = (end - start + step - 1) / step;
  st[size_t(d)] *= step;
  Shape in_shape = shape();
  DType dt = dtype();
  Device dev = device();
  return with_grad("slice", *this, make_view(*this, sh, st, offset() + start * strides()[size_t(d)]),
                   [=](const Tensor& g) {
                     Tensor full = Tensor::zeros(in_shape, dt, dev);
                     copy_tensor(full.slice(d, start, end, step), g);
                     return full;
                   });
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  int64_t size = shape()[size_t(d)];
  UNIREP_CHECK(index >= -size && index < size, "select: index ", index, " out of range for dim ", d, " of size ",
               size);
  if (index < 0) index += size;
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& requested) const {
  int64_t n = int64_t(requested.size());
  UNIREP_CHECK(n >= dim(), "expand: shape ", shape_str(requested), " has fewer dims than ", shape_str(shape()));
  Shape sh(static_cast<size_t>(n)), st(static_cast<size_t>(n));
  for (int64_t i = n - 1; i >= 0; --i) {
    int64_t j = i - (n - dim());
    int64_t want = requested[size_t(i)];
    if (j >= 0) {
      int64_t have = shape()[size_t(j)];
      if (want == -1) want = have;
      UNIREP_CHECK(have == want || have == 1, "expand: cannot expand shape ", shape_str(shape()), " to ",
                   shape_str(requested), " (dim ", i, ")");
      sh[size_t(i)] = want;
      st[size_t(i)] = have == want ? strides()[size_t(j)] : 0;
    } else {
      UNIREP_CHECK(want >= 0, "expand: new leading dim ", i, " cannot be -1");
      sh[size_t(i)] = want;
      st[size_t(i)] = 0;
    }
  }
  Shape in_shape = shape();
  return with_grad("expand", *this, make_view(*this, sh, st, offset()),
                   [in_shape](const Tensor& g) { return sum_to(g, in_shape); });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape sh = shape();
  sh.insert(sh.begin() + d, 1);
  return view(sh);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[size_t(d)] != 1) return *this;
  Shape sh = shape();
  sh.erase(sh.begin() + d);
  return view(sh);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim(), "flatten");
  end_dim = wrap_dim(end_dim, dim(), "flatten");
  UNIREP_CHECK(start_dim <= end_dim, "flatten: start_dim ", start_dim, " after end_dim ", end_dim);
  Shape sh(shape().begin(), shape().begin() + start_dim);
  int64_t merged = 1;
  for (int64_t i = start_dim; i <= end_dim; ++i) merged *= shape()[size_t(i)];
  sh.push_back(merged);
  sh.insert(sh.end(), shape().begin() + end_dim + 1, shape().end());
  return reshape(sh);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype(), device());
  copy_tensor(out, *this);
  return with_grad("clone", *this, out, [](const Tensor& g) { return g; });
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = Tensor::empty(shape(), dtype(), target);
  copy_tensor(out, *this);
  Device source = device();
  return with_grad("to_device", *this, out, [source](const Tensor& g) { return g.to(source); });
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), target, device());
  copy_tensor(out, *this);
  if (!is_floating(target)) return out;
  DType source = dtype();
  return with_grad("to_dtype", *this, out, [source](const Tensor& g) { return g.to(source); });
}

}  // namespace unirep
