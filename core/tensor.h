// Tensor: a handle to shared storage plus shape, strides (in elements), offset, dtype and device.
// Views (reshape, permute, slice, expand, ...) share the storage and never copy; contiguous()
// copies only when the strides are not already row-major. Activations are NHWC (channels last):
// an image batch is a tensor of shape [N, H, W, C]. Weights keep PyTorch's shapes so state-dict
// names and shapes match the official checkpoints.
//
// Autograd state (requires_grad, grad, grad_fn) lives in the impl next to the data, as in PyTorch;
// the graph itself is in autograd/.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"

namespace unirep {

class Node;
class Generator;

struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  bool pinned = false;  // page-locked host memory (core/pinned.h); the device is then the CPU
  Storage(size_t nbytes, Device device);
  Storage(size_t nbytes, Device device, bool pinned);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct TensorImpl;
struct AutogradMeta;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (dtype float32 and CPU unless told otherwise)
  static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::Float32,
                     Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor arange(int64_t n, DType dtype = DType::Int64, Device device = Device::cpu());
  // Copies host values (converted to `dtype`) into a new tensor of `shape`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype = DTypeOf<T>::value,
                            Device device = Device::cpu());
  // Uniform [lo, hi) and standard normal samples from a seeded generator (same values on every device).
  static Tensor rand(const Shape& shape, Generator& gen, double lo = 0.0, double hi = 1.0,
                     DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::Float32,
                      Device device = Device::cpu());
  static Tensor like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }

  // ---- metadata
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const;
  int64_t numel() const;
  int64_t offset() const;
  DType dtype() const;
  Device device() const;
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  size_t element_size() const { return dtype_size(dtype()); }
  const std::shared_ptr<Storage>& storage() const;
  void* data_ptr() const;  // first element (storage + offset)
  template <class T> T* data() const;
  std::string str() const;  // "float32[2, 3] cuda:0"

  // ---- values: copied to the host, converted
  double item() const;
  template <class T> std::vector<T> to_vector() const;

  // ---- differentiable views and copies (autograd/functions/views.cpp)
  Tensor reshape(const Shape& shape) const;  // view when possible, copy otherwise; one -1 allowed
  Tensor view(const Shape& shape) const;     // like reshape but throws when a copy would be needed
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor cuda(int index = 0) const { return to(Device::cuda(index)); }
  Tensor cpu() const { return to(Device::cpu()); }

  // ---- in-place, not differentiable (optimizers, initialisers, gradient buffers)
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // same numel; converts dtype, crosses devices
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double value);

  // ---- autograd
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const;
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  const std::shared_ptr<Node>& grad_fn() const;
  uint32_t output_nr() const;
  Tensor detach() const;  // shares storage, no history
  // Runs backward from this tensor; `grad` defaults to ones for a one-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Called for a leaf once its gradient is final in a backward pass (the DDP reducer hangs here).
  void register_grad_ready_hook(std::function<void(const Tensor& leaf)> hook) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  uint32_t output_nr = 0;
  std::weak_ptr<Node> grad_accumulator;  // leaves: the one AccumulateGrad node shared by all uses
  std::vector<std::function<void(const Tensor&)>> grad_ready_hooks;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;
  Shape shape;
  Shape strides;
  DType dtype = DType::Float32;
  std::unique_ptr<AutogradMeta> autograd;

  AutogradMeta& autograd_meta() {
    if (!autograd) autograd = std::make_unique<AutogradMeta>();
    return *autograd;
  }
};

// A tensor sharing `base`'s storage with new geometry (no autograd history).
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

// Throws naming `op` unless `t` is defined, has dtype `dtype` (when given) and lives on `device`.
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_shape(const char* op, const char* what, const Tensor& t, const Shape& expected);
void check_dim(const char* op, const char* what, const Tensor& t, int64_t ndim);

template <class T> T* Tensor::data() const {
  UNIREP_CHECK(DTypeOf<T>::value == dtype(), "Tensor::data: requested ", dtype_name(DTypeOf<T>::value),
               " from a ", dtype_name(dtype()), " tensor");
  return static_cast<T*>(data_ptr());
}

}  // namespace unirep
