// Many float32 tensors cast to one 16-bit dtype at once: the autocast parameter cast
// (autograd/autocast_weight_cache.h) converts every parameter of a model with it.
//
// dsts[i] = srcs[i] rounded to nearest even (as copy_tensor rounds). CPU: a loop of copy_tensor.
// CUDA: a few multi-tensor launches (core/cuda/multi_tensor.cuh; up to 128 tensors each) instead of
// one per tensor; a tensor whose source and destination are both 16-byte aligned is moved 8
// elements at a time (two 16-byte float32 loads, one 16-byte store), the rest element by element.
// Bytes moved: 6 per element (4 read, 2 written), the floor of any cast.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace unirep {

// srcs: contiguous float32; dsts: contiguous, all bfloat16 or all float16, dsts[i] with srcs[i]'s
// numel; everything on one device.
void cast_multi(const std::vector<Tensor>& srcs, const std::vector<Tensor>& dsts);

namespace cuda {
void cast_multi(const std::vector<Tensor>& srcs, const std::vector<Tensor>& dsts);
}  // namespace cuda

}  // namespace unirep
