// Multi-tensor launches: many tensors in one kernel launch, as the optimizer's (optim/optimizer_kernels.cu)
// and the autocast parameter cast (core/ops/cast_multi.cu) do.
//
// A TensorTable of up to kMaxTensors tensors (kPointers pointers each, the same element range in
// every pointer) is passed by value as the kernel argument (keep it under the classic 4 KB limit;
// declare it __grid_constant__ so the kernel reads it in place and nothing is copied to the device
// beforehand). Every tensor is cut into chunks of kChunk elements, one block per chunk; block b works
// on tensor k where block_start[k] <= b < block_start[k + 1] (tensor_of: a binary search, uniform in
// the block), so a 1-element bias and a 1.6M-element weight both get the blocks they need. A tensor
// whose pointers are all 16-byte aligned is moved in 16-byte packs (chunks start at multiples of
// kChunk, so packs stay aligned; chunk_of gives the packed range), its tail and unaligned tensors
// element by element. for_each_table fills tables and launches each when full and at the end.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>

#include "core/cuda/vec.cuh"
#include "core/error.h"

namespace unirep::cuda {

constexpr int64_t kChunk = 8192;  // elements per block: 32 per thread, a multiple of every pack width
constexpr int64_t kMaxGridBlocks = INT32_MAX;

inline int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

// Up to kMaxTensors tensors of kPointers pointers each (the same element range in every pointer).
template <class T, int kPointers, int kMaxTensors> struct TensorTable {
  T* ptr[kPointers][kMaxTensors];
  int64_t numel[kMaxTensors];
  int32_t block_start[kMaxTensors + 1];
  uint8_t aligned[kMaxTensors];  // all pointers of the tensor 16-byte aligned: packed access
  uint8_t functor[kMaxTensors];  // the tensor's functor (AdamW: its param group)
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

template <class T> using Pack = VecOf<T, kVec<T>>;  // one 16-byte access
template <class T> __device__ Pack<T> load_pack(const T* p) { return load_vec<T, kVec<T>>(p); }
template <class T> __device__ void store_pack(T* p, const Pack<T>& x) { store_vec<T, kVec<T>>(p, x); }

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

}  // namespace unirep::cuda
