// Differentiable dtype conversion, the cast that autocast (autograd/autocast.h) inserts.
#pragma once
#include "core/tensor.h"

namespace unirep {

// x converted to `dtype` (float -> bf16/f16 rounds to nearest even, as core/dtype.h). Identity
// when x already has that dtype: the same tensor, no copy, no graph node. Backward casts the
// gradient back to x's dtype, so a float32 parameter used through a bf16 cast gets a float32
// gradient. Casts to or from an integer dtype carry no gradient.
Tensor cast(const Tensor& x, DType dtype);

}  // namespace unirep
