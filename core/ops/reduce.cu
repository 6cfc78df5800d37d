#include <algorithm>
#include <cfloat>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/reduce.h"

namespace unirep::cuda {

namespace {

template <class acc> __device__ __forceinline__ acc reduce_step(ReduceOp op, acc a, acc v) {
  if (op == ReduceOp::Max) return (v > a || v != v) ? v : a;
  if (op == ReduceOp::Sum) return a + v;
  return a + v * v;
}
template <class acc> __device__ __forceinline__ acc reduce_combine(ReduceOp op, acc a, acc b) {
  return op == ReduceOp::Max ? reduce_step(op, a, b) : a + b;
}

// One block per row: strided partials per thread, then a shared-memory tree.
template <class T>
__global__ void reduce_rows_kernel(T* out, const T* x, int64_t cols, ReduceOp op) {
  using acc = acc_t<T>;
  __shared__ acc shared[kThreads];
  const T* row = x + int64_t(blockIdx.x) * cols;
  acc a = op == ReduceOp::Max ? acc(-INFINITY) : acc(0);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) a = reduce_step(op, a, static_cast<acc>(row[j]));
  shared[threadIdx.x] = a;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] = reduce_combine(op, shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<T>(shared[0]);
}

// Column reduction of each slice [rows, cols] of x [outer, rows, cols], pass 1: block (32 columns x
// 8 row lanes) per column tile, row split and slice (blockIdx.z, looping when there are more slices
// than grid rows); each thread walks its rows with stride, the 8 lanes meet in shared memory, and one
// partial per (slice, split, column) goes to a float32 (double) buffer. Pass 2 combines the splits
// of each slice in order.
constexpr int kColTile = 32, kRowLanes = 8;

template <class T>
__global__ void reduce_cols_partial_kernel(acc_t<T>* partial, const T* x, int64_t outer, int64_t rows, int64_t cols,
                                           ReduceOp op) {
  using acc = acc_t<T>;
  __shared__ acc shared[kRowLanes][kColTile + 1];
  int64_t c = int64_t(blockIdx.x) * kColTile + threadIdx.x;
  for (int64_t o = blockIdx.z; o < outer; o += gridDim.z) {
    const T* slice = x + o * rows * cols;
    acc a = op == ReduceOp::Max ? acc(-INFINITY) : acc(0);
    if (c < cols)
      for (int64_t r = int64_t(blockIdx.y) * kRowLanes + threadIdx.y; r < rows; r += int64_t(gridDim.y) * kRowLanes)
        a = reduce_step(op, a, static_cast<acc>(slice[r * cols + c]));
    shared[threadIdx.y][threadIdx.x] = a;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
      for (int i = 1; i < kRowLanes; ++i) a = reduce_combine(op, a, shared[i][threadIdx.x]);
      partial[(o * gridDim.y + blockIdx.y) * cols + c] = a;
    }
    __syncthreads();  // shared is rewritten by the next slice
  }
}

template <class T>
__global__ void reduce_cols_final_kernel(T* out, const acc_t<T>* partial, int64_t outer, int splits, int64_t cols,
                                         ReduceOp op) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= outer * cols) return;
  int64_t o = i / cols, c = i % cols;
  const acc_t<T>* p = partial + o * splits * cols + c;
  acc_t<T> a = p[0];
  for (int s = 1; s < splits; ++s) a = reduce_combine(op, a, p[int64_t(s) * cols]);
  out[i] = static_cast<T>(a);
}

}  // namespace

void reduce_cols(const Tensor& out, const Tensor& x, int64_t outer, int64_t rows, int64_t cols, ReduceOp op) {
  if (cols == 0 || outer == 0) return;
  int64_t col_tiles = (cols + kColTile - 1) / kColTile;
  UNIREP_CHECK(col_tiles < (int64_t(1) << 31), "reduce: too many columns (", cols, ")");
  // Enough blocks to fill the GPU a few times over, each with at least 64 rows of work.
  int64_t want = std::max<int64_t>(1, 1024 / (col_tiles * std::min<int64_t>(outer, 1024)));
  int splits = int(std::min<int64_t>({want, std::max<int64_t>(1, rows / 64), 65535}));
  unsigned slices = unsigned(std::min<int64_t>(outer, 65535));
  UNIREP_DISPATCH_FLOATING(x.dtype(), "reduce", [&] {
    using acc = acc_t<scalar_t>;
    Tensor partial = Tensor::empty({outer * splits * cols}, DTypeOf<acc>::value, out.device());
    reduce_cols_partial_kernel<scalar_t>
        <<<dim3(unsigned(col_tiles), unsigned(splits), slices), dim3(kColTile, kRowLanes), 0, stream()>>>(
            partial.data<acc>(), x.data<scalar_t>(), outer, rows, cols, op);
    CUDA_CHECK_LAUNCH();
    reduce_cols_final_kernel<scalar_t><<<blocks_for(outer * cols), kThreads, 0, stream()>>>(
        out.data<scalar_t>(), partial.data<acc>(), outer, splits, cols, op);
    CUDA_CHECK_LAUNCH();
  });
}

void reduce_rows(const Tensor& out, const Tensor& x, int64_t rows, int64_t cols, ReduceOp op) {
  if (rows == 0) return;
  UNIREP_CHECK(rows < (int64_t(1) << 31), "reduce: too many rows (", rows, ")");
  UNIREP_DISPATCH_FLOATING(x.dtype(), "reduce", [&] {
    reduce_rows_kernel<scalar_t><<<unsigned(rows), kThreads, 0, stream()>>>(out.data<scalar_t>(), x.data<scalar_t>(),
                                                                            cols, op);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace unirep::cuda
