// One CUDA graph captured from a function's launches on a device's stream, and replayed.
//
// A host-bound step (UniRepLKNet-A at 32x32: ~1,000 launches of a few microseconds each) costs the
// host ~7 us per launch to record, allocate and launch; replaying the captured graph costs one
// launch. Everything the captured function does on the host is done once, at capture: a replay
// repeats only its device work, with the kernel arguments of the capture. So the function must not
// synchronise with the host, and values that change per replay must reach the kernels through
// device memory (core/cuda/staged_upload.h; in-place counters).
//
// Memory: the capture's allocations come from a private pool of the caching allocator
// (core/allocator.h), so no other tensor holds those addresses between replays; tensors the
// function leaves alive (its outputs) keep their addresses for every replay. The pool goes back to
// the shared cache when the graph is destroyed.
#pragma once
#include <cstdint>
#include <functional>

#include <cuda_runtime.h>

namespace unirep::cuda {

class Graph {
 public:
  explicit Graph(int device);
  ~Graph();  // waits for the device's stream, then frees the graph and hands its pool back
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Runs fn with the device's stream capturing and the private pool serving this thread's
  // allocations, then instantiates the graph. nothing runs on the device. Throws an Error naming the
  // cause (the capture ended, the error cleared) when fn throws or launches something that cannot be
  // captured (a synchronous copy, a host synchronisation); the graph is then unusable.
  void capture(const std::function<void()>& fn);
  // Queues one execution of the captured work on the device's stream.
  void replay();
  bool ready() const { return exec_ != nullptr; }

 private:
  int device_;
  int64_t pool_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace unirep::cuda
