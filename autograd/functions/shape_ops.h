// Differentiable joins, splits, padding and indexing.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace unirep {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
// Pieces of the given sizes along dim (they must add up to x.size(dim)).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// Constant padding, pads given from the last dim backwards as torch.nn.functional.pad:
// {last_before, last_after, second_last_before, ...}. Negative pads crop.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0);
// out = x.index_select(dim, index): index is a 1-d int32/int64 tensor; out-of-range indices throw.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// torch.gather: out[i][j][k] = x[i][index[i][j][k]][k] for dim = 1; index has x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

}  // namespace unirep
