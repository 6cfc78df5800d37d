// Reductions of a contiguous x, accumulated in acc_t:
//   reduce_rows: x seen as a matrix [rows, cols]: out[rows], each row reduced (the reduced dims are
//                innermost);
//   reduce_cols: x seen as [outer, rows, cols]: out[outer, cols], each column of each outer slice
//                reduced (the reduced dims lead or sit in the middle, as for a bias gradient, the
//                per-channel statistics of NHWC data (outer = 1), or a sum over H, W of an NHWC map
//                (outer = N): no transpose, reads stay coalesced).
// Reductions over other dim sets permute the reduced dims innermost first (autograd/functions/
// reduce_sum.cpp), so these two kernels serve sum, mean, max and the L2 norm.
#pragma once
#include "core/tensor.h"

namespace unirep {

enum class ReduceOp { Sum, Max, SumSquares };

void reduce_rows(const Tensor& out, const Tensor& x, int64_t rows, int64_t cols, ReduceOp op);
void reduce_cols(const Tensor& out, const Tensor& x, int64_t outer, int64_t rows, int64_t cols, ReduceOp op);

namespace cuda {
void reduce_rows(const Tensor& out, const Tensor& x, int64_t rows, int64_t cols, ReduceOp op);
void reduce_cols(const Tensor& out, const Tensor& x, int64_t outer, int64_t rows, int64_t cols, ReduceOp op);
}

}  // namespace unirep
