// The end of a UniRepLKNet block: x + drop_path(branch * gamma) as one differentiable op with one
// pass forward and one backward (core/ops/scaled_residual.h). drop_rate and training as drop_path;
// the generator advances exactly as drop_path's would, so the masks are the same.
#pragma once
#include "core/generator.h"
#include "core/tensor.h"

namespace unirep {

// x, branch: same shape ([N, ..., C], channel-last) and dtype; gamma: [C] layer scale, float32 or
// x's dtype (a float32 gamma with a bf16/f16 x is used as is, as batch norm's weight; no autocast
// cast), or undefined for none.
Tensor scaled_residual_add(const Tensor& x, const Tensor& branch, const Tensor& gamma, double drop_rate, bool training,
                           Generator& gen = default_generator());

}  // namespace unirep
