#include "core/cuda/graph.h"

#include <exception>
#include <string>

#include "core/allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/error.h"

namespace unirep::cuda {

Graph::Graph(int device) : device_(device), pool_(cuda_create_pool(device)) {}

Graph::~Graph() {
  cudaStreamSynchronize(stream(device_));
  if (exec_) cudaGraphExecDestroy(exec_);
  if (graph_) cudaGraphDestroy(graph_);
  cuda_release_pool(device_, pool_);
}

void Graph::capture(const std::function<void()>& fn) {
  UNIREP_CHECK(graph_ == nullptr, "cuda::Graph::capture: this graph was captured already");
  cudaStream_t s = stream(device_);
  // Relaxed: the allocator may cudaMalloc a block for the pool while capturing, and other threads
  // (the data loader's copies on their own stream) go on undisturbed.
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  std::string failure;
  {
    CudaPoolScope scope(pool_);
    try {
      fn();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(s, &graph);
  if (failure.empty() && ended != cudaSuccess)
    failure = std::string("the capture was invalidated: ") + cudaGetErrorString(ended);
  if (!failure.empty()) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw Error("cuda::Graph::capture: " + failure);
  }
  graph_ = graph;
  const cudaError_t made = cudaGraphInstantiate(&exec_, graph_, 0);
  if (made != cudaSuccess) {
    exec_ = nullptr;
    cudaGetLastError();
    throw Error(std::string("cuda::Graph::capture: instantiating the graph failed: ") + cudaGetErrorString(made));
  }
}

void Graph::replay() {
  UNIREP_CHECK(exec_ != nullptr, "cuda::Graph::replay: nothing was captured");
  CUDA_CHECK(cudaGraphLaunch(exec_, stream(device_)));
}

}  // namespace unirep::cuda
