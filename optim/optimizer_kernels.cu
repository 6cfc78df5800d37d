// CUDA twins of optimizer_kernels.cpp, on the device's stream, calling the shared functors.
//
// Per tensor (adamw_update, sgd_update, unscale_and_find_inf, ema_update): one grid-stride launch.
//
// Multi-tensor (adamw_update_multi, unscale_and_find_inf_multi, global_norm, clip_by_norm): tables of
// up to 64 (AdamW: 4 pointers each; its functors, one per param group, are read from device memory
// that a StagedUpload fills, so a captured step replays with each step's lr and bias corrections) or
// 128 tensors (one pointer), launched as core/cuda/multi_tensor.cuh describes. The per-element work is the same
// functor call as the per-tensor kernels, so results are bitwise equal to them.
//
// The gradient norm is two-pass and deterministic: every chunk of every grad writes one partial sum
// of squares at a fixed index (tensor order, then chunk order), one block then adds them in order.
#include <algorithm>
#include <array>
#include <cstdint>

#include "core/cuda/loops.cuh"
#include "core/cuda/multi_tensor.cuh"
#include "optim/optimizer_kernels.h"

namespace unirep::cuda {

namespace {

constexpr unsigned kMaxBlocks = 65535u * 16u;

unsigned grid_for(int64_t n) { return std::min(blocks_for(n), kMaxBlocks); }

constexpr int kAdamWMaxTensors = 64, kGradMaxTensors = 128;
struct AdamWTable {
  TensorTable<float, 4, kAdamWMaxTensors> tensors;  // param, grad, exp_avg, exp_avg_sq
  const AdamWUpdate* functors;                      // device memory (StagedUpload): per-step values
};
template <class T> using GradTable = TensorTable<T, 1, kGradMaxTensors>;
static_assert(sizeof(AdamWTable) <= 4000 && sizeof(GradTable<double>) <= 4000, "kernel arguments over 4 KB");

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

__global__ void sqrt_of_sum_kernel(const float* partial, int64_t count, float* total) {
  float a = 0.0f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) a += partial[i];
  a = block_sum(a);
  if (threadIdx.x == 0) *total = sqrtf(a);
}

__global__ void adamw_multi_kernel(const __grid_constant__ AdamWTable table) {
  const auto& t = table.tensors;
  int k = t.tensor_of(int32_t(blockIdx.x));
  float* p = t.ptr[0][k];
  const float* g = t.ptr[1][k];
  float* m = t.ptr[2][k];
  float* v = t.ptr[3][k];
  const AdamWUpdate f = table.functors[t.functor[k]];  // a tensor's functor: its param group
  Chunk c = chunk_of(t, k, kVec<float>);
  for (int64_t i = c.begin + kVec<float> * threadIdx.x; i < c.packed_end; i += kVec<float> * blockDim.x) {
    Pack<float> pp = load_pack(p + i), gp = load_pack(g + i), mp = load_pack(m + i), vp = load_pack(v + i);
#pragma unroll
    for (int e = 0; e < kVec<float>; ++e) f(pp.v[e], gp.v[e], mp.v[e], vp.v[e]);
    store_pack(p + i, pp);
    store_pack(m + i, mp);
    store_pack(v + i, vp);
  }
  for (int64_t i = c.packed_end + threadIdx.x; i < c.end; i += blockDim.x) f(p[i], g[i], m[i], v[i]);
}

template <class T> __global__ void unscale_multi_kernel(const __grid_constant__ GradTable<T> t, float inv_scale, float* found) {
  using acc = acc_t<T>;
  int k = t.tensor_of(int32_t(blockIdx.x));
  T* g = t.ptr[0][k];
  Chunk c = chunk_of(t, k, kVec<T>);
  bool any = false;
  auto unscale = [&](T& x) {
    acc v = static_cast<acc>(x);
    if (!isfinite(v)) any = true;
    x = static_cast<T>(v * acc(inv_scale));
  };
  for (int64_t i = c.begin + kVec<T> * threadIdx.x; i < c.packed_end; i += kVec<T> * blockDim.x) {
    Pack<T> x = load_pack(g + i);
#pragma unroll
    for (int e = 0; e < kVec<T>; ++e) unscale(x.v[e]);
    store_pack(g + i, x);
  }
  for (int64_t i = c.packed_end + threadIdx.x; i < c.end; i += blockDim.x) unscale(g[i]);
  if (any) *found = 1.0f;  // every writer stores the same value: no atomic needed
}

// partial[b] = sum of squares of block b's chunk (the launch's first block writes partial[0]).
__global__ void sum_squares_multi_kernel(const __grid_constant__ GradTable<float> t, float* partial) {
  int k = t.tensor_of(int32_t(blockIdx.x));
  const float* x = t.ptr[0][k];
  Chunk c = chunk_of(t, k, kVec<float>);
  float a = 0.0f;
  for (int64_t i = c.begin + kVec<float> * threadIdx.x; i < c.packed_end; i += kVec<float> * blockDim.x) {
    Pack<float> xp = load_pack(x + i);
#pragma unroll
    for (int e = 0; e < kVec<float>; ++e) a += xp.v[e] * xp.v[e];
  }
  for (int64_t i = c.packed_end + threadIdx.x; i < c.end; i += blockDim.x) a += x[i] * x[i];
  a = block_sum(a);
  if (threadIdx.x == 0) partial[blockIdx.x] = a;
}

__global__ void clip_multi_kernel(const __grid_constant__ GradTable<float> t, const float* total, float max_norm) {
  float coef = fminf(1.0f, max_norm / (*total + 1e-6f));
  int k = t.tensor_of(int32_t(blockIdx.x));
  float* x = t.ptr[0][k];
  Chunk c = chunk_of(t, k, kVec<float>);
  for (int64_t i = c.begin + kVec<float> * threadIdx.x; i < c.packed_end; i += kVec<float> * blockDim.x) {
    Pack<float> xp = load_pack(x + i);
#pragma unroll
    for (int e = 0; e < kVec<float>; ++e) xp.v[e] *= coef;
    store_pack(x + i, xp);
  }
  for (int64_t i = c.packed_end + threadIdx.x; i < c.end; i += blockDim.x) x[i] *= coef;
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

void adamw_update_multi(const std::vector<AdamWTensors>& tensors, const std::vector<AdamWUpdate>& functors,
                        StagedUpload& staging) {
  UNIREP_CHECK(functors.size() <= 256, "adamw_update_multi: ", functors.size(), " functors, at most 256");
  staging.write(functors.data(), functors.size() * sizeof(AdamWUpdate));
  AdamWTable table;
  table.functors = static_cast<const AdamWUpdate*>(staging.upload());
  auto launch = [&](const TensorTable<float, 4, kAdamWMaxTensors>&) {
    adamw_multi_kernel<<<unsigned(table.tensors.blocks()), kThreads, 0, stream()>>>(table);
    CUDA_CHECK_LAUNCH();
  };
  for_each_table(
      table.tensors, tensors.size(), [&](size_t i) { return tensors[i].param.numel(); },
      [&](TensorTable<float, 4, kAdamWMaxTensors>& t, size_t i, int64_t n) {
        const AdamWTensors& a = tensors[i];
        t.add({a.param.data<float>(), a.grad.data<float>(), a.exp_avg.data<float>(), a.exp_avg_sq.data<float>()}, n,
              int(a.functor));
      },
      launch);
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

void unscale_and_find_inf_multi(const std::vector<Tensor>& grads, float inv_scale, const Tensor& found) {
  std::vector<DType> dtypes;  // each dtype's grads in their own launches, in order of first appearance
  for (const Tensor& g : grads)
    if (std::find(dtypes.begin(), dtypes.end(), g.dtype()) == dtypes.end()) dtypes.push_back(g.dtype());
  for (DType dtype : dtypes) {
    UNIREP_DISPATCH_FLOATING(dtype, "unscale_and_find_inf_multi", [&] {
      GradTable<scalar_t> table;
      for_each_table(
          table, grads.size(), [&](size_t i) { return grads[i].dtype() == dtype ? grads[i].numel() : int64_t(0); },
          [&](GradTable<scalar_t>& t, size_t i, int64_t n) { t.add({grads[i].data<scalar_t>()}, n); },
          [&](const GradTable<scalar_t>& t) {
            unscale_multi_kernel<scalar_t><<<unsigned(t.blocks()), kThreads, 0, stream()>>>(t, inv_scale,
                                                                                           found.data<float>());
            CUDA_CHECK_LAUNCH();
          });
    });
  }
}

void global_norm(const std::vector<Tensor>& grads, const Tensor& total) {
  int64_t count = 0;
  for (const Tensor& g : grads) count += chunks_of(g.numel());
  if (count == 0) {
    Tensor(total).zero_();
    return;
  }
  Tensor partial = Tensor::empty({count}, DType::Float32, total.device());
  float* next = partial.data<float>();
  GradTable<float> table;
  for_each_table(
      table, grads.size(), [&](size_t i) { return grads[i].numel(); },
      [&](GradTable<float>& t, size_t i, int64_t n) { t.add({grads[i].data<float>()}, n); },
      [&](const GradTable<float>& t) {
        sum_squares_multi_kernel<<<unsigned(t.blocks()), kThreads, 0, stream()>>>(t, next);
        CUDA_CHECK_LAUNCH();
        next += t.blocks();
      });
  sqrt_of_sum_kernel<<<1, kThreads, 0, stream()>>>(partial.data<float>(), count, total.data<float>());
  CUDA_CHECK_LAUNCH();
}

void clip_by_norm(const std::vector<Tensor>& grads, const Tensor& total, float max_norm) {
  GradTable<float> table;
  for_each_table(
      table, grads.size(), [&](size_t i) { return grads[i].numel(); },
      [&](GradTable<float>& t, size_t i, int64_t n) { t.add({grads[i].data<float>()}, n); },
      [&](const GradTable<float>& t) {
        clip_multi_kernel<<<unsigned(t.blocks()), kThreads, 0, stream()>>>(t, total.data<float>(), max_norm);
        CUDA_CHECK_LAUNCH();
      });
}

}  // namespace unirep::cuda
