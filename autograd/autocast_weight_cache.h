// AutocastWeightCache: every autocast parameter cast of one forward in a few launches.
//
// Under autocast each use of a float32 parameter by conv2d/linear/matmul (or a mixed add/mul: the
// layer scale) casts it with the differentiable cast (autograd/functions/cast.h): a UniRepLKNet-T
// forward launches about 300 tiny cast kernels. A cache constructed inside an enabled autocast
// region casts every float32 parameter it is given with cast_multi (core/ops/cast_multi.h: on CUDA
// one multi-tensor launch per 128 tensors) into one contiguous buffer of the autocast dtype. While it
// lives, cast(p, autocast dtype) of a cached p returns a fresh view into that buffer instead of
// converting (also for a contiguous view of p: the lookup is by storage and element range), and
// still records the cast's node, so p's gradient arrives in float32 as before. The values are
// bitwise those of the uncached cast (the same rounding), so results do not change.
//
//   {
//     AutocastGuard amp(DType::BFloat16, on_gpu);
//     AutocastWeightCache weights(params);         // after the guard: inert when autocast is off
//     loss = cross_entropy(model.forward(x), y);
//   }                                              // the cache ends with the forward
//   loss.backward();
//
// Staleness: tensors carry no version counter, so a parameter whose values change while the cache
// lives would be served its old values. Scope the cache to one forward, between optimizer steps and
// loads, and change no parameter inside it. (A tensor put in a parameter's place, e.g. by
// Module::to or a reparameterisation, has other memory: the lookup misses and casts it afresh.)
//
// Inert (caches nothing; every cast as without it) outside an enabled autocast region. Only
// contiguous non-empty float32 parameters are cached: float64 ones stay float64 (autocast never
// casts them), others are cast at each use as before. Caches nest (the innermost holding the
// parameter answers) and are per thread, as the autocast state. An activation-checkpoint recompute
// in backward, after the cache has ended, casts as without it (the same values).
//
// Layout and memory: each parameter starts at a multiple of 8 elements (16 bytes) of the buffer, so
// the vector path of cast_multi applies. The buffer holds every given parameter, also those the
// forward never casts (norm weights: a few KB), and lives while any view does: the backward graph
// saves the casts of conv and linear weights, as it saved the separate cast outputs before.
//
// Backward is unchanged: each cast node converts its parameter's gradient to float32 on its own
// (one launch per parameter), right before that parameter's AccumulateGrad, so the grad-ready hooks
// that overlap the data-parallel all-reduce with backward (distributed/) fire as early as before.
#pragma once
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace unirep {

class AutocastWeightCache {
 public:
  // params: any tensors (a model's parameters()); all cached ones on one device.
  explicit AutocastWeightCache(const std::vector<Tensor>& params);
  ~AutocastWeightCache();
  AutocastWeightCache(const AutocastWeightCache&) = delete;
  AutocastWeightCache& operator=(const AutocastWeightCache&) = delete;

  // How many parameters this cache holds (0 when inert).
  size_t size() const { return count_; }

 private:
  friend Tensor autocast_cached_cast(const Tensor& x, DType dtype);
  // One cached parameter: its elements [param_offset, param_offset + numel) of `storage` are the
  // buffer's [buffer_offset, buffer_offset + numel).
  struct Entry {
    int64_t param_offset, numel, buffer_offset;
  };
  struct StorageEntries {
    std::shared_ptr<Storage> storage;  // held, so its address (the key) cannot be reused while the cache lives
    std::vector<Entry> entries;
  };
  AutocastWeightCache* outer_;
  DType dtype_ = DType::BFloat16;
  Tensor buffer_;
  std::unordered_map<const Storage*, StorageEntries> by_storage_;
  size_t count_ = 0;
};

// x cast to `dtype` as a view of the innermost live cache on this thread that holds x's elements
// (x a cached parameter or a contiguous view inside one, as SE's reshaped 1x1 conv weights), with no
// autograd history; undefined when none holds them (or dtype is not the one it cached).
Tensor autocast_cached_cast(const Tensor& x, DType dtype);

}  // namespace unirep
