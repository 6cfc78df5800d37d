// CUDA twins of optimizer_kernels.cpp: grid-stride loops over contiguous float32 data calling the
// shared functors, one launch per tensor on the device's stream. The gradient norm is two-pass and
// deterministic: each grad's blocks write fixed partial sums, one block adds them in order.
#include <algorithm>

#include "core/cuda/loops.cuh"
#include "optim/optimizer_kernels.h"

namespace unirep::cuda {

namespace {

constexpr unsigned kMaxBlocks = 65535u * 16u;
constexpr unsigned kNormMaxBlocks = 128;  // partial sums per grad

unsigned grid_for(int64_t n) { return std::min(blocks_for(n), kMaxBlocks); }

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, AdamWUpdate f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    f(p[i], g[i], m[i], v[i]);
}

__global__ void sgd_kernel(float* p, const float* g, int64_t n, SgdUpdate f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    f(p[i], g[i]);
}

__global__ void sgd_momentum_kernel(float* p, const float* g, float* b, int64_t n, SgdUpdate f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    f(p[i], g[i], b[i]);
}

template <class T> __global__ void unscale_kernel(T* g, int64_t n, float inv_scale, float* found) {
  using acc = acc_t<T>;
  bool any = false;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    acc v = static_cast<acc>(g[i]);
    if (!isfinite(v)) any = true;
    g[i] = static_cast<T>(v * acc(inv_scale));
  }
  if (any) *found = 1.0f;  // every writer stores the same value: no atomic needed
}

// Sum over the block (kThreads threads), valid in thread 0: warp shuffles, then the warp sums.
__device__ float block_sum(float a) {
  __shared__ float warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) a += __shfl_down_sync(0xffffffffu, a, offset);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = a;
  __syncthreads();
  a = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
  if (warp == 0)
    for (int offset = 16; offset > 0; offset >>= 1) a += __shfl_down_sync(0xffffffffu, a, offset);
  return a;
}

__global__ void sum_squares_kernel(const float* x, int64_t n, float* partial) {
  float a = 0.0f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    a += x[i] * x[i];
  a = block_sum(a);
  if (threadIdx.x == 0) partial[blockIdx.x] = a;
}

__global__ void sqrt_of_sum_kernel(const float* partial, int64_t count, float* total) {
  float a = 0.0f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) a += partial[i];
  a = block_sum(a);
  if (threadIdx.x == 0) *total = sqrtf(a);
}

__global__ void clip_kernel(float* g, int64_t n, const float* total, float max_norm) {
  float coef = fminf(1.0f, max_norm / (*total + 1e-6f));
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    g[i] *= coef;
}

}  // namespace

void adamw_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const AdamWUpdate& f) {
  int64_t n = param.numel();
  if (n == 0) return;
  adamw_kernel<<<grid_for(n), kThreads, 0, stream()>>>(param.data<float>(), grad.data<float>(), exp_avg.data<float>(),
                                                        exp_avg_sq.data<float>(), n, f);
  CUDA_CHECK_LAUNCH();
}

void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdUpdate& f) {
  int64_t n = param.numel();
  if (n == 0) return;
  if (momentum_buffer.defined())
    sgd_momentum_kernel<<<grid_for(n), kThreads, 0, stream()>>>(param.data<float>(), grad.data<float>(),
                                                                 momentum_buffer.data<float>(), n, f);
  else
    sgd_kernel<<<grid_for(n), kThreads, 0, stream()>>>(param.data<float>(), grad.data<float>(), n, f);
  CUDA_CHECK_LAUNCH();
}

void ema_update(const Tensor& ema, const Tensor& model, double decay) {
  UNIREP_DISPATCH_FLOATING(ema.dtype(), "ema_update", [&] { cuda_elementwise<scalar_t>(ema, EmaBlend{decay}, ema, model); });
}

void unscale_and_find_inf(const Tensor& grad, float inv_scale, const Tensor& found) {
  int64_t n = grad.numel();
  if (n == 0) return;
  UNIREP_DISPATCH_FLOATING(grad.dtype(), "unscale_and_find_inf", [&] {
    unscale_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream()>>>(grad.data<scalar_t>(), n, inv_scale,
                                                                     found.data<float>());
    CUDA_CHECK_LAUNCH();
  });
}

void global_norm(const std::vector<Tensor>& grads, const Tensor& total) {
  std::vector<unsigned> blocks;
  int64_t count = 0;
  for (const Tensor& g : grads) {
    blocks.push_back(g.numel() == 0 ? 0u : std::min(blocks_for(g.numel()), kNormMaxBlocks));
    count += blocks.back();
  }
  if (count == 0) {
    Tensor(total).zero_();
    return;
  }
  Tensor partial = Tensor::empty({count}, DType::Float32, total.device());
  int64_t offset = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (blocks[i] == 0) continue;
    sum_squares_kernel<<<blocks[i], kThreads, 0, stream()>>>(grads[i].data<float>(), grads[i].numel(),
                                                              partial.data<float>() + offset);
    CUDA_CHECK_LAUNCH();
    offset += blocks[i];
  }
  sqrt_of_sum_kernel<<<1, kThreads, 0, stream()>>>(partial.data<float>(), count, total.data<float>());
  CUDA_CHECK_LAUNCH();
}

void clip_by_norm(const std::vector<Tensor>& grads, const Tensor& total, float max_norm) {
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    clip_kernel<<<grid_for(g.numel()), kThreads, 0, stream()>>>(g.data<float>(), g.numel(), total.data<float>(),
                                                                max_norm);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace unirep::cuda
