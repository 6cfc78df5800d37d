// CUDA twin of cast_multi: tables of up to 128 (destination, source) pairs per launch
// (core/cuda/multi_tensor.cuh), one block per 8192-element chunk of a tensor.
#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/multi_tensor.cuh"
#include "core/ops/cast_multi.h"

namespace unirep::cuda {

namespace {

constexpr int kCastMaxTensors = 128;
using CastTable = TensorTable<void, 2, kCastMaxTensors>;  // ptr[0]: destination, ptr[1]: float32 source
static_assert(sizeof(CastTable) <= 4000, "kernel arguments over 4 KB");

template <class T> __global__ void cast_multi_kernel(const __grid_constant__ CastTable t) {
  constexpr int kWidth = kVec<T>;  // one 16-byte store, two 16-byte float loads
  constexpr int kHalf = kVec<float>;
  static_assert(kWidth == 2 * kHalf, "a 16-bit pack holds two float packs");
  int k = t.tensor_of(int32_t(blockIdx.x));
  T* dst = static_cast<T*>(t.ptr[0][k]);
  const float* src = static_cast<const float*>(t.ptr[1][k]);
  Chunk c = chunk_of(t, k, kWidth);
  for (int64_t i = c.begin + kWidth * threadIdx.x; i < c.packed_end; i += kWidth * blockDim.x) {
    Pack<float> lo = load_pack(src + i), hi = load_pack(src + i + kHalf);
    Pack<T> out;
#pragma unroll
    for (int e = 0; e < kHalf; ++e) {
      out.v[e] = T(lo.v[e]);
      out.v[kHalf + e] = T(hi.v[e]);
    }
    store_pack(dst + i, out);
  }
  for (int64_t i = c.packed_end + threadIdx.x; i < c.end; i += blockDim.x) dst[i] = T(src[i]);
}

template <class T> void launch_cast_multi(const std::vector<Tensor>& srcs, const std::vector<Tensor>& dsts) {
  CastTable table;
  for_each_table(
      table, srcs.size(), [&](size_t i) { return srcs[i].numel(); },
      [&](CastTable& t, size_t i, int64_t n) { t.add({dsts[i].data_ptr(), srcs[i].data_ptr()}, n); },
      [&](const CastTable& t) {
        cast_multi_kernel<T><<<unsigned(t.blocks()), kThreads, 0, stream()>>>(t);
        CUDA_CHECK_LAUNCH();
      });
}

}  // namespace

void cast_multi(const std::vector<Tensor>& srcs, const std::vector<Tensor>& dsts) {
  if (dsts[0].dtype() == DType::BFloat16)
    launch_cast_multi<bf16>(srcs, dsts);
  else
    launch_cast_multi<f16>(srcs, dsts);
}

}  // namespace unirep::cuda
