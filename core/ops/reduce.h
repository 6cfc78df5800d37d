// Row reductions: x (contiguous) seen as [rows, cols] -> out [rows], accumulated in acc_t.
// Reductions over arbitrary dims permute the reduced dims innermost first (autograd/functions/
// reduce.cpp), so one kernel serves sum, mean, max and the L2 norm.
#pragma once
#include "core/tensor.h"

namespace unirep {

enum class ReduceOp { Sum, Max, SumSquares };

void reduce_rows(const Tensor& out, const Tensor& x, int64_t rows, int64_t cols, ReduceOp op);

namespace cuda {
void reduce_rows(const Tensor& out, const Tensor& x, int64_t rows, int64_t cols, ReduceOp op);
}

}  // namespace unirep
