#include "core/tensor.h"

#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/generator.h"
#include "core/ops/copy.h"
#include "core/pinned.h"

namespace unirep {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: case DType::Int32: return 4;
    case DType::Float64: case DType::Int64: return 8;
    case DType::BFloat16: case DType::Float16: return 2;
    case DType::UInt8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
  }
  return "?";
}

Storage::Storage(size_t n, Device d) : nbytes(n), device(d) { data = device_alloc(n, d); }
Storage::Storage(size_t n, Device d, bool pin) : nbytes(n), device(d), pinned(pin) {
  UNIREP_CHECK(!pin || d.is_cpu(), "Storage: pinned memory is host memory, but ", d.str(), " was requested");
  data = pin ? pinned_alloc(n) : device_alloc(n, d);
}
Storage::~Storage() {
  if (pinned)
    pinned_free(data);
  else
    device_free(data, nbytes, device);
}

// ---------------------------------------------------------------- factories

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) UNIREP_CHECK(s >= 0, "Tensor::empty: negative size in shape ", shape_str(shape));
  if (device.is_cuda())
    UNIREP_CHECK(device.index < cuda_device_count(), "Tensor::empty: ", device.str(), " requested but ",
                 cuda_device_count(), " CUDA devices are available");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_tensor(t, value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<int64_t> v(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i;
  return from_vector(v, {n}, dtype, device);
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, DType dtype, Device device) {
  UNIREP_CHECK(int64_t(values.size()) == shape_numel(shape), "Tensor::from_vector: ", values.size(),
               " values for shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor host = empty(shape, DTypeOf<T>::value, Device::cpu());
  std::copy(values.begin(), values.end(), host.data<T>());
  if (dtype == host.dtype() && device.is_cpu()) return host;
  Tensor out = empty(shape, dtype, device);
  copy_tensor(out, host);
  return out;
}
template Tensor Tensor::from_vector(const std::vector<float>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<double>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<int32_t>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<int64_t>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<uint8_t>&, const Shape&, DType, Device);

Tensor Tensor::rand(const Shape& shape, Generator& gen, double lo, double hi, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_uniform(t, gen, lo, hi);
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_normal(t, gen);
  return t;
}

// ---------------------------------------------------------------- metadata

namespace {
const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  UNIREP_CHECK(impl != nullptr, "Tensor: use of an undefined tensor");
  return *impl;
}
}  // namespace

const Shape& Tensor::shape() const { return checked(impl_).shape; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::dim() const { return int64_t(shape().size()); }
int64_t Tensor::size(int64_t d) const { return shape()[size_t(wrap_dim(d, dim(), "Tensor::size"))]; }
int64_t Tensor::stride(int64_t d) const { return strides()[size_t(wrap_dim(d, dim(), "Tensor::stride"))]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
int64_t Tensor::offset() const { return checked(impl_).offset; }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device; }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked(impl_).storage; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;
  const Shape& sh = shape();
  const Shape& st = strides();
  int64_t expected = 1;
  for (int64_t i = int64_t(sh.size()) - 1; i >= 0; --i) {
    if (sh[i] != 1 && st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  const TensorImpl& t = checked(impl_);
  return static_cast<char*>(t.storage->data) + t.offset * int64_t(dtype_size(t.dtype));
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return detail::concat(dtype_name(dtype()), shape_str(shape()), " ", device().str());
}

double Tensor::item() const {
  UNIREP_CHECK(numel() == 1, "Tensor::item: tensor of shape ", shape_str(shape()), " has ", numel(),
               " elements, expected 1");
  return to_vector<double>()[0];
}

template <class T> std::vector<T> Tensor::to_vector() const {
  Tensor host = empty(shape(), DTypeOf<T>::value, Device::cpu());
  copy_tensor(host, *this);
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}
template std::vector<float> Tensor::to_vector() const;
template std::vector<double> Tensor::to_vector() const;
template std::vector<int32_t> Tensor::to_vector() const;
template std::vector<int64_t> Tensor::to_vector() const;
template std::vector<uint8_t> Tensor::to_vector() const;

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  UNIREP_CHECK(a.device() == b.device(), op, ": tensors on different devices (", a.device().str(), " and ",
               b.device().str(), ")");
}
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  UNIREP_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch (", dtype_name(a.dtype()), " and ",
               dtype_name(b.dtype()), ")");
}
void check_shape(const char* op, const char* what, const Tensor& t, const Shape& expected) {
  UNIREP_CHECK(t.defined(), op, ": ", what, " is undefined, expected shape ", shape_str(expected));
  UNIREP_CHECK(t.shape() == expected, op, ": ", what, " has shape ", shape_str(t.shape()), ", expected ",
               shape_str(expected));
}
void check_dim(const char* op, const char* what, const Tensor& t, int64_t ndim) {
  UNIREP_CHECK(t.defined(), op, ": ", what, " is undefined, expected a ", ndim, "-d tensor");
  UNIREP_CHECK(t.dim() == ndim, op, ": ", what, " must be ", ndim, "-d, got shape ", shape_str(t.shape()));
}

// ---------------------------------------------------------------- in-place (no autograd)

namespace {
void check_inplace(const Tensor& t, const char* op) {
  UNIREP_CHECK(!(GradMode::is_enabled() && t.requires_grad()), op,
               ": in-place update of a tensor that requires grad while grad mode is on (use NoGradGuard)");
}
}  // namespace

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  fill_tensor(*this, value);
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  UNIREP_CHECK(numel() == src.numel(), "copy_: destination ", str(), " and source ", src.str(),
               " differ in element count");
  copy_tensor(*this, src.shape() == shape() ? src : src.detach().reshape(shape()));
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  NoGradGuard no_grad;
  Tensor o = other.device() == device() && other.dtype() == dtype() ? other : other.to(device()).to(dtype());
  Tensor sum = alpha == 1.0 ? add(*this, o) : add(*this, mul_scalar(o, alpha));
  copy_tensor(*this, sum);
  return *this;
}

Tensor& Tensor::mul_(double value) {
  check_inplace(*this, "mul_");
  NoGradGuard no_grad;
  copy_tensor(*this, mul_scalar(*this, value));
  return *this;
}

// ---------------------------------------------------------------- autograd accessors

bool Tensor::requires_grad() const { return checked(impl_).autograd && impl_->autograd->requires_grad; }

Tensor& Tensor::requires_grad_(bool on) {
  UNIREP_CHECK(is_leaf() || on, "requires_grad_: only leaves can stop requiring grad (use detach())");
  UNIREP_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating tensors can require grad, got ",
               dtype_name(dtype()));
  impl_->autograd_meta().requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return !(checked(impl_).autograd && impl_->autograd->grad_fn); }

Tensor Tensor::grad() const { return checked(impl_).autograd ? impl_->autograd->grad : Tensor(); }

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined()) check_shape("set_grad", "gradient", g, shape());
  impl_->autograd_meta().grad = g;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return checked(impl_).autograd ? impl_->autograd->grad_fn : none;
}

uint32_t Tensor::output_nr() const { return checked(impl_).autograd ? impl_->autograd->output_nr : 0; }

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

void Tensor::backward(const Tensor& grad, bool retain_graph) const { run_backward({*this}, {grad}, retain_graph); }

void Tensor::register_grad_ready_hook(std::function<void(const Tensor&)> hook) const {
  UNIREP_CHECK(is_leaf() && requires_grad(), "register_grad_ready_hook: only leaves that require grad have one");
  impl_->autograd_meta().grad_ready_hooks.push_back(std::move(hook));
}

}  // namespace unirep
