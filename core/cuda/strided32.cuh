// 32-bit offsets for the CUDA strided loops. StridedIndex (core/ops/strided.h) decodes a linear index
// with a 64-bit div/mod per merged dim, which a GPU emulates in ~70 instructions: for an NHWC
// broadcast such as x[N,H,W,C] * g[C] that made the elementwise kernels 4x slower than their
// memory floor on an H100. When the element count and every operand's largest offset fit in 31
// bits (all UniRepLKNet activations at batch 128 do), the index is decoded in 32 bits, and each
// division by an invariant size d is a multiply-high and a shift (Granlund and Montgomery):
//   q = (umulhi(n, m) + n) >> s,  s = ceil(log2 d),  m = floor(2^32 (2^s - d) / d) + 1,
// exact for every n < 2^31 (then umulhi(n, m) + n < 2^32 cannot overflow).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/ops/strided.h"

namespace unirep::cuda {

struct FastDivmod32 {
  uint32_t divisor = 1, magic = 1, shift = 0;
  FastDivmod32() = default;
  explicit FastDivmod32(uint32_t d) : divisor(d) {
    while ((uint64_t(1) << shift) < d) ++shift;
    magic = uint32_t((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d) / d + 1);
  }
  UNIREP_HD uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t high = __umulhi(n, magic);
#else
    const uint32_t high = uint32_t((uint64_t(n) * magic) >> 32);
#endif
    return (high + n) >> shift;
  }
};

template <int N> struct StridedIndex32 {
  int ndim = 0;
  FastDivmod32 sizes[kMaxDims];
  uint32_t strides[N][kMaxDims];

  UNIREP_HD void offsets(uint32_t linear, uint32_t* off) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const uint32_t q = sizes[d].div(linear), i = linear - q * sizes[d].divisor;
      linear = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
  }
};

// The 32-bit form of idx for n elements, or false when an offset or n needs more than 31 bits (or a
// stride is negative): then the caller keeps the 64-bit StridedIndex.
template <int N> bool to_strided_index32(const StridedIndex<N>& idx, int64_t n, StridedIndex32<N>* out) {
  constexpr int64_t kLimit = int64_t(1) << 31;
  if (n >= kLimit) return false;
  out->ndim = idx.ndim;
  for (int k = 0; k < N; ++k) {
    int64_t largest = 0;
    for (int d = 0; d < idx.ndim; ++d) {
      if (idx.strides[k][d] < 0) return false;
      largest += (idx.sizes[d] - 1) * idx.strides[k][d];
    }
    if (largest >= kLimit) return false;
  }
  for (int d = 0; d < idx.ndim; ++d) {
    out->sizes[d] = FastDivmod32(uint32_t(idx.sizes[d]));
    for (int k = 0; k < N; ++k) out->strides[k][d] = uint32_t(idx.strides[k][d]);
  }
  return true;
}

}  // namespace unirep::cuda
