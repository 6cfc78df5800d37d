// Stochastic regularisers. Masks come from the counter-based generator (core/generator.h), so the
// same seed gives the same mask on the CPU and the GPU.
#pragma once
#include "core/generator.h"
#include "core/tensor.h"

namespace unirep {

// Zeroes each element with probability p and scales the rest by 1 / (1 - p); identity when !training.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());
// Stochastic depth: zeroes whole samples (dim 0) with probability p, scales kept ones by 1 / (1 - p)
// when scale_by_keep (timm's DropPath); identity when !training or p == 0.
Tensor drop_path(const Tensor& x, double p, bool training, Generator& gen = default_generator(),
                 bool scale_by_keep = true);

}  // namespace unirep
