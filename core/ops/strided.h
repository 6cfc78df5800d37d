// Offsets of N operands that walk one logical shape with their own strides (stride 0 = broadcast).
// Adjacent dims that are contiguous for every operand are merged first, so a contiguous or
// simply-broadcast operand costs one or two div/mods per element. Used by the CPU loops and,
// passed by value, by the CUDA kernels.
#pragma once
#include <array>
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"

namespace unirep {

constexpr int kMaxDims = 12;

template <int N> struct StridedIndex {
  int ndim = 0;
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];

  UNIREP_HD void offsets(int64_t linear, int64_t* off) const {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t i = linear % sizes[d];
      linear /= sizes[d];
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
  }
};

template <int N>
StridedIndex<N> make_strided_index(const Shape& shape, const std::array<const Shape*, N>& strides) {
  UNIREP_CHECK(shape.size() <= size_t(kMaxDims), "strided loop: ", shape.size(), " dims, at most ", kMaxDims,
               " supported");
  StridedIndex<N> idx;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    int n = idx.ndim;
    bool merge = n > 0;
    for (int k = 0; k < N && merge; ++k)
      merge = (*strides[k])[d] * shape[d] == idx.strides[k][n - 1];
    if (merge) {
      idx.sizes[n - 1] *= shape[d];
      for (int k = 0; k < N; ++k) idx.strides[k][n - 1] = (*strides[k])[d];
    } else {
      idx.sizes[n] = shape[d];
      for (int k = 0; k < N; ++k) idx.strides[k][n] = (*strides[k])[d];
      ++idx.ndim;
    }
  }
  return idx;
}

}  // namespace unirep
