// Dropout and drop-path kernels driven by the counter-based Philox generator (core/generator.h).
//
// dropout:   out[i] = u(seed, offset + i) >= p ? x[i] * scale : 0     (i: row-major linear index)
// drop_path: out[i] = u(seed, offset + n) >= p ? x[i] * scale : 0     (n = i / (numel / N): the sample)
// with u = philox_uniform, a float in [0, 1) holding 24 random bits, compared with p in double on
// both devices, so the same (seed, offset) gives the same mask on the CPU and on the GPU, and the
// kept/dropped decision does not depend on the data dtype. Dropped elements are written as 0 (a
// select, not a multiply by 0, so an inf or NaN in a dropped element does not leak through).
//
// Memory: no mask is stored. The mask is a pure function of (seed, offset, i), so the backward
// calls the same kernel on the incoming gradient with the (seed, offset) the forward used:
// grad_x = mask * scale * grad_out. That costs one Philox evaluation per element again (cheap
// integer arithmetic next to the memory traffic) and saves a mask of numel bytes per dropout layer.
#pragma once
#include <cstdint>

#include "core/generator.h"
#include "core/tensor.h"

namespace unirep {

// The keep decision shared by the CPU and CUDA kernels.
UNIREP_HD bool philox_keep(uint64_t seed, uint64_t counter, double p) {
  return double(philox_uniform(seed, counter)) >= p;
}

// out, x: contiguous, same shape and floating dtype, same device.
void dropout_kernel(const Tensor& out, const Tensor& x, uint64_t seed, uint64_t offset, double p, double scale);
// x's dim 0 holds `samples` samples of numel / samples elements each.
void drop_path_kernel(const Tensor& out, const Tensor& x, uint64_t seed, uint64_t offset, double p, double scale,
                      int64_t samples);

namespace cuda {
void dropout(const Tensor& out, const Tensor& x, uint64_t seed, uint64_t offset, double p, double scale);
void drop_path(const Tensor& out, const Tensor& x, uint64_t seed, uint64_t offset, double p, double scale,
               int64_t samples);
}  // namespace cuda

}  // namespace unirep
