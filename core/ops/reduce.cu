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

}  // namespace

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
