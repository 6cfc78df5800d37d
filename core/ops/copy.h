// Copies, casts and fills: the kernels under Tensor::copy_, contiguous(), to() and fill_().
// A copy is split into a same-dtype strided copy (which only needs the element size) and a
// contiguous dtype conversion, so the strided machinery is instantiated 4 times, not 49.
#pragma once
#include "core/tensor.h"

namespace unirep {

// dst and src have the same shape; any dtypes; any devices.
void copy_tensor(const Tensor& dst, const Tensor& src);
void fill_tensor(const Tensor& dst, double value);
// counter (a 0-d int64 tensor) += 1 where it lives: a step counter that a captured CUDA graph's
// replays advance (fill_ with a host count would replay the count of the capture).
void increment_counter(const Tensor& counter);
// Writes uniform [lo, hi) or standard normal samples drawn from `gen` into a contiguous tensor.
void fill_uniform(const Tensor& dst, Generator& gen, double lo, double hi);
void fill_normal(const Tensor& dst, Generator& gen);

namespace cuda {
void strided_copy(const Tensor& dst, const Tensor& src);  // same dtype, same device
void convert_dtype(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n);
void fill(void* dst, DType dtype, int64_t n, double value);
void increment_counter(int64_t* counter);
void fill_uniform(const Tensor& dst, uint64_t seed, uint64_t offset, double lo, double hi);
void fill_normal(const Tensor& dst, uint64_t seed, uint64_t offset);
void memcpy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void memcpy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
}  // namespace cuda

}  // namespace unirep
