// CUDA twins of optimizer_kernels.cpp, on the device's stream, calling the shared functors.
//
// Per tensor (adamw_update, sgd_update, unscale_and_find_inf, ema_update): one grid-stride launch.
//
// Multi-tensor (adamw_update_multi, unscale_and_find_inf_multi, global_norm, clip_by_norm): the
// tensors go into tables of up to 64 (AdamW: 4 pointers each, plus up to 16 functors, one per param
// group met) or 128 tensors (one pointer) passed by value as the kernel argument (under the classic
// 4 KB limit; __grid_constant__, so the kernel reads it in place from the parameter bank and nothing
// is copied to the device beforehand). Every tensor is cut into chunks of kChunk elements, one block
// per chunk; block b works on tensor k where block_start[k] <= b < block_start[k + 1] (a binary search
// over the table, uniform in the block), so a 1-element bias and a 1.6M-element weight both get the
// blocks they need. A tensor whose pointers are all 16-byte aligned is read and written in 16-byte
// packs (chunks start at multiples of kChunk, so packs stay aligned), its tail and unaligned tensors
// element by element. The per-element work is the same functor call as the per-tensor kernels, so
// results are bitwise equal to them.
//
// The gradient norm is two-pass and deterministic: every chunk of every grad writes one partial sum
// of squares at a fixed index (tensor order, then chunk order), one block then adds them in order.
#include <algorithm>
#include <array>
#include <cstdint>

#include "core/cuda/loops.cuh"
#include "optim/optimizer_kernels.h"

namespace unirep::cuda {

namespace {

constexpr unsigned kMaxBlocks = 65535u * 16u;

unsigned grid_for(int64_t n) { return std::min(blocks_for(n), kMaxBlocks); }

// ---------------------------------------------------------------- multi-tensor tables

constexpr int64_t kChunk = 8192;  // elements per block: 32 per thread, a multiple of every pack width
constexpr int64_t kMaxGridBlocks = INT32_MAX;

int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

// Up to kMaxTensors tensors of kPointers pointers each (the same element range in every pointer).
template <class T, int kPointers, int kMaxTensors> struct TensorTable {
  T* ptr[kPointers][kMaxTensors];
  int64_t numel[kMaxTensors];
  int32_t block_start[kMaxTensors + 1];
  uint8_t aligned[kMaxTensors];  // all pointers of the tensor 16-byte aligned: packed access
  uint8_t functor[kMaxTensors];  // per-launch functor slot (AdamW)
  int32_t count;

  void clear() {
    count = 0;
    block_start[0] = 0;
  }
  int32_t blocks() const { return block_start[count]; }
  bool fits(int64_t n) const { return count < kMaxTensors && block_start[count] + chunks_of(n) <= kMaxGridBlocks; }
  // n > 0 and fits(n).
  void add(const std::array<T*, kPointers>& ptrs, int64_t n, int functor_slot = 0) {
    bool all_aligned = true;
    for (int j = 0; j < kPointers; ++j) {
      ptr[j][count] = ptrs[j];
      all_aligned = all_aligned && reinterpret_cast<uintptr_t>(ptrs[j]) % 16 == 0;
    }
    numel[count] = n;
    aligned[count] = all_aligned;
    functor[count] = uint8_t(functor_slot);
    block_start[count + 1] = int32_t(block_start[count] + chunks_of(n));
    ++count;
  }
  // The tensor of block `block` (every tensor has at least one block).
  __device__ int tensor_of(int32_t block) const {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
      int mid = (lo + hi + 1) / 2;
      if (block_start[mid] <= block)
        lo = mid;
      else
        hi = mid - 1;
    }
    return lo;
  }
};

template <class T> struct alignas(16) Pack {
  static constexpr int kWidth = int(16 / sizeof(T));
  T v[kWidth];
};
template <class T> __device__ Pack<T> load_pack(const T* p) { return *reinterpret_cast<const Pack<T>*>(p); }
template <class T> __device__ void store_pack(T* p, const Pack<T>& x) { *reinterpret_cast<Pack<T>*>(p) = x; }

// This block's elements [begin, end) of tensor k; [begin, packed_end) is whole packs of `width`
// elements (empty when the tensor is not aligned).
struct Chunk {
  int64_t begin, end, packed_end;
};
template <class Table> __device__ Chunk chunk_of(const Table& t, int k, int width) {
  int64_t begin = int64_t(int32_t(blockIdx.x) - t.block_start[k]) * kChunk;
  int64_t end = min(t.numel[k], begin + kChunk);
  int64_t packed_end = t.aligned[k] ? begin + (end - begin) / width * width : begin;
  return {begin, end, packed_end};
}

constexpr int kAdamWMaxTensors = 64, kAdamWMaxFunctors = 16, kGradMaxTensors = 128;
struct AdamWTable {
  TensorTable<float, 4, kAdamWMaxTensors> tensors;  // param, grad, exp_avg, exp_avg_sq
  AdamWUpdate functors[kAdamWMaxFunctors];
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
  const AdamWUpdate f = table.functors[t.functor[k]];
  Chunk c = chunk_of(t, k, Pack<float>::kWidth);
  for (int64_t i = c.begin + Pack<float>::kWidth * threadIdx.x; i < c.packed_end; i += Pack<float>::kWidth * blockDim.x) {
    Pack<float> pp = load_pack(p + i), gp = load_pack(g + i), mp = load_pack(m + i), vp = load_pack(v + i);
#pragma unroll
    for (int e = 0; e < Pack<float>::kWidth; ++e) f(pp.v[e], gp.v[e], mp.v[e], vp.v[e]);
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
  Chunk c = chunk_of(t, k, Pack<T>::kWidth);
  bool any = false;
  auto unscale = [&](T& x) {
    acc v = static_cast<acc>(x);
    if (!isfinite(v)) any = true;
    x = static_cast<T>(v * acc(inv_scale));
  };
  for (int64_t i = c.begin + Pack<T>::kWidth * threadIdx.x; i < c.packed_end; i += Pack<T>::kWidth * blockDim.x) {
    Pack<T> x = load_pack(g + i);
#pragma unroll
    for (int e = 0; e < Pack<T>::kWidth; ++e) unscale(x.v[e]);
    store_pack(g + i, x);
  }
  for (int64_t i = c.packed_end + threadIdx.x; i < c.end; i += blockDim.x) unscale(g[i]);
  if (any) *found = 1.0f;  // every writer stores the same value: no atomic needed
}

// partial[b] = sum of squares of block b's chunk (the launch's first block writes partial[0]).
__global__ void sum_squares_multi_kernel(const __grid_constant__ GradTable<float> t, float* partial) {
  int k = t.tensor_of(int32_t(blockIdx.x));
  const float* x = t.ptr[0][k];
  Chunk c = chunk_of(t, k, Pack<float>::kWidth);
  float a = 0.0f;
  for (int64_t i = c.begin + Pack<float>::kWidth * threadIdx.x; i < c.packed_end; i += Pack<float>::kWidth * blockDim.x) {
    Pack<float> xp = load_pack(x + i);
#pragma unroll
    for (int e = 0; e < Pack<float>::kWidth; ++e) a += xp.v[e] * xp.v[e];
  }
  for (int64_t i = c.packed_end + threadIdx.x; i < c.end; i += blockDim.x) a += x[i] * x[i];
  a = block_sum(a);
  if (threadIdx.x == 0) partial[blockIdx.x] = a;
}

__global__ void clip_multi_kernel(const __grid_constant__ GradTable<float> t, const float* total, float max_norm) {
  float coef = fminf(1.0f, max_norm / (*total + 1e-6f));
  int k = t.tensor_of(int32_t(blockIdx.x));
  float* x = t.ptr[0][k];
  Chunk c = chunk_of(t, k, Pack<float>::kWidth);
  for (int64_t i = c.begin + Pack<float>::kWidth * threadIdx.x; i < c.packed_end; i += Pack<float>::kWidth * blockDim.x) {
    Pack<float> xp = load_pack(x + i);
#pragma unroll
    for (int e = 0; e < Pack<float>::kWidth; ++e) xp.v[e] *= coef;
    store_pack(x + i, xp);
  }
  for (int64_t i = c.packed_end + threadIdx.x; i < c.end; i += blockDim.x) x[i] *= coef;
}

// Fills tables with the non-empty tensors `add` offers and launches each one when full and at the
// end: for_each_table(table, count, numel_of(i), add(table, i), launch(table)).
template <class Table, class NumelOf, class Add, class Launch>
void for_each_table(Table& table, size_t count, NumelOf numel_of, Add add, Launch launch) {
  table.clear();
  for (size_t i = 0; i < count; ++i) {
    int64_t n = numel_of(i);
    if (n == 0) continue;
    if (!table.fits(n) && table.count > 0) {
      launch(table);
      table.clear();
    }
    UNIREP_CHECK(table.fits(n), "multi-tensor launch: a tensor of ", n, " elements needs more than ", kMaxGridBlocks,
                 " blocks");
    add(table, i, n);
  }
  if (table.count > 0) launch(table);
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

void adamw_update_multi(const std::vector<AdamWTensors>& tensors, const std::vector<AdamWUpdate>& functors) {
  AdamWTable table;
  int slots = 0;                   // functors of this launch
  size_t slot_functor = SIZE_MAX;  // the functor in the last slot
  auto launch = [&](const TensorTable<float, 4, kAdamWMaxTensors>& t) {
    adamw_multi_kernel<<<unsigned(t.blocks()), kThreads, 0, stream()>>>(table);
    CUDA_CHECK_LAUNCH();
    slots = 0;
    slot_functor = SIZE_MAX;
  };
  for_each_table(
      table.tensors, tensors.size(), [&](size_t i) { return tensors[i].param.numel(); },
      [&](TensorTable<float, 4, kAdamWMaxTensors>& t, size_t i, int64_t n) {
        const AdamWTensors& a = tensors[i];
        if (a.functor != slot_functor && slots == kAdamWMaxFunctors) {
          launch(t);
          t.clear();
        }
        if (a.functor != slot_functor) {
          table.functors[slots++] = functors[a.functor];
          slot_functor = a.functor;
        }
        t.add({a.param.data<float>(), a.grad.data<float>(), a.exp_avg.data<float>(), a.exp_avg_sq.data<float>()}, n,
              slots - 1);
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
