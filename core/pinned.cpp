#include "core/pinned.h"

#include <cuda_runtime.h>

#include "core/error.h"

namespace unirep {

void* pinned_alloc(size_t nbytes) {
  void* p = nullptr;
  // Portable: the buffer counts as pinned for every device of the process, not only the current one.
  cudaError_t err = cudaHostAlloc(&p, nbytes == 0 ? 1 : nbytes, cudaHostAllocPortable);
  if (err != cudaSuccess) {
    cudaGetLastError();  // not sticky, but leave no error behind for the next CUDA_CHECK_LAUNCH
    throw Error(detail::concat("pinned_alloc: cudaHostAlloc of ", nbytes, " bytes failed: ", cudaGetErrorString(err)));
  }
  return p;
}

void pinned_free(void* ptr) {
  if (!ptr) return;
  // Called from destructors: never throws. It can only fail on a broken CUDA context, which the next
  // checked CUDA call reports.
  cudaError_t err = cudaFreeHost(ptr);
  if (err != cudaSuccess) cudaGetLastError();
}

Tensor pinned_empty(const Shape& shape, DType dtype) {
  for (int64_t s : shape) UNIREP_CHECK(s >= 0, "pinned_empty: negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), Device::cpu(), true);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

bool is_pinned(const Tensor& t) { return t.defined() && t.storage() && t.storage()->pinned; }

}  // namespace unirep
