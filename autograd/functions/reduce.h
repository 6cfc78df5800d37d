// Differentiable reductions, softmax and the classification loss.
// `dims` lists the reduced dims (negative allowed); an empty list reduces every dim.
// Under autocast (autograd/autocast.h) softmax, log_softmax and the losses compute in float32.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace unirep {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Maximum over dims. The gradient is shared evenly among tied maxima (as torch.amax).
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// L2 norm sqrt(sum x^2) over dims. Gradient x / norm (0 where the norm is 0).
Tensor norm(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Sums a broadcast result back to `shape` (the inverse of expand), used by broadcasting backward.
Tensor sum_to(const Tensor& x, const Shape& shape);

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

enum class Reduction { None, Mean, Sum };

// logits [N, C]; target int64 [N] of class indices. Rows whose target == ignore_index contribute
// nothing and are excluded from the mean. With label_smoothing e the target distribution is
// (1 - e) one_hot + e / C, exactly as torch.nn.functional.cross_entropy.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, Reduction reduction = Reduction::Mean);
// logits [N, C]; soft_target [N, C] of probabilities (mixup/cutmix targets): -sum_c t log_softmax.
Tensor cross_entropy_soft(const Tensor& logits, const Tensor& soft_target, Reduction reduction = Reduction::Mean);

}  // namespace unirep
