// CUDA elementwise loops, the device twin of core/ops/loops_cpu.h:
// cuda_elementwise<scalar_t>(out, f, in...) with f a __device__ lambda over acc_t<scalar_t>.
// The usual case takes the vector loop: after merging dims (core/ops/strided.h) the innermost dim is
// contiguous in out, contiguous or broadcast (stride 0) in each input, and a multiple of
// V = 16 bytes / sizeof(scalar_t) long. A thread then decodes the offsets of V consecutive elements
// once (32-bit, core/cuda/strided32.cuh) and moves them with one 16-byte load per contiguous operand
// (one scalar load for a broadcast one) and one 16-byte store. That covers flat tensors and every
// NHWC broadcast of the model ([N,H,W,C] with [C], [N,1,1,C] or [N,H,W,1]); with 2-byte scalar
// accesses the same kernels ran at a quarter of the memory bandwidth. Anything else falls back to a
// grid-stride loop per element: flat for contiguous operands, else offsets decoded per element.
// Launched on the device's stream.
#pragma once
#include <typeinfo>
#include <utility>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/strided32.cuh"
#include "core/cuda/vec.cuh"
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

// V consecutive elements per thread per step; bit k of scalar_inner set: input k is broadcast along
// the inner dim (one load serves the V lanes).
template <class scalar_t, int NIN, class F, size_t... I>
__global__ void elementwise_vector_kernel(scalar_t* out, InPtrs<scalar_t, NIN> in, F f, uint32_t nvec,
                                          StridedIndex32<NIN + 1> idx, uint32_t scalar_inner,
                                          std::index_sequence<I...>) {
  using acc = acc_t<scalar_t>;
  constexpr int V = 16 / int(sizeof(scalar_t));
  using Vec = VecOf<scalar_t, V>;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += gridDim.x * blockDim.x) {
    uint32_t off[NIN + 1];
    idx.offsets(i * uint32_t(V), off);
    Vec a[NIN > 0 ? NIN : 1];
#pragma unroll
    for (int k = 0; k < NIN; ++k) {
      if ((scalar_inner >> k) & 1u) {
        const scalar_t s = in.p[k][off[k + 1]];
#pragma unroll
        for (int j = 0; j < V; ++j) a[k].v[j] = s;
      } else {
        a[k] = *reinterpret_cast<const Vec*>(in.p[k] + off[k + 1]);
      }
    }
    Vec o;
#pragma unroll
    for (int j = 0; j < V; ++j) o.v[j] = static_cast<scalar_t>(f(static_cast<acc>(a[I].v[j])...));
    *reinterpret_cast<Vec*>(out + off[0]) = o;
  }
}

// The vector loop's index and broadcast mask, or false when the operands do not fit it (see the top).
template <int N>
bool vector_loop_layout(const StridedIndex<N>& idx, int64_t n, const void* const* ptrs, int vec, int elem_size,
                        StridedIndex32<N>* idx32, uint32_t* scalar_inner) {
  if (idx.ndim == 0 || idx.sizes[idx.ndim - 1] % vec != 0) return false;
  const int inner = idx.ndim - 1;
  *scalar_inner = 0;
  for (int k = 0; k < N; ++k) {
    const int64_t s = idx.strides[k][inner];
    if (s == 0 && k > 0) {
      *scalar_inner |= 1u << (k - 1);
      continue;
    }
    if (s != 1 || reinterpret_cast<uintptr_t>(ptrs[k]) % uintptr_t(vec * elem_size) != 0) return false;
    for (int d = 0; d < inner; ++d)
      if (idx.strides[k][d] % vec != 0) return false;
  }
  return to_strided_index32(idx, n, idx32);
}

template <class scalar_t, class F, class... Ins>
void cuda_elementwise(const Tensor& out, F f, const Ins&... ins) {
  constexpr int NIN = sizeof...(Ins);
  int64_t n = out.numel();
  if (n == 0) return;
  InPtrs<scalar_t, NIN> in{{ins.template data<scalar_t>()...}};
  unsigned blocks = blocks_for(n);
  if (blocks > 65535u * 16u) blocks = 65535u * 16u;
  auto idx = make_strided_index<NIN + 1>(out.shape(), {&out.strides(), &ins.strides()...});
  constexpr int V = 16 / int(sizeof(scalar_t));
  const void* ptrs[NIN + 1] = {out.data_ptr(), ins.data_ptr()...};
  StridedIndex32<NIN + 1> idx32;
  uint32_t scalar_inner = 0;
  bool contiguous = out.is_contiguous() && (ins.is_contiguous() && ...);
  if (vector_loop_layout(idx, n, ptrs, V, int(sizeof(scalar_t)), &idx32, &scalar_inner)) {
    const int64_t nvec = n / V;
    elementwise_vector_kernel<scalar_t, NIN><<<std::min<unsigned>(blocks_for(nvec), 65535u * 16u), kThreads, 0,
                                               stream()>>>(out.data<scalar_t>(), in, f, uint32_t(nvec), idx32,
                                                           scalar_inner, std::make_index_sequence<NIN>{});
  } else if (contiguous) {
    elementwise_flat_kernel<scalar_t, NIN><<<blocks, kThreads, 0, stream()>>>(
        out.data<scalar_t>(), in, f, n, std::make_index_sequence<NIN>{});
  } else {
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
