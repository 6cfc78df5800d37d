// CUDA dropout / drop-path kernels: one thread per element, grid-stride, the Philox value computed
// in the thread from (seed, offset + element or sample index); see core/ops/random.h.
#include <algorithm>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/random.h"

namespace unirep::cuda {

namespace {

unsigned grid(int64_t n) { return std::min<unsigned>(blocks_for(n), 65535u * 16u); }

template <class T>
__global__ void dropout_kernel(T* __restrict__ out, const T* __restrict__ x, int64_t n, uint64_t seed,
                               uint64_t offset, double p, acc_t<T> scale) {
  using acc = acc_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = philox_keep(seed, offset + uint64_t(i), p) ? static_cast<T>(static_cast<acc>(x[i]) * scale)
                                                        : static_cast<T>(acc(0));
}

template <class T>
__global__ void drop_path_kernel(T* __restrict__ out, const T* __restrict__ x, int64_t n, int64_t inner,
                                 uint64_t seed, uint64_t offset, double p, acc_t<T> scale) {
  using acc = acc_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = philox_keep(seed, offset + uint64_t(i / inner), p) ? static_cast<T>(static_cast<acc>(x[i]) * scale)
                                                                : static_cast<T>(acc(0));
}

}  // namespace

void dropout(const Tensor& out, const Tensor& x, uint64_t seed, uint64_t offset, double p, double scale) {
  UNIREP_DISPATCH_FLOATING(out.dtype(), "dropout", [&] {
    int64_t n = out.numel();
    dropout_kernel<scalar_t><<<grid(n), kThreads, 0, stream()>>>(out.data<scalar_t>(), x.data<scalar_t>(), n, seed,
                                                                  offset, p, static_cast<acc_t<scalar_t>>(scale));
    CUDA_CHECK_LAUNCH();
  });
}

void drop_path(const Tensor& out, const Tensor& x, uint64_t seed, uint64_t offset, double p, double scale,
               int64_t samples) {
  UNIREP_DISPATCH_FLOATING(out.dtype(), "drop_path", [&] {
    int64_t n = out.numel();
    drop_path_kernel<scalar_t><<<grid(n), kThreads, 0, stream()>>>(out.data<scalar_t>(), x.data<scalar_t>(), n,
                                                                    n / samples, seed, offset, p,
                                                                    static_cast<acc_t<scalar_t>>(scale));
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace unirep::cuda
