// CUDA indexing kernels: one thread per output (forward) or per incoming gradient element
// (backward), grid-stride loops on the device's stream. index_select reads and writes rows of the
// contiguous inner dim, so consecutive threads touch consecutive addresses (coalesced; for NHWC
// data indexed along N, H or W the inner dim holds the channels). The backward sums collide where
// indices repeat: atomicAdd natively into float32/float64 gradients, and into a zeroed float32
// buffer for bfloat16/float16, converted to the gradient's dtype at the end (core/ops/index.h).
// Indices were validated on the host by check_index_range before any launch.
#include <algorithm>
#include <type_traits>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/copy.h"
#include "core/ops/index.h"
#include "core/ops/strided.h"

namespace unirep::cuda {

namespace {

unsigned grid(int64_t n) { return std::min<unsigned>(blocks_for(n), 65535u * 16u); }

template <class T, class I>
__global__ void index_select_kernel(T* __restrict__ out, const T* __restrict__ x, const I* __restrict__ idx, int64_t n,
                                    int64_t K, int64_t D, int64_t inner) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / inner, in = i - r * inner;
    int64_t o = r / K, k = r - o * K;
    out[i] = x[(o * D + int64_t(idx[k])) * inner + in];
  }
}

template <class T, class A, class I>
__global__ void index_add_kernel(A* __restrict__ acc, const T* __restrict__ g, const I* __restrict__ idx, int64_t n,
                                 int64_t K, int64_t D, int64_t inner) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / inner, in = i - r * inner;
    int64_t o = r / K, k = r - o * K;
    atomicAdd(acc + (o * D + int64_t(idx[k])) * inner + in, static_cast<A>(g[i]));
  }
}

// Operands: 0 = out (or grad_out), 1 = index, 2 = x (or the accumulator) with stride 0 at dim.
template <class T, class I>
__global__ void gather_kernel(T* __restrict__ out, const T* __restrict__ x, const I* __restrict__ idx, int64_t n,
                              int64_t sx, StridedIndex<3> sidx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    sidx.offsets(i, off);
    out[off[0]] = x[off[2] + int64_t(idx[off[1]]) * sx];
  }
}

template <class T, class A, class I>
__global__ void scatter_add_kernel(A* __restrict__ acc, const T* __restrict__ g, const I* __restrict__ idx, int64_t n,
                                   int64_t sa, StridedIndex<3> sidx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    sidx.offsets(i, off);
    atomicAdd(acc + off[2] + int64_t(idx[off[1]]) * sa, static_cast<A>(g[off[0]]));
  }
}

template <class I>
void index_select_bytes(const Tensor& out, const Tensor& x, const I* idx, int64_t K, int64_t D, int64_t inner) {
  int64_t n = out.numel();
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    index_select_kernel<T, I><<<grid(n), kThreads, 0, stream()>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(x.data_ptr()), idx, n, K, D, inner);
    CUDA_CHECK_LAUNCH();
  };
  switch (x.element_size()) {
    case 1: return launch(uint8_t{});
    case 2: return launch(uint16_t{});
    case 4: return launch(uint32_t{});
    default: return launch(uint64_t{});
  }
}

template <class T, class I>
void gather_t(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  Shape xs = x.strides();
  xs[size_t(dim)] = 0;
  auto sidx = make_strided_index<3>(index.shape(), {&out.strides(), &index.strides(), &xs});
  int64_t n = index.numel();
  gather_kernel<T, I><<<grid(n), kThreads, 0, stream()>>>(static_cast<T*>(out.data_ptr()),
                                                          static_cast<const T*>(x.data_ptr()), index.data<I>(), n,
                                                          x.stride(dim), sidx);
  CUDA_CHECK_LAUNCH();
}

// A zeroed accumulator for a gradient of dtype scalar_t: the gradient itself for float32/float64,
// else a float32 buffer of its shape.
template <class scalar_t> Tensor zeroed_accumulator(const Tensor& grad) {
  using acc = acc_t<scalar_t>;
  Tensor buf = std::is_same<acc, scalar_t>::value ? grad : Tensor::empty(grad.shape(), DTypeOf<acc>::value,
                                                                         grad.device());
  CUDA_CHECK(cudaMemsetAsync(buf.data_ptr(), 0, size_t(buf.numel()) * buf.element_size(), stream()));
  return buf;
}

}  // namespace

void index_select(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer, int64_t D, int64_t inner) {
  (void)outer;
  Tensor idx = index.contiguous();
  UNIREP_DISPATCH_INDEX(idx.dtype(), "index_select", [&] {
    index_select_bytes(out, x, idx.data<index_t>(), idx.numel(), D, inner);
  });
}

void index_add_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& index, int64_t outer, int64_t D,
                        int64_t inner) {
  (void)outer;
  Tensor idx = index.contiguous();
  UNIREP_DISPATCH_FLOATING(grad_x.dtype(), "index_select backward", [&] {
    using acc = acc_t<scalar_t>;
    Tensor buf = zeroed_accumulator<scalar_t>(grad_x);
    int64_t n = grad_out.numel();
    if (n > 0) {
      UNIREP_DISPATCH_INDEX(idx.dtype(), "index_select backward", [&] {
        index_add_kernel<scalar_t, acc, index_t><<<grid(n), kThreads, 0, stream()>>>(
            buf.data<acc>(), grad_out.data<scalar_t>(), idx.data<index_t>(), n, idx.numel(), D, inner);
        CUDA_CHECK_LAUNCH();
      });
    }
    if (!buf.same(grad_x)) copy_tensor(grad_x, buf);
  });
}

void gather(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  UNIREP_DISPATCH_INDEX(index.dtype(), "gather", [&] {
    switch (x.element_size()) {
      case 1: return gather_t<uint8_t, index_t>(out, x, dim, index);
      case 2: return gather_t<uint16_t, index_t>(out, x, dim, index);
      case 4: return gather_t<uint32_t, index_t>(out, x, dim, index);
      default: return gather_t<uint64_t, index_t>(out, x, dim, index);
    }
  });
}

void scatter_add_backward(const Tensor& grad_x, const Tensor& grad_out, int64_t dim, const Tensor& index) {
  UNIREP_DISPATCH_FLOATING(grad_x.dtype(), "gather backward", [&] {
    using acc = acc_t<scalar_t>;
    Tensor buf = zeroed_accumulator<scalar_t>(grad_x);
    int64_t n = index.numel();
    if (n > 0) {
      Shape as = buf.strides();
      as[size_t(dim)] = 0;
      auto sidx = make_strided_index<3>(index.shape(), {&grad_out.strides(), &index.strides(), &as});
      UNIREP_DISPATCH_INDEX(index.dtype(), "gather backward", [&] {
        scatter_add_kernel<scalar_t, acc, index_t><<<grid(n), kThreads, 0, stream()>>>(
            buf.data<acc>(), grad_out.data<scalar_t>(), index.data<index_t>(), n, buf.stride(dim), sidx);
        CUDA_CHECK_LAUNCH();
      });
    }
    if (!buf.same(grad_x)) copy_tensor(grad_x, buf);
  });
}

}  // namespace unirep::cuda
