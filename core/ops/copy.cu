#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/loops.cuh"
#include "core/generator.h"
#include "core/ops/copy.h"
#include "core/cuda/strided32.cuh"
#include "core/ops/strided.h"

namespace unirep::cuda {

namespace {

template <class T>
__global__ void strided_copy_kernel(T* dst, const T* src, int64_t n, StridedIndex<2> idx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    idx.offsets(i, off);
    dst[off[0]] = src[off[1]];
  }
}

template <class T>
__global__ void strided_copy32_kernel(T* dst, const T* src, uint32_t n, StridedIndex32<2> idx) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    uint32_t off[2];
    idx.offsets(i, off);
    dst[off[0]] = src[off[1]];
  }
}

// 16 bytes per thread step, for the layouts of the elementwise vector loop (core/cuda/loops.cuh):
// e.g. a bias expanded over the rows of a linear's output, a transposed block of whole rows.
template <class T>
__global__ void vector_copy_kernel(T* dst, const T* src, uint32_t nvec, StridedIndex32<2> idx, bool src_broadcast) {
  constexpr int V = 16 / int(sizeof(T));
  using Vec = VecOf<T, V>;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += gridDim.x * blockDim.x) {
    uint32_t off[2];
    idx.offsets(i * uint32_t(V), off);
    Vec v;
    if (src_broadcast) {
      const T s = src[off[1]];
#pragma unroll
      for (int j = 0; j < V; ++j) v.v[j] = s;
    } else {
      v = *reinterpret_cast<const Vec*>(src + off[1]);
    }
    *reinterpret_cast<Vec*>(dst + off[0]) = v;
  }
}

template <class D, class S> __global__ void convert_kernel(D* dst, const S* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = convert<D>(src[i]);
}

template <class T> __global__ void fill_kernel(T* dst, T v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = v;
}

template <class T>
__global__ void uniform_kernel(T* dst, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = static_cast<T>(lo + (hi - lo) * philox_uniform_double(seed, offset + uint64_t(i)));
}

template <class T> __global__ void normal_kernel(T* dst, int64_t n, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = static_cast<T>(philox_normal(seed, offset + uint64_t(i)));
}

unsigned grid(int64_t n) { return std::min<unsigned>(blocks_for(n), 65535u * 8u); }

template <class T> void strided_copy_t(const Tensor& dst, const Tensor& src) {
  auto idx = make_strided_index<2>(dst.shape(), {&dst.strides(), &src.strides()});
  StridedIndex32<2> idx32;
  constexpr int V = 16 / int(sizeof(T));
  const void* ptrs[2] = {dst.data_ptr(), src.data_ptr()};
  uint32_t src_broadcast = 0;
  if (vector_loop_layout(idx, dst.numel(), ptrs, V, int(sizeof(T)), &idx32, &src_broadcast)) {
    const int64_t nvec = dst.numel() / V;
    vector_copy_kernel<T><<<grid(nvec), kThreads, 0, stream()>>>(static_cast<T*>(dst.data_ptr()),
                                                                 static_cast<const T*>(src.data_ptr()),
                                                                 uint32_t(nvec), idx32, src_broadcast != 0);
    CUDA_CHECK_LAUNCH();
    return;
  }
  if (to_strided_index32(idx, dst.numel(), &idx32))
    strided_copy32_kernel<T><<<grid(dst.numel()), kThreads, 0, stream()>>>(
        static_cast<T*>(dst.data_ptr()), static_cast<const T*>(src.data_ptr()), uint32_t(dst.numel()), idx32);
  else
    strided_copy_kernel<T><<<grid(dst.numel()), kThreads, 0, stream()>>>(
        static_cast<T*>(dst.data_ptr()), static_cast<const T*>(src.data_ptr()), dst.numel(), idx);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void strided_copy(const Tensor& dst, const Tensor& src) {
  if (dst.is_contiguous() && src.is_contiguous()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.numel() * dst.element_size(),
                               cudaMemcpyDeviceToDevice, stream()));
    UNIREP_PROFILE_MARK();
    return;
  }
  switch (dst.element_size()) {
    case 1: return strided_copy_t<uint8_t>(dst, src);
    case 2: return strided_copy_t<uint16_t>(dst, src);
    case 4: return strided_copy_t<uint32_t>(dst, src);
    default: return strided_copy_t<uint64_t>(dst, src);
  }
}

void convert_dtype(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n) {
  UNIREP_DISPATCH_ALL(dst_dtype, "copy", [&] {
    using dst_t = scalar_t;
    UNIREP_DISPATCH_ALL(src_dtype, "copy", [&] {
      convert_kernel<dst_t, scalar_t><<<grid(n), kThreads, 0, stream()>>>(
          static_cast<dst_t*>(dst), static_cast<const scalar_t*>(src), n);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void fill(void* dst, DType dtype, int64_t n, double value) {
  UNIREP_DISPATCH_ALL(dtype, "fill", [&] {
    fill_kernel<scalar_t><<<grid(n), kThreads, 0, stream()>>>(static_cast<scalar_t*>(dst),
                                                                convert<scalar_t>(value), n);
    CUDA_CHECK_LAUNCH();
  });
}

__global__ void increment_kernel(int64_t* counter) { ++*counter; }

void increment_counter(int64_t* counter) {
  increment_kernel<<<1, 1, 0, stream()>>>(counter);
  CUDA_CHECK_LAUNCH();
}

void fill_uniform(const Tensor& dst, uint64_t seed, uint64_t offset, double lo, double hi) {
  UNIREP_DISPATCH_FLOATING(dst.dtype(), "rand", [&] {
    uniform_kernel<scalar_t><<<grid(dst.numel()), kThreads, 0, stream()>>>(dst.data<scalar_t>(), dst.numel(),
                                                                            seed, offset, lo, hi);
    CUDA_CHECK_LAUNCH();
  });
}

void fill_normal(const Tensor& dst, uint64_t seed, uint64_t offset) {
  UNIREP_DISPATCH_FLOATING(dst.dtype(), "randn", [&] {
    normal_kernel<scalar_t><<<grid(dst.numel()), kThreads, 0, stream()>>>(dst.data<scalar_t>(), dst.numel(), seed,
                                                                           offset);
    CUDA_CHECK_LAUNCH();
  });
}

void memcpy_host_to_device(void* dst, const void* src, size_t nbytes, int device) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream(device)));
  // The host buffer may be freed as soon as we return: wait for the (pageable) copy.
  CUDA_CHECK(cudaStreamSynchronize(stream(device)));
}

void memcpy_device_to_host(void* dst, const void* src, size_t nbytes, int device) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream(device)));
  CUDA_CHECK(cudaStreamSynchronize(stream(device)));
}

}  // namespace unirep::cuda
