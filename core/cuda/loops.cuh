// CUDA elementwise loops, the device twin of core/ops/loops_cpu.h:
// cuda_elementwise<scalar_t>(out, f, in...) with f a __device__ lambda over acc_t<scalar_t>.
// Contiguous operands take a grid-stride loop over flat indices; others decode offsets through
// StridedIndex (dims merged where possible), in 32 bits where they fit (core/cuda/strided32.cuh). Launched on the device's stream.
#pragma once
#include <typeinfo>
#include <utility>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/strided32.cuh"
#include "core/ops/strided.h"
#include "core/tensor.h"

namespace unirep::cuda {

template <class scalar_t, int NIN> struct InPtrs {
  const scalar_t* p[NIN > 0 ? NIN : 1];
};

template <class scalar_t, int NIN, class F, size_t... I>
__global__ void elementwise_flat_kernel(scalar_t* out, InPtrs<scalar_t, NIN> in, F f, int64_t n,
                                        std::index_sequence<I...>) {
  using acc = acc_t<scalar_t>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = static_cast<scalar_t>(f(static_cast<acc>(in.p[I][i])...));
}

template <class scalar_t, int NIN, class F, size_t... I>
__global__ void elementwise_strided_kernel(scalar_t* out, InPtrs<scalar_t, NIN> in, F f, int64_t n,
                                           StridedIndex<NIN + 1> idx, std::index_sequence<I...>) {
  using acc = acc_t<scalar_t>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[NIN + 1];
    idx.offsets(i, off);
    out[off[0]] = static_cast<scalar_t>(f(static_cast<acc>(in.p[I][off[I + 1]])...));
  }
}

// The same with 32-bit offsets (core/cuda/strided32.cuh), when they fit.
template <class scalar_t, int NIN, class F, size_t... I>
__global__ void elementwise_strided32_kernel(scalar_t* out, InPtrs<scalar_t, NIN> in, F f, uint32_t n,
                                             StridedIndex32<NIN + 1> idx, std::index_sequence<I...>) {
  using acc = acc_t<scalar_t>;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    uint32_t off[NIN + 1];
    idx.offsets(i, off);
    out[off[0]] = static_cast<scalar_t>(f(static_cast<acc>(in.p[I][off[I + 1]])...));
  }
}

template <class scalar_t, class F, class... Ins>
void cuda_elementwise(const Tensor& out, F f, const Ins&... ins) {
  constexpr int NIN = sizeof...(Ins);
  int64_t n = out.numel();
  if (n == 0) return;
  InPtrs<scalar_t, NIN> in{{ins.template data<scalar_t>()...}};
  unsigned blocks = blocks_for(n);
  if (blocks > 65535u * 16u) blocks = 65535u * 16u;
  bool contiguous = out.is_contiguous() && (ins.is_contiguous() && ...);
  if (contiguous) {
    elementwise_flat_kernel<scalar_t, NIN><<<blocks, kThreads, 0, stream()>>>(
        out.data<scalar_t>(), in, f, n, std::make_index_sequence<NIN>{});
  } else {
    auto idx = make_strided_index<NIN + 1>(out.shape(), {&out.strides(), &ins.strides()...});
    StridedIndex32<NIN + 1> idx32;
    if (to_strided_index32(idx, n, &idx32))
      elementwise_strided32_kernel<scalar_t, NIN><<<blocks, kThreads, 0, stream()>>>(
          out.data<scalar_t>(), in, f, uint32_t(n), idx32, std::make_index_sequence<NIN>{});
    else
      elementwise_strided_kernel<scalar_t, NIN><<<blocks, kThreads, 0, stream()>>>(
          out.data<scalar_t>(), in, f, n, idx, std::make_index_sequence<NIN>{});
  }
  CUDA_CHECK(cudaGetLastError());
  if (profiling()) profile_mark_functor(typeid(F).name());
}

}  // namespace unirep::cuda
